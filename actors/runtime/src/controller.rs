//! Running a reconciler: workers take keys from the controller's work queue and reconcile
//! them; a failure is requeued with backoff, a success forgets the key's failures. Every
//! reconcile is a tracing span and is counted and timed by controller.

use crate::informer::ObjectKey;
use crate::workqueue::WorkQueue;
use futures::future::BoxFuture;
use prometheus::{register_histogram_vec, register_int_counter_vec, HistogramVec, IntCounterVec};
use std::sync::{Arc, LazyLock};
use std::time::{Duration, Instant};
use tracing::Instrument;

static RECONCILES: LazyLock<IntCounterVec> = LazyLock::new(|| {
    register_int_counter_vec!(
        "kubus_controller_reconciles_total",
        "Reconciles by controller and result",
        &["controller", "result"]
    )
    .expect("registers once")
});

static RECONCILE_LATENCY: LazyLock<HistogramVec> = LazyLock::new(|| {
    register_histogram_vec!(
        "kubus_controller_reconcile_duration_seconds",
        "Reconcile latency by controller",
        &["controller"],
        vec![0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5]
    )
    .expect("registers once")
});

/// What to do with a key after a successful reconcile.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    Done,
    RequeueAfter(Duration),
}

pub type ReconcileResult = Result<Action, String>;

pub trait Reconciler: Send + Sync + 'static {
    fn name(&self) -> &'static str;
    fn reconcile(&self, key: ObjectKey) -> BoxFuture<'_, ReconcileResult>;
}

/// The `workers` worker loops of `reconciler` on `queue`, for the owning actor to run (they
/// end when it stops).
pub fn workers<R: Reconciler>(
    reconciler: Arc<R>,
    queue: Arc<WorkQueue<ObjectKey>>,
    workers: usize,
) -> Vec<BoxFuture<'static, ()>> {
    // Series exist from the start, so dashboards show zeros rather than nothing.
    for result in ["ok", "error"] {
        RECONCILES.with_label_values(&[reconciler.name(), result]);
    }
    (0..workers.max(1))
        .map(|_| {
            let (r, q) = (reconciler.clone(), queue.clone());
            let worker: BoxFuture<'static, ()> = Box::pin(async move {
                loop {
                    let key = q.get().await;
                    let name = r.name();
                    let started = Instant::now();
                    let span = tracing::debug_span!("reconcile", controller = name, namespace = %key.0, name = %key.1);
                    let result = r.reconcile(key.clone()).instrument(span).await;
                    RECONCILE_LATENCY.with_label_values(&[name]).observe(started.elapsed().as_secs_f64());
                    match result {
                        Ok(action) => {
                            RECONCILES.with_label_values(&[name, "ok"]).inc();
                            q.forget(&key);
                            if let Action::RequeueAfter(d) = action {
                                q.add_after(key.clone(), d);
                            }
                        }
                        Err(e) => {
                            RECONCILES.with_label_values(&[name, "error"]).inc();
                            tracing::debug!(controller = name, key = ?key, error = %e, "reconcile failed; requeued");
                            q.add_rate_limited(key.clone());
                        }
                    }
                    q.done(&key);
                }
            });
            worker
        })
        .collect()
}
