//! The change archive: a mirror of the objects stream that keeps every revision of every key
//! (bounded only by age and bytes), so the cluster's state at any past revision can be rebuilt.
//! A mirror keeps the source's sequence numbers, so archive sequence = resourceVersion.

use super::{is_delete, Key, KeyPrefix, Object, StoreConfig, StoreError};
use async_nats::jetstream::{self, consumer, stream};
use futures::StreamExt;
use std::collections::BTreeMap;
use std::time::Duration;

#[derive(Debug, Clone)]
pub struct ArchiveConfig {
    pub enabled: bool,
    /// Oldest change kept; zero keeps changes forever.
    pub max_age: Duration,
    /// Size bound of the archive; -1 for none.
    pub max_bytes: i64,
}

impl Default for ArchiveConfig {
    fn default() -> Self {
        ArchiveConfig { enabled: true, max_age: Duration::from_secs(30 * 24 * 3600), max_bytes: 10 << 30 }
    }
}

pub(super) async fn ensure(js: &jetstream::Context, config: &StoreConfig) -> Result<(), StoreError> {
    if !config.archive.enabled {
        return Ok(());
    }
    let archive = stream::Config {
        name: config.archive_stream(),
        description: Some(format!("Kubus cluster {}: every change, for replay", config.cluster)),
        mirror: Some(stream::Source { name: config.objects_stream(), ..Default::default() }),
        max_messages_per_subject: -1,
        max_age: config.archive.max_age,
        max_bytes: config.archive.max_bytes,
        storage: stream::StorageType::File,
        num_replicas: config.replicas,
        discard: stream::DiscardPolicy::Old,
        deny_delete: true,
        ..Default::default()
    };
    match js.get_stream(config.archive_stream()).await {
        Ok(s) => {
            let c = &s.cached_info().config;
            if c.max_age != archive.max_age || c.max_bytes != archive.max_bytes {
                js.update_stream(archive).await.map_err(|e| StoreError::Unavailable(e.to_string()))?;
            }
        }
        Err(_) => {
            js.create_stream(archive).await.map_err(|e| StoreError::Unavailable(e.to_string()))?;
        }
    }
    Ok(())
}

/// Reads the archive of one cluster.
#[derive(Clone)]
pub struct Archive {
    stream: stream::Stream,
    root: String,
}

impl Archive {
    pub async fn open(js: &jetstream::Context, config: &StoreConfig) -> Result<Archive, StoreError> {
        let stream =
            js.get_stream(config.archive_stream()).await.map_err(|e| StoreError::Unavailable(e.to_string()))?;
        Ok(Archive { stream, root: config.root() })
    }

    /// (oldest, newest) revision the archive holds.
    pub async fn bounds(&self) -> Result<(u64, u64), StoreError> {
        let info = self.stream.get_info().await.map_err(|e| StoreError::Unavailable(e.to_string()))?;
        Ok((info.state.first_sequence, info.state.last_sequence))
    }

    /// Every revision of one object, oldest first: (revision, deleted, value).
    pub async fn history(&self, key: &Key) -> Result<Vec<(u64, bool, bytes::Bytes)>, StoreError> {
        let mut out = Vec::new();
        self.scan(key.subject(&self.root), 0, u64::MAX, |_, rev, del, v| out.push((rev, del, v))).await?;
        Ok(out)
    }

    /// The live objects under `prefix` (or all) as they were at `revision`.
    pub async fn state_at(&self, prefix: Option<&KeyPrefix>, revision: u64) -> Result<Vec<Object>, StoreError> {
        let (oldest, _) = self.bounds().await?;
        if revision < oldest.saturating_sub(1) {
            return Err(StoreError::Gone { requested: revision, oldest });
        }
        let filter = match prefix {
            Some(p) => p.filter(&self.root),
            None => format!("{}.>", self.root),
        };
        let mut state: BTreeMap<String, (u64, bool, bytes::Bytes)> = BTreeMap::new();
        self.scan(filter, 0, revision, |subject, rev, del, v| {
            state.insert(subject, (rev, del, v));
        })
        .await?;
        Ok(state
            .into_iter()
            .filter(|(_, (_, del, _))| !del)
            .filter_map(|(s, (rev, _, value))| {
                Key::from_subject(&self.root, &s).map(|key| Object { key, revision: rev, value })
            })
            .collect())
    }

    /// Replays messages matching `filter` with revisions in `from..=to`, in order.
    async fn scan(
        &self,
        filter: String,
        from: u64,
        to: u64,
        mut f: impl FnMut(String, u64, bool, bytes::Bytes),
    ) -> Result<(), StoreError> {
        let unavailable = |e: &dyn std::fmt::Display| StoreError::Unavailable(e.to_string());
        let consumer = self
            .stream
            .create_consumer(consumer::pull::OrderedConfig {
                filter_subject: filter,
                deliver_policy: if from == 0 {
                    consumer::DeliverPolicy::All
                } else {
                    consumer::DeliverPolicy::ByStartSequence { start_sequence: from }
                },
                ..Default::default()
            })
            .await
            .map_err(|e| unavailable(&e))?;
        if consumer.cached_info().num_pending == 0 {
            return Ok(());
        }
        let mut messages = consumer.messages().await.map_err(|e| unavailable(&e))?;
        while let Some(msg) = messages.next().await {
            let msg = msg.map_err(|e| unavailable(&e))?;
            let info = msg.info().map_err(|e| StoreError::Internal(e.to_string()))?;
            let (seq, pending) = (info.stream_sequence, info.pending);
            if seq > to {
                break;
            }
            let del = msg.headers.as_ref().is_some_and(is_delete);
            f(msg.subject.to_string(), seq, del, msg.payload.clone());
            if pending == 0 {
                break;
            }
        }
        Ok(())
    }
}
