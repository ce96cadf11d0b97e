//! Containers, init containers and ephemeral containers: names, ports, environment,
//! mounts and devices.

use std::collections::{HashMap, HashSet};

use serde_json::Value;

use super::downward::{object_field_selector, resource_field_selector, ENV_FIELD_PATHS};
use super::probes::{lifecycle, probe, ProbeKind};
use super::resources::validate_resources;
use super::security::container_security_context;
use super::volumes::local_descending;
use super::{dns_label, dns_subdomain, one_of, port_num, Volumes};
use crate::status::Cause;
use crate::validation::names;
use crate::validation::util::*;

/// What every container of a spec is checked against.
pub(super) struct Containers<'a> {
    pub(super) spec: &'a Value,
    pub(super) vols: &'a Volumes<'a>,
    /// The pod's terminationGracePeriodSeconds, which bounds sleep hooks.
    pub(super) grace: Option<i64>,
    /// The spec's path.
    pub(super) path: &'a str,
    pub(super) host_users: bool,
}

/// Lifecycle hooks and probes, which regular and sidecar containers share.
fn hooks_and_probes(errs: &mut Vec<Cause>, c: &Value, grace: Option<i64>, path: &str) {
    if let Some(lc) = get(c, "lifecycle") {
        lifecycle(errs, lc, grace, &child(path, "lifecycle"));
    }
    probe(errs, get(c, "livenessProbe"), grace, &child(path, "livenessProbe"), ProbeKind::Liveness);
    probe(errs, get(c, "readinessProbe"), grace, &child(path, "readinessProbe"), ProbeKind::Readiness);
    probe(errs, get(c, "startupProbe"), grace, &child(path, "startupProbe"), ProbeKind::Startup);
}

pub(super) fn validate_containers(cx: &Containers, errs: &mut Vec<Cause>) {
    let cp = child(cx.path, "containers");
    let containers = get_arr(cx.spec, "containers");
    if containers.is_empty() {
        errs.push(Cause::required(&cp));
        return;
    }
    let mut seen = HashSet::new();
    for (i, c) in containers.iter().enumerate() {
        let path = index(&cp, i);
        container_common(c, cx.vols, &path, cx.host_users, errs);
        let name = get_str(c, "name");
        if !seen.insert(name) {
            errs.push(Cause::duplicate(child(&path, "name"), &str_value(name)));
        }
        hooks_and_probes(errs, c, cx.grace, &path);
        if get(c, "restartPolicy").is_some() {
            errs.push(Cause::forbidden(child(&path, "restartPolicy"), "may not be set for non-init containers"));
        }
    }
    // Regular containers run together, so their host ports must not collide.
    host_port_conflicts(errs, containers.iter().enumerate(), &cp);
}

pub(super) fn validate_init_containers(cx: &Containers, errs: &mut Vec<Cause>) {
    let ip = child(cx.path, "initContainers");
    let mut seen: HashSet<&str> = get_arr(cx.spec, "containers").iter().map(|c| get_str(c, "name")).collect();
    for (i, c) in get_arr(cx.spec, "initContainers").iter().enumerate() {
        let path = index(&ip, i);
        container_common(c, cx.vols, &path, cx.host_users, errs);
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
            hooks_and_probes(errs, c, cx.grace, &path);
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

pub(super) fn validate_ephemeral_containers(cx: &Containers, errs: &mut Vec<Cause>) {
    let ep = child(cx.path, "ephemeralContainers");
    let mut others = HashSet::new();
    for field in ["containers", "initContainers"] {
        others.extend(get_arr(cx.spec, field).iter().map(|c| get_str(c, "name")));
    }
    let mut all = others.clone();
    for (i, c) in get_arr(cx.spec, "ephemeralContainers").iter().enumerate() {
        let path = index(&ep, i);
        container_common(c, cx.vols, &path, cx.host_users, errs);
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
