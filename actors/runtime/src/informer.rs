//! An informer: a reflector of one resource (optionally one namespace) kept in memory from
//! a list of the store and a watch from the list's revision, with changes fanned out to every
//! subscriber. Reads come straight from JetStream (ordered consumers are flow-controlled and
//! re-created on gaps); writes go through the API server.

use crate::metrics::{INFORMER_EVENTS, INFORMER_RELISTS};
use futures::StreamExt;
use kubus_bus::store::KeyPrefix;
use kubus_bus::{EventType, Store, StoreError};
use serde_json::Value;
use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::Duration;
use tokio::sync::{broadcast, watch};

/// (namespace or "", name)
pub type ObjectKey = (String, String);

/// How often subscribers are told to reconcile everything (client-go's resync period).
pub const RESYNC_PERIOD: Duration = Duration::from_secs(300);

/// One change seen by an informer.
#[derive(Debug, Clone)]
pub enum Change {
    /// Created or updated; `old` is the previous state if the informer had one.
    Applied { old: Option<Arc<Value>>, new: Arc<Value> },
    /// Deleted; the object as it was deleted.
    Deleted(Arc<Value>),
    /// The cache was (re)filled from a list: subscribers should reconcile everything.
    Resynced,
}

pub fn key_of(obj: &Value) -> ObjectKey {
    let m = &obj["metadata"];
    (m["namespace"].as_str().unwrap_or("").to_string(), m["name"].as_str().unwrap_or("").to_string())
}

fn parse(value: &[u8], revision: u64) -> Option<Value> {
    let mut v: Value = serde_json::from_slice(value).ok()?;
    if let Some(m) = v.get_mut("metadata").and_then(Value::as_object_mut) {
        m.insert("resourceVersion".into(), Value::String(revision.to_string()));
    }
    Some(v)
}

#[derive(Clone)]
pub struct Informer {
    resource: &'static str,
    cache: Arc<RwLock<HashMap<ObjectKey, Arc<Value>>>>,
    changes: broadcast::Sender<Change>,
    synced: watch::Receiver<bool>,
}

impl Informer {
    /// Starts reflecting `group/resource` (storage names) into memory; runs until the process
    /// ends, re-listing when the watch's revision is no longer held.
    pub fn start(store: Store, group: &str, resource: &'static str, namespace: Option<&str>) -> Informer {
        let (changes, _) = broadcast::channel(65536);
        let (synced_tx, synced) = watch::channel(false);
        let informer = Informer { resource, cache: Default::default(), changes, synced };
        let prefix = KeyPrefix::new(group, resource, namespace);
        let this = informer.clone();
        tokio::spawn(async move { this.run(store, prefix, synced_tx).await });
        informer
    }

    async fn run(self, store: Store, prefix: KeyPrefix, synced: watch::Sender<bool>) {
        let mut revision: Option<u64> = None;
        let mut backoff = Duration::from_millis(100);
        loop {
            let after = match revision {
                Some(r) => r,
                None => match store.list(&prefix).await {
                    Ok((objects, rev)) => {
                        INFORMER_RELISTS.with_label_values(&[self.resource]).inc();
                        let fresh: HashMap<ObjectKey, Arc<Value>> = objects
                            .iter()
                            .filter_map(|o| parse(&o.value, o.revision))
                            .map(|v| (key_of(&v), Arc::new(v)))
                            .collect();
                        *self.cache.write().expect("informer lock") = fresh;
                        let _ = synced.send(true);
                        let _ = self.changes.send(Change::Resynced);
                        revision = Some(rev);
                        rev
                    }
                    Err(e) => {
                        tracing::warn!(resource = self.resource, error = %e, "informer list failed");
                        tokio::time::sleep(backoff).await;
                        backoff = (backoff * 2).min(Duration::from_secs(10));
                        continue;
                    }
                },
            };
            let mut watch = match store.watch(Some(&prefix), after).await {
                Ok(w) => w,
                Err(StoreError::Gone { .. }) => {
                    revision = None;
                    continue;
                }
                Err(e) => {
                    tracing::warn!(resource = self.resource, error = %e, "informer watch failed");
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_secs(10));
                    continue;
                }
            };
            backoff = Duration::from_millis(100);
            // A periodic resync makes every subscriber reconcile everything again, so a missed
            // or failed reaction heals without waiting for the next change.
            let mut resync = tokio::time::interval(RESYNC_PERIOD);
            resync.tick().await;
            loop {
                let ev = tokio::select! {
                    ev = watch.next() => ev,
                    _ = resync.tick() => {
                        let _ = self.changes.send(Change::Resynced);
                        continue;
                    }
                };
                let Some(Ok(ev)) = ev else { break };
                revision = Some(ev.revision);
                let Some(obj) = parse(&ev.value, ev.revision) else {
                    continue;
                };
                let key = key_of(&obj);
                let obj = Arc::new(obj);
                INFORMER_EVENTS.with_label_values(&[self.resource, ev.kind.as_str()]).inc();
                let change = {
                    let mut cache = self.cache.write().expect("informer lock");
                    match ev.kind {
                        EventType::Deleted => {
                            cache.remove(&key);
                            Change::Deleted(obj)
                        }
                        _ => Change::Applied { old: cache.insert(key, obj.clone()), new: obj },
                    }
                };
                let _ = self.changes.send(change);
            }
        }
    }

    /// Waits until the first list has filled the cache.
    pub async fn wait_synced(&self) {
        let mut rx = self.synced.clone();
        let _ = rx.wait_for(|s| *s).await;
    }

    pub fn get(&self, namespace: &str, name: &str) -> Option<Arc<Value>> {
        self.cache.read().expect("informer lock").get(&(namespace.to_string(), name.to_string())).cloned()
    }

    pub fn list(&self) -> Vec<Arc<Value>> {
        self.cache.read().expect("informer lock").values().cloned().collect()
    }

    pub fn len(&self) -> usize {
        self.cache.read().expect("informer lock").len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Changes from now on. A subscriber that falls behind gets `Lagged` and should treat it
    /// as `Resynced` (reconcile everything from the cache).
    pub fn subscribe(&self) -> broadcast::Receiver<Change> {
        self.changes.subscribe()
    }

    /// Calls `notify` on every change (and on lag), for consumers that recompute from the
    /// whole cache anyway (kube-proxy, the route controller) and only need a nudge. Stops when
    /// `notify` returns false (its receiver is gone) or the informer ends.
    pub fn on_change(&self, notify: impl Fn() -> bool + Send + 'static) {
        let mut rx = self.subscribe();
        tokio::spawn(async move {
            loop {
                match rx.recv().await {
                    Ok(_) | Err(broadcast::error::RecvError::Lagged(_)) => {
                        if !notify() {
                            return;
                        }
                    }
                    Err(broadcast::error::RecvError::Closed) => return,
                }
            }
        });
    }
}

/// One informer per resource for a whole process (client-go's shared informer factory):
/// every actor that watches pods shares one reflector and one copy of every pod.
#[derive(Clone)]
pub struct InformerFactory {
    store: Store,
    informers: Arc<std::sync::Mutex<HashMap<(String, &'static str), Informer>>>,
}

impl InformerFactory {
    pub fn new(store: Store) -> Self {
        InformerFactory { store, informers: Default::default() }
    }

    /// The informer of `group/resource` (all namespaces), started on first use.
    pub fn get(&self, group: &str, resource: &'static str) -> Informer {
        let mut map = self.informers.lock().expect("factory lock");
        map.entry((group.to_string(), resource))
            .or_insert_with(|| Informer::start(self.store.clone(), group, resource, None))
            .clone()
    }
}
