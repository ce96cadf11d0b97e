//! Rows for the replicated workloads (`apps` and the core ReplicationController).

use std::time::SystemTime;

use serde_json::{json, Value};

use super::selector::{format_label_selector, selector_string};
use super::{age, int, list, name, text};

/// spec.replicas, which is defaulted to 1 when the object is stored.
fn desired_replicas(obj: &Value) -> i64 {
    obj["spec"]["replicas"].as_i64().unwrap_or(1)
}

/// Container names and images of the pod template, each comma separated.
fn containers(obj: &Value) -> (String, String) {
    let containers = list(obj, &["spec", "template", "spec", "containers"]);
    let join = |key: &str| containers.iter().map(|c| text(c, &[key])).collect::<Vec<_>>().join(",");
    (join("name"), join("image"))
}

pub(super) fn deployment(d: &Value, now: SystemTime) -> Vec<Value> {
    let status = &d["status"];
    let (names, images) = containers(d);
    // Upstream prints the raw selector here: empty, not `<none>`, when it
    // selects everything.
    let selector = selector_string(&d["spec"]["selector"]).unwrap_or_else(|()| "<invalid>".into());
    vec![
        name(d),
        json!(format!("{}/{}", int(status, &["readyReplicas"]), desired_replicas(d))),
        json!(int(status, &["updatedReplicas"])),
        json!(int(status, &["availableReplicas"])),
        age(d, now),
        json!(names),
        json!(images),
        json!(selector),
    ]
}

pub(super) fn replica_set(rs: &Value, now: SystemTime) -> Vec<Value> {
    let status = &rs["status"];
    let (names, images) = containers(rs);
    vec![
        name(rs),
        json!(desired_replicas(rs)),
        json!(int(status, &["replicas"])),
        json!(int(status, &["readyReplicas"])),
        age(rs, now),
        json!(names),
        json!(images),
        json!(format_label_selector(&rs["spec"]["selector"])),
    ]
}

/// Same columns as a ReplicaSet; the selector is a plain label map.
pub(super) fn replication_controller(rc: &Value, now: SystemTime) -> Vec<Value> {
    let status = &rc["status"];
    let (names, images) = containers(rc);
    let selector = rc["spec"]["selector"]
        .as_object()
        .map(|m| m.iter().map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or_default())).collect::<Vec<_>>().join(","))
        .unwrap_or_default();
    vec![
        name(rc),
        json!(desired_replicas(rc)),
        json!(int(status, &["replicas"])),
        json!(int(status, &["readyReplicas"])),
        age(rc, now),
        json!(names),
        json!(images),
        json!(if selector.is_empty() { "<none>".to_string() } else { selector }),
    ]
}

pub(super) fn daemon_set(ds: &Value, now: SystemTime) -> Vec<Value> {
    let status = &ds["status"];
    let (names, images) = containers(ds);
    let node_selector = &ds["spec"]["template"]["spec"]["nodeSelector"];
    let node_selector = match node_selector.as_object() {
        Some(m) if !m.is_empty() => {
            m.iter().map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or_default())).collect::<Vec<_>>().join(",")
        }
        _ => "<none>".to_string(),
    };
    vec![
        name(ds),
        json!(int(status, &["desiredNumberScheduled"])),
        json!(int(status, &["currentNumberScheduled"])),
        json!(int(status, &["numberReady"])),
        json!(int(status, &["updatedNumberScheduled"])),
        json!(int(status, &["numberAvailable"])),
        json!(node_selector),
        age(ds, now),
        json!(names),
        json!(images),
        json!(format_label_selector(&ds["spec"]["selector"])),
    ]
}

/// `daemonset.apps/web`: the revision's controller, as upstream prints it.
pub(super) fn controller_revision(cr: &Value, now: SystemTime) -> Vec<Value> {
    let owner = list(cr, &["metadata", "ownerReferences"]).iter().find(|r| r["controller"] == true);
    let controller = match owner {
        Some(r) => {
            let kind = text(r, &["kind"]).to_lowercase();
            let group = text(r, &["apiVersion"]).rsplit_once('/').map(|(g, _)| g.to_string()).unwrap_or_default();
            let kind = if group.is_empty() { kind } else { format!("{kind}.{group}") };
            format!("{kind}/{}", text(r, &["name"]))
        }
        None => "<none>".to_string(),
    };
    vec![name(cr), json!(controller), json!(cr["revision"].as_i64().unwrap_or(0)), age(cr, now)]
}

pub(super) fn stateful_set(sts: &Value, now: SystemTime) -> Vec<Value> {
    let (names, images) = containers(sts);
    vec![
        name(sts),
        json!(format!("{}/{}", int(&sts["status"], &["readyReplicas"]), desired_replicas(sts))),
        age(sts, now),
        json!(names),
        json!(images),
    ]
}
