//! The event gate: whether one scheduled event fires when its instant comes, decided
//! by the rules `serve` follows (skip dates and overrides, a grace period for late
//! events, the kill switch, a run still going, one firing per event), for drivers
//! that are woken at the instant by something else (EventBridge Scheduler).

use chrono::{DateTime, Utc};
use ec2_scheduler_core::schedule::{EventKind, Timetable};
use ec2_scheduler_engine::ports::{EventOutcome, EventRecord};
use ec2_scheduler_engine::{Run, RunStatus};
use serde::Serialize;

use crate::env::App;
use crate::error::Result;
use crate::runs::keyed_run_id;

/// How early an event may be delivered and still fire (clocks differ a little).
pub const EARLY: std::time::Duration = std::time::Duration::from_secs(2);

/// How long an unfinished run's lock may have been free or expired before the gate
/// takes the run for one whose driver stopped (a state machine execution that timed
/// out or was stopped by hand, a process that died) and ends it, so that a new event
/// fires. A driven run renews its lease (120 s) every 40 s.
pub const STALE: std::time::Duration = std::time::Duration::from_secs(300);

/// What the gate decided.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Gate {
    pub fire: bool,
    pub workload: String,
    /// `start` or `stop`.
    pub action: String,
    pub at: DateTime<Utc>,
    /// The profile of a start.
    pub profile: Option<String>,
    /// The idempotency key of the run it begins (the event's own key), so that the
    /// run is begun once however often its begin is retried.
    pub key: String,
    /// The id that run has ([`keyed_run_id`]).
    pub run_id: Option<String>,
    /// Why it does not fire.
    pub reason: Option<String>,
    /// It could not fire and someone should hear of it: it was missed, delivered
    /// early, or its workload was busy (a skip date, an override or the kill switch
    /// is not alerted).
    pub alert: bool,
}

/// Why an event is skipped: the workload's kill switch is on.
pub(crate) fn disabled() -> String {
    "the workload is disabled (kill switch)".to_string()
}

/// Why an event is skipped: another run of the workload is unfinished.
pub(crate) fn busy(run_id: &str, owner: &str) -> String {
    format!("the workload is busy with run {run_id} of {owner}")
}

/// Whether a recorded reason is [`busy`]'s.
fn is_busy(reason: &str) -> bool {
    reason.starts_with("the workload is busy")
}

/// Why an event did not fire: it came more than `grace` late.
pub(crate) fn missed(late: chrono::Duration, grace: std::time::Duration) -> String {
    format!(
        "{} min late, more than the grace period ({} min)",
        late.num_minutes(),
        grace.as_secs() / 60
    )
}

impl App {
    /// Decides whether `workload`'s `kind` event at `at` fires, at `now`:
    ///
    /// - the schedules (and overrides) as they are now must still have that event;
    /// - a skip date or an override that keeps it from firing skips it;
    /// - more than `grace` late, it is missed;
    /// - delivered more than [`EARLY`] before its instant, it does not fire (and is not
    ///   claimed: its own delivery can still fire it);
    /// - the kill switch, or an unfinished run of the workload, skips it; a run whose
    ///   lock has been free or expired for [`STALE`] is nobody's any more: it is ended
    ///   (failed, with the reason) and the event fires;
    /// - it fires once: the first caller claims it in the store, later ones are told
    ///   it was claimed. The same `claimant` (a state machine execution, whose gate
    ///   step may be retried after it claimed) is given the same answer again.
    ///
    /// Every outcome but a vanished or early event is recorded as `serve` records it
    /// (`schedule history` shows it).
    ///
    /// # Errors
    /// No such workload; the store's errors.
    pub async fn gate_event(
        &self,
        workload: &str,
        kind: EventKind,
        at: DateTime<Utc>,
        now: DateTime<Utc>,
        grace: std::time::Duration,
        claimant: Option<&str>,
    ) -> Result<Gate> {
        let w = self.stored_workload(workload).await?;
        let overrides = self.store.overrides(Some(workload)).await?;
        let event = Timetable::new(&w.schedules)
            .with_overrides(&overrides)
            .events(at - chrono::Duration::seconds(1), at)
            .into_iter()
            .find(|e| e.at == at && e.kind == kind);
        let mut record = EventRecord {
            workload: workload.to_string(),
            action: kind.as_str().to_string(),
            at,
            profile: event.as_ref().and_then(|e| e.profile.clone()),
            outcome: EventOutcome::Claimed,
            owner: claimant.map_or_else(|| self.owner.clone(), str::to_string),
            recorded_at: now,
            run_id: None,
            detail: None,
        };
        let key = record.key();
        let mut gate = Gate {
            fire: false,
            workload: workload.to_string(),
            action: kind.as_str().to_string(),
            at,
            profile: record.profile.clone(),
            key: key.clone(),
            run_id: None,
            reason: None,
            alert: false,
        };
        let Some(event) = event else {
            gate.reason = Some(format!(
                "the schedules no longer have a {kind} at {}",
                at.to_rfc3339()
            ));
            return Ok(gate);
        };
        let early = at - now;
        if early > chrono::Duration::from_std(EARLY).unwrap_or(chrono::Duration::MAX) {
            gate.reason = Some(format!(
                "delivered {} s before its instant; it fires at its instant",
                early.num_seconds()
            ));
            gate.alert = true;
            return Ok(gate);
        }
        let run_id = keyed_run_id(workload, &key)?;
        if let Some(again) = self
            .claimed_by(&record, claimant, &run_id, &mut gate)
            .await?
        {
            return Ok(again);
        }
        let late = now - at;
        let mut ended = None;
        let skip = if let Some(why) = &event.skipped {
            Some((EventOutcome::Skipped, why.to_string()))
        } else if late > chrono::Duration::from_std(grace).unwrap_or(chrono::Duration::MAX) {
            Some((EventOutcome::Missed, missed(late, grace)))
        } else if w.disabled {
            Some((EventOutcome::Skipped, disabled()))
        } else {
            match self.unfinished_run(workload).await? {
                None => None,
                Some(r) => match self.stale_run(&r).await? {
                    Some(why) => {
                        ended = self.end_run(&r.id, RunStatus::Failed, &why).await?;
                        None
                    }
                    None => Some((EventOutcome::Skipped, busy(&r.id, &r.owner))),
                },
            }
        };
        if let Some((outcome, why)) = skip {
            gate.alert = outcome == EventOutcome::Missed || is_busy(&why);
            record.outcome = outcome;
            record.detail = Some(why.clone());
            if !self.store.claim_event(&record).await? {
                gate.reason = Some("the event was claimed before".into());
                gate.alert = false;
                return Ok(gate);
            }
            gate.reason = Some(why);
            return Ok(gate);
        }
        if !self.store.claim_event(&record).await? {
            gate.reason = Some("the event was claimed before: it fires once".into());
            return Ok(gate);
        }
        record.outcome = EventOutcome::Fired;
        record.run_id = Some(run_id.clone());
        record.detail = ended.map(|r| {
            format!(
                "run {} was ended first: {}",
                r.id,
                r.error.unwrap_or_default()
            )
        });
        self.store.update_event(&record).await?;
        gate.fire = true;
        gate.run_id = Some(run_id);
        Ok(gate)
    }

    /// The answer given before to the same `claimant`, when the event's record names
    /// it: a retried gate step fires (or skips) as the first try did.
    async fn claimed_by(
        &self,
        record: &EventRecord,
        claimant: Option<&str>,
        run_id: &str,
        gate: &mut Gate,
    ) -> Result<Option<Gate>> {
        let Some(claimant) = claimant else {
            return Ok(None);
        };
        let Some(before) = self
            .store
            .event_record(&record.workload, &record.action, record.at)
            .await?
        else {
            return Ok(None);
        };
        if before.owner != claimant {
            return Ok(None);
        }
        let mut again = gate.clone();
        match before.outcome {
            EventOutcome::Fired | EventOutcome::Claimed => {
                if before.outcome == EventOutcome::Claimed {
                    self.store
                        .update_event(&EventRecord {
                            outcome: EventOutcome::Fired,
                            run_id: Some(run_id.to_string()),
                            ..before.clone()
                        })
                        .await?;
                }
                again.fire = true;
                again.run_id = Some(run_id.to_string());
            }
            EventOutcome::Skipped | EventOutcome::Missed | EventOutcome::Failed => {
                again.reason = before.detail.clone();
                again.alert = before.outcome != EventOutcome::Skipped
                    || before.detail.as_deref().is_some_and(is_busy);
            }
        }
        Ok(Some(again))
    }

    /// Why `run` is nobody's any more: its lock expired longer than [`STALE`] ago (in
    /// wall time, as leases are), or no lock names it (every driver holds the lock
    /// while it acts, and one that lost it stops).
    async fn stale_run(&self, run: &Run) -> Result<Option<String>> {
        let stale = chrono::Duration::from_std(STALE).unwrap_or(chrono::Duration::MAX);
        Ok(match self.store.lock_of(&run.workload).await? {
            Some(l) if l.run_id == run.id => (Utc::now() - l.expires > stale).then(|| {
                format!(
                    "its driver stopped: its lock expired at {}",
                    l.expires.to_rfc3339()
                )
            }),
            _ => Some("its driver stopped: no lock names it".to_string()),
        })
    }
}

/// What [`App::event_failed`] did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Failed {
    /// The run of the event, when one is known.
    pub run_id: Option<String>,
    /// Whether that run was unfinished and is now ended (failed).
    pub ended: bool,
}

impl App {
    /// What a driver that gave up on a run records (a Lambda error or timeout the
    /// retries did not cure): the run `run_id`, when given and unfinished, is ended
    /// failed with `detail` and its lock released, so that the workload's next event
    /// fires; the event (`kind` at `at`, when the run came from one) is recorded
    /// failed, so that `schedule history` shows it.
    ///
    /// # Errors
    /// The store's.
    pub async fn event_failed(
        &self,
        workload: &str,
        event: Option<(EventKind, DateTime<Utc>)>,
        run_id: Option<&str>,
        detail: &str,
        now: DateTime<Utc>,
    ) -> Result<Failed> {
        let detail: String = detail.chars().take(2000).collect();
        let mut ended = false;
        if let Some(id) = run_id {
            match self.end_run(id, RunStatus::Failed, &detail).await {
                Ok(r) => ended = r.is_some(),
                // The run was never saved (its first step failed before it began).
                Err(crate::error::Error::NotFound(_)) => {}
                Err(e) => return Err(e),
            }
        }
        if let Some((kind, at)) = event {
            let record = EventRecord {
                workload: workload.to_string(),
                action: kind.as_str().to_string(),
                at,
                profile: None,
                outcome: EventOutcome::Failed,
                owner: self.owner.clone(),
                recorded_at: now,
                run_id: run_id.map(str::to_string),
                detail: Some(detail),
            };
            if !self.store.claim_event(&record).await? {
                self.store.update_event(&record).await?;
            }
        }
        Ok(Failed {
            run_id: run_id.map(str::to_string),
            ended,
        })
    }
}
