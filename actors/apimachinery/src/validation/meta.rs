//! `ObjectMeta` rules shared by every kind (upstream `ValidateObjectMeta` and
//! `ValidateObjectMetaUpdate`), plus label maps and `metav1.LabelSelector`s.

use std::collections::BTreeSet;

use serde_json::{Map, Value};

use super::names;
use super::util::*;
use crate::status::Cause;

const TOTAL_ANNOTATION_SIZE_LIMIT: usize = 256 * 1024;

/// How an object's name is checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum NameRule {
    Subdomain,
    Dns1123Label,
    Dns1035Label,
    /// Only what a URL path segment cannot hold; kinds without a rule of their own.
    PathSegment,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Scope {
    Namespaced,
    Cluster,
    /// A kind this module does not know; its namespace is left alone.
    Unknown,
}

pub(crate) fn name_errors(rule: NameRule, name: &str) -> Vec<String> {
    match rule {
        NameRule::Subdomain => names::dns1123_subdomain_errors(name),
        NameRule::Dns1123Label => names::dns1123_label_errors(name),
        NameRule::Dns1035Label => names::dns1035_label_errors(name),
        NameRule::PathSegment => names::path_segment_errors(name),
    }
}

/// Metadata checks on create: name, namespace scope, generation, labels, annotations,
/// owner references and finalizers.
pub(crate) fn validate_object_meta(obj: &Value, scope: Scope, rule: NameRule) -> Vec<Cause> {
    let mut errs = Vec::new();
    let meta = sub(obj, "metadata");
    let name = get_str(meta, "name");
    if name.is_empty() {
        // The server turns generateName into a name before validating, so none is an error.
        errs.push(required_detail("metadata.name", "name or generateName is required"));
    } else {
        invalid_each(&mut errs, "metadata.name", name, name_errors(rule, name));
    }
    let namespace = get_str(meta, "namespace");
    match scope {
        Scope::Namespaced if namespace.is_empty() => errs.push(Cause::required("metadata.namespace")),
        Scope::Namespaced => {
            invalid_each(&mut errs, "metadata.namespace", namespace, names::dns1123_label_errors(namespace))
        }
        Scope::Cluster if !namespace.is_empty() => {
            errs.push(Cause::forbidden("metadata.namespace", "not allowed on this type"))
        }
        _ => {}
    }
    nonnegative_field(&mut errs, meta, "generation", "metadata.generation");
    errs.extend(validate_meta_content(meta));
    errs
}

/// The parts of metadata that are checked the same way on create, update and status update.
pub(crate) fn validate_meta_content(meta: &Value) -> Vec<Cause> {
    let mut errs = validate_labels(get(meta, "labels"), "metadata.labels");
    errs.extend(validate_annotations(get(meta, "annotations"), "metadata.annotations"));
    errs.extend(validate_owner_references(get_arr(meta, "ownerReferences")));
    errs.extend(validate_finalizers(get(meta, "finalizers"), "metadata.finalizers"));
    errs
}

/// Immutability and monotonicity of server-owned metadata on update.
pub(crate) fn validate_object_meta_update(new: &Value, old: &Value) -> Vec<Cause> {
    let mut errs = Vec::new();
    let nm = sub(new, "metadata");
    let om = sub(old, "metadata");

    if !get_str(om, "deletionTimestamp").is_empty() {
        let old_set: BTreeSet<&str> = string_list(om, "finalizers").into_iter().collect();
        let added: BTreeSet<&str> =
            string_list(nm, "finalizers").into_iter().filter(|f| !old_set.contains(f)).collect();
        if !added.is_empty() {
            let quoted: Vec<String> = added.iter().map(|f| format!("\"{f}\"")).collect();
            errs.push(Cause::forbidden(
                "metadata.finalizers",
                format!(
                    "no new finalizers can be added if the object is being deleted, found new finalizers []string{{{}}}",
                    quoted.join(", ")
                ),
            ));
        }
    }

    let new_gen = get_int(nm, "generation").unwrap_or(0);
    if new_gen < get_int(om, "generation").unwrap_or(0) {
        errs.push(Cause::invalid("metadata.generation", &Value::from(new_gen), "must not be decremented"));
    }

    for field in ["name", "namespace"] {
        if get_str(nm, field) != get_str(om, field) {
            errs.push(Cause::invalid(format!("metadata.{field}"), &str_value(get_str(nm, field)), IMMUTABLE));
        }
    }
    // Server-owned: a request that leaves them out keeps the stored values (upstream copies
    // them over before validating), so only a different value that is present is an error.
    for field in ["uid", "creationTimestamp", "deletionTimestamp", "deletionGracePeriodSeconds"] {
        let given = get(nm, field).filter(|v| v.as_str() != Some(""));
        if let Some(v) = given {
            if get(om, field) != Some(v) {
                errs.push(Cause::invalid(format!("metadata.{field}"), v, IMMUTABLE));
            }
        }
    }
    errs
}

fn string_list<'a>(v: &'a Value, k: &str) -> Vec<&'a str> {
    get_arr(v, k).iter().filter_map(Value::as_str).collect()
}

/// Label keys are qualified names and values are label values.
pub(crate) fn validate_labels(labels: Option<&Value>, path: &str) -> Vec<Cause> {
    let mut errs = Vec::new();
    match labels {
        None => {}
        Some(Value::Object(m)) => {
            for (k, v) in m {
                errs.extend(validate_label_name(k, path));
                match v {
                    Value::String(s) => invalid_each(&mut errs, path, s, names::label_value_errors(s)),
                    other => errs.push(Cause::invalid(path, other, "must be a string")),
                }
            }
        }
        Some(other) => errs.push(Cause::invalid(path, other, "must be a map of strings")),
    }
    errs
}

pub(crate) fn validate_label_name(name: &str, path: &str) -> Vec<Cause> {
    let mut errs = Vec::new();
    invalid_each(&mut errs, path, name, names::qualified_name_errors(name));
    errs
}

/// Annotation keys are qualified names compared case-insensitively; all keys and values
/// together may not exceed 256 KiB.
pub(crate) fn validate_annotations(annotations: Option<&Value>, path: &str) -> Vec<Cause> {
    let mut errs = Vec::new();
    let m = match annotations {
        None => return errs,
        Some(Value::Object(m)) => m,
        Some(other) => {
            errs.push(Cause::invalid(path, other, "must be a map of strings"));
            return errs;
        }
    };
    let mut total = 0usize;
    for (k, v) in m {
        invalid_each(&mut errs, path, k, names::qualified_name_errors(&k.to_lowercase()));
        match v {
            Value::String(s) => total += k.len() + s.len(),
            other => errs.push(Cause::invalid(path, other, "must be a string")),
        }
    }
    if total > TOTAL_ANNOTATION_SIZE_LIMIT {
        errs.push(too_long(path, TOTAL_ANNOTATION_SIZE_LIMIT));
    }
    errs
}

/// Parses an apiVersion like upstream's `schema.ParseGroupVersion` into (group, version).
fn group_version(api_version: &str) -> (&str, &str) {
    let parts: Vec<&str> = api_version.split('/').collect();
    match parts.as_slice() {
        [v] => ("", v),
        [g, v] => (g, v),
        _ => ("", ""),
    }
}

pub(crate) fn validate_owner_references(refs: &[Value]) -> Vec<Cause> {
    // Upstream reports these against the list, not the entry.
    let path = "metadata.ownerReferences";
    let mut errs = Vec::new();
    let mut first_controller: Option<String> = None;
    for r in refs {
        let api_version = get_str(r, "apiVersion");
        let kind = get_str(r, "kind");
        let (group, version) = group_version(api_version);
        if version.is_empty() {
            errs.push(Cause::invalid(child(path, "apiVersion"), &str_value(api_version), "version must not be empty"));
        }
        for (field, detail) in [("kind", "must not be empty"), ("name", "must not be empty")] {
            if get_str(r, field).is_empty() {
                errs.push(Cause::invalid(child(path, field), &str_value(""), detail));
            }
        }
        if get_str(r, "uid").is_empty() {
            errs.push(Cause::invalid(child(path, "uid"), &str_value(""), "must not be empty"));
        }
        // Events are garbage-collected on their own and may not own anything.
        if group.is_empty() && version == "v1" && kind == "Event" {
            errs.push(Cause::invalid(path, r, "/v1, Kind=Event is disallowed from being an owner"));
        }
        if get_bool(r, "controller") {
            let current = format!("{kind}/{}", get_str(r, "name"));
            match &first_controller {
                Some(first) => errs.push(Cause::invalid(
                    path,
                    &Value::Array(refs.to_vec()),
                    format!(
                        "Only one reference can have Controller set to true. Found \"true\" in references for {first} and {current}"
                    ),
                )),
                None => first_controller = Some(current),
            }
        }
    }
    errs
}

/// Finalizer names without a domain must be one of the few built into Kubernetes.
pub(crate) fn is_standard_finalizer(name: &str) -> bool {
    matches!(name, "kubernetes" | "orphan" | "foregroundDeletion")
}

pub(crate) fn validate_finalizers(finalizers: Option<&Value>, path: &str) -> Vec<Cause> {
    let mut errs = Vec::new();
    let list = match finalizers {
        None => return errs,
        Some(Value::Array(a)) => a,
        Some(other) => {
            errs.push(Cause::invalid(path, other, "must be a list of strings"));
            return errs;
        }
    };
    let mut orphan = false;
    let mut foreground = false;
    for (i, f) in list.iter().enumerate() {
        let Some(name) = f.as_str() else {
            errs.push(Cause::invalid(index(path, i), f, "must be a string"));
            continue;
        };
        invalid_each(&mut errs, path, name, names::qualified_name_errors(name));
        errs.extend(kube_finalizer_name(name, &index(path, i)));
        orphan |= name == "orphan";
        foreground |= name == "foregroundDeletion";
    }
    if orphan && foreground {
        errs.push(Cause::invalid(
            path,
            &Value::Array(list.clone()),
            "finalizer orphan and foregroundDeletion cannot be both set",
        ));
    }
    errs
}

pub(crate) fn kube_finalizer_name(name: &str, path: &str) -> Vec<Cause> {
    if !name.contains('/') && !is_standard_finalizer(name) {
        vec![Cause::invalid(
            path,
            &str_value(name),
            "name is neither a standard finalizer name nor is it fully qualified",
        )]
    } else {
        Vec::new()
    }
}

/// `metav1.LabelSelector`: matchLabels is a label map; each matchExpressions entry needs a
/// valid key, a known operator and values that fit it.
pub(crate) fn validate_label_selector(sel: &Value, path: &str) -> Vec<Cause> {
    let mut errs = validate_labels(get(sel, "matchLabels"), &child(path, "matchLabels"));
    let exprs_path = child(path, "matchExpressions");
    for (i, expr) in get_arr(sel, "matchExpressions").iter().enumerate() {
        let p = index(&exprs_path, i);
        let values = get_arr(expr, "values");
        match get_str(expr, "operator") {
            "In" | "NotIn" if values.is_empty() => {
                errs.push(required_detail(&child(&p, "values"), "must be specified when `operator` is 'In' or 'NotIn'"))
            }
            "In" | "NotIn" => {}
            "Exists" | "DoesNotExist" if !values.is_empty() => errs.push(Cause::forbidden(
                child(&p, "values"),
                "may not be specified when `operator` is 'Exists' or 'DoesNotExist'",
            )),
            "Exists" | "DoesNotExist" => {}
            op => errs.push(Cause::invalid(child(&p, "operator"), &str_value(op), "not a valid selector operator")),
        }
        errs.extend(validate_label_name(get_str(expr, "key"), &child(&p, "key")));
        for (j, v) in values.iter().enumerate() {
            let s = v.as_str().unwrap_or("");
            invalid_each(&mut errs, &index(&child(&p, "values"), j), s, names::label_value_errors(s));
        }
    }
    errs
}

/// True when the selector selects nothing in particular (and therefore everything).
pub(crate) fn selector_is_empty(sel: &Value) -> bool {
    get_obj(sel, "matchLabels").is_none_or(Map::is_empty) && get_arr(sel, "matchExpressions").is_empty()
}

/// Whether `labels` satisfy every term of the selector.
pub(crate) fn selector_matches(sel: &Value, labels: Option<&Map<String, Value>>) -> bool {
    let label = |k: &str| labels.and_then(|m| m.get(k)).and_then(Value::as_str);
    let exact =
        get_obj(sel, "matchLabels").is_none_or(|m| m.iter().all(|(k, v)| label(k).is_some() && label(k) == v.as_str()));
    exact
        && get_arr(sel, "matchExpressions").iter().all(|e| {
            let actual = label(get_str(e, "key"));
            let mut values = get_arr(e, "values").iter().filter_map(Value::as_str);
            match get_str(e, "operator") {
                "In" => actual.is_some_and(|a| values.any(|v| v == a)),
                "NotIn" => actual.is_none_or(|a| values.all(|v| v != a)),
                "Exists" => actual.is_some(),
                "DoesNotExist" => actual.is_none(),
                _ => false,
            }
        })
}
