//! Scheduling constraints: tolerations, node and pod affinity, topology spread.

use std::collections::HashSet;

use serde_json::Value;

use super::{dns_subdomain, one_of};
use crate::status::Cause;
use crate::validation::meta;
use crate::validation::names;
use crate::validation::util::*;

/// Tolerations: keys are label names, operator and value agree, effects are known.
pub(crate) fn validate_tolerations(tolerations: &[Value], p: &str) -> Vec<Cause> {
    let mut errs = Vec::new();
    for (i, t) in tolerations.iter().enumerate() {
        let tp = index(p, i);
        let key_ = get_str(t, "key");
        let op = get_str(t, "operator");
        let effect = get_str(t, "effect");
        let value = get_str(t, "value");
        if !key_.is_empty() {
            errs.extend(meta::validate_label_name(key_, &child(&tp, "key")));
        }
        if key_.is_empty() && op != "Exists" {
            errs.push(Cause::invalid(
                child(&tp, "operator"),
                &str_value(op),
                "operator must be Exists when `key` is empty, which means \"match all values and all keys\"",
            ));
        }
        if get(t, "tolerationSeconds").is_some() && effect != "NoExecute" {
            errs.push(Cause::invalid(
                child(&tp, "effect"),
                &str_value(effect),
                "effect must be 'NoExecute' when `tolerationSeconds` is set",
            ));
        }
        match op {
            "Equal" | "" => {
                let msgs = names::label_value_errors(value);
                if !msgs.is_empty() {
                    errs.push(Cause::invalid(child(&tp, "operator"), &str_value(value), msgs.join(";")));
                }
            }
            "Exists" => {
                if !value.is_empty() {
                    errs.push(Cause::invalid(
                        child(&tp, "operator"),
                        &str_value(value),
                        "value must be empty when `operator` is 'Exists'",
                    ));
                }
            }
            other => errs.push(Cause::not_supported(child(&tp, "operator"), &str_value(other), &["Equal", "Exists"])),
        }
        if !effect.is_empty() {
            errs.extend(taint_effect(effect, &child(&tp, "effect")));
        }
    }
    errs
}

pub(crate) fn taint_effect(effect: &str, p: &str) -> Vec<Cause> {
    let allowed = ["NoSchedule", "PreferNoSchedule", "NoExecute"];
    if effect.is_empty() {
        vec![Cause::required(p)]
    } else if !allowed.contains(&effect) {
        vec![Cause::not_supported(p, &str_value(effect), &allowed)]
    } else {
        Vec::new()
    }
}

fn node_selector_requirement(errs: &mut Vec<Cause>, req: &Value, p: &str, check_values: bool) {
    let values = get_arr(req, "values");
    let vp = child(p, "values");
    match get_str(req, "operator") {
        "In" | "NotIn" if values.is_empty() => {
            errs.push(required_detail(&vp, "must be specified when `operator` is 'In' or 'NotIn'"))
        }
        "Exists" | "DoesNotExist" if !values.is_empty() => {
            errs.push(Cause::forbidden(&vp, "may not be specified when `operator` is 'Exists' or 'DoesNotExist'"))
        }
        "Gt" | "Lt" if values.len() != 1 => {
            errs.push(required_detail(&vp, "must be specified single value when `operator` is 'Lt' or 'Gt'"))
        }
        "In" | "NotIn" | "Exists" | "DoesNotExist" | "Gt" | "Lt" => {}
        op => errs.push(Cause::invalid(child(p, "operator"), &str_value(op), "not a valid selector operator")),
    }
    errs.extend(meta::validate_label_name(get_str(req, "key"), &child(p, "key")));
    if check_values {
        for (i, v) in values.iter().enumerate() {
            let s = v.as_str().unwrap_or("");
            invalid_each(errs, &index(&vp, i), s, names::label_value_errors(s));
        }
    }
}

fn node_selector_term(errs: &mut Vec<Cause>, term: &Value, p: &str, check_values: bool) {
    for (i, req) in get_arr(term, "matchExpressions").iter().enumerate() {
        node_selector_requirement(errs, req, &index(&child(p, "matchExpressions"), i), check_values);
    }
    for (i, req) in get_arr(term, "matchFields").iter().enumerate() {
        let rp = index(&child(p, "matchFields"), i);
        let values = get_arr(req, "values");
        match get_str(req, "operator") {
            "In" | "NotIn" if values.len() != 1 => errs.push(required_detail(
                &child(&rp, "values"),
                "must be only one value when `operator` is 'In' or 'NotIn' for node field selector",
            )),
            "In" | "NotIn" => {}
            op => errs.push(Cause::invalid(child(&rp, "operator"), &str_value(op), "not a valid selector operator")),
        }
        let k = get_str(req, "key");
        if k != "metadata.name" {
            errs.push(Cause::invalid(child(&rp, "key"), &str_value(k), "not a valid field selector key"));
        } else {
            for (j, v) in values.iter().enumerate() {
                dns_subdomain(errs, v.as_str().unwrap_or(""), &index(&child(&rp, "values"), j));
            }
        }
    }
}

fn pod_affinity_term(errs: &mut Vec<Cause>, term: &Value, p: &str) {
    for field in ["labelSelector", "namespaceSelector"] {
        if let Some(sel) = get(term, field) {
            errs.extend(meta::validate_label_selector(sel, &child(p, field)));
        }
    }
    for ns in get_arr(term, "namespaces") {
        let s = ns.as_str().unwrap_or("");
        invalid_each(errs, &child(p, "namespace"), s, names::dns1123_label_errors(s));
    }
    let tk = get_str(term, "topologyKey");
    let tkp = child(p, "topologyKey");
    if tk.is_empty() {
        errs.push(required_detail(&tkp, "can not be empty"));
    }
    errs.extend(meta::validate_label_name(tk, &tkp));
}

fn weight(errs: &mut Vec<Cause>, v: &Value, p: &str) {
    let w = get_int(v, "weight").unwrap_or(0);
    if !(1..=100).contains(&w) {
        errs.push(Cause::invalid(child(p, "weight"), &Value::from(w), "must be in the range 1-100"));
    }
}

pub(super) fn validate_affinity(aff: &Value, p: &str, errs: &mut Vec<Cause>) {
    const REQUIRED: &str = "requiredDuringSchedulingIgnoredDuringExecution";
    const PREFERRED: &str = "preferredDuringSchedulingIgnoredDuringExecution";
    if let Some(na) = get(aff, "nodeAffinity") {
        let np = child(p, "nodeAffinity");
        if let Some(sel) = get(na, REQUIRED) {
            let tp = format!("{np}.{REQUIRED}.nodeSelectorTerms");
            let terms = get_arr(sel, "nodeSelectorTerms");
            if terms.is_empty() {
                errs.push(required_detail(&tp, "must have at least one node selector term"));
            }
            for (i, term) in terms.iter().enumerate() {
                node_selector_term(errs, term, &index(&tp, i), true);
            }
        }
        for (i, pref) in get_arr(na, PREFERRED).iter().enumerate() {
            let pp = index(&child(&np, PREFERRED), i);
            weight(errs, pref, &pp);
            // Preferred terms tolerate odd label values: they may still match something.
            node_selector_term(errs, sub(pref, "preference"), &child(&pp, "preference"), false);
        }
    }
    for kind in ["podAffinity", "podAntiAffinity"] {
        let Some(pa) = get(aff, kind) else {
            continue;
        };
        let kp = child(p, kind);
        for (i, term) in get_arr(pa, REQUIRED).iter().enumerate() {
            pod_affinity_term(errs, term, &index(&child(&kp, REQUIRED), i));
        }
        for (i, wt) in get_arr(pa, PREFERRED).iter().enumerate() {
            let wp = index(&child(&kp, PREFERRED), i);
            weight(errs, wt, &wp);
            pod_affinity_term(errs, sub(wt, "podAffinityTerm"), &child(&wp, "podAffinityTerm"));
        }
    }
}

pub(super) fn validate_topology_spread(spec: &Value, p: &str, errs: &mut Vec<Cause>) {
    let tp = child(p, "topologySpreadConstraints");
    let mut seen = HashSet::new();
    for (i, c) in get_arr(spec, "topologySpreadConstraints").iter().enumerate() {
        let cp = index(&tp, i);
        let skew = get_int(c, "maxSkew").unwrap_or(0);
        if skew <= 0 {
            errs.push(Cause::invalid(child(&cp, "maxSkew"), &Value::from(skew), "must be greater than zero"));
        }
        let tk = get_str(c, "topologyKey");
        let tkp = child(&cp, "topologyKey");
        if tk.is_empty() {
            errs.push(required_detail(&tkp, "can not be empty"));
        } else {
            errs.extend(meta::validate_label_name(tk, &tkp));
        }
        let wu = get_str(c, "whenUnsatisfiable");
        one_of(errs, wu, &child(&cp, "whenUnsatisfiable"), &["DoNotSchedule", "ScheduleAnyway"]);
        if let Some(md) = get_int(c, "minDomains") {
            if md <= 0 {
                errs.push(Cause::invalid(child(&cp, "minDomains"), &Value::from(md), "must be greater than zero"));
            } else if wu != "DoNotSchedule" {
                errs.push(Cause::invalid(
                    child(&cp, "minDomains"),
                    &Value::from(md),
                    "can only use minDomains if whenUnsatisfiable=DoNotSchedule, not ScheduleAnyway",
                ));
            }
        }
        if let Some(sel) = get(c, "labelSelector") {
            errs.extend(meta::validate_label_selector(sel, &child(&cp, "labelSelector")));
        }
        let pair = format!("{{{tk}, {wu}}}");
        if !seen.insert(pair.clone()) {
            errs.push(Cause::duplicate(&cp, &str_value(&pair)));
        }
    }
}
