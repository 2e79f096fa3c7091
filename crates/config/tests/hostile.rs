//! Regression tests for hostile and careless input (issue 7): each test is named
//! after the defect it fixes.

use std::path::PathBuf;

use ec2_scheduler_config::{Format, Loaded, Source, export, fleet::load_fleet, load, utf8};

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn read(rel: &str) -> String {
    std::fs::read_to_string(repo().join(rel)).unwrap()
}

fn load_one(name: &str, text: &str) -> Result<Loaded, String> {
    load(&[Source { name, text }]).map_err(|d| d.to_string())
}

fn errors(text: &str) -> String {
    load_one("f", text).expect_err("accepted")
}

/// A native workload whose first tier's stop settings are `stop`.
fn native_with_stop(stop: &str) -> String {
    format!(
        "version: 1
workloads:
  - name: W
    region: us-west-2
    workload_tag: {{ key: Env, value: dev }}
    tier_tag_key: Role
    tiers:
      - name: web
        stop: {stop}
"
    )
}

#[test]
fn issue7_2_numbers_out_of_range_are_refused_where_they_are_read() {
    for stop in [
        "{ order: 0, delay: 18446744073709551615 }",
        "{ order: 0, delay: 10000000000000 }",
        "{ order: 0, delay: 604801 }",
        "{ order: 0, delay: -1 }",
    ] {
        let e = errors(&native_with_stop(stop));
        assert!(
            e.contains("stop.delay: expected a whole number of seconds from 0 to 604800 (7 days)"),
            "{stop}: {e}"
        );
    }
    assert!(load_one("f", &native_with_stop("{ order: 0, delay: 604800 }")).is_ok());
    let text = native_with_stop("{ order: 0 }").replace(
        "    tier_tag_key: Role\n",
        "    tier_tag_key: Role\n    resize_delay: 18446744073709551615\n",
    );
    assert!(errors(&text).contains("resize_delay: expected a whole number of seconds"));
    let text = native_with_stop("{ order: 0 }").replace(
        "        stop: { order: 0 }\n",
        "        start: { order: 0, ready: { gate: status-checks, timeout: 18446744073709551615 } }\n",
    );
    assert!(errors(&text).contains("start.ready.timeout: expected a whole number of seconds"));
    // The original's string-typed numbers have the same ranges.
    let seed = read("examples/seed/example.json").replace(
        "\"InterTierOrchestrationDelay\": \"10\"",
        "\"InterTierOrchestrationDelay\": \"1e12\"",
    );
    assert!(errors(&seed).contains(
        "InterTierOrchestrationDelay: expected a whole number of seconds from 0 to 604800"
    ));
}

#[test]
fn issue7_4_duplicate_keys_are_refused_in_json_as_in_yaml() {
    let seed = read("examples/seed/example.json").replacen(
        "\"WorkloadFilterTagValue\": \"ENV001\",",
        "\"WorkloadFilterTagValue\": \"ENV001\", \"WorkloadFilterTagValue\": \"PROD\",",
        1,
    );
    let e = errors(&seed);
    assert!(
        e.contains("duplicate key \"WorkloadFilterTagValue\""),
        "{e}"
    );
    assert!(e.starts_with("f:"), "with line and column: {e}");
    let yaml = native_with_stop("{ order: 0, order: 1 }");
    assert!(errors(&yaml).contains("duplicate"), "{}", errors(&yaml));
}

#[test]
fn issue7_6_the_kill_switch_fails_closed() {
    let with = |v: &str| {
        read("examples/seed/example.json").replacen(
            "\"DisableAllSchedulingActions\": \"0\"",
            &format!("\"DisableAllSchedulingActions\": {v}"),
            1,
        )
    };
    for (value, disabled, warned) in [
        ("\"1\"", true, false),
        ("\"yes\"", true, false),
        ("\"on\"", true, false),
        ("true", true, false),
        ("\"0\"", false, false),
        ("\"no\"", false, false),
        ("[\"1\"]", true, true),
        ("\"maybe\"", true, true),
        ("2", true, true),
        ("{}", true, true),
    ] {
        let l = load_one("f", &with(value)).unwrap();
        let w = l.workload("ExampleTestCase").unwrap();
        assert_eq!(w.disabled, disabled, "{value}");
        let warning = l
            .warnings
            .iter()
            .any(|d| d.message.contains("cannot read the kill switch"));
        assert_eq!(warning, warned, "{value}: {:?}", l.warnings);
    }
}

#[test]
fn issue7_6_an_unreadable_ignore_stop_keeps_the_tier_running() {
    let seed = read("examples/seed/example.json").replacen(
        "\"TierStop\": {",
        "\"TierStop\": { \"IgnoreStop\": \"perhaps\",",
        1,
    );
    let l = load_one("f", &seed).unwrap();
    let ignored: Vec<_> = l.workloads[0]
        .tiers()
        .iter()
        .filter(|t| t.stop.as_ref().is_some_and(|s| s.ignore))
        .collect();
    assert_eq!(ignored.len(), 1);
    assert!(
        l.warnings
            .iter()
            .any(|d| d.message.contains("cannot read IgnoreStop"))
    );
}

#[test]
fn issue7_9_infinite_and_not_a_number_are_refused_not_replaced() {
    for (stop, field) in [
        ("{ order: 0, delay: .inf }", "stop.delay"),
        ("{ order: .nan }", "stop.order"),
    ] {
        let e = errors(&native_with_stop(stop));
        assert!(e.contains("must be finite"), "{stop}: {e}");
        assert!(!e.contains("missing required field"), "{field}: {e}");
    }
    let text = native_with_stop("{ order: 0 }").replace(
        "    tier_tag_key: Role\n",
        "    tier_tag_key: Role\n    resize_delay: .nan\n",
    );
    assert!(errors(&text).contains("must be finite"));
}

#[test]
fn issue7_10_what_is_accepted_exports_to_every_format_and_reads_back() {
    let text = native_with_stop("{ order: -1000000, delay: 604800 }").replace(
        "    tier_tag_key: Role\n",
        "    tier_tag_key: Role\n    resize_delay: 604800\n",
    );
    let first = load_one("f", &text).unwrap();
    for format in Format::ALL {
        let out = export(&first.workloads, format);
        let again = load_one("exported", &out).unwrap_or_else(|e| panic!("{format}: {e}"));
        assert_eq!(again.workloads, first.workloads, "{format}");
    }
}

#[test]
fn issue7_11_formats_are_told_apart_by_content() {
    // A byte-order mark before JSON.
    let seed = format!("\u{feff}{}", read("examples/seed/example.json"));
    assert_eq!(load_one("f", &seed).unwrap().workloads.len(), 1);
    // A YAML flow mapping is YAML, not broken JSON.
    let e = errors("{version: 1, workloads: []}");
    assert!(e.contains("workloads: the list is empty"), "{e}");
    let flow = "{version: 1, workloads: [{name: W, region: r, workload_tag: {key: a, value: b}, tier_tag_key: t, tiers: [{name: web}]}]}";
    assert_eq!(load_one("f", flow).unwrap().workloads.len(), 1);
    // A comment on the first line of a YAML file.
    let yaml = format!("# my workloads\n{}", read("examples/workloads.yaml"));
    assert!(load_one("f", &yaml).is_ok());
    let yaml = format!("# {{\"a\": 1}}\n{}", read("examples/workloads.yaml"));
    assert!(load_one("f", &yaml).is_ok());
    // A BOM before YAML.
    let yaml = format!("\u{feff}{}", read("examples/workloads.yaml"));
    assert!(load_one("f", &yaml).is_ok());
}

#[test]
fn issue7_14_messages_say_what_is_wrong() {
    let e = errors("!!python/object:os.system {a: 1}");
    assert!(e.contains("unsupported YAML tag"), "{e}");
    let e = errors("WorkloadSpecification: [!!binary aGk=]");
    assert!(!e.contains("cannot tell the table"), "{e}");
    let e = errors(&native_with_stop("{ order: 18446744073709551616 }"));
    assert!(
        e.contains("stop.order: expected a whole number from -1000000 to 1000000, found number"),
        "{e}"
    );
    assert!(!e.contains("u128"), "{e}");
    let loader = "workloads:
  table: WorkloadSpecification
  workload: { SpecName: W, WorkloadRegion: r, WorkloadFilterTagName: a, WorkloadFilterTagValue: b, TierFilterTagName: t }
tiers:
  table: TierSpecification
  tiers:
    - { SpecName: 5, TierTagValue: web, TierStop: { TierSequence: 0 } }
";
    let e = errors(loader);
    assert!(
        e.contains("the tier belongs to workload \"5\", but this file defines \"W\""),
        "{e}"
    );
    assert!(!e.contains("Number("), "{e}");
    assert!(errors("[]").contains("the list is empty"));
    assert!(errors("{}").contains("the mapping is empty"));
    assert!(errors("").contains("the file is empty"));
    let e = utf8(b"version: 1\nworkloads: \xc3\x28").unwrap_err();
    assert!(e.contains("byte offset 22 (line 2, column 12)"), "{e}");
}

#[test]
fn issue7_15_oversized_files_are_refused_before_they_are_parsed() {
    let big = format!("# {}\n", "x".repeat(ec2_scheduler_config::MAX_SOURCE_BYTES));
    let e = errors(&big);
    assert!(e.contains("workload files are limited to"), "{e}");
}

#[test]
fn issue7_15_fleet_snapshots_are_read_instance_by_instance() {
    let fleet = read("examples/seed/fleet-running.json");
    let all = load_fleet("fleet.json", &fleet).unwrap();
    assert!(all.len() >= 12);
    let bare = serde_json::to_string(&all).unwrap();
    assert_eq!(load_fleet("bare.json", &bare).unwrap(), all);
    let bom = format!("\u{feff}{fleet}");
    assert_eq!(load_fleet("bom.json", &bom).unwrap(), all);
    let e = load_fleet("f", r#"{"instances": 5}"#)
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("instances: expected a list of instances, found number 5"),
        "{e}"
    );
    let e = load_fleet("f", r#"{"instances": [{"id": "i-1"}]}"#)
        .unwrap_err()
        .to_string();
    assert!(e.contains("instances[0]: invalid instance"), "{e}");
}

#[test]
fn an_override_file_path_that_could_become_code_is_refused_where_it_is_read() {
    // Quotes of every kind (PowerShell takes U+2018 to U+201B as quotes too),
    // substitutions, separators, control characters, relative and very long paths.
    let long = format!("/{}", "a".repeat(1100));
    for (path, os) in [
        ("/tmp/it's", "linux"),
        ("/tmp/$(reboot)", "linux"),
        ("/tmp/`reboot`", "linux"),
        ("/tmp/a;reboot", "linux"),
        ("/tmp/a|b", "linux"),
        ("tmp/relative", "linux"),
        (long.as_str(), "linux"),
        ("C:\\keep\u{2019};Stop-Computer", "windows"),
        ("C:\\keep\u{201b}x", "windows"),
        ("C:\\keep\"x", "windows"),
        ("C:\\a:stream", "windows"),
        ("/tmp/x", "windows"),
    ] {
        let doc = serde_json::json!({"order": 0, "override_file": {"path": path, "os": os}});
        let e = errors(&native_with_stop(&doc.to_string()));
        assert!(e.contains("stop.override_file.path"), "{path:?}: {e}");
    }
    let seed = |path: &str| {
        serde_json::json!([
            {"SpecName": "W", "WorkloadRegion": "us-west-2", "WorkloadFilterTagName": "Env",
             "WorkloadFilterTagValue": "dev", "TierFilterTagName": "Role"},
            {"SpecName": "W", "TierTagValue": "web",
             "TierStop": {"TierSequence": "0", "TierStopOverrideFilename": path,
                          "TierStopOverrideOperatingSystem": "Windows"}}
        ])
        .to_string()
    };
    let e = load_one("items.json", &seed("C:\\keep\u{2019};Stop-Computer")).expect_err("accepted");
    assert!(e.contains("TierStopOverrideFilename"), "{e}");
    if let Err(e) = load_one("items.json", &seed("C:\\keep.txt")) {
        panic!("{e}");
    }
    let fine = serde_json::json!({"order": 0, "override_file": {"path": "/tmp/StopOverride", "os": "linux"}});
    assert!(load_one("f", &native_with_stop(&fine.to_string())).is_ok());
}
