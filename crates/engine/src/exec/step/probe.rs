//! The override-file check: before a stop, ask each instance (over SSM, 50 a command)
//! whether the file that keeps it running is there. No clear "absent" keeps the
//! instance running.

use std::collections::{BTreeSet, VecDeque};
use std::time::Duration;

use chrono::{DateTime, Utc};
use ec2_scheduler_core::model::Os;

use super::{Cx, Poll, api_name};
use crate::exec::policy::{Decision, Tries};
use crate::exec::{Result, after};
use crate::ports::ProbeResult;

pub(crate) struct Probe {
    path: String,
    os: Os,
    /// Commands still to send (instances, retries so far).
    unsent: VecDeque<(Vec<String>, u32)>,
    /// Commands sent, by handle.
    sent: Vec<(String, Vec<String>)>,
    /// Instances with an answer (or kept without one).
    decided: BTreeSet<String>,
    deadline: DateTime<Utc>,
    /// Consecutive failed polls for answers.
    polls: Tries,
}

impl Probe {
    pub fn new(
        path: &str,
        os: Os,
        ids: &[String],
        cx: &mut Cx<'_, '_>,
        began: DateTime<Utc>,
    ) -> Self {
        let deadline = after(began, cx.settings.probe_timeout);
        Probe {
            path: path.to_string(),
            os,
            unsent: cx.live(ids).chunks(50).map(|c| (c.to_vec(), 0)).collect(),
            sent: Vec::new(),
            decided: BTreeSet::new(),
            deadline,
            polls: Tries::until(deadline),
        }
    }

    pub async fn poll(&mut self, cx: &mut Cx<'_, '_>) -> Result<Poll> {
        let path = self.path.clone();
        while let Some((chunk, attempts)) = self.unsent.pop_front() {
            if let Err(e) = cx.hold().await {
                self.unsent.push_front((chunk, attempts));
                return Err(e);
            }
            match cx.ports.probe.send(&chunk, &path, self.os).await {
                Ok(h) => self.sent.push((h, chunk)),
                Err(e) => match cx.decide(&e, attempts + 1, 1, Tries::until(self.deadline)) {
                    Decision::Retry(w) | Decision::Recheck(w) => {
                        self.unsent.push_front((chunk, attempts + 1));
                        return Ok(Poll::Wait(w));
                    }
                    Decision::Isolate | Decision::GiveUp => {
                        for id in &chunk {
                            cx.keep(id, format!("override-file check could not be sent ({}); kept running to be safe", api_name(&e)));
                            self.decided.insert(id.clone());
                        }
                    }
                },
            }
        }
        let mut retry = None;
        if !self.sent.is_empty() {
            cx.hold().await?;
        }
        for (handle, chunk) in &self.sent {
            let open: Vec<String> = chunk
                .iter()
                .filter(|i| !self.decided.contains(*i))
                .cloned()
                .collect();
            if open.is_empty() {
                continue;
            }
            match cx.ports.probe.poll(handle, &open).await {
                Ok(results) => {
                    self.polls.failures = 0;
                    for (id, r) in results {
                        match r {
                            ProbeResult::Pending => {}
                            ProbeResult::Absent => {
                                self.decided.insert(id);
                            }
                            ProbeResult::Present => {
                                cx.keep(&id, format!("override file {path} is present"));
                                self.decided.insert(id);
                            }
                            ProbeResult::Unknown { reason } => {
                                cx.keep(&id, format!("could not confirm that {path} is absent ({reason}); kept running to be safe"));
                                self.decided.insert(id);
                            }
                        }
                    }
                }
                Err(e) => {
                    self.polls.failures += 1;
                    match cx.decide(&e, self.polls.failures, 1, self.polls) {
                        // Ask again on the next pass, after the backoff.
                        Decision::Retry(w) | Decision::Recheck(w) => {
                            retry = Some(retry.map_or(w, |r: Duration| r.max(w)));
                        }
                        Decision::Isolate | Decision::GiveUp => {
                            for id in &open {
                                cx.keep(
                                    id,
                                    format!(
                                        "override-file check failed ({}); kept running to be safe",
                                        api_name(&e)
                                    ),
                                );
                                self.decided.insert(id.clone());
                            }
                        }
                    }
                }
            }
        }
        let now = cx.now();
        let open: Vec<String> = self
            .sent
            .iter()
            .flat_map(|(_, c)| c)
            .filter(|i| !self.decided.contains(*i))
            .cloned()
            .collect();
        if open.is_empty() {
            return Ok(Poll::Done);
        }
        if now >= self.deadline {
            let secs = cx.settings.probe_timeout.as_secs();
            for id in open {
                cx.keep(
                    &id,
                    format!("no answer about {path} within {secs} s; kept running to be safe"),
                );
            }
            return Ok(Poll::Done);
        }
        let wait = cx.poll_until(self.deadline);
        Ok(Poll::Wait(retry.unwrap_or(wait)))
    }
}
