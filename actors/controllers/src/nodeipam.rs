//! The node IPAM controller (upstream's range allocator): every node gets a pod CIDR, a
//! `node_mask` block of the cluster CIDR, in `spec.podCIDR(s)`. Its CNI plugins take pod IPs
//! from that block, so pods on different nodes never collide. Blocks already written on nodes
//! are taken as used (a new leader learns them from the informer); a freed block is reused.

use crate::owner;
use crate::Informers;
use futures::future::BoxFuture;
use kubus_runtime::controller::{self, Action, ReconcileResult, Reconciler};
use kubus_runtime::informer::ObjectKey;
use kubus_runtime::{Change, Client, WorkQueue};
use serde_json::json;
use std::collections::HashSet;
use std::net::Ipv4Addr;
use std::sync::{Arc, Mutex};

/// The range pod CIDRs are cut from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClusterCidr {
    pub network: Ipv4Addr,
    pub prefix: u8,
    /// Prefix length of each node's block (upstream default 24).
    pub node_mask: u8,
}

impl ClusterCidr {
    /// Parses `a.b.c.d/n`; the node blocks must fit inside.
    pub fn parse(cidr: &str, node_mask: u8) -> Result<ClusterCidr, String> {
        let (ip, prefix) = cidr.split_once('/').ok_or_else(|| format!("{cidr}: not a CIDR"))?;
        let network: Ipv4Addr = ip.parse().map_err(|_| format!("{cidr}: not an IPv4 address"))?;
        let prefix: u8 = prefix.parse().map_err(|_| format!("{cidr}: bad prefix length"))?;
        if prefix > node_mask || node_mask > 30 {
            return Err(format!("{cidr}: node blocks of /{node_mask} do not fit"));
        }
        let mask = if prefix == 0 { 0 } else { u32::MAX << (32 - prefix) };
        Ok(ClusterCidr { network: Ipv4Addr::from(u32::from(network) & mask), prefix, node_mask })
    }

    fn blocks(&self) -> u32 {
        1u32 << (self.node_mask - self.prefix).min(31)
    }

    fn block(&self, i: u32) -> String {
        let base = u32::from(self.network) + (i << (32 - self.node_mask));
        format!("{}/{}", Ipv4Addr::from(base), self.node_mask)
    }
}

pub struct NodeIpamController {
    client: Client,
    informers: Informers,
    cidr: ClusterCidr,
    /// Blocks handed out by this leader whose node write the informer may not show yet.
    reserved: Mutex<HashSet<String>>,
    queue: Arc<WorkQueue<ObjectKey>>,
}

impl NodeIpamController {
    pub fn new(client: Client, informers: Informers, cidr: ClusterCidr) -> Self {
        NodeIpamController { client, informers, cidr, reserved: Mutex::default(), queue: WorkQueue::new("nodeipam") }
    }

    fn enqueue_all(&self) {
        for n in self.informers.nodes.list() {
            self.queue.add((String::new(), owner::name(&n).to_string()));
        }
    }

    fn next_free(&self) -> Option<String> {
        let mut used: HashSet<String> = self
            .informers
            .nodes
            .list()
            .iter()
            .filter_map(|n| n["spec"]["podCIDR"].as_str().map(String::from))
            .collect();
        let reserved = self.reserved.lock().expect("ipam lock");
        used.extend(reserved.iter().cloned());
        (0..self.cidr.blocks()).map(|i| self.cidr.block(i)).find(|b| !used.contains(b))
    }

    async fn sync(&self, key: ObjectKey) -> ReconcileResult {
        let Some(node) = self.informers.nodes.get("", &key.1) else {
            return Ok(Action::Done);
        };
        if node["spec"]["podCIDR"].as_str().is_some_and(|c| !c.is_empty()) || owner::is_deleting(&node) {
            return Ok(Action::Done);
        }
        let Some(block) = self.next_free() else {
            return Err(format!("no pod CIDR left in the cluster CIDR for node {}", key.1));
        };
        self.reserved.lock().expect("ipam lock").insert(block.clone());
        let patch = json!({"spec": {"podCIDR": block, "podCIDRs": [block]}});
        let result = self.client.merge_patch("", "nodes", None, &key.1, None, &patch).await;
        match result {
            Ok(_) => {
                tracing::info!(node = %key.1, pod_cidr = %block, "pod CIDR allocated");
                Ok(Action::Done)
            }
            Err(e) => {
                self.reserved.lock().expect("ipam lock").remove(&block);
                if e.is_not_found() {
                    Ok(Action::Done)
                } else {
                    Err(e.to_string())
                }
            }
        }
    }
}

impl Reconciler for NodeIpamController {
    fn name(&self) -> &'static str {
        "nodeipam"
    }
    fn reconcile(&self, key: ObjectKey) -> BoxFuture<'_, ReconcileResult> {
        Box::pin(self.sync(key))
    }
}

pub fn run(ctrl: Arc<NodeIpamController>) -> Vec<BoxFuture<'static, ()>> {
    let c = ctrl.clone();
    let feed: BoxFuture<'static, ()> = Box::pin(async move {
        let mut changes = c.informers.nodes.subscribe();
        c.informers.nodes.wait_synced().await;
        c.enqueue_all();
        loop {
            match changes.recv().await {
                Ok(Change::Applied { new, .. }) => c.queue.add((String::new(), owner::name(&new).to_string())),
                Ok(Change::Deleted(n)) => {
                    if let Some(b) = n["spec"]["podCIDR"].as_str() {
                        c.reserved.lock().expect("ipam lock").remove(b);
                    }
                }
                Ok(Change::Resynced) | Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => c.enqueue_all(),
                Err(_) => return,
            }
        }
    });
    let queue = ctrl.queue.clone();
    // One worker: blocks are chosen one at a time, so two nodes never get the same one.
    let mut loops = controller::workers(ctrl, queue, 1);
    loops.push(feed);
    loops
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blocks_of_the_cluster_cidr() {
        let c = ClusterCidr::parse("10.244.0.0/16", 24).unwrap();
        assert_eq!(c.blocks(), 256);
        assert_eq!(c.block(0), "10.244.0.0/24");
        assert_eq!(c.block(255), "10.244.255.0/24");
        assert_eq!(ClusterCidr::parse("10.244.3.9/16", 24).unwrap().network, Ipv4Addr::new(10, 244, 0, 0));
        assert!(ClusterCidr::parse("10.244.0.0/25", 24).is_err());
        assert!(ClusterCidr::parse("bogus", 24).is_err());
    }
}
