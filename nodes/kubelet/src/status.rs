//! A pod's status as the kubelet reports it: phase by upstream's rules, the conditions
//! (PodReadyToStartContainers, Initialized, ContainersReady, Ready, PodScheduled) and
//! container statuses with their state, last state, restart count and readiness.

use k8s_openapi::api::core::v1 as core;
use k8s_openapi::api::core::v1::{HostIP, Pod, PodCondition, PodIP, PodStatus};
use kubus_apimachinery::resources::QosClass;
use kubus_apimachinery::time::time;
use kubus_apimachinery::{conditions, pod};
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

impl Terminated {
    pub fn to_api(&self) -> core::ContainerStateTerminated {
        core::ContainerStateTerminated {
            exit_code: self.exit_code,
            signal: self.signal,
            reason: Some(self.reason.clone()),
            message: Some(self.message.clone()).filter(|m| !m.is_empty()),
            started_at: self.started_at.map(time),
            finished_at: Some(time(self.finished_at)),
            container_id: Some(self.container_id.clone()),
        }
    }

    /// The last state a container status reported (what a restarted agent starts from).
    pub fn from_api(t: &core::ContainerStateTerminated) -> Terminated {
        Terminated {
            exit_code: t.exit_code,
            signal: t.signal,
            reason: t.reason.clone().unwrap_or_default(),
            message: t.message.clone().unwrap_or_default(),
            started_at: t.started_at.as_ref().map(kubus_apimachinery::time::system_time),
            finished_at: t
                .finished_at
                .as_ref()
                .map(kubus_apimachinery::time::system_time)
                .unwrap_or_else(SystemTime::now),
            container_id: t.container_id.clone().unwrap_or_default(),
        }
    }
}

impl ContainerState {
    pub fn to_api(&self) -> core::ContainerState {
        match self {
            ContainerState::Waiting { reason, message } => core::ContainerState {
                waiting: Some(core::ContainerStateWaiting {
                    reason: Some(reason.clone()),
                    message: Some(message.clone()).filter(|m| !m.is_empty()),
                }),
                ..Default::default()
            },
            ContainerState::Running { started_at } => core::ContainerState {
                running: Some(core::ContainerStateRunning { started_at: Some(time(*started_at)) }),
                ..Default::default()
            },
            ContainerState::Terminated(t) => {
                core::ContainerState { terminated: Some(t.to_api()), ..Default::default() }
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

    pub fn to_api(&self) -> core::ContainerStatus {
        core::ContainerStatus {
            name: self.name.clone(),
            image: self.image.clone(),
            image_id: self.image_id.clone(),
            ready: self.ready,
            restart_count: self.restart_count as i32,
            started: Some(self.started),
            state: Some(self.state.to_api()),
            // An empty lastState, as upstream reports one for a container that never ended.
            last_state: Some(
                self.last_state.as_ref().map(|t| ContainerState::Terminated(t.clone()).to_api()).unwrap_or_default(),
            ),
            container_id: self.container_id.clone(),
            ..Default::default()
        }
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
    pub pod: &'a Pod,
    pub init: &'a [ContainerView],
    pub containers: &'a [ContainerView],
    pub sandbox_ready: bool,
    pub pod_ips: &'a [String],
    pub host_ip: &'a str,
    pub start_time: Option<SystemTime>,
    /// The API's class (`status.qosClass` is immutable: the kubelet never computes its own).
    pub qos: QosClass,
    /// Set when the pod failed for a reason of its own (e.g. an init container under Never).
    pub failed: bool,
    /// The status reason and message of a pod the kubelet failed (DeadlineExceeded).
    pub failure: Option<&'a (String, String)>,
}

fn init_done(pod: &Pod, init: &[ContainerView]) -> bool {
    pod::spec(pod).init_containers.iter().flatten().all(|spec| {
        let sidecar = spec.restart_policy.as_deref() == Some("Always");
        init.iter().find(|c| c.name == spec.name).is_some_and(|c| {
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
    let spec = pod::spec(v.pod);
    let restart = spec.restart_policy.as_deref().unwrap_or("Always");
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
    if waiting > 0 || v.containers.len() < spec.containers.len() {
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
pub fn pod_status(v: &PodView<'_>) -> PodStatus {
    let now = time(SystemTime::now());
    let previous: &[PodCondition] = v.pod.status.as_ref().and_then(|s| s.conditions.as_deref()).unwrap_or(&[]);
    let cond = |t: &str, ok: bool, reason: Option<&str>| {
        let status = if ok { "True" } else { "False" };
        PodCondition {
            type_: t.to_string(),
            status: status.to_string(),
            last_transition_time: Some(conditions::transition_time(previous, t, status, &now)),
            reason: reason.map(String::from),
            ..Default::default()
        }
    };
    let phase = phase(v);
    let terminal = phase == "Succeeded" || phase == "Failed";
    let initialized = init_done(v.pod, v.init);
    let containers_ready = !terminal && initialized && !v.containers.is_empty() && v.containers.iter().all(|c| c.ready);
    // Upstream's reasons: a finished pod is PodCompleted or PodFailed; a succeeded pod's
    // Initialized says PodCompleted too.
    let finished = if phase == "Failed" { "PodFailed" } else { "PodCompleted" };
    let not_ready = (!containers_ready).then_some(if terminal { finished } else { "ContainersNotReady" });
    let init_reason = if !initialized {
        Some("ContainersNotInitialized")
    } else if phase == "Succeeded" {
        Some("PodCompleted")
    } else {
        None
    };
    let mut conditions = vec![
        cond("PodReadyToStartContainers", v.sandbox_ready, None),
        cond(pod::INITIALIZED, initialized, init_reason),
        cond(pod::READY, containers_ready, not_ready),
        cond(pod::CONTAINERS_READY, containers_ready, not_ready),
    ];
    if let Some(s) = previous.iter().find(|c| c.type_ == pod::SCHEDULED) {
        conditions.push(s.clone());
    }
    PodStatus {
        phase: Some(phase.to_string()),
        conditions: Some(conditions),
        host_ip: Some(v.host_ip.to_string()),
        host_ips: Some(vec![HostIP { ip: v.host_ip.to_string() }]),
        qos_class: Some(v.qos.as_str().to_string()),
        container_statuses: Some(v.containers.iter().map(ContainerView::to_api).collect()),
        init_container_statuses: (!v.init.is_empty()).then(|| v.init.iter().map(ContainerView::to_api).collect()),
        start_time: v.start_time.map(time),
        pod_ip: v.pod_ips.first().cloned(),
        pod_ips: (!v.pod_ips.is_empty()).then(|| v.pod_ips.iter().map(|ip| PodIP { ip: ip.clone() }).collect()),
        reason: v.failure.map(|(r, _)| r.clone()),
        message: v.failure.map(|(_, m)| m.clone()),
        ..Default::default()
    }
}

/// Upstream's bound on what a container may write to its terminationMessagePath (more is cut).
pub const MAX_TERMINATION_MESSAGE_BYTES: usize = 4096;
/// Upstream's bounds on a message taken from the log (FallbackToLogsOnError): the last 80
/// lines, and of those the last 2 KiB.
pub const MAX_TERMINATION_LOG_LINES: usize = 80;
pub const MAX_TERMINATION_LOG_BYTES: usize = 2048;

/// A run's termination message: its terminationMessagePath file, or under
/// `FallbackToLogsOnError`, when that is empty and the container failed, the tail of its log.
pub fn termination_message(
    file: &[u8],
    fallback_to_logs: bool,
    exit_code: i32,
    log: impl FnOnce() -> Vec<u8>,
) -> String {
    let file = &file[..file.len().min(MAX_TERMINATION_MESSAGE_BYTES)];
    if !file.is_empty() || !fallback_to_logs || exit_code == 0 {
        return String::from_utf8_lossy(file).into_owned();
    }
    log_tail(&log())
}

/// The last lines of a CRI log (both streams, partial records joined) as the message takes them.
pub fn log_tail(cri_log: &[u8]) -> String {
    let mut lines: std::collections::VecDeque<Vec<u8>> = std::collections::VecDeque::new();
    let mut partial: Vec<u8> = Vec::new();
    for line in cri_log.split(|&b| b == b'\n') {
        let Some(rec) = kubus_container_runtime::logs::parse_record(line) else { continue };
        partial.extend_from_slice(&rec.text);
        if rec.partial {
            continue;
        }
        partial.push(b'\n');
        lines.push_back(std::mem::take(&mut partial));
        if lines.len() > MAX_TERMINATION_LOG_LINES {
            lines.pop_front();
        }
    }
    if !partial.is_empty() {
        lines.push_back(partial);
    }
    let text: Vec<u8> = lines.into_iter().flatten().collect();
    let mut start = text.len().saturating_sub(MAX_TERMINATION_LOG_BYTES);
    // Not in the middle of a UTF-8 character.
    while start < text.len() && (text[start] & 0xC0) == 0x80 {
        start += 1;
    }
    String::from_utf8_lossy(&text[start..]).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

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
        let pod: Pod =
            serde_json::from_value(json!({"spec": {"restartPolicy": policy, "containers": [{"name": "c"}]}})).unwrap();
        phase(&PodView {
            pod: &pod,
            init: &[],
            containers: &[c],
            sandbox_ready: true,
            pod_ips: &[],
            host_ip: "",
            start_time: None,
            qos: QosClass::BestEffort,
            failed: false,
            failure: None,
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
        let pod: Pod =
            serde_json::from_value(json!({"spec": {"initContainers": [{"name": "i"}], "containers": [{"name": "c"}]}}))
                .unwrap();
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
            qos: QosClass::BestEffort,
            failed: false,
            failure: None,
        };
        assert_eq!(phase(&v), "Pending");
        let s = pod_status(&v);
        let conditions = s.conditions.unwrap();
        assert_eq!(conditions[1].status, "False");
        assert_eq!(conditions[1].reason.as_deref(), Some("ContainersNotInitialized"));
    }

    #[test]
    fn the_status_body_is_what_the_api_stores() {
        // Same JSON as the kubelet always sent: an empty lastState, no podIP before a sandbox.
        let pod: Pod = serde_json::from_value(json!({"spec": {"containers": [{"name": "c"}]}})).unwrap();
        let containers = [view(ContainerState::Running { started_at: SystemTime::UNIX_EPOCH })];
        let v = PodView {
            pod: &pod,
            init: &[],
            containers: &containers,
            sandbox_ready: false,
            pod_ips: &[],
            host_ip: "1.1.1.1",
            start_time: None,
            qos: QosClass::Burstable,
            failed: false,
            failure: None,
        };
        let s = serde_json::to_value(pod_status(&v)).unwrap();
        assert_eq!(s["qosClass"], "Burstable");
        assert_eq!(s["containerStatuses"][0]["lastState"], json!({}));
        assert_eq!(s["containerStatuses"][0]["state"], json!({"running": {"startedAt": "1970-01-01T00:00:00Z"}}));
        assert!(s.get("podIP").is_none() && s.get("initContainerStatuses").is_none() && s.get("startTime").is_none());
        assert_eq!(s["hostIPs"], json!([{"ip": "1.1.1.1"}]));
    }

    #[test]
    fn termination_messages_from_the_file_or_the_log_tail() {
        let log: Vec<u8> = (1..=100)
            .map(|i| format!("2024-01-01T00:00:00.000000000Z stdout F line {i}\n"))
            .chain([
                "2024-01-01T00:00:00.000000000Z stderr P half \n2024-01-01T00:00:00.000000000Z stderr F and half\n"
                    .into(),
            ])
            .collect::<String>()
            .into_bytes();
        let tail = log_tail(&log);
        assert!(tail.starts_with("line 22\n") && tail.ends_with("line 100\nhalf and half\n"), "{tail}");
        assert_eq!(tail.lines().count(), 80);
        // The file wins; the log only when the file is empty, the policy says so and it failed.
        assert_eq!(termination_message(b"bye", true, 1, || log.clone()), "bye");
        assert_eq!(termination_message(b"", false, 1, || log.clone()), "");
        assert_eq!(termination_message(b"", true, 0, || log.clone()), "");
        assert_eq!(termination_message(b"", true, 2, || log.clone()), tail);
        // Bounds: 4 KiB of the file, 2 KiB of the log.
        assert_eq!(termination_message(&[b'x'; 5000], false, 1, Vec::new).len(), MAX_TERMINATION_MESSAGE_BYTES);
        let long: String = (0..10).map(|_| format!("2024-01-01T00:00:00Z stdout F {}\n", "y".repeat(500))).collect();
        assert_eq!(log_tail(long.as_bytes()).len(), MAX_TERMINATION_LOG_BYTES);
    }
}
