//! The committed definition on two interpreters: the tests' own (`common::asl`) and
//! moto's Step Functions, which executes definitions in server mode and answers
//! Lambda tasks from a queue (successes only, so the failure paths are checked on
//! ours alone, against the specification's cases in `asl.rs`). For the same input and
//! the same sequence of handler answers, both must enter the same states, each with
//! the same input, and end the same way with the same output.

mod common;

use std::cell::RefCell;

use common::asl::{Answer, End, execute};
use ec2_scheduler_testkit::{Moto, create_state_machine, create_topic, run_execution};
use serde_json::{Value, json};

const REGION: &str = "us-west-2";

/// The definition with its placeholders filled as the template fills them.
fn definition(topic: &str) -> String {
    let mut d = common::DEFINITION.replace("${Partition}", "aws");
    for (placeholder, function) in [
        ("${EventGateFunctionArn}", "gate"),
        ("${RunStepFunctionArn}", "step"),
        ("${EventFailedFunctionArn}", "failed"),
        ("${ScheduleSyncFunctionArn}", "sync"),
    ] {
        d = d.replace(
            placeholder,
            &format!("arn:aws:lambda:{REGION}:123456789012:function:{function}"),
        );
    }
    d.replace("${NotificationTopicArn}", topic)
}

fn gate(fire: bool, alert: bool, reason: Option<&str>) -> Value {
    json!({"fire": fire, "alert": alert, "workload": "W", "action": "stop",
           "at": "2026-12-07T06:00:00Z", "profile": null, "key": "W#stop#2026-12-07T06:00:00Z",
           "run_id": if fire { json!("run-k") } else { Value::Null }, "reason": reason})
}

fn synced() -> Value {
    json!({"created": ["e-1"], "deleted": [], "kept": 3})
}

fn step(done: bool, outcome: &str) -> Value {
    json!({"run_id": "run-k", "done": done, "outcome": outcome,
           "wait_seconds": if done { 0 } else { 1 }})
}

/// Our interpreter on `definition`, the Lambda tasks answered from `answers` in order
/// (as moto's queue answers them) and SNS publishes succeeding.
fn ours(definition: &str, name: &str, input: &Value, answers: &[Value]) -> common::asl::Run {
    let def: Value = serde_json::from_str(definition).unwrap();
    let queue = RefCell::new(answers.iter().cloned());
    pollster::block_on(execute(
        &def,
        name,
        input.clone(),
        async |_: &str, target: &str, _: &Value| {
            if target.ends_with(":states:::sns:publish") {
                return Answer::ok(json!({"MessageId": "m"}));
            }
            let payload = queue.borrow_mut().next().expect("an answer for each task");
            Answer::ok(json!({"Payload": payload, "StatusCode": 200}))
        },
        async |_: f64| {},
        || 0.5,
    ))
}

#[tokio::test]
async fn moto_and_the_tests_interpreter_follow_the_definition_alike() {
    let moto = Moto::start();
    // Before the state machine is made: the executing backend is another one.
    let _executing = moto.executing();
    let conf = moto.config(REGION).await;
    let topic = create_topic(&conf, "ec2-scheduler").await;
    let definition = definition(&topic);
    let machine = create_state_machine(&conf, "runs", &definition).await;
    let event = json!({"workload": "W", "action": "stop", "at": "2026-12-07T06:00:00Z"});
    // The loop through Wait, each way out of Fires?, a failed run told, nothing to
    // do, a run begun through the API.
    let cases: Vec<(&str, Value, Vec<Value>)> = vec![
        (
            "fires-and-waits",
            event.clone(),
            vec![
                gate(true, false, None),
                synced(),
                step(false, "running"),
                step(true, "succeeded"),
            ],
        ),
        (
            "skipped-quietly",
            event.clone(),
            vec![gate(false, false, Some("a skip date")), synced()],
        ),
        (
            "missed-and-told",
            event.clone(),
            vec![gate(false, true, Some("20 min late")), synced()],
        ),
        (
            "run-failed",
            event.clone(),
            vec![gate(true, false, None), synced(), step(true, "failed")],
        ),
        (
            "nothing-to-do",
            event.clone(),
            vec![
                gate(true, false, None),
                synced(),
                json!({"run_id": null, "done": true, "outcome": "nothing-to-do", "wait_seconds": 0}),
            ],
        ),
        (
            "begun-through-the-api",
            json!({"workload": "W", "action": "start", "run_id": "run-api"}),
            vec![step(false, "running"), step(true, "succeeded")],
        ),
    ];
    for (name, input, answers) in &cases {
        moto.answer(REGION, answers);
        let theirs = run_execution(&conf, &machine, name, input).await;
        let mine = ours(&definition, name, input, answers);
        assert_eq!(theirs.entered, mine.path, "{name}: the states entered");
        assert!(theirs.entered.len() >= 5, "{name}: {theirs:?}");
        eprintln!("{name}: {}", theirs.entered.join(" > "));
        let inputs: Vec<Value> = mine.history.iter().map(|e| e.input.clone()).collect();
        assert_eq!(theirs.inputs, inputs, "{name}: each state's input");
        match &mine.end {
            End::Succeeded(output) => {
                assert_eq!(theirs.status, "SUCCEEDED", "{name}: {theirs:?}");
                assert_eq!(theirs.output.as_ref(), Some(output), "{name}: the output");
            }
            End::Failed(f) => {
                assert_eq!(theirs.status, "FAILED", "{name}: {theirs:?}");
                assert_eq!(theirs.error.as_deref(), Some(f.error.as_str()), "{name}");
            }
        }
    }
}
