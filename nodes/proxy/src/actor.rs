//! The kube-proxy actor: resyncs the Proxier from the informers' caches on every change,
//! coalescing bursts and keeping `min_sync_period` between syncs.

use crate::proxier::{Proxier, ProxierConfig};
use actix::{Actor, ActorContext, ActorFutureExt, AsyncContext, Context, Handler, Message, SpawnHandle, WrapFuture};
use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kubus_controller_runtime::informer::indexes;
use kubus_controller_runtime::informer::Informer;
use std::time::{Duration, Instant};

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
    services: Informer<Service>,
    slices: Informer<EndpointSlice>,
    last_sync: Option<Instant>,
    pending: Option<SpawnHandle>,
    synced: bool,
}

#[derive(Message)]
#[rtype(result = "()")]
struct Changed;

#[derive(Message)]
#[rtype(result = "()")]
struct InformersSynced;

impl KubeProxy {
    /// Adds the index of EndpointSlices by Service to the (shared) `slices` informer.
    pub fn new(config: ProxierConfig, services: Informer<Service>, slices: Informer<EndpointSlice>) -> Self {
        indexes::slices_by_service(&slices);
        let proxier = Some(Proxier::new(config.clone()));
        KubeProxy { config, proxier, dirty: false, services, slices, last_sync: None, pending: None, synced: false }
    }

    fn sync_now(&mut self, ctx: &mut Context<Self>) {
        let Some(mut proxier) = self.proxier.take() else {
            self.dirty = true;
            return;
        };
        self.last_sync = Some(Instant::now());
        // Every Service, each with its slices read through the index during the computation.
        let (services, slices) = (self.services.list(), self.slices.clone());
        let span = tracing::info_span!("kube_proxy_sync");
        let task = tokio::task::spawn_blocking(move || {
            let _entered = span.entered();
            // Errors are counted and logged by the Proxier; the next change or the informers'
            // periodic resync retries.
            let _ = proxier.sync(&services, &slices);
            proxier
        });
        ctx.spawn(task.into_actor(self).map(|joined, this, ctx| {
            this.proxier = Some(joined.unwrap_or_else(|e| {
                // The panicked sync's Proxier was dropped (removing the table): start over.
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
        // Every kind of change (and lag) means "resync": the ruleset is always computed from
        // the full caches.
        let addr = ctx.address();
        self.services.on_change(move || addr.try_send(Changed).is_ok() || addr.connected());
        let addr = ctx.address();
        self.slices.on_change(move || addr.try_send(Changed).is_ok() || addr.connected());
        // A periodic resync retries what failed (an apply error replaces the table on the next
        // sync; the service route before the bridge exists); an unchanged ruleset is not applied.
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
    fn handle(&mut self, _: Changed, ctx: &mut Context<Self>) {
        self.schedule(ctx);
    }
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
