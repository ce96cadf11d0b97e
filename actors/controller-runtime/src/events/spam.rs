//! client-go's event spam filter (`EventSourceObjectSpamFilter`): each source may record a
//! burst of 25 Events about one object, then one more every 5 minutes; the rest are dropped.
//! A ReplicaSet of 30,000 pods so records a few dozen `SuccessfulCreate` Events, not 30,000
//! writes competing with the pods themselves for the API server.

use prometheus::{register_int_counter_vec, IntCounterVec};
use std::collections::{HashMap, VecDeque};
use std::sync::{LazyLock, Mutex};
use std::time::{Duration, Instant};

/// Upstream's defaults: a burst of 25, one token every 300 s.
const BURST: f64 = 25.0;
const REFILL: Duration = Duration::from_secs(300);
/// Objects remembered (upstream's LRU of 4096).
const CAPACITY: usize = 4096;

static DROPPED: LazyLock<IntCounterVec> = LazyLock::new(|| {
    register_int_counter_vec!(
        "kubus_events_spam_filtered_total",
        "Events not recorded because their source recorded too many about the same object",
        &["component"]
    )
    .expect("registers once")
});

#[derive(Default)]
pub struct SpamFilter {
    inner: Mutex<Buckets>,
}

#[derive(Default)]
struct Buckets {
    tokens: HashMap<String, (f64, Instant)>,
    order: VecDeque<String>,
}

impl SpamFilter {
    /// Whether an Event about the object `key` may be recorded now (takes a token).
    pub fn allow(&self, component: &str, key: &str, now: Instant) -> bool {
        let mut b = self.inner.lock().expect("spam filter lock");
        if !b.tokens.contains_key(key) {
            if b.order.len() >= CAPACITY {
                if let Some(old) = b.order.pop_front() {
                    b.tokens.remove(&old);
                }
            }
            b.order.push_back(key.to_string());
            b.tokens.insert(key.to_string(), (BURST, now));
        }
        let (tokens, last) = b.tokens.get_mut(key).expect("inserted above");
        *tokens = (*tokens + now.duration_since(*last).as_secs_f64() / REFILL.as_secs_f64()).min(BURST);
        *last = now;
        if *tokens >= 1.0 {
            *tokens -= 1.0;
            true
        } else {
            DROPPED.with_label_values(&[component]).inc();
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bursts_then_one_per_five_minutes_per_object() {
        let f = SpamFilter::default();
        let t0 = Instant::now();
        assert_eq!((0..40).filter(|_| f.allow("t", "rs/a", t0)).count(), 25);
        // Another object has a bucket of its own.
        assert!(f.allow("t", "rs/b", t0));
        assert!(!f.allow("t", "rs/a", t0 + Duration::from_secs(299)));
        assert!(f.allow("t", "rs/a", t0 + Duration::from_secs(301)));
        assert!(!f.allow("t", "rs/a", t0 + Duration::from_secs(302)));
    }

    #[test]
    fn remembers_a_bounded_number_of_objects() {
        let f = SpamFilter::default();
        let t0 = Instant::now();
        for i in 0..(CAPACITY + 10) {
            f.allow("t", &format!("o{i}"), t0);
        }
        let b = f.inner.lock().unwrap();
        assert_eq!((b.tokens.len(), b.order.len()), (CAPACITY, CAPACITY));
    }
}
