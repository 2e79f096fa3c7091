//! The real handlers run through the committed definition with faults injected, on
//! the simulator (its waits and the retries' intervals in virtual time): a step that
//! fails or times out is retried and the run goes on; a run whose steps keep failing
//! is ended (failed, lock released, reason recorded), the topic is told, and the
//! workload's next event fires; a gate step retried after it claimed its event fires
//! it once.

mod common;

use std::collections::BTreeSet;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use common::{End, Execution, Fault, Kept, Waits, execute_with};
use ec2_scheduler_app::clouds::Clouds;
use ec2_scheduler_app::sim::read_fleet;
use ec2_scheduler_app::{App, CloudSpec, Speed};
use ec2_scheduler_core::schedule::{Period, Schedule};
use ec2_scheduler_core::zone::Zone;
use ec2_scheduler_engine::memory::MemoryStore;
use ec2_scheduler_lambda::{Env, HOLD, POLL};
use serde_json::json;

const GATE: &str = "${EventGateFunctionArn}";
const STEP: &str = "${RunStepFunctionArn}";
const FAILED: &str = "${EventFailedFunctionArn}";

fn repo(path: &str) -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .join(path)
}

fn t(s: &str) -> DateTime<Utc> {
    s.parse().unwrap()
}

/// `n` copies of the seed example (`W0`, `W1`, ...), each on its own instances, with a
/// stop at 06:00 and a start at 07:00 (UTC) every day, on one simulated region.
async fn world(n: usize) -> Env {
    let seed = read_fleet(&repo("examples/seed/fleet-running.json")).unwrap();
    let mut instances = Vec::new();
    for k in 0..n {
        for i in &seed {
            let mut i = i.clone();
            i.id = format!("{}-w{k}", i.id);
            i.tags.insert("Environment".into(), format!("ENV{k:03}"));
            instances.push(i);
        }
    }
    let app = App::new(
        Box::new(MemoryStore::new()),
        CloudSpec::SimMemory {
            instances,
            start: t("2026-12-07T05:59:00Z"),
            speed: Speed::Max,
        },
        "lambda-faults".into(),
        Arc::default(),
    )
    .with_poll(POLL)
    .with_pacing_through_store();
    let text = std::fs::read_to_string(repo("examples/seed/example.json")).unwrap();
    let (template, _, _) = app
        .put_workload_text("ExampleTestCase", "example.json", &text)
        .await
        .unwrap();
    app.delete_workload("ExampleTestCase").await.unwrap();
    let hm = |h, m| chrono::NaiveTime::from_hms_opt(h, m, 0);
    for k in 0..n {
        let mut w = template.clone();
        w.name = ec2_scheduler_core::model::Name::new(format!("W{k}")).unwrap();
        w.workload_tag.value = ec2_scheduler_core::model::Name::new(format!("ENV{k:03}")).unwrap();
        w.schedules = vec![Schedule {
            name: "office".into(),
            zone: Zone::utc(),
            periods: vec![Period {
                start: hm(7, 0),
                stop: hm(6, 0),
                ..Period::default()
            }],
            skip: Vec::new(),
        }];
        let yaml = ec2_scheduler_config::export(&[w], ec2_scheduler_config::Format::Yaml);
        app.put_workload_text(&format!("W{k}"), "w.yaml", &yaml)
            .await
            .unwrap();
    }
    let app = Arc::new(app);
    let clouds = Arc::new(Clouds::new(&app));
    Env {
        app,
        clouds,
        schedules: Some(Arc::new(Kept::default())),
        hold: HOLD,
    }
}

/// Lets the simulated clock reach `at`.
async fn until(env: &Env, at: DateTime<Utc>) {
    let w = env.app.stored_workload("W0").await.unwrap();
    let cloud = env.clouds.get(&env.app, &w).await.unwrap();
    if let Ok(d) = (at - cloud.now()).to_std() {
        cloud.wait(d).await;
    }
}

async fn event(
    env: &Env,
    workload: &str,
    action: &str,
    at: &str,
    faults: &common::Faults,
) -> Execution {
    let at = t(at);
    until(env, at).await;
    let input = json!({"workload": workload, "action": action, "at": at});
    let name = format!("{workload}-{action}-{}", at.format("%H%M"));
    execute_with(env, &name, input, Waits::Cloud, faults).await
}

/// The states of the workload's members, once their transitions are over.
async fn states(env: &Env, workload: &str) -> BTreeSet<String> {
    let w = env.app.stored_workload(workload).await.unwrap();
    let cloud = env.clouds.get(&env.app, &w).await.unwrap();
    cloud.wait(std::time::Duration::from_secs(600)).await;
    let status = env.app.status(&cloud, &w).await.unwrap();
    status
        .tiers
        .iter()
        .flat_map(|t| &t.members)
        .map(|m| m.instance.state.to_string())
        .collect()
}

#[tokio::test]
async fn a_step_that_fails_or_times_out_is_retried_and_the_run_goes_on() {
    let env = world(1).await;
    // The second run step times out after doing its work, the third is throttled,
    // the fourth fails in its handler.
    let faults = |f: &str, n: usize| match (f, n) {
        (STEP, 2) => Some(Fault::timed_out()),
        (STEP, 3) => Some(Fault::throttled()),
        (STEP, 4) => Some(Fault::handler_error()),
        _ => None,
    };
    let e = event(&env, "W0", "stop", "2026-12-07T06:00:00Z", &faults).await;
    assert!(
        matches!(e.end, End::Succeeded(_)),
        "{:?} {:?}",
        e.end,
        e.path
    );
    assert_eq!(e.output["step"]["outcome"], "succeeded", "{:#}", e.output);
    assert!(e.invocations[STEP] >= 5);
    let retries = e.run.waits.iter().filter(|w| w.2 == "retry").count();
    assert_eq!(retries, 3, "{:?}", e.run.waits);
    assert!(e.published.is_empty(), "{:?}", e.published);
    assert_eq!(
        states(&env, "W0").await,
        BTreeSet::from(["stopped".to_string()])
    );
}

#[tokio::test]
async fn a_run_whose_steps_keep_failing_is_ended_told_and_does_not_block_the_next_event() {
    let env = world(1).await;
    // Every run step after the first fails in its handler.
    let storm = |f: &str, n: usize| (f == STEP && n >= 2).then(Fault::handler_error);
    let e = event(&env, "W0", "stop", "2026-12-07T06:00:00Z", &storm).await;
    let End::Failed(f) = &e.end else {
        panic!("succeeded: {:?}", e.path)
    };
    assert_eq!(f.error, "ScheduledRunFailed");
    assert_eq!(
        &e.path[e.path.len() - 3..],
        ["Record the failure", "Notify", "Failed"]
    );
    // Ended, with the reason, and its lock released.
    let run_id = e.run.history.last().unwrap().input["recorded"]["run_id"]
        .as_str()
        .unwrap()
        .to_string();
    let run = env.app.run_record(&run_id).await.unwrap();
    assert_eq!(run.status.as_str(), "failed");
    assert!(
        run.error
            .as_deref()
            .unwrap()
            .contains("lambda_runtime.Error")
    );
    assert!(env.app.unfinished_run("W0").await.unwrap().is_none());
    // Told: one message on the topic, naming the workload and the run.
    assert_eq!(e.published.len(), 1, "{:?}", e.published);
    let (subject, message) = &e.published[0];
    assert!(subject.contains("failed"), "{subject}");
    assert_eq!(message["workload"], "W0");
    assert_eq!(message["recorded"]["ended"], true);
    // The event's history says so.
    let records = env.app.event_records(Some("W0"), 10).await.unwrap();
    assert_eq!(records[0].outcome.as_str(), "failed", "{records:?}");
    // The next events fire and do their work: the start (nothing to do where the
    // failed stop stopped nothing), then the next day's stop.
    let next = event(&env, "W0", "start", "2026-12-07T07:00:00Z", &|_, _| None).await;
    assert_eq!(next.output["gate"]["fire"], true, "{:#}", next.output);
    assert!(matches!(next.end, End::Succeeded(_)), "{:?}", next.path);
    let stop = event(&env, "W0", "stop", "2026-12-08T06:00:00Z", &|_, _| None).await;
    assert_eq!(
        stop.output["step"]["outcome"], "succeeded",
        "{:#}",
        stop.output
    );
    assert_eq!(
        states(&env, "W0").await,
        BTreeSet::from(["stopped".to_string()])
    );
}

#[tokio::test]
async fn a_timeout_storm_over_many_workloads_ends_every_run_and_tells_each() {
    let env = world(5).await;
    // Every run step runs, then times out: its work is done, its answer lost.
    let storm = |f: &str, _: usize| (f == STEP).then(Fault::timed_out);
    let mut told = 0;
    for k in 0..5 {
        let e = event(
            &env,
            &format!("W{k}"),
            "stop",
            "2026-12-07T06:00:00Z",
            &storm,
        )
        .await;
        assert!(matches!(e.end, End::Failed(_)), "W{k}: {:?}", e.path);
        // The first step and its retries: 1 + 5 (the limit of the retrier).
        assert_eq!(e.invocations[STEP], 6, "W{k}");
        assert_eq!(e.invocations[FAILED], 1, "W{k}");
        told += e.published.len();
    }
    assert_eq!(told, 5);
    for k in 0..5 {
        let w = format!("W{k}");
        assert!(env.app.unfinished_run(&w).await.unwrap().is_none(), "{w}");
        let runs = env.app.runs(Some(&w)).await.unwrap();
        assert!(runs.iter().all(|r| r.status != "running"), "{w}: {runs:?}");
    }
    // Nothing is wedged: every workload's next event fires.
    for k in 0..5 {
        let e = event(
            &env,
            &format!("W{k}"),
            "start",
            "2026-12-07T07:00:00Z",
            &|_, _| None,
        )
        .await;
        assert_eq!(e.output["gate"]["fire"], true, "W{k}: {:#}", e.output);
        assert!(matches!(e.end, End::Succeeded(_)), "W{k}: {:?}", e.path);
    }
}

#[tokio::test]
async fn a_gate_step_retried_after_it_claimed_its_event_fires_it_once() {
    let env = world(1).await;
    // The gate claims the event, then its answer is lost (it ran past its timeout).
    let faults = |f: &str, n: usize| (f == GATE && n == 1).then(Fault::timed_out);
    let e = event(&env, "W0", "stop", "2026-12-07T06:00:00Z", &faults).await;
    assert_eq!(e.invocations[GATE], 2);
    assert_eq!(e.output["gate"]["fire"], true, "{:#}", e.output);
    assert_eq!(e.output["step"]["outcome"], "succeeded");
    // Another execution of the same event (a duplicate delivery) does not fire it.
    let input = json!({"workload": "W0", "action": "stop", "at": "2026-12-07T06:00:00Z"});
    let again = execute_with(&env, "W0-stop-dup", input, Waits::Cloud, &|_, _| None).await;
    assert_eq!(again.output["gate"]["fire"], false);
    assert_eq!(env.app.runs(Some("W0")).await.unwrap().len(), 1);
}
