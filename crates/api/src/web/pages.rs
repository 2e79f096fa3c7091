//! The workloads, a workload, a plan, and a run.

use std::collections::{BTreeMap, HashMap};

use axum::extract::{Form, Path, Query, State as S};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use chrono::{DateTime, Utc};
use ec2_scheduler_app::schedules;
use ec2_scheduler_app::status::Status;
use ec2_scheduler_core::access::Caller;
use ec2_scheduler_core::overrides::Override;
use ec2_scheduler_core::plan::{Plan, Step};
use ec2_scheduler_core::{Action, Workload};
use ec2_scheduler_engine::Run;
use maud::{Markup, html};
use serde::Deserialize;

use super::session::Signed;
use super::{
    Nav, badge, duration, html_response, may_act, need_operator, none, ok_page, page, problem_page,
    when,
};
use crate::handlers::{Begun, Counts, begin_run, run_request};
use crate::{ProblemKind, State};

#[derive(Deserialize)]
pub(crate) struct ListQuery {
    /// Part of a workload's name or region.
    q: Option<String>,
    /// any, running, stopped or mixed.
    state: Option<String>,
}

/// How a workload stands as a whole.
fn overall(status: &Status) -> &'static str {
    let (mut up, mut down, mut other) = (0, 0, 0);
    for t in &status.tiers {
        let c = Counts::of(t);
        up += c.running;
        down += c.stopped;
        other += c.other;
    }
    match (up, down, other) {
        (0, 0, 0) => "empty",
        (_, 0, 0) => "running",
        (0, _, 0) => "stopped",
        _ => "mixed",
    }
}

/// The overrides in force, by workload.
async fn overrides_by_workload(
    state: &State,
    now: DateTime<Utc>,
) -> Result<HashMap<String, Vec<Override>>, crate::Problem> {
    let mut by: HashMap<String, Vec<Override>> = HashMap::new();
    for o in state.app.overrides(None, false, now).await? {
        by.entry(o.workload.clone()).or_default().push(o);
    }
    Ok(by)
}

/// The next event that fires, if any, within the schedules' horizon.
fn next_event(w: &Workload, overrides: &[Override], now: DateTime<Utc>) -> Option<Markup> {
    let events = schedules::next(&w.schedules, overrides, now, 1).ok()?;
    let e = events.into_iter().find(|e| e.skipped.is_none())?;
    Some(html! {
        span.event { (e.action) @if let Some(p) = &e.profile { " (" (p) ")" } }
        " "
        time datetime=(e.at.to_rfc3339()) { (e.at.format("%a %d %b %H:%M")) " " (e.timezone) }
    })
}

/// A tier's counts as labelled, coloured chips.
fn chips(c: Counts) -> Markup {
    html! {
        span.chips {
            span.chip.running title="running" { span.sr { "running " } "▲ " (c.running) }
            span.chip.stopped title="stopped" { span.sr { "stopped " } "■ " (c.stopped) }
            @if c.other > 0 { span.chip.other title="other states" { span.sr { "other " } "◆ " (c.other) } }
            @if c.exempt > 0 { span.chip.exempt title="exempt from stops" { span.sr { "exempt " } "⚑ " (c.exempt) } }
        }
    }
}

pub(crate) async fn workloads(
    S(state): S<State>,
    Signed(who): Signed,
    Query(q): Query<ListQuery>,
) -> Response {
    let now = super::now(&state).await;
    let all = match state.reads.workloads(&state.app).await {
        Ok(w) => w,
        Err(p) => return problem_page(Some(&who), p),
    };
    let needle = q.q.as_deref().unwrap_or("").trim().to_lowercase();
    let wanted = q.state.as_deref().unwrap_or("any");
    let filtered: Vec<Workload>;
    let shown: &[Workload] = if needle.is_empty() {
        &all
    } else {
        filtered = all
            .iter()
            .filter(|w| {
                w.name.as_str().to_lowercase().contains(&needle)
                    || w.region.as_str().to_lowercase().contains(&needle)
            })
            .cloned()
            .collect();
        &filtered
    };
    let statuses = match state.app.statuses(&state.clouds, shown).await {
        Ok(s) => s,
        Err(e) => return problem_page(Some(&who), e.into()),
    };
    let overrides = match overrides_by_workload(&state, now).await {
        Ok(o) => o,
        Err(p) => return problem_page(Some(&who), p),
    };
    let mut rows = Vec::new();
    for (w, status) in shown.iter().zip(&statuses) {
        let o = status.as_ref().map_or("unknown", overall);
        if wanted != "any" && o != wanted {
            continue;
        }
        rows.push((w, status, o));
    }
    let body = html! {
        form.filter method="get" action="/" role="search" {
            label for="q" { "Filter" }
            input #q type="search" name="q" value=(q.q.as_deref().unwrap_or("")) placeholder="name or region";
            label for="state" { "State" }
            select #state name="state" {
                @for s in ["any", "running", "stopped", "mixed"] {
                    option value=(s) selected[s == wanted] { (s) }
                }
            }
            button type="submit" { "Apply" }
        }
        p.muted { (rows.len()) " of " (shown.len()) " workloads · observed " (when(now)) }
        div.scroll {
            table.list #workloads {
                thead { tr { th { "Workload" } th { "State" } th { "Tiers (start order)" } th { "Last run" } th { "Next event" } } }
                tbody {
                    @for (w, status, o) in &rows {
                        tr data-workload=(w.name.as_str()) {
                            td { a href={"/workload/" (urlpath(w.name.as_str()))} { (w.name.as_str()) } br; span.muted { (w.region.as_str()) } }
                            td { (badge(o)) }
                            td {
                                @match status {
                                    Ok(s) => {
                                        ul.tiers {
                                            @for t in start_order(w, s) {
                                                li { span.tier { (t.name) } " " (chips(Counts::of(t))) }
                                            }
                                        }
                                    }
                                    Err(e) => { span.error { (e) } }
                                }
                            }
                            td {
                                @match status.as_ref().ok().and_then(|s| s.last_run.as_ref()) {
                                    Some(r) => { a href={"/run/" (r.id)} { (badge(&r.status)) } " " (r.action) br; span.muted { (when(r.started)) } }
                                    None => (none()),
                                }
                            }
                            td {
                                @match next_event(w, overrides.get(w.name.as_str()).map_or(&[][..], Vec::as_slice), now) {
                                    Some(m) => (m),
                                    None => (none()),
                                }
                            }
                        }
                    }
                }
            }
        }
    };
    ok_page("Workloads", &who, Nav::Workloads, body)
}

/// The tiers of a status in the workload's start order (tiers without a start last).
fn start_order<'s>(w: &Workload, s: &'s Status) -> Vec<&'s ec2_scheduler_app::status::TierStatus> {
    let order = |name: &str| {
        w.tier(name)
            .and_then(|t| t.start.as_ref())
            .map_or(i64::MAX, |st| st.sequencing.order)
    };
    let mut tiers: Vec<_> = s.tiers.iter().collect();
    tiers.sort_by_key(|t| order(&t.name));
    tiers
}

/// A name as one path segment.
pub(crate) fn urlpath(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// A fresh idempotency key for a form, so that sending it twice begins one run.
fn form_key() -> String {
    let mut b = [0u8; 16];
    if getrandom::fill(&mut b).is_err() {
        // Without randomness the form still works, only without the protection.
        return String::new();
    }
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// The action forms of a workload: start with a profile, stop; each may be planned
/// first (a dry run that asks to confirm) or begun at once.
fn actions(w: &Workload) -> Markup {
    let name = urlpath(w.name.as_str());
    let key = form_key();
    html! {
        section.actions aria-labelledby="actions-h" {
            h2 #actions-h { "Actions" }
            form.inline method="post" action={"/workload/" (name) "/run"} {
                input type="hidden" name="action" value="start";
                input type="hidden" name="key" value=(key);
                label for="profile" { "Profile" }
                select #profile name="profile" {
                    option value="" { "(none: types as they are)" }
                    @for p in w.profile_names() { option value=(p) { (p) } }
                }
                button type="submit" formmethod="get" formaction={"/workload/" (name) "/plan"} #dry-start { "Dry run start…" }
                button type="submit" #start { "Start" }
            }
            form.inline method="post" action={"/workload/" (name) "/run"} {
                input type="hidden" name="action" value="stop";
                input type="hidden" name="key" value=(form_key());
                button type="submit" formmethod="get" formaction={"/workload/" (name) "/plan"} #dry-stop { "Dry run stop…" }
                button type="submit" #stop { "Stop" }
            }
        }
    }
}

pub(crate) async fn workload(
    S(state): S<State>,
    Signed(who): Signed,
    Path(name): Path<String>,
) -> Response {
    match workload_body(&state, &who, &name).await {
        Ok(body) => ok_page(&name, &who, Nav::Workloads, body),
        Err(p) => problem_page(Some(&who), p),
    }
}

async fn workload_body(state: &State, who: &Caller, name: &str) -> Result<Markup, crate::Problem> {
    let w = state.app.stored_workload(name).await?;
    let now = super::now(state).await;
    let status = state.app.status_seen(&state.clouds, &w).await?;
    let cloud = state.clouds.get(&state.app, &w).await?;
    let in_lb: Vec<String> = status
        .tiers
        .iter()
        .flat_map(|t| &t.members)
        .filter(|m| {
            m.instance
                .load_balancers
                .as_ref()
                .is_some_and(|l| !l.is_empty())
        })
        .map(|m| m.instance.id.clone())
        .collect();
    let health = if in_lb.is_empty() {
        Ok(BTreeMap::new())
    } else {
        state.app.lb_health(&cloud, &in_lb).await
    };
    let overrides = state
        .app
        .overrides(Some(w.name.as_str()), false, now)
        .await?;
    let wish = schedules::state(&w.schedules, &overrides, now);
    let next = schedules::next(&w.schedules, &overrides, now, 5).unwrap_or_default();
    let runs = state.app.runs(Some(w.name.as_str())).await?;
    let exemptions = state.app.exemptions().await?;
    let members: std::collections::HashSet<&str> = status
        .tiers
        .iter()
        .flat_map(|t| &t.members)
        .map(|m| m.instance.id.as_str())
        .collect();
    let profiles = w.profile_names();
    Ok(html! {
        dl.facts {
            dt { "Region" } dd { (w.region.as_str()) }
            dt { "Workload tag" } dd { code { (w.workload_tag.key.as_str()) "=" (w.workload_tag.value.as_str()) } }
            dt { "Tier tag" } dd { code { (w.tier_tag_key.as_str()) } }
            dt { "Schedules wish now" } dd { (wish.wish.as_str()) @if let Some(p) = &wish.period { " (" (p) ")" } }
            dt { "Observed" } dd { (when(status.observed_at)) }
        }
        @if let Some(r) = status.last_run.as_ref().filter(|r| r.status == "running") {
            p.notice role="status" {
                "A " (r.action) " is under way: " a href={"/run/" (urlpath(&r.id))} { "follow run " code { (r.id) } }
            }
        }
        @if may_act(who) { (actions(&w)) }
        section aria-labelledby="tiers-h" {
            h2 #tiers-h { "Tiers in start order" }
            @match &health { Err(e) => { p.warn { "Load-balancer health unknown: " (e) } } Ok(_) => {} }
            @for t in start_order(&w, &status) {
                @let spec = w.tier(&t.name);
                section.tier-block data-tier=(t.name) {
                    h3 {
                        (t.name) " "
                        span.muted {
                            "start order " (spec.and_then(|s| s.start.as_ref()).map_or("—".to_string(), |s| s.sequencing.order.to_string()))
                            ", stop order " (spec.and_then(|s| s.stop.as_ref()).map_or("—".to_string(), |s| s.sequencing.order.to_string()))
                        }
                        " " (chips(Counts::of(t)))
                    }
                    div.scroll {
                        table.list {
                            thead { tr { th { "Instance" } th { "Type" } th { "Zone" } th { "State" } th { "Load balancer" } th { "Exempt from stops" } } }
                            tbody {
                                @for m in &t.members {
                                    tr {
                                        td { code { (m.instance.id) } @if let Some(n) = m.instance.tags.get("Name") { br; span.muted { (n) } } }
                                        td { (m.instance.instance_type) }
                                        td { (m.instance.az) }
                                        td { (badge(m.instance.state.to_string().as_str())) }
                                        td {
                                            @match health.as_ref().ok().and_then(|h| h.get(&m.instance.id)) {
                                                Some(list) => { @for (target, h) in list { span.lb { (target) ": " (format!("{h:?}").to_lowercase()) } br; } }
                                                None => {
                                                    @match &m.instance.load_balancers {
                                                        Some(l) if !l.is_empty() => { (l.join(", ")) }
                                                        _ => (none()),
                                                    }
                                                }
                                            }
                                        }
                                        td { @match &m.kept_by { Some(why) => { span.exempt { "⚑ " (why) } } None => { "no" } } }
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
        section aria-labelledby="profiles-h" {
            h2 #profiles-h { "Profiles" }
            @if profiles.is_empty() { p.muted { "None." } } @else {
                div.scroll { table.list {
                    thead { tr { th { "Profile" } @for t in w.tiers() { th { (t.name.as_str()) } } } }
                    tbody { @for p in &profiles { tr {
                        th scope="row" { (p) }
                        @for t in w.tiers() {
                            td { @match t.profiles.iter().find(|(k, _)| k.as_str() == *p) {
                                Some((_, pr)) => {
                                    @if let Some(ty) = &pr.instance_type { (ty.as_str()) }
                                    @if let Some(fs) = &pr.fleet_subset { " · " (fs) }
                                }
                                None => (none()),
                            } }
                        }
                    } } }
                } }
            }
        }
        section aria-labelledby="schedules-h" {
            h2 #schedules-h { "Schedules" }
            @if w.schedules.is_empty() { p.muted { "None: only runs asked for start or stop it." } }
            @for s in &w.schedules {
                h3 { (s.name) " " span.muted { (s.zone.name()) } }
                ul { @for (i, p) in s.periods.iter().enumerate() {
                    li { (p.label(i)) ": "
                        @if let Some(t) = p.start { "start " (t.format("%H:%M")) " " }
                        @if let Some(t) = p.stop { "stop " (t.format("%H:%M")) " " }
                        span.muted { (days(&p.days)) }
                        @if let Some(pr) = &p.profile { " · profile " (pr) }
                    }
                } }
                @if !s.skip.is_empty() {
                    p { "Skip dates: " @for (i, d) in s.skip.iter().enumerate() {
                        @if i > 0 { ", " } (d.day) @if let Some(l) = &d.label { " (" (l) ")" }
                    } }
                }
            }
            @if !next.is_empty() {
                h3 { "Next events" }
                ul.events { @for e in &next { li {
                    time datetime=(e.at.to_rfc3339()) { (e.at.format("%a %Y-%m-%d %H:%M")) " " (e.timezone) } " "
                    (e.action) @if let Some(p) = &e.profile { " (" (p) ")" } " · " (e.schedule) "/" (e.period)
                    @if let Some(s) = &e.skipped { " · " span.skipped { "skipped: " (s) } }
                    @if let Some(o) = &e.by_override { " · " span.override { "override " (o) } }
                } } }
            }
        }
        section aria-labelledby="overrides-h" {
            h2 #overrides-h { "Overrides" }
            @if overrides.is_empty() { p.muted { "None in force." } }
            ul { @for o in &overrides { li { (o.to_string()) } } }
        }
        section aria-labelledby="exemptions-h" {
            h2 #exemptions-h { "Stored exemptions" }
            @let mine: Vec<_> = exemptions.iter().filter(|e| members.contains(e.instance_id.as_str())).collect();
            @if mine.is_empty() { p.muted { "None for this workload's instances (tags are shown with each instance)." } }
            ul { @for e in mine { li {
                code { (e.instance_id) } " "
                @match e.until { Some(u) => { "until " (when(u)) } None => { "until removed" } }
                @if !e.reason.is_empty() { " · " (e.reason) }
            } } }
        }
        section aria-labelledby="runs-h" {
            h2 #runs-h { "Recent runs" }
            @if runs.is_empty() { p.muted { "None yet." } }
            div.scroll { table.list {
                tbody { @for r in runs.iter().take(10) { tr {
                    td { a href={"/run/" (r.id)} { code { (r.id) } } }
                    td { (r.action) }
                    td { (badge(&r.status)) }
                    td { (when(r.started)) }
                } } }
            } }
        }
    })
}

/// The days a period's filter matches, as text.
fn days(d: &ec2_scheduler_core::calendar::DayFilter) -> String {
    fn list<T: ToString>(items: &[T]) -> String {
        items
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join(", ")
    }
    let mut parts: Vec<String> = Vec::new();
    if !d.weekdays.is_empty() {
        parts.push(list(&d.weekdays));
    }
    if !d.monthdays.is_empty() {
        parts.push(format!("days {}", list(&d.monthdays)));
    }
    if !d.months.is_empty() {
        parts.push(format!("months {}", list(&d.months)));
    }
    if parts.is_empty() {
        "every day".into()
    } else {
        parts.join("; ")
    }
}

#[derive(Deserialize)]
pub(crate) struct ActionForm {
    action: String,
    #[serde(default)]
    profile: Option<String>,
    #[serde(default)]
    key: Option<String>,
}

/// What a plan does, step by step.
pub(crate) fn plan_view(plan: &Plan) -> Markup {
    let s = &plan.summary;
    html! {
        p.summary #plan-summary {
            (plan.action) " of " (plan.workload)
            @if let Some(p) = &plan.profile { " with profile " (p) }
            ": " (s.members) " members, "
            @match plan.action {
                Action::Start => { (s.to_start) " to start, " (s.to_resize) " to resize" }
                Action::Stop => { (s.to_stop) " to stop" }
            }
            ", " (s.excluded) " left alone"
        }
        @if plan.is_empty() { p #nothing { "Nothing to do: every tier is already as asked." } }
        ol.stages #plan {
            @for (i, st) in plan.stages.iter().enumerate() {
                li {
                    strong { "Stage " (i + 1) } span.muted { " (order " (st.order) ")" }
                    ul { @for t in &st.tiers { li.plan-tier data-tier=(t.tier) {
                        strong { (t.tier) } " · " (t.members) " members, " (t.up) " up, " (t.down) " down"
                        @if let Some(n) = t.target { ", " (n) " to run" }
                        @if t.steps.is_empty() { " · nothing to do" }
                        ol.steps { @for step in &t.steps { li { (step_text(step)) } } }
                    } } }
                }
            }
        }
        @if !plan.excluded.is_empty() {
            h3 { "Left alone" }
            ul { @for e in &plan.excluded { li { code { (e.instance) } " (" (e.tier) "): " (e.reason.describe()) } } }
        }
        @if !plan.notes.is_empty() {
            h3 { "Notes" }
            ul { @for n in &plan.notes { li { @if let Some(t) = &n.tier { (t) ": " } (n.message) } } }
        }
    }
}

fn step_text(step: &Step) -> Markup {
    let n = step.instances().count();
    html! {
        span.step { (step_label(step.name())) }
        @match step {
            Step::Resize { changes } => {
                " " (changes.len()) " instances: "
                @let pairs = resize_pairs(changes);
                @for (i, ((from, to), k)) in pairs.iter().enumerate() { @if i > 0 { ", " } (k) "× " (from) " → " (to) }
            }
            Step::WaitUntil { state, .. } => { " until " (n) " are " (state) }
            Step::Pause { seconds, .. } => { " " (seconds) " s" }
            Step::Ready { gate, timeout_secs, .. } => { " " (gate.as_str()) " for " (n) " instances, at most " (timeout_secs) " s" }
            _ => { " " (n) " instances" }
        }
    }
}

/// How many instances go from each type to each other type.
fn resize_pairs(changes: &[ec2_scheduler_core::plan::Resize]) -> BTreeMap<(&str, &str), usize> {
    let mut pairs = BTreeMap::new();
    for c in changes {
        *pairs.entry((c.from.as_str(), c.to.as_str())).or_default() += 1;
    }
    pairs
}

/// A step's name as the pages show it.
pub(crate) fn step_label(name: &str) -> &str {
    match name {
        "probe-override" => "probe",
        "ready" => "gate",
        other => other,
    }
}

pub(crate) async fn plan(
    S(state): S<State>,
    Signed(who): Signed,
    Path(name): Path<String>,
    Query(form): Query<ActionForm>,
) -> Response {
    let w = match state.app.stored_workload(&name).await {
        Ok(w) => w,
        Err(e) => return problem_page(Some(&who), e.into()),
    };
    let req = match run_request(&form.action, form.profile.clone(), false) {
        Ok(r) => r,
        Err(p) => return problem_page(Some(&who), p),
    };
    let plan = match state.clouds.get(&state.app, &w).await {
        Ok(cloud) => state.app.dry_run(&cloud, &w, &req).await,
        Err(e) => Err(e),
    };
    let plan = match plan {
        Ok(p) => p,
        Err(e) => return problem_page(Some(&who), e.into()),
    };
    let title = format!("Dry run: {} {}", req.action, w.name);
    let body = html! {
        p { "Nothing has been changed. This is what a " (req.action) " would do now:" }
        (plan_view(&plan))
        @if may_act(&who) && !plan.is_empty() {
            form.confirm method="post" action={"/workload/" (urlpath(&name)) "/run"} {
                input type="hidden" name="action" value=(req.action.to_string().to_lowercase());
                input type="hidden" name="profile" value=(form.profile.as_deref().unwrap_or(""));
                input type="hidden" name="key" value=(form_key());
                button type="submit" #confirm {
                    "Confirm: " (req.action) " " (w.name.as_str())
                    @if let Some(p) = &req.profile { " with " (p) }
                }
                " "
                a href={"/workload/" (urlpath(&name))} { "Cancel" }
            }
        }
    };
    ok_page(&title, &who, Nav::Workloads, body)
}

pub(crate) async fn start(
    S(state): S<State>,
    Signed(who): Signed,
    Path(name): Path<String>,
    Form(form): Form<ActionForm>,
) -> Response {
    if let Some(refused) = need_operator(&who, "starting and stopping") {
        return refused;
    }
    let w = match state.app.stored_workload(&name).await {
        Ok(w) => w,
        Err(e) => return problem_page(Some(&who), e.into()),
    };
    let req = match run_request(&form.action, form.profile.clone(), false) {
        Ok(r) => r,
        Err(p) => return problem_page(Some(&who), p),
    };
    let key = form.key.as_deref().filter(|k| !k.is_empty());
    match begin_run(&state, &w, &req, key, &who.name).await {
        Ok(Begun::Accepted { run_id, .. }) => {
            state.reads.clear();
            Redirect::to(&format!("/run/{}", urlpath(&run_id))).into_response()
        }
        Ok(Begun::NothingToDo(plan)) => ok_page(
            &format!("Nothing to do: {} {}", req.action, w.name),
            &who,
            Nav::Workloads,
            plan_view(&plan),
        ),
        Err(p) if p.kind() == Some(ProblemKind::Locked) => {
            let run = p.run_id.clone().unwrap_or_default();
            html_response(
                StatusCode::CONFLICT,
                page(
                    "Busy",
                    Some(&who),
                    Nav::Workloads,
                    html! {
                        p.error role="alert" { (p.detail) }
                        p { a href={"/run/" (urlpath(&run))} { "See the run that holds it" } }
                    },
                ),
            )
        }
        Err(p) => problem_page(Some(&who), p),
    }
}

pub(crate) async fn run(
    S(state): S<State>,
    Signed(who): Signed,
    Path(id): Path<String>,
) -> Response {
    let run = match state.app.run_record(&id).await {
        Ok(r) => r,
        Err(e) => return problem_page(Some(&who), e.into()),
    };
    let now = super::now(&state).await;
    let finished = run.status.is_finished();
    let title = format!(
        "{} of {}{}",
        run.action,
        run.workload,
        run.profile
            .as_deref()
            .map(|p| format!(" with {p}"))
            .unwrap_or_default()
    );
    let body = html! {
        dl.facts {
            dt { "Run" } dd { code { (run.id) } }
            dt { "Workload" } dd { a href={"/workload/" (urlpath(&run.workload))} { (run.workload) } }
            dt { "Asked by" } dd { (run.requested_by.as_deref().unwrap_or(&run.owner)) }
            dt { "Began" } dd { (when(run.started)) }
        }
        div #live data-src={"/run/" (urlpath(&run.id)) "/live"} data-finished=(finished) {
            (live(&run, now, may_act(&who)))
        }
        details {
            summary { "The plan it follows" }
            (plan_view(&run.plan))
        }
    };
    ok_page(&title, &who, Nav::Workloads, body)
}

pub(crate) async fn run_live(
    S(state): S<State>,
    Signed(who): Signed,
    Path(id): Path<String>,
) -> Response {
    match state.app.run_record(&id).await {
        Ok(run) => html_response(
            StatusCode::OK,
            live(&run, super::now(&state).await, may_act(&who)),
        ),
        Err(e) => {
            let p: crate::Problem = e.into();
            let status =
                StatusCode::from_u16(p.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
            html_response(status, html! { p.error { (p.detail) } })
        }
    }
}

/// What changes while a run goes on: status, counts, the timeline, calls, failures;
/// and while it is unfinished, a cancel button for those who may act.
fn live(run: &Run, now: DateTime<Utc>, act: bool) -> Markup {
    let finished = run.status.is_finished();
    html! {
        div data-finished=(finished) {
            @if act && !finished {
                form.inline method="post" action={"/run/" (urlpath(&run.id)) "/cancel"} {
                    button type="submit" #cancel { "Cancel this run" }
                    span.muted { " Records it as cancelled and releases its lock; nothing is undone." }
                }
            }
            p #run-status aria-live="polite" {
                (badge(run.status.as_str()))
                " · " (duration(run.elapsed_secs(now)))
                @if let Some(f) = run.finished { " · finished " (when(f)) }
            }
            @if let Some(e) = &run.error { p.error { (e) } }
            ul.counts {
                li { "started " strong { (run.started_ids.len()) } }
                li { "stopped " strong { (run.stopped_ids.len()) } }
                li { "resized " strong { (run.resized_ids.len()) } }
                li { "kept " strong { (run.kept.len()) } }
                li { "failed " strong { (run.failed.len()) } }
                li { "API calls " strong { (run.total_calls()) } @if run.retried > 0 { " (" (run.retried) " retried)" } }
            }
            (super::timeline::timeline(run, now))
            details #calls {
                summary { "API calls by action" }
                table.list { tbody { @for (action, n) in &run.calls { tr { td { code { (action) } } td.num { (n) } } } } }
            }
            @if !run.failed.is_empty() {
                h2 { "Failures" }
                table.list { tbody { @for (id, f) in &run.failed { tr { td { code { (id) } } td { (f.tier) } td { (f.reason) } } } } }
            }
            @if !run.kept.is_empty() {
                details #kept {
                    summary { "Left alone during the run (" (run.kept.len()) ")" }
                    table.list { tbody { @for (id, k) in &run.kept { tr { td { code { (id) } } td { (k.tier) } td { (k.reason) } } } } }
                }
            }
            section aria-labelledby="history-h" {
                h2 #history-h { "Events" }
                div.scroll { table.list {
                    thead { tr { th { "At" } th { "Tier" } th { "What" } } }
                    tbody { @for e in &run.history { tr {
                        td { (when(e.at)) } td { (e.tier.as_deref().unwrap_or("")) } td { (e.text()) }
                    } } }
                } }
            }
        }
    }
}

pub(crate) async fn cancel(
    S(state): S<State>,
    Signed(who): Signed,
    Path(id): Path<String>,
) -> Response {
    if let Some(refused) = need_operator(&who, "cancelling") {
        return refused;
    }
    match state.app.cancel(&id).await {
        Ok(_) => {
            state.reads.clear();
            Redirect::to(&format!("/run/{}", urlpath(&id))).into_response()
        }
        Err(e) => problem_page(Some(&who), e.into()),
    }
}
