//! Volumes and their sources: upstream `ValidateVolumes` and the checks of each source.

use std::collections::HashSet;

use serde_json::Value;

use super::downward::{object_field_selector, resource_field_selector, VOLUME_FIELD_PATHS};
use super::{dns_label, exactly_one, file_mode, one_of, Opts, Volumes};
use crate::quantity;
use crate::status::Cause;
use crate::validation::util::*;

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

pub(super) fn validate_volumes<'a>(spec: &'a Value, p: &str, opts: Opts, errs: &mut Vec<Cause>) -> Volumes<'a> {
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
    exactly_one(&mut errs, vol, &VOLUME_SOURCES, p, "volume type", |errs, source, src, sp| match source {
        "emptyDir" => {
            if let Some(limit) = get(src, "sizeLimit") {
                let ok = quantity::parse_quantity_value(limit).is_ok_and(|q| !q.is_negative());
                if !ok {
                    errs.push(Cause::forbidden(
                        child(sp, "sizeLimit"),
                        "SizeLimit field must be a valid resource quantity",
                    ));
                }
            }
        }
        "hostPath" => {
            let path = get_str(src, "path");
            if path.is_empty() {
                errs.push(Cause::required(child(sp, "path")));
            } else {
                no_backsteps(errs, path, &child(sp, "path"));
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
                        errs.push(Cause::not_supported(child(sp, "type"), &str_value(t), &allowed));
                    }
                }
            }
        }
        "gitRepo" => {
            if get_str(src, "repository").is_empty() {
                errs.push(Cause::required(child(sp, "repository")));
            }
            local_descending(errs, get_str(src, "directory"), &child(sp, "directory"));
        }
        "secret" => {
            if get_str(src, "secretName").is_empty() {
                errs.push(Cause::required(child(sp, "secretName")));
            }
            file_mode(errs, src, "defaultMode", &child(sp, "defaultMode"));
            key_to_paths(errs, src, sp);
        }
        "configMap" => {
            if get_str(src, "name").is_empty() {
                errs.push(Cause::required(child(sp, "name")));
            }
            file_mode(errs, src, "defaultMode", &child(sp, "defaultMode"));
            key_to_paths(errs, src, sp);
        }
        "persistentVolumeClaim" if get_str(src, "claimName").is_empty() => {
            errs.push(Cause::required(child(sp, "claimName")));
        }
        "nfs" => {
            let path = get_str(src, "path");
            if get_str(src, "server").is_empty() {
                errs.push(Cause::required(child(sp, "server")));
            }
            if path.is_empty() {
                errs.push(Cause::required(child(sp, "path")));
            }
            if !path.starts_with('/') {
                errs.push(Cause::invalid(child(sp, "path"), &str_value(path), "must be an absolute path"));
            }
        }
        "downwardAPI" => {
            file_mode(errs, src, "defaultMode", &child(sp, "defaultMode"));
            for file in get_arr(src, "items") {
                downward_api_file(errs, file, sp);
            }
        }
        "projected" => {
            file_mode(errs, src, "defaultMode", &child(sp, "defaultMode"));
            projected_sources(errs, src, sp);
        }
        "csi" if get_str(src, "driver").is_empty() => {
            errs.push(Cause::required(child(sp, "driver")));
        }
        "ephemeral" if get(src, "volumeClaimTemplate").is_none() => {
            errs.push(Cause::required(child(sp, "volumeClaimTemplate")));
        }
        "image" => {
            if opts.is_pod && get_str(src, "reference").is_empty() {
                errs.push(Cause::required(child(sp, "reference")));
            }
            one_of(errs, get_str(src, "pullPolicy"), &child(sp, "pullPolicy"), &["Always", "IfNotPresent", "Never"]);
        }
        _ => {}
    });
    errs
}

fn no_backsteps(errs: &mut Vec<Cause>, path: &str, fp: &str) {
    if path.replace('\\', "/").split('/').any(|part| part == "..") {
        errs.push(Cause::invalid(fp, &str_value(path), "must not contain '..'"));
    }
}

/// Relative, without `..` elements: the path stays inside the volume.
pub(super) fn local_descending(errs: &mut Vec<Cause>, path: &str, fp: &str) {
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
