//! Client-side rate limiting, as client-go's token bucket (`--kube-api-qps`,
//! `--kube-api-burst`): requests beyond the burst wait for tokens that refill at `qps` per
//! second, so one busy controller cannot flood the API server.

use prometheus::{register_histogram_vec, HistogramVec};
use std::sync::{LazyLock, Mutex};
use tokio::time::{Duration, Instant};

static WAIT: LazyLock<HistogramVec> = LazyLock::new(|| {
    register_histogram_vec!(
        "rest_client_rate_limiter_duration_seconds",
        "Client side rate limiter latency in seconds. Broken down by verb, and host.",
        &["verb", "host"],
        vec![0.005, 0.025, 0.1, 0.25, 0.5, 1.0, 2.0, 4.0, 8.0, 15.0, 30.0, 60.0]
    )
    .expect("registers once")
});

struct Bucket {
    tokens: f64,
    last: Instant,
}

pub struct RateLimiter {
    qps: f64,
    burst: f64,
    /// Who is limited (the `host` label: the component's name on the bus).
    host: String,
    bucket: Mutex<Bucket>,
}

impl RateLimiter {
    /// `qps` tokens a second, at most `burst` saved up; a full bucket to start with.
    pub fn new(qps: f64, burst: u32, host: &str) -> Self {
        let burst = f64::from(burst.max(1));
        RateLimiter {
            qps: qps.max(f64::MIN_POSITIVE),
            burst,
            host: host.to_string(),
            bucket: Mutex::new(Bucket { tokens: burst, last: Instant::now() }),
        }
    }

    /// Takes a token, waiting for one if the bucket is empty; the wait is observed by verb.
    pub async fn acquire(&self, verb: &str) {
        let started = Instant::now();
        // Reserve now (the balance may go negative), then sleep off the debt: waiters are
        // served in the order they came and no token is handed out twice.
        let wait = {
            let mut b = self.bucket.lock().expect("bucket lock");
            let now = Instant::now();
            b.tokens = (b.tokens + (now - b.last).as_secs_f64() * self.qps).min(self.burst);
            b.last = now;
            b.tokens -= 1.0;
            (b.tokens < 0.0).then(|| Duration::from_secs_f64(-b.tokens / self.qps))
        };
        if let Some(wait) = wait {
            tokio::time::sleep(wait).await;
        }
        WAIT.with_label_values(&[verb, &self.host]).observe(started.elapsed().as_secs_f64());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn bursts_then_paces_at_qps() {
        let limiter = RateLimiter::new(10.0, 5, "test");
        let started = Instant::now();
        for _ in 0..5 {
            limiter.acquire("GET").await;
        }
        assert!(started.elapsed() < Duration::from_millis(1), "the burst is free");
        for _ in 0..10 {
            limiter.acquire("GET").await;
        }
        // Ten more at 10 per second take a second.
        let took = started.elapsed();
        assert!(took >= Duration::from_millis(990) && took <= Duration::from_millis(1010), "{took:?}");
        // Idle time refills up to the burst, not beyond.
        tokio::time::sleep(Duration::from_secs(60)).await;
        let again = Instant::now();
        for _ in 0..5 {
            limiter.acquire("GET").await;
        }
        assert!(again.elapsed() < Duration::from_millis(1));
        limiter.acquire("GET").await;
        assert!(again.elapsed() >= Duration::from_millis(99));
    }
}
