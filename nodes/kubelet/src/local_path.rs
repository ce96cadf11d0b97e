//! The node's local-path provisioner: volumes of the default StorageClass are directories on
//! the node a pod lands on (the role rancher's local-path-provisioner plays in k3s). The node
//! agent owns its disk, so it provisions for the claims the scheduler selected it for
//! (`volume.kubernetes.io/selected-node`): a directory under `<state>/volumes` and a local
//! PersistentVolume pre-bound to the claim, whose node affinity keeps the claim's pods here.
//! When such a volume is Released with reclaim policy Delete, the node removes the directory
//! and the volume.

use futures::future::BoxFuture;
use k8s_openapi::api::core::v1::{
    LocalVolumeSource, NodeSelector, NodeSelectorRequirement, NodeSelectorTerm, ObjectReference, PersistentVolume,
    PersistentVolumeClaim, PersistentVolumeSpec, VolumeNodeAffinity,
};
use k8s_openapi::api::storage::v1::StorageClass;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kubus_apimachinery::volume::{self, LOCAL_PATH_PROVISIONER, PROVISIONED_BY, SELECTED_NODE, STORAGE_PROVISIONER};
use kubus_apimachinery::{ObjectExt, ObjectKey};
use kubus_controller_runtime::controller::{Action, Controller, Error, ReconcileResult, Reconciler};
use kubus_controller_runtime::events::EventType;
use kubus_controller_runtime::{Change, Client, DeleteParams, Informer, Recorder};
use std::path::PathBuf;
use std::sync::Arc;

/// The name of the volume provisioned for a claim (upstream's `pvc-<claim uid>`).
pub fn volume_name(pvc: &PersistentVolumeClaim) -> String {
    format!("pvc-{}", pvc.uid())
}

pub struct LocalPathProvisioner {
    node: String,
    root: PathBuf,
    client: Client,
    events: Recorder,
    claims: Informer<PersistentVolumeClaim>,
    volumes: Informer<PersistentVolume>,
    classes: Informer<StorageClass>,
}

impl LocalPathProvisioner {
    /// Runs the provisioner of `node`, with directories under `state_dir/volumes`.
    pub fn run(
        node: String,
        state_dir: PathBuf,
        client: Client,
        claims: Informer<PersistentVolumeClaim>,
        volumes: Informer<PersistentVolume>,
        classes: Informer<StorageClass>,
    ) -> BoxFuture<'static, ()> {
        let events = Recorder::new(client.clone(), "kubus.io/local-path");
        let this = Arc::new(LocalPathProvisioner {
            node,
            root: state_dir.join("volumes"),
            client,
            events,
            claims: claims.clone(),
            volumes: volumes.clone(),
            classes,
        });
        // Released volumes are keyed as claims would be: ("", "pv/<name>").
        let volume_keys = |change: &Change<PersistentVolume>| match change {
            Change::Applied { new, .. } => vec![(String::new(), format!("pv/{}", new.name()))],
            _ => Vec::new(),
        };
        Box::pin(
            Controller::new("local-path-provisioner", claims)
                .watches_changes(volumes, volume_keys)
                .workers(2)
                .run(this),
        )
    }

    fn mine(&self, pvc: &PersistentVolumeClaim) -> bool {
        let a = pvc.annotations();
        a.get(STORAGE_PROVISIONER).map(String::as_str) == Some(LOCAL_PATH_PROVISIONER)
            && a.get(SELECTED_NODE) == Some(&self.node)
    }

    fn dir_of(&self, pvc: &PersistentVolumeClaim) -> PathBuf {
        self.root.join(format!("{}_{}_{}", volume_name(pvc), pvc.namespace(), pvc.name()))
    }

    async fn provision(&self, pvc: &PersistentVolumeClaim) -> ReconcileResult {
        if pvc.is_deleting() || volume::volume_name(pvc).is_some() || !self.mine(pvc) {
            return Ok(Action::Done);
        }
        let name = volume_name(pvc);
        if self.volumes.get("", &name).is_some() {
            return Ok(Action::Done);
        }
        let class = volume::claim_class(pvc).and_then(|c| self.classes.get("", c));
        let dir = self.dir_of(pvc);
        if let Err(e) = std::fs::create_dir_all(&dir).and_then(|()| {
            use std::os::unix::fs::PermissionsExt;
            // Any user of any pod may write, as upstream's local-path volumes.
            std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o777))
        }) {
            let msg = format!(
                "failed to provision volume with StorageClass \"{}\": {e}",
                volume::claim_class(pvc).unwrap_or("")
            );
            self.events.record(pvc, EventType::Warning, "ProvisioningFailed", &msg).await;
            return Err(Error::InvalidObject(msg));
        }
        let spec = pvc.spec.clone().unwrap_or_default();
        let storage = spec.resources.as_ref().and_then(|r| r.requests.as_ref()?.get("storage").cloned());
        let pv = PersistentVolume {
            metadata: ObjectMeta {
                name: Some(name.clone()),
                annotations: Some([(PROVISIONED_BY.to_string(), LOCAL_PATH_PROVISIONER.to_string())].into()),
                ..Default::default()
            },
            spec: Some(PersistentVolumeSpec {
                capacity: storage.map(|q| [("storage".to_string(), q)].into()),
                access_modes: spec.access_modes.clone(),
                persistent_volume_reclaim_policy: Some(
                    class.as_ref().and_then(|c| c.reclaim_policy.clone()).unwrap_or_else(|| "Delete".into()),
                ),
                storage_class_name: spec.storage_class_name.clone(),
                volume_mode: spec.volume_mode.clone(),
                local: Some(LocalVolumeSource { path: dir.display().to_string(), fs_type: None }),
                node_affinity: Some(VolumeNodeAffinity {
                    required: Some(NodeSelector {
                        node_selector_terms: vec![NodeSelectorTerm {
                            match_expressions: Some(vec![NodeSelectorRequirement {
                                key: "kubernetes.io/hostname".into(),
                                operator: "In".into(),
                                values: Some(vec![self.node.clone()]),
                            }]),
                            match_fields: None,
                        }],
                    }),
                }),
                // Pre-bound, as provisioners do: no other claim can take it.
                claim_ref: Some(ObjectReference {
                    api_version: Some("v1".into()),
                    kind: Some("PersistentVolumeClaim".into()),
                    namespace: Some(pvc.namespace().to_string()),
                    name: Some(pvc.name().to_string()),
                    uid: Some(pvc.uid().to_string()),
                    resource_version: pvc.metadata.resource_version.clone(),
                    field_path: None,
                }),
                ..Default::default()
            }),
            status: None,
        };
        match self.client.create(&pv).await {
            Ok(_) => {
                let msg = format!("Successfully provisioned volume {name}");
                self.events.record(pvc, EventType::Normal, "ProvisioningSucceeded", &msg).await;
                Ok(Action::Done)
            }
            Err(e) if e.is_already_exists() => Ok(Action::Done),
            Err(e) => Err(e.into()),
        }
    }

    /// Deletes a released volume of this node whose policy is Delete, directory first.
    async fn reclaim(&self, name: &str) -> ReconcileResult {
        let Some(pv) = self.volumes.get("", name) else { return Ok(Action::Done) };
        let provisioned = pv.annotations().get(PROVISIONED_BY).map(String::as_str) == Some(LOCAL_PATH_PROVISIONER);
        let released = pv.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Released");
        let delete = pv.spec.as_ref().and_then(|s| s.persistent_volume_reclaim_policy.as_deref()) == Some("Delete");
        // Only this node's volumes: its node affinity names it, and the directory is under this
        // node's root (a path compared by components, so `..` cannot leave it).
        let this_node = pv.spec.as_ref().and_then(|s| s.node_affinity.as_ref()?.required.as_ref()).is_some_and(|r| {
            r.node_selector_terms.iter().any(|t| {
                t.match_expressions
                    .iter()
                    .flatten()
                    .any(|e| e.key == "kubernetes.io/hostname" && e.values.iter().flatten().any(|v| *v == self.node))
            })
        });
        let under_root = volume::host_path(&pv).is_some_and(|p| {
            let p = std::path::Path::new(p);
            p.starts_with(&self.root) && !p.components().any(|c| c == std::path::Component::ParentDir)
        });
        let here = this_node && under_root;
        if !(provisioned && released && delete && here) || pv.is_deleting() {
            return Ok(Action::Done);
        }
        if let Some(path) = volume::host_path(&pv) {
            match std::fs::remove_dir_all(path) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => {
                    let msg = format!("failed to delete volume {name}: {e}");
                    self.events.record(&*pv, EventType::Warning, "VolumeFailedDelete", &msg).await;
                    return Err(Error::InvalidObject(msg));
                }
            }
        }
        match self.client.delete::<PersistentVolume>("", name, &DeleteParams::default()).await {
            Err(e) if !e.is_not_found() => Err(e.into()),
            _ => Ok(Action::Done),
        }
    }
}

impl Reconciler for LocalPathProvisioner {
    type Error = Error;
    async fn reconcile(&self, key: &ObjectKey) -> ReconcileResult {
        if let Some(pv) = key.1.strip_prefix("pv/").filter(|_| key.0.is_empty()) {
            return self.reclaim(pv).await;
        }
        match self.claims.get_key(key) {
            Some(pvc) => self.provision(&pvc).await,
            None => Ok(Action::Done),
        }
    }
}
