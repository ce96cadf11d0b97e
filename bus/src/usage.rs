//! Resource usage reports from node agents to API servers: what metrics-server scrapes from
//! each kubelet's `/metrics/resource`, pushed here instead.
//!
//! Core NATS (no JetStream: usage is never stored, a lost report is replaced by the next one).
//! Each node publishes on its own subject `kubus.<cluster>.node.<node>.usage` (the node name
//! escaped as an object subject token), so NATS permissions can confine a node to publishing
//! its own; every API server subscribes to all nodes (no queue group: each keeps the latest
//! report of every node) and takes the node's name from the subject, never from the payload.
//! Payloads are bincode, as the API envelopes.

use serde::{Deserialize, Serialize};

/// How often a node publishes its usage (metrics-server's default resolution is 15 s).
pub const REPORT_PERIOD: std::time::Duration = std::time::Duration::from_secs(10);

/// The subject node `node` publishes its usage on.
pub fn subject(cluster: &str, node: &str) -> String {
    format!("kubus.{cluster}.node.{}.usage", crate::store::key::encode_token(node))
}

/// The subject of every node's usage (for the API server's subscription).
pub fn all_nodes_subject(cluster: &str) -> String {
    format!("kubus.{cluster}.node.*.usage")
}

/// The node name a usage subject carries (None: not a usage subject of `cluster`).
pub fn node_of_subject(cluster: &str, subject: &str) -> Option<String> {
    let token = subject.strip_prefix(&format!("kubus.{cluster}.node."))?.strip_suffix(".usage")?;
    if token.contains('.') {
        return None;
    }
    crate::store::key::decode_token(token)
}

/// CPU and memory of a node, a pod or a container over the report's window.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct Usage {
    /// Average CPU use over the window, in nanocores (1e9 = one core busy).
    pub cpu_nanocores: u64,
    /// Working set (usage minus inactive file pages) at the window's end, in bytes.
    pub memory_working_set_bytes: u64,
}

/// Disk use below a directory, as the kubelet's summary gives it (`usedBytes`, `inodesUsed`):
/// allocated blocks in bytes, and inodes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct FsUsage {
    pub used_bytes: u64,
    pub inodes_used: u64,
}

impl std::ops::AddAssign for FsUsage {
    fn add_assign(&mut self, o: FsUsage) {
        self.used_bytes += o.used_bytes;
        self.inodes_used += o.inodes_used;
    }
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ContainerUsage {
    pub name: String,
    pub usage: Usage,
    /// The container's writable layer (the summary's `rootfs`), as last measured.
    pub rootfs: Option<FsUsage>,
    /// Its log files (the summary's `logs`).
    pub logs: Option<FsUsage>,
}

/// One of a pod's volumes the node measures (emptyDirs).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct VolumeUsage {
    pub name: String,
    pub fs: FsUsage,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct PodUsage {
    pub namespace: String,
    pub name: String,
    /// The pod's uid: usage of a pod deleted and recreated under its name is not the new one's.
    pub uid: String,
    pub containers: Vec<ContainerUsage>,
    /// Writable layers, logs and disk-backed emptyDirs together (the summary's
    /// `ephemeral-storage`); None until the pod's disk use was first measured.
    pub ephemeral_storage: Option<FsUsage>,
    /// The summary's `volume` stats: each emptyDir.
    pub volumes: Vec<VolumeUsage>,
}

/// One node's usage: the node's and that of every pod with running containers.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct UsageReport {
    /// When the window ended (the last sample), milliseconds since the Unix epoch.
    pub timestamp_ms: u64,
    /// Length of the window the CPU rates were computed over, milliseconds.
    pub window_ms: u64,
    pub node: Usage,
    pub pods: Vec<PodUsage>,
}

impl UsageReport {
    pub fn encode(&self) -> Result<Vec<u8>, crate::api::EnvelopeError> {
        crate::api::encode(self)
    }
    pub fn decode(bytes: &[u8]) -> Result<Self, crate::api::EnvelopeError> {
        crate::api::decode(bytes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subjects_name_the_node() {
        let s = subject("c1", "node-1.example");
        assert_eq!(s, "kubus.c1.node.node-1_2eexample.usage");
        assert_eq!(node_of_subject("c1", &s).as_deref(), Some("node-1.example"));
        assert_eq!(node_of_subject("c2", &s), None);
        assert_eq!(node_of_subject("c1", "kubus.c1.node.a.b.usage"), None);
    }

    #[test]
    fn reports_round_trip() {
        let r = UsageReport {
            timestamp_ms: 1,
            window_ms: 10_000,
            node: Usage { cpu_nanocores: 5, memory_working_set_bytes: 6 },
            pods: vec![PodUsage {
                namespace: "ns".into(),
                name: "p".into(),
                uid: "u".into(),
                containers: vec![ContainerUsage {
                    name: "c".into(),
                    rootfs: Some(FsUsage { used_bytes: 4096, inodes_used: 2 }),
                    ..Default::default()
                }],
                ephemeral_storage: Some(FsUsage { used_bytes: 8192, inodes_used: 5 }),
                volumes: vec![VolumeUsage { name: "scratch".into(), fs: FsUsage { used_bytes: 4096, inodes_used: 3 } }],
            }],
        };
        assert_eq!(UsageReport::decode(&r.encode().unwrap()).unwrap(), r);
    }
}
