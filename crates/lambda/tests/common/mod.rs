//! The committed definition, run by the interpreter in `asl` with the Lambda handlers
//! invoked in process for its tasks, and faults injected where a test asks.

// Each test binary uses part of it.
#![allow(dead_code)]

pub mod asl;

use std::collections::BTreeMap;
use std::sync::Mutex;

use ec2_scheduler_engine::ports::{ApiResult, EventSchedules, OneTime};
use ec2_scheduler_lambda::{
    Env, FailedInput, GateInput, StepInput, SyncInput, event_failed, event_gate, run_step,
    schedule_sync,
};
use serde_json::{Value, json};

pub use asl::{Answer, End, Failure};

/// One-time schedules kept in memory, for environments without EventBridge Scheduler.
#[derive(Default)]
pub struct Kept(Mutex<std::collections::BTreeSet<String>>);

#[async_trait::async_trait]
impl EventSchedules for Kept {
    async fn names(&self, prefix: &str) -> ApiResult<Vec<String>> {
        let kept = self.0.lock().unwrap();
        Ok(kept
            .iter()
            .filter(|n| n.starts_with(prefix))
            .cloned()
            .collect())
    }
    async fn create(&self, s: &OneTime) -> ApiResult<()> {
        self.0.lock().unwrap().insert(s.name.clone());
        Ok(())
    }
    async fn delete(&self, name: &str) -> ApiResult<()> {
        self.0.lock().unwrap().remove(name);
        Ok(())
    }
}

pub const DEFINITION: &str = include_str!("../../../../deploy/serverless/statemachine.asl.json");

/// The definition as the template deploys it in the `aws` partition.
pub fn definition() -> Value {
    serde_json::from_str(&DEFINITION.replace("${Partition}", "aws")).unwrap()
}

/// How a Wait state (and a retry's interval) waits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Waits {
    /// Real time, as long as it says (at most a minute).
    Real,
    /// Real time, at most 1 s (moto's instances change state at once).
    Short,
    /// The workload's cloud's time (virtual on the simulator).
    Cloud,
}

/// A fault injected into one invocation of a function (`${RunStepFunctionArn}`, ...).
#[derive(Debug, Clone, PartialEq)]
pub struct Fault {
    /// The error Step Functions reports (`Sandbox.Timedout`,
    /// `Lambda.TooManyRequestsException`, a handler's error type, ...).
    pub error: String,
    /// Whether the handler ran before the fault (its answer lost, as when a function
    /// runs past its timeout after doing its work), or not at all.
    pub ran: bool,
    /// How long the invocation took, in seconds.
    pub seconds: f64,
}

impl Fault {
    /// The function ran past its Lambda timeout (120 s) after doing its work.
    pub fn timed_out() -> Self {
        Fault {
            error: "Sandbox.Timedout".into(),
            ran: true,
            seconds: 120.0,
        }
    }

    /// Lambda refused the invocation (throttled), the handler did not run.
    pub fn throttled() -> Self {
        Fault {
            error: "Lambda.TooManyRequestsException".into(),
            ran: false,
            seconds: 0.1,
        }
    }

    /// The handler failed with an error of its own, before doing anything.
    pub fn handler_error() -> Self {
        Fault {
            error: "lambda_runtime.Error".into(),
            ran: false,
            seconds: 0.5,
        }
    }
}

/// Which invocations fail: `(function, n)` (the n-th invocation of that function in
/// the execution, from 1) to its fault.
pub type Faults = dyn Fn(&str, usize) -> Option<Fault> + Sync;

/// What one run of the definition did.
pub struct Execution {
    /// The states entered, in order.
    pub path: Vec<String>,
    /// The output, or the error output when it failed.
    pub output: Value,
    pub end: End,
    /// How many times each function was invoked.
    pub invocations: BTreeMap<String, usize>,
    /// How long each invocation took, by function, in milliseconds.
    pub millis: BTreeMap<String, Vec<u128>>,
    /// What the state machine published to the stack's topic: (subject, message).
    pub published: Vec<(String, Value)>,
    /// The interpreter's record (history, waits, virtual seconds).
    pub run: asl::Run,
}

fn lambda_error(e: impl std::fmt::Display) -> Failure {
    // A handler's error reaches Step Functions with the error type of the runtime.
    Failure::new("lambda_runtime.Error", &e.to_string())
}

async fn handler(env: &Env, function: &str, payload: Value) -> Result<Value, Failure> {
    let parse = |e: serde_json::Error| lambda_error(format!("the payload: {e}"));
    let answer = match function {
        "${EventGateFunctionArn}" => {
            let i: GateInput = serde_json::from_value(payload).map_err(parse)?;
            serde_json::to_value(
                event_gate(env, i, env.clouds.now())
                    .await
                    .map_err(lambda_error)?,
            )
        }
        "${RunStepFunctionArn}" => {
            let i: StepInput = serde_json::from_value(payload).map_err(parse)?;
            serde_json::to_value(run_step(env, i).await.map_err(lambda_error)?)
        }
        "${ScheduleSyncFunctionArn}" => {
            let i: SyncInput = serde_json::from_value(payload).map_err(parse)?;
            serde_json::to_value(
                schedule_sync(env, i, env.clouds.now())
                    .await
                    .map_err(lambda_error)?,
            )
        }
        "${EventFailedFunctionArn}" => {
            let i: FailedInput = serde_json::from_value(payload).map_err(parse)?;
            serde_json::to_value(
                event_failed(env, i, env.clouds.now())
                    .await
                    .map_err(lambda_error)?,
            )
        }
        other => panic!("no handler for {other}"),
    };
    Ok(json!({"Payload": answer.unwrap(), "StatusCode": 200}))
}

/// The function (`EC2S_FUNCTION`) a task's `FunctionName` placeholder names.
fn function_of(target: &str) -> &'static str {
    match target {
        "${EventGateFunctionArn}" => "event-gate",
        "${RunStepFunctionArn}" => "run-step",
        "${ScheduleSyncFunctionArn}" => "schedule-sync",
        "${EventFailedFunctionArn}" => "event-failed",
        other => panic!("no function for {other}"),
    }
}

/// Every request `function` sent between `before` and `after` is one its role grants
/// (`calls::FUNCTIONS`, which the template test holds the roles to).
pub fn within_grants(
    function: &str,
    before: &BTreeMap<String, u64>,
    after: &BTreeMap<String, u64>,
) {
    let allowed = ec2_scheduler_aws::calls::of_function(function)
        .unwrap_or_else(|| panic!("{function} is not in calls::FUNCTIONS"));
    for (action, n) in after {
        if *n > before.get(action).copied().unwrap_or(0) {
            assert!(
                allowed.contains(&action.as_str()),
                "{function} called {action}, which its role does not grant"
            );
        }
    }
}

async fn wait_as(env: &Env, waits: Waits, workload: &str, seconds: f64) {
    let d = std::time::Duration::from_secs_f64(seconds.max(0.0));
    match waits {
        Waits::Real => tokio::time::sleep(d.min(std::time::Duration::from_secs(60))).await,
        Waits::Short => tokio::time::sleep(d.min(std::time::Duration::from_secs(1))).await,
        Waits::Cloud => {
            let w = env.app.stored_workload(workload).await.unwrap();
            let cloud = env.clouds.get(&env.app, &w).await.unwrap();
            cloud.wait(d).await;
        }
    }
}

/// Runs the committed definition on `input`, invoking the handlers in process for its
/// Lambda tasks (by the function each `FunctionName` placeholder names) and recording
/// what it publishes, with `faults` injected. Waits as `waits` says.
pub async fn execute_with(
    env: &Env,
    name: &str,
    input: Value,
    waits: Waits,
    faults: &Faults,
) -> Execution {
    let workload = input["workload"].as_str().unwrap_or_default().to_string();
    let invocations: Mutex<BTreeMap<String, usize>> = Mutex::default();
    let millis: Mutex<BTreeMap<String, Vec<u128>>> = Mutex::default();
    let published: Mutex<Vec<(String, Value)>> = Mutex::default();
    let mut seed: u64 = 0x2545_f491_4f6c_dd1d;
    let run = asl::execute(
        &definition(),
        name,
        input,
        async |_state: &str, target: &str, params: &Value| {
            if target.ends_with(":states:::sns:publish") {
                let message = params["Message"]
                    .as_str()
                    .and_then(|m| serde_json::from_str(m).ok())
                    .unwrap_or(Value::Null);
                published.lock().unwrap().push((
                    params["Subject"].as_str().unwrap_or_default().to_string(),
                    message,
                ));
                return Answer::ok(json!({"MessageId": "m-1"}));
            }
            let n = {
                let mut inv = invocations.lock().unwrap();
                let n = inv.entry(target.to_string()).or_default();
                *n += 1;
                *n
            };
            let fault = faults(target, n);
            let began = std::time::Instant::now();
            let before = env.app.requests();
            let result = match &fault {
                Some(f) if !f.ran => Err(Failure::new(&f.error, "injected")),
                _ => handler(env, target, params["Payload"].clone()).await,
            };
            within_grants(function_of(target), &before, &env.app.requests());
            millis
                .lock()
                .unwrap()
                .entry(target.to_string())
                .or_default()
                .push(began.elapsed().as_millis());
            match fault {
                Some(f) => Answer {
                    result: Err(Failure::new(&f.error, "injected")),
                    seconds: f.seconds,
                },
                None => Answer {
                    result,
                    seconds: 1.0,
                },
            }
        },
        async |seconds: f64| wait_as(env, waits, &workload, seconds).await,
        || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            (seed % 1_000_000) as f64 / 1_000_000.0
        },
    )
    .await;
    let output = match &run.end {
        End::Succeeded(v) => v.clone(),
        End::Failed(f) => f.output(),
    };
    Execution {
        path: run.path.clone(),
        output,
        end: run.end.clone(),
        invocations: invocations.into_inner().unwrap(),
        millis: millis.into_inner().unwrap(),
        published: published.into_inner().unwrap(),
        run,
    }
}

/// [`execute_with`] without faults, which must succeed.
pub async fn execute(env: &Env, name: &str, input: Value, waits: Waits) -> Execution {
    let e = execute_with(env, name, input, waits, &|_, _| None).await;
    if let End::Failed(f) = &e.end {
        panic!("the execution failed: {f:?}\n{:?}", e.path);
    }
    e
}
