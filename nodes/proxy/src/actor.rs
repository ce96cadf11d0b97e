//! The kube-proxy actor: marks the Services each informer event concerns and syncs their rules
//! from the informers' caches, coalescing bursts and keeping `min_sync_period` between syncs.

use crate::changes::ServiceChanges;
use crate::proxier::{Proxier, ProxierConfig};
use actix::{Actor, ActorContext, ActorFutureExt, AsyncContext, Context, Handler, Message, SpawnHandle, WrapFuture};
use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kubus_controller_runtime::informer::indexes;
use kubus_controller_runtime::informer::{Change, Informer};
use std::time::{Duration, Instant};
use tokio::sync::broadcast::error::RecvError;

/// Changes arriving within this window are applied together (a rollout touches many slices).
const COALESCE: Duration = Duration::from_millis(100);

/// How often the rules are resynced without a change.
const RESYNC: Duration = Duration::from_secs(10);

pub struct KubeProxy {
    config: ProxierConfig,
    /// None while a sync runs on the blocking pool (`nft -f` of a large ruleset takes most of
    /// a second and must not stall the arbiter the other actors run on).
    proxier: Option<Proxier>,
    /// A change arrived while a sync was running: sync again when it ends.
    dirty: bool,
    /// The Services marked since the last sync started (everything until the first one).
    changes: ServiceChanges,
    services: Informer<Service>,
    slices: Informer<EndpointSlice>,
    last_sync: Option<Instant>,
    pending: Option<SpawnHandle>,
    synced: bool,
}

#[derive(Message)]
#[rtype(result = "()")]
struct Changed(ServiceChanges);

#[derive(Message)]
#[rtype(result = "()")]
struct InformersSynced;

impl KubeProxy {
    /// Adds the index of EndpointSlices by Service to the (shared) `slices` informer.
    pub fn new(config: ProxierConfig, services: Informer<Service>, slices: Informer<EndpointSlice>) -> Self {
        indexes::slices_by_service(&slices);
        let proxier = Some(Proxier::new(config.clone()));
        KubeProxy {
            config,
            proxier,
            dirty: false,
            changes: ServiceChanges::all(),
            services,
            slices,
            last_sync: None,
            pending: None,
            synced: false,
        }
    }

    fn sync_now(&mut self, ctx: &mut Context<Self>) {
        let Some(mut proxier) = self.proxier.take() else {
            self.dirty = true;
            return;
        };
        self.last_sync = Some(Instant::now());
        // The marked Services, each read with its slices from the caches during the sync.
        let changes = std::mem::take(&mut self.changes);
        let (services, slices) = (self.services.clone(), self.slices.clone());
        let span = tracing::info_span!("kube_proxy_sync", all = changes.is_all(), marked = changes.keys().count());
        let task = tokio::task::spawn_blocking(move || {
            let _entered = span.entered();
            // Errors are counted and logged by the Proxier; a failed apply replaces the table
            // at the next sync, which the periodic resync brings.
            let _ = proxier.sync(&changes, &services, &slices);
            proxier
        });
        ctx.spawn(task.into_actor(self).map(|joined, this, ctx| {
            this.proxier = Some(joined.unwrap_or_else(|e| {
                // The panicked sync's Proxier was dropped (removing the table): start over
                // (a new Proxier's first sync computes every Service).
                tracing::error!(error = %e, "kube-proxy sync panicked");
                Proxier::new(this.config.clone())
            }));
            if std::mem::take(&mut this.dirty) {
                this.schedule(ctx);
            }
        }));
    }

    fn schedule(&mut self, ctx: &mut Context<Self>) {
        if !self.synced || self.pending.is_some() {
            return;
        }
        let since = self.last_sync.map_or(Duration::MAX, |t| t.elapsed());
        let wait = COALESCE.max(self.config.min_sync_period.saturating_sub(since));
        self.pending = Some(ctx.run_later(wait, |this, ctx| {
            this.pending = None;
            this.sync_now(ctx);
        }));
    }
}

impl Actor for KubeProxy {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        // Each event marks the Service it concerns; a resync or a lagging receiver marks
        // everything (upstream's change trackers).
        forward(ctx, self.services.subscribe(), ServiceChanges::service);
        forward(ctx, self.slices.subscribe(), ServiceChanges::slice);
        // A periodic resync retries what failed (an apply error replaces the table on the next
        // sync; the service route before the bridge exists); with nothing marked it computes
        // nothing and applies nothing.
        ctx.run_interval(RESYNC, |this, ctx| this.schedule(ctx));
        let (services, slices) = (self.services.clone(), self.slices.clone());
        let addr = ctx.address();
        ctx.spawn(
            async move {
                services.wait_synced().await;
                slices.wait_synced().await;
                addr.do_send(InformersSynced);
            }
            .into_actor(self),
        );
    }

    fn stopped(&mut self, _ctx: &mut Context<Self>) {
        // A sync still running owns the Proxier; its Drop cleans up when the task ends.
        if let Some(Err(e)) = self.proxier.as_mut().map(Proxier::cleanup) {
            tracing::warn!(error = %e, "kube-proxy cleanup failed");
        }
    }
}

impl Handler<InformersSynced> for KubeProxy {
    type Result = ();
    fn handle(&mut self, _: InformersSynced, ctx: &mut Context<Self>) {
        // Resync from scratch: the first apply replaces whatever an earlier run left.
        self.synced = true;
        self.sync_now(ctx);
    }
}

impl Handler<Changed> for KubeProxy {
    type Result = ();
    fn handle(&mut self, Changed(changes): Changed, ctx: &mut Context<Self>) {
        self.changes.merge(changes);
        self.schedule(ctx);
    }
}

/// Sends the actor the Services each change of one informer marks, until either ends.
fn forward<K: Send + Sync + 'static>(
    ctx: &mut Context<KubeProxy>,
    mut rx: tokio::sync::broadcast::Receiver<Change<K>>,
    mark: fn(&mut ServiceChanges, &Change<K>),
) {
    let addr = ctx.address();
    ctx.spawn(actix::fut::wrap_future::<_, KubeProxy>(async move {
        loop {
            let mut changes = ServiceChanges::default();
            match rx.recv().await {
                Ok(change) => mark(&mut changes, &change),
                Err(RecvError::Lagged(_)) => changes.mark_all(),
                Err(RecvError::Closed) => return,
            }
            if !changes.is_empty() {
                addr.do_send(Changed(changes));
            }
        }
    }));
}

/// Stops the actor (which removes its table and route).
#[derive(Message)]
#[rtype(result = "()")]
pub struct Shutdown;

impl Handler<Shutdown> for KubeProxy {
    type Result = ();
    fn handle(&mut self, _: Shutdown, ctx: &mut Context<Self>) {
        ctx.stop();
    }
}
