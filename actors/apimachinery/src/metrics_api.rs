//! `metrics.k8s.io/v1beta1`: NodeMetrics and PodMetrics, the resource metrics API that
//! metrics-server serves upstream and `kubectl top` and the HorizontalPodAutoscaler read.
//!
//! These kinds are read-only views of what the nodes last reported, never stored: they are
//! deliberately not in the stored-kinds registry ([`crate::resource`]), which storage, the
//! garbage collector and the namespace controller iterate over. The types implement
//! k8s-openapi's traits so typed clients can GET and LIST them.

use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ListMeta, ObjectMeta, Time};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::time::Duration;

pub const GROUP: &str = "metrics.k8s.io";
pub const VERSION: &str = "v1beta1";
pub const API_VERSION: &str = "metrics.k8s.io/v1beta1";

/// A container's (or node's) usage: `cpu` and `memory`, as upstream's ResourceList.
pub type Usage = BTreeMap<String, Quantity>;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename = "NodeMetrics", rename_all = "camelCase")]
pub struct NodeMetrics {
    #[serde(default)]
    pub api_version: String,
    pub metadata: ObjectMeta,
    /// When the window ended.
    pub timestamp: Time,
    /// The window the CPU rate was computed over, as a Go duration ("10.003s").
    pub window: String,
    pub usage: Usage,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename = "PodMetrics", rename_all = "camelCase")]
pub struct PodMetrics {
    #[serde(default)]
    pub api_version: String,
    pub metadata: ObjectMeta,
    pub timestamp: Time,
    pub window: String,
    #[serde(default)]
    pub containers: Vec<ContainerMetrics>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ContainerMetrics {
    pub name: String,
    pub usage: Usage,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename = "NodeMetricsList", rename_all = "camelCase")]
pub struct NodeMetricsList {
    #[serde(default)]
    pub api_version: String,
    #[serde(default)]
    pub metadata: ListMeta,
    #[serde(default)]
    pub items: Vec<NodeMetrics>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename = "PodMetricsList", rename_all = "camelCase")]
pub struct PodMetricsList {
    #[serde(default)]
    pub api_version: String,
    #[serde(default)]
    pub metadata: ListMeta,
    #[serde(default)]
    pub items: Vec<PodMetrics>,
}

macro_rules! metrics_resource {
    ($ty:ty, $kind:expr, $list:expr, $plural:expr, $scope:ty) => {
        impl k8s_openapi::Resource for $ty {
            const API_VERSION: &'static str = API_VERSION;
            const GROUP: &'static str = GROUP;
            const KIND: &'static str = $kind;
            const VERSION: &'static str = VERSION;
            const URL_PATH_SEGMENT: &'static str = $plural;
            type Scope = $scope;
        }
        impl k8s_openapi::ListableResource for $ty {
            const LIST_KIND: &'static str = $list;
        }
        impl k8s_openapi::Metadata for $ty {
            type Ty = ObjectMeta;
            fn metadata(&self) -> &ObjectMeta {
                &self.metadata
            }
            fn metadata_mut(&mut self) -> &mut ObjectMeta {
                &mut self.metadata
            }
        }
    };
}

metrics_resource!(NodeMetrics, "NodeMetrics", "NodeMetricsList", "nodes", k8s_openapi::ClusterResourceScope);
metrics_resource!(PodMetrics, "PodMetrics", "PodMetricsList", "pods", k8s_openapi::NamespaceResourceScope);

/// The list type a metrics kind is listed as.
pub trait MetricsKind: crate::Object + k8s_openapi::ListableResource {
    type List: serde::de::DeserializeOwned + Into<Vec<Self>>;
    /// Resource name in messages (`podmetrics`).
    const RESOURCE: &'static str;
    const NAMESPACED: bool;
}

impl From<NodeMetricsList> for Vec<NodeMetrics> {
    fn from(l: NodeMetricsList) -> Self {
        l.items
    }
}
impl From<PodMetricsList> for Vec<PodMetrics> {
    fn from(l: PodMetricsList) -> Self {
        l.items
    }
}
impl MetricsKind for NodeMetrics {
    type List = NodeMetricsList;
    const RESOURCE: &'static str = "nodemetrics";
    const NAMESPACED: bool = false;
}
impl MetricsKind for PodMetrics {
    type List = PodMetricsList;
    const RESOURCE: &'static str = "podmetrics";
    const NAMESPACED: bool = true;
}

/// The path of a metrics collection (`namespace` None: every namespace) or of one object.
pub fn path<K: MetricsKind>(namespace: Option<&str>, name: Option<&str>) -> String {
    let mut p = format!("/apis/{API_VERSION}");
    if let Some(ns) = namespace.filter(|ns| K::NAMESPACED && !ns.is_empty()) {
        p.push_str(&format!("/namespaces/{ns}"));
    }
    p.push('/');
    p.push_str(K::URL_PATH_SEGMENT);
    if let Some(n) = name {
        p.push('/');
        p.push_str(n);
    }
    p
}

/// CPU as metrics-server writes it: nanocores in their canonical quantity form ("12345n",
/// "5m", "1", "0").
pub fn cpu_quantity(nanocores: u64) -> Quantity {
    if nanocores == 0 {
        return Quantity("0".into());
    }
    let mut v = nanocores;
    let mut suffix = 0;
    while suffix < 3 && v.is_multiple_of(1000) {
        v /= 1000;
        suffix += 1;
    }
    Quantity(format!("{v}{}", ["n", "u", "m", ""][suffix]))
}

/// Memory as metrics-server writes it: bytes as a binary-SI quantity ("1234Ki").
pub fn memory_quantity(bytes: u64) -> Quantity {
    Quantity(crate::quantity::Quantity::from_units(bytes as i128, crate::quantity::Format::BinarySI).canonical())
}

/// CPU nanocores and memory bytes of a usage map (JSON) as [`usage`] writes it; what is
/// missing or unreadable counts as zero.
pub fn usage_amounts(usage: &serde_json::Value) -> (u64, u64) {
    let cpu = usage["cpu"].as_str().and_then(parse_nanocores).unwrap_or(0);
    let memory = usage["memory"]
        .as_str()
        .and_then(|m| crate::quantity::parse_quantity(m).ok())
        .map_or(0, |q| u64::try_from(q.value()).unwrap_or(0));
    (cpu, memory)
}

/// Nanocores of a CPU quantity: exact for [`cpu_quantity`]'s forms ("12345n", "5u", "5m",
/// "2"), to the milli for any other decimal form.
fn parse_nanocores(s: &str) -> Option<u64> {
    let (digits, scale) = match s.as_bytes().last()? {
        b'n' => (&s[..s.len() - 1], 1),
        b'u' => (&s[..s.len() - 1], 1_000),
        _ => {
            let q = crate::quantity::parse_quantity(s).ok()?;
            return u64::try_from(q.milli_value()).ok()?.checked_mul(1_000_000);
        }
    };
    digits.parse::<u64>().ok()?.checked_mul(scale)
}

/// The usage of a node or container.
pub fn usage(cpu_nanocores: u64, memory_bytes: u64) -> Usage {
    [("cpu".to_string(), cpu_quantity(cpu_nanocores)), ("memory".to_string(), memory_quantity(memory_bytes))].into()
}

/// A duration as Go's `time.Duration.String()` prints it ("10.003s", "1m0.5s", "150ms"), the
/// form metav1.Duration takes in JSON.
pub fn go_duration(d: Duration) -> String {
    let ms = d.as_millis() as u64;
    if ms == 0 {
        return "0s".into();
    }
    if ms < 1000 {
        return format!("{ms}ms");
    }
    let (h, m, s, frac) = (ms / 3_600_000, ms / 60_000 % 60, ms / 1000 % 60, ms % 1000);
    let secs = if frac == 0 { format!("{s}s") } else { format!("{s}.{}s", format!("{frac:03}").trim_end_matches('0')) };
    match (h, m) {
        (0, 0) => secs,
        (0, m) => format!("{m}m{secs}"),
        (h, m) => format!("{h}h{m}m{secs}"),
    }
}

/// Parses what [`go_duration`] prints (Go's `time.ParseDuration`).
pub fn parse_go_duration(s: &str) -> Option<Duration> {
    crate::time::parse_go_duration(s).ok()
}

impl PodMetrics {
    /// The window as a duration (None if it does not parse).
    pub fn window_duration(&self) -> Option<Duration> {
        parse_go_duration(&self.window)
    }
}

impl NodeMetrics {
    pub fn window_duration(&self) -> Option<Duration> {
        parse_go_duration(&self.window)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantities_as_metrics_server_writes_them() {
        assert_eq!(cpu_quantity(0).0, "0");
        assert_eq!(cpu_quantity(12_345).0, "12345n");
        assert_eq!(cpu_quantity(5_000_000).0, "5m");
        assert_eq!(cpu_quantity(2_000_000_000).0, "2");
        assert_eq!(cpu_quantity(1_500_000_001).0, "1500000001n");
        assert_eq!(memory_quantity(1234 * 1024).0, "1234Ki");
        assert_eq!(memory_quantity(0).0, "0");
        assert_eq!(memory_quantity(3 << 20).0, "3Mi");
    }

    #[test]
    fn usage_amounts_read_back_what_usage_writes() {
        for (cpu, mem) in [(0, 0), (12_345, 1_000), (5_000, 4096), (5_000_000, 3 << 20), (2_000_000_000, 1)] {
            let u = serde_json::to_value(usage(cpu, mem)).unwrap();
            assert_eq!(usage_amounts(&u), (cpu, mem), "{u}");
        }
        assert_eq!(usage_amounts(&serde_json::json!({"cpu": "1500m", "memory": "1Gi"})), (1_500_000_000, 1 << 30));
        assert_eq!(usage_amounts(&serde_json::json!({"cpu": "lots"})), (0, 0));
    }

    #[test]
    fn go_durations() {
        for (ms, s) in [(10_003, "10.003s"), (20_000, "20s"), (150, "150ms"), (60_500, "1m0.5s"), (10_500, "10.5s")] {
            assert_eq!(go_duration(Duration::from_millis(ms)), s);
            assert_eq!(parse_go_duration(s), Some(Duration::from_millis(ms)), "{s}");
        }
        assert_eq!(parse_go_duration("1h2m3s"), Some(Duration::from_secs(3723)));
        assert_eq!(parse_go_duration("x"), None);
    }

    #[test]
    fn serialized_as_upstream() {
        let m = PodMetrics {
            api_version: API_VERSION.into(),
            metadata: ObjectMeta { name: Some("p".into()), namespace: Some("ns".into()), ..Default::default() },
            timestamp: Time(chrono::DateTime::from_timestamp(0, 0).unwrap()),
            window: "10s".into(),
            containers: vec![ContainerMetrics { name: "c".into(), usage: usage(12_345, 1024) }],
        };
        let v = serde_json::to_value(&m).unwrap();
        assert_eq!(v["kind"], "PodMetrics");
        assert_eq!(v["apiVersion"], API_VERSION);
        assert_eq!(v["timestamp"], "1970-01-01T00:00:00Z");
        assert_eq!(v["containers"][0]["usage"], serde_json::json!({"cpu": "12345n", "memory": "1Ki"}));
        let back: PodMetrics = serde_json::from_value(v).unwrap();
        assert_eq!(back, m);
        let list: PodMetricsList = serde_json::from_value(
            serde_json::json!({"kind": "PodMetricsList", "apiVersion": API_VERSION, "metadata": {}, "items": []}),
        )
        .unwrap();
        assert!(list.items.is_empty());
        assert_eq!(path::<PodMetrics>(Some("ns"), Some("p")), "/apis/metrics.k8s.io/v1beta1/namespaces/ns/pods/p");
        assert_eq!(path::<NodeMetrics>(Some("ns"), None), "/apis/metrics.k8s.io/v1beta1/nodes");
    }
}
