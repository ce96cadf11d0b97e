//! NodeUnschedulable: keeps pods off cordoned nodes (`spec.unschedulable`).

use k8s_openapi::api::core::v1::{Pod, Taint};

use crate::framework::types::tolerations_tolerate;
use crate::framework::{CycleState, FilterPlugin, NodeInfo, Plugin, Status};

pub const NAME: &str = "NodeUnschedulable";
pub const ERR_REASON_UNSCHEDULABLE: &str = "node(s) were unschedulable";

#[derive(Debug, Default, Clone, Copy)]
pub struct NodeUnschedulable;

impl Plugin for NodeUnschedulable {
    fn name(&self) -> &'static str {
        NAME
    }
}

impl FilterPlugin for NodeUnschedulable {
    fn filter(&self, state: &CycleState, _pod: &Pod, node: &NodeInfo) -> Status {
        if !node.unschedulable() {
            return Status::Ok;
        }
        // A pod that tolerates the cordon taint (DaemonSets do) may also ignore the flag.
        let cordon =
            Taint { key: "node.kubernetes.io/unschedulable".into(), effect: "NoSchedule".into(), ..Default::default() };
        if tolerations_tolerate(state.pod_info().tolerations(), &cordon) {
            Status::Ok
        } else {
            Status::unresolvable(ERR_REASON_UNSCHEDULABLE)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::framework::testutil::*;
    use serde_json::json;

    fn cordoned() -> NodeInfo {
        node_info(set(node("n1", "4", "8Gi"), "/spec/unschedulable", json!(true)), &[])
    }

    #[test]
    fn schedulable_node_passes() {
        let p = pod("p", None, None);
        let n = node_info(node("n1", "4", "8Gi"), &[]);
        assert!(NodeUnschedulable.filter(&state(&p), &p, &n).is_ok());
    }

    #[test]
    fn cordoned_node_rejects() {
        let p = pod("p", None, None);
        assert_eq!(
            NodeUnschedulable.filter(&state(&p), &p, &cordoned()),
            Status::unresolvable("node(s) were unschedulable")
        );
    }

    #[test]
    fn cordon_toleration_admits() {
        let p = set(
            pod("p", None, None),
            "/spec/tolerations",
            json!([{"key": "node.kubernetes.io/unschedulable", "operator": "Exists", "effect": "NoSchedule"}]),
        );
        assert!(NodeUnschedulable.filter(&state(&p), &p, &cordoned()).is_ok());
    }
}
