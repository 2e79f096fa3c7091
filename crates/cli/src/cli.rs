//! Argument parsing, and each command as one call of the application layer and its
//! rendering.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use tokio::signal::unix::SignalKind;

use chrono::{DateTime, NaiveDate, Utc};
use clap::{Parser, Subcommand, ValueEnum};
use ec2_scheduler_app::savings::Prices;
use ec2_scheduler_app::schedules::{self, OverrideRequest};
use ec2_scheduler_app::workloads::{self, Preview};
use ec2_scheduler_app::{App, CloudSpec, Error, Outcome, Speed, StoreOpts};
use ec2_scheduler_config::{Format, Loaded};
use ec2_scheduler_core::access::Role;
use ec2_scheduler_core::overrides::Override;
use ec2_scheduler_core::plan::ScaleIn;
use ec2_scheduler_core::schedule::{EventKind, Schedule};
use ec2_scheduler_core::{Action, Workload};
use ec2_scheduler_engine::{RunRequest, RunStatus};

use crate::error::{CliError, Result};
use crate::progress::Progress;
use crate::render;
use crate::term;

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
    /// Print the OpenAPI 3.1 document of the HTTP API (`serve --listen`).
    Openapi,
    /// Stop and start the original README's example workload on a simulated region
    /// (no AWS account needed).
    Demo {
        /// Virtual seconds per real second, or `max` for no waiting.
        #[arg(long, default_value = "30", value_parser = parse_speed)]
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
    /// What a workload's schedules wish at an instant, and their next events.
    Schedule {
        #[command(subcommand)]
        command: ScheduleCommand,
    },
    /// Shared calendars of skip dates.
    Calendar {
        #[command(subcommand)]
        command: CalendarCommand,
    },
    /// The service: fire every stored workload's schedule events at their instants
    /// and drive the runs they start, until stopped (SIGTERM or Ctrl-C).
    Serve(ServeArgs),
    /// Instance-hours and money the schedules save against running always, per
    /// workload, tier and instance type (a forecast from the schedules and the
    /// instances the cloud shows now).
    Savings(SavingsArgs),
    /// On-demand price tables for `savings`.
    Prices {
        #[command(subcommand)]
        command: PricesCommand,
    },
    /// One-off changes to a workload's schedules that expire by themselves.
    Override {
        #[command(subcommand)]
        command: OverrideCommand,
        #[command(flatten)]
        store: StoreArg,
    },
    /// Bearer tokens for the HTTP API, with their roles.
    Token {
        #[command(subcommand)]
        command: TokenCommand,
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
    /// Cancel an unfinished run: it is recorded as cancelled and the workload's lock
    /// released; the process driving it stops at its next step. Nothing is undone.
    Cancel { id: String },
}

#[derive(Debug, Subcommand)]
enum ScheduleCommand {
    /// The desired state (running, stopped, or any: no wish) and what decides it.
    State {
        #[command(flatten)]
        of: ScheduleOf,
        /// The instant (RFC 3339; default: now).
        #[arg(long, value_parser = parse_time)]
        at: Option<DateTime<Utc>>,
        #[arg(long, short = 'o', value_enum, default_value_t = Output::Text)]
        output: Output,
    },
    /// What became of the events `serve` met: fired (with the run), skipped (and
    /// why), missed, failed; newest first.
    History(HistoryArgs),
    /// The next start and stop events, with the ones skip dates keep from firing.
    Next {
        #[command(flatten)]
        of: ScheduleOf,
        /// Events after this instant (RFC 3339; default: now).
        #[arg(long, value_parser = parse_time)]
        from: Option<DateTime<Utc>>,
        /// How many events that fire to list.
        #[arg(long, default_value_t = 10)]
        count: usize,
        #[arg(long, short = 'o', value_enum, default_value_t = Output::Text)]
        output: Output,
    },
}

#[derive(Debug, clap::Args)]
struct SavingsArgs {
    /// Only this workload (default: every workload).
    #[arg(long, short = 'w')]
    workload: Option<String>,
    /// Workload files (default: the workloads stored with `load`).
    #[arg(long, short = 'c', num_args = 1..)]
    config: Vec<PathBuf>,
    /// First day (YYYY-MM-DD, UTC; default: today).
    #[arg(long, value_parser = parse_day)]
    from: Option<NaiveDate>,
    /// Day after the last (YYYY-MM-DD, UTC; default: 30 days after --from).
    #[arg(long, value_parser = parse_day)]
    to: Option<NaiveDate>,
    /// Prices over all others: {as_of, currency, regions: {REGION: {TYPE: PRICE}}}.
    #[arg(long)]
    prices: Option<PathBuf>,
    /// Do not ask the AWS Price List API for prices (default: ask it for workloads on
    /// AWS, and use the bundled table for what it does not answer).
    #[arg(long)]
    no_price_list: bool,
    /// On the simulator: its clock, up to which the actual savings are counted
    /// (RFC 3339; default: now), for a region whose clock `serve --speed` ran ahead.
    #[arg(long, value_parser = parse_time)]
    sim_clock: Option<DateTime<Utc>>,
    #[arg(long, short = 'o', value_enum, default_value_t = Output::Text)]
    output: Output,
    #[command(flatten)]
    cloud: CloudArgs,
    #[command(flatten)]
    store: StoreArg,
}

fn parse_day(s: &str) -> std::result::Result<NaiveDate, String> {
    NaiveDate::parse_from_str(s, "%Y-%m-%d")
        .map_err(|_| format!("expected a date such as 2026-12-01, found {s:?}"))
}

#[derive(Debug, clap::Args)]
struct ServeArgs {
    #[command(flatten)]
    cloud: CloudArgs,
    #[command(flatten)]
    store: StoreArg,
    /// On the simulator: virtual seconds per real second, or `max` (default 1; with
    /// --demo, 60).
    #[arg(long, value_parser = parse_speed)]
    speed: Option<Speed>,
    /// On the simulator: where its clock starts (RFC 3339; default: now).
    #[arg(long, value_parser = parse_time)]
    start: Option<DateTime<Utc>>,
    /// Serve a demo: a simulated region with the original's example workload and a
    /// second one, schedules that fire every few minutes of real time, nothing kept;
    /// the dashboard on --listen (default 127.0.0.1:8080) and two tokens printed.
    #[arg(long, conflicts_with_all = ["fleet", "store", "dynamodb_region"])]
    demo: bool,
    /// Stop at this instant of the cloud's clock (RFC 3339).
    #[arg(long, value_parser = parse_time)]
    until: Option<DateTime<Utc>>,
    /// Minutes within which an event missed while the service was down is still
    /// fired when it starts; older ones are reported as missed.
    #[arg(long, default_value_t = 15)]
    grace_minutes: u64,
    /// The longest sleep, in seconds, between two looks at the store (new
    /// workloads, overrides) when no event or run tick comes sooner.
    #[arg(long, default_value_t = 30, value_parser = clap::value_parser!(u64).range(1..=3600))]
    turn_seconds: u64,
    /// Log level (the original's --loglevel).
    #[arg(long, value_enum, default_value_t = LogLevel::Info)]
    log_level: LogLevel,
    /// Log records as text or one JSON object per line.
    #[arg(long, value_enum, default_value_t = LogFormat::Text)]
    log_format: LogFormat,
    /// Serve the HTTP API on this address (e.g. 127.0.0.1:8080; port 0 picks a free
    /// one, printed on start). Without it, no API is served.
    #[arg(long)]
    listen: Option<String>,
    /// Browser origins allowed to call the API (CORS; repeat the option). Default:
    /// none, no CORS headers.
    #[arg(long)]
    cors_origin: Vec<String>,
}

#[derive(Debug, Subcommand)]
enum TokenCommand {
    /// Make a token; it is printed once (only its hash is stored).
    Create {
        /// Who or what uses it (recorded on what it changes as `token:NAME`).
        #[arg(long)]
        name: String,
        /// viewer (reads), operator (also runs, exemptions, overrides) or admin (also
        /// workloads and tokens).
        #[arg(long, value_parser = parse_role)]
        role: Role,
        /// When it stops working: an RFC 3339 instant, or a duration from now
        /// (`90d`, `12h`, `30m`). Default: until revoked.
        #[arg(long, value_parser = parse_expiry)]
        expires: Option<DateTime<Utc>>,
        /// Who is recorded as having made it. Default: the OS user at this host
        /// (`alice@bastion`).
        #[arg(long, value_parser = parse_created_by)]
        created_by: Option<String>,
        #[arg(long, short = 'o', value_enum, default_value_t = Output::Text)]
        output: Output,
    },
    /// Every token: id, name, role, creation, expiry, revocation.
    List {
        #[arg(long, short = 'o', value_enum, default_value_t = Output::Text)]
        output: Output,
    },
    /// Revoke a token by id: refused from now on.
    Revoke { id: String },
}

fn parse_created_by(s: &str) -> std::result::Result<String, String> {
    let t = s.trim();
    if t.is_empty() || t.chars().count() > 128 || t.chars().any(char::is_control) {
        return Err("expected 1 to 128 printable characters".into());
    }
    Ok(t.to_string())
}

fn parse_role(s: &str) -> std::result::Result<Role, String> {
    Role::parse(s).ok_or_else(|| format!("expected viewer, operator or admin, found {s:?}"))
}

fn parse_expiry(s: &str) -> std::result::Result<DateTime<Utc>, String> {
    if let Ok(t) = parse_time(s) {
        return Ok(t);
    }
    let (n, unit) = s.trim().split_at(s.trim().len().saturating_sub(1));
    let n: i64 = n
        .parse()
        .ok()
        .filter(|n| (1..=36_500).contains(n))
        .ok_or_else(|| {
            format!(
                "expected an RFC 3339 instant or a duration such as 90d, 12h or 30m, found {s:?}"
            )
        })?;
    let d = match unit {
        "d" => chrono::Duration::days(n),
        "h" => chrono::Duration::hours(n),
        "m" => chrono::Duration::minutes(n),
        _ => {
            return Err(format!(
                "expected an RFC 3339 instant or a duration such as 90d, 12h or 30m, found {s:?}"
            ));
        }
    };
    Ok(Utc::now() + d)
}

#[derive(Debug, Subcommand)]
enum PricesCommand {
    /// Print a price table (the shape of `savings --prices` and of the bundled table)
    /// with today's on-demand prices from the AWS Price List API: by default for the
    /// regions and instance types of the bundled table.
    Update {
        /// Only these regions (repeat the option; default: the bundled table's).
        #[arg(long)]
        region: Vec<String>,
        /// These instance types in every region (repeat the option; default: the
        /// bundled table's types of each region).
        #[arg(long = "type")]
        instance_type: Vec<String>,
        /// Write here instead of standard output.
        #[arg(long, short = 'o')]
        output: Option<PathBuf>,
        /// Endpoint of the Price List API (default: AWS's).
        #[arg(long)]
        endpoint_url: Option<String>,
    },
    /// Print the bundled price table.
    Bundled,
}

#[derive(Debug, Subcommand)]
enum CalendarCommand {
    /// Print a calendar (YAML, for a workload file's `calendars`) made from an
    /// iCalendar file's events: their dates, each year's for yearly events.
    Import {
        /// The iCalendar (.ics) file.
        #[arg(long)]
        ics: PathBuf,
        /// The calendar's name.
        #[arg(long)]
        name: String,
    },
}

#[derive(Debug, Subcommand)]
enum OverrideCommand {
    /// Add an override; say which of the four changes.
    #[command(group(clap::ArgGroup::new("change").required(true)))]
    Add {
        /// The workload.
        #[arg(long, short = 'w')]
        workload: String,
        /// Workload files (default: the workload stored with `load`).
        #[arg(long, short = 'c', num_args = 1..)]
        config: Vec<PathBuf>,
        /// Skip the next start or stop.
        #[arg(long, value_parser = parse_event_kind, group = "change")]
        skip_next: Option<EventKind>,
        /// Postpone the next stop to --until.
        #[arg(long, value_parser = ["stop"], group = "change", requires = "until")]
        postpone_next: Option<String>,
        /// The new time of the postponed stop (RFC 3339).
        #[arg(long, value_parser = parse_time, requires = "postpone_next")]
        until: Option<DateTime<Utc>>,
        /// Keep running (starting it now if stopped) until this time (RFC 3339).
        #[arg(long, value_parser = parse_time, group = "change")]
        keep_running_until: Option<DateTime<Utc>>,
        /// Keep stopped (stopping it now if running) until this time (RFC 3339).
        #[arg(long, value_parser = parse_time, group = "change")]
        keep_stopped_until: Option<DateTime<Utc>>,
        #[arg(long, default_value = "no reason given")]
        reason: String,
    },
    /// List overrides that have not expired.
    List {
        /// Only this workload's.
        #[arg(long, short = 'w')]
        workload: Option<String>,
        /// Also the expired ones still kept.
        #[arg(long)]
        all: bool,
    },
    /// Remove an override.
    Remove { id: String },
}

fn parse_event_kind(s: &str) -> std::result::Result<EventKind, String> {
    match s.to_ascii_lowercase().as_str() {
        "start" => Ok(EventKind::Start),
        "stop" => Ok(EventKind::Stop),
        _ => Err(format!("expected start or stop, found {s:?}")),
    }
}

/// Who asks: the user's name when the environment tells it, and this host.
/// Who runs this command, as recorded on what it creates: the OS user (from the
/// user database, not the environment, which `sudo`, services and containers may
/// not set) at this host.
fn caller() -> String {
    let user = whoami::username()
        .ok()
        .filter(|u| !u.is_empty())
        .or_else(|| std::env::var("USER").ok().filter(|u| !u.is_empty()))
        .unwrap_or_else(|| "unknown user".to_string());
    let host = whoami::hostname()
        .ok()
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "unknown host".to_string());
    format!("{user}@{host}")
}

/// `schedule history`'s arguments.
#[derive(Debug, clap::Args)]
struct HistoryArgs {
    /// Only this workload's events.
    #[arg(long, short = 'w')]
    workload: Option<String>,
    /// The latest this many.
    #[arg(long, default_value_t = 50)]
    limit: usize,
    #[arg(long, short = 'o', value_enum, default_value_t = Output::Text)]
    output: Output,
    #[command(flatten)]
    store: StoreArg,
}

/// Whose schedules: a workload's (from files, or the store without `-c`), or a file
/// holding one schedule alone.
#[derive(Debug, clap::Args)]
struct ScheduleOf {
    /// Workload files (any format).
    #[arg(long, short = 'c', num_args = 1.., requires = "workload")]
    config: Vec<PathBuf>,
    /// The workload whose schedules to read.
    #[arg(long, short = 'w', required_unless_present = "schedule")]
    workload: Option<String>,
    /// A file holding one schedule document alone (timezone, periods, skip).
    #[arg(long, conflicts_with_all = ["config", "workload"])]
    schedule: Option<PathBuf>,
    #[command(flatten)]
    store: StoreArg,
}

#[derive(Debug, Subcommand)]
enum ExemptCommand {
    /// Exempt an instance.
    Add {
        instance: String,
        /// RFC 3339 time or YYYY-MM-DD (through that day, UTC); default: until removed.
        #[arg(long, value_parser = parse_until)]
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
    /// The original tool's table of each workload's last action, updated after each
    /// successful run when it exists (DynamoDB store; never created).
    #[arg(long, global = true, default_value = "WorkloadState")]
    workload_state_table: String,
    /// Endpoint for every AWS service (e.g. a local emulator); AWS_ENDPOINT_URL works
    /// too.
    #[arg(long, global = true)]
    endpoint_url: Option<String>,
}

impl StoreArg {
    fn opts(&self) -> StoreOpts {
        StoreOpts {
            spec: self.store.clone(),
            dynamodb_region: self.dynamodb_region.clone(),
            endpoint_url: self.endpoint_url.clone(),
            tables: ec2_scheduler_aws::dynamo::Tables {
                workloads: self.workload_table.clone(),
                tiers: self.tier_table.clone(),
                state: self.state_table.clone(),
                workload_state: self.workload_state_table.clone(),
            },
            history_ttl_days: None,
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

/// How logs are written to standard error.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum LogFormat {
    /// The live progress for people; log records only at `-l debug` or `notset` (or
    /// with RUST_LOG).
    Text,
    /// One JSON record per event, with the run's workload, id and action and the
    /// tier as fields, instead of the live progress.
    Json,
}

impl LogLevel {
    fn filter(self) -> &'static str {
        match self {
            LogLevel::Critical | LogLevel::Error => "error",
            LogLevel::Warning => "warn",
            LogLevel::Info => "info",
            LogLevel::Debug => "debug",
            LogLevel::Notset => "trace",
        }
    }
}

/// Sends log records to standard error: at `level` (RUST_LOG, when set, decides
/// instead), as text or JSON. In text, a run's live progress already shows its
/// events, so log records are added only at debug.
fn init_logging(level: LogLevel, format: LogFormat) {
    let quiet_text =
        format == LogFormat::Text && !matches!(level, LogLevel::Debug | LogLevel::Notset);
    install_logs(if quiet_text { "off" } else { level.filter() }, format);
}

/// The service's log: at `level` (RUST_LOG decides when set), as text or JSON.
fn init_service_logging(level: LogLevel, format: LogFormat) {
    install_logs(level.filter(), format);
}

/// Installs the log subscriber: `RUST_LOG` when set, else `filter`.
fn install_logs(filter: &str, format: LogFormat) {
    use tracing_subscriber::EnvFilter;
    let filter = match std::env::var("RUST_LOG") {
        Ok(f) if !f.trim().is_empty() => EnvFilter::new(f),
        _ => EnvFilter::new(filter),
    };
    let logs = tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(filter);
    let _ = match format {
        LogFormat::Text => logs
            .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
            .try_init(),
        LogFormat::Json => logs.json().with_current_span(true).try_init(),
    };
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
    #[arg(long, default_value = "max", value_parser = parse_speed)]
    speed: Speed,
    /// How much to print: critical/error print only the outcome; info and debug
    /// print every event.
    #[arg(long, short = 'l', visible_alias = "loglevel", value_enum, default_value_t = LogLevel::Info)]
    log_level: LogLevel,
    /// How logs are written: text (the live progress) or json (one record per event,
    /// for machines).
    #[arg(long, value_enum, default_value_t = LogFormat::Text)]
    log_format: LogFormat,
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

pub fn parse_speed(s: &str) -> Result<Speed, String> {
    if s == "max" {
        return Ok(Speed::Max);
    }
    match s.parse::<f64>() {
        Ok(x) if Speed::RANGE.contains(&x) => Ok(Speed::Times(x)),
        _ => Err(format!(
            "expected a number from 0.01 to 1000000 (virtual seconds per real second) or `max`, found {s:?}"
        )),
    }
}

/// Reads `--until`: an RFC 3339 time, or a date meaning through that day (UTC); no
/// later than the end of year 9999, the last instant every store can write.
pub fn parse_until(s: &str) -> Result<DateTime<Utc>, String> {
    use ec2_scheduler_core::exemption::{UNTIL_FORMS, latest_until, parse_until};
    parse_until(s).ok_or_else(|| {
        let well_formed = DateTime::parse_from_rfc3339(s.trim()).is_ok()
            || NaiveDate::parse_from_str(s.trim(), "%Y-%m-%d").is_ok();
        if well_formed {
            format!(
                "{s:?} is too far ahead: the latest expiry is {} (or leave --until out: until removed)",
                latest_until().format("%Y-%m-%dT%H:%M:%SZ")
            )
        } else {
            format!("expected {UNTIL_FORMS}, found {s:?}")
        }
    })
}

pub fn main() -> ExitCode {
    let cli = Cli::parse();
    // The HTTP API answers on every core; everything else runs on one thread.
    let listens = matches!(&cli.command, Command::Serve(a) if a.listen.is_some());
    let mut runtime = if listens {
        tokio::runtime::Builder::new_multi_thread()
    } else {
        tokio::runtime::Builder::new_current_thread()
    };
    let result = runtime
        .enable_all()
        .build()
        .map_err(CliError::Runtime)
        .and_then(|rt| rt.block_on(run(cli)));
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            match &e {
                CliError::Closed => {}
                e if e.is_plain() => term::note(e.to_string()),
                e => term::note(format!("error: {e}")),
            }
            ExitCode::from(e.exit_code())
        }
    }
}

async fn run(cli: Cli) -> Result {
    match cli.command {
        Command::Demo { speed } => crate::demo::demo(speed).await,
        Command::Run(args) => run_cmd(args).await,
        Command::Status(args) => {
            let app = App::open(
                &args.store.opts(),
                cloud_spec(&args.cloud, &args.store, Speed::Max)?,
            )
            .await?;
            let workload = workload(&app, &args.config, &args.workload).await?;
            let cloud = app.connect(&workload).await?;
            let status = app.status(&cloud, &workload).await?;
            let mut text = render::status(&workload, &status);
            if !workload.schedules.is_empty() {
                let now = cloud.now();
                let overrides = app
                    .overrides(Some(workload.name.as_str()), false, now)
                    .await?;
                let state = schedules::state(&workload.schedules, &overrides, now);
                let next = schedules::next(&workload.schedules, &overrides, now, 2)?;
                text += &render::schedule_summary(&state, &next, &overrides, now);
            }
            term::out(text)
        }
        Command::Runs {
            workload,
            store,
            show,
        } => {
            let app = App::open(&store.opts(), aws(&store)).await?;
            match show {
                None => term::out(render::runs(&app.runs(workload.as_deref()).await?)),
                Some(RunsCommand::Show { id }) => {
                    term::out(render::run_show(&app.run_record(&id).await?))
                }
                Some(RunsCommand::Cancel { id }) => {
                    let run = app.cancel(&id).await?;
                    term::out(format!(
                        "run {} of {} cancelled; its lock is released\n",
                        run.id, run.workload
                    ))
                }
            }
        }
        Command::Exempt { command, store } => {
            let app = App::open(&store.opts(), aws(&store)).await?;
            match command {
                ExemptCommand::Add {
                    instance,
                    until,
                    reason,
                } => {
                    let e = app
                        .exempt(&instance, until, &reason, &caller(), Utc::now())
                        .await?;
                    term::out(render::exempted(&e))
                }
                ExemptCommand::Remove { instance } => {
                    app.unexempt(&instance).await?;
                    term::out(format!("{instance}: exemptions removed\n"))
                }
                ExemptCommand::List => {
                    term::out(render::exemptions(&app.exemptions().await?, Utc::now()))
                }
            }
        }
        Command::Load { files, store } => {
            let loaded = load(&files)?;
            let app = App::open(&store.opts(), aws(&store)).await?;
            for s in app.store_workloads(&loaded).await? {
                if !s.removed_tiers.is_empty() {
                    term::note(format!(
                        "{}: removed tiers no longer defined: {}",
                        s.name,
                        s.removed_tiers.join(", ")
                    ));
                }
            }
            let names: Vec<&str> = loaded.workloads.iter().map(|w| w.name.as_str()).collect();
            term::out(format!(
                "loaded {} workload{}: {}\n",
                names.len(),
                if names.len() == 1 { "" } else { "s" },
                names.join(", ")
            ))
        }
        Command::Schedule { command } => schedule_cmd(command).await,
        Command::Override { command, store } => override_cmd(command, store).await,
        Command::Serve(args) => serve_cmd(args).await,
        Command::Calendar {
            command: CalendarCommand::Import { ics, name },
        } => term::data(schedules::import_ics(&ics, &name)?),
        Command::Savings(args) => savings_cmd(args).await,
        Command::Prices { command } => prices_cmd(command).await,
        Command::Token { command, store } => token_cmd(command, store).await,
        Command::Validate { files } => validate(&files),
        Command::Plan(args) => plan_cmd(args),
        Command::Export {
            format,
            workload,
            output,
            files,
        } => export(&files, format, workload.as_deref(), output.as_deref()),
        Command::Schema => term::data(ec2_scheduler_config::native::schema_json()),
        Command::Openapi => term::data(ec2_scheduler_api::openapi_json()),
    }
}

/// AWS, for commands that only need the store.
fn aws(store: &StoreArg) -> CloudSpec {
    CloudSpec::Aws {
        endpoint_url: store.endpoint_url.clone(),
    }
}

fn cloud_spec(args: &CloudArgs, store: &StoreArg, speed: Speed) -> Result<CloudSpec> {
    match (args.cloud, &args.fleet) {
        (CloudKind::Sim, Some(fleet)) => Ok(CloudSpec::SimFile {
            fleet: fleet.clone(),
            speed,
            start: None,
        }),
        (CloudKind::Sim, None) => {
            Err(Error::Invalid("--cloud sim needs --fleet FLEET.json".into()).into())
        }
        (CloudKind::Aws, _) => Ok(aws(store)),
    }
}

/// The workload `name`, from `files` when given (printing their warnings), else from
/// the store.
async fn workload(app: &App, files: &[PathBuf], name: &str) -> Result<Workload> {
    let (w, loaded) = app.workload(files, name).await?;
    warn(&loaded);
    Ok(w)
}

fn warn(loaded: &Loaded) {
    for w in &loaded.warnings {
        term::note(w.to_string());
    }
}

/// Reads and decodes workload files, printing warnings to standard error.
fn load(files: &[PathBuf]) -> Result<Loaded> {
    let loaded = workloads::load_files(files)?;
    warn(&loaded);
    Ok(loaded)
}

fn scale_in(apply: bool) -> ScaleIn {
    if apply {
        ScaleIn::Apply
    } else {
        ScaleIn::ReportOnly
    }
}

/// The schedules `of` names, with the workload's overrides from the store.
async fn schedules_of(of: &ScheduleOf) -> Result<(Vec<Schedule>, Vec<Override>)> {
    if let Some(path) = &of.schedule {
        return Ok((vec![schedules::read_schedule(path)?], Vec::new()));
    }
    let name = of.workload.as_deref().unwrap_or_default();
    let app = App::open(&of.store.opts(), aws(&of.store)).await?;
    let w = workload(&app, &of.config, name).await?;
    let overrides = app.overrides(Some(name), true, Utc::now()).await?;
    Ok((w.schedules, overrides))
}

async fn savings_cmd(args: SavingsArgs) -> Result {
    let mut prices = match &args.prices {
        Some(p) => Prices::with_file(p)?,
        None => Prices::bundled(),
    };
    prices.price_list = !args.no_price_list;
    let from = args.from.unwrap_or_else(|| Utc::now().date_naive());
    let to = args.to.unwrap_or(from + chrono::Duration::days(30));
    let (from, to) = (
        from.and_time(chrono::NaiveTime::MIN).and_utc(),
        to.and_time(chrono::NaiveTime::MIN).and_utc(),
    );
    let mut cloud = cloud_spec(&args.cloud, &args.store, Speed::Max)?;
    if let CloudSpec::SimFile { start, .. } = &mut cloud {
        *start = args.sim_clock;
    }
    let app = App::open(&args.store.opts(), cloud).await?;
    let workloads: Vec<Workload> = match (&args.workload, args.config.is_empty()) {
        (Some(name), _) => vec![workload(&app, &args.config, name).await?],
        (None, false) => load(&args.config)?.workloads,
        (None, true) => app.stored_workloads().await?,
    };
    let mut report = Vec::new();
    for w in &workloads {
        let cloud = app.connect(w).await?;
        report.push(app.savings(&cloud, w, from, to, &prices).await?);
    }
    match args.output {
        Output::Text => term::out(render::savings(&report)),
        Output::Json => term::data(serde_json::to_string_pretty(&report)? + "\n"),
    }
}

async fn token_cmd(command: TokenCommand, store: StoreArg) -> Result {
    let app = App::open(&store.opts(), aws(&store)).await?;
    let now = Utc::now();
    match command {
        TokenCommand::Create {
            name,
            role,
            expires,
            created_by,
            output,
        } => {
            let by = created_by.unwrap_or_else(caller);
            let t = app.create_token(&name, role, expires, &by, now).await?;
            match output {
                Output::Json => term::data(serde_json::to_string_pretty(&t)? + "\n"),
                Output::Text => term::out(format!(
                    "{}\n\nid {}, {}, role {}, {}. This is the only time the token is shown.\n",
                    t.token,
                    t.record.id,
                    t.record.name,
                    t.record.role,
                    t.record
                        .expires
                        .map_or("no expiry".to_string(), |e| format!(
                            "expires {}",
                            e.to_rfc3339()
                        ))
                )),
            }
        }
        TokenCommand::List { output } => {
            let list = app.tokens().await?;
            match output {
                Output::Json => term::data(serde_json::to_string_pretty(&list)? + "\n"),
                Output::Text => term::out(render::tokens(&list, now)),
            }
        }
        TokenCommand::Revoke { id } => {
            let t = app.revoke_token(&id, now).await?;
            term::out(format!("revoked token {} ({})\n", t.id, t.name))
        }
    }
}

async fn prices_cmd(command: PricesCommand) -> Result {
    let (region, instance_type, output, endpoint_url) = match command {
        PricesCommand::Bundled => {
            return term::data(serde_json::to_string_pretty(&Prices::bundled())? + "\n");
        }
        PricesCommand::Update {
            region,
            instance_type,
            output,
            endpoint_url,
        } => (region, instance_type, output, endpoint_url),
    };
    let bundled = Prices::bundled();
    let regions: Vec<String> = if region.is_empty() {
        bundled.regions.keys().cloned().collect()
    } else {
        region
    };
    let types = regions
        .into_iter()
        .map(|r| {
            let list = if instance_type.is_empty() {
                bundled
                    .regions
                    .get(&r)
                    .map(|t| t.keys().cloned().collect())
                    .unwrap_or_default()
            } else {
                instance_type.clone()
            };
            (r, list)
        })
        .collect::<std::collections::BTreeMap<String, Vec<String>>>();
    if let Some((r, _)) = types.iter().find(|(_, l)| l.is_empty()) {
        return Err(Error::Invalid(format!(
            "--region {r}: the bundled table has no types there; name them with --type"
        ))
        .into());
    }
    let today = Utc::now().date_naive().to_string();
    let table = ec2_scheduler_app::savings::fetch_prices(endpoint_url, &types, &today).await?;
    let text = serde_json::to_string_pretty(&table)? + "\n";
    match output {
        Some(path) => {
            ec2_scheduler_app::files::write_atomic(&path, text.as_bytes())?;
            let n: usize = table.regions.values().map(|t| t.len()).sum();
            term::out(format!(
                "wrote {n} price{} in {} region{} to {}\n",
                if n == 1 { "" } else { "s" },
                table.regions.len(),
                if table.regions.len() == 1 { "" } else { "s" },
                path.display()
            ))
        }
        None => term::data(text),
    }
}

async fn serve_cmd(args: ServeArgs) -> Result {
    init_service_logging(args.log_level, args.log_format);
    let mut demo = None;
    let app = if args.demo {
        let served = crate::demo::serve_app(
            args.start.unwrap_or_else(Utc::now),
            args.speed.unwrap_or(Speed::Times(60.0)),
        )
        .await?;
        demo = Some((served.operator, served.viewer));
        Arc::new(served.app)
    } else {
        let mut cloud = cloud_spec(
            &args.cloud,
            &args.store,
            args.speed.unwrap_or(Speed::Times(1.0)),
        )?;
        match &mut cloud {
            CloudSpec::SimFile { start, .. } => *start = args.start,
            _ if args.start.is_some() => {
                return Err(Error::Invalid(
                    "--start needs --cloud sim --fleet FLEET.json or --demo".into(),
                )
                .into());
            }
            _ => {}
        }
        Arc::new(App::open(&args.store.opts(), cloud).await?)
    };
    let stop = Arc::new(AtomicBool::new(false));
    for kind in [SignalKind::terminate(), SignalKind::interrupt()] {
        let mut signal = tokio::signal::unix::signal(kind).map_err(CliError::Runtime)?;
        let stop = stop.clone();
        tokio::spawn(async move {
            signal.recv().await;
            stop.store(true, Ordering::SeqCst);
        });
    }
    let mut options = ec2_scheduler_app::serve::Options {
        grace: std::time::Duration::from_secs(args.grace_minutes.saturating_mul(60)),
        until: args.until,
        turn: std::time::Duration::from_secs(args.turn_seconds),
        ..Default::default()
    };
    // A demo has no history: events before it began were not missed.
    if args.demo {
        options.lookback = options.grace;
    }
    let listen = args
        .listen
        .clone()
        .or_else(|| args.demo.then(|| "127.0.0.1:8080".to_string()));
    let Some(addr) = &listen else {
        return Ok(app.serve(&options, stop).await?);
    };
    // The API and the scheduler share the clouds (one simulated region) and the
    // runs: those the API begins are handed to the scheduler to drive.
    let clouds = Arc::new(ec2_scheduler_app::clouds::Clouds::new(&app));
    if let Some(w) = app.stored_workloads().await?.first() {
        clouds.get(&app, w).await?;
    }
    let inbox = Arc::new(ec2_scheduler_app::serve::Inbox::default());
    let state = ec2_scheduler_api::State::new(app.clone(), clouds.clone(), inbox.clone());
    let router = ec2_scheduler_api::app(
        state,
        &ec2_scheduler_api::Limits {
            cors_origins: args.cors_origin.clone(),
            ..Default::default()
        },
    );
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|e| Error::Invalid(format!("--listen {addr}: {e}")))?;
    let bound = listener.local_addr().map_err(CliError::Runtime)?;
    tracing::info!(address = %bound, "API listening");
    term::note(format!("API listening on http://{bound}"));
    if let Some((operator, viewer)) = &demo {
        term::out(format!(
            "Demo: a simulated us-west-2 (ExampleTestCase and Analytics) whose clock runs at {} virtual seconds per real second; nothing is kept.\n\
             Dashboard: http://{bound}/\n\
             Operator token: {operator}\n\
             Viewer token:   {viewer}\n",
            match args.speed.unwrap_or(Speed::Times(60.0)) {
                Speed::Times(x) => x.to_string(),
                Speed::Max => "max".to_string(),
            }
        ))?;
    }
    let http = tokio::spawn(ec2_scheduler_api::serve_http(
        listener,
        router,
        stop.clone(),
    ));
    let served = app
        .serve_with(&clouds, &inbox, &options, stop.clone())
        .await;
    stop.store(true, Ordering::SeqCst);
    let _ = http.await;
    Ok(served?)
}

async fn override_cmd(command: OverrideCommand, store: StoreArg) -> Result {
    let app = App::open(&store.opts(), aws(&store)).await?;
    let now = Utc::now();
    match command {
        OverrideCommand::Add {
            workload: name,
            config,
            skip_next,
            postpone_next: _,
            until,
            keep_running_until,
            keep_stopped_until,
            reason,
        } => {
            let request = match (skip_next, until, keep_running_until, keep_stopped_until) {
                (Some(kind), _, _, _) => OverrideRequest::SkipNext(kind),
                (_, Some(until), _, _) => OverrideRequest::PostponeNextStop { until },
                (_, _, Some(until), _) => OverrideRequest::KeepRunning { until },
                (_, _, _, Some(until)) => OverrideRequest::KeepStopped { until },
                _ => {
                    return Err(Error::Invalid(
                        "say what to change: --skip-next start|stop, --postpone-next stop --until TIME, --keep-running-until TIME or --keep-stopped-until TIME".into(),
                    )
                    .into());
                }
            };
            let w = workload(&app, &config, &name).await?;
            let o = app
                .add_override(&w, request, &caller(), &reason, now)
                .await?;
            term::out(format!("{o}\n"))
        }
        OverrideCommand::List { workload, all } => {
            let list = app.overrides(workload.as_deref(), all, now).await?;
            term::out(render::overrides(&list, now))
        }
        OverrideCommand::Remove { id } => {
            app.remove_override(&id).await?;
            term::out(format!("override {id} removed\n"))
        }
    }
}

async fn schedule_cmd(command: ScheduleCommand) -> Result {
    match command {
        ScheduleCommand::History(args) => {
            let app = App::open(&args.store.opts(), aws(&args.store)).await?;
            let records = app
                .event_records(args.workload.as_deref(), args.limit)
                .await?;
            match args.output {
                Output::Text => term::out(render::event_records(&records)),
                Output::Json => term::data(serde_json::to_string_pretty(&records)? + "\n"),
            }
        }
        ScheduleCommand::State { of, at, output } => {
            let (list, overrides) = schedules_of(&of).await?;
            let state = schedules::state(&list, &overrides, at.unwrap_or_else(Utc::now));
            match output {
                Output::Text => term::out(render::schedule_state(&state, list.is_empty())),
                Output::Json => term::data(serde_json::to_string_pretty(&state)? + "\n"),
            }
        }
        ScheduleCommand::Next {
            of,
            from,
            count,
            output,
        } => {
            let (list, overrides) = schedules_of(&of).await?;
            let events = schedules::next(&list, &overrides, from.unwrap_or_else(Utc::now), count)?;
            match output {
                Output::Text => term::out(render::next_events(&events, list.is_empty())),
                Output::Json => term::data(serde_json::to_string_pretty(&events)? + "\n"),
            }
        }
    }
}

async fn run_cmd(args: RunArgs) -> Result {
    init_logging(args.log_level, args.log_format);
    let app = App::open(
        &args.store.opts(),
        cloud_spec(&args.cloud, &args.store, args.speed)?,
    )
    .await?;
    let workload = workload(&app, &args.config, &args.workload).await?;
    let cloud = app.connect(&workload).await?;
    let req = RunRequest {
        action: args.action,
        profile: args.profile.clone(),
        scale_in: scale_in(args.scale_in),
    };
    if args.dry_run {
        let plan = app.dry_run(&cloud, &workload, &req).await?;
        return match args.output {
            Output::Text => term::out(format!(
                "Dry run: nothing is changed.\n{}",
                render::plan_text(&plan)
            )),
            Output::Json => term::data(serde_json::to_string_pretty(&plan)? + "\n"),
        };
    }
    let quiet = matches!(args.log_level, LogLevel::Critical | LogLevel::Error)
        || args.log_format == LogFormat::Json;
    let mut progress = Progress::new(quiet || args.output == Output::Json);
    let run = match app
        .run(
            &cloud,
            &workload,
            &req,
            args.resume.as_deref(),
            &mut progress,
        )
        .await?
    {
        Outcome::NothingToDo(plan) => {
            return match args.output {
                Output::Text => term::out(render::plan_text(&plan)),
                Output::Json => term::data(serde_json::to_string_pretty(&plan)? + "\n"),
            };
        }
        Outcome::Finished(run) => run,
    };
    match args.output {
        Output::Text => term::out(render::run_report(&run))?,
        Output::Json => {
            let mut summary = run.summary();
            if cloud.sim().is_none() {
                // Everything this process sent, the store's requests included.
                summary["aws_requests"] = serde_json::json!(app.requests());
            }
            term::data(serde_json::to_string_pretty(&summary)? + "\n")?
        }
    }
    if run.status == RunStatus::Succeeded {
        Ok(())
    } else {
        Err(CliError::RunNotSuccessful {
            id: run.id.clone(),
            status: run.status.as_str(),
        })
    }
}

fn validate(files: &[PathBuf]) -> Result {
    let loaded = load(files)?;
    let names: Vec<String> = loaded
        .workloads
        .iter()
        .map(|w| format!("{} ({} tiers)", w.name, w.tiers().len()))
        .collect();
    term::out(format!(
        "ok: {} workload{}: {}\n",
        names.len(),
        if names.len() == 1 { "" } else { "s" },
        names.join(", ")
    ))
}

fn plan_cmd(args: PlanArgs) -> Result {
    let loaded = load(&args.config)?;
    let plan = workloads::preview(&Preview {
        workload: workloads::pick(&loaded, &args.workload)?,
        observed: &args.observed,
        exemptions: args.exemptions.as_deref(),
        action: args.action,
        profile: args.profile.as_deref(),
        scale_in: scale_in(args.scale_in),
        now: args.now.unwrap_or_else(Utc::now),
    })?;
    match args.output {
        Output::Text => term::out(render::plan_text(&plan)),
        Output::Json => term::data(serde_json::to_string_pretty(&plan)? + "\n"),
    }
}

fn export(files: &[PathBuf], format: Format, only: Option<&str>, output: Option<&Path>) -> Result {
    let text = workloads::export(load(files)?, format, only)?;
    match output {
        None => term::data(text),
        Some(p) => Ok(ec2_scheduler_app::files::write_atomic(p, text.as_bytes())?),
    }
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
        "--log-format",
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
                let _ = parse_until(t);
                let _ = parse_speed(t);
                let _ = parse_time(t);
                let _ = parse_format(t);
                let _ = parse_action(t);
            }
        }
    }
}
