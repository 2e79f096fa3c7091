//! Load balancers: classic ELB and ELBv2 target groups (instance targets).
//!
//! Membership is discovered: every classic load balancer and every instance-type target
//! group of the region is asked which of the instances it holds.

use std::collections::BTreeSet;

use async_trait::async_trait;
use aws_sdk_elasticloadbalancing::types::Instance as ElbInstance;
use aws_sdk_elasticloadbalancingv2::types::{
    TargetDescription, TargetHealthStateEnum, TargetTypeEnum,
};
use ec2_scheduler_engine::ports::{ApiResult, Health, LbTarget, LoadBalancing};

use crate::{AwsCloud, api_error};

fn elb_instances(ids: &[String]) -> Vec<ElbInstance> {
    ids.iter()
        .map(|i| ElbInstance::builder().instance_id(i).build())
        .collect()
}

fn targets(ids: &[String], port: Option<i32>) -> Vec<TargetDescription> {
    ids.iter()
        .map(|i| TargetDescription::builder().id(i).set_port(port).build())
        .collect()
}

/// The health of each asked instance; those the load balancer does not hold are
/// `NotRegistered`.
fn answer(ids: &[String], found: &[(String, Health)]) -> Vec<(String, Health)> {
    ids.iter()
        .map(|id| {
            let h = found
                .iter()
                .find(|(i, _)| i == id)
                .map_or(Health::NotRegistered, |(_, h)| *h);
            (id.clone(), h)
        })
        .collect()
}

impl AwsCloud {
    /// Classic load balancers holding any of `ids`.
    async fn classic_memberships(
        &self,
        ids: &BTreeSet<&str>,
    ) -> ApiResult<Vec<(String, LbTarget)>> {
        let a = "elasticloadbalancing:DescribeLoadBalancers";
        let mut out = Vec::new();
        let mut pages = self.elb.describe_load_balancers().into_paginator().send();
        while let Some(page) = pages.next().await {
            let page = page.map_err(|e| api_error(a, &e))?;
            for lb in page.load_balancer_descriptions() {
                let Some(name) = lb.load_balancer_name() else {
                    continue;
                };
                for i in lb.instances() {
                    if let Some(id) = i.instance_id().filter(|id| ids.contains(id)) {
                        out.push((
                            id.to_string(),
                            LbTarget::Classic {
                                name: name.to_string(),
                            },
                        ));
                    }
                }
            }
        }
        Ok(out)
    }

    /// Instance-type target groups holding any of `ids` (draining targets excluded).
    async fn v2_memberships(&self, ids: &BTreeSet<&str>) -> ApiResult<Vec<(String, LbTarget)>> {
        let a = "elasticloadbalancing:DescribeTargetGroups";
        let mut arns = Vec::new();
        let mut pages = self.elbv2.describe_target_groups().into_paginator().send();
        while let Some(page) = pages.next().await {
            let page = page.map_err(|e| api_error(a, &e))?;
            for tg in page.target_groups() {
                if tg
                    .target_type()
                    .is_none_or(|t| *t == TargetTypeEnum::Instance)
                    && let Some(arn) = tg.target_group_arn()
                {
                    arns.push(arn.to_string());
                }
            }
        }
        let a = "elasticloadbalancing:DescribeTargetHealth";
        let mut out = Vec::new();
        for arn in arns {
            let h = self
                .elbv2
                .describe_target_health()
                .target_group_arn(&arn)
                .send()
                .await
                .map_err(|e| api_error(a, &e))?;
            for d in h.target_health_descriptions() {
                let Some(t) = d.target() else { continue };
                let Some(tid) = t.id() else { continue };
                let draining = d
                    .target_health()
                    .and_then(|x| x.state())
                    .is_some_and(|s| *s == TargetHealthStateEnum::Draining);
                if ids.contains(tid) && !draining {
                    out.push((
                        tid.to_string(),
                        LbTarget::TargetGroup {
                            arn: arn.clone(),
                            port: t.port(),
                        },
                    ));
                }
            }
        }
        Ok(out)
    }
}

#[async_trait]
impl LoadBalancing for AwsCloud {
    async fn memberships(&self, ids: &[String]) -> ApiResult<Vec<(String, LbTarget)>> {
        let set: BTreeSet<&str> = ids.iter().map(String::as_str).collect();
        let mut out = self.classic_memberships(&set).await?;
        out.extend(self.v2_memberships(&set).await?);
        Ok(out)
    }

    async fn register(&self, target: &LbTarget, ids: &[String]) -> ApiResult<()> {
        match target {
            LbTarget::Classic { name } => {
                let a = "elasticloadbalancing:RegisterInstancesWithLoadBalancer";
                self.elb
                    .register_instances_with_load_balancer()
                    .load_balancer_name(name)
                    .set_instances(Some(elb_instances(ids)))
                    .send()
                    .await
                    .map_err(|e| api_error(a, &e))?;
            }
            LbTarget::TargetGroup { arn, port } => {
                let a = "elasticloadbalancing:RegisterTargets";
                self.elbv2
                    .register_targets()
                    .target_group_arn(arn)
                    .set_targets(Some(targets(ids, *port)))
                    .send()
                    .await
                    .map_err(|e| api_error(a, &e))?;
            }
        }
        Ok(())
    }

    async fn deregister(&self, target: &LbTarget, ids: &[String]) -> ApiResult<()> {
        match target {
            LbTarget::Classic { name } => {
                let a = "elasticloadbalancing:DeregisterInstancesFromLoadBalancer";
                self.elb
                    .deregister_instances_from_load_balancer()
                    .load_balancer_name(name)
                    .set_instances(Some(elb_instances(ids)))
                    .send()
                    .await
                    .map_err(|e| api_error(a, &e))?;
            }
            LbTarget::TargetGroup { arn, port } => {
                let a = "elasticloadbalancing:DeregisterTargets";
                self.elbv2
                    .deregister_targets()
                    .target_group_arn(arn)
                    .set_targets(Some(targets(ids, *port)))
                    .send()
                    .await
                    .map_err(|e| api_error(a, &e))?;
            }
        }
        Ok(())
    }

    async fn health(&self, target: &LbTarget, ids: &[String]) -> ApiResult<Vec<(String, Health)>> {
        match target {
            LbTarget::Classic { name } => {
                let a = "elasticloadbalancing:DescribeInstanceHealth";
                // Asking about instances the load balancer no longer holds is an error,
                // so ask about all of its instances and pick ours.
                let out = self
                    .elb
                    .describe_instance_health()
                    .load_balancer_name(name)
                    .send()
                    .await
                    .map_err(|e| api_error(a, &e))?;
                let found: Vec<(String, Health)> = out
                    .instance_states()
                    .iter()
                    .filter_map(|s| {
                        let id = s.instance_id()?;
                        let h = match s.state() {
                            Some("InService") => Health::Healthy,
                            Some("OutOfService") => Health::Unhealthy,
                            _ => Health::Initial,
                        };
                        Some((id.to_string(), h))
                    })
                    .collect();
                Ok(answer(ids, &found))
            }
            LbTarget::TargetGroup { arn, .. } => {
                let a = "elasticloadbalancing:DescribeTargetHealth";
                let out = self
                    .elbv2
                    .describe_target_health()
                    .target_group_arn(arn)
                    .send()
                    .await
                    .map_err(|e| api_error(a, &e))?;
                let found: Vec<(String, Health)> = out
                    .target_health_descriptions()
                    .iter()
                    .filter_map(|d| {
                        let id = d.target()?.id()?.to_string();
                        let h = match d.target_health().and_then(|h| h.state()) {
                            Some(TargetHealthStateEnum::Healthy) => Health::Healthy,
                            Some(TargetHealthStateEnum::Initial) => Health::Initial,
                            Some(TargetHealthStateEnum::Draining) => Health::Draining,
                            Some(TargetHealthStateEnum::Unused) => Health::NotRegistered,
                            _ => Health::Unhealthy,
                        };
                        Some((id, h))
                    })
                    .collect();
                Ok(answer(ids, &found))
            }
        }
    }
}
