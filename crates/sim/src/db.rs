//! Simulated databases: RDS DB instances and DB clusters with RDS's transition times
//! (a start takes 5 to 10 minutes, a stop about 5), RDS's refusals (read replicas,
//! cluster members, Multi-AZ SQL Server, a status that does not allow the call), and
//! RDS's own start of a database left stopped for seven days.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap};

use chrono::{DateTime, TimeDelta, Utc};
use ec2_scheduler_core::db::{AUTO_START_AFTER, DbCluster, DbInstance, DbStatus};
use ec2_scheduler_engine::pace::Jitter;
use ec2_scheduler_engine::ports::{ApiError, ErrorKind};

/// Seconds a start takes, uniform in this range.
pub const START_SECS: (f64, f64) = (300.0, 600.0);
/// Seconds a stop takes, uniform in this range.
pub const STOP_SECS: (f64, f64) = (240.0, 360.0);

/// A database resource: an instance or a cluster.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum Resource {
    Instance(String),
    Cluster(String),
}

impl Resource {
    pub fn id(&self) -> &str {
        match self {
            Resource::Instance(id) | Resource::Cluster(id) => id,
        }
    }
}

/// A change of status, for the region's log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change {
    pub at: DateTime<Utc>,
    pub resource: Resource,
    pub from: DbStatus,
    pub to: DbStatus,
    /// RDS itself did it (the seven-day start), not a call.
    pub by_rds: bool,
}

#[derive(Debug, Clone)]
struct Timed<T> {
    item: T,
    /// At this time, go to this status.
    next: Option<(DateTime<Utc>, DbStatus)>,
}

/// The databases of a simulated region.
#[derive(Debug, Default)]
pub struct DbFleet {
    instances: BTreeMap<String, Timed<DbInstance>>,
    clusters: BTreeMap<String, Timed<DbCluster>>,
    due: BinaryHeap<Reverse<(DateTime<Utc>, Resource)>>,
}

fn rds_error(kind: ErrorKind, action: &str, code: &str, message: String) -> ApiError {
    ApiError {
        kind,
        action: action.to_string(),
        code: code.to_string(),
        message,
        instances: Vec::new(),
    }
}

fn between(rng: &mut Jitter, (lo, hi): (f64, f64)) -> TimeDelta {
    TimeDelta::milliseconds(((lo + (hi - lo) * rng.next_unit()) * 1000.0) as i64)
}

impl DbFleet {
    /// Adds (or replaces) a DB instance, as it is now.
    pub fn add_instance(&mut self, db: DbInstance) {
        self.instances.insert(
            db.id.clone(),
            Timed {
                item: db,
                next: None,
            },
        );
    }

    /// Adds (or replaces) a DB cluster, as it is now (its members are added as DB
    /// instances naming it).
    pub fn add_cluster(&mut self, c: DbCluster) {
        self.clusters.insert(
            c.id.clone(),
            Timed {
                item: c,
                next: None,
            },
        );
    }

    pub fn instance(&self, id: &str) -> Option<DbInstance> {
        self.instances.get(id).map(|t| t.item.clone())
    }

    pub fn cluster(&self, id: &str) -> Option<DbCluster> {
        self.clusters.get(id).map(|t| t.item.clone())
    }

    pub fn instances_tagged(&self, key: &str, values: &[String]) -> Vec<DbInstance> {
        self.instances
            .values()
            .filter(|t| t.item.tags.get(key).is_some_and(|v| values.contains(v)))
            .map(|t| t.item.clone())
            .collect()
    }

    pub fn clusters_tagged(&self, key: &str, values: &[String]) -> Vec<DbCluster> {
        self.clusters
            .values()
            .filter(|t| t.item.tags.get(key).is_some_and(|v| values.contains(v)))
            .map(|t| t.item.clone())
            .collect()
    }

    fn status_of(&self, r: &Resource) -> Option<DbStatus> {
        match r {
            Resource::Instance(id) => self.instances.get(id).map(|t| t.item.status.clone()),
            Resource::Cluster(id) => self.clusters.get(id).map(|t| t.item.status.clone()),
        }
    }

    /// Sets `r`'s status now and what comes next, and says so.
    fn set(
        &mut self,
        r: &Resource,
        at: DateTime<Utc>,
        to: DbStatus,
        next: Option<(DateTime<Utc>, DbStatus)>,
        by_rds: bool,
        log: &mut Vec<Change>,
    ) {
        let from = match r {
            Resource::Instance(id) => {
                let t = self.instances.get_mut(id).expect("known");
                t.next = next.clone();
                std::mem::replace(&mut t.item.status, to.clone())
            }
            Resource::Cluster(id) => {
                let t = self.clusters.get_mut(id).expect("known");
                t.next = next.clone();
                std::mem::replace(&mut t.item.status, to.clone())
            }
        };
        if let Some((when, _)) = next {
            self.due.push(Reverse((when, r.clone())));
        }
        if from != to {
            log.push(Change {
                at,
                resource: r.clone(),
                from,
                to,
                by_rds,
            });
        }
    }

    /// Applies the changes due by `now`, in time order: a start or stop ends; a
    /// database stopped for seven days is started by RDS.
    pub fn settle(&mut self, now: DateTime<Utc>, rng: &mut Jitter, log: &mut Vec<Change>) {
        while let Some(Reverse((at, _))) = self.due.peek()
            && *at <= now
        {
            let Reverse((at, r)) = self.due.pop().expect("peeked");
            let next = match &r {
                Resource::Instance(id) => self.instances.get(id).and_then(|t| t.next.clone()),
                Resource::Cluster(id) => self.clusters.get(id).and_then(|t| t.next.clone()),
            };
            let Some((_, to)) = next.filter(|(when, _)| *when == at) else {
                continue; // stale
            };
            let members = self.members(&r);
            match to {
                DbStatus::Stopped => {
                    // RDS starts it again after seven days.
                    let wake = at + AUTO_START_AFTER;
                    self.set(
                        &r,
                        at,
                        DbStatus::Stopped,
                        Some((wake, DbStatus::Starting)),
                        false,
                        log,
                    );
                    for m in &members {
                        self.set(m, at, DbStatus::Stopped, None, false, log);
                    }
                }
                DbStatus::Starting => {
                    // The seven days are up.
                    let ready = at + between(rng, START_SECS);
                    self.set(
                        &r,
                        at,
                        DbStatus::Starting,
                        Some((ready, DbStatus::Available)),
                        true,
                        log,
                    );
                    for m in &members {
                        self.set(m, at, DbStatus::Starting, None, true, log);
                    }
                }
                to => {
                    self.set(&r, at, to.clone(), None, false, log);
                    for m in &members {
                        self.set(m, at, to.clone(), None, false, log);
                    }
                }
            }
        }
    }

    /// The member instances of a cluster (none for an instance).
    fn members(&self, r: &Resource) -> Vec<Resource> {
        match r {
            Resource::Cluster(id) => self
                .instances
                .values()
                .filter(|t| t.item.cluster.as_deref() == Some(id))
                .map(|t| Resource::Instance(t.item.id.clone()))
                .collect(),
            Resource::Instance(_) => Vec::new(),
        }
    }

    /// A stop or start asked of `r` now.
    pub fn change(
        &mut self,
        r: &Resource,
        start: bool,
        now: DateTime<Utc>,
        rng: &mut Jitter,
        log: &mut Vec<Change>,
    ) -> Result<(), ApiError> {
        let (verb, kind) = match (start, r) {
            (true, Resource::Instance(_)) => ("StartDBInstance", "DB instance"),
            (false, Resource::Instance(_)) => ("StopDBInstance", "DB instance"),
            (true, Resource::Cluster(_)) => ("StartDBCluster", "DB cluster"),
            (false, Resource::Cluster(_)) => ("StopDBCluster", "DB cluster"),
        };
        let action = format!("rds:{verb}");
        let id = r.id();
        let Some(status) = self.status_of(r) else {
            let code = match r {
                Resource::Instance(_) => "DBInstanceNotFound",
                Resource::Cluster(_) => "DBClusterNotFoundFault",
            };
            return Err(rds_error(
                ErrorKind::NotFound,
                &action,
                code,
                format!("{kind} {id} not found."),
            ));
        };
        let invalid = |message: String| {
            let code = match r {
                Resource::Instance(_) => "InvalidDBInstanceState",
                Resource::Cluster(_) => "InvalidDBClusterStateFault",
            };
            rds_error(ErrorKind::IncorrectState, &action, code, message)
        };
        if let Resource::Instance(_) = r
            && let Some(why) = self.instances[id].item.why_not_stoppable()
        {
            return Err(invalid(format!(
                "{kind} {id} cannot be {}: {}",
                if start { "started" } else { "stopped" },
                why.describe()
            )));
        }
        let (from, via, span, to) = if start {
            (
                DbStatus::Stopped,
                DbStatus::Starting,
                START_SECS,
                DbStatus::Available,
            )
        } else {
            (
                DbStatus::Available,
                DbStatus::Stopping,
                STOP_SECS,
                DbStatus::Stopped,
            )
        };
        if status != from {
            return Err(invalid(format!(
                "{kind} {id} is not in {} state (it is {}).",
                from.as_str(),
                status.as_str()
            )));
        }
        let done = now + between(rng, span);
        self.set(r, now, via.clone(), Some((done, to)), false, log);
        for m in self.members(r) {
            self.set(&m, now, via.clone(), None, false, log);
        }
        Ok(())
    }
}
