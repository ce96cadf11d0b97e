//! A store watch: the ordered JetStream consumer behind it re-creates itself on gaps, so the
//! caller sees every change once, in revision order. After a reconnection to NATS (a restarted
//! server) it ends with an error, so its owner watches again from its last revision at once.

use super::{is_delete, Key, StoreError, OP_HEADER};
use crate::metrics::WATCH_EVENTS;
use async_nats::jetstream::consumer::pull::Ordered;
use bytes::Bytes;
use futures::{Stream, StreamExt};
use std::pin::Pin;
use std::task::{Context, Poll};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventType {
    Added,
    Modified,
    Deleted,
}

impl EventType {
    pub fn as_str(self) -> &'static str {
        match self {
            EventType::Added => "ADDED",
            EventType::Modified => "MODIFIED",
            EventType::Deleted => "DELETED",
        }
    }
}

/// One change: for `Deleted`, `value` is the object as it was when deleted and `revision` the
/// revision of the deletion.
#[derive(Debug, Clone)]
pub struct Event {
    pub kind: EventType,
    pub key: Key,
    pub revision: u64,
    pub value: Bytes,
}

pub struct Watch {
    messages: Ordered,
    root: String,
    encryption: Option<std::sync::Arc<super::encryption::Encryption>>,
    /// Yields when the process reconnected to NATS after this watch began.
    reconnected: futures::stream::BoxStream<'static, ()>,
    /// The last revision yielded (at first, the one the watch starts after). An ordered
    /// consumer made again before its first message starts from the stream's beginning
    /// (async-nats), so older messages can come again: they are skipped, never yielded twice.
    after: u64,
}

impl Watch {
    pub(super) fn new(
        messages: Ordered,
        root: String,
        encryption: Option<std::sync::Arc<super::encryption::Encryption>>,
        after: u64,
    ) -> Self {
        let reconnected = futures::stream::unfold(crate::reconnects(), |mut rx| async move {
            rx.changed().await.ok()?;
            Some(((), rx))
        })
        .boxed();
        Watch { messages, root, encryption, reconnected, after }
    }
}

impl Stream for Watch {
    type Item = Result<Event, StoreError>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        if let Poll::Ready(Some(())) = self.reconnected.poll_next_unpin(cx) {
            return Poll::Ready(Some(Err(StoreError::Unavailable("reconnected to NATS; watch again".into()))));
        }
        loop {
            let msg = match self.messages.poll_next_unpin(cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(None) => return Poll::Ready(None),
                Poll::Ready(Some(Err(e))) => return Poll::Ready(Some(Err(StoreError::Unavailable(e.to_string())))),
                Poll::Ready(Some(Ok(m))) => m,
            };
            let Ok(info) = msg.info() else { continue };
            let revision = info.stream_sequence;
            if revision <= self.after {
                continue;
            }
            // Subjects outside the key layout are not objects (nothing else should publish
            // here, but a stray message must not end a watch).
            let Some(key) = Key::from_subject(&self.root, msg.subject.as_str()) else {
                continue;
            };
            let kind = match &msg.headers {
                Some(h) if is_delete(h) => EventType::Deleted,
                Some(h) if h.get(OP_HEADER).is_some_and(|v| v.as_str() == "create") => EventType::Added,
                _ => EventType::Modified,
            };
            let deleted = kind == EventType::Deleted;
            let stored = msg.payload.clone();
            let Some(value) =
                super::readable_or_skipped(self.encryption.as_deref(), &key, msg.subject.as_str(), stored, deleted)
            else {
                continue;
            };
            WATCH_EVENTS.with_label_values(&[kind.as_str()]).inc();
            self.after = revision;
            return Poll::Ready(Some(Ok(Event { kind, key, revision, value })));
        }
    }
}
