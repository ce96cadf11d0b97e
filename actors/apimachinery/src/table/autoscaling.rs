//! Rows for the `autoscaling` group: HorizontalPodAutoscalers (`kubectl get hpa`).

use std::time::SystemTime;

use serde_json::{json, Value};

use super::{age, name};

/// One target as upstream prints it: `cpu: 35%/50%`, `memory: 90Mi/100Mi`, `<unknown>` for
/// what the autoscaler has not measured yet.
fn metric(spec: &Value, status: Option<&Value>) -> String {
    let unknown = || "<unknown>".to_string();
    match spec["type"].as_str().unwrap_or("") {
        ty @ ("Resource" | "ContainerResource") => {
            let member = if ty == "Resource" { "resource" } else { "containerResource" };
            let (source, current) = (&spec[member], status.map(|s| &s[member]["current"]));
            let name = source["name"].as_str().unwrap_or("");
            let target = &source["target"];
            if let Some(avg) = target["averageValue"].as_str() {
                let now = current.and_then(|c| c["averageValue"].as_str()).map_or_else(unknown, str::to_string);
                format!("{name}: {now}/{avg}")
            } else {
                let now =
                    current.and_then(|c| c["averageUtilization"].as_i64()).map_or_else(unknown, |u| format!("{u}%"));
                let want = target["averageUtilization"].as_i64().map_or("<auto>".to_string(), |u| format!("{u}%"));
                format!("{name}: {now}/{want}")
            }
        }
        ty @ ("Pods" | "Object" | "External") => {
            let member = ty.to_ascii_lowercase();
            let target = &spec[&member]["target"];
            let current = status.map(|s| &s[&member]["current"]);
            let (want, field, suffix) = match target["value"].as_str() {
                Some(v) => (v, "value", ""),
                None => (target["averageValue"].as_str().unwrap_or(""), "averageValue", " (avg)"),
            };
            let now = current.and_then(|c| c[field].as_str()).map_or_else(unknown, str::to_string);
            format!("{now}/{want}{suffix}")
        }
        _ => "<unknown type>".to_string(),
    }
}

fn targets(hpa: &Value) -> String {
    let specs: Vec<Value> = match hpa["spec"]["metrics"].as_array() {
        Some(m) => m.clone(),
        // The autoscaling/v1 view.
        None => match hpa["spec"]["targetCPUUtilizationPercentage"].as_i64() {
            Some(t) => {
                let now = hpa["status"]["currentCPUUtilizationPercentage"].as_i64();
                let now = now.map_or("<unknown>".to_string(), |u| format!("{u}%"));
                return format!("cpu: {now}/{t}%");
            }
            None => Vec::new(),
        },
    };
    if specs.is_empty() {
        return "<none>".to_string();
    }
    let statuses = hpa["status"]["currentMetrics"].as_array().cloned().unwrap_or_default();
    let list: Vec<String> = specs.iter().enumerate().map(|(i, s)| metric(s, statuses.get(i))).collect();
    const SHOWN: usize = 2;
    if list.len() > SHOWN {
        format!("{} + {} more...", list[..SHOWN].join(", "), list.len() - SHOWN)
    } else {
        list.join(", ")
    }
}

pub(super) fn horizontal_pod_autoscaler(hpa: &Value, now: SystemTime) -> Vec<Value> {
    let target = &hpa["spec"]["scaleTargetRef"];
    let reference = format!("{}/{}", target["kind"].as_str().unwrap_or(""), target["name"].as_str().unwrap_or(""));
    let min = hpa["spec"]["minReplicas"].as_i64().map_or("<unset>".to_string(), |m| m.to_string());
    vec![
        name(hpa),
        json!(reference),
        json!(targets(hpa)),
        json!(min),
        json!(hpa["spec"]["maxReplicas"].as_i64().unwrap_or(0)),
        json!(hpa["status"]["currentReplicas"].as_i64().unwrap_or(0)),
        age(hpa, now),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_read_as_upstream_prints_them() {
        let hpa = json!({"spec": {"metrics": [
            {"type": "Resource", "resource": {"name": "cpu", "target": {"type": "Utilization", "averageUtilization": 50}}},
            {"type": "Resource", "resource": {"name": "memory", "target": {"type": "AverageValue", "averageValue": "100Mi"}}}
        ]}, "status": {"currentMetrics": [
            {"type": "Resource", "resource": {"name": "cpu", "current": {"averageUtilization": 35, "averageValue": "35m"}}}
        ]}});
        assert_eq!(targets(&hpa), "cpu: 35%/50%, memory: <unknown>/100Mi");
        let v1 = json!({"spec": {"targetCPUUtilizationPercentage": 50}, "status": {}});
        assert_eq!(targets(&v1), "cpu: <unknown>/50%");
    }
}
