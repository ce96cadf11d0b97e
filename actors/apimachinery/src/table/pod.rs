//! The pod row: READY, STATUS and RESTARTS summarise every container, the
//! way upstream's pod printer does.

use std::collections::HashSet;
use std::time::SystemTime;

use serde_json::{json, Value};

use super::clock::{since, time_at};
use super::{age, int, list, name, present, text};

/// Pod status reason the node lifecycle controller sets on pods of a node
/// that stopped reporting.
const NODE_LOST: &str = "NodeLost";

pub(super) fn cells(pod: &Value, now: SystemTime) -> Vec<Value> {
    let summary = Summary::of(pod, now);
    let status = &pod["status"];

    let mut ip = list(status, &["podIPs"]).first().map_or("", |p| text(p, &["ip"]));
    if ip.is_empty() {
        // Objects written before podIPs existed only carry podIP.
        ip = text(status, &["podIP"]);
    }

    vec![
        name(pod),
        json!(format!("{}/{}", summary.ready, summary.total)),
        json!(summary.reason),
        json!(summary.restarts),
        age(pod, now),
        json!(or_none(ip)),
        json!(or_none(text(pod, &["spec", "nodeName"]))),
        json!(or_none(text(status, &["nominatedNodeName"]))),
        json!(readiness_gates(pod)),
    ]
}

fn or_none(s: &str) -> &str {
    if s.is_empty() {
        "<none>"
    } else {
        s
    }
}

/// `true/total` over the readiness gates, `<none>` without gates.
fn readiness_gates(pod: &Value) -> String {
    let gates = list(pod, &["spec", "readinessGates"]);
    if gates.is_empty() {
        return "<none>".to_string();
    }
    let conditions = list(pod, &["status", "conditions"]);
    let satisfied = gates
        .iter()
        .filter(|gate| {
            let wanted = text(gate, &["conditionType"]);
            // Only the first condition of a type counts, as upstream.
            conditions.iter().find(|c| text(c, &["type"]) == wanted).is_some_and(|c| text(c, &["status"]) == "True")
        })
        .count();
    format!("{satisfied}/{}", gates.len())
}

struct Summary {
    ready: usize,
    total: usize,
    reason: String,
    restarts: String,
}

impl Summary {
    fn of(pod: &Value, now: SystemTime) -> Summary {
        let spec = &pod["spec"];
        let status = &pod["status"];
        let init_specs = list(spec, &["initContainers"]);

        // Sidecars (init containers that keep running) count as containers.
        let sidecars: HashSet<&str> =
            init_specs.iter().filter(|c| text(c, &["restartPolicy"]) == "Always").map(|c| text(c, &["name"])).collect();
        let sidecar_specs = init_specs.iter().filter(|c| text(c, &["restartPolicy"]) == "Always").count();
        let total = list(spec, &["containers"]).len() + sidecar_specs;

        let phase = text(status, &["phase"]);
        let mut reason = match text(status, &["reason"]) {
            "" => phase.to_string(),
            r => r.to_string(),
        };
        let gated = list(status, &["conditions"])
            .iter()
            .any(|c| text(c, &["type"]) == "PodScheduled" && text(c, &["reason"]) == "SchedulingGated");
        if gated {
            reason = "SchedulingGated".to_string();
        }

        let mut ready = 0;
        let mut restarts = 0;
        let mut last_restart = None;
        let mut sidecar_restarts = 0;
        let mut last_sidecar_restart = None;
        let mut initializing = false;

        for (i, c) in list(status, &["initContainerStatuses"]).iter().enumerate() {
            let count = int(c, &["restartCount"]);
            let finished = last_finished(c);
            restarts += count;
            keep_latest(&mut last_restart, finished);
            let is_sidecar = sidecars.contains(text(c, &["name"]));
            if is_sidecar {
                sidecar_restarts += count;
                keep_latest(&mut last_sidecar_restart, finished);
            }

            let terminated = &c["state"]["terminated"];
            let waiting_reason = text(c, &["state", "waiting", "reason"]);
            if terminated.is_object() && int(terminated, &["exitCode"]) == 0 {
                continue;
            }
            if is_sidecar && c["started"].as_bool() == Some(true) {
                if c["ready"].as_bool() == Some(true) {
                    ready += 1;
                }
                continue;
            }
            reason = if terminated.is_object() {
                format!("Init:{}", terminated_reason(terminated))
            } else if !waiting_reason.is_empty() && waiting_reason != "PodInitializing" {
                format!("Init:{waiting_reason}")
            } else {
                format!("Init:{i}/{}", init_specs.len())
            };
            initializing = true;
            break;
        }

        if !initializing || initialized(status) {
            // Only sidecar restarts carry over once the pod is initialised.
            restarts = sidecar_restarts;
            last_restart = last_sidecar_restart;
            let mut has_running = false;
            // Walked backwards so the first container's state wins.
            for c in list(status, &["containerStatuses"]).iter().rev() {
                restarts += int(c, &["restartCount"]);
                keep_latest(&mut last_restart, last_finished(c));
                let waiting_reason = text(c, &["state", "waiting", "reason"]);
                let terminated = &c["state"]["terminated"];
                if !waiting_reason.is_empty() {
                    reason = waiting_reason.to_string();
                } else if terminated.is_object() {
                    reason = terminated_reason(terminated);
                } else if c["ready"].as_bool() == Some(true) && present(c, &["state", "running"]) {
                    has_running = true;
                    ready += 1;
                }
            }
            // A finished container next to running ones does not make the
            // pod Completed.
            if reason == "Completed" && has_running {
                reason = if condition_true(status, "Ready") { "Running".to_string() } else { "NotReady".to_string() };
            }
        }

        let deleting = pod["metadata"]["deletionTimestamp"].is_string();
        if deleting && text(status, &["reason"]) == NODE_LOST {
            reason = "Unknown".to_string();
        } else if deleting && !matches!(phase, "Succeeded" | "Failed") {
            reason = "Terminating".to_string();
        }

        let restarts = match last_restart {
            Some(t) if restarts != 0 => format!("{restarts} ({} ago)", since(now, Some(t))),
            _ => restarts.to_string(),
        };

        Summary { ready, total, reason, restarts }
    }
}

/// The terminated reason, or `Signal:N` / `ExitCode:N` when the runtime gave
/// none.
fn terminated_reason(terminated: &Value) -> String {
    match text(terminated, &["reason"]) {
        "" => match int(terminated, &["signal"]) {
            0 => format!("ExitCode:{}", int(terminated, &["exitCode"])),
            signal => format!("Signal:{signal}"),
        },
        r => r.to_string(),
    }
}

fn last_finished(container_status: &Value) -> Option<SystemTime> {
    time_at(&container_status["lastState"]["terminated"], "finishedAt")
}

fn keep_latest(latest: &mut Option<SystemTime>, candidate: Option<SystemTime>) {
    if let Some(t) = candidate {
        if latest.is_none_or(|l| l < t) {
            *latest = Some(t);
        }
    }
}

/// Whether any pod condition of this type is True.
fn condition_true(status: &Value, kind: &str) -> bool {
    list(status, &["conditions"]).iter().any(|c| text(c, &["type"]) == kind && text(c, &["status"]) == "True")
}

/// Whether the first Initialized condition is True.
fn initialized(status: &Value) -> bool {
    list(status, &["conditions"])
        .iter()
        .find(|c| text(c, &["type"]) == "Initialized")
        .is_some_and(|c| text(c, &["status"]) == "True")
}
