//! The node's heartbeat: registration (retried until the API answers), then the Lease renewed
//! every quarter of its duration and the status written when it changes (or every minute).
//! The pod network starts here too, once the node has a pod CIDR.

use crate::context::NodeContext;
use crate::node::{self, StatusInput};
use crate::reset::SavedNetwork;
use k8s_openapi::api::core::v1::{Node, NodeStatus};
use kubus_apimachinery::conditions;
use serde_json::json;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Registers the node (retrying until the API answers), then renews the Lease every quarter
/// of its duration and writes the status when it changes (or every minute).
pub async fn register_and_heartbeat(c: Arc<NodeContext>) {
    let config = c.config();
    let name = config.node_name.clone();
    let node_object = || node::node_object(&name, c.host.machine.arch, &config.labels, config.pod_cidr.as_deref());
    let mut backoff = Duration::from_millis(200);
    loop {
        match c.client.create(&node_object()).await {
            Ok(_) => break,
            Err(e) if e.is_conflict() || e.is_already_exists() => {
                // Registered before: what this agent runs may have changed since.
                let patch =
                    serde_json::json!({"metadata": {"annotations": {node::NODE_DRIVERS: node::drivers(&name)}}});
                let _ = c.client.merge_patch::<Node>("", &name, &patch).await;
                break;
            }
            Err(e) => {
                tracing::warn!(error = %e, "node registration failed; retrying");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(5));
            }
        }
    }
    tracing::info!(node = %name, "node registered");
    let renew = config.lease_duration / 4;
    let mut last_gc = Instant::now();
    let mut last_status = None::<NodeStatus>;
    let mut last_write = Instant::now();
    let mut failed_renewals = 0u32;
    loop {
        let current = c.client.get::<Node>("", &name).await.ok();
        let not_ready = start_network(&c, current.as_ref()).await;
        match kubus_controller_runtime::node_lease::renew(&c.client, &name, config.lease_duration.as_secs()).await {
            Ok(()) => failed_renewals = 0,
            Err(e) => {
                tracing::warn!(error = %e, "lease renewal failed");
                failed_renewals += 1;
                // As upstream's kubelet closes its connections after repeated heartbeat
                // failures: a TCP connection that lived through a network cut can sit in
                // retransmission back-off for tens of seconds after the network is back, while
                // a new one connects at once.
                if failed_renewals == 2 {
                    tracing::warn!("lease renewals keep failing: reconnecting to NATS");
                    if let Err(e) = c.nats.force_reconnect().await {
                        tracing::warn!(error = %e, "NATS reconnect failed");
                    }
                }
            }
        }
        let hostname = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default().trim().to_string();
        let images = c.images.list().into_iter().map(|i| (i.names.clone(), i.size)).collect();
        let status = node::node_status(&StatusInput {
            name: &name,
            machine: &c.host.machine,
            max_pods: config.max_pods,
            ip: c.host.node_ip,
            hostname: &hostname,
            images,
            not_ready,
            previous: current.as_ref(),
        });
        let changed = last_status.as_ref() != Some(&node::without_times(&status));
        // The node lifecycle controller sets Ready=Unknown while this agent was unreachable:
        // the agent's own view is written back as soon as it can reach the API again.
        let overwritten = current.as_ref().is_some_and(|n| {
            conditions::status(conditions::of_node(n), "Ready")
                != conditions::status(status.conditions.as_ref(), "Ready")
        });
        if changed || overwritten || last_write.elapsed() >= Duration::from_secs(60) {
            match c.client.merge_patch_status::<Node>("", &name, &json!({ "status": status })).await {
                Ok(_) => {
                    last_status = Some(node::without_times(&status));
                    last_write = Instant::now();
                }
                Err(e) if e.is_not_found() => {
                    // Someone deleted the node: register again.
                    let _ = c.client.create(&node_object()).await;
                    last_status = None;
                }
                Err(e) => tracing::warn!(error = %e, "node status update failed"),
            }
        }
        if last_gc.elapsed() >= Duration::from_secs(300) {
            last_gc = Instant::now();
            crate::image_gc::image_gc(&c.images, c.host.runtime.as_ref()).await;
        }
        tokio::time::sleep(if c.network.read().await.is_none() { Duration::from_secs(1) } else { renew }).await;
    }
}

/// Starts the pod network once the node has a pod CIDR (its own, or the one the IPAM
/// controller assigned); the reason the node is not ready while it cannot.
async fn start_network(c: &NodeContext, current: Option<&Node>) -> Option<String> {
    if c.network.read().await.is_some() {
        return None;
    }
    let config = c.config();
    let assigned = current.and_then(|n| n.spec.as_ref()?.pod_cidr.clone()).filter(|s| !s.is_empty());
    let Some(cidr) = config.pod_cidr.clone().or(assigned) else {
        return Some("network plugin not ready: waiting for a pod CIDR".to_string());
    };
    let mut cfg = kubus_network::NetworkConfig::new(config.state_dir.join("network"), cidr.clone());
    cfg.bridge = config.bridge.clone();
    cfg.cluster_cidr = config.cluster_cidr.clone();
    // `node-reset` undoes the network with the same configuration after this agent is gone.
    let saved = SavedNetwork {
        pod_cidr: cidr.clone(),
        cluster_cidr: config.cluster_cidr.clone(),
        bridge: config.bridge.clone(),
    };
    let _ = saved.save(&config.state_dir);
    match kubus_network::SandboxManager::new(cfg) {
        Ok(m) => {
            tracing::info!(pod_cidr = %cidr, "pod network ready");
            *c.network.write().await = Some(m);
            None
        }
        Err(e) => Some(format!("pod network: {e}")),
    }
}
