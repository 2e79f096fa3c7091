//! The original serverless variant's routes, kept for its users: the same paths and
//! query parameters, answered through the application layer with the same
//! authentication as `/v1`.

use axum::extract::{Path, Query, State as S};
use axum::http::StatusCode;
use ec2_scheduler_config::Format;
use ec2_scheduler_core::access::Role;
use serde::Deserialize;
use serde_json::Value;
use utoipa::IntoParams;

use crate::handlers::{Reply, begin};
use crate::problem::{Problem, ProblemKind};
use crate::{Auth, State};

fn items(workloads: &[ec2_scheduler_core::Workload]) -> Value {
    serde_json::from_str(&ec2_scheduler_config::export(workloads, Format::SeedJson))
        .unwrap_or(Value::Null)
}

fn reply(v: Value) -> Reply {
    Ok(axum::response::IntoResponse::into_response((
        StatusCode::OK,
        axum::Json(v),
    )))
}

#[utoipa::path(get, path = "/workloads", tag = "serverless variant",
    responses((status = 200, description = "Every workload as the original's items (WorkloadSpecification and TierSpecification)", body = Object)))]
pub async fn list(S(state): S<State>, _auth: Auth) -> Reply {
    reply(items(&state.app.stored_workloads().await?))
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(rename_all = "camelCase")]
pub struct ActQuery {
    /// Start or Stop (any case); without it, the workload's items.
    action: Option<String>,
    /// Scaling profile for a start.
    profile_name: Option<String>,
    /// Present (any value): plan only.
    dry_run: Option<String>,
}

async fn act(state: State, auth: Auth, name: String, q: ActQuery) -> Reply {
    let w = state.app.stored_workload(&name).await?;
    let Some(action) = q.action else {
        return reply(items(std::slice::from_ref(&w)));
    };
    let by = auth.need(Role::Operator)?.name.clone();
    let action: ec2_scheduler_core::Action = action
        .parse()
        .map_err(|e: String| Problem::new(ProblemKind::Invalid, e))?;
    let req = ec2_scheduler_engine::RunRequest {
        action,
        profile: q.profile_name.filter(|p| !p.is_empty()),
        scale_in: Default::default(),
    };
    begin(&state, &w, &req, q.dry_run.is_some(), None, &by).await
}

#[utoipa::path(get, path = "/workloads/{workload}", tag = "serverless variant",
    params(("workload" = String, Path, description = "Workload name (SpecName)"), ActQuery),
    responses((status = 200, description = "The workload's items; with `action`, a dry run's plan or nothing to do", body = Object),
        (status = 202, description = "With `action`: the run begun", body = Object)))]
pub async fn act_get(
    S(state): S<State>,
    auth: Auth,
    Path(name): Path<String>,
    Query(q): Query<ActQuery>,
) -> Reply {
    act(state, auth, name, q).await
}

#[utoipa::path(post, path = "/workloads/{workload}", tag = "serverless variant",
    params(("workload" = String, Path, description = "Workload name (SpecName)"), ActQuery),
    responses((status = 200, description = "The workload's items; with `action`, a dry run's plan or nothing to do", body = Object),
        (status = 202, description = "With `action`: the run begun", body = Object)))]
pub async fn act_post(
    S(state): S<State>,
    auth: Auth,
    Path(name): Path<String>,
    Query(q): Query<ActQuery>,
) -> Reply {
    act(state, auth, name, q).await
}
