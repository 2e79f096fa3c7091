//! The original tool's DynamoDB items: `WorkloadSpecification` (hash key `SpecName`)
//! and `TierSpecification` (hash key `SpecName`, range key `TierTagValue`).
//!
//! Items arrive as plain JSON (as shown in the original README) or DynamoDB-typed JSON
//! (`{"S": "..."}`, `N`, `BOOL`, `M`, `L`), with numbers and booleans as strings or
//! typed. As in the original, unknown attributes are warnings, not errors.
//!
//! Attributes beyond the original, so that every setting of the model can live in the
//! same tables: `FailurePolicy` and `ExemptionTagName` on the workload item,
//! `ReadinessGate` and `ReadinessTimeout` in `TierStart`.

use std::collections::BTreeMap;

use ec2_scheduler_core::model::{
    ActionSpec, CrossAccount, DEFAULT_EXEMPTION_TAG_KEY, DEFAULT_GATE_TIMEOUT_SECS,
    DEFAULT_RESIZE_DELAY_SECS, DEFAULT_TIER_DELAY_SECS, FailurePolicy, FleetSubset, Gate,
    InstanceType, Name, Os, OverrideFile, Profile, Readiness, SsmOutput, StartSpec, StopSpec, Tag,
    Tier, Workload, WorkloadHeader,
};
use ec2_scheduler_core::schedule::Schedule;
use serde_json::{Map, Value, json};

use crate::diag::Cx;
use crate::schedules;
use crate::walk::{self, Obj, found};

pub(crate) const WORKLOAD_TABLE: &str = "WorkloadSpecification";
pub(crate) const TIER_TABLE: &str = "TierSpecification";

const WORKLOAD_KEYS: &[&str] = &[
    "SpecName",
    "WorkloadRegion",
    "WorkloadFilterTagName",
    "WorkloadFilterTagValue",
    "TierFilterTagName",
    "VPC_ID",
    "SNSTopicName",
    "SSMS3BucketName",
    "SSMS3KeyPrefixName",
    "ScaleInstanceDelay",
    "DisableAllSchedulingActions",
    "CrossAccountRole",
    "CrossAccountRoleExternalId",
    "FailurePolicy",
    "ExemptionTagName",
    "Schedules",
    "Enforce",
    // Written by ec2-scheduler's DynamoDB store for conditional writes.
    "Ec2SchedulerRevision",
];
const TIER_KEYS: &[&str] = &[
    "SpecName",
    "TierTagValue",
    "TierStart",
    "TierStop",
    "TierScaling",
    "TierLoadBalancers",
    "Ec2SchedulerRevision",
];
const START_KEYS: &[&str] = &[
    "TierSequence",
    "TierSynchronization",
    "InterTierOrchestrationDelay",
    "ReadinessGate",
    "ReadinessTimeout",
];
const STOP_KEYS: &[&str] = &[
    "TierSequence",
    "TierSynchronization",
    "InterTierOrchestrationDelay",
    "TierStopOverrideFilename",
    "TierStopOverrideOperatingSystem",
    "IgnoreStop",
    "Hibernate",
];
const PROFILE_KEYS: &[&str] = &["InstanceType", "FleetSubset"];

/// Which table an item belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Table {
    Workload,
    Tier,
}

/// A decoded workload item.
pub(crate) struct WorkloadItem {
    pub header: WorkloadHeader,
    pub schedules: Vec<Schedule>,
    pub enforce: bool,
}

/// A decoded tier item.
pub(crate) struct TierItem {
    pub spec_name: String,
    pub tier: Tier,
}

/// Whether `item` looks like DynamoDB-typed JSON: every attribute is a one-key mapping
/// whose key is a DynamoDB type descriptor.
pub(crate) fn is_typed(item: &Map<String, Value>) -> bool {
    !item.is_empty()
        && item.values().all(|v| match v {
            Value::Object(m) if m.len() == 1 => {
                let k = m.keys().next().expect("one key");
                matches!(
                    k.as_str(),
                    "S" | "N" | "B" | "BOOL" | "NULL" | "M" | "L" | "SS" | "NS" | "BS"
                )
            }
            _ => false,
        })
}

/// Turns one DynamoDB-typed attribute value into plain JSON (numbers stay strings, as
/// DynamoDB sends them).
pub(crate) fn untype(cx: &mut Cx, v: &Value, path: &str) -> Value {
    let Some((ty, inner)) = v
        .as_object()
        .filter(|m| m.len() == 1)
        .and_then(|m| m.iter().next())
    else {
        cx.error(
            path,
            format!(
                "expected a DynamoDB attribute value such as {{\"S\": \"...\"}}, {}",
                found(v)
            ),
        );
        return Value::Null;
    };
    match (ty.as_str(), inner) {
        ("S", Value::String(s)) | ("N", Value::String(s)) => Value::String(s.clone()),
        ("N", Value::Number(n)) => Value::String(n.to_string()),
        ("BOOL", Value::Bool(b)) => Value::Bool(*b),
        ("NULL", _) => Value::Null,
        ("M", Value::Object(m)) => Value::Object(untype_map(cx, m, path)),
        ("L", Value::Array(a)) => Value::Array(
            a.iter()
                .enumerate()
                .map(|(i, x)| untype(cx, x, &walk::index(path, i)))
                .collect(),
        ),
        ("SS" | "NS", Value::Array(a)) => Value::Array(a.clone()),
        ("B" | "BS", _) => {
            cx.error(path, "binary attributes are not supported here");
            Value::Null
        }
        (ty, other) => {
            cx.error(
                path,
                format!("malformed DynamoDB {ty} value, {}", found(other)),
            );
            Value::Null
        }
    }
}

/// Untypes every attribute of a typed item.
pub(crate) fn untype_map(cx: &mut Cx, m: &Map<String, Value>, path: &str) -> Map<String, Value> {
    m.iter()
        .map(|(k, v)| (k.clone(), untype(cx, v, &walk::key(path, k))))
        .collect()
}

/// Marshals plain JSON into DynamoDB-typed JSON (strings stay `S`).
pub(crate) fn typed(v: &Value) -> Value {
    match v {
        Value::String(s) => json!({ "S": s }),
        Value::Number(n) => json!({ "N": n.to_string() }),
        Value::Bool(b) => json!({ "BOOL": b }),
        Value::Null => json!({ "NULL": true }),
        Value::Array(a) => json!({ "L": a.iter().map(typed).collect::<Vec<_>>() }),
        Value::Object(m) => json!({ "M": typed_map(m) }),
    }
}

pub(crate) fn typed_map(m: &Map<String, Value>) -> Map<String, Value> {
    m.iter().map(|(k, v)| (k.clone(), typed(v))).collect()
}

/// Guesses the table of a plain item from its attributes.
pub(crate) fn table_of(item: &Map<String, Value>) -> Option<Table> {
    if item.contains_key("TierTagValue") {
        Some(Table::Tier)
    } else if [
        "WorkloadFilterTagName",
        "TierFilterTagName",
        "WorkloadRegion",
    ]
    .iter()
    .any(|k| item.contains_key(*k))
    {
        Some(Table::Workload)
    } else {
        None
    }
}

/// A readable root path for an item: its position (`[3]`, when it is in a list)
/// followed by its table and key, e.g. `[3] TierSpecification[ExampleTestCase/Role_Web]`.
pub(crate) fn item_path(table: Table, item: &Map<String, Value>, position: &str) -> String {
    let s = |k: &str| {
        item.get(k)
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
    };
    let name = match (table, s("SpecName"), s("TierTagValue")) {
        (Table::Workload, Some(spec), _) => format!("{WORKLOAD_TABLE}[{spec}]"),
        (Table::Tier, Some(spec), Some(tier)) => format!("{TIER_TABLE}[{spec}/{tier}]"),
        (Table::Workload, ..) => WORKLOAD_TABLE.to_string(),
        (Table::Tier, ..) => TIER_TABLE.to_string(),
    };
    if position.is_empty() {
        name
    } else {
        format!("{position} {name}")
    }
}

fn req_name(cx: &mut Cx, o: &Obj<'_>, k: &str, what: &str) -> Option<Name> {
    let (v, p) = o.require(cx, k, what)?;
    let s = walk::seed_string(cx, v, &p)?;
    walk::name(cx, s, &p)
}

fn opt_name(cx: &mut Cx, o: &Obj<'_>, k: &str) -> Option<Option<Name>> {
    match o.get(k) {
        None => Some(None),
        Some((v, p)) => {
            let s = walk::seed_string(cx, v, &p)?;
            walk::name(cx, s, &p).map(Some)
        }
    }
}

/// Decodes a plain WorkloadSpecification item.
pub(crate) fn decode_workload(cx: &mut Cx, item: &Value, path: &str) -> Option<WorkloadItem> {
    let o = Obj::new(cx, item, path, "a WorkloadSpecification item")?;
    o.check_keys(cx, WORKLOAD_KEYS, false);
    let before = cx.error_count();
    let name = req_name(cx, &o, "SpecName", "the workload's name");
    let region = req_name(cx, &o, "WorkloadRegion", "the region the instances run in");
    let tag_key = req_name(cx, &o, "WorkloadFilterTagName", "the workload tag key");
    let tag_value = req_name(cx, &o, "WorkloadFilterTagValue", "the workload tag value");
    let tier_tag_key = req_name(cx, &o, "TierFilterTagName", "the tier tag key");
    let vpc = opt_name(cx, &o, "VPC_ID");
    let sns_topic = opt_name(cx, &o, "SNSTopicName");
    let bucket = o
        .get("SSMS3BucketName")
        .and_then(|(v, p)| walk::seed_string(cx, v, &p));
    let prefix = o
        .get("SSMS3KeyPrefixName")
        .and_then(|(v, p)| walk::seed_string(cx, v, &p));
    let resize_delay = match o.get("ScaleInstanceDelay") {
        None => Some(DEFAULT_RESIZE_DELAY_SECS),
        Some((v, p)) => walk::seed_seconds(cx, v, &p),
    };
    let disabled = o
        .get("DisableAllSchedulingActions")
        .is_some_and(|(v, p)| kill_switch(cx, v, &p));
    let role = opt_name(cx, &o, "CrossAccountRole");
    let external_id = o
        .get("CrossAccountRoleExternalId")
        .and_then(|(v, p)| walk::seed_string(cx, v, &p));
    if external_id.is_some() && matches!(role, Some(None)) {
        cx.warn(
            &walk::key(path, "CrossAccountRoleExternalId"),
            "is ignored without CrossAccountRole",
        );
    }
    let failure_policy = match o.get("FailurePolicy") {
        None => Some(FailurePolicy::default()),
        Some((v, p)) => walk::seed_string(cx, v, &p)
            .and_then(|s| s.parse().map_err(|e: String| cx.error(&p, e)).ok()),
    };
    let exemption_tag_key = match o.get("ExemptionTagName") {
        None => Name::new(DEFAULT_EXEMPTION_TAG_KEY).ok(),
        Some((v, p)) => walk::seed_string(cx, v, &p).and_then(|s| walk::name(cx, s, &p)),
    };
    // Schedules in the shape of ec2-scheduler's YAML, with the dates of calendars
    // written into each schedule.
    let schedules = match o.get("Schedules") {
        None => Some(Vec::new()),
        Some((v, p)) => {
            let v = match v {
                Value::String(text) => serde_json::from_str(text)
                    .map_err(|e| cx.error(&p, format!("expected a list of schedules as JSON: {e}")))
                    .ok(),
                v => Some(v.clone()),
            };
            v.and_then(|v| schedules::decode_schedules(cx, &v, &p, &schedules::Calendars::new()))
        }
    };
    let enforce = match o.get("Enforce") {
        None => Some(false),
        Some((v, p)) => walk::seed_bool(cx, v, &p),
    };
    if cx.error_count() > before {
        return None;
    }
    Some(WorkloadItem {
        schedules: schedules?,
        enforce: enforce?,
        header: WorkloadHeader {
            name: name?,
            region: region?,
            workload_tag: Tag {
                key: tag_key?,
                value: tag_value?,
            },
            tier_tag_key: tier_tag_key?,
            vpc: vpc?,
            cross_account: role?.map(|role_arn| CrossAccount {
                role_arn,
                external_id,
            }),
            sns_topic: sns_topic?,
            ssm_output: bucket.map(|bucket| SsmOutput {
                bucket,
                key_prefix: prefix,
            }),
            resize_delay_secs: resize_delay?,
            disabled,
            failure_policy: failure_policy?,
            exemption_tag_key: exemption_tag_key?,
        },
    })
}

/// `DisableAllSchedulingActions`: the original disables only on the string "1". The
/// kill switch is a safety switch, so it fails closed: the usual spellings of yes
/// (`"1"`, `"true"`, `"yes"`, `"on"`, 1, true) disable, the usual spellings of no
/// enable, and any other value disables the workload with a warning naming it.
fn kill_switch(cx: &mut Cx, v: &Value, path: &str) -> bool {
    walk::fail_closed(
        cx,
        v,
        path,
        "the kill switch",
        "the workload is disabled to be safe; write \"1\" to disable it or \"0\" to enable it",
    )
}

/// Decodes a plain TierSpecification item.
pub(crate) fn decode_tier(cx: &mut Cx, item: &Value, path: &str) -> Option<TierItem> {
    let o = Obj::new(cx, item, path, "a TierSpecification item")?;
    o.check_keys(cx, TIER_KEYS, false);
    let before = cx.error_count();
    let spec_name = o
        .require(cx, "SpecName", "the workload this tier belongs to")
        .and_then(|(v, p)| walk::seed_string(cx, v, &p));
    let name = req_name(cx, &o, "TierTagValue", "the tier tag value");
    let start = o.get("TierStart").map(|(v, p)| decode_start(cx, v, &p));
    let stop = o.get("TierStop").map(|(v, p)| decode_stop(cx, v, &p));
    let profiles = match o.get("TierScaling") {
        None => Some(BTreeMap::new()),
        Some((v, p)) => decode_scaling(cx, v, &p),
    };
    // A list of names/ARNs, or one string with commas between them.
    let load_balancers = match o.get("TierLoadBalancers") {
        None => Some(Vec::new()),
        Some((Value::Array(items), p)) => items
            .iter()
            .enumerate()
            .map(|(i, x)| {
                let p = walk::index(&p, i);
                walk::seed_string(cx, x, &p).and_then(|s| walk::name(cx, s, &p))
            })
            .collect::<Vec<_>>()
            .into_iter()
            .collect::<Option<Vec<Name>>>(),
        Some((Value::String(s), p)) => s
            .split(',')
            .map(|x| walk::name(cx, x.trim().to_string(), &p))
            .collect::<Vec<_>>()
            .into_iter()
            .collect::<Option<Vec<Name>>>(),
        Some((other, p)) => {
            cx.error(
                &p,
                format!(
                    "expected a list of load balancer names or target-group ARNs, {}",
                    found(other)
                ),
            );
            None
        }
    };
    if start.is_none() && stop.is_none() {
        cx.warn(
            path,
            "the tier has neither TierStart nor TierStop: it is never actioned",
        );
    }
    if cx.error_count() > before {
        return None;
    }
    Some(TierItem {
        spec_name: spec_name?,
        tier: Tier {
            name: name?,
            start: start.map(|s| s.expect("no errors")),
            stop: stop.map(|s| s.expect("no errors")),
            profiles: profiles?,
            load_balancers: load_balancers?,
        },
    })
}

fn decode_sequencing(cx: &mut Cx, o: &Obj<'_>, action: &str) -> Option<ActionSpec> {
    let order = o
        .require(
            cx,
            "TierSequence",
            &format!("the tier's place in the {action} order"),
        )
        .and_then(|(v, p)| walk::seed_order(cx, v, &p));
    let wait = match o.get("TierSynchronization") {
        None => Some(false),
        Some((v, p)) => walk::seed_bool(cx, v, &p),
    };
    let delay = match o.get("InterTierOrchestrationDelay") {
        None => Some(DEFAULT_TIER_DELAY_SECS),
        Some((v, p)) => walk::seed_seconds(cx, v, &p),
    };
    Some(ActionSpec {
        order: order?,
        wait: wait?,
        delay_secs: delay?,
    })
}

fn decode_start(cx: &mut Cx, v: &Value, path: &str) -> Option<StartSpec> {
    let o = Obj::new(cx, v, path, "TierStart settings")?;
    o.check_keys(cx, START_KEYS, false);
    let sequencing = decode_sequencing(cx, &o, "start");
    let gate = o.get("ReadinessGate").map(|(v, p)| {
        walk::seed_string(cx, v, &p)
            .and_then(|s| s.parse::<Gate>().map_err(|e| cx.error(&p, e)).ok())
    });
    let timeout = match o.get("ReadinessTimeout") {
        None => Some(DEFAULT_GATE_TIMEOUT_SECS),
        Some((v, p)) => walk::seed_seconds(cx, v, &p),
    };
    if gate.is_none() && o.get("ReadinessTimeout").is_some() {
        cx.warn(
            &walk::key(path, "ReadinessTimeout"),
            "is ignored without ReadinessGate",
        );
    }
    let ready = match gate {
        None => None,
        Some(g) => Some(Readiness {
            gate: g?,
            timeout_secs: timeout?,
        }),
    };
    Some(StartSpec {
        sequencing: sequencing?,
        ready,
    })
}

fn decode_stop(cx: &mut Cx, v: &Value, path: &str) -> Option<StopSpec> {
    let o = Obj::new(cx, v, path, "TierStop settings")?;
    o.check_keys(cx, STOP_KEYS, false);
    let sequencing = decode_sequencing(cx, &o, "stop");
    let file = opt_name(cx, &o, "TierStopOverrideFilename");
    let os = o.get("TierStopOverrideOperatingSystem");
    let override_file = match (file, os) {
        (None, _) => None,
        (Some(None), None) => None,
        (Some(None), Some((_, p))) => {
            cx.warn(&p, "is ignored without TierStopOverrideFilename");
            None
        }
        (Some(Some(_)), None) => {
            cx.error(
                &walk::key(path, "TierStopOverrideOperatingSystem"),
                "is required with TierStopOverrideFilename: expected Linux or Windows",
            );
            None
        }
        (Some(Some(path_name)), Some((v, p))) => walk::seed_string(cx, v, &p)
            .and_then(|s| s.parse::<Os>().map_err(|e| cx.error(&p, e)).ok())
            .and_then(
                |os| match OverrideFile::check_path(path_name.as_str(), os) {
                    Ok(()) => Some(OverrideFile {
                        path: path_name,
                        os,
                    }),
                    Err(e) => {
                        cx.error(&walk::key(path, "TierStopOverrideFilename"), e);
                        None
                    }
                },
            ),
    };
    // A safety setting: a value that cannot be read keeps the tier running.
    let ignore = match o.get("IgnoreStop") {
        None => false,
        Some((v, p)) => walk::fail_closed(
            cx,
            v,
            &p,
            "IgnoreStop",
            "the tier is never stopped to be safe; write \"True\" or \"False\"",
        ),
    };
    let hibernate = match o.get("Hibernate") {
        None => Some(false),
        Some((v, p)) => walk::seed_bool(cx, v, &p),
    };
    Some(StopSpec {
        sequencing: sequencing?,
        override_file,
        ignore,
        hibernate: hibernate?,
    })
}

fn decode_scaling(cx: &mut Cx, v: &Value, path: &str) -> Option<BTreeMap<Name, Profile>> {
    let o = Obj::new(cx, v, path, "TierScaling profiles")?;
    let mut profiles = BTreeMap::new();
    let mut ok = true;
    for (pname, pv) in o.map {
        let p = walk::key(path, pname);
        let profile = match pv {
            // {profile: "t2.nano"}
            Value::String(t) => match InstanceType::new(t.clone()) {
                Ok(t) => Profile::new(Some(t), None).ok(),
                Err(_) => {
                    cx.error(
                        &p,
                        "expected an instance type such as \"t3.medium\", found \"\"",
                    );
                    None
                }
            },
            // {profile: {InstanceType: ..., FleetSubset: ...}}
            Value::Object(_) => decode_profile(cx, pv, &p),
            other => {
                cx.error(
                    &p,
                    format!(
                        "expected an instance type (\"t3.medium\") or a mapping with InstanceType and/or FleetSubset, {}",
                        found(other)
                    ),
                );
                None
            }
        };
        match (Name::new(pname.clone()), profile) {
            (Ok(n), Some(prof)) => {
                profiles.insert(n, prof);
            }
            (Err(_), _) => {
                cx.error(&p, "profile names must not be empty");
                ok = false;
            }
            (_, None) => ok = false,
        }
    }
    ok.then_some(profiles)
}

fn decode_profile(cx: &mut Cx, v: &Value, path: &str) -> Option<Profile> {
    let o = Obj::new(cx, v, path, "a profile")?;
    o.check_keys(cx, PROFILE_KEYS, false);
    let before = cx.error_count();
    let instance_type = o.get("InstanceType").and_then(|(v, p)| {
        let s = walk::seed_string(cx, v, &p)?;
        InstanceType::new(s)
            .map_err(|_| {
                cx.error(
                    &p,
                    "expected an instance type such as \"t3.medium\", found \"\"",
                )
            })
            .ok()
    });
    let fleet_subset = o
        .get("FleetSubset")
        .and_then(|(v, p)| fleet_subset(cx, v, &p));
    if cx.error_count() > before {
        return None;
    }
    Some(Profile::new(instance_type, fleet_subset).unwrap_or_else(|_| {
        cx.warn(path, "sets neither an instance type nor a fleet subset: read as no scaling (every member starts, at its current type)");
        Profile::unscaled()
    }))
}

/// A fleet subset as a string (`"50%"`, `"2"`) or a number.
pub(crate) fn fleet_subset(cx: &mut Cx, v: &Value, path: &str) -> Option<FleetSubset> {
    let text = match v {
        Value::String(s) => s.clone(),
        Value::Number(n) => n.to_string(),
        other => {
            cx.error(
                path,
                format!(
                    "expected a percentage (\"50%\") or a count (\"2\"), {}",
                    found(other)
                ),
            );
            return None;
        }
    };
    text.parse::<FleetSubset>()
        .map_err(|e| cx.error(path, e.to_string()))
        .ok()
}

// ---- export ----

/// The workload item in the original's plain-JSON style (numbers as strings).
pub(crate) fn encode_workload(w: &Workload) -> Map<String, Value> {
    let mut m = Map::new();
    let mut put = |k: &str, v: String| {
        m.insert(k.to_string(), Value::String(v));
    };
    put("SpecName", w.name.to_string());
    put("WorkloadRegion", w.region.to_string());
    put("WorkloadFilterTagName", w.workload_tag.key.to_string());
    put("WorkloadFilterTagValue", w.workload_tag.value.to_string());
    put("TierFilterTagName", w.tier_tag_key.to_string());
    if let Some(vpc) = &w.vpc {
        put("VPC_ID", vpc.to_string());
    }
    if let Some(t) = &w.sns_topic {
        put("SNSTopicName", t.to_string());
    }
    if let Some(s) = &w.ssm_output {
        put("SSMS3BucketName", s.bucket.clone());
        if let Some(p) = &s.key_prefix {
            put("SSMS3KeyPrefixName", p.clone());
        }
    }
    put("ScaleInstanceDelay", w.resize_delay_secs.to_string());
    put(
        "DisableAllSchedulingActions",
        if w.disabled { "1" } else { "0" }.to_string(),
    );
    if let Some(c) = &w.cross_account {
        put("CrossAccountRole", c.role_arn.to_string());
        if let Some(e) = &c.external_id {
            put("CrossAccountRoleExternalId", e.clone());
        }
    }
    put("FailurePolicy", w.failure_policy.as_str().to_string());
    put("ExemptionTagName", w.exemption_tag_key.to_string());
    if w.enforce {
        put("Enforce", "True".to_string());
    }
    if !w.schedules.is_empty() {
        let docs = schedules::encode(&w.schedules, true);
        m.insert(
            "Schedules".to_string(),
            serde_json::to_value(docs).expect("schedules serialize"),
        );
    }
    m
}

fn bool_str(b: bool) -> Value {
    Value::String(if b { "True" } else { "False" }.to_string())
}

fn encode_sequencing(s: &ActionSpec) -> Map<String, Value> {
    let mut m = Map::new();
    m.insert("TierSequence".into(), Value::String(s.order.to_string()));
    m.insert("TierSynchronization".into(), bool_str(s.wait));
    m.insert(
        "InterTierOrchestrationDelay".into(),
        Value::String(s.delay_secs.to_string()),
    );
    m
}

/// A tier item in the original's plain-JSON style.
pub(crate) fn encode_tier(w: &Workload, t: &Tier) -> Map<String, Value> {
    let mut m = Map::new();
    m.insert("SpecName".into(), Value::String(w.name.to_string()));
    m.insert("TierTagValue".into(), Value::String(t.name.to_string()));
    if let Some(s) = &t.start {
        let mut sm = encode_sequencing(&s.sequencing);
        if let Some(r) = &s.ready {
            sm.insert(
                "ReadinessGate".into(),
                Value::String(r.gate.as_str().into()),
            );
            sm.insert(
                "ReadinessTimeout".into(),
                Value::String(r.timeout_secs.to_string()),
            );
        }
        m.insert("TierStart".into(), Value::Object(sm));
    }
    if let Some(s) = &t.stop {
        let mut sm = encode_sequencing(&s.sequencing);
        if let Some(f) = &s.override_file {
            sm.insert(
                "TierStopOverrideFilename".into(),
                Value::String(f.path.to_string()),
            );
            sm.insert(
                "TierStopOverrideOperatingSystem".into(),
                Value::String(f.os.as_str().into()),
            );
        }
        if s.ignore {
            sm.insert("IgnoreStop".into(), bool_str(true));
        }
        if s.hibernate {
            sm.insert("Hibernate".into(), bool_str(true));
        }
        m.insert("TierStop".into(), Value::Object(sm));
    }
    if !t.profiles.is_empty() {
        let scaling: Map<String, Value> = t
            .profiles
            .iter()
            .map(|(name, p)| {
                let v = match (&p.instance_type, &p.fleet_subset) {
                    (Some(it), None) => Value::String(it.to_string()),
                    (it, fs) => {
                        let mut pm = Map::new();
                        if let Some(it) = it {
                            pm.insert("InstanceType".into(), Value::String(it.to_string()));
                        }
                        if let Some(fs) = fs {
                            pm.insert("FleetSubset".into(), Value::String(fs.to_string()));
                        }
                        Value::Object(pm)
                    }
                };
                (name.to_string(), v)
            })
            .collect();
        m.insert("TierScaling".into(), Value::Object(scaling));
    }
    if !t.load_balancers.is_empty() {
        let lbs = t
            .load_balancers
            .iter()
            .map(|n| Value::String(n.to_string()))
            .collect();
        m.insert("TierLoadBalancers".into(), Value::Array(lbs));
    }
    m
}
