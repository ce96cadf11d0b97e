//! CronJob schedules (batch/v1): parsing `spec.schedule` and `spec.timeZone` the way the API server
//! validates them, and the schedule arithmetic of upstream's CronJob controller.
//!
//! The grammar is robfig/cron v3's `ParseStandard`, which upstream uses in both places: five
//! fields (minute hour day-of-month month day-of-week), `*` or `?`, ranges, steps, lists, month
//! and weekday names, the descriptors `@yearly @annually @monthly @weekly @daily @midnight
//! @hourly`, and `@every <Go duration>`. As in Vixie cron and robfig, a restricted day-of-month
//! and a restricted day-of-week are OR-ed; if either starts with `*` they are AND-ed. Error
//! messages are robfig's and the API validation's, since they end up in 422 causes and Events.
//!
//! Times are evaluated in the CronJob's time zone (UTC when none is given; upstream uses the
//! controller manager's local zone there). Across a DST change:
//! - a local time that does not exist (spring forward) is skipped, as robfig does;
//! - a local time that happens twice (fall back) fires once, at its first occurrence, for a
//!   schedule whose minute and hour fields are both fixed; a schedule whose minute or hour field
//!   starts with `*` (e.g. `*/15 * * * *`, `@hourly`) fires at both occurrences, so it keeps its
//!   pace in real time. This is Vixie cron's rule; robfig fires fixed times twice.
//!
//! [`Schedule::most_recent`] and [`Schedule::next_schedule_time_duration`] are upstream's
//! `mostRecentScheduleTime` and `nextScheduleTimeDuration` (pkg/controller/cronjob/utils.go),
//! with the bounded work of the original but an exact answer for irregular schedules.

use chrono::{DateTime, Datelike, NaiveDate, NaiveDateTime, Offset, TimeDelta, TimeZone, Timelike, Utc};
use chrono_tz::Tz;
use std::time::Duration;

/// Slack added to a requeue so that it lands just after the schedule time, not just before it
/// on a clock that is slightly off (upstream's `nextScheduleDelta`).
pub const NEXT_SCHEDULE_DELTA: Duration = Duration::from_millis(100);

/// Above this many missed schedule times the controller warns `TooManyMissedTimes`.
pub const MAX_MISSED: u64 = 100;

/// How far ahead a search looks: a 29 February can be 8 years away (2096 to 2104).
const HORIZON_DAYS: i64 = 366 * 9;

/// robfig's marker bit for a field that was `*` or `?`, which switches dom/dow to AND.
const STAR: u64 = 1 << 63;

/// Why a schedule or time zone was refused, or why a valid one never fires. The Display text is
/// what the API server puts after `Invalid value: "...": ` and what Events carry.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ScheduleError {
    /// The schedule does not parse; the message is robfig/cron's.
    #[error("{0}")]
    Syntax(String),
    #[error("cannot use TZ or CRON_TZ in schedule, use timeZone field instead")]
    TzInSchedule,
    #[error("timeZone must be nil or non-empty string")]
    EmptyTimeZone,
    #[error("timeZone must be an explicit time zone as defined in https://www.iana.org/time-zones")]
    LocalTimeZone,
    #[error("unknown time zone {0}")]
    UnknownTimeZone(String),
    /// The schedule parses but names no real date (e.g. `0 0 30 2 *`). The API server accepts it;
    /// the controller reports it with upstream's words in an `InvalidSchedule` Event.
    #[error("time difference between two schedules is less than 1 second")]
    NeverFires,
}

impl ScheduleError {
    /// The field the error belongs to, as the API server's field path.
    pub fn field(&self) -> &'static str {
        match self {
            Self::EmptyTimeZone | Self::LocalTimeZone | Self::UnknownTimeZone(_) => "spec.timeZone",
            Self::Syntax(_) | Self::TzInSchedule | Self::NeverFires => "spec.schedule",
        }
    }
}

/// The schedule times that came due in `(earliest, now]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Missed {
    /// The latest schedule time in `(earliest, now]`: the one to start a Job for now.
    pub most_recent: Option<DateTime<Utc>>,
    /// How many schedule times fell in `(earliest, now]`, `most_recent` included. Exact up to
    /// [`MAX_MISSED`]; above it an estimate (at least `MAX_MISSED + 1`) from the interval between
    /// the first two, as upstream counts. Upstream's "none missed" is `count <= 1`.
    pub count: u64,
    /// `count > MAX_MISSED`: upstream's `manyMissed`, which makes the controller warn.
    pub too_many: bool,
}

/// A parsed `spec.schedule` in its `spec.timeZone`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Schedule {
    kind: Kind,
    tz: Tz,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Cron(Fields),
    /// `@every`: a fixed delay, in whole seconds, after whatever time it is asked about.
    Every(TimeDelta),
}

/// Bit sets of the matching values (bit n set: value n matches), without robfig's star bit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Fields {
    minute: u64,
    hour: u64,
    dom: u64,
    month: u64,
    dow: u64,
    /// Either day field was `*`/`?`: both day fields must match, else either may.
    days_and: bool,
    /// The minute or hour field starts with `*`/`?`: a repeated local time fires at both
    /// occurrences (Vixie cron's wildcard jobs).
    wildcard_time: bool,
    /// Some date of the calendar matches; otherwise the schedule never fires.
    satisfiable: bool,
}

impl Schedule {
    /// Parses `spec.schedule` and `spec.timeZone` as the API server validates them. Where upstream
    /// lists every problem, this returns the first: the schedule's, then the time zone's.
    pub fn parse(schedule: &str, time_zone: Option<&str>) -> Result<Schedule, ScheduleError> {
        // Upstream refuses any "TZ" in a new schedule, before and besides parsing it.
        if schedule.contains("TZ") {
            return Err(ScheduleError::TzInSchedule);
        }
        let kind = parse_spec(schedule).map_err(ScheduleError::Syntax)?;
        let tz = parse_time_zone(time_zone)?;
        Ok(Schedule { kind, tz })
    }

    /// The time zone the schedule is evaluated in (upstream formats the scheduled-timestamp
    /// annotation in it).
    pub fn time_zone(&self) -> Tz {
        self.tz
    }

    /// The first schedule time strictly after `t`, or None if the schedule never fires.
    pub fn next_after(&self, t: DateTime<Utc>) -> Option<DateTime<Utc>> {
        match &self.kind {
            // robfig: the delay counts from the whole second of t.
            Kind::Every(delay) => t.with_nanosecond(0)?.checked_add_signed(*delay),
            Kind::Cron(fields) => self.next_cron(fields, t),
        }
    }

    /// Upstream's `mostRecentScheduleTime`: the schedule times in `(earliest, now]`. `earliest` is
    /// `status.lastScheduleTime`, else the creation time, raised to `now - startingDeadlineSeconds`
    /// when that is later (see [`earliest_time`]). Costs at most about 170 `next_after` calls,
    /// however long the controller was away. Err only for a schedule that never fires.
    pub fn most_recent(&self, earliest: DateTime<Utc>, now: DateTime<Utc>) -> Result<Missed, ScheduleError> {
        let t1 = self.next_after(earliest).ok_or(ScheduleError::NeverFires)?;
        if now < t1 {
            return Ok(Missed::default());
        }
        if let Kind::Every(delay) = self.kind {
            // A fixed delay: count by division, as upstream does.
            let step = delay.num_seconds().max(1);
            let n = (now - t1).num_seconds() / step;
            let count = u64::try_from(n).unwrap_or(0) + 1;
            let most_recent =
                n.checked_mul(step).and_then(TimeDelta::try_seconds).and_then(|d| t1.checked_add_signed(d));
            return Ok(Missed { most_recent, count, too_many: count > MAX_MISSED });
        }
        // Walk forward while that stays cheap; the count is then exact.
        let (mut last, mut count) = (t1, 1u64);
        let mut t2 = None;
        while let Some(next) = self.next_after(last).filter(|n| *n <= now) {
            t2.get_or_insert(next);
            let prev = std::mem::replace(&mut last, next);
            count += 1;
            if count > MAX_MISSED {
                return Ok(self.many_missed(t1, t2.unwrap_or(next), prev, now));
            }
        }
        Ok(Missed { most_recent: Some(last), count, too_many: false })
    }

    /// More than [`MAX_MISSED`] times came due: estimate the count from the first interval, as
    /// upstream does, and find the latest time by bisection (some time is in `(lo, now]`).
    fn many_missed(&self, t1: DateTime<Utc>, t2: DateTime<Utc>, mut lo: DateTime<Utc>, now: DateTime<Utc>) -> Missed {
        let interval = (t2 - t1).num_seconds().max(1);
        let estimate = u64::try_from((now - t1).num_seconds() / interval).unwrap_or(0) + 1;
        let mut hi = now;
        while hi - lo > TimeDelta::seconds(1) {
            let mid = lo + (hi - lo) / 2;
            match self.next_after(mid) {
                Some(t) if t <= now => lo = mid,
                _ => hi = mid,
            }
        }
        Missed { most_recent: self.next_after(lo), count: estimate.max(MAX_MISSED + 1), too_many: true }
    }

    /// Upstream's `nextScheduleTimeDuration`: how long until the schedule time after the latest
    /// one that came due (or after `earliest` if none did), plus [`NEXT_SCHEDULE_DELTA`], for
    /// the controller to requeue. `earliest` is computed without the starting deadline, as
    /// upstream does here. None: the schedule never fires, there is nothing to wait for.
    pub fn next_schedule_time_duration(&self, earliest: DateTime<Utc>, now: DateTime<Utc>) -> Option<Duration> {
        let from = match self.most_recent(earliest, now) {
            Ok(Missed { most_recent: Some(t), .. }) => t,
            Ok(Missed { count: 0, .. }) => earliest,
            // Upstream aims at the next slot from now when it cannot say better.
            _ => now,
        };
        let next = self.next_after(from)?;
        Some((next - now).to_std().unwrap_or(Duration::ZERO) + NEXT_SCHEDULE_DELTA)
    }

    /// The next cron time after `t`: walk the local calendar from `t`'s local time and map each
    /// matching local time back to real time, skipping those that do not exist. Where local time
    /// runs backwards within a day after `t` (fall back), the walk starts that much earlier and
    /// keeps the earliest real time, since local order and real order then differ.
    fn next_cron(&self, fields: &Fields, t: DateTime<Utc>) -> Option<DateTime<Utc>> {
        if !fields.satisfiable {
            return None;
        }
        let tz = self.tz;
        let offset_at =
            |x: DateTime<Utc>| i64::from(tz.offset_from_utc_datetime(&x.naive_utc()).fix().local_minus_utc());
        let offset = offset_at(t);
        // Offsets sampled over the next day: no zone changes twice within six hours.
        let lowest =
            (1..=4).filter_map(|q| t.checked_add_signed(TimeDelta::hours(6 * q))).map(offset_at).fold(offset, i64::min);
        let back = TimeDelta::seconds(offset - lowest);
        let local = t.naive_utc().checked_add_signed(TimeDelta::seconds(offset))?;
        let horizon = local.checked_add_signed(TimeDelta::days(HORIZON_DAYS))?;
        let mut cursor = floor_minute(local.checked_sub_signed(back)?)?;
        let (mut best, mut stop): (Option<DateTime<Utc>>, Option<NaiveDateTime>) = (None, None);
        loop {
            let Some(n) = fields.next_local(cursor).filter(|n| *n <= horizon) else { return best };
            if stop.is_some_and(|s| n > s) {
                return best;
            }
            for x in resolve(tz, n, fields.wildcard_time).into_iter().flatten() {
                if x > t && best.is_none_or(|b| x < b) {
                    best = Some(x);
                }
            }
            if best.is_some() && stop.is_none() {
                if back.is_zero() {
                    return best;
                }
                stop = n.checked_add_signed(back);
            }
            cursor = n.checked_add_signed(TimeDelta::minutes(1))?;
        }
    }
}

/// Upstream's earliest time to look for missed schedules from: the last schedule time, else the
/// creation time; with a starting deadline, no earlier than `now - startingDeadlineSeconds`.
pub fn earliest_time(
    created: DateTime<Utc>,
    last_schedule: Option<DateTime<Utc>>,
    starting_deadline_seconds: Option<i64>,
    now: DateTime<Utc>,
) -> DateTime<Utc> {
    let earliest = last_schedule.unwrap_or(created);
    let deadline = starting_deadline_seconds.and_then(|s| now.checked_sub_signed(TimeDelta::try_seconds(s)?));
    match deadline {
        Some(d) if d > earliest => d,
        _ => earliest,
    }
}

/// The real times of a local time: none in a gap, the first only of a repeated one unless the
/// schedule is a wildcard one.
fn resolve(tz: Tz, n: NaiveDateTime, both: bool) -> [Option<DateTime<Utc>>; 2] {
    match tz.from_local_datetime(&n) {
        chrono::LocalResult::Single(x) => [Some(x.with_timezone(&Utc)), None],
        chrono::LocalResult::Ambiguous(a, b) => {
            let (a, b) = (a.with_timezone(&Utc), b.with_timezone(&Utc));
            [Some(a.min(b)), both.then_some(a.max(b))]
        }
        chrono::LocalResult::None => [None, None],
    }
}

fn floor_minute(n: NaiveDateTime) -> Option<NaiveDateTime> {
    n.with_second(0)?.with_nanosecond(0)
}

/// The first set bit at or above `from`.
fn first_bit(mask: u64, from: u32) -> Option<u32> {
    if from >= 64 {
        return None;
    }
    let rest = mask & (u64::MAX << from);
    (rest != 0).then(|| rest.trailing_zeros())
}

impl Fields {
    fn day_matches(&self, d: NaiveDate) -> bool {
        let dom = self.dom & (1 << d.day()) != 0;
        let dow = self.dow & (1 << d.weekday().num_days_from_sunday()) != 0;
        if self.days_and {
            dom && dow
        } else {
            dom || dow
        }
    }

    /// The first matching local time at or after `from` (a whole minute), within the horizon.
    fn next_local(&self, from: NaiveDateTime) -> Option<NaiveDateTime> {
        let (mut date, mut hour, mut minute) = (from.date(), from.hour(), from.minute());
        for _ in 0..HORIZON_DAYS {
            if self.month & (1 << date.month()) == 0 {
                date = NaiveDate::from_ymd_opt(date.year(), date.month(), 1)?
                    .checked_add_months(chrono::Months::new(1))?;
                (hour, minute) = (0, 0);
                continue;
            }
            if self.day_matches(date) {
                if let Some((h, m)) = self.time_at_or_after(hour, minute) {
                    return date.and_hms_opt(h, m, 0);
                }
            }
            date = date.succ_opt()?;
            (hour, minute) = (0, 0);
        }
        None
    }

    fn time_at_or_after(&self, hour: u32, minute: u32) -> Option<(u32, u32)> {
        let h = first_bit(self.hour, hour)?;
        if h == hour {
            if let Some(m) = first_bit(self.minute, minute) {
                return Some((h, m));
            }
            return Some((first_bit(self.hour, hour + 1)?, first_bit(self.minute, 0)?));
        }
        Some((h, first_bit(self.minute, 0)?))
    }

    fn new(minute: u64, hour: u64, dom: u64, month: u64, dow: u64, wildcard_time: bool) -> Fields {
        let mut f = Fields {
            minute: minute & !STAR,
            hour: hour & !STAR,
            dom: dom & !STAR,
            month: month & !STAR,
            dow: dow & !STAR,
            days_and: dom & STAR != 0 || dow & STAR != 0,
            wildcard_time,
            satisfiable: false,
        };
        // A leap year holds every (month, day) and (month, weekday) pair, so if no date of 2000
        // matches, none ever will.
        let dates = NaiveDate::from_ymd_opt(2000, 1, 1).map(|d| d.iter_days().take(366));
        let some_date = dates.into_iter().flatten().any(|d| f.month & (1 << d.month()) != 0 && f.day_matches(d));
        f.satisfiable = f.minute != 0 && f.hour != 0 && some_date;
        f
    }
}

/// The range of one field and its names (robfig's `bounds`).
struct Bounds {
    min: u64,
    max: u64,
    names: &'static [(&'static str, u64)],
}

const MINUTES: Bounds = Bounds { min: 0, max: 59, names: &[] };
const HOURS: Bounds = Bounds { min: 0, max: 23, names: &[] };
const DOM: Bounds = Bounds { min: 1, max: 31, names: &[] };
const MONTHS: Bounds = Bounds {
    min: 1,
    max: 12,
    names: &[
        ("jan", 1),
        ("feb", 2),
        ("mar", 3),
        ("apr", 4),
        ("may", 5),
        ("jun", 6),
        ("jul", 7),
        ("aug", 8),
        ("sep", 9),
        ("oct", 10),
        ("nov", 11),
        ("dec", 12),
    ],
};
const DOW: Bounds = Bounds {
    min: 0,
    max: 6,
    names: &[("sun", 0), ("mon", 1), ("tue", 2), ("wed", 3), ("thu", 4), ("fri", 5), ("sat", 6)],
};

/// robfig's `ParseStandard`, with its messages.
fn parse_spec(spec: &str) -> Result<Kind, String> {
    if spec.is_empty() {
        return Err("empty spec string".into());
    }
    if spec.starts_with('@') {
        return parse_descriptor(spec);
    }
    let fields: Vec<&str> = spec.split_whitespace().collect();
    if fields.len() != 5 {
        return Err(format!("expected exactly 5 fields, found {}: [{}]", fields.len(), fields.join(" ")));
    }
    let bits = [
        get_field(fields[0], &MINUTES)?,
        get_field(fields[1], &HOURS)?,
        get_field(fields[2], &DOM)?,
        get_field(fields[3], &MONTHS)?,
        get_field(fields[4], &DOW)?,
    ];
    let starred = |f: &str| f.split(',').any(|e| e.starts_with(['*', '?']));
    let wildcard = starred(fields[0]) || starred(fields[1]);
    Ok(Kind::Cron(Fields::new(bits[0], bits[1], bits[2], bits[3], bits[4], wildcard)))
}

fn parse_descriptor(spec: &str) -> Result<Kind, String> {
    let all = |b: &Bounds| bits(b.min, b.max, 1) | STAR;
    let fields = match spec {
        "@yearly" | "@annually" => Fields::new(1, 1, 1 << 1, 1 << 1, all(&DOW), false),
        "@monthly" => Fields::new(1, 1, 1 << 1, all(&MONTHS), all(&DOW), false),
        "@weekly" => Fields::new(1, 1, all(&DOM), all(&MONTHS), 1, false),
        "@daily" | "@midnight" => Fields::new(1, 1, all(&DOM), all(&MONTHS), all(&DOW), false),
        "@hourly" => Fields::new(1, all(&HOURS), all(&DOM), all(&MONTHS), all(&DOW), true),
        _ => {
            let Some(text) = spec.strip_prefix("@every ") else {
                return Err(format!("unrecognized descriptor: {spec}"));
            };
            let (negative, nanos) =
                parse_go_duration(text).map_err(|e| format!("failed to parse duration {spec}: {e}"))?;
            // robfig: at least one second, truncated to whole seconds.
            let secs = if negative { 0 } else { nanos / 1_000_000_000 };
            let secs = i64::try_from(secs.max(1)).unwrap_or(i64::MAX);
            return Ok(Kind::Every(TimeDelta::try_seconds(secs).unwrap_or(TimeDelta::MAX)));
        }
    };
    Ok(Kind::Cron(fields))
}

fn get_field(field: &str, b: &Bounds) -> Result<u64, String> {
    // Like Go's FieldsFunc: empty list items are dropped, not refused.
    field.split(',').filter(|e| !e.is_empty()).try_fold(0, |acc, expr| Ok(acc | get_range(expr, b)?))
}

/// One list item: `*`, `?`, `N`, `N-M` or a name, optionally `/step` (robfig's `getRange`).
fn get_range(expr: &str, b: &Bounds) -> Result<u64, String> {
    let range_and_step: Vec<&str> = expr.split('/').collect();
    let low_and_high: Vec<&str> = range_and_step[0].split('-').collect();
    let (start, mut end, mut extra);
    if low_and_high[0] == "*" || low_and_high[0] == "?" {
        // robfig ignores whatever follows a star's hyphen.
        (start, end, extra) = (b.min, b.max, STAR);
    } else {
        start = parse_int_or_name(low_and_high[0], b)?;
        end = match low_and_high.len() {
            1 => start,
            2 => parse_int_or_name(low_and_high[1], b)?,
            _ => return Err(format!("too many hyphens: {expr}")),
        };
        extra = 0;
    }
    let step = match range_and_step.len() {
        1 => 1,
        2 => {
            let step = must_parse_int(range_and_step[1])?;
            // "N/step" means "N-max/step".
            if low_and_high.len() == 1 {
                end = b.max;
            }
            if step > 1 {
                extra = 0;
            }
            step
        }
        _ => return Err(format!("too many slashes: {expr}")),
    };
    if start < b.min {
        return Err(format!("beginning of range ({start}) below minimum ({}): {expr}", b.min));
    }
    if end > b.max {
        return Err(format!("end of range ({end}) above maximum ({}): {expr}", b.max));
    }
    if start > end {
        return Err(format!("beginning of range ({start}) beyond end of range ({end}): {expr}"));
    }
    if step == 0 {
        return Err(format!("step of range should be a positive number: {expr}"));
    }
    Ok(bits(start, end, step) | extra)
}

fn bits(start: u64, end: u64, step: u64) -> u64 {
    let mut out = 0;
    let mut i = start;
    while i <= end {
        out |= 1 << i;
        i = i.saturating_add(step);
    }
    out
}

fn parse_int_or_name(expr: &str, b: &Bounds) -> Result<u64, String> {
    let lower = expr.to_lowercase();
    match b.names.iter().find(|(name, _)| *name == lower) {
        Some((_, value)) => Ok(*value),
        None => must_parse_int(expr),
    }
}

fn must_parse_int(expr: &str) -> Result<u64, String> {
    let num = go_atoi(expr).map_err(|e| format!("failed to parse int from {expr}: {e}"))?;
    u64::try_from(num).map_err(|_| format!("negative number ({num}) not allowed: {expr}"))
}

/// Go's `strconv.Atoi`, for its error text.
fn go_atoi(s: &str) -> Result<i64, String> {
    let (negative, digits) = match s.as_bytes().first() {
        Some(b'-') => (true, &s[1..]),
        Some(b'+') => (false, &s[1..]),
        _ => (false, s),
    };
    let syntax = || format!("strconv.Atoi: parsing {}: invalid syntax", go_quote(s));
    let range = || format!("strconv.Atoi: parsing {}: value out of range", go_quote(s));
    if digits.is_empty() {
        return Err(syntax());
    }
    let mut n: u64 = 0;
    for c in digits.bytes() {
        if !c.is_ascii_digit() {
            return Err(syntax());
        }
        n = n.checked_mul(10).and_then(|n| n.checked_add(u64::from(c - b'0'))).ok_or_else(range)?;
    }
    if negative {
        0i64.checked_sub_unsigned(n).ok_or_else(range)
    } else {
        i64::try_from(n).map_err(|_| range())
    }
}

/// Go's `time.ParseDuration`, for `@every` and its error text: (negative, nanoseconds).
fn parse_go_duration(orig: &str) -> Result<(bool, u64), String> {
    const LIMIT: u64 = 1 << 63;
    let invalid = || format!("time: invalid duration {}", go_quote(orig));
    let mut s = orig;
    let mut negative = false;
    if let Some(rest) = s.strip_prefix('-') {
        (negative, s) = (true, rest);
    } else if let Some(rest) = s.strip_prefix('+') {
        s = rest;
    }
    if s == "0" {
        return Ok((false, 0));
    }
    if s.is_empty() {
        return Err(invalid());
    }
    let mut total: u64 = 0;
    while !s.is_empty() {
        if !s.starts_with(|c: char| c == '.' || c.is_ascii_digit()) {
            return Err(invalid());
        }
        let int_len = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
        let mut value: u64 = 0;
        for c in s[..int_len].bytes() {
            value = value
                .checked_mul(10)
                .and_then(|v| v.checked_add(u64::from(c - b'0')))
                .filter(|v| *v <= LIMIT)
                .ok_or_else(invalid)?;
        }
        s = &s[int_len..];
        let (mut fraction, mut scale, mut frac_len) = (0u64, 1f64, 0);
        if let Some(rest) = s.strip_prefix('.') {
            frac_len = rest.find(|c: char| !c.is_ascii_digit()).unwrap_or(rest.len());
            // Digits beyond what fits are ignored, as Go does.
            for c in rest[..frac_len].bytes() {
                match fraction.checked_mul(10).and_then(|f| f.checked_add(u64::from(c - b'0'))).filter(|f| *f <= LIMIT)
                {
                    Some(f) if fraction <= (LIMIT - 1) / 10 => (fraction, scale) = (f, scale * 10.0),
                    _ => break,
                }
            }
            s = &rest[frac_len..];
        }
        if int_len == 0 && frac_len == 0 {
            return Err(invalid());
        }
        let unit_len = s.find(|c: char| c == '.' || c.is_ascii_digit()).unwrap_or(s.len());
        if unit_len == 0 {
            return Err(format!("time: missing unit in duration {}", go_quote(orig)));
        }
        let unit: u64 = match &s[..unit_len] {
            "ns" => 1,
            "us" | "\u{b5}s" | "\u{3bc}s" => 1_000,
            "ms" => 1_000_000,
            "s" => 1_000_000_000,
            "m" => 60_000_000_000,
            "h" => 3_600_000_000_000,
            other => {
                return Err(format!("time: unknown unit {} in duration {}", go_quote(other), go_quote(orig)));
            }
        };
        s = &s[unit_len..];
        let mut v = value.checked_mul(unit).filter(|v| *v <= LIMIT).ok_or_else(invalid)?;
        if fraction > 0 {
            // Go computes the fraction in floating point too; truncation is intended.
            v = v
                .checked_add((fraction as f64 * (unit as f64 / scale)) as u64)
                .filter(|v| *v <= LIMIT)
                .ok_or_else(invalid)?;
        }
        total = total.checked_add(v).filter(|t| *t <= LIMIT).ok_or_else(invalid)?;
    }
    if !negative && total > LIMIT - 1 {
        return Err(invalid());
    }
    Ok((negative, total))
}

/// Go's `strconv.Quote`, near enough for error messages.
fn go_quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            '\r' => out.push_str("\\r"),
            c if (c as u32) < 0x20 || c as u32 == 0x7f => out.push_str(&format!("\\x{:02x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// `spec.timeZone` as the API server validates it: the IANA naming rules, then the database.
fn parse_time_zone(time_zone: Option<&str>) -> Result<Tz, ScheduleError> {
    let Some(name) = time_zone else {
        return Ok(Tz::UTC);
    };
    if name.is_empty() {
        return Err(ScheduleError::EmptyTimeZone);
    }
    let unknown = || ScheduleError::UnknownTimeZone(name.to_string());
    let valid_part = |p: &str| {
        (1..=14).contains(&p.len())
            && p != "."
            && p != ".."
            && !p.starts_with('-')
            && p.bytes().all(|c| c.is_ascii_alphanumeric() || matches!(c, b'.' | b'-' | b'_' | b'+'))
    };
    if !name.split('/').all(valid_part) {
        return Err(unknown());
    }
    if name.eq_ignore_ascii_case("local") {
        return Err(ScheduleError::LocalTimeZone);
    }
    name.parse::<Tz>().map_err(|_| unknown())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).expect("test time").with_timezone(&Utc)
    }

    fn sched(s: &str) -> Schedule {
        Schedule::parse(s, None).expect(s)
    }

    fn zoned(s: &str, tz: &str) -> Schedule {
        Schedule::parse(s, Some(tz)).expect(s)
    }

    fn err(s: &str) -> String {
        Schedule::parse(s, None).expect_err(s).to_string()
    }

    /// The first `n` schedule times after `from`.
    fn times(s: &Schedule, from: &str, n: usize) -> Vec<DateTime<Utc>> {
        std::iter::successors(s.next_after(at(from)), |t| s.next_after(*t)).take(n).collect()
    }

    fn all(list: &[&str]) -> Vec<DateTime<Utc>> {
        list.iter().map(|s| at(s)).collect()
    }

    #[test]
    fn descriptors() {
        // 2025-03-15 is a Saturday.
        let from = at("2025-03-15T10:20:00Z");
        for (d, want) in [
            ("@yearly", "2026-01-01T00:00:00Z"),
            ("@annually", "2026-01-01T00:00:00Z"),
            ("@monthly", "2025-04-01T00:00:00Z"),
            ("@weekly", "2025-03-16T00:00:00Z"),
            ("@daily", "2025-03-16T00:00:00Z"),
            ("@midnight", "2025-03-16T00:00:00Z"),
            ("@hourly", "2025-03-15T11:00:00Z"),
        ] {
            assert_eq!(sched(d).next_after(from), Some(at(want)), "{d}");
        }
        assert_eq!(sched("@weekly").next_after(at("2025-03-16T00:00:00Z")), Some(at("2025-03-23T00:00:00Z")));
        assert_eq!(err("@fortnightly"), "unrecognized descriptor: @fortnightly");
        // Only the exact word: robfig does not trim.
        assert_eq!(err("@daily "), "unrecognized descriptor: @daily ");
        assert_eq!(err("@DAILY"), "unrecognized descriptor: @DAILY");
    }

    #[test]
    fn every() {
        let s = sched("@every 1h30m");
        assert_eq!(s.next_after(at("2025-03-15T10:20:00.5Z")), Some(at("2025-03-15T11:50:00Z")));
        // Below a second it is one second; fractions of a second are dropped.
        assert_eq!(sched("@every 300ms").next_after(at("2025-03-15T10:20:00Z")), Some(at("2025-03-15T10:20:01Z")));
        assert_eq!(sched("@every 1.5s").next_after(at("2025-03-15T10:20:00Z")), Some(at("2025-03-15T10:20:01Z")));
        assert_eq!(sched("@every 2h45m10s").next_after(at("2025-03-15T00:00:00Z")), Some(at("2025-03-15T02:45:10Z")));
        assert_eq!(err("@every 5x"), r#"failed to parse duration @every 5x: time: unknown unit "x" in duration "5x""#);
        assert_eq!(err("@every 5"), r#"failed to parse duration @every 5: time: missing unit in duration "5""#);
        assert_eq!(err("@every "), r#"failed to parse duration @every : time: invalid duration """#);
        assert_eq!(err("@every"), "unrecognized descriptor: @every");
        // Counted from `earliest`, by division.
        let m = s.most_recent(at("2025-03-15T00:00:00Z"), at("2025-03-15T05:00:00Z")).expect("fires");
        assert_eq!(m, Missed { most_recent: Some(at("2025-03-15T04:30:00Z")), count: 3, too_many: false });
    }

    #[test]
    fn every_fifteen_minutes() {
        let s = sched("*/15 * * * *");
        assert_eq!(
            times(&s, "2025-03-15T10:20:00Z", 4),
            all(&["2025-03-15T10:30:00Z", "2025-03-15T10:45:00Z", "2025-03-15T11:00:00Z", "2025-03-15T11:15:00Z"])
        );
        // Strictly after: a schedule time itself is not returned.
        assert_eq!(s.next_after(at("2025-03-15T10:45:00Z")), Some(at("2025-03-15T11:00:00Z")));
        assert_eq!(s.next_after(at("2025-03-15T10:44:59.999Z")), Some(at("2025-03-15T10:45:00Z")));
    }

    #[test]
    fn ranges_steps_lists_and_names() {
        let s = sched("5-20/5,59 9 * JAN-mar mon-FRI");
        assert_eq!(
            times(&s, "2025-03-28T09:18:00Z", 5),
            all(&[
                "2025-03-28T09:20:00Z",
                "2025-03-28T09:59:00Z",
                // Saturday and Sunday are skipped, then April to December.
                "2025-03-31T09:05:00Z",
                "2025-03-31T09:10:00Z",
                "2025-03-31T09:15:00Z",
            ])
        );
        assert_eq!(sched("0 0 * * *").next_after(at("2025-03-31T12:00:00Z")), Some(at("2025-04-01T00:00:00Z")));
        assert_eq!(
            sched("0 9 * JAN-mar mon-FRI").next_after(at("2025-03-31T09:00:00Z")),
            Some(at("2026-01-01T09:00:00Z"))
        );
        // "N/step" runs from N to the maximum; `?` is `*`.
        assert_eq!(
            times(&sched("50/4 1 ? * *"), "2025-03-15T00:00:00Z", 3),
            all(&["2025-03-15T01:50:00Z", "2025-03-15T01:54:00Z", "2025-03-15T01:58:00Z"])
        );
        // A step beyond the range keeps its first value.
        assert_eq!(
            times(&sched("*/61 * * * *"), "2025-03-15T00:00:00Z", 2),
            all(&["2025-03-15T01:00:00Z", "2025-03-15T02:00:00Z"])
        );
        // Sunday is 0 (7 is refused below); the last day of a month exists only where it does.
        assert_eq!(sched("0 0 * * SUN").next_after(at("2025-03-15T00:00:00Z")), Some(at("2025-03-16T00:00:00Z")));
        assert_eq!(sched("0 0 31 * *").next_after(at("2025-04-01T00:00:00Z")), Some(at("2025-05-31T00:00:00Z")));
        assert_eq!(sched("0 0 29 2 *").next_after(at("2025-01-01T00:00:00Z")), Some(at("2028-02-29T00:00:00Z")));
        assert_eq!(sched("0 0 29 2 *").next_after(at("2096-03-01T00:00:00Z")), Some(at("2104-02-29T00:00:00Z")));
    }

    #[test]
    fn day_of_month_or_day_of_week() {
        // Both restricted: either matches. 2025-03-01 is a Saturday.
        let s = sched("0 0 1,15 * MON");
        assert_eq!(
            times(&s, "2025-02-28T12:00:00Z", 6),
            all(&[
                "2025-03-01T00:00:00Z",
                "2025-03-03T00:00:00Z",
                "2025-03-10T00:00:00Z",
                "2025-03-15T00:00:00Z",
                "2025-03-17T00:00:00Z",
                "2025-03-24T00:00:00Z",
            ])
        );
        // A star on either side makes it AND, `*/1` included; `0-6` is no star.
        assert_eq!(
            times(&sched("0 0 1,15 * *"), "2025-02-28T12:00:00Z", 2),
            all(&["2025-03-01T00:00:00Z", "2025-03-15T00:00:00Z"])
        );
        assert_eq!(
            times(&sched("0 0 * * MON"), "2025-02-28T12:00:00Z", 2),
            all(&["2025-03-03T00:00:00Z", "2025-03-10T00:00:00Z"])
        );
        assert_eq!(times(&sched("0 0 */1 * MON"), "2025-02-28T12:00:00Z", 1), all(&["2025-03-03T00:00:00Z"]));
        assert_eq!(
            times(&sched("0 0 1 * 0-6"), "2025-02-28T12:00:00Z", 2),
            all(&["2025-03-01T00:00:00Z", "2025-03-02T00:00:00Z"])
        );
        // `*/2` is no star either (robfig drops the star bit for steps above one).
        assert_eq!(
            times(&sched("0 0 1 * */2"), "2025-02-28T12:00:00Z", 2),
            all(&["2025-03-01T00:00:00Z", "2025-03-02T00:00:00Z"])
        );
    }

    #[test]
    fn syntax_errors_are_robfigs() {
        assert_eq!(err(""), "empty spec string");
        assert_eq!(err("0 0 * * * *"), "expected exactly 5 fields, found 6: [0 0 * * * *]");
        assert_eq!(err("a  b"), "expected exactly 5 fields, found 2: [a b]");
        assert_eq!(err("   "), "expected exactly 5 fields, found 0: []");
        assert_eq!(err(" @daily"), "expected exactly 5 fields, found 1: [@daily]");
        assert_eq!(err("xyz * * * *"), r#"failed to parse int from xyz: strconv.Atoi: parsing "xyz": invalid syntax"#);
        assert_eq!(err("0 0 L * *"), r#"failed to parse int from L: strconv.Atoi: parsing "L": invalid syntax"#);
        assert_eq!(err("0 0 1W * *"), r#"failed to parse int from 1W: strconv.Atoi: parsing "1W": invalid syntax"#);
        assert_eq!(err("0 0 * * 1#2"), r#"failed to parse int from 1#2: strconv.Atoi: parsing "1#2": invalid syntax"#);
        assert_eq!(err("-5 * * * *"), r#"failed to parse int from : strconv.Atoi: parsing "": invalid syntax"#);
        assert_eq!(
            err("99999999999999999999 * * * *"),
            r#"failed to parse int from 99999999999999999999: strconv.Atoi: parsing "99999999999999999999": value out of range"#
        );
        assert_eq!(err("61 * * * *"), "end of range (61) above maximum (59): 61");
        assert_eq!(err("0 24 * * *"), "end of range (24) above maximum (23): 24");
        assert_eq!(err("0 0 0 * *"), "beginning of range (0) below minimum (1): 0");
        assert_eq!(err("0 0 * 13 *"), "end of range (13) above maximum (12): 13");
        assert_eq!(err("0 0 * * 7"), "end of range (7) above maximum (6): 7");
        assert_eq!(err("5-3 * * * *"), "beginning of range (5) beyond end of range (3): 5-3");
        assert_eq!(err("*/0 * * * *"), "step of range should be a positive number: */0");
        assert_eq!(err("1-2-3 * * * *"), "too many hyphens: 1-2-3");
        assert_eq!(err("1/2/3 * * * *"), "too many slashes: 1/2/3");
        assert_eq!(err("*/-1 * * * *"), "negative number (-1) not allowed: -1");
        assert_eq!(
            err("0 0 * JANUARY *"),
            r#"failed to parse int from JANUARY: strconv.Atoi: parsing "JANUARY": invalid syntax"#
        );
        // What robfig lets through, so does this.
        assert!(Schedule::parse("+5 * * * *", None).is_ok());
        assert!(Schedule::parse("1,,2 * * * *", None).is_ok());
        assert!(Schedule::parse("*-7 * * * *", None).is_ok());
        assert_eq!(ScheduleError::Syntax(String::new()).field(), "spec.schedule");
    }

    #[test]
    fn tz_in_schedule_is_refused() {
        for s in ["CRON_TZ=UTC 0 * * * *", "TZ=America/New_York 0 * * * *", "TZ=Nowhere 0 * * * *"] {
            let e = Schedule::parse(s, None).expect_err(s);
            assert_eq!(e, ScheduleError::TzInSchedule);
            assert_eq!(e.to_string(), "cannot use TZ or CRON_TZ in schedule, use timeZone field instead");
            assert_eq!(e.field(), "spec.schedule");
        }
    }

    #[test]
    fn time_zones() {
        for local in ["Local", "local", "LOCAL"] {
            let e = Schedule::parse("0 * * * *", Some(local)).expect_err(local);
            assert_eq!(
                e.to_string(),
                "timeZone must be an explicit time zone as defined in https://www.iana.org/time-zones"
            );
            assert_eq!(e.field(), "spec.timeZone");
        }
        for bad in ["Mars/Olympus_Mons", "america/new_york", "../etc/passwd", "/etc/localtime", "Europe/Pariss"] {
            let e = Schedule::parse("0 * * * *", Some(bad)).expect_err(bad);
            assert_eq!(e.to_string(), format!("unknown time zone {bad}"));
            assert_eq!(e.field(), "spec.timeZone");
        }
        assert_eq!(
            Schedule::parse("0 * * * *", Some("")).expect_err("empty").to_string(),
            "timeZone must be nil or non-empty string"
        );
        // The schedule is checked first.
        assert_eq!(Schedule::parse("0 * * *", Some("Local")).expect_err("both").field(), "spec.schedule");
        for good in ["UTC", "Etc/UTC", "Europe/Paris", "America/Argentina/Buenos_Aires", "US/Eastern", "Etc/GMT+5"] {
            assert!(Schedule::parse("0 * * * *", Some(good)).is_ok(), "{good}");
        }
        let paris = zoned("0 9 * * *", "Europe/Paris");
        assert_eq!(paris.time_zone(), chrono_tz::Europe::Paris);
        assert_eq!(paris.next_after(at("2025-07-01T00:00:00Z")), Some(at("2025-07-01T07:00:00Z")));
        assert_eq!(paris.next_after(at("2025-01-01T00:00:00Z")), Some(at("2025-01-01T08:00:00Z")));
        assert_eq!(sched("0 9 * * *").time_zone(), Tz::UTC);
    }

    #[test]
    fn spring_forward_skips_the_missing_time() {
        // America/New_York, 2025-03-09: 02:00 EST becomes 03:00 EDT.
        let s = zoned("30 2 * * *", "America/New_York");
        assert_eq!(
            times(&s, "2025-03-07T12:00:00Z", 3),
            all(&["2025-03-08T02:30:00-05:00", "2025-03-10T02:30:00-04:00", "2025-03-11T02:30:00-04:00"])
        );
        let hourly = zoned("0 * * * *", "America/New_York");
        assert_eq!(
            times(&hourly, "2025-03-09T00:30:00-05:00", 3),
            all(&["2025-03-09T01:00:00-05:00", "2025-03-09T03:00:00-04:00", "2025-03-09T04:00:00-04:00"])
        );
        let quarter = zoned("*/15 * * * *", "America/New_York");
        assert_eq!(
            times(&quarter, "2025-03-09T01:40:00-05:00", 2),
            all(&["2025-03-09T01:45:00-05:00", "2025-03-09T03:00:00-04:00"])
        );
    }

    #[test]
    fn fall_back_runs_a_fixed_time_once() {
        // America/New_York, 2025-11-02: 02:00 EDT becomes 01:00 EST, so 01:00-01:59 happens twice.
        let s = zoned("30 2 * * *", "America/New_York");
        assert_eq!(
            times(&s, "2025-10-31T12:00:00Z", 3),
            all(&["2025-11-01T02:30:00-04:00", "2025-11-02T02:30:00-05:00", "2025-11-03T02:30:00-05:00"])
        );
        let s = zoned("30 1 * * *", "America/New_York");
        assert_eq!(
            times(&s, "2025-11-01T12:00:00Z", 2),
            all(&["2025-11-02T01:30:00-04:00", "2025-11-03T01:30:00-05:00"])
        );
        // Asked from within the second pass, the time already ran.
        assert_eq!(s.next_after(at("2025-11-02T01:10:00-05:00")), Some(at("2025-11-03T01:30:00-05:00")));
        // Wildcard schedules keep their pace in real time through both passes.
        let hourly = zoned("@hourly", "America/New_York");
        assert_eq!(
            times(&hourly, "2025-11-02T00:30:00-04:00", 4),
            all(&[
                "2025-11-02T01:00:00-04:00",
                "2025-11-02T01:00:00-05:00",
                "2025-11-02T02:00:00-05:00",
                "2025-11-02T03:00:00-05:00"
            ])
        );
        let quarter = zoned("*/15 * * * *", "America/New_York");
        assert_eq!(
            times(&quarter, "2025-11-02T01:40:00-04:00", 3),
            all(&["2025-11-02T01:45:00-04:00", "2025-11-02T01:00:00-05:00", "2025-11-02T01:15:00-05:00"])
        );
    }

    /// Every schedule time in `[from, to)`, found minute by minute in real time.
    fn brute_force(s: &Schedule, from: DateTime<Utc>, to: DateTime<Utc>) -> Vec<DateTime<Utc>> {
        let Kind::Cron(f) = s.kind else { panic!("cron only") };
        let mut out = vec![];
        let mut x = from;
        while x < to {
            let local = x.with_timezone(&s.tz).naive_local();
            let first = match s.tz.from_local_datetime(&local) {
                chrono::LocalResult::Ambiguous(a, b) => a.min(b).with_timezone(&Utc) == x,
                _ => true,
            };
            let matches = f.minute & (1 << local.minute()) != 0
                && f.hour & (1 << local.hour()) != 0
                && f.month & (1 << local.month()) != 0
                && f.day_matches(local.date());
            if matches && (first || f.wildcard_time) {
                out.push(x);
            }
            x += TimeDelta::minutes(1);
        }
        out
    }

    #[test]
    fn agrees_with_a_minute_by_minute_scan_across_transitions() {
        let windows = [
            ("America/New_York", "2025-03-08T00:00:00Z", "2025-03-11T00:00:00Z"),
            ("America/New_York", "2025-11-01T00:00:00Z", "2025-11-04T00:00:00Z"),
            // A 30-minute DST shift.
            ("Australia/Lord_Howe", "2025-04-04T00:00:00Z", "2025-04-07T00:00:00Z"),
            ("Australia/Lord_Howe", "2025-10-03T00:00:00Z", "2025-10-06T00:00:00Z"),
            // Samoa skipped 2011-12-30 entirely.
            ("Pacific/Apia", "2011-12-28T00:00:00Z", "2012-01-01T00:00:00Z"),
            ("Europe/London", "2025-10-25T00:00:00Z", "2025-10-28T00:00:00Z"),
        ];
        let schedules = [
            "30 2 * * *",
            "30 1 * * *",
            "0 * * * *",
            "*/15 * * * *",
            "15,45 1-3 * * *",
            "0 0 * * *",
            "* 1 * * *",
            "7 1,2 30 12 *",
        ];
        for (tz, from, to) in windows {
            for spec in schedules {
                let s = zoned(spec, tz);
                let (from, to) = (at(from), at(to));
                let want = brute_force(&s, from, to);
                let got: Vec<_> =
                    std::iter::successors(s.next_after(from - TimeDelta::seconds(1)), |t| s.next_after(*t))
                        .take_while(|t| *t < to)
                        .collect();
                assert_eq!(got, want, "{spec} in {tz}");
                // From any minute, including the second pass of a repeated hour.
                let mut x = from;
                while x < to {
                    let next = want.iter().find(|t| **t > x).copied();
                    if next.is_some() {
                        assert_eq!(s.next_after(x), next, "{spec} in {tz} after {x}");
                    }
                    x += TimeDelta::minutes(7);
                }
                // The latest due and the count, the bisection of a long absence included.
                let mut now = from + TimeDelta::minutes(1);
                while now < to {
                    let due: Vec<_> = want.iter().filter(|t| **t <= now).collect();
                    let m = s.most_recent(from - TimeDelta::seconds(1), now).expect("fires");
                    assert_eq!(m.most_recent.as_ref(), due.last().copied(), "{spec} in {tz} at {now}");
                    assert_eq!(m.too_many, due.len() > 100, "{spec} in {tz} at {now}");
                    if !m.too_many {
                        assert_eq!(m.count, due.len() as u64, "{spec} in {tz} at {now}");
                    }
                    now += TimeDelta::minutes(53);
                }
            }
        }
    }

    #[test]
    fn most_recent_counts_what_was_missed() {
        let s = sched("0 * * * *");
        let earliest = at("2025-03-15T10:00:00Z");
        // None due yet.
        assert_eq!(s.most_recent(earliest, at("2025-03-15T10:59:59Z")), Ok(Missed::default()));
        // One: the normal case.
        assert_eq!(
            s.most_recent(earliest, at("2025-03-15T11:00:00Z")),
            Ok(Missed { most_recent: Some(at("2025-03-15T11:00:00Z")), count: 1, too_many: false })
        );
        // Several.
        assert_eq!(
            s.most_recent(earliest, at("2025-03-15T13:30:00Z")),
            Ok(Missed { most_recent: Some(at("2025-03-15T13:00:00Z")), count: 3, too_many: false })
        );
        // Exactly the limit is not too many.
        let m = s.most_recent(earliest, at("2025-03-19T14:00:00Z")).expect("fires");
        assert_eq!((m.count, m.too_many), (100, false));
        // Far too many: a year of every minute.
        let every_minute = sched("* * * * *");
        let now = at("2026-03-15T10:00:30Z");
        let m = every_minute.most_recent(at("2025-03-15T10:00:00Z"), now).expect("fires");
        assert_eq!(m, Missed { most_recent: Some(at("2026-03-15T10:00:00Z")), count: 525_600, too_many: true });
        // Irregular schedules: exact where upstream's estimate (interval of the first two) is not.
        let twice_monthly = sched("0 0 1,2 * *");
        let m = twice_monthly.most_recent(at("2025-01-01T00:00:00Z"), at("2025-05-20T00:00:00Z")).expect("fires");
        assert_eq!(m, Missed { most_recent: Some(at("2025-05-02T00:00:00Z")), count: 9, too_many: false });
        let m = twice_monthly.most_recent(at("2015-01-01T00:00:00Z"), at("2025-05-20T00:00:00Z")).expect("fires");
        assert_eq!((m.most_recent, m.too_many), (Some(at("2025-05-02T00:00:00Z")), true));
        // A zone and a long absence.
        let ny = zoned("30 2 * * *", "America/New_York");
        let m = ny.most_recent(at("2020-01-01T00:00:00Z"), at("2025-03-10T12:00:00Z")).expect("fires");
        assert_eq!((m.most_recent, m.too_many), (Some(at("2025-03-10T02:30:00-04:00")), true));
    }

    #[test]
    fn a_schedule_that_never_fires() {
        for spec in ["0 0 30 2 *", "0 0 31 4,6,9,11 *", ", * * * *"] {
            let s = sched(spec);
            assert_eq!(s.next_after(at("2025-01-01T00:00:00Z")), None, "{spec}");
            let e = s.most_recent(at("2025-01-01T00:00:00Z"), at("2025-06-01T00:00:00Z")).expect_err(spec);
            assert_eq!(e.to_string(), "time difference between two schedules is less than 1 second");
            assert_eq!(s.next_schedule_time_duration(at("2025-01-01T00:00:00Z"), at("2025-06-01T00:00:00Z")), None);
        }
    }

    #[test]
    fn requeue_after() {
        let s = sched("0 * * * *");
        let earliest = at("2025-03-15T10:00:00Z");
        let minutes = |m: u64| Duration::from_secs(m * 60) + NEXT_SCHEDULE_DELTA;
        assert_eq!(s.next_schedule_time_duration(earliest, at("2025-03-15T10:20:00Z")), Some(minutes(40)));
        assert_eq!(s.next_schedule_time_duration(earliest, at("2025-03-15T12:20:00Z")), Some(minutes(40)));
        assert_eq!(s.next_schedule_time_duration(earliest, at("2025-03-15T13:00:00Z")), Some(minutes(60)));
        // Long missed: still the next slot from now.
        assert_eq!(
            sched("* * * * *").next_schedule_time_duration(at("2020-01-01T00:00:00Z"), at("2025-03-15T13:00:30Z")),
            Some(Duration::from_secs(30) + NEXT_SCHEDULE_DELTA)
        );
    }

    #[test]
    fn earliest_time_follows_upstream() {
        let created = at("2025-03-15T00:00:00Z");
        let now = at("2025-03-15T12:00:00Z");
        assert_eq!(earliest_time(created, None, None, now), created);
        let last = at("2025-03-15T11:00:00Z");
        assert_eq!(earliest_time(created, Some(last), None, now), last);
        assert_eq!(earliest_time(created, Some(last), Some(600), now), at("2025-03-15T11:50:00Z"));
        assert_eq!(earliest_time(created, Some(last), Some(7200), now), last);
        assert_eq!(earliest_time(created, None, Some(i64::MAX), now), created);
    }
}
