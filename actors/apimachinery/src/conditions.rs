//! Reading `status.conditions` of typed objects (pods, nodes, deployments...): every
//! controller, the kubelet and the benches ask "what does the Ready condition say".

use k8s_openapi::api::apps::v1::{Deployment, DeploymentCondition, ReplicaSetCondition};
use k8s_openapi::api::batch::v1::JobCondition;
use k8s_openapi::api::core::v1::{Node, NodeCondition, PodCondition};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

/// A condition of any kind: its type and status ("True", "False", "Unknown").
pub trait Condition {
    fn type_(&self) -> &str;
    fn status(&self) -> &str;
    fn last_transition_time(&self) -> Option<&Time>;
}

macro_rules! condition {
    ($($t:ty),*) => {$(
        impl Condition for $t {
            fn type_(&self) -> &str {
                &self.type_
            }
            fn status(&self) -> &str {
                &self.status
            }
            fn last_transition_time(&self) -> Option<&Time> {
                self.last_transition_time.as_ref()
            }
        }
    )*};
}
condition!(PodCondition, NodeCondition, DeploymentCondition, ReplicaSetCondition, JobCondition);

/// The condition of this type in a list.
pub fn find<'a, C: Condition>(conditions: Option<&'a Vec<C>>, kind: &str) -> Option<&'a C> {
    conditions?.iter().find(|c| c.type_() == kind)
}

/// Its status, if the condition is there.
pub fn status<'a, C: Condition>(conditions: Option<&'a Vec<C>>, kind: &str) -> Option<&'a str> {
    find(conditions, kind).map(Condition::status)
}

/// Whether the condition of this type is True.
pub fn is_true<C: Condition>(conditions: Option<&Vec<C>>, kind: &str) -> bool {
    status(conditions, kind) == Some("True")
}

/// The `lastTransitionTime` of a condition of type `kind` posted with `status`: the one it had
/// in `previous` while its status stays the same, `now` when the status changed or the
/// condition is new.
pub fn transition_time<C: Condition>(previous: &[C], kind: &str, status: &str, now: &Time) -> Time {
    previous
        .iter()
        .find(|c| c.type_() == kind && c.status() == status)
        .and_then(|c| c.last_transition_time().cloned())
        .unwrap_or_else(|| now.clone())
}

/// A node's conditions.
pub fn of_node(node: &Node) -> Option<&Vec<NodeCondition>> {
    node.status.as_ref()?.conditions.as_ref()
}

/// A deployment's conditions.
pub fn of_deployment(d: &Deployment) -> Option<&Vec<DeploymentCondition>> {
    d.status.as_ref()?.conditions.as_ref()
}

/// A node's conditions as a kubelet posts them (the kubelet and the simulated nodes): no
/// memory, disk or PID pressure, and Ready unless `not_ready` says why not. A condition whose
/// status is unchanged keeps its `lastTransitionTime` from `previous`.
pub fn node_conditions(not_ready: Option<&str>, now: &Time, previous: &[NodeCondition]) -> Vec<NodeCondition> {
    let cond = |t: &str, status: &str, reason: &str, message: &str| NodeCondition {
        type_: t.to_string(),
        status: status.to_string(),
        reason: Some(reason.to_string()),
        message: Some(message.to_string()),
        last_heartbeat_time: Some(now.clone()),
        last_transition_time: Some(transition_time(previous, t, status, now)),
    };
    let ready = match not_ready {
        None => cond("Ready", "True", "KubeletReady", "kubelet is posting ready status"),
        Some(why) => cond("Ready", "False", "KubeletNotReady", why),
    };
    vec![
        cond("MemoryPressure", "False", "KubeletHasSufficientMemory", "kubelet has sufficient memory available"),
        cond("DiskPressure", "False", "KubeletHasNoDiskPressure", "kubelet has no disk pressure"),
        cond("PIDPressure", "False", "KubeletHasSufficientPID", "kubelet has sufficient PID available"),
        ready,
    ]
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::NodeStatus;

    #[test]
    fn reads_the_condition_of_a_type() {
        let cond = |t: &str, s: &str| NodeCondition { type_: t.into(), status: s.into(), ..Default::default() };
        let node = Node {
            status: Some(NodeStatus {
                conditions: Some(vec![cond("MemoryPressure", "False"), cond("Ready", "True")]),
                ..Default::default()
            }),
            ..Default::default()
        };
        assert_eq!(status(of_node(&node), "Ready"), Some("True"));
        assert!(is_true(of_node(&node), "Ready") && !is_true(of_node(&node), "MemoryPressure"));
        assert!(find(of_node(&node), "DiskPressure").is_none());
        assert_eq!(status(of_node(&Node::default()), "Ready"), None);
    }

    #[test]
    fn a_transition_time_is_kept_until_the_status_changes() {
        let (then, now) = (crate::time::time(std::time::UNIX_EPOCH), crate::time::now());
        let previous = vec![PodCondition {
            type_: "Ready".into(),
            status: "True".into(),
            last_transition_time: Some(then.clone()),
            ..Default::default()
        }];
        assert_eq!(transition_time(&previous, "Ready", "True", &now), then);
        assert_eq!(transition_time(&previous, "Ready", "False", &now), now);
        assert_eq!(transition_time(&previous, "Initialized", "True", &now), now);
        let nodes = node_conditions(None, &now, &[]);
        let later = crate::time::time(std::time::SystemTime::now() + std::time::Duration::from_secs(60));
        let again = node_conditions(None, &later, &nodes);
        assert_eq!(find(Some(&again), "Ready").unwrap().last_transition_time, Some(now.clone()));
        let not_ready = node_conditions(Some("network down"), &later, &again);
        assert_eq!(find(Some(&not_ready), "Ready").unwrap().last_transition_time, Some(later));
    }
}
