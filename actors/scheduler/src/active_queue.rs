//! The scheduler's activeQ: pods ready for a scheduling attempt, highest priority first and,
//! within a priority, in the order they became ready (upstream's PrioritySort). The work
//! queue in front of it deduplicates, holds pods through their backoff and never hands a pod
//! out twice; the scheduling loop drains what is ready into this heap and pops the top.

use kubus_apimachinery::ObjectKey;
use std::cmp::Ordering;
use std::collections::BinaryHeap;

#[derive(Debug, PartialEq, Eq)]
struct Entry {
    priority: i32,
    /// When it became ready, as a sequence number.
    seq: u64,
    key: ObjectKey,
}

impl Ord for Entry {
    fn cmp(&self, other: &Self) -> Ordering {
        self.priority.cmp(&other.priority).then_with(|| other.seq.cmp(&self.seq))
    }
}

impl PartialOrd for Entry {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

#[derive(Debug, Default)]
pub struct ActiveQueue {
    heap: BinaryHeap<Entry>,
    seq: u64,
}

impl ActiveQueue {
    pub fn push(&mut self, key: ObjectKey, priority: i32) {
        self.seq += 1;
        self.heap.push(Entry { priority, seq: self.seq, key });
    }

    /// The most important pod: highest priority, then the longest ready.
    pub fn pop(&mut self) -> Option<ObjectKey> {
        self.heap.pop().map(|e| e.key)
    }

    pub fn len(&self) -> usize {
        self.heap.len()
    }

    pub fn is_empty(&self) -> bool {
        self.heap.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(name: &str) -> ObjectKey {
        ("default".to_string(), name.to_string())
    }

    #[test]
    fn higher_priority_first_then_first_ready() {
        let mut q = ActiveQueue::default();
        q.push(key("low-1"), 0);
        q.push(key("low-2"), 0);
        q.push(key("high"), 1000);
        q.push(key("negative"), -5);
        q.push(key("low-3"), 0);
        q.push(key("critical"), 2_000_000_000);
        let order: Vec<String> = std::iter::from_fn(|| q.pop()).map(|k| k.1).collect();
        assert_eq!(order, ["critical", "high", "low-1", "low-2", "low-3", "negative"]);
        assert!(q.is_empty());
    }
}
