//! The ReplicaSet controller: keeps `spec.replicas` pods matching the selector, owned by the
//! ReplicaSet (adopting orphans that match, releasing owned pods that no longer match), and
//! reports counts in status. Expectations keep a slow watch from causing extra pods.

use crate::expectations::Expectations;
use crate::owner::{self, controller_of, controller_ref};
use crate::Informers;
use futures::future::{join_all, BoxFuture};
use kubus_apimachinery::selector::LabelSelector;
use kubus_apimachinery::table::parse_rfc3339;
use kubus_runtime::controller::{self, Action, ReconcileResult, Reconciler};
use kubus_runtime::informer::{key_of, ObjectKey};
use kubus_runtime::{Change, Client, WorkQueue};
use serde_json::{json, Value};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

/// Most pods created or deleted in one reconcile (upstream's burst).
const BURST: usize = 500;

pub struct ReplicaSetController {
    client: Client,
    events: kubus_runtime::Recorder,
    informers: Informers,
    expectations: Expectations,
    queue: Arc<WorkQueue<ObjectKey>>,
}

pub fn is_pod_active(pod: &Value) -> bool {
    !owner::is_deleting(pod) && !matches!(pod["status"]["phase"].as_str(), Some("Succeeded" | "Failed"))
}

pub fn is_pod_ready(pod: &Value) -> bool {
    kubus_apimachinery::conditions::is_true(pod, "Ready")
}

/// Ready for at least `min_ready` (upstream's "available").
pub fn is_pod_available(pod: &Value, min_ready: i64, now: SystemTime) -> bool {
    if !is_pod_ready(pod) {
        return false;
    }
    if min_ready <= 0 {
        return true;
    }
    let since = kubus_apimachinery::conditions::find(pod, "Ready")
        .and_then(|c| c["lastTransitionTime"].as_str())
        .and_then(parse_rfc3339);
    since.is_some_and(|t| t + Duration::from_secs(min_ready as u64) <= now)
}

/// Upstream's deletion preference: unscheduled, then pending, then not ready, then the
/// newest, then the most restarted go first.
fn deletion_rank(pod: &Value) -> (u8, u8, u8, std::cmp::Reverse<String>) {
    let assigned = pod["spec"]["nodeName"].as_str().is_some_and(|n| !n.is_empty());
    let phase = match pod["status"]["phase"].as_str() {
        Some("Pending") => 0,
        Some("Unknown") => 1,
        _ => 2,
    };
    let created = pod["metadata"]["creationTimestamp"].as_str().unwrap_or("").to_string();
    (assigned as u8, phase, is_pod_ready(pod) as u8, std::cmp::Reverse(created))
}

impl ReplicaSetController {
    pub fn new(client: Client, informers: Informers) -> Self {
        let events = kubus_runtime::Recorder::new(client.clone(), "replicaset-controller");
        ReplicaSetController {
            client,
            events,
            informers,
            expectations: Expectations::default(),
            queue: WorkQueue::new("replicaset"),
        }
    }

    /// The ReplicaSet a pod change concerns: its controller, or for an orphan every
    /// ReplicaSet in its namespace whose selector matches (adoption).
    fn owners_of(&self, pod: &Value) -> Vec<ObjectKey> {
        let ns = owner::namespace(pod);
        if let Some((kind, name, _)) = controller_of(pod) {
            return if kind == "ReplicaSet" { vec![(ns.to_string(), name.to_string())] } else { vec![] };
        }
        self.informers
            .replicasets
            .list()
            .iter()
            .filter(|rs| owner::namespace(rs) == ns)
            .filter(|rs| {
                LabelSelector::from_json(&rs["spec"]["selector"]).is_ok_and(|s| !s.is_empty() && s.matches_object(pod))
            })
            .map(|rs| key_of(rs))
            .collect()
    }

    fn on_pod_change(&self, change: &Change) {
        match change {
            Change::Applied { old, new } => {
                if old.is_none() {
                    if let Some((_, name, _)) = controller_of(new) {
                        self.expectations.observed_add(&format!("{}/{name}", owner::namespace(new)));
                    }
                }
                // A pod whose labels changed may leave one owner and join another.
                let mut keys = self.owners_of(new);
                if let Some(old) = old {
                    keys.extend(self.owners_of(old));
                }
                keys.into_iter().for_each(|k| self.queue.add(k));
            }
            Change::Deleted(pod) => {
                if let Some((_, name, _)) = controller_of(pod) {
                    self.expectations.observed_del(&format!("{}/{name}", owner::namespace(pod)));
                }
                self.owners_of(pod).into_iter().for_each(|k| self.queue.add(k));
            }
            Change::Resynced => self.enqueue_all(),
        }
    }

    fn enqueue_all(&self) {
        for rs in self.informers.replicasets.list() {
            self.queue.add(key_of(&rs));
        }
    }

    async fn sync(&self, key: ObjectKey) -> ReconcileResult {
        let (ns, name) = (&key.0, &key.1);
        let exp_key = format!("{ns}/{name}");
        let Some(rs) = self.informers.replicasets.get(ns, name) else {
            self.expectations.forget(&exp_key);
            return Ok(Action::Done);
        };
        let selector = LabelSelector::from_json(&rs["spec"]["selector"]).map_err(|e| e.message)?;
        let uid = owner::uid(&rs).to_string();
        let mut owned: Vec<Arc<Value>> = Vec::new();
        for pod in self.informers.pods.list().into_iter().filter(|p| owner::namespace(p) == ns) {
            let matches = !selector.is_empty() && selector.matches_object(&pod);
            match controller_of(&pod) {
                Some((_, _, owner_uid)) if owner_uid == uid => {
                    if matches {
                        owned.push(pod);
                    } else if !owner::is_deleting(&rs) {
                        self.release(&pod, &uid).await?;
                    }
                }
                None if matches && is_pod_active(&pod) && !owner::is_deleting(&rs) && self.adopt(&rs, &pod).await? => {
                    owned.push(pod);
                }
                _ => {}
            }
        }
        let active: Vec<&Arc<Value>> = owned.iter().filter(|p| is_pod_active(p)).collect();
        let want = rs["spec"]["replicas"].as_i64().unwrap_or(1).max(0) as usize;
        if self.expectations.satisfied(&exp_key) && !owner::is_deleting(&rs) {
            if active.len() < want {
                self.create_pods(&rs, (want - active.len()).min(BURST), &exp_key).await?;
            } else if active.len() > want {
                let mut victims: Vec<&Arc<Value>> = active.clone();
                victims.sort_by_key(|p| deletion_rank(p));
                victims.truncate((active.len() - want).min(BURST));
                self.delete_pods(&victims, &exp_key).await?;
            }
        }
        self.update_status(&rs, &owned, &selector).await
    }

    async fn adopt(&self, rs: &Value, pod: &Value) -> Result<bool, String> {
        let mut refs: Vec<Value> = pod["metadata"]["ownerReferences"].as_array().cloned().unwrap_or_default();
        refs.push(controller_ref(rs, "apps/v1", "ReplicaSet"));
        // The resourceVersion makes the adoption lose to any concurrent change of the pod.
        let patch =
            json!({"metadata": {"ownerReferences": refs, "resourceVersion": pod["metadata"]["resourceVersion"]}});
        match self.client.merge_patch("", "pods", Some(owner::namespace(pod)), owner::name(pod), None, &patch).await {
            Ok(_) => Ok(true),
            Err(e) if e.is_not_found() || e.is_conflict() => Ok(false),
            Err(e) => Err(e.to_string()),
        }
    }

    async fn release(&self, pod: &Value, uid: &str) -> Result<(), String> {
        let refs: Vec<Value> = pod["metadata"]["ownerReferences"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|r| r["uid"] != uid)
            .cloned()
            .collect();
        let patch =
            json!({"metadata": {"ownerReferences": refs, "resourceVersion": pod["metadata"]["resourceVersion"]}});
        match self.client.merge_patch("", "pods", Some(owner::namespace(pod)), owner::name(pod), None, &patch).await {
            Ok(_) => Ok(()),
            Err(e) if e.is_not_found() || e.is_conflict() => Ok(()),
            Err(e) => Err(e.to_string()),
        }
    }

    async fn create_pods(&self, rs: &Value, n: usize, exp_key: &str) -> Result<(), String> {
        let ns = owner::namespace(rs);
        let template = &rs["spec"]["template"];
        let mut pod = json!({"apiVersion": "v1", "kind": "Pod", "metadata": template["metadata"].clone(), "spec": template["spec"].clone()});
        if !pod["metadata"].is_object() {
            pod["metadata"] = json!({});
        }
        pod["metadata"]["generateName"] = json!(format!("{}-", owner::name(rs)));
        pod["metadata"]["namespace"] = json!(ns);
        pod["metadata"]["ownerReferences"] = json!([controller_ref(rs, "apps/v1", "ReplicaSet")]);
        self.expectations.expect(exp_key, n as i64, 0);
        // Slow start, as upstream: batches of 1, 2, 4, ... stop at the first failing batch.
        let (mut done, mut batch) = (0, 1);
        while done < n {
            let size = batch.min(n - done);
            let results = join_all((0..size).map(|_| self.client.create("", "pods", Some(ns), &pod))).await;
            let failed = results.iter().filter(|r| r.is_err()).count();
            for created in results.iter().flatten() {
                let msg = format!("Created pod: {}", owner::name(created));
                self.events.record(rs, "apps/v1", "ReplicaSet", "Normal", "SuccessfulCreate", &msg).await;
            }
            done += size;
            if failed > 0 {
                self.expectations.failed(exp_key, (failed + n - done) as i64, 0);
                let first = results.into_iter().find_map(|r| r.err()).map(|e| e.to_string()).unwrap_or_default();
                return Err(format!("creating pods for {exp_key}: {first}"));
            }
            batch *= 2;
        }
        Ok(())
    }

    async fn delete_pods(&self, pods: &[&Arc<Value>], exp_key: &str) -> Result<(), String> {
        self.expectations.expect(exp_key, 0, pods.len() as i64);
        let results = join_all(
            pods.iter().map(|p| self.client.delete("", "pods", Some(owner::namespace(p)), owner::name(p), "")),
        )
        .await;
        let mut first_err = None;
        for r in results {
            match r {
                Ok(_) => {}
                Err(e) if e.is_not_found() => self.expectations.failed(exp_key, 0, 1),
                Err(e) => {
                    self.expectations.failed(exp_key, 0, 1);
                    first_err.get_or_insert(e.to_string());
                }
            }
        }
        first_err.map_or(Ok(()), Err)
    }

    async fn update_status(&self, rs: &Value, owned: &[Arc<Value>], selector: &LabelSelector) -> ReconcileResult {
        let now = SystemTime::now();
        let min_ready = rs["spec"]["minReadySeconds"].as_i64().unwrap_or(0);
        let active: Vec<&Arc<Value>> = owned.iter().filter(|p| is_pod_active(p)).collect();
        let template_labels = &rs["spec"]["template"]["metadata"]["labels"];
        let fully_labeled = active
            .iter()
            .filter(|p| {
                template_labels.as_object().is_none_or(|l| l.iter().all(|(k, v)| p["metadata"]["labels"][k] == *v))
            })
            .count();
        let ready = active.iter().filter(|p| is_pod_ready(p)).count();
        let available = active.iter().filter(|p| is_pod_available(p, min_ready, now)).count();
        let status = json!({
            "replicas": active.len(),
            "fullyLabeledReplicas": fully_labeled,
            "readyReplicas": ready,
            "availableReplicas": available,
            "observedGeneration": rs["metadata"]["generation"],
        });
        let current = &rs["status"];
        let changed = ["replicas", "fullyLabeledReplicas", "readyReplicas", "availableReplicas", "observedGeneration"]
            .iter()
            .any(|f| current[f].as_i64().unwrap_or(0) != status[f].as_i64().unwrap_or(0));
        if changed {
            let r = self
                .client
                .merge_patch(
                    "apps",
                    "replicasets",
                    Some(owner::namespace(rs)),
                    owner::name(rs),
                    Some("status"),
                    &json!({"status": status}),
                )
                .await;
            if let Err(e) = r {
                if !e.is_not_found() {
                    return Err(e.to_string());
                }
            }
        }
        let _ = selector;
        // Pods become available minReadySeconds after they became ready: look again then.
        if min_ready > 0 && available < ready {
            return Ok(Action::RequeueAfter(Duration::from_secs(min_ready as u64)));
        }
        Ok(Action::Done)
    }
}

impl Reconciler for ReplicaSetController {
    fn name(&self) -> &'static str {
        "replicaset"
    }
    fn reconcile(&self, key: ObjectKey) -> BoxFuture<'_, ReconcileResult> {
        Box::pin(self.sync(key))
    }
}

/// The controller's loops: one feeding its queue from the informers, and its workers.
pub fn run(ctrl: Arc<ReplicaSetController>) -> Vec<BoxFuture<'static, ()>> {
    let c = ctrl.clone();
    let feed: BoxFuture<'static, ()> = Box::pin(async move {
        let mut rs_changes = c.informers.replicasets.subscribe();
        let mut pod_changes = c.informers.pods.subscribe();
        c.informers.replicasets.wait_synced().await;
        c.informers.pods.wait_synced().await;
        c.enqueue_all();
        loop {
            tokio::select! {
                ch = rs_changes.recv() => match ch {
                    Ok(Change::Applied { new, .. }) => c.queue.add(key_of(&new)),
                    Ok(Change::Deleted(rs)) => c.queue.add(key_of(&rs)),
                    Ok(Change::Resynced) | Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => c.enqueue_all(),
                    Err(_) => return,
                },
                ch = pod_changes.recv() => match ch {
                    Ok(change) => c.on_pod_change(&change),
                    Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => c.enqueue_all(),
                    Err(_) => return,
                },
            }
        }
    });
    let queue = ctrl.queue.clone();
    let mut loops = controller::workers(ctrl, queue, 4);
    loops.push(feed);
    loops
}
