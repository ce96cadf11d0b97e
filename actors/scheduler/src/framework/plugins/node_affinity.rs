//! NodeAffinity: `nodeSelector` and required node affinity filter; preferred node affinity
//! terms score by weight.

use k8s_openapi::api::core::v1::Pod;
use kubus_apimachinery::pod::spec;

use crate::framework::{
    default_normalize_score, ClusterSnapshot, CycleState, FilterPlugin, NodeInfo, NodeSelectorTerm, Plugin,
    PreFilterPlugin, PreScorePlugin, ScorePlugin, Status, MAX_NODE_SCORE,
};

pub const NAME: &str = "NodeAffinity";
pub const ERR_REASON_POD: &str = "node(s) didn't match Pod's node affinity/selector";
const PRE_SCORE_KEY: &str = "PreScoreNodeAffinity";

#[derive(Debug, Default, Clone, Copy)]
pub struct NodeAffinity;

impl Plugin for NodeAffinity {
    fn name(&self) -> &'static str {
        NAME
    }
}

impl PreFilterPlugin for NodeAffinity {
    fn pre_filter(&self, state: &mut CycleState, _: &Pod, _: &ClusterSnapshot) -> Status {
        if state.required_node_affinity().is_empty() {
            Status::Skip
        } else {
            Status::Ok
        }
    }
}

impl FilterPlugin for NodeAffinity {
    fn filter(&self, state: &CycleState, _pod: &Pod, node: &NodeInfo) -> Status {
        if state.required_node_affinity().matches(node) {
            Status::Ok
        } else {
            Status::unresolvable(ERR_REASON_POD)
        }
    }
}

#[derive(Clone)]
struct Preferred(Vec<(i64, NodeSelectorTerm)>);

impl PreScorePlugin for NodeAffinity {
    fn pre_score(
        &self,
        state: &mut CycleState,
        pod: &Pod,
        _nodes: &[&NodeInfo],
        _snapshot: &ClusterSnapshot,
    ) -> Status {
        let terms = spec(pod)
            .affinity
            .as_ref()
            .and_then(|a| a.node_affinity.as_ref())
            .and_then(|n| n.preferred_during_scheduling_ignored_during_execution.as_ref());
        let preferred: Vec<(i64, NodeSelectorTerm)> = terms
            .into_iter()
            .flatten()
            // Zero-weight terms cannot change a score.
            .filter(|t| t.weight != 0)
            .map(|t| (i64::from(t.weight), NodeSelectorTerm::from_typed(&t.preference)))
            .collect();
        if preferred.is_empty() {
            return Status::Skip;
        }
        state.write(PRE_SCORE_KEY, Preferred(preferred));
        Status::Ok
    }
}

impl ScorePlugin for NodeAffinity {
    fn score(&self, state: &CycleState, _pod: &Pod, node: &NodeInfo) -> i64 {
        state
            .read::<Preferred>(PRE_SCORE_KEY)
            .map_or(0, |p| p.0.iter().filter(|(_, t)| t.matches(node)).map(|(w, _)| w).sum())
    }

    fn normalize(&self, _state: &CycleState, scores: &mut [i64]) {
        default_normalize_score(MAX_NODE_SCORE, false, scores);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::framework::testutil::*;
    use serde_json::{json, Value};

    fn zone_node(name: &str, zone: &str) -> NodeInfo {
        node_info(label(label(node(name, "4", "8Gi"), "zone", zone), "gen", "5"), &[])
    }

    fn required(p: Pod, terms: Value) -> Pod {
        set(
            p,
            "/spec/affinity/nodeAffinity/requiredDuringSchedulingIgnoredDuringExecution",
            json!({ "nodeSelectorTerms": terms }),
        )
    }

    fn check(p: &Pod, n: &NodeInfo) -> bool {
        let mut st = state(p);
        let snap = ClusterSnapshot::default();
        if NodeAffinity.pre_filter(&mut st, p, &snap).is_skip() {
            return true;
        }
        let s = NodeAffinity.filter(&st, p, n);
        assert!(s.is_ok() || s == Status::unresolvable(ERR_REASON_POD));
        s.is_ok()
    }

    #[test]
    fn node_selector_must_match_all_labels() {
        let a = zone_node("a", "z1");
        let p = set(pod("p", None, None), "/spec/nodeSelector", json!({"zone": "z1"}));
        assert!(check(&p, &a));
        let p = set(pod("p", None, None), "/spec/nodeSelector", json!({"zone": "z1", "x": "y"}));
        assert!(!check(&p, &a));
    }

    #[test]
    fn required_terms_are_ored_expressions_anded() {
        let a = zone_node("a", "z1");
        let p = required(
            pod("p", None, None),
            json!([
                {"matchExpressions": [{"key": "zone", "operator": "In", "values": ["z2"]}]},
                {"matchExpressions": [
                    {"key": "zone", "operator": "In", "values": ["z1"]},
                    {"key": "gpu", "operator": "DoesNotExist"}
                ]}
            ]),
        );
        assert!(check(&p, &a));
        let p = required(
            pod("p", None, None),
            json!([{"matchExpressions": [
                {"key": "zone", "operator": "NotIn", "values": ["z1"]}
            ]}]),
        );
        assert!(!check(&p, &a));
    }

    #[test]
    fn gt_lt_exists() {
        let a = zone_node("a", "z1");
        let expr = |e: Value| required(pod("p", None, None), json!([{"matchExpressions": [e]}]));
        assert!(check(&expr(json!({"key": "gen", "operator": "Gt", "values": ["4"]})), &a));
        assert!(!check(&expr(json!({"key": "gen", "operator": "Gt", "values": ["5"]})), &a));
        assert!(check(&expr(json!({"key": "gen", "operator": "Lt", "values": ["6"]})), &a));
        assert!(!check(&expr(json!({"key": "zone", "operator": "Gt", "values": ["1"]})), &a));
        assert!(check(&expr(json!({"key": "zone", "operator": "Exists"})), &a));
        assert!(!check(&expr(json!({"key": "gen", "operator": "Gt", "values": ["1", "2"]})), &a));
    }

    #[test]
    fn match_fields_metadata_name_and_empty_term() {
        let a = zone_node("a", "z1");
        let p = required(
            pod("p", None, None),
            json!([{"matchFields": [{"key": "metadata.name", "operator": "In", "values": ["a"]}]}]),
        );
        assert!(check(&p, &a));
        let p = required(
            pod("p", None, None),
            json!([{"matchFields": [{"key": "metadata.name", "operator": "NotIn", "values": ["a"]}]}]),
        );
        assert!(!check(&p, &a));
        // An empty term selects nothing.
        let p = required(pod("p", None, None), json!([{}]));
        assert!(!check(&p, &a));
    }

    #[test]
    fn preferred_terms_score_by_weight_then_normalize() {
        let p = set(
            pod("p", None, None),
            "/spec/affinity/nodeAffinity/preferredDuringSchedulingIgnoredDuringExecution",
            json!([
                {"weight": 20, "preference": {"matchExpressions": [{"key": "zone", "operator": "In", "values": ["z1"]}]}},
                {"weight": 60, "preference": {"matchExpressions": [{"key": "gen", "operator": "Exists"}]}}
            ]),
        );
        let a = zone_node("a", "z1");
        let b = zone_node("b", "z2");
        let c = node_info(node("c", "1", "1Gi"), &[]);
        let mut st = state(&p);
        let snap = ClusterSnapshot::default();
        assert!(NodeAffinity.pre_score(&mut st, &p, &[&a, &b, &c], &snap).is_ok());
        let mut scores: Vec<i64> = [&a, &b, &c].iter().map(|n| NodeAffinity.score(&st, &p, n)).collect();
        assert_eq!(scores, vec![80, 60, 0]);
        NodeAffinity.normalize(&st, &mut scores);
        assert_eq!(scores, vec![100, 75, 0]);
    }
}
