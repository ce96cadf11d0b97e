//! The ResourceQuota plugin (upstream `plugin/pkg/admission/resourcequota`): a write that adds
//! usage (a new object, or an update that grows what it uses) is checked against every quota
//! of its namespace that matches it, and charged to each quota's `status.used` before it is
//! admitted. Which quotas match and what the write adds is decided here, on the watch cache's
//! quotas; the charge itself is the [`evaluator`]'s: concurrent writes to one namespace are
//! checked in one batch against the stored quotas and each changed quota is written once, so
//! two creates racing for the last slot cannot both pass and writes in other namespaces never
//! wait on each other. The resource quota controller later recomputes `used` from what exists
//! (and releases what goes).

pub mod evaluator;

use super::Attributes;
use crate::storage::Storage;
use evaluator::{Charge, Request};
use k8s_openapi::api::core::v1::{PersistentVolumeClaim, Pod, ResourceQuota, Service};
use kubus_apimachinery::quota::{self, Evaluator, ResourceList, Target};
use kubus_apimachinery::StatusError;
use serde::de::DeserializeOwned;
use serde_json::Value;
use std::time::SystemTime;

/// What one admitted write charged: (quota name, amounts), given back if the write fails.
pub type Charges = Vec<(String, ResourceList)>;

/// An object decoded for its evaluator (what validation passed decodes).
enum Typed {
    Pod(Box<Pod>),
    Service(Box<Service>),
    Claim(Box<PersistentVolumeClaim>),
    Other,
}

impl Typed {
    fn decode(evaluator: &Evaluator, v: &Value) -> Result<Typed, StatusError> {
        fn de<T: DeserializeOwned>(v: &Value) -> Result<Box<T>, StatusError> {
            T::deserialize(v).map(Box::new).map_err(|e| StatusError::internal(format!("quota: {e}")))
        }
        Ok(match evaluator {
            Evaluator::Pods => Typed::Pod(de(v)?),
            Evaluator::Services => Typed::Service(de(v)?),
            Evaluator::Claims => Typed::Claim(de(v)?),
            Evaluator::Count { .. } => Typed::Other,
        })
    }

    fn target(&self) -> Target<'_> {
        match self {
            Typed::Pod(p) => Target::Pod(p),
            Typed::Service(s) => Target::Service(s),
            Typed::Claim(c) => Target::Claim(c),
            Typed::Other => Target::Other,
        }
    }
}

/// Whether the write can change usage (upstream's `Handles`): creates; updates of services
/// and claims (type or size changes); pod updates that move a pod across the Terminating scope.
fn handles(evaluator: &Evaluator, new: &Typed, old: Option<&Typed>) -> bool {
    match (evaluator, old) {
        (_, None) => true,
        (Evaluator::Services | Evaluator::Claims, Some(_)) => true,
        (Evaluator::Pods, Some(Typed::Pod(old))) => match new {
            Typed::Pod(new) => quota::is_terminating(old) != quota::is_terminating(new),
            _ => false,
        },
        _ => false,
    }
}

fn status_list(q: &ResourceQuota, used: bool) -> ResourceList {
    let s = q.status.as_ref();
    quota::parse_list(s.and_then(|s| if used { s.used.as_ref() } else { s.hard.as_ref() }))
}

/// Checks and charges the write; returns what was charged.
pub async fn admit(storage: &Storage, a: &Attributes<'_>, obj: &Value) -> Result<Charges, StatusError> {
    let Some(evaluator) = Evaluator::for_resource(a.info.group, a.info.resource) else { return Ok(vec![]) };
    let gr = (String::new(), "resourcequotas".to_string());
    let (cached, _) = storage.cache.list(&gr, Some(a.namespace));
    if cached.is_empty() {
        return Ok(vec![]);
    }
    let new = Typed::decode(&evaluator, obj)?;
    let old = a.old.map(|o| Typed::decode(&evaluator, o)).transpose()?;
    if !handles(&evaluator, &new, old.as_ref()) {
        return Ok(vec![]);
    }
    // The quotas that apply, checked for what the object must declare and for known usage.
    let mut applying = Vec::new();
    for v in &cached {
        let q: ResourceQuota = v.decode().map_err(|e| StatusError::internal(e.to_string()))?;
        let hard = status_list(&q, false);
        let spec = q.spec.clone().unwrap_or_default();
        if !evaluator.matches(&spec, &hard, new.target()) {
            continue;
        }
        let name = q.metadata.name.clone().unwrap_or_default();
        let restricted = evaluator.matching_resources(hard.keys());
        if let Err(e) = evaluator.constraints(&restricted, new.target()) {
            return Err(a.forbidden(format!("failed quota: {name}: {e}")));
        }
        let used = status_list(&q, true);
        if restricted.iter().any(|r| !used.contains_key(r)) {
            let mut names = restricted.clone();
            names.sort();
            return Err(a.forbidden(format!("status unknown for quota: {name}, resources: {}", names.join(","))));
        }
        applying.push(name);
    }
    let now = SystemTime::now();
    let mut delta = evaluator.usage(new.target(), now);
    let negative = quota::negative(&delta);
    if !negative.is_empty() {
        return Err(a.forbidden(format!("quota usage is negative for resource(s): {}", negative.join(","))));
    }
    if let Some(old) = &old {
        delta = quota::subtract_non_negative(&delta, &evaluator.usage(old.target(), now));
    }
    if quota::is_zero(&delta) || applying.is_empty() {
        return Ok(vec![]);
    }
    let charge = Charge { info: a.info, name: a.name.to_string(), quotas: applying, delta, dry_run: a.dry_run };
    storage.quota.evaluate(a.namespace, Request::Charge(charge)).await
}

/// Gives back charges of a write that did not happen (never below zero).
pub async fn refund(storage: &Storage, namespace: &str, charges: Charges) {
    if charges.is_empty() {
        return;
    }
    if let Err(e) = storage.quota.evaluate(namespace, Request::Refund(charges)).await {
        tracing::warn!(namespace, error = %e, "could not give back a quota charge");
    }
}
