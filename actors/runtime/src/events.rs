//! Recording core/v1 Events about objects, as every component does (what `kubectl describe`
//! and `kubectl get events` show). The same reason and message about the same object bump
//! the count of one Event instead of creating another.

use crate::Client;
use kubus_apimachinery::table::format_rfc3339;
use serde_json::{json, Value};
use std::hash::{DefaultHasher, Hash, Hasher};
use std::time::SystemTime;

#[derive(Clone)]
pub struct Recorder {
    client: Client,
    component: &'static str,
}

impl Recorder {
    pub fn new(client: Client, component: &'static str) -> Self {
        Recorder { client, component }
    }

    /// Records an Event about `obj` (`kind`/`api_version` name its type); `event_type` is
    /// `Normal` or `Warning`. Failures are logged, never returned: events are best effort.
    pub async fn record(
        &self,
        obj: &Value,
        api_version: &str,
        kind: &str,
        event_type: &str,
        reason: &str,
        message: &str,
    ) {
        let ns = obj["metadata"]["namespace"].as_str().unwrap_or("default").to_string();
        let name = obj["metadata"]["name"].as_str().unwrap_or("").to_string();
        let mut h = DefaultHasher::new();
        (kind, reason, message).hash(&mut h);
        let event_name = format!("{name}.{:08x}", h.finish() as u32);
        let now = format_rfc3339(SystemTime::now());
        let body = json!({
            "apiVersion": "v1", "kind": "Event",
            "metadata": {"name": event_name, "namespace": ns},
            "involvedObject": {"kind": kind, "namespace": ns, "name": name, "uid": obj["metadata"]["uid"],
                "apiVersion": api_version, "resourceVersion": obj["metadata"]["resourceVersion"]},
            "reason": reason, "message": message, "type": event_type, "count": 1,
            "firstTimestamp": now, "lastTimestamp": now,
            "source": {"component": self.component}, "reportingComponent": self.component,
            "reportingInstance": self.component,
        });
        match self.client.create("", "events", Some(&ns), &body).await {
            Ok(_) => {}
            Err(e) if e.is_conflict() => {
                if let Ok(existing) = self.client.get("", "events", Some(&ns), &event_name).await {
                    let count = existing["count"].as_i64().unwrap_or(1) + 1;
                    let patch = json!({"count": count, "lastTimestamp": now});
                    let _ = self.client.merge_patch("", "events", Some(&ns), &event_name, None, &patch).await;
                }
            }
            Err(e) => tracing::debug!(error = %e, "event not recorded"),
        }
    }
}
