//! The status of a workload: its tiers, their members as the cloud shows them now,
//! what would keep each from a stop, and the last run.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use chrono::{DateTime, Utc};
use ec2_scheduler_core::Exemption;
use ec2_scheduler_core::fleet::membership;
use ec2_scheduler_core::plan::Exemptions;
use ec2_scheduler_core::{Instance, Workload};
use ec2_scheduler_engine::ports::{Health, LbTarget, RunSummaryRow};

use crate::clouds::Clouds;
use crate::env::{App, Cloud};
use crate::error::Result;
use crate::observed::Observed;

/// A workload as it is now.
#[derive(Debug, serde::Serialize)]
pub struct Status {
    /// When the cloud was observed (its time).
    pub observed_at: DateTime<Utc>,
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
    /// The workload's instances, observed now.
    ///
    /// # Errors
    /// The cloud could not be reached or refused.
    pub async fn observe(&self, cloud: &Cloud, workload: &Workload) -> Result<Vec<Instance>> {
        let mut slot = None;
        Ok(self.executor(cloud, workload, &mut slot).observe().await?)
    }

    /// Observes the workload.
    ///
    /// # Errors
    /// The cloud or the store failed.
    pub async fn status(&self, cloud: &Cloud, workload: &Workload) -> Result<Status> {
        let observed = Observed {
            instances: Arc::new(self.observe(cloud, workload).await?),
            at: cloud.now(),
        };
        self.status_of(workload, &observed).await
    }

    /// The workload's status from what `clouds` observed of it at most
    /// [`Observations::max_age`](crate::observed::Observations::max_age) ago.
    ///
    /// # Errors
    /// The cloud or the store failed.
    pub async fn status_seen(&self, clouds: &Clouds, workload: &Workload) -> Result<Status> {
        let observed = clouds.observed(self, workload).await?;
        self.status_of(workload, &observed).await
    }

    /// The status of one workload from an observation: its exemptions and last run
    /// read from the store.
    async fn status_of(&self, workload: &Workload, observed: &Observed) -> Result<Status> {
        let exemptions = self.store.exemptions().await?;
        let last_run = self
            .last_runs(Some(workload))
            .await?
            .remove(workload.name.as_str());
        Ok(status(workload, observed, &exemptions, last_run))
    }

    /// The status of each of `workloads`, in order, from what `clouds` observed at
    /// most [`Observations::max_age`](crate::observed::Observations::max_age) ago
    /// (one tagged observation for many workloads, one read of exemptions and runs).
    ///
    /// # Errors
    /// The store failed; a workload whose cloud failed has its own error.
    pub async fn statuses(
        &self,
        clouds: &Clouds,
        workloads: &[Workload],
    ) -> Result<Vec<Result<Status>>> {
        let exemptions = self.store.exemptions().await?;
        let mut last = self.last_runs(None).await?;
        let seen = clouds.observed_all(self, workloads).await;
        Ok(workloads
            .iter()
            .zip(seen)
            .map(|(w, o)| o.map(|o| status(w, &o, &exemptions, last.remove(w.name.as_str()))))
            .collect())
    }

    /// The load-balancer health of `ids`: for each instance registered somewhere,
    /// each target it is registered with and its health there. Instances in no load
    /// balancer are left out.
    ///
    /// # Errors
    /// The cloud could not be reached or refused.
    pub async fn lb_health(
        &self,
        cloud: &Cloud,
        ids: &[String],
    ) -> Result<BTreeMap<String, Vec<(String, Health)>>> {
        let ports = cloud.ports(&*self.store);
        let mut by_target: BTreeMap<String, (LbTarget, Vec<String>)> = BTreeMap::new();
        for (id, target) in ports.lb.memberships(ids).await? {
            by_target
                .entry(target.to_string())
                .or_insert_with(|| (target, Vec::new()))
                .1
                .push(id);
        }
        let mut out: BTreeMap<String, Vec<(String, Health)>> = BTreeMap::new();
        for (label, (target, ids)) in by_target {
            for (id, health) in ports.lb.health(&target, &ids).await? {
                out.entry(id).or_default().push((label.clone(), health));
            }
        }
        Ok(out)
    }

    /// The last run of each workload (of `only`, when given), by workload name.
    async fn last_runs(&self, only: Option<&Workload>) -> Result<HashMap<String, RunSummaryRow>> {
        let mut last = HashMap::new();
        // Newest first: the first row of a workload is its last run.
        for row in self.store.list_runs(only.map(|w| w.name.as_str())).await? {
            last.entry(row.workload.clone()).or_insert(row);
        }
        Ok(last)
    }
}

fn status(
    workload: &Workload,
    observed: &Observed,
    exemptions: &[Exemption],
    last_run: Option<RunSummaryRow>,
) -> Status {
    let index = Exemptions::new(workload, exemptions, observed.at);
    let tiers = workload
        .tiers()
        .iter()
        .map(|tier| TierStatus {
            name: tier.name.to_string(),
            members: observed
                .instances
                .iter()
                .filter(|i| membership(workload, i) == Ok(tier.name.as_str()))
                .map(|i| Member {
                    kept_by: index.stop_exclusion(tier, i).map(|r| r.describe()),
                    instance: i.clone(),
                })
                .collect(),
        })
        .collect();
    Status {
        observed_at: observed.at,
        tiers,
        last_run,
    }
}
