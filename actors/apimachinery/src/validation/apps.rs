//! Workloads: Deployments, ReplicaSets, ReplicationControllers, DaemonSets and
//! ControllerRevisions (upstream `ValidateDeploymentSpec`, `ValidateReplicaSetSpec`,
//! `ValidateReplicationControllerSpec`, `ValidateDaemonSetSpec`, `ValidateControllerRevision`
//! and their status checks).

use serde_json::Value;

use super::meta::{self, NameRule, Scope};
use super::names;
use super::pod;
use super::util::*;
use crate::status::Cause;

/// Selector and template rules shared by the workload kinds with a `metav1.LabelSelector`.
fn validate_selector_and_template(spec: &Value, errs: &mut Vec<Cause>, kind_word: &str) {
    nonnegative_field(errs, spec, "replicas", "spec.replicas");
    nonnegative_field(errs, spec, "minReadySeconds", "spec.minReadySeconds");
    let template = sub(spec, "template");
    let tmpl_labels = get_obj(sub(template, "metadata"), "labels");
    match get(spec, "selector") {
        None => errs.push(Cause::required("spec.selector")),
        Some(sel) => {
            let sel_errs = meta::validate_label_selector(sel, "spec.selector");
            let parsable = sel_errs.is_empty();
            errs.extend(sel_errs);
            if meta::selector_is_empty(sel) {
                // Upstream says "deployment" for ReplicaSets as well.
                errs.push(Cause::invalid("spec.selector", sel, format!("empty selector is invalid for {kind_word}")));
            }
            if !parsable {
                errs.push(Cause::invalid("spec.selector", sel, "invalid label selector"));
            } else if !meta::selector_is_empty(sel) && !meta::selector_matches(sel, tmpl_labels) {
                errs.push(Cause::invalid(
                    "spec.template.metadata.labels",
                    sub(sub(template, "metadata"), "labels"),
                    "`selector` does not match template `labels`",
                ));
            }
        }
    }
    errs.extend(pod::validate_pod_template(template, "spec.template"));
    let tspec = sub(template, "spec");
    // Controllers replace failed pods themselves; pods must restart in place otherwise.
    let rp = get_str(tspec, "restartPolicy");
    if rp != "Always" {
        errs.push(Cause::not_supported("spec.template.spec.restartPolicy", &str_value(rp), &["Always"]));
    }
    if get(tspec, "activeDeadlineSeconds").is_some() {
        errs.push(Cause::forbidden(
            "spec.template.spec.activeDeadlineSeconds",
            format!(
                "activeDeadlineSeconds in {} is not Supported",
                if kind_word == "daemonset" { "DaemonSet" } else { "ReplicaSet" }
            ),
        ));
    }
}

pub(crate) fn validate_deployment(d: &Value) -> Vec<Cause> {
    let mut errs = meta::validate_object_meta(d, Scope::Namespaced, NameRule::Subdomain);
    let spec = sub(d, "spec");
    validate_selector_and_template(spec, &mut errs, "deployment");
    validate_strategy(spec, &mut errs);
    let rhl = "spec.revisionHistoryLimit";
    nonnegative_field(&mut errs, spec, "revisionHistoryLimit", rhl);
    let pdp = "spec.progressDeadlineSeconds";
    if let Some(pd) = int_field(&mut errs, spec, "progressDeadlineSeconds", pdp) {
        nonnegative(&mut errs, pd, pdp);
        if pd <= get_int(spec, "minReadySeconds").unwrap_or(0) {
            errs.push(Cause::invalid(pdp, &Value::from(pd), "must be greater than minReadySeconds"));
        }
    }
    errs
}

/// An int (>= 0) or a percentage string.
fn int_or_percent(errs: &mut Vec<Cause>, v: Option<&Value>, p: &str) {
    match v {
        None => {}
        Some(Value::String(s)) => invalid_each(errs, p, s, names::percent_errors(s)),
        Some(n) => match as_int(n) {
            Some(i) => nonnegative(errs, i, p),
            None => errs.push(Cause::invalid(p, n, "must be an integer or percentage (e.g '5%')")),
        },
    }
}

/// The number an int-or-percent stands for, as upstream reads it for the both-zero check.
fn int_or_percent_value(v: Option<&Value>) -> i64 {
    match v {
        Some(Value::String(s)) => s.strip_suffix('%').unwrap_or(s).parse().unwrap_or(0),
        Some(n) => as_int(n).unwrap_or(0),
        None => 0,
    }
}

fn validate_strategy(spec: &Value, errs: &mut Vec<Cause>) {
    let strategy = sub(spec, "strategy");
    let p = "spec.strategy";
    let ru = get(strategy, "rollingUpdate");
    match get_str(strategy, "type") {
        "Recreate" => {
            if ru.is_some() {
                errs.push(Cause::forbidden(
                    "spec.strategy.rollingUpdate",
                    "may not be specified when strategy `type` is 'Recreate'",
                ));
            }
        }
        "RollingUpdate" => match ru {
            None => {
                errs.push(required_detail("spec.strategy.rollingUpdate", "this should be defaulted and never be nil"))
            }
            Some(ru) => {
                let mu = get(ru, "maxUnavailable");
                let ms = get(ru, "maxSurge");
                let mup = "spec.strategy.rollingUpdate.maxUnavailable";
                int_or_percent(errs, mu, mup);
                int_or_percent(errs, ms, "spec.strategy.rollingUpdate.maxSurge");
                // With neither surge nor unavailability a rollout could never progress.
                if int_or_percent_value(mu) == 0 && int_or_percent_value(ms) == 0 {
                    errs.push(Cause::invalid(mup, mu.unwrap_or(&Value::from(0)), "may not be 0 when `maxSurge` is 0"));
                }
                if let Some(Value::String(s)) = mu {
                    if names::percent_errors(s).is_empty() && int_or_percent_value(mu) > 100 {
                        errs.push(Cause::invalid(mup, &str_value(s), "must not be greater than 100%"));
                    }
                }
            }
        },
        other => errs.push(Cause::not_supported(p, &str_value(other), &["Recreate", "RollingUpdate"])),
    }
}

pub(crate) fn validate_replica_set(rs: &Value) -> Vec<Cause> {
    let mut errs = meta::validate_object_meta(rs, Scope::Namespaced, NameRule::Subdomain);
    validate_selector_and_template(sub(rs, "spec"), &mut errs, "deployment");
    errs
}

/// A ReplicationController: its selector is a plain label map, which may change.
pub(crate) fn validate_replication_controller(rc: &Value) -> Vec<Cause> {
    let mut errs = meta::validate_object_meta(rc, Scope::Namespaced, NameRule::Subdomain);
    let spec = sub(rc, "spec");
    nonnegative_field(&mut errs, spec, "minReadySeconds", "spec.minReadySeconds");
    let selector = get_obj(spec, "selector").filter(|s| !s.is_empty());
    match selector {
        None => errs.push(Cause::required("spec.selector")),
        Some(_) => errs.extend(meta::validate_labels(get(spec, "selector"), "spec.selector")),
    }
    nonnegative_field(&mut errs, spec, "replicas", "spec.replicas");
    let Some(template) = get(spec, "template").filter(|t| !t.is_null()) else {
        errs.push(Cause::required("spec.template"));
        return errs;
    };
    let labels = get_obj(sub(template, "metadata"), "labels");
    if let Some(selector) = selector {
        let matches = selector.iter().all(|(k, v)| labels.and_then(|l| l.get(k)) == Some(v));
        if !matches {
            errs.push(Cause::invalid(
                "spec.template.metadata.labels",
                sub(sub(template, "metadata"), "labels"),
                "`selector` does not match template `labels`",
            ));
        }
    }
    errs.extend(pod::validate_pod_template(template, "spec.template"));
    let tspec = sub(template, "spec");
    let rp = get_str(tspec, "restartPolicy");
    if rp != "Always" {
        errs.push(Cause::not_supported("spec.template.spec.restartPolicy", &str_value(rp), &["Always"]));
    }
    if get(tspec, "activeDeadlineSeconds").is_some() {
        errs.push(Cause::forbidden(
            "spec.template.spec.activeDeadlineSeconds",
            "activeDeadlineSeconds in ReplicationController is not Supported",
        ));
    }
    errs
}

/// apps/v1 fixes the selector at creation: changing it would orphan the existing pods.
pub(crate) fn selector_immutable(new: &Value, old: &Value) -> Vec<Cause> {
    let ns = get(sub(new, "spec"), "selector");
    if semantic_eq(ns, get(sub(old, "spec"), "selector")) {
        Vec::new()
    } else {
        vec![Cause::invalid("spec.selector", ns.unwrap_or(&NULL), IMMUTABLE)]
    }
}

fn replica_counts(status: &Value, fields: &[&str], errs: &mut Vec<Cause>) {
    for f in fields {
        nonnegative_field(errs, status, f, &format!("status.{f}"));
    }
    let n = |k: &str| get_int(status, k).unwrap_or(0);
    let msg = "cannot be greater than status.replicas";
    for f in ["updatedReplicas", "fullyLabeledReplicas", "readyReplicas", "availableReplicas"] {
        if fields.contains(&f) && n(f) > n("replicas") {
            errs.push(Cause::invalid(format!("status.{f}"), &Value::from(n(f)), msg));
        }
    }
    if n("availableReplicas") > n("readyReplicas") {
        errs.push(Cause::invalid(
            "status.availableReplicas",
            &Value::from(n("availableReplicas")),
            "cannot be greater than readyReplicas",
        ));
    }
}

pub(crate) fn validate_deployment_status(new: &Value, old: &Value) -> Vec<Cause> {
    let mut errs = Vec::new();
    let status = sub(new, "status");
    replica_counts(
        status,
        &[
            "observedGeneration",
            "replicas",
            "updatedReplicas",
            "readyReplicas",
            "availableReplicas",
            "unavailableReplicas",
            "collisionCount",
        ],
        &mut errs,
    );
    let old_cc = get_int(sub(old, "status"), "collisionCount");
    let new_cc = get_int(status, "collisionCount");
    if old_cc.is_some_and(|o| new_cc.unwrap_or(0) < o) {
        errs.push(Cause::invalid("status.collisionCount", &Value::from(new_cc.unwrap_or(0)), "cannot be decremented"));
    }
    errs.extend(pod::validate_conditions(
        get_arr(status, "conditions"),
        "status.conditions",
        &["Available", "Progressing", "ReplicaFailure"],
    ));
    errs
}

pub(crate) fn validate_replica_set_status(new: &Value) -> Vec<Cause> {
    let mut errs = Vec::new();
    let status = sub(new, "status");
    replica_counts(
        status,
        &["replicas", "fullyLabeledReplicas", "readyReplicas", "availableReplicas", "observedGeneration"],
        &mut errs,
    );
    errs.extend(pod::validate_conditions(get_arr(status, "conditions"), "status.conditions", &["ReplicaFailure"]));
    errs
}

pub(crate) fn validate_daemon_set(ds: &Value) -> Vec<Cause> {
    let mut errs = meta::validate_object_meta(ds, Scope::Namespaced, NameRule::Subdomain);
    let spec = sub(ds, "spec");
    validate_selector_and_template(spec, &mut errs, "daemonset");
    nonnegative_field(&mut errs, spec, "revisionHistoryLimit", "spec.revisionHistoryLimit");
    nonnegative_field(&mut errs, spec, "templateGeneration", "spec.templateGeneration");
    let strategy = sub(spec, "updateStrategy");
    match get_str(strategy, "type") {
        "OnDelete" => {}
        "RollingUpdate" => match get(strategy, "rollingUpdate") {
            None => errs.push(Cause::required("spec.updateStrategy.rollingUpdate")),
            Some(ru) => {
                let (mu, ms) = (get(ru, "maxUnavailable"), get(ru, "maxSurge"));
                let mup = "spec.updateStrategy.rollingUpdate.maxUnavailable";
                let msp = "spec.updateStrategy.rollingUpdate.maxSurge";
                int_or_percent(&mut errs, mu, mup);
                int_or_percent(&mut errs, ms, msp);
                for (v, p) in [(mu, mup), (ms, msp)] {
                    if let Some(Value::String(s)) = v {
                        if names::percent_errors(s).is_empty() && int_or_percent_value(v) > 100 {
                            errs.push(Cause::invalid(p, &str_value(s), "must not be greater than 100%"));
                        }
                    }
                }
                // Exactly one of the two moves a rollout.
                match (int_or_percent_value(mu) != 0, int_or_percent_value(ms) != 0) {
                    (true, true) => errs.push(Cause::invalid(
                        msp,
                        ms.unwrap_or(&NULL),
                        "may not be set when maxUnavailable is non-zero",
                    )),
                    (false, false) => errs.push(required_detail(mup, "cannot be 0 when maxSurge is 0")),
                    _ => {}
                }
            }
        },
        other => errs.push(Cause::not_supported(
            "spec.updateStrategy.type",
            &str_value(other),
            &["OnDelete", "RollingUpdate"],
        )),
    }
    errs
}

pub(crate) fn validate_daemon_set_status(new: &Value) -> Vec<Cause> {
    let mut errs = Vec::new();
    let status = sub(new, "status");
    for f in [
        "currentNumberScheduled",
        "numberMisscheduled",
        "desiredNumberScheduled",
        "numberReady",
        "observedGeneration",
        "updatedNumberScheduled",
        "numberAvailable",
        "numberUnavailable",
        "collisionCount",
    ] {
        nonnegative_field(&mut errs, status, f, &format!("status.{f}"));
    }
    errs
}

pub(crate) fn validate_controller_revision(cr: &Value) -> Vec<Cause> {
    let mut errs = meta::validate_object_meta(cr, Scope::Namespaced, NameRule::Subdomain);
    if get(cr, "data").is_none() {
        errs.push(Cause::required("data"));
    }
    nonnegative_field(&mut errs, cr, "revision", "revision");
    errs
}

/// A revision's data is what it records: it never changes.
pub(crate) fn validate_controller_revision_update(new: &Value, old: &Value) -> Vec<Cause> {
    let mut errs = validate_controller_revision(new);
    if !semantic_eq(get(new, "data"), get(old, "data")) {
        errs.push(Cause::invalid("data", &Value::String("<value omitted>".into()), IMMUTABLE));
    }
    errs
}

pub(crate) fn validate_stateful_set(sts: &Value) -> Vec<Cause> {
    let mut errs = meta::validate_object_meta(sts, Scope::Namespaced, NameRule::Subdomain);
    let spec = sub(sts, "spec");
    // Mounts may name the claim templates: validate the template as its pods will be, with a
    // volume per claim template (upstream skips the pod spec here altogether).
    let mut with_claims = spec.clone();
    let claim_volumes: Vec<Value> = get_arr(spec, "volumeClaimTemplates")
        .iter()
        .map(|t| {
            let name = get_str(sub(t, "metadata"), "name");
            serde_json::json!({"name": name, "persistentVolumeClaim": {"claimName": format!("{name}-0")}})
        })
        .collect();
    if let Some(tspec) = with_claims.pointer_mut("/template/spec").and_then(Value::as_object_mut) {
        let volumes = tspec.entry("volumes").or_insert_with(|| Value::Array(Vec::new()));
        if let Some(list) = volumes.as_array_mut() {
            list.retain(|v| !claim_volumes.iter().any(|c| c["name"] == v["name"]));
            list.extend(claim_volumes);
        }
    }
    validate_selector_and_template(&with_claims, &mut errs, "statefulset");
    nonnegative_field(&mut errs, spec, "revisionHistoryLimit", "spec.revisionHistoryLimit");
    match get_str(spec, "podManagementPolicy") {
        "OrderedReady" | "Parallel" => {}
        "" => errs.push(required_detail("spec.podManagementPolicy", "")),
        other => errs.push(Cause::invalid(
            "spec.podManagementPolicy",
            &str_value(other),
            "must be 'OrderedReady' or 'Parallel'",
        )),
    }
    let strategy = sub(spec, "updateStrategy");
    match get_str(strategy, "type") {
        "OnDelete" => {
            if get(strategy, "rollingUpdate").is_some() {
                errs.push(Cause::invalid(
                    "spec.updateStrategy.rollingUpdate",
                    sub(strategy, "rollingUpdate"),
                    "only allowed for updateStrategy 'RollingUpdate'",
                ));
            }
        }
        "RollingUpdate" => {
            let ru = sub(strategy, "rollingUpdate");
            nonnegative_field(&mut errs, ru, "partition", "spec.updateStrategy.rollingUpdate.partition");
            if get(ru, "maxUnavailable").is_some() {
                int_or_percent(
                    &mut errs,
                    get(ru, "maxUnavailable"),
                    "spec.updateStrategy.rollingUpdate.maxUnavailable",
                );
            }
        }
        "" => errs.push(required_detail("spec.updateStrategy", "")),
        other => errs.push(Cause::invalid(
            "spec.updateStrategy.type",
            &str_value(other),
            "must be 'RollingUpdate' or 'OnDelete'",
        )),
    }
    let retention = sub(spec, "persistentVolumeClaimRetentionPolicy");
    for f in ["whenDeleted", "whenScaled"] {
        if let Some(v) = get(retention, f) {
            let s = v.as_str().unwrap_or("");
            if s != "Retain" && s != "Delete" {
                errs.push(Cause::not_supported(
                    format!("spec.persistentVolumeClaimRetentionPolicy.{f}"),
                    v,
                    &["Retain", "Delete"],
                ));
            }
        }
    }
    for (i, t) in get_arr(spec, "volumeClaimTemplates").iter().enumerate() {
        let name = get_str(sub(t, "metadata"), "name");
        let p = format!("spec.volumeClaimTemplates[{i}]");
        if name.is_empty() {
            errs.push(Cause::required(format!("{p}.metadata.name")));
        }
        if get_arr(sub(t, "spec"), "accessModes").is_empty() {
            errs.push(Cause::required(format!("{p}.spec.accessModes")));
        }
        if t.pointer("/spec/resources/requests/storage").is_none() {
            errs.push(Cause::required(format!("{p}.spec.resources.requests.storage")));
        }
    }
    errs
}

/// Only replicas, ordinals, template, updateStrategy, the claim retention policy and
/// minReadySeconds may change.
pub(crate) fn validate_stateful_set_update(new: &Value, old: &Value) -> Vec<Cause> {
    let mut errs = validate_stateful_set(new);
    let strip = |v: &Value| {
        let mut s = sub(v, "spec").clone();
        if let Some(m) = s.as_object_mut() {
            for f in [
                "replicas",
                "ordinals",
                "template",
                "updateStrategy",
                "persistentVolumeClaimRetentionPolicy",
                "minReadySeconds",
            ] {
                m.remove(f);
            }
        }
        normalized(&s)
    };
    if strip(new) != strip(old) {
        errs.push(Cause::forbidden(
            "spec",
            "updates to statefulset spec for fields other than 'replicas', 'ordinals', 'template', 'updateStrategy', 'persistentVolumeClaimRetentionPolicy' and 'minReadySeconds' are forbidden",
        ));
    }
    errs
}

pub(crate) fn validate_stateful_set_status(new: &Value) -> Vec<Cause> {
    let mut errs = Vec::new();
    replica_counts(
        sub(new, "status"),
        &["replicas", "readyReplicas", "currentReplicas", "updatedReplicas", "availableReplicas", "observedGeneration"],
        &mut errs,
    );
    errs
}
