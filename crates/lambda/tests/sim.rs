//! The cost model's counts with the simulator's transition times: moto's instances
//! change state at once, AWS's take tens of seconds, and each look at them while
//! they change is a round through the state machine. The seed example's tiers,
//! scaled to 300 instances, are stopped, then started with profileD, by scheduled
//! events run through the committed definition, its waits in virtual time.

mod common;

use std::sync::Arc;

use chrono::{DateTime, Utc};
use common::{Kept, Waits, execute};
use ec2_scheduler_app::clouds::Clouds;
use ec2_scheduler_app::sim::read_fleet;
use ec2_scheduler_app::{App, CloudSpec, Speed};
use ec2_scheduler_core::schedule::{Period, Schedule};
use ec2_scheduler_core::zone::Zone;
use ec2_scheduler_engine::memory::MemoryStore;
use ec2_scheduler_lambda::{Env, HOLD, POLL};
use serde_json::json;

fn repo(path: &str) -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .join(path)
}

/// The seed fleet's instances of each tier, copied up to `per_tier` each.
fn fleet(per_tier: usize) -> Vec<ec2_scheduler_core::Instance> {
    let seed = read_fleet(&repo("examples/seed/fleet-running.json")).unwrap();
    let mut out = Vec::new();
    for tier in ["Role_Web", "Role_App", "Role_DB"] {
        let members: Vec<_> = seed
            .iter()
            .filter(|i| i.tags.get("Role").map(String::as_str) == Some(tier))
            .collect();
        for k in 0..per_tier {
            let mut i = members[k % members.len()].clone();
            i.id = format!("i-0{}{k:05}", tier[5..].to_lowercase());
            out.push(i);
        }
    }
    out
}

#[tokio::test]
async fn with_aws_like_transition_times_a_300_instance_stop_and_start_stay_within_the_cost_model() {
    let start: DateTime<Utc> = "2026-12-07T05:59:00Z".parse().unwrap();
    let app = App::new(
        Box::new(MemoryStore::new()),
        CloudSpec::SimMemory {
            instances: fleet(100),
            start,
            speed: Speed::Max,
        },
        "lambda-sim".into(),
        Arc::default(),
    )
    .with_poll(POLL);
    let text = std::fs::read_to_string(repo("examples/seed/example.json")).unwrap();
    let (mut w, _, _) = app
        .put_workload_text("ExampleTestCase", "example.json", &text)
        .await
        .unwrap();
    // A window that closes at 06:00 (a stop), and one that opens at 07:00 with
    // profileD (a start).
    let hm = |h, m| chrono::NaiveTime::from_hms_opt(h, m, 0);
    w.schedules = vec![Schedule {
        name: "cost".into(),
        zone: Zone::utc(),
        periods: vec![
            Period {
                start: hm(5, 0),
                stop: hm(6, 0),
                ..Period::default()
            },
            Period {
                start: hm(7, 0),
                stop: hm(23, 0),
                profile: Some("profileD".into()),
                ..Period::default()
            },
        ],
        skip: Vec::new(),
    }];
    let yaml = ec2_scheduler_config::export(&[w], ec2_scheduler_config::Format::Yaml);
    app.put_workload_text("ExampleTestCase", "cost.yaml", &yaml)
        .await
        .unwrap();
    let app = Arc::new(app);
    let clouds = Arc::new(Clouds::new(&app));
    let w = app.stored_workload("ExampleTestCase").await.unwrap();
    let cloud = clouds.get(&app, &w).await.unwrap();
    let env = Env {
        app: app.clone(),
        clouds: clouds.clone(),
        schedules: Some(Arc::new(Kept::default())),
        hold: HOLD,
    };
    for (action, at) in [
        ("stop", "2026-12-07T06:00:00Z"),
        ("start", "2026-12-07T07:00:00Z"),
    ] {
        let at: DateTime<Utc> = at.parse().unwrap();
        cloud.wait((at - cloud.now()).to_std().unwrap()).await;
        let input = json!({"workload": "ExampleTestCase", "action": action, "at": at});
        let run = execute(&env, &format!("sim-{action}"), input, Waits::Cloud).await;
        assert_eq!(
            run.output["step"]["outcome"], "succeeded",
            "{:#}",
            run.output
        );
        let took = (cloud.now() - at).num_seconds();
        let steps = run.invocations["${RunStepFunctionArn}"];
        println!(
            "serverless cost on the simulator: {action} of 300 instances: {} state transitions, \
             {steps} run steps, {took} s from the event to the end; path {:?}",
            run.path.len(),
            run.path
        );
        assert!(
            run.path.len() <= 40,
            "{} transitions: {:?}",
            run.path.len(),
            run.path
        );
    }
    let status = app.status(&cloud, &w).await.unwrap();
    for t in &status.tiers {
        for m in &t.members {
            assert_eq!(m.instance.state.to_string(), "running", "{}", m.instance.id);
        }
    }
}
