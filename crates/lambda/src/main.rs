//! The Lambda `bootstrap`: serves the function `EC2S_FUNCTION` names (`api`, `run-step`,
//! `event-gate`, `event-failed`, `schedule-sync`) with the store, tables and schedule
//! group the environment names.

use std::sync::Arc;

use ec2_scheduler_api::Principals;
use ec2_scheduler_aws::sfn::Executions;
use ec2_scheduler_lambda::api::{self, StateMachineDriver};
use ec2_scheduler_lambda::{
    Env, FailedInput, GateInput, StepInput, SyncInput, event_failed, event_gate, run_step,
    schedule_sync, schedules_from_env, tables_from_env,
};
use lambda_runtime::{Error, LambdaEvent, service_fn};

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Error> {
    tracing_subscriber::fmt()
        .json()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .without_time()
        .init();
    let function = std::env::var("EC2S_FUNCTION").unwrap_or_default();
    const FUNCTIONS: [&str; 5] = [
        "api",
        "run-step",
        "event-gate",
        "event-failed",
        "schedule-sync",
    ];
    if !FUNCTIONS.contains(&function.as_str()) {
        return Err(format!(
            "EC2S_FUNCTION is {function:?}: this bootstrap serves {}",
            FUNCTIONS.join(", ")
        )
        .into());
    }
    let region = std::env::var("AWS_REGION")
        .map_err(|_| "AWS_REGION is not set (Lambda sets it)".to_string())?;
    let endpoint = std::env::var("AWS_ENDPOINT_URL")
        .ok()
        .filter(|e| !e.is_empty());
    let mut env = Env::open(&region, tables_from_env(), endpoint.clone()).await?;
    if let Some(s) = schedules_from_env(&region, endpoint.clone()).await {
        env = env.with_schedules(s);
    }
    let env = Arc::new(env);
    match function.as_str() {
        "run-step" => {
            lambda_runtime::run(service_fn(|e: LambdaEvent<StepInput>| {
                let env = env.clone();
                async move { Ok::<_, Error>(run_step(&env, e.payload).await?) }
            }))
            .await
        }
        "event-gate" => lambda_runtime::run(service_fn(|e: LambdaEvent<GateInput>| {
            let env = env.clone();
            async move { Ok::<_, Error>(event_gate(&env, e.payload, chrono::Utc::now()).await?) }
        }))
        .await,
        "event-failed" => lambda_runtime::run(service_fn(|e: LambdaEvent<FailedInput>| {
            let env = env.clone();
            async move { Ok::<_, Error>(event_failed(&env, e.payload, chrono::Utc::now()).await?) }
        }))
        .await,
        "api" => {
            let machine = std::env::var("STATE_MACHINE_ARN")
                .map_err(|_| "the api function needs STATE_MACHINE_ARN".to_string())?;
            let principals = match std::env::var("PRINCIPALS") {
                Ok(text) if !text.trim().is_empty() => {
                    Principals::from_json(&text).map_err(|e| format!("PRINCIPALS: {e}"))?
                }
                _ => Principals::default(),
            };
            let executions = Executions::connect(&region, endpoint.clone(), &machine).await;
            let driver = Arc::new(StateMachineDriver::new(executions));
            lambda_http::run(api::router(env.clone(), driver, principals)).await
        }
        "schedule-sync" => {
            lambda_runtime::run(service_fn(|e: LambdaEvent<serde_json::Value>| {
                let env = env.clone();
                async move {
                    // A scheduled invocation without a payload syncs every workload.
                    let input: SyncInput = match e.payload {
                        serde_json::Value::Null => SyncInput::default(),
                        v => serde_json::from_value(v)?,
                    };
                    Ok::<_, Error>(schedule_sync(&env, input, chrono::Utc::now()).await?)
                }
            }))
            .await
        }
        other => unreachable!("EC2S_FUNCTION {other:?} was checked above"),
    }
}
