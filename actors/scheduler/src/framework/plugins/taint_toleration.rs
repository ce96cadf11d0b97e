//! TaintToleration: NoSchedule/NoExecute taints must be tolerated; fewer untolerated
//! PreferNoSchedule taints score higher.

use k8s_openapi::api::core::v1::{Pod, Taint, Toleration};

use crate::framework::types::tolerates;
use crate::framework::{
    default_normalize_score, CycleState, FilterPlugin, NodeInfo, Plugin, ScorePlugin, Status, MAX_NODE_SCORE,
};

pub const NAME: &str = "TaintToleration";

#[derive(Debug, Default, Clone, Copy)]
pub struct TaintToleration;

impl Plugin for TaintToleration {
    fn name(&self) -> &'static str {
        NAME
    }
}

/// The first NoSchedule/NoExecute taint none of the tolerations tolerate.
pub fn find_untolerated_taint<'a>(taints: &'a [Taint], tolerations: &[Toleration]) -> Option<&'a Taint> {
    taints.iter().find(|t| {
        (t.effect == "NoSchedule" || t.effect == "NoExecute") && !tolerations.iter().any(|tol| tolerates(tol, t))
    })
}

impl FilterPlugin for TaintToleration {
    fn filter(&self, state: &CycleState, _pod: &Pod, node: &NodeInfo) -> Status {
        match find_untolerated_taint(node.taints(), state.pod_info().tolerations()) {
            None => Status::Ok,
            Some(t) => Status::unresolvable(format!(
                "node(s) had untolerated taint {{{}: {}}}",
                t.key,
                t.value.as_deref().unwrap_or("")
            )),
        }
    }
}

impl ScorePlugin for TaintToleration {
    /// Raw score: the number of PreferNoSchedule taints not tolerated; only tolerations with
    /// an empty or PreferNoSchedule effect count, as upstream.
    fn score(&self, state: &CycleState, _pod: &Pod, node: &NodeInfo) -> i64 {
        let tolerations = state.pod_info().tolerations();
        node.taints()
            .iter()
            .filter(|t| t.effect == "PreferNoSchedule")
            .filter(|t| {
                !tolerations.iter().any(|tol| {
                    matches!(tol.effect.as_deref().unwrap_or(""), "" | "PreferNoSchedule") && tolerates(tol, t)
                })
            })
            .count() as i64
    }

    fn normalize(&self, _state: &CycleState, scores: &mut [i64]) {
        default_normalize_score(MAX_NODE_SCORE, true, scores);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::framework::testutil::*;
    use serde_json::{json, Value};

    fn tainted(taints: Value) -> NodeInfo {
        node_info(set(node("n1", "4", "8Gi"), "/spec/taints", taints), &[])
    }

    #[test]
    fn untolerated_no_schedule_rejects_with_upstream_message() {
        let p = pod("p", None, None);
        let n = tainted(json!([{"key": "dedicated", "value": "gpu", "effect": "NoSchedule"}]));
        assert_eq!(
            TaintToleration.filter(&state(&p), &p, &n),
            Status::unresolvable("node(s) had untolerated taint {dedicated: gpu}")
        );
        let n = tainted(json!([{"key": "node.kubernetes.io/not-ready", "effect": "NoExecute"}]));
        assert_eq!(
            TaintToleration.filter(&state(&p), &p, &n).message(),
            "node(s) had untolerated taint {node.kubernetes.io/not-ready: }"
        );
    }

    #[test]
    fn prefer_no_schedule_does_not_filter() {
        let p = pod("p", None, None);
        let n = tainted(json!([{"key": "k", "value": "v", "effect": "PreferNoSchedule"}]));
        assert!(TaintToleration.filter(&state(&p), &p, &n).is_ok());
    }

    #[test]
    fn toleration_operators() {
        let n = tainted(json!([{"key": "dedicated", "value": "gpu", "effect": "NoSchedule"}]));
        for (tol, ok) in [
            (json!({"key": "dedicated", "operator": "Equal", "value": "gpu"}), true),
            (json!({"key": "dedicated", "value": "gpu", "effect": "NoSchedule"}), true),
            (json!({"key": "dedicated", "operator": "Exists"}), true),
            (json!({"operator": "Exists"}), true),
            (json!({"key": "dedicated", "value": "cpu"}), false),
            (json!({"key": "dedicated", "operator": "Exists", "effect": "NoExecute"}), false),
        ] {
            let p = set(pod("p", None, None), "/spec/tolerations", json!([tol]));
            assert_eq!(TaintToleration.filter(&state(&p), &p, &n).is_ok(), ok, "{tol}");
        }
    }

    #[test]
    fn score_counts_intolerable_prefer_no_schedule_and_normalizes_reversed() {
        let p = set(
            pod("p", None, None),
            "/spec/tolerations",
            json!([{"key": "a", "operator": "Exists", "effect": "PreferNoSchedule"},
                   {"key": "b", "operator": "Exists", "effect": "NoSchedule"}]),
        );
        let st = state(&p);
        let none = tainted(json!([]));
        let one = tainted(json!([{"key": "a", "effect": "PreferNoSchedule"},
                                 {"key": "c", "effect": "PreferNoSchedule"}]));
        // A NoSchedule-only toleration does not count for PreferNoSchedule taints.
        let two = tainted(json!([{"key": "b", "effect": "PreferNoSchedule"},
                                 {"key": "c", "effect": "PreferNoSchedule"}]));
        let mut scores: Vec<i64> = [&none, &one, &two].iter().map(|n| TaintToleration.score(&st, &p, n)).collect();
        assert_eq!(scores, vec![0, 1, 2]);
        TaintToleration.normalize(&st, &mut scores);
        assert_eq!(scores, vec![100, 50, 0]);
        let mut zeros = vec![0, 0];
        TaintToleration.normalize(&st, &mut zeros);
        assert_eq!(zeros, vec![100, 100]);
    }
}
