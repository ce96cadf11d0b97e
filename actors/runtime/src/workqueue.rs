//! A work queue as controllers use it: a key is queued at most once, is never handed to two
//! workers at once (a key added while in process is queued again when done), and failures
//! are retried with per-key exponential backoff.

use crate::metrics::{QUEUE_ADDS, QUEUE_DEPTH, QUEUE_RETRIES};
use std::collections::{HashMap, HashSet, VecDeque};
use std::hash::Hash;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::Notify;

struct Inner<K> {
    queue: VecDeque<K>,
    dirty: HashSet<K>,
    processing: HashSet<K>,
    failures: HashMap<K, u32>,
}

pub struct WorkQueue<K> {
    name: &'static str,
    inner: Mutex<Inner<K>>,
    notify: Notify,
    base_delay: Duration,
    max_delay: Duration,
}

impl<K: Clone + Eq + Hash + Send + 'static> WorkQueue<K> {
    pub fn new(name: &'static str) -> Arc<Self> {
        Self::with_backoff(name, Duration::from_millis(5), Duration::from_secs(300))
    }

    pub fn with_backoff(name: &'static str, base_delay: Duration, max_delay: Duration) -> Arc<Self> {
        Arc::new(WorkQueue {
            name,
            inner: Mutex::new(Inner {
                queue: VecDeque::new(),
                dirty: HashSet::new(),
                processing: HashSet::new(),
                failures: HashMap::new(),
            }),
            notify: Notify::new(),
            base_delay,
            max_delay,
        })
    }

    pub fn add(&self, key: K) {
        let mut q = self.inner.lock().expect("queue lock");
        if !q.dirty.insert(key.clone()) {
            return;
        }
        QUEUE_ADDS.with_label_values(&[self.name]).inc();
        if q.processing.contains(&key) {
            return;
        }
        q.queue.push_back(key);
        QUEUE_DEPTH.with_label_values(&[self.name]).set(q.queue.len() as i64);
        drop(q);
        self.notify.notify_one();
    }

    pub fn add_after(self: &Arc<Self>, key: K, delay: Duration) {
        let this = self.clone();
        tokio::spawn(async move {
            tokio::time::sleep(delay).await;
            this.add(key);
        });
    }

    /// Requeues after a delay that doubles with each failure of this key.
    pub fn add_rate_limited(self: &Arc<Self>, key: K) {
        let n = {
            let mut q = self.inner.lock().expect("queue lock");
            let n = q.failures.entry(key.clone()).or_insert(0);
            *n += 1;
            *n
        };
        QUEUE_RETRIES.with_label_values(&[self.name]).inc();
        let delay = self.base_delay.saturating_mul(1u32 << (n - 1).min(20)).min(self.max_delay);
        self.add_after(key, delay);
    }

    /// Clears the failure count of a key (after it succeeded).
    pub fn forget(&self, key: &K) {
        self.inner.lock().expect("queue lock").failures.remove(key);
    }

    pub fn failures(&self, key: &K) -> u32 {
        self.inner.lock().expect("queue lock").failures.get(key).copied().unwrap_or(0)
    }

    /// The next key to work on; call [`WorkQueue::done`] when finished with it.
    pub async fn get(&self) -> K {
        loop {
            let notified = self.notify.notified();
            {
                let mut q = self.inner.lock().expect("queue lock");
                if let Some(k) = q.queue.pop_front() {
                    q.dirty.remove(&k);
                    q.processing.insert(k.clone());
                    QUEUE_DEPTH.with_label_values(&[self.name]).set(q.queue.len() as i64);
                    if !q.queue.is_empty() {
                        self.notify.notify_one();
                    }
                    return k;
                }
            }
            notified.await;
        }
    }

    pub fn done(&self, key: &K) {
        let mut q = self.inner.lock().expect("queue lock");
        q.processing.remove(key);
        if q.dirty.contains(key) {
            q.queue.push_back(key.clone());
            drop(q);
            self.notify.notify_one();
        }
    }

    pub fn len(&self) -> usize {
        self.inner.lock().expect("queue lock").queue.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn dedups_and_never_hands_out_a_key_twice() {
        let q = WorkQueue::new("t");
        q.add("a");
        q.add("a");
        q.add("b");
        assert_eq!(q.len(), 2);
        let k = q.get().await;
        assert_eq!(k, "a");
        q.add("a"); // while processing: queued again only when done
        assert_eq!(q.get().await, "b");
        assert!(q.is_empty());
        q.done(&"a");
        assert_eq!(q.get().await, "a");
    }

    #[tokio::test]
    async fn rate_limited_requeue_backs_off() {
        let q = WorkQueue::with_backoff("t2", Duration::from_millis(20), Duration::from_secs(1));
        q.add_rate_limited("x");
        q.add_rate_limited("x");
        assert_eq!(q.failures(&"x"), 2);
        let started = std::time::Instant::now();
        assert_eq!(q.get().await, "x");
        assert!(started.elapsed() >= Duration::from_millis(15));
        q.forget(&"x");
        assert_eq!(q.failures(&"x"), 0);
    }
}
