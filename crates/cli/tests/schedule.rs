//! `schedule state` and `schedule next` as a user runs them.

use std::path::PathBuf;
use std::process::{Command, Output};

use expect_test::expect;
use serde_json::Value;

fn run(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_ec2-scheduler"))
        .args(args)
        .current_dir(PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../.."))
        .env("EC2_SCHEDULER_STORE", "memory")
        .output()
        .unwrap()
}

fn ok(args: &[&str]) -> String {
    let o = run(args);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    String::from_utf8(o.stdout).unwrap()
}

const OFFICE: &[&str] = &["-c", "examples/office-hours.yaml", "-w", "ExampleTestCase"];

#[test]
fn state_names_the_period_that_decides() {
    let mut args = vec!["schedule", "state"];
    args.extend_from_slice(OFFICE);
    args.extend(["--at", "2026-12-01T11:30:00Z"]);
    expect![[r#"
        2026-12-01T12:30:00+01:00: running with profile profileD (schedule office, lunch-peak, since 2026-12-01T12:00:00+01:00)
    "#]]
    .assert_eq(&ok(&args));
    args.extend(["-o", "json"]);
    let v: Value = serde_json::from_str(&ok(&args)).unwrap();
    assert_eq!(v["wish"], "running");
    assert_eq!(v["period"], "lunch-peak");
    let night = ok(&[
        "schedule",
        "state",
        "--schedule",
        "examples/schedules/night-batch.yaml",
        "--at",
        "2026-12-01T12:00:00Z",
    ]);
    // 23:00 in Sydney, Tuesday night.
    assert_eq!(
        night,
        "2026-12-01T23:00:00+11:00: running (schedule default, batch, since 2026-12-01T22:00:00+11:00)\n"
    );
}

#[test]
fn next_lists_events_and_what_skips_them() {
    let mut args = vec!["schedule", "next"];
    args.extend_from_slice(OFFICE);
    args.extend(["--from", "2026-12-24T00:00:00+01:00", "--count", "2"]);
    expect![[r#"
        2026-12-24T07:30:00+01:00  start                office/office-hours  skipped: skip date 2026-12-24
        2026-12-24T12:00:00+01:00  start profileD       office/lunch-peak  skipped: skip date 2026-12-24
        2026-12-24T14:00:00+01:00  stop                 office/lunch-peak  skipped: skip date 2026-12-24
        2026-12-24T19:00:00+01:00  stop                 office/office-hours  skipped: skip date 2026-12-24
        2026-12-25T07:30:00+01:00  start                office/office-hours  skipped: skip date 12-25 (Christmas Day, calendar de-holidays)
        2026-12-25T12:00:00+01:00  start profileD       office/lunch-peak  skipped: skip date 12-25 (Christmas Day, calendar de-holidays)
        2026-12-25T14:00:00+01:00  stop                 office/lunch-peak  skipped: skip date 12-25 (Christmas Day, calendar de-holidays)
        2026-12-25T19:00:00+01:00  stop                 office/office-hours  skipped: skip date 12-25 (Christmas Day, calendar de-holidays)
        2026-12-25T22:00:00+01:00  start                office/friday-batch  skipped: skip date 12-25 (Christmas Day, calendar de-holidays)
        2026-12-26T04:00:00+01:00  stop                 office/friday-batch  skipped: skip date 12-26 (Boxing Day, calendar de-holidays)
        2026-12-28T07:30:00+01:00  start                office/office-hours
        2026-12-28T12:00:00+01:00  start profileD       office/lunch-peak
    "#]]
    .assert_eq(&ok(&args));
    let json = ok(&[
        "schedule",
        "next",
        "--schedule",
        "examples/schedules/night-batch.yaml",
        "--from",
        "2026-12-24T00:00:00Z",
        "--count",
        "3",
        "-o",
        "json",
    ]);
    let v: Value = serde_json::from_str(&json).unwrap();
    let shown: Vec<String> = v
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            format!(
                "{} {} {}",
                e["at"].as_str().unwrap(),
                e["action"].as_str().unwrap(),
                e["skipped"].as_str().unwrap_or("-")
            )
        })
        .collect();
    assert_eq!(
        shown,
        // Thursday night's window runs through Christmas morning (its stop falls on
        // the holiday) until Saturday's stop.
        [
            "2026-12-24T22:00:00+11:00 start -",
            "2026-12-25T05:00:00+11:00 stop skip date 12-25 (Christmas Day)",
            "2026-12-25T22:00:00+11:00 start skip date 12-25 (Christmas Day)",
            "2026-12-26T05:00:00+11:00 stop -",
            "2026-12-28T22:00:00+11:00 start -",
        ]
    );
}

#[test]
fn bad_schedule_input_is_refused_with_where_and_what() {
    let dir = std::env::temp_dir().join(format!("ec2s-sched-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let bad = dir.join("bad.yaml");
    std::fs::write(&bad, "timezone: Mars/Olympus\nperiods: [{ start: '7' }]\n").unwrap();
    let o = run(&["schedule", "state", "--schedule", bad.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(1));
    let err = String::from_utf8(o.stderr).unwrap();
    assert!(
        err.contains("bad.yaml: error: timezone: unknown time zone \"Mars/Olympus\""),
        "{err}"
    );
    assert!(
        err.contains("bad.yaml: error: periods[0].start: expected a time"),
        "{err}"
    );
    // Usage errors: both ways of naming a schedule, a bad instant, a zero count.
    let o = run(&["schedule", "state", "--schedule", "x.yaml", "-w", "W"]);
    assert_eq!(o.status.code(), Some(2));
    let o = run(&[
        "schedule",
        "state",
        "--schedule",
        "examples/schedules/night-batch.yaml",
        "--at",
        "tomorrow",
    ]);
    assert_eq!(o.status.code(), Some(2));
    let o = run(&[
        "schedule",
        "next",
        "--schedule",
        "examples/schedules/night-batch.yaml",
        "--count",
        "0",
    ]);
    assert_eq!(o.status.code(), Some(1));
    let o = run(&[
        "schedule",
        "state",
        "-c",
        "examples/office-hours.yaml",
        "-w",
        "Nope",
    ]);
    assert_eq!(o.status.code(), Some(1));
    std::fs::remove_dir_all(&dir).ok();
}

/// The original README's benefit table, through `savings`: 8 hours a weekday saves
/// 76 %, 18 hours a weekday 46 %, 24 hours Monday to Friday 28 % (within a point).
#[test]
fn savings_reproduce_the_originals_benefit_table() {
    let dir = std::env::temp_dir().join(format!("ec2s-savings-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..");
    std::fs::copy(
        root.join("examples/seed/fleet-stopped.json"),
        dir.join("fleet.json"),
    )
    .unwrap();
    std::fs::write(
        dir.join("prices.json"),
        r#"{"as_of": "test", "currency": "USD", "regions": {"us-west-2": {"t2.nano": 0.01}}}"#,
    )
    .unwrap();
    for (start, stop, want) in [
        ("09:00", "17:00", 76.0),
        ("06:00", "00:00", 46.0),
        ("00:00", "23:59", 28.0),
    ] {
        let text = format!(
            "version: 1\nworkloads:\n  - name: w\n    region: us-west-2\n    workload_tag: {{ key: Environment, value: ENV001 }}\n    tier_tag_key: Role\n    schedules:\n      - timezone: UTC\n        periods: [{{ weekdays: [mon-fri], start: \"{start}\", stop: \"{stop}\" }}]\n    tiers: [{{ name: Role_Web, start: {{ order: 0 }}, stop: {{ order: 0 }} }}]\n"
        );
        std::fs::write(dir.join("w.yaml"), text).unwrap();
        let o = Command::new(env!("CARGO_BIN_EXE_ec2-scheduler"))
            .args([
                "savings",
                "-c",
                "w.yaml",
                "-w",
                "w",
                "--cloud",
                "sim",
                "--fleet",
                "fleet.json",
                "--from",
                "2026-11-30",
                "--to",
                "2026-12-28",
                "--prices",
                "prices.json",
                "-o",
                "json",
            ])
            .current_dir(&dir)
            .env("EC2_SCHEDULER_STORE", "memory")
            .output()
            .unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        let v: Value = serde_json::from_slice(&o.stdout).unwrap();
        let got = v[0]["percent_saved"].as_f64().unwrap();
        assert!((got - want).abs() <= 1.0, "{start}-{stop}: {got}");
        // Four web instances, at the user's price.
        let line = &v[0]["lines"][0];
        assert_eq!(line["instances"], 4);
        let hours = line["instance_hours_saved"].as_f64().unwrap();
        assert!((line["saved"].as_f64().unwrap() - hours * 0.01).abs() < 1e-6);
    }
    std::fs::remove_dir_all(&dir).ok();
}

/// `prices update` makes a table from the Price List API (a loopback stand-in here)
/// that `savings --prices` then uses.
#[test]
fn prices_update_writes_a_table_that_savings_reads() {
    use ec2_scheduler_testkit::price_list::{product, serve};
    let (endpoint, seen) = serve(vec![serde_json::json!({
        "FormatVersion": "aws_v1",
        "PriceList": [product("t2.nano", "us-west-2", "Linux", "0.0061000000")]
    })]);
    let dir = std::env::temp_dir().join(format!("ec2s-prices-update-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..");
    let cmd = |args: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_ec2-scheduler"))
            .args(args)
            .current_dir(&dir)
            .env("EC2_SCHEDULER_STORE", "memory")
            .env("AWS_ACCESS_KEY_ID", "testing")
            .env("AWS_SECRET_ACCESS_KEY", "testing")
            .env("AWS_CONFIG_FILE", "/dev/null")
            .env("AWS_SHARED_CREDENTIALS_FILE", "/dev/null")
            .env("AWS_EC2_METADATA_DISABLED", "true")
            .output()
            .unwrap()
    };
    let o = cmd(&[
        "prices",
        "update",
        "--region",
        "us-west-2",
        "--type",
        "t2.nano",
        "--endpoint-url",
        &endpoint,
        "-o",
        "prices.json",
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(
        String::from_utf8_lossy(&o.stdout),
        "wrote 1 price in 1 region to prices.json\n"
    );
    assert_eq!(seen.lock().unwrap().len(), 1);
    let table: Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("prices.json")).unwrap()).unwrap();
    assert_eq!(table["regions"]["us-west-2"]["t2.nano"], 0.0061);
    assert_eq!(table["currency"], "USD");
    std::fs::copy(
        root.join("examples/seed/fleet-stopped.json"),
        dir.join("fleet.json"),
    )
    .unwrap();
    let o = cmd(&[
        "savings",
        "-c",
        root.join("examples/office-hours.yaml").to_str().unwrap(),
        "-w",
        "ExampleTestCase",
        "--cloud",
        "sim",
        "--fleet",
        "fleet.json",
        "--prices",
        "prices.json",
        "-o",
        "json",
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let v: Value = serde_json::from_slice(&o.stdout).unwrap();
    let web = v[0]["lines"]
        .as_array()
        .unwrap()
        .iter()
        .find(|l| l["instance_type"] == "t2.nano")
        .unwrap_or_else(|| panic!("{v:#}"));
    assert_eq!(web["hourly_price"], 0.0061, "{v:#}");
    // An answer without any price is an error that says for what.
    let (endpoint, _) = serve(vec![serde_json::json!({"PriceList": []})]);
    let o = cmd(&[
        "prices",
        "update",
        "--region",
        "eu-west-1",
        "--type",
        "x9.huge",
        "--endpoint-url",
        &endpoint,
    ]);
    assert_eq!(o.status.code(), Some(1), "{o:?}");
    assert!(
        String::from_utf8_lossy(&o.stderr)
            .contains("no Linux on-demand price in eu-west-1 for x9.huge"),
        "{o:?}"
    );
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn a_calendar_is_imported_from_an_ics_file() {
    let yaml = ok(&[
        "calendar",
        "import",
        "--ics",
        "examples/calendars/holidays.ics",
        "--name",
        "holidays",
    ]);
    expect![[r#"
        calendars:
        - name: holidays
          dates:
          - date: 12-25
            name: Christmas
          - date: 12-26
            name: Christmas
          - date: 2027-03-26
            name: Good Friday
          - date: 2027-06-15
            name: Team offsite
    "#]]
    .assert_eq(&yaml);
    // What it prints is a calendar a workload file takes.
    let dir = std::env::temp_dir().join(format!("ec2s-ics-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("w.yaml");
    std::fs::write(
        &file,
        format!(
            "version: 1\n{yaml}workloads:\n  - name: w\n    region: eu-west-1\n    workload_tag: {{ key: a, value: b }}\n    tier_tag_key: t\n    schedules:\n      - timezone: UTC\n        calendars: [holidays]\n        periods: [{{ start: \"08:00\", stop: \"18:00\" }}]\n    tiers: [{{ name: x, start: {{ order: 0 }} }}]\n"
        ),
    )
    .unwrap();
    let state = ok(&[
        "schedule",
        "state",
        "-c",
        file.to_str().unwrap(),
        "-w",
        "w",
        "--at",
        "2027-12-26T12:00:00Z",
    ]);
    assert!(state.contains("stopped"), "{state}");
    // A repetition other than yearly cannot be skip dates.
    let bad = dir.join("weekly.ics");
    std::fs::write(
        &bad,
        "BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:x\r\nBEGIN:VEVENT\r\nUID:1\r\nDTSTART;VALUE=DATE:20261207\r\nRRULE:FREQ=WEEKLY\r\nSUMMARY:x\r\nEND:VEVENT\r\nEND:VCALENDAR\r\n",
    )
    .unwrap();
    let o = run(&[
        "calendar",
        "import",
        "--ics",
        bad.to_str().unwrap(),
        "--name",
        "x",
    ]);
    assert_eq!(o.status.code(), Some(1));
    let err = String::from_utf8(o.stderr).unwrap();
    assert!(
        err.contains("VEVENT[0].RRULE: repeats as \"FREQ=WEEKLY\""),
        "{err}"
    );
    std::fs::remove_dir_all(&dir).ok();
}
