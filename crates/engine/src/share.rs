//! Pacing shared through the store, for runs driven by different processes (the
//! serverless run step: each Lambda container paces alone otherwise).
//!
//! The store keeps one record per account and region: the runs that lease a share
//! of its buckets, each with the buckets it asked tokens of since its previous
//! renewal and when its lease ends, and what is left of each bucket's burst. A run
//! paces each bucket it uses at one part in (1 + the other live holders that use
//! it), and next to nothing of the others: runs waiting for instances, or done with
//! a bucket, leave it to the others. Every run renews its lease (compare-and-set on
//! the record) once in [`RENEW`], and at once when it asks tokens of a bucket its
//! lease does not name; one that finishes leaves and gives back what it holds; one
//! that vanishes (a killed container) is forgotten when its lease ends. Between
//! renewals a run does not see the others join or leave: the account's buckets are
//! shared within that lag, and the engine's backoff absorbs a throttle.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::pace::{BucketSpec, Limits};
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
    /// The buckets the run asked tokens of since.
    #[serde(default, skip_serializing_if = "BTreeSet::is_empty")]
    pub touched: BTreeSet<String>,
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

    /// The burst of `bucket` at `now`: it refills at the bucket's rate while no
    /// live holder uses the bucket (their own buckets refill at the rate between
    /// them otherwise).
    fn burst_at(&mut self, bucket: &str, spec: BucketSpec, now: DateTime<Utc>) -> &mut Burst {
        let idle = !self
            .holders
            .values()
            .any(|h| h.until > now && h.uses.contains(bucket));
        let b = self.burst.entry(bucket.to_string()).or_insert(Burst {
            tokens: spec.capacity,
            at: now,
        });
        let secs = (now - b.at).num_milliseconds().max(0) as f64 / 1000.0;
        if !b.tokens.is_finite() {
            b.tokens = spec.capacity;
        } else if idle {
            b.tokens = (b.tokens + secs * spec.refill_per_sec).min(spec.capacity);
        }
        b.tokens = b.tokens.clamp(0.0, spec.capacity);
        b.at = b.at.max(now);
        b
    }

    /// Takes up to `want` tokens of the account's burst of `bucket` (a bucket of
    /// `spec`) at `now`: runs that begin at one instant, or whose share grew, so
    /// share the burst between them instead of each holding its share of all of it.
    pub fn claim(&mut self, bucket: &str, spec: BucketSpec, want: f64, now: DateTime<Utc>) -> f64 {
        let b = self.burst_at(bucket, spec, now);
        let got = want.min(b.tokens).max(0.0);
        b.tokens -= got;
        got
    }

    /// Gives `tokens` of `bucket` back to the account's burst: what a run holds
    /// beyond its share's burst when its share shrank, or when it ends.
    pub fn give_back(&mut self, bucket: &str, spec: BucketSpec, tokens: f64, now: DateTime<Utc>) {
        let b = self.burst_at(bucket, spec, now);
        if tokens.is_finite() && tokens > 0.0 {
            b.tokens = (b.tokens + tokens).min(spec.capacity);
        }
    }

    /// The tokens `holder` should hold of each bucket of `limits` now that the
    /// record says what its shares are, from the tokens it holds (`held`, by bucket
    /// name; none for a run that begins): its share of the bucket's burst for the
    /// buckets it uses (claimed from the account's burst as far as it goes, and at
    /// least what it holds up to one call), none for the others; what it held beyond
    /// that goes back to the burst.
    pub fn settle(
        &mut self,
        holder: &str,
        limits: &Limits,
        held: &BTreeMap<&str, f64>,
        now: DateTime<Utc>,
    ) -> BTreeMap<&'static str, f64> {
        let uses = self
            .holders
            .get(holder)
            .map(|h| h.uses.clone())
            .unwrap_or_default();
        let mut out = BTreeMap::new();
        for (name, spec) in limits.named() {
            // A share's burst may be less than one call: a run keeps up to one
            // call's worth of what its own bucket refilled, or it would never call.
            let (target, keep) = if uses.contains(name) {
                let t = spec.capacity * self.share(holder, name, now);
                (t, t.max(1.0))
            } else {
                (0.0, 0.0)
            };
            let have = held.get(name).copied().unwrap_or(0.0).max(0.0);
            let tokens = if have > keep {
                self.give_back(name, spec, have - keep, now);
                keep
            } else if have >= target {
                have
            } else {
                have + self.claim(name, spec, target - have, now)
            };
            out.insert(name, tokens);
        }
        out
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
    fn runs_share_the_burst_and_it_refills_while_no_run_uses_the_bucket() {
        let limits = crate::pace::Limits::AWS;
        let spec = limits.stop_instances;
        let none = BTreeMap::new();
        let mut s = PaceShares::default();
        // Five runs begin at one instant: the first holds the whole burst (it sees
        // no other), the others nothing yet.
        let mut held = Vec::new();
        for k in 0..5 {
            let r = format!("r{k}");
            s.enter(&r, uses(&["stop_instances"]), t(60), t(0));
            held.push(s.settle(&r, &limits, &none, t(0))["stop_instances"]);
        }
        assert_eq!(held, [1000.0, 0.0, 0.0, 0.0, 0.0]);
        // Renewing, the first gives back what its share no longer holds, and the
        // others take their share of it.
        let mut now_held = BTreeMap::new();
        now_held.insert("stop_instances", 1000.0);
        assert_eq!(
            s.settle("r0", &limits, &now_held, t(1))["stop_instances"],
            200.0
        );
        now_held.insert("stop_instances", 0.0);
        for k in 1..5 {
            let got = s.settle(&format!("r{k}"), &limits, &now_held, t(1));
            assert_eq!(got["stop_instances"], 200.0);
            // It uses no other bucket, and holds none of them.
            assert_eq!(got["mutating"], 0.0);
        }
        // A share's burst below one call (100 runs of StartInstances' 5): what the
        // run's own bucket refilled is kept up to one call, not given back.
        let mut many = PaceShares::default();
        for k in 0..100 {
            many.enter(&format!("m{k}"), uses(&["start_requests"]), t(60), t(0));
        }
        let mut refilled = BTreeMap::new();
        refilled.insert("start_requests", 0.8);
        assert_eq!(
            many.settle("m0", &limits, &refilled, t(1))["start_requests"],
            0.8
        );
        refilled.insert("start_requests", 1.5);
        assert_eq!(
            many.settle("m0", &limits, &refilled, t(1))["start_requests"],
            1.0
        );
        // While runs use the bucket, the burst does not refill (their buckets do).
        assert_eq!(s.claim("stop_instances", spec, 10.0, t(30)), 0.0);
        // Once no live run uses it, it refills at the bucket's rate (over the time
        // since it was last drawn on: 32 s).
        assert_eq!(s.claim("stop_instances", spec, 1000.0, t(62)), 640.0);
        assert_eq!(s.claim("stop_instances", spec, 100.0, t(63)), 20.0);
        s.give_back("stop_instances", spec, 5000.0, t(63));
        assert_eq!(s.burst["stop_instances"].tokens, 1000.0);
        // A record written by hand with nonsense in it starts full again.
        s.burst.get_mut("stop_instances").unwrap().tokens = f64::NAN;
        assert_eq!(s.claim("stop_instances", spec, 10.0, t(64)), 10.0);
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
