//! The serverless templates against the code: the functions' role grants exactly the
//! actions the adapters call (`calls::ACTIONS`, which `docs/iam.md` is tested
//! against too), each where it should be; the state machine the template deploys is
//! the committed definition the moto test follows. (cfn-lint checks both templates in
//! `scripts/test`.)

use std::collections::BTreeSet;

use ec2_scheduler_aws::calls;
use serde_yaml_ng::Value;

mod iam;
use iam::{ACCOUNT, REGION, Request, STACK, Stack};

fn template(name: &str) -> Value {
    let path = format!(
        "{}/../../deploy/serverless/{name}",
        env!("CARGO_MANIFEST_DIR")
    );
    serde_yaml_ng::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap()
}

/// A value without its YAML tag (`!Sub`, `!Ref`, ...).
fn untagged(v: &Value) -> &Value {
    match v {
        Value::Tagged(t) => untagged(&t.value),
        other => other,
    }
}

/// The statements of a policy document: YAML, or JSON text under `!Sub` (alone, or
/// the first of `!Sub [text, variables]`; its `${...}` left as they are).
fn statements(document: &Value) -> Vec<serde_json::Value> {
    let doc: serde_json::Value = match untagged(document) {
        Value::String(text) => serde_json::from_str(text).expect("the policy is JSON text"),
        Value::Sequence(sub) if matches!(sub.first(), Some(Value::String(_))) => {
            serde_json::from_str(sub[0].as_str().unwrap()).expect("the policy is JSON text")
        }
        other => serde_json::to_value(other).expect("YAML without tags"),
    };
    doc["Statement"].as_array().unwrap().clone()
}

fn actions(statement: &serde_json::Value) -> Vec<String> {
    match &statement["Action"] {
        serde_json::Value::String(a) => vec![a.clone()],
        serde_json::Value::Array(list) => list
            .iter()
            .map(|a| a.as_str().unwrap().to_string())
            .collect(),
        other => panic!("Action {other}"),
    }
}

/// Every statement that applies to the role `role` in `t`: its inline policies and
/// the managed policies of the template attached to it.
fn role_statements(t: &Value, role: &str) -> Vec<serde_json::Value> {
    let resources = t["Resources"].as_mapping().unwrap();
    let mut out = Vec::new();
    for p in t["Resources"][role]["Properties"]["Policies"]
        .as_sequence()
        .unwrap()
    {
        out.extend(statements(&p["PolicyDocument"]));
    }
    for (_, r) in resources {
        if r["Type"] == "AWS::IAM::ManagedPolicy" {
            let roles = r["Properties"]["Roles"].as_sequence().unwrap();
            if roles.iter().any(|x| untagged(x).as_str() == Some(role)) {
                out.extend(statements(&r["Properties"]["PolicyDocument"]));
            }
        }
    }
    out
}

fn called() -> BTreeSet<String> {
    calls::ACTIONS
        .iter()
        .chain(calls::IMPLIED)
        .map(|s| s.to_string())
        .collect()
}

fn with_action<'a>(
    statements: &'a [serde_json::Value],
    action: &str,
) -> Vec<&'a serde_json::Value> {
    statements
        .iter()
        .filter(|s| actions(s).iter().any(|a| a == action))
        .collect()
}

/// The resource `name` of the template, by its logical id.
fn resources_of_type<'a>(t: &'a Value, ty: &str) -> Vec<(String, &'a Value)> {
    t["Resources"]
        .as_mapping()
        .unwrap()
        .iter()
        .filter(|(_, r)| r["Type"] == ty)
        .map(|(k, r)| (k.as_str().unwrap().to_string(), r))
        .collect()
}

/// `!If [NewTopic, !Ref Topic, !Ref NotificationTopicArn]`: the stack's topic or the
/// one it was given.
fn is_the_topic(v: &Value) -> bool {
    let parts: Vec<String> = match untagged(v) {
        Value::Sequence(s) => s
            .iter()
            .map(|x| untagged(x).as_str().unwrap_or_default().to_string())
            .collect(),
        _ => return false,
    };
    parts == ["NewTopic", "Topic", "NotificationTopicArn"]
}

#[test]
fn every_alarm_tells_the_topic_and_every_failure_has_one() {
    let t = template("template.yaml");
    let alarms = resources_of_type(&t, "AWS::CloudWatch::Alarm");
    let mut watched = BTreeSet::new();
    for (name, a) in &alarms {
        let p = &a["Properties"];
        let actions = p["AlarmActions"].as_sequence().unwrap();
        assert_eq!(actions.len(), 1, "{name}");
        assert!(is_the_topic(&actions[0]), "{name}: {:?}", actions[0]);
        assert_eq!(p["TreatMissingData"], "notBreaching", "{name}");
        let metrics: Vec<&Value> = match p["Metrics"].as_sequence() {
            Some(m) => m
                .iter()
                .filter_map(|m| m.get("MetricStat").map(|s| &s["Metric"]))
                .collect(),
            None => vec![p],
        };
        for m in metrics {
            let dimension = untagged(&m["Dimensions"][0]["Value"]);
            let of = match dimension {
                // !Ref X, or !GetAtt X.Attribute
                Value::String(r) => r.split('.').next().unwrap().to_string(),
                Value::Sequence(s) => untagged(&s[0]).as_str().unwrap().to_string(),
                other => panic!("{name}: {other:?}"),
            };
            watched.insert(format!(
                "{}/{} of {of}",
                m["Namespace"].as_str().unwrap(),
                m["MetricName"].as_str().unwrap()
            ));
        }
    }
    for want in [
        "AWS/States/ExecutionsFailed of RunStateMachine",
        "AWS/States/ExecutionsTimedOut of RunStateMachine",
        "AWS/States/ExecutionsAborted of RunStateMachine",
        "AWS/Lambda/Errors of ApiFunction",
        "AWS/Lambda/Throttles of ApiFunction",
        "AWS/Lambda/Errors of ScheduleSyncFunction",
        "AWS/Lambda/Throttles of ScheduleSyncFunction",
        "AWS/SQS/ApproximateNumberOfMessagesVisible of ScheduleDeadLetters",
    ] {
        assert!(watched.contains(want), "no alarm on {want}: {watched:?}");
    }
    // An e-mail address, when given, is subscribed to that topic.
    let sub = &t["Resources"]["EmailSubscription"];
    assert_eq!(sub["Condition"], "SubscribeEmail");
    assert_eq!(sub["Properties"]["Protocol"], "email");
    assert!(is_the_topic(&sub["Properties"]["TopicArn"]));
    // The state machine tells the same topic.
    let sm = &t["Resources"]["RunStateMachine"]["Properties"];
    assert!(is_the_topic(
        &sm["DefinitionSubstitutions"]["NotificationTopicArn"]
    ));
}

#[test]
fn history_and_logs_age_out_and_undeliverable_events_are_kept() {
    let t = template("template.yaml");
    // Each function's log group keeps its logs LogRetentionDays.
    let logs = resources_of_type(&t, "AWS::Logs::LogGroup");
    let functions = resources_of_type(&t, "AWS::Serverless::Function");
    // One per function, and the API's access log.
    assert_eq!(logs.len(), functions.len() + 1);
    for (name, l) in &logs {
        assert_eq!(
            untagged(&l["Properties"]["RetentionInDays"]).as_str(),
            Some("LogRetentionDays"),
            "{name}"
        );
    }
    let access = &t["Resources"]["HttpApi"]["Properties"]["AccessLogSettings"];
    assert!(
        untagged(&access["DestinationArn"])
            .as_str()
            .is_some_and(|a| a.starts_with("ApiAccessLogs."))
    );
    for (f, _) in &functions {
        let group = logs
            .iter()
            .find(|(_, l)| {
                untagged(&l["Properties"]["LogGroupName"])
                    .as_str()
                    .is_some_and(|n| n == format!("/aws/lambda/${{{f}}}"))
            })
            .unwrap_or_else(|| panic!("no log group for {f}"));
        assert_eq!(
            untagged(&group.1["Properties"]["RetentionInDays"]).as_str(),
            Some("LogRetentionDays")
        );
    }
    // The state table's time to live reads the attribute the store writes, for
    // HistoryRetentionDays.
    let ttl = &t["Resources"]["StateTable"]["Properties"]["TimeToLiveSpecification"];
    assert_eq!(ttl["Enabled"], true);
    assert_eq!(
        ttl["AttributeName"].as_str(),
        Some(ec2_scheduler_aws::dynamo::TTL_ATTRIBUTE)
    );
    let vars = &t["Globals"]["Function"]["Environment"]["Variables"];
    assert_eq!(
        untagged(&vars["HISTORY_TTL_DAYS"]).as_str(),
        Some("HistoryRetentionDays")
    );
    // Schedules are made with the dead-letter queue, which the scheduler may write.
    for f in ["ScheduleSyncFunction", "ApiFunction"] {
        let v = &t["Resources"][f]["Properties"]["Environment"]["Variables"];
        assert!(!v["SCHEDULE_DLQ_ARN"].is_null(), "{f}");
    }
    let st = role_statements(&t, "SchedulerRole");
    let send = with_action(&st, "sqs:SendMessage");
    assert_eq!(send.len(), 1);
    assert!(
        send[0]["Resource"]
            .to_string()
            .contains("ScheduleDeadLetters")
    );
}

#[test]
fn no_arn_names_a_partition_of_its_own() {
    for name in ["template.yaml", "cross-account-role.yaml"] {
        let text = std::fs::read_to_string(format!(
            "{}/../../deploy/serverless/{name}",
            env!("CARGO_MANIFEST_DIR")
        ))
        .unwrap();
        for (n, line) in text.lines().enumerate() {
            let code = line.split('#').next().unwrap_or_default();
            // Examples in a parameter's description may show one.
            if code.trim_start().starts_with("{\"principals\"") {
                continue;
            }
            assert!(
                !code.contains("arn:aws:")
                    || line.contains("Description")
                    || code.contains("\"arn\""),
                "{name}:{}: {line}",
                n + 1
            );
        }
    }
    let definition = std::fs::read_to_string(format!(
        "{}/../../deploy/serverless/statemachine.asl.json",
        env!("CARGO_MANIFEST_DIR")
    ))
    .unwrap();
    assert!(!definition.contains("arn:aws:"));
    assert!(definition.contains("arn:${Partition}:states:::lambda:invoke"));
}

#[test]
fn the_template_deploys_the_committed_state_machine_with_every_placeholder_filled() {
    let t = template("template.yaml");
    let sm = &t["Resources"]["RunStateMachine"]["Properties"];
    assert_eq!(sm["DefinitionUri"], "statemachine.asl.json");
    assert_eq!(sm["Type"], "STANDARD");
    let definition = std::fs::read_to_string(format!(
        "{}/../../deploy/serverless/statemachine.asl.json",
        env!("CARGO_MANIFEST_DIR")
    ))
    .unwrap();
    let placeholders: BTreeSet<String> = definition
        .split("${")
        .skip(1)
        .map(|rest| rest.split('}').next().unwrap().to_string())
        .collect();
    let filled: BTreeSet<String> = sm["DefinitionSubstitutions"]
        .as_mapping()
        .unwrap()
        .keys()
        .map(|k| k.as_str().unwrap().to_string())
        .collect();
    assert_eq!(placeholders, filled);
    // Each function of the definition is one the template deploys, with its role.
    for f in [
        "ApiFunction",
        "RunStepFunction",
        "EventGateFunction",
        "EventFailedFunction",
    ] {
        let props = &t["Resources"][f]["Properties"];
        assert_eq!(t["Resources"][f]["Type"], "AWS::Serverless::Function");
        assert!(
            props["Environment"]["Variables"]["EC2S_FUNCTION"].is_string(),
            "{f}"
        );
    }
}

/// The parameters of a deployment that names two workloads' tag values and one
/// other account.
const LISTED: &[(&str, &str)] = &[
    ("WorkloadTagValues", "ENV001,ENV002"),
    ("ManagedAccounts", "111111111111"),
];

/// The same with the management tag instead.
const BY_TAG: &[(&str, &str)] = &[
    ("ManagedScope", "management-tag"),
    ("ManagedAccounts", "111111111111"),
];

/// The functions the template deploys: (logical id, `EC2S_FUNCTION`).
fn functions(stack: &Stack) -> Vec<(String, String)> {
    resources_of_type(&stack.template, "AWS::Serverless::Function")
        .into_iter()
        .map(|(id, f)| {
            let name = f["Properties"]["Environment"]["Variables"]["EC2S_FUNCTION"]
                .as_str()
                .unwrap()
                .to_string();
            (id, name)
        })
        .collect()
}

fn allowed_actions(statements: &[serde_json::Value]) -> BTreeSet<String> {
    statements
        .iter()
        .filter(|s| s["Effect"] == "Allow")
        .flat_map(actions)
        .collect()
}

#[test]
fn each_function_has_a_role_of_its_own_granting_exactly_the_calls_of_its_code_path() {
    for params in [LISTED, BY_TAG] {
        let stack = Stack::new("template.yaml", params);
        assert!(stack.rules_hold());
        let mut roles = BTreeSet::new();
        let mut all = BTreeSet::new();
        for (id, function) in functions(&stack) {
            let role = stack.role_of(&id);
            assert!(roles.insert(role.clone()), "{id} shares the role {role}");
            let want: BTreeSet<String> = calls::of_function(&function)
                .unwrap_or_else(|| panic!("{function} is not in calls::FUNCTIONS"))
                .iter()
                .map(|s| s.to_string())
                .collect();
            let granted = allowed_actions(&stack.role_statements(&role));
            assert_eq!(granted, want, "{id} ({role})");
            all.extend(granted);
        }
        assert_eq!(all, called(), "the functions and calls::ACTIONS differ");
        assert_eq!(roles.len(), calls::FUNCTIONS.len());
    }
    // Without other accounts, no function may assume any role.
    let stack = Stack::new("template.yaml", &[("WorkloadTagValues", "ENV001")]);
    for (id, _) in functions(&stack) {
        let st = stack.role_statements(&stack.role_of(&id));
        assert!(!allowed_actions(&st).contains("sts:AssumeRole"), "{id}");
    }
}

/// What changes something: every action but those that only read.
fn mutating(action: &str) -> bool {
    let name = action.split(':').nth(1).unwrap_or(action);
    !(name.starts_with("Describe")
        || name.starts_with("Get")
        || name.starts_with("List")
        || name == "Query"
        || name == "Scan")
}

/// Every allowed mutating action names the stack's own resources, or is conditioned:
/// no `*` without a condition, no wildcard of a kind of resource (`instance/*`,
/// `key/*`, any role) without one.
fn every_change_is_scoped_or_conditioned(what: &str, statements: &[serde_json::Value]) {
    for s in statements.iter().filter(|s| s["Effect"] == "Allow") {
        for action in actions(s).iter().filter(|a| mutating(a)) {
            let conditioned = s["Condition"].as_object().is_some_and(|c| !c.is_empty());
            for r in iam::strings(&s["Resource"]) {
                // `*`, or a wildcard of a kind of resource: `instance/*`, `key/*`, `db:*`.
                let wide = r.ends_with('*');
                // A schedule of the stack's own group is the stack's.
                let own_group = r.contains(":schedule/<ScheduleGroup>/");
                assert!(
                    conditioned || !wide || own_group,
                    "{what}: {action} on {r} with no condition: {s}"
                );
            }
        }
    }
}

#[test]
fn every_statement_that_changes_something_is_scoped_to_the_stack_or_conditioned() {
    for params in [LISTED, BY_TAG] {
        let stack = Stack::new("template.yaml", params);
        for (id, _) in functions(&stack) {
            let role = stack.role_of(&id);
            every_change_is_scoped_or_conditioned(&role, &stack.role_statements(&role));
        }
        every_change_is_scoped_or_conditioned(
            "SchedulerRole",
            &stack.role_statements("SchedulerRole"),
        );
        let other = [
            (
                "SchedulerRoleArn",
                "arn:aws:iam::123456789012:role/run-step",
            ),
            ("ObserverRoleArn", "arn:aws:iam::123456789012:role/api"),
            ("ExternalId", "x-1"),
            ("ManagementTagValue", STACK),
        ];
        let scope: Vec<(&str, &str)> = params
            .iter()
            .filter(|(k, _)| *k != "ManagedAccounts")
            .chain(other.iter())
            .copied()
            .collect();
        let cross = Stack::new("cross-account-role.yaml", &scope);
        every_change_is_scoped_or_conditioned("cross-account Role", &cross.role_statements("Role"));
    }
}

/// Only the run step changes instances, load balancers or grants.
#[test]
fn no_function_but_the_run_step_can_change_an_instance_or_a_load_balancer() {
    let stack = Stack::new("template.yaml", LISTED);
    let managed = iam::instance(REGION, "i-1").to_string();
    let tg = format!("arn:aws:elasticloadbalancing:{REGION}:{ACCOUNT}:targetgroup/web/1");
    for (id, function) in functions(&stack) {
        let st = stack.role_statements(&stack.role_of(&id));
        let requests = [
            Request::new("ec2:StopInstances", &managed).tagged("Environment", "ENV001"),
            Request::new("ec2:StartInstances", &managed).tagged("Environment", "ENV001"),
            Request::new("elasticloadbalancing:RegisterTargets", &tg)
                .tagged("ec2-scheduler:managed", STACK),
            Request::new(
                "rds:StopDBInstance",
                &format!("arn:aws:rds:{REGION}:{ACCOUNT}:db:orders"),
            )
            .tagged("Environment", "ENV001"),
        ];
        for r in requests {
            assert_eq!(
                r.allowed_by(&st),
                function == "run-step",
                "{function}: {}",
                r.action
            );
        }
    }
}

/// The run step's (or the cross-account role's) statements, checked request by
/// request: instances only when managed, in managed regions; the instance type
/// only; load balancers only with the management tag; grants only for EC2's volumes.
fn acts_only_on_what_the_stack_manages(what: &str, st: &[serde_json::Value], by_tag: bool) {
    let i = iam::instance(REGION, "i-1");
    let elsewhere = iam::instance("eu-west-1", "i-2");
    let managed = |r: Request| {
        if by_tag {
            r.tagged("Environment", "prod")
                .tagged("ec2-scheduler:managed", STACK)
        } else {
            r.tagged("Environment", "ENV002")
        }
    };
    for action in ["ec2:StartInstances", "ec2:StopInstances", "ssm:SendCommand"] {
        let yes = managed(Request::new(action, &i));
        assert!(yes.allowed_by(st), "{what}: {action} on a managed instance");
        let cases = [
            ("untagged", Request::new(action, &i)),
            (
                "another workload's value",
                Request::new(action, &i).tagged("Environment", "prod"),
            ),
            (
                "another stack's management tag",
                Request::new(action, &i)
                    .tagged("Environment", "prod")
                    .tagged("ec2-scheduler:managed", "other"),
            ),
            (
                "without the workload tag key",
                Request::new(action, &i).tagged("ec2-scheduler:managed", STACK),
            ),
            (
                "in a region not managed",
                managed(Request::new(action, &elsewhere)).with("aws:RequestedRegion", "eu-west-1"),
            ),
        ];
        for (case, r) in cases {
            if by_tag && case == "another workload's value" {
                continue;
            }
            assert!(!r.allowed_by(st), "{what}: {action}, {case}: {r:?}");
        }
    }
    // Databases only when managed, in managed regions.
    for (action, arn) in [
        (
            "rds:StopDBInstance",
            format!("arn:aws:rds:{REGION}:{ACCOUNT}:db:orders"),
        ),
        (
            "rds:StartDBInstance",
            format!("arn:aws:rds:{REGION}:{ACCOUNT}:db:orders"),
        ),
        (
            "rds:StopDBCluster",
            format!("arn:aws:rds:{REGION}:{ACCOUNT}:cluster:orders"),
        ),
        (
            "rds:StartDBCluster",
            format!("arn:aws:rds:{REGION}:{ACCOUNT}:cluster:orders"),
        ),
    ] {
        assert!(
            managed(Request::new(action, &arn)).allowed_by(st),
            "{what}: {action} managed"
        );
        assert!(
            !Request::new(action, &arn).allowed_by(st),
            "{what}: {action} untagged"
        );
        assert!(
            !Request::new(action, &arn)
                .tagged("Environment", "prod")
                .allowed_by(st),
            "{what}: {action} of another workload"
        );
        assert!(
            !managed(Request::new(action, &arn))
                .with("aws:RequestedRegion", "eu-west-1")
                .allowed_by(st),
            "{what}: {action} elsewhere"
        );
    }
    // Only the instance type may be changed.
    let resize = managed(Request::new("ec2:ModifyInstanceAttribute", &i));
    assert!(
        resize
            .clone()
            .with("ec2:Attribute/InstanceType", "m5.large")
            .allowed_by(st),
        "{what}: resize"
    );
    for attribute in ["UserData", "GroupId", "InstanceInitiatedShutdownBehavior"] {
        let r = resize
            .clone()
            .with(&format!("ec2:Attribute/{attribute}"), "x");
        assert!(!r.allowed_by(st), "{what}: {attribute}");
    }
    // Load balancers and target groups only with the management tag.
    for (action, arn) in [
        (
            "elasticloadbalancing:RegisterTargets",
            format!("arn:aws:elasticloadbalancing:{REGION}:{ACCOUNT}:targetgroup/web/1"),
        ),
        (
            "elasticloadbalancing:DeregisterTargets",
            format!("arn:aws:elasticloadbalancing:{REGION}:{ACCOUNT}:targetgroup/web/1"),
        ),
        (
            "elasticloadbalancing:RegisterInstancesWithLoadBalancer",
            format!("arn:aws:elasticloadbalancing:{REGION}:{ACCOUNT}:loadbalancer/web"),
        ),
        (
            "elasticloadbalancing:DeregisterInstancesFromLoadBalancer",
            format!("arn:aws:elasticloadbalancing:{REGION}:{ACCOUNT}:loadbalancer/web"),
        ),
    ] {
        let r = Request::new(action, &arn);
        assert!(!r.clone().allowed_by(st), "{what}: {action} untagged");
        assert!(
            !r.clone()
                .tagged("ec2-scheduler:managed", "other")
                .allowed_by(st),
            "{what}: {action} of another stack"
        );
        assert!(
            !r.clone().tagged("Environment", "ENV002").allowed_by(st),
            "{what}: {action} with the workload tag only"
        );
        assert!(
            r.tagged("ec2-scheduler:managed", STACK).allowed_by(st),
            "{what}: {action} managed"
        );
    }
    // The probe sends only the stack's document.
    let doc = |name: &str| format!("arn:aws:ssm:{REGION}:{ACCOUNT}:document/{name}");
    assert!(Request::new("ssm:SendCommand", &doc("ec2-scheduler-override-check")).allowed_by(st));
    for other in ["AWS-RunShellScript", "AWS-RunPowerShellScript"] {
        assert!(!Request::new("ssm:SendCommand", &doc(other)).allowed_by(st));
        assert!(
            !Request::new(
                "ssm:SendCommand",
                &format!("arn:aws:ssm:{REGION}::document/{other}")
            )
            .allowed_by(st)
        );
    }
    // Grants only as EC2 makes them for volumes, through EC2, in managed regions.
    let key = format!("arn:aws:kms:{REGION}:{ACCOUNT}:key/k-1");
    let grant = Request::new("kms:CreateGrant", &key)
        .with("kms:GrantIsForAWSResource", "true")
        .with("kms:ViaService", &format!("ec2.{REGION}.amazonaws.com"))
        .with_all("kms:GrantOperations", &["Decrypt", "CreateGrant"]);
    assert!(grant.allowed_by(st), "{what}: EC2's grant");
    let refused = [
        (
            "not for an AWS resource",
            grant.clone().with("kms:GrantIsForAWSResource", "false"),
        ),
        (
            "through RDS",
            grant
                .clone()
                .with("kms:ViaService", &format!("rds.{REGION}.amazonaws.com")),
        ),
        (
            "signing",
            grant
                .clone()
                .with_all("kms:GrantOperations", &["Decrypt", "Sign"]),
        ),
        (
            "in a region not managed",
            grant.clone().with("aws:RequestedRegion", "eu-west-1"),
        ),
    ];
    for (case, r) in refused {
        assert!(!r.allowed_by(st), "{what}: a grant {case}");
    }
}

#[test]
fn the_run_step_changes_only_managed_instances_the_instance_type_only_and_managed_load_balancers() {
    for (params, by_tag) in [(LISTED, false), (BY_TAG, true)] {
        let stack = Stack::new("template.yaml", params);
        let st = stack.role_statements("RunStepRole");
        acts_only_on_what_the_stack_manages("RunStepRole", &st, by_tag);
    }
    // The default scope lists tag values: a deployment that lists none is refused.
    assert!(!Stack::new("template.yaml", &[]).rules_hold());
    assert!(!Stack::new("template.yaml", &[("WorkloadTagValues", "ENV001,")]).rules_hold());
    assert!(Stack::new("template.yaml", &[("ManagedScope", "management-tag")]).rules_hold());
}

#[test]
fn a_role_may_be_assumed_only_under_the_cross_account_name_in_the_listed_accounts() {
    let stack = Stack::new("template.yaml", LISTED);
    let assume = |account: &str, name: &str| {
        Request::new(
            "sts:AssumeRole",
            &format!("arn:aws:iam::{account}:role/{name}"),
        )
        .with("aws:ResourceAccount", account)
    };
    for role in ["RunStepRole", "ApiRole"] {
        let st = stack.role_statements(role);
        assert!(
            assume("111111111111", "ec2-scheduler-cross-account").allowed_by(&st),
            "{role}"
        );
        assert!(
            !assume("222222222222", "ec2-scheduler-cross-account").allowed_by(&st),
            "{role}"
        );
        assert!(!assume("111111111111", "Admin").allowed_by(&st), "{role}");
        assert!(
            !assume(ACCOUNT, "ec2-scheduler-cross-account").allowed_by(&st),
            "{role}"
        );
    }
}

#[test]
fn the_role_in_other_accounts_acts_only_on_what_is_managed_and_refuses_the_observer_every_change() {
    let base = [
        (
            "SchedulerRoleArn",
            "arn:aws:iam::123456789012:role/run-step",
        ),
        ("ObserverRoleArn", "arn:aws:iam::123456789012:role/api"),
        ("ExternalId", "x-1"),
        ("ManagementTagValue", STACK),
    ];
    for (scope, by_tag) in [
        (vec![("WorkloadTagValues", "ENV001,ENV002")], false),
        (vec![("ManagedScope", "management-tag")], true),
    ] {
        let params: Vec<(&str, &str)> = base.iter().chain(scope.iter()).copied().collect();
        let stack = Stack::new("cross-account-role.yaml", &params);
        assert!(stack.rules_hold());
        let st = stack.role_statements("Role");
        // What acts on the other account's instances: everything but the store, the
        // notifications, identity, prices, the schedules and the runs, which stay in
        // the scheduler's account.
        let expected: BTreeSet<String> = calls::RUN_STEP
            .iter()
            .filter(|a| {
                !["dynamodb:", "sns:", "sts:", "pricing:"]
                    .iter()
                    .any(|p| a.starts_with(p))
            })
            .map(|s| s.to_string())
            .collect();
        assert_eq!(allowed_actions(&st), expected);
        acts_only_on_what_the_stack_manages("cross-account Role", &st, by_tag);
        // The observer's session (the API's) may look but change nothing.
        let observer = "AROAEXAMPLE:ec2-scheduler-observe";
        let i = iam::instance(REGION, "i-1");
        let db_stop = Request::new(
            "rds:StopDBCluster",
            &format!("arn:aws:rds:{REGION}:{ACCOUNT}:cluster:orders"),
        );
        let db_stop = if by_tag {
            db_stop
                .tagged("Environment", "prod")
                .tagged("ec2-scheduler:managed", STACK)
        } else {
            db_stop.tagged("Environment", "ENV001")
        };
        assert!(
            db_stop
                .clone()
                .with("aws:userid", "AROAEXAMPLE:ec2-scheduler")
                .allowed_by(&st)
        );
        assert!(!db_stop.with("aws:userid", observer).allowed_by(&st));
        let stop = if by_tag {
            Request::new("ec2:StopInstances", &i)
                .tagged("Environment", "prod")
                .tagged("ec2-scheduler:managed", STACK)
        } else {
            Request::new("ec2:StopInstances", &i).tagged("Environment", "ENV001")
        };
        assert!(
            stop.clone()
                .with("aws:userid", "AROAEXAMPLE:ec2-scheduler")
                .allowed_by(&st)
        );
        assert!(!stop.with("aws:userid", observer).allowed_by(&st));
        assert!(
            Request::new("ec2:DescribeInstances", "*")
                .with("aws:userid", observer)
                .allowed_by(&st)
        );
        // The trust: the scheduler with the external id; the observer with it and
        // only under its session name.
        let trust = stack.resolve(
            &stack.template["Resources"]["Role"]["Properties"]["AssumeRolePolicyDocument"],
        );
        let trust = trust["Statement"].as_array().unwrap();
        assert_eq!(trust.len(), 2);
        for t in trust {
            assert_eq!(
                t["Condition"]["StringEquals"]["sts:ExternalId"], "x-1",
                "{t}"
            );
        }
        let observing = trust
            .iter()
            .find(|t| t["Principal"]["AWS"] == "arn:aws:iam::123456789012:role/api")
            .unwrap();
        assert_eq!(
            observing["Condition"]["StringEquals"]["sts:RoleSessionName"],
            ec2_scheduler_aws::OBSERVER_SESSION
        );
    }
}

#[test]
fn the_override_probe_may_send_only_the_stack_s_own_document() {
    let shipped: serde_json::Value =
        serde_json::from_str(ec2_scheduler_aws::ssm::DOCUMENT).unwrap();
    for file in ["template.yaml", "cross-account-role.yaml"] {
        let t = template(file);
        // The stack creates the document as shipped, under the name it grants.
        let doc = &t["Resources"]["OverrideCheckDocument"]["Properties"];
        assert_eq!(doc["DocumentType"], "Command", "{file}");
        let content = serde_json::to_value(&doc["Content"]).unwrap();
        assert_eq!(
            content, shipped,
            "{file}: the document differs from deploy/ssm"
        );
        assert_eq!(
            untagged(&doc["Name"]).as_str(),
            Some("OverrideDocumentName"),
            "{file}"
        );
    }
}

#[test]
fn every_check_the_templates_skip_says_why_next_to_its_resource() {
    for file in ["template.yaml", "cross-account-role.yaml"] {
        let t = template(file);
        for (id, r) in t["Resources"].as_mapping().unwrap() {
            let id = id.as_str().unwrap();
            let skips = r["Metadata"]["checkov"]["skip"].as_sequence();
            for s in skips.into_iter().flatten() {
                let check = s["id"].as_str().unwrap_or_default();
                assert!(check.starts_with("CKV_"), "{file}: {id}: {s:?}");
                let why = s["comment"].as_str().unwrap_or_default();
                assert!(
                    why.split_whitespace().count() >= 8,
                    "{file}: {id} skips {check} without saying why"
                );
            }
        }
    }
}
