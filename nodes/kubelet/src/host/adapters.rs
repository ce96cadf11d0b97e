//! The real implementations of the node's seams: thin adapters over the shim runtime, the
//! network's sandbox manager, the image store, cgroupfs and the API client.

use super::{ContainerRuntime, ImageService, LabeledContainers, PodApi, PodCgroups, PodSandboxes, SandboxError};
use futures::future::BoxFuture;
use k8s_openapi::api::core::v1::{Pod, PodStatus};
use kubus_apimachinery::ObjectExt;
use kubus_container_runtime::cgroups::{CgroupError, CgroupLayout, CgroupResources};
use kubus_container_runtime::{ContainerInfo, ContainerState, CreateContainer, ExitInfo, Runtime, RuntimeError};
use kubus_controller_runtime::events::{EventType, Recorder};
use kubus_controller_runtime::{Client, ClientError, DeleteParams};
use kubus_image::{ImageError, ImageInfo, ImageStore, Keyring, PullPolicy, Pulled};
use kubus_network::{NetworkError, Sandbox, SandboxManager, SandboxRequest};
use serde_json::json;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::RwLock;

impl ContainerRuntime for Runtime {
    fn create(&self, c: CreateContainer) -> BoxFuture<'_, Result<(), RuntimeError>> {
        Box::pin(async move { Runtime::create(self, c).await.map(drop) })
    }
    fn start<'a>(&'a self, id: &'a str) -> BoxFuture<'a, Result<(), RuntimeError>> {
        Box::pin(Runtime::start(self, id))
    }
    fn kill<'a>(&'a self, id: &'a str, signal: i32, all: bool) -> BoxFuture<'a, Result<(), RuntimeError>> {
        Box::pin(Runtime::kill(self, id, signal, all))
    }
    fn wait<'a>(&'a self, id: &'a str) -> BoxFuture<'a, Result<ExitInfo, RuntimeError>> {
        Box::pin(Runtime::wait(self, id))
    }
    fn state<'a>(&'a self, id: &'a str) -> BoxFuture<'a, Result<ContainerState, RuntimeError>> {
        Box::pin(Runtime::state(self, id))
    }
    fn remove<'a>(&'a self, id: &'a str) -> BoxFuture<'a, Result<(), RuntimeError>> {
        Box::pin(Runtime::delete(self, id))
    }
    fn list(&self) -> BoxFuture<'_, Result<Vec<ContainerInfo>, RuntimeError>> {
        Box::pin(Runtime::list(self))
    }
    fn list_labels(&self) -> BoxFuture<'_, Result<LabeledContainers, RuntimeError>> {
        Box::pin(Runtime::list_labels(self))
    }
    fn exec_sync<'a>(
        &'a self,
        id: &'a str,
        argv: Vec<String>,
        timeout: Duration,
    ) -> BoxFuture<'a, Result<(i32, Vec<u8>), RuntimeError>> {
        Box::pin(Runtime::exec_sync(self, id, argv, timeout))
    }
}

/// The pod network of the node, once it has one: the agent starts it when the node gets its
/// pod CIDR.
#[derive(Clone, Default)]
pub struct NetworkSandboxes {
    pub network: Arc<RwLock<Option<SandboxManager>>>,
}

impl NetworkSandboxes {
    async fn manager(&self) -> Option<SandboxManager> {
        self.network.read().await.clone()
    }
}

impl PodSandboxes for NetworkSandboxes {
    fn create(&self, req: SandboxRequest) -> BoxFuture<'_, Result<Sandbox, SandboxError>> {
        Box::pin(async move {
            let network = self.manager().await.ok_or(SandboxError::NetworkNotReady)?;
            Ok(network.create(req).await?)
        })
    }
    fn get<'a>(&'a self, uid: &'a str) -> BoxFuture<'a, Option<Sandbox>> {
        Box::pin(async move { self.manager().await.and_then(|n| n.get(uid)) })
    }
    fn remove<'a>(&'a self, uid: &'a str) -> BoxFuture<'a, Result<(), NetworkError>> {
        Box::pin(async move {
            match self.manager().await {
                Some(n) => n.remove(uid).await,
                None => Ok(()),
            }
        })
    }
    fn list(&self) -> BoxFuture<'_, Vec<String>> {
        Box::pin(async move {
            self.manager().await.map(|n| n.list().into_iter().map(|s| s.uid).collect()).unwrap_or_default()
        })
    }
    fn shm(&self, pod_dir: &Path) -> PathBuf {
        let shm = pod_dir.join("shm");
        if !crate::volumes::is_mount_point(&shm) {
            let _ = std::fs::create_dir_all(&shm);
            let _ = nix::mount::mount(
                Some("shm"),
                &shm,
                Some("tmpfs"),
                nix::mount::MsFlags::MS_NOSUID | nix::mount::MsFlags::MS_NODEV | nix::mount::MsFlags::MS_NOEXEC,
                Some("mode=1777,size=65536k"),
            );
        }
        shm
    }
}

impl ImageService for ImageStore {
    fn get(&self, image: &str) -> Option<ImageInfo> {
        ImageStore::get(self, image)
    }
    fn ensure<'a>(
        &'a self,
        image: &'a str,
        policy: PullPolicy,
        keyring: &'a Keyring,
    ) -> BoxFuture<'a, Result<Pulled, ImageError>> {
        Box::pin(ImageStore::ensure_with(self, image, policy, keyring))
    }
    fn mount_rootfs(&self, image: &ImageInfo, container_dir: &Path) -> Result<PathBuf, ImageError> {
        ImageStore::mount_rootfs(self, image, container_dir)
    }
    fn unmount_rootfs(&self, container_dir: &Path) -> Result<(), ImageError> {
        ImageStore::unmount_rootfs(container_dir)
    }
}

impl PodCgroups for CgroupLayout {
    fn create(&self, path: &str, resources: &CgroupResources) -> Result<(), CgroupError> {
        CgroupLayout::create(self, path, resources)
    }
    fn remove(&self, path: &str) -> Result<(), CgroupError> {
        CgroupLayout::remove(self, path)
    }
}

/// The API server through the node's client, Events through its recorder.
pub struct ApiServer {
    pub client: Client,
    pub recorder: Recorder,
}

impl PodApi for ApiServer {
    fn patch_status<'a>(&'a self, pod: &'a Pod, status: &'a PodStatus) -> BoxFuture<'a, Result<(), ClientError>> {
        Box::pin(async move {
            let patch = json!({ "status": status });
            self.client.merge_patch_status::<Pod>(pod.namespace(), pod.name(), &patch).await.map(drop)
        })
    }
    fn delete<'a>(&'a self, pod: &'a Pod) -> BoxFuture<'a, Result<(), ClientError>> {
        Box::pin(async move {
            // The uid precondition spares a pod recreated under the same name meanwhile.
            let params =
                DeleteParams { grace_period_seconds: Some(0), uid: Some(pod.uid().to_string()), ..Default::default() };
            self.client.delete::<Pod>(pod.namespace(), pod.name(), &params).await
        })
    }
    fn event<'a>(&'a self, pod: &'a Pod, kind: EventType, reason: &'a str, message: &'a str) -> BoxFuture<'a, ()> {
        Box::pin(self.recorder.record(pod, kind, reason, message))
    }
}
