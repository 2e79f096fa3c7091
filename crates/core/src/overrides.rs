//! One-off changes to a workload's schedule that expire by themselves: skip the next
//! start or stop, postpone the next stop, keep running (or stopped) until a time.
//!
//! An override names the instants it changes, fixed when it is made (the next stop
//! *at 18:00 today*), so it means the same thing to every process that reads it and
//! expires once they have passed.

use std::fmt;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::schedule::EventKind;

/// A one-off change, with who asked for it, when and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Override {
    pub id: String,
    pub workload: String,
    pub change: Change,
    pub created_at: DateTime<Utc>,
    pub created_by: String,
    pub reason: String,
}

/// What an override changes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Change {
    /// The event of this kind at `at` does not fire; the state carries over.
    SkipNext {
        action: EventKind,
        at: DateTime<Utc>,
    },
    /// The stop at `at` happens at `until` instead.
    PostponeStop {
        at: DateTime<Utc>,
        until: DateTime<Utc>,
    },
    /// Running from when it was made until `until`: no stop fires before, and a
    /// stopped workload is started.
    KeepRunning { until: DateTime<Utc> },
    /// Stopped from when it was made until `until`: no start fires before, and a
    /// running workload is stopped.
    KeepStopped { until: DateTime<Utc> },
}

impl Override {
    /// When the override stops mattering.
    pub fn expires(&self) -> DateTime<Utc> {
        match self.change {
            Change::SkipNext { at, .. } => at,
            Change::PostponeStop { until, .. }
            | Change::KeepRunning { until }
            | Change::KeepStopped { until } => until,
        }
    }

    /// The first instant the override changes.
    pub fn begins(&self) -> DateTime<Utc> {
        match self.change {
            Change::SkipNext { at, .. } | Change::PostponeStop { at, .. } => at,
            Change::KeepRunning { .. } | Change::KeepStopped { .. } => self.created_at,
        }
    }

    /// Whether it has expired at `now`.
    pub fn expired(&self, now: DateTime<Utc>) -> bool {
        self.expires() < now
    }
}

impl fmt::Display for Change {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let t = |t: &DateTime<Utc>| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
        match self {
            Change::SkipNext { action, at } => write!(f, "skip the {action} at {}", t(at)),
            Change::PostponeStop { at, until } => {
                write!(f, "postpone the stop at {} to {}", t(at), t(until))
            }
            Change::KeepRunning { until } => write!(f, "keep running until {}", t(until)),
            Change::KeepStopped { until } => write!(f, "keep stopped until {}", t(until)),
        }
    }
}

impl fmt::Display for Override {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "override {}: {} (by {}: {})",
            self.id, self.change, self.created_by, self.reason
        )
    }
}
