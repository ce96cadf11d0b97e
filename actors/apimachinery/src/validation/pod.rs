//! Pods, pod templates and pod specs: upstream `ValidatePodSpec`, `ValidatePodUpdate` and
//! `ValidatePodStatusUpdate`, over JSON. Validation expects defaulted objects, as upstream
//! does: fields the defaulter always fills (restartPolicy, dnsPolicy, imagePullPolicy, ...)
//! are required here.

use std::collections::{BTreeSet, HashMap, HashSet};

use serde_json::{Map, Value};

use super::meta::{self, NameRule, Scope};
use super::names;
use super::quantity::{self, Quantity};
use super::util::*;
use crate::status::Cause;

const MIRROR_ANNOTATION: &str = "kubernetes.io/config.mirror";
const DELETION_COST_ANNOTATION: &str = "controller.kubernetes.io/pod-deletion-cost";
const APPARMOR_PREFIX: &str = "container.apparmor.security.beta.kubernetes.io/";
const FILE_MODE_ERROR: &str = "must be a number between 0 and 0777 (octal), both inclusive";
const MAX_ID: i64 = 4_294_967_295;

const UPDATABLE_POD_SPEC_FIELDS: [&str; 5] = [
    "`spec.containers[*].image`",
    "`spec.initContainers[*].image`",
    "`spec.activeDeadlineSeconds`",
    "`spec.tolerations` (only additions to existing tolerations)",
    "`spec.terminationGracePeriodSeconds` (allow it to be set to 1 if it was previously negative)",
];

/// Volume source members, in the order upstream counts them for "more than 1 volume type".
const VOLUME_SOURCES: [&str; 30] = [
    "emptyDir",
    "hostPath",
    "gitRepo",
    "gcePersistentDisk",
    "awsElasticBlockStore",
    "secret",
    "nfs",
    "iscsi",
    "glusterfs",
    "flocker",
    "persistentVolumeClaim",
    "rbd",
    "cinder",
    "cephfs",
    "quobyte",
    "downwardAPI",
    "fc",
    "flexVolume",
    "configMap",
    "azureFile",
    "vsphereVolume",
    "photonPersistentDisk",
    "portworxVolume",
    "azureDisk",
    "storageos",
    "projected",
    "scaleIO",
    "csi",
    "ephemeral",
    "image",
];

/// Downward API paths an environment variable may read.
const ENV_FIELD_PATHS: [&str; 9] = [
    "metadata.name",
    "metadata.namespace",
    "metadata.uid",
    "spec.nodeName",
    "spec.serviceAccountName",
    "status.hostIP",
    "status.hostIPs",
    "status.podIP",
    "status.podIPs",
];

/// Downward API paths a volume file may read.
const VOLUME_FIELD_PATHS: [&str; 5] =
    ["metadata.annotations", "metadata.labels", "metadata.name", "metadata.namespace", "metadata.uid"];

/// Field labels upstream's downward API conversion accepts at all for v1 pods.
const CONVERTIBLE_FIELD_PATHS: [&str; 14] = [
    "metadata.annotations",
    "metadata.labels",
    "metadata.name",
    "metadata.namespace",
    "metadata.uid",
    "spec.nodeName",
    "spec.restartPolicy",
    "spec.serviceAccountName",
    "spec.schedulerName",
    "status.phase",
    "status.hostIP",
    "status.hostIPs",
    "status.podIP",
    "status.podIPs",
];

const RESOURCE_FIELD_PATHS: [&str; 6] = [
    "limits.cpu",
    "limits.ephemeral-storage",
    "limits.memory",
    "requests.cpu",
    "requests.ephemeral-storage",
    "requests.memory",
];

/// Whether the spec belongs to a Pod or to a template inside a workload; a few rules are
/// stricter for real pods.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Opts {
    pub(crate) is_pod: bool,
}

/// Volumes that validated cleanly, by name; mounts may only refer to these.
type Volumes<'a> = HashMap<&'a str, &'a Value>;

fn dns_label(errs: &mut Vec<Cause>, value: &str, path: &str) {
    invalid_each(errs, path, value, names::dns1123_label_errors(value));
}

fn dns_subdomain(errs: &mut Vec<Cause>, value: &str, path: &str) {
    invalid_each(errs, path, value, names::dns1123_subdomain_errors(value));
}

fn qualified(errs: &mut Vec<Cause>, value: &str, path: &str) {
    invalid_each(errs, path, value, names::qualified_name_errors(value));
}

fn port_num(errs: &mut Vec<Cause>, n: i64, path: &str) {
    if !(1..=65535).contains(&n) {
        errs.push(Cause::invalid(path, &Value::from(n), names::inclusive_range_error(1, 65535)));
    }
}

fn one_of(errs: &mut Vec<Cause>, value: &str, path: &str, allowed: &[&str]) {
    if value.is_empty() {
        errs.push(Cause::required(path));
    } else if !allowed.contains(&value) {
        errs.push(Cause::not_supported(path, &str_value(value), allowed));
    }
}

/// An int-or-string port: a number in range or an IANA port name.
pub(crate) fn validate_port_num_or_name(errs: &mut Vec<Cause>, v: Option<&Value>, path: &str) {
    match v {
        Some(Value::String(s)) => invalid_each(errs, path, s, names::port_name_errors(s)),
        Some(n) => match as_int(n) {
            Some(i) => port_num(errs, i, path),
            None => errs.push(Cause::invalid(path, n, "must be an integer or an IANA port name")),
        },
        None => port_num(errs, 0, path),
    }
}

fn id_range(errs: &mut Vec<Cause>, v: &Value, k: &str, path: &str) {
    if let Some(id) = int_field(errs, v, k, path) {
        if !(0..=MAX_ID).contains(&id) {
            errs.push(Cause::invalid(path, &Value::from(id), names::inclusive_range_error(0, MAX_ID)));
        }
    }
}

fn file_mode(errs: &mut Vec<Cause>, v: &Value, k: &str, path: &str) {
    if let Some(m) = int_field(errs, v, k, path) {
        if !(0..=0o777).contains(&m) {
            errs.push(Cause::invalid(path, &Value::from(m), FILE_MODE_ERROR));
        }
    }
}

/// Pod create and update share these; create adds a few more.
pub(crate) fn validate_pod(pod: &Value) -> Vec<Cause> {
    let mut errs = meta::validate_object_meta(pod, Scope::Namespaced, NameRule::Subdomain);
    let spec = sub(pod, "spec");
    let annotations = sub(sub(pod, "metadata"), "annotations");
    errs.extend(pod_specific_annotations(annotations, spec, "metadata.annotations", true));
    errs.extend(validate_pod_spec(spec, "spec", Opts { is_pod: true }));

    // Projected tokens are minted for the pod's service account, so there must be one.
    if get_str(spec, "serviceAccountName").is_empty() {
        for (vi, vol) in get_arr(spec, "volumes").iter().enumerate() {
            let sources = get_arr(sub(vol, "projected"), "sources");
            for (si, src) in sources.iter().enumerate() {
                if get(src, "serviceAccountToken").is_some() {
                    errs.push(Cause::forbidden(
                        format!("spec.volumes[{vi}].projected.sources[{si}].serviceAccountToken"),
                        "must not be specified when serviceAccountName is not set",
                    ));
                }
            }
        }
    }
    for field in ["containers", "initContainers"] {
        for (i, c) in get_arr(spec, field).iter().enumerate() {
            let image = get_str(c, "image");
            if image.len() != image.trim().len() {
                errs.push(Cause::invalid(
                    format!("spec.{field}[{i}].image"),
                    &str_value(image),
                    "must not have leading or trailing whitespace",
                ));
            }
        }
    }
    errs
}

pub(crate) fn validate_pod_create(pod: &Value) -> Vec<Cause> {
    let mut errs = validate_pod(pod);
    if !get_arr(sub(pod, "spec"), "ephemeralContainers").is_empty() {
        errs.push(Cause::forbidden("spec.ephemeralContainers", "cannot be set on create"));
    }
    errs
}

fn pod_specific_annotations(annotations: &Value, spec: &Value, path: &str, strict: bool) -> Vec<Cause> {
    let mut errs = Vec::new();
    if let Some(v) = get(annotations, MIRROR_ANNOTATION) {
        if get_str(spec, "nodeName").is_empty() {
            errs.push(Cause::invalid(
                key(path, MIRROR_ANNOTATION),
                v,
                "must set spec.nodeName if mirror pod annotation is set",
            ));
        }
    }
    if let Some(v) = get(annotations, DELETION_COST_ANNOTATION) {
        let ok = v.as_str().is_some_and(|s| s.parse::<i32>().is_ok());
        if strict && !ok {
            errs.push(Cause::invalid(key(path, DELETION_COST_ANNOTATION), v, "must be a 32bit integer"));
        }
    }
    errs
}

/// Mirror-pod and AppArmor annotations are fixed once a pod exists.
fn pod_annotation_updates(new: &Value, old: &Value) -> Vec<Cause> {
    let path = "metadata.annotations";
    let na = get_obj(sub(new, "metadata"), "annotations");
    let oa = get_obj(sub(old, "metadata"), "annotations");
    let empty = Map::new();
    let (na, oa) = (na.unwrap_or(&empty), oa.unwrap_or(&empty));
    let mut errs = Vec::new();
    for (k, ov) in oa {
        if na.get(k) == Some(ov) {
            continue;
        }
        if k.starts_with(APPARMOR_PREFIX) {
            errs.push(Cause::forbidden(key(path, k), "may not remove or update AppArmor annotations"));
        }
        if k == MIRROR_ANNOTATION {
            errs.push(Cause::forbidden(key(path, k), "may not remove or update mirror pod annotation"));
        }
    }
    for k in na.keys().filter(|k| !oa.contains_key(*k)) {
        if k.starts_with(APPARMOR_PREFIX) {
            errs.push(Cause::forbidden(key(path, k), "may not add AppArmor annotations"));
        }
        if k == MIRROR_ANNOTATION {
            errs.push(Cause::forbidden(key(path, k), "may not add mirror pod annotation"));
        }
    }
    errs
}

/// A pod template inside a workload, at `path` (e.g. `spec.template`).
pub(crate) fn validate_pod_template(tmpl: &Value, path: &str) -> Vec<Cause> {
    let meta = sub(tmpl, "metadata");
    let spec = sub(tmpl, "spec");
    let mut errs = meta::validate_labels(get(meta, "labels"), &child(path, "labels"));
    let ann_path = child(path, "annotations");
    errs.extend(meta::validate_annotations(get(meta, "annotations"), &ann_path));
    errs.extend(pod_specific_annotations(sub(meta, "annotations"), spec, &ann_path, false));
    let spec_path = child(path, "spec");
    errs.extend(validate_pod_spec(spec, &spec_path, Opts { is_pod: false }));
    if !get_arr(spec, "ephemeralContainers").is_empty() {
        errs.push(Cause::forbidden(
            child(&spec_path, "ephemeralContainers"),
            "ephemeral containers not allowed in pod template",
        ));
    }
    errs
}

pub(crate) fn validate_pod_spec(spec: &Value, p: &str, opts: Opts) -> Vec<Cause> {
    let mut errs = Vec::new();
    let grace_path = child(p, "terminationGracePeriodSeconds");
    let grace = match get(spec, "terminationGracePeriodSeconds") {
        None => {
            errs.push(Cause::required(&grace_path));
            None
        }
        Some(v) => match as_int(v) {
            Some(g) => {
                if g < 0 {
                    errs.push(Cause::invalid(&grace_path, v, IS_NEGATIVE));
                }
                Some(g)
            }
            None => {
                errs.push(Cause::invalid(&grace_path, v, "must be an integer"));
                None
            }
        },
    };
    let sc = sub(spec, "securityContext");
    let host_users = get(sc, "hostUsers").and_then(Value::as_bool).unwrap_or(true);

    let vols = validate_volumes(spec, &child(p, "volumes"), opts, &mut errs);
    validate_containers(spec, &vols, grace, p, host_users, &mut errs);
    validate_init_containers(spec, &vols, grace, p, host_users, &mut errs);
    validate_ephemeral_containers(spec, &vols, p, host_users, &mut errs);
    validate_host_network_ports(spec, p, opts, &mut errs);

    one_of(&mut errs, get_str(spec, "restartPolicy"), &child(p, "restartPolicy"), &["Always", "OnFailure", "Never"]);
    let dns_policy = get_str(spec, "dnsPolicy");
    one_of(
        &mut errs,
        dns_policy,
        &child(p, "dnsPolicy"),
        &["ClusterFirstWithHostNet", "ClusterFirst", "Default", "None"],
    );
    errs.extend(meta::validate_labels(get(spec, "nodeSelector"), &child(p, "nodeSelector")));
    validate_pod_security_context(spec, p, &mut errs);
    validate_image_pull_secrets(spec, p, &mut errs);
    if let Some(aff) = get(spec, "affinity") {
        validate_affinity(aff, &child(p, "affinity"), &mut errs);
    }
    validate_dns_config(spec, dns_policy, p, &mut errs);
    for (i, g) in get_arr(spec, "readinessGates").iter().enumerate() {
        let path = format!("{p}.readinessGates[{i}].conditionType");
        qualified(&mut errs, get_str(g, "conditionType"), &path);
    }
    let mut gates = HashSet::new();
    for (i, g) in get_arr(spec, "schedulingGates").iter().enumerate() {
        let path = index(&child(p, "schedulingGates"), i);
        let name = get_str(g, "name");
        qualified(&mut errs, name, &path);
        if !gates.insert(name) {
            errs.push(Cause::duplicate(&path, &str_value(name)));
        }
    }
    validate_topology_spread(spec, p, &mut errs);

    for field in ["serviceAccountName", "nodeName", "priorityClassName"] {
        let v = get_str(spec, field);
        if !v.is_empty() {
            dns_subdomain(&mut errs, v, &child(p, field));
        }
    }
    if let Some(rc) = get(spec, "runtimeClassName") {
        dns_subdomain(&mut errs, rc.as_str().unwrap_or(""), &child(p, "runtimeClassName"));
    }
    let ads_path = child(p, "activeDeadlineSeconds");
    if let Some(ads) = int_field(&mut errs, spec, "activeDeadlineSeconds", &ads_path) {
        if !(1..=i64::from(i32::MAX)).contains(&ads) {
            errs.push(Cause::invalid(
                &ads_path,
                &Value::from(ads),
                names::inclusive_range_error(1, i64::from(i32::MAX)),
            ));
        }
    }
    for field in ["hostname", "subdomain"] {
        let v = get_str(spec, field);
        if !v.is_empty() {
            dns_label(&mut errs, v, &child(p, field));
        }
    }
    errs.extend(validate_tolerations(get_arr(spec, "tolerations"), &child(p, "tolerations")));
    for (i, alias) in get_arr(spec, "hostAliases").iter().enumerate() {
        let ap = index(&child(p, "hostAliases"), i);
        let ip = get_str(alias, "ip");
        if names::parse_ip(ip).is_none() {
            errs.push(Cause::invalid(child(&ap, "ip"), &str_value(ip), names::INVALID_IP));
        }
        for (j, h) in get_arr(alias, "hostnames").iter().enumerate() {
            let hp = index(&child(&ap, "hostnames"), j);
            dns_subdomain(&mut errs, h.as_str().unwrap_or(""), &hp);
        }
    }
    if let Some(pp) = get(spec, "preemptionPolicy") {
        one_of(&mut errs, pp.as_str().unwrap_or(""), &child(p, "preemptionPolicy"), &["PreemptLowerPriority", "Never"]);
    }
    if let Some(overhead) = get(spec, "overhead") {
        validate_resource_list(Some(overhead), &child(p, "overhead"), &mut errs);
    }
    if let Some(os) = get(spec, "os") {
        let name = get_str(os, "name");
        one_of(&mut errs, name, &child(p, "os.name"), &["linux", "windows"]);
    }
    errs
}

fn validate_volumes<'a>(spec: &'a Value, p: &str, opts: Opts, errs: &mut Vec<Cause>) -> Volumes<'a> {
    let mut vols = Volumes::new();
    for (i, vol) in get_arr(spec, "volumes").iter().enumerate() {
        let vp = index(p, i);
        let name = get_str(vol, "name");
        let mut el = validate_volume_source(vol, &vp, opts);
        let np = child(&vp, "name");
        if name.is_empty() {
            el.push(Cause::required(&np));
        } else {
            dns_label(&mut el, name, &np);
        }
        if vols.contains_key(name) {
            el.push(Cause::duplicate(&np, &str_value(name)));
        }
        // As upstream, a volume with errors is not registered, so its mounts fail too.
        if el.is_empty() {
            vols.insert(name, vol);
        } else {
            errs.extend(el);
        }
    }
    vols
}

fn validate_volume_source(vol: &Value, p: &str, opts: Opts) -> Vec<Cause> {
    let mut errs = Vec::new();
    let mut count = 0;
    for source in VOLUME_SOURCES {
        let Some(src) = get(vol, source) else {
            continue;
        };
        let sp = child(p, source);
        if count > 0 {
            errs.push(Cause::forbidden(&sp, "may not specify more than 1 volume type"));
            continue;
        }
        count += 1;
        match source {
            "emptyDir" => {
                if let Some(limit) = get(src, "sizeLimit") {
                    let ok = quantity::parse_quantity_value(limit).is_ok_and(|q| !q.is_negative());
                    if !ok {
                        errs.push(Cause::forbidden(
                            child(&sp, "sizeLimit"),
                            "SizeLimit field must be a valid resource quantity",
                        ));
                    }
                }
            }
            "hostPath" => {
                let path = get_str(src, "path");
                if path.is_empty() {
                    errs.push(Cause::required(child(&sp, "path")));
                } else {
                    no_backsteps(&mut errs, path, &child(&sp, "path"));
                    if let Some(t) = get(src, "type") {
                        let allowed = [
                            "",
                            "BlockDevice",
                            "CharDevice",
                            "Directory",
                            "DirectoryOrCreate",
                            "File",
                            "FileOrCreate",
                            "Socket",
                        ];
                        let t = t.as_str().unwrap_or("?");
                        if !allowed.contains(&t) {
                            errs.push(Cause::not_supported(child(&sp, "type"), &str_value(t), &allowed));
                        }
                    }
                }
            }
            "gitRepo" => {
                if get_str(src, "repository").is_empty() {
                    errs.push(Cause::required(child(&sp, "repository")));
                }
                local_descending(&mut errs, get_str(src, "directory"), &child(&sp, "directory"));
            }
            "secret" => {
                if get_str(src, "secretName").is_empty() {
                    errs.push(Cause::required(child(&sp, "secretName")));
                }
                file_mode(&mut errs, src, "defaultMode", &child(&sp, "defaultMode"));
                key_to_paths(&mut errs, src, &sp);
            }
            "configMap" => {
                if get_str(src, "name").is_empty() {
                    errs.push(Cause::required(child(&sp, "name")));
                }
                file_mode(&mut errs, src, "defaultMode", &child(&sp, "defaultMode"));
                key_to_paths(&mut errs, src, &sp);
            }
            "persistentVolumeClaim" if get_str(src, "claimName").is_empty() => {
                errs.push(Cause::required(child(&sp, "claimName")));
            }
            "nfs" => {
                let path = get_str(src, "path");
                if get_str(src, "server").is_empty() {
                    errs.push(Cause::required(child(&sp, "server")));
                }
                if path.is_empty() {
                    errs.push(Cause::required(child(&sp, "path")));
                }
                if !path.starts_with('/') {
                    errs.push(Cause::invalid(child(&sp, "path"), &str_value(path), "must be an absolute path"));
                }
            }
            "downwardAPI" => {
                file_mode(&mut errs, src, "defaultMode", &child(&sp, "defaultMode"));
                for file in get_arr(src, "items") {
                    downward_api_file(&mut errs, file, &sp);
                }
            }
            "projected" => {
                file_mode(&mut errs, src, "defaultMode", &child(&sp, "defaultMode"));
                projected_sources(&mut errs, src, &sp);
            }
            "csi" if get_str(src, "driver").is_empty() => {
                errs.push(Cause::required(child(&sp, "driver")));
            }
            "ephemeral" if get(src, "volumeClaimTemplate").is_none() => {
                errs.push(Cause::required(child(&sp, "volumeClaimTemplate")));
            }
            "image" => {
                if opts.is_pod && get_str(src, "reference").is_empty() {
                    errs.push(Cause::required(child(&sp, "reference")));
                }
                one_of(
                    &mut errs,
                    get_str(src, "pullPolicy"),
                    &child(&sp, "pullPolicy"),
                    &["Always", "IfNotPresent", "Never"],
                );
            }
            _ => {}
        }
    }
    if count == 0 {
        errs.push(required_detail(p, "must specify a volume type"));
    }
    errs
}

fn no_backsteps(errs: &mut Vec<Cause>, path: &str, fp: &str) {
    if path.replace('\\', "/").split('/').any(|part| part == "..") {
        errs.push(Cause::invalid(fp, &str_value(path), "must not contain '..'"));
    }
}

/// Relative, without `..` elements: the path stays inside the volume.
fn local_descending(errs: &mut Vec<Cause>, path: &str, fp: &str) {
    if path.starts_with('/') {
        errs.push(Cause::invalid(fp, &str_value(path), "must be a relative path"));
    }
    no_backsteps(errs, path, fp);
}

fn local_non_reserved(errs: &mut Vec<Cause>, path: &str, fp: &str) {
    local_descending(errs, path, fp);
    if path.starts_with("..") && !path.starts_with("../") {
        errs.push(Cause::invalid(fp, &str_value(path), "must not start with '..'"));
    }
}

fn key_to_paths(errs: &mut Vec<Cause>, src: &Value, sp: &str) {
    for (i, item) in get_arr(src, "items").iter().enumerate() {
        let ip = index(&child(sp, "items"), i);
        if get_str(item, "key").is_empty() {
            errs.push(Cause::required(child(&ip, "key")));
        }
        let path = get_str(item, "path");
        if path.is_empty() {
            errs.push(Cause::required(child(&ip, "path")));
        }
        local_non_reserved(errs, path, &child(&ip, "path"));
        file_mode(errs, item, "mode", &child(&ip, "mode"));
    }
}

fn downward_api_file(errs: &mut Vec<Cause>, file: &Value, p: &str) {
    let path = get_str(file, "path");
    if path.is_empty() {
        errs.push(Cause::required(child(p, "path")));
    }
    local_non_reserved(errs, path, &child(p, "path"));
    match (get(file, "fieldRef"), get(file, "resourceFieldRef")) {
        (Some(fr), rf) => {
            object_field_selector(errs, fr, &VOLUME_FIELD_PATHS, &child(p, "fieldRef"));
            if rf.is_some() {
                errs.push(Cause::invalid(
                    p,
                    &str_value("resource"),
                    "fieldRef and resourceFieldRef can not be specified simultaneously",
                ));
            }
        }
        (None, Some(rf)) => resource_field_selector(errs, rf, true, &child(p, "resourceFieldRef")),
        (None, None) => errs.push(required_detail(p, "one of fieldRef and resourceFieldRef is required")),
    }
    file_mode(errs, file, "mode", &child(p, "mode"));
}

fn projected_sources(errs: &mut Vec<Cause>, src: &Value, p: &str) {
    let mut paths = HashSet::new();
    let mut claim_path = |errs: &mut Vec<Cause>, path: &str, what: &Value| {
        if !path.is_empty() && !paths.insert(path.to_string()) {
            errs.push(Cause::invalid(p, what, "conflicting duplicate paths"));
        }
    };
    for (i, s) in get_arr(src, "sources").iter().enumerate() {
        let srcp = index(&child(p, "sources"), i);
        let mut count = 0;
        for kind in ["secret", "configMap"] {
            if let Some(x) = get(s, kind) {
                count += 1;
                let kp = child(&srcp, kind);
                if get_str(x, "name").is_empty() {
                    errs.push(Cause::required(child(&kp, "name")));
                }
                key_to_paths(errs, x, &kp);
                for item in get_arr(x, "items") {
                    claim_path(errs, get_str(item, "path"), sub(x, "name"));
                }
            }
        }
        if let Some(x) = get(s, "downwardAPI") {
            count += 1;
            let kp = child(&srcp, "downwardAPI");
            for file in get_arr(x, "items") {
                downward_api_file(errs, file, &kp);
                let fp = get_str(file, "path");
                claim_path(errs, fp, &str_value(fp));
            }
        }
        if let Some(x) = get(s, "serviceAccountToken") {
            count += 1;
            let kp = child(&srcp, "serviceAccountToken");
            let ep = child(&kp, "expirationSeconds");
            if let Some(exp) = int_field(errs, x, "expirationSeconds", &ep) {
                if exp < 600 {
                    errs.push(Cause::invalid(
                        &ep,
                        &Value::from(exp),
                        "may not specify a duration less than 10 minutes",
                    ));
                }
                if exp > 1 << 32 {
                    errs.push(Cause::invalid(
                        &ep,
                        &Value::from(exp),
                        "may not specify a duration larger than 2^32 seconds",
                    ));
                }
            }
            let tp = get_str(x, "path");
            if tp.is_empty() {
                errs.push(Cause::required(child(p, "path")));
            } else {
                local_non_reserved(errs, tp, &child(p, "path"));
            }
            claim_path(errs, tp, &str_value(tp));
        }
        if let Some(x) = get(s, "clusterTrustBundle") {
            count += 1;
            let kp = child(&srcp, "clusterTrustBundle");
            let cp = get_str(x, "path");
            if cp.is_empty() {
                errs.push(Cause::required(child(&kp, "path")));
            }
            local_non_reserved(errs, cp, &child(&kp, "path"));
            claim_path(errs, cp, &str_value(cp));
        }
        if count > 1 {
            errs.push(Cause::forbidden(&srcp, "may not specify more than 1 volume type per source"));
        }
    }
}

/// Splits `metadata.labels['key']` into its path and subscript.
fn split_subscript(path: &str) -> Option<(&str, &str)> {
    let inner = path.strip_suffix("']")?;
    let (base, sub) = inner.split_once("['")?;
    (!base.is_empty()).then_some((base, sub))
}

fn object_field_selector(errs: &mut Vec<Cause>, fs: &Value, allowed: &[&str], p: &str) {
    let api = get_str(fs, "apiVersion");
    if api.is_empty() {
        errs.push(Cause::required(child(p, "apiVersion")));
        return;
    }
    let fp = get_str(fs, "fieldPath");
    let fpp = child(p, "fieldPath");
    if fp.is_empty() {
        errs.push(Cause::required(&fpp));
        return;
    }
    let conversion_error =
        |detail: String| Cause::invalid(&fpp, &str_value(fp), format!("error converting fieldPath: {detail}"));
    if api != "v1" {
        errs.push(conversion_error(format!("unsupported pod version: {api}")));
        return;
    }
    if let Some((base, subscript)) = split_subscript(fp) {
        match base {
            "metadata.annotations" => qualified(errs, &subscript.to_lowercase(), p),
            "metadata.labels" => qualified(errs, subscript, p),
            _ => errs.push(conversion_error(format!("field label does not support subscript: {fp}"))),
        }
        return;
    }
    let converted = match fp {
        // Old clients still send the pre-1.0 name.
        "spec.host" => "spec.nodeName",
        x if CONVERTIBLE_FIELD_PATHS.contains(&x) => x,
        _ => {
            errs.push(conversion_error(format!("field label not supported: {fp}")));
            return;
        }
    };
    if !allowed.contains(&converted) {
        let mut sorted = allowed.to_vec();
        sorted.sort_unstable();
        errs.push(Cause::not_supported(&fpp, &str_value(converted), &sorted));
    }
}

fn resource_field_selector(errs: &mut Vec<Cause>, rf: &Value, volume: bool, p: &str) {
    let resource = get_str(rf, "resource");
    if volume && get_str(rf, "containerName").is_empty() {
        errs.push(Cause::required(child(p, "containerName")));
    } else if resource.is_empty() {
        errs.push(Cause::required(child(p, "resource")));
    } else if !RESOURCE_FIELD_PATHS.contains(&resource)
        && !resource.starts_with("requests.hugepages-")
        && !resource.starts_with("limits.hugepages-")
    {
        errs.push(Cause::not_supported(child(p, "resource"), &str_value(resource), &RESOURCE_FIELD_PATHS));
    }
}

fn validate_containers(
    spec: &Value,
    vols: &Volumes,
    grace: Option<i64>,
    p: &str,
    host_users: bool,
    errs: &mut Vec<Cause>,
) {
    let cp = child(p, "containers");
    let containers = get_arr(spec, "containers");
    if containers.is_empty() {
        errs.push(Cause::required(&cp));
        return;
    }
    let mut seen = HashSet::new();
    for (i, c) in containers.iter().enumerate() {
        let path = index(&cp, i);
        container_common(c, vols, &path, host_users, errs);
        let name = get_str(c, "name");
        if !seen.insert(name) {
            errs.push(Cause::duplicate(child(&path, "name"), &str_value(name)));
        }
        if let Some(lc) = get(c, "lifecycle") {
            lifecycle(errs, lc, grace, &child(&path, "lifecycle"));
        }
        probe(errs, get(c, "livenessProbe"), grace, &child(&path, "livenessProbe"), ProbeKind::Liveness);
        probe(errs, get(c, "readinessProbe"), grace, &child(&path, "readinessProbe"), ProbeKind::Readiness);
        probe(errs, get(c, "startupProbe"), grace, &child(&path, "startupProbe"), ProbeKind::Startup);
        if get(c, "restartPolicy").is_some() {
            errs.push(Cause::forbidden(child(&path, "restartPolicy"), "may not be set for non-init containers"));
        }
    }
    // Regular containers run together, so their host ports must not collide.
    host_port_conflicts(errs, containers.iter().enumerate(), &cp);
}

fn validate_init_containers(
    spec: &Value,
    vols: &Volumes,
    grace: Option<i64>,
    p: &str,
    host_users: bool,
    errs: &mut Vec<Cause>,
) {
    let ip = child(p, "initContainers");
    let mut seen: HashSet<&str> = get_arr(spec, "containers").iter().map(|c| get_str(c, "name")).collect();
    for (i, c) in get_arr(spec, "initContainers").iter().enumerate() {
        let path = index(&ip, i);
        container_common(c, vols, &path, host_users, errs);
        let restart_always = match get(c, "restartPolicy") {
            None => false,
            Some(rp) => {
                let rp = rp.as_str().unwrap_or("");
                if rp != "Always" {
                    errs.push(Cause::not_supported(child(&path, "restartPolicy"), &str_value(rp), &["Always"]));
                }
                rp == "Always"
            }
        };
        let name = get_str(c, "name");
        if seen.contains(name) {
            errs.push(Cause::duplicate(child(&path, "name"), &str_value(name)));
        } else if !name.is_empty() {
            seen.insert(name);
        }
        // Init containers run one at a time, so only ports within one can collide.
        host_port_conflicts(errs, std::iter::once((i, c)), &ip);
        if restart_always {
            if let Some(lc) = get(c, "lifecycle") {
                lifecycle(errs, lc, grace, &child(&path, "lifecycle"));
            }
            probe(errs, get(c, "livenessProbe"), grace, &child(&path, "livenessProbe"), ProbeKind::Liveness);
            probe(errs, get(c, "readinessProbe"), grace, &child(&path, "readinessProbe"), ProbeKind::Readiness);
            probe(errs, get(c, "startupProbe"), grace, &child(&path, "startupProbe"), ProbeKind::Startup);
        } else {
            for field in ["lifecycle", "livenessProbe", "readinessProbe", "startupProbe"] {
                if get(c, field).is_some() {
                    errs.push(Cause::forbidden(
                        child(&path, field),
                        "may not be set for init containers without restartPolicy=Always",
                    ));
                }
            }
        }
    }
}

fn validate_ephemeral_containers(spec: &Value, vols: &Volumes, p: &str, host_users: bool, errs: &mut Vec<Cause>) {
    let ep = child(p, "ephemeralContainers");
    let mut others = HashSet::new();
    for field in ["containers", "initContainers"] {
        others.extend(get_arr(spec, field).iter().map(|c| get_str(c, "name")));
    }
    let mut all = others.clone();
    for (i, c) in get_arr(spec, "ephemeralContainers").iter().enumerate() {
        let path = index(&ep, i);
        container_common(c, vols, &path, host_users, errs);
        let name = get_str(c, "name");
        if !all.insert(name) {
            errs.push(Cause::duplicate(child(&path, "name"), &str_value(name)));
        }
        let target = get_str(c, "targetContainerName");
        if !target.is_empty() && !others.contains(target) {
            errs.push(not_found(&child(&path, "targetContainerName"), &str_value(target)));
        }
        // Debug containers must not take part in the pod's service.
        for field in ["ports", "resources", "lifecycle", "livenessProbe", "readinessProbe", "startupProbe"] {
            if get(c, field).and_then(normalized).is_some() {
                errs.push(Cause::forbidden(child(&path, field), "cannot be set for an Ephemeral Container"));
            }
        }
        for (j, m) in get_arr(c, "volumeMounts").iter().enumerate() {
            for field in ["subPath", "subPathExpr"] {
                if !get_str(m, field).is_empty() {
                    errs.push(Cause::forbidden(
                        format!("{path}.volumeMounts[{j}].{field}"),
                        "cannot be set for an Ephemeral Container",
                    ));
                }
            }
        }
    }
}

fn host_port_conflicts<'a>(errs: &mut Vec<Cause>, containers: impl Iterator<Item = (usize, &'a Value)>, p: &str) {
    let mut seen = HashSet::new();
    for (ci, c) in containers {
        for (pi, port) in get_arr(c, "ports").iter().enumerate() {
            let host_port = get_int(port, "hostPort").unwrap_or(0);
            if host_port == 0 {
                continue;
            }
            let id = format!("{}/{}/{}", get_str(port, "protocol"), get_str(port, "hostIP"), host_port);
            if !seen.insert(id.clone()) {
                errs.push(Cause::duplicate(format!("{p}[{ci}].ports[{pi}].hostPort"), &str_value(&id)));
            }
        }
    }
}

fn container_common(c: &Value, vols: &Volumes, p: &str, host_users: bool, errs: &mut Vec<Cause>) {
    let name = get_str(c, "name");
    let np = child(p, "name");
    if name.is_empty() {
        errs.push(Cause::required(&np));
    } else {
        dns_label(errs, name, &np);
    }
    if get_str(c, "image").is_empty() {
        errs.push(Cause::required(child(p, "image")));
    }
    let tmp = get_str(c, "terminationMessagePolicy");
    let tmp_path = child(p, "terminationMessagePolicy");
    match tmp {
        "File" | "FallbackToLogsOnError" => {}
        "" => errs.push(Cause::required(&tmp_path)),
        other => errs.push(Cause::not_supported(&tmp_path, &str_value(other), &["File", "FallbackToLogsOnError"])),
    }
    container_ports(errs, get_arr(c, "ports"), &child(p, "ports"));
    env(errs, get_arr(c, "env"), &child(p, "env"));
    env_from(errs, get_arr(c, "envFrom"), &child(p, "envFrom"));
    volume_mounts(errs, c, vols, &child(p, "volumeMounts"));
    volume_devices(errs, c, vols, &child(p, "volumeDevices"));
    one_of(errs, get_str(c, "imagePullPolicy"), &child(p, "imagePullPolicy"), &["Always", "IfNotPresent", "Never"]);
    if let Some(res) = get(c, "resources") {
        validate_resources(res, &child(p, "resources"), errs);
    }
    if let Some(sc) = get(c, "securityContext") {
        container_security_context(errs, sc, &child(p, "securityContext"), host_users);
    }
}

fn container_ports(errs: &mut Vec<Cause>, ports: &[Value], p: &str) {
    let mut seen = HashSet::new();
    for (i, port) in ports.iter().enumerate() {
        let pp = index(p, i);
        let name = get_str(port, "name");
        if !name.is_empty() {
            let msgs = names::port_name_errors(name);
            if !msgs.is_empty() {
                invalid_each(errs, &child(&pp, "name"), name, msgs);
            } else if !seen.insert(name) {
                errs.push(Cause::duplicate(child(&pp, "name"), &str_value(name)));
            }
        }
        let cpp = child(&pp, "containerPort");
        match int_field(errs, port, "containerPort", &cpp) {
            Some(0) => errs.push(Cause::required(&cpp)),
            Some(n) => port_num(errs, n, &cpp),
            None if get(port, "containerPort").is_none() => errs.push(Cause::required(&cpp)),
            None => {}
        }
        let hpp = child(&pp, "hostPort");
        if let Some(hp) = int_field(errs, port, "hostPort", &hpp).filter(|n| *n != 0) {
            port_num(errs, hp, &hpp);
        }
        one_of(errs, get_str(port, "protocol"), &child(&pp, "protocol"), &["SCTP", "TCP", "UDP"]);
    }
}

fn env(errs: &mut Vec<Cause>, vars: &[Value], p: &str) {
    for (i, ev) in vars.iter().enumerate() {
        let ep = index(p, i);
        let name = get_str(ev, "name");
        let np = child(&ep, "name");
        if name.is_empty() {
            errs.push(Cause::required(&np));
        } else {
            invalid_each(errs, &np, name, names::env_var_name_errors(name));
        }
        let Some(vf) = get(ev, "valueFrom") else {
            continue;
        };
        let vp = child(&ep, "valueFrom");
        let mut sources = 0;
        if let Some(fr) = get(vf, "fieldRef") {
            sources += 1;
            object_field_selector(errs, fr, &ENV_FIELD_PATHS, &child(&vp, "fieldRef"));
        }
        if let Some(rf) = get(vf, "resourceFieldRef") {
            sources += 1;
            resource_field_selector(errs, rf, false, &child(&vp, "resourceFieldRef"));
        }
        for kind in ["configMapKeyRef", "secretKeyRef"] {
            if let Some(sel) = get(vf, kind) {
                sources += 1;
                key_selector(errs, sel, &child(&vp, kind));
            }
        }
        let empty = str_value("");
        if sources == 0 {
            errs.push(Cause::invalid(
                &vp,
                &empty,
                "must specify one of: `fieldRef`, `resourceFieldRef`, `configMapKeyRef` or `secretKeyRef`",
            ));
        } else if !get_str(ev, "value").is_empty() {
            errs.push(Cause::invalid(&vp, &empty, "may not be specified when `value` is not empty"));
        } else if sources > 1 {
            errs.push(Cause::invalid(&vp, &empty, "may not have more than one field specified at a time"));
        }
    }
}

fn key_selector(errs: &mut Vec<Cause>, sel: &Value, p: &str) {
    let name = get_str(sel, "name");
    dns_subdomain(errs, name, &child(p, "name"));
    let k = get_str(sel, "key");
    let kp = child(p, "key");
    if k.is_empty() {
        errs.push(Cause::required(&kp));
    } else {
        invalid_each(errs, &kp, k, names::config_map_key_errors(k));
    }
}

fn env_from(errs: &mut Vec<Cause>, sources: &[Value], p: &str) {
    for (i, src) in sources.iter().enumerate() {
        let sp = index(p, i);
        let prefix = get_str(src, "prefix");
        if !prefix.is_empty() {
            invalid_each(errs, &child(&sp, "prefix"), prefix, names::env_var_name_errors(prefix));
        }
        let mut count = 0;
        for kind in ["configMapRef", "secretRef"] {
            if let Some(r) = get(src, kind) {
                count += 1;
                let name = get_str(r, "name");
                let np = format!("{sp}.{kind}.name");
                if name.is_empty() {
                    errs.push(Cause::required(&np));
                } else {
                    let masked = names::mask_trailing_dash(name);
                    invalid_each(errs, &np, name, names::dns1123_subdomain_errors(&masked));
                }
            }
        }
        let empty = str_value("");
        if count == 0 {
            errs.push(Cause::invalid(p, &empty, "must specify one of: `configMapRef` or `secretRef`"));
        } else if count > 1 {
            errs.push(Cause::invalid(p, &empty, "may not have more than one field specified at a time"));
        }
    }
}

fn volume_mounts(errs: &mut Vec<Cause>, c: &Value, vols: &Volumes, p: &str) {
    let devices: HashMap<&str, &str> =
        get_arr(c, "volumeDevices").iter().map(|d| (get_str(d, "name"), get_str(d, "devicePath"))).collect();
    let privileged = get_bool(sub(c, "securityContext"), "privileged");
    let mut mountpoints = HashSet::new();
    for (i, m) in get_arr(c, "volumeMounts").iter().enumerate() {
        let mp = index(p, i);
        let name = get_str(m, "name");
        let np = child(&mp, "name");
        if name.is_empty() {
            errs.push(Cause::required(&np));
        }
        if !vols.contains_key(name) {
            errs.push(not_found(&np, &str_value(name)));
        }
        let path = get_str(m, "mountPath");
        let pp = child(&mp, "mountPath");
        if path.is_empty() {
            errs.push(Cause::required(&pp));
        }
        if !mountpoints.insert(path) {
            errs.push(Cause::invalid(&pp, &str_value(path), "must be unique"));
        }
        if devices.contains_key(name) {
            errs.push(Cause::invalid(&np, &str_value(name), "must not already exist in volumeDevices"));
        }
        if devices.values().any(|d| *d == path) {
            errs.push(Cause::invalid(&pp, &str_value(path), "must not already exist as a path in volumeDevices"));
        }
        let sub_path = get_str(m, "subPath");
        let sub_expr = get_str(m, "subPathExpr");
        if vols.get(name).is_some_and(|v| get(v, "image").is_some()) {
            for (field, v) in [("subPath", sub_path), ("subPathExpr", sub_expr)] {
                if !v.is_empty() {
                    errs.push(Cause::invalid(child(&mp, field), &str_value(v), "not allowed in image volume sources"));
                }
            }
        }
        if !sub_path.is_empty() {
            local_descending(errs, sub_path, &child(&mp, "subPath"));
        }
        if !sub_expr.is_empty() {
            if !sub_path.is_empty() {
                errs.push(Cause::invalid(
                    child(&mp, "subPathExpr"),
                    &str_value(sub_expr),
                    "subPathExpr and subPath are mutually exclusive",
                ));
            }
            local_descending(errs, sub_expr, &child(&mp, "subPathExpr"));
        }
        let propagation = get_str(m, "mountPropagation");
        if let Some(prop) = get(m, "mountPropagation") {
            let pp = child(&mp, "mountPropagation");
            let allowed = ["Bidirectional", "HostToContainer", "None"];
            if !allowed.contains(&propagation) {
                errs.push(Cause::not_supported(&pp, prop, &allowed));
            }
            if propagation == "Bidirectional" && !privileged {
                errs.push(Cause::forbidden(
                    &pp,
                    "Bidirectional mount propagation is available only to privileged containers",
                ));
            }
        }
        if let Some(rro) = get(m, "recursiveReadOnly") {
            let rp = child(&mp, "recursiveReadOnly");
            match rro.as_str().unwrap_or("") {
                "Disabled" => {}
                "Enabled" | "IfPossible" => {
                    if !get_bool(m, "readOnly") {
                        errs.push(Cause::forbidden(&rp, "may only be specified when readOnly is true"));
                    }
                    if !propagation.is_empty() && propagation != "None" {
                        errs.push(Cause::forbidden(
                            &rp,
                            "may only be specified when mountPropagation is None or not specified",
                        ));
                    }
                }
                _ => errs.push(Cause::not_supported(&rp, rro, &["Disabled", "Enabled", "IfPossible"])),
            }
        }
    }
}

fn volume_devices(errs: &mut Vec<Cause>, c: &Value, vols: &Volumes, p: &str) {
    let mounts: HashMap<&str, &str> =
        get_arr(c, "volumeMounts").iter().map(|m| (get_str(m, "name"), get_str(m, "mountPath"))).collect();
    let mut names_seen = HashSet::new();
    let mut paths_seen = HashSet::new();
    for (i, d) in get_arr(c, "volumeDevices").iter().enumerate() {
        let dp = index(p, i);
        let name = get_str(d, "name");
        let path = get_str(d, "devicePath");
        let np = child(&dp, "name");
        let pp = child(&dp, "devicePath");
        if name.is_empty() {
            errs.push(Cause::required(&np));
        }
        if names_seen.contains(name) {
            errs.push(Cause::invalid(&np, &str_value(name), "must be unique"));
        }
        match vols.get(name) {
            Some(v) if get(v, "persistentVolumeClaim").is_none() && get(v, "ephemeral").is_none() => {
                errs.push(Cause::invalid(
                    &np,
                    &str_value(name),
                    "can only use volume source type of PersistentVolumeClaim or Ephemeral for block mode",
                ))
            }
            Some(_) => {}
            None => errs.push(not_found(&np, &str_value(name))),
        }
        if path.is_empty() {
            errs.push(Cause::required(&pp));
        }
        if paths_seen.contains(path) {
            errs.push(Cause::invalid(&pp, &str_value(path), "must be unique"));
        }
        if path.split('/').any(|s| s == "..") {
            errs.push(Cause::invalid(&pp, &str_value(path), "can not contain backsteps ('..')"));
        } else {
            paths_seen.insert(path);
        }
        if mounts.contains_key(name) {
            errs.push(Cause::invalid(&np, &str_value(name), "must not already exist in volumeMounts"));
        }
        if mounts.values().any(|m| *m == path) {
            errs.push(Cause::invalid(&pp, &str_value(path), "must not already exist as a path in volumeMounts"));
        }
        if !name.is_empty() {
            names_seen.insert(name);
        }
    }
}

fn is_hugepages(name: &str) -> bool {
    name.starts_with("hugepages-")
}

/// Names without a domain, or in kubernetes.io, belong to Kubernetes itself.
fn is_native_resource(name: &str) -> bool {
    !name.contains('/') || name.contains("kubernetes.io/")
}

fn is_extended_resource(name: &str) -> bool {
    !is_native_resource(name)
        && !name.starts_with("requests.")
        && names::qualified_name_errors(&format!("requests.{name}")).is_empty()
}

/// Extended resources and huge pages are allocated whole, so requests must equal limits.
fn overcommit_allowed(name: &str) -> bool {
    is_native_resource(name) && !is_hugepages(name)
}

fn is_standard_resource_name(name: &str) -> bool {
    const STANDARD: [&str; 21] = [
        "cpu",
        "memory",
        "ephemeral-storage",
        "storage",
        "pods",
        "services",
        "replicationcontrollers",
        "resourcequotas",
        "secrets",
        "configmaps",
        "persistentvolumeclaims",
        "services.nodeports",
        "services.loadbalancers",
        "requests.cpu",
        "requests.memory",
        "requests.storage",
        "requests.ephemeral-storage",
        "limits.cpu",
        "limits.memory",
        "limits.ephemeral-storage",
        "count/pods",
    ];
    STANDARD.contains(&name)
        || is_hugepages(name)
        || name.starts_with("requests.hugepages-")
        || name.starts_with("limits.hugepages-")
}

fn container_resource_name(errs: &mut Vec<Cause>, name: &str, p: &str) {
    let msgs = names::qualified_name_errors(name);
    if !msgs.is_empty() {
        invalid_each(errs, p, name, msgs);
        return;
    }
    let v = str_value(name);
    if !name.contains('/') {
        if !is_standard_resource_name(name) {
            errs.push(Cause::invalid(p, &v, "must be a standard resource type or fully qualified"));
        }
        if !matches!(name, "cpu" | "memory" | "ephemeral-storage") && !is_hugepages(name) {
            errs.push(Cause::invalid(p, &v, "must be a standard resource for containers"));
        }
    } else if !is_native_resource(name) && !is_extended_resource(name) {
        errs.push(Cause::invalid(p, &v, "doesn't follow extended resource name standard"));
    }
}

/// Checks a `limits`/`requests` style map; returns the quantities that parsed.
fn validate_resource_list<'a>(list: Option<&'a Value>, p: &str, errs: &mut Vec<Cause>) -> Vec<(&'a str, Quantity)> {
    let mut out = Vec::new();
    let m = match list {
        None => return out,
        Some(Value::Object(m)) => m,
        Some(other) => {
            errs.push(Cause::invalid(p, other, "must be a map of resource quantities"));
            return out;
        }
    };
    for (name, raw) in m {
        let kp = key(p, name);
        container_resource_name(errs, name, &kp);
        match quantity::parse_quantity_value(raw) {
            Err(msg) => errs.push(Cause::invalid(&kp, raw, msg)),
            Ok(q) => {
                let shown = str_value(&q.canonical());
                if q.is_negative() {
                    errs.push(Cause::invalid(&kp, &shown, IS_NEGATIVE));
                }
                if is_extended_resource(name) && q.milli_value() % 1000 != 0 {
                    errs.push(Cause::invalid(&kp, &shown, "must be an integer"));
                }
                out.push((name.as_str(), q));
            }
        }
    }
    out
}

fn validate_resources(res: &Value, p: &str, errs: &mut Vec<Cause>) {
    let lim_path = child(p, "limits");
    let req_path = child(p, "requests");
    let limits = validate_resource_list(get(res, "limits"), &lim_path, errs);
    let requests = validate_resource_list(get(res, "requests"), &req_path, errs);
    let compute = |list: &[(&str, Quantity)]| list.iter().any(|(n, _)| matches!(*n, "cpu" | "memory"));
    let huge = |list: &[(&str, Quantity)]| list.iter().any(|(n, _)| is_hugepages(n));
    for (name, q) in &requests {
        let shown = str_value(&q.canonical());
        match limits.iter().find(|(n, _)| n == name) {
            Some((_, limit)) if !overcommit_allowed(name) && q != limit => {
                errs.push(Cause::invalid(&req_path, &shown, format!("must be equal to {name} limit of {limit}")));
            }
            Some((_, limit)) if q > limit => errs.push(Cause::invalid(
                &req_path,
                &shown,
                format!("must be less than or equal to {name} limit of {limit}"),
            )),
            Some(_) => {}
            None if !overcommit_allowed(name) => {
                errs.push(required_detail(&lim_path, "Limit must be set for non overcommitable resources"))
            }
            None => {}
        }
    }
    if !compute(&limits) && !compute(&requests) && (huge(&limits) || huge(&requests)) {
        errs.push(Cause::forbidden(p, "HugePages require cpu or memory"));
    }
}

fn seccomp_profile(errs: &mut Vec<Cause>, sp: &Value, p: &str) {
    let t = get_str(sp, "type");
    one_of(errs, t, &child(p, "type"), &["Localhost", "RuntimeDefault", "Unconfined"]);
    let local = get(sp, "localhostProfile");
    if t == "Localhost" {
        match local.and_then(Value::as_str) {
            None => {
                errs.push(required_detail(&child(p, "localhostProfile"), "must be set when seccomp type is Localhost"))
            }
            Some(lp) => local_descending(errs, lp, &child(p, "localhostProfile")),
        }
    } else if local.is_some() {
        errs.push(Cause::invalid(child(p, "localhostProfile"), sp, "can only be set when seccomp type is Localhost"));
    }
}

fn apparmor_profile(errs: &mut Vec<Cause>, ap: &Value, p: &str) {
    let t = get_str(ap, "type");
    one_of(errs, t, &child(p, "type"), &["Localhost", "RuntimeDefault", "Unconfined"]);
    let local = get_str(ap, "localhostProfile");
    if t == "Localhost" && local.trim().is_empty() {
        errs.push(required_detail(&child(p, "localhostProfile"), "must be set when AppArmor type is Localhost"));
    } else if t != "Localhost" && get(ap, "localhostProfile").is_some() {
        errs.push(Cause::invalid(child(p, "localhostProfile"), ap, "can only be set when AppArmor type is Localhost"));
    }
}

fn container_security_context(errs: &mut Vec<Cause>, sc: &Value, p: &str, host_users: bool) {
    id_range(errs, sc, "runAsUser", &child(p, "runAsUser"));
    id_range(errs, sc, "runAsGroup", &child(p, "runAsGroup"));
    if let Some(pm) = get(sc, "procMount") {
        let pm = pm.as_str().unwrap_or("");
        let pp = child(p, "procMount");
        if !matches!(pm, "Default" | "Unmasked") {
            errs.push(Cause::not_supported(&pp, &str_value(pm), &["Default", "Unmasked"]));
        }
        if host_users && pm == "Unmasked" {
            errs.push(Cause::invalid(&pp, &str_value(pm), "`hostUsers` must be false to use `Unmasked`"));
        }
    }
    if let Some(sp) = get(sc, "seccompProfile") {
        seccomp_profile(errs, sp, &child(p, "seccompProfile"));
    }
    if let Some(ap) = get(sc, "appArmorProfile") {
        apparmor_profile(errs, ap, &child(p, "appArmorProfile"));
    }
    if get(sc, "allowPrivilegeEscalation").and_then(Value::as_bool) == Some(false) {
        if get_bool(sc, "privileged") {
            errs.push(Cause::invalid(p, sc, "cannot set `allowPrivilegeEscalation` to false and `privileged` to true"));
        }
        let adds = get_arr(sub(sc, "capabilities"), "add");
        if adds.iter().any(|c| c.as_str() == Some("CAP_SYS_ADMIN")) {
            errs.push(Cause::invalid(
                p,
                sc,
                "cannot set `allowPrivilegeEscalation` to false and `capabilities.Add` CAP_SYS_ADMIN",
            ));
        }
    }
}

fn validate_pod_security_context(spec: &Value, p: &str, errs: &mut Vec<Cause>) {
    let sp = child(p, "securityContext");
    let Some(sc) = get(spec, "securityContext") else {
        return;
    };
    for field in ["runAsUser", "runAsGroup", "fsGroup"] {
        id_range(errs, sc, field, &child(&sp, field));
    }
    let gp = child(&sp, "supplementalGroups");
    for (i, g) in get_arr(sc, "supplementalGroups").iter().enumerate() {
        let ok = as_int(g).is_some_and(|g| (0..=MAX_ID).contains(&g));
        if !ok {
            errs.push(Cause::invalid(index(&gp, i), g, names::inclusive_range_error(0, MAX_ID)));
        }
    }
    if let Some(policy) = get(sc, "fsGroupChangePolicy") {
        let allowed = ["Always", "OnRootMismatch"];
        if !policy.as_str().is_some_and(|s| allowed.contains(&s)) {
            errs.push(Cause::not_supported(child(&sp, "fsGroupChangePolicy"), policy, &allowed));
        }
    }
    if let Some(policy) = get(sc, "supplementalGroupsPolicy") {
        let allowed = ["Merge", "Strict"];
        if !policy.as_str().is_some_and(|s| allowed.contains(&s)) {
            errs.push(Cause::not_supported(child(&sp, "supplementalGroupsPolicy"), policy, &allowed));
        }
    }
    if let Some(seccomp) = get(sc, "seccompProfile") {
        seccomp_profile(errs, seccomp, &child(&sp, "seccompProfile"));
    }
    if let Some(ap) = get(sc, "appArmorProfile") {
        apparmor_profile(errs, ap, &child(&sp, "appArmorProfile"));
    }
    for (i, s) in get_arr(sc, "sysctls").iter().enumerate() {
        if get_str(s, "name").is_empty() {
            errs.push(Cause::required(format!("{sp}.sysctls[{i}].name")));
        }
    }
    // User namespaces do not mix with sharing the host's other namespaces.
    if get(sc, "hostUsers").and_then(Value::as_bool) == Some(false) {
        for (field, shown) in [("hostNetwork", "hostNetwork"), ("hostPID", "HostPID"), ("hostIPC", "HostIPC")] {
            if get_bool(spec, field) {
                errs.push(Cause::forbidden(child(p, shown), "when `pod.Spec.HostUsers` is false"));
            }
        }
    }
}

fn validate_image_pull_secrets(spec: &Value, p: &str, errs: &mut Vec<Cause>) {
    for (i, s) in get_arr(spec, "imagePullSecrets").iter().enumerate() {
        let extra = s.as_object().is_some_and(|m| m.keys().any(|k| k != "name"));
        if extra {
            errs.push(Cause::invalid(index(&child(p, "imagePullSecrets"), i), s, "only name may be set"));
        }
    }
}

fn validate_host_network_ports(spec: &Value, p: &str, opts: Opts, errs: &mut Vec<Cause>) {
    if !get_bool(spec, "hostNetwork") {
        return;
    }
    for (i, c) in get_arr(spec, "containers").iter().enumerate() {
        for (j, port) in get_arr(c, "ports").iter().enumerate() {
            let hp = get_int(port, "hostPort").unwrap_or(0);
            let cp = get_int(port, "containerPort").unwrap_or(0);
            // Templates may leave hostPort for the pod defaulting to fill in.
            if (opts.is_pod || hp != 0) && hp != cp {
                errs.push(Cause::invalid(
                    format!("{p}.containers[{i}].ports[{j}].hostPort"),
                    &Value::from(hp),
                    "must match `containerPort` when `hostNetwork` is true",
                ));
            }
        }
    }
}

fn validate_dns_config(spec: &Value, dns_policy: &str, p: &str, errs: &mut Vec<Cause>) {
    let dp = child(p, "dnsConfig");
    let config = get(spec, "dnsConfig");
    if dns_policy == "None" {
        match config {
            None => {
                errs.push(required_detail(&dp, "must provide `dnsConfig` when `dnsPolicy` is None"));
                return;
            }
            Some(c) if get_arr(c, "nameservers").is_empty() => {
                errs.push(required_detail(
                    &child(&dp, "nameservers"),
                    "must provide at least one DNS nameserver when `dnsPolicy` is None",
                ));
                return;
            }
            Some(_) => {}
        }
    }
    let Some(c) = config else {
        return;
    };
    let nameservers = get_arr(c, "nameservers");
    if nameservers.len() > 3 {
        errs.push(Cause::invalid(
            child(&dp, "nameservers"),
            sub(c, "nameservers"),
            "must not have more than 3 nameservers",
        ));
    }
    for (i, ns) in nameservers.iter().enumerate() {
        if ns.as_str().and_then(names::parse_ip).is_none() {
            errs.push(Cause::invalid(index(&child(&dp, "nameservers"), i), ns, names::INVALID_IP));
        }
    }
    let searches: Vec<&str> = get_arr(c, "searches").iter().filter_map(Value::as_str).collect();
    if searches.len() > 32 {
        errs.push(Cause::invalid(
            child(&dp, "searches"),
            sub(c, "searches"),
            "must not have more than 32 search paths",
        ));
    }
    if searches.join(" ").len() > 2048 {
        errs.push(Cause::invalid(
            child(&dp, "searches"),
            sub(c, "searches"),
            "must not have more than 2048 characters (including spaces) in the search list",
        ));
    }
    for (i, s) in searches.iter().enumerate() {
        let trimmed = s.strip_suffix('.').unwrap_or(s);
        dns_subdomain(errs, trimmed, &index(&child(&dp, "searches"), i));
    }
    for (i, o) in get_arr(c, "options").iter().enumerate() {
        if get_str(o, "name").is_empty() {
            errs.push(required_detail(&index(&child(&dp, "options"), i), "must not be empty"));
        }
    }
}

/// Tolerations: keys are label names, operator and value agree, effects are known.
pub(crate) fn validate_tolerations(tolerations: &[Value], p: &str) -> Vec<Cause> {
    let mut errs = Vec::new();
    for (i, t) in tolerations.iter().enumerate() {
        let tp = index(p, i);
        let key_ = get_str(t, "key");
        let op = get_str(t, "operator");
        let effect = get_str(t, "effect");
        let value = get_str(t, "value");
        if !key_.is_empty() {
            errs.extend(meta::validate_label_name(key_, &child(&tp, "key")));
        }
        if key_.is_empty() && op != "Exists" {
            errs.push(Cause::invalid(
                child(&tp, "operator"),
                &str_value(op),
                "operator must be Exists when `key` is empty, which means \"match all values and all keys\"",
            ));
        }
        if get(t, "tolerationSeconds").is_some() && effect != "NoExecute" {
            errs.push(Cause::invalid(
                child(&tp, "effect"),
                &str_value(effect),
                "effect must be 'NoExecute' when `tolerationSeconds` is set",
            ));
        }
        match op {
            "Equal" | "" => {
                let msgs = names::label_value_errors(value);
                if !msgs.is_empty() {
                    errs.push(Cause::invalid(child(&tp, "operator"), &str_value(value), msgs.join(";")));
                }
            }
            "Exists" => {
                if !value.is_empty() {
                    errs.push(Cause::invalid(
                        child(&tp, "operator"),
                        &str_value(value),
                        "value must be empty when `operator` is 'Exists'",
                    ));
                }
            }
            other => errs.push(Cause::not_supported(child(&tp, "operator"), &str_value(other), &["Equal", "Exists"])),
        }
        if !effect.is_empty() {
            errs.extend(taint_effect(effect, &child(&tp, "effect")));
        }
    }
    errs
}

pub(crate) fn taint_effect(effect: &str, p: &str) -> Vec<Cause> {
    let allowed = ["NoSchedule", "PreferNoSchedule", "NoExecute"];
    if effect.is_empty() {
        vec![Cause::required(p)]
    } else if !allowed.contains(&effect) {
        vec![Cause::not_supported(p, &str_value(effect), &allowed)]
    } else {
        Vec::new()
    }
}

fn node_selector_requirement(errs: &mut Vec<Cause>, req: &Value, p: &str, check_values: bool) {
    let values = get_arr(req, "values");
    let vp = child(p, "values");
    match get_str(req, "operator") {
        "In" | "NotIn" if values.is_empty() => {
            errs.push(required_detail(&vp, "must be specified when `operator` is 'In' or 'NotIn'"))
        }
        "Exists" | "DoesNotExist" if !values.is_empty() => {
            errs.push(Cause::forbidden(&vp, "may not be specified when `operator` is 'Exists' or 'DoesNotExist'"))
        }
        "Gt" | "Lt" if values.len() != 1 => {
            errs.push(required_detail(&vp, "must be specified single value when `operator` is 'Lt' or 'Gt'"))
        }
        "In" | "NotIn" | "Exists" | "DoesNotExist" | "Gt" | "Lt" => {}
        op => errs.push(Cause::invalid(child(p, "operator"), &str_value(op), "not a valid selector operator")),
    }
    errs.extend(meta::validate_label_name(get_str(req, "key"), &child(p, "key")));
    if check_values {
        for (i, v) in values.iter().enumerate() {
            let s = v.as_str().unwrap_or("");
            invalid_each(errs, &index(&vp, i), s, names::label_value_errors(s));
        }
    }
}

fn node_selector_term(errs: &mut Vec<Cause>, term: &Value, p: &str, check_values: bool) {
    for (i, req) in get_arr(term, "matchExpressions").iter().enumerate() {
        node_selector_requirement(errs, req, &index(&child(p, "matchExpressions"), i), check_values);
    }
    for (i, req) in get_arr(term, "matchFields").iter().enumerate() {
        let rp = index(&child(p, "matchFields"), i);
        let values = get_arr(req, "values");
        match get_str(req, "operator") {
            "In" | "NotIn" if values.len() != 1 => errs.push(required_detail(
                &child(&rp, "values"),
                "must be only one value when `operator` is 'In' or 'NotIn' for node field selector",
            )),
            "In" | "NotIn" => {}
            op => errs.push(Cause::invalid(child(&rp, "operator"), &str_value(op), "not a valid selector operator")),
        }
        let k = get_str(req, "key");
        if k != "metadata.name" {
            errs.push(Cause::invalid(child(&rp, "key"), &str_value(k), "not a valid field selector key"));
        } else {
            for (j, v) in values.iter().enumerate() {
                dns_subdomain(errs, v.as_str().unwrap_or(""), &index(&child(&rp, "values"), j));
            }
        }
    }
}

fn pod_affinity_term(errs: &mut Vec<Cause>, term: &Value, p: &str) {
    for field in ["labelSelector", "namespaceSelector"] {
        if let Some(sel) = get(term, field) {
            errs.extend(meta::validate_label_selector(sel, &child(p, field)));
        }
    }
    for ns in get_arr(term, "namespaces") {
        let s = ns.as_str().unwrap_or("");
        invalid_each(errs, &child(p, "namespace"), s, names::dns1123_label_errors(s));
    }
    let tk = get_str(term, "topologyKey");
    let tkp = child(p, "topologyKey");
    if tk.is_empty() {
        errs.push(required_detail(&tkp, "can not be empty"));
    }
    errs.extend(meta::validate_label_name(tk, &tkp));
}

fn weight(errs: &mut Vec<Cause>, v: &Value, p: &str) {
    let w = get_int(v, "weight").unwrap_or(0);
    if !(1..=100).contains(&w) {
        errs.push(Cause::invalid(child(p, "weight"), &Value::from(w), "must be in the range 1-100"));
    }
}

fn validate_affinity(aff: &Value, p: &str, errs: &mut Vec<Cause>) {
    const REQUIRED: &str = "requiredDuringSchedulingIgnoredDuringExecution";
    const PREFERRED: &str = "preferredDuringSchedulingIgnoredDuringExecution";
    if let Some(na) = get(aff, "nodeAffinity") {
        let np = child(p, "nodeAffinity");
        if let Some(sel) = get(na, REQUIRED) {
            let tp = format!("{np}.{REQUIRED}.nodeSelectorTerms");
            let terms = get_arr(sel, "nodeSelectorTerms");
            if terms.is_empty() {
                errs.push(required_detail(&tp, "must have at least one node selector term"));
            }
            for (i, term) in terms.iter().enumerate() {
                node_selector_term(errs, term, &index(&tp, i), true);
            }
        }
        for (i, pref) in get_arr(na, PREFERRED).iter().enumerate() {
            let pp = index(&child(&np, PREFERRED), i);
            weight(errs, pref, &pp);
            // Preferred terms tolerate odd label values: they may still match something.
            node_selector_term(errs, sub(pref, "preference"), &child(&pp, "preference"), false);
        }
    }
    for kind in ["podAffinity", "podAntiAffinity"] {
        let Some(pa) = get(aff, kind) else {
            continue;
        };
        let kp = child(p, kind);
        for (i, term) in get_arr(pa, REQUIRED).iter().enumerate() {
            pod_affinity_term(errs, term, &index(&child(&kp, REQUIRED), i));
        }
        for (i, wt) in get_arr(pa, PREFERRED).iter().enumerate() {
            let wp = index(&child(&kp, PREFERRED), i);
            weight(errs, wt, &wp);
            pod_affinity_term(errs, sub(wt, "podAffinityTerm"), &child(&wp, "podAffinityTerm"));
        }
    }
}

fn validate_topology_spread(spec: &Value, p: &str, errs: &mut Vec<Cause>) {
    let tp = child(p, "topologySpreadConstraints");
    let mut seen = HashSet::new();
    for (i, c) in get_arr(spec, "topologySpreadConstraints").iter().enumerate() {
        let cp = index(&tp, i);
        let skew = get_int(c, "maxSkew").unwrap_or(0);
        if skew <= 0 {
            errs.push(Cause::invalid(child(&cp, "maxSkew"), &Value::from(skew), "must be greater than zero"));
        }
        let tk = get_str(c, "topologyKey");
        let tkp = child(&cp, "topologyKey");
        if tk.is_empty() {
            errs.push(required_detail(&tkp, "can not be empty"));
        } else {
            errs.extend(meta::validate_label_name(tk, &tkp));
        }
        let wu = get_str(c, "whenUnsatisfiable");
        one_of(errs, wu, &child(&cp, "whenUnsatisfiable"), &["DoNotSchedule", "ScheduleAnyway"]);
        if let Some(md) = get_int(c, "minDomains") {
            if md <= 0 {
                errs.push(Cause::invalid(child(&cp, "minDomains"), &Value::from(md), "must be greater than zero"));
            } else if wu != "DoNotSchedule" {
                errs.push(Cause::invalid(
                    child(&cp, "minDomains"),
                    &Value::from(md),
                    "can only use minDomains if whenUnsatisfiable=DoNotSchedule, not ScheduleAnyway",
                ));
            }
        }
        if let Some(sel) = get(c, "labelSelector") {
            errs.extend(meta::validate_label_selector(sel, &child(&cp, "labelSelector")));
        }
        let pair = format!("{{{tk}, {wu}}}");
        if !seen.insert(pair.clone()) {
            errs.push(Cause::duplicate(&cp, &str_value(&pair)));
        }
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum ProbeKind {
    Liveness,
    Readiness,
    Startup,
}

fn probe(errs: &mut Vec<Cause>, pr: Option<&Value>, grace: Option<i64>, p: &str, kind: ProbeKind) {
    let Some(pr) = pr else {
        return;
    };
    handler(errs, pr, &["exec", "httpGet", "tcpSocket", "grpc"], grace, p);
    for field in ["initialDelaySeconds", "timeoutSeconds", "periodSeconds", "successThreshold", "failureThreshold"] {
        nonnegative_field(errs, pr, field, &child(p, field));
    }
    let tgp = child(p, "terminationGracePeriodSeconds");
    if let Some(t) = get(pr, "terminationGracePeriodSeconds") {
        if kind == ProbeKind::Readiness {
            errs.push(Cause::invalid(&tgp, t, "must not be set for readinessProbes"));
        } else if as_int(t).is_none_or(|n| n <= 0) {
            errs.push(Cause::invalid(&tgp, t, "must be greater than 0"));
        }
    }
    if kind != ProbeKind::Readiness {
        let st = get_int(pr, "successThreshold").unwrap_or(0);
        if st != 1 {
            errs.push(Cause::invalid(child(p, "successThreshold"), &Value::from(st), "must be 1"));
        }
    }
}

fn lifecycle(errs: &mut Vec<Cause>, lc: &Value, grace: Option<i64>, p: &str) {
    for hook in ["postStart", "preStop"] {
        if let Some(h) = get(lc, hook) {
            handler(errs, h, &["exec", "httpGet", "tcpSocket", "sleep"], grace, &child(p, hook));
        }
    }
}

/// Exactly one handler among `kinds`, each well formed.
fn handler(errs: &mut Vec<Cause>, h: &Value, kinds: &[&str], grace: Option<i64>, p: &str) {
    let mut count = 0;
    for kind in kinds {
        let Some(x) = get(h, kind) else {
            continue;
        };
        let kp = child(p, kind);
        if count > 0 {
            errs.push(Cause::forbidden(&kp, "may not specify more than 1 handler type"));
            continue;
        }
        count += 1;
        match *kind {
            "exec" if get_arr(x, "command").is_empty() => {
                errs.push(Cause::required(child(&kp, "command")));
            }
            "httpGet" => {
                if get_str(x, "path").is_empty() {
                    errs.push(Cause::required(child(&kp, "path")));
                }
                validate_port_num_or_name(errs, get(x, "port"), &child(&kp, "port"));
                let scheme = get_str(x, "scheme");
                if !matches!(scheme, "HTTP" | "HTTPS") {
                    errs.push(Cause::not_supported(child(&kp, "scheme"), &str_value(scheme), &["HTTP", "HTTPS"]));
                }
                for header in get_arr(x, "httpHeaders") {
                    let n = get_str(header, "name");
                    invalid_each(errs, &child(&kp, "httpHeaders"), n, names::http_header_name_errors(n));
                }
            }
            "tcpSocket" => validate_port_num_or_name(errs, get(x, "port"), &child(&kp, "port")),
            "grpc" => port_num(errs, get_int(x, "port").unwrap_or(0), &child(&kp, "port")),
            "sleep" => {
                let secs = get_int(x, "seconds").unwrap_or(0);
                if let Some(g) = grace {
                    if secs <= 0 || secs > g {
                        errs.push(Cause::invalid(
                            &kp,
                            &Value::from(secs),
                            format!(
                                "must be greater than 0 and less than terminationGracePeriodSeconds ({g}). Enable AllowPodLifecycleSleepActionZeroValue feature gate for zero sleep."
                            ),
                        ));
                    }
                }
            }
            _ => {}
        }
    }
    if count == 0 {
        errs.push(required_detail(p, "must specify a handler type"));
    }
}

fn is_gated(spec: &Value) -> bool {
    !get_arr(spec, "schedulingGates").is_empty()
}

/// Upstream's `ValidatePodUpdate`: besides metadata, only images, a shrinking
/// activeDeadlineSeconds, added tolerations and removed scheduling gates may change.
pub(crate) fn validate_pod_update(new: &Value, old: &Value) -> Vec<Cause> {
    let mut errs = validate_pod(new);
    errs.extend(pod_annotation_updates(new, old));
    let ns = sub(new, "spec");
    let os = sub(old, "spec");

    for field in ["containers", "initContainers"] {
        let nc = get_arr(ns, field);
        if nc.len() != get_arr(os, field).len() {
            errs.push(Cause::forbidden(format!("spec.{field}"), "pod updates may not add or remove containers"));
            return errs;
        }
        for (i, c) in nc.iter().enumerate() {
            if get_str(c, "image").is_empty() {
                errs.push(Cause::required(format!("spec.{field}[{i}].image")));
            }
        }
    }

    let ads_path = "spec.activeDeadlineSeconds";
    match (get_int(ns, "activeDeadlineSeconds"), get_int(os, "activeDeadlineSeconds")) {
        (Some(n), _) if !(0..=i64::from(i32::MAX)).contains(&n) => {
            errs.push(Cause::invalid(ads_path, &Value::from(n), names::inclusive_range_error(0, i64::from(i32::MAX))));
            return errs;
        }
        (Some(n), Some(o)) if o < n => {
            errs.push(Cause::invalid(ads_path, &Value::from(n), "must be less than or equal to previous value"));
            return errs;
        }
        (None, Some(_)) => {
            errs.push(Cause::invalid(ads_path, &Value::Null, "must not update from a positive integer to nil value"))
        }
        _ => {}
    }

    errs.extend(only_added_tolerations(get_arr(ns, "tolerations"), get_arr(os, "tolerations")));
    let old_gates: HashSet<&str> = get_arr(os, "schedulingGates").iter().map(|g| get_str(g, "name")).collect();
    for (i, g) in get_arr(ns, "schedulingGates").iter().enumerate() {
        let name = get_str(g, "name");
        if !old_gates.contains(name) {
            errs.push(Cause::forbidden(
                format!("spec.schedulingGates[{i}].name"),
                format!("only deletion is allowed, but found new scheduling gate '{name}'"),
            ));
        }
    }

    if semantic_eq(Some(ns), Some(os)) {
        return errs;
    }
    // Put the old values back into the fields that may change; whatever still differs is
    // a change upstream forbids.
    let mut munged = ns.clone();
    if let Some(m) = munged.as_object_mut() {
        for field in ["containers", "initContainers"] {
            if let Some(Value::Array(cs)) = m.get_mut(field) {
                for (c, oc) in cs.iter_mut().zip(get_arr(os, field)) {
                    if let Some(cm) = c.as_object_mut() {
                        match get(oc, "image") {
                            Some(img) => cm.insert("image".into(), img.clone()),
                            None => cm.remove("image"),
                        };
                    }
                }
            }
        }
        for field in ["activeDeadlineSeconds", "schedulingGates", "tolerations"] {
            match get(os, field) {
                Some(v) => m.insert(field.into(), v.clone()),
                None => m.remove(field),
            };
        }
        let old_grace = get_int(os, "terminationGracePeriodSeconds");
        if old_grace.is_some_and(|g| g < 0) && get_int(ns, "terminationGracePeriodSeconds") == Some(1) {
            m.insert("terminationGracePeriodSeconds".into(), Value::from(old_grace));
        }
        // Gated pods are not scheduled yet, so their node selector may still grow.
        if is_gated(os) && !semantic_eq(get(ns, "nodeSelector"), get(os, "nodeSelector")) {
            let new_sel = get_obj(ns, "nodeSelector");
            let kept = get_obj(os, "nodeSelector")
                .is_none_or(|o| o.iter().all(|(k, v)| new_sel.and_then(|n| n.get(k)) == Some(v)));
            if !kept {
                errs.push(Cause::invalid(
                    "spec.nodeSelector",
                    sub(ns, "nodeSelector"),
                    "only additions to spec.nodeSelector are allowed (no mutations or deletions)",
                ));
            }
            match get(os, "nodeSelector") {
                Some(v) => m.insert("nodeSelector".into(), v.clone()),
                None => m.remove("nodeSelector"),
            };
        }
    }
    if !semantic_eq(Some(&munged), Some(os)) {
        errs.push(Cause::forbidden(
            "spec",
            format!(
                "pod updates may not change fields other than {}\n{}",
                UPDATABLE_POD_SPEC_FIELDS.join(","),
                describe_diff(os, &munged)
            ),
        ));
    }
    errs
}

fn only_added_tolerations(new: &[Value], old: &[Value]) -> Vec<Cause> {
    let strip = |t: &Value| {
        let mut t = t.clone();
        if let Some(m) = t.as_object_mut() {
            m.remove("tolerationSeconds");
        }
        normalized(&t)
    };
    let new_stripped: Vec<Option<Value>> = new.iter().map(strip).collect();
    for o in old {
        if !new_stripped.contains(&strip(o)) {
            return vec![Cause::forbidden(
                "spec.tolerations",
                "existing toleration can not be modified except its tolerationSeconds",
            )];
        }
    }
    Vec::new()
}

/// `ValidatePodStatusUpdate`, plus sanity of phase and condition values.
pub(crate) fn validate_pod_status_update(new: &Value, old: &Value) -> Vec<Cause> {
    let mut errs = pod_annotation_updates(new, old);
    let status = sub(new, "status");
    let old_status = sub(old, "status");
    if let Some(phase) = get(status, "phase") {
        let allowed = ["Pending", "Running", "Succeeded", "Failed", "Unknown"];
        if !phase.as_str().is_some_and(|p| allowed.contains(&p)) {
            errs.push(Cause::not_supported("status.phase", phase, &allowed));
        }
    }
    errs.extend(validate_conditions(
        get_arr(status, "conditions"),
        "status.conditions",
        &["PodScheduled", "Ready", "Initialized", "ContainersReady", "PodReadyToStartContainers", "DisruptionTarget"],
    ));
    // Binding (which the server routes through here) may assign an unscheduled pod; a pod
    // already on a node never moves.
    let old_node = get_str(sub(old, "spec"), "nodeName");
    if !old_node.is_empty() && get_str(sub(new, "spec"), "nodeName") != old_node {
        errs.push(Cause::forbidden("status.nodeName", "may not be changed directly"));
    }
    let nominated = get_str(status, "nominatedNodeName");
    if !nominated.is_empty() && nominated != get_str(old_status, "nominatedNodeName") {
        dns_subdomain(&mut errs, nominated, "status.nominatedNodeName");
    }
    let old_qos = get_str(old_status, "qosClass");
    if !old_qos.is_empty() && get_str(status, "qosClass") != old_qos {
        errs.push(Cause::invalid("status.qosClass", &str_value(get_str(status, "qosClass")), IMMUTABLE));
    }
    let restart = get_str(sub(old, "spec"), "restartPolicy");
    let restartable_init: HashSet<&str> = get_arr(sub(old, "spec"), "initContainers")
        .iter()
        .filter(|c| get_str(c, "restartPolicy") == "Always")
        .map(|c| get_str(c, "name"))
        .collect();
    for (field, policy) in [
        ("containerStatuses", restart),
        ("initContainerStatuses", restart),
        // The kubelet never restarts ephemeral containers.
        ("ephemeralContainerStatuses", "Never"),
    ] {
        let skip = |name: &str| field == "initContainerStatuses" && restartable_init.contains(name);
        errs.extend(state_transitions(
            get_arr(status, field),
            get_arr(old_status, field),
            policy,
            &format!("status.{field}"),
            skip,
        ));
    }
    errs.extend(ip_list(get_arr(status, "podIPs"), "status.podIPs"));
    let host_ips = get_arr(status, "hostIPs");
    if let Some(first) = host_ips.first() {
        if get_str(first, "ip") != get_str(status, "hostIP") {
            errs.push(Cause::invalid("status.hostIPs[0].ip", sub(first, "ip"), "must be equal to `hostIP`"));
        }
        errs.extend(ip_list(host_ips, "status.hostIPs"));
    }
    errs
}

/// Condition types are qualified names (known ones excepted) and statuses True/False/Unknown.
pub(crate) fn validate_conditions(conditions: &[Value], p: &str, system: &[&str]) -> Vec<Cause> {
    let mut errs = Vec::new();
    for (i, c) in conditions.iter().enumerate() {
        let cp = index(p, i);
        let t = get_str(c, "type");
        if t.is_empty() {
            errs.push(Cause::required(child(&cp, "type")));
        } else if !system.contains(&t) {
            qualified(&mut errs, t, &child(&cp, "type"));
        }
        one_of(&mut errs, get_str(c, "status"), &child(&cp, "status"), &["True", "False", "Unknown"]);
    }
    errs
}

fn state_transitions(
    new: &[Value],
    old: &[Value],
    restart_policy: &str,
    p: &str,
    skip: impl Fn(&str) -> bool,
) -> Vec<Cause> {
    let mut errs = Vec::new();
    if restart_policy == "Always" {
        return errs;
    }
    for (i, o) in old.iter().enumerate() {
        let Some(term) = get(sub(o, "state"), "terminated") else {
            continue;
        };
        let name = get_str(o, "name");
        if (get_int(term, "exitCode").unwrap_or(0) != 0 && restart_policy == "OnFailure") || skip(name) {
            continue;
        }
        let revived = new.iter().any(|n| get_str(n, "name") == name && get(sub(n, "state"), "terminated").is_none());
        if revived {
            errs.push(Cause::forbidden(format!("{p}[{i}].state"), "may not be transitioned to non-terminated state"));
        }
    }
    errs
}

/// Pod and host IP lists: valid, at most one per family, no repeats.
fn ip_list(list: &[Value], p: &str) -> Vec<Cause> {
    let mut errs = Vec::new();
    let mut families = Vec::new();
    let mut all_valid = true;
    for (i, entry) in list.iter().enumerate() {
        let ip = get_str(entry, "ip");
        match names::parse_ip(ip) {
            Some(v6) => families.push(v6),
            None => {
                all_valid = false;
                errs.push(Cause::invalid(index(p, i), &str_value(ip), names::INVALID_IP));
            }
        }
    }
    if list.len() > 1 {
        let dual = all_valid && families.len() == 2 && families[0] != families[1];
        if !dual {
            errs.push(Cause::invalid(
                p,
                &Value::Array(list.to_vec()),
                "may specify no more than one IP for each IP family",
            ));
        }
        let mut seen = BTreeSet::new();
        for (i, entry) in list.iter().enumerate() {
            if !seen.insert(get_str(entry, "ip")) {
                errs.push(Cause::duplicate(index(p, i), entry));
            }
        }
    }
    errs
}
