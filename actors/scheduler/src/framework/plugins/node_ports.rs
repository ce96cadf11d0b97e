//! NodePorts: a requested hostPort must be free on the node for its protocol and address.

use k8s_openapi::api::core::v1::Pod;

use crate::framework::{ClusterSnapshot, CycleState, FilterPlugin, NodeInfo, Plugin, PreFilterPlugin, Status};

pub const NAME: &str = "NodePorts";
pub const ERR_REASON: &str = "node(s) didn't have free ports for the requested pod ports";

#[derive(Debug, Default, Clone, Copy)]
pub struct NodePorts;

impl Plugin for NodePorts {
    fn name(&self) -> &'static str {
        NAME
    }
}

impl PreFilterPlugin for NodePorts {
    fn pre_filter(&self, state: &mut CycleState, _: &Pod, _: &ClusterSnapshot) -> Status {
        if state.pod_info().host_ports.is_empty() {
            Status::Skip
        } else {
            Status::Ok
        }
    }
}

impl FilterPlugin for NodePorts {
    fn filter(&self, state: &CycleState, _pod: &Pod, node: &NodeInfo) -> Status {
        let used = node.used_ports();
        let clash = state.pod_info().host_ports.iter().any(|want| used.iter().any(|u| want.conflicts(u)));
        if clash {
            Status::unschedulable(ERR_REASON)
        } else {
            Status::Ok
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::framework::testutil::*;
    use serde_json::{json, Value};

    fn with_port(name: &str, port: Value) -> Pod {
        set(pod(name, None, None), "/spec/containers/0/ports", json!([port]))
    }

    fn fits(incoming: Pod, existing: Pod) -> bool {
        let n = node_info(node("n1", "4", "8Gi"), &[on(existing, "n1")]);
        let mut st = state(&incoming);
        if NodePorts.pre_filter(&mut st, &incoming, &ClusterSnapshot::default()).is_skip() {
            return true;
        }
        let s = NodePorts.filter(&st, &incoming, &n);
        assert!(s.is_ok() || s == Status::unschedulable(ERR_REASON));
        s.is_ok()
    }

    #[test]
    fn same_port_and_protocol_conflict() {
        let a = with_port("a", json!({"containerPort": 80, "hostPort": 8080}));
        let b = with_port("b", json!({"containerPort": 80, "hostPort": 8080, "protocol": "TCP"}));
        assert!(!fits(b, a));
    }

    #[test]
    fn different_protocol_or_port_is_free() {
        let a = with_port("a", json!({"containerPort": 53, "hostPort": 53, "protocol": "UDP"}));
        let b = with_port("b", json!({"containerPort": 53, "hostPort": 53}));
        assert!(fits(b, a.clone()));
        let c = with_port("c", json!({"containerPort": 53, "hostPort": 54, "protocol": "UDP"}));
        assert!(fits(c, a));
    }

    #[test]
    fn host_ip_rules() {
        let on_ip = |n: &str, ip: &str| with_port(n, json!({"containerPort": 1, "hostPort": 9000, "hostIP": ip}));
        // Distinct addresses coexist; the wildcard clashes with any.
        assert!(fits(on_ip("b", "10.0.0.2"), on_ip("a", "10.0.0.1")));
        assert!(!fits(on_ip("b", "10.0.0.1"), on_ip("a", "10.0.0.1")));
        assert!(!fits(on_ip("b", "0.0.0.0"), on_ip("a", "10.0.0.1")));
        assert!(!fits(on_ip("b", "10.0.0.1"), on_ip("a", "0.0.0.0")));
    }

    #[test]
    fn container_port_without_host_port_is_ignored_and_removal_frees() {
        let a = with_port("a", json!({"containerPort": 80}));
        let b = with_port("b", json!({"containerPort": 80}));
        assert!(fits(b, a));
        let a = on(with_port("a", json!({"containerPort": 80, "hostPort": 80})), "n1");
        let mut n = node_info(node("n1", "4", "8Gi"), std::slice::from_ref(&a));
        assert_eq!(n.used_ports().len(), 1);
        assert!(n.remove_pod(&a));
        assert!(n.used_ports().is_empty());
    }
}
