//! The serverless templates against the code: the functions' role grants exactly the
//! actions the adapters call (`calls::ACTIONS`, which `docs/iam.md` is tested
//! against too), each where it should be; the state machine the template deploys is
//! the committed definition the moto test follows. (cfn-lint checks both templates in
//! `scripts/test`.)

use std::collections::BTreeSet;

use ec2_scheduler_aws::calls;
use serde_yaml_ng::Value;

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

/// Every statement that starts, stops or resizes instances is conditioned on the
/// workload tag key and limited to instances.
fn acts_only_on_tagged_instances(st: &[serde_json::Value]) {
    for action in [
        "ec2:StartInstances",
        "ec2:StopInstances",
        "ec2:ModifyInstanceAttribute",
    ] {
        let granting = with_action(st, action);
        assert!(!granting.is_empty(), "{action} is not granted");
        for s in granting {
            assert_eq!(
                s["Condition"]["Null"]["aws:ResourceTag/${WorkloadTagKey}"], "false",
                "{action}: {s}"
            );
            assert!(
                s["Resource"].as_str().unwrap().ends_with(":instance/*"),
                "{s}"
            );
        }
    }
}

fn granted(statements: &[serde_json::Value]) -> BTreeSet<String> {
    statements.iter().flat_map(actions).collect()
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

#[test]
fn the_functions_are_granted_exactly_the_actions_the_code_calls_each_where_it_should_be() {
    let t = template("template.yaml");
    let st = role_statements(&t, "FunctionRole");
    assert_eq!(
        granted(&st),
        called(),
        "the template and calls::ACTIONS differ"
    );
    for s in &st {
        assert_eq!(s["Effect"], "Allow");
    }
    // Start, stop and resize only instances with the workload tag key.
    acts_only_on_tagged_instances(&st);
    for s in with_action(&st, "kms:CreateGrant") {
        assert_eq!(
            s["Condition"]["Bool"]["kms:GrantIsForAWSResource"], "true",
            "{s}"
        );
    }
    // DynamoDB and SNS only on the stack's resources (or the tables it was given).
    for s in &st {
        let acts = actions(s);
        if acts
            .iter()
            .any(|a| a.starts_with("dynamodb:") || a.starts_with("sns:"))
        {
            assert_ne!(s["Resource"], "*", "{s}");
            assert!(!s["Resource"].to_string().contains("table/*"), "{s}");
        }
    }
    // Describe calls are unconditioned, as AWS requires.
    for s in with_action(&st, "ec2:DescribeInstances") {
        assert_eq!(s["Resource"], "*");
        assert!(s.get("Condition").is_none());
    }
    // What acts in a region (instances, the override-file probe, volume keys) does
    // so only in the managed regions: any region of the resource ARN, the request's
    // region conditioned.
    for action in [
        "ec2:StartInstances",
        "ec2:StopInstances",
        "ec2:ModifyInstanceAttribute",
        "ssm:SendCommand",
        "kms:CreateGrant",
    ] {
        for s in with_action(&st, action) {
            let regions = &s["Condition"]["StringEquals"]["aws:RequestedRegion"];
            assert!(!regions.is_null(), "{action}: {s}");
        }
    }
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
    assert_eq!(logs.len(), functions.len());
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
fn the_role_in_other_accounts_acts_only_on_tagged_instances_and_trusts_only_the_scheduler_with_its_external_id()
 {
    let t = template("cross-account-role.yaml");
    let st = role_statements(&t, "Role");
    // What acts on the other account's instances: everything but the store, the
    // notifications, identity, prices, the schedules and the runs, which stay in the
    // scheduler's account.
    let expected: BTreeSet<String> = called()
        .into_iter()
        .filter(|a| {
            ![
                "dynamodb:",
                "sns:",
                "sts:",
                "pricing:",
                "scheduler:",
                "iam:",
                "states:",
            ]
            .iter()
            .any(|p| a.starts_with(p))
        })
        .collect();
    assert_eq!(granted(&st), expected);
    acts_only_on_tagged_instances(&st);
    let trust = serde_json::to_value(
        &t["Resources"]["Role"]["Properties"]["AssumeRolePolicyDocument"]["Statement"][0]
            ["Condition"]["StringEquals"],
    )
    .unwrap_or_default();
    assert!(trust.get("sts:ExternalId").is_some(), "{trust}");
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

#[test]
fn the_override_probe_may_send_only_the_stack_s_own_document() {
    let shipped: serde_json::Value =
        serde_json::from_str(ec2_scheduler_aws::ssm::DOCUMENT).unwrap();
    for (file, role) in [
        ("template.yaml", "FunctionRole"),
        ("cross-account-role.yaml", "Role"),
    ] {
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
        let st = role_statements(&t, role);
        let send = with_action(&st, "ssm:SendCommand");
        assert!(!send.is_empty(), "{file}");
        for s in send {
            let resources: Vec<String> = match &s["Resource"] {
                serde_json::Value::Array(a) => a.iter().map(|r| r.to_string()).collect(),
                other => vec![other.to_string()],
            };
            for r in &resources {
                assert!(
                    r.contains(":document/${OverrideDocumentName}")
                        || r.contains(":ec2:*:${AWS::AccountId}:instance/*"),
                    "{file}: SendCommand on {r}"
                );
                assert!(!r.contains("AWS-Run"), "{file}: {r}");
                // Instances only where they carry the workload tag key.
                if r.contains(":instance/") {
                    assert_eq!(
                        s["Condition"]["Null"]["aws:ResourceTag/${WorkloadTagKey}"], "false",
                        "{file}: {s}"
                    );
                }
            }
        }
        // Reading a command's outcome changes nothing, and names no resource.
        for s in with_action(&st, "ssm:GetCommandInvocation") {
            assert_eq!(actions(s), ["ssm:GetCommandInvocation"], "{file}: {s}");
        }
    }
}
