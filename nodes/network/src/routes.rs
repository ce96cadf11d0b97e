//! Routes to the other nodes' pod CIDRs: the pod network across nodes.
//!
//! Every node routes each other node's pod CIDR via that node's address (`ip route replace
//! <podCIDR> via <InternalIP>`): plain L3 routing as kubenet or flannel's host-gw do, which works
//! whenever the nodes share a link. Pod IPs travel unchanged (the masquerade chain exempts the
//! cluster CIDR), so a pod sees its peers' real addresses.
//!
//! A Node change moves one route ([`PodRoutes::update`]); a full sync ([`PodRoutes::sync`])
//! reads the kernel's routes once and writes only those missing or different, so repairing
//! costs a few `ip` runs however many nodes there are.
//!
//! The routes this node installed are kept in a state file, so a restarted agent removes those of
//! nodes that went away meanwhile and `kubus node-reset` removes them all, without ever touching
//! routes someone else made.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::process::Command;

#[derive(Debug, thiserror::Error)]
pub enum RouteError {
    #[error("running ip: {0}")]
    Spawn(#[source] std::io::Error),
    #[error("ip {args}: {stderr}")]
    Command { args: String, stderr: String },
    #[error("{path}: {source}")]
    State { path: PathBuf, source: std::io::Error },
}

/// Another node's pod CIDR and the address its traffic goes to.
pub type RouteTable = BTreeMap<String, IpAddr>;

/// What one sync did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct RouteSyncStats {
    /// Routes in place after the sync.
    pub installed: usize,
    /// Routes written (new, moved, or repaired).
    pub written: usize,
    /// Routes removed (their node is gone or has moved).
    pub removed: usize,
    /// Nodes skipped because their address is one of this host's (several agents on one
    /// machine share its routing table; the pod CIDR is connected to a local bridge already).
    pub local: usize,
    /// Routes the kernel refused (e.g. a gateway not on any link of this host), with the error.
    pub failed: Vec<(String, String)>,
}

/// The routes of one node agent, backed by `<state>/routes.json`.
pub struct PodRoutes {
    state_file: PathBuf,
    installed: RouteTable,
}

fn ip(args: &[&str]) -> Result<String, RouteError> {
    let out = Command::new("ip").args(args).output().map_err(RouteError::Spawn)?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(RouteError::Command {
            args: args.join(" "),
            stderr: String::from_utf8_lossy(&out.stderr).trim().to_string(),
        })
    }
}

/// The addresses of this network namespace's interfaces.
fn local_addresses() -> Result<BTreeSet<IpAddr>, RouteError> {
    let out = ip(&["-o", "addr", "show"])?;
    Ok(out
        .lines()
        .filter_map(|l| {
            let mut words = l.split_whitespace();
            words.find(|w| *w == "inet" || *w == "inet6")?;
            words.next()?.split('/').next()?.parse().ok()
        })
        .collect())
}

/// The main table's routes with a gateway, by destination (one `ip` run per family).
fn kernel_routes(v6: bool) -> Result<RouteTable, RouteError> {
    let mut held = RouteTable::new();
    for family in if v6 { &["-4", "-6"][..] } else { &["-4"][..] } {
        let out = ip(&["-j", family, "route", "show"])?;
        let routes: Vec<serde_json::Value> = serde_json::from_str(&out).unwrap_or_default();
        for route in &routes {
            let (Some(dst), Some(via)) = (route["dst"].as_str(), route["gateway"].as_str()) else { continue };
            if let Ok(via) = via.parse() {
                held.insert(dst.to_string(), via);
            }
        }
    }
    Ok(held)
}

impl PodRoutes {
    /// Loads what an earlier run of this agent installed (nothing when the file is missing).
    pub fn load(state_dir: &Path) -> Result<PodRoutes, RouteError> {
        let state_file = state_dir.join("routes.json");
        let installed = match std::fs::read(&state_file) {
            Ok(bytes) => serde_json::from_slice(&bytes).unwrap_or_else(|e| {
                tracing::warn!(file = %state_file.display(), error = %e, "unreadable route state; starting empty");
                RouteTable::new()
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => RouteTable::new(),
            Err(source) => return Err(RouteError::State { path: state_file, source }),
        };
        Ok(PodRoutes { state_file, installed })
    }

    pub fn installed(&self) -> &RouteTable {
        &self.installed
    }

    fn save(&self) -> Result<(), RouteError> {
        let tmp = self.state_file.with_extension("json.tmp");
        let write = || -> std::io::Result<()> {
            std::fs::write(&tmp, serde_json::to_vec_pretty(&self.installed).unwrap_or_default())?;
            std::fs::rename(&tmp, &self.state_file)
        };
        write().map_err(|source| RouteError::State { path: self.state_file.clone(), source })
    }

    /// Makes the kernel hold exactly `desired` among the routes this agent owns. Desired
    /// routes the kernel lacks or holds via another address are (re)written, which also
    /// repairs routes someone deleted; failures of single routes are reported in the stats and
    /// retried on the next sync.
    pub fn sync(&mut self, desired: &RouteTable) -> Result<RouteSyncStats, RouteError> {
        let v6 = desired.keys().chain(self.installed.keys()).any(|cidr| cidr.contains(':'));
        let held = kernel_routes(v6)?;
        let gone = self.installed.keys().filter(|cidr| !desired.contains_key(*cidr)).map(|cidr| (cidr.clone(), None));
        // Local gateways are passed on too: `update` counts them and removes what this agent
        // installed through them.
        let wrong = desired
            .iter()
            .filter(|(cidr, via)| held.get(*cidr) != Some(via) || self.installed.get(*cidr) != Some(via))
            .map(|(cidr, via)| (cidr.clone(), Some(*via)));
        let changes: Vec<(String, Option<IpAddr>)> = gone.chain(wrong).collect();
        let mut stats = self.update(&changes)?;
        if !self.state_file.exists() {
            self.save()?;
        }
        stats.installed = self.installed.len();
        Ok(stats)
    }

    /// Moves single routes: each pod CIDR to its new gateway, or away (None). A gateway that
    /// is one of this host's addresses gets no route (and loses the one this agent installed).
    pub fn update(&mut self, changes: &[(String, Option<IpAddr>)]) -> Result<RouteSyncStats, RouteError> {
        let local = if changes.iter().any(|(_, via)| via.is_some()) { local_addresses()? } else { BTreeSet::new() };
        let before = self.installed.clone();
        let mut stats = RouteSyncStats::default();
        for (cidr, want) in changes {
            match want {
                Some(via) if !local.contains(via) => match ip(&["route", "replace", cidr, "via", &via.to_string()]) {
                    Ok(_) => {
                        stats.written += 1;
                        self.installed.insert(cidr.clone(), *via);
                    }
                    Err(e) => stats.failed.push((cidr.clone(), e.to_string())),
                },
                _ => {
                    stats.local += usize::from(want.is_some());
                    let Some(old) = self.installed.get(cidr) else { continue };
                    match ip(&["route", "del", cidr, "via", &old.to_string()]) {
                        Ok(_) => stats.removed += 1,
                        // Already gone (the link went down, or an admin removed it): nothing to undo.
                        Err(RouteError::Command { stderr, .. }) if stderr.contains("No such process") => {}
                        Err(e) => {
                            stats.failed.push((cidr.clone(), e.to_string()));
                            continue;
                        }
                    }
                    self.installed.remove(cidr);
                }
            }
        }
        stats.installed = self.installed.len();
        if self.installed != before {
            self.save()?;
        }
        Ok(stats)
    }

    /// Removes every route this agent installed (`kubus node-reset`); returns how many.
    pub fn remove_all(&mut self) -> Result<usize, RouteError> {
        let stats = self.sync(&RouteTable::new())?;
        if let Some((cidr, e)) = stats.failed.first() {
            return Err(RouteError::Command { args: format!("route del {cidr}"), stderr: e.clone() });
        }
        let _ = std::fs::remove_file(&self.state_file);
        Ok(stats.removed)
    }
}
