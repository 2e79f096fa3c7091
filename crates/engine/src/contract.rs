//! What every store must do, as checks that each store's tests run against it.

use chrono::{DateTime, TimeDelta, Utc};
use ec2_scheduler_core::overrides::{Change, Override};
use ec2_scheduler_core::schedule::EventKind;

use ec2_scheduler_core::access::{Role, Token};

use crate::ports::{AccessStore, EventOutcome, EventRecord, ScheduleStore};

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

#[cfg(test)]
mod tests {
    #[test]
    fn the_memory_store_keeps_the_contract() {
        pollster::block_on(super::schedule_store(&crate::memory::MemoryStore::new()));
        pollster::block_on(super::access_store(&crate::memory::MemoryStore::new()));
    }
}
