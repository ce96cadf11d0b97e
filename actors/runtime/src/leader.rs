//! Leader election on a coordination.k8s.io Lease, as client-go does it: the holder renews
//! the Lease every retry period; another candidate takes it over once it has not been renewed
//! for the lease duration. Every write is a compare-and-swap on the Lease's resourceVersion,
//! so two candidates never both win.

use crate::Client;
use futures::future::BoxFuture;
use kubus_apimachinery::table::{format_rfc3339_micro, parse_rfc3339};
use serde_json::{json, Value};
use std::time::{Duration, SystemTime};
use tokio::sync::watch;

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

async fn try_acquire_or_renew(client: &Client, c: &LeaderConfig) -> Result<bool, String> {
    let now = SystemTime::now();
    let secs = c.lease_duration.as_secs().max(1);
    match client.get("coordination.k8s.io", "leases", Some("kube-system"), &c.name).await {
        Err(e) if e.is_not_found() => {
            let lease = json!({"apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
                "metadata": {"name": c.name, "namespace": "kube-system"},
                "spec": {"holderIdentity": c.identity, "leaseDurationSeconds": secs, "acquireTime": format_rfc3339_micro(now),
                    "renewTime": format_rfc3339_micro(now), "leaseTransitions": 0}});
            Ok(client.create("coordination.k8s.io", "leases", Some("kube-system"), &lease).await.is_ok())
        }
        Err(e) => Err(e.to_string()),
        Ok(lease) => {
            let holder = lease["spec"]["holderIdentity"].as_str().unwrap_or("");
            let renewed = lease["spec"]["renewTime"].as_str().and_then(parse_rfc3339);
            let duration = Duration::from_secs(lease["spec"]["leaseDurationSeconds"].as_u64().unwrap_or(secs));
            let expired = renewed.is_none_or(|r| r + duration < now);
            let mut spec: Value = lease["spec"].clone();
            if holder == c.identity {
                spec["renewTime"] = json!(format_rfc3339_micro(now));
            } else if expired || holder.is_empty() {
                spec["holderIdentity"] = json!(c.identity);
                spec["acquireTime"] = json!(format_rfc3339_micro(now));
                spec["renewTime"] = json!(format_rfc3339_micro(now));
                spec["leaseDurationSeconds"] = json!(secs);
                spec["leaseTransitions"] = json!(spec["leaseTransitions"].as_i64().unwrap_or(0) + 1);
            } else {
                return Ok(false);
            }
            let patch = json!({"metadata": {"resourceVersion": lease["metadata"]["resourceVersion"]}, "spec": spec});
            Ok(client
                .merge_patch("coordination.k8s.io", "leases", Some("kube-system"), &c.name, None, &patch)
                .await
                .is_ok())
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
