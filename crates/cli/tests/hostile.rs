//! Regression tests for hostile and careless use of the command line (issue 7), each
//! named after the defect it fixes, and the kill test: a simulated run killed at
//! random points always leaves files that load and a run that resumes to success.

mod common;

use std::process::{Child, Stdio};
use std::time::Duration;

use common::{Env, err, out, repo};
use serde_json::Value;

const DEMO: &str = "examples/demo.yaml";

fn stop_args(fleet: &str, speed: &str) -> Vec<String> {
    [
        "run",
        "-c",
        DEMO,
        "-w",
        "ExampleTestCase",
        "-a",
        "stop",
        "--cloud",
        "sim",
        "--fleet",
        fleet,
        "--speed",
        speed,
    ]
    .map(str::to_string)
    .to_vec()
}

fn args(v: &[String]) -> Vec<&str> {
    v.iter().map(String::as_str).collect()
}

#[test]
fn issue7_1_and_13_exemptions_are_checked_before_they_are_stored() {
    let e = Env::new("exempt-checks");
    for until in ["10000-01-01", "+10000-01-01", "9999-12-31T23:59:59-23:59"] {
        let o = e.run(&["exempt", "add", "i-0web0003", "--until", until]);
        assert!(!o.status.success(), "{until} accepted: {}", out(&o));
        assert!(
            err(&o).contains("too far ahead") || err(&o).contains("expected"),
            "{}",
            err(&o)
        );
    }
    for id in [
        "i-'; drop table",
        "i-",
        "I-0WEB",
        &format!("i-{}", "0".repeat(100_000)),
    ] {
        let o = e.run(&["exempt", "add", id]);
        assert_eq!(o.status.code(), Some(1), "{id:.40} accepted");
        assert!(
            err(&o).contains("is not an instance id"),
            "{:.200}",
            err(&o)
        );
    }
    let o = e.run(&["exempt", "add", "i-0web0003", "--until", "2001-01-01"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(err(&o).contains("is in the past"), "{}", err(&o));
    // The latest expiry is accepted and reads back; a second exemption of the same
    // instance replaces the first.
    let o = e.run(&[
        "exempt",
        "add",
        "i-0web0003",
        "--until",
        "9999-12-31T23:59:59Z",
    ]);
    assert!(o.status.success(), "{}", err(&o));
    // The last day, as a date, means through its last second.
    let o = e.run(&["exempt", "add", "i-0web0003", "--until", "9999-12-31"]);
    assert!(
        out(&o).contains("until 9999-12-31T23:59:59+00:00"),
        "{}",
        err(&o)
    );
    let o = e.run(&["exempt", "add", "i-0web0003", "--reason", "load test"]);
    assert!(o.status.success(), "{}", err(&o));
    let o = e.run(&["exempt", "list"]);
    assert!(o.status.success(), "{}", err(&o));
    // Who asked is shown: the user and this host.
    assert!(
        out(&o).starts_with("i-0web0003 until removed: load test (by ")
            && out(&o).lines().count() == 1,
        "{}",
        out(&o)
    );
    let fleet = e.fleet();
    let o = e.run(&[
        "status",
        "-c",
        DEMO,
        "-w",
        "ExampleTestCase",
        "--cloud",
        "sim",
        "--fleet",
        &fleet,
    ]);
    assert!(o.status.success(), "{}", err(&o));
}

#[test]
fn issue7_2_and_8_a_week_long_pause_costs_nothing_at_max_speed() {
    let e = Env::new("long-delay");
    let config = e.dir.join("w.yaml");
    let text = std::fs::read_to_string(repo().join(DEMO)).unwrap().replace(
        "stop: { order: 0, wait: true, delay: 10 }",
        "stop: { order: 0, wait: true, delay: 604800 }",
    );
    std::fs::write(&config, text).unwrap();
    let fleet = e.fleet();
    let mut a = stop_args(&fleet, "max");
    a[2] = config.display().to_string();
    a.extend(["-o", "json"].map(str::to_string));
    let o = e.run(&args(&a));
    assert!(o.status.success(), "{}", err(&o));
    let summary: Value = serde_json::from_str(&out(&o)).unwrap();
    let secs = summary["seconds"]
        .as_f64()
        .unwrap_or_else(|| panic!("{summary}"));
    assert!(secs >= 604_800.0, "{summary}");
}

#[test]
fn issue7_5_runs_of_two_workloads_on_one_fleet_file_keep_each_others_changes() {
    let e = Env::new("shared-fleet");
    // A second workload: the same instances under other ids and another tag value.
    let mut fleet: Value =
        serde_json::from_str(&std::fs::read_to_string(e.dir.join("fleet.json")).unwrap()).unwrap();
    let list = fleet["instances"].as_array_mut().unwrap();
    let copies: Vec<Value> = list
        .iter()
        .filter(|i| i["tags"]["Environment"] == "ENV001")
        .map(|i| {
            let mut c = i.clone();
            c["id"] = Value::from(format!("{}b", i["id"].as_str().unwrap()));
            c["tags"]["Environment"] = Value::from("ENV002");
            c["load_balancers"] = Value::Array(vec![]);
            c
        })
        .collect();
    let total = list.len() + copies.len();
    list.extend(copies);
    std::fs::write(e.dir.join("fleet.json"), fleet.to_string()).unwrap();
    let second = e.dir.join("second.yaml");
    let text = std::fs::read_to_string(repo().join(DEMO))
        .unwrap()
        .replace("name: ExampleTestCase", "name: Second")
        .replace("value: ENV001", "value: ENV002")
        .replace(", ready: { gate: load-balancer-healthy }", "");
    std::fs::write(&second, text).unwrap();
    let path = e.fleet();
    let first = stop_args(&path, "40");
    let mut other = stop_args(&path, "40");
    other[2] = second.display().to_string();
    other[4] = "Second".to_string();
    let spawn = |a: &[String]| -> Child {
        e.cmd(&args(a))
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap()
    };
    let (one, two) = (spawn(&first), spawn(&other));
    for child in [one, two] {
        let o = child.wait_with_output().unwrap();
        assert!(o.status.success(), "{}", err(&o));
    }
    let states = e.states();
    assert_eq!(states.len(), total);
    for (id, state) in states {
        if !id.contains("decoy") {
            assert_eq!(state, "stopped", "{id}");
        }
    }
}

#[test]
fn issue7_7_a_closed_pipe_ends_the_output_quietly() {
    let e = Env::new("pipe");
    let fleet = e.fleet();
    for a in [
        vec![
            "status",
            "-c",
            DEMO,
            "-w",
            "ExampleTestCase",
            "--cloud",
            "sim",
            "--fleet",
            &fleet,
        ],
        vec!["schema"],
    ] {
        let mut child = e
            .cmd(&a)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        drop(child.stdout.take());
        let o = child.wait_with_output().unwrap();
        assert_eq!(o.status.code(), Some(0), "{a:?}: {}", err(&o));
        assert!(!err(&o).contains("panicked"), "{}", err(&o));
    }
}

#[test]
fn issue7_12_control_characters_never_reach_the_terminal() {
    let e = Env::new("escapes");
    let config = e.dir.join("w.yaml");
    let text = std::fs::read_to_string(repo().join(DEMO))
        .unwrap()
        .replace("name: ExampleTestCase", "name: \"Bogus\\e[2J\\u202e\"");
    std::fs::write(&config, text).unwrap();
    let config = config.display().to_string();
    let fleet = e.fleet();
    let runs = [
        vec!["validate", config.as_str()],
        vec![
            "plan",
            "-c",
            &config,
            "-w",
            "Bogus\u{1b}[2J\u{202e}",
            "-a",
            "stop",
            "--observed",
            &fleet,
        ],
        vec![
            "exempt",
            "add",
            "i-0web0001",
            "--reason",
            "a\u{1b}]0;title\u{7}b",
        ],
        vec!["exempt", "list"],
        vec![
            "plan",
            "-c",
            &config,
            "-w",
            "Nope\u{1b}[31m",
            "-a",
            "stop",
            "--observed",
            &fleet,
        ],
    ];
    for a in runs {
        let o = e.run(&a);
        for stream in [&o.stdout, &o.stderr] {
            assert!(
                !stream.contains(&0x1b),
                "{a:?}: {}",
                String::from_utf8_lossy(stream)
            );
            assert!(!stream.contains(&0x07), "{a:?}");
            assert!(
                !String::from_utf8_lossy(stream).contains('\u{202e}'),
                "{a:?}"
            );
        }
        assert!(
            out(&o).contains("\\u{1b}") || err(&o).contains("\\u{1b}"),
            "{a:?}: {}{}",
            out(&o),
            err(&o)
        );
    }
}

#[test]
fn issue7_14_a_file_that_is_not_utf8_is_reported_with_its_offset() {
    let e = Env::new("utf8");
    let path = e.dir.join("w.yaml");
    std::fs::write(&path, b"version: 1\nworkloads: [\xff]\n").unwrap();
    let o = e.run(&["validate", &path.display().to_string()]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        err(&o).contains("invalid byte 0xFF at byte offset 23 (line 2, column 13)"),
        "{}",
        err(&o)
    );
}

/// A small pseudo-random sequence (xorshift), so that the kill points differ from
/// trial to trial but a failure can be replayed from the seed in the message.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

#[test]
fn issue7_3_a_run_killed_at_any_point_leaves_files_that_load_and_resumes_to_success() {
    let seed = std::env::var("KILL_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0x5eed_u64);
    let trials: usize = std::env::var("KILL_TRIALS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(50);
    let mut rng = Rng(seed);
    for trial in 0..trials {
        let e = Env::new(&format!("kill-{trial}"));
        let fleet = e.fleet();
        // At 150 virtual seconds per real second the stop takes about one second.
        let mut child = e
            .cmd(&args(&stop_args(&fleet, "150")))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let at = Duration::from_millis(rng.next() % 1200);
        std::thread::sleep(at);
        child.kill().unwrap();
        child.wait().unwrap();
        let context = format!("trial {trial} (KILL_SEED={seed}), killed after {at:?}");
        let text = std::fs::read_to_string(e.dir.join("fleet.json")).unwrap();
        let _: Value = serde_json::from_str(&text)
            .unwrap_or_else(|x| panic!("{context}: fleet file unreadable: {x}"));
        let o = e.run(&["runs"]);
        assert!(
            o.status.success(),
            "{context}: store unreadable: {}",
            err(&o)
        );
        let o = e.run(&args(&stop_args(&fleet, "max")));
        assert!(o.status.success(), "{context}: {}{}", out(&o), err(&o));
        for (id, state) in e.states() {
            if !id.contains("decoy") {
                assert_eq!(state, "stopped", "{context}: {id}");
            }
        }
        let runs = out(&e.run(&["runs"]));
        assert!(!runs.contains(" running "), "{context}: {runs}");
    }
}
