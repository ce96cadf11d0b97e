//! The node IPAM controller (upstream's range allocator): every node gets a pod CIDR, a
//! `node_mask` block of the cluster CIDR, in `spec.podCIDR(s)`. Its CNI plugins take pod IPs
//! from that block, so pods on different nodes never collide. Blocks already written on nodes
//! are taken as used (a new leader learns them from the informer); a freed block is reused.

use futures::future::BoxFuture;
use k8s_openapi::api::core::v1::Node;
use kubus_apimachinery::{ObjectExt, ObjectKey};
use kubus_controller_runtime::controller::{Action, Controller, Reconciler};
use kubus_controller_runtime::{Change, Client, ClientError, Informer, InformerFactory};
use serde_json::json;
use std::collections::HashSet;
use std::net::Ipv4Addr;
use std::sync::{Arc, Mutex};

/// Nodes by `spec.podCIDR`.
const BY_POD_CIDR: &str = "spec.podCIDR";

/// A `--cluster-cidr` that cannot be cut into node blocks.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CidrError {
    #[error("{0}: not a CIDR")]
    NotCidr(String),
    #[error("{0}: not an IPv4 address")]
    NotIpv4(String),
    #[error("{0}: bad prefix length")]
    BadPrefix(String),
    #[error("{cidr}: node blocks of /{node_mask} do not fit")]
    BlocksDoNotFit { cidr: String, node_mask: u8 },
}

/// Why an allocation failed; the key is retried with backoff.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Client(#[from] ClientError),
    #[error("no pod CIDR left in the cluster CIDR for node {0}")]
    Exhausted(String),
}

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
    pub fn parse(cidr: &str, node_mask: u8) -> Result<ClusterCidr, CidrError> {
        let (ip, prefix) = cidr.split_once('/').ok_or_else(|| CidrError::NotCidr(cidr.into()))?;
        let network: Ipv4Addr = ip.parse().map_err(|_| CidrError::NotIpv4(cidr.into()))?;
        let prefix: u8 = prefix.parse().map_err(|_| CidrError::BadPrefix(cidr.into()))?;
        if prefix > node_mask || node_mask > 30 {
            return Err(CidrError::BlocksDoNotFit { cidr: cidr.into(), node_mask });
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
    nodes: Informer<Node>,
    cidr: ClusterCidr,
    /// Blocks handed out by this leader whose node write the informer may not show yet.
    reserved: Arc<Mutex<HashSet<String>>>,
}

fn pod_cidr(node: &Node) -> Option<&str> {
    node.spec.as_ref()?.pod_cidr.as_deref().filter(|c| !c.is_empty())
}

/// Starts the controller; the future runs it until dropped.
pub fn run(client: Client, factory: &InformerFactory, cidr: ClusterCidr) -> BoxFuture<'static, ()> {
    let nodes = factory.get::<Node>();
    nodes.add_index(BY_POD_CIDR, |n: &Node| pod_cidr(n).map(String::from).into_iter().collect());
    let reserved: Arc<Mutex<HashSet<String>>> = Arc::default();
    // A deleted node's block is free again.
    let release = {
        let reserved = reserved.clone();
        move |change: &Change<Node>| {
            if let Change::Deleted(n) = change {
                if let Some(b) = pod_cidr(n) {
                    reserved.lock().expect("ipam lock").remove(b);
                }
            }
            Vec::new()
        }
    };
    // One worker: blocks are chosen one at a time, so two nodes never get the same one.
    // Only a node without a block has anything to do; Node status heartbeats wake nothing.
    let needs_block = |change: &Change<Node>| matches!(change, Change::Applied { new, .. } if pod_cidr(new).is_none());
    let ctrl = Controller::new("nodeipam", nodes.clone())
        .primary_changes(needs_block)
        .watches_changes(nodes.clone(), release)
        .workers(1);
    ctrl.run(Arc::new(NodeIpamController { client, nodes, cidr, reserved }))
}

impl NodeIpamController {
    /// The first block no node has and this leader has not just handed out.
    fn next_free(&self) -> Option<String> {
        let reserved = self.reserved.lock().expect("ipam lock");
        self.nodes.read(|c| {
            (0..self.cidr.blocks())
                .map(|i| self.cidr.block(i))
                .find(|b| c.count(BY_POD_CIDR, b) == 0 && !reserved.contains(b))
        })
    }

    async fn sync(&self, key: &ObjectKey) -> Result<Action, Error> {
        let Some(node) = self.nodes.get("", &key.1) else {
            return Ok(Action::Done);
        };
        if pod_cidr(&node).is_some() || node.is_deleting() {
            return Ok(Action::Done);
        }
        let block = self.next_free().ok_or_else(|| Error::Exhausted(key.1.clone()))?;
        self.reserved.lock().expect("ipam lock").insert(block.clone());
        let patch = json!({"spec": {"podCIDR": block, "podCIDRs": [block]}});
        match self.client.merge_patch::<Node>("", node.name(), &patch).await {
            Ok(_) => {
                tracing::info!(node = %key.1, pod_cidr = %block, "pod CIDR allocated");
                Ok(Action::Done)
            }
            Err(e) => {
                self.reserved.lock().expect("ipam lock").remove(&block);
                if e.is_not_found() {
                    Ok(Action::Done)
                } else {
                    Err(e.into())
                }
            }
        }
    }
}

impl Reconciler for NodeIpamController {
    type Error = Error;
    async fn reconcile(&self, key: &ObjectKey) -> Result<Action, Error> {
        self.sync(key).await
    }
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
        assert_eq!(
            ClusterCidr::parse("10.244.0.0/25", 24).unwrap_err().to_string(),
            "10.244.0.0/25: node blocks of /24 do not fit"
        );
        assert_eq!(ClusterCidr::parse("bogus", 24), Err(CidrError::NotCidr("bogus".into())));
        assert_eq!(ClusterCidr::parse("10.1.2/16", 24).unwrap_err().to_string(), "10.1.2/16: not an IPv4 address");
        assert_eq!(ClusterCidr::parse("10.0.0.0/x", 24).unwrap_err().to_string(), "10.0.0.0/x: bad prefix length");
    }
}
