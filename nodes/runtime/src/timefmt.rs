//! Timestamps as Go's RFC3339Nano prints them (UTC, trailing zeros of the fraction dropped), the
//! format of CRI log lines and of Kubernetes times.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

pub(crate) fn format_rfc3339_nano(t: SystemTime) -> String {
    let dt = OffsetDateTime::from(t);
    let mut s = format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}",
        dt.year(),
        u8::from(dt.month()),
        dt.day(),
        dt.hour(),
        dt.minute(),
        dt.second()
    );
    let nanos = dt.nanosecond();
    if nanos != 0 {
        let frac = format!("{nanos:09}");
        s.push('.');
        s.push_str(frac.trim_end_matches('0'));
    }
    s.push('Z');
    s
}

pub(crate) fn parse_rfc3339(s: &str) -> Option<SystemTime> {
    let dt = OffsetDateTime::parse(s, &Rfc3339).ok()?;
    let nanos = dt.unix_timestamp_nanos();
    if nanos >= 0 {
        Some(UNIX_EPOCH + Duration::from_nanos(u64::try_from(nanos).ok()?))
    } else {
        UNIX_EPOCH.checked_sub(Duration::from_nanos(u64::try_from(-nanos).ok()?))
    }
}

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
}
