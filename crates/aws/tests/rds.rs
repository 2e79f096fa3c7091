//! The RDS adapter against moto: DB instances and clusters found by their workload
//! tag across pages, stopped and started, and RDS's refusals read as the engine's
//! error kinds.

use aws_sdk_rds::types::Tag;
use ec2_scheduler_aws::AwsCloud;
use ec2_scheduler_core::db::DbStatus;
use ec2_scheduler_engine::ports::{Databases, ErrorKind};
use ec2_scheduler_testkit::*;

const REGION: &str = "us-west-2";

fn tag(k: &str, v: &str) -> Tag {
    Tag::builder().key(k).value(v).build()
}

#[tokio::test]
async fn databases_are_found_by_their_tag_stopped_and_started() {
    let moto = Moto::start();
    let conf = moto.config(REGION).await;
    let rds = aws_sdk_rds::Client::new(&conf);
    // More instances than one page (100), most of another workload.
    for k in 0..105 {
        let env = if k % 50 == 0 { "ENV001" } else { "ENV002" };
        rds.create_db_instance()
            .db_instance_identifier(format!("db-{k:03}"))
            .db_instance_class("db.t3.micro")
            .engine("postgres")
            .master_username("admin")
            .master_user_password("secret-password")
            .allocated_storage(20)
            .tags(tag("Environment", env))
            .send()
            .await
            .unwrap();
    }
    rds.create_db_cluster()
        .db_cluster_identifier("orders")
        .engine("aurora-postgresql")
        .master_username("admin")
        .master_user_password("secret-password")
        .tags(tag("Environment", "ENV001"))
        .send()
        .await
        .unwrap();
    rds.create_db_instance()
        .db_instance_identifier("orders-1")
        .db_cluster_identifier("orders")
        .db_instance_class("db.r6g.large")
        .engine("aurora-postgresql")
        .tags(tag("Environment", "ENV001"))
        .send()
        .await
        .unwrap();
    let cloud = AwsCloud::new(&conf);
    let mine = ["ENV001".to_string()];
    let dbs = cloud
        .describe_db_instances("Environment", &mine)
        .await
        .unwrap();
    let mut ids: Vec<&str> = dbs.iter().map(|d| d.id.as_str()).collect();
    ids.sort_unstable();
    assert_eq!(ids, ["db-000", "db-050", "db-100", "orders-1"]);
    let member = dbs.iter().find(|d| d.id == "orders-1").unwrap();
    assert_eq!(member.cluster.as_deref(), Some("orders"));
    assert!(member.why_not_stoppable().is_some());
    let clusters = cloud
        .describe_db_clusters("Environment", &mine)
        .await
        .unwrap();
    assert_eq!(clusters.len(), 1);
    assert_eq!(clusters[0].members, ["orders-1"]);
    assert_eq!(clusters[0].engine, "aurora-postgresql");

    cloud.stop_db_instance("db-050").await.unwrap();
    let status = |id: &'static str| {
        let cloud = &cloud;
        async move {
            cloud
                .describe_db_instances("Environment", &["ENV001".to_string()])
                .await
                .unwrap()
                .into_iter()
                .find(|d| d.id == id)
                .unwrap()
                .status
        }
    };
    assert_eq!(status("db-050").await, DbStatus::Stopped);
    // Stopping it again is RDS's InvalidDBInstanceState: the wrong state.
    let e = cloud.stop_db_instance("db-050").await.unwrap_err();
    assert_eq!(e.kind, ErrorKind::IncorrectState, "{e}");
    assert_eq!(e.action, "rds:StopDBInstance");
    cloud.start_db_instance("db-050").await.unwrap();
    assert_eq!(status("db-050").await, DbStatus::Available);
    let e = cloud.stop_db_instance("nope").await.unwrap_err();
    assert_eq!(e.kind, ErrorKind::NotFound, "{e}");

    cloud.stop_db_cluster("orders").await.unwrap();
    let c = cloud
        .describe_db_clusters("Environment", &mine)
        .await
        .unwrap();
    assert_eq!(c[0].status, DbStatus::Stopped);
    cloud.start_db_cluster("orders").await.unwrap();
    let c = cloud
        .describe_db_clusters("Environment", &mine)
        .await
        .unwrap();
    assert!(c[0].status.is_up(), "{:?}", c[0].status);
    // Every request was counted under its IAM action.
    let calls = cloud.counter.snapshot();
    assert_eq!(calls.get("rds:StopDBInstance"), Some(&3));
    assert!(calls.get("rds:DescribeDBInstances").copied().unwrap_or(0) >= 2 * 3);
}
