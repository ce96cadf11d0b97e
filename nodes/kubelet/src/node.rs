//! The node object: registration with the machine's real capacity, its Lease in
//! kube-node-lease (the heartbeat the node lifecycle controller watches), and status updates
//! (conditions, addresses, node info, images) when something changed or every minute.

use kubus_apimachinery::table::{format_rfc3339, format_rfc3339_micro};
use kubus_runtime::Client;
use serde_json::{json, Value};
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

/// The Node as registered; a node configured with its own pod CIDR says so in its spec (the
/// IPAM controller then leaves it alone).
pub fn node_object(name: &str, arch: &str, labels: &[(String, String)], pod_cidr: Option<&str>) -> Value {
    let mut l = json!({"kubernetes.io/hostname": name, "kubernetes.io/os": "linux", "kubernetes.io/arch": arch,
        "beta.kubernetes.io/os": "linux", "beta.kubernetes.io/arch": arch});
    for (k, v) in labels {
        l[k] = json!(v);
    }
    let spec = match pod_cidr {
        Some(c) => json!({"podCIDR": c, "podCIDRs": [c]}),
        None => json!({}),
    };
    json!({"apiVersion": "v1", "kind": "Node", "metadata": {"name": name, "labels": l}, "spec": spec})
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
    pub previous: &'a Value,
}

pub fn node_status(s: &StatusInput<'_>) -> Value {
    let now = format_rfc3339(SystemTime::now());
    let m = s.machine;
    let capacity = json!({"cpu": m.cpus.to_string(), "memory": format!("{}Ki", m.memory_bytes / 1024),
        "pods": s.max_pods.to_string(), "ephemeral-storage": format!("{}Ki", m.storage_bytes / 1024)});
    let previous = s.previous["status"]["conditions"].as_array().cloned().unwrap_or_default();
    let cond = |t: &str, st: &str, reason: &str, msg: &str| {
        let since = previous
            .iter()
            .find(|c| c["type"] == t && c["status"] == st)
            .and_then(|c| c["lastTransitionTime"].as_str().map(String::from))
            .unwrap_or_else(|| now.clone());
        json!({"type": t, "status": st, "reason": reason, "message": msg, "lastHeartbeatTime": now, "lastTransitionTime": since})
    };
    let ready = match &s.not_ready {
        None => cond("Ready", "True", "KubeletReady", "kubelet is posting ready status"),
        Some(why) => cond("Ready", "False", "KubeletNotReady", why),
    };
    let mut images: Vec<Value> =
        s.images.iter().map(|(names, size)| json!({"names": names, "sizeBytes": size})).collect();
    images.truncate(50);
    json!({"status": {
        "capacity": capacity, "allocatable": capacity,
        "conditions": [
            cond("MemoryPressure", "False", "KubeletHasSufficientMemory", "kubelet has sufficient memory available"),
            cond("DiskPressure", "False", "KubeletHasNoDiskPressure", "kubelet has no disk pressure"),
            cond("PIDPressure", "False", "KubeletHasSufficientPID", "kubelet has sufficient PID available"),
            ready,
        ],
        "addresses": [{"type": "InternalIP", "address": s.ip.to_string()}, {"type": "Hostname", "address": s.hostname}],
        "nodeInfo": {"kubeletVersion": "v1.32.0-kubus", "kubeProxyVersion": "v1.32.0-kubus", "osImage": m.os_image,
            "kernelVersion": m.kernel, "containerRuntimeVersion": concat!("kubus://", env!("CARGO_PKG_VERSION")),
            "operatingSystem": "linux", "architecture": m.arch, "machineID": m.machine_id, "systemUUID": m.machine_id,
            "bootID": m.boot_id},
        "daemonEndpoints": {"kubeletEndpoint": {"Port": 10250}},
        "images": images,
    }})
}

/// Renews (or creates) the node's Lease.
pub async fn renew_lease(client: &Client, node: &str, duration_seconds: u64) -> Result<(), String> {
    let now = format_rfc3339_micro(SystemTime::now());
    let spec = json!({"holderIdentity": node, "leaseDurationSeconds": duration_seconds, "renewTime": now});
    match client
        .merge_patch("coordination.k8s.io", "leases", Some("kube-node-lease"), node, None, &json!({"spec": spec}))
        .await
    {
        Ok(_) => Ok(()),
        Err(e) if e.is_not_found() => {
            let lease = json!({"apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
                "metadata": {"name": node, "namespace": "kube-node-lease"}, "spec": spec});
            client
                .create("coordination.k8s.io", "leases", Some("kube-node-lease"), &lease)
                .await
                .map(|_| ())
                .map_err(|e| e.to_string())
        }
        Err(e) => Err(e.to_string()),
    }
}

/// Status without the timestamps, to tell a real change from a heartbeat.
pub fn without_times(v: &Value) -> Value {
    let mut v = v.clone();
    if let Some(cs) = v["status"]["conditions"].as_array_mut() {
        for c in cs {
            if let Some(o) = c.as_object_mut() {
                o.remove("lastHeartbeatTime");
                o.remove("lastTransitionTime");
            }
        }
    }
    v
}
