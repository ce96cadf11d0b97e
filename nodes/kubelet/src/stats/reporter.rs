//! Publishes the node's usage to the API servers every housekeeping interval (by default
//! [`REPORT_PERIOD`](super::REPORT_PERIOD)):
//! CPU as the rate between the last two samples (metrics-server's window), memory as the
//! working set of the last one. Only containers with two readings have a rate, so a new pod
//! shows up in `kubectl top` one period after it started, as with metrics-server.

use super::{cpu_rate, NodeSample, Sampler};
use crate::context::NodeContext;
use kubus_bus::usage::{ContainerUsage, PodUsage, Usage, UsageReport, VolumeUsage};
use prometheus::{register_histogram, register_int_counter_vec, Histogram, IntCounterVec};
use std::collections::HashMap;
use std::sync::{Arc, LazyLock};
use std::time::{Duration, Instant, UNIX_EPOCH};
use tracing::Instrument;

pub(crate) static SAMPLE_DURATION: LazyLock<Histogram> = LazyLock::new(|| {
    register_histogram!(
        "kubus_kubelet_stats_sample_duration_seconds",
        "Time to read the usage of the node and its pods once",
        vec![0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0]
    )
    .expect("registers once")
});

static REPORTS: LazyLock<IntCounterVec> = LazyLock::new(|| {
    register_int_counter_vec!(
        "kubus_kubelet_usage_reports_total",
        "Usage reports the node agent published to the API servers, by result",
        &["result"]
    )
    .expect("registers once")
});

/// The previous sample's cumulative CPU counters, for the next rate.
#[derive(Default)]
pub struct RateTracker {
    prev: Option<Previous>,
}

struct Previous {
    mono: Instant,
    node_cpu_ns: Option<u64>,
    /// container id -> cumulative CPU ns.
    containers: HashMap<String, u64>,
}

impl RateTracker {
    /// The report of `sample` against the previous one (None for the first sample).
    pub fn report(&mut self, sample: &NodeSample) -> Option<UsageReport> {
        let prev = self.prev.replace(Previous {
            mono: sample.mono,
            node_cpu_ns: sample.node_cpu_ns,
            containers: sample
                .pods
                .iter()
                .flat_map(|p| p.containers.iter().map(|c| (c.id.clone(), c.usage.cpu_ns)))
                .collect(),
        })?;
        let rate = |prev_ns: Option<u64>, cur_ns: u64| cpu_rate(prev_ns?, prev.mono, cur_ns, sample.mono);
        let window = super::window(prev.mono, sample.mono);
        let pods = sample
            .pods
            .iter()
            .filter_map(|p| {
                let containers: Vec<ContainerUsage> = p
                    .containers
                    .iter()
                    .filter_map(|c| {
                        let cpu = rate(prev.containers.get(&c.id).copied(), c.usage.cpu_ns)?;
                        Some(ContainerUsage {
                            name: c.name.clone(),
                            usage: Usage {
                                cpu_nanocores: cpu,
                                memory_working_set_bytes: c.usage.memory_working_set_bytes,
                            },
                            rootfs: p.fs.as_ref().and_then(|f| f.layers.get(&c.id).copied()),
                            logs: p.fs.as_ref().and_then(|f| f.logs.get(&c.name).copied()),
                        })
                    })
                    .collect();
                (!containers.is_empty()).then(|| PodUsage {
                    namespace: p.namespace.clone(),
                    name: p.name.clone(),
                    uid: p.uid.clone(),
                    containers,
                    ephemeral_storage: p.fs.as_ref().map(|f| f.ephemeral_storage()),
                    volumes: p
                        .fs
                        .iter()
                        .flat_map(|f| f.volumes.iter())
                        .map(|(name, (fs, _))| VolumeUsage { name: name.clone(), fs: *fs })
                        .collect(),
                })
            })
            .collect();
        let node = Usage {
            cpu_nanocores: sample.node_cpu_ns.and_then(|cur| rate(prev.node_cpu_ns, cur)).unwrap_or(0),
            memory_working_set_bytes: sample.node_memory.map(|(_, ws)| ws).unwrap_or(0),
        };
        Some(UsageReport {
            timestamp_ms: sample.at.duration_since(UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0),
            window_ms: window.as_millis() as u64,
            node,
            pods,
        })
    }
}

/// The housekeeping, every `interval` for the agent's life: walks the disk use that is due
/// (every [`fs::FS_PERIOD`](super::fs::FS_PERIOD) at least), samples, and publishes the report
/// on the node's own usage subject. A failed sample or publish is counted and the next period
/// tries again.
pub async fn run(c: Arc<NodeContext>, sampler: Arc<Sampler>, interval: Duration) {
    let config = c.config();
    let subject = kubus_bus::usage::subject(&config.cluster, &config.node_name);
    let fs_period = interval.max(super::fs::FS_PERIOD);
    let mut tracker = RateTracker::default();
    let mut tick = tokio::time::interval(interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    for result in ["published", "failed"] {
        REPORTS.with_label_values(&[result]);
    }
    loop {
        tick.tick().await;
        let span = tracing::debug_span!("usage_report", node = %config.node_name);
        async {
            let pods = running_pods(&c);
            let sampler = sampler.clone();
            let sampled = tokio::task::spawn_blocking(move || {
                sampler.refresh_fs(&pods, fs_period);
                sampler.sample(&pods)
            });
            let sample = match sampled.await {
                Ok(s) => s,
                Err(e) => {
                    tracing::warn!(error = %e, "usage sampling failed");
                    REPORTS.with_label_values(&["failed"]).inc();
                    return;
                }
            };
            let Some(report) = tracker.report(&sample) else { return };
            let published = match report.encode() {
                Ok(payload) => c.nats.publish(subject.clone(), payload.into()).await.map_err(|e| e.to_string()),
                Err(e) => Err(e.to_string()),
            };
            match published {
                Ok(()) => REPORTS.with_label_values(&["published"]).inc(),
                Err(e) => {
                    REPORTS.with_label_values(&["failed"]).inc();
                    tracing::warn!(error = %e, "publishing the node's usage failed");
                }
            }
        }
        .instrument(span)
        .await;
    }
}

/// What the pod workers say runs on the node.
pub fn running_pods(c: &NodeContext) -> Vec<crate::context::PodHandleInner> {
    let handles: Vec<_> = c.pods.read().unwrap_or_else(|p| p.into_inner()).values().cloned().collect();
    handles.iter().map(|h| h.snapshot()).collect()
}

#[cfg(test)]
mod tests {
    use super::super::{cgroup::CgroupUsage, ContainerSample, PodSample};
    use super::*;
    use std::time::{Duration, SystemTime};

    fn sample(mono: Instant, node_cpu: u64, containers: &[(&str, u64)]) -> NodeSample {
        NodeSample {
            at: SystemTime::now(),
            mono,
            node_cpu_ns: Some(node_cpu),
            node_memory: Some((2048, 1024)),
            pods: vec![PodSample {
                namespace: "ns".into(),
                name: "p".into(),
                uid: "u".into(),
                cgroup: "/k/podu".into(),
                usage: None,
                network: None,
                containers: containers
                    .iter()
                    .map(|(id, cpu)| ContainerSample {
                        name: format!("c-{id}"),
                        id: id.to_string(),
                        cgroup: format!("/k/podu/{id}"),
                        usage: CgroupUsage { cpu_ns: *cpu, memory_usage_bytes: 10, memory_working_set_bytes: 7 },
                    })
                    .collect(),
                fs: None,
            }],
        }
    }

    #[test]
    fn rates_over_the_window_between_samples() {
        let mut t = RateTracker::default();
        let t0 = Instant::now();
        assert!(t.report(&sample(t0, 0, &[("a", 0)])).is_none(), "one sample has no rate");
        let t1 = t0 + Duration::from_secs(10);
        // "a" used one core; "b" is new (no rate yet).
        let r = t.report(&sample(t1, 20_000_000_000, &[("a", 10_000_000_000), ("b", 5)])).unwrap();
        assert_eq!(r.window_ms, 10_000);
        assert_eq!(r.node, Usage { cpu_nanocores: 2_000_000_000, memory_working_set_bytes: 1024 });
        assert_eq!(r.pods.len(), 1);
        assert_eq!(r.pods[0].containers.len(), 1);
        assert_eq!(r.pods[0].containers[0].usage, Usage { cpu_nanocores: 1_000_000_000, memory_working_set_bytes: 7 });
        // Next window: both have rates; a pod without containers is left out.
        let t2 = t1 + Duration::from_secs(5);
        let r = t.report(&sample(t2, 20_000_000_000, &[("a", 10_000_000_000), ("b", 2_500_000_005)])).unwrap();
        let rates: Vec<u64> = r.pods[0].containers.iter().map(|c| c.usage.cpu_nanocores).collect();
        assert_eq!(rates, vec![0, 500_000_000]);
        assert!(t.report(&sample(t2 + Duration::from_secs(5), 0, &[])).unwrap().pods.is_empty());
    }

    #[test]
    fn disk_use_goes_with_the_containers_and_the_pod() {
        use super::super::fs::{FsUsage, PodFs};
        let mut t = RateTracker::default();
        let t0 = Instant::now();
        t.report(&sample(t0, 0, &[("a", 0)]));
        let mut s = sample(t0 + Duration::from_secs(10), 0, &[("a", 5)]);
        let fs = |b| FsUsage { used_bytes: b, inodes_used: 1 };
        s.pods[0].fs = Some(Arc::new(PodFs {
            layers: [("a".to_string(), fs(4096))].into(),
            logs: [("c-a".to_string(), fs(512))].into(),
            volumes: [("scratch".to_string(), (fs(8192), false)), ("shm".to_string(), (fs(100), true))].into(),
            ..Default::default()
        }));
        let r = t.report(&s).unwrap();
        let pod = &r.pods[0];
        assert_eq!(pod.containers[0].rootfs, Some(fs(4096)));
        assert_eq!(pod.containers[0].logs, Some(fs(512)));
        // The memory-backed volume is listed but is not storage.
        assert_eq!(pod.ephemeral_storage, Some(FsUsage { used_bytes: 4096 + 512 + 8192, inodes_used: 3 }));
        let names: Vec<&str> = pod.volumes.iter().map(|v| v.name.as_str()).collect();
        assert_eq!(names, ["scratch", "shm"]);
    }
}
