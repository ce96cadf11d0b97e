//! Persistent storage: PersistentVolumes, PersistentVolumeClaims (core/v1) and StorageClasses
//! (storage.k8s.io/v1), as upstream's `ValidatePersistentVolume`,
//! `ValidatePersistentVolumeClaim(Update)` and `ValidateStorageClass(Update)`.

use serde_json::Value;

use super::meta::{self, NameRule, Scope};
use super::names;
use super::util::*;
use crate::quantity::parse_quantity;
use crate::status::Cause;

const ACCESS_MODES: &[&str] = &["ReadOnlyMany", "ReadWriteMany", "ReadWriteOnce", "ReadWriteOncePod"];
/// Volume sources Kubus can mount (a PV must name exactly one kind of source).
const PV_SOURCES: &[&str] = &[
    "hostPath",
    "local",
    "nfs",
    "csi",
    "iscsi",
    "fc",
    "rbd",
    "cephfs",
    "cinder",
    "flexVolume",
    "azureFile",
    "azureDisk",
    "awsElasticBlockStore",
    "gcePersistentDisk",
    "glusterfs",
    "portworxVolume",
    "scaleIO",
    "storageos",
    "vsphereVolume",
    "quobyte",
    "photonPersistentDisk",
    "flocker",
];

fn access_modes(errs: &mut Vec<Cause>, spec: &Value, path: &str) {
    let modes = get_arr(spec, "accessModes");
    if modes.is_empty() {
        errs.push(Cause::required(path));
    }
    for m in modes {
        let s = m.as_str().unwrap_or("");
        if !ACCESS_MODES.contains(&s) {
            errs.push(Cause::not_supported(path, m, ACCESS_MODES));
        }
    }
    if modes.iter().any(|m| m == "ReadWriteOncePod") && modes.len() > 1 {
        errs.push(Cause::forbidden(path, "may not use ReadWriteOncePod with other access modes"));
    }
}

fn storage_quantity(errs: &mut Vec<Cause>, list: &Value, path: &str) {
    match get(list, "storage") {
        None => errs.push(Cause::required(path)),
        Some(q) => match q.as_str().map(parse_quantity) {
            Some(Ok(v)) if v.value() > 0 => {}
            Some(Ok(_)) => errs.push(Cause::invalid(path, q, "must be greater than zero")),
            _ => errs.push(Cause::invalid(path, q, "must be a valid quantity")),
        },
    }
}

fn volume_mode(errs: &mut Vec<Cause>, spec: &Value, path: &str) {
    if let Some(m) = get(spec, "volumeMode") {
        let s = m.as_str().unwrap_or("");
        if s != "Filesystem" && s != "Block" {
            errs.push(Cause::not_supported(path, m, &["Block", "Filesystem"]));
        }
    }
}

pub(crate) fn validate_persistent_volume(pv: &Value) -> Vec<Cause> {
    let mut errs = meta::validate_object_meta(pv, Scope::Cluster, NameRule::Subdomain);
    let spec = sub(pv, "spec");
    access_modes(&mut errs, spec, "spec.accessModes");
    match get(spec, "capacity") {
        None => errs.push(Cause::required("spec.capacity")),
        Some(cap) => storage_quantity(&mut errs, cap, "spec.capacity.storage"),
    }
    volume_mode(&mut errs, spec, "spec.volumeMode");
    match get_str(spec, "persistentVolumeReclaimPolicy") {
        "Retain" | "Delete" | "Recycle" => {}
        other => errs.push(Cause::not_supported(
            "spec.persistentVolumeReclaimPolicy",
            &str_value(other),
            &["Delete", "Recycle", "Retain"],
        )),
    }
    let sources: Vec<&&str> = PV_SOURCES.iter().filter(|s| get(spec, s).is_some()).collect();
    match sources.len() {
        0 => errs.push(required_detail("spec", "must specify a volume type")),
        1 => {}
        _ => errs.push(Cause::forbidden(format!("spec.{}", sources[1]), "may not specify more than 1 volume type")),
    }
    if let Some(hp) = get(spec, "hostPath") {
        if get_str(hp, "path").is_empty() {
            errs.push(Cause::required("spec.hostPath.path"));
        }
    }
    if let Some(local) = get(spec, "local") {
        if get_str(local, "path").is_empty() {
            errs.push(Cause::required("spec.local.path"));
        }
        // A local volume is on one node: without node affinity a pod could land anywhere.
        if get(spec, "nodeAffinity").is_none() {
            errs.push(required_detail("spec.nodeAffinity", "Local volume requires node affinity"));
        }
    }
    if let Some(class) = get(spec, "storageClassName").and_then(Value::as_str).filter(|c| !c.is_empty()) {
        invalid_each(&mut errs, "spec.storageClassName", class, names::dns1123_subdomain_errors(class));
    }
    errs
}

pub(crate) fn validate_persistent_volume_update(new: &Value, old: &Value) -> Vec<Cause> {
    let mut errs = validate_persistent_volume(new);
    let (ns, os) = (sub(new, "spec"), sub(old, "spec"));
    // The volume source never changes once created.
    for f in PV_SOURCES {
        if !semantic_eq(get(ns, f), get(os, f)) {
            errs.push(Cause::invalid(format!("spec.{f}"), sub(ns, f), IMMUTABLE));
        }
    }
    if !semantic_eq(get(ns, "volumeMode"), get(os, "volumeMode")) {
        errs.push(Cause::invalid("spec.volumeMode", sub(ns, "volumeMode"), IMMUTABLE));
    }
    errs
}

pub(crate) fn validate_persistent_volume_claim(pvc: &Value) -> Vec<Cause> {
    let mut errs = meta::validate_object_meta(pvc, Scope::Namespaced, NameRule::Subdomain);
    let spec = sub(pvc, "spec");
    access_modes(&mut errs, spec, "spec.accessModes");
    if let Some(sel) = get(spec, "selector") {
        errs.extend(meta::validate_label_selector(sel, "spec.selector"));
    }
    let requests = sub(sub(spec, "resources"), "requests");
    if requests.is_null() {
        errs.push(Cause::required("spec.resources.requests.storage"));
    } else {
        storage_quantity(&mut errs, requests, "spec.resources.requests.storage");
    }
    volume_mode(&mut errs, spec, "spec.volumeMode");
    if let Some(class) = get(spec, "storageClassName").and_then(Value::as_str).filter(|c| !c.is_empty()) {
        invalid_each(&mut errs, "spec.storageClassName", class, names::dns1123_subdomain_errors(class));
    }
    errs
}

/// A claim's spec is fixed once created, except its requests (expansion) and a volumeName set
/// once by the binder.
pub(crate) fn validate_persistent_volume_claim_update(new: &Value, old: &Value) -> Vec<Cause> {
    let mut errs = validate_persistent_volume_claim(new);
    let (mut ns, mut os) = (sub(new, "spec").clone(), sub(old, "spec").clone());
    // The binder sets volumeName once; a claim without a class gets the default one later
    // (upstream's retroactive default StorageClass assignment).
    for f in ["volumeName", "storageClassName"] {
        let unset = if f == "volumeName" { get_str(&os, f).is_empty() } else { get(&os, f).is_none() };
        if unset {
            if let (Some(o), Some(n)) = (os.as_object_mut(), ns.get(f).cloned()) {
                o.insert(f.into(), n);
            }
        }
    }
    for spec in [&mut ns, &mut os] {
        if let Some(r) = spec.get_mut("resources").and_then(Value::as_object_mut) {
            r.remove("requests");
        }
    }
    if normalized(&ns) != normalized(&os) {
        errs.push(Cause::forbidden(
            "spec",
            format!(
                "spec is immutable after creation except resources.requests and volumeAttributesClassName for bound claims\n{}",
                describe_diff(&os, &ns)
            ),
        ));
    }
    // Shrinking is refused.
    let req = |v: &Value| {
        v.pointer("/spec/resources/requests/storage").and_then(Value::as_str).and_then(|s| parse_quantity(s).ok())
    };
    if let (Some(n), Some(o)) = (req(new), req(old)) {
        if n.value() < o.value() {
            errs.push(Cause::forbidden("spec.resources.requests.storage", "field can not be less than previous value"));
        }
    }
    errs
}

pub(crate) fn validate_storage_class(sc: &Value) -> Vec<Cause> {
    let mut errs = meta::validate_object_meta(sc, Scope::Cluster, NameRule::Subdomain);
    let provisioner = get_str(sc, "provisioner");
    if provisioner.is_empty() {
        errs.push(Cause::required("provisioner"));
    } else {
        invalid_each(&mut errs, "provisioner", provisioner, names::qualified_name_errors(provisioner));
    }
    match get(sc, "reclaimPolicy").and_then(Value::as_str) {
        None | Some("Delete" | "Retain") => {}
        Some(p) => errs.push(Cause::not_supported("reclaimPolicy", &str_value(p), &["Delete", "Retain"])),
    }
    match get(sc, "volumeBindingMode").and_then(Value::as_str) {
        None => errs.push(Cause::required("volumeBindingMode")),
        Some("Immediate" | "WaitForFirstConsumer") => {}
        Some(m) => {
            errs.push(Cause::not_supported("volumeBindingMode", &str_value(m), &["Immediate", "WaitForFirstConsumer"]))
        }
    }
    errs
}

pub(crate) fn validate_storage_class_update(new: &Value, old: &Value) -> Vec<Cause> {
    let mut errs = validate_storage_class(new);
    for f in ["parameters", "provisioner", "reclaimPolicy", "volumeBindingMode"] {
        if !semantic_eq(get(new, f), get(old, f)) {
            let msg = if f == "parameters" { "updates to parameters are forbidden." } else { IMMUTABLE };
            if f == "parameters" {
                errs.push(Cause::forbidden(f, msg));
            } else {
                errs.push(Cause::invalid(f, sub(new, f), msg));
            }
        }
    }
    errs
}
