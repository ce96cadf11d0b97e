//! Rows for the `policy` group: PodDisruptionBudgets.

use std::time::SystemTime;

use serde_json::{json, Value};

use super::{age, int, name};

fn int_or_percent(v: &Value) -> String {
    match v {
        Value::Null => "N/A".to_string(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

pub(super) fn pod_disruption_budget(pdb: &Value, now: SystemTime) -> Vec<Value> {
    vec![
        name(pdb),
        json!(int_or_percent(&pdb["spec"]["minAvailable"])),
        json!(int_or_percent(&pdb["spec"]["maxUnavailable"])),
        json!(int(&pdb["status"], &["disruptionsAllowed"])),
        age(pdb, now),
    ]
}
