//! The Deployment controller: one ReplicaSet per pod template (named by the template's hash),
//! rolled out by the strategy (RollingUpdate within maxSurge/maxUnavailable, or Recreate),
//! with revision annotations for `kubectl rollout history|undo`, revisionHistoryLimit
//! cleanup, pause, the Available/Progressing conditions `kubectl rollout status` reads, and
//! its ReplicaSets' ReplicaFailure condition.
//!
//! A sync reads the Deployment's ReplicaSets from the informer's controller index and the
//! orphans of its namespace from the orphan index; a ReplicaSet event queues its controller,
//! or for an orphan the Deployments of its namespace that select it.

mod status;

use crate::adoption::{self, claimants, selector_of};
use crate::replicaset::replicas;
use futures::future::BoxFuture;
use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet, ReplicaSetSpec};
use k8s_openapi::api::core::v1::PodTemplateSpec;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kubus_apimachinery::meta::{controller_ref, is_controlled_by};
use kubus_apimachinery::selector::LabelSelector;
use kubus_apimachinery::{ObjectExt, ObjectKey};
use kubus_controller_runtime::controller::{Action, Controller, Reconciler};
use kubus_controller_runtime::events::EventType;
use kubus_controller_runtime::{Client, ClientError, DeleteParams, Informer, InformerFactory, Recorder};
use serde_json::{json, Map, Value};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::SystemTime;

pub const REVISION: &str = "deployment.kubernetes.io/revision";
const DESIRED: &str = "deployment.kubernetes.io/desired-replicas";
const MAX_REPLICAS: &str = "deployment.kubernetes.io/max-replicas";
pub const HASH_LABEL: &str = "pod-template-hash";

/// Upstream's `--concurrent-deployment-syncs` is 5; this one has run with 4.
/// Upstream's `--concurrent-deployment-syncs` default.
pub const WORKERS: usize = 5;

/// Why a Deployment sync failed; the key is retried with backoff.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Client(#[from] ClientError),
    #[error("deployment {0} has no spec")]
    NoSpec(String),
    #[error("invalid selector: {0}")]
    InvalidSelector(String),
    /// A ReplicaSet of the hashed name exists that is not this Deployment's of its template:
    /// the collision count was raised, so the next sync hashes differently.
    #[error("replica set name collision for {0}")]
    NameCollision(String),
}

pub struct DeploymentController {
    client: Client,
    events: Recorder,
    deployments: Informer<Deployment>,
    replicasets: Informer<ReplicaSet>,
}

/// FNV-1a of the template's canonical JSON, spelled with upstream's safe alphabet (no vowels,
/// so no words; no look-alike characters).
pub fn template_hash(template: &Value, collisions: i64) -> String {
    let mut h: u32 = 0x811c9dc5;
    for b in template.to_string().bytes().chain(collisions.to_string().bytes()) {
        h ^= b as u32;
        h = h.wrapping_mul(0x01000193);
    }
    const ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
    let mut out = String::new();
    let mut n = h as u64;
    loop {
        out.push(ALPHABET[(n % ALPHABET.len() as u64) as usize] as char);
        n /= ALPHABET.len() as u64;
        if n == 0 {
            break;
        }
    }
    out
}

/// A template in the form templates are compared and hashed in: without the hash label and
/// without empty members, since `{}`, `[]`, null and absent all mean the same to the API (Go
/// clients such as `kubectl rollout undo` send `resources: {}` where others send nothing).
fn canonical(template: &Value) -> Value {
    fn strip(v: &Value) -> Option<Value> {
        match v {
            Value::Null => None,
            Value::Object(m) => {
                let out: Map<String, Value> = m.iter().filter_map(|(k, v)| strip(v).map(|v| (k.clone(), v))).collect();
                (!out.is_empty()).then_some(Value::Object(out))
            }
            Value::Array(a) if a.is_empty() => None,
            Value::Array(a) => Some(Value::Array(a.iter().map(|v| strip(v).unwrap_or(json!({}))).collect())),
            other => Some(other.clone()),
        }
    }
    let mut t = template.clone();
    if let Some(l) = t.pointer_mut("/metadata/labels").and_then(Value::as_object_mut) {
        l.remove(HASH_LABEL);
    }
    strip(&t).unwrap_or(json!({}))
}

/// The canonical form of a typed template. Hashes were always taken of the template's JSON,
/// so they are here too: ReplicaSets named by earlier hashes stay the current ones.
pub fn canonical_template(template: Option<&PodTemplateSpec>) -> Value {
    canonical(&serde_json::to_value(template).unwrap_or_default())
}

fn template_of(rs: &ReplicaSet) -> Option<&PodTemplateSpec> {
    rs.spec.as_ref()?.template.as_ref()
}

/// Whether `rs` is the Deployment's ReplicaSet of its current template (controlled by it, the
/// same template): what a ReplicaSet of the hashed name must be not to be a hash collision.
fn is_new_replica_set(d: &Deployment, rs: &ReplicaSet) -> bool {
    let template = d.spec.as_ref().map(|s| &s.template);
    is_controlled_by(rs, d) && canonical_template(template_of(rs)) == canonical_template(template)
}

/// What creating the new ReplicaSet came to.
enum Creation {
    Created(ReplicaSet),
    /// It existed already: made by an earlier sync that the informer has not shown yet.
    Existing(ReplicaSet),
}

/// `spec.replicas` (default 1).
fn want(d: &Deployment) -> i64 {
    d.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1).max(0) as i64
}

/// A ReplicaSet's `status.replicas`.
fn current(rs: &ReplicaSet) -> i64 {
    rs.status.as_ref().map_or(0, |s| s.replicas) as i64
}

fn available(rs: &ReplicaSet) -> i64 {
    rs.status.as_ref().and_then(|s| s.available_replicas).unwrap_or(0) as i64
}

fn ready(rs: &ReplicaSet) -> i64 {
    rs.status.as_ref().and_then(|s| s.ready_replicas).unwrap_or(0) as i64
}

fn revision(rs: &ReplicaSet) -> i64 {
    rs.annotation(REVISION).and_then(|r| r.parse().ok()).unwrap_or(0)
}

/// An int-or-percent of `total`, rounded up (surge) or down (unavailable) as upstream does.
fn resolve(v: Option<&IntOrString>, total: i64, round_up: bool, default: &str) -> i64 {
    let pct = match v {
        Some(IntOrString::Int(n)) => return *n as i64,
        Some(IntOrString::String(s)) => s,
        None => default,
    };
    let pct: i64 = pct.trim_end_matches('%').parse().unwrap_or(0);
    if round_up {
        (pct * total + 99) / 100
    } else {
        pct * total / 100
    }
}

/// (maxSurge, maxUnavailable) for a deployment; never both zero.
fn surge_and_unavailable(d: &Deployment) -> (i64, i64) {
    let ru = d.spec.as_ref().and_then(|s| s.strategy.as_ref()?.rolling_update.as_ref());
    let total = want(d);
    let surge = resolve(ru.and_then(|r| r.max_surge.as_ref()), total, true, "25%");
    let mut unavailable = resolve(ru.and_then(|r| r.max_unavailable.as_ref()), total, false, "25%");
    if surge == 0 && unavailable == 0 {
        unavailable = 1;
    }
    (surge, unavailable.min(total))
}

/// One step of a rolling update: the new ReplicaSet's replicas (up within maxSurge), and the
/// old ReplicaSets scaled down while `want - maxUnavailable` stay available (unhealthy old
/// replicas go first: they count for nothing).
fn rolling_step(
    want: i64,
    surge: i64,
    max_unavailable: i64,
    new_rs: &ReplicaSet,
    old: &[Arc<ReplicaSet>],
) -> (i64, Vec<(Arc<ReplicaSet>, i64)>) {
    let total: i64 = replicas(new_rs) + old.iter().map(|r| replicas(r)).sum::<i64>();
    let new_replicas = replicas(new_rs);
    let target = if new_replicas > want {
        want
    } else {
        let room = (want + surge - total).max(0);
        new_replicas + room.min(want - new_replicas)
    };
    let min_available = want - max_unavailable;
    let all: i64 = target + old.iter().map(|r| replicas(r)).sum::<i64>();
    let new_unavailable = (target - available(new_rs)).max(0);
    let mut budget = (all - min_available - new_unavailable).max(0);
    let mut scaled: Vec<(Arc<ReplicaSet>, i64)> = Vec::new();
    for o in old {
        let unhealthy = (replicas(o) - available(o)).max(0).min(budget);
        if unhealthy > 0 {
            budget -= unhealthy;
            scaled.push((o.clone(), replicas(o) - unhealthy));
        }
    }
    let available_now: i64 = available(new_rs) + old.iter().map(|r| available(r)).sum::<i64>();
    let mut can_remove = (available_now - min_available).max(0);
    for o in old {
        let current = scaled.iter().find(|(r, _)| Arc::ptr_eq(r, o)).map(|(_, n)| *n).unwrap_or(replicas(o));
        let down = current.min(can_remove);
        if down > 0 {
            can_remove -= down;
            scaled.retain(|(r, _)| !Arc::ptr_eq(r, o));
            scaled.push((o.clone(), current - down));
        }
    }
    (target, scaled)
}

/// The ReplicaSet of the Deployment's current template, named and labelled by its hash.
pub fn new_replica_set(d: &Deployment, replicas: i64, annotations: BTreeMap<String, String>) -> ReplicaSet {
    let spec = d.spec.clone().unwrap_or_default();
    let collisions = d.status.as_ref().and_then(|s| s.collision_count).unwrap_or(0);
    let hash = template_hash(&canonical_template(Some(&spec.template)), collisions as i64);
    let mut template = spec.template;
    let labels = template.metadata.get_or_insert_default().labels.get_or_insert_default();
    labels.insert(HASH_LABEL.to_string(), hash.clone());
    let labels = labels.clone();
    let mut selector = spec.selector;
    selector.match_labels.get_or_insert_default().insert(HASH_LABEL.to_string(), hash.clone());
    ReplicaSet {
        metadata: ObjectMeta {
            name: Some(format!("{}-{hash}", d.name())),
            namespace: Some(d.namespace().to_string()),
            labels: Some(labels),
            annotations: Some(annotations),
            owner_references: Some(vec![controller_ref(d)]),
            ..Default::default()
        },
        spec: Some(ReplicaSetSpec {
            replicas: Some(replicas as i32),
            min_ready_seconds: Some(spec.min_ready_seconds.unwrap_or(0)),
            selector,
            template: Some(template),
        }),
        status: None,
    }
}

/// Starts the controller; the future runs it until dropped.
pub fn run(client: Client, factory: &InformerFactory, workers: usize) -> BoxFuture<'static, ()> {
    let (deployments, replicasets) = (factory.get::<Deployment>(), factory.get::<ReplicaSet>());
    adoption::index_orphans(&replicasets);
    // One subscription for both cases: a ReplicaSet queues its controlling Deployment, an
    // orphan the Deployments that would adopt it.
    let owners = {
        let deployments = deployments.clone();
        move |rs: &ReplicaSet| {
            claimants(&deployments, rs, |d: &Deployment| selector_of(d.spec.as_ref().map(|s| &s.selector)))
        }
    };
    let ctrl = Controller::new("deployment", deployments.clone())
        .watches(replicasets.clone(), owners)
        .coalesce(crate::replicaset::COALESCE)
        .workers(workers);
    let events = Recorder::new(client.clone(), "deployment-controller");
    ctrl.run(Arc::new(DeploymentController { client, events, deployments, replicasets }))
}

impl DeploymentController {
    /// Scales a ReplicaSet (and sets its annotations), with the event upstream records.
    async fn set_rs(
        &self,
        d: &Deployment,
        rs: &ReplicaSet,
        to: i64,
        annotations: BTreeMap<String, String>,
    ) -> Result<(), Error> {
        let patch = json!({"metadata": {"annotations": annotations}, "spec": {"replicas": to}});
        self.client.merge_patch::<ReplicaSet>(rs.namespace(), rs.name(), &patch).await?;
        let from = replicas(rs);
        if from != to {
            let verb = if to > from { "up" } else { "down" };
            let msg = format!("Scaled {verb} replica set {} from {from} to {to}", rs.name());
            self.events.record(d, EventType::Normal, "ScalingReplicaSet", &msg).await;
        }
        Ok(())
    }

    /// The Deployment's ReplicaSets, oldest first, after adopting the orphans it selects.
    async fn replica_sets(&self, d: &Deployment, selector: &LabelSelector) -> Vec<Arc<ReplicaSet>> {
        let mut rss = self.replicasets.controlled_by(d.uid());
        for rs in adoption::orphans(&self.replicasets, d.namespace(), selector) {
            let patch = adoption::adopt_patch(rs.as_ref(), d);
            if self.client.merge_patch::<ReplicaSet>(rs.namespace(), rs.name(), &patch).await.is_ok() {
                rss.push(rs);
            }
        }
        rss.sort_by(|a, b| {
            a.metadata.creation_timestamp.cmp(&b.metadata.creation_timestamp).then_with(|| a.name().cmp(b.name()))
        });
        rss
    }

    async fn sync(&self, key: &ObjectKey) -> Result<Action, Error> {
        let Some(d) = self.deployments.get_key(key) else {
            return Ok(Action::Done);
        };
        if d.is_deleting() {
            return Ok(Action::Done);
        }
        let spec = d.spec.as_ref().ok_or_else(|| Error::NoSpec(d.name().to_string()))?;
        let selector =
            LabelSelector::from_typed(Some(&spec.selector)).map_err(|e| Error::InvalidSelector(e.message))?;
        let rss = self.replica_sets(&d, &selector).await;
        let wanted = canonical_template(Some(&spec.template));
        let new_rs = rss.iter().find(|rs| canonical_template(template_of(rs)) == wanted).cloned();
        let old: Vec<Arc<ReplicaSet>> =
            rss.iter().filter(|rs| !new_rs.as_ref().is_some_and(|n| Arc::ptr_eq(n, rs))).cloned().collect();
        let max_old_revision = old.iter().map(|rs| revision(rs)).max().unwrap_or(0);
        let paused = spec.paused.unwrap_or(false);
        let recreate = spec.strategy.as_ref().and_then(|s| s.type_.as_deref()) == Some("Recreate");
        let want = want(&d);
        let (surge, max_unavailable) = if recreate { (0, want) } else { surge_and_unavailable(&d) };

        if paused {
            // A paused deployment only scales: the newest ReplicaSet takes the replica count.
            if let Some(rs) = new_rs.as_ref().or(old.last()) {
                if replicas(rs) != want && old.iter().all(|o| replicas(o) == 0) {
                    self.set_rs(&d, rs, want, BTreeMap::new()).await?;
                }
            }
            return self.update_status(&d, new_rs.as_deref(), &old, "DeploymentPaused").await;
        }
        let next_revision = (max_old_revision + 1).to_string();
        let annotations = |revision: &str| {
            BTreeMap::from([
                (REVISION.to_string(), revision.to_string()),
                (DESIRED.to_string(), want.to_string()),
                (MAX_REPLICAS.to_string(), (want + surge).to_string()),
            ])
        };
        let mut reason = "FoundNewReplicaSet";
        let new_rs = match new_rs {
            Some(rs) => rs,
            None => {
                let total: i64 = rss.iter().map(|r| replicas(r)).sum();
                let start = if recreate {
                    if old.iter().any(|o| replicas(o) > 0 || current(o) > 0) {
                        0
                    } else {
                        want
                    }
                } else if old.is_empty() {
                    want
                } else {
                    (want + surge - total).clamp(0, want)
                };
                match self.create_rs(&d, start, annotations(&next_revision)).await? {
                    Creation::Created(rs) => {
                        reason = "NewReplicaSetCreated";
                        Arc::new(rs)
                    }
                    // Found late, it is taken as if the informer had shown it.
                    Creation::Existing(rs) => Arc::new(rs),
                }
            }
        };
        if reason != "NewReplicaSetCreated" && revision(&new_rs) <= max_old_revision {
            // A rollback made an old template current again: it becomes the newest revision.
            self.set_rs(&d, &new_rs, replicas(&new_rs), annotations(&next_revision)).await?;
        }
        let new_revision = if reason == "NewReplicaSetCreated" || revision(&new_rs) <= max_old_revision {
            next_revision.clone()
        } else {
            revision(&new_rs).to_string()
        };
        if d.annotation(REVISION) != Some(new_revision.as_str()) {
            let patch = json!({"metadata": {"annotations": {REVISION: new_revision}}});
            self.client.merge_patch::<Deployment>(&key.0, &key.1, &patch).await?;
        }

        if recreate {
            for o in old.iter().filter(|o| replicas(o) > 0) {
                self.set_rs(&d, o, 0, BTreeMap::new()).await?;
            }
            let old_pods: i64 = old.iter().map(|o| current(o)).sum();
            if old_pods == 0 && replicas(&new_rs) != want {
                self.set_rs(&d, &new_rs, want, annotations(&new_revision)).await?;
                reason = "ReplicaSetUpdated";
            }
        } else {
            let (target, scaled) = rolling_step(want, surge, max_unavailable, &new_rs, &old);
            if target != replicas(&new_rs) {
                self.set_rs(&d, &new_rs, target, annotations(&new_revision)).await?;
                reason = "ReplicaSetUpdated";
            }
            for (o, n) in scaled {
                if n != replicas(&o) {
                    self.set_rs(&d, &o, n, BTreeMap::new()).await?;
                    reason = "ReplicaSetUpdated";
                }
            }
        }
        self.cleanup(&d, &old).await?;
        self.update_status(&d, Some(&new_rs), &old, reason).await
    }

    async fn create_rs(
        &self,
        d: &Deployment,
        replicas: i64,
        annotations: BTreeMap<String, String>,
    ) -> Result<Creation, Error> {
        let rs = new_replica_set(d, replicas, annotations);
        match self.client.create(&rs).await {
            Ok(created) => {
                let msg = format!("Scaled up replica set {} from 0 to {replicas}", created.name());
                self.events.record(d, EventType::Normal, "ScalingReplicaSet", &msg).await;
                Ok(Creation::Created(created))
            }
            Err(e) if e.is_already_exists() => {
                // A lagging informer hides a ReplicaSet an earlier sync made: that one is used,
                // as upstream does. Anything else of that name is a hash collision: bump the
                // collision count so the next hash differs.
                let existing = self.client.get::<ReplicaSet>(rs.namespace(), rs.name()).await?;
                if is_new_replica_set(d, &existing) {
                    return Ok(Creation::Existing(existing));
                }
                let collisions = d.status.as_ref().and_then(|s| s.collision_count).unwrap_or(0);
                let patch = json!({"status": {"collisionCount": collisions + 1}});
                let _ = self.client.merge_patch_status::<Deployment>(d.namespace(), d.name(), &patch).await;
                Err(Error::NameCollision(d.name().to_string()))
            }
            Err(e) => Err(e.into()),
        }
    }

    /// Deletes the oldest scaled-down ReplicaSets beyond revisionHistoryLimit.
    async fn cleanup(&self, d: &Deployment, old: &[Arc<ReplicaSet>]) -> Result<(), Error> {
        let limit = d.spec.as_ref().and_then(|s| s.revision_history_limit).unwrap_or(10).max(0) as usize;
        let idle: Vec<&Arc<ReplicaSet>> = old.iter().filter(|o| replicas(o) == 0 && current(o) == 0).collect();
        if idle.len() <= limit {
            return Ok(());
        }
        for o in &idle[..idle.len() - limit] {
            match self.client.delete::<ReplicaSet>(o.namespace(), o.name(), &DeleteParams::default()).await {
                Ok(_) => {}
                Err(e) if e.is_not_found() => {}
                Err(e) => return Err(e.into()),
            }
        }
        Ok(())
    }

    async fn update_status(
        &self,
        d: &Deployment,
        new_rs: Option<&ReplicaSet>,
        old: &[Arc<ReplicaSet>],
        reason: &str,
    ) -> Result<Action, Error> {
        let now = SystemTime::now();
        let desired = status::desired(d, new_rs, old, reason, now);
        if status::differs(d.status.as_ref(), &desired.status) {
            let patch = status::patch(d, &desired.status);
            let r = self.client.merge_patch_status::<Deployment>(d.namespace(), d.name(), &patch).await;
            if let Err(e) = r {
                if !e.is_not_found() {
                    return Err(e.into());
                }
            }
        }
        Ok(desired.requeue.map_or(Action::Done, Action::RequeueAfter))
    }
}

impl Reconciler for DeploymentController {
    type Error = Error;
    async fn reconcile(&self, key: &ObjectKey) -> Result<Action, Error> {
        self.sync(key).await
    }
}

#[cfg(test)]
mod tests;
