//! Leader election on a coordination.k8s.io Lease, as client-go does it: the holder renews
//! the Lease every retry period; another candidate takes it over once it has not been renewed
//! for the lease duration. Every write is a compare-and-swap on the Lease's resourceVersion,
//! so two candidates never both win.

use crate::{Client, ClientError};
use futures::future::BoxFuture;
use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kubus_apimachinery::time::{micro_time, system_micro_time};
use std::time::{Duration, SystemTime};
use tokio::sync::watch;

/// Where leader-election Leases live.
const NAMESPACE: &str = "kube-system";

#[derive(Debug, Clone)]
pub struct LeaderConfig {
    /// Lease name in kube-system (e.g. `kube-scheduler`).
    pub name: String,
    pub identity: String,
    pub lease_duration: Duration,
    pub retry_period: Duration,
}

impl LeaderConfig {
    pub fn new(name: &str, lease_duration: Duration) -> Self {
        let host = std::fs::read_to_string("/etc/hostname").unwrap_or_default();
        let nanos = SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).map(|d| d.subsec_nanos()).unwrap_or(0);
        LeaderConfig {
            name: name.to_string(),
            identity: format!("{}_{}_{nanos:08x}", host.trim(), std::process::id()),
            lease_duration,
            retry_period: (lease_duration / 5).max(Duration::from_millis(200)),
        }
    }
}

/// Runs the election; the receiver says whether this candidate leads right now.
pub fn elect(client: Client, config: LeaderConfig) -> (watch::Receiver<bool>, BoxFuture<'static, ()>) {
    let (tx, rx) = watch::channel(false);
    let fut = Box::pin(async move {
        loop {
            let leading = try_acquire_or_renew(&client, &config).await.unwrap_or(false);
            if leading != *tx.borrow() {
                tracing::info!(lease = %config.name, identity = %config.identity, leading, "leadership changed");
            }
            let _ = tx.send(leading);
            tokio::time::sleep(config.retry_period).await;
        }
    });
    (rx, fut)
}

async fn try_acquire_or_renew(client: &Client, c: &LeaderConfig) -> Result<bool, ClientError> {
    let now = SystemTime::now();
    let secs = c.lease_duration.as_secs().max(1) as i32;
    match client.get::<Lease>(NAMESPACE, &c.name).await {
        Err(e) if e.is_not_found() => {
            let lease = Lease {
                metadata: ObjectMeta {
                    name: Some(c.name.clone()),
                    namespace: Some(NAMESPACE.to_string()),
                    ..Default::default()
                },
                spec: Some(LeaseSpec {
                    holder_identity: Some(c.identity.clone()),
                    lease_duration_seconds: Some(secs),
                    acquire_time: Some(micro_time(now)),
                    renew_time: Some(micro_time(now)),
                    lease_transitions: Some(0),
                    ..Default::default()
                }),
            };
            Ok(client.create(&lease).await.is_ok())
        }
        Err(e) => Err(e),
        Ok(mut lease) => {
            let spec = lease.spec.get_or_insert_with(Default::default);
            let holder = spec.holder_identity.as_deref().unwrap_or("");
            let duration = Duration::from_secs(spec.lease_duration_seconds.unwrap_or(secs).max(0) as u64);
            let expired = spec.renew_time.as_ref().is_none_or(|r| system_micro_time(r) + duration < now);
            if holder == c.identity {
                spec.renew_time = Some(micro_time(now));
            } else if expired || holder.is_empty() {
                spec.holder_identity = Some(c.identity.clone());
                spec.acquire_time = Some(micro_time(now));
                spec.renew_time = Some(micro_time(now));
                spec.lease_duration_seconds = Some(secs);
                spec.lease_transitions = Some(spec.lease_transitions.unwrap_or(0) + 1);
            } else {
                return Ok(false);
            }
            // The PUT carries the resourceVersion read, so two candidates never both win.
            Ok(client.replace(&lease).await.is_ok())
        }
    }
}

/// Runs an actor's work only while it leads: the election runs in the actor's context,
/// `lead` is called once leadership is won, and losing it stops the actor (its supervisor
/// restarts it as a candidate again). With `config` None the actor leads at once.
pub fn lead_then<A>(
    act: &mut A,
    ctx: &mut actix::Context<A>,
    client: Client,
    config: Option<LeaderConfig>,
    lead: fn(&mut A, &mut actix::Context<A>),
) where
    A: actix::Actor<Context = actix::Context<A>>,
{
    use actix::{ActorContext, ActorFutureExt, AsyncContext, WrapFuture};
    let Some(config) = config else {
        lead(act, ctx);
        return;
    };
    let (rx, election) = elect(client, config);
    ctx.spawn(election.into_actor(act));
    let mut won = rx.clone();
    ctx.spawn(async move { won.wait_for(|l| *l).await.is_ok() }.into_actor(act).map(move |ok, act, ctx| {
        if !ok {
            return;
        }
        lead(act, ctx);
        let mut lost = rx;
        ctx.spawn(async move { lost.wait_for(|l| !*l).await.is_ok() }.into_actor(act).map(|_, _, ctx| {
            tracing::warn!("lost leadership; stopping until re-elected");
            ctx.stop();
        }));
    }));
}
