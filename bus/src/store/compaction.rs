//! Compaction of deleted objects' history in the objects stream, as etcd compacts revisions:
//! a deleted object's messages (its tombstone last) are purged once the tombstone is older
//! than the retention, so a relist costs what the cluster holds now, not every object it ever
//! held (the archive, a mirror, keeps all of it). The compacted revision is recorded first, in
//! a small stream of its own (`KUBUS_<cluster>_META`), and a watch that would resume from
//! before it fails with `Gone`: its client relists instead of missing a deletion, as a Kubernetes
//! client gets 410 after an etcd compaction.

use super::{Key, Store, StoreConfig, StoreError};
use async_nats::jetstream::{self, context::PublishErrorKind, stream};
use bytes::Bytes;

impl StoreConfig {
    pub fn meta_stream(&self) -> String {
        format!("KUBUS_{}_META", self.cluster)
    }
    fn compacted_subject(&self) -> String {
        format!("kubus.{}.meta.compacted", self.cluster)
    }
}

/// Creates the meta stream if it is missing.
pub(super) async fn ensure(js: &jetstream::Context, config: &StoreConfig) -> Result<stream::Stream, StoreError> {
    let meta = stream::Config {
        name: config.meta_stream(),
        description: Some(format!("Kubus cluster {}: store bookkeeping (compacted revision)", config.cluster)),
        subjects: vec![format!("kubus.{}.meta.>", config.cluster)],
        max_messages_per_subject: 1,
        storage: stream::StorageType::File,
        num_replicas: config.replicas,
        // Read from the leader: a lagging replica could hide a compaction from a watch.
        allow_direct: false,
        ..Default::default()
    };
    super::get_or_create_stream(js, meta).await
}

impl Store {
    /// The newest revision whose deleted objects may have been compacted (0: none), with the
    /// sequence of the record (for compare-and-swap).
    async fn compacted(&self) -> Result<(u64, u64), StoreError> {
        let Some(meta) = &self.meta else {
            return Ok((0, 0));
        };
        match meta.get_last_raw_message_by_subject(&self.config.compacted_subject()).await {
            Ok(m) => {
                let revision = std::str::from_utf8(&m.payload).ok().and_then(|s| s.parse().ok()).unwrap_or(0);
                Ok((revision, m.sequence))
            }
            Err(e) if e.kind() == stream::LastRawMessageErrorKind::NoMessageFound => Ok((0, 0)),
            Err(e) => Err(StoreError::unavailable(e)),
        }
    }

    /// The compacted revision; a watch from before it fails with `Gone`.
    pub async fn compacted_revision(&self) -> Result<u64, StoreError> {
        Ok(self.compacted().await?.0)
    }

    /// Raises the compacted revision to `revision` (never lowers it), by compare-and-swap, so
    /// several API servers compacting at once keep it monotonic.
    async fn raise_compacted(&self, revision: u64) -> Result<(), StoreError> {
        for _ in 0..8 {
            let (current, seq) = self.compacted().await?;
            if current >= revision {
                return Ok(());
            }
            let msg = jetstream::message::PublishMessage::build()
                .payload(Bytes::from(revision.to_string()))
                .expected_last_subject_sequence(seq);
            let ack =
                self.js.send_publish(self.config.compacted_subject(), msg).await.map_err(StoreError::unavailable)?;
            match ack.await {
                Ok(_) => return Ok(()),
                Err(e) if e.kind() == PublishErrorKind::WrongLastSequence => continue,
                Err(e) => return Err(StoreError::unavailable(e)),
            }
        }
        Err(StoreError::Unavailable("the compacted revision keeps changing; try again".into()))
    }

    /// Drops the history of deleted objects, each up to and including its tombstone (key and
    /// revision of the deletion); returns how many messages went. The compacted revision is
    /// raised first, so no watch can begin before a purged tombstone and miss it. Purges are
    /// subject-filtered and sequence-bounded: a re-created object and the archive are untouched.
    pub async fn compact_deleted(&self, tombstones: &[(Key, u64)]) -> Result<u64, StoreError> {
        let Some(newest) = tombstones.iter().map(|(_, rev)| *rev).max() else {
            return Ok(0);
        };
        if self.meta.is_none() {
            return Err(StoreError::Internal("this store was attached without its meta stream".into()));
        }
        self.raise_compacted(newest).await?;
        let mut purged = 0;
        for (key, revision) in tombstones {
            let resp = self
                .stream
                .purge()
                .filter(self.subject(key))
                .sequence(revision + 1)
                .await
                .map_err(StoreError::unavailable)?;
            purged += resp.purged;
        }
        Ok(purged)
    }
}
