//! Rows for persistent storage: PersistentVolumes, PersistentVolumeClaims, StorageClasses.

use std::time::SystemTime;

use serde_json::{json, Value};

use super::{age, list, name, text};

/// Upstream's `GetAccessModesAsString`: abbreviations in a fixed order.
fn access_modes(spec: &Value) -> String {
    let modes = list(spec, &["accessModes"]);
    let has = |m: &str| modes.iter().any(|x| x == m);
    [("ReadWriteOnce", "RWO"), ("ReadOnlyMany", "ROX"), ("ReadWriteMany", "RWX"), ("ReadWriteOncePod", "RWOP")]
        .iter()
        .filter(|(m, _)| has(m))
        .map(|(_, a)| *a)
        .collect::<Vec<_>>()
        .join(",")
}

fn volume_mode(spec: &Value) -> String {
    spec["volumeMode"].as_str().unwrap_or("Filesystem").to_string()
}

fn attributes_class(spec: &Value) -> String {
    spec["volumeAttributesClassName"].as_str().unwrap_or("<unset>").to_string()
}

pub(super) fn persistent_volume(pv: &Value, now: SystemTime) -> Vec<Value> {
    let spec = &pv["spec"];
    let claim = match spec["claimRef"].as_object() {
        Some(r) => format!(
            "{}/{}",
            r.get("namespace").and_then(Value::as_str).unwrap_or_default(),
            r.get("name").and_then(Value::as_str).unwrap_or_default()
        ),
        None => String::new(),
    };
    vec![
        name(pv),
        json!(text(spec, &["capacity", "storage"])),
        json!(access_modes(spec)),
        json!(text(spec, &["persistentVolumeReclaimPolicy"])),
        json!(text(pv, &["status", "phase"])),
        json!(claim),
        json!(text(spec, &["storageClassName"])),
        json!(attributes_class(spec)),
        json!(text(pv, &["status", "reason"])),
        age(pv, now),
        json!(volume_mode(spec)),
    ]
}

pub(super) fn persistent_volume_claim(pvc: &Value, now: SystemTime) -> Vec<Value> {
    let spec = &pvc["spec"];
    let phase = if pvc["metadata"]["deletionTimestamp"].is_null() {
        text(pvc, &["status", "phase"]).to_string()
    } else {
        "Terminating".to_string()
    };
    let bound = !text(spec, &["volumeName"]).is_empty();
    let (capacity, modes) = if bound {
        (text(pvc, &["status", "capacity", "storage"]).to_string(), access_modes(&pvc["status"]))
    } else {
        (String::new(), String::new())
    };
    vec![
        name(pvc),
        json!(phase),
        json!(text(spec, &["volumeName"])),
        json!(capacity),
        json!(modes),
        json!(text(spec, &["storageClassName"])),
        json!(attributes_class(spec)),
        age(pvc, now),
        json!(volume_mode(spec)),
    ]
}

/// Marks the default class as upstream does: `standard (default)`.
pub(super) fn storage_class(sc: &Value, now: SystemTime) -> Vec<Value> {
    let default = sc["metadata"]["annotations"]["storageclass.kubernetes.io/is-default-class"] == "true";
    let n = text(sc, &["metadata", "name"]);
    let n = if default { format!("{n} (default)") } else { n.to_string() };
    vec![
        json!(n),
        json!(text(sc, &["provisioner"])),
        json!(sc["reclaimPolicy"].as_str().unwrap_or("Delete")),
        json!(sc["volumeBindingMode"].as_str().unwrap_or("Immediate")),
        json!(sc["allowVolumeExpansion"].as_bool().unwrap_or(false)),
        age(sc, now),
    ]
}
