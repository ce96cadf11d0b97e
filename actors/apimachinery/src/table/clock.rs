//! Timestamps and the human-readable durations used by the AGE-like columns.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::Value;

pub use crate::time::{format_rfc3339, parse_rfc3339};

const NANOS_PER_SECOND: i128 = 1_000_000_000;
const NANOS_PER_MINUTE: i128 = 60 * NANOS_PER_SECOND;
const NANOS_PER_HOUR: i128 = 60 * NANOS_PER_MINUTE;

/// Seconds from Go's zero `time.Time` (0001-01-01T00:00:00Z) to the Unix epoch. Upstream
/// treats that instant as "unset", so it is handled like a missing field.
const GO_ZERO_SECONDS_BEFORE_UNIX: u64 = 62_135_596_800;

/// Renders a duration the way upstream `duration.HumanDuration` does:
/// roughly two or three significant figures, e.g. `45s`, `2m3s`, `10m`,
/// `5h`, `3d4h`, `2y`.
pub fn human_duration(d: Duration) -> String {
    human_nanos(i128::try_from(d.as_nanos()).unwrap_or(i128::MAX))
}

/// Same as [`human_duration`] for a signed span. Up to two seconds in the
/// future still counts as "now" (clock skew between hosts); anything further
/// is reported as `<invalid>`, as upstream does.
pub(super) fn human_nanos(nanos: i128) -> String {
    // Go truncates towards zero when converting the seconds to int.
    let seconds = nanos / NANOS_PER_SECOND;
    if seconds < -1 {
        return "<invalid>".to_string();
    }
    if seconds < 0 {
        return "0s".to_string();
    }
    if seconds < 60 * 2 {
        return format!("{seconds}s");
    }
    let minutes = nanos / NANOS_PER_MINUTE;
    if minutes < 10 {
        let s = seconds % 60;
        return if s == 0 { format!("{minutes}m") } else { format!("{minutes}m{s}s") };
    }
    if minutes < 60 * 3 {
        return format!("{minutes}m");
    }
    let hours = nanos / NANOS_PER_HOUR;
    if hours < 8 {
        let m = minutes % 60;
        return if m == 0 { format!("{hours}h") } else { format!("{hours}h{m}m") };
    }
    if hours < 48 {
        return format!("{hours}h");
    }
    let days = hours / 24;
    if hours < 24 * 8 {
        let h = hours % 24;
        return if h == 0 { format!("{days}d") } else { format!("{days}d{h}h") };
    }
    if hours < 24 * 365 * 2 {
        return format!("{days}d");
    }
    let years = days / 365;
    if hours < 24 * 365 * 8 {
        let dy = days % 365;
        return if dy == 0 { format!("{years}y") } else { format!("{years}y{dy}d") };
    }
    format!("{years}y")
}

/// Reads an RFC 3339 timestamp field; a missing, null, malformed or Go-zero
/// value is `None`, matching upstream's `IsZero()` checks.
pub(super) fn time_at(obj: &Value, key: &str) -> Option<SystemTime> {
    let t = parse_rfc3339(obj.get(key)?.as_str()?)?;
    (Some(t) != UNIX_EPOCH.checked_sub(Duration::from_secs(GO_ZERO_SECONDS_BEFORE_UNIX))).then_some(t)
}

/// Upstream `translateTimestampSince`: elapsed time since `t`, or
/// `<unknown>` when the timestamp is unset.
pub(super) fn since(now: SystemTime, t: Option<SystemTime>) -> String {
    match t {
        Some(t) => human_nanos(signed_nanos(now, t)),
        None => "<unknown>".to_string(),
    }
}

fn signed_nanos(now: SystemTime, then: SystemTime) -> i128 {
    let nanos = |d: Duration| i128::try_from(d.as_nanos()).unwrap_or(i128::MAX);
    match now.duration_since(then) {
        Ok(d) => nanos(d),
        Err(e) => -nanos(e.duration()),
    }
}
