//! Admission: what the API server decides about a write from objects other than the one
//! written, as upstream's admission plugins. Mutating admission runs after defaulting and
//! before the strategy prepares and validates a new object; validating admission after
//! validation, just before the write. Each plugin is a file named for it: [`priority`].

pub mod priority;

use crate::storage::Storage;
use kubus_apimachinery::{ResourceInfo, StatusError};
use serde_json::Value;

/// Mutating admission of a new object (`info` is its storage form).
pub async fn admit_create(storage: &Storage, info: &ResourceInfo, obj: &mut Value) -> Result<(), StatusError> {
    if (info.group, info.resource) == ("", "pods") {
        priority::admit_pod(storage, obj).await?;
    }
    Ok(())
}

/// Validating admission of a create (`old` None) or an update of the object itself.
pub async fn validate(
    storage: &Storage,
    info: &ResourceInfo,
    obj: &Value,
    old: Option<&Value>,
) -> Result<(), StatusError> {
    if (info.group, info.resource) == ("scheduling.k8s.io", "priorityclasses") {
        priority::validate_priority_class(storage, obj, old).await?;
    }
    Ok(())
}
