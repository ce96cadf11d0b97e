//! The node's route controller: keeps a route to every other node's pod CIDR via that node's
//! address ([`kubus_network::PodRoutes`]), from the Nodes informer. Upstream leaves this
//! to a cloud route controller or a CNI daemon (flannel host-gw); here it is one actor of the
//! node agent, so a second machine's pods are reachable as soon as its Node has a pod CIDR.

use actix::prelude::*;
use k8s_openapi::api::core::v1::Node;
use kubus_apimachinery::ObjectExt;
use kubus_controller_runtime::informer::Change;
use kubus_controller_runtime::Informer;
use kubus_network::{PodRoutes, RouteSyncStats, RouteTable};
use prometheus::{register_int_counter_vec, register_int_gauge, IntCounterVec, IntGauge};
use std::collections::BTreeSet;
use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::LazyLock;
use std::time::Duration;

static ROUTES: LazyLock<IntGauge> = LazyLock::new(|| {
    register_int_gauge!("kubus_node_pod_routes", "Routes to other nodes' pod CIDRs installed by this node")
        .expect("registers once")
});

static ROUTE_SYNCS: LazyLock<IntCounterVec> = LazyLock::new(|| {
    register_int_counter_vec!(
        "kubus_node_route_syncs_total",
        "Syncs of the routes to other nodes' pod CIDRs, by result (success, partial, error)",
        &["result"]
    )
    .expect("registers once")
});

/// Node changes within this window are applied together (a cluster start registers many).
const COALESCE: Duration = Duration::from_millis(200);
/// A periodic resync repairs routes deleted behind the agent's back and retries refused ones.
const RESYNC: Duration = Duration::from_secs(30);

pub struct RouteController {
    node_name: String,
    state_dir: PathBuf,
    nodes: Informer<Node>,
    /// None while a sync runs on the blocking pool.
    routes: Option<PodRoutes>,
    dirty: bool,
    pending: Option<SpawnHandle>,
    synced: bool,
    /// Pod CIDRs whose route the kernel refused (already logged).
    refused: BTreeSet<String>,
    /// The table last applied without a failure: a Node change that leaves it as it is (a
    /// status heartbeat) costs no `ip` call; the periodic resync forgets it to repair.
    applied: Option<RouteTable>,
}

#[derive(Message)]
#[rtype(result = "()")]
struct Changed;

impl RouteController {
    /// `nodes`: the Nodes informer; routes are kept in `<state_dir>/routes.json`.
    pub fn new(node_name: String, state_dir: PathBuf, nodes: Informer<Node>) -> Self {
        RouteController {
            node_name,
            state_dir,
            nodes,
            routes: None,
            dirty: false,
            pending: None,
            synced: false,
            refused: BTreeSet::new(),
            applied: None,
        }
    }

    fn schedule(&mut self, ctx: &mut Context<Self>) {
        if self.synced && self.pending.is_none() {
            self.pending = Some(ctx.run_later(COALESCE, |this, ctx| {
                this.pending = None;
                this.sync(ctx);
            }));
        }
    }

    fn sync(&mut self, ctx: &mut Context<Self>) {
        let desired = self.nodes.read(|cache| desired_routes(&self.node_name, cache.values().map(|n| n.as_ref())));
        if self.applied.as_ref() == Some(&desired) {
            return;
        }
        let Some(mut routes) = self.routes.take() else {
            self.dirty = true;
            return;
        };
        let span = tracing::info_span!("pod_routes_sync", routes = desired.len());
        let task = tokio::task::spawn_blocking(move || {
            let _entered = span.entered();
            let result = routes.sync(&desired);
            (routes, result, desired)
        });
        ctx.spawn(task.into_actor(self).map(|joined, this, ctx| {
            match joined {
                Ok((routes, result, desired)) => {
                    this.applied = result.as_ref().is_ok_and(|s| s.failed.is_empty()).then_some(desired);
                    report(result, &mut this.refused);
                    this.routes = Some(routes);
                }
                Err(e) => {
                    tracing::error!(error = %e, "route sync panicked");
                    ROUTE_SYNCS.with_label_values(&["error"]).inc();
                    this.routes = PodRoutes::load(&this.state_dir).ok();
                }
            }
            if std::mem::take(&mut this.dirty) {
                this.schedule(ctx);
            }
        }));
    }
}

/// Whether a Node change can change this node's routes: its route before and after differ.
pub fn moves_a_route(own_node: &str, change: &Change<Node>) -> bool {
    match change {
        Change::Applied { old: Some(old), new } => {
            desired_routes(own_node, [old.as_ref()]) != desired_routes(own_node, [new.as_ref()])
        }
        Change::Applied { old: None, .. } | Change::Deleted(_) | Change::Resynced => true,
    }
}

/// The routes a node wants from the Node objects: every other node's `spec.podCIDRs` (or
/// `podCIDR`) via its InternalIP of the same family (ExternalIP when it has none); simulated
/// nodes are left out.
pub fn desired_routes<'a>(own_node: &str, nodes: impl IntoIterator<Item = &'a Node>) -> RouteTable {
    let mut table = RouteTable::new();
    for node in nodes {
        // Simulated nodes (`--sim-nodes`) have made-up addresses and no pods to reach.
        if node.name() == own_node || node.annotation("kubus.io/simulated") == Some("true") {
            continue;
        }
        let addresses: Vec<(&str, IpAddr)> = node
            .status
            .as_ref()
            .and_then(|s| s.addresses.as_ref())
            .into_iter()
            .flatten()
            .filter_map(|a| Some((a.type_.as_str(), a.address.parse().ok()?)))
            .collect();
        let spec = node.spec.as_ref();
        let cidrs: Vec<&str> = match spec.and_then(|s| s.pod_cidrs.as_ref()) {
            Some(list) if !list.is_empty() => list.iter().map(String::as_str).collect(),
            _ => spec.and_then(|s| s.pod_cidr.as_deref()).into_iter().collect(),
        };
        for cidr in cidrs {
            let v6 = cidr.contains(':');
            let via = ["InternalIP", "ExternalIP"]
                .iter()
                .find_map(|kind| addresses.iter().find(|(t, a)| t == kind && a.is_ipv6() == v6).map(|(_, a)| *a));
            if let Some(via) = via {
                table.insert(cidr.to_string(), via);
            }
        }
    }
    table
}

/// Logs and counts a sync; a refused route is logged when it first fails, not on every resync.
fn report(result: Result<RouteSyncStats, kubus_network::RouteError>, refused: &mut BTreeSet<String>) {
    match result {
        Ok(stats) => {
            ROUTES.set(stats.installed as i64);
            if stats.failed.is_empty() {
                ROUTE_SYNCS.with_label_values(&["success"]).inc();
            } else {
                ROUTE_SYNCS.with_label_values(&["partial"]).inc();
                for (cidr, error) in &stats.failed {
                    if refused.insert(cidr.clone()) {
                        tracing::warn!(%cidr, %error, "no route to this node's pods (is its address on a link of this host?)");
                    }
                }
            }
            refused.retain(|cidr| stats.failed.iter().any(|(c, _)| c == cidr));
            if stats.removed > 0 {
                tracing::info!(removed = stats.removed, installed = stats.installed, "pod routes updated");
            }
        }
        Err(e) => {
            ROUTE_SYNCS.with_label_values(&["error"]).inc();
            tracing::warn!(error = %e, "pod routes not synced");
        }
    }
}

impl Actor for RouteController {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        match PodRoutes::load(&self.state_dir) {
            Ok(r) => self.routes = Some(r),
            Err(e) => {
                tracing::error!(error = %e, "route controller cannot keep its state; not started");
                ctx.stop();
                return;
            }
        }
        // Only changes that move a route wake the controller: the status heartbeats of
        // thousands of nodes change none (upstream applies only the changed Node's route).
        let mut changes = self.nodes.subscribe();
        let own = self.node_name.clone();
        let addr = ctx.address();
        ctx.spawn(
            async move {
                loop {
                    let relevant = match changes.recv().await {
                        Ok(change) => moves_a_route(&own, &change),
                        Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => true,
                        Err(tokio::sync::broadcast::error::RecvError::Closed) => return,
                    };
                    if relevant {
                        addr.do_send(Changed);
                    }
                }
            }
            .into_actor(self),
        );
        ctx.run_interval(RESYNC, |this, ctx| {
            this.applied = None;
            this.schedule(ctx);
        });
        let nodes = self.nodes.clone();
        ctx.spawn(async move { nodes.wait_synced().await }.into_actor(self).map(|_, this, ctx| {
            // Only a full cache may remove routes: an empty one would look like "all nodes gone".
            this.synced = true;
            this.sync(ctx);
        }));
    }
}

impl Handler<Changed> for RouteController {
    type Result = ();
    fn handle(&mut self, _: Changed, ctx: &mut Context<Self>) {
        self.schedule(ctx);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use std::sync::Arc;

    fn node(v: serde_json::Value) -> Node {
        serde_json::from_value(v).unwrap()
    }

    fn simple(name: &str, cidr: Option<&str>, addresses: &[(&str, &str)]) -> Node {
        let addresses: Vec<_> = addresses.iter().map(|(t, a)| json!({"type": t, "address": a})).collect();
        node(json!({"metadata": {"name": name}, "spec": {"podCIDR": cidr}, "status": {"addresses": addresses}}))
    }

    #[test]
    fn other_nodes_cidrs_via_their_internal_ip() {
        let nodes = [
            simple("a", Some("10.244.0.0/24"), &[("InternalIP", "192.168.1.10")]),
            simple("b", Some("10.244.1.0/24"), &[("Hostname", "b"), ("InternalIP", "192.168.1.11")]),
            simple("c", None, &[("InternalIP", "192.168.1.12")]),
            simple("d", Some("10.244.3.0/24"), &[("ExternalIP", "203.0.113.4")]),
            simple("e", Some("10.244.4.0/24"), &[("Hostname", "e")]),
            {
                let mut sim = simple("sim-1", Some("10.244.5.0/24"), &[("InternalIP", "172.16.0.2")]);
                sim.metadata.annotations = Some([("kubus.io/simulated".to_string(), "true".to_string())].into());
                sim
            },
        ];
        let table = desired_routes("a", &nodes);
        let expected: RouteTable = [
            ("10.244.1.0/24".to_string(), "192.168.1.11".parse().unwrap()),
            ("10.244.3.0/24".to_string(), "203.0.113.4".parse().unwrap()),
        ]
        .into();
        assert_eq!(table, expected);
    }

    #[test]
    fn dual_stack_cidrs_take_the_address_of_their_family() {
        let n = node(json!({"metadata": {"name": "b"},
            "spec": {"podCIDR": "10.244.1.0/24", "podCIDRs": ["10.244.1.0/24", "fd00:1::/64"]},
            "status": {"addresses": [{"type": "InternalIP", "address": "fd00::b"}, {"type": "InternalIP", "address": "10.0.0.11"}]}}));
        let table = desired_routes("a", [&n]);
        assert_eq!(table["10.244.1.0/24"].to_string(), "10.0.0.11");
        assert_eq!(table["fd00:1::/64"].to_string(), "fd00::b");
    }

    #[test]
    fn only_changes_that_move_a_route_wake_the_controller() {
        let before = Arc::new(simple("n2", Some("10.244.2.0/24"), &[("InternalIP", "192.168.1.12")]));
        let mut heartbeat = (*before).clone();
        heartbeat.metadata.resource_version = Some("99".into());
        heartbeat.metadata.labels = Some([("a".to_string(), "b".to_string())].into());
        let change = |old: &Arc<Node>, new: Node| Change::Applied { old: Some(old.clone()), new: Arc::new(new) };
        assert!(!moves_a_route("n1", &change(&before, heartbeat)));
        let moved = simple("n2", Some("10.244.2.0/24"), &[("InternalIP", "192.168.1.99")]);
        assert!(moves_a_route("n1", &change(&before, moved)));
        let cidr = simple("n2", Some("10.244.7.0/24"), &[("InternalIP", "192.168.1.12")]);
        assert!(moves_a_route("n1", &change(&before, cidr)));
        assert!(moves_a_route("n1", &Change::Deleted(before.clone())));
        assert!(moves_a_route("n1", &Change::Applied { old: None, new: before }));
    }
}
