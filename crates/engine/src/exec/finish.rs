//! The end of a run: verifying what it started, rolling back, finishing.

use std::collections::BTreeMap;
use std::time::Duration;

use ec2_scheduler_core::plan::{Resize, Stage, Step, TierPlan};
use ec2_scheduler_core::{Action, FailurePolicy, InstanceState};

use super::policy::Tries;
use super::step::{Seen, api_name, fail};
use super::{Executor, Result, Tick, after, dur};
use crate::notify::Event;
use crate::run::{Cursor, Phase, Run, RunEvent, RunStatus};

impl Executor<'_> {
    pub(super) async fn end_of_stages(&mut self, run: &mut Run) -> Result<Tick> {
        match run.cursor.phase {
            Phase::Forward if run.action == Action::Start && !run.started_ids.is_empty() => {
                run.cursor.phase = Phase::Verify;
                run.cursor.stage = 0;
                run.cursor.steps.clear();
                run.cursor.began.clear();
                self.save(run).await?;
                self.verify(run).await
            }
            Phase::Rollback if run.aborted => self.finish(run, RunStatus::Failed).await,
            Phase::Rollback => self.finish(run, RunStatus::RolledBack).await,
            _ => {
                let status = if run.failed.is_empty() {
                    RunStatus::Succeeded
                } else {
                    RunStatus::CompletedWithFailures
                };
                self.finish(run, status).await
            }
        }
    }

    /// Waits until no instance this run started is pending, and records those that
    /// fell back to stopped (a silent start failure, e.g. a missing KMS grant).
    pub(super) async fn verify(&mut self, run: &mut Run) -> Result<Tick> {
        let now = self.ports.clock.now();
        let began = *run.cursor.verify_began.get_or_insert(now);
        let mut tries = *self
            .verify
            .get_or_insert_with(|| Tries::until(after(began, self.settings.wait_timeout)));
        let deadline = tries.deadline.unwrap_or(now);
        let ids: Vec<String> = run
            .started_ids
            .keys()
            .filter(|i| !run.failed.contains_key(*i))
            .cloned()
            .collect();
        let seen = self.cx(run, "").observe(&ids, &mut tries).await?;
        self.verify = Some(tries);
        let seen = match seen {
            Seen::Now(s) => Some(s),
            Seen::Later(w) => return Ok(Tick::Wait(w)),
            // Not seen, not known to have failed: the run ends without the check.
            Seen::GaveUp(e) => {
                run.record(
                    now,
                    None,
                    RunEvent::NotChecked {
                        error: api_name(&e),
                    },
                );
                None
            }
        };
        let mut pending = 0;
        for (id, seen) in seen
            .iter()
            .flat_map(|s| ids.iter().map(move |id| (id, s.get(id))))
        {
            let tier = run.started_ids[id].clone();
            match seen {
                Some(i) if i.state == InstanceState::Pending => pending += 1,
                Some(i) if i.state.is_down() => {
                    let reason = i
                        .state_reason
                        .clone()
                        .unwrap_or_else(|| "no reason given".into());
                    let why = format!("started, then fell back to {}: {reason}", i.state);
                    fail(run, id, &tier, why, now);
                }
                Some(_) => {}
                None => fail(run, id, &tier, "vanished after it was started".into(), now),
            }
        }
        if pending > 0 && now < deadline {
            return Ok(Tick::Wait(self.settings.poll.min(dur(deadline - now))));
        }
        self.verify = None;
        let failures_now = run.failed.len() > run.failures_handled;
        if failures_now && self.workload.failure_policy == FailurePolicy::Rollback {
            run.failures_handled = run.failed.len();
            self.start_rollback(run, true);
            self.save(run).await?;
            return Ok(Tick::Wait(Duration::ZERO));
        }
        if failures_now
            && self.workload.failure_policy == FailurePolicy::Abort
            && self.start_restore(run)
        {
            run.failures_handled = run.failed.len();
            self.save(run).await?;
            return Ok(Tick::Wait(Duration::ZERO));
        }
        let status = if run.failed.is_empty() {
            RunStatus::Succeeded
        } else if self.workload.failure_policy == FailurePolicy::Abort {
            RunStatus::Failed
        } else {
            RunStatus::CompletedWithFailures
        };
        self.finish(run, status).await
    }

    pub(super) async fn finish(&mut self, run: &mut Run, status: RunStatus) -> Result<Tick> {
        let now = self.ports.clock.now();
        run.status = status;
        run.finished = Some(now);
        run.record(now, None, RunEvent::Finished { status });
        self.state.clear();
        self.verify = None;
        self.give_back_grants(run).await;
        self.save(run).await?;
        self.ports
            .store
            .release(&run.workload, &self.settings.owner, Some(&run.id))
            .await?;
        if status == RunStatus::Succeeded
            && let Err(e) = self.ports.store.record_last_action(run).await
        {
            // The run did what it was asked; only the record for other readers failed.
            let what = format!("the workload's last action was not recorded: {e}");
            tracing::warn!("{what}");
            run.history.push(crate::run::Entry {
                at: now,
                tier: None,
                what,
                event: None,
            });
        }
        let event = Event::run_finished(run);
        self.notify(run, event).await;
        self.save(run).await?;
        Ok(Tick::Done)
    }

    /// On an abort of a start: when it resized instances it did not start, replaces
    /// the rest of the run with stages that give them their type back (and nothing
    /// else), after which the run ends failed. `false` when there are none.
    pub(super) fn start_restore(&mut self, run: &mut Run) -> bool {
        let any = run.action == Action::Start
            && run
                .resized_ids
                .keys()
                .any(|id| !run.started_ids.contains_key(id));
        if any {
            run.aborted = true;
            self.start_rollback(run, false);
        }
        any
    }

    /// Replaces the rest of the run with stages that undo what it did (when `undo`),
    /// last first, and give the instances a start resized but did not start their
    /// type back.
    pub(super) fn start_rollback(&mut self, run: &mut Run, undo: bool) {
        let now = self.ports.clock.now();
        let stage_of: BTreeMap<&str, i64> = run
            .plan
            .stages
            .iter()
            .flat_map(|s| s.tiers.iter().map(move |t| (t.tier.as_str(), s.order)))
            .collect();
        let none = BTreeMap::new();
        let done = match run.action {
            _ if !undo => &none,
            Action::Start => &run.started_ids,
            Action::Stop => &run.stopped_ids,
        };
        let mut by_stage: BTreeMap<std::cmp::Reverse<i64>, BTreeMap<String, Vec<String>>> =
            BTreeMap::new();
        for (id, tier) in done {
            let order = stage_of.get(tier.as_str()).copied().unwrap_or(0);
            by_stage
                .entry(std::cmp::Reverse(order))
                .or_default()
                .entry(tier.clone())
                .or_default()
                .push(id.clone());
        }
        // Instances a start resized but did not start get their type back (after
        // their tier's stops, as part of its undo).
        let mut restore: BTreeMap<String, Vec<Resize>> = BTreeMap::new();
        if run.action == Action::Start {
            let changes = run
                .plan
                .stages
                .iter()
                .flat_map(|s| &s.tiers)
                .flat_map(|t| &t.steps)
                .filter_map(|step| match step {
                    Step::Resize { changes } => Some(changes),
                    _ => None,
                })
                .flatten();
            for c in changes {
                if let Some(tier) = run.resized_ids.get(&c.instance)
                    && !run.started_ids.contains_key(&c.instance)
                {
                    restore.entry(tier.clone()).or_default().push(Resize {
                        instance: c.instance.clone(),
                        from: c.to.clone(),
                        to: c.from.clone(),
                    });
                }
            }
        }
        for tier in restore.keys() {
            let order = stage_of.get(tier.as_str()).copied().unwrap_or(0);
            by_stage
                .entry(std::cmp::Reverse(order))
                .or_default()
                .entry(tier.clone())
                .or_default();
        }
        run.rollback = by_stage
            .into_iter()
            .map(|(std::cmp::Reverse(order), tiers)| Stage {
                order,
                tiers: tiers
                    .into_iter()
                    .map(|(tier, ids)| {
                        let mut steps = if ids.is_empty() {
                            Vec::new()
                        } else {
                            self.undo_steps(run.action, &tier, ids.clone())
                        };
                        if let Some(changes) = restore.remove(&tier) {
                            steps.push(Step::Resize { changes });
                        }
                        TierPlan {
                            members: ids.len(),
                            up: 0,
                            down: 0,
                            target: None,
                            steps,
                            tier,
                        }
                    })
                    .collect(),
            })
            .collect();
        run.cursor = Cursor {
            phase: Phase::Rollback,
            stage: 0,
            steps: BTreeMap::new(),
            began: BTreeMap::new(),
            verify_began: None,
        };
        self.state.clear();
        if undo {
            run.record(now, None, RunEvent::RollingBack);
        } else {
            let what = "aborted: giving back the types of instances resized but not started";
            tracing::info!("{what}");
            run.history.push(crate::run::Entry {
                at: now,
                tier: None,
                what: what.to_string(),
                event: None,
            });
        }
    }

    /// The steps that undo `action` on `ids` of `tier`.
    fn undo_steps(&self, action: Action, tier: &str, ids: Vec<String>) -> Vec<Step> {
        match action {
            Action::Start => {
                // Undoing a start is a stop: the same exemption checks apply, the
                // override-file probe included.
                let probe = self
                    .workload
                    .tier(tier)
                    .and_then(|t| t.stop.as_ref())
                    .and_then(|s| s.override_file.as_ref())
                    .map(|f| Step::ProbeOverride {
                        path: f.path.to_string(),
                        os: f.os,
                        instances: ids.clone(),
                    });
                probe
                    .into_iter()
                    .chain([
                        Step::Deregister {
                            instances: ids.clone(),
                        },
                        Step::Stop {
                            instances: ids.clone(),
                        },
                        Step::WaitUntil {
                            state: InstanceState::Stopped,
                            instances: ids,
                        },
                    ])
                    .collect()
            }
            Action::Stop => vec![
                Step::Start {
                    instances: ids.clone(),
                },
                Step::WaitUntil {
                    state: InstanceState::Running,
                    instances: ids.clone(),
                },
                Step::Register { instances: ids },
            ],
        }
    }
}
