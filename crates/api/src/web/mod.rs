//! The dashboard: server-rendered pages under `/`, served by the same router as the
//! API and calling the same application layer.
//!
//! - Sign-in with a token (`token create`) opens a session: an HttpOnly,
//!   SameSite=Strict cookie naming a random session id, kept in this process's
//!   memory with the token it was opened with. Every request checks the token again,
//!   so a revoked or expired token ends its sessions at once.
//! - What a page offers follows the token's role: viewers see no action buttons, and
//!   the actions check the role again.
//! - No inline script or style: the pages work under `Content-Security-Policy:
//!   default-src 'self'`, which every answer carries. The one script
//!   (`/assets/app.js`) only refreshes a live run and fills in the viewer's time zone;
//!   every page works without it.

mod pages;
mod savings;
mod session;
mod timeline;
mod week;

use axum::Router;
use axum::extract::Request;
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use chrono::{DateTime, Utc};
use ec2_scheduler_core::access::{Caller, Role};
use maud::{DOCTYPE, Markup, html};

pub(crate) use session::Sessions;

use crate::State;

const CSS: &str = include_str!("../../assets/app.css");
const JS: &str = include_str!("../../assets/app.js");
const ICON: &str = include_str!("../../assets/icon.svg");

/// What every dashboard answer carries.
const CSP: &str = "default-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'; object-src 'none'";

/// The dashboard's routes.
pub(crate) fn routes() -> Router<State> {
    Router::new()
        .route("/", get(pages::workloads))
        .route("/signin", get(session::signin_page).post(session::signin))
        .route("/signout", post(session::signout))
        .route("/workload/{workload}", get(pages::workload))
        .route("/workload/{workload}/plan", get(pages::plan))
        .route("/workload/{workload}/run", post(pages::start))
        .route("/run/{id}", get(pages::run))
        .route("/run/{id}/live", get(pages::run_live))
        .route("/run/{id}/cancel", post(pages::cancel))
        .route("/schedule", get(week::schedule))
        .route("/savings", get(savings::savings))
        .route("/assets/app.css", get(css))
        .route("/assets/app.js", get(js))
        .route("/assets/icon.svg", get(icon))
        .layer(middleware::from_fn(headers))
}

async fn css() -> Response {
    asset("text/css; charset=utf-8", CSS)
}

async fn icon() -> Response {
    asset("image/svg+xml", ICON)
}

async fn js() -> Response {
    asset("text/javascript; charset=utf-8", JS)
}

fn asset(content_type: &'static str, body: &'static str) -> Response {
    (
        [
            (header::CONTENT_TYPE, content_type),
            (header::CACHE_CONTROL, "max-age=300"),
        ],
        body,
    )
        .into_response()
}

/// The security headers of every dashboard answer; pages are never cached.
async fn headers(req: Request, next: Next) -> Response {
    let mut res = next.run(req).await;
    let h = res.headers_mut();
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CSP),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("same-origin"),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    if !h.contains_key(header::CACHE_CONTROL) {
        h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
    res
}

/// Which part of the site a page belongs to (its navigation link is marked).
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Nav {
    Workloads,
    Schedule,
    Savings,
    None,
}

/// A whole page: the navigation, who is signed in, and `body`.
pub(crate) fn page(title: &str, who: Option<&Caller>, nav: Nav, body: Markup) -> Markup {
    let link = |href: &str, label: &str, this: Nav| {
        html! {
            @if nav == this {
                a href=(href) aria-current="page" { (label) }
            } @else {
                a href=(href) { (label) }
            }
        }
    };
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { (title) " · ec2-scheduler" }
                link rel="stylesheet" href="/assets/app.css";
                link rel="icon" href="/assets/icon.svg" type="image/svg+xml";
                script src="/assets/app.js" defer {}
            }
            body {
                a.skip href="#main" { "Skip to the content" }
                header.top {
                    span.brand { "ec2-scheduler" }
                    @if let Some(who) = who {
                        nav aria-label="Main" {
                            (link("/", "Workloads", Nav::Workloads))
                            (link("/schedule", "Schedule", Nav::Schedule))
                            (link("/savings", "Savings", Nav::Savings))
                        }
                        form.who method="post" action="/signout" {
                            span { (who.name) " (" (who.role) ")" }
                            button type="submit" { "Sign out" }
                        }
                    }
                }
                main #main tabindex="-1" {
                    h1 { (title) }
                    (body)
                }
            }
        }
    }
}

/// `markup` as an HTML answer with `status`.
pub(crate) fn html_response(status: StatusCode, markup: Markup) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
        markup.into_string(),
    )
        .into_response()
}

/// A page answered with 200.
pub(crate) fn ok_page(title: &str, who: &Caller, nav: Nav, body: Markup) -> Response {
    html_response(StatusCode::OK, page(title, Some(who), nav, body))
}

/// `None` when `who` may act, else the 403 page saying that `what` needs an operator.
pub(crate) fn need_operator(who: &Caller, what: &str) -> Option<Response> {
    (!may_act(who)).then(|| {
        error_page(
            Some(who),
            StatusCode::FORBIDDEN,
            &format!(
                "{} has the role {}; {what} needs operator",
                who.name, who.role
            ),
        )
    })
}

/// Workloads per page of the schedule and savings pages.
pub(crate) const PER_PAGE: usize = 20;

/// The workloads whose name holds `needle` (lower case; empty: all).
pub(crate) fn named<'a>(
    all: &'a [ec2_scheduler_core::Workload],
    needle: &str,
) -> Vec<&'a ec2_scheduler_core::Workload> {
    all.iter()
        .filter(|w| needle.is_empty() || w.name.as_str().to_lowercase().contains(needle))
        .collect()
}

/// The page `asked` (1-based, clamped) of `len` items, and how many pages there are.
pub(crate) fn page_of(len: usize, asked: Option<usize>) -> (usize, usize) {
    let pages = len.div_ceil(PER_PAGE).max(1);
    (asked.unwrap_or(1).clamp(1, pages), pages)
}

/// An error page: what went wrong, and where to go next.
pub(crate) fn error_page(who: Option<&Caller>, status: StatusCode, detail: &str) -> Response {
    let title = match status.as_u16() {
        403 => "Not allowed",
        404 => "Not found",
        409 => "Busy",
        400 | 422 => "Cannot do that",
        _ => "Something failed",
    };
    html_response(
        status,
        page(
            title,
            who,
            Nav::None,
            html! {
                p.error role="alert" { (detail) }
                p { a href="/" { "Back to the workloads" } }
            },
        ),
    )
}

/// An application-layer error as an error page, with the API's status for it.
pub(crate) fn problem_page(who: Option<&Caller>, p: crate::Problem) -> Response {
    let status = StatusCode::from_u16(p.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    error_page(who, status, &p.detail)
}

/// An instant as `YYYY-MM-DD HH:MM:SS UTC` in a `<time>` element.
pub(crate) fn when(at: DateTime<Utc>) -> Markup {
    html! {
        time datetime=(at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)) {
            (at.format("%Y-%m-%d %H:%M:%S UTC"))
        }
    }
}

/// A duration in seconds as `1 h 02 min`, `3 min 05 s` or `42 s`.
pub(crate) fn duration(secs: f64) -> String {
    let s = secs.max(0.0).round() as u64;
    match s {
        0..60 => format!("{s} s"),
        60..3600 => format!("{} min {:02} s", s / 60, s % 60),
        _ => format!("{} h {:02} min", s / 3600, s % 3600 / 60),
    }
}

/// A status word with its class (colour) and a text mark, readable without colour.
pub(crate) fn badge(status: &str) -> Markup {
    let (class, mark) = match status {
        "succeeded" | "running-state" | "running" => ("ok", "✓"),
        "failed" | "rolled-back" => ("bad", "✗"),
        "completed-with-failures" | "cancelled" | "abandoned" => ("warn", "!"),
        _ => ("info", "•"),
    };
    html! { span class={"badge " (class)} { span aria-hidden="true" { (mark) " " } (status) } }
}

/// The cloud's clock: on the simulator, its virtual time (the region is made with
/// the first stored workload if no request made it yet).
pub(crate) async fn now(state: &State) -> DateTime<Utc> {
    if !state.clouds.clock_ready()
        && let Ok(all) = state.app.stored_workloads().await
        && let Some(w) = all.first()
    {
        let _ = state.clouds.get(&state.app, w).await;
    }
    state.clouds.now()
}

/// Whether the caller may act (start, stop, cancel).
pub(crate) fn may_act(who: &Caller) -> bool {
    who.role.allows(Role::Operator)
}

/// An empty marker for a value that is not there.
pub(crate) fn none() -> Markup {
    html! { span.muted { "—" } }
}
