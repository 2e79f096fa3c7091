//! Schedules and calendars in every format: decoding, errors with paths, lint
//! warnings and round trips through export.

use std::path::PathBuf;

use chrono::{DateTime, Utc};
use ec2_scheduler_config::{Format, Loaded, Severity, Source, export, load};
use ec2_scheduler_core::schedule::Wish;
use expect_test::expect;

fn read(rel: &str) -> String {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..");
    std::fs::read_to_string(root.join(rel)).unwrap()
}

fn load_one(name: &str, text: &str) -> Result<Loaded, ec2_scheduler_config::Diagnostics> {
    load(&[Source { name, text }])
}

fn instant(s: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(s).unwrap().to_utc()
}

#[test]
fn the_office_hours_example_loads_and_means_what_it_says() {
    let l = load_one("office-hours.yaml", &read("examples/office-hours.yaml")).unwrap();
    assert!(l.warnings.is_empty(), "{:?}", l.warnings);
    let w = &l.workloads[0];
    assert!(!w.enforce);
    let s = &w.schedules[0];
    assert_eq!(
        (s.name.as_str(), s.zone.name()),
        ("office", "Europe/Berlin")
    );
    assert_eq!(s.periods.len(), 3);
    assert_eq!(s.skip.len(), 9);
    let wish = |at: &str| s.state(instant(at)).wish;
    // Tuesday 2026-12-01, 08:00 in Berlin.
    assert_eq!(wish("2026-12-01T08:00:00+01:00"), Wish::Running);
    assert_eq!(wish("2026-12-01T07:00:00+01:00"), Wish::Stopped);
    assert_eq!(
        s.state(instant("2026-12-01T12:30:00+01:00"))
            .profile
            .as_deref(),
        Some("profileD")
    );
    // Christmas Day and the one-off 24th: Wednesday's stop holds.
    assert_eq!(wish("2026-12-24T10:00:00+01:00"), Wish::Stopped);
    assert_eq!(wish("2026-12-25T10:00:00+01:00"), Wish::Stopped);
    // The Friday batch window runs over midnight.
    assert_eq!(wish("2026-12-05T02:00:00+01:00"), Wish::Running);
    assert_eq!(wish("2026-12-05T05:00:00+01:00"), Wish::Stopped);
}

#[test]
fn schedules_round_trip_through_every_format() {
    let l = load_one("office-hours.yaml", &read("examples/office-hours.yaml")).unwrap();
    for format in Format::ALL {
        let text = export(&l.workloads, format);
        let back = load_one("exported", &text).unwrap_or_else(|e| panic!("{format}: {e}\n{text}"));
        assert_eq!(back.workloads, l.workloads, "{format}");
    }
    // Our YAML keeps the shared calendar shared.
    let yaml = export(&l.workloads, Format::Yaml);
    assert!(yaml.contains("calendars:\n- name: de-holidays"), "{yaml}");
    assert!(yaml.contains("  - de-holidays"), "{yaml}");
}

#[test]
fn a_cron_period_reads_as_eventbridge_means_it() {
    let text = r#"
version: 1
workloads:
  - name: w
    region: eu-west-1
    workload_tag: { key: app, value: w }
    tier_tag_key: tier
    schedules:
      - timezone: America/New_York
        periods:
          - cron: { start: "cron(0 7 ? * MON *)", stop: "cron(0 19 ? * FRI *)" }
    tiers: [{ name: web, start: { order: 0 }, stop: { order: 0 } }]
"#;
    let l = load_one("cron.yaml", text).unwrap();
    let s = &l.workloads[0].schedules[0];
    assert_eq!(s.name, "default");
    // Wednesday 2026-12-02 noon in New York: inside the Monday-to-Friday window.
    assert_eq!(
        s.state(instant("2026-12-02T12:00:00-05:00")).wish,
        Wish::Running
    );
    assert_eq!(
        s.state(instant("2026-12-05T12:00:00-05:00")).wish,
        Wish::Stopped
    );
}

#[test]
fn every_schedule_error_is_reported_with_its_path() {
    let text = r#"
version: 1
calendars:
  - name: holidays
    dates: ["12-25", "13-01", { date: "2026-02-30" }]
workloads:
  - name: w
    region: eu-west-1
    workload_tag: { key: app, value: w }
    tier_tag_key: tier
    schedules:
      - name: a
        timezone: Europe/Berlim
        calendars: [holidays, nope]
        skip: [christmas]
        periods:
          - { start: "8:00", stop: "25:00", weekdays: [mon-fry, "mon#6"] }
          - { monthdays: [0, "32W", L], months: [13, jan, "foo"] }
          - { cron: { start: "cron(0 8 * * MON *)" }, weekdays: [mon] }
          - { start: "08:00", stop_days: { weekdays: [fri] } }
          - { start: 800, colour: red }
      - name: a
        timezone: UTC
        periods: []
    enforce: "yes"
    tiers: [{ name: web, start: { order: 0 } }]
"#;
    let e = load_one("s.yaml", text).unwrap_err();
    expect![[r#"
        s.yaml: error: calendars[0].dates[1]: "13-01": expected a date (2026-12-24) or a month and day every year (12-25)
        s.yaml: error: calendars[0].dates[2].date: "2026-02-30": expected a date (2026-12-24) or a month and day every year (12-25)
        s.yaml: error: workloads[0].schedules[0].timezone: unknown time zone "Europe/Berlim": expected an IANA name such as Europe/Berlin
        s.yaml: error: workloads[0].schedules[0].periods[0].start: expected a time "HH:MM" from 00:00 to 23:59, found "8:00"
        s.yaml: error: workloads[0].schedules[0].periods[0].stop: expected a time "HH:MM" from 00:00 to 23:59, found "25:00"
        s.yaml: error: workloads[0].schedules[0].periods[0].weekdays[0]: "mon-fry": expected a range of weekdays such as mon-fri
        s.yaml: error: workloads[0].schedules[0].periods[0].weekdays[1]: "mon#6": a weekday (mon or monday), the n-th of the month (mon#1 to mon#5) or the last (mon#L)
        s.yaml: error: workloads[0].schedules[0].periods[1]: a period needs a `start`, a `stop`, or both (or `cron`)
        s.yaml: error: workloads[0].schedules[0].periods[1].monthdays[0]: "0": a day of the month (1 to 31), L (the last day) or nW (the weekday nearest day n)
        s.yaml: error: workloads[0].schedules[0].periods[1].monthdays[1]: "32W": a day of the month (1 to 31), L (the last day) or nW (the weekday nearest day n)
        s.yaml: error: workloads[0].schedules[0].periods[1].months[0]: expected a month, 1 to 12 or jan to dec, found number 13
        s.yaml: error: workloads[0].schedules[0].periods[1].months[2]: expected a month, 1 to 12 or jan to dec, found "foo"
        s.yaml: error: workloads[0].schedules[0].periods[2].weekdays: a period written with `cron` takes its times and days from the expressions
        s.yaml: error: workloads[0].schedules[0].periods[2].cron.start: "cron(0 8 * * MON *)": one of day-of-month and day-of-week must be ? (EventBridge does not take both)
        s.yaml: error: workloads[0].schedules[0].periods[3].stop_days: `stop_days` is for windows with both a `start` and a `stop`
        s.yaml: error: workloads[0].schedules[0].periods[4].colour: unknown field `colour`, expected one of: name, start, stop, weekdays, monthdays, months, stop_days, profile, cron
        s.yaml: error: workloads[0].schedules[0].periods[4].start: expected a time "HH:MM" (quoted), found number 800
        s.yaml: error: workloads[0].schedules[0].skip[0]: "christmas": expected a date (2026-12-24) or a month and day every year (12-25)
        s.yaml: error: workloads[0].schedules[0].calendars[1]: unknown calendar "nope": define it under `calendars` in the same file (defined: holidays)
        s.yaml: error: workloads[0].schedules[1].periods: the list is empty: expected at least one period
        s.yaml: error: workloads[0].schedules[1].name: duplicate schedule name "a"
        s.yaml: error: workloads[0].enforce: expected true or false, found "yes""#]]
    .assert_eq(&e.to_string());
}

#[test]
fn an_empty_day_filter_is_an_error_naming_its_field() {
    let text = r#"
version: 1
workloads:
  - name: w
    region: eu-west-1
    workload_tag: { key: app, value: w }
    tier_tag_key: tier
    schedules:
      - timezone: UTC
        periods:
          - { start: "08:00", stop: "18:00", weekdays: [] }
          - { start: "08:00", monthdays: [], months: [] }
          - { start: "22:00", stop: "04:00", weekdays: [fri], stop_days: { weekdays: [] } }
    tiers: [{ name: web, start: { order: 0 } }]
"#;
    let e = load_one("s.yaml", text).unwrap_err();
    expect![[r#"
        s.yaml: error: workloads[0].schedules[0].periods[0].weekdays: an empty list matches no day; leave weekdays out to mean every day
        s.yaml: error: workloads[0].schedules[0].periods[1].monthdays: an empty list matches no day; leave monthdays out to mean every day
        s.yaml: error: workloads[0].schedules[0].periods[1].months: an empty list matches no day; leave months out to mean every day
        s.yaml: error: workloads[0].schedules[0].periods[2].stop_days.weekdays: an empty list matches no day; leave weekdays out to mean every day"#]]
    .assert_eq(&e.to_string());
}

#[test]
fn suspicious_schedules_are_warned_about() {
    let text = r#"
version: 1
workloads:
  - name: w
    region: eu-west-1
    workload_tag: { key: app, value: w }
    tier_tag_key: tier
    schedules:
      - timezone: Asia/Kolkata
        periods:
          - { start: "08:00", stop: "18:00", monthdays: [31], months: [feb] }
          - { start: "08:00", stop: "08:00" }
          - { start: "08:00", stop: "18:00", profile: huge }
          - { start: "08:00", stop: "18:00", weekdays: [mon], stop_days: { monthdays: [30], months: [2] } }
          # A fifth Friday in February: only when the 29th is a Friday (2008, 2036):
          # rare, not never.
          - { start: "08:00", stop: "18:00", weekdays: ["fri#5"], months: [feb] }
    tiers: [{ name: web, start: { order: 0 }, profiles: { small: { instance_type: t3.small } } }]
"#;
    let l = load_one("lint.yaml", text).unwrap();
    let shown: Vec<String> = l
        .warnings
        .iter()
        .filter(|d| d.severity == Severity::Warning)
        .map(ToString::to_string)
        .collect();
    expect![[r#"
        lint.yaml: warning: workloads[0].schedules[0].periods[0]: the period never happens: no date matches all its day filters
        lint.yaml: warning: workloads[0].schedules[0].periods[1]: the stop equals the start: the period never runs (stop 23:59 and start 00:00 for all day)
        lint.yaml: warning: workloads[0].schedules[0].periods[2].profile: no tier defines profile "huge" (defined: small)
        lint.yaml: warning: workloads[0].schedules[0].periods[3]: the period never stops: no date matches its stop days"#]]
    .assert_eq(&shown.join("\n"));
}

#[test]
fn unknown_zones_suggest_the_right_spelling() {
    // Names are matched whatever their case, and kept as the database spells them.
    let z = ec2_scheduler_config::schedules::zone("europe/berlin").unwrap();
    assert_eq!(z.name(), "Europe/Berlin");
    let e = ec2_scheduler_config::schedules::zone("Berlin").unwrap_err();
    assert!(e.contains("Europe/Berlin"), "{e}");
    assert!(ec2_scheduler_config::schedules::zone("Australia/Sydney").is_ok());
}

#[test]
fn schedules_in_the_originals_items_are_an_extension_attribute() {
    let item = r#"[
      {"SpecName": "w", "WorkloadRegion": "eu-west-1", "WorkloadFilterTagName": "app",
       "WorkloadFilterTagValue": "w", "TierFilterTagName": "tier", "Enforce": "True",
       "Schedules": "[{\"timezone\": \"UTC\", \"periods\": [{\"start\": \"08:00\", \"stop\": \"18:00\"}], \"skip\": [{\"date\": \"12-25\", \"calendar\": \"h\"}]}]"},
      {"SpecName": "w", "TierTagValue": "web", "TierStart": {"TierSequence": "0"}}
    ]"#;
    let l = load_one("items.json", item).unwrap();
    let w = &l.workloads[0];
    assert!(w.enforce);
    assert_eq!(w.schedules[0].skip[0].calendar.as_deref(), Some("h"));
    let typed = export(&l.workloads, Format::DynamodbJson);
    assert!(typed.contains("\"Schedules\""), "{typed}");
    assert_eq!(
        load_one("typed.json", &typed).unwrap().workloads,
        l.workloads
    );
    let bad = item.replace("08:00", "8 am");
    let e = load_one("items.json", &bad).unwrap_err().to_string();
    assert!(
        e.contains("WorkloadSpecification[w].Schedules[0].periods[0].start"),
        "{e}"
    );
}
