//! The week's schedule: for each workload with schedules, what they wish (running,
//! stopped, no wish) over the seven days of this week, with the events, skip dates
//! (holidays) and overrides marked; in each schedule's own zone, or in one zone the
//! viewer names (their own, filled in by the page's script).

use std::collections::HashMap;

use axum::extract::{Query, State as S};
use axum::http::StatusCode;
use axum::response::Response;
use chrono::{DateTime, Datelike, Duration, NaiveDate, Utc};
use ec2_scheduler_core::Workload;
use ec2_scheduler_core::overrides::Override;
use ec2_scheduler_core::schedule::{EventKind, Timetable, Wish};
use ec2_scheduler_core::zone::Zone;
use maud::{Markup, html};
use serde::Deserialize;

use super::pages::urlpath;
use super::session::Signed;
use super::timeline::at1;
use super::{Nav, PER_PAGE, named, ok_page, page_of, problem_page};
use crate::State;

#[derive(Deserialize)]
pub(crate) struct WeekQuery {
    /// Show every workload in this zone (IANA name); default: each schedule's own.
    tz: Option<String>,
    q: Option<String>,
    page: Option<usize>,
    /// Weeks from this one (-52 to 52).
    week: Option<i64>,
}

/// One stretch of time with one wish.
struct Segment {
    from: DateTime<Utc>,
    to: DateTime<Utc>,
    wish: Wish,
}

/// What one workload's schedules do over `[from, to)`.
struct WeekOf {
    segments: Vec<Segment>,
    /// (instant, kind, fired, what): events that fire and those kept from firing.
    events: Vec<(DateTime<Utc>, EventKind, bool, String)>,
    /// (date in the schedule's zone, label) of skip dates in the week.
    holidays: Vec<(NaiveDate, String)>,
}

fn week_of(w: &Workload, overrides: &[Override], from: DateTime<Utc>, to: DateTime<Utc>) -> WeekOf {
    let tt = Timetable::new(&w.schedules).with_overrides(overrides);
    let changes = tt.changes(from, to);
    let mut segments: Vec<Segment> = Vec::new();
    for (i, (at, d)) in changes.iter().enumerate() {
        let end = changes.get(i + 1).map_or(to, |(t, _)| *t);
        let start = (*at).max(from);
        if end <= start {
            continue;
        }
        match segments.last_mut() {
            Some(last) if last.wish == d.wish => last.to = end,
            _ => segments.push(Segment {
                from: start,
                to: end,
                wish: d.wish,
            }),
        }
    }
    // `events` leaves out its first instant; an event at midnight on Monday is in.
    let events = tt
        .events(from - Duration::seconds(1), to)
        .into_iter()
        .filter(|e| e.at >= from && e.at < to)
        .map(|e| {
            let what = match (&e.skipped, &e.by_override) {
                (Some(why), _) => format!("{} kept from firing: {why}", e.kind),
                (None, Some(o)) => format!("{} (override {o})", e.kind),
                (None, None) => match &e.profile {
                    Some(p) => format!("{} with {p}", e.kind),
                    None => e.kind.to_string(),
                },
            };
            (e.at, e.kind, e.skipped.is_none(), what)
        })
        .collect();
    let mut holidays = Vec::new();
    for s in &w.schedules {
        let (first, last) = (s.zone.date(from), s.zone.date(to - Duration::seconds(1)));
        let mut d = first;
        while d <= last {
            for sd in s.skip.iter().filter(|sd| sd.day.matches(d)) {
                let label = match (&sd.label, &sd.calendar) {
                    (Some(l), Some(c)) => format!("{l} ({c})"),
                    (Some(l), None) => l.clone(),
                    (None, Some(c)) => format!("skip date ({c})"),
                    (None, None) => "skip date".to_string(),
                };
                if !holidays.iter().any(|(hd, hl)| *hd == d && *hl == label) {
                    holidays.push((d, label));
                }
            }
            d = d.succ_opt().unwrap_or(d);
            if d == NaiveDate::MAX {
                break;
            }
        }
    }
    WeekOf {
        segments,
        events,
        holidays,
    }
}

const LABEL: f64 = 150.0;
const WIDTH: f64 = 1000.0;
const ROW: f64 = 26.0;
const TOP: f64 = 20.0;

fn wish_fill(w: Wish) -> &'static str {
    match w {
        Wish::Running => "url(#w-running)",
        Wish::Stopped => "url(#w-stopped)",
        Wish::Any => "url(#w-any)",
    }
}

/// Seven rows (Monday to Sunday in `zone`), each a day from midnight to midnight.
fn week_svg(
    id: usize,
    zone: &Zone,
    monday: NaiveDate,
    week: &WeekOf,
    now: DateTime<Utc>,
) -> Markup {
    let height = TOP + ROW * 7.0 + 4.0;
    let span = WIDTH - LABEL - 6.0;
    let days: Vec<NaiveDate> = (0..7).map(|k| monday + Duration::days(k)).collect();
    html! {
        svg.week viewBox=(format!("0 0 {WIDTH} {height}")) role="img" aria-labelledby=(format!("wk-{id}")) xmlns="http://www.w3.org/2000/svg" {
            title #(format!("wk-{id}")) { "The week from " (monday) " in " (zone.name()) ": running, stopped or no wish, with events" }
            // The patterns once a page: later weeks use the first one's.
            @if id == 0 { defs {
                pattern #w-running width="6" height="6" patternUnits="userSpaceOnUse" {
                    rect width="6" height="6" fill="#3f9a64" {}
                }
                pattern #w-stopped width="8" height="8" patternUnits="userSpaceOnUse" patternTransform="rotate(45)" {
                    rect width="8" height="8" fill="#c9c9c9" {}
                    line x1="0" y1="0" x2="0" y2="8" stroke="#7d7d7d" stroke-width="3" {}
                }
                pattern #w-any width="6" height="6" patternUnits="userSpaceOnUse" {
                    rect width="6" height="6" fill="#ffffff" {}
                    circle cx="3" cy="3" r="1" fill="#999999" {}
                }
            } }
            @for h in [0u32, 6, 12, 18, 24] {
                text x=(at1(LABEL + span * f64::from(h) / 24.0)) y="13" font-size="11"
                    text-anchor=(if h == 24 { "end" } else { "middle" }) fill="#333333" { (format!("{h:02}:00")) }
            }
            @for (row, day) in days.iter().enumerate() {
                @let (d0, d1) = (zone.start_of(*day), zone.start_of(*day + Duration::days(1)));
                @let len = (d1 - d0).num_seconds().max(1) as f64;
                @let x = |t: DateTime<Utc>| LABEL + span * ((t - d0).num_seconds() as f64 / len).clamp(0.0, 1.0);
                @let y = TOP + ROW * row as f64;
                @let holiday = week.holidays.iter().find(|(d, _)| d == day);
                text x="4" y=(at1(y + 16.0)) font-size="12" fill="#111111" {
                    (day.format("%a %d %b")) @if holiday.is_some() { " ✱ holiday" }
                }
                @for seg in week.segments.iter().filter(|seg| seg.to > d0 && seg.from < d1) {
                    @let (a, b) = (x(seg.from.max(d0)), x(seg.to.min(d1)));
                    rect x=(at1(a)) y=(at1(y + 3.0)) width=(at1((b - a).max(0.5))) height=(at1(ROW - 6.0))
                        fill=(wish_fill(seg.wish)) stroke="#555555" stroke-width="0.4" {
                        title {
                            (seg.wish.as_str()) ": " (zone.local(seg.from.max(d0)).format("%a %H:%M"))
                            " – " (zone.local(seg.to.min(d1)).format("%a %H:%M"))
                        }
                    }
                }
                @if let Some((_, label)) = holiday {
                    rect.holiday x=(LABEL) y=(at1(y + 1.0)) width=(at1(span)) height=(at1(ROW - 2.0)) fill="none"
                        stroke="#b8860b" stroke-width="2" stroke-dasharray="6 3" {
                        title { "Holiday: " (label) }
                    }
                }
                @for (at, kind, fired, what) in week.events.iter().filter(|e| e.0 >= d0 && e.0 < d1) {
                    @let ex = x(*at);
                    @let (d, color) = match kind {
                        EventKind::Start => (format!("M{ex:.1} {:.1} l6 10 h-12 z", y + 3.0), "#0b5d2e"),
                        EventKind::Stop => (format!("M{ex:.1} {:.1} l6 -10 h-12 z", y + ROW - 3.0), "#7a1f12"),
                    };
                    path d=(d) fill=(if *fired { color } else { "#ffffff" }) stroke=(color) stroke-width="1.5" {
                        title { (zone.local(*at).format("%a %H:%M")) " " (what) }
                    }
                }
                @if now >= d0 && now < d1 {
                    line x1=(at1(x(now))) y1=(at1(y)) x2=(at1(x(now))) y2=(at1(y + ROW)) stroke="#d62828" stroke-width="2" {
                        title { "now" }
                    }
                }
            }
        }
    }
}

pub(crate) async fn schedule(
    S(state): S<State>,
    Signed(who): Signed,
    Query(q): Query<WeekQuery>,
) -> Response {
    let now = super::now(&state).await;
    let view = match q.tz.as_deref().map(str::trim).filter(|t| !t.is_empty()) {
        None => None,
        Some(name) => match ec2_scheduler_config::schedules::zone(name) {
            Ok(z) => Some(z),
            Err(e) => {
                return super::error_page(
                    Some(&who),
                    StatusCode::BAD_REQUEST,
                    &format!("time zone {name:?}: {e}"),
                );
            }
        },
    };
    let weeks = q.week.unwrap_or(0).clamp(-52, 52);
    let all = match state.reads.workloads(&state.app).await {
        Ok(w) => w,
        Err(p) => return problem_page(Some(&who), p),
    };
    let needle = q.q.as_deref().unwrap_or("").trim().to_lowercase();
    let mut scheduled = named(&all, &needle);
    scheduled.retain(|w| !w.schedules.is_empty());
    let (at, pages) = page_of(scheduled.len(), q.page);
    let mut overrides: HashMap<String, Vec<Override>> = HashMap::new();
    match state.app.overrides(None, false, now).await {
        Ok(list) => {
            for o in list {
                overrides.entry(o.workload.clone()).or_default().push(o);
            }
        }
        Err(e) => return problem_page(Some(&who), e.into()),
    }
    let link = |page: usize, week: i64| {
        let mut s = format!("/schedule?page={page}&week={week}");
        if let Some(z) = &view {
            s.push_str("&tz=");
            s.push_str(&urlpath(z.name()));
        }
        if !needle.is_empty() {
            s.push_str("&q=");
            s.push_str(&urlpath(&needle));
        }
        s
    };
    let mut blocks: Vec<Markup> = Vec::new();
    for (i, w) in scheduled
        .iter()
        .skip((at - 1) * PER_PAGE)
        .take(PER_PAGE)
        .enumerate()
    {
        let own = &w.schedules[0].zone;
        let zone = view.as_ref().unwrap_or(own);
        let today = zone.date(now) + Duration::weeks(weeks);
        let monday = today - Duration::days(i64::from(today.weekday().num_days_from_monday()));
        let (from, to) = (
            zone.start_of(monday),
            zone.start_of(monday + Duration::days(7)),
        );
        let none: Vec<Override> = Vec::new();
        let ovs = overrides.get(w.name.as_str()).unwrap_or(&none);
        let week = week_of(w, ovs, from, to);
        let svg = week_svg(i, zone, monday, &week, now);
        blocks.push(html! {
            section.week-block data-workload=(w.name.as_str()) {
                h2 { a href={"/workload/" (urlpath(w.name.as_str()))} { (w.name.as_str()) } " " span.muted { "in " (zone.name()) @if view.is_some() { " (schedule: " (own.name()) ")" } } }
                (svg)
                @if !week.holidays.is_empty() {
                    p.holidays { "✱ Holidays: " @for (k, (d, l)) in week.holidays.iter().enumerate() { @if k > 0 { "; " } (d.format("%a %d %b")) " " (l) } }
                }
                @if !ovs.is_empty() {
                    p.overrides { "Overrides: " @for (k, o) in ovs.iter().enumerate() { @if k > 0 { "; " } (o.to_string()) } }
                }
                details {
                    summary { "Events this week (" (week.events.len()) ")" }
                    div.scroll { table.list {
                        thead { tr { th { "In " (own.name()) } @if view.as_ref().is_some_and(|v| v.name() != own.name()) { th { "In " (zone.name()) } } th { "Event" } } }
                        tbody { @for (at, _, fired, what) in &week.events { tr.(if *fired { "fired" } else { "kept" }) {
                            td { (own.local(*at).format("%a %d %b %H:%M")) }
                            @if view.as_ref().is_some_and(|v| v.name() != own.name()) { td { (zone.local(*at).format("%a %d %b %H:%M")) } }
                            td { (what) }
                        } } }
                    } }
                }
            }
        });
    }
    let body = html! {
        form.filter method="get" action="/schedule" {
            label for="q" { "Filter" }
            input #q type="search" name="q" value=(needle) placeholder="workload name";
            label for="tz" { "Time zone" }
            input #tz type="text" name="tz" value=(view.as_ref().map_or("", |z| z.name())) placeholder="each schedule's own";
            input type="hidden" name="week" value=(weeks);
            button type="submit" { "Show" }
            a href=(link(1, weeks)) data-your-zone="" data-label="In your time zone" hidden { "In your time zone" }
        }
        p.legend {
            span.key.k-running { "running (solid)" } span.key.k-stopped { "stopped (hatched)" } span.key.k-any { "no wish (dotted)" }
            span { "▲ start, ▼ stop; hollow: kept from firing (skip date or override); ✱ holiday; red line: now" }
        }
        nav.pager aria-label="Weeks" {
            a href=(link(at, weeks - 1)) { "← Week before" }
            a href=(link(at, 0)) { "This week" }
            a href=(link(at, weeks + 1)) { "Week after →" }
        }
        @if scheduled.is_empty() { p.muted { "No workload has a schedule." } }
        @for b in &blocks { (b) }
        @if pages > 1 {
            nav.pager aria-label="Pages" {
                @if at > 1 { a href=(link(at - 1, weeks)) { "← Previous" } }
                span { "Page " (at) " of " (pages) }
                @if at < pages { a href=(link(at + 1, weeks)) { "Next →" } }
            }
        }
    };
    ok_page("Schedule: the week", &who, Nav::Schedule, body)
}
