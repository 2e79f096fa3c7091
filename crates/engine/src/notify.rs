//! Notifications as typed events, rendered in one place: a subject for people and a
//! JSON body for machines (`event` names the kind; the other fields are stable).

use ec2_scheduler_core::Action;
use ec2_scheduler_core::plan::Summary;
use serde::Serialize;
use serde_json::{Map, Value};

use crate::ports::Notification;
use crate::run::{Phase, Run};

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
    /// A run ended: its summary ([`Run::summary`]).
    RunFinished {
        #[serde(flatten)]
        summary: Map<String, Value>,
    },
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
        let summary = match run.summary() {
            Value::Object(m) => m,
            _ => Map::new(),
        };
        Event::RunFinished { summary }
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
            Event::RunFinished { summary } => {
                let s = |k: &str| summary.get(k).and_then(Value::as_str).unwrap_or("?");
                let n = |k: &str| summary.get(k).and_then(Value::as_u64).unwrap_or(0);
                format!(
                    "ec2-scheduler: {} of {} {} ({} stopped, {} started, {} failed)",
                    s("action"),
                    s("workload"),
                    s("status"),
                    n("stopped"),
                    n("started_instances"),
                    n("failed")
                )
            }
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
        let mut summary = Map::new();
        for (k, v) in [
            ("run", json!("r1")),
            ("workload", json!("W")),
            ("action", json!("start")),
            ("status", json!("succeeded")),
            ("stopped", json!(0)),
            ("started_instances", json!(3)),
            ("failed", json!(0)),
        ] {
            summary.insert(k.into(), v);
        }
        let n = Event::RunFinished { summary }.notification();
        assert_eq!(
            n.subject,
            "ec2-scheduler: start of W succeeded (0 stopped, 3 started, 0 failed)"
        );
        assert_eq!(n.body["event"], "run-finished");
        assert_eq!(n.body["started_instances"], 3);
    }
}
