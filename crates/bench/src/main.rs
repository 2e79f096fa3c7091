//! `cargo run --release -p ec2-scheduler-bench [-- SCENARIO...]`
//!
//! Scenarios (default: all, each in its own process so that peak memory is its own):
//! - `converge N`: stop, then start, a 3-tier workload of N instances on the simulated
//!   region with AWS's buckets and transition times; reports virtual time against the
//!   lower bound, API calls, throttled and failed calls, CPU time and peak memory;
//! - `concurrent W N [kept|per-tick|step]`: W workloads of N instances on one
//!   simulated account, stopped and then started at one instant each, driven
//!   together as `serve` drives them (each run keeping its executor, then a new
//!   executor each tick) and as the serverless state machine drives its run step
//!   (or by the one driver named), sharing the account's buckets; reports the last run's end against the account-wide lower
//!   bound, the spread of the ends, throttled calls and failed runs;
//! - `plan N`: plans a stop and a start of N instances; reports time and memory;
//! - `cli N`: the release `ec2-scheduler run --cloud sim --speed max` on a fleet file
//!   of N instances (stop, then start); reports wall time and peak memory. Needs
//!   `cargo build --release -p ec2-scheduler` first.
//! - `api N`: the release `ec2-scheduler serve --listen` with N small workloads and
//!   one of 3,000 instances on a simulated fleet; `oha` (crates.io: `cargo install
//!   oha --locked`) sends `GET /v1/workloads/{w}/status` and `GET /v1/workloads` from
//!   64 connections while a stop of the large workload runs; reports throughput, p50
//!   and p99, and the run's duration against the same stop without load. Needs the
//!   release `ec2-scheduler` and `oha` on the PATH (or `$OHA`). Not in the default set.
//! - `dashboard N`: the same service with N workloads that have schedules; `oha` asks
//!   for each dashboard page 40 times over one connection, one request at a time;
//!   reports p50, p99 and the slowest. Same needs as `api`; not in the default set.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use ec2_scheduler_config::{Source, load};
use ec2_scheduler_core::plan::{PlanRequest, ScaleIn};
use ec2_scheduler_core::{Action, Instance, InstanceState, Workload, plan};
use ec2_scheduler_engine::memory::MemoryStore;
use ec2_scheduler_engine::pace::{BucketSpec, Limits};
use ec2_scheduler_engine::ports::Clock;
use ec2_scheduler_engine::{Begin, Executor, Ports, RunRequest, RunStatus, Settings, Tick};
use ec2_scheduler_sim::{HeavyTail, LogEntry, Region, SimConfig};

const TIERS: [&str; 3] = ["db", "app", "web"];
/// Seconds paused after each tier (the original's default).
const DELAY: u64 = 5;

fn workload() -> Workload {
    let tier = |name: &str, start: u32, stop: u32| {
        format!(
            "  - {{name: {name}, start: {{order: {start}, wait: true, delay: {DELAY}}}, stop: {{order: {stop}, wait: true, delay: {DELAY}}}, profiles: {{big: {{instance_type: m5.xlarge}}}}}}\n"
        )
    };
    let text = format!(
        "version: 1\nworkloads:\n- name: bench\n  region: sim\n  workload_tag: {{key: env, value: bench}}\n  tier_tag_key: tier\n  tiers:\n{}{}{}",
        tier("db", 0, 2),
        tier("app", 1, 1),
        tier("web", 2, 0)
    );
    load(&[Source {
        name: "bench",
        text: &text,
    }])
    .expect("valid")
    .workloads
    .remove(0)
}

fn fleet(n: usize, state: InstanceState) -> Vec<Instance> {
    (0..n)
        .map(|i| Instance {
            id: format!("i-{i:08x}"),
            state,
            instance_type: "m5.large".into(),
            az: ["a", "b", "c"][i % 3].into(),
            vpc_id: None,
            tags: [
                ("env".to_string(), "bench".to_string()),
                ("tier".to_string(), TIERS[i % 3].to_string()),
            ]
            .into(),
            state_reason: None,
            load_balancers: None,
        })
        .collect()
}

/// Process CPU time so far (from /proc/self/schedstat, in nanoseconds).
fn cpu_time() -> Duration {
    std::fs::read_to_string("/proc/self/schedstat")
        .ok()
        .and_then(|s| s.split_whitespace().next().and_then(|n| n.parse().ok()))
        .map(Duration::from_nanos)
        .unwrap_or_default()
}

/// Peak resident memory of the process in MiB (VmHWM).
fn peak_mib() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|k| k.parse::<f64>().ok())
        })
        .map_or(f64::NAN, |kb| kb / 1024.0)
}

/// The time an ideal orchestrator with zero overhead needs: tiers one after another,
/// each instance started or stopped as soon as the resource bucket has a token for it
/// (the bucket is full at the beginning and carries over between tiers; request
/// buckets, observation and polling are free), each transition taking the time the
/// simulator gave it (`tiers[k]`: those of tier k, in the order they began), and the
/// tier's delay after every tier but the last. The simulator draws a transition's
/// time when the call is made, so an orchestrator issuing the same calls sooner would
/// get the same times in the same order: the ideal one gets them in its own slots.
pub fn lower_bound(tiers: &[Vec<f64>], bucket: BucketSpec, delay: f64) -> f64 {
    let mut t = 0.0f64;
    let mut tokens = bucket.capacity;
    for (k, durations) in tiers.iter().enumerate() {
        let n = durations.len() as f64;
        // Instance j (from 0) goes out when the bucket has its token.
        let slot = |j: usize| {
            let need = (j + 1) as f64;
            if tokens >= need {
                t
            } else {
                t + (need - tokens) / bucket.refill_per_sec
            }
        };
        let end = durations
            .iter()
            .enumerate()
            .map(|(j, d)| slot(j) + d)
            .fold(t, f64::max);
        let last_issue = if durations.is_empty() {
            t
        } else {
            slot(durations.len() - 1)
        };
        tokens = (tokens - n).max(0.0);
        // Tokens refill while the tier finishes and during the delay.
        let pause = if k + 1 < tiers.len() { delay } else { 0.0 };
        tokens = (tokens + (end + pause - last_issue) * bucket.refill_per_sec).min(bucket.capacity);
        t = end + pause;
    }
    t
}

/// The bound of a start with a profile that resizes every instance: as
/// [`lower_bound`], and besides, each instance is resized (one ModifyInstanceAttribute
/// call on the `mutating` bucket, full at the beginning) before it starts, and starts
/// no sooner than `resize_delay` after. The ideal orchestrator resizes every instance
/// as early as the bucket allows, in tier order, while earlier tiers start, wait and
/// pause; each instance then starts as soon as its tier may, its resize has settled and
/// the start bucket has a token.
pub fn lower_bound_resized(
    tiers: &[Vec<f64>],
    mutating: BucketSpec,
    start: BucketSpec,
    resize_delay: f64,
    delay: f64,
) -> f64 {
    let mut resized = 0usize;
    let resize_done =
        |j: usize| ((j + 1) as f64 - mutating.capacity).max(0.0) / mutating.refill_per_sec;
    let (mut tokens, mut last) = (start.capacity, 0.0f64);
    let mut t = 0.0f64;
    for (k, durations) in tiers.iter().enumerate() {
        let mut issued = Vec::with_capacity(durations.len());
        for _ in durations {
            let ready = t.max(resize_done(resized) + resize_delay);
            resized += 1;
            // The start bucket at `ready`, then wait for a token if it is empty.
            let at = ready.max(last);
            let have = (tokens + (at - last) * start.refill_per_sec).min(start.capacity);
            let (when, left) = if have >= 1.0 {
                (at, have - 1.0)
            } else {
                (at + (1.0 - have) / start.refill_per_sec, 0.0)
            };
            tokens = left;
            last = when;
            issued.push(when);
        }
        let end = durations
            .iter()
            .zip(&issued)
            .map(|(d, when)| when + d)
            .fold(t, f64::max);
        let pause = if k + 1 < tiers.len() { delay } else { 0.0 };
        t = end + pause;
    }
    t
}

/// A bench world: how the simulated account differs from the one the engine's
/// pacing assumes (AWS's published limits, stops of 30 s and starts of 15 s).
#[derive(Debug, Clone, Copy)]
struct Scenario {
    name: &'static str,
    /// Heavy-tailed transition times.
    tail: bool,
    /// Share of every bucket another client of the account spends.
    background: f64,
    /// The account's limits, as a multiple of the published ones.
    limits: f64,
}

const SCENARIOS: [Scenario; 5] = [
    Scenario {
        name: "aligned",
        tail: false,
        background: 0.0,
        limits: 1.0,
    },
    Scenario {
        name: "jitter",
        tail: true,
        background: 0.0,
        limits: 1.0,
    },
    Scenario {
        name: "shared",
        tail: false,
        background: 0.3,
        limits: 1.0,
    },
    Scenario {
        name: "limits-0.5x",
        tail: false,
        background: 0.0,
        limits: 0.5,
    },
    Scenario {
        name: "limits-3x",
        tail: false,
        background: 0.0,
        limits: 3.0,
    },
];

impl Scenario {
    /// The account's buckets.
    fn limits(&self) -> Limits {
        Limits::AWS.scaled(self.limits)
    }

    /// The buckets the simulator applies to the engine: what the background client
    /// leaves of the account's.
    fn left(&self) -> Limits {
        self.limits().shared(self.background)
    }

    fn config(&self) -> SimConfig {
        SimConfig {
            jitter: 0.0,
            tail: self.tail.then(HeavyTail::default),
            background: self.background,
            limits: self.limits(),
            ..SimConfig::default()
        }
    }
}

/// The transition times the simulator gave in `log`: stops (stopping to stopped) or
/// starts (pending to running), by tier in `order`, each tier's in the order they
/// began.
fn transitions(log: &[LogEntry], action: Action, order: &[&str]) -> Vec<Vec<f64>> {
    transitions_of(log, action, order, |_| true)
}

/// [`transitions`] of the instances `keep` keeps.
fn transitions_of(
    log: &[LogEntry],
    action: Action,
    order: &[&str],
    keep: impl Fn(&str) -> bool,
) -> Vec<Vec<f64>> {
    let (began, ended) = match action {
        Action::Stop => (InstanceState::Stopping, InstanceState::Stopped),
        Action::Start => (InstanceState::Pending, InstanceState::Running),
    };
    let mut since = BTreeMap::new();
    let mut out: Vec<Vec<(chrono::DateTime<chrono::Utc>, usize, f64)>> =
        vec![Vec::new(); order.len()];
    for e in log {
        if let LogEntry::State {
            at, instance, to, ..
        } = e
            && keep(instance)
        {
            if *to == began {
                since.insert(instance.clone(), (*at, since.len()));
            } else if *to == ended
                && let Some((t0, n)) = since.remove(instance)
            {
                let tier = TIERS[tier_index(instance)];
                let k = order.iter().position(|t| *t == tier).expect("a tier");
                let secs = (*at - t0).num_microseconds().unwrap_or(0) as f64 / 1e6;
                out[k].push((t0, n, secs));
            }
        }
    }
    out.into_iter()
        .map(|mut tier| {
            tier.sort_by_key(|(t0, n, _)| (*t0, *n));
            tier.into_iter().map(|(_, _, secs)| secs).collect()
        })
        .collect()
}

/// The tier index of a bench instance, from its id (see [`fleet`]).
fn tier_index(id: &str) -> usize {
    usize::from_str_radix(id.trim_start_matches("i-"), 16).expect("a bench id") % 3
}

struct Outcome {
    virtual_secs: f64,
    calls: BTreeMap<String, u64>,
    status: RunStatus,
}

fn run(
    region: &Region,
    store: &MemoryStore,
    w: &Workload,
    action: Action,
    profile: Option<&str>,
) -> Outcome {
    let ports = Ports {
        compute: region,
        lb: region,
        probe: region,
        notifier: region,
        meter: region,
        store,
        clock: region,
        lease_clock: region,
    };
    let settings = Settings {
        owner: "bench".into(),
        ..Settings::default()
    };
    let mut exec = Executor::new(ports, settings, w.clone());
    let req = RunRequest {
        action,
        profile: profile.map(str::to_string),
        scale_in: ScaleIn::ReportOnly,
    };
    let id = format!("bench-{action}-{}", profile.unwrap_or("none"));
    let mut run = match pollster::block_on(exec.begin(&req, &id)).expect("begins") {
        Begin::Started(r) => *r,
        other => panic!("unexpected {other:?}"),
    };
    loop {
        match pollster::block_on(exec.tick(&mut run)).expect("ticks") {
            Tick::Done => break,
            Tick::Wait(d) => region.advance(d.max(Duration::from_millis(1))),
        }
    }
    Outcome {
        virtual_secs: run.elapsed_secs(run.started),
        calls: run.calls.clone(),
        status: run.status,
    }
}

/// How the runs of `concurrent` are driven.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Driver {
    /// Each run keeps its executor; all pace with the account's one set of buckets.
    Kept,
    /// A new executor each tick, resuming the run from the store (`App::advance`
    /// under `serve`), pacing with the account's one set of buckets.
    PerTick,
    /// As the serverless state machine drives its run step: a new executor each
    /// tick with buckets of its own (a container shares no memory with another),
    /// booking its calls on the account's buckets through the store; a step
    /// sleeps through waits up to [`HOLD`] within [`BUDGET`], longer ones go back to
    /// the state machine.
    Step,
}

impl Driver {
    fn name(self) -> &'static str {
        match self {
            Driver::Kept => "kept",
            Driver::PerTick => "per-tick",
            Driver::Step => "step",
        }
    }
}

/// The serverless run step's hold and budget (`ec2_scheduler_lambda::HOLD` and
/// `BUDGET`; that crate is not a dependency of this one) and its Lambda timeout.
const HOLD: Duration = Duration::from_secs(10);
const BUDGET: Duration = Duration::from_secs(60);
const STEP_TIMEOUT_S: f64 = 120.0;

/// `w` workloads of `n` instances each (the bench workload's tiers, its own tag
/// value), in one simulated region with AWS's published buckets, stopped and then
/// started at one instant each, all runs driven together as `serve` drives them: a
/// tick of each run that is due, the clock moved on to the soonest wake-up; with
/// `driver`, each run keeping its executor, a new executor each tick sharing the
/// account's buckets in memory, or run steps as the state machine drives them,
/// sharing through the store. Reports, per action, when the last run ended against
/// the account-wide lower bound, the spread of the runs' ends, throttled calls and
/// failed runs, and for run steps the longest step and the steps over the Lambda
/// timeout.
fn concurrent(w: usize, n: usize, driver: Driver) {
    let per_tick = driver != Driver::Kept;
    let cfg = SimConfig {
        jitter: 0.0,
        ..SimConfig::default()
    };
    let limits = cfg.limits;
    let template = workload();
    let workloads: Vec<Workload> = (0..w)
        .map(|k| {
            let mut x = template.clone();
            x.name = ec2_scheduler_core::model::Name::new(format!("bench{k}")).expect("a name");
            x.workload_tag.value =
                ec2_scheduler_core::model::Name::new(format!("bench{k}")).expect("a name");
            x
        })
        .collect();
    let instances: Vec<Instance> = fleet(w * n, InstanceState::Running)
        .into_iter()
        .enumerate()
        .map(|(g, mut i)| {
            i.tags.insert("env".into(), format!("bench{}", g / n));
            i
        })
        .collect();
    let region = Region::new(instances, cfg);
    let store = MemoryStore::new();
    let buckets = ec2_scheduler_engine::Buckets::new(limits);
    let ports = Ports {
        compute: &region,
        lb: &region,
        probe: &region,
        notifier: &region,
        meter: &region,
        store: &store,
        clock: &region,
        lease_clock: &region,
    };
    let executor = |k: usize| {
        let settings = Settings {
            owner: "bench".into(),
            limits,
            ..Settings::default()
        };
        let exec = Executor::new(ports, settings, workloads[k].clone());
        match driver {
            Driver::Step => exec.pace_through_store("bench"),
            Driver::Kept | Driver::PerTick => exec.share(&buckets),
        }
    };
    let wall = Instant::now();
    for action in [Action::Stop, Action::Start] {
        let before = region.log().len();
        let t0 = region.now();
        let req = RunRequest {
            action,
            profile: None,
            scale_in: ScaleIn::ReportOnly,
        };
        // (workload, executor kept between ticks, run, due)
        let mut active = Vec::new();
        // When each workload's run step in progress began (run steps only).
        let mut step_began: Vec<chrono::DateTime<chrono::Utc>> = vec![t0; w];
        let mut steps = 0usize;
        let mut longest_step = 0.0f64;
        let mut over_timeout = 0usize;
        for k in 0..w {
            let mut exec = executor(k);
            let id = format!("bench{k}-{action}");
            let run = match pollster::block_on(exec.begin(&req, &id)).expect("begins") {
                Begin::Started(r) => *r,
                other => panic!("unexpected {other:?}"),
            };
            active.push((k, (!per_tick).then_some(exec), run, t0));
        }
        let mut ends: Vec<f64> = Vec::new();
        let mut failed = 0;
        while !active.is_empty() {
            let now = region.now();
            let mut next = Vec::new();
            for (k, kept, mut run, due) in active {
                if due > now {
                    next.push((k, kept, run, due));
                    continue;
                }
                let mut exec = match kept {
                    Some(e) => e,
                    None => {
                        let mut e = executor(k);
                        run = pollster::block_on(e.resume(&run.id)).expect("resumes");
                        e
                    }
                };
                let tick = pollster::block_on(exec.tick(&mut run)).expect("ticks");
                // A run step ends when the run does, or on a wait it does not sleep
                // through; the state machine then waits whole seconds, at least 1.
                let tick = match (driver, tick) {
                    (Driver::Step, tick) => {
                        let held = (now - step_began[k]).to_std().unwrap_or_default();
                        let (ends, tick) = match tick {
                            Tick::Done => (true, tick),
                            Tick::Wait(d) if d > HOLD || held + d > BUDGET => (
                                true,
                                Tick::Wait(Duration::from_secs_f64(
                                    d.as_secs_f64().ceil().max(1.0),
                                )),
                            ),
                            Tick::Wait(_) => (false, tick),
                        };
                        if ends {
                            let took = held.as_secs_f64();
                            steps += 1;
                            longest_step = longest_step.max(took);
                            over_timeout += usize::from(took > STEP_TIMEOUT_S);
                            if let Tick::Wait(d) = tick {
                                step_began[k] =
                                    now + chrono::Duration::from_std(d).unwrap_or_default();
                            }
                        }
                        tick
                    }
                    _ => tick,
                };
                match tick {
                    Tick::Done => {
                        let end = run.finished.unwrap_or_else(|| region.now());
                        ends.push((end - t0).num_milliseconds() as f64 / 1000.0);
                        failed += usize::from(run.status != RunStatus::Succeeded);
                    }
                    Tick::Wait(d) => {
                        if per_tick {
                            pollster::block_on(exec.checkpoint(&mut run)).expect("saves");
                        }
                        let due = now + chrono::Duration::from_std(d).unwrap_or_default();
                        next.push((k, (!per_tick).then_some(exec), run, due));
                    }
                }
            }
            active = next;
            if let Some(soonest) = active.iter().map(|a| a.3).min() {
                let gap = (soonest - region.now()).to_std().unwrap_or_default();
                region.advance(gap.max(Duration::from_millis(1)));
            }
        }
        let log = region.log();
        let log = &log[before..];
        let order: [&str; 3] = match action {
            Action::Stop => ["web", "app", "db"],
            Action::Start => ["db", "app", "web"],
        };
        let bucket = match action {
            Action::Stop => limits.stop_instances,
            Action::Start => limits.start_instances,
        };
        // No run ends before it would alone; and the account's resource bucket lets
        // the last of all the instances go out no sooner than its tokens allow, after
        // which its transition takes at least the shortest one seen.
        let alone = (0..w)
            .map(|k| {
                let tiers = transitions_of(log, action, &order, |id| {
                    usize::from_str_radix(id.trim_start_matches("i-"), 16).expect("a bench id") / n
                        == k
                });
                lower_bound(&tiers, bucket, DELAY as f64)
            })
            .fold(0.0, f64::max);
        let shortest = transitions(log, action, &order)
            .iter()
            .flatten()
            .cloned()
            .fold(f64::MAX, f64::min);
        let tokens = ((w * n) as f64 - bucket.capacity).max(0.0) / bucket.refill_per_sec;
        let bound = alone.max(tokens + shortest);
        ends.sort_by(f64::total_cmp);
        let last = ends.last().copied().unwrap_or(0.0);
        let throttled = log
            .iter()
            .filter(|e| {
                matches!(e, LogEntry::Call { error: Some(code), .. } if code == "RequestLimitExceeded")
            })
            .count();
        println!(
            "concurrent w={w} n={n} driver={} action={action} last_s={last:.1} lower_bound_s={bound:.1} ratio={:.4} first_s={:.1} median_s={:.1} throttled={throttled} failed_runs={failed}{}",
            driver.name(),
            last / bound,
            ends.first().copied().unwrap_or(0.0),
            ends.get(ends.len() / 2).copied().unwrap_or(0.0),
            if driver == Driver::Step {
                format!(
                    " steps={steps} longest_step_s={longest_step:.1} steps_over_timeout={over_timeout}"
                )
            } else {
                String::new()
            },
        );
        region.advance(Duration::from_secs(900));
    }
    println!(
        "concurrent w={w} n={n} wall_s={:.2} peak_mib={:.0}",
        wall.elapsed().as_secs_f64(),
        peak_mib()
    );
}

fn converge(n: usize, scenario: &Scenario) {
    let cfg = scenario.config();
    let w = workload();
    let region = Region::new(fleet(n, InstanceState::Running), cfg);
    let store = MemoryStore::new();
    let wall = Instant::now();
    let cpu0 = cpu_time();
    let real = scenario.left();
    let resize_delay = w.resize_delay_secs as f64;
    let delay = DELAY as f64;
    for (action, profile) in [
        (Action::Stop, None),
        (Action::Start, None),
        (Action::Stop, None),
        (Action::Start, Some("big")),
    ] {
        let before = region.log().len();
        let o = run(&region, &store, &w, action, profile);
        let log = region.log();
        let log = &log[before..];
        let order: [&str; 3] = match action {
            Action::Stop => ["web", "app", "db"],
            Action::Start => ["db", "app", "web"],
        };
        let tiers = transitions(log, action, &order);
        let bound = match (action, profile) {
            (Action::Stop, _) => lower_bound(&tiers, real.stop_instances, delay),
            (Action::Start, None) => lower_bound(&tiers, real.start_instances, delay),
            (Action::Start, Some(_)) => lower_bound_resized(
                &tiers,
                real.mutating,
                real.start_instances,
                resize_delay,
                delay,
            ),
        };
        let errors = |throttle: bool| {
            log.iter()
                .filter(|e| {
                    matches!(e, LogEntry::Call { error: Some(code), .. }
                        if (code == "RequestLimitExceeded") == throttle)
                })
                .count()
        };
        let calls: Vec<String> = o
            .calls
            .iter()
            .map(|(a, c)| format!("{}={c}", a.trim_start_matches("ec2:")))
            .collect();
        let action = match profile {
            Some(p) => format!("{action}+{p}"),
            None => action.to_string(),
        };
        println!(
            "converge scenario={} n={n} action={action} status={} virtual_s={:.1} lower_bound_s={bound:.1} ratio={:.4} calls={} throttled={} failed_calls={} [{}]",
            scenario.name,
            o.status.as_str(),
            o.virtual_secs,
            o.virtual_secs / bound,
            o.calls.values().sum::<u64>(),
            errors(true),
            errors(false),
            calls.join(" ")
        );
        // Let the last tier settle before the next action (the slowest transitions
        // of the heavy tail take 10 minutes).
        region.advance(Duration::from_secs(900));
    }
    println!(
        "converge scenario={} n={n} cpu_s={:.2} wall_s={:.2} peak_mib={:.0}",
        scenario.name,
        (cpu_time() - cpu0).as_secs_f64(),
        wall.elapsed().as_secs_f64(),
        peak_mib()
    );
}

fn plan_bench(n: usize) {
    let w = workload();
    let mut observed = fleet(n, InstanceState::Running);
    // Some variety: a quarter stopped, a few exempt.
    for (i, inst) in observed.iter_mut().enumerate() {
        if i % 4 == 0 {
            inst.state = InstanceState::Stopped;
        }
        if i % 97 == 0 {
            inst.tags
                .insert("ec2-scheduler:exempt".into(), "true".into());
        }
    }
    let base = peak_mib();
    for action in [Action::Stop, Action::Start] {
        let mut best = Duration::MAX;
        let mut steps = 0;
        for _ in 0..5 {
            let t = Instant::now();
            let p = plan(&PlanRequest {
                workload: &w,
                observed: &observed,
                action,
                profile: None,
                scale_in: ScaleIn::ReportOnly,
                exemptions: &[],
                now: ec2_scheduler_sim::epoch(),
            })
            .expect("plans");
            best = best.min(t.elapsed());
            steps = p.touched().count();
        }
        println!(
            "plan n={n} action={action} best_of_5_ms={:.1} instance_entries_in_steps={steps}",
            best.as_secs_f64() * 1000.0
        );
    }
    println!(
        "plan n={n} peak_mib={:.0} (fleet alone: {base:.0})",
        peak_mib()
    );
}

/// Peak resident memory of another process in MiB, while it runs.
fn peak_mib_of(pid: u32) -> Option<f64> {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()?
        .lines()
        .find(|l| l.starts_with("VmHWM:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|k| k.parse::<f64>().ok())
        .map(|kb| kb / 1024.0)
}

/// `cli N`: the release binary's `run --cloud sim --speed max` on a fleet file of N
/// instances, a stop and then a start, as a user runs it (fleet file read and
/// written, SQLite store, checkpoints); wall time and peak memory of each.
fn cli_bench(n: usize) {
    let dir = std::env::temp_dir().join(format!("ec2-scheduler-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temporary directory");
    let binary = std::env::current_exe()
        .expect("own path")
        .with_file_name("ec2-scheduler");
    if !binary.exists() {
        eprintln!(
            "cli: {} is missing: build it first with `cargo build --release -p ec2-scheduler`",
            binary.display()
        );
        std::process::exit(1);
    }
    let w = ec2_scheduler_config::export(&[workload()], ec2_scheduler_config::Format::Yaml);
    std::fs::write(dir.join("bench.yaml"), w).expect("workload file");
    let fleet = serde_json::json!({ "instances": fleet(n, InstanceState::Running) });
    std::fs::write(dir.join("fleet.json"), fleet.to_string()).expect("fleet file");
    for action in ["stop", "start"] {
        let started = Instant::now();
        let mut child = std::process::Command::new(&binary)
            .args([
                "run", "-w", "bench", "-a", action, "--cloud", "sim", "--speed", "max",
            ])
            .arg("-c")
            .arg(dir.join("bench.yaml"))
            .arg("--fleet")
            .arg(dir.join("fleet.json"))
            .arg("--store")
            .arg(format!("sqlite:{}", dir.join("state.db").display()))
            .args(["-o", "json"])
            .stdout(std::process::Stdio::piped())
            .spawn()
            .expect("runs");
        let mut peak = 0.0_f64;
        let status = loop {
            if let Some(m) = peak_mib_of(child.id()) {
                peak = peak.max(m);
            }
            if let Some(status) = child.try_wait().expect("waits") {
                break status;
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        let wall = started.elapsed().as_secs_f64();
        let mut out = String::new();
        std::io::Read::read_to_string(&mut child.stdout.take().expect("piped"), &mut out)
            .expect("reads");
        assert!(status.success(), "{action} failed: {out}");
        let summary: serde_json::Value = serde_json::from_str(&out).expect("a JSON summary");
        println!(
            "cli {n} {action}: wall {wall:.2} s, peak memory {peak:.0} MiB, virtual {} s, status {}",
            summary["seconds"], summary["status"]
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// One HTTP/1.1 request over loopback; (status, body).
fn http(addr: &str, method: &str, path: &str, token: &str, body: &str) -> (u16, serde_json::Value) {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(addr).expect("connects");
    let req = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {token}\r\nContent-Type: application/json\r\nConnection: close\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    s.write_all(req.as_bytes()).expect("writes");
    let mut raw = String::new();
    s.read_to_string(&mut raw).expect("reads");
    let (head, rest) = raw.split_once("\r\n\r\n").expect("a response");
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let text = if head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        let mut out = String::new();
        let mut s = rest;
        while let Some((size, more)) = s.split_once("\r\n") {
            let n = usize::from_str_radix(size.trim(), 16).unwrap_or(0);
            if n == 0 {
                break;
            }
            out.push_str(&more[..n]);
            s = &more[n + 2..];
        }
        out
    } else {
        rest.to_string()
    };
    (
        status,
        serde_json::from_str(&text).unwrap_or(serde_json::Value::Null),
    )
}

/// Begins a run of `bench` and waits for its end; its duration in virtual seconds.
fn timed_run(addr: &str, token: &str, action: &str, during: impl FnOnce()) -> f64 {
    let (status, v) = http(
        addr,
        "POST",
        "/v1/workloads/bench/runs",
        token,
        &format!("{{\"action\":\"{action}\"}}"),
    );
    assert_eq!(status, 202, "{v}");
    let id = v["run_id"].as_str().expect("a run id").to_string();
    during();
    loop {
        let (_, run) = http(addr, "GET", &format!("/v1/runs/{id}"), token, "");
        if run["status"] != "running" {
            assert_eq!(run["status"], "succeeded", "{run}");
            let t = |k: &str| {
                chrono::DateTime::parse_from_rfc3339(run[k].as_str().expect("a time"))
                    .expect("RFC 3339")
            };
            return (t("finished") - t("started")).num_milliseconds() as f64 / 1000.0;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// The release `ec2-scheduler serve --listen` on a SQLite store and a simulated fleet:
/// `bench` (3,000 instances, paced) and N workloads of six instances each (with
/// office hours in Berlin when `schedules`), and an operator token.
struct BenchServer {
    dir: std::path::PathBuf,
    oha: String,
    serve: std::process::Child,
    addr: String,
    token: String,
}

impl Drop for BenchServer {
    fn drop(&mut self) {
        let _ = self.serve.kill();
        let _ = self.serve.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn bench_server(n: usize, what: &str, schedules: bool) -> BenchServer {
    let dir =
        std::env::temp_dir().join(format!("ec2-scheduler-bench-{what}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temporary directory");
    let binary = std::env::current_exe()
        .expect("own path")
        .with_file_name("ec2-scheduler");
    let oha = std::env::var("OHA").unwrap_or_else(|_| "oha".into());
    if !binary.exists()
        || std::process::Command::new(&oha)
            .arg("--version")
            .output()
            .is_err()
    {
        eprintln!(
            "{what}: needs {} (cargo build --release -p ec2-scheduler) and oha (cargo install oha --locked)",
            binary.display()
        );
        std::process::exit(1);
    }
    let mut yaml = ec2_scheduler_config::export(&[workload()], ec2_scheduler_config::Format::Yaml);
    let mut instances = fleet(3000, InstanceState::Running);
    let schedule = if schedules {
        "  schedules:\n  - {name: office, timezone: Europe/Berlin, skip: [\"2026-12-24\"], periods: [{name: office-hours, weekdays: [mon-fri], start: \"08:00\", stop: \"18:00\"}]}\n"
    } else {
        ""
    };
    for w in 0..n {
        let name = format!("w{w:04}");
        yaml.push_str(&format!(
            "- name: {name}\n  region: sim\n  workload_tag: {{key: env, value: {name}}}\n  tier_tag_key: tier\n{schedule}  tiers:\n  - {{name: db, start: {{order: 0}}, stop: {{order: 1}}}}\n  - {{name: web, start: {{order: 1}}, stop: {{order: 0}}}}\n"
        ));
        for i in 0..6 {
            let mut inst = instances[0].clone();
            inst.id = format!("i-w{w:04}{i}");
            inst.tags = [
                ("env".to_string(), name.clone()),
                ("tier".to_string(), ["db", "web"][i % 2].to_string()),
            ]
            .into();
            instances.push(inst);
        }
    }
    std::fs::write(dir.join("w.yaml"), yaml).expect("workload file");
    std::fs::write(
        dir.join("fleet.json"),
        serde_json::json!({ "instances": instances }).to_string(),
    )
    .expect("fleet file");
    let store = format!("sqlite:{}", dir.join("state.db").display());
    let cli = |args: &[&str]| {
        let o = std::process::Command::new(&binary)
            .args(args)
            .args(["--store", &store])
            .current_dir(&dir)
            .output()
            .expect("runs");
        assert!(
            o.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        o.stdout
    };
    cli(&["load", "w.yaml"]);
    let token: serde_json::Value = serde_json::from_slice(&cli(&[
        "token", "create", "--name", "bench", "--role", "operator", "-o", "json",
    ]))
    .expect("a token");
    let token = token["token"].as_str().expect("a token").to_string();
    let mut serve = std::process::Command::new(&binary)
        .args([
            "serve",
            "--cloud",
            "sim",
            "--fleet",
            "fleet.json",
            "--speed",
            "10",
            "--listen",
            "127.0.0.1:0",
            "--log-level",
            "error",
            "--store",
            &store,
        ])
        .current_dir(&dir)
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("serve starts");
    let mut lines =
        std::io::BufRead::lines(std::io::BufReader::new(serve.stderr.take().expect("piped")));
    let addr = loop {
        let line = lines
            .next()
            .expect("serve printed its address")
            .expect("text");
        if let Some(a) = line.strip_prefix("API listening on http://") {
            break a.to_string();
        }
    };
    std::thread::spawn(move || for _ in lines {});
    BenchServer {
        dir,
        oha,
        serve,
        addr,
        token,
    }
}

fn api_bench(n: usize) {
    let server = bench_server(n, "api", false);
    let (oha, addr, token) = (&server.oha, &server.addr, &server.token);
    let load = |path: &str, seconds: u32| -> serde_json::Value {
        run_oha(
            oha,
            &["-c", "64", "-z", &format!("{seconds}s")],
            &format!("Authorization: Bearer {token}"),
            &format!("http://{addr}{path}"),
        )
    };
    let report = |what: &str, v: &serde_json::Value| {
        let ms = |k: &str| v["latencyPercentiles"][k].as_f64().unwrap_or(f64::NAN) * 1000.0;
        let codes = &v["statusCodeDistribution"];
        println!(
            "api {n} {what}: {:.0} requests/s, p50 {:.1} ms, p99 {:.1} ms, success {:.3}, statuses {codes}",
            v["summary"]["requestsPerSec"].as_f64().unwrap_or(f64::NAN),
            ms("p50"),
            ms("p99"),
            v["summary"]["successRate"].as_f64().unwrap_or(f64::NAN),
        );
    };
    // A first stop and start, untimed: the fleet file's instances are not yet
    // registered with their load balancers, so a first stop skips the draining every
    // later stop waits for. Both timed stops then begin from the same state.
    timed_run(addr, token, "stop", || {});
    timed_run(addr, token, "start", || {});
    let idle = timed_run(addr, token, "stop", || {});
    timed_run(addr, token, "start", || {});
    let mut status = serde_json::Value::Null;
    let mut list = serde_json::Value::Null;
    let loaded = timed_run(addr, token, "stop", || {
        status = load("/v1/workloads/w0042/status", 15);
        list = load("/v1/workloads", 15);
    });
    report("GET /v1/workloads/{w}/status", &status);
    report("GET /v1/workloads", &list);
    println!(
        "api {n}: a stop of 3,000 instances took {idle:.1} virtual s idle, {loaded:.1} under load"
    );
}

/// oha's JSON report of `load` (connections, count or duration, rate) on `url`, with
/// one request `header`.
fn run_oha(oha: &str, load: &[&str], header: &str, url: &str) -> serde_json::Value {
    let o = std::process::Command::new(oha)
        .args(load)
        .args(["--no-tui", "--output-format", "json", "-H", header, url])
        .output()
        .expect("oha runs");
    assert!(
        o.status.success(),
        "oha: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    serde_json::from_slice(&o.stdout).expect("oha's JSON")
}

/// Signs in to the dashboard with `token`; the session's `Cookie` header value.
fn sign_in(addr: &str, token: &str) -> String {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(addr).expect("connects");
    let body = format!("token={token}");
    let req = format!(
        "POST /signin HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/x-www-form-urlencoded\r\nConnection: close\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    s.write_all(req.as_bytes()).expect("writes");
    let mut raw = String::new();
    s.read_to_string(&mut raw).expect("reads");
    raw.lines()
        .find_map(|l| {
            l.to_ascii_lowercase()
                .starts_with("set-cookie:")
                .then(|| l["set-cookie:".len()..].trim())
        })
        .and_then(|c| c.split(';').next())
        .expect("a session cookie")
        .to_string()
}

/// Every dashboard page with N workloads: sequential requests (one connection, so
/// each latency is the page's server time plus loopback), p50, p99 and the slowest.
fn dashboard_bench(n: usize) {
    let server = bench_server(n, "dashboard", true);
    let (oha, addr, token) = (&server.oha, &server.addr, &server.token);
    let cookie = sign_in(addr, token);
    let (status, v) = http(
        addr,
        "POST",
        "/v1/workloads/w0042/runs",
        token,
        r#"{"action":"stop"}"#,
    );
    assert_eq!(status, 202, "{v}");
    let run = v["run_id"].as_str().expect("a run id").to_string();
    let last = n.div_ceil(20);
    let pages = [
        "/".to_string(),
        "/?q=w004".to_string(),
        "/workload/w0042".to_string(),
        "/workload/w0042/plan?action=start".to_string(),
        format!("/run/{run}"),
        format!("/run/{run}/live"),
        "/schedule".to_string(),
        format!("/schedule?page={last}&tz=America/New_York"),
        "/savings".to_string(),
        format!("/savings?page={last}"),
    ];
    // Back to back (the workload list and the observations are at most a second
    // old, so most requests find them made), then one request every 2 s (each
    // reads the workloads and observes the instances afresh).
    let runs = pages
        .iter()
        .map(|p| (p.as_str(), false))
        .chain(["/", "/schedule", "/savings"].map(|p| (p, true)));
    for (path, cold) in runs {
        let pace: &[&str] = if cold {
            &["-n", "8", "-q", "0.5"]
        } else {
            &["-n", "40"]
        };
        let load: Vec<&str> = ["-c", "1"].iter().chain(pace).copied().collect();
        let v = run_oha(
            oha,
            &load,
            &format!("Cookie: {cookie}"),
            &format!("http://{addr}{path}"),
        );
        let ms = |k: &str| v["latencyPercentiles"][k].as_f64().unwrap_or(f64::NAN) * 1000.0;
        let codes = &v["statusCodeDistribution"];
        println!(
            "dashboard {n} GET {path}{}: p50 {:.1} ms, p99 {:.1} ms, slowest {:.1} ms, {:.0} KiB, statuses {codes}",
            if cold { " (every 2 s)" } else { "" },
            ms("p50"),
            ms("p99"),
            v["summary"]["slowest"].as_f64().unwrap_or(f64::NAN) * 1000.0,
            v["summary"]["sizePerRequest"].as_f64().unwrap_or(f64::NAN) / 1024.0,
        );
    }
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.as_slice() {
        [cmd, n] if cmd == "api" => api_bench(n.parse().expect("a number")),
        [cmd, n] if cmd == "dashboard" => dashboard_bench(n.parse().expect("a number")),
        [cmd, n] if cmd == "converge" => {
            for scenario in &SCENARIOS {
                converge(n.parse().expect("a number"), scenario);
            }
        }
        [cmd, n, name] if cmd == "converge" => {
            let Some(scenario) = SCENARIOS.iter().find(|s| s.name == name) else {
                eprintln!(
                    "no scenario {name}; one of: {}",
                    SCENARIOS.map(|s| s.name).join(", ")
                );
                std::process::exit(2);
            };
            converge(n.parse().expect("a number"), scenario);
        }
        [cmd, w, n, only @ ..] if cmd == "concurrent" && only.len() <= 1 => {
            let drivers = match only.first().map(String::as_str) {
                None => vec![Driver::Kept, Driver::PerTick, Driver::Step],
                Some("kept") => vec![Driver::Kept],
                Some("per-tick") => vec![Driver::PerTick],
                Some("step") => vec![Driver::Step],
                Some(other) => {
                    eprintln!("unknown driver {other}: kept, per-tick or step");
                    std::process::exit(2);
                }
            };
            for driver in drivers {
                concurrent(
                    w.parse().expect("a number"),
                    n.parse().expect("a number"),
                    driver,
                );
            }
        }
        [cmd, n] if cmd == "plan" => plan_bench(n.parse().expect("a number")),
        [cmd, n] if cmd == "cli" => cli_bench(n.parse().expect("a number")),
        [] => {
            let me = std::env::current_exe().expect("own path");
            for scenario in [
                ["plan", "100000"],
                ["converge", "1000"],
                ["converge", "10000"],
                ["converge", "50000"],
                ["cli", "50000"],
            ] {
                let status = std::process::Command::new(&me)
                    .args(scenario)
                    .status()
                    .expect("runs");
                assert!(status.success(), "{scenario:?} failed");
            }
        }
        _ => {
            eprintln!(
                "usage: ec2-scheduler-bench [converge N [SCENARIO] | concurrent W N [kept|per-tick|step] | plan N | cli N | api N | dashboard N]"
            );
            std::process::exit(2);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn uniform(sizes: &[usize], secs: f64) -> Vec<Vec<f64>> {
        sizes.iter().map(|n| vec![secs; *n]).collect()
    }

    #[test]
    fn the_lower_bound_matches_hand_computed_values() {
        // 1,000 instances, three tiers of 333/333/334, all within the stop bucket:
        // 3 x 30 s + 2 x 5 s.
        let b = lower_bound(
            &uniform(&[333, 333, 334], 30.0),
            Limits::AWS.stop_instances,
            5.0,
        );
        assert!((b - 100.0).abs() < 1e-9, "{b}");
        // 10,000 starts: (10,000 - 1,000) / 2 s of tokens, plus 3 x 15 s transitions,
        // plus 2 x 5 s delays, minus tokens refilled during the first two tiers'
        // transitions and delays (2 x (15 + 5) s x 2/s = 80 tokens = 40 s).
        let b = lower_bound(
            &uniform(&[3334, 3333, 3333], 15.0),
            Limits::AWS.start_instances,
            5.0,
        );
        assert!((b - (4500.0 + 45.0 + 10.0 - 40.0)).abs() < 1e-6, "{b}");
    }

    #[test]
    fn the_bound_gives_the_transitions_the_ideal_slots_in_the_order_they_began() {
        // A bucket of 2 tokens refilling 1 a second: slots at 0, 0, 1 and 2 s. With
        // transitions of 1, 1, 1 and 10 s, the last (slot 2 s) is done at 12 s; the
        // same times in the other order at 10 s.
        let b = BucketSpec {
            capacity: 2.0,
            refill_per_sec: 1.0,
        };
        assert!((lower_bound(&[vec![1.0, 1.0, 1.0, 10.0]], b, 5.0) - 12.0).abs() < 1e-9);
        assert!((lower_bound(&[vec![10.0, 1.0, 1.0, 1.0]], b, 5.0) - 10.0).abs() < 1e-9);
        // Four of 10 s: the last slot, at 2 s, ends at 12 s.
        assert!((lower_bound(&[vec![10.0; 4]], b, 5.0) - 12.0).abs() < 1e-9);
        // Two tiers: the second begins after the first and its delay (10 + 5 s), with
        // 2 tokens again (refilled from the last issue at 1 s): one of 3 s ends at 18 s.
        let two = lower_bound(&[vec![10.0, 1.0, 1.0], vec![3.0]], b, 5.0);
        assert!((two - 18.0).abs() < 1e-9, "{two}");
    }

    #[test]
    fn the_bench_reads_transition_times_from_the_simulator_s_log() {
        let t0 = ec2_scheduler_sim::epoch();
        let at = |s: i64| t0 + chrono::TimeDelta::seconds(s);
        let state = |s: i64, id: &str, to: InstanceState| LogEntry::State {
            at: at(s),
            instance: id.into(),
            from: InstanceState::Stopped,
            to,
        };
        // i-0 is db, i-1 app, i-2 web (see `fleet`).
        let log = [
            state(0, "i-00000000", InstanceState::Pending),
            state(2, "i-00000001", InstanceState::Pending),
            state(17, "i-00000000", InstanceState::Running),
            state(92, "i-00000001", InstanceState::Running),
        ];
        let got = transitions(&log, Action::Start, &["db", "app", "web"]);
        assert_eq!(got, vec![vec![17.0], vec![90.0], vec![]]);
    }

    #[test]
    fn the_resized_bound_matches_hand_computed_values() {
        let (m, s) = (Limits::AWS.mutating, Limits::AWS.start_instances);
        // 100 instances: 50 resized at once, the 100th at (100 - 50) / 5 = 10 s; each
        // starts 4 s after its resize (the start bucket has tokens), the last at 14 s,
        // running at 29 s.
        let b = lower_bound_resized(&uniform(&[100], 15.0), m, s, 4.0, 5.0);
        assert!((b - 29.0).abs() < 1e-9, "{b}");
        // A second tier of 100 may start at 29 + 5 = 34 s; its resizes, overlapped
        // with the first tier, are done by (200 - 50) / 5 = 30 s + 4 s: running at 49 s.
        let b = lower_bound_resized(&uniform(&[100, 100], 15.0), m, s, 4.0, 5.0);
        assert!((b - 49.0).abs() < 1e-9, "{b}");
        // Without resizes to wait for, it is the plain bound.
        let free = BucketSpec {
            capacity: 1e9,
            refill_per_sec: 1.0,
        };
        let tiers = uniform(&[3334, 3333, 3333], 15.0);
        let b = lower_bound_resized(&tiers, free, s, 0.0, 5.0);
        let plain = lower_bound(&tiers, s, 5.0);
        assert!((b - plain).abs() < 1e-6, "{b} {plain}");
    }

    #[test]
    fn a_shared_account_leaves_the_rest_of_each_refill() {
        let shared = SCENARIOS.iter().find(|s| s.name == "shared").unwrap();
        let left = shared.left().start_instances;
        assert_eq!(left.capacity, 1000.0);
        assert!((left.refill_per_sec - 1.4).abs() < 1e-9);
        let fast = SCENARIOS.iter().find(|s| s.name == "limits-3x").unwrap();
        assert_eq!(fast.limits().mutating.refill_per_sec, 15.0);
    }
}
