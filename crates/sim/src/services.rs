//! The simulated region's load balancers, override-file probe, notifications and
//! request meter.

use std::collections::BTreeMap;

use async_trait::async_trait;
use ec2_scheduler_core::InstanceState;
use ec2_scheduler_core::model::{Name, Os};
use ec2_scheduler_engine::ports::{
    ApiResult, ErrorKind, Health, LbTarget, LoadBalancing, Meter, Notification, Notifier,
    OverrideProbe, ProbeResult,
};

use super::*;

#[async_trait]
impl LoadBalancing for Region {
    async fn memberships(&self, ids: &[String]) -> ApiResult<Vec<(String, LbTarget)>> {
        let mut s = self.st();
        s.settle();
        let storm = s.storm("elb:DescribeMemberships");
        s.call("elb:DescribeMemberships", &[], storm)?;
        let mut out = Vec::new();
        for (t, regs) in &s.lbs {
            for id in ids {
                if regs.get(id).is_some_and(|r| r.draining_until.is_none()) {
                    out.push((id.clone(), t.clone()));
                }
            }
        }
        Ok(out)
    }

    async fn register(&self, target: &LbTarget, ids: &[String]) -> ApiResult<()> {
        let mut s = self.st();
        s.settle();
        let a = "elb:Register";
        if let Err(e) = s.storm(a) {
            return s.call(a, ids, Err(e));
        }
        let not_running: Vec<String> = ids
            .iter()
            .filter(|i| {
                s.instances
                    .get(*i)
                    .is_none_or(|x| x.inst.state != InstanceState::Running)
            })
            .cloned()
            .collect();
        if !not_running.is_empty() {
            let e = err(
                ErrorKind::Other,
                a,
                "InvalidTarget",
                format!("targets are not running: {}", not_running.join(", ")),
                not_running,
            );
            return s.call(a, ids, Err(e));
        }
        let now = s.now;
        for id in ids {
            s.lbs.entry(target.clone()).or_default().insert(
                id.clone(),
                Registration {
                    since: now,
                    draining_until: None,
                },
            );
            s.log.push(LogEntry::Lb {
                at: now,
                instance: id.clone(),
                target: target.clone(),
                registered: true,
            });
        }
        s.call(a, ids, Ok(()))
    }

    async fn deregister(&self, target: &LbTarget, ids: &[String]) -> ApiResult<()> {
        let mut s = self.st();
        s.settle();
        if let Err(e) = s.storm("elb:Deregister") {
            return s.call("elb:Deregister", ids, Err(e));
        }
        let now = s.now;
        let until = now + secs(s.cfg.drain_secs);
        for id in ids {
            if let Some(r) = s.lbs.get_mut(target).and_then(|regs| regs.get_mut(id)) {
                r.draining_until = Some(until);
                s.log.push(LogEntry::Lb {
                    at: now,
                    instance: id.clone(),
                    target: target.clone(),
                    registered: false,
                });
            }
        }
        s.call("elb:Deregister", ids, Ok(()))
    }

    async fn health(&self, target: &LbTarget, ids: &[String]) -> ApiResult<Vec<(String, Health)>> {
        let mut s = self.st();
        s.settle();
        let storm = s.storm("elb:DescribeHealth");
        s.call("elb:DescribeHealth", &[], storm)?;
        let now = s.now;
        let healthy_after = secs(s.cfg.health_interval_secs * f64::from(s.cfg.healthy_threshold));
        let regs = s.lbs.get(target);
        Ok(ids
            .iter()
            .map(|id| {
                let h = match regs.and_then(|r| r.get(id)) {
                    None => Health::NotRegistered,
                    Some(r) if r.draining_until.is_some() => Health::Draining,
                    Some(r) => match s.instances.get(id).and_then(|i| i.running_since) {
                        None => Health::Unhealthy,
                        Some(since) if now - r.since.max(since) >= healthy_after => Health::Healthy,
                        Some(_) => Health::Initial,
                    },
                };
                (id.clone(), h)
            })
            .collect())
    }
}

#[async_trait]
impl OverrideProbe for Region {
    async fn send(&self, ids: &[String], _path: &str, _os: Os) -> ApiResult<String> {
        let mut s = self.st();
        s.settle();
        let a = "ssm:SendCommand";
        State::too_many(a, ids, 50)?;
        let handle = format!("cmd-{:04}", s.commands.len() + 1);
        let now = s.now;
        s.commands.insert(
            handle.clone(),
            Command {
                sent: now,
                ids: ids.to_vec(),
            },
        );
        s.call(a, ids, Ok(()))?;
        Ok(handle)
    }

    async fn poll(&self, handle: &str, ids: &[String]) -> ApiResult<Vec<(String, ProbeResult)>> {
        let mut s = self.st();
        s.settle();
        let a = "ssm:GetCommandInvocation";
        let Some(cmd) = s.commands.get(handle) else {
            let e = err(
                ErrorKind::NotFound,
                a,
                "InvalidCommandId",
                format!("no command {handle}"),
                vec![],
            );
            return s.call(a, ids, Err(e)).map(|()| Vec::new());
        };
        let answered = s.now - cmd.sent >= secs(s.cfg.ssm_secs);
        let sent_to = cmd.ids.clone();
        let out = ids
            .iter()
            .map(|id| {
                let running = s
                    .instances
                    .get(id)
                    .is_some_and(|i| i.inst.state == InstanceState::Running);
                let r = if !sent_to.contains(id) {
                    ProbeResult::Unknown {
                        reason: "not part of this command".into(),
                    }
                } else if !running {
                    ProbeResult::Unknown {
                        reason: "instance not running".into(),
                    }
                } else {
                    match s.ssm.get(id).copied().unwrap_or(SsmOutcome::Absent) {
                        SsmOutcome::Timeout => ProbeResult::Pending,
                        _ if !answered => ProbeResult::Pending,
                        SsmOutcome::Absent => ProbeResult::Absent,
                        SsmOutcome::Present => ProbeResult::Present,
                        SsmOutcome::AgentOffline => ProbeResult::Unknown {
                            reason: "SSM agent is offline (Undeliverable)".into(),
                        },
                    }
                };
                (id.clone(), r)
            })
            .collect();
        s.call(a, ids, Ok(()))?;
        Ok(out)
    }
}

impl Meter for Region {
    fn requests(&self) -> BTreeMap<String, u64> {
        self.st().requests.clone()
    }
}

#[async_trait]
impl Notifier for Region {
    async fn publish(&self, topic: &Name, note: &Notification) -> ApiResult<()> {
        let mut s = self.st();
        s.published.push((topic.to_string(), note.clone()));
        s.call("sns:Publish", &[], Ok(()))
    }
}
