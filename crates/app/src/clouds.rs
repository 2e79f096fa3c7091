//! The clouds a long-lived process acts on, shared by its parts (the scheduler loop
//! and the HTTP API): on the simulator one region for every workload (its state and
//! clock are the process's), on AWS one set of clients per workload, built once.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use chrono::{DateTime, Utc};
use ec2_scheduler_core::Workload;
use tokio::sync::Mutex;

use crate::env::{App, Cloud, CloudSpec, Speed};
use crate::error::Result;
use crate::observed::Observations;

/// Clouds by workload, made on first use.
pub struct Clouds {
    simulated: bool,
    /// The simulated region, once made; `init` is held while it is made.
    shared: OnceLock<Arc<Cloud>>,
    init: Mutex<()>,
    each: Mutex<BTreeMap<String, Arc<Cloud>>>,
    /// What readers were last shown of each workload.
    pub(crate) observations: Observations,
}

impl Clouds {
    /// Clouds for `app`'s cloud spec.
    pub fn new(app: &App) -> Clouds {
        Clouds {
            simulated: !matches!(app.cloud, CloudSpec::Aws { .. }),
            shared: OnceLock::new(),
            init: Mutex::new(()),
            each: Mutex::new(BTreeMap::new()),
            observations: Observations::new(Observations::MAX_AGE),
        }
    }

    /// Serves reads observations at most `max_age` old (zero: observe every time).
    #[must_use]
    pub fn with_max_age(mut self, max_age: Duration) -> Clouds {
        self.observations = Observations::new(max_age);
        self
    }

    /// How old an observation may be when a read is answered from it.
    pub fn max_age(&self) -> Duration {
        self.observations.max_age()
    }

    /// Whether the clock is the cloud's: on the simulator, once its region is made.
    pub fn clock_ready(&self) -> bool {
        !self.simulated || self.shared.get().is_some()
    }

    /// Whether every workload shares one simulated region.
    pub fn simulated(&self) -> bool {
        self.simulated
    }

    /// The cloud of `w`.
    ///
    /// # Errors
    /// A fleet file that cannot be read.
    pub async fn get(&self, app: &App, w: &Workload) -> Result<Arc<Cloud>> {
        if self.simulated {
            if let Some(c) = self.shared.get() {
                return Ok(c.clone());
            }
            let _making = self.init.lock().await;
            if let Some(c) = self.shared.get() {
                return Ok(c.clone());
            }
            let c = Arc::new(app.connect(w).await?);
            let _ = self.shared.set(c.clone());
            return Ok(c);
        }
        let mut each = self.each.lock().await;
        if let Some(c) = each.get(w.name.as_str()) {
            return Ok(c.clone());
        }
        let c = Arc::new(app.connect(w).await?);
        each.insert(w.name.to_string(), c.clone());
        Ok(c)
    }

    /// Forgets `w`'s clients (after its definition changed: region or role).
    pub async fn forget(&self, workload: &str) {
        self.observations.forget(workload);
        self.each.lock().await.remove(workload);
    }

    /// The clock: the simulated region's once it exists, else the system's.
    pub fn now(&self) -> DateTime<Utc> {
        self.shared.get().map_or_else(Utc::now, |c| c.now())
    }

    /// Lets `d` pass on the clock, in slices short enough to notice `stop` or
    /// `wake` soon.
    pub async fn sleep(&self, d: Duration, stop: &AtomicBool, wake: &AtomicBool) {
        if let Some(c) = self.shared.get() {
            // The simulator sleeps at most 2 s of real time per wait. Woken early (a
            // run begun through the API), its clock moves on only by the real time
            // that passed, scaled, so the run begins when it was asked for.
            if let Cloud::Sim {
                sim,
                speed: Speed::Times(x),
            } = &**c
            {
                let real = Duration::from_secs_f64((d.as_secs_f64() / x).min(2.0));
                let began = tokio::time::Instant::now();
                while !stop.load(Ordering::SeqCst)
                    && !wake.load(Ordering::SeqCst)
                    && began.elapsed() < real
                {
                    // Time passes between the check and here: saturate, never panic.
                    tokio::time::sleep(
                        real.saturating_sub(began.elapsed())
                            .min(Duration::from_millis(50)),
                    )
                    .await;
                }
                let passed = if began.elapsed() >= real {
                    d
                } else {
                    d.min(began.elapsed().mul_f64(*x))
                };
                sim.region.advance(passed.max(Duration::from_millis(1)));
                return;
            }
            return c.wait(d).await;
        }
        let end = tokio::time::Instant::now() + d;
        while !stop.load(Ordering::SeqCst)
            && !wake.load(Ordering::SeqCst)
            && tokio::time::Instant::now() < end
        {
            let left = end - tokio::time::Instant::now();
            tokio::time::sleep(left.min(Duration::from_millis(200))).await;
        }
    }

    /// Saves the simulated region (its fleet file), if there is one.
    ///
    /// # Errors
    /// The file cannot be written.
    pub fn save(&self) -> Result<()> {
        match self.shared.get() {
            Some(c) => c.save(),
            None => Ok(()),
        }
    }
}
