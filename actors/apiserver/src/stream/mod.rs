//! The pods subresources that stream: `log`, `exec`, `attach` and `portforward` (kubectl logs,
//! exec, attach, cp, port-forward). The API server reads the pod, picks the container and the
//! node, asks that node's agent for a stream over NATS ([`kubus_bus::stream`]) and only then
//! upgrades the client's connection, so every refusal reaches kubectl as a Status.
//!
//! Client protocols: WebSocket `v5.channel.k8s.io` / `v4.channel.k8s.io` and SPDY/3.1
//! (`v4.channel.k8s.io`) for exec and attach ([`remotecommand`]); SPDY/3.1 for port-forward,
//! plain or tunnelled in WebSocket binary messages (`SPDY/3.1+portforward.k8s.io`,
//! [`portforward`]); chunked text for logs ([`logs`]). actix-http does not stream the bytes of
//! a non-WebSocket upgrade, so plain SPDY upgrades are taken off the connection before HTTP
//! parsing ([`raw`]).

pub mod logs;
pub mod portforward;
pub mod raw;
pub mod remotecommand;
pub mod spdy;

use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse};
use kubus_apimachinery::StatusError;
use kubus_bus::stream::StreamError;
use prometheus::{register_int_counter_vec, register_int_gauge_vec, IntCounterVec, IntGaugeVec};
use serde_json::{json, Value};
use std::sync::LazyLock;
use tracing::Instrument;

use crate::handler::ApiState;

pub static STREAMS: LazyLock<IntCounterVec> = LazyLock::new(|| {
    register_int_counter_vec!(
        "kubus_apiserver_streams_total",
        "Streaming requests (logs, exec, attach, portforward) by kind and result (ok: served; \
         rejected: a 4xx Status before the upgrade; failed: a 5xx Status, e.g. the node agent is unreachable)",
        &["kind", "result"]
    )
    .expect("metric registers once")
});

pub static STREAM_BYTES: LazyLock<IntCounterVec> = LazyLock::new(|| {
    register_int_counter_vec!(
        "kubus_apiserver_stream_bytes_total",
        "Payload bytes relayed by streams, by kind and direction (to_node: stdin, forwarded requests; \
         to_client: logs, stdout/stderr, forwarded responses)",
        &["kind", "direction"]
    )
    .expect("metric registers once")
});

pub static ACTIVE_STREAMS: LazyLock<IntGaugeVec> = LazyLock::new(|| {
    register_int_gauge_vec!("kubus_apiserver_streams_active", "Streams being relayed, by kind", &["kind"])
        .expect("metric registers once")
});

pub const KINDS: [&str; 4] = ["logs", "exec", "attach", "portforward"];

/// Makes every series exist before the first scrape.
pub fn register_metrics() {
    for kind in KINDS {
        for result in ["ok", "rejected", "failed"] {
            STREAMS.with_label_values(&[kind, result]);
        }
        for dir in ["to_node", "to_client"] {
            STREAM_BYTES.with_label_values(&[kind, dir]);
        }
        ACTIVE_STREAMS.with_label_values(&[kind]);
    }
}

/// Counts a relayed stream as active for as long as it lives.
pub(crate) struct Active(&'static str);

impl Active {
    pub(crate) fn new(kind: &'static str) -> Active {
        ACTIVE_STREAMS.with_label_values(&[kind]).inc();
        Active(kind)
    }
}

impl Drop for Active {
    fn drop(&mut self) {
        ACTIVE_STREAMS.with_label_values(&[self.0]).dec();
    }
}

pub(crate) fn count_bytes(kind: &str, direction: &str, n: usize) {
    STREAM_BYTES.with_label_values(&[kind, direction]).inc_by(n as u64);
}

/// What the streaming endpoints need besides the API state: the bus to reach node agents.
#[derive(Clone)]
pub struct StreamContext {
    pub client: async_nats::Client,
    pub cluster: String,
}

/// A request to upgrade into one of a pod's streams over WebSocket: the HTTP request and its
/// body, the query, the pod it names, and the bus to the pod's node.
pub(crate) struct Upgrade<'a> {
    pub req: &'a HttpRequest,
    pub payload: web::Payload,
    pub query: &'a MultiQuery,
    pub pod: &'a Value,
    pub ctx: &'a StreamContext,
}

/// A refusal before any upgrade: the HTTP code and the Status body.
#[derive(Debug)]
pub struct Rejection {
    pub code: u16,
    pub status: Value,
}

impl From<StatusError> for Rejection {
    fn from(e: StatusError) -> Self {
        Rejection { code: e.code, status: e.to_status() }
    }
}

impl From<StreamError> for Rejection {
    fn from(e: StreamError) -> Self {
        Rejection { code: e.code, status: failure_status(&e) }
    }
}

impl Rejection {
    /// Counts the refusal of a `kind` stream and logs it; refusals of the unauthenticated are
    /// not worth a line each (anyone can send them).
    fn record(&self, kind: &str) {
        let result = if self.code >= 500 { "failed" } else { "rejected" };
        STREAMS.with_label_values(&[kind, result]).inc();
        if self.code == 401 {
            tracing::debug!(code = self.code, "stream refused");
        } else {
            tracing::info!(code = self.code, message = %self.status["message"].as_str().unwrap_or(""), "stream refused");
        }
    }

    fn response(&self) -> HttpResponse {
        HttpResponse::build(StatusCode::from_u16(self.code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR))
            .content_type("application/json")
            .insert_header(("Cache-Control", "no-cache, private"))
            .body(self.status.to_string())
    }
}

/// A metav1.Status for a failure the node reported.
pub(crate) fn failure_status(e: &StreamError) -> Value {
    json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
           "message": e.message, "reason": e.reason, "code": e.code})
}

/// Entry point for `/api/v1/namespaces/{namespace}/pods/{name}/{subresource}`.
pub async fn serve(
    req: HttpRequest,
    payload: web::Payload,
    path: web::Path<(String, String, String)>,
    state: web::Data<ApiState>,
    ctx: web::Data<StreamContext>,
) -> HttpResponse {
    let (namespace, name, sub) = path.into_inner();
    let kind = match sub.as_str() {
        "log" => "logs",
        "exec" => "exec",
        "attach" => "attach",
        _ => "portforward",
    };
    let span = tracing::info_span!("pod_stream", kind, %namespace, pod = %name, method = %req.method());
    let ctx = ctx.get_ref().clone();
    let result = async {
        let query = MultiQuery::parse(req.query_string());
        let presented = crate::http::presented(&req);
        let admission = state.admit_stream(&presented, &namespace, &name, &sub)?;
        let pod = get_pod(&state, &namespace, &name).await;
        state.audit_stream(&admission, pod.as_ref().map_or_else(|r| r.code, |_| if sub == "log" { 200 } else { 101 }));
        let pod = pod?;
        let upgrade = Upgrade { req: &req, payload, query: &query, pod: &pod, ctx: &ctx };
        match kind {
            "logs" => logs::serve(&req, &query, &pod, &ctx).await,
            "exec" | "attach" => remotecommand::serve(upgrade, kind).await,
            _ => portforward::serve(upgrade).await,
        }
    }
    .instrument(span.clone())
    .await;
    let _enter = span.enter();
    match result {
        Ok(resp) => {
            STREAMS.with_label_values(&[kind, "ok"]).inc();
            resp
        }
        Err(r) => {
            r.record(kind);
            r.response()
        }
    }
}

async fn get_pod(state: &ApiState, namespace: &str, name: &str) -> Result<Value, Rejection> {
    let info = kubus_apimachinery::resource::find("", "v1", "pods").expect("pods are served");
    Ok(state.storage.get(info, Some(namespace), name).await?)
}

/// Query parameters with repeats kept (`command=sh&command=-c`).
#[derive(Debug, Default)]
pub struct MultiQuery(Vec<(String, String)>);

impl MultiQuery {
    pub fn parse(raw: &str) -> MultiQuery {
        MultiQuery(form_urlencoded::parse(raw.as_bytes()).into_owned().collect())
    }
    pub fn get(&self, key: &str) -> Option<&str> {
        self.0.iter().rev().find(|(k, _)| k == key).map(|(_, v)| v.as_str()).filter(|v| !v.is_empty())
    }
    pub fn all(&self, key: &str) -> Vec<String> {
        self.0.iter().filter(|(k, _)| k == key).map(|(_, v)| v.clone()).collect()
    }
    /// A boolean as upstream's query decoder reads it (`true`, `1`; bare means true).
    pub fn flag(&self, key: &str) -> Result<bool, StatusError> {
        match self.0.iter().rev().find(|(k, _)| k == key).map(|(_, v)| v.as_str()) {
            None | Some("false" | "0" | "False" | "FALSE") => Ok(false),
            Some("" | "true" | "1" | "True" | "TRUE") => Ok(true),
            Some(v) => Err(StatusError::bad_request(format!("invalid value {v:?} for boolean parameter {key}"))),
        }
    }
    pub fn int(&self, key: &str) -> Result<Option<i64>, StatusError> {
        self.get(key)
            .map(|v| {
                v.parse().map_err(|_| StatusError::bad_request(format!("invalid value {v:?} for parameter {key}")))
            })
            .transpose()
    }
}

/// Where a pod runs and who it is.
pub(crate) struct PodTarget {
    pub namespace: String,
    pub name: String,
    pub uid: Option<String>,
    pub node: String,
}

impl PodTarget {
    /// Upstream's streamLocation: a pod not yet scheduled cannot be streamed from.
    pub(crate) fn of(pod: &Value) -> Result<PodTarget, Rejection> {
        let name = pod["metadata"]["name"].as_str().unwrap_or_default().to_string();
        let node = pod["spec"]["nodeName"].as_str().unwrap_or_default().to_string();
        if node.is_empty() {
            return Err(StatusError::bad_request(format!("pod {name} does not have a host assigned")).into());
        }
        Ok(PodTarget {
            namespace: pod["metadata"]["namespace"].as_str().unwrap_or_default().to_string(),
            uid: pod["metadata"]["uid"].as_str().map(str::to_string),
            name,
            node,
        })
    }
}

fn names(pod: &Value, field: &str) -> Vec<String> {
    pod["spec"][field]
        .as_array()
        .map(|cs| cs.iter().filter_map(|c| c["name"].as_str().map(str::to_string)).collect())
        .unwrap_or_default()
}

/// Upstream's container choice: the one asked for (any container, init or ephemeral, of the
/// pod), else the `kubectl.kubernetes.io/default-container` annotation, else the only container.
pub(crate) fn pick_container(pod: &Value, requested: Option<&str>) -> Result<String, Rejection> {
    let name = pod["metadata"]["name"].as_str().unwrap_or_default();
    let containers = names(pod, "containers");
    let init = names(pod, "initContainers");
    let ephemeral = names(pod, "ephemeralContainers");
    let known = |c: &str| containers.iter().chain(&init).chain(&ephemeral).any(|n| n == c);
    if let Some(c) = requested {
        if !known(c) {
            return Err(StatusError::bad_request(format!("container {c} is not valid for pod {name}")).into());
        }
        return Ok(c.to_string());
    }
    if let Some(c) = pod["metadata"]["annotations"]["kubectl.kubernetes.io/default-container"].as_str() {
        if known(c) {
            return Ok(c.to_string());
        }
    }
    match containers.len() {
        1 => Ok(containers[0].clone()),
        0 => Err(StatusError::bad_request(format!("a container name must be specified for pod {name}")).into()),
        _ => {
            let mut msg =
                format!("a container name must be specified for pod {name}, choose one of: [{}]", containers.join(" "));
            if !init.is_empty() {
                msg.push_str(&format!(" or one of the init containers: [{}]", init.join(" ")));
            }
            Err(StatusError::bad_request(msg).into())
        }
    }
}

/// The status of container `c` in the pod, from whichever list holds it.
pub(crate) fn container_status<'a>(pod: &'a Value, c: &str) -> Option<&'a Value> {
    ["containerStatuses", "initContainerStatuses", "ephemeralContainerStatuses"]
        .iter()
        .filter_map(|f| pod["status"][f].as_array())
        .flatten()
        .find(|s| s["name"] == c)
}

/// The `Upgrade` header, lowercased.
pub(crate) fn upgrade_header(req: &HttpRequest) -> Option<String> {
    let connection = req.headers().get("connection").and_then(|v| v.to_str().ok()).unwrap_or("");
    if !connection.to_ascii_lowercase().contains("upgrade") {
        return None;
    }
    req.headers().get("upgrade").and_then(|v| v.to_str().ok()).map(|v| v.trim().to_ascii_lowercase())
}

/// Values of a header that may be repeated or comma-separated.
pub(crate) fn header_values(req: &HttpRequest, name: &str) -> Vec<String> {
    req.headers()
        .get_all(name)
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|v| v.trim().to_string())
        .filter(|v| !v.is_empty())
        .collect()
}

/// Accepts a WebSocket upgrade with `protocol` and returns the response and both directions.
pub(crate) fn accept_websocket(
    req: &HttpRequest,
    payload: web::Payload,
    protocol: &str,
) -> Result<(HttpResponse, actix_ws::Session, actix_ws::MessageStream), Rejection> {
    let (mut resp, session, messages) = actix_ws::handle(req, payload)
        .map_err(|e| Rejection::from(StatusError::bad_request(format!("websocket handshake failed: {e}"))))?;
    if let Ok(v) = actix_web::http::header::HeaderValue::from_str(protocol) {
        resp.headers_mut().insert(actix_web::http::header::SEC_WEBSOCKET_PROTOCOL, v);
    }
    // stdin chunks and tunnelled SPDY frames can be larger than actix-ws' 64 KiB default.
    Ok((resp, session, messages.max_frame_size(4 << 20)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn container_defaulting_follows_upstream() {
        let pod = json!({"metadata": {"name": "web"}, "spec": {"containers": [{"name": "a"}, {"name": "b"}], "initContainers": [{"name": "i"}]}});
        let e = pick_container(&pod, None).unwrap_err();
        assert_eq!(e.code, 400);
        assert_eq!(
            e.status["message"],
            "a container name must be specified for pod web, choose one of: [a b] or one of the init containers: [i]"
        );
        assert_eq!(pick_container(&pod, Some("i")).unwrap(), "i");
        assert_eq!(
            pick_container(&pod, Some("x")).unwrap_err().status["message"],
            "container x is not valid for pod web"
        );
        let mut annotated = pod.clone();
        annotated["metadata"]["annotations"] = json!({"kubectl.kubernetes.io/default-container": "b"});
        assert_eq!(pick_container(&annotated, None).unwrap(), "b");
        let single = json!({"metadata": {"name": "p"}, "spec": {"containers": [{"name": "only"}]}});
        assert_eq!(pick_container(&single, None).unwrap(), "only");
        assert_eq!(PodTarget::of(&single).err().unwrap().status["message"], "pod p does not have a host assigned");
    }

    #[test]
    fn repeated_query_parameters() {
        let q =
            MultiQuery::parse("command=sh&command=-c&command=echo%20hi%3B%20exit%203&stdout=true&stdin=1&tty=false");
        assert_eq!(q.all("command"), vec!["sh", "-c", "echo hi; exit 3"]);
        assert!(q.flag("stdout").unwrap() && q.flag("stdin").unwrap());
        assert!(!q.flag("tty").unwrap() && !q.flag("stderr").unwrap());
        assert!(MultiQuery::parse("tty=maybe").flag("tty").is_err());
    }
}
