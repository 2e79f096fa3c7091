//! The error policy: what the executor does about a failed call, decided in one place
//! for every call site.
//!
//! Given the error, how many times this call (or this repeated check) has failed in a
//! row and the step's deadline, [`decide`] answers: retry after a backoff that grows
//! with jitter, look again later, split the batch to isolate the instances at fault,
//! or give up (the step then records the failure, or keeps the instances running when
//! acting without an answer would be unsafe). Retries are bounded by
//! [`Settings::max_retries`] (or [`Settings::capacity_retries`] for a lack of capacity)
//! and by the deadline: a backoff never reaches past it, and at it the answer is
//! always to give up.

use std::time::Duration;

use chrono::{DateTime, Utc};

use super::{Settings, dur};
use crate::pace::{Jitter, backoff};
use crate::ports::{ApiError, ErrorClass, ErrorKind};

/// What to do about a failed call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Decision {
    /// Make the same call again after this long.
    Retry(Duration),
    /// Do not repeat the call: observe again after this long, and act on what is
    /// then seen (an instance that was in transition).
    Recheck(Duration),
    /// Split the batch to find the instances at fault.
    Isolate,
    /// Stop trying.
    GiveUp,
}

/// Consecutive failures of one call or check, and the time after which it is not
/// tried again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Tries {
    pub failures: u32,
    pub deadline: Option<DateTime<Utc>>,
}

impl Tries {
    pub fn until(deadline: DateTime<Utc>) -> Self {
        Tries {
            failures: 0,
            deadline: Some(deadline),
        }
    }

    /// Bounded by the number of attempts only.
    pub fn unbounded_in_time() -> Self {
        Tries {
            failures: 0,
            deadline: None,
        }
    }
}

/// The one decision. `failures` counts this failure; `batch` is the number of
/// instances the call named (1 for a call about one thing).
pub(crate) fn decide(
    settings: &Settings,
    jitter: &mut Jitter,
    e: &ApiError,
    failures: u32,
    batch: usize,
    deadline: Option<DateTime<Utc>>,
    now: DateTime<Utc>,
) -> Decision {
    if deadline.is_some_and(|d| now >= d) {
        return Decision::GiveUp;
    }
    // A wait never reaches past the deadline.
    let clip = |w: Duration| match deadline {
        Some(d) => w.min(dur(d - now)).max(Duration::from_millis(1)),
        None => w,
    };
    let grow = |n: u32, jitter: &mut Jitter| {
        backoff(n, settings.backoff_base, settings.backoff_cap, jitter)
    };
    match e.kind.class() {
        ErrorClass::Retryable if failures <= settings.max_retries => {
            Decision::Retry(clip(grow(failures, jitter)))
        }
        ErrorClass::Retryable | ErrorClass::Final => Decision::GiveUp,
        ErrorClass::Isolatable if batch > 1 => Decision::Isolate,
        ErrorClass::Isolatable => match e.kind {
            // Capacity comes back over minutes, not seconds: start further up.
            ErrorKind::InsufficientCapacity if failures <= settings.capacity_retries => {
                Decision::Retry(clip(grow(failures + 2, jitter)))
            }
            // It may have been in transition: look again.
            ErrorKind::IncorrectState if failures < 3 => Decision::Recheck(clip(settings.poll)),
            _ => Decision::GiveUp,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn error(kind: ErrorKind) -> ApiError {
        ApiError {
            kind,
            action: "ec2:StopInstances".into(),
            code: "Code".into(),
            message: "message".into(),
            instances: vec![],
        }
    }

    fn at(s: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_800_000_000 + s, 0).unwrap()
    }

    #[test]
    fn retries_grow_and_stop_at_the_bound() {
        let settings = Settings::default();
        let mut jitter = Jitter::new(7);
        let e = error(ErrorKind::Throttled);
        let mut waits = Vec::new();
        let mut failures = 0;
        loop {
            failures += 1;
            match decide(&settings, &mut jitter, &e, failures, 10, None, at(0)) {
                Decision::Retry(w) => waits.push(w),
                Decision::GiveUp => break,
                other => panic!("{other:?}"),
            }
        }
        // Exactly max_retries retries, then it gives up.
        assert_eq!(waits.len(), settings.max_retries as usize);
        assert_eq!(failures, settings.max_retries + 1);
        // Each wait is at least half of 2^n seconds (jitter is in the upper half),
        // so two steps apart they strictly grow until the cap.
        for (i, w) in waits.iter().enumerate() {
            let full = (settings.backoff_base.as_secs_f64() * 2f64.powi(i as i32 + 1))
                .min(settings.backoff_cap.as_secs_f64());
            assert!(
                w.as_secs_f64() >= full / 2.0 && w.as_secs_f64() <= full,
                "{i}: {w:?}"
            );
        }
        for w in waits.windows(3) {
            assert!(w[2] > w[0] || w[2].as_secs_f64() >= settings.backoff_cap.as_secs_f64() / 2.0);
        }
        assert!(waits.iter().all(|w| *w <= settings.backoff_cap));
    }

    #[test]
    fn a_retry_never_reaches_past_the_deadline_and_the_deadline_ends_it() {
        let settings = Settings::default();
        let mut jitter = Jitter::new(1);
        let e = error(ErrorKind::Server);
        match decide(&settings, &mut jitter, &e, 7, 1, Some(at(3)), at(0)) {
            Decision::Retry(w) => assert!(w <= Duration::from_secs(3), "{w:?}"),
            other => panic!("{other:?}"),
        }
        assert_eq!(
            decide(&settings, &mut jitter, &e, 1, 1, Some(at(3)), at(3)),
            Decision::GiveUp
        );
    }

    #[test]
    fn each_class_gets_its_answer() {
        let s = Settings::default();
        let mut j = Jitter::new(3);
        let now = at(0);
        let d = |k, failures, batch, j: &mut Jitter| {
            decide(&s, j, &error(k), failures, batch, None, now)
        };
        assert_eq!(d(ErrorKind::AccessDenied, 1, 5, &mut j), Decision::GiveUp);
        assert_eq!(d(ErrorKind::Other, 1, 1, &mut j), Decision::GiveUp);
        for k in [
            ErrorKind::IncorrectState,
            ErrorKind::NotFound,
            ErrorKind::InsufficientCapacity,
            ErrorKind::Unsupported,
        ] {
            assert_eq!(d(k, 1, 2, &mut j), Decision::Isolate);
        }
        assert_eq!(d(ErrorKind::NotFound, 1, 1, &mut j), Decision::GiveUp);
        assert_eq!(d(ErrorKind::Unsupported, 1, 1, &mut j), Decision::GiveUp);
        assert_eq!(
            d(ErrorKind::IncorrectState, 2, 1, &mut j),
            Decision::Recheck(s.poll)
        );
        assert_eq!(d(ErrorKind::IncorrectState, 3, 1, &mut j), Decision::GiveUp);
        assert!(matches!(
            d(
                ErrorKind::InsufficientCapacity,
                s.capacity_retries,
                1,
                &mut j
            ),
            Decision::Retry(_)
        ));
        assert_eq!(
            d(
                ErrorKind::InsufficientCapacity,
                s.capacity_retries + 1,
                1,
                &mut j
            ),
            Decision::GiveUp
        );
    }
}
