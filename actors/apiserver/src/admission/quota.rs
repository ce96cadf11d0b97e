//! The ResourceQuota plugin (upstream `plugin/pkg/admission/resourcequota`): a write that adds
//! usage (a new object, or an update that grows what it uses) is checked against every quota
//! of its namespace that matches it, and charged to each quota's `status.used` before it is
//! admitted. Each charge is a compare-and-swap on the quota's revision that re-reads and
//! re-checks on a lost race, so two creates racing for the last slot cannot both pass, and
//! writes in other namespaces or under other quotas never wait on each other. The resource
//! quota controller later recomputes `used` from what exists (and releases what goes).

use super::Attributes;
use crate::error::{OrStatus, Target as ErrTarget};
use crate::metrics::OBJECTS_STORED;
use crate::storage::Storage;
use bytes::Bytes;
use k8s_openapi::api::core::v1::{PersistentVolumeClaim, Pod, ResourceQuota, Service};
use kubus_apimachinery::quota::{self, Evaluator, ResourceList, Target};
use kubus_apimachinery::{resource, ResourceInfo, StatusError};
use kubus_bus::StoreError;
use serde::de::DeserializeOwned;
use serde_json::{json, Value};
use std::time::SystemTime;

/// What one admitted write charged: (quota name, amounts), given back if the write fails.
pub type Charges = Vec<(String, ResourceList)>;

fn quotas_info() -> &'static ResourceInfo {
    resource::find("", "v1", "resourcequotas").expect("resourcequotas are served")
}

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
        let q: ResourceQuota =
            serde_json::from_value((**v).clone()).map_err(|e| StatusError::internal(e.to_string()))?;
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
    let mut charges = Charges::new();
    for name in applying {
        match charge(storage, a, &name, &delta).await {
            Ok(Some(requested)) if !a.dry_run => charges.push((name, requested)),
            Ok(_) => {}
            Err(e) => {
                refund(storage, a.namespace, charges).await;
                return Err(e);
            }
        }
    }
    Ok(charges)
}

/// Adds `delta` (what the quota tracks of it) to one quota's used, refusing if that passes
/// its hard limits; a lost race re-reads the quota and checks again. None: nothing to charge
/// (the quota went, or tracks none of it any more).
async fn charge(
    storage: &Storage,
    a: &Attributes<'_>,
    name: &str,
    delta: &ResourceList,
) -> Result<Option<ResourceList>, StatusError> {
    update_used(storage, a.namespace, name, |q| {
        let hard = status_list(q, false);
        let requested = quota::mask(delta, hard.keys());
        if requested.is_empty() {
            return Ok(None);
        }
        let used = status_list(q, true);
        let new_used = quota::add(&used, &requested);
        let exceeded = quota::exceeded(&quota::mask(&new_used, requested.keys()), &hard);
        if !exceeded.is_empty() {
            return Err(a.forbidden(format!(
                "exceeded quota: {name}, requested: {}, used: {}, limited: {}",
                quota::pretty(&quota::mask(&requested, &exceeded)),
                quota::pretty(&quota::mask(&used, &exceeded)),
                quota::pretty(&quota::mask(&hard, &exceeded)),
            )));
        }
        // A dry run is checked, not charged.
        Ok(Some((requested, (!a.dry_run).then_some(new_used))))
    })
    .await
}

/// Gives back charges of a write that did not happen (never below zero).
pub async fn refund(storage: &Storage, namespace: &str, charges: Charges) {
    for (name, amount) in charges {
        let r = update_used(storage, namespace, &name, |q| {
            let used = status_list(q, true);
            let mut back = used.clone();
            back.extend(quota::subtract_non_negative(&quota::mask(&used, amount.keys()), &amount));
            Ok(Some(((), Some(back))))
        })
        .await;
        if let Err(e) = r {
            tracing::warn!(quota = %name, namespace, error = %e, "could not give back a quota charge");
        }
    }
}

/// A compare-and-swap loop on one quota's `status.used`: `decide` reads the current quota and
/// answers what to return and the new used (None: no write).
async fn update_used<T>(
    storage: &Storage,
    namespace: &str,
    name: &str,
    mut decide: impl FnMut(&ResourceQuota) -> Result<Option<(T, Option<ResourceList>)>, StatusError>,
) -> Result<Option<T>, StatusError> {
    let info = quotas_info();
    let key = Storage::key(info, Some(namespace), name);
    for _ in 0..64 {
        let (mut current, rev) = match storage.current(info, Some(namespace), name).await {
            Ok(c) => c,
            Err(e) if e.code == 404 => return Ok(None),
            Err(e) => return Err(e),
        };
        let typed: ResourceQuota =
            serde_json::from_value(current.clone()).map_err(|e| StatusError::internal(e.to_string()))?;
        let Some((out, used)) = decide(&typed)? else { return Ok(None) };
        let Some(used) = used else { return Ok(Some(out)) };
        current["status"]["used"] = json!(quota::to_api(&used));
        if let Some(m) = current["metadata"].as_object_mut() {
            m.remove("resourceVersion");
        }
        let bytes = serde_json::to_vec(&current).map_err(|e| StatusError::internal(e.to_string()))?;
        match storage.store.update(&key, Bytes::from(bytes), rev).await {
            Ok(_) => {
                OBJECTS_STORED.with_label_values(&[info.resource, "update"]).inc();
                return Ok(Some(out));
            }
            Err(StoreError::Conflict { .. }) => continue,
            Err(e) => return Err(e).or_status(ErrTarget::Object(info, name)),
        }
    }
    Err(StatusError::conflict("", "resourcequotas", name, "too many concurrent writers; try again"))
}
