//! The write path: decoding, metadata rules and optimistic concurrency for every verb, over the
//! one store client. HTTP and NATS requests both end up here, so every write passes the same
//! checks. What differs between kinds (defaults, status, validation, allocation, deletion)
//! is asked of the kind's [`Strategy`](crate::registry::Strategy).

use crate::admission::quota::evaluator::QuotaEvaluator;
use crate::admission::{self, Attributes};
use crate::allocator::Allocator;
use crate::cache::{with_revision, WatchCache};
use crate::convert;
use crate::decode::{decode, FieldValidation};
use crate::error::{conflict, OrStatus, Target};
use crate::metrics::OBJECTS_STORED;
use crate::object::{meta, now, random_suffix};
use crate::patch::{apply_patch, patch_demands_rv, record_apply_manager, PatchKind};
use crate::registry::strategy;
use bytes::Bytes;
use kubus_apimachinery::patch::patch_meta;
use kubus_apimachinery::time::format_rfc3339;
use kubus_apimachinery::{Cause, CauseType, ResourceInfo, StatusError, Subresource};
use kubus_bus::{Key, Store, StoreError};
use serde_json::{json, Value};
use std::time::{Duration, SystemTime};

#[derive(Debug, Clone, Default)]
pub struct WriteOptions {
    pub dry_run: bool,
    pub field_validation: FieldValidation,
    pub field_manager: Option<String>,
    pub force: bool,
    /// Who writes (None: the API server itself); RBAC writes are checked for escalation.
    pub user: Option<crate::authn::UserInfo>,
}

#[derive(Debug, Clone, Default)]
pub struct DeleteOptions {
    pub dry_run: bool,
    pub grace_period: Option<i64>,
    pub propagation: Option<String>,
    pub precondition_uid: Option<String>,
    pub precondition_rv: Option<String>,
}

pub struct Outcome {
    pub object: Value,
    pub created: bool,
    pub warnings: Vec<String>,
}

fn to_bytes(obj: &Value) -> Result<Vec<u8>, StatusError> {
    serde_json::to_vec(obj).map_err(|e| StatusError::internal(e.to_string()))
}

/// Metadata a write may not change: identity and the deletion marks come from the stored
/// object whatever the request says.
fn keep_identity(info: &'static ResourceInfo, new: &mut Value, old: &Value) {
    let old_meta = old["metadata"].as_object().cloned().unwrap_or_default();
    let m = meta(new);
    for f in ["uid", "creationTimestamp", "deletionTimestamp", "deletionGracePeriodSeconds", "generation", "name"] {
        match old_meta.get(f) {
            Some(v) => {
                m.insert(f.into(), v.clone());
            }
            None => {
                m.remove(f);
            }
        }
    }
    if info.namespaced {
        if let Some(ns) = old_meta.get("namespace") {
            m.insert("namespace".into(), ns.clone());
        }
    } else {
        m.remove("namespace");
    }
    if !m.contains_key("managedFields") {
        if let Some(mf) = old_meta.get("managedFields") {
            m.insert("managedFields".into(), mf.clone());
        }
    }
}

fn namespace_mismatch() -> StatusError {
    StatusError::bad_request("the namespace of the provided object does not match the namespace sent on the request")
}

#[derive(Clone)]
pub struct Storage {
    pub store: Store,
    pub cache: WatchCache,
    pub allocator: Allocator,
    /// Charges ResourceQuotas for admission, batched per namespace.
    pub quota: QuotaEvaluator,
    /// New pods get the `kube-api-access-*` token volume (the API is HTTPS with a cluster CA
    /// for them to trust); off for a cluster serving plain HTTP.
    pub mount_service_account_tokens: bool,
}

impl Storage {
    pub fn key(info: &ResourceInfo, ns: Option<&str>, name: &str) -> Key {
        Key::new(info.storage_group, info.storage_resource, if info.namespaced { ns } else { None }, name)
    }

    /// The stored object (storage form) and its revision, read from the store leader.
    pub(crate) async fn current(
        &self,
        info: &'static ResourceInfo,
        ns: Option<&str>,
        name: &str,
    ) -> Result<(Value, u64), StatusError> {
        match self.store.get(&Self::key(info, ns, name)).await.or_status(Target::Object(info, name))? {
            Some(o) => Ok((with_revision(&o.value, o.revision)?, o.revision)),
            None => Err(StatusError::not_found(info.group, info.resource, name)),
        }
    }

    pub async fn get(&self, info: &'static ResourceInfo, ns: Option<&str>, name: &str) -> Result<Value, StatusError> {
        let (v, _) = self.current(info, ns, name).await?;
        Ok(convert::to_version(info, v))
    }

    fn check_size(&self, bytes: &[u8]) -> Result<(), StatusError> {
        let limit = self.store.max_object_size();
        if bytes.len() > limit {
            return Err(StatusError::too_large(format!(
                "object is too large: {} bytes, limit {limit} bytes",
                bytes.len()
            )));
        }
        Ok(())
    }

    /// The namespace lifecycle admission's rule: a namespaced object is created only in a
    /// namespace that exists and is not being terminated.
    fn check_namespace(&self, info: &'static ResourceInfo, ns: Option<&str>, name: &str) -> Result<(), StatusError> {
        if !info.namespaced {
            return Ok(());
        }
        let ns = ns.unwrap_or_default();
        match self.cache.namespace_phase(ns) {
            None => Err(StatusError::not_found("", "namespaces", ns)),
            Some(p) if p == "Terminating" => Err(StatusError::forbidden(
                info.group,
                info.resource,
                name,
                format!("unable to create new content in namespace {ns} because it is being terminated"),
            )),
            Some(_) => Ok(()),
        }
    }

    pub async fn create(
        &self,
        info: &'static ResourceInfo,
        ns: Option<&str>,
        body: Value,
        opts: &WriteOptions,
    ) -> Result<Outcome, StatusError> {
        let body = convert::from_version(info, body)?;
        let strategy = strategy(info);
        let storage_info = strategy.info();
        let (mut obj, warnings) = decode(storage_info, body, opts.field_validation)?;
        let m = meta(&mut obj);
        if info.namespaced {
            match (m.get("namespace").and_then(Value::as_str), ns) {
                (Some(a), Some(b)) if !a.is_empty() && a != b => return Err(namespace_mismatch()),
                _ => {}
            }
            m.insert("namespace".into(), json!(ns.unwrap_or("default")));
        } else {
            m.remove("namespace");
        }
        let name = m.get("name").and_then(Value::as_str).unwrap_or("").to_string();
        let generate = m.get("generateName").and_then(Value::as_str).unwrap_or("").to_string();
        let name =
            if name.is_empty() && !generate.is_empty() { format!("{generate}{}", random_suffix()) } else { name };
        if name.is_empty() {
            return Err(StatusError::invalid(
                storage_info.group,
                storage_info.kind,
                "",
                vec![Cause::new(
                    CauseType::FieldValueRequired,
                    "metadata.name",
                    "Required value: name or generateName is required",
                )],
            ));
        }
        m.insert("name".into(), json!(name));
        m.insert("uid".into(), json!(uuid::Uuid::new_v4().to_string()));
        m.insert("creationTimestamp".into(), json!(now()));
        for f in ["resourceVersion", "deletionTimestamp", "deletionGracePeriodSeconds", "selfLink"] {
            m.remove(f);
        }
        if strategy.tracks_generation() {
            m.insert("generation".into(), json!(1));
        } else {
            m.remove("generation");
        }
        // Defaults first, as upstream's decoding does: what the strategy derives (a pod's QoS
        // class) reads the defaulted object.
        strategy.set_defaults(&mut obj);
        crate::admission::admit_create(self, storage_info, &mut obj).await?;
        let attrs = ns.filter(|_| storage_info.namespaced).map(|ns| Attributes {
            info: storage_info,
            namespace: ns,
            name: &name,
            old: None,
            dry_run: opts.dry_run,
        });
        if let Some(a) = &attrs {
            admission::admit_in_namespace(self, a, &mut obj)?;
        }
        strategy.prepare_for_create(&mut obj);
        let causes = strategy.validate(&obj);
        if !causes.is_empty() {
            return Err(StatusError::invalid(storage_info.group, storage_info.kind, &name, causes));
        }
        crate::admission::validate(self, storage_info, &obj, None, opts.user.as_ref()).await?;
        self.check_namespace(info, ns, &name)?;
        let mut bytes = to_bytes(&obj)?;
        self.check_size(&bytes)?;
        let charges = match &attrs {
            Some(a) => admission::validate_in_namespace(self, a, &obj).await?,
            None => Vec::new(),
        };
        if opts.dry_run {
            return Ok(Outcome { object: convert::to_version(info, obj), created: true, warnings });
        }
        let key = Self::key(info, ns, &name);
        let reserved = match strategy.allocate(&self.allocator, &mut obj).await {
            Ok(r) => r,
            Err(e) => {
                admission::refund(self, ns.unwrap_or_default(), charges).await;
                return Err(e);
            }
        };
        if !reserved.is_empty() {
            bytes = to_bytes(&obj)?;
        }
        let rev = match self.store.create(&key, Bytes::from(bytes)).await {
            Ok(rev) => rev,
            Err(e) => {
                self.allocator.release(&reserved).await;
                admission::refund(self, ns.unwrap_or_default(), charges).await;
                return Err(e).or_status(Target::Object(info, &name));
            }
        };
        OBJECTS_STORED.with_label_values(&[info.resource, "create"]).inc();
        meta(&mut obj).insert("resourceVersion".into(), json!(rev.to_string()));
        Ok(Outcome { object: convert::to_version(info, obj), created: true, warnings })
    }

    /// Read-modify-write with optimistic concurrency. `mutate` turns the current object
    /// (storage form, resourceVersion set) into the desired one; if the desired object carries
    /// a resourceVersion it must match, otherwise a lost race is retried.
    pub async fn update_with<F>(
        &self,
        info: &'static ResourceInfo,
        ns: Option<&str>,
        name: &str,
        sub: Option<Subresource>,
        opts: &WriteOptions,
        mut mutate: F,
    ) -> Result<Outcome, StatusError>
    where
        F: FnMut(&Value) -> Result<(Value, Vec<String>), StatusError>,
    {
        let strategy = strategy(info);
        let storage_info = strategy.info();
        for _attempt in 0..16 {
            let (old, rev) = self.current(info, ns, name).await?;
            let (mut new, warnings) = mutate(&old)?;
            let requested_rv = new["metadata"]["resourceVersion"].as_str().unwrap_or("").to_string();
            if !requested_rv.is_empty() && requested_rv != rev.to_string() {
                return Err(conflict(info, name));
            }
            let m = meta(&mut new);
            if let Some(n) = m.get("name").and_then(Value::as_str) {
                if n != name {
                    return Err(StatusError::bad_request(format!(
                        "the name of the object ({n}) does not match the name on the URL ({name})"
                    )));
                }
            }
            if info.namespaced {
                if let (Some(a), Some(b)) = (m.get("namespace").and_then(Value::as_str), ns) {
                    if !a.is_empty() && a != b {
                        return Err(namespace_mismatch());
                    }
                }
            }
            keep_identity(storage_info, &mut new, &old);
            // Defaults after: they read what is restored from the stored object (a namespace's
            // name, a service's allocated ClusterIP).
            strategy.prepare_for_update(sub, &mut new, &old);
            strategy.set_defaults(&mut new);
            let causes = strategy.validate_update(sub, &new, &old);
            if !causes.is_empty() {
                return Err(StatusError::invalid(storage_info.group, storage_info.kind, name, causes));
            }
            if sub.is_none() {
                crate::admission::validate(self, storage_info, &new, Some(&old), opts.user.as_ref()).await?;
            }
            // Unchanged objects are not written: the resourceVersion stays, nothing is sent.
            let mut compare_new = new.clone();
            meta(&mut compare_new).insert("resourceVersion".into(), json!(rev.to_string()));
            // (Except where encryption at rest applies: an unchanged write is how stored objects
            // get encrypted with the current key, as upstream's `kubectl replace` procedure.)
            if compare_new == old && !self.store.encrypts(storage_info.group, storage_info.resource) {
                return Ok(Outcome { object: convert::to_version(info, old), created: false, warnings });
            }
            meta(&mut new).remove("resourceVersion");
            let key = Self::key(info, ns, name);
            // The last finalizer of an object being deleted has gone: it goes now.
            let finalized = new["metadata"]["deletionTimestamp"].is_string()
                && new["metadata"]["finalizers"].as_array().is_none_or(|f| f.is_empty())
                && !strategy.deletion_pending(&new);
            let bytes = to_bytes(&new)?;
            self.check_size(&bytes)?;
            // Admission sees changes of the object itself, not of its status or subresources.
            let admitted = ns.filter(|_| sub.is_none() && storage_info.namespaced && !finalized);
            let charges = match admitted {
                Some(ns) => {
                    let a =
                        Attributes { info: storage_info, namespace: ns, name, old: Some(&old), dry_run: opts.dry_run };
                    admission::validate_in_namespace(self, &a, &new).await?
                }
                None => Vec::new(),
            };
            if opts.dry_run {
                meta(&mut new).insert("resourceVersion".into(), json!(rev.to_string()));
                return Ok(Outcome { object: convert::to_version(info, new), created: false, warnings });
            }
            let result = if finalized {
                self.store.delete(&key, Bytes::from(bytes), rev).await
            } else {
                self.store.update(&key, Bytes::from(bytes), rev).await
            };
            match result {
                Ok(new_rev) => {
                    if finalized {
                        self.allocator.release(&strategy.reservations(&new)).await;
                    }
                    OBJECTS_STORED
                        .with_label_values(&[info.resource, if finalized { "delete" } else { "update" }])
                        .inc();
                    meta(&mut new).insert("resourceVersion".into(), json!(new_rev.to_string()));
                    return Ok(Outcome { object: convert::to_version(info, new), created: false, warnings });
                }
                Err(e) => {
                    admission::refund(self, ns.unwrap_or_default(), charges).await;
                    match e {
                        StoreError::Conflict { .. } if requested_rv.is_empty() => continue,
                        e => return Err(e).or_status(Target::Object(info, name)),
                    }
                }
            }
        }
        Err(StatusError::conflict(info.group, info.resource, name, "too many concurrent writers; try again"))
    }

    /// PUT: replace the object (or its status) with `body`.
    pub async fn update(
        &self,
        info: &'static ResourceInfo,
        ns: Option<&str>,
        name: &str,
        sub: Option<Subresource>,
        body: Value,
        opts: &WriteOptions,
    ) -> Result<Outcome, StatusError> {
        let body = convert::from_version(info, body)?;
        let (decoded, warnings) = decode(convert::storage_info(info), body, opts.field_validation)?;
        self.update_with(info, ns, name, sub, opts, |_| Ok((decoded.clone(), warnings.clone()))).await
    }

    /// PATCH of any of the four patch types. A server-side apply of an object that does not
    /// exist creates it.
    #[allow(clippy::too_many_arguments)]
    pub async fn patch(
        &self,
        info: &'static ResourceInfo,
        ns: Option<&str>,
        name: &str,
        sub: Option<Subresource>,
        content_type: &str,
        body: &[u8],
        opts: &WriteOptions,
    ) -> Result<Outcome, StatusError> {
        let kind = PatchKind::from_content_type(content_type)?;
        let patch: Value = match kind {
            PatchKind::Apply => serde_yaml::from_slice(body)
                .map_err(|e| StatusError::bad_request(format!("error decoding YAML: {e}")))?,
            _ => serde_json::from_slice(body)
                .map_err(|e| StatusError::bad_request(format!("error decoding patch: {e}")))?,
        };
        let manager = opts.field_manager.as_deref().unwrap_or("");
        if kind == PatchKind::Apply {
            if manager.is_empty() {
                return Err(StatusError::bad_request(
                    "PatchOptions.meta.k8s.io \"\" is invalid: fieldManager: Required value: is required for apply patch",
                ));
            }
            if sub.is_none() {
                if let Err(e) = self.current(info, ns, name).await {
                    if e.code == 404 {
                        let mut obj = patch.clone();
                        meta(&mut obj).insert("name".into(), json!(name));
                        record_apply_manager(&mut obj, manager);
                        return self.create(info, ns, obj, opts).await;
                    }
                    return Err(e);
                }
            }
        }
        let root = patch_meta::root_type(info.group, info.kind);
        self.update_with(info, ns, name, sub, opts, |old| {
            let old = convert::to_version(info, old.clone());
            let mut patched = apply_patch(kind, &old, &patch, root)?;
            if kind == PatchKind::Apply {
                record_apply_manager(&mut patched, manager);
            }
            // A patch only names the resourceVersion to demand it; otherwise keep the current one
            // out so a lost race is retried.
            if !patch_demands_rv(kind, &patch) {
                meta(&mut patched).remove("resourceVersion");
            }
            let patched = convert::from_version(info, patched)?;
            decode(convert::storage_info(info), patched, opts.field_validation)
        })
        .await
    }

    pub async fn delete(
        &self,
        info: &'static ResourceInfo,
        ns: Option<&str>,
        name: &str,
        opts: &DeleteOptions,
    ) -> Result<Value, StatusError> {
        let strategy = strategy(info);
        strategy.check_delete(name)?;
        for _ in 0..16 {
            let (cur, rev) = self.current(info, ns, name).await?;
            check_preconditions(info, name, &cur, rev, opts)?;
            let mut obj = cur.clone();
            let finalizers = propagation_finalizers(&cur, opts.propagation.as_deref())?;
            let already_deleting = obj["metadata"]["deletionTimestamp"].is_string();
            if !finalizers.is_empty() {
                meta(&mut obj).insert("finalizers".into(), Value::Array(finalizers.clone()));
            }
            let grace = strategy.grace_period(&cur, opts.grace_period);
            let pending = if strategy.begin_deletion(&mut obj, already_deleting) {
                true
            } else if grace > 0 || !finalizers.is_empty() {
                let current_grace = cur["metadata"]["deletionGracePeriodSeconds"].as_i64();
                if !already_deleting || current_grace.is_some_and(|g| grace < g) {
                    let when = SystemTime::now() + Duration::from_secs(grace as u64);
                    let m = meta(&mut obj);
                    m.insert("deletionTimestamp".into(), json!(format_rfc3339(when)));
                    m.insert("deletionGracePeriodSeconds".into(), json!(grace));
                }
                true
            } else {
                false
            };
            let key = Self::key(info, ns, name);
            if opts.dry_run {
                return Ok(convert::to_version(info, obj));
            }
            if pending && obj == cur {
                return Ok(convert::to_version(info, cur));
            }
            // Pending deletions (grace period, finalizers) are updates; the rest go now.
            meta(&mut obj).remove("resourceVersion");
            let bytes = Bytes::from(to_bytes(&obj)?);
            let result = match pending {
                true => self.store.update(&key, bytes, rev).await,
                false => self.store.delete(&key, bytes, rev).await,
            };
            match result {
                Ok(r) => {
                    if !pending {
                        self.allocator.release(&strategy.reservations(&obj)).await;
                    }
                    OBJECTS_STORED.with_label_values(&[info.resource, if pending { "update" } else { "delete" }]).inc();
                    meta(&mut obj).insert("resourceVersion".into(), json!(r.to_string()));
                    return Ok(convert::to_version(info, obj));
                }
                Err(StoreError::Conflict { .. }) => continue,
                Err(e) => return Err(e).or_status(Target::Object(info, name)),
            }
        }
        Err(StatusError::conflict(info.group, info.resource, name, "too many concurrent writers; try again"))
    }
}

/// DeleteOptions.preconditions: the object must still be the one the client saw.
fn check_preconditions(
    info: &'static ResourceInfo,
    name: &str,
    cur: &Value,
    rev: u64,
    opts: &DeleteOptions,
) -> Result<(), StatusError> {
    if let Some(uid) = &opts.precondition_uid {
        let actual = cur["metadata"]["uid"].as_str().unwrap_or("");
        if actual != uid {
            return Err(StatusError::conflict(
                info.group,
                info.resource,
                name,
                &format!("Precondition failed: UID in precondition: {uid}, UID in object meta: {actual}"),
            ));
        }
    }
    if let Some(want) = &opts.precondition_rv {
        if *want != rev.to_string() {
            return Err(StatusError::conflict(
                info.group,
                info.resource,
                name,
                &format!(
                    "Precondition failed: ResourceVersion in precondition: {want}, ResourceVersion in object meta: {rev}"
                ),
            ));
        }
    }
    Ok(())
}

/// The object's finalizers with the propagation policy's: upstream records Foreground and
/// Orphan as finalizers the garbage collector acts on.
fn propagation_finalizers(cur: &Value, propagation: Option<&str>) -> Result<Vec<Value>, StatusError> {
    let mut finalizers: Vec<Value> = cur["metadata"]["finalizers"].as_array().cloned().unwrap_or_default();
    let add = match propagation {
        Some("Foreground") => Some("foregroundDeletion"),
        Some("Orphan") => Some("orphan"),
        Some("Background") | None => None,
        Some(other) => {
            return Err(StatusError::invalid(
                "meta.k8s.io",
                "DeleteOptions",
                "",
                vec![Cause::not_supported("propagationPolicy", &json!(other), &["Foreground", "Background", "Orphan"])],
            ))
        }
    };
    if let Some(f) = add.filter(|f| !finalizers.iter().any(|v| v == f)) {
        finalizers.push(json!(f));
    }
    Ok(finalizers)
}
