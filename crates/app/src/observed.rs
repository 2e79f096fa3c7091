//! Observations shared by readers. Many readers of one process (status pages, the
//! workload list, the serverless routes) see each workload's instances as observed
//! at most [`Observations::max_age`] ago, so that however many ask, a workload costs
//! at most one DescribeInstances call per `max_age`, and the list of every workload
//! one call per 200 workloads of a region. Readers that arrive while an observation
//! is being made wait for it rather than make their own.
//!
//! Only reads use these: a run observes for itself, every time, before it acts.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex as SyncMutex};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use ec2_scheduler_core::{Instance, Workload};
use ec2_scheduler_engine::ports::ApiError;
use tokio::sync::Mutex;

use crate::clouds::Clouds;
use crate::env::{App, CloudSpec};
use crate::error::Result;

/// A workload's instances as observed at `at` (the cloud's time).
#[derive(Debug, Clone)]
pub struct Observed {
    pub at: DateTime<Utc>,
    pub instances: Arc<Vec<Instance>>,
}

type Slot = Arc<Mutex<Option<(Instant, Observed)>>>;

/// The last observation of each workload.
pub struct Observations {
    max_age: Duration,
    slots: SyncMutex<HashMap<String, Slot>>,
    /// Held while the list observes many workloads at once.
    bulk: Mutex<()>,
}

impl Observations {
    /// The default age past which an observation is made again: one second.
    pub const MAX_AGE: Duration = Duration::from_secs(1);

    pub fn new(max_age: Duration) -> Observations {
        Observations {
            max_age,
            slots: SyncMutex::new(HashMap::new()),
            bulk: Mutex::new(()),
        }
    }

    /// How old an observation may be when it is served.
    pub fn max_age(&self) -> Duration {
        self.max_age
    }

    fn slot(&self, workload: &str) -> Slot {
        let mut slots = self.slots.lock().unwrap_or_else(|p| p.into_inner());
        slots.entry(workload.to_string()).or_default().clone()
    }

    fn fresh(&self, held: &Option<(Instant, Observed)>) -> Option<Observed> {
        held.as_ref()
            .filter(|(made, _)| made.elapsed() < self.max_age)
            .map(|(_, o)| o.clone())
    }

    /// Forgets what was observed of `workload` (its definition changed).
    pub fn forget(&self, workload: &str) {
        let mut slots = self.slots.lock().unwrap_or_else(|p| p.into_inner());
        slots.remove(workload);
    }
}

/// Which workloads one tagged DescribeInstances call can observe together: same
/// region and credentials (on the simulator, one region for all), same tag key.
fn group_key(app: &App, w: &Workload) -> (String, String, String, String) {
    let tag = w.workload_tag.key.to_string();
    match app.cloud {
        CloudSpec::Aws { .. } => (
            w.region.to_string(),
            w.cross_account
                .as_ref()
                .map(|c| c.role_arn.to_string())
                .unwrap_or_default(),
            w.cross_account
                .as_ref()
                .and_then(|c| c.external_id.clone())
                .unwrap_or_default(),
            tag,
        ),
        _ => (String::new(), String::new(), String::new(), tag),
    }
}

impl Clouds {
    /// `w`'s instances as observed at most [`Observations::max_age`] ago.
    ///
    /// # Errors
    /// The cloud could not be reached or refused.
    pub async fn observed(&self, app: &App, w: &Workload) -> Result<Observed> {
        let slot = self.observations.slot(w.name.as_str());
        let mut held = slot.lock().await;
        if let Some(o) = self.observations.fresh(&held) {
            return Ok(o);
        }
        let cloud = self.get(app, w).await?;
        let instances = app.observe(&cloud, w).await?;
        let o = Observed {
            at: cloud.now(),
            instances: Arc::new(instances),
        };
        *held = Some((Instant::now(), o.clone()));
        Ok(o)
    }

    /// The instances of each of `ws`, in order, as observed at most
    /// [`Observations::max_age`] ago; the stale ones are observed together, one
    /// tagged DescribeInstances call per 200 workloads sharing a region, credentials
    /// and tag key.
    pub async fn observed_all(&self, app: &App, ws: &[Workload]) -> Vec<Result<Observed>> {
        let _bulk = self.observations.bulk.lock().await;
        let slots: Vec<Slot> = ws
            .iter()
            .map(|w| self.observations.slot(w.name.as_str()))
            .collect();
        let mut seen: Vec<Option<Observed>> = Vec::with_capacity(ws.len());
        let mut stale: BTreeMap<_, Vec<usize>> = BTreeMap::new();
        for (i, (w, slot)) in ws.iter().zip(&slots).enumerate() {
            let fresh = self.observations.fresh(&*slot.lock().await);
            if fresh.is_none() {
                stale.entry(group_key(app, w)).or_default().push(i);
            }
            seen.push(fresh);
        }
        let mut failed: HashMap<usize, ApiError> = HashMap::new();
        for ((.., tag_key), members) in stale {
            // A cloud that cannot be made is left to the one-by-one observation
            // below, which reports its own error.
            let Ok(cloud) = self.get(app, &ws[members[0]]).await else {
                continue;
            };
            let values: Vec<String> = members
                .iter()
                .map(|&i| ws[i].workload_tag.value.to_string())
                .collect();
            let instances = match tagged(&cloud, app, &tag_key, &values).await {
                Ok(v) => v,
                Err(e) => {
                    failed.extend(members.iter().map(|&i| (i, e.clone())));
                    continue;
                }
            };
            let at = cloud.now();
            let mut by_value: HashMap<&str, Vec<Instance>> = HashMap::new();
            for inst in &instances {
                if let Some(v) = inst.tags.get(tag_key.as_str()) {
                    by_value.entry(v.as_str()).or_default().push(inst.clone());
                }
            }
            for &i in &members {
                let o = Observed {
                    at,
                    instances: Arc::new(
                        by_value
                            .get(ws[i].workload_tag.value.as_str())
                            .cloned()
                            .unwrap_or_default(),
                    ),
                };
                *slots[i].lock().await = Some((Instant::now(), o.clone()));
                seen[i] = Some(o);
            }
        }
        let mut out = Vec::with_capacity(ws.len());
        for (i, (w, o)) in ws.iter().zip(seen).enumerate() {
            out.push(match (o, failed.remove(&i)) {
                (Some(o), _) => Ok(o),
                (None, Some(e)) => Err(e.into()),
                (None, None) => self.observed(app, w).await,
            });
        }
        out
    }
}

/// One tagged observation, asked again twice when throttled or failed (the AWS
/// adapters also back off inside each call).
async fn tagged(
    cloud: &crate::env::Cloud,
    app: &App,
    key: &str,
    values: &[String],
) -> std::result::Result<Vec<Instance>, ApiError> {
    let ports = cloud.ports(&*app.store);
    let mut attempt = 0;
    loop {
        match ports.compute.describe_tagged(key, values).await {
            Ok(v) => return Ok(v),
            Err(e) if e.retryable() && attempt < 2 => attempt += 1,
            Err(e) => return Err(e),
        }
    }
}
