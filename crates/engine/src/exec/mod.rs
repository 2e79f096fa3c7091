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

mod finish;
mod policy;
mod step;

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::time::Duration;

use chrono::{DateTime, Utc};
use ec2_scheduler_core::model::Workload;
use ec2_scheduler_core::plan::{PauseReason, Plan, PlanRequest, ScaleIn, Stage, Step, TierPlan};
use ec2_scheduler_core::{Action, FailurePolicy, Instance, plan};
use tracing::Instrument;

use crate::notify::Event;
use crate::pace::{Jitter, Learned, Limits, SharedBucket};
use crate::ports::{
    ApiError, Clock, Compute, LoadBalancing, Lock, LockOutcome, MemberFilter, Meter, Notifier,
    OverrideProbe, RunStore, StoreError,
};
use crate::run::{Phase, Run, RunEvent, RunStatus, TierTiming};
use crate::share;
use policy::Tries;
use step::{Active, Began, Cx, Poll, Power, Resize};

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
    /// The requests the adapters above have sent.
    pub meter: &'a dyn Meter,
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
    /// How often to look again while waiting; a wait for instances to reach a state
    /// looks first this long after it began.
    pub poll: Duration,
    /// How often a wait for instances to reach a state looks again after that, while
    /// the describe bucket allows it (one request per 1,000 instances still awaited):
    /// so the end of a tier is seen within about this long.
    pub fast_poll: Duration,
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
    /// How long (in `lease_clock` time) a confirmation that the run still holds its
    /// lock lets it call the cloud: every call to EC2, a load balancer or SSM is made
    /// within this long of the start of a read that found the lock held. A cancel
    /// releases the lock and answers only after a longer wait (`App`'s cancel
    /// settle), so no call of a cancelled run is made after the cancel answered.
    pub act_window: Duration,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            limits: Limits::AWS,
            poll: Duration::from_secs(5),
            fast_poll: Duration::from_secs(1),
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
            act_window: Duration::from_secs(1),
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

/// The pacing buckets of an account's region (AWS's EC2 buckets), which executors
/// share when they are given the same ([`Executor::share`]): clones are the same
/// buckets.
#[derive(Debug, Clone)]
pub struct Buckets {
    pub(crate) describe: SharedBucket,
    pub(crate) mutating: SharedBucket,
    pub(crate) start_requests: SharedBucket,
    pub(crate) start_instances: SharedBucket,
    pub(crate) stop_instances: SharedBucket,
}

impl Buckets {
    /// New buckets, full, at `limits`.
    pub fn new(l: Limits) -> Buckets {
        Buckets {
            describe: SharedBucket::new(l.describe),
            mutating: SharedBucket::new(l.mutating),
            start_requests: SharedBucket::new(l.start_requests),
            start_instances: SharedBucket::new(l.start_instances),
            stop_instances: SharedBucket::new(l.stop_instances),
        }
    }

    fn each(&self) -> [(&'static str, &SharedBucket); 5] {
        [
            ("describe", &self.describe),
            ("mutating", &self.mutating),
            ("start_requests", &self.start_requests),
            ("start_instances", &self.start_instances),
            ("stop_instances", &self.stop_instances),
        ]
    }

    /// What the buckets learned, by name.
    pub fn learned(&self) -> BTreeMap<String, Learned> {
        self.each()
            .into_iter()
            .filter_map(|(name, b)| b.learned().map(|l| (name.to_string(), l)))
            .collect()
    }

    /// The bucket of this name (as [`Limits::named`] names them).
    pub(crate) fn named(&self, name: &str) -> Option<&SharedBucket> {
        self.each()
            .into_iter()
            .find(|(n, _)| *n == name)
            .map(|(_, b)| b)
    }

    /// Goes on from what a run's buckets learned (each bucket that was not used
    /// since it was made).
    fn learn(&self, from: &BTreeMap<String, Learned>) {
        for (name, b) in self.each() {
            if let Some(l) = from.get(name) {
                b.learn(*l);
            }
        }
    }
}

/// Applies plans for one workload.
pub struct Executor<'a> {
    ports: Ports<'a>,
    settings: Settings,
    workload: Workload,
    buckets: Buckets,
    /// The step in progress of each tier.
    state: BTreeMap<String, Active>,
    /// When each tier's step in progress asked to be polled again: a tier is not
    /// polled before (another tier's wake-up is not its own).
    due: BTreeMap<String, DateTime<Utc>>,
    /// The type changes of a later tier being made ahead of its stage, and when they
    /// asked to be polled again.
    ahead: Option<(String, Resize, DateTime<Utc>)>,
    /// Later tiers whose changes ahead left something for their own step.
    ahead_tried: BTreeSet<String>,
    /// The type changes this executor made, by tier, in the order it made them.
    resized: BTreeMap<String, VecDeque<(DateTime<Utc>, String)>>,
    /// Each tier's early starts in progress, and when they asked to be polled again.
    early: BTreeMap<String, (Power, DateTime<Utc>)>,
    /// Each tier's instances ready for an early start, not yet handed to one; a tier
    /// is here once its early starts began.
    early_ready: BTreeMap<String, Vec<String>>,
    /// Retries and deadline of the check that ends a start.
    verify: Option<Tries>,
    /// The meter's reading when the calls were last recorded in a run.
    metered: BTreeMap<String, u64>,
    /// The current stage, cloned from the run once per stage.
    stage: Option<((Phase, usize), Stage)>,
    /// When this executor last took or renewed the lock, and whether it did in the
    /// current tick.
    held: Held,
    /// The account whose buckets this executor's runs share through the store with
    /// runs of other processes ([`Executor::pace_through_store`]).
    pace_account: Option<String>,
}

/// The lock as this executor last renewed and confirmed it. The lease is renewed
/// when a third of it has passed; before any call to the cloud (a describe, start,
/// stop, resize, load-balancer call or probe) the run confirms that it still holds
/// the lock, by asking the store (a read, where the store has them) when its last
/// confirmation began more than `Settings::act_window` ago: so a run writes one
/// renewal per third of a lease whatever it does, and every call it makes is made
/// within the window of a confirmation (a cancel releases the lock, then waits
/// longer than the window before it answers).
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Held {
    /// When the lease was last taken or renewed.
    at: Option<DateTime<Utc>>,
    /// When the last confirmation that found the lock held began.
    confirmed: Option<DateTime<Utc>>,
}

pub(crate) fn dur(d: chrono::TimeDelta) -> Duration {
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

impl<'a> Executor<'a> {
    pub fn new(ports: Ports<'a>, settings: Settings, workload: Workload) -> Self {
        Executor {
            ports,
            buckets: Buckets::new(settings.limits),
            settings,
            workload,
            state: BTreeMap::new(),
            due: BTreeMap::new(),
            ahead: None,
            ahead_tried: BTreeSet::new(),
            resized: BTreeMap::new(),
            early: BTreeMap::new(),
            early_ready: BTreeMap::new(),
            verify: None,
            metered: ports.meter.requests(),
            stage: None,
            held: Held::default(),
            pace_account: None,
        }
    }

    pub fn workload(&self) -> &Workload {
        &self.workload
    }

    /// Paces this executor's calls with `buckets`, which other executors of the same
    /// account and region share: together they stay within the account's buckets
    /// instead of each spending them as if alone.
    #[must_use]
    pub fn share(mut self, buckets: &Buckets) -> Self {
        self.buckets = buckets.clone();
        self
    }

    /// Paces this executor's calls on `account`'s buckets as the store keeps them
    /// ([`crate::share`]): for drivers in different processes (the serverless run
    /// step), which share no memory. Each call's tokens are booked on the store's
    /// record first (and the run waits its turn); what the run booked and did not
    /// use goes back when it ends. Use it instead of [`Executor::share`], not with
    /// it.
    #[must_use]
    pub fn pace_through_store(mut self, account: impl Into<String>) -> Self {
        self.pace_account = Some(account.into());
        self
    }

    /// As the run ends: what it booked of the account's buckets and did
    /// not use goes back to the store's record. A store that cannot be written
    /// leaves them booked (they refill; pacing is not safety).
    async fn give_back_grants(&mut self, run: &mut Run) {
        let Some(account) = self.pace_account.clone() else {
            return;
        };
        if run.pace_grants.is_empty() {
            return;
        }
        let grants = std::mem::take(&mut run.pace_grants);
        let now = self.ports.clock.now();
        let limits = self.settings.limits;
        if let Err(e) = share::update(self.ports.store, &account, |s| {
            for (name, spec) in limits.named() {
                if let Some(g) = grants.get(name) {
                    s.give_back(name, spec, g.tokens, now);
                }
            }
        })
        .await
        {
            tracing::warn!(account = %account, error = %e, "could not give back the run's booked pacing");
        }
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
    pub async fn observe(&mut self) -> Result<Vec<Instance>> {
        let filter = self.filter();
        let mut attempt = 0;
        loop {
            self.count_describe().await;
            match self.ports.compute.describe(&filter).await {
                Ok(v) => return Ok(v),
                // Before a run exists there is no driver to wait for us; ask again a
                // few times (AWS adapters also back off on their own).
                Err(e) if e.retryable() && attempt < 2 => attempt += 1,
                Err(e) => return Err(e.into()),
            }
        }
    }

    /// Counts a describe made before the run exists (it has no driver to wait for
    /// it, so it goes at once) against the buckets the executor paces on, so that
    /// the calls after it wait for what it used: many runs that begin at one
    /// instant would otherwise each find the describe bucket full.
    async fn count_describe(&mut self) {
        let now = self.ports.clock.now();
        let Some(account) = self.pace_account.clone() else {
            let _ = self.buckets.describe.take(1.0, now);
            return;
        };
        let describe = share::Want {
            bucket: "describe",
            spec: self.settings.limits.describe,
            min: 1.0,
            max: 1.0,
        };
        if let Err(e) = share::update(self.ports.store, &account, |s| {
            s.reserve(&[describe], now);
        })
        .await
        {
            tracing::warn!(account = %account, error = %e, "could not count the describe in the store's pacing");
        }
    }

    /// Observes and plans, changing nothing (a dry run).
    pub async fn plan(&mut self, req: &RunRequest) -> Result<Plan> {
        let observed = self.observe().await?;
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
        let span = tracing::info_span!(
            "run",
            workload = %self.workload.name,
            run = %run_id,
            action = %req.action
        );
        self.begin_in_span(req, run_id).instrument(span).await
    }

    async fn begin_in_span(&mut self, req: &RunRequest, run_id: &str) -> Result<Begin> {
        let now = self.ports.clock.now();
        let name = self.workload.name.to_string();
        if let Some(mut old) = self.ports.store.unfinished_run(&name).await? {
            if old.action == req.action && old.profile == req.profile {
                self.take_lock(&old.id).await?;
                self.buckets.learn(&old.pacing);
                old.owner = self.settings.owner.clone();
                old.record(now, None, RunEvent::Resumed);
                // Compare-and-set: a run cancelled since it was read is not resumed.
                if let Err(e) = self.save(&mut old).await {
                    self.let_go(&old.id).await;
                    return Err(e);
                }
                return Ok(Begin::Resumed(Box::new(old)));
            }
            self.take_lock(&old.id).await?;
            old.status = RunStatus::Abandoned;
            old.finished = Some(now);
            old.record(
                now,
                None,
                RunEvent::Abandoned {
                    for_action: req.action,
                },
            );
            if let Err(e) = self.save(&mut old).await {
                self.let_go(&old.id).await;
                return Err(e);
            }
        }
        let plan = self.plan(req).await?;
        if plan.is_empty() {
            self.ports
                .store
                .release(&name, &self.settings.owner, None)
                .await?;
            return Ok(Begin::NothingToDo(Box::new(plan)));
        }
        self.take_lock(run_id).await?;
        let mut run = Run::new(
            run_id,
            plan,
            &self.settings.owner,
            now,
            Jitter::new(seed_of(run_id)),
        );
        run.scale_in = req.scale_in;
        run.record(now, None, RunEvent::Started { action: req.action });
        if let Err(e) = self.save(&mut run).await {
            // The same run id begun twice at once (an idempotency key): the first
            // save wins, and the other leaves its lock alone.
            if !matches!(e, EngineError::Store(StoreError::Conflict(_))) {
                self.let_go(run_id).await;
            }
            return Err(e);
        }
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
        self.buckets.learn(&run.pacing);
        if !run.status.is_finished() {
            self.take_lock(&run.id).await?;
            // A driver that advances one tick at a time resumes under the same owner
            // each time: only a change of hands is worth a line, and that save (made
            // with compare-and-set) confirms the run is still the one read.
            if run.owner != self.settings.owner {
                run.owner = self.settings.owner.clone();
                run.record(now, None, RunEvent::Resumed);
                if let Err(e) = self.save(&mut run).await {
                    self.let_go(&run.id).await;
                    return Err(e);
                }
            } else {
                // A cancel may have ended the run and released the lock between the
                // read and the lock: read again, now that the lock is taken.
                match self.ports.store.load_run(run_id).await? {
                    Some(again) if again.status.is_finished() => {
                        self.let_go(run_id).await;
                        return Ok(again);
                    }
                    Some(again) => run = again,
                    None => {
                        self.let_go(run_id).await;
                        return Err(EngineError::NoSuchRun(run_id.to_string()));
                    }
                }
            }
        }
        Ok(run)
    }

    /// Releases the lock this executor took for `run_id`, when a run it was about to
    /// go on with turned out to be ended or changed; a failure to release only leaves
    /// the lease to expire.
    async fn let_go(&mut self, run_id: &str) {
        self.held = Held::default();
        let name = self.workload.name.to_string();
        if let Err(e) = self
            .ports
            .store
            .release(&name, &self.settings.owner, Some(run_id))
            .await
        {
            tracing::warn!(error = %e, "the workload's lock was not released; its lease will expire");
        }
    }

    async fn take_lock(&mut self, run_id: &str) -> Result<()> {
        let now = self.ports.lease_clock.now();
        match self
            .ports
            .store
            .acquire(&self.lock(run_id, now), now)
            .await?
        {
            LockOutcome::Acquired => {
                self.held = Held {
                    at: Some(now),
                    confirmed: Some(now),
                };
                Ok(())
            }
            LockOutcome::Held(l) => Err(EngineError::Busy(l)),
        }
    }

    async fn notify(&self, run: &mut Run, event: Event) {
        let Some(topic) = &self.workload.sns_topic else {
            return;
        };
        let note = event.notification();
        if let Err(e) = self.ports.notifier.publish(topic, &note).await {
            let now = self.ports.clock.now();
            run.record(
                now,
                None,
                RunEvent::NotificationFailed {
                    error: e.to_string(),
                },
            );
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
        let span = tracing::info_span!(
            "run",
            workload = %run.workload,
            run = %run.id,
            action = %run.action
        );
        match self.tick_in_span(run).instrument(span).await {
            Err(EngineError::Store(StoreError::Conflict(why))) => self.reread(run, why).await,
            other => other,
        }
    }

    /// After a save found the run saved by another writer since this executor read
    /// it. A run another writer ended (a cancel) is done: nothing more is written or
    /// called for it, and its lock is not touched (the cancel released it). One the
    /// other writer left where it was (same cursor and owner) keeps this executor's
    /// progress, saved over it. Otherwise this executor takes the stored run and
    /// forgets what its steps had in hand (they start over from the stored
    /// checkpoint, re-observing, as on any resume).
    async fn reread(&mut self, run: &mut Run, why: String) -> Result<Tick> {
        let Some(stored) = self.ports.store.load_run(&run.id).await? else {
            return Err(StoreError::Conflict(why).into());
        };
        // Another writer that did not move the run (it recorded who asked for it):
        // this executor's progress is written over it, keeping what it added, and
        // its steps go on where they are.
        if !stored.status.is_finished()
            && stored.cursor == run.cursor
            && stored.owner == run.owner
            && stored.rollback.len() == run.rollback.len()
        {
            run.version = stored.version;
            if run.requested_by.is_none() {
                run.requested_by = stored.requested_by;
            }
            return match self.save(run).await {
                Ok(()) | Err(EngineError::Store(StoreError::Conflict(_))) => {
                    Ok(Tick::Wait(Duration::ZERO))
                }
                Err(e) => Err(e),
            };
        }
        self.state.clear();
        self.due.clear();
        self.early.clear();
        self.early_ready.clear();
        self.ahead = None;
        self.verify = None;
        self.stage = None;
        *run = stored;
        if run.status.is_finished() {
            tracing::info!(
                status = run.status.as_str(),
                "the run was ended by another writer; this driver stops"
            );
            return Ok(Tick::Done);
        }
        tracing::info!("the run was saved by another writer; going on from what it saved");
        Ok(Tick::Wait(Duration::ZERO))
    }

    async fn tick_in_span(&mut self, run: &mut Run) -> Result<Tick> {
        if run.status.is_finished() {
            return Ok(Tick::Done);
        }
        let wall = self.ports.lease_clock.now();
        let due = self
            .held
            .at
            .is_none_or(|at| dur(wall - at) >= self.settings.lease / 3);
        if due {
            self.cx(run, "").hold().await?;
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
                // While this stage waits, later tiers' type changes can be made.
                let w = match self.resize_ahead(run).await? {
                    Some(a) => w.min(a),
                    None => w,
                };
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
                        if self.start_restore(run) {
                            self.save(run).await?;
                            continue;
                        }
                        return self.finish(run, RunStatus::Failed).await;
                    }
                    FailurePolicy::Rollback => {
                        self.start_rollback(run, true);
                        self.save(run).await?;
                        continue;
                    }
                }
            }
            run.cursor.stage += 1;
            run.cursor.steps.clear();
            run.cursor.began.clear();
            self.save(run).await?;
        }
    }

    /// Runs one tier's steps as far as possible, and its early starts; `Some(wait)`
    /// if it must wait.
    async fn advance_tier(&mut self, run: &mut Run, tp: &TierPlan) -> Result<Option<Duration>> {
        let Some(wait) = self.advance_steps(run, tp).await? else {
            self.early.remove(&tp.tier);
            return Ok(None);
        };
        Ok(Some(match self.start_early(run, tp).await? {
            Some(w) => wait.min(w),
            None => wait,
        }))
    }

    /// In a start with a profile, while a tier's Resize step (or the pause after it)
    /// goes on, starts its instances whose type change was made at least the
    /// workload's resize delay ago, in batches of at least `min_batch`: so the tier's
    /// starts do not wait for its last type change. `Some(wait)` until the early
    /// starts in progress can go on.
    async fn start_early(&mut self, run: &mut Run, tp: &TierPlan) -> Result<Option<Duration>> {
        let idx = run.cursor.steps.get(&tp.tier).copied().unwrap_or(0);
        let resizing = match (tp.steps.get(idx), idx.checked_sub(1).map(|i| &tp.steps[i])) {
            (Some(Step::Resize { changes }), _)
            | (
                Some(Step::Pause {
                    why: PauseReason::AfterResize,
                    ..
                }),
                Some(Step::Resize { changes }),
            ) => Some(changes),
            _ => None,
        };
        let start = tp.steps.iter().skip(idx + 1).take(2).find_map(|s| match s {
            Step::Start { instances } => Some(instances),
            _ => None,
        });
        let (Some(changes), Some(start)) = (resizing, start) else {
            self.early.remove(&tp.tier);
            return Ok(None);
        };
        if run.action != Action::Start || run.cursor.phase != Phase::Forward {
            self.early.remove(&tp.tier);
            return Ok(None);
        }
        let now = self.ports.clock.now();
        if let Some((mut early, due)) = self.early.remove(&tp.tier) {
            if due > now {
                self.early.insert(tp.tier.clone(), (early, due));
                return Ok(Some(dur(due - now)));
            }
            match early.poll(&mut self.cx(run, &tp.tier)).await? {
                Poll::Wait(w) => {
                    let now = self.ports.clock.now();
                    self.early.insert(tp.tier.clone(), (early, after(now, w)));
                    return Ok(Some(w));
                }
                Poll::Done => {}
            }
        }
        let settle = chrono::TimeDelta::seconds(
            i64::try_from(self.workload.resize_delay_secs).unwrap_or(i64::MAX),
        );
        let now = self.ports.clock.now();
        let ready = match self.early_ready.entry(tp.tier.clone()) {
            std::collections::btree_map::Entry::Occupied(e) => e.into_mut(),
            // The instances whose type does not change are ready from the first.
            std::collections::btree_map::Entry::Vacant(e) => {
                let changing: BTreeSet<&str> =
                    changes.iter().map(|c| c.instance.as_str()).collect();
                e.insert(
                    start
                        .iter()
                        .filter(|id| !changing.contains(id.as_str()))
                        .cloned()
                        .collect(),
                )
            }
        };
        if let Some(made) = self.resized.get_mut(&tp.tier) {
            while let Some((at, _)) = made.front()
                && at.checked_add_signed(settle).is_some_and(|t| t <= now)
            {
                let (_, id) = made.pop_front().expect("a front");
                ready.push(id);
            }
        }
        if ready.len() < self.settings.min_batch.max(1) {
            return Ok(None);
        }
        let ready: Vec<String> = std::mem::take(ready)
            .into_iter()
            .filter(|id| !run.failed.contains_key(id) && !run.kept.contains_key(id))
            .collect();
        let sent: BTreeSet<&str> = ready.iter().map(String::as_str).collect();
        let types: BTreeMap<String, String> = changes
            .iter()
            .filter(|c| sent.contains(c.instance.as_str()))
            .map(|c| (c.instance.clone(), c.to.clone()))
            .collect();
        let mut early = Power::early(&ready, types, &mut self.cx(run, &tp.tier), now);
        match early.poll(&mut self.cx(run, &tp.tier)).await? {
            Poll::Wait(w) => {
                let now = self.ports.clock.now();
                self.early.insert(tp.tier.clone(), (early, after(now, w)));
                Ok(Some(w))
            }
            Poll::Done => Ok(None),
        }
    }

    /// Runs one tier's steps as far as possible; `Some(wait)` if it must wait.
    async fn advance_steps(&mut self, run: &mut Run, tp: &TierPlan) -> Result<Option<Duration>> {
        loop {
            let idx = run.cursor.steps.get(&tp.tier).copied().unwrap_or(0);
            let Some(step) = tp.steps.get(idx) else {
                return Ok(None);
            };
            let now = self.ports.clock.now();
            if self.state.contains_key(&tp.tier)
                && let Some(due) = self.due.get(&tp.tier)
                && *due > now
            {
                return Ok(Some(dur(*due - now)));
            }
            if idx == 0 && !self.state.contains_key(&tp.tier) {
                run.tiers.entry(tp.tier.clone()).or_insert(TierTiming {
                    started: now,
                    finished: None,
                });
            }
            let mut active = match self.state.remove(&tp.tier) {
                Some(a) => a,
                None => {
                    let first = !run.cursor.began.contains_key(&tp.tier);
                    let at = *run.cursor.began.entry(tp.tier.clone()).or_insert(now);
                    Active::new(step, &mut self.cx(run, &tp.tier), Began { at, first })
                }
            };
            let span = tracing::info_span!("tier", tier = %tp.tier, step = step.name());
            let poll = active
                .poll(&mut self.cx(run, &tp.tier))
                .instrument(span)
                .await?;
            match poll {
                Poll::Wait(w) => {
                    self.state.insert(tp.tier.clone(), active);
                    let now = self.ports.clock.now();
                    self.due.insert(tp.tier.clone(), after(now, w));
                    return Ok(Some(w));
                }
                Poll::Done => {
                    self.due.remove(&tp.tier);
                    let now = self.ports.clock.now();
                    run.cursor.steps.insert(tp.tier.clone(), idx + 1);
                    run.cursor.began.remove(&tp.tier);
                    run.record(
                        now,
                        Some(&tp.tier),
                        RunEvent::StepDone {
                            step: step.name().to_string(),
                        },
                    );
                    if idx + 1 == tp.steps.len() {
                        self.tier_finished(run, &tp.tier, now).await;
                    }
                    self.save(run).await?;
                }
            }
        }
    }

    /// Makes the type changes of later tiers of a start with a profile while the
    /// current stage waits, one tier at a time in stage order, with the mutating
    /// calls the current stage does not use (never while one of its tiers is
    /// resizing). `Some(wait)` until the next of them can be made.
    async fn resize_ahead(&mut self, run: &mut Run) -> Result<Option<Duration>> {
        if run.action != Action::Start || run.cursor.phase != Phase::Forward || run.aborted {
            self.ahead = None;
            return Ok(None);
        }
        if self.state.values().any(|a| matches!(a, Active::Resize(_))) {
            return Ok(None);
        }
        let later = |run: &Run, tier: &str| {
            run.plan
                .stages
                .iter()
                .skip(run.cursor.stage + 1)
                .any(|s| s.tiers.iter().any(|t| t.tier == tier))
        };
        loop {
            let now = self.ports.clock.now();
            let (tier, mut ahead, due) = match self.ahead.take() {
                Some(a) if later(run, &a.0) => a,
                _ => {
                    let next = run
                        .plan
                        .stages
                        .iter()
                        .skip(run.cursor.stage + 1)
                        .flat_map(|s| &s.tiers)
                        .find_map(|t| match t.steps.first() {
                            Some(Step::Resize { changes })
                                if !run.resized_ahead.contains_key(&t.tier)
                                    && !self.ahead_tried.contains(&t.tier) =>
                            {
                                Some((t.tier.clone(), changes.clone()))
                            }
                            _ => None,
                        });
                    let Some((tier, changes)) = next else {
                        return Ok(None);
                    };
                    let ahead = Resize::ahead(&changes, &mut self.cx(run, &tier), now);
                    (tier, ahead, now)
                }
            };
            if due > now {
                self.ahead = Some((tier, ahead, due));
                return Ok(Some(dur(due - now)));
            }
            let span = tracing::info_span!("tier", tier = %tier, step = "resize ahead");
            let poll = ahead
                .poll(&mut self.cx(run, &tier))
                .instrument(span)
                .await?;
            let now = self.ports.clock.now();
            match poll {
                Poll::Wait(w) => {
                    self.ahead = Some((tier, ahead, after(now, w)));
                    return Ok(Some(w));
                }
                Poll::Done if ahead.complete() => {
                    let instances = ahead.count();
                    run.record(now, Some(&tier), RunEvent::ResizedAhead { instances });
                    run.resized_ahead.insert(tier, now);
                    self.save(run).await?;
                }
                Poll::Done => {
                    self.ahead_tried.insert(tier);
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

    /// Saves the run as it stands (with the requests sent so far): for drivers that
    /// advance a run one tick at a time, so the next tick starts from here.
    ///
    /// # Errors
    /// The store failed.
    pub async fn checkpoint(&mut self, run: &mut Run) -> Result<()> {
        match self.save(run).await {
            Err(EngineError::Store(StoreError::Conflict(why))) => {
                self.reread(run, why).await.map(|_| ())
            }
            other => other,
        }
    }

    /// Records the requests sent since the last save in the run, and saves it.
    async fn save(&mut self, run: &mut Run) -> Result<()> {
        run.pacing = self.buckets.learned();
        let now = self.ports.meter.requests();
        for (action, n) in &now {
            let sent = n.saturating_sub(self.metered.get(action).copied().unwrap_or(0));
            if sent > 0 {
                *run.calls.entry(action.clone()).or_default() += sent;
            }
        }
        self.metered = now;
        self.ports.store.save_run(run).await?;
        Ok(())
    }

    /// What a step of `tier` works with.
    fn cx<'x>(&'x mut self, run: &'x mut Run, tier: &'x str) -> Cx<'x, 'a> {
        Cx {
            ports: self.ports,
            settings: &self.settings,
            workload: &self.workload,
            buckets: &mut self.buckets,
            held: &mut self.held,
            resized: &mut self.resized,
            pace_account: self.pace_account.as_deref(),
            run,
            tier,
        }
    }
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
