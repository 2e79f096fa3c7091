//! Each AWS adapter call against a moto server.
//!
//! Where moto differs from AWS (see `docs/testing.md`), the test asserts what follows
//! from moto's behaviour for that input, and says so.

use std::collections::BTreeSet;

use aws_sdk_dynamodb::types::AttributeValue;
use chrono::{TimeDelta, Utc};
use ec2_scheduler_aws::dynamo::{DynamoStore, Tables};
use ec2_scheduler_aws::{AwsCloud, calls};
use ec2_scheduler_core::model::{Name, Os};
use ec2_scheduler_core::{Exemption, InstanceState};
use ec2_scheduler_engine::ports::{
    Compute, ConfigStore, LbTarget, LoadBalancing, Lock, LockOutcome, MemberFilter, Notification,
    Notifier, OverrideProbe, ProbeResult, RunStore, StatusCheck, StoreError,
};
use ec2_scheduler_testkit::*;

const REGION: &str = "us-west-2";
const AZS: [&str; 3] = ["us-west-2a", "us-west-2b", "us-west-2c"];

fn filter(vpc: Option<&str>) -> MemberFilter {
    MemberFilter {
        workload_tag_key: "Environment".into(),
        workload_tag_value: "ENV001".into(),
        tier_tag_key: "Role".into(),
        tier_values: vec!["Role_Web".into(), "Role_App".into()],
        vpc: vpc.map(str::to_string),
    }
}

#[tokio::test]
async fn describe_filters_server_side_and_pages() {
    let moto = Moto::start();
    let conf = moto.config(REGION).await;
    let ec2 = aws_sdk_ec2::Client::new(&conf);
    let net = network(&ec2, "10.0.0.0/16", &AZS).await;
    let other = network(&ec2, "10.1.0.0/16", &AZS[..1]).await;
    let mut members = BTreeSet::new();
    // One reservation per instance, so that moto pages by instance.
    for i in 0..12 {
        let (_, subnet) = &net.subnets[i % 3];
        let role = if i % 2 == 0 { "Role_Web" } else { "Role_App" };
        members.extend(
            launch(
                &ec2,
                subnet,
                "t2.nano",
                1,
                &[("Environment", "ENV001"), ("Role", role)],
            )
            .await,
        );
    }
    let decoys = [
        launch(
            &ec2,
            &net.subnets[0].1,
            "t2.nano",
            1,
            &[("Environment", "ENV002"), ("Role", "Role_Web")],
        )
        .await,
        launch(
            &ec2,
            &net.subnets[0].1,
            "t2.nano",
            1,
            &[("Environment", "ENV001")],
        )
        .await,
        launch(
            &ec2,
            &net.subnets[0].1,
            "t2.nano",
            1,
            &[("Environment", "ENV001"), ("Role", "Role_DB")],
        )
        .await,
        launch(
            &ec2,
            &other.subnets[0].1,
            "t2.nano",
            1,
            &[("Environment", "ENV001"), ("Role", "Role_Web")],
        )
        .await,
    ];
    let mut cloud = AwsCloud::new(&conf);
    cloud.page_size = 5;
    let found = cloud.describe(&filter(Some(&net.vpc))).await.unwrap();
    let ids: BTreeSet<String> = found.iter().map(|i| i.id.clone()).collect();
    assert_eq!(ids, members);
    assert!(decoys.iter().flatten().all(|d| !ids.contains(d)));
    // 12 instances in pages of 5: three pages.
    assert_eq!(cloud.counter.snapshot()["ec2:DescribeInstances"], 3);
    let one = found
        .iter()
        .find(|i| i.tags.get("Role").map(String::as_str) == Some("Role_Web"))
        .unwrap();
    assert_eq!(one.state, InstanceState::Running);
    assert_eq!(one.instance_type, "t2.nano");
    assert!(AZS.contains(&one.az.as_str()));
    assert_eq!(one.vpc_id.as_deref(), Some(net.vpc.as_str()));
    // Without the VPC, the other VPC's instance is found too.
    let wider = cloud.describe(&filter(None)).await.unwrap();
    assert_eq!(wider.len(), 13);
    // By id: unknown ids are left out rather than failing the call.
    let mut asked: Vec<String> = members.iter().take(3).cloned().collect();
    asked.push("i-0123456789abcdef0".into());
    assert_eq!(cloud.describe_ids(&asked).await.unwrap().len(), 3);
    // By workload tag values, for reading many workloads at once: every instance
    // carrying one of the values, whatever its tier or VPC, and no other.
    let tagged = |values: &[&str]| {
        let values: Vec<String> = values.iter().map(|v| v.to_string()).collect();
        let cloud = &cloud;
        async move { cloud.describe_tagged("Environment", &values).await.unwrap() }
    };
    assert_eq!(tagged(&["ENV001"]).await.len(), 15);
    assert_eq!(tagged(&["ENV001", "ENV002"]).await.len(), 16);
    let other: Vec<_> = tagged(&["ENV002"]).await;
    assert_eq!(other.len(), 1);
    assert_eq!(decoys[0], vec![other[0].id.clone()]);
    assert!(tagged(&["ENV404"]).await.is_empty());
}

#[tokio::test]
async fn start_stop_resize_and_status_checks_in_batches() {
    let moto = Moto::start();
    let conf = moto.config(REGION).await;
    let ec2 = aws_sdk_ec2::Client::new(&conf);
    let net = network(&ec2, "10.0.0.0/16", &AZS).await;
    let ids = launch(
        &ec2,
        &net.subnets[0].1,
        "t2.nano",
        30,
        &[("Environment", "ENV001"), ("Role", "Role_Web")],
    )
    .await;
    let cloud = AwsCloud::new(&conf);
    cloud.stop(&ids, false).await.unwrap();
    let seen = cloud.describe_ids(&ids).await.unwrap();
    assert!(
        seen.iter().all(|i| i.state == InstanceState::Stopped),
        "{seen:?}"
    );
    assert!(seen.iter().all(|i| i.state_reason.is_some()));
    cloud.set_type(&ids[0], "c4.large").await.unwrap();
    assert_eq!(
        cloud.describe_ids(&ids[..1]).await.unwrap()[0].instance_type,
        "c4.large"
    );
    cloud.start(&ids).await.unwrap();
    let seen = cloud.describe_ids(&ids).await.unwrap();
    assert!(seen.iter().all(|i| i.state == InstanceState::Running));
    let checks = cloud.status_checks(&ids[..10]).await.unwrap();
    assert_eq!(checks.len(), 10);
    assert!(
        checks.iter().all(|(_, c)| *c == StatusCheck::Ok),
        "{checks:?}"
    );
    let calls = cloud.counter.snapshot();
    assert_eq!(calls["ec2:StopInstances"], 1);
    assert_eq!(calls["ec2:StartInstances"], 1);
    assert_eq!(calls["ec2:ModifyInstanceAttribute"], 1);
    // An unknown instance fails the whole call, named, as the engine expects.
    let e = cloud
        .start(&["i-0123456789abcdef0".to_string()])
        .await
        .unwrap_err();
    assert_eq!(
        e.kind,
        ec2_scheduler_engine::ports::ErrorKind::NotFound,
        "{e:?}"
    );
    assert_eq!(e.instances, ["i-0123456789abcdef0"]);
}

#[tokio::test]
async fn classic_and_target_group_registration() {
    let moto = Moto::start();
    let conf = moto.config(REGION).await;
    let ec2 = aws_sdk_ec2::Client::new(&conf);
    let net = network(&ec2, "10.0.0.0/16", &AZS).await;
    let web = launch(
        &ec2,
        &net.subnets[0].1,
        "t2.nano",
        3,
        &[("Environment", "ENV001"), ("Role", "Role_Web")],
    )
    .await;
    let app = launch(
        &ec2,
        &net.subnets[1].1,
        "t2.nano",
        3,
        &[("Environment", "ENV001"), ("Role", "Role_App")],
    )
    .await;
    create_classic_lb(&conf, "web-elb", &AZS[..1]).await;
    let arn = create_target_group(&conf, "app-tg", &net.vpc, 8080).await;
    let cloud = AwsCloud::new(&conf);
    let classic = LbTarget::Classic {
        name: "web-elb".into(),
    };
    let group = LbTarget::TargetGroup {
        arn: arn.clone(),
        port: Some(8080),
    };
    cloud.register(&classic, &web).await.unwrap();
    cloud.register(&group, &app).await.unwrap();
    let all: Vec<String> = web.iter().chain(&app).cloned().collect();
    let mut members = cloud.memberships(&all).await.unwrap();
    members.sort();
    assert_eq!(members.len(), 6, "{members:?}");
    assert!(members.iter().filter(|(_, t)| *t == classic).count() == 3);
    assert!(members.iter().any(|(i, t)| *i == app[0]
        && matches!(t, LbTarget::TargetGroup { arn: a, port: Some(8080) } if *a == arn)));
    let h = cloud.health(&group, &app).await.unwrap();
    assert!(
        h.iter()
            .all(|(_, h)| *h == ec2_scheduler_engine::ports::Health::Healthy),
        "{h:?}"
    );
    let h = cloud.health(&classic, &web).await.unwrap();
    assert!(
        h.iter()
            .all(|(_, h)| *h == ec2_scheduler_engine::ports::Health::Healthy),
        "{h:?}"
    );
    cloud.deregister(&classic, &web).await.unwrap();
    cloud.deregister(&group, &app).await.unwrap();
    assert!(cloud.memberships(&all).await.unwrap().is_empty());
    // moto drops deregistered targets at once (AWS would show them draining first).
    let h = cloud.health(&group, &app).await.unwrap();
    assert!(
        h.iter()
            .all(|(_, h)| *h == ec2_scheduler_engine::ports::Health::NotRegistered),
        "{h:?}"
    );
}

#[tokio::test]
async fn sns_publish_is_read_back() {
    let moto = Moto::start();
    let conf = moto.config(REGION).await;
    let sns = aws_sdk_sns::Client::new(&conf);
    sns.create_topic()
        .name("SchedulerTesting")
        .send()
        .await
        .unwrap();
    let cloud = AwsCloud::new(&conf);
    let note = Notification {
        subject: "ec2-scheduler: stop of W succeeded".into(),
        body: serde_json::json!({"event": "run-finished", "stopped": 3}),
    };
    cloud
        .publish(&Name::new("SchedulerTesting").unwrap(), &note)
        .await
        .unwrap();
    cloud
        .publish(&Name::new("SchedulerTesting").unwrap(), &note)
        .await
        .unwrap();
    // The topic ARN is resolved once.
    assert_eq!(cloud.counter.snapshot()["sts:GetCallerIdentity"], 1);
    let data = moto.data();
    let text = data["sns"].to_string();
    assert!(
        text.contains("ec2-scheduler: stop of W succeeded"),
        "{text}"
    );
    assert!(text.contains("run-finished"), "{text}");
}

#[tokio::test]
async fn the_ssm_probe_keeps_instances_running_without_an_explicit_absence() {
    let moto = Moto::start();
    let conf = moto.config(REGION).await;
    let ec2 = aws_sdk_ec2::Client::new(&conf);
    let net = network(&ec2, "10.0.0.0/16", &AZS).await;
    let ids = launch(
        &ec2,
        &net.subnets[0].1,
        "t2.nano",
        2,
        &[("Environment", "ENV001"), ("Role", "Role_App")],
    )
    .await;
    let cloud = AwsCloud::new(&conf);
    let handle = cloud
        .send(&ids, "/tmp/StopOverride", Os::Linux)
        .await
        .unwrap();
    assert!(!handle.is_empty());
    let results = cloud.poll(&handle, &ids).await.unwrap();
    // moto runs no command: every invocation is "Success" with empty output. Without
    // the ABSENT marker that is not a confirmed absence, so the instance must be kept.
    for (id, r) in results {
        assert!(matches!(r, ProbeResult::Unknown { .. }), "{id}: {r:?}");
    }
}

#[tokio::test]
async fn the_dynamodb_store_reads_the_original_tables_as_they_are() {
    let moto = Moto::start();
    let conf = moto.config(REGION).await;
    create_seed_tables(&conf).await;
    put_seed_items(&conf, "vpc-test").await;
    // A typed number and a boolean, as some users' tables have them.
    let ddb = aws_sdk_dynamodb::Client::new(&conf);
    ddb.update_item()
        .table_name("TierSpecification")
        .key("SpecName", AttributeValue::S("ExampleTestCase".into()))
        .key("TierTagValue", AttributeValue::S("Role_DB".into()))
        .update_expression("SET TierStop.TierSequence = :n, TierStop.TierSynchronization = :b")
        .expression_attribute_values(":n", AttributeValue::N("2".into()))
        .expression_attribute_values(":b", AttributeValue::Bool(true))
        .send()
        .await
        .unwrap();
    let store = DynamoStore::new(&conf, Tables::default());
    let w = store.workload("ExampleTestCase").await.unwrap().unwrap();
    assert_eq!(w.vpc.as_ref().unwrap().as_str(), "vpc-test");
    assert_eq!(w.tiers().len(), 3);
    let db = w.tier("Role_DB").unwrap();
    assert_eq!(db.stop.as_ref().unwrap().sequencing.order, 2);
    assert!(db.stop.as_ref().unwrap().sequencing.wait);
    assert_eq!(
        db.profiles
            .iter()
            .find(|(k, _)| k.as_str() == "profileD")
            .unwrap()
            .1
            .instance_type
            .as_ref()
            .unwrap()
            .as_str(),
        "r4.large"
    );
    assert_eq!(store.workload("Nope").await.unwrap(), None);
    assert_eq!(store.workloads().await.unwrap().len(), 1);

    // Writing back: conditional puts with a revision; a second load is fine.
    store.write_workload(&w).await.unwrap();
    store.write_workload(&w).await.unwrap();
    assert_eq!(store.workload("ExampleTestCase").await.unwrap().unwrap(), w);
    // Deleting removes the workload item and its tier items.
    assert!(store.delete_workload("ExampleTestCase").await.unwrap());
    assert_eq!(store.workload("ExampleTestCase").await.unwrap(), None);
    assert!(!store.delete_workload("ExampleTestCase").await.unwrap());
    let tiers = aws_sdk_dynamodb::Client::new(&conf)
        .scan()
        .table_name("TierSpecification")
        .send()
        .await
        .unwrap();
    assert_eq!(tiers.count(), 0);
}

#[tokio::test]
async fn the_dynamodb_state_table_holds_overrides_and_claims_events_once() {
    let moto = Moto::start();
    let conf = moto.config(REGION).await;
    let store = DynamoStore::new(&conf, Tables::default());
    store.ensure_state_table().await.unwrap();
    ec2_scheduler_engine::contract::schedule_store(&store).await;
    ec2_scheduler_engine::contract::access_store(&store).await;
    ec2_scheduler_engine::contract::run_store(&store).await;
}

#[tokio::test]
async fn the_dynamodb_state_table_holds_locks_runs_exemptions_and_registrations() {
    let moto = Moto::start();
    let conf = moto.config(REGION).await;
    let store = DynamoStore::new(&conf, Tables::default());
    store.ensure_state_table().await.unwrap();
    store.ensure_state_table().await.unwrap();
    let now = Utc::now();
    let lock = |owner: &str, secs: i64| Lock {
        workload: "W".into(),
        owner: owner.into(),
        run_id: format!("run-{owner}"),
        expires: now + TimeDelta::seconds(secs),
    };
    assert_eq!(
        store.acquire(&lock("a", 60), now).await.unwrap(),
        LockOutcome::Acquired
    );
    match store.acquire(&lock("b", 60), now).await.unwrap() {
        LockOutcome::Held(l) => assert_eq!((l.owner.as_str(), l.run_id.as_str()), ("a", "run-a")),
        other => panic!("{other:?}"),
    }
    assert!(store.renew(&lock("a", 120)).await.unwrap());
    assert!(!store.renew(&lock("b", 120)).await.unwrap());
    assert_eq!(
        store
            .acquire(&lock("b", 200), now + TimeDelta::seconds(121))
            .await
            .unwrap(),
        LockOutcome::Acquired
    );
    store.release("W", "b", None).await.unwrap();
    assert_eq!(
        store.acquire(&lock("c", 60), now).await.unwrap(),
        LockOutcome::Acquired
    );

    let e = Exemption {
        instance_id: "i-1".into(),
        until: Some(now + TimeDelta::days(1)),
        reason: "load test".into(),
        created_by: Some("ops-token".into()),
    };
    store.add_exemption(&e).await.unwrap();
    // Who asked is kept.
    assert_eq!(store.exemptions().await.unwrap(), vec![e.clone()]);
    // One exemption per instance: a new one replaces the old (issue 7, defect 13).
    let forever = Exemption {
        until: None,
        reason: "until removed".into(),
        ..e.clone()
    };
    store.add_exemption(&forever).await.unwrap();
    assert_eq!(store.exemptions().await.unwrap(), vec![forever]);
    let bad = Exemption {
        instance_id: "i-1'; --".into(),
        ..e.clone()
    };
    assert!(store.add_exemption(&bad).await.is_err());
    assert!(store.remove_exemption("i-1").await.unwrap());
    assert!(store.exemptions().await.unwrap().is_empty());

    let t = LbTarget::Classic { name: "web".into() };
    store
        .park("W", &[("i-1".into(), t.clone()), ("i-2".into(), t.clone())])
        .await
        .unwrap();
    assert_eq!(
        store.parked("W", &["i-1".into()]).await.unwrap(),
        vec![("i-1".to_string(), t.clone())]
    );
    store.unpark("W", &["i-1".into()]).await.unwrap();
    assert!(store.parked("W", &["i-1".into()]).await.unwrap().is_empty());
    assert_eq!(store.parked("W", &["i-2".into()]).await.unwrap().len(), 1);
    // Parked again (a step repeated after a crash): still one registration.
    store
        .park("W", &[("i-2".into(), t.clone()), ("i-3".into(), t.clone())])
        .await
        .unwrap();
    assert_eq!(
        store.parked("W", &["i-2".into()]).await.unwrap(),
        vec![("i-2".to_string(), t.clone())]
    );
    // An item written before registrations were kept in sets is read and removed.
    let ddb = aws_sdk_dynamodb::Client::new(&conf);
    ddb.put_item()
        .table_name("Ec2SchedulerState")
        .item("pk", AttributeValue::S("PARKED#W".into()))
        .item(
            "sk",
            AttributeValue::S(r#"i-4#{"kind":"classic","name":"web"}"#.into()),
        )
        .item(
            "target",
            AttributeValue::S(r#"{"kind":"classic","name":"web"}"#.into()),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(
        store.parked("W", &["i-4".into()]).await.unwrap(),
        vec![("i-4".to_string(), t.clone())]
    );
    store
        .unpark("W", &["i-2".into(), "i-3".into(), "i-4".into()])
        .await
        .unwrap();
    let ids = ["i-1", "i-2", "i-3", "i-4"].map(String::from);
    assert!(store.parked("W", &ids).await.unwrap().is_empty());

    // A run survives an interrupted save: parts of a newer version that no `RUN`
    // item names yet are left out of the run read, and go at the next save.
    let mut run = ec2_scheduler_engine::contract::sample_run("run-y", "W", 3);
    store.save_run(&mut run).await.unwrap();
    ddb.put_item()
        .table_name("Ec2SchedulerState")
        .item("pk", AttributeValue::S(format!("RUN#{}", run.id)))
        .item("sk", AttributeValue::S("PART#9999999999#0001".into()))
        .item("body", AttributeValue::S("not json".into()))
        .send()
        .await
        .unwrap();
    let fresh = DynamoStore::new(&conf, Tables::default());
    assert_eq!(fresh.load_run(&run.id).await.unwrap().as_ref(), Some(&run));
    let mut again = run.clone();
    fresh.save_run(&mut again).await.unwrap();
    let items = ddb
        .query()
        .table_name("Ec2SchedulerState")
        .key_condition_expression("pk = :p")
        .expression_attribute_values(":p", AttributeValue::S(format!("RUN#{}", run.id)))
        .send()
        .await
        .unwrap();
    assert_eq!(items.count(), 1, "{items:?}");
    // A process that saves from an older read does not overwrite a newer save.
    let mut changed = again.clone();
    changed.retried = 42;
    fresh.save_run(&mut changed).await.unwrap();
    let e = store.save_run(&mut run).await.unwrap_err();
    assert!(matches!(e, StoreError::Conflict(_)), "{e}");
    assert!(e.to_string().contains("was saved by another writer"), "{e}");
    assert_eq!(
        store.load_run(&run.id).await.unwrap(),
        Some(changed.clone())
    );
    // Two large saves from one version: the loser's parts do not spoil the winner's.
    let mut big = ec2_scheduler_engine::contract::sample_run("run-y", "W", 9_000);
    big.version = changed.version;
    let mut other = ec2_scheduler_engine::contract::sample_run("run-y", "W", 12_000);
    other.version = changed.version;
    fresh.save_run(&mut big).await.unwrap();
    assert!(matches!(
        store.save_run(&mut other).await,
        Err(StoreError::Conflict(_))
    ));
    assert_eq!(store.load_run(&run.id).await.unwrap(), Some(big));
}

#[test]
fn the_iam_policy_lists_exactly_the_actions_the_adapters_call() {
    let doc =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs/iam.md")).unwrap();
    // Every string in the "Action" lists of the JSON policy blocks.
    let mut in_json = false;
    let mut in_action = false;
    let mut documented = BTreeSet::new();
    for line in doc.lines() {
        if line.starts_with("```") {
            in_json = line.starts_with("```json");
            continue;
        }
        if !in_json {
            continue;
        }
        let strings = |s: &str| {
            s.split('"')
                .skip(1)
                .step_by(2)
                .map(str::to_string)
                .collect::<Vec<_>>()
        };
        if let Some((_, rest)) = line.split_once("\"Action\"") {
            documented.extend(strings(rest));
            // A list that goes on over the next lines.
            in_action = rest.contains('[') && !rest.contains(']');
        } else if in_action {
            documented.extend(strings(line));
            in_action = !line.contains(']');
        }
    }
    let called: BTreeSet<String> = calls::ACTIONS
        .iter()
        .chain(calls::IMPLIED)
        .map(|s| s.to_string())
        .collect();
    assert_eq!(documented, called, "docs/iam.md and calls::ACTIONS differ");
}

#[tokio::test]
async fn a_cross_account_role_is_assumed_under_the_session_name_asked() {
    let moto = Moto::start();
    for (asked, session) in [
        (None, ec2_scheduler_aws::SESSION),
        (
            Some(ec2_scheduler_aws::OBSERVER_SESSION.to_string()),
            ec2_scheduler_aws::OBSERVER_SESSION,
        ),
    ] {
        let conf = ec2_scheduler_aws::sdk_config(&ec2_scheduler_aws::Connect {
            region: Some(REGION.into()),
            endpoint_url: Some(moto.endpoint.clone()),
            role_arn: Some("arn:aws:iam::111122223333:role/ec2-scheduler".into()),
            external_id: Some("ext-42".into()),
            session_name: asked,
            max_attempts: Some(1),
        })
        .await;
        let creds = aws_credential_types::provider::ProvideCredentials::provide_credentials(
            &conf.credentials_provider().unwrap(),
        )
        .await
        .unwrap();
        // moto's AssumeRole answers with temporary credentials (not the static test ones).
        assert_ne!(creds.access_key_id(), "testing");
        assert!(creds.session_token().is_some());
        // The session is named as asked: the role in the other account tells the
        // observer (the serverless API) from the run step by it.
        let me = aws_sdk_sts::Client::new(&conf)
            .get_caller_identity()
            .send()
            .await
            .unwrap();
        assert_eq!(
            me.arn(),
            Some(
                format!("arn:aws:sts::111122223333:assumed-role/ec2-scheduler/{session}").as_str()
            )
        );
        let cloud = AwsCloud::new(&conf);
        assert!(cloud.describe(&filter(None)).await.unwrap().is_empty());
    }
}
