//! `ec2-scheduler demo`: the original README's example workload on a simulated region,
//! stopped and started again with profile profileD. Needs no AWS account.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use ec2_scheduler_app::{App, CloudSpec, Error, Outcome, Speed, Watch};
use ec2_scheduler_config::{Source, load};
use ec2_scheduler_core::plan::ScaleIn;
use ec2_scheduler_core::{Action, Instance, InstanceState};
use ec2_scheduler_engine::memory::MemoryStore;
use ec2_scheduler_engine::{Run, RunRequest};

use crate::error::{CliError, Result};
use crate::progress::Progress;
use crate::{render, term};

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

/// Prints the plan's header as a run begins, and its progress.
struct Show<'a> {
    workload: &'a str,
    action: Action,
    profile: Option<&'a str>,
    progress: Progress,
    failed: Option<CliError>,
}

impl Watch for Show<'_> {
    fn note(&mut self, text: &str) {
        self.progress.note(text);
    }

    fn began(&mut self, run: &Run) {
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
        let header = format!(
            "== {}{} of {}: {} (order {})\n",
            self.action,
            self.profile
                .map(|p| format!(" with profile {p}"))
                .unwrap_or_default(),
            self.workload,
            match self.action {
                Action::Stop => format!("{} to stop", run.plan.summary.to_stop),
                Action::Start => format!(
                    "{} to start, {} to resize",
                    run.plan.summary.to_start, run.plan.summary.to_resize
                ),
            },
            order.join(" -> ")
        );
        if let Err(e) = term::out(header) {
            self.failed.get_or_insert(e);
        }
    }

    fn progress(&mut self, run: &Run, now: DateTime<Utc>) {
        self.progress.progress(run, now);
    }

    fn finished(&mut self) {
        self.progress.finished();
    }
}

pub async fn demo(speed: Speed) -> Result {
    let loaded = load(&[Source {
        name: "examples/demo.yaml",
        text: WORKLOAD,
    }])
    .map_err(Error::from)?;
    let workload = &loaded.workloads[0];
    let app = App::new(
        Box::new(MemoryStore::new()),
        CloudSpec::SimMemory {
            instances: fleet(),
            start: Utc::now(),
            speed,
        },
        "demo".into(),
        Default::default(),
    );
    let cloud = app.connect(workload).await?;
    let Some(sim) = cloud.sim() else {
        return Err(Error::Invalid("the demo runs on the simulator".into()).into());
    };
    let region = &sim.region;
    term::out(format!(
        "Simulated region us-west-2: {} instances ({} in workload {}, 2 decoys), web tier behind web-elb.\n\n",
        region.instances().len(),
        region.instances().len() - 2,
        workload.name
    ))?;
    for (action, profile) in [(Action::Stop, None), (Action::Start, Some("profileD"))] {
        let req = RunRequest {
            action,
            profile: profile.map(str::to_string),
            scale_in: ScaleIn::ReportOnly,
        };
        let mut show = Show {
            workload: workload.name.as_str(),
            action,
            profile,
            progress: Progress::new(false),
            failed: None,
        };
        let outcome = app.run(&cloud, workload, &req, None, &mut show).await?;
        if let Some(e) = show.failed {
            return Err(e);
        }
        match outcome {
            Outcome::NothingToDo(p) => term::out(render::plan_text(&p) + "\n")?,
            Outcome::Finished(run) => term::out(render::run_report(&run) + "\n")?,
        }
    }
    let mut by_state: BTreeMap<String, usize> = BTreeMap::new();
    for i in region.instances() {
        *by_state
            .entry(format!("{} {}", i.state, i.instance_type))
            .or_default() += 1;
    }
    let summary: Vec<String> = by_state.iter().map(|(k, n)| format!("{n} {k}")).collect();
    term::out(format!("Region now: {}.\n", summary.join(", ")))?;
    term::out(format!(
        "Notifications published to SNS topic SchedulerTesting: {}.\n",
        region.published().len()
    ))
}
