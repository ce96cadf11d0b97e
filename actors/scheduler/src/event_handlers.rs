//! Keeps the scheduler's snapshot current from the node and pod informers, feeds the queue
//! with new unscheduled pods, and wakes waiting pods on the changes that may help them. Each
//! event costs what it touches (a node, a pod); after a relist or a lagging subscription the
//! snapshot is compared with the informers' caches object by object rather than rebuilt.

use crate::framework::PodInfo;
use crate::queueing_hints::{node_changes, pod_changes, pod_updated, Events};
use crate::scheduler::{is_ours, is_unscheduled, State};
use k8s_openapi::api::core::v1::{Node, Pod};
use kubus_apimachinery::pod::is_terminal;
use kubus_apimachinery::ObjectExt;
use kubus_controller_runtime::informer::Cache;
use kubus_controller_runtime::{Change, Informer, ObjectKey, WorkQueue};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::broadcast::error::RecvError;

/// How often pods that have waited too long are looked for, and how long is too long
/// (upstream's flush of unschedulablePods, and its podMaxInUnschedulablePodsDuration).
const FLUSH_PERIOD: Duration = Duration::from_secs(30);
const MAX_WAIT: Duration = Duration::from_secs(300);

/// Keeps the snapshot current and feeds the queue.
pub(crate) async fn feed(
    pods: Informer<Pod>,
    nodes: Informer<Node>,
    state: Arc<Mutex<State>>,
    queue: Arc<WorkQueue<ObjectKey>>,
) {
    let mut pod_changes = pods.subscribe();
    let mut node_changes = nodes.subscribe();
    pods.wait_synced().await;
    nodes.wait_synced().await;
    resync(&state, &pods, &nodes, &queue);
    let mut flush = tokio::time::interval(FLUSH_PERIOD);
    loop {
        tokio::select! {
            ch = node_changes.recv() => match ch {
                Ok(Change::Applied { old, new }) => on_node(&mut state.lock().expect("scheduler lock"), old.as_deref(), new, &queue),
                Ok(Change::Deleted(n)) => {
                    let mut s = state.lock().expect("scheduler lock");
                    s.snapshot.remove_node(n.name());
                    s.wake(Events::NODE_DELETED, &queue);
                }
                Ok(Change::Resynced) | Err(RecvError::Lagged(_)) => resync(&state, &pods, &nodes, &queue),
                Err(RecvError::Closed) => return,
            },
            ch = pod_changes.recv() => match ch {
                Ok(Change::Applied { old, new }) => on_pod(&mut state.lock().expect("scheduler lock"), old, new, &queue),
                Ok(Change::Deleted(p)) => on_pod_deleted(&mut state.lock().expect("scheduler lock"), &p, &queue),
                Ok(Change::Resynced) | Err(RecvError::Lagged(_)) => resync(&state, &pods, &nodes, &queue),
                Err(RecvError::Closed) => return,
            },
            _ = flush.tick() => {
                let mut s = state.lock().expect("scheduler lock");
                let keys = s.unschedulable.take_waiting(MAX_WAIT, Instant::now());
                s.requeue(keys, &queue);
            }
        }
    }
}

fn on_node(s: &mut State, old: Option<&Node>, new: Arc<Node>, queue: &Arc<WorkQueue<ObjectKey>>) {
    // A heartbeat changes nothing a filter reads: it wakes nobody.
    let events = old.map_or(Events::NODE_ADDED, |old| node_changes(old, &new));
    s.snapshot.upsert_node(new);
    s.wake(events, queue);
}

fn on_pod(s: &mut State, old: Option<Arc<Pod>>, new: Arc<Pod>, queue: &Arc<WorkQueue<ObjectKey>>) {
    let key = new.key();
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
        s.forget(&key);
        s.wake(pod_changes(old.as_deref(), Some(&new)), queue);
    } else if is_ours(&new) && !new.is_deleting() && !s.assumed.contains_key(&key) {
        update_nomination(s, old.as_deref(), &new, queue);
        if !s.has_failed(&key) {
            queue.add(key);
        } else if old.as_deref().is_none_or(|o| pod_updated(o, &new)) {
            // The pod itself changed (tolerations, gates, labels): worth another try, after
            // its backoff. Its status (the scheduler's own report included) is not.
            s.unschedulable.remove(&key);
            s.requeue(vec![key], queue);
        }
    }
}

fn nominated_node_name(p: &Pod) -> Option<&str> {
    p.status.as_ref().and_then(|st| st.nominated_node_name.as_deref()).filter(|n| !n.is_empty())
}

/// Upstream's UpdateNominatedPod: the pod's status says where it is nominated (a pod that
/// preempted, e.g. under a previous leader, holds that node's room here too), and a
/// nomination the status drops is forgotten. Only when the status never named one is the
/// scheduler's own in-memory nomination kept (its status write may not have been seen yet).
/// The nominated pod is the new object, so its labels are current for affinity and spreading.
fn update_nomination(s: &mut State, old: Option<&Pod>, new: &Arc<Pod>, queue: &Arc<WorkQueue<ObjectKey>>) {
    let key = new.key();
    let node = match (nominated_node_name(new), old.and_then(nominated_node_name)) {
        (Some(node), _) => node.to_string(),
        (None, Some(_)) => {
            if s.snapshot.clear_nomination(&key).is_some() {
                // The room it held is free for others.
                s.wake(Events::POD_REMOVED, queue);
            }
            return;
        }
        (None, None) => match s.snapshot.nominated_node(&key) {
            Some(node) => node.to_string(),
            None => return,
        },
    };
    s.snapshot.nominate(Arc::new(PodInfo::new(new.clone())), &node);
}

fn on_pod_deleted(s: &mut State, p: &Arc<Pod>, queue: &Arc<WorkQueue<ObjectKey>>) {
    let key = p.key();
    s.forget(&key);
    // The room it was nominated to is free for others.
    if s.snapshot.clear_nomination(&key).is_some() {
        s.wake(Events::POD_REMOVED, queue);
    }
    if (!is_unscheduled(p) || s.assumed.remove(&key).is_some()) && s.snapshot.remove_pod(p) {
        s.wake(Events::POD_REMOVED, queue);
    }
}

/// Brings the snapshot in line with the informers' caches after a relist or a lagging
/// subscription, when events may have been missed.
fn resync(state: &Mutex<State>, pods: &Informer<Pod>, nodes: &Informer<Node>, queue: &Arc<WorkQueue<ObjectKey>>) {
    let mut s = state.lock().expect("scheduler lock");
    nodes.read(|nodes| pods.read(|pods| reconcile(&mut s, nodes, pods, queue)));
}

/// Compares the snapshot with the caches object by object. The snapshot shares the caches'
/// `Arc`s, so a periodic resync that finds nothing changed costs a lookup per object and
/// wakes nobody; any difference wakes every waiting pod, as the events that would have told
/// which ones were missed.
fn reconcile(s: &mut State, nodes: &Cache<Node>, pods: &Cache<Pod>, queue: &Arc<WorkQueue<ObjectKey>>) {
    let mut changed = false;
    let gone: Vec<String> = s
        .snapshot
        .nodes()
        .iter()
        .filter(|n| nodes.get(&(String::new(), n.name().to_string())).is_none())
        .map(|n| n.name().to_string())
        .collect();
    for name in gone {
        s.snapshot.remove_node(&name);
        changed = true;
    }
    for n in nodes.values() {
        if !s.snapshot.node(n.name()).is_some_and(|known| Arc::ptr_eq(known.node_arc(), n)) {
            s.snapshot.upsert_node(n.clone());
            changed = true;
        }
    }
    // Placed pods the cache no longer has on a node; pods assumed by this scheduler stay
    // until their binding is seen or fails.
    let stale: Vec<Arc<Pod>> = s
        .snapshot
        .placed_keys()
        .filter(|k| !s.assumed.contains_key(*k))
        .filter(|k| pods.get(k).is_none_or(|p| is_unscheduled(p) || is_terminal(p)))
        .filter_map(|k| s.snapshot.placed(&k.0, &k.1).map(|(_, p)| p.pod_arc().clone()))
        .collect();
    for p in stale {
        changed |= s.snapshot.remove_pod(&p);
    }
    let missed: Vec<ObjectKey> =
        s.failed.keys().chain(s.assumed.keys()).filter(|k| pods.get(k).is_none()).cloned().collect();
    for key in missed {
        if let Some(node) = s.assumed.remove(&key) {
            let (ns, name) = &key;
            let held = s.snapshot.placed(ns, name).filter(|(n, _)| *n == node).map(|(_, p)| p.pod_arc().clone());
            changed |= held.is_some_and(|p| s.snapshot.remove_pod(&p));
        }
        s.forget(&key);
    }
    for p in pods.values() {
        let key = p.key();
        if !is_unscheduled(p) {
            let known = s.snapshot.placed(&key.0, &key.1).is_some_and(|(_, info)| Arc::ptr_eq(info.pod_arc(), p));
            if !known && !is_terminal(p) {
                s.assumed.remove(&key);
                changed |= s.snapshot.add_pod(p.clone());
            }
            s.forget(&key);
        } else if is_ours(p)
            && !p.is_deleting()
            && !is_terminal(p)
            && !s.assumed.contains_key(&key)
            && !s.has_failed(&key)
        {
            // New since the events were missed (the queue drops keys it already holds).
            update_nomination(s, None, p, queue);
            queue.add(key);
        }
    }
    if changed {
        let keys = s.unschedulable.take(Events::ALL);
        s.requeue(keys, queue);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::framework::plugins::{node_affinity, node_resources_fit};
    use crate::queueing_hints::helped_by;
    use serde_json::{json, Value};
    use std::collections::BTreeSet;

    fn node(name: &str, cpu: &str) -> Arc<Node> {
        Arc::new(
            serde_json::from_value(json!({"metadata": {"name": name, "labels": {"kubernetes.io/hostname": name}},
                "status": {"allocatable": {"cpu": cpu, "memory": "8Gi", "pods": "110"}}}))
            .expect("a node"),
        )
    }

    fn pod(name: &str, node: Option<&str>) -> Arc<Pod> {
        let mut v = json!({"metadata": {"name": name, "namespace": "default", "uid": name},
            "spec": {"containers": [{"name": "c", "resources": {"requests": {"cpu": "1"}}}]}});
        if let Some(n) = node {
            v["spec"]["nodeName"] = json!(n);
        }
        Arc::new(serde_json::from_value(v).expect("a pod"))
    }

    /// The pod with `value` at `pointer` (whose parent exists).
    fn with(p: &Pod, pointer: &str, value: Value) -> Arc<Pod> {
        let mut v = serde_json::to_value(p).unwrap();
        let (parent, field) = pointer.rsplit_once('/').unwrap();
        let parent = v.pointer_mut(parent).and_then(Value::as_object_mut).expect("an existing object");
        parent.insert(field.to_string(), value);
        Arc::new(serde_json::from_value(v).unwrap())
    }

    fn key(name: &str) -> ObjectKey {
        ("default".to_string(), name.to_string())
    }

    fn queue() -> Arc<WorkQueue<ObjectKey>> {
        WorkQueue::with_backoff("scheduler-test", Duration::from_secs(1), Duration::from_secs(10))
    }

    /// `name` failed on `plugin`; `ago` is how long ago (a minute: its backoff has passed).
    fn failed(s: &mut State, name: &str, plugin: &'static str, ago: Duration) {
        let events = helped_by(&BTreeSet::from([plugin]));
        s.failed_attempt(&key(name), "0/1 nodes are available", events, Instant::now() - ago);
    }

    const LONG_AGO: Duration = Duration::from_secs(60);

    #[tokio::test]
    async fn heartbeats_wake_nobody_and_more_room_wakes_pods_that_did_not_fit() {
        let (mut s, q) = (State::default(), queue());
        let n1 = node("n1", "1");
        on_node(&mut s, None, n1.clone(), &q);
        failed(&mut s, "big", node_resources_fit::NAME, LONG_AGO);
        failed(&mut s, "picky", node_affinity::NAME, LONG_AGO);
        let mut beat = (*n1).clone();
        beat.status.as_mut().unwrap().conditions = Some(vec![serde_json::from_value(
            json!({"type": "Ready", "status": "True", "lastHeartbeatTime": "2024-01-01T00:00:10Z"}),
        )
        .unwrap()]);
        on_node(&mut s, Some(&n1), Arc::new(beat), &q);
        assert_eq!((q.len(), s.unschedulable.len()), (0, 2));
        on_node(&mut s, Some(&n1), node("n1", "4"), &q);
        assert_eq!(q.get().await, key("big"));
        assert!(s.unschedulable.contains(&key("picky")) && !s.unschedulable.contains(&key("big")));
        // A new node may suit anyone.
        on_node(&mut s, None, node("n2", "4"), &q);
        assert!(s.unschedulable.is_empty());
    }

    #[tokio::test]
    async fn a_waiting_pod_ignores_its_own_status_and_retries_after_its_backoff() {
        let (mut s, q) = (State::default(), queue());
        on_node(&mut s, None, node("n1", "1"), &q);
        let p = pod("p", None);
        on_pod(&mut s, None, p.clone(), &q);
        assert_eq!(q.get().await, key("p"));
        q.done(&key("p"));
        // It did not fit just now: its backoff (1 s) has not passed.
        failed(&mut s, "p", node_affinity::NAME, Duration::ZERO);
        let reported = with(&p, "/status", json!({"conditions": [{"type": "PodScheduled", "status": "False"}]}));
        on_pod(&mut s, Some(p.clone()), reported.clone(), &q);
        assert_eq!((q.len(), q.waiting(), s.unschedulable.len()), (0, 0, 1));
        // Its spec changed: worth a retry, once the backoff has passed.
        let tolerant = with(&reported, "/spec/containers/0/name", json!("d"));
        on_pod(&mut s, Some(reported), tolerant, &q);
        assert_eq!((q.len(), q.waiting(), s.unschedulable.len()), (0, 1, 0));
    }

    #[tokio::test]
    async fn a_pod_leaving_a_node_wakes_pods_waiting_for_room() {
        let (mut s, q) = (State::default(), queue());
        on_node(&mut s, None, node("n1", "1"), &q);
        let placed = pod("placed", Some("n1"));
        on_pod(&mut s, None, placed.clone(), &q);
        assert_eq!(s.snapshot.node("n1").unwrap().requested.milli_cpu, 1000);
        failed(&mut s, "big", node_resources_fit::NAME, LONG_AGO);
        failed(&mut s, "picky", node_affinity::NAME, LONG_AGO);
        // Another pod bound elsewhere frees nothing.
        on_pod(&mut s, None, pod("other", Some("n1")), &q);
        assert_eq!(s.unschedulable.len(), 2);
        // Finished: its room is free; its deletion later is no news.
        let done = with(&placed, "/status", json!({"phase": "Succeeded"}));
        on_pod(&mut s, Some(placed.clone()), done.clone(), &q);
        assert_eq!(q.get().await, key("big"));
        assert_eq!(s.snapshot.node("n1").unwrap().requested.milli_cpu, 1000);
        on_pod_deleted(&mut s, &done, &q);
        assert!(s.unschedulable.contains(&key("picky")));
        // Bound at last: nothing left to retry or report.
        on_pod(&mut s, None, pod("big", Some("n1")), &q);
        assert!(!s.has_failed(&key("big")));
    }

    #[tokio::test]
    async fn a_resync_that_finds_nothing_new_wakes_nobody() {
        let (mut s, q) = (State::default(), queue());
        let (mut nodes, mut pods) = (Cache::<Node>::default(), Cache::<Pod>::default());
        nodes.insert((String::new(), "n1".into()), node("n1", "1"));
        pods.insert(key("placed"), pod("placed", Some("n1")));
        pods.insert(key("waiting"), pod("waiting", None));
        reconcile(&mut s, &nodes, &pods, &q);
        assert_eq!(s.snapshot.num_pods(), 1);
        assert_eq!(q.get().await, key("waiting"));
        q.done(&key("waiting"));
        failed(&mut s, "waiting", node_resources_fit::NAME, LONG_AGO);
        reconcile(&mut s, &nodes, &pods, &q);
        assert_eq!((q.len(), s.unschedulable.len()), (0, 1));
        // A deletion that was missed: the snapshot catches up, and waiting pods try again.
        pods.remove(&key("placed"));
        reconcile(&mut s, &nodes, &pods, &q);
        assert_eq!((s.snapshot.num_pods(), s.unschedulable.len()), (0, 0));
        assert_eq!(q.get().await, key("waiting"));
        // Assumed pods survive until their binding is seen.
        s.snapshot.assume(Arc::new(crate::framework::PodInfo::new(pod("fresh", Some("n1")))), "n1");
        s.assumed.insert(key("fresh"), "n1".into());
        pods.insert(key("fresh"), pod("fresh", None));
        reconcile(&mut s, &nodes, &pods, &q);
        assert_eq!(s.snapshot.num_pods(), 1);
    }

    #[tokio::test]
    async fn the_nominator_follows_the_pods_status() {
        let (mut s, q) = (State::default(), queue());
        on_node(&mut s, None, node("n1", "1"), &q);
        let p = pod("p", None);
        on_pod(&mut s, None, p.clone(), &q);
        assert_eq!(s.snapshot.nominated_node(&key("p")), None);
        // Nominated by a status write (this scheduler's, or a previous leader's).
        let nominated = with(&p, "/status", json!({"nominatedNodeName": "n1"}));
        on_pod(&mut s, Some(p.clone()), nominated.clone(), &q);
        assert_eq!(s.snapshot.nominated_node(&key("p")), Some("n1"));
        // An update that does not touch it keeps it, with the pod as it is now.
        let relabelled = with(&nominated, "/metadata/labels", json!({"app": "web"}));
        on_pod(&mut s, Some(nominated), relabelled.clone(), &q);
        assert_eq!(s.snapshot.nominated_pods("n1")[0].labels().get("app").map(String::as_str), Some("web"));
        // Cleared in the status (preemption could not help it): the nominator forgets it.
        let cleared = with(&relabelled, "/status", json!({}));
        on_pod(&mut s, Some(relabelled), cleared.clone(), &q);
        assert_eq!(s.snapshot.nominated_node(&key("p")), None);
        assert!(!s.snapshot.has_nominations());
        // A nomination made in memory survives updates that came before its status write.
        s.snapshot.nominate(Arc::new(PodInfo::new(cleared.clone())), "n1");
        let touched = with(&cleared, "/metadata/labels", json!({"app": "db"}));
        on_pod(&mut s, Some(cleared), touched, &q);
        assert_eq!(s.snapshot.nominated_node(&key("p")), Some("n1"));
    }
}
