//! Metrics of informers and work queues, by name.

use prometheus::{register_int_counter_vec, register_int_gauge_vec, IntCounterVec, IntGaugeVec};
use std::sync::LazyLock;

pub static QUEUE_DEPTH: LazyLock<IntGaugeVec> = LazyLock::new(|| {
    register_int_gauge_vec!("kubus_workqueue_depth", "Keys waiting in a work queue", &["name"]).expect("registers once")
});

pub static QUEUE_ADDS: LazyLock<IntCounterVec> = LazyLock::new(|| {
    register_int_counter_vec!("kubus_workqueue_adds_total", "Keys added to a work queue", &["name"])
        .expect("registers once")
});

pub static QUEUE_RETRIES: LazyLock<IntCounterVec> = LazyLock::new(|| {
    register_int_counter_vec!("kubus_workqueue_retries_total", "Rate-limited requeues of a work queue", &["name"])
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
