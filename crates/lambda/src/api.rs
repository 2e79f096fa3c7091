//! The HTTP API as a Lambda function behind API Gateway (HTTP API, IAM
//! authorization): the API's router, with the caller's IAM identity taken from the
//! request context, and the runs it begins handed to the state machine.

use std::sync::Arc;

use axum::Router;
use axum::extract::Request;
use axum::middleware::{self, Next};
use axum::response::Response;
use chrono::Utc;
use ec2_scheduler_api::{Driver, IamCaller, Limits, Principals, State};
use ec2_scheduler_aws::sfn::Executions;
use lambda_http::RequestExt;
use lambda_http::request::RequestContext;

use crate::Env;

/// Hands each run the API begins to an execution of the state machine, which drives
/// it as it drives scheduled runs (without their gate).
pub struct StateMachineDriver {
    executions: Executions,
}

impl StateMachineDriver {
    pub fn new(executions: Executions) -> StateMachineDriver {
        StateMachineDriver { executions }
    }
}

/// The execution's name: the run's, so that handing a run over twice starts one.
pub fn execution_name(run_id: &str) -> String {
    let safe: String = run_id
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .take(76)
        .collect();
    format!("api-{safe}")
}

#[async_trait::async_trait]
impl Driver for StateMachineDriver {
    async fn started(&self, workload: &str, action: &str, run_id: &str) -> Result<(), String> {
        let input = serde_json::json!({
            "workload": workload,
            "action": action,
            "at": Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            "run_id": run_id,
        });
        self.executions
            .start(&execution_name(run_id), &input.to_string())
            .await
            .map_err(|e| e.to_string())
    }
}

/// The IAM identity API Gateway verified (IAM authorization), from the request
/// context, put on the request for the router; never from a header.
async fn iam_caller(mut req: Request, next: Next) -> Response {
    let arn = match req.request_context_ref() {
        Some(RequestContext::ApiGatewayV2(ctx)) => ctx
            .authorizer
            .as_ref()
            .and_then(|a| a.iam.as_ref())
            .and_then(|iam| iam.user_arn.clone()),
        _ => None,
    };
    if let Some(arn) = arn {
        req.extensions_mut().insert(IamCaller(arn));
    }
    next.run(req).await
}

/// The API's router over `env`, with `principals`' roles for IAM identities and
/// `driver` for the runs it begins.
pub fn router(env: &Env, driver: Arc<dyn Driver>, principals: Principals) -> Router {
    let mut state = State::new(env.app.clone(), env.clouds.clone(), driver);
    state.principals = Arc::new(principals);
    ec2_scheduler_api::app(state, &Limits::default()).layer(middleware::from_fn(iam_caller))
}
