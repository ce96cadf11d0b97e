//! Recording core/v1 Events about objects, as every component does (what `kubectl describe`
//! and `kubectl get events` show). The same reason and message about the same object bump
//! the count of one Event instead of creating another, and client-go's [`spam`] filter caps
//! what one component records about one object. Counts are kept here, as client-go's event
//! correlator keeps them: a recorder only creates and patches Events (upstream's roles give
//! controllers no `get` on events).

mod spam;

use crate::Client;
use k8s_openapi::api::core::v1::{Event, EventSource, ObjectReference};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kubus_apimachinery::{Object, ObjectExt};
use serde_json::json;
use std::hash::{DefaultHasher, Hash, Hasher};

/// `type` of an Event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventType {
    Normal,
    Warning,
}

#[derive(Clone)]
pub struct Recorder {
    client: Client,
    component: &'static str,
    spam: std::sync::Arc<spam::SpamFilter>,
    /// The count last written for each Event this recorder made (bounded, as client-go's LRU).
    counts: std::sync::Arc<std::sync::Mutex<std::collections::HashMap<String, i32>>>,
}

/// Events whose counts a recorder remembers (client-go's maxLruCacheEntries).
const COUNTED_EVENTS: usize = 4096;

impl Recorder {
    pub fn new(client: Client, component: &'static str) -> Self {
        Recorder { client, component, spam: Default::default(), counts: Default::default() }
    }

    /// Records an Event about `obj`. Failures are logged, never returned: events are best
    /// effort.
    pub async fn record<K: Object>(&self, obj: &K, event_type: EventType, reason: &str, message: &str) {
        let ns = obj.namespace_or_default().to_string();
        let name = obj.name();
        // Upstream's spam key: the source and the object, whatever the reason or message.
        let spam_key = format!("{}/{}/{}/{name}/{}", K::API_VERSION, K::KIND, obj.namespace(), obj.uid());
        if !self.spam.allow(self.component, &spam_key, std::time::Instant::now()) {
            return;
        }
        let mut h = DefaultHasher::new();
        (K::KIND, reason, message).hash(&mut h);
        let event_name = format!("{name}.{:08x}", h.finish() as u32);
        let now = kubus_apimachinery::time::now();
        let event = Event {
            metadata: ObjectMeta { name: Some(event_name.clone()), namespace: Some(ns.clone()), ..Default::default() },
            involved_object: ObjectReference {
                api_version: Some(K::API_VERSION.to_string()),
                kind: Some(K::KIND.to_string()),
                namespace: (!obj.namespace().is_empty()).then(|| ns.clone()),
                name: Some(name.to_string()),
                uid: obj.metadata().uid.clone(),
                resource_version: obj.metadata().resource_version.clone(),
                ..Default::default()
            },
            reason: Some(reason.to_string()),
            message: Some(message.to_string()),
            type_: Some(format!("{event_type:?}")),
            count: Some(1),
            first_timestamp: Some(now.clone()),
            last_timestamp: Some(now.clone()),
            source: Some(EventSource { component: Some(self.component.to_string()), host: None }),
            reporting_component: Some(self.component.to_string()),
            reporting_instance: Some(self.component.to_string()),
            ..Default::default()
        };
        let key = format!("{ns}/{event_name}");
        match self.client.create(&event).await {
            Ok(_) => {
                self.counted(key, |_| 1);
            }
            Err(e) if e.is_conflict() || e.is_already_exists() => {
                // Made by this recorder, or by one before a restart (its count is lost then, as
                // client-go's).
                let count = self.counted(key, |last| last.unwrap_or(1) + 1);
                let patch = json!({"count": count, "lastTimestamp": now});
                if let Err(e) = self.client.merge_patch::<Event>(&ns, &event_name, &patch).await {
                    tracing::debug!(error = %e, "event count not updated");
                }
            }
            Err(e) => tracing::debug!(error = %e, "event not recorded"),
        }
    }

    /// Sets the count remembered for `key` to `next(last)` and returns it.
    fn counted(&self, key: String, next: impl FnOnce(Option<i32>) -> i32) -> i32 {
        let mut counts = self.counts.lock().unwrap_or_else(|e| e.into_inner());
        let count = next(counts.get(&key).copied());
        if counts.len() >= COUNTED_EVENTS && !counts.contains_key(&key) {
            counts.clear();
        }
        counts.insert(key, count);
        count
    }
}
