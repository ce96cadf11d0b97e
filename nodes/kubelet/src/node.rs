//! The node object: registration with the machine's real capacity, its Lease in
//! kube-node-lease (the heartbeat the node lifecycle controller watches), and status updates
//! (conditions, addresses, node info, images) when something changed or every minute.

use k8s_openapi::api::core::v1::{
    ContainerImage, DaemonEndpoint, Node, NodeAddress, NodeDaemonEndpoints, NodeSpec, NodeStatus, NodeSystemInfo,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kubus_apimachinery::conditions::node_conditions;
use kubus_apimachinery::time::time;
use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::Path;
use std::time::SystemTime;

/// What the node reports about the machine.
#[derive(Debug, Clone)]
pub struct Machine {
    pub cpus: usize,
    pub memory_bytes: u64,
    pub storage_bytes: u64,
    pub kernel: String,
    pub os_image: String,
    pub machine_id: String,
    pub boot_id: String,
    pub arch: &'static str,
}

impl Machine {
    pub fn probe(state_dir: &Path) -> Machine {
        let read = |p: &str| std::fs::read_to_string(p).unwrap_or_default().trim().to_string();
        let memory_bytes = read("/proc/meminfo")
            .lines()
            .find(|l| l.starts_with("MemTotal:"))
            .and_then(|l| l.split_whitespace().nth(1)?.parse::<u64>().ok())
            .map(|kb| kb * 1024)
            .unwrap_or(0);
        let storage_bytes = nix::sys::statvfs::statvfs(state_dir).map(|s| s.blocks() * s.fragment_size()).unwrap_or(0);
        let os_image = read("/etc/os-release")
            .lines()
            .find_map(|l| l.strip_prefix("PRETTY_NAME=").map(|v| v.trim_matches('"').to_string()))
            .unwrap_or_else(|| "Linux".into());
        Machine {
            cpus: std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1),
            memory_bytes,
            storage_bytes,
            kernel: read("/proc/sys/kernel/osrelease"),
            os_image,
            machine_id: read("/etc/machine-id"),
            boot_id: read("/proc/sys/kernel/random/boot_id"),
            arch: match std::env::consts::ARCH {
                "x86_64" => "amd64",
                "aarch64" => "arm64",
                other => other,
            },
        }
    }

    /// What pods may use of the machine (resourceFieldRef of a container without a limit).
    pub fn allocatable(&self) -> BTreeMap<String, Quantity> {
        [("cpu", self.cpus.to_string()), ("memory", self.memory_bytes.to_string())]
            .into_iter()
            .map(|(k, v)| (k.to_string(), Quantity(v)))
            .collect()
    }
}

/// The address other machines reach this node at: the source address of the default route
/// (a connected UDP socket sends nothing), or loopback on a machine without one.
pub fn default_node_ip() -> IpAddr {
    std::net::UdpSocket::bind("0.0.0.0:0")
        .and_then(|s| s.connect("192.0.2.1:9").map(|_| s))
        .and_then(|s| s.local_addr())
        .map(|a| a.ip())
        .unwrap_or(IpAddr::from([127, 0, 0, 1]))
}

/// The annotation a node lists the volume drivers it runs in (CSI's), and this agent's: the
/// local-path provisioner (see [`crate::local_path`]).
pub const NODE_DRIVERS: &str = "csi.volume.kubernetes.io/nodeid";

pub fn drivers(name: &str) -> String {
    serde_json::json!({ kubus_apimachinery::volume::LOCAL_PATH_PROVISIONER: name }).to_string()
}

/// The Node as registered; a node configured with its own pod CIDR says so in its spec (the
/// IPAM controller then leaves it alone).
pub fn node_object(name: &str, arch: &str, labels: &[(String, String)], pod_cidr: Option<&str>) -> Node {
    let mut l: BTreeMap<String, String> = [
        ("kubernetes.io/hostname", name),
        ("kubernetes.io/os", "linux"),
        ("kubernetes.io/arch", arch),
        ("beta.kubernetes.io/os", "linux"),
        ("beta.kubernetes.io/arch", arch),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    l.extend(labels.iter().cloned());
    Node {
        metadata: ObjectMeta {
            name: Some(name.to_string()),
            labels: Some(l),
            annotations: Some([(NODE_DRIVERS.to_string(), drivers(name))].into()),
            ..Default::default()
        },
        spec: Some(NodeSpec {
            pod_cidr: pod_cidr.map(String::from),
            pod_cidrs: pod_cidr.map(|c| vec![c.to_string()]),
            ..Default::default()
        }),
        status: None,
    }
}

pub struct StatusInput<'a> {
    pub name: &'a str,
    pub machine: &'a Machine,
    pub max_pods: u32,
    pub ip: IpAddr,
    pub hostname: &'a str,
    /// `(names, size)` of the images on the node.
    pub images: Vec<(Vec<String>, u64)>,
    /// Why the node is not ready (e.g. no pod CIDR yet), if it is not.
    pub not_ready: Option<String>,
    pub previous: Option<&'a Node>,
}

pub fn node_status(s: &StatusInput<'_>) -> NodeStatus {
    let now = time(SystemTime::now());
    let m = s.machine;
    let capacity: BTreeMap<String, Quantity> = [
        ("cpu", m.cpus.to_string()),
        ("memory", format!("{}Ki", m.memory_bytes / 1024)),
        ("pods", s.max_pods.to_string()),
        ("ephemeral-storage", format!("{}Ki", m.storage_bytes / 1024)),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), Quantity(v)))
    .collect();
    let previous = s.previous.and_then(|n| n.status.as_ref()).and_then(|st| st.conditions.as_deref()).unwrap_or(&[]);
    let mut images: Vec<ContainerImage> = s
        .images
        .iter()
        .map(|(names, size)| ContainerImage { names: Some(names.clone()), size_bytes: Some(*size as i64) })
        .collect();
    images.truncate(50);
    NodeStatus {
        capacity: Some(capacity.clone()),
        allocatable: Some(capacity),
        conditions: Some(node_conditions(s.not_ready.as_deref(), &now, previous)),
        addresses: Some(vec![
            NodeAddress { type_: "InternalIP".into(), address: s.ip.to_string() },
            NodeAddress { type_: "Hostname".into(), address: s.hostname.to_string() },
        ]),
        node_info: Some(NodeSystemInfo {
            kubelet_version: "v1.32.0-kubus".into(),
            kube_proxy_version: "v1.32.0-kubus".into(),
            os_image: m.os_image.clone(),
            kernel_version: m.kernel.clone(),
            container_runtime_version: concat!("kubus://", env!("CARGO_PKG_VERSION")).into(),
            operating_system: "linux".into(),
            architecture: m.arch.into(),
            machine_id: m.machine_id.clone(),
            system_uuid: m.machine_id.clone(),
            boot_id: m.boot_id.clone(),
        }),
        daemon_endpoints: Some(NodeDaemonEndpoints { kubelet_endpoint: Some(DaemonEndpoint { port: 10250 }) }),
        images: Some(images),
        ..Default::default()
    }
}

/// Status without the timestamps, to tell a real change from a heartbeat.
pub fn without_times(status: &NodeStatus) -> NodeStatus {
    let mut s = status.clone();
    for c in s.conditions.iter_mut().flatten() {
        c.last_heartbeat_time = None;
        c.last_transition_time = None;
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use kubus_apimachinery::{conditions, ObjectExt};
    use serde_json::json;
    use std::time::Duration;

    #[test]
    fn conditions_keep_their_transition_times() {
        let then = time(SystemTime::UNIX_EPOCH + Duration::from_secs(1000));
        let now = time(SystemTime::UNIX_EPOCH + Duration::from_secs(2000));
        let first = node_conditions(None, &then, &[]);
        assert_eq!(
            first.iter().map(|c| c.type_.as_str()).collect::<Vec<_>>(),
            ["MemoryPressure", "DiskPressure", "PIDPressure", "Ready"]
        );
        assert_eq!(conditions::status(Some(&first), "Ready"), Some("True"));
        let again = node_conditions(None, &now, &first);
        assert!(again.iter().all(|c| c.last_transition_time == Some(then.clone())));
        assert!(again.iter().all(|c| c.last_heartbeat_time == Some(now.clone())));
        let down = node_conditions(Some("network plugin not ready"), &now, &first);
        let ready = conditions::find(Some(&down), "Ready").unwrap();
        assert_eq!((ready.status.as_str(), ready.reason.as_deref()), ("False", Some("KubeletNotReady")));
        assert_eq!(ready.last_transition_time, Some(now.clone()), "a new status starts a new transition");
        assert_eq!(down[0].last_transition_time, Some(then), "an unchanged one keeps its time");
    }

    #[test]
    fn status_and_registration() {
        let machine = Machine {
            cpus: 2,
            memory_bytes: 4 << 30,
            storage_bytes: 10 << 30,
            kernel: "6.1".into(),
            os_image: "Debian".into(),
            machine_id: "m".into(),
            boot_id: "b".into(),
            arch: "amd64",
        };
        let input = || StatusInput {
            name: "n1",
            machine: &machine,
            max_pods: 110,
            ip: "10.0.0.1".parse().unwrap(),
            hostname: "host",
            images: vec![(vec!["busybox".into()], 42)],
            not_ready: None,
            previous: None,
        };
        let status = node_status(&input());
        let v = serde_json::to_value(&status).unwrap();
        assert_eq!(
            v["capacity"],
            json!({"cpu": "2", "memory": "4194304Ki", "pods": "110", "ephemeral-storage": "10485760Ki"})
        );
        assert_eq!(v["daemonEndpoints"], json!({"kubeletEndpoint": {"Port": 10250}}));
        assert_eq!(v["images"], json!([{"names": ["busybox"], "sizeBytes": 42}]));
        assert_eq!(v["nodeInfo"]["kubeletVersion"], "v1.32.0-kubus");
        assert_eq!(without_times(&status), without_times(&node_status(&input())), "a heartbeat is no change");
        let node = node_object("n1", "amd64", &[("zone".into(), "a".into())], Some("10.244.1.0/24"));
        assert_eq!(node.label("kubernetes.io/hostname"), Some("n1"));
        assert_eq!(node.label("zone"), Some("a"));
        assert_eq!(
            serde_json::to_value(node.spec).unwrap(),
            json!({"podCIDR": "10.244.1.0/24", "podCIDRs": ["10.244.1.0/24"]})
        );
    }
}
