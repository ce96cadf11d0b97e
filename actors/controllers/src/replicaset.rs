//! The ReplicaSet controller: keeps `spec.replicas` pods matching the selector, owned by the
//! ReplicaSet (adopting orphans that match, releasing owned pods that no longer match), and
//! reports counts in status. Expectations keep a slow watch from causing extra pods. The same
//! logic serves ReplicationControllers ([`Replicated`], upstream's replication manager), read
//! through a ReplicaSet view.
//!
//! A sync costs the same for 10 pods or 30,000: the counts it needs (active, ready, fully
//! labeled) are index counts kept by the pod informer, orphans come from the orphan index,
//! and owned pods whose labels changed are checked one by one as their events arrive (with a
//! full pass over a ReplicaSet's pods at most every few minutes, and when it scales down). A
//! pod event queues its controller, or for an orphan the ReplicaSets of its namespace that
//! select it.

use crate::adoption::{self, claimants, selects};
use crate::expectations::Expectations;
use futures::future::{join_all, BoxFuture};
use k8s_openapi::api::apps::v1::{ReplicaSet, ReplicaSetCondition, ReplicaSetSpec, ReplicaSetStatus};
use k8s_openapi::api::core::v1::{Pod, ReplicationController};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector as ApiSelector;
use kubus_apimachinery::meta::{controller_ref, refers_to};
use kubus_apimachinery::pod;
use kubus_apimachinery::selector::{labels_match, LabelSelector};
use kubus_apimachinery::{Object, ObjectExt, ObjectKey};
use kubus_controller_runtime::controller::{Action, Controller, Error, ReconcileResult, Reconciler};
use kubus_controller_runtime::events::EventType;
use kubus_controller_runtime::informer::Cache;
use kubus_controller_runtime::{Change, Client, DeleteParams, Informer, InformerFactory, Recorder};
use serde_json::{json, Value};
use std::borrow::Cow;
use std::cmp::Reverse;
use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

/// Most pods created or deleted in one reconcile (upstream's burst).
const BURST: usize = 500;

/// Upstream's `--concurrent-replicaset-syncs` default.
pub const WORKERS: usize = 5;

/// Pod changes of one ReplicaSet within this window make one sync (and one status write).
pub const COALESCE: Duration = Duration::from_millis(100);

/// How often a ReplicaSet's pods are all looked at, for label changes missed while the
/// controller was not watching (a restart).
const FULL_CHECK: Duration = Duration::from_secs(300);

/// Pods by the uid of the ReplicaSet controlling them, when active.
pub const ACTIVE: &str = "replicaset-active";
/// Pods by the uid of the ReplicaSet controlling them, when active and ready.
pub const READY: &str = "replicaset-ready";
/// Active pods by `<ReplicaSet uid>/<key>=<value>` of each of their labels.
pub const LABELED: &str = "replicaset-label";

/// A kind whose pods this controller keeps: ReplicaSets, and ReplicationControllers (v1), which
/// upstream's replication manager also runs through the ReplicaSet logic.
pub trait Replicated: Object {
    /// The work queue's name (upstream's: `replicaset`, `replicationmanager`).
    const QUEUE: &'static str;
    /// The component its Events come from.
    const COMPONENT: &'static str;
    /// The object as a ReplicaSet (same metadata, spec and status).
    fn as_replica_set(&self) -> Cow<'_, ReplicaSet>;
    /// The selector as a matcher; an invalid one is an error.
    fn selector(&self) -> Result<LabelSelector, String>;
}

impl Replicated for ReplicaSet {
    const QUEUE: &'static str = "replicaset";
    const COMPONENT: &'static str = "replicaset-controller";
    fn as_replica_set(&self) -> Cow<'_, ReplicaSet> {
        Cow::Borrowed(self)
    }
    fn selector(&self) -> Result<LabelSelector, String> {
        LabelSelector::from_typed(self.spec.as_ref().map(|s| &s.selector)).map_err(|e| e.message)
    }
}

impl Replicated for ReplicationController {
    const QUEUE: &'static str = "replicationmanager";
    const COMPONENT: &'static str = "replication-controller";
    fn as_replica_set(&self) -> Cow<'_, ReplicaSet> {
        let spec = self.spec.as_ref();
        let status = self.status.as_ref();
        Cow::Owned(ReplicaSet {
            metadata: self.metadata.clone(),
            spec: Some(ReplicaSetSpec {
                replicas: spec.and_then(|s| s.replicas),
                min_ready_seconds: spec.and_then(|s| s.min_ready_seconds),
                selector: ApiSelector { match_labels: spec.and_then(|s| s.selector.clone()), match_expressions: None },
                template: spec.and_then(|s| s.template.clone()),
            }),
            status: status.map(|s| ReplicaSetStatus {
                replicas: s.replicas,
                fully_labeled_replicas: s.fully_labeled_replicas,
                ready_replicas: s.ready_replicas,
                available_replicas: s.available_replicas,
                observed_generation: s.observed_generation,
                conditions: s.conditions.as_ref().map(|cs| {
                    cs.iter()
                        .map(|c| ReplicaSetCondition {
                            type_: c.type_.clone(),
                            status: c.status.clone(),
                            reason: c.reason.clone(),
                            message: c.message.clone(),
                            last_transition_time: c.last_transition_time.clone(),
                        })
                        .collect()
                }),
            }),
        })
    }
    fn selector(&self) -> Result<LabelSelector, String> {
        let labels = self.spec.as_ref().and_then(|s| s.selector.clone());
        let typed = ApiSelector { match_labels: labels, match_expressions: None };
        LabelSelector::from_typed(Some(&typed)).map_err(|e| e.message)
    }
}

/// Whether an owner reference names a kind this controller keeps.
fn is_replicated(r: &k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference) -> bool {
    refers_to::<ReplicaSet>(r) || refers_to::<ReplicationController>(r)
}

/// The ReplicaSet or ReplicationController controlling a pod (its uid), if one does. Uids are
/// unique across kinds, so both share the indexes.
fn controller_uid(p: &Pod) -> Option<&str> {
    p.controller_ref().filter(|r| is_replicated(r)).map(|r| r.uid.as_str())
}

fn index_active(p: &Pod) -> Vec<String> {
    controller_uid(p).filter(|_| pod::is_active(p)).map(String::from).into_iter().collect()
}

fn index_ready(p: &Pod) -> Vec<String> {
    controller_uid(p).filter(|_| pod::is_active(p) && pod::is_ready(p)).map(String::from).into_iter().collect()
}

fn index_labeled(p: &Pod) -> Vec<String> {
    match controller_uid(p).filter(|_| pod::is_active(p)) {
        Some(uid) => p.labels().iter().map(|(k, v)| format!("{uid}/{k}={v}")).collect(),
        None => Vec::new(),
    }
}

/// Keeps the ReplicaSet indexes on the shared pod informer.
pub fn index_pods(pods: &Informer<Pod>) {
    pods.add_index(ACTIVE, index_active);
    pods.add_index(READY, index_ready);
    pods.add_index(LABELED, index_labeled);
}

pub struct ReplicaSetController<K: Replicated> {
    client: Client,
    events: Recorder,
    replicasets: Informer<K>,
    pods: Informer<Pod>,
    expectations: Arc<Expectations>,
    /// Owned pods whose labels changed since the last sync, by ReplicaSet (they may no longer
    /// match its selector and must then be released).
    relabeled: Arc<Mutex<HashMap<ObjectKey, HashSet<ObjectKey>>>>,
    /// When each ReplicaSet's pods were last all checked against its selector.
    checked: Mutex<HashMap<ObjectKey, Instant>>,
}

/// Upstream's deletion preference: unscheduled, then pending, then not ready, then the
/// newest, then the most restarted go first (sorting ascending by this key).
pub fn deletion_rank(pod: &Pod) -> impl Ord {
    let assigned = pod::node_name(pod).is_some();
    let phase = match pod::phase(pod) {
        "Pending" => 0u8,
        "Unknown" => 1,
        _ => 2,
    };
    let created = pod.metadata.creation_timestamp.clone();
    (assigned, phase, pod::is_ready(pod), Reverse(created), Reverse(pod::restarts(pod)))
}

/// The status a ReplicaSet reports for the pods it owns.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Counts {
    pub replicas: i32,
    pub fully_labeled: i32,
    pub ready: i32,
    pub available: i32,
}

impl Counts {
    /// The counts of a ReplicaSet's pods from the pod informer's indexes: O(labels of its
    /// template), unless some of its pods lack a template label or it has minReadySeconds, when
    /// its pods are counted one by one.
    pub fn indexed(rs: &ReplicaSet, pods: &Cache<Pod>, now: SystemTime) -> Counts {
        let uid = rs.uid();
        let spec = rs.spec.as_ref();
        let min_ready = spec.and_then(|s| s.min_ready_seconds).unwrap_or(0);
        let template_labels = spec.and_then(|s| s.template.as_ref()).and_then(|t| t.metadata.as_ref()?.labels.as_ref());
        let replicas = pods.count(ACTIVE, uid) as i32;
        let ready = pods.count(READY, uid) as i32;
        // Every active pod has every template label exactly when the rarest one is on all.
        let labeled_min = template_labels
            .into_iter()
            .flatten()
            .map(|(k, v)| pods.count(LABELED, &format!("{uid}/{k}={v}")) as i32)
            .min()
            .unwrap_or(replicas);
        if min_ready <= 0 && labeled_min == replicas {
            return Counts { replicas, fully_labeled: replicas, ready, available: ready };
        }
        Counts::of(rs, &pods.by_index(ACTIVE, uid), now)
    }

    /// Counts the active pods among `owned`.
    pub fn of(rs: &ReplicaSet, owned: &[Arc<Pod>], now: SystemTime) -> Counts {
        let spec = rs.spec.as_ref();
        let min_ready = spec.and_then(|s| s.min_ready_seconds).unwrap_or(0);
        let template_labels = spec.and_then(|s| s.template.as_ref()).and_then(|t| t.metadata.as_ref()?.labels.as_ref());
        let active: Vec<&Arc<Pod>> = owned.iter().filter(|p| pod::is_active(p)).collect();
        let count = |f: &dyn Fn(&Pod) -> bool| active.iter().filter(|p| f(p)).count() as i32;
        Counts {
            replicas: active.len() as i32,
            fully_labeled: count(&|p| template_labels.is_none_or(|l| labels_match(l, p.labels()))),
            ready: count(&|p| pod::is_ready(p)),
            available: count(&|p| pod::is_available(p, min_ready, now)),
        }
    }

    /// Whether the ReplicaSet's status says something else (absent counts are 0).
    fn differ(&self, rs: &ReplicaSet) -> bool {
        let none = ReplicaSetStatus::default();
        let s = rs.status.as_ref().unwrap_or(&none);
        (
            s.replicas,
            s.fully_labeled_replicas.unwrap_or(0),
            s.ready_replicas.unwrap_or(0),
            s.available_replicas.unwrap_or(0),
        ) != (self.replicas, self.fully_labeled, self.ready, self.available)
            || s.observed_generation.unwrap_or(0) != rs.generation()
    }
}

/// A ReplicaSet's `spec.replicas` (absent means 1, as the API defaults it).
pub fn replicas(rs: &ReplicaSet) -> i64 {
    rs.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1).max(0) as i64
}

/// Starts the controller of `K` with `workers` concurrent syncs; the future runs it until
/// dropped.
pub fn run<K: Replicated>(client: Client, factory: &InformerFactory, workers: usize) -> BoxFuture<'static, ()> {
    let (replicasets, pods) = (factory.get::<K>(), factory.get::<Pod>());
    adoption::index_orphans(&pods);
    index_pods(&pods);
    let expectations = Arc::new(Expectations::default());
    let relabeled: Arc<Mutex<HashMap<ObjectKey, HashSet<ObjectKey>>>> = Arc::default();
    let on_pod = {
        let (replicasets, expectations, relabeled) = (replicasets.clone(), expectations.clone(), relabeled.clone());
        move |change: &Change<Pod>| {
            note_relabeled::<K>(&relabeled, change);
            pod_change(&replicasets, &expectations, change)
        }
    };
    let ctrl = Controller::new(K::QUEUE, replicasets.clone())
        .watches_changes(pods.clone(), on_pod)
        .coalesce(COALESCE)
        .workers(workers);
    let events = Recorder::new(client.clone(), K::COMPONENT);
    let checked = Mutex::default();
    ctrl.run(Arc::new(ReplicaSetController { client, events, replicasets, pods, expectations, relabeled, checked }))
}

/// Remembers an owned pod whose labels changed, for its ReplicaSet's next sync.
fn note_relabeled<K: Replicated>(relabeled: &Mutex<HashMap<ObjectKey, HashSet<ObjectKey>>>, change: &Change<Pod>) {
    let Change::Applied { old: Some(old), new } = change else { return };
    if old.labels() == new.labels() {
        return;
    }
    if let Some(r) = new.controller_ref().filter(|r| refers_to::<K>(r)) {
        let rs = (new.namespace().to_string(), r.name.clone());
        relabeled.lock().expect("relabeled lock").entry(rs).or_default().insert(new.key());
    }
}

/// Observes a pod change for expectations and names the ReplicaSets it concerns (before and
/// after a label change, so a pod may leave one owner and join another).
fn pod_change<K: Replicated>(
    replicasets: &Informer<K>,
    expectations: &Expectations,
    change: &Change<Pod>,
) -> Vec<ObjectKey> {
    let owner_key =
        |p: &Pod| p.controller_ref().filter(|r| refers_to::<K>(r)).map(|r| (p.namespace().to_string(), r.name.clone()));
    let owners =
        |p: &Pod| claimants(replicasets, p, |rs: &K| rs.selector().unwrap_or_else(|_| LabelSelector::nothing()));
    let mut keys = match change {
        Change::Applied { old, new } => {
            if old.is_none() {
                if let Some(k) = owner_key(new) {
                    expectations.observed_add(&k);
                }
            }
            let mut keys = owners(new);
            keys.extend(old.as_deref().map(owners).unwrap_or_default());
            keys
        }
        Change::Deleted(pod) => {
            if let Some(k) = owner_key(pod) {
                expectations.observed_del(&k);
            }
            owners(pod)
        }
        // A resync never reaches a mapper: the builder queues every ReplicaSet for it itself.
        _ => Vec::new(),
    };
    keys.sort();
    keys.dedup();
    keys
}

impl<K: Replicated> ReplicaSetController<K> {
    async fn sync(&self, key: &ObjectKey) -> ReconcileResult {
        let Some(owner) = self.replicasets.get_key(key) else {
            self.expectations.forget(key);
            self.relabeled.lock().expect("relabeled lock").remove(key);
            self.checked.lock().expect("checked lock").remove(key);
            return Ok(Action::Done);
        };
        let selector = owner.selector().map_err(Error::InvalidObject)?;
        let view = owner.as_replica_set();
        let rs: &ReplicaSet = &view;
        let mut adopted = 0;
        if !rs.is_deleting() {
            self.release_unselected(key, rs, &selector).await?;
            for pod in adoption::orphans(&self.pods, rs.namespace(), &selector) {
                if pod::is_active(&pod) && self.adopt(&*owner, &pod).await? {
                    adopted += 1;
                }
            }
        }
        // Adopted pods reach the indexes with their next event; count them now.
        let active = self.pods.count(ACTIVE, rs.uid()) + adopted;
        let want = replicas(rs) as usize;
        let mut failure = None;
        if self.expectations.satisfied(key) && !rs.is_deleting() {
            if active < want {
                if let Err(e) = self.create_pods(&*owner, rs, (want - active).min(BURST), key).await {
                    failure = Some(("FailedCreate", e));
                }
            } else if active > want {
                let mut victims: Vec<Arc<Pod>> = self.pods.by_index(ACTIVE, rs.uid());
                victims.sort_by_cached_key(|p| deletion_rank(p));
                victims.truncate((active - want).min(BURST));
                let victims: Vec<&Arc<Pod>> = victims.iter().collect();
                if let Err(e) = self.delete_pods(&*owner, &victims, key).await {
                    failure = Some(("FailedDelete", e));
                }
            }
        }
        // As upstream, a failed create or delete is also told in the ReplicaFailure condition.
        let status = self.update_status(rs, failure.as_ref().map(|(reason, e)| (*reason, e.to_string()))).await;
        match failure {
            Some((_, e)) => Err(e),
            None => status,
        }
    }

    /// Releases owned pods its selector no longer selects: those whose labels changed since
    /// the last sync, or all of them every [`FULL_CHECK`].
    async fn release_unselected(
        &self,
        key: &ObjectKey,
        rs: &ReplicaSet,
        selector: &LabelSelector,
    ) -> Result<(), Error> {
        let due = {
            let mut checked = self.checked.lock().expect("checked lock");
            let due = checked.get(key).is_none_or(|t| t.elapsed() >= FULL_CHECK);
            if due {
                checked.insert(key.clone(), Instant::now());
            }
            due
        };
        let relabeled = self.relabeled.lock().expect("relabeled lock").remove(key).unwrap_or_default();
        let candidates: Vec<Arc<Pod>> = if due {
            self.pods.controlled_by(rs.uid())
        } else {
            relabeled.iter().filter_map(|k| self.pods.get_key(k)).collect()
        };
        for pod in candidates {
            let ours = pod.controller_ref().is_some_and(|r| r.uid == rs.uid());
            if ours && !selects(selector, pod.labels()) {
                self.release(&pod, rs.uid()).await?;
            }
        }
        Ok(())
    }

    async fn adopt(&self, rs: &K, pod: &Pod) -> Result<bool, Error> {
        let patch = adoption::adopt_patch(pod, rs);
        match self.client.merge_patch::<Pod>(pod.namespace(), pod.name(), &patch).await {
            Ok(_) => Ok(true),
            Err(e) if e.is_not_found() || e.is_conflict() => Ok(false),
            Err(e) => Err(e.into()),
        }
    }

    async fn release(&self, pod: &Pod, uid: &str) -> Result<(), Error> {
        let patch = adoption::release_patch(pod, uid);
        match self.client.merge_patch::<Pod>(pod.namespace(), pod.name(), &patch).await {
            Ok(_) => Ok(()),
            Err(e) if e.is_not_found() || e.is_conflict() => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    async fn create_pods(&self, owner: &K, rs: &ReplicaSet, n: usize, key: &ObjectKey) -> Result<(), Error> {
        let pod = pod_from_template(owner, rs);
        self.expectations.expect(key, n as i64, 0);
        // Slow start, as upstream: batches of 1, 2, 4, ... stop at the first failing batch.
        let (mut done, mut batch) = (0, 1);
        while done < n {
            let size = batch.min(n - done);
            let results = join_all((0..size).map(|_| self.client.create(&pod))).await;
            let failed = results.iter().filter(|r| r.is_err()).count();
            for r in &results {
                let (kind, reason, msg) = match r {
                    Ok(created) => (EventType::Normal, "SuccessfulCreate", format!("Created pod: {}", created.name())),
                    // A refusal (a quota, a limit range) is told on the ReplicaSet, as upstream.
                    Err(e) => (EventType::Warning, "FailedCreate", format!("Error creating: {e}")),
                };
                self.events.record(owner, kind, reason, &msg).await;
            }
            done += size;
            if failed > 0 {
                self.expectations.failed(key, (failed + n - done) as i64, 0);
                if let Some(e) = results.into_iter().find_map(|r| r.err()) {
                    return Err(e.into());
                }
            }
            batch *= 2;
        }
        Ok(())
    }

    async fn delete_pods(&self, owner: &K, pods: &[&Arc<Pod>], key: &ObjectKey) -> Result<(), Error> {
        self.expectations.expect(key, 0, pods.len() as i64);
        let params = DeleteParams::default();
        let results = join_all(pods.iter().map(|p| self.client.delete::<Pod>(p.namespace(), p.name(), &params))).await;
        let mut first_err = None;
        for (r, pod) in results.into_iter().zip(pods) {
            match r {
                Ok(_) => {
                    let msg = format!("Deleted pod: {}", pod.name());
                    self.events.record(owner, EventType::Normal, "SuccessfulDelete", &msg).await;
                }
                Err(e) if e.is_not_found() => self.expectations.failed(key, 0, 1),
                Err(e) => {
                    self.expectations.failed(key, 0, 1);
                    first_err.get_or_insert(e);
                }
            }
        }
        first_err.map_or(Ok(()), |e| Err(e.into()))
    }

    async fn update_status(&self, rs: &ReplicaSet, failure: Option<(&str, String)>) -> ReconcileResult {
        let counts = self.pods.read(|c| Counts::indexed(rs, c, SystemTime::now()));
        let conditions = failure_conditions(rs, failure);
        if counts.differ(rs) || conditions.is_some() {
            let mut status = json!({
                "replicas": counts.replicas,
                "fullyLabeledReplicas": counts.fully_labeled,
                "readyReplicas": counts.ready,
                "availableReplicas": counts.available,
                "observedGeneration": rs.metadata.generation,
            });
            if let Some(c) = conditions {
                status["conditions"] = if c.is_empty() { Value::Null } else { Value::Array(c) };
            }
            let r = self.client.merge_patch_status::<K>(rs.namespace(), rs.name(), &json!({"status": status})).await;
            if let Err(e) = r {
                if !e.is_not_found() {
                    return Err(e.into());
                }
            }
        }
        // Pods become available minReadySeconds after they became ready: look again then.
        let min_ready = rs.spec.as_ref().and_then(|s| s.min_ready_seconds).unwrap_or(0);
        if min_ready > 0 && counts.available < counts.ready {
            return Ok(Action::RequeueAfter(Duration::from_secs(min_ready as u64)));
        }
        Ok(Action::Done)
    }
}

/// The condition a ReplicaSet (and, copied from it, its Deployment) has while it fails to
/// create or delete pods.
pub const REPLICA_FAILURE: &str = "ReplicaFailure";

/// The status conditions after a sync, if they change: a ReplicaFailure condition added when
/// the sync failed to create or delete pods (kept as it was while failures go on), removed
/// once a sync succeeds (upstream's `calculateStatus`).
fn failure_conditions(rs: &ReplicaSet, failure: Option<(&str, String)>) -> Option<Vec<Value>> {
    let current = rs.status.as_ref().and_then(|s| s.conditions.clone()).unwrap_or_default();
    let has = current.iter().any(|c| c.type_ == REPLICA_FAILURE);
    let mut out: Vec<Value> = current
        .iter()
        .filter(|c| c.type_ != REPLICA_FAILURE)
        .map(|c| serde_json::to_value(c).unwrap_or_default())
        .collect();
    match (failure, has) {
        (Some((reason, message)), false) => {
            out.push(json!({"type": REPLICA_FAILURE, "status": "True", "reason": reason, "message": message,
                "lastTransitionTime": kubus_apimachinery::time::now()}));
            Some(out)
        }
        (None, true) => Some(out),
        _ => None,
    }
}

/// A pod of the template of `rs` (the ReplicaSet view of `owner`), named after it and
/// controlled by `owner`.
pub fn pod_from_template<K: Object>(owner: &K, rs: &ReplicaSet) -> Pod {
    let template = rs.spec.as_ref().and_then(|s| s.template.clone()).unwrap_or_default();
    let mut metadata = template.metadata.unwrap_or_default();
    metadata.generate_name = Some(format!("{}-", rs.name()));
    metadata.namespace = Some(rs.namespace().to_string());
    metadata.owner_references = Some(vec![controller_ref(owner)]);
    Pod { metadata, spec: template.spec, status: None }
}

impl<K: Replicated> Reconciler for ReplicaSetController<K> {
    type Error = Error;
    async fn reconcile(&self, key: &ObjectKey) -> ReconcileResult {
        self.sync(key).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::apps::v1::ReplicaSetSpec;
    use k8s_openapi::api::core::v1::{ContainerStatus, PodCondition, PodSpec, PodStatus, PodTemplateSpec};
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
    use kubus_apimachinery::time::time;
    use std::collections::BTreeMap;

    fn pod(name: &str, node: Option<&str>, phase: &str, ready_since: Option<u64>, created: u64) -> Arc<Pod> {
        let epoch = SystemTime::UNIX_EPOCH;
        Arc::new(Pod {
            metadata: ObjectMeta {
                name: Some(name.into()),
                labels: Some([("app".to_string(), "web".to_string())].into()),
                creation_timestamp: Some(time(epoch + Duration::from_secs(created))),
                ..Default::default()
            },
            spec: Some(PodSpec { node_name: node.map(String::from), ..Default::default() }),
            status: Some(PodStatus {
                phase: Some(phase.into()),
                conditions: ready_since.map(|t| {
                    vec![PodCondition {
                        type_: "Ready".into(),
                        status: "True".into(),
                        last_transition_time: Some(time(epoch + Duration::from_secs(t))),
                        ..Default::default()
                    }]
                }),
                ..Default::default()
            }),
        })
    }

    fn ranked(pods: &[Arc<Pod>]) -> Vec<String> {
        let mut v: Vec<&Arc<Pod>> = pods.iter().collect();
        v.sort_by_cached_key(|p| deletion_rank(p));
        v.iter().map(|p| p.name().to_string()).collect()
    }

    #[test]
    fn deletion_prefers_unscheduled_pending_unready_newest_then_most_restarted() {
        let mut restarted = (*pod("restarted", Some("n"), "Running", Some(1), 10)).clone();
        restarted.status.as_mut().unwrap().container_statuses =
            Some(vec![ContainerStatus { restart_count: 3, ..Default::default() }]);
        let pods = [
            pod("old-ready", Some("n"), "Running", Some(1), 1),
            pod("new-ready", Some("n"), "Running", Some(1), 10),
            Arc::new(restarted),
            pod("unready", Some("n"), "Running", None, 1),
            pod("unknown", Some("n"), "Unknown", None, 1),
            pod("pending", Some("n"), "Pending", None, 1),
            pod("unscheduled", None, "Pending", None, 1),
        ];
        assert_eq!(
            ranked(&pods),
            ["unscheduled", "pending", "unknown", "unready", "restarted", "new-ready", "old-ready"]
        );
    }

    fn rs(min_ready: i32, template_labels: &[(&str, &str)]) -> ReplicaSet {
        let labels: BTreeMap<String, String> =
            template_labels.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        ReplicaSet {
            metadata: ObjectMeta {
                name: Some("web-abc".into()),
                namespace: Some("prod".into()),
                uid: Some("u-rs".into()),
                generation: Some(3),
                ..Default::default()
            },
            spec: Some(ReplicaSetSpec {
                min_ready_seconds: Some(min_ready),
                template: Some(PodTemplateSpec {
                    metadata: Some(ObjectMeta { labels: Some(labels), ..Default::default() }),
                    spec: Some(PodSpec::default()),
                }),
                ..Default::default()
            }),
            status: None,
        }
    }

    /// One pod of each kind the status counts tell apart: ready long enough to be available,
    /// just ready, pending, terminal, being deleted, relabeled.
    fn counted_pods(now: SystemTime) -> Vec<Arc<Pod>> {
        let mut deleting = (*pod("deleting", Some("n"), "Running", Some(1), 1)).clone();
        deleting.metadata.deletion_timestamp = Some(time(now));
        let mut other_labels = (*pod("relabeled", Some("n"), "Running", None, 1)).clone();
        other_labels.metadata.labels = Some([("app".to_string(), "other".to_string())].into());
        vec![
            pod("long-ready", Some("n"), "Running", Some(10), 1),
            pod("just-ready", Some("n"), "Running", Some(995), 1),
            pod("pending", None, "Pending", None, 1),
            pod("done", Some("n"), "Succeeded", None, 1),
            Arc::new(deleting),
            Arc::new(other_labels),
        ]
    }

    #[test]
    fn status_counts_active_labeled_ready_and_available_pods() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1000);
        let owned = counted_pods(now);
        let rs = rs(30, &[("app", "web")]);
        let counts = Counts::of(&rs, &owned, now);
        assert_eq!(counts, Counts { replicas: 4, fully_labeled: 3, ready: 2, available: 1 });
        assert!(counts.differ(&rs), "no status yet");
        let mut reported = rs.clone();
        reported.status = Some(ReplicaSetStatus {
            replicas: 4,
            fully_labeled_replicas: Some(3),
            ready_replicas: Some(2),
            available_replicas: Some(1),
            observed_generation: Some(3),
            ..Default::default()
        });
        assert!(!counts.differ(&reported));
        reported.metadata.generation = Some(4);
        assert!(counts.differ(&reported), "a new generation is observed");
        // Absent counts read as zero.
        let empty = Counts::of(&rs, &[], now);
        let mut zero = rs.clone();
        zero.status = Some(ReplicaSetStatus { replicas: 0, observed_generation: Some(3), ..Default::default() });
        assert!(!empty.differ(&zero));
    }

    #[test]
    fn indexed_counts_equal_counting_the_pods_one_by_one() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1000);
        let owner = rs(0, &[("app", "web")]);
        let controlled = |p: Arc<Pod>| {
            let mut p = (*p).clone();
            p.metadata.namespace = Some("prod".into());
            p.metadata.owner_references = Some(vec![controller_ref(&owner)]);
            Arc::new(p)
        };
        let owned: Vec<Arc<Pod>> = counted_pods(now).into_iter().map(controlled).collect();
        let mut cache: Cache<Pod> = Cache::default();
        cache.add_index(ACTIVE, Arc::new(index_active));
        cache.add_index(READY, Arc::new(index_ready));
        cache.add_index(LABELED, Arc::new(index_labeled));
        // A pod of another ReplicaSet counts for neither.
        let mut stranger = (*owned[0]).clone();
        stranger.metadata.name = Some("stranger".into());
        stranger.metadata.owner_references.as_mut().unwrap()[0].uid = "u-other".into();
        for p in owned.iter().cloned().chain([Arc::new(stranger)]) {
            cache.insert(p.key(), p);
        }
        // A pod without a template label: counted one by one.
        assert_eq!(Counts::indexed(&owner, &cache, now), Counts::of(&owner, &owned, now));
        assert_eq!(
            Counts::indexed(&owner, &cache, now),
            Counts { replicas: 4, fully_labeled: 3, ready: 2, available: 2 }
        );
        // Every pod labeled, no minReadySeconds: straight from the index counts.
        cache.remove(&owned[5].key());
        assert_eq!(
            Counts::indexed(&owner, &cache, now),
            Counts { replicas: 3, fully_labeled: 3, ready: 2, available: 2 }
        );
        assert_eq!(Counts::indexed(&owner, &cache, now), Counts::of(&owner, &owned[..5], now));
        // minReadySeconds: availability needs the times.
        let slow = rs(30, &[("app", "web")]);
        assert_eq!(Counts::indexed(&slow, &cache, now), Counts::of(&slow, &owned[..5], now));
        assert_eq!(Counts::indexed(&slow, &cache, now).available, 1);
    }

    #[test]
    fn pods_are_made_from_the_template_and_controlled_by_the_replicaset() {
        let rs = rs(0, &[("app", "web")]);
        let pod = pod_from_template(&rs, &rs);
        let v = serde_json::to_value(&pod).unwrap();
        assert_eq!(
            v,
            json!({"apiVersion": "v1", "kind": "Pod",
                "metadata": {"generateName": "web-abc-", "namespace": "prod", "labels": {"app": "web"},
                    "ownerReferences": [{"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "web-abc",
                        "uid": "u-rs", "controller": true, "blockOwnerDeletion": true}]},
                "spec": {"containers": []}})
        );
    }
}
