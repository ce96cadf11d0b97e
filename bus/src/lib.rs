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
pub mod credential;
pub mod embedded;
pub mod join;
pub mod metrics;
pub mod nats_users;
pub mod store;
pub mod stream;
pub mod tls;
pub mod usage;

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

/// `urls` (comma-separated NATS URLs) without their credentials (`user:password@`), for
/// messages and logs.
pub fn redact(urls: &str) -> String {
    urls.split(',')
        .map(|url| match (url.find("://"), url.rfind('@')) {
            (Some(scheme), Some(at)) if at > scheme => format!("{}{}", &url[..scheme + 3], &url[at + 1..]),
            (None, Some(at)) => url[at + 1..].to_string(),
            _ => url.to_string(),
        })
        .collect::<Vec<_>>()
        .join(",")
}

/// Connects to NATS (comma-separated URLs), retrying the first connection for a while so that
/// a server started a moment ago is found.
/// A user and password in the URL (`nats://user:password@host:port`) log in: the embedded
/// server requires them.
pub async fn connect(urls: &str, name: &str) -> Result<async_nats::Client, async_nats::ConnectError> {
    connect_as(urls, name, &Login::default()).await
}

/// How a client logs in beyond what its URL says: restricted users (nodes, bootstrap tokens)
/// log in by nkey or token password and may subscribe only under their own inbox prefix; a
/// server that listens beyond loopback requires TLS, and a client trusts only the cluster CA.
#[derive(Clone, Default)]
pub struct Login {
    /// An nkey seed (`SU...`): the user is its public key.
    pub nkey_seed: Option<String>,
    /// A user and password (else those of the URL, if any).
    pub user_password: Option<(String, String)>,
    /// The prefix of this client's reply subjects (`_INBOX.<nuid>` by default).
    pub inbox_prefix: Option<String>,
    /// Whom to trust when the server requires TLS (the system's roots if unset).
    pub tls: Option<std::sync::Arc<rustls::ClientConfig>>,
}

impl std::fmt::Debug for Login {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never a seed or password in a log line.
        f.debug_struct("Login")
            .field("nkey", &self.nkey_seed.is_some())
            .field("user", &self.user_password.as_ref().map(|(u, _)| u))
            .field("inbox_prefix", &self.inbox_prefix)
            .field("tls", &self.tls.is_some())
            .finish()
    }
}

impl Login {
    fn apply(&self, mut options: async_nats::ConnectOptions, urls: &str) -> async_nats::ConnectOptions {
        options = match (&self.nkey_seed, &self.user_password) {
            (Some(seed), _) => options.nkey(seed.clone()),
            (None, Some((user, password))) => options.user_and_password(user.clone(), password.clone()),
            (None, None) => with_credentials(options, urls),
        };
        if let Some(prefix) = &self.inbox_prefix {
            options = options.custom_inbox_prefix(prefix);
        }
        if let Some(tls) = &self.tls {
            // Set, TLS is required: a server (or someone on the path) offering none gets no
            // credential.
            options = options.tls_client_config((**tls).clone()).require_tls(true);
        }
        options
    }

    /// This login trusting only the CA of `ca_pem` for TLS.
    pub fn trusting(mut self, ca_pem: &str) -> Result<Login, tls::TlsError> {
        self.tls = Some(std::sync::Arc::new(tls::trust_ca(ca_pem)?));
        Ok(self)
    }
}

/// Whether `host` (a name or an address, bare) is this machine's loopback.
pub fn is_loopback_host(host: &str) -> bool {
    host == "localhost" || host.parse::<std::net::IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

/// Whether every one of `urls` (comma-separated) names a loopback host: the only place a
/// NATS server of Kubus's listens without TLS.
pub fn is_loopback_url(urls: &str) -> bool {
    redact(urls).split(',').all(|url| {
        let (host, _) = embedded::split_listen(url.split_once("://").map_or(url, |(_, rest)| rest));
        is_loopback_host(&host)
    })
}

/// One attempt to connect as `login` says (an error, a refused login among them, is
/// returned at once).
pub async fn connect_once(
    urls: &str,
    name: &str,
    login: &Login,
) -> Result<async_nats::Client, async_nats::ConnectError> {
    let options = async_nats::ConnectOptions::new().name(name).connection_timeout(std::time::Duration::from_secs(5));
    login.apply(options, urls).connect(redact(urls)).await
}

/// Connects to NATS (comma-separated URLs) as `login` says, retrying the first connection for
/// a while.
pub async fn connect_as(urls: &str, name: &str, login: &Login) -> Result<async_nats::Client, async_nats::ConnectError> {
    login.apply(options(name, None), urls).connect(redact(urls)).await
}

/// The user and password of the first of `urls` that has them (async-nats reads none from a
/// URL), and the options logging in with them.
fn with_credentials(options: async_nats::ConnectOptions, urls: &str) -> async_nats::ConnectOptions {
    let credentials = urls.split(',').find_map(|url| {
        let rest = url.split_once("://").map_or(url, |(_, rest)| rest);
        let (userinfo, _) = rest.rsplit_once('@')?;
        let (user, password) = userinfo.split_once(':')?;
        Some((user.to_string(), password.to_string()))
    });
    match credentials {
        Some((user, password)) => options.user_and_password(user, password),
        None => options,
    }
}

/// Connects to the embedded server at `url`, which must answer as `expected_server_name`
/// ([`EmbeddedNats::server_name`]): the first connection is checked before this returns, and
/// every reconnection after it. async-nats reconnects to whatever answers on the address, and
/// while the child is down another server may have taken it: a reconnection to another server
/// logs an error naming the address and that server, and ends the process, which must never
/// write to a store it does not own.
pub async fn connect_to_embedded(
    url: &str,
    name: &str,
    expected_server_name: &str,
    login: &Login,
) -> Result<async_nats::Client, embedded::EmbeddedError> {
    let addr = redact(url).trim_start_matches("nats://").to_string();
    let (client_tx, client) = tokio::sync::watch::channel(None);
    let expected =
        std::sync::Arc::new(Expected { addr: addr.clone(), server_name: expected_server_name.to_string(), client });
    let client = login
        .apply(options(name, Some(expected)), url)
        .connect(redact(url))
        .await
        .map_err(|source| embedded::EmbeddedError::Connect { addr: addr.clone(), source })?;
    embedded::check_connected(&client, &addr, expected_server_name).await?;
    // The reconnection checks need the client. It stays referenced from its own event
    // callback, so the connection lasts as long as the process (as the control plane's does).
    let _ = client_tx.send(Some(client.clone()));
    Ok(client)
}

/// The server a client must be connected to.
struct Expected {
    addr: String,
    server_name: String,
    /// Set once the first connection was checked.
    client: tokio::sync::watch::Receiver<Option<async_nats::Client>>,
}

impl Expected {
    /// Ends the process unless the server the client reconnected to is the expected one.
    async fn check_reconnected(&self) {
        let mut client = self.client.clone();
        let Some(client) = client.wait_for(Option::is_some).await.ok().and_then(|c| c.clone()) else { return };
        match embedded::server_name(&client).await {
            Some(found) if found != self.server_name => {
                let error = embedded::EmbeddedError::NotOurs {
                    addr: self.addr.clone(),
                    expected: self.server_name.clone(),
                    found,
                };
                tracing::error!(%error, "stopping: Kubus writes only to the embedded server it started");
                std::process::exit(1);
            }
            // Ours; or disconnected again before the server answered, and the next
            // reconnection is checked.
            _ => {}
        }
    }
}

fn options(name: &str, expected: Option<std::sync::Arc<Expected>>) -> async_nats::ConnectOptions {
    let lost = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let client_name = name.to_string();
    async_nats::ConnectOptions::new()
        .name(name)
        .retry_on_initial_connect()
        .connection_timeout(std::time::Duration::from_secs(5))
        .event_callback(move |event| {
            let (lost, client_name, expected) = (lost.clone(), client_name.clone(), expected.clone());
            async move {
                use std::sync::atomic::Ordering;
                match event {
                    async_nats::Event::Disconnected => {
                        lost.store(true, Ordering::SeqCst);
                        tracing::warn!(client = %client_name, "lost the connection to NATS; reconnecting");
                    }
                    async_nats::Event::ServerError(error) => {
                        // A denied publish or subscription comes back only as this: the
                        // request it belonged to just times out.
                        crate::metrics::NATS_SERVER_ERRORS.with_label_values(&[&client_name]).inc();
                        tracing::warn!(client = %client_name, %error, "the NATS server reported an error");
                    }
                    async_nats::Event::Connected if lost.swap(false, Ordering::SeqCst) => {
                        // Before watches resume: they would read from (and writers write to)
                        // whatever server this is.
                        if let Some(expected) = &expected {
                            expected.check_reconnected().await;
                        }
                        tracing::info!(client = %client_name, "reconnected to NATS");
                        RECONNECTS.send_modify(|n| *n += 1);
                    }
                    _ => {}
                }
            }
        })
}

#[cfg(test)]
mod tests {
    #[test]
    fn urls_show_without_credentials() {
        assert_eq!(super::redact("nats://kubus:secret@127.0.0.1:4222"), "nats://127.0.0.1:4222");
        assert_eq!(super::redact("nats://a:b@h1:1,tls://c:d@h2:2"), "nats://h1:1,tls://h2:2");
        assert_eq!(super::redact("nats://h:4222"), "nats://h:4222");
        assert_eq!(super::redact("u:p@h:1"), "h:1");
    }

    #[test]
    fn loopback_urls() {
        assert!(super::is_loopback_url("nats://kubus:pw@127.0.0.1:4222"));
        assert!(super::is_loopback_url("nats://[::1]:4222,nats://localhost:1"));
        assert!(!super::is_loopback_url("tls://192.0.2.1:4222"));
        assert!(!super::is_loopback_url("nats://127.0.0.1:1,nats://10.0.0.1:2"));
    }
}
