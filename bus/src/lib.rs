//! The NATS JetStream substrate of Kubus.
//!
//! JetStream is both the store and the watch substrate: every object lives on one subject of
//! the objects stream and its resourceVersion is the stream sequence of its last write
//! ([`store`]). Every change is also mirrored into an archive stream with unlimited per-key
//! history so that any past state can be rebuilt ([`store::archive`]). [`embedded`] starts a
//! private `nats-server` when no NATS URL is given, and [`api`] carries the API server's
//! request/reply protocol that internal actors use instead of talking to the store directly.
#![forbid(unsafe_code)]

pub mod api;
pub mod embedded;
pub mod metrics;
pub mod store;
pub mod stream;

pub use embedded::EmbeddedNats;
pub use store::{Event, EventType, Key, Object, Store, StoreConfig, StoreError};

/// Connects to NATS (comma-separated URLs), retrying the first connection for a while so that
/// a server started a moment ago is found.
pub async fn connect(urls: &str, name: &str) -> Result<async_nats::Client, async_nats::ConnectError> {
    async_nats::ConnectOptions::new()
        .name(name)
        .retry_on_initial_connect()
        .connection_timeout(std::time::Duration::from_secs(5))
        .connect(urls)
        .await
}
