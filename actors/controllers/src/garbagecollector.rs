//! The garbage collector: objects whose owners are all gone are deleted (background
//! propagation); owners being deleted in the foreground wait until their dependents are gone;
//! owners deleted with the orphan policy first release their dependents. The policies arrive
//! as the `foregroundDeletion` and `orphan` finalizers the API server records.

use crate::owner;
use crate::Informers;
use futures::future::BoxFuture;
use kubus_apimachinery::{resource, ResourceInfo};
use kubus_runtime::controller::{self, Action, ReconcileResult, Reconciler};
use kubus_runtime::informer::ObjectKey;
use kubus_runtime::{Change, Client, WorkQueue};
use serde_json::{json, Value};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

const FOREGROUND: &str = "foregroundDeletion";
const ORPHAN: &str = "orphan";

pub struct GarbageCollector {
    client: Client,
    informers: Informers,
    /// Keys are ("<group>/<resource>/<namespace>", name).
    queue: Arc<WorkQueue<ObjectKey>>,
}

fn finalizers(obj: &Value) -> Vec<&str> {
    obj["metadata"]["finalizers"].as_array().into_iter().flatten().filter_map(Value::as_str).collect()
}

fn owner_refs(obj: &Value) -> Vec<Value> {
    obj["metadata"]["ownerReferences"].as_array().cloned().unwrap_or_default()
}

/// The resource an owner reference names (its apiVersion's group and its kind).
fn owner_info(r: &Value) -> Option<&'static ResourceInfo> {
    let api_version = r["apiVersion"].as_str().unwrap_or("v1");
    let group = api_version.rsplit_once('/').map(|(g, _)| g).unwrap_or("");
    resource::by_kind(group, r["kind"].as_str().unwrap_or(""))
}

impl GarbageCollector {
    pub fn new(client: Client, informers: Informers) -> Self {
        GarbageCollector { client, informers, queue: WorkQueue::new("garbagecollector") }
    }

    fn key(info: &ResourceInfo, obj: &Value) -> ObjectKey {
        (format!("{}/{}/{}", info.group, info.resource, owner::namespace(obj)), owner::name(obj).to_string())
    }

    fn object(&self, key: &ObjectKey) -> Option<(&'static ResourceInfo, Arc<Value>)> {
        let mut parts = key.0.splitn(3, '/');
        let (g, r, ns) = (parts.next()?, parts.next()?, parts.next()?);
        let (info, inf) = self.informers.all.iter().find(|(i, _)| i.group == g && i.resource == r)?;
        inf.get(ns, &key.1).map(|o| (*info, o))
    }

    /// Live objects by uid, across every informer.
    fn uids(&self) -> HashMap<String, (&'static ResourceInfo, Arc<Value>)> {
        let mut m = HashMap::new();
        for (info, inf) in &self.informers.all {
            for o in inf.list() {
                m.insert(owner::uid(&o).to_string(), (*info, o));
            }
        }
        m
    }

    /// The dependents of an owner, by uid.
    fn dependents(&self, uid: &str) -> Vec<(&'static ResourceInfo, Arc<Value>)> {
        let mut out = Vec::new();
        for (info, inf) in &self.informers.all {
            for o in inf.list() {
                if owner_refs(&o).iter().any(|r| r["uid"] == uid) {
                    out.push((*info, o));
                }
            }
        }
        out
    }

    fn enqueue_all(&self) {
        for (info, inf) in &self.informers.all {
            for o in inf.list() {
                if !owner_refs(&o).is_empty() || owner::is_deleting(&o) {
                    self.queue.add(Self::key(info, &o));
                }
            }
        }
    }

    fn on_change(&self, info: &'static ResourceInfo, change: &Change) {
        match change {
            Change::Applied { new, .. } => {
                if !owner_refs(new).is_empty() || owner::is_deleting(new) {
                    self.queue.add(Self::key(info, new));
                }
            }
            Change::Deleted(obj) => {
                // Its dependents may now be garbage.
                for (dinfo, d) in self.dependents(owner::uid(obj)) {
                    self.queue.add(Self::key(dinfo, &d));
                }
            }
            Change::Resynced => self.enqueue_all(),
        }
    }

    async fn delete(&self, info: &ResourceInfo, obj: &Value, policy: &str) -> Result<(), String> {
        let ns = info.namespaced.then(|| owner::namespace(obj));
        let query = format!("propagationPolicy={policy}");
        match self.client.delete(info.group, info.resource, ns, owner::name(obj), &query).await {
            Ok(_) => Ok(()),
            Err(e) if e.is_not_found() || e.is_conflict() => Ok(()),
            Err(e) => Err(e.to_string()),
        }
    }

    async fn patch_meta(&self, info: &ResourceInfo, obj: &Value, meta: Value) -> Result<(), String> {
        let ns = info.namespaced.then(|| owner::namespace(obj));
        let mut meta = meta;
        meta["resourceVersion"] = obj["metadata"]["resourceVersion"].clone();
        match self
            .client
            .merge_patch(info.group, info.resource, ns, owner::name(obj), None, &json!({"metadata": meta}))
            .await
        {
            Ok(_) => Ok(()),
            Err(e) if e.is_not_found() => Ok(()),
            Err(e) => Err(e.to_string()),
        }
    }

    /// Is the owner a reference names really gone? The informers may lag, so ask the API
    /// server before deleting anything.
    async fn owner_absent(
        &self,
        r: &Value,
        namespace: &str,
        live: &HashMap<String, (&'static ResourceInfo, Arc<Value>)>,
    ) -> bool {
        let uid = r["uid"].as_str().unwrap_or("");
        if live.contains_key(uid) {
            return false;
        }
        let Some(info) = owner_info(r) else {
            return true;
        };
        let ns = info.namespaced.then_some(namespace);
        match self.client.get(info.group, info.resource, ns, r["name"].as_str().unwrap_or("")).await {
            Ok(o) => owner::uid(&o) != uid,
            Err(e) => e.is_not_found(),
        }
    }

    async fn sync(&self, key: ObjectKey) -> ReconcileResult {
        let Some((info, obj)) = self.object(&key) else {
            return Ok(Action::Done);
        };
        // As an owner being deleted: honour its propagation policy.
        if owner::is_deleting(&obj) {
            let fins = finalizers(&obj);
            if fins.contains(&ORPHAN) {
                for (dinfo, d) in self.dependents(owner::uid(&obj)) {
                    let refs: Vec<Value> =
                        owner_refs(&d).into_iter().filter(|r| r["uid"] != owner::uid(&obj)).collect();
                    self.patch_meta(dinfo, &d, json!({"ownerReferences": refs})).await?;
                }
                let rest: Vec<&str> = fins.into_iter().filter(|f| *f != ORPHAN).collect();
                self.patch_meta(info, &obj, json!({"finalizers": rest})).await?;
                return Ok(Action::Done);
            }
            if fins.contains(&FOREGROUND) {
                let dependents = self.dependents(owner::uid(&obj));
                if dependents.is_empty() {
                    let rest: Vec<&str> = fins.into_iter().filter(|f| *f != FOREGROUND).collect();
                    self.patch_meta(info, &obj, json!({"finalizers": rest})).await?;
                    return Ok(Action::Done);
                }
                for (dinfo, d) in dependents {
                    if !owner::is_deleting(&d) {
                        self.delete(dinfo, &d, "Foreground").await?;
                    }
                }
                return Ok(Action::RequeueAfter(Duration::from_secs(1)));
            }
        }
        // As a dependent: garbage once every owner is gone.
        let refs = owner_refs(&obj);
        if refs.is_empty() {
            return Ok(Action::Done);
        }
        let live = self.uids();
        let mut absent = Vec::new();
        for r in &refs {
            if self.owner_absent(r, owner::namespace(&obj), &live).await {
                absent.push(r["uid"].clone());
            }
        }
        if absent.is_empty() {
            // An owner deleting in the foreground waits for this dependent.
            let waiting = refs.iter().any(|r| {
                live.get(r["uid"].as_str().unwrap_or(""))
                    .is_some_and(|(_, o)| owner::is_deleting(o) && finalizers(o).contains(&FOREGROUND))
            });
            if waiting && !owner::is_deleting(&obj) {
                self.delete(info, &obj, "Foreground").await?;
            }
            return Ok(Action::Done);
        }
        if absent.len() == refs.len() {
            if !owner::is_deleting(&obj) {
                self.delete(info, &obj, "Background").await?;
            }
        } else {
            let keep: Vec<Value> = refs.into_iter().filter(|r| !absent.contains(&r["uid"])).collect();
            self.patch_meta(info, &obj, json!({"ownerReferences": keep})).await?;
        }
        Ok(Action::Done)
    }
}

impl Reconciler for GarbageCollector {
    fn name(&self) -> &'static str {
        "garbagecollector"
    }
    fn reconcile(&self, key: ObjectKey) -> BoxFuture<'_, ReconcileResult> {
        Box::pin(self.sync(key))
    }
}

pub fn run(gc: Arc<GarbageCollector>) -> Vec<BoxFuture<'static, ()>> {
    let mut loops: Vec<BoxFuture<'static, ()>> = Vec::new();
    for (info, inf) in gc.informers.all.clone() {
        let g = gc.clone();
        loops.push(Box::pin(async move {
            let mut changes = inf.subscribe();
            for (_, i) in &g.informers.all {
                i.wait_synced().await;
            }
            g.enqueue_all();
            loop {
                match changes.recv().await {
                    Ok(ch) => g.on_change(info, &ch),
                    Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => g.enqueue_all(),
                    Err(_) => return,
                }
            }
        }));
    }
    let queue = gc.queue.clone();
    loops.extend(controller::workers(gc, queue, 2));
    loops
}
