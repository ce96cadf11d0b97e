//! PriorityClasses (scheduling.k8s.io/v1, upstream `ValidatePriorityClass`): user classes stay
//! at or below 1,000,000,000, the `system-` prefix belongs to the built-in classes, and a
//! class's value and preemption policy never change (pods copied them at admission).

use serde_json::Value;

use super::meta::{self, NameRule, Scope};
use super::util::*;
use crate::status::Cause;

/// Highest value a class made by users may have (upstream's HighestUserDefinablePriority).
pub const HIGHEST_USER_DEFINABLE_PRIORITY: i64 = 1_000_000_000;
pub const SYSTEM_PRIORITY_CLASS_PREFIX: &str = "system-";
pub const SYSTEM_CLUSTER_CRITICAL: &str = "system-cluster-critical";
pub const SYSTEM_NODE_CRITICAL: &str = "system-node-critical";
/// The classes every cluster has from its start, with their values.
pub const SYSTEM_PRIORITY_CLASSES: &[(&str, i64)] =
    &[(SYSTEM_NODE_CRITICAL, 2_000_001_000), (SYSTEM_CLUSTER_CRITICAL, 2_000_000_000)];

/// Whether `name` is a built-in class with exactly its built-in value (and not a default).
fn known_system_class(name: &str, value: i64, global_default: bool) -> Result<(), String> {
    let Some((_, v)) = SYSTEM_PRIORITY_CLASSES.iter().find(|(n, _)| *n == name) else {
        return Err(format!("{name} is not a known system priority class"));
    };
    if *v != value {
        return Err(format!("value of {name} PriorityClass must be {v}"));
    }
    if global_default {
        return Err(format!("globalDefault of {name} PriorityClass must be false"));
    }
    Ok(())
}

fn preemption_policy(errs: &mut Vec<Cause>, pc: &Value) {
    match get(pc, "preemptionPolicy").and_then(Value::as_str) {
        None | Some("PreemptLowerPriority" | "Never") => {}
        Some(p) => {
            errs.push(Cause::not_supported("preemptionPolicy", &str_value(p), &["Never", "PreemptLowerPriority"]))
        }
    }
}

pub(crate) fn validate_priority_class(pc: &Value) -> Vec<Cause> {
    let mut errs = meta::validate_object_meta(pc, Scope::Cluster, NameRule::Subdomain);
    let name = pc["metadata"]["name"].as_str().unwrap_or("");
    let value = get_int(pc, "value").unwrap_or(0);
    if name.starts_with(SYSTEM_PRIORITY_CLASS_PREFIX) {
        if let Err(e) = known_system_class(name, value, get_bool(pc, "globalDefault")) {
            errs.push(Cause::forbidden(
                "metadata.name",
                format!(
                    "priority class names with '{SYSTEM_PRIORITY_CLASS_PREFIX}' prefix are reserved for system use only. error: {e}"
                ),
            ));
        }
    } else if value > HIGHEST_USER_DEFINABLE_PRIORITY {
        errs.push(Cause::forbidden(
            "value",
            format!("maximum allowed value of a user defined priority is {HIGHEST_USER_DEFINABLE_PRIORITY}"),
        ));
    }
    preemption_policy(&mut errs, pc);
    errs
}

/// Upstream checks only what may not change: the name (metadata rules), value and policy.
pub(crate) fn validate_priority_class_update(new: &Value, old: &Value) -> Vec<Cause> {
    let mut errs = Vec::new();
    if get_int(new, "value") != get_int(old, "value") {
        errs.push(Cause::forbidden("value", "may not be changed in an update."));
    }
    if !semantic_eq(get(new, "preemptionPolicy"), get(old, "preemptionPolicy")) {
        errs.push(Cause::invalid("preemptionPolicy", sub(new, "preemptionPolicy"), IMMUTABLE));
    }
    errs
}
