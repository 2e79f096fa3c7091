//! Ports: what the engine needs from the world, as traits.
//!
//! The simulator and the AWS adapters implement them; the engine never sees an SDK
//! type. Every call that reaches a cloud API returns [`ApiError`] on failure, which
//! says what kind of failure it is and so whether it may be retried.

use std::fmt;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use ec2_scheduler_core::access::Token;
use ec2_scheduler_core::db::{DbCluster, DbInstance};
use ec2_scheduler_core::model::{Name, Os};
use ec2_scheduler_core::overrides::Override;
use ec2_scheduler_core::{Exemption, Instance, Workload};
use serde::{Deserialize, Serialize};

use crate::run::Run;
use crate::share::PaceShares;

/// What kind of failure an API call had.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ErrorKind {
    /// `RequestLimitExceeded` / `Throttling`: retry with backoff.
    Throttled,
    /// A 5xx answer or a transport failure: retry with backoff.
    Server,
    /// `IncorrectInstanceState`: some instance is in the wrong state for the call.
    IncorrectState,
    /// `InvalidInstanceID.NotFound` and the like.
    NotFound,
    /// `InsufficientInstanceCapacity`: no capacity for the type in the zone right now.
    InsufficientCapacity,
    /// The request is not valid for the instance (e.g. an incompatible instance type,
    /// hibernation not supported).
    Unsupported,
    /// Access denied: the message names the missing permission.
    AccessDenied,
    /// Anything else; not retried.
    Other,
}

/// A failed API call.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[error("{action}: {code}: {message}")]
pub struct ApiError {
    pub kind: ErrorKind,
    /// The API action, e.g. `ec2:StartInstances`.
    pub action: String,
    /// The provider's error code, e.g. `IncorrectInstanceState`.
    pub code: String,
    pub message: String,
    /// Instances the error names, when it names any.
    #[serde(default)]
    pub instances: Vec<String>,
}

/// What the executor may do about a failed call: the one place that says it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorClass {
    /// The same call may succeed later (throttling, server errors): retry it.
    Retryable,
    /// Some instances of the call are at fault (wrong state, unknown, no capacity,
    /// unsupported): split the batch to find them; alone, they fail or are retried
    /// as their kind allows.
    Isolatable,
    /// Repeating it will not help (access denied, anything unknown).
    Final,
}

impl ErrorKind {
    /// Retryable, isolatable or final.
    pub fn class(self) -> ErrorClass {
        match self {
            ErrorKind::Throttled | ErrorKind::Server => ErrorClass::Retryable,
            ErrorKind::IncorrectState
            | ErrorKind::NotFound
            | ErrorKind::InsufficientCapacity
            | ErrorKind::Unsupported => ErrorClass::Isolatable,
            ErrorKind::AccessDenied | ErrorKind::Other => ErrorClass::Final,
        }
    }
}

impl ApiError {
    /// Whether repeating the same call later may succeed.
    pub fn retryable(&self) -> bool {
        self.kind.class() == ErrorClass::Retryable
    }
}

/// API result.
pub type ApiResult<T> = Result<T, ApiError>;

/// How to find a workload's instances on the provider side.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemberFilter {
    pub workload_tag_key: String,
    pub workload_tag_value: String,
    pub tier_tag_key: String,
    pub tier_values: Vec<String>,
    pub vpc: Option<String>,
}

/// EC2 status checks of one instance.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum StatusCheck {
    Ok,
    Initializing,
    Impaired,
    /// Not running, or no data yet.
    Unknown,
}

/// The most values one [`Compute::describe_tagged`] call takes (EC2 takes 200 values
/// in one filter).
pub const TAGGED_VALUES_MAX: usize = 200;

/// Instances: observation and state changes.
#[async_trait]
pub trait Compute: Send + Sync {
    /// Instances matching the filter, in any state (server-side filtering and
    /// pagination are the adapter's business).
    async fn describe(&self, filter: &MemberFilter) -> ApiResult<Vec<Instance>>;
    /// Instances whose tag `tag_key` has one of `values`, in any state, for observing
    /// many workloads at once: one call (and page) per [`TAGGED_VALUES_MAX`] values.
    /// Only for reading: what a run acts on comes from [`Compute::describe`].
    async fn describe_tagged(&self, tag_key: &str, values: &[String]) -> ApiResult<Vec<Instance>>;
    /// These instances (at most 1,000 ids); unknown ids are left out of the answer.
    async fn describe_ids(&self, ids: &[String]) -> ApiResult<Vec<Instance>>;
    /// Starts instances (at most 1,000 ids).
    async fn start(&self, ids: &[String]) -> ApiResult<()>;
    /// Stops instances (at most 1,000 ids), hibernating them when asked.
    async fn stop(&self, ids: &[String], hibernate: bool) -> ApiResult<()>;
    /// Changes the type of one stopped instance.
    async fn set_type(&self, id: &str, instance_type: &str) -> ApiResult<()>;
    /// Status checks (at most 100 ids).
    async fn status_checks(&self, ids: &[String]) -> ApiResult<Vec<(String, StatusCheck)>>;
}

/// Databases: RDS DB instances and DB clusters (Aurora, DocumentDB, Neptune),
/// observation and state changes. Database tiers will act through it; the simulator
/// implements it today.
#[async_trait]
pub trait Databases: Send + Sync {
    /// DB instances whose tag `tag_key` has one of `values`, in any status.
    async fn describe_db_instances(
        &self,
        tag_key: &str,
        values: &[String],
    ) -> ApiResult<Vec<DbInstance>>;
    /// DB clusters whose tag `tag_key` has one of `values`, in any status.
    async fn describe_db_clusters(
        &self,
        tag_key: &str,
        values: &[String],
    ) -> ApiResult<Vec<DbCluster>>;
    /// Starts a stopped DB instance.
    async fn start_db_instance(&self, id: &str) -> ApiResult<()>;
    /// Stops an available DB instance (refused for those [`DbInstance::why_not_stoppable`]
    /// names).
    async fn stop_db_instance(&self, id: &str) -> ApiResult<()>;
    /// Starts a stopped DB cluster and its members.
    async fn start_db_cluster(&self, id: &str) -> ApiResult<()>;
    /// Stops an available DB cluster and its members.
    async fn stop_db_cluster(&self, id: &str) -> ApiResult<()>;
}

/// A load-balancer attachment point.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum LbTarget {
    /// A classic load balancer, by name.
    Classic { name: String },
    /// An ELBv2 target group, by ARN, with the port the instance is registered on.
    TargetGroup { arn: String, port: Option<i32> },
}

impl LbTarget {
    /// A target from its name: a target-group ARN (`arn:...`) or a classic load
    /// balancer's name.
    pub fn from_name(name: &str) -> Self {
        if name.starts_with("arn:") {
            LbTarget::TargetGroup {
                arn: name.to_string(),
                port: None,
            }
        } else {
            LbTarget::Classic {
                name: name.to_string(),
            }
        }
    }

    /// The name or ARN.
    pub fn name(&self) -> &str {
        match self {
            LbTarget::Classic { name } => name,
            LbTarget::TargetGroup { arn, .. } => arn,
        }
    }
}

impl fmt::Display for LbTarget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LbTarget::Classic { name } => write!(f, "classic load balancer {name}"),
            LbTarget::TargetGroup { arn, port: Some(p) } => {
                write!(f, "target group {arn} port {p}")
            }
            LbTarget::TargetGroup { arn, port: None } => write!(f, "target group {arn}"),
        }
    }
}

/// Health of one target.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Health {
    Healthy,
    Initial,
    Unhealthy,
    /// Deregistered, connections still draining.
    Draining,
    /// Not registered (any more).
    NotRegistered,
}

/// Load balancers.
#[async_trait]
pub trait LoadBalancing: Send + Sync {
    /// Where each of these instances is registered.
    async fn memberships(&self, ids: &[String]) -> ApiResult<Vec<(String, LbTarget)>>;
    async fn register(&self, target: &LbTarget, ids: &[String]) -> ApiResult<()>;
    async fn deregister(&self, target: &LbTarget, ids: &[String]) -> ApiResult<()>;
    async fn health(&self, target: &LbTarget, ids: &[String]) -> ApiResult<Vec<(String, Health)>>;
}

/// The answer of an override-file probe for one instance.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "result", rename_all = "kebab-case")]
pub enum ProbeResult {
    /// The file exists: keep the instance running.
    Present,
    /// The file is confirmed absent: the instance may be stopped.
    Absent,
    /// No answer yet.
    Pending,
    /// No usable answer (agent offline, error, output without the marker).
    Unknown { reason: String },
}

/// Asks instances whether an override file exists (SSM Run Command on AWS).
#[async_trait]
pub trait OverrideProbe: Send + Sync {
    /// Sends the check to at most 50 instances; returns a handle to poll.
    async fn send(&self, ids: &[String], path: &str, os: Os) -> ApiResult<String>;
    /// The results so far for a handle.
    async fn poll(&self, handle: &str, ids: &[String]) -> ApiResult<Vec<(String, ProbeResult)>>;
}

/// A notification: a subject for people, a JSON body for machines.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Notification {
    pub subject: String,
    pub body: serde_json::Value,
}

/// Publishes notifications (SNS on AWS).
#[async_trait]
pub trait Notifier: Send + Sync {
    async fn publish(&self, topic: &Name, note: &Notification) -> ApiResult<()>;
}

/// The time. The simulator's clock is virtual.
/// Counts the requests an adapter has sent, by action: on AWS every HTTP attempt
/// (pages and the SDK's own retries included), on the simulator every call. The
/// executor records what each run sent from it, so a run's call counts are what the
/// provider received, not what the engine meant to send.
pub trait Meter: Send + Sync {
    /// Requests sent so far, by action.
    fn requests(&self) -> std::collections::BTreeMap<String, u64>;
}

pub trait Clock: Send + Sync {
    fn now(&self) -> DateTime<Utc>;
}

/// Errors of a store.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StoreError {
    /// The store could not be read or written; the message says why.
    #[error("store: {0}")]
    Backend(String),
    /// A record in the store could not be decoded.
    #[error("store: corrupt record {key}: {message}")]
    Corrupt { key: String, message: String },
    /// A record was refused before it was written: it could not be read back.
    #[error("{0}")]
    Invalid(String),
    /// A compare-and-set write found the record changed since it was read: another
    /// writer got there first, and nothing was written.
    #[error("store: {0}")]
    Conflict(String),
}

impl StoreError {
    /// The conflict of a run saved from version `read` after another writer saved it.
    pub fn run_conflict(id: &str, read: u64) -> StoreError {
        StoreError::Conflict(format!(
            "run {id} was saved by another writer since it was read (version {read}); not overwritten"
        ))
    }

    /// The conflict of an account's pacing record written from version `read` after
    /// another writer wrote it.
    pub fn pace_conflict(account: &str, read: u64) -> StoreError {
        StoreError::Conflict(format!(
            "the pacing record of {account} was written since version {read}"
        ))
    }
}

/// An exemption as a store holds it: the instance id, the expiry as RFC 3339 text
/// (`None`: until removed) and the reason. A record whose expiry cannot be read
/// counts as exempt until removed, with a reason that says so and how to remove it:
/// an exemption that cannot be read cannot be ruled out.
pub fn stored_exemption(
    instance_id: String,
    until: Option<String>,
    reason: String,
    created_by: Option<String>,
) -> Exemption {
    match until
        .as_deref()
        .map(DateTime::parse_from_rfc3339)
        .transpose()
    {
        Ok(until) => Exemption {
            until: until.map(|t| t.with_timezone(&Utc)),
            instance_id,
            reason,
            created_by,
        },
        Err(_) => Exemption {
            reason: format!(
                "unreadable exemption record (until = {:?}); counted as exempt until removed with `ec2-scheduler exempt remove {instance_id}`",
                until.unwrap_or_default()
            ),
            until: None,
            instance_id,
            created_by,
        },
    }
}

/// A store result.
pub type StoreResult<T> = Result<T, StoreError>;

/// Who holds a workload's lock.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Lock {
    pub workload: String,
    pub owner: String,
    pub run_id: String,
    pub expires: DateTime<Utc>,
}

/// The result of asking for a lock.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LockOutcome {
    Acquired,
    /// Someone else holds an unexpired lease.
    Held(Lock),
}

/// Short description of a stored run, for listings.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunSummaryRow {
    pub id: String,
    pub workload: String,
    pub action: String,
    pub status: String,
    pub started: DateTime<Utc>,
    pub finished: Option<DateTime<Utc>>,
}

impl RunSummaryRow {
    /// A row from a store's record. A record whose times cannot be read is still
    /// listed (first in time, with a status that says so) instead of failing the
    /// whole listing.
    pub fn new(
        id: String,
        workload: String,
        action: String,
        status: String,
        times: StoreResult<(DateTime<Utc>, Option<DateTime<Utc>>)>,
    ) -> Self {
        let (started, finished, status) = match times {
            Ok((s, f)) => (s, f, status),
            Err(e) => (
                DateTime::<Utc>::UNIX_EPOCH,
                None,
                format!("unreadable ({e})"),
            ),
        };
        RunSummaryRow {
            id,
            workload,
            action,
            status,
            started,
            finished,
        }
    }
}

/// Runs, checkpoints, locks, exemptions and parked load-balancer registrations.
#[async_trait]
pub trait RunStore: Send + Sync {
    /// Takes the workload's lock if it is free or its lease expired at `now`.
    async fn acquire(&self, lock: &Lock, now: DateTime<Utc>) -> StoreResult<LockOutcome>;
    /// Extends a lease this owner holds for this run; `false` if it lost the lock
    /// (released by a cancel, or taken by another owner or run).
    async fn renew(&self, lock: &Lock) -> StoreResult<bool>;
    /// Whether this owner still holds the lock for this run, as [`RunStore::renew`]
    /// answers it; stores where a write costs more than a read answer by reading,
    /// without extending the lease.
    async fn holds(&self, lock: &Lock) -> StoreResult<bool> {
        self.renew(lock).await
    }
    /// The workload's lock as the store holds it (expired or not), if any: a consistent
    /// read.
    async fn lock_of(&self, workload: &str) -> StoreResult<Option<Lock>>;
    /// Frees a lock this owner holds (for the run `run_id` only, when given: a lock
    /// the owner took again for another run stays).
    async fn release(&self, workload: &str, owner: &str, run_id: Option<&str>) -> StoreResult<()>;
    /// Saves a run (a checkpoint) with compare-and-set: the write succeeds only while
    /// the stored record is still at `run.version` (0: there is none, or one stored
    /// before versions), and then sets `run.version` to the version written. Otherwise
    /// it writes nothing and answers [`StoreError::Conflict`]: the caller re-reads.
    async fn save_run(&self, run: &mut Run) -> StoreResult<()>;
    /// Records a run that succeeded as the workload's last action, where the store
    /// keeps one for other readers (the original tool's `WorkloadState` table); most
    /// keep nothing more than the run itself.
    async fn record_last_action(&self, _run: &Run) -> StoreResult<()> {
        Ok(())
    }
    async fn load_run(&self, id: &str) -> StoreResult<Option<Run>>;
    /// The latest unfinished run of a workload, if any.
    async fn unfinished_run(&self, workload: &str) -> StoreResult<Option<Run>>;
    /// Runs, newest first.
    async fn list_runs(&self, workload: Option<&str>) -> StoreResult<Vec<RunSummaryRow>>;
    async fn exemptions(&self) -> StoreResult<Vec<Exemption>>;
    async fn add_exemption(&self, e: &Exemption) -> StoreResult<()>;
    /// Removes an instance's exemptions; `false` if it had none.
    async fn remove_exemption(&self, instance_id: &str) -> StoreResult<bool>;
    /// Remembers where instances were registered before they were taken out.
    async fn park(&self, workload: &str, entries: &[(String, LbTarget)]) -> StoreResult<()>;
    /// Where these instances were registered before they were taken out.
    async fn parked(&self, workload: &str, ids: &[String]) -> StoreResult<Vec<(String, LbTarget)>>;
    async fn unpark(&self, workload: &str, ids: &[String]) -> StoreResult<()>;
    /// The record of who shares the pacing buckets of `account` (an account and
    /// region), with its version, if there is one ([`crate::share`]): a consistent
    /// read.
    async fn pace_shares(&self, account: &str) -> StoreResult<Option<(PaceShares, u64)>>;
    /// Writes the record of `account` while it is still at `version` (0: there is
    /// none), else [`StoreError::Conflict`] and nothing written.
    async fn put_pace_shares(
        &self,
        account: &str,
        shares: &PaceShares,
        version: u64,
    ) -> StoreResult<()>;
}

/// What became of a schedule's event.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EventOutcome {
    /// Claimed by a process that is firing it.
    Claimed,
    /// A run was started for it.
    Fired,
    /// It did not fire: the workload is disabled, already in that state, or an
    /// override or a skip date kept it.
    Skipped,
    /// It happened while no process was watching, longer ago than the grace period.
    Missed,
    /// Firing it failed.
    Failed,
}

impl EventOutcome {
    pub fn as_str(self) -> &'static str {
        match self {
            EventOutcome::Claimed => "claimed",
            EventOutcome::Fired => "fired",
            EventOutcome::Skipped => "skipped",
            EventOutcome::Missed => "missed",
            EventOutcome::Failed => "failed",
        }
    }
}

/// A schedule's event as a store keeps it: claimed once, then what became of it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EventRecord {
    pub workload: String,
    /// `start` or `stop`.
    pub action: String,
    pub at: DateTime<Utc>,
    pub profile: Option<String>,
    pub outcome: EventOutcome,
    /// The process that claimed it.
    pub owner: String,
    pub recorded_at: DateTime<Utc>,
    pub run_id: Option<String>,
    /// Why it was skipped, missed or failed.
    pub detail: Option<String>,
}

impl EventRecord {
    /// The key that makes an event unique: its workload, action and instant.
    pub fn key(&self) -> String {
        format!(
            "{}#{}#{}",
            self.workload,
            self.action,
            self.at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
        )
    }
}

/// Overrides of schedules and the events fired from them.
#[async_trait]
pub trait ScheduleStore: Send + Sync {
    /// Overrides, of one workload or all, oldest first.
    async fn overrides(&self, workload: Option<&str>) -> StoreResult<Vec<Override>>;
    async fn add_override(&self, o: &Override) -> StoreResult<()>;
    /// `false` when no override has this id.
    async fn remove_override(&self, id: &str) -> StoreResult<bool>;
    /// Records an event unless one with the same key is recorded: `true` when this
    /// call recorded it (the caller owns the event), `false` when it was already
    /// claimed. The check and the write are one conditional write.
    async fn claim_event(&self, record: &EventRecord) -> StoreResult<bool>;
    /// Replaces the record of a claimed event (its outcome).
    async fn update_event(&self, record: &EventRecord) -> StoreResult<()>;
    /// Recorded events, of one workload or all, the latest `limit`, newest first.
    async fn event_records(
        &self,
        workload: Option<&str>,
        limit: usize,
    ) -> StoreResult<Vec<EventRecord>>;
    /// The record of one event (the key of [`EventRecord::key`]), if it was claimed.
    /// Stores that can read one record by its key do; the others look through the
    /// workload's records.
    async fn event_record(
        &self,
        workload: &str,
        action: &str,
        at: DateTime<Utc>,
    ) -> StoreResult<Option<EventRecord>> {
        Ok(self
            .event_records(Some(workload), usize::MAX)
            .await?
            .into_iter()
            .find(|r| r.action == action && r.at == at))
    }
}

/// Where workload definitions live.
#[async_trait]
pub trait ConfigStore: Send + Sync {
    async fn workload(&self, name: &str) -> StoreResult<Option<Workload>>;
    /// Every workload, sorted by name.
    async fn workloads(&self) -> StoreResult<Vec<Workload>>;
    /// The names of every workload, sorted, without decoding them: so that one that
    /// cannot be read does not keep the others from being read one by one.
    async fn workload_names(&self) -> StoreResult<Vec<String>> {
        Ok(self
            .workloads()
            .await?
            .into_iter()
            .map(|w| w.name.to_string())
            .collect())
    }
    /// Adds or replaces a workload; returns the names of tiers the store held for it
    /// and no longer does.
    async fn put_workload(&self, workload: &Workload) -> StoreResult<Vec<String>>;
    /// Removes a workload; `false` when there was none of that name.
    async fn delete_workload(&self, name: &str) -> StoreResult<bool>;
}

/// API tokens (their hashes, never their secrets).
#[async_trait]
pub trait AccessStore: Send + Sync {
    async fn token(&self, id: &str) -> StoreResult<Option<Token>>;
    /// Every token, revoked ones included, oldest first.
    async fn tokens(&self) -> StoreResult<Vec<Token>>;
    /// Adds a token or replaces the one with its id (to revoke it).
    async fn put_token(&self, token: &Token) -> StoreResult<()>;
}

/// A one-time schedule that starts one run of a scheduled event at its instant
/// (EventBridge Scheduler's `at(...)` with a time zone), in the deployment's group.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OneTime {
    /// Unique in the group: the workload's event (see `app::sync`).
    pub name: String,
    /// The event's instant as UTC wall time, `YYYY-MM-DDTHH:MM:SS` (the schedule's
    /// time zone is `UTC`): an instant, never ambiguous in an autumn's repeated hour.
    pub utc: String,
    /// The execution's name (so that Step Functions refuses a second start of it).
    pub execution: String,
    /// The execution's input, JSON: `{workload, action, at}`.
    pub input: String,
}

/// The one-time schedules of a deployment (EventBridge Scheduler, one group).
#[async_trait]
pub trait EventSchedules: Send + Sync {
    /// The names of the schedules in the group that begin with `prefix`.
    async fn names(&self, prefix: &str) -> ApiResult<Vec<String>>;
    async fn create(&self, schedule: &OneTime) -> ApiResult<()>;
    /// Deletes a schedule; one already gone is no error.
    async fn delete(&self, name: &str) -> ApiResult<()>;
}
