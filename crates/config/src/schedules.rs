//! Schedules and calendars: their document types (part of the YAML format and its
//! schema, and of the original's `WorkloadSpecification` items as the `Schedules`
//! extension attribute), decoding with field paths, export and lint warnings.

use std::collections::BTreeMap;

use chrono::{Duration, NaiveDate, NaiveTime};
use ec2_scheduler_core::Workload;
use ec2_scheduler_core::calendar::{DayFilter, MonthDaySpec, WeekdaySpec};
use ec2_scheduler_core::cron;
use ec2_scheduler_core::schedule::{Period, Schedule, SkipDate, SkipDay};
use ec2_scheduler_core::zone::Zone;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::diag::Cx;
use crate::walk::{self, Obj, found};

/// A schedule: when a workload runs.
#[derive(Debug, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ScheduleDoc {
    /// Unique within the workload (default `default`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1))]
    pub name: Option<String>,
    /// IANA time zone the times are wall times of, such as `Europe/Berlin`.
    #[schemars(length(min = 1))]
    pub timezone: String,
    /// Running when any period runs.
    #[schemars(length(min = 1))]
    pub periods: Vec<PeriodDoc>,
    /// Names of shared calendars (the file's `calendars`) whose dates are skipped.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub calendars: Vec<String>,
    /// Dates on which nothing fires.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub skip: Vec<SkipDoc>,
}

/// A period: a start and/or a stop time on the days its filters match, or a pair of
/// EventBridge cron expressions.
#[derive(Debug, Default, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PeriodDoc {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1))]
    pub name: Option<String>,
    /// Local wall time `HH:MM` at which the workload starts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^([01][0-9]|2[0-3]):[0-5][0-9]$"))]
    pub start: Option<String>,
    /// Local wall time `HH:MM` at which it stops; earlier than `start` means the next
    /// day (an overnight window).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^([01][0-9]|2[0-3]):[0-5][0-9]$"))]
    pub stop: Option<String>,
    /// `mon` .. `sun`, ranges `mon-fri`, the n-th of the month `mon#2`, the last `fri#L`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(min = 1))]
    pub weekdays: Vec<String>,
    /// Days of the month: `1` .. `31`, `L` (the last day), `15W` (the weekday nearest
    /// the 15th).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(min = 1))]
    pub monthdays: Vec<MonthDayDoc>,
    /// `1` .. `12` or `jan` .. `dec`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(min = 1))]
    pub months: Vec<MonthDoc>,
    /// For a window over several days: the days on which the stop happens.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stop_days: Option<DaysDoc>,
    /// The profile to start with.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1))]
    pub profile: Option<String>,
    /// The period as EventBridge cron expressions, instead of the fields above.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cron: Option<CronDoc>,
}

/// Day filters.
#[derive(Debug, Default, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct DaysDoc {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(min = 1))]
    pub weekdays: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(min = 1))]
    pub monthdays: Vec<MonthDayDoc>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(min = 1))]
    pub months: Vec<MonthDoc>,
}

/// A day of the month, as a number or text (`L`, `15W`).
#[derive(Debug, Serialize, Deserialize, JsonSchema)]
#[serde(untagged)]
pub enum MonthDayDoc {
    Day(#[schemars(range(min = 1, max = 31))] u8),
    Text(#[schemars(regex(pattern = r"^(?i)(L|([1-9]|[12][0-9]|3[01])W?)$"))] String),
}

/// A month, as a number or a name.
#[derive(Debug, Serialize, Deserialize, JsonSchema)]
#[serde(untagged)]
pub enum MonthDoc {
    Number(#[schemars(range(min = 1, max = 12))] u8),
    Name(
        #[schemars(regex(
            pattern = r"^(?i)(jan(uary)?|feb(ruary)?|mar(ch)?|apr(il)?|may|june?|july?|aug(ust)?|sep(tember)?|oct(ober)?|nov(ember)?|dec(ember)?)$"
        ))]
        String,
    ),
}

/// A period as EventBridge cron expressions: `cron(0 8 ? * MON-FRI *)`.
#[derive(Debug, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CronDoc {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stop: Option<String>,
}

/// A date to skip: `2026-12-24` once, `12-25` every year, or with a name.
#[derive(Debug, Serialize, Deserialize, JsonSchema)]
#[serde(untagged)]
pub enum SkipDoc {
    Date(#[schemars(regex(pattern = r"^([0-9]{4}-)?[0-9]{2}-[0-9]{2}$"))] String),
    Named(NamedSkipDoc),
}

/// A date to skip with what it is.
#[derive(Debug, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct NamedSkipDoc {
    #[schemars(regex(pattern = r"^([0-9]{4}-)?[0-9]{2}-[0-9]{2}$"))]
    pub date: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// The shared calendar it comes from (written on export to the original's items,
    /// which have no calendars).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub calendar: Option<String>,
}

/// A named list of dates that schedules share (holidays).
#[derive(Debug, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CalendarDoc {
    #[schemars(length(min = 1))]
    pub name: String,
    pub dates: Vec<SkipDoc>,
}

pub(crate) const SCHEDULE_KEYS: &[&str] = &["name", "timezone", "periods", "calendars", "skip"];
pub(crate) const PERIOD_KEYS: &[&str] = &[
    "name",
    "start",
    "stop",
    "weekdays",
    "monthdays",
    "months",
    "stop_days",
    "profile",
    "cron",
];
pub(crate) const DAYS_KEYS: &[&str] = &["weekdays", "monthdays", "months"];
pub(crate) const CRON_KEYS: &[&str] = &["start", "stop"];
pub(crate) const NAMED_SKIP_KEYS: &[&str] = &["date", "name", "calendar"];
pub(crate) const CALENDAR_KEYS: &[&str] = &["name", "dates"];

/// Calendars by name.
pub(crate) type Calendars = BTreeMap<String, Vec<SkipDate>>;

/// A time zone of the bundled database, or an error naming close matches.
pub fn zone(name: &str) -> Result<Zone, String> {
    match jiff::tz::db().get(name) {
        Ok(tz) => Ok(Zone::new(tz.iana_name().unwrap_or(name).to_string(), tz)),
        Err(_) => {
            let lower = name.to_ascii_lowercase();
            let tail = lower.rsplit('/').next().unwrap_or(&lower).to_string();
            let close: Vec<String> = jiff::tz::db()
                .available()
                .map(|n| n.to_string())
                .filter(|n| {
                    let l = n.to_ascii_lowercase();
                    l == lower || (!tail.is_empty() && l.rsplit('/').next() == Some(tail.as_str()))
                })
                .take(3)
                .collect();
            Err(if close.is_empty() {
                format!("unknown time zone {name:?}: expected an IANA name such as Europe/Berlin")
            } else {
                format!(
                    "unknown time zone {name:?}: did you mean {}?",
                    close.join(" or ")
                )
            })
        }
    }
}

fn list<'v>(cx: &mut Cx, v: &'v Value, path: &str, what: &str) -> Option<&'v Vec<Value>> {
    match v.as_array() {
        Some(a) => Some(a),
        None => {
            cx.error(path, format!("expected a list of {what}, {}", found(v)));
            None
        }
    }
}

fn time(cx: &mut Cx, v: &Value, path: &str) -> Option<NaiveTime> {
    let s = match v {
        Value::String(s) => s,
        other => {
            cx.error(
                path,
                format!("expected a time \"HH:MM\" (quoted), {}", found(other)),
            );
            return None;
        }
    };
    let ok = s.len() == 5 && s.as_bytes()[2] == b':';
    match NaiveTime::parse_from_str(s, "%H:%M") {
        Ok(t) if ok => Some(t),
        _ => {
            cx.error(
                path,
                format!("expected a time \"HH:MM\" from 00:00 to 23:59, found {s:?}"),
            );
            None
        }
    }
}

const WEEK: [&str; 7] = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"];

/// Every entry of a list, each read by `entry` (which reports its own errors and
/// may give several values); `None` when any entry failed.
fn entries<T>(
    cx: &mut Cx,
    v: &Value,
    path: &str,
    what: &str,
    mut entry: impl FnMut(&mut Cx, &Value, &str) -> Option<Vec<T>>,
) -> Option<Vec<T>> {
    let items = list(cx, v, path, what)?;
    let mut out = Vec::new();
    let mut ok = true;
    for (i, item) in items.iter().enumerate() {
        match entry(cx, item, &walk::index(path, i)) {
            Some(values) => out.extend(values),
            None => ok = false,
        }
    }
    ok.then_some(out)
}

fn weekday_entries(cx: &mut Cx, v: &Value, path: &str) -> Option<Vec<WeekdaySpec>> {
    entries(cx, v, path, "weekdays", |cx, item, p| {
        let s = walk::string(cx, item, p)?;
        // A range of weekdays: `mon-fri`, `fri-mon`.
        if let Some((a, b)) = s.split_once('-') {
            let pos = |d: &str| {
                let d = d.trim().to_ascii_lowercase();
                WEEK.iter().position(|w| d.starts_with(w) && w.len() >= 3)
            };
            let (Some(a), Some(b)) = (pos(a), pos(b)) else {
                cx.error(
                    p,
                    format!("{s:?}: expected a range of weekdays such as mon-fri"),
                );
                return None;
            };
            let mut out = Vec::new();
            let mut k = a;
            loop {
                out.push(WEEK[k].parse().expect("a weekday name"));
                if k == b {
                    return Some(out);
                }
                k = (k + 1) % 7;
            }
        }
        s.parse::<WeekdaySpec>()
            .map(|w| vec![w])
            .map_err(|e| cx.error(p, e.to_string()))
            .ok()
    })
}

fn monthday_entries(cx: &mut Cx, v: &Value, path: &str) -> Option<Vec<MonthDaySpec>> {
    entries(cx, v, path, "days of the month", |cx, item, p| {
        let text = match item {
            Value::String(s) => s.clone(),
            Value::Number(n) => n.to_string(),
            other => {
                cx.error(p, format!("expected a day of the month, {}", found(other)));
                return None;
            }
        };
        text.parse::<MonthDaySpec>()
            .map(|m| vec![m])
            .map_err(|e| cx.error(p, e.to_string()))
            .ok()
    })
}

fn month_entries(cx: &mut Cx, v: &Value, path: &str) -> Option<Vec<u8>> {
    const MONTHS: [&str; 12] = [
        "january",
        "february",
        "march",
        "april",
        "may",
        "june",
        "july",
        "august",
        "september",
        "october",
        "november",
        "december",
    ];
    entries(cx, v, path, "months", |cx, item, p| {
        let m = match item {
            Value::Number(n) => n.as_u64().filter(|m| (1..=12).contains(m)).map(|m| m as u8),
            Value::String(s) => {
                let l = s.to_ascii_lowercase();
                MONTHS
                    .iter()
                    .position(|f| l == *f || (l.len() == 3 && f.starts_with(&l)))
                    .map(|i| i as u8 + 1)
            }
            _ => None,
        };
        if m.is_none() {
            cx.error(
                p,
                format!("expected a month, 1 to 12 or jan to dec, {}", found(item)),
            );
        }
        m.map(|m| vec![m])
    })
}

fn day_filter(cx: &mut Cx, o: &Obj<'_>) -> Option<DayFilter> {
    let mut f = DayFilter::default();
    let mut ok = true;
    // An empty list would match no day at all, yet reads like "no filter": refused,
    // naming the field (leaving the key out means every day).
    let nonempty = |cx: &mut Cx, n: usize, p: &str, key: &str| {
        if n == 0 {
            cx.error(
                p,
                format!("an empty list matches no day; leave {key} out to mean every day"),
            );
        }
        n > 0
    };
    if let Some((v, p)) = o.get("weekdays") {
        match weekday_entries(cx, v, &p) {
            Some(w) => {
                ok &= nonempty(cx, w.len(), &p, "weekdays");
                f.weekdays = w;
            }
            None => ok = false,
        }
    }
    if let Some((v, p)) = o.get("monthdays") {
        match monthday_entries(cx, v, &p) {
            Some(m) => {
                ok &= nonempty(cx, m.len(), &p, "monthdays");
                f.monthdays = m;
            }
            None => ok = false,
        }
    }
    if let Some((v, p)) = o.get("months") {
        match month_entries(cx, v, &p) {
            Some(m) => {
                ok &= nonempty(cx, m.len(), &p, "months");
                f.months = m;
            }
            None => ok = false,
        }
    }
    ok.then_some(f)
}

fn period(cx: &mut Cx, v: &Value, path: &str) -> Option<Period> {
    let o = Obj::new(cx, v, path, "a period")?;
    o.check_keys(cx, PERIOD_KEYS, true);
    let before = cx.error_count();
    let name = o.get("name").and_then(|(v, p)| walk::string(cx, v, &p));
    let profile = o.get("profile").and_then(|(v, p)| walk::string(cx, v, &p));
    let mut period = if let Some((c, cp)) = o.get("cron") {
        for k in [
            "start",
            "stop",
            "weekdays",
            "monthdays",
            "months",
            "stop_days",
        ] {
            if o.get(k).is_some() {
                cx.error(
                    &walk::key(path, k),
                    "a period written with `cron` takes its times and days from the expressions",
                );
            }
        }
        let c = Obj::new(cx, c, &cp, "cron expressions with `start` and/or `stop`")?;
        c.check_keys(cx, CRON_KEYS, true);
        let start = c
            .get("start")
            .and_then(|(v, p)| walk::string(cx, v, &p).map(|s| (s, p)));
        let stop = c
            .get("stop")
            .and_then(|(v, p)| walk::string(cx, v, &p).map(|s| (s, p)));
        for (s, p) in start.iter().chain(stop.iter()) {
            if let Err(e) = s.parse::<cron::Cron>() {
                cx.error(p, e.to_string());
            }
        }
        if start.is_none() && stop.is_none() {
            cx.error(&cp, "expected a `start` or a `stop` expression, or both");
        }
        if cx.error_count() > before {
            return None;
        }
        cron::period(
            start.as_ref().map(|(s, _)| s.as_str()),
            stop.as_ref().map(|(s, _)| s.as_str()),
        )
        .map_err(|e| cx.error(&cp, e.to_string()))
        .ok()?
    } else {
        let start = o.get("start").and_then(|(v, p)| time(cx, v, &p));
        let stop = o.get("stop").and_then(|(v, p)| time(cx, v, &p));
        if o.get("start").is_none() && o.get("stop").is_none() {
            cx.error(
                path,
                "a period needs a `start`, a `stop`, or both (or `cron`)",
            );
        }
        let days = day_filter(cx, &o);
        let stop_days = match o.get("stop_days") {
            None => Some(None),
            Some((v, p)) => {
                if o.get("stop").is_none() || o.get("start").is_none() {
                    cx.error(
                        &p,
                        "`stop_days` is for windows with both a `start` and a `stop`",
                    );
                }
                Obj::new(cx, v, &p, "day filters for the stop").and_then(|d| {
                    d.check_keys(cx, DAYS_KEYS, true);
                    day_filter(cx, &d).map(Some)
                })
            }
        };
        if cx.error_count() > before {
            return None;
        }
        Period {
            start,
            stop,
            days: days?,
            stop_days: stop_days?,
            ..Period::default()
        }
    };
    if cx.error_count() > before {
        return None;
    }
    period.name = name;
    period.profile = profile;
    Some(period)
}

/// One skip entry: a string, or `{date, name, calendar}`.
fn skip_date(cx: &mut Cx, v: &Value, path: &str, calendar: Option<&str>) -> Option<SkipDate> {
    let (text, label, from, at) = match v {
        Value::String(s) => (s.clone(), None, None, path.to_string()),
        Value::Object(_) => {
            let o = Obj::new(cx, v, path, "a date")?;
            o.check_keys(cx, NAMED_SKIP_KEYS, true);
            let (d, p) = o.require(cx, "date", "2026-12-24 or 12-25")?;
            let text = walk::string(cx, d, &p)?;
            let label = o.get("name").and_then(|(v, p)| walk::string(cx, v, &p));
            let from = o.get("calendar").and_then(|(v, p)| walk::string(cx, v, &p));
            (text, label, from, p)
        }
        other => {
            cx.error(
                path,
                format!(
                    "expected a date (2026-12-24), a yearly date (12-25) or {{date, name}}, {}",
                    found(other)
                ),
            );
            return None;
        }
    };
    let day = text.parse::<SkipDay>().map_err(|e| cx.error(&at, e)).ok()?;
    Some(SkipDate {
        day,
        label,
        calendar: from.or_else(|| calendar.map(str::to_string)),
    })
}

fn skip_dates(cx: &mut Cx, v: &Value, path: &str, calendar: Option<&str>) -> Option<Vec<SkipDate>> {
    entries(cx, v, path, "dates", |cx, item, p| {
        skip_date(cx, item, p, calendar).map(|d| vec![d])
    })
}

/// The `calendars` of a document.
pub(crate) fn decode_calendars(cx: &mut Cx, v: &Value, path: &str) -> Calendars {
    let mut out = Calendars::new();
    let Some(items) = list(cx, v, path, "calendars") else {
        return out;
    };
    for (i, item) in items.iter().enumerate() {
        let p = walk::index(path, i);
        let Some(o) = Obj::new(cx, item, &p, "a calendar with `name` and `dates`") else {
            continue;
        };
        o.check_keys(cx, CALENDAR_KEYS, true);
        let name = o
            .require(cx, "name", "the calendar's name")
            .and_then(|(v, p)| walk::string(cx, v, &p));
        let dates = o
            .require(cx, "dates", "the dates to skip")
            .and_then(|(v, dp)| skip_dates(cx, v, &dp, name.as_deref()));
        // A calendar with a bad date is still known by its name, so that schedules
        // naming it are not reported too.
        if let Some(name) = name {
            if out.contains_key(&name) {
                cx.error(
                    &walk::key(&p, "name"),
                    format!("duplicate calendar name {name:?}"),
                );
            }
            out.insert(name, dates.unwrap_or_default());
        }
    }
    out
}

/// A workload's `schedules` (`Schedules` in the original's items).
pub(crate) fn decode_schedules(
    cx: &mut Cx,
    v: &Value,
    path: &str,
    calendars: &Calendars,
) -> Option<Vec<Schedule>> {
    let items = list(cx, v, path, "schedules")?;
    let before = cx.error_count();
    let mut out: Vec<Schedule> = Vec::new();
    let mut names: Vec<String> = Vec::new();
    for (i, item) in items.iter().enumerate() {
        let p = walk::index(path, i);
        let (name, schedule) = decode_schedule(cx, item, &p, calendars);
        if let Some(n) = name {
            if names.contains(&n) {
                cx.error(
                    &walk::key(&p, "name"),
                    format!("duplicate schedule name {n:?}"),
                );
            }
            names.push(n);
        }
        out.extend(schedule);
    }
    (cx.error_count() == before).then_some(out)
}

/// One schedule, and its name even when the rest has errors.
fn decode_schedule(
    cx: &mut Cx,
    item: &Value,
    p: &str,
    calendars: &Calendars,
) -> (Option<String>, Option<Schedule>) {
    let Some(o) = Obj::new(cx, item, p, "a schedule with `timezone` and `periods`") else {
        return (None, None);
    };
    o.check_keys(cx, SCHEDULE_KEYS, true);
    let name = match o.get("name") {
        Some((v, np)) => walk::string(cx, v, &np),
        None => Some("default".to_string()),
    };
    let zone = o
        .require(cx, "timezone", "an IANA time zone such as Europe/Berlin")
        .and_then(|(v, zp)| {
            let s = walk::string(cx, v, &zp)?;
            zone(&s).map_err(|e| cx.error(&zp, e)).ok()
        });
    let periods = o
        .require(cx, "periods", "the periods in which the workload runs")
        .and_then(|(v, pp)| {
            let items = list(cx, v, &pp, "periods")?;
            if items.is_empty() {
                cx.error(&pp, "the list is empty: expected at least one period");
            }
            let got: Vec<Option<Period>> = items
                .iter()
                .enumerate()
                .map(|(k, item)| period(cx, item, &walk::index(&pp, k)))
                .collect();
            got.into_iter().collect::<Option<Vec<_>>>()
        });
    let mut skip = match o.get("skip") {
        Some((v, sp)) => skip_dates(cx, v, &sp, None),
        None => Some(Vec::new()),
    };
    if let Some((v, cp)) = o.get("calendars")
        && let Some(names) = list(cx, v, &cp, "calendar names")
    {
        for (k, n) in names.iter().enumerate() {
            let np = walk::index(&cp, k);
            let Some(n) = walk::string(cx, n, &np) else {
                continue;
            };
            match calendars.get(&n) {
                Some(dates) => {
                    if let Some(skip) = &mut skip {
                        skip.extend(dates.iter().cloned());
                    }
                }
                None => cx.error(
                    &np,
                    format!(
                        "unknown calendar {n:?}: define it under `calendars` in the same file{}",
                        if calendars.is_empty() {
                            String::new()
                        } else {
                            format!(
                                " (defined: {})",
                                calendars.keys().cloned().collect::<Vec<_>>().join(", ")
                            )
                        }
                    ),
                ),
            }
        }
    }
    let schedule = match (&name, zone, periods, skip) {
        (Some(name), Some(zone), Some(periods), Some(skip)) => Some(Schedule {
            name: name.clone(),
            zone,
            periods,
            skip,
        }),
        _ => None,
    };
    (name, schedule)
}

/// A document holding one schedule alone (`timezone`, `periods`, `skip`); it has no
/// shared calendars to name.
pub(crate) fn decode_schedule_document(cx: &mut Cx, doc: &Value) -> Option<Schedule> {
    let before = cx.error_count();
    let (_, schedule) = decode_schedule(cx, doc, "", &Calendars::new());
    (cx.error_count() == before).then_some(schedule).flatten()
}

/// Warnings about schedules that are valid but probably not what was meant.
pub(crate) fn lint(cx: &mut Cx, w: &Workload, path: &str) {
    let profiles = w.profile_names();
    for (i, s) in w.schedules.iter().enumerate() {
        let sp = walk::index(&walk::key(path, "schedules"), i);
        for (k, p) in s.periods.iter().enumerate() {
            let pp = walk::index(&walk::key(&sp, "periods"), k);
            if never(&p.days) {
                cx.warn(
                    &pp,
                    "the period never happens: no date matches all its day filters",
                );
            } else if let Some(stop_days) = &p.stop_days
                && never(stop_days)
            {
                cx.warn(&pp, "the period never stops: no date matches its stop days");
            }
            if p.start.is_some() && p.start == p.stop && p.stop_days.is_none() {
                cx.warn(
                    &pp,
                    "the stop equals the start: the period never runs (stop 23:59 and start 00:00 for all day)",
                );
            }
            if let Some(profile) = &p.profile
                && !profiles.contains(&profile.as_str())
            {
                cx.warn(
                    &walk::key(&pp, "profile"),
                    format!(
                        "no tier defines profile {profile:?}{}",
                        if profiles.is_empty() {
                            String::new()
                        } else {
                            format!(" (defined: {})", profiles.join(", "))
                        }
                    ),
                );
            }
        }
    }
}

/// Whether no date matches: 28 years hold every combination of weekday, day of
/// the month and leap year (the calendar repeats every 28 years from 1901 to 2099).
/// A filter that matches stops the search at its first date.
fn never(f: &DayFilter) -> bool {
    let first = NaiveDate::from_ymd_opt(2001, 1, 1).expect("a date");
    let last = NaiveDate::from_ymd_opt(2029, 1, 1).expect("a date");
    !first
        .iter_days()
        .take_while(|d| *d < last)
        .any(|d| f.matches(d))
}

// ---- export ----

fn encode_days(f: &DayFilter) -> DaysDoc {
    DaysDoc {
        weekdays: f.weekdays.iter().map(ToString::to_string).collect(),
        monthdays: f
            .monthdays
            .iter()
            .map(|m| match m {
                MonthDaySpec::Day(n) => MonthDayDoc::Day(*n),
                other => MonthDayDoc::Text(other.to_string()),
            })
            .collect(),
        months: f.months.iter().map(|m| MonthDoc::Number(*m)).collect(),
    }
}

fn encode_skip(d: &SkipDate, with_calendar: bool) -> SkipDoc {
    let calendar = d.calendar.clone().filter(|_| with_calendar);
    if d.label.is_none() && calendar.is_none() {
        SkipDoc::Date(d.day.to_string())
    } else {
        SkipDoc::Named(NamedSkipDoc {
            date: d.day.to_string(),
            name: d.label.clone(),
            calendar,
        })
    }
}

/// A workload's schedules as documents. With `inline`, dates from calendars are
/// written into each schedule (marked with their calendar), as the original's items
/// need; without, schedules name their calendars.
pub fn encode(schedules: &[Schedule], inline: bool) -> Vec<ScheduleDoc> {
    schedules
        .iter()
        .map(|s| {
            let mut calendars: Vec<String> = Vec::new();
            let mut skip = Vec::new();
            for d in &s.skip {
                match &d.calendar {
                    Some(c) if !inline => {
                        if !calendars.contains(c) {
                            calendars.push(c.clone());
                        }
                    }
                    _ => skip.push(encode_skip(d, inline)),
                }
            }
            ScheduleDoc {
                name: (s.name != "default").then(|| s.name.clone()),
                timezone: s.zone.name().to_string(),
                periods: s.periods.iter().map(encode_period).collect(),
                calendars,
                skip,
            }
        })
        .collect()
}

fn encode_period(p: &Period) -> PeriodDoc {
    let hm = |t: NaiveTime| t.format("%H:%M").to_string();
    let days = encode_days(&p.days);
    PeriodDoc {
        name: p.name.clone(),
        start: p.start.map(hm),
        stop: p.stop.map(hm),
        weekdays: days.weekdays,
        monthdays: days.monthdays,
        months: days.months,
        stop_days: p.stop_days.as_ref().map(encode_days),
        profile: p.profile.clone(),
        cron: None,
    }
}

/// The calendars that `workloads` use, rebuilt from their dates.
pub fn encode_calendars(workloads: &[Workload]) -> Vec<CalendarDoc> {
    let mut out: BTreeMap<String, Vec<SkipDoc>> = BTreeMap::new();
    let mut seen: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for d in workloads
        .iter()
        .flat_map(|w| &w.schedules)
        .flat_map(|s| &s.skip)
    {
        let Some(c) = &d.calendar else { continue };
        let key = format!("{}|{:?}", d.day, d.label);
        let keys = seen.entry(c.clone()).or_default();
        if !keys.contains(&key) {
            keys.push(key);
            out.entry(c.clone())
                .or_default()
                .push(encode_skip(d, false));
        }
    }
    out.into_iter()
        .map(|(name, dates)| CalendarDoc { name, dates })
        .collect()
}

/// A calendar named `name` from an iCalendar (`.ics`) file: each event's dates (every
/// day of an all-day event that spans several), with its summary as their name; an
/// event repeating every year (`RRULE:FREQ=YEARLY`) becomes a yearly date.
///
/// # Errors
/// A file that is not iCalendar, or that has no event with a date; an event with
/// another kind of repetition is an error naming it (its other dates would be lost).
pub fn calendar_from_ics(
    src: crate::Source<'_>,
    name: &str,
) -> Result<CalendarDoc, crate::Diagnostics> {
    use icalendar::{CalendarComponent, Component, DatePerhapsTime};
    let mut cx = Cx::new(src.name);
    let text = crate::doc::strip_bom(src.text);
    let calendar: icalendar::Calendar = match text.parse() {
        Ok(c) => c,
        Err(e) => {
            cx.file_error(format!("not an iCalendar file: {e}"));
            return Err(crate::Diagnostics(cx.diags));
        }
    };
    let mut dates = Vec::new();
    for (i, event) in calendar
        .components
        .iter()
        .filter_map(|c| match c {
            CalendarComponent::Event(e) => Some(e),
            _ => None,
        })
        .enumerate()
    {
        let path = format!("VEVENT[{i}]");
        let label = event.get_summary().map(str::to_string);
        let day = |d: Option<DatePerhapsTime>| match d? {
            DatePerhapsTime::Date(d) => Some(d),
            // A time: its date as written.
            DatePerhapsTime::DateTime(t) => Some(match t {
                icalendar::CalendarDateTime::Floating(n) => n.date(),
                icalendar::CalendarDateTime::WithTimezone { date_time, .. } => date_time.date(),
                icalendar::CalendarDateTime::Utc(u) => u.date_naive(),
            }),
        };
        let Some(start) = day(event.get_start()) else {
            cx.error(&path, "the event has no start date (DTSTART)");
            continue;
        };
        // DTEND of an all-day event is the day after its last.
        let end = day(event.get_end())
            .filter(|e| *e > start)
            .unwrap_or(start + Duration::days(1));
        let yearly = match event.property_value("RRULE") {
            None => false,
            Some(rule) => {
                let parts: Vec<&str> = rule.split(';').collect();
                if parts.iter().any(|p| p.eq_ignore_ascii_case("FREQ=YEARLY"))
                    && parts.iter().all(|p| {
                        let k = p.split('=').next().unwrap_or_default().to_ascii_uppercase();
                        matches!(
                            k.as_str(),
                            "FREQ" | "INTERVAL" | "BYMONTH" | "BYMONTHDAY" | "WKST"
                        ) && (k != "INTERVAL" || p.ends_with("=1"))
                    })
                {
                    true
                } else {
                    cx.error(
                        &format!("{path}.RRULE"),
                        format!(
                            "repeats as {rule:?}: only the same date every year (FREQ=YEARLY) can be a skip date; list the other dates instead"
                        ),
                    );
                    continue;
                }
            }
        };
        let mut d = start;
        while d < end && (end - start).num_days() <= 366 {
            use chrono::Datelike;
            let text = if yearly {
                format!("{:02}-{:02}", d.month(), d.day())
            } else {
                d.to_string()
            };
            dates.push(match &label {
                Some(l) => SkipDoc::Named(NamedSkipDoc {
                    date: text,
                    name: Some(l.clone()),
                    calendar: None,
                }),
                None => SkipDoc::Date(text),
            });
            d += Duration::days(1);
        }
    }
    if dates.is_empty() && cx.error_count() == 0 {
        cx.file_error("the file has no event with a date");
    }
    if cx.error_count() > 0 {
        return Err(crate::Diagnostics(cx.diags));
    }
    Ok(CalendarDoc {
        name: name.to_string(),
        dates,
    })
}
