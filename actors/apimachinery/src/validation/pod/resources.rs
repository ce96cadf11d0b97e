//! Resource names and `limits`/`requests` lists.

use serde_json::Value;

use crate::quantity::{self, Quantity};
use crate::status::Cause;
use crate::validation::names;
use crate::validation::util::*;

pub(crate) fn is_hugepages(name: &str) -> bool {
    name.starts_with("hugepages-")
}

/// Names without a domain, or in kubernetes.io, belong to Kubernetes itself.
pub(crate) fn is_native_resource(name: &str) -> bool {
    !name.contains('/') || name.contains("kubernetes.io/")
}

pub(crate) fn is_extended_resource(name: &str) -> bool {
    !is_native_resource(name)
        && !name.starts_with("requests.")
        && names::qualified_name_errors(&format!("requests.{name}")).is_empty()
}

/// Extended resources and huge pages are allocated whole, so requests must equal limits.
pub(crate) fn overcommit_allowed(name: &str) -> bool {
    is_native_resource(name) && !is_hugepages(name)
}

pub(crate) fn is_standard_resource_name(name: &str) -> bool {
    const STANDARD: [&str; 21] = [
        "cpu",
        "memory",
        "ephemeral-storage",
        "storage",
        "pods",
        "services",
        "replicationcontrollers",
        "resourcequotas",
        "secrets",
        "configmaps",
        "persistentvolumeclaims",
        "services.nodeports",
        "services.loadbalancers",
        "requests.cpu",
        "requests.memory",
        "requests.storage",
        "requests.ephemeral-storage",
        "limits.cpu",
        "limits.memory",
        "limits.ephemeral-storage",
        "count/pods",
    ];
    STANDARD.contains(&name)
        || is_hugepages(name)
        || name.starts_with("requests.hugepages-")
        || name.starts_with("limits.hugepages-")
}

pub(crate) fn container_resource_name(errs: &mut Vec<Cause>, name: &str, p: &str) {
    let msgs = names::qualified_name_errors(name);
    if !msgs.is_empty() {
        invalid_each(errs, p, name, msgs);
        return;
    }
    let v = str_value(name);
    if !name.contains('/') {
        if !is_standard_resource_name(name) {
            errs.push(Cause::invalid(p, &v, "must be a standard resource type or fully qualified"));
        }
        if !matches!(name, "cpu" | "memory" | "ephemeral-storage") && !is_hugepages(name) {
            errs.push(Cause::invalid(p, &v, "must be a standard resource for containers"));
        }
    } else if !is_native_resource(name) && !is_extended_resource(name) {
        errs.push(Cause::invalid(p, &v, "doesn't follow extended resource name standard"));
    }
}

/// Checks a `limits`/`requests` style map; returns the quantities that parsed.
pub(super) fn validate_resource_list<'a>(
    list: Option<&'a Value>,
    p: &str,
    errs: &mut Vec<Cause>,
) -> Vec<(&'a str, Quantity)> {
    let mut out = Vec::new();
    let m = match list {
        None => return out,
        Some(Value::Object(m)) => m,
        Some(other) => {
            errs.push(Cause::invalid(p, other, "must be a map of resource quantities"));
            return out;
        }
    };
    for (name, raw) in m {
        let kp = key(p, name);
        container_resource_name(errs, name, &kp);
        match quantity::parse_quantity_value(raw) {
            Err(msg) => errs.push(Cause::invalid(&kp, raw, msg)),
            Ok(q) => {
                let shown = str_value(&q.canonical());
                if q.is_negative() {
                    errs.push(Cause::invalid(&kp, &shown, IS_NEGATIVE));
                }
                if is_extended_resource(name) && q.milli_value() % 1000 != 0 {
                    errs.push(Cause::invalid(&kp, &shown, "must be an integer"));
                }
                out.push((name.as_str(), q));
            }
        }
    }
    out
}

pub(super) fn validate_resources(res: &Value, p: &str, errs: &mut Vec<Cause>) {
    let lim_path = child(p, "limits");
    let req_path = child(p, "requests");
    let limits = validate_resource_list(get(res, "limits"), &lim_path, errs);
    let requests = validate_resource_list(get(res, "requests"), &req_path, errs);
    let compute = |list: &[(&str, Quantity)]| list.iter().any(|(n, _)| matches!(*n, "cpu" | "memory"));
    let huge = |list: &[(&str, Quantity)]| list.iter().any(|(n, _)| is_hugepages(n));
    for (name, q) in &requests {
        let shown = str_value(&q.canonical());
        match limits.iter().find(|(n, _)| n == name) {
            Some((_, limit)) if !overcommit_allowed(name) && q != limit => {
                errs.push(Cause::invalid(&req_path, &shown, format!("must be equal to {name} limit of {limit}")));
            }
            Some((_, limit)) if q > limit => errs.push(Cause::invalid(
                &req_path,
                &shown,
                format!("must be less than or equal to {name} limit of {limit}"),
            )),
            Some(_) => {}
            None if !overcommit_allowed(name) => {
                errs.push(required_detail(&lim_path, "Limit must be set for non overcommitable resources"))
            }
            None => {}
        }
    }
    if !compute(&limits) && !compute(&requests) && (huge(&limits) || huge(&requests)) {
        errs.push(Cause::forbidden(p, "HugePages require cpu or memory"));
    }
}
