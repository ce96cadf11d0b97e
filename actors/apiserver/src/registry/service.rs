//! Services (upstream `pkg/registry/core/service`): ClusterIPs and node ports are allocated when
//! a Service is created and given back when it is deleted; a replace that leaves allocated
//! values out keeps them.

use super::{keep_unwritable, Strategy};
use crate::allocator::{self, Allocator};
use futures::future::BoxFuture;
use k8s_openapi::api::core::v1::Service;
use kubus_apimachinery::{resource, validation, ResourceInfo, StatusError, Subresource};
use kubus_bus::Key;
use serde_json::{json, Value};

pub struct ServiceStrategy;

impl Strategy for ServiceStrategy {
    fn info(&self) -> &'static ResourceInfo {
        resource::of::<Service>()
    }

    fn prepare_for_create(&self, svc: &mut Value) {
        svc["status"] = json!({"loadBalancer": {}});
    }

    fn allocate<'a>(
        &'a self,
        allocator: &'a Allocator,
        svc: &'a mut Value,
    ) -> BoxFuture<'a, Result<Vec<Key>, StatusError>> {
        Box::pin(allocator.allocate_service(svc))
    }

    fn reservations(&self, svc: &Value) -> Vec<Key> {
        allocator::held_by(svc)
    }

    fn prepare_for_update(&self, sub: Option<Subresource>, new: &mut Value, old: &Value) {
        keep_unwritable(self, sub, new, old);
        // ClusterIPs, IP families and node ports survive a replace that leaves them out.
        if sub.is_none() {
            validation::carry_over_for_update(self.info().group, self.info().kind, new, old);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replace_keeps_allocated_values_and_status() {
        let s = ServiceStrategy;
        let old = json!({"metadata": {"name": "s"}, "spec": {"type": "NodePort", "clusterIP": "10.96.0.9", "clusterIPs": ["10.96.0.9"], "ports": [{"name": "a", "port": 80, "nodePort": 30001}]}, "status": {"loadBalancer": {}}});
        let mut new = json!({"metadata": {"name": "s"}, "spec": {"type": "NodePort", "ports": [{"name": "a", "port": 81}]}, "status": {"x": 1}});
        s.prepare_for_update(None, &mut new, &old);
        assert_eq!(new["spec"]["clusterIP"], "10.96.0.9");
        assert_eq!(new["spec"]["ports"][0]["nodePort"], 30001);
        assert_eq!(new["status"], old["status"]);
        let keys = s.reservations(&old);
        assert_eq!(keys.len(), 2);
    }
}
