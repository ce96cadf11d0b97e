//! The root CA certificate publisher (upstream's `root-ca-cert-publisher`): every active
//! namespace holds the ConfigMap `kube-root-ca.crt` with the cluster CA (`ca.crt`), which the
//! `kube-api-access-*` volume of every pod projects, so an in-cluster client can check the API
//! server's certificate. A changed or deleted copy is put back.

use futures::future::BoxFuture;
use k8s_openapi::api::core::v1::{ConfigMap, Namespace};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kubus_apimachinery::{ObjectExt, ObjectKey};
use kubus_controller_runtime::controller::{Action, Controller, Reconciler};
use kubus_controller_runtime::{Change, Client, ClientError, Informer, InformerFactory};
use std::collections::BTreeMap;
use std::sync::Arc;

/// The ConfigMap's name and key, as upstream's.
pub const ROOT_CA_CONFIGMAP: &str = "kube-root-ca.crt";
pub const ROOT_CA_KEY: &str = "ca.crt";
const DESCRIPTION: &str = "Contains a CA bundle that can be used to verify the kube-apiserver when using internal endpoints such as the internal service IP or kubernetes.default.svc. No other usage is guaranteed across distributions of Kubernetes clusters.";
pub const WORKERS: usize = 1;

pub struct RootCaPublisher {
    client: Client,
    namespaces: Informer<Namespace>,
    configmaps: Informer<ConfigMap>,
    ca_pem: String,
}

/// Starts the publisher of `ca_pem`; the future runs it until dropped.
pub fn run(client: Client, factory: &InformerFactory, ca_pem: String) -> BoxFuture<'static, ()> {
    let (namespaces, configmaps) = (factory.get::<Namespace>(), factory.get::<ConfigMap>());
    let ours = |change: &Change<ConfigMap>| match change {
        Change::Applied { new: cm, .. } | Change::Deleted(cm) if cm.name() == ROOT_CA_CONFIGMAP => {
            vec![(String::new(), cm.namespace().to_string())]
        }
        _ => Vec::new(),
    };
    let ctrl = Controller::new("root-ca-cert-publisher", namespaces.clone())
        .watches_changes(configmaps.clone(), ours)
        .workers(WORKERS);
    ctrl.run(Arc::new(RootCaPublisher { client, namespaces, configmaps, ca_pem }))
}

impl RootCaPublisher {
    fn wanted(&self, ns: &str, existing: Option<&ConfigMap>) -> ConfigMap {
        let mut metadata = existing.map(|c| c.metadata.clone()).unwrap_or_else(|| ObjectMeta {
            name: Some(ROOT_CA_CONFIGMAP.into()),
            namespace: Some(ns.to_string()),
            ..Default::default()
        });
        metadata
            .annotations
            .get_or_insert_with(BTreeMap::new)
            .insert("kubernetes.io/description".into(), DESCRIPTION.into());
        ConfigMap {
            metadata,
            data: Some(BTreeMap::from([(ROOT_CA_KEY.to_string(), self.ca_pem.clone())])),
            ..Default::default()
        }
    }
}

impl Reconciler for RootCaPublisher {
    type Error = ClientError;
    async fn reconcile(&self, key: &ObjectKey) -> Result<Action, ClientError> {
        let ns = &key.1;
        match self.namespaces.get("", ns) {
            Some(n) if !n.is_deleting() => {}
            _ => return Ok(Action::Done),
        }
        let existing = self.configmaps.get(ns, ROOT_CA_CONFIGMAP);
        let result = match existing.as_deref() {
            None => self.client.create(&self.wanted(ns, None)).await.map(drop),
            Some(cm) => {
                let current = cm.data.as_ref().and_then(|d| d.get(ROOT_CA_KEY));
                if current == Some(&self.ca_pem) {
                    return Ok(Action::Done);
                }
                self.client.replace(&self.wanted(ns, Some(cm))).await.map(drop)
            }
        };
        match result {
            Ok(()) => Ok(Action::Done),
            // Made meanwhile, or the namespace is going away: the next change says what to do.
            Err(e) if e.is_conflict() || e.is_not_found() || e.code() == Some(403) => Ok(Action::Done),
            Err(e) => Err(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_configmap_carries_the_ca_under_upstreams_names() {
        let cm = serde_json::to_value(ConfigMap {
            metadata: ObjectMeta { name: Some(ROOT_CA_CONFIGMAP.into()), ..Default::default() },
            data: Some(BTreeMap::from([(ROOT_CA_KEY.to_string(), "PEM".to_string())])),
            ..Default::default()
        })
        .unwrap();
        assert_eq!(cm["metadata"]["name"], "kube-root-ca.crt");
        assert_eq!(cm["data"]["ca.crt"], "PEM");
    }
}
