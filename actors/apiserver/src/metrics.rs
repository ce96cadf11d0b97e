//! Prometheus metrics of the API server (process-wide default registry).

use prometheus::{
    register_histogram_vec, register_int_counter, register_int_counter_vec, register_int_gauge, register_int_gauge_vec,
    HistogramVec, IntCounter, IntCounterVec, IntGauge, IntGaugeVec,
};
use std::sync::LazyLock;

/// Labels of a resource request, as upstream's `apiserver_request_*` series carry them.
pub const REQUEST_LABELS: &[&str] =
    &["verb", "dry_run", "group", "version", "resource", "subresource", "scope", "component"];

/// Requests by upstream's labels plus the response code and the transport (http or nats: the
/// controllers and node agents come over the bus).
pub static REQUESTS: LazyLock<IntCounterVec> = LazyLock::new(|| {
    let mut labels = REQUEST_LABELS.to_vec();
    labels.extend(["code", "transport"]);
    register_int_counter_vec!(
        "apiserver_request_total",
        "Counter of apiserver requests broken out for each verb, dry run value, group, version, resource, scope, component, and HTTP response code.",
        &labels
    )
    .expect("metric registers once")
});

/// Authorization decisions (upstream's series, by decision: allowed or denied).
pub static AUTHORIZATION_DECISIONS: LazyLock<IntCounterVec> = LazyLock::new(|| {
    register_int_counter_vec!(
        "apiserver_authorization_decisions_total",
        "Total number of terminal decisions made by an authorizer split by authorizer type, name, and decision.",
        &["type", "name", "decision"]
    )
    .expect("metric registers once")
});

/// Credentials checked (client certificates, tokens), by result: upstream's series.
pub static AUTHENTICATION_ATTEMPTS: LazyLock<IntCounterVec> = LazyLock::new(|| {
    register_int_counter_vec!("authentication_attempts", "Counter of authenticated attempts.", &["result"])
        .expect("metric registers once")
});

/// Requests over NATS refused because a node asked for its answer on an inbox not its own.
pub static NATS_INBOX_REFUSALS: LazyLock<IntCounter> = LazyLock::new(|| {
    register_int_counter!(
        "kubus_apiserver_nats_inbox_refusals_total",
        "Requests over NATS refused because a node's answer was asked for outside its own inbox"
    )
    .expect("metric registers once")
});

/// Join requests by result (joined, refused: a bad token, proof or name; error).
pub static NODE_JOINS: LazyLock<IntCounterVec> = LazyLock::new(|| {
    register_int_counter_vec!("kubus_apiserver_node_joins_total", "Node join requests over NATS by result", &["result"])
        .expect("metric registers once")
});

/// Connections dropped in the TLS handshake (upstream counts "TLS handshake error" log lines).
pub static TLS_HANDSHAKE_ERRORS: LazyLock<IntCounter> = LazyLock::new(|| {
    register_int_counter!(
        "apiserver_tls_handshake_errors_total",
        "Number of requests dropped with 'TLS handshake error from' error"
    )
    .expect("metric registers once")
});

pub static REQUEST_LATENCY: LazyLock<HistogramVec> = LazyLock::new(|| {
    register_histogram_vec!(
        "apiserver_request_duration_seconds",
        "Response latency distribution in seconds for each verb, dry run value, group, version, resource, subresource, scope and component.",
        REQUEST_LABELS,
        // Upstream's buckets, with finer ones below 5 ms where this server answers most requests.
        vec![
            0.0005, 0.001, 0.0025, 0.005, 0.025, 0.05, 0.1, 0.2, 0.4, 0.6, 0.8, 1.0, 1.25, 1.5, 2.0, 3.0, 4.0, 5.0,
            6.0, 8.0, 10.0, 15.0, 20.0, 30.0, 45.0, 60.0
        ]
    )
    .expect("metric registers once")
});

pub static INFLIGHT: LazyLock<IntGaugeVec> = LazyLock::new(|| {
    register_int_gauge_vec!(
        "apiserver_current_inflight_requests",
        "Maximal number of currently used inflight request limit of this apiserver per request kind in last second.",
        &["request_kind"]
    )
    .expect("metric registers once")
});

/// Open watches (upstream counts every long-running request here).
pub static WATCHERS: LazyLock<IntGaugeVec> = LazyLock::new(|| {
    register_int_gauge_vec!(
        "apiserver_longrunning_requests",
        "Gauge of all active long-running apiserver requests broken out by verb, group, version, resource, scope and component.",
        &["verb", "group", "version", "resource", "subresource", "scope", "component"]
    )
    .expect("metric registers once")
});

pub static WATCH_EVENTS_SENT: LazyLock<IntCounterVec> = LazyLock::new(|| {
    register_int_counter_vec!(
        "apiserver_watch_events_total",
        "Number of events sent in watch clients",
        &["group", "version", "kind"]
    )
    .expect("metric registers once")
});

/// Objects stored per resource (upstream's `resource` label: `pods`, `deployments.apps`).
pub static STORAGE_OBJECTS: LazyLock<IntGaugeVec> = LazyLock::new(|| {
    register_int_gauge_vec!(
        "apiserver_storage_objects",
        "Number of stored objects at the time of last check split by kind.",
        &["resource"]
    )
    .expect("metric registers once")
});

pub static CACHE_OBJECTS: LazyLock<IntGauge> = LazyLock::new(|| {
    register_int_gauge!("kubus_apiserver_watch_cache_objects", "Objects held in the watch cache")
        .expect("metric registers once")
});

/// Events each resource's ring holds for watches to resume from.
pub static WATCH_CACHE_EVENTS: LazyLock<IntGaugeVec> = LazyLock::new(|| {
    register_int_gauge_vec!(
        "kubus_apiserver_watch_cache_events",
        "Recent events the watch cache keeps per resource for watches and exact-revision lists to start from",
        &["resource"]
    )
    .expect("metric registers once")
});

pub static WATCH_CACHE_OBJECT_BYTES: LazyLock<IntGaugeVec> = LazyLock::new(|| {
    register_int_gauge_vec!(
        "kubus_apiserver_watch_cache_object_bytes",
        "Encoded bytes of the current objects the watch cache holds per resource (history aside): where the API server's memory grows with the cluster",
        &["resource"]
    )
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
    for decision in ["allowed", "denied"] {
        AUTHORIZATION_DECISIONS.with_label_values(&["RBAC", "rbac", decision]);
    }
    for result in ["success", "failure", "error"] {
        AUTHENTICATION_ATTEMPTS.with_label_values(&[result]);
    }
    LazyLock::force(&TLS_HANDSHAKE_ERRORS);
    LazyLock::force(&WATCHERS);
    LazyLock::force(&WATCH_EVENTS_SENT);
    LazyLock::force(&CACHE_OBJECTS);
    LazyLock::force(&STORAGE_OBJECTS);
    for kind in ["readOnly", "mutating"] {
        INFLIGHT.with_label_values(&[kind]);
    }
    // Every actor's restart series exists from the start, at zero.
    for actor in ["watch-cache", "apiserver-nats", "compactor", "usage-receiver"] {
        ACTOR_RESTARTS.with_label_values(&[actor]);
    }
    LazyLock::force(&OBJECTS_STORED);
    LazyLock::force(&COMPACTED);
    LazyLock::force(&EVENTS_EXPIRED);
    LazyLock::force(&LIST_SNAPSHOTS);
    crate::admission::quota::evaluator::register_metrics();
}

/// The text exposition of every metric in the process.
pub fn render() -> String {
    use prometheus::Encoder;
    let mut buf = Vec::new();
    let _ = prometheus::TextEncoder::new().encode(&prometheus::gather(), &mut buf);
    String::from_utf8(buf).unwrap_or_default()
}
