//! RFC 3339 formatting of Unix timestamps (UTC), as Go's `metav1.Time` and
//! `metav1.MicroTime` marshal to JSON.

/// Unix seconds of Go's zero `time.Time` (0001-01-01T00:00:00Z), which
/// `metav1.Time` marshals as JSON `null`.
pub(crate) const GO_ZERO_TIME_SECONDS: i64 = -62_135_596_800;

/// Formats `seconds` (+ optional microseconds) since the Unix epoch as
/// `YYYY-MM-DDTHH:MM:SSZ` or `YYYY-MM-DDTHH:MM:SS.ffffffZ`.
/// Returns `None` when the year is outside 0000..=9999 (not valid RFC 3339;
/// Go refuses to marshal such times too).
pub(crate) fn format_rfc3339(seconds: i64, micros: Option<u32>) -> Option<String> {
    let days = seconds.div_euclid(86_400);
    let secs_of_day = seconds.rem_euclid(86_400);
    let (year, month, day) = civil_from_days(days);
    if !(0..=9999).contains(&year) {
        return None;
    }
    let (h, m, s) = (secs_of_day / 3600, secs_of_day / 60 % 60, secs_of_day % 60);
    Some(match micros {
        None => format!("{year:04}-{month:02}-{day:02}T{h:02}:{m:02}:{s:02}Z"),
        Some(us) => format!("{year:04}-{month:02}-{day:02}T{h:02}:{m:02}:{s:02}.{us:06}Z"),
    })
}

/// Converts days since 1970-01-01 into a proleptic Gregorian (year, month, day),
/// using 400-year eras of 146097 days counted from 0000-03-01.
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468; // days since 0000-03-01
    let era = z.div_euclid(146_097);
    let day_of_era = z.rem_euclid(146_097); // 0..=146096
    let year_of_era = (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let mp = (5 * day_of_year + 2) / 153; // month counted from March
    let day = (day_of_year - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = year_of_era + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_known_instants() {
        assert_eq!(format_rfc3339(0, None).unwrap(), "1970-01-01T00:00:00Z");
        assert_eq!(format_rfc3339(1_700_000_000, None).unwrap(), "2023-11-14T22:13:20Z");
        // Leap day.
        assert_eq!(format_rfc3339(951_782_400, None).unwrap(), "2000-02-29T00:00:00Z");
        assert_eq!(format_rfc3339(-1, Some(999_999)).unwrap(), "1969-12-31T23:59:59.999999Z");
        assert_eq!(format_rfc3339(GO_ZERO_TIME_SECONDS, None).unwrap(), "0001-01-01T00:00:00Z");
        assert_eq!(format_rfc3339(253_402_300_799, None).unwrap(), "9999-12-31T23:59:59Z");
        assert_eq!(format_rfc3339(253_402_300_800, None), None);
        assert_eq!(format_rfc3339(i64::MIN, None), None);
        assert_eq!(format_rfc3339(i64::MAX, None), None);
    }
}
