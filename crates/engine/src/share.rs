//! Pacing shared through the store, for runs driven by different processes (the
//! serverless run step: each Lambda container paces alone otherwise).
//!
//! The store keeps one record per account and region: the runs that lease a share
//! of its buckets, each with the buckets it asked tokens of in its last tick and
//! when its lease ends. A run paces each bucket at one part in (1 + the other live
//! holders that use it): runs waiting for instances, or done with a bucket, leave
//! it to the others. Every run renews its lease (compare-and-set on the record)
//! once in [`RENEW`], and at once when the buckets it uses change; one that finishes
//! leaves; one that vanishes (a killed container) is forgotten when its lease ends.
//! Between renewals a run does not see the others join or leave: the account's
//! buckets are shared within that lag, and the engine's backoff absorbs a throttle.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::pace::BucketSpec;
use crate::ports::{RunStore, StoreError, StoreResult};

/// How often a run renews its lease while it uses the same buckets.
pub const RENEW: Duration = Duration::from_secs(5);
/// How long a lease lasts unrenewed: longer than a run waits between two ticks
/// while it uses a bucket (a wait for instances polls sooner).
pub const LEASE: Duration = Duration::from_secs(60);
/// How many times a lease is tried against concurrent writers of the record.
const TRIES: usize = 50;

/// Who shares an account's buckets, as the store keeps it.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct PaceShares {
    #[serde(default)]
    pub holders: BTreeMap<String, Holding>,
    /// What is left of each bucket's burst for runs that begin ([`PaceShares::claim`]).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub burst: BTreeMap<String, Burst>,
}

/// An account bucket's burst as runs that begin draw on it: full at first, refilled
/// at the bucket's rate.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Burst {
    pub tokens: f64,
    pub at: DateTime<Utc>,
}

/// One run's lease.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Holding {
    /// When the lease ends unless renewed.
    pub until: DateTime<Utc>,
    /// The buckets (by name: `describe`, `mutating`, `start_requests`,
    /// `start_instances`, `stop_instances`) the run asked tokens of.
    #[serde(default)]
    pub uses: BTreeSet<String>,
}

/// A run's last lease, kept with the run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Leased {
    /// When it was written.
    pub at: DateTime<Utc>,
    /// The buckets it said the run uses.
    pub uses: BTreeSet<String>,
}

impl PaceShares {
    fn forget_ended(&mut self, now: DateTime<Utc>) {
        self.holders.retain(|_, h| h.until > now);
    }

    /// `holder` holds a lease until `until`, using `uses`; ended leases are dropped.
    pub fn enter(
        &mut self,
        holder: &str,
        uses: BTreeSet<String>,
        until: DateTime<Utc>,
        now: DateTime<Utc>,
    ) {
        self.forget_ended(now);
        self.holders
            .insert(holder.to_string(), Holding { until, uses });
    }

    /// `holder` holds no lease any more; ended leases are dropped.
    pub fn leave(&mut self, holder: &str, now: DateTime<Utc>) {
        self.forget_ended(now);
        self.holders.remove(holder);
    }

    /// Takes up to `want` tokens of the burst of `bucket` (a bucket of `spec`) at
    /// `now`: what a run that begins holds at first. Runs that begin at one instant
    /// so share the account's burst between them, instead of each holding its share
    /// of all of it before the others' leases are seen. The burst refills at the
    /// bucket's whole rate whoever else paces on it: it limits arrivals, not the
    /// runs' own refills.
    pub fn claim(&mut self, bucket: &str, spec: BucketSpec, want: f64, now: DateTime<Utc>) -> f64 {
        let b = self.burst.entry(bucket.to_string()).or_insert(Burst {
            tokens: spec.capacity,
            at: now,
        });
        let secs = (now - b.at).num_milliseconds().max(0) as f64 / 1000.0;
        if secs.is_finite() && b.tokens.is_finite() {
            b.tokens = (b.tokens + secs * spec.refill_per_sec).min(spec.capacity);
        } else {
            b.tokens = spec.capacity;
        }
        b.at = b.at.max(now);
        let got = want.min(b.tokens).max(0.0);
        b.tokens -= got;
        got
    }

    /// The share of `bucket` that `holder` paces at: one part in one more than the
    /// other holders whose lease is live at `now` and who use it.
    pub fn share(&self, holder: &str, bucket: &str, now: DateTime<Utc>) -> f64 {
        let others = self
            .holders
            .iter()
            .filter(|(k, h)| k.as_str() != holder && h.until > now && h.uses.contains(bucket))
            .count();
        1.0 / (others + 1) as f64
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

    fn t(s: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_800_000_000 + s, 0).unwrap()
    }

    fn uses(names: &[&str]) -> BTreeSet<String> {
        names.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn a_holder_shares_each_bucket_with_the_live_holders_that_use_it() {
        let mut s = PaceShares::default();
        s.enter("a", uses(&["describe", "stop_instances"]), t(60), t(0));
        s.enter("b", uses(&["describe"]), t(60), t(0));
        s.enter("c", uses(&["describe", "stop_instances"]), t(10), t(0));
        assert_eq!(s.share("a", "describe", t(0)), 1.0 / 3.0);
        assert_eq!(s.share("a", "stop_instances", t(0)), 0.5);
        assert_eq!(s.share("b", "stop_instances", t(0)), 1.0 / 3.0);
        // A holder not yet in the record counts itself.
        assert_eq!(s.share("d", "describe", t(0)), 0.25);
        // c's lease ended: it no longer counts, and the next write drops it.
        assert_eq!(s.share("a", "stop_instances", t(10)), 1.0);
        s.leave("b", t(11));
        assert_eq!(s.holders.keys().collect::<Vec<_>>(), ["a"]);
        assert_eq!(s.share("a", "describe", t(11)), 1.0);
    }

    #[test]
    fn runs_that_begin_together_share_the_burst_and_it_refills_at_the_rate() {
        let spec = BucketSpec {
            capacity: 1000.0,
            refill_per_sec: 20.0,
        };
        let mut s = PaceShares::default();
        let got: Vec<f64> = (1..=5)
            .map(|k| s.claim("stop_instances", spec, 1000.0 / k as f64, t(0)))
            .collect();
        assert_eq!(got, [1000.0, 0.0, 0.0, 0.0, 0.0]);
        assert_eq!(s.claim("stop_instances", spec, 100.0, t(2)), 40.0);
        assert_eq!(s.claim("stop_instances", spec, 500.0, t(1000)), 500.0);
        assert_eq!(s.claim("stop_instances", spec, 1000.0, t(1000)), 500.0);
        // A record written by hand with nonsense in it starts full again.
        s.burst.get_mut("stop_instances").unwrap().tokens = f64::NAN;
        assert_eq!(s.claim("stop_instances", spec, 10.0, t(1001)), 10.0);
    }

    #[test]
    fn a_write_from_a_stale_read_is_refused_and_the_update_reads_again() {
        let store = MemoryStore::new();
        pollster::block_on(async {
            assert_eq!(store.pace_shares("acct").await.unwrap(), None);
            let a = update(&store, "acct", |s| {
                s.enter("a", uses(&["describe"]), t(60), t(0))
            })
            .await
            .unwrap();
            let (read, v) = store.pace_shares("acct").await.unwrap().unwrap();
            assert_eq!((read, v), (a, 1));
            // Another writer gets there first: a write from version 1 is refused.
            update(&store, "acct", |s| {
                s.enter("b", uses(&["describe"]), t(60), t(0))
            })
            .await
            .unwrap();
            let mut stale = PaceShares::default();
            stale.enter("c", uses(&["describe"]), t(60), t(0));
            assert!(matches!(
                store.put_pace_shares("acct", &stale, 1).await,
                Err(StoreError::Conflict(_))
            ));
            let (s, v) = store.pace_shares("acct").await.unwrap().unwrap();
            assert_eq!(v, 2);
            assert_eq!(s.holders.keys().collect::<Vec<_>>(), ["a", "b"]);
            assert_eq!(s.share("c", "describe", t(0)), 1.0 / 3.0);
        });
    }
}
