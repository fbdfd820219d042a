//! A token bucket (bytes per second with a burst) on tokio time, so that under madsim it runs
//! on virtual time and can stand in for link capacity.

use serde::{Deserialize, Serialize};
use std::sync::Mutex;
use std::time::Duration;
use tokio::time::Instant;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RateLimit {
    pub bytes_per_s: u64,
    /// Bytes that may go at once after an idle spell.
    pub burst_bytes: u64,
}

impl RateLimit {
    pub fn validate(&self, name: &str) -> Result<(), String> {
        if self.bytes_per_s == 0 || self.burst_bytes == 0 {
            return Err(format!(
                "{name}: bytes_per_s and burst_bytes must both be more than 0 (omit the limit to disable it)"
            ));
        }
        Ok(())
    }
}

/// Callers take tokens before (or right after) moving bytes. Taking more than is there puts
/// the bucket in debt, and the caller sleeps until the debt would be paid back, so
/// concurrent callers are served in the order they asked, at the configured rate overall.
#[derive(Debug)]
pub struct TokenBucket {
    limit: RateLimit,
    state: Mutex<BucketState>,
}

#[derive(Debug)]
struct BucketState {
    /// May go negative (debt).
    tokens: f64,
    last: Instant,
}

impl TokenBucket {
    /// Starts full. `name` labels the error for a zero rate or burst.
    pub fn new(limit: RateLimit, name: &str) -> Result<TokenBucket, String> {
        limit.validate(name)?;
        let state = BucketState { tokens: limit.burst_bytes as f64, last: Instant::now() };
        Ok(TokenBucket { limit, state: Mutex::new(state) })
    }

    pub fn limit(&self) -> RateLimit {
        self.limit
    }

    /// Takes `bytes` tokens, waiting as long as the bucket says.
    pub async fn take(&self, bytes: u64) {
        let wait = self.reserve(bytes, Instant::now());
        if !wait.is_zero() {
            tokio::time::sleep(wait).await;
        }
    }

    /// Takes `bytes` tokens at `now`; returns how long the caller must wait before moving
    /// them.
    pub fn reserve(&self, bytes: u64, now: Instant) -> Duration {
        let mut s = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let rate = self.limit.bytes_per_s as f64;
        let elapsed = now.saturating_duration_since(s.last).as_secs_f64();
        s.tokens = (s.tokens + elapsed * rate).min(self.limit.burst_bytes as f64);
        s.last = now.max(s.last);
        s.tokens -= bytes as f64;
        if s.tokens >= 0.0 {
            Duration::ZERO
        } else {
            Duration::from_secs_f64(-s.tokens / rate)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn burst_then_rate_and_debt_queues_callers() {
        let bucket = TokenBucket::new(RateLimit { bytes_per_s: 1000, burst_bytes: 500 }, "test").unwrap();
        let t0 = Instant::now();
        assert_eq!(bucket.reserve(500, t0), Duration::ZERO, "the burst goes at once");
        assert_eq!(bucket.reserve(250, t0), Duration::from_millis(250));
        // A second caller at the same instant queues behind the first.
        assert_eq!(bucket.reserve(250, t0), Duration::from_millis(500));
        // After the debt is paid and a full second more, only the burst has accumulated.
        let later = t0 + Duration::from_millis(2000);
        assert_eq!(bucket.reserve(500, later), Duration::ZERO);
        assert_eq!(bucket.reserve(1, later).as_micros(), 1000);
    }

    #[test]
    fn zero_limits_are_refused() {
        assert!(TokenBucket::new(RateLimit { bytes_per_s: 5, burst_bytes: 0 }, "download_rate").is_err());
        assert!(RateLimit { bytes_per_s: 0, burst_bytes: 1 }
            .validate("upload_rate")
            .unwrap_err()
            .contains("upload_rate"));
        RateLimit { bytes_per_s: 1, burst_bytes: 1 }.validate("x").unwrap();
    }
}
