//! Metrics of work queues (client-go's `workqueue_*` names, labelled by queue name as
//! kube-controller-manager exports them), reconciles (controller-runtime's
//! `controller_runtime_*` names) and informers.

use prometheus::{
    register_histogram_vec, register_int_counter_vec, register_int_gauge_vec, HistogramVec, IntCounterVec, IntGaugeVec,
};
use std::sync::LazyLock;

/// client-go's workqueue buckets: 1 µs to 10 s by factors of 10.
fn exponential_buckets() -> Vec<f64> {
    prometheus::exponential_buckets(1e-8, 10.0, 10).expect("valid buckets")
}

pub static QUEUE_DEPTH: LazyLock<IntGaugeVec> = LazyLock::new(|| {
    register_int_gauge_vec!("workqueue_depth", "Current depth of workqueue", &["name"]).expect("registers once")
});

pub static QUEUE_ADDS: LazyLock<IntCounterVec> = LazyLock::new(|| {
    register_int_counter_vec!("workqueue_adds_total", "Total number of adds handled by workqueue", &["name"])
        .expect("registers once")
});

pub static QUEUE_RETRIES: LazyLock<IntCounterVec> = LazyLock::new(|| {
    register_int_counter_vec!("workqueue_retries_total", "Total number of retries handled by workqueue", &["name"])
        .expect("registers once")
});

pub static QUEUE_DURATION: LazyLock<HistogramVec> = LazyLock::new(|| {
    register_histogram_vec!(
        "workqueue_queue_duration_seconds",
        "How long in seconds an item stays in workqueue before being requested.",
        &["name"],
        exponential_buckets()
    )
    .expect("registers once")
});

pub static WORK_DURATION: LazyLock<HistogramVec> = LazyLock::new(|| {
    register_histogram_vec!(
        "workqueue_work_duration_seconds",
        "How long in seconds processing an item from workqueue takes.",
        &["name"],
        exponential_buckets()
    )
    .expect("registers once")
});

pub static RECONCILES: LazyLock<IntCounterVec> = LazyLock::new(|| {
    register_int_counter_vec!(
        "controller_runtime_reconcile_total",
        "Total number of reconciliations per controller",
        &["controller", "result"]
    )
    .expect("registers once")
});

pub static RECONCILE_ERRORS: LazyLock<IntCounterVec> = LazyLock::new(|| {
    register_int_counter_vec!(
        "controller_runtime_reconcile_errors_total",
        "Total number of reconciliation errors per controller",
        &["controller"]
    )
    .expect("registers once")
});

pub static RECONCILE_TIME: LazyLock<HistogramVec> = LazyLock::new(|| {
    register_histogram_vec!(
        "controller_runtime_reconcile_time_seconds",
        "Length of time per reconciliation per controller",
        &["controller"],
        vec![0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0]
    )
    .expect("registers once")
});

pub static ACTIVE_WORKERS: LazyLock<IntGaugeVec> = LazyLock::new(|| {
    register_int_gauge_vec!(
        "controller_runtime_active_workers",
        "Number of currently used workers per controller",
        &["controller"]
    )
    .expect("registers once")
});

pub static MAX_CONCURRENT_RECONCILES: LazyLock<IntGaugeVec> = LazyLock::new(|| {
    register_int_gauge_vec!(
        "controller_runtime_max_concurrent_reconciles",
        "Maximum number of concurrent reconciles per controller",
        &["controller"]
    )
    .expect("registers once")
});

pub static INFORMER_EVENTS: LazyLock<IntCounterVec> = LazyLock::new(|| {
    register_int_counter_vec!(
        "kubus_informer_events_total",
        "Changes applied by informers, by resource and type",
        &["resource", "type"]
    )
    .expect("registers once")
});

pub static INFORMER_RELISTS: LazyLock<IntCounterVec> = LazyLock::new(|| {
    register_int_counter_vec!("kubus_informer_relists_total", "Full relists of informers, by resource", &["resource"])
        .expect("registers once")
});

pub static INFORMER_OBJECTS: LazyLock<IntGaugeVec> = LazyLock::new(|| {
    register_int_gauge_vec!("kubus_informer_objects", "Objects held by informers, by resource", &["resource"])
        .expect("registers once")
});

pub static INFORMER_DECODE_ERRORS: LazyLock<IntCounterVec> = LazyLock::new(|| {
    register_int_counter_vec!(
        "kubus_informer_decode_errors_total",
        "Stored objects an informer could not decode into their type, by resource",
        &["resource"]
    )
    .expect("registers once")
});

pub static LEADER_STATUS: LazyLock<IntGaugeVec> = LazyLock::new(|| {
    register_int_gauge_vec!(
        "leader_election_master_status",
        "Gauge of if the reporting system is master of the relevant lease, 0 indicates backup, 1 indicates master. 'name' is the string used to identify the lease. Please make sure to group by name.",
        &["name"]
    )
    .expect("registers once")
});
