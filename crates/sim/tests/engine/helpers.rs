//! Test harness: a simulated region, an in-memory store, and the executor driven in
//! virtual time.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::time::Duration;

use ec2_scheduler_config::{Source, load};
use ec2_scheduler_core::plan::ScaleIn;
use ec2_scheduler_core::{Action, Instance, InstanceState, Workload};
use ec2_scheduler_engine::memory::MemoryStore;
use ec2_scheduler_engine::ports::LbTarget;
use ec2_scheduler_engine::{Begin, EngineError, Executor, Ports, Run, RunRequest, Settings, Tick};
use ec2_scheduler_sim::{LogEntry, Region, SimConfig};

pub const SEED_EXAMPLE: &str = include_str!("../../../../examples/seed/example.json");

pub fn workload_from(text: &str) -> Workload {
    let l = load(&[Source { name: "w", text }]).unwrap();
    l.workloads.into_iter().next().unwrap()
}

/// The seed example with an SNS topic and waits, ready for the simulator.
pub fn seed_workload() -> Workload {
    workload_from(SEED_EXAMPLE)
}

pub fn instance(
    id: &str,
    tags: &[(&str, &str)],
    state: InstanceState,
    ty: &str,
    az: &str,
    vpc: &str,
) -> Instance {
    Instance {
        id: id.to_string(),
        state,
        instance_type: ty.to_string(),
        az: az.to_string(),
        vpc_id: Some(vpc.to_string()),
        tags: tags
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        state_reason: None,
        load_balancers: None,
    }
}

/// Members of the seed example: `per_tier` instances in each of Role_Web, Role_App and
/// Role_DB over three zones, plus decoys (another workload value, no tier tag,
/// another VPC).
pub fn seed_fleet(per_tier: usize, state: InstanceState) -> Vec<Instance> {
    let mut out = Vec::new();
    let azs = ["us-west-2a", "us-west-2b", "us-west-2c"];
    for (tier, ty) in [
        ("Role_Web", "t2.nano"),
        ("Role_App", "t2.nano"),
        ("Role_DB", "t2.large"),
    ] {
        for i in 0..per_tier {
            let id = format!("i-{}{i:04}", tier[5..].to_lowercase());
            out.push(instance(
                &id,
                &[("Environment", "ENV001"), ("Role", tier)],
                state,
                ty,
                azs[i % 3],
                "vpc-xyz",
            ));
        }
    }
    out.push(instance(
        "i-decoy-other-env",
        &[("Environment", "ENV002"), ("Role", "Role_Web")],
        state,
        "t2.nano",
        azs[0],
        "vpc-xyz",
    ));
    out.push(instance(
        "i-decoy-no-tier",
        &[("Environment", "ENV001")],
        state,
        "t2.nano",
        azs[1],
        "vpc-xyz",
    ));
    out.push(instance(
        "i-decoy-other-vpc",
        &[("Environment", "ENV001"), ("Role", "Role_App")],
        state,
        "t2.nano",
        azs[2],
        "vpc-other",
    ));
    out
}

pub fn web_elb() -> LbTarget {
    LbTarget::Classic {
        name: "web-elb".into(),
    }
}

pub struct Harness {
    pub region: Region,
    pub store: MemoryStore,
    pub workload: Workload,
    pub settings: Settings,
}

impl Harness {
    pub fn new(workload: Workload, fleet: Vec<Instance>) -> Self {
        Self::with_config(workload, fleet, SimConfig::default())
    }

    pub fn with_config(workload: Workload, fleet: Vec<Instance>, cfg: SimConfig) -> Self {
        Harness {
            region: Region::new(fleet, cfg),
            store: MemoryStore::new(),
            workload,
            settings: Settings {
                owner: "test".into(),
                ..Settings::default()
            },
        }
    }

    pub fn ports(&self) -> Ports<'_> {
        Ports {
            compute: &self.region,
            lb: &self.region,
            probe: &self.region,
            notifier: &self.region,
            meter: &self.region,
            store: &self.store,
            clock: &self.region,
            lease_clock: &self.region,
        }
    }

    pub fn executor(&self) -> Executor<'_> {
        Executor::new(self.ports(), self.settings.clone(), self.workload.clone())
    }

    /// Begins a run (or resumes), returning it without driving it.
    pub fn begin(
        &self,
        exec: &mut Executor<'_>,
        action: Action,
        profile: Option<&str>,
        scale_in: ScaleIn,
        id: &str,
    ) -> Result<Option<Run>, EngineError> {
        let req = RunRequest {
            action,
            profile: profile.map(str::to_string),
            scale_in,
        };
        match pollster::block_on(exec.begin(&req, id))? {
            Begin::Started(r) | Begin::Resumed(r) => Ok(Some(*r)),
            Begin::NothingToDo(_) => Ok(None),
        }
    }

    /// Ticks until done, advancing virtual time; at most `max_ticks` ticks.
    pub fn drive(
        &self,
        exec: &mut Executor<'_>,
        run: &mut Run,
        max_ticks: usize,
    ) -> Result<bool, EngineError> {
        for _ in 0..max_ticks {
            match pollster::block_on(exec.tick(run))? {
                Tick::Done => return Ok(true),
                Tick::Wait(d) => self.region.advance(d.max(Duration::from_millis(1))),
            }
        }
        Ok(false)
    }

    /// Ticks until done as `serve` and the run step do: a new executor each tick,
    /// resuming the run from the store and saving it after the tick; at most
    /// `max_ticks` ticks. The run as last stored, or `None` if it did not end.
    pub fn drive_per_tick(&self, run: &Run, max_ticks: usize) -> Option<Run> {
        for _ in 0..max_ticks {
            let mut exec = self.executor();
            let mut resumed = pollster::block_on(exec.resume(&run.id)).unwrap();
            match pollster::block_on(exec.tick(&mut resumed)).unwrap() {
                Tick::Done => {
                    return Some(pollster::block_on(self.executor().resume(&run.id)).unwrap());
                }
                Tick::Wait(d) => {
                    pollster::block_on(exec.checkpoint(&mut resumed)).unwrap();
                    self.region.advance(d.max(Duration::from_millis(1)));
                }
            }
        }
        None
    }

    /// Runs an action to the end.
    pub fn run(&self, action: Action, profile: Option<&str>) -> Option<Run> {
        self.run_with(action, profile, ScaleIn::ReportOnly)
    }

    pub fn run_with(
        &self,
        action: Action,
        profile: Option<&str>,
        scale_in: ScaleIn,
    ) -> Option<Run> {
        let mut exec = self.executor();
        let id = format!("run-{}", self.region.log().len());
        let mut run = self
            .begin(&mut exec, action, profile, scale_in, &id)
            .unwrap()?;
        assert!(
            self.drive(&mut exec, &mut run, 100_000).unwrap(),
            "run did not finish"
        );
        Some(run)
    }

    pub fn state(&self, id: &str) -> InstanceState {
        self.region.instance(id).unwrap().state
    }

    pub fn states(&self) -> BTreeMap<String, InstanceState> {
        self.region
            .instances()
            .into_iter()
            .map(|i| (i.id, i.state))
            .collect()
    }

    /// Instance ids that some mutating call named (start, stop, modify, register,
    /// deregister), in any outcome.
    pub fn touched(&self) -> Vec<String> {
        let mut out: Vec<String> = self
            .region
            .log()
            .into_iter()
            .filter_map(|e| match e {
                LogEntry::Call {
                    action, instances, ..
                } if !action.contains("Describe") && !action.contains("GetCommand") => {
                    Some(instances)
                }
                _ => None,
            })
            .flatten()
            .collect();
        out.sort();
        out.dedup();
        out
    }

    /// Virtual times at which each instance entered `state`.
    pub fn entered(&self, state: InstanceState) -> BTreeMap<String, chrono::DateTime<chrono::Utc>> {
        self.region
            .log()
            .into_iter()
            .filter_map(|e| match e {
                LogEntry::State {
                    at, instance, to, ..
                } if to == state => Some((instance, at)),
                _ => None,
            })
            .collect()
    }

    /// Number of successful calls of an action naming `id`.
    pub fn calls_naming(&self, action: &str, id: &str) -> usize {
        self.region
            .log()
            .into_iter()
            .filter(|e| matches!(e, LogEntry::Call { action: a, instances, error: None, .. } if a == action && instances.iter().any(|i| i == id)))
            .count()
    }
}

/// Ids of members of `tier` in `fleet`.
pub fn tier_ids(fleet: &[Instance], tier: &str) -> Vec<String> {
    fleet
        .iter()
        .filter(|i| {
            i.tags.get("Role").map(String::as_str) == Some(tier)
                && i.tags.get("Environment").map(String::as_str) == Some("ENV001")
                && i.vpc_id.as_deref() == Some("vpc-xyz")
        })
        .map(|i| i.id.clone())
        .collect()
}

/// The seed example's tiers in our format, with waits, an SNS topic, a readiness gate
/// on the web tier and a fleet-subset profile; `policy` is the failure policy.
pub fn synced_workload(policy: &str) -> Workload {
    workload_from(&format!(
        r#"
version: 1
workloads:
- name: ExampleTestCase
  region: us-west-2
  workload_tag: {{key: Environment, value: ENV001}}
  tier_tag_key: Role
  vpc: vpc-xyz
  sns_topic: ops
  failure_policy: {policy}
  tiers:
  - name: Role_DB
    start: {{order: 0, wait: true, delay: 10}}
    stop: {{order: 2, wait: true, delay: 10}}
    profiles: {{profileD: {{instance_type: r4.large}}, half: {{fleet_subset: "50%"}}}}
  - name: Role_App
    start: {{order: 1, wait: true, delay: 10}}
    stop: {{order: 1, wait: true, delay: 10, override_file: {{path: /tmp/keep, os: linux}}}}
    profiles: {{profileD: {{instance_type: c4.large}}, half: {{fleet_subset: "50%"}}}}
  - name: Role_Web
    start: {{order: 2, wait: true, ready: {{gate: load-balancer-healthy, timeout: 300}}}}
    stop: {{order: 0, wait: true, delay: 10}}
    profiles: {{profileD: {{instance_type: c4.large}}, half: {{fleet_subset: "50%"}}}}
"#
    ))
}
