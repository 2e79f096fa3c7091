//! No input makes a decoder panic: arbitrary text, and arbitrary documents built from
//! the formats' own field names (which reach deep into the decoders).

use ec2_scheduler_config::fleet::load_fleet;
use ec2_scheduler_config::{Format, Source, export, load};
use ec2_scheduler_core::Exemption;
use proptest::prelude::*;
use serde_json::{Map, Value};

const KEYS: &[&str] = &[
    "SpecName",
    "WorkloadRegion",
    "WorkloadFilterTagName",
    "WorkloadFilterTagValue",
    "TierFilterTagName",
    "VPC_ID",
    "SNSTopicName",
    "ScaleInstanceDelay",
    "DisableAllSchedulingActions",
    "CrossAccountRole",
    "CrossAccountRoleExternalId",
    "FailurePolicy",
    "ExemptionTagName",
    "TierTagValue",
    "TierStart",
    "TierStop",
    "TierScaling",
    "TierSequence",
    "TierSynchronization",
    "InterTierOrchestrationDelay",
    "ReadinessGate",
    "ReadinessTimeout",
    "TierStopOverrideFilename",
    "TierStopOverrideOperatingSystem",
    "IgnoreStop",
    "InstanceType",
    "FleetSubset",
    "WorkloadSpecification",
    "TierSpecification",
    "PutRequest",
    "Item",
    "Items",
    "S",
    "N",
    "BOOL",
    "M",
    "L",
    "NULL",
    "B",
    "SS",
    "version",
    "workloads",
    "workload",
    "tiers",
    "table",
    "name",
    "region",
    "workload_tag",
    "key",
    "value",
    "tier_tag_key",
    "vpc",
    "start",
    "stop",
    "order",
    "wait",
    "delay",
    "ready",
    "gate",
    "timeout",
    "override_file",
    "path",
    "os",
    "ignore",
    "profiles",
    "instance_type",
    "fleet_subset",
    "cross_account",
    "role_arn",
    "ssm_output",
    "bucket",
    "instances",
    "id",
    "state",
    "type",
    "az",
    "tags",
    "load_balancers",
];

fn leaf() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<f64>().prop_map(Value::from),
        prop::sample::select(vec![
            "",
            "1",
            "0",
            "True",
            "50%",
            "150%",
            "-1",
            "Linux",
            "x",
            "running",
            "2026-01-01"
        ])
        .prop_map(|s| Value::String(s.to_string())),
        ".{0,8}".prop_map(Value::String),
    ]
}

fn document() -> impl Strategy<Value = Value> {
    leaf().prop_recursive(5, 64, 8, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..5).prop_map(Value::Array),
            proptest::collection::vec((prop::sample::select(KEYS), inner), 0..8).prop_map(|kv| {
                Value::Object(
                    kv.into_iter()
                        .map(|(k, v)| (k.to_string(), v))
                        .collect::<Map<_, _>>(),
                )
            }),
        ]
    })
}

fn try_all(text: &str) {
    let _ = load(&[Source { name: "f", text }]);
    let _ = load_fleet("f", text);
    // Stored-exemption files (`plan --exemptions`) are read as the command line does.
    if let Ok(list) = serde_json::from_str::<Vec<Exemption>>(text) {
        for e in &list {
            let _ = e.check();
        }
    }
}

/// Whatever loads exports to every format, and each export loads back to the same
/// workloads (so `export` never writes a file that `validate` refuses).
fn round_trips(text: &str) -> Result<(), TestCaseError> {
    let Ok(first) = load(&[Source { name: "f", text }]) else {
        return Ok(());
    };
    for format in Format::ALL {
        let out = export(&first.workloads, format);
        match load(&[Source {
            name: "exported",
            text: &out,
        }]) {
            Ok(again) => prop_assert_eq!(&again.workloads, &first.workloads, "{}", format),
            Err(e) => prop_assert!(false, "{format} export does not load: {e}\n{out}"),
        }
    }
    Ok(())
}

/// The repository's example files, parsed.
fn examples() -> Vec<Value> {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let json = |p: &str| {
        let t = std::fs::read_to_string(root.join(p)).unwrap();
        serde_json::Deserializer::from_str(&t)
            .into_iter::<Value>()
            .map(Result::unwrap)
            .collect::<Vec<_>>()
    };
    let yaml = |p: &str| {
        let t = std::fs::read_to_string(root.join(p)).unwrap();
        serde_yaml_ng::from_str::<Value>(&t).unwrap()
    };
    let mut out = json("examples/seed/example.json");
    out.push(Value::Array(json("examples/seed/example.json")));
    out.push(yaml("examples/workloads.yaml"));
    out.push(yaml("examples/demo.yaml"));
    out.push(json("examples/seed/fleet-running.json").remove(0));
    out
}

/// Every path to a value inside `v`.
fn paths(v: &Value, here: Vec<PathStep>, out: &mut Vec<Vec<PathStep>>) {
    out.push(here.clone());
    match v {
        Value::Array(a) => {
            for (i, x) in a.iter().enumerate() {
                let mut p = here.clone();
                p.push(PathStep::Index(i));
                paths(x, p, out);
            }
        }
        Value::Object(m) => {
            for (k, x) in m {
                let mut p = here.clone();
                p.push(PathStep::Key(k.clone()));
                paths(x, p, out);
            }
        }
        _ => {}
    }
}

#[derive(Debug, Clone)]
enum PathStep {
    Index(usize),
    Key(String),
}

fn at<'v>(v: &'v mut Value, path: &[PathStep]) -> &'v mut Value {
    path.iter().fold(v, |v, step| match step {
        PathStep::Index(i) => &mut v[*i],
        PathStep::Key(k) => &mut v[k.as_str()],
    })
}

/// A valid example with one value somewhere inside it replaced, or removed: inputs
/// that are nearly right, which reach every check of the decoders.
fn mutated() -> impl Strategy<Value = Value> {
    let all = examples();
    (
        0..all.len(),
        any::<prop::sample::Index>(),
        document(),
        any::<bool>(),
    )
        .prop_map(move |(which, index, replacement, remove)| {
            let mut doc = all[which].clone();
            let mut found = Vec::new();
            paths(&doc, Vec::new(), &mut found);
            let path = index.get(&found).clone();
            match (path.split_last(), remove) {
                (Some((PathStep::Key(k), parent)), true) => {
                    if let Value::Object(m) = at(&mut doc, parent) {
                        m.shift_remove(k);
                    }
                }
                _ => *at(&mut doc, &path) = replacement,
            }
            doc
        })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2048, ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_text_does_not_panic(text in ".{0,200}") {
        try_all(&text);
    }

    #[test]
    fn arbitrary_documents_do_not_panic(doc in document()) {
        try_all(&serde_json::to_string(&doc).unwrap());
        try_all(&serde_yaml_ng::to_string(&doc).unwrap());
    }

    #[test]
    fn nearly_valid_files_do_not_panic_and_what_loads_round_trips(doc in mutated()) {
        let json = serde_json::to_string_pretty(&doc).unwrap();
        let yaml = serde_yaml_ng::to_string(&doc).unwrap();
        try_all(&json);
        try_all(&yaml);
        round_trips(&json)?;
        round_trips(&yaml)?;
    }
}
