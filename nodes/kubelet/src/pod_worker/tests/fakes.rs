//! Fakes behind the node's seams: containers that live in a map and exit when told (or when
//! signalled), sandboxes and images that are directories, an API server that records what it
//! is sent. Every fake writes what it was asked to one shared log, so tests check the order of
//! operations across seams.

use crate::config::KubeletConfig;
use crate::host::{
    ContainerRuntime, Host, ImageService, LabeledContainers, PodApi, PodCgroups, PodSandboxes, SandboxError,
    ServiceLookup,
};
use crate::node::Machine;
use crate::objects::{ObjectSource, SourceKind, SourceObject, TokenSource};
use futures::future::BoxFuture;
use k8s_openapi::api::core::v1::{ConfigMap, Pod, PodStatus, Secret, ServiceAccount};
use kubus_apimachinery::{ObjectExt, StatusError};
use kubus_container_runtime::cgroups::{CgroupError, CgroupResources};
use kubus_container_runtime::{ContainerInfo, ContainerState, CreateContainer, ExitInfo, ExitReason, RuntimeError};
use kubus_controller_runtime::events::EventType;
use kubus_controller_runtime::ClientError;
use kubus_image::{ImageError, ImageInfo, Keyring, PullPolicy, Pulled};
use kubus_network::{NetworkError, Sandbox, SandboxRequest};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap()
}

/// What the fakes were asked to do, in order.
#[derive(Default)]
pub struct Log(Mutex<Vec<String>>);

impl Log {
    pub fn push(&self, entry: impl Into<String>) {
        self.0.lock().unwrap().push(entry.into());
    }
    pub fn entries(&self) -> Vec<String> {
        self.0.lock().unwrap().clone()
    }
    pub fn count(&self, entry: &str) -> usize {
        self.entries().iter().filter(|e| *e == entry).count()
    }
    /// Where `entry` first appears; panics if it never does.
    pub fn first(&self, entry: &str) -> usize {
        let entries = self.entries();
        entries.iter().position(|e| e == entry).unwrap_or_else(|| panic!("{entry:?} not in {entries:?}"))
    }
    /// Where `entry` last appears; panics if it never does.
    pub fn last(&self, entry: &str) -> usize {
        let entries = self.entries();
        entries.iter().rposition(|e| e == entry).unwrap_or_else(|| panic!("{entry:?} not in {entries:?}"))
    }
}

struct FakeContainer {
    labels: BTreeMap<String, String>,
    state: ContainerState,
    bundle: PathBuf,
}

#[derive(Default)]
struct Containers {
    by_id: BTreeMap<String, FakeContainer>,
    /// Container names whose creation fails.
    fail_create: HashSet<String>,
    /// Container names that ignore SIGTERM.
    stubborn: HashSet<String>,
    /// Exec probe results by container name (default: success).
    exec: HashMap<String, (i32, Vec<u8>)>,
}

/// Containers as a map; exits happen when a test says so or on a signal.
pub struct FakeRuntime {
    log: Arc<Log>,
    containers: Mutex<Containers>,
    /// Bumped on every change, so waiters look again.
    changed: tokio::sync::watch::Sender<u64>,
}

fn name_of(labels: &BTreeMap<String, String>) -> String {
    labels.get(crate::LABEL_CONTAINER).cloned().unwrap_or_default()
}

fn exited(code: i32, signal: Option<i32>, started_at: Option<SystemTime>) -> ContainerState {
    ContainerState::Exited(ExitInfo {
        code,
        signal,
        oom_killed: false,
        reason: if code == 0 { ExitReason::Completed } else { ExitReason::Error },
        started_at,
        finished_at: SystemTime::now(),
    })
}

impl FakeRuntime {
    fn new(log: Arc<Log>) -> Self {
        FakeRuntime { log, containers: Mutex::default(), changed: tokio::sync::watch::channel(0).0 }
    }

    fn bump(&self) {
        self.changed.send_modify(|n| *n += 1);
    }

    fn name(&self, id: &str) -> String {
        self.containers.lock().unwrap().by_id.get(id).map(|c| name_of(&c.labels)).unwrap_or_else(|| id.to_string())
    }

    /// The id of the container's running run.
    pub fn running(&self, name: &str) -> Option<String> {
        let c = self.containers.lock().unwrap();
        c.by_id
            .iter()
            .find(|(_, c)| name_of(&c.labels) == name && matches!(c.state, ContainerState::Running { .. }))
            .map(|(id, _)| id.clone())
    }

    /// Ends the container's running run with `code`.
    pub fn exit(&self, name: &str, code: i32) {
        let id = self.running(name).unwrap_or_else(|| panic!("{name} is not running"));
        let mut c = self.containers.lock().unwrap();
        let container = c.by_id.get_mut(&id).expect("found above");
        let started = match container.state {
            ContainerState::Running { started_at, .. } => Some(started_at),
            _ => None,
        };
        container.state = exited(code, None, started);
        drop(c);
        self.bump();
    }

    pub fn fail_create(&self, name: &str) {
        self.containers.lock().unwrap().fail_create.insert(name.to_string());
    }

    pub fn ignore_sigterm(&self, name: &str) {
        self.containers.lock().unwrap().stubborn.insert(name.to_string());
    }

    pub fn set_exec(&self, name: &str, code: i32, output: &str) {
        self.containers.lock().unwrap().exec.insert(name.to_string(), (code, output.as_bytes().to_vec()));
    }

    /// A container that was running before the agent (re)started.
    pub fn add_running(&self, id: &str, labels: &[(&str, &str)], started_at: SystemTime) {
        let labels = labels.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        let state = ContainerState::Running { pid: 7, started_at };
        let fake = FakeContainer { labels, state, bundle: PathBuf::from("/nonexistent") };
        self.containers.lock().unwrap().by_id.insert(id.to_string(), fake);
    }

    /// The bundle directories of the containers that exist.
    pub fn bundles(&self) -> Vec<PathBuf> {
        self.containers.lock().unwrap().by_id.values().map(|c| c.bundle.clone()).collect()
    }
}

impl ContainerRuntime for FakeRuntime {
    fn create(&self, c: CreateContainer) -> BoxFuture<'_, Result<(), RuntimeError>> {
        Box::pin(async move {
            let name = name_of(&c.labels);
            self.log.push(format!("create {name}"));
            let mut containers = self.containers.lock().unwrap();
            if containers.fail_create.contains(&name) {
                return Err(RuntimeError::Shim { id: c.id, message: "no such file or directory".into() });
            }
            let fake = FakeContainer { labels: c.labels, state: ContainerState::Created, bundle: c.bundle_dir };
            containers.by_id.insert(c.id, fake);
            Ok(())
        })
    }

    fn start<'a>(&'a self, id: &'a str) -> BoxFuture<'a, Result<(), RuntimeError>> {
        Box::pin(async move {
            self.log.push(format!("start {}", self.name(id)));
            let mut c = self.containers.lock().unwrap();
            let container = c.by_id.get_mut(id).ok_or_else(|| RuntimeError::NotFound(id.into()))?;
            container.state = ContainerState::Running { pid: 7, started_at: SystemTime::now() };
            Ok(())
        })
    }

    fn kill<'a>(&'a self, id: &'a str, signal: i32, _all: bool) -> BoxFuture<'a, Result<(), RuntimeError>> {
        Box::pin(async move {
            self.log.push(format!("kill {} {signal}", self.name(id)));
            let mut c = self.containers.lock().unwrap();
            let stubborn = c.stubborn.clone();
            let container = c.by_id.get_mut(id).ok_or_else(|| RuntimeError::NotFound(id.into()))?;
            if let ContainerState::Running { started_at, .. } = container.state {
                if signal == 9 || !stubborn.contains(&name_of(&container.labels)) {
                    container.state = exited(128 + signal, Some(signal), Some(started_at));
                }
            }
            drop(c);
            self.bump();
            Ok(())
        })
    }

    fn wait<'a>(&'a self, id: &'a str) -> BoxFuture<'a, Result<ExitInfo, RuntimeError>> {
        Box::pin(async move {
            let mut changes = self.changed.subscribe();
            loop {
                match self.containers.lock().unwrap().by_id.get(id).map(|c| c.state.clone()) {
                    Some(ContainerState::Exited(e)) => return Ok(e),
                    None => return Err(RuntimeError::NotFound(id.into())),
                    Some(_) => {}
                }
                if changes.changed().await.is_err() {
                    return Err(RuntimeError::NotFound(id.into()));
                }
            }
        })
    }

    fn state<'a>(&'a self, id: &'a str) -> BoxFuture<'a, Result<ContainerState, RuntimeError>> {
        Box::pin(async move {
            let c = self.containers.lock().unwrap();
            c.by_id.get(id).map(|c| c.state.clone()).ok_or_else(|| RuntimeError::NotFound(id.into()))
        })
    }

    fn remove<'a>(&'a self, id: &'a str) -> BoxFuture<'a, Result<(), RuntimeError>> {
        Box::pin(async move {
            let removed = self.containers.lock().unwrap().by_id.remove(id);
            if let Some(c) = removed {
                self.log.push(format!("remove {}", name_of(&c.labels)));
                self.bump();
            }
            Ok(())
        })
    }

    fn list(&self) -> BoxFuture<'_, Result<Vec<ContainerInfo>, RuntimeError>> {
        Box::pin(async move {
            let c = self.containers.lock().unwrap();
            Ok(c.by_id
                .iter()
                .map(|(id, c)| ContainerInfo {
                    id: id.clone(),
                    labels: c.labels.clone(),
                    state: c.state.clone(),
                    init_pid: Some(7),
                    shim_pid: Some(6),
                    bundle_dir: c.bundle.clone(),
                    log_path: PathBuf::new(),
                    created_at: SystemTime::now(),
                })
                .collect())
        })
    }

    fn list_labels(&self) -> BoxFuture<'_, Result<LabeledContainers, RuntimeError>> {
        Box::pin(async move {
            let c = self.containers.lock().unwrap();
            Ok(c.by_id.iter().map(|(id, c)| (id.clone(), c.labels.clone())).collect())
        })
    }

    fn exec_sync<'a>(
        &'a self,
        id: &'a str,
        _argv: Vec<String>,
        _timeout: Duration,
    ) -> BoxFuture<'a, Result<(i32, Vec<u8>), RuntimeError>> {
        Box::pin(async move {
            let name = self.name(id);
            self.log.push(format!("exec {name} {}", _argv.join(" ")));
            Ok(self.containers.lock().unwrap().exec.get(&name).cloned().unwrap_or((0, vec![])))
        })
    }
}

/// Sandboxes as directories under the pod dir.
pub struct FakeSandboxes {
    log: Arc<Log>,
    sandboxes: Mutex<HashMap<String, Sandbox>>,
    pub not_ready: AtomicBool,
}

impl FakeSandboxes {
    pub fn sandbox(uid: &str, dir: &Path) -> Sandbox {
        Sandbox {
            uid: uid.to_string(),
            netns: Some(dir.join("ns/net")),
            ipcns: dir.join("ns/ipc"),
            utsns: Some(dir.join("ns/uts")),
            ip: Some("10.244.0.5".parse().unwrap()),
            hosts_file: dir.join("etc/hosts"),
            resolv_conf: dir.join("etc/resolv.conf"),
            hostname_file: dir.join("etc/hostname"),
            dir: dir.to_path_buf(),
        }
    }

    /// A sandbox that outlived the agent.
    pub fn add(&self, uid: &str, dir: &Path) {
        self.sandboxes.lock().unwrap().insert(uid.to_string(), Self::sandbox(uid, dir));
    }
}

impl PodSandboxes for FakeSandboxes {
    fn create(&self, req: SandboxRequest) -> BoxFuture<'_, Result<Sandbox, SandboxError>> {
        Box::pin(async move {
            if self.not_ready.load(Ordering::SeqCst) {
                return Err(SandboxError::NetworkNotReady);
            }
            self.log.push("sandbox create");
            let s = Self::sandbox(&req.uid, Path::new("/sandboxes").join(&req.uid).as_path());
            self.sandboxes.lock().unwrap().insert(req.uid, s.clone());
            Ok(s)
        })
    }
    fn get<'a>(&'a self, uid: &'a str) -> BoxFuture<'a, Option<Sandbox>> {
        Box::pin(async move { self.sandboxes.lock().unwrap().get(uid).cloned() })
    }
    fn remove<'a>(&'a self, uid: &'a str) -> BoxFuture<'a, Result<(), NetworkError>> {
        Box::pin(async move {
            self.log.push("sandbox remove");
            self.sandboxes.lock().unwrap().remove(uid);
            Ok(())
        })
    }
    fn list(&self) -> BoxFuture<'_, Vec<String>> {
        Box::pin(async move { self.sandboxes.lock().unwrap().keys().cloned().collect() })
    }
    fn shm(&self, pod_dir: &Path) -> PathBuf {
        let shm = pod_dir.join("shm");
        std::fs::create_dir_all(&shm).unwrap();
        shm
    }
}

/// Images by name; a rootfs is a plain directory.
pub struct FakeImages {
    log: Arc<Log>,
    present: Mutex<HashMap<String, ImageInfo>>,
    /// The registry cannot be reached: pulls fail.
    pub offline: AtomicBool,
    /// The registry serves pulls only to this user.
    pub requires_user: Mutex<Option<String>>,
}

pub fn image(name: &str) -> ImageInfo {
    serde_json::from_value(serde_json::json!({
        "id": format!("sha256:{name}"), "names": [name], "repo_digests": [format!("{name}@sha256:d")],
        "size": 1024, "config": {"cmd": ["sh"], "env": ["PATH=/bin"]}, "manifest_digest": "sha256:m", "layers": [],
    }))
    .unwrap()
}

impl FakeImages {
    pub fn add(&self, name: &str) {
        self.present.lock().unwrap().insert(name.to_string(), image(name));
    }
}

impl ImageService for FakeImages {
    fn get(&self, image: &str) -> Option<ImageInfo> {
        self.present.lock().unwrap().get(image).cloned()
    }
    fn ensure<'a>(
        &'a self,
        name: &'a str,
        policy: PullPolicy,
        keyring: &'a Keyring,
    ) -> BoxFuture<'a, Result<Pulled, ImageError>> {
        Box::pin(async move {
            let present = self.get(name);
            if let Some(user) = lock(&self.requires_user).clone() {
                // A registry that serves the image only to this user.
                let users: Vec<String> =
                    keyring.lookup("registry.example", "app").into_iter().map(|c| c.username).collect();
                if present.is_none() && !users.contains(&user) {
                    return Err(ImageError::Pull { image: name.to_string(), message: "401 Unauthorized".into() });
                }
            }
            let pulled = |image, pulled| Pulled { image, pulled, duration: Duration::ZERO, downloaded_bytes: 0 };
            match (present, policy) {
                (Some(i), PullPolicy::IfNotPresent | PullPolicy::Never) => Ok(pulled(i, false)),
                (None, PullPolicy::Never) => Err(ImageError::NeverPull(name.to_string())),
                _ if self.offline.load(Ordering::SeqCst) => {
                    Err(ImageError::Pull { image: name.to_string(), message: "connection refused".into() })
                }
                _ => {
                    self.log.push(format!("pull {name}"));
                    self.add(name);
                    Ok(pulled(image(name), true))
                }
            }
        })
    }
    fn mount_rootfs(&self, _image: &ImageInfo, container_dir: &Path) -> Result<PathBuf, ImageError> {
        let rootfs = container_dir.join("rootfs");
        std::fs::create_dir_all(&rootfs).unwrap();
        self.log.push("mount rootfs");
        Ok(rootfs)
    }
    fn unmount_rootfs(&self, container_dir: &Path) -> Result<(), ImageError> {
        if container_dir.join("rootfs").exists() {
            let _ = std::fs::remove_dir_all(container_dir.join("rootfs"));
            self.log.push("unmount rootfs");
        }
        Ok(())
    }
}

pub struct FakeCgroups {
    log: Arc<Log>,
}

impl PodCgroups for FakeCgroups {
    fn create(&self, path: &str, _resources: &CgroupResources) -> Result<(), CgroupError> {
        self.log.push(format!("cgroup create {path}"));
        Ok(())
    }
    fn remove(&self, _path: &str) -> Result<(), CgroupError> {
        self.log.push("cgroup remove");
        Ok(())
    }
}

/// The API server: status patches, events and deletions are recorded.
pub struct FakeApi {
    log: Arc<Log>,
    pub statuses: Mutex<Vec<PodStatus>>,
    pub events: Mutex<Vec<(EventType, String, String)>>,
    pub config_maps: Mutex<HashMap<(String, String), ConfigMap>>,
    pub secrets: Mutex<HashMap<(String, String), Secret>>,
    pub service_accounts: Mutex<HashMap<(String, String), ServiceAccount>>,
    /// The pod is gone: status writes answer 404.
    pub gone: AtomicBool,
}

impl FakeApi {
    pub fn last_status(&self) -> PodStatus {
        self.statuses.lock().unwrap().last().cloned().expect("a status was written")
    }
    pub fn writes(&self) -> usize {
        self.statuses.lock().unwrap().len()
    }
    /// The events with this reason, as (type, message).
    pub fn events(&self, reason: &str) -> Vec<(EventType, String)> {
        let events = self.events.lock().unwrap();
        events.iter().filter(|(_, r, _)| r == reason).map(|(t, _, m)| (*t, m.clone())).collect()
    }
}

impl PodApi for FakeApi {
    fn patch_status<'a>(&'a self, _pod: &'a Pod, status: &'a PodStatus) -> BoxFuture<'a, Result<(), ClientError>> {
        Box::pin(async move {
            if self.gone.load(Ordering::SeqCst) {
                return Err(ClientError::Api(Box::new(StatusError::not_found("", "pods", "web"))));
            }
            self.log.push("status");
            self.statuses.lock().unwrap().push(status.clone());
            Ok(())
        })
    }
    fn delete<'a>(&'a self, pod: &'a Pod) -> BoxFuture<'a, Result<(), ClientError>> {
        Box::pin(async move {
            self.log.push(format!("delete pod {}", pod.uid()));
            Ok(())
        })
    }
    fn event<'a>(&'a self, _pod: &'a Pod, kind: EventType, reason: &'a str, message: &'a str) -> BoxFuture<'a, ()> {
        Box::pin(async move {
            self.events.lock().unwrap().push((kind, reason.to_string(), message.to_string()));
        })
    }
}

impl ObjectSource for FakeApi {
    fn get<'a>(
        &'a self,
        kind: SourceKind,
        ns: &'a str,
        name: &'a str,
    ) -> BoxFuture<'a, Result<Option<SourceObject>, String>> {
        Box::pin(async move {
            Ok(match kind {
                SourceKind::ConfigMap => self
                    .config_maps
                    .lock()
                    .unwrap()
                    .get(&(ns.to_string(), name.to_string()))
                    .cloned()
                    .map(SourceObject::ConfigMap),
                SourceKind::Secret => {
                    lock(&self.secrets).get(&(ns.to_string(), name.to_string())).cloned().map(SourceObject::Secret)
                }
            })
        })
    }

    fn service_account<'a>(
        &'a self,
        ns: &'a str,
        name: &'a str,
    ) -> BoxFuture<'a, Result<Option<ServiceAccount>, String>> {
        Box::pin(async move { Ok(lock(&self.service_accounts).get(&(ns.to_string(), name.to_string())).cloned()) })
    }
}

impl TokenSource for FakeApi {
    fn token<'a>(&'a self, _pod: &'a Pod, _aud: Option<String>, _exp: i64) -> BoxFuture<'a, Result<String, String>> {
        Box::pin(async { Err("no tokens here".to_string()) })
    }
}

/// A temporary directory, removed at the end of the test.
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new() -> TempDir {
        let n: u64 = rand_suffix();
        let dir = std::env::temp_dir().join(format!("kubus-kubelet-test-{}-{n:x}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        TempDir(dir)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn rand_suffix() -> u64 {
    uuid::Uuid::new_v4().as_u64_pair().0
}

/// A node of fakes.
pub struct Node {
    /// Removed when the test ends.
    pub _dir: TempDir,
    pub log: Arc<Log>,
    pub runtime: Arc<FakeRuntime>,
    pub sandboxes: Arc<FakeSandboxes>,
    pub images: Arc<FakeImages>,
    pub api: Arc<FakeApi>,
    pub host: Arc<Host>,
}

impl Node {
    pub fn new() -> Node {
        let dir = TempDir::new();
        let log = Arc::new(Log::default());
        let runtime = Arc::new(FakeRuntime::new(log.clone()));
        let sandboxes = Arc::new(FakeSandboxes {
            log: log.clone(),
            sandboxes: Mutex::default(),
            not_ready: AtomicBool::new(false),
        });
        let images = Arc::new(FakeImages {
            log: log.clone(),
            present: Mutex::default(),
            offline: AtomicBool::new(false),
            requires_user: Mutex::default(),
        });
        images.add("busybox");
        let api = Arc::new(FakeApi {
            log: log.clone(),
            statuses: Mutex::default(),
            events: Mutex::default(),
            config_maps: Mutex::default(),
            secrets: Mutex::default(),
            service_accounts: Mutex::default(),
            gone: AtomicBool::new(false),
        });
        let mut config = KubeletConfig::new("node-1", dir.0.join("state"), vec!["shim".into()]);
        config.log_dir = dir.0.join("logs");
        let machine = Machine {
            cpus: 4,
            memory_bytes: 8 << 30,
            storage_bytes: 100 << 30,
            kernel: "6.1.0".into(),
            os_image: "Debian GNU/Linux 12".into(),
            machine_id: "m".into(),
            boot_id: "b".into(),
            arch: "amd64",
        };
        let host = Arc::new(Host {
            config,
            machine,
            node_ip: "192.168.1.10".parse().unwrap(),
            cgroup_v2: false,
            runtime: runtime.clone(),
            sandboxes: sandboxes.clone(),
            images: images.clone(),
            cgroups: Arc::new(FakeCgroups { log: log.clone() }),
            api: api.clone(),
            objects: api.clone(),
            tokens: api.clone(),
            services: ServiceLookup::default(),
            startup_latency: Default::default(),
        });
        Node { _dir: dir, log, runtime, sandboxes, images, api, host }
    }
}
