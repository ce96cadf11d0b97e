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
    label_selector, ClusterSnapshot, CycleState, FilterPlugin, NodeInfo, Plugin, PreFilterPlugin, PreScorePlugin,
    ScorePlugin, Status, MAX_NODE_SCORE,
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

/// Non-terminating pods in the incoming pod's namespace matching the selector.
fn count_matching(node: &NodeInfo, selector: &LabelSelector, namespace: &str) -> i64 {
    node.pods()
        .iter()
        .filter(|p| !p.terminating && p.namespace() == namespace && selector.matches_labels(p.labels()))
        .count() as i64
}

struct PreFilterState {
    constraints: Vec<Constraint>,
    /// Per constraint: matching pods per topology value (eligible domains only).
    counts: Vec<HashMap<String, i64>>,
    /// Per constraint: the global minimum, None when there is no eligible domain.
    min_match: Vec<Option<i64>>,
}

impl PreFilterPlugin for PodTopologySpread {
    fn pre_filter(&self, state: &mut CycleState, pod: &Pod, snapshot: &ClusterSnapshot) -> Status {
        let cons = constraints(pod, "DoNotSchedule");
        if cons.is_empty() {
            return Status::Skip;
        }
        let ns = state.pod_info().namespace().to_string();
        let mut counts: Vec<HashMap<String, i64>> = vec![HashMap::new(); cons.len()];
        for node in snapshot.nodes().iter().filter(|n| has_all_keys(n, &cons)) {
            for (i, c) in cons.iter().enumerate() {
                if !included(c, state, node) {
                    continue;
                }
                let value = node.label(&c.topology_key).unwrap_or_default();
                let n = count_matching(node, &c.selector, &ns);
                *counts[i].entry(value.to_string()).or_insert(0) += n;
            }
        }
        let min_match = cons
            .iter()
            .zip(&counts)
            .map(|(c, domains)| {
                // Fewer eligible domains than minDomains: the global minimum is taken as 0.
                if (domains.len() as i64) < c.min_domains {
                    Some(0)
                } else {
                    domains.values().copied().min()
                }
            })
            .collect();
        state.write(PRE_FILTER_KEY, PreFilterState { constraints: cons, counts, min_match });
        Status::Ok
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
            let Some(min) = s.min_match[i] else {
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

struct PreScoreState {
    constraints: Vec<Constraint>,
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
        for node in snapshot.nodes().iter().filter(|n| has_all_keys(n, &cons)) {
            for (i, c) in cons.iter().enumerate() {
                if c.topology_key == HOSTNAME || !included(c, state, node) {
                    continue;
                }
                let v = node.label(&c.topology_key).unwrap_or_default();
                // Only domains that hold a feasible node matter.
                if let Some(slot) = counts[i].get_mut(v) {
                    *slot += count_matching(node, &c.selector, &ns);
                }
            }
        }
        state.write(PRE_SCORE_KEY, PreScoreState { constraints: cons, ignored, counts, weights });
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
        let ns = state.pod_info().namespace();
        let mut score = 0.0;
        for (i, c) in s.constraints.iter().enumerate() {
            let Some(v) = node.label(&c.topology_key) else {
                continue;
            };
            let cnt = if c.topology_key == HOSTNAME {
                count_matching(node, &c.selector, ns)
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
    use k8s_openapi::api::core::v1::Node;
    use serde_json::{json, Value};

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
}
