//! The environment of the use cases, built once by a driver: the store, how to reach
//! the cloud, who the caller is (the lock owner) and the request counter.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Timelike, Utc};
use ec2_scheduler_aws::dynamo::DynamoStore;
pub use ec2_scheduler_aws::dynamo::Tables;
use ec2_scheduler_aws::{AwsCloud, CallCounter, Connect, sdk_config};
use ec2_scheduler_core::{Instance, Workload};
use ec2_scheduler_engine::pace::Limits;
use ec2_scheduler_engine::ports::{AccessStore, Clock, ConfigStore, RunStore, ScheduleStore};
use ec2_scheduler_engine::{Buckets, Ports, Settings};
use ec2_scheduler_store::SqliteStore;

use crate::error::{Error, Result};
use crate::sim::SimCloud;

/// A store that holds runs, workloads, and schedules' overrides and events.
pub trait Store: RunStore + ConfigStore + ScheduleStore + AccessStore {}
impl<T: RunStore + ConfigStore + ScheduleStore + AccessStore> Store for T {}

/// Which store to open.
#[derive(Debug, Clone, Default)]
pub struct StoreOpts {
    /// `sqlite:PATH`, `memory` or `dynamodb:REGION`; `None`: `$EC2_SCHEDULER_STORE`,
    /// else the default SQLite file.
    pub spec: Option<String>,
    /// The original's `-r`: the DynamoDB store in this region.
    pub dynamodb_region: Option<String>,
    pub endpoint_url: Option<String>,
    pub tables: Tables,
    /// On DynamoDB: finished runs and event records are deleted by the table's time
    /// to live this many days after they ended (the serverless stack's
    /// `HistoryRetentionDays`); `None` keeps them.
    pub history_ttl_days: Option<u32>,
}

/// How to reach the cloud of a workload.
#[derive(Debug, Clone)]
pub enum CloudSpec {
    /// AWS, in the workload's region, assuming its role when it has one.
    Aws { endpoint_url: Option<String> },
    /// A simulated region loaded from a fleet snapshot file and saved back to it,
    /// whose clock starts at `start` (default: now).
    SimFile {
        fleet: PathBuf,
        speed: Speed,
        start: Option<DateTime<Utc>>,
    },
    /// A simulated region held in memory, whose clock starts at `start`.
    SimMemory {
        instances: Vec<Instance>,
        start: DateTime<Utc>,
        speed: Speed,
    },
}

/// How fast virtual time runs against real time on the simulator.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Speed {
    /// This many virtual seconds per real second.
    Times(f64),
    /// No real waiting at all.
    Max,
}

impl Speed {
    /// The bounds of [`Speed::Times`].
    pub const RANGE: std::ops::RangeInclusive<f64> = 0.01..=1_000_000.0;
}

/// Where a run acts.
pub enum Cloud {
    Sim { sim: Box<SimCloud>, speed: Speed },
    Aws(Box<AwsCloud>),
}

impl Cloud {
    /// The ports of this cloud over `store`.
    pub fn ports<'a>(&'a self, store: &'a dyn Store) -> Ports<'a> {
        match self {
            Cloud::Sim { sim, .. } => sim.ports(store),
            Cloud::Aws(a) => Ports {
                compute: &**a,
                lb: &**a,
                probe: &**a,
                notifier: &**a,
                meter: &**a,
                store,
                clock: &SystemClock,
                lease_clock: &SystemClock,
            },
        }
    }

    /// The simulated cloud, if this is one.
    pub fn sim(&self) -> Option<&SimCloud> {
        match self {
            Cloud::Sim { sim, .. } => Some(sim),
            Cloud::Aws(_) => None,
        }
    }

    /// The cloud's time (the simulator's is virtual).
    pub fn now(&self) -> DateTime<Utc> {
        match self {
            Cloud::Sim { sim, .. } => Clock::now(&sim.region),
            Cloud::Aws(_) => Utc::now(),
        }
    }

    /// Engine settings for a run by `owner` on this cloud.
    pub fn settings(&self, owner: &str) -> Settings {
        Settings {
            owner: owner.to_string(),
            clock_rate: match self {
                Cloud::Aws(_) => Some(1.0),
                Cloud::Sim {
                    speed: Speed::Times(x),
                    ..
                } => Some(*x),
                Cloud::Sim {
                    speed: Speed::Max, ..
                } => None,
            },
            ..Settings::default()
        }
    }

    /// Lets `wait` pass: real time on AWS; on the simulator, virtual time (and real
    /// time scaled by the speed, at most 2 s a step).
    pub async fn wait(&self, wait: Duration) {
        match self {
            Cloud::Sim { sim, speed } => {
                if let Speed::Times(x) = speed {
                    tokio::time::sleep(Duration::from_secs_f64((wait.as_secs_f64() / x).min(2.0)))
                        .await;
                }
                sim.region.advance(wait.max(Duration::from_millis(1)));
            }
            Cloud::Aws(_) => tokio::time::sleep(wait).await,
        }
    }

    /// Saves what must outlive the process (the simulated fleet file).
    pub fn save(&self) -> Result<()> {
        match self {
            Cloud::Sim { sim, .. } => sim.save(),
            Cloud::Aws(_) => Ok(()),
        }
    }
}

/// The real clock.
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> DateTime<Utc> {
        Utc::now()
    }
}

/// The environment of the use cases.
pub struct App {
    pub(crate) store: Box<dyn Store>,
    pub(crate) cloud: CloudSpec,
    /// The caller, as the owner of the locks it takes.
    pub(crate) owner: String,
    /// Every request this environment sends to AWS (store and clouds).
    pub(crate) requests: Arc<CallCounter>,
    /// How often a wait for instances looks, when not the engine's default.
    pub(crate) poll: Option<Duration>,
    /// The session name of workloads' assumed roles (`None`: the default).
    pub(crate) session_name: Option<String>,
    /// How long a confirmation that a run holds its lock lets it call the cloud
    /// (`Settings::act_window`), and how long a cancel waits after releasing the lock
    /// before it answers: longer, so that no call of a cancelled run is made after
    /// the answer.
    pub(crate) fence: Fence,
    /// The pacing buckets of each account and region on AWS (by region and role),
    /// shared by every run this process drives there.
    pub(crate) pacing: std::sync::Mutex<std::collections::HashMap<String, Buckets>>,
    /// Whether runs share their account's buckets (the default).
    pub(crate) share_pacing: bool,
    /// Whether runs share them through the store instead, with runs of other
    /// processes ([`App::with_pacing_through_store`]).
    pub(crate) store_pacing: bool,
}

/// The act window of runs and the settle time of cancels: see [`App::with_fence`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Fence {
    pub act_window: Duration,
    pub cancel_settle: Duration,
}

impl Default for Fence {
    /// A run's calls follow a confirmation within 1 s; a cancel answers 3 s after it
    /// released the lock (2 s for a call on its way, and clocks of other hosts).
    fn default() -> Self {
        Fence {
            act_window: Duration::from_secs(1),
            cancel_settle: Duration::from_secs(3),
        }
    }
}

impl App {
    /// Opens the store and prepares to reach the cloud; the caller is this process
    /// (`host:pid`).
    ///
    /// # Errors
    /// An invalid store spec, or a store that cannot be opened.
    pub async fn open(store: &StoreOpts, cloud: CloudSpec) -> Result<App> {
        let requests = Arc::new(CallCounter::default());
        let store = open_store(store, &requests).await?;
        Ok(App::new(store, cloud, process_owner(), requests))
    }

    /// An environment from parts.
    pub fn new(
        store: Box<dyn Store>,
        cloud: CloudSpec,
        owner: String,
        requests: Arc<CallCounter>,
    ) -> App {
        App {
            store,
            cloud,
            owner,
            requests,
            poll: None,
            session_name: None,
            fence: Fence::default(),
            pacing: std::sync::Mutex::default(),
            share_pacing: true,
            store_pacing: false,
        }
    }

    /// This environment with each run pacing its calls alone (as if no other run
    /// shared its account), for comparison.
    #[must_use]
    pub fn with_pacing_apart(mut self) -> App {
        self.share_pacing = false;
        self
    }

    /// This environment with each run leasing its share of its account's buckets
    /// through the store (`ec2_scheduler_engine::share`), so that runs driven by
    /// other processes on the same store (the serverless run step's containers)
    /// pace together; instead of sharing buckets within this process.
    #[must_use]
    pub fn with_pacing_through_store(mut self) -> App {
        self.store_pacing = true;
        self
    }

    /// The account and region whose buckets pace `workload`'s runs on `cloud`: the
    /// simulated region (its fleet file), or the AWS region and the role assumed.
    pub(crate) fn pacing_account(cloud: &Cloud, workload: &Workload) -> String {
        match cloud {
            Cloud::Sim { sim, .. } => format!("sim|{}", sim.file_name()),
            Cloud::Aws(_) => format!(
                "{}|{}",
                workload.region,
                workload
                    .cross_account
                    .as_ref()
                    .map(|c| c.role_arn.to_string())
                    .unwrap_or_default()
            ),
        }
    }

    /// The buckets that pace `workload`'s runs on `cloud`: one set per simulated
    /// region, and per region and role on AWS, made at `limits` when first asked for.
    pub(crate) fn buckets(&self, cloud: &Cloud, workload: &Workload, limits: Limits) -> Buckets {
        match cloud {
            Cloud::Sim { sim, .. } => sim.pacing.get_or_init(|| Buckets::new(limits)).clone(),
            Cloud::Aws(_) => self
                .pacing
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .entry(App::pacing_account(cloud, workload))
                .or_insert_with(|| Buckets::new(limits))
                .clone(),
        }
    }

    /// This environment with another act window and cancel settle time (the settle
    /// time is raised to at least the window): every process that drives or cancels
    /// runs of one store should use the same.
    #[must_use]
    pub fn with_fence(mut self, fence: Fence) -> App {
        self.fence = Fence {
            act_window: fence.act_window,
            cancel_settle: fence.cancel_settle.max(fence.act_window),
        };
        self
    }

    /// Takes locks as `owner` instead of this process (`host:pid`): for drivers whose
    /// every step may run in another process (Lambda functions), so that a step can
    /// go on with the run the previous step held the lock for. Runs still exclude
    /// each other: a lock is held for one run id, and a run acts only while the lock
    /// names it.
    #[must_use]
    pub fn with_owner(mut self, owner: impl Into<String>) -> App {
        self.owner = owner.into();
        self
    }

    /// This environment assuming workloads' roles as the observer
    /// ([`ec2_scheduler_aws::OBSERVER_SESSION`]), whom the roles of other accounts
    /// refuse every change: for a process that plans and shows but never runs (the
    /// serverless API, whose runs the state machine drives).
    #[must_use]
    pub fn observing_only(mut self) -> App {
        self.session_name = Some(ec2_scheduler_aws::OBSERVER_SESSION.to_string());
        self
    }

    /// Who takes this environment's locks.
    pub fn owner(&self) -> &str {
        &self.owner
    }

    /// Waits for instances look every `poll` (first and after): for drivers that pay
    /// for each look, such as a state machine whose every tick is a Lambda invocation
    /// and three state transitions. The end of a tier is then seen up to `poll` late.
    #[must_use]
    pub fn with_poll(mut self, poll: Duration) -> App {
        self.poll = Some(poll);
        self
    }

    /// Requests sent to AWS so far, by action.
    pub fn requests(&self) -> std::collections::BTreeMap<String, u64> {
        self.requests.snapshot()
    }

    /// The counter of [`App::requests`], for other clients of the same process to
    /// count theirs in (the schedules of a deployment).
    pub fn request_counter(&self) -> Arc<CallCounter> {
        self.requests.clone()
    }

    /// The cloud of `workload`.
    ///
    /// # Errors
    /// A fleet file that cannot be read.
    pub async fn connect(&self, workload: &Workload) -> Result<Cloud> {
        match &self.cloud {
            CloudSpec::SimFile {
                fleet,
                speed,
                start,
            } => Ok(Cloud::Sim {
                sim: Box::new(SimCloud::load_at(fleet, start.unwrap_or_else(Utc::now))?),
                speed: *speed,
            }),
            CloudSpec::SimMemory {
                instances,
                start,
                speed,
            } => Ok(Cloud::Sim {
                sim: Box::new(SimCloud::new_at(None, instances.clone(), *start)),
                speed: *speed,
            }),
            CloudSpec::Aws { endpoint_url } => {
                let conf = sdk_config(&Connect {
                    region: Some(workload.region.to_string()),
                    endpoint_url: endpoint_url.clone(),
                    role_arn: workload
                        .cross_account
                        .as_ref()
                        .map(|c| c.role_arn.to_string()),
                    external_id: workload
                        .cross_account
                        .as_ref()
                        .and_then(|c| c.external_id.clone()),
                    session_name: self.session_name.clone(),
                    max_attempts: None,
                })
                .await;
                Ok(Cloud::Aws(Box::new(AwsCloud::with_counter(
                    &conf,
                    self.requests.clone(),
                ))))
            }
        }
    }
}

/// Opens the store: DynamoDB when `-r` or `dynamodb:REGION` says so, else SQLite
/// (`sqlite:PATH`, `$EC2_SCHEDULER_STORE`, or the default file), or memory.
async fn open_store(o: &StoreOpts, requests: &Arc<CallCounter>) -> Result<Box<dyn Store>> {
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
        let mut store = DynamoStore::with_counter(&conf, o.tables.clone(), requests.clone());
        if let Some(days) = o.history_ttl_days {
            store = store.with_history_ttl(days);
        }
        store.ensure_state_table().await?;
        return Ok(Box::new(store));
    }
    match spec.as_deref() {
        None => Ok(Box::new(SqliteStore::open(&default_store_path())?)),
        Some("memory") => Ok(Box::new(ec2_scheduler_engine::memory::MemoryStore::new())),
        Some(s) => match s.strip_prefix("sqlite:") {
            Some(path) if !path.is_empty() => Ok(Box::new(SqliteStore::open(Path::new(path))?)),
            _ => Err(Error::Invalid(format!(
                "--store {s:?}: expected sqlite:PATH, memory or dynamodb:REGION"
            ))),
        },
    }
}

fn default_store_path() -> PathBuf {
    let base = std::env::var_os("XDG_DATA_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".local/share")))
        .unwrap_or_else(|| PathBuf::from("."));
    base.join("ec2-scheduler").join("state.db")
}

/// This process, as a lock owner: `host:pid`.
pub fn process_owner() -> String {
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
pub(crate) fn owner_is_dead(owner: &str) -> bool {
    let Some((host, pid)) = owner.rsplit_once(':') else {
        return false;
    };
    host == hostname() && pid.parse::<u32>().is_ok() && !Path::new("/proc").join(pid).exists()
}

/// A new run id: time and process, unique enough for one store.
pub(crate) fn new_run_id() -> String {
    new_id("run", Utc::now())
}

/// A new id: `prefix`, the time (to the millisecond) and this process, unique
/// within the process: an id asked for in a millisecond this process already gave one
/// for (or an earlier one, from a thread that read the clock before another) takes the
/// last one's millisecond with `-2`, `-3`, ... after it.
pub(crate) fn new_id(prefix: &str, now: DateTime<Utc>) -> String {
    type Last = std::collections::BTreeMap<String, (DateTime<Utc>, u32)>;
    static LAST: std::sync::Mutex<Last> = std::sync::Mutex::new(Last::new());
    let ms = now
        .with_nanosecond(now.timestamp_subsec_millis() * 1_000_000)
        .unwrap_or(now);
    let mut last = LAST.lock().unwrap_or_else(|p| p.into_inner());
    let last = last
        .entry(prefix.to_string())
        .or_insert((DateTime::<Utc>::MIN_UTC, 0));
    let (at, n) = if ms > last.0 {
        *last = (ms, 1);
        (ms, 1)
    } else {
        last.1 += 1;
        (last.0, last.1)
    };
    let base = format!(
        "{prefix}-{}-{:05}",
        at.format("%Y%m%dT%H%M%S%.3f"),
        std::process::id() % 100_000
    );
    if n == 1 { base } else { format!("{base}-{n}") }
}
