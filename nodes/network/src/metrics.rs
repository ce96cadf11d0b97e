//! Prometheus metrics of sandboxes and CNI plugins.

use prometheus::{register_histogram_vec, register_int_counter_vec, HistogramVec, IntCounterVec};
use std::sync::LazyLock;

pub static SANDBOX_OPERATIONS: LazyLock<IntCounterVec> = LazyLock::new(|| {
    register_int_counter_vec!(
        "kubus_sandbox_operations_total",
        "Pod sandbox operations by operation (create, remove) and result (success, error)",
        &["op", "result"]
    )
    .expect("registers once")
});

pub static CNI_PLUGIN_SECONDS: LazyLock<HistogramVec> = LazyLock::new(|| {
    register_histogram_vec!(
        "kubus_cni_plugin_seconds",
        "Run time of one CNI plugin invocation by plugin type and command (ADD, DEL, CHECK)",
        &["plugin", "command"],
        vec![0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0]
    )
    .expect("registers once")
});

pub(crate) fn record_op(op: &str, ok: bool) {
    SANDBOX_OPERATIONS.with_label_values(&[op, if ok { "success" } else { "error" }]).inc();
}
