//! The command line, run as a user runs it: exit codes, messages, and the acceptance
//! scenario on the original README's example workload.

use std::path::PathBuf;
use std::process::{Command, Output};

use expect_test::expect;
use serde_json::Value;

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn run(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_ec2-scheduler"))
        .args(args)
        .current_dir(repo())
        .output()
        .unwrap()
}

fn stdout(o: &Output) -> String {
    String::from_utf8(o.stdout.clone()).unwrap()
}

fn stderr(o: &Output) -> String {
    String::from_utf8(o.stderr.clone()).unwrap()
}

const EXAMPLE: &str = "examples/seed/example.json";
const RUNNING: &str = "examples/seed/fleet-running.json";
const STOPPED: &str = "examples/seed/fleet-stopped.json";

fn plan_json(args: &[&str]) -> Value {
    let mut all = vec!["plan", "-c", EXAMPLE, "-w", "ExampleTestCase", "-o", "json"];
    all.extend_from_slice(args);
    let o = run(&all);
    assert!(o.status.success(), "{}", stderr(&o));
    serde_json::from_slice(&o.stdout).unwrap()
}

fn stage_tiers(plan: &Value) -> Vec<Vec<String>> {
    plan["stages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            s["tiers"]
                .as_array()
                .unwrap()
                .iter()
                .map(|t| t["tier"].as_str().unwrap().to_string())
                .collect()
        })
        .collect()
}

#[test]
fn validate_accepts_the_seed_example_and_rejects_it_verbatim_with_line_and_column() {
    let ok = run(&["validate", EXAMPLE]);
    assert_eq!(ok.status.code(), Some(0), "{}", stderr(&ok));
    assert_eq!(stdout(&ok), "ok: 1 workload: ExampleTestCase (3 tiers)\n");

    let bad = run(&["validate", "examples/seed/verbatim.json"]);
    assert_eq!(bad.status.code(), Some(1));
    expect![[r#"
        examples/seed/verbatim.json:34:3: error: invalid JSON: trailing comma before this closing bracket (JSON allows no comma after the last element)
        1 error found
    "#]]
    .assert_eq(&stderr(&bad));
}

#[test]
fn stop_runs_web_then_app_then_db_and_start_runs_them_in_reverse() {
    let stop = plan_json(&["-a", "Stop", "--observed", RUNNING]);
    assert_eq!(
        stage_tiers(&stop),
        [["Role_Web"], ["Role_App"], ["Role_DB"]]
    );
    let start = plan_json(&["-a", "Start", "--observed", STOPPED]);
    assert_eq!(
        stage_tiers(&start),
        [["Role_DB"], ["Role_App"], ["Role_Web"]]
    );
}

#[test]
fn profile_d_resizes_app_and_web_to_c4_large_and_db_to_r4_large() {
    let plan = plan_json(&["-a", "start", "-p", "profileD", "--observed", STOPPED]);
    let mut resized = Vec::new();
    for stage in plan["stages"].as_array().unwrap() {
        for tier in stage["tiers"].as_array().unwrap() {
            for step in tier["steps"].as_array().unwrap() {
                if step["step"] == "resize" {
                    for c in step["changes"].as_array().unwrap() {
                        resized.push(format!(
                            "{} {} {}",
                            tier["tier"].as_str().unwrap(),
                            c["instance"].as_str().unwrap(),
                            c["to"].as_str().unwrap()
                        ));
                    }
                }
            }
        }
    }
    expect![[r#"
        Role_DB i-0db00000 r4.large
        Role_DB i-0db00001 r4.large
        Role_App i-0app0000 c4.large
        Role_App i-0app0001 c4.large
        Role_App i-0app0002 c4.large
        Role_Web i-0web0000 c4.large
        Role_Web i-0web0001 c4.large
        Role_Web i-0web0002 c4.large
        Role_Web i-0web0003 c4.large
    "#]]
    .assert_eq(&(resized.join("\n") + "\n"));
}

#[test]
fn decoys_never_appear_in_any_output() {
    for (action, fleet) in [("stop", RUNNING), ("start", STOPPED)] {
        for output in ["text", "json"] {
            let o = run(&[
                "plan",
                "-c",
                EXAMPLE,
                "-w",
                "ExampleTestCase",
                "-a",
                action,
                "-p",
                "profileD",
                "--observed",
                fleet,
                "-o",
                output,
            ]);
            assert!(o.status.success(), "{}", stderr(&o));
            let all = stdout(&o) + &stderr(&o);
            assert!(!all.contains("decoy"), "{action}/{output}:\n{all}");
        }
    }
}

#[test]
fn the_text_plan_reads_well() {
    let o = run(&[
        "plan",
        "-c",
        EXAMPLE,
        "-w",
        "ExampleTestCase",
        "-a",
        "Stop",
        "--observed",
        RUNNING,
    ]);
    expect![[r#"
        Plan: stop workload ExampleTestCase (9 members)

        Stage 1 (order 0): Role_Web
          Role_Web: 4 members (4 running/pending, 0 stopped/stopping)
            deregister 4 instances from their load balancers: i-0web0000, i-0web0001, i-0web0002, i-0web0003
            stop       4 instances: i-0web0000, i-0web0001, i-0web0002, i-0web0003
            pause      10 s before the next stage

        Stage 2 (order 1): Role_App
          Role_App: 3 members (3 running/pending, 0 stopped/stopping)
            stop       3 instances: i-0app0000, i-0app0001, i-0app0002
            pause      10 s before the next stage

        Stage 3 (order 2): Role_DB
          Role_DB: 2 members (2 running/pending, 0 stopped/stopping)
            stop       2 instances: i-0db00000, i-0db00001

        Ignored (carry the workload tag, not members): 1 without a configured tier, 1 outside the VPC, 0 terminated

        Summary: 9 to stop, 0 to start, 0 to resize, 0 excluded, 3 stages
    "#]]
    .assert_eq(&stdout(&o));
}

#[test]
fn exit_codes() {
    // usage
    assert_eq!(run(&["plan", "-c", EXAMPLE]).status.code(), Some(2));
    assert_eq!(run(&["frobnicate"]).status.code(), Some(2));
    assert_eq!(
        run(&[
            "plan",
            "-c",
            EXAMPLE,
            "-w",
            "ExampleTestCase",
            "-a",
            "pause",
            "--observed",
            RUNNING
        ])
        .status
        .code(),
        Some(2)
    );
    // invalid input
    let o = run(&[
        "plan",
        "-c",
        EXAMPLE,
        "-w",
        "Nope",
        "-a",
        "stop",
        "--observed",
        RUNNING,
    ]);
    assert_eq!(o.status.code(), Some(1));
    assert_eq!(
        stderr(&o),
        "workload \"Nope\" is not defined in the files given (defined: ExampleTestCase)\n"
    );
    let o = run(&[
        "plan",
        "-c",
        EXAMPLE,
        "-w",
        "ExampleTestCase",
        "-a",
        "start",
        "-p",
        "turbo",
        "--observed",
        STOPPED,
    ]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stderr(&o).contains("profile \"turbo\" is not defined"),
        "{}",
        stderr(&o)
    );
    let o = run(&["validate", "no/such/file.yaml"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stderr(&o).starts_with("no/such/file.yaml: cannot read"),
        "{}",
        stderr(&o)
    );
    let fleet = std::env::temp_dir().join(format!("ec2s-fleet-{}.json", std::process::id()));
    std::fs::write(
        &fleet,
        r#"{"instances": [{"id": "i-1", "state": "asleep", "type": "t3.small", "az": "a"}]}"#,
    )
    .unwrap();
    let o = run(&[
        "plan",
        "-c",
        EXAMPLE,
        "-w",
        "ExampleTestCase",
        "-a",
        "stop",
        "--observed",
        fleet.to_str().unwrap(),
    ]);
    std::fs::remove_file(&fleet).unwrap();
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stderr(&o).contains(": error: instances[0]: invalid instance: unknown variant `asleep`"),
        "{}",
        stderr(&o)
    );
}

#[test]
fn export_output_validates_and_plans_the_same() {
    let dir = std::env::temp_dir().join(format!("ec2s-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    for (format, ext) in [
        ("yaml", "yaml"),
        ("seed-json", "json"),
        ("dynamodb-json", "json"),
        ("loader-yaml", "yaml"),
    ] {
        let out = dir.join(format!("out-{format}.{ext}"));
        let o = run(&["export", "-f", format, "-o", out.to_str().unwrap(), EXAMPLE]);
        assert!(o.status.success(), "{}", stderr(&o));
        let a = plan_json(&["-a", "start", "-p", "profileD", "--observed", STOPPED]);
        let o = run(&[
            "plan",
            "-c",
            out.to_str().unwrap(),
            "-w",
            "ExampleTestCase",
            "-o",
            "json",
            "-a",
            "start",
            "-p",
            "profileD",
            "--observed",
            STOPPED,
        ]);
        assert!(o.status.success(), "{format}: {}", stderr(&o));
        let b: Value = serde_json::from_slice(&o.stdout).unwrap();
        assert_eq!(a, b, "{format}");
    }
    std::fs::remove_dir_all(&dir).unwrap();
}
