//! Prometheus metrics of the image store.

use std::sync::LazyLock;

use prometheus::{
    register_histogram, register_int_counter_vec, register_int_gauge, Histogram, IntCounterVec, IntGauge,
};

/// Pulls that contacted a registry, by `result` (`success`, `failure`).
pub static PULLS: LazyLock<IntCounterVec> = LazyLock::new(|| {
    register_int_counter_vec!("kubus_image_pulls_total", "Image pulls from a registry by result", &["result"])
        .expect("kubus_image_pulls_total registers once")
});

/// Wall time of pulls that contacted a registry (manifest resolution, blobs, unpacking).
pub static PULL_SECONDS: LazyLock<Histogram> = LazyLock::new(|| {
    register_histogram!(
        "kubus_image_pull_seconds",
        "Duration of image pulls from a registry",
        vec![0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0]
    )
    .expect("kubus_image_pull_seconds registers once")
});

/// Bytes held by the store: blobs plus unpacked layers.
pub static STORE_BYTES: LazyLock<IntGauge> = LazyLock::new(|| {
    register_int_gauge!("kubus_image_store_bytes", "Bytes used by the image store (blobs and unpacked layers)")
        .expect("kubus_image_store_bytes registers once")
});
