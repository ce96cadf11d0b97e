//! Resource usage of the node and of what it runs: the part of cAdvisor and of the kubelet's
//! resource metrics the cluster relies on. A [`Sampler`] reads, at one instant, the cumulative
//! CPU time and memory working set of every running container and pod (their cgroups,
//! [`cgroup`]), the pods' network bytes and the node's totals (/proc, [`host`]).
//!
//! Disk use of writable layers, logs and emptyDirs ([`fs`]) is walked on a slower period and
//! served from a cache.
//!
//! Two readers: [`reporter`] (the housekeeping, every `--housekeeping-interval`, by default
//! [`REPORT_PERIOD`]) measures what is due on disk and publishes CPU rates over a window
//! between two samples to the API servers (metrics.k8s.io, `kubectl top`), and [`cadvisor`]
//! serves a fresh sample at each Prometheus scrape under cAdvisor's names. Containers come and
//! go: a cgroup that vanished between listing and reading is skipped, never an error that stops
//! either of them. An interval of 0 turns all of it off: no reports, no walks, no container
//! series (only the kubelet's counts of what runs).

pub mod cadvisor;
pub mod cgroup;
pub mod fs;
pub mod host;
pub mod reporter;

pub use kubus_bus::usage::REPORT_PERIOD;

use crate::context::PodHandleInner;
use cgroup::CgroupUsage;
use kubus_container_runtime::cgroups::{pod_cgroup_path, CgroupError, CgroupLayout, QosClass};
use prometheus::{register_int_counter_vec, IntCounterVec};
use std::path::{Path, PathBuf};
use std::sync::LazyLock;
use std::time::{Duration, Instant, SystemTime};

#[derive(Debug, thiserror::Error)]
pub enum StatsError {
    /// The file (or its cgroup) does not exist: normal for a container that just ended.
    #[error("{0}: gone")]
    Gone(PathBuf),
    #[error("{path}: {source}")]
    Read { path: PathBuf, source: std::io::Error },
    #[error("{path}: no {field}")]
    Missing { path: PathBuf, field: String },
    #[error("{path}: malformed value {value:?}")]
    Malformed { path: PathBuf, value: String },
    #[error("no {0} controller is mounted")]
    NoController(&'static str),
    #[error(transparent)]
    Cgroup(#[from] CgroupError),
}

impl StatsError {
    pub fn is_gone(&self) -> bool {
        matches!(self, StatsError::Gone(_))
    }
    /// A short name for the error counter's label.
    fn kind(&self) -> &'static str {
        match self {
            StatsError::Gone(_) => "gone",
            StatsError::Read { .. } => "read",
            StatsError::Missing { .. } => "missing",
            StatsError::Malformed { .. } => "malformed",
            StatsError::NoController(_) => "no_controller",
            StatsError::Cgroup(_) => "cgroup",
        }
    }
}

static READ_ERRORS: LazyLock<IntCounterVec> = LazyLock::new(|| {
    register_int_counter_vec!(
        "kubus_kubelet_stats_read_errors_total",
        "Usage files the node agent could not read (gone: the container ended meanwhile)",
        &["kind"]
    )
    .expect("registers once")
});

pub(crate) fn read_file(path: &Path) -> Result<String, StatsError> {
    std::fs::read_to_string(path).map_err(|source| match source.kind() {
        // ENODEV: a cgroup being removed answers reads of its files with it.
        std::io::ErrorKind::NotFound => StatsError::Gone(path.to_path_buf()),
        _ if source.raw_os_error() == Some(19) => StatsError::Gone(path.to_path_buf()),
        _ => StatsError::Read { path: path.to_path_buf(), source },
    })
}

pub(crate) fn read_u64(path: &Path) -> Result<u64, StatsError> {
    let text = read_file(path)?;
    text.trim().parse().map_err(|_| StatsError::Malformed { path: path.to_path_buf(), value: text.trim().to_string() })
}

/// Counts an error (and logs what is not the normal end of a container) and drops it.
fn note<T>(what: &str, r: Result<T, StatsError>) -> Option<T> {
    match r {
        Ok(v) => Some(v),
        Err(e) => {
            READ_ERRORS.with_label_values(&[e.kind()]).inc();
            if e.is_gone() {
                tracing::debug!(what, error = %e, "usage not read");
            } else {
                tracing::warn!(what, error = %e, "usage not read");
            }
            None
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct ContainerSample {
    pub name: String,
    pub id: String,
    /// The container's cgroup (cAdvisor's `id` label).
    pub cgroup: String,
    pub usage: CgroupUsage,
}

#[derive(Debug, Clone, PartialEq)]
pub struct PodSample {
    pub namespace: String,
    pub name: String,
    pub uid: String,
    pub cgroup: String,
    /// The pod cgroup's own usage (every container and anything else in it).
    pub usage: Option<CgroupUsage>,
    /// Bytes (received, transmitted) by the pod's network namespace.
    pub network: Option<(u64, u64)>,
    /// Containers with a process running, and what they used.
    pub containers: Vec<ContainerSample>,
    /// The pod's disk use when it was last walked (None: not yet).
    pub fs: Option<std::sync::Arc<fs::PodFs>>,
}

/// Everything read at one instant.
#[derive(Debug, Clone)]
pub struct NodeSample {
    pub at: SystemTime,
    pub mono: Instant,
    pub node_cpu_ns: Option<u64>,
    /// (usage, working set) in bytes.
    pub node_memory: Option<(u64, u64)>,
    pub pods: Vec<PodSample>,
}

impl NodeSample {
    /// Pods with a container running (kubelet_running_pods).
    pub fn running_pods(&self) -> usize {
        self.pods.iter().filter(|p| !p.containers.is_empty()).count()
    }
    pub fn running_containers(&self) -> usize {
        self.pods.iter().map(|p| p.containers.len()).sum()
    }
}

/// Reads usage of the pods the agent runs.
pub struct Sampler {
    layout: CgroupLayout,
    cgroup_root: String,
    fs_layout: fs::FsLayout,
    /// Disk use, as last walked.
    fs: fs::FsCache,
}

impl Sampler {
    pub fn new(layout: CgroupLayout, cgroup_root: &str, fs_layout: fs::FsLayout) -> Self {
        Sampler { layout, cgroup_root: cgroup_root.to_string(), fs_layout, fs: fs::FsCache::default() }
    }

    /// Walks the disk use of the pods that are due (see [`fs::FsCache::refresh`]).
    pub fn refresh_fs(&self, pods: &[PodHandleInner], period: Duration) -> usize {
        let _span = tracing::debug_span!("stats.fs", pods = pods.len()).entered();
        self.fs.refresh(&self.fs_layout, pods, period)
    }

    /// Reads the node and `pods` (what the pod workers say runs) now.
    pub fn sample(&self, pods: &[PodHandleInner]) -> NodeSample {
        let span = tracing::debug_span!("stats.sample", pods = pods.len());
        let _guard = span.enter();
        let started = Instant::now();
        let sample = NodeSample {
            at: SystemTime::now(),
            mono: Instant::now(),
            node_cpu_ns: note("node cpu", host::node_cpu_ns()),
            node_memory: note("node memory", host::node_memory()),
            pods: pods.iter().filter_map(|p| self.pod(p)).collect(),
        };
        reporter::SAMPLE_DURATION.observe(started.elapsed().as_secs_f64());
        sample
    }

    /// The pod's cgroup under whichever QoS parent it has (None: not made yet, or gone).
    fn pod_cgroup(&self, uid: &str) -> Option<String> {
        [QosClass::Guaranteed, QosClass::Burstable, QosClass::BestEffort].into_iter().find_map(|qos| {
            let path = pod_cgroup_path(&self.cgroup_root, qos, uid);
            let controller = if self.layout.version == kubus_container_runtime::cgroups::CgroupVersion::V1 {
                "cpuacct"
            } else {
                "cpu"
            };
            let dir = self.layout.controller_dir(controller, &path).ok().flatten()?;
            dir.is_dir().then_some(path)
        })
    }

    fn pod(&self, p: &PodHandleInner) -> Option<PodSample> {
        if p.uid.is_empty() {
            return None;
        }
        let cgroup = self.pod_cgroup(&p.uid)?;
        let mut network = None;
        let mut containers = Vec::new();
        let mut running: Vec<_> = p.containers.iter().filter(|(_, (_, _, running))| *running).collect();
        running.sort_by(|a, b| a.0.cmp(b.0));
        for (name, (id, _, _)) in running {
            let path = kubus_container_runtime::cgroups::container_cgroup_path(&cgroup, id);
            // Running means a process is in its cgroup, whatever the worker last saw.
            let Some(pids) = note("container procs", cgroup::procs(&self.layout, &path)) else { continue };
            let Some(first) = pids.first() else { continue };
            let Some(usage) = note("container usage", cgroup::read(&self.layout, &path)) else { continue };
            if network.is_none() {
                network = note("pod network", host::net_of_pid(*first));
            }
            containers.push(ContainerSample { name: name.clone(), id: id.clone(), cgroup: path, usage });
        }
        let usage = note("pod usage", cgroup::read(&self.layout, &cgroup));
        Some(PodSample {
            namespace: p.namespace.clone(),
            name: p.name.clone(),
            uid: p.uid.clone(),
            cgroup,
            usage,
            network,
            containers,
            fs: self.fs.get(&p.uid),
        })
    }
}

/// Average CPU use between two cumulative readings, in nanocores; None when there is no
/// window or the counter went back (a container restarted under the same id).
pub fn cpu_rate(prev_ns: u64, prev_at: Instant, cur_ns: u64, cur_at: Instant) -> Option<u64> {
    let window = cur_at.checked_duration_since(prev_at)?;
    if window.is_zero() || cur_ns < prev_ns {
        return None;
    }
    Some(((cur_ns - prev_ns) as u128 * 1_000_000_000 / window.as_nanos()) as u64)
}

/// The window of a rate: between the previous sample and this one.
pub fn window(prev: Instant, cur: Instant) -> Duration {
    cur.saturating_duration_since(prev)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_rates() {
        let t0 = Instant::now();
        let t1 = t0 + Duration::from_secs(10);
        // One core busy for 10 s.
        assert_eq!(cpu_rate(5_000_000_000, t0, 15_000_000_000, t1), Some(1_000_000_000));
        // A quarter core over 2 s.
        assert_eq!(cpu_rate(0, t0, 500_000_000, t0 + Duration::from_secs(2)), Some(250_000_000));
        assert_eq!(cpu_rate(10, t0, 10, t1), Some(0));
        assert_eq!(cpu_rate(10, t0, 5, t1), None, "a counter that went back has no rate");
        assert_eq!(cpu_rate(0, t0, 5, t0), None, "no window");
        assert_eq!(cpu_rate(0, t1, 5, t0), None);
    }
}
