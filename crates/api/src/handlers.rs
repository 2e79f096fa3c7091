//! The `/v1` routes. Each checks the caller's role, then calls the application
//! layer; errors become problem documents.

use axum::Json;
use axum::extract::{Path, Query, State as S};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, NaiveDate, Utc};
use ec2_scheduler_app::schedules::{self, OverrideRequest};
use ec2_scheduler_app::{Begin, Quiet, runs};
use ec2_scheduler_config::Format;
use ec2_scheduler_core::access::Role;
use ec2_scheduler_core::plan::ScaleIn;
use ec2_scheduler_core::schedule::EventKind;
use ec2_scheduler_core::{Action, Workload};
use ec2_scheduler_engine::RunRequest;
use serde::Deserialize;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use utoipa::{IntoParams, ToSchema};

use crate::problem::{Problem, ProblemDocument, ProblemKind};
use crate::{Auth, State};

pub type Reply = Result<Response, Problem>;

fn invalid(detail: impl Into<String>) -> Problem {
    Problem::new(ProblemKind::Invalid, detail)
}

fn json_reply(status: StatusCode, v: impl serde::Serialize) -> Reply {
    let body = serde_json::to_value(v).map_err(|e| {
        Problem::new(
            ProblemKind::Internal,
            format!("cannot encode the answer: {e}"),
        )
    })?;
    Ok((status, Json(body)).into_response())
}

/// A JSON answer already encoded (a kept read).
fn json_bytes(body: axum::body::Bytes) -> Response {
    (
        StatusCode::OK,
        [(header::CONTENT_TYPE, "application/json")],
        body,
    )
        .into_response()
}

/// The ETag of a stored workload: a hash of its canonical document.
pub(crate) fn etag(w: &Workload) -> String {
    let text = ec2_scheduler_config::export(std::slice::from_ref(w), Format::Yaml);
    let digest = Sha256::digest(text.as_bytes());
    let hex: String = digest[..12].iter().map(|b| format!("{b:02x}")).collect();
    format!("\"{hex}\"")
}

async fn workload(state: &State, name: &str) -> Result<Workload, Problem> {
    Ok(state.app.stored_workload(name).await?)
}

#[utoipa::path(get, path = "/healthz", security(()), tag = "service",
    responses((status = 200, description = "The process answers", body = String)))]
pub async fn healthz() -> &'static str {
    "ok\n"
}

#[utoipa::path(get, path = "/readyz", security(()), tag = "service",
    responses(
        (status = 200, description = "The store answers", body = Object),
        (status = 503, description = "The store does not answer", body = ProblemDocument, content_type = "application/problem+json")))]
pub async fn readyz(S(state): S<State>) -> Reply {
    match state.app.stored_workloads().await {
        Ok(w) => json_reply(StatusCode::OK, json!({"store": "ok", "workloads": w.len()})),
        Err(e) => {
            let mut p = Problem::new(ProblemKind::Upstream, format!("the store: {e}"));
            p.status = 503;
            Err(p)
        }
    }
}

pub async fn openapi() -> Response {
    (
        [(header::CONTENT_TYPE, "application/json")],
        crate::openapi_json(),
    )
        .into_response()
}

pub async fn not_found() -> Problem {
    Problem::new(ProblemKind::NotFound, "no such route")
}

/// A tier's members by state, and how many are exempt from stops.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub(crate) struct Counts {
    pub running: usize,
    pub stopped: usize,
    pub other: usize,
    pub exempt: usize,
}

impl Counts {
    pub(crate) fn of(tier: &ec2_scheduler_app::status::TierStatus) -> Counts {
        use ec2_scheduler_core::InstanceState as St;
        let mut c = Counts::default();
        for m in &tier.members {
            match m.instance.state {
                St::Running => c.running += 1,
                St::Stopped => c.stopped += 1,
                _ => c.other += 1,
            }
            if m.kept_by.is_some() {
                c.exempt += 1;
            }
        }
        c
    }
}

/// Counts of a tier's members by state.
fn tier_counts(status: &ec2_scheduler_app::status::Status) -> Vec<Value> {
    status
        .tiers
        .iter()
        .map(|t| {
            let mut v = serde_json::to_value(Counts::of(t)).unwrap_or_default();
            let mut named = json!({"name": t.name});
            if let (Some(named), Some(counts)) = (named.as_object_mut(), v.as_object_mut()) {
                named.append(counts);
            }
            named
        })
        .collect()
}

#[utoipa::path(get, path = "/v1/workloads", tag = "workloads",
    responses((status = 200, description = "Every stored workload with its tiers' instance counts, as observed at most a second ago (`observed_at`)", body = Vec<Object>),
        (status = 401, description = "No valid token", body = ProblemDocument, content_type = "application/problem+json")))]
pub async fn list_workloads(S(state): S<State>, _auth: Auth) -> Reply {
    let body = state
        .reads
        .get("list", || async {
            let workloads = state.app.stored_workloads().await?;
            let statuses = state.app.statuses(&state.clouds, &workloads).await?;
            let mut out = Vec::with_capacity(workloads.len());
            for (w, status) in workloads.iter().zip(statuses) {
                let mut item = json!({
                    "name": w.name.as_str(),
                    "region": w.region.as_str(),
                    "schedules": w.schedules.len(),
                    "enforce": w.enforce,
                });
                match status {
                    Ok(s) => {
                        item["observed_at"] = json!(s.observed_at);
                        item["tiers"] = Value::Array(tier_counts(&s));
                        item["last_run"] = serde_json::to_value(&s.last_run).unwrap_or(Value::Null);
                    }
                    Err(e) => item["error"] = Value::String(e.to_string()),
                }
                out.push(item);
            }
            Ok(Value::Array(out))
        })
        .await?;
    Ok(json_bytes(body))
}

#[utoipa::path(get, path = "/v1/workloads/{workload}", tag = "workloads",
    params(("workload" = String, Path, description = "Workload name")),
    responses((status = 200, description = "The workload's document (ec2-scheduler YAML) and the original's items; ETag header", body = Object),
        (status = 404, description = "No such workload", body = ProblemDocument, content_type = "application/problem+json")))]
pub async fn get_workload(S(state): S<State>, _auth: Auth, Path(name): Path<String>) -> Reply {
    let w = workload(&state, &name).await?;
    let yaml = ec2_scheduler_config::export(std::slice::from_ref(&w), Format::Yaml);
    let items: Value = serde_json::from_str(&ec2_scheduler_config::export(
        std::slice::from_ref(&w),
        Format::SeedJson,
    ))
    .unwrap_or(Value::Null);
    let mut r = json_reply(
        StatusCode::OK,
        json!({"name": w.name.as_str(), "yaml": yaml, "items": items}),
    )?;
    set_etag(&mut r, &w);
    Ok(r)
}

fn set_etag(r: &mut Response, w: &Workload) {
    if let Ok(v) = HeaderValue::from_str(&etag(w)) {
        r.headers_mut().insert(header::ETAG, v);
    }
}

/// Checks `If-Match` / `If-None-Match` against the current version.
fn preconditions(headers: &HeaderMap, current: Option<&Workload>) -> Result<(), Problem> {
    let failed = |d: String| Problem::new(ProblemKind::PreconditionFailed, d);
    if let Some(m) = headers.get(header::IF_MATCH).and_then(|v| v.to_str().ok()) {
        let Some(c) = current else {
            return Err(failed("If-Match: the workload does not exist".into()));
        };
        let tag = etag(c);
        if m.trim() != "*" && !m.split(',').any(|t| t.trim() == tag) {
            return Err(failed(format!(
                "If-Match: the workload changed; its ETag is now {tag}"
            )));
        }
    }
    if let Some(m) = headers
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        && let Some(c) = current
        && (m.trim() == "*" || m.split(',').any(|t| t.trim() == etag(c)))
    {
        return Err(failed("If-None-Match: the workload exists".into()));
    }
    Ok(())
}

#[utoipa::path(put, path = "/v1/workloads/{workload}", tag = "workloads",
    params(("workload" = String, Path, description = "Workload name; the document must define exactly this workload"),
        ("If-Match" = Option<String>, Header, description = "Replace only if the ETag still matches")),
    request_body(content = String, description = "A workload document in any format the files accept: ec2-scheduler YAML or JSON, the original's Loader YAML, or its DynamoDB items", content_type = "application/yaml"),
    responses((status = 200, description = "Replaced", body = Object), (status = 201, description = "Created", body = Object),
        (status = 400, description = "The document has errors (each in `errors`, with its field path)", body = ProblemDocument, content_type = "application/problem+json"),
        (status = 403, description = "Needs the admin role", body = ProblemDocument, content_type = "application/problem+json"),
        (status = 412, description = "The ETag does not match", body = ProblemDocument, content_type = "application/problem+json")))]
pub async fn put_workload(
    S(state): S<State>,
    auth: Auth,
    Path(name): Path<String>,
    headers: HeaderMap,
    body: String,
) -> Reply {
    auth.need(Role::Admin)?;
    let current = match state.app.stored_workload(&name).await {
        Ok(w) => Some(w),
        Err(ec2_scheduler_app::Error::NotFound(_)) => None,
        Err(e) => return Err(e.into()),
    };
    preconditions(&headers, current.as_ref())?;
    let (w, stored, loaded) = state
        .app
        .put_workload_text(&name, "the request body", &body)
        .await?;
    state.clouds.forget(&name).await;
    let status = if current.is_some() {
        StatusCode::OK
    } else {
        StatusCode::CREATED
    };
    let mut r = json_reply(
        status,
        json!({
            "name": stored.name,
            "removed_tiers": stored.removed_tiers,
            "warnings": loaded.warnings.iter().map(|w| w.to_string()).collect::<Vec<_>>(),
        }),
    )?;
    set_etag(&mut r, &w);
    if status == StatusCode::CREATED
        && let Ok(v) = HeaderValue::from_str(&format!("/v1/workloads/{name}"))
    {
        r.headers_mut().insert(header::LOCATION, v);
    }
    Ok(r)
}

#[utoipa::path(delete, path = "/v1/workloads/{workload}", tag = "workloads",
    params(("workload" = String, Path, description = "Workload name"),
        ("If-Match" = Option<String>, Header, description = "Delete only if the ETag still matches")),
    responses((status = 204, description = "Deleted"),
        (status = 404, description = "No such workload", body = ProblemDocument, content_type = "application/problem+json"),
        (status = 409, description = "A run of it is unfinished", body = ProblemDocument, content_type = "application/problem+json")))]
pub async fn delete_workload(
    S(state): S<State>,
    auth: Auth,
    Path(name): Path<String>,
    headers: HeaderMap,
) -> Reply {
    auth.need(Role::Admin)?;
    let current = workload(&state, &name).await?;
    preconditions(&headers, Some(&current))?;
    state.app.delete_workload(&name).await?;
    state.clouds.forget(&name).await;
    Ok(StatusCode::NO_CONTENT.into_response())
}

#[utoipa::path(get, path = "/v1/workloads/{workload}/status", tag = "workloads",
    params(("workload" = String, Path, description = "Workload name")),
    responses((status = 200, description = "Tiers and instances as the cloud showed them at most a second ago (`observed_at`), exemptions, the last run, the schedules' wish and next events", body = Object),
        (status = 404, description = "No such workload", body = ProblemDocument, content_type = "application/problem+json")))]
pub async fn workload_status(S(state): S<State>, _auth: Auth, Path(name): Path<String>) -> Reply {
    let key = format!("status:{name}");
    let body = state
        .reads
        .get(&key, || async {
            let w = workload(&state, &name).await?;
            let status = state.app.status_seen(&state.clouds, &w).await?;
            let now = state.clouds.now();
            let overrides = state
                .app
                .overrides(Some(w.name.as_str()), false, now)
                .await?;
            let (wish, next) = if w.schedules.is_empty() {
                (Value::Null, Value::Array(Vec::new()))
            } else {
                (
                    serde_json::to_value(schedules::state(&w.schedules, &overrides, now))
                        .unwrap_or(Value::Null),
                    serde_json::to_value(schedules::next(&w.schedules, &overrides, now, 4)?)
                        .unwrap_or(Value::Null),
                )
            };
            Ok(json!({
                "workload": w.name.as_str(),
                "at": now,
                "observed_at": status.observed_at,
                "counts": tier_counts(&status),
                "tiers": status.tiers,
                "last_run": status.last_run,
                "schedule": {"now": wish, "next": next},
                "overrides": overrides,
            }))
        })
        .await?;
    Ok(json_bytes(body))
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct PlanQuery {
    /// start or stop (any case).
    action: String,
    /// Scaling profile for a start.
    profile: Option<String>,
    /// Stop running instances above the profile's fleet subset.
    #[serde(default)]
    scale_in: bool,
}

pub(crate) fn run_request(
    action: &str,
    profile: Option<String>,
    scale_in: bool,
) -> Result<RunRequest, Problem> {
    let action: Action = action.parse().map_err(invalid)?;
    Ok(RunRequest {
        action,
        profile: profile.filter(|p| !p.is_empty()),
        scale_in: if scale_in {
            ScaleIn::Apply
        } else {
            ScaleIn::ReportOnly
        },
    })
}

#[utoipa::path(get, path = "/v1/workloads/{workload}/plan", tag = "runs",
    params(("workload" = String, Path, description = "Workload name"), PlanQuery),
    responses((status = 200, description = "What a run would do now, changing nothing", body = Object),
        (status = 400, description = "Unknown action or profile", body = ProblemDocument, content_type = "application/problem+json")))]
pub async fn plan(
    S(state): S<State>,
    _auth: Auth,
    Path(name): Path<String>,
    Query(q): Query<PlanQuery>,
) -> Reply {
    let req = run_request(&q.action, q.profile, q.scale_in)?;
    let w = workload(&state, &name).await?;
    let cloud = state.clouds.get(&state.app, &w).await?;
    json_reply(StatusCode::OK, state.app.dry_run(&cloud, &w, &req).await?)
}

/// A run to begin.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RunBody {
    /// start or stop (any case).
    pub action: String,
    /// Scaling profile for a start.
    #[serde(default)]
    pub profile: Option<String>,
    /// Only plan: answer the plan, change nothing.
    #[serde(default)]
    pub dry_run: bool,
    /// Stop running instances above the profile's fleet subset.
    #[serde(default)]
    pub scale_in: bool,
}

/// Begins `req` on `w` (or answers its plan for a dry run).
pub(crate) async fn begin(
    state: &State,
    w: &Workload,
    req: &RunRequest,
    dry_run: bool,
    key: Option<&str>,
    by: &str,
) -> Reply {
    if dry_run {
        let cloud = state.clouds.get(&state.app, w).await?;
        return json_reply(
            StatusCode::OK,
            json!({"dry_run": true, "plan": state.app.dry_run(&cloud, w, req).await?}),
        );
    }
    match begin_run(state, w, req, key, by).await? {
        Begun::Accepted {
            workload,
            run_id,
            status,
            repeated,
        } => accepted(&workload, &run_id, status, repeated),
        Begun::NothingToDo(plan) => json_reply(
            StatusCode::OK,
            json!({"run_id": null, "status": "nothing to do", "plan": plan}),
        ),
    }
}

/// What became of a request to begin a run.
pub(crate) enum Begun {
    /// The run is begun (or, `repeated`, was begun before with the same key) and
    /// handed to the driver.
    Accepted {
        workload: String,
        run_id: String,
        /// The run's status now (a repeated request may find it ended).
        status: &'static str,
        repeated: bool,
    },
    NothingToDo(Box<ec2_scheduler_core::plan::Plan>),
}

/// Begins `req` on `w` for `by`, one run per workload: `409 locked` while another
/// is unfinished, the same run again for the same idempotency `key`.
pub(crate) async fn begin_run(
    state: &State,
    w: &Workload,
    req: &RunRequest,
    key: Option<&str>,
    by: &str,
) -> Result<Begun, Problem> {
    let cloud = state.clouds.get(&state.app, w).await?;
    // The run a key began before, answered again when the request is the same.
    let repeated = async |run_id: String| -> Result<Begun, Problem> {
        let status = match state.app.run_record(&run_id).await {
            Ok(run) => {
                same_request(&run, req, key.unwrap_or_default())?;
                run.status.as_str()
            }
            // The same key's first request holds the lock and has not saved the
            // run yet: it is being begun.
            Err(ec2_scheduler_app::Error::NotFound(_)) => "running",
            Err(e) => return Err(e.into()),
        };
        Ok(Begun::Accepted {
            workload: w.name.to_string(),
            run_id,
            status,
            repeated: true,
        })
    };
    // One run per workload: this process's own unfinished run is not taken over.
    let _one_at_a_time = state.begin_lock.lock().await;
    let keyed = key
        .map(|k| runs::keyed_run_id(w.name.as_str(), k))
        .transpose()?;
    if let Some(run) = state.app.unfinished_run(w.name.as_str()).await? {
        if keyed.as_deref() == Some(run.id.as_str()) {
            return repeated(run.id).await;
        }
        let mut p = Problem::new(
            ProblemKind::Locked,
            format!(
                "workload {} is busy: run {} ({} by {}) is unfinished; cancel it or wait for it",
                run.workload, run.id, run.action, run.owner
            ),
        );
        p.run_id = Some(run.id);
        return Err(p);
    }
    let begun = match key {
        Some(k) => match state.app.begin_run_keyed(&cloud, w, req, k).await? {
            runs::Keyed::Repeated(id) => return repeated(id).await,
            runs::Keyed::Begun(b) => b,
        },
        None => {
            state
                .app
                .begin_run(&cloud, w, req, None, &mut Quiet)
                .await?
        }
    };
    Ok(match begun {
        Begin::Started(run) | Begin::Resumed(run) => {
            state.app.attribute_run(&run.id, by).await?;
            let action = run.action.to_string().to_lowercase();
            if let Err(e) = state.driver.started(&run.workload, &action, &run.id).await {
                // Nothing would drive it: it must not hold the workload.
                let _ = state.app.cancel(&run.id).await;
                return Err(Problem::new(
                    ProblemKind::Upstream,
                    format!("run {} could not be handed to its driver: {e}", run.id),
                ));
            }
            Begun::Accepted {
                workload: run.workload,
                run_id: run.id,
                status: run.status.as_str(),
                repeated: false,
            }
        }
        Begin::NothingToDo(plan) => Begun::NothingToDo(plan),
    })
}

/// A request that repeats an idempotency key must be the request that key began
/// its run with (action, profile, scale-in): anything else is refused, naming the
/// run, rather than answered with a run that does something else.
fn same_request(
    run: &ec2_scheduler_engine::Run,
    req: &RunRequest,
    key: &str,
) -> Result<(), Problem> {
    if run.action == req.action && run.profile == req.profile && run.scale_in == req.scale_in {
        return Ok(());
    }
    let asked = |action: ec2_scheduler_core::Action, profile: &Option<String>, scale_in| {
        let scale_in = match scale_in {
            ec2_scheduler_core::plan::ScaleIn::ReportOnly => "report-only",
            ec2_scheduler_core::plan::ScaleIn::Apply => "apply",
        };
        format!(
            "{} (profile {}, scale-in {scale_in})",
            action.to_string().to_lowercase(),
            profile.as_deref().unwrap_or("none")
        )
    };
    let mut p = Problem::new(
        ProblemKind::Unprocessable,
        format!(
            "Idempotency-Key {key:?} began run {} as a {}; this request asks for a {}: use another key for another request",
            run.id,
            asked(run.action, &run.profile, run.scale_in),
            asked(req.action, &req.profile, req.scale_in)
        ),
    );
    p.run_id = Some(run.id.clone());
    Err(p)
}

fn accepted(workload: &str, id: &str, status: &str, repeated: bool) -> Reply {
    let mut r = json_reply(
        StatusCode::ACCEPTED,
        json!({"run_id": id, "workload": workload, "status": status, "repeated": repeated, "href": format!("/v1/runs/{id}")}),
    )?;
    if let Ok(v) = HeaderValue::from_str(&format!("/v1/runs/{id}")) {
        r.headers_mut().insert(header::LOCATION, v);
    }
    Ok(r)
}

#[utoipa::path(post, path = "/v1/workloads/{workload}/runs", tag = "runs",
    params(("workload" = String, Path, description = "Workload name"),
        ("Idempotency-Key" = Option<String>, Header, description = "1 to 255 printable ASCII characters. The same key on the same workload answers the run it began (`repeated`: true, with its status now), without beginning another, in every process sharing the store; the same key with another action, profile or scale-in is refused (422)")),
    request_body = RunBody,
    responses((status = 202, description = "Begun; Location names the run", body = Object),
        (status = 200, description = "A dry run's plan, or nothing to do", body = Object),
        (status = 403, description = "Needs the operator role", body = ProblemDocument, content_type = "application/problem+json"),
        (status = 409, description = "Another run holds the workload (`locked`, with its run_id)", body = ProblemDocument, content_type = "application/problem+json"),
        (status = 422, description = "The Idempotency-Key began a run with another request (`unprocessable`, with that run's run_id)", body = ProblemDocument, content_type = "application/problem+json")))]
pub async fn start_run(
    S(state): S<State>,
    auth: Auth,
    Path(name): Path<String>,
    headers: HeaderMap,
    body: Result<Json<RunBody>, axum::extract::rejection::JsonRejection>,
) -> Reply {
    let by = auth.need(Role::Operator)?.name.clone();
    let Json(body) = body.map_err(|e| invalid(e.body_text()))?;
    let req = run_request(&body.action, body.profile, body.scale_in)?;
    let w = workload(&state, &name).await?;
    let key = headers
        .get("idempotency-key")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    begin(&state, &w, &req, body.dry_run, key.as_deref(), &by).await
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct RunsQuery {
    /// Only this workload's runs.
    workload: Option<String>,
    /// Only runs with this status (running, succeeded, failed, cancelled, ...).
    status: Option<String>,
    /// The `next_cursor` of the previous page.
    cursor: Option<String>,
    /// Runs per page (1 to 500, default 50).
    limit: Option<usize>,
}

#[utoipa::path(get, path = "/v1/runs", tag = "runs", params(RunsQuery),
    responses((status = 200, description = "Runs, newest first, a page at a time", body = Object)))]
pub async fn list_runs(S(state): S<State>, _auth: Auth, Query(q): Query<RunsQuery>) -> Reply {
    let limit = q.limit.unwrap_or(50);
    if !(1..=500).contains(&limit) {
        return Err(invalid(format!(
            "limit must be from 1 to 500, found {limit}"
        )));
    }
    let mut runs = state.app.runs(q.workload.as_deref()).await?;
    if let Some(s) = &q.status {
        runs.retain(|r| r.status.eq_ignore_ascii_case(s));
    }
    let start = match &q.cursor {
        None => 0,
        Some(c) => {
            runs.iter()
                .position(|r| &r.id == c)
                .ok_or_else(|| invalid(format!("cursor {c:?} is not a run of this listing")))?
                + 1
        }
    };
    let page: Vec<_> = runs.iter().skip(start).take(limit).collect();
    let next = (start + limit < runs.len()).then(|| page.last().map(|r| r.id.clone()));
    json_reply(
        StatusCode::OK,
        json!({"runs": page, "next_cursor": next.flatten()}),
    )
}

#[utoipa::path(get, path = "/v1/runs/{id}", tag = "runs",
    params(("id" = String, Path, description = "Run id")),
    responses((status = 200, description = "The run with its plan, counts, API calls and events", body = Object),
        (status = 404, description = "No such run", body = ProblemDocument, content_type = "application/problem+json")))]
pub async fn get_run(S(state): S<State>, _auth: Auth, Path(id): Path<String>) -> Reply {
    json_reply(StatusCode::OK, state.app.run_record(&id).await?)
}

#[utoipa::path(post, path = "/v1/runs/{id}/cancel", tag = "runs",
    params(("id" = String, Path, description = "Run id")),
    responses((status = 200, description = "Cancelled: recorded so, the lock released; nothing is undone", body = Object),
        (status = 409, description = "Already finished", body = ProblemDocument, content_type = "application/problem+json")))]
pub async fn cancel_run(S(state): S<State>, auth: Auth, Path(id): Path<String>) -> Reply {
    auth.need(Role::Operator)?;
    json_reply(StatusCode::OK, state.app.cancel(&id).await?)
}

#[utoipa::path(get, path = "/v1/exemptions", tag = "exemptions",
    responses((status = 200, description = "Stored exemptions from stops", body = Vec<Object>)))]
pub async fn list_exemptions(S(state): S<State>, _auth: Auth) -> Reply {
    json_reply(StatusCode::OK, state.app.exemptions().await?)
}

/// An exemption to add.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ExemptionBody {
    /// Instance id.
    pub instance: String,
    /// When it ends (RFC 3339; none: until removed).
    #[serde(default)]
    pub until: Option<DateTime<Utc>>,
    /// Why (recorded with who asked).
    pub reason: String,
}

#[utoipa::path(post, path = "/v1/exemptions", tag = "exemptions", request_body = ExemptionBody,
    responses((status = 201, description = "Added", body = Object),
        (status = 400, description = "Not valid", body = ProblemDocument, content_type = "application/problem+json")))]
pub async fn add_exemption(
    S(state): S<State>,
    auth: Auth,
    body: Result<Json<ExemptionBody>, axum::extract::rejection::JsonRejection>,
) -> Reply {
    let caller = auth.need(Role::Operator)?;
    let Json(b) = body.map_err(|e| invalid(e.body_text()))?;
    let e = state
        .app
        .exempt(
            &b.instance,
            b.until,
            b.reason.trim(),
            &caller.name,
            Utc::now(),
        )
        .await?;
    json_reply(StatusCode::CREATED, e)
}

#[utoipa::path(delete, path = "/v1/exemptions/{instance}", tag = "exemptions",
    params(("instance" = String, Path, description = "Instance id")),
    responses((status = 204, description = "Removed"),
        (status = 404, description = "The instance has no exemption", body = ProblemDocument, content_type = "application/problem+json")))]
pub async fn remove_exemption(
    S(state): S<State>,
    auth: Auth,
    Path(instance): Path<String>,
) -> Reply {
    auth.need(Role::Operator)?;
    state.app.unexempt(&instance).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

#[utoipa::path(get, path = "/v1/workloads/{workload}/overrides", tag = "schedules",
    params(("workload" = String, Path, description = "Workload name")),
    responses((status = 200, description = "Overrides in effect", body = Vec<Object>)))]
pub async fn list_overrides(S(state): S<State>, _auth: Auth, Path(name): Path<String>) -> Reply {
    let w = workload(&state, &name).await?;
    json_reply(
        StatusCode::OK,
        state
            .app
            .overrides(Some(w.name.as_str()), false, Utc::now())
            .await?,
    )
}

/// One of four one-off changes, with why.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct OverrideBody {
    /// Skip the next `start` or `stop`.
    #[serde(default)]
    pub skip_next: Option<String>,
    /// Move the next stop to this instant.
    #[serde(default)]
    pub postpone_next_stop_until: Option<DateTime<Utc>>,
    /// Keep running (starting it if stopped) until this instant.
    #[serde(default)]
    pub keep_running_until: Option<DateTime<Utc>>,
    /// Keep stopped (stopping it if running) until this instant.
    #[serde(default)]
    pub keep_stopped_until: Option<DateTime<Utc>>,
    #[serde(default)]
    pub reason: String,
}

#[utoipa::path(post, path = "/v1/workloads/{workload}/overrides", tag = "schedules",
    params(("workload" = String, Path, description = "Workload name")),
    request_body = OverrideBody,
    responses((status = 201, description = "Added (who asked is recorded)", body = Object),
        (status = 400, description = "Not valid", body = ProblemDocument, content_type = "application/problem+json")))]
pub async fn add_override(
    S(state): S<State>,
    auth: Auth,
    Path(name): Path<String>,
    body: Result<Json<OverrideBody>, axum::extract::rejection::JsonRejection>,
) -> Reply {
    let caller = auth.need(Role::Operator)?;
    let Json(b) = body.map_err(|e| invalid(e.body_text()))?;
    let skip = match b.skip_next.as_deref() {
        None => None,
        Some(s) if s.eq_ignore_ascii_case("start") => Some(EventKind::Start),
        Some(s) if s.eq_ignore_ascii_case("stop") => Some(EventKind::Stop),
        Some(s) => {
            return Err(invalid(format!(
                "skip_next: expected start or stop, found {s:?}"
            )));
        }
    };
    let request = match (
        skip,
        b.postpone_next_stop_until,
        b.keep_running_until,
        b.keep_stopped_until,
    ) {
        (Some(k), None, None, None) => OverrideRequest::SkipNext(k),
        (None, Some(until), None, None) => OverrideRequest::PostponeNextStop { until },
        (None, None, Some(until), None) => OverrideRequest::KeepRunning { until },
        (None, None, None, Some(until)) => OverrideRequest::KeepStopped { until },
        _ => {
            return Err(invalid(
                "give exactly one of skip_next, postpone_next_stop_until, keep_running_until, keep_stopped_until",
            ));
        }
    };
    let w = workload(&state, &name).await?;
    let o = state
        .app
        .add_override(&w, request, &caller.name, &b.reason, Utc::now())
        .await?;
    json_reply(StatusCode::CREATED, o)
}

#[utoipa::path(delete, path = "/v1/overrides/{id}", tag = "schedules",
    params(("id" = String, Path, description = "Override id")),
    responses((status = 204, description = "Removed"),
        (status = 404, description = "No such override", body = ProblemDocument, content_type = "application/problem+json")))]
pub async fn remove_override(S(state): S<State>, auth: Auth, Path(id): Path<String>) -> Reply {
    auth.need(Role::Operator)?;
    state.app.remove_override(&id).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct NextQuery {
    /// From this instant (RFC 3339; default now).
    from: Option<DateTime<Utc>>,
    /// How many events (1 to 1,000; default 10).
    count: Option<usize>,
}

#[utoipa::path(get, path = "/v1/workloads/{workload}/schedule/next", tag = "schedules",
    params(("workload" = String, Path, description = "Workload name"), NextQuery),
    responses((status = 200, description = "The next starts and stops, with the skip dates and overrides that change them", body = Vec<Object>)))]
pub async fn schedule_next(
    S(state): S<State>,
    _auth: Auth,
    Path(name): Path<String>,
    Query(q): Query<NextQuery>,
) -> Reply {
    let w = workload(&state, &name).await?;
    let from = q.from.unwrap_or_else(|| state.clouds.now());
    let overrides = state
        .app
        .overrides(Some(w.name.as_str()), true, from)
        .await?;
    json_reply(
        StatusCode::OK,
        schedules::next(&w.schedules, &overrides, from, q.count.unwrap_or(10))?,
    )
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct SavingsQuery {
    /// First day (UTC; default today).
    from: Option<NaiveDate>,
    /// Day after the last (default 30 days after `from`).
    to: Option<NaiveDate>,
}

#[utoipa::path(get, path = "/v1/workloads/{workload}/savings", tag = "workloads",
    params(("workload" = String, Path, description = "Workload name"), SavingsQuery),
    responses((status = 200, description = "Forecast and actual savings", body = Object)))]
pub async fn savings(
    S(state): S<State>,
    _auth: Auth,
    Path(name): Path<String>,
    Query(q): Query<SavingsQuery>,
) -> Reply {
    let w = workload(&state, &name).await?;
    let cloud = state.clouds.get(&state.app, &w).await?;
    let from = q.from.unwrap_or_else(|| cloud.now().date_naive());
    let to = q.to.unwrap_or(from + chrono::Duration::days(30));
    let mut prices = ec2_scheduler_app::savings::Prices::bundled();
    prices.price_list = true;
    let midnight = |d: NaiveDate| d.and_time(chrono::NaiveTime::MIN).and_utc();
    json_reply(
        StatusCode::OK,
        state
            .app
            .savings(&cloud, &w, midnight(from), midnight(to), &prices)
            .await?,
    )
}

#[utoipa::path(get, path = "/v1/tokens", tag = "tokens",
    responses((status = 200, description = "Every token (never the secrets)", body = Vec<Object>),
        (status = 403, description = "Needs the admin role", body = ProblemDocument, content_type = "application/problem+json")))]
pub async fn list_tokens(S(state): S<State>, auth: Auth) -> Reply {
    auth.need(Role::Admin)?;
    json_reply(StatusCode::OK, state.app.tokens().await?)
}

/// A token to make.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TokenBody {
    pub name: String,
    /// viewer, operator or admin.
    pub role: String,
    /// When it stops working (RFC 3339; none: until revoked).
    #[serde(default)]
    pub expires: Option<DateTime<Utc>>,
}

#[utoipa::path(post, path = "/v1/tokens", tag = "tokens", request_body = TokenBody,
    responses((status = 201, description = "Made; `token` is shown this once", body = Object),
        (status = 403, description = "Needs the admin role", body = ProblemDocument, content_type = "application/problem+json")))]
pub async fn create_token(
    S(state): S<State>,
    auth: Auth,
    body: Result<Json<TokenBody>, axum::extract::rejection::JsonRejection>,
) -> Reply {
    let caller = auth.need(Role::Admin)?;
    let Json(b) = body.map_err(|e| invalid(e.body_text()))?;
    let role = Role::parse(&b.role).ok_or_else(|| {
        invalid(format!(
            "role: expected viewer, operator or admin, found {:?}",
            b.role
        ))
    })?;
    let t = state
        .app
        .create_token(&b.name, role, b.expires, &caller.name, Utc::now())
        .await?;
    json_reply(StatusCode::CREATED, t)
}

#[utoipa::path(delete, path = "/v1/tokens/{id}", tag = "tokens",
    params(("id" = String, Path, description = "Token id")),
    responses((status = 204, description = "Revoked"),
        (status = 404, description = "No such token", body = ProblemDocument, content_type = "application/problem+json")))]
pub async fn revoke_token(S(state): S<State>, auth: Auth, Path(id): Path<String>) -> Reply {
    auth.need(Role::Admin)?;
    state.app.revoke_token(&id, Utc::now()).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}
