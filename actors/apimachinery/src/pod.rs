//! What the scheduler, the controllers, the kubelet and the endpoints controller all ask of a
//! pod (upstream's `podutil`): is it ready, terminal, active, available; its conditions.

use crate::meta::ObjectExt;
use crate::time::system_time;
use k8s_openapi::api::core::v1::{Pod, PodCondition, PodSpec};
use std::time::{Duration, SystemTime};

pub const READY: &str = "Ready";
pub const SCHEDULED: &str = "PodScheduled";
pub const INITIALIZED: &str = "Initialized";
pub const CONTAINERS_READY: &str = "ContainersReady";

/// The pod's condition of this type.
pub fn condition<'a>(pod: &'a Pod, kind: &str) -> Option<&'a PodCondition> {
    pod.status.as_ref()?.conditions.as_ref()?.iter().find(|c| c.type_ == kind)
}

/// `status.phase` ("" before the kubelet or the API server set one).
pub fn phase(pod: &Pod) -> &str {
    pod.status.as_ref().and_then(|s| s.phase.as_deref()).unwrap_or("")
}

/// The node the pod is bound to, if any.
pub fn node_name(pod: &Pod) -> Option<&str> {
    pod.spec.as_ref()?.node_name.as_deref().filter(|n| !n.is_empty())
}

pub fn spec(pod: &Pod) -> &PodSpec {
    static EMPTY: std::sync::LazyLock<PodSpec> = std::sync::LazyLock::new(PodSpec::default);
    pod.spec.as_ref().unwrap_or(&EMPTY)
}

/// Succeeded or Failed: its containers will not run again.
pub fn is_terminal(pod: &Pod) -> bool {
    matches!(phase(pod), "Succeeded" | "Failed")
}

/// Counts toward its controller's replicas: neither terminal nor being deleted.
pub fn is_active(pod: &Pod) -> bool {
    !pod.is_deleting() && !is_terminal(pod)
}

/// The Ready condition is True.
pub fn is_ready(pod: &Pod) -> bool {
    condition(pod, READY).is_some_and(|c| c.status == "True")
}

/// Ready for at least `min_ready_seconds` (upstream's "available").
pub fn is_available(pod: &Pod, min_ready_seconds: i32, now: SystemTime) -> bool {
    let Some(ready) = condition(pod, READY).filter(|c| c.status == "True") else {
        return false;
    };
    if min_ready_seconds <= 0 {
        return true;
    }
    ready
        .last_transition_time
        .as_ref()
        .is_some_and(|t| system_time(t) + Duration::from_secs(min_ready_seconds as u64) <= now)
}

/// When a pod that is ready but not yet available will be (None if it already is or is not
/// ready).
pub fn available_in(pod: &Pod, min_ready_seconds: i32, now: SystemTime) -> Option<Duration> {
    let ready = condition(pod, READY).filter(|c| c.status == "True")?;
    let at = system_time(ready.last_transition_time.as_ref()?) + Duration::from_secs(min_ready_seconds.max(0) as u64);
    at.duration_since(now).ok().filter(|d| !d.is_zero())
}

/// The sum of restarts of the pod's containers.
pub fn restarts(pod: &Pod) -> i32 {
    pod.status
        .as_ref()
        .and_then(|s| s.container_statuses.as_ref())
        .map(|cs| cs.iter().map(|c| c.restart_count).sum())
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::time::time;
    use k8s_openapi::api::core::v1::PodStatus;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

    fn pod(phase: &str, ready: Option<(&str, Option<Time>)>) -> Pod {
        Pod {
            status: Some(PodStatus {
                phase: Some(phase.into()),
                conditions: ready.map(|(s, t)| {
                    vec![PodCondition {
                        type_: READY.into(),
                        status: s.into(),
                        last_transition_time: t,
                        ..Default::default()
                    }]
                }),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    #[test]
    fn predicates() {
        let now = SystemTime::now();
        assert!(is_active(&pod("Running", None)) && !is_ready(&pod("Running", None)));
        assert!(is_terminal(&pod("Succeeded", None)) && !is_active(&pod("Failed", None)));
        let mut deleting = pod("Running", None);
        deleting.metadata.deletion_timestamp = Some(time(now));
        assert!(!is_active(&deleting));
        let ready_now = pod("Running", Some(("True", Some(time(now)))));
        assert!(is_ready(&ready_now) && is_available(&ready_now, 0, now));
        assert!(!is_available(&ready_now, 10, now));
        assert!(available_in(&ready_now, 10, now).is_some_and(|d| d <= Duration::from_secs(10)));
        let ready_long = pod("Running", Some(("True", Some(time(now - Duration::from_secs(60))))));
        assert!(is_available(&ready_long, 10, now) && available_in(&ready_long, 10, now).is_none());
        assert!(!is_ready(&pod("Running", Some(("False", None)))));
        assert_eq!(node_name(&Pod::default()), None);
    }
}
