//! Restart back-off per container, as upstream's: the first restart is immediate, then 10 s
//! doubling to 5 min, forgotten once a container has run for 10 minutes. While it lasts the
//! container waits in CrashLoopBackOff (or ImagePullBackOff for pulls). Times are tokio's, so
//! tests with paused time see back-offs expire.

use std::time::Duration;
use tokio::time::Instant;

pub const INITIAL: Duration = Duration::from_secs(10);
pub const MAX: Duration = Duration::from_secs(300);
/// A container that ran this long has its back-off reset.
pub const RESET_AFTER: Duration = Duration::from_secs(600);

#[derive(Debug, Clone, Default)]
pub struct Backoff {
    delay: Option<Duration>,
    until: Option<Instant>,
}

impl Backoff {
    /// Counts a failure at `now` (the container exited or could not start).
    pub fn fail(&mut self, now: Instant, ran_for: Option<Duration>) {
        if ran_for.is_some_and(|d| d >= RESET_AFTER) {
            self.delay = None;
        }
        let delay = match self.delay {
            None => Duration::ZERO,
            Some(d) if d.is_zero() => INITIAL,
            Some(d) => (d * 2).min(MAX),
        };
        self.delay = Some(delay);
        self.until = Some(now + delay);
    }

    /// The current delay while it has not yet passed.
    pub fn waiting(&self, now: Instant) -> Option<Duration> {
        self.until.filter(|u| *u > now).and(self.delay)
    }

    pub fn until(&self) -> Option<Instant> {
        self.until
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn doubles_to_the_cap_and_resets_after_a_long_run() {
        let mut b = Backoff::default();
        let t = Instant::now();
        b.fail(t, None);
        assert_eq!(b.waiting(t), None, "the first restart is immediate");
        b.fail(t, None);
        assert_eq!(b.waiting(t), Some(INITIAL));
        assert_eq!(b.waiting(t + INITIAL), None);
        for _ in 0..10 {
            b.fail(t, Some(Duration::from_secs(1)));
        }
        assert_eq!(b.waiting(t), Some(MAX));
        b.fail(t, Some(RESET_AFTER));
        assert_eq!(b.waiting(t), None);
    }
}
