//! Pod status writes: upstream `ValidatePodStatusUpdate`.

use std::collections::{BTreeSet, HashSet};

use serde_json::Value;

use super::update::pod_annotation_updates;
use super::{dns_subdomain, one_of, qualified};
use crate::status::Cause;
use crate::validation::names;
use crate::validation::util::*;

/// `ValidatePodStatusUpdate`, plus sanity of phase and condition values.
pub(crate) fn validate_pod_status_update(new: &Value, old: &Value) -> Vec<Cause> {
    let mut errs = pod_annotation_updates(new, old);
    let status = sub(new, "status");
    let old_status = sub(old, "status");
    if let Some(phase) = get(status, "phase") {
        let allowed = ["Pending", "Running", "Succeeded", "Failed", "Unknown"];
        if !phase.as_str().is_some_and(|p| allowed.contains(&p)) {
            errs.push(Cause::not_supported("status.phase", phase, &allowed));
        }
    }
    errs.extend(validate_conditions(
        get_arr(status, "conditions"),
        "status.conditions",
        &["PodScheduled", "Ready", "Initialized", "ContainersReady", "PodReadyToStartContainers", "DisruptionTarget"],
    ));
    // Binding (which the server routes through here) may assign an unscheduled pod; a pod
    // already on a node never moves.
    let old_node = get_str(sub(old, "spec"), "nodeName");
    if !old_node.is_empty() && get_str(sub(new, "spec"), "nodeName") != old_node {
        errs.push(Cause::forbidden("status.nodeName", "may not be changed directly"));
    }
    let nominated = get_str(status, "nominatedNodeName");
    if !nominated.is_empty() && nominated != get_str(old_status, "nominatedNodeName") {
        dns_subdomain(&mut errs, nominated, "status.nominatedNodeName");
    }
    let old_qos = get_str(old_status, "qosClass");
    if !old_qos.is_empty() && get_str(status, "qosClass") != old_qos {
        errs.push(Cause::invalid("status.qosClass", &str_value(get_str(status, "qosClass")), IMMUTABLE));
    }
    let restart = get_str(sub(old, "spec"), "restartPolicy");
    let restartable_init: HashSet<&str> = get_arr(sub(old, "spec"), "initContainers")
        .iter()
        .filter(|c| get_str(c, "restartPolicy") == "Always")
        .map(|c| get_str(c, "name"))
        .collect();
    for (field, policy) in [
        ("containerStatuses", restart),
        ("initContainerStatuses", restart),
        // The kubelet never restarts ephemeral containers.
        ("ephemeralContainerStatuses", "Never"),
    ] {
        let skip = |name: &str| field == "initContainerStatuses" && restartable_init.contains(name);
        errs.extend(state_transitions(
            get_arr(status, field),
            get_arr(old_status, field),
            policy,
            &format!("status.{field}"),
            skip,
        ));
    }
    errs.extend(ip_list(get_arr(status, "podIPs"), "status.podIPs"));
    let host_ips = get_arr(status, "hostIPs");
    if let Some(first) = host_ips.first() {
        if get_str(first, "ip") != get_str(status, "hostIP") {
            errs.push(Cause::invalid("status.hostIPs[0].ip", sub(first, "ip"), "must be equal to `hostIP`"));
        }
        errs.extend(ip_list(host_ips, "status.hostIPs"));
    }
    errs
}

/// Condition types are qualified names (known ones excepted) and statuses True/False/Unknown.
pub(crate) fn validate_conditions(conditions: &[Value], p: &str, system: &[&str]) -> Vec<Cause> {
    let mut errs = Vec::new();
    for (i, c) in conditions.iter().enumerate() {
        let cp = index(p, i);
        let t = get_str(c, "type");
        if t.is_empty() {
            errs.push(Cause::required(child(&cp, "type")));
        } else if !system.contains(&t) {
            qualified(&mut errs, t, &child(&cp, "type"));
        }
        one_of(&mut errs, get_str(c, "status"), &child(&cp, "status"), &["True", "False", "Unknown"]);
    }
    errs
}

fn state_transitions(
    new: &[Value],
    old: &[Value],
    restart_policy: &str,
    p: &str,
    skip: impl Fn(&str) -> bool,
) -> Vec<Cause> {
    let mut errs = Vec::new();
    if restart_policy == "Always" {
        return errs;
    }
    for (i, o) in old.iter().enumerate() {
        let Some(term) = get(sub(o, "state"), "terminated") else {
            continue;
        };
        let name = get_str(o, "name");
        if (get_int(term, "exitCode").unwrap_or(0) != 0 && restart_policy == "OnFailure") || skip(name) {
            continue;
        }
        let revived = new.iter().any(|n| get_str(n, "name") == name && get(sub(n, "state"), "terminated").is_none());
        if revived {
            errs.push(Cause::forbidden(format!("{p}[{i}].state"), "may not be transitioned to non-terminated state"));
        }
    }
    errs
}

/// Pod and host IP lists: valid, at most one per family, no repeats.
fn ip_list(list: &[Value], p: &str) -> Vec<Cause> {
    let mut errs = Vec::new();
    let mut families = Vec::new();
    let mut all_valid = true;
    for (i, entry) in list.iter().enumerate() {
        let ip = get_str(entry, "ip");
        match names::parse_ip(ip) {
            Some(v6) => families.push(v6),
            None => {
                all_valid = false;
                errs.push(Cause::invalid(index(p, i), &str_value(ip), names::INVALID_IP));
            }
        }
    }
    if list.len() > 1 {
        let dual = all_valid && families.len() == 2 && families[0] != families[1];
        if !dual {
            errs.push(Cause::invalid(
                p,
                &Value::Array(list.to_vec()),
                "may specify no more than one IP for each IP family",
            ));
        }
        let mut seen = BTreeSet::new();
        for (i, entry) in list.iter().enumerate() {
            if !seen.insert(get_str(entry, "ip")) {
                errs.push(Cause::duplicate(index(p, i), entry));
            }
        }
    }
    errs
}
