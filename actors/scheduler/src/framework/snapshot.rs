//! The scheduler's view of the cluster: nodes with their placed pods, plus what plugins would
//! otherwise recompute from every pod on every cycle, kept up to date on each change: pods by
//! namespace/name, pods grouped by label set (and affinity terms) with per-domain counts
//! ([`PodGroups`]), and how many nodes carry each label.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use k8s_openapi::api::core::v1::{Node, Pod};
use kubus_apimachinery::{pod, ObjectExt, ObjectKey};

use super::pod_groups::PodGroups;
use super::types::namespace_of;
use super::{NodeInfo, PodInfo};

/// A placed pod, as the snapshot finds it by namespace/name.
#[derive(Debug, Clone)]
struct Placed {
    node: String,
    pod: Arc<PodInfo>,
}

/// How many nodes carry a label key, in all and per value.
#[derive(Debug, Clone, Default)]
struct LabelNodes {
    nodes: usize,
    values: HashMap<String, usize>,
}

/// The scheduler's view of the cluster for one cycle: nodes with their assigned pods, and
/// namespace labels for affinity terms' namespaceSelector.
#[derive(Debug, Clone, Default)]
pub struct ClusterSnapshot {
    nodes: Vec<NodeInfo>,
    index: HashMap<String, usize>,
    namespace_labels: HashMap<String, BTreeMap<String, String>>,
    /// How many nodes hold each image, for ImageLocality's spread factor.
    image_nodes: HashMap<String, usize>,
    /// Placed pods by namespace/name (upstream's podStates): a pod no longer on its
    /// `spec.nodeName` (finished, or left on a removed node) is found without a scan.
    pods: HashMap<ObjectKey, Placed>,
    groups: PodGroups,
    node_labels: HashMap<String, LabelNodes>,
    /// Pods that preempted others on a node and wait there for their victims to go
    /// (upstream's nominator): filters count them on that node against pods of no higher
    /// priority, so those do not take the room being made.
    nominated: HashMap<String, Vec<Arc<PodInfo>>>,
    nominated_node: HashMap<ObjectKey, String>,
}

/// Counts `node`'s images in or out of the per-image node counts.
fn count_images(image_nodes: &mut HashMap<String, usize>, node: &NodeInfo, sign: isize) {
    for name in node.images().keys() {
        let c = image_nodes.entry(name.clone()).or_insert(0);
        *c = c.saturating_add_signed(sign);
    }
}

/// Counts a node's labels in or out of the per-label node counts.
fn count_labels(node_labels: &mut HashMap<String, LabelNodes>, labels: &BTreeMap<String, String>, add: bool) {
    for (k, v) in labels {
        let key = node_labels.entry(k.clone()).or_default();
        let value = key.values.entry(v.clone()).or_default();
        if add {
            key.nodes += 1;
            *value += 1;
        } else {
            key.nodes -= 1;
            *value -= 1;
            if *value == 0 {
                key.values.remove(v.as_str());
            }
            if key.nodes == 0 {
                node_labels.remove(k.as_str());
            }
        }
    }
}

fn key_of(pod: &PodInfo) -> ObjectKey {
    (pod.namespace().to_string(), pod.name().to_string())
}

impl ClusterSnapshot {
    /// A snapshot of these nodes and the pods they already hold.
    pub fn new(nodes: Vec<NodeInfo>) -> Self {
        let mut s = ClusterSnapshot::default();
        for mut n in nodes {
            n.clear_groups();
            let pods = n.pods().to_vec();
            let i = s.nodes.len();
            s.add_node(n);
            for p in pods {
                s.register(i, p);
            }
        }
        s
    }

    /// Number of nodes that have pulled `image` (exact name as the kubelet reports it).
    pub fn image_num_nodes(&self, image: &str) -> usize {
        self.image_nodes.get(image).copied().unwrap_or(0)
    }

    /// Builds from the objects (shared with the informers, not copied): pods are placed on
    /// their `spec.nodeName`; unassigned pods and finished ones (Succeeded/Failed) are left
    /// out, as upstream's informer filters them.
    pub fn from_objects<N, P>(nodes: impl IntoIterator<Item = N>, pods: impl IntoIterator<Item = P>) -> Self
    where
        N: Into<Arc<Node>>,
        P: Into<Arc<Pod>>,
    {
        let mut s = ClusterSnapshot::new(nodes.into_iter().map(NodeInfo::new).collect());
        for p in pods {
            s.add_pod(p);
        }
        s
    }

    pub fn nodes(&self) -> &[NodeInfo] {
        &self.nodes
    }

    pub fn node(&self, name: &str) -> Option<&NodeInfo> {
        self.index.get(name).map(|&i| &self.nodes[i])
    }

    fn add_node(&mut self, n: NodeInfo) {
        count_images(&mut self.image_nodes, &n, 1);
        count_labels(&mut self.node_labels, n.labels(), true);
        self.index.insert(n.name().to_string(), self.nodes.len());
        self.nodes.push(n);
    }

    /// Adds or replaces a node (by name), keeping its pods on replace.
    pub fn upsert_node(&mut self, node: impl Into<Arc<Node>>) {
        let node = node.into();
        let Some(i) = self.index.get(node.name()).copied() else {
            return self.add_node(NodeInfo::new(node));
        };
        let existing = &mut self.nodes[i];
        let old = existing.node_arc().clone();
        count_images(&mut self.image_nodes, existing, -1);
        existing.set_node(node);
        count_images(&mut self.image_nodes, existing, 1);
        let (old_labels, new_labels) = (old.labels(), existing.labels());
        if old_labels != new_labels {
            count_labels(&mut self.node_labels, old_labels, false);
            count_labels(&mut self.node_labels, new_labels, true);
            for &(id, n) in existing.groups() {
                self.groups.relabel(id, i64::from(n), old_labels, new_labels);
            }
        }
    }

    /// Removes a node; its pods leave the snapshot with it.
    pub fn remove_node(&mut self, name: &str) -> Option<NodeInfo> {
        let i = self.index.remove(name)?;
        for p in self.nodes[i].pods().to_vec() {
            self.unregister(i, &p);
        }
        let removed = self.nodes.swap_remove(i);
        if let Some(moved) = self.nodes.get(i) {
            self.index.insert(moved.name().to_string(), i);
        }
        count_images(&mut self.image_nodes, &removed, -1);
        count_labels(&mut self.node_labels, removed.labels(), false);
        Some(removed)
    }

    /// Accounts an assigned pod on its node; false if unassigned, finished or the node is
    /// unknown. A pod of the same namespace/name already placed is replaced.
    pub fn add_pod(&mut self, pod: impl Into<Arc<Pod>>) -> bool {
        let pod = pod.into();
        if pod::is_terminal(&pod) {
            return false;
        }
        let Some(i) = pod::node_name(&pod).and_then(|n| self.index.get(n).copied()) else {
            return false;
        };
        self.insert(i, Arc::new(PodInfo::new(pod)));
        true
    }

    /// Records a scheduling decision (upstream's "assume") without re-parsing the pod.
    pub fn assume(&mut self, pod: Arc<PodInfo>, node: &str) -> bool {
        match self.index.get(node).copied() {
            Some(i) => {
                self.insert(i, pod);
                true
            }
            None => false,
        }
    }

    fn insert(&mut self, i: usize, pod: Arc<PodInfo>) {
        if !self.nominated_node.is_empty() {
            self.clear_nomination(&key_of(&pod));
        }
        if let Some(previous) = self.pods.get(&key_of(&pod)) {
            let previous = previous.pod.pod_arc().clone();
            self.remove_pod(&previous);
        }
        self.nodes[i].add_pod_info(pod.clone());
        self.register(i, pod);
    }

    /// Indexes a pod that node `i` already holds.
    fn register(&mut self, i: usize, pod: Arc<PodInfo>) {
        let node = &mut self.nodes[i];
        let id = self.groups.add(&pod, node.labels());
        node.count_group(id, true);
        self.pods.insert(key_of(&pod), Placed { node: node.name().to_string(), pod });
    }

    /// Drops the indexes of a pod that node `i` held.
    fn unregister(&mut self, i: usize, pod: &Arc<PodInfo>) {
        let node = &mut self.nodes[i];
        if let Some(id) = self.groups.group_of(pod) {
            self.groups.remove(id, node.labels());
            node.count_group(id, false);
        }
        let key = key_of(pod);
        if self.pods.get(&key).is_some_and(|p| Arc::ptr_eq(&p.pod, pod)) {
            self.pods.remove(&key);
        }
    }

    /// Removes a pod from the node that holds it: its `spec.nodeName`, else where the
    /// snapshot placed it.
    pub fn remove_pod(&mut self, pod: &Pod) -> bool {
        let assigned = pod::node_name(pod).and_then(|h| self.index.get(h).copied());
        let key = (namespace_of(pod).to_string(), pod.name().to_string());
        let placed = self.pods.get(&key).and_then(|p| self.index.get(&p.node).copied());
        for i in [assigned, placed.filter(|p| Some(*p) != assigned)].into_iter().flatten() {
            if let Some(removed) = self.nodes[i].take_pod(pod) {
                self.unregister(i, &removed);
                return true;
            }
        }
        false
    }

    /// The placed pod of that namespace/name and its node.
    pub fn placed(&self, namespace: &str, name: &str) -> Option<(&str, &Arc<PodInfo>)> {
        let p = self.pods.get(&(namespace.to_string(), name.to_string()))?;
        Some((p.node.as_str(), &p.pod))
    }

    /// Namespace/name of every placed pod.
    pub fn placed_keys(&self) -> impl Iterator<Item = &ObjectKey> {
        self.pods.keys()
    }

    pub fn num_pods(&self) -> usize {
        self.pods.len()
    }

    pub fn pod_groups(&self) -> &PodGroups {
        &self.groups
    }

    /// How many nodes carry the label `key`.
    pub fn nodes_with_label(&self, key: &str) -> usize {
        self.node_labels.get(key).map_or(0, |l| l.nodes)
    }

    /// The values of label `key` among the nodes (each once).
    pub fn label_values<'a>(&'a self, key: &str) -> impl Iterator<Item = &'a str> + 'a {
        self.node_labels.get(key).into_iter().flat_map(|l| l.values.keys().map(String::as_str))
    }

    /// Holds room on `node` for a pod that preempted there (replacing any earlier nomination).
    pub fn nominate(&mut self, pod: Arc<PodInfo>, node: &str) {
        let key = key_of(&pod);
        self.clear_nomination(&key);
        self.nominated.entry(node.to_string()).or_default().push(pod);
        self.nominated_node.insert(key, node.to_string());
    }

    /// Forgets a pod's nomination (it was placed, deleted, or nominated elsewhere).
    pub fn clear_nomination(&mut self, key: &ObjectKey) -> Option<String> {
        let node = self.nominated_node.remove(key)?;
        if let Some(pods) = self.nominated.get_mut(&node) {
            pods.retain(|p| (p.namespace(), p.name()) != (key.0.as_str(), key.1.as_str()));
            if pods.is_empty() {
                self.nominated.remove(&node);
            }
        }
        Some(node)
    }

    /// Pods nominated to `node`.
    pub fn nominated_pods(&self, node: &str) -> &[Arc<PodInfo>] {
        self.nominated.get(node).map_or(&[], Vec::as_slice)
    }

    pub fn nominated_node(&self, key: &ObjectKey) -> Option<&str> {
        self.nominated_node.get(key).map(String::as_str)
    }

    pub fn has_nominations(&self) -> bool {
        !self.nominated.is_empty()
    }

    pub fn set_namespace_labels(&mut self, namespace: &str, labels: BTreeMap<String, String>) {
        self.namespace_labels.insert(namespace.to_string(), labels);
    }

    pub fn namespace_labels(&self, namespace: &str) -> Option<&BTreeMap<String, String>> {
        self.namespace_labels.get(namespace)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::framework::testutil::*;
    use kubus_apimachinery::selector::LabelSelector;
    use serde_json::json;
    use std::collections::BTreeSet;

    #[test]
    fn upsert_node_keeps_pods_and_recounts_images() {
        let with_image = |n| set(n, "/status/images", json!([{"names": ["nginx:latest"], "sizeBytes": 1}]));
        let mut snap = snapshot(vec![with_image(node("a", "4", "8Gi"))], &[on(pod("p", Some("1"), None), "a")]);
        assert_eq!(snap.image_num_nodes("nginx:latest"), 1);
        snap.upsert_node(node("a", "8", "8Gi"));
        let a = snap.node("a").unwrap();
        assert_eq!((a.allocatable.milli_cpu, a.requested.milli_cpu, a.pods().len()), (8000, 1000, 1));
        assert_eq!(snap.image_num_nodes("nginx:latest"), 0);
        snap.upsert_node(with_image(node("b", "4", "8Gi")));
        assert_eq!(snap.image_num_nodes("nginx:latest"), 1);
        assert!(snap.remove_node("a").is_some());
        assert_eq!(snap.node("b").map(NodeInfo::name), Some("b"));
        // Finished and unassigned pods are not accounted.
        assert!(!snap.add_pod(set(on(pod("done", None, None), "b"), "/status/phase", json!("Succeeded"))));
        assert!(!snap.add_pod(pod("pending", None, None)));
    }

    /// Namespace, labels, terminating, and whether the pods carry affinity terms toward others
    /// and required anti-affinity terms.
    type GroupKey = (String, BTreeMap<String, String>, bool, bool, bool);
    /// A group's pods and its pods per node label (key, value).
    type Recounted = (usize, HashMap<(String, String), i64>);

    /// Recounts every index from the nodes' pods and compares with what the snapshot kept.
    fn assert_matches_recount(snap: &ClusterSnapshot) {
        let mut placed = 0;
        let mut groups: HashMap<GroupKey, Recounted> = HashMap::new();
        for n in snap.nodes() {
            for p in n.pods() {
                placed += 1;
                let (node, held) = snap.placed(p.namespace(), p.name()).expect("pod indexed by key");
                assert_eq!(node, n.name());
                assert!(Arc::ptr_eq(held, p));
                let with_terms = !p.required_affinity_terms.is_empty()
                    || !p.preferred_affinity_terms.is_empty()
                    || !p.preferred_anti_affinity_terms.is_empty();
                let anti = !p.required_anti_affinity_terms.is_empty();
                let key = (p.namespace().to_string(), p.labels().clone(), p.terminating, with_terms, anti);
                let g = groups.entry(key).or_default();
                g.0 += 1;
                for (k, v) in n.labels() {
                    *g.1.entry((k.clone(), v.clone())).or_default() += 1;
                }
            }
        }
        assert_eq!(snap.num_pods(), placed);
        let kept = snap.pod_groups();
        assert_eq!(kept.len(), groups.len(), "one group per label set, none left empty");
        for (id, g) in kept.iter() {
            let with_terms = !g.required_affinity_terms().is_empty()
                || !g.preferred_affinity_terms().is_empty()
                || !g.preferred_anti_affinity_terms().is_empty();
            let anti = !g.required_anti_affinity_terms().is_empty();
            assert_eq!(kept.with_affinity_terms().any(|(other, _)| other == id), with_terms);
            assert_eq!(kept.with_required_anti_affinity().any(|(other, _)| other == id), anti);
            let key = (g.namespace().to_string(), g.labels().clone(), g.terminating(), with_terms, anti);
            let (pods, domains) = &groups[&key];
            assert_eq!(g.len(), *pods);
            let mut counted: HashMap<(String, String), i64> = HashMap::new();
            for k in g.domain_keys() {
                for (v, c) in g.domains(k) {
                    counted.insert((k.to_string(), v.to_string()), c);
                }
            }
            assert_eq!(&counted, domains, "domains of {key:?}");
            for n in snap.nodes() {
                let here = n.pods().iter().filter(|p| kept.group_of(p) == Some(id)).count() as i64;
                assert_eq!(n.group_count(id), here);
            }
            let selected = kept.select(&LabelSelector::from_labels(g.labels()));
            assert!(selected.contains(&id));
        }
        let mut label_nodes: HashMap<&str, (usize, BTreeSet<&str>)> = HashMap::new();
        for n in snap.nodes() {
            for (k, v) in n.labels() {
                let e = label_nodes.entry(k).or_default();
                e.0 += 1;
                e.1.insert(v);
            }
        }
        for (k, (count, values)) in &label_nodes {
            assert_eq!(snap.nodes_with_label(k), *count);
            assert_eq!(&snap.label_values(k).collect::<BTreeSet<_>>(), values);
        }
        assert_eq!(snap.node_labels.len(), label_nodes.len());
    }

    /// A small deterministic pseudo-random sequence (SplitMix64).
    struct Rng(u64);

    impl Rng {
        fn below(&mut self, n: u64) -> u64 {
            self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
            let mut z = self.0;
            z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            (z ^ (z >> 31)) % n
        }
    }

    fn zone_node(i: u64, zone: u64) -> Node {
        label(node(&format!("n{i}"), "8", "16Gi"), "zone", &format!("z{zone}"))
    }

    fn replica(rng: &mut Rng, i: u64) -> Pod {
        let mut p = label(pod(&format!("p{i}"), Some("100m"), None), "app", &format!("a{}", rng.below(3)));
        if rng.below(4) == 0 {
            p = label(p, "tier", "fe");
        }
        if rng.below(5) == 0 {
            p = set(p, "/metadata/namespace", json!("other"));
        }
        if rng.below(6) == 0 {
            p = set(p, "/metadata/deletionTimestamp", json!("2024-01-01T00:00:00Z"));
        }
        if rng.below(7) == 0 {
            p = set(
                p,
                "/spec/affinity/podAntiAffinity/requiredDuringSchedulingIgnoredDuringExecution",
                json!([{"labelSelector": {"matchLabels": {"app": "a0"}}, "topologyKey": "zone"}]),
            );
        }
        if rng.below(8) == 0 {
            p = set(
                p,
                "/spec/affinity/podAffinity/preferredDuringSchedulingIgnoredDuringExecution",
                json!([{"weight": 1, "podAffinityTerm": {"labelSelector": {"matchLabels": {"app": "a1"}},
                    "topologyKey": "zone"}}]),
            );
        }
        p
    }

    #[test]
    fn indexes_match_a_full_recount_after_every_change() {
        let mut rng = Rng(7);
        let mut snap = snapshot((0..8).map(|i| zone_node(i, i % 3)).collect(), &[]);
        // What the informer would hold: the last version of each pod added.
        let mut live: Vec<Pod> = Vec::new();
        for step in 0..600u64 {
            match rng.below(10) {
                // A new pod bound to a node, or assumed there.
                0..=3 => {
                    let p = replica(&mut rng, step);
                    let node = format!("n{}", rng.below(10));
                    if rng.below(2) == 0 {
                        snap.add_pod(on(p.clone(), &node));
                    } else {
                        snap.assume(info(&p), &node);
                    }
                    live.push(on(p, &node));
                }
                // An update: labels, deletion or node change; old removed, new added.
                4..=5 if !live.is_empty() => {
                    let i = rng.below(live.len() as u64) as usize;
                    let old = live[i].clone();
                    let mut new = label(old.clone(), "app", &format!("a{}", rng.below(3)));
                    if rng.below(3) == 0 {
                        new = set(new, "/metadata/deletionTimestamp", json!("2024-01-01T00:00:00Z"));
                    }
                    if rng.below(4) == 0 {
                        new = on(new, &format!("n{}", rng.below(10)));
                    }
                    snap.remove_pod(&old);
                    snap.add_pod(new.clone());
                    live[i] = new;
                }
                // A deletion, sometimes of a pod whose nodeName no longer says where it is.
                6 if !live.is_empty() => {
                    let i = rng.below(live.len() as u64) as usize;
                    let mut gone = live.swap_remove(i);
                    if rng.below(2) == 0 {
                        gone.spec.as_mut().unwrap().node_name = None;
                    }
                    snap.remove_pod(&gone);
                }
                // A node relabelled to another zone, or losing its zone, or only heartbeating.
                7 => {
                    let i = rng.below(10);
                    let n = match rng.below(3) {
                        0 => node(&format!("n{i}"), "8", "16Gi"),
                        _ => zone_node(i, rng.below(4)),
                    };
                    snap.upsert_node(n);
                }
                8 => {
                    snap.remove_node(&format!("n{}", rng.below(10)));
                }
                _ => {
                    let i = rng.below(10);
                    if snap.node(&format!("n{i}")).is_none() {
                        snap.upsert_node(zone_node(i, rng.below(3)));
                    }
                }
            }
            assert_matches_recount(&snap);
        }
        assert!(snap.num_pods() > 10 && snap.pod_groups().len() > 3, "the sequence exercised the indexes");
    }

    #[test]
    fn removing_a_pod_off_its_node_finds_it_by_key() {
        let mut snap = snapshot(vec![zone_node(1, 1), zone_node(2, 2)], &[on(pod("a", Some("1"), None), "n1")]);
        // A finished pod's last state may name no node, or another one.
        let moved = on(pod("a", Some("1"), None), "n2");
        assert!(snap.remove_pod(&moved));
        assert_eq!(snap.num_pods(), 0);
        assert_eq!(snap.node("n1").unwrap().requested.milli_cpu, 0);
        assert!(!snap.remove_pod(&moved));
        // Adding a pod of the same namespace/name again replaces it.
        assert!(snap.add_pod(on(pod("b", Some("1"), None), "n1")));
        assert!(snap.add_pod(on(pod("b", Some("1"), None), "n2")));
        assert_eq!((snap.num_pods(), snap.node("n1").unwrap().pods().len()), (1, 0));
        assert_matches_recount(&snap);
    }
}
