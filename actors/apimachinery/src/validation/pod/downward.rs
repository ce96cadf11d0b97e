//! Downward API selectors, shared by environment variables and volume files.

use serde_json::Value;

use super::qualified;
use crate::status::Cause;
use crate::validation::util::*;

/// Downward API paths an environment variable may read.
pub(super) const ENV_FIELD_PATHS: [&str; 9] = [
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
pub(super) const VOLUME_FIELD_PATHS: [&str; 5] =
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

/// Splits `metadata.labels['key']` into its path and subscript.
fn split_subscript(path: &str) -> Option<(&str, &str)> {
    let inner = path.strip_suffix("']")?;
    let (base, sub) = inner.split_once("['")?;
    (!base.is_empty()).then_some((base, sub))
}

pub(super) fn object_field_selector(errs: &mut Vec<Cause>, fs: &Value, allowed: &[&str], p: &str) {
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

pub(super) fn resource_field_selector(errs: &mut Vec<Cause>, rf: &Value, volume: bool, p: &str) {
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
