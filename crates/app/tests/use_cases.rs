//! The use cases on the simulator, as a driver calls them.

use std::path::PathBuf;
use std::sync::Arc;

use ec2_scheduler_app::sim::read_fleet;
use ec2_scheduler_app::workloads::{load_files, pick};
use ec2_scheduler_app::{App, Begin, CloudSpec, Error, Kind, Next, Outcome, Quiet, Speed};
use ec2_scheduler_core::plan::ScaleIn;
use ec2_scheduler_core::{Action, Workload};
use ec2_scheduler_engine::run::RunEvent;
use ec2_scheduler_engine::{RunRequest, RunStatus};
use ec2_scheduler_store::SqliteStore;

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn workload() -> Workload {
    let loaded = load_files(&[repo().join("examples/seed/example.json")]).unwrap();
    pick(&loaded, "ExampleTestCase").unwrap().clone()
}

fn app(store: &std::path::Path, owner: &str) -> App {
    App::new(
        Box::new(SqliteStore::open(store).unwrap()),
        CloudSpec::SimMemory {
            instances: read_fleet(&repo().join("examples/seed/fleet-running.json")).unwrap(),
            start: ec2_scheduler_sim::epoch(),
            speed: Speed::Max,
        },
        owner.into(),
        Arc::default(),
    )
}

fn temp(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("ec2s-app-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir.join("state.db")
}

fn stop() -> RunRequest {
    RunRequest {
        action: Action::Stop,
        profile: None,
        scale_in: ScaleIn::ReportOnly,
    }
}

#[tokio::test]
async fn a_run_advanced_one_tick_at_a_time_ends_as_one_driven_to_the_end() {
    let w = workload();
    // Driven to the end.
    let a = app(&temp("drive"), "a");
    let cloud = a.connect(&w).await.unwrap();
    let Outcome::Finished(driven) = a.run(&cloud, &w, &stop(), None, &mut Quiet).await.unwrap()
    else {
        panic!("nothing to do")
    };
    // One tick at a time, the driver waiting in between.
    let b = app(&temp("advance"), "b");
    let cloud = b.connect(&w).await.unwrap();
    let Begin::Started(run) = b
        .begin_run(&cloud, &w, &stop(), None, &mut Quiet)
        .await
        .unwrap()
    else {
        panic!("not started")
    };
    let mut ticks = 0;
    let run = loop {
        ticks += 1;
        match b.advance(&cloud, &w, &run.id).await.unwrap() {
            Next::Wait(d, _) => cloud.wait(d).await,
            Next::Done(run) => break run,
        }
    };
    assert!(ticks > 1);
    assert_eq!(run.status, RunStatus::Succeeded);
    assert_eq!(driven.status, RunStatus::Succeeded);
    assert_eq!(run.stopped_ids, driven.stopped_ids);
    // Resuming under the same owner each tick is not news.
    assert_eq!(
        run.history
            .iter()
            .filter(|e| e.event == Some(RunEvent::Resumed))
            .count(),
        0,
        "{:#?}",
        run.history
    );
    // Both waited for the web tier's connections to drain (30 s on the simulator)
    // between taking its instances out of the load balancer and stopping them.
    let drained = |run: &ec2_scheduler_engine::Run| {
        let at = |what: &str| {
            run.history
                .iter()
                .find(|e| e.tier.as_deref() == Some("Role_Web") && e.text().contains(what))
                .unwrap_or_else(|| panic!("no {what} in {:#?}", run.history))
                .at
        };
        (at("StopInstances") - at("deregistered")).num_seconds()
    };
    assert!(drained(&driven) >= 30, "driven: {}", drained(&driven));
    assert!(drained(&run) >= 30, "advanced: {}", drained(&run));
    // The run is in the store as the driver left it.
    assert_eq!(
        b.run_record(&run.id).await.unwrap().status,
        RunStatus::Succeeded
    );
}

#[tokio::test]
async fn a_busy_workload_is_a_conflict_and_a_cancelled_run_frees_it() {
    let w = workload();
    let store = temp("busy");
    let first = app(&store, "first");
    let cloud = first.connect(&w).await.unwrap();
    let Begin::Started(run) = first
        .begin_run(&cloud, &w, &stop(), None, &mut Quiet)
        .await
        .unwrap()
    else {
        panic!("not started")
    };

    // Another caller: the workload is busy, and says who holds it.
    let second = app(&store, "second");
    let other = second.connect(&w).await.unwrap();
    let e = second
        .begin_run(&other, &w, &stop(), None, &mut Quiet)
        .await
        .unwrap_err();
    assert_eq!(e.kind(), Kind::Conflict, "{e}");
    assert!(matches!(&e, Error::Busy(l) if l.owner == "first" && l.run_id == run.id));
    let e = second.advance(&other, &w, &run.id).await.unwrap_err();
    assert_eq!(e.kind(), Kind::Conflict, "{e}");

    // Cancelled: recorded, the lock released; the first caller's next tick is done.
    let cancelled = second.cancel(&run.id).await.unwrap();
    assert_eq!(cancelled.status, RunStatus::Cancelled);
    assert!(cancelled.history.last().is_some_and(|e| e.event
        == Some(RunEvent::Cancelled {
            by: "second".into()
        })
        && e.text() == "cancelled by second"));
    assert!(matches!(
        first.advance(&cloud, &w, &run.id).await.unwrap(),
        Next::Done(r) if r.status == RunStatus::Cancelled
    ));
    let again = second.cancel(&run.id).await.unwrap_err();
    assert_eq!(again.kind(), Kind::Conflict, "{again}");
    assert!(matches!(
        second
            .begin_run(&other, &w, &stop(), None, &mut Quiet)
            .await
            .unwrap(),
        Begin::Started(_)
    ));

    // Unknown runs are not found.
    let e = second.cancel("run-nope").await.unwrap_err();
    assert_eq!(e.kind(), Kind::NotFound, "{e}");
}

/// The example fleet twice: the second copy tagged for a second workload.
fn two_workloads() -> (App, Workload, Workload) {
    let first = workload();
    let mut second = first.clone();
    second.name = "Second".to_string().try_into().unwrap();
    second.workload_tag.value = "ENV009".to_string().try_into().unwrap();
    let mut fleet = read_fleet(&repo().join("examples/seed/fleet-running.json")).unwrap();
    let copies: Vec<_> = fleet
        .iter()
        .map(|i| {
            let mut c = i.clone();
            c.id = format!("{}-b", i.id);
            c.tags.insert("Environment".into(), "ENV009".into());
            c
        })
        .collect();
    fleet.extend(copies);
    let app = App::new(
        Box::new(SqliteStore::open(&temp("observed")).unwrap()),
        CloudSpec::SimMemory {
            instances: fleet,
            start: ec2_scheduler_sim::epoch(),
            speed: Speed::Max,
        },
        "reader".into(),
        Arc::default(),
    );
    (app, first, second)
}

fn describes(cloud: &ec2_scheduler_app::Cloud) -> usize {
    cloud.sim().unwrap().region.calls("ec2:DescribeInstances")
}

fn members(s: &ec2_scheduler_app::status::Status) -> Vec<(String, Vec<String>)> {
    s.tiers
        .iter()
        .map(|t| {
            let mut ids: Vec<_> = t.members.iter().map(|m| m.instance.id.clone()).collect();
            ids.sort();
            (t.name.clone(), ids)
        })
        .collect()
}

#[tokio::test]
async fn reads_share_one_observation_and_the_list_observes_many_workloads_in_one_call() {
    use ec2_scheduler_app::clouds::Clouds;
    let (app, first, second) = two_workloads();
    let clouds = Clouds::new(&app).with_max_age(std::time::Duration::from_secs(3600));
    let cloud = clouds.get(&app, &first).await.unwrap();

    // Both workloads in one DescribeInstances call, each with only its own members.
    let before = describes(&cloud);
    let both = app
        .statuses(&clouds, &[first.clone(), second.clone()])
        .await
        .unwrap();
    assert_eq!(describes(&cloud) - before, 1);
    let listed: Vec<_> = both.iter().map(|s| members(s.as_ref().unwrap())).collect();
    for (w, listed) in [&first, &second].into_iter().zip(&listed) {
        // As a fresh observation of the workload alone sees it.
        assert_eq!(listed, &members(&app.status(&cloud, w).await.unwrap()));
    }
    assert!(listed[0].iter().all(|(_, ids)| !ids.is_empty()));
    assert!(
        listed[1]
            .iter()
            .all(|(_, ids)| ids.iter().all(|id| id.ends_with("-b")))
    );
    assert!(
        listed[0]
            .iter()
            .all(|(_, ids)| ids.iter().all(|id| !id.ends_with("-b")))
    );

    // Status reads within the age are answered from that observation.
    let before = describes(&cloud);
    for _ in 0..5 {
        app.status_seen(&clouds, &first).await.unwrap();
        app.statuses(&clouds, &[first.clone(), second.clone()])
            .await
            .unwrap();
    }
    assert_eq!(describes(&cloud), before);

    // A changed definition is observed again.
    clouds.forget(first.name.as_str()).await;
    app.status_seen(&clouds, &first).await.unwrap();
    assert_eq!(describes(&cloud), before + 1);

    // With no age allowed, every read observes.
    let fresh = Clouds::new(&app).with_max_age(std::time::Duration::ZERO);
    let cloud = fresh.get(&app, &first).await.unwrap();
    let before = describes(&cloud);
    for _ in 0..3 {
        fresh.observed(&app, &first).await.unwrap();
    }
    assert_eq!(describes(&cloud) - before, 3);
}
