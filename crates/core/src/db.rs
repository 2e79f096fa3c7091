//! Databases as observed: RDS DB instances and DB clusters (Aurora, and the DocumentDB
//! and Neptune clusters of the same API shape), with the rules of what can be stopped.
//!
//! These are the resources a database tier will act on; the planner and the engine
//! take them as they take [`crate::Instance`]s. AWS's own rules for stopping are kept
//! here ([`DbInstance::why_not_stoppable`]), so that a plan reports a database that
//! cannot be stopped as kept, with the reason, instead of failing on it at run time.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// The status of a DB instance or cluster, as far as scheduling cares. AWS has many
/// more (`backing-up`, `upgrading`, `storage-full`, ...): they are kept as
/// [`DbStatus::Other`], neither up nor down, so nothing acts on them.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum DbStatus {
    Available,
    Starting,
    Stopping,
    Stopped,
    Modifying,
    #[serde(untagged)]
    Other(String),
}

impl DbStatus {
    /// From AWS's spelling.
    pub fn parse(s: &str) -> DbStatus {
        match s {
            "available" => DbStatus::Available,
            "starting" => DbStatus::Starting,
            "stopping" => DbStatus::Stopping,
            "stopped" => DbStatus::Stopped,
            "modifying" => DbStatus::Modifying,
            other => DbStatus::Other(other.to_string()),
        }
    }

    /// AWS's spelling.
    pub fn as_str(&self) -> &str {
        match self {
            DbStatus::Available => "available",
            DbStatus::Starting => "starting",
            DbStatus::Stopping => "stopping",
            DbStatus::Stopped => "stopped",
            DbStatus::Modifying => "modifying",
            DbStatus::Other(s) => s,
        }
    }

    /// Available or on its way there.
    pub fn is_up(&self) -> bool {
        matches!(self, DbStatus::Available | DbStatus::Starting)
    }

    /// Stopped or on its way there.
    pub fn is_down(&self) -> bool {
        matches!(self, DbStatus::Stopping | DbStatus::Stopped)
    }
}

/// An RDS DB instance.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DbInstance {
    /// The DB instance identifier.
    pub id: String,
    /// `mysql`, `postgres`, `sqlserver-se`, `aurora-postgresql`, ...
    pub engine: String,
    /// `db.t3.medium`, ...
    pub class: String,
    pub status: DbStatus,
    #[serde(default)]
    pub multi_az: bool,
    /// The cluster it belongs to (Aurora, Multi-AZ DB clusters).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cluster: Option<String>,
    /// The instance it replicates, when it is a read replica.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replica_of: Option<String>,
    /// Its own read replicas.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub replicas: Vec<String>,
    #[serde(default)]
    pub tags: BTreeMap<String, String>,
}

/// Why a DB instance cannot be stopped on its own, in AWS's terms.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum NotStoppable {
    /// It belongs to a cluster: the cluster is stopped, never its members one by one.
    ClusterMember { cluster: String },
    /// It is a read replica.
    ReadReplica { of: String },
    /// It has read replicas.
    HasReadReplicas { replicas: Vec<String> },
    /// RDS for SQL Server in a Multi-AZ deployment.
    MultiAzSqlServer,
}

impl NotStoppable {
    /// A human explanation.
    pub fn describe(&self) -> String {
        match self {
            NotStoppable::ClusterMember { cluster } => {
                format!("member of DB cluster {cluster}, which is stopped and started as a whole")
            }
            NotStoppable::ReadReplica { of } => {
                format!("read replica of {of}: RDS cannot stop a read replica")
            }
            NotStoppable::HasReadReplicas { replicas } => format!(
                "has read replicas ({}): RDS cannot stop an instance with read replicas",
                replicas.join(", ")
            ),
            NotStoppable::MultiAzSqlServer => {
                "SQL Server in a Multi-AZ deployment: RDS cannot stop it".to_string()
            }
        }
    }
}

impl DbInstance {
    /// Why RDS would refuse to stop this instance on its own, if it would.
    pub fn why_not_stoppable(&self) -> Option<NotStoppable> {
        if let Some(c) = &self.cluster {
            return Some(NotStoppable::ClusterMember { cluster: c.clone() });
        }
        if let Some(of) = &self.replica_of {
            return Some(NotStoppable::ReadReplica { of: of.clone() });
        }
        if !self.replicas.is_empty() {
            return Some(NotStoppable::HasReadReplicas {
                replicas: self.replicas.clone(),
            });
        }
        if self.multi_az && self.engine.starts_with("sqlserver") {
            return Some(NotStoppable::MultiAzSqlServer);
        }
        None
    }
}

/// A DB cluster (Aurora; DocumentDB and Neptune have the same shape).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DbCluster {
    /// The DB cluster identifier.
    pub id: String,
    pub engine: String,
    pub status: DbStatus,
    /// Its member DB instances.
    #[serde(default)]
    pub members: Vec<String>,
    #[serde(default)]
    pub tags: BTreeMap<String, String>,
}

/// How long RDS lets a stopped DB instance or cluster stay stopped before it starts
/// it again by itself (seven days).
pub const AUTO_START_AFTER: chrono::TimeDelta = chrono::TimeDelta::days(7);

#[cfg(test)]
mod tests {
    use super::*;

    fn db(engine: &str) -> DbInstance {
        DbInstance {
            id: "db-1".into(),
            engine: engine.into(),
            class: "db.t3.medium".into(),
            status: DbStatus::Available,
            multi_az: false,
            cluster: None,
            replica_of: None,
            replicas: Vec::new(),
            tags: BTreeMap::new(),
        }
    }

    #[test]
    fn what_rds_refuses_to_stop_is_known_before_asking() {
        assert_eq!(db("postgres").why_not_stoppable(), None);
        let mut m = db("aurora-postgresql");
        m.cluster = Some("orders".into());
        assert!(m.why_not_stoppable().unwrap().describe().contains("orders"));
        let mut r = db("mysql");
        r.replica_of = Some("db-0".into());
        assert_eq!(
            r.why_not_stoppable(),
            Some(NotStoppable::ReadReplica { of: "db-0".into() })
        );
        let mut p = db("mysql");
        p.replicas = vec!["db-2".into()];
        assert!(matches!(
            p.why_not_stoppable(),
            Some(NotStoppable::HasReadReplicas { .. })
        ));
        let mut s = db("sqlserver-se");
        s.multi_az = true;
        assert_eq!(s.why_not_stoppable(), Some(NotStoppable::MultiAzSqlServer));
        // Multi-AZ is no obstacle for the other engines.
        let mut pg = db("postgres");
        pg.multi_az = true;
        assert_eq!(pg.why_not_stoppable(), None);
    }

    #[test]
    fn statuses_read_and_spell_as_aws_does() {
        for s in [
            "available",
            "starting",
            "stopping",
            "stopped",
            "modifying",
            "backing-up",
        ] {
            assert_eq!(DbStatus::parse(s).as_str(), s);
        }
        assert!(DbStatus::Starting.is_up() && !DbStatus::Starting.is_down());
        assert!(DbStatus::Stopping.is_down());
        let other = DbStatus::parse("storage-full");
        assert!(!other.is_up() && !other.is_down());
        assert_eq!(
            serde_json::to_string(&DbStatus::Other("upgrading".into())).unwrap(),
            "\"upgrading\""
        );
        assert_eq!(
            serde_json::from_str::<DbStatus>("\"stopped\"").unwrap(),
            DbStatus::Stopped
        );
    }
}
