//! Pods (upstream `pkg/registry/core/pod`): a new pod starts Pending with its QoS class, the
//! binding subresource assigns it to a node, and a pod a node runs is deleted gracefully: it
//! stays, marked, until its kubelet has stopped it and deletes it with grace 0.

use super::{keep_unwritable, Strategy, SubresourceStrategy, Verbs};
use crate::object::now;
use k8s_openapi::api::core::v1::{Pod, PodSpec};
use kubus_apimachinery::resources::compute_qos_class;
use kubus_apimachinery::{resource, validation, Cause, ResourceInfo, StatusError, Subresource};
use serde::Deserialize;
use serde_json::{json, Value};

pub struct PodStrategy;

impl Strategy for PodStrategy {
    fn info(&self) -> &'static ResourceInfo {
        resource::of::<Pod>()
    }

    /// The QoS class is computed once, from the defaulted spec, with the kubelet's rules; the
    /// status validation keeps it from changing afterwards.
    fn prepare_for_create(&self, pod: &mut Value) {
        // A spec that does not decode is refused by validation; its class does not matter.
        let spec = PodSpec::deserialize(&pod["spec"]).unwrap_or_default();
        let qos = compute_qos_class(&spec);
        pod["status"] = json!({"phase": "Pending", "qosClass": qos.as_str()});
    }

    fn prepare_for_update(&self, sub: Option<Subresource>, new: &mut Value, old: &Value) {
        // A binding writes spec.nodeName and the PodScheduled condition together.
        if sub != Some(Subresource::Binding) {
            keep_unwritable(self, sub, new, old);
        }
        // The Priority admission set these at creation; a write that leaves them out keeps them.
        for f in ["priority", "preemptionPolicy"] {
            if new["spec"].get(f).is_none_or(Value::is_null) && !old["spec"][f].is_null() {
                if let Some(spec) = new["spec"].as_object_mut() {
                    spec.insert(f.into(), old["spec"][f].clone());
                }
            }
        }
    }

    fn validate_update(&self, sub: Option<Subresource>, new: &Value, old: &Value) -> Vec<Cause> {
        match sub {
            Some(Subresource::Status | Subresource::Binding) => {
                validation::validate_status_update(self.info().group, self.info().kind, new, old)
            }
            _ => validation::validate_update(self.info().group, self.info().kind, new, old),
        }
    }

    fn subresource(&self, sub: Subresource) -> Option<&'static dyn SubresourceStrategy> {
        (sub == Subresource::Binding).then_some(&Binding)
    }

    /// Immediate for pods no node runs (unscheduled or finished), else the request's or the
    /// pod's own terminationGracePeriodSeconds.
    fn grace_period(&self, pod: &Value, requested: Option<i64>) -> i64 {
        let scheduled = pod["spec"]["nodeName"].as_str().is_some_and(|n| !n.is_empty());
        let finished = matches!(pod["status"]["phase"].as_str(), Some("Succeeded" | "Failed"));
        if !scheduled || finished {
            return 0;
        }
        requested.unwrap_or_else(|| pod["spec"]["terminationGracePeriodSeconds"].as_i64().unwrap_or(30)).max(0)
    }

    /// A graceful deletion ends with the kubelet's delete with grace 0, not with the last
    /// finalizer.
    fn deletion_pending(&self, pod: &Value) -> bool {
        pod["metadata"]["deletionGracePeriodSeconds"].as_i64().is_some_and(|g| g > 0)
    }
}

/// `pods/{name}/binding`: what the scheduler posts to place a pod on a node.
pub struct Binding;

impl SubresourceStrategy for Binding {
    fn verbs(&self) -> Verbs {
        Verbs::Post
    }

    fn check(&self, name: &str, binding: &Value) -> Result<(), StatusError> {
        if binding["target"]["name"].as_str().unwrap_or("").is_empty() {
            return Err(StatusError::invalid("", "Binding", name, vec![Cause::required("target.name")]));
        }
        Ok(())
    }

    fn apply(&self, name: &str, old: &Value, binding: &Value) -> Result<Value, StatusError> {
        let node = binding["target"]["name"].as_str().unwrap_or("");
        if old["metadata"]["deletionTimestamp"].is_string() {
            return Err(StatusError::conflict("", "pods", name, "pod is being deleted, cannot be assigned to a host"));
        }
        if let Some(cur) = old["spec"]["nodeName"].as_str().filter(|n| !n.is_empty()) {
            let message = format!("pod {name} is already assigned to node \"{cur}\"");
            return Err(StatusError::conflict("", "pods", name, &message));
        }
        let mut new = old.clone();
        new["spec"]["nodeName"] = json!(node);
        let mut conds: Vec<Value> = new["status"]["conditions"].as_array().cloned().unwrap_or_default();
        conds.retain(|c| c["type"] != "PodScheduled");
        conds.push(
            json!({"type": "PodScheduled", "status": "True", "lastProbeTime": null, "lastTransitionTime": now()}),
        );
        new["status"]["conditions"] = Value::Array(conds);
        new["metadata"].as_object_mut().map(|m| m.remove("resourceVersion"));
        Ok(new)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn created(containers: Value) -> Value {
        let strategy = PodStrategy;
        let mut pod = json!({"metadata": {"name": "p", "namespace": "default"}, "spec": {"containers": containers}});
        strategy.set_defaults(&mut pod);
        strategy.prepare_for_create(&mut pod);
        pod
    }

    fn qos(resources: Value) -> Value {
        created(json!([{"name": "c", "image": "i", "resources": resources}]))["status"]["qosClass"].clone()
    }

    #[test]
    fn qos_class_of_the_defaulted_pod() {
        // The cases the old JSON reading got right.
        assert_eq!(created(json!([{"name": "a", "image": "i"}]))["status"]["qosClass"], "BestEffort");
        assert_eq!(qos(json!({"limits": {"cpu": "1", "memory": "1Gi"}})), "Guaranteed");
        assert_eq!(qos(json!({"requests": {"cpu": "1"}})), "Burstable");
        // A zero request asks for nothing, as the kubelet counts it.
        assert_eq!(qos(json!({"requests": {"cpu": "0"}})), "BestEffort");
        // The same quantity spelled two ways is equal.
        let same = json!({"requests": {"cpu": "1000m", "memory": "1Gi"}, "limits": {"cpu": "1", "memory": "1Gi"}});
        assert_eq!(qos(same), "Guaranteed");
        assert_eq!(qos(json!({"requests": {"cpu": "500m"}, "limits": {"cpu": "0.5"}})), "Burstable");
        // Whatever the client wrote in the status is replaced.
        let pod = created(json!([{"name": "a", "image": "i"}]));
        assert_eq!(pod["status"], json!({"phase": "Pending", "qosClass": "BestEffort"}));
    }

    #[test]
    fn binding_assigns_once() {
        let pod = json!({"metadata": {"name": "p", "resourceVersion": "5"}, "spec": {}, "status": {"conditions": [{"type": "PodScheduled", "status": "False"}]}});
        assert_eq!(Binding.check("p", &json!({"target": {}})).unwrap_err().code, 422);
        let bound = Binding.apply("p", &pod, &json!({"target": {"name": "n1"}})).unwrap();
        assert_eq!(bound["spec"]["nodeName"], "n1");
        assert_eq!(bound["status"]["conditions"].as_array().unwrap().len(), 1);
        assert_eq!(bound["status"]["conditions"][0]["status"], "True");
        assert!(bound["metadata"].get("resourceVersion").is_none());
        let again = Binding.apply("p", &bound, &json!({"target": {"name": "n2"}})).unwrap_err();
        assert_eq!(
            again.message,
            "Operation cannot be fulfilled on pods \"p\": pod p is already assigned to node \"n1\""
        );
        let deleting = json!({"metadata": {"name": "p", "deletionTimestamp": "2024-01-01T00:00:00Z"}, "spec": {}});
        assert_eq!(Binding.apply("p", &deleting, &json!({"target": {"name": "n"}})).unwrap_err().code, 409);
    }

    #[test]
    fn graceful_deletion_of_running_pods_only() {
        let s = PodStrategy;
        let unscheduled = json!({"spec": {}});
        assert_eq!(s.grace_period(&unscheduled, Some(10)), 0);
        let running = json!({"spec": {"nodeName": "n", "terminationGracePeriodSeconds": 45}});
        assert_eq!(s.grace_period(&running, None), 45);
        assert_eq!(s.grace_period(&running, Some(5)), 5);
        assert_eq!(s.grace_period(&running, Some(-3)), 0);
        let finished = json!({"spec": {"nodeName": "n"}, "status": {"phase": "Failed"}});
        assert_eq!(s.grace_period(&finished, None), 0);
        assert!(s.deletion_pending(&json!({"metadata": {"deletionGracePeriodSeconds": 30}})));
        assert!(!s.deletion_pending(&json!({"metadata": {"deletionGracePeriodSeconds": 0}})));
    }
}
