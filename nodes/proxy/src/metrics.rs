use prometheus::{
    register_histogram, register_int_counter_vec, register_int_gauge_vec, Histogram, IntCounterVec, IntGaugeVec,
};
use std::sync::LazyLock;

/// Wall time of one full sync (compute + `nft -f`), like upstream's
/// kubeproxy_sync_proxy_rules_duration_seconds.
pub static SYNC_SECONDS: LazyLock<Histogram> = LazyLock::new(|| {
    register_histogram!(
        "kubus_proxy_sync_seconds",
        "Duration of kube-proxy rule syncs (ruleset computation and nft apply)",
        vec![0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0]
    )
    .expect("kubus_proxy_sync_seconds registers once")
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
