//! Argument parsing and the commands.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, anyhow};
use chrono::{DateTime, Utc};
use clap::{Parser, Subcommand, ValueEnum};
use ec2_scheduler_config::{Diagnostics, Format, Loaded, Source};
use ec2_scheduler_core::plan::{PlanRequest, ScaleIn};
use ec2_scheduler_core::{Action, Exemption, plan};

use crate::render;

/// Stops and starts whole multi-tier EC2 workloads, in order, at the right size.
#[derive(Debug, Parser)]
#[command(name = "ec2-scheduler", version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Check workload files (any format) and report every problem.
    Validate {
        /// Workload files: ec2-scheduler YAML, the original's Loader YAML, or the
        /// original's DynamoDB items as JSON.
        #[arg(required = true)]
        files: Vec<PathBuf>,
    },
    /// Show what a start or stop would do, changing nothing.
    Plan(PlanArgs),
    /// Convert workload files to another format.
    Export {
        /// Target format.
        #[arg(long, short = 'f', value_parser = parse_format)]
        format: Format,
        /// Only this workload (default: all).
        #[arg(long, short = 'w')]
        workload: Option<String>,
        /// Write here instead of standard output.
        #[arg(long, short = 'o')]
        output: Option<PathBuf>,
        #[arg(required = true)]
        files: Vec<PathBuf>,
    },
    /// Print the JSON Schema of ec2-scheduler's YAML format.
    Schema,
}

#[derive(Debug, clap::Args)]
struct PlanArgs {
    /// Workload files (any format; repeat or list several).
    #[arg(long, short = 'c', required = true, num_args = 1..)]
    config: Vec<PathBuf>,
    /// The workload to plan for (the original's SpecName).
    #[arg(long, short = 'w', visible_alias = "workloadIdentifier")]
    workload: String,
    /// start or stop (any case, as the original's Start/Stop).
    #[arg(long, short = 'a', value_parser = parse_action)]
    action: Action,
    /// Scaling profile to apply when starting.
    #[arg(long, short = 'p', visible_alias = "scalingProfile")]
    profile: Option<String>,
    /// Stop running instances above the profile's fleet subset.
    #[arg(long)]
    scale_in: bool,
    /// Fleet snapshot (JSON) of the observed instances.
    #[arg(long)]
    observed: PathBuf,
    /// Stored exemptions (JSON list of {instance_id, until?, reason}).
    #[arg(long)]
    exemptions: Option<PathBuf>,
    /// Evaluate exemption expiries at this time (RFC 3339; default: now).
    #[arg(long, value_parser = parse_time)]
    now: Option<DateTime<Utc>>,
    /// Output style.
    #[arg(long, short = 'o', value_enum, default_value_t = Output::Text)]
    output: Output,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Output {
    Text,
    Json,
}

fn parse_format(s: &str) -> Result<Format, String> {
    s.parse()
}

fn parse_action(s: &str) -> Result<Action, String> {
    s.parse()
}

fn parse_time(s: &str) -> Result<DateTime<Utc>, String> {
    DateTime::parse_from_rfc3339(s)
        .map(|t| t.with_timezone(&Utc))
        .map_err(|e| format!("expected an RFC 3339 time such as 2026-11-26T20:00:00Z: {e}"))
}

/// A failure the user can fix; printed without a backtrace, exit code 1.
#[derive(Debug)]
struct Invalid(String);

impl std::fmt::Display for Invalid {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Invalid {}

pub fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            if e.downcast_ref::<Invalid>().is_some() {
                eprintln!("{e}");
            } else {
                eprintln!("error: {e:#}");
            }
            ExitCode::from(1)
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Validate { files } => validate(&files),
        Command::Plan(args) => plan_cmd(args),
        Command::Export {
            format,
            workload,
            output,
            files,
        } => export(&files, format, workload.as_deref(), output.as_deref()),
        Command::Schema => {
            print!("{}", ec2_scheduler_config::native::schema_json());
            Ok(())
        }
    }
}

fn read(path: &Path) -> anyhow::Result<String> {
    std::fs::read_to_string(path)
        .map_err(|e| anyhow!(Invalid(format!("{}: cannot read: {e}", path.display()))))
}

fn invalid(diags: Diagnostics) -> anyhow::Error {
    let n = diags.errors().count();
    anyhow!(Invalid(format!(
        "{diags}\n{n} error{} found",
        if n == 1 { "" } else { "s" }
    )))
}

/// Reads and decodes workload files, printing warnings to standard error.
fn load(files: &[PathBuf]) -> anyhow::Result<Loaded> {
    let texts = files
        .iter()
        .map(|f| Ok((f.display().to_string(), read(f)?)))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let sources: Vec<Source> = texts
        .iter()
        .map(|(name, text)| Source { name, text })
        .collect();
    let loaded = ec2_scheduler_config::load(&sources).map_err(invalid)?;
    for w in &loaded.warnings {
        eprintln!("{w}");
    }
    Ok(loaded)
}

fn validate(files: &[PathBuf]) -> anyhow::Result<()> {
    let loaded = load(files)?;
    let names: Vec<String> = loaded
        .workloads
        .iter()
        .map(|w| format!("{} ({} tiers)", w.name, w.tiers().len()))
        .collect();
    println!(
        "ok: {} workload{}: {}",
        names.len(),
        if names.len() == 1 { "" } else { "s" },
        names.join(", ")
    );
    Ok(())
}

fn plan_cmd(args: PlanArgs) -> anyhow::Result<()> {
    let loaded = load(&args.config)?;
    let workload = loaded.workload(&args.workload).ok_or_else(|| {
        let known: Vec<&str> = loaded.workloads.iter().map(|w| w.name.as_str()).collect();
        anyhow!(Invalid(format!(
            "workload {:?} is not defined in the files given (defined: {})",
            args.workload,
            known.join(", ")
        )))
    })?;
    let observed_name = args.observed.display().to_string();
    let observed = ec2_scheduler_config::fleet::load_fleet(&observed_name, &read(&args.observed)?)
        .map_err(invalid)?;
    let exemptions: Vec<Exemption> = match &args.exemptions {
        None => Vec::new(),
        Some(p) => serde_json::from_str(&read(p)?).map_err(|e| {
            anyhow!(Invalid(format!(
                "{}:{}:{}: invalid exemptions (expected a JSON list of {{instance_id, until?, reason}}): {e}",
                p.display(),
                e.line(),
                e.column()
            )))
        })?,
    };
    let req = PlanRequest {
        workload,
        observed: &observed,
        action: args.action,
        profile: args.profile.as_deref(),
        scale_in: if args.scale_in {
            ScaleIn::Apply
        } else {
            ScaleIn::ReportOnly
        },
        exemptions: &exemptions,
        now: args.now.unwrap_or_else(Utc::now),
    };
    let plan = plan(&req).map_err(|e| anyhow!(Invalid(format!("cannot plan: {e}"))))?;
    let text = match args.output {
        Output::Text => render::plan_text(&plan),
        Output::Json => {
            let mut s = serde_json::to_string_pretty(&plan).context("serializing the plan")?;
            s.push('\n');
            s
        }
    };
    std::io::stdout().write_all(text.as_bytes())?;
    Ok(())
}

fn export(
    files: &[PathBuf],
    format: Format,
    only: Option<&str>,
    output: Option<&Path>,
) -> anyhow::Result<()> {
    let loaded = load(files)?;
    let workloads: Vec<_> = match only {
        None => loaded.workloads,
        Some(name) => {
            let w = loaded.workload(name).cloned().ok_or_else(|| {
                anyhow!(Invalid(format!(
                    "workload {name:?} is not defined in the files given"
                )))
            })?;
            vec![w]
        }
    };
    let text = ec2_scheduler_config::export(&workloads, format);
    match output {
        None => std::io::stdout().write_all(text.as_bytes())?,
        Some(p) => std::fs::write(p, text).with_context(|| format!("writing {}", p.display()))?,
    }
    Ok(())
}
