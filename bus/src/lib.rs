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

/// Counts reconnections of this process's NATS clients after a lost connection. Store
/// watches end when it moves, so their owners re-watch from their last revision at once
/// instead of waiting for a JetStream consumer's missed heartbeats to notice a restarted
/// server.
static RECONNECTS: std::sync::LazyLock<tokio::sync::watch::Sender<u64>> =
    std::sync::LazyLock::new(|| tokio::sync::watch::channel(0).0);

/// A receiver of [`RECONNECTS`] (see `store::Watch`).
pub(crate) fn reconnects() -> tokio::sync::watch::Receiver<u64> {
    RECONNECTS.subscribe()
}

/// Connects to NATS (comma-separated URLs), retrying the first connection for a while so that
/// a server started a moment ago is found.
pub async fn connect(urls: &str, name: &str) -> Result<async_nats::Client, async_nats::ConnectError> {
    let lost = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let client_name = name.to_string();
    async_nats::ConnectOptions::new()
        .name(name)
        .retry_on_initial_connect()
        .connection_timeout(std::time::Duration::from_secs(5))
        .event_callback(move |event| {
            let (lost, client_name) = (lost.clone(), client_name.clone());
            async move {
                use std::sync::atomic::Ordering;
                match event {
                    async_nats::Event::Disconnected => {
                        lost.store(true, Ordering::SeqCst);
                        tracing::warn!(client = %client_name, "lost the connection to NATS; reconnecting");
                    }
                    async_nats::Event::Connected if lost.swap(false, Ordering::SeqCst) => {
                        tracing::info!(client = %client_name, "reconnected to NATS");
                        RECONNECTS.send_modify(|n| *n += 1);
                    }
                    _ => {}
                }
            }
        })
        .connect(urls)
        .await
}
