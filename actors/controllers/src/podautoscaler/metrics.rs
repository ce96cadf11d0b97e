//! The resource metrics the autoscaler reads: `metrics.k8s.io/v1beta1` PodMetrics of the
//! target's pods, through the API server (which serves what the nodes report), as
//! upstream's REST metrics client reads them from metrics-server.

use kubus_apimachinery::metrics_api::PodMetrics;
use kubus_apimachinery::quantity::parse_quantity;
use kubus_apimachinery::time::system_time;
use kubus_apimachinery::ObjectExt;
use kubus_controller_runtime::{Client, ListParams};
use std::collections::HashMap;
use std::time::{Duration, SystemTime};

/// One pod's usage: per container, per resource, in milli-units.
#[derive(Debug, Clone)]
pub struct PodUsage {
    pub timestamp: SystemTime,
    pub window: Duration,
    pub containers: HashMap<String, HashMap<String, i64>>,
}

/// Usage of the pods of `namespace` matching `selector` (a label selector string), by pod name.
pub async fn pod_usage(client: &Client, namespace: &str, selector: &str) -> Result<HashMap<String, PodUsage>, String> {
    let items: Vec<PodMetrics> =
        client.list(Some(namespace), &ListParams::labels(selector)).await.map_err(|e| e.to_string())?;
    Ok(items
        .into_iter()
        .map(|m| {
            let containers = m
                .containers
                .iter()
                .map(|c| {
                    let usage = c
                        .usage
                        .iter()
                        .filter_map(|(r, q)| Some((r.clone(), parse_quantity(&q.0).ok()?.milli_value() as i64)))
                        .collect();
                    (c.name.clone(), usage)
                })
                .collect();
            let usage = PodUsage {
                timestamp: system_time(&m.timestamp),
                window: m.window_duration().unwrap_or(Duration::from_secs(15)),
                containers,
            };
            (m.name().to_string(), usage)
        })
        .collect())
}
