//! A small interpreter of the states the committed definition uses, invoking the
//! Lambda handlers in process for its tasks.

// Each test binary uses part of it.
#![allow(dead_code)]

use std::collections::BTreeMap;

use ec2_scheduler_lambda::{
    Env, FailedInput, GateInput, StepInput, SyncInput, event_failed, event_gate, run_step,
    schedule_sync,
};
use serde_json::{Value, json};

pub const DEFINITION: &str = include_str!("../../../../deploy/serverless/statemachine.asl.json");

/// How a Wait state waits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Waits {
    /// Real time, as long as it says (at most a minute).
    Real,
    /// Real time, at most 1 s (moto's instances change state at once).
    Short,
    /// The workload's cloud's time (virtual on the simulator).
    Cloud,
}

/// The value at a JSONPath of the forms the definition uses: `$`, `$.a.b`, `$$.a.b`.
pub fn at_path(input: &Value, context: &Value, path: &str) -> Value {
    let (root, rest) = if let Some(r) = path.strip_prefix("$$") {
        (context, r)
    } else if let Some(r) = path.strip_prefix('$') {
        (input, r)
    } else {
        panic!("not a path: {path}");
    };
    rest.split('.')
        .filter(|k| !k.is_empty())
        .fold(root.clone(), |v, k| {
            v.get(k).cloned().unwrap_or(Value::Null)
        })
}

/// Whether the input has the field at `path` (`$.a.b`), even a null one.
pub fn present(input: &Value, path: &str) -> bool {
    let mut v = input;
    for k in path
        .trim_start_matches('$')
        .split('.')
        .filter(|k| !k.is_empty())
    {
        match v.get(k) {
            Some(next) => v = next,
            None => return false,
        }
    }
    true
}

/// A `.$` value: a path, or the intrinsic `States.Format('...{}...', path)`.
pub fn resolve(input: &Value, context: &Value, expr: &str) -> Value {
    if let Some(args) = expr
        .strip_prefix("States.Format(")
        .and_then(|a| a.strip_suffix(')'))
    {
        let (template, arg) = args.split_once("',").expect("a template and one argument");
        let template = template.trim().trim_start_matches('\'');
        let value = at_path(input, context, arg.trim());
        let text = value
            .as_str()
            .map_or_else(|| value.to_string(), str::to_string);
        return Value::String(template.replacen("{}", &text, 1));
    }
    at_path(input, context, expr)
}

/// `Parameters` or `ResultSelector`: fields ending in `.$` are resolved.
pub fn fill(template: &Value, input: &Value, context: &Value) -> Value {
    match template {
        Value::Object(m) => Value::Object(
            m.iter()
                .map(|(k, v)| match (k.strip_suffix(".$"), v) {
                    (Some(name), Value::String(expr)) => {
                        (name.to_string(), resolve(input, context, expr))
                    }
                    _ => (k.clone(), fill(v, input, context)),
                })
                .collect(),
        ),
        other => other.clone(),
    }
}

/// The state's output from its input and its result, by `ResultPath`.
pub fn place(input: Value, state: &Value, result: Value) -> Value {
    match state.get("ResultPath") {
        Some(Value::Null) => input,
        None => result,
        Some(Value::String(p)) if p == "$" => result,
        Some(Value::String(p)) => {
            let mut out = input;
            let keys: Vec<&str> = p.trim_start_matches("$.").split('.').collect();
            let mut slot = &mut out;
            for k in &keys[..keys.len() - 1] {
                slot = slot
                    .as_object_mut()
                    .unwrap()
                    .entry(k.to_string())
                    .or_insert(json!({}));
            }
            slot.as_object_mut()
                .unwrap()
                .insert(keys[keys.len() - 1].to_string(), result);
            out
        }
        Some(other) => panic!("ResultPath {other}"),
    }
}

/// What one run of the definition did.
pub struct Execution {
    /// The states entered, in order.
    pub path: Vec<String>,
    pub output: Value,
    /// How many times each function was invoked.
    pub invocations: BTreeMap<String, usize>,
    /// How long each invocation took, by function, in milliseconds.
    pub millis: BTreeMap<String, Vec<u128>>,
}

/// Runs the committed definition on `input`, invoking the handlers in process for
/// its Lambda tasks (by the function each `FunctionName` placeholder names). Waits
/// as `waits` says. The gate is asked at the cloud's time.
pub async fn execute(env: &Env, name: &str, input: Value, waits: Waits) -> Execution {
    let definition: Value = serde_json::from_str(DEFINITION).unwrap();
    let states = &definition["States"];
    let context = json!({"Execution": {"Name": name}});
    let mut current = definition["StartAt"].as_str().unwrap().to_string();
    let mut data = input;
    let mut path = Vec::new();
    let mut invocations: BTreeMap<String, usize> = BTreeMap::new();
    let mut millis: BTreeMap<String, Vec<u128>> = BTreeMap::new();
    for _ in 0..5_000 {
        path.push(current.clone());
        let state = &states[&current];
        let next = state
            .get("Next")
            .and_then(Value::as_str)
            .map(str::to_string);
        match state["Type"].as_str().unwrap() {
            "Task" => {
                assert_eq!(
                    state["Resource"], "arn:aws:states:::lambda:invoke",
                    "{current}"
                );
                let params = fill(&state["Parameters"], &data, &context);
                let function = params["FunctionName"].as_str().unwrap().to_string();
                *invocations.entry(function.clone()).or_default() += 1;
                let payload = params["Payload"].clone();
                let began = std::time::Instant::now();
                let answer = match function.as_str() {
                    "${EventGateFunctionArn}" => {
                        let i: GateInput = serde_json::from_value(payload).unwrap();
                        serde_json::to_value(event_gate(env, i, env.clouds.now()).await.unwrap())
                    }
                    "${RunStepFunctionArn}" => {
                        let i: StepInput = serde_json::from_value(payload).unwrap();
                        serde_json::to_value(run_step(env, i).await.unwrap())
                    }
                    "${ScheduleSyncFunctionArn}" => {
                        let i: SyncInput = serde_json::from_value(payload).unwrap();
                        serde_json::to_value(schedule_sync(env, i, env.clouds.now()).await.unwrap())
                    }
                    "${EventFailedFunctionArn}" => {
                        let i: FailedInput = serde_json::from_value(payload).unwrap();
                        event_failed(env, i, env.clouds.now()).await.unwrap();
                        Ok(json!({"recorded": true}))
                    }
                    other => panic!("no handler for {other}"),
                }
                .unwrap();
                millis
                    .entry(function.clone())
                    .or_default()
                    .push(began.elapsed().as_millis());
                let result = json!({"Payload": answer, "StatusCode": 200});
                let result = match state.get("ResultSelector") {
                    Some(sel) => fill(sel, &result, &context),
                    None => result,
                };
                data = place(data, state, result);
            }
            "Pass" => {
                let result = match (state.get("Result"), state.get("Parameters")) {
                    (Some(r), _) => r.clone(),
                    (None, Some(p)) => fill(p, &data, &context),
                    (None, None) => data.clone(),
                };
                data = place(data, state, result);
            }
            "Choice" => {
                let chosen = state["Choices"].as_array().unwrap().iter().find(|c| {
                    let v = at_path(&data, &context, c["Variable"].as_str().unwrap());
                    match (c.get("BooleanEquals"), c.get("IsPresent")) {
                        (Some(b), None) => &v == b,
                        (None, Some(p)) => {
                            let _ = v;
                            p.as_bool().unwrap() == present(&data, c["Variable"].as_str().unwrap())
                        }
                        _ => panic!("a choice rule not followed here: {c}"),
                    }
                });
                current = chosen.map_or_else(
                    || state["Default"].as_str().unwrap().to_string(),
                    |c| c["Next"].as_str().unwrap().to_string(),
                );
                continue;
            }
            "Wait" => {
                let secs = at_path(&data, &context, state["SecondsPath"].as_str().unwrap())
                    .as_u64()
                    .expect("SecondsPath gives whole seconds");
                assert!(secs >= 1, "a Wait of {secs} s");
                match waits {
                    Waits::Real => {
                        tokio::time::sleep(std::time::Duration::from_secs(secs.min(60))).await
                    }
                    Waits::Short => tokio::time::sleep(std::time::Duration::from_secs(1)).await,
                    Waits::Cloud => {
                        let name = data["workload"].as_str().unwrap();
                        let w = env.app.stored_workload(name).await.unwrap();
                        let cloud = env.clouds.get(&env.app, &w).await.unwrap();
                        cloud.wait(std::time::Duration::from_secs(secs)).await;
                    }
                }
            }
            "Succeed" => {
                return Execution {
                    path,
                    output: data,
                    invocations,
                    millis,
                };
            }
            "Fail" => panic!("the execution failed: {data:#}\n{path:?}"),
            other => panic!("state type {other} is not followed here"),
        }
        current = next.unwrap_or_else(|| panic!("{current} has no Next"));
    }
    panic!("the execution did not end: {path:?}");
}
