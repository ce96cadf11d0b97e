//! The eviction subresource (`POST pods/{name}/eviction`, policy/v1 Eviction; what `kubectl
//! drain` uses), as upstream's `EvictionREST`: a pod is deleted only if the one
//! PodDisruptionBudget that selects it allows a disruption now; the budget's
//! `disruptionsAllowed` is decremented and the pod recorded in `disruptedPods` in the same
//! write (guarded by the budget's resourceVersion), so two evictions racing for the last
//! allowed disruption cannot both win. Otherwise 429 with the budget named, and the client
//! (kubectl drain) retries.

use crate::storage::{DeleteOptions, Storage, WriteOptions};
use kubus_apimachinery::selector::LabelSelector;
use kubus_apimachinery::status::CauseType;
use kubus_apimachinery::{resource, Cause, StatusError};
use serde_json::{json, Value};
use std::collections::BTreeMap;

const TOO_MANY: &str = "Cannot evict pod as it would violate the pod's disruption budget.";

fn labels_of(obj: &Value) -> BTreeMap<String, String> {
    obj["metadata"]["labels"]
        .as_object()
        .map(|m| m.iter().map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_string())).collect())
        .unwrap_or_default()
}

/// Pods that no budget protects: finished, being deleted, or never started (upstream's
/// `canIgnorePDB`).
fn ignores_budget(pod: &Value) -> bool {
    let phase = pod["status"]["phase"].as_str().unwrap_or("Pending");
    matches!(phase, "Succeeded" | "Failed" | "Pending") || pod["metadata"]["deletionTimestamp"].is_string()
}

fn is_ready(pod: &Value) -> bool {
    pod["status"]["conditions"].as_array().into_iter().flatten().any(|c| c["type"] == "Ready" && c["status"] == "True")
}

/// Upstream's 429, with no retry hint and the budget as its cause.
fn too_many(message: String) -> StatusError {
    StatusError::too_many_requests(TOO_MANY, 0).with_causes([Cause::new(CauseType::DisruptionBudget, "", message)])
}

/// Runs an eviction of `ns/name` whose body is `eviction`.
pub async fn evict(storage: &Storage, ns: &str, name: &str, eviction: &Value) -> Result<(), StatusError> {
    let pods = resource::find("", "v1", "pods").expect("pods are served");
    let budgets = resource::find("policy", "v1", "poddisruptionbudgets").expect("served");
    if let Some(n) = eviction["metadata"]["name"].as_str().filter(|n| !n.is_empty() && *n != name) {
        return Err(StatusError::bad_request(format!("name in URL does not match name in Eviction object: {n}")));
    }
    let opts = delete_options(&eviction["deleteOptions"]);
    let pod = storage.get(pods, Some(ns), name).await?;
    if ignores_budget(&pod) {
        storage.delete(pods, Some(ns), name, &opts).await?;
        return Ok(());
    }
    let labels = labels_of(&pod);
    let (all, _) =
        storage.cache.list(&(budgets.storage_group.to_string(), budgets.storage_resource.to_string()), Some(ns));
    // Budgets are few and read on every eviction: kept decoded.
    let all: Vec<std::sync::Arc<Value>> = all.iter().map(|b| b.shared()).collect();
    let matching: Vec<&Value> = all
        .iter()
        .map(|b| &**b)
        .filter(|b| {
            LabelSelector::from_json(&b["spec"]["selector"]).is_ok_and(|s| !s.is_empty() && s.matches_labels(&labels))
        })
        .collect();
    let budget = match matching.as_slice() {
        [] => {
            storage.delete(pods, Some(ns), name, &opts).await?;
            return Ok(());
        }
        [one] => one["metadata"]["name"].as_str().unwrap_or_default().to_string(),
        _ => {
            return Err(StatusError::internal(
                "This pod has more than one PodDisruptionBudget, which the eviction subresource does not support.",
            ))
        }
    };
    // An unready pod may go when the budget says so (AlwaysAllow, or IfHealthyBudget while the
    // budget has its healthy pods).
    let unready = !is_ready(&pod);
    let pod_name = name.to_string();
    let now = kubus_apimachinery::time::format_rfc3339(std::time::SystemTime::now());
    let write = WriteOptions::default();
    storage
        .update_with(budgets, Some(ns), &budget, Some(kubus_apimachinery::Subresource::Status), &write, |old| {
            let status = &old["status"];
            let generation = old["metadata"]["generation"].as_i64().unwrap_or(0);
            if status["observedGeneration"].as_i64().unwrap_or(0) < generation {
                return Err(too_many(format!(
                    "The disruption budget {budget} is still being processed by the server."
                )));
            }
            let allowed = status["disruptionsAllowed"].as_i64().unwrap_or(0);
            let healthy = status["currentHealthy"].as_i64().unwrap_or(0);
            let desired = status["desiredHealthy"].as_i64().unwrap_or(0);
            if unready {
                let policy = old["spec"]["unhealthyPodEvictionPolicy"].as_str().unwrap_or("IfHealthyBudget");
                if policy == "AlwaysAllow" || healthy >= desired {
                    // The unready pod is not counted as healthy: evicting it costs nothing.
                    return Ok((old.clone(), vec![]));
                }
            }
            if allowed <= 0 {
                return Err(too_many(format!(
                    "The disruption budget {budget} needs {desired} healthy pods and has {healthy} currently"
                )));
            }
            let mut new = old.clone();
            new["status"]["disruptionsAllowed"] = json!(allowed - 1);
            if !new["status"]["disruptedPods"].is_object() {
                new["status"]["disruptedPods"] = json!({});
            }
            new["status"]["disruptedPods"][&pod_name] = json!(now);
            Ok((new, vec![]))
        })
        .await?;
    storage.delete(pods, Some(ns), name, &opts).await?;
    Ok(())
}

fn delete_options(b: &Value) -> DeleteOptions {
    DeleteOptions {
        dry_run: b["dryRun"][0].as_str() == Some("All"),
        grace_period: b["gracePeriodSeconds"].as_i64(),
        propagation: b["propagationPolicy"].as_str().map(str::to_string),
        precondition_uid: b["preconditions"]["uid"].as_str().map(str::to_string),
        precondition_rv: b["preconditions"]["resourceVersion"].as_str().map(str::to_string),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finished_deleting_and_pending_pods_ignore_budgets() {
        assert!(ignores_budget(&json!({"status": {"phase": "Succeeded"}})));
        assert!(ignores_budget(&json!({"status": {"phase": "Pending"}})));
        assert!(ignores_budget(&json!({"metadata": {"deletionTimestamp": "x"}, "status": {"phase": "Running"}})));
        assert!(!ignores_budget(&json!({"status": {"phase": "Running"}})));
        let e = too_many("The disruption budget web needs 2 healthy pods and has 2 currently".into());
        let s = e.to_status();
        assert_eq!((s["code"].as_i64(), s["reason"].as_str()), (Some(429), Some("TooManyRequests")));
        assert_eq!(s["details"]["causes"][0]["reason"], "DisruptionBudget");
        assert!(s["details"]["causes"][0].get("field").is_none());
    }
}
