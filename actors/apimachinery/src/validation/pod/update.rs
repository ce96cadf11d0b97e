//! Pod updates: upstream `ValidatePodUpdate` and what may change once a pod exists.

use std::collections::HashSet;

use serde_json::{Map, Value};

use super::{validate_pod, APPARMOR_PREFIX, MIRROR_ANNOTATION};
use crate::status::Cause;
use crate::validation::names;
use crate::validation::util::*;

const UPDATABLE_POD_SPEC_FIELDS: [&str; 5] = [
    "`spec.containers[*].image`",
    "`spec.initContainers[*].image`",
    "`spec.activeDeadlineSeconds`",
    "`spec.tolerations` (only additions to existing tolerations)",
    "`spec.terminationGracePeriodSeconds` (allow it to be set to 1 if it was previously negative)",
];

/// Mirror-pod and AppArmor annotations are fixed once a pod exists.
pub(super) fn pod_annotation_updates(new: &Value, old: &Value) -> Vec<Cause> {
    let path = "metadata.annotations";
    let na = get_obj(sub(new, "metadata"), "annotations");
    let oa = get_obj(sub(old, "metadata"), "annotations");
    let empty = Map::new();
    let (na, oa) = (na.unwrap_or(&empty), oa.unwrap_or(&empty));
    let mut errs = Vec::new();
    for (k, ov) in oa {
        if na.get(k) == Some(ov) {
            continue;
        }
        if k.starts_with(APPARMOR_PREFIX) {
            errs.push(Cause::forbidden(key(path, k), "may not remove or update AppArmor annotations"));
        }
        if k == MIRROR_ANNOTATION {
            errs.push(Cause::forbidden(key(path, k), "may not remove or update mirror pod annotation"));
        }
    }
    for k in na.keys().filter(|k| !oa.contains_key(*k)) {
        if k.starts_with(APPARMOR_PREFIX) {
            errs.push(Cause::forbidden(key(path, k), "may not add AppArmor annotations"));
        }
        if k == MIRROR_ANNOTATION {
            errs.push(Cause::forbidden(key(path, k), "may not add mirror pod annotation"));
        }
    }
    errs
}

fn is_gated(spec: &Value) -> bool {
    !get_arr(spec, "schedulingGates").is_empty()
}

/// Upstream's `ValidatePodUpdate`: besides metadata, only images, a shrinking
/// activeDeadlineSeconds, added tolerations and removed scheduling gates may change.
pub(crate) fn validate_pod_update(new: &Value, old: &Value) -> Vec<Cause> {
    let mut errs = validate_pod(new);
    errs.extend(pod_annotation_updates(new, old));
    let ns = sub(new, "spec");
    let os = sub(old, "spec");

    for field in ["containers", "initContainers"] {
        let nc = get_arr(ns, field);
        if nc.len() != get_arr(os, field).len() {
            errs.push(Cause::forbidden(format!("spec.{field}"), "pod updates may not add or remove containers"));
            return errs;
        }
        for (i, c) in nc.iter().enumerate() {
            if get_str(c, "image").is_empty() {
                errs.push(Cause::required(format!("spec.{field}[{i}].image")));
            }
        }
    }

    let ads_path = "spec.activeDeadlineSeconds";
    match (get_int(ns, "activeDeadlineSeconds"), get_int(os, "activeDeadlineSeconds")) {
        (Some(n), _) if !(0..=i64::from(i32::MAX)).contains(&n) => {
            errs.push(Cause::invalid(ads_path, &Value::from(n), names::inclusive_range_error(0, i64::from(i32::MAX))));
            return errs;
        }
        (Some(n), Some(o)) if o < n => {
            errs.push(Cause::invalid(ads_path, &Value::from(n), "must be less than or equal to previous value"));
            return errs;
        }
        (None, Some(_)) => {
            errs.push(Cause::invalid(ads_path, &Value::Null, "must not update from a positive integer to nil value"))
        }
        _ => {}
    }

    errs.extend(only_added_tolerations(get_arr(ns, "tolerations"), get_arr(os, "tolerations")));
    let old_gates: HashSet<&str> = get_arr(os, "schedulingGates").iter().map(|g| get_str(g, "name")).collect();
    for (i, g) in get_arr(ns, "schedulingGates").iter().enumerate() {
        let name = get_str(g, "name");
        if !old_gates.contains(name) {
            errs.push(Cause::forbidden(
                format!("spec.schedulingGates[{i}].name"),
                format!("only deletion is allowed, but found new scheduling gate '{name}'"),
            ));
        }
    }

    if semantic_eq(Some(ns), Some(os)) {
        return errs;
    }
    // Put the old values back into the fields that may change; whatever still differs is
    // a change upstream forbids.
    let mut munged = ns.clone();
    if let Some(m) = munged.as_object_mut() {
        for field in ["containers", "initContainers"] {
            if let Some(Value::Array(cs)) = m.get_mut(field) {
                for (c, oc) in cs.iter_mut().zip(get_arr(os, field)) {
                    if let Some(cm) = c.as_object_mut() {
                        match get(oc, "image") {
                            Some(img) => cm.insert("image".into(), img.clone()),
                            None => cm.remove("image"),
                        };
                    }
                }
            }
        }
        for field in ["activeDeadlineSeconds", "schedulingGates", "tolerations"] {
            match get(os, field) {
                Some(v) => m.insert(field.into(), v.clone()),
                None => m.remove(field),
            };
        }
        let old_grace = get_int(os, "terminationGracePeriodSeconds");
        if old_grace.is_some_and(|g| g < 0) && get_int(ns, "terminationGracePeriodSeconds") == Some(1) {
            m.insert("terminationGracePeriodSeconds".into(), Value::from(old_grace));
        }
        // Gated pods are not scheduled yet, so their node selector may still grow.
        if is_gated(os) && !semantic_eq(get(ns, "nodeSelector"), get(os, "nodeSelector")) {
            let new_sel = get_obj(ns, "nodeSelector");
            let kept = get_obj(os, "nodeSelector")
                .is_none_or(|o| o.iter().all(|(k, v)| new_sel.and_then(|n| n.get(k)) == Some(v)));
            if !kept {
                errs.push(Cause::invalid(
                    "spec.nodeSelector",
                    sub(ns, "nodeSelector"),
                    "only additions to spec.nodeSelector are allowed (no mutations or deletions)",
                ));
            }
            match get(os, "nodeSelector") {
                Some(v) => m.insert("nodeSelector".into(), v.clone()),
                None => m.remove("nodeSelector"),
            };
        }
    }
    if !semantic_eq(Some(&munged), Some(os)) {
        errs.push(Cause::forbidden(
            "spec",
            format!(
                "pod updates may not change fields other than {}\n{}",
                UPDATABLE_POD_SPEC_FIELDS.join(","),
                describe_diff(os, &munged)
            ),
        ));
    }
    errs
}

fn only_added_tolerations(new: &[Value], old: &[Value]) -> Vec<Cause> {
    let strip = |t: &Value| {
        let mut t = t.clone();
        if let Some(m) = t.as_object_mut() {
            m.remove("tolerationSeconds");
        }
        normalized(&t)
    };
    let new_stripped: Vec<Option<Value>> = new.iter().map(strip).collect();
    for o in old {
        if !new_stripped.contains(&strip(o)) {
            return vec![Cause::forbidden(
                "spec.tolerations",
                "existing toleration can not be modified except its tolerationSeconds",
            )];
        }
    }
    Vec::new()
}
