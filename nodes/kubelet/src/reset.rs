//! `kubus node-reset`: removes everything a node agent made on its host, in the order a pod's
//! own teardown uses: containers (and their shims), rootfs and volume mounts, pod sandboxes
//! (CNI DEL, pinned namespaces), routes to other nodes' pods, the pod bridge, the pods' cgroups.
//! Images stay.

use crate::KubeletError;
use std::ffi::OsString;
use std::path::{Path, PathBuf};

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

/// Where a node's state is, for a `--data-dir` that may be `kubus up`'s (the node's state in
/// its `node/`) or a node agent's own (`kubus node --data-dir`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StateDir {
    /// The directory is a node agent's own.
    Node(PathBuf),
    /// The directory is `kubus up`'s; the node's state is in its `node/` (this path).
    Up(PathBuf),
}

impl StateDir {
    /// Tells the layouts apart by what each writes: a node's state has its runtime, pods,
    /// images and network files; `kubus up`'s has its lock, NATS URL, kubeconfig and `node/`.
    /// A directory with neither (not made yet) is taken as given.
    pub fn find(data_dir: &Path) -> StateDir {
        const NODE: &[&str] = &["node.lock", "runtime", "runc", "pods", "images", NETWORK_FILE, "routes.json"];
        const UP: &[&str] = &["kubus.lock", "nats.url", "kubeconfig"];
        let has = |dir: &Path, names: &[&str]| names.iter().any(|n| dir.join(n).exists());
        let node = data_dir.join("node");
        if has(data_dir, NODE) {
            StateDir::Node(data_dir.to_path_buf())
        } else if has(&node, NODE) || has(data_dir, UP) {
            StateDir::Up(node)
        } else {
            StateDir::Node(data_dir.to_path_buf())
        }
    }

    /// Whether the directory holds something only a node agent writes (its lock, runtime
    /// state, saved network or routes), so that resetting it cannot remove a user's files: a
    /// `pods` or `images` directory alone does not make one. A missing or empty directory
    /// holds nothing to lose and is accepted.
    pub fn is_node_state(&self) -> bool {
        const WRITTEN_BY_AGENT: &[&str] = &["node.lock", "runtime", "runc", NETWORK_FILE, "routes.json"];
        let dir = self.path();
        let empty = std::fs::read_dir(dir).map_or(true, |mut entries| entries.next().is_none());
        empty || WRITTEN_BY_AGENT.iter().any(|n| dir.join(n).exists())
    }

    pub fn path(&self) -> &Path {
        match self {
            StateDir::Node(p) | StateDir::Up(p) => p,
        }
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
        let what = describe(&c);
        let _ = runtime.kill(&c.id, 9, true).await;
        match runtime.delete(&c.id).await {
            Ok(()) => report.push(format!("removed container {what}")),
            Err(e) => report.push(format!("container {what}: {e}")),
        }
    }
    let pods = state_dir.join("pods");
    // Only what the agent made there: a directory per pod, named by the pod's UID.
    let pod_dirs = std::fs::read_dir(&pods).into_iter().flatten().flatten().filter(|e| {
        e.file_type().is_ok_and(|t| t.is_dir())
            && e.file_name().to_str().is_some_and(|n| uuid::Uuid::parse_str(n).is_ok())
    });
    for e in pod_dirs {
        // Containers' overlay rootfs, then the pod's volumes (tmpfs, binds, projected files).
        let mut mounted = crate::volumes::mounts_under(&e.path());
        mounted.dedup();
        for c in std::fs::read_dir(e.path().join("containers")).into_iter().flatten().flatten() {
            if let Err(err) = kubus_image::ImageStore::unmount_rootfs(&c.path()) {
                report.push(format!("rootfs {}: {err}", c.path().join("rootfs").display()));
            }
        }
        let torn_down = crate::volumes::teardown(&e.path());
        let left = crate::volumes::mounts_under(&e.path());
        for m in mounted.iter().filter(|m| !left.contains(m)) {
            report.push(format!("unmounted {}", m.display()));
        }
        match torn_down {
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
        // Ready sandboxes pin their namespaces with mounts in their directory; half-made ones
        // may hold a few.
        let sandboxes: Vec<(String, Option<PathBuf>)> = network
            .list()
            .into_iter()
            .map(|s| (s.uid, Some(s.dir)))
            .chain(network.list_incomplete().into_iter().map(|uid| (uid, None)))
            .collect();
        for (uid, dir) in sandboxes {
            let mut pinned = dir.as_deref().map(crate::volumes::mounts_under).unwrap_or_default();
            pinned.dedup();
            let removed = network.remove(&uid).await;
            let left = dir.as_deref().map(crate::volumes::mounts_under).unwrap_or_default();
            for m in pinned.iter().filter(|m| !left.contains(m)) {
                report.push(format!("unmounted {}", m.display()));
            }
            match removed {
                Ok(()) => report.push(format!("removed sandbox {uid}")),
                Err(e) => report.push(format!("sandbox {uid}: {e}")),
            }
        }
        match network.remove_node_network().await {
            Ok(()) => report.push(format!("removed bridge {bridge}")),
            Err(e) => report.push(format!("bridge {bridge}: {e}")),
        }
    }
    // Reported only if it was there: the report lists what the reset removed.
    let layout = kubus_container_runtime::cgroups::CgroupLayout::detect();
    match layout.and_then(|l| Ok(if l.exists(cgroup_root)? { Some(l.remove(cgroup_root)) } else { None })) {
        Ok(None) => {}
        Ok(Some(Ok(()))) => report.push(format!("removed cgroup {cgroup_root}")),
        Ok(Some(Err(e))) | Err(e) => report.push(format!("cgroup {cgroup_root}: {e}")),
    }
    Ok(report)
}

/// A container as the report names it: its id, pod, container name and shim.
fn describe(c: &kubus_container_runtime::ContainerInfo) -> String {
    let label = |k: &str| c.labels.get(k).map(String::as_str).unwrap_or("?");
    let shim = match c.shim_pid {
        Some(pid) => format!("and its shim (pid {pid})"),
        None => "(its shim was gone)".to_string(),
    };
    format!(
        "{} of pod {}/{} ({}) {shim}",
        c.id,
        label(crate::LABEL_POD_NAMESPACE),
        label(crate::LABEL_POD_NAME),
        label(crate::LABEL_CONTAINER)
    )
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

    #[test]
    fn the_node_state_is_found_in_either_layout() {
        let root = std::env::temp_dir().join(format!("kubus-reset-layout-{}", std::process::id()));
        // `kubus up --data-dir D`: D holds its lock and the node's state in D/node.
        let up = root.join("up");
        std::fs::create_dir_all(up.join("node/runtime")).unwrap();
        std::fs::write(up.join("kubus.lock"), b"").unwrap();
        assert_eq!(StateDir::find(&up), StateDir::Up(up.join("node")));
        assert_eq!(StateDir::find(&up.join("node")), StateDir::Node(up.join("node")));
        // Before its node agent made anything, `kubus up`'s dir still means its node/.
        let fresh_up = root.join("fresh-up");
        std::fs::create_dir_all(&fresh_up).unwrap();
        std::fs::write(fresh_up.join("kubeconfig"), b"").unwrap();
        assert_eq!(StateDir::find(&fresh_up), StateDir::Up(fresh_up.join("node")));
        // `kubus node --data-dir D`: D is the node's own, even when named node.
        let own = root.join("agent");
        std::fs::create_dir_all(own.join("images")).unwrap();
        std::fs::write(own.join("node.lock"), b"").unwrap();
        assert_eq!(StateDir::find(&own), StateDir::Node(own.clone()));
        // A directory not made yet is taken as given.
        assert_eq!(StateDir::find(&root.join("none")), StateDir::Node(root.join("none")));
        // Each of those is a node's state; a user's directory with a `pods` folder is not.
        for dir in [&up, &up.join("node"), &fresh_up, &own, &root.join("none")] {
            assert!(StateDir::find(dir).is_node_state(), "{}", dir.display());
        }
        let manifests = root.join("manifests");
        std::fs::create_dir_all(manifests.join("pods")).unwrap();
        std::fs::write(manifests.join("pods/web.yaml"), b"kind: Pod").unwrap();
        assert!(!StateDir::find(&manifests).is_node_state());
        std::fs::remove_dir_all(&root).unwrap();
    }
}
