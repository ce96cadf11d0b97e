//! What the agent, its pod workers and its stream server share: the node's [`Host`] (the pod
//! workers' seams), the bus connection, the concrete runtime for streams, and a handle per
//! running pod for `kubectl logs/exec/port-forward`.

use crate::config::KubeletConfig;
use crate::host::Host;
use k8s_openapi::api::core::v1::Pod;
use kubus_apimachinery::ObjectExt;
use kubus_controller_runtime::Client;
use std::collections::HashMap;
use std::sync::{Arc, Mutex, RwLock};

/// What the streaming side (logs, exec, port-forward) needs to know about a pod.
#[derive(Default)]
pub struct PodHandle {
    inner: Mutex<PodHandleInner>,
}

#[derive(Default, Clone)]
pub struct PodHandleInner {
    pub namespace: String,
    pub name: String,
    pub uid: String,
    pub ips: Vec<String>,
    /// container -> (current run id, attempt, running)
    pub containers: HashMap<String, (String, u32, bool)>,
    /// The pod's emptyDir volumes, and whether each is memory-backed (their disk use).
    pub empty_dirs: Vec<(String, bool)>,
}

impl PodHandle {
    pub(crate) fn update(&self, pod: &Pod, ips: &[String], runs: Vec<(String, String, u32, bool)>) {
        let mut g = self.inner.lock().expect("pod handle lock");
        g.namespace = pod.namespace().into();
        g.name = pod.name().into();
        g.uid = pod.uid().into();
        g.ips = ips.to_vec();
        g.containers = runs.into_iter().map(|(n, id, a, r)| (n, (id, a, r))).collect();
        g.empty_dirs = kubus_apimachinery::pod::spec(pod)
            .volumes
            .iter()
            .flatten()
            .filter_map(|v| {
                let e = v.empty_dir.as_ref()?;
                Some((v.name.clone(), e.medium.as_deref() == Some("Memory")))
            })
            .collect();
    }
    pub(crate) fn clear(&self) {
        self.inner.lock().expect("pod handle lock").containers.clear();
    }
    pub fn snapshot(&self) -> PodHandleInner {
        self.inner.lock().expect("pod handle lock").clone()
    }
}

/// Shared by the agent, its pod workers and its stream server.
pub struct NodeContext {
    /// The node as pod workers use it.
    pub host: Arc<Host>,
    pub client: Client,
    /// The bus connection (node streams are served on it).
    pub nats: async_nats::Client,
    /// The shim runtime itself: exec, attach and log follows talk to it directly.
    pub runtime: Arc<kubus_container_runtime::Runtime>,
    /// The image store itself (node status, garbage collection).
    pub images: kubus_image::ImageStore,
    /// The pod network, once the node has a pod CIDR (shared with the sandbox adapter).
    pub network: Arc<tokio::sync::RwLock<Option<kubus_network::SandboxManager>>>,
    /// (namespace, name) -> handle of the pod's worker.
    pub pods: RwLock<HashMap<(String, String), Arc<PodHandle>>>,
}

impl NodeContext {
    pub fn config(&self) -> &KubeletConfig {
        &self.host.config
    }
}
