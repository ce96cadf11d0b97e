//! The cluster's own secrets (the ServiceAccount token signing key), kept in a small stream of
//! their own (`KUBUS_<cluster>_KEYS`), apart from the objects stream and its archive: no REST
//! path serves them, the watch cache never holds them and replaying history never shows them.
//! Every API server of the cluster reads the same key; the first to start makes it.

use super::{Store, StoreConfig, StoreError};
use async_nats::jetstream::{self, context::PublishErrorKind, stream};
use bytes::Bytes;

impl StoreConfig {
    pub fn keys_stream(&self) -> String {
        format!("KUBUS_{}_KEYS", self.cluster)
    }
    fn key_subject(&self, name: &str) -> String {
        format!("kubus.{}.keys.{name}", self.cluster)
    }
}

/// Creates the keys stream if it is missing.
async fn ensure(js: &jetstream::Context, config: &StoreConfig) -> Result<stream::Stream, StoreError> {
    let keys = stream::Config {
        name: config.keys_stream(),
        description: Some(format!("Kubus cluster {}: the cluster's signing keys (never served)", config.cluster)),
        subjects: vec![format!("kubus.{}.keys.>", config.cluster)],
        max_messages_per_subject: 1,
        storage: stream::StorageType::File,
        num_replicas: config.replicas,
        allow_direct: false,
        // A key is made once: a purge would have the next API server make another while the
        // running ones keep the old (tokens of one refused by the other).
        deny_delete: true,
        deny_purge: true,
        ..Default::default()
    };
    super::get_or_create_stream(js, keys).await
}

impl Store {
    /// The cluster secret `name` (`[A-Za-z0-9_-]+`): the one stored, or `make()`'s, stored
    /// first if none is; when several API servers start at once, every one gets the first's.
    pub async fn cluster_secret(&self, name: &str, make: impl Fn() -> Vec<u8>) -> Result<Bytes, StoreError> {
        if name.is_empty() || !name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_') {
            return Err(StoreError::Internal(format!("cluster secret name {name:?} must match [A-Za-z0-9_-]+")));
        }
        let keys = ensure(&self.js, &self.config).await?;
        let subject = self.config.key_subject(name);
        for _ in 0..4 {
            match keys.get_last_raw_message_by_subject(&subject).await {
                Ok(m) => return Ok(m.payload),
                Err(e) if e.kind() == stream::LastRawMessageErrorKind::NoMessageFound => {}
                Err(e) => return Err(StoreError::unavailable(e)),
            }
            let msg = jetstream::message::PublishMessage::build()
                .payload(Bytes::from(make()))
                .expected_last_subject_sequence(0);
            let ack = self.js.send_publish(subject.clone(), msg).await.map_err(StoreError::unavailable)?;
            // Stored or lost the race: read back what is stored, so every caller gets the same.
            match ack.await {
                Ok(_) => continue,
                Err(e) if e.kind() == PublishErrorKind::WrongLastSequence => continue,
                Err(e) => return Err(StoreError::unavailable(e)),
            }
        }
        Err(StoreError::Unavailable(format!("cluster secret {name} could not be read back")))
    }
}
