//! The namespace controller: a namespace being deleted is emptied (every namespaced resource,
//! through deletecollection), and once nothing is left its `kubernetes` finalizer is removed
//! through `namespaces/finalize`, which lets the API server delete it. It also keeps the
//! `default` ServiceAccount in every active namespace (the ServiceAccount controller).

use futures::future::BoxFuture;
use k8s_openapi::api::core::v1::{Namespace, NamespaceSpec, ServiceAccount};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kubus_apimachinery::{resource, ObjectExt, ObjectKey, ResourceInfo};
use kubus_controller_runtime::controller::{Action, Controller, Reconciler};
use kubus_controller_runtime::{Change, Client, ClientError, Informer, InformerFactory};
use std::sync::Arc;
use std::time::Duration;

/// Upstream's `--concurrent-namespace-syncs` default.
pub const WORKERS: usize = 10;

/// Why a namespace sync failed; the key is retried with backoff.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Client(#[from] ClientError),
    #[error("emptying {namespace}: {resource}: {source}")]
    Emptying { namespace: String, resource: &'static str, source: ClientError },
}

pub struct NamespaceController {
    client: Client,
    /// Makes `default` ServiceAccounts (as upstream's service account controller).
    service_accounts_client: Client,
    namespaces: Informer<Namespace>,
    serviceaccounts: Informer<ServiceAccount>,
}

/// Starts the controller; the future runs it until dropped.
pub fn run(
    client: Client,
    service_accounts_client: Client,
    factory: &InformerFactory,
    workers: usize,
) -> BoxFuture<'static, ()> {
    let (namespaces, serviceaccounts) = (factory.get::<Namespace>(), factory.get::<ServiceAccount>());
    // A deleted `default` ServiceAccount is made again.
    let default_deleted = |change: &Change<ServiceAccount>| match change {
        Change::Deleted(sa) if sa.name() == "default" => vec![(String::new(), sa.namespace().to_string())],
        _ => Vec::new(),
    };
    let ctrl = Controller::new("namespace", namespaces.clone())
        .watches_changes(serviceaccounts.clone(), default_deleted)
        .workers(workers);
    ctrl.run(Arc::new(NamespaceController { client, service_accounts_client, namespaces, serviceaccounts }))
}

/// The namespaced resources a namespace is emptied of: every one with its own storage.
fn namespaced() -> impl Iterator<Item = &'static ResourceInfo> {
    resource::all().iter().filter(|r| r.namespaced && r.is_storage())
}

/// The request that removes the `kubernetes` finalizer (`PUT namespaces/<name>/finalize`).
pub fn finalize(name: &str) -> Namespace {
    Namespace {
        metadata: ObjectMeta { name: Some(name.to_string()), ..Default::default() },
        spec: Some(NamespaceSpec { finalizers: Some(Vec::new()) }),
        status: None,
    }
}

impl NamespaceController {
    async fn sync(&self, key: &ObjectKey) -> Result<Action, Error> {
        let Some(ns) = self.namespaces.get("", &key.1) else {
            return Ok(Action::Done);
        };
        let name = ns.name().to_string();
        if !ns.is_deleting() {
            return self.ensure_default_service_account(&name).await;
        }
        let mut remaining = 0;
        for r in namespaced() {
            let emptying = |source| Error::Emptying { namespace: name.clone(), resource: r.resource, source };
            self.client.delete_collection_dynamic(r, Some(&name), "").await.map_err(emptying)?;
            remaining += self.client.count_dynamic(r, Some(&name), "").await?;
        }
        if remaining > 0 {
            // Pods on nodes terminate gracefully; look again shortly.
            return Ok(Action::RequeueAfter(Duration::from_secs(1)));
        }
        match self.client.replace_subresource::<Namespace, _>("", &name, "finalize", &finalize(&name)).await {
            Ok(_) => Ok(Action::Done),
            Err(e) if e.is_not_found() => Ok(Action::Done),
            Err(e) => Err(e.into()),
        }
    }

    async fn ensure_default_service_account(&self, ns: &str) -> Result<Action, Error> {
        if self.serviceaccounts.get(ns, "default").is_some() {
            return Ok(Action::Done);
        }
        let sa = ServiceAccount {
            metadata: ObjectMeta {
                name: Some("default".into()),
                namespace: Some(ns.to_string()),
                ..Default::default()
            },
            ..Default::default()
        };
        match self.service_accounts_client.create(&sa).await {
            Ok(_) => Ok(Action::Done),
            Err(e) if e.is_conflict() || e.code() == Some(403) || e.is_not_found() => Ok(Action::Done),
            Err(e) => Err(e.into()),
        }
    }
}

impl Reconciler for NamespaceController {
    type Error = Error;
    async fn reconcile(&self, key: &ObjectKey) -> Result<Action, Error> {
        self.sync(key).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kubus_controller_runtime::client::path;
    use serde_json::json;

    #[test]
    fn finalize_sends_the_namespace_without_finalizers() {
        assert_eq!(
            serde_json::to_value(finalize("doomed")).unwrap(),
            json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "doomed"}, "spec": {"finalizers": []}})
        );
        assert_eq!(
            path(resource::of::<Namespace>(), None, Some("doomed"), Some("finalize")),
            "/api/v1/namespaces/doomed/finalize"
        );
    }

    #[test]
    fn emptying_covers_stored_namespaced_resources_once() {
        let names: Vec<(&str, &str)> = namespaced().map(|r| (r.group, r.resource)).collect();
        for expected in [("", "pods"), ("apps", "replicasets"), ("", "configmaps"), ("", "events")] {
            assert!(names.contains(&expected), "{expected:?} in {names:?}");
        }
        assert!(!names.contains(&("", "namespaces")) && !names.contains(&("", "nodes")));
        // events.k8s.io Events are stored as core Events: emptied once, through those.
        assert!(!names.contains(&("events.k8s.io", "events")));
    }
}
