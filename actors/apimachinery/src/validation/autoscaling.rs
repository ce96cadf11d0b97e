//! HorizontalPodAutoscalers (autoscaling/v2, the stored form; upstream
//! `ValidateHorizontalPodAutoscaler`).

use serde_json::Value;

use super::meta::{self, NameRule, Scope};
use super::util::*;
use crate::quantity::parse_quantity_value;
use crate::status::Cause;

const METRIC_TYPES: &[&str] = &["ContainerResource", "External", "Object", "Pods", "Resource"];
const TARGET_TYPES: &[&str] = &["AverageValue", "Utilization", "Value"];
const MAX_PERIOD_SECONDS: i64 = 1800;
const MAX_STABILIZATION_WINDOW_SECONDS: i64 = 3600;

pub(crate) fn validate_horizontal_pod_autoscaler(hpa: &Value) -> Vec<Cause> {
    let mut errs = meta::validate_object_meta(hpa, Scope::Namespaced, NameRule::Subdomain);
    let spec = sub(hpa, "spec");
    let min = int_field(&mut errs, spec, "minReplicas", "spec.minReplicas");
    if let Some(m) = min.filter(|m| *m < 1) {
        errs.push(Cause::invalid("spec.minReplicas", &Value::from(m), "must be greater than or equal to 1"));
    }
    match int_field(&mut errs, spec, "maxReplicas", "spec.maxReplicas") {
        Some(max) if max < 1 => {
            errs.push(Cause::invalid("spec.maxReplicas", &Value::from(max), "must be greater than 0"))
        }
        Some(max) if min.is_some_and(|m| max < m) => errs.push(Cause::invalid(
            "spec.maxReplicas",
            &Value::from(max),
            "must be greater than or equal to `minReplicas`",
        )),
        Some(_) => {}
        None => errs.push(Cause::invalid("spec.maxReplicas", &Value::from(0), "must be greater than 0")),
    }
    let target = sub(spec, "scaleTargetRef");
    for field in ["kind", "name"] {
        let v = get_str(target, field);
        let path = format!("spec.scaleTargetRef.{field}");
        if v.is_empty() {
            errs.push(Cause::required(&path));
        } else {
            for msg in meta::name_errors(NameRule::PathSegment, v) {
                errs.push(Cause::invalid(&path, &str_value(v), msg));
            }
        }
    }
    for (i, m) in get_arr(spec, "metrics").iter().enumerate() {
        validate_metric(&mut errs, m, &index("spec.metrics", i));
    }
    if let Some(b) = get(spec, "behavior") {
        for rules in ["scaleUp", "scaleDown"] {
            if let Some(r) = get(b, rules) {
                validate_rules(&mut errs, r, &format!("spec.behavior.{rules}"));
            }
        }
    }
    errs
}

fn validate_metric(errs: &mut Vec<Cause>, m: &Value, p: &str) {
    let ty = get_str(m, "type");
    if ty.is_empty() {
        errs.push(required_detail(&child(p, "type"), "must specify a metric source type"));
        return;
    }
    if !METRIC_TYPES.contains(&ty) {
        errs.push(Cause::not_supported(child(p, "type"), &str_value(ty), METRIC_TYPES));
        return;
    }
    // The member named for the type: `resource`, `pods`, `object`, ...
    let member = match ty {
        "ContainerResource" => "containerResource",
        "External" => "external",
        "Object" => "object",
        "Pods" => "pods",
        _ => "resource",
    };
    let Some(source) = get(m, member) else {
        errs.push(required_detail(&child(p, member), "must populate information for the given metric source"));
        return;
    };
    let sp = child(p, member);
    match ty {
        "Resource" | "ContainerResource" => {
            if get_str(source, "name").is_empty() {
                errs.push(required_detail(&child(&sp, "name"), "must specify a resource name"));
            }
            if ty == "ContainerResource" && get_str(source, "container").is_empty() {
                errs.push(required_detail(&child(&sp, "container"), "must specify a container"));
            }
            let target = sub(source, "target");
            validate_target(errs, target, &child(&sp, "target"));
            let (util, avg) = (get(target, "averageUtilization"), get(target, "averageValue"));
            if util.is_none() && avg.is_none() {
                errs.push(required_detail(
                    &child(&child(&sp, "target"), "averageUtilization"),
                    "must set either a target raw value or a target utilization",
                ));
            } else if util.is_some() && avg.is_some() {
                errs.push(Cause::forbidden(
                    child(&child(&sp, "target"), "averageValue"),
                    "may not set both a target raw value and a target utilization",
                ));
            }
        }
        _ => {
            if get_str(sub(source, "metric"), "name").is_empty() {
                errs.push(required_detail(&child(&child(&sp, "metric"), "name"), "must specify a metric name"));
            }
            validate_target(errs, sub(source, "target"), &child(&sp, "target"));
        }
    }
}

fn validate_target(errs: &mut Vec<Cause>, t: &Value, p: &str) {
    let ty = get_str(t, "type");
    if ty.is_empty() {
        errs.push(required_detail(&child(p, "type"), "must specify a metric target type"));
    } else if !TARGET_TYPES.contains(&ty) {
        errs.push(Cause::invalid(
            child(p, "type"),
            &str_value(ty),
            "must be either Utilization, Value, or AverageValue",
        ));
    }
    for field in ["value", "averageValue"] {
        if let Some(v) = get(t, field) {
            match parse_quantity_value(v) {
                Ok(q) if q.is_zero() || q.is_negative() => {
                    errs.push(Cause::invalid(child(p, field), v, "must be positive"))
                }
                Ok(_) => {}
                Err(e) => errs.push(Cause::invalid(child(p, field), v, e)),
            }
        }
    }
    if let Some(u) = int_field(errs, t, "averageUtilization", &child(p, "averageUtilization")) {
        if u < 1 {
            errs.push(Cause::invalid(child(p, "averageUtilization"), &Value::from(u), "must be greater than 0"));
        }
    }
}

fn validate_rules(errs: &mut Vec<Cause>, r: &Value, p: &str) {
    let window_path = child(p, "stabilizationWindowSeconds");
    if let Some(w) = int_field(errs, r, "stabilizationWindowSeconds", &window_path) {
        if w < 0 {
            errs.push(Cause::invalid(&window_path, &Value::from(w), "must be greater than or equal to zero"));
        } else if w > MAX_STABILIZATION_WINDOW_SECONDS {
            let msg = format!("must be less than or equal to {MAX_STABILIZATION_WINDOW_SECONDS}");
            errs.push(Cause::invalid(&window_path, &Value::from(w), msg));
        }
    }
    match get(r, "selectPolicy").and_then(Value::as_str) {
        None | Some("Max" | "Min" | "Disabled") => {}
        Some(s) => {
            errs.push(Cause::not_supported(child(p, "selectPolicy"), &str_value(s), &["Disabled", "Max", "Min"]))
        }
    }
    let policies = get_arr(r, "policies");
    if policies.is_empty() {
        errs.push(required_detail(&child(p, "policies"), "must specify at least one Policy"));
    }
    for (i, policy) in policies.iter().enumerate() {
        let pp = index(&child(p, "policies"), i);
        match get_str(policy, "type") {
            "Pods" | "Percent" => {}
            t => errs.push(Cause::not_supported(child(&pp, "type"), &str_value(t), &["Percent", "Pods"])),
        }
        if let Some(v) = int_field(errs, policy, "value", &child(&pp, "value")) {
            if v <= 0 {
                errs.push(Cause::invalid(child(&pp, "value"), &Value::from(v), "must be greater than zero"));
            }
        }
        if let Some(s) = int_field(errs, policy, "periodSeconds", &child(&pp, "periodSeconds")) {
            if s <= 0 {
                errs.push(Cause::invalid(child(&pp, "periodSeconds"), &Value::from(s), "must be greater than zero"));
            } else if s > MAX_PERIOD_SECONDS {
                let msg = format!("must be less than or equal to {MAX_PERIOD_SECONDS}");
                errs.push(Cause::invalid(child(&pp, "periodSeconds"), &Value::from(s), msg));
            }
        }
    }
}

/// What a status write may carry: counts are not negative.
pub(crate) fn validate_horizontal_pod_autoscaler_status(new: &Value) -> Vec<Cause> {
    let mut errs = Vec::new();
    let status = sub(new, "status");
    for f in ["currentReplicas", "desiredReplicas"] {
        nonnegative_field(&mut errs, status, f, &format!("status.{f}"));
    }
    errs
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn hpa(spec: Value) -> Value {
        json!({"metadata": {"name": "web", "namespace": "default"}, "spec": spec})
    }

    fn fields(errs: &[Cause]) -> Vec<String> {
        errs.iter().map(|c| format!("{}: {}", c.field, c.message)).collect()
    }

    #[test]
    fn a_cpu_target_is_valid() {
        let ok = hpa(json!({"scaleTargetRef": {"kind": "Deployment", "name": "web", "apiVersion": "apps/v1"},
            "minReplicas": 1, "maxReplicas": 3,
            "metrics": [{"type": "Resource", "resource": {"name": "cpu", "target": {"type": "Utilization", "averageUtilization": 50}}}],
            "behavior": {"scaleDown": {"stabilizationWindowSeconds": 10, "policies": [{"type": "Pods", "value": 1, "periodSeconds": 15}]}}}));
        assert!(
            validate_horizontal_pod_autoscaler(&ok).is_empty(),
            "{:?}",
            fields(&validate_horizontal_pod_autoscaler(&ok))
        );
    }

    #[test]
    fn bad_specs_name_their_fields() {
        let bad = hpa(json!({"scaleTargetRef": {"kind": "", "name": "web"}, "minReplicas": 5, "maxReplicas": 2,
            "metrics": [
                {"type": "Resource", "resource": {"name": "cpu", "target": {"type": "Utilization", "averageUtilization": 0}}},
                {"type": "Bogus"},
                {"type": "Resource", "resource": {"name": "memory", "target": {"type": "AverageValue"}}}
            ],
            "behavior": {"scaleUp": {"stabilizationWindowSeconds": 4000, "selectPolicy": "Most", "policies": [{"type": "Pods", "value": 0, "periodSeconds": 2000}]}}}));
        let f = fields(&validate_horizontal_pod_autoscaler(&bad));
        for want in [
            "spec.scaleTargetRef.kind: Required value",
            "spec.maxReplicas: Invalid value: 2: must be greater than or equal to `minReplicas`",
            "spec.metrics[0].resource.target.averageUtilization: Invalid value: 0: must be greater than 0",
            "spec.metrics[1].type: Unsupported value: \"Bogus\"",
            "spec.metrics[2].resource.target.averageUtilization: Required value: must set either a target raw value or a target utilization",
            "spec.behavior.scaleUp.stabilizationWindowSeconds: Invalid value: 4000: must be less than or equal to 3600",
            "spec.behavior.scaleUp.selectPolicy: Unsupported value: \"Most\"",
            "spec.behavior.scaleUp.policies[0].value: Invalid value: 0: must be greater than zero",
            "spec.behavior.scaleUp.policies[0].periodSeconds: Invalid value: 2000: must be less than or equal to 1800",
        ] {
            assert!(f.iter().any(|m| m.starts_with(want)), "{want} not in {f:#?}");
        }
    }
}
