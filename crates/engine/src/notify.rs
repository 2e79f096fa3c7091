//! Notifications as typed events, rendered in one place: a subject for people and a
//! JSON body for machines (`event` names the kind; the other fields are stable).

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use ec2_scheduler_core::Action;
use ec2_scheduler_core::plan::Summary;
use serde::Serialize;
use serde_json::Value;

use crate::ports::Notification;
use crate::run::{Phase, Run, RunStatus, TierTiming};

/// An instance and why it is mentioned.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct InstanceNote {
    pub instance: String,
    /// The tier, where the event is not about one tier already.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tier: Option<String>,
    pub reason: String,
}

/// What a run tells the workload's topic.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "event", rename_all = "kebab-case")]
pub enum Event {
    /// A run began: what it will do and what it leaves alone.
    RunStarted {
        run: String,
        workload: String,
        action: Action,
        profile: Option<String>,
        summary: Summary,
        excluded: Vec<InstanceNote>,
    },
    /// A tier finished its steps, with the instances that failed or were kept.
    TierFinished {
        run: String,
        workload: String,
        action: Action,
        tier: String,
        phase: Phase,
        failed: Vec<InstanceNote>,
        kept: Vec<InstanceNote>,
    },
    /// A run ended: its summary and the instances it left alone or that failed.
    RunFinished(RunOutcome),
}

/// A run as it stands: the counts and times of [`RunSummary`], and the instances by
/// what happened to them. `runs show` and the run-finished message are both made
/// from it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RunOutcome {
    #[serde(flatten)]
    pub summary: RunSummary,
    pub instances: Instances,
}

/// The counts, times and calls of a run (also `run -o json`).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RunSummary {
    pub run: String,
    pub workload: String,
    pub action: Action,
    pub profile: Option<String>,
    pub status: RunStatus,
    pub started: DateTime<Utc>,
    pub finished: Option<DateTime<Utc>>,
    pub seconds: Option<f64>,
    pub stopped: usize,
    pub started_instances: usize,
    pub resized: usize,
    pub excluded: usize,
    pub kept: usize,
    pub failed: usize,
    pub api_calls: BTreeMap<String, u64>,
    pub retried_calls: u64,
    pub tiers: BTreeMap<String, TierTiming>,
    pub error: Option<String>,
}

/// The instances a run planned to leave alone, kept running at run time, or that
/// failed, each with its tier and why.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Instances {
    pub excluded: Vec<InstanceNote>,
    pub kept: Vec<InstanceNote>,
    pub failed: Vec<InstanceNote>,
}

impl RunSummary {
    pub fn of(run: &Run) -> Self {
        RunSummary {
            run: run.id.clone(),
            workload: run.workload.clone(),
            action: run.action,
            profile: run.profile.clone(),
            status: run.status,
            started: run.started,
            finished: run.finished,
            seconds: run
                .finished
                .map(|f| (f - run.started).num_milliseconds() as f64 / 1000.0),
            stopped: run.stopped_ids.len(),
            started_instances: run.started_ids.len(),
            resized: run.resized_ids.len(),
            excluded: run.plan.excluded.len(),
            kept: run.kept.len(),
            failed: run.failed.len(),
            api_calls: run.calls.clone(),
            retried_calls: run.retried,
            tiers: run.tiers.clone(),
            error: run.error.clone(),
        }
    }
}

impl RunOutcome {
    pub fn of(run: &Run) -> Self {
        let note = |i: &String, tier: &String, reason: String| InstanceNote {
            instance: i.clone(),
            tier: Some(tier.clone()),
            reason,
        };
        RunOutcome {
            summary: RunSummary::of(run),
            instances: Instances {
                excluded: run
                    .plan
                    .excluded
                    .iter()
                    .map(|e| note(&e.instance, &e.tier, e.reason.describe()))
                    .collect(),
                kept: run
                    .kept
                    .iter()
                    .map(|(i, k)| note(i, &k.tier, k.reason.clone()))
                    .collect(),
                failed: run
                    .failed
                    .iter()
                    .map(|(i, f)| note(i, &f.tier, f.reason.clone()))
                    .collect(),
            },
        }
    }
}

impl Event {
    /// The event for a run that just began.
    pub fn run_started(run: &Run) -> Self {
        Event::RunStarted {
            run: run.id.clone(),
            workload: run.workload.clone(),
            action: run.action,
            profile: run.profile.clone(),
            summary: run.plan.summary.clone(),
            excluded: run
                .plan
                .excluded
                .iter()
                .map(|e| InstanceNote {
                    instance: e.instance.clone(),
                    tier: Some(e.tier.clone()),
                    reason: e.reason.describe(),
                })
                .collect(),
        }
    }

    /// The event for a tier of `run` that just finished.
    pub fn tier_finished(run: &Run, tier: &str) -> Self {
        let note = |(i, reason): (&String, &String)| InstanceNote {
            instance: i.clone(),
            tier: None,
            reason: reason.clone(),
        };
        Event::TierFinished {
            run: run.id.clone(),
            workload: run.workload.clone(),
            action: run.action,
            tier: tier.to_string(),
            phase: run.cursor.phase,
            failed: run
                .failed
                .iter()
                .filter(|(_, f)| f.tier == tier)
                .map(|(i, f)| note((i, &f.reason)))
                .collect(),
            kept: run
                .kept
                .iter()
                .filter(|(_, k)| k.tier == tier)
                .map(|(i, k)| note((i, &k.reason)))
                .collect(),
        }
    }

    /// The event for a run that just ended.
    pub fn run_finished(run: &Run) -> Self {
        Event::RunFinished(RunOutcome::of(run))
    }

    /// One line for people.
    pub fn subject(&self) -> String {
        match self {
            Event::RunStarted {
                workload,
                action,
                summary,
                ..
            } => format!(
                "ec2-scheduler: {action} of {workload} started ({} to stop, {} to start)",
                summary.to_stop, summary.to_start
            ),
            Event::TierFinished {
                workload,
                action,
                tier,
                failed,
                ..
            } => {
                if failed.is_empty() {
                    format!("ec2-scheduler: {action} of {workload}: tier {tier} done")
                } else {
                    format!(
                        "ec2-scheduler: {action} of {workload}: tier {tier} had {} failures",
                        failed.len()
                    )
                }
            }
            Event::RunFinished(RunOutcome { summary: s, .. }) => format!(
                "ec2-scheduler: {} of {} {} ({} stopped, {} started, {} failed)",
                s.action,
                s.workload,
                s.status.as_str(),
                s.stopped,
                s.started_instances,
                s.failed
            ),
        }
    }

    /// The notification to publish.
    pub fn notification(&self) -> Notification {
        Notification {
            subject: self.subject(),
            body: serde_json::to_value(self).unwrap_or(Value::Null),
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    /// The body's shape is a contract with whoever reads the topic.
    #[test]
    fn bodies_have_a_stable_shape() {
        let e = Event::TierFinished {
            run: "r1".into(),
            workload: "W".into(),
            action: Action::Stop,
            tier: "web".into(),
            phase: Phase::Forward,
            failed: vec![InstanceNote {
                instance: "i-1".into(),
                tier: None,
                reason: "IncorrectInstanceState".into(),
            }],
            kept: vec![],
        };
        let n = e.notification();
        assert_eq!(
            n.subject,
            "ec2-scheduler: stop of W: tier web had 1 failures"
        );
        assert_eq!(
            n.body,
            json!({"event": "tier-finished", "run": "r1", "workload": "W", "action": "stop",
                   "tier": "web", "phase": "forward",
                   "failed": [{"instance": "i-1", "reason": "IncorrectInstanceState"}],
                   "kept": []})
        );
        let at: DateTime<Utc> = "2026-11-30T20:00:00Z".parse().unwrap();
        let outcome = RunOutcome {
            summary: RunSummary {
                run: "r1".into(),
                workload: "W".into(),
                action: Action::Start,
                profile: Some("p".into()),
                status: RunStatus::Succeeded,
                started: at,
                finished: Some(at + chrono::TimeDelta::seconds(90)),
                seconds: Some(90.0),
                stopped: 0,
                started_instances: 3,
                resized: 1,
                excluded: 1,
                kept: 0,
                failed: 0,
                api_calls: BTreeMap::from([("ec2:StartInstances".to_string(), 1)]),
                retried_calls: 0,
                tiers: BTreeMap::from([(
                    "web".to_string(),
                    TierTiming {
                        started: at,
                        finished: Some(at + chrono::TimeDelta::seconds(60)),
                    },
                )]),
                error: None,
            },
            instances: Instances {
                excluded: vec![InstanceNote {
                    instance: "i-2".into(),
                    tier: Some("web".into()),
                    reason: "exemption tag".into(),
                }],
                kept: vec![],
                failed: vec![],
            },
        };
        let n = Event::RunFinished(outcome).notification();
        assert_eq!(
            n.subject,
            "ec2-scheduler: start of W succeeded (0 stopped, 3 started, 0 failed)"
        );
        assert_eq!(
            n.body,
            json!({"event": "run-finished", "run": "r1", "workload": "W", "action": "start",
                   "profile": "p", "status": "succeeded",
                   "started": "2026-11-30T20:00:00Z", "finished": "2026-11-30T20:01:30Z",
                   "seconds": 90.0, "stopped": 0, "started_instances": 3, "resized": 1,
                   "excluded": 1, "kept": 0, "failed": 0,
                   "api_calls": {"ec2:StartInstances": 1}, "retried_calls": 0,
                   "tiers": {"web": {"started": "2026-11-30T20:00:00Z",
                                     "finished": "2026-11-30T20:01:00Z"}},
                   "error": null,
                   "instances": {"excluded": [{"instance": "i-2", "tier": "web",
                                               "reason": "exemption tag"}],
                                 "kept": [], "failed": []}})
        );
    }
}
