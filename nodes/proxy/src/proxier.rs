//! Keeps a [`ProxyRules`] in the kernel with `nft -f -` and owns the service CIDR route.

use crate::changes::ServiceChanges;
use crate::metrics::{CONNTRACK_FLUSHES, LAST_SYNC, PROGRAMMED, SYNCS, SYNC_SECONDS};
use crate::rules::{ProxyRules, RulesConfig, RulesError, RulesUpdate, UdpFlow};
use crate::services::Services;
use crate::slices::ServiceSlices;
use std::collections::BTreeSet;
use std::io::Write;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const ROUTE_LOCALNET: &str = "/proc/sys/net/ipv4/conf/all/route_localnet";

#[derive(Debug, thiserror::Error)]
pub enum ProxierError {
    #[error(transparent)]
    Rules(#[from] RulesError),
    #[error("running {cmd}: {source}")]
    Spawn { cmd: String, source: std::io::Error },
    #[error("{cmd} failed: {stderr}")]
    Command { cmd: String, stderr: String },
    #[error("{path}: {source}")]
    Sysctl { path: &'static str, source: std::io::Error },
}

#[derive(Debug, Clone)]
pub struct ProxierConfig {
    pub rules: RulesConfig,
    /// The Service CIDR (e.g. 10.96.0.0/12). Locally originated packets to a ClusterIP are
    /// routed before OUTPUT DNAT happens, so the node needs a route for it; None: no route.
    pub service_cidr: Option<String>,
    /// Device of that route: the pod bridge, so the host's source address is the bridge's
    /// (which pods can answer) and no masquerade is needed for host-to-service traffic.
    pub route_dev: String,
    /// Shortest time between two syncs (upstream's --iptables-min-sync-period, 1 s); changes
    /// arriving meanwhile are coalesced into the next sync.
    pub min_sync_period: Duration,
}

impl Default for ProxierConfig {
    fn default() -> Self {
        ProxierConfig {
            rules: RulesConfig::default(),
            service_cidr: Some("10.96.0.0/12".into()),
            route_dev: "kubus0".into(),
            min_sync_period: Duration::from_secs(1),
        }
    }
}

/// What one sync programmed and how long it took.
#[derive(Debug, Clone, Copy)]
pub struct SyncStats {
    pub service_ports: usize,
    pub endpoints: usize,
    /// Services whose rules were recomputed (the marked ones; all on a full sync).
    pub recomputed: usize,
    /// Services whose rules changed, hence were written to the kernel.
    pub changed: usize,
    /// Ruleset computation.
    pub compute: Duration,
    /// `nft -f` (the kernel commits the transaction before nft exits).
    pub apply: Duration,
}

pub struct Proxier {
    config: ProxierConfig,
    /// The rules as of the last sync; None before the first one.
    rules: Option<ProxyRules>,
    /// Whether the kernel holds `rules`: false at the start and after a failed apply (someone
    /// touched the table), so the next apply replaces the table wholesale.
    in_kernel: bool,
    /// UDP flows gone in an update that failed to apply: flushed after the next success.
    stale_flows: BTreeSet<UdpFlow>,
    route_installed: bool,
    saved_route_localnet: Option<String>,
    conntrack_missing_reported: bool,
}

fn run(cmd: &str, args: &[&str], stdin: Option<&str>) -> Result<(), ProxierError> {
    let shown = format!("{cmd} {}", args.join(" "));
    let mut child = Command::new(cmd)
        .args(args)
        .stdin(if stdin.is_some() { Stdio::piped() } else { Stdio::null() })
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|source| ProxierError::Spawn { cmd: shown.clone(), source })?;
    if let (Some(input), Some(mut pipe)) = (stdin, child.stdin.take()) {
        pipe.write_all(input.as_bytes()).map_err(|source| ProxierError::Spawn { cmd: shown.clone(), source })?;
    }
    let out = child.wait_with_output().map_err(|source| ProxierError::Spawn { cmd: shown.clone(), source })?;
    if out.status.success() {
        Ok(())
    } else {
        Err(ProxierError::Command { cmd: shown, stderr: String::from_utf8_lossy(&out.stderr).trim().to_string() })
    }
}

impl Proxier {
    pub fn new(config: ProxierConfig) -> Self {
        Proxier {
            config,
            rules: None,
            in_kernel: false,
            stale_flows: BTreeSet::new(),
            route_installed: false,
            saved_route_localnet: None,
            conntrack_missing_reported: false,
        }
    }

    pub fn config(&self) -> &ProxierConfig {
        &self.config
    }

    /// Recomputes the rules of the Services `changes` marks (every Service at the first sync)
    /// from `services` and their slices, and applies what changed, with metrics.
    #[tracing::instrument(skip_all, fields(table = %self.config.rules.table, all = changes.is_all()))]
    pub fn sync(
        &mut self,
        changes: &ServiceChanges,
        services: &impl Services,
        slices: &impl ServiceSlices,
    ) -> Result<SyncStats, ProxierError> {
        let timer = SYNC_SECONDS.start_timer();
        let started = Instant::now();
        let result = self.update(changes, services, slices).and_then(|update| {
            let compute = started.elapsed();
            let apply = self.apply(&update)?;
            let (service_ports, endpoints) = self.rules.as_ref().map_or((0, 0), |r| (r.service_ports(), r.endpoints()));
            let (recomputed, changed) = (update.recomputed(), update.changed());
            Ok(SyncStats { service_ports, endpoints, recomputed, changed, compute, apply })
        });
        timer.observe_duration();
        match &result {
            Ok(stats) => {
                SYNCS.with_label_values(&["success"]).inc();
                let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
                LAST_SYNC.set(now.as_secs_f64());
                PROGRAMMED.with_label_values(&["service_ports"]).set(stats.service_ports as i64);
                PROGRAMMED.with_label_values(&["endpoints"]).set(stats.endpoints as i64);
                tracing::debug!(?stats, "proxy rules synced");
            }
            Err(e) => {
                SYNCS.with_label_values(&["error"]).inc();
                tracing::warn!(error = %e, "proxy rules sync failed");
            }
        }
        result
    }

    fn update(
        &mut self,
        changes: &ServiceChanges,
        services: &impl Services,
        slices: &impl ServiceSlices,
    ) -> Result<RulesUpdate, ProxierError> {
        match &mut self.rules {
            Some(rules) => Ok(rules.update(changes, services, slices)),
            None => {
                let rules = self.rules.insert(ProxyRules::new(&self.config.rules)?);
                Ok(rules.update(&ServiceChanges::all(), services, slices))
            }
        }
    }

    /// Makes the kernel hold the rules after `update` (one nft transaction) and returns the
    /// time `nft` took. The first apply replaces any table left by an earlier run (resync from
    /// scratch), as does the apply after a failed one.
    fn apply(&mut self, update: &RulesUpdate) -> Result<Duration, ProxierError> {
        self.host_setup()?;
        let started = Instant::now();
        let Some(rules) = &self.rules else { return Ok(started.elapsed()) };
        // Nothing changed (a periodic resync): no transaction, since nft reads the whole ruleset
        // for each one (tens of ms at 1,000 Services).
        if self.in_kernel && update.is_empty() {
            return Ok(started.elapsed());
        }
        let result = if self.in_kernel {
            run("nft", &["-f", "-"], Some(&update.text())).or_else(|e| {
                // The kernel may not hold what we think (someone touched the table): replace it.
                tracing::warn!(error = %e, "incremental nft update failed; replacing the table");
                run("nft", &["-f", "-"], Some(&rules.full_text()))
            })
        } else {
            run("nft", &["-f", "-"], Some(&rules.full_text()))
        };
        let elapsed = started.elapsed();
        self.in_kernel = result.is_ok();
        self.stale_flows.extend(update.stale_udp_flows());
        result?;
        let stale = std::mem::take(&mut self.stale_flows);
        self.flush_conntrack(&stale);
        Ok(elapsed)
    }

    /// Deletes the conntrack entries of UDP flows whose endpoint is gone (upstream does the
    /// same), with conntrack(8). Best effort: a missing tool is reported once.
    fn flush_conntrack(&mut self, flows: &BTreeSet<UdpFlow>) {
        for flow in flows {
            let (port, endpoint) = (flow.port.to_string(), flow.endpoint.to_string());
            let mut args = vec!["-D", "-p", "udp", "--orig-port-dst", &port, "--reply-src", &endpoint];
            let dst = flow.dst.map(|d| d.to_string());
            if let Some(d) = &dst {
                args.extend(["--orig-dst", d]);
            }
            match Command::new("conntrack").args(&args).stdout(Stdio::null()).stderr(Stdio::null()).status() {
                // Exit 1: no entry matched, which is the common case.
                Ok(_) => CONNTRACK_FLUSHES.with_label_values(&["success"]).inc(),
                Err(e) => {
                    CONNTRACK_FLUSHES.with_label_values(&["error"]).inc();
                    if !self.conntrack_missing_reported {
                        self.conntrack_missing_reported = true;
                        tracing::warn!(error = %e, "conntrack(8) not runnable: stale UDP flows are not flushed (install conntrack)");
                    }
                }
            }
        }
    }

    fn host_setup(&mut self) -> Result<(), ProxierError> {
        if self.config.rules.localhost_nodeports && self.saved_route_localnet.is_none() {
            let old = std::fs::read_to_string(ROUTE_LOCALNET)
                .map_err(|source| ProxierError::Sysctl { path: ROUTE_LOCALNET, source })?;
            std::fs::write(ROUTE_LOCALNET, "1")
                .map_err(|source| ProxierError::Sysctl { path: ROUTE_LOCALNET, source })?;
            self.saved_route_localnet = Some(old.trim().to_string());
        }
        if let (Some(cidr), false) = (&self.config.service_cidr, self.route_installed) {
            // The pod bridge appears with the node's first pod; until then only the node's own
            // connections to ClusterIPs lack their route, so the rules go in regardless and the
            // route is tried again at the next sync.
            match run("ip", &["route", "replace", cidr, "dev", &self.config.route_dev], None) {
                Ok(()) => self.route_installed = true,
                Err(e) => {
                    tracing::debug!(error = %e, dev = %self.config.route_dev, "service CIDR route not installed yet")
                }
            }
        }
        Ok(())
    }

    /// Removes the table, the route and restores route_localnet. Idempotent.
    pub fn cleanup(&mut self) -> Result<(), ProxierError> {
        let t = &self.config.rules.table;
        let mut first_error = run("nft", &["-f", "-"], Some(&format!("add table ip {t}\ndelete table ip {t}\n"))).err();
        self.in_kernel = false;
        if let (Some(cidr), true) = (&self.config.service_cidr, self.route_installed) {
            if let Err(e) = run("ip", &["route", "del", cidr, "dev", &self.config.route_dev], None) {
                first_error.get_or_insert(e);
            }
            self.route_installed = false;
        }
        if let Some(old) = self.saved_route_localnet.take() {
            if let Err(source) = std::fs::write(ROUTE_LOCALNET, old) {
                first_error.get_or_insert(ProxierError::Sysctl { path: ROUTE_LOCALNET, source });
            }
        }
        first_error.map_or(Ok(()), Err)
    }
}

impl Drop for Proxier {
    fn drop(&mut self) {
        if let Err(e) = self.cleanup() {
            tracing::warn!(error = %e, "kube-proxy cleanup failed");
        }
    }
}
