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

/// The statements of a policy document: YAML, or JSON text under `!Sub` (its
/// `${...}` left as they are).
fn statements(document: &Value) -> Vec<serde_json::Value> {
    let doc: serde_json::Value = match untagged(document) {
        Value::String(text) => serde_json::from_str(text).expect("the policy is JSON text"),
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
