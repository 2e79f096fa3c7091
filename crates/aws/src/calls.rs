//! The API actions the adapters call, and a counter of the calls made.
//!
//! [`ACTIONS`] is the source of `docs/iam.md`'s policy: a test checks that the two
//! agree, and that every call counted while the adapters run against the emulator is
//! in the list.

use std::collections::BTreeMap;
use std::sync::Mutex;

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
    "sts:GetCallerIdentity",
    "sts:AssumeRole",
];

/// Permissions the adapters need without calling the action themselves:
/// starting an instance whose EBS volumes are encrypted with a customer-managed KMS key
/// makes EC2 create a grant on the caller's behalf (without it the start "succeeds"
/// and the instance falls back from pending to stopped).
pub const IMPLIED: &[&str] = &["kms:CreateGrant"];

/// Counts calls by action. Shared by the adapters of one cloud.
#[derive(Debug, Default)]
pub struct CallCounter {
    calls: Mutex<BTreeMap<String, u64>>,
}

impl CallCounter {
    /// Records one call of `action`.
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

    /// Calls so far, by action.
    pub fn snapshot(&self) -> BTreeMap<String, u64> {
        self.calls.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }
}
