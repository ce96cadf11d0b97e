//! A running container's watchers: a task that waits for its exit, and its probers. Their
//! results come back to the worker as messages: an exit becomes the run's terminated state; a
//! readiness result its readiness; a failed liveness or startup probe restarts it.

use super::{PodWorker, Run, RunState, WorkerMsg};
use crate::handlers;
use crate::probes::{self, ProbeKind, ProbeUpdate};
use crate::status::{self, Terminated};
use k8s_openapi::api::core::v1::Container;
use kubus_apimachinery::{pod, ObjectExt};
use kubus_container_runtime::{ContainerState, ExitInfo};
use kubus_controller_runtime::events::EventType;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

/// The terminated state of a run from what the runtime recorded of its exit.
pub(super) fn terminated_from(id: &str, e: &ExitInfo) -> Terminated {
    Terminated {
        exit_code: e.code,
        signal: e.signal,
        reason: e.reason.as_str().into(),
        message: String::new(),
        started_at: e.started_at,
        finished_at: e.finished_at,
        container_id: format!("kubus://{id}"),
    }
}

impl PodWorker {
    /// Waits for the container's exit and tells the worker.
    pub(super) fn watch_exit(&self, id: &str) {
        let (runtime, tx, id) = (self.host.runtime.clone(), self.tx.clone(), id.to_string());
        tokio::spawn(async move {
            // A broken connection to the shim is retried: the exit must not be missed.
            loop {
                match runtime.wait(&id).await {
                    Ok(_) => break,
                    Err(e) => {
                        tracing::debug!(container = %id, error = %e, "waiting for the container failed; retrying");
                        if runtime.state(&id).await.is_err() {
                            break;
                        }
                        tokio::time::sleep(Duration::from_secs(1)).await;
                    }
                }
            }
            let _ = tx.send(WorkerMsg::Exited { id });
        });
    }

    /// Records a run's exit (with its termination message) as its state.
    pub(super) async fn on_exit(&mut self, id: &str) {
        let Some((name, _)) = self.records.iter().find(|(_, r)| r.current.as_ref().is_some_and(|c| c.id == id)) else {
            return;
        };
        let name = name.clone();
        let fallback_to_logs = self
            .container_spec(&name)
            .and_then(|c| c.termination_message_policy.as_deref())
            .is_some_and(|p| p == "FallbackToLogsOnError");
        let state = self.host.runtime.state(id).await;
        let rec = self.records.get_mut(&name).expect("found above");
        let run = rec.current.as_mut().expect("found above");
        let log_path = self
            .host
            .pod_log_dir(self.pod.namespace_or_default(), self.pod.name(), &self.uid)
            .join(&name)
            .join(format!("{}.log", run.attempt));
        run.stop_probes();
        run.ready = false;
        if let RunState::Running { started_at } = run.state {
            let mut t = match state {
                Ok(ContainerState::Exited(e)) => terminated_from(id, &e),
                other => Terminated {
                    exit_code: 137,
                    signal: None,
                    reason: "ContainerStatusUnknown".into(),
                    message: format!("The container could not be located when the pod was terminated: {other:?}"),
                    started_at: Some(started_at),
                    finished_at: SystemTime::now(),
                    container_id: format!("kubus://{id}"),
                },
            };
            t.started_at = t.started_at.or(Some(started_at));
            let file = std::fs::read(run.dir.join("termination-log")).unwrap_or_default();
            let log = || std::fs::read(&log_path).unwrap_or_default();
            t.message = status::termination_message(&file, fallback_to_logs, t.exit_code, log);
            tracing::info!(container = %name, exit_code = t.exit_code, reason = %t.reason, "container exited");
            let finished_at = t.finished_at;
            run.state = RunState::Exited(t);
            let init = pod::spec(&self.pod).init_containers.iter().flatten().find(|c| c.name == name);
            if init.is_some_and(|c| !super::sync::is_sidecar(c)) {
                self.host.startup_latency.init_container_finished(&self.uid, finished_at);
            }
        }
    }

    /// What the container's probes and hooks run against: the pod's address, the container's
    /// ports, exec in this run.
    pub(super) fn handler_target(&self, name: &str, c: &Container, id: &str) -> handlers::Target {
        let ips = self.pod_ips();
        let runtime = self.host.runtime.clone();
        let run_id = id.to_string();
        let exec: handlers::ExecFn = Arc::new(move |argv, timeout| {
            let (runtime, id) = (runtime.clone(), run_id.clone());
            Box::pin(async move { runtime.exec_sync(&id, argv, timeout).await.map_err(|e| e.to_string()) })
        });
        handlers::Target {
            pod: (self.ns().to_string(), self.name().to_string(), self.uid.to_string()),
            container: name.to_string(),
            container_id: id.to_string(),
            pod_ip: ips.first().and_then(|i| i.parse().ok()),
            ports: c.ports.clone().unwrap_or_default(),
            exec,
        }
    }

    /// Starts the run's probers; without a startup probe it counts as started, without a
    /// readiness probe as ready.
    pub(super) fn start_probes(&self, name: &str, c: &Container, run: &mut Run) {
        let has_startup = c.startup_probe.is_some();
        run.started.send_replace(!has_startup);
        // Without a readiness probe a running container is ready (once started).
        run.ready = !has_startup && c.readiness_probe.is_none();
        for kind in ProbeKind::ALL {
            let Some(probe) = kind.of(c) else { continue };
            let target = self.handler_target(name, c, &run.id);
            run.probes.push(probes::spawn(kind, probe.clone(), target, run.started.subscribe(), self.probe_tx.clone()));
        }
    }

    /// A probe crossed its threshold.
    pub(super) async fn on_probe(&mut self, p: ProbeUpdate) {
        let no_readiness = self.container_spec(&p.container).is_some_and(|c| c.readiness_probe.is_none());
        let grace = self.grace_period();
        let Some(rec) = self.records.get_mut(&p.container) else { return };
        let Some(run) = rec.current.as_mut().filter(|r| r.id == p.container_id) else { return };
        if !run.is_running() {
            return;
        }
        match (p.kind, p.success) {
            (ProbeKind::Readiness, ok) => {
                run.ready = ok;
                if !ok {
                    let msg = format!("Readiness probe failed: {}", p.message);
                    self.event(EventType::Warning, "Unhealthy", &msg).await;
                }
            }
            (ProbeKind::Startup, true) => {
                run.started.send_replace(true);
                if no_readiness {
                    run.ready = true;
                }
            }
            (kind, false) => {
                let id = run.id.clone();
                rec.killed_by_us = true;
                let msg = format!("{} probe failed: {}", kind.title(), p.message);
                self.event(EventType::Warning, "Unhealthy", &msg).await;
                let why = format!(
                    "Container {} failed {} probe, will be restarted",
                    p.container,
                    kind.title().to_lowercase()
                );
                self.event(EventType::Normal, "Killing", &why).await;
                self.stop_container(&p.container, &id, grace).await;
            }
            (ProbeKind::Liveness, true) => {}
        }
    }
}
