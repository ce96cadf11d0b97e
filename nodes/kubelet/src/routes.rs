//! The node's route controller: keeps a route to every other node's pod CIDR via that node's
//! address ([`kubus_network::PodRoutes`]), from the Nodes informer. Upstream leaves this
//! to a cloud route controller or a CNI daemon (flannel host-gw); here it is one actor of the
//! node agent, so a second machine's pods are reachable as soon as its Node has a pod CIDR.
//!
//! The routes the Nodes ask for are kept per Node ([`DesiredRoutes`]) from the informer's
//! events, so a Node change moves only that Node's routes (upstream's route controllers apply
//! only the changed Node too). Every route is recomputed from the cache only at the first sync
//! and on an informer resync or lag; a periodic repair compares the kernel's routes with the
//! desired ones.

use actix::prelude::*;
use k8s_openapi::api::core::v1::Node;
use kubus_apimachinery::ObjectExt;
use kubus_controller_runtime::informer::Change;
use kubus_controller_runtime::Informer;
use kubus_network::{PodRoutes, RouteSyncStats, RouteTable};
use prometheus::{register_int_counter_vec, register_int_gauge, IntCounterVec, IntGauge};
use std::collections::{BTreeMap, BTreeSet, HashMap};
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
/// A periodic repair restores routes deleted behind the agent's back and retries refused ones.
const REPAIR: Duration = Duration::from_secs(30);

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
    /// The routes the Nodes ask for, kept from the informer's events.
    desired: DesiredRoutes,
    /// Pod CIDRs whose route changed since the last sync.
    moved: BTreeSet<String>,
    /// Rebuild `desired` from the cache and sync every route: the first sync, an informer
    /// resync or lag.
    rebuild: bool,
    /// Compare every desired route with the kernel's (periodically, and after an error).
    repair: bool,
}

#[derive(Message)]
#[rtype(result = "()")]
struct NodeChanged(Change<Node>);

/// What one sync does on the blocking pool.
enum Work {
    /// Every route (from the desired table).
    Sync(RouteTable),
    /// Single routes: each pod CIDR to its gateway, or away.
    Update(Vec<(String, Option<IpAddr>)>),
}

impl RouteController {
    /// `nodes`: the Nodes informer; routes are kept in `<state_dir>/routes.json`.
    pub fn new(node_name: String, state_dir: PathBuf, nodes: Informer<Node>) -> Self {
        RouteController {
            desired: DesiredRoutes::new(&node_name),
            node_name,
            state_dir,
            nodes,
            routes: None,
            dirty: false,
            pending: None,
            synced: false,
            refused: BTreeSet::new(),
            moved: BTreeSet::new(),
            rebuild: true,
            repair: false,
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
        if !self.rebuild && !self.repair && self.moved.is_empty() {
            return;
        }
        let Some(mut routes) = self.routes.take() else {
            self.dirty = true;
            return;
        };
        let moved = std::mem::take(&mut self.moved);
        let work = if std::mem::take(&mut self.rebuild) {
            self.repair = false;
            self.desired =
                self.nodes.read(|cache| DesiredRoutes::from_nodes(&self.node_name, cache.values().map(|n| n.as_ref())));
            Work::Sync(self.desired.table())
        } else if std::mem::take(&mut self.repair) {
            Work::Sync(self.desired.table())
        } else {
            Work::Update(moved.iter().map(|cidr| (cidr.clone(), self.desired.route(cidr))).collect())
        };
        let span = match &work {
            Work::Sync(table) => tracing::info_span!("pod_routes_sync", routes = table.len()),
            Work::Update(changes) => tracing::info_span!("pod_routes_update", moved = changes.len()),
        };
        let task = tokio::task::spawn_blocking(move || {
            let _entered = span.entered();
            let result = match &work {
                Work::Sync(table) => routes.sync(table),
                Work::Update(changes) => routes.update(changes),
            };
            (routes, result, work)
        });
        ctx.spawn(task.into_actor(self).map(|joined, this, ctx| {
            match joined {
                Ok((routes, result, work)) => {
                    // Routes that could not be written are retried by the next repair.
                    this.repair |= !result.as_ref().is_ok_and(|s| s.failed.is_empty());
                    let scope = match &work {
                        Work::Sync(_) => None,
                        Work::Update(changes) => Some(changes.iter().map(|(cidr, _)| cidr.as_str()).collect()),
                    };
                    report(result, scope, &mut this.refused);
                    this.routes = Some(routes);
                }
                Err(e) => {
                    tracing::error!(error = %e, "route sync panicked");
                    ROUTE_SYNCS.with_label_values(&["error"]).inc();
                    this.routes = PodRoutes::load(&this.state_dir).ok();
                    this.repair = true;
                }
            }
            if std::mem::take(&mut this.dirty) {
                this.schedule(ctx);
            }
        }));
    }
}

/// Whether a Node change can change this node's routes: its routes before and after differ.
pub fn moves_a_route(own_node: &str, change: &Change<Node>) -> bool {
    match change {
        Change::Applied { old: Some(old), new } => node_routes(own_node, old) != node_routes(own_node, new),
        Change::Applied { old: None, .. } | Change::Deleted(_) | Change::Resynced => true,
    }
}

/// The routes one Node asks of this node: its `spec.podCIDRs` (or `podCIDR`) via its
/// InternalIP of the same family (ExternalIP when it has none); none for this node itself and
/// for simulated nodes.
pub fn node_routes(own_node: &str, node: &Node) -> RouteTable {
    let mut table = RouteTable::new();
    // Simulated nodes (`--sim-nodes`) have made-up addresses and no pods to reach.
    if node.name() == own_node || node.annotation("kubus.io/simulated") == Some("true") {
        return table;
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
    table
}

/// The routes the Nodes ask for, kept per Node so that a Node change touches only its own.
#[derive(Debug, Default)]
pub struct DesiredRoutes {
    own_node: String,
    by_node: HashMap<String, RouteTable>,
    /// The Nodes asking for each pod CIDR: one, or two while a CIDR passes from a Node being
    /// deleted to a new one.
    claims: BTreeMap<String, BTreeSet<String>>,
}

impl DesiredRoutes {
    pub fn new(own_node: &str) -> Self {
        DesiredRoutes { own_node: own_node.to_string(), ..Default::default() }
    }

    /// Every Node's routes.
    pub fn from_nodes<'a>(own_node: &str, nodes: impl IntoIterator<Item = &'a Node>) -> Self {
        let mut desired = DesiredRoutes::new(own_node);
        for node in nodes {
            desired.set(node.name(), Some(node));
        }
        desired
    }

    /// Records one Node's routes (None: it is deleted) and returns the pod CIDRs whose route
    /// may have changed.
    pub fn set(&mut self, name: &str, node: Option<&Node>) -> BTreeSet<String> {
        let new = node.map(|n| node_routes(&self.own_node, n)).unwrap_or_default();
        let old = match new.is_empty() {
            true => self.by_node.remove(name),
            false => self.by_node.insert(name.to_string(), new.clone()),
        }
        .unwrap_or_default();
        let mut moved = BTreeSet::new();
        for (cidr, via) in &old {
            if new.get(cidr) == Some(via) {
                continue;
            }
            if !new.contains_key(cidr) {
                if let Some(claims) = self.claims.get_mut(cidr) {
                    claims.remove(name);
                    if claims.is_empty() {
                        self.claims.remove(cidr);
                    }
                }
            }
            moved.insert(cidr.clone());
        }
        for (cidr, via) in &new {
            if old.get(cidr) != Some(via) {
                self.claims.entry(cidr.clone()).or_default().insert(name.to_string());
                moved.insert(cidr.clone());
            }
        }
        moved
    }

    /// The gateway of a pod CIDR: that of the first Node (by name) asking for it.
    pub fn route(&self, cidr: &str) -> Option<IpAddr> {
        let node = self.claims.get(cidr)?.first()?;
        self.by_node.get(node)?.get(cidr).copied()
    }

    /// Every route.
    pub fn table(&self) -> RouteTable {
        self.claims.keys().filter_map(|cidr| Some((cidr.clone(), self.route(cidr)?))).collect()
    }
}

/// Logs and counts a sync of every route (`scope` None) or of some pod CIDRs; a refused route
/// is logged when it first fails, not on every repair.
fn report(
    result: Result<RouteSyncStats, kubus_network::RouteError>,
    scope: Option<BTreeSet<&str>>,
    refused: &mut BTreeSet<String>,
) {
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
            refused.retain(|cidr| {
                scope.as_ref().is_some_and(|s| !s.contains(cidr.as_str()))
                    || stats.failed.iter().any(|(c, _)| c == cidr)
            });
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
        // thousands of nodes change none.
        let mut changes = self.nodes.subscribe();
        let own = self.node_name.clone();
        let addr = ctx.address();
        ctx.spawn(
            async move {
                loop {
                    let change = match changes.recv().await {
                        Ok(change) => change,
                        Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => Change::Resynced,
                        Err(tokio::sync::broadcast::error::RecvError::Closed) => return,
                    };
                    if moves_a_route(&own, &change) {
                        addr.do_send(NodeChanged(change));
                    }
                }
            }
            .into_actor(self),
        );
        ctx.run_interval(REPAIR, |this, ctx| {
            this.repair = true;
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

impl Handler<NodeChanged> for RouteController {
    type Result = ();
    fn handle(&mut self, NodeChanged(change): NodeChanged, ctx: &mut Context<Self>) {
        match change {
            Change::Applied { new, .. } => self.moved.extend(self.desired.set(new.name(), Some(&new))),
            Change::Deleted(old) => self.moved.extend(self.desired.set(old.name(), None)),
            Change::Resynced => self.rebuild = true,
        }
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
        let table = DesiredRoutes::from_nodes("a", &nodes).table();
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
        let table = DesiredRoutes::from_nodes("a", [&n]).table();
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

    fn via(s: &str) -> Option<IpAddr> {
        Some(s.parse().unwrap())
    }

    #[test]
    fn a_node_change_moves_only_that_nodes_routes() {
        let nodes: Vec<Node> = (1..=50)
            .map(|i| {
                let (cidr, address) = (format!("10.244.{i}.0/24"), format!("192.168.1.{i}"));
                simple(&format!("n{i}"), Some(&cidr), &[("InternalIP", &address)])
            })
            .collect();
        let mut desired = DesiredRoutes::from_nodes("n1", &nodes);
        assert_eq!(desired.table().len(), 49);
        // A heartbeat (nothing of its route changes) moves nothing.
        let mut heartbeat = nodes[9].clone();
        heartbeat.metadata.resource_version = Some("7".into());
        assert!(desired.set("n10", Some(&heartbeat)).is_empty());
        // A new address moves its one route.
        let moved = simple("n10", Some("10.244.10.0/24"), &[("InternalIP", "192.168.2.10")]);
        assert_eq!(desired.set("n10", Some(&moved)), BTreeSet::from(["10.244.10.0/24".to_string()]));
        assert_eq!(desired.route("10.244.10.0/24"), via("192.168.2.10"));
        // A new pod CIDR: the old one goes, the new one comes.
        let recidr = simple("n10", Some("10.244.99.0/24"), &[("InternalIP", "192.168.2.10")]);
        let touched = desired.set("n10", Some(&recidr));
        assert_eq!(touched, BTreeSet::from(["10.244.10.0/24".to_string(), "10.244.99.0/24".to_string()]));
        assert_eq!(desired.route("10.244.10.0/24"), None);
        // A deleted Node's route goes; a new one's comes; this node's own is never a route.
        assert_eq!(desired.set("n20", None), BTreeSet::from(["10.244.20.0/24".to_string()]));
        assert_eq!(desired.route("10.244.20.0/24"), None);
        let added = simple("n51", Some("10.244.51.0/24"), &[("InternalIP", "192.168.1.51")]);
        assert_eq!(desired.set("n51", Some(&added)).len(), 1);
        assert!(desired.set("n1", Some(&nodes[0])).is_empty());
        // Whatever the order of changes, the table is what a full computation gives.
        let mut now: Vec<Node> = nodes.iter().filter(|n| n.name() != "n20" && n.name() != "n10").cloned().collect();
        now.extend([recidr, added]);
        assert_eq!(desired.table(), DesiredRoutes::from_nodes("n1", &now).table());
    }

    #[test]
    fn a_pod_cidr_passing_between_nodes_keeps_a_route() {
        let old = simple("old", Some("10.244.5.0/24"), &[("InternalIP", "192.168.1.5")]);
        let new = simple("new", Some("10.244.5.0/24"), &[("InternalIP", "192.168.1.6")]);
        let mut desired = DesiredRoutes::from_nodes("self", [&old]);
        // The new Node is created before the old one's delete is seen: while both ask for the
        // CIDR, the first by name has it; the route stays when the old one goes.
        assert_eq!(desired.set("new", Some(&new)).len(), 1);
        assert_eq!(desired.route("10.244.5.0/24"), via("192.168.1.6"));
        assert_eq!(desired.set("old", None).len(), 1);
        assert_eq!(desired.route("10.244.5.0/24"), via("192.168.1.6"));
        assert_eq!(desired.set("new", None).len(), 1);
        assert!(desired.table().is_empty());
    }
}
