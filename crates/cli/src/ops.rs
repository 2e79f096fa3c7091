//! The commands that act: `run`, `status`, `runs`, `exempt`, `load`, and what they
//! share (opening the store, finding the workload, the simulated cloud).

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use anyhow::{Context, anyhow, bail};
use chrono::{DateTime, NaiveDate, Utc};
use ec2_scheduler_aws::dynamo::{DynamoStore, Tables};
use ec2_scheduler_aws::{AwsCloud, CallCounter, Connect, sdk_config};
use ec2_scheduler_core::fleet::membership;
use ec2_scheduler_core::{Exemption, Instance, Workload};
use ec2_scheduler_engine::ports::{
    ConfigStore, LbTarget, Lock, LockOutcome, RunStore, RunSummaryRow, StoreError, StoreResult,
};
use ec2_scheduler_engine::{
    Begin, EngineError, Executor, Ports, Run, RunRequest, RunStatus, Settings, Tick,
};
use ec2_scheduler_sim::{Region, SimConfig};
use ec2_scheduler_store::SqliteStore;

use crate::cli::Invalid;
use crate::files::{FileLock, write_atomic};
use crate::progress::Progress;

/// A store that holds both runs and workloads.
pub trait Store: RunStore + ConfigStore {}
impl<T: RunStore + ConfigStore> Store for T {}

/// Which store to open.
#[derive(Debug, Clone)]
pub struct StoreOpts {
    /// `sqlite:PATH`, `memory` or `dynamodb:REGION`.
    pub spec: Option<String>,
    /// The original's `-r`: the DynamoDB store in this region.
    pub dynamodb_region: Option<String>,
    pub endpoint_url: Option<String>,
    pub tables: Tables,
}

/// Opens the store: DynamoDB when `-r` or `dynamodb:REGION` says so, else SQLite
/// (`sqlite:PATH`, `$EC2_SCHEDULER_STORE`, or the default file), or memory.
pub async fn open_store(o: &StoreOpts) -> anyhow::Result<Box<dyn Store>> {
    let spec = o
        .spec
        .clone()
        .or_else(|| std::env::var("EC2_SCHEDULER_STORE").ok());
    let dynamo = match (
        &o.dynamodb_region,
        spec.as_deref().and_then(|s| s.strip_prefix("dynamodb:")),
    ) {
        (Some(r), _) => Some(r.clone()),
        (None, Some(r)) if !r.is_empty() => Some(r.to_string()),
        _ => None,
    };
    if let Some(region) = dynamo {
        let conf = sdk_config(&Connect {
            region: Some(region),
            endpoint_url: o.endpoint_url.clone(),
            ..Connect::default()
        })
        .await;
        let store = DynamoStore::with_counter(&conf, o.tables.clone(), requests());
        store.ensure_state_table().await?;
        return Ok(Box::new(store));
    }
    match spec.as_deref() {
        None => {
            let path = default_store_path();
            Ok(Box::new(SqliteStore::open(&path)?))
        }
        Some("memory") => Ok(Box::new(ec2_scheduler_engine::memory::MemoryStore::new())),
        Some(s) => match s.strip_prefix("sqlite:") {
            Some(path) if !path.is_empty() => Ok(Box::new(SqliteStore::open(Path::new(path))?)),
            _ => Err(anyhow!(Invalid(format!(
                "--store {s:?}: expected sqlite:PATH, memory or dynamodb:REGION"
            )))),
        },
    }
}

/// The AWS cloud of a workload: its region, and its role when it is cross-account.
pub async fn aws_cloud(w: &Workload, endpoint_url: Option<String>) -> AwsCloud {
    let conf = sdk_config(&Connect {
        region: Some(w.region.to_string()),
        endpoint_url,
        role_arn: w.cross_account.as_ref().map(|c| c.role_arn.to_string()),
        external_id: w.cross_account.as_ref().and_then(|c| c.external_id.clone()),
        max_attempts: None,
    })
    .await;
    AwsCloud::with_counter(&conf, requests())
}

/// The requests this process sends to AWS, from every client (store and cloud).
pub fn requests() -> Arc<CallCounter> {
    static REQUESTS: OnceLock<Arc<CallCounter>> = OnceLock::new();
    REQUESTS.get_or_init(Arc::default).clone()
}

/// Where a run acts.
pub enum Cloud {
    Sim(Box<SimCloud>),
    Aws(Box<AwsCloud>),
}

impl Cloud {
    pub fn ports<'a>(&'a self, store: &'a dyn Store) -> Ports<'a> {
        match self {
            Cloud::Sim(s) => s.ports(store),
            Cloud::Aws(a) => Ports {
                compute: &**a,
                lb: &**a,
                probe: &**a,
                notifier: &**a,
                meter: &**a,
                store,
                clock: &SYSTEM_CLOCK,
                lease_clock: &SYSTEM_CLOCK,
            },
        }
    }

    pub fn now(&self) -> DateTime<Utc> {
        match self {
            Cloud::Sim(s) => ec2_scheduler_engine::ports::Clock::now(&s.region),
            Cloud::Aws(_) => Utc::now(),
        }
    }
}

/// The real clock.
pub struct SystemClock;

impl ec2_scheduler_engine::ports::Clock for SystemClock {
    fn now(&self) -> DateTime<Utc> {
        Utc::now()
    }
}

static SYSTEM_CLOCK: SystemClock = SystemClock;

fn default_store_path() -> PathBuf {
    let base = std::env::var_os("XDG_DATA_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".local/share")))
        .unwrap_or_else(|| PathBuf::from("."));
    base.join("ec2-scheduler").join("state.db")
}

/// The workload named `name`: from `--config` files when given, else from the store.
pub async fn find_workload(
    config: &[PathBuf],
    name: &str,
    store: &dyn Store,
) -> anyhow::Result<Workload> {
    if !config.is_empty() {
        let loaded = crate::cli::load(config)?;
        return loaded.workload(name).cloned().ok_or_else(|| {
            let known: Vec<&str> = loaded.workloads.iter().map(|w| w.name.as_str()).collect();
            anyhow!(Invalid(format!(
                "workload {name:?} is not defined in the files given (defined: {})",
                known.join(", ")
            )))
        });
    }
    match store.workload(name).await? {
        Some(w) => Ok(w),
        None => {
            let known: Vec<String> = store
                .workloads()
                .await?
                .into_iter()
                .map(|w| w.name.to_string())
                .collect();
            Err(anyhow!(Invalid(format!(
                "workload {name:?} is not in the store (stored: {}); load it with `ec2-scheduler load FILE` or pass --config FILE",
                if known.is_empty() {
                    "none".to_string()
                } else {
                    known.join(", ")
                }
            ))))
        }
    }
}

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
    pub fn load(path: &Path) -> anyhow::Result<Self> {
        let before = stamp(path);
        let instances = read_fleet(path)?;
        let cloud = Self::new_at(Some(path), instances.clone(), Utc::now());
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
    pub fn save(&self) -> anyhow::Result<()> {
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
            let on_disk = read_fleet(path)
                .with_context(|| format!("{}: cannot merge with the file", path.display()))?;
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
            lease_clock: &SYSTEM_CLOCK,
        }
    }
}

/// Reads a fleet snapshot file.
fn read_fleet(path: &Path) -> anyhow::Result<Vec<Instance>> {
    let text = crate::files::read_text(path, crate::files::MAX_DATA_BYTES)?;
    let name = path.display().to_string();
    ec2_scheduler_config::fleet::load_fleet(&name, &text).map_err(crate::cli::invalid)
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
            .map_err(|e| StoreError::Backend(format!("saving the simulated fleet: {e:#}")))
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
    async fn release(&self, workload: &str, owner: &str) -> StoreResult<()> {
        self.flush()?;
        self.inner.release(workload, owner).await
    }
    async fn save_run(&self, run: &Run) -> StoreResult<()> {
        self.flush()?;
        self.inner.save_run(run).await
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
}

/// Engine settings for a run by this process on `cloud`, driven at `speed`.
pub fn settings(cloud: &Cloud, speed: Speed) -> Settings {
    Settings {
        owner: owner(),
        clock_rate: match (cloud, speed) {
            (Cloud::Aws(_), _) => Some(1.0),
            (Cloud::Sim(_), Speed::Times(x)) => Some(x),
            (Cloud::Sim(_), Speed::Max) => None,
        },
        ..Settings::default()
    }
}

/// This process, as a lock owner: `host:pid`.
pub fn owner() -> String {
    format!("{}:{}", hostname(), std::process::id())
}

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .or_else(|| std::env::var("HOSTNAME").ok())
        .map(|h| h.trim().to_string())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "localhost".to_string())
}

/// Whether a lock owner is a process of this host that no longer exists.
fn owner_is_dead(owner: &str) -> bool {
    let Some((host, pid)) = owner.rsplit_once(':') else {
        return false;
    };
    host == hostname() && pid.parse::<u32>().is_ok() && !Path::new("/proc").join(pid).exists()
}

/// A new run id: time and process, unique enough for one store.
pub fn new_run_id() -> String {
    let now = Utc::now();
    format!(
        "run-{}-{:05}",
        now.format("%Y%m%dT%H%M%S%.3f"),
        std::process::id() % 100_000
    )
}

/// How fast virtual time runs against real time.
#[derive(Debug, Clone, Copy)]
pub enum Speed {
    /// This many virtual seconds per real second.
    Times(f64),
    /// No real waiting at all.
    Max,
}

pub fn parse_speed(s: &str) -> Result<Speed, String> {
    if s == "max" {
        return Ok(Speed::Max);
    }
    match s.parse::<f64>() {
        Ok(x) if (0.01..=1_000_000.0).contains(&x) => Ok(Speed::Times(x)),
        _ => Err(format!(
            "expected a number from 0.01 to 1000000 (virtual seconds per real second) or `max`, found {s:?}"
        )),
    }
}

/// Begins (or resumes) a run, reclaiming a lock left by a dead process of this host.
pub async fn begin(
    exec: &mut Executor<'_>,
    store: &dyn Store,
    req: &RunRequest,
    resume: Option<&str>,
) -> anyhow::Result<Begin> {
    for attempt in 0..2 {
        let result = match resume {
            Some(id) => exec.resume(id).await.map(|r| Begin::Resumed(Box::new(r))),
            None => exec.begin(req, &new_run_id()).await,
        };
        match result {
            Err(EngineError::Busy(lock)) if attempt == 0 && owner_is_dead(&lock.owner) => {
                crate::term::note(format!(
                    "note: taking over the lock of {} from {} (that process is gone)",
                    lock.workload, lock.owner
                ));
                store.release(&lock.workload, &lock.owner).await?;
            }
            Err(e @ EngineError::Busy(_)) => return Err(anyhow!(Invalid(e.to_string()))),
            Err(EngineError::Plan(e)) => return Err(anyhow!(Invalid(format!("cannot plan: {e}")))),
            Err(EngineError::NoSuchRun(id)) => {
                return Err(anyhow!(Invalid(format!("no run {id} in the store"))));
            }
            Err(e) => return Err(e.into()),
            Ok(b) => return Ok(b),
        }
    }
    unreachable!("the second attempt returns")
}

/// Drives a run to its end, showing progress. On the simulator, virtual time moves
/// (scaled by `speed`) and the fleet file is saved after every tick; on AWS, the
/// waits are real.
pub async fn drive(
    exec: &mut Executor<'_>,
    run: &mut Run,
    cloud: &Cloud,
    speed: Speed,
    progress: &mut Progress,
) -> anyhow::Result<()> {
    loop {
        let tick = exec.tick(run).await?;
        progress.update(run, cloud.now());
        let wait = match tick {
            Tick::Done => break,
            Tick::Wait(d) => d,
        };
        match cloud {
            Cloud::Sim(sim) => {
                if let Speed::Times(x) = speed {
                    tokio::time::sleep(Duration::from_secs_f64((wait.as_secs_f64() / x).min(2.0)))
                        .await;
                }
                sim.region.advance(wait.max(Duration::from_millis(1)));
            }
            Cloud::Aws(_) => tokio::time::sleep(wait).await,
        }
    }
    progress.finish();
    if let Cloud::Sim(sim) = cloud {
        sim.save()?;
    }
    Ok(())
}

/// The run's outcome for people.
pub fn run_report(run: &Run) -> String {
    let mut out = String::new();
    let secs = run.elapsed_secs(run.finished.unwrap_or(run.started));
    out += &format!(
        "Run {}: {} of {} {} in {secs:.0} s: {} stopped, {} started, {} resized, {} excluded, {} kept running, {} failed\n",
        run.id,
        run.action,
        run.workload,
        run.status.as_str(),
        run.stopped_ids.len(),
        run.started_ids.len(),
        run.resized_ids.len(),
        run.plan.excluded.len(),
        run.kept.len(),
        run.failed.len()
    );
    for e in &run.plan.excluded {
        out += &format!(
            "  excluded {} ({}): {}\n",
            e.instance,
            e.tier,
            e.reason.describe()
        );
    }
    for (id, k) in &run.kept {
        out += &format!("  kept {id} ({}): {}\n", k.tier, k.reason);
    }
    for (id, f) in &run.failed {
        out += &format!("  failed {id} ({}): {}\n", f.tier, f.reason);
    }
    for (tier, t) in &run.tiers {
        if let Some(f) = t.finished {
            out += &format!(
                "  tier {tier}: {:.0} s\n",
                (f - t.started).num_milliseconds() as f64 / 1000.0
            );
        }
    }
    let calls: Vec<String> = run.calls.iter().map(|(a, n)| format!("{a} {n}")).collect();
    out += &format!(
        "  API calls: {} ({}), {} retried\n",
        run.total_calls(),
        calls.join(", "),
        run.retried
    );
    if let Some(e) = &run.error {
        out += &format!("  error: {e}\n");
    }
    out
}

/// Exit status of a finished run: success only when it succeeded.
pub fn run_failed(run: &Run) -> Option<String> {
    (run.status != RunStatus::Succeeded).then(|| format!("run {} {}", run.id, run.status.as_str()))
}

/// `status`: the workload's tiers and instances, with exemptions and the lock.
pub async fn status(
    workload: &Workload,
    cloud: &Cloud,
    store: &dyn Store,
) -> anyhow::Result<String> {
    let mut exec = Executor::new(cloud.ports(store), Settings::default(), workload.clone());
    let observed = exec.observe().await?;
    let exemptions = store.exemptions().await?;
    let now = cloud.now();
    let index = ec2_scheduler_core::plan::Exemptions::new(workload, &exemptions, now);
    let mut out = format!(
        "Workload {} ({}={}, tier tag {})\n",
        workload.name,
        workload.workload_tag.key,
        workload.workload_tag.value,
        workload.tier_tag_key
    );
    for tier in workload.tiers() {
        let members: Vec<&Instance> = observed
            .iter()
            .filter(|i| membership(workload, i) == Ok(tier.name.as_str()))
            .collect();
        let running = members.iter().filter(|i| i.state.is_up()).count();
        out += &format!(
            "\n{}: {} members, {running} running/pending\n",
            tier.name,
            members.len()
        );
        for i in members {
            let note = index
                .stop_exclusion(tier, i)
                .map(|r| format!("  [{}]", r.describe()))
                .unwrap_or_default();
            out += &format!(
                "  {:<22} {:<9} {:<12} {}{note}\n",
                i.id,
                i.state.as_str(),
                i.instance_type,
                i.az
            );
        }
    }
    let runs = store.list_runs(Some(workload.name.as_str())).await?;
    if let Some(last) = runs.first() {
        out += &format!(
            "\nLast run: {} {} {} (started {})\n",
            last.id,
            last.action,
            last.status,
            last.started
                .to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
        );
    }
    Ok(out)
}

/// `runs`: the history table.
pub async fn runs(store: &dyn Store, workload: Option<&str>) -> anyhow::Result<String> {
    let rows = store.list_runs(workload).await?;
    if rows.is_empty() {
        return Ok("no runs\n".to_string());
    }
    let mut out = format!(
        "{:<34} {:<20} {:<6} {:<24} {:<21} {}\n",
        "RUN", "WORKLOAD", "ACTION", "STATUS", "STARTED", "SECONDS"
    );
    for r in rows {
        let secs = r
            .finished
            .map(|f| format!("{:.0}", (f - r.started).num_milliseconds() as f64 / 1000.0))
            .unwrap_or_else(|| "-".into());
        out += &format!(
            "{:<34} {:<20} {:<6} {:<24} {:<21} {secs}\n",
            r.id,
            r.workload,
            r.action,
            r.status,
            r.started.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
        );
    }
    Ok(out)
}

/// `runs show ID`: the run's report and history.
pub async fn run_show(store: &dyn Store, id: &str) -> anyhow::Result<String> {
    let run = store
        .load_run(id)
        .await?
        .ok_or_else(|| anyhow!(Invalid(format!("no run {id} in the store"))))?;
    let mut out = run_report(&run);
    out += "History:\n";
    for e in &run.history {
        let t = (e.at - run.started).num_milliseconds() as f64 / 1000.0;
        match &e.tier {
            Some(tier) => out += &format!("  [{t:>7.1}s] {tier}: {}\n", e.what),
            None => out += &format!("  [{t:>7.1}s] {}\n", e.what),
        }
    }
    Ok(out)
}

/// Reads `--until`: an RFC 3339 time, or a date meaning through that day (UTC); no
/// later than the end of year 9999, the last instant every store can write.
pub fn parse_until(s: &str) -> Result<DateTime<Utc>, String> {
    let t = if let Ok(t) = DateTime::parse_from_rfc3339(s) {
        t.with_timezone(&Utc)
    } else {
        NaiveDate::parse_from_str(s, "%Y-%m-%d")
            .ok()
            .and_then(ec2_scheduler_core::exemption::through_day)
            .ok_or_else(|| format!("expected an RFC 3339 time (2026-12-01T08:00:00Z) or a date (2026-12-01), found {s:?}"))?
    };
    if t > ec2_scheduler_core::exemption::latest_until() {
        return Err(format!(
            "{s:?} is too far ahead: the latest expiry is 9999-12-31T23:59:59Z (or leave --until out: until removed)"
        ));
    }
    Ok(t)
}

/// `exempt add`.
pub async fn exempt_add(
    store: &dyn Store,
    instance: &str,
    until: Option<DateTime<Utc>>,
    reason: &str,
    now: DateTime<Utc>,
) -> anyhow::Result<String> {
    if let Some(u) = until.filter(|u| *u <= now) {
        bail!(Invalid(format!(
            "--until {} is in the past: the exemption would never apply",
            u.to_rfc3339()
        )));
    }
    let e = Exemption {
        instance_id: instance.to_string(),
        until,
        reason: reason.to_string(),
    };
    e.check().map_err(|x| anyhow!(Invalid(x.to_string())))?;
    store.add_exemption(&e).await?;
    Ok(format!(
        "{instance} is exempt from stop {}: {reason}\n",
        until.map_or("until removed".to_string(), |u| format!(
            "until {}",
            u.to_rfc3339()
        ))
    ))
}

/// `exempt list`.
pub async fn exempt_list(store: &dyn Store) -> anyhow::Result<String> {
    let list = store.exemptions().await?;
    if list.is_empty() {
        return Ok("no exemptions\n".to_string());
    }
    let now = Utc::now();
    Ok(list
        .iter()
        .map(|e| {
            let until = e.until.map_or("until removed".to_string(), |u| {
                format!("until {}", u.to_rfc3339())
            });
            let expired = if e.active(now) { "" } else { " (expired)" };
            format!("{} {until}{expired}: {}\n", e.instance_id, e.reason)
        })
        .collect())
}
