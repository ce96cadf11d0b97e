//! Rows for the `batch` group: Jobs and CronJobs.

use std::time::SystemTime;

use serde_json::{json, Value};

use super::clock::{human_nanos, since, time_at};
use super::selector::format_label_selector;
use super::{age, int, list, name, text};

fn has_condition(job: &Value, kind: &str) -> bool {
    list(job, &["status", "conditions"]).iter().any(|c| c["type"] == kind && c["status"] == "True")
}

/// Upstream's job status column: the first that holds of Complete, Failed, Terminating,
/// Suspended, FailureTarget, SuccessCriteriaMet, else Running.
fn job_status(job: &Value) -> &'static str {
    if has_condition(job, "Complete") {
        "Complete"
    } else if has_condition(job, "Failed") {
        "Failed"
    } else if !job["metadata"]["deletionTimestamp"].is_null() {
        "Terminating"
    } else if has_condition(job, "Suspended") {
        "Suspended"
    } else if has_condition(job, "FailureTarget") {
        "FailureTarget"
    } else if has_condition(job, "SuccessCriteriaMet") {
        "SuccessCriteriaMet"
    } else {
        "Running"
    }
}

fn completions(job: &Value) -> String {
    let succeeded = int(&job["status"], &["succeeded"]);
    match job["spec"]["completions"].as_i64() {
        Some(c) => format!("{succeeded}/{c}"),
        None => match job["spec"]["parallelism"].as_i64().unwrap_or(0) {
            p if p > 1 => format!("{succeeded}/1 of {p}"),
            _ => format!("{succeeded}/1"),
        },
    }
}

fn duration(job: &Value, now: SystemTime) -> String {
    let Some(start) = time_at(&job["status"], "startTime") else { return String::new() };
    let end = time_at(&job["status"], "completionTime").unwrap_or(now);
    let nanos = match end.duration_since(start) {
        Ok(d) => d.as_nanos() as i128,
        Err(e) => -(e.duration().as_nanos() as i128),
    };
    human_nanos(nanos)
}

pub(super) fn job(job: &Value, now: SystemTime) -> Vec<Value> {
    let containers = list(job, &["spec", "template", "spec", "containers"]);
    let join = |key: &str| containers.iter().map(|c| text(c, &[key])).collect::<Vec<_>>().join(",");
    vec![
        name(job),
        json!(job_status(job)),
        json!(completions(job)),
        json!(duration(job, now)),
        age(job, now),
        json!(join("name")),
        json!(join("image")),
        json!(format_label_selector(&job["spec"]["selector"])),
    ]
}

pub(super) fn cron_job(cj: &Value, now: SystemTime) -> Vec<Value> {
    let spec = &cj["spec"];
    let containers = list(cj, &["spec", "jobTemplate", "spec", "template", "spec", "containers"]);
    let join = |key: &str| containers.iter().map(|c| text(c, &[key])).collect::<Vec<_>>().join(",");
    let last = match time_at(&cj["status"], "lastScheduleTime") {
        Some(t) => since(now, Some(t)),
        None => "<none>".to_string(),
    };
    vec![
        name(cj),
        json!(text(spec, &["schedule"])),
        json!(spec["timeZone"].as_str().unwrap_or("<none>")),
        json!(if spec["suspend"].as_bool().unwrap_or(false) { "True" } else { "False" }),
        json!(list(cj, &["status", "active"]).len()),
        json!(last),
        age(cj, now),
        json!(join("name")),
        json!(join("image")),
        json!(format_label_selector(&spec["jobTemplate"]["spec"]["selector"])),
    ]
}
