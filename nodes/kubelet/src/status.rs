//! A pod's status as the kubelet reports it: phase by upstream's rules, the conditions
//! (PodReadyToStartContainers, Initialized, ContainersReady, Ready, PodScheduled) and
//! container statuses with their state, last state, restart count and readiness.

use kubus_apimachinery::table::format_rfc3339;
use serde_json::{json, Value};
use std::time::SystemTime;

#[derive(Debug, Clone, PartialEq)]
pub enum ContainerState {
    Waiting { reason: String, message: String },
    Running { started_at: SystemTime },
    Terminated(Terminated),
}

#[derive(Debug, Clone, PartialEq)]
pub struct Terminated {
    pub exit_code: i32,
    pub signal: Option<i32>,
    pub reason: String,
    pub message: String,
    pub started_at: Option<SystemTime>,
    pub finished_at: SystemTime,
    pub container_id: String,
}

impl ContainerState {
    pub fn to_json(&self) -> Value {
        match self {
            ContainerState::Waiting { reason, message } => {
                let mut w = json!({"reason": reason});
                if !message.is_empty() {
                    w["message"] = json!(message);
                }
                json!({"waiting": w})
            }
            ContainerState::Running { started_at } => json!({"running": {"startedAt": format_rfc3339(*started_at)}}),
            ContainerState::Terminated(t) => {
                let mut v = json!({"exitCode": t.exit_code, "reason": t.reason,
                    "finishedAt": format_rfc3339(t.finished_at), "containerID": t.container_id});
                if let Some(s) = t.started_at {
                    v["startedAt"] = json!(format_rfc3339(s));
                }
                if let Some(s) = t.signal {
                    v["signal"] = json!(s);
                }
                if !t.message.is_empty() {
                    v["message"] = json!(t.message);
                }
                json!({"terminated": v})
            }
        }
    }
}

/// One container as the status shows it.
#[derive(Debug, Clone, PartialEq)]
pub struct ContainerView {
    pub name: String,
    pub image: String,
    pub image_id: String,
    pub container_id: Option<String>,
    pub state: ContainerState,
    pub last_state: Option<Terminated>,
    pub restart_count: u32,
    pub ready: bool,
    pub started: bool,
}

impl ContainerView {
    pub fn waiting(name: &str, image: &str, reason: &str) -> Self {
        ContainerView {
            name: name.into(),
            image: image.into(),
            image_id: String::new(),
            container_id: None,
            state: ContainerState::Waiting { reason: reason.into(), message: String::new() },
            last_state: None,
            restart_count: 0,
            ready: false,
            started: false,
        }
    }

    pub fn to_json(&self) -> Value {
        let mut v = json!({
            "name": self.name, "image": self.image, "imageID": self.image_id, "ready": self.ready,
            "restartCount": self.restart_count, "started": self.started, "state": self.state.to_json(),
            "lastState": self.last_state.as_ref().map(|t| ContainerState::Terminated(t.clone()).to_json()).unwrap_or(json!({})),
        });
        if let Some(id) = &self.container_id {
            v["containerID"] = json!(id);
        }
        v
    }

    fn terminated(&self) -> Option<&Terminated> {
        match &self.state {
            ContainerState::Terminated(t) => Some(t),
            _ => None,
        }
    }
}

/// Everything the pod's status is computed from.
pub struct PodView<'a> {
    pub pod: &'a Value,
    pub init: &'a [ContainerView],
    pub containers: &'a [ContainerView],
    pub sandbox_ready: bool,
    pub pod_ips: &'a [String],
    pub host_ip: &'a str,
    pub start_time: Option<SystemTime>,
    pub qos: &'a str,
    /// Set when the pod failed for a reason of its own (e.g. an init container under Never).
    pub failed: bool,
}

fn init_done(pod: &Value, init: &[ContainerView]) -> bool {
    let specs = pod["spec"]["initContainers"].as_array().cloned().unwrap_or_default();
    specs.iter().all(|spec| {
        let sidecar = spec["restartPolicy"] == "Always";
        init.iter().find(|c| c.name == spec["name"]).is_some_and(|c| {
            if sidecar {
                c.started && matches!(c.state, ContainerState::Running { .. })
            } else {
                c.terminated().is_some_and(|t| t.exit_code == 0)
            }
        })
    })
}

/// Upstream's phase rules (kubelet getPhase).
pub fn phase(v: &PodView<'_>) -> &'static str {
    if v.failed {
        return "Failed";
    }
    let restart = v.pod["spec"]["restartPolicy"].as_str().unwrap_or("Always");
    if !init_done(v.pod, v.init) {
        return "Pending";
    }
    let (mut running, mut waiting, mut stopped, mut succeeded) = (0, 0, 0, 0);
    for c in v.containers {
        match &c.state {
            ContainerState::Running { .. } => running += 1,
            ContainerState::Terminated(t) => {
                stopped += 1;
                if t.exit_code == 0 {
                    succeeded += 1;
                }
            }
            ContainerState::Waiting { .. } => {
                if c.last_state.is_some() {
                    stopped += 1;
                } else {
                    waiting += 1;
                }
            }
        }
    }
    let total = v.pod["spec"]["containers"].as_array().map_or(0, Vec::len);
    if waiting > 0 || v.containers.len() < total {
        return "Pending";
    }
    if running > 0 {
        return "Running";
    }
    if stopped > 0 {
        if restart == "Always" {
            return "Running";
        }
        if stopped == succeeded {
            return "Succeeded";
        }
        if restart == "OnFailure" {
            return "Running";
        }
        return "Failed";
    }
    "Pending"
}

/// The status subresource body; `previous` conditions keep their transition times.
pub fn pod_status(v: &PodView<'_>) -> Value {
    let now = format_rfc3339(SystemTime::now());
    let previous = v.pod["status"]["conditions"].as_array().cloned().unwrap_or_default();
    let cond = |t: &str, ok: bool, reason: Option<&str>| {
        let status = if ok { "True" } else { "False" };
        let since = previous
            .iter()
            .find(|c| c["type"] == t && c["status"] == status)
            .and_then(|c| c["lastTransitionTime"].as_str().map(String::from))
            .unwrap_or_else(|| now.clone());
        let mut c = json!({"type": t, "status": status, "lastProbeTime": null, "lastTransitionTime": since});
        if let Some(r) = reason {
            c["reason"] = json!(r);
        }
        c
    };
    let phase = phase(v);
    let terminal = phase == "Succeeded" || phase == "Failed";
    let initialized = init_done(v.pod, v.init);
    let containers_ready = !terminal && initialized && !v.containers.is_empty() && v.containers.iter().all(|c| c.ready);
    let not_ready = (!containers_ready).then_some(if terminal { "PodCompleted" } else { "ContainersNotReady" });
    let mut conditions = vec![
        cond("PodReadyToStartContainers", v.sandbox_ready, None),
        cond("Initialized", initialized, (!initialized).then_some("ContainersNotInitialized")),
        cond("Ready", containers_ready, not_ready),
        cond("ContainersReady", containers_ready, not_ready),
    ];
    if let Some(s) = previous.iter().find(|c| c["type"] == "PodScheduled") {
        conditions.push(s.clone());
    }
    let mut status = json!({
        "phase": phase,
        "conditions": conditions,
        "hostIP": v.host_ip,
        "hostIPs": [{"ip": v.host_ip}],
        "qosClass": v.qos,
        "containerStatuses": v.containers.iter().map(ContainerView::to_json).collect::<Vec<_>>(),
    });
    if !v.init.is_empty() {
        status["initContainerStatuses"] = json!(v.init.iter().map(ContainerView::to_json).collect::<Vec<_>>());
    }
    if let Some(t) = v.start_time {
        status["startTime"] = json!(format_rfc3339(t));
    }
    if let Some(ip) = v.pod_ips.first() {
        status["podIP"] = json!(ip);
        status["podIPs"] = json!(v.pod_ips.iter().map(|ip| json!({"ip": ip})).collect::<Vec<_>>());
    }
    status
}

#[cfg(test)]
mod tests {
    use super::*;

    fn term(code: i32) -> ContainerState {
        ContainerState::Terminated(Terminated {
            exit_code: code,
            signal: None,
            reason: if code == 0 { "Completed".into() } else { "Error".into() },
            message: String::new(),
            started_at: None,
            finished_at: SystemTime::now(),
            container_id: "kubus://x".into(),
        })
    }

    fn view(state: ContainerState) -> ContainerView {
        ContainerView { state, ..ContainerView::waiting("c", "busybox", "ContainerCreating") }
    }

    fn phase_of(policy: &str, c: ContainerView) -> &'static str {
        let pod = json!({"spec": {"restartPolicy": policy, "containers": [{"name": "c"}]}});
        phase(&PodView {
            pod: &pod,
            init: &[],
            containers: &[c],
            sandbox_ready: true,
            pod_ips: &[],
            host_ip: "",
            start_time: None,
            qos: "BestEffort",
            failed: false,
        })
    }

    #[test]
    fn phases() {
        assert_eq!(
            phase_of(
                "Always",
                view(ContainerState::Waiting { reason: "ContainerCreating".into(), message: String::new() })
            ),
            "Pending"
        );
        assert_eq!(phase_of("Always", view(ContainerState::Running { started_at: SystemTime::now() })), "Running");
        assert_eq!(phase_of("Never", view(term(0))), "Succeeded");
        assert_eq!(phase_of("Never", view(term(1))), "Failed");
        assert_eq!(phase_of("OnFailure", view(term(1))), "Running");
        assert_eq!(phase_of("Always", view(term(0))), "Running");
        // Back-off after a crash: waiting, but it ran before, so the pod is Running.
        let mut crash = view(ContainerState::Waiting { reason: "CrashLoopBackOff".into(), message: String::new() });
        crash.last_state = Some(match term(1) {
            ContainerState::Terminated(t) => t,
            _ => unreachable!(),
        });
        assert_eq!(phase_of("Always", crash), "Running");
    }

    #[test]
    fn init_containers_gate_the_pod() {
        let pod = json!({"spec": {"initContainers": [{"name": "i"}], "containers": [{"name": "c"}]}});
        let init =
            [ContainerView { name: "i".into(), ..view(ContainerState::Running { started_at: SystemTime::now() }) }];
        let v = PodView {
            pod: &pod,
            init: &init,
            containers: &[],
            sandbox_ready: true,
            pod_ips: &[],
            host_ip: "1.1.1.1",
            start_time: None,
            qos: "BestEffort",
            failed: false,
        };
        assert_eq!(phase(&v), "Pending");
        let s = pod_status(&v);
        assert_eq!(s["conditions"][1]["status"], "False");
        assert_eq!(s["conditions"][1]["reason"], "ContainersNotInitialized");
    }
}
