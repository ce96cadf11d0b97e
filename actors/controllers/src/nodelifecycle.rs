//! The node lifecycle controller: a node whose Lease in kube-node-lease has not been renewed
//! within the grace period gets `Ready=Unknown` and the `node.kubernetes.io/unreachable`
//! NoSchedule and NoExecute taints (removed again when it heartbeats), its pods turn not Ready
//! (so Services stop sending them traffic), and pods on nodes with
//! NoExecute taints they do not tolerate are evicted (after their tolerationSeconds), so their
//! controllers replace them elsewhere.
//!
//! A node's pods come from the pod informer's `spec.nodeName` index; Leases are read from
//! their informer, not watched (every node is looked at again every quarter grace period).

use futures::future::BoxFuture;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{Node, NodeCondition, Pod, PodCondition, Taint};
use kubus_apimachinery::time::{system_micro_time, system_time, time};
use kubus_apimachinery::{conditions, pod, taints, ObjectExt, ObjectKey};
use kubus_controller_runtime::controller::{Action, Controller, ReconcileResult, Reconciler};
use kubus_controller_runtime::events::EventType;
use kubus_controller_runtime::informer::indexes;
use kubus_controller_runtime::{Client, DeleteParams, Informer, InformerFactory, Recorder};
use serde_json::json;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

pub const UNREACHABLE: &str = "node.kubernetes.io/unreachable";
pub const NOT_READY: &str = "node.kubernetes.io/not-ready";

const WORKERS: usize = 2;

pub struct NodeLifecycleController {
    client: Client,
    nodes: Informer<Node>,
    pods: Informer<Pod>,
    leases: Informer<Lease>,
    grace: Duration,
    recorder: Recorder,
}

fn taints(node: &Node) -> &[Taint] {
    node.spec.as_ref().and_then(|s| s.taints.as_deref()).unwrap_or(&[])
}

fn taint(key: &str, effect: &str, now: SystemTime) -> Taint {
    Taint { key: key.to_string(), effect: effect.to_string(), time_added: Some(time(now)), value: None }
}

/// None: the pod does not tolerate the taint; Some(None): forever; Some(Some(s)): for s seconds.
fn tolerates(pod: &Pod, taint: &Taint) -> Option<Option<i64>> {
    taints::tolerating(pod::spec(pod).tolerations.as_deref().unwrap_or(&[]), taint).map(|t| t.toleration_seconds)
}

/// When a pod must leave a node with these NoExecute taints: None if it tolerates them all
/// forever, `now` if it does not tolerate one, else when its shortest tolerationSeconds runs
/// out (counted from each taint's timeAdded).
pub fn eviction_time(pod: &Pod, no_execute: &[&Taint], now: SystemTime) -> Option<SystemTime> {
    let mut evict_at: Option<SystemTime> = Some(now);
    let mut forever = true;
    for t in no_execute {
        let added = t.time_added.as_ref().map(system_time).unwrap_or(now);
        match tolerates(pod, t) {
            None => return Some(now),
            Some(None) => {}
            Some(Some(secs)) => {
                forever = false;
                let at = added + Duration::from_secs(secs.max(0) as u64);
                evict_at = Some(evict_at.map_or(at, |e| if e == now { at } else { e.min(at) }));
            }
        }
    }
    if forever {
        None
    } else {
        evict_at
    }
}

/// The node's last sign of life: its Lease renewal or Ready heartbeat, whichever is later,
/// else its creation.
pub fn last_heartbeat(node: &Node, lease: Option<&Lease>) -> Option<SystemTime> {
    let from_lease = lease.and_then(|l| l.spec.as_ref()?.renew_time.as_ref()).map(system_micro_time);
    let from_status = conditions::find(conditions::of_node(node), "Ready")
        .and_then(|c| c.last_heartbeat_time.as_ref())
        .map(system_time);
    from_lease.max(from_status).or_else(|| node.metadata.creation_timestamp.as_ref().map(system_time))
}

/// Every condition of a node that stopped posting status, as upstream marks them.
fn unknown_conditions(node: &Node, now: SystemTime) -> Vec<NodeCondition> {
    let conditions = node.status.as_ref().and_then(|s| s.conditions.clone()).unwrap_or_default();
    conditions
        .into_iter()
        .map(|mut c| {
            c.status = "Unknown".into();
            c.reason = Some("NodeStatusUnknown".into());
            c.message = Some("Kubelet stopped posting node status.".into());
            c.last_transition_time = Some(time(now));
            c
        })
        .collect()
}

/// A pod's conditions with Ready turned False.
fn not_ready_conditions(pod: &Pod, now: SystemTime) -> Vec<PodCondition> {
    let conditions = pod.status.as_ref().and_then(|s| s.conditions.clone()).unwrap_or_default();
    conditions
        .into_iter()
        .map(|mut c| {
            if c.type_ == pod::READY {
                c.status = "False".into();
                c.last_transition_time = Some(time(now));
            }
            c
        })
        .collect()
}

/// Starts the controller; the future runs it until dropped.
pub fn run(client: Client, factory: &InformerFactory, grace: Duration) -> BoxFuture<'static, ()> {
    let (nodes, pods, leases) = (factory.get::<Node>(), factory.get::<Pod>(), factory.get::<Lease>());
    indexes::pods_by_node(&pods);
    let ctrl = Controller::new("nodelifecycle", nodes.clone()).workers(WORKERS);
    let (leases_synced, pods_synced) = (leases.clone(), pods.clone());
    // Upstream's node lifecycle controller records as "node-controller".
    let recorder = Recorder::new(client.clone(), "node-controller");
    let run = ctrl.run(Arc::new(NodeLifecycleController { client, nodes, pods, leases, grace, recorder }));
    Box::pin(async move {
        // A node's Lease must be known before it can be called stale, and its pods before
        // they are marked or evicted; neither is watched.
        leases_synced.wait_synced().await;
        pods_synced.wait_synced().await;
        run.await
    })
}

impl NodeLifecycleController {
    async fn set_taints(&self, node: &str, taints: &[Taint]) -> ReconcileResult {
        self.client.merge_patch::<Node>("", node, &json!({"spec": {"taints": taints}})).await?;
        Ok(Action::Done)
    }

    async fn sync(&self, key: &ObjectKey) -> ReconcileResult {
        let Some(node) = self.nodes.get("", &key.1) else { return Ok(Action::Done) };
        let name = node.name();
        let now = SystemTime::now();
        let lease = self.leases.get(kubus_controller_runtime::node_lease::NAMESPACE, name);
        let stale = last_heartbeat(&node, lease.as_deref()).is_none_or(|t| t + self.grace < now);
        let current = taints(&node);
        let ready = conditions::status(conditions::of_node(&node), "Ready");
        // A node whose kubelet reports Ready=False (as opposed to not reporting) is not-ready.
        let reports_not_ready = !stale && ready == Some("False");
        let has_not_ready = current.iter().any(|t| t.key == NOT_READY);
        if reports_not_ready != has_not_ready {
            let mut t: Vec<Taint> = current.iter().filter(|t| t.key != NOT_READY).cloned().collect();
            if reports_not_ready {
                t.push(taint(NOT_READY, "NoSchedule", now));
                t.push(taint(NOT_READY, "NoExecute", now));
            }
            self.set_taints(name, &t).await?;
            return Ok(Action::RequeueAfter(Duration::from_millis(100)));
        }
        let has_ours = current.iter().any(|t| t.key == UNREACHABLE);
        if stale {
            if ready != Some("Unknown") {
                let patch = json!({"status": {"conditions": unknown_conditions(&node, now)}});
                self.client.merge_patch_status::<Node>("", name, &patch).await?;
                // Upstream's RecordNodeStatusChange.
                let message = format!("Node {name} status is now: NodeNotReady");
                self.recorder.record(node.as_ref(), EventType::Normal, "NodeNotReady", &message).await;
            }
            self.mark_pods_not_ready(name, now).await?;
            if !has_ours {
                let mut t = current.to_vec();
                t.push(taint(UNREACHABLE, "NoSchedule", now));
                t.push(taint(UNREACHABLE, "NoExecute", now));
                self.set_taints(name, &t).await?;
                tracing::info!(node = %name, "node stopped heartbeating: tainted unreachable");
            }
        } else if has_ours {
            let t: Vec<Taint> = current.iter().filter(|t| t.key != UNREACHABLE).cloned().collect();
            self.set_taints(name, &t).await?;
        }
        let next = self.evict(&node, now).await?;
        // Heartbeats are checked every few seconds; evictions when their time comes.
        let period = (self.grace / 4).max(Duration::from_secs(1));
        Ok(Action::RequeueAfter(next.map_or(period, |n| n.min(period))))
    }

    /// Pods on a node that stopped heartbeating are no longer known to be ready: their Ready
    /// condition turns False, so endpoints take them out of rotation long before any eviction.
    /// The kubelet writes its own view again once it is back.
    async fn mark_pods_not_ready(&self, node: &str, now: SystemTime) -> ReconcileResult {
        for pod in self.pods.by_index(indexes::POD_NODE_NAME, node) {
            if !pod::is_ready(&pod) {
                continue;
            }
            let patch = json!({"status": {"conditions": not_ready_conditions(&pod, now)}});
            match self.client.merge_patch_status::<Pod>(pod.namespace(), pod.name(), &patch).await {
                Ok(_) => tracing::info!(pod = pod.name(), node, "node unreachable: pod marked not ready"),
                Err(e) if e.is_not_found() => {}
                Err(e) => return Err(e.into()),
            }
        }
        Ok(Action::Done)
    }

    /// Evicts pods that do not tolerate the node's NoExecute taints; returns when to look again
    /// for pods whose tolerationSeconds are still running.
    async fn evict(
        &self,
        node: &Node,
        now: SystemTime,
    ) -> Result<Option<Duration>, kubus_controller_runtime::controller::Error> {
        let no_execute: Vec<&Taint> = taints(node).iter().filter(|t| t.effect == "NoExecute").collect();
        if no_execute.is_empty() {
            return Ok(None);
        }
        let mut next: Option<Duration> = None;
        let name = node.name();
        for pod in self.pods.by_index(indexes::POD_NODE_NAME, name).into_iter().filter(|p| !p.is_deleting()) {
            let Some(at) = eviction_time(&pod, &no_execute, now) else { continue };
            if at <= now {
                tracing::info!(pod = pod.name(), node = name, "evicting pod from tainted node");
                match self.client.delete::<Pod>(pod.namespace(), pod.name(), &DeleteParams::default()).await {
                    Ok(_) => {}
                    Err(e) if e.is_not_found() => {}
                    Err(e) => return Err(e.into()),
                }
            } else if let Ok(wait) = at.duration_since(now) {
                next = Some(next.map_or(wait, |n| n.min(wait)));
            }
        }
        Ok(next)
    }
}

impl Reconciler for NodeLifecycleController {
    type Error = kubus_controller_runtime::controller::Error;
    async fn reconcile(&self, key: &ObjectKey) -> ReconcileResult {
        self.sync(key).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::coordination::v1::LeaseSpec;
    use k8s_openapi::api::core::v1::{NodeStatus, PodSpec, Toleration};
    use kubus_apimachinery::time::micro_time;

    fn at(secs: u64) -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(secs)
    }

    fn toleration(key: Option<&str>, operator: &str, value: Option<&str>, seconds: Option<i64>) -> Toleration {
        Toleration {
            key: key.map(String::from),
            operator: Some(operator.into()),
            value: value.map(String::from),
            effect: Some("NoExecute".into()),
            toleration_seconds: seconds,
        }
    }

    fn pod(tolerations: Vec<Toleration>) -> Pod {
        Pod { spec: Some(PodSpec { tolerations: Some(tolerations), ..Default::default() }), ..Default::default() }
    }

    #[test]
    fn tolerations_match_as_upstream() {
        let unreachable = taint(UNREACHABLE, "NoExecute", at(0));
        assert!(taints::tolerates(&toleration(Some(UNREACHABLE), "Exists", None, None), &unreachable));
        assert!(
            taints::tolerates(&toleration(None, "Exists", None, None), &unreachable),
            "an empty key with Exists matches all"
        );
        assert!(taints::tolerates(&toleration(Some(UNREACHABLE), "Equal", None, None), &unreachable));
        assert!(!taints::tolerates(&toleration(Some(UNREACHABLE), "Equal", Some("x"), None), &unreachable));
        assert!(!taints::tolerates(&toleration(Some(NOT_READY), "Exists", None, None), &unreachable));
        let mut no_schedule_only = toleration(Some(UNREACHABLE), "Exists", None, None);
        no_schedule_only.effect = Some("NoSchedule".into());
        assert!(!taints::tolerates(&no_schedule_only, &unreachable));
        no_schedule_only.effect = None;
        assert!(taints::tolerates(&no_schedule_only, &unreachable), "no effect matches every effect");
    }

    #[test]
    fn eviction_waits_for_the_shortest_toleration() {
        let now = at(1000);
        let unreachable = taint(UNREACHABLE, "NoExecute", at(990));
        let not_ready = taint(NOT_READY, "NoExecute", at(995));
        let both = [&unreachable, &not_ready];
        assert_eq!(eviction_time(&pod(vec![]), &both, now), Some(now), "no toleration: now");
        let forever = pod(vec![toleration(None, "Exists", None, None)]);
        assert_eq!(eviction_time(&forever, &both, now), None);
        let timed = pod(vec![
            toleration(Some(UNREACHABLE), "Exists", None, Some(30)),
            toleration(Some(NOT_READY), "Exists", None, Some(60)),
        ]);
        assert_eq!(eviction_time(&timed, &both, now), Some(at(1020)));
        // A taint it does not tolerate at all wins over timed ones.
        let partial = pod(vec![toleration(Some(UNREACHABLE), "Exists", None, Some(30))]);
        assert_eq!(eviction_time(&partial, &both, now), Some(now));
        // A toleration that ran out: due now or earlier.
        let short = pod(vec![toleration(None, "Exists", None, Some(1))]);
        assert!(eviction_time(&short, &[&unreachable], now).is_some_and(|t| t <= now));
    }

    #[test]
    fn heartbeats_come_from_the_lease_or_the_ready_condition() {
        let mut node = Node::default();
        node.metadata.creation_timestamp = Some(time(at(10)));
        assert_eq!(last_heartbeat(&node, None), Some(at(10)));
        node.status = Some(NodeStatus {
            conditions: Some(vec![NodeCondition {
                type_: "Ready".into(),
                status: "True".into(),
                last_heartbeat_time: Some(time(at(50))),
                ..Default::default()
            }]),
            ..Default::default()
        });
        assert_eq!(last_heartbeat(&node, None), Some(at(50)));
        let lease = |secs| Lease {
            spec: Some(LeaseSpec { renew_time: Some(micro_time(at(secs))), ..Default::default() }),
            ..Default::default()
        };
        assert_eq!(last_heartbeat(&node, Some(&lease(80))), Some(at(80)));
        assert_eq!(last_heartbeat(&node, Some(&lease(20))), Some(at(50)), "the later of the two");
    }

    #[test]
    fn a_silent_node_and_its_pods_are_marked() {
        let now = at(1_714_564_800);
        let node = Node {
            status: Some(NodeStatus {
                conditions: Some(vec![NodeCondition {
                    type_: "Ready".into(),
                    status: "True".into(),
                    ..Default::default()
                }]),
                ..Default::default()
            }),
            ..Default::default()
        };
        assert_eq!(
            serde_json::to_value(unknown_conditions(&node, now)).unwrap(),
            json!([{"type": "Ready", "status": "Unknown", "reason": "NodeStatusUnknown",
                "message": "Kubelet stopped posting node status.", "lastTransitionTime": "2024-05-01T12:00:00Z"}])
        );
        let p = Pod {
            status: Some(k8s_openapi::api::core::v1::PodStatus {
                conditions: Some(vec![
                    PodCondition { type_: "PodScheduled".into(), status: "True".into(), ..Default::default() },
                    PodCondition { type_: "Ready".into(), status: "True".into(), ..Default::default() },
                ]),
                ..Default::default()
            }),
            ..Default::default()
        };
        assert_eq!(
            serde_json::to_value(not_ready_conditions(&p, now)).unwrap(),
            json!([{"type": "PodScheduled", "status": "True"},
                {"type": "Ready", "status": "False", "lastTransitionTime": "2024-05-01T12:00:00Z"}])
        );
        assert_eq!(
            serde_json::to_value(taint(UNREACHABLE, "NoExecute", now)).unwrap(),
            json!({"key": UNREACHABLE, "effect": "NoExecute", "timeAdded": "2024-05-01T12:00:00Z"})
        );
    }
}
