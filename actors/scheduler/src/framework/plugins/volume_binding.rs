//! VolumeBinding: a pod's claims decide where it can run. A bound claim's volume must be
//! reachable from the node (its node affinity: local volumes); an unbound claim of a
//! WaitForFirstConsumer class needs, on the node, an available volume that satisfies it, or
//! its provisioner there (a node advertises the provisioners it runs in the
//! `csi.volume.kubernetes.io/nodeid` annotation, as CSI node plugins do); an unbound claim of
//! an Immediate class waits for the binder. The scheduler's PreBind then names the chosen
//! node on the waiting claims (`volume.kubernetes.io/selected-node`) and binds the pod once
//! they are bound.

use std::sync::Arc;

use k8s_openapi::api::core::v1::{PersistentVolume, PersistentVolumeClaim, Pod};
use k8s_openapi::api::storage::v1::StorageClass;
use kubus_apimachinery::volume;
use kubus_apimachinery::{pod, ObjectExt};
use kubus_controller_runtime::Informer;

use crate::framework::{ClusterSnapshot, CycleState, FilterPlugin, NodeInfo, Plugin, PreFilterPlugin, Status};

pub const NAME: &str = "VolumeBinding";
pub const ERR_NODE_CONFLICT: &str = "node(s) had volume node affinity conflict";
pub const ERR_NO_VOLUME: &str = "node(s) didn't find available persistent volumes to bind";
pub const ERR_UNBOUND_IMMEDIATE: &str = "pod has unbound immediate PersistentVolumeClaims";
/// The annotation a node lists the volume drivers (provisioners) it runs in.
pub const NODE_DRIVERS: &str = "csi.volume.kubernetes.io/nodeid";

/// The caches VolumeBinding reads.
#[derive(Clone)]
pub struct VolumeListers {
    pub claims: Informer<PersistentVolumeClaim>,
    pub volumes: Informer<PersistentVolume>,
    pub classes: Informer<StorageClass>,
}

impl VolumeListers {
    /// The listers, with the volumes indexed by class (the candidates of a claim).
    pub fn new(
        claims: Informer<PersistentVolumeClaim>,
        volumes: Informer<PersistentVolume>,
        classes: Informer<StorageClass>,
    ) -> VolumeListers {
        volumes.add_index(volume::VOLUMES_BY_CLASS, volume::class_index);
        VolumeListers { claims, volumes, classes }
    }
}

/// What PreFilter found of the pod's claims.
#[derive(Clone)]
struct PodVolumes {
    bound: Vec<Arc<PersistentVolume>>,
    /// Claims to bind on the chosen node: their class's provisioner and the available volumes
    /// that satisfy them (found once per cycle, so Filter only checks node fit).
    waiting: Vec<(String, Vec<Arc<PersistentVolume>>)>,
}

pub struct VolumeBinding {
    pub listers: VolumeListers,
}

impl Plugin for VolumeBinding {
    fn name(&self) -> &'static str {
        NAME
    }
}

/// The claims a pod's volumes name.
pub fn claim_names(p: &Pod) -> Vec<String> {
    pod::spec(p)
        .volumes
        .iter()
        .flatten()
        .filter_map(|v| v.persistent_volume_claim.as_ref().map(|c| c.claim_name.clone()))
        .collect()
}

/// Whether a node runs the provisioner (its agent advertises it).
fn runs_driver(node: &NodeInfo, driver: &str) -> bool {
    node.node()
        .annotations()
        .get(NODE_DRIVERS)
        .and_then(|a| serde_json::from_str::<serde_json::Value>(a).ok())
        .is_some_and(|v| v.get(driver).is_some())
}

impl PreFilterPlugin for VolumeBinding {
    fn pre_filter(&self, state: &mut CycleState, p: &Pod, _snapshot: &ClusterSnapshot) -> Status {
        let names = claim_names(p);
        if names.is_empty() {
            return Status::Skip;
        }
        let mut found = PodVolumes { bound: Vec::new(), waiting: Vec::new() };
        for name in names {
            let Some(pvc) = self.listers.claims.get(p.namespace(), &name) else {
                return Status::unresolvable(format!("persistentvolumeclaim \"{name}\" not found"));
            };
            if pvc.is_deleting() {
                return Status::unresolvable(format!("persistentvolumeclaim \"{name}\" is being deleted"));
            }
            match volume::volume_name(&pvc) {
                Some(pv_name) => match self.listers.volumes.get("", pv_name) {
                    Some(pv) => found.bound.push(pv),
                    None => return Status::unresolvable(format!("pvc {name} bound to non-existent pv {pv_name}")),
                },
                None => {
                    let class = volume::claim_class(&pvc).and_then(|c| self.listers.classes.get("", c));
                    let wffc =
                        class.as_ref().and_then(|c| c.volume_binding_mode.as_deref()) == Some("WaitForFirstConsumer");
                    if !wffc {
                        return Status::unresolvable(ERR_UNBOUND_IMMEDIATE);
                    }
                    let provisioner = class.map(|c| c.provisioner.clone()).unwrap_or_default();
                    let class_name = volume::claim_class(&pvc).unwrap_or("");
                    let available = self
                        .listers
                        .volumes
                        .by_index(volume::VOLUMES_BY_CLASS, class_name)
                        .into_iter()
                        .filter(|pv| {
                            volume::claim_ref(pv).is_none() && !pv.is_deleting() && volume::satisfies(pv, &pvc)
                        })
                        .collect();
                    found.waiting.push((provisioner, available));
                }
            }
        }
        state.write(NAME, found);
        Status::Ok
    }
}

impl FilterPlugin for VolumeBinding {
    fn filter(&self, state: &CycleState, _p: &Pod, node: &NodeInfo) -> Status {
        let Some(found) = state.read::<PodVolumes>(NAME) else { return Status::Ok };
        if found.bound.iter().any(|pv| !volume::fits_node(pv, node)) {
            return Status::unresolvable(ERR_NODE_CONFLICT);
        }
        for (provisioner, available) in &found.waiting {
            let static_fit = available.iter().any(|pv| volume::fits_node(pv, node));
            if !static_fit && !runs_driver(node, provisioner) {
                return Status::unschedulable(ERR_NO_VOLUME);
            }
        }
        Status::Ok
    }
}

/// The claims of a pod that wait for a node (unbound, WaitForFirstConsumer), for PreBind.
pub fn waiting_claims(listers: &VolumeListers, p: &Pod) -> Vec<Arc<PersistentVolumeClaim>> {
    claim_names(p)
        .iter()
        .filter_map(|n| listers.claims.get(p.namespace(), n))
        .filter(|c| volume::volume_name(c).is_none())
        .collect()
}
