//! The node as a pod worker sees it: the kubelet's configuration and the services pods run
//! with, each behind a trait (upstream's seams: the container runtime, the sandbox manager, the
//! image service, the pod cgroup manager and the API server), so the worker's logic is tested
//! against fakes without root. The real implementations are thin adapters ([`adapters`]).

pub mod adapters;
mod services;

pub use services::ServiceLookup;

use crate::config::KubeletConfig;
use crate::node::Machine;
use crate::objects::{ObjectSource, TokenSource};
use futures::future::BoxFuture;
use k8s_openapi::api::core::v1::{Pod, PodStatus};
use kubus_container_runtime::cgroups::{CgroupError, CgroupResources, QosClass};
use kubus_container_runtime::{ContainerInfo, ContainerState, CreateContainer, ExitInfo, RuntimeError};
use kubus_controller_runtime::events::EventType;
use kubus_controller_runtime::ClientError;
use kubus_image::{ImageError, ImageInfo, Keyring, PullPolicy, Pulled};
use kubus_network::{NetworkError, Sandbox, SandboxRequest};
use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

/// Container ids with their labels.
pub type LabeledContainers = Vec<(String, BTreeMap<String, String>)>;

/// Containers as the kubelet drives them (create, start, signal, wait, remove, list); streaming
/// exec and attach stay on the concrete runtime.
pub trait ContainerRuntime: Send + Sync {
    /// Creates the container (not started).
    fn create(&self, c: CreateContainer) -> BoxFuture<'_, Result<(), RuntimeError>>;
    fn start<'a>(&'a self, id: &'a str) -> BoxFuture<'a, Result<(), RuntimeError>>;
    /// Sends `signal` to the container's init (`all`: to every process of it).
    fn kill<'a>(&'a self, id: &'a str, signal: i32, all: bool) -> BoxFuture<'a, Result<(), RuntimeError>>;
    /// Resolves when the container's init has exited.
    fn wait<'a>(&'a self, id: &'a str) -> BoxFuture<'a, Result<ExitInfo, RuntimeError>>;
    fn state<'a>(&'a self, id: &'a str) -> BoxFuture<'a, Result<ContainerState, RuntimeError>>;
    /// Deletes the container (its process, cgroup and state; logs stay).
    fn remove<'a>(&'a self, id: &'a str) -> BoxFuture<'a, Result<(), RuntimeError>>;
    /// Every container on the node, with its labels and state (adoption after a restart).
    fn list(&self) -> BoxFuture<'_, Result<Vec<ContainerInfo>, RuntimeError>>;
    /// Every container's id and labels (cheaper than `list`).
    fn list_labels(&self) -> BoxFuture<'_, Result<LabeledContainers, RuntimeError>>;
    /// Runs a command to completion in the container (exec probes): exit code and output.
    fn exec_sync<'a>(
        &'a self,
        id: &'a str,
        argv: Vec<String>,
        timeout: Duration,
    ) -> BoxFuture<'a, Result<(i32, Vec<u8>), RuntimeError>>;
}

/// Why a sandbox could not be made.
#[derive(Debug, thiserror::Error)]
pub enum SandboxError {
    #[error("the node has no pod CIDR yet")]
    NetworkNotReady,
    #[error(transparent)]
    Network(#[from] NetworkError),
}

/// Pod sandboxes: the pod's network, IPC and UTS namespaces with its CNI network, and the pod's
/// shared /dev/shm.
pub trait PodSandboxes: Send + Sync {
    fn create(&self, req: SandboxRequest) -> BoxFuture<'_, Result<Sandbox, SandboxError>>;
    /// The pod's sandbox if it exists (a restarted agent finds it again).
    fn get<'a>(&'a self, uid: &'a str) -> BoxFuture<'a, Option<Sandbox>>;
    /// Removes the pod's sandbox (CNI DEL, namespaces); nothing to do is no error.
    fn remove<'a>(&'a self, uid: &'a str) -> BoxFuture<'a, Result<(), NetworkError>>;
    /// Pod uids that have a sandbox.
    fn list(&self) -> BoxFuture<'_, Vec<String>>;
    /// The pod's /dev/shm under its pod dir (a tmpfs, made once).
    fn shm(&self, pod_dir: &Path) -> PathBuf;
}

/// Images: present or pulled by policy, and mounted as a container's root filesystem.
pub trait ImageService: Send + Sync {
    fn get(&self, image: &str) -> Option<ImageInfo>;
    /// Makes the image present by `policy`, pulling with the matching credentials of `keyring`.
    fn ensure<'a>(
        &'a self,
        image: &'a str,
        policy: PullPolicy,
        keyring: &'a Keyring,
    ) -> BoxFuture<'a, Result<Pulled, ImageError>>;
    /// Mounts the image as `<container_dir>/rootfs`.
    fn mount_rootfs(&self, image: &ImageInfo, container_dir: &Path) -> Result<PathBuf, ImageError>;
    fn unmount_rootfs(&self, container_dir: &Path) -> Result<(), ImageError>;
}

/// Pod-level cgroups (upstream's pod container manager).
pub trait PodCgroups: Send + Sync {
    fn create(&self, path: &str, resources: &CgroupResources) -> Result<(), CgroupError>;
    fn remove(&self, path: &str) -> Result<(), CgroupError>;
}

/// What a pod worker writes to the API server: its pod's status, Events about it, and the final
/// deletion.
pub trait PodApi: Send + Sync {
    /// A merge patch of the pod's status subresource.
    fn patch_status<'a>(&'a self, pod: &'a Pod, status: &'a PodStatus) -> BoxFuture<'a, Result<(), ClientError>>;
    /// Deletes the pod at once (grace 0), only if it is still the object with this uid.
    fn delete<'a>(&'a self, pod: &'a Pod) -> BoxFuture<'a, Result<(), ClientError>>;
    /// Records an Event about the pod (best effort).
    fn event<'a>(&'a self, pod: &'a Pod, kind: EventType, reason: &'a str, message: &'a str) -> BoxFuture<'a, ()>;
}

/// Everything a pod worker uses on its node.
pub struct Host {
    pub config: KubeletConfig,
    pub machine: Machine,
    pub node_ip: IpAddr,
    /// cgroup v2 host: containers get a cgroup namespace of their own.
    pub cgroup_v2: bool,
    pub runtime: Arc<dyn ContainerRuntime>,
    pub sandboxes: Arc<dyn PodSandboxes>,
    pub images: Arc<dyn ImageService>,
    pub cgroups: Arc<dyn PodCgroups>,
    pub api: Arc<dyn PodApi>,
    /// ConfigMaps and Secrets for environments and volumes.
    pub objects: Arc<dyn ObjectSource>,
    /// ServiceAccount tokens for projected volumes.
    pub tokens: Arc<dyn TokenSource>,
    pub services: ServiceLookup,
    /// The pod startup SLI: workers record pulls, init containers and started statuses.
    pub startup_latency: Arc<crate::pod_startup_latency::PodStartupLatencyTracker>,
}

impl Host {
    /// `<state>/pods/<uid>`: the pod's volumes, containers' bundles and sandbox files.
    pub fn pod_dir(&self, uid: &str) -> PathBuf {
        self.config.state_dir.join("pods").join(uid)
    }

    /// The pod's cgroup, below the node's cgroup root by QoS class.
    pub fn pod_cgroup(&self, uid: &str, qos: QosClass) -> String {
        kubus_container_runtime::cgroups::pod_cgroup_path(&self.config.cgroup_root, qos, uid)
    }

    /// `<log dir>/<ns>_<name>_<uid>`: the pod's container logs.
    pub fn pod_log_dir(&self, ns: &str, name: &str, uid: &str) -> PathBuf {
        self.config.log_dir.join(format!("{ns}_{name}_{uid}"))
    }

    /// The node-level part of a pod's cleanup (after its containers are deleted), shared by the
    /// pod worker's teardown and the agent's orphan sweep: rootfs and volume mounts, the pod
    /// dir, the sandbox (CNI DEL), the pod cgroup; `log_dir` is removed too when given.
    pub async fn cleanup_pod(&self, uid: &str, log_dir: Option<PathBuf>) -> Result<(), CleanupError> {
        let mut errors = vec![];
        let dir = self.pod_dir(uid);
        for e in std::fs::read_dir(dir.join("containers")).into_iter().flatten().flatten() {
            let _ = self.images.unmount_rootfs(&e.path());
        }
        if let Err(e) = crate::volumes::teardown(&dir) {
            errors.push(format!("pod dir: {e}"));
        }
        if let Err(e) = self.sandboxes.remove(uid).await {
            errors.push(format!("sandbox: {e}"));
        }
        // The pod's QoS class may be unknown here (its object is gone): try each parent.
        for qos in [QosClass::Guaranteed, QosClass::Burstable, QosClass::BestEffort] {
            if let Err(e) = self.cgroups.remove(&self.pod_cgroup(uid, qos)) {
                errors.push(format!("pod cgroup: {e}"));
            }
        }
        if let Some(l) = log_dir {
            let _ = std::fs::remove_dir_all(l);
        }
        CleanupError::check(errors)
    }
}

/// What a cleanup could not undo; every step is idempotent, so it is repeated later.
#[derive(Debug, thiserror::Error)]
#[error("{}", .0.join("; "))]
pub struct CleanupError(pub Vec<String>);

impl CleanupError {
    pub fn check(errors: Vec<String>) -> Result<(), CleanupError> {
        if errors.is_empty() {
            Ok(())
        } else {
            Err(CleanupError(errors))
        }
    }
}
