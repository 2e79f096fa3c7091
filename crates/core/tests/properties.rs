//! Property tests of the planner's invariants on random workloads and fleets.

mod common;

use std::collections::{BTreeMap, HashSet};

use chrono::Duration;
use common::*;
use ec2_scheduler_core::exemption::{TagExemption, read_tag};
use ec2_scheduler_core::fleet::membership;
use ec2_scheduler_core::model::{FleetSubset, Workload};
use ec2_scheduler_core::plan::{
    AUTO_SCALING_GROUP_TAG, NoteCode, Plan, PlanRequest, ScaleIn, Step, plan,
};
use ec2_scheduler_core::{Action, Exemption, Instance, InstanceState};
use proptest::prelude::*;

const TIERS: [&str; 4] = ["t0", "t1", "t2", "t3"];
const EXEMPT_KEY: &str = "ec2-scheduler:exempt";

#[derive(Debug, Clone)]
struct Case {
    workload: Workload,
    fleet: Vec<Instance>,
    exemptions: Vec<Exemption>,
    action: Action,
    profile: Option<&'static str>,
    scale_in: ScaleIn,
}

fn subset() -> impl Strategy<Value = Option<String>> {
    prop_oneof![
        Just(None),
        (0u8..=100).prop_map(|p| Some(format!("{p}%"))),
        (0u32..8).prop_map(|n| Some(n.to_string())),
    ]
}

fn tier_strategy(name: &'static str) -> impl Strategy<Value = Option<TierBuilder>> {
    (
        proptest::option::of(-2i64..3),
        proptest::option::of(-2i64..3),
        any::<bool>(),
        prop::bool::weighted(0.15),
        prop::bool::weighted(0.2),
        prop::bool::weighted(0.7),
        proptest::option::of(prop::sample::select(vec!["t3.small", "m5.large"])),
        subset(),
    )
        .prop_map(
            move |(start, stop, wait, ignore, probe, present, ty, sub)| {
                if !present {
                    return None;
                }
                let mut t = tier(name);
                if let Some(o) = start {
                    t = t.start(o);
                }
                if let Some(o) = stop {
                    t = t.stop(o);
                    if ignore {
                        t = t.ignore_stop();
                    }
                    if probe {
                        t = t.override_file("/tmp/keep");
                    }
                }
                if wait {
                    t = t.wait();
                }
                if ty.is_some() || sub.is_some() {
                    t = t.profile("p", ty.unwrap_or(""), sub.as_deref().unwrap_or(""));
                }
                Some(t)
            },
        )
}

fn instance_strategy() -> impl Strategy<Value = (u8, u8, u8, u8, u8, u8, u8, u8)> {
    (
        0u8..10,
        0u8..7,
        0u8..4,
        0u8..6,
        0u8..3,
        0u8..2,
        0u8..8,
        0u8..4,
    )
}

fn state(i: u8) -> InstanceState {
    use InstanceState::*;
    [
        Pending,
        Running,
        ShuttingDown,
        Terminated,
        Stopping,
        Stopped,
    ][usize::from(i) % 6]
}

fn case_strategy() -> impl Strategy<Value = Case> {
    (
        tier_strategy(TIERS[0]),
        tier_strategy(TIERS[1]),
        tier_strategy(TIERS[2]),
        tier_strategy(TIERS[3]),
        any::<bool>(),
        proptest::collection::vec(instance_strategy(), 0..40),
        proptest::collection::vec((0usize..40, 0u8..3), 0..6),
        any::<bool>(),
        any::<bool>(),
        any::<bool>(),
    )
        .prop_map(
            |(a, b, c, d, with_vpc, raw, raw_ex, stop, with_profile, scale_in)| {
                let mut w = workload();
                if with_vpc {
                    w = w.vpc(VPC);
                }
                let mut any_profile = false;
                for t in [a, b, c, d].into_iter().flatten() {
                    any_profile |= !t.0.profiles.is_empty();
                    w = w.tier(t);
                }
                let workload = w.build();
                let fleet: Vec<Instance> = raw
                    .iter()
                    .enumerate()
                    .map(|(i, &(wl, tr, vpc, st, az, ty, ex, asg))| {
                        let tier_value = ["t0", "t1", "t2", "t3", "t9", "", "t0"][usize::from(tr)];
                        let mut inst = inst(
                            &format!("i-{i:03}"),
                            tier_value,
                            state(st),
                            ["a", "b", "c"][usize::from(az)],
                        );
                        if tier_value.is_empty() {
                            inst.tags.remove("Role");
                        }
                        match wl {
                            0 => {
                                inst.tags.remove("Env");
                            }
                            1 => {
                                inst.tags.insert("Env".into(), "staging".into());
                            }
                            _ => {}
                        }
                        inst.vpc_id = match vpc {
                            0 | 1 => Some(VPC.to_string()),
                            2 => Some("vpc-2".to_string()),
                            _ => None,
                        };
                        inst.instance_type = ["t3.small", "m5.large"][usize::from(ty)].to_string();
                        let tag = ["", "true", "false", "2026-11-27", "2026-11-25", "junk"];
                        if let Some(v) = tag.get(usize::from(ex)) {
                            inst.tags.insert(EXEMPT_KEY.into(), v.to_string());
                        }
                        if asg == 3 {
                            inst.tags
                                .insert(AUTO_SCALING_GROUP_TAG.into(), "asg-web".into());
                        }
                        inst
                    })
                    .collect();
                let exemptions = raw_ex
                    .into_iter()
                    .filter(|(i, _)| *i < fleet.len())
                    .map(|(i, kind)| Exemption {
                        instance_id: format!("i-{i:03}"),
                        until: match kind {
                            0 => None,
                            1 => Some(now() + Duration::hours(1)),
                            _ => Some(now() - Duration::hours(1)),
                        },
                        reason: "test".into(),
                        created_by: None,
                    })
                    .collect();
                Case {
                    workload,
                    fleet,
                    exemptions,
                    action: if stop { Action::Stop } else { Action::Start },
                    profile: (with_profile && any_profile).then_some("p"),
                    scale_in: if scale_in {
                        ScaleIn::Apply
                    } else {
                        ScaleIn::ReportOnly
                    },
                }
            },
        )
}

fn run(c: &Case, fleet: &[Instance]) -> Plan {
    plan(&PlanRequest {
        workload: &c.workload,
        observed: fleet,
        action: c.action,
        profile: c.profile,
        scale_in: c.scale_in,
        exemptions: &c.exemptions,
        now: now(),
    })
    .unwrap()
}

/// Independent statement of the exemption rule.
fn exempt(c: &Case, i: &Instance) -> bool {
    let tier_ignores = i
        .tags
        .get("Role")
        .and_then(|t| c.workload.tier(t))
        .and_then(|t| t.stop.as_ref())
        .is_some_and(|s| s.ignore);
    let stored = c
        .exemptions
        .iter()
        .any(|e| e.instance_id == i.id && e.until.is_none_or(|u| u > now()));
    let tagged = i
        .tags
        .get(EXEMPT_KEY)
        .is_some_and(|v| read_tag(v, now()) != TagExemption::NotExempt);
    tier_ignores || stored || tagged
}

fn stopped_ids(p: &Plan) -> Vec<&str> {
    p.stages
        .iter()
        .flat_map(|s| &s.tiers)
        .flat_map(|t| &t.steps)
        .filter(|s| {
            matches!(
                s,
                Step::Stop { .. } | Step::Deregister { .. } | Step::ProbeOverride { .. }
            )
        })
        .flat_map(Step::instances)
        .collect()
}

/// Applies a plan to the fleet the simplest way: every step succeeds at once.
fn apply(p: &Plan, fleet: &mut [Instance]) {
    let mut by_id: BTreeMap<String, &mut Instance> =
        fleet.iter_mut().map(|i| (i.id.clone(), i)).collect();
    for step in p
        .stages
        .iter()
        .flat_map(|s| &s.tiers)
        .flat_map(|t| &t.steps)
    {
        match step {
            Step::Stop { instances } => instances
                .iter()
                .for_each(|id| by_id.get_mut(id).unwrap().state = InstanceState::Stopped),
            Step::Start { instances } => instances
                .iter()
                .for_each(|id| by_id.get_mut(id).unwrap().state = InstanceState::Running),
            Step::Resize { changes } => changes
                .iter()
                .for_each(|c| by_id.get_mut(&c.instance).unwrap().instance_type = c.to.clone()),
            Step::WaitUntil { state, instances } => instances
                .iter()
                .for_each(|id| by_id.get_mut(id).unwrap().state = *state),
            _ => {}
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn only_members_are_ever_touched(c in case_strategy()) {
        let p = run(&c, &c.fleet);
        for id in p.touched() {
            let i = c.fleet.iter().find(|i| i.id == id).unwrap();
            prop_assert!(membership(&c.workload, i).is_ok(), "{id} is not a member but is in a step");
        }
    }

    #[test]
    fn exempt_instances_are_never_stopped(c in case_strategy()) {
        let p = run(&c, &c.fleet);
        for id in stopped_ids(&p) {
            let i = c.fleet.iter().find(|i| i.id == id).unwrap();
            prop_assert!(!exempt(&c, i), "{id} is exempt but would be stopped");
        }
    }

    #[test]
    fn members_of_auto_scaling_groups_are_never_stopped_and_always_named(c in case_strategy()) {
        let p = run(&c, &c.fleet);
        for id in stopped_ids(&p) {
            let i = c.fleet.iter().find(|i| i.id == id).unwrap();
            prop_assert!(!i.tags.contains_key(AUTO_SCALING_GROUP_TAG), "{id} is in an Auto Scaling group but would be stopped");
        }
        // A tier with such members says so, whatever the action.
        for i in c.fleet.iter().filter(|i| i.tags.contains_key(AUTO_SCALING_GROUP_TAG)) {
            if let Ok(tier) = membership(&c.workload, i) {
                prop_assert!(
                    c.workload.disabled
                        || p.notes.iter().any(|n| n.code == NoteCode::AutoScalingGroupMembers && n.tier.as_deref() == Some(tier)),
                    "no note for {} in {tier}", i.id
                );
            }
        }
    }

    #[test]
    fn the_plan_does_not_depend_on_observation_order(c in case_strategy(), seed in any::<u64>()) {
        let mut shuffled = c.fleet.clone();
        // A deterministic shuffle driven by the seed.
        let mut s = seed | 1;
        for i in (1..shuffled.len()).rev() {
            s ^= s << 13; s ^= s >> 7; s ^= s << 17;
            shuffled.swap(i, (s % (i as u64 + 1)) as usize);
        }
        prop_assert_eq!(run(&c, &c.fleet), run(&c, &shuffled));
    }

    #[test]
    fn fleet_subsets_start_the_right_number_and_balance_zones(c in case_strategy()) {
        prop_assume!(c.action == Action::Start);
        let p = run(&c, &c.fleet);
        for tp in p.stages.iter().flat_map(|s| &s.tiers) {
            let members: Vec<&Instance> = c.fleet.iter().filter(|i| membership(&c.workload, i) == Ok(tp.tier.as_str())).collect();
            let n = members.len();
            let subset = c.profile.and_then(|pn| c.workload.tier(&tp.tier).unwrap().profiles.iter().find(|(k, _)| k.as_str() == pn)).and_then(|(_, p)| p.fleet_subset);
            // Reference rounding: half up, a positive percentage never gives zero.
            let target = match subset {
                None => n,
                Some(FleetSubset::Count(k)) => (k as usize).min(n),
                Some(FleetSubset::Percent(0)) => 0,
                Some(FleetSubset::Percent(pc)) => (((pc as f64) * (n as f64) / 100.0 + 0.5).floor() as usize).clamp(1, n.max(1)).min(n),
            };
            prop_assert_eq!(tp.target, Some(target));
            let up = members.iter().filter(|i| i.state.is_up()).count();
            let down: Vec<&&Instance> = members.iter().filter(|i| i.state.is_down()).collect();
            let started: HashSet<&str> = tp.steps.iter().filter(|s| matches!(s, Step::Start { .. })).flat_map(Step::instances).collect();
            prop_assert_eq!(started.len(), target.saturating_sub(up).min(down.len()));
            // Instances still stopping are started only when every stopped one is.
            if down.iter().any(|d| d.state == InstanceState::Stopping && started.contains(d.id.as_str())) {
                prop_assert!(down.iter().filter(|d| d.state == InstanceState::Stopped).all(|d| started.contains(d.id.as_str())),
                    "a stopping instance was started while a stopped one was left");
            }
            if up == 0 {
                // Zone balance: a zone may exceed another by more than one only if
                // the other has no stopped instance left.
                let mut chosen: BTreeMap<&str, usize> = BTreeMap::new();
                let mut left: BTreeMap<&str, usize> = BTreeMap::new();
                for d in &down {
                    if started.contains(d.id.as_str()) {
                        *chosen.entry(d.az.as_str()).or_default() += 1;
                    } else if d.state == InstanceState::Stopped {
                        *left.entry(d.az.as_str()).or_default() += 1;
                    }
                    chosen.entry(d.az.as_str()).or_default();
                }
                for (za, ca) in &chosen {
                    for (zb, cb) in &chosen {
                        prop_assert!(*ca <= cb + 1 || left.get(zb).copied().unwrap_or(0) == 0,
                            "zone {za} got {ca}, zone {zb} got {cb} with candidates left");
                    }
                }
            }
        }
    }

    #[test]
    fn plan_apply_plan_again_is_empty(c in case_strategy()) {
        let p = run(&c, &c.fleet);
        let mut fleet = c.fleet.clone();
        apply(&p, &mut fleet);
        let again = run(&c, &fleet);
        prop_assert!(again.is_empty(), "second plan not empty: {}", render(&again));
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    /// A stopped tier started with a fleet subset: zone counts differ by at most one
    /// unless a zone ran out of instances.
    #[test]
    fn a_subset_of_a_stopped_tier_is_spread_evenly(
        zones in proptest::collection::vec(0usize..4, 1..30),
        pct in 1u8..=100,
    ) {
        let w = workload().tier(tier("web").start(0).profile("p", "", &format!("{pct}%"))).build();
        let fleet: Vec<Instance> = zones
            .iter()
            .enumerate()
            .map(|(i, z)| inst(&format!("i-{:03}", (i * 7919) % 1000), "web", InstanceState::Stopped, ["a", "b", "c", "d"][*z]))
            .collect();
        let mut ids = HashSet::new();
        prop_assume!(fleet.iter().all(|i| ids.insert(i.id.clone())));
        let p = ask(&w, &fleet, Action::Start).profile("p").plan();
        let started: HashSet<&str> = p.stages[0].tiers[0].steps.iter().filter(|s| matches!(s, Step::Start { .. })).flat_map(Step::instances).collect();
        let mut chosen: BTreeMap<&str, usize> = BTreeMap::new();
        let mut left: BTreeMap<&str, usize> = BTreeMap::new();
        for i in &fleet {
            chosen.entry(i.az.as_str()).or_default();
            if started.contains(i.id.as_str()) {
                *chosen.get_mut(i.az.as_str()).unwrap() += 1;
            } else {
                *left.entry(i.az.as_str()).or_default() += 1;
            }
        }
        for (za, ca) in &chosen {
            for (zb, cb) in &chosen {
                prop_assert!(*ca <= cb + 1 || left.get(zb).copied().unwrap_or(0) == 0,
                    "zone {za} got {ca}, zone {zb} got {cb} with instances left");
            }
        }
    }
}
