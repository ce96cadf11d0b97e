//! Threads of the control plane, one per component (or per controller): an actix arbiter (a
//! thread with its own event loop) named after what it runs, so one component's CPU work never
//! delays another's, and `top -H`, `ps -L` and the benches tell their CPU apart.

/// Starts an arbiter whose thread is called `name` (the kernel keeps 15 characters).
pub fn named(name: &'static str) -> actix::Arbiter {
    let arbiter = actix::Arbiter::new();
    arbiter.spawn_fn(move || {
        // The thread names itself: /proc/thread-self/comm needs no unsafe call.
        let _ = std::fs::write("/proc/thread-self/comm", name);
    });
    arbiter
}

/// Runs `work` on `arbiter` and returns its result (None if the arbiter stopped first). Tasks
/// `work` spawns, such as a NATS connection's I/O, stay on that arbiter's thread.
pub async fn run_on<T: Send + 'static>(
    arbiter: &actix::ArbiterHandle,
    work: impl std::future::Future<Output = T> + Send + 'static,
) -> Option<T> {
    let (tx, rx) = tokio::sync::oneshot::channel();
    arbiter.spawn(async move {
        let _ = tx.send(work.await);
    });
    rx.await.ok()
}
