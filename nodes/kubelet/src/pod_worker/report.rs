//! The status step: the pod's status from what the worker knows, written to the API server
//! only when it changed (or when the API's Ready disagrees with the kubelet's).

use super::{PodWorker, RunState};
use crate::status::{self, ContainerState, ContainerView, PodView};
use k8s_openapi::api::core::v1::Container;
use kubus_apimachinery::resources::qos_class;
use kubus_apimachinery::{conditions, pod};

impl PodWorker {
    fn views(&self, specs: &[Container]) -> Vec<ContainerView> {
        // Upstream's default waiting reason: every container of a pod with init containers
        // waits in PodInitializing (kubectl shows it), the others in ContainerCreating.
        let has_init = pod::spec(&self.pod).init_containers.as_ref().is_some_and(|a| !a.is_empty());
        let not_started = if has_init { "PodInitializing" } else { "ContainerCreating" };
        specs
            .iter()
            .map(|c| {
                let (name, image) = (c.name.as_str(), c.image.as_deref().unwrap_or(""));
                let Some(rec) = self.records.get(name) else {
                    return ContainerView::waiting(name, image, not_started);
                };
                let mut v = ContainerView::waiting(name, image, "ContainerCreating");
                v.restart_count = rec.restarts;
                v.last_state = rec.last.clone();
                if let Some(run) = &rec.current {
                    v.container_id = Some(format!("kubus://{}", run.id));
                    v.image = run.image.clone();
                    v.image_id = run.image_id.clone();
                    v.ready = run.ready;
                    v.started = *run.started.borrow() && run.is_running();
                    match &run.state {
                        RunState::Running { started_at } => {
                            v.state = ContainerState::Running { started_at: *started_at }
                        }
                        RunState::Exited(t) => {
                            v.state = ContainerState::Terminated(t.clone());
                            // The exit being shown is the current state, not the last one.
                            if rec.last.as_ref().map(|l| &l.container_id) == Some(&t.container_id) {
                                v.last_state = None;
                            }
                        }
                    }
                }
                if let Some((reason, message)) = &rec.waiting {
                    // Waiting to run again: the run that ended is the last state.
                    if let Some(RunState::Exited(t)) = rec.state() {
                        v.last_state = Some(t.clone());
                    }
                    v.state = ContainerState::Waiting { reason: reason.clone(), message: message.clone() };
                    v.ready = false;
                    v.started = false;
                }
                v
            })
            .collect()
    }

    /// Writes the status when it changed.
    pub(super) async fn report(&mut self) {
        let spec = pod::spec(&self.pod);
        let init = self.views(spec.init_containers.as_deref().unwrap_or(&[]));
        let containers = self.views(&spec.containers);
        let ips = self.pod_ips();
        let host_ip = self.host.node_ip.to_string();
        let view = PodView {
            pod: &self.pod,
            init: &init,
            containers: &containers,
            sandbox_ready: self.sandbox.is_some(),
            pod_ips: &ips,
            host_ip: &host_ip,
            start_time: self.start_time,
            qos: qos_class(&self.pod),
            failed: self.failed,
            failure: self.failure.as_ref(),
        };
        let status = status::pod_status(&view);
        self.handle.update(
            &self.pod,
            &ips,
            self.records
                .iter()
                .filter_map(|(n, r)| r.current.as_ref().map(|c| (n.clone(), c.id.clone(), c.attempt, c.is_running())))
                .collect(),
        );
        // Someone else may have changed what the API says (the node lifecycle controller marks
        // pods of an unreachable node not ready): the kubelet's view wins once it is back.
        let api = self.pod.status.as_ref().and_then(|s| s.conditions.as_ref());
        let api_agrees =
            conditions::status(api, pod::READY) == conditions::status(status.conditions.as_ref(), pod::READY);
        if self.last_status.as_ref() == Some(&status) && api_agrees {
            return;
        }
        match self.host.api.patch_status(&self.pod, &status).await {
            Ok(()) => {
                self.host.startup_latency.status_updated(&self.pod, &status);
                self.last_status = Some(status)
            }
            Err(e) if e.is_not_found() => self.removed = true,
            Err(e) => tracing::debug!(error = %e, "status not written; retrying on the next sync"),
        }
    }
}
