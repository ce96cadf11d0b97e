//! The smaller kinds: Namespace, ServiceAccount, Node, Event (core and events.k8s.io) and
//! Lease.

use std::collections::HashSet;

use serde_json::Value;

use super::meta::{self, NameRule, Scope};
use super::names;
use super::pod::taint_effect;
use super::quantity;
use super::util::*;
use crate::status::Cause;

const REASON_LIMIT: usize = 128;
const ACTION_LIMIT: usize = 128;
const REPORTING_INSTANCE_LIMIT: usize = 128;
const NOTE_LIMIT: usize = 1024;

pub(crate) fn validate_namespace(ns: &Value) -> Vec<Cause> {
    let mut errs = meta::validate_object_meta(ns, Scope::Cluster, NameRule::Dns1123Label);
    let p = "spec.finalizers";
    for f in get_arr(sub(ns, "spec"), "finalizers") {
        let name = f.as_str().unwrap_or("");
        invalid_each(&mut errs, p, name, names::qualified_name_errors(name));
        errs.extend(meta::kube_finalizer_name(name, p));
    }
    errs
}

pub(crate) fn validate_namespace_status(new: &Value) -> Vec<Cause> {
    let phase = get_str(sub(new, "status"), "phase");
    let deleting = !get_str(sub(new, "metadata"), "deletionTimestamp").is_empty();
    let p = "status.phase";
    if !deleting && phase != "Active" {
        vec![Cause::invalid(p, &str_value(phase), "may only be 'Active' if `deletionTimestamp` is empty")]
    } else if deleting && phase != "Terminating" {
        vec![Cause::invalid(p, &str_value(phase), "may only be 'Terminating' if `deletionTimestamp` is not empty")]
    } else {
        Vec::new()
    }
}

pub(crate) fn validate_service_account(sa: &Value) -> Vec<Cause> {
    meta::validate_object_meta(sa, Scope::Namespaced, NameRule::Subdomain)
}

fn cidrs(errs: &mut Vec<Cause>, spec: &Value) {
    if let Some(single) = get(spec, "podCIDR") {
        let s = single.as_str().unwrap_or("");
        if !s.is_empty() && names::parse_cidr(s).is_none() {
            errs.push(Cause::invalid("spec.podCIDR", single, names::INVALID_CIDR));
        }
    }
    let list = get_arr(spec, "podCIDRs");
    let p = "spec.podCIDRs";
    let mut families = Vec::new();
    for (i, c) in list.iter().enumerate() {
        match c.as_str().and_then(names::parse_cidr) {
            Some(v6) => families.push(v6),
            None => errs.push(Cause::invalid(index(p, i), c, names::INVALID_CIDR)),
        }
    }
    if list.len() > 1 {
        // Dual stack allows one range per family.
        let dual = families.len() == 2 && families[0] != families[1];
        if !dual || list.len() > 2 {
            errs.push(Cause::invalid(p, sub(spec, "podCIDRs"), "may specify no more than one CIDR for each IP family"));
        }
        let mut seen = HashSet::new();
        for (i, c) in list.iter().enumerate() {
            if !seen.insert(c.as_str().unwrap_or("")) {
                errs.push(Cause::duplicate(index(p, i), c));
            }
        }
    }
}

fn taints(errs: &mut Vec<Cause>, spec: &Value) {
    let mut seen = HashSet::new();
    for (i, t) in get_arr(spec, "taints").iter().enumerate() {
        let tp = index("spec.taints", i);
        let k = get_str(t, "key");
        errs.extend(meta::validate_label_name(k, &child(&tp, "key")));
        let v = get_str(t, "value");
        let msgs = names::label_value_errors(v);
        if !msgs.is_empty() {
            errs.push(Cause::invalid(child(&tp, "value"), &str_value(v), msgs.join(";")));
        }
        let effect = get_str(t, "effect");
        errs.extend(taint_effect(effect, &child(&tp, "effect")));
        if !seen.insert((k, effect)) {
            errs.push(duplicate_detail(&tp, t, "taints must be unique by key and effect pair"));
        }
    }
}

fn node_resources(errs: &mut Vec<Cause>, status: &Value) {
    for field in ["capacity", "allocatable"] {
        let Some(list) = get_obj(status, field) else {
            continue;
        };
        for (name, raw) in list {
            let p = format!("status.{field}.{name}");
            match quantity::parse_quantity_value(raw) {
                Err(e) => errs.push(Cause::invalid(&p, raw, e)),
                Ok(q) if q.is_negative() => errs.push(Cause::invalid(&p, &str_value(&q.canonical()), IS_NEGATIVE)),
                Ok(_) => {}
            }
        }
    }
}

pub(crate) fn validate_node(node: &Value) -> Vec<Cause> {
    let mut errs = meta::validate_object_meta(node, Scope::Cluster, NameRule::Subdomain);
    let spec = sub(node, "spec");
    taints(&mut errs, spec);
    node_resources(&mut errs, sub(node, "status"));
    cidrs(&mut errs, spec);
    errs
}

/// Node updates: pod CIDRs and provider ID are set once; addresses must not repeat.
pub(crate) fn validate_node_update(new: &Value, old: &Value) -> Vec<Cause> {
    let mut errs = validate_node(new);
    let ns = sub(new, "spec");
    let os = sub(old, "spec");
    let old_cidrs = get_arr(os, "podCIDRs");
    if !old_cidrs.is_empty() && get_arr(ns, "podCIDRs") != old_cidrs {
        errs.push(Cause::forbidden("spec.podCIDRs", "node updates may not change podCIDR except from \"\" to valid"));
    }
    let old_provider = get_str(os, "providerID");
    if !old_provider.is_empty() && get_str(ns, "providerID") != old_provider {
        errs.push(Cause::forbidden(
            "spec.providerID",
            "node updates may not change providerID except from \"\" to valid",
        ));
    }
    errs.extend(node_status(new));
    errs
}

pub(crate) fn node_status(new: &Value) -> Vec<Cause> {
    let mut errs = Vec::new();
    let status = sub(new, "status");
    node_resources(&mut errs, status);
    let mut seen = HashSet::new();
    for (i, addr) in get_arr(status, "addresses").iter().enumerate() {
        if !seen.insert((get_str(addr, "type"), get_str(addr, "address"))) {
            errs.push(Cause::duplicate(index("status.addresses", i), addr));
        }
    }
    errs
}

fn is_unset_time(v: &Value, k: &str) -> bool {
    get(v, k).is_none_or(|t| t.as_str() == Some(""))
}

/// Events arrive with either API's field names; upstream validates the core shape and
/// reports core paths for both.
struct EventView<'a> {
    ev: &'a Value,
    v1: bool,
}

impl<'a> EventView<'a> {
    fn field(&self, core: &str, events_v1: &str) -> Option<&'a Value> {
        get(self.ev, if self.v1 { events_v1 } else { core })
    }
    fn str(&self, core: &str, events_v1: &str) -> &'a str {
        self.field(core, events_v1).and_then(Value::as_str).unwrap_or("")
    }
    fn involved_namespace(&self) -> &'a str {
        get_str(sub(self.ev, if self.v1 { "regarding" } else { "involvedObject" }), "namespace")
    }
}

/// Upstream's `legacyValidateEvent`, which every Event must pass.
fn legacy_event(ev: &EventView, errs: &mut Vec<Cause>) {
    let ns = get_str(sub(ev.ev, "metadata"), "namespace");
    let involved = ev.involved_namespace();
    let mismatch =
        || Cause::invalid("involvedObject.namespace", &str_value(involved), "does not match event.namespace");
    if is_unset_time(ev.ev, "eventTime") {
        // Old-style events: the namespaces must agree, with "default" allowed for cluster
        // objects for compatibility with old clients.
        let ok = if involved.is_empty() { ns.is_empty() || ns == "default" } else { ns == involved };
        if !ok {
            errs.push(mismatch());
        }
    } else {
        if involved.is_empty() && ns != "default" && ns != "kube-system" {
            errs.push(mismatch());
        }
        let rc = ev.str("reportingComponent", "reportingController");
        if rc.is_empty() {
            errs.push(Cause::required("reportingController"));
        }
        invalid_each(errs, "reportingController", rc, names::qualified_name_errors(rc));
        for (core, v1, limit, path) in [
            ("reportingInstance", "reportingInstance", REPORTING_INSTANCE_LIMIT, "reportingInstance"),
            ("action", "action", ACTION_LIMIT, "action"),
            ("reason", "reason", REASON_LIMIT, "reason"),
        ] {
            let v = ev.str(core, v1);
            if v.is_empty() {
                errs.push(Cause::required(path));
            }
            if v.len() > limit {
                errs.push(Cause::invalid(path, &str_value(""), format!("can have at most {limit} characters")));
            }
        }
        if ev.str("message", "note").len() > NOTE_LIMIT {
            errs.push(Cause::invalid("message", &str_value(""), format!("can have at most {NOTE_LIMIT} characters")));
        }
    }
    invalid_each(errs, "namespace", ns, names::dns1123_subdomain_errors(ns));
}

fn series(ev: &EventView, errs: &mut Vec<Cause>) {
    if let Some(s) = get(ev.ev, "series") {
        if get_int(s, "count").unwrap_or(0) < 2 {
            errs.push(Cause::invalid("series.count", &str_value(""), "should be at least 2"));
        }
        if is_unset_time(s, "lastObservedTime") {
            errs.push(Cause::required("series.lastObservedTime"));
        }
    }
}

pub(crate) fn validate_event(ev: &Value, events_v1: bool) -> Vec<Cause> {
    let view = EventView { ev, v1: events_v1 };
    // Core events keep their lax legacy names; events.k8s.io names are DNS subdomains.
    let rule = if events_v1 { NameRule::Subdomain } else { NameRule::PathSegment };
    let mut errs = meta::validate_object_meta(ev, Scope::Namespaced, rule);
    legacy_event(&view, &mut errs);
    if !events_v1 {
        return errs;
    }
    series(&view, &mut errs);
    if is_unset_time(ev, "eventTime") {
        errs.push(Cause::required("eventTime"));
    }
    let t = get_str(ev, "type");
    if t != "Normal" && t != "Warning" {
        errs.push(Cause::invalid("type", &str_value(""), format!("has invalid value: {t}")));
    }
    for (field, path) in [("deprecatedFirstTimestamp", "firstTimestamp"), ("deprecatedLastTimestamp", "lastTimestamp")]
    {
        if !is_unset_time(ev, field) {
            errs.push(Cause::invalid(path, &str_value(""), "needs to be unset"));
        }
    }
    if get_int(ev, "deprecatedCount").unwrap_or(0) != 0 {
        errs.push(Cause::invalid("count", &str_value(""), "needs to be unset"));
    }
    let src = sub(ev, "deprecatedSource");
    if !get_str(src, "component").is_empty() || !get_str(src, "host").is_empty() {
        errs.push(Cause::invalid("source", &str_value(""), "needs to be unset"));
    }
    errs
}

/// events.k8s.io events are records: once written only the series may change.
pub(crate) fn validate_event_update(new: &Value, old: &Value) -> Vec<Cause> {
    let view = EventView { ev: new, v1: true };
    let mut errs = meta::validate_object_meta(new, Scope::Namespaced, NameRule::Subdomain);
    legacy_event(&view, &mut errs);
    if !semantic_eq(get(new, "series"), get(old, "series")) {
        series(&view, &mut errs);
    }
    for (field, path) in [
        ("regarding", "involvedObject"),
        ("reason", "reason"),
        ("note", "message"),
        ("deprecatedSource", "source"),
        ("deprecatedFirstTimestamp", "firstTimestamp"),
        ("deprecatedLastTimestamp", "lastTimestamp"),
        ("deprecatedCount", "count"),
        ("type", "type"),
        ("eventTime", "eventTime"),
        ("action", "action"),
        ("related", "related"),
        ("reportingController", "reportingController"),
        ("reportingInstance", "reportingInstance"),
    ] {
        if !semantic_eq(get(new, field), get(old, field)) {
            errs.push(Cause::invalid(path, sub(new, field), IMMUTABLE));
        }
    }
    errs
}

pub(crate) fn validate_lease(lease: &Value) -> Vec<Cause> {
    let mut errs = meta::validate_object_meta(lease, Scope::Namespaced, NameRule::Subdomain);
    let spec = sub(lease, "spec");
    let dp = "spec.leaseDurationSeconds";
    if let Some(d) = int_field(&mut errs, spec, "leaseDurationSeconds", dp) {
        if d <= 0 {
            errs.push(Cause::invalid(dp, &Value::from(d), "must be greater than 0"));
        }
    }
    nonnegative_field(&mut errs, spec, "leaseTransitions", "spec.leaseTransitions");
    if let Some(strategy) = get(spec, "strategy") {
        if strategy.as_str() != Some("OldestEmulationVersion") {
            errs.push(Cause::not_supported("spec.strategy", strategy, &["OldestEmulationVersion"]));
        }
    }
    if get(spec, "preferredHolder").is_some() && get(spec, "strategy").is_none() {
        errs.push(Cause::forbidden("spec.preferredHolder", "may only be specified if `strategy` is defined"));
    }
    errs
}
