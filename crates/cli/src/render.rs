//! Human-readable rendering: plans, runs, status, exemptions.

use std::fmt::Write;

use chrono::{DateTime, Utc};
use ec2_scheduler_app::schedules;
use ec2_scheduler_app::status::Status;
use ec2_scheduler_core::overrides::Override;
use ec2_scheduler_core::plan::{PauseReason, Plan, Step};
use ec2_scheduler_core::{Exemption, Workload};
use ec2_scheduler_engine::Run;
use ec2_scheduler_engine::notify::RunOutcome;
use ec2_scheduler_engine::ports::{EventRecord, RunSummaryRow};

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

/// The run's outcome for people, from the same value as its run-finished message.
pub fn run_report(run: &Run) -> String {
    outcome(&RunOutcome::of(run))
}

fn outcome(o: &RunOutcome) -> String {
    let s = &o.summary;
    let mut out = format!(
        "Run {}: {} of {} {} in {:.0} s: {} stopped, {} started, {} resized, {} excluded, {} kept running, {} failed\n",
        s.run,
        s.action,
        s.workload,
        s.status.as_str(),
        s.seconds.unwrap_or(0.0),
        s.stopped,
        s.started_instances,
        s.resized,
        s.excluded,
        s.kept,
        s.failed
    );
    for (what, notes) in [
        ("excluded", &o.instances.excluded),
        ("kept", &o.instances.kept),
        ("failed", &o.instances.failed),
    ] {
        for n in notes {
            out += &format!(
                "  {what} {} ({}): {}\n",
                n.instance,
                n.tier.as_deref().unwrap_or("-"),
                n.reason
            );
        }
    }
    for (tier, t) in &s.tiers {
        if let Some(f) = t.finished {
            out += &format!(
                "  tier {tier}: {:.0} s\n",
                (f - t.started).num_milliseconds() as f64 / 1000.0
            );
        }
    }
    let calls: Vec<String> = s
        .api_calls
        .iter()
        .map(|(a, n)| format!("{a} {n}"))
        .collect();
    out += &format!(
        "  API calls: {} ({}), {} retried\n",
        s.api_calls.values().sum::<u64>(),
        calls.join(", "),
        s.retried_calls
    );
    if let Some(e) = &s.error {
        out += &format!("  error: {e}\n");
    }
    out
}

/// `status`: the workload's tiers and instances, with exemptions and the last run.
pub fn status(workload: &Workload, status: &Status) -> String {
    let mut out = format!(
        "Workload {} ({}={}, tier tag {})\n",
        workload.name,
        workload.workload_tag.key,
        workload.workload_tag.value,
        workload.tier_tag_key
    );
    for tier in &status.tiers {
        out += &format!(
            "\n{}: {} members, {} running/pending\n",
            tier.name,
            tier.members.len(),
            tier.up()
        );
        for m in &tier.members {
            let i = &m.instance;
            let note = m
                .kept_by
                .as_ref()
                .map(|r| format!("  [{r}]"))
                .unwrap_or_default();
            out += &format!(
                "  {:<22} {:<9} {:<12} {}{note}\n",
                i.id,
                i.state.as_str(),
                i.instance_type,
                i.az
            );
        }
    }
    if let Some(last) = &status.last_run {
        out += &format!(
            "\nLast run: {} {} {} (started {})\n",
            last.id,
            last.action,
            last.status,
            last.started
                .to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
        );
    }
    out
}

/// `runs`: the history table.
pub fn runs(rows: &[RunSummaryRow]) -> String {
    if rows.is_empty() {
        return "no runs\n".to_string();
    }
    let mut out = format!(
        "{:<34} {:<20} {:<6} {:<24} {:<21} {}\n",
        "RUN", "WORKLOAD", "ACTION", "STATUS", "STARTED", "SECONDS"
    );
    for r in rows {
        let secs = r
            .finished
            .map(|f| format!("{:.0}", (f - r.started).num_milliseconds() as f64 / 1000.0))
            .unwrap_or_else(|| "-".into());
        out += &format!(
            "{:<34} {:<20} {:<6} {:<24} {:<21} {secs}\n",
            r.id,
            r.workload,
            r.action,
            r.status,
            r.started.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
        );
    }
    out
}

/// `runs show ID`: the run's report and history.
pub fn run_show(run: &Run) -> String {
    let mut out = run_report(run);
    out += "History:\n";
    for e in &run.history {
        let t = (e.at - run.started).num_milliseconds() as f64 / 1000.0;
        match &e.tier {
            Some(tier) => out += &format!("  [{t:>7.1}s] {tier}: {}\n", e.text()),
            None => out += &format!("  [{t:>7.1}s] {}\n", e.text()),
        }
    }
    out
}

/// `exempt add`: what was recorded.
pub fn exempted(e: &Exemption) -> String {
    format!(
        "{} is exempt from stop {}: {}\n",
        e.instance_id,
        e.until.map_or("until removed".to_string(), |u| format!(
            "until {}",
            u.to_rfc3339()
        )),
        e.reason
    )
}

/// `exempt list`.
pub fn exemptions(list: &[Exemption], now: DateTime<Utc>) -> String {
    if list.is_empty() {
        return "no exemptions\n".to_string();
    }
    list.iter()
        .map(|e| {
            let until = e.until.map_or("until removed".to_string(), |u| {
                format!("until {}", u.to_rfc3339())
            });
            let expired = if e.active(now) { "" } else { " (expired)" };
            let by = e
                .created_by
                .as_ref()
                .map_or(String::new(), |b| format!(" (by {b})"));
            format!("{} {until}{expired}: {}{by}\n", e.instance_id, e.reason)
        })
        .collect()
}

/// `schedule state`.
pub fn schedule_state(s: &schedules::State, none: bool) -> String {
    if none {
        return format!(
            "{}: any (the workload has no schedules)\n",
            s.at.to_rfc3339_opts(chrono::SecondsFormat::Secs, false)
        );
    }
    let mut out = format!(
        "{}: {}",
        s.at.to_rfc3339_opts(chrono::SecondsFormat::Secs, false),
        s.wish
    );
    if let Some(p) = &s.profile {
        out += &format!(" with profile {p}");
    }
    if let Some(o) = &s.by_override {
        out += &format!(" (held by override {o})");
    } else if let (Some(sc), Some(p)) = (&s.schedule, &s.period) {
        out += &format!(" (schedule {sc}, {p}");
        if let Some(since) = s.since {
            out += &format!(", since {}", since.to_rfc3339());
        }
        out += ")";
    }
    out + "\n"
}

/// `schedule next`.
pub fn next_events(events: &[schedules::NextEvent], none: bool) -> String {
    if none {
        return "the workload has no schedules: no events\n".to_string();
    }
    if events.is_empty() {
        return format!("no events in the next {} days\n", schedules::HORIZON_DAYS);
    }
    let mut out = String::new();
    for e in events {
        let what = match &e.profile {
            Some(p) => format!("{} {p}", e.action),
            None => e.action.to_string(),
        };
        out += &format!(
            "{}  {what:<20} {}/{}",
            e.at.to_rfc3339(),
            e.schedule,
            e.period
        );
        if let Some(why) = &e.skipped {
            out += &format!("  skipped: {why}");
        }
        if let Some(o) = &e.by_override {
            out += &format!("  by override {o}");
        }
        out += "\n";
    }
    out
}

/// `override list`.
pub fn overrides(list: &[Override], now: DateTime<Utc>) -> String {
    if list.is_empty() {
        return "no overrides\n".to_string();
    }
    let mut out = String::new();
    for o in list {
        let _ = writeln!(
            out,
            "{}  {}  {}{}\n    by {} at {}: {}",
            o.id,
            o.workload,
            o.change,
            if o.expired(now) { " (expired)" } else { "" },
            o.created_by,
            o.created_at
                .to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            o.reason
        );
    }
    out
}

/// `schedule history`.
pub fn event_records(records: &[EventRecord]) -> String {
    if records.is_empty() {
        return "no events recorded\n".to_string();
    }
    let mut out = String::new();
    for r in records {
        let _ = write!(
            out,
            "{}  {:<16} {:<5} {:<8}",
            r.at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            r.workload,
            r.action,
            r.outcome.as_str()
        );
        if let Some(p) = &r.profile {
            let _ = write!(out, " profile {p}");
        }
        if let Some(id) = &r.run_id {
            let _ = write!(out, " run {id}");
        }
        if let Some(d) = &r.detail {
            let _ = write!(out, " ({d})");
        }
        out.push('\n');
    }
    out
}

/// `token list`.
pub fn tokens(list: &[ec2_scheduler_core::access::TokenInfo], now: DateTime<Utc>) -> String {
    if list.is_empty() {
        return "no tokens\n".into();
    }
    let mut out = String::new();
    for t in list {
        let state = match (t.revoked_at, t.expires) {
            (Some(r), _) => format!("revoked {}", r.to_rfc3339()),
            (None, Some(e)) if e <= now => format!("expired {}", e.to_rfc3339()),
            (None, Some(e)) => format!("expires {}", e.to_rfc3339()),
            (None, None) => "no expiry".into(),
        };
        let _ = writeln!(
            out,
            "{}  {:<8}  {}  (made {} by {}; {state})",
            t.id,
            t.role,
            t.name,
            t.created_at.to_rfc3339(),
            t.created_by
        );
    }
    out
}

/// `savings`.
pub fn savings(report: &[ec2_scheduler_app::savings::Savings]) -> String {
    let mut out = String::new();
    for s in report {
        let _ = writeln!(
            out,
            "{}: forecast {:.1} % saved against always-on ({:.0} of {:.0} hours stopped, {} to {})",
            s.workload,
            s.percent_saved,
            s.stopped_hours,
            s.hours,
            s.from.date_naive(),
            s.to.date_naive()
        );
        for l in &s.lines {
            let money = match (l.saved, l.hourly_price) {
                (Some(m), Some(p)) => format!("{m:.2} {} at {p}/h", s.currency),
                _ => "no price".to_string(),
            };
            let _ = writeln!(
                out,
                "  {:<12} {:<12} {:>4} x  {:>9.1} instance-hours  {money}",
                l.tier, l.instance_type, l.instances, l.instance_hours_saved
            );
        }
        let _ = writeln!(
            out,
            "  total: {:.2} {} (prices as of {})",
            s.saved, s.currency, s.prices_as_of
        );
        if !s.unpriced.is_empty() {
            let _ = writeln!(out, "  no price for: {}", s.unpriced.join(", "));
        }
        for w in &s.warnings {
            let _ = writeln!(out, "  warning: {w}");
        }
        let _ = writeln!(
            out,
            "  actual, from the run history so far: {:.1} instance-hours, {:.2} {}",
            s.actual.instance_hours_saved, s.actual.saved, s.currency
        );
    }
    if report.is_empty() {
        out.push_str("no workloads\n");
    }
    out
}

/// The schedule part of `status`: the wish now, the next events, the overrides.
pub fn schedule_summary(
    state: &schedules::State,
    next: &[schedules::NextEvent],
    overrides: &[Override],
    now: DateTime<Utc>,
) -> String {
    let mut out = format!("\nSchedule now: {}", schedule_state(state, false));
    if !next.is_empty() {
        out += "Next events:\n";
        for line in next_events(next, false).lines() {
            out += &format!("  {line}\n");
        }
    }
    if !overrides.is_empty() {
        out += "Overrides:\n";
        for line in self::overrides(overrides, now).lines() {
            out += &format!("  {line}\n");
        }
    }
    out
}
