//! The write path: decoding, defaulting, validation, metadata rules and optimistic
//! concurrency for every verb, over the one store client. HTTP and NATS requests both end up
//! here, so every write passes the same checks.

use crate::cache::{with_revision, WatchCache};
use crate::convert;
use crate::metrics::OBJECTS_STORED;
use bytes::Bytes;
use kubus_apimachinery::patch::{patch_meta, strategic};
use kubus_apimachinery::table::format_rfc3339;
use kubus_apimachinery::{validation, Cause, ResourceInfo, StatusError, Subresource};
use kubus_bus::{Key, Store, StoreError};
use serde_json::{json, Map, Value};
use std::time::{Duration, SystemTime};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum FieldValidation {
    Ignore,
    #[default]
    Warn,
    Strict,
}

impl FieldValidation {
    pub fn parse(s: Option<&str>) -> Result<Self, StatusError> {
        match s {
            None | Some("Warn") => Ok(FieldValidation::Warn),
            Some("Strict") => Ok(FieldValidation::Strict),
            Some("Ignore") => Ok(FieldValidation::Ignore),
            Some(o) => Err(StatusError::bad_request(format!(
                "fieldValidation parameter unsupported: {o:?}; supported values: \"Ignore\", \"Warn\", \"Strict\""
            ))),
        }
    }
}

#[derive(Debug, Clone, Default)]
pub struct WriteOptions {
    pub dry_run: bool,
    pub field_validation: FieldValidation,
    pub field_manager: Option<String>,
    pub force: bool,
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

/// Maps a store failure to its API status (without object details).
pub fn store_error_plain(e: StoreError) -> StatusError {
    match e {
        StoreError::Gone { requested, oldest } => {
            StatusError::gone(format!("too old resource version: {requested} ({oldest})"))
        }
        StoreError::TooLarge { size, limit, .. } => {
            StatusError::too_large(format!("object is too large: {size} bytes, limit {limit} bytes"))
        }
        StoreError::Unavailable(m) => StatusError::unavailable(format!("storage unavailable: {m}")),
        other => StatusError::internal(other.to_string()),
    }
}

fn store_error(info: &'static ResourceInfo, name: &str, e: StoreError) -> StatusError {
    match e {
        StoreError::AlreadyExists(_) => StatusError::already_exists(info.group, info.resource, name),
        StoreError::NotFound(_) => StatusError::not_found(info.group, info.resource, name),
        StoreError::Conflict { .. } => conflict(info, name),
        other => store_error_plain(other),
    }
}

fn conflict(info: &'static ResourceInfo, name: &str) -> StatusError {
    StatusError::conflict(
        info.group,
        info.resource,
        name,
        "the object has been modified; please apply your changes to the latest version and try again",
    )
}

pub fn now() -> String {
    format_rfc3339(SystemTime::now())
}

fn meta(obj: &mut Value) -> &mut Map<String, Value> {
    if !obj.get("metadata").is_some_and(Value::is_object) {
        obj["metadata"] = json!({});
    }
    obj["metadata"].as_object_mut().expect("metadata is an object")
}

fn random_suffix() -> String {
    // Upstream's alphabet: no vowels (no words) and no look-alike characters.
    const ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
    uuid::Uuid::new_v4().as_bytes()[..5].iter().map(|b| ALPHABET[*b as usize % ALPHABET.len()] as char).collect()
}

#[derive(Clone)]
pub struct Storage {
    pub store: Store,
    pub cache: WatchCache,
    pub ranges: crate::allocator::ServiceRanges,
}

impl Storage {
    pub fn key(info: &ResourceInfo, ns: Option<&str>, name: &str) -> Key {
        Key::new(info.storage_group, info.storage_resource, if info.namespaced { ns } else { None }, name)
    }

    /// The stored object (storage form) and its revision, read from the store leader.
    async fn current(
        &self,
        info: &'static ResourceInfo,
        ns: Option<&str>,
        name: &str,
    ) -> Result<(Value, u64), StatusError> {
        match self.store.get(&Self::key(info, ns, name)).await.map_err(|e| store_error(info, name, e))? {
            Some(o) => Ok((with_revision(&o.value, o.revision)?, o.revision)),
            None => Err(StatusError::not_found(info.group, info.resource, name)),
        }
    }

    pub async fn get(&self, info: &'static ResourceInfo, ns: Option<&str>, name: &str) -> Result<Value, StatusError> {
        let (v, _) = self.current(info, ns, name).await?;
        Ok(convert::to_version(info, v))
    }

    /// Decodes a request body into the kind's typed form and back: malformed fields are a
    /// 400, unknown fields a warning or (Strict) a 400, and the result is canonical JSON.
    pub fn decode(
        info: &'static ResourceInfo,
        mut body: Value,
        fv: FieldValidation,
    ) -> Result<(Value, Vec<String>), StatusError> {
        let Some(obj) = body.as_object_mut() else {
            return Err(StatusError::bad_request(format!(
                "{} in version \"{}\" cannot be handled as a {}: expected a JSON object",
                info.kind, info.version, info.kind
            )));
        };
        let api_version = info.api_version();
        match obj.get("apiVersion").and_then(Value::as_str) {
            None | Some("") => {}
            Some(v) if v == api_version => {}
            Some(v) => {
                return Err(StatusError::bad_request(format!(
                    "the API version in the data ({v}) does not match the expected API version ({api_version})"
                )))
            }
        }
        match obj.get("kind").and_then(Value::as_str) {
            None | Some("") => {}
            Some(k) if k == info.kind => {}
            Some(k) => {
                return Err(StatusError::bad_request(format!(
                    "the kind in the data ({k}) does not match the expected kind ({})",
                    info.kind
                )))
            }
        }
        obj.insert("apiVersion".into(), json!(api_version));
        obj.insert("kind".into(), json!(info.kind));
        let decoded = (info.round_trip)(body.clone()).map_err(|e| {
            StatusError::bad_request(format!(
                "{} in version \"{}\" cannot be handled as a {}: {e}",
                info.kind, info.version, info.kind
            ))
        })?;
        let mut unknown = Vec::new();
        unknown_fields(&body, &decoded, "", &mut unknown);
        let mut warnings = Vec::new();
        if !unknown.is_empty() {
            let msgs: Vec<String> = unknown.iter().map(|f| format!("unknown field \"{f}\"")).collect();
            match fv {
                FieldValidation::Strict => {
                    return Err(StatusError::bad_request(format!("strict decoding error: {}", msgs.join(", "))))
                }
                FieldValidation::Warn => warnings = msgs,
                FieldValidation::Ignore => {}
            }
        }
        Ok((decoded, warnings))
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

    fn check_namespace(&self, info: &'static ResourceInfo, ns: Option<&str>) -> Result<(), StatusError> {
        if !info.namespaced {
            return Ok(());
        }
        let ns = ns.unwrap_or_default();
        match self.cache.namespace_phase(ns) {
            None => Err(StatusError::not_found("", "namespaces", ns)),
            Some(p) if p == "Terminating" => Err(StatusError::forbidden(format!(
                "{} \"{}\" is forbidden: unable to create new content in namespace {ns} because it is being terminated",
                info.resource, ""
            ))
            .with_details(info.group, info.resource, "")),
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
        let storage_info = convert::storage_info(info);
        let (mut obj, warnings) = Self::decode(storage_info, body, opts.field_validation)?;
        let m = meta(&mut obj);
        if info.namespaced {
            match (m.get("namespace").and_then(Value::as_str), ns) {
                (Some(a), Some(b)) if !a.is_empty() && a != b => {
                    return Err(StatusError::bad_request(
                        "the namespace of the provided object does not match the namespace sent on the request",
                    ))
                }
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
                    kubus_apimachinery::CauseType::FieldValueRequired,
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
        if storage_info.tracks_generation {
            m.insert("generation".into(), json!(1));
        } else {
            m.remove("generation");
        }
        prepare_for_create(storage_info, &mut obj);
        validation::apply_defaults(storage_info.group, storage_info.kind, &mut obj);
        let causes = validation::validate_create(storage_info.group, storage_info.kind, &obj);
        if !causes.is_empty() {
            return Err(StatusError::invalid(storage_info.group, storage_info.kind, &name, causes));
        }
        self.check_namespace(info, ns)?;
        let mut bytes = serde_json::to_vec(&obj).map_err(|e| StatusError::internal(e.to_string()))?;
        self.check_size(&bytes)?;
        if opts.dry_run {
            return Ok(Outcome { object: convert::to_version(info, obj), created: true, warnings });
        }
        let key = Self::key(info, ns, &name);
        // Services get their ClusterIP and node ports here (upstream's registry does too).
        let reserved = if storage_info.resource == "services" {
            let held = crate::allocator::allocate(&self.store, &self.ranges, &mut obj).await?;
            bytes = serde_json::to_vec(&obj).map_err(|e| StatusError::internal(e.to_string()))?;
            held
        } else {
            Vec::new()
        };
        let rev = match self.store.create(&key, Bytes::from(bytes)).await {
            Ok(rev) => rev,
            Err(e) => {
                crate::allocator::release_all(&self.store, &reserved).await;
                return Err(store_error(info, &name, e));
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
        let storage_info = convert::storage_info(info);
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
                        return Err(StatusError::bad_request(
                            "the namespace of the provided object does not match the namespace sent on the request",
                        ));
                    }
                }
            }
            prepare_for_update(storage_info, sub, &old, &mut new);
            // Values the server allocated (ClusterIPs, node ports, ...) survive a replace that
            // leaves them out, as upstream's update does.
            if sub.is_none() {
                validation::carry_over_for_update(storage_info.group, storage_info.kind, &mut new, &old);
            }
            validation::apply_defaults(storage_info.group, storage_info.kind, &mut new);
            let causes = match sub {
                Some(Subresource::Status | Subresource::Binding) => {
                    validation::validate_status_update(storage_info.group, storage_info.kind, &new, &old)
                }
                _ => validation::validate_update(storage_info.group, storage_info.kind, &new, &old),
            };
            if !causes.is_empty() {
                return Err(StatusError::invalid(storage_info.group, storage_info.kind, name, causes));
            }
            // Unchanged objects are not written: the resourceVersion stays, nothing is sent.
            let mut compare_new = new.clone();
            meta(&mut compare_new).insert("resourceVersion".into(), json!(rev.to_string()));
            if compare_new == old {
                return Ok(Outcome { object: convert::to_version(info, old), created: false, warnings });
            }
            meta(&mut new).remove("resourceVersion");
            let key = Self::key(info, ns, name);
            // The last finalizer of an object being deleted has gone: it goes now.
            let finalized = new["metadata"]["deletionTimestamp"].is_string()
                && new["metadata"]["finalizers"].as_array().is_none_or(|f| f.is_empty())
                && !(storage_info.resource == "namespaces"
                    && new["spec"]["finalizers"].as_array().is_some_and(|f| !f.is_empty()))
                && !(storage_info.resource == "pods" && graceful_pending(&new));
            let bytes = serde_json::to_vec(&new).map_err(|e| StatusError::internal(e.to_string()))?;
            self.check_size(&bytes)?;
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
                    OBJECTS_STORED
                        .with_label_values(&[info.resource, if finalized { "delete" } else { "update" }])
                        .inc();
                    meta(&mut new).insert("resourceVersion".into(), json!(new_rev.to_string()));
                    return Ok(Outcome { object: convert::to_version(info, new), created: false, warnings });
                }
                Err(StoreError::Conflict { .. }) if requested_rv.is_empty() => continue,
                Err(StoreError::Conflict { .. }) => return Err(conflict(info, name)),
                Err(e) => return Err(store_error(info, name, e)),
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
        let (decoded, warnings) = Self::decode(convert::storage_info(info), body, opts.field_validation)?;
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
        if kind == PatchKind::Apply {
            if opts.field_manager.as_deref().unwrap_or("").is_empty() {
                return Err(StatusError::bad_request(
                    "PatchOptions.meta.k8s.io \"\" is invalid: fieldManager: Required value: is required for apply patch",
                ));
            }
            if sub.is_none() {
                if let Err(e) = self.current(info, ns, name).await {
                    if e.code == 404 {
                        let mut obj = patch.clone();
                        meta(&mut obj).insert("name".into(), json!(name));
                        record_apply_manager(&mut obj, opts);
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
                record_apply_manager(&mut patched, opts);
            }
            // A patch only names the resourceVersion to demand it; otherwise keep the current one
            // out so a lost race is retried.
            let demanded = patch_demands_rv(kind, &patch);
            if !demanded {
                meta(&mut patched).remove("resourceVersion");
            }
            let patched = convert::from_version(info, patched)?;
            Self::decode(convert::storage_info(info), patched, opts.field_validation)
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
        if info.resource == "namespaces" && matches!(name, "default" | "kube-system" | "kube-public") {
            return Err(StatusError::forbidden(format!(
                "namespaces \"{name}\" is forbidden: this namespace may not be deleted"
            ))
            .with_details("", "namespaces", name));
        }
        for _ in 0..16 {
            let (cur, rev) = self.current(info, ns, name).await?;
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
                    return Err(StatusError::conflict(info.group, info.resource, name, &format!(
                        "Precondition failed: ResourceVersion in precondition: {want}, ResourceVersion in object meta: {rev}"
                    )));
                }
            }
            let mut obj = cur.clone();
            let mut finalizers: Vec<Value> = obj["metadata"]["finalizers"].as_array().cloned().unwrap_or_default();
            let add = |f: &mut Vec<Value>, name: &str| {
                if !f.iter().any(|v| v == name) {
                    f.push(json!(name));
                }
            };
            // The propagation policy is recorded as upstream does, as a finalizer the garbage
            // collector acts on.
            match opts.propagation.as_deref() {
                Some("Foreground") => add(&mut finalizers, "foregroundDeletion"),
                Some("Orphan") => add(&mut finalizers, "orphan"),
                Some("Background") | None => {}
                Some(other) => {
                    return Err(StatusError::invalid(
                        "meta.k8s.io",
                        "DeleteOptions",
                        "",
                        vec![Cause::not_supported(
                            "propagationPolicy",
                            &json!(other),
                            &["Foreground", "Background", "Orphan"],
                        )],
                    ))
                }
            }
            let already_deleting = obj["metadata"]["deletionTimestamp"].is_string();
            let m = meta(&mut obj);
            if !finalizers.is_empty() {
                m.insert("finalizers".into(), Value::Array(finalizers.clone()));
            }
            let storage_info = convert::storage_info(info);
            let grace = if storage_info.resource == "pods" { pod_grace(&cur, opts.grace_period) } else { 0 };
            let pending = if storage_info.resource == "namespaces" {
                if !already_deleting {
                    m.insert("deletionTimestamp".into(), json!(now()));
                    m.insert("deletionGracePeriodSeconds".into(), json!(0));
                    obj["status"]["phase"] = json!("Terminating");
                }
                true
            } else if grace > 0 || !finalizers.is_empty() {
                let current_grace = cur["metadata"]["deletionGracePeriodSeconds"].as_i64();
                if !already_deleting || current_grace.is_some_and(|g| grace < g) {
                    let when = SystemTime::now() + Duration::from_secs(grace as u64);
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
            let (op, verb) = if pending { (WriteOp::Update, "update") } else { (WriteOp::Delete, "delete") };
            meta(&mut obj).remove("resourceVersion");
            let bytes = serde_json::to_vec(&obj).map_err(|e| StatusError::internal(e.to_string()))?;
            let result = match op {
                WriteOp::Update => self.store.update(&key, Bytes::from(bytes), rev).await,
                WriteOp::Delete => self.store.delete(&key, Bytes::from(bytes), rev).await,
            };
            match result {
                Ok(r) => {
                    if op == WriteOp::Delete && info.resource == "services" {
                        crate::allocator::release_all(&self.store, &crate::allocator::held_by(&obj)).await;
                    }
                    OBJECTS_STORED.with_label_values(&[info.resource, verb]).inc();
                    meta(&mut obj).insert("resourceVersion".into(), json!(r.to_string()));
                    return Ok(convert::to_version(info, obj));
                }
                Err(StoreError::Conflict { .. }) => continue,
                Err(e) => return Err(store_error(info, name, e)),
            }
        }
        Err(StatusError::conflict(info.group, info.resource, name, "too many concurrent writers; try again"))
    }
}

#[derive(PartialEq, Eq)]
enum WriteOp {
    Update,
    Delete,
}

/// Seconds a pod gets to terminate: immediate for pods no node runs, else the request's or the
/// pod's own terminationGracePeriodSeconds.
fn pod_grace(pod: &Value, requested: Option<i64>) -> i64 {
    let scheduled = pod["spec"]["nodeName"].as_str().is_some_and(|n| !n.is_empty());
    let finished = matches!(pod["status"]["phase"].as_str(), Some("Succeeded" | "Failed"));
    if !scheduled || finished {
        return 0;
    }
    requested.unwrap_or_else(|| pod["spec"]["terminationGracePeriodSeconds"].as_i64().unwrap_or(30)).max(0)
}

fn graceful_pending(pod: &Value) -> bool {
    pod["metadata"]["deletionGracePeriodSeconds"].as_i64().is_some_and(|g| g > 0)
}

fn prepare_for_create(info: &'static ResourceInfo, obj: &mut Value) {
    match (info.group, info.kind) {
        ("", "Pod") => {
            let qos = qos_class(obj);
            obj["status"] = json!({"phase": "Pending", "qosClass": qos});
        }
        ("apps", "Deployment" | "ReplicaSet") => {
            obj["status"] = json!({});
        }
        ("", "Namespace") => {
            obj["status"] = json!({"phase": "Active"});
        }
        ("", "Service") => {
            obj["status"] = json!({"loadBalancer": {}});
        }
        _ => {}
    }
}

/// Keeps what an update of the main resource may not change (status, identity) and what a
/// status update may not change (spec, identity, owners).
fn prepare_for_update(info: &'static ResourceInfo, sub: Option<Subresource>, old: &Value, new: &mut Value) {
    let old_meta = old["metadata"].as_object().cloned().unwrap_or_default();
    {
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
    match sub {
        // A binding writes spec.nodeName and the PodScheduled condition together.
        Some(Subresource::Binding) => {}
        Some(Subresource::Status) => {
            match old.get("spec") {
                Some(s) => new["spec"] = s.clone(),
                None => {
                    new.as_object_mut().map(|o| o.remove("spec"));
                }
            }
            // A status write changes the status only: a controller that sends just the status
            // must not wipe labels, annotations, owners or finalizers.
            new["metadata"] = Value::Object(old_meta.clone());
        }
        _ if info.has(Subresource::Status) => {
            match old.get("status") {
                Some(s) => new["status"] = s.clone(),
                None => {
                    new.as_object_mut().map(|o| o.remove("status"));
                }
            }
            if info.tracks_generation && new.get("spec") != old.get("spec") {
                let g = old_meta.get("generation").and_then(Value::as_i64).unwrap_or(1);
                meta(new).insert("generation".into(), json!(g + 1));
            }
        }
        _ => {}
    }
}

fn qos_class(pod: &Value) -> &'static str {
    let containers: Vec<&Value> =
        ["containers", "initContainers"].iter().flat_map(|f| pod["spec"][f].as_array().into_iter().flatten()).collect();
    let mut any = false;
    let mut guaranteed = true;
    for c in &containers {
        let req = &c["resources"]["requests"];
        let lim = &c["resources"]["limits"];
        for r in ["cpu", "memory"] {
            let (q, l) = (req.get(r).or(lim.get(r)), lim.get(r));
            if q.is_some() || l.is_some() {
                any = true;
            }
            if l.is_none() || q != l {
                guaranteed = false;
            }
        }
    }
    if !any {
        "BestEffort"
    } else if guaranteed {
        "Guaranteed"
    } else {
        "Burstable"
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PatchKind {
    Json,
    Merge,
    Strategic,
    Apply,
}

impl PatchKind {
    pub fn from_content_type(ct: &str) -> Result<Self, StatusError> {
        let media = ct.split(';').next().unwrap_or("").trim();
        match media {
            "application/json-patch+json" => Ok(PatchKind::Json),
            "application/merge-patch+json" => Ok(PatchKind::Merge),
            "application/strategic-merge-patch+json" => Ok(PatchKind::Strategic),
            "application/apply-patch+yaml" | "application/apply-patch+cbor" => Ok(PatchKind::Apply),
            _ => Err(StatusError::unsupported_media_type(ct)),
        }
    }
}

fn patch_demands_rv(kind: PatchKind, patch: &Value) -> bool {
    match kind {
        PatchKind::Json => patch
            .as_array()
            .is_some_and(|ops| ops.iter().any(|op| op["path"] == "/metadata/resourceVersion" && op["op"] != "remove")),
        _ => patch["metadata"]["resourceVersion"].is_string(),
    }
}

/// Applies a patch of one of the four kinds to `old` (API version form).
pub fn apply_patch(kind: PatchKind, old: &Value, patch: &Value, root: Option<&str>) -> Result<Value, StatusError> {
    match kind {
        PatchKind::Json => {
            let ops: json_patch::Patch = serde_json::from_value(patch.clone())
                .map_err(|e| StatusError::bad_request(format!("error decoding JSON patch: {e}")))?;
            let mut doc = old.clone();
            json_patch::patch(&mut doc, &ops).map_err(|e| {
                StatusError::new(
                    422,
                    "Invalid",
                    format!("the server rejected our request due to an error in our request: {e}"),
                )
            })?;
            Ok(doc)
        }
        PatchKind::Merge => {
            if !patch.is_object() {
                return Err(StatusError::bad_request("a merge patch must be a JSON object"));
            }
            let mut doc = old.clone();
            json_patch::merge(&mut doc, patch);
            Ok(doc)
        }
        PatchKind::Strategic | PatchKind::Apply => {
            strategic::strategic_merge(old, patch, root).map_err(|e| StatusError::bad_request(e.to_string()))
        }
    }
}

/// Server-side apply records its manager; field ownership is not tracked beyond that entry.
fn record_apply_manager(obj: &mut Value, opts: &WriteOptions) {
    let manager = opts.field_manager.clone().unwrap_or_default();
    let api_version = obj["apiVersion"].as_str().unwrap_or("").to_string();
    let m = meta(obj);
    let mut fields: Vec<Value> = m.get("managedFields").and_then(Value::as_array).cloned().unwrap_or_default();
    fields.retain(|f| !(f["manager"] == manager.as_str() && f["operation"] == "Apply"));
    fields.push(json!({"manager": manager, "operation": "Apply", "apiVersion": api_version, "time": now(), "fieldsType": "FieldsV1", "fieldsV1": {}}));
    m.insert("managedFields".into(), Value::Array(fields));
}

/// Paths of fields present (and not null) in `input` but dropped by the typed round trip.
fn unknown_fields(input: &Value, decoded: &Value, path: &str, out: &mut Vec<String>) {
    match (input, decoded) {
        (Value::Object(a), Value::Object(b)) => {
            for (k, v) in a {
                if v.is_null() {
                    continue;
                }
                let p = if path.is_empty() { k.clone() } else { format!("{path}.{k}") };
                match b.get(k) {
                    None => out.push(p),
                    Some(d) => unknown_fields(v, d, &p, out),
                }
            }
        }
        (Value::Array(a), Value::Array(b)) => {
            for (i, (x, y)) in a.iter().zip(b).enumerate() {
                unknown_fields(x, y, &format!("{path}[{i}]"), out);
            }
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_fields_are_found_with_paths() {
        let pods = kubus_apimachinery::resource::find("", "v1", "pods").unwrap();
        let body = json!({"metadata":{"name":"p"},"spec":{"containers":[{"name":"c","image":"i","imagePullPolicyy":"x"}],"bogus":1}});
        let err = Storage::decode(pods, body.clone(), FieldValidation::Strict).unwrap_err();
        assert_eq!(err.code, 400);
        assert!(err.message.contains("unknown field \"spec.bogus\""), "{}", err.message);
        assert!(err.message.contains("spec.containers[0].imagePullPolicyy"), "{}", err.message);
        let (_, warnings) = Storage::decode(pods, body, FieldValidation::Warn).unwrap();
        assert_eq!(warnings.len(), 2);
    }

    #[test]
    fn wrong_types_are_bad_requests() {
        let pods = kubus_apimachinery::resource::find("", "v1", "pods").unwrap();
        let err = Storage::decode(pods, json!({"spec":{"containers":5}}), FieldValidation::Warn).unwrap_err();
        assert_eq!((err.code, err.reason), (400, "BadRequest"));
        let err = Storage::decode(pods, json!({"apiVersion":"apps/v1"}), FieldValidation::Warn).unwrap_err();
        assert!(err.message.contains("does not match the expected API version"));
    }

    #[test]
    fn qos() {
        assert_eq!(qos_class(&json!({"spec":{"containers":[{"name":"a"}]}})), "BestEffort");
        assert_eq!(
            qos_class(&json!({"spec":{"containers":[{"resources":{"limits":{"cpu":"1","memory":"1Gi"}}}]}})),
            "Guaranteed"
        );
        assert_eq!(qos_class(&json!({"spec":{"containers":[{"resources":{"requests":{"cpu":"1"}}}]}})), "Burstable");
    }
}
