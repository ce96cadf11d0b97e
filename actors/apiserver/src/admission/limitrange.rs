//! The LimitRanger plugin (upstream `plugin/pkg/admission/limitranger`): a new pod's
//! containers get the namespace's LimitRange defaults (`default` limits, `defaultRequest`
//! requests) where they set none, recorded in the `kubernetes.io/limit-ranger` annotation;
//! then pods (per Container and per Pod) and claims (storage) must stay within each
//! LimitRange's `min`, `max` and `maxLimitRequestRatio`. Pod updates cannot change resources,
//! so only creates are checked for pods, as upstream.

use super::Attributes;
use crate::cache::WatchCache;
use k8s_openapi::api::core::v1::PodSpec;
use kubus_apimachinery::quantity::{parse_quantity_value, Quantity};
use kubus_apimachinery::quota::{pod_resources, ResourceList};
use kubus_apimachinery::StatusError;
use serde::Deserialize;
use serde_json::{json, Map, Value};
use std::sync::Arc;

const ANNOTATION: &str = "kubernetes.io/limit-ranger";

fn limit_ranges(cache: &WatchCache, namespace: &str) -> Vec<Arc<Value>> {
    // Few, and read on every create in their namespace: kept decoded.
    cache.list(&(String::new(), "limitranges".to_string()), Some(namespace)).0.iter().map(|lr| lr.shared()).collect()
}

fn list(v: &Value) -> ResourceList {
    v.as_object().into_iter().flatten().filter_map(|(k, q)| Some((k.clone(), parse_quantity_value(q).ok()?))).collect()
}

fn items(lr: &Value) -> &[Value] {
    lr["spec"]["limits"].as_array().map(Vec::as_slice).unwrap_or_default()
}

/// Which writes the plugin looks at: pod creates, claim creates and updates.
fn applies(a: &Attributes, validate: bool) -> bool {
    if !a.info.group.is_empty() || a.old.is_some_and(|o| o["metadata"]["deletionTimestamp"].is_string()) {
        return false;
    }
    match a.info.resource {
        "pods" => a.old.is_none(),
        "persistentvolumeclaims" => validate,
        _ => false,
    }
}

/// Fills each container's missing requests and limits from the Container items' defaults.
pub fn admit(cache: &WatchCache, a: &Attributes, pod: &mut Value) -> Result<(), StatusError> {
    if !applies(a, false) {
        return Ok(());
    }
    for lr in limit_ranges(cache, a.namespace) {
        let (mut limits, mut requests) = (Map::new(), Map::new());
        for item in items(&lr).iter().filter(|i| i["type"] == "Container") {
            limits.extend(item["default"].as_object().cloned().unwrap_or_default());
            requests.extend(item["defaultRequest"].as_object().cloned().unwrap_or_default());
        }
        if limits.is_empty() && requests.is_empty() {
            continue;
        }
        let mut notes = Vec::new();
        for (field, what) in [("containers", "container"), ("initContainers", "init container")] {
            for c in pod["spec"][field].as_array_mut().into_iter().flatten() {
                let name = c["name"].as_str().unwrap_or_default().to_string();
                let res = &mut c["resources"];
                if !res.is_object() {
                    *res = json!({});
                }
                let set_limits = merge(res, "limits", &limits);
                let set_requests = merge(res, "requests", &requests);
                if !set_requests.is_empty() {
                    notes.push(format!("{} request for {what} {name}", set_requests.join(", ")));
                }
                if !set_limits.is_empty() {
                    notes.push(format!("{} limit for {what} {name}", set_limits.join(", ")));
                }
            }
        }
        if !notes.is_empty() {
            let meta = &mut pod["metadata"];
            if !meta["annotations"].is_object() {
                meta["annotations"] = json!({});
            }
            meta["annotations"][ANNOTATION] = json!(format!("LimitRanger plugin set: {}", notes.join("; ")));
        }
    }
    Ok(())
}

/// Adds the defaults a list lacks; returns the names added, sorted.
fn merge(res: &mut Value, field: &str, defaults: &Map<String, Value>) -> Vec<String> {
    if !res[field].is_object() {
        res[field] = json!({});
    }
    let target = res[field].as_object_mut().expect("made an object above");
    let mut set: Vec<String> = Vec::new();
    for (k, v) in defaults {
        if !target.contains_key(k) {
            target.insert(k.clone(), v.clone());
            set.push(k.clone());
        }
    }
    if target.is_empty() {
        res.as_object_mut().map(|r| r.remove(field));
    }
    set.sort();
    set
}

/// Enforces every LimitRange of the namespace; the first one violated refuses the write with
/// all of its violations.
pub fn validate(cache: &WatchCache, a: &Attributes, obj: &Value) -> Result<(), StatusError> {
    if !applies(a, true) {
        return Ok(());
    }
    for lr in limit_ranges(cache, a.namespace) {
        let errs = match a.info.resource {
            "pods" => pod_violations(&lr, obj),
            _ => claim_violations(&lr, obj),
        };
        if !errs.is_empty() {
            return Err(a.forbidden(aggregate(errs)));
        }
    }
    Ok(())
}

/// Upstream's error aggregate: one message as is, several in brackets, repeats dropped.
pub fn aggregate(mut errs: Vec<String>) -> String {
    let mut seen = Vec::new();
    errs.retain(|e| {
        let new = !seen.contains(e);
        seen.push(e.clone());
        new
    });
    match errs.as_slice() {
        [one] => one.clone(),
        _ => format!("[{}]", errs.join(", ")),
    }
}

fn min_constraint(t: &str, r: &str, enforced: &Quantity, req: &ResourceList, lim: &ResourceList) -> Option<String> {
    let Some(request) = req.get(r) else {
        return Some(format!("minimum {r} usage per {t} is {enforced}.  No request is specified"));
    };
    if request < enforced {
        return Some(format!("minimum {r} usage per {t} is {enforced}, but request is {request}"));
    }
    match lim.get(r) {
        Some(limit) if limit < enforced => {
            Some(format!("minimum {r} usage per {t} is {enforced}, but limit is {limit}"))
        }
        _ => None,
    }
}

fn max_constraint(t: &str, r: &str, enforced: &Quantity, req: &ResourceList, lim: &ResourceList) -> Option<String> {
    let Some(limit) = lim.get(r) else {
        return Some(format!("maximum {r} usage per {t} is {enforced}.  No limit is specified"));
    };
    if limit > enforced {
        return Some(format!("maximum {r} usage per {t} is {enforced}, but limit is {limit}"));
    }
    match req.get(r) {
        Some(request) if request > enforced => {
            Some(format!("maximum {r} usage per {t} is {enforced}, but request is {request}"))
        }
        _ => None,
    }
}

fn ratio_constraint(t: &str, r: &str, enforced: &Quantity, req: &ResourceList, lim: &ResourceList) -> Option<String> {
    let request = req.get(r).map_or(0, Quantity::milli_value);
    let limit = lim.get(r).map_or(0, Quantity::milli_value);
    if request == 0 {
        return Some(format!(
            "{r} max limit to request ratio per {t} is {enforced}, but no request is specified or request is 0"
        ));
    }
    if limit == 0 {
        return Some(format!(
            "{r} max limit to request ratio per {t} is {enforced}, but no limit is specified or limit is 0"
        ));
    }
    let observed = limit as f64 / request as f64;
    (observed * 1000.0 > enforced.milli_value() as f64)
        .then(|| format!("{r} max limit to request ratio per {t} is {enforced}, but provided ratio is {observed:.6}"))
}

/// Every min, max and ratio of one item against one set of requests and limits.
fn check_item(item: &Value, t: &str, req: &ResourceList, lim: &ResourceList, errs: &mut Vec<String>) {
    for (r, q) in list(&item["min"]) {
        errs.extend(min_constraint(t, &r, &q, req, lim));
    }
    for (r, q) in list(&item["max"]) {
        errs.extend(max_constraint(t, &r, &q, req, lim));
    }
    for (r, q) in list(&item["maxLimitRequestRatio"]) {
        errs.extend(ratio_constraint(t, &r, &q, req, lim));
    }
}

fn pod_violations(lr: &Value, pod: &Value) -> Vec<String> {
    let mut errs = Vec::new();
    let resources = |c: &Value| (list(&c["resources"]["requests"]), list(&c["resources"]["limits"]));
    for item in items(lr) {
        match item["type"].as_str() {
            Some("Container") => {
                for field in ["containers", "initContainers"] {
                    for c in pod["spec"][field].as_array().into_iter().flatten() {
                        let (req, lim) = resources(c);
                        check_item(item, "Container", &req, &lim, &mut errs);
                    }
                }
            }
            Some("Pod") => {
                let spec = PodSpec::deserialize(&pod["spec"]).unwrap_or_default();
                let (req, lim) = (pod_resources(&spec, false), pod_resources(&spec, true));
                check_item(item, "Pod", &req, &lim, &mut errs);
            }
            _ => {}
        }
    }
    errs
}

/// Claims: min and max of the requested storage (limits are not user input for claims).
fn claim_violations(lr: &Value, pvc: &Value) -> Vec<String> {
    let mut errs = Vec::new();
    let req = list(&pvc["spec"]["resources"]["requests"]);
    let t = "PersistentVolumeClaim";
    for item in items(lr).iter().filter(|i| i["type"] == t) {
        for (r, q) in list(&item["min"]) {
            errs.extend(min_constraint(t, &r, &q, &req, &ResourceList::new()));
        }
        for (r, q) in list(&item["max"]) {
            match req.get(&r) {
                None => errs.push(format!("maximum {r} usage per {t} is {q}.  No request is specified")),
                Some(request) if *request > q => {
                    errs.push(format!("maximum {r} usage per {t} is {q}, but request is {request}"))
                }
                Some(_) => {}
            }
        }
    }
    errs
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lr(limits: Value) -> Value {
        json!({"metadata": {"name": "l"}, "spec": {"limits": limits}})
    }

    fn pod(resources: Value) -> Value {
        json!({"spec": {"containers": [{"name": "c", "resources": resources}]}})
    }

    #[test]
    fn container_max_min_and_ratio_messages() {
        let l = lr(json!([{"type": "Container", "max": {"cpu": "500m"}, "min": {"memory": "64Mi"}}]));
        let errs =
            pod_violations(&l, &pod(json!({"limits": {"cpu": "1"}, "requests": {"cpu": "1", "memory": "32Mi"}})));
        assert_eq!(
            aggregate(errs),
            "[minimum memory usage per Container is 64Mi, but request is 32Mi, maximum cpu usage per Container is 500m, but limit is 1]"
        );
        let errs = pod_violations(&l, &pod(json!({"requests": {"memory": "64Mi"}})));
        assert_eq!(aggregate(errs), "maximum cpu usage per Container is 500m.  No limit is specified");
        let ratio = lr(json!([{"type": "Container", "maxLimitRequestRatio": {"cpu": "2"}}]));
        let errs = pod_violations(&ratio, &pod(json!({"requests": {"cpu": "100m"}, "limits": {"cpu": "300m"}})));
        assert_eq!(
            aggregate(errs),
            "cpu max limit to request ratio per Container is 2, but provided ratio is 3.000000"
        );
    }

    #[test]
    fn pod_and_claim_limits() {
        let l = lr(json!([{"type": "Pod", "max": {"cpu": "1"}}]));
        let two = json!({"spec": {"containers": [
            {"name": "a", "resources": {"limits": {"cpu": "600m"}}}, {"name": "b", "resources": {"limits": {"cpu": "600m"}}}]}});
        assert_eq!(pod_violations(&l, &two), vec!["maximum cpu usage per Pod is 1, but limit is 1200m".to_string()]);
        let c = lr(json!([{"type": "PersistentVolumeClaim", "max": {"storage": "2Gi"}, "min": {"storage": "1Gi"}}]));
        let big = json!({"spec": {"resources": {"requests": {"storage": "5Gi"}}}});
        assert_eq!(
            claim_violations(&c, &big),
            vec!["maximum storage usage per PersistentVolumeClaim is 2Gi, but request is 5Gi".to_string()]
        );
    }
}
