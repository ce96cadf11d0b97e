//! Upstream's queueing hints, by event kind: a pod that fit no node waits until the cluster
//! changes in a way that could make one of the plugins that rejected it accept it, then is
//! retried once its backoff has passed. Heartbeats and other changes no plugin looks at wake
//! nobody, and the pods an event wakes are found without looking at the others.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{Node, Pod};
use kubus_apimachinery::pod;
use kubus_apimachinery::ObjectKey;

use crate::framework::plugins::{
    inter_pod_affinity, node_affinity, node_name, node_ports, node_resources_fit, node_unschedulable,
    pod_topology_spread, taint_toleration, volume_binding,
};

/// A set of cluster event kinds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Events(u8);

impl Events {
    pub const NONE: Events = Events(0);
    pub const NODE_ADDED: Events = Events(1);
    pub const NODE_DELETED: Events = Events(1 << 1);
    pub const NODE_ALLOCATABLE: Events = Events(1 << 2);
    pub const NODE_LABELS: Events = Events(1 << 3);
    pub const NODE_TAINTS: Events = Events(1 << 4);
    pub const NODE_UNSCHEDULABLE: Events = Events(1 << 5);
    /// A pod appeared on a node (bound), or a placed pod's labels changed.
    pub const POD_ADDED: Events = Events(1 << 6);
    /// A pod left a node: deleted, finished, or its labels changed.
    pub const POD_REMOVED: Events = Events(1 << 7);
    pub const ALL: Events = Events(u8::MAX);
    const KINDS: usize = 8;

    pub fn is_empty(self) -> bool {
        self.0 == 0
    }

    pub fn contains(self, other: Events) -> bool {
        self.0 & other.0 == other.0
    }

    fn kinds(self) -> impl Iterator<Item = usize> {
        (0..Self::KINDS).filter(move |i| self.0 & (1 << i) != 0)
    }
}

impl std::ops::BitOr for Events {
    type Output = Events;
    fn bitor(self, rhs: Events) -> Events {
        Events(self.0 | rhs.0)
    }
}

impl std::ops::BitOrAssign for Events {
    fn bitor_assign(&mut self, rhs: Events) {
        self.0 |= rhs.0;
    }
}

/// The events that can make a pod rejected by `plugins` fit (upstream's EventsToRegister of
/// each plugin). A pod no plugin rejected (no nodes at all) waits for any change.
pub fn helped_by(plugins: &BTreeSet<&'static str>) -> Events {
    if plugins.is_empty() {
        return Events::ALL;
    }
    let mut events = Events::NODE_ADDED;
    for plugin in plugins {
        events |= match *plugin {
            node_unschedulable::NAME => Events::NODE_UNSCHEDULABLE | Events::NODE_TAINTS,
            node_name::NAME => Events::NONE,
            // Claims, volumes and classes change outside the snapshot: any change wakes it.
            volume_binding::NAME => Events::ALL,
            taint_toleration::NAME => Events::NODE_TAINTS,
            node_affinity::NAME => Events::NODE_LABELS,
            node_ports::NAME => Events::POD_REMOVED,
            node_resources_fit::NAME => Events::NODE_ALLOCATABLE | Events::POD_REMOVED,
            pod_topology_spread::NAME => {
                Events::NODE_LABELS
                    | Events::NODE_TAINTS
                    | Events::NODE_DELETED
                    | Events::POD_ADDED
                    | Events::POD_REMOVED
            }
            inter_pod_affinity::NAME => {
                Events::NODE_LABELS | Events::NODE_DELETED | Events::POD_ADDED | Events::POD_REMOVED
            }
            _ => Events::ALL,
        };
    }
    events
}

/// What changed in a node for the filters: a heartbeat (condition times, images) is nothing.
pub fn node_changes(old: &Node, new: &Node) -> Events {
    let spec = |n: &Node| n.spec.clone().unwrap_or_default();
    let (old_spec, new_spec) = (spec(old), spec(new));
    let allocatable = |n: &Node| n.status.as_ref().and_then(|s| s.allocatable.clone());
    let mut events = Events::NONE;
    if allocatable(old) != allocatable(new) {
        events |= Events::NODE_ALLOCATABLE;
    }
    if old.metadata.labels != new.metadata.labels {
        events |= Events::NODE_LABELS;
    }
    if old_spec.taints != new_spec.taints {
        events |= Events::NODE_TAINTS;
    }
    if old_spec.unschedulable.unwrap_or(false) != new_spec.unschedulable.unwrap_or(false) {
        events |= Events::NODE_UNSCHEDULABLE;
    }
    events
}

/// Whether the pod holds a place on a node: assigned and not finished.
fn is_placed(p: &Pod) -> bool {
    pod::node_name(p).is_some() && !pod::is_terminal(p)
}

/// What a pod's change (`new` None: deleted) means to waiting pods.
pub fn pod_changes(old: Option<&Pod>, new: Option<&Pod>) -> Events {
    match (old.filter(|o| is_placed(o)), new.filter(|n| is_placed(n))) {
        (None, None) => Events::NONE,
        (None, Some(_)) => Events::POD_ADDED,
        (Some(_), None) => Events::POD_REMOVED,
        (Some(o), Some(n)) if o.metadata.labels != n.metadata.labels || pod::node_name(o) != pod::node_name(n) => {
            Events::POD_ADDED | Events::POD_REMOVED
        }
        (Some(_), Some(_)) => Events::NONE,
    }
}

/// Whether an unscheduled pod changed in a way that may change where it fits (upstream's
/// isPodUpdated): a status write, such as the scheduler's own PodScheduled=False, does not.
pub fn pod_updated(old: &Pod, new: &Pod) -> bool {
    old.spec != new.spec
        || old.metadata.labels != new.metadata.labels
        || old.metadata.annotations != new.metadata.annotations
}

/// Upstream's pod backoff: 1 s after the first failure, doubling to 10 s.
pub fn backoff(failures: u32) -> Duration {
    Duration::from_secs(1).saturating_mul(1 << failures.saturating_sub(1).min(4)).min(Duration::from_secs(10))
}

/// Pods that fit no node, waiting for an event that may help (upstream's unschedulablePods),
/// indexed by event kind so that an event takes only the pods it may help.
#[derive(Debug, Default)]
pub struct UnschedulablePods {
    pods: HashMap<ObjectKey, (Events, Instant)>,
    by_kind: [HashSet<ObjectKey>; Events::KINDS],
}

impl UnschedulablePods {
    /// The pod waits for any of `events` from `now` on.
    pub fn insert(&mut self, key: ObjectKey, events: Events, now: Instant) {
        self.remove(&key);
        for i in events.kinds() {
            self.by_kind[i].insert(key.clone());
        }
        self.pods.insert(key, (events, now));
    }

    pub fn remove(&mut self, key: &ObjectKey) -> bool {
        let Some((events, _)) = self.pods.remove(key) else {
            return false;
        };
        for i in events.kinds() {
            self.by_kind[i].remove(key);
        }
        true
    }

    pub fn contains(&self, key: &ObjectKey) -> bool {
        self.pods.contains_key(key)
    }

    pub fn len(&self) -> usize {
        self.pods.len()
    }

    pub fn is_empty(&self) -> bool {
        self.pods.is_empty()
    }

    /// Takes the pods that `events` may help.
    pub fn take(&mut self, events: Events) -> Vec<ObjectKey> {
        let mut taken = Vec::new();
        for i in events.kinds() {
            for key in std::mem::take(&mut self.by_kind[i]) {
                if self.remove(&key) {
                    taken.push(key);
                }
            }
        }
        taken
    }

    /// Takes the pods that have waited `at_least` (upstream flushes those after 5 minutes,
    /// in case an event that would have helped was not recognised as such).
    pub fn take_waiting(&mut self, at_least: Duration, now: Instant) -> Vec<ObjectKey> {
        let old: Vec<ObjectKey> = self
            .pods
            .iter()
            .filter(|(_, (_, since))| now.duration_since(*since) >= at_least)
            .map(|(k, _)| k.clone())
            .collect();
        old.into_iter().filter(|k| self.remove(k)).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{json, Value};

    fn node(v: Value) -> Node {
        serde_json::from_value(v).expect("a node")
    }

    fn pod(v: Value) -> Pod {
        serde_json::from_value(v).expect("a pod")
    }

    fn key(name: &str) -> ObjectKey {
        ("default".to_string(), name.to_string())
    }

    #[test]
    fn heartbeats_change_nothing_the_filters_see() {
        let base = json!({"metadata": {"name": "n", "labels": {"zone": "a"}}, "spec": {},
            "status": {"allocatable": {"cpu": "4"}, "conditions": [{"type": "Ready", "status": "True",
                "lastHeartbeatTime": "2024-01-01T00:00:00Z"}]}});
        let mut beat = base.clone();
        beat["status"]["conditions"][0]["lastHeartbeatTime"] = json!("2024-01-01T00:00:10Z");
        beat["status"]["images"] = json!([{"names": ["nginx"], "sizeBytes": 1}]);
        assert_eq!(node_changes(&node(base.clone()), &node(beat)), Events::NONE);
        let mut changed = base.clone();
        changed["metadata"]["labels"]["zone"] = json!("b");
        changed["spec"] = json!({"unschedulable": true, "taints": [{"key": "k", "effect": "NoSchedule"}]});
        changed["status"]["allocatable"]["cpu"] = json!("8");
        let all = Events::NODE_LABELS | Events::NODE_UNSCHEDULABLE | Events::NODE_TAINTS | Events::NODE_ALLOCATABLE;
        assert_eq!(node_changes(&node(base), &node(changed)), all);
    }

    #[test]
    fn pods_arrive_on_and_leave_nodes() {
        let pending = pod(json!({"metadata": {"name": "p", "labels": {"app": "a"}}, "spec": {"containers": []}}));
        let mut bound = pending.clone();
        bound.spec.as_mut().unwrap().node_name = Some("n".into());
        let mut done = bound.clone();
        done.status = Some(serde_json::from_value(json!({"phase": "Succeeded"})).unwrap());
        let mut relabelled = bound.clone();
        relabelled.metadata.labels = None;
        assert_eq!(pod_changes(None, Some(&pending)), Events::NONE);
        assert_eq!(pod_changes(Some(&pending), Some(&bound)), Events::POD_ADDED);
        assert_eq!(pod_changes(Some(&bound), Some(&bound)), Events::NONE);
        assert_eq!(pod_changes(Some(&bound), Some(&done)), Events::POD_REMOVED);
        assert_eq!(pod_changes(Some(&bound), None), Events::POD_REMOVED);
        assert_eq!(pod_changes(Some(&done), None), Events::NONE);
        assert_eq!(pod_changes(Some(&bound), Some(&relabelled)), Events::POD_ADDED | Events::POD_REMOVED);
        // The scheduler's own status write is no reason to try again.
        let mut reported = pending.clone();
        reported.status = Some(
            serde_json::from_value(json!({"conditions": [{"type": "PodScheduled",
            "status": "False", "reason": "Unschedulable"}]}))
            .unwrap(),
        );
        assert!(!pod_updated(&pending, &reported));
        assert!(pod_updated(&pending, &relabelled));
    }

    #[test]
    fn rejecting_plugins_choose_the_events_that_wake_a_pod() {
        let fit = helped_by(&BTreeSet::from([node_resources_fit::NAME]));
        assert!(fit.contains(Events::NODE_ADDED | Events::NODE_ALLOCATABLE | Events::POD_REMOVED));
        assert!(!fit.contains(Events::POD_ADDED) && !fit.contains(Events::NODE_LABELS));
        let affinity = helped_by(&BTreeSet::from([node_affinity::NAME, taint_toleration::NAME]));
        assert_eq!(affinity, Events::NODE_ADDED | Events::NODE_LABELS | Events::NODE_TAINTS);
        assert!(helped_by(&BTreeSet::from([inter_pod_affinity::NAME])).contains(Events::POD_ADDED));
        assert_eq!(helped_by(&BTreeSet::new()), Events::ALL);
    }

    #[test]
    fn an_event_takes_only_the_pods_it_may_help() {
        let now = Instant::now();
        let mut waiting = UnschedulablePods::default();
        waiting.insert(key("full"), helped_by(&BTreeSet::from([node_resources_fit::NAME])), now);
        waiting.insert(key("apart"), helped_by(&BTreeSet::from([inter_pod_affinity::NAME])), now);
        assert!(waiting.take(Events::NODE_LABELS | Events::NODE_UNSCHEDULABLE) == vec![key("apart")]);
        assert!(waiting.take(Events::POD_ADDED).is_empty());
        assert_eq!(waiting.len(), 1);
        assert_eq!(waiting.take(Events::POD_REMOVED | Events::NODE_ADDED), vec![key("full")]);
        assert!(waiting.is_empty() && waiting.by_kind.iter().all(HashSet::is_empty));
        // Those that waited long enough are retried whatever happened.
        waiting.insert(key("old"), Events::NODE_ADDED, now);
        waiting.insert(key("new"), Events::NODE_ADDED, now + Duration::from_secs(200));
        assert_eq!(waiting.take_waiting(Duration::from_secs(300), now + Duration::from_secs(300)), vec![key("old")]);
        assert!(waiting.contains(&key("new")) && !waiting.contains(&key("old")));
    }

    #[test]
    fn backoff_doubles_to_ten_seconds() {
        let secs: Vec<u64> = (1..=6).map(|n| backoff(n).as_secs()).collect();
        assert_eq!(secs, vec![1, 2, 4, 8, 10, 10]);
    }
}
