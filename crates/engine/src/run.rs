//! A run: one execution of a plan, with everything needed to resume it and to tell
//! afterwards what happened. Saved as a checkpoint after every step.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use ec2_scheduler_core::Action;
use ec2_scheduler_core::plan::{Plan, Stage};
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

/// One line of a run's history.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    pub at: DateTime<Utc>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tier: Option<String>,
    pub what: String,
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
}

impl Run {
    /// Records an event in the history, and logs it (in the current run and tier
    /// spans).
    pub(crate) fn log(&mut self, at: DateTime<Utc>, tier: Option<&str>, what: impl Into<String>) {
        let what = what.into();
        match tier {
            Some(tier) => tracing::info!(tier, at = %at.to_rfc3339(), "{what}"),
            None => tracing::info!(at = %at.to_rfc3339(), "{what}"),
        }
        self.history.push(Entry {
            at,
            tier: tier.map(str::to_string),
            what,
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
