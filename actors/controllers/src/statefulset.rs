//! The StatefulSet controller (upstream `pkg/controller/statefulset`): pods with stable names
//! (`<set>-<ordinal>`), stable network identities (hostname = pod name, subdomain = the
//! governing headless Service, so `web-0.web.<ns>.svc.cluster.local` resolves) and stable
//! storage (a claim per volumeClaimTemplate and ordinal, `<template>-<set>-<ordinal>`, that
//! stays with the ordinal across pod replacements).
//!
//! OrderedReady creates pods one ordinal at a time, each after the previous is Running and
//! Ready, and removes them from the highest ordinal down; Parallel does both at once.
//! RollingUpdate replaces pods at or above the partition from the highest ordinal down, one
//! at a time, each after the cluster is healthy again; OnDelete waits for the user. Claims of
//! removed ordinals stay or go by persistentVolumeClaimRetentionPolicy, through owner
//! references the garbage collector follows (as upstream). Template history is kept as
//! ControllerRevisions ([`crate::history`]).

use crate::adoption::{self, claimants, selector_of, selects};
use crate::history::{self, REVISION_HASH};
use futures::future::BoxFuture;
use k8s_openapi::api::apps::v1::{ControllerRevision, StatefulSet, StatefulSetSpec, StatefulSetStatus};
use k8s_openapi::api::core::v1::{
    PersistentVolumeClaim, PersistentVolumeClaimVolumeSource, Pod, PodTemplateSpec, Volume,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use kubus_apimachinery::meta::{controller_ref, refers_to};
use kubus_apimachinery::{pod, ObjectExt, ObjectKey};
use kubus_controller_runtime::controller::{Action, Controller, Error, ReconcileResult, Reconciler};
use kubus_controller_runtime::events::EventType;
use kubus_controller_runtime::{Client, DeleteParams, Informer, InformerFactory, Recorder};
use serde_json::json;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

/// Upstream's `--concurrent-statefulset-syncs` default.
pub const WORKERS: usize = 5;
pub const POD_NAME_LABEL: &str = "statefulset.kubernetes.io/pod-name";
pub const POD_INDEX_LABEL: &str = "apps.kubernetes.io/pod-index";
const COALESCE: Duration = Duration::from_millis(100);

pub fn run(client: Client, factory: &InformerFactory, workers: usize) -> BoxFuture<'static, ()> {
    let sets = factory.get::<StatefulSet>();
    let (pods, claims, revisions) =
        (factory.get::<Pod>(), factory.get::<PersistentVolumeClaim>(), factory.get::<ControllerRevision>());
    adoption::index_orphans(&pods);
    // Its own pods, and orphans it may adopt (a set deleted with --cascade=orphan and made
    // again finds its pods by name and selector).
    let on_pod = {
        let sets = sets.clone();
        move |p: &Pod| claimants(&sets, p, |s: &StatefulSet| selector_of(s.spec.as_ref().map(|s| &s.selector)))
    };
    let ctrl = Controller::new("statefulset", sets.clone())
        .watches(pods.clone(), on_pod)
        .owns(revisions.clone())
        .coalesce(COALESCE)
        .workers(workers);
    let events = Recorder::new(client.clone(), "statefulset-controller");
    ctrl.run(Arc::new(StatefulSetController { client, events, sets, pods, claims, revisions }))
}

struct StatefulSetController {
    client: Client,
    events: Recorder,
    sets: Informer<StatefulSet>,
    pods: Informer<Pod>,
    claims: Informer<PersistentVolumeClaim>,
    revisions: Informer<ControllerRevision>,
}

/// The ordinal of a pod of the set, from its name.
pub fn ordinal(set: &str, pod: &str) -> Option<i32> {
    pod.strip_prefix(set)?.strip_prefix('-')?.parse().ok().filter(|n: &i32| *n >= 0)
}

/// The claim of a volumeClaimTemplate for an ordinal.
pub fn claim_name(template: &str, set: &str, ordinal: i32) -> String {
    format!("{template}-{set}-{ordinal}")
}

/// Running and available (ready for minReadySeconds), not being deleted: what OrderedReady
/// and rolling updates wait for.
fn healthy(p: &Pod, min_ready: i32, now: SystemTime) -> bool {
    pod::phase(p) == "Running" && pod::is_available(p, min_ready, now) && !p.is_deleting()
}

/// The pod of `ordinal` from `template` (a revision's), with its identity and claims.
pub fn pod_for(set: &StatefulSet, template: &PodTemplateSpec, revision: &str, ordinal: i32) -> Pod {
    let spec = set.spec.clone().unwrap_or_default();
    let name = format!("{}-{ordinal}", set.name());
    let mut metadata = template.metadata.clone().unwrap_or_default();
    metadata.name = Some(name.clone());
    metadata.generate_name = None;
    metadata.namespace = Some(set.namespace().to_string());
    metadata.owner_references = Some(vec![controller_ref(set)]);
    let labels = metadata.labels.get_or_insert_with(BTreeMap::new);
    labels.insert(REVISION_HASH.into(), revision.to_string());
    labels.insert(POD_NAME_LABEL.into(), name.clone());
    labels.insert(POD_INDEX_LABEL.into(), ordinal.to_string());
    let mut pod_spec = template.spec.clone().unwrap_or_default();
    pod_spec.hostname = Some(name.clone());
    if !spec.service_name.is_empty() {
        pod_spec.subdomain = Some(spec.service_name.clone());
    }
    let volumes = pod_spec.volumes.get_or_insert_with(Vec::new);
    for t in spec.volume_claim_templates.iter().flatten() {
        let tname = t.metadata.name.clone().unwrap_or_default();
        volumes.retain(|v| v.name != tname);
        volumes.push(Volume {
            name: tname.clone(),
            persistent_volume_claim: Some(PersistentVolumeClaimVolumeSource {
                claim_name: claim_name(&tname, set.name(), ordinal),
                read_only: None,
            }),
            ..Default::default()
        });
    }
    Pod { metadata, spec: Some(pod_spec), status: None }
}

fn retention(spec: &StatefulSetSpec) -> (bool, bool) {
    let policy = spec.persistent_volume_claim_retention_policy.as_ref();
    let delete = |v: Option<&String>| v.map(String::as_str) == Some("Delete");
    (delete(policy.and_then(|p| p.when_deleted.as_ref())), delete(policy.and_then(|p| p.when_scaled.as_ref())))
}

impl StatefulSetController {
    async fn sync(&self, key: &ObjectKey) -> ReconcileResult {
        let Some(set) = self.sets.get_key(key) else { return Ok(Action::Done) };
        if set.is_deleting() {
            return Ok(Action::Done);
        }
        let spec = set.spec.clone().unwrap_or_default();
        let selector = selector_of(Some(&spec.selector));
        let collisions = set.status.as_ref().and_then(|s| s.collision_count).unwrap_or(0);
        let revisions = history::owned(&self.revisions, &*set);
        let labels = spec.template.metadata.as_ref().and_then(|m| m.labels.clone()).unwrap_or_default();
        let (update_rev, _) =
            history::ensure_current(&self.client, &revisions, &*set, &spec.template, &labels, collisions).await?;
        let update_name = update_rev.name().to_string();
        let current_name =
            set.status.as_ref().and_then(|s| s.current_revision.clone()).unwrap_or_else(|| update_name.clone());
        let revisions = history::owned(&self.revisions, &*set);
        let current_template = revisions
            .iter()
            .find(|r| r.name() == current_name)
            .and_then(|r| history::template_of(r))
            .unwrap_or_else(|| spec.template.clone());

        for orphan in adoption::orphans(&self.pods, set.namespace(), &selector) {
            if ordinal(set.name(), orphan.name()).is_some() && pod::is_active(&orphan) {
                let patch = adoption::adopt_patch(&*orphan, &*set);
                match self.client.merge_patch::<Pod>(orphan.namespace(), orphan.name(), &patch).await {
                    Err(e) if !e.is_not_found() && !e.is_conflict() => return Err(e.into()),
                    _ => {}
                }
            }
        }
        let min_ready = spec.min_ready_seconds.unwrap_or(0);
        let now = SystemTime::now();
        let healthy = |p: &Pod| healthy(p, min_ready, now);
        let mut by_ordinal: BTreeMap<i32, Arc<Pod>> = BTreeMap::new();
        for p in self.pods.controlled_by(set.uid()) {
            if !p.controller_ref().is_some_and(refers_to::<StatefulSet>) || !selects(&selector, p.labels()) {
                continue;
            }
            if let Some(n) = ordinal(set.name(), p.name()) {
                by_ordinal.insert(n, p);
            }
        }
        let replicas = spec.replicas.unwrap_or(1).max(0);
        let ordered = spec.pod_management_policy.as_deref() != Some("Parallel");
        let rolling = spec.update_strategy.as_ref().and_then(|s| s.type_.as_deref()) != Some("OnDelete");
        let partition =
            spec.update_strategy.as_ref().and_then(|s| s.rolling_update.as_ref()?.partition).unwrap_or(0).max(0);
        let (delete_with_set, delete_when_scaled) = retention(&spec);
        let status = self.status(&set, &by_ordinal, &current_name, &update_name, replicas, partition, rolling);

        // Failed pods are replaced.
        for p in by_ordinal.values().filter(|p| pod::phase(p) == "Failed" && !p.is_deleting()) {
            self.delete_pod(&set, p).await?;
        }

        // Pods for every ordinal below replicas, in order.
        let mut waiting = false;
        for n in 0..replicas {
            match by_ordinal.get(&n) {
                None => {
                    let (template, revision) = if rolling && n < partition {
                        (&current_template, current_name.as_str())
                    } else {
                        (&spec.template, update_name.as_str())
                    };
                    let pod = pod_for(&set, template, revision, n);
                    self.ensure_claims(&set, &pod, n, delete_with_set).await?;
                    self.create_pod(&set, &pod).await?;
                    if ordered {
                        waiting = true;
                        break;
                    }
                }
                Some(p) if ordered && !healthy(p) => {
                    waiting = true;
                    break;
                }
                Some(_) => {}
            }
        }

        // Ordinals past replicas go, highest first; OrderedReady one at a time, and only while
        // the rest are healthy.
        let condemned: Vec<&Arc<Pod>> = by_ordinal.range(replicas..).rev().map(|(_, p)| p).collect();
        if !waiting {
            for p in &condemned {
                if p.is_deleting() {
                    if ordered {
                        waiting = true;
                        break;
                    }
                    continue;
                }
                if ordered && by_ordinal.range(..replicas).any(|(_, q)| !healthy(q)) {
                    waiting = true;
                    break;
                }
                if delete_when_scaled {
                    self.hand_claims_to(&set, p).await?;
                }
                self.delete_pod(&set, p).await?;
                if ordered {
                    waiting = true;
                    break;
                }
            }
        }

        // A rolling update replaces one outdated pod at a time, highest ordinal first, while
        // every pod below replicas is healthy.
        if rolling && !waiting && condemned.is_empty() {
            let all_healthy = (0..replicas).all(|n| by_ordinal.get(&n).is_some_and(|p| healthy(p)));
            if all_healthy {
                let outdated = (partition..replicas)
                    .rev()
                    .filter_map(|n| by_ordinal.get(&n))
                    .find(|p| p.labels().get(REVISION_HASH) != Some(&update_name));
                if let Some(p) = outdated {
                    self.delete_pod(&set, p).await?;
                }
            }
        }

        let in_use = by_ordinal.values().filter_map(|p| p.labels().get(REVISION_HASH).cloned()).collect();
        let limit = spec.revision_history_limit.unwrap_or(10);
        history::prune(&self.client, &revisions, &update_name, &in_use, limit).await?;
        if set.status.as_ref() != Some(&status) {
            let patch = json!({"status": status});
            match self.client.merge_patch_status::<StatefulSet>(set.namespace(), set.name(), &patch).await {
                Err(e) if !e.is_not_found() => return Err(e.into()),
                _ => {}
            }
        }
        // Availability after minReadySeconds is a matter of time, not of an event.
        let next = by_ordinal.values().filter_map(|p| pod::available_in(p, min_ready, now)).min();
        Ok(next.map_or(Action::Done, Action::RequeueAfter))
    }

    #[allow(clippy::too_many_arguments)]
    fn status(
        &self,
        set: &StatefulSet,
        pods: &BTreeMap<i32, Arc<Pod>>,
        current: &str,
        update: &str,
        replicas: i32,
        partition: i32,
        rolling: bool,
    ) -> StatefulSetStatus {
        let now = SystemTime::now();
        let min_ready = set.spec.as_ref().and_then(|s| s.min_ready_seconds).unwrap_or(0);
        let live: Vec<&Arc<Pod>> = pods.values().filter(|p| !p.is_deleting()).collect();
        let count = |f: &dyn Fn(&Pod) -> bool| live.iter().filter(|p| f(p)).count() as i32;
        let rev = |p: &Pod| p.labels().get(REVISION_HASH).cloned().unwrap_or_default();
        let updated = count(&|p| rev(p) == update);
        // The update is complete once every wanted pod runs it (and none above partition lags):
        // then the update revision becomes the current one.
        let done = updated == replicas && live.len() as i32 == replicas && (!rolling || partition == 0);
        let current = if done { update.to_string() } else { current.to_string() };
        StatefulSetStatus {
            observed_generation: set.metadata.generation,
            replicas: live.len() as i32,
            ready_replicas: Some(count(&|p| pod::is_ready(p))),
            available_replicas: Some(count(&|p| pod::is_available(p, min_ready, now))),
            current_replicas: Some(count(&|p| rev(p) == current)),
            updated_replicas: Some(updated),
            current_revision: Some(current),
            update_revision: Some(update.to_string()),
            collision_count: set.status.as_ref().and_then(|s| s.collision_count),
            conditions: set.status.as_ref().and_then(|s| s.conditions.clone()),
        }
    }

    /// Creates the ordinal's missing claims; with whenDeleted Delete they are owned by the set
    /// (the garbage collector removes them with it).
    async fn ensure_claims(&self, set: &StatefulSet, pod: &Pod, n: i32, owned: bool) -> Result<(), Error> {
        let spec = set.spec.as_ref();
        for t in spec.and_then(|s| s.volume_claim_templates.as_ref()).into_iter().flatten() {
            let name = claim_name(t.metadata.name.as_deref().unwrap_or_default(), set.name(), n);
            if self.claims.get(set.namespace(), &name).is_some() {
                continue;
            }
            let mut labels = t.metadata.labels.clone().unwrap_or_default();
            if let Some(m) = spec.and_then(|s| s.selector.match_labels.as_ref()) {
                labels.extend(m.clone());
            }
            let claim = PersistentVolumeClaim {
                metadata: ObjectMeta {
                    name: Some(name.clone()),
                    namespace: Some(set.namespace().to_string()),
                    labels: Some(labels),
                    annotations: t.metadata.annotations.clone(),
                    owner_references: owned.then(|| vec![controller_ref(set)]),
                    ..Default::default()
                },
                spec: t.spec.clone(),
                status: None,
            };
            match self.client.create(&claim).await {
                Ok(_) => {
                    let msg = format!("create Claim {name} Pod {} in StatefulSet {} success", pod.name(), set.name());
                    self.events.record(set, EventType::Normal, "SuccessfulCreate", &msg).await;
                }
                Err(e) if e.is_already_exists() => {}
                Err(e) => {
                    let msg = format!(
                        "create Claim {name} for Pod {} in StatefulSet {} failed error: {e}",
                        pod.name(),
                        set.name()
                    );
                    self.events.record(set, EventType::Warning, "FailedCreate", &msg).await;
                    return Err(e.into());
                }
            }
        }
        Ok(())
    }

    /// whenScaled Delete: the condemned pod's claims become the pod's alone (the set's reference
    /// goes, or the garbage collector would only drop the pod's), so they go with it.
    async fn hand_claims_to(&self, set: &StatefulSet, p: &Pod) -> Result<(), Error> {
        let Some(n) = ordinal(set.name(), p.name()) else { return Ok(()) };
        let templates = set.spec.as_ref().and_then(|s| s.volume_claim_templates.clone()).unwrap_or_default();
        for t in templates {
            let name = claim_name(t.metadata.name.as_deref().unwrap_or_default(), set.name(), n);
            let Some(claim) = self.claims.get(set.namespace(), &name) else { continue };
            if claim.owner_references().iter().any(|r| r.uid == p.uid()) {
                continue;
            }
            let mut refs: Vec<OwnerReference> =
                claim.owner_references().iter().filter(|r| r.uid != set.uid()).cloned().collect();
            refs.push(OwnerReference {
                api_version: "v1".into(),
                kind: "Pod".into(),
                name: p.name().to_string(),
                uid: p.uid().to_string(),
                controller: None,
                block_owner_deletion: None,
            });
            let patch = json!({"metadata": {"ownerReferences": refs, "resourceVersion": claim.resource_version()}});
            match self.client.merge_patch::<PersistentVolumeClaim>(claim.namespace(), claim.name(), &patch).await {
                Err(e) if !e.is_not_found() => return Err(e.into()),
                _ => {}
            }
        }
        Ok(())
    }

    async fn create_pod(&self, set: &StatefulSet, pod: &Pod) -> Result<(), Error> {
        match self.client.create(pod).await {
            Ok(_) => {
                let msg = format!("create Pod {} in StatefulSet {} successful", pod.name(), set.name());
                self.events.record(set, EventType::Normal, "SuccessfulCreate", &msg).await;
                Ok(())
            }
            Err(e) if e.is_already_exists() => Ok(()),
            Err(e) => {
                let msg = format!("create Pod {} in StatefulSet {} failed error: {e}", pod.name(), set.name());
                self.events.record(set, EventType::Warning, "FailedCreate", &msg).await;
                Err(e.into())
            }
        }
    }

    async fn delete_pod(&self, set: &StatefulSet, p: &Pod) -> Result<(), Error> {
        let params = DeleteParams { uid: Some(p.uid().to_string()), ..Default::default() };
        match self.client.delete::<Pod>(p.namespace(), p.name(), &params).await {
            Ok(()) => {
                let msg = format!("delete Pod {} in StatefulSet {} successful", p.name(), set.name());
                self.events.record(set, EventType::Normal, "SuccessfulDelete", &msg).await;
                Ok(())
            }
            Err(e) if e.is_not_found() || e.is_conflict() => Ok(()),
            Err(e) => Err(e.into()),
        }
    }
}

impl Reconciler for StatefulSetController {
    type Error = Error;
    async fn reconcile(&self, key: &ObjectKey) -> ReconcileResult {
        self.sync(key).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{Container, PersistentVolumeClaimSpec, PodSpec};

    #[test]
    fn pods_have_stable_names_identities_and_claims() {
        let set = StatefulSet {
            metadata: ObjectMeta {
                name: Some("web".into()),
                namespace: Some("ns".into()),
                uid: Some("u".into()),
                ..Default::default()
            },
            spec: Some(StatefulSetSpec {
                service_name: "web".into(),
                volume_claim_templates: Some(vec![PersistentVolumeClaim {
                    metadata: ObjectMeta { name: Some("data".into()), ..Default::default() },
                    spec: Some(PersistentVolumeClaimSpec::default()),
                    status: None,
                }]),
                ..Default::default()
            }),
            status: None,
        };
        let template = PodTemplateSpec {
            metadata: Some(ObjectMeta { labels: Some([("app".into(), "web".into())].into()), ..Default::default() }),
            spec: Some(PodSpec {
                containers: vec![Container { name: "c".into(), ..Default::default() }],
                ..Default::default()
            }),
        };
        let p = pod_for(&set, &template, "web-abc", 2);
        assert_eq!(p.name(), "web-2");
        assert_eq!(p.labels()[POD_NAME_LABEL], "web-2");
        assert_eq!(p.labels()[POD_INDEX_LABEL], "2");
        assert_eq!(p.labels()[REVISION_HASH], "web-abc");
        let spec = p.spec.unwrap();
        assert_eq!((spec.hostname.as_deref(), spec.subdomain.as_deref()), (Some("web-2"), Some("web")));
        let vol = &spec.volumes.unwrap()[0];
        assert_eq!(vol.persistent_volume_claim.as_ref().unwrap().claim_name, "data-web-2");
        assert_eq!(ordinal("web", "web-12"), Some(12));
        assert_eq!(ordinal("web", "web-x"), None);
        assert_eq!(ordinal("web", "webby-1"), None);
    }
}
