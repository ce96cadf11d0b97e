//! ResourceQuotas and LimitRanges (upstream `ValidateResourceQuota*`, `ValidateLimitRange`).

use std::collections::BTreeMap;

use serde_json::Value;

use super::meta::{self, NameRule, Scope};
use super::names;
use super::pod::resources::{container_resource_name, is_extended_resource, is_hugepages, overcommit_allowed};
use super::util::*;
use crate::quantity::{self, Quantity};
use crate::quota::SCOPES;
use crate::status::Cause;

const STANDARD_QUOTA: &[&str] = &[
    "cpu",
    "memory",
    "ephemeral-storage",
    "requests.cpu",
    "requests.memory",
    "requests.storage",
    "requests.ephemeral-storage",
    "limits.cpu",
    "limits.memory",
    "limits.ephemeral-storage",
    "pods",
    "resourcequotas",
    "services",
    "replicationcontrollers",
    "secrets",
    "persistentvolumeclaims",
    "configmaps",
    "services.nodeports",
    "services.loadbalancers",
];

const INTEGER_RESOURCES: &[&str] = &[
    "pods",
    "resourcequotas",
    "services",
    "replicationcontrollers",
    "secrets",
    "configmaps",
    "persistentvolumeclaims",
    "services.nodeports",
    "services.loadbalancers",
];

fn is_standard_quota_resource(name: &str) -> bool {
    STANDARD_QUOTA.contains(&name) || is_hugepages(name) || name.starts_with("requests.hugepages-")
}

fn is_standard_resource(name: &str) -> bool {
    super::pod::resources::is_standard_resource_name(name) || is_standard_quota_resource(name)
}

/// Upstream's `validateResourceName`: qualified, and standard unless it names a domain.
fn resource_name(errs: &mut Vec<Cause>, name: &str, p: &str) -> bool {
    let msgs = names::qualified_name_errors(name);
    if !msgs.is_empty() {
        invalid_each(errs, p, name, msgs);
        return false;
    }
    if !name.contains('/') && !is_standard_resource(name) {
        errs.push(Cause::invalid(p, &str_value(name), "must be a standard resource type or fully qualified"));
        return false;
    }
    true
}

fn quota_resource_name(errs: &mut Vec<Cause>, name: &str, p: &str) {
    if resource_name(errs, name, p) && !name.contains('/') && !is_standard_quota_resource(name) {
        errs.push(Cause::invalid(p, &str_value(name), "must be a standard resource for quota"));
    }
}

/// Upstream's `ValidateResourceQuantityValue`: not negative, whole for counted resources.
fn quantity_value(errs: &mut Vec<Cause>, name: &str, raw: &Value, p: &str) -> Option<Quantity> {
    let q = match quantity::parse_quantity_value(raw) {
        Ok(q) => q,
        Err(msg) => {
            errs.push(Cause::invalid(p, raw, msg));
            return None;
        }
    };
    let shown = str_value(&q.canonical());
    if q.is_negative() {
        errs.push(Cause::invalid(p, &shown, IS_NEGATIVE));
    }
    if (INTEGER_RESOURCES.contains(&name) || is_extended_resource(name)) && q.milli_value() % 1000 != 0 {
        errs.push(Cause::invalid(p, &shown, "must be an integer"));
    }
    Some(q)
}

fn quota_list(errs: &mut Vec<Cause>, list: &Value, p: &str) {
    let Some(m) = list.as_object() else {
        if !list.is_null() {
            errs.push(Cause::invalid(p, list, "must be a map of resource quantities"));
        }
        return;
    };
    for (name, raw) in m {
        let kp = key(p, name);
        quota_resource_name(errs, name, &kp);
        quantity_value(errs, name, raw, &kp);
    }
}

fn scope_valid_for(scope: &str, resource: &str) -> bool {
    const POD_COMPUTE: &[&str] = &["cpu", "limits.cpu", "limits.memory", "memory", "requests.cpu", "requests.memory"];
    match scope {
        "BestEffort" => resource == "pods",
        "Terminating" | "NotTerminating" | "NotBestEffort" | "PriorityClass" | "CrossNamespacePodAffinity" => {
            resource == "pods" || POD_COMPUTE.contains(&resource)
        }
        _ => true,
    }
}

fn conflicting(scopes: &[&str]) -> usize {
    let has = |s: &str| scopes.contains(&s);
    usize::from(has("BestEffort") && has("NotBestEffort")) + usize::from(has("Terminating") && has("NotTerminating"))
}

fn hard_names(spec: &Value) -> Vec<String> {
    sub(spec, "hard").as_object().map(|m| m.keys().cloned().collect()).unwrap_or_default()
}

fn scopes(errs: &mut Vec<Cause>, spec: &Value) {
    let list = get_arr(spec, "scopes");
    if list.is_empty() {
        return;
    }
    let p = "spec.scopes";
    let value = sub(spec, "scopes");
    let hard = hard_names(spec);
    let mut seen = Vec::new();
    for s in list {
        let s = s.as_str().unwrap_or("");
        if !SCOPES.contains(&s) {
            errs.push(Cause::invalid(p, value, "unsupported scope"));
        }
        for k in &hard {
            if is_standard_quota_resource(k) && !scope_valid_for(s, k) {
                errs.push(Cause::invalid(p, value, "unsupported scope applied to resource"));
            }
        }
        seen.push(s);
    }
    for _ in 0..conflicting(&seen) {
        errs.push(Cause::invalid(p, value, "conflicting scopes"));
    }
}

fn scope_selector(errs: &mut Vec<Cause>, spec: &Value) {
    let Some(sel) = get(spec, "scopeSelector") else { return };
    let p = "spec.scopeSelector.matchExpressions";
    let hard = hard_names(spec);
    let mut seen = Vec::new();
    for req in get_arr(sel, "matchExpressions") {
        let scope = get_str(req, "scopeName");
        let op = get_str(req, "operator");
        let values = get_arr(req, "values");
        if !SCOPES.contains(&scope) {
            errs.push(Cause::invalid(child(p, "scopeName"), &str_value(scope), "unsupported scope"));
        }
        for k in &hard {
            if is_standard_quota_resource(k) && !scope_valid_for(scope, k) {
                errs.push(Cause::invalid(p, sel, "unsupported scope applied to resource"));
            }
        }
        if matches!(
            scope,
            "BestEffort" | "NotBestEffort" | "Terminating" | "NotTerminating" | "CrossNamespacePodAffinity"
        ) && op != "Exists"
        {
            errs.push(Cause::invalid(
                child(p, "operator"),
                &str_value(op),
                "must be 'Exist' when scope is any of ResourceQuotaScopeTerminating, ResourceQuotaScopeNotTerminating, ResourceQuotaScopeBestEffort, ResourceQuotaScopeNotBestEffort or ResourceQuotaScopeCrossNamespacePodAffinity",
            ));
        }
        match op {
            "In" | "NotIn" if values.is_empty() => errs.push(required_detail(
                &child(p, "values"),
                "must be at least one value when `operator` is 'In' or 'NotIn' for scope selector",
            )),
            "Exists" | "DoesNotExist" if !values.is_empty() => errs.push(Cause::invalid(
                child(p, "values"),
                sub(req, "values"),
                "must be no value when `operator` is 'Exist' or 'DoesNotExist' for scope selector",
            )),
            "In" | "NotIn" | "Exists" | "DoesNotExist" => {}
            _ => errs.push(Cause::invalid(child(p, "operator"), &str_value(op), "not a valid selector operator")),
        }
        seen.push(scope);
    }
    for _ in 0..conflicting(&seen) {
        errs.push(Cause::invalid(p, sub(spec, "scopes"), "conflicting scopes"));
    }
}

fn quota_spec(errs: &mut Vec<Cause>, spec: &Value) {
    quota_list(errs, sub(spec, "hard"), "spec.hard");
    scopes(errs, spec);
    scope_selector(errs, spec);
}

fn quota_status(errs: &mut Vec<Cause>, status: &Value) {
    quota_list(errs, sub(status, "hard"), "status.hard");
    quota_list(errs, sub(status, "used"), "status.used");
}

pub(crate) fn validate_resource_quota(q: &Value) -> Vec<Cause> {
    let mut errs = meta::validate_object_meta(q, Scope::Namespaced, NameRule::Subdomain);
    quota_spec(&mut errs, sub(q, "spec"));
    quota_status(&mut errs, sub(q, "status"));
    errs
}

fn scope_set(spec: &Value) -> Vec<&str> {
    let mut s: Vec<&str> = get_arr(spec, "scopes").iter().filter_map(Value::as_str).collect();
    s.sort_unstable();
    s.dedup();
    s
}

pub(crate) fn validate_resource_quota_update(new: &Value, old: &Value) -> Vec<Cause> {
    let mut errs = meta::validate_object_meta(new, Scope::Namespaced, NameRule::Subdomain);
    let spec = sub(new, "spec");
    quota_spec(&mut errs, spec);
    if scope_set(spec) != scope_set(sub(old, "spec")) {
        errs.push(Cause::invalid("spec.scopes", sub(spec, "scopes"), IMMUTABLE));
    }
    errs
}

pub(crate) fn validate_resource_quota_status(new: &Value) -> Vec<Cause> {
    let mut errs = Vec::new();
    quota_status(&mut errs, sub(new, "status"));
    errs
}

fn limit_type(errs: &mut Vec<Cause>, t: &str, p: &str) {
    let msgs = names::qualified_name_errors(t);
    if !msgs.is_empty() {
        invalid_each(errs, p, t, msgs);
    } else if !t.contains('/') && !matches!(t, "Pod" | "Container" | "PersistentVolumeClaim") {
        errs.push(Cause::invalid(p, &str_value(t), "must be a standard limit type or fully qualified"));
    }
}

/// One of an item's resource lists: names checked for the item's type, quantities parsed.
fn limit_list(errs: &mut Vec<Cause>, t: &str, list: &Value, p: &str) -> BTreeMap<String, Quantity> {
    let mut out = BTreeMap::new();
    for (name, raw) in list.as_object().into_iter().flatten() {
        let kp = key(p, name);
        if matches!(t, "Pod" | "Container") {
            container_resource_name(errs, name, &kp);
        } else {
            resource_name(errs, name, &kp);
        }
        match quantity::parse_quantity_value(raw) {
            Ok(q) => {
                out.insert(name.clone(), q);
            }
            Err(msg) => errs.push(Cause::invalid(&kp, raw, msg)),
        }
    }
    out
}

pub(crate) fn validate_limit_range(lr: &Value) -> Vec<Cause> {
    let mut errs = meta::validate_object_meta(lr, Scope::Namespaced, NameRule::Subdomain);
    let mut types: Vec<&str> = Vec::new();
    for (i, item) in get_arr(sub(lr, "spec"), "limits").iter().enumerate() {
        let p = index("spec.limits", i);
        let t = get_str(item, "type");
        limit_type(&mut errs, t, &child(&p, "type"));
        if types.contains(&t) {
            errs.push(Cause::duplicate(child(&p, "type"), &str_value(t)));
        }
        types.push(t);
        let max = limit_list(&mut errs, t, sub(item, "max"), &child(&p, "max"));
        let min = limit_list(&mut errs, t, sub(item, "min"), &child(&p, "min"));
        let (mut default, mut default_request) = (BTreeMap::new(), BTreeMap::new());
        if t == "Pod" {
            for f in ["default", "defaultRequest"] {
                if sub(item, f).as_object().is_some_and(|m| !m.is_empty()) {
                    errs.push(Cause::forbidden(child(&p, f), "may not be specified when `type` is 'Pod'"));
                }
            }
        } else {
            default = limit_list(&mut errs, t, sub(item, "default"), &child(&p, "default"));
            default_request = limit_list(&mut errs, t, sub(item, "defaultRequest"), &child(&p, "defaultRequest"));
        }
        if t == "PersistentVolumeClaim" && !min.contains_key("storage") && !max.contains_key("storage") {
            errs.push(required_detail(
                &child(&p, "limits"),
                "either minimum or maximum storage value is required, but neither was provided",
            ));
        }
        let ratio = limit_list(&mut errs, t, sub(item, "maxLimitRequestRatio"), &child(&p, "maxLimitRequestRatio"));
        let mut keys: Vec<&String> = max.keys().chain(min.keys()).chain(default.keys()).collect();
        keys.extend(default_request.keys().chain(ratio.keys()));
        keys.sort();
        keys.dedup();
        for k in keys {
            let shown = |q: &Quantity| str_value(&q.canonical());
            let at = |f: &str| key(&child(&p, f), k);
            let (mn, mx, d, dr, r) = (min.get(k), max.get(k), default.get(k), default_request.get(k), ratio.get(k));
            if let (Some(mn), Some(mx)) = (mn, mx) {
                if mn > mx {
                    errs.push(Cause::invalid(
                        at("min"),
                        &shown(mn),
                        format!("min value {mn} is greater than max value {mx}"),
                    ));
                }
            }
            if let (Some(dr), Some(mn)) = (dr, mn) {
                if mn > dr {
                    let msg = format!("min value {mn} is greater than default request value {dr}");
                    errs.push(Cause::invalid(at("defaultRequest"), &shown(dr), msg));
                }
            }
            if let (Some(dr), Some(mx)) = (dr, mx) {
                if dr > mx {
                    let msg = format!("default request value {dr} is greater than max value {mx}");
                    errs.push(Cause::invalid(at("defaultRequest"), &shown(dr), msg));
                }
            }
            if let (Some(dr), Some(d)) = (dr, d) {
                if dr > d {
                    let msg = format!("default request value {dr} is greater than default limit value {d}");
                    errs.push(Cause::invalid(at("defaultRequest"), &shown(dr), msg));
                }
            }
            if let (Some(d), Some(mn)) = (d, mn) {
                if mn > d {
                    let msg = format!("min value {mn} is greater than default value {d}");
                    errs.push(Cause::invalid(at("default"), &shown(mn), msg));
                }
            }
            if let (Some(d), Some(mx)) = (d, mx) {
                if d > mx {
                    let msg = format!("default value {d} is greater than max value {mx}");
                    errs.push(Cause::invalid(at("default"), &shown(mx), msg));
                }
            }
            if let Some(r) = r {
                if r.milli_value() < 1000 {
                    errs.push(Cause::invalid(
                        at("maxLimitRequestRatio"),
                        &shown(r),
                        format!("ratio {r} is less than 1"),
                    ));
                }
                if let (Some(mn), Some(mx)) = (mn, mx) {
                    let limit = mx.milli_value() as f64 / mn.milli_value() as f64;
                    if r.as_f64() > limit {
                        let msg = format!("ratio {r} is greater than max/min = {limit:.6}");
                        errs.push(Cause::invalid(at("maxLimitRequestRatio"), &shown(r), msg));
                    }
                }
            }
            if let (Some(d), Some(dr)) = (d, dr) {
                if !overcommit_allowed(k) && d != dr {
                    let msg = format!("default value {d} must equal to defaultRequest value {dr} in {k}");
                    errs.push(Cause::invalid(at("defaultRequest"), &shown(dr), msg));
                }
            }
        }
    }
    errs
}

#[cfg(test)]
mod tests {
    use crate::validation::{apply_defaults, validate_create, validate_update};
    use serde_json::{json, Value};

    fn causes(kind: &str, mut obj: Value) -> Vec<(String, String)> {
        apply_defaults("", kind, &mut obj);
        validate_create("", kind, &obj).into_iter().map(|c| (c.field, c.message)).collect()
    }

    #[test]
    fn quota_quantities_names_and_scopes() {
        let meta = json!({"name": "q", "namespace": "default"});
        let bad = json!({"metadata": meta, "spec": {"hard": {"pods": "-1", "requests.cpu": "1", "services": "1500m", "bogus": "1"}}});
        let got = causes("ResourceQuota", bad);
        assert!(
            got.contains(&(
                "spec.hard[pods]".into(),
                "Invalid value: \"-1\": must be greater than or equal to 0".into()
            )),
            "{got:?}"
        );
        assert!(
            got.contains(&("spec.hard[services]".into(), "Invalid value: \"1500m\": must be an integer".into())),
            "{got:?}"
        );
        assert!(
            got.contains(&(
                "spec.hard[bogus]".into(),
                "Invalid value: \"bogus\": must be a standard resource type or fully qualified".into()
            )),
            "{got:?}"
        );
        assert_eq!(got.len(), 3, "{got:?}");
        let scoped = json!({"metadata": meta, "spec": {"hard": {"requests.cpu": "1"}, "scopes": ["BestEffort", "NotBestEffort"]}});
        let got = causes("ResourceQuota", scoped);
        assert!(
            got.iter().any(|(f, m)| f == "spec.scopes" && m.ends_with("unsupported scope applied to resource")),
            "{got:?}"
        );
        assert!(got.iter().any(|(f, m)| f == "spec.scopes" && m.ends_with("conflicting scopes")), "{got:?}");
        let ok = json!({"metadata": meta, "spec": {"hard": {"pods": "2", "count/deployments.apps": "1", "requests.memory": "1Gi"},
            "scopeSelector": {"matchExpressions": [{"scopeName": "PriorityClass", "operator": "In", "values": ["high"]}]}}});
        assert!(causes("ResourceQuota", ok.clone()).is_empty());
        let mut changed = ok.clone();
        changed["spec"]["scopes"] = json!(["Terminating"]);
        let upd = validate_update("", "ResourceQuota", &changed, &ok);
        assert_eq!(upd[0].field, "spec.scopes");
    }

    #[test]
    fn limit_range_consistency() {
        let lr = json!({"metadata": {"name": "l", "namespace": "default"}, "spec": {"limits": [
            {"type": "Container", "max": {"cpu": "500m"}, "default": {"cpu": "1"}},
            {"type": "Pod", "default": {"cpu": "1"}},
            {"type": "Container"}
        ]}});
        let got = causes("LimitRange", lr);
        assert!(
            got.contains(&(
                "spec.limits[0].default[cpu]".into(),
                "Invalid value: \"500m\": default value 1 is greater than max value 500m".into()
            )),
            "{got:?}"
        );
        assert!(
            got.contains(&(
                "spec.limits[0].defaultRequest[cpu]".into(),
                "Invalid value: \"1\": default request value 1 is greater than max value 500m".into()
            )),
            "{got:?}"
        );
        assert!(
            got.contains(&(
                "spec.limits[1].default".into(),
                "Forbidden: may not be specified when `type` is 'Pod'".into()
            )),
            "{got:?}"
        );
        assert!(got.contains(&("spec.limits[2].type".into(), "Duplicate value: \"Container\"".into())), "{got:?}");
        let mut ok = json!({"metadata": {"name": "l"}, "spec": {"limits": [{"type": "Container", "max": {"cpu": "1"}, "min": {"cpu": "100m"}}]}});
        apply_defaults("", "LimitRange", &mut ok);
        assert_eq!(ok["spec"]["limits"][0]["default"], json!({"cpu": "1"}));
        assert_eq!(ok["spec"]["limits"][0]["defaultRequest"], json!({"cpu": "1"}));
    }
}
