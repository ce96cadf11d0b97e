//! The node's route controller: keeps a route to every other node's pod CIDR via that node's
//! address ([`kubus_node_network::PodRoutes`]), from the Nodes informer. Upstream leaves this
//! to a cloud route controller or a CNI daemon (flannel host-gw); here it is one actor of the
//! node agent, so a second machine's pods are reachable as soon as its Node has a pod CIDR.

use actix::prelude::*;
use kubus_node_network::{desired_routes, PodRoutes, RouteSyncStats, RouteTable};
use kubus_runtime::Informer;
use prometheus::{register_int_counter_vec, register_int_gauge, IntCounterVec, IntGauge};
use std::collections::BTreeSet;
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
    nodes: Informer,
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
    /// `nodes`: the Informer of ("", "nodes"); routes are kept in `<state_dir>/routes.json`.
    pub fn new(node_name: String, state_dir: PathBuf, nodes: Informer) -> Self {
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
        let desired = desired_routes(&self.node_name, self.nodes.list().iter().map(|n| n.as_ref()));
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

/// Logs and counts a sync; a refused route is logged when it first fails, not on every resync.
fn report(result: Result<RouteSyncStats, kubus_node_network::RouteError>, refused: &mut BTreeSet<String>) {
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
        let addr = ctx.address();
        self.nodes.on_change(move || addr.try_send(Changed).is_ok() || addr.connected());
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
