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
    /// Who asked for it (a token's name, an IAM principal, `user@host` on the
    /// command line), when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created_by: Option<String>,
}

/// The latest expiry an exemption may have: the end of year 9999, the last instant
/// RFC 3339 (and so every store and API) can write.
pub fn latest_until() -> DateTime<Utc> {
    NaiveDate::from_ymd_opt(9999, 12, 31)
        .and_then(|d| d.and_hms_opt(23, 59, 59))
        .expect("a valid date")
        .and_utc()
}

/// The end of day `d` (UTC): an expiry given as a date means through that day. The
/// last day that can be written, 9999-12-31, ends at [`latest_until`].
pub fn through_day(d: NaiveDate) -> Option<DateTime<Utc>> {
    if d == latest_until().date_naive() {
        return Some(latest_until());
    }
    d.succ_opt()
        .and_then(|next| next.and_hms_opt(0, 0, 0))
        .map(|t| t.and_utc())
}

/// The longest reason kept with an exemption, in characters.
pub const MAX_REASON_CHARS: usize = 1000;

/// Whether `id` has the shape of an EC2 instance id: `i-` and 1 to 32 lower-case
/// letters or digits (AWS's ids are 8 or 17 hexadecimal digits; simulated fleets use
/// readable ones such as `i-0web0001`).
pub fn is_instance_id(id: &str) -> bool {
    id.strip_prefix("i-").is_some_and(|rest| {
        (1..=32).contains(&rest.len())
            && rest
                .bytes()
                .all(|b| b.is_ascii_digit() || b.is_ascii_lowercase())
    })
}

/// Why an exemption cannot be stored.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ExemptionError {
    /// The instance id does not have the shape of one.
    #[error("{0:?} is not an instance id (i- followed by 1 to 32 lower-case letters or digits)")]
    InstanceId(String),
    /// The expiry is after the end of year 9999.
    #[error("the expiry {0} is too far ahead: the latest is 9999-12-31T23:59:59Z")]
    TooLate(String),
    /// The expiry is before 1970.
    #[error("the expiry {0} is before 1970")]
    TooEarly(String),
    /// The reason is too long.
    #[error("the reason is {0} characters long; at most 1000 are kept")]
    Reason(usize),
}

impl Exemption {
    /// Checks what every store requires of an exemption before writing it, so that
    /// what is written can always be read back.
    ///
    /// # Errors
    /// The first rule broken.
    pub fn check(&self) -> Result<(), ExemptionError> {
        if !is_instance_id(&self.instance_id) {
            return Err(ExemptionError::InstanceId(self.instance_id.clone()));
        }
        if let Some(u) = self.until {
            if u > latest_until() {
                return Err(ExemptionError::TooLate(u.to_rfc3339()));
            }
            if u < DateTime::<Utc>::UNIX_EPOCH {
                return Err(ExemptionError::TooEarly(u.to_rfc3339()));
            }
        }
        let n = self.reason.chars().count();
        if n > MAX_REASON_CHARS {
            return Err(ExemptionError::Reason(n));
        }
        Ok(())
    }

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

/// The forms an exemption's expiry takes everywhere (the tag, `exempt add --until`,
/// exemption files).
pub const UNTIL_FORMS: &str = "an RFC 3339 time (2026-12-01T08:00:00Z, or with an offset) or a date (2026-12-01, through that day, UTC)";

/// An expiry in one of [`UNTIL_FORMS`]: an RFC 3339 time, or a date meaning through
/// that day (UTC). `None` when it is neither, or later than [`latest_until`].
pub fn parse_until(value: &str) -> Option<DateTime<Utc>> {
    let v = value.trim();
    let t = if let Ok(t) = DateTime::parse_from_rfc3339(v) {
        t.with_timezone(&Utc)
    } else {
        through_day(NaiveDate::parse_from_str(v, "%Y-%m-%d").ok()?)?
    };
    (t <= latest_until()).then_some(t)
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
    let Some(until) = parse_until(v) else {
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
    fn exemptions_are_checked_before_they_are_stored() {
        let e = |id: &str, until: Option<&str>| Exemption {
            instance_id: id.into(),
            until: until.map(|u| u.parse().unwrap()),
            reason: String::new(),
            created_by: None,
        };
        assert_eq!(
            e("i-0abc1234", Some("9999-12-31T23:59:59Z")).check(),
            Ok(())
        );
        assert_eq!(e("i-0web0001", None).check(), Ok(()));
        let mut late = e("i-1", None);
        late.until = Some(latest_until() + chrono::TimeDelta::seconds(1));
        assert!(matches!(late.check(), Err(ExemptionError::TooLate(_))));
        for bad in [
            "i-",
            "i-'; drop",
            "I-1",
            "i-ABC",
            "x-1",
            &format!("i-{}", "a".repeat(33)),
        ] {
            assert!(e(bad, None).check().is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn stored_exemptions_expire() {
        let mut e = Exemption {
            instance_id: "i-1".into(),
            until: None,
            reason: "demo".into(),
            created_by: None,
        };
        assert!(e.active(now()));
        e.until = Some("2026-11-26T12:00:00Z".parse().unwrap());
        assert!(!e.active(now()));
        e.until = Some("2026-11-26T12:00:01Z".parse().unwrap());
        assert!(e.active(now()));
    }
}
