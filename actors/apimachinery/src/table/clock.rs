//! Timestamps and the human-readable durations used by the AGE-like columns.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::Value;

const NANOS_PER_SECOND: i128 = 1_000_000_000;
const NANOS_PER_MINUTE: i128 = 60 * NANOS_PER_SECOND;
const NANOS_PER_HOUR: i128 = 60 * NANOS_PER_MINUTE;
const SECONDS_PER_DAY: i64 = 86_400;

/// Unix seconds of Go's zero `time.Time` (0001-01-01T00:00:00Z). Upstream
/// treats that instant as "unset", so it is handled like a missing field.
const GO_ZERO_UNIX_SECONDS: i64 = -62_135_596_800;

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

/// Parses an RFC 3339 timestamp of the form
/// `YYYY-MM-DDTHH:MM:SS[.fraction](Z|±HH:MM)`, which covers both
/// `metav1.Time` and `metav1.MicroTime` as serialised by Kubernetes.
pub fn parse_rfc3339(s: &str) -> Option<SystemTime> {
    let b = s.as_bytes();
    if b.len() < 20 || b[4] != b'-' || b[7] != b'-' || !matches!(b[10], b'T' | b't') || b[13] != b':' || b[16] != b':' {
        return None;
    }
    let year = digits(&b[0..4])?;
    let month = digits(&b[5..7])?;
    let day = digits(&b[8..10])?;
    let hour = digits(&b[11..13])?;
    let minute = digits(&b[14..16])?;
    let second = digits(&b[17..19])?;
    if !(1..=12).contains(&month)
        || day < 1
        || day > days_in_month(year, month)
        || hour > 23
        || minute > 59
        || second > 59
    {
        return None;
    }

    let mut pos = 19;
    let mut nanos: i64 = 0;
    if b[pos] == b'.' {
        pos += 1;
        let start = pos;
        while pos < b.len() && b[pos].is_ascii_digit() {
            // Digits past nanosecond precision carry no information.
            if pos - start < 9 {
                nanos = nanos * 10 + i64::from(b[pos] - b'0');
            }
            pos += 1;
        }
        let len = pos - start;
        if len == 0 {
            return None;
        }
        for _ in len..9 {
            nanos *= 10;
        }
    }

    let offset_seconds = match b.get(pos)? {
        b'Z' | b'z' if pos + 1 == b.len() => 0,
        sign @ (b'+' | b'-') if pos + 6 == b.len() && b[pos + 3] == b':' => {
            let oh = digits(&b[pos + 1..pos + 3])?;
            let om = digits(&b[pos + 4..pos + 6])?;
            if oh > 23 || om > 59 {
                return None;
            }
            let off = oh * 3600 + om * 60;
            if *sign == b'-' {
                -off
            } else {
                off
            }
        }
        _ => return None,
    };

    let days = days_from_civil(year, month, day);
    let secs = days * SECONDS_PER_DAY + hour * 3600 + minute * 60 + second - offset_seconds;
    from_unix(secs, nanos as u32)
}

/// Formats an instant as RFC 3339 in UTC with whole seconds, the way Go's
/// `time.RFC3339` layout prints it (`2024-05-01T12:00:00Z`).
pub fn format_rfc3339(t: SystemTime) -> String {
    let secs = unix_seconds_floor(t);
    let days = secs.div_euclid(SECONDS_PER_DAY);
    let rem = secs.rem_euclid(SECONDS_PER_DAY);
    let (y, m, d) = civil_from_days(days);
    format!("{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z", rem / 3600, rem % 3600 / 60, rem % 60)
}

/// RFC 3339 with microseconds (`metav1.MicroTime`, as Leases and events.k8s.io use).
pub fn format_rfc3339_micro(t: SystemTime) -> String {
    let micros = t.duration_since(SystemTime::UNIX_EPOCH).map(|d| d.subsec_micros()).unwrap_or(0);
    format!("{}.{micros:06}Z", format_rfc3339(t).trim_end_matches('Z'))
}

/// Reads an RFC 3339 timestamp field; a missing, null, malformed or Go-zero
/// value is `None`, matching upstream's `IsZero()` checks.
pub(super) fn time_at(obj: &Value, key: &str) -> Option<SystemTime> {
    let t = parse_rfc3339(obj.get(key)?.as_str()?)?;
    (Some(t) != from_unix(GO_ZERO_UNIX_SECONDS, 0)).then_some(t)
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

fn digits(b: &[u8]) -> Option<i64> {
    b.iter().try_fold(0i64, |acc, &c| c.is_ascii_digit().then(|| acc * 10 + i64::from(c - b'0')))
}

fn is_leap(y: i64) -> bool {
    (y % 4 == 0 && y % 100 != 0) || y % 400 == 0
}

fn days_in_month(y: i64, m: i64) -> i64 {
    match m {
        2 if is_leap(y) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Days since 1970-01-01 of a proleptic Gregorian date, counted in 400-year
/// cycles that start on March 1st so the leap day falls at the end.
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let year_of_era = y - era * 400;
    let month_from_march = (m + 9) % 12;
    let day_of_year = (153 * month_from_march + 2) / 5 + d - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    era * 146_097 + day_of_era - 719_468
}

/// Inverse of [`days_from_civil`].
fn civil_from_days(days: i64) -> (i64, i64, i64) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let day_of_era = z - era * 146_097;
    let year_of_era = (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let month_from_march = (5 * day_of_year + 2) / 153;
    let d = day_of_year - (153 * month_from_march + 2) / 5 + 1;
    let m = if month_from_march < 10 { month_from_march + 3 } else { month_from_march - 9 };
    let y = year_of_era + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

fn from_unix(secs: i64, nanos: u32) -> Option<SystemTime> {
    if secs >= 0 {
        UNIX_EPOCH.checked_add(Duration::new(secs.unsigned_abs(), nanos))
    } else {
        UNIX_EPOCH
            .checked_sub(Duration::from_secs(secs.unsigned_abs()))?
            .checked_add(Duration::from_nanos(u64::from(nanos)))
    }
}

fn unix_seconds_floor(t: SystemTime) -> i64 {
    match t.duration_since(UNIX_EPOCH) {
        Ok(d) => i64::try_from(d.as_secs()).unwrap_or(i64::MAX),
        Err(e) => {
            let d = e.duration();
            let whole = i64::try_from(d.as_secs()).unwrap_or(i64::MAX);
            -whole - i64::from(d.subsec_nanos() > 0)
        }
    }
}
