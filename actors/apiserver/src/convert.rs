//! Conversion between the API versions that share one storage, as upstream stores them:
//! `events.k8s.io/v1` Events are core `v1` Events, and `autoscaling/v1`
//! HorizontalPodAutoscalers are `autoscaling/v2` ones, so every version sees the same objects.

use kubus_apimachinery::{resource, ResourceInfo, StatusError};
use serde_json::{Map, Value};

/// (events.k8s.io/v1 field, core/v1 field) pairs that differ only in name.
const EVENT_FIELDS: &[(&str, &str)] = &[
    ("regarding", "involvedObject"),
    ("note", "message"),
    ("reportingController", "reportingComponent"),
    ("deprecatedSource", "source"),
    ("deprecatedFirstTimestamp", "firstTimestamp"),
    ("deprecatedLastTimestamp", "lastTimestamp"),
    ("deprecatedCount", "count"),
];

/// The resource whose typed form and rules apply in storage.
pub fn storage_info(info: &'static ResourceInfo) -> &'static ResourceInfo {
    if info.is_storage() {
        info
    } else {
        resource::find(info.storage_group, info.storage_version, info.storage_resource).unwrap_or(info)
    }
}

fn is_hpa_v1(info: &ResourceInfo) -> bool {
    info.group == "autoscaling" && info.version == "v1"
}

fn is_events_v1(info: &ResourceInfo) -> bool {
    info.group == "events.k8s.io"
}

fn rename(obj: &mut Map<String, Value>, pairs: impl Iterator<Item = (&'static str, &'static str)>) {
    for (from, to) in pairs {
        if let Some(v) = obj.remove(from) {
            obj.insert(to.to_string(), v);
        }
    }
}

/// Whether the requested version of a resource is its storage form unchanged.
pub fn is_identity(info: &ResourceInfo) -> bool {
    // Served as stored; anything served from another version's storage is converted.
    info.is_storage()
}

/// Storage form -> the requested API version.
pub fn to_version(info: &ResourceInfo, mut v: Value) -> Value {
    if is_hpa_v1(info) {
        return hpa::to_v1(v);
    }
    if is_events_v1(info) {
        if let Some(o) = v.as_object_mut() {
            rename(o, EVENT_FIELDS.iter().map(|(a, b)| (*b, *a)));
            o.insert("apiVersion".into(), Value::String("events.k8s.io/v1".into()));
        }
    }
    v
}

/// The requested API version -> storage form.
pub fn from_version(info: &ResourceInfo, mut v: Value) -> Result<Value, StatusError> {
    if is_hpa_v1(info) {
        // Typed as v1 first: a malformed v1 field is refused as such, not as a v2 one.
        let typed = (info.round_trip)(v).map_err(|e| StatusError::bad_request(e.to_string()))?;
        return Ok(hpa::from_v1(typed));
    }
    if is_events_v1(info) {
        let Some(o) = v.as_object_mut() else {
            return Err(StatusError::bad_request("expected a JSON object"));
        };
        match o.get("apiVersion").and_then(Value::as_str) {
            None | Some("") | Some("events.k8s.io/v1") => {}
            Some(other) => {
                return Err(StatusError::bad_request(format!(
                    "the API version in the data ({other}) does not match the expected API version (events.k8s.io/v1)"
                )))
            }
        }
        rename(o, EVENT_FIELDS.iter().copied());
        o.insert("apiVersion".into(), Value::String("v1".into()));
    }
    Ok(v)
}

/// autoscaling/v1 <-> v2 HorizontalPodAutoscalers. v1 knows one target (CPU utilization);
/// what only v2 can say travels in annotations, as upstream's conversion keeps it, so a v1
/// client that reads and writes back an object loses nothing.
mod hpa {
    use serde_json::{json, Map, Value};

    const METRICS: &str = "autoscaling.alpha.kubernetes.io/metrics";
    const BEHAVIOR: &str = "autoscaling.alpha.kubernetes.io/behavior";
    const CURRENT_METRICS: &str = "autoscaling.alpha.kubernetes.io/current-metrics";
    const CONDITIONS: &str = "autoscaling.alpha.kubernetes.io/conditions";

    fn is_cpu_utilization(m: &Value) -> bool {
        m["type"] == "Resource" && m["resource"]["name"] == "cpu" && m["resource"]["target"]["type"] == "Utilization"
    }

    fn annotations(v: &mut Value) -> &mut Map<String, Value> {
        if !v["metadata"].is_object() {
            v["metadata"] = json!({});
        }
        if !v["metadata"]["annotations"].is_object() {
            v["metadata"]["annotations"] = json!({});
        }
        v["metadata"]["annotations"].as_object_mut().expect("made an object above")
    }

    fn take_annotation(v: &mut Value, key: &str) -> Option<Value> {
        let a = v["metadata"]["annotations"].as_object_mut()?;
        let raw = a.remove(key)?;
        if a.is_empty() {
            v["metadata"].as_object_mut().map(|m| m.remove("annotations"));
        }
        serde_json::from_str(raw.as_str()?).ok()
    }

    pub fn to_v1(mut v: Value) -> Value {
        // Already converted (a read path may render what another converted).
        if v["apiVersion"] == "autoscaling/v1" {
            return v;
        }
        let spec = v["spec"].take();
        let status = v["status"].take();
        let metrics = spec["metrics"].as_array().cloned().unwrap_or_default();
        let (cpu, others): (Vec<Value>, Vec<Value>) = metrics.into_iter().partition(is_cpu_utilization);
        let mut v1_spec = json!({
            "scaleTargetRef": spec["scaleTargetRef"],
            "maxReplicas": spec["maxReplicas"],
        });
        if !spec["minReplicas"].is_null() {
            v1_spec["minReplicas"] = spec["minReplicas"].clone();
        }
        if let Some(target) = cpu.first().map(|m| m["resource"]["target"]["averageUtilization"].clone()) {
            v1_spec["targetCPUUtilizationPercentage"] = target;
        }
        if !others.is_empty() {
            annotations(&mut v).insert(METRICS.into(), Value::String(Value::Array(others).to_string()));
        }
        if !spec["behavior"].is_null() {
            annotations(&mut v).insert(BEHAVIOR.into(), Value::String(spec["behavior"].to_string()));
        }
        let mut v1_status = json!({
            "currentReplicas": status["currentReplicas"].as_i64().unwrap_or(0),
            "desiredReplicas": status["desiredReplicas"].as_i64().unwrap_or(0),
        });
        for field in ["observedGeneration", "lastScaleTime"] {
            if !status[field].is_null() {
                v1_status[field] = status[field].clone();
            }
        }
        let current = status["currentMetrics"].as_array().cloned().unwrap_or_default();
        let (cpu_now, other_now): (Vec<Value>, Vec<Value>) =
            current.into_iter().partition(|m| m["type"] == "Resource" && m["resource"]["name"] == "cpu");
        if let Some(u) = cpu_now.first().map(|m| m["resource"]["current"]["averageUtilization"].clone()) {
            if !u.is_null() {
                v1_status["currentCPUUtilizationPercentage"] = u;
            }
        }
        if !other_now.is_empty() {
            annotations(&mut v).insert(CURRENT_METRICS.into(), Value::String(Value::Array(other_now).to_string()));
        }
        if let Some(c) = status["conditions"].as_array().filter(|c| !c.is_empty()) {
            annotations(&mut v).insert(CONDITIONS.into(), Value::String(Value::Array(c.clone()).to_string()));
        }
        v["spec"] = v1_spec;
        v["status"] = v1_status;
        v["apiVersion"] = json!("autoscaling/v1");
        v
    }

    pub fn from_v1(mut v: Value) -> Value {
        let spec = v["spec"].take();
        let status = v["status"].take();
        let mut metrics: Vec<Value> = Vec::new();
        if let Some(t) = spec["targetCPUUtilizationPercentage"].as_i64() {
            metrics.push(json!({"type": "Resource", "resource": {"name": "cpu", "target": {"type": "Utilization", "averageUtilization": t}}}));
        }
        if let Some(Value::Array(others)) = take_annotation(&mut v, METRICS) {
            metrics.extend(others.into_iter().filter(|m| !is_cpu_utilization(m)));
        }
        let mut v2_spec = json!({"scaleTargetRef": spec["scaleTargetRef"], "maxReplicas": spec["maxReplicas"]});
        if !spec["minReplicas"].is_null() {
            v2_spec["minReplicas"] = spec["minReplicas"].clone();
        }
        if !metrics.is_empty() {
            v2_spec["metrics"] = Value::Array(metrics);
        }
        if let Some(b) = take_annotation(&mut v, BEHAVIOR) {
            v2_spec["behavior"] = b;
        }
        let mut v2_status = json!({});
        if status.is_object() {
            for field in ["observedGeneration", "lastScaleTime", "currentReplicas", "desiredReplicas"] {
                if !status[field].is_null() {
                    v2_status[field] = status[field].clone();
                }
            }
            let mut current: Vec<Value> = Vec::new();
            if let Some(u) = status["currentCPUUtilizationPercentage"].as_i64() {
                current.push(
                    json!({"type": "Resource", "resource": {"name": "cpu", "current": {"averageUtilization": u}}}),
                );
            }
            if let Some(Value::Array(others)) = take_annotation(&mut v, CURRENT_METRICS) {
                current.extend(others);
            }
            if !current.is_empty() {
                v2_status["currentMetrics"] = Value::Array(current);
            }
            if let Some(c) = take_annotation(&mut v, CONDITIONS) {
                v2_status["conditions"] = c;
            }
        } else {
            take_annotation(&mut v, CURRENT_METRICS);
            take_annotation(&mut v, CONDITIONS);
        }
        v["spec"] = v2_spec;
        v["status"] = v2_status;
        v["apiVersion"] = json!("autoscaling/v2");
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn events_round_trip() {
        let info = resource::find("events.k8s.io", "v1", "events").unwrap();
        let e = json!({"apiVersion":"events.k8s.io/v1","kind":"Event","note":"hi","regarding":{"kind":"Pod"}});
        let core = from_version(info, e.clone()).unwrap();
        assert_eq!(core["message"], "hi");
        assert_eq!(core["apiVersion"], "v1");
        assert_eq!(to_version(info, core), e);
    }

    #[test]
    fn hpa_v1_round_trips_through_v2_without_losing_v2_fields() {
        let v1 = resource::find("autoscaling", "v1", "horizontalpodautoscalers").unwrap();
        let v2 = json!({
            "apiVersion": "autoscaling/v2", "kind": "HorizontalPodAutoscaler",
            "metadata": {"name": "web", "namespace": "default"},
            "spec": {
                "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "web"},
                "minReplicas": 1, "maxReplicas": 3,
                "metrics": [
                    {"type": "Resource", "resource": {"name": "cpu", "target": {"type": "Utilization", "averageUtilization": 50}}},
                    {"type": "Resource", "resource": {"name": "memory", "target": {"type": "AverageValue", "averageValue": "100Mi"}}}
                ],
                "behavior": {"scaleDown": {"stabilizationWindowSeconds": 5}}
            },
            "status": {
                "currentReplicas": 2, "desiredReplicas": 3,
                "currentMetrics": [{"type": "Resource", "resource": {"name": "cpu", "current": {"averageUtilization": 70, "averageValue": "700m"}}}],
                "conditions": [{"type": "AbleToScale", "status": "True", "reason": "SucceededRescale"}]
            }
        });
        let old = to_version(v1, v2.clone());
        assert_eq!(old["apiVersion"], "autoscaling/v1");
        assert_eq!(old["spec"]["targetCPUUtilizationPercentage"], 50);
        assert_eq!(old["status"]["currentCPUUtilizationPercentage"], 70);
        assert!(old["metadata"]["annotations"]["autoscaling.alpha.kubernetes.io/metrics"]
            .as_str()
            .unwrap()
            .contains("memory"));
        let back = from_version(v1, old).unwrap();
        assert_eq!(back["spec"], v2["spec"]);
        assert_eq!(back["status"]["conditions"], v2["status"]["conditions"]);
        assert!(back["metadata"].get("annotations").is_none(), "{back}");
        // A plain v1 object (kubectl autoscale) becomes a CPU target.
        let plain = json!({"apiVersion": "autoscaling/v1", "kind": "HorizontalPodAutoscaler", "metadata": {"name": "a"},
            "spec": {"scaleTargetRef": {"kind": "Deployment", "name": "a"}, "maxReplicas": 3, "targetCPUUtilizationPercentage": 50}});
        let stored = from_version(v1, plain).unwrap();
        assert_eq!(stored["spec"]["metrics"][0]["resource"]["target"]["averageUtilization"], 50);
        let bad = json!({"spec": {"scaleTargetRef": {"kind": "Deployment", "name": "a"}, "maxReplicas": "three"}});
        assert!(from_version(v1, bad).is_err());
    }
}
