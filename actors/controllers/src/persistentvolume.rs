//! The persistent volume controller (upstream `pkg/controller/volume/persistentvolume`): binds
//! each claim to the smallest volume that satisfies it, or asks the class's provisioner for
//! one; claims of a WaitForFirstConsumer class wait until the scheduler has picked a node
//! (`volume.kubernetes.io/selected-node`). A claim without a class gets the default class
//! (upstream's retroactive assignment). A volume whose claim is gone is Released, and then
//! kept (Retain) or deleted (Delete: the node that provisioned it removes its directory and
//! the volume). Also the protection controllers: a claim being deleted keeps its finalizer
//! while a pod uses it, a volume being deleted while it is bound.

use futures::future::BoxFuture;
use k8s_openapi::api::core::v1::{Node, ObjectReference, PersistentVolume, PersistentVolumeClaim, Pod};
use k8s_openapi::api::storage::v1::StorageClass;
use kubus_apimachinery::volume::{
    self, BETA_STORAGE_PROVISIONER, BIND_COMPLETED, BOUND_BY_CONTROLLER, DEFAULT_CLASS, PROVISIONED_BY, SELECTED_NODE,
    STORAGE_PROVISIONER,
};
use kubus_apimachinery::{pod, ObjectExt, ObjectKey};
use kubus_controller_runtime::controller::{Action, Controller, Error, ReconcileResult, Reconciler};
use kubus_controller_runtime::events::EventType;
use kubus_controller_runtime::{Change, Client, Informer, InformerFactory, Recorder};
use serde_json::json;
use std::sync::Arc;

pub const WORKERS: usize = 2;
pub const PVC_PROTECTION: &str = "kubernetes.io/pvc-protection";
pub const PV_PROTECTION: &str = "kubernetes.io/pv-protection";
/// Pods by `<namespace>/<claim>` of each claim they use.
const PODS_BY_CLAIM: &str = "pod-claims";
/// Claims waiting for a volume (unbound, not being deleted), all under one key.
const UNBOUND_CLAIMS: &str = "pvc-unbound";

fn claims_of(p: &Pod) -> Vec<String> {
    pod::spec(p)
        .volumes
        .iter()
        .flatten()
        .filter_map(|v| v.persistent_volume_claim.as_ref())
        .map(|c| format!("{}/{}", p.namespace(), c.claim_name))
        .collect()
}

struct Informers {
    claims: Informer<PersistentVolumeClaim>,
    volumes: Informer<PersistentVolume>,
    classes: Informer<StorageClass>,
    pods: Informer<Pod>,
    nodes: Informer<Node>,
}

/// Runs the claim binder, the volume reclaimer and both protection controllers.
pub fn run(client: Client, factory: &InformerFactory, workers: usize) -> BoxFuture<'static, ()> {
    let inf = Arc::new(Informers {
        claims: factory.get::<PersistentVolumeClaim>(),
        volumes: factory.get::<PersistentVolume>(),
        classes: factory.get::<StorageClass>(),
        pods: factory.get::<Pod>(),
        nodes: factory.get::<Node>(),
    });
    inf.pods.add_index(PODS_BY_CLAIM, claims_of);
    inf.claims.add_index(UNBOUND_CLAIMS, |c: &PersistentVolumeClaim| {
        (volume::volume_name(c).is_none() && !c.is_deleting()).then(String::new).into_iter().collect()
    });
    inf.volumes.add_index(volume::VOLUMES_BY_CLASS, volume::class_index);
    let events = Recorder::new(client.clone(), "persistentvolume-controller");
    // A volume's change concerns its claim, and unbound claims that it may now serve.
    let volume_to_claims = {
        let claims = inf.claims.clone();
        move |change: &Change<PersistentVolume>| {
            let mut keys: Vec<ObjectKey> = claims.by_index(UNBOUND_CLAIMS, "").iter().map(|c| c.key()).collect();
            if let Change::Applied { new, .. } | Change::Deleted(new) = change {
                if let Some((ns, name, _)) = volume::claim_ref(new) {
                    keys.push((ns.to_string(), name.to_string()));
                }
            }
            keys.sort();
            keys.dedup();
            keys
        }
    };
    let class_to_claims = {
        let claims = inf.claims.clone();
        move |_: &Change<StorageClass>| claims.keys()
    };
    // A pod that stops using a claim may let a deleted claim go.
    let pod_to_claims = |change: &Change<Pod>| match change {
        Change::Applied { new, .. } | Change::Deleted(new) => claims_of(new)
            .into_iter()
            .filter_map(|k| k.split_once('/').map(|(ns, n)| (ns.to_string(), n.to_string())))
            .collect(),
        Change::Resynced => Vec::new(),
    };
    let claims = Controller::new("persistentvolume-claims", inf.claims.clone())
        .watches_changes(inf.volumes.clone(), volume_to_claims)
        .watches_changes(inf.classes.clone(), class_to_claims)
        .watches_changes(inf.pods.clone(), pod_to_claims)
        .workers(workers)
        .run(Arc::new(ClaimBinder { client: client.clone(), events: events.clone(), inf: inf.clone() }));
    let claim_to_volume = |change: &Change<PersistentVolumeClaim>| match change {
        Change::Applied { new, .. } | Change::Deleted(new) => {
            volume::volume_name(new).map(|n| vec![(String::new(), n.to_string())]).unwrap_or_default()
        }
        Change::Resynced => Vec::new(),
    };
    let volumes = Controller::new("persistentvolume-volumes", inf.volumes.clone())
        .watches_changes(inf.claims.clone(), claim_to_volume)
        .workers(workers)
        .run(Arc::new(VolumeReclaimer { client, events, inf }));
    Box::pin(async move {
        futures::future::join(claims, volumes).await;
    })
}

struct ClaimBinder {
    client: Client,
    events: Recorder,
    inf: Arc<Informers>,
}

fn claim_reference(pvc: &PersistentVolumeClaim) -> ObjectReference {
    ObjectReference {
        api_version: Some("v1".into()),
        kind: Some("PersistentVolumeClaim".into()),
        namespace: Some(pvc.namespace().to_string()),
        name: Some(pvc.name().to_string()),
        uid: Some(pvc.uid().to_string()),
        resource_version: pvc.metadata.resource_version.clone(),
        field_path: None,
    }
}

impl ClaimBinder {
    fn default_class(&self) -> Option<Arc<StorageClass>> {
        let mut defaults: Vec<Arc<StorageClass>> = self
            .inf
            .classes
            .list()
            .into_iter()
            .filter(|c| c.annotations().get(DEFAULT_CLASS).map(String::as_str) == Some("true"))
            .collect();
        // Several defaults: the newest, as upstream.
        defaults.sort_by_key(|c| c.metadata.creation_timestamp.as_ref().map(|t| t.0));
        defaults.pop()
    }

    async fn sync(&self, key: &ObjectKey) -> ReconcileResult {
        let Some(pvc) = self.inf.claims.get_key(key) else { return Ok(Action::Done) };
        if pvc.is_deleting() {
            return self.release_if_unused(&pvc).await;
        }
        if volume::claim_class(&pvc).is_none() {
            if let Some(class) = self.default_class() {
                let patch = json!({"metadata": {"resourceVersion": pvc.resource_version()},
                    "spec": {"storageClassName": class.name()}});
                return self.patch_claim(&pvc, &patch).await;
            }
        }
        if let Some(name) = volume::volume_name(&pvc) {
            return self.sync_bound(&pvc, name).await;
        }
        let class_name = volume::claim_class(&pvc).unwrap_or("");
        let class = (!class_name.is_empty()).then(|| self.inf.classes.get("", class_name)).flatten();
        let wait_for_consumer =
            class.as_ref().and_then(|c| c.volume_binding_mode.as_deref()) == Some("WaitForFirstConsumer");
        let selected = pvc.annotations().get(SELECTED_NODE).cloned();
        if wait_for_consumer && selected.is_none() {
            let msg = "waiting for first consumer to be created before binding";
            self.events.record(&*pvc, EventType::Normal, "WaitForFirstConsumer", msg).await;
            return Ok(Action::Done);
        }
        let node = selected.as_deref().and_then(|n| self.inf_node(n));
        let mut candidates: Vec<Arc<PersistentVolume>> = self
            .inf
            .volumes
            .by_index(volume::VOLUMES_BY_CLASS, class_name)
            .into_iter()
            .filter(|pv| !pv.is_deleting() && volume::satisfies(pv, &pvc))
            .filter(|pv| match volume::claim_ref(pv) {
                None => pv.status.as_ref().and_then(|s| s.phase.as_deref()).unwrap_or("Available") == "Available",
                Some(_) => volume::bound_to(pv, &pvc),
            })
            .filter(|pv| node.as_ref().is_none_or(|n| volume::fits_node(pv, &**n)))
            .collect();
        candidates.sort_by_key(|pv| volume::capacity(pv));
        if let Some(pv) = candidates.first() {
            return self.bind(pv, &pvc).await;
        }
        match class {
            Some(c) if !c.provisioner.is_empty() && c.provisioner != "kubernetes.io/no-provisioner" => {
                if pvc.annotations().get(STORAGE_PROVISIONER) != Some(&c.provisioner) {
                    let patch = json!({"metadata": {"annotations": {
                        STORAGE_PROVISIONER: c.provisioner, BETA_STORAGE_PROVISIONER: c.provisioner}}});
                    self.patch_claim(&pvc, &patch).await?;
                    let msg = format!(
                        "waiting for a volume to be created, either by external provisioner \"{}\" or manually created by system administrator",
                        c.provisioner
                    );
                    self.events.record(&*pvc, EventType::Normal, "ExternalProvisioning", &msg).await;
                }
            }
            Some(_) => {
                let msg = "no persistent volumes available for this claim and no storage class is set";
                self.events.record(&*pvc, EventType::Normal, "FailedBinding", msg).await;
            }
            None if class_name.is_empty() => {
                let msg = "no persistent volumes available for this claim and no storage class is set";
                self.events.record(&*pvc, EventType::Normal, "FailedBinding", msg).await;
            }
            None => {
                let msg = format!("storageclass.storage.k8s.io \"{class_name}\" not found");
                self.events.record(&*pvc, EventType::Warning, "ProvisioningFailed", &msg).await;
            }
        }
        Ok(Action::Done)
    }

    fn inf_node(&self, name: &str) -> Option<Arc<Node>> {
        self.inf.nodes.get("", name)
    }

    /// A bound claim: its volume must be bound to it, and its status say so.
    async fn sync_bound(&self, pvc: &PersistentVolumeClaim, name: &str) -> ReconcileResult {
        let Some(pv) = self.inf.volumes.get("", name) else {
            if pvc.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Bound") {
                let msg = "Bound claim has lost its PersistentVolume. Data on the volume is lost!";
                self.events.record(pvc, EventType::Warning, "ClaimLost", msg).await;
                self.set_claim_phase(pvc, "Lost", None).await?;
            }
            return Ok(Action::Done);
        };
        if volume::claim_ref(&pv).is_none() {
            // Half of a bind (the claim names the volume, the volume not yet the claim).
            return self.bind(&pv, pvc).await;
        }
        if !volume::bound_to(&pv, pvc) {
            let msg = "Two claims are bound to the same volume, this one is bound incorrectly";
            self.events.record(pvc, EventType::Warning, "ClaimMisbound", msg).await;
            return Ok(Action::Done);
        }
        self.set_volume_phase(&pv, "Bound").await?;
        self.set_claim_phase(pvc, "Bound", Some(&pv)).await?;
        Ok(Action::Done)
    }

    /// Binds both ways: the volume names the claim, then the claim the volume; each write loses
    /// to a concurrent one (resourceVersion), so two claims never get one volume.
    async fn bind(&self, pv: &PersistentVolume, pvc: &PersistentVolumeClaim) -> ReconcileResult {
        if volume::claim_ref(pv).is_none() {
            let patch = json!({"metadata": {"resourceVersion": pv.resource_version(),
                    "annotations": {BOUND_BY_CONTROLLER: "yes"}},
                "spec": {"claimRef": claim_reference(pvc)}});
            match self.client.merge_patch::<PersistentVolume>("", pv.name(), &patch).await {
                Ok(_) => {}
                Err(e) if e.is_conflict() || e.is_not_found() => return Ok(Action::Done),
                Err(e) => return Err(e.into()),
            }
        }
        self.set_volume_phase(pv, "Bound").await?;
        if volume::volume_name(pvc).is_none() {
            let patch = json!({"metadata": {"resourceVersion": pvc.resource_version(),
                    "annotations": {BIND_COMPLETED: "yes", BOUND_BY_CONTROLLER: "yes"}},
                "spec": {"volumeName": pv.name()}});
            match self.client.merge_patch::<PersistentVolumeClaim>(pvc.namespace(), pvc.name(), &patch).await {
                Ok(_) => {}
                Err(e) if e.is_conflict() || e.is_not_found() => return Ok(Action::Done),
                Err(e) => return Err(e.into()),
            }
        }
        self.set_claim_phase(pvc, "Bound", Some(pv)).await?;
        Ok(Action::Done)
    }

    async fn set_volume_phase(&self, pv: &PersistentVolume, phase: &str) -> Result<(), Error> {
        set_volume_phase(&self.client, pv, phase).await
    }

    async fn set_claim_phase(
        &self,
        pvc: &PersistentVolumeClaim,
        phase: &str,
        pv: Option<&PersistentVolume>,
    ) -> Result<(), Error> {
        let status = pvc.status.as_ref();
        let capacity = pv.and_then(|v| v.spec.as_ref()?.capacity.clone());
        let modes = pv.and_then(|v| v.spec.as_ref()?.access_modes.clone());
        let same = status.and_then(|s| s.phase.as_deref()) == Some(phase)
            && (pv.is_none()
                || (status.and_then(|s| s.capacity.clone()) == capacity
                    && status.and_then(|s| s.access_modes.clone()) == modes));
        if same {
            return Ok(());
        }
        let patch = json!({"status": {"phase": phase, "capacity": capacity, "accessModes": modes}});
        match self.client.merge_patch_status::<PersistentVolumeClaim>(pvc.namespace(), pvc.name(), &patch).await {
            Err(e) if !e.is_not_found() => Err(e.into()),
            _ => Ok(()),
        }
    }

    async fn patch_claim(&self, pvc: &PersistentVolumeClaim, patch: &serde_json::Value) -> ReconcileResult {
        match self.client.merge_patch::<PersistentVolumeClaim>(pvc.namespace(), pvc.name(), patch).await {
            Err(e) if !e.is_not_found() && !e.is_conflict() => Err(e.into()),
            _ => Ok(Action::Done),
        }
    }

    /// The pvc-protection controller: a claim being deleted goes once no live pod uses it.
    async fn release_if_unused(&self, pvc: &PersistentVolumeClaim) -> ReconcileResult {
        if !pvc.finalizers().iter().any(|f| f == PVC_PROTECTION) {
            return Ok(Action::Done);
        }
        let users = self.inf.pods.read(|c| c.by_index(PODS_BY_CLAIM, &format!("{}/{}", pvc.namespace(), pvc.name())));
        // Only pods placed on a node use it (upstream's podUsesPVC): an unscheduled pod waits
        // for the claim and must not keep it from going.
        if users.iter().any(|p| !pod::is_terminal(p) && pod::node_name(p).is_some()) {
            return Ok(Action::Done);
        }
        let rest: Vec<&String> = pvc.finalizers().iter().filter(|f| *f != PVC_PROTECTION).collect();
        let patch = json!({"metadata": {"finalizers": rest, "resourceVersion": pvc.resource_version()}});
        self.patch_claim(pvc, &patch).await
    }
}

async fn set_volume_phase(client: &Client, pv: &PersistentVolume, phase: &str) -> Result<(), Error> {
    if pv.status.as_ref().and_then(|s| s.phase.as_deref()) == Some(phase) {
        return Ok(());
    }
    let patch = json!({"status": {"phase": phase}});
    match client.merge_patch_status::<PersistentVolume>("", pv.name(), &patch).await {
        Err(e) if !e.is_not_found() => Err(e.into()),
        _ => Ok(()),
    }
}

impl Reconciler for ClaimBinder {
    type Error = Error;
    async fn reconcile(&self, key: &ObjectKey) -> ReconcileResult {
        self.sync(key).await
    }
}

struct VolumeReclaimer {
    client: Client,
    events: Recorder,
    inf: Arc<Informers>,
}

impl VolumeReclaimer {
    async fn sync(&self, key: &ObjectKey) -> ReconcileResult {
        let Some(pv) = self.inf.volumes.get_key(key) else { return Ok(Action::Done) };
        let claim = volume::claim_ref(&pv);
        let claim_alive = claim.is_some_and(|(ns, name, uid)| {
            self.inf.claims.get(ns, name).is_some_and(|c| uid.is_empty() || c.uid() == uid)
        });
        if pv.is_deleting() {
            // pv-protection: a volume goes once no claim holds it.
            if !claim_alive && pv.finalizers().iter().any(|f| f == PV_PROTECTION) {
                let rest: Vec<&String> = pv.finalizers().iter().filter(|f| *f != PV_PROTECTION).collect();
                let patch = json!({"metadata": {"finalizers": rest, "resourceVersion": pv.resource_version()}});
                match self.client.merge_patch::<PersistentVolume>("", pv.name(), &patch).await {
                    Err(e) if !e.is_not_found() && !e.is_conflict() => return Err(e.into()),
                    _ => {}
                }
            }
            return Ok(Action::Done);
        }
        match claim {
            None => set_volume_phase(&self.client, &pv, "Available").await?,
            Some(_) if claim_alive => {}
            // Pre-bound by an administrator to a claim not made yet: it waits for it.
            Some((_, _, "")) => set_volume_phase(&self.client, &pv, "Available").await?,
            Some(_) => {
                let phase = pv.status.as_ref().and_then(|s| s.phase.as_deref()).unwrap_or("");
                if phase == "Released" || phase == "Failed" {
                    return Ok(Action::Done);
                }
                set_volume_phase(&self.client, &pv, "Released").await?;
                let policy =
                    pv.spec.as_ref().and_then(|s| s.persistent_volume_reclaim_policy.as_deref()).unwrap_or("Retain");
                let provisioned = pv.annotations().get(PROVISIONED_BY).is_some();
                if policy == "Delete" && !provisioned {
                    let msg = format!(
                        "error getting deleter volume plugin for volume \"{}\": no deletable volume plugin matched",
                        pv.name()
                    );
                    self.events.record(&*pv, EventType::Warning, "VolumeFailedDelete", &msg).await;
                    set_volume_phase(&self.client, &pv, "Failed").await?;
                }
                // A provisioned volume is deleted by its provisioner (the node agent for
                // local-path volumes).
            }
        }
        Ok(Action::Done)
    }
}

impl Reconciler for VolumeReclaimer {
    type Error = Error;
    async fn reconcile(&self, key: &ObjectKey) -> ReconcileResult {
        self.sync(key).await
    }
}
