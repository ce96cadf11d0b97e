//! The watch cache: every object in memory, fed by one JetStream watch, with a ring of recent
//! events per resource. HTTP watches and lists are served from here (like kube-apiserver's
//! cacher) instead of one JetStream consumer per client; consistent reads first wait until the
//! cache has caught up with the store's current revision.
//!
//! Each resource keeps its own history, as upstream's cacher per resource does: thousands of
//! Lease renewals a minute never push the pods' events out, so a pod watch (or an exact-revision
//! LIST) can resume from a revision as old as the pods' own churn allows. A ring keeps every
//! event younger than [`EVENT_FRESH_DURATION`] (upstream's `eventFreshDuration`), at least
//! [`RING_LOWER_BOUND`] events whatever their age, and never more than the configured upper
//! bound.
//!
//! A resource may carry secondary indexes ([`WatchCache::add_index`], upstream's cacher
//! indexers): values an object is filed under, kept with every change under the cache's lock,
//! so a lookup by value costs the objects filed under it rather than a scan of the resource.

mod object;

pub use object::CachedObject;

use crate::error::{OrStatus, Target};
use crate::metrics;
use actix::prelude::*;
use futures::StreamExt;
use kubus_apimachinery::StatusError;
use kubus_bus::{EventType, Key, Store, StoreError};
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};
use tokio::sync::{broadcast, watch};
use tracing::Instrument;

/// (storage group, storage resource)
pub type Gr = (String, String);
/// (namespace or "", name): the sort order of lists.
pub type ObjKey = (String, String);

#[derive(Debug)]
pub struct CacheEvent {
    pub kind: EventType,
    pub gr: Gr,
    pub key: ObjKey,
    pub revision: u64,
    /// The object after the change (for deletes: as it was deleted), resourceVersion set.
    pub object: Arc<CachedObject>,
    /// The object before the change, when there was one.
    pub prev: Option<Arc<CachedObject>>,
}

/// Events younger than this stay in their resource's ring (upstream's eventFreshDuration), so
/// a watcher that reconnects within it resumes instead of relisting.
pub const EVENT_FRESH_DURATION: Duration = Duration::from_secs(75);
/// Events a resource's ring keeps whatever their age.
pub const RING_LOWER_BOUND: usize = 1000;

/// The recent events of one resource, oldest first, stamped when they arrived.
#[derive(Default)]
struct Ring {
    events: VecDeque<(Instant, Arc<CacheEvent>)>,
    /// Every event of the resource after this revision is in `events`.
    start: u64,
}

impl Ring {
    fn new(start: u64) -> Self {
        Ring { events: VecDeque::new(), start }
    }

    /// Adds an event; drops the oldest past `upper`, and past the lower bound those older
    /// than the fresh duration.
    fn push(&mut self, now: Instant, event: Arc<CacheEvent>, upper: usize) {
        self.events.push_back((now, event));
        while self.events.len() > upper
            || (self.events.len() > RING_LOWER_BOUND
                && self.events.front().is_some_and(|(at, _)| now.duration_since(*at) > EVENT_FRESH_DURATION))
        {
            if let Some((_, old)) = self.events.pop_front() {
                self.start = old.revision;
            }
        }
    }

    /// The events after `revision`, newest first; None if some of them are no longer kept.
    fn newer_than(&self, revision: u64) -> Option<impl Iterator<Item = &Arc<CacheEvent>>> {
        (revision >= self.start)
            .then(|| self.events.iter().rev().map(|(_, e)| e).take_while(move |e| e.revision > revision))
    }
}

/// The values an object is filed under in an index.
pub type IndexFn = fn(&Value) -> Vec<String>;

/// One secondary index of a resource: value -> keys of the objects filed under it, and what
/// each object is filed under (so that a change unfiles it without decoding what it replaced).
struct Index {
    name: &'static str,
    func: IndexFn,
    entries: HashMap<String, BTreeSet<ObjKey>>,
    filed: HashMap<ObjKey, Vec<String>>,
}

impl Index {
    fn add(&mut self, key: &ObjKey, obj: &Value) {
        let values = (self.func)(obj);
        for v in &values {
            self.entries.entry(v.clone()).or_default().insert(key.clone());
        }
        if !values.is_empty() {
            self.filed.insert(key.clone(), values);
        }
    }

    fn remove(&mut self, key: &ObjKey) {
        for v in self.filed.remove(key).unwrap_or_default() {
            if let Some(keys) = self.entries.get_mut(&v) {
                keys.remove(key);
                if keys.is_empty() {
                    self.entries.remove(&v);
                }
            }
        }
    }

    fn rebuild(&mut self, objects: Option<&BTreeMap<ObjKey, Arc<CachedObject>>>) {
        self.entries.clear();
        self.filed.clear();
        for (k, o) in objects.into_iter().flatten() {
            self.add(k, &o.value());
        }
    }
}

#[derive(Default)]
struct State {
    objects: HashMap<Gr, BTreeMap<ObjKey, Arc<CachedObject>>>,
    revision: u64,
    rings: HashMap<Gr, Ring>,
    /// The revision of the last relist: no resource's history goes further back.
    listed_at: u64,
    synced: bool,
    indexes: HashMap<Gr, Vec<Index>>,
    /// Deleted objects whose tombstones the compactor will purge, oldest first.
    tombstones: VecDeque<(Instant, Key, u64)>,
    /// Encoded bytes of each resource's current objects.
    bytes: HashMap<Gr, i64>,
}

impl State {
    /// A resource's events after `revision`, newest first; Err(the revision its history starts
    /// after) when some of them are no longer kept.
    fn newer_than(&self, gr: &Gr, revision: u64) -> Result<Vec<&Arc<CacheEvent>>, u64> {
        match self.rings.get(gr) {
            Some(ring) => ring.newer_than(revision).map(Iterator::collect).ok_or(ring.start),
            // No event since the relist: its history starts there.
            None => (revision >= self.listed_at).then(Vec::new).ok_or(self.listed_at),
        }
    }
}

/// Events a watcher may fall behind its resource's feed before it is told to relist.
const FEED_CAPACITY: usize = 16384;
/// The same for a feed of one node's pods (a node holds about a hundred).
const NODE_FEED_CAPACITY: usize = 1024;

/// A feed: the resource, and for pods the node name its watchers select (upstream's indexed
/// trigger on `spec.nodeName`, so each of thousands of kubelets' watches wakes only for its
/// own pods, not for every pod of the cluster).
type FeedKey = (Gr, Option<String>);

/// The field whose exact value picks a pods feed.
pub const POD_TRIGGER_FIELD: &str = "spec.nodeName";

fn is_pods(gr: &Gr) -> bool {
    gr.0.is_empty() && gr.1 == "pods"
}

/// The node names an event concerns, before and after (a pod being bound moves from "" to its
/// node).
fn trigger_values(event: &CacheEvent) -> Vec<String> {
    let node = |o: &CachedObject| o.field(POD_TRIGGER_FIELD).unwrap_or_default().to_string();
    let mut out = vec![node(&event.object)];
    if let Some(prev) = &event.prev {
        let before = node(prev);
        if before != out[0] {
            out.push(before);
        }
    }
    out
}

#[derive(Clone)]
pub struct WatchCache {
    state: Arc<RwLock<State>>,
    /// One feed per resource with watchers (a watch of Services never wakes for a Lease),
    /// and for pods one per node name watched (see [`trigger_values`]).
    events: Arc<Mutex<HashMap<FeedKey, broadcast::Sender<Arc<CacheEvent>>>>>,
    revision: watch::Sender<u64>,
    /// Events one resource's ring holds at most.
    capacity: usize,
}

pub fn with_revision(bytes: &[u8], revision: u64) -> Result<Value, StatusError> {
    let mut v: Value =
        serde_json::from_slice(bytes).map_err(|e| StatusError::internal(format!("stored object is not JSON: {e}")))?;
    if let Some(meta) = v.get_mut("metadata").and_then(Value::as_object_mut) {
        meta.insert("resourceVersion".into(), Value::String(revision.to_string()));
    }
    Ok(v)
}

fn obj_key(key: &Key) -> ObjKey {
    (key.namespace.clone().unwrap_or_default(), key.name.clone())
}

/// A watch's start: the events to send first, the live feed, and the revision they start at.
pub type Subscription = (Vec<Arc<CacheEvent>>, broadcast::Receiver<Arc<CacheEvent>>, u64);

#[derive(Debug, Clone, Copy)]
pub enum Start {
    /// Synthetic ADDED events for the current state, then changes.
    Now,
    /// Changes after this revision.
    After(u64),
}

impl WatchCache {
    pub fn new(capacity: usize) -> Self {
        let (revision, _) = watch::channel(0);
        WatchCache { state: Default::default(), events: Default::default(), revision, capacity }
    }

    pub fn revision(&self) -> u64 {
        self.state.read().expect("cache lock").revision
    }

    pub fn is_synced(&self) -> bool {
        self.state.read().expect("cache lock").synced
    }

    /// Waits until the cache holds every change up to `revision`.
    pub async fn wait_for(&self, revision: u64, timeout: Duration) -> Result<(), StatusError> {
        let mut rx = self.revision.subscribe();
        let caught_up = matches!(tokio::time::timeout(timeout, rx.wait_for(|r| *r >= revision)).await, Ok(Ok(_)));
        match caught_up {
            true => Ok(()),
            false => Err(StatusError::too_large_resource_version(revision, self.revision())),
        }
    }

    /// Waits until the cache is as fresh as the store (a consistent read).
    pub async fn wait_fresh(&self, store: &Store) -> Result<u64, StatusError> {
        let rev = store.current_revision().await.or_status(Target::Store)?;
        self.wait_for(rev, Duration::from_secs(10)).await?;
        Ok(rev)
    }

    pub fn get(&self, gr: &Gr, key: &ObjKey) -> Option<Arc<CachedObject>> {
        self.state.read().expect("cache lock").objects.get(gr).and_then(|m| m.get(key).cloned())
    }

    /// Objects of a resource (optionally one namespace) at the cache's revision, in key order.
    pub fn list(&self, gr: &Gr, namespace: Option<&str>) -> (Vec<Arc<CachedObject>>, u64) {
        let state = self.state.read().expect("cache lock");
        let items = match state.objects.get(gr) {
            None => Vec::new(),
            Some(m) => match namespace {
                Some(ns) => m
                    .range((ns.to_string(), String::new())..)
                    .take_while(|((n, _), _)| n == ns)
                    .map(|(_, v)| v.clone())
                    .collect(),
                None => m.values().cloned().collect(),
            },
        };
        (items, state.revision)
    }

    /// Files the resource's objects under the values `func` gives, from now on (upstream's
    /// cacher indexers); looked up with [`WatchCache::by_index`].
    pub fn add_index(&self, gr: &Gr, name: &'static str, func: IndexFn) {
        let mut state = self.state.write().expect("cache lock");
        let mut index = Index { name, func, entries: HashMap::new(), filed: HashMap::new() };
        index.rebuild(state.objects.get(gr));
        state.indexes.entry(gr.clone()).or_default().push(index);
    }

    /// The objects of a resource filed under any of `values` in the index `name`, each once,
    /// in key order (none if the index does not exist).
    pub fn by_index(&self, gr: &Gr, name: &str, values: &[String]) -> Vec<Arc<CachedObject>> {
        let state = self.state.read().expect("cache lock");
        let (Some(index), Some(objects)) =
            (state.indexes.get(gr).and_then(|ix| ix.iter().find(|i| i.name == name)), state.objects.get(gr))
        else {
            return Vec::new();
        };
        let keys: BTreeSet<&ObjKey> = values.iter().filter_map(|v| index.entries.get(v)).flatten().collect();
        keys.into_iter().filter_map(|k| objects.get(k).cloned()).collect()
    }

    /// Objects of a resource as they were at `revision`, in key order (only those after `after`,
    /// if given): the current ones with what changed since undone from the resource's history.
    /// Costs the objects listed plus the changes since, never a copy of the resource.
    pub fn list_at(
        &self,
        gr: &Gr,
        namespace: Option<&str>,
        revision: u64,
        after: Option<&ObjKey>,
    ) -> Result<Vec<Arc<CachedObject>>, StatusError> {
        use std::ops::Bound;
        let state = self.state.read().expect("cache lock");
        let newer = state.newer_than(gr, revision).map_err(|start| {
            StatusError::resource_expired(format!(
                "The resourceVersion for the provided list is too old: {revision} < {start}"
            ))
        })?;
        let in_scope = |k: &ObjKey| namespace.is_none_or(|n| n == k.0) && after.is_none_or(|a| k > a);
        // Each changed key as it was at `revision` (None: it did not exist). Newest first, so
        // the state before its oldest change since is what stays.
        let mut undone: BTreeMap<&ObjKey, Option<&Arc<CachedObject>>> = BTreeMap::new();
        for ev in newer {
            undone.insert(&ev.key, if ev.kind == EventType::Added { None } else { ev.prev.as_ref() });
        }
        // From the later of the continue key and the namespace's first key.
        let start = match (after, namespace) {
            (Some(a), Some(ns)) if a.0.as_str() < ns => Bound::Included((ns.to_string(), String::new())),
            (Some(a), _) => Bound::Excluded(a.clone()),
            (None, Some(ns)) => Bound::Included((ns.to_string(), String::new())),
            (None, None) => Bound::Unbounded,
        };
        let no_objects = BTreeMap::new();
        let mut current = state
            .objects
            .get(gr)
            .unwrap_or(&no_objects)
            .range((start, Bound::Unbounded))
            .take_while(|(k, _)| namespace.is_none_or(|n| n == k.0))
            .filter(|(k, _)| !undone.contains_key(k))
            .peekable();
        let mut then = undone.iter().filter(|(k, _)| in_scope(k)).filter_map(|(k, o)| Some((*k, (*o)?))).peekable();
        let mut out = Vec::new();
        // Two key-ordered sequences merged: objects unchanged since, and objects as they were.
        loop {
            let take_current = match (current.peek(), then.peek()) {
                (Some((a, _)), Some((b, _))) => a < b,
                (Some(_), None) => true,
                (None, Some(_)) => false,
                (None, None) => break,
            };
            let next = if take_current { current.next().map(|(_, o)| o) } else { then.next().map(|(_, o)| o) };
            out.extend(next.cloned());
        }
        Ok(out)
    }

    /// Namespaces hold objects: used to refuse creates in a missing namespace.
    pub fn namespace_phase(&self, name: &str) -> Option<String> {
        self.get(&(String::new(), "namespaces".into()), &(String::new(), name.to_string())).map(|cached| {
            // Read on every create: kept decoded (namespaces are few).
            let ns = cached.shared();
            if ns["metadata"]["deletionTimestamp"].is_string() {
                "Terminating".to_string()
            } else {
                ns["status"]["phase"].as_str().unwrap_or("Active").to_string()
            }
        })
    }

    /// Starts a watch of one resource: the events to send first, and the live feed after them.
    /// Both come from under one lock, so nothing is missed or sent twice.
    /// `trigger`: for pods, the exact `spec.nodeName` the watcher selects, if any.
    pub fn subscribe(&self, gr: &Gr, start: Start, trigger: Option<&str>) -> Result<Subscription, StatusError> {
        let state = self.state.read().expect("cache lock");
        let trigger = trigger.filter(|_| is_pods(gr)).map(str::to_string);
        // Under the state lock, as `apply` sends under it: nothing is missed or sent twice.
        let rx = self
            .events
            .lock()
            .expect("feeds lock")
            .entry((gr.clone(), trigger.clone()))
            .or_insert_with(|| broadcast::channel(if trigger.is_some() { NODE_FEED_CAPACITY } else { FEED_CAPACITY }).0)
            .subscribe();
        let initial = match start {
            Start::Now => state
                .objects
                .get(gr)
                .map(|m| {
                    m.iter()
                        .map(|(k, v)| {
                            Arc::new(CacheEvent {
                                kind: EventType::Added,
                                gr: gr.clone(),
                                key: k.clone(),
                                revision: state.revision,
                                object: v.clone(),
                                prev: None,
                            })
                        })
                        .collect()
                })
                .unwrap_or_default(),
            Start::After(rev) => {
                let newer = state.newer_than(gr, rev).map_err(|start| {
                    StatusError::resource_expired(format!("too old resource version: {rev} ({start})"))
                })?;
                let mut events: Vec<Arc<CacheEvent>> = newer.into_iter().cloned().collect();
                events.reverse();
                events
            }
        };
        Ok((initial, rx, state.revision))
    }

    /// Refills the cache from a listing; the tombstones it found are compacted a retention
    /// from now (their age is not known).
    pub(crate) fn replace(&self, objects: Vec<kubus_bus::Object>, tombstones: Vec<(Key, u64)>, revision: u64) {
        let mut map: HashMap<Gr, BTreeMap<ObjKey, Arc<CachedObject>>> = HashMap::new();
        for o in objects {
            match with_revision(&o.value, o.revision) {
                Ok(v) => {
                    let gr = (o.key.group.clone(), o.key.resource.clone());
                    let cached = Arc::new(CachedObject::new(&gr, &v));
                    map.entry(gr).or_default().insert(obj_key(&o.key), cached);
                }
                Err(e) => tracing::warn!(key = %o.key, error = %e, "skipping unreadable object"),
            }
        }
        let mut state = self.state.write().expect("cache lock");
        state.objects = map;
        let State { objects, indexes, .. } = &mut *state;
        for (gr, list) in indexes.iter_mut() {
            list.iter_mut().for_each(|i| i.rebuild(objects.get(gr)));
        }
        let now = Instant::now();
        let queued: std::collections::HashSet<u64> = state.tombstones.iter().map(|(_, _, rev)| *rev).collect();
        let found: Vec<(Instant, Key, u64)> =
            tombstones.into_iter().filter(|(_, rev)| !queued.contains(rev)).map(|(k, rev)| (now, k, rev)).collect();
        state.tombstones.extend(found);
        state.revision = revision;
        state.rings.clear();
        state.listed_at = revision;
        state.synced = true;
        metrics::CACHE_OBJECTS.set(state.objects.values().map(|m| m.len() as i64).sum());
        for (gr, objects) in &state.objects {
            metrics::STORAGE_OBJECTS.with_label_values(&[&storage_label(gr)]).set(objects.len() as i64);
        }
        let bytes: HashMap<Gr, i64> = state
            .objects
            .iter()
            .map(|(gr, objects)| (gr.clone(), objects.values().map(|o| o.json().len() as i64).sum()))
            .collect();
        for (gr, n) in &bytes {
            metrics::WATCH_CACHE_OBJECT_BYTES.with_label_values(&[&storage_label(gr)]).set(*n);
        }
        state.bytes = bytes;
        drop(state);
        self.revision.send_replace(revision);
    }

    pub(crate) fn apply(&self, ev: kubus_bus::Event) {
        let gr = (ev.key.group.clone(), ev.key.resource.clone());
        let key = obj_key(&ev.key);
        let value = match with_revision(&ev.value, ev.revision) {
            Ok(v) => v,
            Err(e) => {
                tracing::warn!(key = %ev.key, error = %e, "skipping unreadable change");
                return self.advance(ev.revision);
            }
        };
        let object = Arc::new(CachedObject::new(&gr, &value));
        let mut state = self.state.write().expect("cache lock");
        let objects = state.objects.entry(gr.clone()).or_default();
        let prev = match ev.kind {
            EventType::Deleted => objects.remove(&key),
            _ => objects.insert(key.clone(), object.clone()),
        };
        if let Some(indexes) = state.indexes.get_mut(&gr) {
            for index in indexes {
                index.remove(&key);
                if ev.kind != EventType::Deleted {
                    index.add(&key, &value);
                }
            }
        }
        if ev.kind == EventType::Deleted {
            state.tombstones.push_back((Instant::now(), ev.key.clone(), ev.revision));
        }
        let added = if ev.kind == EventType::Deleted { 0 } else { object.json().len() as i64 };
        let removed = prev.as_ref().map_or(0, |p| p.json().len() as i64);
        let bytes = state.bytes.entry(gr.clone()).or_default();
        *bytes += added - removed;
        metrics::WATCH_CACHE_OBJECT_BYTES.with_label_values(&[&storage_label(&gr)]).set(*bytes);
        // A create over a name we still hold (missed delete) is reported as a modification.
        let kind = match (ev.kind, &prev) {
            (EventType::Added, Some(_)) => EventType::Modified,
            (EventType::Modified, None) => EventType::Added,
            (k, _) => k,
        };
        let event = Arc::new(CacheEvent { kind, gr, key, revision: ev.revision, object, prev });
        state.revision = ev.revision;
        let listed_at = state.listed_at;
        let ring = state.rings.entry(event.gr.clone()).or_insert_with(|| Ring::new(listed_at));
        ring.push(Instant::now(), event.clone(), self.capacity);
        let kept = ring.events.len() as i64;
        metrics::WATCH_CACHE_EVENTS.with_label_values(&[&storage_label(&event.gr)]).set(kept);
        metrics::CACHE_OBJECTS.set(state.objects.values().map(|m| m.len() as i64).sum());
        let stored = state.objects.get(&event.gr).map_or(0, |m| m.len() as i64);
        metrics::STORAGE_OBJECTS.with_label_values(&[&storage_label(&event.gr)]).set(stored);
        {
            let mut feeds = self.events.lock().expect("feeds lock");
            let mut keys = vec![(event.gr.clone(), None)];
            if is_pods(&event.gr) {
                keys.extend(trigger_values(&event).into_iter().map(|n| (event.gr.clone(), Some(n))));
            }
            for key in keys {
                if let Some(feed) = feeds.get(&key) {
                    if feed.send(event.clone()).is_err() {
                        // Its last watcher left.
                        feeds.remove(&key);
                    }
                }
            }
        }
        drop(state);
        self.revision.send_replace(ev.revision);
    }

    /// Tombstones older than `age`, removed from the queue.
    fn take_tombstones(&self, age: Duration) -> Vec<(Key, u64)> {
        let mut state = self.state.write().expect("cache lock");
        let mut out = Vec::new();
        while state.tombstones.front().is_some_and(|(at, _, _)| at.elapsed() >= age) {
            if let Some((_, key, rev)) = state.tombstones.pop_front() {
                out.push((key, rev));
            }
        }
        out
    }

    /// Puts tombstones back at the front of the queue, as seen at `at`.
    fn requeue_tombstones(&self, due: Vec<(Key, u64)>, at: Instant) {
        let mut state = self.state.write().expect("cache lock");
        for (key, rev) in due.into_iter().rev() {
            state.tombstones.push_front((at, key, rev));
        }
    }

    fn advance(&self, revision: u64) {
        self.state.write().expect("cache lock").revision = revision;
        self.revision.send_replace(revision);
    }
}

/// The actor that keeps the cache fed. Any failure of its watch stops it; its supervisor
/// restarts it, and it resumes from the cache's revision (relisting only if that is gone).
pub struct CacheFeeder {
    pub cache: WatchCache,
    pub store: Store,
}

impl Actor for CacheFeeder {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        let cache = self.cache.clone();
        let store = self.store.clone();
        let feed = async move {
            let mut watch = match (cache.is_synced(), cache.revision()) {
                (true, rev) => match store.watch(None, rev).await {
                    Ok(w) => w,
                    Err(StoreError::Gone { .. }) => relist(&cache, &store).await?,
                    Err(e) => return Err(e),
                },
                (false, _) => relist(&cache, &store).await?,
            };
            tracing::info!(revision = cache.revision(), "watch cache synced");
            while let Some(ev) = watch.next().await {
                cache.apply(ev?);
            }
            Err(StoreError::Unavailable("store watch ended".into()))
        };
        ctx.spawn(feed.into_actor(self).map(|res: Result<(), StoreError>, _, ctx| {
            if let Err(e) = res {
                tracing::warn!(error = %e, "watch cache feed failed; restarting");
                metrics::ACTOR_RESTARTS.with_label_values(&["watch-cache"]).inc();
            }
            ctx.stop();
        }));
    }
}

async fn relist(cache: &WatchCache, store: &Store) -> Result<kubus_bus::store::Watch, StoreError> {
    let listing = store.list_all().await?;
    let rev = listing.revision;
    cache.replace(listing.objects, listing.tombstones, rev);
    store.watch(None, rev).await
}

impl Supervised for CacheFeeder {
    fn restarting(&mut self, _ctx: &mut Self::Context) {
        tracing::info!("restarting the watch cache feed");
    }
}

impl Handler<crate::Shutdown> for CacheFeeder {
    type Result = ();
    fn handle(&mut self, _: crate::Shutdown, ctx: &mut Self::Context) {
        ctx.stop();
    }
}

/// Purges the tombstones of deleted objects from the objects stream once they are older than
/// `retention` (the archive, a mirror, keeps them). Purges are per subject and bounded by the
/// tombstone's sequence, so an object re-created under the same name is never touched.
pub struct Compactor {
    pub cache: WatchCache,
    pub store: Store,
    pub retention: Duration,
}

impl Actor for Compactor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        // Often enough that nothing waits much past its retention.
        let every = (self.retention / 2).clamp(Duration::from_millis(200), Duration::from_secs(30));
        ctx.run_interval(every, |act, ctx| {
            let due = act.cache.take_tombstones(act.retention);
            if due.is_empty() {
                return;
            }
            let (store, cache) = (act.store.clone(), act.cache.clone());
            // Due again at once if the attempt fails.
            let seen = Instant::now().checked_sub(act.retention).unwrap_or_else(Instant::now);
            ctx.spawn(
                async move {
                    let span = tracing::info_span!("compact", tombstones = due.len());
                    match store.compact_deleted(&due).instrument(span).await {
                        Ok(n) => metrics::COMPACTED.inc_by(n),
                        Err(e) => {
                            // Tried again on the next round: a purge is idempotent.
                            tracing::warn!(tombstones = due.len(), error = %e, "tombstone compaction failed");
                            cache.requeue_tombstones(due, seen);
                        }
                    }
                }
                .into_actor(act),
            );
        });
    }
}

impl Supervised for Compactor {}

impl Handler<crate::Shutdown> for Compactor {
    type Result = ();
    fn handle(&mut self, _: crate::Shutdown, ctx: &mut Self::Context) {
        ctx.stop();
    }
}

/// Upstream's name of a stored resource in `apiserver_storage_objects`: `pods`,
/// `deployments.apps`.
fn storage_label((group, resource): &Gr) -> String {
    if group.is_empty() {
        resource.clone()
    } else {
        format!("{resource}.{group}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn change(kind: EventType, resource: &str, name: &str, revision: u64) -> kubus_bus::Event {
        kubus_bus::Event {
            kind,
            key: Key::new("", resource, Some("default"), name),
            revision,
            value: bytes::Bytes::from(format!(r#"{{"metadata":{{"name":"{name}","namespace":"default"}}}}"#)),
        }
    }

    #[test]
    fn each_resource_keeps_its_own_history_by_age_within_bounds() {
        let cache = WatchCache::new(1500);
        cache.replace(Vec::new(), Vec::new(), 1);
        let pods = (String::new(), "pods".to_string());
        let leases = (String::new(), "leases".to_string());
        cache.apply(change(EventType::Added, "pods", "web", 2));
        // Thousands of Lease renewals (more than one ring holds) do not push the pod out.
        for rev in 3..3003 {
            cache.apply(change(EventType::Modified, "leases", "n1", rev));
        }
        let (events, _, _) = cache.subscribe(&pods, Start::After(1), None).unwrap();
        assert_eq!(events.iter().map(|e| e.revision).collect::<Vec<_>>(), [2]);
        assert_eq!(cache.list_at(&pods, None, 1, None).unwrap().len(), 0, "the pod did not exist at 1");
        // The Leases' ring is at its upper bound; what it dropped is gone.
        let err = cache.subscribe(&leases, Start::After(100), None).err().unwrap();
        assert_eq!(err.code, 410);
        assert!(cache.subscribe(&leases, Start::After(1502), None).is_ok());
        // A resource with no event since the relist starts there.
        let nodes = (String::new(), "nodes".to_string());
        assert!(cache.subscribe(&nodes, Start::After(1), None).unwrap().0.is_empty());
        assert_eq!(cache.subscribe(&nodes, Start::After(0), None).err().unwrap().code, 410);
    }

    #[test]
    fn a_list_at_a_past_revision_undoes_what_changed_since() {
        let cache = WatchCache::new(1000);
        cache.replace(Vec::new(), Vec::new(), 1);
        let pods = (String::new(), "pods".to_string());
        let in_ns = |ns: &str, kind, name: &str, rev| kubus_bus::Event {
            kind,
            key: Key::new("", "pods", Some(ns), name),
            revision: rev,
            value: bytes::Bytes::from(format!(r#"{{"metadata":{{"name":"{name}","namespace":"{ns}"}}}}"#)),
        };
        for (i, name) in ["a", "b", "c", "d"].iter().enumerate() {
            cache.apply(in_ns("default", EventType::Added, name, 2 + i as u64));
        }
        cache.apply(in_ns("other", EventType::Added, "x", 6));
        // At 6: a b c d in default, x in other. Then: b modified, c deleted, e added, b again.
        cache.apply(in_ns("default", EventType::Modified, "b", 7));
        cache.apply(in_ns("default", EventType::Deleted, "c", 8));
        cache.apply(in_ns("default", EventType::Added, "e", 9));
        cache.apply(in_ns("default", EventType::Modified, "b", 10));
        let at = |rev, ns: Option<&str>, after: Option<(&str, &str)>| -> Vec<String> {
            let after = after.map(|(n, m)| (n.to_string(), m.to_string()));
            let items = cache.list_at(&pods, ns, rev, after.as_ref()).unwrap();
            items
                .iter()
                .map(|o| {
                    format!(
                        "{}/{}@{}",
                        o.namespace(),
                        o.name(),
                        o.value()["metadata"]["resourceVersion"].as_str().unwrap()
                    )
                })
                .collect()
        };
        assert_eq!(at(6, None, None), ["default/a@2", "default/b@3", "default/c@4", "default/d@5", "other/x@6"]);
        assert_eq!(at(8, Some("default"), None), ["default/a@2", "default/b@7", "default/d@5"]);
        assert_eq!(at(6, Some("default"), Some(("default", "b"))), ["default/c@4", "default/d@5"]);
        assert_eq!(at(10, None, Some(("default", "d"))), ["default/e@9", "other/x@6"]);
        assert_eq!(at(1, None, None), Vec::<String>::new());
        // A continue key before the namespace starts at the namespace.
        assert_eq!(at(10, Some("other"), Some(("default", "b"))), ["other/x@6"]);
    }

    #[test]
    fn the_encoded_size_of_each_resource_follows_every_change() {
        let cache = WatchCache::new(100);
        cache.replace(Vec::new(), Vec::new(), 1);
        let pods = (String::new(), "pods".to_string());
        let held = || -> (i64, i64) {
            let state = cache.state.read().unwrap();
            let listed = state.objects.get(&pods).map_or(0, |m| m.values().map(|o| o.json().len() as i64).sum());
            (state.bytes.get(&pods).copied().unwrap_or(0), listed)
        };
        cache.apply(change(EventType::Added, "pods", "a", 2));
        cache.apply(change(EventType::Added, "pods", "bb", 3));
        let (counted, actual) = held();
        assert!(counted > 0 && counted == actual, "{counted} {actual}");
        cache.apply(change(EventType::Modified, "pods", "a", 4));
        cache.apply(change(EventType::Deleted, "pods", "bb", 5));
        let (counted, actual) = held();
        assert_eq!(counted, actual);
        cache.apply(change(EventType::Deleted, "pods", "a", 6));
        assert_eq!(held(), (0, 0));
        let gauge = crate::metrics::WATCH_CACHE_OBJECT_BYTES.with_label_values(&["pods"]).get();
        assert_eq!(gauge, 0);
    }

    #[test]
    fn indexes_follow_every_change() {
        let cache = WatchCache::new(100);
        let cms = (String::new(), "configmaps".to_string());
        let owner = |v: &Value| v["data"]["owner"].as_str().map(str::to_string).into_iter().collect();
        let cm = |name: &str, owner: &str, rev: u64| kubus_bus::Object {
            key: Key::new("", "configmaps", Some("default"), name),
            revision: rev,
            value: bytes::Bytes::from(format!(
                r#"{{"metadata":{{"name":"{name}","namespace":"default"}},"data":{{"owner":"{owner}"}}}}"#
            )),
        };
        cache.replace(vec![cm("a", "ann", 1), cm("b", "bob", 2)], Vec::new(), 2);
        // Added after the objects: it is built from them.
        cache.add_index(&cms, "owner", owner);
        let names = |owners: &[&str]| -> Vec<String> {
            let owners: Vec<String> = owners.iter().map(|s| s.to_string()).collect();
            cache.by_index(&cms, "owner", &owners).iter().map(|o| o.name().to_string()).collect()
        };
        assert_eq!(names(&["ann"]), ["a"]);
        let as_event =
            |kind, o: kubus_bus::Object| kubus_bus::Event { kind, key: o.key, revision: o.revision, value: o.value };
        cache.apply(as_event(EventType::Added, cm("c", "ann", 3)));
        cache.apply(as_event(EventType::Modified, cm("a", "bob", 4)));
        assert_eq!(names(&["ann"]), ["c"]);
        assert_eq!(names(&["bob", "ann"]), ["a", "b", "c"], "each once, in key order");
        cache.apply(as_event(EventType::Deleted, cm("b", "bob", 5)));
        assert_eq!(names(&["bob"]), ["a"]);
        assert!(names(&["nobody"]).is_empty());
        // A relist refiles everything.
        cache.replace(vec![cm("z", "zed", 9)], Vec::new(), 9);
        assert!(names(&["bob"]).is_empty());
        assert_eq!(names(&["zed"]), ["z"]);
        assert!(cache.by_index(&cms, "missing", &["zed".into()]).is_empty());
    }

    #[test]
    fn a_ring_drops_old_events_only_past_its_lower_bound() {
        let event = |revision| {
            Arc::new(CacheEvent {
                kind: EventType::Modified,
                gr: (String::new(), "leases".into()),
                key: (String::new(), "l".into()),
                revision,
                object: Arc::new(CachedObject::new(&(String::new(), "leases".into()), &Value::Null)),
                prev: None,
            })
        };
        let t0 = Instant::now();
        let later = t0 + EVENT_FRESH_DURATION + Duration::from_secs(1);
        let mut ring = Ring::new(0);
        for rev in 1..=(RING_LOWER_BOUND as u64 + 10) {
            ring.push(t0, event(rev), 100_000);
        }
        // Young events stay past the lower bound.
        assert_eq!(ring.events.len(), RING_LOWER_BOUND + 10);
        ring.push(later, event(5000), 100_000);
        // Once old, only the lower bound is kept, and the ring starts after what it dropped.
        assert_eq!(ring.events.len(), RING_LOWER_BOUND);
        assert_eq!(ring.start, 11);
        assert!(ring.newer_than(10).is_none());
        assert_eq!(ring.newer_than(4999).unwrap().map(|e| e.revision).collect::<Vec<_>>(), [5000]);
    }

    #[test]
    fn watchers_get_their_resource_only_and_deletions_queue_compaction() {
        let cache = WatchCache::new(100);
        cache.replace(Vec::new(), vec![(Key::new("", "pods", Some("default"), "old"), 3)], 5);
        let pods = (String::new(), "pods".to_string());
        let (_, mut rx, _) = cache.subscribe(&pods, Start::After(5), None).unwrap();
        cache.apply(change(EventType::Added, "leases", "n1", 6));
        cache.apply(change(EventType::Added, "pods", "web", 7));
        cache.apply(change(EventType::Deleted, "pods", "web", 8));
        let first = rx.try_recv().unwrap();
        assert_eq!((first.gr.1.as_str(), first.revision), ("pods", 7));
        assert_eq!(rx.try_recv().unwrap().revision, 8);
        assert!(rx.try_recv().is_err(), "a Lease reached a pod watcher");
        // A kubelet's watch wakes for its node's pods only, binding included.
        let (_, mut n1, _) = cache.subscribe(&pods, Start::After(8), Some("n1")).unwrap();
        let bound = |name: &str, node: &str, rev: u64| kubus_bus::Event {
            kind: EventType::Modified,
            key: Key::new("", "pods", Some("default"), name),
            revision: rev,
            value: bytes::Bytes::from(format!(
                r#"{{"metadata":{{"name":"{name}","namespace":"default"}},"spec":{{"nodeName":"{node}"}}}}"#
            )),
        };
        cache.apply(change(EventType::Added, "pods", "a", 9));
        cache.apply(bound("a", "n1", 10));
        cache.apply(change(EventType::Added, "pods", "b", 11));
        cache.apply(bound("b", "n2", 12));
        assert_eq!(n1.try_recv().unwrap().revision, 10);
        assert!(n1.try_recv().is_err(), "a pod of n2 reached n1's watch");
        assert_eq!((9..=12).map(|_| rx.try_recv().unwrap().revision).collect::<Vec<_>>(), [9, 10, 11, 12]);
        drop(n1);
        // The last watcher gone, its feed goes with the next change.
        drop(rx);
        cache.apply(bound("db", "n1", 13));
        assert!(cache.events.lock().unwrap().is_empty());
        // The tombstone a relist found and the deletion seen since wait for compaction.
        let due: Vec<u64> = cache.take_tombstones(Duration::ZERO).into_iter().map(|(_, rev)| rev).collect();
        assert_eq!(due, [3, 8]);
    }
}
