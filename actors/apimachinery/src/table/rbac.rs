//! Rows for the `rbac.authorization.k8s.io` group: RoleBindings and ClusterRoleBindings (roles
//! print with the default name and creation time columns, as upstream's).

use std::time::SystemTime;

use serde_json::{json, Value};

use super::{age, name};

/// NAME, ROLE (kind/name), AGE, then in wide output the subjects by kind.
pub(super) fn binding(b: &Value, now: SystemTime) -> Vec<Value> {
    let role = format!(
        "{}/{}",
        b["roleRef"]["kind"].as_str().unwrap_or_default(),
        b["roleRef"]["name"].as_str().unwrap_or_default()
    );
    let subjects = b["subjects"].as_array().map(Vec::as_slice).unwrap_or_default();
    let of = |kind: &str| -> String {
        subjects
            .iter()
            .filter(|s| s["kind"] == kind)
            .map(|s| {
                let n = s["name"].as_str().unwrap_or_default();
                match (kind, s["namespace"].as_str()) {
                    ("ServiceAccount", Some(ns)) => format!("{ns}:{n}"),
                    _ => n.to_string(),
                }
            })
            .collect::<Vec<_>>()
            .join(", ")
    };
    vec![name(b), json!(role), age(b, now), json!(of("User")), json!(of("Group")), json!(of("ServiceAccount"))]
}
