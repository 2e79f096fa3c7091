//! Schedule sync isolates workloads: one whose schedules cannot be written is
//! reported and left as it was, the others are synced; a schedule a concurrent sync
//! made or deleted first is no error; every instant is sent in UTC.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use ec2_scheduler_app::sync::prefix;
use ec2_scheduler_app::{App, CloudSpec, Speed};
use ec2_scheduler_core::model::Name;
use ec2_scheduler_core::schedule::{Period, Schedule};
use ec2_scheduler_engine::memory::MemoryStore;
use ec2_scheduler_engine::ports::{ApiError, ApiResult, ErrorKind, EventSchedules, OneTime};

/// Schedules in memory; creating those of workloads named in `refuse` fails.
#[derive(Default)]
struct Group {
    kept: Mutex<BTreeMap<String, OneTime>>,
    refuse: Vec<String>,
}

#[async_trait]
impl EventSchedules for Group {
    async fn names(&self, prefix: &str) -> ApiResult<Vec<String>> {
        Ok(self
            .kept
            .lock()
            .unwrap()
            .keys()
            .filter(|n| n.starts_with(prefix))
            .cloned()
            .collect())
    }
    async fn create(&self, s: &OneTime) -> ApiResult<()> {
        if self.refuse.iter().any(|w| s.name.starts_with(&prefix(w))) {
            return Err(ApiError {
                kind: ErrorKind::Server,
                action: "scheduler:CreateSchedule".into(),
                code: "InternalServerException".into(),
                message: "try again".into(),
                instances: Vec::new(),
            });
        }
        self.kept.lock().unwrap().insert(s.name.clone(), s.clone());
        Ok(())
    }
    async fn delete(&self, name: &str) -> ApiResult<()> {
        self.kept.lock().unwrap().remove(name);
        Ok(())
    }
}

fn repo(path: &str) -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .join(path)
}

async fn app_with(names: &[&str]) -> App {
    let app = App::new(
        Box::new(MemoryStore::new()),
        CloudSpec::SimMemory {
            instances: Vec::new(),
            start: ec2_scheduler_sim::epoch(),
            speed: Speed::Max,
        },
        "sync-test".into(),
        Arc::default(),
    );
    let text = std::fs::read_to_string(repo("examples/seed/example.json")).unwrap();
    let (template, _, _) = app
        .put_workload_text("ExampleTestCase", "example.json", &text)
        .await
        .unwrap();
    app.delete_workload("ExampleTestCase").await.unwrap();
    let hm = |h, m| chrono::NaiveTime::from_hms_opt(h, m, 0);
    for n in names {
        let mut w = template.clone();
        w.name = Name::new(*n).unwrap();
        w.schedules = vec![Schedule {
            name: "office".into(),
            zone: ec2_scheduler_config::schedules::zone("Europe/Berlin").unwrap(),
            periods: vec![Period {
                start: hm(8, 0),
                stop: hm(18, 0),
                ..Period::default()
            }],
            skip: Vec::new(),
        }];
        let yaml = ec2_scheduler_config::export(&[w], ec2_scheduler_config::Format::Yaml);
        app.put_workload_text(n, "w.yaml", &yaml).await.unwrap();
    }
    app
}

#[tokio::test]
async fn one_workload_that_cannot_be_synced_does_not_keep_the_others_from_it() {
    let app = app_with(&["A", "B", "C"]).await;
    let group = Group {
        refuse: vec!["B".into()],
        ..Group::default()
    };
    // The autumn change in Berlin: Sunday 25 October 2026, clocks back at 03:00.
    let now: DateTime<Utc> = "2026-10-23T12:00:00Z".parse().unwrap();
    let synced = app.sync_schedules(&group, None, now).await.unwrap();
    assert_eq!(synced.failed.len(), 4, "{:?}", synced.failed);
    assert!(synced.failed.iter().all(|(w, _)| w == "B"), "{synced:?}");
    let kept = group.kept.lock().unwrap().clone();
    for w in ["A", "C"] {
        assert_eq!(
            kept.keys().filter(|n| n.starts_with(&prefix(w))).count(),
            4,
            "{w}"
        );
    }
    assert!(!kept.keys().any(|n| n.starts_with(&prefix("B"))));
    // Every instant in UTC: 08:00 in Berlin is 06:00 UTC on Saturday (summer time)
    // and 07:00 UTC on Sunday (winter time); Friday's 18:00 is 16:00 UTC.
    let utc: Vec<&str> = kept
        .values()
        .filter(|s| s.name.starts_with(&prefix("A")))
        .map(|s| s.utc.as_str())
        .collect();
    for at in [
        "2026-10-23T16:00:00",
        "2026-10-24T06:00:00",
        "2026-10-25T07:00:00",
    ] {
        assert!(utc.contains(&at), "{at}: {utc:?}");
    }
    // B heals at the next sync; A and C are already right.
    let group = Group {
        kept: Mutex::new(kept),
        refuse: Vec::new(),
    };
    let again = app.sync_schedules(&group, None, now).await.unwrap();
    assert!(again.failed.is_empty(), "{again:?}");
    assert_eq!((again.created.len(), again.kept), (4, 8));
}

#[tokio::test]
async fn two_syncs_at_once_end_with_one_set_of_schedules() {
    let app = Arc::new(app_with(&["A", "B"]).await);
    let group = Arc::new(Group::default());
    let now: DateTime<Utc> = "2026-10-23T12:00:00Z".parse().unwrap();
    let (x, y) = tokio::join!(
        app.sync_schedules(group.as_ref(), None, now),
        app.sync_schedules(group.as_ref(), None, now)
    );
    let (x, y) = (x.unwrap(), y.unwrap());
    assert!(x.failed.is_empty() && y.failed.is_empty());
    assert_eq!(group.kept.lock().unwrap().len(), 8);
    // A later sync, after the first events passed, moves them without error.
    let later = now + chrono::Duration::days(1);
    let (x, y) = tokio::join!(
        app.sync_schedules(group.as_ref(), None, later),
        app.sync_schedules(group.as_ref(), None, later)
    );
    assert!(x.unwrap().failed.is_empty() && y.unwrap().failed.is_empty());
    assert_eq!(group.kept.lock().unwrap().len(), 8);
}
