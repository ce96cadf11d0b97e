//! Timestamps as Go's RFC3339Nano prints them (UTC, trailing zeros of the fraction dropped), the
//! format of CRI log lines and of Kubernetes times. Read and written through chrono, as
//! `kubus_apimachinery::time` does for API times.

use std::time::SystemTime;

use chrono::{DateTime, SecondsFormat, Utc};

pub(crate) fn format_rfc3339_nano(t: SystemTime) -> String {
    // chrono prints all nine digits; Go drops the trailing zeros (and the dot with the last).
    let mut s = DateTime::<Utc>::from(t).to_rfc3339_opts(SecondsFormat::Nanos, true);
    s.pop();
    let keep = s.trim_end_matches('0').trim_end_matches('.').len();
    s.truncate(keep);
    s.push('Z');
    s
}

pub(crate) use kubus_apimachinery::time::parse_rfc3339;

/// serde helper: `SystemTime` as an RFC3339Nano string (readable in `exit.json`, same in bincode).
pub(crate) mod rfc3339 {
    use std::time::SystemTime;

    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(t: &SystemTime, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&super::format_rfc3339_nano(*t))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<SystemTime, D::Error> {
        let s = String::deserialize(d)?;
        super::parse_rfc3339(&s).ok_or_else(|| serde::de::Error::custom(format!("bad RFC3339 time {s:?}")))
    }
}

pub(crate) mod rfc3339_opt {
    use std::time::SystemTime;

    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(t: &Option<SystemTime>, s: S) -> Result<S::Ok, S::Error> {
        match t {
            Some(t) => s.serialize_some(&super::format_rfc3339_nano(*t)),
            None => s.serialize_none(),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<SystemTime>, D::Error> {
        match Option::<String>::deserialize(d)? {
            Some(s) => super::parse_rfc3339(&s)
                .map(Some)
                .ok_or_else(|| serde::de::Error::custom(format!("bad RFC3339 time {s:?}"))),
            None => Ok(None),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, UNIX_EPOCH};

    use super::*;

    #[test]
    fn go_rfc3339nano() {
        let t = UNIX_EPOCH + Duration::new(1_700_000_000, 120_000_000);
        assert_eq!(format_rfc3339_nano(t), "2023-11-14T22:13:20.12Z");
        assert_eq!(format_rfc3339_nano(UNIX_EPOCH + Duration::from_secs(1)), "1970-01-01T00:00:01Z");
        let t = UNIX_EPOCH + Duration::new(1_700_000_000, 123_456_789);
        assert_eq!(parse_rfc3339(&format_rfc3339_nano(t)), Some(t));
        assert_eq!(
            parse_rfc3339("2023-11-14T23:13:20.12+01:00"),
            Some(UNIX_EPOCH + Duration::new(1_700_000_000, 120_000_000))
        );
        assert_eq!(parse_rfc3339("yesterday"), None);
    }

    #[test]
    fn fraction_keeps_leading_zeros_drops_trailing() {
        let at = |nanos| format_rfc3339_nano(UNIX_EPOCH + Duration::new(1_700_000_000, nanos));
        assert_eq!(at(0), "2023-11-14T22:13:20Z");
        assert_eq!(at(1), "2023-11-14T22:13:20.000000001Z");
        assert_eq!(at(100), "2023-11-14T22:13:20.0000001Z");
        assert_eq!(at(500_000_000), "2023-11-14T22:13:20.5Z");
        assert_eq!(at(999_999_999), "2023-11-14T22:13:20.999999999Z");
        assert_eq!(format_rfc3339_nano(UNIX_EPOCH + Duration::from_secs(10)), "1970-01-01T00:00:10Z");
        assert_eq!(format_rfc3339_nano(UNIX_EPOCH), "1970-01-01T00:00:00Z");
        for nanos in [0, 1, 10, 100_000, 123_456_789, 999_999_999] {
            let t = UNIX_EPOCH + Duration::new(1_700_000_000, nanos);
            assert_eq!(parse_rfc3339(&format_rfc3339_nano(t)), Some(t), "{nanos}");
        }
    }
}
