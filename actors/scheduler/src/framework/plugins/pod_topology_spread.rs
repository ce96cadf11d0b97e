//! PodTopologySpread: `DoNotSchedule` constraints filter nodes whose domain would exceed
//! `maxSkew`; `ScheduleAnyway` constraints score emptier domains higher.

use std::collections::{BTreeMap, HashMap, HashSet};

use k8s_openapi::api::core::v1::{Pod, TopologySpreadConstraint};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelectorRequirement;
use kubus_apimachinery::pod::spec;
use kubus_apimachinery::selector::LabelSelector;
use kubus_apimachinery::ObjectExt;

use super::taint_toleration::find_untolerated_taint;
use crate::framework::{
    label_selector, ClusterSnapshot, CycleState, FilterPlugin, GroupId, NodeInfo, Plugin, PodInfo, PreFilterPlugin,
    PreScorePlugin, ScorePlugin, Status, MAX_NODE_SCORE,
};

pub const NAME: &str = "PodTopologySpread";
pub const ERR_REASON_CONSTRAINTS_NOT_MATCH: &str = "node(s) didn't match pod topology spread constraints";
pub const ERR_REASON_NODE_LABEL_NOT_MATCH: &str =
    "node(s) didn't match pod topology spread constraints (missing required label)";
const PRE_FILTER_KEY: &str = "PreFilterPodTopologySpread";
const PRE_SCORE_KEY: &str = "PreScorePodTopologySpread";
const HOSTNAME: &str = "kubernetes.io/hostname";
/// Raw score marking a node without the constraints' topology keys.
const IGNORED: i64 = -1;

#[derive(Debug, Default, Clone, Copy)]
pub struct PodTopologySpread;

impl Plugin for PodTopologySpread {
    fn name(&self) -> &'static str {
        NAME
    }
}

#[derive(Debug, Clone)]
struct Constraint {
    max_skew: i64,
    topology_key: String,
    selector: LabelSelector,
    min_domains: i64,
    honor_node_affinity: bool,
    honor_node_taints: bool,
}

/// The constraint's selector with each matchLabelKeys key pinned (`key in (value)`) to the
/// pod's own value for it; a selector that matches nothing stays so, as upstream.
fn constraint_selector(c: &TopologySpreadConstraint, labels: &BTreeMap<String, String>) -> LabelSelector {
    let pinned: Vec<LabelSelectorRequirement> = c
        .match_label_keys
        .iter()
        .flatten()
        .filter_map(|key| {
            let value = labels.get(key)?;
            Some(LabelSelectorRequirement {
                key: key.clone(),
                operator: "In".into(),
                values: Some(vec![value.clone()]),
            })
        })
        .collect();
    match &c.label_selector {
        Some(selector) if !pinned.is_empty() => {
            let mut selector = selector.clone();
            selector.match_expressions.get_or_insert_with(Vec::new).extend(pinned);
            label_selector(Some(&selector))
        }
        selector => label_selector(selector.as_ref()),
    }
}

/// The pod's constraints with the given `whenUnsatisfiable`, matchLabelKeys folded into the
/// selector from the pod's own labels.
fn constraints(pod: &Pod, when: &str) -> Vec<Constraint> {
    spec(pod)
        .topology_spread_constraints
        .iter()
        .flatten()
        .filter(|c| c.when_unsatisfiable == when)
        .map(|c| Constraint {
            max_skew: i64::from(c.max_skew),
            topology_key: c.topology_key.clone(),
            selector: constraint_selector(c, pod.labels()),
            min_domains: c.min_domains.map_or(1, i64::from),
            honor_node_affinity: c.node_affinity_policy.as_deref() != Some("Ignore"),
            honor_node_taints: c.node_taints_policy.as_deref() == Some("Honor"),
        })
        .collect()
}

fn has_all_keys(node: &NodeInfo, cons: &[Constraint]) -> bool {
    cons.iter().all(|c| node.label(&c.topology_key).is_some())
}

/// Node inclusion policies: whether this node's pods count toward the constraint's domains.
fn included(c: &Constraint, state: &CycleState, node: &NodeInfo) -> bool {
    (!c.honor_node_affinity || state.required_node_affinity().matches(node))
        && (!c.honor_node_taints || find_untolerated_taint(node.taints(), state.pod_info().tolerations()).is_none())
}

/// The groups of the pods a constraint counts: not terminating, in the incoming pod's
/// namespace, labels matching the constraint's selector.
fn matching_groups(snapshot: &ClusterSnapshot, c: &Constraint, namespace: &str) -> Vec<GroupId> {
    let groups = snapshot.pod_groups();
    let mut ids = groups.select(&c.selector);
    ids.retain(|id| {
        let g = groups.get(*id);
        !g.terminating() && g.namespace() == namespace
    });
    ids
}

/// Matching pods on one node, from its per-group counts.
fn count_on(node: &NodeInfo, groups: &[GroupId]) -> i64 {
    groups.iter().map(|id| node.group_count(*id)).sum()
}

/// Where a constraint's per-domain counts come from this cycle.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Counting {
    /// Some constraint key is on no node: no node has them all, so nothing counts.
    Nothing,
    /// Every node with this constraint's key counts: the snapshot's per-domain counts of the
    /// matching groups are the answer, without visiting nodes.
    PerDomain,
    /// Node inclusion depends on the node: count node by node.
    PerNode,
}

/// A node counts toward constraint `i` if it has every constraint key and passes the
/// inclusion policies; when those hold for every node having the constraint's own key, the
/// snapshot's per-domain counts are exact.
fn counting(snapshot: &ClusterSnapshot, state: &CycleState, cons: &[Constraint], i: usize) -> Counting {
    let all = snapshot.nodes().len();
    if cons.iter().any(|c| snapshot.nodes_with_label(&c.topology_key) == 0) {
        return Counting::Nothing;
    }
    let c = &cons[i];
    let includes_all = (!c.honor_node_affinity || state.required_node_affinity().is_empty()) && !c.honor_node_taints;
    let other_keys_everywhere = cons
        .iter()
        .filter(|o| o.topology_key != c.topology_key)
        .all(|o| snapshot.nodes_with_label(&o.topology_key) == all);
    if includes_all && other_keys_everywhere {
        Counting::PerDomain
    } else {
        Counting::PerNode
    }
}

#[derive(Clone)]
struct PreFilterState {
    constraints: Vec<Constraint>,
    /// Per constraint: matching pods per topology value (eligible domains only).
    counts: Vec<HashMap<String, i64>>,
    /// Per constraint: how many domains hold each count, so that the global minimum stays
    /// exact as preemption takes pods off a node and puts them back (upstream keeps the two
    /// smallest instead, exact only under its preemption's access pattern).
    histograms: Vec<BTreeMap<i64, usize>>,
}

impl PreFilterState {
    fn new(constraints: Vec<Constraint>, counts: Vec<HashMap<String, i64>>) -> Self {
        let histograms = counts
            .iter()
            .map(|domains| {
                let mut h = BTreeMap::new();
                domains.values().for_each(|n| *h.entry(*n).or_insert(0) += 1);
                h
            })
            .collect();
        PreFilterState { constraints, counts, histograms }
    }

    /// Constraint `i`'s global minimum, None when it has no eligible domain. Fewer eligible
    /// domains than minDomains: the global minimum is taken as 0.
    fn min_match(&self, i: usize) -> Option<i64> {
        if (self.counts[i].len() as i64) < self.constraints[i].min_domains {
            return Some(0);
        }
        self.histograms[i].keys().next().copied()
    }

    /// Adds `n` (negative: removes) matching pods in domain `value` of constraint `i`.
    fn update(&mut self, i: usize, value: &str, n: i64) {
        let h = &mut self.histograms[i];
        let count = match self.counts[i].get_mut(value) {
            Some(c) => {
                if let Some(k) = h.get_mut(c) {
                    *k -= 1;
                    if *k == 0 {
                        h.remove(c);
                    }
                }
                *c += n;
                *c
            }
            None => *self.counts[i].entry(value.to_string()).or_insert(n),
        };
        *h.entry(count).or_insert(0) += 1;
    }
}

impl PreFilterPlugin for PodTopologySpread {
    fn pre_filter(&self, state: &mut CycleState, pod: &Pod, snapshot: &ClusterSnapshot) -> Status {
        let cons = constraints(pod, "DoNotSchedule");
        if cons.is_empty() {
            return Status::Skip;
        }
        let ns = state.pod_info().namespace().to_string();
        let mut counts: Vec<HashMap<String, i64>> = vec![HashMap::new(); cons.len()];
        for (i, c) in cons.iter().enumerate() {
            let groups = matching_groups(snapshot, c, &ns);
            let key = c.topology_key.as_str();
            match counting(snapshot, state, &cons, i) {
                Counting::Nothing => {}
                Counting::PerDomain => {
                    counts[i] = snapshot.label_values(key).map(|v| (v.to_string(), 0)).collect();
                    for id in &groups {
                        for (value, n) in snapshot.pod_groups().get(*id).domains(key) {
                            if let Some(slot) = counts[i].get_mut(value) {
                                *slot += n;
                            }
                        }
                    }
                }
                Counting::PerNode => {
                    for node in snapshot.nodes().iter().filter(|n| has_all_keys(n, &cons) && included(c, state, n)) {
                        let value = node.label(key).unwrap_or_default();
                        *counts[i].entry(value.to_string()).or_insert(0) += count_on(node, &groups);
                    }
                }
            }
        }
        state.write(PRE_FILTER_KEY, PreFilterState::new(cons, counts));
        Status::Ok
    }

    fn add_pod(&self, state: &mut CycleState, pod: &PodInfo, node: &NodeInfo, _: &ClusterSnapshot) {
        update_with_pod(state, pod, node, 1);
    }

    fn remove_pod(&self, state: &mut CycleState, pod: &PodInfo, node: &NodeInfo, _: &ClusterSnapshot) {
        update_with_pod(state, pod, node, -1);
    }
}

/// Counts `pod` in (`n` = 1) or out (-1) of the domains of `node` for each constraint it
/// matches, where PreFilter would have counted it. Terminating pods never counted, so they
/// are left out here too (upstream's update does count them, which skews the domain of a
/// terminating victim).
fn update_with_pod(state: &mut CycleState, pod: &PodInfo, node: &NodeInfo, n: i64) {
    if pod.terminating || pod.namespace() != state.pod_info().namespace() {
        return;
    }
    let Some(s) = state.read::<PreFilterState>(PRE_FILTER_KEY) else { return };
    if !has_all_keys(node, &s.constraints) {
        return;
    }
    let matching: Vec<usize> = (0..s.constraints.len())
        .filter(|&i| {
            let c = &s.constraints[i];
            c.selector.matches_labels(pod.labels()) && included(c, state, node)
        })
        .collect();
    let Some(s) = state.read_mut::<PreFilterState>(PRE_FILTER_KEY) else { return };
    for i in matching {
        let value = node.label(&s.constraints[i].topology_key).unwrap_or_default();
        s.update(i, value, n);
    }
}

impl FilterPlugin for PodTopologySpread {
    fn filter(&self, state: &CycleState, _pod: &Pod, node: &NodeInfo) -> Status {
        let Some(s) = state.read::<PreFilterState>(PRE_FILTER_KEY) else {
            return Status::Ok;
        };
        let labels = state.pod_info().labels();
        for (i, c) in s.constraints.iter().enumerate() {
            let Some(value) = node.label(&c.topology_key) else {
                return Status::unresolvable(ERR_REASON_NODE_LABEL_NOT_MATCH);
            };
            let Some(min) = s.min_match(i) else {
                continue;
            };
            let self_match = i64::from(c.selector.matches_labels(labels));
            let matching = s.counts[i].get(value).copied().unwrap_or(0);
            if matching + self_match - min > c.max_skew {
                return Status::unschedulable(ERR_REASON_CONSTRAINTS_NOT_MATCH);
            }
        }
        Status::Ok
    }
}

#[derive(Clone)]
struct PreScoreState {
    constraints: Vec<Constraint>,
    /// Per constraint: the groups of its matching pods (hostname constraints count them per
    /// node when scoring).
    groups: Vec<Vec<GroupId>>,
    ignored: HashSet<String>,
    /// Per constraint (not hostname): matching pods per topology value of feasible nodes.
    counts: Vec<HashMap<String, i64>>,
    weights: Vec<f64>,
}

impl PreScorePlugin for PodTopologySpread {
    fn pre_score(&self, state: &mut CycleState, pod: &Pod, nodes: &[&NodeInfo], snapshot: &ClusterSnapshot) -> Status {
        let cons = constraints(pod, "ScheduleAnyway");
        if cons.is_empty() {
            return Status::Skip;
        }
        let mut ignored = HashSet::new();
        let mut counts: Vec<HashMap<String, i64>> = vec![HashMap::new(); cons.len()];
        for node in nodes {
            if !has_all_keys(node, &cons) {
                ignored.insert(node.name().to_string());
                continue;
            }
            for (i, c) in cons.iter().enumerate() {
                if c.topology_key != HOSTNAME {
                    let v = node.label(&c.topology_key).unwrap_or_default();
                    counts[i].entry(v.to_string()).or_insert(0);
                }
            }
        }
        // ln(domains + 2) keeps constraints with many small domains from dominating.
        let weights = cons
            .iter()
            .zip(&counts)
            .map(|(c, domains)| {
                let size = if c.topology_key == HOSTNAME { nodes.len() - ignored.len() } else { domains.len() };
                ((size + 2) as f64).ln()
            })
            .collect();
        let ns = state.pod_info().namespace().to_string();
        let groups: Vec<Vec<GroupId>> = cons.iter().map(|c| matching_groups(snapshot, c, &ns)).collect();
        for (i, c) in cons.iter().enumerate() {
            // Only domains that hold a feasible node matter.
            if c.topology_key == HOSTNAME || counts[i].is_empty() {
                continue;
            }
            let key = c.topology_key.as_str();
            match counting(snapshot, state, &cons, i) {
                Counting::Nothing => {}
                Counting::PerDomain => {
                    let pods = snapshot.pod_groups();
                    for (value, slot) in counts[i].iter_mut() {
                        *slot += groups[i].iter().map(|id| pods.get(*id).domain_count(key, value)).sum::<i64>();
                    }
                }
                Counting::PerNode => {
                    for node in snapshot.nodes().iter().filter(|n| has_all_keys(n, &cons) && included(c, state, n)) {
                        let v = node.label(key).unwrap_or_default();
                        if let Some(slot) = counts[i].get_mut(v) {
                            *slot += count_on(node, &groups[i]);
                        }
                    }
                }
            }
        }
        state.write(PRE_SCORE_KEY, PreScoreState { constraints: cons, groups, ignored, counts, weights });
        Status::Ok
    }
}

impl ScorePlugin for PodTopologySpread {
    fn score(&self, state: &CycleState, _pod: &Pod, node: &NodeInfo) -> i64 {
        let Some(s) = state.read::<PreScoreState>(PRE_SCORE_KEY) else {
            return 0;
        };
        if s.ignored.contains(node.name()) {
            return IGNORED;
        }
        let mut score = 0.0;
        for (i, c) in s.constraints.iter().enumerate() {
            let Some(v) = node.label(&c.topology_key) else {
                continue;
            };
            let cnt = if c.topology_key == HOSTNAME {
                count_on(node, &s.groups[i])
            } else {
                s.counts[i].get(v).copied().unwrap_or(0)
            };
            score += cnt as f64 * s.weights[i] + (c.max_skew - 1) as f64;
        }
        score.round() as i64
    }

    /// Fewer matching pods score higher; nodes lacking the topology keys score 0.
    fn normalize(&self, _state: &CycleState, scores: &mut [i64]) {
        let valid = scores.iter().copied().filter(|s| *s != IGNORED);
        let min = valid.clone().min().unwrap_or(0);
        let max = valid.max().unwrap_or(0);
        for s in scores.iter_mut() {
            *s = if *s == IGNORED {
                0
            } else if max == 0 {
                MAX_NODE_SCORE
            } else {
                MAX_NODE_SCORE * (max + min - *s) / max
            };
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::framework::testutil::*;
    use crate::framework::PodInfo;
    use k8s_openapi::api::core::v1::Node;
    use serde_json::{json, Value};
    use std::sync::Arc;

    fn zone_node(name: &str, zone: &str) -> Node {
        label(node(name, "4", "8Gi"), "zone", zone)
    }

    fn web(name: &str) -> Pod {
        label(pod(name, None, None), "app", "web")
    }

    fn spread(p: Pod, key: &str, when: &str, extra: Value) -> Pod {
        let mut c = json!({"maxSkew": 1, "topologyKey": key, "whenUnsatisfiable": when,
                           "labelSelector": {"matchLabels": {"app": "web"}}});
        for (k, v) in extra.as_object().unwrap() {
            c[k] = v.clone();
        }
        set(p, "/spec/topologySpreadConstraints", json!([c]))
    }

    fn filter_all(p: &Pod, snap: &ClusterSnapshot) -> Vec<Status> {
        let mut st = state(p);
        let skip = PodTopologySpread.pre_filter(&mut st, p, snap).is_skip();
        snap.nodes().iter().map(|n| if skip { Status::Ok } else { PodTopologySpread.filter(&st, p, n) }).collect()
    }

    #[test]
    fn max_skew_filters_fuller_domain() {
        let snap = snapshot(vec![zone_node("a", "z1"), zone_node("b", "z2")], &[on(web("w1"), "a")]);
        let p = spread(web("w2"), "zone", "DoNotSchedule", json!({}));
        assert_eq!(
            filter_all(&p, &snap),
            vec![Status::unschedulable("node(s) didn't match pod topology spread constraints"), Status::Ok]
        );
        // maxSkew 2 tolerates it.
        let p = spread(web("w2"), "zone", "DoNotSchedule", json!({"maxSkew": 2}));
        assert!(filter_all(&p, &snap).iter().all(Status::is_ok));
    }

    #[test]
    fn node_without_topology_key_is_filtered() {
        let snap = snapshot(vec![zone_node("a", "z1"), node("bare", "1", "1Gi")], &[]);
        let p = spread(web("w"), "zone", "DoNotSchedule", json!({}));
        assert_eq!(
            filter_all(&p, &snap)[1],
            Status::unresolvable("node(s) didn't match pod topology spread constraints (missing required label)")
        );
    }

    #[test]
    fn min_domains_treats_global_minimum_as_zero() {
        let snap =
            snapshot(vec![zone_node("a", "z1"), zone_node("b", "z2")], &[on(web("w1"), "a"), on(web("w2"), "b")]);
        let p = spread(web("w3"), "zone", "DoNotSchedule", json!({}));
        assert!(filter_all(&p, &snap).iter().all(Status::is_ok));
        let p = spread(web("w3"), "zone", "DoNotSchedule", json!({"minDomains": 3}));
        assert!(filter_all(&p, &snap).iter().all(|s| !s.is_ok()));
    }

    #[test]
    fn other_namespaces_and_non_matching_pods_do_not_count() {
        let other_ns = set(web("x"), "/metadata/namespace", json!("other"));
        let snap = snapshot(
            vec![zone_node("a", "z1"), zone_node("b", "z2")],
            &[on(other_ns, "a"), on(pod("db", None, None), "a")],
        );
        let p = spread(web("w"), "zone", "DoNotSchedule", json!({}));
        assert!(filter_all(&p, &snap).iter().all(Status::is_ok));
    }

    #[test]
    fn match_label_keys_pin_the_pods_own_values() {
        let rev = |p: Pod, r: &str| label(p, "rev", r);
        let snap = snapshot(
            vec![zone_node("a", "z1"), zone_node("b", "z2")],
            &[on(rev(web("w1"), "1"), "a"), on(rev(web("w2"), "1"), "a")],
        );
        // Pods of another revision do not count toward this one's spreading.
        let p = rev(spread(web("w3"), "zone", "DoNotSchedule", json!({"matchLabelKeys": ["rev"]})), "2");
        assert!(filter_all(&p, &snap).iter().all(Status::is_ok));
        let p = rev(spread(web("w3"), "zone", "DoNotSchedule", json!({"matchLabelKeys": ["rev"]})), "1");
        assert!(!filter_all(&p, &snap)[0].is_ok());
        let p = rev(spread(web("w3"), "zone", "DoNotSchedule", json!({})), "2");
        assert!(!filter_all(&p, &snap)[0].is_ok());
        // A constraint without a selector selects nothing, whatever keys it pins.
        let c: TopologySpreadConstraint =
            typed(json!({"maxSkew": 1, "topologyKey": "zone", "matchLabelKeys": ["rev"]}));
        let labels = [("rev".to_string(), "1".to_string())].into();
        assert!(constraint_selector(&c, &labels).matches_nothing());
    }

    #[test]
    fn node_affinity_policy_excludes_unselected_nodes_from_domains() {
        // z2 is excluded by the pod's nodeSelector, so its empty domain is not the minimum.
        let snap =
            snapshot(vec![label(zone_node("a", "z1"), "pool", "x"), zone_node("b", "z2")], &[on(web("w1"), "a")]);
        let p = set(spread(web("w2"), "zone", "DoNotSchedule", json!({})), "/spec/nodeSelector", json!({"pool": "x"}));
        assert!(filter_all(&p, &snap)[0].is_ok());
        let p = spread(web("w2"), "zone", "DoNotSchedule", json!({"nodeAffinityPolicy": "Ignore"}));
        let p = set(p, "/spec/nodeSelector", json!({"pool": "x"}));
        assert!(!filter_all(&p, &snap)[0].is_ok());
    }

    #[test]
    fn schedule_anyway_scores_emptier_domains_higher() {
        let snap = snapshot(
            vec![zone_node("a", "z1"), zone_node("b", "z1"), zone_node("c", "z2"), node("bare", "1", "1Gi")],
            &[on(web("w1"), "a"), on(web("w2"), "b")],
        );
        let p = spread(web("w3"), "zone", "ScheduleAnyway", json!({}));
        let mut st = state(&p);
        let nodes: Vec<&NodeInfo> = snap.nodes().iter().collect();
        assert!(PodTopologySpread.pre_score(&mut st, &p, &nodes, &snap).is_ok());
        let mut scores: Vec<i64> = nodes.iter().map(|n| PodTopologySpread.score(&st, &p, n)).collect();
        // z1 has 2 matching pods, weight ln(2 + 2); z2 none; "bare" lacks the key.
        assert_eq!(scores, vec![3, 3, 0, IGNORED]);
        PodTopologySpread.normalize(&st, &mut scores);
        assert_eq!(scores, vec![0, 0, 100, 0]);
    }

    #[test]
    fn hostname_constraint_counts_per_node() {
        let snap = snapshot(vec![zone_node("a", "z1"), zone_node("b", "z1")], &[on(web("w1"), "a")]);
        let p = spread(web("w2"), HOSTNAME, "ScheduleAnyway", json!({}));
        let mut st = state(&p);
        let nodes: Vec<&NodeInfo> = snap.nodes().iter().collect();
        assert!(PodTopologySpread.pre_score(&mut st, &p, &nodes, &snap).is_ok());
        let mut scores: Vec<i64> = nodes.iter().map(|n| PodTopologySpread.score(&st, &p, n)).collect();
        PodTopologySpread.normalize(&st, &mut scores);
        assert_eq!(scores, vec![0, 100]);
    }

    /// A pod's counted matches as they were found before the snapshot grouped pods: by
    /// looking at every pod of the node.
    fn scanned(node: &NodeInfo, c: &Constraint, ns: &str) -> i64 {
        let matching =
            |p: &&Arc<PodInfo>| !p.terminating && p.namespace() == ns && c.selector.matches_labels(p.labels());
        node.pods().iter().filter(matching).count() as i64
    }

    /// PreFilter's and PreScore's domain counts by a scan of every node and pod.
    fn scanned_counts(
        st: &CycleState,
        p: &Pod,
        when: &str,
        feasible: &[&NodeInfo],
        snap: &ClusterSnapshot,
    ) -> Vec<HashMap<String, i64>> {
        let cons = constraints(p, when);
        let ns = st.pod_info().namespace();
        let mut counts: Vec<HashMap<String, i64>> = vec![HashMap::new(); cons.len()];
        if when == "ScheduleAnyway" {
            for node in feasible.iter().filter(|n| has_all_keys(n, &cons)) {
                for (i, c) in cons.iter().enumerate().filter(|(_, c)| c.topology_key != HOSTNAME) {
                    counts[i].entry(node.label(&c.topology_key).unwrap().to_string()).or_insert(0);
                }
            }
        }
        for node in snap.nodes().iter().filter(|n| has_all_keys(n, &cons)) {
            for (i, c) in cons.iter().enumerate() {
                if !included(c, st, node) {
                    continue;
                }
                let v = node.label(&c.topology_key).unwrap().to_string();
                if when == "DoNotSchedule" {
                    *counts[i].entry(v).or_insert(0) += scanned(node, c, ns);
                } else if let Some(slot) = counts[i].get_mut(&v) {
                    *slot += scanned(node, c, ns);
                }
            }
        }
        counts
    }

    #[test]
    fn counts_match_a_scan_of_every_pod() {
        let mut nodes = Vec::new();
        for i in 0..24 {
            let mut n = node(&format!("n{i}"), "8", "16Gi");
            if i % 7 != 0 {
                n = label(n, "zone", &format!("z{}", i % 4));
            }
            if i % 3 == 0 {
                n = label(n, "pool", "x");
            }
            if i % 5 == 0 {
                n = set(n, "/spec/taints", json!([{"key": "k", "value": "v", "effect": "NoSchedule"}]));
            }
            nodes.push(n);
        }
        let mut pods = Vec::new();
        for i in 0..200 {
            let mut p = label(pod(&format!("p{i}"), None, None), "app", ["web", "db", "cache"][i % 3]);
            if i % 4 == 0 {
                p = label(p, "rev", &format!("{}", i % 8));
            }
            if i % 11 == 0 {
                p = set(p, "/metadata/namespace", json!("other"));
            }
            if i % 13 == 0 {
                p = set(p, "/metadata/deletionTimestamp", json!("2024-01-01T00:00:00Z"));
            }
            pods.push(on(p, &format!("n{}", (i * 7) % 24)));
        }
        let mut snap = snapshot(nodes, &pods);
        let constraint = |key: &str, when: &str, extra: Value| {
            let mut c = json!({"maxSkew": 1, "topologyKey": key, "whenUnsatisfiable": when,
                               "labelSelector": {"matchLabels": {"app": "web"}}});
            for (k, v) in extra.as_object().unwrap() {
                c[k] = v.clone();
            }
            c
        };
        let variants: Vec<(Value, Value)> = vec![
            (json!({}), json!({})),
            (json!({}), json!({"nodeSelector": {"pool": "x"}})),
            (json!({"nodeAffinityPolicy": "Ignore"}), json!({"nodeSelector": {"pool": "x"}})),
            (json!({"nodeTaintsPolicy": "Honor"}), json!({})),
            (
                json!({"labelSelector": {"matchExpressions": [{"key": "app", "operator": "NotIn", "values": ["db"]}]}}),
                json!({}),
            ),
            (json!({"labelSelector": {"matchLabels": {"app": "web"}}, "matchLabelKeys": ["rev"]}), json!({})),
        ];
        for round in 0..3 {
            for when in ["DoNotSchedule", "ScheduleAnyway"] {
                for keys in [vec!["zone", HOSTNAME], vec!["zone"], vec![HOSTNAME], vec!["zone", "rack"]] {
                    for (extra, spec) in &variants {
                        let cons: Vec<Value> = keys.iter().map(|k| constraint(k, when, extra.clone())).collect();
                        let mut p = label(
                            set(pod("incoming", None, None), "/spec/topologySpreadConstraints", json!(cons)),
                            "app",
                            "web",
                        );
                        p = label(p, "rev", "4");
                        for (k, v) in spec.as_object().unwrap() {
                            p = set(p, &format!("/spec/{k}"), v.clone());
                        }
                        let mut st = state(&p);
                        let what = format!("round {round}, {when} on {keys:?}, {extra} {spec}");
                        if when == "DoNotSchedule" {
                            assert!(PodTopologySpread.pre_filter(&mut st, &p, &snap).is_ok());
                            let s = st.read::<PreFilterState>(PRE_FILTER_KEY).unwrap();
                            assert_eq!(s.counts, scanned_counts(&st, &p, when, &[], &snap), "{what}");
                            continue;
                        }
                        let feasible: Vec<&NodeInfo> =
                            snap.nodes().iter().filter(|n| !n.name().ends_with('2')).collect();
                        assert!(PodTopologySpread.pre_score(&mut st, &p, &feasible, &snap).is_ok());
                        let s = st.read::<PreScoreState>(PRE_SCORE_KEY).unwrap();
                        assert_eq!(s.counts, scanned_counts(&st, &p, when, &feasible, &snap), "{what}");
                        for (i, c) in s.constraints.iter().enumerate() {
                            for n in snap.nodes() {
                                assert_eq!(count_on(n, &s.groups[i]), scanned(n, c, "default"), "{what}");
                            }
                        }
                    }
                }
            }
            // Change the cluster between rounds: pods leave, a node changes zone, one goes.
            for p in pods.iter().skip(round).step_by(5) {
                snap.remove_pod(p);
            }
            snap.upsert_node(label(node("n1", "8", "16Gi"), "zone", "z9"));
            snap.remove_node(&format!("n{}", 10 + round));
        }
    }

    #[test]
    fn removing_and_adding_a_pod_updates_the_counts_as_a_fresh_prefilter() {
        let nodes: Vec<Node> = (0..8)
            .map(|i| {
                let n = zone_node(&format!("n{i}"), &format!("z{}", i % 3));
                if i % 2 == 0 {
                    label(n, "pool", "x")
                } else {
                    n
                }
            })
            .collect();
        let mut pods = Vec::new();
        for i in 0..24 {
            let mut p = label(pod(&format!("p{i}"), None, None), "app", ["web", "db"][i % 2]);
            if i % 7 == 0 {
                p = set(p, "/metadata/namespace", json!("other"));
            }
            if i % 9 == 0 {
                p = set(p, "/metadata/deletionTimestamp", json!("2024-01-01T00:00:00Z"));
            }
            pods.push(on(p, &format!("n{}", (i * 3) % 8)));
        }
        let snap = snapshot(nodes, &pods);
        let both = |extra: Value| {
            let c = |key: &str| {
                let mut c = json!({"maxSkew": 1, "topologyKey": key, "whenUnsatisfiable": "DoNotSchedule",
                    "labelSelector": {"matchLabels": {"app": "web"}}});
                for (k, v) in extra.as_object().unwrap() {
                    c[k] = v.clone();
                }
                c
            };
            set(web("incoming"), "/spec/topologySpreadConstraints", json!([c("zone"), c(HOSTNAME)]))
        };
        let variants = [
            both(json!({})),
            set(both(json!({})), "/spec/nodeSelector", json!({"pool": "x"})),
            set(both(json!({"minDomains": 5})), "/spec/nodeSelector", json!({"pool": "x"})),
        ];
        let view = |st: &CycleState| {
            let s = st.read::<PreFilterState>(PRE_FILTER_KEY).unwrap();
            let mins: Vec<Option<i64>> = (0..s.constraints.len()).map(|i| s.min_match(i)).collect();
            (s.counts.clone(), mins)
        };
        for incoming in &variants {
            let mut st = state(incoming);
            assert!(PodTopologySpread.pre_filter(&mut st, incoming, &snap).is_ok());
            let before = view(&st);
            for node in snap.nodes() {
                for held in node.pods() {
                    PodTopologySpread.remove_pod(&mut st, held, node, &snap);
                    let mut without = snap.clone();
                    assert!(without.remove_pod(held.pod()));
                    let mut fresh = state(incoming);
                    assert!(PodTopologySpread.pre_filter(&mut fresh, incoming, &without).is_ok());
                    assert_eq!(view(&st), view(&fresh), "without {}", held.name());
                    PodTopologySpread.add_pod(&mut st, held, node, &snap);
                    assert_eq!(view(&st), before, "with {} back", held.name());
                }
            }
        }
    }
}
