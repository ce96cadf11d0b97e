//! Small helpers for objects held as JSON, shared by the write path and the strategies.

use kubus_apimachinery::time::format_rfc3339;
use serde_json::{json, Map, Value};
use std::time::SystemTime;

/// The current time as the API writes timestamps.
pub fn now() -> String {
    format_rfc3339(SystemTime::now())
}

/// The object's metadata, made an object if it is missing or not one.
pub fn meta(obj: &mut Value) -> &mut Map<String, Value> {
    if !obj.get("metadata").is_some_and(Value::is_object) {
        obj["metadata"] = json!({});
    }
    obj["metadata"].as_object_mut().expect("metadata is an object")
}

/// Puts `old`'s `field` into `new`, or removes it from `new` when `old` has none.
pub fn keep(new: &mut Value, old: &Value, field: &str) {
    match old.get(field) {
        Some(v) => new[field] = v.clone(),
        None => {
            new.as_object_mut().map(|o| o.remove(field));
        }
    }
}

/// What `generateName` gets appended.
pub fn random_suffix() -> String {
    // Upstream's alphabet: no vowels (no words) and no look-alike characters.
    const ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
    uuid::Uuid::new_v4().as_bytes()[..5].iter().map(|b| ALPHABET[*b as usize % ALPHABET.len()] as char).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keep_copies_or_removes() {
        let mut new = json!({"spec": {"a": 1}, "status": {"b": 2}});
        keep(&mut new, &json!({"spec": {"a": 3}}), "spec");
        keep(&mut new, &json!({}), "status");
        assert_eq!(new, json!({"spec": {"a": 3}}));
        let mut odd = json!({"metadata": 5});
        meta(&mut odd).insert("name".into(), json!("x"));
        assert_eq!(odd, json!({"metadata": {"name": "x"}}));
        assert_eq!(random_suffix().len(), 5);
    }
}
