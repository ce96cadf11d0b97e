//! Prometheus metrics of the bus, registered in the process-wide default registry that
//! `/metrics` exports.

use prometheus::{register_histogram_vec, register_int_counter_vec, HistogramVec, IntCounterVec};
use std::sync::LazyLock;

/// Store operations by `op` (create, update, delete, get, list, watch) and `result`.
pub static STORE_OPS: LazyLock<IntCounterVec> = LazyLock::new(|| {
    register_int_counter_vec!(
        "kubus_store_operations_total",
        "Object store operations on JetStream by operation and result",
        &["op", "result"]
    )
    .expect("metric registers once")
});

/// Latency of store operations as seen by the caller.
pub static STORE_LATENCY: LazyLock<HistogramVec> = LazyLock::new(|| {
    register_histogram_vec!(
        "kubus_store_operation_duration_seconds",
        "Latency of object store operations on JetStream",
        &["op"],
        vec![0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0]
    )
    .expect("metric registers once")
});

/// Events delivered by store watches.
pub static WATCH_EVENTS: LazyLock<IntCounterVec> = LazyLock::new(|| {
    register_int_counter_vec!(
        "kubus_store_watch_events_total",
        "Events delivered by JetStream-backed store watches",
        &["type"]
    )
    .expect("metric registers once")
});

/// Records one store operation; `ok` selects the result label.
pub fn observe(op: &str, started: std::time::Instant, ok: bool) {
    STORE_LATENCY.with_label_values(&[op]).observe(started.elapsed().as_secs_f64());
    STORE_OPS.with_label_values(&[op, if ok { "ok" } else { "error" }]).inc();
}

/// client-go's request counter, for every internal client of the API server (controllers,
/// scheduler, node agents): `host` is the API's subject on the bus, `code` the HTTP status
/// or `<error>` when no answer came.
pub static REST_CLIENT_REQUESTS: LazyLock<IntCounterVec> = LazyLock::new(|| {
    register_int_counter_vec!(
        "rest_client_requests_total",
        "Number of HTTP requests, partitioned by status code, method, and host.",
        &["code", "host", "method"]
    )
    .expect("metric registers once")
});

pub static REST_CLIENT_LATENCY: LazyLock<HistogramVec> = LazyLock::new(|| {
    register_histogram_vec!(
        "rest_client_request_duration_seconds",
        "Request latency in seconds. Broken down by verb, and host.",
        &["host", "verb"],
        // client-go's buckets, with finer ones below 5 ms (requests over the bus are fast).
        vec![0.0005, 0.001, 0.0025, 0.005, 0.025, 0.1, 0.25, 0.5, 1.0, 2.0, 4.0, 8.0, 15.0, 30.0, 60.0]
    )
    .expect("metric registers once")
});

/// Reloads of the embedded server's users (a node joined or left, a bootstrap token came or
/// went).
pub static NATS_USERS_RELOADS: LazyLock<prometheus::IntCounter> = LazyLock::new(|| {
    prometheus::register_int_counter!(
        "kubus_embedded_nats_user_reloads_total",
        "Times the embedded nats-server was told to reload its users"
    )
    .expect("metric registers once")
});

/// Errors NATS servers reported to this process's clients (a permission denied is one: the
/// server answers it with an error, not a reply), by client.
pub static NATS_SERVER_ERRORS: LazyLock<IntCounterVec> = LazyLock::new(|| {
    register_int_counter_vec!(
        "kubus_nats_server_errors_total",
        "Errors the NATS server sent to this process's clients (permission violations among them)",
        &["client"]
    )
    .expect("metric registers once")
});

/// Stored objects a list or watch left out because they could not be read (encrypted with a
/// key this process does not have, or not decrypting).
pub static UNREADABLE_OBJECTS: LazyLock<prometheus::IntCounter> = LazyLock::new(|| {
    prometheus::register_int_counter!(
        "kubus_store_unreadable_objects_total",
        "Stored objects left out of a list or watch because they could not be read (decrypted)"
    )
    .expect("metric registers once")
});
