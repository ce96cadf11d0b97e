//! Controller expectations: after asking for N creations or deletions, a controller waits
//! until its informer has seen them before acting on the same owner again, so a slow watch
//! never makes it create or delete twice. Expectations expire, so a lost event cannot wedge
//! an owner forever.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

const TTL: Duration = Duration::from_secs(300);

#[derive(Default)]
pub struct Expectations {
    inner: Mutex<HashMap<String, (i64, i64, Instant)>>,
}

impl Expectations {
    pub fn expect(&self, owner: &str, adds: i64, dels: i64) {
        self.inner.lock().expect("lock").insert(owner.to_string(), (adds, dels, Instant::now()));
    }

    pub fn observed_add(&self, owner: &str) {
        if let Some(e) = self.inner.lock().expect("lock").get_mut(owner) {
            e.0 -= 1;
        }
    }

    pub fn observed_del(&self, owner: &str) {
        if let Some(e) = self.inner.lock().expect("lock").get_mut(owner) {
            e.1 -= 1;
        }
    }

    /// Lowers what is expected when a request failed (it will never be observed).
    pub fn failed(&self, owner: &str, adds: i64, dels: i64) {
        if let Some(e) = self.inner.lock().expect("lock").get_mut(owner) {
            e.0 -= adds;
            e.1 -= dels;
        }
    }

    pub fn satisfied(&self, owner: &str) -> bool {
        match self.inner.lock().expect("lock").get(owner) {
            None => true,
            Some((adds, dels, at)) => (*adds <= 0 && *dels <= 0) || at.elapsed() > TTL,
        }
    }

    pub fn forget(&self, owner: &str) {
        self.inner.lock().expect("lock").remove(owner);
    }
}
