//! The simulated cloud of the command line and the service: a region loaded from a
//! fleet snapshot file and written back to it as the run goes.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use chrono::{DateTime, Utc};
use ec2_scheduler_core::access::Token;
use ec2_scheduler_core::overrides::Override;
use ec2_scheduler_core::{Exemption, Instance, Workload};
use ec2_scheduler_engine::Ports;
use ec2_scheduler_engine::ports::{
    AccessStore, ConfigStore, EventRecord, LbTarget, Lock, LockOutcome, RunStore, RunSummaryRow,
    ScheduleStore, StoreError, StoreResult,
};
use ec2_scheduler_engine::run::Run;
use ec2_scheduler_engine::share::PaceShares;
use ec2_scheduler_sim::{Region, SimConfig};

use crate::env::{Store, SystemClock};
use crate::error::Result;
use crate::files::{FileLock, write_atomic};

/// A simulated region loaded from a fleet snapshot and written back to it.
///
/// The file is written when the run's progress is saved (see [`Checkpointed`]), so
/// the file is never behind the store: a run killed at any point resumes from a
/// checkpoint whose effects the file holds. Writes are atomic (a temporary file
/// renamed) and merged under a file lock, so that runs of different workloads on one
/// fleet file keep each other's changes.
pub struct SimCloud {
    pub region: Region,
    /// Where the region is saved; `None` keeps it in memory (the demo).
    path: Option<PathBuf>,
    sync: Mutex<Sync>,
    /// The pacing buckets every run in this region shares (one simulated account).
    pub(crate) pacing: std::sync::OnceLock<ec2_scheduler_engine::Buckets>,
}

impl SimCloud {
    /// The fleet file it is saved to (empty: held in memory).
    pub(crate) fn file_name(&self) -> String {
        self.path
            .as_ref()
            .map(|p| p.display().to_string())
            .unwrap_or_default()
    }
}

/// What the file held when this process last read or wrote it.
#[derive(Default)]
struct Sync {
    /// The instances by id, as written by the last sync.
    instances: HashMap<String, Instance>,
    /// Their ids in the file's order.
    order: Vec<String>,
    /// The region's revision then.
    revision: usize,
    /// The file's identity then: another process's write (a rename) changes it.
    stamp: Option<Stamp>,
}

/// A version of a file: inode, size and modification time.
type Stamp = (u64, u64, std::time::SystemTime);

fn stamp(path: &Path) -> Option<Stamp> {
    use std::os::unix::fs::MetadataExt;
    let m = std::fs::metadata(path).ok()?;
    Some((m.ino(), m.len(), m.modified().ok()?))
}

impl Sync {
    fn record(&mut self, instances: Vec<Instance>, stamp: Option<Stamp>) {
        self.order = instances.iter().map(|i| i.id.clone()).collect();
        self.instances = instances.into_iter().map(|i| (i.id.clone(), i)).collect();
        self.stamp = stamp;
    }

    /// The snapshot file's text: the instances in the file's order.
    fn document(&self, observed_at: DateTime<Utc>) -> serde_json::Result<String> {
        struct InOrder<'a>(&'a [String], &'a HashMap<String, Instance>);
        impl serde::Serialize for InOrder<'_> {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.collect_seq(self.0.iter().filter_map(|id| self.1.get(id)))
            }
        }
        #[derive(serde::Serialize)]
        struct Doc<'a> {
            observed_at: DateTime<Utc>,
            instances: InOrder<'a>,
        }
        let doc = Doc {
            observed_at,
            instances: InOrder(&self.order, &self.instances),
        };
        Ok(serde_json::to_string_pretty(&doc)? + "\n")
    }
}

impl SimCloud {
    /// Loads the snapshot; the region's clock starts now.
    pub fn load(path: &Path) -> Result<Self> {
        Self::load_at(path, Utc::now())
    }

    /// Loads the snapshot; the region's clock starts at `start`.
    pub fn load_at(path: &Path, start: DateTime<Utc>) -> Result<Self> {
        let before = stamp(path);
        let instances = read_fleet(path)?;
        let cloud = Self::new_at(Some(path), instances.clone(), start);
        let mut sync = cloud.lock_sync();
        sync.record(instances, before);
        sync.revision = cloud.region.revision();
        drop(sync);
        Ok(cloud)
    }

    /// A region for `instances` whose clock starts at `start`, saved to `path` if any.
    pub fn new_at(path: Option<&Path>, instances: Vec<Instance>, start: DateTime<Utc>) -> Self {
        SimCloud {
            region: Self::region(instances, start),
            path: path.map(Path::to_path_buf),
            sync: Mutex::new(Sync::default()),
            pacing: std::sync::OnceLock::new(),
        }
    }

    /// A region for `instances`, with load-balancer registrations from the snapshot.
    pub fn region(instances: Vec<Instance>, start: DateTime<Utc>) -> Region {
        let mut by_target: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for i in &instances {
            for lb in i.load_balancers.iter().flatten() {
                by_target.entry(lb.clone()).or_default().push(i.id.clone());
            }
        }
        let region = Region::new(
            instances,
            SimConfig {
                start: Some(start),
                ..SimConfig::default()
            },
        );
        for (t, ids) in by_target {
            region.attach(
                LbTarget::from_name(&t),
                &ids.iter().map(String::as_str).collect::<Vec<_>>(),
            );
        }
        region
    }

    fn lock_sync(&self) -> std::sync::MutexGuard<'_, Sync> {
        self.sync.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The instances `ids` as the snapshot shows them (with their load balancers).
    fn view(&self, ids: impl IntoIterator<Item = String>) -> Vec<Instance> {
        let members = self.region.memberships();
        ids.into_iter()
            .filter_map(|id| self.region.instance(&id))
            .map(|mut i| {
                i.load_balancers = Some(
                    members
                        .get(&i.id)
                        .map(|ts| ts.iter().map(|t| t.name().to_string()).collect())
                        .unwrap_or_default(),
                );
                i
            })
            .collect()
    }

    /// Writes the region's changes to the snapshot file, if it changed since the last
    /// save: under the file's lock, the file is read again if another process
    /// replaced it, and merged (this process's changes win for the instances it
    /// changed; changes made by others to the other instances are kept and taken
    /// into the region), then replaced atomically. The work is in proportion to the
    /// instances that changed, plus one write of the file.
    ///
    /// # Errors
    /// When the file cannot be locked, read back or written.
    pub fn save(&self) -> Result<()> {
        let Some(path) = &self.path else {
            return Ok(());
        };
        let mut sync = self.lock_sync();
        let (revision, ids) = self.region.changed_since(sync.revision);
        if sync.revision == revision {
            return Ok(());
        }
        let mine: HashMap<String, Instance> = self
            .view(ids)
            .into_iter()
            .filter(|i| sync.instances.get(&i.id) != Some(i))
            .map(|i| (i.id.clone(), i))
            .collect();
        if mine.is_empty() {
            sync.revision = revision;
            return Ok(());
        }
        let _lock = FileLock::exclusive(path)?;
        let now = stamp(path);
        if sync.stamp.is_none() || now != sync.stamp {
            // Another process replaced the file: take its changes to the instances
            // this process did not change.
            let on_disk = read_fleet(path)?;
            for theirs in &on_disk {
                if !mine.contains_key(&theirs.id) && sync.instances.get(&theirs.id) != Some(theirs)
                {
                    self.region.edit(&theirs.id, |i| {
                        i.state = theirs.state;
                        i.state_reason = theirs.state_reason.clone();
                        i.instance_type = theirs.instance_type.clone();
                        i.tags = theirs.tags.clone();
                    });
                }
            }
            sync.record(on_disk, now);
        }
        for (id, i) in mine {
            if !sync.instances.contains_key(&id) {
                sync.order.push(id.clone());
            }
            sync.instances.insert(id, i);
        }
        let text = sync.document(ec2_scheduler_engine::ports::Clock::now(&self.region))?;
        write_atomic(path, text.as_bytes())?;
        sync.stamp = stamp(path);
        sync.revision = self.region.revision();
        Ok(())
    }

    pub fn ports<'a>(&'a self, store: &'a dyn Store) -> Ports<'a> {
        Ports {
            compute: &self.region,
            lb: &self.region,
            probe: &self.region,
            notifier: &self.region,
            meter: &self.region,
            store,
            clock: &self.region,
            lease_clock: &SystemClock,
        }
    }
}

/// Reads a fleet snapshot file.
pub fn read_fleet(path: &Path) -> Result<Vec<Instance>> {
    let text = crate::files::read_text(path, crate::files::MAX_DATA_BYTES)?;
    let name = path.display().to_string();
    Ok(ec2_scheduler_config::fleet::load_fleet(&name, &text)?)
}

/// A store that saves the simulated region to its file before every write that
/// records progress, so that the file is never behind the store.
pub struct Checkpointed<'a> {
    pub inner: &'a dyn Store,
    pub sim: &'a SimCloud,
}

impl Checkpointed<'_> {
    fn flush(&self) -> StoreResult<()> {
        self.sim
            .save()
            .map_err(|e| StoreError::Backend(format!("saving the simulated fleet: {e}")))
    }
}

#[async_trait::async_trait]
impl RunStore for Checkpointed<'_> {
    async fn acquire(&self, lock: &Lock, now: DateTime<Utc>) -> StoreResult<LockOutcome> {
        self.inner.acquire(lock, now).await
    }
    async fn renew(&self, lock: &Lock) -> StoreResult<bool> {
        self.inner.renew(lock).await
    }
    async fn holds(&self, lock: &Lock) -> StoreResult<bool> {
        self.inner.holds(lock).await
    }
    async fn lock_of(&self, workload: &str) -> StoreResult<Option<Lock>> {
        self.inner.lock_of(workload).await
    }
    async fn release(&self, workload: &str, owner: &str, run_id: Option<&str>) -> StoreResult<()> {
        self.flush()?;
        self.inner.release(workload, owner, run_id).await
    }
    async fn save_run(&self, run: &mut Run) -> StoreResult<()> {
        self.flush()?;
        self.inner.save_run(run).await
    }
    async fn record_last_action(&self, run: &Run) -> StoreResult<()> {
        self.inner.record_last_action(run).await
    }
    async fn load_run(&self, id: &str) -> StoreResult<Option<Run>> {
        self.inner.load_run(id).await
    }
    async fn unfinished_run(&self, workload: &str) -> StoreResult<Option<Run>> {
        self.inner.unfinished_run(workload).await
    }
    async fn list_runs(&self, workload: Option<&str>) -> StoreResult<Vec<RunSummaryRow>> {
        self.inner.list_runs(workload).await
    }
    async fn exemptions(&self) -> StoreResult<Vec<Exemption>> {
        self.inner.exemptions().await
    }
    async fn add_exemption(&self, e: &Exemption) -> StoreResult<()> {
        self.inner.add_exemption(e).await
    }
    async fn remove_exemption(&self, instance_id: &str) -> StoreResult<bool> {
        self.inner.remove_exemption(instance_id).await
    }
    async fn park(&self, workload: &str, entries: &[(String, LbTarget)]) -> StoreResult<()> {
        self.flush()?;
        self.inner.park(workload, entries).await
    }
    async fn parked(&self, workload: &str, ids: &[String]) -> StoreResult<Vec<(String, LbTarget)>> {
        self.inner.parked(workload, ids).await
    }
    async fn unpark(&self, workload: &str, ids: &[String]) -> StoreResult<()> {
        self.flush()?;
        self.inner.unpark(workload, ids).await
    }
    async fn pace_shares(&self, account: &str) -> StoreResult<Option<(PaceShares, u64)>> {
        self.inner.pace_shares(account).await
    }
    async fn put_pace_shares(
        &self,
        account: &str,
        shares: &PaceShares,
        version: u64,
    ) -> StoreResult<()> {
        self.inner.put_pace_shares(account, shares, version).await
    }
}

#[async_trait::async_trait]
impl ConfigStore for Checkpointed<'_> {
    async fn workload(&self, name: &str) -> StoreResult<Option<Workload>> {
        self.inner.workload(name).await
    }
    async fn workloads(&self) -> StoreResult<Vec<Workload>> {
        self.inner.workloads().await
    }
    async fn put_workload(&self, workload: &Workload) -> StoreResult<Vec<String>> {
        self.inner.put_workload(workload).await
    }
    async fn delete_workload(&self, name: &str) -> StoreResult<bool> {
        self.inner.delete_workload(name).await
    }
}

#[async_trait::async_trait]
impl AccessStore for Checkpointed<'_> {
    async fn token(&self, id: &str) -> StoreResult<Option<Token>> {
        self.inner.token(id).await
    }
    async fn tokens(&self) -> StoreResult<Vec<Token>> {
        self.inner.tokens().await
    }
    async fn put_token(&self, token: &Token) -> StoreResult<()> {
        self.inner.put_token(token).await
    }
}

#[async_trait::async_trait]
impl ScheduleStore for Checkpointed<'_> {
    async fn overrides(&self, workload: Option<&str>) -> StoreResult<Vec<Override>> {
        self.inner.overrides(workload).await
    }
    async fn add_override(&self, o: &Override) -> StoreResult<()> {
        self.inner.add_override(o).await
    }
    async fn remove_override(&self, id: &str) -> StoreResult<bool> {
        self.inner.remove_override(id).await
    }
    async fn claim_event(&self, record: &EventRecord) -> StoreResult<bool> {
        self.inner.claim_event(record).await
    }
    async fn update_event(&self, record: &EventRecord) -> StoreResult<()> {
        self.inner.update_event(record).await
    }
    async fn event_records(
        &self,
        workload: Option<&str>,
        limit: usize,
    ) -> StoreResult<Vec<EventRecord>> {
        self.inner.event_records(workload, limit).await
    }
}
