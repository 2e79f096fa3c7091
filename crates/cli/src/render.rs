//! Human-readable rendering of plans.

use std::fmt::Write;

use ec2_scheduler_core::plan::{PauseReason, Plan, Step};

/// How many instance ids a line lists before summarising the rest.
const SHOWN_IDS: usize = 8;

fn id_list<'a>(ids: impl ExactSizeIterator<Item = &'a str>) -> String {
    let n = ids.len();
    let shown: Vec<&str> = ids.take(SHOWN_IDS).collect();
    let more = n - shown.len();
    let mut s = shown.join(", ");
    if more > 0 {
        let _ = write!(s, " and {more} more (--output json lists all)");
    }
    s
}

fn plural(n: usize, word: &str) -> String {
    format!("{n} {word}{}", if n == 1 { "" } else { "s" })
}

fn step_line(step: &Step) -> String {
    match step {
        Step::ProbeOverride {
            path,
            os,
            instances,
        } => format!(
            "probe      {} for override file {path} ({}): {}",
            plural(instances.len(), "instance"),
            os.as_str(),
            id_list(instances.iter().map(String::as_str))
        ),
        Step::Deregister { instances } => format!(
            "deregister {} from their load balancers: {}",
            plural(instances.len(), "instance"),
            id_list(instances.iter().map(String::as_str))
        ),
        Step::Stop { instances } => format!(
            "stop       {}: {}",
            plural(instances.len(), "instance"),
            id_list(instances.iter().map(String::as_str))
        ),
        Step::WaitUntil { state, instances } => format!(
            "wait       until {} {}",
            plural(instances.len(), "instance"),
            if instances.len() == 1 {
                format!("is {state}")
            } else {
                format!("are {state}")
            }
        ),
        Step::Resize { changes } => {
            let mut to: Vec<&str> = changes.iter().map(|c| c.to.as_str()).collect();
            to.dedup();
            format!(
                "resize     {} to {}: {}",
                plural(changes.len(), "instance"),
                to.join(", "),
                id_list(changes.iter().map(|c| c.instance.as_str()))
            )
        }
        Step::Start { instances } => format!(
            "start      {}: {}",
            plural(instances.len(), "instance"),
            id_list(instances.iter().map(String::as_str))
        ),
        Step::Register { instances } => format!(
            "register   {} with their load balancers",
            plural(instances.len(), "instance")
        ),
        Step::Ready {
            gate,
            timeout_secs,
            instances,
        } => format!(
            "ready      {} pass {} (timeout {timeout_secs} s)",
            plural(instances.len(), "instance"),
            gate.as_str()
        ),
        Step::Pause { seconds, why } => format!(
            "pause      {seconds} s {}",
            match why {
                PauseReason::AfterResize => "for the type change to settle",
                PauseReason::BeforeNextStage => "before the next stage",
            }
        ),
    }
}

/// The plan as text: a block per stage, exclusions with reasons, notes and a summary.
pub fn plan_text(plan: &Plan) -> String {
    let mut out = String::new();
    let profile = plan
        .profile
        .as_deref()
        .map(|p| format!(" with profile {p}"))
        .unwrap_or_default();
    let _ = writeln!(
        out,
        "Plan: {} workload {}{profile} ({})",
        plan.action,
        plan.workload,
        plural(plan.summary.members, "member")
    );
    for (i, stage) in plan.stages.iter().enumerate() {
        let tiers: Vec<&str> = stage.tiers.iter().map(|t| t.tier.as_str()).collect();
        let _ = writeln!(
            out,
            "\nStage {} (order {}): {}",
            i + 1,
            stage.order,
            tiers.join(", ")
        );
        for tp in &stage.tiers {
            let target = tp
                .target
                .map(|t| format!(", target {t} running"))
                .unwrap_or_default();
            let _ = writeln!(
                out,
                "  {}: {} ({} running/pending, {} stopped/stopping{target})",
                tp.tier,
                plural(tp.members, "member"),
                tp.up,
                tp.down
            );
            if tp.steps.is_empty() {
                let _ = writeln!(out, "    nothing to do");
            }
            for step in &tp.steps {
                let _ = writeln!(out, "    {}", step_line(step));
            }
        }
    }
    if !plan.excluded.is_empty() {
        let _ = writeln!(out, "\nExcluded ({}):", plan.excluded.len());
        for e in &plan.excluded {
            let _ = writeln!(
                out,
                "  {} ({}): {}",
                e.instance,
                e.tier,
                e.reason.describe()
            );
        }
    }
    if !plan.notes.is_empty() {
        let _ = writeln!(out, "\nNotes:");
        for n in &plan.notes {
            match &n.tier {
                Some(t) => {
                    let _ = writeln!(out, "  {t}: {}", n.message);
                }
                None => {
                    let _ = writeln!(out, "  {}", n.message);
                }
            }
        }
    }
    let ig = &plan.ignored;
    if ig.no_configured_tier + ig.other_vpc + ig.gone > 0 {
        let _ = writeln!(
            out,
            "\nIgnored (carry the workload tag, not members): {} without a configured tier, {} outside the VPC, {} terminated",
            ig.no_configured_tier, ig.other_vpc, ig.gone
        );
    }
    let s = &plan.summary;
    let _ = writeln!(
        out,
        "\nSummary: {} to stop, {} to start, {} to resize, {} excluded, {}",
        s.to_stop,
        s.to_start,
        s.to_resize,
        s.excluded,
        plural(plan.stages.len(), "stage")
    );
    out
}
