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

/// The workload whose schedules a successful change through the API may have moved
/// (a workload written or deleted, an override added); `Some(None)`: one whose
/// workload the path does not name (an override removed).
fn changed(method: &axum::http::Method, path: &str) -> Option<Option<String>> {
    if method == axum::http::Method::GET || method == axum::http::Method::HEAD {
        return None;
    }
    let parts: Vec<&str> = path.trim_matches('/').split('/').collect();
    match parts.as_slice() {
        ["v1", "workloads", w] | ["v1", "workloads", w, "overrides"] => {
            let w = percent_decode(w);
            Some(Some(w))
        }
        ["v1", "overrides", _] => Some(None),
        _ => None,
    }
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match (bytes[i], bytes.get(i + 1..i + 3)) {
            (b'%', Some(hex)) => match std::str::from_utf8(hex)
                .ok()
                .and_then(|h| u8::from_str_radix(h, 16).ok())
            {
                Some(b) => {
                    out.push(b);
                    i += 3;
                }
                None => {
                    out.push(b'%');
                    i += 1;
                }
            },
            (b, _) => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// After a change through the API that may move a workload's events, its one-time
/// schedules are synced at once (when the function has the schedule group); a sync
/// that fails is logged, and the hourly sync catches up.
async fn sync_after(env: Arc<Env>, req: Request, next: Next) -> Response {
    let what = changed(req.method(), req.uri().path());
    let res = next.run(req).await;
    if let (Some(only), Some(_), true) = (what, &env.schedules, res.status().is_success()) {
        let input = crate::SyncInput { workload: only };
        if let Err(e) = crate::schedule_sync(&env, input, Utc::now()).await {
            tracing::warn!(error = %e, "cannot sync the schedules after a change");
        }
    }
    res
}

/// The API's router over `env`, with `principals`' roles for IAM identities and
/// `driver` for the runs it begins; changes that move events sync the schedules.
pub fn router(env: Arc<Env>, driver: Arc<dyn Driver>, principals: Principals) -> Router {
    let mut state = State::new(env.app.clone(), env.clouds.clone(), driver);
    state.principals = Arc::new(principals);
    ec2_scheduler_api::app(state, &Limits::default())
        .layer(middleware::from_fn(move |req, next| {
            sync_after(env.clone(), req, next)
        }))
        .layer(middleware::from_fn(iam_caller))
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::Method;

    #[test]
    fn changes_that_move_events_name_their_workload() {
        assert_eq!(
            changed(&Method::PUT, "/v1/workloads/My%20App"),
            Some(Some("My App".into()))
        );
        assert_eq!(
            changed(&Method::POST, "/v1/workloads/w/overrides"),
            Some(Some("w".into()))
        );
        assert_eq!(changed(&Method::DELETE, "/v1/overrides/o-1"), Some(None));
        assert_eq!(changed(&Method::GET, "/v1/workloads/w"), None);
        assert_eq!(changed(&Method::POST, "/v1/workloads/w/runs"), None);
        assert_eq!(changed(&Method::POST, "/v1/exemptions"), None);
    }
}
