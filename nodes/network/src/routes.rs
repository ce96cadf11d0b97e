//! Routes to the other nodes' pod CIDRs: the pod network across nodes.
//!
//! Every node routes each other node's pod CIDR via that node's address (`ip route replace
//! <podCIDR> via <InternalIP>`): plain L3 routing as kubenet or flannel's host-gw do, which works
//! whenever the nodes share a link. Pod IPs travel unchanged (the masquerade chain exempts the
//! cluster CIDR), so a pod sees its peers' real addresses.
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

    /// Makes the kernel hold exactly `desired` among the routes this agent owns. Every desired
    /// route is (re)written, which also repairs routes someone deleted; failures of single
    /// routes are reported in the stats and retried on the next sync.
    pub fn sync(&mut self, desired: &RouteTable) -> Result<RouteSyncStats, RouteError> {
        let local = local_addresses()?;
        let before = self.installed.clone();
        let mut stats = RouteSyncStats::default();
        let stale: Vec<String> = self
            .installed
            .iter()
            .filter(|(cidr, via)| desired.get(*cidr) != Some(via) || local.contains(via))
            .map(|(cidr, _)| cidr.clone())
            .collect();
        for cidr in stale {
            let via = self.installed[&cidr];
            match ip(&["route", "del", &cidr, "via", &via.to_string()]) {
                Ok(_) => stats.removed += 1,
                // Already gone (the link went down, or an admin removed it): nothing to undo.
                Err(RouteError::Command { stderr, .. }) if stderr.contains("No such process") => {}
                Err(e) => {
                    stats.failed.push((cidr.clone(), e.to_string()));
                    continue;
                }
            }
            self.installed.remove(&cidr);
        }
        for (cidr, via) in desired {
            if local.contains(via) {
                stats.local += 1;
                continue;
            }
            match ip(&["route", "replace", cidr, "via", &via.to_string()]) {
                Ok(_) => {
                    self.installed.insert(cidr.clone(), *via);
                }
                Err(e) => stats.failed.push((cidr.clone(), e.to_string())),
            }
        }
        stats.installed = self.installed.len();
        if self.installed != before || !self.state_file.exists() {
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
