//! Reading the three formats, reporting errors, and round trips through export.

use std::path::PathBuf;

use ec2_scheduler_config::{Format, Loaded, Location, Severity, Source, export, load};
use expect_test::expect;

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn read(rel: &str) -> String {
    std::fs::read_to_string(repo().join(rel)).unwrap()
}

fn load_one(name: &str, text: &str) -> Result<Loaded, ec2_scheduler_config::Diagnostics> {
    load(&[Source { name, text }])
}

/// A compact description of loaded workloads for snapshots.
fn describe(l: &Loaded) -> String {
    let mut out = String::new();
    for w in &l.workloads {
        out += &format!(
            "{} region={} tag={}={} tier_key={} vpc={:?} sns={:?} resize_delay={} disabled={} policy={} exempt_key={}\n",
            w.name,
            w.region,
            w.workload_tag.key,
            w.workload_tag.value,
            w.tier_tag_key,
            w.vpc.as_ref().map(|v| v.as_str()),
            w.sns_topic.as_ref().map(|v| v.as_str()),
            w.resize_delay_secs,
            w.disabled,
            w.failure_policy.as_str(),
            w.exemption_tag_key
        );
        for t in w.tiers() {
            let start = t.start.as_ref().map(|s| {
                format!(
                    "start(order={} wait={} delay={} ready={:?})",
                    s.sequencing.order,
                    s.sequencing.wait,
                    s.sequencing.delay_secs,
                    s.ready.as_ref().map(|r| (r.gate.as_str(), r.timeout_secs))
                )
            });
            let stop = t.stop.as_ref().map(|s| {
                format!(
                    "stop(order={} wait={} delay={} override={:?} ignore={})",
                    s.sequencing.order,
                    s.sequencing.wait,
                    s.sequencing.delay_secs,
                    s.override_file
                        .as_ref()
                        .map(|f| (f.path.as_str(), f.os.as_str())),
                    s.ignore
                )
            });
            out += &format!(
                "  {} {} {}\n",
                t.name,
                start.unwrap_or_default(),
                stop.unwrap_or_default()
            );
            for (n, p) in &t.profiles {
                out += &format!(
                    "    {n}: type={:?} subset={:?}\n",
                    p.instance_type.as_ref().map(|t| t.as_str()),
                    p.fleet_subset.map(|f| f.to_string())
                );
            }
        }
    }
    for w in &l.warnings {
        out += &format!("{w}\n");
    }
    out
}

fn errors(text: &str, name: &str) -> String {
    let d = load_one(name, text).unwrap_err();
    format!("{d}\n")
}

#[test]
fn the_seed_readme_example_fails_verbatim_with_line_and_column() {
    let text = read("examples/seed/verbatim.json");
    let d = load_one("verbatim.json", &text).unwrap_err();
    assert_eq!(d.0.len(), 1);
    assert_eq!(
        d.0[0].location,
        Location::Position {
            line: 34,
            column: 3
        }
    );
    expect![[r#"verbatim.json:34:3: error: invalid JSON: trailing comma before this closing bracket (JSON allows no comma after the last element)"#]]
        .assert_eq(&d.to_string());
}

#[test]
fn the_committed_seed_example_is_the_seed_readme_text() {
    // examples/seed/verbatim.json is the four items of the original README's
    // "Provided Example Workload", one after another; example.json drops the trailing
    // commas. When the original README is beside the repository, check that.
    let seed = repo().join("../shared/seed/AWS_EC2_Scheduler-README.md");
    let verbatim = read("examples/seed/verbatim.json");
    let fixed = read("examples/seed/example.json");
    let without_commas: String = {
        let mut out = String::new();
        let chars: Vec<char> = verbatim.chars().collect();
        for (i, c) in chars.iter().enumerate() {
            if *c == ','
                && chars[i + 1..]
                    .iter()
                    .find(|c| !c.is_whitespace())
                    .is_some_and(|n| *n == '}' || *n == ']')
            {
                continue;
            }
            out.push(*c);
        }
        out
    };
    assert_eq!(without_commas, fixed);
    if let Ok(readme) = std::fs::read_to_string(seed) {
        let section = &readme[readme.find("### Provided Example Workload").unwrap()
            ..readme.find("### Enabling SSM").unwrap()];
        let blocks: String = section
            .split("~~~~")
            .skip(1)
            .step_by(2)
            .map(|b| {
                b.trim_start_matches('\n')
                    .lines()
                    .map(|l| l.strip_prefix("    ").unwrap_or(l))
                    .collect::<Vec<_>>()
                    .join("\n")
                    + "\n"
            })
            .collect();
        let squeeze = |s: &str| {
            s.lines()
                .filter(|l| !l.trim().is_empty())
                .collect::<Vec<_>>()
                .join("\n")
        };
        assert_eq!(squeeze(&blocks), squeeze(&verbatim));
    }
}

#[test]
fn the_seed_readme_example_loads_without_its_trailing_commas() {
    let l = load_one("example.json", &read("examples/seed/example.json")).unwrap();
    expect![[r#"
        ExampleTestCase region=us-west-2 tag=Environment=ENV001 tier_key=Role vpc=Some("vpc-xyz") sns=Some("SchedulerTesting") resize_delay=4 disabled=false policy=abort exempt_key=ec2-scheduler:exempt
          Role_App start(order=1 wait=false delay=5 ready=None) stop(order=1 wait=false delay=10 override=None ignore=false)
            default: type=Some("t2.nano") subset=None
            profileB: type=Some("t2.medium") subset=None
            profileC: type=Some("t2.large") subset=None
            profileD: type=Some("c4.large") subset=None
          Role_DB start(order=0 wait=false delay=10 ready=None) stop(order=2 wait=false delay=10 override=None ignore=false)
            default: type=Some("t2.large") subset=None
            profileD: type=Some("r4.large") subset=None
          Role_Web start(order=2 wait=false delay=5 ready=None) stop(order=0 wait=false delay=10 override=None ignore=false)
            default: type=Some("t2.nano") subset=None
            profileB: type=Some("t2.medium") subset=None
            profileC: type=Some("t2.large") subset=None
            profileD: type=Some("c4.large") subset=None
    "#]]
    .assert_eq(&describe(&l));
}

#[test]
fn typed_dynamodb_items_with_numbers_and_booleans_read_like_plain_ones() {
    let typed = r#"
    {"Items": [
      {"SpecName": {"S": "W"}, "WorkloadRegion": {"S": "eu-west-1"},
       "WorkloadFilterTagName": {"S": "Env"}, "WorkloadFilterTagValue": {"S": "dev"},
       "TierFilterTagName": {"S": "Role"}, "ScaleInstanceDelay": {"N": "2.5"},
       "DisableAllSchedulingActions": {"N": "1"}},
      {"SpecName": {"S": "W"}, "TierTagValue": {"S": "web"},
       "TierStart": {"M": {"TierSequence": {"N": "3"}, "TierSynchronization": {"BOOL": true}}},
       "TierStop": {"M": {"TierSequence": {"N": "-1"}, "IgnoreStop": {"S": "True"},
                          "TierStopOverrideFilename": {"S": "C:\\keep.txt"},
                          "TierStopOverrideOperatingSystem": {"S": "Windows"}}},
       "TierScaling": {"M": {"small": {"S": "t3.micro"},
                             "half": {"M": {"InstanceType": {"S": "t3.large"}, "FleetSubset": {"S": "50%"}}},
                             "two": {"M": {"FleetSubset": {"N": "2"}}}}}}
    ]}"#;
    let plain = r#"
    [{"SpecName": "W", "WorkloadRegion": "eu-west-1", "WorkloadFilterTagName": "Env",
      "WorkloadFilterTagValue": "dev", "TierFilterTagName": "Role", "ScaleInstanceDelay": 3,
      "DisableAllSchedulingActions": "1"},
     {"SpecName": "W", "TierTagValue": "web",
      "TierStart": {"TierSequence": 3, "TierSynchronization": "true"},
      "TierStop": {"TierSequence": "-1", "IgnoreStop": true,
                   "TierStopOverrideFilename": "C:\\keep.txt", "TierStopOverrideOperatingSystem": "windows"},
      "TierScaling": {"small": "t3.micro", "half": {"InstanceType": "t3.large", "FleetSubset": "50%"},
                      "two": {"FleetSubset": 2}}}]"#;
    let a = load_one("typed.json", typed).unwrap();
    let b = load_one("plain.json", plain).unwrap();
    assert_eq!(a.workloads, b.workloads);
    expect![[r#"
        W region=eu-west-1 tag=Env=dev tier_key=Role vpc=None sns=None resize_delay=3 disabled=true policy=abort exempt_key=ec2-scheduler:exempt
          web start(order=3 wait=true delay=5 ready=None) stop(order=-1 wait=false delay=5 override=Some(("C:\\keep.txt", "Windows")) ignore=true)
            half: type=Some("t3.large") subset=Some("50%")
            small: type=Some("t3.micro") subset=None
            two: type=None subset=Some("2")
    "#]]
    .assert_eq(&describe(&a));
}

#[test]
fn an_empty_profile_is_read_as_no_scaling_with_a_warning_and_survives_export() {
    let items = r#"
    [{"SpecName": "W", "WorkloadRegion": "eu-west-1", "WorkloadFilterTagName": "Env",
      "WorkloadFilterTagValue": "dev", "TierFilterTagName": "Role"},
     {"SpecName": "W", "TierTagValue": "web", "TierStart": {"TierSequence": 0},
      "TierScaling": {"dev": {}, "big": "m5.large"}}]"#;
    let loaded = load_one("items.json", items).unwrap();
    let warnings: Vec<String> = loaded.warnings.iter().map(|d| d.to_string()).collect();
    assert_eq!(
        warnings,
        [
            "items.json: warning: [1] TierSpecification[W/web].TierScaling.dev: sets neither an instance type nor a fleet subset: read as no scaling (every member starts, at its current type)"
        ]
    );
    let w = &loaded.workloads[0];
    let dev = w.tiers()[0]
        .profiles
        .iter()
        .find(|(n, _)| n.as_str() == "dev")
        .unwrap()
        .1
        .clone();
    assert_eq!(dev, ec2_scheduler_core::model::Profile::unscaled());
    // Exported and read again, in either format, it is the same workload.
    for format in [
        ec2_scheduler_config::Format::Yaml,
        ec2_scheduler_config::Format::SeedJson,
    ] {
        let text = ec2_scheduler_config::export(&loaded.workloads, format);
        let again = load_one("again", &text).unwrap();
        assert_eq!(again.workloads, loaded.workloads, "{text}");
    }
}

#[test]
fn items_may_be_spread_over_files_and_in_batch_write_form() {
    let w = r#"{"WorkloadSpecification": [{"PutRequest": {"Item": {
        "SpecName": {"S": "W"}, "WorkloadRegion": {"S": "r"}, "WorkloadFilterTagName": {"S": "Env"},
        "WorkloadFilterTagValue": {"S": "dev"}, "TierFilterTagName": {"S": "Role"}}}}]}"#;
    let t = r#"{"SpecName": "W", "TierTagValue": "a", "TierStop": {"TierSequence": "0"}}
               {"SpecName": "W", "TierTagValue": "b", "TierStop": {"TierSequence": "1"}}"#;
    let l = load(&[
        Source {
            name: "w.json",
            text: w,
        },
        Source {
            name: "t.json",
            text: t,
        },
    ])
    .unwrap();
    assert_eq!(l.workloads.len(), 1);
    assert_eq!(l.workloads[0].tiers().len(), 2);
}

#[test]
fn the_original_loader_yaml_is_read() {
    let text = r#"
workloads:
  table: WorkloadSpecification
  workload:
    SpecName: SampleWorkload-01
    WorkloadRegion: us-west-2
    SNSTopicName: SchedulerSNSTopic
    WorkloadFilterTagName: Environment
    WorkloadFilterTagValue: ENV001
    TierFilterTagName: ApplicationRole
    ScaleInstanceDelay: '5'

tiers:
  table: TierSpecification
  tiers:
    - TierTagValue: Role_Web
      SpecName: SampleWorkload-01
      TierStart:
        TierSequence: 2
        TierSynchronization: 'False'
        InterTierOrchestrationDelay: 15
      TierStop:
        TierSequence: 0
        TierSynchronization: 'True'
      TierScaling:
        DevMode:
          InstanceType: t2.nano
          FleetSubset: '1'
        PerfTestMode:
          InstanceType: t3.medium
          FleetSubset: 100%
    - TierTagValue: Role_DB
      TierStart:
        TierSequence: 0
      TierStop:
        TierSequence: 2
      TierScaling:
        DevMode:
          InstanceType: t2.nano
"#;
    let l = load_one("SampleWorkloadSpec01.yaml", text).unwrap();
    expect![[r#"
        SampleWorkload-01 region=us-west-2 tag=Environment=ENV001 tier_key=ApplicationRole vpc=None sns=Some("SchedulerSNSTopic") resize_delay=5 disabled=false policy=abort exempt_key=ec2-scheduler:exempt
          Role_DB start(order=0 wait=false delay=5 ready=None) stop(order=2 wait=false delay=5 override=None ignore=false)
            DevMode: type=Some("t2.nano") subset=None
          Role_Web start(order=2 wait=false delay=15 ready=None) stop(order=0 wait=true delay=5 override=None ignore=false)
            DevMode: type=Some("t2.nano") subset=Some("1")
            PerfTestMode: type=Some("t3.medium") subset=Some("100%")
    "#]]
    .assert_eq(&describe(&l));
}

#[test]
fn our_yaml_example_loads() {
    let l = load_one("workloads.yaml", &read("examples/workloads.yaml")).unwrap();
    expect![[r#"
        ExampleTestCase region=us-west-2 tag=Environment=ENV001 tier_key=Role vpc=Some("vpc-0abc1234") sns=Some("SchedulerTesting") resize_delay=4 disabled=false policy=rollback exempt_key=ec2-scheduler:exempt
          Role_App start(order=1 wait=true delay=5 ready=None) stop(order=1 wait=false delay=10 override=Some(("/tmp/StopOverride", "Linux")) ignore=false)
            default: type=Some("t2.nano") subset=Some("1")
            profileD: type=Some("c4.large") subset=Some("100%")
          Role_Batch  stop(order=0 wait=false delay=5 override=None ignore=true)
          Role_DB start(order=0 wait=true delay=10 ready=Some(("status-checks", 900))) stop(order=2 wait=true delay=5 override=None ignore=false)
            default: type=Some("t2.large") subset=None
            profileD: type=Some("r4.large") subset=None
          Role_Web start(order=2 wait=false delay=5 ready=Some(("load-balancer-healthy", 600))) stop(order=0 wait=false delay=10 override=None ignore=false)
            default: type=Some("t2.nano") subset=Some("50%")
            profileD: type=Some("c4.large") subset=Some("100%")
    "#]]
    .assert_eq(&describe(&l));
}

#[test]
fn every_error_of_a_seed_file_is_reported_with_its_path() {
    let text = r#"[
      {"SpecName": "W", "WorkloadRegion": "r", "WorkloadFilterTagName": "", "WorkloadFilterTagValue": "dev",
       "TierFilterTagName": "Role", "Colour": "blue"},
      {"SpecName": "X", "WorkloadRegion": "r", "WorkloadFilterTagName": "Env", "WorkloadFilterTagValue": "dev",
       "TierFilterTagName": "Role"},
      {"SpecName": "X", "TierTagValue": "web", "TierStart": {"TierSynchronization": "False"},
       "TierStop": {"TierSequence": "0", "TierStopOverrideFilename": "/tmp/x"},
       "TierScaling": {"a": {"FleetSubset": "150%"}, "b": {"FleetSubset": "-1"}, "c": {"FleetSubset": "abc"}, "d": {}}},
      {"SpecName": "X", "TierTagValue": "cache", "TierStop": {"TierSequence": "1",
       "TierStopOverrideFilename": "/tmp/x", "TierStopOverrideOperatingSystem": "Solaris"}},
      {"SpecName": "X", "TierTagValue": "db", "TierStop": {"TierSequence": "2"}},
      {"SpecName": "X", "TierTagValue": "db", "TierStop": {"TierSequence": "3"}},
      {"SpecName": "Y", "TierTagValue": "db", "TierStop": {"TierSequence": "2"}}
    ]"#;
    expect![[r#"
        items.json: warning: [0] WorkloadSpecification[W].Colour: unknown attribute `Colour` is ignored
        items.json: error: [0] WorkloadSpecification[W].WorkloadFilterTagName: must not be empty (an empty tag key or value would match every instance)
        items.json: error: [2] TierSpecification[X/web].TierStart: missing required field `TierSequence` (the tier's place in the start order)
        items.json: error: [2] TierSpecification[X/web].TierStop.TierStopOverrideOperatingSystem: is required with TierStopOverrideFilename: expected Linux or Windows
        items.json: error: [2] TierSpecification[X/web].TierScaling.a.FleetSubset: invalid fleet subset "150%": expected a percentage from 0% to 100% (e.g. "50%") or a whole number of instances from 0 to 1000000 (e.g. "2")
        items.json: error: [2] TierSpecification[X/web].TierScaling.b.FleetSubset: invalid fleet subset "-1": expected a percentage from 0% to 100% (e.g. "50%") or a whole number of instances from 0 to 1000000 (e.g. "2")
        items.json: error: [2] TierSpecification[X/web].TierScaling.c.FleetSubset: invalid fleet subset "abc": expected a percentage from 0% to 100% (e.g. "50%") or a whole number of instances from 0 to 1000000 (e.g. "2")
        items.json: warning: [2] TierSpecification[X/web].TierScaling.d: sets neither an instance type nor a fleet subset: read as no scaling (every member starts, at its current type)
        items.json: error: [3] TierSpecification[X/cache].TierStop.TierStopOverrideOperatingSystem: unknown operating system "Solaris": expected Linux or Windows
        items.json: error: [5] TierSpecification[X/db]: duplicate tier "db" of workload "X" (first defined at items.json: [4] TierSpecification[X/db])
        items.json: error: [6] TierSpecification[Y/db]: the tier's SpecName "Y" names no WorkloadSpecification item in the files given
    "#]]
    .assert_eq(&errors(text, "items.json"));
}

#[test]
fn every_error_of_our_yaml_is_reported_with_its_path() {
    let text = r#"
version: 1
workloads:
  - name: W
    region: eu-west-1
    workload_tag: { key: Env, value: "" }
    tier_tag_key: Role
    colour: blue
    tiers:
      - name: web
        start: { order: first, wait: "yes" }
        stop: { order: 0, override_file: { path: /tmp/x } }
        profiles:
          big: { instance_type: m5.large, fleet_subset: "150%" }
          odd: { fleet_subset: -1 }
          typo: { instance_typ: m5.large }
      - name: web
        stop: { order: 1 }
      - name: ""
"#;
    expect![[r#"
        w.yaml: error: workloads[0].colour: unknown field `colour`, expected one of: name, region, workload_tag, tier_tag_key, vpc, sns_topic, cross_account, ssm_output, resize_delay, disabled, failure_policy, exemption_tag_key, schedules, enforce, tiers
        w.yaml: error: workloads[0].workload_tag.value: must not be empty (an empty tag key or value would match every instance)
        w.yaml: error: workloads[0].tiers[0].start.order: expected a whole number from -1000000 to 1000000, found "first"
        w.yaml: error: workloads[0].tiers[0].start.wait: expected true or false, found "yes"
        w.yaml: error: workloads[0].tiers[0].stop.override_file: missing required field `os` (linux or windows)
        w.yaml: error: workloads[0].tiers[0].profiles.big.fleet_subset: invalid fleet subset "150%": expected a percentage from 0% to 100% (e.g. "50%") or a whole number of instances from 0 to 1000000 (e.g. "2")
        w.yaml: error: workloads[0].tiers[0].profiles.odd.fleet_subset: expected a percentage ("50%") or a count of instances (2), found number -1
        w.yaml: error: workloads[0].tiers[0].profiles.typo.instance_typ: unknown field `instance_typ`, expected one of: instance_type, fleet_subset
        w.yaml: warning: workloads[0].tiers[0].profiles.typo: sets neither an instance type nor a fleet subset: read as no scaling (every member starts, at its current type)
        w.yaml: error: workloads[0].tiers[2].name: must not be empty (an empty tag key or value would match every instance)
    "#]]
    .assert_eq(&errors(text, "w.yaml"));
}

#[test]
fn yaml_syntax_errors_give_line_and_column() {
    let text = "version: 1\nworkloads:\n  - name: W\n    region: [unclosed\n";
    let d = load_one("bad.yaml", text).unwrap_err();
    assert!(matches!(d.0[0].location, Location::Position { .. }), "{d}");
    assert!(d.to_string().starts_with("bad.yaml:"), "{d}");
}

#[test]
fn our_format_requires_a_known_version() {
    let text = "version: 2\nworkloads: []\n";
    expect![[r#"
        v.yaml: error: version: unsupported format version: expected 1, found number 2
        v.yaml: error: workloads: the list is empty: expected at least one workload
    "#]]
    .assert_eq(&errors(text, "v.yaml"));
}

#[test]
fn seed_warnings_do_not_stop_loading() {
    let text = r#"{"SpecName": "W", "WorkloadRegion": "r", "WorkloadFilterTagName": "Env",
        "WorkloadFilterTagValue": "dev", "TierFilterTagName": "Role", "DisableAllSchedulingActions": "maybe"}
        {"SpecName": "W", "TierTagValue": "web", "TierStop": {"TierSequence": "0", "Extra": 1}}"#;
    let l = load_one("w.json", text).unwrap();
    // The kill switch fails closed: a value it cannot read disables the workload.
    assert!(l.workloads[0].disabled);
    assert!(l.warnings.iter().all(|w| w.severity == Severity::Warning));
    expect![[r#"
        w.json: warning: document 1 WorkloadSpecification[W].DisableAllSchedulingActions: cannot read the kill switch (found "maybe"): the workload is disabled to be safe; write "1" to disable it or "0" to enable it
        w.json: warning: document 2 TierSpecification[W/web].TierStop.Extra: unknown attribute `Extra` is ignored
    "#]]
    .assert_eq(&l.warnings.iter().map(|w| format!("{w}\n")).collect::<String>());
}

#[test]
fn every_format_round_trips() {
    for (name, text) in [
        ("examples/workloads.yaml", read("examples/workloads.yaml")),
        (
            "examples/seed/example.json",
            read("examples/seed/example.json"),
        ),
    ] {
        let original = load_one(name, &text).unwrap().workloads;
        for format in Format::ALL {
            let out = export(&original, format);
            let back = load_one("exported", &out)
                .unwrap_or_else(|d| panic!("{format} export of {name} does not load:\n{d}\n{out}"));
            assert_eq!(back.workloads, original, "{format} round trip of {name}");
            assert!(back.warnings.is_empty(), "{format}: {:?}", back.warnings);
        }
    }
}

#[test]
fn a_workload_defined_twice_is_an_error() {
    let yaml = read("examples/workloads.yaml");
    let d = load(&[
        Source {
            name: "a.yaml",
            text: &yaml,
        },
        Source {
            name: "b.yaml",
            text: &yaml,
        },
    ])
    .unwrap_err();
    expect![[r#"b.yaml: error: workloads[0]: workload "ExampleTestCase" is already defined at a.yaml: workloads[0]"#]]
        .assert_eq(&d.to_string());
}

#[test]
fn seed_items_are_values_that_decode_back_to_the_workload() {
    let loaded = load_one("w.yaml", &read("examples/workloads.yaml")).unwrap();
    for w in &loaded.workloads {
        let (item, tiers) = ec2_scheduler_config::seed_items(w);
        let tiers: Vec<serde_json::Value> = tiers.into_iter().map(Into::into).collect();
        let back = ec2_scheduler_config::workload_from_items("table", &item.clone().into(), &tiers)
            .unwrap();
        assert_eq!(&back, w);
        // A broken tier item is reported with where it is.
        let mut broken = tiers.clone();
        broken[0]["TierStart"] = serde_json::json!({"TierSequence": "first"});
        let e = ec2_scheduler_config::workload_from_items("table", &item.into(), &broken)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("table: error: TierSpecification[0] TierSpecification["),
            "{e}"
        );
        assert!(e.contains("TierStart.TierSequence"), "{e}");
    }
}
