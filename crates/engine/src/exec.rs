//! The executor: applies a plan step by step through the ports.
//!
//! It is a reconciler. Before acting, each step observes the instances again and acts
//! only on those that still need it, still are members of the workload, and (for a
//! stop) are still not exempt; so a step can be repeated after a crash without doing
//! anything twice. A checkpoint is saved after each step.
//!
//! It never sleeps: [`Executor::tick`] does all it can do now and returns how long to
//! wait before the next tick ([`Tick::Wait`]) or [`Tick::Done`]. A foreground loop, a
//! daemon, the simulator's virtual clock and a Step Functions Wait state can all drive
//! it.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::time::Duration;

use chrono::{DateTime, Utc};
use ec2_scheduler_core::fleet::membership;
use ec2_scheduler_core::model::{Gate, Os, Tier, Workload};
use ec2_scheduler_core::plan::{
    Exemptions, PauseReason, Plan, PlanRequest, ScaleIn, Stage, Step, TierPlan,
};
use ec2_scheduler_core::{Action, FailurePolicy, Instance, InstanceState, plan};

use crate::notify::Event;
use crate::pace::{Jitter, Limits, TokenBucket, backoff};
use crate::ports::{
    ApiError, Clock, Compute, ErrorKind, Health, LbTarget, LoadBalancing, Lock, LockOutcome,
    MemberFilter, Notifier, OverrideProbe, ProbeResult, RunStore, StatusCheck, StoreError,
};
use crate::run::{Cursor, Failure, Kept, Phase, Run, RunStatus, TierTiming};

/// Errors that stop the engine (as opposed to instance failures, which the failure
/// policy handles).
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    /// A call that the run cannot do without failed (e.g. describing the workload).
    #[error(transparent)]
    Api(#[from] ApiError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("cannot plan: {0}")]
    Plan(#[from] ec2_scheduler_core::PlanError),
    /// Another run holds the workload's lock.
    #[error(
        "workload {} is busy: run {} of {} holds its lock until {}",
        .0.workload, .0.run_id, .0.owner, .0.expires.to_rfc3339()
    )]
    Busy(Lock),
    /// The lease was lost (another run took over after it expired).
    #[error("lost the lock of workload {0}: another run took over")]
    LockLost(String),
    #[error("no run {0}")]
    NoSuchRun(String),
}

/// Engine result.
pub type Result<T, E = EngineError> = std::result::Result<T, E>;

/// The ports the executor works through.
#[derive(Clone, Copy)]
pub struct Ports<'a> {
    pub compute: &'a dyn Compute,
    pub lb: &'a dyn LoadBalancing,
    pub probe: &'a dyn OverrideProbe,
    pub notifier: &'a dyn Notifier,
    pub store: &'a dyn RunStore,
    /// The world's time: transitions, pauses, timeouts, exemption expiries.
    pub clock: &'a dyn Clock,
    /// The time of locks: wall time, which other processes share, even when `clock`
    /// is a simulated world's.
    pub lease_clock: &'a dyn Clock,
}

/// Tunables, with defaults suited to AWS.
#[derive(Debug, Clone)]
pub struct Settings {
    pub limits: Limits,
    /// How often to look again while waiting.
    pub poll: Duration,
    /// Longest wait for instances to reach a state.
    pub wait_timeout: Duration,
    /// Longest wait for an override-file probe; no answer keeps the instance running.
    pub probe_timeout: Duration,
    /// Longest wait for load-balancer draining after deregistration.
    pub drain_timeout: Duration,
    /// Retries of a call that was throttled or failed with a server error.
    pub max_retries: u32,
    /// Retries of a start that failed for lack of capacity.
    pub capacity_retries: u32,
    pub backoff_base: Duration,
    pub backoff_cap: Duration,
    /// Lock lease (in `lease_clock` time); renewed while the run makes progress.
    pub lease: Duration,
    /// Seconds of `clock` time that pass per second of `lease_clock` time: 1 on AWS,
    /// the speed of a simulator driven in real time, `None` for a simulator driven as
    /// fast as it goes (where waiting costs no lease time, so waits are not cut short
    /// to renew the lease).
    pub clock_rate: Option<f64>,
    /// Identifies this process as lock owner.
    pub owner: String,
    /// Smallest batch worth a start or stop call while the resource bucket refills.
    pub min_batch: usize,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            limits: Limits::AWS,
            poll: Duration::from_secs(5),
            wait_timeout: Duration::from_secs(900),
            probe_timeout: Duration::from_secs(120),
            drain_timeout: Duration::from_secs(300),
            max_retries: 8,
            capacity_retries: 4,
            backoff_base: Duration::from_secs(1),
            backoff_cap: Duration::from_secs(60),
            lease: Duration::from_secs(120),
            clock_rate: Some(1.0),
            owner: "ec2-scheduler".to_string(),
            min_batch: 50,
        }
    }
}

/// What to run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunRequest {
    pub action: Action,
    pub profile: Option<String>,
    pub scale_in: ScaleIn,
}

/// What [`Executor::begin`] did.
#[derive(Debug)]
pub enum Begin {
    /// A new run, saved and locked.
    Started(Box<Run>),
    /// An unfinished run of the same action and profile, picked up where it stopped.
    Resumed(Box<Run>),
    /// Nothing to do (already in the target state, or the workload is disabled); no
    /// run was recorded.
    NothingToDo(Box<Plan>),
}

/// What to do after a tick.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tick {
    /// Call `tick` again after this long.
    Wait(Duration),
    /// The run is finished.
    Done,
}

enum Poll {
    Done,
    Wait(Duration),
}

/// Batches of instances still to send in one call each.
#[derive(Debug, Clone, Default)]
struct Calls {
    queue: VecDeque<(Vec<String>, u32)>,
    called: BTreeSet<String>,
    deadline: Option<DateTime<Utc>>,
    /// Calls refused for one instance alone, by instance.
    strikes: BTreeMap<String, u32>,
    /// Instances that cannot hibernate: stopped normally.
    no_hibernate: BTreeSet<String>,
}

/// Progress inside the current step of a tier; not saved: a resumed step starts over
/// and re-observes.
#[derive(Debug, Clone)]
enum StepState {
    Fresh,
    Calls(Calls),
    Probing {
        sent: VecDeque<(Vec<String>, u32)>,
        handles: Vec<(String, Vec<String>)>,
        decided: BTreeSet<String>,
        deadline: DateTime<Utc>,
    },
    Draining {
        targets: Vec<(LbTarget, Vec<String>)>,
        deadline: DateTime<Utc>,
    },
    Resizing {
        queue: VecDeque<(String, String, u32)>,
        verify: Vec<(String, String)>,
        checks: u32,
    },
    Until(DateTime<Utc>),
    /// A readiness gate: its deadline and how many checks in a row failed.
    Gate {
        deadline: DateTime<Utc>,
        failures: u32,
    },
}

/// Pacing buckets of one executor.
#[derive(Debug, Clone)]
struct Buckets {
    describe: TokenBucket,
    mutating: TokenBucket,
    start_requests: TokenBucket,
    start_instances: TokenBucket,
    stop_instances: TokenBucket,
}

/// Applies plans for one workload.
pub struct Executor<'a> {
    ports: Ports<'a>,
    settings: Settings,
    workload: Workload,
    buckets: Buckets,
    state: BTreeMap<String, StepState>,
    /// The current stage, cloned from the run once per stage.
    stage: Option<((Phase, usize), Stage)>,
}

fn dur(d: chrono::TimeDelta) -> Duration {
    d.to_std().unwrap_or(Duration::ZERO)
}

/// `now + d`, saturating at the latest time chrono can hold: a wait can be longer
/// than any run, never a reason to panic.
pub(crate) fn after(now: DateTime<Utc>, d: Duration) -> DateTime<Utc> {
    chrono::TimeDelta::from_std(d)
        .ok()
        .and_then(|d| now.checked_add_signed(d))
        .unwrap_or(DateTime::<Utc>::MAX_UTC)
}

fn api_name(a: &ApiError) -> String {
    format!("{} ({})", a.code, a.message)
}

impl<'a> Executor<'a> {
    pub fn new(ports: Ports<'a>, settings: Settings, workload: Workload) -> Self {
        let l = settings.limits;
        Executor {
            ports,
            buckets: Buckets {
                describe: TokenBucket::new(l.describe),
                mutating: TokenBucket::new(l.mutating),
                start_requests: TokenBucket::new(l.start_requests),
                start_instances: TokenBucket::new(l.start_instances),
                stop_instances: TokenBucket::new(l.stop_instances),
            },
            settings,
            workload,
            state: BTreeMap::new(),
            stage: None,
        }
    }

    pub fn workload(&self) -> &Workload {
        &self.workload
    }

    fn filter(&self) -> MemberFilter {
        let w = &self.workload;
        MemberFilter {
            workload_tag_key: w.workload_tag.key.to_string(),
            workload_tag_value: w.workload_tag.value.to_string(),
            tier_tag_key: w.tier_tag_key.to_string(),
            tier_values: w.tiers().iter().map(|t| t.name.to_string()).collect(),
            vpc: w.vpc.as_ref().map(|v| v.to_string()),
        }
    }

    /// Observes the workload's instances.
    ///
    /// # Errors
    /// The API error when the workload cannot be seen (after two more tries of a
    /// throttled or failed call; AWS adapters also retry inside each call).
    pub async fn observe(&mut self, calls: &mut BTreeMap<String, u64>) -> Result<Vec<Instance>> {
        let filter = self.filter();
        let mut attempt = 0;
        loop {
            *calls.entry("ec2:DescribeInstances".into()).or_default() += 1;
            match self.ports.compute.describe(&filter).await {
                Ok(v) => return Ok(v),
                // Before a run exists there is no driver to wait for us; ask again a
                // few times (AWS adapters also back off on their own).
                Err(e) if e.retryable() && attempt < 2 => attempt += 1,
                Err(e) => return Err(e.into()),
            }
        }
    }

    /// Observes and plans, changing nothing (a dry run).
    pub async fn plan(&mut self, req: &RunRequest) -> Result<Plan> {
        let mut calls = BTreeMap::new();
        let observed = self.observe(&mut calls).await?;
        let exemptions = self.ports.store.exemptions().await?;
        Ok(plan(&PlanRequest {
            workload: &self.workload,
            observed: &observed,
            action: req.action,
            profile: req.profile.as_deref(),
            scale_in: req.scale_in,
            exemptions: &exemptions,
            now: self.ports.clock.now(),
        })?)
    }

    fn lock(&self, run_id: &str, now: DateTime<Utc>) -> Lock {
        Lock {
            workload: self.workload.name.to_string(),
            owner: self.settings.owner.clone(),
            run_id: run_id.to_string(),
            expires: after(now, self.settings.lease),
        }
    }

    /// Starts a run, or resumes the unfinished run of the same action and profile.
    ///
    /// # Errors
    /// [`EngineError::Busy`] when another owner holds the workload's lock.
    pub async fn begin(&mut self, req: &RunRequest, run_id: &str) -> Result<Begin> {
        let now = self.ports.clock.now();
        let name = self.workload.name.to_string();
        if let Some(mut old) = self.ports.store.unfinished_run(&name).await? {
            if old.action == req.action && old.profile == req.profile {
                self.take_lock(&old.id).await?;
                old.owner = self.settings.owner.clone();
                old.log(now, None, "resumed");
                self.ports.store.save_run(&old).await?;
                return Ok(Begin::Resumed(Box::new(old)));
            }
            self.take_lock(&old.id).await?;
            old.status = RunStatus::Abandoned;
            old.finished = Some(now);
            old.log(now, None, format!("abandoned for a {} run", req.action));
            self.ports.store.save_run(&old).await?;
        }
        let mut calls = BTreeMap::new();
        let observed = self.observe(&mut calls).await?;
        let exemptions = self.ports.store.exemptions().await?;
        let plan = plan(&PlanRequest {
            workload: &self.workload,
            observed: &observed,
            action: req.action,
            profile: req.profile.as_deref(),
            scale_in: req.scale_in,
            exemptions: &exemptions,
            now,
        })?;
        if plan.is_empty() {
            self.ports
                .store
                .release(&name, &self.settings.owner)
                .await?;
            return Ok(Begin::NothingToDo(Box::new(plan)));
        }
        self.take_lock(run_id).await?;
        let mut run = Run {
            id: run_id.to_string(),
            workload: name,
            action: req.action,
            profile: req.profile.clone(),
            status: RunStatus::Running,
            owner: self.settings.owner.clone(),
            started: now,
            finished: None,
            cursor: Cursor {
                phase: Phase::Forward,
                stage: 0,
                steps: BTreeMap::new(),
            },
            plan,
            rollback: Vec::new(),
            started_ids: BTreeMap::new(),
            stopped_ids: BTreeMap::new(),
            resized_ids: BTreeMap::new(),
            kept: BTreeMap::new(),
            failed: BTreeMap::new(),
            failures_handled: 0,
            history: Vec::new(),
            calls,
            retried: 0,
            tiers: BTreeMap::new(),
            jitter: Jitter::new(seed_of(run_id)),
            error: None,
        };
        run.log(now, None, format!("{} run started", req.action));
        self.ports.store.save_run(&run).await?;
        let event = Event::run_started(&run);
        self.notify(&mut run, event).await;
        Ok(Begin::Started(Box::new(run)))
    }

    /// Loads a stored run to resume it.
    pub async fn resume(&mut self, run_id: &str) -> Result<Run> {
        let now = self.ports.clock.now();
        let mut run = self
            .ports
            .store
            .load_run(run_id)
            .await?
            .ok_or_else(|| EngineError::NoSuchRun(run_id.to_string()))?;
        if !run.status.is_finished() {
            self.take_lock(&run.id).await?;
            run.owner = self.settings.owner.clone();
            run.log(now, None, "resumed");
            self.ports.store.save_run(&run).await?;
        }
        Ok(run)
    }

    async fn take_lock(&mut self, run_id: &str) -> Result<()> {
        let now = self.ports.lease_clock.now();
        match self
            .ports
            .store
            .acquire(&self.lock(run_id, now), now)
            .await?
        {
            LockOutcome::Acquired => Ok(()),
            LockOutcome::Held(l) => Err(EngineError::Busy(l)),
        }
    }

    async fn notify(&self, run: &mut Run, event: Event) {
        let Some(topic) = &self.workload.sns_topic else {
            return;
        };
        *run.calls.entry("sns:Publish".into()).or_default() += 1;
        let note = event.notification();
        if let Err(e) = self.ports.notifier.publish(topic, &note).await {
            let now = self.ports.clock.now();
            run.log(now, None, format!("notification failed: {e}"));
        }
    }

    fn stages<'r>(&self, run: &'r Run) -> &'r [Stage] {
        match run.cursor.phase {
            Phase::Forward => &run.plan.stages,
            Phase::Rollback => &run.rollback,
            Phase::Verify => &[],
        }
    }

    /// Does everything that can be done now.
    ///
    /// # Errors
    /// Store failures and a lost lock; instance-level failures are recorded in the run
    /// and handled by the workload's failure policy.
    pub async fn tick(&mut self, run: &mut Run) -> Result<Tick> {
        if run.status.is_finished() {
            return Ok(Tick::Done);
        }
        let wall = self.ports.lease_clock.now();
        if !self.ports.store.renew(&self.lock(&run.id, wall)).await? {
            return Err(EngineError::LockLost(run.workload.clone()));
        }
        loop {
            if run.cursor.phase == Phase::Verify {
                return self.verify(run).await;
            }
            // The stage is cloned once, not on every tick: plans can be large.
            let key = (run.cursor.phase, run.cursor.stage);
            let stage = match self.stage.take() {
                Some((k, s)) if k == key => s,
                _ => match self.stages(run).get(run.cursor.stage) {
                    Some(s) => s.clone(),
                    None => return self.end_of_stages(run).await,
                },
            };
            let mut wait: Option<Duration> = None;
            for tp in &stage.tiers {
                if let Some(w) = self.advance_tier(run, tp).await? {
                    wait = Some(wait.map_or(w, |x: Duration| x.min(w)));
                }
            }
            self.stage = Some((key, stage));
            if let Some(w) = wait {
                // Wake early enough to renew the lease.
                let w = match self.settings.clock_rate {
                    Some(rate) => w.min(
                        Duration::try_from_secs_f64((self.settings.lease / 3).as_secs_f64() * rate)
                            .unwrap_or(Duration::MAX),
                    ),
                    None => w,
                };
                return Ok(Tick::Wait(w));
            }
            // The stage is done.
            if run.cursor.phase == Phase::Forward && run.failed.len() > run.failures_handled {
                run.failures_handled = run.failed.len();
                match self.workload.failure_policy {
                    FailurePolicy::Continue => {}
                    FailurePolicy::Abort => {
                        return self.finish(run, RunStatus::Failed).await;
                    }
                    FailurePolicy::Rollback => {
                        self.start_rollback(run);
                        self.ports.store.save_run(run).await?;
                        continue;
                    }
                }
            }
            run.cursor.stage += 1;
            run.cursor.steps.clear();
            self.ports.store.save_run(run).await?;
        }
    }

    /// Runs one tier's steps as far as possible; `Some(wait)` if it must wait.
    async fn advance_tier(&mut self, run: &mut Run, tp: &TierPlan) -> Result<Option<Duration>> {
        loop {
            let idx = run.cursor.steps.get(&tp.tier).copied().unwrap_or(0);
            let Some(step) = tp.steps.get(idx) else {
                return Ok(None);
            };
            let now = self.ports.clock.now();
            if idx == 0 && !self.state.contains_key(&tp.tier) {
                run.tiers.entry(tp.tier.clone()).or_insert(TierTiming {
                    started: now,
                    finished: None,
                });
            }
            let mut st = self.state.remove(&tp.tier).unwrap_or(StepState::Fresh);
            let poll = self.step(run, &tp.tier, step, &mut st, now).await?;
            match poll {
                Poll::Wait(w) => {
                    self.state.insert(tp.tier.clone(), st);
                    return Ok(Some(w));
                }
                Poll::Done => {
                    let now = self.ports.clock.now();
                    run.cursor.steps.insert(tp.tier.clone(), idx + 1);
                    run.log(now, Some(&tp.tier), format!("{} done", step.name()));
                    if idx + 1 == tp.steps.len() {
                        self.tier_finished(run, &tp.tier, now).await;
                    }
                    self.ports.store.save_run(run).await?;
                }
            }
        }
    }

    async fn tier_finished(&mut self, run: &mut Run, tier: &str, now: DateTime<Utc>) {
        if let Some(t) = run.tiers.get_mut(tier) {
            t.finished = Some(now);
        }
        let event = Event::tier_finished(run, tier);
        self.notify(run, event).await;
    }

    async fn end_of_stages(&mut self, run: &mut Run) -> Result<Tick> {
        match run.cursor.phase {
            Phase::Forward if run.action == Action::Start && !run.started_ids.is_empty() => {
                run.cursor.phase = Phase::Verify;
                run.cursor.stage = 0;
                run.cursor.steps.clear();
                self.ports.store.save_run(run).await?;
                self.verify(run).await
            }
            Phase::Rollback => self.finish(run, RunStatus::RolledBack).await,
            _ => {
                let status = if run.failed.is_empty() {
                    RunStatus::Succeeded
                } else {
                    RunStatus::CompletedWithFailures
                };
                self.finish(run, status).await
            }
        }
    }

    /// Waits until no instance this run started is pending, and records those that
    /// fell back to stopped (a silent start failure, e.g. a missing KMS grant).
    async fn verify(&mut self, run: &mut Run) -> Result<Tick> {
        let now = self.ports.clock.now();
        let deadline = match self.state.get("") {
            Some(StepState::Until(d)) => *d,
            _ => {
                let d = after(now, self.settings.wait_timeout);
                self.state.insert(String::new(), StepState::Until(d));
                d
            }
        };
        let ids: Vec<String> = run
            .started_ids
            .keys()
            .filter(|i| !run.failed.contains_key(*i))
            .cloned()
            .collect();
        let seen = match self.observe_ids(run, &ids).await? {
            Ok(s) => s,
            Err(w) => return Ok(Tick::Wait(w)),
        };
        let mut pending = 0;
        for id in &ids {
            let tier = run.started_ids[id].clone();
            match seen.get(id) {
                Some(i) if i.state == InstanceState::Pending => pending += 1,
                Some(i) if i.state.is_down() => {
                    let reason = i
                        .state_reason
                        .clone()
                        .unwrap_or_else(|| "no reason given".into());
                    self.fail(
                        run,
                        id,
                        &tier,
                        format!("started, then fell back to {}: {reason}", i.state),
                        now,
                    );
                }
                Some(_) => {}
                None => self.fail(run, id, &tier, "vanished after it was started".into(), now),
            }
        }
        if pending > 0 && now < deadline {
            return Ok(Tick::Wait(self.settings.poll.min(dur(deadline - now))));
        }
        self.state.remove("");
        let failures_now = run.failed.len() > run.failures_handled;
        if failures_now && self.workload.failure_policy == FailurePolicy::Rollback {
            run.failures_handled = run.failed.len();
            self.start_rollback(run);
            self.ports.store.save_run(run).await?;
            return Ok(Tick::Wait(Duration::ZERO));
        }
        let status = if run.failed.is_empty() {
            RunStatus::Succeeded
        } else if self.workload.failure_policy == FailurePolicy::Abort {
            RunStatus::Failed
        } else {
            RunStatus::CompletedWithFailures
        };
        self.finish(run, status).await
    }

    async fn finish(&mut self, run: &mut Run, status: RunStatus) -> Result<Tick> {
        let now = self.ports.clock.now();
        run.status = status;
        run.finished = Some(now);
        run.log(now, None, format!("run finished: {}", status.as_str()));
        self.state.clear();
        self.ports.store.save_run(run).await?;
        self.ports
            .store
            .release(&run.workload, &self.settings.owner)
            .await?;
        let event = Event::run_finished(run);
        self.notify(run, event).await;
        self.ports.store.save_run(run).await?;
        Ok(Tick::Done)
    }

    /// Replaces the rest of the run with stages that undo what it did, last first.
    fn start_rollback(&mut self, run: &mut Run) {
        let now = self.ports.clock.now();
        let stage_of: BTreeMap<&str, i64> = run
            .plan
            .stages
            .iter()
            .flat_map(|s| s.tiers.iter().map(move |t| (t.tier.as_str(), s.order)))
            .collect();
        let done = match run.action {
            Action::Start => &run.started_ids,
            Action::Stop => &run.stopped_ids,
        };
        let mut by_stage: BTreeMap<std::cmp::Reverse<i64>, BTreeMap<String, Vec<String>>> =
            BTreeMap::new();
        for (id, tier) in done {
            let order = stage_of.get(tier.as_str()).copied().unwrap_or(0);
            by_stage
                .entry(std::cmp::Reverse(order))
                .or_default()
                .entry(tier.clone())
                .or_default()
                .push(id.clone());
        }
        run.rollback = by_stage
            .into_iter()
            .map(|(std::cmp::Reverse(order), tiers)| Stage {
                order,
                tiers: tiers
                    .into_iter()
                    .map(|(tier, ids)| TierPlan {
                        members: ids.len(),
                        up: 0,
                        down: 0,
                        target: None,
                        steps: self.undo_steps(run.action, &tier, ids),
                        tier,
                    })
                    .collect(),
            })
            .collect();
        run.cursor = Cursor {
            phase: Phase::Rollback,
            stage: 0,
            steps: BTreeMap::new(),
        };
        self.state.clear();
        run.log(now, None, "rolling back after a failure");
    }

    /// The steps that undo `action` on `ids` of `tier`.
    fn undo_steps(&self, action: Action, tier: &str, ids: Vec<String>) -> Vec<Step> {
        match action {
            Action::Start => {
                // Undoing a start is a stop: the same exemption checks apply, the
                // override-file probe included.
                let probe = self
                    .tier(tier)
                    .and_then(|t| t.stop.as_ref())
                    .and_then(|s| s.override_file.as_ref())
                    .map(|f| Step::ProbeOverride {
                        path: f.path.to_string(),
                        os: f.os,
                        instances: ids.clone(),
                    });
                probe
                    .into_iter()
                    .chain([
                        Step::Deregister {
                            instances: ids.clone(),
                        },
                        Step::Stop {
                            instances: ids.clone(),
                        },
                        Step::WaitUntil {
                            state: InstanceState::Stopped,
                            instances: ids,
                        },
                    ])
                    .collect()
            }
            Action::Stop => vec![
                Step::Start {
                    instances: ids.clone(),
                },
                Step::WaitUntil {
                    state: InstanceState::Running,
                    instances: ids.clone(),
                },
                Step::Register { instances: ids },
            ],
        }
    }

    fn fail(&self, run: &mut Run, id: &str, tier: &str, reason: String, now: DateTime<Utc>) {
        run.log(now, Some(tier), format!("{id} failed: {reason}"));
        run.failed.insert(
            id.to_string(),
            Failure {
                tier: tier.to_string(),
                reason,
            },
        );
    }

    fn keep(&self, run: &mut Run, id: &str, tier: &str, reason: String, now: DateTime<Utc>) {
        if run.kept.contains_key(id) {
            return;
        }
        run.log(now, Some(tier), format!("{id} kept: {reason}"));
        run.kept.insert(
            id.to_string(),
            Kept {
                tier: tier.to_string(),
                reason,
            },
        );
    }

    /// The step's instances that are neither kept nor failed.
    fn live(run: &Run, ids: &[String]) -> Vec<String> {
        ids.iter()
            .filter(|i| !run.kept.contains_key(*i) && !run.failed.contains_key(*i))
            .cloned()
            .collect()
    }

    fn count(run: &mut Run, action: &str) {
        *run.calls.entry(action.to_string()).or_default() += 1;
    }

    /// Describes instances by id in pages of 1,000, paced. `Err(wait)` when the
    /// describe bucket is empty or the call must be retried later.
    async fn observe_ids(
        &mut self,
        run: &mut Run,
        ids: &[String],
    ) -> Result<std::result::Result<BTreeMap<String, Instance>, Duration>> {
        let mut out = BTreeMap::new();
        for chunk in ids.chunks(1000) {
            let now = self.ports.clock.now();
            if let Err(w) = self.buckets.describe.take(1.0, now) {
                return Ok(Err(w));
            }
            Self::count(run, "ec2:DescribeInstances");
            match self.ports.compute.describe_ids(chunk).await {
                Ok(v) => out.extend(v.into_iter().map(|i| (i.id.clone(), i))),
                Err(e) if e.retryable() => {
                    run.retried += 1;
                    return Ok(Err(self.backoff(run, 1)));
                }
                Err(e) => return Err(e.into()),
            }
        }
        Ok(Ok(out))
    }

    fn backoff(&self, run: &mut Run, attempt: u32) -> Duration {
        backoff(
            attempt,
            self.settings.backoff_base,
            self.settings.backoff_cap,
            &mut run.jitter,
        )
    }

    fn tier(&self, name: &str) -> Option<&Tier> {
        self.workload.tier(name)
    }

    /// Whether the tier hibernates instead of stopping.
    fn hibernates(&self, tier: &str) -> bool {
        self.tier(tier)
            .and_then(|t| t.stop.as_ref())
            .is_some_and(|s| s.hibernate)
    }

    fn is_member(&self, i: &Instance, tier: &str) -> bool {
        membership(&self.workload, i) == Ok(tier)
    }

    async fn step(
        &mut self,
        run: &mut Run,
        tier: &str,
        step: &Step,
        st: &mut StepState,
        now: DateTime<Utc>,
    ) -> Result<Poll> {
        match step {
            Step::Pause { seconds, why } => {
                let until = match st {
                    StepState::Until(u) => *u,
                    _ => {
                        let u = after(now, Duration::from_secs(*seconds));
                        *st = StepState::Until(u);
                        let what = match why {
                            PauseReason::AfterResize => "after resizing",
                            PauseReason::BeforeNextStage => "before the next stage",
                        };
                        run.log(now, Some(tier), format!("pausing {seconds} s {what}"));
                        u
                    }
                };
                Ok(if now >= until {
                    Poll::Done
                } else {
                    Poll::Wait(dur(until - now))
                })
            }
            Step::Stop { instances } => {
                self.power(run, tier, instances, Action::Stop, st, now)
                    .await
            }
            Step::Start { instances } => {
                self.power(run, tier, instances, Action::Start, st, now)
                    .await
            }
            Step::WaitUntil { state, instances } => {
                self.wait_until(run, tier, *state, instances, st, now).await
            }
            Step::Resize { changes } => {
                let changes: Vec<(String, String)> = changes
                    .iter()
                    .map(|c| (c.instance.clone(), c.to.clone()))
                    .collect();
                self.resize(run, tier, &changes, st, now).await
            }
            Step::ProbeOverride {
                path,
                os,
                instances,
            } => self.probe(run, tier, path, *os, instances, st, now).await,
            Step::Deregister { instances } => self.deregister(run, tier, instances, st, now).await,
            Step::Register { instances } => self.register(run, tier, instances, now).await,
            Step::Ready {
                gate,
                timeout_secs,
                instances,
            } => {
                self.ready(
                    run,
                    tier,
                    *gate,
                    Duration::from_secs(*timeout_secs),
                    instances,
                    st,
                    now,
                )
                .await
            }
        }
    }

    /// Start or stop, batched, paced, with failing instances isolated.
    async fn power(
        &mut self,
        run: &mut Run,
        tier: &str,
        ids: &[String],
        action: Action,
        st: &mut StepState,
        now: DateTime<Utc>,
    ) -> Result<Poll> {
        if matches!(st, StepState::Fresh) {
            *st = StepState::Calls(Calls {
                deadline: Some(after(now, self.settings.wait_timeout)),
                ..Calls::default()
            });
        }
        let StepState::Calls(calls) = st else {
            unreachable!("power steps use Calls")
        };
        loop {
            if let Some((batch, attempts)) = calls.queue.pop_front() {
                let now = self.ports.clock.now();
                // Pace: the request bucket and the resource bucket.
                let (req, res, name) = match action {
                    Action::Start => (
                        &mut self.buckets.start_requests,
                        &mut self.buckets.start_instances,
                        "ec2:StartInstances",
                    ),
                    Action::Stop => (
                        &mut self.buckets.mutating,
                        &mut self.buckets.stop_instances,
                        "ec2:StopInstances",
                    ),
                };
                let want = batch.len().min(self.settings.min_batch) as f64;
                let avail = res.available(now).floor() as usize;
                let req_wait = req.wait_for(1.0, now);
                if avail < want as usize || !req_wait.is_zero() {
                    let w = res.wait_for(want, now).max(req_wait);
                    calls.queue.push_front((batch, attempts));
                    return Ok(Poll::Wait(w.max(Duration::from_millis(1))));
                }
                let (send, rest) = batch.split_at(avail.min(batch.len()));
                let (send, rest) = (send.to_vec(), rest.to_vec());
                if !rest.is_empty() {
                    calls.queue.push_front((rest, attempts));
                }
                req.take(1.0, now).expect("checked");
                res.take(send.len() as f64, now).expect("checked");
                Self::count(run, name);
                // Batches are either all hibernation candidates or none.
                let hibernate = action == Action::Stop
                    && self.hibernates(tier)
                    && !send.iter().any(|i| calls.no_hibernate.contains(i));
                let result = match action {
                    Action::Start => self.ports.compute.start(&send).await,
                    Action::Stop => self.ports.compute.stop(&send, hibernate).await,
                };
                match result {
                    Ok(()) => {
                        let done = match action {
                            Action::Start => &mut run.started_ids,
                            Action::Stop => &mut run.stopped_ids,
                        };
                        for id in &send {
                            done.insert(id.clone(), tier.to_string());
                            calls.called.insert(id.clone());
                        }
                        run.log(now, Some(tier), format!("{name} {} instances", send.len()));
                    }
                    Err(e) if hibernate && e.kind == ErrorKind::Unsupported && send.len() == 1 => {
                        run.log(
                            now,
                            Some(tier),
                            format!(
                                "{} cannot hibernate ({}); stopping it without hibernation",
                                send[0], e.code
                            ),
                        );
                        calls.no_hibernate.insert(send[0].clone());
                        calls.queue.push_front((send, attempts));
                    }
                    Err(e) => {
                        if let Some(w) =
                            self.on_batch_error(run, tier, calls, send, attempts, &e, now)
                        {
                            return Ok(Poll::Wait(w));
                        }
                    }
                }
                continue;
            }
            // Nothing queued: observe what still needs doing.
            let todo: Vec<String> = Self::live(run, ids)
                .into_iter()
                .filter(|i| !calls.called.contains(i))
                .collect();
            if todo.is_empty() {
                return Ok(Poll::Done);
            }
            let seen = match self.observe_ids(run, &todo).await? {
                Ok(s) => s,
                Err(w) => return Ok(Poll::Wait(w)),
            };
            let now = self.ports.clock.now();
            let stored = self.ports.store.exemptions().await?;
            let exemptions = Exemptions::new(&self.workload, &stored, now);
            let tier_spec = self.tier(tier).cloned();
            let mut send = Vec::new();
            let mut waiting = 0;
            for id in &todo {
                let Some(i) = seen.get(id) else {
                    match action {
                        Action::Start => self.fail(run, id, tier, "instance not found".into(), now),
                        Action::Stop => self.keep(run, id, tier, "instance not found".into(), now),
                    }
                    continue;
                };
                if !self.is_member(i, tier) {
                    self.keep(
                        run,
                        id,
                        tier,
                        "no longer a member of this tier (tags, VPC or state changed)".into(),
                        now,
                    );
                    continue;
                }
                if action == Action::Stop
                    && let Some(t) = &tier_spec
                    && let Some(r) = exemptions.stop_exclusion(t, i)
                {
                    self.keep(run, id, tier, r.describe(), now);
                    continue;
                }
                match (action, i.state) {
                    (Action::Stop, InstanceState::Running)
                    | (Action::Start, InstanceState::Stopped) => send.push(id.clone()),
                    (Action::Stop, InstanceState::Pending)
                    | (Action::Start, InstanceState::Stopping) => waiting += 1,
                    _ => {
                        calls.called.insert(id.clone());
                    }
                }
            }
            if !send.is_empty() {
                let (plain, rest): (Vec<String>, Vec<String>) = send
                    .into_iter()
                    .partition(|i| calls.no_hibernate.contains(i));
                for group in [rest, plain] {
                    for chunk in group.chunks(1000) {
                        calls.queue.push_back((chunk.to_vec(), 0));
                    }
                }
                continue;
            }
            if waiting == 0 {
                return Ok(Poll::Done);
            }
            let deadline = calls.deadline.unwrap_or(now);
            if now >= deadline {
                for id in todo.iter().filter(|i| !calls.called.contains(*i)) {
                    if !run.kept.contains_key(id) && !run.failed.contains_key(id) {
                        self.fail(
                            run,
                            id,
                            tier,
                            format!(
                                "still in transition after {} s",
                                self.settings.wait_timeout.as_secs()
                            ),
                            now,
                        );
                    }
                }
                return Ok(Poll::Done);
            }
            return Ok(Poll::Wait(self.settings.poll.min(dur(deadline - now))));
        }
    }

    /// Handles a failed start/stop batch: retry, split, or record failures. Returns a
    /// wait when the step should pause before going on.
    #[allow(clippy::too_many_arguments)]
    fn on_batch_error(
        &self,
        run: &mut Run,
        tier: &str,
        calls: &mut Calls,
        batch: Vec<String>,
        attempts: u32,
        e: &ApiError,
        now: DateTime<Utc>,
    ) -> Option<Duration> {
        run.retried += 1;
        if e.retryable() {
            if attempts >= self.settings.max_retries {
                for id in &batch {
                    self.fail(
                        run,
                        id,
                        tier,
                        format!("gave up after {} retries: {}", attempts, api_name(e)),
                        now,
                    );
                }
                return None;
            }
            calls.queue.push_front((batch, attempts + 1));
            return Some(self.backoff(run, attempts + 1));
        }
        let isolatable = matches!(
            e.kind,
            ErrorKind::IncorrectState
                | ErrorKind::NotFound
                | ErrorKind::InsufficientCapacity
                | ErrorKind::Unsupported
        );
        if isolatable && batch.len() > 1 {
            // Isolate the instances at fault: those the error names, else by halves.
            let named: Vec<String> = batch
                .iter()
                .filter(|i| e.instances.contains(i))
                .cloned()
                .collect();
            if !named.is_empty() && named.len() < batch.len() {
                let rest: Vec<String> = batch
                    .iter()
                    .filter(|i| !named.contains(i))
                    .cloned()
                    .collect();
                calls.queue.push_front((rest, attempts));
                for id in named {
                    calls.queue.push_back((vec![id], attempts));
                }
            } else {
                let (a, b) = batch.split_at(batch.len() / 2);
                calls.queue.push_front((b.to_vec(), attempts));
                calls.queue.push_front((a.to_vec(), attempts));
            }
            return None;
        }
        let strikes = calls.strikes.entry(batch[0].clone()).or_default();
        *strikes += 1;
        match e.kind {
            ErrorKind::InsufficientCapacity if attempts < self.settings.capacity_retries => {
                calls.queue.push_back((batch, attempts + 1));
                Some(self.backoff(run, attempts + 3))
            }
            ErrorKind::IncorrectState if *strikes < 3 => {
                // Re-observe on the next pass; it may have been in transition.
                Some(self.settings.poll)
            }
            _ => {
                for id in &batch {
                    self.fail(run, id, tier, api_name(e), now);
                }
                None
            }
        }
    }

    async fn wait_until(
        &mut self,
        run: &mut Run,
        tier: &str,
        state: InstanceState,
        ids: &[String],
        st: &mut StepState,
        now: DateTime<Utc>,
    ) -> Result<Poll> {
        let deadline = match st {
            StepState::Until(d) => *d,
            _ => {
                let d = after(now, self.settings.wait_timeout);
                *st = StepState::Until(d);
                d
            }
        };
        let ids = Self::live(run, ids);
        let seen = match self.observe_ids(run, &ids).await? {
            Ok(s) => s,
            Err(w) => return Ok(Poll::Wait(w)),
        };
        let mut missing = Vec::new();
        for id in &ids {
            match seen.get(id) {
                Some(i) if i.state == state => {}
                Some(i)
                    if state == InstanceState::Running
                        && i.state.is_down()
                        && run.started_ids.contains_key(id)
                        && i.state_reason.is_some() =>
                {
                    let reason = i.state_reason.clone().unwrap_or_default();
                    self.fail(
                        run,
                        id,
                        tier,
                        format!("started, then fell back to {}: {reason}", i.state),
                        now,
                    );
                }
                Some(i)
                    if state == InstanceState::Stopped && i.state == InstanceState::Terminated => {}
                Some(_) => missing.push(id.clone()),
                None => self.fail(run, id, tier, "instance not found".into(), now),
            }
        }
        if missing.is_empty() {
            return Ok(Poll::Done);
        }
        if now >= deadline {
            for id in missing {
                self.fail(
                    run,
                    &id,
                    tier,
                    format!(
                        "did not reach {state} within {} s",
                        self.settings.wait_timeout.as_secs()
                    ),
                    now,
                );
            }
            return Ok(Poll::Done);
        }
        Ok(Poll::Wait(self.settings.poll.min(dur(deadline - now))))
    }

    async fn resize(
        &mut self,
        run: &mut Run,
        tier: &str,
        changes: &[(String, String)],
        st: &mut StepState,
        now: DateTime<Utc>,
    ) -> Result<Poll> {
        if matches!(st, StepState::Fresh) {
            let ids: Vec<String> = changes.iter().map(|(i, _)| i.clone()).collect();
            let live = Self::live(run, &ids);
            let seen = match self.observe_ids(run, &live).await? {
                Ok(s) => s,
                Err(w) => return Ok(Poll::Wait(w)),
            };
            let mut queue = VecDeque::new();
            let mut verify = Vec::new();
            let mut waiting = false;
            for (id, to) in changes.iter().filter(|(i, _)| live.contains(i)) {
                let Some(i) = seen.get(id) else {
                    self.fail(run, id, tier, "instance not found".into(), now);
                    continue;
                };
                if !self.is_member(i, tier) {
                    self.keep(run, id, tier, "no longer a member of this tier".into(), now);
                    continue;
                }
                if i.instance_type == *to {
                    continue;
                }
                match i.state {
                    InstanceState::Stopped => {
                        queue.push_back((id.clone(), to.clone(), 0));
                        verify.push((id.clone(), to.clone()));
                    }
                    InstanceState::Stopping => waiting = true,
                    s => self.keep(
                        run,
                        id,
                        tier,
                        format!("not resized: it is {s}, a type can only change while stopped"),
                        now,
                    ),
                }
            }
            if waiting {
                return Ok(Poll::Wait(self.settings.poll));
            }
            *st = StepState::Resizing {
                queue,
                verify,
                checks: 0,
            };
        }
        let StepState::Resizing {
            queue,
            verify,
            checks,
        } = st
        else {
            unreachable!("resize state")
        };
        while let Some((id, to, attempts)) = queue.pop_front() {
            let now = self.ports.clock.now();
            if let Err(w) = self.buckets.mutating.take(1.0, now) {
                queue.push_front((id, to, attempts));
                return Ok(Poll::Wait(w));
            }
            Self::count(run, "ec2:ModifyInstanceAttribute");
            match self.ports.compute.set_type(&id, &to).await {
                Ok(()) => {
                    run.resized_ids.insert(id.clone(), tier.to_string());
                }
                Err(e) if e.retryable() && attempts < self.settings.max_retries => {
                    run.retried += 1;
                    queue.push_front((id, to, attempts + 1));
                    return Ok(Poll::Wait(self.backoff(run, attempts + 1)));
                }
                Err(e) => {
                    verify.retain(|(v, _)| *v != id);
                    self.fail(
                        run,
                        &id,
                        tier,
                        format!("cannot change type to {to}: {}", api_name(&e)),
                        now,
                    );
                }
            }
        }
        // Verify that the change took effect.
        let ids: Vec<String> = verify.iter().map(|(i, _)| i.clone()).collect();
        let seen = match self.observe_ids(run, &ids).await? {
            Ok(s) => s,
            Err(w) => return Ok(Poll::Wait(w)),
        };
        let now = self.ports.clock.now();
        let wrong: Vec<(String, String)> = verify
            .iter()
            .filter(|(i, to)| seen.get(i).is_none_or(|x| x.instance_type != *to))
            .cloned()
            .collect();
        if wrong.is_empty() {
            return Ok(Poll::Done);
        }
        *checks += 1;
        if *checks > 3 {
            for (id, to) in wrong {
                let is = seen
                    .get(&id)
                    .map_or("unknown".to_string(), |x| x.instance_type.clone());
                self.fail(
                    run,
                    &id,
                    tier,
                    format!("type change to {to} did not take effect (still {is})"),
                    now,
                );
            }
            return Ok(Poll::Done);
        }
        Ok(Poll::Wait(self.settings.poll))
    }

    #[allow(clippy::too_many_arguments)]
    async fn probe(
        &mut self,
        run: &mut Run,
        tier: &str,
        path: &str,
        os: Os,
        ids: &[String],
        st: &mut StepState,
        now: DateTime<Utc>,
    ) -> Result<Poll> {
        if matches!(st, StepState::Fresh) {
            let live = Self::live(run, ids);
            let sent = live.chunks(50).map(|c| (c.to_vec(), 0)).collect();
            *st = StepState::Probing {
                sent,
                handles: Vec::new(),
                decided: BTreeSet::new(),
                deadline: after(now, self.settings.probe_timeout),
            };
        }
        let StepState::Probing {
            sent,
            handles,
            decided,
            deadline,
        } = st
        else {
            unreachable!("probe state")
        };
        while let Some((chunk, attempts)) = sent.pop_front() {
            let now = self.ports.clock.now();
            Self::count(run, "ssm:SendCommand");
            match self.ports.probe.send(&chunk, path, os).await {
                Ok(h) => handles.push((h, chunk)),
                Err(e) if e.retryable() && attempts < self.settings.max_retries => {
                    run.retried += 1;
                    sent.push_front((chunk, attempts + 1));
                    return Ok(Poll::Wait(self.backoff(run, attempts + 1)));
                }
                Err(e) => {
                    for id in &chunk {
                        self.keep(run, id, tier, format!("override-file check could not be sent ({}); kept running to be safe", api_name(&e)), now);
                        decided.insert(id.clone());
                    }
                }
            }
        }
        for (handle, chunk) in handles.iter() {
            let open: Vec<String> = chunk
                .iter()
                .filter(|i| !decided.contains(*i))
                .cloned()
                .collect();
            if open.is_empty() {
                continue;
            }
            let now = self.ports.clock.now();
            Self::count(run, "ssm:GetCommandInvocation");
            match self.ports.probe.poll(handle, &open).await {
                Ok(results) => {
                    for (id, r) in results {
                        match r {
                            ProbeResult::Pending => {}
                            ProbeResult::Absent => {
                                decided.insert(id);
                            }
                            ProbeResult::Present => {
                                self.keep(
                                    run,
                                    &id,
                                    tier,
                                    format!("override file {path} is present"),
                                    now,
                                );
                                decided.insert(id);
                            }
                            ProbeResult::Unknown { reason } => {
                                self.keep(run, &id, tier, format!("could not confirm that {path} is absent ({reason}); kept running to be safe"), now);
                                decided.insert(id);
                            }
                        }
                    }
                }
                Err(e) if e.retryable() => run.retried += 1,
                Err(e) => {
                    for id in &open {
                        self.keep(
                            run,
                            id,
                            tier,
                            format!(
                                "override-file check failed ({}); kept running to be safe",
                                api_name(&e)
                            ),
                            now,
                        );
                        decided.insert(id.clone());
                    }
                }
            }
        }
        let now = self.ports.clock.now();
        let open: Vec<String> = handles
            .iter()
            .flat_map(|(_, c)| c)
            .filter(|i| !decided.contains(*i))
            .cloned()
            .collect();
        if open.is_empty() {
            return Ok(Poll::Done);
        }
        if now >= *deadline {
            for id in open {
                self.keep(
                    run,
                    &id,
                    tier,
                    format!(
                        "no answer about {path} within {} s; kept running to be safe",
                        self.settings.probe_timeout.as_secs()
                    ),
                    now,
                );
            }
            return Ok(Poll::Done);
        }
        Ok(Poll::Wait(self.settings.poll.min(dur(*deadline - now))))
    }

    async fn deregister(
        &mut self,
        run: &mut Run,
        tier: &str,
        ids: &[String],
        st: &mut StepState,
        now: DateTime<Utc>,
    ) -> Result<Poll> {
        if matches!(st, StepState::Fresh) {
            let live = Self::live(run, ids);
            if live.is_empty() {
                return Ok(Poll::Done);
            }
            Self::count(run, "elb:DescribeMemberships");
            let members = match self.ports.lb.memberships(&live).await {
                Ok(m) => m,
                Err(e) if e.retryable() => {
                    run.retried += 1;
                    return Ok(Poll::Wait(self.backoff(run, 1)));
                }
                Err(e) => {
                    // Stopping without deregistering would send traffic to a stopping
                    // instance; keep them running instead.
                    for id in &live {
                        self.keep(
                            run,
                            id,
                            tier,
                            format!(
                                "could not find its load balancers ({}); kept running",
                                api_name(&e)
                            ),
                            now,
                        );
                    }
                    return Ok(Poll::Done);
                }
            };
            self.ports.store.park(&run.workload, &members).await?;
            let by_target = by_target(members);
            for (target, tids) in &by_target {
                Self::count(run, "elb:Deregister");
                if let Err(e) = self.ports.lb.deregister(target, tids).await {
                    run.log(
                        now,
                        Some(tier),
                        format!("deregistration from {target} failed: {}", api_name(&e)),
                    );
                    for id in tids {
                        self.keep(
                            run,
                            id,
                            tier,
                            format!("could not be taken out of {target}; kept running"),
                            now,
                        );
                    }
                } else {
                    run.log(
                        now,
                        Some(tier),
                        format!("deregistered {} instances from {target}", tids.len()),
                    );
                }
            }
            *st = StepState::Draining {
                targets: by_target.into_iter().collect(),
                deadline: after(now, self.settings.drain_timeout),
            };
        }
        let StepState::Draining { targets, deadline } = st else {
            unreachable!("drain state")
        };
        let mut draining = false;
        for (target, tids) in targets.iter() {
            Self::count(run, "elb:DescribeHealth");
            match self.ports.lb.health(target, tids).await {
                Ok(h) => draining |= h.iter().any(|(_, h)| *h == Health::Draining),
                Err(e) if e.retryable() => {
                    run.retried += 1;
                    draining = true;
                }
                Err(_) => {}
            }
        }
        if !draining {
            return Ok(Poll::Done);
        }
        if now >= *deadline {
            run.log(
                now,
                Some(tier),
                format!(
                    "draining not finished after {} s; stopping anyway",
                    self.settings.drain_timeout.as_secs()
                ),
            );
            return Ok(Poll::Done);
        }
        Ok(Poll::Wait(self.settings.poll.min(dur(*deadline - now))))
    }

    async fn register(
        &mut self,
        run: &mut Run,
        tier: &str,
        ids: &[String],
        now: DateTime<Utc>,
    ) -> Result<Poll> {
        let live = Self::live(run, ids);
        // Where they were taken out of, and where the tier says they belong.
        let mut parked = self.ports.store.parked(&run.workload, &live).await?;
        let configured: Vec<LbTarget> = self
            .tier(tier)
            .map(|t| {
                t.load_balancers
                    .iter()
                    .map(|n| LbTarget::from_name(n.as_str()))
                    .collect()
            })
            .unwrap_or_default();
        parked.extend(
            live.iter()
                .flat_map(|id| configured.iter().map(move |t| (id.clone(), t.clone()))),
        );
        parked.sort();
        parked.dedup();
        if parked.is_empty() {
            return Ok(Poll::Done);
        }
        let pids: Vec<String> = parked
            .iter()
            .map(|(i, _)| i.clone())
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect();
        let seen = match self.observe_ids(run, &pids).await? {
            Ok(s) => s,
            Err(w) => return Ok(Poll::Wait(w)),
        };
        if seen.values().any(|i| i.state == InstanceState::Pending) {
            return Ok(Poll::Wait(self.settings.poll));
        }
        let mut by_target: BTreeMap<LbTarget, Vec<String>> = BTreeMap::new();
        for (id, t) in parked {
            if seen
                .get(&id)
                .is_some_and(|i| i.state == InstanceState::Running && self.is_member(i, tier))
            {
                by_target.entry(t).or_default().push(id);
            }
        }
        let mut done = Vec::new();
        for (target, tids) in &by_target {
            Self::count(run, "elb:Register");
            match self.ports.lb.register(target, tids).await {
                Ok(()) => {
                    run.log(
                        now,
                        Some(tier),
                        format!("registered {} instances with {target}", tids.len()),
                    );
                    done.extend(tids.iter().cloned());
                }
                Err(e) if e.retryable() => {
                    run.retried += 1;
                    return Ok(Poll::Wait(self.backoff(run, 1)));
                }
                Err(e) => {
                    for id in tids {
                        self.fail(
                            run,
                            id,
                            tier,
                            format!("could not be registered with {target}: {}", api_name(&e)),
                            now,
                        );
                    }
                }
            }
        }
        self.ports.store.unpark(&run.workload, &done).await?;
        Ok(Poll::Done)
    }

    #[allow(clippy::too_many_arguments)]
    async fn ready(
        &mut self,
        run: &mut Run,
        tier: &str,
        gate: Gate,
        timeout: Duration,
        ids: &[String],
        st: &mut StepState,
        now: DateTime<Utc>,
    ) -> Result<Poll> {
        let (deadline, failures) = match st {
            StepState::Gate { deadline, failures } => (*deadline, *failures),
            _ => {
                let d = after(now, timeout);
                *st = StepState::Gate {
                    deadline: d,
                    failures: 0,
                };
                (d, 0)
            }
        };
        // Consecutive failed checks make the backoff grow.
        let failures = failures + 1;
        let live = Self::live(run, ids);
        let mut not_ready: Vec<String> = Vec::new();
        match gate {
            Gate::StatusChecks => {
                for chunk in live.chunks(100) {
                    let now = self.ports.clock.now();
                    if let Err(w) = self.buckets.describe.take(1.0, now) {
                        return Ok(Poll::Wait(w));
                    }
                    Self::count(run, "ec2:DescribeInstanceStatus");
                    match self.ports.compute.status_checks(chunk).await {
                        Ok(v) => {
                            let ok: BTreeSet<&str> = v
                                .iter()
                                .filter(|(_, s)| *s == StatusCheck::Ok)
                                .map(|(i, _)| i.as_str())
                                .collect();
                            not_ready
                                .extend(chunk.iter().filter(|i| !ok.contains(i.as_str())).cloned());
                        }
                        Err(e) if e.retryable() => {
                            *st = StepState::Gate { deadline, failures };
                            return Ok(self.gate_retry(
                                run, tier, gate, timeout, &live, deadline, failures, &e,
                            ));
                        }
                        Err(e) => return Err(e.into()),
                    }
                }
            }
            Gate::LoadBalancerHealthy => {
                Self::count(run, "elb:DescribeMemberships");
                let members = match self.ports.lb.memberships(&live).await {
                    Ok(m) => m,
                    Err(e) if e.retryable() => {
                        *st = StepState::Gate { deadline, failures };
                        return Ok(self
                            .gate_retry(run, tier, gate, timeout, &live, deadline, failures, &e));
                    }
                    Err(e) => return Err(e.into()),
                };
                let by_target = by_target(members);
                for (target, tids) in &by_target {
                    Self::count(run, "elb:DescribeHealth");
                    match self.ports.lb.health(target, tids).await {
                        Ok(h) => not_ready.extend(
                            h.into_iter()
                                .filter(|(_, h)| *h != Health::Healthy)
                                .map(|(i, _)| i),
                        ),
                        Err(e) if e.retryable() => {
                            *st = StepState::Gate { deadline, failures };
                            return Ok(self.gate_retry(
                                run, tier, gate, timeout, &live, deadline, failures, &e,
                            ));
                        }
                        Err(e) => return Err(e.into()),
                    }
                }
            }
        }
        if not_ready.is_empty() {
            return Ok(Poll::Done);
        }
        *st = StepState::Gate {
            deadline,
            failures: 0,
        };
        let now = self.ports.clock.now();
        if now >= deadline {
            not_ready.sort();
            not_ready.dedup();
            for id in not_ready {
                self.fail(
                    run,
                    &id,
                    tier,
                    format!(
                        "not ready ({}) within {} s",
                        gate.as_str(),
                        timeout.as_secs()
                    ),
                    now,
                );
            }
            return Ok(Poll::Done);
        }
        Ok(Poll::Wait(self.settings.poll.min(dur(deadline - now))))
    }

    /// A readiness check that failed with a retryable error: retry after a backoff
    /// that does not pass the gate's deadline; at the deadline, the instances fail
    /// with the error that kept the check from answering.
    #[allow(clippy::too_many_arguments)]
    fn gate_retry(
        &self,
        run: &mut Run,
        tier: &str,
        gate: Gate,
        timeout: Duration,
        live: &[String],
        deadline: DateTime<Utc>,
        failures: u32,
        error: &ApiError,
    ) -> Poll {
        run.retried += 1;
        let now = self.ports.clock.now();
        if now < deadline {
            let wait = self.backoff(run, failures).min(dur(deadline - now));
            return Poll::Wait(wait.max(Duration::from_millis(1)));
        }
        for id in live {
            self.fail(
                run,
                id,
                tier,
                format!(
                    "not ready ({}) within {} s: the check kept failing: {}",
                    gate.as_str(),
                    timeout.as_secs(),
                    api_name(error)
                ),
                now,
            );
        }
        Poll::Done
    }
}

/// Instances grouped by the load balancer that holds them.
fn by_target(members: Vec<(String, LbTarget)>) -> BTreeMap<LbTarget, Vec<String>> {
    let mut out: BTreeMap<LbTarget, Vec<String>> = BTreeMap::new();
    for (id, t) in members {
        out.entry(t).or_default().push(id);
    }
    out
}

fn seed_of(s: &str) -> u64 {
    // FNV-1a: a stable seed for the run's jitter.
    s.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3)
    })
}

/// Drives a run to the end, calling `sleep` between ticks.
///
/// # Errors
/// As [`Executor::tick`].
pub async fn drive<F, Fut>(exec: &mut Executor<'_>, run: &mut Run, mut sleep: F) -> Result<()>
where
    F: FnMut(Duration) -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    loop {
        match exec.tick(run).await? {
            Tick::Done => return Ok(()),
            Tick::Wait(d) => sleep(d).await,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn issue7_2_time_arithmetic_saturates() {
        let now: DateTime<Utc> = "2026-11-30T00:00:00Z".parse().unwrap();
        assert_eq!(after(now, Duration::MAX), DateTime::<Utc>::MAX_UTC);
        assert_eq!(
            after(now, Duration::from_secs(u64::MAX / 1000)),
            DateTime::<Utc>::MAX_UTC
        );
        assert_eq!(
            after(now, Duration::from_secs(60)),
            now + chrono::TimeDelta::seconds(60)
        );
        assert_eq!(dur(now - after(now, Duration::MAX)), Duration::ZERO);
    }
}
