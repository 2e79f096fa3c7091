//! ec2-scheduler's own YAML format (`version: 1`).
//!
//! The document types below define the format: they are serialized on export and
//! generate the published JSON Schema (`schema/workloads.schema.json`). Decoding walks
//! the parsed document by hand so that every error of a file is reported with its
//! path; a test checks that the fields it accepts are exactly the schema's.

use std::collections::BTreeMap;

use ec2_scheduler_core::model::{
    ActionSpec, CrossAccount, DEFAULT_EXEMPTION_TAG_KEY, DEFAULT_GATE_TIMEOUT_SECS,
    DEFAULT_RESIZE_DELAY_SECS, DEFAULT_TIER_DELAY_SECS, FailurePolicy, FleetSubset, Gate,
    InstanceType, Name, Os, OverrideFile, Profile, Readiness, SsmOutput, StartSpec, StopSpec, Tag,
    Tier, Workload, WorkloadHeader,
};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::diag::Cx;
use crate::schedules::{self, CalendarDoc, Calendars, ScheduleDoc};
use crate::walk::{self, Obj, found};

/// The current format version.
pub const VERSION: u64 = 1;

/// A workload file: one or more workloads.
#[derive(Debug, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(title = "ec2-scheduler workloads")]
pub struct FileDoc {
    /// Format version; only 1 exists.
    #[schemars(range(min = 1, max = 1))]
    pub version: u64,
    /// Named lists of dates that schedules share (holidays).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub calendars: Vec<CalendarDoc>,
    pub workloads: Vec<WorkloadDoc>,
}

/// A workload: the instances carrying `workload_tag`, grouped in tiers by the value of
/// their `tier_tag_key` tag.
#[derive(Debug, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct WorkloadDoc {
    /// Unique name of the workload (the original's SpecName).
    #[schemars(length(min = 1))]
    pub name: String,
    /// Region the instances run in.
    #[schemars(length(min = 1))]
    pub region: String,
    /// Tag that every instance of the workload carries.
    pub workload_tag: TagDoc,
    /// Tag key whose value names an instance's tier.
    #[schemars(length(min = 1))]
    pub tier_tag_key: String,
    /// Only instances in this VPC are members.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1))]
    pub vpc: Option<String>,
    /// SNS topic name for notifications.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1))]
    pub sns_topic: Option<String>,
    /// Role to assume for a workload in another account.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cross_account: Option<CrossAccountDoc>,
    /// S3 location kept from the original tool's settings (not needed by ec2-scheduler).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ssm_output: Option<SsmOutputDoc>,
    /// Seconds between resizing instances and starting them (default 4).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0, max = 604_800))]
    pub resize_delay: Option<u64>,
    /// Kill switch: when true, nothing is done to this workload (default false).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub disabled: Option<bool>,
    /// What to do when a tier fails (default abort).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failure_policy: Option<FailurePolicyDoc>,
    /// Tag key that exempts an instance from being stopped (default `ec2-scheduler:exempt`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1))]
    pub exemption_tag_key: Option<String>,
    /// When the workload runs; without schedules it runs only when asked.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub schedules: Vec<ScheduleDoc>,
    /// Also bring the workload back to what its schedules wish when it drifts, not
    /// only at their events (default false).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enforce: Option<bool>,
    /// The tiers; names must be unique.
    pub tiers: Vec<TierDoc>,
}

/// A tag key and value.
#[derive(Debug, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TagDoc {
    #[schemars(length(min = 1))]
    pub key: String,
    #[schemars(length(min = 1))]
    pub value: String,
}

/// Cross-account access.
#[derive(Debug, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CrossAccountDoc {
    #[schemars(length(min = 1))]
    pub role_arn: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub external_id: Option<String>,
}

/// The original tool's S3 location for SSM output.
#[derive(Debug, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SsmOutputDoc {
    pub bucket: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key_prefix: Option<String>,
}

/// Failure policies.
#[derive(Debug, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum FailurePolicyDoc {
    Abort,
    Continue,
    Rollback,
}

/// A tier: the instances whose tier tag has this value.
#[derive(Debug, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TierDoc {
    /// The tier tag value.
    #[schemars(length(min = 1))]
    pub name: String,
    /// How to start the tier; without it the tier is not started.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start: Option<StartDoc>,
    /// How to stop the tier; without it the tier is not stopped.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stop: Option<StopDoc>,
    /// Named profiles applied on start.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub profiles: BTreeMap<String, ProfileDoc>,
    /// Load balancers (classic names or target-group ARNs) started instances are
    /// registered with, besides those they were taken out of.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub load_balancers: Vec<String>,
}

/// Start settings.
#[derive(Debug, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct StartDoc {
    /// Tiers start in ascending order; equal orders start together.
    #[schemars(range(min = -1_000_000, max = 1_000_000))]
    pub order: i64,
    /// Wait until the tier's instances are running before the next stage (default false).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wait: Option<bool>,
    /// Seconds to pause after this tier before the next stage (default 5).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0, max = 604_800))]
    pub delay: Option<u64>,
    /// A readiness gate to pass before the next stage.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ready: Option<ReadyDoc>,
}

/// A readiness gate.
#[derive(Debug, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ReadyDoc {
    pub gate: GateDoc,
    /// Seconds before the gate fails (default 600).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0, max = 604_800))]
    pub timeout: Option<u64>,
}

/// Readiness gates.
#[derive(Debug, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum GateDoc {
    /// EC2 instance and system status checks are ok.
    StatusChecks,
    /// The tier's load-balancer targets are healthy.
    LoadBalancerHealthy,
}

/// Stop settings.
#[derive(Debug, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct StopDoc {
    /// Tiers stop in ascending order; equal orders stop together.
    #[schemars(range(min = -1_000_000, max = 1_000_000))]
    pub order: i64,
    /// Wait until the tier's instances are stopped before the next stage (default false).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wait: Option<bool>,
    /// Seconds to pause after this tier before the next stage (default 5).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0, max = 604_800))]
    pub delay: Option<u64>,
    /// A file whose presence on an instance (checked through SSM) keeps it running.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub override_file: Option<OverrideFileDoc>,
    /// Never stop this tier (default false).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ignore: Option<bool>,
    /// Hibernate instead of stopping; instances without hibernation support are
    /// stopped normally (default false).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hibernate: Option<bool>,
}

/// The SSM override file.
#[derive(Debug, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct OverrideFileDoc {
    #[schemars(length(min = 1))]
    pub path: String,
    pub os: OsDoc,
}

/// Guest operating systems.
#[derive(Debug, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum OsDoc {
    Linux,
    Windows,
}

/// A profile: instance type and/or fleet subset.
#[derive(Debug, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(extend("minProperties" = 1))]
pub struct ProfileDoc {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1))]
    pub instance_type: Option<String>,
    /// How many of the tier's instances run: `"50%"` or a count.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fleet_subset: Option<FleetSubsetDoc>,
}

/// A percentage (`"50%"`) or a count of instances.
#[derive(Debug, Serialize, Deserialize, JsonSchema)]
#[serde(untagged)]
pub enum FleetSubsetDoc {
    Count(#[schemars(range(max = 1_000_000))] u32),
    Percent(#[schemars(regex(pattern = r"^(100|[1-9]?[0-9])%$"))] String),
}

/// The JSON Schema of the format, pretty-printed.
pub fn schema_json() -> String {
    let schema = schemars::schema_for!(FileDoc);
    let mut s = serde_json::to_string_pretty(&schema).expect("a schema serializes");
    s.push('\n');
    s
}

// ---- decoding ----

pub(crate) const FILE_KEYS: &[&str] = &["version", "calendars", "workloads"];
pub(crate) const WORKLOAD_KEYS: &[&str] = &[
    "name",
    "region",
    "workload_tag",
    "tier_tag_key",
    "vpc",
    "sns_topic",
    "cross_account",
    "ssm_output",
    "resize_delay",
    "disabled",
    "failure_policy",
    "exemption_tag_key",
    "schedules",
    "enforce",
    "tiers",
];
pub(crate) const TAG_KEYS: &[&str] = &["key", "value"];
pub(crate) const CROSS_ACCOUNT_KEYS: &[&str] = &["role_arn", "external_id"];
pub(crate) const SSM_OUTPUT_KEYS: &[&str] = &["bucket", "key_prefix"];
pub(crate) const TIER_KEYS: &[&str] = &["name", "start", "stop", "profiles", "load_balancers"];
pub(crate) const START_KEYS: &[&str] = &["order", "wait", "delay", "ready"];
pub(crate) const READY_KEYS: &[&str] = &["gate", "timeout"];
pub(crate) const STOP_KEYS: &[&str] = &[
    "order",
    "wait",
    "delay",
    "override_file",
    "ignore",
    "hibernate",
];
pub(crate) const OVERRIDE_KEYS: &[&str] = &["path", "os"];
pub(crate) const PROFILE_KEYS: &[&str] = &["instance_type", "fleet_subset"];

fn req_name(cx: &mut Cx, o: &Obj<'_>, k: &str, what: &str) -> Option<Name> {
    let (v, p) = o.require(cx, k, what)?;
    let s = walk::string(cx, v, &p)?;
    walk::name(cx, s, &p)
}

/// `Some(None)` when absent, `None` on error.
fn opt<T>(
    cx: &mut Cx,
    o: &Obj<'_>,
    k: &str,
    read: impl FnOnce(&mut Cx, &Value, &str) -> Option<T>,
) -> Option<Option<T>> {
    match o.get(k) {
        None => Some(None),
        Some((v, p)) => read(cx, v, &p).map(Some),
    }
}

fn opt_name(cx: &mut Cx, o: &Obj<'_>, k: &str) -> Option<Option<Name>> {
    opt(cx, o, k, |cx, v, p| {
        let s = walk::string(cx, v, p)?;
        walk::name(cx, s, p)
    })
}

fn parsed<T: std::str::FromStr<Err = String>>(cx: &mut Cx, v: &Value, p: &str) -> Option<T> {
    let s = walk::string(cx, v, p)?;
    s.parse::<T>().map_err(|e| cx.error(p, e)).ok()
}

/// Decodes one document of our format into workloads (with the path of each).
pub(crate) fn decode(cx: &mut Cx, doc: &Value) -> Vec<(String, Workload)> {
    let mut out = Vec::new();
    let Some(o) = Obj::new(
        cx,
        doc,
        "",
        "a workload file with `version` and `workloads`",
    ) else {
        return out;
    };
    o.check_keys(cx, FILE_KEYS, true);
    if let Some((v, p)) = o.require(cx, "version", "the format version, 1")
        && v.as_u64() != Some(VERSION)
    {
        cx.error(
            &p,
            format!("unsupported format version: expected 1, {}", found(v)),
        );
    }
    let calendars = match o.get("calendars") {
        Some((v, p)) => schedules::decode_calendars(cx, v, &p),
        None => Calendars::new(),
    };
    let Some((list, p)) = o.require(cx, "workloads", "a list of workloads") else {
        return out;
    };
    let Some(items) = list.as_array() else {
        cx.error(&p, format!("expected a list of workloads, {}", found(list)));
        return out;
    };
    if items.is_empty() {
        cx.error(&p, "the list is empty: expected at least one workload");
    }
    for (i, item) in items.iter().enumerate() {
        let path = walk::index(&p, i);
        if let Some(w) = decode_workload(cx, item, &path, &calendars) {
            out.push((path, w));
        }
    }
    out
}

fn decode_workload(cx: &mut Cx, v: &Value, path: &str, calendars: &Calendars) -> Option<Workload> {
    let o = Obj::new(cx, v, path, "a workload")?;
    o.check_keys(cx, WORKLOAD_KEYS, true);
    let before = cx.error_count();
    let name = req_name(cx, &o, "name", "the workload's name");
    let region = req_name(cx, &o, "region", "the region the instances run in");
    let workload_tag = o
        .require(
            cx,
            "workload_tag",
            "the tag every instance of the workload carries",
        )
        .and_then(|(v, p)| {
            let t = Obj::new(cx, v, &p, "a tag with `key` and `value`")?;
            t.check_keys(cx, TAG_KEYS, true);
            let key = req_name(cx, &t, "key", "the tag key");
            let value = req_name(cx, &t, "value", "the tag value");
            Some(Tag {
                key: key?,
                value: value?,
            })
        });
    let tier_tag_key = req_name(cx, &o, "tier_tag_key", "the tag key naming the tier");
    let vpc = opt_name(cx, &o, "vpc");
    let sns_topic = opt_name(cx, &o, "sns_topic");
    let cross_account = opt(cx, &o, "cross_account", |cx, v, p| {
        let c = Obj::new(cx, v, p, "cross-account settings")?;
        c.check_keys(cx, CROSS_ACCOUNT_KEYS, true);
        let role_arn = req_name(cx, &c, "role_arn", "the role to assume");
        let external_id = opt(cx, &c, "external_id", walk::string);
        Some(CrossAccount {
            role_arn: role_arn?,
            external_id: external_id?,
        })
    });
    let ssm_output = opt(cx, &o, "ssm_output", |cx, v, p| {
        let c = Obj::new(cx, v, p, "SSM output settings")?;
        c.check_keys(cx, SSM_OUTPUT_KEYS, true);
        let bucket = c
            .require(cx, "bucket", "the S3 bucket")
            .and_then(|(v, p)| walk::string(cx, v, &p));
        let key_prefix = opt(cx, &c, "key_prefix", walk::string);
        Some(SsmOutput {
            bucket: bucket?,
            key_prefix: key_prefix?,
        })
    });
    let resize_delay = opt(cx, &o, "resize_delay", walk::seconds);
    let disabled = opt(cx, &o, "disabled", walk::boolean);
    let failure_policy = opt(cx, &o, "failure_policy", parsed::<FailurePolicy>);
    let exemption_tag_key = opt_name(cx, &o, "exemption_tag_key");
    let tiers = o
        .require(cx, "tiers", "the list of tiers")
        .and_then(|(v, p)| decode_tiers(cx, v, &p));
    let schedules = opt(cx, &o, "schedules", |cx, v, p| {
        schedules::decode_schedules(cx, v, p, calendars)
    });
    let enforce = opt(cx, &o, "enforce", walk::boolean);
    if cx.error_count() > before {
        return None;
    }
    let header = WorkloadHeader {
        name: name?,
        region: region?,
        workload_tag: workload_tag?,
        tier_tag_key: tier_tag_key?,
        vpc: vpc?,
        cross_account: cross_account?,
        sns_topic: sns_topic?,
        ssm_output: ssm_output?,
        resize_delay_secs: resize_delay?.unwrap_or(DEFAULT_RESIZE_DELAY_SECS),
        disabled: disabled?.unwrap_or(false),
        failure_policy: failure_policy?.unwrap_or_default(),
        exemption_tag_key: exemption_tag_key?
            .unwrap_or_else(|| Name::new(DEFAULT_EXEMPTION_TAG_KEY).expect("non-empty")),
    };
    let mut w = Workload::new(header, tiers?)
        .map_err(|e| cx.error(path, e.to_string()))
        .ok()?;
    w.schedules = schedules?.unwrap_or_default();
    w.enforce = enforce?.unwrap_or(false);
    schedules::lint(cx, &w, path);
    Some(w)
}

fn decode_tiers(cx: &mut Cx, v: &Value, path: &str) -> Option<Vec<Tier>> {
    let Some(items) = v.as_array() else {
        cx.error(path, format!("expected a list of tiers, {}", found(v)));
        return None;
    };
    let mut tiers: Vec<Tier> = Vec::new();
    let mut first_seen: BTreeMap<String, String> = BTreeMap::new();
    let mut ok = true;
    for (i, item) in items.iter().enumerate() {
        let p = walk::index(path, i);
        match decode_tier(cx, item, &p) {
            Some(t) => {
                if let Some(first) = first_seen.get(t.name.as_str()) {
                    cx.error(
                        &walk::key(&p, "name"),
                        format!(
                            "duplicate tier name {:?} (first defined at {first})",
                            t.name.as_str()
                        ),
                    );
                    ok = false;
                } else {
                    first_seen.insert(t.name.to_string(), p);
                    tiers.push(t);
                }
            }
            None => ok = false,
        }
    }
    ok.then_some(tiers)
}

fn decode_sequencing(cx: &mut Cx, o: &Obj<'_>, action: &str) -> Option<ActionSpec> {
    let order = o
        .require(
            cx,
            "order",
            &format!("the tier's place in the {action} order"),
        )
        .and_then(|(v, p)| walk::order(cx, v, &p));
    let wait = opt(cx, o, "wait", walk::boolean);
    let delay = opt(cx, o, "delay", walk::seconds);
    Some(ActionSpec {
        order: order?,
        wait: wait?.unwrap_or(false),
        delay_secs: delay?.unwrap_or(DEFAULT_TIER_DELAY_SECS),
    })
}

fn decode_tier(cx: &mut Cx, v: &Value, path: &str) -> Option<Tier> {
    let o = Obj::new(cx, v, path, "a tier")?;
    o.check_keys(cx, TIER_KEYS, true);
    let name = req_name(cx, &o, "name", "the tier tag value");
    let start = opt(cx, &o, "start", |cx, v, p| {
        let s = Obj::new(cx, v, p, "start settings")?;
        s.check_keys(cx, START_KEYS, true);
        let sequencing = decode_sequencing(cx, &s, "start");
        let ready = opt(cx, &s, "ready", |cx, v, p| {
            let r = Obj::new(cx, v, p, "a readiness gate")?;
            r.check_keys(cx, READY_KEYS, true);
            let gate = r
                .require(cx, "gate", "status-checks or load-balancer-healthy")
                .and_then(|(v, p)| parsed::<Gate>(cx, v, &p));
            let timeout = opt(cx, &r, "timeout", walk::seconds);
            Some(Readiness {
                gate: gate?,
                timeout_secs: timeout?.unwrap_or(DEFAULT_GATE_TIMEOUT_SECS),
            })
        });
        Some(StartSpec {
            sequencing: sequencing?,
            ready: ready?,
        })
    });
    let stop = opt(cx, &o, "stop", |cx, v, p| {
        let s = Obj::new(cx, v, p, "stop settings")?;
        s.check_keys(cx, STOP_KEYS, true);
        let sequencing = decode_sequencing(cx, &s, "stop");
        let override_file = opt(cx, &s, "override_file", |cx, v, p| {
            let f = Obj::new(cx, v, p, "an override file with `path` and `os`")?;
            f.check_keys(cx, OVERRIDE_KEYS, true);
            let path = req_name(cx, &f, "path", "the file's path on the instance");
            let os = f
                .require(cx, "os", "linux or windows")
                .and_then(|(v, p)| parsed::<Os>(cx, v, &p));
            let (path, os) = (path?, os?);
            if let Err(e) = OverrideFile::check_path(path.as_str(), os) {
                cx.error(&walk::key(p, "path"), e);
                return None;
            }
            Some(OverrideFile { path, os })
        });
        let ignore = opt(cx, &s, "ignore", walk::boolean);
        let hibernate = opt(cx, &s, "hibernate", walk::boolean);
        Some(StopSpec {
            sequencing: sequencing?,
            override_file: override_file?,
            ignore: ignore?.unwrap_or(false),
            hibernate: hibernate?.unwrap_or(false),
        })
    });
    let profiles = opt(cx, &o, "profiles", decode_profiles);
    let load_balancers = opt(cx, &o, "load_balancers", |cx, v, p| {
        let Some(items) = v.as_array() else {
            cx.error(
                p,
                format!(
                    "expected a list of load balancer names or target-group ARNs, {}",
                    found(v)
                ),
            );
            return None;
        };
        let names: Vec<Option<Name>> = items
            .iter()
            .enumerate()
            .map(|(i, x)| {
                let p = walk::index(p, i);
                walk::string(cx, x, &p).and_then(|s| walk::name(cx, s, &p))
            })
            .collect();
        names.into_iter().collect::<Option<Vec<Name>>>()
    });
    Some(Tier {
        name: name?,
        start: start?,
        stop: stop?,
        profiles: profiles?.unwrap_or_default(),
        load_balancers: load_balancers?.unwrap_or_default(),
    })
}

fn decode_profiles(cx: &mut Cx, v: &Value, path: &str) -> Option<BTreeMap<Name, Profile>> {
    let o = Obj::new(cx, v, path, "profiles by name")?;
    let mut out = BTreeMap::new();
    let mut ok = true;
    for (pname, pv) in o.map {
        let p = walk::key(path, pname);
        let profile = (|| {
            let po = Obj::new(
                cx,
                pv,
                &p,
                "a profile with `instance_type` and/or `fleet_subset`",
            )?;
            po.check_keys(cx, PROFILE_KEYS, true);
            let instance_type = opt(cx, &po, "instance_type", |cx, v, p| {
                let s = walk::string(cx, v, p)?;
                InstanceType::new(s)
                    .map_err(|_| cx.error(p, "must not be empty"))
                    .ok()
            });
            let fleet_subset = opt(cx, &po, "fleet_subset", |cx, v, p| match v {
                Value::String(_) => crate::seed::fleet_subset(cx, v, p),
                Value::Number(n) if n.as_u64().is_some() => crate::seed::fleet_subset(cx, v, p),
                other => {
                    cx.error(
                        p,
                        format!(
                            "expected a percentage (\"50%\") or a count of instances (2), {}",
                            found(other)
                        ),
                    );
                    None
                }
            });
            Some(
                Profile::new(instance_type?, fleet_subset?).unwrap_or_else(|_| {
                    cx.warn(&p, "sets neither an instance type nor a fleet subset: read as no scaling (every member starts, at its current type)");
                    Profile::unscaled()
                }),
            )
        })();
        match (Name::new(pname.clone()), profile) {
            (Ok(n), Some(prof)) => {
                out.insert(n, prof);
            }
            (Err(_), _) => {
                cx.error(&p, "profile names must not be empty");
                ok = false;
            }
            (_, None) => ok = false,
        }
    }
    ok.then_some(out)
}

// ---- export ----

/// The document for `workloads`, with defaults left out.
pub fn encode(workloads: &[Workload]) -> FileDoc {
    FileDoc {
        version: VERSION,
        calendars: schedules::encode_calendars(workloads),
        workloads: workloads.iter().map(encode_workload).collect(),
    }
}

fn non_default<T: PartialEq>(v: T, default: T) -> Option<T> {
    (v != default).then_some(v)
}

fn encode_workload(w: &Workload) -> WorkloadDoc {
    WorkloadDoc {
        name: w.name.to_string(),
        region: w.region.to_string(),
        workload_tag: TagDoc {
            key: w.workload_tag.key.to_string(),
            value: w.workload_tag.value.to_string(),
        },
        tier_tag_key: w.tier_tag_key.to_string(),
        vpc: w.vpc.as_ref().map(Name::to_string),
        sns_topic: w.sns_topic.as_ref().map(Name::to_string),
        cross_account: w.cross_account.as_ref().map(|c| CrossAccountDoc {
            role_arn: c.role_arn.to_string(),
            external_id: c.external_id.clone(),
        }),
        ssm_output: w.ssm_output.as_ref().map(|s| SsmOutputDoc {
            bucket: s.bucket.clone(),
            key_prefix: s.key_prefix.clone(),
        }),
        resize_delay: non_default(w.resize_delay_secs, DEFAULT_RESIZE_DELAY_SECS),
        disabled: non_default(w.disabled, false),
        failure_policy: match w.failure_policy {
            FailurePolicy::Abort => None,
            FailurePolicy::Continue => Some(FailurePolicyDoc::Continue),
            FailurePolicy::Rollback => Some(FailurePolicyDoc::Rollback),
        },
        exemption_tag_key: non_default(w.exemption_tag_key.as_str(), DEFAULT_EXEMPTION_TAG_KEY)
            .map(str::to_string),
        schedules: schedules::encode(&w.schedules, false),
        enforce: non_default(w.enforce, false),
        tiers: w.tiers().iter().map(encode_tier).collect(),
    }
}

fn encode_tier(t: &Tier) -> TierDoc {
    TierDoc {
        name: t.name.to_string(),
        start: t.start.as_ref().map(|s| StartDoc {
            order: s.sequencing.order,
            wait: non_default(s.sequencing.wait, false),
            delay: non_default(s.sequencing.delay_secs, DEFAULT_TIER_DELAY_SECS),
            ready: s.ready.as_ref().map(|r| ReadyDoc {
                gate: match r.gate {
                    Gate::StatusChecks => GateDoc::StatusChecks,
                    Gate::LoadBalancerHealthy => GateDoc::LoadBalancerHealthy,
                },
                timeout: non_default(r.timeout_secs, DEFAULT_GATE_TIMEOUT_SECS),
            }),
        }),
        stop: t.stop.as_ref().map(|s| StopDoc {
            order: s.sequencing.order,
            wait: non_default(s.sequencing.wait, false),
            delay: non_default(s.sequencing.delay_secs, DEFAULT_TIER_DELAY_SECS),
            override_file: s.override_file.as_ref().map(|f| OverrideFileDoc {
                path: f.path.to_string(),
                os: match f.os {
                    Os::Linux => OsDoc::Linux,
                    Os::Windows => OsDoc::Windows,
                },
            }),
            ignore: non_default(s.ignore, false),
            hibernate: non_default(s.hibernate, false),
        }),
        load_balancers: t.load_balancers.iter().map(Name::to_string).collect(),
        profiles: t
            .profiles
            .iter()
            .map(|(n, p)| {
                (
                    n.to_string(),
                    ProfileDoc {
                        instance_type: p.instance_type.as_ref().map(InstanceType::to_string),
                        fleet_subset: p.fleet_subset.map(|fs| match fs {
                            FleetSubset::Count(n) => FleetSubsetDoc::Count(n),
                            FleetSubset::Percent(_) => FleetSubsetDoc::Percent(fs.to_string()),
                        }),
                    },
                )
            })
            .collect(),
    }
}

/// The fields the decoder accepts, by schema definition name (for a consistency test
/// against the generated schema).
pub fn decoder_fields() -> Vec<(&'static str, &'static [&'static str])> {
    vec![
        ("FileDoc", FILE_KEYS),
        ("WorkloadDoc", WORKLOAD_KEYS),
        ("TagDoc", TAG_KEYS),
        ("CrossAccountDoc", CROSS_ACCOUNT_KEYS),
        ("SsmOutputDoc", SSM_OUTPUT_KEYS),
        ("TierDoc", TIER_KEYS),
        ("StartDoc", START_KEYS),
        ("ReadyDoc", READY_KEYS),
        ("StopDoc", STOP_KEYS),
        ("OverrideFileDoc", OVERRIDE_KEYS),
        ("ProfileDoc", PROFILE_KEYS),
        ("ScheduleDoc", schedules::SCHEDULE_KEYS),
        ("PeriodDoc", schedules::PERIOD_KEYS),
        ("DaysDoc", schedules::DAYS_KEYS),
        ("CronDoc", schedules::CRON_KEYS),
        ("NamedSkipDoc", schedules::NAMED_SKIP_KEYS),
        ("CalendarDoc", schedules::CALENDAR_KEYS),
    ]
}
