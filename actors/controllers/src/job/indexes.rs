//! Completion indexes of an Indexed Job: the set `status.completedIndexes` writes as ordered
//! intervals ("1,3-5,7"), and the index each pod carries.

use k8s_openapi::api::core::v1::Pod;
use kubus_apimachinery::ObjectExt;
use std::collections::BTreeSet;

/// The annotation (and label) holding a pod's completion index.
pub const COMPLETION_INDEX: &str = "batch.kubernetes.io/job-completion-index";

/// Parses "1,3-5" into its indexes, ignoring what does not parse or lies at or past `limit`
/// (a status written by someone else must not make the controller allocate without bound).
pub fn parse(s: &str, limit: i64) -> BTreeSet<i64> {
    let mut out = BTreeSet::new();
    for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let (a, b) = match part.split_once('-') {
            Some((a, b)) => (a.parse::<i64>(), b.parse::<i64>()),
            None => (part.parse::<i64>(), part.parse::<i64>()),
        };
        if let (Ok(a), Ok(b)) = (a, b) {
            out.extend((a.max(0)..=b.min(limit - 1)).take(limit.max(0) as usize));
        }
    }
    out
}

/// Formats indexes as ordered intervals.
pub fn format(set: &BTreeSet<i64>) -> String {
    let mut parts: Vec<String> = Vec::new();
    let mut iter = set.iter().copied().peekable();
    while let Some(start) = iter.next() {
        let mut end = start;
        while iter.peek() == Some(&(end + 1)) {
            end = iter.next().unwrap_or(end);
        }
        parts.push(if start == end { start.to_string() } else { format!("{start}-{end}") });
    }
    parts.join(",")
}

/// The completion index of a pod, if it carries a valid one below `completions`.
pub fn of_pod(pod: &Pod, completions: i64) -> Option<i64> {
    pod.annotations().get(COMPLETION_INDEX)?.parse().ok().filter(|i| (0..completions).contains(i))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn intervals_round_trip() {
        let set = parse("0,2-4,7,8", 10);
        assert_eq!(set.iter().copied().collect::<Vec<_>>(), [0, 2, 3, 4, 7, 8]);
        assert_eq!(format(&set), "0,2-4,7-8");
        assert_eq!(format(&BTreeSet::new()), "");
        // Out of range and junk are dropped.
        assert_eq!(format(&parse("x,3-99,1", 5)), "1,3-4");
        assert_eq!(parse("0-1000000000", 3).len(), 3);
    }
}
