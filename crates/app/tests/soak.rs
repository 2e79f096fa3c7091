//! Unattended, compressed: `serve` on a simulated region for days of virtual time,
//! over workloads with varied schedules (office hours in three zones across the
//! autumn's daylight-saving changes, an overnight window, holidays, overrides), with
//! faults injected: 500s from the region throughout, another process writing the runs
//! it drives (store write conflicts), and the service killed at random instants (its
//! future dropped mid-work) and started again over the same store and fleet file;
//! and for the whole second day every StopInstances throttled, a storm that never
//! ends (the stops of that day must give up, fail and be told, not retry forever).
//!
//! Every event of every workload must have exactly one record: fired (with its run),
//! or skipped or missed with a reason; no run may be left unfinished; every run that
//! did not succeed must have been told (a run-finished notification).
//!
//! `SOAK_WORKLOADS` and `SOAK_DAYS` set the size (the suite: 12 workloads, 8 days,
//! across Europe's change; docs/testing.md has a longer run); `SOAK_SEED` the kill
//! instants.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use chrono::{DateTime, Utc};
use ec2_scheduler_app::clouds::Clouds;
use ec2_scheduler_app::serve::{Inbox, Options};
use ec2_scheduler_app::sim::read_fleet;
use ec2_scheduler_app::workloads::{load_files, pick};
use ec2_scheduler_app::{App, CloudSpec, Speed};
use ec2_scheduler_core::Workload;
use ec2_scheduler_core::model::Name;
use ec2_scheduler_core::schedule::Timetable;
use ec2_scheduler_engine::ports::EventOutcome;
use ec2_scheduler_store::SqliteStore;

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn var(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

const SCHEDULES: [&str; 4] = [
    "timezone: Europe/Berlin\nperiods: [{ weekdays: [mon-fri], start: \"08:00\", stop: \"18:00\" }]\nskip: [{ date: \"2026-10-28\", name: a holiday }]\n",
    "timezone: America/New_York\nperiods: [{ weekdays: [mon-fri], start: \"07:00\", stop: \"19:00\" }]\n",
    "timezone: UTC\nperiods: [{ start: \"22:00\", stop: \"04:00\" }]\n",
    "timezone: Asia/Tokyo\nperiods: [{ weekdays: [mon-sat], start: \"09:00\", stop: \"17:30\" }]\nskip: [\"2026-10-29\"]\n",
];

fn workloads(n: usize, dir: &Path) -> (Vec<Workload>, serde_json::Value) {
    let loaded = load_files(&[repo().join("examples/seed/example.json")]).unwrap();
    let template = pick(&loaded, "ExampleTestCase").unwrap().clone();
    let seed = read_fleet(&repo().join("examples/seed/fleet-running.json")).unwrap();
    let mut instances = Vec::new();
    let mut out = Vec::new();
    for k in 0..n {
        let mut w = template.clone();
        w.name = Name::new(format!("S{k:03}")).unwrap();
        w.workload_tag.value = Name::new(format!("ENV{k:03}")).unwrap();
        let file = dir.join(format!("s{k}.yaml"));
        std::fs::write(&file, SCHEDULES[k % SCHEDULES.len()]).unwrap();
        w.schedules = vec![ec2_scheduler_app::schedules::read_schedule(&file).unwrap()];
        out.push(w);
        for i in &seed {
            let mut i = i.clone();
            i.id = format!("{}-{k:03}", i.id);
            if i.tags.get("Environment").map(String::as_str) == Some("ENV001") {
                i.tags.insert("Environment".into(), format!("ENV{k:03}"));
            }
            instances.push(i);
        }
    }
    let fleet = serde_json::json!({"region": "us-west-2", "instances": instances});
    (out, fleet)
}

fn app(db: &Path, fleet: &Path, at: DateTime<Utc>) -> App {
    App::new(
        Box::new(SqliteStore::open(db).unwrap()),
        CloudSpec::SimFile {
            fleet: fleet.to_path_buf(),
            // Real sleeps, however short, are where a killed process stops.
            speed: Speed::Times(200_000.0),
            start: Some(at),
        },
        "soak".into(),
        Arc::default(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_compressed_stretch_unattended_fires_every_event_once_and_wedges_nothing() {
    let n = var("SOAK_WORKLOADS", 12) as usize;
    let days = var("SOAK_DAYS", 8) as i64;
    let mut seed = var("SOAK_SEED", 7).max(1);
    let dir = std::env::temp_dir().join(format!("ec2s-soak-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let (ws, fleet) = workloads(n, &dir);
    let db = dir.join("state.db");
    let fleet_file = dir.join("fleet.json");
    std::fs::write(&fleet_file, fleet.to_string()).unwrap();
    // Monday 19 October 2026: Europe changes its clocks on the 25th, America on
    // 1 November.
    let start: DateTime<Utc> = "2026-10-19T00:00:00Z".parse().unwrap();
    let end = start + chrono::Duration::days(days);
    {
        let a = app(&db, &fleet_file, start);
        for w in &ws {
            let yaml = ec2_scheduler_config::export(
                std::slice::from_ref(w),
                ec2_scheduler_config::Format::Yaml,
            );
            a.put_workload_text(w.name.as_str(), "w.yaml", &yaml)
                .await
                .unwrap();
        }
        // Overrides: some workloads skip their next stop, made at the start.
        for w in ws.iter().step_by(5) {
            a.add_override(
                w,
                ec2_scheduler_app::schedules::OverrideRequest::SkipNext(
                    ec2_scheduler_core::schedule::EventKind::Stop,
                ),
                "soak",
                "release night",
                start,
            )
            .await
            .unwrap();
        }
    }
    let mut now = start;
    let mut kills = 0;
    let mut published: Vec<(String, serde_json::Value)> = Vec::new();
    let mut conflicts_written = 0usize;
    let turn = Duration::from_secs(600);
    while now < end + chrono::Duration::hours(2) {
        let a = Arc::new(app(&db, &fleet_file, now));
        let clouds = Clouds::new(&a);
        let cloud = clouds.get(&a, &ws[0]).await.unwrap();
        let region = &cloud.sim().unwrap().region;
        let day = (now - start).num_days();
        let settling = now >= end;
        // The second day, every StopInstances is throttled: a storm that never ends.
        let storm = !settling && day == 1;
        region.faults(|f| {
            f.server_error_rate = if settling { 0.0 } else { 0.02 };
            if storm {
                f.always_throttled.insert("ec2:StopInstances".into());
            } else {
                f.always_throttled.clear();
            }
        });
        // Until the end of the day (or the end), unless killed first.
        let until = (start + chrono::Duration::days(day + 1)).min(end + chrono::Duration::hours(2));
        let stop = Arc::new(AtomicBool::new(false));
        let inbox = Inbox::default();
        let options = Options {
            turn,
            until: Some(until),
            ..Options::default()
        };
        // Another process writes the runs this one drives, now and then.
        let writer = {
            let other = app(&db, &fleet_file, now);
            let stop = stop.clone();
            let names: Vec<String> = ws.iter().map(|w| w.name.to_string()).collect();
            tokio::spawn(async move {
                let mut written = 0;
                while !stop.load(Ordering::SeqCst) {
                    for w in &names {
                        if let Ok(Some(r)) = other.unfinished_run(w).await
                            && other.attribute_run(&r.id, "soak-writer").await.is_ok()
                        {
                            written += 1;
                        }
                    }
                    tokio::time::sleep(Duration::from_millis(500)).await;
                }
                written
            })
        };
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        // Killed at a random instant in half of the segments; the others run to
        // the end of their day.
        let kill_after = if seed.is_multiple_of(2) {
            Duration::from_millis(300 + seed % 1500)
        } else {
            Duration::from_secs(3600)
        };
        let killed = !settling
            && tokio::time::timeout(
                kill_after,
                a.serve_with(&clouds, &inbox, &options, stop.clone()),
            )
            .await
            .is_err();
        if !killed && settling {
            a.serve_with(&clouds, &inbox, &options, stop.clone())
                .await
                .unwrap();
        }
        stop.store(true, Ordering::SeqCst);
        conflicts_written += writer.await.unwrap();
        kills += usize::from(killed);
        published.extend(
            region
                .published()
                .into_iter()
                .map(|(_, note)| (note.subject.clone(), note.body.clone())),
        );
        now = clouds.now().max(now + chrono::Duration::seconds(1));
        if !killed && !settling {
            now = now.max(until);
        }
    }
    // What happened to every event of every workload.
    let a = app(&db, &fleet_file, now);
    let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
    let mut expected_total = 0;
    for w in &ws {
        let overrides = a.overrides(Some(w.name.as_str()), true, now).await.unwrap();
        let expected: BTreeSet<(String, DateTime<Utc>)> = Timetable::new(&w.schedules)
            .with_overrides(&overrides)
            .events(start, end)
            .into_iter()
            .map(|e| (e.kind.as_str().to_string(), e.at))
            .collect();
        expected_total += expected.len();
        let records = a
            .event_records(Some(w.name.as_str()), usize::MAX)
            .await
            .unwrap();
        let seen: BTreeMap<(String, DateTime<Utc>), _> = records
            .iter()
            .filter(|r| r.at > start && r.at <= end)
            .map(|r| ((r.action.clone(), r.at), r))
            .collect();
        for key in &expected {
            if key.1 <= start {
                continue;
            }
            let r = seen
                .get(key)
                .unwrap_or_else(|| panic!("{}: no record of {key:?}: {records:#?}", w.name));
            match r.outcome {
                EventOutcome::Fired => {
                    let id = r.run_id.as_deref().expect("a fired event names its run");
                    let run = a.run_record(id).await.unwrap();
                    assert!(
                        run.status.is_finished(),
                        "{}: run {id} is unfinished",
                        w.name
                    );
                }
                EventOutcome::Skipped | EventOutcome::Missed | EventOutcome::Failed => {
                    assert!(r.detail.is_some(), "{}: {r:?} without a reason", w.name);
                }
                EventOutcome::Claimed => panic!("{}: {r:?} was left claimed", w.name),
            }
            *counts.entry(r.outcome.as_str()).or_default() += 1;
        }
        // Nothing fired that the schedules did not have.
        for key in seen.keys() {
            assert!(
                expected.contains(key),
                "{}: {key:?} fired unscheduled",
                w.name
            );
        }
        // Nothing wedged.
        assert!(
            a.unfinished_run(w.name.as_str()).await.unwrap().is_none(),
            "{} has an unfinished run",
            w.name
        );
    }
    // Every run that did not succeed was told.
    let told: BTreeSet<String> = published
        .iter()
        .filter_map(|(_, body)| body["run"].as_str().map(str::to_string))
        .collect();
    let mut not_succeeded = 0;
    for r in a.runs(None).await.unwrap() {
        if r.status != "succeeded" && r.status != "abandoned" {
            not_succeeded += 1;
            assert!(
                told.contains(&r.id),
                "run {} ({}) was not told: {told:?}",
                r.id,
                r.status
            );
        }
    }
    eprintln!(
        "soak: {n} workloads, {days} days: {expected_total} events ({counts:?}), {kills} kills, \
         {conflicts_written} concurrent writes, {not_succeeded} runs not succeeded (all told), \
         {} notifications, 0 wedged",
        published.len()
    );
    let _ = std::fs::remove_dir_all(&dir);
}
