use proptest::prelude::*;

use super::*;
use crate::calendar::{MonthDaySpec, WeekdaySpec};
use crate::zone::zone;

const WEEKDAYS: &[&str] = &["mon", "tue", "wed", "thu", "fri"];

fn days(names: &[&str]) -> DayFilter {
    DayFilter {
        weekdays: names.iter().map(|n| n.parse().unwrap()).collect(),
        ..DayFilter::default()
    }
}

fn t(s: &str) -> Option<NaiveTime> {
    Some(NaiveTime::parse_from_str(s, "%H:%M").unwrap())
}

fn period(start: &str, stop: &str, on: &[&str]) -> Period {
    Period {
        start: if start.is_empty() { None } else { t(start) },
        stop: if stop.is_empty() { None } else { t(stop) },
        days: days(on),
        ..Period::default()
    }
}

fn schedule(zone_name: &str, periods: Vec<Period>) -> Schedule {
    Schedule {
        name: "test".into(),
        zone: zone(zone_name),
        periods,
        skip: vec![],
    }
}

/// An instant from a local wall time in the schedule's zone.
fn at(s: &Schedule, local: &str) -> DateTime<Utc> {
    s.zone
        .instant(NaiveDateTime::parse_from_str(local, "%Y-%m-%d %H:%M").unwrap())
}

fn wish(s: &Schedule, local: &str) -> Wish {
    s.state(at(s, local)).wish
}

/// The events that fire in a range, as `kind local-time-with-offset [profile]`.
fn fired(s: &Schedule, from: &str, to: &str) -> Vec<String> {
    s.events(at(s, from), at(s, to))
        .into_iter()
        .filter(|e| e.skipped.is_none())
        .map(|e| {
            let when = s.zone.fixed(e.at).format("%a %m-%d %H:%M%:z");
            match e.profile {
                Some(p) => format!("{} {when} {p}", e.kind),
                None => format!("{} {when}", e.kind),
            }
        })
        .collect()
}

#[test]
fn office_hours_start_inclusive_stop_exclusive() {
    let s = schedule("Europe/Berlin", vec![period("08:00", "18:00", WEEKDAYS)]);
    // 2026-12-04 is a Friday.
    assert_eq!(wish(&s, "2026-12-04 07:59"), Wish::Stopped);
    assert_eq!(wish(&s, "2026-12-04 08:00"), Wish::Running);
    assert_eq!(wish(&s, "2026-12-04 17:59"), Wish::Running);
    assert_eq!(wish(&s, "2026-12-04 18:00"), Wish::Stopped);
    assert_eq!(wish(&s, "2026-12-05 12:00"), Wish::Stopped);
    assert_eq!(
        fired(&s, "2026-12-04 00:00", "2026-12-08 00:00"),
        [
            "start Fri 12-04 08:00+01:00",
            "stop Fri 12-04 18:00+01:00",
            "start Mon 12-07 08:00+01:00",
            "stop Mon 12-07 18:00+01:00",
        ]
    );
    let d = s.state(at(&s, "2026-12-07 09:00"));
    assert_eq!(d.period, Some(0));
    assert_eq!(d.since, Some(at(&s, "2026-12-07 08:00")));
}

#[test]
fn overnight_windows_belong_to_the_day_they_open() {
    // A batch window opening on Friday nights only.
    let s = schedule("Europe/Berlin", vec![period("22:00", "06:00", &["fri"])]);
    assert_eq!(wish(&s, "2026-12-04 21:59"), Wish::Stopped);
    assert_eq!(wish(&s, "2026-12-04 23:00"), Wish::Running);
    assert_eq!(wish(&s, "2026-12-05 05:59"), Wish::Running);
    assert_eq!(wish(&s, "2026-12-05 06:00"), Wish::Stopped);
    // Not Saturday night, although Saturday has a stop.
    assert_eq!(wish(&s, "2026-12-05 23:00"), Wish::Stopped);
    assert_eq!(
        fired(&s, "2026-12-03 00:00", "2026-12-10 00:00"),
        ["start Fri 12-04 22:00+01:00", "stop Sat 12-05 06:00+01:00"]
    );
}

#[test]
fn multi_day_windows_stop_on_their_stop_days() {
    let s = schedule(
        "America/New_York",
        vec![Period {
            stop_days: Some(days(&["fri"])),
            ..period("07:00", "19:00", &["mon"])
        }],
    );
    assert_eq!(wish(&s, "2026-11-30 06:59"), Wish::Stopped);
    assert_eq!(wish(&s, "2026-12-01 03:00"), Wish::Running);
    assert_eq!(wish(&s, "2026-12-03 23:00"), Wish::Running);
    assert_eq!(wish(&s, "2026-12-04 18:59"), Wish::Running);
    assert_eq!(wish(&s, "2026-12-04 19:00"), Wish::Stopped);
    assert_eq!(wish(&s, "2026-12-06 12:00"), Wish::Stopped);
    assert_eq!(
        fired(&s, "2026-11-30 00:00", "2026-12-07 00:00"),
        ["start Mon 11-30 07:00-05:00", "stop Fri 12-04 19:00-05:00"]
    );
}

#[test]
fn one_sided_periods_have_no_wish_before_their_time() {
    let start_only = schedule("Asia/Kolkata", vec![period("08:00", "", WEEKDAYS)]);
    assert_eq!(wish(&start_only, "2026-12-01 07:59"), Wish::Any);
    assert_eq!(wish(&start_only, "2026-12-01 08:00"), Wish::Running);
    assert_eq!(wish(&start_only, "2026-12-01 23:59"), Wish::Running);
    assert_eq!(wish(&start_only, "2026-12-02 07:00"), Wish::Any);
    assert_eq!(wish(&start_only, "2026-12-05 12:00"), Wish::Any);
    assert_eq!(
        fired(&start_only, "2026-12-01 00:00", "2026-12-03 00:00"),
        ["start Tue 12-01 08:00+05:30", "start Wed 12-02 08:00+05:30"]
    );
    let stop_only = schedule("Asia/Kolkata", vec![period("", "19:00", &[])]);
    assert_eq!(wish(&stop_only, "2026-12-01 18:59"), Wish::Any);
    assert_eq!(wish(&stop_only, "2026-12-01 19:00"), Wish::Stopped);
    assert_eq!(wish(&stop_only, "2026-12-02 00:00"), Wish::Any);
    assert_eq!(
        fired(&stop_only, "2026-12-01 00:00", "2026-12-02 12:00"),
        ["stop Tue 12-01 19:00+05:30"]
    );
}

#[test]
fn skip_dates_fire_nothing_and_the_state_carries_over() {
    let mut s = schedule("Europe/Berlin", vec![period("08:00", "18:00", WEEKDAYS)]);
    s.skip = vec![
        SkipDate {
            day: "2026-12-24".parse().unwrap(),
            label: Some("Christmas Eve".into()),
            calendar: None,
        },
        SkipDate {
            day: "12-25".parse().unwrap(),
            label: None,
            calendar: None,
        },
    ];
    // Wednesday's stop holds through Thursday 24th and Friday 25th.
    assert_eq!(wish(&s, "2026-12-24 12:00"), Wish::Stopped);
    assert_eq!(wish(&s, "2026-12-25 12:00"), Wish::Stopped);
    assert_eq!(wish(&s, "2027-12-24 12:00"), Wish::Running);
    let events = s.events(at(&s, "2026-12-23 12:00"), at(&s, "2026-12-29 00:00"));
    let shown: Vec<String> = events
        .iter()
        .map(|e| match &e.skipped {
            Some(why) => format!("{} {} skipped: {why}", e.kind, e.local),
            None => format!("{} {}", e.kind, e.local),
        })
        .collect();
    assert_eq!(
        shown,
        [
            "stop 2026-12-23 18:00:00",
            "start 2026-12-24 08:00:00 skipped: skip date 2026-12-24 (Christmas Eve)",
            "stop 2026-12-24 18:00:00 skipped: skip date 2026-12-24 (Christmas Eve)",
            "start 2026-12-25 08:00:00 skipped: skip date 12-25",
            "stop 2026-12-25 18:00:00 skipped: skip date 12-25",
            "start 2026-12-28 08:00:00",
            "stop 2026-12-28 18:00:00",
        ]
    );

    // An overnight window whose stop falls on a skip date keeps running until the next
    // stop that fires.
    let mut night = schedule("Europe/Berlin", vec![period("22:00", "06:00", WEEKDAYS)]);
    night.skip = vec![SkipDate {
        day: "12-25".parse().unwrap(),
        label: None,
        calendar: None,
    }];
    assert_eq!(wish(&night, "2026-12-25 07:00"), Wish::Running);
    assert_eq!(wish(&night, "2026-12-26 07:00"), Wish::Stopped);
}

#[test]
fn several_periods_running_wins_then_no_wish_then_stopped() {
    let s = schedule(
        "UTC",
        vec![
            period("08:00", "12:00", &[]),
            period("14:00", "18:00", &[]),
            period("", "20:00", &["sat"]),
        ],
    );
    assert_eq!(wish(&s, "2026-12-01 09:00"), Wish::Running);
    assert_eq!(wish(&s, "2026-12-01 13:00"), Wish::Any);
    assert_eq!(wish(&s, "2026-12-01 21:00"), Wish::Any);
    // On Saturday before 20:00 the stop-only period has no wish either; after it, all
    // three wish stopped.
    assert_eq!(wish(&s, "2026-12-05 19:00"), Wish::Any);
    assert_eq!(wish(&s, "2026-12-05 21:00"), Wish::Stopped);
    let two = schedule(
        "UTC",
        vec![period("08:00", "12:00", &[]), period("14:00", "18:00", &[])],
    );
    assert_eq!(wish(&two, "2026-12-01 13:00"), Wish::Stopped);
    assert_eq!(two.state(at(&two, "2026-12-01 13:00")).period, Some(0));
    assert_eq!(two.state(at(&two, "2026-12-01 19:00")).period, Some(1));
}

#[test]
fn adjacent_periods_do_not_stop_in_the_gap() {
    let s = schedule(
        "UTC",
        vec![period("08:00", "10:00", &[]), period("10:01", "12:00", &[])],
    );
    assert_eq!(wish(&s, "2026-12-01 10:00"), Wish::Running);
    assert_eq!(
        fired(&s, "2026-12-01 00:00", "2026-12-01 23:00"),
        ["start Tue 12-01 08:00+00:00", "stop Tue 12-01 12:00+00:00"]
    );
    let touching = schedule(
        "UTC",
        vec![period("08:00", "10:00", &[]), period("10:00", "12:00", &[])],
    );
    assert_eq!(wish(&touching, "2026-12-01 10:00"), Wish::Running);
    // Every weekday all day: one window from Monday 00:00 to Friday 23:59.
    let all_week = schedule("Europe/Berlin", vec![period("00:00", "23:59", WEEKDAYS)]);
    assert_eq!(wish(&all_week, "2026-12-01 23:59"), Wish::Running);
    assert_eq!(wish(&all_week, "2026-12-04 23:59"), Wish::Stopped);
    assert_eq!(
        fired(&all_week, "2026-11-29 12:00", "2026-12-07 12:00"),
        [
            "start Mon 11-30 00:00+01:00",
            "stop Fri 12-04 23:59+01:00",
            "start Mon 12-07 00:00+01:00"
        ]
    );
    // Two minutes apart is a stop.
    let apart = schedule(
        "UTC",
        vec![period("08:00", "10:00", &[]), period("10:02", "12:00", &[])],
    );
    assert_eq!(wish(&apart, "2026-12-01 10:01"), Wish::Stopped);
}

#[test]
fn a_period_can_change_the_profile_of_a_running_workload() {
    let mut day = period("08:00", "18:00", WEEKDAYS);
    day.profile = Some("small".into());
    let mut peak = period("12:00", "14:00", WEEKDAYS);
    peak.profile = Some("big".into());
    let s = schedule("UTC", vec![day, peak]);
    assert_eq!(
        fired(&s, "2026-12-01 00:00", "2026-12-01 23:00"),
        [
            "start Tue 12-01 08:00+00:00 small",
            "start Tue 12-01 12:00+00:00 big",
            "start Tue 12-01 14:00+00:00 small",
            "stop Tue 12-01 18:00+00:00",
        ]
    );
    assert_eq!(
        s.state(at(&s, "2026-12-01 13:00")).profile.as_deref(),
        Some("big")
    );
}

/// Spring forward: a start or stop in the gap takes effect when the clocks jump.
#[test]
fn spring_forward_in_both_hemispheres() {
    for (zone, day, expect) in [
        ("Europe/Berlin", "2026-03-29", "03:00+02:00"),
        ("America/New_York", "2026-03-08", "03:00-04:00"),
        ("Australia/Sydney", "2026-10-04", "03:00+11:00"),
    ] {
        let s = schedule(zone, vec![period("02:30", "10:00", &[])]);
        let got = fired(&s, &format!("{day} 00:00"), &format!("{day} 23:00"));
        assert_eq!(got.len(), 2, "{zone}: {got:?}");
        assert!(
            got[0].starts_with("start") && got[0].ends_with(expect),
            "{zone}: {got:?}"
        );
        // Stopped just before the jump, running right after.
        let jump = s.zone.instant(
            NaiveDate::parse_from_str(day, "%Y-%m-%d")
                .unwrap()
                .and_time(t("03:00").unwrap()),
        );
        assert_eq!(
            s.state(jump - Duration::seconds(1)).wish,
            Wish::Stopped,
            "{zone}"
        );
        assert_eq!(s.state(jump).wish, Wish::Running, "{zone}");
        // The day before, 02:30 exists.
        let before = schedule(zone, vec![period("02:30", "10:00", &[])]);
        let prev = NaiveDate::parse_from_str(day, "%Y-%m-%d")
            .unwrap()
            .pred_opt()
            .unwrap();
        let got = fired(&before, &format!("{prev} 00:00"), &format!("{prev} 23:00"));
        assert!(got[0].contains("02:30"), "{zone}: {got:?}");
    }
}

/// Fall back: a time that happens twice fires once, at its first occurrence.
#[test]
fn fall_back_in_both_hemispheres() {
    for (zone, day, first) in [
        ("Europe/Berlin", "2026-10-25", "02:30+02:00"),
        ("America/New_York", "2026-11-01", "01:30-04:00"),
        ("Australia/Sydney", "2026-04-05", "02:30+11:00"),
    ] {
        let time = first.split('+').next().unwrap().split('-').next().unwrap();
        let s = schedule(zone, vec![period("00:00", time, &[])]);
        let from = format!("{day} 00:00");
        let to = format!("{day} 23:00");
        let got = fired(&s, &from, &to);
        let stops: Vec<&String> = got.iter().filter(|e| e.starts_with("stop")).collect();
        assert_eq!(stops.len(), 1, "{zone}: {got:?}");
        assert!(stops[0].ends_with(first), "{zone}: {got:?}");
        // Stopped through the repeated hour: the second 02:30 changes nothing.
        let stop = s
            .events(at(&s, &from), at(&s, &to))
            .into_iter()
            .find(|e| e.kind == EventKind::Stop)
            .unwrap()
            .at;
        for minutes in [1, 30, 59, 61, 90] {
            let later = stop + Duration::minutes(minutes);
            assert_eq!(s.state(later).wish, Wish::Stopped, "{zone} +{minutes}m");
        }
    }
}

#[test]
fn a_zone_without_daylight_saving_is_steady() {
    let s = schedule("Asia/Kolkata", vec![period("02:30", "03:30", &[])]);
    for day in ["2026-03-29", "2026-10-25", "2026-03-08", "2026-11-01"] {
        assert_eq!(
            fired(&s, &format!("{day} 00:00"), &format!("{day} 23:00")).len(),
            2,
            "{day}"
        );
    }
}

#[test]
fn month_ends_leap_years_nth_and_last_weekdays() {
    let on = |weekdays: Vec<WeekdaySpec>, monthdays: Vec<MonthDaySpec>| Period {
        days: DayFilter {
            weekdays,
            monthdays,
            months: vec![],
        },
        ..period("09:00", "17:00", &[])
    };
    let starts = |p: Period, from: &str, to: &str| -> Vec<String> {
        let s = schedule("UTC", vec![p]);
        s.events(at(&s, from), at(&s, to))
            .into_iter()
            .filter(|e| e.kind == EventKind::Start)
            .map(|e| e.local.date().to_string())
            .collect()
    };
    let last_day = on(vec![], vec![MonthDaySpec::Last]);
    assert_eq!(
        starts(last_day.clone(), "2028-01-15 00:00", "2028-04-15 00:00"),
        ["2028-01-31", "2028-02-29", "2028-03-31"]
    );
    assert_eq!(
        starts(last_day, "2027-02-01 00:00", "2027-03-01 00:00"),
        ["2027-02-28"]
    );
    // Day 31 only in months that have one.
    assert_eq!(
        starts(
            on(vec![], vec![MonthDaySpec::Day(31)]),
            "2026-09-01 00:00",
            "2026-12-01 00:00"
        ),
        ["2026-10-31"]
    );
    // The 5th Thursday: December 2026 has one, November does not.
    assert_eq!(
        starts(
            on(vec!["thu#5".parse().unwrap()], vec![]),
            "2026-11-01 00:00",
            "2027-01-01 00:00"
        ),
        ["2026-12-31"]
    );
    assert_eq!(
        starts(
            on(vec!["fri#L".parse().unwrap()], vec![]),
            "2026-11-01 00:00",
            "2027-01-01 00:00"
        ),
        ["2026-11-27", "2026-12-25"]
    );
    // 2026-08-15 is a Saturday.
    assert_eq!(
        starts(
            on(vec![], vec![MonthDaySpec::NearestWeekday(15)]),
            "2026-08-01 00:00",
            "2026-09-01 00:00"
        ),
        ["2026-08-14"]
    );
    // The 29th of February every year: only in leap years, and the state carries.
    let feb29 = Period {
        days: DayFilter {
            months: vec![2],
            monthdays: vec![MonthDaySpec::Day(29)],
            weekdays: vec![],
        },
        ..period("09:00", "17:00", &[])
    };
    let s = schedule("UTC", vec![feb29]);
    assert_eq!(wish(&s, "2027-06-01 12:00"), Wish::Stopped);
    assert_eq!(wish(&s, "2028-02-29 12:00"), Wish::Running);
}

#[test]
fn next_events_count_what_fires() {
    let mut s = schedule("Europe/Berlin", vec![period("08:00", "18:00", WEEKDAYS)]);
    s.skip = vec![SkipDate {
        day: "12-25".parse().unwrap(),
        label: None,
        calendar: None,
    }];
    let next = s.next_events(at(&s, "2026-12-24 19:00"), 2, 30);
    let fired: Vec<_> = next.iter().filter(|e| e.skipped.is_none()).collect();
    assert_eq!(fired.len(), 2);
    assert_eq!(fired[0].local.to_string(), "2026-12-28 08:00:00");
    assert_eq!(next.len(), 4, "the two skipped on the 25th come first");
    // A schedule that never fires gives nothing, within the horizon.
    let never = schedule(
        "UTC",
        vec![Period {
            days: DayFilter {
                monthdays: vec![MonthDaySpec::Day(31)],
                months: vec![2],
                weekdays: vec![],
            },
            ..period("08:00", "18:00", &[])
        }],
    );
    assert!(
        never
            .next_events(at(&never, "2026-01-01 00:00"), 3, 400)
            .is_empty()
    );
    assert_eq!(wish(&never, "2026-06-01 00:00"), Wish::Any);
}

#[test]
fn skip_dates_read_and_print() {
    assert_eq!(
        "2026-12-24".parse::<SkipDay>().unwrap().to_string(),
        "2026-12-24"
    );
    assert_eq!("12-25".parse::<SkipDay>().unwrap(), SkipDay::Yearly(12, 25));
    assert_eq!("02-29".parse::<SkipDay>().unwrap().to_string(), "02-29");
    for bad in ["02-30", "13-01", "2026-02-30", "christmas", ""] {
        assert!(bad.parse::<SkipDay>().is_err(), "{bad}");
    }
}

fn any_zone() -> impl Strategy<Value = &'static str> {
    prop_oneof![
        Just("Europe/Berlin"),
        Just("America/New_York"),
        Just("Australia/Sydney"),
        Just("Asia/Kolkata"),
        Just("UTC"),
    ]
}

fn any_time() -> impl Strategy<Value = Option<NaiveTime>> {
    // Hours around the daylight saving changes come up often.
    prop_oneof![
        Just(None),
        (
            0u32..24,
            prop_oneof![Just(0u32), Just(30), Just(59), 0u32..60]
        )
            .prop_map(|(h, m)| NaiveTime::from_hms_opt(h, m, 0)),
        (1u32..4, 0u32..60).prop_map(|(h, m)| NaiveTime::from_hms_opt(h, m, 0)),
    ]
}

fn any_period() -> impl Strategy<Value = Period> {
    (
        any_time(),
        any_time(),
        proptest::sample::subsequence(vec!["mon", "tue", "wed", "thu", "fri", "sat", "sun"], 0..=7),
        proptest::option::of(proptest::sample::subsequence(
            vec!["mon", "wed", "fri"],
            1..=3,
        )),
        proptest::option::of(prop_oneof![Just("a"), Just("b")]),
    )
        .prop_map(|(start, stop, on, stop_on, profile)| Period {
            start,
            stop,
            days: days(&on),
            stop_days: stop_on.map(|d| days(&d)),
            profile: profile.map(str::to_string),
            name: None,
        })
}

fn any_instant() -> impl Strategy<Value = DateTime<Utc>> {
    // 2026, with its daylight saving changes.
    (1_767_225_600i64..1_798_761_600).prop_map(|s| DateTime::from_timestamp(s, 0).unwrap())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// Each event agrees with the state just before and at it.
    #[test]
    fn events_agree_with_the_state(
        zone_name in any_zone(),
        periods in proptest::collection::vec(any_period(), 1..4),
        from in any_instant(),
        holiday in proptest::option::of(0i64..10),
    ) {
        let mut s = schedule(zone_name, periods);
        if let Some(days) = holiday {
            s.skip.push(SkipDate {
                day: SkipDay::Once(s.zone.date(from) + Duration::days(days)),
                label: None,
            calendar: None,
            });
        }
        for e in s.next_events(from, 12, 21).into_iter().filter(|e| e.skipped.is_none()) {
            let (before, after) = (s.state(e.at - Duration::seconds(1)), s.state(e.at));
            match e.kind {
                EventKind::Start => {
                    prop_assert_eq!(after.wish, Wish::Running, "{:?}", e);
                    prop_assert_eq!(&after.profile, &e.profile);
                    prop_assert!(before.wish != Wish::Running || before.profile != after.profile, "{:?}", e);
                }
                EventKind::Stop => {
                    prop_assert_eq!(after.wish, Wish::Stopped, "{:?}", e);
                    prop_assert!(before.wish != Wish::Stopped, "{:?}", e);
                }
            }
            prop_assert!(e.at > from);
        }
    }

    /// Between two events that fire, the wish never becomes running or stopped on
    /// its own: every change to running or stopped is an event.
    #[test]
    fn no_change_happens_without_an_event(
        zone_name in any_zone(),
        periods in proptest::collection::vec(any_period(), 1..3),
        from in any_instant(),
        step in 600i64..7200,
    ) {
        let s = schedule(zone_name, periods);
        let to = from + Duration::days(3);
        let events = s.events(from, to);
        let mut last = s.state(from);
        let mut t = from;
        while t + Duration::seconds(step) <= to {
            let next = t + Duration::seconds(step);
            let now = s.state(next);
            let became = |w: Wish| now.wish == w && last.wish != w;
            if became(Wish::Running) || became(Wish::Stopped) {
                prop_assert!(
                    events.iter().any(|e| e.skipped.is_none() && e.at > t && e.at <= next),
                    "{:?} -> {:?} between {} and {}", last, now, t, next
                );
            }
            last = now;
            t = next;
        }
    }
}

#[test]
fn a_workloads_schedules_combine_across_time_zones() {
    let berlin = schedule("Europe/Berlin", vec![period("08:00", "18:00", WEEKDAYS)]);
    let new_york = schedule("America/New_York", vec![period("08:00", "18:00", WEEKDAYS)]);
    let both = [berlin, new_york];
    let table = Timetable::new(&both);
    let utc = |s: &str| DateTime::parse_from_rfc3339(s).unwrap().to_utc();
    let events: Vec<String> = table
        .events(utc("2026-12-01T00:00:00Z"), utc("2026-12-02T06:00:00Z"))
        .iter()
        .map(|e| {
            format!(
                "{} {} schedule {}",
                e.kind,
                e.at.format("%H:%M"),
                e.schedule
            )
        })
        .collect();
    // Berlin opens at 07:00 UTC; New York closes at 23:00 UTC.
    assert_eq!(events, ["start 07:00 schedule 0", "stop 23:00 schedule 1"]);
    let at_noon_ny = table.state(utc("2026-12-01T17:00:00Z"));
    assert_eq!(
        (at_noon_ny.wish, at_noon_ny.schedule),
        (Wish::Running, Some(1))
    );
}

mod with_overrides {
    use super::*;
    use crate::overrides::{Change, Override};

    fn ov(change: Change, created: DateTime<Utc>) -> Override {
        Override {
            id: "o1".into(),
            workload: "w".into(),
            change,
            created_at: created,
            created_by: "alice".into(),
            reason: "release night".into(),
        }
    }

    fn office() -> Schedule {
        schedule("Europe/Berlin", vec![period("08:00", "18:00", WEEKDAYS)])
    }

    fn shown(s: &Schedule, overrides: &[Override], from: &str, to: &str) -> Vec<String> {
        Timetable::new(std::slice::from_ref(s))
            .with_overrides(overrides)
            .events(at(s, from), at(s, to))
            .into_iter()
            .map(|e| {
                let when = s.zone.fixed(e.at).format("%a %H:%M");
                match (&e.skipped, &e.by_override) {
                    (Some(Skip::Override(o)), _) => {
                        format!("{} {when} skipped by {}", e.kind, o.id)
                    }
                    (Some(_), _) => format!("{} {when} skipped", e.kind),
                    (None, Some(o)) => format!("{} {when} by {o}", e.kind),
                    (None, None) => format!("{} {when}", e.kind),
                }
            })
            .collect()
    }

    #[test]
    fn skipping_the_next_stop_keeps_running_until_the_one_after() {
        let s = office();
        let o = [ov(
            Change::SkipNext {
                action: EventKind::Stop,
                at: at(&s, "2026-12-01 18:00"),
            },
            at(&s, "2026-12-01 10:00"),
        )];
        assert_eq!(
            shown(&s, &o, "2026-12-01 00:00", "2026-12-03 00:00"),
            [
                "start Tue 08:00",
                "stop Tue 18:00 skipped by o1",
                "stop Wed 18:00"
            ]
        );
        let table = Timetable::new(std::slice::from_ref(&s)).with_overrides(&o);
        assert_eq!(table.state(at(&s, "2026-12-02 03:00")).wish, Wish::Running);
        // Without the override it is stopped then.
        assert_eq!(s.state(at(&s, "2026-12-02 03:00")).wish, Wish::Stopped);
    }

    #[test]
    fn skipping_the_next_start_keeps_stopped() {
        let s = office();
        let o = [ov(
            Change::SkipNext {
                action: EventKind::Start,
                at: at(&s, "2026-12-02 08:00"),
            },
            at(&s, "2026-12-01 20:00"),
        )];
        assert_eq!(
            shown(&s, &o, "2026-12-01 20:00", "2026-12-03 12:00"),
            ["start Wed 08:00 skipped by o1", "start Thu 08:00"]
        );
    }

    #[test]
    fn a_postponed_stop_fires_at_its_new_time() {
        let s = office();
        let o = [ov(
            Change::PostponeStop {
                at: at(&s, "2026-12-01 18:00"),
                until: at(&s, "2026-12-01 21:30"),
            },
            at(&s, "2026-12-01 17:00"),
        )];
        assert_eq!(
            shown(&s, &o, "2026-12-01 00:00", "2026-12-02 12:00"),
            [
                "start Tue 08:00",
                "stop Tue 18:00 skipped by o1",
                "stop Tue 21:30 by o1",
                "start Wed 08:00"
            ]
        );
        let table = Timetable::new(std::slice::from_ref(&s)).with_overrides(&o);
        assert_eq!(table.state(at(&s, "2026-12-01 20:00")).wish, Wish::Running);
        assert_eq!(table.state(at(&s, "2026-12-01 21:30")).wish, Wish::Stopped);
    }

    #[test]
    fn keep_running_and_keep_stopped_hold_the_wish_until_their_end() {
        let s = office();
        let o = [ov(
            Change::KeepRunning {
                until: at(&s, "2026-12-02 02:00"),
            },
            at(&s, "2026-12-01 06:00"),
        )];
        assert_eq!(
            shown(&s, &o, "2026-12-01 00:00", "2026-12-02 12:00"),
            [
                "start Tue 06:00 by o1",
                "stop Tue 18:00 skipped by o1",
                "stop Wed 02:00 by o1",
                "start Wed 08:00"
            ]
        );
        let table = Timetable::new(std::slice::from_ref(&s)).with_overrides(&o);
        let d = table.state(at(&s, "2026-12-01 23:00"));
        assert_eq!(
            (d.wish, d.by_override.as_deref()),
            (Wish::Running, Some("o1"))
        );
        let o = [ov(
            Change::KeepStopped {
                until: at(&s, "2026-12-03 12:00"),
            },
            at(&s, "2026-12-01 10:00"),
        )];
        assert_eq!(
            shown(&s, &o, "2026-12-01 09:00", "2026-12-04 00:00"),
            [
                "stop Tue 10:00 by o1",
                "start Wed 08:00 skipped by o1",
                "start Thu 08:00 skipped by o1",
                "start Thu 12:00 by o1",
                "stop Thu 18:00"
            ]
        );
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(48))]

        /// With an override made from one of the next events, events still agree
        /// with the state just before and at them.
        #[test]
        fn events_agree_with_the_state_under_overrides(
            zone_name in any_zone(),
            periods in proptest::collection::vec(any_period(), 1..3),
            from in any_instant(),
            pick in 0usize..4,
            kind in 0u8..4,
            hours in 1i64..48,
        ) {
            let s = schedule(zone_name, periods);
            let next: Vec<Event> = s.next_events(from, 4, 14).into_iter().filter(|e| e.skipped.is_none()).collect();
            prop_assume!(!next.is_empty());
            let e = &next[pick % next.len()];
            let change = match kind {
                0 => Change::SkipNext { action: e.kind, at: e.at },
                1 => Change::PostponeStop { at: e.at, until: e.at + Duration::hours(hours) },
                2 => Change::KeepRunning { until: from + Duration::hours(hours) },
                _ => Change::KeepStopped { until: from + Duration::hours(hours) },
            };
            let o = [ov(change, from)];
            let table = Timetable::new(std::slice::from_ref(&s)).with_overrides(&o);
            for e in table.next_events(from, 8, 14).into_iter().filter(|e| e.skipped.is_none()) {
                let (before, after) = (table.state(e.at - Duration::seconds(1)), table.state(e.at));
                match e.kind {
                    EventKind::Start => {
                        prop_assert_eq!(after.wish, Wish::Running, "{:?}", e);
                        prop_assert!(before.wish != Wish::Running || before.profile != after.profile, "{:?}", e);
                    }
                    EventKind::Stop => {
                        prop_assert_eq!(after.wish, Wish::Stopped, "{:?}", e);
                        prop_assert!(before.wish != Wish::Stopped, "{:?}", e);
                    }
                }
            }
        }
    }
}

/// The original README's benefit table: 8 hours a weekday saves 76 % against
/// always-on, 18 hours a weekday 46 %, 24 hours Monday to Friday 28 %.
#[test]
fn the_originals_benefit_table() {
    let four_weeks = |s: &Schedule| {
        // From Monday 2026-11-30 00:00 local, 28 days.
        let from = at(s, "2026-11-30 00:00");
        let to = at(s, "2026-12-28 00:00");
        let stopped = Timetable::new(std::slice::from_ref(s)).stopped_for(from, to);
        stopped.num_seconds() as f64 / (to - from).num_seconds() as f64 * 100.0
    };
    // The README's figures, within a point.
    for (start, stop, saved) in [
        ("09:00", "17:00", 76.0),
        ("06:00", "00:00", 46.0),
        ("00:00", "23:59", 28.0),
    ] {
        let s = schedule("Europe/Berlin", vec![period(start, stop, WEEKDAYS)]);
        let got = four_weeks(&s);
        assert!(
            (got - saved).abs() <= 1.0,
            "{start}-{stop}: {got:.2} % against {saved} %"
        );
    }
}
