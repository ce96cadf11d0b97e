//! `kubus node-reset`: removes everything a node agent made on its host, in the order a pod's
//! own teardown uses: containers (and their shims), rootfs and volume mounts, pod sandboxes
//! (CNI DEL, pinned namespaces), routes to other nodes' pods, the pod bridge, the pods' cgroups.
//! Images stay.

use crate::KubeletError;
use std::ffi::OsString;
use std::path::Path;

/// The node's network configuration, saved by the agent for `node-reset`.
pub const NETWORK_FILE: &str = "network.json";

/// What [`NETWORK_FILE`] holds: the configuration CNI ADD saw, which DEL must see too.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct SavedNetwork {
    #[serde(rename = "podCIDR")]
    pub pod_cidr: String,
    #[serde(default, rename = "clusterCIDR")]
    pub cluster_cidr: Option<String>,
    /// Empty in a file without one: the bridge `node-reset` was given.
    #[serde(default)]
    pub bridge: String,
}

impl SavedNetwork {
    pub fn save(&self, state_dir: &Path) -> std::io::Result<()> {
        std::fs::write(state_dir.join(NETWORK_FILE), serde_json::to_vec(self)?)
    }

    pub fn load(state_dir: &Path) -> Option<SavedNetwork> {
        std::fs::read(state_dir.join(NETWORK_FILE)).ok().and_then(|b| serde_json::from_slice(&b).ok())
    }
}

pub async fn reset(
    state_dir: &Path,
    bridge: &str,
    cgroup_root: &str,
    shim_command: Vec<OsString>,
) -> Result<Vec<String>, KubeletError> {
    let mut report = vec![];
    let runtime = kubus_container_runtime::Runtime::new(kubus_container_runtime::RuntimeConfig {
        shim_command,
        state_dir: state_dir.join("runtime"),
        runc_root: state_dir.join("runc"),
        cgroup_root: cgroup_root.to_string(),
    })?;
    for c in runtime.list().await.unwrap_or_default() {
        let _ = runtime.kill(&c.id, 9, true).await;
        match runtime.delete(&c.id).await {
            Ok(()) => report.push(format!("removed container {}", c.id)),
            Err(e) => report.push(format!("container {}: {e}", c.id)),
        }
    }
    let pods = state_dir.join("pods");
    for e in std::fs::read_dir(&pods).into_iter().flatten().flatten() {
        for c in std::fs::read_dir(e.path().join("containers")).into_iter().flatten().flatten() {
            let _ = kubus_image::ImageStore::unmount_rootfs(&c.path());
        }
        match crate::volumes::teardown(&e.path()) {
            Ok(()) => report.push(format!("removed pod dir {}", e.path().display())),
            Err(err) => report.push(format!("pod dir {}: {err}", e.path().display())),
        }
    }
    // Routes to other nodes' pods: exactly those this agent installed.
    match kubus_network::PodRoutes::load(state_dir).map(|mut r| r.remove_all()) {
        Ok(Ok(0)) => {}
        Ok(Ok(n)) => report.push(format!("removed {n} routes to other nodes' pod CIDRs")),
        Ok(Err(e)) | Err(e) => report.push(format!("pod routes: {e}")),
    }
    // The network as the agent configured it: CNI DEL must see the configuration ADD saw.
    if let Some(saved) = SavedNetwork::load(state_dir) {
        let mut cfg = kubus_network::NetworkConfig::new(state_dir.join("network"), saved.pod_cidr.clone());
        cfg.bridge = if saved.bridge.is_empty() { bridge.to_string() } else { saved.bridge.clone() };
        cfg.cluster_cidr = saved.cluster_cidr.clone();
        let network = kubus_network::SandboxManager::new(cfg)?;
        let uids: Vec<String> = network.list().into_iter().map(|s| s.uid).chain(network.list_incomplete()).collect();
        for uid in uids {
            match network.remove(&uid).await {
                Ok(()) => report.push(format!("removed sandbox {uid}")),
                Err(e) => report.push(format!("sandbox {uid}: {e}")),
            }
        }
        match network.remove_node_network().await {
            Ok(()) => report.push(format!("removed bridge {bridge}")),
            Err(e) => report.push(format!("bridge {bridge}: {e}")),
        }
    }
    match kubus_container_runtime::cgroups::CgroupLayout::detect().and_then(|l| l.remove(cgroup_root)) {
        Ok(()) => report.push(format!("removed cgroup {cgroup_root}")),
        Err(e) => report.push(format!("cgroup {cgroup_root}: {e}")),
    }
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_saved_network_reads_back_as_the_agent_wrote_it() {
        let dir = std::env::temp_dir().join(format!("kubus-reset-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        // The file an agent of an earlier version wrote.
        std::fs::write(dir.join(NETWORK_FILE), r#"{"podCIDR":"10.244.0.0/24","clusterCIDR":null,"bridge":"kubus0"}"#)
            .unwrap();
        let saved = SavedNetwork::load(&dir).unwrap();
        assert_eq!(
            saved,
            SavedNetwork { pod_cidr: "10.244.0.0/24".into(), cluster_cidr: None, bridge: "kubus0".into() }
        );
        let other = SavedNetwork { cluster_cidr: Some("10.244.0.0/16".into()), ..saved };
        other.save(&dir).unwrap();
        assert_eq!(SavedNetwork::load(&dir), Some(other));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
