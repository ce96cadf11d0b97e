//! Event expiry, as kube-apiserver's `--event-ttl` (default 1 h): an Event not written for the
//! TTL is deleted, so the Events of a cluster that runs for months stay bounded by its recent
//! activity (every pod leaves some) instead of growing with uptime in the watch cache, every
//! events informer and the live stream. The archive keeps them for replay. Deletions go through
//! the storage path with uid and resourceVersion preconditions, so watchers see them and an
//! Event written meanwhile (its count bumped) stays.

use crate::metrics::EVENTS_EXPIRED;
use crate::storage::{DeleteOptions, Storage};
use actix::prelude::*;
use kubus_apimachinery::time::parse_rfc3339;
use serde_json::Value;
use std::time::{Duration, SystemTime};
use tracing::Instrument;

pub struct EventTtl {
    pub storage: Storage,
    pub ttl: Duration,
}

/// When an Event was last written: the newest of the times its writers set.
pub fn last_written(event: &Value) -> Option<SystemTime> {
    let fields = [
        &event["lastTimestamp"],
        &event["series"]["lastObservedTime"],
        &event["eventTime"],
        &event["metadata"]["creationTimestamp"],
    ];
    fields.iter().filter_map(|v| v.as_str()).filter_map(parse_rfc3339).max()
}

/// The parts of an Event the expiry reads, as JSON (the rest is skipped while decoding).
struct EventTimes(Value);

impl<'de> serde::Deserialize<'de> for EventTimes {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(serde::Deserialize, Default)]
        #[serde(default, rename_all = "camelCase")]
        struct Meta {
            namespace: Value,
            name: Value,
            uid: Value,
            resource_version: Value,
            creation_timestamp: Value,
        }
        #[derive(serde::Deserialize, Default)]
        #[serde(default)]
        struct Series {
            #[serde(rename = "lastObservedTime")]
            last_observed_time: Value,
        }
        #[derive(serde::Deserialize, Default)]
        #[serde(default, rename_all = "camelCase")]
        struct Times {
            metadata: Option<Meta>,
            last_timestamp: Value,
            series: Option<Series>,
            event_time: Value,
        }
        let t = Times::deserialize(d)?;
        let m = t.metadata.unwrap_or_default();
        Ok(EventTimes(serde_json::json!({
            "metadata": {"namespace": m.namespace, "name": m.name, "uid": m.uid,
                "resourceVersion": m.resource_version, "creationTimestamp": m.creation_timestamp},
            "lastTimestamp": t.last_timestamp,
            "series": {"lastObservedTime": t.series.unwrap_or_default().last_observed_time},
            "eventTime": t.event_time,
        })))
    }
}

/// The Events of `events` due to expire at `now`: (namespace, name, uid, resourceVersion).
pub fn expired(events: impl IntoIterator<Item = Value>, ttl: Duration, now: SystemTime) -> Vec<[String; 4]> {
    events
        .into_iter()
        .filter(|e| last_written(e).is_some_and(|t| t + ttl <= now))
        .map(|e| {
            let m = &e["metadata"];
            let s = |v: &Value| v.as_str().unwrap_or_default().to_string();
            [s(&m["namespace"]), s(&m["name"]), s(&m["uid"]), s(&m["resourceVersion"])]
        })
        .collect()
}

impl Actor for EventTtl {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        let every = (self.ttl / 4).clamp(Duration::from_millis(200), Duration::from_secs(60));
        ctx.run_interval(every, |act, ctx| {
            let Some(info) = kubus_apimachinery::resource::find("", "v1", "events") else {
                return;
            };
            let gr = (info.storage_group.to_string(), info.storage_resource.to_string());
            let (events, _) = act.storage.cache.list(&gr, None);
            // Only what the check reads is decoded: this runs over every Event of the cluster.
            let due = expired(
                events.iter().filter_map(|e| e.decode::<EventTimes>().ok()).map(|t| t.0),
                act.ttl,
                SystemTime::now(),
            );
            if due.is_empty() {
                return;
            }
            let storage = act.storage.clone();
            let span = tracing::info_span!("expire_events", due = due.len());
            ctx.spawn(
                async move {
                    for [ns, name, uid, rv] in due {
                        let opts = DeleteOptions {
                            precondition_uid: Some(uid),
                            precondition_rv: Some(rv),
                            ..Default::default()
                        };
                        match storage.delete(info, Some(&ns), &name, &opts).await {
                            Ok(_) => EVENTS_EXPIRED.inc(),
                            // Gone or written meanwhile: nothing to do.
                            Err(e) if e.code == 404 || e.code == 409 => {}
                            Err(e) => {
                                tracing::warn!(namespace = %ns, %name, error = %e.message, "expiring an Event failed")
                            }
                        }
                    }
                }
                .instrument(span)
                .into_actor(act),
            );
        });
    }
}

impl Supervised for EventTtl {}

impl Handler<crate::Shutdown> for EventTtl {
    type Result = ();
    fn handle(&mut self, _: crate::Shutdown, ctx: &mut Self::Context) {
        ctx.stop();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn events_expire_a_ttl_after_their_last_write() {
        let t0 = parse_rfc3339("2026-12-07T10:00:00Z").unwrap();
        let ttl = Duration::from_secs(3600);
        let event = |name: &str, created: &str, last: Option<&str>| {
            let mut e = json!({"metadata": {"namespace": "default", "name": name, "uid": format!("u-{name}"),
                "resourceVersion": "7", "creationTimestamp": created}});
            if let Some(l) = last {
                e["lastTimestamp"] = json!(l);
            }
            e
        };
        let events = vec![
            event("old", "2026-12-07T08:00:00Z", None),
            // Created long ago but bumped recently (count > 1): kept.
            event("bumped", "2026-12-07T07:00:00Z", Some("2026-12-07T09:30:00Z")),
            event("fresh", "2026-12-07T09:59:00Z", None),
            json!({"metadata": {"name": "no-time"}}),
        ];
        let due = expired(events, ttl, t0);
        assert_eq!(due, vec![["default", "old", "u-old", "7"].map(String::from)]);
        let series = json!({"eventTime": "2026-12-07T08:00:00.000000Z",
            "series": {"count": 3, "lastObservedTime": "2026-12-07T09:45:00.123456Z"}});
        assert_eq!(last_written(&series), parse_rfc3339("2026-12-07T09:45:00.123456Z"));
    }
}
