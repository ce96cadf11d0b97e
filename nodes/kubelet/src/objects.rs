//! How the kubelet reads the ConfigMaps, Secrets and ServiceAccount tokens its pods refer to:
//! through the API server, like upstream's default (`Get`) change-detection strategy, so a
//! node needs no watch on every Secret of the cluster.

use futures::future::BoxFuture;
use k8s_openapi::api::authentication::v1::{BoundObjectReference, TokenRequest, TokenRequestSpec};
use k8s_openapi::api::core::v1::{ConfigMap, PersistentVolume, PersistentVolumeClaim, Pod, Secret, ServiceAccount};
use kubus_apimachinery::volume;
use kubus_apimachinery::{pod, ObjectExt};
use kubus_controller_runtime::Client;
use std::collections::BTreeMap;

/// Which kind of object a pod's environment or volume reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SourceKind {
    ConfigMap,
    Secret,
}

impl SourceKind {
    /// As messages name it ("configmap \"x\" not found").
    pub fn name(self) -> &'static str {
        match self {
            SourceKind::ConfigMap => "configmap",
            SourceKind::Secret => "secret",
        }
    }
}

/// A ConfigMap or a Secret as read from the API.
#[derive(Debug, Clone)]
pub enum SourceObject {
    ConfigMap(ConfigMap),
    Secret(Secret),
}

impl SourceObject {
    /// Its string data, as environment variables take it: a ConfigMap's `data`; a Secret's
    /// decoded `data` and its `stringData`.
    pub fn strings(&self) -> Vec<(String, String)> {
        match self {
            SourceObject::ConfigMap(cm) => cm.data.iter().flatten().map(|(k, v)| (k.clone(), v.clone())).collect(),
            SourceObject::Secret(s) => {
                let data =
                    s.data.iter().flatten().map(|(k, v)| (k.clone(), String::from_utf8_lossy(&v.0).into_owned()));
                data.chain(s.string_data.iter().flatten().map(|(k, v)| (k.clone(), v.clone()))).collect()
            }
        }
    }

    /// Its data as files take it: `data` and a ConfigMap's `binaryData`, as bytes.
    pub fn files(&self) -> BTreeMap<String, Vec<u8>> {
        match self {
            SourceObject::ConfigMap(cm) => {
                let text = cm.data.iter().flatten().map(|(k, v)| (k.clone(), v.as_bytes().to_vec()));
                text.chain(cm.binary_data.iter().flatten().map(|(k, v)| (k.clone(), v.0.clone()))).collect()
            }
            SourceObject::Secret(s) => s.data.iter().flatten().map(|(k, v)| (k.clone(), v.0.clone())).collect(),
        }
    }
}

/// Reads a ConfigMap or Secret; `Ok(None)` if absent.
pub trait ObjectSource: Send + Sync {
    fn get<'a>(
        &'a self,
        kind: SourceKind,
        ns: &'a str,
        name: &'a str,
    ) -> BoxFuture<'a, Result<Option<SourceObject>, String>>;

    /// The host directory of the volume a claim is bound to; an error says why there is none
    /// yet (upstream's messages).
    fn claim_path<'a>(&'a self, ns: &'a str, claim: &'a str) -> BoxFuture<'a, Result<String, String>> {
        let _ = (ns, claim);
        Box::pin(std::future::ready(Err("persistent volumes are not available here".to_string())))
    }

    /// Reads a ServiceAccount (its image pull secrets); `Ok(None)` if absent.
    fn service_account<'a>(
        &'a self,
        ns: &'a str,
        name: &'a str,
    ) -> BoxFuture<'a, Result<Option<ServiceAccount>, String>>;
}

impl ObjectSource for Client {
    fn get<'a>(
        &'a self,
        kind: SourceKind,
        ns: &'a str,
        name: &'a str,
    ) -> BoxFuture<'a, Result<Option<SourceObject>, String>> {
        Box::pin(async move {
            let got = match kind {
                SourceKind::ConfigMap => Client::get::<ConfigMap>(self, ns, name).await.map(SourceObject::ConfigMap),
                SourceKind::Secret => Client::get::<Secret>(self, ns, name).await.map(SourceObject::Secret),
            };
            match got {
                Ok(o) => Ok(Some(o)),
                Err(e) if e.is_not_found() => Ok(None),
                Err(e) => Err(e.to_string()),
            }
        })
    }

    fn claim_path<'a>(&'a self, ns: &'a str, claim: &'a str) -> BoxFuture<'a, Result<String, String>> {
        Box::pin(async move {
            let pvc = match Client::get::<PersistentVolumeClaim>(self, ns, claim).await {
                Ok(c) => c,
                Err(e) if e.is_not_found() => return Err(format!("persistentvolumeclaim \"{claim}\" not found")),
                Err(e) => return Err(e.to_string()),
            };
            let Some(pv_name) = volume::volume_name(&pvc) else {
                return Err(format!("PVC {ns}/{claim} has non-bound phase (\"Pending\")"));
            };
            let pv = Client::get::<PersistentVolume>(self, "", pv_name).await.map_err(|e| e.to_string())?;
            volume::host_path(&pv)
                .map(String::from)
                .ok_or_else(|| format!("volume {pv_name} is of a type this node cannot mount"))
        })
    }

    fn service_account<'a>(
        &'a self,
        ns: &'a str,
        name: &'a str,
    ) -> BoxFuture<'a, Result<Option<ServiceAccount>, String>> {
        Box::pin(async move {
            match Client::get::<ServiceAccount>(self, ns, name).await {
                Ok(sa) => Ok(Some(sa)),
                Err(e) if e.is_not_found() => Ok(None),
                Err(e) => Err(e.to_string()),
            }
        })
    }
}

/// Issues ServiceAccount tokens for projected volumes (the TokenRequest API).
pub trait TokenSource: Send + Sync {
    fn token<'a>(
        &'a self,
        pod: &'a Pod,
        audience: Option<String>,
        expiration_seconds: i64,
    ) -> BoxFuture<'a, Result<String, String>>;
}

impl TokenSource for Client {
    fn token<'a>(
        &'a self,
        pod: &'a Pod,
        audience: Option<String>,
        expiration_seconds: i64,
    ) -> BoxFuture<'a, Result<String, String>> {
        Box::pin(async move {
            let sa = pod::spec(pod).service_account_name.as_deref().unwrap_or("default");
            let request = TokenRequest {
                spec: TokenRequestSpec {
                    audiences: audience.into_iter().collect(),
                    expiration_seconds: Some(expiration_seconds),
                    bound_object_ref: Some(BoundObjectReference {
                        kind: Some("Pod".into()),
                        api_version: Some("v1".into()),
                        name: Some(pod.name().to_string()),
                        uid: Some(pod.uid().to_string()),
                    }),
                },
                ..Default::default()
            };
            let ns = pod.namespace_or_default();
            let resp: TokenRequest = self
                .create_subresource::<ServiceAccount, _, _>(ns, sa, "token", &request)
                .await
                .map_err(|e| e.to_string())?;
            resp.status.map(|s| s.token).ok_or_else(|| "token request returned no token".to_string())
        })
    }
}
