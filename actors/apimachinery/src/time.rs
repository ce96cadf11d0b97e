//! Timestamps as the API spells them: `metav1.Time` (RFC 3339, whole seconds) and
//! `metav1.MicroTime` (microseconds), read and written through chrono, the crate k8s-openapi's
//! own `Time` wraps.

use chrono::{DateTime, SecondsFormat, Utc};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, Time};
use std::time::SystemTime;

/// Parses an RFC 3339 timestamp (any offset, any fraction); `None` if it is not one. The date
/// and time are joined by a `T`, as Go's `time.RFC3339` layout insists (chrono also takes a
/// space).
pub fn parse_rfc3339(s: &str) -> Option<SystemTime> {
    if !matches!(s.as_bytes().get(10), Some(b'T' | b't')) {
        return None;
    }
    DateTime::parse_from_rfc3339(s).ok().map(|t| SystemTime::from(t.with_timezone(&Utc)))
}

/// `2024-05-01T12:00:00Z`: UTC, whole seconds, as Go's `time.RFC3339` prints `metav1.Time`.
pub fn format_rfc3339(t: SystemTime) -> String {
    DateTime::<Utc>::from(t).to_rfc3339_opts(SecondsFormat::Secs, true)
}

/// `2024-05-01T12:00:00.123456Z`: `metav1.MicroTime`, as Leases and events.k8s.io use it.
pub fn format_rfc3339_micro(t: SystemTime) -> String {
    DateTime::<Utc>::from(t).to_rfc3339_opts(SecondsFormat::Micros, true)
}

/// A `metav1.Time` of this instant, truncated to whole seconds as the API stores it (so a
/// value written and read back compares equal).
pub fn time(t: SystemTime) -> Time {
    let secs = DateTime::<Utc>::from(t).timestamp();
    Time(DateTime::from_timestamp(secs, 0).unwrap_or_default())
}

/// `metav1.Time` of now.
pub fn now() -> Time {
    time(SystemTime::now())
}

/// A `metav1.MicroTime` of this instant, truncated to microseconds.
pub fn micro_time(t: SystemTime) -> MicroTime {
    let t = DateTime::<Utc>::from(t);
    let micros = t.timestamp_micros();
    MicroTime(DateTime::from_timestamp_micros(micros).unwrap_or_default())
}

/// The instant of a `metav1.Time`.
pub fn system_time(t: &Time) -> SystemTime {
    SystemTime::from(t.0)
}

/// The instant of a `metav1.MicroTime`.
pub fn system_micro_time(t: &MicroTime) -> SystemTime {
    SystemTime::from(t.0)
}

/// A duration as Go's `time.ParseDuration` reads it (`15s`, `1m30s`, `1.5h`, `250ms`), the
/// format upstream's command-line flags take.
pub fn parse_go_duration(s: &str) -> Result<std::time::Duration, String> {
    let invalid = || format!("time: invalid duration {s:?}");
    if s == "0" {
        return Ok(std::time::Duration::ZERO);
    }
    if s.is_empty() || s.starts_with('-') {
        return Err(invalid());
    }
    let mut rest = s.strip_prefix('+').unwrap_or(s);
    let mut total = 0f64;
    while !rest.is_empty() {
        let number_end = rest.find(|c: char| !c.is_ascii_digit() && c != '.').unwrap_or(rest.len());
        let unit_end =
            rest[number_end..].find(|c: char| c.is_ascii_digit() || c == '.').map_or(rest.len(), |i| number_end + i);
        let number: f64 = rest[..number_end].parse().map_err(|_| invalid())?;
        let seconds = match &rest[number_end..unit_end] {
            "ns" => 1e-9,
            "us" | "\u{b5}s" | "\u{3bc}s" => 1e-6,
            "ms" => 1e-3,
            "s" => 1.0,
            "m" => 60.0,
            "h" => 3600.0,
            "" => return Err(format!("time: missing unit in duration {s:?}")),
            unit => return Err(format!("time: unknown unit {unit:?} in duration {s:?}")),
        };
        total += number * seconds;
        rest = &rest[unit_end..];
    }
    std::time::Duration::try_from_secs_f64(total).map_err(|_| invalid())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, UNIX_EPOCH};

    #[test]
    fn reads_what_kubernetes_writes() {
        let t = parse_rfc3339("2024-05-01T12:00:00Z").unwrap();
        assert_eq!(t, UNIX_EPOCH + Duration::from_secs(1_714_564_800));
        assert_eq!(parse_rfc3339("2024-05-01T14:00:00+02:00"), Some(t));
        let micro = parse_rfc3339("2024-05-01T12:00:00.123456Z").unwrap();
        assert_eq!(micro.duration_since(t).unwrap(), Duration::from_micros(123_456));
        assert_eq!(
            parse_rfc3339("2024-05-01T12:00:00.123456789Z").unwrap().duration_since(t).unwrap().as_nanos(),
            123_456_789
        );
        for bad in [
            "",
            "2024-05-01",
            "2024-05-01 12:00:00Z",
            "2024-13-01T00:00:00Z",
            "2024-02-30T00:00:00Z",
            "2024-05-01T12:00:00",
        ] {
            assert_eq!(parse_rfc3339(bad), None, "{bad}");
        }
    }

    #[test]
    fn writes_what_kubernetes_reads() {
        let t = UNIX_EPOCH + Duration::from_micros(1_714_564_800_123_456);
        assert_eq!(format_rfc3339(t), "2024-05-01T12:00:00Z");
        assert_eq!(format_rfc3339_micro(t), "2024-05-01T12:00:00.123456Z");
        assert_eq!(format_rfc3339(UNIX_EPOCH), "1970-01-01T00:00:00Z");
        assert_eq!(system_time(&time(t)), UNIX_EPOCH + Duration::from_secs(1_714_564_800));
        assert_eq!(system_micro_time(&micro_time(t)), t);
        let json = serde_json::to_value(time(t)).unwrap();
        assert_eq!(json, "2024-05-01T12:00:00Z");
    }

    #[test]
    fn go_durations_as_upstream_flags_take_them() {
        assert_eq!(parse_go_duration("15s"), Ok(Duration::from_secs(15)));
        assert_eq!(parse_go_duration("1m30s"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_go_duration("1.5h"), Ok(Duration::from_secs(5400)));
        assert_eq!(parse_go_duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_go_duration("0"), Ok(Duration::ZERO));
        assert_eq!(parse_go_duration("15"), Err("time: missing unit in duration \"15\"".into()));
        assert_eq!(parse_go_duration("2d"), Err("time: unknown unit \"d\" in duration \"2d\"".into()));
        assert!(parse_go_duration("-1s").is_err() && parse_go_duration("").is_err() && parse_go_duration("s").is_err());
    }
}
