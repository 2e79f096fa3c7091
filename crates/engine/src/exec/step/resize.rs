//! Instance type changes of stopped instances, paced, then verified.
//!
//! A start with a profile also makes the changes of later tiers ahead of their stage
//! ([`Resize::ahead`]), while earlier tiers start, wait and pause: an optimisation
//! only. Ahead, an instance that is not stopped, not a member, or whose change fails
//! is left alone, silently; the tier's own Resize step, at its stage, observes again
//! and is the one that changes, keeps or fails what is left.

use std::collections::VecDeque;

use chrono::{DateTime, Utc};

use ec2_scheduler_core::InstanceState;
use ec2_scheduler_core::plan::Resize as Change;

use super::{Cx, Poll, Seen, api_name, calls};
use crate::exec::policy::{Decision, Tries};
use crate::exec::{Result, after};
use crate::ports::ErrorKind;
use crate::run::Phase as RunPhase;

pub(crate) struct Resize {
    changes: Vec<(String, String)>,
    phase: Phase,
    /// Observation retries (bounded by attempts: the changes of a large tier take
    /// longer than the wait timeout to pace out).
    tries: Tries,
    /// The longest wait for instances still stopping.
    deadline: DateTime<Utc>,
    /// Made ahead of the tier's stage.
    ahead: bool,
    /// Ahead: some instance was left for the tier's own step.
    left: bool,
}

enum Phase {
    /// Looking at the instances to see which still need the change.
    Observe,
    /// Sending the changes (instance, type, retries so far), then checking that they
    /// took effect.
    Change {
        queue: VecDeque<(String, String, u32)>,
        verify: Vec<(String, String)>,
        checks: u32,
    },
}

impl Resize {
    pub fn new(changes: &[Change], cx: &mut Cx<'_, '_>, began: DateTime<Utc>) -> Self {
        Resize {
            changes: changes
                .iter()
                .map(|c| (c.instance.clone(), c.to.clone()))
                .collect(),
            phase: Phase::Observe,
            tries: Tries::unbounded_in_time(),
            deadline: after(began, cx.settings.wait_timeout),
            ahead: false,
            left: false,
        }
    }

    /// The changes of a later tier, made ahead of its stage.
    pub fn ahead(changes: &[Change], cx: &mut Cx<'_, '_>, began: DateTime<Utc>) -> Self {
        Resize {
            ahead: true,
            ..Resize::new(changes, cx, began)
        }
    }

    /// Ahead, and done: whether every change was made (none was left for the tier's
    /// own step).
    pub fn complete(&self) -> bool {
        !self.left
    }

    /// How many changes it makes.
    pub fn count(&self) -> usize {
        self.changes.len()
    }

    pub async fn poll(&mut self, cx: &mut Cx<'_, '_>) -> Result<Poll> {
        if let Phase::Observe = self.phase {
            let ids: Vec<String> = self.changes.iter().map(|(i, _)| i.clone()).collect();
            // A rollback gives back the types of instances that failed to start:
            // those failures are what it is undoing, so they do not exclude them.
            let live = if cx.run.cursor.phase == RunPhase::Rollback {
                ids.into_iter()
                    .filter(|i| !cx.run.kept.contains_key(i))
                    .collect()
            } else {
                cx.live(&ids)
            };
            let seen = match cx.observe(&live, &mut self.tries).await? {
                Seen::Now(s) => s,
                Seen::Later(w) => return Ok(Poll::Wait(w)),
                Seen::GaveUp(e) => {
                    if self.ahead {
                        self.left = true;
                    } else {
                        cx.unseen(&live, &e, false);
                    }
                    return Ok(Poll::Done);
                }
            };
            let mut queue = VecDeque::new();
            let mut verify = Vec::new();
            let mut stopping = Vec::new();
            for (id, to) in self.changes.iter().filter(|(i, _)| live.contains(i)) {
                if self.ahead {
                    match seen.get(id) {
                        Some(i) if cx.is_member(i) && i.instance_type == *to => {}
                        Some(i) if cx.is_member(i) && i.state == InstanceState::Stopped => {
                            queue.push_back((id.clone(), to.clone(), 0));
                            verify.push((id.clone(), to.clone()));
                        }
                        _ => self.left = true,
                    }
                    continue;
                }
                let Some(i) = seen.get(id) else {
                    cx.fail(id, "instance not found".into());
                    continue;
                };
                if !cx.is_member(i) {
                    cx.keep(id, "no longer a member of this tier".into());
                    continue;
                }
                if i.instance_type == *to {
                    continue;
                }
                match i.state {
                    InstanceState::Stopped => {
                        queue.push_back((id.clone(), to.clone(), 0));
                        verify.push((id.clone(), to.clone()));
                    }
                    InstanceState::Stopping => stopping.push(id.clone()),
                    s => cx.keep(
                        id,
                        format!("not resized: it is {s}, a type can only change while stopped"),
                    ),
                }
            }
            if !stopping.is_empty() {
                if cx.now() < self.deadline {
                    return Ok(Poll::Wait(cx.poll_until(self.deadline)));
                }
                let secs = cx.settings.wait_timeout.as_secs();
                for id in stopping {
                    cx.keep(
                        id.as_str(),
                        format!("not resized: still stopping after {secs} s"),
                    );
                }
            }
            self.phase = Phase::Change {
                queue,
                verify,
                checks: 0,
            };
        }
        let Phase::Change {
            queue,
            verify,
            checks,
        } = &mut self.phase
        else {
            return Ok(Poll::Done);
        };
        if !queue.is_empty() {
            cx.hold().await?;
            if !self.ahead {
                // Changes made now: the pause after them counts from now.
                cx.run.resized_ahead.remove(cx.tier);
            }
        }
        while let Some((id, to, attempts)) = queue.pop_front() {
            if let Err(w) = cx.draw(&[("mutating", 1.0, 1.0)]).await {
                queue.push_front((id, to, attempts));
                return Ok(Poll::Wait(w));
            }
            if let Err(e) = cx.hold().await {
                queue.push_front((id, to, attempts));
                return Err(e);
            }
            let result = cx.ports.compute.set_type(&id, &to).await;
            let throttled = matches!(&result, Err(e) if e.kind == ErrorKind::Throttled);
            cx.buckets.mutating.answered(throttled, cx.now());
            match result {
                Ok(()) => {
                    cx.call_settled(calls::MODIFY);
                    cx.run.resized_ids.insert(id.clone(), cx.tier.to_string());
                    let now = cx.now();
                    cx.resized
                        .entry(cx.tier.to_string())
                        .or_default()
                        .push_back((now, id.clone()));
                }
                Err(e) => {
                    let failures = cx.failures_after(calls::MODIFY, &e, attempts + 1);
                    match cx.decide(&e, failures, 1, Tries::unbounded_in_time()) {
                        Decision::Retry(w) | Decision::Recheck(w) => {
                            queue.push_front((id, to, attempts + 1));
                            return Ok(Poll::Wait(w));
                        }
                        Decision::Isolate | Decision::GiveUp => {
                            cx.call_settled(calls::MODIFY);
                            verify.retain(|(v, _)| *v != id);
                            if self.ahead {
                                self.left = true;
                            } else {
                                cx.fail(
                                    &id,
                                    format!("cannot change type to {to}: {}", api_name(&e)),
                                );
                            }
                        }
                    }
                }
            }
        }
        // Verify that the changes took effect.
        let ids: Vec<String> = verify.iter().map(|(i, _)| i.clone()).collect();
        let seen = match cx.observe(&ids, &mut self.tries).await? {
            Seen::Now(s) => s,
            Seen::Later(w) => return Ok(Poll::Wait(w)),
            Seen::GaveUp(e) => {
                if self.ahead {
                    self.left = true;
                } else {
                    cx.unseen(&ids, &e, false);
                }
                return Ok(Poll::Done);
            }
        };
        let wrong: Vec<(String, String)> = verify
            .iter()
            .filter(|(i, to)| seen.get(i).is_none_or(|x| x.instance_type != *to))
            .cloned()
            .collect();
        if wrong.is_empty() {
            return Ok(Poll::Done);
        }
        *checks += 1;
        if *checks > 3 {
            if self.ahead {
                self.left = true;
                return Ok(Poll::Done);
            }
            for (id, to) in wrong {
                let is = seen
                    .get(&id)
                    .map_or("unknown".to_string(), |x| x.instance_type.clone());
                cx.fail(
                    &id,
                    format!("type change to {to} did not take effect (still {is})"),
                );
            }
            return Ok(Poll::Done);
        }
        Ok(Poll::Wait(cx.settings.poll))
    }
}
