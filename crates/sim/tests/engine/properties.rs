//! Property tests: random workloads, fleets, faults, and a crash at a random tick
//! followed by a resume in a new "process".

use std::collections::BTreeSet;
use std::time::Duration;

use ec2_scheduler_core::fleet::membership;
use ec2_scheduler_core::plan::ScaleIn;
use ec2_scheduler_core::{Action, InstanceState};
use ec2_scheduler_engine::{Begin, Executor, RunRequest, RunStatus, Settings, Tick};
use ec2_scheduler_sim::{LogEntry, SsmOutcome};
use proptest::prelude::*;

use crate::helpers::*;

#[derive(Debug, Clone)]
struct TierSpec {
    start: i64,
    stop: i64,
    wait: bool,
    probe: bool,
    ignore: bool,
    subset: Option<u8>,
    size: usize,
}

#[derive(Debug, Clone)]
struct Case {
    tiers: Vec<TierSpec>,
    policy: &'static str,
    action: Action,
    profile: bool,
    up: Vec<bool>,
    exempt: Vec<u8>,
    ssm: Vec<u8>,
    silent: Vec<bool>,
    capacity: Option<u32>,
    errors: bool,
    crash_after: usize,
}

fn tier_spec() -> impl Strategy<Value = TierSpec> {
    (
        -1i64..3,
        -1i64..3,
        any::<bool>(),
        prop::bool::weighted(0.3),
        prop::bool::weighted(0.15),
        proptest::option::of(0u8..=100),
        0usize..7,
    )
        .prop_map(
            |(start, stop, wait, probe, ignore, subset, size)| TierSpec {
                start,
                stop,
                wait,
                probe,
                ignore,
                subset,
                size,
            },
        )
}

fn case() -> impl Strategy<Value = Case> {
    (
        proptest::collection::vec(tier_spec(), 1..4),
        prop::sample::select(vec!["abort", "continue", "rollback"]),
        any::<bool>(),
        any::<bool>(),
        proptest::collection::vec(any::<bool>(), 20),
        proptest::collection::vec(0u8..8, 20),
        proptest::collection::vec(0u8..8, 20),
        proptest::collection::vec(prop::bool::weighted(0.08), 20),
        proptest::option::of(0u32..3),
        prop::bool::weighted(0.3),
        0usize..40,
    )
        .prop_map(
            |(
                tiers,
                policy,
                stop,
                profile,
                up,
                exempt,
                ssm,
                silent,
                capacity,
                errors,
                crash_after,
            )| Case {
                tiers,
                policy,
                action: if stop { Action::Stop } else { Action::Start },
                profile,
                up,
                exempt,
                ssm,
                silent,
                capacity,
                errors,
                crash_after,
            },
        )
}

fn yaml(c: &Case) -> String {
    let mut s = format!(
        "version: 1\nworkloads:\n- name: W\n  region: sim\n  workload_tag: {{key: Environment, value: ENV001}}\n  tier_tag_key: Role\n  vpc: vpc-xyz\n  failure_policy: {}\n  tiers:\n",
        c.policy
    );
    for (i, t) in c.tiers.iter().enumerate() {
        s += &format!(
            "  - name: T{i}\n    start: {{order: {}, wait: {}, delay: 3}}\n",
            t.start, t.wait
        );
        s += &format!(
            "    stop: {{order: {}, wait: {}, delay: 3, ignore: {}",
            t.stop, t.wait, t.ignore
        );
        if t.probe {
            s += ", override_file: {path: /keep, os: linux}";
        }
        s += "}\n";
        if let Some(p) = t.subset {
            s += &format!(
                "    profiles: {{p: {{instance_type: m5.large, fleet_subset: \"{p}%\"}}}}\n"
            );
        } else {
            s += "    profiles: {p: {instance_type: m5.large}}\n";
        }
    }
    s
}

fn fleet(c: &Case) -> Vec<ec2_scheduler_core::Instance> {
    let mut out = Vec::new();
    let mut n = 0;
    let azs = ["a", "b", "c"];
    for (t, spec) in c.tiers.iter().enumerate() {
        for _ in 0..spec.size {
            let state = if c.up[n % 20] {
                InstanceState::Running
            } else {
                InstanceState::Stopped
            };
            let tier = format!("T{t}");
            let mut i = instance(
                &format!("i-{n:03}"),
                &[("Environment", "ENV001"), ("Role", &tier)],
                state,
                "t3.small",
                azs[n % 3],
                "vpc-xyz",
            );
            match c.exempt[n % 20] {
                0 => {
                    i.tags.insert("ec2-scheduler:exempt".into(), "true".into());
                }
                1 => {
                    i.tags
                        .insert("ec2-scheduler:exempt".into(), "whenever".into());
                }
                _ => {}
            }
            out.push(i);
            n += 1;
        }
    }
    for (k, (tags, vpc)) in [
        (vec![("Environment", "ENV002"), ("Role", "T0")], "vpc-xyz"),
        (vec![("Environment", "ENV001")], "vpc-xyz"),
        (vec![("Environment", "ENV001"), ("Role", "T0")], "vpc-other"),
        (vec![("Environment", "ENV001"), ("Role", "T9")], "vpc-xyz"),
    ]
    .into_iter()
    .enumerate()
    {
        let state = if c.up[k] {
            InstanceState::Running
        } else {
            InstanceState::Stopped
        };
        out.push(instance(
            &format!("i-decoy{k}"),
            &tags,
            state,
            "t3.small",
            "a",
            vpc,
        ));
    }
    out
}

/// Instances the run must never stop: tagged exempt (or unreadably), in a tier that
/// ignores stop, or whose override-file check is not a confirmed absence.
fn protected(c: &Case, fleet: &[ec2_scheduler_core::Instance]) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for (n, i) in fleet
        .iter()
        .enumerate()
        .filter(|(_, i)| !i.id.contains("decoy"))
    {
        let t: usize = i.tags["Role"][1..].parse().unwrap();
        let spec = &c.tiers[t];
        if c.exempt[n % 20] < 2 || spec.ignore || (spec.probe && c.ssm[n % 20] < 3) {
            out.insert(i.id.clone());
        }
    }
    out
}

fn run_case(c: &Case) -> Result<(), TestCaseError> {
    let workload = workload_from(&yaml(c));
    let fleet = fleet(c);
    let h = Harness::new(workload.clone(), fleet.clone());
    for (n, i) in fleet
        .iter()
        .enumerate()
        .filter(|(_, i)| !i.id.contains("decoy"))
    {
        match c.ssm[n % 20] {
            0 => h.region.set_ssm(&i.id, SsmOutcome::Present),
            1 => h.region.set_ssm(&i.id, SsmOutcome::Timeout),
            2 => h.region.set_ssm(&i.id, SsmOutcome::AgentOffline),
            _ => {}
        }
        if c.silent[n % 20] {
            h.region.faults(|f| {
                f.silent_start_failure.insert(i.id.clone());
            });
        }
    }
    h.region.faults(|f| {
        if let Some(k) = c.capacity {
            f.capacity.insert(("m5.large".into(), "b".into()), k);
        }
        if c.errors {
            f.server_error_rate = 0.05;
        }
    });
    let req = RunRequest {
        action: c.action,
        profile: c.profile.then(|| "p".to_string()),
        scale_in: ScaleIn::Apply,
    };

    // First process: runs until it "crashes" after some ticks.
    let mut first = h.executor();
    let mut run = match pollster::block_on(first.begin(&req, "r1")).unwrap() {
        Begin::Started(r) => *r,
        Begin::NothingToDo(_) => return Ok(()),
        Begin::Resumed(_) => unreachable!("fresh store"),
    };
    let mut finished = false;
    for _ in 0..c.crash_after {
        match pollster::block_on(first.tick(&mut run)).unwrap() {
            Tick::Done => {
                finished = true;
                break;
            }
            Tick::Wait(d) => h.region.advance(d.max(Duration::from_millis(1))),
        }
    }
    drop(first);
    if !finished {
        // Second process: waits out the dead one's lease, then resumes the same run.
        h.region.advance(h.settings.lease);
        let settings = Settings {
            owner: "second".into(),
            ..h.settings.clone()
        };
        let mut second = Executor::new(h.ports(), settings, workload.clone());
        run = match pollster::block_on(second.begin(&req, "r2")).unwrap() {
            Begin::Resumed(r) => *r,
            other => panic!("expected to resume, got {other:?}"),
        };
        prop_assert_eq!(&run.id, "r1");
        prop_assert!(
            h.drive(&mut second, &mut run, 200_000).unwrap(),
            "did not finish"
        );
    }
    prop_assert!(run.status.is_finished());

    // No step was done twice: the resumed process carried on from the checkpoint. An
    // aborted start also does the Resize steps that give types back.
    if run.status != RunStatus::RolledBack {
        for stage in &run.plan.stages {
            for tp in &stage.tiers {
                let undo: usize = run
                    .rollback
                    .iter()
                    .flat_map(|s| &s.tiers)
                    .filter(|t| run.aborted && t.tier == tp.tier)
                    .map(|t| t.steps.len())
                    .sum();
                let done = run
                    .history
                    .iter()
                    .filter(|e| {
                        e.tier.as_deref() == Some(tp.tier.as_str()) && e.what.ends_with(" done")
                    })
                    .count();
                prop_assert!(
                    done <= tp.steps.len() + undo,
                    "tier {} did {} steps of {}",
                    tp.tier,
                    done,
                    tp.steps.len() + undo
                );
            }
        }
    }

    // Nothing outside the workload was touched.
    for id in h.touched() {
        let i = fleet.iter().find(|i| i.id == id).unwrap();
        prop_assert!(
            membership(&workload, i).is_ok(),
            "{} is not a member but was acted on",
            id
        );
    }
    // No protected instance was ever stopped.
    let protected = protected(c, &fleet);
    for e in h.region.log() {
        if let LogEntry::Call {
            action,
            instances,
            error: None,
            ..
        } = e
            && action == "ec2:StopInstances"
        {
            for id in instances {
                let was_up = fleet
                    .iter()
                    .any(|i| i.id == id && i.state == InstanceState::Running);
                prop_assert!(
                    !(protected.contains(&id) && was_up),
                    "{} is protected but was stopped",
                    id
                );
            }
        }
    }
    // Without faults the run succeeds and the workload converges: planning again
    // finds nothing to do but the instances the run kept on purpose (an override file
    // the planner cannot see).
    let faults = c.errors || c.capacity.is_some_and(|k| k > 0) || c.silent.iter().any(|s| *s);
    if !faults {
        prop_assert_eq!(run.status, RunStatus::Succeeded, "{:#?}", run.history);
        h.region.advance(Duration::from_secs(600));
        let mut again = h.executor();
        let plan = pollster::block_on(again.plan(&req)).unwrap();
        let left: Vec<&str> = plan
            .touched()
            .filter(|i| !run.kept.contains_key(*i))
            .collect();
        prop_assert!(left.is_empty(), "not converged: {:?}", plan.stages);
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 200, ..ProptestConfig::default() })]

    #[test]
    fn runs_converge_touch_only_members_and_never_stop_the_protected(c in case()) {
        run_case(&c)?;
    }
}
