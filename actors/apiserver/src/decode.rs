//! Request bodies into the kind's canonical JSON: decoded through its k8s-openapi type, so
//! malformed fields are a 400 and unknown fields a warning or (Strict) a 400.

use kubus_apimachinery::{ResourceInfo, StatusError};
use serde_json::{json, Value};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum FieldValidation {
    Ignore,
    #[default]
    Warn,
    Strict,
}

impl FieldValidation {
    pub fn parse(s: Option<&str>) -> Result<Self, StatusError> {
        match s {
            None | Some("Warn") => Ok(FieldValidation::Warn),
            Some("Strict") => Ok(FieldValidation::Strict),
            Some("Ignore") => Ok(FieldValidation::Ignore),
            Some(o) => Err(StatusError::bad_request(format!(
                "fieldValidation parameter unsupported: {o:?}; supported values: \"Ignore\", \"Warn\", \"Strict\""
            ))),
        }
    }
}

/// Decodes a request body into the kind's typed form and back: the canonical JSON, and the
/// warnings for unknown fields.
pub fn decode(
    info: &'static ResourceInfo,
    mut body: Value,
    fv: FieldValidation,
) -> Result<(Value, Vec<String>), StatusError> {
    let Some(obj) = body.as_object_mut() else {
        return Err(StatusError::bad_request(format!(
            "{} in version \"{}\" cannot be handled as a {}: expected a JSON object",
            info.kind, info.version, info.kind
        )));
    };
    let api_version = info.api_version();
    match obj.get("apiVersion").and_then(Value::as_str) {
        None | Some("") => {}
        Some(v) if v == api_version => {}
        Some(v) => {
            return Err(StatusError::bad_request(format!(
                "the API version in the data ({v}) does not match the expected API version ({api_version})"
            )))
        }
    }
    match obj.get("kind").and_then(Value::as_str) {
        None | Some("") => {}
        Some(k) if k == info.kind => {}
        Some(k) => {
            return Err(StatusError::bad_request(format!(
                "the kind in the data ({k}) does not match the expected kind ({})",
                info.kind
            )))
        }
    }
    obj.insert("apiVersion".into(), json!(api_version));
    obj.insert("kind".into(), json!(info.kind));
    let decoded = (info.round_trip)(body.clone()).map_err(|e| {
        StatusError::bad_request(format!(
            "{} in version \"{}\" cannot be handled as a {}: {e}",
            info.kind, info.version, info.kind
        ))
    })?;
    let mut unknown = Vec::new();
    unknown_fields(&body, &decoded, "", &mut unknown);
    let mut warnings = Vec::new();
    if !unknown.is_empty() {
        let msgs: Vec<String> = unknown.iter().map(|f| format!("unknown field \"{f}\"")).collect();
        match fv {
            FieldValidation::Strict => {
                return Err(StatusError::bad_request(format!("strict decoding error: {}", msgs.join(", "))))
            }
            FieldValidation::Warn => warnings = msgs,
            FieldValidation::Ignore => {}
        }
    }
    Ok((decoded, warnings))
}

/// Paths of fields present (and not null) in `input` but dropped by the typed round trip.
fn unknown_fields(input: &Value, decoded: &Value, path: &str, out: &mut Vec<String>) {
    match (input, decoded) {
        (Value::Object(a), Value::Object(b)) => {
            for (k, v) in a {
                if v.is_null() {
                    continue;
                }
                let p = if path.is_empty() { k.clone() } else { format!("{path}.{k}") };
                match b.get(k) {
                    None => out.push(p),
                    Some(d) => unknown_fields(v, d, &p, out),
                }
            }
        }
        (Value::Array(a), Value::Array(b)) => {
            for (i, (x, y)) in a.iter().zip(b).enumerate() {
                unknown_fields(x, y, &format!("{path}[{i}]"), out);
            }
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_fields_are_found_with_paths() {
        let pods = kubus_apimachinery::resource::find("", "v1", "pods").unwrap();
        let body = json!({"metadata":{"name":"p"},"spec":{"containers":[{"name":"c","image":"i","imagePullPolicyy":"x"}],"bogus":1}});
        let err = decode(pods, body.clone(), FieldValidation::Strict).unwrap_err();
        assert_eq!(err.code, 400);
        assert!(err.message.contains("unknown field \"spec.bogus\""), "{}", err.message);
        assert!(err.message.contains("spec.containers[0].imagePullPolicyy"), "{}", err.message);
        let (_, warnings) = decode(pods, body, FieldValidation::Warn).unwrap();
        assert_eq!(warnings.len(), 2);
    }

    #[test]
    fn wrong_types_are_bad_requests() {
        let pods = kubus_apimachinery::resource::find("", "v1", "pods").unwrap();
        let err = decode(pods, json!({"spec":{"containers":5}}), FieldValidation::Warn).unwrap_err();
        assert_eq!((err.code, err.reason), (400, "BadRequest"));
        let err = decode(pods, json!({"apiVersion":"apps/v1"}), FieldValidation::Warn).unwrap_err();
        assert!(err.message.contains("does not match the expected API version"));
    }
}
