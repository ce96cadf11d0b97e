//! NodeResourcesFit: the pod's requests must fit the node's allocatable minus what assigned
//! pods request; scores nodes by the LeastAllocated (default) or MostAllocated strategy.

use std::borrow::Cow;

use k8s_openapi::api::core::v1::Pod;

use crate::framework::{CycleState, FilterPlugin, NodeInfo, Plugin, ScorePlugin, Status, MAX_NODE_SCORE};

pub const NAME: &str = "NodeResourcesFit";

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ScoringStrategy {
    /// Prefer emptier nodes (spreads load); upstream's default.
    #[default]
    LeastAllocated,
    /// Prefer fuller nodes (bin packing).
    MostAllocated,
}

#[derive(Debug, Clone)]
pub struct NodeResourcesFit {
    pub strategy: ScoringStrategy,
    /// Scored resources and their weights; upstream defaults to cpu and memory, weight 1.
    pub resources: Vec<(String, i64)>,
    /// Extended resources the filter does not check (managed by something else).
    pub ignored_resources: Vec<String>,
}

impl Default for NodeResourcesFit {
    fn default() -> Self {
        NodeResourcesFit {
            strategy: ScoringStrategy::LeastAllocated,
            resources: vec![("cpu".into(), 1), ("memory".into(), 1)],
            ignored_resources: Vec::new(),
        }
    }
}

impl Plugin for NodeResourcesFit {
    fn name(&self) -> &'static str {
        NAME
    }
}

impl FilterPlugin for NodeResourcesFit {
    fn filter(&self, state: &CycleState, _pod: &Pod, node: &NodeInfo) -> Status {
        let req = &state.pod_info().requests;
        let alloc = &node.allocatable;
        let used = &node.requested;
        let mut reasons: Vec<Cow<'static, str>> = Vec::new();
        // Asking for more than the whole node cannot be solved by preemption.
        let mut unresolvable = false;
        if node.pods().len() as i64 + 1 > alloc.allowed_pod_number {
            reasons.push("Too many pods".into());
        }
        if !req.is_zero() {
            let mut check = |want: i64, have: i64, in_use: i64, reason: Cow<'static, str>| {
                if want > 0 && want > have - in_use {
                    unresolvable |= want > have;
                    reasons.push(reason);
                }
            };
            check(req.milli_cpu, alloc.milli_cpu, used.milli_cpu, "Insufficient cpu".into());
            check(req.memory, alloc.memory, used.memory, "Insufficient memory".into());
            check(
                req.ephemeral_storage,
                alloc.ephemeral_storage,
                used.ephemeral_storage,
                "Insufficient ephemeral-storage".into(),
            );
            for (name, &want) in &req.scalar {
                if self.ignored_resources.iter().any(|r| r == name) {
                    continue;
                }
                check(want, alloc.scalar(name), used.scalar(name), format!("Insufficient {name}").into());
            }
        }
        match (reasons.is_empty(), unresolvable) {
            (true, _) => Status::Ok,
            (false, false) => Status::Unschedulable(reasons),
            (false, true) => Status::UnschedulableAndUnresolvable(reasons),
        }
    }
}

/// (allocatable, requested including the pod) for one scored resource, as upstream's
/// `calculateResourceAllocatableRequest` with non-zero cpu/memory defaults. (0, 0) means
/// "not scored on this node".
fn allocatable_and_requested(state: &CycleState, node: &NodeInfo, resource: &str) -> (i64, i64) {
    let pod = state.pod_info();
    match resource {
        "cpu" => (node.allocatable.milli_cpu, node.non_zero_requested.milli_cpu + pod.non_zero_milli_cpu),
        "memory" => (node.allocatable.memory, node.non_zero_requested.memory + pod.non_zero_memory),
        "ephemeral-storage" => {
            (node.allocatable.ephemeral_storage, node.requested.ephemeral_storage + pod.requests.ephemeral_storage)
        }
        other => {
            let want = pod.requests.scalar(other);
            // Extended resources the pod does not ask for are not scored.
            match node.allocatable.scalar.get(other) {
                Some(&have) if want != 0 => (have, node.requested.scalar(other) + want),
                _ => (0, 0),
            }
        }
    }
}

impl ScorePlugin for NodeResourcesFit {
    fn score(&self, state: &CycleState, _pod: &Pod, node: &NodeInfo) -> i64 {
        let (mut total, mut weights) = (0i64, 0i64);
        for (resource, weight) in &self.resources {
            let (capacity, requested) = allocatable_and_requested(state, node, resource);
            if capacity == 0 {
                continue;
            }
            let score = match self.strategy {
                ScoringStrategy::LeastAllocated if requested > capacity => 0,
                ScoringStrategy::LeastAllocated => (capacity - requested) * MAX_NODE_SCORE / capacity,
                ScoringStrategy::MostAllocated => requested.min(capacity) * MAX_NODE_SCORE / capacity,
            };
            total += score * weight;
            weights += weight;
        }
        if weights == 0 {
            0
        } else {
            total / weights
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::framework::testutil::*;
    use serde_json::json;

    fn filter(p: &Pod, n: &NodeInfo) -> Status {
        NodeResourcesFit::default().filter(&state(p), p, n)
    }

    #[test]
    fn fits_when_enough_free() {
        let n = node_info(node("n1", "2", "4Gi"), &[on(pod("a", Some("1"), Some("1Gi")), "n1")]);
        assert!(filter(&pod("p", Some("1"), Some("3Gi")), &n).is_ok());
    }

    #[test]
    fn insufficient_cpu_and_memory_reported_together() {
        let n = node_info(node("n1", "2", "4Gi"), &[on(pod("a", Some("1500m"), Some("3Gi")), "n1")]);
        assert_eq!(
            filter(&pod("p", Some("600m"), Some("2Gi")), &n),
            Status::Unschedulable(vec!["Insufficient cpu".into(), "Insufficient memory".into()])
        );
    }

    #[test]
    fn request_beyond_allocatable_is_unresolvable() {
        let n = node_info(node("n1", "2", "4Gi"), &[]);
        assert_eq!(filter(&pod("p", Some("3"), None), &n), Status::unresolvable("Insufficient cpu"));
    }

    #[test]
    fn too_many_pods_even_without_requests() {
        let nd = set(node("n1", "2", "4Gi"), "/status/allocatable/pods", json!("1"));
        let n = node_info(nd, &[on(pod("a", None, None), "n1")]);
        assert_eq!(filter(&pod("p", None, None), &n), Status::unschedulable("Too many pods"));
    }

    #[test]
    fn extended_resources_and_ephemeral_storage() {
        let nd = set(node("n1", "2", "4Gi"), "/status/allocatable/example.com~1gpu", json!("1"));
        let nd = set(nd, "/status/allocatable/ephemeral-storage", json!("10Gi"));
        let n = node_info(nd, &[]);
        let p = set(
            pod("p", None, None),
            "/spec/containers/0/resources/requests",
            json!({"example.com/gpu": "2", "ephemeral-storage": "20Gi"}),
        );
        assert_eq!(
            filter(&p, &n),
            Status::UnschedulableAndUnresolvable(vec![
                "Insufficient ephemeral-storage".into(),
                "Insufficient example.com/gpu".into()
            ])
        );
        let p = set(pod("p", None, None), "/spec/containers/0/resources/requests", json!({"example.com/gpu": "1"}));
        assert!(filter(&p, &n).is_ok());
    }

    #[test]
    fn init_containers_sidecars_and_overhead() {
        let p: Pod = typed(json!({
            "metadata": {"name": "p"},
            "spec": {
                "containers": [{"name": "a", "resources": {"requests": {"cpu": "100m"}}}],
                "initContainers": [
                    {"name": "sidecar", "restartPolicy": "Always", "resources": {"requests": {"cpu": "200m"}}},
                    {"name": "init", "resources": {"requests": {"cpu": "500m"}}}
                ],
                "overhead": {"cpu": "10m"}
            }
        }));
        // max(100 + 200, 200 + 500) + 10
        assert_eq!(info(&p).requests.milli_cpu, 710);
        let p2: Pod = typed(json!({"metadata": {"name": "p"}, "spec": {
            "containers": [{"name": "a", "resources": {"requests": {"cpu": "1"}}}],
            "initContainers": [{"name": "i", "resources": {"requests": {"cpu": "500m"}}}]
        }}));
        assert_eq!(info(&p2).requests.milli_cpu, 1000);
    }

    #[test]
    fn least_allocated_uses_non_zero_defaults() {
        let n = node_info(node("n1", "1", "1000Mi"), &[]);
        let p = pod("p", None, None);
        // cpu: (1000-100)*100/1000 = 90; memory: (1000-200)*100/1000 = 80
        assert_eq!(NodeResourcesFit::default().score(&state(&p), &p, &n), 85);
        let p = pod("p", Some("0"), Some("0"));
        assert_eq!(NodeResourcesFit::default().score(&state(&p), &p, &n), 100);
    }

    #[test]
    fn most_allocated_prefers_fuller_nodes() {
        let plugin = NodeResourcesFit { strategy: ScoringStrategy::MostAllocated, ..Default::default() };
        let empty = node_info(node("a", "4", "4Gi"), &[]);
        let busy = node_info(node("b", "4", "4Gi"), &[on(pod("x", Some("2"), Some("2Gi")), "b")]);
        let p = pod("p", Some("1"), Some("1Gi"));
        let st = state(&p);
        assert_eq!(plugin.score(&st, &p, &empty), 25);
        assert_eq!(plugin.score(&st, &p, &busy), 75);
    }
}
