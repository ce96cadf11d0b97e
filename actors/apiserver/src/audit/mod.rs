//! Auditing, as upstream's: every request the policy ([`policy`]) gives a level is recorded as
//! an `audit.k8s.io/v1` `Event` (stage `ResponseComplete`): who (the user, the one impersonated),
//! what (verb, URI, the object's reference; the request's object from level `Request`), and the
//! answer's code. Events go to the cluster's audit stream on the bus
//! ([`kubus_bus::store::audit`]) from a queue of their own: a request never waits for its audit
//! event, and a bus too slow to take them loses events (counted in
//! `apiserver_audit_error_total`), never requests.

pub mod policy;

use crate::authn::UserInfo;
use crate::authorization::Attributes;
use kubus_bus::api::ApiRequest;
use policy::{Level, Policy};
use serde_json::{json, Value};
use std::sync::LazyLock;
use std::time::SystemTime;

/// Events waiting to be published at most...
const QUEUE: usize = 16_384;
/// ...and their bytes at most (an event at level Request carries its object, up to ~1.5 MiB).
const QUEUE_BYTES: usize = 64 << 20;

static EVENTS: LazyLock<prometheus::IntCounter> = LazyLock::new(|| {
    prometheus::register_int_counter!(
        "apiserver_audit_event_total",
        "Counter of audit events generated and sent to the audit backend."
    )
    .expect("metric registers once")
});
static ERRORS: LazyLock<prometheus::IntCounterVec> = LazyLock::new(|| {
    prometheus::register_int_counter_vec!(
        "apiserver_audit_error_total",
        "Counter of audit events that failed to be audited properly. Plugin identifies the plugin affected by the error.",
        &["plugin"]
    )
    .expect("metric registers once")
});
static LEVELS: LazyLock<prometheus::IntCounterVec> = LazyLock::new(|| {
    prometheus::register_int_counter_vec!(
        "apiserver_audit_level_total",
        "Counter of policy levels for audit events (1 per request).",
        &["level"]
    )
    .expect("metric registers once")
});

/// The audit backend's name in the error metric (upstream: log, webhook).
const PLUGIN: &str = "nats";

/// What is audited and where events go.
pub struct Auditor {
    policy: Policy,
    queue: Option<tokio::sync::mpsc::Sender<Vec<u8>>>,
    /// Bytes of the events in the queue.
    queued: std::sync::Arc<std::sync::atomic::AtomicUsize>,
}

impl Auditor {
    /// Audits nothing (tests of the request path alone).
    pub fn disabled() -> Auditor {
        Auditor { policy: Policy::default(), queue: None, queued: Default::default() }
    }

    /// Publishes events to `subject` (the audit stream's) on `client`, from a task of its own.
    pub fn start(client: async_nats::Client, subject: String, policy: Policy) -> Auditor {
        let (tx, mut rx) = tokio::sync::mpsc::channel::<Vec<u8>>(QUEUE);
        let queued = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let sent = queued.clone();
        tokio::spawn(async move {
            while let Some(event) = rx.recv().await {
                sent.fetch_sub(event.len(), std::sync::atomic::Ordering::Relaxed);
                if client.publish(subject.clone(), event.into()).await.is_err() {
                    ERRORS.with_label_values(&[PLUGIN]).inc();
                }
            }
        });
        Auditor { policy, queue: Some(tx), queued }
    }

    /// The level of a request, by the policy.
    pub fn level(&self, attrs: &Attributes) -> Level {
        if self.queue.is_none() {
            return Level::None;
        }
        self.policy.level(attrs)
    }

    /// Records a request at `level` (not None), `user` the authenticated user when it
    /// impersonated `attrs.user`.
    pub fn record(&self, level: Level, entry: Entry<'_>) {
        let Some(queue) = &self.queue else { return };
        LEVELS.with_label_values(&[level_name(level)]).inc();
        use std::sync::atomic::Ordering;
        let event = entry.event(level);
        let len = event.len();
        if self.queued.fetch_add(len, Ordering::Relaxed) + len > QUEUE_BYTES {
            self.queued.fetch_sub(len, Ordering::Relaxed);
            ERRORS.with_label_values(&[PLUGIN]).inc();
            return;
        }
        match queue.try_send(event) {
            Ok(()) => EVENTS.inc(),
            Err(_) => {
                self.queued.fetch_sub(len, Ordering::Relaxed);
                ERRORS.with_label_values(&[PLUGIN]).inc();
            }
        }
    }
}

fn level_name(level: Level) -> &'static str {
    match level {
        Level::None => "None",
        Level::Metadata => "Metadata",
        Level::Request => "Request",
        Level::RequestResponse => "RequestResponse",
    }
}

/// One request, answered.
pub struct Entry<'a> {
    pub attrs: &'a Attributes,
    /// Who authenticated, when it acted as `attrs.user` by impersonation.
    pub authenticated: Option<&'a UserInfo>,
    pub req: &'a ApiRequest,
    pub code: u16,
    pub received: SystemTime,
    /// The answer's body (level RequestResponse).
    pub response: Option<&'a [u8]>,
}

fn user_json(u: &UserInfo) -> Value {
    let mut v = json!({"username": u.name, "groups": u.groups});
    if !u.uid.is_empty() {
        v["uid"] = u.uid.clone().into();
    }
    if !u.extra.is_empty() {
        v["extra"] = json!(u.extra);
    }
    v
}

/// A request or answer body when it is a JSON object (protobuf and YAML bodies are left out,
/// as upstream leaves out what it cannot convert). Checked without building it: the event
/// embeds the bytes as they are.
fn json_object(body: &[u8]) -> Option<&[u8]> {
    let trimmed = body.trim_ascii();
    // (UTF-8 checked apart: skipping a string, serde does not look inside it.)
    (trimmed.first() == Some(&b'{')
        && std::str::from_utf8(trimmed).is_ok()
        && serde_json::from_slice::<serde::de::IgnoredAny>(trimmed).is_ok())
    .then_some(trimmed)
}

/// A request's object as JSON: a JSON body as it came, a protobuf or YAML one (kubectl sends
/// protobuf for built-in kinds) converted, as upstream's audit shows it.
fn request_json(req: &ApiRequest) -> Option<std::borrow::Cow<'_, [u8]>> {
    if req.body.is_empty() {
        return None;
    }
    let media = req.content_type.as_deref().unwrap_or("application/json").split(';').next().unwrap_or("").trim();
    match media {
        "application/json" | "" | "*/*" => json_object(&req.body).map(std::borrow::Cow::Borrowed),
        _ => {
            let value = crate::handler::parse_body(req).ok().filter(Value::is_object)?;
            serde_json::to_vec(&value).ok().map(std::borrow::Cow::Owned)
        }
    }
}

/// The name in an object's metadata (a create names its object there).
fn body_name(object: &[u8]) -> Option<String> {
    #[derive(serde::Deserialize)]
    struct Meta {
        name: Option<String>,
    }
    #[derive(serde::Deserialize)]
    struct Named {
        metadata: Meta,
    }
    serde_json::from_slice::<Named>(object).ok()?.metadata.name
}

impl Entry<'_> {
    /// The event's JSON.
    fn event(&self, level: Level) -> Vec<u8> {
        let a = self.attrs;
        let now = SystemTime::now();
        let uri = match self.req.query.as_str() {
            "" => self.req.path.clone(),
            q => format!("{}?{q}", self.req.path),
        };
        let (user, impersonated) = match self.authenticated {
            Some(original) => (user_json(original), Some(user_json(&a.user))),
            None => (user_json(&a.user), None),
        };
        let mut event = json!({
            "kind": "Event",
            "apiVersion": "audit.k8s.io/v1",
            "level": level_name(level),
            "auditID": uuid::Uuid::new_v4().to_string(),
            "stage": "ResponseComplete",
            "requestURI": uri,
            "verb": a.verb,
            "user": user,
            "userAgent": self.req.user_agent,
            "responseStatus": {"metadata": {}, "code": self.code},
            "requestReceivedTimestamp": kubus_apimachinery::time::format_rfc3339_micro(self.received),
            "stageTimestamp": kubus_apimachinery::time::format_rfc3339_micro(now),
        });
        if let Some(i) = impersonated {
            event["impersonatedUser"] = i;
        }
        // Converted only when something reads it: the object's name on a create, the object
        // from level Request.
        let needs_object = level >= Level::Request || (a.resource_request && a.name.is_empty());
        let request_object = if needs_object { request_json(self.req) } else { None };
        if a.resource_request {
            let mut object_ref = json!({"resource": a.resource, "apiVersion": a.api_version});
            let name = match a.name.as_str() {
                "" => request_object.as_deref().and_then(body_name).unwrap_or_default(),
                name => name.to_string(),
            };
            for (key, value) in [
                ("namespace", &a.namespace),
                ("name", &name),
                ("apiGroup", &a.api_group),
                ("subresource", &a.subresource),
            ] {
                if !value.is_empty() {
                    object_ref[key] = value.clone().into();
                }
            }
            event["objectRef"] = object_ref;
        }
        let mut bytes = serde_json::to_vec(&event).expect("an audit event serializes");
        // The objects as they came and went, spliced in unparsed.
        let mut splice = |key: &str, object: Option<&[u8]>| {
            if let Some(object) = object {
                bytes.pop();
                bytes.extend_from_slice(format!(",\"{key}\":").as_bytes());
                bytes.extend_from_slice(object);
                bytes.push(b'}');
            }
        };
        if level >= Level::Request {
            splice("requestObject", request_object.as_deref());
        }
        if level >= Level::RequestResponse {
            splice("responseObject", self.response.and_then(json_object));
        }
        bytes
    }
}
