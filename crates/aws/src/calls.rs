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
    "rds:DescribeDBInstances",
    "rds:DescribeDBClusters",
    "rds:StartDBInstance",
    "rds:StopDBInstance",
    "rds:StartDBCluster",
    "rds:StopDBCluster",
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

/// The functions of the serverless stack, each with the actions its code path may
/// call (from [`ACTIONS`] and [`IMPLIED`]): each function runs under a role of its
/// own that grants exactly these (a template test), and every call a function makes
/// against the emulator is checked to be in its list (the Lambda crate's tests).
pub const FUNCTIONS: &[(&str, &[&str])] = &[
    ("run-step", RUN_STEP),
    ("event-gate", EVENT_GATE),
    ("event-failed", EVENT_FAILED),
    ("api", API),
    ("schedule-sync", SCHEDULE_SYNC),
];

/// The actions `function` may call, if it is one of [`FUNCTIONS`].
pub fn of_function(function: &str) -> Option<&'static [&'static str]> {
    FUNCTIONS
        .iter()
        .find(|(f, _)| *f == function)
        .map(|(_, actions)| *actions)
}

/// The state table's and the workload tables' actions, which every function takes
/// (it opens the store), followed by `$action`s.
macro_rules! with_store {
    ($($action:literal),* $(,)?) => {
        &[
            "dynamodb:DescribeTable",
            "dynamodb:CreateTable",
            "dynamodb:GetItem",
            "dynamodb:PutItem",
            "dynamodb:UpdateItem",
            "dynamodb:DeleteItem",
            "dynamodb:BatchWriteItem",
            "dynamodb:Query",
            "dynamodb:Scan",
            $($action),*
        ]
    };
}

/// The run step: the only function that acts on instances and load balancers (and
/// probes override files, tells the topic, assumes workloads' roles).
pub const RUN_STEP: &[&str] = with_store![
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
    "rds:DescribeDBInstances",
    "rds:DescribeDBClusters",
    "rds:StartDBInstance",
    "rds:StopDBInstance",
    "rds:StartDBCluster",
    "rds:StopDBCluster",
    "sns:Publish",
    "pricing:GetProducts",
    "sts:GetCallerIdentity",
    "sts:AssumeRole",
    "kms:CreateGrant",
];

/// The event gate: decides from the schedules and the state table; ends a run left
/// unfinished by an execution that is gone (and tells the topic).
pub const EVENT_GATE: &[&str] = with_store!["sns:Publish", "sts:GetCallerIdentity",];

/// The failure path: ends the run and records its event (and tells the topic).
pub const EVENT_FAILED: &[&str] = EVENT_GATE;

/// The API: reads and writes the tables, looks at instances and load balancers
/// (plans, status; in other accounts through their role, observing only), begins
/// runs that the state machine drives, and syncs a changed workload's schedules.
pub const API: &[&str] = with_store![
    "ec2:DescribeInstances",
    "ec2:DescribeInstanceStatus",
    "elasticloadbalancing:DescribeLoadBalancers",
    "elasticloadbalancing:DescribeInstanceHealth",
    "elasticloadbalancing:DescribeTargetGroups",
    "elasticloadbalancing:DescribeTargetHealth",
    "rds:DescribeDBInstances",
    "rds:DescribeDBClusters",
    "sns:Publish",
    "pricing:GetProducts",
    "sts:GetCallerIdentity",
    "sts:AssumeRole",
    "scheduler:ListSchedules",
    "scheduler:CreateSchedule",
    "scheduler:DeleteSchedule",
    "states:StartExecution",
    "iam:PassRole",
];

/// The schedule sync: reads the workloads and keeps their one-time schedules.
pub const SCHEDULE_SYNC: &[&str] = with_store![
    "scheduler:ListSchedules",
    "scheduler:CreateSchedule",
    "scheduler:DeleteSchedule",
    "iam:PassRole",
];

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
        "RDS" => "rds",
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
