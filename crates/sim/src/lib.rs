//! A simulated EC2 region in virtual time.
//!
//! It implements the engine's ports: instances whose state changes take time
//! (pending -> running, stopping -> stopped), AWS's request and resource token buckets
//! (answering `RequestLimitExceeded` when they are empty), classic load balancers and
//! target groups with health checks and draining, SSM override-file outcomes per
//! instance, captured SNS notifications, and injected faults. Every API call and state
//! change is logged with its virtual time.
//!
//! Time only moves when [`Region::advance`] is called, so a 75-minute orchestration
//! of 10,000 instances runs in seconds.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BTreeSet, BinaryHeap};
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, TimeDelta, Utc};
use ec2_scheduler_core::db::{DbCluster, DbInstance};
use ec2_scheduler_core::plan::AUTO_SCALING_GROUP_TAG;
use ec2_scheduler_core::{Instance, InstanceState};
use ec2_scheduler_engine::pace::{Jitter, Limits, TokenBucket};
use ec2_scheduler_engine::ports::{
    ApiError, ApiResult, Clock, Compute, Databases, ErrorKind, LbTarget, MemberFilter,
    Notification, StatusCheck, TAGGED_VALUES_MAX,
};
use serde::{Deserialize, Serialize};

pub mod db;
mod services;

/// Timings and limits of the simulated region.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SimConfig {
    /// Seconds from pending to running.
    pub start_secs: f64,
    /// Seconds from stopping to stopped.
    pub stop_secs: f64,
    /// Relative spread of transition times (0.2 = plus or minus 20 %).
    pub jitter: f64,
    /// Seconds a running instance takes to pass its status checks.
    pub status_ok_secs: f64,
    /// Health check interval and healthy threshold of load balancers.
    pub health_interval_secs: f64,
    pub healthy_threshold: u32,
    /// Deregistration delay (connection draining).
    pub drain_secs: f64,
    /// Seconds before an SSM command answers.
    pub ssm_secs: f64,
    /// The account's API buckets.
    pub limits: Limits,
    /// Seed for jitter and random faults.
    pub seed: u64,
    /// Virtual time at the start (default: [`epoch`]).
    #[serde(default)]
    pub start: Option<DateTime<Utc>>,
    /// Heavy-tailed transition times instead of the base times with `jitter`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tail: Option<HeavyTail>,
    /// Share (0 to 1) of every bucket's refill that another client of the account
    /// spends, steadily: each bucket refills at the rest of its rate.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub background: f64,
}

fn is_zero(x: &f64) -> bool {
    *x == 0.0
}

/// Transition times drawn per instance and transition: uniform in `stop` or `start`
/// (seconds), except a `slow_share` of them, uniform in `slow`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct HeavyTail {
    pub stop: (f64, f64),
    pub start: (f64, f64),
    pub slow_share: f64,
    pub slow: (f64, f64),
}

impl Default for HeavyTail {
    /// Stops 20 to 120 s, starts 10 to 90 s, 1 % of either 3 to 10 minutes.
    fn default() -> Self {
        HeavyTail {
            stop: (20.0, 120.0),
            start: (10.0, 90.0),
            slow_share: 0.01,
            slow: (180.0, 600.0),
        }
    }
}

impl Default for SimConfig {
    fn default() -> Self {
        SimConfig {
            start_secs: 15.0,
            stop_secs: 30.0,
            jitter: 0.2,
            status_ok_secs: 60.0,
            health_interval_secs: 10.0,
            healthy_threshold: 3,
            drain_secs: 30.0,
            ssm_secs: 4.0,
            limits: Limits::AWS,
            seed: 1,
            start: None,
            tail: None,
            background: 0.0,
        }
    }
}

/// What the override-file check finds on an instance.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum SsmOutcome {
    /// The file is absent (default).
    Absent,
    Present,
    /// The command never completes.
    Timeout,
    /// The agent does not answer.
    AgentOffline,
}

/// Faults to inject.
#[derive(Debug, Clone, Default)]
pub struct Faults {
    /// Starting an instance of this (type, zone) fails for lack of capacity, this many
    /// more times (`u32::MAX`: always).
    pub capacity: BTreeMap<(String, String), u32>,
    /// These instances go pending -> stopped when started (as with an encrypted
    /// volume whose KMS key grant is missing).
    pub silent_start_failure: BTreeSet<String>,
    /// Share of calls answered with a 500 (0.0 to 1.0).
    pub server_error_rate: f64,
    /// Instance types that cannot be set (incompatible with the instances).
    pub incompatible_types: BTreeSet<String>,
    /// Instances that do not support hibernation.
    pub no_hibernation: BTreeSet<String>,
    /// Actions (`ec2:DescribeInstanceStatus`, `elb:Register`) answered
    /// `RequestLimitExceeded` every time: a throttling storm that never ends.
    pub always_throttled: BTreeSet<String>,
}

/// One line of the region's log.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum LogEntry {
    /// An API call and its outcome (`None` = success, else the error code).
    Call {
        at: DateTime<Utc>,
        action: String,
        instances: Vec<String>,
        error: Option<String>,
    },
    /// An instance changed state.
    State {
        at: DateTime<Utc>,
        instance: String,
        from: InstanceState,
        to: InstanceState,
    },
    /// An instance's type changed.
    Type {
        at: DateTime<Utc>,
        instance: String,
        from: String,
        to: String,
    },
    /// An instance was registered with / deregistered from a load balancer.
    Lb {
        at: DateTime<Utc>,
        instance: String,
        target: LbTarget,
        registered: bool,
    },
    /// A DB instance (`db:ID`) or DB cluster (`cluster:ID`) changed status; `by_rds`
    /// when RDS did it itself (the start after seven days stopped).
    Db {
        at: DateTime<Utc>,
        resource: String,
        from: String,
        to: String,
        by_rds: bool,
    },
}

impl LogEntry {
    pub fn at(&self) -> DateTime<Utc> {
        match self {
            LogEntry::Call { at, .. }
            | LogEntry::State { at, .. }
            | LogEntry::Type { at, .. }
            | LogEntry::Lb { at, .. }
            | LogEntry::Db { at, .. } => *at,
        }
    }
}

#[derive(Debug, Clone)]
struct SimInstance {
    inst: Instance,
    /// A pending transition: at this time, go to this state.
    next: Option<(DateTime<Utc>, InstanceState)>,
    running_since: Option<DateTime<Utc>>,
}

#[derive(Debug, Clone)]
struct Registration {
    since: DateTime<Utc>,
    draining_until: Option<DateTime<Utc>>,
}

#[derive(Debug)]
struct Command {
    sent: DateTime<Utc>,
    ids: Vec<String>,
}

#[derive(Debug)]
struct State {
    now: DateTime<Utc>,
    cfg: SimConfig,
    rng: Jitter,
    instances: BTreeMap<String, SimInstance>,
    lbs: BTreeMap<LbTarget, BTreeMap<String, Registration>>,
    ssm: BTreeMap<String, SsmOutcome>,
    commands: BTreeMap<String, Command>,
    published: Vec<(String, Notification)>,
    faults: Faults,
    describe: TokenBucket,
    mutating: TokenBucket,
    start_requests: TokenBucket,
    start_instances: TokenBucket,
    stop_instances: TokenBucket,
    log: Vec<LogEntry>,
    /// Calls received, by action, whatever their outcome.
    requests: BTreeMap<String, u64>,
    throttled: u64,
    /// Instances stopped with hibernation.
    hibernated: BTreeSet<String>,
    /// Transitions to apply, soonest first (entries may be stale; the instance's own
    /// `next` decides).
    due: BinaryHeap<Reverse<(DateTime<Utc>, String)>>,
    /// DB instances and clusters.
    dbs: db::DbFleet,
}

/// The simulated region. All ports take `&self`; state sits behind a mutex.
#[derive(Debug)]
pub struct Region {
    state: Mutex<State>,
}

/// Seconds after which an Auto Scaling group terminates an instance of its own that
/// someone stopped (its health check fails), and launches a replacement.
pub const ASG_REPLACE_SECS: f64 = 60.0;

/// The virtual time at which every simulation starts.
pub fn epoch() -> DateTime<Utc> {
    DateTime::parse_from_rfc3339("2026-01-05T20:00:00Z")
        .expect("valid")
        .with_timezone(&Utc)
}

fn throttled(action: &str) -> ApiError {
    err(
        ErrorKind::Throttled,
        action,
        "RequestLimitExceeded",
        "Request limit exceeded.".into(),
        vec![],
    )
}

fn err(
    kind: ErrorKind,
    action: &str,
    code: &str,
    message: String,
    instances: Vec<String>,
) -> ApiError {
    ApiError {
        kind,
        action: action.to_string(),
        code: code.to_string(),
        message,
        instances,
    }
}

fn secs(s: f64) -> TimeDelta {
    TimeDelta::microseconds((s * 1e6) as i64)
}

impl State {
    /// Applies transitions due by `now`, in time order.
    fn settle(&mut self) {
        let now = self.now;
        while let Some(Reverse((at, _))) = self.due.peek()
            && *at <= now
        {
            let Reverse((at, id)) = self.due.pop().expect("peeked");
            let Some(s) = self.instances.get_mut(&id) else {
                continue;
            };
            if s.next.is_none_or(|(t, _)| t != at) {
                continue; // stale entry
            }
            let (_, to) = s.next.take().expect("due");
            let from = s.inst.state;
            s.inst.state = to;
            if to == InstanceState::Running {
                s.running_since = Some(at);
                s.inst.state_reason = None;
            } else {
                s.running_since = None;
            }
            if to == InstanceState::Stopped && from == InstanceState::Pending {
                s.inst.state_reason =
                    Some("Client.InternalError: Client error on launch".to_string());
            } else if to == InstanceState::Stopped {
                s.inst.state_reason =
                    Some("Client.UserInitiatedShutdown: User initiated shutdown".to_string());
            }
            self.log.push(LogEntry::State {
                at,
                instance: id.clone(),
                from,
                to,
            });
            self.auto_scaling(&id, at, from, to);
        }
        for regs in self.lbs.values_mut() {
            regs.retain(|_, r| r.draining_until.is_none_or(|d| d > now));
        }
        let mut changes = Vec::new();
        self.dbs.settle(now, &mut self.rng, &mut changes);
        self.log_db(changes);
    }

    fn log_db(&mut self, changes: Vec<db::Change>) {
        for c in changes {
            self.log.push(LogEntry::Db {
                at: c.at,
                resource: match &c.resource {
                    db::Resource::Instance(id) => format!("db:{id}"),
                    db::Resource::Cluster(id) => format!("cluster:{id}"),
                },
                from: c.from.as_str().to_string(),
                to: c.to.as_str().to_string(),
                by_rds: c.by_rds,
            });
        }
    }

    /// A start or stop of a database: a random server error first, then RDS's rules.
    fn db_change(&mut self, r: db::Resource, start: bool) -> ApiResult<()> {
        self.settle();
        let action = match (start, &r) {
            (true, db::Resource::Instance(_)) => "rds:StartDBInstance",
            (false, db::Resource::Instance(_)) => "rds:StopDBInstance",
            (true, db::Resource::Cluster(_)) => "rds:StartDBCluster",
            (false, db::Resource::Cluster(_)) => "rds:StopDBCluster",
        };
        let ids = [r.id().to_string()];
        let result = self.admit(action, &[]).and_then(|()| {
            let mut changes = Vec::new();
            let now = self.now;
            let r = self.dbs.change(&r, start, now, &mut self.rng, &mut changes);
            self.log_db(changes);
            r
        });
        self.call(action, &ids, result)
    }

    /// What an Auto Scaling group does with an instance of its own that changed
    /// state: one stopped by someone else fails the group's health check and is
    /// terminated ([`ASG_REPLACE_SECS`] later), and a new instance is launched in its
    /// place, with its tags, type, zone and network.
    fn auto_scaling(
        &mut self,
        id: &str,
        at: DateTime<Utc>,
        from: InstanceState,
        to: InstanceState,
    ) {
        let Some(s) = self.instances.get_mut(id) else {
            return;
        };
        if !s.inst.tags.contains_key(AUTO_SCALING_GROUP_TAG) {
            return;
        }
        match to {
            InstanceState::Stopped if from != InstanceState::Pending => {
                let when = at + secs(ASG_REPLACE_SECS);
                s.next = Some((when, InstanceState::Terminated));
                self.due.push(Reverse((when, id.to_string())));
            }
            InstanceState::Terminated => {
                let mut new = s.inst.clone();
                let prefix = format!("{id}-r");
                let n = self
                    .instances
                    .keys()
                    .filter(|k| k.starts_with(&prefix))
                    .count();
                new.id = format!("{id}-r{}", n + 1);
                new.state = InstanceState::Pending;
                new.state_reason = None;
                let when = at + secs(self.transition(true));
                self.due.push(Reverse((when, new.id.clone())));
                self.log.push(LogEntry::State {
                    at,
                    instance: new.id.clone(),
                    from: InstanceState::Terminated,
                    to: InstanceState::Pending,
                });
                self.instances.insert(
                    new.id.clone(),
                    SimInstance {
                        inst: new,
                        next: Some((when, InstanceState::Running)),
                        running_since: None,
                    },
                );
            }
            _ => {}
        }
    }

    fn spread(&mut self, base: f64) -> f64 {
        let j = self.cfg.jitter;
        base * (1.0 - j + 2.0 * j * self.rng.next_unit())
    }

    /// How long a start (or a stop) takes.
    fn transition(&mut self, start: bool) -> f64 {
        let Some(t) = self.cfg.tail else {
            let base = if start {
                self.cfg.start_secs
            } else {
                self.cfg.stop_secs
            };
            return self.spread(base);
        };
        let (lo, hi) = if self.rng.next_unit() < t.slow_share {
            t.slow
        } else if start {
            t.start
        } else {
            t.stop
        };
        lo + (hi - lo) * self.rng.next_unit()
    }

    fn call(
        &mut self,
        action: &str,
        ids: &[String],
        result: Result<(), ApiError>,
    ) -> ApiResult<()> {
        *self.requests.entry(action.to_string()).or_default() += 1;
        self.log.push(LogEntry::Call {
            at: self.now,
            action: action.to_string(),
            instances: ids.to_vec(),
            error: result.as_ref().err().map(|e| e.code.clone()),
        });
        if let Err(e) = &result
            && e.kind == ErrorKind::Throttled
        {
            self.throttled += 1;
        }
        result
    }

    /// Common checks of a call: a random server error, then the buckets.
    fn admit(&mut self, action: &str, buckets: &[(Bucket, f64)]) -> Result<(), ApiError> {
        if self.faults.server_error_rate > 0.0
            && self.rng.next_unit() < self.faults.server_error_rate
        {
            return Err(err(
                ErrorKind::Server,
                action,
                "InternalError",
                "simulated server error".into(),
                vec![],
            ));
        }
        let now = self.now;
        self.storm(action)?;
        for (b, n) in buckets {
            // A call that needs more than the bucket holds when full never goes.
            let bucket = self.bucket(*b);
            if *n > bucket.capacity() || !bucket.wait_for(*n, now).is_zero() {
                return Err(throttled(action));
            }
        }
        for (b, n) in buckets {
            self.bucket(*b).take(*n, now).expect("checked");
        }
        Ok(())
    }

    /// A throttle when the action is in a storm that never ends
    /// ([`Faults::always_throttled`]).
    fn storm(&self, action: &str) -> Result<(), ApiError> {
        if self.faults.always_throttled.contains(action) {
            Err(throttled(action))
        } else {
            Ok(())
        }
    }

    fn bucket(&mut self, b: Bucket) -> &mut TokenBucket {
        match b {
            Bucket::Describe => &mut self.describe,
            Bucket::Mutating => &mut self.mutating,
            Bucket::StartRequests => &mut self.start_requests,
            Bucket::StartInstances => &mut self.start_instances,
            Bucket::StopInstances => &mut self.stop_instances,
        }
    }

    fn unknown(&self, action: &str, ids: &[String]) -> Result<(), ApiError> {
        let missing: Vec<String> = ids
            .iter()
            .filter(|i| !self.instances.contains_key(*i))
            .cloned()
            .collect();
        if missing.is_empty() {
            Ok(())
        } else {
            Err(err(
                ErrorKind::NotFound,
                action,
                "InvalidInstanceID.NotFound",
                format!("The instance IDs '{}' do not exist", missing.join(", ")),
                missing,
            ))
        }
    }

    fn too_many(action: &str, ids: &[String], max: usize) -> Result<(), ApiError> {
        if ids.len() > max {
            Err(err(
                ErrorKind::Other,
                action,
                "InvalidParameterValue",
                format!("at most {max} instance ids per call, got {}", ids.len()),
                vec![],
            ))
        } else {
            Ok(())
        }
    }
}

#[derive(Debug, Clone, Copy)]
enum Bucket {
    Describe,
    Mutating,
    StartRequests,
    StartInstances,
    StopInstances,
}

impl Region {
    /// A region holding `instances`, at `cfg.start` (default [`epoch`]). Instances
    /// caught in a transition (pending, stopping) complete it as they would.
    pub fn new(instances: Vec<Instance>, cfg: SimConfig) -> Self {
        let l = cfg.limits.shared(cfg.background);
        let now = cfg.start.unwrap_or_else(epoch);
        let mut rng = Jitter::new(cfg.seed);
        let instances = instances
            .into_iter()
            .map(|i| {
                let since = (i.state == InstanceState::Running).then(|| now - TimeDelta::hours(1));
                let next = match i.state {
                    InstanceState::Pending => Some((
                        now + secs(cfg.start_secs * rng.next_unit()),
                        InstanceState::Running,
                    )),
                    InstanceState::Stopping => Some((
                        now + secs(cfg.stop_secs * rng.next_unit()),
                        InstanceState::Stopped,
                    )),
                    InstanceState::ShuttingDown => {
                        Some((now + secs(cfg.stop_secs), InstanceState::Terminated))
                    }
                    _ => None,
                };
                (
                    i.id.clone(),
                    SimInstance {
                        inst: i,
                        next,
                        running_since: since,
                    },
                )
            })
            .collect::<BTreeMap<_, _>>();
        let due = instances
            .iter()
            .filter_map(|(id, s)| s.next.map(|(at, _)| Reverse((at, id.clone()))))
            .collect();
        let state = State {
            now,
            rng,
            instances,
            lbs: BTreeMap::new(),
            ssm: BTreeMap::new(),
            commands: BTreeMap::new(),
            published: Vec::new(),
            faults: Faults::default(),
            describe: TokenBucket::new(l.describe),
            mutating: TokenBucket::new(l.mutating),
            start_requests: TokenBucket::new(l.start_requests),
            start_instances: TokenBucket::new(l.start_instances),
            stop_instances: TokenBucket::new(l.stop_instances),
            log: Vec::new(),
            requests: BTreeMap::new(),
            throttled: 0,
            hibernated: BTreeSet::new(),
            due,
            dbs: db::DbFleet::default(),
            cfg,
        };
        Region {
            state: Mutex::new(state),
        }
    }

    /// Load balancers holding each instance now (draining ones excluded).
    pub fn memberships(&self) -> BTreeMap<String, Vec<LbTarget>> {
        let mut s = self.st();
        s.settle();
        let mut out: BTreeMap<String, Vec<LbTarget>> = BTreeMap::new();
        for (t, regs) in &s.lbs {
            for (id, r) in regs {
                if r.draining_until.is_none() {
                    out.entry(id.clone()).or_default().push(t.clone());
                }
            }
        }
        out
    }

    fn st(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Moves virtual time forward and applies the state changes due.
    pub fn advance(&self, d: Duration) {
        let mut s = self.st();
        s.now = TimeDelta::from_std(d)
            .ok()
            .and_then(|d| s.now.checked_add_signed(d))
            .unwrap_or(DateTime::<Utc>::MAX_UTC);
        s.settle();
    }

    /// Every instance as it is now.
    pub fn instances(&self) -> Vec<Instance> {
        let mut s = self.st();
        s.settle();
        s.instances.values().map(|i| i.inst.clone()).collect()
    }

    /// One instance as it is now.
    pub fn instance(&self, id: &str) -> Option<Instance> {
        let mut s = self.st();
        s.settle();
        s.instances.get(id).map(|i| i.inst.clone())
    }

    /// A number that changes whenever a call is made or an instance changes (the
    /// length of the log): what was saved at one revision needs no saving again.
    pub fn revision(&self) -> usize {
        let mut s = self.st();
        s.settle();
        s.log.len()
    }

    /// The instances whose state, type or load-balancer registrations changed after
    /// revision `since` (see [`Region::revision`]), and the revision now.
    pub fn changed_since(&self, since: usize) -> (usize, BTreeSet<String>) {
        let mut s = self.st();
        s.settle();
        let changed = s
            .log
            .get(since..)
            .unwrap_or_default()
            .iter()
            .filter_map(|e| match e {
                LogEntry::Call { .. } | LogEntry::Db { .. } => None,
                LogEntry::State { instance, .. }
                | LogEntry::Type { instance, .. }
                | LogEntry::Lb { instance, .. } => Some(instance.clone()),
            })
            .collect();
        (s.log.len(), changed)
    }

    /// Adds (or replaces) a DB instance as it is now.
    pub fn add_db_instance(&self, d: DbInstance) {
        self.st().dbs.add_instance(d);
    }

    /// Adds (or replaces) a DB cluster as it is now; its members are added with
    /// [`Region::add_db_instance`], naming it.
    pub fn add_db_cluster(&self, c: DbCluster) {
        self.st().dbs.add_cluster(c);
    }

    /// A DB instance as it is now.
    pub fn db_instance(&self, id: &str) -> Option<DbInstance> {
        let mut s = self.st();
        s.settle();
        s.dbs.instance(id)
    }

    /// A DB cluster as it is now.
    pub fn db_cluster(&self, id: &str) -> Option<DbCluster> {
        let mut s = self.st();
        s.settle();
        s.dbs.cluster(id)
    }

    /// Changes an instance in place (e.g. to retag it in the middle of a run).
    pub fn edit(&self, id: &str, f: impl FnOnce(&mut Instance)) {
        let mut s = self.st();
        if let Some(i) = s.instances.get_mut(id) {
            f(&mut i.inst);
        }
    }

    /// Registers instances with a load balancer (as set up before the simulation).
    pub fn attach(&self, target: LbTarget, ids: &[&str]) {
        let mut s = self.st();
        let since = s.now - TimeDelta::hours(1);
        let regs = s.lbs.entry(target).or_default();
        for id in ids {
            regs.insert(
                id.to_string(),
                Registration {
                    since,
                    draining_until: None,
                },
            );
        }
    }

    /// Which instances a load balancer holds now (draining ones included).
    pub fn registered(&self, target: &LbTarget) -> Vec<String> {
        let mut s = self.st();
        s.settle();
        s.lbs
            .get(target)
            .map(|r| r.keys().cloned().collect())
            .unwrap_or_default()
    }

    /// Sets what the override-file check finds on an instance.
    pub fn set_ssm(&self, id: &str, outcome: SsmOutcome) {
        self.st().ssm.insert(id.to_string(), outcome);
    }

    /// Changes the injected faults.
    pub fn faults(&self, f: impl FnOnce(&mut Faults)) {
        f(&mut self.st().faults);
    }

    /// The log so far.
    pub fn log(&self) -> Vec<LogEntry> {
        self.st().log.clone()
    }

    /// Notifications published so far, with their topic.
    pub fn published(&self) -> Vec<(String, Notification)> {
        self.st().published.clone()
    }

    /// Instances that were stopped with hibernation.
    pub fn hibernated(&self) -> BTreeSet<String> {
        self.st().hibernated.clone()
    }

    /// Calls answered with `RequestLimitExceeded`.
    pub fn throttled(&self) -> u64 {
        self.st().throttled
    }

    /// Calls of `action` (`ec2:DescribeInstances`) received so far, answered or not.
    pub fn calls(&self, action: &str) -> usize {
        self.st()
            .log
            .iter()
            .filter(|e| matches!(e, LogEntry::Call { action: a, .. } if a == action))
            .count()
    }
}

impl Clock for Region {
    fn now(&self) -> DateTime<Utc> {
        self.st().now
    }
}

fn matches(filter: &MemberFilter, i: &Instance) -> bool {
    i.tags.get(&filter.workload_tag_key) == Some(&filter.workload_tag_value)
        && i.tags
            .get(&filter.tier_tag_key)
            .is_some_and(|t| filter.tier_values.contains(t))
        && filter
            .vpc
            .as_ref()
            .is_none_or(|v| i.vpc_id.as_ref() == Some(v))
}

#[async_trait]
impl Databases for Region {
    async fn describe_db_instances(
        &self,
        tag_key: &str,
        values: &[String],
    ) -> ApiResult<Vec<DbInstance>> {
        let mut s = self.st();
        s.settle();
        let a = "rds:DescribeDBInstances";
        let r = s.admit(a, &[]);
        s.call(a, &[], r)?;
        Ok(s.dbs.instances_tagged(tag_key, values))
    }

    async fn describe_db_clusters(
        &self,
        tag_key: &str,
        values: &[String],
    ) -> ApiResult<Vec<DbCluster>> {
        let mut s = self.st();
        s.settle();
        let a = "rds:DescribeDBClusters";
        let r = s.admit(a, &[]);
        s.call(a, &[], r)?;
        Ok(s.dbs.clusters_tagged(tag_key, values))
    }

    async fn start_db_instance(&self, id: &str) -> ApiResult<()> {
        self.st()
            .db_change(db::Resource::Instance(id.to_string()), true)
    }

    async fn stop_db_instance(&self, id: &str) -> ApiResult<()> {
        self.st()
            .db_change(db::Resource::Instance(id.to_string()), false)
    }

    async fn start_db_cluster(&self, id: &str) -> ApiResult<()> {
        self.st()
            .db_change(db::Resource::Cluster(id.to_string()), true)
    }

    async fn stop_db_cluster(&self, id: &str) -> ApiResult<()> {
        self.st()
            .db_change(db::Resource::Cluster(id.to_string()), false)
    }
}

#[async_trait]
impl Compute for Region {
    async fn describe(&self, filter: &MemberFilter) -> ApiResult<Vec<Instance>> {
        let mut s = self.st();
        s.settle();
        let a = "ec2:DescribeInstances";
        let r = s.admit(a, &[(Bucket::Describe, 1.0)]);
        s.call(a, &[], r)?;
        Ok(s.instances
            .values()
            .filter(|i| matches(filter, &i.inst))
            .map(|i| i.inst.clone())
            .collect())
    }

    async fn describe_tagged(&self, key: &str, values: &[String]) -> ApiResult<Vec<Instance>> {
        let mut s = self.st();
        s.settle();
        let a = "ec2:DescribeInstances";
        // One call per chunk of values, as the AWS adapter makes them.
        for _ in values.chunks(TAGGED_VALUES_MAX) {
            let r = s.admit(a, &[(Bucket::Describe, 1.0)]);
            s.call(a, &[], r)?;
        }
        Ok(s.instances
            .values()
            .filter(|i| i.inst.tags.get(key).is_some_and(|v| values.contains(v)))
            .map(|i| i.inst.clone())
            .collect())
    }

    async fn describe_ids(&self, ids: &[String]) -> ApiResult<Vec<Instance>> {
        let mut s = self.st();
        s.settle();
        let a = "ec2:DescribeInstances";
        let r = State::too_many(a, ids, 1000).and_then(|()| s.admit(a, &[(Bucket::Describe, 1.0)]));
        s.call(a, &[], r)?;
        Ok(ids
            .iter()
            .filter_map(|i| s.instances.get(i))
            .map(|i| i.inst.clone())
            .collect())
    }

    async fn start(&self, ids: &[String]) -> ApiResult<()> {
        let mut s = self.st();
        s.settle();
        let a = "ec2:StartInstances";
        let r = (|| {
            State::too_many(a, ids, 1000)?;
            s.admit(
                a,
                &[
                    (Bucket::StartRequests, 1.0),
                    (Bucket::StartInstances, ids.len() as f64),
                ],
            )?;
            s.unknown(a, ids)?;
            let wrong: Vec<String> = ids
                .iter()
                .filter(|i| {
                    !matches!(
                        s.instances[*i].inst.state,
                        InstanceState::Stopped | InstanceState::Running | InstanceState::Pending
                    )
                })
                .cloned()
                .collect();
            if let Some(first) = wrong.first() {
                let st = s.instances[first].inst.state;
                return Err(err(
                    ErrorKind::IncorrectState,
                    a,
                    "IncorrectInstanceState",
                    format!(
                        "The instance '{first}' is not in a state from which it can be started ({st})."
                    ),
                    wrong,
                ));
            }
            for id in ids {
                let key = {
                    let i = &s.instances[id].inst;
                    (i.instance_type.clone(), i.az.clone())
                };
                if s.instances[id].inst.state == InstanceState::Stopped
                    && let Some(n) = s.faults.capacity.get_mut(&key)
                    && *n > 0
                {
                    if *n != u32::MAX {
                        *n -= 1;
                    }
                    return Err(err(
                        ErrorKind::InsufficientCapacity,
                        a,
                        "InsufficientInstanceCapacity",
                        format!(
                            "We currently do not have sufficient {} capacity in the Availability Zone you requested ({}).",
                            key.0, key.1
                        ),
                        vec![id.clone()],
                    ));
                }
            }
            let now = s.now;
            for id in ids {
                if s.instances[id].inst.state != InstanceState::Stopped {
                    continue;
                }
                let silent = s.faults.silent_start_failure.contains(id);
                let t = if silent {
                    let base = s.cfg.start_secs / 3.0;
                    s.spread(base)
                } else {
                    s.transition(true)
                };
                let si = s.instances.get_mut(id).expect("known");
                si.inst.state = InstanceState::Pending;
                si.inst.state_reason = None;
                si.next = Some((
                    now + secs(t),
                    if silent {
                        InstanceState::Stopped
                    } else {
                        InstanceState::Running
                    },
                ));
                s.due.push(Reverse((now + secs(t), id.clone())));
                s.log.push(LogEntry::State {
                    at: now,
                    instance: id.clone(),
                    from: InstanceState::Stopped,
                    to: InstanceState::Pending,
                });
            }
            Ok(())
        })();
        s.call(a, ids, r)
    }

    async fn stop(&self, ids: &[String], hibernate: bool) -> ApiResult<()> {
        let mut s = self.st();
        s.settle();
        let a = "ec2:StopInstances";
        let r = (|| {
            State::too_many(a, ids, 1000)?;
            s.admit(
                a,
                &[
                    (Bucket::Mutating, 1.0),
                    (Bucket::StopInstances, ids.len() as f64),
                ],
            )?;
            s.unknown(a, ids)?;
            let wrong: Vec<String> = ids
                .iter()
                .filter(|i| {
                    matches!(
                        s.instances[*i].inst.state,
                        InstanceState::Pending
                            | InstanceState::Terminated
                            | InstanceState::ShuttingDown
                    )
                })
                .cloned()
                .collect();
            if let Some(first) = wrong.first() {
                let st = s.instances[first].inst.state;
                return Err(err(
                    ErrorKind::IncorrectState,
                    a,
                    "IncorrectInstanceState",
                    format!(
                        "The instance '{first}' is not in a state from which it can be stopped ({st})."
                    ),
                    wrong,
                ));
            }
            if hibernate {
                let unable: Vec<String> = ids
                    .iter()
                    .filter(|i| s.faults.no_hibernation.contains(*i))
                    .cloned()
                    .collect();
                if !unable.is_empty() {
                    return Err(err(
                        ErrorKind::Unsupported,
                        a,
                        "UnsupportedHibernationConfiguration",
                        format!(
                            "The instances '{}' are not enabled for hibernation.",
                            unable.join(", ")
                        ),
                        unable,
                    ));
                }
            }
            let now = s.now;
            for id in ids {
                if s.instances[id].inst.state != InstanceState::Running {
                    continue;
                }
                if hibernate {
                    s.hibernated.insert(id.clone());
                }
                let t = s.transition(false);
                let si = s.instances.get_mut(id).expect("known");
                si.inst.state = InstanceState::Stopping;
                si.running_since = None;
                si.next = Some((now + secs(t), InstanceState::Stopped));
                s.due.push(Reverse((now + secs(t), id.clone())));
                s.log.push(LogEntry::State {
                    at: now,
                    instance: id.clone(),
                    from: InstanceState::Running,
                    to: InstanceState::Stopping,
                });
            }
            Ok(())
        })();
        s.call(a, ids, r)
    }

    async fn set_type(&self, id: &str, instance_type: &str) -> ApiResult<()> {
        let mut s = self.st();
        s.settle();
        let a = "ec2:ModifyInstanceAttribute";
        let ids = [id.to_string()];
        let r = (|| {
            s.admit(a, &[(Bucket::Mutating, 1.0)])?;
            s.unknown(a, &ids)?;
            let st = s.instances[id].inst.state;
            if st != InstanceState::Stopped {
                return Err(err(
                    ErrorKind::IncorrectState,
                    a,
                    "IncorrectInstanceState",
                    format!("The instance '{id}' is not in the 'stopped' state ({st})."),
                    ids.to_vec(),
                ));
            }
            if s.faults.incompatible_types.contains(instance_type) {
                return Err(err(
                    ErrorKind::Unsupported,
                    a,
                    "InvalidParameterCombination",
                    format!(
                        "The instance type '{instance_type}' is not compatible with instance '{id}'."
                    ),
                    ids.to_vec(),
                ));
            }
            let now = s.now;
            let si = s.instances.get_mut(id).expect("known");
            let from = std::mem::replace(&mut si.inst.instance_type, instance_type.to_string());
            s.log.push(LogEntry::Type {
                at: now,
                instance: id.to_string(),
                from,
                to: instance_type.to_string(),
            });
            Ok(())
        })();
        s.call(a, &ids, r)
    }

    async fn status_checks(&self, ids: &[String]) -> ApiResult<Vec<(String, StatusCheck)>> {
        let mut s = self.st();
        s.settle();
        let a = "ec2:DescribeInstanceStatus";
        let r = State::too_many(a, ids, 100).and_then(|()| s.admit(a, &[(Bucket::Describe, 1.0)]));
        s.call(a, &[], r)?;
        let now = s.now;
        let ok_after = secs(s.cfg.status_ok_secs);
        Ok(ids
            .iter()
            .filter_map(|id| s.instances.get(id).map(|i| (id, i)))
            .map(|(id, i)| {
                let check = match i.running_since {
                    Some(t) if now - t >= ok_after => StatusCheck::Ok,
                    Some(_) => StatusCheck::Initializing,
                    None => StatusCheck::Unknown,
                };
                (id.clone(), check)
            })
            .collect())
    }
}
