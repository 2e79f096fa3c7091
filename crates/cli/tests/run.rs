//! `run`, `status`, `runs`, `exempt`, `load` and `demo` on the simulated cloud, as a
//! user runs them: each test has its own store file and fleet file.

mod common;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{Env, err, out};
use serde_json::Value;

const EXAMPLE: &str = "examples/seed/example.json";

#[test]
fn load_then_run_stop_and_start_on_the_simulated_fleet() {
    let e = Env::new("run");
    let o = e.run(&["load", EXAMPLE]);
    assert!(o.status.success(), "{}", err(&o));
    assert_eq!(out(&o), "loaded 1 workload: ExampleTestCase\n");

    let o = e.run(&[
        "run",
        "-w",
        "ExampleTestCase",
        "-a",
        "Stop",
        "--cloud",
        "sim",
        "--fleet",
        &e.fleet(),
    ]);
    assert!(o.status.success(), "{}", err(&o));
    assert!(
        out(&o).contains("stop of ExampleTestCase succeeded"),
        "{}",
        out(&o)
    );
    // The seed example does not wait for the last tier; a status later shows all stopped.
    let o = e.run(&[
        "run",
        "-w",
        "ExampleTestCase",
        "-a",
        "Stop",
        "--cloud",
        "sim",
        "--fleet",
        &e.fleet(),
    ]);
    assert!(o.status.success(), "{}", err(&o));
    for (id, state) in e.states() {
        let expected = if id.contains("decoy") {
            "running"
        } else {
            "stopped"
        };
        assert!(
            state == expected || (state == "stopping" && expected == "stopped"),
            "{id} is {state}"
        );
    }

    let o = e.run(&[
        "run",
        "-w",
        "ExampleTestCase",
        "-a",
        "start",
        "-p",
        "profileD",
        "--cloud",
        "sim",
        "--fleet",
        &e.fleet(),
        "-o",
        "json",
    ]);
    assert!(o.status.success(), "{}", err(&o));
    let summary: Value = serde_json::from_str(&out(&o)).unwrap();
    assert_eq!(summary["status"], "succeeded");
    assert_eq!(summary["started_instances"], 9);
    assert_eq!(summary["resized"], 9);

    let o = e.run(&["runs", "-w", "ExampleTestCase"]);
    assert!(o.status.success(), "{}", err(&o));
    assert_eq!(out(&o).lines().count(), 3, "{}", out(&o)); // header + stop + start
    let id = out(&o)
        .lines()
        .nth(1)
        .unwrap()
        .split_whitespace()
        .next()
        .unwrap()
        .to_string();
    let o = e.run(&["runs", "show", &id]);
    assert!(out(&o).contains("History:"), "{}", out(&o));
    assert!(out(&o).contains("ec2:StartInstances"), "{}", out(&o));

    let o = e.run(&[
        "status",
        "-w",
        "ExampleTestCase",
        "--cloud",
        "sim",
        "--fleet",
        &e.fleet(),
    ]);
    assert!(o.status.success(), "{}", err(&o));
    assert!(
        out(&o).contains("Role_Web: 4 members, 4 running/pending"),
        "{}",
        out(&o)
    );
    assert!(!out(&o).contains("decoy"));
}

#[test]
fn stored_exemptions_keep_instances_running() {
    let e = Env::new("exempt");
    let o = e.run(&[
        "exempt",
        "add",
        "i-0web0001",
        "--until",
        "2099-01-01",
        "--reason",
        "load test",
    ]);
    assert!(o.status.success(), "{}", err(&o));
    assert!(
        e.run(&["exempt", "list"])
            .stdout
            .starts_with(b"i-0web0001 until 2099-01-02T00:00:00+00:00: load test")
    );
    let o = e.run(&[
        "run",
        "-c",
        EXAMPLE,
        "-w",
        "ExampleTestCase",
        "-a",
        "stop",
        "--cloud",
        "sim",
        "--fleet",
        &e.fleet(),
    ]);
    assert!(o.status.success(), "{}", err(&o));
    assert!(out(&o).contains("excluded i-0web0001 (Role_Web): stored exemption until 2099-01-02T00:00:00+00:00: load test"), "{}", out(&o));
    assert!(
        e.states()
            .contains(&("i-0web0001".to_string(), "running".to_string()))
    );
    assert!(e.run(&["exempt", "remove", "i-0web0001"]).status.success());
    assert_eq!(
        e.run(&["exempt", "remove", "i-0web0001"]).status.code(),
        Some(1)
    );
    assert_eq!(e.run(&["exempt", "add", "web-1"]).status.code(), Some(1));
}

#[test]
fn dry_run_changes_nothing() {
    let e = Env::new("dry");
    let before = std::fs::read_to_string(e.dir.join("fleet.json")).unwrap();
    let o = e.run(&[
        "run",
        "-c",
        EXAMPLE,
        "-w",
        "ExampleTestCase",
        "-a",
        "Stop",
        "-d",
        "--cloud",
        "sim",
        "--fleet",
        &e.fleet(),
    ]);
    assert!(o.status.success(), "{}", err(&o));
    assert!(
        out(&o).starts_with("Dry run: nothing is changed."),
        "{}",
        out(&o)
    );
    assert!(out(&o).contains("9 to stop"), "{}", out(&o));
    assert_eq!(
        std::fs::read_to_string(e.dir.join("fleet.json")).unwrap(),
        before
    );
    assert_eq!(out(&e.run(&["runs"])), "no runs\n");
}

#[test]
fn errors_are_clear() {
    let e = Env::new("errors");
    let o = e.run(&[
        "run",
        "-w",
        "ExampleTestCase",
        "-a",
        "stop",
        "--cloud",
        "sim",
        "--fleet",
        &e.fleet(),
    ]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        err(&o).contains("workload \"ExampleTestCase\" is not in the store (stored: none)"),
        "{}",
        err(&o)
    );
    let o = e.run(&[
        "run",
        "-c",
        EXAMPLE,
        "-w",
        "ExampleTestCase",
        "-a",
        "stop",
        "--cloud",
        "sim",
    ]);
    assert_eq!(o.status.code(), Some(2), "{}", err(&o));
    let o = e.run(&["runs", "show", "nope"]);
    assert_eq!(o.status.code(), Some(1));
    let o = e.run(&["runs", "--store", "postgres://x"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        err(&o).contains("expected sqlite:PATH, memory or dynamodb:REGION"),
        "{}",
        err(&o)
    );
}

/// Waits until the store has a run in progress.
fn wait_for_running_run(e: &Env) {
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(60) {
        let o = e.run(&["runs"]);
        if out(&o).contains(" running ") {
            return;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    panic!("no run started");
}

#[test]
fn a_killed_run_is_resumed_by_the_next_one() {
    let e = Env::new("kill");
    let fleet = e.fleet();
    // Slow enough (2 virtual seconds per real second) to be killed mid-way.
    let mut child = e
        .cmd(&[
            "run",
            "-c",
            "examples/demo.yaml",
            "-w",
            "ExampleTestCase",
            "-a",
            "stop",
            "--cloud",
            "sim",
            "--fleet",
            &fleet,
            "--speed",
            "2",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    wait_for_running_run(&e);
    std::thread::sleep(Duration::from_millis(500));
    child.kill().unwrap();
    child.wait().unwrap();
    let o = e.run(&[
        "run",
        "-c",
        "examples/demo.yaml",
        "-w",
        "ExampleTestCase",
        "-a",
        "stop",
        "--cloud",
        "sim",
        "--fleet",
        &fleet,
    ]);
    assert!(o.status.success(), "{}{}", out(&o), err(&o));
    assert!(err(&o).contains("resuming run"), "{}", err(&o));
    assert!(err(&o).contains("taking over the lock"), "{}", err(&o));
    let runs = out(&e.run(&["runs"]));
    assert_eq!(runs.lines().count(), 2, "one run only:\n{runs}");
    assert!(runs.contains("succeeded"), "{runs}");
    for (id, state) in e.states() {
        if !id.contains("decoy") {
            assert_eq!(state, "stopped", "{id}");
        }
    }
}

#[test]
fn the_demo_stops_and_starts_in_order() {
    let o = Command::new(env!("CARGO_BIN_EXE_ec2-scheduler"))
        .args(["demo", "--speed", "max"])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", err(&o));
    let text = out(&o);
    assert!(
        text.contains(
            "== stop of ExampleTestCase: 26 to stop (order Role_Web -> Role_App -> Role_DB)"
        ),
        "{text}"
    );
    assert!(text.contains("== start with profile profileD of ExampleTestCase: 26 to start, 26 to resize (order Role_DB -> Role_App -> Role_Web)"), "{text}");
    assert!(text.contains("stop of ExampleTestCase succeeded"), "{text}");
    assert!(
        text.contains("start of ExampleTestCase succeeded"),
        "{text}"
    );
    assert!(
        text.contains("excluded i-0app00004 (Role_App): exemption tag"),
        "{text}"
    );
    assert!(
        text.contains("Region now: 20 running c4.large, 6 running r4.large, 3 running t2.nano."),
        "{text}"
    );
    // Progress events went to standard error, tier by tier in order.
    let events = err(&o);
    let web = events.find("Role_Web: ec2:StopInstances").unwrap();
    let app = events.find("Role_App: ec2:StopInstances").unwrap();
    let db = events.find("Role_DB: ec2:StopInstances").unwrap();
    assert!(web < app && app < db, "{events}");
}

#[test]
fn a_busy_workload_exits_4_and_runs_cancel_frees_it() {
    let e = Env::new("cancel");
    let args = [
        "run",
        "-c",
        EXAMPLE,
        "-w",
        "ExampleTestCase",
        "-a",
        "stop",
        "--cloud",
        "sim",
        "--fleet",
        &e.fleet(),
    ];
    // A run in slow motion: a hundredth of a virtual second per real second.
    let slow = e
        .cmd(&[&args[..], &["--speed", "0.01"]].concat())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    let id = loop {
        let listed = out(&e.run(&["runs"]));
        if let Some(line) = listed.lines().nth(1) {
            break line.split_whitespace().next().unwrap().to_string();
        }
        assert!(Instant::now() < deadline, "no run started");
        std::thread::sleep(Duration::from_millis(100));
    };
    let o = e.run(&args);
    assert_eq!(o.status.code(), Some(4), "{}", err(&o));
    assert!(
        err(&o).contains("workload ExampleTestCase is busy: run "),
        "{}",
        err(&o)
    );
    let o = e.run(&["runs", "cancel", &id]);
    assert!(o.status.success(), "{}", err(&o));
    assert_eq!(
        out(&o),
        format!("run {id} of ExampleTestCase cancelled; its lock is released\n")
    );
    // The slow run stops at its next step: its lease is gone.
    let slow = slow.wait_with_output().unwrap();
    assert_eq!(slow.status.code(), Some(4), "{}", err(&slow));
    assert!(err(&slow).contains("lost the lock"), "{}", err(&slow));
    let o = e.run(&["runs", "cancel", &id]);
    assert_eq!(o.status.code(), Some(4), "{}", err(&o));
    let o = e.run(&["runs", "show", &id]);
    assert!(out(&o).contains("cancelled"), "{}", out(&o));
    // The workload is free again.
    let o = e.run(&args);
    assert!(o.status.success(), "{}", err(&o));
}

#[test]
fn json_logs_carry_the_run_and_the_tier() {
    let e = Env::new("logs");
    let o = e.run(&[
        "run",
        "-c",
        EXAMPLE,
        "-w",
        "ExampleTestCase",
        "-a",
        "stop",
        "--cloud",
        "sim",
        "--fleet",
        &e.fleet(),
        "--log-format",
        "json",
    ]);
    assert!(o.status.success(), "{}", err(&o));
    let records: Vec<Value> = err(&o)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|x| panic!("{x}: {l}")))
        .collect();
    let stop = records
        .iter()
        .find(|r| {
            r["fields"]["message"]
                .as_str()
                .is_some_and(|m| m.starts_with("ec2:StopInstances"))
        })
        .expect("a record of the stop call");
    assert_eq!(stop["level"], "INFO");
    let spans = stop["spans"].as_array().unwrap();
    assert_eq!(spans[0]["name"], "run");
    assert_eq!(spans[0]["workload"], "ExampleTestCase");
    assert_eq!(spans[0]["action"], "stop");
    assert!(spans[0]["run"].as_str().unwrap().starts_with("run-"));
    assert_eq!(stop["span"]["name"], "tier");
    assert_eq!(stop["span"]["tier"], "Role_Web");
    // At -l error, nothing but errors.
    let o = e.run(&[
        "run",
        "-c",
        EXAMPLE,
        "-w",
        "ExampleTestCase",
        "-a",
        "start",
        "--cloud",
        "sim",
        "--fleet",
        &e.fleet(),
        "--log-format",
        "json",
        "-l",
        "error",
    ]);
    assert!(o.status.success(), "{}", err(&o));
    assert_eq!(err(&o), "");
}
