//! No input makes a decoder panic: arbitrary text, and arbitrary documents built from
//! the formats' own field names (which reach deep into the decoders).

use ec2_scheduler_config::fleet::load_fleet;
use ec2_scheduler_config::{Source, load};
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
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_text_does_not_panic(text in ".{0,200}") {
        try_all(&text);
    }

    #[test]
    fn arbitrary_documents_do_not_panic(doc in document()) {
        try_all(&serde_json::to_string(&doc).unwrap());
        try_all(&serde_yaml_ng::to_string(&doc).unwrap());
    }
}
