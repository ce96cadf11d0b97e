//! Leader election on a coordination.k8s.io Lease, as client-go does it: the holder renews
//! the Lease every retry period and keeps leading while a renewal succeeded within the renew
//! deadline, so one slow or failed request does not drop leadership; another candidate takes
//! the Lease over once it has gone unrenewed for the lease duration. Every write is a
//! compare-and-swap on the Lease's resourceVersion, so two candidates never both win.

use crate::metrics::LEADER_STATUS;
use crate::{Client, ClientError};
use futures::future::BoxFuture;
use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kubus_apimachinery::time::{micro_time, system_micro_time};
use std::future::Future;
use std::time::{Duration, SystemTime};
use tokio::sync::watch;
use tokio::time::Instant;

/// Where leader-election Leases live.
const NAMESPACE: &str = "kube-system";

#[derive(Debug, Clone)]
pub struct LeaderConfig {
    /// Lease name in kube-system (e.g. `kube-scheduler`).
    pub name: String,
    pub identity: String,
    /// How long a Lease unrenewed stays its holder's (`--leader-elect-lease-duration`).
    pub lease_duration: Duration,
    /// How long the leader keeps leading without a successful renewal
    /// (`--leader-elect-renew-deadline`); shorter than the lease duration, so it stops
    /// before anyone else may take over.
    pub renew_deadline: Duration,
    /// How often candidates try to acquire and the leader to renew (`--leader-elect-retry-period`).
    pub retry_period: Duration,
}

impl LeaderConfig {
    /// Upstream's proportions (15 s / 10 s / 2 s) scaled to `lease_duration`.
    pub fn new(name: &str, lease_duration: Duration) -> Self {
        LeaderConfig::with_timing(name, lease_duration, lease_duration * 2 / 3, lease_duration * 2 / 15)
    }

    pub fn with_timing(name: &str, lease_duration: Duration, renew_deadline: Duration, retry_period: Duration) -> Self {
        let host = std::fs::read_to_string("/etc/hostname").unwrap_or_default();
        let nanos = SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).map(|d| d.subsec_nanos()).unwrap_or(0);
        LeaderConfig {
            name: name.to_string(),
            identity: format!("{}_{}_{nanos:08x}", host.trim(), std::process::id()),
            lease_duration,
            renew_deadline,
            retry_period: retry_period.max(Duration::from_millis(10)),
        }
    }

    /// Upstream's flag validation: the leader must give up before the Lease may be taken.
    pub fn validate(&self) -> Result<(), String> {
        if self.lease_duration <= self.renew_deadline {
            return Err("leaseDuration must be greater than renewDeadline".into());
        }
        if self.renew_deadline <= self.retry_period.mul_f64(JITTER_FACTOR) {
            return Err("renewDeadline must be greater than retryPeriod*JitterFactor".into());
        }
        Ok(())
    }
}

/// client-go's JitterFactor: candidates wait a retry period plus up to 1.2 of it, so they do
/// not all ask at once.
const JITTER_FACTOR: f64 = 1.2;

/// Where Leases are read and written: the API server, or a fake in tests.
pub trait LeaseStore: Send + Sync + 'static {
    fn get_lease(&self, name: &str) -> impl Future<Output = Result<Option<Lease>, ClientError>> + Send;
    fn create_lease(&self, lease: &Lease) -> impl Future<Output = Result<(), ClientError>> + Send;
    /// Compare-and-swap on the Lease's resourceVersion.
    fn replace_lease(&self, lease: &Lease) -> impl Future<Output = Result<(), ClientError>> + Send;
}

impl LeaseStore for Client {
    async fn get_lease(&self, name: &str) -> Result<Option<Lease>, ClientError> {
        match self.get::<Lease>(NAMESPACE, name).await {
            Ok(l) => Ok(Some(l)),
            Err(e) if e.is_not_found() => Ok(None),
            Err(e) => Err(e),
        }
    }
    async fn create_lease(&self, lease: &Lease) -> Result<(), ClientError> {
        self.create(lease).await.map(drop)
    }
    async fn replace_lease(&self, lease: &Lease) -> Result<(), ClientError> {
        self.replace(lease).await.map(drop)
    }
}

/// The Lease record as last seen, and when (this process's clock): a Lease counts as expired
/// once its record has not changed for the lease duration, whatever the holder's clock says.
struct Observed {
    record: Option<(String, Option<String>)>,
    at: Instant,
}

/// Runs the election; the receiver says whether this candidate leads right now.
pub fn elect<S: LeaseStore>(store: S, config: LeaderConfig) -> (watch::Receiver<bool>, BoxFuture<'static, ()>) {
    let (tx, rx) = watch::channel(false);
    let fut = Box::pin(async move {
        let gauge = LEADER_STATUS.with_label_values(&[&config.name]);
        gauge.set(0);
        let mut observed = Observed { record: None, at: Instant::now() };
        // When this candidate last acquired or renewed the Lease, while it leads.
        let mut renewed: Option<Instant> = None;
        loop {
            // An attempt never outlasts the renew deadline: a hung request counts as a failure.
            let attempt =
                tokio::time::timeout(config.renew_deadline, try_acquire_or_renew(&store, &config, &mut observed));
            let ok = matches!(attempt.await, Ok(Ok(true)));
            let now = Instant::now();
            if ok {
                renewed = Some(now);
            }
            renewed = renewed.filter(|at| now.duration_since(*at) < config.renew_deadline);
            let leading = renewed.is_some();
            if leading != *tx.borrow() {
                tracing::info!(lease = %config.name, identity = %config.identity, leading, "leadership changed");
            }
            gauge.set(leading as i64);
            let _ = tx.send(leading);
            let wait = if leading {
                config.retry_period
            } else {
                config.retry_period.mul_f64(1.0 + JITTER_FACTOR * rand_fraction())
            };
            tokio::time::sleep(wait).await;
        }
    });
    (rx, fut)
}

/// A fraction in [0, 1) from the clock's nanoseconds: enough to spread candidates apart.
fn rand_fraction() -> f64 {
    let nanos = SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).map(|d| d.subsec_nanos()).unwrap_or(0);
    f64::from(nanos % 1000) / 1000.0
}

/// One try: Ok(true) when this candidate holds the Lease afterwards.
async fn try_acquire_or_renew<S: LeaseStore>(
    store: &S,
    c: &LeaderConfig,
    observed: &mut Observed,
) -> Result<bool, ClientError> {
    let now = SystemTime::now();
    let secs = c.lease_duration.as_secs().max(1) as i32;
    let Some(mut lease) = store.get_lease(&c.name).await? else {
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
        store.create_lease(&lease).await?;
        return Ok(true);
    };
    let spec = lease.spec.get_or_insert_with(Default::default);
    let holder = spec.holder_identity.clone().unwrap_or_default();
    let record = Some((holder.clone(), spec.renew_time.as_ref().map(|t| t.0.to_rfc3339())));
    if observed.record != record {
        *observed = Observed { record, at: Instant::now() };
    }
    let duration = Duration::from_secs(spec.lease_duration_seconds.unwrap_or(secs).max(0) as u64);
    // Unchanged for the lease duration as this process saw it, or, for a Lease left by a
    // control plane that stopped long ago, renewed longer ago than that by the wall clock.
    let expired = observed.at.elapsed() >= duration
        || spec.renew_time.as_ref().is_none_or(|r| system_micro_time(r) + duration < now);
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
    store.replace_lease(&lease).await?;
    Ok(true)
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::{Arc, Mutex};

    /// A Lease store in memory with compare-and-swap on a version, that can be made to fail.
    #[derive(Clone, Default)]
    struct Leases {
        lease: Arc<Mutex<Option<Lease>>>,
        down: Arc<AtomicBool>,
    }

    impl Leases {
        fn check(&self) -> Result<(), ClientError> {
            if self.down.load(Ordering::SeqCst) {
                return Err(ClientError::Transport("API server unreachable".into()));
            }
            Ok(())
        }
        fn holder(&self) -> Option<String> {
            self.lease.lock().unwrap().as_ref()?.spec.as_ref()?.holder_identity.clone()
        }
        fn transitions(&self) -> i32 {
            let l = self.lease.lock().unwrap();
            l.as_ref().and_then(|l| l.spec.as_ref()?.lease_transitions).unwrap_or(0)
        }
    }

    impl LeaseStore for Leases {
        async fn get_lease(&self, _: &str) -> Result<Option<Lease>, ClientError> {
            self.check()?;
            Ok(self.lease.lock().unwrap().clone())
        }
        async fn create_lease(&self, lease: &Lease) -> Result<(), ClientError> {
            self.check()?;
            let mut l = lease.clone();
            l.metadata.resource_version = Some("1".into());
            self.lease.lock().unwrap().get_or_insert(l);
            Ok(())
        }
        async fn replace_lease(&self, lease: &Lease) -> Result<(), ClientError> {
            self.check()?;
            let mut cur = self.lease.lock().unwrap();
            let version = cur.as_ref().and_then(|c| c.metadata.resource_version.clone());
            if version != lease.metadata.resource_version {
                return Err(ClientError::Transport("conflict".into()));
            }
            let mut l = lease.clone();
            let next = version.and_then(|v| v.parse::<u64>().ok()).unwrap_or(0) + 1;
            l.metadata.resource_version = Some(next.to_string());
            *cur = Some(l);
            Ok(())
        }
    }

    fn config(name: &str) -> LeaderConfig {
        let mut c = LeaderConfig::with_timing(
            "kube-controller-manager",
            Duration::from_millis(1500),
            Duration::from_millis(1000),
            Duration::from_millis(100),
        );
        c.identity = name.to_string();
        c
    }

    async fn leads_within(rx: &mut watch::Receiver<bool>, want: bool, within: Duration) -> bool {
        tokio::time::timeout(within, rx.wait_for(|l| *l == want)).await.is_ok()
    }

    #[tokio::test]
    async fn a_short_outage_keeps_the_leader_and_a_long_one_hands_over() {
        let leases = Leases::default();
        let (mut a, run_a) = elect(leases.clone(), config("a"));
        let a_task = tokio::spawn(run_a);
        assert!(leads_within(&mut a, true, Duration::from_secs(2)).await);
        let (mut b, run_b) = elect(leases.clone(), config("b"));
        let b_task = tokio::spawn(run_b);

        // Renewals fail for half the renew deadline: no one notices.
        leases.down.store(true, Ordering::SeqCst);
        tokio::time::sleep(Duration::from_millis(500)).await;
        leases.down.store(false, Ordering::SeqCst);
        tokio::time::sleep(Duration::from_millis(2000)).await;
        assert!(*a.borrow(), "a short outage dropped leadership");
        assert!(!*b.borrow());
        assert_eq!((leases.holder().as_deref(), leases.transitions()), (Some("a"), 0));

        // Past the renew deadline the leader gives up; once the Lease has gone unrenewed for
        // its duration, the other candidate takes it.
        leases.down.store(true, Ordering::SeqCst);
        assert!(leads_within(&mut a, false, Duration::from_millis(1500)).await);
        a_task.abort();
        leases.down.store(false, Ordering::SeqCst);
        assert!(leads_within(&mut b, true, Duration::from_secs(4)).await);
        assert_eq!((leases.holder().as_deref(), leases.transitions()), (Some("b"), 1));
        b_task.abort();
    }

    #[tokio::test]
    async fn a_held_lease_is_taken_only_after_it_went_unrenewed_for_its_duration() {
        let leases = Leases::default();
        // A holder whose clock runs far ahead: its renewTime alone would never expire.
        let future = SystemTime::now() + Duration::from_secs(3600);
        *leases.lease.lock().unwrap() = Some(Lease {
            metadata: ObjectMeta { resource_version: Some("7".into()), ..Default::default() },
            spec: Some(LeaseSpec {
                holder_identity: Some("gone".into()),
                lease_duration_seconds: Some(1),
                renew_time: Some(micro_time(future)),
                ..Default::default()
            }),
        });
        let (mut b, run_b) = elect(leases.clone(), config("b"));
        let started = Instant::now();
        let task = tokio::spawn(run_b);
        assert!(leads_within(&mut b, true, Duration::from_secs(4)).await);
        assert!(started.elapsed() >= Duration::from_secs(1), "took a Lease renewed {:?} ago", started.elapsed());
        assert_eq!(leases.holder().as_deref(), Some("b"));
        task.abort();
    }

    #[test]
    fn timings_are_validated_as_upstream() {
        assert!(LeaderConfig::new("x", Duration::from_secs(15)).validate().is_ok());
        let c = LeaderConfig::new("x", Duration::from_secs(15));
        assert_eq!((c.renew_deadline, c.retry_period), (Duration::from_secs(10), Duration::from_secs(2)));
        let bad =
            LeaderConfig::with_timing("x", Duration::from_secs(10), Duration::from_secs(10), Duration::from_secs(2));
        assert_eq!(bad.validate().unwrap_err(), "leaseDuration must be greater than renewDeadline");
        let bad =
            LeaderConfig::with_timing("x", Duration::from_secs(15), Duration::from_secs(2), Duration::from_secs(2));
        assert_eq!(bad.validate().unwrap_err(), "renewDeadline must be greater than retryPeriod*JitterFactor");
    }
}
