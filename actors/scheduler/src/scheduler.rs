//! The scheduler actor. It keeps a [`ClusterSnapshot`] from the node and pod informers,
//! takes unscheduled pods from a queue (unschedulable ones are retried with backoff, and at
//! once when the cluster changes), picks a node with the default [`Profile`], assumes the pod
//! there before the binding is written (so it never double-books a node while the write is in
//! flight), and binds through `pods/binding`. Failures are reported the way kubectl users know:
//! a `PodScheduled=False` condition and a `FailedScheduling` event.

use crate::framework::{ClusterSnapshot, PodInfo, Profile};
use actix::prelude::*;
use kubus_apimachinery::table::format_rfc3339;
use kubus_runtime::informer::{key_of, ObjectKey};
use kubus_runtime::{Change, Client, Informer, WorkQueue};
use prometheus::{
    register_histogram, register_int_counter_vec, register_int_gauge, Histogram, IntCounterVec, IntGauge,
};
use serde_json::{json, Value};
use std::collections::{HashMap, HashSet};
use std::sync::{Arc, LazyLock, Mutex};
use std::time::{Duration, Instant, SystemTime};

pub const DEFAULT_SCHEDULER: &str = "default-scheduler";

static ATTEMPTS: LazyLock<IntCounterVec> = LazyLock::new(|| {
    register_int_counter_vec!("kubus_scheduler_schedule_attempts_total", "Scheduling attempts by result", &["result"])
        .expect("registers once")
});
static ALGORITHM_LATENCY: LazyLock<Histogram> = LazyLock::new(|| {
    register_histogram!(
        "kubus_scheduler_scheduling_algorithm_duration_seconds",
        "Time to filter and score the nodes for one pod",
        vec![0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0]
    )
    .expect("registers once")
});
static PENDING: LazyLock<IntGauge> = LazyLock::new(|| {
    register_int_gauge!(
        "kubus_scheduler_unschedulable_pods",
        "Pods that did not fit and wait for the cluster to change"
    )
    .expect("registers once")
});

#[derive(Default)]
struct State {
    snapshot: ClusterSnapshot,
    /// Pods placed by this scheduler whose binding has not been observed yet: key -> node.
    assumed: HashMap<ObjectKey, String>,
    unschedulable: HashSet<ObjectKey>,
}

pub struct Scheduler {
    pub informers: kubus_runtime::InformerFactory,
    pub client: Client,
    /// Leader election (None: this scheduler is the only one).
    pub leader: Option<kubus_runtime::leader::LeaderConfig>,
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

fn is_ours(pod: &Value) -> bool {
    pod["spec"]["schedulerName"].as_str().unwrap_or(DEFAULT_SCHEDULER) == DEFAULT_SCHEDULER
}

fn is_unscheduled(pod: &Value) -> bool {
    pod["spec"]["nodeName"].as_str().is_none_or(str::is_empty)
}

fn is_terminal(pod: &Value) -> bool {
    matches!(pod["status"]["phase"].as_str(), Some("Succeeded" | "Failed"))
}

fn is_deleting(pod: &Value) -> bool {
    pod["metadata"]["deletionTimestamp"].is_string()
}

impl Actor for Scheduler {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        let (client, leader) = (self.client.clone(), self.leader.clone());
        kubus_runtime::leader::lead_then(self, ctx, client, leader, Scheduler::lead);
    }
}

impl Scheduler {
    fn lead(&mut self, ctx: &mut Context<Self>) {
        // Every result's series exists from the start (dashboards show zeros, not gaps).
        for result in ["scheduled", "unschedulable", "error"] {
            ATTEMPTS.with_label_values(&[result]);
        }
        LazyLock::force(&ALGORITHM_LATENCY);
        PENDING.set(0);
        let pods = self.informers.get("", "pods");
        let nodes = self.informers.get("", "nodes");
        let state = Arc::new(Mutex::new(State::default()));
        // Upstream's pod backoff: 1 s doubling to 10 s.
        let queue: Arc<WorkQueue<ObjectKey>> =
            WorkQueue::with_backoff("scheduler", Duration::from_secs(1), Duration::from_secs(10));
        ctx.spawn(feed(pods.clone(), nodes, state.clone(), queue.clone()).into_actor(self));
        ctx.spawn(schedule_loop(pods, state, queue, self.client.clone()).into_actor(self));
        tracing::info!("scheduler started");
    }
}

fn rebuild(state: &Mutex<State>, pods: &Informer, nodes: &Informer, queue: &WorkQueue<ObjectKey>) {
    let node_objs: Vec<Value> = nodes.list().iter().map(|n| (**n).clone()).collect();
    let mut placed = Vec::new();
    for p in pods.list() {
        if is_unscheduled(&p) {
            if is_ours(&p) && !is_deleting(&p) && !is_terminal(&p) {
                queue.add(key_of(&p));
            }
        } else if !is_terminal(&p) {
            placed.push((*p).clone());
        }
    }
    let mut s = state.lock().expect("scheduler lock");
    s.snapshot = ClusterSnapshot::from_objects(&node_objs, &placed);
    s.assumed.clear();
}

/// Keeps the snapshot current and feeds the queue.
async fn feed(pods: Informer, nodes: Informer, state: Arc<Mutex<State>>, queue: Arc<WorkQueue<ObjectKey>>) {
    let mut pod_changes = pods.subscribe();
    let mut node_changes = nodes.subscribe();
    pods.wait_synced().await;
    nodes.wait_synced().await;
    rebuild(&state, &pods, &nodes, &queue);
    let flush = |state: &Mutex<State>| {
        // The cluster changed: pods that did not fit get another chance now.
        let keys: Vec<ObjectKey> = state.lock().expect("scheduler lock").unschedulable.drain().collect();
        PENDING.set(0);
        keys.into_iter().for_each(|k| queue.add(k));
    };
    loop {
        tokio::select! {
            ch = node_changes.recv() => match ch {
                Ok(Change::Applied { new, .. }) => {
                    state.lock().expect("scheduler lock").snapshot.upsert_node((*new).clone());
                    flush(&state);
                }
                Ok(Change::Deleted(n)) => {
                    let name = n["metadata"]["name"].as_str().unwrap_or_default().to_string();
                    state.lock().expect("scheduler lock").snapshot.remove_node(&name);
                }
                Ok(Change::Resynced) | Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => rebuild(&state, &pods, &nodes, &queue),
                Err(_) => return,
            },
            ch = pod_changes.recv() => match ch {
                Ok(Change::Applied { old, new }) => {
                    let key = key_of(&new);
                    let mut s = state.lock().expect("scheduler lock");
                    if let Some(old) = old.as_ref().filter(|o| !is_unscheduled(o)) {
                        s.snapshot.remove_pod(old);
                    }
                    if !is_unscheduled(&new) {
                        if s.assumed.remove(&key).is_some() {
                            s.snapshot.remove_pod(&new);
                        }
                        if !is_terminal(&new) {
                            s.snapshot.add_pod(&new);
                        }
                        let finished = is_terminal(&new) && old.as_ref().is_some_and(|o| !is_terminal(o));
                        drop(s);
                        if finished {
                            flush(&state);
                        }
                    } else if is_ours(&new) && !is_deleting(&new) && !s.assumed.contains_key(&key) {
                        drop(s);
                        queue.add(key);
                    }
                }
                Ok(Change::Deleted(p)) => {
                    let key = key_of(&p);
                    {
                        let mut s = state.lock().expect("scheduler lock");
                        s.unschedulable.remove(&key);
                        if !is_unscheduled(&p) || s.assumed.remove(&key).is_some() {
                            s.snapshot.remove_pod(&p);
                        }
                    }
                    if !is_unscheduled(&p) {
                        flush(&state);
                    }
                }
                Ok(Change::Resynced) | Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => rebuild(&state, &pods, &nodes, &queue),
                Err(_) => return,
            },
        }
    }
}

async fn schedule_loop(pods: Informer, state: Arc<Mutex<State>>, queue: Arc<WorkQueue<ObjectKey>>, client: Client) {
    let profile = Arc::new(Profile::default());
    pods.wait_synced().await;
    loop {
        let key = queue.get().await;
        let pod = pods.get(&key.0, &key.1);
        let Some(pod) = pod.filter(|p| is_unscheduled(p) && is_ours(p) && !is_deleting(p) && !is_terminal(p)) else {
            queue.forget(&key);
            queue.done(&key);
            continue;
        };
        let started = Instant::now();
        let decision = {
            let s = state.lock().expect("scheduler lock");
            if s.assumed.contains_key(&key) {
                None
            } else {
                Some(profile.schedule_one(&with_default_spreading(&pod), &s.snapshot))
            }
        };
        ALGORITHM_LATENCY.observe(started.elapsed().as_secs_f64());
        match decision {
            None => {}
            Some(Ok(node)) => {
                ATTEMPTS.with_label_values(&["scheduled"]).inc();
                {
                    let mut s = state.lock().expect("scheduler lock");
                    s.unschedulable.remove(&key);
                    let mut placed = (*pod).clone();
                    placed["spec"]["nodeName"] = json!(node);
                    s.snapshot.assume(Arc::new(PodInfo::new(Arc::new(placed))), &node);
                    s.assumed.insert(key.clone(), node.clone());
                    PENDING.set(s.unschedulable.len() as i64);
                }
                let (client, state, queue, key) = (client.clone(), state.clone(), queue.clone(), key.clone());
                tokio::spawn(async move { bind(&client, &state, &queue, key, pod, node).await });
            }
            Some(Err(fit)) => {
                ATTEMPTS.with_label_values(&["unschedulable"]).inc();
                let message = fit.to_string();
                {
                    let mut s = state.lock().expect("scheduler lock");
                    s.unschedulable.insert(key.clone());
                    PENDING.set(s.unschedulable.len() as i64);
                }
                queue.add_rate_limited(key.clone());
                let client = client.clone();
                tokio::spawn(async move { report_unschedulable(&client, &pod, &message).await });
            }
        }
        queue.done(&key);
    }
}

/// Upstream's system-default topology spreading: a pod that a controller owns and that names
/// no spread constraints of its own is spread softly over hosts (maxSkew 3) and zones (maxSkew
/// 5) among the pods with its labels, so replicas do not pile onto one node when resource
/// scores tie.
fn with_default_spreading(pod: &Arc<Value>) -> std::borrow::Cow<'_, Value> {
    let owned =
        pod["metadata"]["ownerReferences"].as_array().is_some_and(|r| r.iter().any(|r| r["controller"] == true));
    let explicit = pod["spec"]["topologySpreadConstraints"].as_array().is_some_and(|c| !c.is_empty());
    let Some(labels) = pod["metadata"]["labels"].as_object().filter(|l| !l.is_empty()) else {
        return std::borrow::Cow::Borrowed(pod.as_ref());
    };
    if !owned || explicit {
        return std::borrow::Cow::Borrowed(pod.as_ref());
    }
    let mut p = (**pod).clone();
    let constraint = |key: &str, skew: i64| json!({"maxSkew": skew, "topologyKey": key, "whenUnsatisfiable": "ScheduleAnyway", "labelSelector": {"matchLabels": labels}});
    p["spec"]["topologySpreadConstraints"] =
        json!([constraint("kubernetes.io/hostname", 3), constraint("topology.kubernetes.io/zone", 5)]);
    std::borrow::Cow::Owned(p)
}

async fn bind(
    client: &Client,
    state: &Mutex<State>,
    queue: &Arc<WorkQueue<ObjectKey>>,
    key: ObjectKey,
    pod: Arc<Value>,
    node: String,
) {
    let binding = json!({"apiVersion": "v1", "kind": "Binding", "metadata": {"name": key.1, "namespace": key.0},
        "target": {"apiVersion": "v1", "kind": "Node", "name": node}});
    match client.post_sub("", "pods", Some(&key.0), &key.1, "binding", &binding).await {
        Ok(_) => {
            queue.forget(&key);
            let msg = format!("Successfully assigned {}/{} to {node}", key.0, key.1);
            kubus_runtime::Recorder::new(client.clone(), DEFAULT_SCHEDULER)
                .record(&pod, "v1", "Pod", "Normal", "Scheduled", &msg)
                .await;
        }
        Err(e) => {
            ATTEMPTS.with_label_values(&["error"]).inc();
            tracing::debug!(pod = ?key, %node, error = %e, "binding failed");
            {
                let mut s = state.lock().expect("scheduler lock");
                if s.assumed.remove(&key).is_some() {
                    let mut placed = (*pod).clone();
                    placed["spec"]["nodeName"] = json!(node);
                    s.snapshot.remove_pod(&placed);
                }
            }
            if !e.is_not_found() {
                queue.add_rate_limited(key);
            }
        }
    }
}

async fn report_unschedulable(client: &Client, pod: &Value, message: &str) {
    let (ns, name) = key_of(pod);
    let now = format_rfc3339(SystemTime::now());
    let already = pod["status"]["conditions"]
        .as_array()
        .and_then(|c| c.iter().find(|c| c["type"] == "PodScheduled"))
        .is_some_and(|c| c["status"] == "False" && c["message"] == message);
    if !already {
        let cond = json!({"type": "PodScheduled", "status": "False", "reason": "Unschedulable", "message": message,
            "lastProbeTime": null, "lastTransitionTime": now});
        let _ = client
            .merge_patch("", "pods", Some(&ns), &name, Some("status"), &json!({"status": {"conditions": [cond]}}))
            .await;
    }
    kubus_runtime::Recorder::new(client.clone(), DEFAULT_SCHEDULER)
        .record(pod, "v1", "Pod", "Warning", "FailedScheduling", message)
        .await;
}
