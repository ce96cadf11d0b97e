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
    /// The name and count of each Event this recorder made, by aggregation key (bounded, as
    /// client-go's cache).
    counts: std::sync::Arc<std::sync::Mutex<std::collections::HashMap<String, (String, i32)>>>,
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
        // client-go's aggregation key: the same event about the same object bumps one Event's
        // count; a new one (or one this recorder has forgotten) is a new Event, named as
        // client-go names them (`<object>.<unix nanos, hex>`), so two recorders, or one before
        // and after a restart, never write each other's counts.
        let key = format!("{}/{}/{ns}/{name}/{}/{event_type:?}/{reason}/{message}", K::API_VERSION, K::KIND, obj.uid());
        let now = kubus_apimachinery::time::now();
        if let Some((event_name, count)) = self.bump(&key) {
            let patch = json!({"count": count, "lastTimestamp": now});
            match self.client.merge_patch::<Event>(&ns, &event_name, &patch).await {
                Ok(_) => return,
                // Gone (its time to live passed): made again below.
                Err(e) if e.is_not_found() => {}
                Err(e) => {
                    tracing::debug!(error = %e, "event count not updated");
                    return;
                }
            }
        }
        let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default().as_nanos();
        let event_name = format!("{name}.{nanos:x}");
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
        match self.client.create(&event).await {
            Ok(_) => self.remember(key, event_name),
            Err(e) => tracing::debug!(error = %e, "event not recorded"),
        }
    }

    /// The Event recorded for `key` and its count after this one, if this recorder has one.
    fn bump(&self, key: &str) -> Option<(String, i32)> {
        let mut counts = self.counts.lock().unwrap_or_else(|e| e.into_inner());
        let (name, count) = counts.get_mut(key)?;
        *count += 1;
        Some((name.clone(), *count))
    }

    fn remember(&self, key: String, event_name: String) {
        let mut counts = self.counts.lock().unwrap_or_else(|e| e.into_inner());
        if counts.len() >= COUNTED_EVENTS {
            // Full: one goes (its next occurrence is a new Event).
            if let Some(old) = counts.keys().next().cloned() {
                counts.remove(&old);
            }
        }
        counts.insert(key, (event_name, 1));
    }
}
