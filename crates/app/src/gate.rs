//! The event gate: whether one scheduled event fires when its instant comes, decided
//! by the rules `serve` follows (skip dates and overrides, a grace period for late
//! events, the kill switch, a run still going, one firing per event), for drivers
//! that are woken at the instant by something else (EventBridge Scheduler).

use chrono::{DateTime, Utc};
use ec2_scheduler_core::schedule::{EventKind, Timetable};
use ec2_scheduler_engine::ports::{EventOutcome, EventRecord};
use serde::Serialize;

use crate::env::App;
use crate::error::Result;
use crate::runs::keyed_run_id;

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
}

/// Why an event is skipped: the workload's kill switch is on.
pub(crate) fn disabled() -> String {
    "the workload is disabled (kill switch)".to_string()
}

/// Why an event is skipped: another run of the workload is unfinished.
pub(crate) fn busy(run_id: &str, owner: &str) -> String {
    format!("the workload is busy with run {run_id} of {owner}")
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
    /// - the kill switch, or an unfinished run of the workload, skips it;
    /// - it fires once: the first caller claims it in the store, later ones are told
    ///   it was claimed.
    ///
    /// Every outcome but a vanished event is recorded as `serve` records it
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
            owner: self.owner.clone(),
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
        };
        let Some(event) = event else {
            gate.reason = Some(format!(
                "the schedules no longer have a {kind} at {}",
                at.to_rfc3339()
            ));
            return Ok(gate);
        };
        let late = now - at;
        let skip = if let Some(why) = &event.skipped {
            Some((EventOutcome::Skipped, why.to_string()))
        } else if late > chrono::Duration::from_std(grace).unwrap_or(chrono::Duration::MAX) {
            Some((EventOutcome::Missed, missed(late, grace)))
        } else if w.disabled {
            Some((EventOutcome::Skipped, disabled()))
        } else {
            self.unfinished_run(workload)
                .await?
                .map(|r| (EventOutcome::Skipped, busy(&r.id, &r.owner)))
        };
        if let Some((outcome, why)) = skip {
            record.outcome = outcome;
            record.detail = Some(why.clone());
            if !self.store.claim_event(&record).await? {
                gate.reason = Some("the event was claimed before".into());
                return Ok(gate);
            }
            gate.reason = Some(why);
            return Ok(gate);
        }
        if !self.store.claim_event(&record).await? {
            gate.reason = Some("the event was claimed before: it fires once".into());
            return Ok(gate);
        }
        let run_id = keyed_run_id(workload, &key)?;
        record.outcome = EventOutcome::Fired;
        record.run_id = Some(run_id.clone());
        self.store.update_event(&record).await?;
        gate.fire = true;
        gate.run_id = Some(run_id);
        Ok(gate)
    }
}

impl App {
    /// Records that the run of `workload`'s `kind` event at `at` failed outside the
    /// run itself (its driver gave up: a Lambda error the retries did not cure), with
    /// `detail`, so that `schedule history` shows it.
    ///
    /// # Errors
    /// The store's.
    pub async fn event_failed(
        &self,
        workload: &str,
        kind: EventKind,
        at: DateTime<Utc>,
        detail: &str,
        now: DateTime<Utc>,
    ) -> Result<()> {
        let record = EventRecord {
            workload: workload.to_string(),
            action: kind.as_str().to_string(),
            at,
            profile: None,
            outcome: EventOutcome::Failed,
            owner: self.owner.clone(),
            recorded_at: now,
            run_id: None,
            detail: Some(detail.chars().take(2000).collect()),
        };
        if !self.store.claim_event(&record).await? {
            self.store.update_event(&record).await?;
        }
        Ok(())
    }
}
