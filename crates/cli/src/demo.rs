//! `ec2-scheduler demo`: the original README's example workload on a simulated region,
//! stopped and started again with profile profileD. Needs no AWS account.

use std::collections::BTreeMap;

use anyhow::anyhow;
use chrono::Utc;
use ec2_scheduler_config::{Source, load};
use ec2_scheduler_core::plan::ScaleIn;
use ec2_scheduler_core::{Action, Instance, InstanceState};
use ec2_scheduler_engine::memory::MemoryStore;
use ec2_scheduler_engine::{Begin, Executor, RunRequest, Settings};

use crate::ops::{Cloud, SimCloud, Speed, drive, run_report};
use crate::progress::Progress;

const WORKLOAD: &str = include_str!("../../../examples/demo.yaml");

/// The demo fleet: 12 web instances behind `web-elb`, 9 app, 6 database over three
/// zones, one app instance tagged exempt, and two decoys.
pub fn fleet() -> Vec<Instance> {
    let azs = ["us-west-2a", "us-west-2b", "us-west-2c"];
    let mut out = Vec::new();
    let mut add = |id: String,
                   tags: &[(&str, &str)],
                   ty: &str,
                   az: &str,
                   vpc: &str,
                   lbs: Option<Vec<String>>| {
        out.push(Instance {
            id,
            state: InstanceState::Running,
            instance_type: ty.to_string(),
            az: az.to_string(),
            vpc_id: Some(vpc.to_string()),
            tags: tags
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            state_reason: None,
            load_balancers: lbs,
        });
    };
    for (tier, n, ty) in [
        ("Role_Web", 12, "t2.nano"),
        ("Role_App", 9, "t2.nano"),
        ("Role_DB", 6, "t2.large"),
    ] {
        for i in 0..n {
            let short = tier[5..].to_lowercase();
            let lbs = (tier == "Role_Web").then(|| vec!["web-elb".to_string()]);
            let mut tags = vec![("Environment", "ENV001"), ("Role", tier)];
            let name = format!("{short}-{i}");
            tags.push(("Name", &name));
            if tier == "Role_App" && i == 4 {
                tags.push(("ec2-scheduler:exempt", "true"));
            }
            add(
                format!("i-0{short}{i:05}"),
                &tags,
                ty,
                azs[i % 3],
                "vpc-xyz",
                lbs,
            );
        }
    }
    add(
        "i-0decoy00001".into(),
        &[("Environment", "ENV002"), ("Role", "Role_Web")],
        "t2.nano",
        azs[0],
        "vpc-xyz",
        None,
    );
    add(
        "i-0decoy00002".into(),
        &[("Environment", "ENV001"), ("Role", "Role_App")],
        "t2.nano",
        azs[1],
        "vpc-other",
        None,
    );
    out
}

pub async fn demo(speed: Speed) -> anyhow::Result<()> {
    let workload = load(&[Source {
        name: "examples/demo.yaml",
        text: WORKLOAD,
    }])
    .map_err(|d| anyhow!("{d}"))?
    .workloads
    .remove(0);
    let cloud = Cloud::Sim(Box::new(SimCloud::new_at(None, fleet(), Utc::now())));
    let Cloud::Sim(sim) = &cloud else {
        unreachable!("built as a simulation")
    };
    let store = MemoryStore::new();
    crate::term::out(
        format!(
            "Simulated region us-west-2: {} instances ({} in workload {}, 2 decoys), web tier behind web-elb.\n",
            sim.region.instances().len(),
            sim.region.instances().len() - 2,
            workload.name
        ) + "\n",
    )?;
    for (action, profile) in [(Action::Stop, None), (Action::Start, Some("profileD"))] {
        let settings = Settings {
            owner: "demo".into(),
            ..crate::ops::settings(&cloud, speed)
        };
        let mut exec = Executor::new(cloud.ports(&store), settings, workload.clone());
        let req = RunRequest {
            action,
            profile: profile.map(str::to_string),
            scale_in: ScaleIn::ReportOnly,
        };
        let id = format!("demo-{action}");
        let mut run = match exec.begin(&req, &id).await? {
            Begin::Started(r) | Begin::Resumed(r) => *r,
            Begin::NothingToDo(p) => {
                crate::term::out(crate::render::plan_text(&p) + "\n")?;
                continue;
            }
        };
        let order: Vec<String> = run
            .plan
            .stages
            .iter()
            .map(|s| {
                s.tiers
                    .iter()
                    .map(|t| t.tier.as_str())
                    .collect::<Vec<_>>()
                    .join("+")
            })
            .collect();
        crate::term::out(
            format!(
                "== {action}{} of {}: {} (order {})",
                profile
                    .map(|p| format!(" with profile {p}"))
                    .unwrap_or_default(),
                workload.name,
                match action {
                    Action::Stop => format!("{} to stop", run.plan.summary.to_stop),
                    Action::Start => format!(
                        "{} to start, {} to resize",
                        run.plan.summary.to_start, run.plan.summary.to_resize
                    ),
                },
                order.join(" -> ")
            ) + "\n",
        )?;
        let mut progress = Progress::new(false);
        drive(&mut exec, &mut run, &cloud, speed, &mut progress).await?;
        crate::term::out(run_report(&run) + "\n")?;
    }
    let mut by_state: BTreeMap<String, usize> = BTreeMap::new();
    for i in sim.region.instances() {
        *by_state
            .entry(format!("{} {}", i.state, i.instance_type))
            .or_default() += 1;
    }
    let summary: Vec<String> = by_state.iter().map(|(k, n)| format!("{n} {k}")).collect();
    crate::term::out(format!("Region now: {}.", summary.join(", ")) + "\n")?;
    crate::term::out(
        format!(
            "Notifications published to SNS topic SchedulerTesting: {}.",
            sim.region.published().len()
        ) + "\n",
    )?;
    Ok(())
}
