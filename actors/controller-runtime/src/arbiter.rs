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
