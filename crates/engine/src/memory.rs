//! An in-memory [`RunStore`], for tests, the demo and single-process use.

use std::collections::BTreeMap;
use std::sync::Mutex;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use ec2_scheduler_core::{Exemption, Workload};

use crate::ports::{
    AccessStore, ConfigStore, EventRecord, LbTarget, Lock, LockOutcome, RunStore, RunSummaryRow,
    ScheduleStore, StoreError, StoreResult,
};
use crate::run::Run;
use crate::share::PaceShares;
use ec2_scheduler_core::access::Token;
use ec2_scheduler_core::overrides::Override;

#[derive(Default)]
struct Inner {
    locks: BTreeMap<String, Lock>,
    runs: BTreeMap<String, Run>,
    exemptions: Vec<Exemption>,
    parked: BTreeMap<(String, String), Vec<LbTarget>>,
    workloads: BTreeMap<String, Workload>,
    overrides: Vec<Override>,
    events: BTreeMap<String, EventRecord>,
    tokens: Vec<Token>,
    pace: BTreeMap<String, (PaceShares, u64)>,
}

/// Everything in a mutex.
#[derive(Default)]
pub struct MemoryStore {
    inner: Mutex<Inner>,
}

impl MemoryStore {
    pub fn new() -> Self {
        Self::default()
    }

    fn with<T>(&self, f: impl FnOnce(&mut Inner) -> T) -> T {
        f(&mut self.inner.lock().unwrap_or_else(|p| p.into_inner()))
    }
}

/// Tiers of `old` that `new` no longer has.
pub fn removed_tiers(old: Option<&Workload>, new: &Workload) -> Vec<String> {
    old.map(|o| {
        o.tiers()
            .iter()
            .filter(|t| new.tier(t.name.as_str()).is_none())
            .map(|t| t.name.to_string())
            .collect()
    })
    .unwrap_or_default()
}

/// The shared lock rule: free, expired, or already ours.
pub fn may_take(current: Option<&Lock>, wanted: &Lock, now: DateTime<Utc>) -> bool {
    current.is_none_or(|c| c.expires <= now || c.owner == wanted.owner)
}

#[async_trait]
impl RunStore for MemoryStore {
    async fn acquire(&self, lock: &Lock, now: DateTime<Utc>) -> StoreResult<LockOutcome> {
        Ok(self.with(|i| {
            let cur = i.locks.get(&lock.workload);
            if may_take(cur, lock, now) {
                i.locks.insert(lock.workload.clone(), lock.clone());
                LockOutcome::Acquired
            } else {
                LockOutcome::Held(cur.expect("held").clone())
            }
        }))
    }

    async fn renew(&self, lock: &Lock) -> StoreResult<bool> {
        Ok(self.with(|i| match i.locks.get_mut(&lock.workload) {
            Some(cur) if cur.owner == lock.owner && cur.run_id == lock.run_id => {
                *cur = lock.clone();
                true
            }
            _ => false,
        }))
    }

    async fn lock_of(&self, workload: &str) -> StoreResult<Option<Lock>> {
        Ok(self.with(|i| i.locks.get(workload).cloned()))
    }

    async fn release(&self, workload: &str, owner: &str, run_id: Option<&str>) -> StoreResult<()> {
        self.with(|i| {
            if i.locks
                .get(workload)
                .is_some_and(|l| l.owner == owner && run_id.is_none_or(|r| l.run_id == r))
            {
                i.locks.remove(workload);
            }
        });
        Ok(())
    }

    async fn pace_shares(&self, account: &str) -> StoreResult<Option<(PaceShares, u64)>> {
        Ok(self.with(|i| i.pace.get(account).cloned()))
    }

    async fn put_pace_shares(
        &self,
        account: &str,
        shares: &PaceShares,
        version: u64,
    ) -> StoreResult<()> {
        self.with(|i| {
            let stored = i.pace.get(account).map_or(0, |(_, v)| *v);
            if stored != version {
                return Err(StoreError::pace_conflict(account, version));
            }
            i.pace
                .insert(account.to_string(), (shares.clone(), version + 1));
            Ok(())
        })
    }

    async fn save_run(&self, run: &mut Run) -> StoreResult<()> {
        self.with(|i| {
            let stored = i.runs.get(&run.id).map_or(0, |r| r.version);
            if stored != run.version {
                return Err(StoreError::run_conflict(&run.id, run.version));
            }
            run.version = stored + 1;
            i.runs.insert(run.id.clone(), run.clone());
            Ok(())
        })
    }

    async fn load_run(&self, id: &str) -> StoreResult<Option<Run>> {
        Ok(self.with(|i| i.runs.get(id).cloned()))
    }

    async fn unfinished_run(&self, workload: &str) -> StoreResult<Option<Run>> {
        Ok(self.with(|i| {
            i.runs
                .values()
                .filter(|r| r.workload == workload && !r.status.is_finished())
                .max_by_key(|r| r.started)
                .cloned()
        }))
    }

    async fn list_runs(&self, workload: Option<&str>) -> StoreResult<Vec<RunSummaryRow>> {
        let mut rows: Vec<RunSummaryRow> = self.with(|i| {
            i.runs
                .values()
                .filter(|r| workload.is_none_or(|w| r.workload == w))
                .map(|r| RunSummaryRow {
                    id: r.id.clone(),
                    workload: r.workload.clone(),
                    action: r.action.to_string(),
                    status: r.status.as_str().to_string(),
                    started: r.started,
                    finished: r.finished,
                })
                .collect()
        });
        rows.sort_by(|a, b| b.started.cmp(&a.started).then(b.id.cmp(&a.id)));
        Ok(rows)
    }

    async fn exemptions(&self) -> StoreResult<Vec<Exemption>> {
        Ok(self.with(|i| i.exemptions.clone()))
    }

    async fn add_exemption(&self, e: &Exemption) -> StoreResult<()> {
        e.check().map_err(|x| StoreError::Invalid(x.to_string()))?;
        self.with(|i| {
            i.exemptions.retain(|x| x.instance_id != e.instance_id);
            i.exemptions.push(e.clone());
        });
        Ok(())
    }

    async fn remove_exemption(&self, instance_id: &str) -> StoreResult<bool> {
        Ok(self.with(|i| {
            let before = i.exemptions.len();
            i.exemptions.retain(|e| e.instance_id != instance_id);
            before != i.exemptions.len()
        }))
    }

    async fn park(&self, workload: &str, entries: &[(String, LbTarget)]) -> StoreResult<()> {
        self.with(|i| {
            for (id, t) in entries {
                let v = i
                    .parked
                    .entry((workload.to_string(), id.clone()))
                    .or_default();
                if !v.contains(t) {
                    v.push(t.clone());
                }
            }
        });
        Ok(())
    }

    async fn parked(&self, workload: &str, ids: &[String]) -> StoreResult<Vec<(String, LbTarget)>> {
        Ok(self.with(|i| {
            ids.iter()
                .flat_map(|id| {
                    i.parked
                        .get(&(workload.to_string(), id.clone()))
                        .into_iter()
                        .flatten()
                        .map(move |t| (id.clone(), t.clone()))
                })
                .collect()
        }))
    }

    async fn unpark(&self, workload: &str, ids: &[String]) -> StoreResult<()> {
        self.with(|i| {
            for id in ids {
                i.parked.remove(&(workload.to_string(), id.clone()));
            }
        });
        Ok(())
    }
}

#[async_trait]
impl ConfigStore for MemoryStore {
    async fn workload(&self, name: &str) -> StoreResult<Option<Workload>> {
        Ok(self.with(|i| i.workloads.get(name).cloned()))
    }

    async fn workloads(&self) -> StoreResult<Vec<Workload>> {
        Ok(self.with(|i| i.workloads.values().cloned().collect()))
    }

    async fn put_workload(&self, workload: &Workload) -> StoreResult<Vec<String>> {
        let old = self.with(|i| {
            i.workloads
                .insert(workload.name.to_string(), workload.clone())
        });
        Ok(removed_tiers(old.as_ref(), workload))
    }

    async fn delete_workload(&self, name: &str) -> StoreResult<bool> {
        Ok(self.with(|i| i.workloads.remove(name).is_some()))
    }
}

#[async_trait]
impl AccessStore for MemoryStore {
    async fn token(&self, id: &str) -> StoreResult<Option<Token>> {
        Ok(self.with(|i| i.tokens.iter().find(|t| t.id == id).cloned()))
    }
    async fn tokens(&self) -> StoreResult<Vec<Token>> {
        Ok(self.with(|i| i.tokens.clone()))
    }
    async fn put_token(&self, token: &Token) -> StoreResult<()> {
        self.with(|i| match i.tokens.iter_mut().find(|t| t.id == token.id) {
            Some(t) => *t = token.clone(),
            None => i.tokens.push(token.clone()),
        });
        Ok(())
    }
}

#[async_trait]
impl ScheduleStore for MemoryStore {
    async fn overrides(&self, workload: Option<&str>) -> StoreResult<Vec<Override>> {
        Ok(self.with(|i| {
            i.overrides
                .iter()
                .filter(|o| workload.is_none_or(|w| o.workload == w))
                .cloned()
                .collect()
        }))
    }
    async fn add_override(&self, o: &Override) -> StoreResult<()> {
        self.with(|i| i.overrides.push(o.clone()));
        Ok(())
    }
    async fn remove_override(&self, id: &str) -> StoreResult<bool> {
        Ok(self.with(|i| {
            let before = i.overrides.len();
            i.overrides.retain(|o| o.id != id);
            i.overrides.len() < before
        }))
    }
    async fn claim_event(&self, record: &EventRecord) -> StoreResult<bool> {
        Ok(self.with(|i| match i.events.entry(record.key()) {
            std::collections::btree_map::Entry::Occupied(_) => false,
            std::collections::btree_map::Entry::Vacant(v) => {
                v.insert(record.clone());
                true
            }
        }))
    }
    async fn update_event(&self, record: &EventRecord) -> StoreResult<()> {
        self.with(|i| i.events.insert(record.key(), record.clone()));
        Ok(())
    }
    async fn event_records(
        &self,
        workload: Option<&str>,
        limit: usize,
    ) -> StoreResult<Vec<EventRecord>> {
        Ok(self.with(|i| {
            let mut all: Vec<EventRecord> = i
                .events
                .values()
                .filter(|e| workload.is_none_or(|w| e.workload == w))
                .cloned()
                .collect();
            all.sort_by_key(|e| std::cmp::Reverse(e.at));
            all.truncate(limit);
            all
        }))
    }
}
