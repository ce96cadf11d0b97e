//! Container probes (exec, httpGet over HTTP or HTTPS, tcpSocket, grpc: run by [`handlers`],
//! which lifecycle hooks share) with upstream's timing: initialDelaySeconds, periodSeconds,
//! timeoutSeconds, successThreshold, failureThreshold. One prober task per
//! container and probe kind reports each change of its result to the pod worker; liveness and
//! readiness probes wait until the startup probe (if any) has succeeded.

use crate::handlers::{self, Action, Use};
use k8s_openapi::api::core::v1::{Container, Probe};
use prometheus::{register_int_counter_vec, IntCounterVec};
use std::sync::LazyLock;
use std::time::Duration;
use tokio::sync::{mpsc, watch};

/// The kubelet's prober counter, under its name and labels (per container, as upstream).
static PROBES: LazyLock<IntCounterVec> = LazyLock::new(|| {
    register_int_counter_vec!(
        "prober_probe_total",
        "Cumulative number of a liveness, readiness or startup probe for a container by result.",
        &["probe_type", "result", "container", "pod", "namespace", "pod_uid"]
    )
    .expect("registers once")
});

/// Removes a prober's series when it stops (the task is aborted with its container run), so
/// deleted pods leave no series behind.
struct ProbeSeries {
    labels: [String; 5],
}

impl ProbeSeries {
    fn inc(&self, result: &str) {
        let [kind, container, pod, namespace, uid] = &self.labels;
        PROBES.with_label_values(&[kind.as_str(), result, container, pod, namespace, uid]).inc();
    }
}

impl Drop for ProbeSeries {
    fn drop(&mut self) {
        let [kind, container, pod, namespace, uid] = &self.labels;
        for result in ["successful", "failed"] {
            let _ = PROBES.remove_label_values(&[kind.as_str(), result, container, pod, namespace, uid]);
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ProbeKind {
    Startup,
    Liveness,
    Readiness,
}

impl ProbeKind {
    pub const ALL: [ProbeKind; 3] = [ProbeKind::Startup, ProbeKind::Liveness, ProbeKind::Readiness];

    /// The container's probe of this kind.
    pub fn of(self, c: &Container) -> Option<&Probe> {
        match self {
            ProbeKind::Startup => c.startup_probe.as_ref(),
            ProbeKind::Liveness => c.liveness_probe.as_ref(),
            ProbeKind::Readiness => c.readiness_probe.as_ref(),
        }
    }
    /// As events name them ("Liveness probe failed: ...").
    pub fn title(self) -> &'static str {
        match self {
            ProbeKind::Startup => "Startup",
            ProbeKind::Liveness => "Liveness",
            ProbeKind::Readiness => "Readiness",
        }
    }
}

/// A probe's result crossing its threshold.
#[derive(Debug, Clone)]
pub struct ProbeUpdate {
    pub container: String,
    /// Which run of the container this prober watches.
    pub container_id: String,
    pub kind: ProbeKind,
    pub success: bool,
    /// Why it failed (for the Unhealthy event).
    pub message: String,
}

pub use crate::handlers::{ExecFn, Target as ProbeTarget};

/// Runs `probe` until the returned task is aborted.
pub fn spawn(
    kind: ProbeKind,
    probe: Probe,
    target: ProbeTarget,
    mut started: watch::Receiver<bool>,
    updates: mpsc::UnboundedSender<ProbeUpdate>,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let count = |v: Option<i32>, d: u64| v.and_then(|v| u64::try_from(v).ok()).unwrap_or(d);
        let secs = |v: Option<i32>, d: u64| Duration::from_secs(count(v, d));
        let initial = secs(probe.initial_delay_seconds, 0);
        let period = secs(probe.period_seconds, 10).max(Duration::from_secs(1));
        let timeout = secs(probe.timeout_seconds, 1).max(Duration::from_secs(1));
        let success_threshold = count(probe.success_threshold, 1).max(1);
        let failure_threshold = count(probe.failure_threshold, 3).max(1);
        let action = Action::of_probe(&probe);
        let (namespace, pod, uid) = target.pod.clone();
        let series = ProbeSeries { labels: [kind.title().to_string(), target.container.clone(), pod, namespace, uid] };
        if kind != ProbeKind::Startup {
            while !*started.borrow() {
                if started.changed().await.is_err() {
                    return;
                }
            }
        }
        tokio::time::sleep(initial).await;
        let (mut successes, mut failures) = (0u64, 0u64);
        let mut reported: Option<bool> = None;
        let mut tick = tokio::time::interval(period);
        loop {
            tick.tick().await;
            let result = match &action {
                Some(a) => handlers::run(a, &target, Use::Probe, timeout).await,
                None => Err("the probe has no handler".to_string()),
            };
            series.inc(if result.is_ok() { "successful" } else { "failed" });
            let message = match &result {
                Ok(()) => {
                    successes += 1;
                    failures = 0;
                    String::new()
                }
                Err(m) => {
                    failures += 1;
                    successes = 0;
                    m.clone()
                }
            };
            let verdict = if successes >= success_threshold {
                Some(true)
            } else if failures >= failure_threshold {
                Some(false)
            } else {
                None
            };
            // Failures are reported every time they cross the threshold (each one may
            // restart the container); successes once per change.
            let send = match verdict {
                Some(true) => reported != Some(true),
                Some(false) => true,
                None => false,
            };
            if let Some(v) = verdict.filter(|_| send) {
                reported = Some(v);
                if !v {
                    failures = 0;
                }
                let update = ProbeUpdate {
                    container: target.container.clone(),
                    container_id: target.container_id.clone(),
                    kind,
                    success: v,
                    message,
                };
                if updates.send(update).is_err() {
                    return;
                }
                if kind == ProbeKind::Startup && v {
                    return;
                }
            }
        }
    })
}
