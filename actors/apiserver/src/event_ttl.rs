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
use std::time::{Duration, SystemTime};
use tracing::Instrument;

pub struct EventTtl {
    pub storage: Storage,
    pub ttl: Duration,
}

/// What the expiry reads of an Event; the rest is skipped while decoding (this runs over every
/// Event of the cluster). Absent and null times read as unset.
#[derive(Debug, Default, serde::Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct EventTimes {
    metadata: EventMeta,
    last_timestamp: Option<String>,
    series: Option<EventSeries>,
    event_time: Option<String>,
}

#[derive(Debug, Default, serde::Deserialize)]
#[serde(default, rename_all = "camelCase")]
struct EventMeta {
    namespace: Option<String>,
    name: Option<String>,
    uid: Option<String>,
    resource_version: Option<String>,
    creation_timestamp: Option<String>,
}

#[derive(Debug, Default, serde::Deserialize)]
#[serde(default, rename_all = "camelCase")]
struct EventSeries {
    last_observed_time: Option<String>,
}

/// When an Event was last written: the newest of the times its writers set.
pub fn last_written(event: &EventTimes) -> Option<SystemTime> {
    let series = event.series.as_ref().and_then(|s| s.last_observed_time.as_ref());
    [event.last_timestamp.as_ref(), series, event.event_time.as_ref(), event.metadata.creation_timestamp.as_ref()]
        .into_iter()
        .flatten()
        .filter_map(|t| parse_rfc3339(t))
        .max()
}

/// The Events of `events` due to expire at `now`: (namespace, name, uid, resourceVersion).
pub fn expired(events: impl IntoIterator<Item = EventTimes>, ttl: Duration, now: SystemTime) -> Vec<[String; 4]> {
    events
        .into_iter()
        .filter(|e| last_written(e).is_some_and(|t| t + ttl <= now))
        .map(|e| {
            let m = e.metadata;
            [m.namespace, m.name, m.uid, m.resource_version].map(Option::unwrap_or_default)
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
            let due = expired(events.iter().filter_map(|e| e.decode::<EventTimes>().ok()), act.ttl, SystemTime::now());
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
        let times = |e: serde_json::Value| serde_json::from_value::<EventTimes>(e).unwrap();
        let due = expired(events.into_iter().map(times), ttl, t0);
        assert_eq!(due, vec![["default", "old", "u-old", "7"].map(String::from)]);
        let series = json!({"eventTime": "2026-12-07T08:00:00.000000Z",
            "series": {"count": 3, "lastObservedTime": "2026-12-07T09:45:00.123456Z"}});
        assert_eq!(last_written(&times(series)), parse_rfc3339("2026-12-07T09:45:00.123456Z"));
    }
}
