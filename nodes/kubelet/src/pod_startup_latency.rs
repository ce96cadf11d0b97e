//! The pod startup latency SLI (upstream's pod startup latency tracker): from the pod's
//! creation timestamp to the moment a watch delivers it with every container started, less the
//! time spent pulling images and running init containers, for the pods scheduled to this node
//! after the agent started. The tracker only keeps the instants; three places feed it:
//! - the agent, for every pod a watch delivers ([`PodStartupLatencyTracker::observed_on_watch`]);
//! - the pod worker, when it pulls an image, runs an init container, and writes a status in which
//!   every container has started;
//! - the agent again when the pod is gone ([`PodStartupLatencyTracker::forget`]).
//!
//! Pods whose start depends on more than the node (a volume other than the stateless kinds) or
//! that could not be scheduled at once are left out, as the SLI's definition says. The time
//! excluded is the union of the pull and init container intervals, so overlapping pulls are
//! not subtracted twice.

use k8s_openapi::api::core::v1::{Pod, PodStatus, Volume};
use kubus_apimachinery::{conditions, pod, time, ObjectExt};
use prometheus::{register_gauge, register_histogram, Gauge, Histogram};
use std::collections::{HashMap, HashSet};
use std::sync::{LazyLock, Mutex};
use std::time::{Duration, SystemTime};

/// Upstream's bucket bounds for pod startup: round numbers from half a second to an hour.
const BUCKETS: &[f64] = &[
    0.5, 1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 8.0, 10.0, 20.0, 30.0, 45.0, 60.0, 120.0, 180.0, 240.0, 300.0, 360.0, 480.0,
    600.0, 900.0, 1200.0, 1800.0, 2700.0, 3600.0,
];

pub(crate) static POD_START_SLI_DURATION: LazyLock<Histogram> = LazyLock::new(|| {
    register_histogram!(
        "kubelet_pod_start_sli_duration_seconds",
        "Duration in seconds to start a pod, excluding time to pull images and run init containers, measured from \
         pod creation timestamp to when all its containers are reported as started and observed via watch",
        BUCKETS.to_vec()
    )
    .expect("registers once")
});

static POD_START_TOTAL_DURATION: LazyLock<Histogram> = LazyLock::new(|| {
    register_histogram!(
        "kubelet_pod_start_total_duration_seconds",
        "Duration in seconds to start a pod since creation, including time to pull images and run init containers, \
         measured from pod creation timestamp to when all its containers are reported as started and observed via \
         watch",
        BUCKETS.to_vec()
    )
    .expect("registers once")
});

static FIRST_NETWORK_POD_START_SLI_DURATION: LazyLock<Gauge> = LazyLock::new(|| {
    register_gauge!(
        "kubelet_first_network_pod_start_sli_duration_seconds",
        "Duration in seconds to start the first network pod, excluding time to pull images and run init containers, \
         measured from pod creation timestamp to when all its containers are reported as started and observed via \
         watch"
    )
    .expect("registers once")
});

/// What one pod's start has gone through so far.
#[derive(Debug, Default)]
struct PodStart {
    /// Image pulls begun and not finished yet (finished ones pair with the oldest).
    pulls_started: Vec<SystemTime>,
    /// Intervals not counted: finished pulls and init container runs.
    excluded: Vec<(SystemTime, SystemTime)>,
    /// An init container running since then.
    init_started: Option<SystemTime>,
    /// When the kubelet first wrote a status with every container started.
    running_written: Option<SystemTime>,
    /// When a watch first showed every container started, if before that write's answer.
    watch_saw_started: Option<SystemTime>,
    recorded: bool,
}

/// One figure the SLI observed (returned for tests and the log).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Observed {
    /// From creation to the watch seeing every container started.
    pub total: Duration,
    /// The same less the pulls and init containers.
    pub sli: Duration,
    /// Left out of the SLI histogram (a stateful pod).
    pub stateful: bool,
}

/// Instants of each pod's start on this node, shared by the agent and its pod workers.
#[derive(Debug, Default)]
pub struct PodStartupLatencyTracker {
    inner: Mutex<Tracked>,
}

#[derive(Debug, Default)]
struct Tracked {
    pods: HashMap<String, PodStart>,
    /// Pods seen unschedulable: never tracked again.
    excluded: HashSet<String>,
    first_network_pod_seen: bool,
}

impl PodStartupLatencyTracker {
    /// Registers the series, so that they exist (empty) from the agent's start.
    pub fn register_metrics() {
        LazyLock::force(&POD_START_SLI_DURATION);
        LazyLock::force(&POD_START_TOTAL_DURATION);
        LazyLock::force(&FIRST_NETWORK_POD_START_SLI_DURATION);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Tracked> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A watch delivered `pod` at `when`: starts tracking a pod the kubelet has not started yet,
    /// and observes the SLI once the pod shows every container started after the kubelet wrote so.
    pub fn observed_on_watch(&self, pod: &Pod, when: SystemTime) -> Option<Observed> {
        let uid = pod.uid().to_string();
        let mut t = self.lock();
        if pod::is_terminal(pod) {
            t.pods.remove(&uid);
            return None;
        }
        if t.excluded.contains(&uid) {
            return None;
        }
        if unschedulable(pod) {
            t.pods.remove(&uid);
            t.excluded.insert(uid);
            return None;
        }
        let Some(state) = t.pods.get_mut(&uid) else {
            // Only pods this agent starts: one with a start time was started before (by an
            // earlier run of the agent, or another node's).
            if pod.status.as_ref().is_none_or(|s| s.start_time.is_none()) {
                t.pods.insert(uid, PodStart::default());
            }
            return None;
        };
        if state.recorded || !all_started(pod.status.as_ref()) {
            return None;
        }
        if state.running_written.is_none() {
            // The watch may deliver the kubelet's write before the write's own answer: the
            // figure is taken when the worker learns that its write went through.
            state.watch_saw_started.get_or_insert(when);
            return None;
        }
        Self::record(&mut t, pod, when)
    }

    /// Observes the pod's figures, once.
    fn record(t: &mut Tracked, pod: &Pod, when: SystemTime) -> Option<Observed> {
        let state = t.pods.get_mut(pod.uid())?;
        state.recorded = true;
        let created = pod.metadata.creation_timestamp.as_ref().map(time::system_time)?;
        let total = when.duration_since(created).unwrap_or_default();
        let sli = total.saturating_sub(union_within(&state.excluded, created, when));
        let stateful = is_stateful(pod);
        POD_START_TOTAL_DURATION.observe(total.as_secs_f64());
        if !stateful {
            POD_START_SLI_DURATION.observe(sli.as_secs_f64());
            // The first pod with a network of its own shows how long the CNI took to be ready.
            if !t.first_network_pod_seen && !pod::spec(pod).host_network.unwrap_or(false) {
                FIRST_NETWORK_POD_START_SLI_DURATION.set(sli.as_secs_f64());
                t.first_network_pod_seen = true;
            }
        }
        tracing::info!(
            pod = %format!("{}/{}", pod.namespace_or_default(), pod.name()),
            sli_seconds = sli.as_secs_f64(),
            total_seconds = total.as_secs_f64(),
            stateful,
            "observed pod startup duration"
        );
        Some(Observed { total, sli, stateful })
    }

    /// The pod's worker begins pulling an image for it.
    pub fn image_pull_started(&self, uid: &str) {
        if let Some(s) = self.lock().pods.get_mut(uid) {
            s.pulls_started.push(SystemTime::now());
        }
    }

    /// A pull ended with the image present: the oldest pull begun is done.
    pub fn image_pull_finished(&self, uid: &str) {
        if let Some(s) = self.lock().pods.get_mut(uid) {
            if !s.pulls_started.is_empty() {
                let started = s.pulls_started.remove(0);
                s.excluded.push((started, SystemTime::now()));
            }
        }
    }

    /// An init container of the pod started running at `at`.
    pub fn init_container_started(&self, uid: &str, at: SystemTime) {
        if let Some(s) = self.lock().pods.get_mut(uid) {
            s.init_started.get_or_insert(at);
        }
    }

    /// The running init container of the pod finished at `at`.
    pub fn init_container_finished(&self, uid: &str, at: SystemTime) {
        if let Some(s) = self.lock().pods.get_mut(uid) {
            if let Some(started) = s.init_started.take() {
                s.excluded.push((started, at.max(started)));
            }
        }
    }

    /// The kubelet wrote `status` for `pod`: the first one with every container started marks
    /// the pod running; if a watch already showed it so, that is the moment observed.
    pub fn status_updated(&self, pod: &Pod, status: &PodStatus) -> Option<Observed> {
        let mut t = self.lock();
        let s = t.pods.get_mut(pod.uid())?;
        if s.recorded || s.running_written.is_some() || !all_started(Some(status)) {
            return None;
        }
        s.running_written = Some(SystemTime::now());
        let seen = s.watch_saw_started?;
        Self::record(&mut t, pod, seen)
    }

    /// The pod is gone from this node.
    pub fn forget(&self, uid: &str) {
        let mut t = self.lock();
        t.pods.remove(uid);
        t.excluded.remove(uid);
    }

    #[cfg(test)]
    fn tracked(&self) -> usize {
        self.lock().pods.len()
    }
}

/// Every container (not the init containers) has been started and runs.
fn all_started(status: Option<&PodStatus>) -> bool {
    let Some(cs) = status.and_then(|s| s.container_statuses.as_ref()) else { return false };
    !cs.is_empty()
        && cs.iter().all(|c| c.state.as_ref().and_then(|s| s.running.as_ref()).is_some_and(|r| r.started_at.is_some()))
}

/// The scheduler could not place it at once (PodScheduled False at some point).
fn unschedulable(pod: &Pod) -> bool {
    let conds = pod.status.as_ref().and_then(|s| s.conditions.as_ref());
    conditions::status(conds, "PodScheduled") == Some("False")
}

/// A pod with a volume whose setup depends on more than the node (a claim, a network disk) is
/// stateful; the SLI counts stateless pods only.
fn is_stateful(pod: &Pod) -> bool {
    pod::spec(pod).volumes.iter().flatten().any(|v| !is_stateless(v))
}

fn is_stateless(v: &Volume) -> bool {
    v.secret.is_some()
        || v.config_map.is_some()
        || v.downward_api.is_some()
        || v.empty_dir.is_some()
        || v.projected.is_some()
        || v.git_repo.is_some()
        || v.ephemeral.is_some()
        || v.csi.as_ref().is_some_and(|c| {
            c.volume_attributes.as_ref().and_then(|a| a.get("csi.storage.k8s.io/ephemeral")).map(String::as_str)
                == Some("true")
        })
}

/// How much of `[from, to]` the intervals cover, overlaps counted once.
fn union_within(intervals: &[(SystemTime, SystemTime)], from: SystemTime, to: SystemTime) -> Duration {
    let mut clipped: Vec<(SystemTime, SystemTime)> =
        intervals.iter().map(|&(a, b)| (a.max(from), b.min(to))).filter(|(a, b)| a < b).collect();
    clipped.sort();
    let mut total = Duration::ZERO;
    let mut current: Option<(SystemTime, SystemTime)> = None;
    for (a, b) in clipped {
        current = match current {
            Some((ca, cb)) if a <= cb => Some((ca, cb.max(b))),
            Some((ca, cb)) => {
                total += cb.duration_since(ca).unwrap_or_default();
                Some((a, b))
            }
            None => Some((a, b)),
        };
    }
    if let Some((a, b)) = current {
        total += b.duration_since(a).unwrap_or_default();
    }
    total
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn t(secs: u64) -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000 + secs)
    }

    fn pod(created: u64, status: serde_json::Value, volumes: serde_json::Value) -> Pod {
        let created = time::format_rfc3339(t(created));
        serde_json::from_value(json!({
            "metadata": {"name": "p", "namespace": "ns", "uid": "u1", "creationTimestamp": created},
            "spec": {"containers": [{"name": "c"}], "volumes": volumes},
            "status": status,
        }))
        .unwrap()
    }

    fn running() -> serde_json::Value {
        json!({"phase": "Running", "startTime": "2023-11-14T22:13:20Z", "containerStatuses": [
            {"name": "c", "image": "i", "imageID": "", "ready": true, "restartCount": 0,
             "state": {"running": {"startedAt": "2023-11-14T22:13:25Z"}}}]})
    }

    fn status(v: serde_json::Value) -> PodStatus {
        serde_json::from_value(v).unwrap()
    }

    #[test]
    fn overlapping_exclusions_count_once_and_stay_within_the_window() {
        let iv = [(t(2), t(5)), (t(4), t(8)), (t(10), t(11)), (t(0), t(1))];
        assert_eq!(union_within(&iv, t(1), t(20)), Duration::from_secs(7));
        assert_eq!(union_within(&iv, t(3), t(10)), Duration::from_secs(5));
        assert_eq!(union_within(&[], t(0), t(9)), Duration::ZERO);
    }

    #[test]
    fn the_sli_leaves_out_pulls_and_init_containers() {
        let tr = PodStartupLatencyTracker::default();
        let pending = json!({"phase": "Pending"});
        // Created at 0, first seen by the agent: tracked.
        assert_eq!(tr.observed_on_watch(&pod(0, pending.clone(), json!([])), t(1)), None);
        assert_eq!(tr.tracked(), 1);
        // A pull of 3 s now (its start and end are taken from the clock) and an init container
        // that ran 4 s in the past.
        tr.image_pull_started("u1");
        std::thread::sleep(Duration::from_millis(20));
        tr.image_pull_finished("u1");
        let now = SystemTime::now();
        let (pull_start, pull_end) = {
            let g = tr.lock();
            g.pods["u1"].excluded[0]
        };
        assert!(pull_end > pull_start && pull_end <= now);
        tr.status_updated(&pod(0, pending.clone(), json!([])), &status(pending.clone()));
        assert_eq!(tr.observed_on_watch(&pod(0, pending, json!([])), now), None, "no container started yet");
        tr.init_container_started("u1", now - Duration::from_secs(6));
        tr.init_container_finished("u1", now - Duration::from_secs(2));
        assert_eq!(tr.status_updated(&pod(0, running(), json!([])), &status(running())), None, "not yet watched");
        let seen = now + Duration::from_secs(1);
        let o = tr.observed_on_watch(&pod(0, running(), json!([])), seen).expect("observed");
        let total = seen.duration_since(t(0)).unwrap();
        assert_eq!(o.total, total);
        let pulled = pull_end.duration_since(pull_start).unwrap();
        assert_eq!(o.sli, total - pulled - Duration::from_secs(4));
        assert!(!o.stateful);
        // Once only.
        assert_eq!(tr.observed_on_watch(&pod(0, running(), json!([])), seen), None);
        tr.forget("u1");
        assert_eq!(tr.tracked(), 0);
    }

    #[test]
    fn pods_started_before_or_unschedulable_or_finished_are_not_tracked() {
        let tr = PodStartupLatencyTracker::default();
        // Already started (an earlier agent did it).
        tr.observed_on_watch(&pod(0, running(), json!([])), t(9));
        assert_eq!(tr.tracked(), 0);
        // Unschedulable once: never again.
        let unsched = json!({"phase": "Pending", "conditions": [{"type": "PodScheduled", "status": "False"}]});
        tr.observed_on_watch(&pod(0, unsched, json!([])), t(1));
        tr.observed_on_watch(&pod(0, json!({"phase": "Pending"}), json!([])), t(2));
        assert_eq!(tr.tracked(), 0);
        tr.forget("u1");
        tr.observed_on_watch(&pod(0, json!({"phase": "Pending"}), json!([])), t(2));
        assert_eq!(tr.tracked(), 1);
        tr.observed_on_watch(&pod(0, json!({"phase": "Succeeded"}), json!([])), t(3));
        assert_eq!(tr.tracked(), 0, "a finished pod is no longer tracked");
    }

    #[test]
    fn stateful_pods_count_in_the_total_only() {
        let tr = PodStartupLatencyTracker::default();
        let claim = json!([{"name": "data", "persistentVolumeClaim": {"claimName": "c"}}]);
        tr.observed_on_watch(&pod(0, json!({"phase": "Pending"}), claim.clone()), t(1));
        tr.status_updated(&pod(0, running(), claim.clone()), &status(running()));
        let o = tr.observed_on_watch(&pod(0, running(), claim), t(7)).unwrap();
        assert!(o.stateful);
        assert_eq!(o.sli, Duration::from_secs(7));
        let stateless = json!([{"name": "a", "emptyDir": {}}, {"name": "b", "projected": {"sources": []}},
            {"name": "c", "configMap": {"name": "x"}}]);
        assert!(!is_stateful(&pod(0, json!({}), stateless)));
    }

    #[test]
    fn a_watch_that_shows_the_write_before_its_answer_still_counts() {
        let tr = PodStartupLatencyTracker::default();
        tr.observed_on_watch(&pod(0, json!({"phase": "Pending"}), json!([])), t(1));
        // The watch delivers the kubelet's write at 4 s; the write's answer comes after.
        assert_eq!(tr.observed_on_watch(&pod(0, running(), json!([])), t(4)), None);
        let o = tr.status_updated(&pod(0, running(), json!([])), &status(running())).expect("observed");
        assert_eq!(o.total, Duration::from_secs(4), "measured to when the watch showed it");
        assert_eq!(tr.observed_on_watch(&pod(0, running(), json!([])), t(5)), None, "once");
    }
}
