//! Adoption after an agent restart: containers found through their shims become the pod's
//! runs again, running ones watched and probed, so nothing that runs is restarted.

use super::probing::terminated_from;
use super::{PodWorker, Run, RunState};
use crate::status::Terminated;
use kubus_container_runtime::{ContainerInfo, ContainerState};
use std::collections::HashMap;
use std::time::SystemTime;
use tokio::sync::watch;

impl PodWorker {
    /// Takes over containers that survived an agent restart (found through their shims).
    pub async fn adopt(&mut self, found: Vec<ContainerInfo>) {
        self.sandbox = self.host.sandboxes.get(&self.uid).await;
        if self.sandbox.is_some() {
            self.start_time = Some(SystemTime::now());
        }
        // What the API last heard: each container's last state survives the restart.
        let status = self.pod.status.as_ref();
        let last_states: HashMap<String, Terminated> = status
            .and_then(|s| s.container_statuses.as_ref())
            .into_iter()
            .flatten()
            .chain(status.and_then(|s| s.init_container_statuses.as_ref()).into_iter().flatten())
            .filter_map(|s| {
                let t = s.last_state.as_ref()?.terminated.as_ref()?;
                Some((s.name.clone(), Terminated::from_api(t)))
            })
            .collect();
        if let Some(t) = status.and_then(|s| s.start_time.as_ref()) {
            self.start_time = Some(kubus_apimachinery::time::system_time(t));
        }
        let attempt_of = |c: &ContainerInfo| c.labels.get(crate::LABEL_ATTEMPT).and_then(|a| a.parse::<u32>().ok());
        let mut found = found;
        found.sort_by_key(|c| attempt_of(c).unwrap_or(0));
        for info in found {
            let name = info.labels.get(crate::LABEL_CONTAINER).cloned().unwrap_or_default();
            let attempt = attempt_of(&info).unwrap_or(0);
            let rec = self.records.entry(name.clone()).or_default();
            if let Some(old) = rec.current.take() {
                // An older run of the same container: only its logs matter now.
                let _ = self.host.runtime.remove(&old.id).await;
                let _ = self.host.images.unmount_rootfs(&old.dir);
            }
            rec.restarts = attempt;
            rec.last = last_states.get(&name).cloned();
            let state = match &info.state {
                ContainerState::Running { started_at, .. } => RunState::Running { started_at: *started_at },
                ContainerState::Exited(e) => RunState::Exited(terminated_from(&info.id, e)),
                // The agent stopped between create and start: the container never ran, so it
                // is not a failure (a Job would count one) and not a restart. It is made again.
                ContainerState::Created => {
                    let _ = self.host.runtime.remove(&info.id).await;
                    let _ = self.host.images.unmount_rootfs(&self.pod_dir().join("containers").join(&info.id));
                    continue;
                }
            };
            let (started, _) = watch::channel(false);
            let mut run = Run {
                id: info.id.clone(),
                attempt,
                dir: self.pod_dir().join("containers").join(&info.id),
                image: info.labels.get(crate::LABEL_IMAGE).cloned().unwrap_or_default(),
                image_id: info.labels.get(crate::LABEL_IMAGE_ID).cloned().unwrap_or_default(),
                state,
                ready: false,
                started,
                probes: vec![],
            };
            if run.is_running() {
                self.watch_exit(&info.id);
                if let Some(spec) = self.container_spec(&name).cloned() {
                    self.start_probes(&name, &spec, &mut run);
                }
            }
            self.records.entry(name).or_default().current = Some(run);
        }
        tracing::info!(pod = %format!("{}/{}", self.ns(), self.name()), containers = self.records.len(), "adopted running pod");
    }
}
