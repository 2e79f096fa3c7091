//! Client-side pacing: token buckets set to AWS's published EC2 buckets, and
//! exponential backoff with jitter for retries.
//!
//! Pacing keeps the engine under the account's limits, so throttling is rare; when it
//! happens anyway (other clients share the account's buckets) the call is retried
//! after a backoff.

use std::sync::{Arc, Mutex};
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

impl Limits {
    /// Each bucket with its name (as runs and the store name them).
    pub fn named(&self) -> [(&'static str, BucketSpec); 5] {
        [
            ("describe", self.describe),
            ("mutating", self.mutating),
            ("start_requests", self.start_requests),
            ("start_instances", self.start_instances),
            ("stop_instances", self.stop_instances),
        ]
    }

    /// These limits times `k` (an account whose limits AWS raised or lowered):
    /// every bucket's capacity and refill.
    pub fn scaled(&self, k: f64) -> Limits {
        let times = |b: BucketSpec| BucketSpec {
            capacity: b.capacity * k,
            refill_per_sec: b.refill_per_sec * k,
        };
        Limits {
            describe: times(self.describe),
            mutating: times(self.mutating),
            start_requests: times(self.start_requests),
            start_instances: times(self.start_instances),
            stop_instances: times(self.stop_instances),
        }
    }

    /// What is left of these limits when another client of the account steadily
    /// spends `share` (0 to 1) of every bucket's refill: the same bursts, refilled at
    /// the rest of the rate.
    pub fn shared(&self, share: f64) -> Limits {
        let left = |b: BucketSpec| BucketSpec {
            capacity: b.capacity,
            refill_per_sec: b.refill_per_sec * (1.0 - share.clamp(0.0, 1.0)),
        };
        Limits {
            describe: left(self.describe),
            mutating: left(self.mutating),
            start_requests: left(self.start_requests),
            start_instances: left(self.start_instances),
            stop_instances: left(self.stop_instances),
        }
    }
}

impl Default for Limits {
    fn default() -> Self {
        Limits::AWS
    }
}

/// On a throttle, the rate falls to this share of the rate that was refused.
const DECREASE: f64 = 0.7;
/// Until a first throttle, each call that goes through raises the rate by this share
/// of itself.
const SLOW_START: f64 = 0.1;
/// Each call that goes through raises the rate by this share of the published rate.
const INCREASE: f64 = 0.05;
/// After a throttle, the rate climbs back to this share of the rate refused, no more.
const BELOW_REFUSED: f64 = 0.95;
/// At the top, each call that goes through raises the refused rate by this share of
/// the published rate: a slow probe, as limits shared with other clients change.
const CREEP: f64 = 0.002;
/// The rate never falls below this share of the published rate...
const FLOOR: f64 = 0.05;
/// ...nor rises above this multiple of it.
const CEILING: f64 = 10.0;

/// What a bucket learned of the account, kept with the run so that a driver that
/// makes a new executor each tick (`serve`, the serverless run step) goes on from it.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Learned {
    pub rate: f64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refused: Option<f64>,
    /// The tokens left at `at`, so that the next executor does not burst again.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tokens: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub at: Option<DateTime<Utc>>,
}

/// A token bucket, full at creation, that finds the account's real rate: it starts
/// at the published rate; until a first throttle each call that goes through raises
/// the rate and the burst by a tenth of themselves, and what the burst grew by can be
/// used at once (the account's limits may be far higher), after it a
/// little (additive increase), and a throttled call cuts it (multiplicative decrease). After
/// a throttle it climbs back only to just below the rate that was refused, so an
/// account at the published limits is not probed again and again, one with higher
/// limits is used at its limits, and one with lower limits is not hammered. The
/// capacity (the burst) scales with the rate.
#[derive(Debug, Clone)]
pub struct TokenBucket {
    spec: BucketSpec,
    rate: f64,
    /// The lowest rate that was refused, once one was.
    refused: Option<f64>,
    tokens: f64,
    at: Option<DateTime<Utc>>,
}

impl TokenBucket {
    pub fn new(spec: BucketSpec) -> Self {
        TokenBucket {
            spec,
            rate: spec.refill_per_sec,
            refused: None,
            tokens: spec.capacity,
            at: None,
        }
    }

    fn refill(&mut self, now: DateTime<Utc>) {
        if let Some(at) = self.at {
            let secs = (now - at).num_microseconds().unwrap_or(i64::MAX) as f64 / 1e6;
            if secs > 0.0 {
                self.tokens = (self.tokens + secs * self.rate).min(self.capacity());
            }
        }
        self.at = Some(self.at.map_or(now, |at| at.max(now)));
    }

    /// The rate it refills at now (tokens a second).
    pub fn rate(&self) -> f64 {
        self.rate
    }

    /// Tokens available at `now`.
    pub fn available(&mut self, now: DateTime<Utc>) -> f64 {
        self.refill(now);
        self.tokens
    }

    /// How long until `n` tokens are available (zero if they are now).
    pub fn wait_for(&mut self, n: f64, now: DateTime<Utc>) -> Duration {
        self.refill(now);
        let missing = n.min(self.capacity()) - self.tokens;
        if missing <= 0.0 {
            Duration::ZERO
        } else {
            Duration::from_secs_f64(missing / self.rate)
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

    /// What the account answered a call this bucket paced: a throttle lowers the
    /// rate and empties the bucket; a call that went through raises the rate.
    pub fn answered(&mut self, throttled: bool, now: DateTime<Utc>) {
        let published = self.spec.refill_per_sec;
        if throttled {
            self.refill(now);
            self.refused = Some(self.rate);
            self.rate = (self.rate * DECREASE).max(published * FLOOR);
            self.tokens = 0.0;
        } else {
            let top = self
                .refused
                .map_or(published * CEILING, |r| r * BELOW_REFUSED)
                .min(published * CEILING);
            if self.rate < top {
                // Until a first throttle, the rate grows by a share of itself (the
                // account may allow much more); after, by a share of the published.
                if self.refused.is_none() {
                    // The burst grows with the rate, and what it grew by is there to
                    // use: so a larger burst is found as a larger rate is.
                    self.refill(now);
                    let before = self.capacity();
                    self.rate = (self.rate * (1.0 + SLOW_START)).min(top);
                    self.tokens += self.capacity() - before;
                } else {
                    self.rate = (self.rate + published * INCREASE).min(top);
                }
            } else if let Some(r) = &mut self.refused {
                // At the top: what was refused may be allowed now (another client
                // stopped sharing the account); probe above it, slowly.
                *r += published * CREEP;
            }
        }
    }

    /// What this bucket learned, when it differs from the published rate.
    pub fn learned(&self) -> Option<Learned> {
        (self.rate != self.spec.refill_per_sec || self.refused.is_some() || self.at.is_some())
            .then_some(Learned {
                rate: self.rate,
                refused: self.refused,
                tokens: self.at.map(|_| self.tokens),
                at: self.at,
            })
    }

    /// Goes on from what an earlier bucket of the same kind learned (kept within the
    /// bounds every rate keeps; a value that is not a number is ignored).
    pub fn learn(&mut self, l: Learned) {
        let published = self.spec.refill_per_sec;
        if l.rate.is_finite() {
            self.rate = l.rate.clamp(published * FLOOR, published * CEILING);
        }
        self.refused = l.refused.filter(|r| r.is_finite() && *r > 0.0);
        if let (Some(tokens), Some(at)) = (l.tokens.filter(|t| t.is_finite()), l.at) {
            self.tokens = tokens;
            self.at = Some(at);
        }
        self.tokens = self.tokens.clamp(0.0, self.capacity());
    }

    /// The bucket's size now (it scales with the rate).
    pub fn capacity(&self) -> f64 {
        (self.spec.capacity * self.rate / self.spec.refill_per_sec).max(1.0)
    }

    /// The bucket's refill rate per second now.
    pub fn refill_per_sec(&self) -> f64 {
        self.rate
    }
}

impl TokenBucket {
    /// Whether it was never used (nothing taken, nothing learned).
    pub fn fresh(&self) -> bool {
        self.at.is_none()
    }
}

/// A token bucket several executors may share: its clones are the same bucket, so
/// runs on one account and region take their calls' tokens from one budget, and what
/// one learns of the account (a throttle, a higher limit) paces them all.
#[derive(Debug, Clone)]
pub struct SharedBucket(Arc<Mutex<TokenBucket>>);

impl SharedBucket {
    pub fn new(spec: BucketSpec) -> Self {
        SharedBucket(Arc::new(Mutex::new(TokenBucket::new(spec))))
    }

    fn with<T>(&self, f: impl FnOnce(&mut TokenBucket) -> T) -> T {
        f(&mut self.0.lock().unwrap_or_else(|p| p.into_inner()))
    }

    pub fn rate(&self) -> f64 {
        self.with(|b| b.rate())
    }

    pub fn available(&self, now: DateTime<Utc>) -> f64 {
        self.with(|b| b.available(now))
    }

    pub fn wait_for(&self, n: f64, now: DateTime<Utc>) -> Duration {
        self.with(|b| b.wait_for(n, now))
    }

    pub fn take(&self, n: f64, now: DateTime<Utc>) -> Result<(), Duration> {
        self.with(|b| b.take(n, now))
    }

    pub fn answered(&self, throttled: bool, now: DateTime<Utc>) {
        self.with(|b| b.answered(throttled, now));
    }

    pub fn learned(&self) -> Option<Learned> {
        self.with(|b| b.learned())
    }

    /// Goes on from what a run's bucket learned, unless this one was used since it
    /// was made (shared, it knows more recent things than a run saved).
    pub fn learn(&self, l: Learned) {
        self.with(|b| {
            if b.fresh() {
                b.learn(l);
            }
        });
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
    fn until_a_first_throttle_the_burst_grows_with_the_rate_and_can_be_used_at_once() {
        let published = Limits::AWS.mutating;
        let mut b = TokenBucket::new(published);
        b.take(50.0, t(0.0)).unwrap();
        // The burst grows from 50 to 55 and the 5 more are there now: an account with
        // a larger burst is found without waiting for a refill.
        b.answered(false, t(0.0));
        assert!((b.capacity() - 55.0).abs() < 1e-9);
        assert!((b.available(t(0.0)) - 5.0).abs() < 1e-9);
        // After a throttle, calls that go through raise the rate, not the tokens.
        b.answered(true, t(0.0));
        b.answered(false, t(0.0));
        assert_eq!(b.available(t(0.0)), 0.0);
    }

    #[test]
    fn a_throttle_cuts_the_rate_and_calls_that_go_through_raise_it_to_below_the_refused_rate() {
        let published = Limits::AWS.mutating;
        let mut b = TokenBucket::new(published);
        // Calls go through: until a first throttle the rate grows by 10 % of itself a
        // call, past the published one (an account with higher limits), and the burst
        // with it: twice the published rate after 8 calls.
        let mut calls = 0;
        while b.refill_per_sec() < 2.0 * published.refill_per_sec {
            b.answered(false, t(0.0));
            calls += 1;
        }
        assert_eq!(calls, 8);
        let r = published.refill_per_sec * 1.1f64.powi(8);
        assert!((b.refill_per_sec() - r).abs() < 1e-9);
        assert!((b.capacity() - published.capacity * r / published.refill_per_sec).abs() < 1e-9);
        // A throttle: 70 % of that, and the bucket is empty.
        b.answered(true, t(0.0));
        assert!((b.refill_per_sec() - 0.7 * r).abs() < 1e-9);
        assert_eq!(b.available(t(0.0)), 0.0);
        // It climbs back to 95 % of the refused rate by 5 % of the published rate a
        // call (0.25/s), then only creeps (0.2 % of the published rate a call).
        for _ in 0..((0.25 * r / 0.25).ceil() as usize) {
            b.answered(false, t(0.0));
        }
        assert!((b.refill_per_sec() - 0.95 * r).abs() < 1e-9);
        for _ in 0..10 {
            b.answered(false, t(0.0));
        }
        assert!(
            b.refill_per_sec() < 0.95 * r + 0.11,
            "{}",
            b.refill_per_sec()
        );
        // Throttled again and again (an account far below the published limits): the
        // rate falls to its floor, never to zero.
        for _ in 0..100 {
            b.answered(true, t(0.0));
        }
        assert!((b.refill_per_sec() - 0.25).abs() < 1e-9);
        assert_eq!(b.wait_for(1.0, t(0.0)), Duration::from_secs(4));
        // Calls that go through probe slowly above the last refused rate, and the
        // rate follows (the other clients may have gone).
        b.answered(false, t(0.0));
        assert!((b.refill_per_sec() - 0.25).abs() < 1e-9);
        for _ in 0..2000 {
            b.answered(false, t(0.0));
        }
        assert!(
            b.refill_per_sec() > published.refill_per_sec,
            "{}",
            b.refill_per_sec()
        );
    }

    #[test]
    fn what_a_bucket_learned_carries_over_within_bounds() {
        let published = Limits::AWS.describe;
        let mut a = TokenBucket::new(published);
        assert_eq!(a.learned(), None);
        a.answered(true, t(0.0));
        let l = a.learned().unwrap();
        assert_eq!(
            l,
            Learned {
                rate: 14.0,
                refused: Some(20.0),
                tokens: Some(0.0),
                at: Some(t(0.0)),
            }
        );
        let mut b = TokenBucket::new(published);
        b.learn(l);
        assert_eq!(b.refill_per_sec(), 14.0);
        assert_eq!(b.learned(), Some(l));
        // A stored value out of bounds (written by hand, say) is brought back in.
        // The bucket goes on where the other left it: empty at 0 s, 14 tokens at 1 s.
        assert_eq!(b.available(t(1.0)), 14.0);
        b.learn(Learned {
            rate: 1e12,
            refused: Some(f64::NAN),
            tokens: Some(f64::INFINITY),
            at: None,
        });
        assert_eq!(b.refill_per_sec(), 200.0);
        assert_eq!(b.learned().unwrap().refused, None);
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
