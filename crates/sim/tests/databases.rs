//! The simulator's databases behave as RDS does: transition times, refusals, clusters
//! acting with their members, and the start RDS makes by itself after seven days.

use std::collections::BTreeMap;
use std::time::Duration;

use ec2_scheduler_core::db::{DbCluster, DbInstance, DbStatus};
use ec2_scheduler_engine::ports::{Databases, ErrorKind};
use ec2_scheduler_sim::{LogEntry, Region, SimConfig};
use pollster::block_on;

const MINUTE: Duration = Duration::from_secs(60);
const DAY: Duration = Duration::from_secs(86_400);

fn db(id: &str, engine: &str) -> DbInstance {
    DbInstance {
        id: id.into(),
        engine: engine.into(),
        class: "db.r6g.large".into(),
        status: DbStatus::Available,
        multi_az: false,
        cluster: None,
        replica_of: None,
        replicas: Vec::new(),
        tags: BTreeMap::from([("Environment".to_string(), "ENV001".to_string())]),
    }
}

fn status(r: &Region, id: &str) -> DbStatus {
    r.db_instance(id).unwrap().status
}

#[test]
fn a_db_instance_stops_in_minutes_starts_in_more_and_rds_starts_it_after_seven_days() {
    let r = Region::new(Vec::new(), SimConfig::default());
    r.add_db_instance(db("orders", "postgres"));
    block_on(r.stop_db_instance("orders")).unwrap();
    assert_eq!(status(&r, "orders"), DbStatus::Stopping);
    r.advance(3 * MINUTE);
    assert_eq!(
        status(&r, "orders"),
        DbStatus::Stopping,
        "a stop takes 4 to 6 minutes"
    );
    r.advance(3 * MINUTE);
    assert_eq!(status(&r, "orders"), DbStatus::Stopped);
    // A stop of what is stopped is refused, and changes nothing.
    let e = block_on(r.stop_db_instance("orders")).unwrap_err();
    assert_eq!(
        (e.kind, e.code.as_str()),
        (ErrorKind::IncorrectState, "InvalidDBInstanceState")
    );
    // Seven days later RDS starts it by itself.
    r.advance(6 * DAY);
    assert_eq!(status(&r, "orders"), DbStatus::Stopped);
    r.advance(DAY);
    assert_eq!(status(&r, "orders"), DbStatus::Starting);
    r.advance(10 * MINUTE);
    assert_eq!(status(&r, "orders"), DbStatus::Available);
    let by_rds: Vec<(String, String)> = r
        .log()
        .into_iter()
        .filter_map(|e| match e {
            LogEntry::Db {
                resource,
                to,
                by_rds: true,
                ..
            } => Some((resource, to)),
            _ => None,
        })
        .collect();
    assert_eq!(by_rds, [("db:orders".to_string(), "starting".to_string())]);
    // A start asked before the seven days are up replaces RDS's own.
    block_on(r.stop_db_instance("orders")).unwrap();
    r.advance(6 * MINUTE);
    block_on(r.start_db_instance("orders")).unwrap();
    r.advance(4 * MINUTE);
    assert_eq!(
        status(&r, "orders"),
        DbStatus::Starting,
        "a start takes 5 to 10 minutes"
    );
    r.advance(6 * MINUTE);
    assert_eq!(status(&r, "orders"), DbStatus::Available);
    r.advance(8 * DAY);
    assert_eq!(status(&r, "orders"), DbStatus::Available);
    assert_eq!(r.calls("rds:StopDBInstance"), 3);
}

#[test]
fn what_rds_cannot_stop_is_refused_with_its_reason_and_left_as_it_is() {
    let r = Region::new(Vec::new(), SimConfig::default());
    let mut replica = db("orders-ro", "mysql");
    replica.replica_of = Some("orders".into());
    let mut primary = db("orders", "mysql");
    primary.replicas = vec!["orders-ro".into()];
    let mut sql = db("ledger", "sqlserver-se");
    sql.multi_az = true;
    for d in [replica, primary, sql] {
        r.add_db_instance(d);
    }
    for (id, says) in [
        ("orders-ro", "read replica of orders"),
        ("orders", "has read replicas (orders-ro)"),
        ("ledger", "SQL Server in a Multi-AZ deployment"),
    ] {
        let e = block_on(r.stop_db_instance(id)).unwrap_err();
        assert_eq!(e.kind, ErrorKind::IncorrectState, "{id}");
        assert!(e.message.contains(says), "{id}: {}", e.message);
        assert_eq!(status(&r, id), DbStatus::Available);
    }
    let e = block_on(r.stop_db_instance("nope")).unwrap_err();
    assert_eq!(
        (e.kind, e.code.as_str()),
        (ErrorKind::NotFound, "DBInstanceNotFound")
    );
}

#[test]
fn a_cluster_stops_and_starts_with_its_members_never_a_member_alone() {
    let r = Region::new(Vec::new(), SimConfig::default());
    for m in ["orders-1", "orders-2"] {
        let mut d = db(m, "aurora-postgresql");
        d.cluster = Some("orders".into());
        r.add_db_instance(d);
    }
    r.add_db_cluster(DbCluster {
        id: "orders".into(),
        engine: "aurora-postgresql".into(),
        status: DbStatus::Available,
        members: vec!["orders-1".into(), "orders-2".into()],
        tags: BTreeMap::from([("Environment".to_string(), "ENV001".to_string())]),
    });
    let e = block_on(r.stop_db_instance("orders-1")).unwrap_err();
    assert!(
        e.message.contains("member of DB cluster orders"),
        "{}",
        e.message
    );
    block_on(r.stop_db_cluster("orders")).unwrap();
    assert_eq!(status(&r, "orders-1"), DbStatus::Stopping);
    r.advance(6 * MINUTE);
    assert_eq!(r.db_cluster("orders").unwrap().status, DbStatus::Stopped);
    assert_eq!(status(&r, "orders-2"), DbStatus::Stopped);
    block_on(r.start_db_cluster("orders")).unwrap();
    r.advance(10 * MINUTE);
    assert_eq!(r.db_cluster("orders").unwrap().status, DbStatus::Available);
    assert_eq!(status(&r, "orders-1"), DbStatus::Available);
    // Found by their tags.
    let tagged = block_on(r.describe_db_clusters("Environment", &["ENV001".into()])).unwrap();
    assert_eq!(tagged.len(), 1);
    assert!(
        block_on(r.describe_db_instances("Environment", &["ENV002".into()]))
            .unwrap()
            .is_empty()
    );
}
