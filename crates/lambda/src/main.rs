//! The Lambda `bootstrap`: serves the function `EC2S_FUNCTION` names (`run-step`,
//! `event-gate`, `event-failed`) with the store and tables the environment names.

use std::sync::Arc;

use ec2_scheduler_lambda::{
    Env, FailedInput, GateInput, StepInput, event_failed, event_gate, run_step, tables_from_env,
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
    let region = std::env::var("AWS_REGION")
        .map_err(|_| "AWS_REGION is not set (Lambda sets it)".to_string())?;
    let endpoint = std::env::var("AWS_ENDPOINT_URL")
        .ok()
        .filter(|e| !e.is_empty());
    let env = Arc::new(Env::open(&region, tables_from_env(), endpoint).await?);
    match function.as_str() {
        "run-step" => {
            lambda_runtime::run(service_fn(|e: LambdaEvent<StepInput>| {
                let env = env.clone();
                async move { Ok::<_, Error>(run_step(&env, e.payload).await?) }
            }))
            .await
        }
        "event-gate" => {
            lambda_runtime::run(service_fn(|e: LambdaEvent<GateInput>| {
                let env = env.clone();
                async move { Ok::<_, Error>(event_gate(&env, e.payload, chrono::Utc::now()).await?) }
            }))
            .await
        }
        "event-failed" => {
            lambda_runtime::run(service_fn(|e: LambdaEvent<FailedInput>| {
                let env = env.clone();
                async move {
                    event_failed(&env, e.payload, chrono::Utc::now()).await?;
                    Ok::<_, Error>(serde_json::json!({"recorded": true}))
                }
            }))
            .await
        }
        other => Err(format!(
            "EC2S_FUNCTION is {other:?}: this bootstrap serves run-step, event-gate and event-failed"
        )
        .into()),
    }
}
