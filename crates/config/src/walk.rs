//! A small toolkit for walking a parsed document and reporting every problem with its
//! path, instead of stopping at the first one as a derived deserializer would.
//!
//! Two flavours of scalar readers exist: strict ones for ec2-scheduler's own format,
//! and lenient `seed_*` ones for the original tool's formats, where numbers and
//! booleans arrive as strings (`"10"`, `"True"`) or typed.

use serde_json::{Map, Value};

use ec2_scheduler_core::model::{MAX_ORDER, MAX_SECS, MIN_ORDER};

use crate::diag::Cx;

/// Joins a path and a key: `a` + `b` = `a.b`.
pub(crate) fn key(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_string()
    } else {
        format!("{path}.{key}")
    }
}

/// Joins a path and an index: `a` + 2 = `a[2]`.
pub(crate) fn index(path: &str, i: usize) -> String {
    format!("{path}[{i}]")
}

/// Describes a value for an error message.
pub(crate) fn found(v: &Value) -> String {
    match v {
        Value::Null => "found nothing (null)".to_string(),
        Value::Bool(b) => format!("found boolean {b}"),
        Value::Number(n) => format!("found number {n}"),
        Value::String(s) => format!("found {s:?}"),
        Value::Array(_) => "found a list".to_string(),
        Value::Object(_) => "found a mapping".to_string(),
    }
}

/// A mapping being read, with its path.
pub(crate) struct Obj<'v> {
    pub map: &'v Map<String, Value>,
    pub path: String,
}

impl<'v> Obj<'v> {
    /// Reads `v` as a mapping, or reports what was found instead.
    pub fn new(cx: &mut Cx, v: &'v Value, path: &str, what: &str) -> Option<Self> {
        match v {
            Value::Object(map) => Some(Obj {
                map,
                path: path.to_string(),
            }),
            other => {
                cx.error(
                    path,
                    format!("expected {what} (a mapping), {}", found(other)),
                );
                None
            }
        }
    }

    /// The value at `k` and its path, when present and not null.
    pub fn get(&self, k: &str) -> Option<(&'v Value, String)> {
        match self.map.get(k) {
            None | Some(Value::Null) => None,
            Some(v) => Some((v, key(&self.path, k))),
        }
    }

    /// Like [`Obj::get`], reporting a missing field.
    pub fn require(&self, cx: &mut Cx, k: &str, what: &str) -> Option<(&'v Value, String)> {
        let got = self.get(k);
        if got.is_none() {
            cx.error(&self.path, format!("missing required field `{k}` ({what})"));
        }
        got
    }

    /// Reports keys not in `known`: errors for our own format, warnings for the seed's.
    pub fn check_keys(&self, cx: &mut Cx, known: &[&str], strict: bool) {
        for k in self.map.keys() {
            if known.contains(&k.as_str()) {
                continue;
            }
            let path = key(&self.path, k);
            if strict {
                cx.error(
                    &path,
                    format!("unknown field `{k}`, expected one of: {}", known.join(", ")),
                );
            } else {
                cx.warn(&path, format!("unknown attribute `{k}` is ignored"));
            }
        }
    }
}

// ---- strict readers (our own format) ----

pub(crate) fn string(cx: &mut Cx, v: &Value, path: &str) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        other => {
            cx.error(path, format!("expected a string, {}", found(other)));
            None
        }
    }
}

/// A tier order: a whole number from [`MIN_ORDER`] to [`MAX_ORDER`].
pub(crate) fn order(cx: &mut Cx, v: &Value, path: &str) -> Option<i64> {
    match v.as_i64() {
        Some(n) if (MIN_ORDER..=MAX_ORDER).contains(&n) => Some(n),
        _ => {
            cx.error(path, order_message(v));
            None
        }
    }
}

fn order_message(v: &Value) -> String {
    format!(
        "expected a whole number from {MIN_ORDER} to {MAX_ORDER}, {}",
        found(v)
    )
}

/// Seconds: a whole number from 0 to [`MAX_SECS`].
pub(crate) fn seconds(cx: &mut Cx, v: &Value, path: &str) -> Option<u64> {
    match v.as_u64() {
        Some(n) if n <= MAX_SECS => Some(n),
        _ => {
            cx.error(path, seconds_message(v));
            None
        }
    }
}

fn seconds_message(v: &Value) -> String {
    format!(
        "expected a whole number of seconds from 0 to {MAX_SECS} (7 days), {}",
        found(v)
    )
}

pub(crate) fn boolean(cx: &mut Cx, v: &Value, path: &str) -> Option<bool> {
    match v {
        Value::Bool(b) => Some(*b),
        other => {
            cx.error(path, format!("expected true or false, {}", found(other)));
            None
        }
    }
}

// ---- lenient readers (the original tool's formats) ----

/// A string; numbers and booleans are accepted and written out.
pub(crate) fn seed_string(cx: &mut Cx, v: &Value, path: &str) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        other => {
            cx.error(path, format!("expected a string, {}", found(other)));
            None
        }
    }
}

/// A tier order, as a number or a string such as `"2"`, from [`MIN_ORDER`] to
/// [`MAX_ORDER`].
pub(crate) fn seed_order(cx: &mut Cx, v: &Value, path: &str) -> Option<i64> {
    let parsed = match v {
        Value::Number(n) => n.as_i64(),
        Value::String(s) => s.trim().parse::<i64>().ok(),
        _ => None,
    };
    match parsed {
        Some(n) if (MIN_ORDER..=MAX_ORDER).contains(&n) => Some(n),
        _ => {
            cx.error(path, order_message(v));
            None
        }
    }
}

/// Seconds as a number or a string (`"10"`, `"4.0"`), from 0 to [`MAX_SECS`];
/// fractions round up.
pub(crate) fn seed_seconds(cx: &mut Cx, v: &Value, path: &str) -> Option<u64> {
    let parsed = match v {
        Value::Number(n) => n.as_f64(),
        Value::String(s) => s.trim().parse::<f64>().ok(),
        _ => None,
    };
    match parsed {
        Some(x) if x.is_finite() && (0.0..=MAX_SECS as f64).contains(&x) => Some(x.ceil() as u64),
        _ => {
            cx.error(path, seconds_message(v));
            None
        }
    }
}

/// A boolean as the original wrote them: `"True"`/`"False"` (any case), `true`,
/// `"1"`/`"0"`, `"yes"`/`"no"`, or 1/0.
pub(crate) fn seed_bool(cx: &mut Cx, v: &Value, path: &str) -> Option<bool> {
    let parsed = yes_no(v);
    if parsed.is_none() {
        cx.error(
            path,
            format!("expected \"True\" or \"False\", {}", found(v)),
        );
    }
    parsed
}

/// A safety setting's yes/no value. One that cannot be read takes the safe value,
/// `true` (disabled, never stopped), with a warning naming `what` and saying
/// `then`: what follows and how to write it.
pub(crate) fn fail_closed(cx: &mut Cx, v: &Value, path: &str, what: &str, then: &str) -> bool {
    yes_no(v).unwrap_or_else(|| {
        cx.warn(path, format!("cannot read {what} ({}): {then}", found(v)));
        true
    })
}

/// A yes/no value as the original's tables write them, or `None`.
pub(crate) fn yes_no(v: &Value) -> Option<bool> {
    match v {
        Value::Bool(b) => Some(*b),
        Value::Number(n) => match n.as_i64() {
            Some(1) => Some(true),
            Some(0) => Some(false),
            _ => None,
        },
        Value::String(s) => match s.trim().to_ascii_lowercase().as_str() {
            "true" | "t" | "yes" | "y" | "on" | "1" => Some(true),
            "false" | "f" | "no" | "n" | "off" | "0" => Some(false),
            _ => None,
        },
        _ => None,
    }
}

/// A non-empty name: tag keys and values, tier and workload names.
pub(crate) fn name(cx: &mut Cx, s: String, path: &str) -> Option<ec2_scheduler_core::model::Name> {
    match ec2_scheduler_core::model::Name::new(s) {
        Ok(n) => Some(n),
        Err(_) => {
            cx.error(
                path,
                "must not be empty (an empty tag key or value would match every instance)",
            );
            None
        }
    }
}
