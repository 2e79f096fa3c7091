//! Readiness gates: a tier is ready when its instances pass their EC2 status checks,
//! or are healthy in every load balancer that holds them, within the gate's timeout.

use std::collections::BTreeSet;
use std::time::Duration;

use chrono::{DateTime, Utc};
use ec2_scheduler_core::model::Gate;

use super::lb::by_target;
use super::{Cx, Poll, api_name};
use crate::exec::policy::{Decision, Tries};
use crate::exec::{Result, after};
use crate::ports::{ApiError, ErrorKind, Health, StatusCheck};

pub(crate) struct Ready {
    gate: Gate,
    timeout: Duration,
    ids: Vec<String>,
    /// Consecutive checks that failed (their retries grow), and the gate's deadline.
    tries: Tries,
    deadline: DateTime<Utc>,
}

impl Ready {
    pub fn new(gate: Gate, timeout: Duration, ids: &[String], began: DateTime<Utc>) -> Self {
        let deadline = after(began, timeout);
        Ready {
            gate,
            timeout,
            ids: ids.to_vec(),
            tries: Tries::until(deadline),
            deadline,
        }
    }

    pub async fn poll(&mut self, cx: &mut Cx<'_, '_>) -> Result<Poll> {
        let live = cx.live(&self.ids);
        cx.hold().await?;
        let not_ready = match self.check(cx, &live).await {
            Ok(Ok(n)) => n,
            Ok(Err(wait)) => return Ok(Poll::Wait(wait)),
            Err(e) => return Ok(self.failed_check(cx, &live, &e)),
        };
        self.tries.failures = 0;
        if not_ready.is_empty() {
            return Ok(Poll::Done);
        }
        if cx.now() >= self.deadline {
            for id in not_ready {
                cx.fail(
                    &id,
                    format!(
                        "not ready ({}) within {} s",
                        self.gate.as_str(),
                        self.timeout.as_secs()
                    ),
                );
            }
            return Ok(Poll::Done);
        }
        Ok(Poll::Wait(cx.poll_until(self.deadline)))
    }

    /// The instances not ready yet; `Ok(Err(wait))` when the describe bucket is
    /// empty; `Err` when a check failed.
    async fn check(
        &self,
        cx: &mut Cx<'_, '_>,
        live: &[String],
    ) -> Result<Result<BTreeSet<String>, Duration>, ApiError> {
        let mut not_ready = BTreeSet::new();
        match self.gate {
            Gate::StatusChecks => {
                for chunk in live.chunks(100) {
                    if let Err(w) = cx.draw(&[("describe", 1.0, 1.0)]).await {
                        return Ok(Err(w));
                    }
                    let result = cx.ports.compute.status_checks(chunk).await;
                    let throttled = matches!(&result, Err(e) if e.kind == ErrorKind::Throttled);
                    let now = cx.now();
                    cx.buckets.describe.answered(throttled, now);
                    let ok: BTreeSet<String> = result?
                        .into_iter()
                        .filter(|(_, s)| *s == StatusCheck::Ok)
                        .map(|(i, _)| i)
                        .collect();
                    not_ready.extend(chunk.iter().filter(|i| !ok.contains(*i)).cloned());
                }
            }
            Gate::LoadBalancerHealthy => {
                let members = cx.ports.lb.memberships(live).await?;
                for (target, tids) in &by_target(members) {
                    not_ready.extend(
                        cx.ports
                            .lb
                            .health(target, tids)
                            .await?
                            .into_iter()
                            .filter(|(_, h)| *h != Health::Healthy)
                            .map(|(i, _)| i),
                    );
                }
            }
        }
        Ok(Ok(not_ready))
    }

    /// A check that failed: retried after a backoff that grows with each failure in
    /// a row and does not pass the deadline; at the deadline (or the bound on
    /// retries, or for an error that retrying cannot fix) the instances fail with
    /// the error that kept the check from answering.
    fn failed_check(&mut self, cx: &mut Cx<'_, '_>, live: &[String], e: &ApiError) -> Poll {
        self.tries.failures += 1;
        match cx.decide(e, self.tries.failures, 1, self.tries) {
            Decision::Retry(w) | Decision::Recheck(w) => Poll::Wait(w),
            Decision::Isolate | Decision::GiveUp => {
                let how = if e.retryable() {
                    "kept failing"
                } else {
                    "failed"
                };
                for id in live {
                    cx.fail(
                        id,
                        format!(
                            "not ready ({}) within {} s: the check {how}: {}",
                            self.gate.as_str(),
                            self.timeout.as_secs(),
                            api_name(e)
                        ),
                    );
                }
                Poll::Done
            }
        }
    }
}
