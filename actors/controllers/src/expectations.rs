//! Controller expectations: after asking for N creations or deletions, a controller waits
//! until its informer has seen them before acting on the same owner again, so a slow watch
//! never makes it create or delete twice. Expectations expire, so a lost event cannot wedge
//! an owner forever.

use kubus_apimachinery::ObjectKey;
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

const TTL: Duration = Duration::from_secs(300);

/// What is still expected of one owner: (adds, deletes, since).
type Pending = (i64, i64, Instant);

/// Expectations by owner key.
#[derive(Default)]
pub struct Expectations {
    inner: Mutex<HashMap<ObjectKey, Pending>>,
}

impl Expectations {
    pub fn expect(&self, owner: &ObjectKey, adds: i64, dels: i64) {
        self.inner.lock().expect("lock").insert(owner.clone(), (adds, dels, Instant::now()));
    }

    pub fn observed_add(&self, owner: &ObjectKey) {
        if let Some(e) = self.inner.lock().expect("lock").get_mut(owner) {
            e.0 -= 1;
        }
    }

    pub fn observed_del(&self, owner: &ObjectKey) {
        if let Some(e) = self.inner.lock().expect("lock").get_mut(owner) {
            e.1 -= 1;
        }
    }

    /// Lowers what is expected when a request failed (it will never be observed).
    pub fn failed(&self, owner: &ObjectKey, adds: i64, dels: i64) {
        if let Some(e) = self.inner.lock().expect("lock").get_mut(owner) {
            e.0 -= adds;
            e.1 -= dels;
        }
    }

    pub fn satisfied(&self, owner: &ObjectKey) -> bool {
        match self.inner.lock().expect("lock").get(owner) {
            None => true,
            Some((adds, dels, at)) => (*adds <= 0 && *dels <= 0) || at.elapsed() > TTL,
        }
    }

    pub fn forget(&self, owner: &ObjectKey) {
        self.inner.lock().expect("lock").remove(owner);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(name: &str) -> ObjectKey {
        ("default".to_string(), name.to_string())
    }

    #[test]
    fn satisfied_once_every_request_is_observed_or_failed() {
        let e = Expectations::default();
        let (a, b) = (key("a"), key("b"));
        assert!(e.satisfied(&a), "nothing expected yet");
        e.expect(&a, 3, 0);
        e.observed_add(&a);
        e.observed_add(&a);
        assert!(!e.satisfied(&a));
        // Another owner's events do not count.
        e.observed_add(&b);
        assert!(!e.satisfied(&a));
        e.failed(&a, 1, 0);
        assert!(e.satisfied(&a));

        e.expect(&a, 0, 2);
        e.observed_del(&a);
        assert!(!e.satisfied(&a));
        e.observed_del(&a);
        assert!(e.satisfied(&a));

        e.expect(&a, 1, 1);
        e.forget(&a);
        assert!(e.satisfied(&a), "a forgotten owner expects nothing");
    }
}
