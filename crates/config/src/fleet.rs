//! Fleet snapshot files: the observed instances the planner works on.
//!
//! A snapshot is JSON: `{"instances": [...]}` (other top-level keys such as `region`
//! or `observed_at` are allowed and ignored) or a bare list of instances. Each
//! instance is `{"id", "state", "type", "az", "vpc_id"?, "tags"?, "load_balancers"?}`.

use std::collections::HashSet;

use ec2_scheduler_core::Instance;
use serde_json::Value;

use crate::diag::{Cx, Diagnostics};
use crate::walk;

/// Reads a fleet snapshot.
///
/// # Errors
/// Syntax errors with line and column; every malformed instance with its path; an
/// instance id listed twice.
pub fn load_fleet(name: &str, text: &str) -> Result<Vec<Instance>, Diagnostics> {
    let mut cx = Cx::new(name);
    let value: Value = match serde_json::from_str(text) {
        Ok(v) => v,
        Err(e) => {
            cx.syntax(e.line(), e.column(), crate::json_message(&e));
            return Err(Diagnostics(cx.diags));
        }
    };
    let (list, root) = match &value {
        Value::Array(a) => (a, String::new()),
        Value::Object(o) => match o.get("instances") {
            Some(Value::Array(a)) => (a, "instances".to_string()),
            Some(other) => {
                cx.error(
                    "instances",
                    format!("expected a list of instances, {}", walk::found(other)),
                );
                return Err(Diagnostics(cx.diags));
            }
            None => {
                cx.file_error("expected {\"instances\": [...]} or a list of instances");
                return Err(Diagnostics(cx.diags));
            }
        },
        other => {
            cx.file_error(format!(
                "expected {{\"instances\": [...]}}, {}",
                walk::found(other)
            ));
            return Err(Diagnostics(cx.diags));
        }
    };
    let mut out = Vec::with_capacity(list.len());
    let mut seen = HashSet::new();
    for (i, v) in list.iter().enumerate() {
        let path = walk::index(&root, i);
        match serde_json::from_value::<Instance>(v.clone()) {
            Ok(inst) => {
                if !seen.insert(inst.id.clone()) {
                    cx.error(
                        &walk::key(&path, "id"),
                        format!("instance {} is listed twice", inst.id),
                    );
                } else if inst.id.trim().is_empty() {
                    cx.error(&walk::key(&path, "id"), "must not be empty");
                } else {
                    out.push(inst);
                }
            }
            Err(e) => cx.error(&path, format!("invalid instance: {e}")),
        }
    }
    if cx.error_count() > 0 {
        return Err(Diagnostics(cx.diags));
    }
    Ok(out)
}
