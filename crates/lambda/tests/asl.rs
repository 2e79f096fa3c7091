//! The interpreter the state machine's tests run on, against a table of cases written
//! from the Amazon States Language specification (Retry, Catch, the predefined error
//! names, TimeoutSeconds), and the committed definition against the rules it must
//! keep: every task retried on any failure with backoff and a bound, every failure
//! path ending the run and telling the topic.

mod common;

use std::cell::RefCell;

use common::asl::{Answer, End, Failure, Run, backoff, execute, matches};
use serde_json::{Value, json};

/// Runs `definition` with the tasks answered from `answers` in order (and the rest
/// succeeding with `{}`), full jitter drawing 0.5.
fn run(definition: Value, input: Value, answers: Vec<Answer>) -> Run {
    let answers = RefCell::new(answers.into_iter());
    pollster::block_on(execute(
        &definition,
        "case",
        input,
        async |_: &str, _: &str, _: &Value| {
            answers.borrow_mut().next().unwrap_or(Answer::ok(json!({})))
        },
        async |_: f64| {},
        || 0.5,
    ))
}

fn failed(r: &Run) -> &Failure {
    match &r.end {
        End::Failed(f) => f,
        End::Succeeded(v) => panic!("succeeded with {v}; path {:?}", r.path),
    }
}

fn retry_waits(r: &Run) -> Vec<f64> {
    r.waits
        .iter()
        .filter(|w| w.2 == "retry")
        .map(|w| w.1)
        .collect()
}

/// A machine of one task `T` with `retry` and `catch`, going to `Done` (a Pass that
/// ends), catchers going to `X`, `Y` or `Z` (Pass states that end).
fn one_task(task: Value) -> Value {
    let mut t = json!({"Type": "Task", "Resource": "arn:aws:states:::lambda:invoke",
        "Parameters": {"FunctionName": "f", "Payload.$": "$"}, "Next": "Done"});
    for (k, v) in task.as_object().unwrap() {
        t[k] = v.clone();
    }
    json!({"StartAt": "T", "States": {
        "T": t,
        "Done": {"Type": "Pass", "End": true},
        "X": {"Type": "Pass", "End": true},
        "Y": {"Type": "Pass", "End": true},
        "Z": {"Type": "Pass", "End": true}}})
}

#[test]
fn error_names_match_as_the_specification_says() {
    let cases = [
        (json!(["E"]), "E", true),
        (json!(["E"]), "F", false),
        (json!(["A", "E"]), "E", true),
        // States.ALL matches any known error ...
        (json!(["States.ALL"]), "Lambda.ServiceException", true),
        (json!(["States.ALL"]), "States.Timeout", true),
        (json!(["States.ALL"]), "States.TaskFailed", true),
        // ... but not the terminal ones.
        (json!(["States.ALL"]), "States.Runtime", false),
        (json!(["States.ALL"]), "States.DataLimitExceeded", false),
        // States.TaskFailed matches any error of a task but States.Timeout.
        (json!(["States.TaskFailed"]), "Sandbox.Timedout", true),
        (json!(["States.TaskFailed"]), "lambda_runtime.Error", true),
        (json!(["States.TaskFailed"]), "States.Timeout", false),
        (json!(["States.TaskFailed"]), "States.Runtime", false),
        // Names are exact.
        (json!(["States.Timeout"]), "States.TimeOut", false),
    ];
    for (list, error, want) in cases {
        assert_eq!(matches(&list, error), want, "{list} vs {error}");
    }
}

#[test]
fn backoff_grows_by_its_rate_up_to_its_cap_and_full_jitter_draws_below_it() {
    let r = json!({"IntervalSeconds": 10, "BackoffRate": 3, "MaxDelaySeconds": 50});
    let plain: Vec<f64> = (0..4).map(|a| backoff(&r, a, 0.5)).collect();
    assert_eq!(plain, [10.0, 30.0, 50.0, 50.0]);
    let mut j = r.clone();
    j["JitterStrategy"] = json!("FULL");
    let jittered: Vec<f64> = (0..4).map(|a| backoff(&j, a, 0.5)).collect();
    assert_eq!(jittered, [5.0, 15.0, 25.0, 25.0]);
    // The defaults: 1 s, doubling, no cap.
    let d: Vec<f64> = (0..3).map(|a| backoff(&json!({}), a, 0.0)).collect();
    assert_eq!(d, [1.0, 2.0, 4.0]);
}

#[test]
fn a_retrier_retries_its_errors_up_to_max_attempts_then_the_catcher_takes_the_error() {
    let def = one_task(json!({
        "Retry": [{"ErrorEquals": ["E"], "IntervalSeconds": 1, "MaxAttempts": 2, "BackoffRate": 2}],
        "Catch": [{"ErrorEquals": ["States.ALL"], "ResultPath": "$.err", "Next": "X"}]}));
    let r = run(
        def.clone(),
        json!({"a": 1}),
        vec![
            Answer::err("E", "c1"),
            Answer::err("E", "c2"),
            Answer::err("E", "c3"),
        ],
    );
    assert_eq!(r.tasks.len(), 3);
    assert_eq!(retry_waits(&r), [1.0, 2.0]);
    assert_eq!(r.path, ["T", "X"]);
    assert_eq!(
        r.output(),
        &json!({"a": 1, "err": {"Error": "E", "Cause": "c3"}})
    );
    // A retry that succeeds goes on as if nothing failed.
    let r = run(
        def,
        json!({"a": 1}),
        vec![Answer::err("E", "c1"), Answer::ok(json!({"b": 2}))],
    );
    assert_eq!(r.path, ["T", "Done"]);
    assert_eq!(r.output(), &json!({"b": 2}));
}

#[test]
fn the_first_matching_retrier_decides_and_counts_its_own_attempts() {
    let def = one_task(json!({
        "Retry": [
            {"ErrorEquals": ["A"], "MaxAttempts": 1, "IntervalSeconds": 1},
            {"ErrorEquals": ["States.ALL"], "MaxAttempts": 2, "IntervalSeconds": 5}],
        "Catch": [{"ErrorEquals": ["States.ALL"], "Next": "X"}]}));
    // A, then B, then B, then A: A's retrier has one attempt (used), States.ALL two.
    let r = run(
        def.clone(),
        json!({}),
        vec![
            Answer::err("A", ""),
            Answer::err("B", ""),
            Answer::err("B", ""),
            Answer::err("A", ""),
        ],
    );
    assert_eq!(r.tasks.len(), 4);
    assert_eq!(retry_waits(&r), [1.0, 5.0, 10.0]);
    assert_eq!(r.path, ["T", "X"]);
    // An exhausted first match does not fall through to a later retrier.
    let r = run(
        def,
        json!({}),
        vec![Answer::err("A", ""), Answer::err("A", "")],
    );
    assert_eq!(r.tasks.len(), 2);
    assert_eq!(r.path, ["T", "X"]);
}

#[test]
fn max_attempts_zero_never_retries_and_no_catcher_fails_the_execution() {
    let def = one_task(json!({"Retry": [{"ErrorEquals": ["E"], "MaxAttempts": 0}]}));
    let r = run(def, json!({}), vec![Answer::err("E", "why")]);
    assert_eq!(r.tasks.len(), 1);
    assert_eq!(failed(&r), &Failure::new("E", "why"));
}

#[test]
fn catchers_are_tried_in_order_and_result_path_null_keeps_the_input() {
    let def = one_task(json!({"Catch": [
        {"ErrorEquals": ["B"], "Next": "X"},
        {"ErrorEquals": ["A"], "ResultPath": null, "Next": "Y"},
        {"ErrorEquals": ["States.ALL"], "Next": "Z"}]}));
    let r = run(def.clone(), json!({"in": true}), vec![Answer::err("A", "")]);
    assert_eq!(r.path, ["T", "Y"]);
    assert_eq!(r.output(), &json!({"in": true}));
    // Without ResultPath the error output replaces the input.
    let r = run(def, json!({"in": true}), vec![Answer::err("C", "c")]);
    assert_eq!(r.path, ["T", "Z"]);
    assert_eq!(r.output(), &json!({"Error": "C", "Cause": "c"}));
}

#[test]
fn a_task_past_its_timeout_fails_with_states_timeout_which_task_failed_does_not_match() {
    let def = one_task(json!({"TimeoutSeconds": 5,
        "Retry": [{"ErrorEquals": ["States.TaskFailed"], "MaxAttempts": 3}],
        "Catch": [
            {"ErrorEquals": ["States.TaskFailed"], "Next": "X"},
            {"ErrorEquals": ["States.Timeout"], "Next": "Y"}]}));
    let slow = Answer {
        result: Ok(json!({})),
        seconds: 10.0,
    };
    let r = run(def, json!({}), vec![slow]);
    assert_eq!(
        r.tasks.len(),
        1,
        "States.TaskFailed did not retry a timeout"
    );
    assert_eq!(r.path, ["T", "Y"]);
    assert_eq!(r.seconds, 5.0);
}

#[test]
fn a_runtime_error_is_neither_retried_nor_caught_by_states_all() {
    let def = one_task(json!({
        "Parameters": {"FunctionName": "f", "Payload": {"x.$": "$.missing"}},
        "Retry": [{"ErrorEquals": ["States.ALL"]}],
        "Catch": [{"ErrorEquals": ["States.ALL"], "Next": "X"}]}));
    let r = run(def, json!({}), vec![]);
    assert!(r.tasks.is_empty());
    assert_eq!(failed(&r).error, "States.Runtime");
    // A ResultSelector path the answer lacks, too.
    let def = one_task(json!({
        "ResultSelector": {"x.$": "$.Payload.missing"},
        "Retry": [{"ErrorEquals": ["States.ALL"]}],
        "Catch": [{"ErrorEquals": ["States.ALL"], "Next": "X"}]}));
    let r = run(def, json!({}), vec![Answer::ok(json!({"Payload": {}}))]);
    assert_eq!(r.tasks.len(), 1);
    assert_eq!(failed(&r).error, "States.Runtime");
}

#[test]
fn the_executions_timeout_ends_it_with_states_timeout_that_nothing_catches() {
    let def = json!({"TimeoutSeconds": 100, "StartAt": "W", "States": {
        "W": {"Type": "Wait", "Seconds": 60, "Next": "T"},
        "T": {"Type": "Task", "Resource": "r", "Next": "Done",
              "Retry": [{"ErrorEquals": ["E"], "IntervalSeconds": 30, "MaxAttempts": 5, "BackoffRate": 1}],
              "Catch": [{"ErrorEquals": ["States.ALL"], "Next": "X"}]},
        "Done": {"Type": "Pass", "End": true},
        "X": {"Type": "Pass", "End": true}}});
    let r = run(
        def,
        json!({}),
        (0..5).map(|_| Answer::err("E", "")).collect(),
    );
    assert_eq!(failed(&r).error, "States.Timeout");
    assert!(!r.path.contains(&"X".to_string()));
    // 60 s of waiting, then retries 30 s apart: the third attempt is past 100 s.
    assert_eq!(r.tasks.len(), 2);
}

#[test]
fn choice_rules_and_their_default() {
    let def = json!({"StartAt": "C", "States": {
        "C": {"Type": "Choice", "Choices": [
            {"And": [{"Variable": "$.done", "BooleanEquals": true},
                     {"Variable": "$.outcome", "StringEquals": "failed"}], "Next": "X"},
            {"Variable": "$.done", "BooleanEquals": true, "Next": "Y"},
            {"Variable": "$.id", "IsPresent": true, "Next": "Z"}],
          "Default": "D"},
        "X": {"Type": "Pass", "End": true}, "Y": {"Type": "Pass", "End": true},
        "Z": {"Type": "Pass", "End": true}, "D": {"Type": "Pass", "End": true}}});
    let cases = [
        (json!({"done": true, "outcome": "failed"}), "X"),
        (json!({"done": true, "outcome": "succeeded"}), "Y"),
        (json!({"done": false, "outcome": "x", "id": null}), "Z"),
        (json!({"done": false, "outcome": "x"}), "D"),
    ];
    for (input, want) in cases {
        let r = run(def.clone(), input.clone(), vec![]);
        assert_eq!(r.path, ["C", want], "{input}");
    }
    // A rule's Variable missing from the data is a runtime error.
    let r = run(def, json!({"outcome": "x"}), vec![]);
    assert_eq!(failed(&r).error, "States.Runtime");
}

/// The committed definition keeps the rules: a bound on the whole execution, and on
/// every Lambda task a timeout, retries of service errors and of any failure or
/// timeout with backoff, and a catcher; every path to a failure goes through ending
/// the run and the topic.
#[test]
fn the_committed_definition_retries_every_step_and_ends_and_tells_every_failure() {
    let d = common::definition();
    assert!(d["TimeoutSeconds"].as_u64().is_some_and(|t| t > 0));
    let states = d["States"].as_object().unwrap();
    for (name, s) in states {
        if s["Type"] != "Task" {
            continue;
        }
        let resource = s["Resource"].as_str().unwrap();
        assert!(
            resource.starts_with("arn:aws:states:::"),
            "{name}: {resource}"
        );
        assert!(
            s["Catch"].as_array().is_some_and(|c| c
                .last()
                .is_some_and(|c| c["ErrorEquals"] == json!(["States.ALL"]))),
            "{name} catches everything last"
        );
        if !resource.ends_with("lambda:invoke") {
            continue;
        }
        assert!(
            s["TimeoutSeconds"].as_u64().is_some(),
            "{name}: TimeoutSeconds"
        );
        let retry = s["Retry"].as_array().unwrap();
        for error in [
            "Lambda.ServiceException",
            "Lambda.TooManyRequestsException",
            "Lambda.ClientExecutionTimeoutException",
            "Sandbox.Timedout",
            "States.Timeout",
            "lambda_runtime.Error",
        ] {
            let r = retry
                .iter()
                .find(|r| matches(&r["ErrorEquals"], error))
                .unwrap_or_else(|| panic!("{name} does not retry {error}"));
            let attempts = r["MaxAttempts"].as_u64().unwrap();
            assert!((1..=6).contains(&attempts), "{name}: {error}: {attempts}");
            assert!(r["BackoffRate"].as_f64().unwrap() > 1.0, "{name}: {error}");
            assert!(r["MaxDelaySeconds"].as_u64().is_some(), "{name}: {error}");
        }
    }
    // The catchers of the gate and the run step lead to ending the run, then to the
    // topic, then to a failed execution.
    for name in ["Gate", "Run step"] {
        assert_eq!(states[name]["Catch"][0]["Next"], "Record the failure");
    }
    assert_eq!(states["Record the failure"]["Next"], "Notify");
    assert_eq!(states["Record the failure"]["Catch"][0]["Next"], "Notify");
    assert_eq!(states["Notify"]["Next"], "Failed");
    assert_eq!(states["Failed"]["Type"], "Fail");
}
