//! The HTTP API: REST over the application layer under `/v1`, bearer tokens with
//! roles, RFC 9457 problems, an OpenAPI 3.1 document, Prometheus metrics, and the
//! original serverless variant's routes.
//!
//! [`app`] builds the router from a [`State`]; `ec2-scheduler serve --listen` mounts
//! it beside the scheduler, and a Lambda handler can wrap the same router. Handlers
//! call only the application layer (`ec2_scheduler_app`).

mod handlers;
mod legacy;
pub mod metrics;
pub mod problem;
mod reads;
mod web;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::extract::{FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::{HeaderValue, Method, header};
use axum::middleware::{self, Next};
use axum::response::Response;
use axum::routing::{get, post};
use ec2_scheduler_app::App;
use ec2_scheduler_app::clouds::Clouds;
use ec2_scheduler_core::access::{Caller, Role};
use tower_http::cors::CorsLayer;
use tower_http::limit::RequestBodyLimitLayer;
use tower_http::timeout::TimeoutLayer;
use utoipa::OpenApi;

pub use problem::{Problem, ProblemDocument, ProblemKind};

/// Who drives the runs the API begins: the scheduler loop of `serve`, a spawned
/// task, or a state machine.
#[async_trait::async_trait]
pub trait Driver: Send + Sync {
    /// The run `run_id` of `workload` (an `action` run) was begun and must be driven
    /// to its end.
    ///
    /// # Errors
    /// The driver could not take it (a state machine that could not be started); the
    /// run is then cancelled and the request answers the error.
    async fn started(&self, workload: &str, action: &str, run_id: &str) -> Result<(), String>;
}

#[async_trait::async_trait]
impl Driver for ec2_scheduler_app::serve::Inbox {
    async fn started(&self, workload: &str, _action: &str, run_id: &str) -> Result<(), String> {
        self.push(workload, run_id);
        Ok(())
    }
}

/// Drives each run in a task of its own (for an API without the scheduler loop).
pub struct Spawn {
    pub app: Arc<App>,
    pub clouds: Arc<Clouds>,
}

#[async_trait::async_trait]
impl Driver for Spawn {
    async fn started(&self, workload: &str, _action: &str, run_id: &str) -> Result<(), String> {
        let (app, clouds) = (self.app.clone(), self.clouds.clone());
        let (workload, run_id) = (workload.to_string(), run_id.to_string());
        tokio::spawn(async move {
            let drive = async {
                let w = app.stored_workload(&workload).await?;
                let cloud = clouds.get(&app, &w).await?;
                loop {
                    match app.advance(&cloud, &w, &run_id).await? {
                        ec2_scheduler_app::Next::Wait(d, _) => cloud.wait(d).await,
                        ec2_scheduler_app::Next::Done(_) => {
                            return Ok::<_, ec2_scheduler_app::Error>(());
                        }
                    }
                }
            };
            if let Err(e) = drive.await {
                tracing::warn!(workload = %workload, run = %run_id, error = %e, "cannot drive the run");
            }
        });
        Ok(())
    }
}

/// How the API behaves.
#[derive(Debug, Clone)]
pub struct Limits {
    /// Largest request body, in bytes.
    pub body_bytes: usize,
    /// Longest a request may take.
    pub timeout: Duration,
    /// Origins allowed to call from a browser (none: no CORS headers at all).
    pub cors_origins: Vec<String>,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            body_bytes: 16 << 20,
            timeout: Duration::from_secs(30),
            cors_origins: Vec::new(),
        }
    }
}

/// The caller's IAM identity (an ARN), as API Gateway with IAM authorization
/// verified it. Only the process puts it on a request (the Lambda adapter, from the
/// request context); no header can.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IamCaller(pub String);

/// Which IAM principals have which role: ARN patterns (a trailing `*` matches any
/// rest), the first match wins.
#[derive(Debug, Clone, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Principals {
    pub principals: Vec<PrincipalRole>,
}

#[derive(Debug, Clone, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PrincipalRole {
    pub arn: String,
    pub role: Role,
}

impl Principals {
    /// Reads a table from JSON: `{"principals": [{"arn": "...", "role": "operator"}]}`.
    ///
    /// # Errors
    /// Text that is not such a table, with line and column.
    pub fn from_json(text: &str) -> Result<Principals, String> {
        serde_json::from_str(text)
            .map_err(|e| format!("line {} column {}: {e}", e.line(), e.column()))
    }

    /// The role of `arn`, if a pattern matches it. An assumed-role session
    /// (`arn:aws:sts::ACCOUNT:assumed-role/ROLE/SESSION`) matches as its role
    /// (`arn:aws:iam::ACCOUNT:role/ROLE`) too.
    pub fn role_of(&self, arn: &str) -> Option<Role> {
        let as_role = assumed_role(arn);
        self.principals
            .iter()
            .find(|p| {
                let m = |a: &str| match p.arn.strip_suffix('*') {
                    Some(prefix) => a.starts_with(prefix),
                    None => a == p.arn,
                };
                m(arn) || as_role.as_deref().is_some_and(m)
            })
            .map(|p| p.role)
    }
}

/// `arn:aws:iam::ACCOUNT:role/ROLE` of an assumed-role session ARN.
fn assumed_role(arn: &str) -> Option<String> {
    let rest = arn.strip_prefix("arn:aws:sts::")?;
    let (account, rest) = rest.split_once(':')?;
    let rest = rest.strip_prefix("assumed-role/")?;
    let (role, _session) = rest.split_once('/')?;
    Some(format!("arn:aws:iam::{account}:role/{role}"))
}

/// What every handler shares.
#[derive(Clone)]
pub struct State {
    pub app: Arc<App>,
    pub clouds: Arc<Clouds>,
    pub driver: Arc<dyn Driver>,
    pub metrics: Arc<metrics::Metrics>,
    /// Held while a run is begun, so two requests never both begin one.
    begin_lock: Arc<tokio::sync::Mutex<()>>,
    /// Roles of IAM principals, for requests that carry an [`IamCaller`].
    pub principals: Arc<Principals>,
    /// Answers of the busiest reads, kept for a second.
    pub(crate) reads: Arc<reads::Reads>,
    /// The dashboard's signed-in sessions.
    pub(crate) sessions: Arc<web::Sessions>,
}

impl State {
    pub fn new(app: Arc<App>, clouds: Arc<Clouds>, driver: Arc<dyn Driver>) -> State {
        State {
            app,
            driver,
            metrics: Arc::default(),
            begin_lock: Arc::default(),
            principals: Arc::default(),
            reads: Arc::new(reads::Reads::new(clouds.max_age())),
            sessions: Arc::default(),
            clouds,
        }
    }
}

/// Where the authenticated caller's name is left for the access log.
#[derive(Clone, Default)]
struct CallerSlot(Arc<Mutex<Option<String>>>);

/// The authenticated caller of a request.
pub struct Auth(pub Caller);

impl Auth {
    /// `Ok` when the caller's role allows what `needed` may do, else a 403 problem.
    pub fn need(&self, needed: Role) -> Result<&Caller, Problem> {
        if self.0.role.allows(needed) {
            Ok(&self.0)
        } else {
            Err(Problem::new(
                ProblemKind::Forbidden,
                format!(
                    "{} has the role {}; this needs {needed}",
                    self.0.name, self.0.role
                ),
            ))
        }
    }
}

impl FromRequestParts<State> for Auth {
    type Rejection = Problem;

    async fn from_request_parts(parts: &mut Parts, state: &State) -> Result<Auth, Problem> {
        if let Some(IamCaller(arn)) = parts.extensions.get::<IamCaller>().cloned() {
            let Some(role) = state.principals.role_of(&arn) else {
                return Err(Problem::new(
                    ProblemKind::Forbidden,
                    format!("{arn} has no role in the principals table"),
                ));
            };
            if let Some(slot) = parts.extensions.get::<CallerSlot>() {
                *slot.0.lock().unwrap_or_else(|p| p.into_inner()) = Some(arn.clone());
            }
            return Ok(Auth(Caller { name: arn, role }));
        }
        let header = parts
            .headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok());
        let bearer = match header {
            None => None,
            Some(h) => match h.split_once(' ') {
                Some((scheme, token)) if scheme.eq_ignore_ascii_case("bearer") => Some(token),
                _ => Some(""),
            },
        };
        let bearer = match (header, bearer) {
            (Some(_), Some("")) => {
                return Err(Problem::new(
                    ProblemKind::Unauthenticated,
                    "the Authorization header must be `Bearer TOKEN`",
                ));
            }
            (_, b) => b,
        };
        let caller = state
            .app
            .authenticate(bearer, chrono::Utc::now())
            .await
            .map_err(|e| match e {
                Ok(error) => Problem::from(error),
                Err(refused) => Problem::from(refused),
            })?;
        if let Some(slot) = parts.extensions.get::<CallerSlot>() {
            *slot.0.lock().unwrap_or_else(|p| p.into_inner()) = Some(caller.name.clone());
        }
        Ok(Auth(caller))
    }
}

/// The OpenAPI document of the API.
#[derive(OpenApi)]
#[openapi(
    info(
        title = "ec2-scheduler API",
        description = "Manage workloads, schedules, exemptions and runs of ec2-scheduler. Every route but /healthz, /readyz, /metrics and /openapi.json needs `Authorization: Bearer TOKEN` (from `ec2-scheduler token create`). Errors are RFC 9457 problem documents.",
        license(name = "Apache-2.0")
    ),
    paths(
        handlers::healthz,
        handlers::readyz,
        handlers::list_workloads,
        handlers::get_workload,
        handlers::put_workload,
        handlers::delete_workload,
        handlers::workload_status,
        handlers::plan,
        handlers::start_run,
        handlers::list_runs,
        handlers::get_run,
        handlers::cancel_run,
        handlers::list_exemptions,
        handlers::add_exemption,
        handlers::remove_exemption,
        handlers::list_overrides,
        handlers::add_override,
        handlers::remove_override,
        handlers::schedule_next,
        handlers::savings,
        handlers::list_tokens,
        handlers::create_token,
        handlers::revoke_token,
        legacy::list,
        legacy::act_get,
        legacy::act_post,
    ),
    components(schemas(ProblemDocument, handlers::RunBody, handlers::ExemptionBody, handlers::OverrideBody, handlers::TokenBody)),
    modifiers(&Security),
    security(("bearer" = []))
)]
pub struct ApiDoc;

struct Security;

impl utoipa::Modify for Security {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
        use utoipa::openapi::{ContentBuilder, Ref, ResponseBuilder};
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
        // Any route may answer an error the table does not list (401, 413, 503, ...):
        // always a problem document.
        let problem = ResponseBuilder::new()
            .description("An error, as an RFC 9457 problem document")
            .content(
                "application/problem+json",
                ContentBuilder::new()
                    .schema(Some(Ref::from_schema_name("ProblemDocument")))
                    .build(),
            )
            .build();
        for item in openapi.paths.paths.values_mut() {
            for op in [
                &mut item.get,
                &mut item.put,
                &mut item.post,
                &mut item.delete,
            ]
            .into_iter()
            .flatten()
            {
                op.responses
                    .responses
                    .entry("default".to_string())
                    .or_insert_with(|| problem.clone().into());
            }
        }
    }
}

/// The OpenAPI document as served at `/openapi.json` (and committed as
/// `docs/openapi.json`).
pub fn openapi_json() -> String {
    ApiDoc::openapi()
        .to_pretty_json()
        .expect("the OpenAPI document serializes")
        + "\n"
}

/// The API's router.
pub fn app(state: State, limits: &Limits) -> Router {
    use handlers as h;
    let mut router = Router::new()
        .route("/healthz", get(h::healthz))
        .route("/readyz", get(h::readyz))
        .route("/metrics", get(metrics::render))
        .route("/openapi.json", get(h::openapi))
        .route("/v1/workloads", get(h::list_workloads))
        .route(
            "/v1/workloads/{workload}",
            get(h::get_workload)
                .put(h::put_workload)
                .delete(h::delete_workload),
        )
        .route("/v1/workloads/{workload}/status", get(h::workload_status))
        .route("/v1/workloads/{workload}/plan", get(h::plan))
        .route("/v1/workloads/{workload}/runs", post(h::start_run))
        .route(
            "/v1/workloads/{workload}/overrides",
            get(h::list_overrides).post(h::add_override),
        )
        .route(
            "/v1/workloads/{workload}/schedule/next",
            get(h::schedule_next),
        )
        .route("/v1/workloads/{workload}/savings", get(h::savings))
        .route(
            "/v1/overrides/{id}",
            axum::routing::delete(h::remove_override),
        )
        .route("/v1/runs", get(h::list_runs))
        .route("/v1/runs/{id}", get(h::get_run))
        .route("/v1/runs/{id}/cancel", post(h::cancel_run))
        .route(
            "/v1/exemptions",
            get(h::list_exemptions).post(h::add_exemption),
        )
        .route(
            "/v1/exemptions/{instance}",
            axum::routing::delete(h::remove_exemption),
        )
        .route("/v1/tokens", get(h::list_tokens).post(h::create_token))
        .route("/v1/tokens/{id}", axum::routing::delete(h::revoke_token))
        .merge(web::routes())
        .route("/workloads", get(legacy::list))
        .route(
            "/workloads/{workload}",
            get(legacy::act_get).post(legacy::act_post),
        )
        .route_layer(middleware::from_fn_with_state(state.clone(), observe))
        .fallback(h::not_found)
        .layer(RequestBodyLimitLayer::new(limits.body_bytes))
        .layer(TimeoutLayer::with_status_code(
            axum::http::StatusCode::SERVICE_UNAVAILABLE,
            limits.timeout,
        ))
        .layer(middleware::map_response(as_problem));
    if !limits.cors_origins.is_empty() {
        let origins: Vec<HeaderValue> = limits
            .cors_origins
            .iter()
            .filter_map(|o| HeaderValue::from_str(o).ok())
            .collect();
        router = router.layer(
            CorsLayer::new()
                .allow_origin(origins)
                .allow_methods([Method::GET, Method::POST, Method::PUT, Method::DELETE])
                .allow_headers([
                    header::AUTHORIZATION,
                    header::CONTENT_TYPE,
                    header::IF_MATCH,
                ]),
        );
    }
    router.with_state(state)
}

/// Serves `router` on `listener` until `stop` is set; requests in flight finish.
///
/// # Errors
/// The listener fails.
pub async fn serve_http(
    listener: tokio::net::TcpListener,
    router: Router,
    stop: Arc<std::sync::atomic::AtomicBool>,
) -> std::io::Result<()> {
    axum::serve(listener, router)
        .with_graceful_shutdown(async move {
            while !stop.load(std::sync::atomic::Ordering::SeqCst) {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        })
        .await
}

/// An error answered by the framework (a path, query or body that cannot be read, a
/// body too large, a timeout) as a problem document, like every other error.
async fn as_problem(response: Response) -> Response {
    let status = response.status();
    // Problems, and the dashboard's own error pages, are answered as they are.
    let is_problem = response
        .headers()
        .get(header::CONTENT_TYPE)
        .is_some_and(|v| {
            v.as_bytes().starts_with(b"application/problem+json")
                || v.as_bytes().starts_with(b"text/html")
        });
    if !(status.is_client_error() || status.is_server_error()) || is_problem {
        return response;
    }
    let (parts, body) = response.into_parts();
    let text = match axum::body::to_bytes(body, 64 << 10).await {
        Ok(b) => String::from_utf8_lossy(&b).trim().to_string(),
        Err(_) => String::new(),
    };
    let kind = match status.as_u16() {
        404 => ProblemKind::NotFound,
        500..=599 => ProblemKind::Internal,
        _ => ProblemKind::Invalid,
    };
    let detail = if text.is_empty() {
        status.canonical_reason().unwrap_or("error").to_string()
    } else {
        text
    };
    let mut p = Problem::new(kind, detail);
    p.status = status.as_u16();
    let mut r = axum::response::IntoResponse::into_response(p);
    for (k, v) in parts.headers.iter() {
        if k != header::CONTENT_TYPE && k != header::CONTENT_LENGTH {
            r.headers_mut().insert(k.clone(), v.clone());
        }
    }
    r
}

/// The access log and the request metrics: one line per request with its id,
/// route, status, latency and caller.
async fn observe(
    axum::extract::State(state): axum::extract::State<State>,
    mut req: Request,
    next: Next,
) -> Response {
    let slot = CallerSlot::default();
    req.extensions_mut().insert(slot.clone());
    let started = std::time::Instant::now();
    let method = req.method().clone();
    let route = req
        .extensions()
        .get::<axum::extract::MatchedPath>()
        .map_or_else(|| "unmatched".to_string(), |p| p.as_str().to_string());
    let id = state.metrics.next_request_id();
    let mut response = as_problem(next.run(req).await).await;
    let latency = started.elapsed();
    let status = response.status().as_u16();
    if !matches!(method, Method::GET | Method::HEAD) && response.status().is_success() {
        // Something changed: the next read makes its answer afresh.
        state.reads.clear();
    }
    state.metrics.observe(&method, &route, status, latency);
    let caller = slot
        .0
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .clone()
        .unwrap_or_default();
    tracing::info!(
        request_id = %id,
        method = %method,
        route = %route,
        status,
        latency_ms = latency.as_secs_f64() * 1000.0,
        caller = %caller,
        "request"
    );
    if let Ok(v) = HeaderValue::from_str(&id) {
        response.headers_mut().insert("x-request-id", v);
    }
    response
}
