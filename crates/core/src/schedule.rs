//! Schedules: when a workload should run, and the events that start and stop it.
//!
//! A [`Schedule`] has a time zone, periods and skip dates. Everything here is a pure
//! function of the schedule and an instant: the caller says what "now" is.
//!
//! # Rules
//!
//! - A period's **start is inclusive and its stop exclusive**: a period from 08:00 to
//!   18:00 wishes the workload running at 08:00 and stopped at 18:00.
//! - A period with both times wishes what its **last event that fired** says: running
//!   after a start, stopped after a stop. A window whose stop is earlier than its start
//!   is **overnight**: it opens on a day its day filters match and stops the next day.
//!   A **multi-day** window gives the days on which its stop happens (`stop_days`):
//!   start Monday 07:00, stop Friday 19:00.
//! - A period with one time (**start only, stop only**) has no wish on a matching day
//!   before its time, wishes running (or stopped) from its time to the end of that day,
//!   and has no wish on other days.
//! - On a **skip date** (a holiday) no start or stop fires; the state carries over from
//!   the last event that fired. The date of an event is the local date of its wall time.
//! - **Several periods**: running if any period wishes running, else no wish if any
//!   period has none, else stopped. When running, the profile is the one of the running
//!   period that started last.
//! - **Adjacent periods** do not stop the workload in between: a stop followed within
//!   a minute by a start (one period stops at 23:59 or 10:00, the next starts at 00:00
//!   or 10:01) is no stop at all.
//! - **Daylight saving**: a wall time that does not exist that day takes effect at the
//!   first instant after the gap; one that happens twice takes effect once, at its
//!   first occurrence (see [`Zone::instant`]).
//!
//! The schedule's events are the instants at which its wish becomes running (a start,
//! with the profile to start with), becomes stopped (a stop), or stays running with
//! another profile (a start that resizes). A change to "no wish" is not an event.

use std::cmp::Ordering;
use std::fmt;

use chrono::{DateTime, Datelike, Duration, NaiveDate, NaiveDateTime, NaiveTime, Utc};
use serde::{Deserialize, Serialize};

use crate::overrides::{Change, Override};

use crate::calendar::DayFilter;
use crate::zone::Zone;

/// How far back the state of a two-sided period is looked for: eight years, which
/// covers a period that only happens on the 29th of February.
const LOOKBACK_DAYS: i64 = 8 * 366;

/// The longest stop between two starts that is not a stop (adjacent periods).
pub const ADJACENT: Duration = Duration::seconds(60);

/// A workload's schedule.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Schedule {
    pub name: String,
    pub zone: Zone,
    pub periods: Vec<Period>,
    /// Dates on which nothing fires.
    pub skip: Vec<SkipDate>,
}

/// A window of time on the days its filters match.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Period {
    /// For messages; periods without a name are called by their position.
    pub name: Option<String>,
    /// Local wall time, minute precision.
    pub start: Option<NaiveTime>,
    pub stop: Option<NaiveTime>,
    /// The days on which the window opens (or its one time happens).
    pub days: DayFilter,
    /// The days on which the stop happens, for windows that span several days (and for
    /// periods written as a pair of cron expressions).
    pub stop_days: Option<DayFilter>,
    /// The profile to start with.
    pub profile: Option<String>,
}

/// A date on which nothing fires.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SkipDate {
    pub day: SkipDay,
    /// What it is, for messages: `Christmas`.
    pub label: Option<String>,
    /// The shared calendar it comes from, if any.
    pub calendar: Option<String>,
}

/// A local date, once or every year.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SkipDay {
    Once(NaiveDate),
    /// Month and day; the 29th of February only happens in leap years.
    Yearly(u8, u8),
}

impl SkipDay {
    pub fn matches(self, d: NaiveDate) -> bool {
        match self {
            SkipDay::Once(x) => x == d,
            SkipDay::Yearly(m, day) => d.month() == u32::from(m) && d.day() == u32::from(day),
        }
    }
}

impl Serialize for SkipDay {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl fmt::Display for SkipDay {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SkipDay::Once(d) => write!(f, "{d}"),
            SkipDay::Yearly(m, d) => write!(f, "{m:02}-{d:02}"),
        }
    }
}

impl std::str::FromStr for SkipDay {
    type Err = String;

    /// `2026-12-24` (once) or `12-25` (every year).
    fn from_str(s: &str) -> Result<Self, String> {
        let s = s.trim();
        if let Ok(d) = NaiveDate::parse_from_str(s, "%Y-%m-%d") {
            return Ok(SkipDay::Once(d));
        }
        let yearly = s.split_once('-').and_then(|(m, d)| {
            let (m, d) = (m.parse::<u8>().ok()?, d.parse::<u8>().ok()?);
            // 2000 is a leap year: the 29th of February is a date.
            NaiveDate::from_ymd_opt(2000, u32::from(m), u32::from(d))?;
            Some(SkipDay::Yearly(m, d))
        });
        yearly.ok_or_else(|| {
            format!("{s:?}: expected a date (2026-12-24) or a month and day every year (12-25)")
        })
    }
}

/// What a schedule wishes at an instant.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Wish {
    Running,
    Stopped,
    /// No wish: leave the workload as it is.
    Any,
}

impl Wish {
    pub fn as_str(self) -> &'static str {
        match self {
            Wish::Running => "running",
            Wish::Stopped => "stopped",
            Wish::Any => "any",
        }
    }
}

impl fmt::Display for Wish {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The desired state at an instant and what decides it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Desired {
    pub wish: Wish,
    /// The profile to run with, when running.
    pub profile: Option<String>,
    /// The schedule (of a workload's) and the period in it that decide, when one does.
    pub schedule: Option<usize>,
    pub period: Option<usize>,
    /// When the deciding period's last event fired.
    pub since: Option<DateTime<Utc>>,
    /// The override that decides instead of the periods, when one does.
    pub by_override: Option<String>,
}

/// Start or stop.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum EventKind {
    Start,
    Stop,
}

impl EventKind {
    pub fn as_str(self) -> &'static str {
        match self {
            EventKind::Start => "start",
            EventKind::Stop => "stop",
        }
    }
}

impl fmt::Display for EventKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An event of a schedule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    pub at: DateTime<Utc>,
    /// The wall time it was written as (a time in a gap takes effect later).
    pub local: NaiveDateTime,
    pub kind: EventKind,
    pub profile: Option<String>,
    /// The schedule and the period in it that it comes from.
    pub schedule: usize,
    pub period: usize,
    /// Why it does not fire, when it does not.
    pub skipped: Option<Skip>,
    /// The override that makes it fire (a postponed stop, the end of keep-running).
    pub by_override: Option<String>,
}

/// Why an event of a period does not fire.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Skip {
    /// The date is a skip date.
    Holiday(SkipDate),
    /// An override keeps it from firing.
    Override(Override),
}

impl fmt::Display for Skip {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Skip::Holiday(s) => {
                write!(f, "skip date {}", s.day)?;
                match (&s.label, &s.calendar) {
                    (Some(l), Some(c)) => write!(f, " ({l}, calendar {c})"),
                    (Some(l), None) => write!(f, " ({l})"),
                    (None, Some(c)) => write!(f, " (calendar {c})"),
                    (None, None) => Ok(()),
                }
            }
            Skip::Override(o) => write!(f, "{o}"),
        }
    }
}

/// One time of a period on one date.
#[derive(Debug, Clone)]
struct Occurrence {
    at: DateTime<Utc>,
    local: NaiveDateTime,
    kind: EventKind,
    skipped: Option<Skip>,
}

impl Occurrence {
    /// Later instant first; at one instant, the later wall time, then the stop.
    fn order(&self, other: &Occurrence) -> Ordering {
        (self.at, self.local, self.kind).cmp(&(other.at, other.local, other.kind))
    }
}

/// The state of one period at an instant.
#[derive(Debug, Clone)]
struct PeriodState {
    wish: Wish,
    since: Option<DateTime<Utc>>,
}

impl Period {
    fn one_sided(&self) -> bool {
        self.start.is_some() != self.stop.is_some()
    }

    /// Whether a stop on `d` belongs to this period.
    fn stops_on(&self, d: NaiveDate) -> bool {
        match (&self.stop_days, self.start, self.stop) {
            (Some(f), _, _) => f.matches(d),
            (None, Some(start), Some(stop)) if stop < start => {
                d.pred_opt().is_some_and(|y| self.days.matches(y))
            }
            _ => self.days.matches(d),
        }
    }

    /// The label of the period at `index`, for messages.
    pub fn label(&self, index: usize) -> String {
        match &self.name {
            Some(n) => n.clone(),
            None => format!("period {}", index + 1),
        }
    }
}

impl Schedule {
    fn skip_of(&self, d: NaiveDate) -> Option<Skip> {
        self.skip
            .iter()
            .find(|s| s.day.matches(d))
            .map(|s| Skip::Holiday(s.clone()))
    }

    /// The starts and stops of period `p` whose wall time falls on local date `d`.
    fn occurrences(&self, p: &Period, d: NaiveDate) -> Vec<Occurrence> {
        let mut out = Vec::with_capacity(2);
        let mut push = |time: NaiveTime, kind| {
            let local = d.and_time(time);
            out.push(Occurrence {
                at: self.zone.instant(local),
                local,
                kind,
                skipped: self.skip_of(d),
            });
        };
        if let Some(start) = p.start
            && p.days.matches(d)
        {
            push(start, EventKind::Start);
        }
        if let Some(stop) = p.stop
            && p.stops_on(d)
        {
            push(stop, EventKind::Stop);
        }
        out
    }

    fn period_state(&self, p: &Period, at: DateTime<Utc>) -> PeriodState {
        let today = self.zone.date(at);
        let latest = |d: NaiveDate| {
            self.occurrences(p, d)
                .into_iter()
                .filter(|o| o.skipped.is_none() && o.at <= at)
                .max_by(Occurrence::order)
        };
        let found = if p.one_sided() {
            latest(today)
        } else {
            (0..LOOKBACK_DAYS)
                .map_while(|back| today.checked_sub_signed(Duration::days(back)))
                .find_map(latest)
        };
        match found {
            Some(o) => PeriodState {
                wish: match o.kind {
                    EventKind::Start => Wish::Running,
                    EventKind::Stop => Wish::Stopped,
                },
                since: Some(o.at),
            },
            None => PeriodState {
                wish: Wish::Any,
                since: None,
            },
        }
    }

    /// What this schedule wishes at `at`.
    pub fn state(&self, at: DateTime<Utc>) -> Desired {
        Timetable::new(std::slice::from_ref(self)).state(at)
    }

    /// This schedule's events in `(from, to]` (see [`Timetable::events`]).
    pub fn events(&self, from: DateTime<Utc>, to: DateTime<Utc>) -> Vec<Event> {
        Timetable::new(std::slice::from_ref(self)).events(from, to)
    }

    /// This schedule's next events (see [`Timetable::next_events`]).
    pub fn next_events(&self, from: DateTime<Utc>, count: usize, horizon_days: i64) -> Vec<Event> {
        Timetable::new(std::slice::from_ref(self)).next_events(from, count, horizon_days)
    }

    /// Every date from the day before `from`'s local date to the day after `to`'s.
    fn dates_around(&self, from: DateTime<Utc>, to: DateTime<Utc>) -> Vec<NaiveDate> {
        let (first, last) = (self.zone.date(from), self.zone.date(to));
        let mut d = first.pred_opt().unwrap_or(first);
        let end = last.succ_opt().unwrap_or(last);
        let mut out = Vec::new();
        while d <= end {
            out.push(d);
            match d.succ_opt() {
                Some(n) => d = n,
                None => break,
            }
        }
        out
    }
}

/// A workload's schedules taken together: running if any of them wishes running,
/// else no wish if any has none, else stopped, exactly as the periods of one schedule
/// combine. Each schedule keeps its own time zone and skip dates. Overrides change
/// the result last.
#[derive(Debug, Clone, Copy)]
pub struct Timetable<'a> {
    schedules: &'a [Schedule],
    overrides: &'a [Override],
}

/// The kind of event a change of wish is: a start when it becomes running (or stays
/// running with another profile), a stop when it becomes stopped.
fn event_kind(before: &Desired, now: &Desired) -> Option<EventKind> {
    match now.wish {
        Wish::Running
            if before.wish != Wish::Running
                || (now.profile.is_some() && now.profile != before.profile) =>
        {
            Some(EventKind::Start)
        }
        Wish::Stopped if before.wish != Wish::Stopped => Some(EventKind::Stop),
        _ => None,
    }
}

/// How far back an override is looked at: its effect lasts until the schedule's next
/// change, and overrides are short-lived.
const OVERRIDE_LOOKBACK: Duration = Duration::days(8);

impl<'a> Timetable<'a> {
    /// A workload's schedules, without overrides.
    pub fn new(schedules: &'a [Schedule]) -> Self {
        Timetable {
            schedules,
            overrides: &[],
        }
    }

    /// The same schedules with these overrides (of the same workload).
    pub fn with_overrides(self, overrides: &'a [Override]) -> Self {
        Timetable { overrides, ..self }
    }

    /// What the periods wish at `at`, before adjacent periods are joined.
    fn raw(&self, at: DateTime<Utc>) -> Desired {
        let states: Vec<(usize, usize, PeriodState)> = self
            .schedules
            .iter()
            .enumerate()
            .flat_map(|(si, s)| {
                s.periods
                    .iter()
                    .enumerate()
                    .map(move |(pi, p)| (si, pi, s.period_state(p, at)))
            })
            .collect();
        let latest = |wish: Wish| {
            states
                .iter()
                .enumerate()
                .filter(|(_, (_, _, s))| s.wish == wish)
                .max_by_key(|(k, (_, _, s))| (s.since, *k))
                .map(|(_, (si, pi, s))| (*si, *pi, s.since))
        };
        if let Some((si, pi, since)) = latest(Wish::Running) {
            return Desired {
                wish: Wish::Running,
                profile: self.schedules[si].periods[pi].profile.clone(),
                schedule: Some(si),
                period: Some(pi),
                since,
                by_override: None,
            };
        }
        if let Some((si, pi, _)) = states.iter().find(|(_, _, s)| s.wish == Wish::Any) {
            return Desired {
                wish: Wish::Any,
                profile: None,
                schedule: Some(*si),
                period: Some(*pi),
                since: None,
                by_override: None,
            };
        }
        match latest(Wish::Stopped) {
            Some((si, pi, since)) => Desired {
                wish: Wish::Stopped,
                profile: None,
                schedule: Some(si),
                period: Some(pi),
                since,
                by_override: None,
            },
            None => Desired {
                wish: Wish::Any,
                profile: None,
                schedule: None,
                period: None,
                since: None,
                by_override: None,
            },
        }
    }

    /// The instants in `(from, to]` at which some period may change its wish, sorted,
    /// without repeats.
    fn changes_between(&self, from: DateTime<Utc>, to: DateTime<Utc>) -> Vec<DateTime<Utc>> {
        let mut out = Vec::new();
        for s in self.schedules {
            let one_sided = s.periods.iter().any(Period::one_sided);
            for d in s.dates_around(from, to) {
                for p in &s.periods {
                    out.extend(s.occurrences(p, d).into_iter().map(|o| o.at));
                }
                if one_sided {
                    out.push(s.zone.start_of(d));
                }
            }
        }
        out.retain(|t| *t > from && *t <= to);
        out.sort();
        out.dedup();
        out
    }

    /// The wish at each change in `(from, to]`, starting with the wish at `from`,
    /// adjacent periods joined and overrides applied, with the events overrides keep
    /// from firing. Changes that do not change the wish are left out.
    #[allow(clippy::type_complexity)]
    fn timeline(
        &self,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
    ) -> (Vec<(DateTime<Utc>, Desired)>, Vec<Event>) {
        // Look a little further on both sides so that a short stop at the edges is
        // seen whole, and back to the overrides whose effect may last until `from`.
        let mut lo = from - ADJACENT - ADJACENT;
        let hi = to + ADJACENT + ADJACENT;
        for o in self.overrides {
            let begins = o.begins();
            if begins < lo && begins >= from - OVERRIDE_LOOKBACK && o.expires() >= begins {
                lo = begins - ADJACENT - ADJACENT;
            }
        }
        let mut raw = vec![(lo, self.raw(lo))];
        for t in self.changes_between(lo, hi) {
            let d = self.raw(t);
            let last = &raw[raw.len() - 1].1;
            if d.wish != last.wish
                || d.profile != last.profile
                || (d.schedule, d.period) != (last.schedule, last.period)
            {
                raw.push((t, d));
            }
        }
        // Join adjacent periods: a short stop between two runs is no stop.
        let mut joined: Vec<(DateTime<Utc>, Desired)> = Vec::with_capacity(raw.len());
        for (i, (t, d)) in raw.iter().enumerate() {
            let short_stop = d.wish == Wish::Stopped
                && i > 0
                && raw[i - 1].1.wish == Wish::Running
                && raw
                    .get(i + 1)
                    .is_some_and(|(next, n)| n.wish == Wish::Running && *next - *t <= ADJACENT);
            if !short_stop {
                joined.push((*t, d.clone()));
            }
        }
        let (line, skipped) = self.apply_overrides(joined, lo, hi);
        // The wish at `from`, then what changes after it.
        let start = line.iter().rposition(|(t, _)| *t <= from).unwrap_or(0);
        let mut out = vec![(from, line[start].1.clone())];
        out.extend(line[start + 1..].iter().filter(|(t, _)| *t <= to).cloned());
        let skipped = skipped
            .into_iter()
            .filter(|e| e.at > from && e.at <= to)
            .collect();
        (out, skipped)
    }

    /// The override, if any, that holds the wish at `t`.
    fn holding(&self, t: DateTime<Utc>) -> Option<(&Override, Wish)> {
        self.overrides.iter().find_map(|o| match o.change {
            Change::KeepRunning { until } if o.created_at <= t && t < until => {
                Some((o, Wish::Running))
            }
            Change::KeepStopped { until } if o.created_at <= t && t < until => {
                Some((o, Wish::Stopped))
            }
            _ => None,
        })
    }

    /// The override, if any, that keeps an event of `kind` at `t` from firing.
    fn skipping(&self, kind: EventKind, t: DateTime<Utc>) -> Option<&Override> {
        self.overrides.iter().find(|o| match o.change {
            Change::SkipNext { action, at } => action == kind && at == t,
            Change::PostponeStop { at, .. } => kind == EventKind::Stop && at == t,
            _ => false,
        })
    }

    #[allow(clippy::type_complexity)]
    fn apply_overrides(
        &self,
        joined: Vec<(DateTime<Utc>, Desired)>,
        lo: DateTime<Utc>,
        hi: DateTime<Utc>,
    ) -> (Vec<(DateTime<Utc>, Desired)>, Vec<Event>) {
        if self.overrides.is_empty() {
            return (joined, Vec::new());
        }
        // The instants at which an override begins or ends holding the wish are
        // changes too.
        let mut points: Vec<(DateTime<Utc>, Desired, Option<&Override>)> =
            joined.into_iter().map(|(t, d)| (t, d, None)).collect();
        for o in self.overrides {
            let marks = match o.change {
                Change::PostponeStop { until, .. } => vec![until],
                Change::KeepRunning { until } | Change::KeepStopped { until } => {
                    vec![o.created_at, until]
                }
                Change::SkipNext { .. } => vec![],
            };
            for t in marks {
                if t > lo && t <= hi && !points.iter().any(|(p, _, _)| *p == t) {
                    points.push((t, self.raw(t), Some(o)));
                }
            }
        }
        points.sort_by_key(|(t, _, _)| *t);
        let mut out: Vec<(DateTime<Utc>, Desired)> = Vec::with_capacity(points.len());
        let mut skipped = Vec::new();
        let mut raw_before: Option<Desired> = None;
        for (t, d, mark) in points {
            let mut eff = d.clone();
            if let Some((o, wish)) = self.holding(t) {
                // Report what the periods would have done.
                if let Some(kind) = raw_before.as_ref().and_then(|b| event_kind(b, &d))
                    && (kind == EventKind::Start) != (wish == Wish::Running)
                {
                    skipped.push(self.override_skip(t, kind, &d, o));
                }
                if eff.wish != wish {
                    eff.profile = None;
                }
                eff.wish = wish;
                eff.by_override = Some(o.id.clone());
            } else if let Some(before) = out.last().map(|(_, b)| b)
                && let Some(kind) = event_kind(before, &d)
                && let Some(o) = self.skipping(kind, t)
            {
                skipped.push(self.override_skip(t, kind, &d, o));
                eff = before.clone();
            } else if let Some(o) = mark {
                eff.by_override = Some(o.id.clone());
            }
            raw_before = Some(d);
            let changed = out.last().is_none_or(|(_, b)| {
                b.wish != eff.wish
                    || b.profile != eff.profile
                    || b.by_override != eff.by_override
                    || (b.schedule, b.period) != (eff.schedule, eff.period)
            });
            if changed {
                out.push((t, eff));
            }
        }
        (out, skipped)
    }

    fn override_skip(&self, t: DateTime<Utc>, kind: EventKind, d: &Desired, o: &Override) -> Event {
        let schedule = d.schedule.unwrap_or(0);
        Event {
            at: t,
            local: self
                .schedules
                .get(schedule)
                .map_or_else(|| t.naive_utc(), |s| s.zone.local(t)),
            kind,
            profile: d.profile.clone().filter(|_| kind == EventKind::Start),
            schedule,
            period: d.period.unwrap_or(0),
            skipped: Some(Skip::Override(o.clone())),
            by_override: None,
        }
    }

    /// The wish at `from`, then at each instant in `(from, to]` where it changes.
    pub fn changes(&self, from: DateTime<Utc>, to: DateTime<Utc>) -> Vec<(DateTime<Utc>, Desired)> {
        self.timeline(from, to).0
    }

    /// How long in `[from, to)` the schedules let the workload stop: the time they
    /// wish it stopped. No wish counts as running (nothing stops it).
    pub fn stopped_for(&self, from: DateTime<Utc>, to: DateTime<Utc>) -> Duration {
        let mut total = Duration::zero();
        let mut lo = from;
        // A week at a time, so that long ranges stay cheap.
        while lo < to {
            let hi = (lo + Duration::days(7)).min(to);
            let line = self.changes(lo, hi);
            for (i, (t, d)) in line.iter().enumerate() {
                let end = line.get(i + 1).map_or(hi, |(n, _)| *n);
                if d.wish == Wish::Stopped && end > *t {
                    total += end - *t;
                }
            }
            lo = hi;
        }
        total
    }

    /// What the schedules wish at `at`.
    pub fn state(&self, at: DateTime<Utc>) -> Desired {
        self.timeline(at, at).0.remove(0).1
    }

    /// The events after `from` (exclusive) up to `to` (inclusive), in order: the starts
    /// and stops that fire, and the ones that a skip date keeps from firing.
    pub fn events(&self, from: DateTime<Utc>, to: DateTime<Utc>) -> Vec<Event> {
        let (line, mut out) = self.timeline(from, to);
        for pair in line.windows(2) {
            let (before, (at, now)) = (&pair[0].1, &pair[1]);
            let Some(kind) = event_kind(before, now) else {
                continue;
            };
            let schedule = now.schedule.unwrap_or(0);
            out.push(Event {
                at: *at,
                local: self
                    .schedules
                    .get(schedule)
                    .map_or_else(|| at.naive_utc(), |s| s.zone.local(*at)),
                kind,
                profile: if kind == EventKind::Start {
                    now.profile.clone()
                } else {
                    None
                },
                schedule,
                period: now.period.unwrap_or(0),
                skipped: None,
                // An override makes an event fire when it changes the wish or who decides.
                by_override: now
                    .by_override
                    .clone()
                    .filter(|_| before.by_override != now.by_override || before.wish != now.wish),
            });
        }
        // The events that a skip date keeps from firing.
        for (si, s) in self.schedules.iter().enumerate() {
            for d in s.dates_around(from, to) {
                for (pi, p) in s.periods.iter().enumerate() {
                    for o in s.occurrences(p, d) {
                        if o.skipped.is_some() && o.at > from && o.at <= to {
                            out.push(Event {
                                at: o.at,
                                local: o.local,
                                kind: o.kind,
                                profile: p.profile.clone().filter(|_| o.kind == EventKind::Start),
                                schedule: si,
                                period: pi,
                                skipped: o.skipped,
                                by_override: None,
                            });
                        }
                    }
                }
            }
        }
        out.sort_by_key(|e| (e.at, e.skipped.is_some()));
        out
    }

    /// The next `count` events after `from` that fire, with the skipped ones met on
    /// the way, looking at most `horizon_days` ahead.
    pub fn next_events(&self, from: DateTime<Utc>, count: usize, horizon_days: i64) -> Vec<Event> {
        let mut out: Vec<Event> = Vec::new();
        let mut lo = from;
        let end = from + Duration::days(horizon_days);
        while lo < end && out.iter().filter(|e| e.skipped.is_none()).count() < count {
            let hi = (lo + Duration::days(7)).min(end);
            out.extend(self.events(lo, hi));
            lo = hi;
        }
        let mut fired = 0;
        out.retain(|e| {
            if fired >= count {
                return false;
            }
            fired += usize::from(e.skipped.is_none());
            true
        });
        out
    }
}

/// A wall time from an hour and a minute.
pub fn hm(hour: u32, minute: u32) -> Option<NaiveTime> {
    NaiveTime::from_hms_opt(hour, minute, 0)
}

#[cfg(test)]
mod tests;
