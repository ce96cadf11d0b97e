//! Termination, in upstream's order: every running container runs its preStop hook, then gets
//! SIGTERM, then SIGKILL once the grace period (less the hook's time) is over; then the containers are deleted, their rootfs unmounted, the
//! volumes, sandbox (CNI DEL) and pod cgroup removed; finally the API server deletes the pod
//! object (grace 0, precondition on its uid).

use super::{PodWorker, CONTAINER_OPS};
use crate::host::CleanupError;
use kubus_controller_runtime::events::EventType;
use std::time::Duration;
use tokio::time::Instant;

const SIGTERM: i32 = 15;
const SIGKILL: i32 = 9;
/// A pod gone from the API gets this long to stop: nobody waits for it any more.
const REMOVED_GRACE: Duration = Duration::from_secs(2);
/// Upstream's `minimumGracePeriodInSeconds`.
const MIN_GRACE_AFTER_HOOK: Duration = Duration::from_secs(2);

impl PodWorker {
    /// Stops everything and cleans up; the pod object is then deleted if it is being deleted.
    pub(super) async fn terminate(&mut self) {
        let grace = if self.removed { REMOVED_GRACE } else { self.grace_period() };
        let running: Vec<(String, String)> = self
            .records
            .iter()
            .filter_map(|(n, r)| r.current.as_ref().filter(|c| c.is_running()).map(|c| (n.clone(), c.id.clone())))
            .collect();
        let this = &*self;
        let stops = running.iter().map(|(name, id)| async move {
            this.event(EventType::Normal, "Killing", &format!("Stopping container {name}")).await;
            this.stop_container(name, id, grace).await;
        });
        futures::future::join_all(stops).await;
        for (_, id) in &running {
            self.on_exit(id).await;
        }
        if let Err(e) = self.teardown(true).await {
            tracing::warn!(error = %e, "pod cleanup incomplete; retried when the agent restarts");
        }
        if !self.removed {
            self.report().await;
            let _ = self.host.api.delete(&self.pod).await;
        }
        self.handle.clear();
        tracing::info!("pod terminated and cleaned up");
    }

    /// The preStop hook, SIGTERM, the rest of the grace period, then SIGKILL to the whole
    /// container.
    pub(super) async fn stop_container(&self, name: &str, id: &str, grace: Duration) {
        let t0 = Instant::now();
        let hook = self.pre_stop(name, id, grace).await;
        // After a hook, upstream still leaves the container a minimal window to stop on its own.
        let grace = if hook.is_zero() { grace } else { grace.saturating_sub(hook).max(MIN_GRACE_AFTER_HOOK) };
        let runtime = &self.host.runtime;
        let _ = runtime.kill(id, SIGTERM, false).await;
        let waited = tokio::time::timeout(grace, runtime.wait(id)).await;
        if waited.is_err() {
            let _ = runtime.kill(id, SIGKILL, true).await;
            let _ = tokio::time::timeout(Duration::from_secs(10), runtime.wait(id)).await;
        }
        CONTAINER_OPS.with_label_values(&["stop"]).observe(t0.elapsed().as_secs_f64());
    }

    /// Removes containers, rootfs mounts, volumes, the sandbox and the pod cgroup; `logs` also
    /// removes the pod's log directory.
    pub(super) async fn teardown(&mut self, logs: bool) -> Result<(), CleanupError> {
        let mut errors = vec![];
        for rec in self.records.values_mut() {
            if let Some(run) = rec.current.as_mut() {
                run.stop_probes();
                if let Err(e) = self.host.runtime.remove(&run.id).await {
                    errors.push(format!("container {}: {e}", run.id));
                }
                if let Err(e) = self.host.images.unmount_rootfs(&run.dir) {
                    errors.push(format!("rootfs {}: {e}", run.dir.display()));
                }
            }
        }
        let log_dir = logs.then(|| self.log_dir());
        if let Err(CleanupError(e)) = self.host.cleanup_pod(&self.uid, log_dir).await {
            errors.extend(e);
        }
        self.sandbox = None;
        self.volumes = None;
        self.pod_cgroup = false;
        CleanupError::check(errors)
    }
}
