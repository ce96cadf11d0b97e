//! Pods, pod templates and pod specs: upstream `ValidatePodSpec`, `ValidatePodUpdate` and
//! `ValidatePodStatusUpdate`, over JSON. Validation expects defaulted objects, as upstream
//! does: fields the defaulter always fills (restartPolicy, dnsPolicy, imagePullPolicy, ...)
//! are required here.
//!
//! This module holds the pod, the template and the spec's own fields; each section of the
//! spec has a file: [`volumes`], [`downward`] (downward API selectors), [`containers`],
//! [`resources`], [`security`], [`network`] (host network, DNS), [`scheduling`]
//! (tolerations, affinity, topology spread), [`probes`] (probes, lifecycle hooks), and the
//! writes to an existing pod: [`update`], [`status`].

mod containers;
mod downward;
mod network;
mod probes;
pub(crate) mod resources;
mod scheduling;
mod security;
mod status;
mod update;
mod volumes;

use std::collections::{HashMap, HashSet};

use serde_json::Value;

use super::meta::{self, NameRule, Scope};
use super::names;
use super::util::*;
use crate::status::Cause;
use containers::{validate_containers, validate_ephemeral_containers, validate_init_containers, Containers};
use network::{validate_dns_config, validate_host_network_ports};
use resources::validate_resource_list;
use scheduling::{validate_affinity, validate_topology_spread};
use security::validate_pod_security_context;
use volumes::validate_volumes;

pub(crate) use scheduling::{taint_effect, validate_tolerations};
pub(crate) use status::{validate_conditions, validate_pod_status_update};
pub(crate) use update::validate_pod_update;

pub(super) const MIRROR_ANNOTATION: &str = "kubernetes.io/config.mirror";
const DELETION_COST_ANNOTATION: &str = "controller.kubernetes.io/pod-deletion-cost";
pub(super) const APPARMOR_PREFIX: &str = "container.apparmor.security.beta.kubernetes.io/";
const FILE_MODE_ERROR: &str = "must be a number between 0 and 0777 (octal), both inclusive";
pub(super) const MAX_ID: i64 = 4_294_967_295;

/// Whether the spec belongs to a Pod or to a template inside a workload; a few rules are
/// stricter for real pods.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Opts {
    pub(crate) is_pod: bool,
}

/// Volumes that validated cleanly, by name; mounts may only refer to these.
pub(super) type Volumes<'a> = HashMap<&'a str, &'a Value>;

pub(super) fn dns_label(errs: &mut Vec<Cause>, value: &str, path: &str) {
    invalid_each(errs, path, value, names::dns1123_label_errors(value));
}

pub(super) fn dns_subdomain(errs: &mut Vec<Cause>, value: &str, path: &str) {
    invalid_each(errs, path, value, names::dns1123_subdomain_errors(value));
}

pub(super) fn qualified(errs: &mut Vec<Cause>, value: &str, path: &str) {
    invalid_each(errs, path, value, names::qualified_name_errors(value));
}

pub(super) fn port_num(errs: &mut Vec<Cause>, n: i64, path: &str) {
    if !(1..=65535).contains(&n) {
        errs.push(Cause::invalid(path, &Value::from(n), names::inclusive_range_error(1, 65535)));
    }
}

pub(super) fn one_of(errs: &mut Vec<Cause>, value: &str, path: &str, allowed: &[&str]) {
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

pub(super) fn id_range(errs: &mut Vec<Cause>, v: &Value, k: &str, path: &str) {
    if let Some(id) = int_field(errs, v, k, path) {
        if !(0..=MAX_ID).contains(&id) {
            errs.push(Cause::invalid(path, &Value::from(id), names::inclusive_range_error(0, MAX_ID)));
        }
    }
}

pub(super) fn file_mode(errs: &mut Vec<Cause>, v: &Value, k: &str, path: &str) {
    if let Some(m) = int_field(errs, v, k, path) {
        if !(0..=0o777).contains(&m) {
            errs.push(Cause::invalid(path, &Value::from(m), FILE_MODE_ERROR));
        }
    }
}

/// Upstream's one-of-many members (volume sources, probe and hook handlers): `check` sees the
/// first member set, each further one is refused, and having none is an error.
pub(super) fn exactly_one(
    errs: &mut Vec<Cause>,
    obj: &Value,
    members: &[&str],
    p: &str,
    what: &str,
    mut check: impl FnMut(&mut Vec<Cause>, &str, &Value, &str),
) {
    let mut found = false;
    for member in members {
        let Some(value) = get(obj, member) else {
            continue;
        };
        let mp = child(p, member);
        if found {
            errs.push(Cause::forbidden(&mp, format!("may not specify more than 1 {what}")));
            continue;
        }
        found = true;
        check(errs, member, value, &mp);
    }
    if !found {
        errs.push(required_detail(p, &format!("must specify a {what}")));
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
    let containers = Containers { spec, vols: &vols, grace, path: p, host_users };
    validate_containers(&containers, &mut errs);
    validate_init_containers(&containers, &mut errs);
    validate_ephemeral_containers(&containers, &mut errs);
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

fn validate_image_pull_secrets(spec: &Value, p: &str, errs: &mut Vec<Cause>) {
    for (i, s) in get_arr(spec, "imagePullSecrets").iter().enumerate() {
        let extra = s.as_object().is_some_and(|m| m.keys().any(|k| k != "name"));
        if extra {
            errs.push(Cause::invalid(index(&child(p, "imagePullSecrets"), i), s, "only name may be set"));
        }
    }
}
