//! A run: one execution of a plan, with everything needed to resume it and to tell
//! afterwards what happened. Saved as a checkpoint after every step.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use ec2_scheduler_core::Action;
use ec2_scheduler_core::plan::{PauseReason, Plan, ScaleIn, Stage};
use serde::{Deserialize, Serialize};

use crate::pace::Jitter;

/// Where a run stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum RunStatus {
    /// In progress (or interrupted: resumable).
    Running,
    /// Every step done, nothing failed.
    Succeeded,
    /// Done; some instances failed and the policy was `continue`.
    CompletedWithFailures,
    /// Stopped at a failed tier (policy `abort`), or could not go on.
    Failed,
    /// A tier failed and what the run had done was undone (policy `rollback`).
    RolledBack,
    /// Replaced by a newer run of another action before it finished.
    Abandoned,
    /// Cancelled by a user before it finished.
    Cancelled,
}

impl RunStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            RunStatus::Running => "running",
            RunStatus::Succeeded => "succeeded",
            RunStatus::CompletedWithFailures => "completed-with-failures",
            RunStatus::Failed => "failed",
            RunStatus::RolledBack => "rolled-back",
            RunStatus::Abandoned => "abandoned",
            RunStatus::Cancelled => "cancelled",
        }
    }

    pub fn is_finished(self) -> bool {
        self != RunStatus::Running
    }
}

/// Which list of stages the cursor walks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Phase {
    /// The plan's stages.
    Forward,
    /// Undoing, after a failure under policy `rollback`.
    Rollback,
    /// After the last stage of a start: confirming that started instances did not
    /// fall back to stopped (a silent start failure).
    Verify,
}

/// The position of a run: stage, and step index per tier of that stage.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Cursor {
    pub phase: Phase,
    pub stage: usize,
    pub steps: BTreeMap<String, usize>,
    /// When each tier's current step began: its pause and deadlines count from then,
    /// so a step picked up by another process (or by a driver that advances the run
    /// one tick at a time) neither waits again nor gets more time.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub began: BTreeMap<String, DateTime<Utc>>,
    /// When the check that ends a start began.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub verify_began: Option<DateTime<Utc>>,
}

/// One line of a run's history: a typed event, and its text.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    pub at: DateTime<Utc>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tier: Option<String>,
    /// The event as text ([`RunEvent`]'s `Display`); the only field of entries
    /// recorded before events were typed.
    pub what: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub event: Option<RunEvent>,
}

impl Entry {
    /// The text for people: rendered from the typed event when there is one.
    pub fn text(&self) -> String {
        self.event
            .as_ref()
            .map_or_else(|| self.what.clone(), ToString::to_string)
    }
}

/// What happened in a run, as the history records it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum RunEvent {
    Started {
        action: Action,
    },
    Resumed,
    Abandoned {
        for_action: Action,
    },
    Cancelled {
        by: String,
    },
    /// Ended by something other than its driver (its driver gave up or stopped).
    Ended {
        status: RunStatus,
        reason: String,
    },
    /// A step of the tier is done.
    StepDone {
        step: String,
    },
    /// The tier's type changes were all made ahead of its stage.
    ResizedAhead {
        instances: usize,
    },
    /// A call was made for this many instances (`ec2:StopInstances`).
    Called {
        action: String,
        instances: usize,
    },
    NoHibernation {
        instance: String,
        code: String,
    },
    Pausing {
        seconds: u64,
        why: PauseReason,
    },
    Deregistered {
        target: String,
        instances: usize,
    },
    DeregistrationFailed {
        target: String,
        error: String,
    },
    DrainingNotFinished {
        seconds: u64,
    },
    Registered {
        target: String,
        instances: usize,
    },
    Failed {
        instance: String,
        reason: String,
    },
    Kept {
        instance: String,
        reason: String,
    },
    /// The started instances could not be checked at the end of a start.
    NotChecked {
        error: String,
    },
    RollingBack,
    NotificationFailed {
        error: String,
    },
    Finished {
        status: RunStatus,
    },
}

impl std::fmt::Display for RunEvent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RunEvent::Started { action } => write!(f, "{action} run started"),
            RunEvent::Resumed => f.write_str("resumed"),
            RunEvent::Abandoned { for_action } => write!(f, "abandoned for a {for_action} run"),
            RunEvent::Cancelled { by } => write!(f, "cancelled by {by}"),
            RunEvent::Ended { status, reason } => {
                write!(f, "ended {}: {reason}", status.as_str())
            }
            RunEvent::StepDone { step } => write!(f, "{step} done"),
            RunEvent::ResizedAhead { instances } => {
                write!(f, "{instances} type changes made ahead of its stage")
            }
            RunEvent::Called { action, instances } => write!(f, "{action} {instances} instances"),
            RunEvent::NoHibernation { instance, code } => write!(
                f,
                "{instance} cannot hibernate ({code}); stopping it without hibernation"
            ),
            RunEvent::Pausing { seconds, why } => {
                let what = match why {
                    PauseReason::AfterResize => "after resizing",
                    PauseReason::BeforeNextStage => "before the next stage",
                };
                write!(f, "pausing {seconds} s {what}")
            }
            RunEvent::Deregistered { target, instances } => {
                write!(f, "deregistered {instances} instances from {target}")
            }
            RunEvent::DeregistrationFailed { target, error } => {
                write!(f, "deregistration from {target} failed: {error}")
            }
            RunEvent::DrainingNotFinished { seconds } => {
                write!(
                    f,
                    "draining not finished after {seconds} s; stopping anyway"
                )
            }
            RunEvent::Registered { target, instances } => {
                write!(f, "registered {instances} instances with {target}")
            }
            RunEvent::Failed { instance, reason } => write!(f, "{instance} failed: {reason}"),
            RunEvent::Kept { instance, reason } => write!(f, "{instance} kept: {reason}"),
            RunEvent::NotChecked { error } => {
                write!(f, "could not check the started instances: {error}")
            }
            RunEvent::RollingBack => f.write_str("rolling back after a failure"),
            RunEvent::NotificationFailed { error } => write!(f, "notification failed: {error}"),
            RunEvent::Finished { status } => write!(f, "run finished: {}", status.as_str()),
        }
    }
}

/// A member that failed, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Failure {
    pub tier: String,
    pub reason: String,
}

/// A member deliberately left alone during the run, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Kept {
    pub tier: String,
    pub reason: String,
}

/// When a tier started and finished its steps.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TierTiming {
    pub started: DateTime<Utc>,
    pub finished: Option<DateTime<Utc>>,
}

/// A run and its checkpoint.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Run {
    pub id: String,
    pub workload: String,
    pub action: Action,
    pub profile: Option<String>,
    /// Whether the start was asked to stop a fleet subset's surplus.
    #[serde(default, skip_serializing_if = "is_report_only")]
    pub scale_in: ScaleIn,
    pub status: RunStatus,
    /// Who holds the workload's lock for this run.
    pub owner: String,
    pub started: DateTime<Utc>,
    pub finished: Option<DateTime<Utc>>,
    /// The plan as made when the run began.
    pub plan: Plan,
    pub cursor: Cursor,
    /// Stages built to undo the run, when it rolls back.
    #[serde(default)]
    pub rollback: Vec<Stage>,
    /// Instances this run started, stopped, resized (id -> tier).
    #[serde(default)]
    pub started_ids: BTreeMap<String, String>,
    #[serde(default)]
    pub stopped_ids: BTreeMap<String, String>,
    #[serde(default)]
    pub resized_ids: BTreeMap<String, String>,
    /// Members left alone at run time (override file present, probe inconclusive,
    /// exemption set after planning, no longer a member, ...).
    #[serde(default)]
    pub kept: BTreeMap<String, Kept>,
    #[serde(default)]
    pub failed: BTreeMap<String, Failure>,
    /// Tiers whose failures were already handled by the failure policy.
    #[serde(default)]
    pub failures_handled: usize,
    pub history: Vec<Entry>,
    /// API calls by action (`ec2:StopInstances`, ...), made by this run.
    pub calls: BTreeMap<String, u64>,
    /// Calls that were throttled or failed and retried.
    pub retried: u64,
    pub tiers: BTreeMap<String, TierTiming>,
    pub jitter: Jitter,
    /// Why the run failed, when it failed as a whole.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Who asked for the run through the API (`token:NAME`, an IAM principal).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub requested_by: Option<String>,
    /// What the pacing buckets learned of the account's limits, by bucket.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub pacing: BTreeMap<String, crate::pace::Learned>,
    /// Calls that failed in a row (throttled, a server error), by tier and call
    /// (`web/power`, `web/describe`, `web/register <target>`), kept with the run: a
    /// driver that makes a new executor each tick would otherwise start counting
    /// again every tick and retry forever.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub failing_calls: BTreeMap<String, u32>,
    /// Tokens of its account's buckets the run booked and has not used yet, by
    /// bucket, when its driver shares pacing through the store ([`crate::share`]).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub pace_grants: BTreeMap<String, crate::share::Grant>,
    /// The run was aborted (failure policy `abort`): its rollback phase only gives
    /// back the types of instances it resized but did not start, and it ends failed.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub aborted: bool,
    /// Tiers of later stages whose type changes were all made ahead of their stage
    /// (while earlier tiers started, waited and paused), and when they were done.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub resized_ahead: BTreeMap<String, DateTime<Utc>>,
    /// The version of the stored record this value was read from or last saved as
    /// (0: never saved). The store keeps it beside the run; a save names it and fails
    /// with [`crate::ports::StoreError::Conflict`] when another writer saved since.
    #[serde(skip)]
    pub version: u64,
}

impl Run {
    /// A new run of `plan` (its workload, action and profile) by `owner`, begun at
    /// `started`, with nothing done yet.
    pub fn new(id: &str, plan: Plan, owner: &str, started: DateTime<Utc>, jitter: Jitter) -> Run {
        Run {
            id: id.to_string(),
            workload: plan.workload.clone(),
            action: plan.action,
            profile: plan.profile.clone(),
            scale_in: ScaleIn::ReportOnly,
            status: RunStatus::Running,
            owner: owner.to_string(),
            started,
            finished: None,
            cursor: Cursor {
                phase: Phase::Forward,
                stage: 0,
                steps: BTreeMap::new(),
                began: BTreeMap::new(),
                verify_began: None,
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
            calls: BTreeMap::new(),
            retried: 0,
            tiers: BTreeMap::new(),
            jitter,
            error: None,
            requested_by: None,
            pacing: BTreeMap::new(),
            pace_grants: BTreeMap::new(),
            failing_calls: BTreeMap::new(),
            aborted: false,
            version: 0,
            resized_ahead: BTreeMap::new(),
        }
    }

    /// Records an event in the history, and logs it (in the current run and tier
    /// spans).
    pub fn record(&mut self, at: DateTime<Utc>, tier: Option<&str>, event: RunEvent) {
        let what = event.to_string();
        match tier {
            Some(tier) => tracing::info!(tier, at = %at.to_rfc3339(), "{what}"),
            None => tracing::info!(at = %at.to_rfc3339(), "{what}"),
        }
        self.history.push(Entry {
            at,
            tier: tier.map(str::to_string),
            what,
            event: Some(event),
        });
    }

    /// Seconds from start to finish (or to `now` while running).
    pub fn elapsed_secs(&self, now: DateTime<Utc>) -> f64 {
        let end = self.finished.unwrap_or(now);
        (end - self.started).num_milliseconds() as f64 / 1000.0
    }

    /// API calls in total.
    pub fn total_calls(&self) -> u64 {
        self.calls.values().sum()
    }

    /// The counts, times and calls of the run, as JSON (also the body of the
    /// run-finished notification, with the instances).
    pub fn summary(&self) -> serde_json::Value {
        serde_json::to_value(crate::notify::RunSummary::of(self)).unwrap_or_default()
    }
}

fn is_report_only(s: &ScaleIn) -> bool {
    *s == ScaleIn::ReportOnly
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn history_entries_are_typed_and_read_back_as_text_either_way() {
        let at: DateTime<Utc> = "2026-11-30T20:00:00Z".parse().unwrap();
        let event = RunEvent::Called {
            action: "ec2:StopInstances".into(),
            instances: 12,
        };
        let e = Entry {
            at,
            tier: Some("web".into()),
            what: event.to_string(),
            event: Some(event),
        };
        let json = serde_json::to_value(&e).unwrap();
        assert_eq!(
            json,
            serde_json::json!({"at": "2026-11-30T20:00:00Z", "tier": "web",
                "what": "ec2:StopInstances 12 instances",
                "event": {"kind": "called", "action": "ec2:StopInstances", "instances": 12}})
        );
        assert_eq!(serde_json::from_value::<Entry>(json).unwrap(), e);
        // An entry recorded before events were typed.
        let old: Entry = serde_json::from_value(
            serde_json::json!({"at": "2026-11-30T20:00:00Z", "what": "resumed"}),
        )
        .unwrap();
        assert_eq!(old.event, None);
        assert_eq!(old.text(), "resumed");
        assert_eq!(
            RunEvent::Pausing {
                seconds: 30,
                why: PauseReason::BeforeNextStage
            }
            .to_string(),
            "pausing 30 s before the next stage"
        );
        assert_eq!(
            RunEvent::Finished {
                status: RunStatus::CompletedWithFailures
            }
            .to_string(),
            "run finished: completed-with-failures"
        );
    }
}
