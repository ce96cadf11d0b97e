//! Admission: what the API server decides about a write from objects other than the one
//! written, as upstream's admission plugins. Mutating admission runs after defaulting and
//! before the strategy prepares and validates a new object; validating admission after
//! validation, just before the write. Each plugin is a file named for it: [`priority`]
//! (a pod's priority from its class), [`serviceaccount`] (a pod's API token volume),
//! [`limitrange`] (container defaults, then min/max/ratio)
//! and [`quota`] (charges the namespace's ResourceQuotas, batched per namespace by
//! [`quota::evaluator`]). A refusal is a 403 naming the object, as upstream's
//! `admission.NewForbidden`.

pub mod limitrange;
pub mod noderestriction;
pub mod priority;
pub mod quota;
pub mod serviceaccount;

use crate::storage::Storage;
use kubus_apimachinery::{ResourceInfo, StatusError};
use prometheus::{register_histogram_vec, HistogramVec};
use serde_json::Value;
use std::sync::LazyLock;
use std::time::Instant;

/// Upstream's admission plugin latency metric (name, labels and buckets).
static ADMISSION_DURATION: LazyLock<HistogramVec> = LazyLock::new(|| {
    register_histogram_vec!(
        "apiserver_admission_controller_admission_duration_seconds",
        "Admission controller latency histogram in seconds, identified by name and broken out for each operation and API resource and type (validate or admit).",
        &["name", "operation", "rejected", "type"],
        vec![0.005, 0.025, 0.1, 0.5, 1.0, 2.5]
    )
    .expect("metric registers once")
});

/// The write being admitted.
#[derive(Clone, Copy)]
pub struct Attributes<'a> {
    /// The resource (storage form).
    pub info: &'static ResourceInfo,
    pub namespace: &'a str,
    pub name: &'a str,
    /// The stored object an update replaces (None: a create).
    pub old: Option<&'a Value>,
    pub dry_run: bool,
}

impl Attributes<'_> {
    fn operation(&self) -> &'static str {
        if self.old.is_some() {
            "UPDATE"
        } else {
            "CREATE"
        }
    }

    /// `pods "web-1" is forbidden: <reason>`, with the object in the details.
    pub fn forbidden(&self, reason: impl std::fmt::Display) -> StatusError {
        StatusError::forbidden(self.info.group, self.info.resource, self.name, reason)
    }
}

fn observe<T>(plugin: &str, kind: &str, a: &Attributes, started: Instant, r: &Result<T, StatusError>) {
    let rejected = if r.is_err() { "true" } else { "false" };
    ADMISSION_DURATION
        .with_label_values(&[plugin, a.operation(), rejected, kind])
        .observe(started.elapsed().as_secs_f64());
}

/// Mutating admission of a new namespaced object: LimitRange defaults.
pub fn admit_in_namespace(storage: &Storage, a: &Attributes, obj: &mut Value) -> Result<(), StatusError> {
    let started = Instant::now();
    let _span = tracing::debug_span!("admission", plugin = "LimitRanger", kind = "admit").entered();
    let r = limitrange::admit(&storage.cache, a, obj);
    observe("LimitRanger", "admit", a, started, &r);
    r
}

/// Validating admission of a namespaced write: LimitRange constraints, then quota. What quota
/// charged is returned so a write that fails afterwards can give it back ([`refund`]).
pub async fn validate_in_namespace(
    storage: &Storage,
    a: &Attributes<'_>,
    obj: &Value,
) -> Result<quota::Charges, StatusError> {
    let started = Instant::now();
    let r = {
        let _span = tracing::debug_span!("admission", plugin = "LimitRanger", kind = "validate").entered();
        limitrange::validate(&storage.cache, a, obj)
    };
    observe("LimitRanger", "validate", a, started, &r);
    r?;
    let started = Instant::now();
    let span = tracing::debug_span!("admission", plugin = "ResourceQuota", kind = "validate");
    let r = tracing::Instrument::instrument(quota::admit(storage, a, obj), span).await;
    observe("ResourceQuota", "validate", a, started, &r);
    r
}

/// Gives back what [`validate_in_namespace`] charged for a write that did not happen.
pub async fn refund(storage: &Storage, namespace: &str, charges: quota::Charges) {
    quota::refund(storage, namespace, charges).await
}

/// Mutating admission of a new object (`info` is its storage form).
pub async fn admit_create(storage: &Storage, info: &ResourceInfo, obj: &mut Value) -> Result<(), StatusError> {
    if (info.group, info.resource) == ("", "pods") {
        priority::admit_pod(storage, obj).await?;
        if storage.mount_service_account_tokens {
            serviceaccount::admit_pod(&storage.cache, obj);
        }
    }
    Ok(())
}

/// Validating admission of a create (`old` None) or an update of the object itself.
pub async fn validate(
    storage: &Storage,
    info: &ResourceInfo,
    obj: &Value,
    old: Option<&Value>,
    user: Option<&crate::authn::UserInfo>,
) -> Result<(), StatusError> {
    if (info.group, info.resource) == ("scheduling.k8s.io", "priorityclasses") {
        priority::validate_priority_class(storage, obj, old).await?;
    }
    if let (crate::authorization::rbac::GROUP, Some(user)) = (info.group, user) {
        // The garbage collector's writes (owners, finalizers) grant nothing: upstream lets them
        // through without the escalation check.
        if !old.is_some_and(|old| crate::authorization::escalation::only_gc_fields_change(old, obj)) {
            crate::authorization::escalation::check(&storage.cache, user, info.resource, obj)?;
        }
    }
    if let Some(user) = user {
        noderestriction::validate(&storage.cache, info.group, info.resource, obj, old, user)?;
    }
    Ok(())
}
