//! Percentiles of latency samples, as every bench reports them.

use std::time::Duration;

/// Nearest-rank percentile, in milliseconds, of sorted samples (NaN without samples).
pub(crate) fn pct(sorted: &[Duration], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i].as_secs_f64() * 1e3
}

/// The samples in ascending order, as [`pct`] wants them.
pub(crate) fn sorted(mut v: Vec<Duration>) -> Vec<Duration> {
    v.sort();
    v
}

/// One line of throughput and latency for `lat` samples taken in `wall`.
pub(crate) fn report(name: &str, mut lat: Vec<Duration>, wall: Duration) {
    lat.sort();
    println!(
        "{name:<28} {:>7} ops  {:>9.0} ops/s  p50 {:>7.3} ms  p99 {:>7.3} ms",
        lat.len(),
        lat.len() as f64 / wall.as_secs_f64(),
        pct(&lat, 0.5),
        pct(&lat, 0.99)
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_are_nearest_rank() {
        let v: Vec<Duration> = (1..=100).map(Duration::from_millis).collect();
        assert_eq!(pct(&v, 0.5), 51.0);
        assert_eq!(pct(&v, 0.99), 99.0);
        assert_eq!(pct(&v[..1], 0.99), 1.0);
        assert!(pct(&[], 0.5).is_nan());
    }
}
