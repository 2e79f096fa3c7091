//! Pacing shared through the store, for runs driven by different processes (the
//! serverless run step: each Lambda container paces alone otherwise).
//!
//! The store keeps one record per account and region: the level of each of the
//! account's buckets, as the runs drawing on it have left it. A run that needs
//! tokens reserves them on the record (compare-and-set) before its call: taken now
//! when the bucket holds them, else booked ahead, the level going below zero, and
//! the run told when its tokens will have refilled. The level is a queue: a run
//! that books after another waits behind it, so the runs are served in the order
//! they asked and the account's bucket is used whenever any run needs it (the
//! generic cell rate algorithm). Runs keep what they booked with the run
//! ([`Run::pace_grants`](crate::Run::pace_grants)), so a new executor (a new
//! Lambda container) honours it; what a run booked and did not use goes back when
//! it ends, and what a vanished run booked is lost once, not held.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::pace::BucketSpec;
use crate::ports::{RunStore, StoreError, StoreResult};

/// How many times a reservation is tried against concurrent writers of the record.
const TRIES: usize = 50;

/// The account's buckets as runs in different processes share them, as the store
/// keeps it.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct PaceShares {
    /// Each bucket's level (by name: `describe`, `mutating`, `start_requests`,
    /// `start_instances`, `stop_instances`).
    #[serde(default)]
    pub levels: BTreeMap<String, Level>,
}

/// A bucket's tokens at an instant: at most its capacity, below zero when runs
/// booked tokens ahead of its refill.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Level {
    pub tokens: f64,
    pub at: DateTime<Utc>,
}

/// What a run asks of one bucket: at least `min` tokens, and up to `max` of what
/// the bucket holds now (a batch takes what is there).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Want {
    pub bucket: &'static str,
    pub spec: BucketSpec,
    pub min: f64,
    pub max: f64,
}

/// Tokens of one bucket a run booked, usable from `at`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Grant {
    pub tokens: f64,
    pub at: DateTime<Utc>,
}

impl PaceShares {
    /// The level of `bucket` at `now`: refilled at the bucket's rate since it was
    /// last written, up to its capacity (full the first time).
    fn level_at(&mut self, bucket: &str, spec: BucketSpec, now: DateTime<Utc>) -> &mut Level {
        let l = self.levels.entry(bucket.to_string()).or_insert(Level {
            tokens: spec.capacity,
            at: now,
        });
        if !l.tokens.is_finite() || l.tokens > spec.capacity {
            l.tokens = spec.capacity;
        }
        let secs = (now - l.at).num_microseconds().unwrap_or(0).max(0) as f64 / 1e6;
        l.tokens = (l.tokens + secs * spec.refill_per_sec).min(spec.capacity);
        l.at = l.at.max(now);
        l
    }

    /// Books what `wants` asks at `now`: for each bucket, what it holds up to `max`
    /// when that is at least `min`, else `min` ahead of the refill. Answers the
    /// tokens booked of each (in the order asked) and when they may all be used:
    /// `now`, or when the slowest bucket will have refilled what was booked ahead.
    pub fn reserve(&mut self, wants: &[Want], now: DateTime<Utc>) -> (Vec<f64>, DateTime<Utc>) {
        let mut at = now;
        let mut got = Vec::with_capacity(wants.len());
        for w in wants {
            let rate = w.spec.refill_per_sec.max(1e-9);
            let l = self.level_at(w.bucket, w.spec, now);
            let have = l.tokens.floor();
            let n = if have >= w.min {
                have.min(w.max).max(w.min)
            } else {
                let short = w.min - l.tokens;
                let secs = (short / rate).min(1e9);
                at = at.max(now + chrono::Duration::microseconds((secs * 1e6).ceil() as i64));
                w.min
            };
            l.tokens -= n;
            got.push(n);
        }
        (got, at)
    }

    /// Gives back `tokens` of `bucket` that a run booked and will not use.
    pub fn give_back(&mut self, bucket: &str, spec: BucketSpec, tokens: f64, now: DateTime<Utc>) {
        if tokens.is_finite() && tokens > 0.0 {
            let l = self.level_at(bucket, spec, now);
            l.tokens = (l.tokens + tokens).min(spec.capacity);
        }
    }

    /// When the record was last drawn on (for its expiry in the store).
    pub fn last_drawn(&self) -> Option<DateTime<Utc>> {
        self.levels.values().map(|l| l.at).max()
    }
}

/// Reads the record of `account`, changes it with `change` and writes it back if no
/// one wrote it since (trying again otherwise): the record as written.
///
/// # Errors
/// The store failed, or the record kept changing under the writer [`TRIES`] times.
pub async fn update(
    store: &dyn RunStore,
    account: &str,
    mut change: impl FnMut(&mut PaceShares),
) -> StoreResult<PaceShares> {
    for _ in 0..TRIES {
        let (mut shares, version) = store.pace_shares(account).await?.unwrap_or_default();
        change(&mut shares);
        match store.put_pace_shares(account, &shares, version).await {
            Ok(()) => return Ok(shares),
            Err(StoreError::Conflict(_)) => continue,
            Err(e) => return Err(e),
        }
    }
    Err(StoreError::Conflict(format!(
        "the pacing record of {account} changed under each of {TRIES} writes"
    )))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::memory::MemoryStore;
    use crate::pace::Limits;

    fn t(s: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_800_000_000 + s, 0).unwrap()
    }

    fn want(bucket: &'static str, spec: BucketSpec, min: f64, max: f64) -> Want {
        Want {
            bucket,
            spec,
            min,
            max,
        }
    }

    #[test]
    fn runs_are_served_in_the_order_they_asked_and_the_bucket_never_overdrawn() {
        let spec = Limits::AWS.start_instances; // 1,000, then 2 a second
        let mut s = PaceShares::default();
        // The first run takes the burst its batch wants, at once.
        let (got, at) = s.reserve(&[want("start_instances", spec, 50.0, 800.0)], t(0));
        assert_eq!((got, at), (vec![800.0], t(0)));
        // The next takes what is left, up to its batch.
        let (got, at) = s.reserve(&[want("start_instances", spec, 50.0, 1000.0)], t(0));
        assert_eq!((got, at), (vec![200.0], t(0)));
        // Then each books its 50 ahead, one after the other: 25 s apart.
        let (_, a) = s.reserve(&[want("start_instances", spec, 50.0, 1000.0)], t(0));
        let (_, b) = s.reserve(&[want("start_instances", spec, 50.0, 1000.0)], t(1));
        assert_eq!((a, b), (t(25), t(50)));
        // Tokens given back shorten the queue for who asks next.
        s.give_back("start_instances", spec, 50.0, t(2));
        let (_, c) = s.reserve(&[want("start_instances", spec, 50.0, 1000.0)], t(2));
        assert_eq!(c, t(50));
        // Idle, the bucket refills to its capacity and no more.
        let (got, at) = s.reserve(&[want("start_instances", spec, 1.0, 5000.0)], t(5000));
        assert_eq!((got, at), (vec![1000.0], t(5000)));
    }

    #[test]
    fn a_call_that_needs_two_buckets_goes_when_both_have_refilled() {
        let l = Limits::AWS;
        let mut s = PaceShares::default();
        let call = |s: &mut PaceShares, now| {
            s.reserve(
                &[
                    want("start_requests", l.start_requests, 1.0, 1.0),
                    want("start_instances", l.start_instances, 1.0, 10.0),
                ],
                now,
            )
        };
        // The request bucket (5, then 2 a second) binds: five calls at once, then
        // one every half second.
        for _ in 0..5 {
            assert_eq!(call(&mut s, t(0)), (vec![1.0, 10.0], t(0)));
        }
        let (_, at) = call(&mut s, t(0));
        assert_eq!(at, t(0) + chrono::Duration::milliseconds(500));
        // A record written by hand with nonsense in it starts full again.
        s.levels.get_mut("start_requests").unwrap().tokens = f64::NAN;
        assert_eq!(call(&mut s, t(0)).1, t(0));
    }

    #[test]
    fn a_write_from_a_stale_read_is_refused_and_the_update_reads_again() {
        let store = MemoryStore::new();
        let spec = Limits::AWS.describe;
        let draw = |s: &mut PaceShares| {
            s.reserve(&[want("describe", spec, 1.0, 1.0)], t(0));
        };
        pollster::block_on(async {
            assert_eq!(store.pace_shares("acct").await.unwrap(), None);
            let a = update(&store, "acct", draw).await.unwrap();
            let (read, v) = store.pace_shares("acct").await.unwrap().unwrap();
            assert_eq!((read, v), (a, 1));
            // Another writer gets there first: a write from version 1 is refused.
            update(&store, "acct", draw).await.unwrap();
            let mut stale = PaceShares::default();
            draw(&mut stale);
            assert!(matches!(
                store.put_pace_shares("acct", &stale, 1).await,
                Err(StoreError::Conflict(_))
            ));
            // Both draws are counted.
            let (s, v) = store.pace_shares("acct").await.unwrap().unwrap();
            assert_eq!(v, 2);
            assert_eq!(s.levels["describe"].tokens, 98.0);
        });
    }
}
