//! `metrics.k8s.io/v1beta1` (NodeMetrics, PodMetrics): the resource metrics API that
//! metrics-server serves upstream, here served by every API server from the usage reports the
//! node agents publish on the bus ([`kubus_bus::usage`]). Nothing is stored: each API server
//! keeps the latest report of each node in memory ([`UsageStore`], fed by the supervised
//! [`UsageReceiver`]) and joins it with the watch cache at request time, so a pod that is gone
//! (or was recreated under its name) has no metrics, and a node whose reports stopped has none
//! after [`STALE_AFTER`]. Read-only: get and list, with label and field selectors.

use crate::cache::{CachedObject, WatchCache};
use crate::metrics::ACTOR_RESTARTS;
use crate::render::IncludeObject;
use crate::request::{ApiRequest, ApiResponse, Query, Rendering, ResourcePath, TABLE_CONTENT_TYPE};
use actix::prelude::*;
use futures::StreamExt;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
use kubus_apimachinery::metrics_api::{self, go_duration, usage, ContainerMetrics, NodeMetrics, PodMetrics};
use kubus_apimachinery::StatusError;
use kubus_bus::usage::UsageReport;
use prometheus::{register_int_counter_vec, register_int_gauge, IntCounterVec, IntGauge};
use serde_json::{json, Value};
use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, LazyLock, RwLock};
use std::time::{Duration, Instant, UNIX_EPOCH};

/// A node's report older than this is dropped: three missed reports (of a node that reports
/// at the default period; one that reports less often is given three of its own periods).
pub const STALE_AFTER: Duration = Duration::from_secs(3 * kubus_bus::usage::REPORT_PERIOD.as_secs() + 5);

/// How long a report with this window stays fresh.
fn stale_after(window_ms: u64) -> Duration {
    STALE_AFTER.max(Duration::from_millis(window_ms.saturating_mul(3)) + Duration::from_secs(5))
}

static REPORTS: LazyLock<IntCounterVec> = LazyLock::new(|| {
    register_int_counter_vec!(
        "kubus_apiserver_usage_reports_total",
        "Node usage reports received from the bus, by result (accepted, or rejected as malformed)",
        &["result"]
    )
    .expect("registers once")
});

static NODES_REPORTING: LazyLock<IntGauge> = LazyLock::new(|| {
    register_int_gauge!("kubus_apiserver_usage_nodes", "Nodes whose latest usage report is fresh")
        .expect("registers once")
});

/// The latest usage report of every node.
#[derive(Default)]
pub struct UsageStore {
    nodes: RwLock<HashMap<String, (Instant, Arc<UsageReport>)>>,
}

impl UsageStore {
    pub fn record(&self, node: &str, report: UsageReport) {
        let mut nodes = self.nodes.write().unwrap_or_else(|p| p.into_inner());
        nodes.insert(node.to_string(), (Instant::now(), Arc::new(report)));
        NODES_REPORTING.set(nodes.len() as i64);
    }

    /// Fresh reports by node name; stale ones are dropped on the way.
    pub fn fresh(&self) -> BTreeMap<String, Arc<UsageReport>> {
        let now = Instant::now();
        let stale = |at: &Instant, r: &UsageReport| now.duration_since(*at) > stale_after(r.window_ms);
        if self.nodes.read().unwrap_or_else(|p| p.into_inner()).values().any(|(at, r)| stale(at, r)) {
            let mut nodes = self.nodes.write().unwrap_or_else(|p| p.into_inner());
            nodes.retain(|_, (at, r)| !stale(at, r));
            NODES_REPORTING.set(nodes.len() as i64);
        }
        let nodes = self.nodes.read().unwrap_or_else(|p| p.into_inner());
        nodes.iter().map(|(n, (_, r))| (n.clone(), r.clone())).collect()
    }
}

/// Subscribes to every node's usage subject and keeps the latest report of each. Supervised:
/// a subscription that ends is made again.
pub struct UsageReceiver {
    pub client: async_nats::Client,
    pub cluster: String,
    pub store: Arc<UsageStore>,
}

impl Actor for UsageReceiver {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        for result in ["accepted", "rejected"] {
            REPORTS.with_label_values(&[result]);
        }
        let (client, cluster, store) = (self.client.clone(), self.cluster.clone(), self.store.clone());
        let receive = async move {
            let mut sub = client.subscribe(kubus_bus::usage::all_nodes_subject(&cluster)).await?;
            while let Some(msg) = sub.next().await {
                let _span = tracing::debug_span!("usage_report_received", subject = %msg.subject).entered();
                // The node is the one the subject names: a node may publish only its own.
                let node = kubus_bus::usage::node_of_subject(&cluster, &msg.subject);
                match (node, UsageReport::decode(&msg.payload)) {
                    (Some(node), Ok(report)) => {
                        store.record(&node, report);
                        REPORTS.with_label_values(&["accepted"]).inc();
                    }
                    (node, report) => {
                        REPORTS.with_label_values(&["rejected"]).inc();
                        tracing::warn!(subject = %msg.subject, node = ?node, error = ?report.err(), "usage report rejected");
                    }
                }
            }
            Ok::<(), async_nats::SubscribeError>(())
        };
        ctx.spawn(receive.into_actor(self).map(|res, _, ctx| {
            if let Err(e) = res {
                tracing::warn!(error = %e, "usage subscription failed; restarting");
            }
            ACTOR_RESTARTS.with_label_values(&["usage-receiver"]).inc();
            ctx.stop();
        }));
    }
}

impl Supervised for UsageReceiver {}

impl Handler<crate::Shutdown> for UsageReceiver {
    type Result = ();
    fn handle(&mut self, _: crate::Shutdown, ctx: &mut Self::Context) {
        ctx.stop();
    }
}

/// Serves a request on `/apis/metrics.k8s.io/v1beta1/...`.
pub fn serve(
    store: &UsageStore,
    cache: &WatchCache,
    req: &ApiRequest,
    q: &Query,
    p: &ResourcePath,
) -> Result<ApiResponse, StatusError> {
    if p.version != metrics_api::VERSION || p.subresource.is_some() {
        return Err(StatusError::route_not_found());
    }
    let pods = match (p.resource.as_str(), &p.namespace) {
        ("pods", _) => true,
        ("nodes", None) => false,
        _ => return Err(StatusError::route_not_found()),
    };
    if req.method != "GET" {
        return Err(StatusError::method_not_allowed());
    }
    if p.name.is_none() && q.flag("watch") {
        return Err(StatusError::method_not_supported(metrics_api::GROUP, &p.resource, "watch"));
    }
    let rendering = crate::request::negotiate(req.accept.as_deref(), p.name.is_none())?;
    let include = IncludeObject::parse(q.get("includeObject"));
    let reports = store.fresh();
    let ns = p.namespace.as_deref();
    if let Some(name) = &p.name {
        let found = if pods {
            pod_metrics(&reports, cache, ns.unwrap_or("default"), Some(name)).into_iter().next()
        } else {
            node_metrics(&reports, cache, Some(name)).into_iter().next()
        };
        return match found {
            Some(v) => Ok(respond(rendering, include, pods, &v, vec![v.clone()])),
            // As metrics-server: the namespaced name of a pod without metrics.
            None if pods => Err(StatusError::not_found(
                metrics_api::GROUP,
                "podmetrics",
                &format!("{}/{name}", ns.unwrap_or("default")),
            )),
            None => Err(StatusError::not_found(metrics_api::GROUP, "nodemetrics", name)),
        };
    }
    let (labels, fields) = q.selectors()?;
    let items: Vec<Value> =
        if pods { pod_metrics(&reports, cache, ns.unwrap_or(""), None) } else { node_metrics(&reports, cache, None) }
            .into_iter()
            .filter(|o| labels.matches_object(o) && fields.matches(o))
            .collect();
    let kind = if pods { "PodMetricsList" } else { "NodeMetricsList" };
    let list = json!({"kind": kind, "apiVersion": metrics_api::API_VERSION, "metadata": {}, "items": items});
    Ok(respond(rendering, include, pods, &list, items))
}

/// The object or list as JSON, or as the Table `kubectl get podmetrics|nodemetrics` asks for.
fn respond(rendering: Rendering, include: IncludeObject, pods: bool, json: &Value, items: Vec<Value>) -> ApiResponse {
    if rendering != Rendering::Table {
        return ApiResponse::json(200, json);
    }
    ApiResponse::json(200, &table(pods, items, include)).with_content_type(TABLE_CONTENT_TYPE)
}

/// metrics-server's printer: Name, one column per resource (a pod's containers summed), and
/// the Window, as quantities and a Go duration. No column definitions without rows, as there.
fn table(pods: bool, items: Vec<Value>, include: IncludeObject) -> Value {
    let columns = json!([
        {"name": "Name", "type": "string", "format": "name", "description": "Name of the resource", "priority": 0},
        {"name": "cpu", "type": "string", "format": "quantity", "description": "", "priority": 0},
        {"name": "memory", "type": "string", "format": "quantity", "description": "", "priority": 0},
        {"name": "Window", "type": "string", "format": "duration", "description": "", "priority": 0},
    ]);
    let rows: Vec<Value> = items
        .into_iter()
        .map(|m| {
            let (cpu, memory) = if pods {
                m["containers"].as_array().into_iter().flatten().fold((0u64, 0u64), |(c, b), cm| {
                    let (c2, b2) = metrics_api::usage_amounts(&cm["usage"]);
                    (c.saturating_add(c2), b.saturating_add(b2))
                })
            } else {
                metrics_api::usage_amounts(&m["usage"])
            };
            let mut row = json!({"cells": [m["metadata"]["name"], metrics_api::cpu_quantity(cpu),
                metrics_api::memory_quantity(memory), m["window"]]});
            match include {
                IncludeObject::None => {}
                IncludeObject::Metadata => {
                    row["object"] = json!({"kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1",
                        "metadata": m["metadata"]})
                }
                IncludeObject::Object => row["object"] = m,
            }
            row
        })
        .collect();
    let columns = if rows.is_empty() { Value::Null } else { columns };
    json!({"kind": "Table", "apiVersion": "meta.k8s.io/v1", "metadata": {}, "columnDefinitions": columns, "rows": rows})
}

fn time_of(ms: u64) -> Time {
    kubus_apimachinery::time::time(UNIX_EPOCH + Duration::from_millis(ms))
}

fn now() -> Time {
    kubus_apimachinery::time::time(std::time::SystemTime::now())
}

/// A cached object's uid, decoding nothing else.
fn uid_of(obj: &CachedObject) -> Option<String> {
    #[derive(serde::Deserialize)]
    struct Meta {
        uid: Option<String>,
    }
    #[derive(serde::Deserialize)]
    struct Uid {
        metadata: Meta,
    }
    obj.decode::<Uid>().ok()?.metadata.uid
}

fn labels_of(obj: &CachedObject) -> Option<BTreeMap<String, String>> {
    let labels: BTreeMap<String, String> = obj.labels().map(|(k, v)| (k.to_string(), v.to_string())).collect();
    (!labels.is_empty()).then_some(labels)
}

/// PodMetrics of the reported pods that still exist (same uid) in `namespace` ("" = all),
/// optionally only `name`, in (namespace, name) order.
fn pod_metrics(
    reports: &BTreeMap<String, Arc<UsageReport>>,
    cache: &WatchCache,
    namespace: &str,
    name: Option<&str>,
) -> Vec<Value> {
    let gr = (String::new(), "pods".to_string());
    let mut out = Vec::new();
    for report in reports.values() {
        for pu in &report.pods {
            if (!namespace.is_empty() && pu.namespace != namespace) || name.is_some_and(|n| n != pu.name) {
                continue;
            }
            let Some(pod) = cache.get(&gr, &(pu.namespace.clone(), pu.name.clone())) else { continue };
            if uid_of(&pod).as_deref() != Some(pu.uid.as_str()) {
                continue;
            }
            let m = PodMetrics {
                api_version: metrics_api::API_VERSION.into(),
                metadata: ObjectMeta {
                    name: Some(pu.name.clone()),
                    namespace: Some(pu.namespace.clone()),
                    labels: labels_of(&pod),
                    creation_timestamp: Some(now()),
                    ..Default::default()
                },
                timestamp: time_of(report.timestamp_ms),
                window: go_duration(Duration::from_millis(report.window_ms)),
                containers: pu
                    .containers
                    .iter()
                    .map(|c| ContainerMetrics {
                        name: c.name.clone(),
                        usage: usage(c.usage.cpu_nanocores, c.usage.memory_working_set_bytes),
                    })
                    .collect(),
            };
            out.push(((pu.namespace.clone(), pu.name.clone()), serde_json::to_value(m).unwrap_or_default()));
        }
    }
    out.sort_by(|a, b| a.0.cmp(&b.0));
    out.into_iter().map(|(_, v)| v).collect()
}

/// NodeMetrics of the reporting nodes that exist, optionally only `name`.
fn node_metrics(reports: &BTreeMap<String, Arc<UsageReport>>, cache: &WatchCache, name: Option<&str>) -> Vec<Value> {
    let gr = (String::new(), "nodes".to_string());
    reports
        .iter()
        .filter(|(node, _)| name.is_none_or(|n| n == node.as_str()))
        .filter_map(|(node, report)| {
            let obj = cache.get(&gr, &(String::new(), node.clone()))?;
            let m = NodeMetrics {
                api_version: metrics_api::API_VERSION.into(),
                metadata: ObjectMeta {
                    name: Some(node.clone()),
                    labels: labels_of(&obj),
                    creation_timestamp: Some(now()),
                    ..Default::default()
                },
                timestamp: time_of(report.timestamp_ms),
                window: go_duration(Duration::from_millis(report.window_ms)),
                usage: usage(report.node.cpu_nanocores, report.node.memory_working_set_bytes),
            };
            serde_json::to_value(m).ok()
        })
        .collect()
}

/// Discovery of the group: `(resource, singular, kind, namespaced)`.
pub const RESOURCES: &[(&str, &str, &str, bool)] =
    &[("nodes", "", "NodeMetrics", false), ("pods", "", "PodMetrics", true)];

/// The verbs the metrics API serves.
pub const VERBS: &[&str] = &["get", "list"];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tables_sum_a_pods_containers_and_print_metrics_servers_columns() {
        let pod = json!({"metadata": {"name": "p", "namespace": "ns"}, "window": "10.002s", "containers": [
            {"name": "a", "usage": usage(1_500_000, 1 << 20)},
            {"name": "b", "usage": usage(500_000, 1 << 20)}]});
        let t = table(true, vec![pod], IncludeObject::Metadata);
        let names: Vec<&str> =
            t["columnDefinitions"].as_array().unwrap().iter().filter_map(|c| c["name"].as_str()).collect();
        assert_eq!(names, ["Name", "cpu", "memory", "Window"]);
        assert_eq!(t["rows"][0]["cells"], json!(["p", "2m", "2Mi", "10.002s"]));
        assert_eq!(t["rows"][0]["object"]["kind"], "PartialObjectMetadata");
        let node = json!({"metadata": {"name": "n"}, "window": "10s", "usage": usage(250_000_000, 3 << 30)});
        let t = table(false, vec![node], IncludeObject::None);
        assert_eq!(t["rows"][0]["cells"], json!(["n", "250m", "3Gi", "10s"]));
        assert!(t["rows"][0]["object"].is_null());
        // As metrics-server: an empty table has no column definitions.
        assert!(table(true, vec![], IncludeObject::Metadata)["columnDefinitions"].is_null());
    }

    #[test]
    fn a_report_stays_fresh_for_three_of_its_windows() {
        assert_eq!(stale_after(10_000), STALE_AFTER, "the default period");
        assert_eq!(stale_after(0), STALE_AFTER, "the first report has no window");
        assert_eq!(stale_after(60_000), Duration::from_secs(185), "a node collecting every minute");
    }
}
