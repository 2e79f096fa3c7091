//! The always-on service: fires each workload's schedule events at their instants,
//! drives the runs it starts, and records what became of every event.
//!
//! One loop, in one process: at each turn it reads the workloads and overrides from
//! the store, claims and fires the events that came due, brings drifted workloads
//! back when they ask for it (`enforce`), advances the runs it drives by one tick
//! each, and sleeps until the next thing to do. Several workloads' runs go on at once
//! (one run per workload, as always: the lock says so).
//!
//! Safety across processes and restarts:
//! - an event is *claimed* with a conditional write before it is fired, so two
//!   processes on one store never fire it twice, and a restarted process never fires
//!   again what it fired before;
//! - on start, unfinished runs are resumed, and the events missed while no process
//!   ran are fired once if they are at most `grace` old, else recorded as missed;
//! - a stop request (SIGTERM) ends the loop after the current turn: runs are saved at
//!   every tick, and the next start resumes them.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use chrono::{DateTime, Utc};
use ec2_scheduler_core::Action;
use ec2_scheduler_core::Workload;
use ec2_scheduler_core::overrides::Override;
use ec2_scheduler_core::plan::ScaleIn;
use ec2_scheduler_core::schedule::{Event, EventKind, Timetable, Wish};
use ec2_scheduler_engine::ports::{EventOutcome, EventRecord};
use ec2_scheduler_engine::{Begin, RunRequest};
use tracing::{info, warn};

use crate::clouds::Clouds;
use crate::env::App;
use crate::error::{Error, Result};
use crate::runs::{Next, Quiet};

/// How the service behaves.
#[derive(Debug, Clone)]
pub struct Options {
    /// A missed event at most this old is fired when the service starts.
    pub grace: Duration,
    /// How far back missed events are looked for when the service starts.
    pub lookback: Duration,
    /// The longest sleep between two turns.
    pub turn: Duration,
    /// How often drift is checked for workloads with `enforce`.
    pub enforce_every: Duration,
    /// Stop at this instant of the cloud's clock (virtual on the simulator).
    pub until: Option<DateTime<Utc>>,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            grace: Duration::from_secs(15 * 60),
            lookback: Duration::from_secs(24 * 3600),
            turn: Duration::from_secs(30),
            enforce_every: Duration::from_secs(5 * 60),
            until: None,
        }
    }
}

/// A run the service drives.
struct Active {
    run_id: String,
    due: DateTime<Utc>,
}

/// Runs begun elsewhere in the process (by the HTTP API) for the service to drive.
#[derive(Default)]
pub struct Inbox {
    runs: std::sync::Mutex<Vec<(String, String)>>,
    wake: AtomicBool,
}

impl Inbox {
    /// Hands the run `run_id` of `workload` to the service, and wakes it.
    pub fn push(&self, workload: &str, run_id: &str) {
        self.runs
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push((workload.to_string(), run_id.to_string()));
        self.wake.store(true, Ordering::SeqCst);
    }

    fn take(&self) -> Vec<(String, String)> {
        self.wake.store(false, Ordering::SeqCst);
        std::mem::take(&mut *self.runs.lock().unwrap_or_else(|p| p.into_inner()))
    }
}

fn to_std(d: chrono::Duration) -> Duration {
    d.to_std().unwrap_or(Duration::ZERO)
}

fn to_chrono(d: Duration) -> chrono::Duration {
    chrono::Duration::from_std(d).unwrap_or(chrono::Duration::MAX)
}

impl App {
    /// Runs the service until `stop` is set (after the current turn) or the cloud's
    /// clock passes `options.until`.
    ///
    /// # Errors
    /// The store failing at the start; later failures are logged, recorded on their
    /// events, and the service goes on.
    pub async fn serve(&self, options: &Options, stop: Arc<AtomicBool>) -> Result<()> {
        let clouds = Clouds::new(self);
        if clouds.simulated() {
            let any = self.store.workloads().await?.into_iter().next();
            let Some(w) = any else {
                return Err(Error::Invalid(
                    "the store holds no workloads: load some with `ec2-scheduler load FILE`".into(),
                ));
            };
            clouds.get(self, &w).await?;
        }
        self.serve_with(&clouds, &Inbox::default(), options, stop)
            .await
    }

    /// [`App::serve`] on `clouds` shared with other parts of the process, which hand
    /// the runs they begin to `inbox`.
    ///
    /// # Errors
    /// The store failing at the start.
    pub async fn serve_with(
        &self,
        clouds: &Clouds,
        inbox: &Inbox,
        options: &Options,
        stop: Arc<AtomicBool>,
    ) -> Result<()> {
        let started = clouds.now();
        info!(owner = %self.owner, at = %started, "serving");
        let mut active: BTreeMap<String, Active> = BTreeMap::new();
        self.resume_unfinished(clouds, &mut active, started).await?;
        // Events after this instant are looked at: the previous turn's, or on start
        // back to the lookback. A workload whose events could not be looked at keeps
        // its own, so that they are looked at again at the next turn.
        let mut last_turn = started - to_chrono(options.lookback);
        let mut seen: BTreeMap<String, DateTime<Utc>> = BTreeMap::new();
        let mut last_enforce: Option<DateTime<Utc>> = None;
        loop {
            let now = clouds.now();
            for (workload, run_id) in inbox.take() {
                active.insert(workload, Active { run_id, due: now });
            }
            let workloads = match self.store.workloads().await {
                Ok(w) => w,
                Err(e) => {
                    warn!(error = %e, "cannot read the workloads; trying again");
                    clouds.sleep(options.turn, &stop, &inbox.wake).await;
                    if stop.load(Ordering::SeqCst) {
                        break;
                    }
                    continue;
                }
            };
            let enforce_due =
                last_enforce.is_none_or(|t| now - t >= to_chrono(options.enforce_every));
            // Each scheduled workload with its overrides, read once a turn.
            let mut scheduled: Vec<(&Workload, Vec<Override>)> = Vec::new();
            for w in workloads.iter().filter(|w| !w.schedules.is_empty()) {
                match self.store.overrides(Some(w.name.as_str())).await {
                    Ok(o) => scheduled.push((w, o)),
                    Err(e) => {
                        // Its events are looked at again from here at the next turn.
                        seen.entry(w.name.to_string()).or_insert(last_turn);
                        warn!(workload = %w.name, error = %e, "cannot read its overrides");
                    }
                }
            }
            for (w, overrides) in &scheduled {
                let from = seen.get(w.name.as_str()).copied().unwrap_or(last_turn);
                match self
                    .fire_due(
                        w,
                        overrides,
                        clouds,
                        &mut active,
                        from,
                        now,
                        options,
                        started,
                    )
                    .await
                {
                    Ok(()) => {
                        seen.remove(w.name.as_str());
                    }
                    Err(e) => {
                        seen.insert(w.name.to_string(), from);
                        warn!(workload = %w.name, error = %e, "cannot fire the events; trying again");
                    }
                }
                if w.enforce
                    && enforce_due
                    && !active.contains_key(w.name.as_str())
                    && let Err(e) = self.enforce(w, overrides, clouds, &mut active, now).await
                {
                    warn!(workload = %w.name, error = %e, "cannot check drift");
                }
            }
            if enforce_due {
                last_enforce = Some(now);
            }
            last_turn = now;
            self.advance_due(&workloads, clouds, &mut active).await;
            if stop.load(Ordering::SeqCst) {
                info!("stopping: runs are saved and resume at the next start");
                break;
            }
            let now = clouds.now();
            if options.until.is_some_and(|u| now >= u) {
                break;
            }
            // Sleep until the next event, the next tick of a run, or a turn.
            let mut wake = now + to_chrono(options.turn);
            for (w, overrides) in &scheduled {
                if let Some(e) = Timetable::new(&w.schedules)
                    .with_overrides(overrides)
                    .next_events(now, 1, 2)
                    .first()
                {
                    wake = wake.min(e.at);
                }
            }
            for a in active.values() {
                wake = wake.min(a.due);
            }
            if let Some(u) = options.until {
                wake = wake.min(u);
            }
            if !inbox.wake.load(Ordering::SeqCst) {
                clouds
                    .sleep(
                        to_std(wake - now).max(Duration::from_millis(1)),
                        &stop,
                        &inbox.wake,
                    )
                    .await;
            }
        }
        clouds.save()
    }

    /// Picks up the unfinished runs of the stored workloads.
    async fn resume_unfinished(
        &self,
        clouds: &Clouds,
        active: &mut BTreeMap<String, Active>,
        now: DateTime<Utc>,
    ) -> Result<()> {
        for w in self.store.workloads().await? {
            let Some(run) = self.store.unfinished_run(w.name.as_str()).await? else {
                continue;
            };
            let req = RunRequest {
                action: run.action,
                profile: run.profile.clone(),
                scale_in: ScaleIn::ReportOnly,
            };
            let cloud = clouds.get(self, &w).await?;
            match self
                .begin_run(&cloud, &w, &req, Some(&run.id), &mut Quiet)
                .await
            {
                Ok(Begin::Resumed(r) | Begin::Started(r)) => {
                    info!(workload = %w.name, run = %r.id, "resuming an unfinished run");
                    active.insert(
                        w.name.to_string(),
                        Active {
                            run_id: r.id.clone(),
                            due: now,
                        },
                    );
                }
                Ok(Begin::NothingToDo(_)) => {}
                Err(Error::Busy(lock)) => {
                    info!(workload = %w.name, owner = %lock.owner, "another process drives its run");
                }
                Err(e) => warn!(workload = %w.name, error = %e, "cannot resume its run"),
            }
        }
        Ok(())
    }

    /// Claims and fires (or records as skipped or missed) `w`'s events in
    /// `(seen, now]`.
    #[allow(clippy::too_many_arguments)]
    async fn fire_due(
        &self,
        w: &Workload,
        overrides: &[Override],
        clouds: &Clouds,
        active: &mut BTreeMap<String, Active>,
        seen: DateTime<Utc>,
        now: DateTime<Utc>,
        options: &Options,
        started: DateTime<Utc>,
    ) -> Result<()> {
        let events = Timetable::new(&w.schedules)
            .with_overrides(overrides)
            .events(seen, now);
        for e in events {
            let mut record = EventRecord {
                workload: w.name.to_string(),
                action: e.kind.as_str().to_string(),
                at: e.at,
                profile: e.profile.clone(),
                outcome: EventOutcome::Claimed,
                owner: self.owner.clone(),
                recorded_at: now,
                run_id: None,
                detail: None,
            };
            if let Some(why) = &e.skipped {
                record.outcome = EventOutcome::Skipped;
                record.detail = Some(why.to_string());
                if self.store.claim_event(&record).await? {
                    info!(workload = %w.name, action = %e.kind, at = %e.at, why = %why, "event skipped");
                }
                continue;
            }
            // Missed while no process ran: fired when recent enough, else reported.
            let late = now - e.at;
            if e.at < started && late > to_chrono(options.grace) {
                record.outcome = EventOutcome::Missed;
                record.detail = Some(crate::gate::missed(late, options.grace));
                if self.store.claim_event(&record).await? {
                    warn!(workload = %w.name, action = %e.kind, at = %e.at, "event missed");
                }
                continue;
            }
            if !self.store.claim_event(&record).await? {
                continue;
            }
            self.fire(w, &e, record, clouds, active, now).await?;
        }
        Ok(())
    }

    /// Fires one claimed event: begins its run.
    async fn fire(
        &self,
        w: &Workload,
        e: &Event,
        mut record: EventRecord,
        clouds: &Clouds,
        active: &mut BTreeMap<String, Active>,
        now: DateTime<Utc>,
    ) -> Result<()> {
        let action = match e.kind {
            EventKind::Start => Action::Start,
            EventKind::Stop => Action::Stop,
        };
        let req = RunRequest {
            action,
            profile: e.profile.clone(),
            scale_in: ScaleIn::ReportOnly,
        };
        if let Some(a) = active.get(w.name.as_str()) {
            record.outcome = EventOutcome::Skipped;
            record.detail = Some(format!("run {} of the workload is still going", a.run_id));
        } else {
            let cloud = clouds.get(self, w).await?;
            match self.begin_run(&cloud, w, &req, None, &mut Quiet).await {
                Ok(Begin::Started(r) | Begin::Resumed(r)) => {
                    record.outcome = EventOutcome::Fired;
                    record.run_id = Some(r.id.clone());
                    active.insert(
                        w.name.to_string(),
                        Active {
                            run_id: r.id.clone(),
                            due: now,
                        },
                    );
                }
                Ok(Begin::NothingToDo(plan)) => {
                    record.outcome = EventOutcome::Skipped;
                    record.detail = Some(if w.disabled {
                        crate::gate::disabled()
                    } else {
                        format!(
                            "nothing to do: the workload is already {}",
                            match plan.action {
                                Action::Start => "started",
                                Action::Stop => "stopped",
                            }
                        )
                    });
                }
                Err(Error::Busy(lock)) => {
                    record.outcome = EventOutcome::Skipped;
                    record.detail = Some(crate::gate::busy(&lock.run_id, &lock.owner));
                }
                Err(err) => {
                    record.outcome = EventOutcome::Failed;
                    record.detail = Some(err.to_string());
                }
            }
        }
        info!(
            workload = %w.name, action = %e.kind, at = %e.at,
            outcome = record.outcome.as_str(), run = record.run_id.as_deref().unwrap_or("-"),
            detail = record.detail.as_deref().unwrap_or("-"), "event"
        );
        self.store.update_event(&record).await?;
        Ok(())
    }

    /// Brings `w` back to what its schedules wish when it drifted.
    async fn enforce(
        &self,
        w: &Workload,
        overrides: &[Override],
        clouds: &Clouds,
        active: &mut BTreeMap<String, Active>,
        now: DateTime<Utc>,
    ) -> Result<()> {
        let desired = Timetable::new(&w.schedules)
            .with_overrides(overrides)
            .state(now);
        let (action, kind) = match desired.wish {
            Wish::Running => (Action::Start, EventKind::Start),
            Wish::Stopped => (Action::Stop, EventKind::Stop),
            Wish::Any => return Ok(()),
        };
        let req = RunRequest {
            action,
            profile: desired.profile.clone(),
            scale_in: ScaleIn::ReportOnly,
        };
        let cloud = clouds.get(self, w).await?;
        if self.dry_run(&cloud, w, &req).await?.is_empty() {
            return Ok(());
        }
        info!(workload = %w.name, wish = %desired.wish, "drifted: bringing it back");
        let e = Event {
            at: now,
            local: now.naive_utc(),
            kind,
            profile: desired.profile,
            schedule: 0,
            period: 0,
            skipped: None,
            by_override: None,
        };
        let record = EventRecord {
            workload: w.name.to_string(),
            action: kind.as_str().to_string(),
            at: now,
            profile: e.profile.clone(),
            outcome: EventOutcome::Claimed,
            owner: self.owner.clone(),
            recorded_at: now,
            run_id: None,
            detail: Some("enforce: the workload drifted from its schedule".into()),
        };
        if self.store.claim_event(&record).await? {
            self.fire(w, &e, record, clouds, active, now).await?;
        }
        Ok(())
    }

    /// Advances by one tick each run that is due.
    async fn advance_due(
        &self,
        workloads: &[Workload],
        clouds: &Clouds,
        active: &mut BTreeMap<String, Active>,
    ) {
        let names: Vec<String> = active.keys().cloned().collect();
        for name in names {
            let Some(w) = workloads.iter().find(|w| w.name.as_str() == name) else {
                continue;
            };
            let now = clouds.now();
            let Some(a) = active.get(&name) else { continue };
            if a.due > now {
                continue;
            }
            let run_id = a.run_id.clone();
            let cloud = match clouds.get(self, w).await {
                Ok(c) => c,
                Err(e) => {
                    warn!(workload = %name, error = %e, "cannot reach the cloud");
                    continue;
                }
            };
            match self.advance(&cloud, w, &run_id).await {
                Ok(Next::Wait(d, _)) => {
                    if let Some(a) = active.get_mut(&name) {
                        a.due = now + to_chrono(d);
                    }
                }
                Ok(Next::Done(run)) => {
                    info!(workload = %name, run = %run.id, status = ?run.status, "run finished");
                    active.remove(&name);
                }
                Err(e) => {
                    warn!(workload = %name, run = %run_id, error = %e, "the run cannot go on here");
                    active.remove(&name);
                }
            }
        }
    }
}
