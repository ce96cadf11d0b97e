//! An informer: a reflector of one resource kept in memory as typed, shared objects
//! (`Arc<Pod>`, ...) from a list of the store and a watch from the list's revision, with
//! indexes kept on every change and changes fanned out to every subscriber. Reads come from a
//! [`Source`]: straight from JetStream (ordered consumers are flow-controlled and re-created on
//! gaps), or through the API server with a field selector (a kubelet's own pods); writes go
//! through the API server.

mod api_source;
mod cache;
mod factory;
pub mod indexes;
mod source;
mod store_source;

pub use api_source::ApiSource;
pub use cache::{Cache, IndexFn, BY_CONTROLLER, BY_NAMESPACE};
pub use factory::{DynInformer, InformerFactory, MetaChange};
pub use source::Source;

use crate::metrics::{INFORMER_EVENTS, INFORMER_OBJECTS, INFORMER_RELISTS};
use kubus_apimachinery::{Object, ObjectExt, ResourceInfo};
use kubus_bus::{EventType, Store};
use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::Duration;
use tokio::sync::{broadcast, watch};

pub use kubus_apimachinery::ObjectKey;

/// How often subscribers are told to reconcile everything (client-go's resync period).
pub const RESYNC_PERIOD: Duration = Duration::from_secs(300);

/// One change seen by an informer.
#[derive(Debug)]
pub enum Change<K> {
    /// Created or updated; `old` is the previous state if the informer had one.
    Applied { old: Option<Arc<K>>, new: Arc<K> },
    /// Deleted; the object as it was deleted.
    Deleted(Arc<K>),
    /// The cache was (re)filled from a list: subscribers should reconcile everything.
    Resynced,
}

impl<K> Clone for Change<K> {
    fn clone(&self) -> Self {
        match self {
            Change::Applied { old, new } => Change::Applied { old: old.clone(), new: new.clone() },
            Change::Deleted(o) => Change::Deleted(o.clone()),
            Change::Resynced => Change::Resynced,
        }
    }
}

/// Decodes a stored object and stamps the revision it was read at as its resourceVersion.
pub fn decode<K: Object>(value: &[u8], revision: u64) -> Result<K, serde_json::Error> {
    let mut obj: K = serde_json::from_slice(value)?;
    obj.metadata_mut().resource_version = Some(revision.to_string());
    Ok(obj)
}

struct Shared<K> {
    info: &'static ResourceInfo,
    cache: RwLock<Cache<K>>,
    changes: broadcast::Sender<Change<K>>,
    synced_tx: watch::Sender<bool>,
}

/// A shared, typed cache of one resource; cloning it is cheap and shares the cache.
pub struct Informer<K> {
    shared: Arc<Shared<K>>,
}

impl<K> Clone for Informer<K> {
    fn clone(&self) -> Self {
        Informer { shared: self.shared.clone() }
    }
}

impl<K: Object> Informer<K> {
    /// Starts reflecting K's resource (all namespaces) into memory; runs until the process
    /// ends, re-listing when the watch's revision is no longer held. Processes share one per
    /// resource through [`InformerFactory`].
    pub fn start(store: Store) -> Informer<K> {
        Self::start_on(store, None)
    }

    /// As [`Informer::start`], its reflector running on `arbiter` when given (decoding,
    /// indexing and fan-out then cost the readers' threads nothing).
    pub fn start_on(store: Store, arbiter: Option<&actix::ArbiterHandle>) -> Informer<K> {
        Self::start_from(Source::Store(store), arbiter)
    }

    /// An informer fed by `source`: the same cache, indexes and fan-out whichever it is.
    pub fn start_from(source: Source, arbiter: Option<&actix::ArbiterHandle>) -> Informer<K> {
        let info = kubus_apimachinery::resource::of::<K>();
        assert_eq!(
            (info.storage_group, info.storage_resource),
            (info.group, info.resource),
            "informers read a resource in its storage form"
        );
        let (changes, _) = broadcast::channel(65536);
        let (synced_tx, _) = watch::channel(false);
        let informer =
            Informer { shared: Arc::new(Shared { info, cache: RwLock::new(Cache::default()), changes, synced_tx }) };
        let this = informer.clone();
        let run = async move {
            tokio::join!(source.reflect(&this), this.resync_periodically());
        };
        match arbiter {
            Some(a) => {
                a.spawn(run);
            }
            None => {
                tokio::spawn(run);
            }
        }
        informer
    }

    pub fn info(&self) -> &'static ResourceInfo {
        self.shared.info
    }

    /// Refills the cache from a list (a relist replaces everything) and tells subscribers.
    fn relisted(&self, objects: impl IntoIterator<Item = K>) {
        let resource = self.shared.info.resource;
        INFORMER_RELISTS.with_label_values(&[resource]).inc();
        let fresh: HashMap<ObjectKey, Arc<K>> = objects.into_iter().map(|o| (o.key(), Arc::new(o))).collect();
        {
            let mut cache = self.shared.cache.write().expect("informer lock");
            cache.replace(fresh);
            INFORMER_OBJECTS.with_label_values(&[resource]).set(cache.len() as i64);
        }
        // send_replace: the value must change even while no one waits for it.
        self.shared.synced_tx.send_replace(true);
        let _ = self.shared.changes.send(Change::Resynced);
    }

    /// Applies one watched change to the cache and fans it out.
    fn applied(&self, kind: EventType, obj: K) {
        let resource = self.shared.info.resource;
        let key = obj.key();
        let obj = Arc::new(obj);
        INFORMER_EVENTS.with_label_values(&[resource, kind.as_str()]).inc();
        let change = {
            let mut cache = self.shared.cache.write().expect("informer lock");
            let change = match kind {
                EventType::Deleted => {
                    cache.remove(&key);
                    Change::Deleted(obj)
                }
                _ => Change::Applied { old: cache.insert(key, obj.clone()), new: obj },
            };
            INFORMER_OBJECTS.with_label_values(&[resource]).set(cache.len() as i64);
            change
        };
        let _ = self.shared.changes.send(change);
    }

    /// Tells subscribers to reconcile everything every [`RESYNC_PERIOD`] once synced, so a
    /// missed or failed reaction heals without waiting for the next change.
    async fn resync_periodically(&self) {
        self.wait_synced().await;
        let mut resync = tokio::time::interval(RESYNC_PERIOD);
        resync.tick().await;
        loop {
            resync.tick().await;
            let _ = self.shared.changes.send(Change::Resynced);
        }
    }

    /// Waits until the first list has filled the cache.
    pub async fn wait_synced(&self) {
        let mut rx = self.shared.synced_tx.subscribe();
        let _ = rx.wait_for(|s| *s).await;
    }

    pub fn has_synced(&self) -> bool {
        *self.shared.synced_tx.borrow()
    }

    pub fn get(&self, namespace: &str, name: &str) -> Option<Arc<K>> {
        self.get_key(&(namespace.to_string(), name.to_string()))
    }

    pub fn get_key(&self, key: &ObjectKey) -> Option<Arc<K>> {
        self.read(|c| c.get(key).cloned())
    }

    /// Every object. Per-event work should use an index instead: this copies a pointer per
    /// object.
    pub fn list(&self) -> Vec<Arc<K>> {
        self.read(|c| c.values().cloned().collect())
    }

    /// Every object's key (to enqueue everything on a resync).
    pub fn keys(&self) -> Vec<ObjectKey> {
        self.read(|c| c.keys().cloned().collect())
    }

    /// The objects of one namespace.
    pub fn namespace(&self, namespace: &str) -> Vec<Arc<K>> {
        self.by_index(BY_NAMESPACE, namespace)
    }

    /// The objects whose controller owner reference names this uid.
    pub fn controlled_by(&self, owner_uid: &str) -> Vec<Arc<K>> {
        self.by_index(BY_CONTROLLER, owner_uid)
    }

    /// The objects indexed under `value` by the index `name` (see [`Informer::add_index`]).
    pub fn by_index(&self, name: &str, value: &str) -> Vec<Arc<K>> {
        self.read(|c| c.by_index(name, value))
    }

    /// How many objects are indexed under `value`.
    pub fn count(&self, name: &str, value: &str) -> usize {
        self.read(|c| c.count(name, value))
    }

    /// Adds an index; the informer keeps it current from then on. Informers are shared, so a
    /// name is one index: a second call with a known name keeps the first function.
    pub fn add_index(&self, name: &'static str, func: impl Fn(&K) -> Vec<String> + Send + Sync + 'static) {
        self.shared.cache.write().expect("informer lock").add_index(name, Arc::new(func));
    }

    pub fn len(&self) -> usize {
        self.read(|c| c.len())
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Reads the cache under its lock (for a few lookups at once).
    pub fn read<T>(&self, f: impl FnOnce(&Cache<K>) -> T) -> T {
        f(&self.shared.cache.read().expect("informer lock"))
    }

    /// Changes from now on. A subscriber that falls behind gets `Lagged` and should treat it
    /// as `Resynced` (reconcile everything from the cache).
    pub fn subscribe(&self) -> broadcast::Receiver<Change<K>> {
        self.shared.changes.subscribe()
    }
}
