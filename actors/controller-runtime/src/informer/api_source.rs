//! The API server source: a paged LIST and a WATCH through the API server over NATS with a
//! field selector, so the API server's watch cache does the filtering and this process holds
//! only the objects it selects (upstream's kubelet lists and watches pods with
//! `fieldSelector=spec.nodeName=<node>`). As client-go's reflector: the watch resumes from
//! the last resourceVersion seen (bookmarks keep it fresh), a 410 Gone relists, transport
//! errors back off.

use super::Informer;
use crate::client::escape;
use crate::client::{path, Client, ClientError};
use crate::metrics::INFORMER_DECODE_ERRORS;
use futures::StreamExt;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ListMeta, WatchEvent};
use kubus_apimachinery::{Object, ObjectExt};
use kubus_bus::api::ApiClient;
use kubus_bus::EventType;
use std::sync::atomic::Ordering;
use std::time::Duration;
use tracing::Instrument;

/// Objects per LIST page (a node's pods fit in one; the page keeps replies under NATS's
/// payload limit whatever the selector picks).
const PAGE_SIZE: usize = 500;
/// With bookmarks asked for, the API server sends one at least every 30 s: a watch silent for
/// longer lost its API server.
const IDLE_TIMEOUT: Duration = Duration::from_secs(75);
/// Server-side watch timeout, jittered between this and twice it (client-go's 5 to 10 min), so
/// watches spread over API servers again.
const WATCH_TIMEOUT: Duration = Duration::from_secs(300);
const MAX_BACKOFF: Duration = Duration::from_secs(10);

/// Lists and watches one resource through the API server with a field selector.
#[derive(Clone)]
pub struct ApiSource {
    client: Client,
    nats: async_nats::Client,
    field_selector: String,
    idle_timeout: Duration,
}

impl ApiSource {
    /// A source of the objects `field_selector` (e.g. `spec.nodeName=node-1`; "" for all)
    /// picks, asked of the API servers through `api`.
    pub fn new(api: ApiClient, field_selector: &str) -> Self {
        ApiSource {
            nats: api.nats().clone(),
            client: Client::new(api),
            field_selector: field_selector.to_string(),
            idle_timeout: IDLE_TIMEOUT,
        }
    }

    /// How long a watch may stay silent before it is taken for lost and made again (tests
    /// restart API servers and do not wait for the default).
    pub fn with_idle_timeout(mut self, timeout: Duration) -> Self {
        self.idle_timeout = timeout;
        self
    }

    pub fn field_selector(&self) -> &str {
        &self.field_selector
    }
}

#[derive(Debug, thiserror::Error)]
enum SourceError {
    #[error(transparent)]
    Client(#[from] ClientError),
    #[error("the list is not a list of the resource: {0}")]
    Decode(#[from] serde_json::Error),
    #[error("cannot subscribe to the watch's subject: {0}")]
    Subscribe(String),
    #[error("the watch ended with an error: {0}")]
    Status(String),
}

impl SourceError {
    /// The server no longer holds the resourceVersion (or continue token) asked for.
    fn is_gone(&self) -> bool {
        matches!(self, SourceError::Client(e) if e.code() == Some(410))
    }
}

/// How a watch ended without a transport error.
enum WatchEnd {
    /// The server closed it (timeout) or it fell silent: watch again from the last version.
    Resume,
    /// 410 Gone: the version is too old to watch from; list again.
    Expired,
}

/// One page of a LIST (k8s-openapi's `List` needs a listable type; informers take any object).
#[derive(serde::Deserialize)]
#[serde(bound = "K: Object")]
struct ListPage<K> {
    #[serde(default)]
    metadata: ListMeta,
    #[serde(default)]
    items: Vec<K>,
}

/// A watch timeout between [`WATCH_TIMEOUT`] and twice it.
fn jittered_watch_timeout() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let seed = std::collections::hash_map::RandomState::new().build_hasher().finish();
    WATCH_TIMEOUT.as_secs() + seed % WATCH_TIMEOUT.as_secs()
}

/// Lists and watches through the API server into `informer` until the process ends.
pub(super) async fn reflect<K: Object>(informer: &Informer<K>, source: &ApiSource) {
    let resource = informer.info().resource;
    let span = tracing::info_span!("informer", resource, source = "api", selector = %source.field_selector);
    async {
        let mut version: Option<String> = None;
        let mut backoff = Duration::from_millis(100);
        loop {
            let from = match version.take() {
                Some(v) => v,
                None => match list::<K>(source).await {
                    Ok((objects, v)) => {
                        tracing::debug!(objects = objects.len(), version = %v, "listed");
                        informer.relisted(objects);
                        v
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "informer list failed");
                        tokio::time::sleep(backoff).await;
                        backoff = (backoff * 2).min(MAX_BACKOFF);
                        continue;
                    }
                },
            };
            let mut last = from;
            match watch(informer, source, &mut last, &mut backoff).await {
                Ok(WatchEnd::Resume) => version = Some(last),
                Ok(WatchEnd::Expired) => tracing::debug!(version = %last, "watch expired; relisting"),
                Err(e) if e.is_gone() => tracing::debug!(version = %last, "watch expired; relisting"),
                Err(e) => {
                    tracing::warn!(error = %e, "informer watch failed");
                    version = Some(last);
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(MAX_BACKOFF);
                }
            }
        }
    }
    .instrument(span)
    .await
}

/// A consistent LIST of what the selector picks, page by page; the objects and the list's
/// resourceVersion.
async fn list<K: Object>(source: &ApiSource) -> Result<(Vec<K>, String), SourceError> {
    let path = path(kubus_apimachinery::resource::of::<K>(), None, None, None);
    let mut objects = Vec::new();
    let mut next: Option<String> = None;
    loop {
        let mut query = format!("fieldSelector={}&limit={PAGE_SIZE}", escape(&source.field_selector));
        if let Some(token) = &next {
            query.push_str(&format!("&continue={}", escape(token)));
        }
        let page: ListPage<K> = serde_json::from_value(source.client.request("GET", &path, &query, None, None).await?)?;
        objects.extend(page.items);
        match page.metadata.continue_.filter(|c| !c.is_empty()) {
            Some(token) => next = Some(token),
            None => return Ok((objects, page.metadata.resource_version.unwrap_or_default())),
        }
    }
}

/// Watches from `version`, applying every event and moving `version` along; `backoff` is reset
/// once the API server accepted the watch.
async fn watch<K: Object>(
    informer: &Informer<K>,
    source: &ApiSource,
    version: &mut String,
    backoff: &mut Duration,
) -> Result<WatchEnd, SourceError> {
    let resource = informer.info().resource;
    let inbox = source.nats.new_inbox();
    // Subscribed before asking, so no event is published before anyone listens.
    let mut events = source.nats.subscribe(inbox.clone()).await.map_err(|e| SourceError::Subscribe(e.to_string()))?;
    let connects = source.nats.statistics();
    let connected_at = connects.connects.load(Ordering::Relaxed);
    let query = format!(
        "watch=true&fieldSelector={}&resourceVersion={}&allowWatchBookmarks=true&timeoutSeconds={}&streamTo={}",
        escape(&source.field_selector),
        escape(version),
        jittered_watch_timeout(),
        escape(&inbox)
    );
    let path = path(informer.info(), None, None, None);
    source.client.request("GET", &path, &query, None, None).await?;
    *backoff = Duration::from_millis(100);
    loop {
        let msg = match tokio::time::timeout(source.idle_timeout, events.next()).await {
            Ok(Some(msg)) => msg,
            Ok(None) => return Err(SourceError::Subscribe("the subscription closed".into())),
            Err(_) => {
                tracing::debug!(version = %version, "watch silent; watching again");
                return Ok(WatchEnd::Resume);
            }
        };
        // Messages published while the connection was down are lost: watch again from the
        // last version applied, before this message moves it past the gap.
        if connects.connects.load(Ordering::Relaxed) != connected_at {
            return Ok(WatchEnd::Resume);
        }
        if msg.payload.is_empty() {
            return Ok(WatchEnd::Resume);
        }
        let event = match serde_json::from_slice::<WatchEvent<K>>(&msg.payload) {
            Ok(ev) => ev,
            Err(e) => {
                // The API server encodes through the same types; skip the event rather than stop.
                INFORMER_DECODE_ERRORS.with_label_values(&[resource]).inc();
                tracing::warn!(error = %e, "watch event does not decode");
                continue;
            }
        };
        let (kind, obj) = match event {
            WatchEvent::Added(o) => (EventType::Added, o),
            WatchEvent::Modified(o) => (EventType::Modified, o),
            WatchEvent::Deleted(o) => (EventType::Deleted, o),
            WatchEvent::Bookmark { resource_version, .. } => {
                *version = resource_version;
                continue;
            }
            WatchEvent::ErrorStatus(s) if s.code == Some(410) => return Ok(WatchEnd::Expired),
            WatchEvent::ErrorStatus(s) => return Err(SourceError::Status(s.message.unwrap_or_default())),
            WatchEvent::ErrorOther(_) => return Err(SourceError::Status("an error event without a Status".into())),
        };
        if let Some(v) = obj.resource_version() {
            *version = v.to_string();
        }
        informer.applied(kind, obj);
    }
}
