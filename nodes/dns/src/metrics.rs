//! Prometheus metrics of the cluster DNS server.

use prometheus::{
    register_histogram_vec, register_int_counter, register_int_counter_vec, register_int_gauge, HistogramVec,
    IntCounter, IntCounterVec, IntGauge,
};
use std::sync::LazyLock;

/// Answers sent, by question type and response code (CoreDNS's coredns_dns_responses_total).
pub static REQUESTS: LazyLock<IntCounterVec> = LazyLock::new(|| {
    register_int_counter_vec!(
        "kubus_dns_requests_total",
        "DNS requests answered, by query type and rcode",
        &["type", "rcode"]
    )
    .expect("register kubus_dns_requests_total")
});

/// Time from question to answer sent; `source` is cluster (from the index) or forward.
pub static REQUEST_SECONDS: LazyLock<HistogramVec> = LazyLock::new(|| {
    register_histogram_vec!(
        "kubus_dns_request_seconds",
        "Time to answer a DNS request",
        &["source"],
        vec![0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.05, 0.25, 1.0, 2.5]
    )
    .expect("register kubus_dns_request_seconds")
});

/// Questions sent upstream, by outcome (ok, error).
pub static FORWARDED: LazyLock<IntCounterVec> = LazyLock::new(|| {
    register_int_counter_vec!("kubus_dns_forwarded_total", "DNS requests forwarded upstream, by result", &["result"])
        .expect("register kubus_dns_forwarded_total")
});

/// Full rebuilds of the index (first sync, informer resyncs, lagging subscribers).
pub static INDEX_REBUILDS: LazyLock<IntCounter> = LazyLock::new(|| {
    register_int_counter!("kubus_dns_index_rebuilds_total", "Full rebuilds of the DNS index from the informers")
        .expect("register kubus_dns_index_rebuilds_total")
});

/// Services in the index.
pub static INDEX_SERVICES: LazyLock<IntGauge> = LazyLock::new(|| {
    register_int_gauge!("kubus_dns_index_services", "Services known to the cluster DNS")
        .expect("register kubus_dns_index_services")
});
