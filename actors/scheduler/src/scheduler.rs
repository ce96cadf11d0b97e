//! The scheduler actor. It keeps a [`ClusterSnapshot`] from the node and pod informers,
//! takes unscheduled pods from a queue (unschedulable ones are retried with backoff, and at
//! once when the cluster changes), picks a node with the default [`Profile`], assumes the pod
//! there before the binding is written (so it never double-books a node while the write is in
//! flight), and binds through `pods/binding`. Failures are reported the way kubectl users know:
//! a `PodScheduled=False` condition and a `FailedScheduling` event.

use crate::framework::{ClusterSnapshot, PodInfo, Profile};
use actix::prelude::*;
use k8s_openapi::api::core::v1::{Binding, Node, ObjectReference, Pod, TopologySpreadConstraint};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};
use kubus_apimachinery::pod::{self, is_terminal};
use kubus_apimachinery::time::format_rfc3339;
use kubus_apimachinery::ObjectExt;
use kubus_controller_runtime::events::EventType;
use kubus_controller_runtime::{Change, Client, Informer, ObjectKey, Recorder, WorkQueue};
use prometheus::{
    register_histogram, register_int_counter_vec, register_int_gauge, Histogram, IntCounterVec, IntGauge,
};
use serde_json::json;
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

fn is_ours(p: &Pod) -> bool {
    pod::spec(p).scheduler_name.as_deref().unwrap_or(DEFAULT_SCHEDULER) == DEFAULT_SCHEDULER
}

fn is_unscheduled(p: &Pod) -> bool {
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
            ATTEMPTS.with_label_values(&[result]);
        }
        LazyLock::force(&ALGORITHM_LATENCY);
        PENDING.set(0);
        let pods = self.informers.get::<Pod>();
        let nodes = self.informers.get::<Node>();
        let state = Arc::new(Mutex::new(State::default()));
        // Upstream's pod backoff: 1 s doubling to 10 s.
        let queue: Arc<WorkQueue<ObjectKey>> =
            WorkQueue::with_backoff("scheduler", Duration::from_secs(1), Duration::from_secs(10));
        ctx.spawn(feed(pods.clone(), nodes, state.clone(), queue.clone()).into_actor(self));
        ctx.spawn(schedule_loop(pods, state, queue, self.client.clone()).into_actor(self));
        tracing::info!("scheduler started");
    }
}

fn rebuild(state: &Mutex<State>, pods: &Informer<Pod>, nodes: &Informer<Node>, queue: &WorkQueue<ObjectKey>) {
    let mut placed = Vec::new();
    for p in pods.list() {
        if is_unscheduled(&p) {
            if is_ours(&p) && !p.is_deleting() && !is_terminal(&p) {
                queue.add(p.key());
            }
        } else if !is_terminal(&p) {
            placed.push(p);
        }
    }
    // The snapshot shares the informers' objects.
    let snapshot = ClusterSnapshot::from_objects(nodes.list(), placed);
    let mut s = state.lock().expect("scheduler lock");
    s.snapshot = snapshot;
    s.assumed.clear();
}

/// Keeps the snapshot current and feeds the queue.
async fn feed(pods: Informer<Pod>, nodes: Informer<Node>, state: Arc<Mutex<State>>, queue: Arc<WorkQueue<ObjectKey>>) {
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
                    state.lock().expect("scheduler lock").snapshot.upsert_node(new);
                    flush(&state);
                }
                Ok(Change::Deleted(n)) => {
                    state.lock().expect("scheduler lock").snapshot.remove_node(n.name());
                }
                Ok(Change::Resynced) | Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => rebuild(&state, &pods, &nodes, &queue),
                Err(_) => return,
            },
            ch = pod_changes.recv() => match ch {
                Ok(Change::Applied { old, new }) => {
                    let key = new.key();
                    let mut s = state.lock().expect("scheduler lock");
                    if let Some(old) = old.as_ref().filter(|o| !is_unscheduled(o)) {
                        s.snapshot.remove_pod(old);
                    }
                    if !is_unscheduled(&new) {
                        if s.assumed.remove(&key).is_some() {
                            s.snapshot.remove_pod(&new);
                        }
                        if !is_terminal(&new) {
                            s.snapshot.add_pod(new.clone());
                        }
                        let finished = is_terminal(&new) && old.as_ref().is_some_and(|o| !is_terminal(o));
                        drop(s);
                        if finished {
                            flush(&state);
                        }
                    } else if is_ours(&new) && !new.is_deleting() && !s.assumed.contains_key(&key) {
                        drop(s);
                        queue.add(key);
                    }
                }
                Ok(Change::Deleted(p)) => {
                    let key = p.key();
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

async fn schedule_loop(
    pods: Informer<Pod>,
    state: Arc<Mutex<State>>,
    queue: Arc<WorkQueue<ObjectKey>>,
    client: Client,
) {
    let profile = Arc::new(Profile::default());
    pods.wait_synced().await;
    loop {
        let key = queue.get().await;
        let pod = pods.get(&key.0, &key.1);
        let Some(pod) = pod.filter(|p| is_unscheduled(p) && is_ours(p) && !p.is_deleting() && !is_terminal(p)) else {
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
                let info = Arc::new(PodInfo::new(with_default_spreading(&pod)));
                Some(profile.schedule(info, &s.snapshot).map(|r| r.node))
            }
        };
        ALGORITHM_LATENCY.observe(started.elapsed().as_secs_f64());
        match decision {
            None => {}
            Some(Ok(node)) => {
                ATTEMPTS.with_label_values(&["scheduled"]).inc();
                let mut placed = (*pod).clone();
                placed.spec.get_or_insert_with(Default::default).node_name = Some(node.clone());
                let placed = Arc::new(placed);
                {
                    let mut s = state.lock().expect("scheduler lock");
                    s.unschedulable.remove(&key);
                    s.snapshot.assume(Arc::new(PodInfo::new(placed.clone())), &node);
                    s.assumed.insert(key.clone(), node.clone());
                    PENDING.set(s.unschedulable.len() as i64);
                }
                let (client, state, queue, key) = (client.clone(), state.clone(), queue.clone(), key.clone());
                tokio::spawn(async move { bind(&client, &state, &queue, key, placed, node).await });
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
/// scores tie. Other pods are returned as they are (the same `Arc`).
fn with_default_spreading(p: &Arc<Pod>) -> Arc<Pod> {
    let explicit = pod::spec(p).topology_spread_constraints.as_ref().is_some_and(|c| !c.is_empty());
    let labels = p.labels();
    if p.controller_ref().is_none() || explicit || labels.is_empty() {
        return p.clone();
    }
    let constraint = |key: &str, max_skew: i32| TopologySpreadConstraint {
        max_skew,
        topology_key: key.to_string(),
        when_unsatisfiable: "ScheduleAnyway".to_string(),
        label_selector: Some(LabelSelector { match_labels: Some(labels.clone()), match_expressions: None }),
        ..Default::default()
    };
    let mut spread = (**p).clone();
    spread.spec.get_or_insert_with(Default::default).topology_spread_constraints =
        Some(vec![constraint("kubernetes.io/hostname", 3), constraint("topology.kubernetes.io/zone", 5)]);
    Arc::new(spread)
}

/// Binds the pod to `node`; `placed` is the pod as assumed there (its `spec.nodeName` set).
async fn bind(
    client: &Client,
    state: &Mutex<State>,
    queue: &Arc<WorkQueue<ObjectKey>>,
    key: ObjectKey,
    placed: Arc<Pod>,
    node: String,
) {
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
            Recorder::new(client.clone(), DEFAULT_SCHEDULER)
                .record(&*placed, EventType::Normal, "Scheduled", &msg)
                .await;
        }
        Err(e) => {
            ATTEMPTS.with_label_values(&["error"]).inc();
            tracing::debug!(pod = ?key, %node, error = %e, "binding failed");
            {
                let mut s = state.lock().expect("scheduler lock");
                if s.assumed.remove(&key).is_some() {
                    s.snapshot.remove_pod(&placed);
                }
            }
            if !e.is_not_found() {
                queue.add_rate_limited(key);
            }
        }
    }
}

async fn report_unschedulable(client: &Client, p: &Pod, message: &str) {
    let (ns, name) = p.key();
    let now = format_rfc3339(SystemTime::now());
    let already =
        pod::condition(p, pod::SCHEDULED).is_some_and(|c| c.status == "False" && c.message.as_deref() == Some(message));
    if !already {
        let cond = json!({"type": pod::SCHEDULED, "status": "False", "reason": "Unschedulable", "message": message,
            "lastProbeTime": null, "lastTransitionTime": now});
        let patch = json!({"status": {"conditions": [cond]}});
        let _ = client.merge_patch_status::<Pod>(&ns, &name, &patch).await;
    }
    Recorder::new(client.clone(), DEFAULT_SCHEDULER).record(p, EventType::Warning, "FailedScheduling", message).await;
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Value;

    fn pod(v: Value) -> Arc<Pod> {
        Arc::new(serde_json::from_value(v).expect("a pod"))
    }

    #[test]
    fn default_spreading_for_controlled_pods_without_constraints() {
        let owner =
            json!([{"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "web", "uid": "u", "controller": true}]);
        let owned = pod(json!({"metadata": {"name": "w", "labels": {"app": "web"}, "ownerReferences": owner},
            "spec": {"containers": [{"name": "c"}]}}));
        let spread = with_default_spreading(&owned);
        let got = serde_json::to_value(&spread.spec.as_ref().unwrap().topology_spread_constraints).unwrap();
        let selector = json!({"matchLabels": {"app": "web"}});
        assert_eq!(
            got,
            json!([
                {"maxSkew": 3, "topologyKey": "kubernetes.io/hostname", "whenUnsatisfiable": "ScheduleAnyway",
                 "labelSelector": selector},
                {"maxSkew": 5, "topologyKey": "topology.kubernetes.io/zone", "whenUnsatisfiable": "ScheduleAnyway",
                 "labelSelector": selector}
            ])
        );
        // Anything else is left as it is, without a copy.
        let unowned = pod(json!({"metadata": {"name": "w", "labels": {"app": "web"}}}));
        assert!(Arc::ptr_eq(&with_default_spreading(&unowned), &unowned));
        let unlabelled = pod(json!({"metadata": {"name": "w", "ownerReferences": owner}}));
        assert!(Arc::ptr_eq(&with_default_spreading(&unlabelled), &unlabelled));
        let explicit = pod(json!({"metadata": {"name": "w", "labels": {"app": "web"}, "ownerReferences": owner},
            "spec": {"containers": [], "topologySpreadConstraints": [{"maxSkew": 1, "topologyKey": "zone",
                "whenUnsatisfiable": "DoNotSchedule"}]}}));
        assert!(Arc::ptr_eq(&with_default_spreading(&explicit), &explicit));
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
