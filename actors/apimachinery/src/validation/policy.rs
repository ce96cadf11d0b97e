//! PodDisruptionBudgets (policy/v1, upstream `ValidatePodDisruptionBudget`).

use serde_json::Value;

use super::meta::{self, NameRule, Scope};
use super::names;
use super::util::*;
use crate::status::Cause;

fn int_or_percent(errs: &mut Vec<Cause>, v: Option<&Value>, p: &str) {
    match v {
        None => {}
        Some(Value::String(s)) => {
            invalid_each(errs, p, s, names::percent_errors(s));
            if names::percent_errors(s).is_empty() && s.trim_end_matches('%').parse::<i64>().is_ok_and(|n| n > 100) {
                errs.push(Cause::invalid(p, &str_value(s), "must not be greater than 100%"));
            }
        }
        Some(n) => match as_int(n) {
            Some(i) => nonnegative(errs, i, p),
            None => errs.push(Cause::invalid(p, n, "must be an integer or percentage (e.g '5%')")),
        },
    }
}

pub(crate) fn validate_pod_disruption_budget(pdb: &Value) -> Vec<Cause> {
    let mut errs = meta::validate_object_meta(pdb, Scope::Namespaced, NameRule::Subdomain);
    let spec = sub(pdb, "spec");
    let (min, max) = (get(spec, "minAvailable"), get(spec, "maxUnavailable"));
    if min.is_some() && max.is_some() {
        errs.push(Cause::invalid("spec", spec, "minAvailable and maxUnavailable cannot be both set"));
    }
    int_or_percent(&mut errs, min, "spec.minAvailable");
    int_or_percent(&mut errs, max, "spec.maxUnavailable");
    if let Some(sel) = get(spec, "selector") {
        errs.extend(meta::validate_label_selector(sel, "spec.selector"));
    }
    match get(spec, "unhealthyPodEvictionPolicy").and_then(Value::as_str) {
        None | Some("IfHealthyBudget" | "AlwaysAllow") => {}
        Some(p) => errs.push(Cause::not_supported(
            "spec.unhealthyPodEvictionPolicy",
            &str_value(p),
            &["AlwaysAllow", "IfHealthyBudget"],
        )),
    }
    errs
}

pub(crate) fn validate_pod_disruption_budget_status(new: &Value) -> Vec<Cause> {
    let mut errs = Vec::new();
    let status = sub(new, "status");
    for f in ["disruptionsAllowed", "currentHealthy", "desiredHealthy", "expectedPods"] {
        nonnegative_field(&mut errs, status, f, &format!("status.{f}"));
    }
    errs
}
