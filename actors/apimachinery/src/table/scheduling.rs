//! Rows for the `scheduling.k8s.io` group: PriorityClasses.

use std::time::SystemTime;

use serde_json::{json, Value};

use super::{age, int, name};

pub(super) fn priority_class(pc: &Value, now: SystemTime) -> Vec<Value> {
    vec![
        name(pc),
        json!(int(pc, &["value"])),
        json!(pc["globalDefault"].as_bool().unwrap_or(false)),
        age(pc, now),
        json!(pc["preemptionPolicy"].as_str().unwrap_or("PreemptLowerPriority")),
    ]
}
