//! Prometheus metrics of the runtime client (in the agent's registry, the default one).

use std::future::Future;
use std::sync::LazyLock;
use std::time::Instant;

use prometheus::{register_histogram_vec, register_int_counter_vec, HistogramVec, IntCounterVec};
use tracing::Instrument;

// The kubelet's names for its runtime calls (upstream counts CRI calls; these are the calls
// into this runtime), so kubelet dashboards and alerts read them.
pub(crate) static OPERATIONS: LazyLock<IntCounterVec> = LazyLock::new(|| {
    register_int_counter_vec!(
        "kubelet_runtime_operations_total",
        "Cumulative number of runtime operations by operation type.",
        &["operation_type"]
    )
    .expect("register kubelet_runtime_operations_total")
});

pub(crate) static OPERATION_ERRORS: LazyLock<IntCounterVec> = LazyLock::new(|| {
    register_int_counter_vec!(
        "kubelet_runtime_operations_errors_total",
        "Cumulative number of runtime operation errors by operation type.",
        &["operation_type"]
    )
    .expect("register kubelet_runtime_operations_errors_total")
});

pub(crate) static OPERATION_SECONDS: LazyLock<HistogramVec> = LazyLock::new(|| {
    register_histogram_vec!(
        "kubelet_runtime_operations_duration_seconds",
        "Duration in seconds of runtime operations. Broken down by operation type.",
        &["operation_type"],
        prometheus::exponential_buckets(0.005, 2.5, 14).expect("valid buckets")
    )
    .expect("register kubelet_runtime_operations_duration_seconds")
});

pub(crate) static SHIM_EVENTS: LazyLock<IntCounterVec> = LazyLock::new(|| {
    register_int_counter_vec!(
        "kubus_runtime_shim_events_total",
        "Shim lifecycle events seen by the agent: spawned, adopted (found alive after a restart), \
         lost (found dead), cleaned (removed by a cleanup child)",
        &["event"]
    )
    .expect("register kubus_runtime_shim_events_total")
});

/// Runs one runtime operation in its span, recording its latency and outcome.
pub(crate) async fn timed<T, E>(
    op: &'static str,
    span: tracing::Span,
    operation: impl Future<Output = Result<T, E>>,
) -> Result<T, E> {
    let timer = OpTimer::new(op);
    let res = operation.instrument(span).await;
    timer.finish(&res);
    res
}

/// Records one operation's latency and outcome when finished.
struct OpTimer {
    op: &'static str,
    start: Instant,
}

impl OpTimer {
    fn new(op: &'static str) -> Self {
        Self { op, start: Instant::now() }
    }

    fn finish<T, E>(self, res: &Result<T, E>) {
        OPERATION_SECONDS.with_label_values(&[self.op]).observe(self.start.elapsed().as_secs_f64());
        OPERATIONS.with_label_values(&[self.op]).inc();
        if res.is_err() {
            OPERATION_ERRORS.with_label_values(&[self.op]).inc();
        }
    }
}
