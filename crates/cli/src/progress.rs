//! Live progress of a run: a bar per tier on a terminal, one line per event otherwise.

use std::collections::BTreeMap;
use std::io::IsTerminal;

use chrono::{DateTime, Utc};
use ec2_scheduler_app::Watch;
use ec2_scheduler_engine::Run;
use ec2_scheduler_engine::run::Phase;
use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};

/// Shows a run as it goes.
pub struct Progress {
    bars: Option<(MultiProgress, BTreeMap<String, ProgressBar>)>,
    shown: usize,
    quiet: bool,
}

impl Progress {
    /// Bars when standard error is a terminal; lines otherwise; nothing when `quiet`.
    pub fn new(quiet: bool) -> Self {
        let bars = (!quiet && std::io::stderr().is_terminal()).then(|| {
            (
                MultiProgress::with_draw_target(ProgressDrawTarget::stderr()),
                BTreeMap::new(),
            )
        });
        Progress {
            bars,
            shown: 0,
            quiet,
        }
    }

    fn line(&self, text: String) {
        match &self.bars {
            Some((m, _)) => {
                let _ = m.println(crate::term::sanitize(&text));
            }
            None => crate::term::note(&text),
        }
    }

    /// Shows what happened since the last update.
    pub fn update(&mut self, run: &Run, now: DateTime<Utc>) {
        if self.quiet {
            return;
        }
        let new: Vec<String> = run.history[self.shown.min(run.history.len())..]
            .iter()
            .map(|e| {
                let t = (e.at - run.started).num_milliseconds() as f64 / 1000.0;
                match &e.tier {
                    Some(tier) => format!("[{t:>7.1}s] {tier}: {}", e.text()),
                    None => format!("[{t:>7.1}s] {}", e.text()),
                }
            })
            .collect();
        self.shown = run.history.len();
        for l in new {
            self.line(l);
        }
        let Some((multi, bars)) = &mut self.bars else {
            return;
        };
        let stages = match run.cursor.phase {
            Phase::Forward => &run.plan.stages,
            Phase::Rollback => &run.rollback,
            Phase::Verify => return,
        };
        let Some(stage) = stages.get(run.cursor.stage) else {
            return;
        };
        // Tiers of earlier stages are done.
        for (tier, bar) in bars.iter() {
            if !bar.is_finished() && !stage.tiers.iter().any(|t| &t.tier == tier) {
                bar.set_position(bar.length().unwrap_or(0));
                bar.finish();
            }
        }
        for tp in &stage.tiers {
            let bar = bars.entry(tp.tier.clone()).or_insert_with(|| {
                let b = multi.add(ProgressBar::new(tp.steps.len() as u64));
                b.set_style(
                    ProgressStyle::with_template(
                        "{prefix:>12} [{bar:24}] {pos}/{len} steps  {elapsed_precise}  {msg}",
                    )
                    .expect("valid template")
                    .progress_chars("=> "),
                );
                b.set_prefix(crate::term::sanitize(&tp.tier).into_owned());
                b
            });
            let idx = run.cursor.steps.get(&tp.tier).copied().unwrap_or(0);
            bar.set_position(idx as u64);
            let step = tp.steps.get(idx).map_or("done", |s| s.name());
            let elapsed = run
                .tiers
                .get(&tp.tier)
                .map(|t| (t.finished.unwrap_or(now) - t.started).num_seconds())
                .unwrap_or(0);
            bar.set_message(format!("{step} ({elapsed} s virtual)"));
            if idx >= tp.steps.len() {
                bar.finish();
            }
        }
    }

    /// Clears the bars.
    pub fn finish(&mut self) {
        if let Some((_, bars)) = &mut self.bars {
            for b in bars.values() {
                b.finish_and_clear();
            }
            bars.clear();
        }
    }
}

impl Watch for Progress {
    fn note(&mut self, text: &str) {
        crate::term::note(text);
    }

    fn progress(&mut self, run: &Run, now: DateTime<Utc>) {
        self.update(run, now);
    }

    fn finished(&mut self) {
        self.finish();
    }
}
