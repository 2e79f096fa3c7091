//! The whole story on moto: the original README's example items in DynamoDB, about 300
//! instances over three tiers and three zones plus decoys, `run -r` Stop then Start
//! with profileD, as a user of the original tool would.

use std::collections::BTreeMap;
use std::process::{Command, Output};

use ec2_scheduler_testkit::{Moto, World, seed_world};
use serde_json::Value;

const REGION: &str = "us-west-2";

/// The tool, pointed at moto.
fn command(moto: &Moto, args: &[&str]) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_ec2-scheduler"));
    c.args(args)
        .args(["--endpoint-url", &moto.endpoint])
        .env_remove("EC2_SCHEDULER_STORE");
    c
}

fn cli(moto: &Moto, args: &[&str]) -> Output {
    command(moto, args).output().unwrap()
}

/// `run` of the seed workload in its region, with `args`, as JSON.
fn run(moto: &Moto, args: &[&str]) -> Value {
    let mut all = vec!["run", "-w", "ExampleTestCase", "-r", REGION, "-o", "json"];
    all.extend(args);
    serde_json::from_str(&ok(&cli(moto, &all))).unwrap()
}

/// After a start with profileD: every member running at the profile's type, the
/// decoys untouched, the web and app tiers back in their load balancers.
async fn started_with_profile_d(conf: &ec2_scheduler_testkit::SdkConfig, world: &World) {
    let after = fleet(conf).await;
    let wanted = |t: &str| ("running".to_string(), t.to_string());
    for id in world.web.iter().chain(&world.app) {
        assert_eq!(after[id], wanted("c4.large"), "{id}");
    }
    for id in &world.db {
        assert_eq!(after[id], wanted("r4.large"), "{id}");
    }
    for id in &world.decoys {
        assert_eq!(after[id], wanted("t2.nano"), "decoy {id} was touched");
    }
    let (classic, group) = registered(conf, world).await;
    let (mut web, mut app) = (world.web.clone(), world.app.clone());
    web.sort();
    app.sort();
    assert_eq!((classic, group), (web, app), "registrations not restored");
}

fn ok(o: &Output) -> String {
    assert!(
        o.status.success(),
        "exit {:?}\nstdout:\n{}\nstderr:\n{}",
        o.status.code(),
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8_lossy(&o.stdout).to_string()
}

/// State and type of every instance.
async fn fleet(conf: &ec2_scheduler_testkit::SdkConfig) -> BTreeMap<String, (String, String)> {
    let ec2 = aws_sdk_ec2::Client::new(conf);
    let mut out = BTreeMap::new();
    let mut pages = ec2.describe_instances().into_paginator().send();
    while let Some(page) = pages.next().await {
        for i in page
            .unwrap()
            .reservations()
            .iter()
            .flat_map(|r| r.instances())
        {
            out.insert(
                i.instance_id().unwrap().to_string(),
                (
                    i.state().unwrap().name().unwrap().as_str().to_string(),
                    i.instance_type().unwrap().as_str().to_string(),
                ),
            );
        }
    }
    out
}

async fn registered(
    conf: &ec2_scheduler_testkit::SdkConfig,
    w: &World,
) -> (Vec<String>, Vec<String>) {
    let elb = aws_sdk_elasticloadbalancing::Client::new(conf);
    let lbs = elb
        .describe_load_balancers()
        .load_balancer_names("web-elb")
        .send()
        .await
        .unwrap();
    let mut classic: Vec<String> = lbs.load_balancer_descriptions()[0]
        .instances()
        .iter()
        .map(|i| i.instance_id().unwrap().to_string())
        .collect();
    classic.sort();
    let elbv2 = aws_sdk_elasticloadbalancingv2::Client::new(conf);
    let h = elbv2
        .describe_target_health()
        .target_group_arn(&w.target_group)
        .send()
        .await
        .unwrap();
    let mut group: Vec<String> = h
        .target_health_descriptions()
        .iter()
        .map(|d| d.target().unwrap().id().unwrap().to_string())
        .collect();
    group.sort();
    (classic, group)
}

/// The order in which tiers made their first call of `action`, from `runs show`.
fn tier_order(history: &str, action: &str) -> Vec<String> {
    let mut order: Vec<String> = Vec::new();
    for line in history.lines() {
        if line.contains(action)
            && let Some(tier) = line.split("] ").nth(1).and_then(|r| r.split(':').next())
            && !order.iter().any(|t| t == tier)
        {
            order.push(tier.to_string());
        }
    }
    order
}

/// The steps each tier did, from `runs show`.
fn steps_done(history: &str) -> BTreeMap<String, usize> {
    let mut done = BTreeMap::new();
    for l in history.lines().filter(|l| l.ends_with(" done")) {
        let tier = l.split("] ").nth(1).and_then(|r| r.split(':').next());
        *done.entry(tier.unwrap_or(l).to_string()).or_default() += 1;
    }
    done
}

/// Requests by service (`ec2:StopInstances` counts for `ec2`).
fn by_service(calls: &Value) -> BTreeMap<String, u64> {
    let mut out = BTreeMap::new();
    for (action, n) in calls.as_object().unwrap() {
        let service = action.split(':').next().unwrap().to_string();
        *out.entry(service).or_default() += n.as_u64().unwrap();
    }
    out
}

fn ec2_requests(summary: &Value) -> (u64, u64) {
    let calls = summary["aws_requests"].as_object().unwrap();
    let modify = calls
        .get("ec2:ModifyInstanceAttribute")
        .and_then(Value::as_u64)
        .unwrap_or(0);
    let ec2: u64 = calls
        .iter()
        .filter(|(k, _)| k.starts_with("ec2:"))
        .map(|(_, v)| v.as_u64().unwrap())
        .sum();
    (ec2 - modify, modify)
}

#[test]
fn the_seed_example_stops_and_starts_on_moto_within_the_call_budget() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let moto = Moto::start();
    let conf = rt.block_on(moto.config(REGION));
    let world = rt.block_on(seed_world(&conf, 100));
    let members: Vec<&String> = world
        .web
        .iter()
        .chain(&world.app)
        .chain(&world.db)
        .collect();
    assert_eq!(members.len(), 300);

    // The original's WorkloadState table, which its users' scripts read.
    rt.block_on(ec2_scheduler_testkit::create_workload_state_table(&conf));

    // Stop, as the original: -w -r -a Stop; with moto counting what it receives.
    moto.record();
    let stop = run(&moto, &["-a", "Stop"]);
    assert_eq!(stop["status"], "succeeded", "{stop:#}");
    assert_eq!(stop["stopped"], 300);
    // Every request sent is counted: the process's count by service is what moto
    // received, and the run's own count holds every EC2 request (all of them are made
    // by the run).
    let received = moto.recorded();
    assert_eq!(by_service(&stop["aws_requests"]), received, "{stop:#}");
    assert_eq!(
        by_service(&stop["api_calls"]).get("ec2"),
        received.get("ec2"),
        "{stop:#}"
    );
    assert!(received["ec2"] > 0 && received["dynamodb"] > 0);
    let after = rt.block_on(fleet(&conf));
    for id in &members {
        assert_eq!(after[*id].0, "stopped", "{id}");
    }
    for id in &world.decoys {
        assert_eq!(after[id].0, "running", "decoy {id} was touched");
    }
    let (classic, group) = rt.block_on(registered(&conf, &world));
    assert!(
        classic.is_empty() && group.is_empty(),
        "still registered: {classic:?} {group:?}"
    );
    let state = rt.block_on(ec2_scheduler_testkit::workload_state(
        &conf,
        "ExampleTestCase",
    ));
    assert_eq!(state["LastActionType"], "Stop", "{state:?}");
    assert!(
        chrono::NaiveDateTime::parse_from_str(&state["LastActionTime"], "%Y-%m-%d %H:%M:%S")
            .is_ok(),
        "{state:?}"
    );
    assert!(!state.contains_key("Profile"), "{state:?}");
    let history = ok(&cli(
        &moto,
        &["runs", "show", stop["run"].as_str().unwrap(), "-r", REGION],
    ));
    let stop_steps: usize = steps_done(&history).values().sum();
    assert_eq!(
        tier_order(&history, "ec2:StopInstances"),
        ["Role_Web", "Role_App", "Role_DB"],
        "{history}"
    );

    // Start with profileD.
    let start = run(&moto, &["-a", "start", "-p", "profileD"]);
    assert_eq!(start["status"], "succeeded", "{start:#}");
    rt.block_on(started_with_profile_d(&conf, &world));
    let state = rt.block_on(ec2_scheduler_testkit::workload_state(
        &conf,
        "ExampleTestCase",
    ));
    assert_eq!(
        (state["LastActionType"].as_str(), state["Profile"].as_str()),
        ("Start", "profileD"),
        "{state:?}"
    );
    let history = ok(&cli(
        &moto,
        &["runs", "show", start["run"].as_str().unwrap(), "-r", REGION],
    ));
    let start_steps: usize = steps_done(&history).values().sum();
    assert_eq!(
        tier_order(&history, "ec2:StartInstances"),
        ["Role_DB", "Role_App", "Role_Web"],
        "{history}"
    );

    // The call budget: at most 40 EC2 requests besides ModifyInstanceAttribute for
    // stop + start, and one ModifyInstanceAttribute per instance whose type changes
    // (all 300 here). The original made 1,509 EC2 calls for this scenario.
    // DynamoDB writes grow with what a run does, not with how often it looks: the
    // lease is renewed in ticks that act and when a third of it has passed.
    let ddb = |s: &Value, a: &str| s["aws_requests"][a].as_u64().unwrap_or(0);
    let writes = |s: &Value| -> u64 {
        [
            "dynamodb:PutItem",
            "dynamodb:UpdateItem",
            "dynamodb:DeleteItem",
            "dynamodb:BatchWriteItem",
        ]
        .iter()
        .map(|a| ddb(s, a))
        .sum()
    };
    // At most 3 writes per tier-step, plus one per minute of lease. Parked
    // load-balancer registrations go 25 to a request; a run is saved in one item per
    // step, its index entry only when its status changes; the lease is renewed when a
    // third of it has passed, and ticks about to act check it by reading. Before this
    // the stop wrote 42 times and the start (with its 300 resizes) 107, and earlier
    // more than 230 and about 280.
    for (what, s, steps) in [("stop", &stop, stop_steps), ("start", &start, start_steps)] {
        let minutes = (s["seconds"].as_f64().unwrap() / 60.0).ceil() as u64;
        let bound = 3 * steps as u64 + minutes;
        eprintln!(
            "{what}: DynamoDB writes {} (UpdateItem {}, PutItem {}, BatchWriteItem {}); {steps} tier-steps, {minutes} min: bound {bound}",
            writes(s),
            ddb(s, "dynamodb:UpdateItem"),
            ddb(s, "dynamodb:PutItem"),
            ddb(s, "dynamodb:BatchWriteItem"),
        );
        assert!(writes(s) <= bound, "{what}: {} > {bound}", writes(s));
    }
    let (stop_ec2, stop_modify) = ec2_requests(&stop);
    let (start_ec2, start_modify) = ec2_requests(&start);
    eprintln!(
        "EC2 requests besides ModifyInstanceAttribute: stop {stop_ec2}, start {start_ec2}; ModifyInstanceAttribute {start_modify}"
    );
    assert_eq!(stop_modify, 0);
    assert_eq!(start_modify, 300);
    assert!(
        stop_ec2 + start_ec2 <= 40,
        "EC2 requests: stop {stop_ec2}, start {start_ec2}\n{stop:#}\n{start:#}"
    );

    // Notifications were published to the workload's topic.
    let sns = moto.data()["sns"].to_string();
    assert!(sns.contains("stop of ExampleTestCase succeeded"), "{sns}");
    assert!(sns.contains("start of ExampleTestCase succeeded"), "{sns}");

    // Savings on AWS: the emulator has no Price List API, so the prices come from the
    // bundled table, with a warning; the actual savings come from the two runs.
    let report: Value = serde_json::from_str(&ok(&cli(
        &moto,
        &[
            "savings",
            "-w",
            "ExampleTestCase",
            "-r",
            REGION,
            "-o",
            "json",
        ],
    )))
    .unwrap();
    let s = &report[0];
    assert!(
        s["warnings"][0]
            .as_str()
            .unwrap()
            .contains("the AWS Price List API could not be read (pricing:GetProducts: "),
        "{s:#}"
    );
    let lines = s["actual"]["lines"].as_array().unwrap();
    assert_eq!(
        lines
            .iter()
            .map(|l| l["instances"].as_u64().unwrap())
            .sum::<u64>(),
        300,
        "{s:#}"
    );
    assert!(
        s["actual"]["instance_hours_saved"].as_f64().unwrap() > 0.0,
        "{s:#}"
    );
    // Priced from the bundled table (c4.large, r4.large in us-west-2).
    assert!(
        lines.iter().all(|l| l["hourly_price"].as_f64().is_some()),
        "{s:#}"
    );
}

/// Run ids and statuses of a workload's runs, from `runs`.
fn runs_of(moto: &Moto, workload: &str) -> Vec<(String, String, String)> {
    ok(&cli(moto, &["runs", "-w", workload, "-r", REGION]))
        .lines()
        .skip(1)
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            (f.len() >= 4).then(|| (f[0].to_string(), f[2].to_string(), f[3].to_string()))
        })
        .collect()
}

/// SIGKILL at random points of a start with a profile on the DynamoDB store: every
/// stored run still loads, the next `run` resumes the same run, no step it recorded as
/// done is done again, and the run ends with every instance started at its profile's
/// type and back in its load balancer.
#[test]
fn a_run_killed_at_random_points_resumes_and_finishes_on_dynamodb() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let moto = Moto::start();
    let conf = rt.block_on(moto.config(REGION));
    let world = rt.block_on(seed_world(&conf, 30));
    let stop = run(&moto, &["-a", "Stop"]);
    assert_eq!(stop["status"], "succeeded", "{stop:#}");

    // The plan the run will follow: its steps by tier.
    let plan = run(&moto, &["-a", "start", "-p", "profileD", "-d"]);
    let mut planned: BTreeMap<String, usize> = BTreeMap::new();
    for stage in plan["stages"].as_array().unwrap() {
        for t in stage["tiers"].as_array().unwrap() {
            let steps = t["steps"].as_array().unwrap().len();
            *planned
                .entry(t["tier"].as_str().unwrap().to_string())
                .or_default() += steps;
        }
    }
    assert_eq!(planned.len(), 3, "{plan:#}");

    // A fixed seed, so that a failure can be replayed; the kills fall anywhere from
    // planning to the last tier's registration.
    let mut seed: u64 = 0x5eed_c4a5_11ed;
    let mut next = || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    let args = [
        "run",
        "-w",
        "ExampleTestCase",
        "-r",
        REGION,
        "-a",
        "start",
        "-p",
        "profileD",
        "-o",
        "json",
    ];
    let mut kills = 0;
    let finished = loop {
        let mut child = command(&moto, &args)
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let after = std::time::Duration::from_millis(200 + next() % 6_000);
        let deadline = std::time::Instant::now() + after;
        let exited = loop {
            if child.try_wait().unwrap().is_some() {
                break true;
            }
            if kills >= 6 || std::time::Instant::now() < deadline {
                std::thread::sleep(std::time::Duration::from_millis(20));
                continue;
            }
            break false;
        };
        if exited {
            break child.wait_with_output().unwrap();
        }
        // SIGKILL, then reap it, so that its process id is gone as a dead owner's is.
        child.kill().unwrap();
        child.wait().unwrap();
        kills += 1;
        eprintln!("killed after {after:?}");
        // Whatever the moment, every stored run loads.
        for (id, _, _) in runs_of(&moto, "ExampleTestCase") {
            ok(&cli(&moto, &["runs", "show", &id, "-r", REGION]));
        }
    };
    let start: Value = serde_json::from_str(&ok(&finished)).unwrap();
    assert_eq!(start["status"], "succeeded", "{start:#}");
    assert!(kills >= 4, "killed {kills} times only");

    // One start run: each process after a kill resumed it.
    let runs = runs_of(&moto, "ExampleTestCase");
    let starts: Vec<_> = runs.iter().filter(|r| r.1 == "start").collect();
    assert_eq!(starts.len(), 1, "{runs:?}");
    assert_eq!(starts[0].2, "succeeded", "{runs:?}");
    let history = ok(&cli(&moto, &["runs", "show", &starts[0].0, "-r", REGION]));
    // Each tier did each step of the plan once.
    assert_eq!(steps_done(&history), planned, "{history}");
    assert!(history.contains("resumed"), "{history}");
    rt.block_on(started_with_profile_d(&conf, &world));
}

#[test]
fn load_writes_the_original_tables_and_they_read_back_the_same() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let moto = Moto::start();
    let conf = rt.block_on(moto.config(REGION));
    rt.block_on(ec2_scheduler_testkit::create_seed_tables(&conf));
    let repo = concat!(env!("CARGO_MANIFEST_DIR"), "/../..");
    let file = format!("{repo}/examples/workloads.yaml");
    let out = ok(&cli(&moto, &["load", "-r", REGION, &file]));
    assert_eq!(out, "loaded 1 workload: ExampleTestCase\n");
    // Loading again is a conditional overwrite of the same items, not an error.
    ok(&cli(&moto, &["load", "-r", REGION, &file]));
    // The items read back, through the same store, as the workload in the file.
    let text = std::fs::read_to_string(&file).unwrap();
    let expected = ec2_scheduler_config::load(&[ec2_scheduler_config::Source {
        name: "f",
        text: &text,
    }])
    .unwrap()
    .workloads;
    let store = ec2_scheduler_aws::dynamo::DynamoStore::new(
        &conf,
        ec2_scheduler_aws::dynamo::Tables::default(),
    );
    let stored = rt
        .block_on(ec2_scheduler_engine::ports::ConfigStore::workloads(&store))
        .unwrap();
    assert_eq!(stored, expected);
    // Loading it again without one tier removes that tier's item, and says so.
    let smaller = text.replace("      - name: Role_Batch\n        stop: { order: 0, ignore: true }   # never stopped by the scheduler\n", "");
    assert_ne!(smaller, text);
    let path = std::env::temp_dir().join(format!("ec2s-smaller-{}.yaml", std::process::id()));
    std::fs::write(&path, &smaller).unwrap();
    let o = cli(&moto, &["load", "-r", REGION, path.to_str().unwrap()]);
    ok(&o);
    std::fs::remove_file(&path).unwrap();
    assert!(
        String::from_utf8_lossy(&o.stderr)
            .contains("ExampleTestCase: removed tiers no longer defined: Role_Batch")
    );
    let stored = rt
        .block_on(ec2_scheduler_engine::ports::ConfigStore::workloads(&store))
        .unwrap();
    assert!(stored[0].tier("Role_Batch").is_none());
    assert_eq!(stored[0].tiers().len(), 3);
    // And `status -r` finds it there (moto has no instances: every tier is empty).
    let text = ok(&cli(
        &moto,
        &["status", "-w", "ExampleTestCase", "-r", REGION],
    ));
    assert!(text.contains("Role_Web: 0 members"), "{text}");
}
