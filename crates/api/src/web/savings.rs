//! Savings: instance-hours and money the schedules save per workload and per month,
//! forecast (from the schedules, for the whole month) and actual (from the run
//! history, up to now), as a bar chart with the figures in a table beside it.

use axum::extract::{Query, State as S};
use axum::response::Response;
use chrono::{DateTime, Datelike, NaiveDate, Utc};
use ec2_scheduler_app::savings::Prices;
use ec2_scheduler_core::Workload;
use maud::{Markup, html};
use serde::Deserialize;

use super::pages::urlpath;
use super::session::Signed;
use super::timeline::at1;
use super::{Nav, PER_PAGE, named, ok_page, page_of, problem_page};
use crate::State;

#[derive(Deserialize)]
pub(crate) struct SavingsQuery {
    q: Option<String>,
    page: Option<usize>,
}

/// One month of one workload (or of several, summed).
#[derive(Debug, Clone, Copy, Default)]
struct Month {
    forecast_hours: f64,
    forecast: f64,
    /// `None` for a month that has not begun.
    actual_hours: Option<f64>,
    actual: Option<f64>,
}

/// The first day of the month `k` months after the month of `d`.
fn month_start(d: NaiveDate, k: i32) -> NaiveDate {
    let m = d.year() * 12 + d.month0() as i32 + k;
    NaiveDate::from_ymd_opt(m.div_euclid(12), m.rem_euclid(12) as u32 + 1, 1).unwrap_or(d)
}

fn midnight(d: NaiveDate) -> DateTime<Utc> {
    d.and_time(chrono::NaiveTime::MIN).and_utc()
}

async fn months_of(
    state: &State,
    w: &Workload,
    months: &[NaiveDate],
    now: DateTime<Utc>,
    prices: &Prices,
) -> Result<Vec<Month>, String> {
    let mut out = Vec::new();
    for m in months {
        let (from, to) = (midnight(*m), midnight(month_start(*m, 1)));
        let s = state
            .app
            .savings_seen(&state.clouds, w, from, to, prices)
            .await
            .map_err(|e| e.to_string())?;
        let begun = from <= now;
        out.push(Month {
            forecast_hours: s.lines.iter().map(|l| l.instance_hours_saved).sum(),
            forecast: s.saved,
            actual_hours: begun.then_some(s.actual.instance_hours_saved),
            actual: begun.then_some(s.actual.saved),
        });
    }
    Ok(out)
}

const W: f64 = 420.0;
const H: f64 = 180.0;
const BOTTOM: f64 = 24.0;

/// Grouped bars: forecast (hatched) and actual (solid) money per month.
fn chart(id: &str, months: &[NaiveDate], figures: &[Month], currency: &str) -> Markup {
    let top = figures
        .iter()
        .flat_map(|m| [m.forecast, m.actual.unwrap_or(0.0)])
        .fold(0.0_f64, f64::max)
        .max(0.01);
    let group = (W - 20.0) / months.len().max(1) as f64;
    let bar = (group - 16.0) / 2.0;
    let scale = (H - BOTTOM - 16.0) / top;
    let base = H - BOTTOM;
    let one = |x: f64, m: &NaiveDate, v: f64, fill: &str, what: &str| {
        let h = v.max(0.0) * scale;
        html! {
            rect x=(at1(x)) y=(at1(base - h)) width=(at1(bar)) height=(at1(h)) fill=(fill) stroke="#1b4f80" stroke-width="0.8" {
                title { (m.format("%b %Y")) " " (what) ": " (fixed(v, 2)) " " (currency) }
            }
            text x=(at1(x + bar / 2.0)) y=(at1(base - h - 3.0)) font-size="10" text-anchor="middle" fill="#111111" { (fixed(v, 0)) }
        }
    };
    html! {
        svg.savings-chart viewBox=(format!("0 0 {W} {H}")) role="img" aria-labelledby=(format!("sv-{id}")) xmlns="http://www.w3.org/2000/svg" {
            title #(format!("sv-{id}")) { "Money saved per month in " (currency) ": forecast (hatched) and actual (solid)" }
            // The pattern once a page: later charts use the first one's.
            @if id == "total" { defs {
                pattern #s-forecast width="8" height="8" patternUnits="userSpaceOnUse" patternTransform="rotate(45)" {
                    rect width="8" height="8" fill="#cfe0f3" {}
                    line x1="0" y1="0" x2="0" y2="8" stroke="#2c6fb0" stroke-width="3" {}
                }
            } }
            line x1="10" y1=(at1(base)) x2=(at1(W - 10.0)) y2=(at1(base)) stroke="#333333" {}
            @for (i, (m, f)) in months.iter().zip(figures).enumerate() {
                @let gx = 10.0 + group * i as f64 + 8.0;
                (one(gx, m, f.forecast, "url(#s-forecast)", "forecast"))
                @if let Some(a) = f.actual { (one(gx + bar, m, a, "#2c6fb0", "actual")) }
                text x=(at1(gx + bar)) y=(at1(H - 8.0)) font-size="11" text-anchor="middle" fill="#333333" { (m.format("%b %Y")) }
            }
        }
    }
}

/// `v` with `decimals` decimals; a sum that rounds to nothing shows as 0, never -0.
fn fixed(v: f64, decimals: usize) -> String {
    let text = format!("{v:.decimals$}");
    if text
        .trim_start_matches('-')
        .chars()
        .all(|c| c == '0' || c == '.')
    {
        text.trim_start_matches('-').to_string()
    } else {
        text
    }
}

fn figures_table(months: &[NaiveDate], figures: &[Month], currency: &str) -> Markup {
    let money = |v: f64| fixed(v, 2);
    html! {
        table.list.figures {
            thead { tr { th { "Month" } th { "Forecast h" } th { "Forecast " (currency) } th { "Actual h" } th { "Actual " (currency) } } }
            tbody { @for (m, f) in months.iter().zip(figures) { tr {
                th scope="row" { (m.format("%b %Y")) }
                td.num { (fixed(f.forecast_hours, 1)) }
                td.num { (money(f.forecast)) }
                td.num { @match f.actual_hours { Some(h) => (fixed(h, 1)), None => "—" } }
                td.num { @match f.actual { Some(a) => (money(a)), None => "—" } }
            } } }
        }
    }
}

pub(crate) async fn savings(
    S(state): S<State>,
    Signed(who): Signed,
    Query(q): Query<SavingsQuery>,
) -> Response {
    let now = super::now(&state).await;
    let all = match state.reads.workloads(&state.app).await {
        Ok(w) => w,
        Err(p) => return problem_page(Some(&who), p),
    };
    let needle = q.q.as_deref().unwrap_or("").trim().to_lowercase();
    let shown = named(&all, &needle);
    let (at, pages) = page_of(shown.len(), q.page);
    let this = now.date_naive();
    let months: Vec<NaiveDate> = (-2..=1).map(|k| month_start(this, k)).collect();
    let prices = Prices::bundled();
    let currency = prices.currency.clone();
    let mut totals = vec![Month::default(); months.len()];
    let mut rows: Vec<(String, Result<Vec<Month>, String>)> = Vec::new();
    for w in shown.iter().skip((at - 1) * PER_PAGE).take(PER_PAGE) {
        let figures = months_of(&state, w, &months, now, &prices).await;
        if let Ok(f) = &figures {
            for (t, m) in totals.iter_mut().zip(f) {
                t.forecast_hours += m.forecast_hours;
                t.forecast += m.forecast;
                if let (Some(h), Some(a)) = (m.actual_hours, m.actual) {
                    t.actual_hours = Some(t.actual_hours.unwrap_or(0.0) + h);
                    t.actual = Some(t.actual.unwrap_or(0.0) + a);
                }
            }
        }
        rows.push((w.name.to_string(), figures));
    }
    let link = |page: usize| {
        let mut s = format!("/savings?page={page}");
        if !needle.is_empty() {
            s.push_str("&q=");
            s.push_str(&urlpath(&needle));
        }
        s
    };
    let body = html! {
        form.filter method="get" action="/savings" {
            label for="q" { "Filter" }
            input #q type="search" name="q" value=(needle) placeholder="workload name";
            button type="submit" { "Show" }
        }
        p.muted {
            "Against running always. Forecast: what the schedules (and overrides) let stop over the whole month, with the instances as they are now. "
            "Actual: what runs really kept stopped, up to now. Prices: the bundled on-demand table of " (prices.as_of) " (" (currency) ")."
        }
        p.legend { span.key.k-forecast { "forecast (hatched)" } span.key.k-actual { "actual (solid)" } }
        section.savings-row #savings-total {
            h2 { "These " (rows.len()) " workloads" }
            div.pair {
                (chart("total", &months, &totals, &currency))
                (figures_table(&months, &totals, &currency))
            }
        }
        @for (i, (name, figures)) in rows.iter().enumerate() {
            section.savings-row data-workload=(name) {
                h2 { a href={"/workload/" (urlpath(name))} { (name) } }
                @match figures {
                    Ok(f) => {
                        div.pair {
                            (chart(&i.to_string(), &months, f, &currency))
                            (figures_table(&months, f, &currency))
                        }
                    }
                    Err(e) => { p.error { (e) } }
                }
            }
        }
        @if pages > 1 {
            nav.pager aria-label="Pages" {
                @if at > 1 { a href=(link(at - 1)) { "← Previous" } }
                span { "Page " (at) " of " (pages) }
                @if at < pages { a href=(link(at + 1)) { "Next →" } }
            }
        }
    };
    ok_page("Savings", &who, Nav::Savings, body)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn figures_never_show_minus_zero() {
        assert_eq!(fixed(-0.0001, 1), "0.0");
        assert_eq!(fixed(-1.25, 1), "-1.2");
        assert_eq!(fixed(3.0, 0), "3");
    }

    #[test]
    fn months_roll_over_years_both_ways() {
        let d = NaiveDate::from_ymd_opt(2026, 12, 1).unwrap();
        assert_eq!(
            month_start(d, 1),
            NaiveDate::from_ymd_opt(2027, 1, 1).unwrap()
        );
        assert_eq!(
            month_start(d, -12),
            NaiveDate::from_ymd_opt(2025, 12, 1).unwrap()
        );
        let j = NaiveDate::from_ymd_opt(2026, 1, 31).unwrap();
        assert_eq!(
            month_start(j, -1),
            NaiveDate::from_ymd_opt(2025, 12, 1).unwrap()
        );
    }
}
