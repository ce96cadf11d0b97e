//! Object state as kube-state-metrics names it (`kube_pod_status_phase`,
//! `kube_node_status_condition`, `kube_pod_container_resource_requests`, ...), read from the
//! watch cache when Prometheus scrapes: the dashboards and alert rules people already have for
//! a cluster's pods and nodes work without running kube-state-metrics beside Kubus.
//!
//! Series are built per scrape and never kept, so a deleted pod's series go with it. A pod
//! has only its current phase (kube-state-metrics also writes the other four as zeros; every
//! query of it sums, so they would only multiply the series).

use crate::cache::{Gr, WatchCache};
use kubus_apimachinery::quantity::parse_quantity_value;
use prometheus::core::{Collector, Desc};
use prometheus::proto::{Gauge, LabelPair, Metric, MetricFamily, MetricType};
use serde::Deserialize;
use serde_json::Value;

pub struct StateMetrics {
    cache: WatchCache,
    descs: Vec<Desc>,
}

/// (name, help, labels) of each family.
const FAMILIES: &[(&str, &str, &[&str])] = &[
    ("kube_pod_status_phase", "The pods current phase.", &["namespace", "pod", "uid", "phase"]),
    ("kube_pod_info", "Information about pod.", &["namespace", "pod", "uid", "node", "created_by_kind", "created_by_name"]),
    (
        "kube_pod_container_resource_requests",
        "The number of requested request resource by a container. It is recommended to use the kube_pod_resource_requests metric exposed by kube-scheduler instead, as it is more precise.",
        &["namespace", "pod", "uid", "container", "node", "resource", "unit"],
    ),
    (
        "kube_pod_container_resource_limits",
        "The number of requested limit resource by a container. It is recommended to use the kube_pod_resource_limits metric exposed by kube-scheduler instead, as it is more precise.",
        &["namespace", "pod", "uid", "container", "node", "resource", "unit"],
    ),
    (
        "kube_pod_container_status_restarts_total",
        "The number of container restarts per container.",
        &["namespace", "pod", "uid", "container"],
    ),
    ("kube_node_info", "Information about a cluster node.", &["node", "kernel_version", "os_image", "kubelet_version"]),
    (
        "kube_node_status_condition",
        "The condition of a cluster node.",
        &["node", "condition", "status"],
    ),
    (
        "kube_node_status_allocatable",
        "The allocatable for different resources of a node that are available for scheduling.",
        &["node", "resource", "unit"],
    ),
    (
        "kube_node_status_capacity",
        "The capacity for different resources of a node.",
        &["node", "resource", "unit"],
    ),
    ("kube_node_spec_unschedulable", "Whether a node can schedule new pods.", &["node"]),
    (
        "kube_deployment_status_replicas_available",
        "The number of available replicas per deployment.",
        &["namespace", "deployment"],
    ),
    ("kube_deployment_spec_replicas", "Number of desired pods for a deployment.", &["namespace", "deployment"]),
];

impl StateMetrics {
    pub fn new(cache: WatchCache) -> StateMetrics {
        let descs = FAMILIES
            .iter()
            .map(|(name, help, labels)| {
                Desc::new(
                    name.to_string(),
                    help.to_string(),
                    labels.iter().map(|l| l.to_string()).collect(),
                    Default::default(),
                )
                .expect("valid metric description")
            })
            .collect();
        StateMetrics { cache, descs }
    }

    /// Registers the collector in the process registry (once per process: a second API
    /// server in one process, as in tests, keeps the first's).
    pub fn register(cache: WatchCache) {
        let _ = prometheus::register(Box::new(StateMetrics::new(cache)));
    }

    /// The objects of a resource, each decoded as it is reached (never all at once).
    fn objects(&self, group: &str, resource: &str) -> impl Iterator<Item = Value> {
        let gr: Gr = (group.to_string(), resource.to_string());
        self.cache.list(&gr, None).0.into_iter().map(|o| o.value())
    }

    /// The nodes, each decoded as it is reached into the parts the series read (not, say,
    /// their image lists), as JSON.
    fn nodes(&self) -> impl Iterator<Item = Value> {
        #[derive(Deserialize, Default)]
        #[serde(default, rename_all = "camelCase")]
        struct Status {
            node_info: Value,
            conditions: Value,
            allocatable: Value,
            capacity: Value,
        }
        #[derive(Deserialize, Default)]
        #[serde(default)]
        struct NodeView {
            metadata: Value,
            spec: Value,
            #[serde(deserialize_with = "null_as_default")]
            status: Status,
        }
        let gr: Gr = (String::new(), "nodes".to_string());
        self.cache.list(&gr, None).0.into_iter().filter_map(|o| o.decode::<NodeView>().ok()).map(|n| {
            let s = n.status;
            serde_json::json!({"metadata": n.metadata, "spec": n.spec, "status": {"nodeInfo": s.node_info,
                "conditions": s.conditions, "allocatable": s.allocatable, "capacity": s.capacity}})
        })
    }

    /// The pods, each decoded as it is reached into only what the series read: a scrape
    /// reads every pod of the cluster, so it skips over the rest instead of building it.
    fn pods(&self) -> impl Iterator<Item = PodView> {
        let gr: Gr = (String::new(), "pods".to_string());
        self.cache.list(&gr, None).0.into_iter().filter_map(|o| o.decode().ok())
    }
}

/// One family being built.
struct Family {
    name: &'static str,
    help: &'static str,
    labels: &'static [&'static str],
    metrics: Vec<Metric>,
}

impl Family {
    fn of(index: usize) -> Family {
        let (name, help, labels) = FAMILIES[index];
        Family { name, help, labels, metrics: Vec::new() }
    }

    fn add(&mut self, values: &[&str], value: f64) {
        debug_assert_eq!(values.len(), self.labels.len());
        let mut m = Metric::default();
        let mut pairs: Vec<LabelPair> = self
            .labels
            .iter()
            .zip(values)
            .map(|(n, v)| {
                let mut p = LabelPair::default();
                p.set_name(n.to_string());
                p.set_value(v.to_string());
                p
            })
            .collect();
        pairs.sort_by(|a, b| a.name().cmp(b.name()));
        m.set_label(pairs);
        let mut g = Gauge::default();
        g.set_value(value);
        m.set_gauge(g);
        self.metrics.push(m);
    }

    fn done(self) -> MetricFamily {
        let mut f = MetricFamily::default();
        f.set_name(self.name.to_string());
        f.set_help(self.help.to_string());
        f.set_field_type(MetricType::GAUGE);
        f.set_metric(self.metrics);
        f
    }
}

fn str_of<'a>(v: &'a Value, path: &[&str]) -> &'a str {
    path.iter().try_fold(v, |v, k| v.get(*k)).and_then(Value::as_str).unwrap_or("")
}

/// kube-state-metrics' unit and value of a resource quantity: cores, bytes, or a count.
fn resource_value(resource: &str, q: &Value) -> Option<(&'static str, f64)> {
    let q = parse_quantity_value(q).ok()?;
    let unit = match resource {
        "cpu" => "core",
        "memory" | "ephemeral-storage" | "storage" => "byte",
        r if r.starts_with("hugepages-") => "byte",
        _ => "integer",
    };
    Some((unit, q.as_f64()))
}

fn resources(family: &mut Family, base: &[&str], list: Option<&serde_json::Map<String, Value>>) {
    for (resource, q) in list.into_iter().flatten() {
        if let Some((unit, value)) = resource_value(resource, q) {
            let mut labels = base.to_vec();
            labels.extend([resource.as_str(), unit]);
            family.add(&labels, value);
        }
    }
}

impl Collector for StateMetrics {
    fn desc(&self) -> Vec<&Desc> {
        self.descs.iter().collect()
    }

    fn collect(&self) -> Vec<MetricFamily> {
        let mut families: Vec<Family> = (0..FAMILIES.len()).map(Family::of).collect();
        for pod in self.pods() {
            let text = |s: &Option<String>| s.as_deref().unwrap_or_default().to_string();
            let (ns, name, uid) = (text(&pod.metadata.namespace), text(&pod.metadata.name), text(&pod.metadata.uid));
            let (ns, name, uid) = (ns.as_str(), name.as_str(), uid.as_str());
            let node = pod.spec.node_name.as_deref().unwrap_or_default();
            let phase = match pod.status.phase.as_deref().unwrap_or_default() {
                "" => "Pending",
                p => p,
            };
            families[0].add(&[ns, name, uid, phase], 1.0);
            let owner = pod
                .metadata
                .owner_references
                .iter()
                .find(|r| r.controller == Some(true))
                .map(|r| (r.kind.as_deref().unwrap_or_default(), r.name.as_deref().unwrap_or_default()))
                .unwrap_or(("", ""));
            families[1].add(&[ns, name, uid, node, owner.0, owner.1], 1.0);
            for c in &pod.spec.containers {
                let cname = c.name.as_deref().unwrap_or_default();
                let base = [ns, name, uid, cname, node];
                resources(&mut families[2], &base, c.resources.requests.as_ref());
                resources(&mut families[3], &base, c.resources.limits.as_ref());
            }
            for s in &pod.status.container_statuses {
                families[4]
                    .add(&[ns, name, uid, s.name.as_deref().unwrap_or_default()], s.restart_count.unwrap_or(0.0));
            }
        }
        for node in self.nodes() {
            let name = str_of(&node, &["metadata", "name"]);
            let info = &node["status"]["nodeInfo"];
            families[5].add(
                &[
                    name,
                    str_of(info, &["kernelVersion"]),
                    str_of(info, &["osImage"]),
                    str_of(info, &["kubeletVersion"]),
                ],
                1.0,
            );
            for c in node["status"]["conditions"].as_array().into_iter().flatten() {
                let (condition, status) = (str_of(c, &["type"]), str_of(c, &["status"]));
                // kube-state-metrics writes all three statuses, the current one as 1.
                for s in ["true", "false", "unknown"] {
                    let value = if status.eq_ignore_ascii_case(s) { 1.0 } else { 0.0 };
                    families[6].add(&[name, condition, s], value);
                }
            }
            resources(&mut families[7], &[name], node["status"]["allocatable"].as_object());
            resources(&mut families[8], &[name], node["status"]["capacity"].as_object());
            let unschedulable = node["spec"]["unschedulable"].as_bool().unwrap_or(false);
            families[9].add(&[name], if unschedulable { 1.0 } else { 0.0 });
        }
        for d in self.objects("apps", "deployments") {
            let (ns, name) = (str_of(&d, &["metadata", "namespace"]), str_of(&d, &["metadata", "name"]));
            families[10].add(&[ns, name], d["status"]["availableReplicas"].as_f64().unwrap_or(0.0));
            families[11].add(&[ns, name], d["spec"]["replicas"].as_f64().unwrap_or(1.0));
        }
        families.into_iter().map(Family::done).collect()
    }
}

/// What the pod series read of a pod; everything else is skipped when decoding. Absent and
/// null fields read as empty, as they did from the JSON tree.
#[derive(Deserialize, Default)]
#[serde(default)]
struct PodView {
    #[serde(deserialize_with = "null_as_default")]
    metadata: MetaView,
    #[serde(deserialize_with = "null_as_default")]
    spec: PodSpecView,
    #[serde(deserialize_with = "null_as_default")]
    status: PodStatusView,
}

#[derive(Deserialize, Default)]
#[serde(default, rename_all = "camelCase")]
struct MetaView {
    namespace: Option<String>,
    name: Option<String>,
    uid: Option<String>,
    #[serde(deserialize_with = "null_as_default")]
    owner_references: Vec<OwnerView>,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct OwnerView {
    kind: Option<String>,
    name: Option<String>,
    controller: Option<bool>,
}

#[derive(Deserialize, Default)]
#[serde(default, rename_all = "camelCase")]
struct PodSpecView {
    node_name: Option<String>,
    #[serde(deserialize_with = "null_as_default")]
    containers: Vec<ContainerView>,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct ContainerView {
    name: Option<String>,
    #[serde(deserialize_with = "null_as_default")]
    resources: ResourcesView,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct ResourcesView {
    requests: Option<serde_json::Map<String, Value>>,
    limits: Option<serde_json::Map<String, Value>>,
}

#[derive(Deserialize, Default)]
#[serde(default, rename_all = "camelCase")]
struct PodStatusView {
    phase: Option<String>,
    #[serde(deserialize_with = "null_as_default")]
    container_statuses: Vec<StatusView>,
}

#[derive(Deserialize, Default)]
#[serde(default, rename_all = "camelCase")]
struct StatusView {
    name: Option<String>,
    restart_count: Option<f64>,
}

fn null_as_default<'de, D: serde::Deserializer<'de>, T: Deserialize<'de> + Default>(d: D) -> Result<T, D::Error> {
    Ok(Option::<T>::deserialize(d)?.unwrap_or_default())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cache_with(objects: &[(&str, &str, Value)]) -> WatchCache {
        let cache = WatchCache::new(100);
        let objects = objects
            .iter()
            .enumerate()
            .map(|(i, (resource, name, v))| kubus_bus::Object {
                key: kubus_bus::Key::new("", resource, v["metadata"]["namespace"].as_str(), name),
                revision: i as u64 + 1,
                value: bytes::Bytes::from(v.to_string()),
            })
            .collect();
        cache.replace(objects, Vec::new(), 10);
        cache
    }

    /// "name{label=value,...} value" of every series, sorted.
    fn series(families: Vec<MetricFamily>) -> Vec<String> {
        let mut out: Vec<String> = families
            .iter()
            .flat_map(|f| {
                f.get_metric().iter().map(move |m| {
                    let labels: Vec<String> =
                        m.get_label().iter().map(|l| format!("{}={}", l.name(), l.value())).collect();
                    format!("{}{{{}}} {}", f.name(), labels.join(","), m.get_gauge().get_value())
                })
            })
            .collect();
        out.sort();
        out
    }

    #[test]
    fn pod_series_read_the_pod_as_kube_state_metrics_does() {
        let pod = serde_json::json!({"kind": "Pod", "apiVersion": "v1",
            "metadata": {"namespace": "prod", "name": "web-1", "uid": "u1",
                "ownerReferences": [{"kind": "Node", "name": "x"}, {"kind": "ReplicaSet", "name": "web", "controller": true}]},
            "spec": {"nodeName": "n1", "containers": [
                {"name": "app", "resources": {"requests": {"cpu": "250m", "memory": "64Mi"}, "limits": {"cpu": "1"}}},
                {"name": "side", "resources": null}]},
            "status": {"phase": "Running", "containerStatuses": [{"name": "app", "restartCount": 3}]}});
        let pending = serde_json::json!({"kind": "Pod", "metadata": {"namespace": "prod", "name": "new", "uid": "u2"},
            "spec": {"containers": null}, "status": null});
        let metrics = StateMetrics::new(cache_with(&[("pods", "web-1", pod), ("pods", "new", pending)]));
        let got = series(metrics.collect());
        let expect = [
            "kube_pod_container_resource_limits{container=app,namespace=prod,node=n1,pod=web-1,resource=cpu,uid=u1,unit=core} 1",
            "kube_pod_container_resource_requests{container=app,namespace=prod,node=n1,pod=web-1,resource=cpu,uid=u1,unit=core} 0.25",
            "kube_pod_container_resource_requests{container=app,namespace=prod,node=n1,pod=web-1,resource=memory,uid=u1,unit=byte} 67108864",
            "kube_pod_container_status_restarts_total{container=app,namespace=prod,pod=web-1,uid=u1} 3",
            "kube_pod_info{created_by_kind=,created_by_name=,namespace=prod,node=,pod=new,uid=u2} 1",
            "kube_pod_info{created_by_kind=ReplicaSet,created_by_name=web,namespace=prod,node=n1,pod=web-1,uid=u1} 1",
            "kube_pod_status_phase{namespace=prod,phase=Pending,pod=new,uid=u2} 1",
            "kube_pod_status_phase{namespace=prod,phase=Running,pod=web-1,uid=u1} 1",
        ];
        assert_eq!(got, expect);
    }

    #[test]
    fn node_series_skip_what_they_do_not_read() {
        let node = serde_json::json!({"kind": "Node", "apiVersion": "v1", "metadata": {"name": "n1"},
            "spec": {"unschedulable": true},
            "status": {"nodeInfo": {"kernelVersion": "6.1", "osImage": "Debian", "kubeletVersion": "v1.32.0-kubus"},
                "conditions": [{"type": "Ready", "status": "True"}],
                "allocatable": {"cpu": "2", "pods": "110"}, "capacity": {"memory": "1Gi"},
                "images": [{"names": ["busybox"], "sizeBytes": 1000}]}});
        let metrics = StateMetrics::new(cache_with(&[("nodes", "n1", node)]));
        let got: Vec<String> = series(metrics.collect()).into_iter().filter(|s| s.starts_with("kube_node")).collect();
        let expect = [
            "kube_node_info{kernel_version=6.1,kubelet_version=v1.32.0-kubus,node=n1,os_image=Debian} 1",
            "kube_node_spec_unschedulable{node=n1} 1",
            "kube_node_status_allocatable{node=n1,resource=cpu,unit=core} 2",
            "kube_node_status_allocatable{node=n1,resource=pods,unit=integer} 110",
            "kube_node_status_capacity{node=n1,resource=memory,unit=byte} 1073741824",
            "kube_node_status_condition{condition=Ready,node=n1,status=false} 0",
            "kube_node_status_condition{condition=Ready,node=n1,status=true} 1",
            "kube_node_status_condition{condition=Ready,node=n1,status=unknown} 0",
        ];
        assert_eq!(got, expect);
    }
}
