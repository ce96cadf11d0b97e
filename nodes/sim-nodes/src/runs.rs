//! Pods that are meant to finish. A pod whose restartPolicy is Never or OnFailure and that
//! carries `sim.kubus.io/run-seconds` runs on a simulated node for that long, then its
//! containers exit with `sim.kubus.io/exit-code` (default 0): the pod Succeeds, or Fails, or
//! (OnFailure, non-zero exit) its containers restart and run as long again, as the kubelet
//! reports them. Every run's end is one entry of one [`Timers`] delay queue, so thousands of
//! running pods cost a map entry each, not a task or a timer each.

use k8s_openapi::api::core::v1::{
    ContainerState, ContainerStateRunning, ContainerStateTerminated, ContainerStatus, Pod, PodCondition, PodStatus,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kubus_apimachinery::conditions::transition_time;
use kubus_apimachinery::{pod as podutil, ObjectExt};
use std::collections::{BTreeMap, HashMap};
use std::hash::Hash;
use std::sync::Mutex;
use std::time::{Duration, SystemTime};
use tokio::sync::Notify;
use tokio::time::Instant;

/// How long a finishing pod's containers run, in seconds (a decimal number).
pub const RUN_SECONDS: &str = "sim.kubus.io/run-seconds";
/// The exit code its containers end with (an integer; 0 when absent).
pub const EXIT_CODE: &str = "sim.kubus.io/exit-code";

/// What a pod asks of its simulated run.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RunPlan {
    pub run_for: Duration,
    pub exit_code: i32,
    /// restartPolicy OnFailure: a non-zero exit restarts the containers.
    pub on_failure: bool,
}

impl RunPlan {
    /// The plan of a pod that is meant to finish; None for pods that run until deleted
    /// (restartPolicy Always, the default, or no valid run-seconds annotation).
    pub fn of(pod: &Pod) -> Option<RunPlan> {
        let on_failure = match podutil::spec(pod).restart_policy.as_deref() {
            Some("Never") => false,
            Some("OnFailure") => true,
            _ => return None,
        };
        let secs = pod.annotation(RUN_SECONDS)?;
        let run_for = secs.trim().parse::<f64>().ok().and_then(|s| Duration::try_from_secs_f64(s).ok());
        let exit_code = match pod.annotation(EXIT_CODE) {
            None => Some(0),
            Some(c) => c.trim().parse::<i32>().ok(),
        };
        match (run_for, exit_code) {
            (Some(run_for), Some(exit_code)) => Some(RunPlan { run_for, exit_code, on_failure }),
            _ => {
                tracing::debug!(pod = %pod.name(), "simulated run annotations are not numbers: the pod runs until deleted");
                None
            }
        }
    }

    /// Whether the end of a run restarts the containers rather than ending the pod.
    pub fn restarts(&self) -> bool {
        self.on_failure && self.exit_code != 0
    }
}

/// One pod's current run on its simulated node.
#[derive(Debug, Clone)]
pub struct Run {
    pub key: (String, String),
    pub node: String,
    pub plan: RunPlan,
    /// When the current run of its containers started, as the status shows it.
    pub started_at: Time,
    pub ends: Instant,
    pub restarts: i32,
    /// The terminal status is written. The entry stays until the informer shows that status,
    /// so that an older view of the pod (still Running) does not start a run again.
    pub finished: bool,
}

impl Run {
    /// A run that starts now (`started_at`, as just written to the pod's status).
    pub fn start(pod: &Pod, node: &str, plan: RunPlan, started_at: Time) -> Run {
        Run {
            key: pod.key(),
            node: node.to_string(),
            plan,
            started_at,
            ends: Instant::now() + plan.run_for,
            restarts: 0,
            finished: false,
        }
    }

    /// The run of a pod already Running when this process first sees it (the simulated nodes
    /// restarted): it started when its first container's status says, and ends `run_for`
    /// after that.
    pub fn resume(pod: &Pod, node: &str, plan: RunPlan) -> Run {
        let status = pod.status.as_ref();
        let first = status.and_then(|s| s.container_statuses.as_ref()).and_then(|cs| cs.first());
        let started_at = first
            .and_then(|c| c.state.as_ref()?.running.as_ref()?.started_at.clone())
            .or_else(|| status.and_then(|s| s.start_time.clone()))
            .unwrap_or_else(kubus_apimachinery::time::now);
        let ran =
            SystemTime::now().duration_since(kubus_apimachinery::time::system_time(&started_at)).unwrap_or_default();
        Run {
            key: pod.key(),
            node: node.to_string(),
            plan,
            started_at,
            ends: Instant::now() + plan.run_for.saturating_sub(ran),
            restarts: first.map_or(0, |c| c.restart_count),
            finished: false,
        }
    }
}

/// The last state of a container whose run ended.
fn terminated(run: &Run, container_id: String, now: &Time) -> ContainerStateTerminated {
    let code = run.plan.exit_code;
    ContainerStateTerminated {
        exit_code: code,
        reason: Some(if code == 0 { "Completed" } else { "Error" }.into()),
        started_at: Some(run.started_at.clone()),
        finished_at: Some(now.clone()),
        container_id: Some(container_id),
        ..Default::default()
    }
}

fn container_id(pod: &Pod, container: &str) -> String {
    format!("sim://{}/{}/{container}", pod.namespace(), pod.name())
}

/// The status once the pod's containers exited at `now` for good: Succeeded (exit 0) or Failed,
/// its containers terminated, not ready, and its sandbox gone (PodReadyToStartContainers False);
/// the conditions' reasons are upstream kubelet's for a terminal phase. Addresses, start time
/// and PodScheduled stay as they were.
pub fn finished_status(pod: &Pod, run: &Run, now: &Time) -> PodStatus {
    let previous = pod.status.clone().unwrap_or_default();
    let before: &[PodCondition] = previous.conditions.as_deref().unwrap_or(&[]);
    let succeeded = run.plan.exit_code == 0;
    let (phase, not_ready) = if succeeded { ("Succeeded", "PodCompleted") } else { ("Failed", "PodFailed") };
    let cond = |type_: &str, status: &str, reason: Option<&str>| PodCondition {
        type_: type_.into(),
        status: status.into(),
        reason: reason.map(String::from),
        last_transition_time: Some(transition_time(before, type_, status, now)),
        ..Default::default()
    };
    let mut conditions = vec![
        cond("PodReadyToStartContainers", "False", None),
        cond(podutil::INITIALIZED, "True", succeeded.then_some("PodCompleted")),
        cond(podutil::READY, "False", Some(not_ready)),
        cond(podutil::CONTAINERS_READY, "False", Some(not_ready)),
    ];
    conditions.extend(before.iter().find(|c| c.type_ == podutil::SCHEDULED).cloned());
    let last = |name: &str| {
        previous.container_statuses.iter().flatten().find(|c| c.name == name).and_then(|c| c.last_state.clone())
    };
    let statuses = podutil::spec(pod)
        .containers
        .iter()
        .map(|c| {
            let id = container_id(pod, &c.name);
            ContainerStatus {
                name: c.name.clone(),
                image: c.image.clone().unwrap_or_default(),
                ready: false,
                started: Some(false),
                restart_count: run.restarts,
                state: Some(ContainerState {
                    terminated: Some(terminated(run, id.clone(), now)),
                    ..Default::default()
                }),
                last_state: last(&c.name),
                container_id: Some(id),
                ..Default::default()
            }
        })
        .collect();
    PodStatus {
        phase: Some(phase.into()),
        conditions: Some(conditions),
        container_statuses: Some(statuses),
        ..previous
    }
}

/// The status once the containers exited non-zero at `now` under restartPolicy OnFailure and
/// started again at once: still Running and ready, one more restart, the run that ended as
/// each container's last state.
pub fn restarted_status(pod: &Pod, run: &Run, now: &Time) -> PodStatus {
    let previous = pod.status.clone().unwrap_or_default();
    let statuses = podutil::spec(pod)
        .containers
        .iter()
        .map(|c| {
            let id = container_id(pod, &c.name);
            ContainerStatus {
                name: c.name.clone(),
                image: c.image.clone().unwrap_or_default(),
                ready: true,
                started: Some(true),
                restart_count: run.restarts + 1,
                state: Some(ContainerState {
                    running: Some(ContainerStateRunning { started_at: Some(now.clone()) }),
                    ..Default::default()
                }),
                last_state: Some(ContainerState {
                    terminated: Some(terminated(run, id.clone(), now)),
                    ..Default::default()
                }),
                container_id: Some(id),
                ..Default::default()
            }
        })
        .collect();
    PodStatus { phase: Some("Running".into()), container_statuses: Some(statuses), ..previous }
}

/// A delay queue: at most one deadline per key, set, moved and cancelled in O(log n), and one
/// consumer that sleeps until the earliest. Cancelling frees the entry at once (no stale
/// entries wait in a heap for their time).
pub struct Timers<K> {
    state: Mutex<TimerState<K>>,
    wake: Notify,
    gauge: Option<prometheus::IntGauge>,
}

struct TimerState<K> {
    order: BTreeMap<(Instant, u64), K>,
    deadlines: HashMap<K, (Instant, u64)>,
    seq: u64,
}

impl<K: Clone + Eq + Hash> Timers<K> {
    /// A queue whose size `gauge` follows, if given.
    pub fn new(gauge: Option<prometheus::IntGauge>) -> Self {
        Timers {
            state: Mutex::new(TimerState { order: BTreeMap::new(), deadlines: HashMap::new(), seq: 0 }),
            wake: Notify::new(),
            gauge,
        }
    }

    fn measured(&self, s: &TimerState<K>) {
        if let Some(g) = &self.gauge {
            g.set(s.deadlines.len() as i64);
        }
    }

    /// Sets the one deadline of `key` (replacing any earlier or later one).
    pub fn set(&self, key: K, at: Instant) {
        let mut s = self.state.lock().expect("timers lock");
        if let Some(old) = s.deadlines.remove(&key) {
            s.order.remove(&old);
        }
        let id = (at, s.seq);
        s.seq += 1;
        s.order.insert(id, key.clone());
        s.deadlines.insert(key, id);
        let earliest = s.order.first_key_value().is_some_and(|(first, _)| *first == id);
        self.measured(&s);
        drop(s);
        if earliest {
            self.wake.notify_one();
        }
    }

    /// Removes the deadline of `key`; whether it had one.
    pub fn cancel(&self, key: &K) -> bool {
        let mut s = self.state.lock().expect("timers lock");
        let had = match s.deadlines.remove(key) {
            Some(id) => s.order.remove(&id).is_some(),
            None => false,
        };
        self.measured(&s);
        had
    }

    /// Keys with a deadline.
    pub fn len(&self) -> usize {
        self.state.lock().expect("timers lock").deadlines.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Waits until at least one deadline has passed; the keys due, earliest first. One
    /// consumer only (a second would steal the first one's wake-ups).
    pub async fn next(&self) -> Vec<K> {
        loop {
            let first = {
                let mut s = self.state.lock().expect("timers lock");
                let now = Instant::now();
                let mut due = Vec::new();
                while let Some(entry) = s.order.first_entry() {
                    if entry.key().0 > now {
                        break;
                    }
                    let key = entry.remove();
                    s.deadlines.remove(&key);
                    due.push(key);
                }
                if !due.is_empty() {
                    self.measured(&s);
                    return due;
                }
                s.order.first_key_value().map(|((at, _), _)| *at)
            };
            // A deadline set meanwhile leaves a permit in `wake`, so it is not missed.
            match first {
                Some(at) => {
                    tokio::select! {
                        _ = tokio::time::sleep_until(at) => {}
                        _ = self.wake.notified() => {}
                    }
                }
                None => self.wake.notified().await,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pod(policy: Option<&str>, annotations: serde_json::Value) -> Pod {
        serde_json::from_value(json!({"metadata": {"namespace": "ns", "name": "job-1", "annotations": annotations},
            "spec": {"nodeName": "sim-0", "restartPolicy": policy, "containers": [{"name": "main", "image": "busybox"}]}}))
        .unwrap()
    }

    #[test]
    fn only_pods_meant_to_finish_have_a_plan() {
        let plan = RunPlan::of(&pod(Some("Never"), json!({RUN_SECONDS: "1.5"}))).unwrap();
        assert_eq!(plan, RunPlan { run_for: Duration::from_millis(1500), exit_code: 0, on_failure: false });
        let plan = RunPlan::of(&pod(Some("OnFailure"), json!({RUN_SECONDS: "0", EXIT_CODE: "3"}))).unwrap();
        assert_eq!(plan, RunPlan { run_for: Duration::ZERO, exit_code: 3, on_failure: true });
        assert!(plan.restarts());
        // Always (explicit or by default) runs until deleted, as does a pod without the
        // annotation or with one that is not a number.
        assert_eq!(RunPlan::of(&pod(Some("Always"), json!({RUN_SECONDS: "1"}))), None);
        assert_eq!(RunPlan::of(&pod(None, json!({RUN_SECONDS: "1"}))), None);
        assert_eq!(RunPlan::of(&pod(Some("Never"), json!({}))), None);
        assert_eq!(RunPlan::of(&pod(Some("Never"), json!({RUN_SECONDS: "soon"}))), None);
        assert_eq!(RunPlan::of(&pod(Some("Never"), json!({RUN_SECONDS: "-1"}))), None);
        assert_eq!(RunPlan::of(&pod(Some("Never"), json!({RUN_SECONDS: "1", EXIT_CODE: "x"}))), None);
    }

    /// A pod as the simulated node made it Running at `started`.
    fn running(policy: &str, annotations: serde_json::Value, started: &Time) -> Pod {
        let mut p = pod(Some(policy), annotations);
        p.status = Some(crate::running_status(&p, "10.128.0.3".into(), "172.16.0.1".into(), started));
        p
    }

    fn times() -> (Time, Time, serde_json::Value, serde_json::Value) {
        let started = kubus_apimachinery::time::time(SystemTime::now() - Duration::from_secs(5));
        let now = kubus_apimachinery::time::now();
        let (s, n) = (serde_json::to_value(&started).unwrap(), serde_json::to_value(&now).unwrap());
        (started, now, s, n)
    }

    #[test]
    fn a_run_that_exits_zero_succeeds_as_the_kubelet_reports_it() {
        let (started, now, s, n) = times();
        let p = running("Never", json!({RUN_SECONDS: "5"}), &started);
        let run = Run::start(&p, "sim-0", RunPlan::of(&p).unwrap(), started.clone());
        let status = serde_json::to_value(finished_status(&p, &run, &now)).unwrap();
        assert_eq!(
            status,
            json!({"phase": "Succeeded", "podIP": "10.128.0.3", "podIPs": [{"ip": "10.128.0.3"}],
                "hostIP": "172.16.0.1", "hostIPs": [{"ip": "172.16.0.1"}], "startTime": s,
                "conditions": [
                    {"type": "PodReadyToStartContainers", "status": "False", "lastTransitionTime": n},
                    {"type": "Initialized", "status": "True", "reason": "PodCompleted", "lastTransitionTime": s},
                    {"type": "Ready", "status": "False", "reason": "PodCompleted", "lastTransitionTime": n},
                    {"type": "ContainersReady", "status": "False", "reason": "PodCompleted", "lastTransitionTime": n},
                    {"type": "PodScheduled", "status": "True", "lastTransitionTime": s},
                ],
                "containerStatuses": [{"name": "main", "image": "busybox", "imageID": "", "ready": false,
                    "started": false, "restartCount": 0, "containerID": "sim://ns/job-1/main",
                    "state": {"terminated": {"exitCode": 0, "reason": "Completed", "startedAt": s,
                        "finishedAt": n, "containerID": "sim://ns/job-1/main"}}}]})
        );
    }

    #[test]
    fn a_non_zero_exit_fails_under_never() {
        let (started, now, s, n) = times();
        let p = running("Never", json!({RUN_SECONDS: "5", EXIT_CODE: "2"}), &started);
        let run = Run::start(&p, "sim-0", RunPlan::of(&p).unwrap(), started.clone());
        let status = serde_json::to_value(finished_status(&p, &run, &now)).unwrap();
        assert_eq!(status["phase"], "Failed");
        let reasons: Vec<(&str, &str, Option<&str>)> = status["conditions"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| (c["type"].as_str().unwrap(), c["status"].as_str().unwrap(), c["reason"].as_str()))
            .collect();
        assert_eq!(
            reasons,
            [
                ("PodReadyToStartContainers", "False", None),
                ("Initialized", "True", None),
                ("Ready", "False", Some("PodFailed")),
                ("ContainersReady", "False", Some("PodFailed")),
                ("PodScheduled", "True", None),
            ]
        );
        assert_eq!(
            status["containerStatuses"][0]["state"],
            json!({"terminated": {"exitCode": 2, "reason": "Error", "startedAt": s, "finishedAt": n,
                "containerID": "sim://ns/job-1/main"}})
        );
    }

    #[test]
    fn a_non_zero_exit_restarts_under_on_failure() {
        let (started, now, s, n) = times();
        let p = running("OnFailure", json!({RUN_SECONDS: "5", EXIT_CODE: "1"}), &started);
        let run = Run::start(&p, "sim-0", RunPlan::of(&p).unwrap(), started.clone());
        let status = restarted_status(&p, &run, &now);
        let v = serde_json::to_value(&status).unwrap();
        assert_eq!(v["phase"], "Running");
        assert_eq!(v["conditions"], serde_json::to_value(&p.status.as_ref().unwrap().conditions).unwrap());
        assert_eq!(
            v["containerStatuses"][0],
            json!({"name": "main", "image": "busybox", "imageID": "", "ready": true, "started": true,
                "restartCount": 1, "containerID": "sim://ns/job-1/main",
                "state": {"running": {"startedAt": n}},
                "lastState": {"terminated": {"exitCode": 1, "reason": "Error", "startedAt": s, "finishedAt": n,
                    "containerID": "sim://ns/job-1/main"}}})
        );
        // A simulated node that starts again picks the run up where the status says it is.
        let mut again = p.clone();
        again.status = Some(status);
        let resumed = Run::resume(&again, "sim-0", RunPlan::of(&again).unwrap());
        assert_eq!((resumed.restarts, resumed.started_at), (1, now));
        assert!(resumed.ends > Instant::now() + Duration::from_secs(3), "about 5 s left");
    }

    #[tokio::test]
    async fn timers_fire_in_order_once_and_not_when_cancelled() {
        let timers = std::sync::Arc::new(Timers::new(None));
        let t0 = Instant::now();
        let ms = Duration::from_millis;
        timers.set("b", t0 + ms(30));
        timers.set("a", t0 + ms(20));
        timers.set("c", t0 + ms(40));
        // Moved later, and cancelled: neither fires at its first time.
        timers.set("a", t0 + ms(600));
        assert!(timers.cancel(&"c"));
        assert!(!timers.cancel(&"c"));
        assert_eq!(timers.len(), 2);
        assert_eq!(timers.next().await, ["b"]);
        // A deadline set while the consumer sleeps, earlier than the one it sleeps for.
        let consumer = tokio::spawn({
            let timers = timers.clone();
            async move { timers.next().await }
        });
        tokio::task::yield_now().await;
        timers.set("d", Instant::now() + ms(10));
        assert_eq!(consumer.await.unwrap(), ["d"]);
        assert_eq!(timers.next().await, ["a"]);
        assert!(timers.is_empty());
    }

    #[tokio::test]
    async fn many_timers_due_together_come_out_at_once() {
        let timers = Timers::new(None);
        let at = Instant::now() + Duration::from_millis(10);
        for i in 0..10_000 {
            timers.set(i, at);
        }
        let due = timers.next().await;
        assert_eq!(due.len(), 10_000);
        assert_eq!(due[..3], [0, 1, 2]);
        assert!(timers.is_empty());
    }
}
