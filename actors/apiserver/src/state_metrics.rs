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

    fn objects(&self, group: &str, resource: &str) -> Vec<std::sync::Arc<Value>> {
        let gr: Gr = (group.to_string(), resource.to_string());
        self.cache.list(&gr, None).0
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
        for pod in self.objects("", "pods") {
            let (ns, name, uid) = (
                str_of(&pod, &["metadata", "namespace"]),
                str_of(&pod, &["metadata", "name"]),
                str_of(&pod, &["metadata", "uid"]),
            );
            let node = str_of(&pod, &["spec", "nodeName"]);
            let phase = match str_of(&pod, &["status", "phase"]) {
                "" => "Pending",
                p => p,
            };
            families[0].add(&[ns, name, uid, phase], 1.0);
            let owner = pod["metadata"]["ownerReferences"]
                .as_array()
                .and_then(|o| o.iter().find(|r| r["controller"] == true))
                .map(|r| (str_of(r, &["kind"]), str_of(r, &["name"])))
                .unwrap_or(("", ""));
            families[1].add(&[ns, name, uid, node, owner.0, owner.1], 1.0);
            for c in pod["spec"]["containers"].as_array().into_iter().flatten() {
                let cname = str_of(c, &["name"]);
                let base = [ns, name, uid, cname, node];
                resources(&mut families[2], &base, c["resources"]["requests"].as_object());
                resources(&mut families[3], &base, c["resources"]["limits"].as_object());
            }
            for s in pod["status"]["containerStatuses"].as_array().into_iter().flatten() {
                let restarts = s["restartCount"].as_f64().unwrap_or(0.0);
                families[4].add(&[ns, name, uid, str_of(s, &["name"])], restarts);
            }
        }
        for node in self.objects("", "nodes") {
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
