//! Exemptions: instances that must not be stopped.
//!
//! Two sources are decided here, without I/O: the exemption tag on the instance and
//! exemptions recorded in a store (set through the CLI or API). The SSM override-file
//! probe happens at run time and is the engine's business.
//!
//! The rules are pessimistic: when a tag value cannot be understood, the instance is
//! treated as exempt and a warning says why.

use chrono::{DateTime, NaiveDate, Utc};
use serde::{Deserialize, Serialize};

/// An exemption recorded in a store, optionally expiring.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Exemption {
    pub instance_id: String,
    /// `None`: until removed.
    #[serde(default)]
    pub until: Option<DateTime<Utc>>,
    #[serde(default)]
    pub reason: String,
}

impl Exemption {
    /// Whether this exemption is in force at `now`.
    pub fn active(&self, now: DateTime<Utc>) -> bool {
        self.until.is_none_or(|until| until > now)
    }
}

/// What an exemption tag's value means at a given time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TagExemption {
    /// The value is `false`, or an expiry in the past.
    NotExempt,
    /// Exempt: the value is empty or `true` (`until` is `None`), or an expiry in the
    /// future.
    Exempt { until: Option<DateTime<Utc>> },
    /// The value cannot be understood; the instance is kept running to be safe.
    Unparsable,
}

/// Reads an exemption tag value.
///
/// Accepted: empty or `true` (exempt until the tag is removed), `false` (not exempt),
/// an RFC 3339 timestamp (exempt until then), or a date `YYYY-MM-DD` (exempt through
/// the end of that day, UTC). Anything else is [`TagExemption::Unparsable`], which
/// callers must treat as exempt.
pub fn read_tag(value: &str, now: DateTime<Utc>) -> TagExemption {
    let v = value.trim();
    if v.is_empty() || v.eq_ignore_ascii_case("true") {
        return TagExemption::Exempt { until: None };
    }
    if v.eq_ignore_ascii_case("false") {
        return TagExemption::NotExempt;
    }
    let until = if let Ok(t) = DateTime::parse_from_rfc3339(v) {
        t.with_timezone(&Utc)
    } else if let Ok(d) = NaiveDate::parse_from_str(v, "%Y-%m-%d") {
        match d.succ_opt().and_then(|next| next.and_hms_opt(0, 0, 0)) {
            Some(midnight) => midnight.and_utc(),
            None => return TagExemption::Unparsable,
        }
    } else {
        return TagExemption::Unparsable;
    };
    if until > now {
        TagExemption::Exempt { until: Some(until) }
    } else {
        TagExemption::NotExempt
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn now() -> DateTime<Utc> {
        "2026-11-26T12:00:00Z".parse().unwrap()
    }

    #[test]
    fn tag_values() {
        assert_eq!(read_tag("", now()), TagExemption::Exempt { until: None });
        assert_eq!(
            read_tag("TRUE", now()),
            TagExemption::Exempt { until: None }
        );
        assert_eq!(read_tag("false", now()), TagExemption::NotExempt);
        assert_eq!(
            read_tag("2026-11-27T00:00:00+01:00", now()),
            TagExemption::Exempt {
                until: Some("2026-11-26T23:00:00Z".parse().unwrap())
            }
        );
        assert_eq!(
            read_tag("2026-11-26T11:59:59Z", now()),
            TagExemption::NotExempt
        );
        assert_eq!(
            read_tag("2026-11-26", now()),
            TagExemption::Exempt {
                until: Some("2026-11-27T00:00:00Z".parse().unwrap())
            }
        );
        assert_eq!(read_tag("2026-11-25", now()), TagExemption::NotExempt);
        assert_eq!(read_tag("next tuesday", now()), TagExemption::Unparsable);
        assert_eq!(read_tag("2026-13-45", now()), TagExemption::Unparsable);
    }

    #[test]
    fn stored_exemptions_expire() {
        let mut e = Exemption {
            instance_id: "i-1".into(),
            until: None,
            reason: "demo".into(),
        };
        assert!(e.active(now()));
        e.until = Some("2026-11-26T12:00:00Z".parse().unwrap());
        assert!(!e.active(now()));
        e.until = Some("2026-11-26T12:00:01Z".parse().unwrap());
        assert!(e.active(now()));
    }
}
