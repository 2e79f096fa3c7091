//! The API actions the adapters call, and a counter of the requests sent.
//!
//! [`ACTIONS`] is the source of `docs/iam.md`'s policy: a test checks that the two
//! agree, and that every call counted while the adapters run against the emulator is
//! in the list.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use aws_smithy_runtime_api::box_error::BoxError;
use aws_smithy_runtime_api::client::interceptors::Intercept;
use aws_smithy_runtime_api::client::interceptors::context::BeforeTransmitInterceptorContextRef;
use aws_smithy_runtime_api::client::orchestrator::Metadata;
use aws_smithy_runtime_api::client::runtime_components::RuntimeComponents;
use aws_smithy_types::config_bag::ConfigBag;

/// Every AWS API action the adapters may call, as IAM spells it.
pub const ACTIONS: &[&str] = &[
    "dynamodb:CreateTable",
    "dynamodb:DescribeTable",
    "dynamodb:GetItem",
    "dynamodb:PutItem",
    "dynamodb:Query",
    "dynamodb:UpdateItem",
    "dynamodb:DeleteItem",
    "dynamodb:Scan",
    "dynamodb:BatchWriteItem",
    "ec2:DescribeInstances",
    "ec2:DescribeInstanceStatus",
    "ec2:StartInstances",
    "ec2:StopInstances",
    "ec2:ModifyInstanceAttribute",
    "elasticloadbalancing:DescribeLoadBalancers",
    "elasticloadbalancing:DescribeInstanceHealth",
    "elasticloadbalancing:RegisterInstancesWithLoadBalancer",
    "elasticloadbalancing:DeregisterInstancesFromLoadBalancer",
    "elasticloadbalancing:DescribeTargetGroups",
    "elasticloadbalancing:DescribeTargetHealth",
    "elasticloadbalancing:RegisterTargets",
    "elasticloadbalancing:DeregisterTargets",
    "ssm:SendCommand",
    "ssm:GetCommandInvocation",
    "sns:Publish",
    "pricing:GetProducts",
    "sts:GetCallerIdentity",
    "sts:AssumeRole",
    "scheduler:ListSchedules",
    "scheduler:CreateSchedule",
    "scheduler:DeleteSchedule",
    "states:StartExecution",
];

/// Permissions the adapters need without calling the action themselves:
/// - `kms:CreateGrant`: starting an instance whose EBS volumes are encrypted with a
///   customer-managed KMS key makes EC2 create a grant on the caller's behalf (without
///   it the start "succeeds" and the instance falls back from pending to stopped);
/// - `iam:PassRole`: creating a schedule whose target assumes a role passes that role
///   to EventBridge Scheduler (serverless deployment).
pub const IMPLIED: &[&str] = &["kms:CreateGrant", "iam:PassRole"];

/// Counts the HTTP requests sent, by action: one per attempt, so pages and the SDK's
/// own retries are all counted. Installed on every client as an interceptor
/// ([`Counting`]) and shared by the clients of one cloud (and its store, when the
/// driver wants one count for both).
#[derive(Debug, Default)]
pub struct CallCounter {
    calls: Mutex<BTreeMap<String, u64>>,
}

impl CallCounter {
    /// Records one request of `action`.
    pub fn record(&self, action: &str) {
        debug_assert!(
            ACTIONS.contains(&action),
            "{action} is missing from calls::ACTIONS"
        );
        *self
            .calls
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry(action.to_string())
            .or_default() += 1;
    }

    /// Requests so far, by action.
    pub fn snapshot(&self) -> BTreeMap<String, u64> {
        self.calls.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }
}

/// The interceptor that feeds a [`CallCounter`]: it sees each attempt just before it
/// is sent.
#[derive(Debug, Clone)]
pub struct Counting(pub Arc<CallCounter>);

impl Intercept for Counting {
    fn name(&self) -> &'static str {
        "ec2-scheduler request counter"
    }

    fn read_before_transmit(
        &self,
        _context: &BeforeTransmitInterceptorContextRef<'_>,
        _runtime_components: &RuntimeComponents,
        cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        if let Some(m) = cfg.load::<Metadata>() {
            self.0.record(&action(m.service(), m.name()));
        }
        Ok(())
    }
}

/// The IAM action of an SDK operation: `EC2` + `StartInstances` is
/// `ec2:StartInstances`.
pub fn action(service: &str, operation: &str) -> String {
    let prefix = match service {
        "EC2" => "ec2",
        "Elastic Load Balancing" | "Elastic Load Balancing v2" => "elasticloadbalancing",
        "SSM" => "ssm",
        "SNS" => "sns",
        "STS" => "sts",
        "DynamoDB" => "dynamodb",
        "SFN" | "sfn" => "states",
        other => return format!("{}:{operation}", other.to_ascii_lowercase()),
    };
    format!("{prefix}:{operation}")
}

#[cfg(test)]
mod tests {
    #[test]
    fn operations_map_to_iam_actions() {
        assert_eq!(super::action("EC2", "StartInstances"), "ec2:StartInstances");
        assert_eq!(
            super::action("Elastic Load Balancing v2", "RegisterTargets"),
            "elasticloadbalancing:RegisterTargets"
        );
        assert_eq!(super::action("DynamoDB", "PutItem"), "dynamodb:PutItem");
        assert_eq!(
            super::action("sfn", "StartExecution"),
            "states:StartExecution"
        );
        assert_eq!(
            super::action("scheduler", "CreateSchedule"),
            "scheduler:CreateSchedule"
        );
    }
}
