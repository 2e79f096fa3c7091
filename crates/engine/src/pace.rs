//! Client-side pacing: token buckets set to AWS's published EC2 buckets, and
//! exponential backoff with jitter for retries.
//!
//! Pacing keeps the engine under the account's limits, so throttling is rare; when it
//! happens anyway (other clients share the account's buckets) the call is retried
//! after a backoff.

use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// Capacity and refill rate of one bucket.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct BucketSpec {
    pub capacity: f64,
    pub refill_per_sec: f64,
}

/// The buckets the engine paces against (per account and region on AWS).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Limits {
    /// Describe* requests.
    pub describe: BucketSpec,
    /// Mutating requests other than StartInstances (StopInstances,
    /// ModifyInstanceAttribute, ...).
    pub mutating: BucketSpec,
    /// StartInstances requests.
    pub start_requests: BucketSpec,
    /// Instances started (resource bucket).
    pub start_instances: BucketSpec,
    /// Instances stopped (resource bucket).
    pub stop_instances: BucketSpec,
}

impl Limits {
    /// AWS's published EC2 defaults.
    pub const AWS: Limits = Limits {
        describe: BucketSpec {
            capacity: 100.0,
            refill_per_sec: 20.0,
        },
        mutating: BucketSpec {
            capacity: 50.0,
            refill_per_sec: 5.0,
        },
        start_requests: BucketSpec {
            capacity: 5.0,
            refill_per_sec: 2.0,
        },
        start_instances: BucketSpec {
            capacity: 1000.0,
            refill_per_sec: 2.0,
        },
        stop_instances: BucketSpec {
            capacity: 1000.0,
            refill_per_sec: 20.0,
        },
    };
}

impl Default for Limits {
    fn default() -> Self {
        Limits::AWS
    }
}

/// A token bucket, full at creation.
#[derive(Debug, Clone)]
pub struct TokenBucket {
    spec: BucketSpec,
    tokens: f64,
    at: Option<DateTime<Utc>>,
}

impl TokenBucket {
    pub fn new(spec: BucketSpec) -> Self {
        TokenBucket {
            spec,
            tokens: spec.capacity,
            at: None,
        }
    }

    fn refill(&mut self, now: DateTime<Utc>) {
        if let Some(at) = self.at {
            let secs = (now - at).num_microseconds().unwrap_or(i64::MAX) as f64 / 1e6;
            if secs > 0.0 {
                self.tokens =
                    (self.tokens + secs * self.spec.refill_per_sec).min(self.spec.capacity);
            }
        }
        self.at = Some(self.at.map_or(now, |at| at.max(now)));
    }

    /// Tokens available at `now`.
    pub fn available(&mut self, now: DateTime<Utc>) -> f64 {
        self.refill(now);
        self.tokens
    }

    /// How long until `n` tokens are available (zero if they are now).
    pub fn wait_for(&mut self, n: f64, now: DateTime<Utc>) -> Duration {
        self.refill(now);
        let missing = n.min(self.spec.capacity) - self.tokens;
        if missing <= 0.0 {
            Duration::ZERO
        } else {
            Duration::from_secs_f64(missing / self.spec.refill_per_sec)
        }
    }

    /// Takes `n` tokens if available at `now`; otherwise says how long to wait.
    pub fn take(&mut self, n: f64, now: DateTime<Utc>) -> Result<(), Duration> {
        let wait = self.wait_for(n, now);
        if wait.is_zero() {
            self.tokens -= n;
            Ok(())
        } else {
            Err(wait)
        }
    }

    /// The bucket's size.
    pub fn capacity(&self) -> f64 {
        self.spec.capacity
    }

    /// The bucket's refill rate per second.
    pub fn refill_per_sec(&self) -> f64 {
        self.spec.refill_per_sec
    }
}

/// A small deterministic generator for jitter (xorshift64*), seeded per run so that a
/// run's retries are reproducible.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Jitter(u64);

impl Jitter {
    pub fn new(seed: u64) -> Self {
        Jitter(seed | 1)
    }

    /// A number in [0, 1).
    pub fn next_unit(&mut self) -> f64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        (x.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// Exponential backoff with "equal jitter": half the delay fixed, half random.
pub fn backoff(attempt: u32, base: Duration, cap: Duration, jitter: &mut Jitter) -> Duration {
    let exp = base.as_secs_f64() * 2f64.powi(attempt.min(20) as i32);
    let d = exp.min(cap.as_secs_f64());
    Duration::from_secs_f64(d / 2.0 + d / 2.0 * jitter.next_unit())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: f64) -> DateTime<Utc> {
        DateTime::from_timestamp_micros((s * 1e6) as i64).unwrap()
    }

    #[test]
    fn buckets_refill_at_their_rate_up_to_capacity() {
        let mut b = TokenBucket::new(Limits::AWS.start_requests);
        for _ in 0..5 {
            b.take(1.0, t(0.0)).unwrap();
        }
        assert_eq!(b.take(1.0, t(0.0)), Err(Duration::from_millis(500)));
        assert!(b.take(1.0, t(0.5)).is_ok());
        assert_eq!(b.available(t(100.0)), 5.0);
    }

    #[test]
    fn backoff_grows_and_is_capped() {
        let mut j = Jitter::new(7);
        let base = Duration::from_secs(1);
        let cap = Duration::from_secs(30);
        let d0 = backoff(0, base, cap, &mut j);
        assert!(d0 >= Duration::from_millis(500) && d0 <= base);
        let d10 = backoff(10, base, cap, &mut j);
        assert!(d10 >= Duration::from_secs(15) && d10 <= cap);
    }
}
