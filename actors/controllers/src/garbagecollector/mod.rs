//! The garbage collector: objects whose owners are all gone are deleted (background
//! propagation); owners being deleted in the foreground wait until their blocking dependents
//! are gone; owners deleted with the orphan policy first release their dependents. The
//! policies arrive as the `foregroundDeletion` and `orphan` finalizers the API server records.
//!
//! The owner/dependent [`graph`] is kept from every informer's changes, so a reconcile costs
//! lookups in it and in the owners' informers, never a scan of the cluster; work is queued by
//! uid only for objects that take part in ownership.

pub mod graph;

use futures::future::{join_all, BoxFuture};
use graph::{decide, Decision, Graph, Node, OwnerState, Uid, FOREGROUND, ORPHAN};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use kubus_apimachinery::meta::group_of;
use kubus_apimachinery::resource;
use kubus_controller_runtime::client::{DeleteParams, Propagation};
use kubus_controller_runtime::controller::{run_workers, Action, Error, Reconciler};
use kubus_controller_runtime::informer::MetaChange;
use kubus_controller_runtime::{Client, ClientError, DynInformer, InformerFactory, WorkQueue};
use prometheus::{register_int_gauge, IntGauge};
use serde_json::{json, Value};
use std::collections::HashMap;
use std::sync::{Arc, LazyLock, Mutex};
use std::time::Duration;

/// Upstream's `--concurrent-gc-syncs` default: reconciles mostly wait on the API server.
pub const WORKERS: usize = 20;

static GRAPH_NODES: LazyLock<IntGauge> = LazyLock::new(|| {
    register_int_gauge!(
        "kubus_garbagecollector_graph_nodes",
        "Objects in the garbage collector's ownership graph (with owner references or deletion finalizers)"
    )
    .expect("registers once")
});

pub struct GarbageCollector {
    client: Client,
    graph: Arc<Mutex<Graph>>,
    /// Every stored resource's informer, by (storage group, storage resource).
    informers: HashMap<(&'static str, &'static str), Arc<dyn DynInformer>>,
}

/// Starts the collector over every stored resource; the future runs it until dropped.
pub fn run(client: Client, factory: &InformerFactory) -> BoxFuture<'static, ()> {
    let all = factory.all();
    let graph: Arc<Mutex<Graph>> = Arc::default();
    let queue: Arc<WorkQueue<Uid>> = WorkQueue::new("garbagecollector");
    // Handlers are registered before the caches sync, so no change is missed; the first thing
    // each one sees is its informer's list (a resync).
    for informer in &all {
        let (graph, queue, source) = (graph.clone(), queue.clone(), informer.clone());
        let info = informer.info();
        informer.on_change(Box::new(move |change| {
            let uids = {
                let mut g = graph.lock().expect("graph lock");
                let uids = match change {
                    MetaChange::Resynced => g.resync(info, |f| source.for_each_meta(f)),
                    MetaChange::Applied { new, .. } => g.observe(info, new),
                    MetaChange::Deleted(meta) => g.remove(meta.uid.as_deref().unwrap_or("")),
                };
                GRAPH_NODES.set(g.len() as i64);
                uids
            };
            uids.into_iter().for_each(|u| queue.add(u));
        }));
    }
    let informers = all.iter().map(|i| ((i.info().storage_group, i.info().storage_resource), i.clone())).collect();
    let gc = Arc::new(GarbageCollector { client, graph, informers });
    Box::pin(async move {
        // Deciding that an owner is gone needs every cache filled first.
        join_all(all.iter().map(|i| i.wait_synced())).await;
        join_all(run_workers("garbagecollector", queue, gc, WORKERS)).await;
    })
}

fn propagation(policy: &str) -> Propagation {
    match policy {
        "Orphan" => Propagation::Orphan,
        "Foreground" => Propagation::Foreground,
        _ => Propagation::Background,
    }
}

/// A state of an owner from its metadata.
fn state_of(deleting: bool, foreground: bool) -> OwnerState {
    if deleting && foreground {
        OwnerState::WaitingForDependents
    } else {
        OwnerState::Solid
    }
}

impl GarbageCollector {
    fn graph(&self) -> std::sync::MutexGuard<'_, Graph> {
        self.graph.lock().expect("graph lock")
    }

    fn ignore_gone(r: Result<(), ClientError>) -> Result<(), Error> {
        match r {
            Err(e) if e.is_not_found() => Ok(()),
            other => Ok(other?),
        }
    }

    async fn delete(&self, node: &Node, policy: &str) -> Result<(), Error> {
        let params = DeleteParams::propagation(propagation(policy));
        match self.client.delete_dynamic(node.info, &node.namespace, &node.name, &params).await {
            // A conflict is a precondition that no longer holds: the change that broke it
            // requeues the object.
            Err(e) if e.is_not_found() || e.is_conflict() => Ok(()),
            other => Ok(other?),
        }
    }

    /// A merge patch of metadata, guarded by the resourceVersion the graph last saw.
    async fn patch_meta(&self, node: &Node, mut meta: Value) -> Result<(), Error> {
        meta["resourceVersion"] = json!(node.resource_version);
        let r =
            self.client.merge_patch_dynamic(node.info, &node.namespace, &node.name, &json!({"metadata": meta})).await;
        Self::ignore_gone(r.map(drop))
    }

    async fn remove_finalizer(&self, node: &Node, finalizer: &str) -> Result<(), Error> {
        let rest: Vec<&String> = node.finalizers.iter().filter(|f| *f != finalizer).collect();
        self.patch_meta(node, json!({"finalizers": rest})).await
    }

    /// What an owner reference points at: the owner's informer first, the API server when
    /// the informer does not have it (it may lag behind the dependent's).
    async fn owner_state(&self, r: &OwnerReference, namespace: &str) -> Result<OwnerState, Error> {
        if self.graph().is_absent(&r.uid) {
            return Ok(OwnerState::Dangling);
        }
        let Some(info) = resource::by_kind(group_of(&r.api_version), &r.kind) else {
            // As upstream: an owner of a kind this server does not know is an error, retried,
            // never a reason to delete.
            return Err(Error::InvalidObject(format!("owner kind {} ({}) is not served", r.kind, r.api_version)));
        };
        let ns = if info.namespaced { namespace } else { "" };
        let cached: Option<ObjectMeta> =
            self.informers.get(&(info.storage_group, info.storage_resource)).and_then(|i| i.meta(ns, &r.name));
        if let Some(m) = cached.filter(|m| m.uid.as_deref() == Some(r.uid.as_str())) {
            let foreground = m.finalizers.iter().flatten().any(|f| f == FOREGROUND);
            return Ok(state_of(m.deletion_timestamp.is_some(), foreground));
        }
        match self.client.get_metadata(info, ns, &r.name).await {
            Ok(meta) if meta.uid.as_deref() == Some(r.uid.as_str()) => {
                let foreground = meta.finalizers.iter().flatten().any(|f| f == FOREGROUND);
                Ok(state_of(meta.deletion_timestamp.is_some(), foreground))
            }
            Ok(_) => {
                self.graph().mark_absent(&r.uid);
                Ok(OwnerState::Dangling)
            }
            Err(e) if e.is_not_found() => {
                self.graph().mark_absent(&r.uid);
                Ok(OwnerState::Dangling)
            }
            Err(e) => Err(e.into()),
        }
    }

    /// As an owner being deleted: carry out its propagation policy.
    async fn sync_deleting(&self, uid: &str, node: &Node) -> Result<Action, Error> {
        if node.has_finalizer(ORPHAN) {
            let dependents: Vec<Node> = self.graph().dependents(uid).into_iter().map(|(_, n)| n.clone()).collect();
            for d in dependents {
                let refs: Vec<&OwnerReference> = d.owners.iter().filter(|r| r.uid != uid).collect();
                self.patch_meta(&d, json!({"ownerReferences": refs})).await?;
            }
            self.remove_finalizer(node, ORPHAN).await?;
            return Ok(Action::Done);
        }
        if node.has_finalizer(FOREGROUND) {
            let blocking: Vec<Node> =
                self.graph().blocking_dependents(uid).into_iter().map(|(_, n)| n.clone()).collect();
            if blocking.is_empty() {
                self.remove_finalizer(node, FOREGROUND).await?;
                return Ok(Action::Done);
            }
            for d in blocking.iter().filter(|d| !d.deleting) {
                self.delete(d, "Foreground").await?;
            }
            // Each dependent's deletion queues this owner again; the deadline is a safety net.
            return Ok(Action::RequeueAfter(Duration::from_secs(10)));
        }
        Ok(Action::Done)
    }

    async fn sync(&self, uid: &Uid) -> Result<Action, Error> {
        let Some(node) = self.graph().get(uid).cloned() else {
            return Ok(Action::Done);
        };
        if node.deleting {
            return self.sync_deleting(uid, &node).await;
        }
        let mut owners = Vec::with_capacity(node.owners.len());
        for r in &node.owners {
            owners.push((r.uid.clone(), self.owner_state(r, &node.namespace).await?));
        }
        let deleting_dependents = self.graph().dependents(uid).iter().any(|(_, d)| d.deleting_dependents());
        match decide(&node, &owners, deleting_dependents) {
            Decision::Nothing => {}
            Decision::Delete(policy) => self.delete(&node, policy).await?,
            Decision::RemoveOwners(gone) => {
                let keep: Vec<&OwnerReference> = node.owners.iter().filter(|r| !gone.contains(&r.uid)).collect();
                self.patch_meta(&node, json!({"ownerReferences": keep})).await?;
            }
            Decision::UnblockThenDelete => {
                let unblocked: Vec<OwnerReference> = node
                    .owners
                    .iter()
                    .map(|r| OwnerReference { block_owner_deletion: Some(false), ..r.clone() })
                    .collect();
                self.patch_meta(&node, json!({"ownerReferences": unblocked})).await?;
                self.delete(&node, "Foreground").await?;
            }
        }
        Ok(Action::Done)
    }
}

impl Reconciler<Uid> for GarbageCollector {
    type Error = Error;
    async fn reconcile(&self, uid: &Uid) -> Result<Action, Error> {
        self.sync(uid).await
    }
}
