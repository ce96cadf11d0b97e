//! Jobs and CronJobs (upstream `pkg/apis/batch/validation`: `ValidateJob`,
//! `ValidateJobSpecUpdate`, `ValidateJobStatusUpdate`, `ValidateCronJobCreate` and
//! `ValidateCronJobUpdate`).

use serde_json::Value;

use super::meta::{self, NameRule, Scope};
use super::names;
use super::pod;
use super::util::*;
use crate::status::Cause;

/// The label the server adds to a Job's selector and pod template, unless the selector is
/// manual (upstream's `batch.ControllerUidLabel`).
pub const CONTROLLER_UID_LABEL: &str = "batch.kubernetes.io/controller-uid";
/// The legacy spelling, still added to templates.
pub const LEGACY_CONTROLLER_UID_LABEL: &str = "controller-uid";
/// The job's name on its pods.
pub const JOB_NAME_LABEL: &str = "batch.kubernetes.io/job-name";
pub const LEGACY_JOB_NAME_LABEL: &str = "job-name";

const MAX_POD_FAILURE_POLICY_RULES: usize = 20;
const MAX_EXIT_CODE_VALUES: usize = 255;
const MAX_PARALLELISM_INDEXED: i64 = 100_000;

fn manual_selector(spec: &Value) -> bool {
    get_bool(spec, "manualSelector")
}

pub(crate) fn validate_job(job: &Value) -> Vec<Cause> {
    let mut errs = meta::validate_object_meta(job, Scope::Namespaced, NameRule::Subdomain);
    let spec = sub(job, "spec");
    errs.extend(validate_generated_selector(job));
    errs.extend(validate_job_spec(spec, "spec", true));
    errs
}

/// Without `manualSelector`, the selector is the server's: exactly the controller-uid label.
fn validate_generated_selector(job: &Value) -> Vec<Cause> {
    let spec = sub(job, "spec");
    if manual_selector(spec) {
        return Vec::new();
    }
    let uid = get_str(sub(job, "metadata"), "uid");
    if uid.is_empty() {
        return vec![Cause::required("metadata.uid")];
    }
    let Some(selector) = get(spec, "selector") else { return Vec::new() };
    let expected = serde_json::json!({ CONTROLLER_UID_LABEL: uid });
    let labels_ok = get(selector, "matchLabels") == Some(&expected);
    if !labels_ok || !get_arr(selector, "matchExpressions").is_empty() {
        return vec![Cause::invalid("spec.selector", selector, "`selector` not auto-generated")];
    }
    Vec::new()
}

/// Upstream's `validateJobSpec` for a job's spec at `p`; a CronJob's jobTemplate reuses it
/// without a selector (each Job gets its own).
pub(crate) fn validate_job_spec(spec: &Value, p: &str, needs_selector: bool) -> Vec<Cause> {
    let mut errs = Vec::new();
    for f in ["parallelism", "completions", "activeDeadlineSeconds", "backoffLimit", "ttlSecondsAfterFinished"] {
        nonnegative_field(&mut errs, spec, f, &child(p, f));
    }
    if let Some(mode) = get(spec, "completionMode") {
        let m = mode.as_str().unwrap_or("");
        if m != "NonIndexed" && m != "Indexed" {
            errs.push(Cause::not_supported(child(p, "completionMode"), mode, &["NonIndexed", "Indexed"]));
        }
        if m == "Indexed" {
            if get(spec, "completions").is_none() {
                errs.push(required_detail(&child(p, "completions"), "when completion mode is Indexed"));
            }
            if let Some(par) = get_int(spec, "parallelism").filter(|n| *n > MAX_PARALLELISM_INDEXED) {
                errs.push(Cause::invalid(
                    child(p, "parallelism"),
                    &Value::from(par),
                    format!("must be less than or equal to {MAX_PARALLELISM_INDEXED} when completion mode is Indexed"),
                ));
            }
        }
    }
    // Accepted by upstream, not run by this cluster yet: refused rather than ignored.
    for f in ["backoffLimitPerIndex", "maxFailedIndexes", "successPolicy"] {
        if get(spec, f).is_some() {
            errs.push(Cause::forbidden(child(p, f), "not supported by this cluster yet"));
        }
    }
    if let Some(rp) = get(spec, "podReplacementPolicy").and_then(Value::as_str) {
        let allowed: &[&str] =
            if get(spec, "podFailurePolicy").is_some() { &["Failed"] } else { &["Failed", "TerminatingOrFailed"] };
        if !allowed.contains(&rp) {
            errs.push(Cause::not_supported(child(p, "podReplacementPolicy"), &str_value(rp), allowed));
        }
    }
    let template = sub(spec, "template");
    match get(spec, "selector") {
        None if needs_selector => errs.push(Cause::required(child(p, "selector"))),
        None => {}
        Some(sel) => {
            let sel_errs = meta::validate_label_selector(sel, &child(p, "selector"));
            let parsable = sel_errs.is_empty();
            errs.extend(sel_errs);
            if parsable && !meta::selector_matches(sel, get_obj(sub(template, "metadata"), "labels")) {
                errs.push(Cause::invalid(
                    child(p, "template.metadata.labels"),
                    sub(sub(template, "metadata"), "labels"),
                    "`selector` does not match template `labels`",
                ));
            }
        }
    }
    errs.extend(pod::validate_pod_template(template, &child(p, "template")));
    let tspec = sub(template, "spec");
    let rp = get_str(tspec, "restartPolicy");
    let rp_path = child(p, "template.spec.restartPolicy");
    if rp != "OnFailure" && rp != "Never" {
        errs.push(Cause::not_supported(&rp_path, &str_value(rp), &["OnFailure", "Never"]));
    }
    if let Some(policy) = get(spec, "podFailurePolicy") {
        if rp != "Never" {
            errs.push(Cause::invalid(
                &rp_path,
                &str_value(rp),
                "only \"Never\" is supported when podFailurePolicy is specified",
            ));
        }
        errs.extend(validate_pod_failure_policy(policy, tspec, &child(p, "podFailurePolicy")));
    }
    errs
}

fn validate_pod_failure_policy(policy: &Value, tspec: &Value, p: &str) -> Vec<Cause> {
    let mut errs = Vec::new();
    let rules = get_arr(policy, "rules");
    let rules_path = child(p, "rules");
    if rules.len() > MAX_POD_FAILURE_POLICY_RULES {
        errs.push(Cause::new(
            crate::status::CauseType::FieldValueTooMany,
            &rules_path,
            format!("Too many: {}: must have at most {MAX_POD_FAILURE_POLICY_RULES} items", rules.len()),
        ));
    }
    let containers: Vec<&str> = get_arr(tspec, "containers")
        .iter()
        .chain(get_arr(tspec, "initContainers"))
        .map(|c| get_str(c, "name"))
        .collect();
    let actions = ["Count", "FailIndex", "FailJob", "Ignore"];
    for (i, rule) in rules.iter().enumerate() {
        let rp = index(&rules_path, i);
        let action_path = child(&rp, "action");
        match get_str(rule, "action") {
            "" => errs
                .push(required_detail(&action_path, "valid values: [\"Count\" \"FailIndex\" \"FailJob\" \"Ignore\"]")),
            "FailIndex" => errs.push(Cause::invalid(
                &action_path,
                &str_value("FailIndex"),
                "requires the backoffLimitPerIndex to be set",
            )),
            a if !actions.contains(&a) => errs.push(Cause::not_supported(&action_path, &str_value(a), &actions)),
            _ => {}
        }
        let exit_codes = get(rule, "onExitCodes");
        let conditions = get_arr(rule, "onPodConditions");
        if let Some(req) = exit_codes {
            errs.extend(validate_on_exit_codes(req, &containers, &child(&rp, "onExitCodes")));
        }
        for (j, c) in conditions.iter().enumerate() {
            let cp = index(&child(&rp, "onPodConditions"), j);
            match get_str(c, "status") {
                "True" | "False" | "Unknown" => {}
                "" => errs.push(Cause::required(child(&cp, "status"))),
                s => {
                    errs.push(Cause::not_supported(child(&cp, "status"), &str_value(s), &["False", "True", "Unknown"]))
                }
            }
            let t = get_str(c, "type");
            invalid_each(&mut errs, &child(&cp, "type"), t, names::qualified_name_errors(t));
        }
        match (exit_codes.is_some(), conditions.is_empty()) {
            (true, false) => errs.push(Cause::new(
                crate::status::CauseType::FieldValueInvalid,
                &rp,
                "Invalid value: specifying both OnExitCodes and OnPodConditions is not supported",
            )),
            (false, true) => errs.push(Cause::new(
                crate::status::CauseType::FieldValueInvalid,
                &rp,
                "Invalid value: specifying one of OnExitCodes and OnPodConditions is required",
            )),
            _ => {}
        }
    }
    errs
}

fn validate_on_exit_codes(req: &Value, containers: &[&str], p: &str) -> Vec<Cause> {
    let mut errs = Vec::new();
    if let Some(name) = get(req, "containerName").and_then(Value::as_str) {
        if !containers.contains(&name) {
            errs.push(Cause::invalid(
                child(p, "containerName"),
                &str_value(name),
                "must be one of the container or initContainer names in the pod template",
            ));
        }
    }
    let op = get_str(req, "operator");
    match op {
        "In" | "NotIn" => {}
        "" => errs.push(required_detail(&child(p, "operator"), "valid values: [\"In\" \"NotIn\"]")),
        o => errs.push(Cause::not_supported(child(p, "operator"), &str_value(o), &["In", "NotIn"])),
    }
    let values = get_arr(req, "values");
    let vp = child(p, "values");
    if values.is_empty() || values.len() > MAX_EXIT_CODE_VALUES {
        errs.push(Cause::invalid(
            &vp,
            &Value::Array(values.to_vec()),
            format!("at least one value is required, and no more than {MAX_EXIT_CODE_VALUES}"),
        ));
    }
    let mut seen = std::collections::HashSet::new();
    let mut prev: Option<i64> = None;
    for (i, v) in values.iter().enumerate() {
        let Some(n) = as_int(v) else { continue };
        if !seen.insert(n) {
            errs.push(Cause::duplicate(index(&vp, i), v));
        }
        if op == "In" && n == 0 {
            errs.push(Cause::invalid(index(&vp, i), v, "must not be 0 for the In operator"));
        }
        if prev.is_some_and(|p| p > n) {
            errs.push(Cause::invalid(index(&vp, i), v, "must be ordered"));
        }
        prev = Some(n);
    }
    errs
}

pub(crate) fn validate_job_update(new: &Value, old: &Value) -> Vec<Cause> {
    let mut errs = validate_job(new);
    let (ns, os) = (sub(new, "spec"), sub(old, "spec"));
    let immutable = |errs: &mut Vec<Cause>, f: &str| {
        if !semantic_eq(get(ns, f), get(os, f)) {
            errs.push(Cause::invalid(format!("spec.{f}"), sub(ns, f), IMMUTABLE));
        }
    };
    for f in ["selector", "completionMode", "podFailurePolicy", "backoffLimitPerIndex", "managedBy", "successPolicy"] {
        immutable(&mut errs, f);
    }
    // An Indexed Job may change its completions together with its parallelism (elastic).
    let elastic = get_str(ns, "completionMode") == "Indexed"
        && get_int(ns, "completions") == get_int(ns, "parallelism")
        && get_int(os, "completions") == get_int(os, "parallelism");
    if !elastic {
        immutable(&mut errs, "completions");
    }
    // The template may change only while a job is suspended and has not started.
    let suspended_unstarted = get_bool(os, "suspend") && get(sub(old, "status"), "startTime").is_none();
    if !suspended_unstarted {
        immutable(&mut errs, "template");
    }
    errs
}

pub(crate) fn validate_job_status(new: &Value) -> Vec<Cause> {
    let mut errs = Vec::new();
    let status = sub(new, "status");
    for f in ["active", "succeeded", "failed", "ready", "terminating"] {
        nonnegative_field(&mut errs, status, f, &format!("status.{f}"));
    }
    errs.extend(pod::validate_conditions(
        get_arr(status, "conditions"),
        "status.conditions",
        &["Suspended", "Complete", "Failed", "FailureTarget", "SuccessCriteriaMet"],
    ));
    errs
}

/// Upstream's limit: a CronJob's Jobs are named `<name>-<minutes since the epoch>` (11 more
/// characters) and must stay DNS-1035 labels.
const CRONJOB_NAME_MAX: usize = 52;

pub(crate) fn validate_cron_job(cj: &Value) -> Vec<Cause> {
    let mut errs = meta::validate_object_meta(cj, Scope::Namespaced, NameRule::Subdomain);
    let name = get_str(sub(cj, "metadata"), "name");
    if name.len() > CRONJOB_NAME_MAX {
        errs.push(Cause::invalid("metadata.name", &str_value(name), "must be no more than 52 characters"));
    }
    let spec = sub(cj, "spec");
    let schedule = get_str(spec, "schedule");
    let tz = get(spec, "timeZone").and_then(Value::as_str);
    // An empty schedule is only "required"; its time zone is still checked.
    let parsed = if schedule.is_empty() {
        errs.push(Cause::required("spec.schedule"));
        crate::cron::Schedule::parse("* * * * *", tz)
    } else {
        crate::cron::Schedule::parse(schedule, tz)
    };
    if let Err(e) = parsed {
        let value = if e.field() == "spec.timeZone" { str_value(tz.unwrap_or("")) } else { str_value(schedule) };
        errs.push(Cause::invalid(e.field(), &value, e.to_string()));
    }
    match get_str(spec, "concurrencyPolicy") {
        "Allow" | "Forbid" | "Replace" => {}
        "" => errs.push(required_detail("spec.concurrencyPolicy", "")),
        other => errs.push(Cause::not_supported(
            "spec.concurrencyPolicy",
            &str_value(other),
            &["Allow", "Forbid", "Replace"],
        )),
    }
    for f in ["startingDeadlineSeconds", "successfulJobsHistoryLimit", "failedJobsHistoryLimit"] {
        nonnegative_field(&mut errs, spec, f, &child("spec", f));
    }
    let template = sub(spec, "jobTemplate");
    errs.extend(meta::validate_labels(get(sub(template, "metadata"), "labels"), "spec.jobTemplate.metadata.labels"));
    errs.extend(meta::validate_annotations(
        get(sub(template, "metadata"), "annotations"),
        "spec.jobTemplate.metadata.annotations",
    ));
    let jspec = sub(template, "spec");
    if get_bool(jspec, "manualSelector") {
        errs.push(Cause::invalid(
            "spec.jobTemplate.spec.manualSelector",
            &Value::Bool(true),
            "`manualSelector` is not supported in a CronJob's jobTemplate",
        ));
    }
    errs.extend(validate_job_spec(jspec, "spec.jobTemplate.spec", false));
    errs
}

pub(crate) fn validate_cron_job_status(new: &Value) -> Vec<Cause> {
    let mut errs = Vec::new();
    for (i, r) in get_arr(sub(new, "status"), "active").iter().enumerate() {
        if get_str(r, "name").is_empty() {
            errs.push(Cause::required(format!("status.active[{i}].name")));
        }
    }
    errs
}
