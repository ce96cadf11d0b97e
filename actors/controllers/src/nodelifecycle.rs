//! The node lifecycle controller: a node whose Lease in kube-node-lease has not been renewed
//! within the grace period gets `Ready=Unknown` and the `node.kubernetes.io/unreachable`
//! NoSchedule and NoExecute taints (removed again when it heartbeats), its pods turn not Ready
//! (so Services stop sending them traffic), and pods on nodes with
//! NoExecute taints they do not tolerate are evicted (after their tolerationSeconds), so their
//! controllers replace them elsewhere.

use crate::owner;
use crate::Informers;
use futures::future::BoxFuture;
use kubus_apimachinery::conditions;
use kubus_apimachinery::table::{format_rfc3339, parse_rfc3339};
use kubus_runtime::controller::{self, Action, ReconcileResult, Reconciler};
use kubus_runtime::informer::ObjectKey;
use kubus_runtime::{Client, Informer, WorkQueue};
use serde_json::{json, Value};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

pub const UNREACHABLE: &str = "node.kubernetes.io/unreachable";
pub const NOT_READY: &str = "node.kubernetes.io/not-ready";

pub struct NodeLifecycleController {
    client: Client,
    informers: Informers,
    leases: Informer,
    grace: Duration,
    queue: Arc<WorkQueue<ObjectKey>>,
}

fn taints(node: &Value) -> Vec<Value> {
    node["spec"]["taints"].as_array().cloned().unwrap_or_default()
}

fn tolerates(pod: &Value, taint: &Value) -> Option<Option<i64>> {
    pod["spec"]["tolerations"].as_array().into_iter().flatten().find_map(|t| {
        let effect_ok = t["effect"].as_str().is_none_or(|e| e.is_empty() || Some(e) == taint["effect"].as_str());
        let key_ok = match t["operator"].as_str().unwrap_or("Equal") {
            "Exists" => t["key"].as_str().is_none_or(|k| k.is_empty() || Some(k) == taint["key"].as_str()),
            _ => t["key"] == taint["key"] && t["value"].as_str().unwrap_or("") == taint["value"].as_str().unwrap_or(""),
        };
        (effect_ok && key_ok).then(|| t["tolerationSeconds"].as_i64())
    })
}

impl NodeLifecycleController {
    pub fn new(client: Client, informers: Informers, leases: Informer, grace: Duration) -> Self {
        NodeLifecycleController { client, informers, leases, grace, queue: WorkQueue::new("nodelifecycle") }
    }

    fn last_heartbeat(&self, node: &Value) -> Option<SystemTime> {
        let name = owner::name(node);
        let lease = self.leases.get("kube-node-lease", name);
        let from_lease = lease.and_then(|l| l["spec"]["renewTime"].as_str().and_then(parse_rfc3339));
        let from_status =
            conditions::find(node, "Ready").and_then(|c| c["lastHeartbeatTime"].as_str()).and_then(parse_rfc3339);
        from_lease.max(from_status).or_else(|| node["metadata"]["creationTimestamp"].as_str().and_then(parse_rfc3339))
    }

    async fn sync(&self, key: ObjectKey) -> ReconcileResult {
        let Some(node) = self.informers.nodes.get("", &key.1) else { return Ok(Action::Done) };
        let now = SystemTime::now();
        let stale = self.last_heartbeat(&node).is_none_or(|t| t + self.grace < now);
        let current = taints(&node);
        // A node whose kubelet reports Ready=False (as opposed to not reporting) is not-ready.
        let reports_not_ready = !stale && conditions::status(&node, "Ready") == Some("False");
        let has_not_ready = current.iter().any(|t| t["key"] == NOT_READY);
        if reports_not_ready != has_not_ready {
            let mut t: Vec<Value> = current.iter().filter(|t| t["key"] != NOT_READY).cloned().collect();
            if reports_not_ready {
                let added = format_rfc3339(now);
                t.push(json!({"key": NOT_READY, "effect": "NoSchedule", "timeAdded": added}));
                t.push(json!({"key": NOT_READY, "effect": "NoExecute", "timeAdded": added}));
            }
            self.client
                .merge_patch("", "nodes", None, &key.1, None, &json!({"spec": {"taints": t}}))
                .await
                .map_err(|e| e.to_string())?;
            return Ok(Action::RequeueAfter(Duration::from_millis(100)));
        }
        let has_ours = current.iter().any(|t| t["key"] == UNREACHABLE);
        if stale {
            let ready_unknown = conditions::status(&node, "Ready") == Some("Unknown");
            if !ready_unknown {
                let ts = format_rfc3339(now);
                let conditions: Vec<Value> = node["status"]["conditions"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .map(|c| {
                        let mut c = c.clone();
                        c["status"] = json!("Unknown");
                        c["reason"] = json!("NodeStatusUnknown");
                        c["message"] = json!("Kubelet stopped posting node status.");
                        c["lastTransitionTime"] = json!(ts);
                        c
                    })
                    .collect();
                self.client
                    .merge_patch(
                        "",
                        "nodes",
                        None,
                        &key.1,
                        Some("status"),
                        &json!({"status": {"conditions": conditions}}),
                    )
                    .await
                    .map_err(|e| e.to_string())?;
            }
            self.mark_pods_not_ready(&node, now).await?;
            if !has_ours {
                let mut t = current.clone();
                let added = format_rfc3339(now);
                t.push(json!({"key": UNREACHABLE, "effect": "NoSchedule", "timeAdded": added}));
                t.push(json!({"key": UNREACHABLE, "effect": "NoExecute", "timeAdded": added}));
                self.client
                    .merge_patch("", "nodes", None, &key.1, None, &json!({"spec": {"taints": t}}))
                    .await
                    .map_err(|e| e.to_string())?;
                tracing::info!(node = %key.1, "node stopped heartbeating: tainted unreachable");
            }
        } else if has_ours {
            let t: Vec<Value> = current.into_iter().filter(|t| t["key"] != UNREACHABLE).collect();
            self.client
                .merge_patch("", "nodes", None, &key.1, None, &json!({"spec": {"taints": t}}))
                .await
                .map_err(|e| e.to_string())?;
        }
        let next = self.evict(&node, now).await?;
        // Heartbeats are checked every few seconds; evictions when their time comes.
        let period = (self.grace / 4).max(Duration::from_secs(1));
        Ok(Action::RequeueAfter(next.map_or(period, |n| n.min(period))))
    }

    /// Pods on a node that stopped heartbeating are no longer known to be ready: their Ready
    /// condition turns False, so endpoints take them out of rotation long before any eviction.
    /// The kubelet writes its own view again once it is back.
    async fn mark_pods_not_ready(&self, node: &Value, now: SystemTime) -> Result<(), String> {
        let name = owner::name(node);
        let ts = format_rfc3339(now);
        for pod in self.informers.pods.list().into_iter().filter(|p| p["spec"]["nodeName"] == name) {
            if !conditions::is_true(&pod, "Ready") {
                continue;
            }
            let marked: Vec<Value> = pod["status"]["conditions"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|c| {
                    let mut c = c.clone();
                    if c["type"] == "Ready" {
                        c["status"] = json!("False");
                        c["lastTransitionTime"] = json!(ts);
                    }
                    c
                })
                .collect();
            let patch = json!({"status": {"conditions": marked}});
            match self
                .client
                .merge_patch("", "pods", Some(owner::namespace(&pod)), owner::name(&pod), Some("status"), &patch)
                .await
            {
                Ok(_) => tracing::info!(pod = owner::name(&pod), node = name, "node unreachable: pod marked not ready"),
                Err(e) if e.is_not_found() => {}
                Err(e) => return Err(e.to_string()),
            }
        }
        Ok(())
    }

    /// Evicts pods that do not tolerate the node's NoExecute taints; returns when to look again
    /// for pods whose tolerationSeconds are still running.
    async fn evict(&self, node: &Value, now: SystemTime) -> Result<Option<Duration>, String> {
        let no_execute: Vec<Value> = taints(node).into_iter().filter(|t| t["effect"] == "NoExecute").collect();
        if no_execute.is_empty() {
            return Ok(None);
        }
        let mut next: Option<Duration> = None;
        let name = owner::name(node);
        for pod in
            self.informers.pods.list().into_iter().filter(|p| p["spec"]["nodeName"] == name && !owner::is_deleting(p))
        {
            let mut evict_at: Option<SystemTime> = Some(now);
            let mut forever = true;
            for t in &no_execute {
                let added = t["timeAdded"].as_str().and_then(parse_rfc3339).unwrap_or(now);
                match tolerates(&pod, t) {
                    None => {
                        forever = false;
                        evict_at = Some(now);
                        break;
                    }
                    Some(None) => {}
                    Some(Some(secs)) => {
                        forever = false;
                        let at = added + Duration::from_secs(secs.max(0) as u64);
                        evict_at = Some(evict_at.map_or(at, |e| if e == now { at } else { e.min(at) }));
                    }
                }
            }
            if forever {
                continue;
            }
            let at = evict_at.unwrap_or(now);
            if at <= now {
                tracing::info!(pod = owner::name(&pod), node = name, "evicting pod from tainted node");
                match self.client.delete("", "pods", Some(owner::namespace(&pod)), owner::name(&pod), "").await {
                    Ok(_) => {}
                    Err(e) if e.is_not_found() => {}
                    Err(e) => return Err(e.to_string()),
                }
            } else if let Ok(wait) = at.duration_since(now) {
                next = Some(next.map_or(wait, |n| n.min(wait)));
            }
        }
        Ok(next)
    }
}

impl Reconciler for NodeLifecycleController {
    fn name(&self) -> &'static str {
        "nodelifecycle"
    }
    fn reconcile(&self, key: ObjectKey) -> BoxFuture<'_, ReconcileResult> {
        Box::pin(self.sync(key))
    }
}

pub fn run(ctrl: Arc<NodeLifecycleController>) -> Vec<BoxFuture<'static, ()>> {
    let c = ctrl.clone();
    let feed: BoxFuture<'static, ()> = Box::pin(async move {
        let mut changes = c.informers.nodes.subscribe();
        c.informers.nodes.wait_synced().await;
        c.leases.wait_synced().await;
        for n in c.informers.nodes.list() {
            c.queue.add((String::new(), owner::name(&n).to_string()));
        }
        loop {
            match changes.recv().await {
                Ok(kubus_runtime::Change::Applied { new, .. }) => {
                    c.queue.add((String::new(), owner::name(&new).to_string()))
                }
                Ok(_) | Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {
                    for n in c.informers.nodes.list() {
                        c.queue.add((String::new(), owner::name(&n).to_string()));
                    }
                }
                Err(_) => return,
            }
        }
    });
    let queue = ctrl.queue.clone();
    let mut loops = controller::workers(ctrl, queue, 2);
    loops.push(feed);
    loops
}
