//! NodeName: a pod created with `spec.nodeName` only fits that node.

use k8s_openapi::api::core::v1::Pod;
use kubus_apimachinery::pod::node_name;

use crate::framework::{CycleState, FilterPlugin, NodeInfo, Plugin, Status};

pub const NAME: &str = "NodeName";
pub const ERR_REASON: &str = "node(s) didn't match the requested node name";

#[derive(Debug, Default, Clone, Copy)]
pub struct NodeName;

impl Plugin for NodeName {
    fn name(&self) -> &'static str {
        NAME
    }
}

impl FilterPlugin for NodeName {
    fn filter(&self, _state: &CycleState, pod: &Pod, node: &NodeInfo) -> Status {
        match node_name(pod) {
            Some(n) if n != node.name() => Status::unresolvable(ERR_REASON),
            _ => Status::Ok,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::framework::testutil::*;

    #[test]
    fn empty_node_name_fits_any() {
        let p = pod("p", None, None);
        let n = node_info(node("n1", "1", "1Gi"), &[]);
        assert!(NodeName.filter(&state(&p), &p, &n).is_ok());
    }

    #[test]
    fn node_name_must_match() {
        let p = on(pod("p", None, None), "n2");
        let n1 = node_info(node("n1", "1", "1Gi"), &[]);
        let n2 = node_info(node("n2", "1", "1Gi"), &[]);
        assert_eq!(
            NodeName.filter(&state(&p), &p, &n1),
            Status::unresolvable("node(s) didn't match the requested node name")
        );
        assert!(NodeName.filter(&state(&p), &p, &n2).is_ok());
    }
}
