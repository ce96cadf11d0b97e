//! The Priority admission plugin (upstream `plugin/pkg/admission/priority`): a new pod gets
//! `spec.priority` and `spec.preemptionPolicy` from the PriorityClass it names, else from the
//! cluster's globalDefault class, else 0 and PreemptLowerPriority; a class it names that does
//! not exist, or values the client set that disagree with the class, are refused with 403.
//! At most one class may be the globalDefault.

use crate::storage::Storage;
use kubus_apimachinery::validation::scheduling::SYSTEM_PRIORITY_CLASSES;
use kubus_apimachinery::{resource, StatusError};
use serde_json::{json, Value};
use std::sync::Arc;

const DEFAULT_POLICY: &str = "PreemptLowerPriority";

fn classes_gr() -> (String, String) {
    ("scheduling.k8s.io".to_string(), "priorityclasses".to_string())
}

/// The class named `name`: from the watch cache, else from the store (a class created a
/// moment ago may not have reached the cache), else the built-in table.
async fn class(storage: &Storage, name: &str) -> Result<Option<Value>, StatusError> {
    if let Some(pc) = storage.cache.get(&classes_gr(), &(String::new(), name.to_string())) {
        return Ok(Some((*pc.shared()).clone()));
    }
    let info = resource::find("scheduling.k8s.io", "v1", "priorityclasses").expect("priority classes are served");
    match storage.store.get(&Storage::key(info, None, name)).await {
        Ok(Some(o)) => {
            let v: Value = serde_json::from_slice(&o.value).map_err(|e| StatusError::internal(e.to_string()))?;
            return Ok(Some(v));
        }
        Ok(None) => {}
        Err(e) => return Err(StatusError::internal(format!("failed to get PriorityClass with name {name}: {e}"))),
    }
    Ok(SYSTEM_PRIORITY_CLASSES
        .iter()
        .find(|(n, _)| *n == name)
        .map(|(n, v)| json!({"metadata": {"name": n}, "value": v, "preemptionPolicy": DEFAULT_POLICY})))
}

/// The globalDefault class; should a race have made two, the one of lowest value, as upstream.
fn default_class(storage: &Storage) -> Option<Arc<Value>> {
    let (classes, _) = storage.cache.list(&classes_gr(), None);
    // Classes are few and read on every pod create: kept decoded.
    classes
        .into_iter()
        .map(|pc| pc.shared())
        .filter(|pc| pc["globalDefault"].as_bool() == Some(true))
        .min_by_key(|pc| pc["value"].as_i64().unwrap_or(0))
}

fn forbidden(pod: &str, message: impl std::fmt::Display) -> StatusError {
    StatusError::forbidden("", "pods", pod, message)
}

/// Resolves a new pod's priority and preemption policy from its class.
pub async fn admit_pod(storage: &Storage, pod: &mut Value) -> Result<(), StatusError> {
    let name = pod["metadata"]["name"].as_str().unwrap_or("").to_string();
    let named = pod["spec"]["priorityClassName"].as_str().filter(|n| !n.is_empty()).map(str::to_string);
    let (class_name, priority, policy) = match named {
        Some(n) => match class(storage, &n).await? {
            Some(pc) => {
                let policy = pc["preemptionPolicy"].as_str().unwrap_or(DEFAULT_POLICY).to_string();
                (Some(n), pc["value"].as_i64().unwrap_or(0), policy)
            }
            None => return Err(forbidden(&name, format!("no PriorityClass with name {n} was found"))),
        },
        None => match default_class(storage) {
            Some(pc) => {
                let policy = pc["preemptionPolicy"].as_str().unwrap_or(DEFAULT_POLICY).to_string();
                (pc["metadata"]["name"].as_str().map(str::to_string), pc["value"].as_i64().unwrap_or(0), policy)
            }
            None => (None, 0, DEFAULT_POLICY.to_string()),
        },
    };
    let spec = &mut pod["spec"];
    if let Some(given) = spec["priority"].as_i64() {
        if given != priority {
            return Err(forbidden(
                &name,
                format!(
                    "the integer value of priority ({given}) must not be provided in pod spec; priority admission controller computed {priority} from the given PriorityClass name"
                ),
            ));
        }
    }
    if let Some(given) = spec["preemptionPolicy"].as_str().filter(|p| *p != policy) {
        return Err(forbidden(
            &name,
            format!(
                "the string value of PreemptionPolicy ({given}) must not be provided in pod spec; priority admission controller computed {policy} from the given PriorityClass name"
            ),
        ));
    }
    if let Some(spec) = spec.as_object_mut() {
        if let Some(n) = class_name {
            spec.insert("priorityClassName".into(), json!(n));
        }
        spec.insert("priority".into(), json!(priority));
        spec.insert("preemptionPolicy".into(), json!(policy));
    }
    Ok(())
}

/// A second globalDefault class is refused (a create, or an update marking another class).
pub async fn validate_priority_class(storage: &Storage, pc: &Value, old: Option<&Value>) -> Result<(), StatusError> {
    if pc["globalDefault"].as_bool() != Some(true) {
        return Ok(());
    }
    // Rare and racy: read what the store holds now rather than what the cache has seen.
    storage.cache.wait_fresh(&storage.store).await?;
    let name = pc["metadata"]["name"].as_str().unwrap_or("");
    if let Some(existing) = default_class(storage) {
        let existing = existing["metadata"]["name"].as_str().unwrap_or("");
        if old.is_none() || existing != name {
            return Err(StatusError::forbidden(
                "scheduling.k8s.io",
                "priorityclasses",
                name,
                format!("PriorityClass {existing} is already marked as default. Only one default can exist"),
            ));
        }
    }
    Ok(())
}
