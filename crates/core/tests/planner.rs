//! Data-driven planner tests: each builds a workload and a fleet, plans, and compares a
//! compact rendering of the plan with the expected text (`UPDATE_EXPECT=1` rewrites).

mod common;

use common::*;
use ec2_scheduler_core::model::Gate;
use ec2_scheduler_core::plan::{PlanError, PlanRequest, ScaleIn, plan};
use ec2_scheduler_core::{Action, Exemption, InstanceState::*};
use expect_test::expect;

/// The original README's example workload: DB, App, Web.
fn three_tiers() -> ec2_scheduler_core::Workload {
    workload()
        .tier(
            tier("Role_DB")
                .start(0)
                .stop(2)
                .delay(10)
                .profile("default", "t2.large", "")
                .profile("profileD", "r4.large", ""),
        )
        .tier(
            tier("Role_App")
                .start(1)
                .stop(1)
                .delay(10)
                .profile("profileD", "c4.large", ""),
        )
        .tier(
            tier("Role_Web")
                .start(2)
                .stop(0)
                .delay(10)
                .profile("profileD", "c4.large", ""),
        )
        .build()
}

fn fleet(state: ec2_scheduler_core::InstanceState) -> Vec<ec2_scheduler_core::Instance> {
    vec![
        inst("i-web1", "Role_Web", state, "a"),
        inst("i-web2", "Role_Web", state, "b"),
        inst("i-app1", "Role_App", state, "a"),
        inst("i-db1", "Role_DB", state, "c"),
        // decoys: another workload, no tier tag, a tier value nobody configured
        with_tag(inst("i-decoy1", "Role_Web", state, "a"), "Env", "staging"),
        without_tag(inst("i-decoy2", "Role_Web", state, "a"), "Role"),
        inst("i-decoy3", "Role_Cache", state, "a"),
    ]
}

#[test]
fn stop_runs_web_then_app_then_db() {
    let w = three_tiers();
    let f = fleet(Running);
    expect![[r#"
        stage 0: Role_Web
          Role_Web members=2 up=2 down=0
            deregister i-web1 i-web2
            stop i-web1 i-web2
            pause 10s BeforeNextStage
        stage 1: Role_App
          Role_App members=1 up=1 down=0
            deregister i-app1
            stop i-app1
            pause 10s BeforeNextStage
        stage 2: Role_DB
          Role_DB members=1 up=1 down=0
            deregister i-db1
            stop i-db1
        ignored: no-tier=2 other-vpc=0 gone=0
    "#]]
    .assert_eq(&ask(&w, &f, Action::Stop).render());
}

#[test]
fn start_with_profile_runs_db_then_app_then_web_and_resizes() {
    let w = three_tiers();
    let f = fleet(Stopped);
    expect![[r#"
        stage 0: Role_DB
          Role_DB members=1 up=0 down=1 target=1
            resize i-db1:t3.small->r4.large
            pause 4s AfterResize
            start i-db1
            register i-db1
            pause 10s BeforeNextStage
        stage 1: Role_App
          Role_App members=1 up=0 down=1 target=1
            resize i-app1:t3.small->c4.large
            pause 4s AfterResize
            start i-app1
            register i-app1
            pause 10s BeforeNextStage
        stage 2: Role_Web
          Role_Web members=2 up=0 down=2 target=2
            resize i-web1:t3.small->c4.large i-web2:t3.small->c4.large
            pause 4s AfterResize
            start i-web1 i-web2
            register i-web1 i-web2
        ignored: no-tier=2 other-vpc=0 gone=0
    "#]]
    .assert_eq(&ask(&w, &f, Action::Start).profile("profileD").render());
}

#[test]
fn decoys_never_appear_in_steps() {
    let w = three_tiers();
    for state in [Running, Stopped] {
        let f = fleet(state);
        for action in [Action::Start, Action::Stop] {
            let p = ask(&w, &f, action).plan();
            assert!(
                p.touched().all(|id| !id.contains("decoy")),
                "{action} {state}"
            );
        }
    }
}

#[test]
fn vpc_scopes_membership() {
    let w = workload().vpc(VPC).tier(tier("web").stop(0)).build();
    let f = vec![
        inst("i-1", "web", Running, "a"),
        in_vpc(inst("i-2", "web", Running, "a"), "vpc-other"),
        {
            let mut i = inst("i-3", "web", Running, "a");
            i.vpc_id = None;
            i
        },
    ];
    expect![[r#"
        stage 0: web
          web members=1 up=1 down=0
            deregister i-1
            stop i-1
        ignored: no-tier=0 other-vpc=2 gone=0
    "#]]
    .assert_eq(&ask(&w, &f, Action::Stop).render());
}

#[test]
fn equal_orders_form_one_stage_and_gaps_and_negatives_are_fine() {
    let w = workload()
        .tier(tier("a").stop(-5).delay(3))
        .tier(tier("b").stop(40).delay(3))
        .tier(tier("c").stop(40).delay(3))
        .build();
    let f = vec![
        inst("i-a", "a", Running, "z"),
        inst("i-b", "b", Running, "z"),
        inst("i-c", "c", Running, "z"),
    ];
    expect![[r#"
        stage -5: a
          a members=1 up=1 down=0
            deregister i-a
            stop i-a
            pause 3s BeforeNextStage
        stage 40: b c
          b members=1 up=1 down=0
            deregister i-b
            stop i-b
          c members=1 up=1 down=0
            deregister i-c
            stop i-c
    "#]]
    .assert_eq(&ask(&w, &f, Action::Stop).render());
}

#[test]
fn exemption_tag_values() {
    let w = workload().tier(tier("web").stop(0)).build();
    let k = "ec2-scheduler:exempt";
    let f = vec![
        with_tag(inst("i-empty", "web", Running, "a"), k, ""),
        with_tag(inst("i-true", "web", Running, "a"), k, "True"),
        with_tag(inst("i-false", "web", Running, "a"), k, "false"),
        with_tag(
            inst("i-future", "web", Running, "a"),
            k,
            "2026-11-27T08:00:00Z",
        ),
        with_tag(
            inst("i-past", "web", Running, "a"),
            k,
            "2026-11-25T08:00:00Z",
        ),
        with_tag(inst("i-date", "web", Running, "a"), k, "2026-11-26"),
        with_tag(inst("i-junk", "web", Running, "a"), k, "until friday"),
        inst("i-plain", "web", Running, "a"),
    ];
    expect![[r#"
        stage 0: web
          web members=8 up=8 down=0
            deregister i-false i-past i-plain
            stop i-false i-past i-plain
        excluded i-date (web): exemption tag ec2-scheduler:exempt="2026-11-26" until 2026-11-27T00:00:00+00:00
        excluded i-empty (web): exemption tag ec2-scheduler:exempt=""
        excluded i-future (web): exemption tag ec2-scheduler:exempt="2026-11-27T08:00:00Z" until 2026-11-27T08:00:00+00:00
        excluded i-junk (web): exemption tag ec2-scheduler:exempt="until friday" is not understood (expected true, false, an RFC 3339 time or YYYY-MM-DD); kept running to be safe
        excluded i-true (web): exemption tag ec2-scheduler:exempt="True"
        note [web] i-junk: exemption tag ec2-scheduler:exempt="until friday" is not understood; treated as exempt
    "#]]
    .assert_eq(&ask(&w, &f, Action::Stop).render());
}

#[test]
fn stored_exemptions_apply_until_they_expire() {
    let w = workload().tier(tier("web").stop(0)).build();
    let f = vec![
        inst("i-1", "web", Running, "a"),
        inst("i-2", "web", Running, "a"),
        inst("i-3", "web", Running, "a"),
    ];
    let ex = vec![
        Exemption {
            instance_id: "i-1".into(),
            until: None,
            reason: "load test".into(),
            created_by: None,
        },
        Exemption {
            instance_id: "i-2".into(),
            until: Some("2026-11-26T11:00:00Z".parse().unwrap()),
            reason: "expired".into(),
            created_by: None,
        },
        Exemption {
            instance_id: "i-3".into(),
            until: Some("2026-11-26T13:00:00Z".parse().unwrap()),
            reason: "demo".into(),
            created_by: None,
        },
    ];
    expect![[r#"
        stage 0: web
          web members=3 up=3 down=0
            deregister i-2
            stop i-2
        excluded i-1 (web): stored exemption: load test
        excluded i-3 (web): stored exemption until 2026-11-26T13:00:00+00:00: demo
    "#]]
    .assert_eq(&ask(&w, &f, Action::Stop).exemptions(&ex).render());
}

#[test]
fn ignore_stop_tier_is_left_running_and_says_why() {
    let w = workload()
        .tier(tier("batch").stop(0).ignore_stop())
        .tier(tier("web").stop(1))
        .build();
    let f = vec![
        inst("i-b", "batch", Running, "a"),
        inst("i-w", "web", Running, "a"),
    ];
    expect![[r#"
        stage 0: batch
          batch members=1 up=1 down=0
        stage 1: web
          web members=1 up=1 down=0
            deregister i-w
            stop i-w
        excluded i-b (batch): tier is configured to ignore stop
    "#]]
    .assert_eq(&ask(&w, &f, Action::Stop).render());
}

#[test]
fn override_file_probe_comes_first_and_waits_cover_stopping_instances() {
    let w = workload()
        .tier(tier("app").stop(0).wait().override_file("/tmp/keep"))
        .build();
    let f = vec![
        inst("i-1", "app", Running, "a"),
        inst("i-2", "app", Pending, "a"),
        inst("i-3", "app", Stopping, "a"),
        inst("i-4", "app", Stopped, "a"),
        inst("i-5", "app", Terminated, "a"),
    ];
    expect![[r#"
        stage 0: app
          app members=4 up=2 down=2
            probe /tmp/keep i-1 i-2
            deregister i-1 i-2
            stop i-1 i-2
            wait stopped i-1 i-2 i-3
        ignored: no-tier=0 other-vpc=0 gone=1
    "#]]
    .assert_eq(&ask(&w, &f, Action::Stop).render());
}

#[test]
fn known_load_balancer_membership_limits_deregistration() {
    let w = workload().tier(tier("web").stop(0).start(0)).build();
    let f = vec![
        lbs(inst("i-1", "web", Running, "a"), &["elb-1"]),
        lbs(inst("i-2", "web", Running, "a"), &[]),
        inst("i-3", "web", Running, "a"),
    ];
    expect![[r#"
        stage 0: web
          web members=3 up=3 down=0
            deregister i-1 i-3
            stop i-1 i-2 i-3
    "#]]
    .assert_eq(&ask(&w, &f, Action::Stop).render());
}

#[test]
fn kill_switch_gives_an_empty_plan_that_says_why() {
    let w = workload().disabled().tier(tier("web").stop(0)).build();
    let f = vec![inst("i-1", "web", Running, "a")];
    let p = ask(&w, &f, Action::Stop).plan();
    assert!(p.is_empty());
    expect![[r#"
        note the workload is disabled (DisableAllSchedulingActions): no action is taken
    "#]]
    .assert_eq(&render(&p));
}

#[test]
fn already_in_target_state_has_no_steps() {
    let w = three_tiers();
    let stopped = fleet(Stopped);
    let p = ask(&w, &stopped, Action::Stop).plan();
    assert!(p.is_empty());
    assert!(render(&p).contains("nothing to do"));
    let running = fleet(Running);
    let p = ask(&w, &running, Action::Start).profile("profileD").plan();
    assert!(p.is_empty(), "{}", render(&p));
    expect![[r#"
        stage 0: Role_DB
          Role_DB members=1 up=1 down=0 target=1
        stage 1: Role_App
          Role_App members=1 up=1 down=0 target=1
        stage 2: Role_Web
          Role_Web members=2 up=2 down=0 target=2
        note [Role_App] 1 running members are not c4.large; they keep their type until they are stopped and started again
        note [Role_DB] 1 running members are not r4.large; they keep their type until they are stopped and started again
        note [Role_Web] 2 running members are not c4.large; they keep their type until they are stopped and started again
        note nothing to do: every member that may be actioned is already running at the requested size
        ignored: no-tier=2 other-vpc=0 gone=0
    "#]]
    .assert_eq(&render(&p));
}

fn web_fleet(
    states: &[(&str, &str, ec2_scheduler_core::InstanceState)],
) -> Vec<ec2_scheduler_core::Instance> {
    states
        .iter()
        .map(|(id, az, s)| inst(id, "web", *s, az))
        .collect()
}

#[test]
fn fleet_subset_percentage_spreads_over_zones() {
    let w = workload()
        .tier(tier("web").start(0).stop(0).profile("half", "", "50%"))
        .build();
    let f = web_fleet(&[
        ("i-1", "a", Stopped),
        ("i-2", "a", Stopped),
        ("i-3", "a", Stopped),
        ("i-4", "b", Stopped),
        ("i-5", "b", Stopped),
        ("i-6", "c", Stopped),
        ("i-7", "c", Stopped),
    ]);
    // 50 % of 7 rounds half up to 4: one per zone, then the zone with the smallest id.
    expect![[r#"
        stage 0: web
          web members=7 up=0 down=7 target=4
            start i-1 i-2 i-4 i-6
            register i-1 i-2 i-4 i-6
    "#]]
    .assert_eq(&ask(&w, &f, Action::Start).profile("half").render());
}

#[test]
fn a_subset_starts_stopped_instances_before_ones_still_stopping() {
    let w = workload()
        .tier(tier("web").start(0).stop(0).profile("two", "", "2"))
        .build();
    // i-1 and i-2 would come first by id and zone, but are still stopping.
    let f = web_fleet(&[
        ("i-1", "a", Stopping),
        ("i-2", "b", Stopping),
        ("i-3", "a", Stopped),
        ("i-4", "a", Stopped),
    ]);
    expect![[r#"
        stage 0: web
          web members=4 up=0 down=4 target=2
            start i-3 i-4
            register i-3 i-4
    "#]]
    .assert_eq(&ask(&w, &f, Action::Start).profile("two").render());
    // Too few stopped: the rest come from those stopping, spread over zones.
    let w = workload()
        .tier(tier("web").start(0).stop(0).profile("three", "", "3"))
        .build();
    let p = ask(&w, &f, Action::Start).profile("three").render();
    assert!(p.contains("start i-2 i-3 i-4"), "{p}");
}

#[test]
fn fleet_subset_count_is_capped_and_a_small_percentage_is_at_least_one() {
    let w = workload()
        .tier(tier("web").start(0).profile("p", "", "5"))
        .tier(tier("app").start(0).profile("p", "", "1%"))
        .build();
    let f = vec![
        inst("i-w1", "web", Stopped, "a"),
        inst("i-w2", "web", Stopped, "b"),
        inst("i-a1", "app", Stopped, "a"),
        inst("i-a2", "app", Stopped, "b"),
    ];
    expect![[r#"
        stage 0: app web
          app members=2 up=0 down=2 target=1
            start i-a1
            register i-a1
          web members=2 up=0 down=2 target=2
            start i-w1 i-w2
            register i-w1 i-w2
    "#]]
    .assert_eq(&ask(&w, &f, Action::Start).profile("p").render());
}

#[test]
fn starting_a_running_workload_with_a_larger_profile_starts_only_the_difference() {
    let w = workload()
        .tier(
            tier("web")
                .start(0)
                .stop(0)
                .profile("dev", "", "50%")
                .profile("perf", "", "75%"),
        )
        .build();
    let f = web_fleet(&[
        ("i-1", "a", Running),
        ("i-2", "b", Running),
        ("i-3", "a", Stopped),
        ("i-4", "b", Stopped),
        ("i-5", "c", Stopped),
        ("i-6", "c", Stopped),
        ("i-7", "a", Stopped),
        ("i-8", "b", Stopped),
    ]);
    // 75 % of 8 = 6; 2 run (a, b): zone c is emptiest and gets two, then a and b.
    expect![[r#"
        stage 0: web
          web members=8 up=2 down=6 target=6
            start i-3 i-4 i-5 i-6
            register i-3 i-4 i-5 i-6
    "#]]
    .assert_eq(&ask(&w, &f, Action::Start).profile("perf").render());
}

#[test]
fn surplus_is_reported_and_only_stopped_with_scale_in() {
    let w = workload()
        .tier(
            tier("web")
                .start(0)
                .stop(0)
                .wait()
                .profile("small", "", "2"),
        )
        .build();
    let k = "ec2-scheduler:exempt";
    let f = vec![
        inst("i-1", "web", Running, "a"),
        inst("i-2", "web", Running, "a"),
        with_tag(inst("i-3", "web", Running, "a"), k, "true"),
        inst("i-4", "web", Running, "b"),
        inst("i-5", "web", Running, "c"),
    ];
    expect![[r#"
        stage 0: web
          web members=5 up=5 down=0 target=2
        note [web] 5 running, the profile wants 2: 3 surplus left running (scale-in was not requested)
        note nothing to do: every member that may be actioned is already running at the requested size
    "#]]
    .assert_eq(&ask(&w, &f, Action::Start).profile("small").render());
    // Zone a has three running: two go from there (never the exempt i-3), then the
    // fullest remaining zone.
    expect![[r#"
        stage 0: web
          web members=5 up=5 down=0 target=2
            deregister i-1 i-2 i-5
            stop i-1 i-2 i-5
            wait stopped i-1 i-2 i-5
        excluded i-3 (web): exemption tag ec2-scheduler:exempt="true"
    "#]]
    .assert_eq(
        &ask(&w, &f, Action::Start)
            .profile("small")
            .scale_in()
            .render(),
    );
}

#[test]
fn tier_without_the_profile_starts_all_members_at_their_type() {
    let w = workload()
        .tier(tier("web").start(1).profile("big", "m5.large", ""))
        .tier(tier("db").start(0))
        .build();
    let f = vec![
        inst("i-w", "web", Stopped, "a"),
        typed(inst("i-d", "db", Stopped, "a"), "r5.large"),
    ];
    expect![[r#"
        stage 0: db
          db members=1 up=0 down=1 target=1
            start i-d
            register i-d
        stage 1: web
          web members=1 up=0 down=1 target=1
            resize i-w:t3.small->m5.large
            pause 4s AfterResize
            start i-w
            register i-w
        note [db] tier has no profile "big": started at its current type, all members
    "#]]
    .assert_eq(&ask(&w, &f, Action::Start).profile("big").render());
}

#[test]
fn instances_already_of_the_profile_type_are_not_resized() {
    let w = workload()
        .resize_delay(0)
        .tier(tier("web").start(0).profile("p", "m5.large", ""))
        .build();
    let f = vec![
        typed(inst("i-1", "web", Stopped, "a"), "m5.large"),
        inst("i-2", "web", Stopped, "a"),
    ];
    expect![[r#"
        stage 0: web
          web members=2 up=0 down=2 target=2
            resize i-2:t3.small->m5.large
            start i-1 i-2
            register i-1 i-2
    "#]]
    .assert_eq(&ask(&w, &f, Action::Start).profile("p").render());
}

#[test]
fn readiness_gate_waits_for_running_then_registers_then_checks() {
    let w = workload()
        .tier(tier("web").start(0).ready(Gate::LoadBalancerHealthy))
        .build();
    let f = vec![inst("i-1", "web", Stopped, "a")];
    expect![[r#"
        stage 0: web
          web members=1 up=0 down=1 target=1
            start i-1
            wait running i-1
            register i-1
            ready load-balancer-healthy i-1
    "#]]
    .assert_eq(&ask(&w, &f, Action::Start).render());
}

#[test]
fn unknown_profile_is_an_error_and_a_profile_on_stop_is_noted() {
    let w = three_tiers();
    let f = fleet(Stopped);
    let err = plan(&PlanRequest {
        workload: &w,
        observed: &f,
        action: Action::Start,
        profile: Some("profileX"),
        scale_in: ScaleIn::ReportOnly,
        exemptions: &[],
        now: now(),
    })
    .unwrap_err();
    assert!(matches!(err, PlanError::UnknownProfile { .. }));
    expect![[r#"profile "profileX" is not defined by any tier of workload "wl" (defined: default, profileD)"#]]
        .assert_eq(&err.to_string());
    let running = fleet(Running);
    let p = ask(&w, &running, Action::Stop).profile("profileD").plan();
    assert!(render(&p).contains("profile \"profileD\" is ignored"));
}

#[test]
fn tiers_without_settings_for_the_action_are_left_alone() {
    let w = workload()
        .tier(tier("web").start(0))
        .tier(tier("db").stop(0))
        .build();
    let f = vec![
        inst("i-w", "web", Running, "a"),
        inst("i-d", "db", Running, "a"),
    ];
    expect![[r#"
        stage 0: db
          db members=1 up=1 down=0
            deregister i-d
            stop i-d
        note [web] tier has no stop settings; its 1 members are left as they are
    "#]]
    .assert_eq(&ask(&w, &f, Action::Stop).render());
}

#[test]
fn a_repeated_instance_id_is_an_error() {
    let w = workload().tier(tier("web").stop(0)).build();
    let f = vec![
        inst("i-1", "web", Running, "a"),
        inst("i-1", "web", Running, "b"),
    ];
    let err = plan(&PlanRequest {
        workload: &w,
        observed: &f,
        action: Action::Stop,
        profile: None,
        scale_in: ScaleIn::ReportOnly,
        exemptions: &[],
        now: now(),
    })
    .unwrap_err();
    assert_eq!(err, PlanError::DuplicateInstance("i-1".into()));
}

#[test]
fn delays_are_skipped_after_the_last_stage_with_work() {
    let w = workload()
        .tier(tier("a").stop(0).delay(7))
        .tier(tier("b").stop(1).delay(7))
        .tier(tier("c").stop(2).delay(7))
        .build();
    // c has nothing to stop, so b is the last tier with work: no pause after it.
    let f = vec![
        inst("i-a", "a", Running, "z"),
        inst("i-b", "b", Running, "z"),
        inst("i-c", "c", Stopped, "z"),
    ];
    expect![[r#"
        stage 0: a
          a members=1 up=1 down=0
            deregister i-a
            stop i-a
            pause 7s BeforeNextStage
        stage 1: b
          b members=1 up=1 down=0
            deregister i-b
            stop i-b
        stage 2: c
          c members=1 up=0 down=1
    "#]]
    .assert_eq(&ask(&w, &f, Action::Stop).render());
}
