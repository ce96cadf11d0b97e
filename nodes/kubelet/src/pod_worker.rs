//! One worker per pod bound to this node: a task that owns the pod's sandbox, volumes and
//! containers and drives them toward the pod's spec, one sync at a time, like upstream's pod
//! workers. It wakes on a spec change, a container exit, a probe result, a back-off expiring
//! or a periodic resync, and reports the status when it changed. Its terminal step tears
//! everything down in order (containers with their grace period, rootfs, volumes, sandbox,
//! cgroup) and lets the API server delete the pod.

use crate::backoff::Backoff;
use crate::env::{self, PodFacts};
use crate::probes::{self, ProbeKind, ProbeUpdate};
use crate::spec::{self, ContainerPlan, ImageDefaults, QosClass};
use crate::status::{self, ContainerState, ContainerView, PodView, Terminated};
use crate::{volumes, NodeContext, PodHandle};
use kubus_apimachinery::conditions;
use prometheus::{register_histogram_vec, register_int_counter_vec, HistogramVec, IntCounterVec};
use serde_json::{json, Value};
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, LazyLock};
use std::time::{Duration, Instant, SystemTime};
use tokio::sync::{mpsc, watch};
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
static CONTAINER_STARTS: LazyLock<IntCounterVec> = LazyLock::new(|| {
    register_int_counter_vec!("kubus_kubelet_container_starts_total", "Containers started, by result", &["result"])
        .expect("registers once")
});

/// How often ConfigMap, Secret and token volumes are read again (upstream: its sync period,
/// about a minute; ours is shorter, a GET per pod and period is cheap).
const VOLUME_REFRESH: Duration = Duration::from_secs(20);

/// What wakes a pod worker.
#[derive(Debug)]
pub enum WorkerMsg {
    Update(Arc<Value>),
    /// The pod is gone from the API (or no longer bound here): stop everything.
    Removed,
    Exited {
        id: String,
    },
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

pub struct PodWorker {
    ctx: Arc<NodeContext>,
    uid: String,
    pod: Arc<Value>,
    tx: mpsc::UnboundedSender<WorkerMsg>,
    rx: mpsc::UnboundedReceiver<WorkerMsg>,
    probe_tx: mpsc::UnboundedSender<ProbeUpdate>,
    probe_rx: mpsc::UnboundedReceiver<ProbeUpdate>,
    records: HashMap<String, ContainerRecord>,
    sandbox: Option<kubus_node_network::Sandbox>,
    volumes: Option<volumes::VolumePaths>,
    /// The pod cgroup exists with the pod's limits (they cannot change on update, so it is made
    /// once, not on every sync).
    pod_cgroup: bool,
    start_time: Option<SystemTime>,
    failed: bool,
    removed: bool,
    last_status: Option<Value>,
    next_volume_refresh: Instant,
    handle: Arc<PodHandle>,
}

fn name_of(c: &Value) -> String {
    c["name"].as_str().unwrap_or("").to_string()
}

fn pod_dir(ctx: &NodeContext, uid: &str) -> PathBuf {
    ctx.config.state_dir.join("pods").join(uid)
}

impl PodWorker {
    pub fn new(
        ctx: Arc<NodeContext>,
        pod: Arc<Value>,
        handle: Arc<PodHandle>,
    ) -> (Self, mpsc::UnboundedSender<WorkerMsg>) {
        let (tx, rx) = mpsc::unbounded_channel();
        let (probe_tx, probe_rx) = mpsc::unbounded_channel();
        let uid = pod["metadata"]["uid"].as_str().unwrap_or("").to_string();
        let w = PodWorker {
            ctx,
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
            removed: false,
            last_status: None,
            next_volume_refresh: Instant::now(),
            handle,
        };
        (w, tx)
    }

    fn ns(&self) -> &str {
        self.pod["metadata"]["namespace"].as_str().unwrap_or("default")
    }
    fn name(&self) -> &str {
        self.pod["metadata"]["name"].as_str().unwrap_or("")
    }

    async fn event(&self, kind: &str, reason: &str, message: &str) {
        self.ctx.recorder.record(&self.pod, "v1", "Pod", kind, reason, message).await;
    }

    /// Takes over containers that survived an agent restart (found through their shims).
    pub async fn adopt(&mut self, found: Vec<kubus_node_runtime::ContainerInfo>) {
        self.sandbox = self.ctx.network().await.and_then(|n| n.get(&self.uid));
        if self.sandbox.is_some() {
            self.start_time = Some(SystemTime::now());
        }
        let prev = self.pod["status"]["containerStatuses"]
            .as_array()
            .into_iter()
            .chain(self.pod["status"]["initContainerStatuses"].as_array())
            .flatten()
            .map(|s| (name_of(s), s.clone()))
            .collect::<HashMap<_, _>>();
        if let Some(t) = self.pod["status"]["startTime"].as_str().and_then(kubus_apimachinery::table::parse_rfc3339) {
            self.start_time = Some(t);
        }
        let mut found = found;
        found.sort_by_key(|c| c.labels.get(crate::LABEL_ATTEMPT).and_then(|a| a.parse::<u32>().ok()).unwrap_or(0));
        for info in found {
            let name = info.labels.get(crate::LABEL_CONTAINER).cloned().unwrap_or_default();
            let attempt = info.labels.get(crate::LABEL_ATTEMPT).and_then(|a| a.parse().ok()).unwrap_or(0);
            let rec = self.records.entry(name.clone()).or_default();
            if let Some(old) = rec.current.take() {
                // An older run of the same container: only its logs matter now.
                let _ = self.ctx.runtime.delete(&old.id).await;
                let _ = kubus_image::ImageStore::unmount_rootfs(&old.dir);
            }
            rec.restarts = attempt;
            rec.last = prev.get(&name).and_then(|s| last_state_of(&s["lastState"]));
            let state = match &info.state {
                kubus_node_runtime::ContainerState::Running { started_at, .. } => {
                    RunState::Running { started_at: *started_at }
                }
                kubus_node_runtime::ContainerState::Exited(e) => RunState::Exited(terminated_from(&info.id, e)),
                kubus_node_runtime::ContainerState::Created => RunState::Exited(Terminated {
                    exit_code: 128,
                    signal: None,
                    reason: "ContainerCannotRun".into(),
                    message: "the container was created but never started".into(),
                    started_at: None,
                    finished_at: SystemTime::now(),
                    container_id: format!("kubus://{}", info.id),
                }),
            };
            let image = info.labels.get(crate::LABEL_IMAGE).cloned().unwrap_or_default();
            let image_id = info.labels.get(crate::LABEL_IMAGE_ID).cloned().unwrap_or_default();
            let (started_tx, _) = watch::channel(false);
            let dir = pod_dir(&self.ctx, &self.uid).join("containers").join(&info.id);
            let running = matches!(state, RunState::Running { .. });
            let mut run = Run {
                id: info.id.clone(),
                attempt,
                dir,
                image,
                image_id,
                state,
                ready: false,
                started: started_tx,
                probes: vec![],
            };
            if running {
                self.watch_exit(&info.id);
                if let Some(spec) = self.container_spec(&name) {
                    self.start_probes(&name, &spec, &mut run);
                }
            }
            self.records.entry(name).or_default().current = Some(run);
        }
        tracing::info!(pod = %format!("{}/{}", self.ns(), self.name()), containers = self.records.len(), "adopted running pod");
    }

    fn container_spec(&self, name: &str) -> Option<Value> {
        ["initContainers", "containers"]
            .iter()
            .flat_map(|k| self.pod["spec"][*k].as_array().into_iter().flatten())
            .find(|c| c["name"] == name)
            .cloned()
    }

    pub async fn run(mut self) {
        let span = tracing::info_span!("pod", pod = %format!("{}/{}", self.ns(), self.name()), uid = %self.uid);
        async move {
            loop {
                if self.removed || self.pod["metadata"]["deletionTimestamp"].is_string() {
                    self.terminate().await;
                    return;
                }
                match self.sync().await {
                    Ok(()) => SYNCS.with_label_values(&["ok"]).inc(),
                    Err(e) => {
                        SYNCS.with_label_values(&["error"]).inc();
                        tracing::warn!(error = %e, "pod sync failed");
                    }
                }
                self.report().await;
                let wake = self.next_wakeup();
                tokio::select! {
                    m = self.rx.recv() => match m {
                        Some(m) => self.on_message(m).await,
                        None => self.removed = true,
                    },
                    Some(p) = self.probe_rx.recv() => self.on_probe(p).await,
                    _ = tokio::time::sleep_until(wake.into()) => {}
                }
                // Take everything else that is already queued before the next sync.
                while let Ok(m) = self.rx.try_recv() {
                    self.on_message(m).await;
                }
                while let Ok(p) = self.probe_rx.try_recv() {
                    self.on_probe(p).await;
                }
            }
        }
        .instrument(span)
        .await
    }

    fn next_wakeup(&self) -> Instant {
        let mut t = Instant::now() + Duration::from_secs(10);
        for r in self.records.values() {
            if let Some(u) = r.backoff.until() {
                if u > Instant::now() && u < t {
                    t = u;
                }
            }
        }
        t
    }

    async fn on_message(&mut self, m: WorkerMsg) {
        match m {
            WorkerMsg::Update(p) => self.pod = p,
            WorkerMsg::Removed => self.removed = true,
            WorkerMsg::Exited { id } => self.on_exit(&id).await,
        }
    }

    async fn on_exit(&mut self, id: &str) {
        let Some((name, _)) = self.records.iter().find(|(_, r)| r.current.as_ref().is_some_and(|c| c.id == id)) else {
            return;
        };
        let name = name.clone();
        let state = self.ctx.runtime.state(id).await;
        let rec = self.records.get_mut(&name).expect("found above");
        let run = rec.current.as_mut().expect("found above");
        for p in run.probes.drain(..) {
            p.abort();
        }
        run.ready = false;
        if let RunState::Running { started_at } = run.state {
            let mut t = match state {
                Ok(kubus_node_runtime::ContainerState::Exited(e)) => terminated_from(id, &e),
                other => Terminated {
                    exit_code: 137,
                    signal: None,
                    reason: "ContainerStatusUnknown".into(),
                    message: format!("The container could not be located when the pod was terminated: {other:?}"),
                    started_at: Some(started_at),
                    finished_at: SystemTime::now(),
                    container_id: format!("kubus://{id}"),
                },
            };
            t.started_at = t.started_at.or(Some(started_at));
            if let Ok(msg) = std::fs::read_to_string(run.dir.join("termination-log")) {
                t.message = msg.chars().take(4096).collect();
            }
            tracing::info!(container = %name, exit_code = t.exit_code, reason = %t.reason, "container exited");
            run.state = RunState::Exited(t);
        }
    }

    async fn on_probe(&mut self, p: ProbeUpdate) {
        let Some(rec) = self.records.get_mut(&p.container) else { return };
        let Some(run) = rec.current.as_mut().filter(|r| r.id == p.container_id) else { return };
        if !matches!(run.state, RunState::Running { .. }) {
            return;
        }
        match (p.kind, p.success) {
            (ProbeKind::Readiness, ok) => {
                run.ready = ok;
                if !ok {
                    let msg = format!("Readiness probe failed: {}", p.message);
                    self.event("Warning", "Unhealthy", &msg).await;
                }
            }
            (ProbeKind::Startup, true) => {
                run.started.send_replace(true);
                let no_readiness = self
                    .pod
                    .get("spec")
                    .into_iter()
                    .flat_map(|s| ["initContainers", "containers"].map(|k| s[k].clone()))
                    .flat_map(|a| a.as_array().cloned().unwrap_or_default())
                    .find(|c| c["name"] == p.container.as_str())
                    .is_some_and(|s| s["readinessProbe"].is_null());
                if no_readiness {
                    run.ready = true;
                }
            }
            (kind, false) => {
                let id = run.id.clone();
                rec.killed_by_us = true;
                let msg = format!("{} probe failed: {}", kind.title(), p.message);
                self.event("Warning", "Unhealthy", &msg).await;
                let why = format!(
                    "Container {} failed {} probe, will be restarted",
                    p.container,
                    kind.title().to_lowercase()
                );
                self.event("Normal", "Killing", &why).await;
                let grace = self.grace_period();
                self.stop_container(&id, grace).await;
            }
            (ProbeKind::Liveness, true) => {}
        }
    }

    fn grace_period(&self) -> Duration {
        let s = self.pod["metadata"]["deletionGracePeriodSeconds"]
            .as_u64()
            .or_else(|| self.pod["spec"]["terminationGracePeriodSeconds"].as_u64())
            .unwrap_or(30);
        Duration::from_secs(s)
    }

    /// SIGTERM, the grace period, then SIGKILL to the whole container.
    async fn stop_container(&self, id: &str, grace: Duration) {
        let t0 = Instant::now();
        let _ = self.ctx.runtime.kill(id, 15, false).await;
        let waited = tokio::time::timeout(grace, self.ctx.runtime.wait(id)).await;
        if waited.is_err() {
            let _ = self.ctx.runtime.kill(id, 9, true).await;
            let _ = tokio::time::timeout(Duration::from_secs(10), self.ctx.runtime.wait(id)).await;
        }
        CONTAINER_OPS.with_label_values(&["stop"]).observe(t0.elapsed().as_secs_f64());
    }

    fn watch_exit(&self, id: &str) {
        let (runtime, tx, id) = (self.ctx.runtime.clone(), self.tx.clone(), id.to_string());
        tokio::spawn(async move {
            // A broken connection to the shim is retried: the exit must not be missed.
            loop {
                match runtime.wait(&id).await {
                    Ok(_) => break,
                    Err(e) => {
                        tracing::debug!(container = %id, error = %e, "waiting for the container failed; retrying");
                        if runtime.state(&id).await.is_err() {
                            break;
                        }
                        tokio::time::sleep(Duration::from_secs(1)).await;
                    }
                }
            }
            let _ = tx.send(WorkerMsg::Exited { id });
        });
    }

    fn facts_ips(&self) -> Vec<String> {
        self.sandbox.as_ref().and_then(|s| s.ip).map(|ip| vec![ip.to_string()]).unwrap_or_else(|| {
            if self.host_network() {
                vec![self.ctx.node_ip.to_string()]
            } else {
                vec![]
            }
        })
    }

    fn host_network(&self) -> bool {
        self.pod["spec"]["hostNetwork"].as_bool().unwrap_or(false)
    }

    async fn sync(&mut self) -> Result<(), String> {
        if self.is_terminal() {
            // A finished pod keeps nothing running: free its address and mounts.
            return self.release_finished().await;
        }
        // 1. The sandbox.
        if self.sandbox.is_none() {
            self.start_time.get_or_insert_with(SystemTime::now);
            let Some(network) = self.ctx.network().await else {
                return Err("the node has no pod CIDR yet".into());
            };
            let req = self.sandbox_request();
            let t0 = Instant::now();
            match network.create(req).await {
                Ok(s) => {
                    CONTAINER_OPS.with_label_values(&["sandbox"]).observe(t0.elapsed().as_secs_f64());
                    self.sandbox = Some(s);
                }
                Err(e) => {
                    let msg = format!("Failed to create pod sandbox: {e}");
                    self.event("Warning", "FailedCreatePodSandBox", &msg).await;
                    return Err(msg);
                }
            }
        }
        if !self.pod_cgroup {
            let qos = spec::qos_of(&self.pod);
            self.ctx
                .cgroups
                .create(&self.ctx.pod_cgroup(&self.uid, qos), &pod_resources(&self.pod))
                .map_err(|e| format!("pod cgroup: {e}"))?;
            self.pod_cgroup = true;
        }
        // 2. Volumes (refreshed now and then, so ConfigMap and Secret changes arrive).
        if self.volumes.is_none() || Instant::now() >= self.next_volume_refresh {
            let dir = pod_dir(&self.ctx, &self.uid);
            let ips = self.facts_ips();
            let host_ip = self.ctx.node_ip.to_string();
            let alloc = self.ctx.allocatable();
            let facts = PodFacts { pod: &self.pod, pod_ips: &ips, host_ip: &host_ip, node_allocatable: &alloc };
            match volumes::prepare(&dir, &facts, &self.ctx.client, &self.ctx.client).await {
                Ok(v) => {
                    self.volumes = Some(v);
                    self.next_volume_refresh = Instant::now() + VOLUME_REFRESH;
                }
                Err(e) => {
                    self.event("Warning", "FailedMount", &e.to_string()).await;
                    if self.volumes.is_none() {
                        return Err(e.to_string());
                    }
                }
            }
        }
        // 3. Init containers, in order.
        let restart_policy = self.pod["spec"]["restartPolicy"].as_str().unwrap_or("Always").to_string();
        let inits = self.pod["spec"]["initContainers"].as_array().cloned().unwrap_or_default();
        for c in &inits {
            let name = name_of(c);
            let sidecar = c["restartPolicy"] == "Always";
            let state = self.records.get(&name).and_then(|r| r.current.as_ref()).map(|r| r.state.clone());
            match state {
                Some(RunState::Exited(t)) if t.exit_code == 0 && !sidecar => continue,
                Some(RunState::Running { .. }) if sidecar => continue,
                Some(RunState::Running { .. }) => return Ok(()),
                Some(RunState::Exited(_)) if restart_policy == "Never" && !sidecar => {
                    self.failed = true;
                    return Ok(());
                }
                _ => {
                    self.start_if_due(c, true).await;
                    return Ok(());
                }
            }
        }
        // 4. The containers.
        let containers = self.pod["spec"]["containers"].as_array().cloned().unwrap_or_default();
        for c in &containers {
            let name = name_of(c);
            let state = self.records.get(&name).and_then(|r| r.current.as_ref()).map(|r| r.state.clone());
            let restart = match state {
                None => true,
                Some(RunState::Running { .. }) => false,
                Some(RunState::Exited(t)) => match restart_policy.as_str() {
                    "Never" => false,
                    "OnFailure" => t.exit_code != 0,
                    _ => true,
                },
            };
            if restart {
                self.start_if_due(c, false).await;
            }
        }
        Ok(())
    }

    fn is_terminal(&self) -> bool {
        self.failed || matches!(self.pod["status"]["phase"].as_str(), Some("Succeeded" | "Failed"))
    }

    async fn release_finished(&mut self) -> Result<(), String> {
        let running: Vec<String> = self
            .records
            .values()
            .filter_map(|r| r.current.as_ref())
            .filter(|r| matches!(r.state, RunState::Running { .. }))
            .map(|r| r.id.clone())
            .collect();
        for id in running {
            self.stop_container(&id, self.grace_period()).await;
            self.on_exit(&id).await;
        }
        self.teardown(false).await
    }

    /// Starts (or restarts) a container unless its back-off is still running.
    async fn start_if_due(&mut self, c: &Value, init: bool) {
        let name = name_of(c);
        let now = Instant::now();
        let (pod_name, pod_ns, uid) = (self.name().to_string(), self.ns().to_string(), self.uid.clone());
        let rec = self.records.entry(name.clone()).or_default();
        let previous_exit = match rec.current.as_ref().map(|r| &r.state) {
            Some(RunState::Exited(t)) => Some(t.clone()),
            _ => None,
        };
        if let Some(t) = &previous_exit {
            // This exit has not been counted yet: it starts (or extends) the back-off.
            if rec.last.as_ref().map(|l| &l.container_id) != Some(&t.container_id) {
                let ran = t.started_at.and_then(|s| t.finished_at.duration_since(s).ok());
                if !rec.killed_by_us || t.exit_code != 0 {
                    rec.backoff.fail(now, ran);
                }
                rec.killed_by_us = false;
                rec.last = Some(t.clone());
            }
        }
        if let Some(delay) = rec.backoff.waiting(now) {
            let reason = if rec.waiting.as_ref().is_some_and(|(r, _)| r == "ErrImagePull" || r == "ImagePullBackOff") {
                "ImagePullBackOff"
            } else {
                "CrashLoopBackOff"
            };
            let msg = if reason == "CrashLoopBackOff" {
                format!(
                    "back-off {}s restarting failed container={name} pod={pod_name}_{pod_ns}({uid})",
                    delay.as_secs()
                )
            } else {
                format!("Back-off pulling image \"{}\"", c["image"].as_str().unwrap_or(""))
            };
            let first = rec.waiting.as_ref().map(|(r, _)| r.as_str()) != Some(reason);
            rec.waiting = Some((reason.to_string(), msg.clone()));
            if first {
                let ev = if reason == "CrashLoopBackOff" {
                    format!("Back-off restarting failed container {name} in pod {pod_name}_{pod_ns}({uid})")
                } else {
                    msg
                };
                self.event("Warning", "BackOff", &ev).await;
            }
            return;
        }
        let attempt = match &rec.current {
            Some(r) => r.attempt + 1,
            None => rec.restarts,
        };
        if let Some(old) = rec.current.take() {
            // The previous run goes; its log file stays for `kubectl logs --previous`.
            let _ = self.ctx.runtime.delete(&old.id).await;
            let _ = kubus_image::ImageStore::unmount_rootfs(&old.dir);
            let _ = std::fs::remove_dir_all(&old.dir);
            self.prune_logs(&name, attempt);
        }
        match self.start_container(c, attempt, init).await {
            Ok(run) => {
                CONTAINER_STARTS.with_label_values(&["ok"]).inc();
                let rec = self.records.get_mut(&name).expect("inserted above");
                rec.restarts = attempt;
                rec.waiting = None;
                rec.current = Some(run);
            }
            Err((reason, message)) => {
                CONTAINER_STARTS.with_label_values(&["error"]).inc();
                let rec = self.records.get_mut(&name).expect("inserted above");
                rec.restarts = attempt.saturating_sub(1).max(rec.restarts);
                // Configuration errors (an image absent under Never, a missing Secret) are
                // re-checked at each resync and keep their reason, as upstream; a back-off
                // would relabel them CrashLoopBackOff and delay the fix up to 5 minutes.
                if !matches!(reason.as_str(), "ErrImageNeverPull" | "CreateContainerConfigError") {
                    rec.backoff.fail(Instant::now(), None);
                }
                rec.waiting = Some((reason, message));
            }
        }
    }

    fn log_dir(&self, container: &str) -> PathBuf {
        self.ctx.config.log_dir.join(format!("{}_{}_{}", self.ns(), self.name(), self.uid)).join(container)
    }

    /// Keeps the current and the previous run's log.
    fn prune_logs(&self, container: &str, attempt: u32) {
        let dir = self.log_dir(container);
        for e in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
            let n = e.file_name().to_string_lossy().trim_end_matches(".log").parse::<u32>().ok();
            if n.is_some_and(|n| n + 1 < attempt) {
                let _ = std::fs::remove_file(e.path());
            }
        }
    }

    fn sandbox_request(&self) -> kubus_node_network::SandboxRequest {
        let spec = &self.pod["spec"];
        let hostname = spec["hostname"].as_str().unwrap_or(self.name()).chars().take(63).collect::<String>();
        let port_mappings = spec["containers"]
            .as_array()
            .into_iter()
            .flatten()
            .flat_map(|c| c["ports"].as_array().into_iter().flatten())
            .filter_map(|p| {
                let host_port = p["hostPort"].as_u64().filter(|h| *h > 0)? as u16;
                Some(kubus_node_network::PortMapping {
                    host_port,
                    container_port: p["containerPort"].as_u64().unwrap_or(0) as u16,
                    protocol: p["protocol"]
                        .as_str()
                        .unwrap_or("TCP")
                        .parse()
                        .unwrap_or(kubus_node_network::Protocol::Tcp),
                    host_ip: p["hostIP"].as_str().filter(|s| !s.is_empty()).map(String::from),
                })
            })
            .collect();
        kubus_node_network::SandboxRequest {
            uid: self.uid.clone(),
            namespace: self.ns().to_string(),
            name: self.name().to_string(),
            hostname,
            subdomain: spec["subdomain"].as_str().map(String::from),
            host_aliases: spec["hostAliases"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|a| kubus_node_network::HostAlias {
                    ip: a["ip"].as_str().unwrap_or("").to_string(),
                    hostnames: a["hostnames"]
                        .as_array()
                        .into_iter()
                        .flatten()
                        .filter_map(|h| h.as_str().map(String::from))
                        .collect(),
                })
                .collect(),
            host_network: self.host_network(),
            port_mappings,
            dns: dns_for(spec, self.ns(), self.ctx.cluster_dns(), &self.ctx.config.cluster_domain),
        }
    }

    async fn start_container(&mut self, c: &Value, attempt: u32, init: bool) -> Result<Run, (String, String)> {
        let name = name_of(c);
        let image_name = c["image"].as_str().unwrap_or("").to_string();
        let policy = match c["imagePullPolicy"].as_str() {
            Some("Always") => kubus_image::PullPolicy::Always,
            Some("Never") => kubus_image::PullPolicy::Never,
            _ => kubus_image::PullPolicy::IfNotPresent,
        };
        self.records.entry(name.clone()).or_default().waiting = Some(("ContainerCreating".into(), String::new()));
        // Image.
        let t0 = Instant::now();
        let present = self.ctx.images.get(&image_name).is_some();
        // Never pulls nothing, so it announces no pull (upstream's events).
        if (!present && policy != kubus_image::PullPolicy::Never) || policy == kubus_image::PullPolicy::Always {
            self.event("Normal", "Pulling", &format!("Pulling image \"{image_name}\"")).await;
        }
        let mut fell_back = false;
        let pulled = match self.ctx.images.ensure(&image_name, policy).await {
            Ok(p) => p,
            // Always re-resolves the tag; offline (e.g. the built-in busybox), the node's copy
            // is still the image the pod asked for.
            Err(e) if policy == kubus_image::PullPolicy::Always && self.ctx.images.get(&image_name).is_some() => {
                let msg = format!(
                    "Container image \"{image_name}\" already present on machine and its registry is unreachable ({e}): using it"
                );
                self.event("Normal", "Pulled", &msg).await;
                let image = self.ctx.images.get(&image_name).expect("checked above");
                fell_back = true;
                kubus_image::Pulled { image, pulled: false, duration: t0.elapsed(), downloaded_bytes: 0 }
            }
            Err(e) => {
                let never = policy == kubus_image::PullPolicy::Never;
                let (reason, msg) = if never {
                    (
                        "ErrImageNeverPull",
                        format!("Container image \"{image_name}\" is not present with pull policy of Never"),
                    )
                } else {
                    ("ErrImagePull", format!("Failed to pull image \"{image_name}\": {e}"))
                };
                // Upstream files the Never case under its own reason, pull failures under Failed.
                self.event("Warning", if never { reason } else { "Failed" }, &msg).await;
                self.event("Warning", "Failed", &format!("Error: {reason}")).await;
                return Err((reason.into(), msg));
            }
        };
        CONTAINER_OPS.with_label_values(&["pull"]).observe(t0.elapsed().as_secs_f64());
        if fell_back {
            // The event above said what happened.
        } else if pulled.pulled {
            let secs = t0.elapsed().as_secs_f64();
            self.event(
                "Normal",
                "Pulled",
                &format!(
                    "Successfully pulled image \"{image_name}\" in {secs:.3}s. Image size: {} bytes.",
                    pulled.image.size
                ),
            )
            .await;
        } else {
            self.event("Normal", "Pulled", &format!("Container image \"{image_name}\" already present on machine"))
                .await;
        }
        let image = pulled.image;
        let defaults = ImageDefaults {
            entrypoint: image.config.entrypoint.clone(),
            cmd: image.config.cmd.clone(),
            env: image.config.env.clone(),
            working_dir: image.config.working_dir.clone().unwrap_or_default(),
            user: image.config.user.clone().unwrap_or_default(),
        };
        // Environment.
        let ips = self.facts_ips();
        let host_ip = self.ctx.node_ip.to_string();
        let alloc = self.ctx.allocatable();
        let facts = PodFacts { pod: &self.pod, pod_ips: &ips, host_ip: &host_ip, node_allocatable: &alloc };
        let base: Vec<(String, String)> = defaults
            .env
            .iter()
            .filter_map(|kv| kv.split_once('=').map(|(k, v)| (k.to_string(), v.to_string())))
            .collect();
        let hostname = self.sandbox_request().hostname;
        let mut extra = vec![("HOSTNAME".to_string(), hostname)];
        extra.extend(self.ctx.service_env(self.ns(), &self.pod).await);
        let env = match env::resolve(&facts, c, &base, &extra, &self.ctx.client).await {
            Ok(e) => e,
            Err(e) => {
                self.event("Warning", "Failed", &format!("Error: {e}")).await;
                return Err(("CreateContainerConfigError".into(), e.to_string()));
            }
        };
        // The run's files: rootfs, bundle, termination log.
        let id = new_container_id();
        let dir = pod_dir(&self.ctx, &self.uid).join("containers").join(&id);
        let fail = |reason: &str, e: String| (reason.to_string(), e);
        std::fs::create_dir_all(&dir).map_err(|e| fail("CreateContainerError", e.to_string()))?;
        let rootfs =
            self.ctx.images.mount_rootfs(&image, &dir).map_err(|e| fail("CreateContainerError", e.to_string()))?;
        let term_log = dir.join("termination-log");
        let _ = std::fs::write(&term_log, b"");
        let shm = pod_dir(&self.ctx, &self.uid).join("shm");
        if !volumes::is_mount_point(&shm) {
            let _ = std::fs::create_dir_all(&shm);
            let _ = nix::mount::mount(
                Some("shm"),
                &shm,
                Some("tmpfs"),
                nix::mount::MsFlags::MS_NOSUID | nix::mount::MsFlags::MS_NODEV | nix::mount::MsFlags::MS_NOEXEC,
                Some("mode=1777,size=65536k"),
            );
        }
        let sandbox = self.sandbox.clone().ok_or_else(|| fail("CreateContainerError", "no sandbox".into()))?;
        let vols = self.volumes.clone().unwrap_or_default();
        let qos = spec::qos_of(&self.pod);
        let cgroups_path =
            kubus_node_runtime::cgroups::container_cgroup_path(&self.ctx.pod_cgroup(&self.uid, qos), &id);
        let plan = ContainerPlan {
            pod: &self.pod,
            container: c,
            image: &defaults,
            env: &env,
            rootfs: &rootfs,
            volumes: &vols,
            netns: sandbox.netns.as_deref(),
            ipcns: (!self.pod["spec"]["hostIPC"].as_bool().unwrap_or(false)).then_some(sandbox.ipcns.as_path()),
            utsns: sandbox.utsns.as_deref(),
            hosts_file: &sandbox.hosts_file,
            resolv_conf: &sandbox.resolv_conf,
            hostname_file: &sandbox.hostname_file,
            shm_dir: &shm,
            termination_log: &term_log,
            cgroups_path: &cgroups_path,
            qos,
            memory_capacity: self.ctx.machine.memory_bytes,
            cgroup_v2: self.ctx.cgroups.version == kubus_node_runtime::cgroups::CgroupVersion::V2,
            seccomp_dir: &self.ctx.config.state_dir.join("seccomp"),
        };
        let spec_json = spec::build(&plan).map_err(|e| {
            let _ = kubus_image::ImageStore::unmount_rootfs(&dir);
            fail("CreateContainerConfigError", e.to_string())
        })?;
        let oci: oci_spec::runtime::Spec = serde_json::from_value(spec_json)
            .map_err(|e| fail("CreateContainerError", format!("runtime spec: {e}")))?;
        let log_dir = self.log_dir(&name);
        let _ = std::fs::create_dir_all(&log_dir);
        let labels = [
            (crate::LABEL_POD_UID, self.uid.clone()),
            (crate::LABEL_POD_NAMESPACE, self.ns().to_string()),
            (crate::LABEL_POD_NAME, self.name().to_string()),
            (crate::LABEL_CONTAINER, name.clone()),
            (crate::LABEL_ATTEMPT, attempt.to_string()),
            (crate::LABEL_IMAGE, image_name.clone()),
            (crate::LABEL_IMAGE_ID, image_ref(&image)),
            (crate::LABEL_INIT, init.to_string()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect();
        let t0 = Instant::now();
        let created = self
            .ctx
            .runtime
            .create(kubus_node_runtime::CreateContainer {
                id: id.clone(),
                spec: oci,
                bundle_dir: dir.clone(),
                log_path: log_dir.join(format!("{attempt}.log")),
                labels,
                stdin: c["stdin"].as_bool().unwrap_or(false),
                stdin_once: c["stdinOnce"].as_bool().unwrap_or(false),
            })
            .await;
        if let Err(e) = created {
            let msg = format!("Error: {e}");
            self.event("Warning", "Failed", &msg).await;
            let _ = self.ctx.runtime.delete(&id).await;
            let _ = kubus_image::ImageStore::unmount_rootfs(&dir);
            return Err(("CreateContainerError".into(), e.to_string()));
        }
        CONTAINER_OPS.with_label_values(&["create"]).observe(t0.elapsed().as_secs_f64());
        self.event("Normal", "Created", &format!("Created container: {name}")).await;
        let t0 = Instant::now();
        if let Err(e) = self.ctx.runtime.start(&id).await {
            let msg = format!("Error: failed to start container \"{name}\": {e}");
            self.event("Warning", "Failed", &msg).await;
            let _ = self.ctx.runtime.delete(&id).await;
            let _ = kubus_image::ImageStore::unmount_rootfs(&dir);
            return Err(("RunContainerError".into(), e.to_string()));
        }
        CONTAINER_OPS.with_label_values(&["start"]).observe(t0.elapsed().as_secs_f64());
        self.event("Normal", "Started", &format!("Started container {name}")).await;
        self.watch_exit(&id);
        let (started_tx, _) = watch::channel(false);
        let run = Run {
            id: id.clone(),
            attempt,
            dir,
            image: image_name,
            image_id: image_ref(&image),
            state: RunState::Running { started_at: SystemTime::now() },
            ready: false,
            started: started_tx,
            probes: vec![],
        };
        let mut run = run;
        self.start_probes(&name, c, &mut run);
        Ok(run)
    }

    fn start_probes(&self, name: &str, c: &Value, run: &mut Run) {
        let ips = self.facts_ips();
        let pod_ip = ips.first().and_then(|i| i.parse().ok());
        let has_startup = c["startupProbe"].is_object();
        run.started.send_replace(!has_startup);
        // Without a readiness probe a running container is ready (once started).
        run.ready = !has_startup && c["readinessProbe"].is_null();
        for kind in [ProbeKind::Startup, ProbeKind::Liveness, ProbeKind::Readiness] {
            let probe = &c[kind.field()];
            if !probe.is_object() {
                continue;
            }
            let runtime = self.ctx.runtime.clone();
            let id = run.id.clone();
            let exec: probes::ExecFn = Arc::new(move |argv, timeout| {
                let (runtime, id) = (runtime.clone(), id.clone());
                Box::pin(async move { runtime.exec_sync(&id, argv, timeout).await.map_err(|e| e.to_string()) })
            });
            let target = probes::ProbeTarget {
                container: name.to_string(),
                container_id: run.id.clone(),
                pod_ip,
                ports: c["ports"].clone(),
                exec,
            };
            run.probes.push(probes::spawn(kind, probe.clone(), target, run.started.subscribe(), self.probe_tx.clone()));
        }
    }

    fn views(&self, key: &str) -> Vec<ContainerView> {
        // Upstream's default waiting reason: every container of a pod with init containers
        // waits in PodInitializing (kubectl shows it), the others in ContainerCreating.
        let has_init = self.pod["spec"]["initContainers"].as_array().is_some_and(|a| !a.is_empty());
        let not_started = if has_init { "PodInitializing" } else { "ContainerCreating" };
        self.pod["spec"][key]
            .as_array()
            .into_iter()
            .flatten()
            .map(|c| {
                let name = name_of(c);
                let image = c["image"].as_str().unwrap_or("").to_string();
                let Some(rec) = self.records.get(&name) else {
                    return ContainerView::waiting(&name, &image, not_started);
                };
                let mut v = ContainerView::waiting(&name, &image, "ContainerCreating");
                v.restart_count = rec.restarts;
                v.last_state = rec.last.clone();
                if let Some(run) = &rec.current {
                    v.container_id = Some(format!("kubus://{}", run.id));
                    v.image = run.image.clone();
                    v.image_id = run.image_id.clone();
                    v.ready = run.ready;
                    v.started = *run.started.borrow() && matches!(run.state, RunState::Running { .. });
                    match &run.state {
                        RunState::Running { started_at } => {
                            v.state = ContainerState::Running { started_at: *started_at }
                        }
                        RunState::Exited(t) => {
                            v.state = ContainerState::Terminated(t.clone());
                            // The exit being shown is the current state, not the last one.
                            if rec.last.as_ref().map(|l| &l.container_id) == Some(&t.container_id) {
                                v.last_state = None;
                            }
                        }
                    }
                }
                if let Some((reason, message)) = &rec.waiting {
                    // Waiting to run again: the run that ended is the last state.
                    if let Some(RunState::Exited(t)) = rec.current.as_ref().map(|r| &r.state) {
                        v.last_state = Some(t.clone());
                    }
                    v.state = ContainerState::Waiting { reason: reason.clone(), message: message.clone() };
                    v.ready = false;
                    v.started = false;
                }
                v
            })
            .collect()
    }

    /// Writes the status when it changed.
    async fn report(&mut self) {
        let init = self.views("initContainers");
        let containers = self.views("containers");
        let ips = self.facts_ips();
        let host_ip = self.ctx.node_ip.to_string();
        let qos = spec::qos_of(&self.pod);
        let view = PodView {
            pod: &self.pod,
            init: &init,
            containers: &containers,
            sandbox_ready: self.sandbox.is_some(),
            pod_ips: &ips,
            host_ip: &host_ip,
            start_time: self.start_time,
            qos: spec::qos_name(qos),
            failed: self.failed,
        };
        let status = status::pod_status(&view);
        self.handle.update(
            &self.pod,
            &ips,
            self.records
                .iter()
                .filter_map(|(n, r)| {
                    r.current
                        .as_ref()
                        .map(|c| (n.clone(), c.id.clone(), c.attempt, matches!(c.state, RunState::Running { .. })))
                })
                .collect(),
        );
        // Someone else may have changed what the API says (the node lifecycle controller marks
        // pods of an unreachable node not ready): the kubelet's view wins once it is back.
        let api_agrees = conditions::in_status(&self.pod["status"], "Ready").map(|c| &c["status"])
            == conditions::in_status(&status, "Ready").map(|c| &c["status"]);
        if self.last_status.as_ref() == Some(&status) && api_agrees {
            return;
        }
        let patch = json!({"status": status});
        match self.ctx.client.merge_patch("", "pods", Some(self.ns()), self.name(), Some("status"), &patch).await {
            Ok(_) => self.last_status = Some(status),
            Err(e) if e.is_not_found() => self.removed = true,
            Err(e) => tracing::debug!(error = %e, "status not written; retrying on the next sync"),
        }
    }

    /// Stops everything and cleans up; the pod object is then deleted if it is being deleted.
    async fn terminate(&mut self) {
        let grace = if self.removed { Duration::from_secs(2) } else { self.grace_period() };
        let running: Vec<(String, String)> = self
            .records
            .iter()
            .filter_map(|(n, r)| {
                r.current
                    .as_ref()
                    .filter(|c| matches!(c.state, RunState::Running { .. }))
                    .map(|c| (n.clone(), c.id.clone()))
            })
            .collect();
        let this = &*self;
        let stops = running.iter().map(|(name, id)| async move {
            this.event("Normal", "Killing", &format!("Stopping container {name}")).await;
            this.stop_container(id, grace).await;
        });
        futures::future::join_all(stops).await;
        for (_, id) in &running {
            self.on_exit(id).await;
        }
        if let Err(e) = self.teardown(true).await {
            tracing::warn!(error = %e, "pod cleanup incomplete; retried when the agent restarts");
        }
        if !self.removed {
            self.report().await;
            let uid = self.uid.clone();
            let q = format!("gracePeriodSeconds=0&preconditions.uid={uid}");
            let _ = self.ctx.client.delete("", "pods", Some(self.ns()), self.name(), &q).await;
        }
        self.handle.clear();
        tracing::info!("pod terminated and cleaned up");
    }

    /// Removes containers, rootfs mounts, volumes, the sandbox and the pod cgroup; `logs` also
    /// removes the pod's log directory.
    async fn teardown(&mut self, logs: bool) -> Result<(), String> {
        let mut errors = vec![];
        for rec in self.records.values_mut() {
            if let Some(run) = rec.current.as_mut() {
                for p in run.probes.drain(..) {
                    p.abort();
                }
                if let Err(e) = self.ctx.runtime.delete(&run.id).await {
                    errors.push(format!("container {}: {e}", run.id));
                }
                if let Err(e) = kubus_image::ImageStore::unmount_rootfs(&run.dir) {
                    errors.push(format!("rootfs {}: {e}", run.dir.display()));
                }
            }
        }
        cleanup_pod(
            &self.ctx,
            &self.uid,
            logs.then(|| self.ctx.config.log_dir.join(format!("{}_{}_{}", self.ns(), self.name(), self.uid))),
        )
        .await
        .unwrap_or_else(|e| errors.push(e));
        self.sandbox = None;
        self.volumes = None;
        self.pod_cgroup = false;
        if errors.is_empty() {
            Ok(())
        } else {
            Err(errors.join("; "))
        }
    }
}

/// The node-level part of a pod's cleanup (after its containers are deleted), shared with
/// the agent's orphan sweep: volumes and mounts, the sandbox (CNI DEL), the pod cgroup.
pub async fn cleanup_pod(ctx: &NodeContext, uid: &str, log_dir: Option<PathBuf>) -> Result<(), String> {
    let mut errors = vec![];
    let dir = pod_dir(ctx, uid);
    for e in std::fs::read_dir(dir.join("containers")).into_iter().flatten().flatten() {
        let _ = kubus_image::ImageStore::unmount_rootfs(&e.path());
    }
    if let Err(e) = volumes::teardown(&dir) {
        errors.push(format!("pod dir: {e}"));
    }
    if let Some(network) = ctx.network().await {
        if let Err(e) = network.remove(uid).await {
            errors.push(format!("sandbox: {e}"));
        }
    }
    // The pod's QoS class may be unknown here (its object is gone): try each parent.
    for qos in [QosClass::Guaranteed, QosClass::Burstable, QosClass::BestEffort] {
        if let Err(e) = ctx.cgroups.remove(&ctx.pod_cgroup(uid, qos)) {
            errors.push(format!("pod cgroup: {e}"));
        }
    }
    if let Some(l) = log_dir {
        let _ = std::fs::remove_dir_all(l);
    }
    if errors.is_empty() {
        Ok(())
    } else {
        Err(errors.join("; "))
    }
}

/// The pod's resolv.conf by dnsPolicy, as the kubelet writes it: ClusterFirst (the default)
/// points at the cluster DNS with the `<ns>.svc.<domain> svc.<domain> <domain>` search path and
/// ndots:5 (hostNetwork pods fall back to the node's, unless ClusterFirstWithHostNet); Default
/// is the node's; None is `dnsConfig` alone. `dnsConfig` adds to the others. `None` here: the
/// node's resolv.conf as it is.
pub fn dns_for(
    spec: &Value,
    ns: &str,
    cluster_dns: Option<std::net::IpAddr>,
    domain: &str,
) -> Option<kubus_node_network::DnsConfig> {
    let cfg = &spec["dnsConfig"];
    let strings = |k: &str| -> Vec<String> {
        cfg[k].as_array().into_iter().flatten().filter_map(|v| v.as_str().map(String::from)).collect()
    };
    let options: Vec<String> = cfg["options"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|o| match o["value"].as_str() {
            Some(v) => format!("{}:{v}", o["name"].as_str().unwrap_or("")),
            None => o["name"].as_str().unwrap_or("").to_string(),
        })
        .collect();
    let policy = spec["dnsPolicy"].as_str().unwrap_or("ClusterFirst");
    let host_network = spec["hostNetwork"].as_bool().unwrap_or(false);
    let mut base = match (policy, cluster_dns) {
        ("None", _) => {
            return Some(kubus_node_network::DnsConfig {
                nameservers: strings("nameservers"),
                searches: strings("searches"),
                options,
            })
        }
        ("ClusterFirstWithHostNet", Some(ip)) | ("ClusterFirst", Some(ip))
            if policy != "ClusterFirst" || !host_network =>
        {
            let node = kubus_node_network::DnsConfig::from_node().unwrap_or_default();
            let mut searches = vec![format!("{ns}.svc.{domain}"), format!("svc.{domain}"), domain.to_string()];
            searches.extend(node.searches);
            kubus_node_network::DnsConfig {
                nameservers: vec![ip.to_string()],
                searches,
                options: vec!["ndots:5".into()],
            }
        }
        _ if cfg.is_object() => kubus_node_network::DnsConfig::from_node().unwrap_or_default(),
        _ => return None,
    };
    base.nameservers.extend(strings("nameservers"));
    base.searches.extend(strings("searches"));
    for o in options {
        let name = o.split(':').next().unwrap_or("").to_string();
        base.options.retain(|x| x.split(':').next() != Some(name.as_str()));
        base.options.push(o);
    }
    Some(base)
}

/// Pod-level limits: the sum of the containers' limits when every container has one.
fn pod_resources(pod: &Value) -> kubus_node_runtime::cgroups::CgroupResources {
    let containers = pod["spec"]["containers"].as_array().cloned().unwrap_or_default();
    let sum = |res: &str, section: &str| -> Option<i128> {
        containers.iter().try_fold(0i128, |acc, c| {
            let q = c["resources"][section][res].as_str()?;
            Some(acc + kubus_apimachinery::validation::parse_quantity(q).ok()?.milli_value())
        })
    };
    let cpu_requests = sum("cpu", "requests").unwrap_or(0);
    let cpu_quota = sum("cpu", "limits").map(|m| ((m * 100_000) / 1000).max(1000) as i64);
    kubus_node_runtime::cgroups::CgroupResources {
        cpu_shares: Some(((cpu_requests * 1024) / 1000).max(2) as u64),
        cpu_period: cpu_quota.map(|_| 100_000),
        cpu_quota,
        memory_limit: sum("memory", "limits").map(|m| (m / 1000) as i64),
        pids_limit: None,
    }
}

fn terminated_from(id: &str, e: &kubus_node_runtime::ExitInfo) -> Terminated {
    Terminated {
        exit_code: e.code,
        signal: e.signal,
        reason: e.reason.as_str().into(),
        message: String::new(),
        started_at: e.started_at,
        finished_at: e.finished_at,
        container_id: format!("kubus://{id}"),
    }
}

fn last_state_of(v: &Value) -> Option<Terminated> {
    let t = v.get("terminated")?;
    let time = |k: &str| t[k].as_str().and_then(kubus_apimachinery::table::parse_rfc3339);
    Some(Terminated {
        exit_code: t["exitCode"].as_i64().unwrap_or(0) as i32,
        signal: t["signal"].as_i64().map(|s| s as i32),
        reason: t["reason"].as_str().unwrap_or("").into(),
        message: t["message"].as_str().unwrap_or("").into(),
        started_at: time("startedAt"),
        finished_at: time("finishedAt").unwrap_or_else(SystemTime::now),
        container_id: t["containerID"].as_str().unwrap_or("").into(),
    })
}

fn image_ref(image: &kubus_image::ImageInfo) -> String {
    image.repo_digests.first().cloned().unwrap_or_else(|| image.id.clone())
}

/// 32 random hex characters: short enough for unix socket paths under the runtime's state.
fn new_container_id() -> String {
    uuid::Uuid::new_v4().simple().to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dns_policies() {
        let ip: std::net::IpAddr = "10.96.0.10".parse().unwrap();
        let d = dns_for(&json!({}), "team", Some(ip), "cluster.local").unwrap();
        assert_eq!(d.nameservers, vec!["10.96.0.10"]);
        assert_eq!(&d.searches[..3], ["team.svc.cluster.local", "svc.cluster.local", "cluster.local"]);
        assert_eq!(d.options, vec!["ndots:5"]);
        // hostNetwork pods keep the node's unless ClusterFirstWithHostNet.
        assert!(dns_for(&json!({"hostNetwork": true}), "team", Some(ip), "cluster.local").is_none());
        let d = dns_for(&json!({"hostNetwork": true, "dnsPolicy": "ClusterFirstWithHostNet"}), "t", Some(ip), "c.l")
            .unwrap();
        assert_eq!(d.nameservers, vec!["10.96.0.10"]);
        assert!(dns_for(&json!({"dnsPolicy": "Default"}), "t", Some(ip), "c.l").is_none());
        assert!(dns_for(&json!({}), "t", None, "c.l").is_none(), "no cluster DNS: the node's");
        let none = json!({"dnsPolicy": "None", "dnsConfig": {"nameservers": ["1.1.1.1"], "options": [{"name": "ndots", "value": "2"}]}});
        let d = dns_for(&none, "t", Some(ip), "c.l").unwrap();
        assert_eq!(
            (d.nameservers, d.searches, d.options),
            (vec!["1.1.1.1".to_string()], vec![], vec!["ndots:2".to_string()])
        );
        let extra = json!({"dnsConfig": {"searches": ["corp.example"], "options": [{"name": "ndots", "value": "1"}]}});
        let d = dns_for(&extra, "t", Some(ip), "c.l").unwrap();
        assert!(d.searches.contains(&"corp.example".to_string()));
        assert_eq!(d.options, vec!["ndots:1"], "dnsConfig options override");
    }
}
