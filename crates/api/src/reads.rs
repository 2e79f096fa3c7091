//! The answers of the busiest reads (the workload list, a workload's status), kept
//! for as long as the observations they are made from may be served
//! ([`Clouds::max_age`](ec2_scheduler_app::clouds::Clouds::max_age), a second), so
//! that however many clients poll, each answer is made at most once a second; readers
//! arriving while it is made wait for it. A change made through this API (any write
//! that succeeds) forgets them all, so a caller reads its own change at once.

use std::collections::HashMap;
use std::sync::{Arc, Mutex as SyncMutex};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use tokio::sync::Mutex;

use crate::problem::{Problem, ProblemKind};

type Slot = Arc<Mutex<Option<(Instant, Bytes)>>>;

/// Kept answers, by key (`list`, `status:NAME`).
pub struct Reads {
    max_age: Duration,
    slots: SyncMutex<HashMap<String, Slot>>,
}

impl Reads {
    pub fn new(max_age: Duration) -> Reads {
        Reads {
            max_age,
            slots: SyncMutex::new(HashMap::new()),
        }
    }

    /// The JSON answer under `key`, made by `make` unless one at most `max_age` old
    /// is kept. Errors are not kept.
    pub async fn get<F, Fut>(&self, key: &str, make: F) -> Result<Bytes, Problem>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<serde_json::Value, Problem>>,
    {
        let encode = |v: serde_json::Value| {
            serde_json::to_vec(&v).map(Bytes::from).map_err(|e| {
                Problem::new(
                    ProblemKind::Internal,
                    format!("cannot encode the answer: {e}"),
                )
            })
        };
        if self.max_age.is_zero() {
            return encode(make().await?);
        }
        let slot = {
            let mut slots = self.slots.lock().unwrap_or_else(|p| p.into_inner());
            slots.entry(key.to_string()).or_default().clone()
        };
        let mut held = slot.lock().await;
        if let Some((made, body)) = held.as_ref()
            && made.elapsed() < self.max_age
        {
            return Ok(body.clone());
        }
        let body = match make().await.and_then(encode) {
            Ok(body) => body,
            Err(p) => {
                // Nothing is kept for a name that failed (one that does not exist,
                // say), so that asking for many such names keeps nothing.
                if held.is_none() {
                    self.slots
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .remove(key);
                }
                return Err(p);
            }
        };
        *held = Some((Instant::now(), body.clone()));
        Ok(body)
    }

    /// Forgets every kept answer.
    pub fn clear(&self) {
        self.slots.lock().unwrap_or_else(|p| p.into_inner()).clear();
    }
}
