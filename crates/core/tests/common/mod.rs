//! Builders for workloads and fleets, and a compact plan rendering for snapshots.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::fmt::Write;

use chrono::{DateTime, Utc};
use ec2_scheduler_core::model::{
    ActionSpec, FailurePolicy, FleetSubset, Gate, InstanceType, Name, Os, OverrideFile, Profile,
    Readiness, StartSpec, StopSpec, Tag, Tier, Workload, WorkloadHeader,
};
use ec2_scheduler_core::plan::{Plan, PlanRequest, ScaleIn, Step, plan};
use ec2_scheduler_core::{Action, Exemption, Instance, InstanceState};

pub const VPC: &str = "vpc-1";

pub fn n(s: &str) -> Name {
    Name::new(s).unwrap()
}

pub fn now() -> DateTime<Utc> {
    "2026-11-26T12:00:00Z".parse().unwrap()
}

pub struct WorkloadBuilder {
    header: WorkloadHeader,
    tiers: Vec<Tier>,
}

/// Workload `wl`: tag `Env=prod`, tier tag key `Role`, no VPC.
pub fn workload() -> WorkloadBuilder {
    WorkloadBuilder {
        header: WorkloadHeader {
            name: n("wl"),
            region: n("us-west-2"),
            workload_tag: Tag {
                key: n("Env"),
                value: n("prod"),
            },
            tier_tag_key: n("Role"),
            vpc: None,
            cross_account: None,
            sns_topic: None,
            ssm_output: None,
            resize_delay_secs: 4,
            disabled: false,
            failure_policy: FailurePolicy::Abort,
            exemption_tag_key: n("ec2-scheduler:exempt"),
        },
        tiers: Vec::new(),
    }
}

impl WorkloadBuilder {
    pub fn vpc(mut self, vpc: &str) -> Self {
        self.header.vpc = Some(n(vpc));
        self
    }
    pub fn disabled(mut self) -> Self {
        self.header.disabled = true;
        self
    }
    pub fn resize_delay(mut self, secs: u64) -> Self {
        self.header.resize_delay_secs = secs;
        self
    }
    pub fn tier(mut self, t: TierBuilder) -> Self {
        self.tiers.push(t.0);
        self
    }
    pub fn build(self) -> Workload {
        Workload::new(self.header, self.tiers).unwrap()
    }
}

#[derive(Debug, Clone)]
pub struct TierBuilder(pub Tier);

fn seq(order: i64) -> ActionSpec {
    ActionSpec {
        order,
        wait: false,
        delay_secs: 0,
    }
}

/// A tier without start or stop settings.
pub fn tier(name: &str) -> TierBuilder {
    TierBuilder(Tier {
        name: n(name),
        start: None,
        stop: None,
        profiles: BTreeMap::new(),
        load_balancers: Vec::new(),
    })
}

impl TierBuilder {
    pub fn start(mut self, order: i64) -> Self {
        self.0.start = Some(StartSpec {
            sequencing: seq(order),
            ready: None,
        });
        self
    }
    pub fn stop(mut self, order: i64) -> Self {
        self.0.stop = Some(StopSpec {
            sequencing: seq(order),
            override_file: None,
            ignore: false,
            hibernate: false,
        });
        self
    }
    pub fn wait(mut self) -> Self {
        if let Some(s) = &mut self.0.start {
            s.sequencing.wait = true;
        }
        if let Some(s) = &mut self.0.stop {
            s.sequencing.wait = true;
        }
        self
    }
    pub fn delay(mut self, secs: u64) -> Self {
        if let Some(s) = &mut self.0.start {
            s.sequencing.delay_secs = secs;
        }
        if let Some(s) = &mut self.0.stop {
            s.sequencing.delay_secs = secs;
        }
        self
    }
    pub fn ready(mut self, gate: Gate) -> Self {
        self.0.start.as_mut().unwrap().ready = Some(Readiness {
            gate,
            timeout_secs: 300,
        });
        self
    }
    pub fn override_file(mut self, path: &str) -> Self {
        self.0.stop.as_mut().unwrap().override_file = Some(OverrideFile {
            path: n(path),
            os: Os::Linux,
        });
        self
    }
    pub fn ignore_stop(mut self) -> Self {
        self.0.stop.as_mut().unwrap().ignore = true;
        self
    }
    /// `ty` may be empty (no type), `subset` may be empty (no subset).
    pub fn profile(mut self, name: &str, ty: &str, subset: &str) -> Self {
        let it = (!ty.is_empty()).then(|| InstanceType::new(ty).unwrap());
        let fs = (!subset.is_empty()).then(|| subset.parse::<FleetSubset>().unwrap());
        self.0
            .profiles
            .insert(n(name), Profile::new(it, fs).unwrap());
        self
    }
}

/// A member of tier `tier`: tags `Env=prod`, `Role=<tier>`, type t3.small, VPC `vpc-1`.
pub fn inst(id: &str, tier: &str, state: InstanceState, az: &str) -> Instance {
    let mut tags = BTreeMap::new();
    tags.insert("Env".to_string(), "prod".to_string());
    tags.insert("Role".to_string(), tier.to_string());
    Instance {
        id: id.to_string(),
        state,
        instance_type: "t3.small".to_string(),
        az: az.to_string(),
        vpc_id: Some(VPC.to_string()),
        tags,
        state_reason: None,
        load_balancers: None,
    }
}

pub fn with_tag(mut i: Instance, k: &str, v: &str) -> Instance {
    i.tags.insert(k.to_string(), v.to_string());
    i
}

pub fn without_tag(mut i: Instance, k: &str) -> Instance {
    i.tags.remove(k);
    i
}

pub fn typed(mut i: Instance, t: &str) -> Instance {
    i.instance_type = t.to_string();
    i
}

pub fn lbs(mut i: Instance, lbs: &[&str]) -> Instance {
    i.load_balancers = Some(lbs.iter().map(|s| s.to_string()).collect());
    i
}

pub fn in_vpc(mut i: Instance, vpc: &str) -> Instance {
    i.vpc_id = Some(vpc.to_string());
    i
}

/// Plans with default options.
pub struct Ask<'a> {
    pub workload: &'a Workload,
    pub observed: &'a [Instance],
    pub action: Action,
    pub profile: Option<&'a str>,
    pub scale_in: ScaleIn,
    pub exemptions: &'a [Exemption],
}

pub fn ask<'a>(workload: &'a Workload, observed: &'a [Instance], action: Action) -> Ask<'a> {
    Ask {
        workload,
        observed,
        action,
        profile: None,
        scale_in: ScaleIn::ReportOnly,
        exemptions: &[],
    }
}

impl<'a> Ask<'a> {
    pub fn profile(mut self, p: &'a str) -> Self {
        self.profile = Some(p);
        self
    }
    pub fn scale_in(mut self) -> Self {
        self.scale_in = ScaleIn::Apply;
        self
    }
    pub fn exemptions(mut self, e: &'a [Exemption]) -> Self {
        self.exemptions = e;
        self
    }
    pub fn plan(&self) -> Plan {
        plan(&PlanRequest {
            workload: self.workload,
            observed: self.observed,
            action: self.action,
            profile: self.profile,
            scale_in: self.scale_in,
            exemptions: self.exemptions,
            now: now(),
        })
        .unwrap()
    }
    pub fn render(&self) -> String {
        render(&self.plan())
    }
}

/// A compact text form of a plan for snapshots.
pub fn render(p: &Plan) -> String {
    let mut out = String::new();
    for s in &p.stages {
        let names: Vec<&str> = s.tiers.iter().map(|t| t.tier.as_str()).collect();
        writeln!(out, "stage {}: {}", s.order, names.join(" ")).unwrap();
        for t in &s.tiers {
            let target = t.target.map(|x| format!(" target={x}")).unwrap_or_default();
            writeln!(
                out,
                "  {} members={} up={} down={}{target}",
                t.tier, t.members, t.up, t.down
            )
            .unwrap();
            for step in &t.steps {
                writeln!(out, "    {}", step_text(step)).unwrap();
            }
        }
    }
    for e in &p.excluded {
        writeln!(
            out,
            "excluded {} ({}): {}",
            e.instance,
            e.tier,
            e.reason.describe()
        )
        .unwrap();
    }
    for note in &p.notes {
        let tier = note
            .tier
            .as_deref()
            .map(|t| format!("[{t}] "))
            .unwrap_or_default();
        writeln!(out, "note {tier}{}", note.message).unwrap();
    }
    let ig = &p.ignored;
    if ig.no_configured_tier + ig.other_vpc + ig.gone > 0 {
        writeln!(
            out,
            "ignored: no-tier={} other-vpc={} gone={}",
            ig.no_configured_tier, ig.other_vpc, ig.gone
        )
        .unwrap();
    }
    out
}

pub fn step_text(step: &Step) -> String {
    match step {
        Step::Resize { changes } => {
            let c: Vec<String> = changes
                .iter()
                .map(|c| format!("{}:{}->{}", c.instance, c.from, c.to))
                .collect();
            format!("resize {}", c.join(" "))
        }
        Step::Pause { seconds, why } => format!("pause {seconds}s {why:?}"),
        Step::WaitUntil { state, instances } => format!("wait {state} {}", instances.join(" ")),
        Step::Ready {
            gate, instances, ..
        } => format!("ready {} {}", gate.as_str(), instances.join(" ")),
        Step::ProbeOverride {
            path, instances, ..
        } => format!("probe {path} {}", instances.join(" ")),
        other => {
            let ids: Vec<&str> = other.instances().collect();
            format!("{} {}", other.name(), ids.join(" "))
        }
    }
}
