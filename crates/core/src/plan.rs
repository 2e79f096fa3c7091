//! The planner: a pure function from (workload, observed fleet, action, profile,
//! exemptions, now) to a [`Plan`].
//!
//! A plan is a list of stages in execution order. Tiers with the same order number
//! form one stage and run in parallel; each tier carries the steps to run for it. The
//! planner decides *what* to do; the engine decides *how* (batching, pacing, retries)
//! and re-observes before each step.
//!
//! # Guarantees
//! - No instance appears in a step unless it is a member of the workload (see
//!   [`membership`]).
//! - No exempt instance appears in a stop step; each exclusion says why.
//! - The plan does not depend on the order of the observed instances.
//! - A workload already in the target state gets a plan without steps.

use std::collections::{BTreeMap, HashSet};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::exemption::{Exemption, TagExemption, read_tag};
use crate::fleet::{Instance, InstanceState, NonMember, membership};
use crate::model::{Action, Gate, Os, Profile, Tier, Workload};
use crate::subset::{Slot, choose_to_start, choose_to_stop};

/// Errors that prevent planning.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PlanError {
    /// The requested profile is defined by no tier of the workload.
    #[error("profile {profile:?} is not defined by any tier of workload {workload:?} (defined: {})", if known.is_empty() { "none".to_string() } else { known.join(", ") })]
    UnknownProfile {
        workload: String,
        profile: String,
        known: Vec<String>,
    },
    /// The observed fleet lists one instance id twice.
    #[error("instance {0} is observed more than once")]
    DuplicateInstance(String),
}

/// Whether a start with a fleet subset below the running count stops the surplus.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ScaleIn {
    /// Report the surplus, stop nothing (default).
    #[default]
    ReportOnly,
    /// Stop the surplus (deregistering first, keeping AZ balance).
    Apply,
}

/// Everything the planner looks at.
#[derive(Debug, Clone)]
pub struct PlanRequest<'a> {
    pub workload: &'a Workload,
    pub observed: &'a [Instance],
    pub action: Action,
    pub profile: Option<&'a str>,
    pub scale_in: ScaleIn,
    /// Exemptions from a store; those expired at `now` are ignored.
    pub exemptions: &'a [Exemption],
    pub now: DateTime<Utc>,
}

/// The result of planning.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Plan {
    pub workload: String,
    pub action: Action,
    pub profile: Option<String>,
    /// In execution order.
    pub stages: Vec<Stage>,
    /// Members left alone on purpose, with the reason.
    pub excluded: Vec<Exclusion>,
    pub notes: Vec<Note>,
    /// Instances near the workload that are not members (counts only, never acted on).
    pub ignored: Ignored,
    pub summary: Summary,
}

impl Plan {
    /// True when nothing would be done.
    pub fn is_empty(&self) -> bool {
        self.stages
            .iter()
            .flat_map(|s| &s.tiers)
            .all(|t| t.steps.is_empty())
    }

    /// Every instance id that some step acts on (probes included).
    pub fn touched(&self) -> impl Iterator<Item = &str> {
        self.stages
            .iter()
            .flat_map(|s| &s.tiers)
            .flat_map(|t| &t.steps)
            .flat_map(Step::instances)
    }
}

/// Tiers that run together.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Stage {
    pub order: i64,
    pub tiers: Vec<TierPlan>,
}

/// What happens to one tier.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TierPlan {
    pub tier: String,
    /// Member count, and how many are running/pending and stopped/stopping now.
    pub members: usize,
    pub up: usize,
    pub down: usize,
    /// How many should run after a start (fleet subset applied).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub target: Option<usize>,
    pub steps: Vec<Step>,
}

/// A step of a tier. Instance lists are sorted by id.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "step", rename_all = "snake_case")]
pub enum Step {
    /// Ask SSM whether the override file exists; only instances where it is confirmed
    /// absent go on to be stopped.
    ProbeOverride {
        path: String,
        os: Os,
        instances: Vec<String>,
    },
    /// Take instances out of the load balancers that hold them (with draining).
    Deregister {
        instances: Vec<String>,
    },
    Stop {
        instances: Vec<String>,
    },
    /// Wait until the instances reach `state`.
    WaitUntil {
        state: InstanceState,
        instances: Vec<String>,
    },
    /// Change instance types (instances are stopped).
    Resize {
        changes: Vec<Resize>,
    },
    Start {
        instances: Vec<String>,
    },
    /// Put instances back into the load balancers that held them.
    Register {
        instances: Vec<String>,
    },
    /// Wait for a readiness gate, failing after `timeout_secs`.
    Ready {
        gate: Gate,
        timeout_secs: u64,
        instances: Vec<String>,
    },
    Pause {
        seconds: u64,
        why: PauseReason,
    },
}

impl Step {
    /// The instances this step acts on.
    pub fn instances(&self) -> Box<dyn Iterator<Item = &str> + '_> {
        match self {
            Step::ProbeOverride { instances, .. }
            | Step::Deregister { instances }
            | Step::Stop { instances }
            | Step::WaitUntil { instances, .. }
            | Step::Start { instances }
            | Step::Register { instances }
            | Step::Ready { instances, .. } => Box::new(instances.iter().map(String::as_str)),
            Step::Resize { changes } => Box::new(changes.iter().map(|c| c.instance.as_str())),
            Step::Pause { .. } => Box::new(std::iter::empty()),
        }
    }

    /// A short name for the step kind.
    pub fn name(&self) -> &'static str {
        match self {
            Step::ProbeOverride { .. } => "probe-override",
            Step::Deregister { .. } => "deregister",
            Step::Stop { .. } => "stop",
            Step::WaitUntil { .. } => "wait",
            Step::Resize { .. } => "resize",
            Step::Start { .. } => "start",
            Step::Register { .. } => "register",
            Step::Ready { .. } => "ready",
            Step::Pause { .. } => "pause",
        }
    }
}

/// One instance type change.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Resize {
    pub instance: String,
    pub from: String,
    pub to: String,
}

/// Why a pause is there.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PauseReason {
    /// Let a type change settle before starting (the workload's resize delay).
    AfterResize,
    /// The tier's delay before the next stage.
    BeforeNextStage,
}

/// A member deliberately left alone.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Exclusion {
    pub instance: String,
    pub tier: String,
    pub reason: ExclusionReason,
}

/// Why a member is not stopped.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum ExclusionReason {
    /// It carries the exemption tag.
    ExemptTag {
        key: String,
        value: String,
        until: Option<DateTime<Utc>>,
    },
    /// Its exemption tag value is not understood; kept running to be safe.
    ExemptTagUnreadable { key: String, value: String },
    /// An exemption recorded in the store.
    ExemptStored {
        reason: String,
        until: Option<DateTime<Utc>>,
    },
    /// Its tier is configured never to stop.
    TierIgnoresStop,
    /// An Auto Scaling group manages it: stopped alone, it would be marked unhealthy
    /// and replaced by a new running instance, and the next start would find twice
    /// the fleet.
    AutoScalingGroup { group: String },
}

impl ExclusionReason {
    /// A human explanation.
    pub fn describe(&self) -> String {
        let until = |u: &Option<DateTime<Utc>>| match u {
            Some(t) => format!(" until {}", t.to_rfc3339()),
            None => String::new(),
        };
        match self {
            ExclusionReason::ExemptTag {
                key,
                value,
                until: u,
            } => {
                format!("exemption tag {key}={value:?}{}", until(u))
            }
            ExclusionReason::ExemptTagUnreadable { key, value } => format!(
                "exemption tag {key}={value:?} is not understood (expected true, false, an RFC 3339 time or YYYY-MM-DD); kept running to be safe"
            ),
            ExclusionReason::ExemptStored { reason, until: u } => {
                format!("stored exemption{}: {reason}", until(u))
            }
            ExclusionReason::TierIgnoresStop => "tier is configured to ignore stop".to_string(),
            ExclusionReason::AutoScalingGroup { group } => format!(
                "managed by Auto Scaling group {group}, which would replace it if it were stopped alone; kept running"
            ),
        }
    }
}

/// Something the user should know about the plan.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Note {
    pub code: NoteCode,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tier: Option<String>,
    pub message: String,
}

/// Machine-readable kind of a [`Note`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum NoteCode {
    /// The workload's kill switch is on.
    Disabled,
    /// The workload is already in the target state.
    NothingToDo,
    /// A tier has no settings for this action and is left alone.
    NoSettingsForAction,
    /// The requested profile is not defined for this tier.
    ProfileNotInTier,
    /// A profile was given with stop; profiles only apply on start.
    ProfileIgnoredOnStop,
    /// More instances run than the profile's fleet subset wants.
    SurplusRunning,
    /// Running instances have another type than the profile wants.
    RunningWithOtherType,
    /// An exemption tag value was not understood.
    UnreadableExemption,
    /// Members of a tier belong to an Auto Scaling group: they are never stopped one
    /// by one.
    AutoScalingGroupMembers,
}

/// The tag AWS puts on every instance an Auto Scaling group launched.
pub const AUTO_SCALING_GROUP_TAG: &str = "aws:autoscaling:groupName";

/// Counts of non-member instances that carry the workload tag.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Ignored {
    /// Workload tag but no tier tag, or a value no tier is configured for.
    pub no_configured_tier: usize,
    /// Outside the workload's VPC.
    pub other_vpc: usize,
    /// Terminated or shutting down.
    pub gone: usize,
}

/// Totals over the plan.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Summary {
    pub members: usize,
    pub to_stop: usize,
    pub to_start: usize,
    pub to_resize: usize,
    pub excluded: usize,
}

/// Plans one action on one workload.
///
/// # Errors
/// [`PlanError::UnknownProfile`] when a start names a profile that no tier defines;
/// [`PlanError::DuplicateInstance`] when the observed fleet repeats an instance id.
pub fn plan(req: &PlanRequest<'_>) -> Result<Plan, PlanError> {
    let workload = req.workload;
    let mut out = Plan {
        workload: workload.name.to_string(),
        action: req.action,
        profile: req.profile.map(str::to_string),
        stages: Vec::new(),
        excluded: Vec::new(),
        notes: Vec::new(),
        ignored: Ignored::default(),
        summary: Summary::default(),
    };
    if workload.disabled {
        out.notes.push(Note {
            code: NoteCode::Disabled,
            tier: None,
            message: "the workload is disabled (DisableAllSchedulingActions): no action is taken"
                .to_string(),
        });
        return Ok(out);
    }
    match (req.action, req.profile) {
        (Action::Start, Some(p)) if !workload.profile_names().contains(&p) => {
            return Err(PlanError::UnknownProfile {
                workload: workload.name.to_string(),
                profile: p.to_string(),
                known: workload
                    .profile_names()
                    .iter()
                    .map(|s| s.to_string())
                    .collect(),
            });
        }
        (Action::Stop, Some(p)) => out.notes.push(Note {
            code: NoteCode::ProfileIgnoredOnStop,
            tier: None,
            message: format!("profile {p:?} is ignored: profiles apply when starting"),
        }),
        _ => {}
    }

    let mut by_tier: BTreeMap<&str, Vec<&Instance>> = BTreeMap::new();
    for instance in req.observed {
        match membership(workload, instance) {
            Ok(tier) => by_tier.entry(tier).or_default().push(instance),
            Err(NonMember::OtherWorkload) => {}
            Err(NonMember::NoConfiguredTier) => out.ignored.no_configured_tier += 1,
            Err(NonMember::OtherVpc) => out.ignored.other_vpc += 1,
            Err(NonMember::Gone) => out.ignored.gone += 1,
        }
    }
    let mut seen = HashSet::new();
    for members in by_tier.values_mut() {
        members.sort_by(|a, b| a.id.cmp(&b.id));
        for m in members.iter() {
            if !seen.insert(m.id.as_str()) {
                return Err(PlanError::DuplicateInstance(m.id.clone()));
            }
        }
    }
    out.summary.members = seen.len();

    let exemptions = Exemptions::new(workload, req.exemptions, req.now);
    let mut stages: BTreeMap<i64, Vec<TierPlan>> = BTreeMap::new();
    let mut delays: BTreeMap<&str, u64> = BTreeMap::new();
    for tier in workload.tiers() {
        let members = by_tier
            .get(tier.name.as_str())
            .map_or(&[][..], Vec::as_slice);
        let mut tp = TierPlan {
            tier: tier.name.to_string(),
            members: members.len(),
            up: members.iter().filter(|m| m.state.is_up()).count(),
            down: members.iter().filter(|m| m.state.is_down()).count(),
            target: None,
            steps: Vec::new(),
        };
        // Members an Auto Scaling group manages: said once per group.
        let mut groups: BTreeMap<&str, usize> = BTreeMap::new();
        for m in members {
            if let Some(g) = m.tags.get(AUTO_SCALING_GROUP_TAG) {
                *groups.entry(g.as_str()).or_default() += 1;
            }
        }
        for (group, n) in groups {
            out.notes.push(Note {
                code: NoteCode::AutoScalingGroupMembers,
                tier: Some(tier.name.to_string()),
                message: format!(
                    "{n} member(s) belong to Auto Scaling group {group}: they are never stopped \
                     one by one (the group would replace them with new running instances); \
                     schedule the group by its own sizes, or take the tier tag off its instances"
                ),
            });
        }
        let order = match req.action {
            Action::Stop => tier.stop.as_ref().map(|s| &s.sequencing),
            Action::Start => tier.start.as_ref().map(|s| &s.sequencing),
        };
        let Some(seq) = order else {
            out.notes.push(Note {
                code: NoteCode::NoSettingsForAction,
                tier: Some(tier.name.to_string()),
                message: format!(
                    "tier has no {} settings; its {} members are left as they are",
                    req.action,
                    members.len()
                ),
            });
            continue;
        };
        match req.action {
            Action::Stop => plan_stop(tier, members, &exemptions, &mut tp, &mut out),
            Action::Start => plan_start(req, tier, members, &exemptions, &mut tp, &mut out),
        }
        delays.insert(tier.name.as_str(), seq.delay_secs);
        stages.entry(seq.order).or_default().push(tp);
    }

    out.stages = stages
        .into_iter()
        .map(|(order, tiers)| Stage { order, tiers })
        .collect();
    add_stage_delays(&mut out.stages, &delays);

    for step in out
        .stages
        .iter()
        .flat_map(|s| &s.tiers)
        .flat_map(|t| &t.steps)
    {
        match step {
            Step::Stop { instances } => out.summary.to_stop += instances.len(),
            Step::Start { instances } => out.summary.to_start += instances.len(),
            Step::Resize { changes } => out.summary.to_resize += changes.len(),
            _ => {}
        }
    }
    out.summary.excluded = out.excluded.len();
    if out.is_empty() {
        let state = match req.action {
            Action::Stop => "stopped",
            Action::Start => "running at the requested size",
        };
        out.notes.push(Note {
            code: NoteCode::NothingToDo,
            tier: None,
            message: format!("nothing to do: every member that may be actioned is already {state}"),
        });
    }
    Ok(out)
}

/// Adds each tier's delay after it when it did something and a later stage does too.
fn add_stage_delays(stages: &mut [Stage], delays: &BTreeMap<&str, u64>) {
    let busy: Vec<bool> = stages
        .iter()
        .map(|s| s.tiers.iter().any(|t| !t.steps.is_empty()))
        .collect();
    for (i, stage) in stages.iter_mut().enumerate() {
        if !busy[i + 1..].iter().any(|b| *b) {
            break;
        }
        for tp in &mut stage.tiers {
            let seconds = delays.get(tp.tier.as_str()).copied().unwrap_or(0);
            if !tp.steps.is_empty() && seconds > 0 {
                tp.steps.push(Step::Pause {
                    seconds,
                    why: PauseReason::BeforeNextStage,
                });
            }
        }
    }
}

/// Decides, for one point in time, which members must not be stopped: the tier
/// ignores stop, a stored exemption is active, or the exemption tag says so (an
/// unreadable tag value counts as exempt). The engine uses it again just before it
/// stops anything.
#[derive(Debug, Clone)]
pub struct Exemptions<'a> {
    tag_key: &'a str,
    stored: BTreeMap<&'a str, &'a Exemption>,
    now: DateTime<Utc>,
}

impl<'a> Exemptions<'a> {
    /// Indexes the active stored exemptions at `now`.
    pub fn new(workload: &'a Workload, stored: &'a [Exemption], now: DateTime<Utc>) -> Self {
        let mut map = BTreeMap::new();
        for e in stored.iter().filter(|e| e.active(now)) {
            // Keep the longest-lasting exemption for an instance.
            map.entry(e.instance_id.as_str())
                .and_modify(|cur: &mut &Exemption| {
                    if lasts_longer(e, cur) {
                        *cur = e;
                    }
                })
                .or_insert(e);
        }
        Exemptions {
            tag_key: workload.exemption_tag_key.as_str(),
            stored: map,
            now,
        }
    }

    /// Why `instance` of `tier` must not be stopped, if it must not.
    pub fn stop_exclusion(&self, tier: &Tier, instance: &Instance) -> Option<ExclusionReason> {
        if tier.stop.as_ref().is_some_and(|s| s.ignore) {
            Some(ExclusionReason::TierIgnoresStop)
        } else if let Some(group) = instance.tags.get(AUTO_SCALING_GROUP_TAG) {
            Some(ExclusionReason::AutoScalingGroup {
                group: group.clone(),
            })
        } else {
            self.reason(instance)
        }
    }

    /// Why `instance` must not be stopped, if it must not (tier settings aside).
    pub fn reason(&self, instance: &Instance) -> Option<ExclusionReason> {
        if let Some(e) = self.stored.get(instance.id.as_str()) {
            return Some(ExclusionReason::ExemptStored {
                reason: e.reason.clone(),
                until: e.until,
            });
        }
        let value = instance.tags.get(self.tag_key)?;
        let key = self.tag_key.to_string();
        match read_tag(value, self.now) {
            TagExemption::NotExempt => None,
            TagExemption::Exempt { until } => Some(ExclusionReason::ExemptTag {
                key,
                value: value.clone(),
                until,
            }),
            TagExemption::Unparsable => Some(ExclusionReason::ExemptTagUnreadable {
                key,
                value: value.clone(),
            }),
        }
    }
}

fn lasts_longer(a: &Exemption, b: &Exemption) -> bool {
    match (a.until, b.until) {
        (None, Some(_)) => true,
        (Some(x), Some(y)) => x > y || (x == y && a.reason < b.reason),
        (None, None) => a.reason < b.reason,
        (Some(_), None) => false,
    }
}

/// Splits `instances` into those that may be stopped and records exclusions.
fn stoppable<'i>(
    tier: &Tier,
    instances: impl IntoIterator<Item = &'i Instance>,
    exemptions: &Exemptions<'_>,
    out: &mut Plan,
) -> Vec<&'i Instance> {
    let mut keep = Vec::new();
    for m in instances {
        match exemptions.stop_exclusion(tier, m) {
            None => keep.push(m),
            Some(reason) => {
                if let ExclusionReason::ExemptTagUnreadable { key, value } = &reason {
                    out.notes.push(Note {
                        code: NoteCode::UnreadableExemption,
                        tier: Some(tier.name.to_string()),
                        message: format!(
                            "{}: exemption tag {key}={value:?} is not understood; treated as exempt",
                            m.id
                        ),
                    });
                }
                out.excluded.push(Exclusion {
                    instance: m.id.clone(),
                    tier: tier.name.to_string(),
                    reason,
                });
            }
        }
    }
    keep
}

fn slot<'i>(m: &&'i Instance) -> Slot<'i> {
    Slot {
        id: m.id.as_str(),
        az: m.az.as_str(),
    }
}

fn ids<'i>(instances: impl IntoIterator<Item = &'i Instance>) -> Vec<String> {
    instances.into_iter().map(|m| m.id.clone()).collect()
}

/// Whether an instance may be in a load balancer (unknown counts as maybe).
fn maybe_balanced(tier: &Tier, m: &Instance) -> bool {
    !tier.load_balancers.is_empty() || m.load_balancers.as_ref().is_none_or(|lbs| !lbs.is_empty())
}

/// Steps that stop `targets` (sorted) of `tier`, plus a wait that also covers
/// `already_stopping`.
fn stop_steps(tier: &Tier, targets: &[&Instance], already_stopping: &[&Instance]) -> Vec<Step> {
    let mut steps = Vec::new();
    let Some(spec) = &tier.stop else {
        return steps;
    };
    if !targets.is_empty() {
        if let Some(f) = &spec.override_file {
            steps.push(Step::ProbeOverride {
                path: f.path.to_string(),
                os: f.os,
                instances: ids(targets.iter().copied()),
            });
        }
        let balanced: Vec<String> =
            ids(targets.iter().copied().filter(|m| maybe_balanced(tier, m)));
        if !balanced.is_empty() {
            steps.push(Step::Deregister {
                instances: balanced,
            });
        }
        steps.push(Step::Stop {
            instances: ids(targets.iter().copied()),
        });
    }
    if spec.sequencing.wait && !(targets.is_empty() && already_stopping.is_empty()) {
        let mut wait: Vec<&Instance> = targets.iter().chain(already_stopping).copied().collect();
        wait.sort_by(|a, b| a.id.cmp(&b.id));
        steps.push(Step::WaitUntil {
            state: InstanceState::Stopped,
            instances: ids(wait),
        });
    }
    steps
}

fn plan_stop(
    tier: &Tier,
    members: &[&Instance],
    exemptions: &Exemptions<'_>,
    tp: &mut TierPlan,
    out: &mut Plan,
) {
    let up = members.iter().copied().filter(|m| m.state.is_up());
    let targets = stoppable(tier, up, exemptions, out);
    let stopping: Vec<&Instance> = members
        .iter()
        .copied()
        .filter(|m| m.state == InstanceState::Stopping)
        .collect();
    tp.steps = stop_steps(tier, &targets, &stopping);
}

fn plan_start(
    req: &PlanRequest<'_>,
    tier: &Tier,
    members: &[&Instance],
    exemptions: &Exemptions<'_>,
    tp: &mut TierPlan,
    out: &mut Plan,
) {
    let spec = tier
        .start
        .as_ref()
        .expect("called for tiers with start settings");
    let profile: Option<&Profile> = req.profile.and_then(|p| {
        let found = tier.profiles.iter().find(|(name, _)| name.as_str() == p);
        if found.is_none() {
            out.notes.push(Note {
                code: NoteCode::ProfileNotInTier,
                tier: Some(tier.name.to_string()),
                message: format!(
                    "tier has no profile {p:?}: started at its current type, all members"
                ),
            });
        }
        found.map(|(_, profile)| profile)
    });
    let up: Vec<&Instance> = members
        .iter()
        .copied()
        .filter(|m| m.state.is_up())
        .collect();
    let down: Vec<&Instance> = members
        .iter()
        .copied()
        .filter(|m| m.state.is_down())
        .collect();
    let target = profile
        .and_then(|p| p.fleet_subset)
        .map_or(members.len(), |fs| fs.target(members.len()));
    tp.target = Some(target);
    let up_slots: Vec<Slot> = up.iter().map(slot).collect();

    if target < up.len() {
        let surplus = up.len() - target;
        match req.scale_in {
            ScaleIn::ReportOnly => out.notes.push(Note {
                code: NoteCode::SurplusRunning,
                tier: Some(tier.name.to_string()),
                message: format!(
                    "{} running, the profile wants {target}: {surplus} surplus left running (scale-in was not requested)",
                    up.len()
                ),
            }),
            ScaleIn::Apply if tier.stop.is_none() => out.notes.push(Note {
                code: NoteCode::SurplusRunning,
                tier: Some(tier.name.to_string()),
                message: format!(
                    "{} running, the profile wants {target}: the tier has no stop settings, so the {surplus} surplus keep running",
                    up.len()
                ),
            }),
            ScaleIn::Apply => {
                let can_stop = stoppable(tier, up.iter().copied(), exemptions, out);
                let can_slots: Vec<Slot> = can_stop.iter().map(slot).collect();
                let chosen: HashSet<&str> =
                    choose_to_stop(&up_slots, &can_slots, surplus).into_iter().collect();
                if chosen.len() < surplus {
                    out.notes.push(Note {
                        code: NoteCode::SurplusRunning,
                        tier: Some(tier.name.to_string()),
                        message: format!(
                            "{surplus} surplus, but only {} may be stopped (the rest are exempt)",
                            chosen.len()
                        ),
                    });
                }
                let targets: Vec<&Instance> = up
                    .iter()
                    .copied()
                    .filter(|m| chosen.contains(m.id.as_str()))
                    .collect();
                tp.steps = stop_steps(tier, &targets, &[]);
            }
        }
        return;
    }

    // Stopped instances first: one still stopping must finish (and may be stuck)
    // before it can start; it is taken only when the stopped ones are too few.
    let need = target - up.len();
    let (stopped, stopping): (Vec<&Instance>, Vec<&Instance>) =
        down.iter().partition(|m| m.state == InstanceState::Stopped);
    let stopped: Vec<Slot> = stopped.iter().map(slot).collect();
    let stopping: Vec<Slot> = stopping.iter().map(slot).collect();
    let mut picked = choose_to_start(&up_slots, &stopped, need);
    if picked.len() < need {
        let mut running = up_slots.clone();
        running.extend(stopped.iter().filter(|s| picked.contains(&s.id)));
        picked.extend(choose_to_start(&running, &stopping, need - picked.len()));
    }
    let chosen: HashSet<&str> = picked.into_iter().collect();
    let to_start: Vec<&Instance> = down
        .iter()
        .copied()
        .filter(|m| chosen.contains(m.id.as_str()))
        .collect();

    let wanted_type = profile.and_then(|p| p.instance_type.as_ref());
    if let Some(t) = wanted_type {
        let other = up.iter().filter(|m| m.instance_type != t.as_str()).count();
        if other > 0 {
            out.notes.push(Note {
                code: NoteCode::RunningWithOtherType,
                tier: Some(tier.name.to_string()),
                message: format!(
                    "{other} running members are not {t}; they keep their type until they are stopped and started again"
                ),
            });
        }
    }
    if to_start.is_empty() {
        return;
    }
    let changes: Vec<Resize> = wanted_type
        .map(|t| {
            to_start
                .iter()
                .filter(|m| m.instance_type != t.as_str())
                .map(|m| Resize {
                    instance: m.id.clone(),
                    from: m.instance_type.clone(),
                    to: t.to_string(),
                })
                .collect()
        })
        .unwrap_or_default();
    let steps = &mut tp.steps;
    if !changes.is_empty() {
        steps.push(Step::Resize { changes });
        if req.workload.resize_delay_secs > 0 {
            steps.push(Step::Pause {
                seconds: req.workload.resize_delay_secs,
                why: PauseReason::AfterResize,
            });
        }
    }
    let started = ids(to_start.iter().copied());
    steps.push(Step::Start {
        instances: started.clone(),
    });
    if spec.sequencing.wait || spec.ready.is_some() {
        steps.push(Step::WaitUntil {
            state: InstanceState::Running,
            instances: started.clone(),
        });
    }
    let balanced = ids(to_start.iter().copied().filter(|m| maybe_balanced(tier, m)));
    if !balanced.is_empty() {
        steps.push(Step::Register {
            instances: balanced,
        });
    }
    if let Some(ready) = &spec.ready {
        steps.push(Step::Ready {
            gate: ready.gate,
            timeout_secs: ready.timeout_secs,
            instances: started,
        });
    }
}
