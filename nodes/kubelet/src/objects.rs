//! How the kubelet reads the ConfigMaps, Secrets and ServiceAccount tokens its pods refer to:
//! through the API server, like upstream's default (`Get`) change-detection strategy, so a
//! node needs no watch on every Secret of the cluster.

use futures::future::BoxFuture;
use kubus_runtime::Client;
use serde_json::Value;

/// Reads a ConfigMap or Secret (`kind` is `configmap` or `secret`); `Ok(None)` if absent.
pub trait ObjectSource: Send + Sync {
    fn get<'a>(
        &'a self,
        kind: &'static str,
        ns: &'a str,
        name: &'a str,
    ) -> BoxFuture<'a, Result<Option<Value>, String>>;
}

impl ObjectSource for Client {
    fn get<'a>(
        &'a self,
        kind: &'static str,
        ns: &'a str,
        name: &'a str,
    ) -> BoxFuture<'a, Result<Option<Value>, String>> {
        Box::pin(async move {
            let resource = if kind == "secret" { "secrets" } else { "configmaps" };
            match Client::get(self, "", resource, Some(ns), name).await {
                Ok(v) => Ok(Some(v)),
                Err(e) if e.is_not_found() => Ok(None),
                Err(e) => Err(e.to_string()),
            }
        })
    }
}
