//! The node's usage as Prometheus series under cAdvisor's and the kubelet's names
//! (`container_cpu_usage_seconds_total`, `container_memory_working_set_bytes`,
//! `container_network_{receive,transmit}_bytes_total`, `container_fs_usage_bytes`,
//! `kubelet_running_pods`, `kubelet_running_containers`), so dashboards and alerts written for
//! upstream work as they are. A collector reads a fresh sample at each scrape (disk use comes
//! from the last walk, see [`fs`](super::fs)): series of a pod that is gone are simply not
//! there any more, where long-lived gauges would leak them.
//!
//! Labels as cAdvisor's: `namespace`, `pod`, `container`, `id` (the cgroup), and `device` on
//! the filesystem series (a container's writable layer); the pod cgroup's own series have
//! `container=""`, and the node's totals are the root cgroup's, `id="/"`. With collection off
//! (`--housekeeping-interval 0`) only the kubelet's counts are served, from what the pod
//! workers say runs.

use super::{NodeSample, Sampler};
use crate::context::NodeContext;
use prometheus::core::{Collector, Desc};
use prometheus::proto::MetricFamily;
use prometheus::{CounterVec, GaugeVec, IntGaugeVec, Opts};
use std::sync::{Arc, LazyLock, Mutex, Weak};

const LABELS: &[&str] = &["namespace", "pod", "container", "id"];
const FS_LABELS: &[&str] = &["namespace", "pod", "container", "id", "device"];

/// A node agent whose usage is exposed, while it lives (no sampler: collection is off).
type Source = (Weak<NodeContext>, Option<Arc<Sampler>>);

/// The node agents of this process whose usage is exposed (one, but for tests).
static SOURCES: LazyLock<Mutex<Vec<Source>>> = LazyLock::new(|| {
    if let Err(e) = prometheus::register(Box::new(UsageCollector::new())) {
        tracing::warn!(error = %e, "the usage collector could not be registered");
    }
    Mutex::new(Vec::new())
});

/// Exposes the usage of `ctx`'s pods on the process's /metrics while the agent lives; without
/// a sampler, only how many pods and containers run.
pub fn expose(ctx: &Arc<NodeContext>, sampler: Option<Arc<Sampler>>) {
    let mut sources = SOURCES.lock().unwrap_or_else(|p| p.into_inner());
    sources.retain(|(c, _)| c.strong_count() > 0);
    sources.push((Arc::downgrade(ctx), sampler));
}

struct Families {
    cpu: CounterVec,
    memory: GaugeVec,
    rx: CounterVec,
    tx: CounterVec,
    fs_usage: GaugeVec,
    running_pods: IntGaugeVec,
    running_containers: IntGaugeVec,
}

impl Families {
    fn new() -> Self {
        let counter = |name: &str, help: &str| CounterVec::new(Opts::new(name, help), LABELS).expect("valid metric");
        Families {
            cpu: counter("container_cpu_usage_seconds_total", "Cumulative cpu time consumed in seconds."),
            memory: GaugeVec::new(
                Opts::new("container_memory_working_set_bytes", "Current working set in bytes."),
                LABELS,
            )
            .expect("valid metric"),
            rx: counter("container_network_receive_bytes_total", "Cumulative count of bytes received"),
            tx: counter("container_network_transmit_bytes_total", "Cumulative count of bytes transmitted"),
            fs_usage: GaugeVec::new(
                Opts::new(
                    "container_fs_usage_bytes",
                    "Number of bytes that are consumed by the container on this filesystem.",
                ),
                FS_LABELS,
            )
            .expect("valid metric"),
            running_pods: IntGaugeVec::new(
                Opts::new("kubelet_running_pods", "Number of pods that have a running pod sandbox"),
                &[],
            )
            .expect("valid metric"),
            running_containers: IntGaugeVec::new(
                Opts::new("kubelet_running_containers", "Number of containers currently running"),
                &["container_state"],
            )
            .expect("valid metric"),
        }
    }

    fn add(&self, s: &NodeSample) {
        if let Some(cpu) = s.node_cpu_ns {
            self.cpu.with_label_values(&["", "", "", "/"]).inc_by(cpu as f64 / 1e9);
        }
        if let Some((_, ws)) = s.node_memory {
            self.memory.with_label_values(&["", "", "", "/"]).set(ws as f64);
        }
        for p in &s.pods {
            let pod = [p.namespace.as_str(), p.name.as_str(), "", p.cgroup.as_str()];
            if let Some(u) = p.usage {
                self.cpu.with_label_values(&pod).inc_by(u.cpu_ns as f64 / 1e9);
                self.memory.with_label_values(&pod).set(u.memory_working_set_bytes as f64);
            }
            if let Some((rx, tx)) = p.network {
                self.rx.with_label_values(&pod).inc_by(rx as f64);
                self.tx.with_label_values(&pod).inc_by(tx as f64);
            }
            for c in &p.containers {
                let labels = [p.namespace.as_str(), p.name.as_str(), c.name.as_str(), c.cgroup.as_str()];
                self.cpu.with_label_values(&labels).inc_by(c.usage.cpu_ns as f64 / 1e9);
                self.memory.with_label_values(&labels).set(c.usage.memory_working_set_bytes as f64);
                let Some(fs) = &p.fs else { continue };
                if let Some(layer) = fs.layers.get(&c.id) {
                    let device = fs.device.as_deref().unwrap_or("");
                    let labels = [p.namespace.as_str(), p.name.as_str(), c.name.as_str(), c.cgroup.as_str(), device];
                    self.fs_usage.with_label_values(&labels).set(layer.used_bytes as f64);
                }
            }
        }
        self.running(s.running_pods(), s.running_containers());
    }

    fn running(&self, pods: usize, containers: usize) {
        self.running_pods.with_label_values::<&str>(&[]).add(pods as i64);
        self.running_containers.with_label_values(&["running"]).add(containers as i64);
    }

    fn collect(&self) -> Vec<MetricFamily> {
        let mut out = self.cpu.collect();
        out.extend(self.memory.collect());
        out.extend(self.rx.collect());
        out.extend(self.tx.collect());
        out.extend(self.fs_usage.collect());
        out.extend(self.running_pods.collect());
        out.extend(self.running_containers.collect());
        out
    }
}

struct UsageCollector {
    /// Only for the descriptors: each scrape fills families of its own.
    template: Families,
}

impl UsageCollector {
    fn new() -> Self {
        UsageCollector { template: Families::new() }
    }
}

impl Collector for UsageCollector {
    fn desc(&self) -> Vec<&Desc> {
        let t = &self.template;
        let mut d = t.cpu.desc();
        d.extend(t.memory.desc());
        d.extend(t.rx.desc());
        d.extend(t.tx.desc());
        d.extend(t.fs_usage.desc());
        d.extend(t.running_pods.desc());
        d.extend(t.running_containers.desc());
        d
    }

    fn collect(&self) -> Vec<MetricFamily> {
        let sources: Vec<_> = {
            let sources = SOURCES.lock().unwrap_or_else(|p| p.into_inner());
            sources.iter().filter_map(|(c, s)| Some((c.upgrade()?, s.clone()))).collect()
        };
        if sources.is_empty() {
            return vec![];
        }
        let families = Families::new();
        for (ctx, sampler) in sources {
            let pods = super::reporter::running_pods(&ctx);
            match sampler {
                Some(sampler) => families.add(&sampler.sample(&pods)),
                None => {
                    let running = |p: &crate::context::PodHandleInner| p.containers.values().filter(|c| c.2).count();
                    let containers: usize = pods.iter().map(running).sum();
                    families.running(pods.iter().filter(|p| running(p) > 0).count(), containers);
                }
            }
        }
        families.collect()
    }
}

#[cfg(test)]
mod tests {
    use super::super::fs::{FsUsage, PodFs};
    use super::super::{cgroup::CgroupUsage, ContainerSample, PodSample};
    use super::*;
    use std::time::{Instant, SystemTime};

    #[test]
    fn series_as_cadvisor_names_them() {
        let f = Families::new();
        f.add(&NodeSample {
            at: SystemTime::now(),
            mono: Instant::now(),
            node_cpu_ns: Some(3_000_000_000),
            node_memory: Some((10, 8)),
            pods: vec![PodSample {
                namespace: "ns".into(),
                name: "p".into(),
                uid: "u".into(),
                cgroup: "/k/podu".into(),
                usage: Some(CgroupUsage { cpu_ns: 2_000_000_000, memory_usage_bytes: 5, memory_working_set_bytes: 4 }),
                network: Some((100, 200)),
                containers: vec![ContainerSample {
                    name: "c".into(),
                    id: "x".into(),
                    cgroup: "/k/podu/x".into(),
                    usage: CgroupUsage { cpu_ns: 1_500_000_000, memory_usage_bytes: 3, memory_working_set_bytes: 2 },
                }],
                fs: Some(Arc::new(PodFs {
                    layers: [("x".to_string(), FsUsage { used_bytes: 12288, inodes_used: 3 })].into(),
                    device: Some("/dev/vda".into()),
                    ..Default::default()
                })),
            }],
        });
        let mut text = Vec::new();
        prometheus::Encoder::encode(&prometheus::TextEncoder::new(), &f.collect(), &mut text).unwrap();
        let text = String::from_utf8(text).unwrap();
        for line in [
            r#"container_cpu_usage_seconds_total{container="c",id="/k/podu/x",namespace="ns",pod="p"} 1.5"#,
            r#"container_cpu_usage_seconds_total{container="",id="/k/podu",namespace="ns",pod="p"} 2"#,
            r#"container_cpu_usage_seconds_total{container="",id="/",namespace="",pod=""} 3"#,
            r#"container_memory_working_set_bytes{container="c",id="/k/podu/x",namespace="ns",pod="p"} 2"#,
            r#"container_network_receive_bytes_total{container="",id="/k/podu",namespace="ns",pod="p"} 100"#,
            r#"container_network_transmit_bytes_total{container="",id="/k/podu",namespace="ns",pod="p"} 200"#,
            r#"container_fs_usage_bytes{container="c",device="/dev/vda",id="/k/podu/x",namespace="ns",pod="p"} 12288"#,
            "kubelet_running_pods 1",
            r#"kubelet_running_containers{container_state="running"} 1"#,
        ] {
            assert!(text.contains(line), "{line} missing from\n{text}");
        }
    }
}
