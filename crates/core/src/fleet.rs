//! The observed fleet: what the planner knows about instances.
//!
//! This is also the shape of a fleet snapshot file (`--observed FLEET.json`), which the
//! simulator and the live AWS view produce too (README, "Fleet snapshots").

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};

use crate::model::Workload;

/// EC2 instance states.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum InstanceState {
    Pending,
    Running,
    ShuttingDown,
    Terminated,
    Stopping,
    Stopped,
}

impl InstanceState {
    /// AWS's spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            InstanceState::Pending => "pending",
            InstanceState::Running => "running",
            InstanceState::ShuttingDown => "shutting-down",
            InstanceState::Terminated => "terminated",
            InstanceState::Stopping => "stopping",
            InstanceState::Stopped => "stopped",
        }
    }

    /// Running or on its way there.
    pub fn is_up(self) -> bool {
        matches!(self, InstanceState::Pending | InstanceState::Running)
    }

    /// Stopped or on its way there.
    pub fn is_down(self) -> bool {
        matches!(self, InstanceState::Stopping | InstanceState::Stopped)
    }

    /// Terminated or being terminated: never a member.
    pub fn is_gone(self) -> bool {
        matches!(
            self,
            InstanceState::ShuttingDown | InstanceState::Terminated
        )
    }
}

impl fmt::Display for InstanceState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One observed EC2 instance.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Instance {
    pub id: String,
    pub state: InstanceState,
    #[serde(rename = "type")]
    pub instance_type: String,
    /// Availability zone.
    pub az: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vpc_id: Option<String>,
    #[serde(default)]
    pub tags: BTreeMap<String, String>,
    /// Why the instance is in its state, as EC2 reports it (e.g.
    /// `Client.InternalError: Client error on launch` after a failed start).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state_reason: Option<String>,
    /// Load balancers (classic names or target-group ARNs) holding the instance, when
    /// known. `None` means unknown: the engine discovers membership at run time.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub load_balancers: Option<Vec<String>>,
}

/// Why an observed instance is not a member of a workload.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum NonMember {
    /// It lacks the workload tag or has another value: not ours at all.
    OtherWorkload,
    /// It has the workload tag but no tier tag, or a value no tier is configured for.
    NoConfiguredTier,
    /// It is outside the workload's VPC.
    OtherVpc,
    /// It is terminated or shutting down.
    Gone,
}

/// Decides whether `instance` belongs to `workload`, and to which tier.
///
/// # Guarantees
/// `Ok(tier)` only when the instance carries the workload tag with the workload's
/// value, carries the tier tag with the name of a configured tier, is in the workload's
/// VPC when one is set, and is not terminated or shutting down.
pub fn membership<'w>(workload: &'w Workload, instance: &Instance) -> Result<&'w str, NonMember> {
    let tag = &workload.workload_tag;
    if instance.tags.get(tag.key.as_str()).map(String::as_str) != Some(tag.value.as_str()) {
        return Err(NonMember::OtherWorkload);
    }
    let tier = instance
        .tags
        .get(workload.tier_tag_key.as_str())
        .and_then(|value| workload.tier(value))
        .ok_or(NonMember::NoConfiguredTier)?;
    if let Some(vpc) = &workload.vpc
        && instance.vpc_id.as_deref() != Some(vpc.as_str())
    {
        return Err(NonMember::OtherVpc);
    }
    if instance.state.is_gone() {
        return Err(NonMember::Gone);
    }
    Ok(tier.name.as_str())
}
