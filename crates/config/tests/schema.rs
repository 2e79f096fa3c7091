//! The published JSON Schema: committed copy up to date, agrees with the decoder, and
//! validates the README's example.

use std::collections::BTreeSet;
use std::path::PathBuf;

use ec2_scheduler_config::native::schema_json;
use serde_json::Value;

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn read(rel: &str) -> String {
    std::fs::read_to_string(repo().join(rel)).unwrap()
}

fn yaml_as_json(text: &str) -> Value {
    serde_yaml_ng::from_str(text).unwrap()
}

#[test]
fn the_committed_schema_is_current() {
    let committed = read("schema/workloads.schema.json");
    assert_eq!(
        committed,
        schema_json(),
        "schema/workloads.schema.json is stale: run `cargo run -p ec2-scheduler -- schema > schema/workloads.schema.json`"
    );
}

#[test]
fn the_readme_example_is_the_example_file() {
    let readme = read("README.md");
    let example = read("examples/workloads.yaml");
    assert!(
        readme.contains(&format!("```yaml\n{example}```")),
        "README.md must quote examples/workloads.yaml in full"
    );
}

#[test]
fn the_schema_accepts_the_example_and_rejects_broken_documents() {
    let schema: Value = serde_json::from_str(&schema_json()).unwrap();
    let validator = jsonschema::validator_for(&schema).unwrap();
    let example = yaml_as_json(&read("examples/workloads.yaml"));
    let errors: Vec<String> = validator
        .iter_errors(&example)
        .map(|e| e.to_string())
        .collect();
    assert!(errors.is_empty(), "{errors:?}");

    for broken in [
        "version: 1\nworkloads: [{name: W}]\n",
        "version: 2\nworkloads: []\n",
        "version: 1\nworkloads: []\ncolour: blue\n",
        "version: 1\nworkloads:\n- {name: W, region: r, workload_tag: {key: E, value: ''}, tier_tag_key: R, tiers: []}\n",
        "version: 1\nworkloads:\n- {name: W, region: r, workload_tag: {key: E, value: v}, tier_tag_key: R, tiers: [{name: a, profiles: {p: {fleet_subset: '150%'}}}]}\n",
        "version: 1\nworkloads:\n- {name: W, region: r, workload_tag: {key: E, value: v}, tier_tag_key: R, tiers: [{name: a, stop: {order: 0, override_file: {path: /x, os: solaris}}}]}\n",
    ] {
        assert!(
            !validator.is_valid(&yaml_as_json(broken)),
            "schema accepted: {broken}"
        );
        assert!(
            ec2_scheduler_config::load(&[ec2_scheduler_config::Source {
                name: "b.yaml",
                text: broken
            }])
            .is_err(),
            "decoder accepted: {broken}"
        );
    }
}

/// Property names of every object schema, by definition name.
fn properties(schema: &Value) -> Vec<(String, BTreeSet<String>)> {
    let mut out = vec![(
        "FileDoc".to_string(),
        schema["properties"]
            .as_object()
            .unwrap()
            .keys()
            .cloned()
            .collect(),
    )];
    for (name, def) in schema["$defs"].as_object().unwrap() {
        if let Some(props) = def.get("properties").and_then(Value::as_object) {
            out.push((name.clone(), props.keys().cloned().collect()));
        }
    }
    out
}

#[test]
fn the_decoder_accepts_exactly_the_schema_fields() {
    let schema: Value = serde_json::from_str(&schema_json()).unwrap();
    let decoder = ec2_scheduler_config::native::decoder_fields();
    let schema_fields = properties(&schema);
    assert_eq!(schema_fields.len(), decoder.len(), "{schema_fields:?}");
    for (name, fields) in schema_fields {
        let theirs: BTreeSet<String> = decoder
            .iter()
            .find(|(n, _)| *n == name)
            .unwrap_or_else(|| panic!("the decoder has no field list for {name}"))
            .1
            .iter()
            .map(|s| s.to_string())
            .collect();
        assert_eq!(fields, theirs, "{name}");
    }
}
