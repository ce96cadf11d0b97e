//! Writes (and the occasional read) through the API server over NATS, by resource.

use kubus_apimachinery::{resource, ResourceInfo, StatusError};
use kubus_bus::api::ApiClient;
use serde_json::Value;

#[derive(Clone)]
pub struct Client {
    api: ApiClient,
}

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("{0}")]
    Api(Box<StatusError>),
    #[error("{0}")]
    Transport(String),
}

impl ClientError {
    pub fn code(&self) -> Option<u16> {
        match self {
            ClientError::Api(e) => Some(e.code),
            ClientError::Transport(_) => None,
        }
    }
    pub fn is_not_found(&self) -> bool {
        self.code() == Some(404)
    }
    pub fn is_conflict(&self) -> bool {
        self.code() == Some(409)
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
        if let Some(ns) = namespace {
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

fn info(group: &str, resource: &str) -> &'static ResourceInfo {
    resource::all()
        .iter()
        .find(|r| r.group == group && r.resource == resource)
        .unwrap_or_else(|| panic!("resource {resource}.{group} is served"))
}

impl Client {
    pub fn new(api: ApiClient) -> Self {
        Client { api }
    }

    async fn call(
        &self,
        method: &str,
        path: &str,
        query: &str,
        ct: Option<&str>,
        body: Option<&Value>,
    ) -> Result<Value, ClientError> {
        let (code, v) =
            self.api.json(method, path, query, ct, body).await.map_err(|e| ClientError::Transport(e.to_string()))?;
        if code >= 400 {
            let reason = v["reason"].as_str().unwrap_or("Unknown");
            let reason: &'static str = match reason {
                "NotFound" => "NotFound",
                "AlreadyExists" => "AlreadyExists",
                "Conflict" => "Conflict",
                "Invalid" => "Invalid",
                "BadRequest" => "BadRequest",
                "Forbidden" => "Forbidden",
                _ => "Unknown",
            };
            return Err(ClientError::Api(Box::new(StatusError::new(
                code,
                reason,
                v["message"].as_str().unwrap_or_default(),
            ))));
        }
        Ok(v)
    }

    pub async fn get(&self, group: &str, resource: &str, ns: Option<&str>, name: &str) -> Result<Value, ClientError> {
        self.call("GET", &path(info(group, resource), ns, Some(name), None), "", None, None).await
    }

    pub async fn create(
        &self,
        group: &str,
        resource: &str,
        ns: Option<&str>,
        obj: &Value,
    ) -> Result<Value, ClientError> {
        self.call("POST", &path(info(group, resource), ns, None, None), "", None, Some(obj)).await
    }

    /// A JSON merge patch of the object or of a subresource (`status`, ...).
    pub async fn merge_patch(
        &self,
        group: &str,
        resource: &str,
        ns: Option<&str>,
        name: &str,
        sub: Option<&str>,
        patch: &Value,
    ) -> Result<Value, ClientError> {
        self.call(
            "PATCH",
            &path(info(group, resource), ns, Some(name), sub),
            "",
            Some("application/merge-patch+json"),
            Some(patch),
        )
        .await
    }

    pub async fn update(
        &self,
        group: &str,
        resource: &str,
        ns: Option<&str>,
        name: &str,
        sub: Option<&str>,
        obj: &Value,
    ) -> Result<Value, ClientError> {
        self.call("PUT", &path(info(group, resource), ns, Some(name), sub), "", None, Some(obj)).await
    }

    pub async fn delete(
        &self,
        group: &str,
        resource: &str,
        ns: Option<&str>,
        name: &str,
        query: &str,
    ) -> Result<Value, ClientError> {
        self.call("DELETE", &path(info(group, resource), ns, Some(name), None), query, None, None).await
    }

    /// Lists a resource through the API server (a consistent read).
    pub async fn list(
        &self,
        group: &str,
        resource: &str,
        ns: Option<&str>,
        query: &str,
    ) -> Result<Vec<Value>, ClientError> {
        let v = self.call("GET", &path(info(group, resource), ns, None, None), query, None, None).await?;
        Ok(v["items"].as_array().cloned().unwrap_or_default())
    }

    /// DELETE of a whole collection (optionally one namespace).
    pub async fn delete_collection(
        &self,
        group: &str,
        resource: &str,
        ns: Option<&str>,
        query: &str,
    ) -> Result<Value, ClientError> {
        self.call("DELETE", &path(info(group, resource), ns, None, None), query, None, None).await
    }

    /// POST to a subresource (e.g. `pods/binding`).
    pub async fn post_sub(
        &self,
        group: &str,
        resource: &str,
        ns: Option<&str>,
        name: &str,
        sub: &str,
        body: &Value,
    ) -> Result<Value, ClientError> {
        self.call("POST", &path(info(group, resource), ns, Some(name), Some(sub)), "", None, Some(body)).await
    }
}
