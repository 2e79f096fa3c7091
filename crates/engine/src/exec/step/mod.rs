//! The executor's steps, one module per kind. A step is created from the plan's
//! [`Step`] when a tier reaches it, owns its own progress, and is polled until it is
//! done; progress is not saved (a resumed step starts over and re-observes).
//!
//! - [`power`]: start, stop and hibernate, batched and paced, failing instances
//!   isolated.
//! - [`resize`]: instance type changes, verified.
//! - [`probe`]: the override-file check over SSM.
//! - [`lb`]: load-balancer deregistration (with draining) and registration.
//! - [`gate`]: readiness gates (status checks, load-balancer health).
//! - [`wait`]: waiting for a state, and pauses.

mod gate;
mod lb;
mod power;
mod probe;
mod resize;
mod wait;

/// Early starts ([`Power::early`]) and type changes ahead of a tier's stage
/// ([`Resize::ahead`]), which the executor drives besides the tiers' own steps.
pub(crate) use power::Power;
pub(crate) use resize::Resize;

use std::collections::{BTreeMap, VecDeque};
use std::time::Duration;

use chrono::{DateTime, Utc};
use ec2_scheduler_core::fleet::membership;
use ec2_scheduler_core::model::{Tier, Workload};
use ec2_scheduler_core::plan::{PauseReason, Step};
use ec2_scheduler_core::{Action, Instance};

use super::policy::{self, Decision, Tries};
use super::{Buckets, Held, Ports, Result, Settings, after, dur};
use crate::EngineError;
use crate::ports::{ApiError, ErrorKind, Lock};
use crate::run::{Failure, Kept, Run, RunEvent};
use crate::share::{self, Grant, Want};

/// What a poll of a step answers.
pub(crate) enum Poll {
    Done,
    Wait(Duration),
}

/// What a step works with: the ports, the settings, the workload, the pacing buckets,
/// the run it records into and the tier it belongs to.
pub(crate) struct Cx<'x, 'a> {
    pub ports: Ports<'a>,
    pub settings: &'x Settings,
    pub workload: &'x Workload,
    pub buckets: &'x mut Buckets,
    pub held: &'x mut Held,
    /// The type changes this executor made, by tier, in the order it made them.
    pub resized: &'x mut BTreeMap<String, VecDeque<(DateTime<Utc>, String)>>,
    /// The account whose buckets the run paces on through the store, when its
    /// driver shares pacing that way ([`crate::share`]).
    pub pace_account: Option<&'x str>,
    pub run: &'x mut Run,
    pub tier: &'x str,
}

/// What an observation gave.
pub(crate) enum Seen {
    Now(BTreeMap<String, Instance>),
    /// Try again after this long (the describe bucket is empty, or the call failed and
    /// will be retried).
    Later(Duration),
    /// The call kept failing: the policy gave up.
    GaveUp(ApiError),
}

impl Cx<'_, '_> {
    /// Confirms, before a call to the cloud, that the run still holds its workload's
    /// lock, unless a confirmation began within `Settings::act_window`: by renewing
    /// the lease when a third of it has passed, else by asking the store (a read
    /// where the store has them; see [`Held`]).
    ///
    /// # Errors
    /// [`EngineError::LockLost`] when it does not (the run was cancelled, or another
    /// run took over after the lease expired); the store's error when it cannot say.
    pub async fn hold(&mut self) -> Result<()> {
        let now = self.ports.lease_clock.now();
        if self
            .held
            .confirmed
            .is_some_and(|c| c <= now && dur(now - c) < self.settings.act_window)
        {
            return Ok(());
        }
        let lock = Lock {
            workload: self.workload.name.to_string(),
            owner: self.settings.owner.clone(),
            run_id: self.run.id.clone(),
            expires: after(now, self.settings.lease),
        };
        let due = self
            .held
            .at
            .is_none_or(|at| dur(now - at) >= self.settings.lease / 3);
        let held = if due {
            self.ports.store.renew(&lock).await?
        } else {
            self.ports.store.holds(&lock).await?
        };
        if !held {
            return Err(EngineError::LockLost(self.run.workload.clone()));
        }
        if due {
            self.held.at = Some(now);
        }
        self.held.confirmed = Some(now);
        Ok(())
    }

    pub fn now(&self) -> DateTime<Utc> {
        self.ports.clock.now()
    }

    pub fn fail(&mut self, id: &str, reason: String) {
        let now = self.now();
        fail(self.run, id, self.tier, reason, now);
    }

    pub fn keep(&mut self, id: &str, reason: String) {
        let now = self.now();
        keep(self.run, id, self.tier, reason, now);
    }

    pub fn record(&mut self, event: RunEvent) {
        let now = self.now();
        self.run.record(now, Some(self.tier), event);
    }

    /// The step's instances that are neither kept nor failed.
    pub fn live(&self, ids: &[String]) -> Vec<String> {
        ids.iter()
            .filter(|i| !self.run.kept.contains_key(*i) && !self.run.failed.contains_key(*i))
            .cloned()
            .collect()
    }

    pub fn spec(&self) -> Option<&Tier> {
        self.workload.tier(self.tier)
    }

    pub fn is_member(&self, i: &Instance) -> bool {
        membership(self.workload, i) == Ok(self.tier)
    }

    /// How long to wait before looking again, not past `deadline`.
    pub fn poll_until(&self, deadline: DateTime<Utc>) -> Duration {
        self.settings.poll.min(dur(deadline - self.now()))
    }

    /// The policy's answer to a failed call; counts a retry when the call (or part of
    /// it) will be made again.
    pub fn decide(&mut self, e: &ApiError, failures: u32, batch: usize, tries: Tries) -> Decision {
        let now = self.now();
        let d = policy::decide(
            self.settings,
            &mut self.run.jitter,
            e,
            failures,
            batch,
            tries.deadline,
            now,
        );
        if d != Decision::GiveUp {
            self.run.retried += 1;
        }
        tracing::debug!(error = %e, failures, batch, decision = ?d, "call failed");
        d
    }

    /// Takes the tokens of one call: of each bucket `wants` names (`(name, min,
    /// max)`, named as [`Limits::named`](crate::pace::Limits::named) names them), at
    /// least `min`, and up to `max` of what the bucket holds (a batch takes what is
    /// there). Answers what was taken of each, in the order asked, or how long to
    /// wait before asking again. Paced on the executor's buckets, or, when the
    /// driver paces through the store, booked on the account's buckets there (the
    /// booking kept with the run; the run waits its turn).
    pub async fn draw(
        &mut self,
        wants: &[(&'static str, f64, f64)],
    ) -> std::result::Result<Vec<f64>, Duration> {
        if let Some(account) = self.pace_account {
            match self.draw_booked(account, wants).await {
                Ok(drawn) => return drawn,
                // Pacing is not safety: the run goes on, paced as if alone.
                Err(e) => tracing::warn!(
                    account,
                    error = %e,
                    "could not book the call's pacing in the store; pacing on this executor's buckets"
                ),
            }
        }
        let now = self.now();
        let mut wait = Duration::ZERO;
        for (name, min, _) in wants {
            if let Some(b) = self.buckets.named(name) {
                wait = wait.max(b.wait_for(*min, now));
            }
        }
        if !wait.is_zero() {
            return Err(wait);
        }
        let mut out = Vec::with_capacity(wants.len());
        for (name, min, max) in wants {
            let n = match self.buckets.named(name) {
                Some(b) => {
                    let n = b.available(now).floor().min(*max).max(*min);
                    b.take(n, now)?;
                    n
                }
                None => *max,
            };
            out.push(n);
        }
        Ok(out)
    }

    /// [`Cx::draw`] on the account's buckets as the store keeps them: tokens the run
    /// booked are used once their time has come; what is short is booked.
    async fn draw_booked(
        &mut self,
        account: &str,
        wants: &[(&'static str, f64, f64)],
    ) -> crate::ports::StoreResult<std::result::Result<Vec<f64>, Duration>> {
        let now = self.now();
        let not_yet = wants
            .iter()
            .filter_map(|(name, ..)| self.run.pace_grants.get(*name).map(|g| g.at))
            .filter(|at| *at > now)
            .max();
        if let Some(at) = not_yet {
            return Ok(Err(dur(at - now)));
        }
        let limits = self.settings.limits.named();
        let short: Vec<Want> = wants
            .iter()
            .filter_map(|(name, min, max)| {
                let have = self.run.pace_grants.get(*name).map_or(0.0, |g| g.tokens);
                let spec = limits.iter().find(|(n, _)| n == name)?.1;
                (have < *min).then_some(Want {
                    bucket: name,
                    spec,
                    min: min - have,
                    max: (max - have).max(min - have),
                })
            })
            .collect();
        if !short.is_empty() {
            let mut booked = (Vec::new(), now);
            share::update(self.ports.store, account, |s| {
                booked = s.reserve(&short, now);
            })
            .await?;
            let (got, at) = booked;
            for (w, n) in short.iter().zip(got) {
                let g = self
                    .run
                    .pace_grants
                    .entry(w.bucket.to_string())
                    .or_insert(Grant { tokens: 0.0, at });
                g.tokens += n;
                g.at = g.at.max(at);
            }
            if at > now {
                return Ok(Err(dur(at - now)));
            }
        }
        let mut out = Vec::with_capacity(wants.len());
        for (name, _, max) in wants {
            let n = match self.run.pace_grants.get_mut(*name) {
                Some(g) => {
                    let n = g.tokens.min(*max);
                    g.tokens -= n;
                    if g.tokens < 1e-9 {
                        self.run.pace_grants.remove(*name);
                    }
                    n
                }
                // A bucket the limits do not name is not paced.
                None => *max,
            };
            out.push(n);
        }
        Ok(Ok(out))
    }

    /// Counts one more failure in a row of the tier's `call` (a call that the policy
    /// may make again), kept with the run ([`Run::failing_calls`]): a driver that
    /// makes a new executor each tick (serve, the run step) forgets what the step
    /// counted, and would otherwise retry a call that always fails forever. Answers
    /// the failures in a row, at least `counted` (what the step counted itself).
    pub fn failed_again(&mut self, call: &str, counted: u32) -> u32 {
        let n = self
            .run
            .failing_calls
            .entry(failing_key(self.tier, call))
            .or_default();
        *n = n.saturating_add(1);
        counted.max(*n)
    }

    /// The failures in a row of the tier's `call` after `e`, at least `counted`: a
    /// retryable error counts with the run ([`Cx::failed_again`]); any other is
    /// not made again, so the step's own count is enough.
    pub fn failures_after(&mut self, call: &str, e: &ApiError, counted: u32) -> u32 {
        if e.retryable() {
            self.failed_again(call, counted)
        } else {
            counted
        }
    }

    /// The tier's `call` went through, or the policy gave up on it: the count of its
    /// failures in a row starts again.
    pub fn call_settled(&mut self, call: &str) {
        if !self.run.failing_calls.is_empty() {
            self.run.failing_calls.remove(&failing_key(self.tier, call));
        }
    }

    /// Describes instances by id in pages of 1,000, paced, retried by the policy.
    ///
    /// # Errors
    /// A final error (e.g. access denied): the run cannot go on without seeing.
    pub async fn observe(&mut self, ids: &[String], tries: &mut Tries) -> Result<Seen> {
        let mut out = BTreeMap::new();
        for chunk in ids.chunks(1000) {
            if let Err(w) = self.draw(&[("describe", 1.0, 1.0)]).await {
                return Ok(Seen::Later(w));
            }
            self.hold().await?;
            let result = self.ports.compute.describe_ids(chunk).await;
            let throttled = matches!(&result, Err(e) if e.kind == ErrorKind::Throttled);
            let now = self.now();
            self.buckets.describe.answered(throttled, now);
            match result {
                Ok(v) => out.extend(v.into_iter().map(|i| (i.id.clone(), i))),
                Err(e) if e.retryable() => {
                    tries.failures = self.failed_again(calls::DESCRIBE, tries.failures + 1);
                    return Ok(match self.decide(&e, tries.failures, 1, *tries) {
                        Decision::Retry(w) | Decision::Recheck(w) => Seen::Later(w),
                        Decision::Isolate | Decision::GiveUp => {
                            self.call_settled(calls::DESCRIBE);
                            Seen::GaveUp(e)
                        }
                    });
                }
                Err(e) => return Err(e.into()),
            }
        }
        tries.failures = 0;
        self.call_settled(calls::DESCRIBE);
        Ok(Seen::Now(out))
    }

    /// Records that the instances could not be observed: they fail, or (when acting
    /// on them unseen would be unsafe, as for a stop) are kept.
    pub fn unseen(&mut self, ids: &[String], e: &ApiError, keep_them: bool) {
        for id in ids {
            let why = format!("could not be observed: {}", api_name(e));
            if keep_them {
                self.keep(id, format!("{why}; kept running to be safe"));
            } else {
                self.fail(id, why);
            }
        }
    }
}

/// The calls whose failures in a row are counted with the run, by tier.
pub(crate) mod calls {
    pub const POWER: &str = "power";
    pub const DESCRIBE: &str = "describe";
    pub const MODIFY: &str = "modify";
    pub const FIND_LB: &str = "find-load-balancers";
    pub const DEREGISTER: &str = "deregister";
    pub const REGISTER: &str = "register";
}

/// The key of [`Run::failing_calls`]: the tier, and the call.
fn failing_key(tier: &str, call: &str) -> String {
    format!("{tier}/{call}")
}

pub(crate) fn api_name(a: &ApiError) -> String {
    format!("{} ({})", a.code, a.message)
}

pub(crate) fn fail(run: &mut Run, id: &str, tier: &str, reason: String, now: DateTime<Utc>) {
    run.record(
        now,
        Some(tier),
        RunEvent::Failed {
            instance: id.to_string(),
            reason: reason.clone(),
        },
    );
    run.failed.insert(
        id.to_string(),
        Failure {
            tier: tier.to_string(),
            reason,
        },
    );
}

pub(crate) fn keep(run: &mut Run, id: &str, tier: &str, reason: String, now: DateTime<Utc>) {
    if run.kept.contains_key(id) {
        return;
    }
    run.record(
        now,
        Some(tier),
        RunEvent::Kept {
            instance: id.to_string(),
            reason: reason.clone(),
        },
    );
    run.kept.insert(
        id.to_string(),
        Kept {
            tier: tier.to_string(),
            reason,
        },
    );
}

/// When a step began (its deadlines count from then), and whether this is its first
/// beginning (not a pick-up by another executor).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Began {
    pub at: DateTime<Utc>,
    pub first: bool,
}

/// The step in progress of one tier.
pub(crate) enum Active {
    Pause(wait::Pause),
    Power(power::Power),
    Wait(wait::WaitUntil),
    Resize(resize::Resize),
    Probe(probe::Probe),
    Deregister(lb::Deregister),
    Register(lb::Register),
    Ready(gate::Ready),
}

impl Active {
    /// Begins `step`.
    pub fn new(step: &Step, cx: &mut Cx<'_, '_>, began: Began) -> Self {
        let at = began.at;
        match step {
            Step::Pause { seconds, why } => {
                // After type changes made ahead of the stage, the pause counts from
                // when they were made.
                let began = match (why, cx.run.resized_ahead.get(cx.tier)) {
                    (PauseReason::AfterResize, Some(t)) => Began {
                        at: (*t).min(began.at),
                        ..began
                    },
                    _ => began,
                };
                Active::Pause(wait::Pause::new(*seconds, *why, cx, began))
            }
            Step::Stop { instances } => {
                Active::Power(power::Power::new(Action::Stop, instances, cx, at))
            }
            Step::Start { instances } => {
                Active::Power(power::Power::new(Action::Start, instances, cx, at))
            }
            Step::WaitUntil { state, instances } => {
                Active::Wait(wait::WaitUntil::new(*state, instances, cx, at))
            }
            Step::Resize { changes } => Active::Resize(resize::Resize::new(changes, cx, at)),
            Step::ProbeOverride {
                path,
                os,
                instances,
            } => Active::Probe(probe::Probe::new(path, *os, instances, cx, at)),
            Step::Deregister { instances } => {
                Active::Deregister(lb::Deregister::new(instances, cx, began))
            }
            Step::Register { instances } => Active::Register(lb::Register::new(instances, cx, at)),
            Step::Ready {
                gate,
                timeout_secs,
                instances,
            } => Active::Ready(gate::Ready::new(
                *gate,
                Duration::from_secs(*timeout_secs),
                instances,
                at,
            )),
        }
    }

    /// Does what can be done now.
    pub async fn poll(&mut self, cx: &mut Cx<'_, '_>) -> Result<Poll> {
        match self {
            Active::Pause(s) => Ok(s.poll(cx)),
            Active::Power(s) => s.poll(cx).await,
            Active::Wait(s) => s.poll(cx).await,
            Active::Resize(s) => s.poll(cx).await,
            Active::Probe(s) => s.poll(cx).await,
            Active::Deregister(s) => s.poll(cx).await,
            Active::Register(s) => s.poll(cx).await,
            Active::Ready(s) => s.poll(cx).await,
        }
    }
}
