//! Which local dates a schedule's period applies to: day filters by weekday (every,
//! the n-th of the month, the last of the month), by day of the month (a day, the
//! last day, the weekday nearest a day) and by month.
//!
//! A date matches a [`DayFilter`] when every filter that is given matches it (AND
//! across filters), and a filter matches when any of its entries does (OR within
//! one). An entry that names a day a month does not have never matches that month:
//! a 5th Thursday, day 31 of a 30-day month, `31W` in February.

use std::fmt;
use std::str::FromStr;

use chrono::{Datelike, NaiveDate, Weekday};

/// A weekday entry: every such day, the n-th of the month (1 to 5), or the last.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WeekdaySpec {
    Every(Weekday),
    Nth(Weekday, u8),
    Last(Weekday),
}

/// A day-of-month entry: a day (1 to 31), the last day, or the weekday (Monday to
/// Friday) nearest to a day within the same month.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MonthDaySpec {
    Day(u8),
    Last,
    NearestWeekday(u8),
}

/// Day filters; an empty list does not filter.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct DayFilter {
    pub weekdays: Vec<WeekdaySpec>,
    pub monthdays: Vec<MonthDaySpec>,
    /// 1 to 12.
    pub months: Vec<u8>,
}

/// The number of days of the month of `d`.
pub fn days_in_month(d: NaiveDate) -> u32 {
    let (y, m) = (d.year(), d.month());
    let next = if m == 12 {
        NaiveDate::from_ymd_opt(y + 1, 1, 1)
    } else {
        NaiveDate::from_ymd_opt(y, m + 1, 1)
    };
    next.and_then(|n| n.pred_opt())
        .map_or(31, |last| last.day())
}

fn is_weekend(w: Weekday) -> bool {
    matches!(w, Weekday::Sat | Weekday::Sun)
}

impl WeekdaySpec {
    pub fn matches(self, d: NaiveDate) -> bool {
        match self {
            WeekdaySpec::Every(w) => d.weekday() == w,
            WeekdaySpec::Nth(w, n) => d.weekday() == w && (d.day() - 1) / 7 + 1 == u32::from(n),
            WeekdaySpec::Last(w) => d.weekday() == w && d.day() + 7 > days_in_month(d),
        }
    }
}

impl MonthDaySpec {
    pub fn matches(self, d: NaiveDate) -> bool {
        let len = days_in_month(d);
        match self {
            MonthDaySpec::Day(n) => d.day() == u32::from(n),
            MonthDaySpec::Last => d.day() == len,
            MonthDaySpec::NearestWeekday(n) => {
                let n = u32::from(n);
                if n == 0 || n > len {
                    return false;
                }
                let Some(target) = d.with_day(n) else {
                    return false;
                };
                // Saturday: the Friday before, or the Monday after on the 1st.
                // Sunday: the Monday after, or the Friday before on the last day.
                let nearest = match target.weekday() {
                    Weekday::Sat if n == 1 => n + 2,
                    Weekday::Sat => n - 1,
                    Weekday::Sun if n == len => n - 2,
                    Weekday::Sun => n + 1,
                    _ => n,
                };
                d.day() == nearest && !is_weekend(d.weekday())
            }
        }
    }
}

impl DayFilter {
    /// Whether the filters let `d` through.
    pub fn matches(&self, d: NaiveDate) -> bool {
        (self.weekdays.is_empty() || self.weekdays.iter().any(|w| w.matches(d)))
            && (self.monthdays.is_empty() || self.monthdays.iter().any(|m| m.matches(d)))
            && (self.months.is_empty() || self.months.contains(&(d.month() as u8)))
    }
}

/// A day entry that cannot be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{text:?}: {expected}")]
pub struct DayError {
    pub text: String,
    pub expected: &'static str,
}

fn weekday(s: &str) -> Option<Weekday> {
    Some(match s.to_ascii_lowercase().as_str() {
        "mon" | "monday" => Weekday::Mon,
        "tue" | "tuesday" => Weekday::Tue,
        "wed" | "wednesday" => Weekday::Wed,
        "thu" | "thursday" => Weekday::Thu,
        "fri" | "friday" => Weekday::Fri,
        "sat" | "saturday" => Weekday::Sat,
        "sun" | "sunday" => Weekday::Sun,
        _ => return None,
    })
}

impl FromStr for WeekdaySpec {
    type Err = DayError;

    /// `mon`, `monday`; `mon#2` (the second Monday, 1 to 5); `mon#L` (the last).
    fn from_str(s: &str) -> Result<Self, DayError> {
        let err = || DayError {
            text: s.to_string(),
            expected: "a weekday (mon or monday), the n-th of the month (mon#1 to mon#5) or the last (mon#L)",
        };
        let (day, which) = match s.split_once('#') {
            Some((d, w)) => (d, Some(w)),
            None => (s, None),
        };
        let w = weekday(day.trim()).ok_or_else(err)?;
        match which.map(str::trim) {
            None => Ok(WeekdaySpec::Every(w)),
            Some("L" | "l") => Ok(WeekdaySpec::Last(w)),
            Some(n) => match n.parse::<u8>() {
                Ok(n @ 1..=5) => Ok(WeekdaySpec::Nth(w, n)),
                _ => Err(err()),
            },
        }
    }
}

impl FromStr for MonthDaySpec {
    type Err = DayError;

    /// `15`, `L` (the last day), `15W` (the weekday nearest the 15th).
    fn from_str(s: &str) -> Result<Self, DayError> {
        let err = || DayError {
            text: s.to_string(),
            expected: "a day of the month (1 to 31), L (the last day) or nW (the weekday nearest day n)",
        };
        let t = s.trim();
        if t.eq_ignore_ascii_case("L") {
            return Ok(MonthDaySpec::Last);
        }
        let (num, nearest) = match t.strip_suffix(['W', 'w']) {
            Some(n) => (n, true),
            None => (t, false),
        };
        match num.parse::<u8>() {
            Ok(n @ 1..=31) if nearest => Ok(MonthDaySpec::NearestWeekday(n)),
            Ok(n @ 1..=31) => Ok(MonthDaySpec::Day(n)),
            _ => Err(err()),
        }
    }
}

impl serde::Serialize for WeekdaySpec {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl serde::Serialize for MonthDaySpec {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl fmt::Display for WeekdaySpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let name = |w: Weekday| w.to_string().to_ascii_lowercase();
        match self {
            WeekdaySpec::Every(w) => f.write_str(&name(*w)),
            WeekdaySpec::Nth(w, n) => write!(f, "{}#{n}", name(*w)),
            WeekdaySpec::Last(w) => write!(f, "{}#L", name(*w)),
        }
    }
}

impl fmt::Display for MonthDaySpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            MonthDaySpec::Day(n) => write!(f, "{n}"),
            MonthDaySpec::Last => f.write_str("L"),
            MonthDaySpec::NearestWeekday(n) => write!(f, "{n}W"),
        }
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn d(y: i32, m: u32, day: u32) -> NaiveDate {
        NaiveDate::from_ymd_opt(y, m, day).unwrap()
    }

    /// The days of a month that match.
    fn days(spec: impl Fn(NaiveDate) -> bool, y: i32, m: u32) -> Vec<u32> {
        let first = d(y, m, 1);
        (1..=days_in_month(first))
            .filter(|&day| spec(d(y, m, day)))
            .collect()
    }

    #[test]
    fn weekday_entries() {
        // December 2026 starts on a Tuesday; it has five Tuesdays, Wednesdays and
        // Thursdays.
        let nth = |s: &str| {
            let w: WeekdaySpec = s.parse().unwrap();
            days(|x| w.matches(x), 2026, 12)
        };
        assert_eq!(nth("thu"), [3, 10, 17, 24, 31]);
        assert_eq!(nth("THU#2"), [10]);
        assert_eq!(nth("thursday#5"), [31]);
        assert_eq!(nth("fri#5"), Vec::<u32>::new());
        assert_eq!(nth("fri#L"), [25]);
        assert_eq!(nth("mon#1"), [7]);
        assert!("fri#6".parse::<WeekdaySpec>().is_err());
        assert!("fry".parse::<WeekdaySpec>().is_err());
        assert!("mon#".parse::<WeekdaySpec>().is_err());
    }

    #[test]
    fn day_of_month_entries() {
        let md = |s: &str, y, m| {
            let e: MonthDaySpec = s.parse().unwrap();
            days(|x| e.matches(x), y, m)
        };
        assert_eq!(md("31", 2026, 11), Vec::<u32>::new());
        assert_eq!(md("L", 2026, 11), [30]);
        assert_eq!(md("L", 2028, 2), [29]);
        // 2026-08-15 is a Saturday: the Friday before.
        assert_eq!(md("15W", 2026, 8), [14]);
        // 2026-11-01 is a Sunday: the Monday after.
        assert_eq!(md("1W", 2026, 11), [2]);
        // 2026-08-01 is a Saturday: not the Friday of July, the Monday after.
        assert_eq!(md("1W", 2026, 8), [3]);
        // 2026-05-31 is a Sunday, the last day: the Friday before.
        assert_eq!(md("31W", 2026, 5), [29]);
        assert_eq!(md("30W", 2027, 2), Vec::<u32>::new());
        assert_eq!(md("10W", 2026, 12), [10]);
        for bad in ["0", "32", "W", "L5", "-1"] {
            assert!(bad.parse::<MonthDaySpec>().is_err(), "{bad}");
        }
    }

    #[test]
    fn filters_are_and_across_and_or_within() {
        let f = DayFilter {
            weekdays: vec!["mon".parse().unwrap(), "fri".parse().unwrap()],
            monthdays: vec![],
            months: vec![12],
        };
        assert!(f.matches(d(2026, 12, 7)));
        assert!(f.matches(d(2026, 12, 11)));
        assert!(!f.matches(d(2026, 12, 8)));
        assert!(!f.matches(d(2026, 11, 30)));
        assert!(DayFilter::default().matches(d(2026, 2, 28)));
        let both = DayFilter {
            weekdays: vec!["fri".parse().unwrap()],
            monthdays: vec!["13".parse().unwrap()],
            months: vec![],
        };
        assert_eq!(days(|x| both.matches(x), 2026, 11), [13]);
        assert_eq!(days(|x| both.matches(x), 2026, 12), Vec::<u32>::new());
    }

    fn any_date() -> impl Strategy<Value = NaiveDate> {
        (1990i32..2100, 1u32..=12, 1u32..=31).prop_filter_map("a real date", |(y, m, day)| {
            NaiveDate::from_ymd_opt(y, m, day)
        })
    }

    fn any_weekday() -> impl Strategy<Value = Weekday> {
        (0u8..7).prop_map(|n| Weekday::try_from(n).unwrap())
    }

    proptest! {
        /// Every month has exactly one n-th weekday for n = 1..4, one last weekday,
        /// and at most one 5th; the nearest weekday to a day the month has is one
        /// weekday within two days of it.
        #[test]
        fn each_month_has_what_it_should(date in any_date(), w in any_weekday(), n in 1u8..=31) {
            let (y, m) = (date.year(), date.month());
            for k in 1..=4 {
                prop_assert_eq!(days(|x| WeekdaySpec::Nth(w, k).matches(x), y, m).len(), 1);
            }
            prop_assert!(days(|x| WeekdaySpec::Nth(w, 5).matches(x), y, m).len() <= 1);
            let last = days(|x| WeekdaySpec::Last(w).matches(x), y, m);
            prop_assert_eq!(last.len(), 1);
            let every = days(|x| WeekdaySpec::Every(w).matches(x), y, m);
            prop_assert_eq!(Some(&last[0]), every.last());
            let near = days(|x| MonthDaySpec::NearestWeekday(n).matches(x), y, m);
            if u32::from(n) <= days_in_month(date) {
                prop_assert_eq!(near.len(), 1);
                prop_assert!(near[0].abs_diff(u32::from(n)) <= 2);
                prop_assert!(!is_weekend(d(y, m, near[0]).weekday()));
            } else {
                prop_assert!(near.is_empty());
            }
        }

        /// What is written reads back the same.
        #[test]
        fn entries_round_trip(w in any_weekday(), k in 1u8..=5, n in 1u8..=31) {
            for e in [WeekdaySpec::Every(w), WeekdaySpec::Nth(w, k), WeekdaySpec::Last(w)] {
                prop_assert_eq!(e.to_string().parse::<WeekdaySpec>().unwrap(), e);
            }
            for e in [MonthDaySpec::Day(n), MonthDaySpec::Last, MonthDaySpec::NearestWeekday(n)] {
                prop_assert_eq!(e.to_string().parse::<MonthDaySpec>().unwrap(), e);
            }
        }
    }
}
