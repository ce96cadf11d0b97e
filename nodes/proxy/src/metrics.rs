use prometheus::{
    register_histogram, register_int_counter_vec, register_int_gauge_vec, Histogram, IntCounterVec, IntGaugeVec,
};
use std::sync::LazyLock;

/// Wall time of one full sync (compute + `nft -f`), like upstream's
/// kubeproxy_sync_proxy_rules_duration_seconds.
pub static SYNC_SECONDS: LazyLock<Histogram> = LazyLock::new(|| {
    register_histogram!(
        "kubeproxy_sync_proxy_rules_duration_seconds",
        "SyncProxyRules latency in seconds",
        // Upstream's buckets: 1 ms doubling, 15 of them.
        prometheus::exponential_buckets(0.001, 2.0, 15).expect("valid buckets")
    )
    .expect("kubeproxy_sync_proxy_rules_duration_seconds registers once")
});

/// When the rules were last programmed (upstream's staleness alert reads it).
pub static LAST_SYNC: LazyLock<prometheus::Gauge> = LazyLock::new(|| {
    prometheus::register_gauge!(
        "kubeproxy_sync_proxy_rules_last_timestamp_seconds",
        "The last time proxy rules were successfully synced"
    )
    .expect("kubeproxy_sync_proxy_rules_last_timestamp_seconds registers once")
});

pub static SYNCS: LazyLock<IntCounterVec> = LazyLock::new(|| {
    register_int_counter_vec!("kubus_proxy_syncs_total", "kube-proxy rule syncs by result", &["result"])
        .expect("kubus_proxy_syncs_total registers once")
});

/// What the last successful sync programmed: services (service ports) and endpoints.
pub static PROGRAMMED: LazyLock<IntGaugeVec> = LazyLock::new(|| {
    register_int_gauge_vec!(
        "kubus_proxy_programmed",
        "Service ports and endpoints programmed by the last successful sync",
        &["kind"]
    )
    .expect("kubus_proxy_programmed registers once")
});

/// conntrack deletions of UDP flows whose endpoint left (upstream's conntrack cleanup).
pub static CONNTRACK_FLUSHES: LazyLock<IntCounterVec> = LazyLock::new(|| {
    register_int_counter_vec!(
        "kubus_proxy_conntrack_flushes_total",
        "conntrack deletions of stale UDP flows, by result",
        &["result"]
    )
    .expect("kubus_proxy_conntrack_flushes_total registers once")
});
