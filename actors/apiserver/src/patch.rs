//! The four patch types (JSON patch, merge patch, strategic merge patch, server-side apply)
//! applied to an object in its API version's form.

use crate::object::{meta, now};
use kubus_apimachinery::patch::strategic;
use kubus_apimachinery::StatusError;
use serde_json::{json, Value};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PatchKind {
    Json,
    Merge,
    Strategic,
    Apply,
}

impl PatchKind {
    pub fn from_content_type(ct: &str) -> Result<Self, StatusError> {
        let media = ct.split(';').next().unwrap_or("").trim();
        match media {
            "application/json-patch+json" => Ok(PatchKind::Json),
            "application/merge-patch+json" => Ok(PatchKind::Merge),
            "application/strategic-merge-patch+json" => Ok(PatchKind::Strategic),
            "application/apply-patch+yaml" | "application/apply-patch+cbor" => Ok(PatchKind::Apply),
            // go-restful's 415: a patch route consumes only the patch types.
            _ => Err(StatusError::server_response(415, "415: Unsupported Media Type")),
        }
    }
}

/// Whether a patch names a resourceVersion, which the object must then have.
pub fn patch_demands_rv(kind: PatchKind, patch: &Value) -> bool {
    match kind {
        PatchKind::Json => patch
            .as_array()
            .is_some_and(|ops| ops.iter().any(|op| op["path"] == "/metadata/resourceVersion" && op["op"] != "remove")),
        _ => patch["metadata"]["resourceVersion"].is_string(),
    }
}

/// Applies a patch of one of the four kinds to `old` (API version form).
pub fn apply_patch(kind: PatchKind, old: &Value, patch: &Value, root: Option<&str>) -> Result<Value, StatusError> {
    match kind {
        PatchKind::Json => {
            let ops: json_patch::Patch = serde_json::from_value(patch.clone())
                .map_err(|e| StatusError::bad_request(format!("error decoding JSON patch: {e}")))?;
            let mut doc = old.clone();
            // Upstream answers a patch that does not apply with a generic 422, its message
            // without the patch library's reason.
            json_patch::patch(&mut doc, &ops).map_err(|e| StatusError::server_response(422, &e.to_string()))?;
            Ok(doc)
        }
        PatchKind::Merge => {
            if !patch.is_object() {
                return Err(StatusError::bad_request("a merge patch must be a JSON object"));
            }
            let mut doc = old.clone();
            json_patch::merge(&mut doc, patch);
            Ok(doc)
        }
        PatchKind::Strategic | PatchKind::Apply => {
            strategic::strategic_merge(old, patch, root).map_err(|e| StatusError::bad_request(e.to_string()))
        }
    }
}

/// Server-side apply records its manager; field ownership is not tracked beyond that entry.
pub fn record_apply_manager(obj: &mut Value, manager: &str) {
    let api_version = obj["apiVersion"].as_str().unwrap_or("").to_string();
    let m = meta(obj);
    let mut fields: Vec<Value> = m.get("managedFields").and_then(Value::as_array).cloned().unwrap_or_default();
    fields.retain(|f| !(f["manager"] == manager && f["operation"] == "Apply"));
    fields.push(json!({"manager": manager, "operation": "Apply", "apiVersion": api_version, "time": now(), "fieldsType": "FieldsV1", "fieldsV1": {}}));
    m.insert("managedFields".into(), Value::Array(fields));
}
