//! The namespace controller: a namespace being deleted is emptied (every namespaced resource,
//! through deletecollection), and once nothing is left its `kubernetes` finalizer is removed
//! through `namespaces/finalize`, which lets the API server delete it. It also keeps the
//! `default` ServiceAccount in every active namespace (the ServiceAccount controller).

use crate::owner;
use crate::Informers;
use futures::future::BoxFuture;
use kubus_apimachinery::resource;
use kubus_runtime::controller::{self, Action, ReconcileResult, Reconciler};
use kubus_runtime::informer::ObjectKey;
use kubus_runtime::{Change, Client, WorkQueue};
use serde_json::json;
use std::sync::Arc;
use std::time::Duration;

pub struct NamespaceController {
    client: Client,
    informers: Informers,
    queue: Arc<WorkQueue<ObjectKey>>,
}

impl NamespaceController {
    pub fn new(client: Client, informers: Informers) -> Self {
        NamespaceController { client, informers, queue: WorkQueue::new("namespace") }
    }

    fn enqueue_all(&self) {
        for ns in self.informers.namespaces.list() {
            self.queue.add((String::new(), owner::name(&ns).to_string()));
        }
    }

    async fn sync(&self, key: ObjectKey) -> ReconcileResult {
        let Some(ns) = self.informers.namespaces.get("", &key.1) else {
            return Ok(Action::Done);
        };
        let name = owner::name(&ns).to_string();
        if !owner::is_deleting(&ns) {
            return self.ensure_default_service_account(&name).await;
        }
        // Empty it: every namespaced resource that has its own storage.
        let mut remaining = 0;
        for r in resource::all().iter().filter(|r| r.namespaced && r.storage_group == r.group) {
            self.client
                .delete_collection(r.group, r.resource, Some(&name), "")
                .await
                .map_err(|e| format!("emptying {name}: {}: {e}", r.resource))?;
            remaining += self.client.list(r.group, r.resource, Some(&name), "").await.map_err(|e| e.to_string())?.len();
        }
        if remaining > 0 {
            // Pods on nodes terminate gracefully; look again shortly.
            return Ok(Action::RequeueAfter(Duration::from_secs(1)));
        }
        let body =
            json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}, "spec": {"finalizers": []}});
        match self.client.update("", "namespaces", None, &name, Some("finalize"), &body).await {
            Ok(_) => Ok(Action::Done),
            Err(e) if e.is_not_found() => Ok(Action::Done),
            Err(e) => Err(e.to_string()),
        }
    }

    async fn ensure_default_service_account(&self, ns: &str) -> ReconcileResult {
        if self.informers.serviceaccounts.get(ns, "default").is_some() {
            return Ok(Action::Done);
        }
        let sa =
            json!({"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "default", "namespace": ns}});
        match self.client.create("", "serviceaccounts", Some(ns), &sa).await {
            Ok(_) => Ok(Action::Done),
            Err(e) if e.is_conflict() || e.code() == Some(403) || e.is_not_found() => Ok(Action::Done),
            Err(e) => Err(e.to_string()),
        }
    }
}

impl Reconciler for NamespaceController {
    fn name(&self) -> &'static str {
        "namespace"
    }
    fn reconcile(&self, key: ObjectKey) -> BoxFuture<'_, ReconcileResult> {
        Box::pin(self.sync(key))
    }
}

pub fn run(ctrl: Arc<NamespaceController>) -> Vec<BoxFuture<'static, ()>> {
    let c = ctrl.clone();
    let feed: BoxFuture<'static, ()> = Box::pin(async move {
        let mut ns_changes = c.informers.namespaces.subscribe();
        let mut sa_changes = c.informers.serviceaccounts.subscribe();
        c.informers.namespaces.wait_synced().await;
        c.informers.serviceaccounts.wait_synced().await;
        c.enqueue_all();
        loop {
            tokio::select! {
                ch = ns_changes.recv() => match ch {
                    Ok(Change::Applied { new, .. }) => c.queue.add((String::new(), owner::name(&new).to_string())),
                    Ok(Change::Deleted(_)) => {}
                    Ok(Change::Resynced) | Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => c.enqueue_all(),
                    Err(_) => return,
                },
                ch = sa_changes.recv() => match ch {
                    Ok(Change::Deleted(sa)) if owner::name(&sa) == "default" => c.queue.add((String::new(), owner::namespace(&sa).to_string())),
                    Ok(_) => {}
                    Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => c.enqueue_all(),
                    Err(_) => return,
                },
            }
        }
    });
    let queue = ctrl.queue.clone();
    let mut loops = controller::workers(ctrl, queue, 2);
    loops.push(feed);
    loops
}
