//! One way to write a controller, after kube-runtime's `Controller`:
//!
//! ```ignore
//! Controller::new("replicaset", factory.get::<ReplicaSet>())
//!     .owns(factory.get::<Pod>())
//!     .workers(4)
//!     .run(Arc::new(reconciler))
//! ```
//!
//! The primary informer's changes queue their own key, `owns` maps a child to its controller
//! owner of the primary kind, `watches` maps any object to keys; a resync or a lagging
//! subscriber queues every primary key. Workers take keys from one deduplicating work queue and
//! call the [`Reconciler`]; an error is requeued with per-key backoff, `RequeueAfter` keeps one
//! deadline per key. Every reconcile is a tracing span, counted and timed by controller.

use crate::informer::{Change, Informer, ObjectKey};
use crate::metrics::{ACTIVE_WORKERS, MAX_CONCURRENT_RECONCILES, RECONCILES, RECONCILE_ERRORS, RECONCILE_TIME};
use crate::workqueue::WorkQueue;
use crate::ClientError;
use futures::future::{join_all, BoxFuture};
use kubus_apimachinery::meta::refers_to;
use kubus_apimachinery::{Object, ObjectExt};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::broadcast::error::RecvError;
use tracing::Instrument;

/// What to do with a key after a successful reconcile.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    Done,
    /// Look again after this long even if nothing changes (a deadline, a timer).
    RequeueAfter(Duration),
}

/// Why a reconcile failed; the key is retried with backoff.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Client(#[from] ClientError),
    /// The object cannot be acted on as it is (an invalid selector, a template that does not
    /// make a valid pod): retried in case it is fixed.
    #[error("{0}")]
    InvalidObject(String),
}

pub type ReconcileResult = Result<Action, Error>;

/// Brings the object of one key to its desired state. Keys are objects' (namespace, name)
/// unless a controller names its work otherwise (the garbage collector's are uids).
pub trait Reconciler<Key = ObjectKey>: Send + Sync + 'static {
    type Error: std::fmt::Display + Send + 'static;
    /// Written as `async fn reconcile(&self, key: &ObjectKey) -> Result<Action, Error>`.
    fn reconcile(&self, key: &Key) -> impl std::future::Future<Output = Result<Action, Self::Error>> + Send;
}

type Feed =
    Box<dyn FnOnce(Arc<WorkQueue<ObjectKey>>, Arc<dyn Fn() + Send + Sync>, Duration) -> BoxFuture<'static, ()> + Send>;
type Synced = BoxFuture<'static, ()>;

/// A controller of K under construction (see the module docs).
pub struct Controller<K: Object> {
    name: &'static str,
    primary: Informer<K>,
    feeds: Vec<Feed>,
    synced: Vec<Synced>,
    workers: usize,
    /// How long keys queued by other resources' changes wait (see [`Controller::coalesce`]).
    coalesce: Duration,
    queue: Arc<WorkQueue<ObjectKey>>,
}

/// Subscribes now (so nothing is missed while the caches sync) and returns the loop that maps
/// each change to keys; resyncs and lag queue everything.
fn feed<O: Object>(
    informer: &Informer<O>,
    map: impl Fn(&Change<O>) -> Vec<ObjectKey> + Send + Sync + 'static,
    at_once: fn(&Change<O>) -> bool,
) -> Feed {
    let mut rx = informer.subscribe();
    Box::new(move |queue: Arc<WorkQueue<ObjectKey>>, all: Arc<dyn Fn() + Send + Sync>, window: Duration| {
        Box::pin(async move {
            loop {
                match rx.recv().await {
                    Ok(Change::Resynced) | Err(RecvError::Lagged(_)) => all(),
                    Ok(change) => {
                        let delay = if at_once(&change) { Duration::ZERO } else { window };
                        map(&change).into_iter().for_each(|k| queue.add_after(k, delay))
                    }
                    Err(RecvError::Closed) => return,
                }
            }
        })
    })
}

fn synced<O: Object>(informer: &Informer<O>) -> Synced {
    let informer = informer.clone();
    Box::pin(async move { informer.wait_synced().await })
}

/// Whether a change of the primary is reconciled at once rather than coalesced: anything
/// but a status-only update (the same generation and metadata), which is mostly the
/// controller's own status write coming back while its children keep changing.
fn not_status_only<K: Object>(change: &Change<K>) -> bool {
    let Change::Applied { old: Some(old), new } = change else {
        return true;
    };
    let (a, b) = (old.metadata(), new.metadata());
    a.generation.is_none()
        || a.generation != b.generation
        || a.deletion_timestamp != b.deletion_timestamp
        || a.labels != b.labels
        || a.annotations != b.annotations
        || a.finalizers != b.finalizers
        || a.owner_references != b.owner_references
}

fn never<O>(_: &Change<O>) -> bool {
    false
}

/// The objects a change concerns: the new state and, when it differs in what the mapper reads,
/// the old one.
fn both<O>(change: &Change<O>) -> impl Iterator<Item = &Arc<O>> {
    let (a, b) = match change {
        Change::Applied { old, new } => (Some(new), old.as_ref()),
        Change::Deleted(o) => (Some(o), None),
        Change::Resynced => (None, None),
    };
    a.into_iter().chain(b)
}

impl<K: Object> Controller<K> {
    pub fn new(name: &'static str, primary: Informer<K>) -> Self {
        let feeds =
            vec![feed(&primary, |change| both(change).take(1).map(|o| o.key()).collect(), not_status_only::<K>)];
        let synced = vec![synced(&primary)];
        Controller { name, primary, feeds, synced, workers: 1, coalesce: Duration::ZERO, queue: WorkQueue::new(name) }
    }

    /// Only the primary's changes `keep` accepts queue its key (upstream's filtered event
    /// handlers, e.g. the node IPAM controller's "nodes without a pod CIDR"): the rest, such as
    /// status heartbeats, wake nothing. A relist still queues every key.
    pub fn primary_changes(mut self, keep: impl Fn(&Change<K>) -> bool + Send + Sync + 'static) -> Self {
        let map = move |change: &Change<K>| match keep(change) {
            true => both(change).take(1).map(|o| o.key()).collect(),
            false => Vec::new(),
        };
        self.feeds[0] = feed(&self.primary, map, not_status_only::<K>);
        self
    }

    /// Objects whose controller owner reference is of K's kind queue their owner.
    pub fn owns<C: Object>(self, child: Informer<C>) -> Self {
        self.watches(child, |c: &C| {
            c.controller_ref()
                .filter(|r| refers_to::<K>(r))
                .map(|r| (c.namespace().to_string(), r.name.clone()))
                .into_iter()
                .collect()
        })
    }

    /// Changes of another resource queue the keys `map` gives for the object (before and after
    /// an update, so an object that stops matching still reaches its old key).
    pub fn watches<O: Object>(
        self,
        other: Informer<O>,
        map: impl Fn(&O) -> Vec<ObjectKey> + Send + Sync + 'static,
    ) -> Self {
        self.watches_changes(other, move |change| {
            let mut keys: Vec<ObjectKey> = both(change).flat_map(|o| map(o)).collect();
            keys.dedup();
            keys
        })
    }

    /// The most general source: every change of `other`, mapped to keys by `map` (for
    /// controllers that also keep state per change, such as expectations).
    pub fn watches_changes<O: Object>(
        mut self,
        other: Informer<O>,
        map: impl Fn(&Change<O>) -> Vec<ObjectKey> + Send + Sync + 'static,
    ) -> Self {
        self.feeds.push(feed(&other, map, never::<O>));
        self.synced.push(synced(&other));
        self
    }

    /// Keys queued by changes of other resources (`owns`, `watches`) wait up to `window`, so a
    /// burst of them (a ReplicaSet's pods turning Ready by the thousand) makes one reconcile
    /// and one status write per window instead of one per change. So do status-only updates of
    /// the primary (its own status writes coming back); its other changes are reconciled at once.
    pub fn coalesce(mut self, window: Duration) -> Self {
        self.coalesce = window;
        self
    }

    /// How many keys are reconciled at once (upstream's `--concurrent-*-syncs`).
    pub fn workers(mut self, n: usize) -> Self {
        self.workers = n.max(1);
        self
    }

    /// The controller's queue, for a reconciler that queues other keys itself.
    pub fn queue(&self) -> Arc<WorkQueue<ObjectKey>> {
        self.queue.clone()
    }

    /// Runs the controller: waits until every informer has synced, queues every primary key,
    /// then feeds and reconciles until the future is dropped.
    pub fn run<R: Reconciler>(self, reconciler: Arc<R>) -> BoxFuture<'static, ()> {
        let Controller { name, primary, feeds, synced, workers, coalesce, queue } = self;
        let all: Arc<dyn Fn() + Send + Sync> = {
            let (primary, queue) = (primary.clone(), queue.clone());
            Arc::new(move || primary.keys().into_iter().for_each(|k| queue.add(k)))
        };
        Box::pin(async move {
            join_all(synced).await;
            all();
            let feeds = feeds.into_iter().map(|f| f(queue.clone(), all.clone(), coalesce));
            let loops = run_workers(name, queue.clone(), reconciler, workers);
            join_all(feeds.chain(loops)).await;
        })
    }
}

/// The worker loops of a reconciler on a queue (for controllers whose keys are not one
/// resource's, such as the garbage collector's; [`Controller::run`] uses it too).
pub fn run_workers<Key, R>(
    name: &'static str,
    queue: Arc<WorkQueue<Key>>,
    reconciler: Arc<R>,
    workers: usize,
) -> Vec<BoxFuture<'static, ()>>
where
    Key: Clone + Eq + std::hash::Hash + std::fmt::Debug + Send + Sync + 'static,
    R: Reconciler<Key>,
{
    // Series exist from the start, so dashboards show zeros rather than nothing.
    for result in ["success", "error", "requeue_after"] {
        RECONCILES.with_label_values(&[name, result]);
    }
    RECONCILE_ERRORS.with_label_values(&[name]);
    MAX_CONCURRENT_RECONCILES.with_label_values(&[name]).set(workers as i64);
    (0..workers.max(1))
        .map(|_| {
            let (r, q) = (reconciler.clone(), queue.clone());
            let worker: BoxFuture<'static, ()> = Box::pin(async move {
                loop {
                    let key = q.get().await;
                    let started = Instant::now();
                    let active = ACTIVE_WORKERS.with_label_values(&[name]);
                    active.inc();
                    let span = tracing::debug_span!("reconcile", controller = name, key = ?key);
                    let result = r.reconcile(&key).instrument(span).await;
                    active.dec();
                    RECONCILE_TIME.with_label_values(&[name]).observe(started.elapsed().as_secs_f64());
                    match result {
                        Ok(action) => {
                            q.forget(&key);
                            match action {
                                Action::Done => RECONCILES.with_label_values(&[name, "success"]).inc(),
                                Action::RequeueAfter(d) => {
                                    RECONCILES.with_label_values(&[name, "requeue_after"]).inc();
                                    q.add_after(key.clone(), d);
                                }
                            }
                        }
                        Err(e) => {
                            RECONCILES.with_label_values(&[name, "error"]).inc();
                            RECONCILE_ERRORS.with_label_values(&[name]).inc();
                            tracing::debug!(controller = name, key = ?key, error = %e, "reconcile failed; requeued");
                            q.add_rate_limited(key.clone());
                        }
                    }
                    q.done(&key);
                }
            });
            worker
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::apps::v1::{ReplicaSet, ReplicaSetStatus};
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

    #[test]
    fn only_status_updates_of_the_primary_wait_for_the_window() {
        let rs = |generation: Option<i64>, replicas: i32| {
            Arc::new(ReplicaSet {
                metadata: ObjectMeta { name: Some("web".into()), generation, ..Default::default() },
                status: Some(ReplicaSetStatus { replicas, ..Default::default() }),
                ..Default::default()
            })
        };
        let update = |old, new| Change::Applied { old: Some(old), new };
        assert!(!not_status_only(&update(rs(Some(1), 1), rs(Some(1), 2))), "a status write waits");
        assert!(not_status_only(&update(rs(Some(1), 1), rs(Some(2), 1))), "a spec change goes at once");
        let mut labelled = (*rs(Some(1), 1)).clone();
        labelled.metadata.labels = Some([("a".to_string(), "b".to_string())].into());
        assert!(not_status_only(&update(rs(Some(1), 1), Arc::new(labelled))));
        assert!(not_status_only(&update(rs(None, 1), rs(None, 2))), "no generation: no way to tell");
        assert!(not_status_only(&Change::Applied { old: None, new: rs(Some(1), 1) }));
        assert!(not_status_only(&Change::Deleted(rs(Some(1), 1))));
    }
}
