//! Jobs and CronJobs (upstream `pkg/registry/batch/job` and `cronjob`): the status starts empty and belongs to the
//! controller, metadata.generation counts spec changes, and unless `manualSelector` is set
//! the server makes the selector: the job's uid as `batch.kubernetes.io/controller-uid`,
//! with that and the job's name added to the pod template's labels.

use super::Strategy;
use kubus_apimachinery::validation::batch::{
    CONTROLLER_UID_LABEL, JOB_NAME_LABEL, LEGACY_CONTROLLER_UID_LABEL, LEGACY_JOB_NAME_LABEL,
};
use kubus_apimachinery::ResourceInfo;
use serde_json::{json, Map, Value};

/// CronJobs: the status starts empty and belongs to the controller; generation counts spec
/// changes.
pub struct CronJobStrategy {
    pub info: &'static ResourceInfo,
}

impl Strategy for CronJobStrategy {
    fn info(&self) -> &'static ResourceInfo {
        self.info
    }

    fn tracks_generation(&self) -> bool {
        true
    }

    fn prepare_for_create(&self, obj: &mut Value) {
        obj["status"] = json!({});
    }
}

pub struct JobStrategy {
    pub info: &'static ResourceInfo,
}

impl Strategy for JobStrategy {
    fn info(&self) -> &'static ResourceInfo {
        self.info
    }

    fn tracks_generation(&self) -> bool {
        true
    }

    fn prepare_for_create(&self, obj: &mut Value) {
        obj["status"] = json!({});
        if obj["spec"]["manualSelector"].as_bool() != Some(true) {
            generate_selector(obj);
        }
    }
}

/// Upstream's generateSelector: labels the user set are kept (a conflict then fails
/// validation); the selector gains the controller-uid label.
fn generate_selector(job: &mut Value) {
    let name = job["metadata"]["name"].as_str().unwrap_or_default().to_string();
    let uid = job["metadata"]["uid"].as_str().unwrap_or_default().to_string();
    if !job["spec"]["template"]["metadata"].is_object() {
        job["spec"]["template"]["metadata"] = json!({});
    }
    let meta = &mut job["spec"]["template"]["metadata"];
    if !meta["labels"].is_object() {
        meta["labels"] = json!({});
    }
    if let Some(labels) = meta["labels"].as_object_mut() {
        for k in [LEGACY_JOB_NAME_LABEL, JOB_NAME_LABEL] {
            labels.entry(k).or_insert_with(|| json!(name));
        }
        for k in [LEGACY_CONTROLLER_UID_LABEL, CONTROLLER_UID_LABEL] {
            labels.entry(k).or_insert_with(|| json!(uid));
        }
    }
    let spec = &mut job["spec"];
    if !spec["selector"].is_object() {
        spec["selector"] = json!({});
    }
    if !spec["selector"]["matchLabels"].is_object() {
        spec["selector"]["matchLabels"] = Value::Object(Map::new());
    }
    if let Some(m) = spec["selector"]["matchLabels"].as_object_mut() {
        m.entry(CONTROLLER_UID_LABEL).or_insert_with(|| json!(uid));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_server_makes_the_selector_unless_it_is_manual() {
        let mut job = json!({"metadata": {"name": "pi", "uid": "u1"},
            "spec": {"template": {"metadata": {"labels": {"app": "pi"}}, "spec": {}}}});
        generate_selector(&mut job);
        assert_eq!(job["spec"]["selector"], json!({"matchLabels": {"batch.kubernetes.io/controller-uid": "u1"}}));
        assert_eq!(
            job["spec"]["template"]["metadata"]["labels"],
            json!({"app": "pi", "job-name": "pi", "batch.kubernetes.io/job-name": "pi",
                "controller-uid": "u1", "batch.kubernetes.io/controller-uid": "u1"})
        );
    }
}
