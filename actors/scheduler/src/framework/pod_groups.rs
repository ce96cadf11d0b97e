//! Pods grouped by what the scheduler's selectors can tell apart: namespace, labels, whether
//! they are terminating, and their own pod (anti-)affinity terms. PodTopologySpread and
//! InterPodAffinity select pods by labels (and InterPodAffinity honours placed pods' terms),
//! and a controller's replicas share all of these, so the snapshot keeps counts per group (per
//! node, and per topology domain here) and a cycle sums a few groups instead of matching
//! every placed pod.

use std::collections::hash_map::Entry;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::hash::{DefaultHasher, Hash, Hasher};

use kubus_apimachinery::selector::{LabelSelector, Operator};

use super::{AffinityTerm, PodInfo, WeightedAffinityTerm};

/// A group's slot in [`PodGroups`]; stable while the group has pods.
pub type GroupId = u32;

#[derive(Debug, Clone)]
pub struct PodGroup {
    namespace: String,
    labels: BTreeMap<String, String>,
    terminating: bool,
    required_affinity_terms: Vec<AffinityTerm>,
    required_anti_affinity_terms: Vec<AffinityTerm>,
    preferred_affinity_terms: Vec<WeightedAffinityTerm>,
    preferred_anti_affinity_terms: Vec<WeightedAffinityTerm>,
    pods: usize,
    /// Node label key -> value -> this group's pods on the nodes carrying that label.
    domains: HashMap<String, HashMap<String, i64>>,
}

impl PodGroup {
    fn of(pod: &PodInfo) -> Self {
        PodGroup {
            namespace: pod.namespace().to_string(),
            labels: pod.labels().clone(),
            terminating: pod.terminating,
            required_affinity_terms: pod.required_affinity_terms.clone(),
            required_anti_affinity_terms: pod.required_anti_affinity_terms.clone(),
            preferred_affinity_terms: pod.preferred_affinity_terms.clone(),
            preferred_anti_affinity_terms: pod.preferred_anti_affinity_terms.clone(),
            pods: 0,
            domains: HashMap::new(),
        }
    }

    /// Whether `pod` belongs to this group.
    fn holds(&self, pod: &PodInfo) -> bool {
        self.terminating == pod.terminating
            && self.namespace == pod.namespace()
            && &self.labels == pod.labels()
            && self.required_affinity_terms == pod.required_affinity_terms
            && self.required_anti_affinity_terms == pod.required_anti_affinity_terms
            && self.preferred_affinity_terms == pod.preferred_affinity_terms
            && self.preferred_anti_affinity_terms == pod.preferred_anti_affinity_terms
    }

    /// Terms its pods' placement asks for toward others (what symmetric scoring reads).
    fn has_affinity_terms(&self) -> bool {
        !self.required_affinity_terms.is_empty()
            || !self.preferred_affinity_terms.is_empty()
            || !self.preferred_anti_affinity_terms.is_empty()
    }

    pub fn required_affinity_terms(&self) -> &[AffinityTerm] {
        &self.required_affinity_terms
    }

    pub fn required_anti_affinity_terms(&self) -> &[AffinityTerm] {
        &self.required_anti_affinity_terms
    }

    pub fn preferred_affinity_terms(&self) -> &[WeightedAffinityTerm] {
        &self.preferred_affinity_terms
    }

    pub fn preferred_anti_affinity_terms(&self) -> &[WeightedAffinityTerm] {
        &self.preferred_anti_affinity_terms
    }

    pub fn namespace(&self) -> &str {
        &self.namespace
    }

    pub fn labels(&self) -> &BTreeMap<String, String> {
        &self.labels
    }

    /// Its pods have a deletionTimestamp.
    pub fn terminating(&self) -> bool {
        self.terminating
    }

    pub fn len(&self) -> usize {
        self.pods
    }

    pub fn is_empty(&self) -> bool {
        self.pods == 0
    }

    /// Pods per value of the node label `key` (nodes without the label are not counted).
    pub fn domains<'a>(&'a self, key: &str) -> impl Iterator<Item = (&'a str, i64)> + 'a {
        self.domains.get(key).into_iter().flatten().map(|(v, n)| (v.as_str(), *n))
    }

    /// The node label keys this group has pods under.
    #[cfg(test)]
    pub(crate) fn domain_keys(&self) -> impl Iterator<Item = &str> {
        self.domains.keys().map(String::as_str)
    }

    /// Pods on the nodes whose label `key` is `value`.
    pub fn domain_count(&self, key: &str, value: &str) -> i64 {
        self.domains.get(key).and_then(|m| m.get(value)).copied().unwrap_or(0)
    }

    /// Adds `n` (negative: removes) pods on a node with `node_labels`; empty counts are
    /// dropped so that a group's maps only hold domains where it has pods.
    fn count(&mut self, node_labels: &BTreeMap<String, String>, n: i64) {
        for (key, value) in node_labels {
            if !self.domains.contains_key(key.as_str()) {
                self.domains.insert(key.clone(), HashMap::new());
            }
            let values = self.domains.get_mut(key.as_str()).expect("inserted above");
            let c = match values.get_mut(value.as_str()) {
                Some(c) => {
                    *c += n;
                    *c
                }
                None => {
                    values.insert(value.clone(), n);
                    n
                }
            };
            if c == 0 {
                values.remove(value.as_str());
                if values.is_empty() {
                    self.domains.remove(key.as_str());
                }
            }
        }
    }
}

/// The groups of the pods placed in a snapshot, with an index from each label to the groups
/// carrying it so that an equality selector finds its groups without looking at the others.
#[derive(Debug, Clone, Default)]
pub struct PodGroups {
    groups: Vec<Option<PodGroup>>,
    free: Vec<GroupId>,
    by_hash: HashMap<u64, Vec<GroupId>>,
    by_label: HashMap<String, HashMap<String, HashSet<GroupId>>>,
    /// Groups whose pods carry required or preferred affinity terms of their own.
    with_affinity_terms: HashSet<GroupId>,
    with_required_anti_affinity: HashSet<GroupId>,
}

fn group_hash(namespace: &str, labels: &BTreeMap<String, String>, terminating: bool) -> u64 {
    let mut h = DefaultHasher::new();
    (namespace, labels, terminating).hash(&mut h);
    h.finish()
}

impl PodGroups {
    pub fn get(&self, id: GroupId) -> &PodGroup {
        self.groups[id as usize].as_ref().expect("a live group")
    }

    /// Live groups.
    pub fn len(&self) -> usize {
        self.groups.len() - self.free.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn iter(&self) -> impl Iterator<Item = (GroupId, &PodGroup)> {
        self.groups.iter().enumerate().filter_map(|(i, g)| g.as_ref().map(|g| (i as GroupId, g)))
    }

    /// The groups whose labels `selector` matches, in no particular order. The requirement
    /// with the fewest candidate groups among its `=`/`in` ones narrows the search; a selector
    /// without one looks at every group.
    pub fn select(&self, selector: &LabelSelector) -> Vec<GroupId> {
        if selector.matches_nothing() {
            return Vec::new();
        }
        let candidates = |key: &str, values: &[String]| -> Vec<&HashSet<GroupId>> {
            let by_value = self.by_label.get(key);
            values.iter().filter_map(|v| by_value.and_then(|m| m.get(v.as_str()))).collect()
        };
        let narrowest = selector
            .requirements()
            .iter()
            .filter(|r| matches!(r.operator(), Operator::Equals | Operator::DoubleEquals | Operator::In))
            .map(|r| candidates(r.key(), r.values()))
            .min_by_key(|sets| sets.iter().map(|s| s.len()).sum::<usize>());
        let matches = |id: &GroupId| selector.matches_labels(&self.get(*id).labels);
        match narrowest {
            Some(sets) => sets.into_iter().flatten().copied().filter(matches).collect(),
            None => self.iter().map(|(id, _)| id).filter(matches).collect(),
        }
    }

    /// Groups whose pods carry required or preferred affinity terms toward other pods.
    pub fn with_affinity_terms(&self) -> impl Iterator<Item = (GroupId, &PodGroup)> {
        self.with_affinity_terms.iter().map(|id| (*id, self.get(*id)))
    }

    /// Groups whose pods carry required anti-affinity terms.
    pub fn with_required_anti_affinity(&self) -> impl Iterator<Item = (GroupId, &PodGroup)> {
        self.with_required_anti_affinity.iter().map(|id| (*id, self.get(*id)))
    }

    fn find(&self, hash: u64, pod: &PodInfo) -> Option<GroupId> {
        self.by_hash.get(&hash)?.iter().copied().find(|id| self.get(*id).holds(pod))
    }

    /// The group `pod` is counted in, if any pod like it is.
    pub fn group_of(&self, pod: &PodInfo) -> Option<GroupId> {
        self.find(group_hash(pod.namespace(), pod.labels(), pod.terminating), pod)
    }

    /// Counts `pod` on a node with `node_labels`; returns its group.
    pub(crate) fn add(&mut self, pod: &PodInfo, node_labels: &BTreeMap<String, String>) -> GroupId {
        let hash = group_hash(pod.namespace(), pod.labels(), pod.terminating);
        let id = match self.find(hash, pod) {
            Some(id) => id,
            None => self.create(hash, pod),
        };
        let g = self.groups[id as usize].as_mut().expect("a live group");
        g.pods += 1;
        g.count(node_labels, 1);
        id
    }

    fn create(&mut self, hash: u64, pod: &PodInfo) -> GroupId {
        let id = match self.free.pop() {
            Some(id) => id,
            None => {
                self.groups.push(None);
                (self.groups.len() - 1) as GroupId
            }
        };
        let group = PodGroup::of(pod);
        for (k, v) in &group.labels {
            self.by_label.entry(k.clone()).or_default().entry(v.clone()).or_default().insert(id);
        }
        self.by_hash.entry(hash).or_default().push(id);
        if group.has_affinity_terms() {
            self.with_affinity_terms.insert(id);
        }
        if !group.required_anti_affinity_terms.is_empty() {
            self.with_required_anti_affinity.insert(id);
        }
        self.groups[id as usize] = Some(group);
        id
    }

    /// Uncounts a pod of group `id` from a node with `node_labels`; the group goes away with
    /// its last pod, so groups do not pile up as ReplicaSets come and go.
    pub(crate) fn remove(&mut self, id: GroupId, node_labels: &BTreeMap<String, String>) {
        let g = self.groups[id as usize].as_mut().expect("a live group");
        g.pods -= 1;
        g.count(node_labels, -1);
        if g.pods > 0 {
            return;
        }
        let g = self.groups[id as usize].take().expect("a live group");
        self.with_affinity_terms.remove(&id);
        self.with_required_anti_affinity.remove(&id);
        let hash = group_hash(&g.namespace, &g.labels, g.terminating);
        if let Entry::Occupied(mut e) = self.by_hash.entry(hash) {
            e.get_mut().retain(|other| *other != id);
            if e.get().is_empty() {
                e.remove();
            }
        }
        for (k, v) in &g.labels {
            let Some(values) = self.by_label.get_mut(k.as_str()) else { continue };
            if let Some(ids) = values.get_mut(v.as_str()) {
                ids.remove(&id);
                if ids.is_empty() {
                    values.remove(v.as_str());
                }
            }
            if values.is_empty() {
                self.by_label.remove(k.as_str());
            }
        }
        self.free.push(id);
    }

    /// `n` pods of group `id` sit on a node whose labels changed from `old` to `new`.
    pub(crate) fn relabel(
        &mut self,
        id: GroupId,
        n: i64,
        old: &BTreeMap<String, String>,
        new: &BTreeMap<String, String>,
    ) {
        let g = self.groups[id as usize].as_mut().expect("a live group");
        g.count(old, -n);
        g.count(new, n);
    }
}
