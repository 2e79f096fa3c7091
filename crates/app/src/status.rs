//! The status of a workload: its tiers, their members as the cloud shows them now,
//! what would keep each from a stop, and the last run.

use ec2_scheduler_core::fleet::membership;
use ec2_scheduler_core::plan::Exemptions;
use ec2_scheduler_core::{Instance, Workload};
use ec2_scheduler_engine::ports::RunSummaryRow;

use crate::env::{App, Cloud};
use crate::error::Result;

/// A workload as it is now.
#[derive(Debug, serde::Serialize)]
pub struct Status {
    pub tiers: Vec<TierStatus>,
    pub last_run: Option<RunSummaryRow>,
}

/// One tier's members.
#[derive(Debug, serde::Serialize)]
pub struct TierStatus {
    pub name: String,
    pub members: Vec<Member>,
}

impl TierStatus {
    /// Members running or pending.
    pub fn up(&self) -> usize {
        self.members
            .iter()
            .filter(|m| m.instance.state.is_up())
            .count()
    }
}

/// A member, and what would keep it from a stop (an exemption tag, a stored
/// exemption, ...), if anything.
#[derive(Debug, serde::Serialize)]
pub struct Member {
    pub instance: Instance,
    pub kept_by: Option<String>,
}

impl App {
    /// Observes the workload.
    ///
    /// # Errors
    /// The cloud or the store failed.
    pub async fn status(&self, cloud: &Cloud, workload: &Workload) -> Result<Status> {
        let mut slot = None;
        let observed = self.executor(cloud, workload, &mut slot).observe().await?;
        let exemptions = self.store.exemptions().await?;
        let index = Exemptions::new(workload, &exemptions, cloud.now());
        let tiers = workload
            .tiers()
            .iter()
            .map(|tier| TierStatus {
                name: tier.name.to_string(),
                members: observed
                    .iter()
                    .filter(|i| membership(workload, i) == Ok(tier.name.as_str()))
                    .map(|i| Member {
                        kept_by: index.stop_exclusion(tier, i).map(|r| r.describe()),
                        instance: i.clone(),
                    })
                    .collect(),
            })
            .collect();
        let last_run = self
            .store
            .list_runs(Some(workload.name.as_str()))
            .await?
            .into_iter()
            .next();
        Ok(Status { tiers, last_run })
    }
}
