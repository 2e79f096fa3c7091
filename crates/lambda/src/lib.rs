//! ec2-scheduler on AWS Lambda: one `bootstrap` (runtime `provided.al2023`) serves
//! the function its `EC2S_FUNCTION` names. Each handler parses its event and calls the
//! application layer; nothing here waits for an instance.
//!
//! - `api`: the HTTP API's router ([`ec2_scheduler_api::app`]) behind API Gateway
//!   (HTTP API), with the caller's IAM identity from the request context; the runs
//!   it begins go to the state machine ([`api`]).
//! - `run-step`: begins or resumes a run and advances it by one tick ([`run_step`]);
//!   the state machine waits between steps.
//! - `event-gate`: whether a scheduled event fires ([`event_gate`]), by the rules of
//!   `serve`.
//! - `event-failed`: records a run the state machine gave up on ([`event_failed`]).
//! - `schedule-sync`: keeps EventBridge Scheduler's one-time schedules in step with
//!   the workloads' next events ([`schedule_sync`]).
//!
//! The store is DynamoDB: the original's tables and the state table, named by
//! `WORKLOAD_TABLE`, `TIER_TABLE`, `STATE_TABLE` and `WORKLOAD_STATE_TABLE`, in the
//! function's region (`AWS_REGION`).

pub mod api;

use std::sync::Arc;

use chrono::{DateTime, Utc};
use ec2_scheduler_app::clouds::Clouds;
use ec2_scheduler_app::env::Tables;
use ec2_scheduler_app::gate::Gate;
use ec2_scheduler_app::runs::Keyed;
use ec2_scheduler_app::sync::Synced;
use ec2_scheduler_app::{App, Begin, CloudSpec, Error, Next, Quiet, StoreOpts};
use ec2_scheduler_aws::scheduler::EventBridgeSchedules;
use ec2_scheduler_core::Action;
use ec2_scheduler_core::plan::ScaleIn;
use ec2_scheduler_core::schedule::EventKind;
use ec2_scheduler_engine::RunRequest;
use ec2_scheduler_engine::ports::EventSchedules;
use serde::{Deserialize, Serialize};

/// What every handler of one function instance shares.
pub struct Env {
    pub app: Arc<App>,
    pub clouds: Arc<Clouds>,
    /// The deployment's one-time schedules (the schedule-sync function's).
    pub schedules: Option<Arc<dyn EventSchedules>>,
    /// The longest wait a run step sleeps through itself ([`HOLD`]).
    pub hold: std::time::Duration,
}

/// The lock owner of every function of a deployment (`EC2S_OWNER`, which the template
/// sets to the stack's name): each run step may run in another container than the
/// one before it, or than the API function that began the run, and must go on with
/// the run that the lock names.
pub fn owner_from_env() -> String {
    std::env::var("EC2S_OWNER")
        .ok()
        .filter(|o| !o.trim().is_empty())
        .unwrap_or_else(|| "ec2-scheduler-serverless".to_string())
}

/// Whether this function only plans and shows (the API, `EC2S_FUNCTION=api`, whose
/// runs the state machine drives): it then assumes workloads' roles in other
/// accounts as their observer, whom those roles refuse every change.
pub fn observes_only_from_env() -> bool {
    std::env::var("EC2S_FUNCTION").is_ok_and(|f| f == "api")
}

/// How many days finished runs and event records are kept (`HISTORY_TTL_DAYS`, which
/// the template sets from `HistoryRetentionDays`); unset or 0: kept.
pub fn history_ttl_from_env() -> Option<u32> {
    std::env::var("HISTORY_TTL_DAYS")
        .ok()
        .and_then(|d| d.trim().parse::<u32>().ok())
        .filter(|d| *d > 0)
}

/// The tables, from the environment (the template sets them), with the original's
/// names as defaults.
pub fn tables_from_env() -> Tables {
    let mut t = Tables::default();
    let var = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
    if let Some(v) = var("WORKLOAD_TABLE") {
        t.workloads = v;
    }
    if let Some(v) = var("TIER_TABLE") {
        t.tiers = v;
    }
    if let Some(v) = var("STATE_TABLE") {
        t.state = v;
    }
    if let Some(v) = var("WORKLOAD_STATE_TABLE") {
        t.workload_state = v;
    }
    t
}

impl Env {
    /// The environment of a function: the DynamoDB store in `region` with `tables`,
    /// AWS as the cloud (through `endpoint_url` when given, as in tests).
    ///
    /// # Errors
    /// The store cannot be opened.
    pub async fn open(
        region: &str,
        tables: Tables,
        endpoint_url: Option<String>,
    ) -> Result<Env, Error> {
        let opts = StoreOpts {
            spec: None,
            dynamodb_region: Some(region.to_string()),
            endpoint_url: endpoint_url.clone(),
            tables,
            history_ttl_days: history_ttl_from_env(),
        };
        let mut app = App::open(&opts, CloudSpec::Aws { endpoint_url })
            .await?
            .with_poll(POLL)
            .with_owner(owner_from_env())
            // Each container drives one run step at a time: concurrent runs
            // are in other containers and share the account through the table.
            .with_pacing_through_store();
        if observes_only_from_env() {
            app = app.observing_only();
        }
        let app = Arc::new(app);
        let clouds = Arc::new(Clouds::new(&app));
        Ok(Env {
            app,
            clouds,
            schedules: None,
            hold: HOLD,
        })
    }

    /// With run steps that sleep through waits up to `hold` only.
    #[must_use]
    pub fn with_hold(mut self, hold: std::time::Duration) -> Env {
        self.hold = hold;
        self
    }

    /// With the one-time schedules of `group`, each starting `state_machine` as
    /// `role` (`SCHEDULE_GROUP`, `STATE_MACHINE_ARN`, `SCHEDULER_ROLE_ARN`).
    #[must_use]
    pub fn with_schedules(mut self, schedules: Arc<dyn EventSchedules>) -> Env {
        self.schedules = Some(schedules);
        self
    }
}

/// The schedules the environment names, if it names them all.
pub async fn schedules_from_env(
    region: &str,
    endpoint_url: Option<String>,
) -> Option<Arc<dyn EventSchedules>> {
    let var = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
    let (group, machine, role) = (
        var("SCHEDULE_GROUP")?,
        var("STATE_MACHINE_ARN")?,
        var("SCHEDULER_ROLE_ARN")?,
    );
    Some(Arc::new(
        EventBridgeSchedules::connect(region, endpoint_url, &group, &machine, &role)
            .await
            .with_dead_letters(var("SCHEDULE_DLQ_ARN")),
    ))
}

/// The schedule sync's input: one workload, or all when none is named.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SyncInput {
    #[serde(default)]
    pub workload: Option<String>,
}

/// Brings the deployment's one-time schedules in step with the workloads' next
/// events ([`App::sync_schedules`]). Workloads are synced one by one; when some could
/// not be, the others are synced and the function then fails, naming them (so that
/// the stack's alarm on this function's errors tells someone).
///
/// # Errors
/// The environment names no schedule group; the store's and the scheduler's errors;
/// workloads that could not be synced.
pub async fn schedule_sync(
    env: &Env,
    input: SyncInput,
    now: DateTime<Utc>,
) -> Result<Synced, Error> {
    let Some(schedules) = &env.schedules else {
        return Err(Error::Invalid(
            "schedule sync needs SCHEDULE_GROUP, STATE_MACHINE_ARN and SCHEDULER_ROLE_ARN".into(),
        ));
    };
    let synced = env
        .app
        .sync_schedules(schedules.as_ref(), input.workload.as_deref(), now)
        .await?;
    if synced.failed.is_empty() {
        return Ok(synced);
    }
    let list: Vec<String> = synced
        .failed
        .iter()
        .map(|(w, e)| format!("{w}: {e}"))
        .collect();
    Err(Error::Upstream(ec2_scheduler_engine::ports::ApiError {
        kind: ec2_scheduler_engine::ports::ErrorKind::Other,
        action: "schedule-sync".into(),
        code: "WorkloadsNotSynced".into(),
        message: format!(
            "{} created, {} deleted, {} kept; not synced: {}",
            synced.created.len(),
            synced.deleted.len(),
            synced.kept,
            list.join("; ")
        ),
        instances: Vec::new(),
    }))
}

fn action(s: &str) -> Result<Action, Error> {
    s.parse::<Action>().map_err(Error::Invalid)
}

fn kind(a: Action) -> EventKind {
    match a {
        Action::Start => EventKind::Start,
        Action::Stop => EventKind::Stop,
    }
}

/// The run step's input: the run to begin (workload, action, profile, and the
/// event's key, which names the run), or the run to go on with (`run_id`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StepInput {
    pub workload: String,
    pub action: String,
    #[serde(default)]
    pub profile: Option<String>,
    /// The idempotency key of the run: retried, the step finds the run it began.
    #[serde(default)]
    pub key: Option<String>,
    /// The run to advance; none on the first step.
    #[serde(default)]
    pub run_id: Option<String>,
    /// Who asked for it (recorded on the run when it begins).
    #[serde(default)]
    pub requested_by: Option<String>,
}

/// The run step's answer, for the state machine's Choice and Wait.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct StepOutput {
    /// None when there was nothing to do.
    pub run_id: Option<String>,
    pub done: bool,
    /// The run's status (`running`, `succeeded`, ...), or `nothing-to-do`.
    pub outcome: String,
    /// How long to wait before the next step (at least 1 s).
    pub wait_seconds: u64,
}

impl StepOutput {
    fn done(run_id: Option<String>, outcome: &str) -> StepOutput {
        StepOutput {
            run_id,
            done: true,
            outcome: outcome.to_string(),
            wait_seconds: 0,
        }
    }
}

/// Begins the run (first step) or goes on with it, and advances it: by one tick, and
/// by more while the waits between them are short ([`HOLD`], within [`BUDGET`]).
///
/// # Errors
/// No such workload or profile, the workload busy with another run, the store or
/// AWS failing: the state machine retries or catches them.
pub async fn run_step(env: &Env, input: StepInput) -> Result<StepOutput, Error> {
    let app = &env.app;
    let w = app.stored_workload(&input.workload).await?;
    let cloud = env.clouds.get(app, &w).await?;
    let run_id = match input.run_id {
        Some(id) => {
            let run = app.run_record(&id).await?;
            if run.status.is_finished() {
                return Ok(StepOutput::done(Some(id), run.status.as_str()));
            }
            id
        }
        None => {
            let req = RunRequest {
                action: action(&input.action)?,
                profile: input.profile.clone().filter(|p| !p.is_empty()),
                scale_in: ScaleIn::ReportOnly,
            };
            let begun = match &input.key {
                Some(k) => match app.begin_run_keyed(&cloud, &w, &req, k).await? {
                    Keyed::Repeated(id) => Ok(id),
                    Keyed::Begun(b) => Err(b),
                },
                None => Err(app.begin_run(&cloud, &w, &req, None, &mut Quiet).await?),
            };
            match begun {
                Ok(id) => id,
                Err(Begin::NothingToDo(_)) => return Ok(StepOutput::done(None, "nothing-to-do")),
                Err(Begin::Started(run) | Begin::Resumed(run)) => {
                    if let Some(by) = &input.requested_by {
                        app.attribute_run(&run.id, by).await?;
                    }
                    run.id
                }
            }
        }
    };
    // Time slept here (the cloud's: real on AWS, virtual on the simulator).
    let mut held = std::time::Duration::ZERO;
    loop {
        match app.advance(&cloud, &w, &run_id).await? {
            Next::Done(run) => return Ok(StepOutput::done(Some(run_id), run.status.as_str())),
            // A short wait (a pause, the pacing of calls) is cheaper here than a round
            // through the state machine; a wait for instances is never this short.
            Next::Wait(d, _) if d <= env.hold && held + d <= BUDGET => {
                cloud.wait(d).await;
                held += d;
            }
            Next::Wait(d, run) => {
                return Ok(StepOutput {
                    run_id: Some(run_id),
                    done: false,
                    outcome: run.status.as_str().to_string(),
                    wait_seconds: d.as_secs_f64().ceil().max(1.0) as u64,
                });
            }
        }
    }
}

/// How often a wait for instances looks under Lambda: each look is a Lambda
/// invocation and three state transitions.
pub const POLL: std::time::Duration = std::time::Duration::from_secs(15);
/// The longest wait the run step sleeps through itself (pauses, pacing); longer
/// ones, and every wait for instances ([`POLL`]), go back to the state machine.
pub const HOLD: std::time::Duration = std::time::Duration::from_secs(10);
/// How long one run step sleeps through short waits at most (its Lambda timeout is
/// 120 s).
pub const BUDGET: std::time::Duration = std::time::Duration::from_secs(60);

/// The event gate's input: one event of a workload's schedules.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GateInput {
    pub workload: String,
    /// `start` or `stop`.
    pub action: String,
    /// The event's instant.
    pub at: DateTime<Utc>,
    /// Who asks (the state machine's execution): a retried gate step of the same
    /// execution gets the answer the first try got.
    #[serde(default)]
    pub claimant: Option<String>,
}

/// How late an event may still fire (as `serve --grace-minutes`'s default).
pub const GRACE: std::time::Duration = std::time::Duration::from_secs(15 * 60);

/// Whether the event fires now, and with which profile ([`App::gate_event`]).
///
/// # Errors
/// No such workload; the store's errors.
pub async fn event_gate(env: &Env, input: GateInput, now: DateTime<Utc>) -> Result<Gate, Error> {
    env.app
        .gate_event(
            &input.workload,
            kind(action(&input.action)?),
            input.at,
            now,
            GRACE,
            input.claimant.as_deref(),
        )
        .await
}

/// What the state machine's Catch passes on: its execution and its whole state when
/// it gave up (the event, the gate's answer, the last step, the error caught), which
/// may be any of the shapes the definition makes, so each part is read if present.
#[derive(Debug, Clone, Deserialize)]
pub struct FailedInput {
    #[serde(default)]
    pub execution: Option<String>,
    pub state: serde_json::Value,
}

impl FailedInput {
    fn text(&self, path: &[&str]) -> Option<&str> {
        path.iter()
            .try_fold(&self.state, |v, k| v.get(k))
            .and_then(serde_json::Value::as_str)
            .filter(|s| !s.is_empty())
    }
}

/// Ends the run a failed execution was driving (found by its id, or by the key of
/// its event when its first step failed) and records its event as failed.
///
/// # Errors
/// No workload in the state; the store's errors.
pub async fn event_failed(
    env: &Env,
    input: FailedInput,
    now: DateTime<Utc>,
) -> Result<ec2_scheduler_app::gate::Failed, Error> {
    let workload = input
        .text(&["workload"])
        .ok_or_else(|| Error::Invalid("the failed execution's state names no workload".into()))?
        .to_string();
    let event = match (input.text(&["action"]), input.text(&["at"])) {
        (Some(a), Some(at)) => {
            let at = DateTime::parse_from_rfc3339(at)
                .map_err(|e| Error::Invalid(format!("at {at:?}: {e}")))?
                .with_timezone(&Utc);
            Some((kind(action(a)?), at))
        }
        _ => None,
    };
    let run_id = match (
        input.text(&["run_id"]),
        input.text(&["step", "run_id"]),
        input.text(&["gate", "key"]),
    ) {
        (Some(id), _, _) | (None, Some(id), _) => Some(id.to_string()),
        (None, None, Some(key)) => Some(ec2_scheduler_app::runs::keyed_run_id(&workload, key)?),
        (None, None, None) => None,
    };
    let detail = format!(
        "the state machine gave up{}: {} {}",
        input
            .execution
            .as_deref()
            .map(|e| format!(" (execution {e})"))
            .unwrap_or_default(),
        input.text(&["error", "Error"]).unwrap_or(""),
        input.text(&["error", "Cause"]).unwrap_or("")
    );
    env.app
        .event_failed(&workload, event, run_id.as_deref(), detail.trim(), now)
        .await
}
