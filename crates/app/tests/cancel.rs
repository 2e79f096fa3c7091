//! An acknowledged cancel holds, on every store: runs are saved with compare-and-set,
//! and a cancel answers only after the run can no longer call the cloud.
//!
//! Each trial begins a stop of the seed example on its own simulated region (driven
//! in real time, about a quarter of a second a run), drives it as `serve` and the
//! Lambda run step do (one tick at a time, resuming from the store) or as `run` does
//! (one executor to the end), and cancels it from another task at a random instant,
//! through the same environment or another one over the same store (another
//! process, with the same lock owner, as Lambda functions are, or another). Once the
//! cancel answered, the simulator's log must show no call of the run, and the run
//! must end cancelled with its lock free. A cancel that came too late answers that
//! the run is finished, and the run must have ended on its own.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use ec2_scheduler_app::sim::read_fleet;
use ec2_scheduler_app::workloads::{load_files, pick};
use ec2_scheduler_app::{App, Begin, CloudSpec, Error, Fence, Next, Outcome, Quiet, Speed};
use ec2_scheduler_aws::dynamo::{DynamoStore, Tables};
use ec2_scheduler_core::model::Name;
use ec2_scheduler_core::plan::ScaleIn;
use ec2_scheduler_core::{Action, Workload};
use ec2_scheduler_engine::RunRequest;
use ec2_scheduler_engine::RunStatus;
use ec2_scheduler_engine::memory::MemoryStore;
use ec2_scheduler_sim::LogEntry;
use ec2_scheduler_store::SqliteStore;

/// Trials per store.
const TRIALS: usize = 200;
/// Trials run at once (each on its own workload and region) on the stores in this
/// process; on moto, fewer (its DynamoDB answers 500 now and then under many
/// concurrent requests).
const AT_ONCE: usize = 20;
const AT_ONCE_ON_MOTO: usize = 5;
/// Virtual seconds per real second: a stop of the seed example takes about 0.3 s.
const SPEED: f64 = 150.0;

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn seed() -> Workload {
    let loaded = load_files(&[repo().join("examples/seed/example.json")]).unwrap();
    pick(&loaded, "ExampleTestCase").unwrap().clone()
}

fn cloud() -> CloudSpec {
    CloudSpec::SimMemory {
        instances: read_fleet(&repo().join("examples/seed/fleet-running.json")).unwrap(),
        start: ec2_scheduler_sim::epoch(),
        speed: Speed::Times(SPEED),
    }
}

/// A window short enough for 200 trials, with a settle time that still leaves a
/// driver preempted between its check and its call a tenth of a second.
fn fence() -> Fence {
    Fence {
        act_window: Duration::from_millis(30),
        cancel_settle: Duration::from_millis(150),
    }
}

/// A deterministic stream of instants (xorshift), so a failure can be replayed.
struct Draw(u64);

impl Draw {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

/// Who cancels: the driver's own environment, another one with the same lock owner
/// (Lambda functions), or another owner (the command line beside `serve`).
#[derive(Clone, Copy, Debug)]
enum Canceller {
    Same,
    SameOwner,
    OtherOwner,
}

#[derive(Default, Debug)]
struct Tally {
    acknowledged: usize,
    too_late: usize,
    one_executor: usize,
}

/// One trial; panics when an acknowledged cancel did not hold.
async fn trial(
    driver: Arc<App>,
    canceller: Arc<App>,
    n: usize,
    delay: Duration,
    one_executor: bool,
) -> bool {
    let mut w = seed();
    w.name = Name::new(format!("Trial{n:03}")).unwrap();
    let cloud = Arc::new(driver.connect(&w).await.unwrap());
    let req = RunRequest {
        action: Action::Stop,
        profile: None,
        scale_in: ScaleIn::ReportOnly,
    };
    let Begin::Started(run) = driver
        .begin_run(&cloud, &w, &req, None, &mut Quiet)
        .await
        .unwrap()
    else {
        panic!("trial {n}: nothing to do")
    };
    let id = run.id.clone();
    let drive = {
        let (driver, cloud, w, id, req) = (
            driver.clone(),
            cloud.clone(),
            w.clone(),
            id.clone(),
            req.clone(),
        );
        tokio::spawn(async move {
            if one_executor {
                return match driver.run(&cloud, &w, &req, Some(&id), &mut Quiet).await {
                    Ok(Outcome::Finished(r)) => Ok(r.status),
                    Ok(other) => panic!("trial {n}: {other:?}"),
                    Err(e) => Err(e),
                };
            }
            loop {
                match driver.advance(&cloud, &w, &id).await {
                    Ok(Next::Wait(d, _)) => cloud.wait(d).await,
                    Ok(Next::Done(r)) => return Ok(r.status),
                    Err(e) => return Err(e),
                }
            }
        })
    };
    tokio::time::sleep(delay).await;
    let answer = canceller.cancel(&id).await;
    let log = || cloud.sim().expect("simulated").region.log();
    let at_answer = log().len();
    let ended = drive.await.unwrap();
    let stored = canceller.run_record(&id).await.unwrap();
    let calls_after: Vec<LogEntry> = log()
        .into_iter()
        .skip(at_answer)
        .filter(|e| matches!(e, LogEntry::Call { .. }))
        .collect();
    match answer {
        Ok(cancelled) => {
            assert_eq!(cancelled.status, RunStatus::Cancelled, "trial {n}");
            assert!(
                calls_after.is_empty(),
                "trial {n}: calls after the cancel answered: {calls_after:?}"
            );
            assert_eq!(
                stored.status,
                RunStatus::Cancelled,
                "trial {n}: the cancelled run ended {}, driver: {ended:?}; {:#?}",
                stored.status.as_str(),
                stored.history
            );
            // The driver stopped, quietly or because its lock was gone.
            match ended {
                Ok(RunStatus::Cancelled) | Err(Error::LockLost(_)) => {}
                other => panic!("trial {n}: the driver ended with {other:?}"),
            }
            // The workload is free for another run.
            assert!(
                canceller
                    .unfinished_run(w.name.as_str())
                    .await
                    .unwrap()
                    .is_none()
            );
            let again = driver
                .begin_run(&cloud, &w, &req, None, &mut Quiet)
                .await
                .unwrap_or_else(|e| panic!("trial {n}: the workload is not free: {e}"));
            assert!(matches!(again, Begin::Started(_) | Begin::NothingToDo(_)));
            true
        }
        Err(Error::Conflict(m)) => {
            // Too late: the run had finished; it finished on its own.
            assert!(m.contains("already finished"), "trial {n}: {m}");
            assert_eq!(ended.unwrap(), stored.status, "trial {n}");
            assert_ne!(stored.status, RunStatus::Cancelled, "trial {n}");
            false
        }
        Err(e) => panic!("trial {n}: the cancel failed: {e}"),
    }
}

/// `TRIALS` trials, `AT_ONCE` at a time, cancelling at instants spread over a run.
async fn trials(make: impl Fn(&str) -> App, cancellers: &[Canceller], at_once: usize) -> Tally {
    let driver = Arc::new(make("driver:1"));
    let same_owner = Arc::new(make("driver:1"));
    let other_owner = Arc::new(make("cli:2"));
    let mut draw = Draw(0x9e37_79b9_7f4a_7c15);
    let mut tally = Tally::default();
    for batch in 0..TRIALS / at_once {
        let mut handles = Vec::new();
        for k in 0..at_once {
            let n = batch * at_once + k;
            // Up to 0.4 s: most runs are under way, some have finished.
            let delay = Duration::from_micros(draw.next() % 400_000);
            let who = cancellers[n % cancellers.len()];
            let canceller = match who {
                Canceller::Same => driver.clone(),
                Canceller::SameOwner => same_owner.clone(),
                Canceller::OtherOwner => other_owner.clone(),
            };
            let one_executor = n % 4 == 3;
            tally.one_executor += usize::from(one_executor);
            handles.push(tokio::spawn(trial(
                driver.clone(),
                canceller,
                n,
                delay,
                one_executor,
            )));
        }
        for h in handles {
            if h.await.unwrap() {
                tally.acknowledged += 1;
            } else {
                tally.too_late += 1;
            }
        }
    }
    eprintln!("{tally:?}");
    assert_eq!(tally.acknowledged + tally.too_late, TRIALS);
    // Most cancels land while the run is under way, or the test shows little.
    assert!(
        tally.acknowledged >= TRIALS / 2,
        "only {} of {TRIALS} cancels landed during a run",
        tally.acknowledged
    );
    tally
}

fn app(store: Box<dyn ec2_scheduler_app::Store>, owner: &str) -> App {
    App::new(store, cloud(), owner.into(), Arc::default()).with_fence(fence())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_acknowledged_cancel_holds_on_the_memory_store() {
    // A store in one process's memory: the driver and the canceller share it.
    let store = std::sync::Mutex::new(Some(MemoryStore::new()));
    let make = |owner: &str| match store.lock().unwrap().take() {
        Some(s) => app(Box::new(s), owner),
        None => app(Box::new(MemoryStore::new()), owner),
    };
    trials(make, &[Canceller::Same], AT_ONCE).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_acknowledged_cancel_holds_on_sqlite() {
    let dir = std::env::temp_dir().join(format!("ec2s-cancel-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("state.db");
    // Each environment its own connection to the file, as separate processes have.
    let make = |owner: &str| app(Box::new(SqliteStore::open(&path).unwrap()), owner);
    trials(
        make,
        &[Canceller::Same, Canceller::SameOwner, Canceller::OtherOwner],
        AT_ONCE,
    )
    .await;
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_acknowledged_cancel_holds_on_dynamodb() {
    let moto = ec2_scheduler_testkit::Moto::start();
    // The SDK's standard retries, as the tool has them (moto's occasional 500).
    let conf = ec2_scheduler_aws::sdk_config(&ec2_scheduler_aws::Connect {
        region: Some("us-west-2".into()),
        endpoint_url: Some(moto.endpoint.clone()),
        max_attempts: Some(3),
        ..ec2_scheduler_aws::Connect::default()
    })
    .await;
    DynamoStore::new(&conf, Tables::default())
        .ensure_state_table()
        .await
        .unwrap();
    // Each environment its own store (its own record of what it read), as separate
    // processes have.
    let make = |owner: &str| app(Box::new(DynamoStore::new(&conf, Tables::default())), owner);
    trials(
        make,
        &[Canceller::Same, Canceller::SameOwner, Canceller::OtherOwner],
        AT_ONCE_ON_MOTO,
    )
    .await;
}
