//! A schedule's time zone: local wall times to instants and back, with the daylight
//! saving rules of schedules.
//!
//! The zone's rules are an input ([`jiff::tz::TimeZone`], built by the caller from an
//! IANA name); nothing here reads a clock or a file.

use std::fmt;

use chrono::{DateTime, FixedOffset, NaiveDate, NaiveDateTime, NaiveTime, Timelike, Utc};
use jiff::tz::{AmbiguousOffset, TimeZone};

/// An IANA time zone with its rules.
#[derive(Clone)]
pub struct Zone {
    name: String,
    tz: TimeZone,
}

impl fmt::Debug for Zone {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("Zone").field(&self.name).finish()
    }
}

impl serde::Serialize for Zone {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.name)
    }
}

impl PartialEq for Zone {
    fn eq(&self, other: &Self) -> bool {
        self.name == other.name
    }
}

impl Eq for Zone {}

impl Zone {
    /// A zone named `name` whose rules are `tz`.
    pub fn new(name: impl Into<String>, tz: TimeZone) -> Zone {
        Zone {
            name: name.into(),
            tz,
        }
    }

    /// Coordinated Universal Time.
    pub fn utc() -> Zone {
        Zone::new("UTC", TimeZone::UTC)
    }

    /// The IANA name, as written.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The instant at which a local wall time takes effect.
    ///
    /// A wall time that does not exist that day (clocks spring forward over it) takes
    /// effect at the first instant after the gap, the moment the clocks jump. A wall
    /// time that happens twice (clocks fall back) takes effect at its first
    /// occurrence.
    pub fn instant(&self, local: NaiveDateTime) -> DateTime<Utc> {
        let Some(civil) = to_civil(local) else {
            return local.and_utc();
        };
        let ambiguous = self.tz.to_ambiguous_timestamp(civil);
        let ts = match ambiguous.offset() {
            AmbiguousOffset::Unambiguous { offset } => offset.to_timestamp(civil),
            AmbiguousOffset::Fold { before, .. } => before.to_timestamp(civil),
            AmbiguousOffset::Gap { before, .. } => before
                .to_timestamp(civil)
                .ok()
                .and_then(|late| late.checked_add(jiff::SignedDuration::from_nanos(1)).ok())
                .and_then(|late| self.tz.preceding(late).next())
                .map(|t| Ok(t.timestamp()))
                .unwrap_or_else(|| before.to_timestamp(civil)),
        };
        ts.ok()
            .and_then(|ts| DateTime::from_timestamp(ts.as_second(), ts.subsec_nanosecond() as u32))
            .unwrap_or_else(|| local.and_utc())
    }

    /// The local wall time at an instant.
    pub fn local(&self, at: DateTime<Utc>) -> NaiveDateTime {
        let Ok(ts) = jiff::Timestamp::new(at.timestamp(), at.timestamp_subsec_nanos() as i32)
        else {
            return at.naive_utc();
        };
        from_civil(self.tz.to_datetime(ts)).unwrap_or_else(|| at.naive_utc())
    }

    /// The local date at an instant.
    pub fn date(&self, at: DateTime<Utc>) -> NaiveDate {
        self.local(at).date()
    }

    /// The instant with the zone's offset at that instant, for RFC 3339 output.
    pub fn fixed(&self, at: DateTime<Utc>) -> DateTime<FixedOffset> {
        let offset = self.local(at) - at.naive_utc();
        let secs = i32::try_from(offset.num_seconds()).unwrap_or(0);
        let fixed =
            FixedOffset::east_opt(secs).unwrap_or_else(|| FixedOffset::east_opt(0).unwrap());
        at.with_timezone(&fixed)
    }

    /// The first instant of a local date (midnight, or the end of a gap over it).
    pub fn start_of(&self, date: NaiveDate) -> DateTime<Utc> {
        self.instant(date.and_time(NaiveTime::MIN))
    }
}

fn to_civil(local: NaiveDateTime) -> Option<jiff::civil::DateTime> {
    use chrono::Datelike;
    jiff::civil::DateTime::new(
        i16::try_from(local.year()).ok()?,
        local.month() as i8,
        local.day() as i8,
        local.hour() as i8,
        local.minute() as i8,
        local.second() as i8,
        local.nanosecond().min(999_999_999) as i32,
    )
    .ok()
}

fn from_civil(dt: jiff::civil::DateTime) -> Option<NaiveDateTime> {
    let date = NaiveDate::from_ymd_opt(
        i32::from(dt.year()),
        u32::try_from(dt.month()).ok()?,
        u32::try_from(dt.day()).ok()?,
    )?;
    let time = NaiveTime::from_hms_nano_opt(
        u32::try_from(dt.hour()).ok()?,
        u32::try_from(dt.minute()).ok()?,
        u32::try_from(dt.second()).ok()?,
        u32::try_from(dt.subsec_nanosecond()).ok()?,
    )?;
    Some(date.and_time(time))
}

#[cfg(test)]
pub(crate) fn zone(name: &str) -> Zone {
    Zone::new(
        name,
        TimeZone::get(name).expect("a zone of the bundled database"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn local(s: &str) -> NaiveDateTime {
        NaiveDateTime::parse_from_str(s, "%Y-%m-%d %H:%M").unwrap()
    }

    fn at(z: &Zone, s: &str) -> String {
        z.fixed(z.instant(local(s))).to_rfc3339()
    }

    #[test]
    fn gaps_take_effect_when_the_clocks_jump() {
        let berlin = zone("Europe/Berlin");
        assert_eq!(at(&berlin, "2026-03-29 02:30"), "2026-03-29T03:00:00+02:00");
        assert_eq!(at(&berlin, "2026-03-29 02:00"), "2026-03-29T03:00:00+02:00");
        assert_eq!(at(&berlin, "2026-03-29 03:00"), "2026-03-29T03:00:00+02:00");
        assert_eq!(at(&berlin, "2026-03-29 01:59"), "2026-03-29T01:59:00+01:00");
        let ny = zone("America/New_York");
        assert_eq!(at(&ny, "2026-03-08 02:15"), "2026-03-08T03:00:00-04:00");
        let sydney = zone("Australia/Sydney");
        assert_eq!(at(&sydney, "2026-10-04 02:45"), "2026-10-04T03:00:00+11:00");
    }

    #[test]
    fn folds_take_the_first_occurrence() {
        let berlin = zone("Europe/Berlin");
        assert_eq!(at(&berlin, "2026-10-25 02:30"), "2026-10-25T02:30:00+02:00");
        let ny = zone("America/New_York");
        assert_eq!(at(&ny, "2026-11-01 01:30"), "2026-11-01T01:30:00-04:00");
        let sydney = zone("Australia/Sydney");
        assert_eq!(at(&sydney, "2026-04-05 02:30"), "2026-04-05T02:30:00+11:00");
        let kolkata = zone("Asia/Kolkata");
        assert_eq!(
            at(&kolkata, "2026-03-29 02:30"),
            "2026-03-29T02:30:00+05:30"
        );
    }

    #[test]
    fn local_is_the_inverse_outside_gaps() {
        let berlin = zone("Europe/Berlin");
        for s in ["2026-01-01 00:00", "2026-07-01 12:34", "2026-10-25 01:59"] {
            assert_eq!(berlin.local(berlin.instant(local(s))), local(s));
        }
        assert_eq!(berlin.name(), "Europe/Berlin");
        assert_eq!(
            Zone::utc().local(local("2026-05-05 05:05").and_utc()),
            local("2026-05-05 05:05")
        );
    }
}
