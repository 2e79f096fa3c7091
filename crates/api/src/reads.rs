//! The answers of the busiest reads (the workload list, a workload's status), kept
//! for as long as the observations they are made from may be served
//! ([`Clouds::max_age`](ec2_scheduler_app::clouds::Clouds::max_age), a second), so
//! that however many clients poll, each answer is made at most once a second; readers
//! arriving while it is made wait for it. A change made through this API (any write
//! that succeeds) forgets them all, so a caller reads its own change at once.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex as SyncMutex};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use tokio::sync::Mutex;

use ec2_scheduler_app::App;
use ec2_scheduler_core::Workload;

use crate::problem::{Problem, ProblemKind};

type Slot = Arc<Mutex<Option<(Instant, Bytes)>>>;

/// The workloads as read (when, in which generation).
type KeptList = (Instant, u64, Arc<Vec<Workload>>);

/// Kept answers, by key (`list`, `status:NAME`).
pub struct Reads {
    max_age: Duration,
    slots: SyncMutex<HashMap<String, Slot>>,
    /// The stored workloads as last read (when, in which generation), for the
    /// dashboard's pages.
    workloads: Mutex<Option<KeptList>>,
    /// Counts [`Reads::clear`]s: what was read before one is not served after it.
    generation: AtomicU64,
}

impl Reads {
    pub fn new(max_age: Duration) -> Reads {
        Reads {
            max_age,
            slots: SyncMutex::new(HashMap::new()),
            workloads: Mutex::new(None),
            generation: AtomicU64::new(0),
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
        self.generation.fetch_add(1, Ordering::SeqCst);
    }

    /// Every stored workload, read from the store at most `max_age` ago (readers
    /// arriving while it is read wait for it).
    ///
    /// # Errors
    /// The store's.
    pub async fn workloads(&self, app: &App) -> Result<Arc<Vec<Workload>>, Problem> {
        let mut held = self.workloads.lock().await;
        let generation = self.generation.load(Ordering::SeqCst);
        if let Some((made, g, list)) = held.as_ref()
            && *g == generation
            && made.elapsed() < self.max_age
        {
            return Ok(list.clone());
        }
        let list = Arc::new(app.stored_workloads().await?);
        *held = Some((Instant::now(), generation, list.clone()));
        Ok(list)
    }
}
