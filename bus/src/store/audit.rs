//! The audit stream (`KUBUS_<cluster>_AUDIT`): the API servers' audit events
//! (audit.k8s.io/v1 `Event` JSON, one message each on `kubus.<cluster>.audit`), kept for a set
//! time and never purged or deleted through the JetStream API: who did what stays on the bus
//! with the change history. Only the API servers (the administrator's login) publish there;
//! nodes' NATS users may not.

use super::{Store, StoreConfig, StoreError};
use async_nats::jetstream::stream;
use std::time::Duration;

impl StoreConfig {
    pub fn audit_stream(&self) -> String {
        format!("KUBUS_{}_AUDIT", self.cluster)
    }

    pub fn audit_subject(&self) -> String {
        format!("kubus.{}.audit", self.cluster)
    }
}

impl Store {
    /// Creates the audit stream if it is missing (keeping events `max_age`); an existing one
    /// is left as it is.
    pub async fn ensure_audit_stream(&self, max_age: Duration) -> Result<(), StoreError> {
        let audit = stream::Config {
            name: self.config.audit_stream(),
            description: Some(format!("Kubus cluster {}: the API servers' audit events", self.config.cluster)),
            subjects: vec![self.config.audit_subject()],
            max_age,
            storage: stream::StorageType::File,
            num_replicas: self.config.replicas,
            deny_delete: true,
            deny_purge: true,
            ..Default::default()
        };
        super::get_or_create_stream(&self.js, audit).await.map(|_| ())
    }

    /// The connection the store publishes with (audit events go out on it, unacknowledged).
    pub fn client(&self) -> &async_nats::Client {
        &self.client
    }
}

/// Audit events kept by default: upstream's `--audit-log-maxage` is in days, as this is.
pub const DEFAULT_MAX_AGE: Duration = Duration::from_secs(30 * 24 * 3600);
