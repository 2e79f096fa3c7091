//! The Lambda handlers in process, against moto (DynamoDB, EC2, ELB, SNS): the event
//! gate's decisions, and a scheduled start of the seed example driven state by state
//! as the committed state machine definition says.

use std::collections::BTreeMap;

use chrono::{DateTime, DurationRound, Utc};
use ec2_scheduler_core::schedule::{Period, Schedule, SkipDate, SkipDay};
use ec2_scheduler_core::zone::Zone;
use std::sync::Arc;

use ec2_scheduler_app::schedules::{self, OverrideRequest};
use ec2_scheduler_aws::scheduler::EventBridgeSchedules;
use ec2_scheduler_aws::sfn::Executions;
use ec2_scheduler_core::schedule::EventKind;
use ec2_scheduler_lambda::api::StateMachineDriver;
use ec2_scheduler_lambda::{
    Env, FailedInput, GateInput, StepInput, SyncInput, event_failed, event_gate, run_step,
    schedule_sync, tables_from_env,
};
use ec2_scheduler_testkit::{
    Moto, World, create_schedule_group, create_seed_tables, create_state_machine, executions,
    schedules, seed_world,
};
use serde_json::{Value, json};

mod common;
use common::{DEFINITION, Waits, execute};

const GROUP: &str = "ec2-scheduler-test-events";
const MACHINE: &str = "arn:aws:states:us-west-2:123456789012:stateMachine:ec2-scheduler-runs";
const ROLE: &str = "arn:aws:iam::123456789012:role/ec2-scheduler-scheduler";

/// The functions' environment on moto, with a schedule group. Its run step sleeps
/// through short waits as under Lambda.
async fn env(moto: &Moto) -> Env {
    env_holding(moto, ec2_scheduler_lambda::HOLD).await
}

/// The same, with the run step sleeping through waits up to `hold` only (zero:
/// every wait goes back to the state machine, so its Wait loop is exercised even
/// where moto's instances change state at once).
async fn env_holding(moto: &Moto, hold: std::time::Duration) -> Env {
    let conf = moto.config("us-west-2").await;
    create_schedule_group(&conf, GROUP).await;
    let env = Env::open("us-west-2", tables_from_env(), Some(moto.endpoint.clone()))
        .await
        .unwrap();
    // Counted with the rest, so that each function's calls are checked against its
    // role's grants.
    let schedules =
        EventBridgeSchedules::new(&conf, env.app.request_counter(), GROUP, MACHINE, ROLE);
    env.with_schedules(Arc::new(schedules)).with_hold(hold)
}

/// Adds to the stored workload a schedule (UTC) that starts it with `profile` every
/// day at the minute of `at`, with `skip` dates.
async fn schedule_start(env: &Env, at: DateTime<Utc>, profile: &str, skip: &[&str]) {
    schedule(env, Some(at), None, profile, skip).await;
}

/// Adds to the stored workload a schedule (UTC) that starts it (with `profile`)
/// and stops it every day at the minutes of `start` and `stop`, with `skip` dates.
async fn schedule(
    env: &Env,
    start: Option<DateTime<Utc>>,
    stop: Option<DateTime<Utc>>,
    profile: &str,
    skip: &[&str],
) {
    let mut w = env.app.stored_workload("ExampleTestCase").await.unwrap();
    w.schedules = vec![Schedule {
        name: "lambda-test".into(),
        zone: Zone::utc(),
        periods: vec![Period {
            name: Some("window".into()),
            start: start.map(|t| t.time()),
            stop: stop.map(|t| t.time()),
            profile: Some(profile.into()),
            ..Period::default()
        }],
        skip: skip
            .iter()
            .map(|d| SkipDate {
                day: d.parse::<SkipDay>().unwrap(),
                label: None,
                calendar: None,
            })
            .collect(),
    }];
    let text = ec2_scheduler_config::export(&[w], ec2_scheduler_config::Format::Yaml);
    env.app
        .put_workload_text("ExampleTestCase", "test.yaml", &text)
        .await
        .unwrap();
}

/// Instance id -> (state, type), as the application layer observes them.
async fn observed(env: &Env) -> BTreeMap<String, (String, String)> {
    let w = env.app.stored_workload("ExampleTestCase").await.unwrap();
    let cloud = env.clouds.get(&env.app, &w).await.unwrap();
    let status = env.app.status(&cloud, &w).await.unwrap();
    status
        .tiers
        .iter()
        .flat_map(|t| &t.members)
        .map(|m| {
            (
                m.instance.id.clone(),
                (
                    m.instance.state.to_string(),
                    m.instance.instance_type.clone(),
                ),
            )
        })
        .collect()
}

/// Drives the run step by itself until it is done (for a stop before the test).
async fn run_to_end(env: &Env, action: &str) -> String {
    let mut input = StepInput {
        workload: "ExampleTestCase".into(),
        action: action.into(),
        profile: None,
        key: None,
        run_id: None,
        requested_by: None,
    };
    for _ in 0..500 {
        let out = run_step(env, input.clone()).await.unwrap();
        if out.done {
            return out.outcome;
        }
        input.run_id = out.run_id;
        tokio::time::sleep(std::time::Duration::from_secs(out.wait_seconds.min(1))).await;
    }
    panic!("the run did not end");
}

fn now_minute() -> DateTime<Utc> {
    Utc::now()
        .duration_trunc(chrono::Duration::minutes(1))
        .unwrap()
}

#[tokio::test]
async fn a_scheduled_start_driven_as_the_state_machine_says_takes_the_seed_example_to_profile_d() {
    let moto = Moto::start();
    let conf = moto.config("us-west-2").await;
    let world: World = seed_world(&conf, 9).await;
    let env = env_holding(&moto, std::time::Duration::ZERO).await;
    assert_eq!(run_to_end(&env, "stop").await, "succeeded");
    assert!(observed(&env).await.values().all(|(s, _)| s == "stopped"));

    let at = now_minute();
    schedule_start(&env, at, "profileD", &[]).await;
    let input = json!({"workload": "ExampleTestCase", "action": "start", "at": at});
    let run = execute(
        &env,
        "ExampleTestCase-start-test",
        input.clone(),
        Waits::Short,
    )
    .await;
    assert_eq!(run.output["gate"]["fire"], true, "{:#}", run.output);
    assert_eq!(
        run.output["step"]["outcome"], "succeeded",
        "{:#}",
        run.output
    );
    assert_eq!(run.path[..2], ["Begun elsewhere?", "Gate"]);
    assert_eq!(run.path.last().map(String::as_str), Some("Finished"));
    assert!(run.path.iter().any(|s| s == "Wait"), "{:?}", run.path);
    assert_eq!(run.invocations["${EventGateFunctionArn}"], 1);
    assert_eq!(run.invocations["${ScheduleSyncFunctionArn}"], 1);
    let after = observed(&env).await;
    for id in world.web.iter().chain(&world.app) {
        assert_eq!(after[id], ("running".into(), "c4.large".into()), "{id}");
    }
    for id in &world.db {
        assert_eq!(after[id], ("running".into(), "r4.large".into()), "{id}");
    }
    // The run is recorded as begun by the schedule, under the event's key.
    let run_id = run.output["step"]["run_id"].as_str().unwrap();
    let record = env.app.run_record(run_id).await.unwrap();
    assert_eq!(
        record.requested_by.as_deref(),
        Some("schedule ExampleTestCase-start-test")
    );
    // The same event again (a duplicate delivery) does not fire twice.
    let again = execute(&env, "ExampleTestCase-start-test-2", input, Waits::Short).await;
    assert_eq!(again.output["gate"]["fire"], false);
    assert_eq!(again.path.last().map(String::as_str), Some("Not fired"));
    let history = env
        .app
        .event_records(Some("ExampleTestCase"), 10)
        .await
        .unwrap();
    assert_eq!(history.len(), 1, "{history:?}");
    assert_eq!(history[0].run_id.as_deref(), Some(run_id));
    // The run steps booked their calls on the account's buckets in the table, and
    // what the run had booked and not used went back when it ended.
    let store = ec2_scheduler_aws::dynamo::DynamoStore::new(&conf, tables_from_env());
    let (shares, version) =
        ec2_scheduler_engine::ports::RunStore::pace_shares(&store, "us-west-2|")
            .await
            .unwrap()
            .expect("a pacing record");
    assert!(version >= 4, "{version}");
    for bucket in ["describe", "start_requests", "start_instances"] {
        assert!(shares.levels.contains_key(bucket), "{bucket}: {shares:?}");
    }
    assert!(record.pace_grants.is_empty(), "{:?}", record.pace_grants);
}

#[tokio::test]
async fn the_gate_skips_what_serve_skips_and_fires_each_event_once() {
    let moto = Moto::start();
    let conf = moto.config("us-west-2").await;
    seed_world(&conf, 3).await;
    let env = env_holding(&moto, std::time::Duration::ZERO).await;
    let at = now_minute();
    let gate = |action: &str, at: DateTime<Utc>| GateInput {
        workload: "ExampleTestCase".into(),
        action: action.into(),
        at,
        claimant: None,
    };
    // A skip date on the event's day.
    schedule_start(&env, at, "profileD", &[&at.date_naive().to_string()]).await;
    let g = event_gate(&env, gate("start", at), Utc::now().max(at))
        .await
        .unwrap();
    assert!(!g.fire);
    assert!(
        g.reason.unwrap().contains("skip date"),
        "skipped by its skip date"
    );
    // No such event: a stop the schedules never had.
    let g = event_gate(&env, gate("stop", at), Utc::now().max(at))
        .await
        .unwrap();
    assert!(!g.fire);
    assert!(g.reason.unwrap().contains("no longer have a stop"));
    // Later than the grace period.
    let earlier = at - chrono::Duration::days(1);
    schedule_start(&env, earlier, "profileD", &[]).await;
    let g = event_gate(&env, gate("start", earlier), Utc::now())
        .await
        .unwrap();
    assert!(!g.fire);
    assert!(g.reason.unwrap().contains("late"));
    // A run still going (each case at its own instant: a decision claims its event).
    let at = at + chrono::Duration::minutes(2);
    schedule_start(&env, at, "profileD", &[]).await;
    let busy = run_step(
        &env,
        StepInput {
            workload: "ExampleTestCase".into(),
            action: "stop".into(),
            profile: None,
            key: None,
            run_id: None,
            requested_by: None,
        },
    )
    .await
    .unwrap();
    assert!(!busy.done);
    let g = event_gate(&env, gate("start", at), Utc::now().max(at))
        .await
        .unwrap();
    assert!(!g.fire);
    assert!(g.reason.unwrap().contains("busy with run"));
    // Once that run is over: the event was already claimed (and recorded skipped).
    let cancelled = env
        .app
        .cancel(busy.run_id.as_deref().unwrap())
        .await
        .unwrap();
    assert!(cancelled.status.is_finished());
    let g = event_gate(&env, gate("start", at), Utc::now().max(at))
        .await
        .unwrap();
    assert!(!g.fire);
    assert!(g.reason.unwrap().contains("claimed"));
    // A new instant fires once, with its profile and the key that names its run.
    let next = at + chrono::Duration::minutes(1);
    schedule_start(&env, next, "profileD", &[]).await;
    let g = event_gate(&env, gate("start", next), Utc::now().max(next))
        .await
        .unwrap();
    assert!(g.fire, "{g:?}");
    assert_eq!(g.profile.as_deref(), Some("profileD"));
    assert!(g.run_id.is_some());
    let twice = event_gate(&env, gate("start", next), Utc::now().max(next))
        .await
        .unwrap();
    assert!(!twice.fire);
    // The same execution asking again (its gate step retried) is answered the same.
    let mine = |at| GateInput {
        claimant: Some("exec-1".into()),
        ..gate("start", at)
    };
    let later = next + chrono::Duration::minutes(1);
    schedule_start(&env, later, "profileD", &[]).await;
    let first = event_gate(&env, mine(later), Utc::now().max(later))
        .await
        .unwrap();
    let retried = event_gate(&env, mine(later), Utc::now().max(later))
        .await
        .unwrap();
    assert!(first.fire && retried.fire, "{first:?} {retried:?}");
    assert_eq!(first.run_id, retried.run_id);
    let other = event_gate(
        &env,
        GateInput {
            claimant: Some("exec-2".into()),
            ..gate("start", later)
        },
        Utc::now().max(later),
    )
    .await
    .unwrap();
    assert!(
        !other.fire,
        "another execution of the same event does not fire"
    );
    // Delivered early: not fired, not claimed, told.
    let ahead = later + chrono::Duration::minutes(1);
    schedule_start(&env, ahead, "profileD", &[]).await;
    let early = event_gate(&env, mine(ahead), ahead - chrono::Duration::minutes(1))
        .await
        .unwrap();
    assert!(!early.fire && early.alert, "{early:?}");
    assert!(early.reason.unwrap().contains("before its instant"));
    let on_time = event_gate(&env, mine(ahead), ahead).await.unwrap();
    assert!(on_time.fire, "{on_time:?}");
    // The history shows each decision.
    let outcomes: Vec<String> = env
        .app
        .event_records(Some("ExampleTestCase"), 10)
        .await
        .unwrap()
        .iter()
        .map(|r| format!("{} {}", r.action, r.outcome.as_str()))
        .collect();
    for o in ["start skipped", "start missed", "start fired"] {
        assert!(outcomes.iter().any(|x| x == o), "{o}: {outcomes:?}");
    }
    // A failure the state machine gave up on ends the event's run (found by the
    // event's key) and is recorded on its event.
    let begun = run_step(
        &env,
        StepInput {
            workload: "ExampleTestCase".into(),
            action: "start".into(),
            profile: Some("profileD".into()),
            key: Some(g.key.clone()),
            run_id: None,
            requested_by: None,
        },
    )
    .await
    .unwrap();
    assert_eq!(begun.run_id, g.run_id);
    let failed = event_failed(
        &env,
        FailedInput {
            execution: Some("exec-9".into()),
            state: json!({
                "workload": "ExampleTestCase",
                "action": "start",
                "at": next,
                "gate": {"fire": true, "key": g.key},
                "step": {"run_id": null},
                "error": {"Error": "Sandbox.Timedout", "Cause": "timed out"},
            }),
        },
        Utc::now(),
    )
    .await
    .unwrap();
    assert!(failed.ended, "{failed:?}");
    let run = env
        .app
        .run_record(g.run_id.as_deref().unwrap())
        .await
        .unwrap();
    assert_eq!(run.status.as_str(), "failed");
    assert!(run.error.unwrap().contains("Sandbox.Timedout"));
    // Its lock is free: the workload's next event can begin a run.
    assert!(
        env.app
            .unfinished_run("ExampleTestCase")
            .await
            .unwrap()
            .is_none()
    );
    let failed = env
        .app
        .event_records(Some("ExampleTestCase"), 10)
        .await
        .unwrap()
        .into_iter()
        .find(|r| r.at == next)
        .unwrap();
    assert_eq!(failed.outcome.as_str(), "failed");
    assert!(failed.detail.unwrap().contains("timed out"));
}

/// The schedules sync should leave for `ExampleTestCase` after `now`, by the same
/// evaluator as `schedule next`: (name, `at(...)`, zone) of each next event that fires.
async fn expected(env: &Env, now: DateTime<Utc>) -> BTreeMap<String, (String, String)> {
    let w = env.app.stored_workload("ExampleTestCase").await.unwrap();
    let overrides = env
        .app
        .overrides(Some("ExampleTestCase"), false, now)
        .await
        .unwrap();
    schedules::next(
        &w.schedules,
        &overrides,
        now,
        ec2_scheduler_app::sync::AHEAD,
    )
    .unwrap()
    .into_iter()
    .filter(|e| e.skipped.is_none())
    .map(|e| {
        let s = ec2_scheduler_app::sync::one_time("ExampleTestCase", &e);
        (s.name, (format!("at({})", s.utc), "UTC".to_string()))
    })
    .collect()
}

async fn seen(moto: &Moto) -> BTreeMap<String, (String, String)> {
    let conf = moto.config("us-west-2").await;
    schedules(&conf, GROUP)
        .await
        .into_values()
        .map(|s| (s.name, (s.expression, s.timezone)))
        .collect()
}

#[tokio::test]
async fn schedule_sync_creates_moves_and_deletes_one_time_schedules_at_the_instants_of_schedule_next()
 {
    let moto = Moto::start();
    let conf = moto.config("us-west-2").await;
    create_seed_tables(&conf).await;
    let env = env(&moto).await;
    let office = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../examples/office-hours.yaml"
    ))
    .unwrap();
    env.app
        .put_workload_text("ExampleTestCase", "office-hours.yaml", &office)
        .await
        .unwrap();
    // Wednesday 23 December 2026, 10:00 UTC (11:00 in Berlin): the 24th is a skip
    // date and the 25th and 26th holidays, so the next events skip to the 28th.
    let now: DateTime<Utc> = "2026-12-23T10:00:00Z".parse().unwrap();
    let sync = |now| schedule_sync(&env, SyncInput::default(), now);
    let first = sync(now).await.unwrap();
    let want = expected(&env, now).await;
    assert_eq!(first.created.len(), ec2_scheduler_app::sync::AHEAD);
    assert_eq!(seen(&moto).await, want);
    // 12:00 in Berlin, sent as its UTC instant.
    assert!(
        want.values()
            .any(|(at, tz)| at == "at(2026-12-23T11:00:00)" && tz == "UTC"),
        "{want:?}"
    );
    assert!(
        want.values()
            .all(|(at, _)| !at.starts_with("at(2026-12-24") && !at.starts_with("at(2026-12-25")),
        "holidays fire nothing: {want:?}"
    );
    // What each schedule starts: the state machine, named after the event, with it.
    let conf = moto.config("us-west-2").await;
    for s in schedules(&conf, GROUP).await.values() {
        assert_eq!(
            s.target_arn,
            "arn:aws:scheduler:::aws-sdk:sfn:startExecution"
        );
        assert_eq!(s.after_completion, "DELETE");
        let request: Value = serde_json::from_str(&s.target_input).unwrap();
        assert_eq!(request["StateMachineArn"], MACHINE);
        let input: Value = serde_json::from_str(request["Input"].as_str().unwrap()).unwrap();
        assert_eq!(input["workload"], "ExampleTestCase");
        assert!(
            request["Name"]
                .as_str()
                .unwrap()
                .starts_with("ExampleTestCase-")
        );
    }
    // Nothing changed: nothing to do.
    let again = sync(now).await.unwrap();
    assert_eq!(
        (again.created.len(), again.deleted.len(), again.kept),
        (0, 0, 4)
    );

    // An override that skips the next stop: that stop's schedule goes, and the
    // schedules follow what the timeline now says.
    let w = env.app.stored_workload("ExampleTestCase").await.unwrap();
    env.app
        .add_override(
            &w,
            OverrideRequest::SkipNext(EventKind::Stop),
            "test",
            "release",
            now,
        )
        .await
        .unwrap();
    let moved = schedule_sync(
        &env,
        SyncInput {
            workload: Some("ExampleTestCase".into()),
        },
        now,
    )
    .await
    .unwrap();
    // Skipping the 23rd's stop keeps it running through the holidays, so the 28th's
    // start goes too; the 28th's stop and the 29th's start come instead.
    assert!(
        moved
            .deleted
            .iter()
            .any(|n| n.ends_with("-stop-20261223T180000Z")),
        "{moved:?}"
    );
    assert_eq!(moved.created.len(), moved.deleted.len(), "{moved:?}");
    assert_eq!(seen(&moto).await, expected(&env, now).await);

    // A calendar change: the 28th becomes a skip date, so its events move on.
    let with_skip = office.replace(
        r#"skip: ["2026-12-24", "2026-12-31"]"#,
        r#"skip: ["2026-12-24", "2026-12-28", "2026-12-31"]"#,
    );
    assert_ne!(with_skip, office);
    env.app
        .put_workload_text("ExampleTestCase", "office-hours.yaml", &with_skip)
        .await
        .unwrap();
    let calendar = sync(now).await.unwrap();
    assert!(
        !calendar.deleted.is_empty() && !calendar.created.is_empty(),
        "{calendar:?}"
    );
    let want = expected(&env, now).await;
    assert_eq!(seen(&moto).await, want);
    assert!(
        want.values()
            .all(|(at, _)| !at.starts_with("at(2026-12-28")),
        "{want:?}"
    );

    // Later, after events fired: the schedules follow the clock.
    let later: DateTime<Utc> = "2026-12-29T20:00:00Z".parse().unwrap();
    sync(later).await.unwrap();
    assert_eq!(seen(&moto).await, expected(&env, later).await);

    // A deleted workload loses its schedules.
    env.app.delete_workload("ExampleTestCase").await.unwrap();
    let gone = sync(later).await.unwrap();
    assert_eq!(gone.deleted.len(), 4);
    assert!(seen(&moto).await.is_empty());
}

/// DynamoDB writes among `requests`.
fn writes(requests: &BTreeMap<String, u64>) -> u64 {
    [
        "dynamodb:PutItem",
        "dynamodb:UpdateItem",
        "dynamodb:DeleteItem",
        "dynamodb:BatchWriteItem",
    ]
    .iter()
    .filter_map(|a| requests.get(*a))
    .sum()
}

fn delta(after: &BTreeMap<String, u64>, before: &BTreeMap<String, u64>) -> BTreeMap<String, u64> {
    after
        .iter()
        .map(|(k, v)| (k.clone(), v - before.get(k).copied().unwrap_or(0)))
        .filter(|(_, v)| *v > 0)
        .collect()
}

/// What BENCHMARKS.md's cost section is made from: the seed example's 300 instances
/// stopped, then started with profileD, each a scheduled event run through the
/// committed definition with its waits as long as they say. Prints the figures;
/// fails if a run needs more state transitions, or an invocation more time, than
/// the cost model allows.
#[tokio::test]
async fn a_300_instance_stop_and_start_through_the_state_machine_stays_within_the_cost_model() {
    let moto = Moto::start();
    let conf = moto.config("us-west-2").await;
    seed_world(&conf, 100).await;
    let env = env(&moto).await;
    let minute = chrono::Duration::minutes(1);
    let stop_at = now_minute();
    let start_at = stop_at + minute;
    for (action, at) in [("stop", stop_at), ("start", start_at)] {
        // A window that opened a minute before the stop, or opens at the start.
        match action {
            "stop" => schedule(&env, Some(at - minute), Some(at), "profileD", &[]).await,
            _ => schedule(&env, Some(at), Some(at + minute * 30), "profileD", &[]).await,
        }
        let wait = (at - Utc::now()).to_std().unwrap_or_default();
        tokio::time::sleep(wait).await;
        let before = env.app.requests();
        let input = json!({"workload": "ExampleTestCase", "action": action, "at": at});
        let run = execute(&env, &format!("cost-{action}"), input, Waits::Real).await;
        assert_eq!(
            run.output["step"]["outcome"], "succeeded",
            "{:#}",
            run.output
        );
        let used = delta(&env.app.requests(), &before);
        let transitions = run.path.len();
        let all: Vec<u128> = run.millis.values().flatten().copied().collect();
        let invocations: usize = run.invocations.values().sum();
        let ms: u128 = all.iter().sum();
        let slowest = all.iter().max().copied().unwrap_or(0);
        let ec2: u64 = used
            .iter()
            .filter(|(k, _)| k.starts_with("ec2:"))
            .map(|(_, v)| v)
            .sum();
        println!(
            "serverless cost: {action} of 300 instances: {transitions} state transitions, \
             {invocations} Lambda invocations ({:?}), {ms} ms in handlers (slowest {slowest} ms), \
             {} DynamoDB writes, {} DynamoDB reads, {ec2} EC2 requests; path {:?}",
            run.invocations,
            writes(&used),
            ["dynamodb:GetItem", "dynamodb:Query", "dynamodb:Scan"]
                .iter()
                .filter_map(|a| used.get(*a))
                .sum::<u64>(),
            run.path
        );
        assert!(
            transitions <= 40,
            "{transitions} transitions: {:?}",
            run.path
        );
        assert!(
            slowest < ec2_scheduler_lambda::BUDGET.as_millis() + 20_000,
            "an invocation took {slowest} ms"
        );
    }
}

/// A request as API Gateway (HTTP API, IAM authorization) hands it to the function,
/// from the caller `arn`.
fn from_iam(
    method: &str,
    uri: &str,
    body: &str,
    arn: Option<&str>,
) -> axum::http::Request<axum::body::Body> {
    use lambda_http::aws_lambda_events::apigw::{
        ApiGatewayRequestAuthorizer, ApiGatewayRequestAuthorizerIamDescription,
        ApiGatewayV2httpRequestContext,
    };
    let mut req = axum::http::Request::builder()
        .method(method)
        .uri(uri)
        .header("content-type", "application/json")
        .body(axum::body::Body::from(body.to_string()))
        .unwrap();
    let mut ctx = ApiGatewayV2httpRequestContext::default();
    if let Some(arn) = arn {
        let mut iam = ApiGatewayRequestAuthorizerIamDescription::default();
        iam.user_arn = Some(arn.to_string());
        let mut authorizer = ApiGatewayRequestAuthorizer::default();
        authorizer.iam = Some(iam);
        ctx.authorizer = Some(authorizer);
    }
    req.extensions_mut()
        .insert(lambda_http::request::RequestContext::ApiGatewayV2(ctx));
    req
}

#[tokio::test]
async fn the_api_function_takes_the_callers_iam_role_and_hands_its_runs_to_the_state_machine() {
    use tower::ServiceExt;
    let moto = Moto::start();
    let conf = moto.config("us-west-2").await;
    seed_world(&conf, 3).await;
    let env = env(&moto).await;
    let machine = create_state_machine(&conf, "ec2-scheduler-runs", DEFINITION).await;
    let starter = Executions::connect("us-west-2", Some(moto.endpoint.clone()), &machine).await;
    let principals = ec2_scheduler_api::Principals::from_json(
        r#"{"principals": [
            {"arn": "arn:aws:iam::123456789012:role/Platform", "role": "operator"},
            {"arn": "arn:aws:iam::123456789012:role/Admin", "role": "admin"},
            {"arn": "arn:aws:iam::123456789012:user/*", "role": "viewer"}]}"#,
    )
    .unwrap();
    let env = Arc::new(env);
    let router = ec2_scheduler_lambda::api::router(
        env.clone(),
        Arc::new(StateMachineDriver::new(starter)),
        principals,
    );
    // Each request sends only what the API function's role grants.
    let call = |req: axum::http::Request<axum::body::Body>| {
        let router = router.clone();
        let env = env.clone();
        async move {
            let before = env.app.requests();
            let res: axum::response::Response = router.oneshot(req).await.unwrap();
            common::within_grants("api", &before, &env.app.requests());
            let status = res.status().as_u16();
            let body = axum::body::to_bytes(res.into_body(), 1 << 20)
                .await
                .unwrap();
            (
                status,
                serde_json::from_slice::<Value>(&body).unwrap_or(Value::Null),
            )
        }
    };
    let runs = "/v1/workloads/ExampleTestCase/runs";
    let stop = r#"{"action": "stop"}"#;
    // No identity and no token; an identity the table does not name; a viewer.
    assert_eq!(call(from_iam("POST", runs, stop, None)).await.0, 401);
    let stranger = "arn:aws:iam::999999999999:role/Other";
    assert_eq!(
        call(from_iam("POST", runs, stop, Some(stranger))).await.0,
        403
    );
    let viewer = "arn:aws:iam::123456789012:user/alice";
    assert_eq!(
        call(from_iam("GET", "/v1/workloads", "", Some(viewer)))
            .await
            .0,
        200
    );
    assert_eq!(
        call(from_iam("POST", runs, stop, Some(viewer))).await.0,
        403
    );
    let conf2 = moto.config("us-west-2").await;
    assert!(executions(&conf2, &machine).await.is_empty());
    // An operator, as an assumed-role session: the run begins, recorded as theirs,
    // and an execution named after it starts with its id.
    let operator = "arn:aws:sts::123456789012:assumed-role/Platform/deploy-bot";
    let (status, body) = call(from_iam("POST", runs, stop, Some(operator))).await;
    assert_eq!(status, 202, "{body}");
    let run_id = body["run_id"].as_str().unwrap().to_string();
    let record = env.app.run_record(&run_id).await.unwrap();
    assert_eq!(record.requested_by.as_deref(), Some(operator));
    let started = executions(&conf2, &machine).await;
    assert_eq!(started.len(), 1, "{started:?}");
    assert_eq!(
        started[0].0,
        ec2_scheduler_lambda::api::execution_name(&run_id)
    );
    let input: Value = serde_json::from_str(&started[0].1).unwrap();
    assert_eq!(input["run_id"], run_id.as_str());
    assert_eq!(input["action"], "stop");
    // The execution, run as the definition says, drives that run to its end, in
    // another environment (another container's): the lock is the deployment's.
    let worker = env_holding(&moto, std::time::Duration::ZERO).await;
    assert_eq!(worker.app.owner(), env.app.owner());
    assert_eq!(worker.app.owner(), ec2_scheduler_lambda::owner_from_env());
    let run = execute(&worker, &started[0].0, input, Waits::Short).await;
    assert_eq!(
        run.path[..4],
        ["Begun elsewhere?", "Resume", "Resume run", "Run step"]
    );
    assert_eq!(run.output["step"]["run_id"], run_id.as_str());
    assert_eq!(
        run.output["step"]["outcome"], "succeeded",
        "{:#}",
        run.output
    );
    assert!(observed(&env).await.values().all(|(s, _)| s == "stopped"));
    // An admin's change that moves the workload's events syncs its schedules at once.
    assert!(seen(&moto).await.is_empty());
    let office = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../examples/office-hours.yaml"
    ))
    .unwrap();
    let admin = "arn:aws:iam::123456789012:role/Admin";
    let put = from_iam("PUT", "/v1/workloads/ExampleTestCase", &office, Some(admin));
    let (status, body) = call(put).await;
    assert_eq!(status, 200, "{body}");
    let want = expected(&env, Utc::now()).await;
    assert_eq!(want.len(), ec2_scheduler_app::sync::AHEAD);
    assert_eq!(seen(&moto).await, want);
}
