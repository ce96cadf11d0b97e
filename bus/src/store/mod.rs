//! The object store: JetStream as etcd.
//!
//! Every object is one subject of the objects stream (see [`key`]); each write is one message
//! and the object's resourceVersion is that message's stream sequence, so revisions are
//! cluster-wide and monotonic like etcd's. Writes are compare-and-swap through
//! `Nats-Expected-Last-Subject-Sequence`; a delete appends a tombstone that still carries the
//! final object, so watchers see what was deleted. Stored bytes are the object's Kubernetes JSON
//! without `metadata.resourceVersion` (readers set it from the revision), so any NATS client
//! reads the same bytes kubectl does. Point reads use the stream leader's message API, never a
//! direct get on a replica, so a read after a write is never stale in a NATS cluster.

pub mod archive;
pub mod audit;
mod compaction;
pub mod encryption;
pub mod key;
mod keys;
mod watch;

pub use key::{Key, KeyPrefix};
pub use watch::{Event, EventType, Watch};

use crate::metrics::observe;
use async_nats::header::HeaderMap;
use async_nats::jetstream::{self, consumer, context::PublishErrorKind, stream};
use bytes::Bytes;
use futures::StreamExt;
use std::collections::BTreeMap;
use std::time::{Duration, Instant};
use tracing::instrument;

/// Header naming the operation of a write: `create`, `update` or `delete`.
pub const OP_HEADER: &str = "Kubus-Op";

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("object {0} already exists")]
    AlreadyExists(Key),
    #[error("object {0} not found")]
    NotFound(Key),
    #[error("object {key} has been modified (revision {current}, expected {expected})")]
    Conflict { key: Key, expected: u64, current: u64 },
    #[error("revision {requested} is no longer held (oldest held: {oldest})")]
    Gone { requested: u64, oldest: u64 },
    #[error("object {key} is {size} bytes, over the bus limit of {limit} bytes")]
    TooLarge { key: Key, size: usize, limit: usize },
    #[error("NATS JetStream unavailable: {0}")]
    Unavailable(String),
    #[error("store error: {0}")]
    Internal(String),
}

impl StoreError {
    fn unavailable(e: impl std::fmt::Display) -> Self {
        StoreError::Unavailable(e.to_string())
    }
}

/// Every live object at a revision, and the tombstones the objects stream still holds.
#[derive(Debug, Clone, Default)]
pub struct Listing {
    pub objects: Vec<Object>,
    /// (key, revision of the deletion) of deleted objects not yet compacted.
    pub tombstones: Vec<(Key, u64)>,
    pub revision: u64,
}

/// One stored object at a revision.
#[derive(Debug, Clone)]
pub struct Object {
    pub key: Key,
    pub revision: u64,
    /// Kubernetes JSON without `metadata.resourceVersion`.
    pub value: Bytes,
}

#[derive(Debug, Clone)]
pub struct StoreConfig {
    /// Name of this cluster on the bus; it prefixes stream names and subjects so several
    /// clusters can share one NATS deployment. `[A-Za-z0-9_-]+`.
    pub cluster: String,
    /// Revisions kept per object in the objects stream (the archive keeps all of them).
    pub history: i64,
    /// JetStream replicas of the streams (1 for one server, 3 for a NATS cluster).
    pub replicas: usize,
    pub archive: archive::ArchiveConfig,
}

impl Default for StoreConfig {
    fn default() -> Self {
        StoreConfig { cluster: "kubus".into(), history: 8, replicas: 1, archive: Default::default() }
    }
}

impl StoreConfig {
    pub fn objects_stream(&self) -> String {
        format!("KUBUS_{}_OBJECTS", self.cluster)
    }
    pub fn archive_stream(&self) -> String {
        format!("KUBUS_{}_ARCHIVE", self.cluster)
    }
    /// Subject root of object keys: `kubus.<cluster>.obj`.
    pub fn root(&self) -> String {
        format!("kubus.{}.obj", self.cluster)
    }
}

/// The one client every component uses to reach stored objects.
#[derive(Clone)]
pub struct Store {
    js: jetstream::Context,
    stream: stream::Stream,
    root: String,
    config: StoreConfig,
    client: async_nats::Client,
    /// The meta stream (compacted revision); None when attached to a control plane older than it.
    meta: Option<stream::Stream>,
    /// Encryption at rest of some resources' objects (`--encryption-provider-config`).
    encryption: Option<std::sync::Arc<encryption::Encryption>>,
}

/// An object as read: decrypted if it is stored encrypted or its resource is to be.
fn readable(
    encryption: Option<&encryption::Encryption>,
    key: &Key,
    subject: &str,
    stored: Bytes,
) -> Result<Bytes, StoreError> {
    match encryption {
        Some(e) if e.covers(&key.group, &key.resource) || encryption::is_encrypted(&stored) => {
            e.decrypt(subject, stored).map_err(|err| StoreError::Internal(format!("{key}: {err}")))
        }
        None if encryption::is_encrypted(&stored) => Err(StoreError::Internal(format!(
            "{key} is stored encrypted: start with the --encryption-provider-config that wrote it"
        ))),
        _ => Ok(stored),
    }
}

/// [`readable`] for lists and watches: an object that cannot be read is logged and counted,
/// and left out (a deletion keeps its key, with an empty object), so one bad object never
/// stops a list or a watch, and so the API server.
fn readable_or_skipped(
    encryption: Option<&encryption::Encryption>,
    key: &Key,
    subject: &str,
    stored: Bytes,
    deleted: bool,
) -> Option<Bytes> {
    match readable(encryption, key, subject, stored) {
        Ok(v) => Some(v),
        Err(e) => {
            crate::metrics::UNREADABLE_OBJECTS.inc();
            tracing::error!(error = %e, "an object cannot be read; left out");
            deleted.then(|| Bytes::from_static(b"{}"))
        }
    }
}

impl Store {
    /// Opens the store, creating (or updating the limits of) its streams.
    pub async fn open(client: async_nats::Client, config: StoreConfig) -> Result<Store, StoreError> {
        if config.cluster.is_empty()
            || !config.cluster.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        {
            return Err(StoreError::Internal(format!("cluster name {:?} must match [A-Za-z0-9_-]+", config.cluster)));
        }
        let js = jetstream::new(client.clone());
        let root = config.root();
        let stream_config = stream::Config {
            name: config.objects_stream(),
            description: Some(format!("Kubus cluster {}: objects (one subject per object)", config.cluster)),
            subjects: vec![format!("{root}.>")],
            max_messages_per_subject: config.history,
            storage: stream::StorageType::File,
            num_replicas: config.replicas,
            discard: stream::DiscardPolicy::Old,
            allow_rollup: false,
            deny_delete: true,
            deny_purge: false,
            // Direct gets may be served by a lagging replica; reads go to the leader instead.
            allow_direct: false,
            duplicate_window: Duration::from_secs(120),
            ..Default::default()
        };
        let stream = match js.get_stream(config.objects_stream()).await {
            Ok(s) => {
                if s.cached_info().config.max_messages_per_subject != config.history {
                    js.update_stream(stream_config).await.map_err(StoreError::unavailable)?;
                }
                js.get_stream(config.objects_stream()).await.map_err(StoreError::unavailable)?
            }
            Err(_) => js.create_stream(stream_config).await.map_err(StoreError::unavailable)?,
        };
        archive::ensure(&js, &config).await?;
        let meta = Some(compaction::ensure(&js, &config).await?);
        Ok(Store { js, stream, root, config, client, meta, encryption: None })
    }

    /// Opens the store of a cluster some other process created (a control plane), changing
    /// nothing about its streams.
    pub async fn attach(client: async_nats::Client, cluster: &str) -> Result<Store, StoreError> {
        let config = StoreConfig { cluster: cluster.to_string(), ..Default::default() };
        let js = jetstream::new(client.clone());
        let stream = js.get_stream(config.objects_stream()).await.map_err(|e| {
            StoreError::Unavailable(format!(
                "cluster {cluster:?} not found on this NATS ({e}); is its control plane running?"
            ))
        })?;
        let info = &stream.cached_info().config;
        let config = StoreConfig { history: info.max_messages_per_subject, replicas: info.num_replicas, ..config };
        let meta = js.get_stream(config.meta_stream()).await.ok();
        Ok(Store { root: config.root(), js, stream, config, client, meta, encryption: None })
    }

    /// This store encrypting (and decrypting) objects as `encryption` says.
    pub fn with_encryption(mut self, encryption: std::sync::Arc<encryption::Encryption>) -> Store {
        self.encryption = Some(encryption);
        self
    }

    /// Whether objects of `resource` in `group` are stored encrypted.
    pub fn encrypts(&self, group: &str, resource: &str) -> bool {
        self.encryption.as_ref().is_some_and(|e| e.covers(group, resource))
    }

    pub fn config(&self) -> &StoreConfig {
        &self.config
    }

    pub fn context(&self) -> &jetstream::Context {
        &self.js
    }

    /// Largest object (in bytes) the bus accepts, less room for headers.
    pub fn max_object_size(&self) -> usize {
        // The server announces its limit on connect; before that assume NATS' default 1 MiB.
        let announced = self.client.server_info().max_payload;
        let max_payload = if announced == 0 { 1 << 20 } else { announced };
        max_payload.saturating_sub(1024)
    }

    fn subject(&self, key: &Key) -> String {
        key.subject(&self.root)
    }

    async fn publish(&self, key: &Key, op: &str, value: Bytes, expected_last: u64) -> Result<u64, PublishOutcome> {
        if value.len() > self.max_object_size() {
            return Err(PublishOutcome::Failed(StoreError::TooLarge {
                key: key.clone(),
                size: value.len(),
                limit: self.max_object_size(),
            }));
        }
        let subject = self.subject(key);
        let value = match &self.encryption {
            Some(e) if e.covers(&key.group, &key.resource) => e
                .encrypt(&subject, &value)
                .map_err(|err| PublishOutcome::Failed(StoreError::Internal(err.to_string())))?,
            _ => value,
        };
        let msg = jetstream::message::PublishMessage::build()
            .payload(value)
            .header(OP_HEADER, op)
            .expected_last_subject_sequence(expected_last);
        let ack =
            self.js.send_publish(subject, msg).await.map_err(|e| PublishOutcome::Failed(StoreError::unavailable(e)))?;
        match ack.await {
            Ok(ack) => Ok(ack.sequence),
            Err(e) if e.kind() == PublishErrorKind::WrongLastSequence => Err(PublishOutcome::WrongLast),
            Err(e) if e.kind() == PublishErrorKind::MaxPayloadExceeded => {
                Err(PublishOutcome::Failed(StoreError::TooLarge {
                    key: key.clone(),
                    size: 0,
                    limit: self.max_object_size(),
                }))
            }
            Err(e) => Err(PublishOutcome::Failed(StoreError::unavailable(e))),
        }
    }

    /// The last message of a key's subject, tombstones included, read from the stream leader.
    async fn last_message(&self, key: &Key) -> Result<Option<(u64, bool, Bytes)>, StoreError> {
        match self.stream.get_last_raw_message_by_subject(&self.subject(key)).await {
            Ok(m) => {
                let value = readable(self.encryption.as_deref(), key, &self.subject(key), m.payload)?;
                Ok(Some((m.sequence, is_delete(&m.headers), value)))
            }
            Err(e) if e.kind() == stream::LastRawMessageErrorKind::NoMessageFound => Ok(None),
            Err(e) => Err(StoreError::unavailable(e)),
        }
    }

    /// Stores a new object; fails with `AlreadyExists` if the key holds a live object.
    #[instrument(skip_all, fields(key = %key))]
    pub async fn create(&self, key: &Key, value: Bytes) -> Result<u64, StoreError> {
        let started = Instant::now();
        let result = self.create_inner(key, value).await;
        observe("create", started, result.is_ok());
        result
    }

    async fn create_inner(&self, key: &Key, value: Bytes) -> Result<u64, StoreError> {
        // A key that never existed expects sequence 0; one whose last write is a tombstone
        // expects that tombstone, so a concurrent create of the same name loses the race.
        for _ in 0..8 {
            let expected = match self.last_message(key).await? {
                None => 0,
                Some((seq, true, _)) => seq,
                Some((_, false, _)) => return Err(StoreError::AlreadyExists(key.clone())),
            };
            match self.publish(key, "create", value.clone(), expected).await {
                Ok(rev) => return Ok(rev),
                Err(PublishOutcome::WrongLast) => continue,
                Err(PublishOutcome::Failed(e)) => return Err(e),
            }
        }
        Err(StoreError::AlreadyExists(key.clone()))
    }

    /// Replaces an object if its revision is still `expected`, which must be the revision of a
    /// live object as read from this store (a tombstone's revision would resurrect it).
    #[instrument(skip_all, fields(key = %key, expected))]
    pub async fn update(&self, key: &Key, value: Bytes, expected: u64) -> Result<u64, StoreError> {
        let started = Instant::now();
        let result = match self.publish(key, "update", value, expected).await {
            Ok(rev) => Ok(rev),
            Err(PublishOutcome::WrongLast) => Err(self.explain_mismatch(key, expected).await),
            Err(PublishOutcome::Failed(e)) => Err(e),
        };
        observe("update", started, result.is_ok());
        result
    }

    /// Deletes an object at revision `expected`, leaving `final_value` in the tombstone.
    #[instrument(skip_all, fields(key = %key, expected))]
    pub async fn delete(&self, key: &Key, final_value: Bytes, expected: u64) -> Result<u64, StoreError> {
        let started = Instant::now();
        let result = match self.publish(key, "delete", final_value, expected).await {
            Ok(rev) => Ok(rev),
            Err(PublishOutcome::WrongLast) => Err(self.explain_mismatch(key, expected).await),
            Err(PublishOutcome::Failed(e)) => Err(e),
        };
        observe("delete", started, result.is_ok());
        result
    }

    /// A failed compare-and-swap means either "gone" or "changed": tell them apart.
    async fn explain_mismatch(&self, key: &Key, expected: u64) -> StoreError {
        match self.last_message(key).await {
            Ok(None) | Ok(Some((_, true, _))) => StoreError::NotFound(key.clone()),
            Ok(Some((current, false, _))) => StoreError::Conflict { key: key.clone(), expected, current },
            Err(e) => e,
        }
    }

    /// The live object at a key, read from the stream leader.
    #[instrument(skip_all, fields(key = %key))]
    pub async fn get(&self, key: &Key) -> Result<Option<Object>, StoreError> {
        let started = Instant::now();
        let result = self.last_message(key).await.map(|m| match m {
            Some((rev, false, value)) => Some(Object { key: key.clone(), revision: rev, value }),
            _ => None,
        });
        observe("get", started, result.is_ok());
        result
    }

    /// The newest revision of the whole store (the stream's last sequence, from the leader).
    pub async fn current_revision(&self) -> Result<u64, StoreError> {
        let info = self.stream.get_info().await.map_err(StoreError::unavailable)?;
        Ok(info.state.last_sequence)
    }

    /// The oldest revision the objects stream still holds.
    pub async fn oldest_revision(&self) -> Result<u64, StoreError> {
        let info = self.stream.get_info().await.map_err(StoreError::unavailable)?;
        Ok(info.state.first_sequence)
    }

    /// Every live object under `prefix`, consistent at the returned revision: all writes at or
    /// below it are reflected and a watch from revision+1 sees every later one.
    #[instrument(skip_all, fields(prefix = ?prefix))]
    pub async fn list(&self, prefix: &KeyPrefix) -> Result<(Vec<Object>, u64), StoreError> {
        let started = Instant::now();
        let result = self.list_filter(&prefix.filter(&self.root)).await.map(|l| (l.objects, l.revision));
        observe("list", started, result.is_ok());
        result
    }

    /// Like [`Store::list`] for every object of every type (the API server's watch cache),
    /// with the tombstones still held (key and revision of each deletion), for compaction.
    pub async fn list_all(&self) -> Result<Listing, StoreError> {
        let started = Instant::now();
        let result = self.list_filter(&format!("{}.>", self.root)).await;
        observe("list", started, result.is_ok());
        result
    }

    async fn list_filter(&self, filter: &str) -> Result<Listing, StoreError> {
        let before = self.current_revision().await?;
        let consumer = self
            .stream
            .create_consumer(consumer::pull::OrderedConfig {
                filter_subject: filter.to_string(),
                deliver_policy: consumer::DeliverPolicy::LastPerSubject,
                ..Default::default()
            })
            .await
            .map_err(StoreError::unavailable)?;
        let mut revision = before;
        let mut latest: BTreeMap<String, (u64, bool, Bytes)> = BTreeMap::new();
        if consumer.cached_info().num_pending > 0 {
            let mut messages = consumer.messages().await.map_err(StoreError::unavailable)?;
            while let Some(msg) = messages.next().await {
                let msg = msg.map_err(StoreError::unavailable)?;
                let info = msg.info().map_err(|e| StoreError::Internal(e.to_string()))?;
                let (seq, pending) = (info.stream_sequence, info.pending);
                revision = revision.max(seq);
                let delete = msg.headers.as_ref().is_some_and(is_delete);
                latest.insert(msg.subject.to_string(), (seq, delete, msg.payload.clone()));
                if pending == 0 {
                    break;
                }
            }
        }
        let (mut objects, mut tombstones) = (Vec::new(), Vec::new());
        for (subject, (rev, delete, value)) in latest {
            let Some(key) = Key::from_subject(&self.root, &subject) else { continue };
            let Some(value) = readable_or_skipped(self.encryption.as_deref(), &key, &subject, value, delete) else {
                continue;
            };
            if delete {
                tombstones.push((key, rev));
            } else {
                objects.push(Object { key, revision: rev, value });
            }
        }
        Ok(Listing { objects, tombstones, revision })
    }

    /// Every change under `prefix` (or everything when `None`) after revision `after`, in order,
    /// with no gap and no duplicate. Fails with `Gone` when the stream no longer holds
    /// revision `after + 1`.
    pub async fn watch(&self, prefix: Option<&KeyPrefix>, after: u64) -> Result<Watch, StoreError> {
        let started = Instant::now();
        let info = self.stream.get_info().await.map_err(StoreError::unavailable)?;
        let oldest = info.state.first_sequence;
        if after + 1 < oldest && after < info.state.last_sequence {
            observe("watch", started, false);
            return Err(StoreError::Gone { requested: after, oldest });
        }
        // Deletions at or before the compacted revision may be gone: resuming from before it
        // could miss one.
        let compacted = self.compacted_revision().await?;
        if after < compacted {
            observe("watch", started, false);
            return Err(StoreError::Gone { requested: after, oldest: compacted + 1 });
        }
        let filter = match prefix {
            Some(p) => p.filter(&self.root),
            None => format!("{}.>", self.root),
        };
        let consumer = self
            .stream
            .create_consumer(consumer::pull::OrderedConfig {
                filter_subject: filter,
                deliver_policy: consumer::DeliverPolicy::ByStartSequence { start_sequence: after + 1 },
                ..Default::default()
            })
            .await
            .map_err(StoreError::unavailable)?;
        let messages = consumer.messages().await.map_err(StoreError::unavailable)?;
        observe("watch", started, true);
        Ok(Watch::new(messages, self.root.clone(), self.encryption.clone(), after))
    }
}

enum PublishOutcome {
    WrongLast,
    Failed(StoreError),
}

/// The stream `config` names, created from `config` if it is missing (an existing one is left
/// as it is): the store's small streams of bookkeeping and keys.
async fn get_or_create_stream(js: &jetstream::Context, config: stream::Config) -> Result<stream::Stream, StoreError> {
    if let Ok(s) = js.get_stream(&config.name).await {
        return Ok(s);
    }
    js.create_stream(config).await.map_err(StoreError::unavailable)
}

fn is_delete(headers: &HeaderMap) -> bool {
    headers.get(OP_HEADER).is_some_and(|v| v.as_str() == "delete")
}
