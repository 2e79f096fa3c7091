//! Every route for every role, over the router (no network): 401 without a valid
//! token, 403 for a role below the route's, success for the roles it allows.

use std::path::PathBuf;
use std::sync::Arc;

use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use chrono::Utc;
use ec2_scheduler_api::{Limits, Spawn, State, app};
use ec2_scheduler_app::clouds::Clouds;
use ec2_scheduler_app::sim::read_fleet;
use ec2_scheduler_app::{App, CloudSpec, Speed};
use ec2_scheduler_core::access::Role;
use ec2_scheduler_engine::memory::MemoryStore;
use http_body_util::BodyExt;
use serde_json::{Value, json};
use tower::ServiceExt;

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

struct Api {
    router: axum::Router,
    app: Arc<App>,
    tokens: Vec<(Role, String)>,
}

impl Api {
    async fn new() -> Api {
        let app = Arc::new(App::new(
            Box::new(MemoryStore::new()),
            CloudSpec::SimMemory {
                instances: read_fleet(&repo().join("examples/seed/fleet-running.json")).unwrap(),
                start: ec2_scheduler_sim::epoch(),
                speed: Speed::Max,
            },
            "api-test".into(),
            Arc::default(),
        ));
        let text = std::fs::read_to_string(repo().join("examples/seed/example.json")).unwrap();
        app.put_workload_text("ExampleTestCase", "example.json", &text)
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
        Api {
            router: Api::router(&app),
            app,
            tokens,
        }
    }

    /// A router over `app`, as each process (or Lambda instance) sharing the store
    /// makes its own. Reads observe every time, so that each sees the last change.
    fn router(app: &Arc<App>) -> axum::Router {
        let clouds = Arc::new(Clouds::new(app).with_max_age(std::time::Duration::ZERO));
        let driver = Arc::new(Spawn {
            app: app.clone(),
            clouds: clouds.clone(),
        });
        app_router(State::new(app.clone(), clouds, driver))
    }

    fn token(&self, role: Role) -> &str {
        &self.tokens.iter().find(|(r, _)| *r == role).unwrap().1
    }

    async fn call(
        &self,
        method: &str,
        uri: &str,
        token: Option<&str>,
        body: Option<&str>,
    ) -> (StatusCode, axum::http::HeaderMap, Value) {
        let mut req = Request::builder().method(method).uri(uri);
        if let Some(t) = token {
            req = req.header(header::AUTHORIZATION, format!("Bearer {t}"));
        }
        let req = match body {
            Some(b) => req
                .header(header::CONTENT_TYPE, "application/json")
                .body(Body::from(b.to_string())),
            None => req.body(Body::empty()),
        }
        .unwrap();
        let res = self.router.clone().oneshot(req).await.unwrap();
        let status = res.status();
        let headers = res.headers().clone();
        let bytes = res.into_body().collect().await.unwrap().to_bytes();
        let v = serde_json::from_slice(&bytes)
            .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into()));
        (status, headers, v)
    }
}

fn app_router(state: State) -> axum::Router {
    app(state, &Limits::default())
}

/// (method, path, body, least role, status for that role).
fn routes(
    run_id: &str,
    override_id: &str,
) -> Vec<(&'static str, String, Option<String>, Role, u16)> {
    let seed = std::fs::read_to_string(repo().join("examples/seed/example.json")).unwrap();
    vec![
        ("GET", "/v1/workloads".into(), None, Role::Viewer, 200),
        (
            "GET",
            "/v1/workloads/ExampleTestCase".into(),
            None,
            Role::Viewer,
            200,
        ),
        (
            "GET",
            "/v1/workloads/ExampleTestCase/status".into(),
            None,
            Role::Viewer,
            200,
        ),
        (
            "GET",
            "/v1/workloads/ExampleTestCase/plan?action=stop".into(),
            None,
            Role::Viewer,
            200,
        ),
        (
            "GET",
            "/v1/workloads/ExampleTestCase/overrides".into(),
            None,
            Role::Viewer,
            200,
        ),
        (
            "GET",
            "/v1/workloads/ExampleTestCase/schedule/next".into(),
            None,
            Role::Viewer,
            200,
        ),
        (
            "GET",
            "/v1/workloads/ExampleTestCase/savings".into(),
            None,
            Role::Viewer,
            200,
        ),
        ("GET", "/v1/runs".into(), None, Role::Viewer, 200),
        ("GET", format!("/v1/runs/{run_id}"), None, Role::Viewer, 200),
        ("GET", "/v1/exemptions".into(), None, Role::Viewer, 200),
        ("GET", "/workloads".into(), None, Role::Viewer, 200),
        (
            "GET",
            "/workloads/ExampleTestCase".into(),
            None,
            Role::Viewer,
            200,
        ),
        (
            "POST",
            "/v1/workloads/ExampleTestCase/runs".into(),
            Some(r#"{"action":"stop","dry_run":true}"#.into()),
            Role::Operator,
            200,
        ),
        (
            "GET",
            "/workloads/ExampleTestCase?action=Stop&dryRun".into(),
            None,
            Role::Operator,
            200,
        ),
        (
            "POST",
            "/workloads/ExampleTestCase?action=Stop&dryRun".into(),
            None,
            Role::Operator,
            200,
        ),
        (
            "POST",
            format!("/v1/runs/{run_id}/cancel"),
            None,
            Role::Operator,
            409,
        ),
        (
            "POST",
            "/v1/exemptions".into(),
            Some(r#"{"instance":"i-0web0000","reason":"debugging"}"#.into()),
            Role::Operator,
            201,
        ),
        (
            "DELETE",
            "/v1/exemptions/i-0web0000".into(),
            None,
            Role::Operator,
            204,
        ),
        (
            "POST",
            "/v1/workloads/ExampleTestCase/overrides".into(),
            Some(r#"{"skip_next":"stop"}"#.into()),
            Role::Operator,
            400,
        ),
        (
            "DELETE",
            format!("/v1/overrides/{override_id}"),
            None,
            Role::Operator,
            404,
        ),
        (
            "PUT",
            "/v1/workloads/ExampleTestCase".into(),
            Some(seed),
            Role::Admin,
            200,
        ),
        ("GET", "/v1/tokens".into(), None, Role::Admin, 200),
        (
            "POST",
            "/v1/tokens".into(),
            Some(r#"{"name":"ci","role":"viewer"}"#.into()),
            Role::Admin,
            201,
        ),
        (
            "DELETE",
            "/v1/tokens/000000000000".into(),
            None,
            Role::Admin,
            404,
        ),
        (
            "DELETE",
            "/v1/workloads/Nope".into(),
            None,
            Role::Admin,
            404,
        ),
    ]
}

#[tokio::test]
async fn every_route_refuses_without_a_token_and_below_its_role() {
    let api = Api::new().await;
    // A finished run to read and (not) cancel.
    let (s, h, v) = api
        .call(
            "POST",
            "/v1/workloads/ExampleTestCase/runs",
            Some(api.token(Role::Operator)),
            Some(r#"{"action":"stop"}"#),
        )
        .await;
    assert_eq!(s, StatusCode::ACCEPTED, "{v}");
    let run_id = v["run_id"].as_str().unwrap().to_string();
    assert_eq!(h[header::LOCATION], format!("/v1/runs/{run_id}"));
    wait_for(&api, &run_id, "succeeded").await;

    for (method, path, body, least, want) in routes(&run_id, "ovr-none") {
        let (s, _, v) = api.call(method, &path, None, body.as_deref()).await;
        assert_eq!(
            s,
            StatusCode::UNAUTHORIZED,
            "{method} {path} without a token: {v}"
        );
        assert_eq!(v["type"], "urn:ec2-scheduler:problem:unauthenticated");
        let (s, _, _) = api
            .call(
                method,
                &path,
                Some("ec2s_000000000000_0000"),
                body.as_deref(),
            )
            .await;
        assert_eq!(
            s,
            StatusCode::UNAUTHORIZED,
            "{method} {path} with a bad token"
        );
        for role in Role::ALL {
            let (s, _, v) = api
                .call(method, &path, Some(api.token(role)), body.as_deref())
                .await;
            if role == least {
                assert_eq!(s.as_u16(), want, "{method} {path} as {role}: {v}");
            } else if role.allows(least) {
                // What the role before changed may answer otherwise now.
                assert!(
                    !matches!(s.as_u16(), 401 | 403 | 500..),
                    "{method} {path} as {role}: {s} {v}"
                );
            } else {
                assert_eq!(s, StatusCode::FORBIDDEN, "{method} {path} as {role}: {v}");
                assert_eq!(v["type"], "urn:ec2-scheduler:problem:forbidden");
            }
        }
    }
    // Open routes.
    for path in ["/healthz", "/readyz", "/metrics", "/openapi.json"] {
        let (s, _, _) = api.call("GET", path, None, None).await;
        assert_eq!(s, StatusCode::OK, "{path}");
    }
    let (_, _, metrics) = api.call("GET", "/metrics", None, None).await;
    let text = metrics.as_str().unwrap();
    assert!(text.contains("ec2s_runs{status=\"succeeded\"} 1"), "{text}");
    assert!(
        text.contains("route=\"/v1/workloads\",status=\"200\""),
        "{text}"
    );
}

async fn wait_for(api: &Api, run_id: &str, status: &str) -> Value {
    let mut last = Value::Null;
    for _ in 0..500 {
        let (_, _, v) = api
            .call(
                "GET",
                &format!("/v1/runs/{run_id}"),
                Some(api.token(Role::Viewer)),
                None,
            )
            .await;
        if v["status"] == status {
            return v;
        }
        last = v;
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    panic!("run {run_id} did not reach {status}: {last}");
}

#[tokio::test]
async fn a_start_with_a_profile_runs_to_success_and_is_listed() {
    let api = Api::new().await;
    let op = api.token(Role::Operator).to_string();
    let body = r#"{"action":"stop"}"#;
    let (s, _, v) = api
        .call(
            "POST",
            "/v1/workloads/ExampleTestCase/runs",
            Some(&op),
            Some(body),
        )
        .await;
    assert_eq!(s, StatusCode::ACCEPTED, "{v}");
    let stop = v["run_id"].as_str().unwrap().to_string();
    // A second run while the first holds the workload: 409 naming it.
    let (s, _, v) = api
        .call(
            "POST",
            "/v1/workloads/ExampleTestCase/runs",
            Some(&op),
            Some(r#"{"action":"start"}"#),
        )
        .await;
    if s == StatusCode::CONFLICT {
        assert_eq!(v["type"], "urn:ec2-scheduler:problem:locked");
        assert_eq!(v["run_id"], stop.as_str());
    } else {
        // The stop already ended (the simulator runs at full speed).
        assert!(s == StatusCode::ACCEPTED || s == StatusCode::OK, "{s} {v}");
    }
    wait_for(&api, &stop, "succeeded").await;
    let start = r#"{"action":"start","profile":"profileD"}"#;
    let post_body = |key: &'static str, body: &'static str, router: axum::Router| {
        let op = op.clone();
        async move {
            let mut req = Request::builder()
                .method("POST")
                .uri("/v1/workloads/ExampleTestCase/runs")
                .header(header::AUTHORIZATION, format!("Bearer {op}"))
                .header(header::CONTENT_TYPE, "application/json");
            req = req.header("Idempotency-Key", key);
            let res = router
                .oneshot(req.body(Body::from(body)).unwrap())
                .await
                .unwrap();
            let status = res.status();
            let bytes = res.into_body().collect().await.unwrap().to_bytes();
            (status, serde_json::from_slice::<Value>(&bytes).unwrap())
        }
    };
    let post = |key: &'static str, router: axum::Router| post_body(key, start, router);
    let (s, v) = post("k-1", api.router.clone()).await;
    assert_eq!(s, StatusCode::ACCEPTED, "{v}");
    assert_eq!(v["repeated"], false);
    let id = v["run_id"].as_str().unwrap().to_string();
    // The same key answers the same run.
    let (s, again) = post("k-1", api.router.clone()).await;
    assert_eq!(
        (s, again["run_id"].as_str(), &again["repeated"]),
        (StatusCode::ACCEPTED, Some(id.as_str()), &Value::Bool(true))
    );
    let run = wait_for(&api, &id, "succeeded").await;
    assert_eq!(run["profile"], "profileD");
    // After the run ended, and in another process sharing the store, the key still
    // names that run: nothing begins again.
    let (s, later) = post("k-1", Api::router(&api.app)).await;
    assert_eq!(
        (s, later["run_id"].as_str(), &later["repeated"]),
        (StatusCode::ACCEPTED, Some(id.as_str()), &Value::Bool(true))
    );
    // The answer says what became of the run, not that it runs.
    assert_eq!(later["status"], "succeeded", "{later}");
    // The same key with another request is refused, naming the run it began: an
    // operator who reuses a key by mistake does not get a run that did something
    // else answered as theirs.
    for other in [
        r#"{"action":"stop"}"#,
        r#"{"action":"start"}"#,
        r#"{"action":"start","profile":"profileD","scale_in":true}"#,
    ] {
        let (s, v) = post_body("k-1", other, api.router.clone()).await;
        assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{other}: {v}");
        assert_eq!(v["type"], "urn:ec2-scheduler:problem:unprocessable", "{v}");
        assert_eq!(v["run_id"], id.as_str(), "{v}");
        assert!(v["detail"].as_str().unwrap().contains("k-1"), "{v}");
    }
    // A key that is not printable ASCII is refused, naming the header.
    let (s, bad) = post("k 1", api.router.clone()).await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{bad}");
    assert!(
        bad["detail"].as_str().unwrap().contains("Idempotency-Key"),
        "{bad}"
    );
    let (_, _, list) = api
        .call(
            "GET",
            "/v1/runs?workload=ExampleTestCase&limit=1",
            Some(&op),
            None,
        )
        .await;
    assert_eq!(list["runs"][0]["id"], id.as_str(), "{list}");
    let cursor = list["next_cursor"].as_str().unwrap();
    let (_, _, next) = api
        .call(
            "GET",
            &format!("/v1/runs?workload=ExampleTestCase&limit=5&cursor={cursor}"),
            Some(&op),
            None,
        )
        .await;
    assert_eq!(next["runs"][0]["id"], stop.as_str(), "{next}");
    assert_eq!(next["next_cursor"], Value::Null);
    // Status shows the tiers running, resized.
    let (_, _, status) = api
        .call(
            "GET",
            "/v1/workloads/ExampleTestCase/status",
            Some(&op),
            None,
        )
        .await;
    let running: u64 = status["counts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["running"].as_u64().unwrap())
        .sum();
    assert_eq!(running, 9, "{status}");
    drop(api.app.clone());
}

#[tokio::test]
async fn workloads_are_replaced_only_if_unchanged_and_bad_documents_name_their_fields() {
    let api = Api::new().await;
    let admin = api.token(Role::Admin).to_string();
    let (_, h, _) = api
        .call("GET", "/v1/workloads/ExampleTestCase", Some(&admin), None)
        .await;
    let tag = h[header::ETAG].to_str().unwrap().to_string();
    let seed = std::fs::read_to_string(repo().join("examples/seed/example.json")).unwrap();
    let put = |if_match: Option<String>, body: String, name: &'static str| {
        let api = &api;
        let admin = admin.clone();
        async move {
            let mut req = Request::builder()
                .method("PUT")
                .uri(format!("/v1/workloads/{name}"))
                .header(header::AUTHORIZATION, format!("Bearer {admin}"));
            if let Some(m) = if_match {
                req = req.header(header::IF_MATCH, m);
            }
            let res = api
                .router
                .clone()
                .oneshot(req.body(Body::from(body)).unwrap())
                .await
                .unwrap();
            let status = res.status();
            let bytes = res.into_body().collect().await.unwrap().to_bytes();
            (
                status,
                serde_json::from_slice::<Value>(&bytes).unwrap_or(Value::Null),
            )
        }
    };
    let (s, _) = put(Some(tag.clone()), seed.clone(), "ExampleTestCase").await;
    assert_eq!(s, StatusCode::OK);
    let (s, v) = put(Some("\"stale\"".into()), seed.clone(), "ExampleTestCase").await;
    assert_eq!(s, StatusCode::PRECONDITION_FAILED, "{v}");
    assert_eq!(v["type"], "urn:ec2-scheduler:problem:precondition-failed");
    // A document for another name, and a broken one.
    let (s, v) = put(None, seed.clone(), "Other").await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{v}");
    let broken = seed.replacen("\"TierSequence\"", "\"TierSequenc\"", 1);
    let (s, v) = put(None, broken.clone(), "ExampleTestCase").await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{v}");
    assert!(!v["errors"].as_array().unwrap().is_empty(), "{v}");
    // Create, then delete.
    let yaml = std::fs::read_to_string(repo().join("examples/office-hours.yaml")).unwrap();
    let name = "ExampleTestCase";
    let (s, _, _) = api
        .call(
            "DELETE",
            &format!("/v1/workloads/{name}"),
            Some(&admin),
            None,
        )
        .await;
    assert_eq!(s, StatusCode::NO_CONTENT);
    let (s, v) = put(None, yaml, "ExampleTestCase").await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    let _ = json!(null);
}

/// The committed OpenAPI document is the one the code generates; regenerate it with
/// `ec2-scheduler openapi > docs/openapi.json`.
#[test]
fn the_committed_openapi_document_is_the_generated_one() {
    let committed = std::fs::read_to_string(repo().join("docs/openapi.json")).unwrap();
    let generated = ec2_scheduler_api::openapi_json();
    assert!(
        committed == generated,
        "docs/openapi.json is out of date: run `ec2-scheduler openapi > docs/openapi.json`"
    );
    let v: Value = serde_json::from_str(&generated).unwrap();
    assert_eq!(v["openapi"], "3.1.0");
    assert!(v["paths"]["/v1/workloads/{workload}/runs"]["post"].is_object());
}

/// Behind API Gateway with IAM authorization the caller's ARN (put on the request by
/// the Lambda adapter, never read from a header) maps to a role by the table.
#[tokio::test]
async fn an_iam_caller_gets_the_role_the_principals_table_gives() {
    let mut api = Api::new().await;
    let clouds = Arc::new(Clouds::new(&api.app));
    let driver = Arc::new(Spawn {
        app: api.app.clone(),
        clouds: clouds.clone(),
    });
    let mut state = State::new(api.app.clone(), clouds, driver);
    state.principals = Arc::new(
        ec2_scheduler_api::Principals::from_json(
            r#"{"principals": [
                {"arn": "arn:aws:iam::111122223333:role/Platform", "role": "operator"},
                {"arn": "arn:aws:iam::111122223333:user/*", "role": "viewer"}
            ]}"#,
        )
        .unwrap(),
    );
    api.router = app_router(state);
    let call = |arn: &'static str, method: &'static str, uri: &'static str, body: &'static str| {
        let router = api.router.clone();
        async move {
            let mut req = Request::builder()
                .method(method)
                .uri(uri)
                .header(header::CONTENT_TYPE, "application/json")
                .body(Body::from(body))
                .unwrap();
            req.extensions_mut()
                .insert(ec2_scheduler_api::IamCaller(arn.to_string()));
            router.oneshot(req).await.unwrap().status()
        }
    };
    let session = "arn:aws:sts::111122223333:assumed-role/Platform/alice";
    let plan = r#"{"action":"stop","dry_run":true}"#;
    let runs = "/v1/workloads/ExampleTestCase/runs";
    assert_eq!(call(session, "POST", runs, plan).await, StatusCode::OK);
    let user = "arn:aws:iam::111122223333:user/bob";
    assert_eq!(call(user, "GET", "/v1/runs", "").await, StatusCode::OK);
    assert_eq!(call(user, "POST", runs, plan).await, StatusCode::FORBIDDEN);
    let other = "arn:aws:iam::999999999999:user/eve";
    assert_eq!(
        call(other, "GET", "/v1/runs", "").await,
        StatusCode::FORBIDDEN
    );
    // A header cannot claim an identity: without a token it is 401.
    let (s, _, _) = api.call("GET", "/v1/runs", None, None).await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    // Exemptions record who asked: the IAM session, or the token's name.
    let body = r#"{"instance":"i-0web0001","reason":"debugging"}"#;
    assert_eq!(
        call(session, "POST", "/v1/exemptions", body).await,
        StatusCode::CREATED
    );
    let op = api.token(Role::Operator).to_string();
    let body = r#"{"instance":"i-0app0000","reason":"load test"}"#;
    let (s, _, added) = api
        .call("POST", "/v1/exemptions", Some(&op), Some(body))
        .await;
    assert_eq!(s, StatusCode::CREATED, "{added}");
    let mut by: Vec<_> = api
        .app
        .exemptions()
        .await
        .unwrap()
        .into_iter()
        .map(|e| (e.instance_id, e.reason, e.created_by))
        .collect();
    by.sort();
    assert_eq!(
        by,
        vec![
            (
                "i-0app0000".into(),
                "load test".into(),
                Some("token:operator".into())
            ),
            (
                "i-0web0001".into(),
                "debugging".into(),
                Some(session.into())
            ),
        ]
    );
}

#[tokio::test]
async fn busy_reads_are_answered_once_a_second_and_a_change_is_read_at_once() {
    let mut api = Api::new().await;
    // A process that keeps observations and answers for an hour: nothing expires
    // during the test.
    let clouds = Arc::new(Clouds::new(&api.app).with_max_age(std::time::Duration::from_secs(3600)));
    let driver = Arc::new(Spawn {
        app: api.app.clone(),
        clouds: clouds.clone(),
    });
    api.router = app_router(State::new(api.app.clone(), clouds.clone(), driver));
    let w = api.app.stored_workload("ExampleTestCase").await.unwrap();
    let cloud = clouds.get(&api.app, &w).await.unwrap();
    let describes = || cloud.sim().unwrap().region.calls("ec2:DescribeInstances");
    let viewer = api.token(Role::Viewer).to_string();
    let status = "/v1/workloads/ExampleTestCase/status";
    let exempt = |v: &Value| -> u64 {
        v["counts"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| t["exempt"].as_u64().unwrap())
            .sum()
    };
    let before = describes();
    let (_, _, first) = api.call("GET", status, Some(&viewer), None).await;
    let (_, _, list) = api.call("GET", "/v1/workloads", Some(&viewer), None).await;
    for _ in 0..5 {
        let (s, _, again) = api.call("GET", status, Some(&viewer), None).await;
        assert_eq!((s, &again), (StatusCode::OK, &first));
        let (_, _, l) = api.call("GET", "/v1/workloads", Some(&viewer), None).await;
        assert_eq!(l, list);
    }
    // One observation, made for the status, serves the list too; the rest are kept
    // answers.
    assert_eq!(describes() - before, 1);
    assert_eq!(exempt(&first), 0);
    // A change made elsewhere (another process sharing the store) shows once the
    // kept answer expires: not yet.
    api.app
        .exempt("i-0web0001", None, "elsewhere", "cli", chrono::Utc::now())
        .await
        .unwrap();
    let (_, _, kept) = api.call("GET", status, Some(&viewer), None).await;
    assert_eq!(kept, first);
    // A change through the API is read at once (both show).
    let op = api.token(Role::Operator).to_string();
    let (s, _, _) = api
        .call(
            "POST",
            "/v1/exemptions",
            Some(&op),
            Some(r#"{"instance":"i-0web0000","reason":"debugging"}"#),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED);
    let (_, _, after) = api.call("GET", status, Some(&viewer), None).await;
    assert_eq!(exempt(&after), 2, "{after}");
    // A name that does not exist is answered (404) every time, and kept nowhere.
    for _ in 0..2 {
        let (s, _, _) = api
            .call("GET", "/v1/workloads/Nope/status", Some(&viewer), None)
            .await;
        assert_eq!(s, StatusCode::NOT_FOUND);
    }
}

#[tokio::test]
async fn token_listings_and_answers_never_show_a_hash() {
    let api = Api::new().await;
    let admin = api.token(Role::Admin).to_string();
    let (s, _, made) = api
        .call(
            "POST",
            "/v1/tokens",
            Some(&admin),
            Some(r#"{"name":"ci","role":"viewer"}"#),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{made}");
    assert!(
        made["token"]
            .as_str()
            .is_some_and(|t| t.starts_with("ec2s_"))
    );
    let id = made["id"].as_str().unwrap().to_string();
    let (s, _, list) = api.call("GET", "/v1/tokens", Some(&admin), None).await;
    assert_eq!(s, StatusCode::OK);
    let list = list.as_array().unwrap().clone();
    assert_eq!(list.len(), 4, "{list:?}");
    let (_, _, revoked) = api
        .call("DELETE", &format!("/v1/tokens/{id}"), Some(&admin), None)
        .await;
    assert_eq!(s_of(&revoked), "");
    // No answer holds a hash (a SHA-256 in hex): not as a field, not as a value.
    let sha = |x: &Value| {
        x.as_str()
            .is_some_and(|t| t.len() == 64 && t.bytes().all(|b| b.is_ascii_hexdigit()))
    };
    for v in list.iter().chain([&made]) {
        let o = v.as_object().unwrap();
        assert!(!o.contains_key("hash"), "{v}");
        assert!(!o.values().any(sha), "{v}");
        assert!(
            o.contains_key("created_by") && o.contains_key("role"),
            "{v}"
        );
    }
}

fn s_of(v: &Value) -> &str {
    v.as_str().unwrap_or("not a string")
}
