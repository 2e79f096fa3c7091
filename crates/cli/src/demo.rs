//! `ec2-scheduler demo`: the original README's example workload on a simulated region,
//! stopped and started again with profile profileD. Needs no AWS account.

use std::collections::BTreeMap;

use chrono::{DateTime, Datelike, Utc};
use ec2_scheduler_app::{App, CloudSpec, Error, Outcome, Speed, Watch};
use ec2_scheduler_config::{Source, load};
use ec2_scheduler_core::access::Role;
use ec2_scheduler_core::plan::ScaleIn;
use ec2_scheduler_core::schedule::{SkipDate, SkipDay, Wish};
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

/// `serve --demo`'s fleet: the demo fleet, with ExampleTestCase's instances in
/// `example_state`, and the second workload, Analytics: 2 queue and 8 worker
/// instances, running.
fn serve_fleet(example_state: InstanceState) -> Vec<Instance> {
    let azs = ["us-west-2a", "us-west-2b", "us-west-2c"];
    let mut out = fleet();
    for i in &mut out {
        if i.tags.get("Environment").map(String::as_str) == Some("ENV001")
            && i.vpc_id.as_deref() == Some("vpc-xyz")
        {
            i.state = example_state;
        }
    }
    for (tier, n, ty) in [
        ("Role_Queue", 2, "m5.large"),
        ("Role_Worker", 8, "c5.xlarge"),
    ] {
        for i in 0..n {
            let short = tier[5..].to_lowercase();
            out.push(Instance {
                id: format!("i-0{short}{i:05}"),
                state: InstanceState::Running,
                instance_type: ty.to_string(),
                az: azs[i % 3].to_string(),
                vpc_id: Some("vpc-xyz".to_string()),
                tags: [
                    ("Environment", "ENV003".to_string()),
                    ("Role", tier.to_string()),
                    ("Name", format!("analytics-{short}-{i}")),
                ]
                .into_iter()
                .map(|(k, v)| (k.to_string(), v))
                .collect(),
                state_reason: None,
                load_balancers: None,
            });
        }
    }
    out
}

/// What `serve --demo` serves.
pub struct Served {
    pub app: App,
    /// A token with the operator role, and one with the viewer role.
    pub operator: String,
    pub viewer: String,
}

/// An application for `serve --demo`: a memory store holding both workloads of
/// `examples/demo.yaml` (ExampleTestCase with a holiday on the Wednesday of the week of
/// `start`, in its schedule's zone), a simulated region whose clock begins at `start`
/// and runs at `speed`, with ExampleTestCase as its schedule wishes at `start`, and
/// two tokens.
pub async fn serve_app(start: DateTime<Utc>, speed: Speed) -> Result<Served> {
    let mut loaded = load(&[Source {
        name: "examples/demo.yaml",
        text: WORKLOAD,
    }])
    .map_err(Error::from)?;
    let mut example_state = InstanceState::Running;
    for w in &mut loaded.workloads {
        if w.name.as_str() != "ExampleTestCase" {
            continue;
        }
        if let Some(s) = w.schedules.first_mut() {
            let today = s.zone.date(start);
            let monday =
                today - chrono::Duration::days(i64::from(today.weekday().num_days_from_monday()));
            s.skip.push(SkipDate {
                day: SkipDay::Once(monday + chrono::Duration::days(2)),
                label: Some("Demo holiday".into()),
                calendar: None,
            });
        }
        let wish = ec2_scheduler_app::schedules::state(&w.schedules, &[], start).wish;
        if wish == Wish::Stopped {
            example_state = InstanceState::Stopped;
        }
    }
    let app = App::new(
        Box::new(MemoryStore::new()),
        CloudSpec::SimMemory {
            instances: serve_fleet(example_state),
            start,
            speed,
        },
        "demo".into(),
        Default::default(),
    );
    app.store_workloads(&loaded).await?;
    let now = Utc::now();
    let operator = app
        .create_token("demo-operator", Role::Operator, None, "demo", now)
        .await?
        .token;
    let viewer = app
        .create_token("demo-viewer", Role::Viewer, None, "demo", now)
        .await?
        .token;
    Ok(Served {
        app,
        operator,
        viewer,
    })
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
    let Some(workload) = loaded
        .workloads
        .iter()
        .find(|w| w.name.as_str() == "ExampleTestCase")
    else {
        return Err(Error::Invalid("examples/demo.yaml has no ExampleTestCase".into()).into());
    };
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
