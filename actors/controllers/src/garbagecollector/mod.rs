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
use futures::StreamExt;
use graph::{coordinates, decide, Decision, Graph, Node, OwnerState, Uid, FOREGROUND, ORPHAN};
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

/// Changes within this window make one reconcile of an object.
const COALESCE: Duration = Duration::from_millis(100);

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

/// Starts the collector over every stored resource; the future runs it until dropped (the
/// informers' handlers with it).
pub fn run(client: Client, factory: &InformerFactory, workers: usize) -> BoxFuture<'static, ()> {
    let all = factory.all();
    let graph: Arc<Mutex<Graph>> = Arc::default();
    let queue: Arc<WorkQueue<Uid>> = WorkQueue::new("garbagecollector");
    // Handlers subscribe now, so no change after this point is missed; what happened before is
    // read from the caches once they have synced (they may have long before: the informers are
    // the process's and outlive a controller manager that lost and regained leadership).
    let handlers: Vec<BoxFuture<'static, ()>> = all
        .iter()
        .map(|informer| {
            let (graph, queue, source) = (graph.clone(), queue.clone(), informer.clone());
            let info = informer.info();
            informer.on_change(Box::new(move |change| {
                let uids = {
                    let mut g = graph.lock().expect("graph lock");
                    let uids = match change {
                        MetaChange::Resynced => g.resync(info, |f| source.for_each_meta(f)),
                        MetaChange::Applied { new, .. } => g.observe(info, new),
                        MetaChange::Deleted(meta) => g.remove(info, meta),
                    };
                    GRAPH_NODES.set(g.len() as i64);
                    uids
                };
                // A burst of changes (an owner's thousands of dependents going) makes one
                // reconcile of each object per window.
                uids.into_iter().for_each(|u| queue.add_after(u, COALESCE));
            }))
        })
        .collect();
    let informers = all.iter().map(|i| ((i.info().storage_group, i.info().storage_resource), i.clone())).collect();
    let gc = Arc::new(GarbageCollector { client, graph: graph.clone(), informers });
    Box::pin(async move {
        let handlers = join_all(handlers);
        // Deciding that an owner is gone needs every cache filled first.
        join_all(all.iter().map(|i| i.wait_synced())).await;
        for informer in &all {
            let uids = graph.lock().expect("graph lock").resync(informer.info(), |f| informer.for_each_meta(f));
            uids.into_iter().for_each(|u| queue.add(u));
        }
        GRAPH_NODES.set(graph.lock().expect("graph lock").len() as i64);
        futures::future::join(handlers, join_all(run_workers("garbagecollector", queue, gc, workers))).await;
    })
}

/// A state of an owner from its metadata.
fn state_of(meta: &ObjectMeta) -> OwnerState {
    let foreground = meta.finalizers.iter().flatten().any(|f| f == FOREGROUND);
    if meta.deletion_timestamp.is_some() && foreground {
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

    /// Deletes the object the node is, and only that one (a uid precondition: a new object
    /// under the same name is left alone).
    async fn delete(&self, uid: &str, node: &Node, policy: Propagation) -> Result<(), Error> {
        let params = DeleteParams { propagation: Some(policy), uid: Some(uid.to_string()), ..Default::default() };
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

    /// What an owner reference of a dependent in `namespace` points at: the owner's informer
    /// first, then what the collector knows to be gone, then the API server (the informer may
    /// lag behind the dependent's). None: the reference cannot be valid (a cluster-scoped
    /// dependent naming a namespaced owner), so it decides nothing.
    async fn owner_state(&self, r: &OwnerReference, namespace: &str) -> Result<Option<OwnerState>, Error> {
        let Some(info) = resource::by_kind(group_of(&r.api_version), &r.kind) else {
            // As upstream: an owner of a kind this server does not know is an error, retried,
            // never a reason to delete.
            return Err(Error::InvalidObject(format!("owner kind {} ({}) is not served", r.kind, r.api_version)));
        };
        if info.namespaced && namespace.is_empty() {
            return Ok(None);
        }
        let ns = if info.namespaced { namespace } else { "" };
        let mut cached = None;
        if let Some(informer) = self.informers.get(&(info.storage_group, info.storage_resource)) {
            informer.inspect(ns, &r.name, &mut |m| {
                if m.uid.as_deref() == Some(r.uid.as_str()) {
                    cached = Some(state_of(m));
                }
            });
        }
        if cached.is_some() {
            return Ok(cached);
        }
        let key = coordinates(info, ns, &r.name, &r.uid);
        if self.graph().is_absent(&key) {
            return Ok(Some(OwnerState::Dangling));
        }
        match self.client.get_metadata(info, ns, &r.name).await {
            Ok(meta) if meta.uid.as_deref() == Some(r.uid.as_str()) => Ok(Some(state_of(&meta))),
            Ok(_) => {
                self.graph().mark_absent(&key);
                Ok(Some(OwnerState::Dangling))
            }
            Err(e) if e.is_not_found() => {
                self.graph().mark_absent(&key);
                Ok(Some(OwnerState::Dangling))
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
            // Every dependent goes (in the foreground itself); the owner waits only for those
            // whose reference blocks its deletion, as upstream.
            let (to_delete, blocking) = {
                let g = self.graph();
                let to_delete: Vec<(Uid, Node)> =
                    g.dependents(uid).into_iter().filter(|(_, n)| !n.deleting).map(|(u, n)| (u, n.clone())).collect();
                (to_delete, g.blocking_dependents(uid).len())
            };
            // As many at once as upstream's GC workers would take them: one owner's thousands
            // of dependents, deleted one after the other, took a round trip each.
            let deletes = futures::stream::iter(to_delete)
                .map(|(d_uid, d)| async move { self.delete(&d_uid, &d, Propagation::Foreground).await })
                .buffer_unordered(WORKERS);
            let results: Vec<Result<(), Error>> = deletes.collect().await;
            results.into_iter().collect::<Result<(), Error>>()?;
            if blocking == 0 {
                self.remove_finalizer(node, FOREGROUND).await?;
                return Ok(Action::Done);
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
            match self.owner_state(r, &node.namespace).await? {
                Some(state) => owners.push((r.uid.clone(), state)),
                None => {
                    // Upstream's OwnerRefInvalidNamespace: left alone, never deleted.
                    tracing::warn!(
                        object = %node.name, kind = node.info.kind, owner = %r.name, owner_kind = %r.kind,
                        "OwnerRefInvalidNamespace: a cluster-scoped object names a namespaced owner; ignored"
                    );
                    return Ok(Action::Done);
                }
            }
        }
        let deleting_dependents = self.graph().dependents(uid).iter().any(|(_, d)| d.deleting_dependents());
        match decide(&node, &owners, deleting_dependents) {
            Decision::Nothing => {}
            Decision::Delete(policy) => self.delete(uid, &node, policy).await?,
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
                self.delete(uid, &node, Propagation::Foreground).await?;
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
