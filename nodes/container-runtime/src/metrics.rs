//! Prometheus metrics of the runtime client (in the agent's registry, the default one).

use std::future::Future;
use std::sync::LazyLock;
use std::time::Instant;

use prometheus::{register_histogram_vec, register_int_counter_vec, HistogramVec, IntCounterVec};
use tracing::Instrument;

pub(crate) static OPERATIONS: LazyLock<IntCounterVec> = LazyLock::new(|| {
    register_int_counter_vec!(
        "kubus_runtime_operations_total",
        "Container runtime operations by operation and result (ok or error)",
        &["op", "result"]
    )
    .expect("register kubus_runtime_operations_total")
});

pub(crate) static OPERATION_SECONDS: LazyLock<HistogramVec> = LazyLock::new(|| {
    register_histogram_vec!(
        "kubus_runtime_operation_seconds",
        "Latency of container runtime operations",
        &["op"],
        vec![0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0]
    )
    .expect("register kubus_runtime_operation_seconds")
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
        let result = if res.is_ok() { "ok" } else { "error" };
        OPERATIONS.with_label_values(&[self.op, result]).inc();
    }
}
