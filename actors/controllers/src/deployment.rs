//! The Deployment controller: one ReplicaSet per pod template (named by the template's hash),
//! rolled out by the strategy (RollingUpdate within maxSurge/maxUnavailable, or Recreate),
//! with revision annotations for `kubectl rollout history|undo`, revisionHistoryLimit
//! cleanup, pause, and the Available/Progressing conditions `kubectl rollout status` reads.

use crate::owner::{self, controller_of, controller_ref};
use crate::Informers;
use futures::future::BoxFuture;
use kubus_apimachinery::selector::LabelSelector;
use kubus_apimachinery::table::{format_rfc3339, parse_rfc3339};
use kubus_runtime::controller::{self, Action, ReconcileResult, Reconciler};
use kubus_runtime::informer::{key_of, ObjectKey};
use kubus_runtime::{Change, Client, WorkQueue};
use serde_json::{json, Map, Value};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

pub const REVISION: &str = "deployment.kubernetes.io/revision";
const DESIRED: &str = "deployment.kubernetes.io/desired-replicas";
const MAX_REPLICAS: &str = "deployment.kubernetes.io/max-replicas";
pub const HASH_LABEL: &str = "pod-template-hash";

pub struct DeploymentController {
    client: Client,
    events: kubus_runtime::Recorder,
    informers: Informers,
    queue: Arc<WorkQueue<ObjectKey>>,
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
    if let Some(l) = t["metadata"]["labels"].as_object_mut() {
        l.remove(HASH_LABEL);
    }
    strip(&t).unwrap_or(json!({}))
}

fn replicas(obj: &Value) -> i64 {
    obj["spec"]["replicas"].as_i64().unwrap_or(1).max(0)
}

fn status_i(obj: &Value, f: &str) -> i64 {
    obj["status"][f].as_i64().unwrap_or(0)
}

fn revision(rs: &Value) -> i64 {
    rs["metadata"]["annotations"][REVISION].as_str().and_then(|r| r.parse().ok()).unwrap_or(0)
}

/// An int-or-percent of `total`, rounded up (surge) or down (unavailable) as upstream does.
fn resolve(v: &Value, total: i64, round_up: bool, default: &str) -> i64 {
    let v = if v.is_null() { json!(default) } else { v.clone() };
    match v {
        Value::Number(n) => n.as_i64().unwrap_or(0),
        Value::String(s) => {
            let pct: i64 = s.trim_end_matches('%').parse().unwrap_or(0);
            if round_up {
                (pct * total + 99) / 100
            } else {
                pct * total / 100
            }
        }
        _ => 0,
    }
}

/// (maxSurge, maxUnavailable) for a deployment; never both zero.
fn surge_and_unavailable(d: &Value) -> (i64, i64) {
    let ru = &d["spec"]["strategy"]["rollingUpdate"];
    let total = replicas(d);
    let surge = resolve(&ru["maxSurge"], total, true, "25%");
    let mut unavailable = resolve(&ru["maxUnavailable"], total, false, "25%");
    if surge == 0 && unavailable == 0 {
        unavailable = 1;
    }
    (surge, unavailable.min(total))
}

impl DeploymentController {
    pub fn new(client: Client, informers: Informers) -> Self {
        let events = kubus_runtime::Recorder::new(client.clone(), "deployment-controller");
        DeploymentController { client, events, informers, queue: WorkQueue::new("deployment") }
    }

    fn enqueue_all(&self) {
        for d in self.informers.deployments.list() {
            self.queue.add(key_of(&d));
        }
    }

    fn on_rs_change(&self, rs: &Value) {
        match controller_of(rs) {
            Some(("Deployment", name, _)) => self.queue.add((owner::namespace(rs).to_string(), name.to_string())),
            Some(_) => {}
            None => {
                for d in
                    self.informers.deployments.list().iter().filter(|d| owner::namespace(d) == owner::namespace(rs))
                {
                    if LabelSelector::from_json(&d["spec"]["selector"])
                        .is_ok_and(|s| !s.is_empty() && s.matches_object(rs))
                    {
                        self.queue.add(key_of(d));
                    }
                }
            }
        }
    }

    async fn set_rs(&self, rs: &Value, to: i64, annotations: Map<String, Value>) -> Result<(), String> {
        let patch = json!({"metadata": {"annotations": annotations}, "spec": {"replicas": to}});
        self.client
            .merge_patch("apps", "replicasets", Some(owner::namespace(rs)), owner::name(rs), None, &patch)
            .await
            .map_err(|e| e.to_string())?;
        let from = replicas(rs);
        if from != to {
            if let Some(d) =
                controller_of(rs).and_then(|(_, n, _)| self.informers.deployments.get(owner::namespace(rs), n))
            {
                let verb = if to > from { "up" } else { "down" };
                let msg = format!("Scaled {verb} replica set {} from {from} to {to}", owner::name(rs));
                self.events.record(&d, "apps/v1", "Deployment", "Normal", "ScalingReplicaSet", &msg).await;
            }
        }
        Ok(())
    }

    async fn sync(&self, key: ObjectKey) -> ReconcileResult {
        let Some(d) = self.informers.deployments.get(&key.0, &key.1) else {
            return Ok(Action::Done);
        };
        if owner::is_deleting(&d) {
            return Ok(Action::Done);
        }
        let selector = LabelSelector::from_json(&d["spec"]["selector"]).map_err(|e| e.message)?;
        let uid = owner::uid(&d).to_string();
        let mut rss: Vec<Arc<Value>> = Vec::new();
        for rs in self.informers.replicasets.list().into_iter().filter(|rs| owner::namespace(rs) == key.0) {
            match controller_of(&rs) {
                Some((_, _, u)) if u == uid => rss.push(rs),
                None if !selector.is_empty() && selector.matches_object(&rs) => {
                    let mut refs: Vec<Value> =
                        rs["metadata"]["ownerReferences"].as_array().cloned().unwrap_or_default();
                    refs.push(controller_ref(&d, "apps/v1", "Deployment"));
                    let patch = json!({"metadata": {"ownerReferences": refs, "resourceVersion": rs["metadata"]["resourceVersion"]}});
                    if self
                        .client
                        .merge_patch("apps", "replicasets", Some(&key.0), owner::name(&rs), None, &patch)
                        .await
                        .is_ok()
                    {
                        rss.push(rs);
                    }
                }
                _ => {}
            }
        }
        rss.sort_by(|a, b| {
            a["metadata"]["creationTimestamp"].as_str().cmp(&b["metadata"]["creationTimestamp"].as_str())
        });
        let wanted = canonical(&d["spec"]["template"]);
        let new_rs = rss.iter().find(|rs| canonical(&rs["spec"]["template"]) == wanted).cloned();
        let old: Vec<Arc<Value>> = rss.iter().filter(|rs| Some(rs.as_ref()) != new_rs.as_deref()).cloned().collect();
        let max_old_revision = old.iter().map(|rs| revision(rs)).max().unwrap_or(0);
        let paused = d["spec"]["paused"].as_bool().unwrap_or(false);
        let recreate = d["spec"]["strategy"]["type"] == "Recreate";
        let want = replicas(&d);
        let (surge, max_unavailable) = if recreate { (0, want) } else { surge_and_unavailable(&d) };

        let mut new_rs = new_rs;
        if paused {
            // A paused deployment only scales: the newest ReplicaSet takes the replica count.
            if let Some(rs) = new_rs.as_ref().or(old.last()) {
                if replicas(rs) != want && old.iter().all(|o| replicas(o) == 0) {
                    self.set_rs(rs, want, Map::new()).await?;
                }
            }
            return self.update_status(&d, new_rs.as_deref(), &old, "DeploymentPaused").await;
        }
        let next_revision = (max_old_revision + 1).to_string();
        let annotations = |revision: &str| {
            let mut a = Map::new();
            a.insert(REVISION.into(), json!(revision));
            a.insert(DESIRED.into(), json!(want.to_string()));
            a.insert(MAX_REPLICAS.into(), json!((want + surge).to_string()));
            a
        };
        let mut reason = "FoundNewReplicaSet";
        match &new_rs {
            None => {
                let total: i64 = rss.iter().map(|r| replicas(r)).sum();
                let start = if recreate {
                    if old.iter().any(|o| replicas(o) > 0 || status_i(o, "replicas") > 0) {
                        0
                    } else {
                        want
                    }
                } else if old.is_empty() {
                    want
                } else {
                    (want + surge - total).clamp(0, want)
                };
                let rs = self.create_rs(&d, start, annotations(&next_revision)).await?;
                new_rs = Some(Arc::new(rs));
                reason = "NewReplicaSetCreated";
            }
            Some(rs) if revision(rs) <= max_old_revision => {
                // A rollback made an old template current again: it becomes the newest revision.
                self.set_rs(rs, replicas(rs), annotations(&next_revision)).await?;
            }
            _ => {}
        }
        let new_rs = new_rs.expect("new replica set exists now");
        let new_revision = if reason == "NewReplicaSetCreated" || revision(&new_rs) <= max_old_revision {
            next_revision.clone()
        } else {
            revision(&new_rs).to_string()
        };
        if d["metadata"]["annotations"][REVISION].as_str() != Some(&new_revision) {
            let patch = json!({"metadata": {"annotations": {REVISION: new_revision}}});
            self.client
                .merge_patch("apps", "deployments", Some(&key.0), &key.1, None, &patch)
                .await
                .map_err(|e| e.to_string())?;
        }

        if recreate {
            for o in old.iter().filter(|o| replicas(o) > 0) {
                self.set_rs(o, 0, Map::new()).await?;
            }
            let old_pods: i64 = old.iter().map(|o| status_i(o, "replicas")).sum();
            if old_pods == 0 && replicas(&new_rs) != want {
                self.set_rs(&new_rs, want, annotations(&new_revision)).await?;
                reason = "ReplicaSetUpdated";
            }
        } else {
            // Scale the new ReplicaSet up within maxSurge.
            let total: i64 = std::iter::once(&new_rs).chain(old.iter()).map(|r| replicas(r)).sum();
            let new_replicas = replicas(&new_rs);
            let target = if new_replicas > want {
                want
            } else {
                let room = (want + surge - total).max(0);
                new_replicas + room.min(want - new_replicas)
            };
            if target != new_replicas {
                self.set_rs(&new_rs, target, annotations(&new_revision)).await?;
                reason = "ReplicaSetUpdated";
            }
            // Scale old ones down while keeping want - maxUnavailable available.
            let min_available = want - max_unavailable;
            let all: i64 = target + old.iter().map(|r| replicas(r)).sum::<i64>();
            let new_unavailable = (target - status_i(&new_rs, "availableReplicas")).max(0);
            let mut budget = (all - min_available - new_unavailable).max(0);
            let mut scaled = Vec::new();
            // Unhealthy old replicas go first: they count for nothing.
            for o in old.iter() {
                let unhealthy = (replicas(o) - status_i(o, "availableReplicas")).max(0).min(budget);
                if unhealthy > 0 {
                    budget -= unhealthy;
                    scaled.push((o.clone(), replicas(o) - unhealthy));
                }
            }
            let available: i64 =
                std::iter::once(&new_rs).chain(old.iter()).map(|r| status_i(r, "availableReplicas")).sum();
            let mut can_remove = (available - min_available).max(0);
            for o in old.iter() {
                let current = scaled.iter().find(|(r, _)| Arc::ptr_eq(r, o)).map(|(_, n)| *n).unwrap_or(replicas(o));
                let down = current.min(can_remove);
                if down > 0 {
                    can_remove -= down;
                    scaled.retain(|(r, _)| !Arc::ptr_eq(r, o));
                    scaled.push((o.clone(), current - down));
                }
            }
            for (o, n) in scaled {
                if n != replicas(&o) {
                    self.set_rs(&o, n, Map::new()).await?;
                    reason = "ReplicaSetUpdated";
                }
            }
        }
        self.cleanup(&d, &old).await?;
        self.update_status(&d, Some(&new_rs), &old, reason).await
    }

    async fn create_rs(&self, d: &Value, replicas: i64, annotations: Map<String, Value>) -> Result<Value, String> {
        let ns = owner::namespace(d);
        let collisions = d["status"]["collisionCount"].as_i64().unwrap_or(0);
        let hash = template_hash(&canonical(&d["spec"]["template"]), collisions);
        let mut template = d["spec"]["template"].clone();
        template["metadata"]["labels"][HASH_LABEL] = json!(hash);
        let mut selector = d["spec"]["selector"].clone();
        selector["matchLabels"][HASH_LABEL] = json!(hash);
        let rs = json!({
            "apiVersion": "apps/v1", "kind": "ReplicaSet",
            "metadata": {"name": format!("{}-{hash}", owner::name(d)), "namespace": ns,
                "labels": template["metadata"]["labels"], "annotations": annotations,
                "ownerReferences": [controller_ref(d, "apps/v1", "Deployment")]},
            "spec": {"replicas": replicas, "minReadySeconds": d["spec"]["minReadySeconds"].as_i64().unwrap_or(0),
                "selector": selector, "template": template},
        });
        match self.client.create("apps", "replicasets", Some(ns), &rs).await {
            Ok(v) => {
                let msg = format!("Scaled up replica set {} from 0 to {replicas}", owner::name(&v));
                self.events.record(d, "apps/v1", "Deployment", "Normal", "ScalingReplicaSet", &msg).await;
                Ok(v)
            }
            Err(e) if e.is_conflict() => {
                // A ReplicaSet of that name with another template: bump the collision count so
                // the next hash differs.
                let patch = json!({"status": {"collisionCount": collisions + 1}});
                let _ = self
                    .client
                    .merge_patch("apps", "deployments", Some(ns), owner::name(d), Some("status"), &patch)
                    .await;
                Err(format!("replica set name collision for {}", owner::name(d)))
            }
            Err(e) => Err(e.to_string()),
        }
    }

    /// Deletes the oldest scaled-down ReplicaSets beyond revisionHistoryLimit.
    async fn cleanup(&self, d: &Value, old: &[Arc<Value>]) -> Result<(), String> {
        let limit = d["spec"]["revisionHistoryLimit"].as_i64().unwrap_or(10).max(0) as usize;
        let idle: Vec<&Arc<Value>> = old.iter().filter(|o| replicas(o) == 0 && status_i(o, "replicas") == 0).collect();
        if idle.len() <= limit {
            return Ok(());
        }
        for o in &idle[..idle.len() - limit] {
            match self.client.delete("apps", "replicasets", Some(owner::namespace(o)), owner::name(o), "").await {
                Ok(_) => {}
                Err(e) if e.is_not_found() => {}
                Err(e) => return Err(e.to_string()),
            }
        }
        Ok(())
    }

    async fn update_status(
        &self,
        d: &Value,
        new_rs: Option<&Value>,
        old: &[Arc<Value>],
        reason: &str,
    ) -> ReconcileResult {
        let all: Vec<&Value> = new_rs.into_iter().chain(old.iter().map(|o| o.as_ref())).collect();
        let sum = |f: &str| all.iter().map(|r| status_i(r, f)).sum::<i64>();
        let want = replicas(d);
        let (_, max_unavailable) = surge_and_unavailable(d);
        let updated = new_rs.map(|r| status_i(r, "replicas")).unwrap_or(0);
        let available = sum("availableReplicas");
        let total = sum("replicas");
        let now = format_rfc3339(SystemTime::now());
        let complete = updated == want
            && total == want
            && available == want
            && new_rs
                .is_some_and(|r| r["status"]["observedGeneration"].as_i64() >= r["metadata"]["generation"].as_i64());
        let prev_conditions = d["status"]["conditions"].as_array().cloned().unwrap_or_default();
        let prev = |t: &str| prev_conditions.iter().find(|c| c["type"] == t).cloned();
        let condition = |t: &str, status: &str, reason: &str, message: String| {
            let mut c = json!({"type": t, "status": status, "reason": reason, "message": message, "lastUpdateTime": now, "lastTransitionTime": now});
            if let Some(p) = prev(t) {
                if p["status"] == status {
                    c["lastTransitionTime"] = p["lastTransitionTime"].clone();
                    if p["reason"] == reason {
                        c["lastUpdateTime"] = p["lastUpdateTime"].clone();
                    }
                }
            }
            c
        };
        let available_ok = available >= want - max_unavailable;
        let available_cond = if available_ok {
            condition("Available", "True", "MinimumReplicasAvailable", "Deployment has minimum availability.".into())
        } else {
            condition(
                "Available",
                "False",
                "MinimumReplicasUnavailable",
                "Deployment does not have minimum availability.".into(),
            )
        };
        let rs_name = new_rs.map(|r| owner::name(r).to_string()).unwrap_or_default();
        let deadline = d["spec"]["progressDeadlineSeconds"].as_i64().unwrap_or(600);
        let progressing = if reason == "DeploymentPaused" {
            condition("Progressing", "Unknown", "DeploymentPaused", "Deployment is paused".into())
        } else if complete {
            condition(
                "Progressing",
                "True",
                "NewReplicaSetAvailable",
                format!("ReplicaSet \"{rs_name}\" has successfully progressed."),
            )
        } else {
            let prev_p = prev("Progressing");
            let last_progress = prev_p.as_ref().and_then(|p| p["lastUpdateTime"].as_str()).and_then(parse_rfc3339);
            let stuck = reason == "FoundNewReplicaSet"
                && last_progress.is_some_and(|t| t + Duration::from_secs(deadline.max(0) as u64) < SystemTime::now());
            if stuck || prev_p.as_ref().is_some_and(|p| p["reason"] == "ProgressDeadlineExceeded") {
                condition(
                    "Progressing",
                    "False",
                    "ProgressDeadlineExceeded",
                    format!("ReplicaSet \"{rs_name}\" has timed out progressing."),
                )
            } else {
                let msg = match reason {
                    "NewReplicaSetCreated" => format!("Created new replica set \"{rs_name}\""),
                    "ReplicaSetUpdated" => format!("ReplicaSet \"{rs_name}\" is progressing."),
                    _ => format!("Found new replica set \"{rs_name}\""),
                };
                let r = if reason == "FoundNewReplicaSet" {
                    prev_p.as_ref().and_then(|p| p["reason"].as_str()).unwrap_or(reason)
                } else {
                    reason
                };
                condition("Progressing", "True", r, msg)
            }
        };
        let status = json!({
            "observedGeneration": d["metadata"]["generation"],
            "replicas": total,
            "updatedReplicas": updated,
            "readyReplicas": sum("readyReplicas"),
            "availableReplicas": available,
            "unavailableReplicas": (want - available).max(0),
            "conditions": [available_cond, progressing],
        });
        let mut compare = status.clone();
        let mut current = d["status"].clone();
        for s in [&mut compare, &mut current] {
            if let Some(cs) = s["conditions"].as_array_mut() {
                for c in cs {
                    c.as_object_mut().map(|o| o.remove("lastUpdateTime"));
                }
            }
            if let Some(o) = s.as_object_mut() {
                o.retain(|_, v| v != &json!(0));
            }
        }
        if compare != current {
            let mut patch_status = status.clone();
            if let Some(c) = d["status"]["collisionCount"].as_i64() {
                patch_status["collisionCount"] = json!(c);
            }
            let r = self
                .client
                .merge_patch(
                    "apps",
                    "deployments",
                    Some(owner::namespace(d)),
                    owner::name(d),
                    Some("status"),
                    &json!({"status": patch_status}),
                )
                .await;
            if let Err(e) = r {
                if !e.is_not_found() {
                    return Err(e.to_string());
                }
            }
        }
        if !complete && reason != "DeploymentPaused" {
            // Re-check the progress deadline even if nothing else changes.
            return Ok(Action::RequeueAfter(Duration::from_secs((deadline.max(1) as u64).min(30))));
        }
        Ok(Action::Done)
    }
}

impl Reconciler for DeploymentController {
    fn name(&self) -> &'static str {
        "deployment"
    }
    fn reconcile(&self, key: ObjectKey) -> BoxFuture<'_, ReconcileResult> {
        Box::pin(self.sync(key))
    }
}

pub fn run(ctrl: Arc<DeploymentController>) -> Vec<BoxFuture<'static, ()>> {
    let c = ctrl.clone();
    let feed: BoxFuture<'static, ()> = Box::pin(async move {
        let mut d_changes = c.informers.deployments.subscribe();
        let mut rs_changes = c.informers.replicasets.subscribe();
        c.informers.deployments.wait_synced().await;
        c.informers.replicasets.wait_synced().await;
        c.enqueue_all();
        loop {
            tokio::select! {
                ch = d_changes.recv() => match ch {
                    Ok(Change::Applied { new, .. }) => c.queue.add(key_of(&new)),
                    Ok(Change::Deleted(d)) => c.queue.add(key_of(&d)),
                    Ok(Change::Resynced) | Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => c.enqueue_all(),
                    Err(_) => return,
                },
                ch = rs_changes.recv() => match ch {
                    Ok(Change::Applied { new, .. }) => c.on_rs_change(&new),
                    Ok(Change::Deleted(rs)) => c.on_rs_change(&rs),
                    Ok(Change::Resynced) | Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => c.enqueue_all(),
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
