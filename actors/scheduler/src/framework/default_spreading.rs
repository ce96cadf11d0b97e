//! Upstream's system-default topology spreading (PodTopologySpread's `defaultingType:
//! System`), applied to a pod before it is scheduled.

use std::sync::Arc;

use k8s_openapi::api::core::v1::{Pod, TopologySpreadConstraint};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use kubus_apimachinery::{pod, ObjectExt};

/// A pod that a controller owns and that names no spread constraints of its own is spread
/// softly over hosts (maxSkew 3) and zones (maxSkew 5) among the pods with its labels, so
/// replicas do not pile onto one node when resource scores tie. Other pods are returned as
/// they are (the same `Arc`).
pub fn with_default_spreading(p: &Arc<Pod>) -> Arc<Pod> {
    let explicit = pod::spec(p).topology_spread_constraints.as_ref().is_some_and(|c| !c.is_empty());
    let labels = p.labels();
    if p.controller_ref().is_none() || explicit || labels.is_empty() {
        return p.clone();
    }
    let constraint = |key: &str, max_skew: i32| TopologySpreadConstraint {
        max_skew,
        topology_key: key.to_string(),
        when_unsatisfiable: "ScheduleAnyway".to_string(),
        label_selector: Some(LabelSelector { match_labels: Some(labels.clone()), match_expressions: None }),
        ..Default::default()
    };
    let mut spread = (**p).clone();
    spread.spec.get_or_insert_with(Default::default).topology_spread_constraints =
        Some(vec![constraint("kubernetes.io/hostname", 3), constraint("topology.kubernetes.io/zone", 5)]);
    Arc::new(spread)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{json, Value};

    fn pod(v: Value) -> Arc<Pod> {
        Arc::new(serde_json::from_value(v).expect("a pod"))
    }

    #[test]
    fn default_spreading_for_controlled_pods_without_constraints() {
        let owner =
            json!([{"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "web", "uid": "u", "controller": true}]);
        let owned = pod(json!({"metadata": {"name": "w", "labels": {"app": "web"}, "ownerReferences": owner},
            "spec": {"containers": [{"name": "c"}]}}));
        let spread = with_default_spreading(&owned);
        let got = serde_json::to_value(&spread.spec.as_ref().unwrap().topology_spread_constraints).unwrap();
        let selector = json!({"matchLabels": {"app": "web"}});
        assert_eq!(
            got,
            json!([
                {"maxSkew": 3, "topologyKey": "kubernetes.io/hostname", "whenUnsatisfiable": "ScheduleAnyway",
                 "labelSelector": selector},
                {"maxSkew": 5, "topologyKey": "topology.kubernetes.io/zone", "whenUnsatisfiable": "ScheduleAnyway",
                 "labelSelector": selector}
            ])
        );
        // Anything else is left as it is, without a copy.
        let unowned = pod(json!({"metadata": {"name": "w", "labels": {"app": "web"}}}));
        assert!(Arc::ptr_eq(&with_default_spreading(&unowned), &unowned));
        let unlabelled = pod(json!({"metadata": {"name": "w", "ownerReferences": owner}}));
        assert!(Arc::ptr_eq(&with_default_spreading(&unlabelled), &unlabelled));
        let explicit = pod(json!({"metadata": {"name": "w", "labels": {"app": "web"}, "ownerReferences": owner},
            "spec": {"containers": [], "topologySpreadConstraints": [{"maxSkew": 1, "topologyKey": "zone",
                "whenUnsatisfiable": "DoNotSchedule"}]}}));
        assert!(Arc::ptr_eq(&with_default_spreading(&explicit), &explicit));
    }
}
