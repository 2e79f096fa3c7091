//! An interpreter of the Amazon States Language, for the states and fields the
//! committed definition uses, with the failure semantics the specification gives:
//!
//! - a Task's error is matched against its `Retry` list in order: the first retrier
//!   whose `ErrorEquals` names the error, or `States.TaskFailed` (any error of a task
//!   but `States.Timeout`), or `States.ALL` (any error but `States.Runtime` and
//!   `States.DataLimitExceeded`), decides; it retries while its attempts are under
//!   `MaxAttempts` (default 3), after `IntervalSeconds` (default 1) times
//!   `BackoffRate` (default 2.0) to the power of the attempts made, at most
//!   `MaxDelaySeconds`, drawn at random below that with `JitterStrategy` `FULL`; each
//!   retrier counts its own attempts, from zero at each entry into the state;
//! - when no retrier matches or it has no attempts left, the first `Catch` that
//!   matches (by the same rules) moves to its `Next`, with the error output
//!   `{"Error", "Cause"}` placed at its `ResultPath` (`null`: the input as it was);
//! - without a matching catcher, the execution fails with the error;
//! - a Task that runs past its `TimeoutSeconds` fails with `States.Timeout`; an
//!   execution that runs past the top-level `TimeoutSeconds` fails with
//!   `States.Timeout`, which nothing catches;
//! - a path that the data does not have, in `Parameters`, `ResultSelector`,
//!   `SecondsPath` or a Choice rule's `Variable`, is a `States.Runtime` error.
//!
//! Time is virtual: each task says how long it took, and waits (Wait states, retry
//! intervals) go through the caller, which lets the simulator's clock pass or sleeps.

use std::collections::BTreeMap;

use serde_json::{Value, json};

/// A failed task or state: an error name and its cause.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    pub error: String,
    pub cause: String,
}

impl Failure {
    pub fn new(error: &str, cause: &str) -> Self {
        Failure {
            error: error.into(),
            cause: cause.into(),
        }
    }

    fn runtime(cause: String) -> Self {
        Failure {
            error: "States.Runtime".into(),
            cause,
        }
    }

    /// The error output a Catch places at its `ResultPath`.
    pub fn output(&self) -> Value {
        json!({"Error": self.error, "Cause": self.cause})
    }
}

/// What a task answered, and how many seconds it took.
pub struct Answer {
    pub result: Result<Value, Failure>,
    pub seconds: f64,
}

impl Answer {
    pub fn ok(result: Value) -> Self {
        Answer {
            result: Ok(result),
            seconds: 0.0,
        }
    }

    pub fn err(error: &str, cause: &str) -> Self {
        Answer {
            result: Err(Failure::new(error, cause)),
            seconds: 0.0,
        }
    }
}

/// How an execution ended.
#[derive(Debug, Clone, PartialEq)]
pub enum End {
    Succeeded(Value),
    Failed(Failure),
}

/// One entry into a state, as the execution history shows it.
#[derive(Debug, Clone, PartialEq)]
pub struct Entered {
    pub state: String,
    pub input: Value,
}

/// What one execution did.
#[derive(Debug, Clone)]
pub struct Run {
    /// The states entered, in order (a retried task once per entry).
    pub path: Vec<String>,
    /// Each entry with its input.
    pub history: Vec<Entered>,
    pub end: End,
    /// Each task invocation: state, resource (or function), effective input.
    pub tasks: Vec<(String, String, Value)>,
    /// Virtual seconds from start to end.
    pub seconds: f64,
    /// Every wait: (state, seconds, why: "wait" or "retry").
    pub waits: Vec<(String, f64, &'static str)>,
}

impl Run {
    pub fn output(&self) -> &Value {
        match &self.end {
            End::Succeeded(v) => v,
            End::Failed(f) => panic!("the execution failed: {f:?}; path {:?}", self.path),
        }
    }
}

fn missing(path: &str) -> Failure {
    Failure::runtime(format!(
        "the JSONPath {path} could not be found in the input"
    ))
}

/// The value at a path of the forms the definition uses: `$`, `$.a.b`, `$$.a.b`.
pub fn at_path(input: &Value, context: &Value, path: &str) -> Result<Value, Failure> {
    let (root, rest) = if let Some(r) = path.strip_prefix("$$") {
        (context, r)
    } else if let Some(r) = path.strip_prefix('$') {
        (input, r)
    } else {
        return Err(Failure::runtime(format!("not a path: {path}")));
    };
    let mut v = root;
    for k in rest.split('.').filter(|k| !k.is_empty()) {
        v = v.get(k).ok_or_else(|| missing(path))?;
    }
    Ok(v.clone())
}

/// Whether `input` has the field at `path` (`$.a.b`), even a null one.
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

/// A `.$` value: a path, or one of the intrinsics `States.Format('...{}...', path)`
/// and `States.JsonToString(path)`.
pub fn resolve(input: &Value, context: &Value, expr: &str) -> Result<Value, Failure> {
    if let Some(args) = expr
        .strip_prefix("States.Format(")
        .and_then(|a| a.strip_suffix(')'))
    {
        let (template, arg) = args
            .split_once("',")
            .ok_or_else(|| Failure::runtime(format!("States.Format: {expr}")))?;
        let template = template.trim().trim_start_matches('\'');
        let value = at_path(input, context, arg.trim())?;
        let text = value
            .as_str()
            .map_or_else(|| value.to_string(), str::to_string);
        return Ok(Value::String(template.replacen("{}", &text, 1)));
    }
    if let Some(arg) = expr
        .strip_prefix("States.JsonToString(")
        .and_then(|a| a.strip_suffix(')'))
    {
        return Ok(Value::String(
            at_path(input, context, arg.trim())?.to_string(),
        ));
    }
    at_path(input, context, expr)
}

/// `Parameters` or `ResultSelector`: fields ending in `.$` are resolved.
pub fn fill(template: &Value, input: &Value, context: &Value) -> Result<Value, Failure> {
    Ok(match template {
        Value::Object(m) => {
            let mut out = serde_json::Map::new();
            for (k, v) in m {
                match (k.strip_suffix(".$"), v) {
                    (Some(name), Value::String(expr)) => {
                        out.insert(name.to_string(), resolve(input, context, expr)?);
                    }
                    _ => {
                        out.insert(k.clone(), fill(v, input, context)?);
                    }
                }
            }
            Value::Object(out)
        }
        other => other.clone(),
    })
}

/// The state's output from its input and its result, by `ResultPath` (`field` names
/// the field: `ResultPath` of a state, or of a catcher).
pub fn place(input: Value, result_path: Option<&Value>, result: Value) -> Result<Value, Failure> {
    match result_path {
        Some(Value::Null) => Ok(input),
        None => Ok(result),
        Some(Value::String(p)) if p == "$" => Ok(result),
        Some(Value::String(p)) => {
            let mut out = input;
            let keys: Vec<&str> = p.trim_start_matches("$.").split('.').collect();
            let mut slot = &mut out;
            for k in &keys[..keys.len() - 1] {
                slot = slot
                    .as_object_mut()
                    .ok_or_else(|| Failure::runtime(format!("ResultPath {p}: not an object")))?
                    .entry(k.to_string())
                    .or_insert(json!({}));
            }
            slot.as_object_mut()
                .ok_or_else(|| Failure::runtime(format!("ResultPath {p}: not an object")))?
                .insert(keys[keys.len() - 1].to_string(), result);
            Ok(out)
        }
        Some(other) => Err(Failure::runtime(format!("ResultPath {other}"))),
    }
}

/// Whether an `ErrorEquals` list matches `error`, as the specification says.
pub fn matches(error_equals: &Value, error: &str) -> bool {
    let terminal = matches!(error, "States.Runtime" | "States.DataLimitExceeded");
    error_equals
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .any(|name| match name {
            "States.ALL" => !terminal,
            "States.TaskFailed" => !terminal && error != "States.Timeout",
            other => other == error,
        })
}

/// The seconds a retrier waits before its attempt `attempt` (0 for the first retry).
pub fn backoff(retrier: &Value, attempt: u32, draw: f64) -> f64 {
    let interval = retrier["IntervalSeconds"].as_f64().unwrap_or(1.0);
    let rate = retrier["BackoffRate"].as_f64().unwrap_or(2.0);
    let mut delay = interval * rate.powi(attempt as i32);
    if let Some(cap) = retrier["MaxDelaySeconds"].as_f64() {
        delay = delay.min(cap);
    }
    if retrier["JitterStrategy"] == "FULL" {
        delay *= draw;
    }
    delay
}

fn choose(rule: &Value, data: &Value, context: &Value) -> Result<bool, Failure> {
    if let Some(all) = rule.get("And").and_then(Value::as_array) {
        for r in all {
            if !choose(r, data, context)? {
                return Ok(false);
            }
        }
        return Ok(true);
    }
    if let Some(any) = rule.get("Or").and_then(Value::as_array) {
        for r in any {
            if choose(r, data, context)? {
                return Ok(true);
            }
        }
        return Ok(false);
    }
    if let Some(not) = rule.get("Not") {
        return Ok(!choose(not, data, context)?);
    }
    let variable = rule["Variable"]
        .as_str()
        .ok_or_else(|| Failure::runtime(format!("a rule without a Variable: {rule}")))?;
    if let Some(p) = rule.get("IsPresent") {
        return Ok(p.as_bool() == Some(present(data, variable)));
    }
    let v = at_path(data, context, variable)?;
    if let Some(b) = rule.get("BooleanEquals") {
        return Ok(&v == b);
    }
    if let Some(s) = rule.get("StringEquals") {
        return Ok(&v == s);
    }
    Err(Failure::runtime(format!(
        "a choice rule not followed here: {rule}"
    )))
}

/// Runs `definition` on `input`. `task(state, resource_or_function, effective_input)`
/// answers each task; `wait(seconds)` lets time pass (Wait states and retry
/// intervals); `draw()` gives a number in [0, 1) for full jitter.
pub async fn execute(
    definition: &Value,
    name: &str,
    input: Value,
    mut task: impl AsyncFnMut(&str, &str, &Value) -> Answer,
    mut wait: impl AsyncFnMut(f64),
    mut draw: impl FnMut() -> f64,
) -> Run {
    let states = &definition["States"];
    let context = json!({"Execution": {"Name": name}});
    let limit = definition["TimeoutSeconds"].as_f64();
    let mut run = Run {
        path: Vec::new(),
        history: Vec::new(),
        end: End::Failed(Failure::new("States.Runtime", "not started")),
        tasks: Vec::new(),
        seconds: 0.0,
        waits: Vec::new(),
    };
    let mut current = definition["StartAt"].as_str().unwrap().to_string();
    let mut data = input;
    let fail = |run: &mut Run, f: Failure| {
        run.end = End::Failed(f);
    };
    // Past the execution's TimeoutSeconds: it fails with States.Timeout, which
    // nothing catches.
    macro_rules! end_if_over_time {
        () => {
            if limit.is_some_and(|l| run.seconds > l) {
                fail(
                    &mut run,
                    Failure::new(
                        "States.Timeout",
                        "the execution ran past its TimeoutSeconds",
                    ),
                );
                return run;
            }
        };
    }
    for _ in 0..20_000 {
        end_if_over_time!();
        run.path.push(current.clone());
        run.history.push(Entered {
            state: current.clone(),
            input: data.clone(),
        });
        let state = &states[&current];
        let next = state
            .get("Next")
            .and_then(Value::as_str)
            .map(str::to_string);
        match state["Type"].as_str().unwrap() {
            "Task" => {
                let mut attempts: BTreeMap<usize, u32> = BTreeMap::new();
                let outcome = loop {
                    end_if_over_time!();
                    let resource = state["Resource"].as_str().unwrap_or_default();
                    let params = match state.get("Parameters") {
                        Some(p) => fill(p, &data, &context),
                        None => Ok(data.clone()),
                    };
                    let params = match params {
                        Ok(p) => p,
                        Err(f) => break Err(f),
                    };
                    let target = params["FunctionName"]
                        .as_str()
                        .unwrap_or(resource)
                        .to_string();
                    run.tasks
                        .push((current.clone(), target.clone(), params.clone()));
                    let answer = task(&current, &target, &params).await;
                    let limit = state["TimeoutSeconds"].as_f64();
                    let result = match limit {
                        Some(l) if answer.seconds > l => {
                            run.seconds += l;
                            Err(Failure::new(
                                "States.Timeout",
                                "the task ran past its TimeoutSeconds",
                            ))
                        }
                        _ => {
                            run.seconds += answer.seconds;
                            answer.result
                        }
                    };
                    let result = result.and_then(|r| match state.get("ResultSelector") {
                        Some(sel) => fill(sel, &r, &context),
                        None => Ok(r),
                    });
                    let failure = match result {
                        Ok(r) => break Ok(r),
                        Err(f) => f,
                    };
                    end_if_over_time!();
                    // The first retrier that matches decides.
                    let retriers = state["Retry"].as_array().cloned().unwrap_or_default();
                    let Some((i, retrier)) = retriers
                        .iter()
                        .enumerate()
                        .find(|(_, r)| matches(&r["ErrorEquals"], &failure.error))
                    else {
                        break Err(failure);
                    };
                    let made = attempts.entry(i).or_default();
                    let max = retrier["MaxAttempts"].as_u64().unwrap_or(3) as u32;
                    if *made >= max {
                        break Err(failure);
                    }
                    let delay = backoff(retrier, *made, draw());
                    *made += 1;
                    run.waits.push((current.clone(), delay, "retry"));
                    run.seconds += delay;
                    wait(delay).await;
                };
                match outcome {
                    Ok(result) => match place(data.clone(), state.get("ResultPath"), result) {
                        Ok(d) => data = d,
                        Err(f) => {
                            fail(&mut run, f);
                            return run;
                        }
                    },
                    Err(failure) => {
                        let catchers = state["Catch"].as_array().cloned().unwrap_or_default();
                        let caught = catchers
                            .iter()
                            .find(|c| matches(&c["ErrorEquals"], &failure.error));
                        let Some(c) = caught else {
                            fail(&mut run, failure);
                            return run;
                        };
                        match place(data.clone(), c.get("ResultPath"), failure.output()) {
                            Ok(d) => data = d,
                            Err(f) => {
                                fail(&mut run, f);
                                return run;
                            }
                        }
                        current = c["Next"].as_str().unwrap().to_string();
                        continue;
                    }
                }
            }
            "Pass" => {
                let result = match (state.get("Result"), state.get("Parameters")) {
                    (Some(r), _) => Ok(r.clone()),
                    (None, Some(p)) => fill(p, &data, &context),
                    (None, None) => Ok(data.clone()),
                };
                match result.and_then(|r| place(data.clone(), state.get("ResultPath"), r)) {
                    Ok(d) => data = d,
                    Err(f) => {
                        fail(&mut run, f);
                        return run;
                    }
                }
            }
            "Choice" => {
                let mut chosen = None;
                for c in state["Choices"].as_array().unwrap() {
                    match choose(c, &data, &context) {
                        Ok(true) => {
                            chosen = Some(c["Next"].as_str().unwrap().to_string());
                            break;
                        }
                        Ok(false) => {}
                        Err(f) => {
                            fail(&mut run, f);
                            return run;
                        }
                    }
                }
                match chosen.or_else(|| state["Default"].as_str().map(str::to_string)) {
                    Some(n) => current = n,
                    None => {
                        fail(
                            &mut run,
                            Failure::new("States.NoChoiceMatched", "no choice matched"),
                        );
                        return run;
                    }
                }
                continue;
            }
            "Wait" => {
                let secs = match state.get("SecondsPath") {
                    Some(p) => at_path(&data, &context, p.as_str().unwrap()).and_then(|v| {
                        v.as_f64()
                            .ok_or_else(|| Failure::runtime(format!("SecondsPath gave {v}")))
                    }),
                    None => Ok(state["Seconds"].as_f64().unwrap_or(0.0)),
                };
                match secs {
                    Ok(s) => {
                        run.waits.push((current.clone(), s, "wait"));
                        run.seconds += s;
                        wait(s).await;
                    }
                    Err(f) => {
                        fail(&mut run, f);
                        return run;
                    }
                }
            }
            "Succeed" => {
                run.end = End::Succeeded(data);
                return run;
            }
            "Fail" => {
                fail(
                    &mut run,
                    Failure::new(
                        state["Error"].as_str().unwrap_or("States.Fail"),
                        state["Cause"].as_str().unwrap_or(""),
                    ),
                );
                return run;
            }
            other => panic!("state type {other} is not followed here"),
        }
        match next {
            Some(n) => current = n,
            None => {
                run.end = End::Succeeded(data);
                return run;
            }
        }
    }
    panic!("the execution did not end: {:?}", run.path);
}
