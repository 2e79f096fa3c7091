//! The executor on the simulated region: order, resize, load balancers, exemptions,
//! failure policies, locks, resume.

mod helpers;
mod properties;

use chrono::{DateTime, Utc};
use ec2_scheduler_core::{Action, InstanceState::*};
use helpers::*;

fn latest(
    times: &std::collections::BTreeMap<String, DateTime<Utc>>,
    ids: &[String],
) -> DateTime<Utc> {
    ids.iter().map(|i| times[i]).max().unwrap()
}

fn earliest(
    times: &std::collections::BTreeMap<String, DateTime<Utc>>,
    ids: &[String],
) -> DateTime<Utc> {
    ids.iter().map(|i| times[i]).min().unwrap()
}

#[test]
fn stop_then_start_of_the_seed_example() {
    let fleet = seed_fleet(6, Running);
    let h = Harness::new(seed_workload(), fleet.clone());
    let run = h.run(Action::Stop, None).unwrap();
    assert_eq!(run.status.as_str(), "succeeded", "{:#?}", run.history);
    // The seed example does not wait for tiers to stop: let the last ones finish.
    h.region.advance(std::time::Duration::from_secs(60));
    for id in tier_ids(&fleet, "Role_Web")
        .iter()
        .chain(&tier_ids(&fleet, "Role_App"))
        .chain(&tier_ids(&fleet, "Role_DB"))
    {
        assert_eq!(h.state(id), Stopped, "{id}");
    }
    for decoy in ["i-decoy-other-env", "i-decoy-no-tier", "i-decoy-other-vpc"] {
        assert_eq!(h.state(decoy), Running);
    }
    let run = h.run(Action::Start, Some("profileD")).unwrap();
    assert_eq!(run.status.as_str(), "succeeded", "{:#?}", run.history);
    for id in tier_ids(&fleet, "Role_Web") {
        let i = h.region.instance(&id).unwrap();
        assert_eq!((i.state, i.instance_type.as_str()), (Running, "c4.large"));
    }
    for id in tier_ids(&fleet, "Role_DB") {
        assert_eq!(h.region.instance(&id).unwrap().instance_type, "r4.large");
    }
    assert!(h.touched().iter().all(|i| !i.contains("decoy")));
}

fn synced(
    per_tier: usize,
    state: ec2_scheduler_core::InstanceState,
    policy: &str,
) -> (Harness, Vec<ec2_scheduler_core::Instance>) {
    let fleet = seed_fleet(per_tier, state);
    let h = Harness::new(synced_workload(policy), fleet.clone());
    let web: Vec<String> = tier_ids(&fleet, "Role_Web");
    if state == Running {
        h.region.attach(
            web_elb(),
            &web.iter().map(String::as_str).collect::<Vec<_>>(),
        );
    } else {
        // As a previous stop run leaves them: out of the load balancer, remembered.
        let entries: Vec<(String, ec2_scheduler_engine::ports::LbTarget)> =
            web.iter().map(|i| (i.clone(), web_elb())).collect();
        pollster::block_on(h.store.park("ExampleTestCase", &entries)).unwrap();
    }
    (h, fleet)
}

#[test]
fn no_tier_stops_before_the_previous_one_is_stopped() {
    let (h, fleet) = synced(9, Running, "abort");
    let run = h.run(Action::Stop, None).unwrap();
    assert_eq!(run.status.as_str(), "succeeded", "{:#?}", run.history);
    let stopping = h.entered(Stopping);
    let stopped = h.entered(Stopped);
    let (web, app, db) = (
        tier_ids(&fleet, "Role_Web"),
        tier_ids(&fleet, "Role_App"),
        tier_ids(&fleet, "Role_DB"),
    );
    assert!(earliest(&stopping, &app) >= latest(&stopped, &web) + chrono::TimeDelta::seconds(10));
    assert!(earliest(&stopping, &db) >= latest(&stopped, &app) + chrono::TimeDelta::seconds(10));
    assert!(h.touched().iter().all(|i| !i.contains("decoy")));
}

#[test]
fn no_tier_starts_before_the_previous_one_is_running_and_resize_comes_first() {
    let (h, fleet) = synced(9, Stopped, "abort");
    let run = h.run(Action::Start, Some("profileD")).unwrap();
    assert_eq!(run.status.as_str(), "succeeded", "{:#?}", run.history);
    let pending = h.entered(Pending);
    let running = h.entered(Running);
    let (web, app, db) = (
        tier_ids(&fleet, "Role_Web"),
        tier_ids(&fleet, "Role_App"),
        tier_ids(&fleet, "Role_DB"),
    );
    assert!(earliest(&pending, &app) >= latest(&running, &db) + chrono::TimeDelta::seconds(10));
    assert!(earliest(&pending, &web) >= latest(&running, &app) + chrono::TimeDelta::seconds(10));
    // Every type change precedes that instance's start.
    for e in h.region.log() {
        if let ec2_scheduler_sim::LogEntry::Type {
            at, instance, to, ..
        } = e
        {
            assert!(
                at <= pending[&instance],
                "{instance} resized after it started"
            );
            assert_eq!(h.region.instance(&instance).unwrap().instance_type, to);
        }
    }
    assert_eq!(run.resized_ids.len(), 27);
}

#[test]
fn load_balancer_deregistration_precedes_stop_and_registration_follows_start() {
    let (h, fleet) = synced(6, Running, "abort");
    let web = tier_ids(&fleet, "Role_Web");
    h.run(Action::Stop, None).unwrap();
    assert!(
        h.region.registered(&web_elb()).is_empty(),
        "still registered after stop"
    );
    let stopping = h.entered(Stopping);
    let mut dereg = std::collections::BTreeMap::new();
    for e in h.region.log() {
        if let ec2_scheduler_sim::LogEntry::Lb {
            at,
            instance,
            registered: false,
            ..
        } = e
        {
            dereg.insert(instance, at);
        }
    }
    for id in &web {
        // Deregistered, drained (30 s), then stopped.
        assert!(
            dereg[id] + chrono::TimeDelta::seconds(30) <= stopping[id],
            "{id}"
        );
    }
    let run = h.run(Action::Start, None).unwrap();
    assert_eq!(run.status.as_str(), "succeeded", "{:#?}", run.history);
    let mut registered = h.region.registered(&web_elb());
    registered.sort();
    assert_eq!(registered, web);
    let running = h.entered(Running);
    for e in h.region.log() {
        if let ec2_scheduler_sim::LogEntry::Lb {
            at,
            instance,
            registered: true,
            ..
        } = e
        {
            assert!(at >= running[&instance]);
        }
    }
}

use ec2_scheduler_core::Exemption;
use ec2_scheduler_core::plan::ScaleIn;
use ec2_scheduler_engine::ports::RunStore;
use ec2_scheduler_engine::{EngineError, RunStatus};
use ec2_scheduler_sim::SsmOutcome;

#[test]
fn every_exemption_path_keeps_its_instance_running() {
    let (h, fleet) = synced(6, Running, "continue");
    let web = tier_ids(&fleet, "Role_Web");
    let app = tier_ids(&fleet, "Role_App");
    // (b) exemption tag; (c) stored exemption; (a) SSM: present, timeout, agent offline.
    h.region.edit(&web[0], |i| {
        i.tags.insert("ec2-scheduler:exempt".into(), "true".into());
    });
    pollster::block_on(h.store.add_exemption(&Exemption {
        instance_id: web[1].clone(),
        until: None,
        reason: "load test".into(),
        created_by: None,
    }))
    .unwrap();
    h.region.set_ssm(&app[0], SsmOutcome::Present);
    h.region.set_ssm(&app[1], SsmOutcome::Timeout);
    h.region.set_ssm(&app[2], SsmOutcome::AgentOffline);
    let run = h.run(Action::Stop, None).unwrap();
    assert_eq!(run.status, RunStatus::Succeeded, "{:#?}", run.history);
    for id in [&web[0], &web[1], &app[0], &app[1], &app[2]] {
        assert_eq!(h.state(id), Running, "{id} was stopped");
        assert_eq!(h.calls_naming("ec2:StopInstances", id), 0);
    }
    for id in web[2..].iter().chain(&app[3..]) {
        assert_eq!(h.state(id), Stopped, "{id}");
    }
    let kept: Vec<String> = run
        .kept
        .iter()
        .map(|(i, k)| format!("{i}: {}", k.reason))
        .collect();
    assert_eq!(kept.len(), 3, "{kept:?}");
    assert!(
        kept.iter().any(|k| k.contains("/tmp/keep is present")),
        "{kept:?}"
    );
    assert!(
        kept.iter()
            .any(|k| k.contains("no answer about /tmp/keep within 120 s")),
        "{kept:?}"
    );
    assert!(
        kept.iter().any(|k| k.contains("agent is offline")),
        "{kept:?}"
    );
    assert_eq!(run.plan.excluded.len(), 2);
}

#[test]
fn an_exemption_tag_set_after_planning_is_honoured() {
    let (h, fleet) = synced(3, Running, "abort");
    let db = tier_ids(&fleet, "Role_DB");
    let mut exec = h.executor();
    let mut run = h
        .begin(&mut exec, Action::Stop, None, ScaleIn::ReportOnly, "r1")
        .unwrap()
        .unwrap();
    // The plan includes the DB instance; someone tags it before its tier is reached.
    assert!(run.plan.touched().any(|i| i == db[0]));
    h.region.edit(&db[0], |i| {
        i.tags
            .insert("ec2-scheduler:exempt".into(), "2099-01-01T00:00:00Z".into());
    });
    assert!(h.drive(&mut exec, &mut run, 10_000).unwrap());
    assert_eq!(h.state(&db[0]), Running);
    assert!(run.kept[&db[0]].reason.contains("exemption tag"));
}

#[test]
fn an_instance_retagged_out_of_the_workload_mid_run_is_not_touched() {
    let (h, fleet) = synced(3, Running, "abort");
    let db = tier_ids(&fleet, "Role_DB");
    let mut exec = h.executor();
    let mut run = h
        .begin(&mut exec, Action::Stop, None, ScaleIn::ReportOnly, "r1")
        .unwrap()
        .unwrap();
    h.region.edit(&db[1], |i| {
        i.tags.insert("Environment".into(), "PROD".into());
    });
    assert!(h.drive(&mut exec, &mut run, 10_000).unwrap());
    assert_eq!(h.state(&db[1]), Running);
    assert!(!h.touched().contains(&db[1]));
}

#[test]
fn the_kill_switch_and_an_already_stopped_workload_do_nothing() {
    let mut w = synced_workload("abort");
    w.disabled = true;
    let h = Harness::new(w, seed_fleet(3, Running));
    assert!(h.run(Action::Stop, None).is_none());
    assert!(h.touched().is_empty());
    let (h, _) = synced(3, Stopped, "abort");
    assert!(h.run(Action::Stop, None).is_none());
    assert!(h.touched().is_empty());
}

#[test]
fn a_dry_run_changes_nothing() {
    let (h, _) = synced(6, Running, "abort");
    let before = h.region.instances();
    let mut exec = h.executor();
    let req = ec2_scheduler_engine::RunRequest {
        action: Action::Stop,
        profile: None,
        scale_in: ScaleIn::ReportOnly,
    };
    let plan = pollster::block_on(exec.plan(&req)).unwrap();
    assert_eq!(plan.summary.to_stop, 18);
    assert_eq!(h.region.instances(), before);
    assert!(h.touched().is_empty());
    assert!(
        pollster::block_on(h.store.list_runs(None))
            .unwrap()
            .is_empty()
    );
}

#[test]
fn fleet_subset_scale_out_and_scale_in() {
    let (h, fleet) = synced(6, Stopped, "abort");
    let run = h.run(Action::Start, Some("half")).unwrap();
    assert_eq!(run.status, RunStatus::Succeeded, "{:#?}", run.history);
    for tier in ["Role_Web", "Role_App", "Role_DB"] {
        let ids = tier_ids(&fleet, tier);
        let up: Vec<&String> = ids.iter().filter(|i| h.state(i) == Running).collect();
        assert_eq!(up.len(), 3, "{tier}");
        // One per zone.
        let mut azs: Vec<String> = up
            .iter()
            .map(|i| h.region.instance(i).unwrap().az)
            .collect();
        azs.sort();
        azs.dedup();
        assert_eq!(azs.len(), 3, "{tier}");
    }
    // Scale out to all.
    let run = h.run(Action::Start, None).unwrap();
    assert_eq!(run.started_ids.len(), 9);
    assert_eq!(h.states().values().filter(|s| **s == Running).count(), 18);
    // Back to half: reported without --scale-in, applied with it.
    assert!(h.run(Action::Start, Some("half")).is_none());
    let run = h
        .run_with(Action::Start, Some("half"), ScaleIn::Apply)
        .unwrap();
    assert_eq!(run.stopped_ids.len(), 9, "{:#?}", run.history);
    h.region.advance(std::time::Duration::from_secs(120));
    assert_eq!(h.states().values().filter(|s| **s == Running).count(), 9);
}

#[test]
fn abort_stops_at_the_failed_tier() {
    let (h, fleet) = synced(3, Stopped, "abort");
    let app = tier_ids(&fleet, "Role_App");
    h.region.faults(|f| {
        f.capacity
            .insert(("t2.nano".into(), "us-west-2a".into()), u32::MAX);
    });
    let run = h.run(Action::Start, None).unwrap();
    assert_eq!(run.status, RunStatus::Failed);
    assert!(
        run.failed[&app[0]]
            .reason
            .contains("InsufficientInstanceCapacity"),
        "{:?}",
        run.failed
    );
    // The other app instances started; the web tier never did.
    assert_eq!(h.state(&app[1]), Running);
    assert!(
        tier_ids(&fleet, "Role_Web")
            .iter()
            .all(|i| h.state(i) == Stopped)
    );
}

#[test]
fn continue_goes_on_after_a_silent_start_failure() {
    let (h, fleet) = synced(3, Stopped, "continue");
    let db = tier_ids(&fleet, "Role_DB");
    h.region.faults(|f| {
        f.silent_start_failure.insert(db[2].clone());
    });
    let run = h.run(Action::Start, None).unwrap();
    assert_eq!(
        run.status,
        RunStatus::CompletedWithFailures,
        "{:#?}",
        run.history
    );
    assert!(
        run.failed[&db[2]].reason.contains("Client.InternalError"),
        "{:?}",
        run.failed
    );
    assert!(
        tier_ids(&fleet, "Role_Web")
            .iter()
            .all(|i| h.state(i) == Running)
    );
}

#[test]
fn rollback_stops_what_the_run_started() {
    let (h, fleet) = synced(3, Stopped, "rollback");
    let web = tier_ids(&fleet, "Role_Web");
    h.region.faults(|f| {
        f.silent_start_failure.insert(web[0].clone());
    });
    let run = h.run(Action::Start, None).unwrap();
    assert_eq!(run.status, RunStatus::RolledBack, "{:#?}", run.history);
    h.region.advance(std::time::Duration::from_secs(120));
    for (id, s) in h.states() {
        if !id.contains("decoy") {
            assert_eq!(s, Stopped, "{id}");
        }
    }
    assert!(h.region.registered(&web_elb()).is_empty());
}

#[test]
fn capacity_errors_are_retried_and_other_instances_proceed() {
    let (h, fleet) = synced(6, Stopped, "abort");
    let db = tier_ids(&fleet, "Role_DB");
    // Two failures, then capacity comes back.
    h.region.faults(|f| {
        f.capacity
            .insert(("t2.large".into(), "us-west-2b".into()), 2);
    });
    let run = h.run(Action::Start, None).unwrap();
    assert_eq!(run.status, RunStatus::Succeeded, "{:#?}", run.history);
    assert!(db.iter().all(|i| h.state(i) == Running));
    assert!(run.retried >= 2);
}

#[test]
fn an_incompatible_type_is_a_clear_failure() {
    let (h, fleet) = synced(3, Stopped, "continue");
    h.region.faults(|f| {
        f.incompatible_types.insert("r4.large".into());
    });
    let run = h.run(Action::Start, Some("profileD")).unwrap();
    let db = tier_ids(&fleet, "Role_DB");
    assert!(
        run.failed[&db[0]]
            .reason
            .contains("cannot change type to r4.large"),
        "{:?}",
        run.failed
    );
    assert_eq!(
        h.state(&db[0]),
        Stopped,
        "an instance that could not be resized must not start"
    );
}

#[test]
fn a_second_run_is_refused_while_the_first_holds_the_lock() {
    let (h, _) = synced(3, Running, "abort");
    let mut first = h.executor();
    let mut run = h
        .begin(&mut first, Action::Stop, None, ScaleIn::ReportOnly, "first")
        .unwrap()
        .unwrap();
    let settings = ec2_scheduler_engine::Settings {
        owner: "someone-else".into(),
        ..h.settings.clone()
    };
    let mut second = ec2_scheduler_engine::Executor::new(h.ports(), settings, h.workload.clone());
    let req = ec2_scheduler_engine::RunRequest {
        action: Action::Start,
        profile: None,
        scale_in: ScaleIn::ReportOnly,
    };
    match pollster::block_on(second.begin(&req, "second")) {
        Err(EngineError::Busy(lock)) => {
            assert_eq!(lock.owner, "test");
            assert_eq!(lock.run_id, "first");
            let msg = EngineError::Busy(lock).to_string();
            assert!(msg.contains("run first of test holds its lock"), "{msg}");
        }
        other => panic!("expected Busy, got {other:?}"),
    }
    assert!(h.drive(&mut first, &mut run, 10_000).unwrap());
    // Once the first run is done the lock is free.
    assert!(pollster::block_on(second.begin(&req, "second")).is_ok());
}

#[test]
fn an_expired_lease_can_be_taken_over_and_the_run_resumes() {
    let (h, fleet) = synced(6, Running, "abort");
    let mut first = h.executor();
    let mut run = h
        .begin(&mut first, Action::Stop, None, ScaleIn::ReportOnly, "first")
        .unwrap()
        .unwrap();
    for _ in 0..8 {
        if let ec2_scheduler_engine::Tick::Wait(d) =
            pollster::block_on(first.tick(&mut run)).unwrap()
        {
            h.region.advance(d);
        }
    }
    drop(first); // the process dies
    let settings = ec2_scheduler_engine::Settings {
        owner: "new-process".into(),
        ..h.settings.clone()
    };
    let mut second = ec2_scheduler_engine::Executor::new(h.ports(), settings, h.workload.clone());
    let req = ec2_scheduler_engine::RunRequest {
        action: Action::Stop,
        profile: None,
        scale_in: ScaleIn::ReportOnly,
    };
    assert!(matches!(
        pollster::block_on(second.begin(&req, "second")),
        Err(EngineError::Busy(_))
    ));
    h.region.advance(h.settings.lease);
    let mut resumed = match pollster::block_on(second.begin(&req, "second")).unwrap() {
        ec2_scheduler_engine::Begin::Resumed(r) => *r,
        other => panic!("expected a resumed run, got {other:?}"),
    };
    assert_eq!(resumed.id, "first");
    assert!(h.drive(&mut second, &mut resumed, 10_000).unwrap());
    assert_eq!(resumed.status, RunStatus::Succeeded);
    for id in tier_ids(&fleet, "Role_Web")
        .iter()
        .chain(&tier_ids(&fleet, "Role_DB"))
    {
        assert_eq!(h.state(id), Stopped);
        assert_eq!(
            h.calls_naming("ec2:StopInstances", id),
            1,
            "{id} stopped twice"
        );
    }
}

#[test]
fn notifications_cover_the_run() {
    let (h, _) = synced(3, Running, "abort");
    h.region.set_ssm("i-app0000", SsmOutcome::Present);
    h.run(Action::Stop, None).unwrap();
    let published = h.region.published();
    let events: Vec<String> = published
        .iter()
        .map(|(_, n)| n.body["event"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(
        events,
        [
            "run-started",
            "tier-finished",
            "tier-finished",
            "tier-finished",
            "run-finished"
        ]
    );
    assert!(published.iter().all(|(t, _)| t == "ops"));
    let app = published
        .iter()
        .find(|(_, n)| n.body["tier"] == "Role_App")
        .unwrap();
    assert!(
        app.1.body["kept"][0]["reason"]
            .as_str()
            .unwrap()
            .contains("present")
    );
    let last = &published.last().unwrap().1;
    assert!(last.subject.contains("succeeded"), "{}", last.subject);
    assert_eq!(last.body["stopped"], 8);
    assert!(
        last.body["api_calls"]["ec2:StopInstances"]
            .as_u64()
            .unwrap()
            >= 3
    );
}

#[test]
fn throttled_and_failed_calls_are_retried_until_the_run_converges() {
    // The account's buckets are far smaller than the engine assumes (as when other
    // clients share them), and one call in five fails with a server error.
    let fleet = seed_fleet(30, Running);
    let mut cfg = ec2_scheduler_sim::SimConfig::default();
    cfg.limits.mutating = ec2_scheduler_engine::pace::BucketSpec {
        capacity: 1.0,
        refill_per_sec: 0.2,
    };
    cfg.limits.describe = ec2_scheduler_engine::pace::BucketSpec {
        capacity: 2.0,
        refill_per_sec: 1.0,
    };
    let h = Harness::with_config(synced_workload("abort"), fleet.clone(), cfg);
    h.region.faults(|f| f.server_error_rate = 0.2);
    let run = h.run(Action::Stop, None).unwrap();
    assert_eq!(run.status, RunStatus::Succeeded, "{:#?}", run.failed);
    assert!(
        h.region.throttled() > 0,
        "the test should have been throttled"
    );
    assert!(run.retried > 0);
    for id in tier_ids(&fleet, "Role_Web")
        .iter()
        .chain(&tier_ids(&fleet, "Role_DB"))
    {
        assert_eq!(h.state(id), Stopped);
    }
}

#[test]
fn a_hibernating_tier_hibernates_and_stops_instances_that_cannot() {
    let text = "version: 1\nworkloads:\n- name: W\n  region: r\n  workload_tag: {key: Environment, value: ENV001}\n  tier_tag_key: Role\n  tiers:\n  - {name: Role_Web, stop: {order: 0, wait: true, hibernate: true}}\n";
    let fleet = seed_fleet(6, Running);
    let h = Harness::new(workload_from(text), fleet.clone());
    let web = tier_ids(&fleet, "Role_Web");
    h.region.faults(|f| {
        f.no_hibernation.insert(web[2].clone());
    });
    let run = h.run(Action::Stop, None).unwrap();
    assert_eq!(run.status, RunStatus::Succeeded, "{:#?}", run.history);
    assert!(web.iter().all(|i| h.state(i) == Stopped));
    let hibernated = h.region.hibernated();
    assert_eq!(hibernated.len(), 5);
    assert!(!hibernated.contains(&web[2]));
    assert!(
        run.history
            .iter()
            .any(|e| e.what.contains("cannot hibernate"))
    );
}

#[test]
fn configured_load_balancers_receive_started_instances() {
    // The tier names its load balancer; its instances were never registered anywhere.
    let text = "version: 1\nworkloads:\n- name: W\n  region: r\n  workload_tag: {key: Environment, value: ENV001}\n  tier_tag_key: Role\n  tiers:\n  - {name: Role_Web, start: {order: 0, wait: true}, load_balancers: [web-elb, \"arn:aws:elasticloadbalancing:r:1:targetgroup/web/1\"]}\n";
    let fleet = seed_fleet(3, Stopped);
    let h = Harness::new(workload_from(text), fleet.clone());
    let run = h.run(Action::Start, None).unwrap();
    assert_eq!(run.status, RunStatus::Succeeded, "{:#?}", run.history);
    let mut web = tier_ids(&fleet, "Role_Web");
    web.sort();
    let mut classic = h.region.registered(&web_elb());
    classic.sort();
    assert_eq!(classic, web);
    let tg = ec2_scheduler_engine::ports::LbTarget::from_name(
        "arn:aws:elasticloadbalancing:r:1:targetgroup/web/1",
    );
    assert_eq!(h.region.registered(&tg).len(), 3);
}

#[test]
fn a_readiness_gate_under_a_throttling_storm_that_never_ends_fails_at_its_timeout() {
    let w = workload_from(
        "version: 1
workloads:
  - name: W
    region: us-west-2
    workload_tag: { key: Environment, value: ENV001 }
    tier_tag_key: Role
    tiers:
      - name: Role_DB
        start: { order: 0, wait: true, ready: { gate: status-checks, timeout: 120 } }
",
    );
    let fleet: Vec<_> = seed_fleet(2, Stopped)
        .into_iter()
        .filter(|i| i.tags.get("Role").map(String::as_str) == Some("Role_DB"))
        .filter(|i| i.tags.get("Environment").map(String::as_str) == Some("ENV001"))
        .collect();
    let h = Harness::new(w, fleet.clone());
    h.region.faults(|f| {
        f.always_throttled
            .insert("ec2:DescribeInstanceStatus".into());
    });
    let run = h.run(Action::Start, None).unwrap();
    assert_eq!(run.status, RunStatus::Failed);
    for i in &fleet {
        let f = &run.failed[&i.id];
        assert!(
            f.reason
                .contains("not ready (status-checks) within 120 s: the check kept failing: RequestLimitExceeded"),
            "{:?}",
            run.failed
        );
    }
    // It gave up at its deadline, not long after: the start (15 s) and the timeout.
    let secs = (run.finished.unwrap() - run.started).num_seconds();
    assert!((120..=200).contains(&secs), "{secs} s");
    // Its retries grew: the backoff doubles (with jitter in its upper half), so each
    // wait is strictly longer than the one two before, and a few calls cover the two
    // minutes instead of one a second.
    let checks: Vec<DateTime<Utc>> = h
        .region
        .log()
        .into_iter()
        .filter_map(|e| match e {
            ec2_scheduler_sim::LogEntry::Call { at, action, .. }
                if action == "ec2:DescribeInstanceStatus" =>
            {
                Some(at)
            }
            _ => None,
        })
        .collect();
    assert!((3..=20).contains(&checks.len()), "{} checks", checks.len());
    let gaps: Vec<i64> = checks
        .windows(2)
        .map(|w| (w[1] - w[0]).num_milliseconds())
        .collect();
    for i in 0..3.min(gaps.len().saturating_sub(2)) {
        assert!(gaps[i + 2] > gaps[i], "{gaps:?}");
    }
}

#[test]
fn a_step_whose_observations_keep_being_throttled_ends_with_a_clear_reason() {
    let (h, fleet) = synced(2, Stopped, "continue");
    let mut exec = h.executor();
    let mut run = h
        .begin(&mut exec, Action::Start, None, ScaleIn::ReportOnly, "storm")
        .unwrap()
        .unwrap();
    // From here on, every DescribeInstances is throttled: the run cannot see.
    h.region.faults(|f| {
        f.always_throttled.insert("ec2:DescribeInstances".into());
    });
    assert!(h.drive(&mut exec, &mut run, 10_000).unwrap(), "did not end");
    assert_eq!(run.status, RunStatus::CompletedWithFailures);
    let members: Vec<&String> = fleet
        .iter()
        .filter(|i| i.tags.get("Environment").map(String::as_str) == Some("ENV001"))
        .filter(|i| i.tags.contains_key("Role") && !i.id.contains("decoy"))
        .map(|i| &i.id)
        .collect();
    assert_eq!(members.len(), 6);
    for id in members {
        let f = run
            .failed
            .get(id)
            .unwrap_or_else(|| panic!("{id} not failed: {:#?}", run.history));
        assert!(
            f.reason
                .contains("could not be observed: RequestLimitExceeded"),
            "{id}: {}",
            f.reason
        );
    }
    assert!(run.started_ids.is_empty());
    // Each observation gave up after max_retries retries with growing waits, not
    // after a timeout or never.
    let describes = h
        .region
        .log()
        .into_iter()
        .filter(|e| matches!(e, ec2_scheduler_sim::LogEntry::Call { action, .. } if action == "ec2:DescribeInstances"))
        .count();
    let tiers = 3;
    assert!(describes <= tiers * 9 + 1, "{describes} describes");
    let secs = (run.finished.unwrap() - run.started).num_seconds();
    assert!(secs < 3 * 300, "{secs} s");
}

#[test]
fn a_storm_that_never_ends_ends_the_run_even_with_a_new_executor_each_tick() {
    // As `serve` and the run step drive a run: each tick a new executor, which
    // forgets what the last one counted. Every call the policy may make again counts
    // its failures in a row with the run, so each gives up at the retry bound (8)
    // and the run ends, with the reason, instead of retrying forever.
    let cases = [
        (
            "ec2:StopInstances",
            Action::Stop,
            None,
            "gave up after 8 retries",
        ),
        (
            "ec2:ModifyInstanceAttribute",
            Action::Start,
            Some("profileD"),
            "cannot change type to",
        ),
        (
            "ec2:DescribeInstances",
            Action::Start,
            None,
            "could not be observed",
        ),
        (
            "elb:DescribeMemberships",
            Action::Stop,
            None,
            "could not find its load balancers",
        ),
        (
            "elb:Deregister",
            Action::Stop,
            None,
            "could not be taken out of",
        ),
        (
            "elb:Register",
            Action::Start,
            None,
            "could not be registered with",
        ),
    ];
    for (call, action, profile, reason) in cases {
        let state = if action == Action::Stop {
            Running
        } else {
            Stopped
        };
        let (h, _) = synced(2, state, "continue");
        let mut exec = h.executor();
        let run = h
            .begin(&mut exec, action, profile, ScaleIn::ReportOnly, "storm")
            .unwrap()
            .unwrap();
        h.region.faults(|f| {
            f.always_throttled.insert(call.into());
        });
        let run = h
            .drive_per_tick(&run, 5_000)
            .unwrap_or_else(|| panic!("{call}: the run did not end"));
        assert_ne!(run.status, RunStatus::Running, "{call}");
        let reasons: Vec<&str> = run
            .failed
            .values()
            .map(|f| f.reason.as_str())
            .chain(run.kept.values().map(|k| k.reason.as_str()))
            .collect();
        assert!(
            reasons.iter().any(|r| r.contains(reason)),
            "{call}: {reasons:?}"
        );
        assert!(
            run.failing_calls.is_empty(),
            "{call}: {:?}",
            run.failing_calls
        );
        // Nine calls (the first and eight retries) for each thing given up on, at
        // most: 2 instances a tier, 3 tiers.
        let made = h.region.calls(call);
        assert!((9..=9 * 6).contains(&made), "{call}: {made} calls");
    }
}

/// A start with profileD of 300 stopped instances (every one resized: 300
/// ModifyInstanceAttribute calls on the mutating bucket) on an account whose limits
/// are `k` times the published ones, which the engine is not told.
fn resize_start_on(k: f64) -> (ec2_scheduler_engine::Run, u64) {
    let cfg = ec2_scheduler_sim::SimConfig {
        limits: ec2_scheduler_engine::pace::Limits::AWS.scaled(k),
        ..Default::default()
    };
    let h = Harness::with_config(seed_workload(), seed_fleet(100, Stopped), cfg);
    let run = h.run(Action::Start, Some("profileD")).unwrap();
    (run, h.region.throttled())
}

#[test]
fn pacing_finds_the_account_s_real_limits() {
    let secs = |r: &ec2_scheduler_engine::Run| {
        (r.finished.unwrap() - r.started).num_milliseconds() as f64 / 1000.0
    };
    let (published, throttled) = resize_start_on(1.0);
    assert_eq!(published.status, RunStatus::Succeeded);
    // Lower limits: throttled calls are retried, nothing fails.
    let (half, half_throttled) = resize_start_on(0.5);
    assert_eq!(half.status, RunStatus::Succeeded, "{:#?}", half.failed);
    assert!(half.failed.is_empty());
    assert!(half_throttled > throttled && half.retried > 0);
    assert!(secs(&half) > secs(&published));
    // Higher limits: used, so the same start finishes sooner.
    let (triple, _) = resize_start_on(3.0);
    assert_eq!(triple.status, RunStatus::Succeeded);
    assert!(
        secs(&triple) < 0.8 * secs(&published),
        "3x: {} s, published: {} s",
        secs(&triple),
        secs(&published)
    );
    eprintln!(
        "start with profileD, 300 instances: 0.5x {:.1} s ({half_throttled} throttled), 1x {:.1} s ({throttled} throttled), 3x {:.1} s",
        secs(&half),
        secs(&published),
        secs(&triple)
    );
}

#[test]
fn what_pacing_learned_is_kept_with_the_run_across_executors() {
    // A driver that makes a new executor for each tick, as `serve` does.
    let cfg = ec2_scheduler_sim::SimConfig {
        limits: ec2_scheduler_engine::pace::Limits::AWS.scaled(3.0),
        ..Default::default()
    };
    let h = Harness::with_config(seed_workload(), seed_fleet(100, Stopped), cfg);
    let mut exec = h.executor();
    let mut run = h
        .begin(
            &mut exec,
            Action::Start,
            Some("profileD"),
            ScaleIn::ReportOnly,
            "r1",
        )
        .unwrap()
        .unwrap();
    let mut ticks = 0;
    loop {
        ticks += 1;
        let mut exec = h.executor();
        let mut resumed = pollster::block_on(exec.resume(&run.id)).unwrap();
        // Each executor starts from what the last one learned.
        assert_eq!(resumed.pacing, run.pacing);
        match pollster::block_on(exec.tick(&mut resumed)).unwrap() {
            ec2_scheduler_engine::Tick::Done => break,
            ec2_scheduler_engine::Tick::Wait(d) => {
                pollster::block_on(exec.checkpoint(&mut resumed)).unwrap();
                h.region.advance(d.max(std::time::Duration::from_millis(1)))
            }
        }
        run = resumed;
        assert!(ticks < 100_000);
    }
    let run = pollster::block_on(h.executor().resume(&run.id)).unwrap();
    assert_eq!(run.status, RunStatus::Succeeded);
    // The 300 resizes went through on a 3x account, tick after tick: the mutating
    // rate rose well above the published 5 a second, and the stored run says so
    // (each executor alone would raise it by 5 % a call from 5, and the last ones,
    // which resize nothing, would record nothing).
    let learned = run.pacing.get("mutating").copied();
    assert!(learned.is_some_and(|l| l.rate > 10.0), "{learned:?}");
}

#[test]
fn a_run_whose_lock_was_released_never_acts_again() {
    // As `runs cancel` does: the lock is released while the run waits between
    // tiers; the run's ticks that only look go on, the first that would act stops.
    let (h, fleet) = synced(3, Running, "abort");
    let mut exec = h.executor();
    let mut run = h
        .begin(&mut exec, Action::Stop, None, ScaleIn::ReportOnly, "r")
        .unwrap()
        .unwrap();
    // Tick until the first tier's stop call went out.
    let stops = |h: &Harness| {
        h.region
            .log()
            .iter()
            .filter(|e| matches!(e, ec2_scheduler_sim::LogEntry::Call { action, error: None, .. } if action == "ec2:StopInstances"))
            .count()
    };
    while stops(&h) == 0 {
        match pollster::block_on(exec.tick(&mut run)).unwrap() {
            ec2_scheduler_engine::Tick::Wait(d) => h.region.advance(d),
            ec2_scheduler_engine::Tick::Done => panic!("finished at once"),
        }
    }
    pollster::block_on(h.store.release("ExampleTestCase", "test", None)).unwrap();
    let lost = loop {
        match pollster::block_on(exec.tick(&mut run)) {
            Ok(ec2_scheduler_engine::Tick::Wait(d)) => h.region.advance(d),
            Ok(ec2_scheduler_engine::Tick::Done) => panic!("the run finished without its lock"),
            Err(e) => break e,
        }
    };
    assert!(matches!(lost, EngineError::LockLost(_)), "{lost}");
    assert_eq!(stops(&h), 1, "no stop was sent after the lock was released");
    // The second tier is still running.
    assert!(
        tier_ids(&fleet, "Role_DB")
            .iter()
            .all(|id| h.state(id) == Running)
    );
}

#[test]
fn a_rollback_gives_instances_resized_but_not_started_their_type_back() {
    let (h, fleet) = synced(3, Stopped, "rollback");
    let db = tier_ids(&fleet, "Role_DB");
    let before: std::collections::BTreeMap<String, String> = db
        .iter()
        .map(|id| (id.clone(), h.region.instance(id).unwrap().instance_type))
        .collect();
    // No r4.large capacity in db[0]'s zone, ever: db[0] (and any db instance in that
    // zone) is resized to r4.large and then cannot start.
    let zone = h.region.instance(&db[0]).unwrap().az;
    h.region.faults(|f| {
        f.capacity
            .insert(("r4.large".into(), zone.clone()), u32::MAX);
    });
    let run = h.run(Action::Start, Some("profileD")).unwrap();
    assert_eq!(run.status, RunStatus::RolledBack, "{:#?}", run.history);
    h.region.advance(std::time::Duration::from_secs(120));
    let mut restored = 0;
    for id in &db {
        let i = h.region.instance(id).unwrap();
        assert_eq!(i.state, Stopped, "{id}");
        if i.az == zone {
            // Resized, never started: its type is what it was.
            assert_eq!(i.instance_type, before[id], "{id}");
            restored += 1;
        }
    }
    assert!(restored >= 1);
}

#[test]
fn an_aborted_start_gives_instances_resized_but_not_started_their_type_back() {
    let (h, fleet) = synced(3, Stopped, "abort");
    let db = tier_ids(&fleet, "Role_DB");
    let app = tier_ids(&fleet, "Role_App");
    let zone = h.region.instance(&db[0]).unwrap().az;
    let before = h.region.instance(&db[0]).unwrap().instance_type;
    let app_types: Vec<String> = app
        .iter()
        .map(|id| h.region.instance(id).unwrap().instance_type)
        .collect();
    h.region.faults(|f| {
        f.capacity
            .insert(("r4.large".into(), zone.clone()), u32::MAX);
    });
    let run = h.run(Action::Start, Some("profileD")).unwrap();
    assert_eq!(run.status, RunStatus::Failed, "{:#?}", run.history);
    assert!(run.aborted);
    assert!(run.failed.contains_key(&db[0]));
    // The instance that could not start has its type back; the ones that started
    // keep running at the profile's type; the next tier was never touched.
    let i = h.region.instance(&db[0]).unwrap();
    assert_eq!(
        (i.state, i.instance_type.as_str()),
        (Stopped, before.as_str())
    );
    for id in db
        .iter()
        .filter(|id| h.region.instance(id).unwrap().az != zone)
    {
        let i = h.region.instance(id).unwrap();
        assert_eq!(
            (i.state, i.instance_type.as_str()),
            (Running, "r4.large"),
            "{id}"
        );
    }
    assert!(app.iter().all(|id| h.state(id) == Stopped));
    // The next tier's changes made ahead of its stage are given back too.
    assert!(
        run.history
            .iter()
            .any(|e| e.tier.as_deref() == Some("Role_App") && e.text().contains("ahead")),
        "{:#?}",
        run.history
    );
    let now: Vec<String> = app
        .iter()
        .map(|id| h.region.instance(id).unwrap().instance_type)
        .collect();
    assert_eq!(now, app_types);
    assert!(
        run.history
            .iter()
            .any(|e| e.text().contains("giving back the types"))
    );
}

/// A start with profileD of `per_tier` stopped instances a tier, every one resized;
/// when each instance entered pending and running, and when its type changed.
fn resized_start(
    per_tier: usize,
) -> (
    Harness,
    ec2_scheduler_engine::Run,
    [Vec<String>; 3],
    [Times; 3],
) {
    let (h, fleet) = synced(per_tier, Stopped, "abort");
    let run = h.run(Action::Start, Some("profileD")).unwrap();
    assert_eq!(run.status, RunStatus::Succeeded, "{:#?}", run.history);
    let tiers = ["Role_DB", "Role_App", "Role_Web"].map(|t| tier_ids(&fleet, t));
    let mut resized = Times::new();
    for e in h.region.log() {
        if let ec2_scheduler_sim::LogEntry::Type { at, instance, .. } = e {
            resized.insert(instance, at);
        }
    }
    assert_eq!(resized.len(), 3 * per_tier);
    // Tiers still start in order, each after the previous one is running; no
    // instance started sooner than the resize delay after its own type change, and
    // each started at the profile's type.
    let (pending, running) = (h.entered(Pending), h.entered(Running));
    let [db, app, web] = &tiers;
    assert!(earliest(&pending, app) >= latest(&running, db));
    assert!(earliest(&pending, web) >= latest(&running, app));
    let settle = chrono::TimeDelta::seconds(h.workload.resize_delay_secs as i64);
    assert!(settle > chrono::TimeDelta::zero());
    for (id, at) in &resized {
        assert!(pending[id] >= *at + settle, "{id} started too soon");
    }
    for (ids, to) in [(db, "r4.large"), (app, "c4.large"), (web, "c4.large")] {
        for id in ids {
            assert_eq!(h.region.instance(id).unwrap().instance_type, to, "{id}");
        }
    }
    (h, run, tiers, [resized, pending, running])
}

type Times = std::collections::BTreeMap<String, DateTime<Utc>>;

#[test]
fn a_start_with_a_profile_resizes_later_tiers_ahead_and_starts_a_tier_before_its_last_resize() {
    // 600 instances: the type changes (50 at once, then 5 a second) take about 110 s,
    // longer than a tier's start.
    let (_, run, [db, app, web], [resized, pending, running]) = resized_start(200);
    // The first tier began starting before its last type change.
    assert!(earliest(&pending, &db) < latest(&resized, &db));
    // Later tiers' changes began while the tier before them started: the mutating
    // calls never paused, so the last change came about 110 s after the first.
    assert!(earliest(&resized, &app) < latest(&running, &db));
    assert!(earliest(&resized, &web) < latest(&running, &app));
    let span = (latest(&resized, &web) - earliest(&resized, &db)).num_seconds();
    assert!(
        span <= 115,
        "type changes over {span} s\n{:#?}",
        run.history
    );

    // 180 instances: the later tiers' changes are all made before their stage, and
    // the pause after them is already over when it comes.
    let (_, run, [db, app, _], [resized, pending, running]) = resized_start(60);
    let ahead: Vec<_> = run
        .history
        .iter()
        .filter(|e| e.text().contains("type changes made ahead of its stage"))
        .collect();
    assert_eq!(ahead.len(), 2, "{:#?}", run.history);
    assert!(latest(&resized, &app) < latest(&running, &db));
    // App starts as soon as it may: at the end of the first tier's delay.
    let delay = chrono::TimeDelta::seconds(10);
    assert!(
        earliest(&pending, &app) <= latest(&running, &db) + delay + chrono::TimeDelta::seconds(6)
    );
}

#[test]
fn the_end_of_a_tier_is_seen_within_about_a_second_whatever_the_transition_times() {
    // Heavy-tailed stop times (20 to 120 s, 1 % of them 3 to 10 minutes): each tier's
    // wait ends a second at most after its last instance stopped.
    let cfg = ec2_scheduler_sim::SimConfig {
        tail: Some(ec2_scheduler_sim::HeavyTail::default()),
        seed: 7,
        ..Default::default()
    };
    let fleet = seed_fleet(60, Running);
    let h = Harness::with_config(synced_workload("abort"), fleet.clone(), cfg);
    h.region.attach(
        web_elb(),
        &tier_ids(&fleet, "Role_Web")
            .iter()
            .map(String::as_str)
            .collect::<Vec<_>>(),
    );
    let run = h.run(Action::Stop, None).unwrap();
    assert_eq!(run.status, RunStatus::Succeeded, "{:#?}", run.history);
    let stopped = h.entered(Stopped);
    let order = ["Role_Web", "Role_App", "Role_DB"].map(|t| tier_ids(&fleet, t));
    for (tier, ids) in ["Role_Web", "Role_App", "Role_DB"].iter().zip(&order) {
        let seen = run
            .history
            .iter()
            .find(|e| e.tier.as_deref() == Some(tier) && e.text() == "wait done")
            .unwrap()
            .at;
        let late = (seen - latest(&stopped, ids)).num_milliseconds();
        assert!((0..=1500).contains(&late), "{tier}: seen {late} ms late");
    }
    let end = (run.finished.unwrap() - latest(&stopped, &order[2])).num_milliseconds();
    assert!(end <= 1500, "the run ended {end} ms after the last stop");
}

#[test]
fn members_of_an_auto_scaling_group_stay_running_so_the_group_replaces_none() {
    use ec2_scheduler_core::plan::{AUTO_SCALING_GROUP_TAG, ExclusionReason, NoteCode};
    use ec2_scheduler_engine::ports::Compute;
    let in_group = |h: &Harness, ids: &[String]| {
        for id in ids {
            h.region.edit(id, |i| {
                i.tags
                    .insert(AUTO_SCALING_GROUP_TAG.into(), "web-asg".into());
            });
        }
    };
    // What the group does with an instance stopped behind its back: terminates it
    // and launches another, so the next start would find twice the fleet.
    let (bare, fleet) = synced(3, Running, "continue");
    let web = tier_ids(&fleet, "Role_Web");
    in_group(&bare, &web[..1]);
    pollster::block_on(Compute::stop(&bare.region, &web[..1], false)).unwrap();
    bare.region.advance(std::time::Duration::from_secs(600));
    assert_eq!(bare.state(&web[0]), Terminated);
    let replacement = format!("{}-r1", web[0]);
    assert_eq!(bare.state(&replacement), Running);
    // A scheduled stop of a tier with two such members keeps them running, says why,
    // and stops the rest: nothing is replaced.
    let (h, fleet) = synced(3, Running, "continue");
    let web = tier_ids(&fleet, "Role_Web");
    in_group(&h, &web[..2]);
    let run = h.run(Action::Stop, None).unwrap();
    assert_eq!(run.status, RunStatus::Succeeded, "{:#?}", run.history);
    h.region.advance(std::time::Duration::from_secs(600));
    for id in &web[..2] {
        assert_eq!(h.state(id), Running, "{id}");
        assert_eq!(h.calls_naming("ec2:StopInstances", id), 0, "{id}");
    }
    assert!(web[2..].iter().all(|id| h.state(id) == Stopped));
    assert_eq!(h.states().len(), fleet.len(), "an instance was replaced");
    let excluded: Vec<&ExclusionReason> = run
        .plan
        .excluded
        .iter()
        .filter(|e| web[..2].contains(&e.instance))
        .map(|e| &e.reason)
        .collect();
    assert_eq!(
        excluded,
        [&ExclusionReason::AutoScalingGroup {
            group: "web-asg".into()
        }; 2]
    );
    let note = run
        .plan
        .notes
        .iter()
        .find(|n| n.code == NoteCode::AutoScalingGroupMembers)
        .unwrap();
    assert_eq!(note.tier.as_deref(), Some("Role_Web"));
    assert!(note.message.contains("web-asg"), "{}", note.message);
    // Tagged into the group after planning (AttachInstances): the last check before
    // the stop keeps it too.
    let (h, fleet) = synced(3, Running, "continue");
    let db = tier_ids(&fleet, "Role_DB");
    let mut exec = h.executor();
    let mut run = h
        .begin(&mut exec, Action::Stop, None, ScaleIn::ReportOnly, "r1")
        .unwrap()
        .unwrap();
    in_group(&h, &db[..1]);
    assert!(h.drive(&mut exec, &mut run, 10_000).unwrap());
    assert_eq!(h.state(&db[0]), Running);
    assert!(
        run.kept[&db[0]]
            .reason
            .contains("Auto Scaling group web-asg"),
        "{:?}",
        run.kept
    );
}
