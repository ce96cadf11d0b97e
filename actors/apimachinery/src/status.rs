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
        }
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
        }
    }
}

/// One field error (`metav1.StatusCause`); `field` is a path like `spec.containers[0].image`.
#[derive(Debug, Clone, PartialEq)]
pub struct Cause {
    pub kind: CauseType,
    pub field: String,
    pub message: String,
}

impl Cause {
    pub fn new(kind: CauseType, field: impl Into<String>, message: impl Into<String>) -> Self {
        Cause { kind, field: field.into(), message: message.into() }
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
        if self.message.starts_with(self.kind.phrase()) {
            format!("{}: {}", self.field, self.message)
        } else {
            format!("{}: {}: {}", self.field, self.kind.phrase(), self.message)
        }
    }
}

/// The object an error is about.
#[derive(Debug, Clone, PartialEq)]
pub struct ObjectRef {
    pub group: String,
    pub kind: String,
    pub name: String,
}

/// An API error; `to_status()` gives the `Status` body and `code` the HTTP status.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{message}")]
pub struct StatusError {
    pub code: u16,
    pub reason: &'static str,
    pub message: String,
    /// `details.group`, `details.kind`, `details.name` when the error is about one object
    /// (boxed: errors travel in every `Result`, so they are kept small).
    pub details: Option<Box<ObjectRef>>,
    pub causes: Vec<Cause>,
    /// `details.retryAfterSeconds`.
    pub retry_after: Option<u32>,
}

impl StatusError {
    pub fn new(code: u16, reason: &'static str, message: impl Into<String>) -> Self {
        StatusError { code, reason, message: message.into(), details: None, causes: Vec::new(), retry_after: None }
    }
    /// The error a `Status` body received from an API server describes (as a client reads it).
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
        StatusError::new(code, reason.unwrap_or("Unknown"), status["message"].as_str().unwrap_or_default())
    }
    pub fn with_details(mut self, group: &str, kind: &str, name: &str) -> Self {
        self.details =
            Some(Box::new(ObjectRef { group: group.to_string(), kind: kind.to_string(), name: name.to_string() }));
        self
    }
    /// `kind` is the plural resource name upstream uses here (e.g. `pods`, `deployments.apps`).
    pub fn not_found(group: &str, resource: &str, name: &str) -> Self {
        StatusError::new(404, "NotFound", format!("{} \"{name}\" not found", qualified(group, resource)))
            .with_details(group, resource, name)
    }
    pub fn already_exists(group: &str, resource: &str, name: &str) -> Self {
        StatusError::new(409, "AlreadyExists", format!("{} \"{name}\" already exists", qualified(group, resource)))
            .with_details(group, resource, name)
    }
    pub fn conflict(group: &str, resource: &str, name: &str, detail: &str) -> Self {
        StatusError::new(
            409,
            "Conflict",
            format!("Operation cannot be fulfilled on {} \"{name}\": {detail}", qualified(group, resource)),
        )
        .with_details(group, resource, name)
    }
    /// 422 with field causes; `kind` is the object's Kind (e.g. `Pod`).
    pub fn invalid(group: &str, kind: &str, name: &str, causes: Vec<Cause>) -> Self {
        let rendered: Vec<String> = causes.iter().map(Cause::render).collect();
        let detail = if rendered.len() == 1 { rendered[0].clone() } else { format!("[{}]", rendered.join(", ")) };
        let mut e = StatusError::new(422, "Invalid", format!("{kind}.{group} \"{name}\" is invalid: {detail}"))
            .with_details(group, kind, name);
        if group.is_empty() {
            e.message = format!("{kind} \"{name}\" is invalid: {detail}");
        }
        e.causes = causes;
        e
    }
    pub fn bad_request(message: impl Into<String>) -> Self {
        StatusError::new(400, "BadRequest", message)
    }
    pub fn method_not_allowed(message: impl Into<String>) -> Self {
        StatusError::new(405, "MethodNotAllowed", message)
    }
    pub fn unsupported_media_type(content_type: &str) -> Self {
        StatusError::new(415, "UnsupportedMediaType", format!("the body of the request was in an unknown format - accepted media types include: application/json-patch+json, application/merge-patch+json, application/apply-patch+yaml, application/strategic-merge-patch+json; got {content_type:?}"))
    }
    pub fn not_acceptable(message: impl Into<String>) -> Self {
        StatusError::new(406, "NotAcceptable", message)
    }
    pub fn too_large(message: impl Into<String>) -> Self {
        StatusError::new(413, "RequestEntityTooLarge", message)
    }
    pub fn gone(message: impl Into<String>) -> Self {
        StatusError::new(410, "Expired", message)
    }
    pub fn internal(message: impl Into<String>) -> Self {
        StatusError::new(500, "InternalError", format!("Internal error occurred: {}", message.into()))
    }
    pub fn unavailable(message: impl Into<String>) -> Self {
        let mut e = StatusError::new(503, "ServiceUnavailable", message);
        e.retry_after = Some(1);
        e
    }
    pub fn timeout(message: impl Into<String>) -> Self {
        let mut e = StatusError::new(504, "Timeout", message);
        e.retry_after = Some(1);
        e
    }
    pub fn forbidden(message: impl Into<String>) -> Self {
        StatusError::new(403, "Forbidden", message)
    }

    /// The `metav1.Status` JSON body.
    pub fn to_status(&self) -> Value {
        let mut details = serde_json::Map::new();
        if let Some(d) = &self.details {
            details.insert("name".into(), json!(d.name));
            details.insert("group".into(), json!(d.group));
            details.insert("kind".into(), json!(d.kind));
        }
        if !self.causes.is_empty() {
            let causes: Vec<Value> = self
                .causes
                .iter()
                .map(|c| {
                    let mut cause = json!({"reason": c.kind.as_str(), "message": c.message});
                    // Upstream leaves out an empty field (an eviction's cause has none).
                    if !c.field.is_empty() {
                        cause["field"] = json!(c.field);
                    }
                    cause
                })
                .collect();
            details.insert("causes".into(), Value::Array(causes));
        }
        if let Some(r) = self.retry_after {
            details.insert("retryAfterSeconds".into(), json!(r));
        }
        let mut status = json!({
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": self.message,
            "reason": self.reason,
            "code": self.code,
        });
        if !details.is_empty() {
            status["details"] = Value::Object(details);
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

    #[test]
    fn invalid_renders_like_upstream() {
        let e = StatusError::invalid("", "Pod", "web", vec![Cause::required("spec.containers[0].image")]);
        assert_eq!(e.code, 422);
        assert_eq!(e.message, "Pod \"web\" is invalid: spec.containers[0].image: Required value");
        let s = e.to_status();
        assert_eq!(s["details"]["causes"][0]["reason"], "FieldValueRequired");
    }

    #[test]
    fn not_found_for_grouped_resource() {
        let e = StatusError::not_found("apps", "deployments", "web");
        assert_eq!(e.message, "deployments.apps \"web\" not found");
        assert_eq!(e.to_status()["code"], 404);
    }
}
