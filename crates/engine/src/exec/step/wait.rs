//! Waiting: for instances to reach a state, and pauses.

use std::collections::BTreeSet;
use std::time::Duration;

use chrono::{DateTime, Utc};
use ec2_scheduler_core::InstanceState;
use ec2_scheduler_core::plan::PauseReason;

use super::{Began, Cx, Poll, Seen};
use crate::exec::policy::Tries;
use crate::exec::{Result, after, dur};
use crate::run::RunEvent;

/// A pause of a fixed length.
pub(crate) struct Pause {
    until: DateTime<Utc>,
}

impl Pause {
    pub fn new(seconds: u64, why: PauseReason, cx: &mut Cx<'_, '_>, began: Began) -> Self {
        if began.first {
            cx.record(RunEvent::Pausing { seconds, why });
        }
        Pause {
            until: after(began.at, Duration::from_secs(seconds)),
        }
    }

    pub fn poll(&mut self, cx: &mut Cx<'_, '_>) -> Poll {
        let now = cx.now();
        if now >= self.until {
            Poll::Done
        } else {
            Poll::Wait(dur(self.until - now))
        }
    }
}

/// Waits until the step's instances are in `state`, up to the wait timeout. It looks
/// once at once, then `poll` after it began, then every `fast_poll` while the
/// describe bucket allows (else every `poll`), each time at the instances not yet
/// seen in `state` only.
pub(crate) struct WaitUntil {
    state: InstanceState,
    ids: Vec<String>,
    /// Instances seen in `state`.
    reached: BTreeSet<String>,
    tries: Tries,
    began: DateTime<Utc>,
    deadline: DateTime<Utc>,
}

impl WaitUntil {
    pub fn new(
        state: InstanceState,
        ids: &[String],
        cx: &mut Cx<'_, '_>,
        began: DateTime<Utc>,
    ) -> Self {
        let deadline = after(began, cx.settings.wait_timeout);
        WaitUntil {
            state,
            ids: ids.to_vec(),
            reached: BTreeSet::new(),
            tries: Tries::until(deadline),
            began,
            deadline,
        }
    }

    pub async fn poll(&mut self, cx: &mut Cx<'_, '_>) -> Result<Poll> {
        let state = self.state;
        let ids: Vec<String> = cx
            .live(&self.ids)
            .into_iter()
            .filter(|i| !self.reached.contains(i))
            .collect();
        let seen = match cx.observe(&ids, &mut self.tries).await? {
            Seen::Now(s) => s,
            Seen::Later(w) => return Ok(Poll::Wait(w)),
            Seen::GaveUp(e) => {
                cx.unseen(&ids, &e, false);
                return Ok(Poll::Done);
            }
        };
        let mut missing = Vec::new();
        for id in &ids {
            match seen.get(id) {
                Some(i) if i.state == state => {
                    self.reached.insert(id.clone());
                }
                Some(i)
                    if state == InstanceState::Running
                        && i.state.is_down()
                        && cx.run.started_ids.contains_key(id)
                        && i.state_reason.is_some() =>
                {
                    let reason = i.state_reason.clone().unwrap_or_default();
                    cx.fail(
                        id,
                        format!("started, then fell back to {}: {reason}", i.state),
                    );
                }
                Some(i)
                    if state == InstanceState::Stopped && i.state == InstanceState::Terminated => {}
                Some(_) => missing.push(id.clone()),
                None => cx.fail(id, "instance not found".into()),
            }
        }
        if missing.is_empty() {
            return Ok(Poll::Done);
        }
        let deadline = self.deadline;
        let now = cx.now();
        if now >= deadline {
            let secs = cx.settings.wait_timeout.as_secs();
            for id in missing {
                cx.fail(&id, format!("did not reach {state} within {secs} s"));
            }
            return Ok(Poll::Done);
        }
        let first = after(self.began, cx.settings.poll);
        let requests = missing.len().div_ceil(1000) as f64;
        let wait = if now < first {
            dur(first - now)
        } else if requests / cx.settings.fast_poll.as_secs_f64().max(1e-3)
            <= cx.buckets.describe.rate() / 2.0
        {
            cx.settings.fast_poll
        } else {
            cx.settings.poll
        };
        Ok(Poll::Wait(wait.min(dur(deadline - now))))
    }
}
