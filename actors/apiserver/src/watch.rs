//! Watches served from the watch cache as chunked JSON lines (`{"type":..,"object":..}`).

use crate::cache::{CacheEvent, CachedObject, Gr, Start, WatchCache};
use crate::metrics::{WATCHERS, WATCH_EVENTS_SENT};
use crate::render::Renderer;
use bytes::Bytes;
use futures::stream::BoxStream;
use kubus_apimachinery::selector::{FieldSelector, LabelSelector};
use kubus_apimachinery::StatusError;
use kubus_bus::EventType;
use serde_json::{json, Value};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{broadcast, mpsc};

pub struct WatchSpec {
    pub gr: Gr,
    pub namespace: Option<String>,
    pub labels: LabelSelector,
    pub fields: FieldSelector,
    pub start: Start,
    pub bookmarks: bool,
    pub send_initial_end_bookmark: bool,
    pub timeout: Option<Duration>,
    pub renderer: Renderer,
    /// The watched resource and the request's scope (for the metrics).
    pub info: &'static kubus_apimachinery::ResourceInfo,
    pub scope: &'static str,
}

impl WatchSpec {
    fn matches(&self, obj: &CachedObject) -> bool {
        if self.namespace.as_deref().is_some_and(|ns| ns != obj.namespace()) {
            return false;
        }
        obj.matches(&self.labels, &self.fields)
    }

    /// The event a client sees, honouring selector transitions: an object that stops matching
    /// is DELETED for this watcher, one that starts matching is ADDED. A DELETED of that kind
    /// carries the object as it last matched, stamped with the event's resourceVersion (as
    /// upstream's cacher sends it): the third value is that stamp.
    fn visible(&self, ev: &CacheEvent) -> Option<(EventType, Arc<CachedObject>, Option<u64>)> {
        let now = self.matches(&ev.object);
        let before = ev.prev.as_ref().map(|p| self.matches(p));
        let current = |kind| Some((kind, ev.object.clone(), None));
        match ev.kind {
            EventType::Added => now.then(|| (EventType::Added, ev.object.clone(), None)),
            EventType::Deleted => (before.unwrap_or(now)).then(|| (EventType::Deleted, ev.object.clone(), None)),
            EventType::Modified => match (before.unwrap_or(false), now, &ev.prev) {
                (true, true, _) => current(EventType::Modified),
                (false, true, _) => current(EventType::Added),
                (true, false, Some(prev)) => Some((EventType::Deleted, prev.clone(), Some(ev.revision))),
                (true, false, None) => current(EventType::Deleted),
                (false, false, _) => None,
            },
        }
    }
}

fn line(kind: &str, object: Value) -> Bytes {
    let mut s = json!({"type": kind, "object": object}).to_string();
    s.push('\n');
    Bytes::from(s)
}

/// An event line around an object already encoded as the client gets it.
fn encoded_line(kind: &str, object: &[u8]) -> Bytes {
    let mut out = Vec::with_capacity(object.len() + kind.len() + 24);
    out.extend_from_slice(b"{\"type\":\"");
    out.extend_from_slice(kind.as_bytes());
    out.extend_from_slice(b"\",\"object\":");
    out.extend_from_slice(object);
    out.extend_from_slice(b"}\n");
    Bytes::from(out)
}

pub fn error_line(e: &StatusError) -> Bytes {
    line("ERROR", e.to_status())
}

/// Starts a watch; the returned stream ends when the client goes away, the timeout passes,
/// or the watcher falls too far behind (then it gets a 410 ERROR event and re-lists).
pub fn serve(cache: &WatchCache, spec: WatchSpec) -> BoxStream<'static, Bytes> {
    let (tx, rx) = mpsc::channel::<Bytes>(256);
    let trigger = spec.fields.requires_exact_match(crate::cache::POD_TRIGGER_FIELD);
    let subscription = cache.subscribe(&spec.gr, spec.start, trigger);
    let cache = cache.clone();
    tokio::spawn(async move {
        let (info, scope) = (spec.info, spec.scope);
        let watchers =
            WATCHERS.with_label_values(&["WATCH", info.group, info.version, info.resource, "", scope, "apiserver"]);
        watchers.inc();
        let _ = run(&cache, spec, subscription, &tx).await;
        watchers.dec();
    });
    Box::pin(futures::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|b| (b, rx)) }))
}

type Subscription = Result<crate::cache::Subscription, StatusError>;

async fn run(cache: &WatchCache, mut spec: WatchSpec, sub: Subscription, tx: &mpsc::Sender<Bytes>) -> Result<(), ()> {
    let (initial, mut rx, start_rev) = match sub {
        Ok(s) => s,
        Err(e) => {
            let _ = tx.send(error_line(&e)).await;
            return Ok(());
        }
    };
    let send = |spec: &mut WatchSpec, kind: EventType, obj: &CachedObject, stamp: Option<u64>| {
        WATCH_EVENTS_SENT.with_label_values(&[spec.info.group, spec.info.version, spec.info.kind]).inc();
        match stamp {
            None if spec.renderer.sends_stored_form() => encoded_line(kind.as_str(), obj.json()),
            None => line(kind.as_str(), spec.renderer.watch_object(obj.value())),
            Some(revision) => {
                let mut value = obj.value();
                value["metadata"]["resourceVersion"] = Value::String(revision.to_string());
                line(kind.as_str(), spec.renderer.watch_object(value))
            }
        }
    };
    for ev in &initial {
        if let Some((kind, obj, stamp)) = spec.visible(ev) {
            let l = send(&mut spec, kind, &obj, stamp);
            tx.send(l).await.map_err(|_| ())?;
        }
    }
    if spec.send_initial_end_bookmark {
        let b = bookmark(&spec, start_rev, true);
        tx.send(b).await.map_err(|_| ())?;
    }
    let deadline = spec.timeout.map(|t| tokio::time::Instant::now() + t);
    let mut tick = tokio::time::interval(Duration::from_secs(if spec.bookmarks { 30 } else { 15 }));
    tick.tick().await;
    loop {
        tokio::select! {
            ev = rx.recv() => match ev {
                Ok(ev) => {
                    if ev.gr != spec.gr { continue; }
                    if let Some((kind, obj, stamp)) = spec.visible(&ev) {
                        let l = send(&mut spec, kind, &obj, stamp);
                        tx.send(l).await.map_err(|_| ())?;
                    }
                }
                Err(broadcast::error::RecvError::Lagged(_)) => {
                    let e = StatusError::resource_expired("the watcher fell behind; too old resource version");
                    let _ = tx.send(error_line(&e)).await;
                    return Ok(());
                }
                Err(broadcast::error::RecvError::Closed) => return Ok(()),
            },
            _ = tick.tick() => {
                if tx.is_closed() { return Ok(()); }
                if spec.bookmarks {
                    let b = bookmark(&spec, cache.revision(), false);
                    tx.send(b).await.map_err(|_| ())?;
                }
            }
            _ = async { match deadline { Some(d) => tokio::time::sleep_until(d).await, None => std::future::pending().await } } => return Ok(()),
            _ = tx.closed() => return Ok(()),
        }
    }
}

fn bookmark(spec: &WatchSpec, revision: u64, initial_end: bool) -> Bytes {
    let mut meta = json!({"resourceVersion": revision.to_string()});
    if initial_end {
        meta["annotations"] = json!({"k8s.io/initial-events-end": "true"});
    }
    line("BOOKMARK", json!({"kind": spec.renderer.kind, "apiVersion": spec.renderer.api_version, "metadata": meta}))
}
