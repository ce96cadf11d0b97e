//! Pod sandboxes and CNI on a Kubus node (design: docs/design/node-agent.md §3).
//!
//! A sandbox is a pod's network, IPC and UTS namespaces pinned to files by bind mounts (no pause
//! process), attached to the node's bridge by the standard CNI plugins (loopback, then bridge +
//! host-local + portmap), plus the pod's hosts, resolv.conf and hostname files. Its state lives
//! under `<state>/pods/<uid>/`, so it outlives the agent.
#![forbid(unsafe_code)]

pub mod claims;
pub mod cni;
pub mod files;
pub mod masq;
pub mod metrics;
pub mod ns;
pub mod routes;
pub mod sandbox;

pub use cni::CniError;
pub use files::{DnsConfig, HostAlias};
pub use routes::{PodRoutes, RouteError, RouteSyncStats, RouteTable};
pub use sandbox::{NetworkError, PortMapping, Protocol, Sandbox, SandboxManager, SandboxRequest};

use std::path::PathBuf;

/// Where Debian's containernetworking-plugins live, then the upstream default.
pub const DEFAULT_CNI_BIN_DIRS: [&str; 2] = ["/usr/lib/cni", "/opt/cni/bin"];

/// The node's pod network.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NetworkConfig {
    /// Searched in order for plugin binaries (`CNI_PATH`).
    pub cni_bin_dirs: Vec<PathBuf>,
    /// `<state>/pods/<uid>/` holds the sandboxes, `<state>/cni/` host-local's reservations.
    pub state_dir: PathBuf,
    /// The Linux bridge pods attach to; at most 15 characters.
    pub bridge: String,
    /// The node's spec.podCIDR, e.g. 10.244.0.0/24.
    pub pod_cidr: String,
    /// The whole cluster's pod range: traffic to it keeps the pod IP as source, everything else
    /// leaving the node is masqueraded. None: masquerade all but the node's own pod CIDR.
    pub cluster_cidr: Option<String>,
    /// MTU of the bridge and pod interfaces; None: the plugin's default.
    pub mtu: Option<u32>,
    /// resolv.conf of pods that bring none of their own.
    pub dns: DnsConfig,
    /// The domain of pod FQDNs (`<hostname>.<subdomain>.<ns>.svc.<domain>`).
    pub cluster_domain: String,
}

impl NetworkConfig {
    /// Defaults: Debian's and upstream's plugin directories, bridge `kubus0`, the node's resolver
    /// configuration minus loopback nameservers, domain `cluster.local`.
    pub fn new(state_dir: impl Into<PathBuf>, pod_cidr: impl Into<String>) -> Self {
        NetworkConfig {
            cni_bin_dirs: DEFAULT_CNI_BIN_DIRS.iter().map(PathBuf::from).collect(),
            state_dir: state_dir.into(),
            bridge: "kubus0".into(),
            pod_cidr: pod_cidr.into(),
            cluster_cidr: None,
            mtu: None,
            // A node without /etc/resolv.conf gives pods none either (glibc then asks localhost).
            dns: DnsConfig::from_node().unwrap_or_default(),
            cluster_domain: "cluster.local".into(),
        }
    }
}
