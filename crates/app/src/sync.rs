//! Keeps a deployment's one-time schedules (EventBridge Scheduler) in step with the
//! workloads' schedules. Each workload's next events come from the same evaluator as
//! `serve` and `schedule next` ([`schedules::next`]), so the instants agree,
//! daylight-saving changes and holidays included. An event is one schedule, named
//! after the workload, the action and the instant: an event that moves is a new
//! name, so syncing creates the new schedule and deletes the old one.

use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, Utc};
use ec2_scheduler_core::Workload;
use ec2_scheduler_engine::ports::{EventSchedules, OneTime};
use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::env::App;
use crate::error::{Error, Result};
use crate::schedules::{self, NextEvent};

/// How many of its next events each workload keeps scheduled.
pub const AHEAD: usize = 4;

/// What a sync changed.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Synced {
    pub created: Vec<String>,
    pub deleted: Vec<String>,
    /// Schedules that were already right.
    pub kept: usize,
    /// Workloads that could not be synced, with why: the others were.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub failed: Vec<(String, String)>,
}

/// The names of every schedule this tool makes begin with this.
pub const PREFIX: &str = "e-";

/// The prefix of `workload`'s schedules: `e-` and 12 hex digits of its name's hash
/// (names are at most 64 characters of `[0-9A-Za-z-_.]`; workload names are free).
pub fn prefix(workload: &str) -> String {
    let digest = Sha256::digest(workload.as_bytes());
    let hex: String = digest[..6].iter().map(|b| format!("{b:02x}")).collect();
    format!("{PREFIX}{hex}-")
}

/// Letters, digits, `-` and `_` of `s`, at most `max` of them.
fn safe(s: &str, max: usize) -> String {
    s.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .take(max)
        .collect()
}

/// The one-time schedule of `workload`'s event `e`.
pub fn one_time(workload: &str, e: &NextEvent) -> OneTime {
    let at: DateTime<Utc> = e.at.with_timezone(&Utc);
    let instant = at.format("%Y%m%dT%H%M%SZ").to_string();
    let name = format!("{}{}-{instant}", prefix(workload), e.action);
    OneTime {
        execution: format!(
            "{}-{}-{}-{instant}",
            safe(workload, 40),
            &prefix(workload)[PREFIX.len()..PREFIX.len() + 6],
            e.action
        ),
        input: serde_json::json!({
            "workload": workload,
            "action": e.action,
            "at": at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        })
        .to_string(),
        utc: at.format("%Y-%m-%dT%H:%M:%S").to_string(),
        name,
    }
}

impl App {
    /// The one-time schedules `w` should have after `now`: one per next event that
    /// fires, up to [`AHEAD`].
    ///
    /// # Errors
    /// The store's.
    pub async fn wanted_schedules(&self, w: &Workload, now: DateTime<Utc>) -> Result<Vec<OneTime>> {
        if w.schedules.is_empty() {
            return Ok(Vec::new());
        }
        let overrides = self.store.overrides(Some(w.name.as_str())).await?;
        Ok(schedules::next(&w.schedules, &overrides, now, AHEAD)?
            .iter()
            .filter(|e| e.skipped.is_none())
            .map(|e| one_time(w.name.as_str(), e))
            .collect())
    }

    /// Brings the group's schedules in step: of the workload `only` (a workload that
    /// no longer exists loses its schedules), or of every workload (and schedules of
    /// workloads that no longer exist are deleted). Each workload is synced on its
    /// own: one that cannot be read or whose schedules cannot be written is reported
    /// in [`Synced::failed`] (its schedules are left as they are) and the others are
    /// synced. A concurrent sync is no error: a schedule it created first is kept, one
    /// it deleted first is gone.
    ///
    /// # Errors
    /// The store's (when the workloads cannot be listed) and the scheduler's (when
    /// the group cannot be listed).
    pub async fn sync_schedules(
        &self,
        target: &dyn EventSchedules,
        only: Option<&str>,
        now: DateTime<Utc>,
    ) -> Result<Synced> {
        let names = match only {
            Some(name) => vec![name.to_string()],
            None => self.store.workload_names().await?,
        };
        let mut out = Synced::default();
        let scope = only.map_or_else(|| PREFIX.to_string(), prefix);
        let existing: BTreeSet<String> = target.names(&scope).await?.into_iter().collect();
        // Schedules of workloads that failed are neither created nor deleted.
        let mut untouched: Vec<String> = Vec::new();
        // Schedule name -> (its workload, the schedule).
        let mut wanted: BTreeMap<String, (&str, OneTime)> = BTreeMap::new();
        for name in &names {
            let found = match self.stored_workload(name).await {
                Ok(w) => self.wanted_schedules(&w, now).await.map(Some),
                Err(Error::NotFound(_)) => Ok(None),
                Err(e) => Err(e),
            };
            match found {
                Ok(schedules) => {
                    for s in schedules.into_iter().flatten() {
                        wanted.insert(s.name.clone(), (name.as_str(), s));
                    }
                }
                Err(e) => {
                    tracing::warn!(workload = %name, error = %e, "schedules not synced");
                    untouched.push(prefix(name));
                    out.failed.push((name.clone(), e.to_string()));
                }
            }
        }
        for (name, (workload, s)) in &wanted {
            if existing.contains(name) {
                out.kept += 1;
                continue;
            }
            match target.create(s).await {
                Ok(()) => out.created.push(name.clone()),
                Err(e) => out
                    .failed
                    .push((workload.to_string(), format!("{name}: {e}"))),
            }
        }
        for name in existing.iter().filter(|n| !wanted.contains_key(*n)) {
            if untouched.iter().any(|p| name.starts_with(p.as_str())) {
                continue;
            }
            match target.delete(name).await {
                Ok(()) => out.deleted.push(name.clone()),
                Err(e) => out.failed.push((name.clone(), e.to_string())),
            }
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_fit_eventbridge_and_step_functions() {
        let e = NextEvent {
            at: "2026-03-29T07:30:00+02:00".parse().unwrap(),
            action: "start",
            profile: None,
            schedule: "office".into(),
            timezone: "Europe/Berlin".into(),
            period: "office-hours".into(),
            skipped: None,
            by_override: None,
        };
        let long = "a workload/with spaces and a very long name that goes on and on and on";
        let s = one_time(long, &e);
        assert!(s.name.len() <= 64, "{}", s.name);
        assert!(
            s.name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
        );
        assert!(s.name.starts_with(&prefix(long)));
        assert!(s.name.ends_with("-start-20260329T053000Z"), "{}", s.name);
        assert!(s.execution.len() <= 80, "{}", s.execution);
        assert!(
            s.execution
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "-_".contains(c))
        );
        assert_eq!(s.utc, "2026-03-29T05:30:00");
        let input: serde_json::Value = serde_json::from_str(&s.input).unwrap();
        assert_eq!(
            input,
            serde_json::json!({"workload": long, "action": "start", "at": "2026-03-29T05:30:00Z"})
        );
        // Another workload whose safe name is the same has other names.
        let twin = one_time(
            "a workload/with spaces and a very long name that goes on and on and ON",
            &e,
        );
        assert_ne!(twin.name, s.name);
        assert_ne!(twin.execution, s.execution);
    }
}
