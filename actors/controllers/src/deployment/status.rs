//! What a Deployment's status says: replica counts summed over its ReplicaSets, the
//! Available and Progressing conditions `kubectl rollout status` reads, with upstream's
//! reasons, messages and progress deadline, and its ReplicaSets' ReplicaFailure.

use super::{available, current, ready, surge_and_unavailable, want};
use crate::replicaset::REPLICA_FAILURE;
use k8s_openapi::api::apps::v1::{Deployment, DeploymentCondition, DeploymentStatus, ReplicaSet};
use kubus_apimachinery::conditions;
use kubus_apimachinery::time::{system_time, time};
use kubus_apimachinery::ObjectExt;
use serde_json::{json, Value};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

/// The status a sync computed, and when to look again.
pub struct Desired {
    pub status: DeploymentStatus,
    /// Set while the rollout is incomplete, to re-check the progress deadline.
    pub requeue: Option<Duration>,
}

/// The status of `d` given its new and old ReplicaSets; `reason` is what the sync did
/// (`NewReplicaSetCreated`, `ReplicaSetUpdated`, `FoundNewReplicaSet`, `DeploymentPaused`).
pub fn desired(
    d: &Deployment,
    new_rs: Option<&ReplicaSet>,
    old: &[Arc<ReplicaSet>],
    reason: &str,
    now: SystemTime,
) -> Desired {
    let all: Vec<&ReplicaSet> = new_rs.into_iter().chain(old.iter().map(|o| o.as_ref())).collect();
    let sum = |f: fn(&ReplicaSet) -> i64| all.iter().map(|r| f(r)).sum::<i64>();
    let want = want(d);
    let (_, max_unavailable) = surge_and_unavailable(d);
    let updated = new_rs.map(current).unwrap_or(0);
    let available_now = sum(available);
    let total = sum(current);
    let complete = updated == want
        && total == want
        && available_now == want
        && new_rs.is_some_and(|r| r.status.as_ref().and_then(|s| s.observed_generation) >= r.metadata.generation);
    let stamp = time(now);
    let prev = |t: &str| conditions::find(conditions::of_deployment(d), t);
    let condition = |t: &str, status: &str, reason: &str, message: String| {
        let mut c = DeploymentCondition {
            type_: t.to_string(),
            status: status.to_string(),
            reason: Some(reason.to_string()),
            message: Some(message),
            last_update_time: Some(stamp.clone()),
            last_transition_time: Some(stamp.clone()),
        };
        if let Some(p) = prev(t) {
            if p.status == status {
                c.last_transition_time = p.last_transition_time.clone();
                if p.reason.as_deref() == Some(reason) {
                    c.last_update_time = p.last_update_time.clone();
                }
            }
        }
        c
    };
    let available_cond = if available_now >= want - max_unavailable {
        condition("Available", "True", "MinimumReplicasAvailable", "Deployment has minimum availability.".into())
    } else {
        condition(
            "Available",
            "False",
            "MinimumReplicasUnavailable",
            "Deployment does not have minimum availability.".into(),
        )
    };
    let rs_name = new_rs.map(|r| r.name().to_string()).unwrap_or_default();
    let deadline = d.spec.as_ref().and_then(|s| s.progress_deadline_seconds).unwrap_or(600) as i64;
    let progressing = if reason == "DeploymentPaused" {
        condition("Progressing", "Unknown", "DeploymentPaused", "Deployment is paused".into())
    } else if complete {
        condition(
            "Progressing",
            "True",
            "NewReplicaSetAvailable",
            format!("ReplicaSet \"{rs_name}\" has successfully progressed."),
        )
    } else {
        let prev_p = prev("Progressing");
        let last_progress = prev_p.and_then(|p| p.last_update_time.as_ref()).map(system_time);
        let stuck = reason == "FoundNewReplicaSet"
            && last_progress.is_some_and(|t| t + Duration::from_secs(deadline.max(0) as u64) < now);
        if stuck || prev_p.is_some_and(|p| p.reason.as_deref() == Some("ProgressDeadlineExceeded")) {
            condition(
                "Progressing",
                "False",
                "ProgressDeadlineExceeded",
                format!("ReplicaSet \"{rs_name}\" has timed out progressing."),
            )
        } else {
            let msg = match reason {
                "NewReplicaSetCreated" => format!("Created new replica set \"{rs_name}\""),
                "ReplicaSetUpdated" => format!("ReplicaSet \"{rs_name}\" is progressing."),
                _ => format!("Found new replica set \"{rs_name}\""),
            };
            let r = if reason == "FoundNewReplicaSet" {
                prev_p.and_then(|p| p.reason.as_deref()).unwrap_or(reason)
            } else {
                reason
            };
            condition("Progressing", "True", r, msg)
        }
    };
    let mut conditions = vec![available_cond, progressing];
    // A paused Deployment's status is only recounted (upstream's syncDeploymentStatus): the
    // failure it reported stays. Otherwise it mirrors its ReplicaSets' (syncRolloutStatus).
    let failure = match reason {
        "DeploymentPaused" => prev(REPLICA_FAILURE).cloned(),
        _ => replica_failure(new_rs, &all).map(|c| match prev(REPLICA_FAILURE) {
            // Upstream's SetDeploymentCondition: the same status and reason is no change.
            Some(p) if p.status == c.status && p.reason == c.reason => p.clone(),
            Some(p) if p.status == c.status => {
                DeploymentCondition { last_transition_time: p.last_transition_time.clone(), ..c }
            }
            _ => c,
        }),
    };
    conditions.extend(failure);
    let status = DeploymentStatus {
        observed_generation: d.metadata.generation,
        replicas: Some(total as i32),
        updated_replicas: Some(updated as i32),
        ready_replicas: Some(sum(ready) as i32),
        available_replicas: Some(available_now as i32),
        unavailable_replicas: Some((want - available_now).max(0) as i32),
        conditions: Some(conditions),
        collision_count: None,
    };
    let requeue =
        (!complete && reason != "DeploymentPaused").then(|| Duration::from_secs((deadline.max(1) as u64).min(30)));
    Desired { status, requeue }
}

/// Upstream's getReplicaFailures: the new ReplicaSet's ReplicaFailure condition, else the
/// first other one's, as a Deployment condition (updated when it last changed).
fn replica_failure(new_rs: Option<&ReplicaSet>, all: &[&ReplicaSet]) -> Option<DeploymentCondition> {
    let failure = |rs: &ReplicaSet| conditions::find(rs.status.as_ref()?.conditions.as_ref(), REPLICA_FAILURE).cloned();
    let c = new_rs.and_then(failure).or_else(|| all.iter().find_map(|rs| failure(rs)))?;
    Some(DeploymentCondition {
        type_: c.type_,
        status: c.status,
        reason: c.reason,
        message: c.message,
        last_update_time: c.last_transition_time.clone(),
        last_transition_time: c.last_transition_time,
    })
}

/// Whether the current status says something else than `desired`: counts (absent reads as
/// 0), the observed generation, and the conditions apart from their lastUpdateTime (which
/// alone is no reason to write).
pub fn differs(current: Option<&DeploymentStatus>, desired: &DeploymentStatus) -> bool {
    let n = |v: Option<i32>| v.unwrap_or(0);
    let counts = |s: &DeploymentStatus| {
        (
            s.observed_generation.unwrap_or(0),
            n(s.replicas),
            n(s.updated_replicas),
            n(s.ready_replicas),
            n(s.available_replicas),
            n(s.unavailable_replicas),
        )
    };
    let conditions = |s: &DeploymentStatus| -> Vec<DeploymentCondition> {
        let mut cs = s.conditions.clone().unwrap_or_default();
        cs.iter_mut().for_each(|c| c.last_update_time = None);
        cs
    };
    let empty = DeploymentStatus::default();
    let current = current.unwrap_or(&empty);
    counts(current) != counts(desired) || conditions(current) != conditions(desired)
}

/// The status merge patch: every field of `status` (zeros too), and the collision count the
/// Deployment already has.
pub fn patch(d: &Deployment, status: &DeploymentStatus) -> Value {
    let mut s = json!({
        "observedGeneration": status.observed_generation,
        "replicas": status.replicas,
        "updatedReplicas": status.updated_replicas,
        "readyReplicas": status.ready_replicas,
        "availableReplicas": status.available_replicas,
        "unavailableReplicas": status.unavailable_replicas,
        "conditions": status.conditions,
    });
    if let (Some(c), Some(m)) = (d.status.as_ref().and_then(|s| s.collision_count), s.as_object_mut()) {
        m.insert("collisionCount".into(), json!(c));
    }
    json!({ "status": s })
}
