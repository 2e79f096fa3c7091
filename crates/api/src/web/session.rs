//! Sessions: sign-in with a token, a cookie naming the session, sign-out.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use axum::extract::{Form, FromRequestParts, Query, State as S};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use chrono::Utc;
use ec2_scheduler_core::access::Caller;
use maud::html;
use serde::Deserialize;

use super::{Nav, error_page, html_response, page};
use crate::{CallerSlot, State};

/// The session cookie's name.
pub(crate) const COOKIE: &str = "ec2s_session";
/// A session ends after this long without a request.
const IDLE: Duration = Duration::from_secs(12 * 3600);
/// At most this many sessions are kept; the least recently used goes first.
const MAX_SESSIONS: usize = 10_000;

struct Session {
    token: String,
    last: Instant,
}

/// Open sessions, by id. Kept in memory: a restart signs everyone out.
#[derive(Default)]
pub(crate) struct Sessions {
    open: Mutex<HashMap<String, Session>>,
}

impl Sessions {
    /// Opens a session for `token`; its id.
    fn open(&self, token: &str) -> Result<String, getrandom::Error> {
        let mut bytes = [0u8; 32];
        getrandom::fill(&mut bytes)?;
        let id: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
        let mut open = self.open.lock().unwrap_or_else(|p| p.into_inner());
        open.retain(|_, s| s.last.elapsed() < IDLE);
        if open.len() >= MAX_SESSIONS
            && let Some(oldest) = open
                .iter()
                .min_by_key(|(_, s)| s.last)
                .map(|(k, _)| k.clone())
        {
            open.remove(&oldest);
        }
        open.insert(
            id.clone(),
            Session {
                token: token.to_string(),
                last: Instant::now(),
            },
        );
        Ok(id)
    }

    /// The token of session `id`, if it is open.
    fn token(&self, id: &str) -> Option<String> {
        let mut open = self.open.lock().unwrap_or_else(|p| p.into_inner());
        match open.get_mut(id) {
            Some(s) if s.last.elapsed() < IDLE => {
                s.last = Instant::now();
                Some(s.token.clone())
            }
            Some(_) => {
                open.remove(id);
                None
            }
            None => None,
        }
    }

    fn close(&self, id: &str) {
        self.open
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(id);
    }
}

/// The value of cookie `name` in the request's `Cookie` headers.
fn cookie(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.to_string())
}

/// A path on this site to go back to after signing in (never another site).
fn local_path(next: Option<&str>) -> String {
    match next {
        Some(p) if p.starts_with('/') && !p.starts_with("//") && !p.contains('\\') => p.to_string(),
        _ => "/".to_string(),
    }
}

/// Where to sign in, coming back to `path` afterwards.
fn to_signin(path: &str) -> Response {
    let next: String = url_encode(path);
    Redirect::to(&format!("/signin?next={next}")).into_response()
}

fn url_encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' | b'/' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// The signed-in caller of a page. Without a session, a page answers a redirect to
/// the sign-in page; a form sent from another site is refused.
pub(crate) struct Signed(pub Caller);

impl FromRequestParts<State> for Signed {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, state: &State) -> Result<Signed, Response> {
        if parts.method != Method::GET
            && parts.method != Method::HEAD
            && !same_origin(&parts.headers)
        {
            return Err(error_page(
                None,
                StatusCode::FORBIDDEN,
                "this form was sent from another site",
            ));
        }
        let back = parts
            .uri
            .path_and_query()
            .map_or("/", |p| p.as_str())
            .to_string();
        let back = if parts.method == Method::GET {
            back
        } else {
            "/".to_string()
        };
        let Some(id) = cookie(&parts.headers, COOKIE) else {
            return Err(to_signin(&back));
        };
        let Some(token) = state.sessions.token(&id) else {
            return Err(to_signin(&back));
        };
        match state.app.authenticate(Some(&token), Utc::now()).await {
            Ok(caller) => {
                if let Some(slot) = parts.extensions.get::<CallerSlot>() {
                    *slot.0.lock().unwrap_or_else(|p| p.into_inner()) = Some(caller.name.clone());
                }
                Ok(Signed(caller))
            }
            Err(Err(_refused)) => {
                // Revoked or expired since the session was opened.
                state.sessions.close(&id);
                Err(to_signin(&back))
            }
            Err(Ok(e)) => Err(error_page(
                None,
                StatusCode::BAD_GATEWAY,
                &format!("the store could not be read: {e}"),
            )),
        }
    }
}

/// Whether a form comes from this site: its `Origin` (when the browser sends one)
/// names the host the request was sent to (`Host`, or `X-Forwarded-Host` from a
/// proxy in front).
fn same_origin(headers: &HeaderMap) -> bool {
    let Some(origin) = headers.get(header::ORIGIN) else {
        return true;
    };
    let Some((_, origin)) = origin.to_str().ok().and_then(|o| o.split_once("://")) else {
        return false;
    };
    [header::HOST.as_str(), "x-forwarded-host"]
        .into_iter()
        .filter_map(|h| headers.get(h).and_then(|v| v.to_str().ok()))
        .any(|host| host.split(',').any(|h| h.trim() == origin))
}

#[derive(Deserialize)]
pub(crate) struct NextQuery {
    next: Option<String>,
}

pub(crate) async fn signin_page(Query(q): Query<NextQuery>) -> Response {
    html_response(StatusCode::OK, signin_form(q.next.as_deref(), None))
}

fn signin_form(next: Option<&str>, error: Option<&str>) -> maud::Markup {
    page(
        "Sign in",
        None,
        Nav::None,
        html! {
            @if let Some(e) = error {
                p.error role="alert" #signin-error { (e) }
            }
            form.card method="post" action="/signin" {
                input type="hidden" name="next" value=(local_path(next));
                label for="token" { "Token" }
                input #token type="password" name="token" required autocomplete="off"
                    spellcheck="false" placeholder="ec2s_…" autofocus;
                p.hint { "A token from " code { "ec2-scheduler token create" } ". Its role decides what you may do here." }
                button type="submit" { "Sign in" }
            }
        },
    )
}

#[derive(Deserialize)]
pub(crate) struct SigninForm {
    token: String,
    next: Option<String>,
}

pub(crate) async fn signin(
    S(state): S<State>,
    headers: HeaderMap,
    Form(form): Form<SigninForm>,
) -> Response {
    let next = form.next.as_deref();
    // Signing in from another site's form would sign the browser in as someone else.
    if !same_origin(&headers) {
        return error_page(
            None,
            StatusCode::FORBIDDEN,
            "this form was sent from another site",
        );
    }
    match state.app.authenticate(Some(&form.token), Utc::now()).await {
        Ok(_caller) => {}
        Err(Err(_refused)) => {
            return html_response(
                StatusCode::UNAUTHORIZED,
                signin_form(
                    next,
                    Some("That token is not valid: unknown, revoked or expired."),
                ),
            );
        }
        Err(Ok(e)) => {
            return error_page(
                None,
                StatusCode::BAD_GATEWAY,
                &format!("the store could not be read: {e}"),
            );
        }
    }
    let id = match state.sessions.open(form.token.trim()) {
        Ok(id) => id,
        Err(e) => {
            return error_page(
                None,
                StatusCode::INTERNAL_SERVER_ERROR,
                &format!("no randomness for a session id: {e}"),
            );
        }
    };
    let secure = headers
        .get("x-forwarded-proto")
        .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"https"));
    let cookie = format!(
        "{COOKIE}={id}; Path=/; HttpOnly; SameSite=Strict; Max-Age={}{}",
        IDLE.as_secs(),
        if secure { "; Secure" } else { "" }
    );
    let mut res = Redirect::to(&local_path(next)).into_response();
    if let Ok(v) = HeaderValue::from_str(&cookie) {
        res.headers_mut().insert(header::SET_COOKIE, v);
    }
    res
}

pub(crate) async fn signout(S(state): S<State>, headers: HeaderMap) -> Response {
    if let Some(id) = cookie(&headers, COOKIE) {
        state.sessions.close(&id);
    }
    let mut res = Redirect::to("/signin").into_response();
    res.headers_mut().insert(
        header::SET_COOKIE,
        HeaderValue::from_static("ec2s_session=; Path=/; HttpOnly; SameSite=Strict; Max-Age=0"),
    );
    res
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_paths_of_this_site_are_gone_back_to() {
        assert_eq!(local_path(Some("/run/abc?x=1")), "/run/abc?x=1");
        for bad in ["//evil.example/", "https://evil.example/", "/\\evil", ""] {
            assert_eq!(local_path(Some(bad)), "/", "{bad}");
        }
        assert_eq!(local_path(None), "/");
    }

    #[test]
    fn a_form_is_from_this_site_when_its_origin_names_the_host() {
        let h = |pairs: &[(&'static str, &'static str)]| {
            let mut m = HeaderMap::new();
            for (k, v) in pairs {
                m.insert(*k, HeaderValue::from_static(v));
            }
            m
        };
        assert!(same_origin(&h(&[("host", "a.example")])));
        assert!(same_origin(&h(&[
            ("host", "a.example"),
            ("origin", "https://a.example")
        ])));
        assert!(same_origin(&h(&[
            ("host", "127.0.0.1:8080"),
            ("x-forwarded-host", "dash.example"),
            ("origin", "https://dash.example")
        ])));
        assert!(!same_origin(&h(&[
            ("host", "a.example"),
            ("origin", "https://b.example")
        ])));
        assert!(!same_origin(&h(&[
            ("host", "a.example"),
            ("origin", "null")
        ])));
        assert!(!same_origin(&h(&[("origin", "https://a.example")])));
    }

    #[test]
    fn a_cookie_is_found_among_others() {
        let mut h = HeaderMap::new();
        h.append(
            header::COOKIE,
            HeaderValue::from_static("a=1; ec2s_session=xyz"),
        );
        h.append(header::COOKIE, HeaderValue::from_static("b=2"));
        assert_eq!(cookie(&h, COOKIE).as_deref(), Some("xyz"));
        assert_eq!(cookie(&h, "c"), None);
    }

    #[test]
    fn sessions_open_are_found_and_closed() {
        let s = Sessions::default();
        let id = s.open("ec2s_x").unwrap();
        assert_eq!(id.len(), 64);
        assert_eq!(s.token(&id).as_deref(), Some("ec2s_x"));
        assert_ne!(s.open("ec2s_x").unwrap(), id);
        s.close(&id);
        assert_eq!(s.token(&id), None);
    }
}
