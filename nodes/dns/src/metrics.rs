//! Prometheus metrics of the cluster DNS server.

use prometheus::{
    register_histogram_vec, register_int_counter, register_int_counter_vec, register_int_gauge, HistogramVec,
    IntCounter, IntCounterVec, IntGauge,
};
use std::sync::LazyLock;

/// Questions received (CoreDNS's names and labels: dashboards and alerts written for
/// CoreDNS read the cluster DNS as they are). `server` is the listen address as CoreDNS
/// prints it, `zone` the server block (this server serves the root).
pub static REQUESTS: LazyLock<IntCounterVec> = LazyLock::new(|| {
    register_int_counter_vec!(
        "coredns_dns_requests_total",
        "Counter of DNS requests made per zone, protocol and family.",
        &["server", "zone", "view", "proto", "family", "type"]
    )
    .expect("register coredns_dns_requests_total")
});

/// Answers sent, by response code and the plugin that wrote them (kubernetes or forward).
pub static RESPONSES: LazyLock<IntCounterVec> = LazyLock::new(|| {
    register_int_counter_vec!(
        "coredns_dns_responses_total",
        "Counter of response status codes.",
        &["server", "zone", "view", "rcode", "plugin"]
    )
    .expect("register coredns_dns_responses_total")
});

/// Time from question to answer sent.
pub static REQUEST_SECONDS: LazyLock<HistogramVec> = LazyLock::new(|| {
    register_histogram_vec!(
        "coredns_dns_request_duration_seconds",
        "Histogram of the time (in seconds) each request took.",
        &["server", "zone", "view", "type"],
        vec![0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.05, 0.25, 1.0, 2.5]
    )
    .expect("register coredns_dns_request_duration_seconds")
});

/// Questions sent upstream, per upstream.
pub static FORWARDED: LazyLock<IntCounterVec> = LazyLock::new(|| {
    register_int_counter_vec!("coredns_forward_requests_total", "Counter of requests made per upstream.", &["to"])
        .expect("register coredns_forward_requests_total")
});

/// Upstream answers by rcode, per upstream.
pub static FORWARD_RESPONSES: LazyLock<IntCounterVec> = LazyLock::new(|| {
    register_int_counter_vec!(
        "coredns_forward_responses_total",
        "Counter of responses received per upstream.",
        &["rcode", "to"]
    )
    .expect("register coredns_forward_responses_total")
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
