//! InterPodAffinity: required pod affinity/anti-affinity by topology domain (including
//! existing pods' anti-affinity toward the incoming pod), and preferred terms scored by
//! weight.

use std::collections::HashMap;

use k8s_openapi::api::core::v1::Pod;

use crate::framework::selector::WeightedAffinityTerm;
use crate::framework::{
    AffinityTerm, ClusterSnapshot, CycleState, FilterPlugin, NodeInfo, Plugin, PodGroup, PodInfo, PreFilterPlugin,
    PreScorePlugin, ScorePlugin, Status, MAX_NODE_SCORE,
};

pub const NAME: &str = "InterPodAffinity";
pub const ERR_REASON_EXISTING_ANTI_AFFINITY_RULES_NOT_MATCH: &str =
    "node(s) didn't satisfy existing pods anti-affinity rules";
pub const ERR_REASON_AFFINITY_RULES_NOT_MATCH: &str = "node(s) didn't match pod affinity rules";
pub const ERR_REASON_ANTI_AFFINITY_RULES_NOT_MATCH: &str = "node(s) didn't match pod anti-affinity rules";
const PRE_FILTER_KEY: &str = "PreFilterInterPodAffinity";
const PRE_SCORE_KEY: &str = "PreScoreInterPodAffinity";

#[derive(Debug, Clone)]
pub struct InterPodAffinity {
    /// Weight given to existing pods' required affinity toward the incoming pod when
    /// scoring (upstream's hardPodAffinityWeight, default 1).
    pub hard_pod_affinity_weight: i64,
}

impl Default for InterPodAffinity {
    fn default() -> Self {
        InterPodAffinity { hard_pod_affinity_weight: 1 }
    }
}

impl Plugin for InterPodAffinity {
    fn name(&self) -> &'static str {
        NAME
    }
}

/// Counts per topology key and value; nested so lookups borrow instead of allocating.
#[derive(Debug, Default, PartialEq, Clone)]
struct TopologyCounts(HashMap<String, HashMap<String, i64>>);

impl TopologyCounts {
    fn add(&mut self, key: &str, value: &str, n: i64) {
        *self.0.entry(key.to_string()).or_default().entry(value.to_string()).or_insert(0) += n;
    }

    /// Adds `n` (negative: removes) in a domain, dropping counts that reach zero as upstream
    /// does, so that emptiness means no pod counts anywhere.
    fn update(&mut self, key: &str, value: &str, n: i64) {
        self.add(key, value, n);
        let Some(values) = self.0.get_mut(key) else { return };
        if values.get(value) == Some(&0) {
            values.remove(value);
            if values.is_empty() {
                self.0.remove(key);
            }
        }
    }

    fn get(&self, key: &str, value: &str) -> i64 {
        self.0.get(key).and_then(|m| m.get(value)).copied().unwrap_or(0)
    }

    fn is_empty(&self) -> bool {
        self.0.values().all(HashMap::is_empty)
    }

    /// Adds `weight` per pod of group `g` in each of its domains of topology `key`.
    fn add_domains(&mut self, key: &str, g: &PodGroup, weight: i64) {
        for (value, n) in g.domains(key) {
            self.add(key, value, weight * n);
        }
    }
}

#[derive(Clone)]
struct PreFilterState {
    existing_anti_affinity: TopologyCounts,
    affinity: TopologyCounts,
    anti_affinity: TopologyCounts,
    /// The incoming pod matches all of its own required affinity terms.
    matches_own_affinity: bool,
}

fn matches_all(terms: &[AffinityTerm], pod: &PodInfo, snapshot: &ClusterSnapshot) -> bool {
    let ns = snapshot.namespace_labels(pod.namespace());
    !terms.is_empty() && terms.iter().all(|t| t.matches(pod, ns))
}

impl PreFilterPlugin for InterPodAffinity {
    fn pre_filter(&self, state: &mut CycleState, _: &Pod, snapshot: &ClusterSnapshot) -> Status {
        let pod = state.pod_info_arc().clone();
        let own_ns = snapshot.namespace_labels(pod.namespace());
        // Placed pods are counted by group, each group over its domains.
        let groups = snapshot.pod_groups();
        let mut existing_anti_affinity = TopologyCounts::default();
        for (_, g) in groups.with_required_anti_affinity() {
            for term in g.required_anti_affinity_terms() {
                if term.matches(&pod, own_ns) {
                    existing_anti_affinity.add_domains(&term.topology_key, g, 1);
                }
            }
        }
        let (aff, anti) = (&pod.required_affinity_terms, &pod.required_anti_affinity_terms);
        if aff.is_empty() && anti.is_empty() && existing_anti_affinity.is_empty() {
            return Status::Skip;
        }
        let mut affinity = TopologyCounts::default();
        let mut anti_affinity = TopologyCounts::default();
        if let Some(first) = aff.first() {
            // Affinity counts a domain only for pods matching every term together, so the
            // first term's groups are the candidates.
            for id in groups.select(&first.selector) {
                let g = groups.get(id);
                let ns = snapshot.namespace_labels(g.namespace());
                if aff.iter().all(|t| t.matches_in(g.namespace(), g.labels(), ns)) {
                    for t in aff {
                        affinity.add_domains(&t.topology_key, g, 1);
                    }
                }
            }
        }
        for t in anti {
            for id in groups.select(&t.selector) {
                let g = groups.get(id);
                if t.matches_in(g.namespace(), g.labels(), snapshot.namespace_labels(g.namespace())) {
                    anti_affinity.add_domains(&t.topology_key, g, 1);
                }
            }
        }
        state.write(
            PRE_FILTER_KEY,
            PreFilterState {
                existing_anti_affinity,
                affinity,
                anti_affinity,
                matches_own_affinity: matches_all(aff, &pod, snapshot),
            },
        );
        Status::Ok
    }

    fn add_pod(&self, state: &mut CycleState, pod: &PodInfo, node: &NodeInfo, snapshot: &ClusterSnapshot) {
        update_with_pod(state, pod, node, snapshot, 1);
    }

    fn remove_pod(&self, state: &mut CycleState, pod: &PodInfo, node: &NodeInfo, snapshot: &ClusterSnapshot) {
        update_with_pod(state, pod, node, snapshot, -1);
    }
}

/// Counts `existing` in (`n` = 1) or out (-1) of the PreFilter state as a pod on `node`,
/// the way PreFilter counted the pods it found.
fn update_with_pod(state: &mut CycleState, existing: &PodInfo, node: &NodeInfo, snapshot: &ClusterSnapshot, n: i64) {
    let pod = state.pod_info_arc().clone();
    let Some(s) = state.read_mut::<PreFilterState>(PRE_FILTER_KEY) else { return };
    let count = |counts: &mut TopologyCounts, term: &AffinityTerm| {
        if let Some(value) = node.label(&term.topology_key) {
            counts.update(&term.topology_key, value, n);
        }
    };
    let own_ns = snapshot.namespace_labels(pod.namespace());
    for t in existing.required_anti_affinity_terms.iter().filter(|t| t.matches(&pod, own_ns)) {
        count(&mut s.existing_anti_affinity, t);
    }
    if matches_all(&pod.required_affinity_terms, existing, snapshot) {
        pod.required_affinity_terms.iter().for_each(|t| count(&mut s.affinity, t));
    }
    let ns = snapshot.namespace_labels(existing.namespace());
    for t in pod.required_anti_affinity_terms.iter().filter(|t| t.matches(existing, ns)) {
        count(&mut s.anti_affinity, t);
    }
}

fn satisfies_pod_affinity(s: &PreFilterState, pod: &PodInfo, node: &NodeInfo) -> bool {
    let mut pods_exist = true;
    for term in &pod.required_affinity_terms {
        let Some(v) = node.label(&term.topology_key) else {
            // Every topology key must exist on the node.
            return false;
        };
        if s.affinity.get(&term.topology_key, v) <= 0 {
            pods_exist = false;
        }
    }
    // The first pod of a group with affinity to itself has nothing to join: let it in when
    // nothing in the cluster matches yet and it matches its own terms.
    pods_exist || (s.affinity.is_empty() && s.matches_own_affinity)
}

fn satisfies_pod_anti_affinity(s: &PreFilterState, pod: &PodInfo, node: &NodeInfo) -> bool {
    s.anti_affinity.is_empty()
        || !pod
            .required_anti_affinity_terms
            .iter()
            .any(|t| node.label(&t.topology_key).is_some_and(|v| s.anti_affinity.get(&t.topology_key, v) > 0))
}

fn satisfies_existing_pods_anti_affinity(s: &PreFilterState, node: &NodeInfo) -> bool {
    if s.existing_anti_affinity.is_empty() {
        return true;
    }
    !node.labels().iter().any(|(k, v)| s.existing_anti_affinity.get(k, v) > 0)
}

impl FilterPlugin for InterPodAffinity {
    fn filter(&self, state: &CycleState, _pod: &Pod, node: &NodeInfo) -> Status {
        let Some(s) = state.read::<PreFilterState>(PRE_FILTER_KEY) else {
            return Status::Ok;
        };
        let pod = state.pod_info();
        if !satisfies_pod_affinity(s, pod, node) {
            return Status::unresolvable(ERR_REASON_AFFINITY_RULES_NOT_MATCH);
        }
        if !satisfies_pod_anti_affinity(s, pod, node) {
            return Status::unschedulable(ERR_REASON_ANTI_AFFINITY_RULES_NOT_MATCH);
        }
        if !satisfies_existing_pods_anti_affinity(s, node) {
            return Status::unschedulable(ERR_REASON_EXISTING_ANTI_AFFINITY_RULES_NOT_MATCH);
        }
        Status::Ok
    }
}

#[derive(Clone)]
struct PreScoreState(TopologyCounts);

/// Preferred affinity terms with their weight, anti-affinity ones negated.
fn weighted<'a>(
    affinity: &'a [WeightedAffinityTerm],
    anti_affinity: &'a [WeightedAffinityTerm],
) -> impl Iterator<Item = (&'a WeightedAffinityTerm, i64)> {
    let affinity = affinity.iter().map(|w| (w, w.weight));
    affinity.chain(anti_affinity.iter().map(|w| (w, -w.weight)))
}

impl PreScorePlugin for InterPodAffinity {
    fn pre_score(
        &self,
        state: &mut CycleState,
        _pod: &Pod,
        _nodes: &[&NodeInfo],
        snapshot: &ClusterSnapshot,
    ) -> Status {
        let pod = state.pod_info_arc().clone();
        let mut topo = TopologyCounts::default();
        // The incoming pod's preferences toward placed pods, counted by label group.
        let groups = snapshot.pod_groups();
        for (w, weight) in weighted(&pod.preferred_affinity_terms, &pod.preferred_anti_affinity_terms) {
            for id in groups.select(&w.term.selector) {
                let g = groups.get(id);
                if w.term.matches_in(g.namespace(), g.labels(), snapshot.namespace_labels(g.namespace())) {
                    topo.add_domains(&w.term.topology_key, g, weight);
                }
            }
        }
        // Placed pods' own terms toward the incoming one (symmetry), by group too.
        let own_ns = snapshot.namespace_labels(pod.namespace());
        for (_, g) in groups.with_affinity_terms() {
            if self.hard_pod_affinity_weight > 0 {
                for t in g.required_affinity_terms() {
                    if t.matches(&pod, own_ns) {
                        topo.add_domains(&t.topology_key, g, self.hard_pod_affinity_weight);
                    }
                }
            }
            for (w, weight) in weighted(g.preferred_affinity_terms(), g.preferred_anti_affinity_terms()) {
                if w.term.matches(&pod, own_ns) {
                    topo.add_domains(&w.term.topology_key, g, weight);
                }
            }
        }
        if topo.0.is_empty() {
            return Status::Skip;
        }
        state.write(PRE_SCORE_KEY, PreScoreState(topo));
        Status::Ok
    }
}

impl ScorePlugin for InterPodAffinity {
    fn score(&self, state: &CycleState, _pod: &Pod, node: &NodeInfo) -> i64 {
        let Some(PreScoreState(topo)) = state.read::<PreScoreState>(PRE_SCORE_KEY) else {
            return 0;
        };
        topo.0.iter().filter_map(|(key, values)| node.label(key).and_then(|v| values.get(v))).sum()
    }

    /// Min-max scaling, as raw scores may be negative.
    fn normalize(&self, state: &CycleState, scores: &mut [i64]) {
        if state.read::<PreScoreState>(PRE_SCORE_KEY).is_none() {
            return;
        }
        let min = scores.iter().copied().min().unwrap_or(0);
        let max = scores.iter().copied().max().unwrap_or(0);
        let diff = max - min;
        for s in scores.iter_mut() {
            *s = if diff > 0 { (MAX_NODE_SCORE as f64 * ((*s - min) as f64 / diff as f64)) as i64 } else { 0 };
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::framework::testutil::*;
    use k8s_openapi::api::core::v1::Node;
    use serde_json::json;
    use std::collections::BTreeMap;

    fn zone_node(name: &str, zone: &str) -> Node {
        label(node(name, "4", "8Gi"), "zone", zone)
    }

    fn with_app(p: Pod, app: &str) -> Pod {
        label(p, "app", app)
    }

    fn required(p: Pod, kind: &str, app: &str, key: &str) -> Pod {
        set(
            p,
            &format!("/spec/affinity/{kind}/requiredDuringSchedulingIgnoredDuringExecution"),
            json!([{"labelSelector": {"matchLabels": {"app": app}}, "topologyKey": key}]),
        )
    }

    /// Runs PreFilter + Filter of the pod against every node of the snapshot.
    fn feasible(p: &Pod, snap: &ClusterSnapshot) -> Vec<(String, Status)> {
        let plugin = InterPodAffinity::default();
        let mut st = state(p);
        let skip = plugin.pre_filter(&mut st, p, snap).is_skip();
        snap.nodes()
            .iter()
            .map(|n| {
                let s = if skip { Status::Ok } else { plugin.filter(&st, p, n) };
                (n.name().to_string(), s)
            })
            .collect()
    }

    fn ok_nodes(p: &Pod, snap: &ClusterSnapshot) -> Vec<String> {
        feasible(p, snap).into_iter().filter(|(_, s)| s.is_ok()).map(|(n, _)| n).collect()
    }

    #[test]
    fn affinity_requires_matching_pod_in_domain() {
        let snap = snapshot(
            vec![zone_node("a", "z1"), zone_node("b", "z1"), zone_node("c", "z2")],
            &[on(with_app(pod("db", None, None), "db"), "a")],
        );
        let p = required(pod("web", None, None), "podAffinity", "db", "zone");
        assert_eq!(ok_nodes(&p, &snap), vec!["a", "b"]);
        let rejected = feasible(&p, &snap).pop().unwrap().1;
        assert_eq!(rejected, Status::unresolvable("node(s) didn't match pod affinity rules"));
    }

    #[test]
    fn first_pod_of_self_affine_group_may_schedule() {
        let snap = snapshot(vec![zone_node("a", "z1"), node("nolabel", "1", "1Gi")], &[]);
        let p = with_app(required(pod("web", None, None), "podAffinity", "web", "zone"), "web");
        // Only where the topology key exists.
        assert_eq!(ok_nodes(&p, &snap), vec!["a"]);
        // Not when it does not match itself.
        let q = with_app(required(pod("web", None, None), "podAffinity", "db", "zone"), "web");
        assert!(ok_nodes(&q, &snap).is_empty());
    }

    #[test]
    fn anti_affinity_one_per_domain() {
        let snap = snapshot(
            vec![zone_node("a", "z1"), zone_node("b", "z1"), zone_node("c", "z2")],
            &[on(with_app(pod("w1", None, None), "web"), "a")],
        );
        let p = with_app(required(pod("w2", None, None), "podAntiAffinity", "web", "zone"), "web");
        assert_eq!(ok_nodes(&p, &snap), vec!["c"]);
        assert_eq!(feasible(&p, &snap)[0].1, Status::unschedulable("node(s) didn't match pod anti-affinity rules"));
    }

    #[test]
    fn existing_pods_anti_affinity_is_symmetric() {
        let guard =
            with_app(required(pod("guard", None, None), "podAntiAffinity", "web", "kubernetes.io/hostname"), "guard");
        let snap = snapshot(vec![zone_node("a", "z1"), zone_node("b", "z1")], &[on(guard, "a")]);
        let p = with_app(pod("web", None, None), "web");
        assert_eq!(ok_nodes(&p, &snap), vec!["b"]);
        assert_eq!(
            feasible(&p, &snap)[0].1,
            Status::unschedulable("node(s) didn't satisfy existing pods anti-affinity rules")
        );
    }

    #[test]
    fn namespaces_default_to_own_and_can_be_listed() {
        let other = set(with_app(pod("db", None, None), "db"), "/metadata/namespace", json!("prod"));
        let snap = snapshot(vec![zone_node("a", "z1")], &[on(other, "a")]);
        let p = required(pod("web", None, None), "podAffinity", "db", "zone");
        assert!(ok_nodes(&p, &snap).is_empty());
        let p = set(
            p,
            "/spec/affinity/podAffinity/requiredDuringSchedulingIgnoredDuringExecution/0/namespaces",
            json!(["prod"]),
        );
        assert_eq!(ok_nodes(&p, &snap), vec!["a"]);
        // An empty namespaceSelector selects all namespaces.
        let q = set(
            required(pod("web", None, None), "podAffinity", "db", "zone"),
            "/spec/affinity/podAffinity/requiredDuringSchedulingIgnoredDuringExecution/0/namespaceSelector",
            json!({}),
        );
        assert_eq!(ok_nodes(&q, &snap), vec!["a"]);
    }

    #[test]
    fn preferred_terms_score_by_weight() {
        let snap = snapshot(
            vec![zone_node("a", "z1"), zone_node("b", "z2"), zone_node("c", "z3")],
            &[on(with_app(pod("db", None, None), "db"), "a"), on(with_app(pod("noisy", None, None), "noisy"), "b")],
        );
        let term = |app: &str, w: i64| json!([{"weight": w, "podAffinityTerm": {"labelSelector": {"matchLabels": {"app": app}}, "topologyKey": "zone"}}]);
        let p = set(
            pod("web", None, None),
            "/spec/affinity/podAffinity/preferredDuringSchedulingIgnoredDuringExecution",
            term("db", 10),
        );
        let p =
            set(p, "/spec/affinity/podAntiAffinity/preferredDuringSchedulingIgnoredDuringExecution", term("noisy", 5));
        let plugin = InterPodAffinity::default();
        let mut st = state(&p);
        let nodes: Vec<&NodeInfo> = snap.nodes().iter().collect();
        assert!(plugin.pre_score(&mut st, &p, &nodes, &snap).is_ok());
        let mut scores: Vec<i64> = nodes.iter().map(|n| plugin.score(&st, &p, n)).collect();
        assert_eq!(scores, vec![10, -5, 0]);
        plugin.normalize(&st, &mut scores);
        assert_eq!(scores, vec![100, 0, 33]);
    }

    #[test]
    fn no_affinity_anywhere_skips() {
        let snap = snapshot(vec![zone_node("a", "z1")], &[on(pod("x", None, None), "a")]);
        let p = pod("p", None, None);
        let mut st = state(&p);
        let plugin = InterPodAffinity::default();
        assert!(plugin.pre_filter(&mut st, &p, &snap).is_skip());
        assert!(plugin.pre_score(&mut st, &p, &[], &snap).is_skip());
    }

    /// Adds `n` in the domain of `node` for the term's topology key, if the node has it.
    fn add_for(topo: &mut TopologyCounts, term: &AffinityTerm, node: &NodeInfo, n: i64) {
        if let Some(v) = node.label(&term.topology_key) {
            topo.add(&term.topology_key, v, n);
        }
    }

    /// `owner`'s preferred terms that select `target`, weighted in `node`'s domains.
    fn add_preferred(
        topo: &mut TopologyCounts,
        owner: &PodInfo,
        target: &PodInfo,
        target_ns: Option<&BTreeMap<String, String>>,
        node: &NodeInfo,
    ) {
        for (w, weight) in weighted(&owner.preferred_affinity_terms, &owner.preferred_anti_affinity_terms) {
            if w.term.matches(target, target_ns) {
                add_for(topo, &w.term, node, weight);
            }
        }
    }

    /// PreFilter's and PreScore's counts as they were found before the snapshot grouped pods:
    /// by looking at every pod of every node.
    fn scanned(plugin: &InterPodAffinity, pod: &PodInfo, snap: &ClusterSnapshot) -> [TopologyCounts; 4] {
        let [mut existing_anti_affinity, mut affinity, mut anti_affinity, mut scores] =
            <[TopologyCounts; 4]>::default();
        let (aff, anti) = (&pod.required_affinity_terms, &pod.required_anti_affinity_terms);
        let own_ns = snap.namespace_labels(pod.namespace());
        for node in snap.nodes() {
            for existing in node.pods() {
                let ns = snap.namespace_labels(existing.namespace());
                for t in existing.required_anti_affinity_terms.iter().filter(|t| t.matches(pod, own_ns)) {
                    add_for(&mut existing_anti_affinity, t, node, 1);
                }
                if matches_all(aff, existing, snap) {
                    aff.iter().for_each(|t| add_for(&mut affinity, t, node, 1));
                }
                for t in anti.iter().filter(|t| t.matches(existing, ns)) {
                    add_for(&mut anti_affinity, t, node, 1);
                }
                add_preferred(&mut scores, pod, existing, ns, node);
                for t in existing.required_affinity_terms.iter().filter(|t| t.matches(pod, own_ns)) {
                    add_for(&mut scores, t, node, plugin.hard_pod_affinity_weight);
                }
                add_preferred(&mut scores, existing, pod, own_ns, node);
            }
        }
        [existing_anti_affinity, affinity, anti_affinity, scores]
    }

    #[test]
    fn counts_match_a_scan_of_every_pod() {
        let term = |app: &str, key: &str| json!({"labelSelector": {"matchLabels": {"app": app}}, "topologyKey": key});
        let weighted = |w: i64, t: serde_json::Value| json!({"weight": w, "podAffinityTerm": t});
        let nodes: Vec<Node> = (0..12)
            .map(|i| {
                let n = node(&format!("n{i}"), "8", "16Gi");
                if i % 5 == 4 {
                    n
                } else {
                    zone_node(&format!("n{i}"), &format!("z{}", i % 3))
                }
            })
            .collect();
        let mut pods = Vec::new();
        for i in 0..90 {
            let mut p = with_app(pod(&format!("p{i}"), None, None), ["web", "db", "cache"][i % 3]);
            if i % 4 == 0 {
                p = label(p, "tier", "fe");
            }
            if i % 9 == 0 {
                p = set(p, "/metadata/namespace", json!("prod"));
            }
            if i % 10 == 0 {
                p = required(p, "podAffinity", "db", "zone");
            }
            if i % 8 == 0 {
                p = required(p, "podAntiAffinity", "web", "kubernetes.io/hostname");
            }
            if i % 7 == 0 {
                let preferred =
                    json!([weighted(3, term("web", "zone")), weighted(2, term("db", "kubernetes.io/hostname"))]);
                p = set(p, "/spec/affinity/podAntiAffinity/preferredDuringSchedulingIgnoredDuringExecution", preferred);
            }
            pods.push(on(p, &format!("n{}", (i * 5) % 12)));
        }
        let mut snap = snapshot(nodes, &pods);
        let incoming = |kind: &str, terms: serde_json::Value| {
            let p = with_app(label(pod("incoming", None, None), "tier", "fe"), "web");
            set(p, &format!("/spec/affinity/{kind}"), terms)
        };
        let everywhere = json!({"labelSelector": {"matchExpressions": [{"key": "app", "operator": "Exists"}]},
            "topologyKey": "zone", "namespaceSelector": {}});
        let variants = [
            incoming(
                "podAffinity",
                json!({"requiredDuringSchedulingIgnoredDuringExecution": [term("db", "zone"), term("db", "kubernetes.io/hostname")]}),
            ),
            incoming(
                "podAntiAffinity",
                json!({"requiredDuringSchedulingIgnoredDuringExecution": [term("web", "kubernetes.io/hostname"), everywhere]}),
            ),
            incoming(
                "podAffinity",
                json!({"preferredDuringSchedulingIgnoredDuringExecution": [weighted(5, term("cache", "zone"))]}),
            ),
            incoming(
                "podAntiAffinity",
                json!({"preferredDuringSchedulingIgnoredDuringExecution": [weighted(4, everywhere)]}),
            ),
            with_app(pod("plain", None, None), "db"),
        ];
        let plugin = InterPodAffinity::default();
        for round in 0..3 {
            for (v, p) in variants.iter().enumerate() {
                let mut st = state(p);
                let [existing_anti_affinity, affinity, anti_affinity, scores] = scanned(&plugin, st.pod_info(), &snap);
                if !plugin.pre_filter(&mut st, p, &snap).is_skip() {
                    let s = st.read::<PreFilterState>(PRE_FILTER_KEY).unwrap();
                    let got = (&s.existing_anti_affinity, &s.affinity, &s.anti_affinity);
                    assert_eq!(got, (&existing_anti_affinity, &affinity, &anti_affinity), "round {round}, variant {v}");
                } else {
                    assert!(existing_anti_affinity.is_empty() && affinity.is_empty() && anti_affinity.is_empty());
                }
                match plugin.pre_score(&mut st, p, &[], &snap) {
                    Status::Skip => assert!(scores.0.is_empty()),
                    _ => assert_eq!(
                        st.read::<PreScoreState>(PRE_SCORE_KEY).unwrap().0,
                        scores,
                        "round {round}, variant {v}"
                    ),
                }
            }
            for p in pods.iter().skip(round).step_by(4) {
                snap.remove_pod(p);
            }
            snap.upsert_node(zone_node("n4", "z7"));
            snap.remove_node(&format!("n{}", round + 1));
        }
    }

    #[test]
    fn removing_and_adding_a_pod_updates_the_counts_as_a_fresh_prefilter() {
        let term = |app: &str, key: &str| json!({"labelSelector": {"matchLabels": {"app": app}}, "topologyKey": key});
        let nodes: Vec<Node> = (0..6).map(|i| zone_node(&format!("n{i}"), &format!("z{}", i % 2))).collect();
        let mut pods = Vec::new();
        for i in 0..18 {
            let mut p = with_app(pod(&format!("p{i}"), None, None), ["web", "db", "cache"][i % 3]);
            if i % 4 == 0 {
                p = required(p, "podAntiAffinity", "web", "kubernetes.io/hostname");
            }
            if i % 5 == 0 {
                p = set(p, "/metadata/namespace", json!("prod"));
            }
            pods.push(on(p, &format!("n{}", i % 6)));
        }
        let snap = snapshot(nodes, &pods);
        let incoming = set(
            with_app(pod("incoming", None, None), "web"),
            "/spec/affinity",
            json!({"podAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [term("db", "zone")]},
                   "podAntiAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [term("cache", "kubernetes.io/hostname")]}}),
        );
        let plugin = InterPodAffinity::default();
        let counts = |st: &CycleState| {
            let s = st.read::<PreFilterState>(PRE_FILTER_KEY).unwrap();
            (s.existing_anti_affinity.clone(), s.affinity.clone(), s.anti_affinity.clone())
        };
        let mut st = state(&incoming);
        assert!(plugin.pre_filter(&mut st, &incoming, &snap).is_ok());
        let before = counts(&st);
        for node in snap.nodes() {
            for held in node.pods() {
                plugin.remove_pod(&mut st, held, node, &snap);
                let mut without = snap.clone();
                assert!(without.remove_pod(held.pod()));
                let mut fresh = state(&incoming);
                assert!(plugin.pre_filter(&mut fresh, &incoming, &without).is_ok());
                assert_eq!(counts(&st), counts(&fresh), "without {}", held.name());
                plugin.add_pod(&mut st, held, node, &snap);
                assert_eq!(counts(&st), before, "with {} back", held.name());
            }
        }
    }
}
