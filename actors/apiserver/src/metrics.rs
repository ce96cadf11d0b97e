//! Prometheus metrics of the API server (process-wide default registry).

use prometheus::{
    register_histogram_vec, register_int_counter_vec, register_int_gauge, register_int_gauge_vec, HistogramVec,
    IntCounterVec, IntGauge, IntGaugeVec,
};
use std::sync::LazyLock;

pub static REQUESTS: LazyLock<IntCounterVec> = LazyLock::new(|| {
    register_int_counter_vec!(
        "kubus_apiserver_requests_total",
        "API requests by verb, resource, response code and transport (http or nats)",
        &["verb", "resource", "code", "transport"]
    )
    .expect("metric registers once")
});

pub static REQUEST_LATENCY: LazyLock<HistogramVec> = LazyLock::new(|| {
    register_histogram_vec!(
        "kubus_apiserver_request_duration_seconds",
        "API request latency by verb and resource (watches: time to first byte)",
        &["verb", "resource"],
        vec![0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0]
    )
    .expect("metric registers once")
});

pub static WATCHERS: LazyLock<IntGaugeVec> = LazyLock::new(|| {
    register_int_gauge_vec!("kubus_apiserver_watchers", "Open watches by resource", &["resource"])
        .expect("metric registers once")
});

pub static WATCH_EVENTS_SENT: LazyLock<IntCounterVec> = LazyLock::new(|| {
    register_int_counter_vec!(
        "kubus_apiserver_watch_events_sent_total",
        "Watch events sent to clients by resource and type",
        &["resource", "type"]
    )
    .expect("metric registers once")
});

pub static CACHE_OBJECTS: LazyLock<IntGauge> = LazyLock::new(|| {
    register_int_gauge!("kubus_apiserver_watch_cache_objects", "Objects held in the watch cache")
        .expect("metric registers once")
});

pub static ACTOR_RESTARTS: LazyLock<IntCounterVec> = LazyLock::new(|| {
    register_int_counter_vec!(
        "kubus_actor_restarts_total",
        "Actors restarted by their supervisor after a failure",
        &["actor"]
    )
    .expect("metric registers once")
});

pub static OBJECTS_STORED: LazyLock<IntCounterVec> = LazyLock::new(|| {
    register_int_counter_vec!(
        "kubus_apiserver_writes_total",
        "Writes that reached the store, by resource and operation",
        &["resource", "operation"]
    )
    .expect("metric registers once")
});

pub static LIST_SNAPSHOTS: LazyLock<prometheus::IntGauge> = LazyLock::new(|| {
    prometheus::register_int_gauge!(
        "kubus_apiserver_list_snapshots",
        "Paged lists whose matches are kept for their continue tokens"
    )
    .expect("registers once")
});

pub static EVENTS_EXPIRED: LazyLock<prometheus::IntCounter> = LazyLock::new(|| {
    prometheus::register_int_counter!(
        "kubus_apiserver_events_expired_total",
        "Events deleted a TTL after their last write (--event-ttl)"
    )
    .expect("registers once")
});

pub static COMPACTED: LazyLock<prometheus::IntCounter> = LazyLock::new(|| {
    prometheus::register_int_counter!(
        "kubus_store_compacted_messages_total",
        "Messages of deleted objects purged from the objects stream by the compactor"
    )
    .expect("metric registers once")
});

/// Forces registration so every series exists before the first scrape.
pub fn register() {
    LazyLock::force(&REQUESTS);
    LazyLock::force(&REQUEST_LATENCY);
    LazyLock::force(&WATCHERS);
    LazyLock::force(&WATCH_EVENTS_SENT);
    LazyLock::force(&CACHE_OBJECTS);
    // Every actor's restart series exists from the start, at zero.
    for actor in ["watch-cache", "apiserver-nats", "compactor"] {
        ACTOR_RESTARTS.with_label_values(&[actor]);
    }
    LazyLock::force(&OBJECTS_STORED);
    LazyLock::force(&COMPACTED);
    LazyLock::force(&EVENTS_EXPIRED);
    LazyLock::force(&LIST_SNAPSHOTS);
}

/// The text exposition of every metric in the process.
pub fn render() -> String {
    use prometheus::Encoder;
    let mut buf = Vec::new();
    let _ = prometheus::TextEncoder::new().encode(&prometheus::gather(), &mut buf);
    String::from_utf8(buf).unwrap_or_default()
}
