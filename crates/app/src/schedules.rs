//! Schedules: what a workload's schedules wish at an instant, and their next events.

use std::path::Path;

use chrono::{DateTime, FixedOffset, Utc};
use ec2_scheduler_config::Source;
use ec2_scheduler_core::Workload;
use ec2_scheduler_core::overrides::{Change, Override};
use ec2_scheduler_core::schedule::{Desired, Event, EventKind, Schedule, Timetable, Wish};
use serde::Serialize;

use crate::env::{App, new_id};
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

/// A calendar from an iCalendar (`.ics`) file, as the `calendars` part of a workload
/// file (YAML).
///
/// # Errors
/// A file that cannot be read, is not iCalendar, or has events that cannot be skip
/// dates.
pub fn import_ics(path: &Path, name: &str) -> Result<String> {
    let text = read_text(path, ec2_scheduler_config::MAX_SOURCE_BYTES as u64)?;
    let source = path.display().to_string();
    let calendar = ec2_scheduler_config::schedules::calendar_from_ics(
        Source {
            name: &source,
            text: &text,
        },
        name,
    )?;
    #[derive(Serialize)]
    struct Doc {
        calendars: Vec<ec2_scheduler_config::schedules::CalendarDoc>,
    }
    serde_yaml_ng::to_string(&Doc {
        calendars: vec![calendar],
    })
    .map_err(|e| Error::Invalid(format!("cannot write the calendar: {e}")))
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
    /// The override that decides instead, when one does.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub by_override: Option<String>,
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
    /// The override that makes it fire, when one does.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub by_override: Option<String>,
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

/// What `schedules` wish at `at`, overrides applied. Without schedules there is no
/// wish.
pub fn state(schedules: &[Schedule], overrides: &[Override], at: DateTime<Utc>) -> State {
    let Desired {
        wish,
        profile,
        schedule,
        period,
        since,
        by_override,
    } = Timetable::new(schedules)
        .with_overrides(overrides)
        .state(at);
    let (schedule_name, period_name) = names(schedules, schedule, period);
    State {
        at: shown(schedules, schedule, at),
        wish,
        profile,
        schedule: schedule_name,
        period: period_name,
        since: since.map(|t| shown(schedules, schedule, t)),
        by_override,
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
        by_override: e.by_override,
    }
}

/// The next `count` events after `from` that fire, with the ones skip dates keep from
/// firing met on the way.
///
/// # Errors
/// [`Error::Invalid`] when `count` is 0 or more than [`MAX_EVENTS`].
pub fn next(
    schedules: &[Schedule],
    overrides: &[Override],
    from: DateTime<Utc>,
    count: usize,
) -> Result<Vec<NextEvent>> {
    if count == 0 || count > MAX_EVENTS {
        return Err(Error::Invalid(format!(
            "--count must be from 1 to {MAX_EVENTS}, found {count}"
        )));
    }
    Ok(Timetable::new(schedules)
        .with_overrides(overrides)
        .next_events(from, count, HORIZON_DAYS)
        .into_iter()
        .map(|e| report(schedules, e))
        .collect())
}

/// A one-off change to ask for; the instants it changes are fixed when it is made.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OverrideRequest {
    /// Skip the next start or stop.
    SkipNext(EventKind),
    /// Move the next stop to a later time.
    PostponeNextStop { until: DateTime<Utc> },
    /// Keep running (starting it if stopped) until a time.
    KeepRunning { until: DateTime<Utc> },
    /// Keep stopped (stopping it if running) until a time.
    KeepStopped { until: DateTime<Utc> },
}

/// How long expired overrides are kept (they still explain past events).
pub const OVERRIDE_KEPT_DAYS: i64 = 8;

impl App {
    /// Adds an override to `workload`'s schedules, as asked by `by`.
    ///
    /// # Errors
    /// [`Error::Invalid`] when the workload has no schedules, no such event comes
    /// within [`HORIZON_DAYS`], or a time is not after the event or now.
    pub async fn add_override(
        &self,
        workload: &Workload,
        request: OverrideRequest,
        by: &str,
        reason: &str,
        now: DateTime<Utc>,
    ) -> Result<Override> {
        let name = workload.name.as_str();
        if workload.schedules.is_empty() {
            return Err(Error::Invalid(format!(
                "workload {name} has no schedules: there is nothing to override"
            )));
        }
        let existing = self.store.overrides(Some(name)).await?;
        let next_of = |kind: EventKind| {
            Timetable::new(&workload.schedules)
                .with_overrides(&existing)
                .next_events(now, 64, HORIZON_DAYS)
                .into_iter()
                .find(|e| e.skipped.is_none() && e.kind == kind)
                .ok_or_else(|| {
                    Error::Invalid(format!(
                        "workload {name} has no {kind} in the next {HORIZON_DAYS} days"
                    ))
                })
        };
        let after_now = |until: DateTime<Utc>| {
            if until <= now {
                Err(Error::Invalid(format!(
                    "{} is not in the future",
                    until.to_rfc3339()
                )))
            } else {
                Ok(until)
            }
        };
        let change = match request {
            OverrideRequest::SkipNext(kind) => Change::SkipNext {
                action: kind,
                at: next_of(kind)?.at,
            },
            OverrideRequest::PostponeNextStop { until } => {
                let stop = next_of(EventKind::Stop)?;
                if until <= stop.at {
                    return Err(Error::Invalid(format!(
                        "--until {} is not after the next stop ({}): a postponed stop happens later",
                        until.to_rfc3339(),
                        stop.at.to_rfc3339()
                    )));
                }
                Change::PostponeStop { at: stop.at, until }
            }
            OverrideRequest::KeepRunning { until } => Change::KeepRunning {
                until: after_now(until)?,
            },
            OverrideRequest::KeepStopped { until } => Change::KeepStopped {
                until: after_now(until)?,
            },
        };
        if reason.len() > 1024 {
            return Err(Error::Invalid(
                "the reason is longer than 1024 bytes".to_string(),
            ));
        }
        let o = Override {
            id: new_id("ovr", now),
            workload: name.to_string(),
            change,
            created_at: now,
            created_by: by.to_string(),
            reason: reason.to_string(),
        };
        self.store.add_override(&o).await?;
        // Overrides long expired only explain old events: let them go.
        for old in existing {
            if old.expires() < now - chrono::Duration::days(OVERRIDE_KEPT_DAYS) {
                self.store.remove_override(&old.id).await?;
            }
        }
        Ok(o)
    }

    /// Overrides of one workload or all, with the expired ones when `expired`.
    ///
    /// # Errors
    /// The store's.
    pub async fn overrides(
        &self,
        workload: Option<&str>,
        expired: bool,
        now: DateTime<Utc>,
    ) -> Result<Vec<Override>> {
        let mut all = self.store.overrides(workload).await?;
        if !expired {
            all.retain(|o| !o.expired(now));
        }
        Ok(all)
    }

    /// What became of recorded events (fired, skipped, missed, failed), newest first.
    ///
    /// # Errors
    /// The store's.
    pub async fn event_records(
        &self,
        workload: Option<&str>,
        limit: usize,
    ) -> Result<Vec<ec2_scheduler_engine::ports::EventRecord>> {
        Ok(self.store.event_records(workload, limit).await?)
    }

    /// Removes an override.
    ///
    /// # Errors
    /// [`Error::NotFound`] when no override has this id.
    pub async fn remove_override(&self, id: &str) -> Result<()> {
        if self.store.remove_override(id).await? {
            Ok(())
        } else {
            Err(Error::NotFound(format!("no override has id {id:?}")))
        }
    }
}
