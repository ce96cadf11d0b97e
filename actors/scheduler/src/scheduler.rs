//! The scheduler actor. It keeps a [`ClusterSnapshot`] from the node and pod informers
//! ([`crate::event_handlers`]), takes unscheduled pods from a queue, picks a node with the
//! default [`Profile`], assumes the pod there before the binding is written (so it never
//! double-books a node while the write is in flight), and binds through `pods/binding`. A pod
//! that fits nowhere waits until the cluster changes in a way that may help it
//! ([`crate::queueing_hints`]), then is retried after its backoff. Failures are reported the
//! way kubectl users know: a `PodScheduled=False` condition and a `FailedScheduling` event,
//! written again only when the reason changes.

use crate::active_queue::ActiveQueue;
use crate::event_handlers::feed;
use crate::framework::plugins::default_preemption::{Budget, Candidate, DISRUPTION_TARGET, PREEMPTION_BY_SCHEDULER};
use crate::framework::plugins::{volume_binding, VolumeListers};
use crate::framework::{with_default_spreading, ClusterSnapshot, PodInfo, Profile};
use crate::queueing_hints::{backoff, helped_by, Events, UnschedulablePods};
use actix::prelude::*;
use k8s_openapi::api::core::v1::{Binding, Node, ObjectReference, PersistentVolume, PersistentVolumeClaim, Pod};
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use k8s_openapi::api::storage::v1::StorageClass;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kubus_apimachinery::pod::{self, is_terminal};
use kubus_apimachinery::time::format_rfc3339;
use kubus_apimachinery::volume::SELECTED_NODE;
use kubus_apimachinery::ObjectExt;
use kubus_controller_runtime::client::DeleteParams;
use kubus_controller_runtime::events::EventType;
use kubus_controller_runtime::{Client, Informer, ObjectKey, Recorder, WorkQueue};
use prometheus::{
    register_histogram, register_histogram_vec, register_int_counter, register_int_counter_vec, register_int_gauge_vec,
    Histogram, HistogramVec, IntCounter, IntCounterVec, IntGaugeVec,
};
use serde_json::json;
use std::collections::HashMap;
use std::sync::{Arc, LazyLock, Mutex};
use std::time::{Duration, Instant, SystemTime};
use tracing::Instrument;

pub const DEFAULT_SCHEDULER: &str = "default-scheduler";

// Upstream's names and labels (`profile` is the scheduler name), so kube-scheduler dashboards
// and alerts read this scheduler.
static ATTEMPTS: LazyLock<IntCounterVec> = LazyLock::new(|| {
    register_int_counter_vec!(
        "scheduler_schedule_attempts_total",
        "Number of attempts to schedule pods, by the result. 'unschedulable' means a pod could not be scheduled, while 'error' means an internal scheduler problem.",
        &["result", "profile"]
    )
    .expect("registers once")
});
static ALGORITHM_LATENCY: LazyLock<Histogram> = LazyLock::new(|| {
    register_histogram!(
        "scheduler_scheduling_algorithm_duration_seconds",
        "Scheduling algorithm latency in seconds",
        vec![0.0001, 0.00025, 0.0005, 0.001, 0.002, 0.004, 0.008, 0.016, 0.032, 0.064, 0.128, 0.256, 0.512, 1.024]
    )
    .expect("registers once")
});
static ATTEMPT_DURATION: LazyLock<HistogramVec> = LazyLock::new(|| {
    register_histogram_vec!(
        "scheduler_scheduling_attempt_duration_seconds",
        "Scheduling attempt latency in seconds (scheduling algorithm + binding)",
        &["result", "profile"],
        vec![0.0001, 0.00025, 0.0005, 0.001, 0.002, 0.004, 0.008, 0.016, 0.032, 0.064, 0.128, 0.256, 0.512, 1.024]
    )
    .expect("registers once")
});
static POD_SLI: LazyLock<HistogramVec> = LazyLock::new(|| {
    register_histogram_vec!(
        "scheduler_pod_scheduling_sli_duration_seconds",
        "E2e latency for a pod being scheduled, from the time the pod enters the scheduling queue and might involve multiple scheduling attempts.",
        &["attempts"],
        prometheus::exponential_buckets(0.01, 2.0, 20).expect("valid buckets")
    )
    .expect("registers once")
});

fn attempt(result: &str) {
    ATTEMPTS.with_label_values(&[result, DEFAULT_SCHEDULER]).inc();
}

static PREEMPTION_ATTEMPTS: LazyLock<IntCounter> = LazyLock::new(|| {
    register_int_counter!(
        "scheduler_preemption_attempts_total",
        "Preemption attempts: PostFilter runs for pods that fit no node"
    )
    .expect("registers once")
});
static PREEMPTION_VICTIMS: LazyLock<Histogram> = LazyLock::new(|| {
    register_histogram!(
        "scheduler_preemption_victims",
        "Pods chosen for eviction by one preemption",
        prometheus::exponential_buckets(1.0, 2.0, 7).expect("valid buckets")
    )
    .expect("registers once")
});
static PENDING_PODS: LazyLock<IntGaugeVec> = LazyLock::new(|| {
    register_int_gauge_vec!(
        "scheduler_pending_pods",
        "Pods waiting to be scheduled, by queue: active (ready for an attempt), backoff (waiting out \
         their backoff), unschedulable (waiting for a cluster change that may help), gated (never \
         attempted)",
        &["queue"]
    )
    .expect("registers once")
});

/// Pods in each of upstream's queues: ready (the work queue and the active heap), backing
/// off (waiting in the work queue for their deadline), waiting for a cluster event.
fn set_pending(active: usize, backoff: usize, unschedulable: usize) {
    PENDING_PODS.with_label_values(&["active"]).set(active as i64);
    PENDING_PODS.with_label_values(&["backoff"]).set(backoff as i64);
    PENDING_PODS.with_label_values(&["unschedulable"]).set(unschedulable as i64);
}

/// What the scheduler remembers of a pod that fit no node, until it is bound or deleted.
pub(crate) struct Failures {
    count: u32,
    /// Not retried before this, whatever happens (upstream's backoff).
    backoff_until: Instant,
    /// The message last reported (condition and event): retries that fail for the same
    /// reason write nothing, as upstream's event aggregation shows one event.
    reported: Option<String>,
}

#[derive(Default)]
pub(crate) struct State {
    pub(crate) snapshot: ClusterSnapshot,
    /// Pods placed by this scheduler whose binding has not been observed yet: key -> node.
    pub(crate) assumed: HashMap<ObjectKey, String>,
    /// Pods that fit no node, waiting for a change that may help.
    pub(crate) unschedulable: UnschedulablePods,
    pub(crate) failed: HashMap<ObjectKey, Failures>,
}

impl State {
    /// Queues pods again, each once its backoff has passed.
    pub(crate) fn requeue(&mut self, keys: Vec<ObjectKey>, queue: &Arc<WorkQueue<ObjectKey>>) {
        let now = Instant::now();
        for key in keys {
            let delay =
                self.failed.get(&key).map_or(Duration::ZERO, |f| f.backoff_until.saturating_duration_since(now));
            queue.add_after(key, delay);
        }
        self.count_unschedulable();
        PENDING_PODS.with_label_values(&["backoff"]).set(queue.waiting() as i64);
    }

    /// The cluster changed: pods that these events may help get another chance.
    pub(crate) fn wake(&mut self, events: Events, queue: &Arc<WorkQueue<ObjectKey>>) {
        if !events.is_empty() && !self.unschedulable.is_empty() {
            let keys = self.unschedulable.take(events);
            self.requeue(keys, queue);
        }
    }

    /// The pod is bound or gone: nothing to retry or report any more.
    pub(crate) fn forget(&mut self, key: &ObjectKey) {
        if self.unschedulable.remove(key) {
            self.count_unschedulable();
        }
        self.failed.remove(key);
    }

    /// Books a failed attempt: the pod backs off and waits for one of `events`. Returns
    /// whether `message` is news (to be reported) for this pod.
    pub(crate) fn failed_attempt(&mut self, key: &ObjectKey, message: &str, events: Events, now: Instant) -> bool {
        let failures =
            self.failed.entry(key.clone()).or_insert(Failures { count: 0, backoff_until: now, reported: None });
        failures.count += 1;
        failures.backoff_until = now + backoff(failures.count);
        let report = failures.reported.as_deref() != Some(message);
        if report {
            failures.reported = Some(message.to_string());
        }
        self.unschedulable.insert(key.clone(), events, now);
        self.count_unschedulable();
        report
    }

    fn count_unschedulable(&self) {
        PENDING_PODS.with_label_values(&["unschedulable"]).set(self.unschedulable.len() as i64);
    }

    /// Whether the pod failed before and waits for an event or its backoff.
    pub(crate) fn has_failed(&self, key: &ObjectKey) -> bool {
        self.failed.contains_key(key)
    }
}

pub struct Scheduler {
    pub informers: kubus_controller_runtime::InformerFactory,
    pub client: Client,
    /// Leader election (None: this scheduler is the only one).
    pub leader: Option<kubus_controller_runtime::leader::LeaderConfig>,
}

/// Stops the scheduler for good.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Shutdown;

impl Handler<Shutdown> for Scheduler {
    type Result = ();
    fn handle(&mut self, _: Shutdown, ctx: &mut Self::Context) {
        ctx.stop();
    }
}

impl Supervised for Scheduler {}

pub(crate) fn is_ours(p: &Pod) -> bool {
    pod::spec(p).scheduler_name.as_deref().unwrap_or(DEFAULT_SCHEDULER) == DEFAULT_SCHEDULER
}

pub(crate) fn is_unscheduled(p: &Pod) -> bool {
    pod::node_name(p).is_none()
}

impl Actor for Scheduler {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        let (client, leader) = (self.client.clone(), self.leader.clone());
        kubus_controller_runtime::leader::lead_then(self, ctx, client, leader, Scheduler::lead);
    }
}

impl Scheduler {
    fn lead(&mut self, ctx: &mut Context<Self>) {
        // Every result's series exists from the start (dashboards show zeros, not gaps).
        for result in ["scheduled", "unschedulable", "error"] {
            ATTEMPTS.with_label_values(&[result, DEFAULT_SCHEDULER]);
            ATTEMPT_DURATION.with_label_values(&[result, DEFAULT_SCHEDULER]);
        }
        LazyLock::force(&ALGORITHM_LATENCY);
        LazyLock::force(&PREEMPTION_ATTEMPTS);
        LazyLock::force(&PREEMPTION_VICTIMS);
        POD_SLI.with_label_values(&["1"]);
        set_pending(0, 0, 0);
        PENDING_PODS.with_label_values(&["gated"]).set(0);
        let pods = self.informers.get::<Pod>();
        let nodes = self.informers.get::<Node>();
        let volumes = VolumeListers::new(
            self.informers.get::<PersistentVolumeClaim>(),
            self.informers.get::<PersistentVolume>(),
            self.informers.get::<StorageClass>(),
        );
        let state = Arc::new(Mutex::new(State::default()));
        // Binding failures are retried with the queue's backoff: 1 s doubling to 10 s.
        let queue: Arc<WorkQueue<ObjectKey>> =
            WorkQueue::with_backoff("scheduler", Duration::from_secs(1), Duration::from_secs(10));
        ctx.spawn(feed(pods.clone(), nodes, state.clone(), queue.clone()).into_actor(self));
        ctx.spawn(wake_on_volumes(volumes.clone(), state.clone(), queue.clone()).into_actor(self));
        let budgets = self.informers.get::<PodDisruptionBudget>();
        ctx.spawn(schedule_loop(pods, volumes, budgets, state, queue, self.client.clone()).into_actor(self));
        tracing::info!("scheduler started");
    }
}

/// Claims, volumes and classes live outside the snapshot: a change of any may help a pod that
/// waits for its volumes.
async fn wake_on_volumes(volumes: VolumeListers, state: Arc<Mutex<State>>, queue: Arc<WorkQueue<ObjectKey>>) {
    let (mut a, mut b, mut c) = (volumes.claims.subscribe(), volumes.volumes.subscribe(), volumes.classes.subscribe());
    loop {
        let closed = tokio::select! {
            r = a.recv() => matches!(r, Err(tokio::sync::broadcast::error::RecvError::Closed)),
            r = b.recv() => matches!(r, Err(tokio::sync::broadcast::error::RecvError::Closed)),
            r = c.recv() => matches!(r, Err(tokio::sync::broadcast::error::RecvError::Closed)),
        };
        if closed {
            return;
        }
        state.lock().expect("scheduler lock").wake(Events::ALL, &queue);
    }
}

fn priority_of(pods: &Informer<Pod>, key: &ObjectKey) -> i32 {
    pods.get(&key.0, &key.1).and_then(|p| pod::spec(&p).priority).unwrap_or(0)
}

async fn schedule_loop(
    pods: Informer<Pod>,
    volumes: VolumeListers,
    budgets: Informer<PodDisruptionBudget>,
    state: Arc<Mutex<State>>,
    queue: Arc<WorkQueue<ObjectKey>>,
    client: Client,
) {
    let profile = Arc::new(Profile::with_volumes(volumes.clone()));
    // One recorder for every pod, so that its per-object event budget holds across attempts.
    let recorder = Recorder::new(client.clone(), DEFAULT_SCHEDULER);
    pods.wait_synced().await;
    let mut active = ActiveQueue::default();
    loop {
        // Whatever is ready joins the heap, which hands out the most important pod first.
        if active.is_empty() {
            let key = queue.get().await;
            active.push(key.clone(), priority_of(&pods, &key));
        }
        while let Some(key) = queue.try_get() {
            let priority = priority_of(&pods, &key);
            active.push(key, priority);
        }
        let key = active.pop().expect("the heap holds a pod");
        set_pending(
            active.len() + queue.len(),
            queue.waiting(),
            state.lock().expect("scheduler lock").unschedulable.len(),
        );
        let pod = pods.get(&key.0, &key.1);
        let Some(pod) = pod.filter(|p| is_unscheduled(p) && is_ours(p) && !p.is_deleting() && !is_terminal(p)) else {
            queue.forget(&key);
            queue.done(&key);
            continue;
        };
        let started = Instant::now();
        // One lock from the decision to its bookkeeping: no change can slip in between and
        // be missed by a pod about to wait for one.
        let mut s = state.lock().expect("scheduler lock");
        if s.assumed.contains_key(&key) {
            drop(s);
            queue.done(&key);
            continue;
        }
        let info = Arc::new(PodInfo::new(with_default_spreading(&pod)));
        let decision = profile.schedule(info.clone(), &s.snapshot);
        ALGORITHM_LATENCY.observe(started.elapsed().as_secs_f64());
        let result_label = if decision.is_ok() { "scheduled" } else { "unschedulable" };
        ATTEMPT_DURATION.with_label_values(&[result_label, DEFAULT_SCHEDULER]).observe(started.elapsed().as_secs_f64());
        match decision {
            Ok(result) => {
                attempt("scheduled");
                // From the pod's arrival to its placement, over all its attempts.
                let attempts = s.failed.get(&key).map_or(1, |f| f.count + 1);
                if let Some(created) = pod.metadata.creation_timestamp.as_ref() {
                    let waited = SystemTime::now().duration_since(created.0.into()).unwrap_or_default();
                    POD_SLI.with_label_values(&[&attempts.to_string()]).observe(waited.as_secs_f64());
                }
                let node = result.node;
                let mut placed = (*pod).clone();
                placed.spec.get_or_insert_with(Default::default).node_name = Some(node.clone());
                let placed = Arc::new(placed);
                s.unschedulable.remove(&key);
                s.snapshot.assume(Arc::new(PodInfo::new(placed.clone())), &node);
                s.assumed.insert(key.clone(), node.clone());
                s.count_unschedulable();
                drop(s);
                let (client, recorder, state, queue, key, volumes) =
                    (client.clone(), recorder.clone(), state.clone(), queue.clone(), key.clone(), volumes.clone());
                tokio::spawn(
                    async move { bind(&client, &recorder, &state, &queue, &volumes, key, placed, node).await },
                );
            }
            Err(mut fit) => {
                attempt("unschedulable");
                // PostFilter: preemption, unless the failure already says it cannot help.
                let mut preempted = None;
                let mut clear_nomination = fit.clear_nomination;
                if fit.post_filter_msg.is_none() && fit.pre_filter_msg.is_none() && fit.num_all_nodes > 0 {
                    PREEMPTION_ATTEMPTS.inc();
                    let span = tracing::info_span!("preemption", namespace = %key.0, pod = %key.1);
                    let _entered = span.enter();
                    let budgets: Vec<Budget> = budgets.read(|c| c.values().filter_map(|b| Budget::new(b)).collect());
                    match profile.preempt(&info, &s.snapshot, &fit, &budgets) {
                        Ok(candidate) => {
                            tracing::debug!(node = %candidate.node, victims = candidate.victims.len(), "preempting");
                            let lower = nominate(&mut s, &info, &candidate.node);
                            preempted = Some((candidate, lower));
                        }
                        Err(unhelpful) => {
                            tracing::debug!(reason = %unhelpful.message, "preemption cannot help");
                            fit.post_filter_msg = Some(unhelpful.message);
                            clear_nomination = unhelpful.clear_nomination;
                        }
                    }
                }
                if clear_nomination && s.snapshot.clear_nomination(&key).is_some() {
                    // The room it held is free for others.
                    s.wake(Events::POD_REMOVED, &queue);
                }
                let message = fit.to_string();
                let report = s.failed_attempt(&key, &message, helped_by(&fit.unschedulable_plugins), Instant::now());
                drop(s);
                // Upstream's updatePod: nominatedNodeName is written when the attempt changes it
                // (an empty name clears it).
                let nominated = match &preempted {
                    Some((c, _)) => Some(c.node.clone()),
                    None => clear_nomination.then(String::new),
                }
                .filter(|node| node != nominated_node_name(&pod));
                if let Some((candidate, lower)) = preempted {
                    let (client, recorder, pod) = (client.clone(), recorder.clone(), pod.clone());
                    let span = tracing::info_span!("preempt_victims", namespace = %key.0, pod = %key.1, node = %candidate.node);
                    tokio::spawn(
                        async move { evict_victims(&client, &recorder, &pod, &candidate, &lower).await }
                            .instrument(span),
                    );
                }
                if report || nominated.is_some() {
                    let (client, recorder, state) = (client.clone(), recorder.clone(), state.clone());
                    tokio::spawn(async move {
                        report_unschedulable(&client, &recorder, &state, &pod, &message, nominated.as_deref()).await
                    });
                }
            }
        }
        queue.done(&key);
    }
}

/// How long PreBind waits for the claims it named a node on to be bound (upstream's
/// bindTimeout is 600 s; local volumes are made in well under a second).
const VOLUME_BIND_TIMEOUT: Duration = Duration::from_secs(120);

/// PreBind of VolumeBinding: names `node` on the pod's waiting claims, then waits until each
/// is bound (by a volume that exists or one provisioned there).
async fn bind_volumes(client: &Client, volumes: &VolumeListers, p: &Pod, node: &str) -> Result<(), String> {
    let waiting = volume_binding::waiting_claims(volumes, p);
    if waiting.is_empty() {
        return Ok(());
    }
    for pvc in &waiting {
        if pvc.annotations().get(SELECTED_NODE).map(String::as_str) != Some(node) {
            let patch = json!({"metadata": {"annotations": {SELECTED_NODE: node}}});
            client
                .merge_patch::<PersistentVolumeClaim>(pvc.namespace(), pvc.name(), &patch)
                .await
                .map_err(|e| e.to_string())?;
        }
    }
    let deadline = Instant::now() + VOLUME_BIND_TIMEOUT;
    while !volume_binding::waiting_claims(volumes, p).is_empty() {
        if Instant::now() > deadline {
            return Err("binding volumes: context deadline exceeded".into());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Ok(())
}

/// Binds the pod to `node`; `placed` is the pod as assumed there (its `spec.nodeName` set).
#[allow(clippy::too_many_arguments)]
async fn bind(
    client: &Client,
    recorder: &Recorder,
    state: &Mutex<State>,
    queue: &Arc<WorkQueue<ObjectKey>>,
    volumes: &VolumeListers,
    key: ObjectKey,
    placed: Arc<Pod>,
    node: String,
) {
    if let Err(e) = bind_volumes(client, volumes, &placed, &node).await {
        attempt("error");
        recorder.record(&*placed, EventType::Warning, "FailedScheduling", &e).await;
        let mut s = state.lock().expect("scheduler lock");
        if s.assumed.remove(&key).is_some() && s.snapshot.remove_pod(&placed) {
            s.wake(Events::POD_REMOVED, queue);
        }
        drop(s);
        queue.add_rate_limited(key);
        return;
    }
    let binding = Binding {
        metadata: ObjectMeta { name: Some(key.1.clone()), namespace: Some(key.0.clone()), ..Default::default() },
        target: ObjectReference {
            api_version: Some("v1".to_string()),
            kind: Some("Node".to_string()),
            name: Some(node.clone()),
            ..Default::default()
        },
    };
    match client.create_subresource::<Pod, Binding, serde_json::Value>(&key.0, &key.1, "binding", &binding).await {
        Ok(_) => {
            queue.forget(&key);
            let msg = format!("Successfully assigned {}/{} to {node}", key.0, key.1);
            recorder.record(&*placed, EventType::Normal, "Scheduled", &msg).await;
        }
        Err(e) => {
            attempt("error");
            tracing::debug!(pod = ?key, %node, error = %e, "binding failed");
            {
                let mut s = state.lock().expect("scheduler lock");
                if s.assumed.remove(&key).is_some() && s.snapshot.remove_pod(&placed) {
                    // What it held on the node is free again.
                    s.wake(Events::POD_REMOVED, queue);
                }
            }
            if !e.is_not_found() {
                queue.add_rate_limited(key);
            }
        }
    }
}

/// The pod's `status.nominatedNodeName`, empty when it has none.
fn nominated_node_name(p: &Pod) -> &str {
    p.status.as_ref().and_then(|s| s.nominated_node_name.as_deref()).unwrap_or_default()
}

/// Records the node a preemptor waits for (upstream's nominator): pods of lower priority
/// nominated there lose their nomination, as the room is now this pod's. Returns them.
fn nominate(s: &mut State, preemptor: &Arc<PodInfo>, node: &str) -> Vec<Arc<Pod>> {
    let lower: Vec<Arc<Pod>> = s
        .snapshot
        .nominated_pods(node)
        .iter()
        .filter(|p| p.priority < preemptor.priority)
        .map(|p| p.pod_arc().clone())
        .collect();
    for p in &lower {
        s.snapshot.clear_nomination(&p.key());
    }
    s.snapshot.nominate(preemptor.clone(), node);
    lower
}

/// Upstream's prepareCandidate: each victim gets the DisruptionTarget condition, is deleted
/// gracefully and gets a `Preempted` event; lower-priority pods nominated to the node are
/// told they no longer are.
async fn evict_victims(client: &Client, recorder: &Recorder, preemptor: &Pod, c: &Candidate, lower: &[Arc<Pod>]) {
    PREEMPTION_VICTIMS.observe(c.victims.len() as f64);
    let scheduler = pod::spec(preemptor).scheduler_name.as_deref().unwrap_or(DEFAULT_SCHEDULER);
    for v in &c.victims {
        let victim = v.pod_arc();
        let (ns, name) = (victim.namespace(), victim.name());
        if !victim.is_deleting() {
            let mut conditions: Vec<serde_json::Value> = victim
                .status
                .as_ref()
                .and_then(|s| s.conditions.as_ref())
                .into_iter()
                .flatten()
                .filter(|c| c.type_ != DISRUPTION_TARGET)
                .filter_map(|c| serde_json::to_value(c).ok())
                .collect();
            conditions.push(json!({"type": DISRUPTION_TARGET, "status": "True", "reason": PREEMPTION_BY_SCHEDULER,
                "message": format!("{scheduler}: preempting to accommodate a higher priority pod"),
                "lastTransitionTime": format_rfc3339(SystemTime::now())}));
            let patch = json!({"status": {"conditions": conditions}});
            if let Err(e) = client.merge_patch_status::<Pod>(ns, name, &patch).await {
                tracing::debug!(victim = name, error = %e, "DisruptionTarget condition not written");
            }
            let params = DeleteParams { uid: Some(victim.uid().to_string()), ..Default::default() };
            match client.delete::<Pod>(ns, name, &params).await {
                Ok(()) => {}
                Err(e) if e.is_not_found() || e.is_conflict() => continue,
                Err(e) => {
                    tracing::warn!(victim = name, error = %e, "preemption victim not deleted");
                    continue;
                }
            }
        }
        let msg = format!("Preempted by pod {} on node {}", preemptor.uid(), c.node);
        recorder.record(&**victim, EventType::Normal, "Preempted", &msg).await;
    }
    for p in lower {
        let patch = json!({"status": {"nominatedNodeName": null}});
        if let Err(e) = client.merge_patch_status::<Pod>(p.namespace(), p.name(), &patch).await {
            tracing::debug!(pod = p.name(), error = %e, "nominated node not cleared");
        }
    }
}

/// Upstream's updatePod after a failed attempt: the PodScheduled=False condition, and
/// `nominatedNodeName` when `nominated` changes it (an empty name clears it).
async fn report_unschedulable(
    client: &Client,
    recorder: &Recorder,
    state: &Mutex<State>,
    p: &Pod,
    message: &str,
    nominated: Option<&str>,
) {
    let key = p.key();
    let now = format_rfc3339(SystemTime::now());
    let already =
        pod::condition(p, pod::SCHEDULED).is_some_and(|c| c.status == "False" && c.message.as_deref() == Some(message));
    let renominated = nominated.is_some_and(|n| nominated_node_name(p) != n);
    if !already || renominated {
        let cond = json!({"type": pod::SCHEDULED, "status": "False", "reason": "Unschedulable", "message": message,
            "lastProbeTime": null, "lastTransitionTime": now});
        let mut patch = json!({"status": {"conditions": [cond]}});
        match nominated {
            Some("") => patch["status"]["nominatedNodeName"] = serde_json::Value::Null,
            Some(node) => patch["status"]["nominatedNodeName"] = json!(node),
            None => {}
        }
        if let Err(e) = client.merge_patch_status::<Pod>(&key.0, &key.1, &patch).await {
            tracing::debug!(pod = ?key, error = %e, "unschedulable status not written");
            // Written again on the next failure, even for the same reason.
            if let Some(f) = state.lock().expect("scheduler lock").failed.get_mut(&key) {
                f.reported = None;
            }
        }
    }
    recorder.record(p, EventType::Warning, "FailedScheduling", message).await;
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Value;

    fn pod(v: Value) -> Arc<Pod> {
        Arc::new(serde_json::from_value(v).expect("a pod"))
    }

    #[test]
    fn which_pods_this_scheduler_takes() {
        assert!(is_ours(&pod(json!({"metadata": {"name": "p"}}))));
        assert!(is_ours(&pod(json!({"spec": {"containers": [], "schedulerName": "default-scheduler"}}))));
        assert!(!is_ours(&pod(json!({"spec": {"containers": [], "schedulerName": "other"}}))));
        assert!(is_unscheduled(&pod(json!({"spec": {"containers": [], "nodeName": ""}}))));
        assert!(is_unscheduled(&pod(json!({"metadata": {"name": "p"}}))));
        assert!(!is_unscheduled(&pod(json!({"spec": {"containers": [], "nodeName": "n1"}}))));
    }
}
