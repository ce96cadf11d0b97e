//! `metav1.Status` errors: every API failure leaves the server as one of these.

use serde_json::{json, Value};

/// Machine-readable reason of one field error (`metav1.CauseType`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CauseType {
    FieldValueNotFound,
    FieldValueRequired,
    FieldValueDuplicate,
    FieldValueInvalid,
    FieldValueNotSupported,
    FieldValueForbidden,
    FieldValueTooLong,
    FieldValueTooMany,
    UnexpectedServerResponse,
    FieldManagerConflict,
    /// An eviction refused by a PodDisruptionBudget (policy/v1's `DisruptionBudget` cause).
    DisruptionBudget,
    /// A read at a resourceVersion the server has not reached.
    ResourceVersionTooLarge,
}

impl CauseType {
    pub fn as_str(self) -> &'static str {
        match self {
            CauseType::FieldValueNotFound => "FieldValueNotFound",
            CauseType::FieldValueRequired => "FieldValueRequired",
            CauseType::FieldValueDuplicate => "FieldValueDuplicate",
            CauseType::FieldValueInvalid => "FieldValueInvalid",
            CauseType::FieldValueNotSupported => "FieldValueNotSupported",
            CauseType::FieldValueForbidden => "FieldValueForbidden",
            CauseType::FieldValueTooLong => "FieldValueTooLong",
            CauseType::FieldValueTooMany => "FieldValueTooMany",
            CauseType::UnexpectedServerResponse => "UnexpectedServerResponse",
            CauseType::FieldManagerConflict => "FieldManagerConflict",
            CauseType::DisruptionBudget => "DisruptionBudget",
            CauseType::ResourceVersionTooLarge => "ResourceVersionTooLarge",
        }
    }

    /// The type a cause's `reason` names, if it is one of these.
    pub fn parse(s: &str) -> Option<CauseType> {
        use CauseType::*;
        [
            FieldValueNotFound,
            FieldValueRequired,
            FieldValueDuplicate,
            FieldValueInvalid,
            FieldValueNotSupported,
            FieldValueForbidden,
            FieldValueTooLong,
            FieldValueTooMany,
            UnexpectedServerResponse,
            FieldManagerConflict,
            DisruptionBudget,
            ResourceVersionTooLarge,
        ]
        .into_iter()
        .find(|c| c.as_str() == s)
    }

    /// The phrase upstream puts before the detail in an aggregated message.
    fn phrase(self) -> &'static str {
        match self {
            CauseType::FieldValueNotFound => "Not found",
            CauseType::FieldValueRequired => "Required value",
            CauseType::FieldValueDuplicate => "Duplicate value",
            CauseType::FieldValueInvalid => "Invalid value",
            CauseType::FieldValueNotSupported => "Unsupported value",
            CauseType::FieldValueForbidden => "Forbidden",
            CauseType::FieldValueTooLong => "Too long",
            CauseType::FieldValueTooMany => "Too many",
            CauseType::UnexpectedServerResponse => "Internal error",
            CauseType::FieldManagerConflict => "Conflict",
            CauseType::DisruptionBudget => "Disruption budget",
            CauseType::ResourceVersionTooLarge => "Too large resource version",
        }
    }
}

/// One cause of an error (`metav1.StatusCause`): a field error of a 422 (`field` is a path like
/// `spec.containers[0].image`), or what else upstream lists (an internal error's message has
/// no type and no field; upstream leaves both out then).
#[derive(Debug, Clone, PartialEq)]
pub struct Cause {
    pub kind: Option<CauseType>,
    pub field: String,
    pub message: String,
}

impl Cause {
    pub fn new(kind: CauseType, field: impl Into<String>, message: impl Into<String>) -> Self {
        Cause { kind: Some(kind), field: field.into(), message: message.into() }
    }
    pub fn required(field: impl Into<String>) -> Self {
        Cause::new(CauseType::FieldValueRequired, field, "Required value")
    }
    /// `Invalid value: <value>: <detail>` as upstream renders it.
    pub fn invalid(field: impl Into<String>, value: &Value, detail: impl AsRef<str>) -> Self {
        let v = match value {
            Value::String(s) => format!("\"{s}\""),
            // Labels and selectors: Go prints a map[string]string with %#v.
            Value::Object(m) if !m.is_empty() && m.values().all(Value::is_string) => {
                let pairs: Vec<String> = m.iter().map(|(k, v)| format!("{}:{}", Value::from(k.as_str()), v)).collect();
                format!("map[string]string{{{}}}", pairs.join(", "))
            }
            other => other.to_string(),
        };
        Cause::new(CauseType::FieldValueInvalid, field, format!("Invalid value: {v}: {}", detail.as_ref()))
    }
    pub fn forbidden(field: impl Into<String>, detail: impl AsRef<str>) -> Self {
        Cause::new(CauseType::FieldValueForbidden, field, format!("Forbidden: {}", detail.as_ref()))
    }
    pub fn not_supported(field: impl Into<String>, value: &Value, allowed: &[&str]) -> Self {
        let quoted: Vec<String> = allowed.iter().map(|a| format!("\"{a}\"")).collect();
        let v = match value {
            Value::String(s) => format!("\"{s}\""),
            other => other.to_string(),
        };
        Cause::new(
            CauseType::FieldValueNotSupported,
            field,
            format!("Unsupported value: {v}: supported values: {}", quoted.join(", ")),
        )
    }
    pub fn duplicate(field: impl Into<String>, value: &Value) -> Self {
        Cause::new(CauseType::FieldValueDuplicate, field, format!("Duplicate value: {value}"))
    }
    fn render(&self) -> String {
        match self.kind {
            Some(kind) if !self.message.starts_with(kind.phrase()) => {
                format!("{}: {}: {}", self.field, kind.phrase(), self.message)
            }
            _ => format!("{}: {}", self.field, self.message),
        }
    }
    fn to_json(&self) -> Value {
        // Upstream leaves out empty fields (an eviction's cause has no field, an internal
        // error's no type either).
        let mut cause = serde_json::Map::new();
        if let Some(kind) = self.kind {
            cause.insert("reason".into(), json!(kind.as_str()));
        }
        if !self.message.is_empty() {
            cause.insert("message".into(), json!(self.message));
        }
        if !self.field.is_empty() {
            cause.insert("field".into(), json!(self.field));
        }
        Value::Object(cause)
    }
    fn from_json(v: &Value) -> Self {
        let text = |k: &str| v[k].as_str().unwrap_or_default().to_string();
        let kind = v["reason"].as_str().and_then(CauseType::parse);
        Cause { kind, field: text("field"), message: text("message") }
    }
}

/// `metav1.StatusDetails`: what an error is about. Upstream serializes only the fields that are
/// set, so a present but empty `details` is `{}`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct StatusDetails {
    pub name: String,
    pub group: String,
    /// The resource (plural, e.g. `deployments`) the request named; for 422 the Kind.
    pub kind: String,
    pub causes: Vec<Cause>,
    pub retry_after_seconds: u32,
}

impl StatusDetails {
    fn of(group: &str, kind: &str, name: &str) -> Option<Box<StatusDetails>> {
        Some(Box::new(StatusDetails {
            name: name.to_string(),
            group: group.to_string(),
            kind: kind.to_string(),
            ..Default::default()
        }))
    }

    fn to_json(&self) -> Value {
        let mut d = serde_json::Map::new();
        for (k, v) in [("name", &self.name), ("group", &self.group), ("kind", &self.kind)] {
            if !v.is_empty() {
                d.insert(k.into(), json!(v));
            }
        }
        if !self.causes.is_empty() {
            d.insert("causes".into(), self.causes.iter().map(Cause::to_json).collect());
        }
        if self.retry_after_seconds > 0 {
            d.insert("retryAfterSeconds".into(), json!(self.retry_after_seconds));
        }
        Value::Object(d)
    }
}

/// An API error; `to_status()` gives the `Status` body and `code` the HTTP status.
///
/// Made only by the constructors below, each the counterpart of one of upstream's
/// (`k8s.io/apimachinery/pkg/api/errors` and the apiserver's negotiation errors), so every
/// Status carries the `details` upstream's would: none, empty, or the object, causes and
/// retry hint that constructor gives.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{message}")]
pub struct StatusError {
    pub code: u16,
    pub reason: &'static str,
    pub message: String,
    /// Boxed: errors travel in every `Result`, so they are kept small.
    details: Option<Box<StatusDetails>>,
}

/// The media types the API server reads and writes (upstream's serializer's, without CBOR,
/// which upstream 1.32 serves only behind a disabled feature gate).
pub const MEDIA_TYPES: &[&str] = &["application/json", "application/yaml", "application/vnd.kubernetes.protobuf"];

impl StatusError {
    fn new(code: u16, reason: &'static str, message: String, details: Option<Box<StatusDetails>>) -> Self {
        StatusError { code, reason, message, details }
    }

    /// `details`, when the error has them.
    pub fn details(&self) -> Option<&StatusDetails> {
        self.details.as_deref()
    }
    /// `details.causes` (422 field errors and the like).
    pub fn causes(&self) -> &[Cause] {
        self.details.as_ref().map(|d| d.causes.as_slice()).unwrap_or_default()
    }
    /// `details.retryAfterSeconds`, when set.
    pub fn retry_after(&self) -> Option<u32> {
        self.details.as_ref().map(|d| d.retry_after_seconds).filter(|s| *s > 0)
    }

    /// The error a `Status` body received from an API server describes (as client-go's
    /// `FromObject` reads it).
    pub fn from_status(code: u16, status: &Value) -> Self {
        const REASONS: &[&str] = &[
            "Unauthorized",
            "Forbidden",
            "NotFound",
            "AlreadyExists",
            "Conflict",
            "Gone",
            "Invalid",
            "ServerTimeout",
            "Timeout",
            "TooManyRequests",
            "BadRequest",
            "MethodNotAllowed",
            "NotAcceptable",
            "RequestEntityTooLarge",
            "UnsupportedMediaType",
            "InternalError",
            "Expired",
            "ServiceUnavailable",
        ];
        let reason = status["reason"].as_str().and_then(|r| REASONS.iter().find(|k| **k == r)).copied();
        let d = &status["details"];
        let details = d.is_object().then(|| {
            let text = |k: &str| d[k].as_str().unwrap_or_default().to_string();
            Box::new(StatusDetails {
                name: text("name"),
                group: text("group"),
                kind: text("kind"),
                causes: d["causes"].as_array().into_iter().flatten().map(Cause::from_json).collect(),
                retry_after_seconds: d["retryAfterSeconds"].as_u64().unwrap_or(0) as u32,
            })
        });
        let message = status["message"].as_str().unwrap_or_default().to_string();
        StatusError::new(code, reason.unwrap_or("Unknown"), message, details)
    }

    /// `NewNotFound`: `resource` is the plural name the request used (`pods`, `deployments`).
    pub fn not_found(group: &str, resource: &str, name: &str) -> Self {
        let message = format!("{} \"{name}\" not found", qualified(group, resource));
        StatusError::new(404, "NotFound", message, StatusDetails::of(group, resource, name))
    }
    /// `NewAlreadyExists`.
    pub fn already_exists(group: &str, resource: &str, name: &str) -> Self {
        let message = format!("{} \"{name}\" already exists", qualified(group, resource));
        StatusError::new(409, "AlreadyExists", message, StatusDetails::of(group, resource, name))
    }
    /// `NewConflict`.
    pub fn conflict(group: &str, resource: &str, name: &str, detail: &str) -> Self {
        let message = format!("Operation cannot be fulfilled on {} \"{name}\": {detail}", qualified(group, resource));
        StatusError::new(409, "Conflict", message, StatusDetails::of(group, resource, name))
    }
    /// `NewInvalid`: 422 with field causes; `kind` is the object's Kind (e.g. `Pod`).
    pub fn invalid(group: &str, kind: &str, name: &str, causes: Vec<Cause>) -> Self {
        let rendered: Vec<String> = causes.iter().map(Cause::render).collect();
        let what = if group.is_empty() { kind.to_string() } else { format!("{kind}.{group}") };
        let message = match rendered.as_slice() {
            [] => format!("{what} \"{name}\" is invalid"),
            [one] => format!("{what} \"{name}\" is invalid: {one}"),
            many => format!("{what} \"{name}\" is invalid: [{}]", many.join(", ")),
        };
        let mut details = StatusDetails::of(group, kind, name);
        if let Some(d) = details.as_mut() {
            d.causes = causes;
        }
        StatusError::new(422, "Invalid", message, details)
    }
    /// `NewForbidden`: `why` is the reason the request is refused; an empty resource or name
    /// is left out of the message as upstream does.
    pub fn forbidden(group: &str, resource: &str, name: &str, why: impl std::fmt::Display) -> Self {
        let message = match (resource.is_empty(), name.is_empty()) {
            (true, _) => format!("forbidden: {why}"),
            (false, true) => format!("{} is forbidden: {why}", qualified(group, resource)),
            (false, false) => format!("{} \"{name}\" is forbidden: {why}", qualified(group, resource)),
        };
        StatusError::new(403, "Forbidden", message, StatusDetails::of(group, resource, name))
    }
    /// What the authentication filter answers a request it cannot authenticate: 401 with the
    /// bare message "Unauthorized" and no details, so nothing tells a caller why.
    pub fn unauthorized() -> Self {
        StatusError::new(401, "Unauthorized", "Unauthorized".to_string(), None)
    }
    /// `NewMethodNotSupported`: an action the resource does not support (e.g. `watch`).
    pub fn method_not_supported(group: &str, resource: &str, action: &str) -> Self {
        let message = format!("{action} is not supported on resources of kind \"{}\"", qualified(group, resource));
        StatusError::new(405, "MethodNotAllowed", message, StatusDetails::of(group, resource, ""))
    }
    /// `NewBadRequest` (no details).
    pub fn bad_request(message: impl Into<String>) -> Self {
        StatusError::new(400, "BadRequest", message.into(), None)
    }
    /// `NewResourceExpired`: 410 for a resourceVersion or continue token too old (no details).
    pub fn resource_expired(message: impl Into<String>) -> Self {
        StatusError::new(410, "Expired", message.into(), None)
    }
    /// `NewRequestEntityTooLargeError` (no details).
    pub fn too_large(message: impl std::fmt::Display) -> Self {
        StatusError::new(413, "RequestEntityTooLarge", format!("Request entity too large: {message}"), None)
    }
    /// `NewTooManyRequests`: try again after `retry_after_seconds` (0: not said).
    pub fn too_many_requests(message: impl Into<String>, retry_after_seconds: u32) -> Self {
        let details = StatusDetails { retry_after_seconds, ..Default::default() };
        StatusError::new(429, "TooManyRequests", message.into(), Some(Box::new(details)))
    }
    /// `NewInternalError`: the error is also the details' one cause.
    pub fn internal(error: impl std::fmt::Display) -> Self {
        let error = error.to_string();
        let cause = Cause { kind: None, field: String::new(), message: error.clone() };
        let details = StatusDetails { causes: vec![cause], ..Default::default() };
        StatusError::new(500, "InternalError", format!("Internal error occurred: {error}"), Some(Box::new(details)))
    }
    /// `NewServiceUnavailable` (no details).
    pub fn service_unavailable(message: impl Into<String>) -> Self {
        StatusError::new(503, "ServiceUnavailable", message.into(), None)
    }
    /// The storage's `NewTooLargeResourceVersionError`: a read at a resourceVersion the server
    /// has not reached in time; 504 with a retry hint of a second.
    pub fn too_large_resource_version(requested: u64, current: u64) -> Self {
        let cause = Cause::new(CauseType::ResourceVersionTooLarge, "", "Too large resource version");
        let details = StatusDetails { causes: vec![cause], retry_after_seconds: 1, ..Default::default() };
        let message = format!("Timeout: Too large resource version: {requested}, current: {current}");
        StatusError::new(504, "Timeout", message, Some(Box::new(details)))
    }
    /// The apiserver's negotiation `NewUnsupportedMediaTypeError`: a request body in a format
    /// the server does not read (no details).
    pub fn unsupported_media_type(accepted: &[&str]) -> Self {
        let message = format!(
            "the body of the request was in an unknown format - accepted media types include: {}",
            accepted.join(", ")
        );
        StatusError::new(415, "UnsupportedMediaType", message, None)
    }
    /// The apiserver's negotiation `NewNotAcceptableError`: no rendering the client accepts
    /// (no details).
    pub fn not_acceptable(accepted: &[&str]) -> Self {
        let message = format!("only the following media types are accepted: {}", accepted.join(", "));
        StatusError::new(406, "NotAcceptable", message, None)
    }
    /// `NewGenericServerResponse` as the apiserver makes it of a routing failure (go-restful's
    /// 404, 405, 415, 406) or a JSON patch that does not apply: the code's fixed message (the
    /// server's own for 403, 406 and 415), and details that are present but empty.
    pub fn server_response(code: u16, server_message: &str) -> Self {
        let (reason, message) = match code {
            400 => ("BadRequest", "the server rejected our request for an unknown reason"),
            401 => ("Unauthorized", "the server has asked for the client to provide credentials"),
            403 => ("Forbidden", server_message),
            404 => ("NotFound", "the server could not find the requested resource"),
            405 => ("MethodNotAllowed", "the server does not allow this method on the requested resource"),
            406 if server_message.is_empty() || server_message == "unknown" => {
                ("NotAcceptable", "the server was unable to respond with a content type that the client supports")
            }
            406 => ("NotAcceptable", server_message),
            409 => ("Conflict", "the server reported a conflict"),
            415 => ("UnsupportedMediaType", server_message),
            422 => ("Invalid", "the server rejected our request due to an error in our request"),
            429 => ("TooManyRequests", "the server has received too many requests and has asked us to try again later"),
            503 => ("ServiceUnavailable", "the server is currently unable to handle the request"),
            504 => (
                "Timeout",
                "the server was unable to return a response in the time allotted, but may still be processing the request",
            ),
            c if c >= 500 => {
                let message = format!("an error on the server ({server_message:?}) has prevented the request from succeeding");
                return StatusError::new(code, "InternalError", message, Some(Box::default()));
            }
            _ => ("Unknown", "the server responded with the status code but did not return more information"),
        };
        let message = if reason == "Unknown" {
            format!("the server responded with the status code {code} but did not return more information")
        } else {
            message.to_string()
        };
        StatusError::new(code, reason, message, Some(Box::default()))
    }
    /// go-restful's 404 for a path no route serves (an unknown resource or subresource).
    pub fn route_not_found() -> Self {
        StatusError::server_response(404, "404: Page Not Found")
    }
    /// go-restful's 405 for a method the path's routes do not take.
    pub fn method_not_allowed() -> Self {
        StatusError::server_response(405, "405: Method Not Allowed")
    }

    /// Adds causes to the details (upstream appends an eviction's budget to a 429's).
    pub fn with_causes(mut self, causes: impl IntoIterator<Item = Cause>) -> Self {
        self.details.get_or_insert_with(Box::default).causes.extend(causes);
        self
    }

    /// The `metav1.Status` JSON body.
    pub fn to_status(&self) -> Value {
        let mut status = json!({
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": self.message,
            "reason": self.reason,
            "code": self.code,
        });
        if let Some(d) = &self.details {
            status["details"] = d.to_json();
        }
        status
    }
}

fn qualified(group: &str, resource: &str) -> String {
    if group.is_empty() {
        resource.to_string()
    } else {
        format!("{resource}.{group}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The body upstream's apiserver writes for an error: `(code, reason, message, details)`.
    fn upstream(code: u16, reason: &str, message: &str, details: Option<Value>) -> Value {
        let mut s = json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
            "message": message, "reason": reason, "code": code});
        if let Some(d) = details {
            s["details"] = d;
        }
        s
    }

    #[test]
    fn every_constructor_gives_upstreams_status() {
        let table = [
            (
                StatusError::not_found("", "pods", "web"),
                upstream(404, "NotFound", "pods \"web\" not found", Some(json!({"name": "web", "kind": "pods"}))),
            ),
            (
                StatusError::not_found("apps", "deployments", "web"),
                upstream(
                    404,
                    "NotFound",
                    "deployments.apps \"web\" not found",
                    Some(json!({"name": "web", "group": "apps", "kind": "deployments"})),
                ),
            ),
            (
                StatusError::already_exists("", "configmaps", "c"),
                upstream(
                    409,
                    "AlreadyExists",
                    "configmaps \"c\" already exists",
                    Some(json!({"name": "c", "kind": "configmaps"})),
                ),
            ),
            (
                StatusError::conflict("apps", "deployments", "web", "the object has been modified"),
                upstream(
                    409,
                    "Conflict",
                    "Operation cannot be fulfilled on deployments.apps \"web\": the object has been modified",
                    Some(json!({"name": "web", "group": "apps", "kind": "deployments"})),
                ),
            ),
            (
                StatusError::invalid("apps", "Deployment", "d", vec![Cause::required("spec.selector")]),
                upstream(
                    422,
                    "Invalid",
                    "Deployment.apps \"d\" is invalid: spec.selector: Required value",
                    Some(json!({"name": "d", "group": "apps", "kind": "Deployment",
                        "causes": [{"reason": "FieldValueRequired", "message": "Required value", "field": "spec.selector"}]})),
                ),
            ),
            (
                StatusError::forbidden("", "namespaces", "default", "this namespace may not be deleted"),
                upstream(
                    403,
                    "Forbidden",
                    "namespaces \"default\" is forbidden: this namespace may not be deleted",
                    Some(json!({"name": "default", "kind": "namespaces"})),
                ),
            ),
            (
                StatusError::forbidden("", "pods", "", "unable to create new content in namespace x"),
                upstream(
                    403,
                    "Forbidden",
                    "pods is forbidden: unable to create new content in namespace x",
                    Some(json!({"kind": "pods"})),
                ),
            ),
            (
                StatusError::forbidden("", "", "", "unable to upgrade"),
                upstream(403, "Forbidden", "forbidden: unable to upgrade", Some(json!({}))),
            ),
            (
                StatusError::method_not_supported("metrics.k8s.io", "pods", "watch"),
                upstream(
                    405,
                    "MethodNotAllowed",
                    "watch is not supported on resources of kind \"pods.metrics.k8s.io\"",
                    Some(json!({"group": "metrics.k8s.io", "kind": "pods"})),
                ),
            ),
            (StatusError::bad_request("bad"), upstream(400, "BadRequest", "bad", None)),
            (StatusError::resource_expired("too old"), upstream(410, "Expired", "too old", None)),
            (
                StatusError::too_large("limit is 3145728"),
                upstream(413, "RequestEntityTooLarge", "Request entity too large: limit is 3145728", None),
            ),
            (
                StatusError::too_many_requests("slow down", 0)
                    .with_causes([Cause::new(CauseType::DisruptionBudget, "", "needs 2")]),
                upstream(
                    429,
                    "TooManyRequests",
                    "slow down",
                    Some(json!({"causes": [{"reason": "DisruptionBudget", "message": "needs 2"}]})),
                ),
            ),
            (
                StatusError::too_many_requests("slow down", 5),
                upstream(429, "TooManyRequests", "slow down", Some(json!({"retryAfterSeconds": 5}))),
            ),
            (
                StatusError::internal("boom"),
                upstream(500, "InternalError", "Internal error occurred: boom", Some(json!({"causes": [{"message": "boom"}]}))),
            ),
            (StatusError::service_unavailable("later"), upstream(503, "ServiceUnavailable", "later", None)),
            (
                StatusError::too_large_resource_version(9, 4),
                upstream(
                    504,
                    "Timeout",
                    "Timeout: Too large resource version: 9, current: 4",
                    Some(json!({"causes": [{"reason": "ResourceVersionTooLarge", "message": "Too large resource version"}],
                        "retryAfterSeconds": 1})),
                ),
            ),
            (
                StatusError::unsupported_media_type(MEDIA_TYPES),
                upstream(
                    415,
                    "UnsupportedMediaType",
                    "the body of the request was in an unknown format - accepted media types include: application/json, application/yaml, application/vnd.kubernetes.protobuf",
                    None,
                ),
            ),
            (
                StatusError::not_acceptable(MEDIA_TYPES),
                upstream(
                    406,
                    "NotAcceptable",
                    "only the following media types are accepted: application/json, application/yaml, application/vnd.kubernetes.protobuf",
                    None,
                ),
            ),
            (
                StatusError::route_not_found(),
                upstream(404, "NotFound", "the server could not find the requested resource", Some(json!({}))),
            ),
            (
                StatusError::method_not_allowed(),
                upstream(
                    405,
                    "MethodNotAllowed",
                    "the server does not allow this method on the requested resource",
                    Some(json!({})),
                ),
            ),
            (
                StatusError::server_response(415, "415: Unsupported Media Type"),
                upstream(415, "UnsupportedMediaType", "415: Unsupported Media Type", Some(json!({}))),
            ),
            (
                StatusError::server_response(422, "doc is missing path"),
                upstream(
                    422,
                    "Invalid",
                    "the server rejected our request due to an error in our request",
                    Some(json!({})),
                ),
            ),
        ];
        for (e, want) in table {
            assert_eq!(e.to_status(), want, "{e:?}");
        }
    }

    #[test]
    fn a_client_reads_back_what_the_server_wrote() {
        for e in [
            StatusError::not_found("apps", "deployments", "web"),
            StatusError::invalid("", "Pod", "p", vec![Cause::required("spec.containers")]),
            StatusError::internal("boom"),
            StatusError::route_not_found(),
            StatusError::bad_request("bad"),
            StatusError::too_large_resource_version(9, 4),
        ] {
            assert_eq!(StatusError::from_status(e.code, &e.to_status()), e);
        }
    }

    #[test]
    fn invalid_renders_like_upstream() {
        let e = StatusError::invalid("", "Pod", "web", vec![Cause::required("spec.containers[0].image")]);
        assert_eq!(e.code, 422);
        assert_eq!(e.message, "Pod \"web\" is invalid: spec.containers[0].image: Required value");
        let two = vec![Cause::required("a"), Cause::invalid("b", &json!(1), "must be 2")];
        let e = StatusError::invalid("", "Pod", "web", two);
        assert_eq!(e.message, "Pod \"web\" is invalid: [a: Required value, b: Invalid value: 1: must be 2]");
    }
}
