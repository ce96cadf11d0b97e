//! Pod and container security contexts: ids, seccomp and AppArmor profiles, user
//! namespaces.

use serde_json::Value;

use super::volumes::local_descending;
use super::{id_range, one_of, MAX_ID};
use crate::status::Cause;
use crate::validation::names;
use crate::validation::util::*;

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

pub(super) fn container_security_context(errs: &mut Vec<Cause>, sc: &Value, p: &str, host_users: bool) {
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

pub(super) fn validate_pod_security_context(spec: &Value, p: &str, errs: &mut Vec<Cause>) {
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
