//! Event rows for both `v1` events and `events.k8s.io/v1` events. Upstream
//! prints both from the same internal type; the newer API only renames
//! fields, so the printer reads whichever names the object uses.

use std::time::SystemTime;

use serde_json::{json, Value};

use super::clock::{since, time_at};
use super::{int, present, text};

#[derive(Clone, Copy)]
pub(super) enum Api {
    /// Core `v1` Event.
    Core,
    /// `events.k8s.io/v1` Event.
    Events,
}

/// Field names of the two event APIs.
struct Fields {
    regarding: &'static str,
    message: &'static str,
    first_timestamp: &'static str,
    last_timestamp: &'static str,
    count: &'static str,
    source: &'static str,
    reporting_controller: &'static str,
}

const CORE: Fields = Fields {
    regarding: "involvedObject",
    message: "message",
    first_timestamp: "firstTimestamp",
    last_timestamp: "lastTimestamp",
    count: "count",
    source: "source",
    reporting_controller: "reportingComponent",
};

const EVENTS: Fields = Fields {
    regarding: "regarding",
    message: "note",
    first_timestamp: "deprecatedFirstTimestamp",
    last_timestamp: "deprecatedLastTimestamp",
    count: "deprecatedCount",
    source: "deprecatedSource",
    reporting_controller: "reportingController",
};

pub(super) fn cells(event: &Value, api: Api, now: SystemTime) -> Vec<Value> {
    let f = match api {
        Api::Core => &CORE,
        Api::Events => &EVENTS,
    };

    // Events created through the new API only carry eventTime.
    let first_seen = since(now, time_at(event, f.first_timestamp).or_else(|| time_at(event, "eventTime")));
    let mut last_seen = match time_at(event, f.last_timestamp) {
        Some(t) => since(now, Some(t)),
        None => first_seen.clone(),
    };
    let mut count = int(event, &[f.count]);
    if present(event, &["series"]) {
        let series = &event["series"];
        last_seen = since(now, time_at(series, "lastObservedTime"));
        count = int(series, &["count"]);
    } else if count == 0 {
        // Singleton events of the new API leave the count unset.
        count = 1;
    }

    let regarding = &event[f.regarding];
    let kind = text(regarding, &["kind"]).to_lowercase();
    let object = match text(regarding, &["name"]) {
        "" => kind,
        name => format!("{kind}/{name}"),
    };

    vec![
        json!(last_seen),
        json!(text(event, &["type"])),
        json!(text(event, &["reason"])),
        json!(object),
        json!(text(regarding, &["fieldPath"])),
        json!(source(event, f)),
        json!(text(event, &[f.message]).trim()),
        json!(first_seen),
        json!(count),
        json!(text(event, &["metadata", "name"])),
    ]
}

/// `component, host`, each falling back to the reporting controller and
/// instance; the host part is left out when empty.
fn source(event: &Value, f: &Fields) -> String {
    let first_non_empty = |a: &'static str, b: &str| match text(event, &[f.source, a]) {
        "" => text(event, &[b]).to_string(),
        v => v.to_string(),
    };
    let component = first_non_empty("component", f.reporting_controller);
    let instance = first_non_empty("host", "reportingInstance");
    if instance.is_empty() {
        component
    } else {
        format!("{component}, {instance}")
    }
}
