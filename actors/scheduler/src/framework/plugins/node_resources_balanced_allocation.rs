//! NodeResourcesBalancedAllocation: prefers nodes whose cpu and memory utilisation, with the
//! pod placed, are close to each other.

use k8s_openapi::api::core::v1::Pod;

use crate::framework::{
    ClusterSnapshot, CycleState, NodeInfo, Plugin, PreScorePlugin, ScorePlugin, Status, MAX_NODE_SCORE,
};

pub const NAME: &str = "NodeResourcesBalancedAllocation";

#[derive(Debug, Default, Clone, Copy)]
pub struct NodeResourcesBalancedAllocation;

impl Plugin for NodeResourcesBalancedAllocation {
    fn name(&self) -> &'static str {
        NAME
    }
}

impl PreScorePlugin for NodeResourcesBalancedAllocation {
    fn pre_score(
        &self,
        state: &mut CycleState,
        _pod: &Pod,
        _nodes: &[&NodeInfo],
        _snapshot: &ClusterSnapshot,
    ) -> Status {
        let r = &state.pod_info().requests;
        // Best-effort pods are not scored: with nothing requested every node would look
        // equally balanced forever and they would pile up (upstream issue 129138).
        if r.milli_cpu == 0 && r.memory == 0 {
            Status::Skip
        } else {
            Status::Ok
        }
    }
}

/// Upstream's `balancedResourceScorer`: 100 × (1 − standard deviation of the fractions).
pub fn balanced_score(fractions: &[f64]) -> i64 {
    let std = match fractions.len() {
        0 | 1 => 0.0,
        2 => ((fractions[0] - fractions[1]) / 2.0).abs(),
        n => {
            let mean = fractions.iter().sum::<f64>() / n as f64;
            (fractions.iter().map(|f| (f - mean) * (f - mean)).sum::<f64>() / n as f64).sqrt()
        }
    };
    ((1.0 - std) * MAX_NODE_SCORE as f64) as i64
}

impl ScorePlugin for NodeResourcesBalancedAllocation {
    fn score(&self, state: &CycleState, _pod: &Pod, node: &NodeInfo) -> i64 {
        // Actual requests, not the non-zero defaults: upstream sets useRequested here.
        let pod = &state.pod_info().requests;
        let pairs = [
            (node.allocatable.milli_cpu, node.requested.milli_cpu + pod.milli_cpu),
            (node.allocatable.memory, node.requested.memory + pod.memory),
        ];
        let mut fractions = [0.0f64; 2];
        let mut n = 0;
        for (capacity, requested) in pairs {
            if capacity == 0 {
                continue;
            }
            fractions[n] = (requested as f64 / capacity as f64).min(1.0);
            n += 1;
        }
        balanced_score(&fractions[..n])
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::framework::testutil::*;

    #[test]
    fn balanced_node_scores_higher() {
        let p = pod("p", Some("1"), Some("1Gi"));
        let mut st = state(&p);
        let balanced = node_info(node("a", "4", "4Gi"), &[on(pod("x", Some("1"), Some("1Gi")), "a")]);
        let skewed = node_info(node("b", "4", "4Gi"), &[on(pod("y", Some("3"), None), "b")]);
        let snap = ClusterSnapshot::default();
        assert!(NodeResourcesBalancedAllocation.pre_score(&mut st, &p, &[&balanced, &skewed], &snap).is_ok());
        assert_eq!(NodeResourcesBalancedAllocation.score(&st, &p, &balanced), 100);
        // cpu 4/4 = 1.0, memory 1/4 = 0.25 → std 0.375 → 62
        assert_eq!(NodeResourcesBalancedAllocation.score(&st, &p, &skewed), 62);
    }

    #[test]
    fn best_effort_pod_is_skipped() {
        let p = pod("p", None, None);
        let mut st = state(&p);
        assert!(NodeResourcesBalancedAllocation.pre_score(&mut st, &p, &[], &ClusterSnapshot::default()).is_skip());
    }

    #[test]
    fn std_of_three_fractions() {
        assert_eq!(balanced_score(&[0.5, 0.5, 0.5]), 100);
        // mean 0.5, deviations ±0.5 and 0 → std = sqrt(0.5/3) ≈ 0.408 → 59
        assert_eq!(balanced_score(&[0.0, 0.5, 1.0]), 59);
    }
}
