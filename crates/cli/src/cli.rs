//! Argument parsing and the commands.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, anyhow};
use chrono::{DateTime, Utc};
use clap::{Parser, Subcommand, ValueEnum};
use ec2_scheduler_config::{Diagnostics, Format, Loaded, Source};
use ec2_scheduler_core::plan::{PlanRequest, ScaleIn};
use ec2_scheduler_core::{Action, Exemption, plan};
use ec2_scheduler_engine::{Begin, Executor, RunRequest};

use crate::ops::{self, Speed};
use crate::progress::Progress;
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
    /// Stop and start the original README's example workload on a simulated region
    /// (no AWS account needed).
    Demo {
        /// Virtual seconds per real second, or `max` for no waiting.
        #[arg(long, default_value = "30", value_parser = ops::parse_speed)]
        speed: Speed,
    },
    /// Start or stop a workload (the original Orchestrator's -w/-a/-p/-d flags).
    Run(RunArgs),
    /// Show a workload's tiers, instances, exemptions and last run.
    Status(StatusArgs),
    /// List runs, or show one run's history (`runs show ID`).
    Runs {
        /// Only this workload's runs.
        #[arg(long, short = 'w')]
        workload: Option<String>,
        #[command(flatten)]
        store: StoreArg,
        #[command(subcommand)]
        show: Option<RunsCommand>,
    },
    /// Exempt instances from being stopped, with an expiry and a reason.
    Exempt {
        #[command(subcommand)]
        command: ExemptCommand,
        #[command(flatten)]
        store: StoreArg,
    },
    /// Load workload files (any format) into the store.
    Load {
        #[arg(required = true)]
        files: Vec<PathBuf>,
        #[command(flatten)]
        store: StoreArg,
    },
}

#[derive(Debug, Subcommand)]
enum RunsCommand {
    /// One run: outcome, exclusions, failures, timings, API calls, history.
    Show { id: String },
}

#[derive(Debug, Subcommand)]
enum ExemptCommand {
    /// Exempt an instance.
    Add {
        instance: String,
        /// RFC 3339 time or YYYY-MM-DD (through that day, UTC); default: until removed.
        #[arg(long, value_parser = ops::parse_until)]
        until: Option<DateTime<Utc>>,
        #[arg(long, default_value = "no reason given")]
        reason: String,
    },
    /// Remove an instance's exemptions.
    Remove { instance: String },
    /// List exemptions.
    List,
}

#[derive(Debug, Clone, clap::Args)]
struct StoreArg {
    /// Where runs, locks, exemptions and loaded workloads live: sqlite:PATH, memory or
    /// dynamodb:REGION (default: $EC2_SCHEDULER_STORE, else
    /// ~/.local/share/ec2-scheduler/state.db).
    #[arg(long, global = true)]
    store: Option<String>,
    /// Region of the original's DynamoDB tables: use the DynamoDB store there (the
    /// original Orchestrator's -r).
    #[arg(long, short = 'r', visible_alias = "dynamoDBRegion", global = true)]
    dynamodb_region: Option<String>,
    /// Table of workload items (DynamoDB store).
    #[arg(long, global = true, default_value = "WorkloadSpecification")]
    workload_table: String,
    /// Table of tier items (DynamoDB store).
    #[arg(long, global = true, default_value = "TierSpecification")]
    tier_table: String,
    /// Table of runs, locks and exemptions (DynamoDB store; created if missing).
    #[arg(long, global = true, default_value = "Ec2SchedulerState")]
    state_table: String,
    /// Endpoint for every AWS service (e.g. a local emulator); AWS_ENDPOINT_URL works
    /// too.
    #[arg(long, global = true)]
    endpoint_url: Option<String>,
}

impl StoreArg {
    fn opts(&self) -> ops::StoreOpts {
        ops::StoreOpts {
            spec: self.store.clone(),
            dynamodb_region: self.dynamodb_region.clone(),
            endpoint_url: self.endpoint_url.clone(),
            tables: ec2_scheduler_aws::dynamo::Tables {
                workloads: self.workload_table.clone(),
                tiers: self.tier_table.clone(),
                state: self.state_table.clone(),
            },
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum CloudKind {
    /// The simulated region, loaded from --fleet and written back to it.
    Sim,
    /// Amazon Web Services, in the workload's region (assuming its role, if any).
    Aws,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum LogLevel {
    Critical,
    Error,
    Warning,
    Info,
    Debug,
    Notset,
}

#[derive(Debug, clap::Args)]
struct CloudArgs {
    /// Which cloud to act on.
    #[arg(long, value_enum, default_value_t = CloudKind::Aws)]
    cloud: CloudKind,
    /// Fleet snapshot for --cloud sim (updated in place as the run goes).
    #[arg(long, required_if_eq("cloud", "sim"))]
    fleet: Option<PathBuf>,
}

#[derive(Debug, clap::Args)]
struct RunArgs {
    /// The workload (the original's SpecName).
    #[arg(long, short = 'w', visible_alias = "workloadIdentifier")]
    workload: String,
    /// start or stop (any case).
    #[arg(long, short = 'a', value_parser = parse_action)]
    action: Action,
    /// Scaling profile to apply when starting.
    #[arg(long, short = 'p', visible_alias = "scalingProfile")]
    profile: Option<String>,
    /// Observe and plan, change nothing.
    #[arg(long, short = 'd', visible_alias = "dryrun")]
    dry_run: bool,
    /// Stop running instances above the profile's fleet subset.
    #[arg(long)]
    scale_in: bool,
    /// Resume this unfinished run.
    #[arg(long)]
    resume: Option<String>,
    /// Workload files to use instead of the store's workloads.
    #[arg(long, short = 'c', num_args = 1..)]
    config: Vec<PathBuf>,
    #[command(flatten)]
    cloud: CloudArgs,
    #[command(flatten)]
    store: StoreArg,
    /// Virtual seconds per real second on the simulator, or `max`.
    #[arg(long, default_value = "max", value_parser = ops::parse_speed)]
    speed: Speed,
    /// How much to print: critical/error print only the outcome; info and debug
    /// print every event.
    #[arg(long, short = 'l', visible_alias = "loglevel", value_enum, default_value_t = LogLevel::Info)]
    log_level: LogLevel,
    /// Output style of the final report.
    #[arg(long, short = 'o', value_enum, default_value_t = Output::Text)]
    output: Output,
}

#[derive(Debug, clap::Args)]
struct StatusArgs {
    #[arg(long, short = 'w')]
    workload: String,
    #[arg(long, short = 'c', num_args = 1..)]
    config: Vec<PathBuf>,
    #[command(flatten)]
    cloud: CloudArgs,
    #[command(flatten)]
    store: StoreArg,
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

/// A failure the user can fix; printed as is, exit code 1.
#[derive(Debug)]
pub struct Invalid(pub String);

/// A run that did not succeed; exit code 3.
#[derive(Debug)]
pub struct RunFailed(pub String);

impl std::fmt::Display for RunFailed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for RunFailed {}

impl std::fmt::Display for Invalid {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Invalid {}

pub fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(anyhow::Error::from)
        .and_then(|rt| rt.block_on(run(cli)));
    match runtime {
        Ok(()) => ExitCode::SUCCESS,
        // The reader of standard output went away (`| head`): a normal end.
        Err(e) if e.downcast_ref::<crate::term::Closed>().is_some() => ExitCode::SUCCESS,
        Err(e) if e.downcast_ref::<RunFailed>().is_some() => {
            crate::term::note(e.to_string());
            ExitCode::from(3)
        }
        Err(e) => {
            if e.downcast_ref::<Invalid>().is_some() {
                crate::term::note(e.to_string());
            } else {
                crate::term::note(format!("error: {e:#}"));
            }
            ExitCode::from(1)
        }
    }
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Demo { speed } => crate::demo::demo(speed).await,
        Command::Run(args) => run_cmd(args).await,
        Command::Status(args) => {
            let store = ops::open_store(&args.store.opts()).await?;
            let workload = ops::find_workload(&args.config, &args.workload, &*store).await?;
            let cloud = cloud(&args.cloud, &workload, &args.store).await?;
            crate::term::out(ops::status(&workload, &cloud, &*store).await?)?;
            Ok(())
        }
        Command::Runs {
            workload,
            store,
            show,
        } => {
            let store = ops::open_store(&store.opts()).await?;
            match show {
                None => crate::term::out(ops::runs(&*store, workload.as_deref()).await?)?,
                Some(RunsCommand::Show { id }) => {
                    crate::term::out(ops::run_show(&*store, &id).await?)?
                }
            }
            Ok(())
        }
        Command::Exempt { command, store } => {
            let store = ops::open_store(&store.opts()).await?;
            let out = match command {
                ExemptCommand::Add {
                    instance,
                    until,
                    reason,
                } => ops::exempt_add(&*store, &instance, until, &reason, Utc::now()).await?,
                ExemptCommand::Remove { instance } => {
                    if store.remove_exemption(&instance).await? {
                        format!("{instance}: exemptions removed\n")
                    } else {
                        return Err(anyhow!(Invalid(format!("{instance} has no exemption"))));
                    }
                }
                ExemptCommand::List => ops::exempt_list(&*store).await?,
            };
            crate::term::out(&out)?;
            Ok(())
        }
        Command::Load { files, store } => {
            let loaded = load(&files)?;
            let store = ops::open_store(&store.opts()).await?;
            for w in &loaded.workloads {
                let removed = store.put_workload(w).await?;
                if !removed.is_empty() {
                    crate::term::note(format!(
                        "{}: removed tiers no longer defined: {}",
                        w.name,
                        removed.join(", ")
                    ));
                }
            }
            let names: Vec<&str> = loaded.workloads.iter().map(|w| w.name.as_str()).collect();
            crate::term::out(
                format!(
                    "loaded {} workload{}: {}",
                    names.len(),
                    if names.len() == 1 { "" } else { "s" },
                    names.join(", ")
                ) + "\n",
            )?;
            Ok(())
        }
        Command::Validate { files } => validate(&files),
        Command::Plan(args) => plan_cmd(args),
        Command::Export {
            format,
            workload,
            output,
            files,
        } => export(&files, format, workload.as_deref(), output.as_deref()),
        Command::Schema => {
            crate::term::data(ec2_scheduler_config::native::schema_json())?;
            Ok(())
        }
    }
}

async fn cloud(
    args: &CloudArgs,
    workload: &ec2_scheduler_core::Workload,
    store: &StoreArg,
) -> anyhow::Result<ops::Cloud> {
    match (args.cloud, &args.fleet) {
        (CloudKind::Sim, Some(fleet)) => Ok(ops::Cloud::Sim(Box::new(ops::SimCloud::load(fleet)?))),
        (CloudKind::Sim, None) => Err(anyhow!(Invalid(
            "--cloud sim needs --fleet FLEET.json".into()
        ))),
        (CloudKind::Aws, _) => Ok(ops::Cloud::Aws(Box::new(
            ops::aws_cloud(workload, store.endpoint_url.clone()).await,
        ))),
    }
}

async fn run_cmd(args: RunArgs) -> anyhow::Result<()> {
    let store = ops::open_store(&args.store.opts()).await?;
    let workload = ops::find_workload(&args.config, &args.workload, &*store).await?;
    let cloud = cloud(&args.cloud, &workload, &args.store).await?;
    let settings = ops::settings(&cloud, args.speed);
    // On the simulator, the fleet file is saved before each checkpoint.
    let checkpointed;
    let store: &dyn ops::Store = match &cloud {
        ops::Cloud::Sim(sim) => {
            checkpointed = ops::Checkpointed {
                inner: &*store,
                sim,
            };
            &checkpointed
        }
        ops::Cloud::Aws(_) => &*store,
    };
    let mut exec = Executor::new(cloud.ports(store), settings, workload);
    let req = RunRequest {
        action: args.action,
        profile: args.profile.clone(),
        scale_in: if args.scale_in {
            ScaleIn::Apply
        } else {
            ScaleIn::ReportOnly
        },
    };
    if args.dry_run {
        let plan = exec
            .plan(&req)
            .await
            .map_err(|e| anyhow!(Invalid(e.to_string())))?;
        match args.output {
            Output::Text => crate::term::out(format!(
                "Dry run: nothing is changed.\n{}",
                render::plan_text(&plan)
            ))?,
            Output::Json => crate::term::data(serde_json::to_string_pretty(&plan)? + "\n")?,
        }
        return Ok(());
    }
    let mut run = match ops::begin(&mut exec, store, &req, args.resume.as_deref()).await? {
        Begin::NothingToDo(plan) => {
            match args.output {
                Output::Text => crate::term::out(render::plan_text(&plan))?,
                Output::Json => crate::term::data(serde_json::to_string_pretty(&plan)? + "\n")?,
            }
            return Ok(());
        }
        Begin::Resumed(r) => {
            crate::term::note(format!("resuming run {}", r.id));
            *r
        }
        Begin::Started(r) => *r,
    };
    let quiet = matches!(args.log_level, LogLevel::Critical | LogLevel::Error);
    let mut progress = Progress::new(quiet || args.output == Output::Json);
    ops::drive(&mut exec, &mut run, &cloud, args.speed, &mut progress).await?;
    match args.output {
        Output::Text => crate::term::out(ops::run_report(&run))?,
        Output::Json => {
            let mut summary = run.summary();
            if let ops::Cloud::Aws(_) = &cloud {
                // Everything this process sent, the store's requests included.
                summary["aws_requests"] = serde_json::json!(ops::requests().snapshot());
            }
            crate::term::data(serde_json::to_string_pretty(&summary)? + "\n")?
        }
    }
    match ops::run_failed(&run) {
        Some(msg) => Err(anyhow!(RunFailed(msg))),
        None => Ok(()),
    }
}

/// Reads a workload file.
fn read(path: &Path) -> anyhow::Result<String> {
    crate::files::read_text(path, ec2_scheduler_config::MAX_SOURCE_BYTES as u64)
}

pub fn invalid(diags: Diagnostics) -> anyhow::Error {
    let n = diags.errors().count();
    anyhow!(Invalid(format!(
        "{diags}\n{n} error{} found",
        if n == 1 { "" } else { "s" }
    )))
}

/// Reads and decodes workload files, printing warnings to standard error.
pub fn load(files: &[PathBuf]) -> anyhow::Result<Loaded> {
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
        crate::term::note(w.to_string());
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
    crate::term::out(
        format!(
            "ok: {} workload{}: {}",
            names.len(),
            if names.len() == 1 { "" } else { "s" },
            names.join(", ")
        ) + "\n",
    )?;
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
    let observed_text = crate::files::read_text(&args.observed, crate::files::MAX_DATA_BYTES)?;
    let observed =
        ec2_scheduler_config::fleet::load_fleet(&observed_name, &observed_text).map_err(invalid)?;
    let exemptions: Vec<Exemption> = match &args.exemptions {
        None => Vec::new(),
        Some(p) => {
            let text = crate::files::read_text(p, crate::files::MAX_DATA_BYTES)?;
            let list: Vec<Exemption> = serde_json::from_str(&text).map_err(|e| {
                anyhow!(Invalid(format!(
                    "{}:{}:{}: invalid exemptions (expected a JSON list of {{instance_id, until?, reason}}): {e}",
                    p.display(),
                    e.line(),
                    e.column()
                )))
            })?;
            for (i, e) in list.iter().enumerate() {
                e.check()
                    .map_err(|x| anyhow!(Invalid(format!("{}: [{i}]: {x}", p.display()))))?;
            }
            list
        }
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
    match args.output {
        Output::Text => crate::term::out(render::plan_text(&plan)),
        Output::Json => {
            let mut s = serde_json::to_string_pretty(&plan).context("serializing the plan")?;
            s.push('\n');
            crate::term::data(s)
        }
    }
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
        None => crate::term::data(text)?,
        Some(p) => crate::files::write_atomic(p, text.as_bytes())?,
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;
    use proptest::prelude::*;

    use super::*;

    #[test]
    fn the_argument_definitions_are_consistent() {
        Cli::command().debug_assert();
    }

    /// Words the command line knows, and values that have broken tools before.
    const WORDS: &[&str] = &[
        "validate",
        "plan",
        "run",
        "status",
        "runs",
        "show",
        "exempt",
        "add",
        "remove",
        "list",
        "load",
        "export",
        "schema",
        "demo",
        "-w",
        "-a",
        "-p",
        "-d",
        "-c",
        "-r",
        "-o",
        "-f",
        "-l",
        "--until",
        "--reason",
        "--speed",
        "--store",
        "--cloud",
        "--fleet",
        "--observed",
        "--now",
        "--scale-in",
        "--resume",
        "--exemptions",
        "--endpoint-url",
        "--workload-table",
        "start",
        "Stop",
        "sim",
        "aws",
        "max",
        "0",
        "-1",
        "1e400",
        "NaN",
        "inf",
        "9999-12-31",
        "+10000-01-01",
        "2026-13-45",
        "2026-01-01T00:00:00Z",
        "9999-12-31T23:59:59-23:59",
        "memory",
        "sqlite:",
        "dynamodb:",
        "json",
        "yaml",
        "text",
        "seed-json",
        "critical",
        "i-0web0001",
        "--",
        "-",
        "=",
        "--speed=",
        "\u{1b}[2J",
        "",
    ];

    fn token() -> impl Strategy<Value = String> {
        prop_oneof![
            4 => prop::sample::select(WORDS).prop_map(str::to_string),
            1 => ".{0,12}",
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 2048, ..ProptestConfig::default() })]

        /// Any argument list is either parsed or refused with a message; the value
        /// parsers refuse what they cannot read.
        #[test]
        fn arguments_never_panic(tokens in proptest::collection::vec(token(), 0..8)) {
            let argv = std::iter::once("ec2-scheduler".to_string()).chain(tokens.iter().cloned());
            if let Err(e) = Cli::try_parse_from(argv) {
                let _ = e.render().to_string();
            }
            for t in &tokens {
                let _ = ops::parse_until(t);
                let _ = ops::parse_speed(t);
                let _ = parse_time(t);
                let _ = parse_format(t);
                let _ = parse_action(t);
            }
        }
    }
}
