//! The dashboard over the router (no network, no browser): sessions, roles, the
//! security headers, escaping, and what each page shows. The browser tests
//! (`tests/browser`) drive the same pages in Chromium.

use std::path::PathBuf;
use std::sync::Arc;

use axum::body::Body;
use axum::http::{HeaderMap, Request, StatusCode, header};
use chrono::{DateTime, Utc};
use ec2_scheduler_api::{Limits, Spawn, State, app};
use ec2_scheduler_app::clouds::Clouds;
use ec2_scheduler_app::sim::read_fleet;
use ec2_scheduler_app::{App, CloudSpec, Speed};
use ec2_scheduler_core::access::Role;
use ec2_scheduler_engine::memory::MemoryStore;
use http_body_util::BodyExt;
use tower::ServiceExt;

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

struct Site {
    router: axum::Router,
    app: Arc<App>,
    tokens: Vec<(Role, String)>,
}

struct Answer {
    status: StatusCode,
    headers: HeaderMap,
    body: String,
}

impl Answer {
    fn location(&self) -> &str {
        self.headers
            .get(header::LOCATION)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
    }
}

impl Site {
    /// The seed example on a simulated fleet (with a hostile Name tag on one
    /// instance), with office hours in Berlin, its clock at `start`.
    async fn new(start: DateTime<Utc>) -> Site {
        let mut fleet = read_fleet(&repo().join("examples/seed/fleet-running.json")).unwrap();
        fleet[0]
            .tags
            .insert("Name".into(), "<script>alert(1)</script>".into());
        let app = Arc::new(App::new(
            Box::new(MemoryStore::new()),
            CloudSpec::SimMemory {
                instances: fleet,
                start,
                speed: Speed::Max,
            },
            "web-test".into(),
            Arc::default(),
        ));
        let text = std::fs::read_to_string(repo().join("examples/office-hours.yaml")).unwrap();
        app.put_workload_text("ExampleTestCase", "office-hours.yaml", &text)
            .await
            .unwrap();
        let mut tokens = Vec::new();
        for role in Role::ALL {
            let t = app
                .create_token(role.as_str(), role, None, "test", Utc::now())
                .await
                .unwrap();
            tokens.push((role, t.token));
        }
        let clouds = Arc::new(Clouds::new(&app).with_max_age(std::time::Duration::ZERO));
        let driver = Arc::new(Spawn {
            app: app.clone(),
            clouds: clouds.clone(),
        });
        Site {
            router: app_router(State::new(app.clone(), clouds, driver)),
            app,
            tokens,
        }
    }

    fn token(&self, role: Role) -> &str {
        &self.tokens.iter().find(|(r, _)| *r == role).unwrap().1
    }

    async fn send(&self, req: Request<Body>) -> Answer {
        let res = self.router.clone().oneshot(req).await.unwrap();
        let status = res.status();
        let headers = res.headers().clone();
        let bytes = res.into_body().collect().await.unwrap().to_bytes();
        Answer {
            status,
            headers,
            body: String::from_utf8_lossy(&bytes).into_owned(),
        }
    }

    async fn get(&self, uri: &str, cookie: Option<&str>) -> Answer {
        let mut req = Request::builder().uri(uri);
        if let Some(c) = cookie {
            req = req.header(header::COOKIE, c);
        }
        self.send(req.body(Body::empty()).unwrap()).await
    }

    async fn post(
        &self,
        uri: &str,
        cookie: Option<&str>,
        form: &str,
        origin: Option<&str>,
    ) -> Answer {
        let mut req = Request::builder()
            .method("POST")
            .uri(uri)
            .header(header::HOST, "dash.example")
            .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded");
        if let Some(c) = cookie {
            req = req.header(header::COOKIE, c);
        }
        if let Some(o) = origin {
            req = req.header(header::ORIGIN, o);
        }
        self.send(req.body(Body::from(form.to_string())).unwrap())
            .await
    }

    /// Signs in with `token`; the `Cookie` header value of the session.
    async fn sign_in(&self, token: &str) -> String {
        let a = self
            .post("/signin", None, &format!("token={token}&next=/"), None)
            .await;
        assert_eq!(a.status, StatusCode::SEE_OTHER, "{}", a.body);
        let set = a.headers.get(header::SET_COOKIE).unwrap().to_str().unwrap();
        set.split(';').next().unwrap().to_string()
    }
}

fn app_router(state: State) -> axum::Router {
    app(state, &Limits::default())
}

fn at(s: &str) -> DateTime<Utc> {
    s.parse().unwrap()
}

#[tokio::test]
async fn signing_in_sets_a_strict_http_only_cookie_and_a_bad_token_is_refused() {
    let site = Site::new(at("2026-12-23T10:00:00Z")).await;
    let bad = site
        .post("/signin", None, "token=ec2s_000000000000_00&next=/", None)
        .await;
    assert_eq!(bad.status, StatusCode::UNAUTHORIZED);
    assert!(bad.body.contains("not valid"), "{}", bad.body);
    assert!(bad.headers.get(header::SET_COOKIE).is_none());
    assert!(
        bad.headers
            .get(header::CONTENT_TYPE)
            .unwrap()
            .to_str()
            .unwrap()
            .starts_with("text/html")
    );

    let good = site
        .post(
            "/signin",
            None,
            &format!("token={}&next=/schedule", site.token(Role::Viewer)),
            None,
        )
        .await;
    assert_eq!(good.status, StatusCode::SEE_OTHER);
    assert_eq!(good.location(), "/schedule");
    let cookie = good
        .headers
        .get(header::SET_COOKIE)
        .unwrap()
        .to_str()
        .unwrap();
    for part in ["ec2s_session=", "HttpOnly", "SameSite=Strict", "Path=/"] {
        assert!(cookie.contains(part), "{cookie}");
    }
    // Another site's sign-in form does not sign the browser in.
    let forged = site
        .post(
            "/signin",
            None,
            &format!("token={}&next=/", site.token(Role::Viewer)),
            Some("https://evil.example"),
        )
        .await;
    assert_eq!(forged.status, StatusCode::FORBIDDEN);
    assert!(forged.headers.get(header::SET_COOKIE).is_none());
    // Somewhere else is never where sign-in goes back to.
    let away = site
        .post(
            "/signin",
            None,
            &format!("token={}&next=//evil.example/", site.token(Role::Viewer)),
            None,
        )
        .await;
    assert_eq!(away.location(), "/");
}

#[tokio::test]
async fn pages_without_a_session_send_to_sign_in_and_sign_out_ends_it() {
    let site = Site::new(at("2026-12-23T10:00:00Z")).await;
    for (path, next) in [
        ("/", "/"),
        ("/workload/ExampleTestCase", "/workload/ExampleTestCase"),
        ("/schedule?tz=UTC", "/schedule%3Ftz%3DUTC"),
    ] {
        let a = site.get(path, None).await;
        assert_eq!(a.status, StatusCode::SEE_OTHER, "{path}");
        assert_eq!(a.location(), format!("/signin?next={next}"));
        let forged = site.get(path, Some("ec2s_session=0123")).await;
        assert_eq!(forged.status, StatusCode::SEE_OTHER, "{path}");
    }
    let cookie = site.sign_in(site.token(Role::Viewer)).await;
    assert_eq!(site.get("/", Some(&cookie)).await.status, StatusCode::OK);
    let out = site.post("/signout", Some(&cookie), "", None).await;
    assert_eq!(out.status, StatusCode::SEE_OTHER);
    assert!(
        out.headers
            .get(header::SET_COOKIE)
            .unwrap()
            .to_str()
            .unwrap()
            .contains("Max-Age=0")
    );
    assert_eq!(
        site.get("/", Some(&cookie)).await.status,
        StatusCode::SEE_OTHER
    );
}

#[tokio::test]
async fn a_revoked_token_ends_its_sessions_at_once() {
    let site = Site::new(at("2026-12-23T10:00:00Z")).await;
    let cookie = site.sign_in(site.token(Role::Operator)).await;
    assert_eq!(site.get("/", Some(&cookie)).await.status, StatusCode::OK);
    let id = site
        .app
        .tokens()
        .await
        .unwrap()
        .into_iter()
        .find(|t| t.role == Role::Operator)
        .unwrap()
        .id;
    site.app.revoke_token(&id, Utc::now()).await.unwrap();
    let a = site.get("/", Some(&cookie)).await;
    assert_eq!(a.status, StatusCode::SEE_OTHER);
    assert!(a.location().starts_with("/signin"));
}

/// Markup a `default-src 'self'` policy would block, or that runs script.
fn inline_script_or_style(body: &str) -> Option<String> {
    let lower = body.to_lowercase();
    for (i, _) in lower.match_indices("<script") {
        let tag = &lower[i..lower[i..].find('>').map_or(lower.len(), |e| i + e)];
        if !tag.contains(" src=") {
            return Some(tag.to_string());
        }
    }
    for bad in [
        " style=",
        " onclick=",
        " onload=",
        " onerror=",
        "javascript:",
        "<style",
    ] {
        if lower.contains(bad) {
            return Some(bad.to_string());
        }
    }
    None
}

#[tokio::test]
async fn every_page_answers_each_role_under_a_strict_policy_and_only_operators_see_actions() {
    let site = Site::new(at("2026-12-23T10:00:00Z")).await;
    let run = {
        let op = site.sign_in(site.token(Role::Operator)).await;
        let a = site
            .post(
                "/workload/ExampleTestCase/run",
                Some(&op),
                "action=stop&key=k1",
                None,
            )
            .await;
        assert_eq!(a.status, StatusCode::SEE_OTHER, "{}", a.body);
        a.location().to_string()
    };
    let pages = [
        "/",
        "/?q=example&state=running",
        "/workload/ExampleTestCase",
        "/workload/ExampleTestCase/plan?action=start&profile=profileD",
        "/schedule",
        "/schedule?tz=America/New_York&week=1",
        "/savings",
        run.as_str(),
    ];
    for role in Role::ALL {
        let cookie = site.sign_in(site.token(role)).await;
        for path in pages {
            let a = site.get(path, Some(&cookie)).await;
            assert_eq!(a.status, StatusCode::OK, "{role} {path}: {}", a.body);
            let csp = a
                .headers
                .get(header::CONTENT_SECURITY_POLICY)
                .unwrap()
                .to_str()
                .unwrap();
            assert!(csp.starts_with("default-src 'self'"), "{csp}");
            assert_eq!(a.headers.get(header::CACHE_CONTROL).unwrap(), "no-store");
            assert_eq!(inline_script_or_style(&a.body), None, "{role} {path}");
            assert!(a.body.contains("<main id=\"main\""), "{path}");
            let actions = [
                "id=\"start\"",
                "id=\"stop\"",
                "id=\"dry-start\"",
                "id=\"confirm\"",
            ];
            let shown = actions.iter().any(|b| a.body.contains(b));
            if path == "/workload/ExampleTestCase" {
                assert_eq!(shown, role != Role::Viewer, "{role} {path}");
            } else {
                assert!(!(role == Role::Viewer && shown), "{role} {path}");
            }
        }
    }
    // Assets are served with their types.
    for (path, ty) in [
        ("/assets/app.js", "text/javascript"),
        ("/assets/app.css", "text/css"),
    ] {
        let a = site.get(path, None).await;
        assert_eq!(a.status, StatusCode::OK);
        assert!(
            a.headers
                .get(header::CONTENT_TYPE)
                .unwrap()
                .to_str()
                .unwrap()
                .starts_with(ty)
        );
    }
}

#[tokio::test]
async fn text_from_the_cloud_and_the_store_is_escaped() {
    let site = Site::new(at("2026-12-23T10:00:00Z")).await;
    let cookie = site.sign_in(site.token(Role::Viewer)).await;
    let a = site.get("/workload/ExampleTestCase", Some(&cookie)).await;
    assert!(
        a.body.contains("&lt;script&gt;alert(1)&lt;/script&gt;"),
        "{}",
        a.body
    );
    assert!(!a.body.contains("<script>alert"));
    let missing = site.get("/workload/%3Cb%3Enope", Some(&cookie)).await;
    assert_eq!(missing.status, StatusCode::NOT_FOUND);
    assert!(!missing.body.contains("<b>nope"), "{}", missing.body);
    assert!(
        missing
            .headers
            .get(header::CONTENT_TYPE)
            .unwrap()
            .to_str()
            .unwrap()
            .starts_with("text/html")
    );
}

#[tokio::test]
async fn operators_begin_runs_once_per_form_and_viewers_and_other_sites_are_refused() {
    let site = Site::new(at("2026-12-23T10:00:00Z")).await;
    let viewer = site.sign_in(site.token(Role::Viewer)).await;
    let refused = site
        .post(
            "/workload/ExampleTestCase/run",
            Some(&viewer),
            "action=stop",
            None,
        )
        .await;
    assert_eq!(refused.status, StatusCode::FORBIDDEN);
    assert!(site.app.runs(None).await.unwrap().is_empty());

    let op = site.sign_in(site.token(Role::Operator)).await;
    let elsewhere = site
        .post(
            "/workload/ExampleTestCase/run",
            Some(&op),
            "action=stop",
            Some("https://evil.example"),
        )
        .await;
    assert_eq!(elsewhere.status, StatusCode::FORBIDDEN);
    assert!(site.app.runs(None).await.unwrap().is_empty());

    let first = site
        .post(
            "/workload/ExampleTestCase/run",
            Some(&op),
            "action=stop&key=form-1",
            Some("http://dash.example"),
        )
        .await;
    assert_eq!(first.status, StatusCode::SEE_OTHER, "{}", first.body);
    assert!(first.location().starts_with("/run/run-"));
    // The same form sent again is the same run.
    let again = site
        .post(
            "/workload/ExampleTestCase/run",
            Some(&op),
            "action=stop&key=form-1",
            None,
        )
        .await;
    assert_eq!(again.location(), first.location());
    let id = first.location().trim_start_matches("/run/").to_string();
    let run = site.app.run_record(&id).await.unwrap();
    assert_eq!(run.requested_by.as_deref(), Some("token:operator"));
    // Another form while it is unfinished is refused with a link to it; once it is
    // finished, the run page shows it succeeded with its steps as bars.
    let mut done = false;
    for _ in 0..500 {
        let live = site.get(&format!("/run/{id}/live"), Some(&op)).await;
        assert_eq!(live.status, StatusCode::OK);
        if live.body.contains("data-finished=\"true\"") {
            assert!(live.body.contains("succeeded"), "{}", live.body);
            for step in ["deregister", "stop", "wait"] {
                assert!(
                    live.body.contains(&format!("data-step=\"{step}\"")),
                    "{step}: {}",
                    live.body
                );
            }
            for tier in ["Role_Web", "Role_App", "Role_DB"] {
                assert!(live.body.contains(&format!(">{tier}</text>")), "{tier}");
            }
            assert!(!live.body.contains("id=\"cancel\""));
            done = true;
            break;
        }
        let busy = site
            .post(
                "/workload/ExampleTestCase/run",
                Some(&op),
                "action=start",
                None,
            )
            .await;
        assert_eq!(busy.status, StatusCode::CONFLICT, "{}", busy.body);
        assert!(busy.body.contains(&format!("/run/{id}")));
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert!(done, "the run did not finish");
    let unknown = site
        .post(
            "/workload/ExampleTestCase/run",
            Some(&op),
            "action=reboot",
            None,
        )
        .await;
    assert_eq!(unknown.status, StatusCode::BAD_REQUEST, "{}", unknown.body);
}

#[tokio::test]
async fn the_week_marks_holidays_in_the_schedules_zone_or_the_one_asked_for() {
    let site = Site::new(at("2026-12-23T10:00:00Z")).await;
    let cookie = site.sign_in(site.token(Role::Viewer)).await;
    let a = site.get("/schedule", Some(&cookie)).await;
    assert_eq!(a.status, StatusCode::OK);
    // Monday 21 to Sunday 27 December: the 24th (a skip date), the 25th and the
    // 26th (the calendar's).
    assert_eq!(a.body.matches("class=\"holiday\"").count(), 3, "{}", a.body);
    for day in [
        "Thu 24 Dec",
        "Fri 25 Dec Christmas Day (de-holidays)",
        "Sat 26 Dec Boxing Day",
    ] {
        assert!(a.body.contains(day), "{day}");
    }
    assert!(a.body.contains("in Europe/Berlin"));
    // Events kept from firing are listed as such.
    assert!(a.body.contains("start kept from firing"), "{}", a.body);
    let ny = site
        .get("/schedule?tz=America/New_York", Some(&cookie))
        .await;
    assert!(
        ny.body
            .contains("in America/New_York (schedule: Europe/Berlin)")
    );
    let bad = site.get("/schedule?tz=Mars/Olympus", Some(&cookie)).await;
    assert_eq!(bad.status, StatusCode::BAD_REQUEST);
    assert!(bad.body.contains("Mars/Olympus"));
}
