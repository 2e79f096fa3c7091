//! Schedules: what a workload's schedules wish at an instant, and their next events.

use std::path::Path;

use chrono::{DateTime, FixedOffset, Utc};
use ec2_scheduler_config::Source;
use ec2_scheduler_core::schedule::{Desired, Event, Schedule, Timetable, Wish};
use serde::Serialize;

use crate::error::{Error, Result};
use crate::files::read_text;

/// How far ahead `next` looks for events: a little over a year, so that a period on
/// one day a year is found.
pub const HORIZON_DAYS: i64 = 400;

/// The most events `next` lists.
pub const MAX_EVENTS: usize = 1000;

/// The one schedule of a schedule file.
///
/// # Errors
/// A file that cannot be read, or every error in it.
pub fn read_schedule(path: &Path) -> Result<Schedule> {
    let text = read_text(path, ec2_scheduler_config::MAX_SOURCE_BYTES as u64)?;
    let name = path.display().to_string();
    Ok(ec2_scheduler_config::schedule_document(Source {
        name: &name,
        text: &text,
    })?)
}

/// What the schedules wish at an instant.
#[derive(Debug, Clone, Serialize)]
pub struct State {
    pub at: DateTime<FixedOffset>,
    pub wish: Wish,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub profile: Option<String>,
    /// The schedule and period that decide, when one does.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub schedule: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub period: Option<String>,
    /// When the deciding period's last event fired.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub since: Option<DateTime<FixedOffset>>,
}

/// An event, with its instant in its schedule's time zone.
#[derive(Debug, Clone, Serialize)]
pub struct NextEvent {
    pub at: DateTime<FixedOffset>,
    pub action: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub profile: Option<String>,
    pub schedule: String,
    pub timezone: String,
    pub period: String,
    /// Why it does not fire, when it does not.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub skipped: Option<String>,
}

fn names(
    schedules: &[Schedule],
    schedule: Option<usize>,
    period: Option<usize>,
) -> (Option<String>, Option<String>) {
    let s = schedule.and_then(|i| schedules.get(i));
    let p = s
        .zip(period)
        .and_then(|(s, k)| s.periods.get(k).map(|p| p.label(k)));
    (s.map(|s| s.name.clone()), p)
}

/// The zone a result is shown in: the deciding schedule's, else the first's, else UTC.
fn shown(
    schedules: &[Schedule],
    schedule: Option<usize>,
    at: DateTime<Utc>,
) -> DateTime<FixedOffset> {
    match schedule.or((!schedules.is_empty()).then_some(0)) {
        Some(i) => schedules[i].zone.fixed(at),
        None => at.fixed_offset(),
    }
}

/// What `schedules` wish at `at`. Without schedules there is no wish.
pub fn state(schedules: &[Schedule], at: DateTime<Utc>) -> State {
    let Desired {
        wish,
        profile,
        schedule,
        period,
        since,
    } = Timetable::new(schedules).state(at);
    let (schedule_name, period_name) = names(schedules, schedule, period);
    State {
        at: shown(schedules, schedule, at),
        wish,
        profile,
        schedule: schedule_name,
        period: period_name,
        since: since.map(|t| shown(schedules, schedule, t)),
    }
}

fn report(schedules: &[Schedule], e: Event) -> NextEvent {
    let s = &schedules[e.schedule];
    NextEvent {
        at: s.zone.fixed(e.at),
        action: e.kind.as_str(),
        profile: e.profile,
        schedule: s.name.clone(),
        timezone: s.zone.name().to_string(),
        period: s
            .periods
            .get(e.period)
            .map_or_else(|| format!("period {}", e.period + 1), |p| p.label(e.period)),
        skipped: e.skipped.map(|why| why.to_string()),
    }
}

/// The next `count` events after `from` that fire, with the ones skip dates keep from
/// firing met on the way.
///
/// # Errors
/// [`Error::Invalid`] when `count` is 0 or more than [`MAX_EVENTS`].
pub fn next(schedules: &[Schedule], from: DateTime<Utc>, count: usize) -> Result<Vec<NextEvent>> {
    if count == 0 || count > MAX_EVENTS {
        return Err(Error::Invalid(format!(
            "--count must be from 1 to {MAX_EVENTS}, found {count}"
        )));
    }
    Ok(Timetable::new(schedules)
        .next_events(from, count, HORIZON_DAYS)
        .into_iter()
        .map(|e| report(schedules, e))
        .collect())
}
