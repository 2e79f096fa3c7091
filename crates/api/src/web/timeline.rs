//! A run as a timeline: one lane per tier, a bar per step from when it began to when
//! it was done (the step under way grows to now), drawn as SVG and listed in a table.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use ec2_scheduler_engine::Run;
use ec2_scheduler_engine::run::{Phase, RunEvent};
use maud::{Markup, html};

use super::pages::step_label;
use super::{duration, when};

/// One bar of the timeline.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Bar {
    pub tier: String,
    pub step: String,
    pub from: DateTime<Utc>,
    pub to: DateTime<Utc>,
    /// Still under way (`to` is now).
    pub ongoing: bool,
}

/// The tiers in the order the run meets them: the plan's stages, then any tier only
/// the rollback names.
fn lanes(run: &Run) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for st in run.plan.stages.iter().chain(&run.rollback) {
        for t in &st.tiers {
            if !out.contains(&t.tier) {
                out.push(t.tier.clone());
            }
        }
    }
    out
}

/// The bars of `run` as of `now`: each tier's steps from the history (a step runs
/// from the end of the one before it, or from the tier's start, to its `StepDone`),
/// and the step under way.
pub(crate) fn bars(run: &Run, now: DateTime<Utc>) -> Vec<Bar> {
    let mut out = Vec::new();
    let mut last: BTreeMap<&str, DateTime<Utc>> = BTreeMap::new();
    for (tier, timing) in &run.tiers {
        last.insert(tier.as_str(), timing.started);
    }
    for e in &run.history {
        let (Some(tier), Some(RunEvent::StepDone { step })) = (&e.tier, &e.event) else {
            continue;
        };
        let from = last
            .get(tier.as_str())
            .copied()
            .unwrap_or(run.started)
            .min(e.at);
        out.push(Bar {
            tier: tier.clone(),
            step: step.clone(),
            from,
            to: e.at,
            ongoing: false,
        });
        last.insert(tier.as_str(), e.at);
    }
    if !run.status.is_finished() {
        let stages = match run.cursor.phase {
            Phase::Forward => &run.plan.stages,
            Phase::Rollback => &run.rollback,
            Phase::Verify => return out,
        };
        if let Some(stage) = stages.get(run.cursor.stage) {
            for tp in &stage.tiers {
                let idx = run.cursor.steps.get(&tp.tier).copied().unwrap_or(0);
                let Some(step) = tp.steps.get(idx) else {
                    continue;
                };
                let Some(from) = run
                    .cursor
                    .began
                    .get(&tp.tier)
                    .copied()
                    .or_else(|| last.get(tp.tier.as_str()).copied())
                else {
                    continue;
                };
                out.push(Bar {
                    tier: tp.tier.clone(),
                    step: step.name().to_string(),
                    from: from.min(now),
                    to: now,
                    ongoing: true,
                });
            }
        }
    }
    out
}

const LABEL: f64 = 110.0;
const WIDTH: f64 = 1000.0;
const LANE: f64 = 34.0;
const BAR: f64 = 22.0;
const AXIS: f64 = 26.0;

/// The SVG fill of a step: a colour, and for the waiting kinds a pattern too, so that
/// bars differ without colour.
fn fill(step: &str) -> &'static str {
    match step {
        "wait" => "url(#p-wait)",
        "ready" => "url(#p-gate)",
        "pause" => "url(#p-pause)",
        "deregister" | "register" => "#8e6bbf",
        "stop" => "#b5523b",
        "start" => "#2f8f5b",
        "resize" => "#2c6fb0",
        _ => "#7a7a7a",
    }
}

/// `v` with one decimal, for SVG coordinates.
pub(crate) fn at1(v: f64) -> String {
    format!("{v:.1}")
}

/// The timeline of `run` as of `now`: an SVG chart and the same bars as a table.
pub(crate) fn timeline(run: &Run, now: DateTime<Utc>) -> Markup {
    let bars = bars(run, now);
    let lanes = lanes(run);
    let t0 = run.started;
    let t1 = run
        .finished
        .unwrap_or(now)
        .max(t0 + chrono::Duration::seconds(1));
    let span = (t1 - t0).num_milliseconds().max(1) as f64;
    let x = |t: DateTime<Utc>| {
        LABEL + (t - t0).num_milliseconds() as f64 / span * (WIDTH - LABEL - 10.0)
    };
    let height = AXIS + LANE * lanes.len().max(1) as f64 + 6.0;
    let took = |b: &Bar| duration((b.to - b.from).num_milliseconds() as f64 / 1000.0);
    // The time axis: five ticks, time from the start.
    let ticks: Vec<(f64, &str, String)> = (0..=4)
        .map(|i| {
            let t = t0 + chrono::Duration::milliseconds((span * f64::from(i) / 4.0) as i64);
            let anchor = match i {
                0 => "start",
                4 => "end",
                _ => "middle",
            };
            (
                x(t),
                anchor,
                duration((t - t0).num_milliseconds() as f64 / 1000.0),
            )
        })
        .collect();
    let svg = html! {
        svg.timeline viewBox=(format!("0 0 {WIDTH} {height}")) role="img" aria-labelledby="tl-title" xmlns="http://www.w3.org/2000/svg" {
            title #tl-title { "Timeline of run " (run.id) ": one lane per tier" }
            defs {
                pattern #p-wait width="8" height="8" patternUnits="userSpaceOnUse" patternTransform="rotate(45)" {
                    rect width="8" height="8" fill="#e3c770" {}
                    line x1="0" y1="0" x2="0" y2="8" stroke="#8a6d12" stroke-width="3" {}
                }
                pattern #p-gate width="8" height="8" patternUnits="userSpaceOnUse" {
                    rect width="8" height="8" fill="#9fd3c7" {}
                    path d="M0 4H8M4 0V8" stroke="#1f6f5c" stroke-width="1.5" {}
                }
                pattern #p-pause width="6" height="6" patternUnits="userSpaceOnUse" {
                    rect width="6" height="6" fill="#dddddd" {}
                    circle cx="3" cy="3" r="1.4" fill="#555555" {}
                }
            }
            @for (tx, anchor, label) in &ticks {
                line x1=(at1(*tx)) y1=(AXIS) x2=(at1(*tx)) y2=(height) stroke="#cccccc" {}
                text x=(at1(*tx)) y="16" font-size="12" text-anchor=(anchor) fill="#333333" { "+" (label) }
            }
            @for (i, lane) in lanes.iter().enumerate() {
                @let y = AXIS + LANE * i as f64;
                text x="4" y=(at1(y + LANE / 2.0 + 4.0)) font-size="13" fill="#111111" { (lane) }
                @for b in bars.iter().filter(|b| &b.tier == lane) {
                    @let (bx, bw) = (x(b.from), (x(b.to) - x(b.from)).max(2.0));
                    @let label = step_label(&b.step);
                    g.bar.ongoing[b.ongoing] data-step=(label) {
                        rect x=(at1(bx)) y=(at1(y + (LANE - BAR) / 2.0)) width=(at1(bw)) height=(BAR)
                            fill=(fill(&b.step)) stroke="#222222" stroke-width="0.6"
                            stroke-dasharray=[b.ongoing.then_some("4 2")] {}
                        title {
                            (lane) ": " (label) " " (b.from.format("%H:%M:%S")) " – " (b.to.format("%H:%M:%S"))
                            " (" (took(b)) ")" @if b.ongoing { ", under way" }
                        }
                        @if bw > 8.0 * label.len() as f64 {
                            text x=(at1(bx + 3.0)) y=(at1(y + LANE / 2.0 + 4.0)) font-size="11" fill="#000000"
                                stroke="#ffffff" stroke-width="3" paint-order="stroke" { (label) }
                        }
                    }
                }
            }
            // Type changes made ahead of a tier's stage: a marker when they were done.
            @for (tier, done) in &run.resized_ahead {
                @if let Some(i) = lanes.iter().position(|l| l == tier) {
                    @let (mx, my) = (x(*done), AXIS + LANE * i as f64 + 3.0);
                    path d=(format!("M{mx:.1} {my:.1} l5 5 l-5 5 l-5 -5 z")) fill="#2c6fb0" stroke="#ffffff" {
                        title { (tier) ": type changes made ahead, done " (done.format("%H:%M:%S")) }
                    }
                }
            }
        }
    };
    html! {
        figure.timeline-figure {
            (svg)
            figcaption.legend {
                span.key.k-deregister { "deregister / register" }
                span.key.k-stop { "stop" }
                span.key.k-start { "start" }
                span.key.k-resize { "resize" }
                span.key.k-wait { "wait (hatched)" }
                span.key.k-gate { "gate (crossed)" }
                span.key.k-pause { "pause (dotted)" }
                span.key.k-ongoing { "dashed: under way" }
                span { "◆ type changes made ahead" }
            }
        }
        details.bars #bars-table {
            summary { "The bars as a table (" (bars.len()) ")" }
            div.scroll { table.list #bars {
                thead { tr { th { "Tier" } th { "Step" } th { "From" } th { "To" } th { "Took" } } }
                tbody { @for b in &bars { tr {
                    td { (b.tier) } td { (step_label(&b.step)) @if b.ongoing { " (under way)" } }
                    td { (when(b.from)) } td { (when(b.to)) }
                    td.num { (took(b)) }
                } } }
            } }
        }
    }
}
