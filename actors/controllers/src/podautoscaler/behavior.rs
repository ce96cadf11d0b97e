//! What the autoscaler may do with a recommendation (upstream's
//! `normalizeDesiredReplicasWithBehaviors`): the stabilization windows (the highest
//! recommendation of the scale-down window, the lowest of the scale-up one), the scaling
//! policies (so many pods or percent per period, the largest or smallest change), and the
//! min/max bounds, with the ScalingLimited condition's reason and message.

use std::time::{Duration, Instant};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PolicyKind {
    Pods,
    Percent,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Policy {
    pub kind: PolicyKind,
    pub value: i32,
    pub period: Duration,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Select {
    /// The policy allowing the largest change.
    Max,
    /// The policy allowing the smallest change.
    Min,
    Disabled,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rules {
    pub window: Duration,
    pub select: Select,
    pub policies: Vec<Policy>,
}

impl Rules {
    /// Upstream's defaults for scale up: at once, 4 pods or double, whichever is more, per 15 s.
    pub fn default_up() -> Rules {
        let period = Duration::from_secs(15);
        Rules {
            window: Duration::ZERO,
            select: Select::Max,
            policies: vec![
                Policy { kind: PolicyKind::Pods, value: 4, period },
                Policy { kind: PolicyKind::Percent, value: 100, period },
            ],
        }
    }

    /// Upstream's defaults for scale down: after 5 minutes of lower recommendations, any amount.
    pub fn default_down(window: Duration) -> Rules {
        let period = Duration::from_secs(15);
        Rules { window, select: Select::Max, policies: vec![Policy { kind: PolicyKind::Percent, value: 100, period }] }
    }
}

/// A change of the target's replicas the autoscaler made.
#[derive(Debug, Clone, Copy)]
pub struct ScaleEvent {
    pub at: Instant,
    pub change: i32,
}

/// What one autoscaler remembers between syncs.
#[derive(Debug, Default, Clone)]
pub struct History {
    pub recommendations: Vec<(Instant, i32)>,
    pub up: Vec<ScaleEvent>,
    pub down: Vec<ScaleEvent>,
}

impl History {
    /// An autoscaler's first memory: the current replicas as a recommendation made now, as
    /// upstream seeds it, so a new autoscaler does not scale down before its window passes.
    pub fn seeded(now: Instant, current: i32) -> History {
        History { recommendations: vec![(now, current)], ..Default::default() }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    pub replicas: i32,
    /// ScalingLimited: (limited, reason, message).
    pub limited: (bool, &'static str, &'static str),
}

/// The replicas to set, from the metrics' recommendation `desired`.
pub fn normalize(
    history: &mut History,
    now: Instant,
    current: i32,
    desired: i32,
    (min, max): (i32, i32),
    up: &Rules,
    down: &Rules,
) -> Decision {
    let stabilized = stabilize(history, now, current, desired, up.window, down.window);
    limit(history, now, current, stabilized, (min, max), up, down)
}

/// The recommendation held back by the windows: not above the lowest of the scale-up
/// window, not below the highest of the scale-down window.
fn stabilize(history: &mut History, now: Instant, current: i32, desired: i32, up: Duration, down: Duration) -> i32 {
    let (mut up_rec, mut down_rec) = (desired, desired);
    for &(at, rec) in &history.recommendations {
        let age = now.saturating_duration_since(at);
        if age < up {
            up_rec = up_rec.min(rec);
        }
        if age < down {
            down_rec = down_rec.max(rec);
        }
    }
    let keep = up.max(down);
    history.recommendations.retain(|(at, _)| now.saturating_duration_since(*at) < keep);
    history.recommendations.push((now, desired));
    current.max(up_rec).min(down_rec)
}

/// Replicas changed within `period` before `now`.
fn changed_within(events: &[ScaleEvent], now: Instant, period: Duration) -> i32 {
    events.iter().filter(|e| now.saturating_duration_since(e.at) < period).map(|e| e.change).sum()
}

fn up_limit(history: &History, now: Instant, current: i32, rules: &Rules) -> i32 {
    let proposals = rules.policies.iter().map(|p| {
        let start = current - changed_within(&history.up, now, p.period);
        match p.kind {
            PolicyKind::Pods => start + p.value,
            PolicyKind::Percent => (start as f64 * (1.0 + p.value as f64 / 100.0)).ceil() as i32,
        }
    });
    match rules.select {
        Select::Max => proposals.max().unwrap_or(current),
        Select::Min => proposals.min().unwrap_or(current),
        Select::Disabled => current,
    }
}

fn down_limit(history: &History, now: Instant, current: i32, rules: &Rules) -> i32 {
    let proposals = rules.policies.iter().map(|p| {
        let start = current + changed_within(&history.down, now, p.period);
        match p.kind {
            PolicyKind::Pods => start - p.value,
            PolicyKind::Percent => (start as f64 * (1.0 - p.value as f64 / 100.0)) as i32,
        }
    });
    // The largest change down is the smallest count.
    match rules.select {
        Select::Max => proposals.min().unwrap_or(current),
        Select::Min => proposals.max().unwrap_or(current),
        Select::Disabled => current,
    }
}

fn limit(
    history: &History,
    now: Instant,
    current: i32,
    desired: i32,
    (min, max): (i32, i32),
    up: &Rules,
    down: &Rules,
) -> Decision {
    let within = (false, "DesiredWithinRange", "the desired count is within the acceptable range");
    if desired > current {
        let rate = up_limit(history, now, current, up).max(current);
        let (bound, limited) = if max < rate {
            (max, (true, "TooManyReplicas", "the desired replica count is more than the maximum replica count"))
        } else {
            (rate, (true, "ScaleUpLimit", "the desired replica count is increasing faster than the maximum scale rate"))
        };
        if desired > bound {
            return Decision { replicas: bound, limited };
        }
        Decision { replicas: desired, limited: within }
    } else if desired < current {
        let rate = down_limit(history, now, current, down).min(current);
        let (bound, limited) = if min > rate {
            (min, (true, "TooFewReplicas", "the desired replica count is less than the minimum replica count"))
        } else {
            (
                rate,
                (true, "ScaleDownLimit", "the desired replica count is decreasing faster than the maximum scale rate"),
            )
        };
        if desired < bound {
            return Decision { replicas: bound, limited };
        }
        Decision { replicas: desired, limited: within }
    } else if desired > max {
        Decision {
            replicas: max,
            limited: (true, "TooManyReplicas", "the desired replica count is more than the maximum replica count"),
        }
    } else if desired < min {
        Decision {
            replicas: min,
            limited: (true, "TooFewReplicas", "the desired replica count is less than the minimum replica count"),
        }
    } else {
        Decision { replicas: desired, limited: within }
    }
}

/// Remembers a change made, for the policies' periods.
pub fn record(history: &mut History, now: Instant, from: i32, to: i32, longest: Duration) {
    let change = to - from;
    let events = if change > 0 { &mut history.up } else { &mut history.down };
    events.retain(|e| now.saturating_duration_since(e.at) < longest);
    events.push(ScaleEvent { at: now, change: change.abs() });
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(n: u64) -> Duration {
        Duration::from_secs(n)
    }

    #[test]
    fn scale_up_is_limited_by_the_policies_and_max() {
        let (mut h, now) = (History::default(), Instant::now());
        let up = Rules::default_up();
        let down = Rules::default_down(s(300));
        // From 1: at most max(1 + 4, 2) = 5 per 15 s; bounded by max 3.
        let d = normalize(&mut h, now, 1, 20, (1, 3), &up, &down);
        assert_eq!((d.replicas, d.limited.1), (3, "TooManyReplicas"));
        let d = normalize(&mut h, now, 1, 20, (1, 10), &up, &down);
        assert_eq!((d.replicas, d.limited.1), (5, "ScaleUpLimit"));
        record(&mut h, now, 1, 5, s(15));
        // Within the same period the 4 pods are spent: 5 - 4 = 1 at the start, so 5 or 2 -> 5.
        let d = normalize(&mut h, now + s(1), 5, 20, (1, 10), &up, &down);
        assert_eq!(d.replicas, 5);
        let d = normalize(&mut h, now + s(16), 5, 20, (1, 10), &up, &down);
        assert_eq!(d.replicas, 10);
    }

    #[test]
    fn scale_down_waits_for_its_window() {
        let (mut h, t0) = (History::default(), Instant::now());
        let up = Rules::default_up();
        let down = Rules::default_down(s(5));
        assert_eq!(normalize(&mut h, t0, 3, 3, (1, 3), &up, &down).replicas, 3);
        // Load gone: recommendations of 1, but the window still holds the 3 of t0.
        assert_eq!(normalize(&mut h, t0 + s(2), 3, 1, (1, 3), &up, &down).replicas, 3);
        let d = normalize(&mut h, t0 + s(6), 3, 1, (1, 3), &up, &down);
        assert_eq!((d.replicas, d.limited.1), (1, "DesiredWithinRange"));
    }

    #[test]
    fn a_new_autoscaler_waits_a_whole_window_before_scaling_down() {
        let t0 = Instant::now();
        let mut h = History::seeded(t0, 3);
        let (up, down) = (Rules::default_up(), Rules::default_down(s(300)));
        assert_eq!(normalize(&mut h, t0 + s(15), 3, 1, (1, 5), &up, &down).replicas, 3);
        assert_eq!(normalize(&mut h, t0 + s(301), 3, 1, (1, 5), &up, &down).replicas, 1);
    }

    #[test]
    fn pods_policies_and_min_bound_scale_down() {
        let (mut h, now) = (History::default(), Instant::now());
        let one_pod = Rules {
            window: Duration::ZERO,
            select: Select::Max,
            policies: vec![Policy { kind: PolicyKind::Pods, value: 1, period: s(60) }],
        };
        let d = normalize(&mut h, now, 5, 1, (1, 10), &Rules::default_up(), &one_pod);
        assert_eq!((d.replicas, d.limited.1), (4, "ScaleDownLimit"));
        record(&mut h, now, 5, 4, s(60));
        assert_eq!(normalize(&mut h, now + s(10), 4, 1, (1, 10), &Rules::default_up(), &one_pod).replicas, 4);
        let disabled = Rules { select: Select::Disabled, ..one_pod };
        assert_eq!(normalize(&mut h, now + s(100), 4, 1, (1, 10), &Rules::default_up(), &disabled).replicas, 4);
        // Below min: raised to it.
        let d = normalize(&mut History::default(), now, 0, 0, (2, 10), &Rules::default_up(), &disabled);
        assert_eq!((d.replicas, d.limited.1), (2, "TooFewReplicas"));
    }
}
