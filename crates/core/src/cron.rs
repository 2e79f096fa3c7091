//! Periods written as a pair of cron expressions in EventBridge's syntax, for users
//! coming from cron: `cron(0 8 ? * MON-FRI *)` starts, `cron(0 18 ? * MON-FRI *)`
//! stops.
//!
//! The six fields are minutes, hours, day of month, month, day of week and year. Each
//! expression must fire once on the days it matches: its minutes and hours are single
//! values. Day of month takes numbers, ranges, steps (`1/7`), `L`, `nW` and `*`; day of
//! week takes `SUN` to `SAT` or `1` (Sunday) to `7`, ranges, `DAY#n` and `DAYL` (the
//! last such day); month takes numbers or `JAN` to `DEC`. One of day of month and day
//! of week must be `?`, as in EventBridge. The year must be `*`.

use chrono::{NaiveTime, Weekday};

use crate::calendar::{DayFilter, MonthDaySpec, WeekdaySpec};
use crate::schedule::Period;

/// A cron expression that cannot be used, and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{expression:?}: {reason}")]
pub struct CronError {
    pub expression: String,
    pub reason: String,
}

/// One cron expression: a time of day and the days it fires on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cron {
    pub time: NaiveTime,
    pub days: DayFilter,
}

/// A period from a start and/or a stop expression. The stop's own days become the
/// period's stop days, so a start on Monday and a stop on Friday is one window.
pub fn period(start: Option<&str>, stop: Option<&str>) -> Result<Period, CronError> {
    let start = start.map(str::parse::<Cron>).transpose()?;
    let stop = stop.map(str::parse::<Cron>).transpose()?;
    Ok(match (start, stop) {
        (Some(a), Some(b)) => Period {
            start: Some(a.time),
            stop: Some(b.time),
            days: a.days,
            stop_days: Some(b.days),
            ..Period::default()
        },
        (Some(a), None) => Period {
            start: Some(a.time),
            days: a.days,
            ..Period::default()
        },
        (None, Some(b)) => Period {
            stop: Some(b.time),
            days: b.days,
            ..Period::default()
        },
        (None, None) => {
            return Err(CronError {
                expression: String::new(),
                reason: "a period needs a start or a stop expression".into(),
            });
        }
    })
}

impl std::str::FromStr for Cron {
    type Err = CronError;

    fn from_str(s: &str) -> Result<Self, CronError> {
        let fail = |reason: String| CronError {
            expression: s.to_string(),
            reason,
        };
        let body = s.trim();
        let body = body
            .strip_prefix("cron(")
            .and_then(|b| b.strip_suffix(')'))
            .unwrap_or(body);
        let fields: Vec<&str> = body.split_whitespace().collect();
        let [min, hour, dom, month, dow, year] = fields[..] else {
            return Err(fail(format!(
                "expected six fields (minutes hours day-of-month month day-of-week year), found {}",
                fields.len()
            )));
        };
        let single = |f: &str, max: u32, what: &str| {
            f.parse::<u32>().ok().filter(|n| *n <= max).ok_or_else(|| {
                fail(format!(
                    "the {what} must be one number from 0 to {max} (the period fires once a day), found {f:?}"
                ))
            })
        };
        let time =
            NaiveTime::from_hms_opt(single(hour, 23, "hours")?, single(min, 59, "minutes")?, 0)
                .ok_or_else(|| fail("not a time of day".into()))?;
        if year != "*" {
            return Err(fail(format!(
                "the year must be *, found {year:?}: use skip dates for one-off changes"
            )));
        }
        match (dom == "?", dow == "?") {
            (true, true) => {
                return Err(fail(
                    "only one of day-of-month and day-of-week may be ?".into(),
                ));
            }
            (false, false) => {
                return Err(fail(
                    "one of day-of-month and day-of-week must be ? (EventBridge does not take both)"
                        .into(),
                ));
            }
            _ => {}
        }
        let days = DayFilter {
            monthdays: if dom == "?" || dom == "*" {
                vec![]
            } else {
                monthdays(dom).map_err(fail)?
            },
            weekdays: if dow == "?" || dow == "*" {
                vec![]
            } else {
                weekdays(dow).map_err(fail)?
            },
            months: if month == "*" {
                vec![]
            } else {
                list(month, 1, 12, month_number)
                    .map_err(fail)?
                    .into_iter()
                    .map(|m| m as u8)
                    .collect()
            },
        };
        Ok(Cron { time, days })
    }
}

fn month_number(s: &str) -> Option<u32> {
    const NAMES: [&str; 12] = [
        "JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC",
    ];
    s.parse().ok().or_else(|| {
        NAMES
            .iter()
            .position(|n| n.eq_ignore_ascii_case(s))
            .map(|i| i as u32 + 1)
    })
}

/// EventBridge numbers days of the week from 1 (Sunday) to 7 (Saturday).
fn weekday_number(s: &str) -> Option<u32> {
    const NAMES: [&str; 7] = ["SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT"];
    s.parse().ok().or_else(|| {
        NAMES
            .iter()
            .position(|n| n.eq_ignore_ascii_case(s))
            .map(|i| i as u32 + 1)
    })
}

fn weekday_of(n: u32) -> Weekday {
    // 1 = Sunday.
    Weekday::try_from(((n + 5) % 7) as u8).unwrap_or(Weekday::Sun)
}

/// A comma-separated list of values, ranges (`a-b`) and steps (`a/k`, `a-b/k`, `*/k`).
fn list(field: &str, lo: u32, hi: u32, value: fn(&str) -> Option<u32>) -> Result<Vec<u32>, String> {
    let mut out = Vec::new();
    for part in field.split(',') {
        let bad = || format!("{part:?} is not a value, range or step from {lo} to {hi}");
        let (range, step) = match part.split_once('/') {
            Some((r, k)) => (
                r,
                Some(k.parse::<u32>().ok().filter(|k| *k > 0).ok_or_else(bad)?),
            ),
            None => (part, None),
        };
        let (a, b) = match range {
            "*" => (lo, hi),
            r => match r.split_once('-') {
                Some((a, b)) => (value(a).ok_or_else(bad)?, value(b).ok_or_else(bad)?),
                None => {
                    let a = value(r).ok_or_else(bad)?;
                    (a, if step.is_some() { hi } else { a })
                }
            },
        };
        if a < lo || b > hi || a > b {
            return Err(bad());
        }
        out.extend((a..=b).step_by(step.unwrap_or(1) as usize));
    }
    out.sort_unstable();
    out.dedup();
    Ok(out)
}

fn monthdays(field: &str) -> Result<Vec<MonthDaySpec>, String> {
    let mut out = Vec::new();
    for part in field.split(',') {
        if part.eq_ignore_ascii_case("L") {
            out.push(MonthDaySpec::Last);
        } else if let Some(n) = part.strip_suffix(['W', 'w']) {
            match n.parse::<u8>() {
                Ok(n @ 1..=31) => out.push(MonthDaySpec::NearestWeekday(n)),
                _ => return Err(format!("{part:?}: expected nW with n from 1 to 31")),
            }
        } else {
            out.extend(
                list(part, 1, 31, |s| s.parse().ok())?
                    .into_iter()
                    .map(|d| MonthDaySpec::Day(d as u8)),
            );
        }
    }
    Ok(out)
}

fn weekdays(field: &str) -> Result<Vec<WeekdaySpec>, String> {
    let mut out = Vec::new();
    for part in field.split(',') {
        if let Some((d, n)) = part.split_once('#') {
            let d = weekday_number(d).filter(|d| (1..=7).contains(d));
            match (d, n.parse::<u8>()) {
                (Some(d), Ok(n @ 1..=5)) => out.push(WeekdaySpec::Nth(weekday_of(d), n)),
                _ => return Err(format!("{part:?}: expected DAY#n with n from 1 to 5")),
            }
        } else if let Some(d) = part.strip_suffix(['L', 'l']).filter(|d| !d.is_empty()) {
            match weekday_number(d).filter(|d| (1..=7).contains(d)) {
                Some(d) => out.push(WeekdaySpec::Last(weekday_of(d))),
                None => {
                    return Err(format!(
                        "{part:?}: expected DAYL, the last such day of the month"
                    ));
                }
            }
        } else {
            out.extend(
                list(part, 1, 7, weekday_number)?
                    .into_iter()
                    .map(|d| WeekdaySpec::Every(weekday_of(d))),
            );
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cron(s: &str) -> Cron {
        s.parse().unwrap()
    }

    fn shown(c: &Cron) -> String {
        let join = |v: Vec<String>| v.join(",");
        format!(
            "{} w[{}] d[{}] m[{}]",
            c.time.format("%H:%M"),
            join(c.days.weekdays.iter().map(ToString::to_string).collect()),
            join(c.days.monthdays.iter().map(ToString::to_string).collect()),
            join(c.days.months.iter().map(ToString::to_string).collect()),
        )
    }

    #[test]
    fn eventbridge_fields() {
        assert_eq!(
            shown(&cron("cron(0 8 ? * MON-FRI *)")),
            "08:00 w[mon,tue,wed,thu,fri] d[] m[]"
        );
        assert_eq!(
            shown(&cron("30 18 ? * 2-6 *")),
            "18:30 w[mon,tue,wed,thu,fri] d[] m[]"
        );
        assert_eq!(shown(&cron("0 9 ? * 1,7 *")), "09:00 w[sun,sat] d[] m[]");
        assert_eq!(
            shown(&cron("0 9 ? JAN,JUL MON *")),
            "09:00 w[mon] d[] m[1,7]"
        );
        assert_eq!(shown(&cron("0 6 L * ? *")), "06:00 w[] d[L] m[]");
        assert_eq!(shown(&cron("0 6 15W * ? *")), "06:00 w[] d[15W] m[]");
        assert_eq!(
            shown(&cron("0 6 1/10 * ? *")),
            "06:00 w[] d[1,11,21,31] m[]"
        );
        assert_eq!(shown(&cron("0 6 ? * MON#2 *")), "06:00 w[mon#2] d[] m[]");
        assert_eq!(shown(&cron("0 6 ? * 6L *")), "06:00 w[fri#L] d[] m[]");
        assert_eq!(shown(&cron("0 6 * 3-5 ? *")), "06:00 w[] d[] m[3,4,5]");
    }

    #[test]
    fn what_cannot_be_used_is_refused_with_a_reason() {
        for (bad, says) in [
            ("0 8 * * MON *", "must be ?"),
            ("0 8 ? * ? *", "only one"),
            ("0 8,12 ? * MON *", "hours"),
            ("*/5 8 ? * MON *", "minutes"),
            ("0 8 ? * MON 2027", "year"),
            ("0 8 ? * MON", "six fields"),
            ("0 8 32 * ? *", "from 1 to 31"),
            ("0 8 ? * MON#6 *", "DAY#n"),
            ("0 8 ? * FUN *", "from 1 to 7"),
            ("0 8 ? 13 MON *", "from 1 to 12"),
        ] {
            let e = bad.parse::<Cron>().unwrap_err();
            assert!(e.to_string().contains(says), "{bad}: {e}");
        }
    }

    #[test]
    fn a_pair_is_one_period_with_its_own_stop_days() {
        let p = period(Some("cron(0 7 ? * MON *)"), Some("cron(0 19 ? * FRI *)")).unwrap();
        assert_eq!(p.start, NaiveTime::from_hms_opt(7, 0, 0));
        assert_eq!(
            p.stop_days.unwrap().weekdays,
            [WeekdaySpec::Every(Weekday::Fri)]
        );
        let one = period(None, Some("0 19 ? * * *")).unwrap();
        assert!(one.start.is_none() && one.stop_days.is_none());
        assert!(period(None, None).is_err());
    }
}
