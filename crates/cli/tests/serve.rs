//! `serve` on the simulated region in virtual time: a week of two workloads'
//! schedules, with a holiday and an override, and a restart after SIGKILL.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use chrono::{DateTime, Datelike, Utc, Weekday};
use serde_json::{Value, json};

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

struct Env {
    dir: PathBuf,
}

impl Env {
    fn new(name: &str) -> Env {
        let dir = std::env::temp_dir().join(format!("ec2s-serve-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        Env { dir }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    fn cmd(&self, args: &[&str]) -> Command {
        let mut c = Command::new(env!("CARGO_BIN_EXE_ec2-scheduler"));
        c.args(args)
            .current_dir(&self.dir)
            .env(
                "EC2_SCHEDULER_STORE",
                format!("sqlite:{}", self.path("state.db").display()),
            )
            .env_remove("RUST_LOG");
        c
    }

    fn run(&self, args: &[&str]) -> Output {
        self.cmd(args).output().unwrap()
    }

    fn ok(&self, args: &[&str]) -> String {
        let o = self.run(args);
        assert!(
            o.status.success(),
            "{args:?}: {}{}",
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        );
        String::from_utf8(o.stdout).unwrap()
    }

    fn json(&self, args: &[&str]) -> Value {
        serde_json::from_str(&self.ok(args)).unwrap()
    }

    /// Serves from `start` to `until` of virtual time, as fast as it goes.
    fn serve(&self, start: DateTime<Utc>, until: DateTime<Utc>) {
        self.ok(&[
            "serve",
            "--cloud",
            "sim",
            "--fleet",
            "fleet.json",
            "--speed",
            "max",
            "--start",
            &start.to_rfc3339(),
            "--until",
            &until.to_rfc3339(),
            "--turn-seconds",
            "900",
            "--log-level",
            "warning",
        ]);
    }

    /// The recorded events of `workload`: (at, action, outcome, detail, late).
    fn history(&self, workload: &str) -> Vec<(DateTime<Utc>, String, String, String, i64)> {
        let v = self.json(&[
            "schedule", "history", "-w", workload, "--limit", "1000", "-o", "json",
        ]);
        let mut out: Vec<_> = v
            .as_array()
            .unwrap()
            .iter()
            .map(|r| {
                let at: DateTime<Utc> = r["at"].as_str().unwrap().parse().unwrap();
                let recorded: DateTime<Utc> = r["recorded_at"].as_str().unwrap().parse().unwrap();
                (
                    at,
                    r["action"].as_str().unwrap().to_string(),
                    r["outcome"].as_str().unwrap().to_string(),
                    r["detail"].as_str().unwrap_or_default().to_string(),
                    (recorded - at).num_seconds(),
                )
            })
            .collect();
        out.sort();
        out
    }
}

impl Drop for Env {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// The seed's 12 instances (ENV001) and three more of a second workload (ENV002).
fn fleet(path: &Path) {
    let text = std::fs::read_to_string(repo().join("examples/seed/fleet-stopped.json")).unwrap();
    let mut v: Value = serde_json::from_str(&text).unwrap();
    let batch: Vec<Value> = (0..3)
        .map(|n| {
            json!({
                "id": format!("i-0bat000{n}"), "state": "stopped", "type": "c5.large",
                "az": "us-west-2a", "vpc_id": "vpc-xyz",
                "tags": {"Environment": "ENV002", "Role": "Worker", "Name": format!("batch-{n}")}
            })
        })
        .collect();
    v["instances"].as_array_mut().unwrap().extend(batch);
    std::fs::write(path, serde_json::to_string_pretty(&v).unwrap()).unwrap();
}

fn workloads(path: &Path, holiday: &str) {
    let text = format!(
        r#"version: 1
workloads:
  - name: office
    region: us-west-2
    workload_tag: {{ key: Environment, value: ENV001 }}
    tier_tag_key: Role
    schedules:
      - timezone: Europe/Berlin
        skip: ["{holiday}"]
        periods: [{{ weekdays: [mon-fri], start: "08:00", stop: "18:00" }}]
    tiers:
      - {{ name: Role_DB, start: {{ order: 0, wait: true }}, stop: {{ order: 2, wait: true }} }}
      - {{ name: Role_App, start: {{ order: 1, wait: true }}, stop: {{ order: 1, wait: true }} }}
      - {{ name: Role_Web, start: {{ order: 2 }}, stop: {{ order: 0, wait: true }} }}
  - name: batch
    region: us-west-2
    workload_tag: {{ key: Environment, value: ENV002 }}
    tier_tag_key: Role
    schedules:
      - timezone: America/New_York
        periods: [{{ weekdays: [mon-fri], start: "22:00", stop: "04:00" }}]
    tiers:
      - {{ name: Worker, start: {{ order: 0, wait: true }}, stop: {{ order: 0, wait: true }} }}
"#
    );
    std::fs::write(path, text).unwrap();
}

/// The events the schedules list between `from` and `to`, as (at, action, skipped).
fn listed(
    env: &Env,
    workload: &str,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
) -> Vec<(DateTime<Utc>, String, bool)> {
    let v = env.json(&[
        "schedule",
        "next",
        "-w",
        workload,
        "--from",
        &from.to_rfc3339(),
        "--count",
        "40",
        "-o",
        "json",
    ]);
    let mut out: Vec<_> = v
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            let at: DateTime<Utc> = DateTime::parse_from_rfc3339(e["at"].as_str().unwrap())
                .unwrap()
                .to_utc();
            (
                at,
                e["action"].as_str().unwrap().to_string(),
                e.get("skipped").is_some(),
            )
        })
        .filter(|(at, _, _)| *at <= to)
        .collect();
    out.sort();
    out
}

fn now_minute() -> DateTime<Utc> {
    let now = Utc::now();
    DateTime::from_timestamp(now.timestamp() / 60 * 60, 0).unwrap()
}

#[test]
fn a_week_of_two_workloads_fires_every_event_at_its_instant_and_only_then() {
    let env = Env::new("week");
    fleet(&env.path("fleet.json"));
    let start = now_minute();
    let end = start + chrono::Duration::days(7);
    // A weekday holiday two to four days ahead.
    let holiday = (2..7)
        .map(|d| (start + chrono::Duration::days(d)).date_naive())
        .find(|d| !matches!(d.weekday(), Weekday::Sat | Weekday::Sun))
        .unwrap();
    workloads(&env.path("w.yaml"), &holiday.to_string());
    env.ok(&["load", "w.yaml"]);
    let o = env.ok(&[
        "override",
        "add",
        "-w",
        "office",
        "--skip-next",
        "stop",
        "--reason",
        "release",
    ]);
    assert!(o.contains("skip the stop"), "{o}");

    env.serve(start, end);

    for workload in ["office", "batch"] {
        let expected = listed(&env, workload, start, end);
        assert!(
            expected.iter().filter(|e| !e.2).count() >= 4,
            "{workload}: {expected:?}"
        );
        let got: Vec<_> = env
            .history(workload)
            .into_iter()
            // Before the start: what the service found missed (or fired within the
            // grace period) when it started.
            .filter(|r| r.0 > start)
            .collect();
        // Every event the schedule lists was met once, and nothing else.
        let want: BTreeSet<(DateTime<Utc>, String)> =
            expected.iter().map(|e| (e.0, e.1.clone())).collect();
        let seen: BTreeSet<(DateTime<Utc>, String)> =
            got.iter().map(|r| (r.0, r.1.clone())).collect();
        assert_eq!(seen, want, "{workload}");
        assert_eq!(got.len(), expected.len(), "{workload}: {got:?}");
        for (at, action, outcome, detail, late) in &got {
            let skipped = expected.iter().any(|e| e.0 == *at && e.1 == *action && e.2);
            if skipped {
                assert_eq!(outcome, "skipped", "{workload} {at} {action}");
            } else {
                assert!(
                    outcome == "fired" || detail.starts_with("nothing to do"),
                    "{workload} {at} {action}: {outcome} {detail}"
                );
            }
            // Fired at its instant: the virtual clock had not moved on.
            assert!(
                (0..=60).contains(late),
                "{workload} {at} {action}: {late} s late"
            );
        }
    }
    // The holiday and the override were honoured, and said so.
    let office = env.history("office");
    assert!(
        office
            .iter()
            .any(|r| r.2 == "skipped" && r.3.contains(&format!("skip date {holiday}"))),
        "{office:?}"
    );
    assert!(
        office
            .iter()
            .any(|r| r.1 == "stop" && r.2 == "skipped" && r.3.contains("override")),
        "{office:?}"
    );

    // The actual savings come from the runs serve made: each batch instance was
    // stopped from each stop that stopped it to the next start (or the end of the
    // week), give or take the minutes a stop run takes.
    let mut expected_hours = 0.0;
    let mut pairs = 0;
    let mut stopped_at: Option<DateTime<Utc>> = None;
    for (at, action, outcome, detail, _) in env.history("batch") {
        if outcome != "fired" || detail.starts_with("nothing to do") {
            continue;
        }
        match (action.as_str(), stopped_at) {
            ("stop", None) => stopped_at = Some(at),
            ("start", Some(s)) => {
                expected_hours += (at - s).num_seconds() as f64 / 3600.0;
                pairs += 1;
                stopped_at = None;
            }
            _ => {}
        }
    }
    if let Some(s) = stopped_at {
        expected_hours += (end - s).num_seconds() as f64 / 3600.0;
        pairs += 1;
    }
    assert!(pairs >= 3, "{:?}", env.history("batch"));
    let report = env.json(&[
        "savings",
        "-w",
        "batch",
        "--cloud",
        "sim",
        "--fleet",
        "fleet.json",
        "--from",
        &start.date_naive().to_string(),
        "--to",
        &(end.date_naive() + chrono::Duration::days(1)).to_string(),
        "--sim-clock",
        &end.to_rfc3339(),
        "-o",
        "json",
    ]);
    let actual = &report[0]["actual"];
    let lines = actual["lines"].as_array().unwrap();
    assert_eq!(lines.len(), 1, "{actual:#}");
    assert_eq!(
        (
            &lines[0]["tier"],
            &lines[0]["instance_type"],
            &lines[0]["instances"]
        ),
        (&json!("Worker"), &json!("c5.large"), &json!(3)),
        "{actual:#}"
    );
    let per_instance = actual["instance_hours_saved"].as_f64().unwrap() / 3.0;
    assert!(
        (per_instance - expected_hours).abs() <= 0.1 * pairs as f64,
        "actual {per_instance} h per instance, expected {expected_hours} h\n{actual:#}"
    );
    let price = lines[0]["hourly_price"].as_f64().unwrap();
    let saved = actual["saved"].as_f64().unwrap();
    assert!(
        (saved - price * per_instance * 3.0).abs() < 1e-6,
        "{actual:#}"
    );
}

/// A store with both workloads (no holiday), and the next start of `office` at
/// least a day ahead.
fn loaded_with_next_start(name: &str) -> (Env, DateTime<Utc>) {
    let env = Env::new(name);
    fleet(&env.path("fleet.json"));
    workloads(&env.path("w.yaml"), "2000-01-01");
    env.ok(&["load", "w.yaml"]);
    let from = now_minute() + chrono::Duration::days(1);
    let t = listed(&env, "office", from, from + chrono::Duration::days(7))
        .into_iter()
        .find(|e| e.1 == "start" && !e.2)
        .unwrap()
        .0;
    (env, t)
}

#[test]
fn after_a_sigkill_a_restart_within_the_grace_period_fires_the_event_once() {
    let (env, t) = loaded_with_next_start("kill");
    // A service at real speed, a minute before the start, killed before it.
    let mut child = env
        .cmd(&[
            "serve",
            "--cloud",
            "sim",
            "--fleet",
            "fleet.json",
            "--speed",
            "1",
            "--start",
            &(t - chrono::Duration::seconds(60)).to_rfc3339(),
            "--log-level",
            "warning",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(1500));
    child.kill().unwrap();
    child.wait().unwrap();
    let fired = |env: &Env| {
        env.history("office")
            .into_iter()
            .filter(|r| r.0 == t && r.2 == "fired")
            .count()
    };
    assert_eq!(fired(&env), 0, "killed before the event");
    // Started again 5 minutes after it: within the grace period, fired once.
    env.serve(
        t + chrono::Duration::minutes(5),
        t + chrono::Duration::minutes(10),
    );
    assert_eq!(fired(&env), 1);
    let late = env
        .history("office")
        .into_iter()
        .find(|r| r.0 == t)
        .unwrap()
        .4;
    assert!(
        late >= 300,
        "fired when the service came back, {late} s after"
    );
    // Again: the claim holds, nothing fires twice.
    env.serve(
        t + chrono::Duration::minutes(6),
        t + chrono::Duration::minutes(12),
    );
    assert_eq!(fired(&env), 1);
    let runs = env.ok(&["runs", "-w", "office"]);
    assert_eq!(
        runs.lines().filter(|l| l.contains("start")).count(),
        1,
        "{runs}"
    );
}

#[test]
fn an_event_missed_longer_than_the_grace_period_is_reported_not_fired() {
    let (env, t) = loaded_with_next_start("missed");
    env.serve(
        t + chrono::Duration::minutes(20),
        t + chrono::Duration::minutes(25),
    );
    let r = env
        .history("office")
        .into_iter()
        .find(|r| r.0 == t)
        .unwrap();
    assert_eq!(r.2, "missed", "{r:?}");
    assert!(r.3.contains("grace"), "{r:?}");
    assert!(!env.ok(&["runs", "-w", "office"]).contains("start"));
}
