//! Replicated workloads, Deployments, ReplicaSets and ReplicationControllers (upstream
//! `pkg/registry/apps/deployment`, `replicaset` and `core/replicationcontroller`, whose rules
//! Kubus serves alike): the status starts empty and belongs to the
//! controller, metadata.generation counts spec changes, and the scale subresource reads and
//! writes spec.replicas as an autoscaling/v1 Scale.

use super::{Strategy, SubresourceStrategy, Verbs};
use kubus_apimachinery::selector::LabelSelector;
use kubus_apimachinery::{Cause, ResourceInfo, StatusError, Subresource};
use serde_json::{json, Value};

pub struct WorkloadStrategy {
    pub info: &'static ResourceInfo,
}

impl Strategy for WorkloadStrategy {
    fn info(&self) -> &'static ResourceInfo {
        self.info
    }

    fn tracks_generation(&self) -> bool {
        true
    }

    fn prepare_for_create(&self, obj: &mut Value) {
        obj["status"] = super::empty_status(self.info.kind);
    }

    fn subresource(&self, sub: Subresource) -> Option<&'static dyn SubresourceStrategy> {
        let scale: &'static Scale = if self.info.kind == "ReplicationController" { &RC_SCALE } else { &SCALE };
        (sub == Subresource::Scale && self.info.has(Subresource::Scale)).then_some(scale)
    }
}

/// `{deployments,replicasets,replicationcontrollers}/{name}/scale` (kubectl scale).
pub struct Scale {
    /// The selector is a plain label map (a ReplicationController's), not a LabelSelector.
    map_selector: bool,
}

static SCALE: Scale = Scale { map_selector: false };
static RC_SCALE: Scale = Scale { map_selector: true };

impl SubresourceStrategy for Scale {
    fn verbs(&self) -> Verbs {
        Verbs::View
    }

    fn view(&self, obj: &Value) -> Value {
        let selector = if self.map_selector {
            LabelSelector::from_json(&json!({"matchLabels": obj["spec"]["selector"]}))
        } else {
            LabelSelector::from_json(&obj["spec"]["selector"])
        };
        let selector = selector.map(|s| s.to_string()).unwrap_or_default();
        let m = &obj["metadata"];
        json!({
            "kind": "Scale",
            "apiVersion": "autoscaling/v1",
            "metadata": {"name": m["name"], "namespace": m["namespace"], "uid": m["uid"],
                         "resourceVersion": m["resourceVersion"], "creationTimestamp": m["creationTimestamp"]},
            "spec": {"replicas": obj["spec"]["replicas"].as_i64().unwrap_or(1)},
            "status": {"replicas": obj["status"]["replicas"].as_i64().unwrap_or(0), "selector": selector},
        })
    }

    fn apply(&self, name: &str, old: &Value, scale: &Value) -> Result<Value, StatusError> {
        let invalid = |cause| StatusError::invalid("autoscaling", "Scale", name, vec![cause]);
        let replicas = scale["spec"]["replicas"].as_i64().ok_or_else(|| invalid(Cause::required("spec.replicas")))?;
        if replicas < 0 {
            return Err(invalid(Cause::invalid(
                "spec.replicas",
                &json!(replicas),
                "must be greater than or equal to 0",
            )));
        }
        let mut new = old.clone();
        new["spec"]["replicas"] = json!(replicas);
        new["metadata"].as_object_mut().map(|m| m.remove("resourceVersion"));
        Ok(new)
    }

    /// A replicas change is a spec change: the workload's own rules (generation, validation)
    /// apply.
    fn writes_object(&self) -> bool {
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scale_reads_and_writes_replicas() {
        let d = json!({"metadata": {"name": "web", "namespace": "default", "resourceVersion": "7"},
            "spec": {"replicas": 3, "selector": {"matchLabels": {"app": "web"}}}, "status": {"replicas": 2}});
        let view = SCALE.view(&d);
        assert_eq!((view["spec"]["replicas"].as_i64(), view["status"]["replicas"].as_i64()), (Some(3), Some(2)));
        assert_eq!(view["status"]["selector"], "app=web");
        assert_eq!(view["metadata"]["resourceVersion"], "7");
        let scaled = SCALE.apply("web", &d, &json!({"spec": {"replicas": 5}})).unwrap();
        assert_eq!(scaled["spec"]["replicas"], 5);
        assert!(scaled["metadata"].get("resourceVersion").is_none());
        let e = SCALE.apply("web", &d, &json!({"spec": {"replicas": -1}})).unwrap_err();
        assert_eq!(e.message, "Scale.autoscaling \"web\" is invalid: spec.replicas: Invalid value: -1: must be greater than or equal to 0");
        let e = SCALE.apply("web", &d, &json!({"spec": {}})).unwrap_err();
        assert_eq!(e.message, "Scale.autoscaling \"web\" is invalid: spec.replicas: Required value");
    }
}
