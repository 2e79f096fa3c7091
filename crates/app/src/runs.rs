//! Runs: previewing, beginning or resuming, driving to the end (the foreground loop
//! of the command line and the service), advancing by one tick (for drivers that
//! wait between ticks themselves, such as a Step Functions loop), cancelling, and
//! history.

use std::time::Duration;

use chrono::{DateTime, Utc};
use ec2_scheduler_core::Workload;
use ec2_scheduler_core::plan::Plan;
use ec2_scheduler_engine::ports::{RunSummaryRow, StoreError};
use ec2_scheduler_engine::run::RunEvent;
use ec2_scheduler_engine::{Begin, EngineError, Executor, Run, RunRequest, RunStatus, Tick};
use sha2::{Digest, Sha256};

use crate::env::{App, Cloud, Store, new_run_id, owner_is_dead};
use crate::error::{Error, Result};
use crate::sim::Checkpointed;

/// What a driver shows while a run goes.
pub trait Watch: Send {
    /// A note for the user: a run resumed, a lock taken over.
    fn note(&mut self, _text: &str) {}
    /// The run began (or was resumed) with this plan.
    fn began(&mut self, _run: &Run) {}
    /// After every tick.
    fn progress(&mut self, _run: &Run, _now: DateTime<Utc>) {}
    /// The run is finished.
    fn finished(&mut self) {}
}

/// A watcher that shows nothing.
pub struct Quiet;
impl Watch for Quiet {}

/// How [`App::run`] ended.
#[derive(Debug)]
pub enum Outcome {
    /// Nothing to do (already in the target state, or disabled); no run recorded.
    NothingToDo(Box<Plan>),
    /// The run, finished (its status says how).
    Finished(Box<Run>),
}

/// What a keyed begin did.
#[derive(Debug)]
pub enum Keyed {
    /// Began (or resumed, or found nothing to do) as [`App::begin_run`] does.
    Begun(Begin),
    /// The key began this run before; nothing was begun now.
    Repeated(String),
}

/// The longest idempotency key taken.
pub const KEY_MAX: usize = 255;

/// How many times a change of a stored run is tried against concurrent writers.
pub const UPDATE_TRIES: usize = 20;

/// The run id an idempotency `key` names on `workload`: `run-k` and 24 hex digits of
/// a SHA-256 of both, so that the same key always names the same run and different
/// workloads' keys never meet.
///
/// # Errors
/// The key is empty, longer than [`KEY_MAX`] bytes, or not printable ASCII.
pub fn keyed_run_id(workload: &str, key: &str) -> Result<String> {
    if key.is_empty() || key.len() > KEY_MAX || !key.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(Error::Invalid(format!(
            "Idempotency-Key: expected 1 to {KEY_MAX} printable ASCII characters, found {} bytes",
            key.len()
        )));
    }
    let digest = Sha256::new()
        .chain_update(workload.as_bytes())
        .chain_update([0])
        .chain_update(key.as_bytes())
        .finalize();
    let hex: String = digest[..12].iter().map(|b| format!("{b:02x}")).collect();
    Ok(format!("run-k{hex}"))
}

/// What [`App::advance`] left to do.
#[derive(Debug)]
pub enum Next {
    /// Advance again after this long.
    Wait(Duration, Box<Run>),
    /// The run is finished.
    Done(Box<Run>),
}

/// The store a run on `cloud` writes to: on the simulator, one that saves the fleet
/// file before every checkpoint, so the file is never behind the store.
fn run_store<'a>(
    store: &'a dyn Store,
    cloud: &'a Cloud,
    slot: &'a mut Option<Checkpointed<'a>>,
) -> &'a dyn Store {
    match cloud {
        Cloud::Sim { sim, .. } => slot.insert(Checkpointed { inner: store, sim }),
        Cloud::Aws(_) => store,
    }
}

impl App {
    /// An executor of `workload` on `cloud`, as this caller, over the run store of
    /// that cloud.
    pub(crate) fn executor<'a>(
        &'a self,
        cloud: &'a Cloud,
        workload: &Workload,
        slot: &'a mut Option<Checkpointed<'a>>,
    ) -> Executor<'a> {
        let store = run_store(&*self.store, cloud, slot);
        let mut settings = cloud.settings(&self.owner);
        settings.act_window = self.fence.act_window;
        if let Some(poll) = self.poll {
            settings.poll = poll;
            settings.fast_poll = poll;
        }
        let exec = Executor::new(cloud.ports(store), settings.clone(), workload.clone());
        if self.store_pacing {
            exec.pace_through_store(App::pacing_account(cloud, workload))
        } else if self.share_pacing {
            exec.share(&self.buckets(cloud, workload, settings.limits))
        } else {
            exec
        }
    }

    /// Observes and plans, changing nothing (a dry run).
    pub async fn dry_run(
        &self,
        cloud: &Cloud,
        workload: &Workload,
        req: &RunRequest,
    ) -> Result<Plan> {
        let mut slot = None;
        Ok(self.executor(cloud, workload, &mut slot).plan(req).await?)
    }

    /// Begins a run (or resumes the unfinished run of the same action and profile,
    /// or the run `resume`) and drives it to its end, waiting as the cloud waits.
    ///
    /// # Errors
    /// The workload is busy, the plan cannot be made, the store or the cloud failed.
    /// A run that finished without success is an [`Outcome::Finished`], not an error.
    pub async fn run(
        &self,
        cloud: &Cloud,
        workload: &Workload,
        req: &RunRequest,
        resume: Option<&str>,
        watch: &mut dyn Watch,
    ) -> Result<Outcome> {
        let mut slot = None;
        let mut exec = self.executor(cloud, workload, &mut slot);
        let mut run = match self.begin(&mut exec, req, resume, watch).await? {
            Begin::NothingToDo(plan) => return Ok(Outcome::NothingToDo(plan)),
            Begin::Resumed(r) => {
                watch.note(&format!("resuming run {}", r.id));
                *r
            }
            Begin::Started(r) => *r,
        };
        watch.began(&run);
        drive(&mut exec, &mut run, cloud, watch).await?;
        Ok(Outcome::Finished(Box::new(run)))
    }

    /// Begins a run (or resumes the unfinished run of the same action and profile, or
    /// the run `resume`) without driving it: for drivers that advance it one tick at
    /// a time ([`App::advance`]).
    ///
    /// # Errors
    /// As [`App::run`].
    pub async fn begin_run(
        &self,
        cloud: &Cloud,
        workload: &Workload,
        req: &RunRequest,
        resume: Option<&str>,
        watch: &mut dyn Watch,
    ) -> Result<Begin> {
        let mut slot = None;
        let mut exec = self.executor(cloud, workload, &mut slot);
        let begun = self.begin(&mut exec, req, resume, watch).await?;
        cloud.save()?;
        Ok(begun)
    }

    /// Begins a run whose id the caller's idempotency `key` names ([`keyed_run_id`]),
    /// unless that run exists already: then it is [`Keyed::Repeated`], and nothing
    /// begins. The key holds in every process that shares the store, for as long as
    /// the run is kept.
    ///
    /// # Errors
    /// As [`App::begin_run`]; an empty or overlong key is invalid.
    pub async fn begin_run_keyed(
        &self,
        cloud: &Cloud,
        workload: &Workload,
        req: &RunRequest,
        key: &str,
    ) -> Result<Keyed> {
        let id = keyed_run_id(workload.name.as_str(), key)?;
        if self.store.load_run(&id).await?.is_some() {
            return Ok(Keyed::Repeated(id));
        }
        let mut slot = None;
        let mut exec = self.executor(cloud, workload, &mut slot);
        let begun = match self.begin_as(&mut exec, req, None, &id, &mut Quiet).await {
            // The same request, arrived twice at once: the first one holds the lock,
            // or saved the run first.
            Err(Error::Busy(lock)) if lock.run_id == id => return Ok(Keyed::Repeated(id)),
            Err(Error::Store(StoreError::Conflict(_))) => return Ok(Keyed::Repeated(id)),
            other => other?,
        };
        cloud.save()?;
        Ok(Keyed::Begun(begun))
    }

    /// Begins (or resumes) a run, taking over a lock left by a process of this host
    /// that no longer exists.
    async fn begin(
        &self,
        exec: &mut Executor<'_>,
        req: &RunRequest,
        resume: Option<&str>,
        watch: &mut dyn Watch,
    ) -> Result<Begin> {
        self.begin_as(exec, req, resume, &new_run_id(), watch).await
    }

    /// [`App::begin`], a new run taking the id `new_id`.
    async fn begin_as(
        &self,
        exec: &mut Executor<'_>,
        req: &RunRequest,
        resume: Option<&str>,
        new_id: &str,
        watch: &mut dyn Watch,
    ) -> Result<Begin> {
        let mut took_over = false;
        loop {
            let result = match resume {
                Some(id) => exec.resume(id).await.map(|r| Begin::Resumed(Box::new(r))),
                None => exec.begin(req, new_id).await,
            };
            match result {
                Err(EngineError::Busy(lock)) if !took_over && owner_is_dead(&lock.owner) => {
                    watch.note(&format!(
                        "note: taking over the lock of {} from {} (that process is gone)",
                        lock.workload, lock.owner
                    ));
                    self.store
                        .release(&lock.workload, &lock.owner, Some(&lock.run_id))
                        .await?;
                    took_over = true;
                }
                other => return Ok(other?),
            }
        }
    }

    /// Advances the run `run_id` by one tick and saves it: for drivers that wait
    /// between ticks themselves. Progress inside a step is not kept between calls: the
    /// step re-observes (its pause and deadlines hold: they count from when it
    /// began; a deregistration goes on draining the load balancers the store says its
    /// instances were taken out of).
    ///
    /// # Errors
    /// No such run, the workload is busy with another run, the store or the cloud
    /// failed.
    pub async fn advance(&self, cloud: &Cloud, workload: &Workload, run_id: &str) -> Result<Next> {
        let mut slot = None;
        let mut exec = self.executor(cloud, workload, &mut slot);
        let mut run = exec.resume(run_id).await?;
        let tick = exec.tick(&mut run).await?;
        if !run.status.is_finished() {
            exec.checkpoint(&mut run).await?;
        }
        cloud.save()?;
        Ok(match tick {
            Tick::Wait(d) => Next::Wait(d, Box::new(run)),
            Tick::Done => Next::Done(Box::new(run)),
        })
    }

    /// Cancels an unfinished run. The run is recorded as cancelled with
    /// compare-and-set (a driver saving at the same moment loses, re-reads, finds it
    /// cancelled and stops without another call), the workload's lock is released,
    /// and the answer waits out the act window ([`App::with_fence`]): once this
    /// returns, no EC2, load-balancer or SSM call of the run is made, and the
    /// workload is free for another run. What the run already did is not undone.
    ///
    /// # Errors
    /// No such run, or a run that is already finished (also when it finished while
    /// the cancel was being written).
    pub async fn cancel(&self, run_id: &str) -> Result<Run> {
        let run = self
            .update_run(run_id, |run| {
                if run.status.is_finished() {
                    return Err(Error::Conflict(format!(
                        "run {run_id} is already finished: {}",
                        run.status.as_str()
                    )));
                }
                let now = Utc::now();
                run.status = RunStatus::Cancelled;
                run.finished = Some(now);
                run.record(
                    now,
                    None,
                    RunEvent::Cancelled {
                        by: self.owner.clone(),
                    },
                );
                Ok(())
            })
            .await?;
        self.store
            .release(&run.workload, &run.owner, Some(&run.id))
            .await?;
        // A driver that confirmed its lock just before the release may still call
        // within its act window; answer after it.
        tokio::time::sleep(self.fence.cancel_settle).await;
        Ok(run)
    }

    /// Ends the run `run_id` from outside it, as `status` (failed), with `reason`, when
    /// it is unfinished: written with compare-and-set, then its lock is released, so
    /// that the workload's next event can begin a run. `None` when it had finished.
    ///
    /// # Errors
    /// No such run; the store's errors.
    pub async fn end_run(
        &self,
        run_id: &str,
        status: RunStatus,
        reason: &str,
    ) -> Result<Option<Run>> {
        let ended = self
            .update_run(run_id, |run| {
                if run.status.is_finished() {
                    return Err(Error::Conflict(format!("run {run_id} is finished")));
                }
                let now = Utc::now();
                run.status = status;
                run.finished = Some(now);
                run.error = Some(reason.to_string());
                run.record(
                    now,
                    None,
                    RunEvent::Ended {
                        status,
                        reason: reason.to_string(),
                    },
                );
                Ok(())
            })
            .await;
        let run = match ended {
            Ok(run) => run,
            Err(Error::Conflict(_)) => return Ok(None),
            Err(e) => return Err(e),
        };
        self.store
            .release(&run.workload, &run.owner, Some(&run.id))
            .await?;
        Ok(Some(run))
    }

    /// Records who asked for the run `run_id` (before anything else drives it).
    ///
    /// # Errors
    /// No such run; the store's errors.
    pub async fn attribute_run(&self, run_id: &str, by: &str) -> Result<Run> {
        self.update_run(run_id, |run| {
            run.requested_by = Some(by.to_string());
            Ok(())
        })
        .await
    }

    /// Reads the run, changes it with `change` and saves it with compare-and-set,
    /// reading again and retrying while another writer saves in between (up to
    /// [`UPDATE_TRIES`] times).
    async fn update_run(
        &self,
        run_id: &str,
        mut change: impl FnMut(&mut Run) -> Result<()>,
    ) -> Result<Run> {
        let mut tries = 0;
        loop {
            let mut run = self.run_record(run_id).await?;
            change(&mut run)?;
            match self.store.save_run(&mut run).await {
                Ok(()) => return Ok(run),
                Err(StoreError::Conflict(_)) if tries + 1 < UPDATE_TRIES => tries += 1,
                Err(e) => return Err(e.into()),
            }
        }
    }

    /// The unfinished run of `workload`, if any.
    ///
    /// # Errors
    /// The store's.
    pub async fn unfinished_run(&self, workload: &str) -> Result<Option<Run>> {
        Ok(self.store.unfinished_run(workload).await?)
    }

    /// The runs, newest first; only `workload`'s when given.
    pub async fn runs(&self, workload: Option<&str>) -> Result<Vec<RunSummaryRow>> {
        Ok(self.store.list_runs(workload).await?)
    }

    /// One run, with its events.
    ///
    /// # Errors
    /// [`Error::NotFound`] when the store has no such run.
    pub async fn run_record(&self, id: &str) -> Result<Run> {
        self.store
            .load_run(id)
            .await?
            .ok_or_else(|| Error::NotFound(format!("no run {id} in the store")))
    }
}

/// Drives a run to its end: tick, show, wait as the cloud waits (virtual time on the
/// simulator), and save the cloud at the end. The one foreground loop, for the
/// command line and the service.
///
/// # Errors
/// As [`Executor::tick`], and a fleet file that cannot be saved.
pub async fn drive(
    exec: &mut Executor<'_>,
    run: &mut Run,
    cloud: &Cloud,
    watch: &mut dyn Watch,
) -> Result<()> {
    loop {
        let tick = exec.tick(run).await?;
        watch.progress(run, cloud.now());
        match tick {
            Tick::Done => break,
            Tick::Wait(d) => cloud.wait(d).await,
        }
    }
    watch.finished();
    cloud.save()
}
