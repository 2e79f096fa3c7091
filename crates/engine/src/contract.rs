//! What every store must do, as checks that each store's tests run against it.

use chrono::{DateTime, TimeDelta, Utc};
use ec2_scheduler_core::overrides::{Change, Override};
use ec2_scheduler_core::schedule::EventKind;

use ec2_scheduler_core::access::{Role, Token};

use ec2_scheduler_core::Action;
use ec2_scheduler_core::plan::Plan;

use crate::pace::Jitter;
use crate::ports::{
    AccessStore, EventOutcome, EventRecord, Lock, LockOutcome, RunStore, ScheduleStore, StoreError,
};
use crate::run::{Run, RunEvent, RunStatus};
use crate::share::PaceShares;

fn t(s: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(s).expect("a time").to_utc()
}

/// Overrides are kept and removed by id; an event is claimed once, then updated.
///
/// # Panics
/// When the store does not do what it must.
pub async fn schedule_store(store: &dyn ScheduleStore) {
    let o = |id: &str, workload: &str, minutes: i64| Override {
        id: id.into(),
        workload: workload.into(),
        change: Change::SkipNext {
            action: EventKind::Stop,
            at: t("2026-12-01T17:00:00Z"),
        },
        created_at: t("2026-12-01T10:00:00Z") + TimeDelta::minutes(minutes),
        created_by: "alice (host:1)".into(),
        reason: "release \"night\" ✓".into(),
    };
    store.add_override(&o("ovr-1", "A", 0)).await.unwrap();
    store.add_override(&o("ovr-2", "B", 1)).await.unwrap();
    store.add_override(&o("ovr-3", "A", 2)).await.unwrap();
    let a = store.overrides(Some("A")).await.unwrap();
    assert_eq!(a, vec![o("ovr-1", "A", 0), o("ovr-3", "A", 2)]);
    assert_eq!(store.overrides(None).await.unwrap().len(), 3);
    assert!(store.remove_override("ovr-1").await.unwrap());
    assert!(!store.remove_override("ovr-1").await.unwrap());
    assert_eq!(
        store.overrides(Some("A")).await.unwrap(),
        vec![o("ovr-3", "A", 2)]
    );

    let record = |owner: &str, at: &str| EventRecord {
        workload: "A".into(),
        action: "start".into(),
        at: t(at),
        profile: Some("big".into()),
        outcome: EventOutcome::Claimed,
        owner: owner.into(),
        recorded_at: t(at),
        run_id: None,
        detail: None,
    };
    assert!(
        store
            .claim_event(&record("p1", "2026-12-01T07:00:00Z"))
            .await
            .unwrap()
    );
    assert!(
        !store
            .claim_event(&record("p2", "2026-12-01T07:00:00Z"))
            .await
            .unwrap()
    );
    assert!(
        store
            .claim_event(&record("p2", "2026-12-02T07:00:00Z"))
            .await
            .unwrap()
    );
    let mut fired = record("p1", "2026-12-01T07:00:00Z");
    fired.outcome = EventOutcome::Fired;
    fired.run_id = Some("run-1".into());
    store.update_event(&fired).await.unwrap();
    let got = store.event_records(Some("A"), 10).await.unwrap();
    assert_eq!(got.len(), 2);
    assert_eq!(got[0].at, t("2026-12-02T07:00:00Z"), "newest first");
    assert_eq!(got[1], fired);
    assert_eq!(store.event_records(Some("A"), 1).await.unwrap().len(), 1);
    assert!(store.event_records(Some("B"), 10).await.unwrap().is_empty());
}

/// Tokens are kept by id, listed oldest first, and replaced by id (to revoke them).
///
/// # Panics
/// When the store does not do what it must.
pub async fn access_store(store: &dyn AccessStore) {
    let token = |id: &str, minutes: i64| Token {
        id: id.into(),
        name: format!("name of {id}"),
        role: Role::Operator,
        hash: "ab".repeat(32),
        created_at: t("2026-12-01T00:00:00Z") + TimeDelta::minutes(minutes),
        created_by: "admin".into(),
        expires: None,
        revoked_at: None,
    };
    assert!(store.tokens().await.unwrap().is_empty());
    assert_eq!(store.token("t1").await.unwrap(), None);
    store.put_token(&token("t1", 0)).await.unwrap();
    store.put_token(&token("t2", 1)).await.unwrap();
    let mut revoked = token("t1", 0);
    revoked.revoked_at = Some(t("2026-12-02T00:00:00Z"));
    store.put_token(&revoked).await.unwrap();
    assert_eq!(store.token("t1").await.unwrap(), Some(revoked.clone()));
    assert_eq!(store.tokens().await.unwrap(), vec![revoked, token("t2", 1)]);
}

/// A run with `entries` history entries, to save and load.
pub fn sample_run(id: &str, workload: &str, entries: usize) -> Run {
    let at = t("2026-12-01T07:00:00Z");
    let plan = Plan {
        workload: workload.into(),
        action: Action::Start,
        profile: Some("big".into()),
        stages: Vec::new(),
        excluded: Vec::new(),
        notes: Vec::new(),
        ignored: Default::default(),
        summary: Default::default(),
    };
    let mut run = Run::new(id, plan, "host:1", at, Jitter::new(7));
    for n in 0..entries {
        run.record(
            at + TimeDelta::seconds(n as i64),
            Some("web"),
            RunEvent::StepDone {
                step: format!("step {n} of a long run ✓"),
            },
        );
    }
    run
}

/// Locks are held by one run of one owner; runs are saved whole, large or small,
/// growing or shrinking, and the unfinished one of a workload is found.
///
/// # Panics
/// When the store does not do what it must.
pub async fn run_store(store: &dyn RunStore) {
    let now = t("2026-12-01T07:00:00Z");
    let lock = |owner: &str, run: &str, secs: i64| Lock {
        workload: "W".into(),
        owner: owner.into(),
        run_id: run.into(),
        expires: now + TimeDelta::seconds(secs),
    };
    assert_eq!(
        store.acquire(&lock("a", "run-1", 60), now).await.unwrap(),
        LockOutcome::Acquired
    );
    assert!(store.renew(&lock("a", "run-1", 120)).await.unwrap());
    assert!(store.holds(&lock("a", "run-1", 120)).await.unwrap());
    // Another owner, or another run of the same owner, does not hold it.
    assert!(!store.renew(&lock("b", "run-1", 120)).await.unwrap());
    assert!(!store.renew(&lock("a", "run-2", 120)).await.unwrap());
    assert!(!store.holds(&lock("b", "run-1", 120)).await.unwrap());
    assert!(!store.holds(&lock("a", "run-2", 120)).await.unwrap());
    match store.acquire(&lock("b", "run-3", 60), now).await.unwrap() {
        LockOutcome::Held(l) => assert_eq!((l.owner.as_str(), l.run_id.as_str()), ("a", "run-1")),
        other => panic!("{other:?}"),
    }
    // A release that names another run of the owner leaves the lock alone.
    store.release("W", "a", Some("run-9")).await.unwrap();
    assert!(store.holds(&lock("a", "run-1", 120)).await.unwrap());
    // Released (a cancel): the run no longer holds it, even when its owner takes the
    // workload again for another run.
    store.release("W", "a", Some("run-1")).await.unwrap();
    assert!(!store.holds(&lock("a", "run-1", 120)).await.unwrap());
    assert!(!store.renew(&lock("a", "run-1", 120)).await.unwrap());
    assert_eq!(
        store.acquire(&lock("a", "run-2", 60), now).await.unwrap(),
        LockOutcome::Acquired
    );
    assert!(!store.renew(&lock("a", "run-1", 120)).await.unwrap());
    assert!(store.holds(&lock("a", "run-2", 60)).await.unwrap());
    store.release("W", "a", None).await.unwrap();
    assert!(!store.holds(&lock("a", "run-2", 60)).await.unwrap());

    assert_eq!(store.load_run("run-x").await.unwrap(), None);
    assert_eq!(store.unfinished_run("W").await.unwrap(), None);
    // Small, then large (several items where items are small), then small again.
    let mut run = sample_run("run-x", "W", 3);
    store.save_run(&mut run).await.unwrap();
    assert_eq!(run.version, 1);
    assert_eq!(store.load_run("run-x").await.unwrap().as_ref(), Some(&run));
    assert_eq!(
        store.unfinished_run("W").await.unwrap().as_ref(),
        Some(&run)
    );
    // A second new run of the same id is not written over the first.
    let mut twin = sample_run("run-x", "W", 1);
    assert!(matches!(
        store.save_run(&mut twin).await,
        Err(StoreError::Conflict(_))
    ));
    assert_eq!(twin.version, 0);
    for entries in [12_000, 9_000, 3] {
        let version = run.version;
        run = sample_run("run-x", "W", entries);
        run.version = version;
        store.save_run(&mut run).await.unwrap();
        assert_eq!(run.version, version + 1);
        assert_eq!(store.load_run("run-x").await.unwrap().as_ref(), Some(&run));
    }
    // Compare-and-set: of two writers that read the same version, the first save
    // wins and the second writes nothing, whatever its size.
    let mut cancel = store.load_run("run-x").await.unwrap().expect("saved");
    let mut driver = sample_run("run-x", "W", 12_000);
    driver.version = cancel.version;
    cancel.status = RunStatus::Cancelled;
    cancel.finished = Some(now + TimeDelta::minutes(1));
    store.save_run(&mut cancel).await.unwrap();
    let read = driver.version;
    match store.save_run(&mut driver).await {
        Err(StoreError::Conflict(m)) => assert!(m.contains("run-x"), "{m}"),
        other => panic!("a stale save was not refused: {other:?}"),
    }
    assert_eq!(driver.version, read);
    assert_eq!(
        store.load_run("run-x").await.unwrap().as_ref(),
        Some(&cancel)
    );
    assert_eq!(store.unfinished_run("W").await.unwrap(), None);
    // The loser reads again and can save from there.
    run = store.load_run("run-x").await.unwrap().expect("saved");
    run.status = RunStatus::Succeeded;
    run.finished = Some(now + TimeDelta::minutes(3));
    store.save_run(&mut run).await.unwrap();
    assert_eq!(store.load_run("run-x").await.unwrap().as_ref(), Some(&run));
    assert_eq!(store.unfinished_run("W").await.unwrap(), None);
    let rows = store.list_runs(Some("W")).await.unwrap();
    assert_eq!(rows.len(), 1);
    assert_eq!(
        (rows[0].id.as_str(), rows[0].status.as_str()),
        ("run-x", "succeeded")
    );
    assert!(store.list_runs(Some("V")).await.unwrap().is_empty());

    // Pacing shares: one record per account, written with compare-and-set.
    assert_eq!(store.pace_shares("us-east-1|").await.unwrap(), None);
    let mut shares = PaceShares::default();
    let describe = crate::share::Want {
        bucket: "describe",
        spec: crate::pace::Limits::AWS.describe,
        min: 1.0,
        max: 1.0,
    };
    shares.reserve(&[describe], now);
    // A first write of a record another writer created is refused.
    store
        .put_pace_shares("us-east-1|", &shares, 0)
        .await
        .unwrap();
    assert!(matches!(
        store.put_pace_shares("us-east-1|", &shares, 0).await,
        Err(StoreError::Conflict(_))
    ));
    assert_eq!(
        store.pace_shares("us-east-1|").await.unwrap(),
        Some((shares.clone(), 1))
    );
    shares.reserve(&[describe], now + TimeDelta::seconds(1));
    store
        .put_pace_shares("us-east-1|", &shares, 1)
        .await
        .unwrap();
    assert!(matches!(
        store.put_pace_shares("us-east-1|", &shares, 1).await,
        Err(StoreError::Conflict(_))
    ));
    let (read, version) = store.pace_shares("us-east-1|").await.unwrap().unwrap();
    assert_eq!((&read, version), (&shares, 2));
    assert_eq!(read.levels["describe"].tokens, 99.0);
    assert_eq!(store.pace_shares("eu-west-1|").await.unwrap(), None);
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_memory_store_keeps_the_contract() {
        pollster::block_on(super::schedule_store(&crate::memory::MemoryStore::new()));
        pollster::block_on(super::access_store(&crate::memory::MemoryStore::new()));
        pollster::block_on(super::run_store(&crate::memory::MemoryStore::new()));
    }
}
