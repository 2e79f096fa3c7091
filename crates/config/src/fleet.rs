//! Fleet snapshot files: the observed instances the planner works on.
//!
//! A snapshot is JSON: `{"instances": [...]}` (other top-level keys such as `region`
//! or `observed_at` are allowed and ignored) or a bare list of instances. Each
//! instance is `{"id", "state", "type", "az", "vpc_id"?, "tags"?, "load_balancers"?}`.

use std::collections::{BTreeMap, HashSet};

use ec2_scheduler_core::Instance;
use serde_json::Value;
use serde_json::value::RawValue;

use crate::diag::{Cx, Diagnostics};
use crate::walk;

/// Reads a fleet snapshot.
///
/// # Errors
/// Syntax errors with line and column; every malformed instance with its path; an
/// instance id listed twice.
pub fn load_fleet(name: &str, text: &str) -> Result<Vec<Instance>, Diagnostics> {
    let mut cx = Cx::new(name);
    let text = crate::doc::strip_bom(text);
    // Instances are decoded one at a time from their raw text, so that a large
    // snapshot is never held as a tree of JSON values.
    let syntax = |cx: &mut Cx, e: serde_json::Error| {
        cx.syntax(e.line(), e.column(), crate::doc::json_message(&e));
        Err(Diagnostics(std::mem::take(&mut cx.diags)))
    };
    let (list, root): (Vec<&RawValue>, String) = match text.trim_start().chars().next() {
        Some('[') => match serde_json::from_str(text) {
            Ok(list) => (list, String::new()),
            Err(e) => return syntax(&mut cx, e),
        },
        Some('{') => {
            let top: BTreeMap<String, &RawValue> = match serde_json::from_str(text) {
                Ok(top) => top,
                Err(e) => return syntax(&mut cx, e),
            };
            let Some(raw) = top.get("instances") else {
                cx.file_error("expected {\"instances\": [...]} or a list of instances");
                return Err(Diagnostics(cx.diags));
            };
            match serde_json::from_str::<Vec<&RawValue>>(raw.get()) {
                Ok(list) => (list, "instances".to_string()),
                Err(_) => {
                    let found = serde_json::from_str::<Value>(raw.get())
                        .map(|v| walk::found(&v))
                        .unwrap_or_default();
                    cx.error(
                        "instances",
                        format!("expected a list of instances, {found}"),
                    );
                    return Err(Diagnostics(cx.diags));
                }
            }
        }
        _ => match serde_json::from_str::<Value>(text) {
            Ok(other) => {
                cx.file_error(format!(
                    "expected {{\"instances\": [...]}}, {}",
                    walk::found(&other)
                ));
                return Err(Diagnostics(cx.diags));
            }
            Err(e) => return syntax(&mut cx, e),
        },
    };
    let mut out = Vec::with_capacity(list.len());
    let mut seen = HashSet::new();
    for (i, v) in list.iter().enumerate() {
        let path = walk::index(&root, i);
        match serde_json::from_str::<Instance>(v.get()) {
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
