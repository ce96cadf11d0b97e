//! The API server's protocol on the bus. The API server is a NATS service (a queue group, so
//! any number of API servers share the load); internal actors send it the same requests kubectl
//! sends over HTTP, so every write passes the one validation path. Envelopes are bincode;
//! bodies stay Kubernetes JSON.

use crate::credential::Credential;
use bytes::Bytes;
use serde::{Deserialize, Serialize};
use std::time::Duration;

/// The queue group every API server joins.
pub const QUEUE_GROUP: &str = "kubus-apiserver";

/// Subject of the API service of a cluster.
pub fn api_subject(cluster: &str) -> String {
    format!("kubus.{cluster}.api")
}

/// Subject of the API service's priority lane: Lease reads and writes (node heartbeats and
/// leader election) are served apart from bulk work, so a backlog of pod creates never delays
/// them past a renew deadline, as upstream's API Priority and Fairness gives them levels of
/// their own (`node-high`, `leader-election`).
pub fn api_priority_subject(cluster: &str) -> String {
    format!("kubus.{cluster}.api-priority")
}

/// Whether a request goes by the priority lane.
pub fn is_priority(req: &ApiRequest) -> bool {
    req.path.starts_with("/apis/coordination.k8s.io/")
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ApiRequest {
    pub method: String,
    /// Path as on HTTP, e.g. `/api/v1/namespaces/default/pods/web`.
    pub path: String,
    /// Raw query string without `?`.
    pub query: String,
    pub content_type: Option<String>,
    pub accept: Option<String>,
    pub body: Vec<u8>,
    /// Who is asking (the field manager default and the user agent in logs).
    pub user_agent: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ApiResponse {
    pub status: u16,
    pub content_type: String,
    pub body: Vec<u8>,
}

#[derive(Debug, thiserror::Error)]
pub enum EnvelopeError {
    #[error("cannot encode envelope: {0}")]
    Encode(#[from] bincode::error::EncodeError),
    #[error("cannot decode envelope: {0}")]
    Decode(#[from] bincode::error::DecodeError),
}

pub fn encode<T: Serialize>(value: &T) -> Result<Vec<u8>, EnvelopeError> {
    Ok(bincode::serde::encode_to_vec(value, bincode::config::standard())?)
}

pub fn decode<T: serde::de::DeserializeOwned>(bytes: &[u8]) -> Result<T, EnvelopeError> {
    Ok(bincode::serde::decode_from_slice(bytes, bincode::config::standard())?.0)
}

#[derive(Debug, thiserror::Error)]
pub enum ApiClientError {
    #[error("API server unreachable on the bus: {0}")]
    Unreachable(String),
    #[error(transparent)]
    Envelope(#[from] EnvelopeError),
    #[error(transparent)]
    Credential(#[from] crate::credential::CredentialError),
}

/// The client internal actors use to call the API server over NATS, presenting their
/// credential with every request (the API server authenticates and authorizes it as HTTPS).
#[derive(Clone)]
pub struct ApiClient {
    client: async_nats::Client,
    subject: String,
    priority_subject: String,
    user_agent: String,
    timeout: Duration,
    credential: Credential,
}

impl ApiClient {
    pub fn new(client: async_nats::Client, cluster: &str, user_agent: &str) -> Self {
        ApiClient {
            client,
            subject: api_subject(cluster),
            priority_subject: api_priority_subject(cluster),
            user_agent: user_agent.to_string(),
            timeout: Duration::from_secs(30),
            credential: Credential::None,
        }
    }

    /// This client presenting `credential` (who the API server takes its requests to be from).
    pub fn with_credential(mut self, credential: Credential) -> Self {
        self.credential = credential;
        self
    }

    /// What this client presents.
    pub fn credential(&self) -> &Credential {
        &self.credential
    }

    /// This client with another user agent, same connection and credential.
    pub fn with_user_agent(mut self, user_agent: &str) -> Self {
        self.user_agent = user_agent.to_string();
        self
    }

    /// The connection requests go over (watches over NATS subscribe to an inbox on it).
    pub fn nats(&self) -> &async_nats::Client {
        &self.client
    }

    pub async fn send(&self, mut req: ApiRequest) -> Result<ApiResponse, ApiClientError> {
        if req.user_agent.is_empty() {
            req.user_agent = self.user_agent.clone();
        }
        let started = std::time::Instant::now();
        let payload = Bytes::from(encode(&req)?);
        let mut headers = async_nats::HeaderMap::new();
        if let Some(authorization) = self.credential.authorization()? {
            headers.insert("Authorization", &*authorization);
        }
        let reply = if is_priority(&req) {
            match self.request(&self.priority_subject, headers.clone(), payload.clone()).await {
                // An API server of a version without the lane: the main service answers.
                Err(e) if e.kind() == async_nats::RequestErrorKind::NoResponders => {
                    self.request(&self.subject, headers, payload).await
                }
                other => other,
            }
        } else {
            self.request(&self.subject, headers, payload).await
        };
        let reply = reply.map_err(|e| ApiClientError::Unreachable(e.to_string()));
        let resp: Result<ApiResponse, ApiClientError> = reply.and_then(|r| Ok(decode(&r.payload)?));
        let code = resp.as_ref().map_or_else(|_| "<error>".to_string(), |r| r.status.to_string());
        crate::metrics::REST_CLIENT_REQUESTS.with_label_values(&[&code, &self.subject, &req.method]).inc();
        crate::metrics::REST_CLIENT_LATENCY
            .with_label_values(&[&self.subject, &req.method])
            .observe(started.elapsed().as_secs_f64());
        resp
    }

    async fn request(
        &self,
        subject: &str,
        headers: async_nats::HeaderMap,
        payload: Bytes,
    ) -> Result<async_nats::Message, async_nats::RequestError> {
        let request = self.client.request_with_headers(subject.to_string(), headers, payload);
        match tokio::time::timeout(self.timeout, request).await {
            Ok(reply) => reply,
            Err(_) => Err(async_nats::RequestError::new(async_nats::RequestErrorKind::TimedOut)),
        }
    }

    /// A JSON request: `method` on `path?query` with an optional JSON body and content type.
    pub async fn json(
        &self,
        method: &str,
        path: &str,
        query: &str,
        content_type: Option<&str>,
        body: Option<&serde_json::Value>,
    ) -> Result<(u16, serde_json::Value), ApiClientError> {
        let req = ApiRequest {
            method: method.to_string(),
            path: path.to_string(),
            query: query.to_string(),
            content_type: content_type.map(str::to_string).or(body.map(|_| "application/json".to_string())),
            accept: Some("application/json".into()),
            body: body.map(|b| b.to_string().into_bytes()).unwrap_or_default(),
            user_agent: String::new(),
        };
        let resp = self.send(req).await?;
        let value = serde_json::from_slice(&resp.body).unwrap_or(serde_json::Value::Null);
        Ok((resp.status, value))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn envelope_round_trip() {
        let req = ApiRequest {
            method: "GET".into(),
            path: "/api/v1/pods".into(),
            query: "limit=1".into(),
            content_type: None,
            accept: Some("application/json".into()),
            body: vec![],
            user_agent: "test".into(),
        };
        let bytes = encode(&req).unwrap();
        assert_eq!(decode::<ApiRequest>(&bytes).unwrap(), req);
    }
}
