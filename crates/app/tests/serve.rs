//! `serve` when the store fails for a while: the events it could not claim are looked
//! at again at the next turn, and fire once the store answers.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use ec2_scheduler_app::serve::Options;
use ec2_scheduler_app::sim::read_fleet;
use ec2_scheduler_app::workloads::{load_files, pick};
use ec2_scheduler_app::{App, CloudSpec, Speed};
use ec2_scheduler_core::Workload;
use ec2_scheduler_core::access::Token;
use ec2_scheduler_core::exemption::Exemption;
use ec2_scheduler_core::overrides::Override;
use ec2_scheduler_engine::memory::MemoryStore;
use ec2_scheduler_engine::ports::{
    AccessStore, ConfigStore, EventOutcome, EventRecord, LbTarget, Lock, LockOutcome, RunStore,
    RunSummaryRow, ScheduleStore, StoreError, StoreResult,
};
use ec2_scheduler_engine::run::Run;
use ec2_scheduler_engine::share::PaceShares;

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// A memory store whose claims of the event at `fail_at` fail while `failures` lasts.
struct Flaky {
    inner: MemoryStore,
    fail_at: DateTime<Utc>,
    failures: AtomicUsize,
}

#[async_trait]
impl ScheduleStore for Flaky {
    async fn overrides(&self, workload: Option<&str>) -> StoreResult<Vec<Override>> {
        self.inner.overrides(workload).await
    }
    async fn add_override(&self, o: &Override) -> StoreResult<()> {
        self.inner.add_override(o).await
    }
    async fn remove_override(&self, id: &str) -> StoreResult<bool> {
        self.inner.remove_override(id).await
    }
    async fn claim_event(&self, record: &EventRecord) -> StoreResult<bool> {
        let failing = record.at == self.fail_at
            && self
                .failures
                .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
                .is_ok();
        if failing {
            return Err(StoreError::Backend("the store is unreachable".into()));
        }
        self.inner.claim_event(record).await
    }
    async fn update_event(&self, record: &EventRecord) -> StoreResult<()> {
        self.inner.update_event(record).await
    }
    async fn event_records(
        &self,
        workload: Option<&str>,
        limit: usize,
    ) -> StoreResult<Vec<EventRecord>> {
        self.inner.event_records(workload, limit).await
    }
}

#[async_trait]
impl RunStore for Flaky {
    async fn acquire(&self, lock: &Lock, now: DateTime<Utc>) -> StoreResult<LockOutcome> {
        self.inner.acquire(lock, now).await
    }
    async fn renew(&self, lock: &Lock) -> StoreResult<bool> {
        self.inner.renew(lock).await
    }
    async fn lock_of(&self, workload: &str) -> StoreResult<Option<Lock>> {
        self.inner.lock_of(workload).await
    }
    async fn release(&self, workload: &str, owner: &str, run_id: Option<&str>) -> StoreResult<()> {
        self.inner.release(workload, owner, run_id).await
    }
    async fn save_run(&self, run: &mut Run) -> StoreResult<()> {
        self.inner.save_run(run).await
    }
    async fn load_run(&self, id: &str) -> StoreResult<Option<Run>> {
        self.inner.load_run(id).await
    }
    async fn unfinished_run(&self, workload: &str) -> StoreResult<Option<Run>> {
        self.inner.unfinished_run(workload).await
    }
    async fn list_runs(&self, workload: Option<&str>) -> StoreResult<Vec<RunSummaryRow>> {
        self.inner.list_runs(workload).await
    }
    async fn exemptions(&self) -> StoreResult<Vec<Exemption>> {
        self.inner.exemptions().await
    }
    async fn add_exemption(&self, e: &Exemption) -> StoreResult<()> {
        self.inner.add_exemption(e).await
    }
    async fn remove_exemption(&self, instance_id: &str) -> StoreResult<bool> {
        self.inner.remove_exemption(instance_id).await
    }
    async fn park(&self, workload: &str, entries: &[(String, LbTarget)]) -> StoreResult<()> {
        self.inner.park(workload, entries).await
    }
    async fn parked(&self, workload: &str, ids: &[String]) -> StoreResult<Vec<(String, LbTarget)>> {
        self.inner.parked(workload, ids).await
    }
    async fn unpark(&self, workload: &str, ids: &[String]) -> StoreResult<()> {
        self.inner.unpark(workload, ids).await
    }
    async fn pace_shares(&self, account: &str) -> StoreResult<Option<(PaceShares, u64)>> {
        self.inner.pace_shares(account).await
    }
    async fn put_pace_shares(
        &self,
        account: &str,
        shares: &PaceShares,
        version: u64,
    ) -> StoreResult<()> {
        self.inner.put_pace_shares(account, shares, version).await
    }
}

#[async_trait]
impl ConfigStore for Flaky {
    async fn workload(&self, name: &str) -> StoreResult<Option<Workload>> {
        self.inner.workload(name).await
    }
    async fn workloads(&self) -> StoreResult<Vec<Workload>> {
        self.inner.workloads().await
    }
    async fn put_workload(&self, workload: &Workload) -> StoreResult<Vec<String>> {
        self.inner.put_workload(workload).await
    }
    async fn delete_workload(&self, name: &str) -> StoreResult<bool> {
        self.inner.delete_workload(name).await
    }
}

#[async_trait]
impl AccessStore for Flaky {
    async fn token(&self, id: &str) -> StoreResult<Option<Token>> {
        self.inner.token(id).await
    }
    async fn tokens(&self) -> StoreResult<Vec<Token>> {
        self.inner.tokens().await
    }
    async fn put_token(&self, token: &Token) -> StoreResult<()> {
        self.inner.put_token(token).await
    }
}

#[tokio::test]
async fn an_event_whose_claim_failed_is_claimed_and_fired_at_a_later_turn() {
    // The seed's workload, running, with a stop at 21:00 UTC; the simulated clock
    // starts at 20:00.
    let loaded = load_files(&[repo().join("examples/seed/example.json")]).unwrap();
    let mut w = pick(&loaded, "ExampleTestCase").unwrap().clone();
    let dir = std::env::temp_dir().join(format!("ec2s-app-serve-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("schedule.yaml");
    std::fs::write(
        &file,
        "timezone: UTC\nperiods: [{ start: \"08:00\", stop: \"21:00\" }]\n",
    )
    .unwrap();
    w.schedules = vec![ec2_scheduler_app::schedules::read_schedule(&file).unwrap()];
    std::fs::remove_dir_all(&dir).ok();
    let start = ec2_scheduler_sim::epoch();
    let stop_at = start + chrono::Duration::hours(1);
    let store = Flaky {
        inner: MemoryStore::new(),
        fail_at: stop_at,
        failures: AtomicUsize::new(3),
    };
    store.put_workload(&w).await.unwrap();
    let app = App::new(
        Box::new(store),
        CloudSpec::SimMemory {
            instances: read_fleet(&repo().join("examples/seed/fleet-running.json")).unwrap(),
            start,
            speed: Speed::Max,
        },
        "test".into(),
        Arc::default(),
    );
    let turn = Duration::from_secs(15 * 60);
    app.serve(
        &Options {
            turn,
            until: Some(start + chrono::Duration::hours(3)),
            ..Options::default()
        },
        Arc::new(AtomicBool::new(false)),
    )
    .await
    .unwrap();

    let records = app
        .event_records(Some("ExampleTestCase"), 100)
        .await
        .unwrap();
    // The day before's, found missed at the first turn.
    let stops: Vec<&EventRecord> = records.iter().filter(|r| r.action == "stop").collect();
    assert_eq!(stops.len(), 2, "{records:#?}");
    assert_eq!(
        (stops[1].outcome, stops[1].recorded_at),
        (EventOutcome::Missed, start)
    );
    let stop = stops[0];
    assert_eq!(stop.at, stop_at);
    assert_eq!(stop.outcome, EventOutcome::Fired, "{stop:#?}");
    // Three turns failed; the fourth claimed it.
    assert_eq!(stop.recorded_at, stop_at + chrono::Duration::minutes(45));
    let run = app
        .run_record(stop.run_id.as_deref().unwrap())
        .await
        .unwrap();
    assert_eq!(run.status, ec2_scheduler_engine::RunStatus::Succeeded);
    // The workload's nine members, none of the decoys.
    let stopped: Vec<&str> = run.stopped_ids.keys().map(String::as_str).collect();
    assert_eq!(
        stopped,
        [
            "i-0app0000",
            "i-0app0001",
            "i-0app0002",
            "i-0db00000",
            "i-0db00001",
            "i-0web0000",
            "i-0web0001",
            "i-0web0002",
            "i-0web0003"
        ]
    );
}
