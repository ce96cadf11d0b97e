//! Conversion between the API versions that share one storage: `events.k8s.io/v1` Events are
//! stored as core `v1` Events (as upstream does), so both APIs see the same objects.

use kubus_apimachinery::{resource, ResourceInfo, StatusError};
use serde_json::{Map, Value};

/// (events.k8s.io/v1 field, core/v1 field) pairs that differ only in name.
const EVENT_FIELDS: &[(&str, &str)] = &[
    ("regarding", "involvedObject"),
    ("note", "message"),
    ("reportingController", "reportingComponent"),
    ("deprecatedSource", "source"),
    ("deprecatedFirstTimestamp", "firstTimestamp"),
    ("deprecatedLastTimestamp", "lastTimestamp"),
    ("deprecatedCount", "count"),
];

/// The resource whose typed form and rules apply in storage.
pub fn storage_info(info: &'static ResourceInfo) -> &'static ResourceInfo {
    if info.storage_group == info.group {
        info
    } else {
        resource::find(info.storage_group, "v1", info.storage_resource).unwrap_or(info)
    }
}

fn is_events_v1(info: &ResourceInfo) -> bool {
    info.group == "events.k8s.io"
}

fn rename(obj: &mut Map<String, Value>, pairs: impl Iterator<Item = (&'static str, &'static str)>) {
    for (from, to) in pairs {
        if let Some(v) = obj.remove(from) {
            obj.insert(to.to_string(), v);
        }
    }
}

/// Storage form -> the requested API version.
pub fn to_version(info: &ResourceInfo, mut v: Value) -> Value {
    if is_events_v1(info) {
        if let Some(o) = v.as_object_mut() {
            rename(o, EVENT_FIELDS.iter().map(|(a, b)| (*b, *a)));
            o.insert("apiVersion".into(), Value::String("events.k8s.io/v1".into()));
        }
    }
    v
}

/// The requested API version -> storage form.
pub fn from_version(info: &ResourceInfo, mut v: Value) -> Result<Value, StatusError> {
    if is_events_v1(info) {
        let Some(o) = v.as_object_mut() else {
            return Err(StatusError::bad_request("expected a JSON object"));
        };
        match o.get("apiVersion").and_then(Value::as_str) {
            None | Some("") | Some("events.k8s.io/v1") => {}
            Some(other) => {
                return Err(StatusError::bad_request(format!(
                    "the API version in the data ({other}) does not match the expected API version (events.k8s.io/v1)"
                )))
            }
        }
        rename(o, EVENT_FIELDS.iter().copied());
        o.insert("apiVersion".into(), Value::String("v1".into()));
    }
    Ok(v)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn events_round_trip() {
        let info = resource::find("events.k8s.io", "v1", "events").unwrap();
        let e = json!({"apiVersion":"events.k8s.io/v1","kind":"Event","note":"hi","regarding":{"kind":"Pod"}});
        let core = from_version(info, e.clone()).unwrap();
        assert_eq!(core["message"], "hi");
        assert_eq!(core["apiVersion"], "v1");
        assert_eq!(to_version(info, core), e);
    }
}
