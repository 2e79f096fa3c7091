//! Load balancers: taking instances out before a stop (and waiting for draining), and
//! putting them back after a start, where they were taken out of and where their tier
//! says they belong.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::time::Duration;

use chrono::{DateTime, Utc};
use ec2_scheduler_core::InstanceState;

use super::{Began, Cx, Poll, Seen, api_name, calls};
use crate::exec::policy::{Decision, Tries};
use crate::exec::{Result, after};
use crate::ports::{Health, LbTarget};
use crate::run::RunEvent;

/// Instances grouped by the load balancer that holds them.
pub(crate) fn by_target(members: Vec<(String, LbTarget)>) -> BTreeMap<LbTarget, Vec<String>> {
    let mut out: BTreeMap<LbTarget, Vec<String>> = BTreeMap::new();
    for (id, t) in members {
        out.entry(t).or_default().push(id);
    }
    out
}

pub(crate) struct Deregister {
    ids: Vec<String>,
    phase: Phase,
    tries: Tries,
    began: Began,
}

enum Phase {
    /// Finding the load balancers that hold the instances.
    Find,
    /// Taking them out (target, instances, retries so far); `done` are taken out.
    Take {
        pending: VecDeque<(LbTarget, Vec<String>, u32)>,
        done: Vec<(LbTarget, Vec<String>)>,
    },
    /// Waiting for connections to drain, up to the drain timeout.
    Drain {
        targets: Vec<(LbTarget, Vec<String>)>,
        deadline: DateTime<Utc>,
    },
}

impl Deregister {
    pub fn new(ids: &[String], _cx: &mut Cx<'_, '_>, began: Began) -> Self {
        Deregister {
            ids: ids.to_vec(),
            phase: Phase::Find,
            // Bounded by attempts; the drain timeout is for draining.
            tries: Tries::unbounded_in_time(),
            began,
        }
    }

    pub async fn poll(&mut self, cx: &mut Cx<'_, '_>) -> Result<Poll> {
        if let Phase::Find = self.phase {
            let live = cx.live(&self.ids);
            if live.is_empty() {
                return Ok(Poll::Done);
            }
            cx.hold().await?;
            let members = match cx.ports.lb.memberships(&live).await {
                Ok(m) => m,
                Err(e) => {
                    self.tries.failures =
                        cx.failures_after(calls::FIND_LB, &e, self.tries.failures + 1);
                    match cx.decide(&e, self.tries.failures, 1, self.tries) {
                        Decision::Retry(w) | Decision::Recheck(w) => return Ok(Poll::Wait(w)),
                        Decision::Isolate | Decision::GiveUp => {
                            cx.call_settled(calls::FIND_LB);
                            // Stopping without deregistering would send traffic to a
                            // stopping instance; keep them running instead.
                            for id in &live {
                                cx.keep(
                                    id,
                                    format!(
                                        "could not find its load balancers ({}); kept running",
                                        api_name(&e)
                                    ),
                                );
                            }
                            return Ok(Poll::Done);
                        }
                    }
                }
            };
            self.tries.failures = 0;
            cx.call_settled(calls::FIND_LB);
            // Picked up after its instances were taken out (by an earlier tick of
            // this run, in this process or another): the store says from where; the
            // draining goes on, counted from when the step began.
            let parked = if members.is_empty() && !self.began.first {
                cx.ports.store.parked(&cx.run.workload, &live).await?
            } else {
                Vec::new()
            };
            if parked.is_empty() {
                cx.ports.store.park(&cx.run.workload, &members).await?;
                self.phase = Phase::Take {
                    pending: by_target(members)
                        .into_iter()
                        .map(|(t, ids)| (t, ids, 0))
                        .collect(),
                    done: Vec::new(),
                };
            } else {
                self.phase = Phase::Drain {
                    targets: by_target(parked).into_iter().collect(),
                    deadline: after(self.began.at, cx.settings.drain_timeout),
                };
            }
        }
        if let Phase::Take { pending, done } = &mut self.phase {
            while let Some((target, tids, attempts)) = pending.pop_front() {
                if let Err(e) = cx.hold().await {
                    pending.push_front((target, tids, attempts));
                    return Err(e);
                }
                match cx.ports.lb.deregister(&target, &tids).await {
                    Ok(()) => {
                        cx.call_settled(calls::DEREGISTER);
                        cx.record(RunEvent::Deregistered {
                            target: target.to_string(),
                            instances: tids.len(),
                        });
                        done.push((target, tids));
                    }
                    Err(e) => {
                        let failures = cx.failures_after(calls::DEREGISTER, &e, attempts + 1);
                        match cx.decide(&e, failures, 1, Tries::unbounded_in_time()) {
                            Decision::Retry(w) | Decision::Recheck(w) => {
                                pending.push_front((target, tids, attempts + 1));
                                return Ok(Poll::Wait(w));
                            }
                            Decision::Isolate | Decision::GiveUp => {
                                cx.call_settled(calls::DEREGISTER);
                                cx.record(RunEvent::DeregistrationFailed {
                                    target: target.to_string(),
                                    error: api_name(&e),
                                });
                                for id in &tids {
                                    cx.keep(
                                        id,
                                        format!("could not be taken out of {target}; kept running"),
                                    );
                                }
                            }
                        }
                    }
                }
            }
            self.phase = Phase::Drain {
                targets: std::mem::take(done),
                deadline: after(cx.now(), cx.settings.drain_timeout),
            };
        }
        let Phase::Drain { targets, deadline } = &self.phase else {
            return Ok(Poll::Done);
        };
        let mut draining = false;
        cx.hold().await?;
        for (target, tids) in targets {
            match cx.ports.lb.health(target, tids).await {
                Ok(h) => draining |= h.iter().any(|(_, h)| *h == Health::Draining),
                // Not knowing is waiting, up to the drain timeout.
                Err(e) if e.retryable() => {
                    cx.run.retried += 1;
                    draining = true;
                }
                Err(_) => {}
            }
        }
        if !draining {
            return Ok(Poll::Done);
        }
        if cx.now() >= *deadline {
            let seconds = cx.settings.drain_timeout.as_secs();
            cx.record(RunEvent::DrainingNotFinished { seconds });
            return Ok(Poll::Done);
        }
        Ok(Poll::Wait(cx.poll_until(*deadline)))
    }
}

pub(crate) struct Register {
    ids: Vec<String>,
    tries: Tries,
    /// The longest wait for instances still pending.
    deadline: DateTime<Utc>,
    /// Registrations made, and retries by target.
    registered: BTreeSet<(String, LbTarget)>,
    attempts: BTreeMap<LbTarget, u32>,
}

impl Register {
    pub fn new(ids: &[String], cx: &mut Cx<'_, '_>, began: DateTime<Utc>) -> Self {
        Register {
            ids: ids.to_vec(),
            tries: Tries::unbounded_in_time(),
            deadline: after(began, cx.settings.wait_timeout),
            registered: BTreeSet::new(),
            attempts: BTreeMap::new(),
        }
    }

    pub async fn poll(&mut self, cx: &mut Cx<'_, '_>) -> Result<Poll> {
        let live = cx.live(&self.ids);
        // Where they were taken out of, and where the tier says they belong.
        let mut parked = cx.ports.store.parked(&cx.run.workload, &live).await?;
        let configured: Vec<LbTarget> = cx
            .spec()
            .map(|t| {
                t.load_balancers
                    .iter()
                    .map(|n| LbTarget::from_name(n.as_str()))
                    .collect()
            })
            .unwrap_or_default();
        parked.extend(
            live.iter()
                .flat_map(|id| configured.iter().map(move |t| (id.clone(), t.clone()))),
        );
        parked.sort();
        parked.dedup();
        parked.retain(|p| !self.registered.contains(p));
        if parked.is_empty() {
            return self.finish(cx).await;
        }
        let pids: Vec<String> = parked
            .iter()
            .map(|(i, _)| i.clone())
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect();
        let seen = match cx.observe(&pids, &mut self.tries).await? {
            Seen::Now(s) => s,
            Seen::Later(w) => return Ok(Poll::Wait(w)),
            Seen::GaveUp(e) => {
                cx.unseen(&pids, &e, false);
                return Ok(Poll::Done);
            }
        };
        if cx.now() < self.deadline && seen.values().any(|i| i.state == InstanceState::Pending) {
            return Ok(Poll::Wait(cx.poll_until(self.deadline)));
        }
        let mut by_target: BTreeMap<LbTarget, Vec<String>> = BTreeMap::new();
        for (id, t) in parked {
            if seen
                .get(&id)
                .is_some_and(|i| i.state == InstanceState::Running && cx.is_member(i))
            {
                by_target.entry(t).or_default().push(id);
            }
        }
        let mut wait = None;
        for (target, tids) in &by_target {
            cx.hold().await?;
            match cx.ports.lb.register(target, tids).await {
                Ok(()) => {
                    cx.call_settled(&register_call(target));
                    cx.record(RunEvent::Registered {
                        target: target.to_string(),
                        instances: tids.len(),
                    });
                    self.registered
                        .extend(tids.iter().map(|i| (i.clone(), target.clone())));
                }
                Err(e) => {
                    let n = self.attempts.entry(target.clone()).or_default();
                    *n += 1;
                    let n = *n;
                    let n = cx.failures_after(&register_call(target), &e, n);
                    match cx.decide(&e, n, 1, Tries::unbounded_in_time()) {
                        Decision::Retry(w) | Decision::Recheck(w) => {
                            wait = Some(wait.map_or(w, |x: Duration| x.max(w)));
                        }
                        Decision::Isolate | Decision::GiveUp => {
                            cx.call_settled(&register_call(target));
                            for id in tids {
                                cx.fail(
                                    id,
                                    format!(
                                        "could not be registered with {target}: {}",
                                        api_name(&e)
                                    ),
                                );
                            }
                        }
                    }
                }
            }
        }
        match wait {
            Some(w) => Ok(Poll::Wait(w)),
            None => self.finish(cx).await,
        }
    }

    async fn finish(&self, cx: &mut Cx<'_, '_>) -> Result<Poll> {
        // Forget where they were taken out of only once they are all back.
        let done: Vec<String> = self
            .registered
            .iter()
            .map(|(i, _)| i.clone())
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect();
        cx.ports.store.unpark(&cx.run.workload, &done).await?;
        Ok(Poll::Done)
    }
}

/// Registrations are counted by target: one load balancer refusing does not count
/// against another.
fn register_call(target: &LbTarget) -> String {
    format!("{} {target}", calls::REGISTER)
}
