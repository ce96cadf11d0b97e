//! Writes (and the occasional read) through the API server over NATS, typed by the k8s-openapi
//! type of the resource, so every write is validated in one place. Code that handles every
//! resource alike (the garbage collector) uses the `*_dynamic` calls with a `ResourceInfo`.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kubus_apimachinery::{resource, Object, ObjectExt, ResourceInfo, StatusError};
use kubus_bus::api::ApiClient;
use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::Value;

#[derive(Clone)]
pub struct Client {
    api: ApiClient,
    /// Client-side rate limit (None: unlimited).
    limiter: Option<std::sync::Arc<crate::ratelimit::RateLimiter>>,
}

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The API server answered with a Status error.
    #[error("{0}")]
    Api(Box<StatusError>),
    /// The request did not reach the API server, or its answer did not come back.
    #[error("{0}")]
    Transport(String),
    /// The request or its answer is not the JSON of the expected type.
    #[error("{0}")]
    Encoding(#[from] serde_json::Error),
}

impl ClientError {
    pub fn code(&self) -> Option<u16> {
        match self {
            ClientError::Api(e) => Some(e.code),
            _ => None,
        }
    }
    pub fn is_not_found(&self) -> bool {
        self.code() == Some(404)
    }
    pub fn is_conflict(&self) -> bool {
        self.code() == Some(409)
    }
    pub fn is_already_exists(&self) -> bool {
        matches!(self, ClientError::Api(e) if e.reason == "AlreadyExists")
    }
}

/// How a DELETE propagates to dependents (upstream's `DeleteOptions.propagationPolicy`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Propagation {
    Background,
    Foreground,
    Orphan,
}

/// The options of a DELETE.
#[derive(Debug, Clone, Default)]
pub struct DeleteParams {
    pub propagation: Option<Propagation>,
    pub grace_period_seconds: Option<i64>,
    /// Delete only if the object is still the one with this uid (409 otherwise); sent as
    /// `DeleteOptions.preconditions` in the body, as client-go does.
    pub uid: Option<String>,
}

impl DeleteParams {
    pub fn propagation(p: Propagation) -> Self {
        DeleteParams { propagation: Some(p), ..Default::default() }
    }
    pub fn grace_period(seconds: i64) -> Self {
        DeleteParams { grace_period_seconds: Some(seconds), ..Default::default() }
    }
    /// The DeleteOptions body, when a precondition needs one.
    fn body(&self) -> Option<Value> {
        let uid = self.uid.as_ref()?;
        Some(serde_json::json!({"kind": "DeleteOptions", "apiVersion": "v1", "preconditions": {"uid": uid}}))
    }

    fn query(&self) -> String {
        let mut q = Vec::new();
        if let Some(p) = self.propagation {
            q.push(format!("propagationPolicy={p:?}"));
        }
        if let Some(s) = self.grace_period_seconds {
            q.push(format!("gracePeriodSeconds={s}"));
        }
        q.join("&")
    }
}

/// The path of a collection or, with a name, of one object (and a subresource).
pub fn path(info: &ResourceInfo, namespace: Option<&str>, name: Option<&str>, sub: Option<&str>) -> String {
    let mut p = if info.group.is_empty() {
        format!("/api/{}", info.version)
    } else {
        format!("/apis/{}/{}", info.group, info.version)
    };
    if info.namespaced {
        if let Some(ns) = namespace.filter(|ns| !ns.is_empty()) {
            p.push_str(&format!("/namespaces/{ns}"));
        }
    }
    p.push('/');
    p.push_str(info.resource);
    if let Some(n) = name {
        p.push('/');
        p.push_str(n);
    }
    if let Some(s) = sub {
        p.push('/');
        p.push_str(s);
    }
    p
}

/// The path of `K`'s collection or object from its type alone: also for kinds that are
/// served but not stored (metrics.k8s.io), which the resource registry does not hold.
pub fn type_path<K: k8s_openapi::Resource>(namespace: Option<&str>, name: Option<&str>) -> String
where
    K::Scope: 'static,
{
    let namespaced =
        std::any::TypeId::of::<K::Scope>() == std::any::TypeId::of::<k8s_openapi::NamespaceResourceScope>();
    let mut p =
        if K::GROUP.is_empty() { format!("/api/{}", K::VERSION) } else { format!("/apis/{}/{}", K::GROUP, K::VERSION) };
    if let Some(ns) = namespace.filter(|ns| namespaced && !ns.is_empty()) {
        p.push_str(&format!("/namespaces/{ns}"));
    }
    p.push('/');
    p.push_str(K::URL_PATH_SEGMENT);
    if let Some(n) = name {
        p.push('/');
        p.push_str(n);
    }
    p
}

/// Selectors of a LIST (client-go's ListOptions), in their string forms.
#[derive(Debug, Clone, Default)]
pub struct ListParams {
    pub label_selector: Option<String>,
    pub field_selector: Option<String>,
}

impl ListParams {
    pub fn labels(selector: &str) -> Self {
        ListParams { label_selector: Some(selector.to_string()), ..Default::default() }
    }

    fn query(&self) -> String {
        let mut q = Vec::new();
        if let Some(l) = self.label_selector.as_deref().filter(|s| !s.is_empty()) {
            q.push(format!("labelSelector={}", escape(l)));
        }
        if let Some(f) = self.field_selector.as_deref().filter(|s| !s.is_empty()) {
            q.push(format!("fieldSelector={}", escape(f)));
        }
        q.join("&")
    }
}

/// Percent-encodes a query parameter's value.
pub(crate) fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => out.push(b as char),
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

#[derive(serde::Deserialize)]
struct ListBody<K> {
    #[serde(default = "Vec::new")]
    items: Vec<K>,
}

const MERGE_PATCH: &str = "application/merge-patch+json";

impl Client {
    pub fn new(api: ApiClient) -> Self {
        Client { api, limiter: None }
    }

    /// The same client with a token bucket of its own: `qps` requests a second after a burst
    /// of `burst` (client-go's QPS and Burst); `who` names it in the limiter's metric.
    pub fn with_rate_limit(&self, qps: f64, burst: u32, who: &str) -> Client {
        let limiter = crate::ratelimit::RateLimiter::new(qps, burst, who);
        Client { api: self.api.clone(), limiter: Some(std::sync::Arc::new(limiter)) }
    }

    /// The same client (connection and rate limit) presenting `credential`.
    pub fn with_credential(&self, credential: kubus_bus::credential::Credential) -> Client {
        Client { api: self.api.clone().with_credential(credential), limiter: self.limiter.clone() }
    }

    /// One request; a Status error becomes [`ClientError::Api`].
    pub async fn request(
        &self,
        method: &str,
        path: &str,
        query: &str,
        content_type: Option<&str>,
        body: Option<&Value>,
    ) -> Result<Value, ClientError> {
        if let Some(limiter) = &self.limiter {
            limiter.acquire(method).await;
        }
        let (code, v) = self
            .api
            .json(method, path, query, content_type, body)
            .await
            .map_err(|e| ClientError::Transport(e.to_string()))?;
        if code >= 400 {
            if code == 401 {
                self.api.credential().refused();
            }
            return Err(ClientError::Api(Box::new(StatusError::from_status(code, &v))));
        }
        Ok(v)
    }

    async fn typed<R: DeserializeOwned>(
        &self,
        method: &str,
        path: &str,
        query: &str,
        content_type: Option<&str>,
        body: Option<&Value>,
    ) -> Result<R, ClientError> {
        Ok(serde_json::from_value(self.request(method, path, query, content_type, body).await?)?)
    }

    pub async fn get<K: Object>(&self, namespace: &str, name: &str) -> Result<K, ClientError>
    where
        K::Scope: 'static,
    {
        self.typed("GET", &type_path::<K>(Some(namespace), Some(name)), "", None, None).await
    }

    /// A LIST of `K` in `namespace` (None: every namespace) matching `params`' selectors; also
    /// of the metrics API (`client.list::<PodMetrics>(Some(ns), &ListParams::labels(sel))`).
    /// Reads go to the API server: informers are the way to follow a resource.
    pub async fn list<K: Object + k8s_openapi::ListableResource>(
        &self,
        namespace: Option<&str>,
        params: &ListParams,
    ) -> Result<Vec<K>, ClientError>
    where
        K::Scope: 'static,
    {
        let body: ListBody<K> =
            self.typed("GET", &type_path::<K>(namespace, None), &params.query(), None, None).await?;
        Ok(body.items)
    }

    /// Creates the object in its own namespace.
    pub async fn create<K: Object>(&self, obj: &K) -> Result<K, ClientError> {
        let body = serde_json::to_value(obj)?;
        self.typed("POST", &path(resource::of::<K>(), Some(obj.namespace()), None, None), "", None, Some(&body)).await
    }

    /// PUT of the whole object (its resourceVersion makes it lose to any concurrent change).
    pub async fn replace<K: Object>(&self, obj: &K) -> Result<K, ClientError> {
        let body = serde_json::to_value(obj)?;
        let p = path(resource::of::<K>(), Some(obj.namespace()), Some(obj.name()), None);
        self.typed("PUT", &p, "", None, Some(&body)).await
    }

    /// PUT to a subresource that answers with the object (e.g. `namespaces/finalize`).
    pub async fn replace_subresource<K: Object, B: Serialize>(
        &self,
        namespace: &str,
        name: &str,
        sub: &str,
        body: &B,
    ) -> Result<K, ClientError> {
        let body = serde_json::to_value(body)?;
        let p = path(resource::of::<K>(), Some(namespace), Some(name), Some(sub));
        self.typed("PUT", &p, "", None, Some(&body)).await
    }

    /// A JSON merge patch of the object.
    pub async fn merge_patch<K: Object>(&self, namespace: &str, name: &str, patch: &Value) -> Result<K, ClientError> {
        let p = path(resource::of::<K>(), Some(namespace), Some(name), None);
        self.typed("PATCH", &p, "", Some(MERGE_PATCH), Some(patch)).await
    }

    /// A JSON merge patch of the object's status.
    pub async fn merge_patch_status<K: Object>(
        &self,
        namespace: &str,
        name: &str,
        patch: &Value,
    ) -> Result<K, ClientError> {
        let p = path(resource::of::<K>(), Some(namespace), Some(name), Some("status"));
        self.typed("PATCH", &p, "", Some(MERGE_PATCH), Some(patch)).await
    }

    pub async fn delete<K: Object>(
        &self,
        namespace: &str,
        name: &str,
        params: &DeleteParams,
    ) -> Result<(), ClientError> {
        self.delete_dynamic(resource::of::<K>(), namespace, name, params).await
    }

    /// POST to a subresource (e.g. `pods/binding`).
    pub async fn create_subresource<K: Object, B: Serialize, R: DeserializeOwned>(
        &self,
        namespace: &str,
        name: &str,
        sub: &str,
        body: &B,
    ) -> Result<R, ClientError> {
        let body = serde_json::to_value(body)?;
        let p = path(resource::of::<K>(), Some(namespace), Some(name), Some(sub));
        self.typed("POST", &p, "", None, Some(&body)).await
    }

    /// DELETE of an object of any resource.
    pub async fn delete_dynamic(
        &self,
        info: &ResourceInfo,
        namespace: &str,
        name: &str,
        params: &DeleteParams,
    ) -> Result<(), ClientError> {
        let p = path(info, Some(namespace), Some(name), None);
        self.request("DELETE", &p, &params.query(), None, params.body().as_ref()).await.map(drop)
    }

    /// DELETE of a whole collection of any resource (`deletecollection`), in one namespace or,
    /// with None, in all.
    pub async fn delete_collection_dynamic(
        &self,
        info: &ResourceInfo,
        namespace: Option<&str>,
        query: &str,
    ) -> Result<(), ClientError> {
        self.request("DELETE", &path(info, namespace, None, None), query, None, None).await.map(drop)
    }

    /// How many objects of any resource a list through the API server (a consistent read)
    /// finds, in one namespace or, with None, in all.
    pub async fn count_dynamic(
        &self,
        info: &ResourceInfo,
        namespace: Option<&str>,
        query: &str,
    ) -> Result<usize, ClientError> {
        let list = self.request("GET", &path(info, namespace, None, None), query, None, None).await?;
        Ok(list.get("items").and_then(Value::as_array).map_or(0, Vec::len))
    }

    /// The metadata of an object of any resource.
    pub async fn get_metadata(
        &self,
        info: &ResourceInfo,
        namespace: &str,
        name: &str,
    ) -> Result<ObjectMeta, ClientError> {
        #[derive(serde::Deserialize)]
        struct Partial {
            #[serde(default)]
            metadata: ObjectMeta,
        }
        let p: Partial = self.typed("GET", &path(info, Some(namespace), Some(name), None), "", None, None).await?;
        Ok(p.metadata)
    }

    /// A JSON merge patch of an object of any resource.
    pub async fn merge_patch_dynamic(
        &self,
        info: &ResourceInfo,
        namespace: &str,
        name: &str,
        patch: &Value,
    ) -> Result<Value, ClientError> {
        self.request("PATCH", &path(info, Some(namespace), Some(name), None), "", Some(MERGE_PATCH), Some(patch)).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_and_delete_options() {
        let pods = resource::of::<k8s_openapi::api::core::v1::Pod>();
        assert_eq!(path(pods, Some("ns"), Some("p"), Some("status")), "/api/v1/namespaces/ns/pods/p/status");
        assert_eq!(path(pods, None, None, None), "/api/v1/pods");
        let nodes = resource::of::<k8s_openapi::api::core::v1::Node>();
        assert_eq!(path(nodes, Some(""), Some("n"), None), "/api/v1/nodes/n");
        let rs = resource::of::<k8s_openapi::api::apps::v1::ReplicaSet>();
        assert_eq!(path(rs, Some("d"), None, None), "/apis/apps/v1/namespaces/d/replicasets");
        // Paths from the type alone agree with the registry's, and reach the metrics API.
        use k8s_openapi::api::{apps::v1::ReplicaSet, core::v1::Node};
        use kubus_apimachinery::metrics_api::{NodeMetrics, PodMetrics};
        assert_eq!(type_path::<ReplicaSet>(Some("d"), None), "/apis/apps/v1/namespaces/d/replicasets");
        assert_eq!(type_path::<Node>(Some("ns"), Some("n")), "/api/v1/nodes/n");
        assert_eq!(type_path::<PodMetrics>(Some("ns"), Some("p")), "/apis/metrics.k8s.io/v1beta1/namespaces/ns/pods/p");
        assert_eq!(type_path::<PodMetrics>(None, None), "/apis/metrics.k8s.io/v1beta1/pods");
        assert_eq!(type_path::<NodeMetrics>(None, None), "/apis/metrics.k8s.io/v1beta1/nodes");
        let params = ListParams { label_selector: Some("app in (a,b)".into()), field_selector: Some("x=y".into()) };
        assert_eq!(params.query(), "labelSelector=app%20in%20%28a%2Cb%29&fieldSelector=x%3Dy");
        assert_eq!(DeleteParams::propagation(Propagation::Foreground).query(), "propagationPolicy=Foreground");
        let guarded = DeleteParams { uid: Some("u1".into()), ..Default::default() };
        assert_eq!(guarded.body().unwrap()["preconditions"]["uid"], "u1");
        assert!(DeleteParams::default().body().is_none());
        assert_eq!(
            DeleteParams { propagation: Some(Propagation::Orphan), grace_period_seconds: Some(0), uid: None }.query(),
            "propagationPolicy=Orphan&gracePeriodSeconds=0"
        );
    }
}
