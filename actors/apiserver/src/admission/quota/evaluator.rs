//! The quota evaluator (upstream's `quotaEvaluator` of the resourcequota admission plugin):
//! the charges of concurrent writes to one namespace are gathered into a batch and checked one
//! after another against one copy of the namespace's quotas (an admitted charge adds to `used`
//! before the next is checked, a refused one does not); each quota the batch changed is then
//! written once, and only after that is every waiter answered. Without it every charge was a
//! compare-and-swap of its own on the quota, and concurrent creates retried each other.
//!
//! One worker task per namespace with waiting charges, so namespaces never wait on each other.
//! A batch starts from the newer of the watch cache's copy of a quota and what the worker
//! wrote last (upstream reads its informer's copy), so a busy namespace costs one store write
//! per batch and no read. A write that loses its race (another API server, the quota
//! controller, or a stale copy) re-reads that quota from the store and re-checks the batch's
//! charges to it, so two writes can never both take its last slot. Refunds of writes that
//! failed after their charge go through the same queue.

use super::{status_list, Charges};
use crate::cache::WatchCache;
use crate::error::{OrStatus, Target as ErrTarget};
use crate::metrics::OBJECTS_STORED;
use crate::storage::Storage;
use bytes::Bytes;
use k8s_openapi::api::core::v1::ResourceQuota;
use kubus_apimachinery::quota::{self, ResourceList};
use kubus_apimachinery::{resource, ResourceInfo, StatusError};
use kubus_bus::{Store, StoreError};
use prometheus::{register_histogram, register_int_counter_vec, Histogram, IntCounterVec};
use serde::Deserialize;
use serde_json::{json, Value};
use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, LazyLock, Mutex, MutexGuard};
use std::time::{Duration, Instant};
use tokio::sync::oneshot;
use tracing::Instrument;

/// Most waiters checked in one batch: bounds a batch's work and so the wait of its last waiter.
const MAX_BATCH: usize = 128;
/// Rounds of read, check and write before a batch's still unwritten charges give up.
const MAX_ROUNDS: usize = 8;
/// How long a write waits for its charge (upstream's limit).
const EVALUATION_TIMEOUT: Duration = Duration::from_secs(10);

static BATCH_SIZE: LazyLock<Histogram> = LazyLock::new(|| {
    register_histogram!(
        "kubus_apiserver_quota_batch_size",
        "Writes checked together against one namespace's quotas by ResourceQuota admission (each changed quota is written once per batch).",
        vec![1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0]
    )
    .expect("metric registers once")
});

static BATCH_DURATION: LazyLock<Histogram> = LazyLock::new(|| {
    register_histogram!(
        "kubus_apiserver_quota_batch_duration_seconds",
        "Time to read, check and write the quotas of one ResourceQuota admission batch.",
        vec![0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0]
    )
    .expect("metric registers once")
});

static STATUS_WRITES: LazyLock<IntCounterVec> = LazyLock::new(|| {
    register_int_counter_vec!(
        "kubus_apiserver_quota_status_writes_total",
        "Quota status writes of ResourceQuota admission by result: ok, conflict (another writer came first; the batch re-reads and re-checks) or error.",
        &["result"]
    )
    .expect("metric registers once")
});

/// Forces registration so the series exist before the first scrape.
pub(crate) fn register_metrics() {
    LazyLock::force(&BATCH_SIZE);
    LazyLock::force(&BATCH_DURATION);
    for result in ["ok", "conflict", "error"] {
        STATUS_WRITES.with_label_values(&[result]);
    }
}

fn quotas_info() -> &'static ResourceInfo {
    resource::find("", "v1", "resourcequotas").expect("resourcequotas are served")
}

/// What a write asks of its namespace's quotas.
pub(crate) enum Request {
    /// Charge a write's usage to the quotas that apply to it.
    Charge(Charge),
    /// Give back what a write that did not happen was charged (never below zero).
    Refund(Charges),
}

/// One write's usage, to be charged to the quotas that matched it.
pub(crate) struct Charge {
    /// The written resource and object name, for upstream's messages.
    pub info: &'static ResourceInfo,
    pub name: String,
    /// The quotas that apply to the object.
    pub quotas: Vec<String>,
    /// What the write adds to usage.
    pub delta: ResourceList,
    /// Checked, not charged.
    pub dry_run: bool,
}

/// A quota and the revision it was read at (shared with the watch cache, not copied).
#[derive(Clone)]
pub struct StoredQuota {
    pub value: Arc<Value>,
    pub revision: u64,
}

/// How the evaluator reads and writes quotas (upstream's `QuotaAccessor`).
pub trait QuotaAccessor: Send + Sync + 'static {
    /// A recent copy of the quota, perhaps stale (the watch cache's), if one is at hand.
    fn cached(&self, namespace: &str, name: &str) -> Option<StoredQuota>;
    /// The quota's current state; None: it is gone.
    fn get(&self, namespace: &str, name: &str)
        -> impl Future<Output = Result<Option<StoredQuota>, StatusError>> + Send;
    /// Writes `quota` if it is still at `revision`: its new revision, or None if another
    /// writer came first (or it went).
    fn update(
        &self,
        namespace: &str,
        name: &str,
        quota: &Value,
        revision: u64,
    ) -> impl Future<Output = Result<Option<u64>, StatusError>> + Send;
}

/// The API server's quotas: copies from its watch cache, reads and writes on the store.
#[derive(Clone)]
pub struct QuotaStore {
    pub store: Store,
    pub cache: WatchCache,
}

impl QuotaAccessor for QuotaStore {
    fn cached(&self, namespace: &str, name: &str) -> Option<StoredQuota> {
        let gr = (String::new(), "resourcequotas".to_string());
        // Quotas are few and read on every charged write: kept decoded in the cache.
        let value = self.cache.get(&gr, &(namespace.to_string(), name.to_string()))?.shared();
        let revision = value["metadata"]["resourceVersion"].as_str()?.parse().ok()?;
        Some(StoredQuota { value, revision })
    }

    async fn get(&self, namespace: &str, name: &str) -> Result<Option<StoredQuota>, StatusError> {
        let info = quotas_info();
        let key = Storage::key(info, Some(namespace), name);
        let stored = self.store.get(&key).await.or_status(ErrTarget::Object(info, name))?;
        stored
            .map(|o| {
                let value = serde_json::from_slice(&o.value)
                    .map_err(|e| StatusError::internal(format!("stored quota is not JSON: {e}")))?;
                Ok(StoredQuota { value: Arc::new(value), revision: o.revision })
            })
            .transpose()
    }

    async fn update(
        &self,
        namespace: &str,
        name: &str,
        quota: &Value,
        revision: u64,
    ) -> Result<Option<u64>, StatusError> {
        let info = quotas_info();
        let bytes = serde_json::to_vec(quota).map_err(|e| StatusError::internal(e.to_string()))?;
        match self.store.update(&Storage::key(info, Some(namespace), name), Bytes::from(bytes), revision).await {
            Ok(revision) => {
                OBJECTS_STORED.with_label_values(&[info.resource, "update"]).inc();
                Ok(Some(revision))
            }
            Err(StoreError::Conflict { .. } | StoreError::NotFound(_)) => Ok(None),
            Err(e) => Err(e).or_status(ErrTarget::Object(info, name)),
        }
    }
}

type Reply = oneshot::Sender<Result<Charges, StatusError>>;

struct Waiter {
    request: Request,
    reply: Reply,
}

/// The waiting writes of one namespace, and the worker that owns them.
struct Queue {
    worker: u64,
    waiting: VecDeque<Waiter>,
}

struct Inner<A> {
    accessor: A,
    /// A namespace is here while its worker runs.
    namespaces: Mutex<HashMap<String, Queue>>,
    workers: AtomicU64,
}

/// Batches quota charges per namespace; one per API server (in [`Storage`]).
pub struct QuotaEvaluator<A = QuotaStore> {
    inner: Arc<Inner<A>>,
}

impl<A> Clone for QuotaEvaluator<A> {
    fn clone(&self) -> Self {
        QuotaEvaluator { inner: self.inner.clone() }
    }
}

/// The map stays usable even if a thread panicked while holding it (nothing in it is left
/// half-changed: every change is one insert, push, drain or remove).
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl<A: QuotaAccessor> QuotaEvaluator<A> {
    pub fn new(accessor: A) -> Self {
        QuotaEvaluator {
            inner: Arc::new(Inner { accessor, namespaces: Mutex::new(HashMap::new()), workers: AtomicU64::new(0) }),
        }
    }

    /// Queues the request behind its namespace's batch in progress and waits for the answer:
    /// what was charged, or why not.
    pub(crate) async fn evaluate(&self, namespace: &str, request: Request) -> Result<Charges, StatusError> {
        let (reply, mut answer) = oneshot::channel();
        self.enqueue(namespace, Waiter { request, reply })?;
        match tokio::time::timeout(EVALUATION_TIMEOUT, &mut answer).await {
            Ok(Ok(result)) => result,
            // The worker went without answering (its runtime stopped).
            Ok(Err(_)) => Err(StatusError::internal("resource quota evaluation was interrupted")),
            Err(_) => {
                // Closed first, so an answer is either taken here or never sent (a charge that
                // cannot be delivered is given back by the worker).
                answer.close();
                answer.try_recv().unwrap_or_else(|_| Err(StatusError::internal("resource quota evaluation timed out")))
            }
        }
    }

    fn enqueue(&self, namespace: &str, waiter: Waiter) -> Result<(), StatusError> {
        let mut namespaces = lock(&self.inner.namespaces);
        if let Some(queue) = namespaces.get_mut(namespace) {
            queue.waiting.push_back(waiter);
            return Ok(());
        }
        let runtime = tokio::runtime::Handle::try_current()
            .map_err(|_| StatusError::internal("resource quota evaluation needs a runtime"))?;
        let worker = self.inner.workers.fetch_add(1, Ordering::Relaxed);
        namespaces.insert(namespace.to_string(), Queue { worker, waiting: VecDeque::from([waiter]) });
        drop(namespaces);
        runtime.spawn(self.clone().work(namespace.to_string(), worker));
        Ok(())
    }

    /// Takes batches of the namespace's waiting writes until none is left.
    async fn work(self, namespace: String, worker: u64) {
        let _release = Release { inner: self.inner.clone(), namespace: namespace.clone(), worker };
        // What this worker wrote last, by quota: newer than the watch cache's copy until the
        // cache has caught up with the write. Kept only while the namespace is busy.
        let mut written = HashMap::new();
        while let Some(waiters) = self.next_batch(&namespace) {
            let span = tracing::debug_span!("quota_batch", namespace = %namespace, waiters = waiters.len());
            self.process(&namespace, waiters, &mut written).instrument(span).await;
        }
    }

    /// Up to [`MAX_BATCH`] waiters; None (and the namespace's worker is done) if none waits.
    fn next_batch(&self, namespace: &str) -> Option<Vec<Waiter>> {
        let mut namespaces = lock(&self.inner.namespaces);
        let queue = namespaces.get_mut(namespace)?;
        if queue.waiting.is_empty() {
            namespaces.remove(namespace);
            return None;
        }
        let n = queue.waiting.len().min(MAX_BATCH);
        Some(queue.waiting.drain(..n).collect())
    }

    /// Checks and charges one batch, then answers every waiter of it.
    async fn process(&self, namespace: &str, waiters: Vec<Waiter>, written: &mut HashMap<String, StoredQuota>) {
        let started = Instant::now();
        BATCH_SIZE.observe(waiters.len() as f64);
        let accessor = &self.inner.accessor;
        let mut batch = Batch::new(waiters);
        for round in 0..MAX_ROUNDS {
            let names = batch.unsettled_quotas();
            if names.is_empty() {
                break;
            }
            let mut running = Vec::new();
            for name in names {
                // The first round starts from the newest copy at hand (a stale one loses its
                // write and is read again); later rounds read what lost its write.
                let at_hand = (round == 0)
                    .then(|| accessor.cached(namespace, &name).into_iter().chain(written.get(&name).cloned()))
                    .and_then(|copies| copies.max_by_key(|q| q.revision));
                let read = match at_hand {
                    Some(q) => Ok(Some(q)),
                    None => accessor.get(namespace, &name).await,
                };
                match read {
                    Ok(Some(stored)) => match Running::new(name.clone(), stored) {
                        Ok(q) => running.push(q),
                        Err(e) => batch.fail(&name, &e),
                    },
                    // The quota went: nothing is charged to it.
                    Ok(None) => {
                        written.remove(&name);
                        batch.settle(&name);
                    }
                    Err(e) => batch.fail(&name, &e),
                }
            }
            batch.check(&mut running);
            let (changed, unchanged): (Vec<_>, Vec<_>) = running.into_iter().partition(Running::changed);
            for q in unchanged {
                batch.settle(&q.name);
            }
            let writes = changed.into_iter().map(|q| async move {
                let result = match q.with_used() {
                    Ok(value) => accessor.update(namespace, &q.name, &value, q.revision).await.map(|r| (value, r)),
                    Err(e) => Err(e),
                };
                (q.name, result)
            });
            for (name, result) in futures::future::join_all(writes).await {
                match result {
                    Ok((value, Some(revision))) => {
                        STATUS_WRITES.with_label_values(&["ok"]).inc();
                        batch.settle(&name);
                        written.insert(name, StoredQuota { value: Arc::new(value), revision });
                    }
                    Ok((_, None)) => {
                        STATUS_WRITES.with_label_values(&["conflict"]).inc();
                        written.remove(&name);
                        batch.retry(&name);
                    }
                    Err(e) => {
                        STATUS_WRITES.with_label_values(&["error"]).inc();
                        written.remove(&name);
                        batch.fail(&name, &e);
                    }
                }
            }
        }
        let refunds = batch.answer();
        BATCH_DURATION.observe(started.elapsed().as_secs_f64());
        // What was written for writes that will not happen goes back, in a later batch.
        for charges in refunds {
            let (reply, _) = oneshot::channel();
            if let Err(e) = self.enqueue(namespace, Waiter { request: Request::Refund(charges), reply }) {
                tracing::warn!(namespace, error = %e, "could not give back a quota charge");
            }
        }
    }
}

/// Ends a namespace's worker even when its task is dropped (runtime shutdown) or unwinds: the
/// namespace is free for a new worker, and the writes still waiting get an error, not a hang.
struct Release<A> {
    inner: Arc<Inner<A>>,
    namespace: String,
    worker: u64,
}

impl<A> Drop for Release<A> {
    fn drop(&mut self) {
        let mut namespaces = lock(&self.inner.namespaces);
        if namespaces.get(&self.namespace).is_some_and(|q| q.worker == self.worker) {
            namespaces.remove(&self.namespace);
        }
    }
}

/// A quota as one round of a batch sees it: `used` grows with each admitted charge.
struct Running {
    name: String,
    stored: Arc<Value>,
    revision: u64,
    hard: ResourceList,
    original: ResourceList,
    used: ResourceList,
}

impl Running {
    fn new(name: String, stored: StoredQuota) -> Result<Running, StatusError> {
        let typed = ResourceQuota::deserialize(&*stored.value)
            .map_err(|e| StatusError::internal(format!("stored quota {name}: {e}")))?;
        let used = status_list(&typed, true);
        Ok(Running {
            name,
            stored: stored.value,
            revision: stored.revision,
            hard: status_list(&typed, false),
            original: used.clone(),
            used,
        })
    }

    fn changed(&self) -> bool {
        !quota::equals(&self.original, &self.used)
    }

    /// The quota with the running `used`, as the store keeps it (no resourceVersion).
    fn with_used(&self) -> Result<Value, StatusError> {
        let mut value = (*self.stored).clone();
        let bad = || StatusError::internal(format!("quota {} is not an object", self.name));
        let object = value.as_object_mut().ok_or_else(bad)?;
        if let Some(meta) = object.get_mut("metadata").and_then(Value::as_object_mut) {
            meta.remove("resourceVersion");
        }
        let status = object.entry("status").or_insert_with(|| json!({})).as_object_mut().ok_or_else(bad)?;
        status.insert("used".into(), json!(quota::to_api(&self.used)));
        Ok(value)
    }
}

enum Work {
    Charge { info: &'static ResourceInfo, name: String, delta: ResourceList, dry_run: bool },
    Refund(BTreeMap<String, ResourceList>),
}

/// One waiter's progress through its batch.
struct Entry {
    work: Work,
    reply: Reply,
    /// Quotas not yet settled for it: neither written with its charge nor found to need none.
    unsettled: BTreeSet<String>,
    /// Added to this round's copies, not yet written.
    tentative: BTreeMap<String, ResourceList>,
    /// Written.
    charged: Charges,
    /// Refused or failed: its answer, whatever else happens.
    failed: Option<StatusError>,
}

struct Batch {
    entries: Vec<Entry>,
}

impl Batch {
    fn new(waiters: Vec<Waiter>) -> Batch {
        let entries = waiters
            .into_iter()
            .filter_map(|Waiter { request, reply }| {
                let (work, unsettled) = match request {
                    // Nobody waits for this charge any more (the request went): not charged.
                    Request::Charge(_) if reply.is_closed() => return None,
                    Request::Charge(c) => (
                        Work::Charge { info: c.info, name: c.name, delta: c.delta, dry_run: c.dry_run },
                        c.quotas.into_iter().collect(),
                    ),
                    Request::Refund(charges) => {
                        let mut amounts = BTreeMap::<String, ResourceList>::new();
                        for (name, amount) in charges {
                            quota::add_to(amounts.entry(name).or_default(), &amount);
                        }
                        let names = amounts.keys().cloned().collect();
                        (Work::Refund(amounts), names)
                    }
                };
                Some(Entry {
                    work,
                    reply,
                    unsettled,
                    tentative: BTreeMap::new(),
                    charged: Charges::new(),
                    failed: None,
                })
            })
            .collect();
        Batch { entries }
    }

    /// The quotas this round must read.
    fn unsettled_quotas(&self) -> BTreeSet<String> {
        self.entries.iter().filter(|e| e.failed.is_none()).flat_map(|e| e.unsettled.iter().cloned()).collect()
    }

    /// Checks the waiters in order against the round's copies, adding each admitted charge
    /// to them before the next waiter is checked.
    fn check(&mut self, running: &mut [Running]) {
        for e in self.entries.iter_mut().filter(|e| e.failed.is_none()) {
            match &e.work {
                Work::Charge { info, name, delta, dry_run } => {
                    let mut adds = Vec::new();
                    for (i, q) in running.iter().enumerate().filter(|(_, q)| e.unsettled.contains(&q.name)) {
                        let requested = quota::mask(delta, q.hard.keys());
                        if requested.is_empty() {
                            continue;
                        }
                        let new_used = quota::add(&q.used, &requested);
                        let exceeded = quota::exceeded(&quota::mask(&new_used, requested.keys()), &q.hard);
                        if !exceeded.is_empty() {
                            e.failed = Some(StatusError::forbidden(
                                info.group,
                                info.resource,
                                name,
                                format!(
                                    "exceeded quota: {}, requested: {}, used: {}, limited: {}",
                                    q.name,
                                    quota::pretty(&quota::mask(&requested, &exceeded)),
                                    quota::pretty(&quota::mask(&q.used, &exceeded)),
                                    quota::pretty(&quota::mask(&q.hard, &exceeded)),
                                ),
                            ));
                            break;
                        }
                        adds.push((i, requested));
                    }
                    if e.failed.is_some() || *dry_run {
                        continue;
                    }
                    for (i, requested) in adds {
                        quota::add_to(&mut running[i].used, &requested);
                        e.tentative.insert(running[i].name.clone(), requested);
                    }
                }
                Work::Refund(amounts) => {
                    for q in running.iter_mut().filter(|q| e.unsettled.contains(&q.name)) {
                        if let Some(amount) = amounts.get(&q.name) {
                            let back = quota::subtract_non_negative(&quota::mask(&q.used, amount.keys()), amount);
                            q.used.extend(back);
                            e.tentative.insert(q.name.clone(), amount.clone());
                        }
                    }
                }
            }
        }
    }

    /// The quota is written (or needed no write): what was added to it is charged.
    fn settle(&mut self, quota: &str) {
        for e in &mut self.entries {
            // Even for a waiter that failed on another quota meanwhile: written is written,
            // and given back when it is answered.
            if let Some(amount) = e.tentative.remove(quota) {
                e.charged.push((quota.to_string(), amount));
            }
            if e.failed.is_none() {
                e.unsettled.remove(quota);
            }
        }
    }

    /// Another writer came first: the quota is read and checked again next round.
    fn retry(&mut self, quota: &str) {
        for e in &mut self.entries {
            e.tentative.remove(quota);
        }
    }

    /// The quota could not be read or written: every waiter still needing it fails.
    fn fail(&mut self, quota: &str, error: &StatusError) {
        for e in &mut self.entries {
            e.tentative.remove(quota);
            if e.failed.is_none() && e.unsettled.contains(quota) {
                e.failed = Some(error.clone());
            }
        }
    }

    /// Answers every waiter; returns what must be given back: the charges of waiters that
    /// failed after part of their charge was written, or that nobody waits for any more.
    fn answer(self) -> Vec<Charges> {
        let mut refunds = Vec::new();
        for e in self.entries {
            let result = match (e.failed, e.unsettled.first()) {
                (Some(error), _) => Err(error),
                (None, Some(quota)) => {
                    Err(StatusError::conflict("", "resourcequotas", quota, "too many concurrent writers; try again"))
                }
                (None, None) => Ok(()),
            };
            match e.work {
                Work::Refund(_) => {
                    let _ = e.reply.send(result.map(|()| Charges::new()));
                }
                Work::Charge { .. } => match result {
                    Ok(()) => {
                        if let Err(Ok(charged)) = e.reply.send(Ok(e.charged)) {
                            refunds.push(charged);
                        }
                    }
                    Err(error) => {
                        if !e.charged.is_empty() {
                            refunds.push(e.charged);
                        }
                        let _ = e.reply.send(Err(error));
                    }
                },
            }
        }
        refunds.retain(|c| !c.is_empty());
        refunds
    }
}

#[cfg(test)]
mod tests;
