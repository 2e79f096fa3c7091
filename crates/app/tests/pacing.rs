//! Runs on one account share its buckets. Twenty workloads of the seed example's
//! tiers, 99 instances each, start at one instant on one simulated region (one
//! account, with AWS's published buckets), driven as `serve` drives them (one tick
//! of each run in turn, the clock moved on to the soonest wake-up). Pacing each run
//! alone, the runs together exceed the account's buckets and are throttled again and
//! again; sharing the account's buckets, they are hardly throttled, finish no later,
//! and none is starved. The same holds when each tick's executor shares nothing in
//! memory and books its calls on the account's buckets through the store, as the
//! serverless run step does in its containers.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use ec2_scheduler_app::sim::read_fleet;
use ec2_scheduler_app::{App, Begin, CloudSpec, Next, Quiet, Speed};
use ec2_scheduler_core::model::Name;
use ec2_scheduler_core::plan::ScaleIn;
use ec2_scheduler_core::{Action, Instance, InstanceState, Workload};
use ec2_scheduler_engine::RunRequest;
use ec2_scheduler_engine::memory::MemoryStore;

const WORKLOADS: usize = 20;
const PER_TIER: usize = 33;

fn repo(path: &str) -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .join(path)
}

/// The seed fleet's members, `PER_TIER` a tier, for each of `WORKLOADS` environments,
/// all stopped.
fn fleet() -> Vec<Instance> {
    let seed = read_fleet(&repo("examples/seed/fleet-running.json")).unwrap();
    let mut out = Vec::new();
    for k in 0..WORKLOADS {
        for tier in ["Role_Web", "Role_App", "Role_DB"] {
            let members: Vec<&Instance> = seed
                .iter()
                .filter(|i| {
                    i.tags.get("Role").map(String::as_str) == Some(tier)
                        && i.tags.get("Environment").map(String::as_str) == Some("ENV001")
                })
                .collect();
            for n in 0..PER_TIER {
                let mut i = members[n % members.len()].clone();
                i.id = format!("i-{k:02}{}{n:04}", &tier[5..6].to_lowercase());
                i.tags.insert("Environment".into(), format!("ENV{k:03}"));
                i.state = InstanceState::Stopped;
                i.load_balancers = None;
                out.push(i);
            }
        }
    }
    out
}

struct Outcome {
    throttled: u64,
    /// Seconds from the instant to each run's end, by workload.
    finished: BTreeMap<String, f64>,
    failed: usize,
}

#[derive(Clone, Copy, PartialEq)]
enum Pacing {
    /// Each run as if alone.
    Apart,
    /// The process's one set of buckets for the account.
    Shared,
    /// Calls booked on the account's buckets through the store.
    Store,
}

async fn start_all(pacing: Pacing) -> Outcome {
    let start: DateTime<Utc> = "2026-12-07T08:00:00Z".parse().unwrap();
    let app = App::new(
        Box::new(MemoryStore::new()),
        CloudSpec::SimMemory {
            instances: fleet(),
            start,
            speed: Speed::Max,
        },
        "pacing".into(),
        Arc::default(),
    );
    let app = match pacing {
        Pacing::Apart => app.with_pacing_apart(),
        Pacing::Shared => app,
        Pacing::Store => app.with_pacing_through_store(),
    };
    let text = std::fs::read_to_string(repo("examples/seed/example.json")).unwrap();
    let (template, _, _) = app
        .put_workload_text("ExampleTestCase", "example.json", &text)
        .await
        .unwrap();
    let workloads: Vec<Workload> = (0..WORKLOADS)
        .map(|k| {
            let mut w = template.clone();
            w.name = Name::new(format!("W{k:02}")).unwrap();
            w.workload_tag.value = Name::new(format!("ENV{k:03}")).unwrap();
            w
        })
        .collect();
    // One region for all: one account.
    let cloud = app.connect(&workloads[0]).await.unwrap();
    let req = RunRequest {
        action: Action::Start,
        profile: None,
        scale_in: ScaleIn::ReportOnly,
    };
    let mut active: Vec<(usize, String, DateTime<Utc>)> = Vec::new();
    for (k, w) in workloads.iter().enumerate() {
        let Begin::Started(run) = app
            .begin_run(&cloud, w, &req, None, &mut Quiet)
            .await
            .unwrap()
        else {
            panic!("nothing to do")
        };
        active.push((k, run.id.clone(), start));
    }
    let mut out = Outcome {
        throttled: 0,
        finished: BTreeMap::new(),
        failed: 0,
    };
    let mut turns = 0;
    while !active.is_empty() {
        turns += 1;
        assert!(turns < 100_000, "the runs did not end");
        let now = cloud.now();
        let mut next: Vec<(usize, String, DateTime<Utc>)> = Vec::new();
        for (k, id, due) in active {
            if due > now {
                next.push((k, id, due));
                continue;
            }
            match app.advance(&cloud, &workloads[k], &id).await.unwrap() {
                Next::Wait(d, _) => {
                    next.push((k, id, now + chrono::Duration::from_std(d).unwrap()));
                }
                Next::Done(run) => {
                    let took = (cloud.now() - start).num_milliseconds() as f64 / 1000.0;
                    out.finished.insert(workloads[k].name.to_string(), took);
                    if run.status.as_str() != "succeeded" {
                        out.failed += 1;
                    }
                }
            }
        }
        active = next;
        if let Some(soonest) = active.iter().map(|a| a.2).min() {
            let now = cloud.now();
            if soonest > now {
                cloud
                    .wait((soonest - now).to_std().unwrap_or(Duration::ZERO))
                    .await;
            }
        }
    }
    out.throttled = cloud.sim().unwrap().region.throttled();
    out
}

#[tokio::test]
async fn runs_on_one_account_share_its_buckets() {
    let apart = start_all(Pacing::Apart).await;
    let shared = start_all(Pacing::Shared).await;
    let store = start_all(Pacing::Store).await;
    let last = |o: &Outcome| o.finished.values().cloned().fold(0.0, f64::max);
    let first = |o: &Outcome| o.finished.values().cloned().fold(f64::MAX, f64::min);
    eprintln!(
        "apart: {} throttled, last done after {:.0} s (first {:.0} s); shared: {} throttled, last done after {:.0} s (first {:.0} s)",
        apart.throttled,
        last(&apart),
        first(&apart),
        shared.throttled,
        last(&shared),
        first(&shared)
    );
    eprintln!(
        "through the store: {} throttled, last done after {:.0} s (first {:.0} s)",
        store.throttled,
        last(&store),
        first(&store)
    );
    assert_eq!(apart.finished.len(), WORKLOADS);
    assert_eq!(shared.finished.len(), WORKLOADS);
    for (name, o) in [("shared", &shared), ("through the store", &store)] {
        assert_eq!(o.finished.len(), WORKLOADS, "{name}");
        assert_eq!(o.failed, 0, "{name}");
        assert!(
            o.throttled * 10 <= apart.throttled.max(1),
            "{name}: {} throttled calls; apart: {}",
            o.throttled,
            apart.throttled
        );
        assert!(
            last(o) <= last(&apart) * 1.05,
            "{name} {:.0} s, apart {:.0} s",
            last(o),
            last(&apart)
        );
    }
}
