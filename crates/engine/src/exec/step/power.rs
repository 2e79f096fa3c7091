//! Start, stop and hibernate: batched (up to 1,000 instances a call), paced by the
//! request and resource buckets, with the instances at fault isolated when a batch
//! fails.
//!
//! A start with a profile also starts, while the tier's Resize step goes on, the
//! instances whose type change is made and settled ([`Power::early`]): an
//! optimisation only. Early, an instance that is not stopped at the wanted type, or
//! not a member, is left alone, silently, for the tier's own Start step.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::time::Duration;

use chrono::{DateTime, Utc};

use ec2_scheduler_core::plan::Exemptions;
use ec2_scheduler_core::{Action, InstanceState};

use super::{Cx, Poll, Seen, api_name, calls};
use crate::exec::policy::{Decision, Tries};
use crate::exec::{Result, after};
use crate::ports::{ApiError, ErrorKind};
use crate::run::RunEvent;

pub(crate) struct Power {
    action: Action,
    ids: Vec<String>,
    /// Batches still to send, each with the times it was retried.
    queue: VecDeque<(Vec<String>, u32)>,
    /// Instances already sent (or already in the target state).
    called: BTreeSet<String>,
    /// Observation retries, bounded by attempts, not by the wait timeout: a large
    /// fleet's calls take longer than that to pace out.
    tries: Tries,
    /// The longest wait for instances in transition.
    deadline: DateTime<Utc>,
    /// Calls refused for one instance alone, by instance.
    strikes: BTreeMap<String, u32>,
    /// Instances that cannot hibernate: stopped normally.
    no_hibernate: BTreeSet<String>,
    /// Early starts: the type each instance must have (when it changes).
    early: Option<BTreeMap<String, String>>,
}

impl Power {
    pub fn new(action: Action, ids: &[String], cx: &mut Cx<'_, '_>, began: DateTime<Utc>) -> Self {
        Power {
            action,
            ids: ids.to_vec(),
            queue: VecDeque::new(),
            called: BTreeSet::new(),
            tries: Tries::unbounded_in_time(),
            deadline: after(began, cx.settings.wait_timeout),
            strikes: BTreeMap::new(),
            no_hibernate: BTreeSet::new(),
            early: None,
        }
    }

    /// Starts made early (see the module's documentation).
    pub fn early(
        ids: &[String],
        types: BTreeMap<String, String>,
        cx: &mut Cx<'_, '_>,
        began: DateTime<Utc>,
    ) -> Self {
        Power {
            early: Some(types),
            ..Power::new(Action::Start, ids, cx, began)
        }
    }

    fn hibernates(cx: &Cx<'_, '_>) -> bool {
        cx.spec()
            .and_then(|t| t.stop.as_ref())
            .is_some_and(|s| s.hibernate)
    }

    pub async fn poll(&mut self, cx: &mut Cx<'_, '_>) -> Result<Poll> {
        loop {
            if !self.queue.is_empty() {
                cx.hold().await?;
            }
            if let Some((batch, attempts)) = self.queue.pop_front() {
                if let Some(w) = self.send(cx, batch, attempts).await {
                    return Ok(Poll::Wait(w));
                }
                continue;
            }
            // Nothing queued: observe what still needs doing.
            let todo: Vec<String> = cx
                .live(&self.ids)
                .into_iter()
                .filter(|i| !self.called.contains(i))
                .collect();
            if todo.is_empty() {
                return Ok(Poll::Done);
            }
            let seen = match cx.observe(&todo, &mut self.tries).await? {
                Seen::Now(s) => s,
                Seen::Later(w) => return Ok(Poll::Wait(w)),
                Seen::GaveUp(e) => {
                    cx.unseen(&todo, &e, self.action == Action::Stop);
                    return Ok(Poll::Done);
                }
            };
            let now = cx.now();
            // Exemptions matter to a stop only.
            let stored = match self.action {
                Action::Stop => cx.ports.store.exemptions().await?,
                Action::Start => Vec::new(),
            };
            let exemptions = Exemptions::new(cx.workload, &stored, now);
            let spec = cx.spec().cloned();
            let mut send = Vec::new();
            let mut waiting = 0;
            for id in &todo {
                if let Some(types) = &self.early {
                    match seen.get(id) {
                        Some(i)
                            if cx.is_member(i)
                                && i.state == InstanceState::Stopped
                                && types.get(id).is_none_or(|t| *t == i.instance_type) =>
                        {
                            send.push(id.clone());
                        }
                        _ => {
                            self.called.insert(id.clone());
                        }
                    }
                    continue;
                }
                let Some(i) = seen.get(id) else {
                    match self.action {
                        Action::Start => cx.fail(id, "instance not found".into()),
                        Action::Stop => cx.keep(id, "instance not found".into()),
                    }
                    continue;
                };
                if !cx.is_member(i) {
                    cx.keep(
                        id,
                        "no longer a member of this tier (tags, VPC or state changed)".into(),
                    );
                    continue;
                }
                if self.action == Action::Stop
                    && let Some(t) = &spec
                    && let Some(r) = exemptions.stop_exclusion(t, i)
                {
                    cx.keep(id, r.describe());
                    continue;
                }
                match (self.action, i.state) {
                    (Action::Stop, InstanceState::Running)
                    | (Action::Start, InstanceState::Stopped) => send.push(id.clone()),
                    (Action::Stop, InstanceState::Pending)
                    | (Action::Start, InstanceState::Stopping) => waiting += 1,
                    _ => {
                        self.called.insert(id.clone());
                    }
                }
            }
            if !send.is_empty() {
                let (plain, rest): (Vec<String>, Vec<String>) = send
                    .into_iter()
                    .partition(|i| self.no_hibernate.contains(i));
                for group in [rest, plain] {
                    for chunk in group.chunks(1000) {
                        self.queue.push_back((chunk.to_vec(), 0));
                    }
                }
                continue;
            }
            if waiting == 0 {
                return Ok(Poll::Done);
            }
            let deadline = self.deadline;
            if now >= deadline {
                let secs = cx.settings.wait_timeout.as_secs();
                for id in todo.iter().filter(|i| !self.called.contains(*i)) {
                    if !cx.run.kept.contains_key(id) && !cx.run.failed.contains_key(id) {
                        cx.fail(id, format!("still in transition after {secs} s"));
                    }
                }
                return Ok(Poll::Done);
            }
            return Ok(Poll::Wait(cx.poll_until(deadline)));
        }
    }

    /// Sends one batch (or as much of it as the buckets allow); a wait when the step
    /// should pause before going on.
    async fn send(
        &mut self,
        cx: &mut Cx<'_, '_>,
        batch: Vec<String>,
        attempts: u32,
    ) -> Option<Duration> {
        let action = self.action;
        // Pace: the request bucket and the resource bucket.
        let (req, res, name) = match action {
            Action::Start => ("start_requests", "start_instances", "ec2:StartInstances"),
            Action::Stop => ("mutating", "stop_instances", "ec2:StopInstances"),
        };
        let want = batch.len().min(cx.settings.min_batch) as f64;
        let drawn = cx
            .draw(&[(req, 1.0, 1.0), (res, want, batch.len() as f64)])
            .await;
        let n = match drawn {
            Ok(got) => (got[1] as usize).max(1),
            Err(w) => {
                self.queue.push_front((batch, attempts));
                return Some(w.max(Duration::from_millis(1)));
            }
        };
        let (send, rest) = batch.split_at(n.min(batch.len()));
        let (send, rest) = (send.to_vec(), rest.to_vec());
        if !rest.is_empty() {
            self.queue.push_front((rest, attempts));
        }
        // Batches are either all hibernation candidates or none.
        let hibernate = action == Action::Stop
            && Self::hibernates(cx)
            && !send.iter().any(|i| self.no_hibernate.contains(i));
        let result = match action {
            Action::Start => cx.ports.compute.start(&send).await,
            Action::Stop => cx.ports.compute.stop(&send, hibernate).await,
        };
        let throttled = matches!(&result, Err(e) if e.kind == ErrorKind::Throttled);
        let now = cx.now();
        let (req, res) = match action {
            Action::Start => (
                &mut cx.buckets.start_requests,
                &mut cx.buckets.start_instances,
            ),
            Action::Stop => (&mut cx.buckets.mutating, &mut cx.buckets.stop_instances),
        };
        req.answered(throttled, now);
        res.answered(throttled, now);
        match result {
            Ok(()) => {
                cx.call_settled(calls::POWER);
                let tier = cx.tier.to_string();
                let done = match action {
                    Action::Start => &mut cx.run.started_ids,
                    Action::Stop => &mut cx.run.stopped_ids,
                };
                for id in &send {
                    done.insert(id.clone(), tier.clone());
                    self.called.insert(id.clone());
                }
                cx.record(RunEvent::Called {
                    action: name.to_string(),
                    instances: send.len(),
                });
                None
            }
            Err(e) if hibernate && e.kind == ErrorKind::Unsupported && send.len() == 1 => {
                cx.record(RunEvent::NoHibernation {
                    instance: send[0].clone(),
                    code: e.code.clone(),
                });
                self.no_hibernate.insert(send[0].clone());
                self.queue.push_front((send, attempts));
                None
            }
            Err(e) => self.on_error(cx, send, attempts, &e),
        }
    }

    /// A failed batch, as the policy decides: retried, looked at again, split, or
    /// failed.
    fn on_error(
        &mut self,
        cx: &mut Cx<'_, '_>,
        batch: Vec<String>,
        attempts: u32,
        e: &ApiError,
    ) -> Option<Duration> {
        // An instance refused alone counts its own strikes, across observations.
        // Calls failing in a row are counted with the run too, so that a driver
        // that makes a new executor each tick (serve, the run step) gives up as
        // one executor does, instead of retrying a call forever.
        let failures = if batch.len() == 1 && e.kind == ErrorKind::IncorrectState {
            let s = self.strikes.entry(batch[0].clone()).or_default();
            *s += 1;
            *s
        } else {
            cx.failed_again(calls::POWER, attempts + 1)
        };
        // Bounded by attempts: the step's wait timeout is for instances in transition.
        match cx.decide(e, failures, batch.len(), Tries::unbounded_in_time()) {
            Decision::Retry(w) => {
                if e.kind == ErrorKind::InsufficientCapacity {
                    // Let the other batches go first.
                    self.queue.push_back((batch, attempts + 1));
                } else {
                    self.queue.push_front((batch, attempts + 1));
                }
                Some(w)
            }
            // Not sent again: the next observation decides.
            Decision::Recheck(w) => Some(w),
            Decision::Isolate => {
                // The instances the error names, else by halves.
                let (named, rest): (Vec<String>, Vec<String>) =
                    batch.iter().cloned().partition(|i| e.instances.contains(i));
                if !named.is_empty() && !rest.is_empty() {
                    self.queue.push_front((rest, attempts));
                    for id in named {
                        self.queue.push_back((vec![id], attempts));
                    }
                } else {
                    let (a, b) = batch.split_at(batch.len() / 2);
                    self.queue.push_front((b.to_vec(), attempts));
                    self.queue.push_front((a.to_vec(), attempts));
                }
                None
            }
            Decision::GiveUp => {
                cx.call_settled(calls::POWER);
                let attempts = failures.saturating_sub(1);
                let why = if e.retryable() {
                    format!("gave up after {attempts} retries: {}", api_name(e))
                } else {
                    api_name(e)
                };
                for id in &batch {
                    cx.fail(id, why.clone());
                }
                None
            }
        }
    }
}
