//! A work queue as controllers use it (client-go's rate-limited delaying queue): a key is
//! queued at most once, is never handed to two workers at once (a key added while in process
//! is queued again when done), failures are retried with per-key exponential backoff, and a
//! delayed add keeps only the earliest deadline per key, so requeues never pile up timers.

use crate::metrics::{QUEUE_ADDS, QUEUE_DEPTH, QUEUE_DURATION, QUEUE_RETRIES, WORK_DURATION};
use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, HashSet, VecDeque};
use std::hash::Hash;
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;
use tokio::sync::Notify;
use tokio::time::Instant;

struct Inner<K> {
    queue: VecDeque<K>,
    dirty: HashSet<K>,
    processing: HashSet<K>,
    failures: HashMap<K, u32>,
    /// When each queued key was added, and when each key in process was taken (metrics).
    since: HashMap<K, Instant>,
    /// Delayed keys: the earliest deadline of each.
    waiting: HashMap<K, Instant>,
    /// Deadlines in order; an entry whose key now waits for another deadline is stale.
    timers: BinaryHeap<Reverse<(Instant, u64)>>,
    timer_keys: HashMap<u64, K>,
    next_timer: u64,
    timer_running: bool,
}

pub struct WorkQueue<K> {
    name: &'static str,
    inner: Mutex<Inner<K>>,
    notify: Notify,
    /// Wakes the timer task: an earlier deadline, or the queue went away.
    timer: Arc<Notify>,
    base_delay: Duration,
    max_delay: Duration,
}

impl<K> Drop for WorkQueue<K> {
    fn drop(&mut self) {
        self.timer.notify_one();
    }
}

impl<K: Clone + Eq + Hash + Send + 'static> WorkQueue<K> {
    pub fn new(name: &'static str) -> Arc<Self> {
        Self::with_backoff(name, Duration::from_millis(5), Duration::from_secs(300))
    }

    pub fn with_backoff(name: &'static str, base_delay: Duration, max_delay: Duration) -> Arc<Self> {
        // Every queue's series exist from the start (dashboards show zeros, not gaps).
        QUEUE_ADDS.with_label_values(&[name]);
        QUEUE_DEPTH.with_label_values(&[name]);
        QUEUE_RETRIES.with_label_values(&[name]);
        Arc::new(WorkQueue {
            name,
            inner: Mutex::new(Inner {
                queue: VecDeque::new(),
                dirty: HashSet::new(),
                processing: HashSet::new(),
                failures: HashMap::new(),
                since: HashMap::new(),
                waiting: HashMap::new(),
                timers: BinaryHeap::new(),
                timer_keys: HashMap::new(),
                next_timer: 0,
                timer_running: false,
            }),
            notify: Notify::new(),
            timer: Arc::new(Notify::new()),
            base_delay,
            max_delay,
        })
    }

    pub fn name(&self) -> &'static str {
        self.name
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
        q.since.insert(key.clone(), Instant::now());
        q.queue.push_back(key);
        QUEUE_DEPTH.with_label_values(&[self.name]).set(q.queue.len() as i64);
        drop(q);
        self.notify.notify_one();
    }

    /// Adds the key once `delay` has passed. A key already waiting keeps the earlier of its
    /// two deadlines.
    pub fn add_after(self: &Arc<Self>, key: K, delay: Duration) {
        if delay.is_zero() {
            return self.add(key);
        }
        let deadline = Instant::now() + delay;
        let mut q = self.inner.lock().expect("queue lock");
        if q.waiting.get(&key).is_some_and(|d| *d <= deadline) {
            return;
        }
        q.waiting.insert(key.clone(), deadline);
        let id = q.next_timer;
        q.next_timer += 1;
        q.timers.push(Reverse((deadline, id)));
        q.timer_keys.insert(id, key);
        let start = !std::mem::replace(&mut q.timer_running, true);
        drop(q);
        if start {
            tokio::spawn(Self::run_timers(Arc::downgrade(self), self.timer.clone()));
        } else {
            self.timer.notify_one();
        }
    }

    /// Moves due keys into the queue; sleeps until the next deadline or an earlier one comes.
    async fn run_timers(queue: Weak<Self>, wake: Arc<Notify>) {
        loop {
            let next = {
                let Some(queue) = queue.upgrade() else { return };
                let now = Instant::now();
                let mut due = Vec::new();
                let next = {
                    let mut q = queue.inner.lock().expect("queue lock");
                    while let Some(Reverse((deadline, id))) = q.timers.peek().copied() {
                        if deadline > now {
                            break;
                        }
                        q.timers.pop();
                        let Some(key) = q.timer_keys.remove(&id) else { continue };
                        if q.waiting.get(&key) == Some(&deadline) {
                            q.waiting.remove(&key);
                            due.push(key);
                        }
                    }
                    q.timers.peek().map(|Reverse((d, _))| *d)
                };
                for key in due {
                    queue.add(key);
                }
                next
            };
            match next {
                Some(at) => {
                    tokio::select! {
                        _ = tokio::time::sleep_until(at) => {}
                        _ = wake.notified() => {}
                    }
                }
                None => wake.notified().await,
            }
        }
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
            if let Some(k) = self.try_get() {
                return k;
            }
            notified.await;
        }
    }

    /// The next key if one is ready now, as [`WorkQueue::get`] (a caller that orders keys
    /// itself, such as the scheduler's priority queue, drains what is ready).
    pub fn try_get(&self) -> Option<K> {
        let mut q = self.inner.lock().expect("queue lock");
        let k = q.queue.pop_front()?;
        q.dirty.remove(&k);
        q.processing.insert(k.clone());
        let now = Instant::now();
        if let Some(added) = q.since.insert(k.clone(), now) {
            QUEUE_DURATION.with_label_values(&[self.name]).observe((now - added).as_secs_f64());
        }
        QUEUE_DEPTH.with_label_values(&[self.name]).set(q.queue.len() as i64);
        if !q.queue.is_empty() {
            self.notify.notify_one();
        }
        Some(k)
    }

    pub fn done(&self, key: &K) {
        let mut q = self.inner.lock().expect("queue lock");
        q.processing.remove(key);
        let now = Instant::now();
        if let Some(taken) = q.since.remove(key) {
            WORK_DURATION.with_label_values(&[self.name]).observe((now - taken).as_secs_f64());
        }
        if q.dirty.contains(key) {
            q.since.insert(key.clone(), now);
            q.queue.push_back(key.clone());
            QUEUE_DEPTH.with_label_values(&[self.name]).set(q.queue.len() as i64);
            drop(q);
            self.notify.notify_one();
        }
    }

    /// Keys ready to be worked on.
    pub fn len(&self) -> usize {
        self.inner.lock().expect("queue lock").queue.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Keys waiting for a deadline.
    pub fn waiting(&self) -> usize {
        self.inner.lock().expect("queue lock").waiting.len()
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

    #[tokio::test(start_paused = true)]
    async fn delayed_adds_keep_one_timer_per_key_with_the_earliest_deadline() {
        let q = WorkQueue::new("t3");
        for _ in 0..1000 {
            q.add_after("k", Duration::from_secs(10));
        }
        q.add_after("k", Duration::from_secs(5));
        q.add_after("k", Duration::from_secs(30));
        assert_eq!(q.waiting(), 1);
        tokio::time::sleep(Duration::from_secs(4)).await;
        assert!(q.is_empty());
        tokio::time::sleep(Duration::from_secs(2)).await;
        assert_eq!(q.len(), 1);
        assert_eq!(q.get().await, "k");
        q.done(&"k");
        assert_eq!(q.waiting(), 0);
        // The superseded deadlines fire nothing.
        tokio::time::sleep(Duration::from_secs(60)).await;
        assert!(q.is_empty());
        // Other keys keep their own deadlines.
        q.add_after("a", Duration::from_secs(2));
        q.add_after("b", Duration::from_secs(1));
        tokio::time::sleep(Duration::from_millis(1500)).await;
        assert_eq!(q.get().await, "b");
        tokio::time::sleep(Duration::from_secs(1)).await;
        assert_eq!(q.get().await, "a");
    }
}
