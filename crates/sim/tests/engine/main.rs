//! The executor on the simulated region: order, resize, load balancers, exemptions,
//! failure policies, locks, resume.

mod helpers;

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
    h.region.attach(
        web_elb(),
        &web.iter().map(String::as_str).collect::<Vec<_>>(),
    );
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
