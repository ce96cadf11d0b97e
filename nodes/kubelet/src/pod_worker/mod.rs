//! One worker per pod bound to this node: a task that owns the pod's sandbox, volumes and
//! containers and drives them toward the pod's spec, one sync at a time, like upstream's pod
//! workers. It wakes on a spec change, a container exit, a probe result, a back-off expiring
//! or a periodic resync, and reports the status when it changed.
//!
//! The worker is a small state machine over [`PodState`] (krustlet's idea of a typed per-pod
//! state machine), each step a method named as upstream's sync loop names it:
//! - `Syncing` runs the sync steps in order (`sync.rs`): sandbox, pod cgroup, volumes, init
//!   containers one at a time, containers by restart policy; starting a container
//!   (`start.rs`) is back-off, image, environment, files, OCI spec, create and start; its
//!   probes and exit watcher (`probing.rs`) feed results back as messages;
//! - lifecycle hooks (`hooks.rs`): postStart after a start, preStop before a stop;
//! - `spec.activeDeadlineSeconds` fails the pod once it has been active that long;
//! - after each sync, the status step (`report.rs`) writes the status if it changed;
//! - `Finished` (Succeeded or Failed) releases what the pod holds;
//! - `Terminating` stops the containers within their grace period and tears everything down
//!   (`teardown.rs`: rootfs, volumes, sandbox, cgroup) before the pod object is deleted.
//!
//! Containers that outlived an agent restart are adopted (`adopt.rs`). The worker reaches the
//! node only through the [`Host`]'s traits, so all of this is unit-tested against fakes.

mod adopt;
mod hooks;
mod probing;
mod report;
mod start;
mod sync;
mod teardown;
#[cfg(test)]
mod tests;

use crate::backoff::Backoff;
use crate::context::PodHandle;
use crate::host::{CleanupError, Host, SandboxError};
use crate::probes::ProbeUpdate;
use crate::status::Terminated;
use crate::volumes::{VolumeError, VolumePaths};
use k8s_openapi::api::core::v1::{Container, Pod, PodStatus};
use kubus_apimachinery::{pod, ObjectExt};
use kubus_controller_runtime::events::EventType;
use prometheus::{register_histogram_vec, register_int_counter_vec, HistogramVec, IntCounterVec};
use std::collections::{HashMap, VecDeque};
use std::path::PathBuf;
use std::sync::{Arc, LazyLock};
use std::time::{Duration, SystemTime};
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;
use tracing::Instrument;

static SYNCS: LazyLock<IntCounterVec> = LazyLock::new(|| {
    register_int_counter_vec!("kubus_kubelet_pod_syncs_total", "Pod worker syncs, by result", &["result"])
        .expect("registers once")
});
static CONTAINER_OPS: LazyLock<HistogramVec> = LazyLock::new(|| {
    register_histogram_vec!(
        "kubus_kubelet_container_operation_seconds",
        "Time of container operations by the kubelet (pull, create, start, stop)",
        &["operation"],
        vec![0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0]
    )
    .expect("registers once")
});
/// Upstream's name, labels and buckets: `operation_type` is `create` for a pod's first sync,
/// `update` for a sync the pod's spec or metadata changing woke, `sync` for any other (a
/// resync, a container's exit, a probe, the echo of the worker's own status), `kill` for its
/// termination. Measured from when the worker took what woke it to the sync's end.
pub(crate) static POD_WORKER_DURATION: LazyLock<HistogramVec> = LazyLock::new(|| {
    register_histogram_vec!(
        "kubelet_pod_worker_duration_seconds",
        "Duration in seconds to sync a single pod. Broken down by operation type: create, update, or sync",
        &["operation_type"],
        prometheus::DEFAULT_BUCKETS.to_vec()
    )
    .expect("registers once")
});
/// Upstream's names: starts by container type, and failed starts by error code.
static CONTAINER_STARTS: LazyLock<IntCounterVec> = LazyLock::new(|| {
    register_int_counter_vec!(
        "kubelet_started_containers_total",
        "Cumulative number of containers started",
        &["container_type"]
    )
    .expect("registers once")
});
static CONTAINER_START_ERRORS: LazyLock<IntCounterVec> = LazyLock::new(|| {
    register_int_counter_vec!(
        "kubelet_started_containers_errors_total",
        "Cumulative number of errors when starting containers",
        &["code", "container_type"]
    )
    .expect("registers once")
});

fn container_type(init: bool) -> &'static str {
    if init {
        "init_container"
    } else {
        "container"
    }
}

/// How often ConfigMap, Secret and token volumes are read again (upstream: its sync period,
/// about a minute; ours is shorter, a GET per pod and period is cheap).
const VOLUME_REFRESH: Duration = Duration::from_secs(20);
/// The periodic resync of a worker with nothing else to do.
const RESYNC: Duration = Duration::from_secs(10);

/// What wakes a pod worker.
#[derive(Debug)]
pub enum WorkerMsg {
    Update(Arc<Pod>),
    /// The pod is gone from the API (or no longer bound here): stop everything.
    Removed,
    Exited {
        id: String,
    },
}

/// Where a pod is in its life on this node.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PodState {
    /// Driving the pod toward its spec, one sync at a time.
    Syncing,
    /// Succeeded or Failed: nothing runs again; what it held is released, its final status stays.
    Finished,
    /// Being deleted, or gone from this node: stop, tear down, then let the pod object go.
    Terminating,
}

/// Why a sync stopped short (it is retried on the next wake-up).
#[derive(Debug, thiserror::Error)]
pub enum SyncError {
    #[error("the node has no pod CIDR yet")]
    NoPodCidr,
    #[error("Failed to create pod sandbox: {0}")]
    Sandbox(kubus_network::NetworkError),
    #[error("pod cgroup: {0}")]
    PodCgroup(#[from] kubus_container_runtime::cgroups::CgroupError),
    #[error("{0}")]
    Volumes(#[from] VolumeError),
    #[error("{0}")]
    Cleanup(#[from] CleanupError),
}

impl From<SandboxError> for SyncError {
    fn from(e: SandboxError) -> Self {
        match e {
            SandboxError::NetworkNotReady => SyncError::NoPodCidr,
            SandboxError::Network(e) => SyncError::Sandbox(e),
        }
    }
}

/// One run of a container.
struct Run {
    id: String,
    attempt: u32,
    dir: PathBuf,
    image: String,
    image_id: String,
    state: RunState,
    ready: bool,
    started: watch::Sender<bool>,
    probes: Vec<tokio::task::JoinHandle<()>>,
}

impl Run {
    fn is_running(&self) -> bool {
        matches!(self.state, RunState::Running { .. })
    }

    fn stop_probes(&mut self) {
        for p in self.probes.drain(..) {
            p.abort();
        }
    }
}

#[derive(Debug, Clone)]
enum RunState {
    Running { started_at: SystemTime },
    Exited(Terminated),
}

#[derive(Default)]
struct ContainerRecord {
    current: Option<Run>,
    last: Option<Terminated>,
    restarts: u32,
    backoff: Backoff,
    /// Why the container is not running (ContainerCreating, ErrImagePull, ...).
    waiting: Option<(String, String)>,
    /// Set when the last exit came from a liveness/startup failure or a stop we asked for.
    killed_by_us: bool,
}

impl ContainerRecord {
    fn state(&self) -> Option<&RunState> {
        self.current.as_ref().map(|r| &r.state)
    }
}

pub struct PodWorker {
    host: Arc<Host>,
    uid: String,
    pod: Arc<Pod>,
    tx: mpsc::UnboundedSender<WorkerMsg>,
    rx: mpsc::UnboundedReceiver<WorkerMsg>,
    probe_tx: mpsc::UnboundedSender<ProbeUpdate>,
    probe_rx: mpsc::UnboundedReceiver<ProbeUpdate>,
    records: HashMap<String, ContainerRecord>,
    sandbox: Option<kubus_network::Sandbox>,
    volumes: Option<VolumePaths>,
    /// The pod cgroup exists with the pod's limits (they cannot change on update, so it is made
    /// once, not on every sync).
    pod_cgroup: bool,
    start_time: Option<SystemTime>,
    failed: bool,
    /// Why the pod failed, when the kubelet failed it (status reason and message).
    failure: Option<(String, String)>,
    removed: bool,
    /// Messages that arrived while the worker waited for a postStart hook.
    pending: VecDeque<WorkerMsg>,
    last_status: Option<PodStatus>,
    next_volume_refresh: Instant,
    handle: Arc<PodHandle>,
    /// The pod's spec or metadata changed since the last sync (an `update`, not a `sync`).
    updated: bool,
}

impl PodWorker {
    pub fn new(host: Arc<Host>, pod: Arc<Pod>, handle: Arc<PodHandle>) -> (Self, mpsc::UnboundedSender<WorkerMsg>) {
        let (tx, rx) = mpsc::unbounded_channel();
        let (probe_tx, probe_rx) = mpsc::unbounded_channel();
        let uid = pod.uid().to_string();
        let w = PodWorker {
            host,
            uid,
            pod,
            tx: tx.clone(),
            rx,
            probe_tx,
            probe_rx,
            records: HashMap::new(),
            sandbox: None,
            volumes: None,
            pod_cgroup: false,
            start_time: None,
            failed: false,
            failure: None,
            removed: false,
            pending: VecDeque::new(),
            last_status: None,
            next_volume_refresh: Instant::now(),
            handle,
            updated: false,
        };
        (w, tx)
    }

    /// The state the pod is in now.
    pub fn state(&self) -> PodState {
        if self.removed || self.pod.is_deleting() {
            PodState::Terminating
        } else if self.is_terminal() {
            PodState::Finished
        } else {
            PodState::Syncing
        }
    }

    pub async fn run(mut self) {
        let span = tracing::info_span!("pod", pod = %format!("{}/{}", self.ns(), self.name()), uid = %self.uid);
        async move {
            let mut operation = "create";
            let mut woken = Instant::now();
            loop {
                self.check_active_deadline().await;
                let result = match self.state() {
                    PodState::Terminating => {
                        self.terminate().await;
                        POD_WORKER_DURATION.with_label_values(&["kill"]).observe(woken.elapsed().as_secs_f64());
                        return;
                    }
                    PodState::Finished => self.release_finished().await,
                    PodState::Syncing => self.sync().await,
                };
                POD_WORKER_DURATION.with_label_values(&[operation]).observe(woken.elapsed().as_secs_f64());
                match result {
                    Ok(()) => SYNCS.with_label_values(&["ok"]).inc(),
                    Err(e) => {
                        SYNCS.with_label_values(&["error"]).inc();
                        tracing::warn!(error = %e, "pod sync failed");
                    }
                }
                self.report().await;
                self.wait_for_work().await;
                woken = Instant::now();
                operation = if std::mem::take(&mut self.updated) { "update" } else { "sync" };
            }
        }
        .instrument(span)
        .await
    }

    /// Sleeps until something happens (or the next resync or back-off expiry), then takes
    /// everything else already queued before the next sync.
    async fn wait_for_work(&mut self) {
        if !self.pending.is_empty() {
            for m in std::mem::take(&mut self.pending) {
                self.on_message(m).await;
            }
            return;
        }
        let wake = self.next_wakeup();
        tokio::select! {
            m = self.rx.recv() => match m {
                Some(m) => self.on_message(m).await,
                None => self.removed = true,
            },
            Some(p) = self.probe_rx.recv() => self.on_probe(p).await,
            _ = tokio::time::sleep_until(wake) => {}
        }
        while let Ok(m) = self.rx.try_recv() {
            self.on_message(m).await;
        }
        while let Ok(p) = self.probe_rx.try_recv() {
            self.on_probe(p).await;
        }
    }

    fn next_wakeup(&self) -> Instant {
        let now = Instant::now();
        let mut t = now + RESYNC;
        for r in self.records.values() {
            if let Some(u) = r.backoff.until() {
                if u > now && u < t {
                    t = u;
                }
            }
        }
        if let Some(left) = self.active_deadline().filter(|_| self.state() == PodState::Syncing) {
            let left = left.duration_since(SystemTime::now()).unwrap_or_default();
            t = t.min(now + left);
        }
        t
    }

    /// When `spec.activeDeadlineSeconds` runs out, counted from the pod's start time.
    fn active_deadline(&self) -> Option<SystemTime> {
        let secs = pod::spec(&self.pod).active_deadline_seconds.and_then(|s| u64::try_from(s).ok())?;
        Some(self.start_time? + Duration::from_secs(secs))
    }

    /// Upstream's active deadline handler: a pod active longer than its deadline fails
    /// (its containers are then stopped like those of any finished pod).
    async fn check_active_deadline(&mut self) {
        if self.state() != PodState::Syncing || self.active_deadline().is_none_or(|d| SystemTime::now() < d) {
            return;
        }
        let (reason, message) = ("DeadlineExceeded", "Pod was active on the node longer than the specified deadline");
        tracing::info!(reason, "pod failed");
        self.event(EventType::Normal, reason, message).await;
        self.failed = true;
        self.failure = Some((reason.into(), message.into()));
    }

    async fn on_message(&mut self, m: WorkerMsg) {
        match m {
            WorkerMsg::Update(p) => {
                self.updated |= changed_by_user(&self.pod, &p);
                self.pod = p
            }
            WorkerMsg::Removed => self.removed = true,
            WorkerMsg::Exited { id } => self.on_exit(&id).await,
        }
    }

    fn ns(&self) -> &str {
        self.pod.namespace_or_default()
    }

    fn name(&self) -> &str {
        self.pod.name()
    }

    async fn event(&self, kind: EventType, reason: &str, message: &str) {
        self.host.api.event(&self.pod, kind, reason, message).await;
    }

    /// The spec of a container or init container of the pod.
    fn container_spec(&self, name: &str) -> Option<&Container> {
        let spec = pod::spec(&self.pod);
        spec.init_containers.iter().flatten().chain(&spec.containers).find(|c| c.name == name)
    }

    fn grace_period(&self) -> Duration {
        let s = self
            .pod
            .metadata
            .deletion_grace_period_seconds
            .or(pod::spec(&self.pod).termination_grace_period_seconds)
            .and_then(|s| u64::try_from(s).ok())
            .unwrap_or(30);
        Duration::from_secs(s)
    }

    fn is_terminal(&self) -> bool {
        self.failed || pod::is_terminal(&self.pod)
    }

    fn host_network(&self) -> bool {
        crate::sandbox::host_network(&self.pod)
    }

    /// The pod's addresses: its sandbox's, or the node's for a host-network pod.
    fn pod_ips(&self) -> Vec<String> {
        self.sandbox.as_ref().and_then(|s| s.ip).map(|ip| vec![ip.to_string()]).unwrap_or_else(|| {
            if self.host_network() {
                vec![self.host.node_ip.to_string()]
            } else {
                vec![]
            }
        })
    }

    fn pod_dir(&self) -> PathBuf {
        self.host.pod_dir(&self.uid)
    }

    fn log_dir(&self) -> PathBuf {
        self.host.pod_log_dir(self.ns(), self.name(), &self.uid)
    }
}

/// What upstream's pod config calls an update: the spec, labels, annotations or deletion
/// changed (a status write, the worker's own included, is not one).
fn changed_by_user(old: &Pod, new: &Pod) -> bool {
    let (a, b) = (&old.metadata, &new.metadata);
    old.spec != new.spec
        || a.labels != b.labels
        || a.annotations != b.annotations
        || a.deletion_timestamp != b.deletion_timestamp
        || a.deletion_grace_period_seconds != b.deletion_grace_period_seconds
}
