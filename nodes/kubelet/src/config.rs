//! The node agent's configuration (kubelet's flags).

use std::net::IpAddr;
use std::path::PathBuf;
use std::time::Duration;

#[derive(Debug, Clone)]
pub struct KubeletConfig {
    pub node_name: String,
    /// Where pods, shims, images and sandboxes keep their state.
    pub state_dir: PathBuf,
    /// Container logs (`<ns>_<pod>_<uid>/<container>/<n>.log`), like /var/log/pods.
    pub log_dir: PathBuf,
    /// How to start a shim: the kubus binary and `shim`.
    pub shim_command: Vec<std::ffi::OsString>,
    /// Parent cgroup of every pod (cgroupfs layout, like kubelet's `/kubepods`).
    pub cgroup_root: String,
    pub cluster: String,
    pub node_ip: Option<IpAddr>,
    /// k3s-style registries.yaml (mirrors, auth).
    pub registries: Option<PathBuf>,
    /// A pod CIDR for this node; otherwise the controller manager assigns one.
    pub pod_cidr: Option<String>,
    /// Linux bridge the pods attach to.
    pub bridge: String,
    /// The cluster's pod range (traffic to it is not masqueraded).
    pub cluster_cidr: Option<String>,
    /// The cluster DNS Service's address, for pods with dnsPolicy ClusterFirst (kubelet's
    /// --cluster-dns); None: pods use the node's resolvers.
    pub cluster_dns: Option<IpAddr>,
    /// kubelet's --cluster-domain.
    pub cluster_domain: String,
    pub lease_duration: Duration,
    pub max_pods: u32,
    pub labels: Vec<(String, String)>,
    /// Image files (OCI archives, docker-save tarballs) imported at start.
    pub import_dir: Option<PathBuf>,
    /// Build the `busybox` image from the host's busybox-static when it is missing.
    pub busybox: Option<PathBuf>,
    /// How often the usage of pods is collected and reported (cAdvisor's housekeeping
    /// interval); disk use is walked every minute at most. Zero turns collection off.
    pub housekeeping_interval: Duration,
}

impl KubeletConfig {
    pub fn new(node_name: &str, state_dir: PathBuf, shim_command: Vec<std::ffi::OsString>) -> Self {
        KubeletConfig {
            node_name: node_name.to_string(),
            log_dir: PathBuf::from("/var/log/pods"),
            state_dir,
            shim_command,
            cgroup_root: "/kubus".into(),
            cluster: "kubus".into(),
            node_ip: None,
            registries: None,
            pod_cidr: None,
            bridge: "kubus0".into(),
            cluster_cidr: None,
            cluster_dns: None,
            cluster_domain: "cluster.local".into(),
            lease_duration: Duration::from_secs(40),
            max_pods: 110,
            labels: vec![],
            import_dir: None,
            busybox: Some(PathBuf::from("/bin/busybox")),
            housekeeping_interval: kubus_bus::usage::REPORT_PERIOD,
        }
    }
}
