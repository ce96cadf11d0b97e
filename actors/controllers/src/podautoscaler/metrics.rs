//! The resource metrics the autoscaler reads: `metrics.k8s.io/v1beta1` PodMetrics of the
//! target's pods, through the API server (which serves what the nodes report), as
//! upstream's REST metrics client reads them from metrics-server.

use kubus_apimachinery::quantity::parse_quantity;
use kubus_controller_runtime::Client;
use std::collections::HashMap;
use std::time::{Duration, SystemTime};

/// One pod's usage: per container, per resource, in milli-units.
#[derive(Debug, Clone)]
pub struct PodUsage {
    pub timestamp: SystemTime,
    pub window: Duration,
    pub containers: HashMap<String, HashMap<String, i64>>,
}

/// "10.5s", "1m0s" (Go's duration format, as metrics-server writes `window`).
fn go_duration(s: &str) -> Option<Duration> {
    let mut total = 0.0f64;
    let mut number = String::new();
    let mut chars = s.chars().peekable();
    while let Some(c) = chars.next() {
        if c.is_ascii_digit() || c == '.' {
            number.push(c);
            continue;
        }
        let mut unit = c.to_string();
        if c == 'm' && chars.peek() == Some(&'s') {
            unit.push(chars.next()?);
        }
        let n: f64 = number.parse().ok()?;
        number.clear();
        total += n * match unit.as_str() {
            "h" => 3600.0,
            "m" => 60.0,
            "s" => 1.0,
            "ms" => 0.001,
            _ => return None,
        };
    }
    number.is_empty().then(|| Duration::from_secs_f64(total))
}

/// Usage of the pods of `namespace` matching `selector` (a label selector string), by pod name.
pub async fn pod_usage(client: &Client, namespace: &str, selector: &str) -> Result<HashMap<String, PodUsage>, String> {
    let path = format!("/apis/metrics.k8s.io/v1beta1/namespaces/{namespace}/pods");
    let query = format!("labelSelector={}", urlencoding(selector));
    let list = client.request("GET", &path, &query, None, None).await.map_err(|e| e.to_string())?;
    let mut out = HashMap::new();
    for item in list["items"].as_array().into_iter().flatten() {
        let Some(name) = item["metadata"]["name"].as_str() else { continue };
        let timestamp = item["timestamp"]
            .as_str()
            .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok())
            .map_or(SystemTime::UNIX_EPOCH, |t| t.with_timezone(&chrono::Utc).into());
        let window = item["window"].as_str().and_then(go_duration).unwrap_or(Duration::from_secs(15));
        let mut containers = HashMap::new();
        for c in item["containers"].as_array().into_iter().flatten() {
            let usage: HashMap<String, i64> = c["usage"]
                .as_object()
                .into_iter()
                .flatten()
                .filter_map(|(r, q)| Some((r.clone(), parse_quantity(q.as_str()?).ok()?.milli_value() as i64)))
                .collect();
            containers.insert(c["name"].as_str().unwrap_or("").to_string(), usage);
        }
        out.insert(name.to_string(), PodUsage { timestamp, window, containers });
    }
    Ok(out)
}

/// Percent-encodes a query value (selectors hold `=`, `,`, `!` and spaces).
fn urlencoding(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn go_durations_and_selectors() {
        assert_eq!(go_duration("10.5s"), Some(Duration::from_millis(10500)));
        assert_eq!(go_duration("1m0s"), Some(Duration::from_secs(60)));
        assert_eq!(go_duration("250ms"), Some(Duration::from_millis(250)));
        assert_eq!(go_duration("x"), None);
        assert_eq!(urlencoding("app=web,tier!=db"), "app%3Dweb%2Ctier%21%3Ddb");
    }
}
