//! The steps of one sync, in upstream's order: the sandbox, the pod cgroup, the volumes, the
//! init containers one after another, then the containers by their restart policy. A step
//! that cannot finish ends the sync; the next wake-up retries from the first step (each one is
//! a no-op once done).

use super::{PodWorker, RunState, SyncError, CONTAINER_OPS, VOLUME_REFRESH};
use crate::env::PodFacts;
use crate::volumes;
use k8s_openapi::api::core::v1::Container;
use kubus_apimachinery::pod;
use kubus_apimachinery::resources::{containers_limit_milli, containers_request_milli, qos_class};
use kubus_container_runtime::cgroups::CgroupResources;
use kubus_controller_runtime::events::EventType;
use std::time::SystemTime;
use tokio::time::Instant;

/// Where the init containers are.
#[derive(Debug, PartialEq, Eq)]
enum InitProgress {
    /// All have completed (sidecars: started): the containers may run.
    Done,
    /// One is running or being started: wait for it.
    Waiting,
    /// One failed under restartPolicy Never: the pod has failed.
    Failed,
}

/// What a container's last run means for the next sync, by the pod's restart policy.
fn should_restart(policy: &str, state: Option<&RunState>) -> bool {
    match state {
        None => true,
        Some(RunState::Running { .. }) => false,
        Some(RunState::Exited(t)) => match policy {
            "Never" => false,
            "OnFailure" => t.exit_code != 0,
            _ => true,
        },
    }
}

pub(super) fn is_sidecar(c: &Container) -> bool {
    c.restart_policy.as_deref() == Some("Always")
}

impl PodWorker {
    pub(super) async fn sync(&mut self) -> Result<(), SyncError> {
        self.ensure_sandbox().await?;
        self.ensure_pod_cgroup()?;
        self.ensure_volumes().await?;
        match self.sync_init_containers().await {
            InitProgress::Done => {}
            InitProgress::Waiting => return Ok(()),
            InitProgress::Failed => {
                self.failed = true;
                return Ok(());
            }
        }
        self.sync_containers().await;
        Ok(())
    }

    /// Step 1: the pod's sandbox (network namespace with its CNI network, IPC, UTS).
    async fn ensure_sandbox(&mut self) -> Result<(), SyncError> {
        if self.sandbox.is_some() {
            return Ok(());
        }
        self.start_time.get_or_insert_with(SystemTime::now);
        let req =
            crate::sandbox::request(&self.pod, self.host.services.cluster_dns(), &self.host.config.cluster_domain);
        let t0 = Instant::now();
        match self.host.sandboxes.create(req).await {
            Ok(s) => {
                CONTAINER_OPS.with_label_values(&["sandbox"]).observe(t0.elapsed().as_secs_f64());
                self.sandbox = Some(s);
                Ok(())
            }
            Err(e) => {
                let e = SyncError::from(e);
                if matches!(e, SyncError::Sandbox(_)) {
                    self.event(EventType::Warning, "FailedCreatePodSandBox", &e.to_string()).await;
                }
                Err(e)
            }
        }
    }

    /// Step 2: the pod cgroup with the pod's limits, under the parent of its QoS class.
    fn ensure_pod_cgroup(&mut self) -> Result<(), SyncError> {
        if !self.pod_cgroup {
            let path = self.host.pod_cgroup(&self.uid, qos_class(&self.pod));
            self.host.cgroups.create(&path, &pod_resources(pod::spec(&self.pod)))?;
            self.pod_cgroup = true;
        }
        Ok(())
    }

    /// Step 3: the volumes, refreshed now and then so ConfigMap and Secret changes arrive.
    async fn ensure_volumes(&mut self) -> Result<(), SyncError> {
        if self.volumes.is_some() && Instant::now() < self.next_volume_refresh {
            return Ok(());
        }
        let ips = self.pod_ips();
        let host_ip = self.host.node_ip.to_string();
        let alloc = self.host.machine.allocatable();
        let facts = PodFacts { pod: &self.pod, pod_ips: &ips, host_ip: &host_ip, node_allocatable: &alloc };
        match volumes::prepare(&self.pod_dir(), &facts, self.host.objects.as_ref(), self.host.tokens.as_ref()).await {
            Ok(v) => {
                self.volumes = Some(v);
                self.next_volume_refresh = Instant::now() + VOLUME_REFRESH;
                Ok(())
            }
            Err(e) => {
                self.event(EventType::Warning, "FailedMount", &e.to_string()).await;
                match self.volumes {
                    None => Err(e.into()),
                    // The volumes as they were keep serving the containers meanwhile.
                    Some(_) => Ok(()),
                }
            }
        }
    }

    /// Step 4: the init containers, one at a time in order; sidecars (restartPolicy Always)
    /// keep running and only need to have started.
    async fn sync_init_containers(&mut self) -> InitProgress {
        let spec = pod::spec(&self.pod);
        let never = spec.restart_policy.as_deref() == Some("Never");
        let inits = spec.init_containers.clone().unwrap_or_default();
        for c in &inits {
            let sidecar = is_sidecar(c);
            match self.records.get(&c.name).and_then(|r| r.state()) {
                Some(RunState::Exited(t)) if t.exit_code == 0 && !sidecar => continue,
                Some(RunState::Running { .. }) if sidecar => continue,
                Some(RunState::Running { .. }) => return InitProgress::Waiting,
                Some(RunState::Exited(_)) if never && !sidecar => return InitProgress::Failed,
                _ => {
                    self.start_if_due(c, true).await;
                    return InitProgress::Waiting;
                }
            }
        }
        InitProgress::Done
    }

    /// Step 5: the containers, (re)started by the pod's restart policy.
    async fn sync_containers(&mut self) {
        let spec = pod::spec(&self.pod);
        let policy = spec.restart_policy.clone().unwrap_or_else(|| "Always".into());
        let containers = spec.containers.clone();
        for c in &containers {
            let state = self.records.get(&c.name).and_then(|r| r.state());
            if should_restart(&policy, state) {
                self.start_if_due(c, false).await;
            }
        }
    }

    /// A finished pod keeps nothing running: free its address and mounts.
    pub(super) async fn release_finished(&mut self) -> Result<(), SyncError> {
        let running: Vec<(String, String)> = self
            .records
            .iter()
            .filter_map(|(n, r)| r.current.as_ref().filter(|r| r.is_running()).map(|r| (n.clone(), r.id.clone())))
            .collect();
        for (name, id) in running {
            self.stop_container(&name, &id, self.grace_period()).await;
            self.on_exit(&id).await;
        }
        Ok(self.teardown(false).await?)
    }
}

/// Pod-level limits: the sum of the containers' limits when every container has one.
fn pod_resources(spec: &k8s_openapi::api::core::v1::PodSpec) -> CgroupResources {
    let cpu_requests = containers_request_milli(spec, "cpu");
    let cpu_quota = containers_limit_milli(spec, "cpu").map(|m| ((m * 100_000) / 1000).max(1000) as i64);
    CgroupResources {
        cpu_shares: Some(((cpu_requests * 1024) / 1000).max(2) as u64),
        cpu_period: cpu_quota.map(|_| 100_000),
        cpu_quota,
        memory_limit: containers_limit_milli(spec, "memory").map(|m| (m / 1000) as i64),
        pids_limit: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn pod_limits_only_when_every_container_has_one() {
        let spec: k8s_openapi::api::core::v1::PodSpec = serde_json::from_value(json!({"containers": [
            {"name": "a", "resources": {"requests": {"cpu": "250m"}, "limits": {"cpu": "500m", "memory": "64Mi"}}},
            {"name": "b", "resources": {"requests": {"cpu": "250m"}, "limits": {"cpu": "1"}}}]}))
        .unwrap();
        let r = pod_resources(&spec);
        assert_eq!(r.cpu_shares, Some(512));
        assert_eq!((r.cpu_quota, r.cpu_period), (Some(150_000), Some(100_000)));
        assert_eq!(r.memory_limit, None, "b has no memory limit: the pod is unbounded there");
        assert!(
            should_restart("Always", None)
                && !should_restart("Always", Some(&RunState::Running { started_at: SystemTime::now() }))
        );
    }
}
