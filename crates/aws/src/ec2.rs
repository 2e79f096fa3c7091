//! EC2: observing members with server-side filters, starting, stopping, resizing,
//! status checks.

use async_trait::async_trait;
use aws_sdk_ec2::types::{AttributeValue, Filter, InstanceStateName, SummaryStatus};
use ec2_scheduler_core::{Instance, InstanceState};
use ec2_scheduler_engine::ports::{
    ApiResult, Compute, MemberFilter, StatusCheck, TAGGED_VALUES_MAX,
};

use crate::{AwsCloud, api_error};

fn state(s: Option<&InstanceStateName>) -> InstanceState {
    match s {
        Some(InstanceStateName::Pending) => InstanceState::Pending,
        Some(InstanceStateName::Running) => InstanceState::Running,
        Some(InstanceStateName::ShuttingDown) => InstanceState::ShuttingDown,
        Some(InstanceStateName::Stopping) => InstanceState::Stopping,
        Some(InstanceStateName::Stopped) => InstanceState::Stopped,
        // Terminated, and anything unknown: never acted on.
        _ => InstanceState::Terminated,
    }
}

fn instance(i: &aws_sdk_ec2::types::Instance) -> Option<Instance> {
    let id = i.instance_id()?.to_string();
    let reason = i
        .state_reason()
        .and_then(|r| match (r.code(), r.message()) {
            (_, Some(m)) => Some(m.to_string()),
            (Some(c), None) => Some(c.to_string()),
            (None, None) => None,
        });
    Some(Instance {
        id,
        state: state(i.state().and_then(|s| s.name())),
        instance_type: i
            .instance_type()
            .map(|t| t.as_str().to_string())
            .unwrap_or_default(),
        az: i
            .placement()
            .and_then(|p| p.availability_zone())
            .unwrap_or_default()
            .to_string(),
        vpc_id: i.vpc_id().map(str::to_string),
        tags: i
            .tags()
            .iter()
            .filter_map(|t| {
                Some((
                    t.key()?.to_string(),
                    t.value().unwrap_or_default().to_string(),
                ))
            })
            .collect(),
        state_reason: reason,
        load_balancers: None,
    })
}

fn filter(name: &str, values: impl IntoIterator<Item = String>) -> Filter {
    Filter::builder()
        .name(name)
        .set_values(Some(values.into_iter().collect()))
        .build()
}

impl AwsCloud {
    async fn describe_pages(
        &self,
        req: aws_sdk_ec2::operation::describe_instances::builders::DescribeInstancesFluentBuilder,
    ) -> ApiResult<Vec<Instance>> {
        let a = "ec2:DescribeInstances";
        let mut pages = req.into_paginator().send();
        let mut out = Vec::new();
        while let Some(page) = pages.next().await {
            match page {
                Ok(page) => out.extend(
                    page.reservations()
                        .iter()
                        .flat_map(|r| r.instances())
                        .filter_map(instance),
                ),
                Err(e) => return Err(api_error(a, &e)),
            }
        }
        Ok(out)
    }
}

#[async_trait]
impl Compute for AwsCloud {
    async fn describe(&self, f: &MemberFilter) -> ApiResult<Vec<Instance>> {
        // Server-side filters narrow the answer to the workload; the engine checks
        // membership again on what comes back.
        let mut req = self
            .ec2
            .describe_instances()
            .filters(filter(
                &format!("tag:{}", f.workload_tag_key),
                [f.workload_tag_value.clone()],
            ))
            .filters(filter(
                &format!("tag:{}", f.tier_tag_key),
                f.tier_values.clone(),
            ))
            .filters(filter(
                "instance-state-name",
                ["pending", "running", "stopping", "stopped"].map(String::from),
            ))
            .max_results(self.page_size);
        if let Some(v) = &f.vpc {
            req = req.filters(filter("vpc-id", [v.clone()]));
        }
        self.describe_pages(req).await
    }

    async fn describe_tagged(&self, key: &str, values: &[String]) -> ApiResult<Vec<Instance>> {
        let mut out = Vec::new();
        for chunk in values.chunks(TAGGED_VALUES_MAX) {
            let req = self
                .ec2
                .describe_instances()
                .filters(filter(&format!("tag:{key}"), chunk.iter().cloned()))
                .filters(filter(
                    "instance-state-name",
                    ["pending", "running", "stopping", "stopped"].map(String::from),
                ))
                .max_results(self.page_size);
            out.extend(self.describe_pages(req).await?);
        }
        Ok(out)
    }

    async fn describe_ids(&self, ids: &[String]) -> ApiResult<Vec<Instance>> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        // By filter rather than InstanceIds: an id that vanished must not fail the call.
        let req = self
            .ec2
            .describe_instances()
            .filters(filter("instance-id", ids.iter().cloned()))
            .max_results(self.page_size);
        self.describe_pages(req).await
    }

    async fn start(&self, ids: &[String]) -> ApiResult<()> {
        let a = "ec2:StartInstances";
        self.ec2
            .start_instances()
            .set_instance_ids(Some(ids.to_vec()))
            .send()
            .await
            .map_err(|e| api_error(a, &e))?;
        Ok(())
    }

    async fn stop(&self, ids: &[String], hibernate: bool) -> ApiResult<()> {
        let a = "ec2:StopInstances";
        let mut req = self
            .ec2
            .stop_instances()
            .set_instance_ids(Some(ids.to_vec()));
        if hibernate {
            req = req.hibernate(true);
        }
        req.send().await.map_err(|e| api_error(a, &e))?;
        Ok(())
    }

    async fn set_type(&self, id: &str, instance_type: &str) -> ApiResult<()> {
        let a = "ec2:ModifyInstanceAttribute";
        self.ec2
            .modify_instance_attribute()
            .instance_id(id)
            .instance_type(AttributeValue::builder().value(instance_type).build())
            .send()
            .await
            .map_err(|e| api_error(a, &e))?;
        Ok(())
    }

    async fn status_checks(&self, ids: &[String]) -> ApiResult<Vec<(String, StatusCheck)>> {
        let a = "ec2:DescribeInstanceStatus";
        let mut pages = self
            .ec2
            .describe_instance_status()
            .set_instance_ids(Some(ids.to_vec()))
            .include_all_instances(true)
            .into_paginator()
            .send();
        let mut out = Vec::new();
        while let Some(page) = pages.next().await {
            match page {
                Ok(page) => {
                    for s in page.instance_statuses() {
                        let Some(id) = s.instance_id() else { continue };
                        let inst = s.instance_status().and_then(|x| x.status());
                        let sys = s.system_status().and_then(|x| x.status());
                        let check = match (inst, sys) {
                            (Some(SummaryStatus::Ok), Some(SummaryStatus::Ok)) => StatusCheck::Ok,
                            (Some(SummaryStatus::Impaired), _)
                            | (_, Some(SummaryStatus::Impaired)) => StatusCheck::Impaired,
                            (Some(SummaryStatus::Initializing), _)
                            | (_, Some(SummaryStatus::Initializing)) => StatusCheck::Initializing,
                            _ => StatusCheck::Unknown,
                        };
                        out.push((id.to_string(), check));
                    }
                }
                Err(e) => return Err(api_error(a, &e)),
            }
        }
        Ok(out)
    }
}
