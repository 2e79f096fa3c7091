//! EventBridge Scheduler: the one-time schedules that start a run of the state
//! machine at each event's instant (serverless deployment).

use std::sync::Arc;

use async_trait::async_trait;
use aws_config::SdkConfig;
use aws_sdk_scheduler::types::{
    ActionAfterCompletion, FlexibleTimeWindow, FlexibleTimeWindowMode, RetryPolicy, Target,
};
use ec2_scheduler_engine::ports::{ApiResult, EventSchedules, OneTime};

use crate::{CallCounter, Counting, api_error};

/// The schedules of one group, each starting an execution of `state_machine` as
/// `role`.
pub struct EventBridgeSchedules {
    client: aws_sdk_scheduler::Client,
    group: String,
    state_machine: String,
    role: String,
    /// The queue where a schedule's undeliverable events go (`SCHEDULE_DLQ_ARN`).
    dead_letters: Option<String>,
}

/// The partition of an ARN (`aws`, `aws-cn`, `aws-us-gov`), `aws` when it names none.
pub fn partition(arn: &str) -> &str {
    arn.split(':')
        .nth(1)
        .filter(|p| arn.starts_with("arn:") && !p.is_empty())
        .unwrap_or("aws")
}

impl EventBridgeSchedules {
    /// The schedules of `group` in `region` (through `endpoint_url` when given), with
    /// the standard credentials chain.
    pub async fn connect(
        region: &str,
        endpoint_url: Option<String>,
        group: &str,
        state_machine: &str,
        role: &str,
    ) -> Self {
        let config = crate::sdk_config(&crate::Connect {
            region: Some(region.to_string()),
            endpoint_url,
            ..crate::Connect::default()
        })
        .await;
        Self::new(&config, Arc::default(), group, state_machine, role)
    }

    pub fn new(
        config: &SdkConfig,
        counter: Arc<CallCounter>,
        group: &str,
        state_machine: &str,
        role: &str,
    ) -> Self {
        let client = aws_sdk_scheduler::Client::from_conf(
            aws_sdk_scheduler::config::Builder::from(config)
                .interceptor(Counting(counter))
                .build(),
        );
        EventBridgeSchedules {
            client,
            group: group.to_string(),
            state_machine: state_machine.to_string(),
            role: role.to_string(),
            dead_letters: None,
        }
    }

    /// With a dead-letter queue for events a schedule could not deliver.
    #[must_use]
    pub fn with_dead_letters(mut self, queue_arn: Option<String>) -> Self {
        self.dead_letters = queue_arn.filter(|a| !a.is_empty());
        self
    }
}

#[async_trait]
impl EventSchedules for EventBridgeSchedules {
    async fn names(&self, prefix: &str) -> ApiResult<Vec<String>> {
        let a = "scheduler:ListSchedules";
        let mut out = Vec::new();
        let mut pages = self
            .client
            .list_schedules()
            .group_name(&self.group)
            .name_prefix(prefix)
            .into_paginator()
            .send();
        while let Some(page) = pages.next().await {
            let page = page.map_err(|e| api_error(a, &e))?;
            out.extend(
                page.schedules()
                    .iter()
                    .filter_map(|s| s.name().map(str::to_string)),
            );
        }
        Ok(out)
    }

    async fn create(&self, s: &OneTime) -> ApiResult<()> {
        let a = "scheduler:CreateSchedule";
        // The universal target lets the execution be named: a second start of the
        // same event is refused by Step Functions.
        let request = serde_json::json!({
            "StateMachineArn": self.state_machine,
            "Name": s.execution,
            "Input": s.input,
        });
        let target = Target::builder()
            .arn(format!(
                "arn:{}:scheduler:::aws-sdk:sfn:startExecution",
                partition(&self.state_machine)
            ))
            .role_arn(&self.role)
            .set_dead_letter_config(self.dead_letters.as_ref().map(|arn| {
                aws_sdk_scheduler::types::DeadLetterConfig::builder()
                    .arn(arn)
                    .build()
            }))
            .input(request.to_string())
            .retry_policy(
                RetryPolicy::builder()
                    .maximum_event_age_in_seconds(15 * 60)
                    .maximum_retry_attempts(10)
                    .build(),
            )
            .build()
            .map_err(|e| crate::build_error(a, &e))?;
        let created = self
            .client
            .create_schedule()
            .group_name(&self.group)
            .name(&s.name)
            .schedule_expression(format!("at({})", s.utc))
            .schedule_expression_timezone("UTC")
            .flexible_time_window(
                FlexibleTimeWindow::builder()
                    .mode(FlexibleTimeWindowMode::Off)
                    .build()
                    .map_err(|e| crate::build_error(a, &e))?,
            )
            .action_after_completion(ActionAfterCompletion::Delete)
            .target(target)
            .send()
            .await;
        match created {
            Ok(_) => Ok(()),
            // Made by a concurrent sync: the same name is the same event.
            Err(e)
                if e.as_service_error()
                    .is_some_and(|x| x.is_conflict_exception()) =>
            {
                Ok(())
            }
            Err(e) => Err(api_error(a, &e)),
        }
    }

    async fn delete(&self, name: &str) -> ApiResult<()> {
        let a = "scheduler:DeleteSchedule";
        match self
            .client
            .delete_schedule()
            .group_name(&self.group)
            .name(name)
            .send()
            .await
        {
            Ok(_) => Ok(()),
            Err(e)
                if e.as_service_error()
                    .is_some_and(|s| s.is_resource_not_found_exception()) =>
            {
                Ok(())
            }
            Err(e) => Err(api_error(a, &e)),
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_partition_is_the_state_machines() {
        let arn = |p: &str| format!("arn:{p}:states:us-gov-west-1:123456789012:stateMachine:x");
        assert_eq!(super::partition(&arn("aws-us-gov")), "aws-us-gov");
        assert_eq!(super::partition(&arn("aws-cn")), "aws-cn");
        assert_eq!(super::partition(&arn("aws")), "aws");
        assert_eq!(super::partition("not an arn"), "aws");
    }
}
