//! Persistent volumes and claims as every component reads them (upstream's `volume/util` and
//! the binder's `findMatchingVolume`): the PV controller binds and provisions, the scheduler
//! checks where a pod's volumes can be, and the node mounts them, from the same rules.

use crate::quantity::parse_quantity;
use crate::selector::node::{NodeFacts, NodeSelectorTerm};
use crate::selector::LabelSelector;
use crate::ObjectExt;
use k8s_openapi::api::core::v1::{PersistentVolume, PersistentVolumeClaim};

/// The default StorageClass every cluster starts with, and its provisioner: directories on
/// the node a pod lands on, made by that node's agent.
pub const LOCAL_PATH_CLASS: &str = "local-path";
pub const LOCAL_PATH_PROVISIONER: &str = "kubus.io/local-path";

/// Annotations upstream's binder, scheduler and provisioners share.
pub const DEFAULT_CLASS: &str = "storageclass.kubernetes.io/is-default-class";
pub const SELECTED_NODE: &str = "volume.kubernetes.io/selected-node";
pub const STORAGE_PROVISIONER: &str = "volume.kubernetes.io/storage-provisioner";
pub const BETA_STORAGE_PROVISIONER: &str = "volume.beta.kubernetes.io/storage-provisioner";
pub const BIND_COMPLETED: &str = "pv.kubernetes.io/bind-completed";
pub const BOUND_BY_CONTROLLER: &str = "pv.kubernetes.io/bound-by-controller";
pub const PROVISIONED_BY: &str = "pv.kubernetes.io/provisioned-by";

/// The claim's class: None when it names none (it may get the default one), Some("") when it
/// asks for volumes without a class.
pub fn claim_class(pvc: &PersistentVolumeClaim) -> Option<&str> {
    pvc.spec.as_ref()?.storage_class_name.as_deref()
}

pub fn volume_class(pv: &PersistentVolume) -> &str {
    pv.spec.as_ref().and_then(|s| s.storage_class_name.as_deref()).unwrap_or("")
}

/// The informer index of volumes by storage class ("" for none), shared by the PV controller
/// and the scheduler's VolumeBinding: a claim only ever binds within its class.
pub const VOLUMES_BY_CLASS: &str = "pv-class";

/// The key of a volume in [`VOLUMES_BY_CLASS`].
pub fn class_index(pv: &PersistentVolume) -> Vec<String> {
    vec![volume_class(pv).to_string()]
}

/// Bytes the claim asks for.
pub fn requested(pvc: &PersistentVolumeClaim) -> i128 {
    pvc.spec
        .as_ref()
        .and_then(|s| s.resources.as_ref()?.requests.as_ref()?.get("storage"))
        .and_then(|q| parse_quantity(&q.0).ok())
        .map_or(0, |q| q.value())
}

/// Bytes the volume holds.
pub fn capacity(pv: &PersistentVolume) -> i128 {
    pv.spec
        .as_ref()
        .and_then(|s| s.capacity.as_ref()?.get("storage"))
        .and_then(|q| parse_quantity(&q.0).ok())
        .map_or(0, |q| q.value())
}

fn modes(list: Option<&Vec<String>>) -> &[String] {
    list.map(Vec::as_slice).unwrap_or(&[])
}

/// Whether the volume could serve the claim (class, access modes, size, volume mode and the
/// claim's selector), ignoring whether either is bound.
pub fn satisfies(pv: &PersistentVolume, pvc: &PersistentVolumeClaim) -> bool {
    let (Some(vs), Some(cs)) = (pv.spec.as_ref(), pvc.spec.as_ref()) else { return false };
    let class_ok = claim_class(pvc).unwrap_or("") == volume_class(pv);
    let pv_modes = modes(vs.access_modes.as_ref());
    let modes_ok = modes(cs.access_modes.as_ref()).iter().all(|m| pv_modes.contains(m));
    let mode = |m: Option<&String>| m.map(String::as_str).unwrap_or("Filesystem").to_string();
    let volume_mode_ok = mode(vs.volume_mode.as_ref()) == mode(cs.volume_mode.as_ref());
    let selector_ok = match &cs.selector {
        None => true,
        Some(sel) => LabelSelector::from_typed(Some(sel)).is_ok_and(|s| s.matches_labels(pv.labels())),
    };
    class_ok && modes_ok && volume_mode_ok && selector_ok && capacity(pv) >= requested(pvc)
}

/// Whether a pod on `node` can use the volume: its required node affinity (local volumes).
pub fn fits_node(pv: &PersistentVolume, node: &impl NodeFacts) -> bool {
    let required = pv.spec.as_ref().and_then(|s| s.node_affinity.as_ref()?.required.as_ref());
    match required {
        None => true,
        Some(sel) => sel.node_selector_terms.iter().any(|t| NodeSelectorTerm::from_typed(t).matches(node)),
    }
}

/// The claim a volume is bound (or being bound) to: namespace, name, uid.
pub fn claim_ref(pv: &PersistentVolume) -> Option<(&str, &str, &str)> {
    let r = pv.spec.as_ref()?.claim_ref.as_ref()?;
    Some((r.namespace.as_deref()?, r.name.as_deref()?, r.uid.as_deref().unwrap_or("")))
}

/// Whether the volume is bound to exactly this claim.
pub fn bound_to(pv: &PersistentVolume, pvc: &PersistentVolumeClaim) -> bool {
    claim_ref(pv).is_some_and(|(ns, name, uid)| {
        ns == pvc.namespace() && name == pvc.name() && (uid.is_empty() || uid == pvc.uid())
    })
}

/// The volume a claim is bound to, if any.
pub fn volume_name(pvc: &PersistentVolumeClaim) -> Option<&str> {
    pvc.spec.as_ref()?.volume_name.as_deref().filter(|n| !n.is_empty())
}

/// The host directory a node mounts for the volume (local and hostPath volumes).
pub fn host_path(pv: &PersistentVolume) -> Option<&str> {
    let spec = pv.spec.as_ref()?;
    spec.local.as_ref().map(|l| l.path.as_str()).or_else(|| spec.host_path.as_ref().map(|h| h.path.as_str()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{Node, PersistentVolumeClaimSpec, VolumeResourceRequirements};
    use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
    use serde_json::json;

    fn pv(v: serde_json::Value) -> PersistentVolume {
        serde_json::from_value(v).unwrap()
    }

    fn pvc(size: &str, class: Option<&str>, modes: &[&str]) -> PersistentVolumeClaim {
        PersistentVolumeClaim {
            spec: Some(PersistentVolumeClaimSpec {
                storage_class_name: class.map(String::from),
                access_modes: Some(modes.iter().map(|m| m.to_string()).collect()),
                resources: Some(VolumeResourceRequirements {
                    requests: Some([("storage".to_string(), Quantity(size.into()))].into()),
                    limits: None,
                }),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    #[test]
    fn volumes_serve_claims_of_their_class_size_and_modes() {
        let v = pv(json!({"metadata": {"name": "a"}, "spec": {"capacity": {"storage": "2Gi"},
            "accessModes": ["ReadWriteOnce", "ReadOnlyMany"], "storageClassName": "fast", "hostPath": {"path": "/x"}}}));
        assert!(satisfies(&v, &pvc("1Gi", Some("fast"), &["ReadWriteOnce"])));
        assert!(satisfies(&v, &pvc("2Gi", Some("fast"), &["ReadOnlyMany", "ReadWriteOnce"])));
        assert!(!satisfies(&v, &pvc("3Gi", Some("fast"), &["ReadWriteOnce"])), "too small");
        assert!(!satisfies(&v, &pvc("1Gi", Some("slow"), &["ReadWriteOnce"])), "other class");
        assert!(!satisfies(&v, &pvc("1Gi", None, &["ReadWriteOnce"])), "no class: only class-less volumes");
        assert!(!satisfies(&v, &pvc("1Gi", Some("fast"), &["ReadWriteMany"])), "mode");
    }

    #[test]
    fn local_volumes_fit_their_node_only() {
        let v = pv(json!({"metadata": {"name": "a"}, "spec": {"local": {"path": "/d"},
            "nodeAffinity": {"required": {"nodeSelectorTerms": [{"matchExpressions": [
                {"key": "kubernetes.io/hostname", "operator": "In", "values": ["n1"]}]}]}}}}));
        let node = |name: &str| -> Node {
            serde_json::from_value(json!({"metadata": {"name": name, "labels": {"kubernetes.io/hostname": name}}}))
                .unwrap()
        };
        assert!(fits_node(&v, &node("n1")));
        assert!(!fits_node(&v, &node("n2")));
        assert_eq!(host_path(&v), Some("/d"));
    }
}
