//! Reading and writing workload definitions.
//!
//! Three formats decode into one model ([`ec2_scheduler_core::Workload`]):
//! - [`Format::SeedJson`]: the original tool's DynamoDB items, as plain JSON or
//!   DynamoDB-typed JSON, one item, a list, several objects one after another, a
//!   `batch-write-item` request or a `scan` output;
//! - [`Format::LoaderYaml`]: the original tool's Loader YAML
//!   (`workloads: {table, workload}`, `tiers: {table, tiers: [...]}`);
//! - [`Format::Yaml`]: ec2-scheduler's own format, with a JSON Schema
//!   ([`native::schema_json`]).
//!
//! Everything here works on text already read: the crate does no I/O. Errors name the
//! file, the field path and what was expected, and all errors of all files are
//! reported together.

mod diag;
mod doc;
pub mod fleet;
pub mod native;
pub mod schedules;
mod seed;
mod walk;

use std::collections::BTreeMap;
use std::fmt;

use ec2_scheduler_core::Workload;
use ec2_scheduler_core::model::Tier;
use serde_json::{Map, Value, json};

use diag::Cx;
pub use diag::{Diagnostic, Diagnostics, Location, Severity};
pub use doc::{MAX_SOURCE_BYTES, utf8};

/// A file's name (for messages) and its text.
#[derive(Debug, Clone, Copy)]
pub struct Source<'a> {
    pub name: &'a str,
    pub text: &'a str,
}

/// Input and export formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Format {
    /// The original's DynamoDB items in plain JSON (typed JSON is also read).
    SeedJson,
    /// The original's items as a DynamoDB `batch-write-item` request (typed JSON).
    DynamodbJson,
    /// The original's Loader YAML.
    LoaderYaml,
    /// ec2-scheduler's own YAML.
    Yaml,
}

impl Format {
    /// Every format, for help texts.
    pub const ALL: [Format; 4] = [
        Format::Yaml,
        Format::SeedJson,
        Format::DynamodbJson,
        Format::LoaderYaml,
    ];

    /// The name used on the command line.
    pub fn as_str(self) -> &'static str {
        match self {
            Format::SeedJson => "seed-json",
            Format::DynamodbJson => "dynamodb-json",
            Format::LoaderYaml => "loader-yaml",
            Format::Yaml => "yaml",
        }
    }
}

impl fmt::Display for Format {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for Format {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        Format::ALL
            .into_iter()
            .find(|f| f.as_str() == s)
            .ok_or_else(|| {
                format!(
                    "unknown format {s:?}: expected one of {}",
                    Format::ALL.map(Format::as_str).join(", ")
                )
            })
    }
}

/// Workloads read from a set of files, with the warnings found on the way.
#[derive(Debug, Clone, Default)]
pub struct Loaded {
    /// Sorted by name; names are unique.
    pub workloads: Vec<Workload>,
    pub warnings: Vec<Diagnostic>,
}

impl Loaded {
    /// The workload with this name.
    pub fn workload(&self, name: &str) -> Option<&Workload> {
        self.workloads.iter().find(|w| w.name == *name)
    }
}

/// Reads workloads from files of any supported format; the format of each file is
/// told by its content (and, for YAML, its shape).
///
/// Items of the original's tables may be spread over several files: tiers join their
/// workload by `SpecName`.
///
/// # Errors
/// Every error found in any file, with warnings, when at least one error was found.
pub fn load(sources: &[Source<'_>]) -> Result<Loaded, Diagnostics> {
    let mut diags = Vec::new();
    let mut asm = Assembly::default();
    for src in sources {
        let mut cx = Cx::new(src.name);
        let before = asm.items();
        read_source(&mut cx, src.text, &mut asm);
        if asm.items() == before && cx.error_count() == 0 {
            cx.file_error("the file defines no workloads and no tiers");
        }
        diags.append(&mut cx.diags);
    }
    let workloads = asm.finish(&mut diags);
    if diags.iter().any(|d| d.severity == Severity::Error) {
        return Err(Diagnostics(diags));
    }
    Ok(Loaded {
        workloads,
        warnings: diags,
    })
}

/// The original's items of one workload, as values: its `WorkloadSpecification`
/// item and one `TierSpecification` item per tier, in the original's plain style
/// (numbers and booleans as strings). What `export -f seed-json` writes, without the
/// round trip through text.
pub fn seed_items(w: &Workload) -> (Map<String, Value>, Vec<Map<String, Value>>) {
    (
        seed::encode_workload(w),
        w.tiers().iter().map(|t| seed::encode_tier(w, t)).collect(),
    )
}

/// The workload of one `WorkloadSpecification` item and its `TierSpecification`
/// items (plain or DynamoDB-typed JSON values), read with the same rules as files;
/// `source` names where they come from in messages.
///
/// # Errors
/// Every error of the items, or an error when they do not make one workload.
pub fn workload_from_items(
    source: &str,
    workload: &Value,
    tiers: &[Value],
) -> Result<Workload, Diagnostics> {
    let mut cx = Cx::new(source);
    let mut asm = Assembly::default();
    read_item(&mut cx, workload, "", Some(seed::Table::Workload), &mut asm);
    for (i, t) in tiers.iter().enumerate() {
        read_item(
            &mut cx,
            t,
            &walk::index(seed::TIER_TABLE, i),
            Some(seed::Table::Tier),
            &mut asm,
        );
    }
    let mut diags = cx.diags;
    let workloads = asm.finish(&mut diags);
    exactly_one(source, workloads, diags)
}

/// The one workload of a stored document (any format), as the stores keep them.
///
/// # Errors
/// Every error of the document, or an error when it does not hold one workload.
pub fn stored_workload(source: &str, text: &str) -> Result<Workload, Diagnostics> {
    let loaded = load(&[Source { name: source, text }])?;
    exactly_one(source, loaded.workloads, loaded.warnings)
}

fn exactly_one(
    source: &str,
    mut workloads: Vec<Workload>,
    mut diags: Vec<Diagnostic>,
) -> Result<Workload, Diagnostics> {
    if !diags.iter().any(|d| d.severity == Severity::Error) && workloads.len() != 1 {
        let mut cx = Cx::new(source);
        cx.file_error(format!("expected one workload, found {}", workloads.len()));
        diags.append(&mut cx.diags);
    }
    if diags.iter().any(|d| d.severity == Severity::Error) {
        return Err(Diagnostics(diags));
    }
    Ok(workloads.remove(0))
}

/// Collects workloads and tier items across files.
#[derive(Default)]
struct Assembly {
    /// Workloads complete in one document (our format), by name, with their origin.
    whole: BTreeMap<String, (String, String, Workload)>,
    /// Seed workload items by SpecName: (file, path, header).
    headers: BTreeMap<String, (String, String, seed::WorkloadItem)>,
    /// Seed tier items: (file, path, spec name, tier).
    tiers: Vec<(String, String, String, Tier)>,
    /// Spec names whose workload item failed to decode (to avoid follow-on errors).
    broken: Vec<String>,
}

impl Assembly {
    /// How many definitions were added so far.
    fn items(&self) -> usize {
        self.whole.len() + self.headers.len() + self.tiers.len() + self.broken.len()
    }

    fn defined_at(&self, name: &str) -> Option<String> {
        self.whole
            .get(name)
            .map(|(f, p, _)| format!("{f}: {p}"))
            .or_else(|| self.headers.get(name).map(|(f, p, _)| format!("{f}: {p}")))
    }

    fn add_whole(&mut self, cx: &mut Cx, path: String, w: Workload) {
        if let Some(at) = self.defined_at(w.name.as_str()) {
            cx.error(
                &path,
                format!("workload {:?} is already defined at {at}", w.name.as_str()),
            );
            return;
        }
        self.whole
            .insert(w.name.to_string(), (cx.file.clone(), path, w));
    }

    fn add_header(&mut self, cx: &mut Cx, path: String, item: seed::WorkloadItem) {
        let name = item.header.name.to_string();
        if let Some(at) = self.defined_at(&name) {
            cx.error(
                &path,
                format!("workload {name:?} is already defined at {at}"),
            );
            return;
        }
        self.headers.insert(name, (cx.file.clone(), path, item));
    }

    fn finish(mut self, diags: &mut Vec<Diagnostic>) -> Vec<Workload> {
        let mut grouped: BTreeMap<String, Vec<Tier>> = BTreeMap::new();
        let mut first: BTreeMap<(String, String), String> = BTreeMap::new();
        for (file, path, spec, tier) in std::mem::take(&mut self.tiers) {
            let mut cx = Cx::new(&file);
            if self.whole.contains_key(&spec) {
                cx.error(
                    &path,
                    format!("workload {spec:?} is defined in ec2-scheduler's YAML format; add its tiers there"),
                );
            } else if !self.headers.contains_key(&spec) {
                if !self.broken.contains(&spec) {
                    cx.error(
                        &path,
                        format!("the tier's SpecName {spec:?} names no WorkloadSpecification item in the files given"),
                    );
                }
            } else {
                let key = (spec.clone(), tier.name.to_string());
                if let Some(at) = first.get(&key) {
                    cx.error(
                        &path,
                        format!(
                            "duplicate tier {:?} of workload {spec:?} (first defined at {at})",
                            tier.name.as_str()
                        ),
                    );
                } else {
                    first.insert(key, format!("{file}: {path}"));
                    grouped.entry(spec).or_default().push(tier);
                }
            }
            diags.append(&mut cx.diags);
        }
        let mut out: Vec<Workload> = self.whole.into_values().map(|(_, _, w)| w).collect();
        for (name, (file, path, item)) in self.headers {
            let tiers = grouped.remove(&name).unwrap_or_default();
            let mut cx = Cx::new(&file);
            if tiers.is_empty() {
                cx.warn(&path, "the workload has no tiers: nothing will be actioned");
            }
            match Workload::new(item.header, tiers) {
                Ok(mut w) => {
                    w.schedules = item.schedules;
                    w.enforce = item.enforce;
                    schedules::lint(&mut cx, &w, &path);
                    out.push(w);
                }
                Err(e) => cx.error(&path, e.to_string()),
            }
            diags.append(&mut cx.diags);
        }
        out.sort_by(|a, b| a.name.cmp(&b.name));
        out
    }
}

/// The one schedule of a file holding a schedule document alone (as in a workload
/// file's `schedules`, without shared calendars).
///
/// # Errors
/// Every error of the file, with its path.
pub fn schedule_document(
    src: Source<'_>,
) -> Result<ec2_scheduler_core::schedule::Schedule, Diagnostics> {
    let mut cx = Cx::new(src.name);
    let text = doc::strip_bom(src.text);
    let docs = if text.len() > MAX_SOURCE_BYTES {
        cx.file_error("the file is larger than 16 MiB");
        None
    } else if doc::looks_json(text) {
        doc::parse_json(&mut cx, text)
    } else {
        doc::parse_yaml(&mut cx, text)
    };
    let schedule = match docs.as_deref() {
        Some([one]) => schedules::decode_schedule_document(&mut cx, one),
        Some(other) => {
            cx.file_error(format!(
                "expected one schedule document, found {}",
                other.len()
            ));
            None
        }
        None => None,
    };
    match schedule {
        Some(s) if cx.error_count() == 0 => Ok(s),
        _ => Err(Diagnostics(cx.diags)),
    }
}

/// Parses one file and adds what it defines.
fn read_source(cx: &mut Cx, text: &str, asm: &mut Assembly) {
    if text.len() > MAX_SOURCE_BYTES {
        cx.file_error(format!(
            "the file is {} bytes; workload files are limited to {} bytes (16 MiB)",
            text.len(),
            MAX_SOURCE_BYTES
        ));
        return;
    }
    let text = doc::strip_bom(text);
    let docs = if doc::looks_json(text) {
        doc::parse_json(cx, text)
    } else {
        doc::parse_yaml(cx, text)
    };
    let Some(docs) = docs else { return };
    if docs.is_empty() {
        cx.file_error("the file is empty: expected workload definitions");
    }
    let many = docs.len() > 1;
    for (i, doc) in docs.iter().enumerate() {
        let root = if many {
            format!("document {}", i + 1)
        } else {
            String::new()
        };
        read_document(cx, doc, &root, asm);
    }
}

/// Recognises the shape of a parsed document and decodes it.
fn read_document(cx: &mut Cx, doc: &Value, root: &str, asm: &mut Assembly) {
    let obj = doc.as_object();
    let has = |k: &str| obj.is_some_and(|o| o.contains_key(k));
    let prefixed = |p: &str| {
        if root.is_empty() {
            p.to_string()
        } else {
            format!("{root}: {p}")
        }
    };
    if has("workloads")
        && obj
            .and_then(|o| o.get("workloads"))
            .is_some_and(Value::is_array)
    {
        for (path, w) in native::decode(cx, doc) {
            asm.add_whole(cx, prefixed(&path), w);
        }
    } else if has("workloads") || (has("tiers") && !has("TierTagValue")) {
        read_loader(cx, obj.expect("has keys"), root, asm);
    } else if let Some(o) = obj.filter(|_| has(seed::WORKLOAD_TABLE) || has(seed::TIER_TABLE)) {
        read_tables(cx, o, root, asm);
    } else if let Some(items) = obj.and_then(|o| o.get("Items")).and_then(Value::as_array) {
        read_items(cx, items, &prefixed("Items"), None, asm);
    } else if let Some(items) = doc.as_array() {
        if items.is_empty() {
            cx.error(
                root,
                "the list is empty: expected workload definitions (DynamoDB items)",
            );
        }
        read_items(cx, items, root, None, asm);
    } else if obj.is_some_and(Map::is_empty) {
        cx.error(root, "the mapping is empty: expected workload definitions");
    } else if obj.is_some() {
        read_item(cx, doc, root, None, asm);
    } else {
        cx.error(
            root,
            format!(
                "expected workload definitions (a mapping or a list of DynamoDB items), {}",
                walk::found(doc)
            ),
        );
    }
}

/// `{"WorkloadSpecification": [...], "TierSpecification": [...]}`, with plain items,
/// typed items or `{"PutRequest": {"Item": ...}}` entries.
fn read_tables(cx: &mut Cx, o: &Map<String, Value>, root: &str, asm: &mut Assembly) {
    for (k, v) in o {
        let path = walk::key(root, k);
        let table = match k.as_str() {
            seed::WORKLOAD_TABLE => seed::Table::Workload,
            seed::TIER_TABLE => seed::Table::Tier,
            _ => {
                cx.warn(&path, format!("unknown table `{k}` is ignored"));
                continue;
            }
        };
        match v.as_array() {
            Some(items) => read_items(cx, items, &path, Some(table), asm),
            None => cx.error(
                &path,
                format!("expected a list of items, {}", walk::found(v)),
            ),
        }
    }
}

fn read_items(
    cx: &mut Cx,
    items: &[Value],
    path: &str,
    table: Option<seed::Table>,
    asm: &mut Assembly,
) {
    for (i, item) in items.iter().enumerate() {
        let p = walk::index(path, i);
        let item = item
            .get("PutRequest")
            .and_then(|r| r.get("Item"))
            .unwrap_or(item);
        read_item(cx, item, &p, table, asm);
    }
}

/// One item of either table, plain or typed.
fn read_item(
    cx: &mut Cx,
    item: &Value,
    path: &str,
    table: Option<seed::Table>,
    asm: &mut Assembly,
) {
    let Some(map) = item.as_object() else {
        cx.error(
            path,
            format!(
                "expected a DynamoDB item (a mapping), {}",
                walk::found(item)
            ),
        );
        return;
    };
    let plain;
    let map = if seed::is_typed(map) {
        plain = seed::untype_map(cx, map, path);
        &plain
    } else {
        map
    };
    let Some(table) = table.or_else(|| seed::table_of(map)) else {
        cx.error(
            path,
            "cannot tell the table of this item: a TierSpecification item has TierTagValue, a WorkloadSpecification item has WorkloadFilterTagName",
        );
        return;
    };
    let p = seed::item_path(table, map, path);
    let value = Value::Object(map.clone());
    match table {
        seed::Table::Workload => match seed::decode_workload(cx, &value, &p) {
            Some(w) => asm.add_header(cx, p, w),
            None => {
                if let Some(spec) = map.get("SpecName").and_then(Value::as_str) {
                    asm.broken.push(spec.to_string());
                }
            }
        },
        seed::Table::Tier => {
            if let Some(t) = seed::decode_tier(cx, &value, &p) {
                asm.tiers.push((cx.file.clone(), p, t.spec_name, t.tier));
            }
        }
    }
}

/// The original Loader's YAML: one workload item and its tier items.
fn read_loader(cx: &mut Cx, o: &Map<String, Value>, root: &str, asm: &mut Assembly) {
    let path = |k: &str| walk::key(root, k);
    let mut spec_name = None;
    for k in o
        .keys()
        .filter(|k| !["workloads", "tiers"].contains(&k.as_str()))
    {
        cx.warn(&path(k), format!("unknown key `{k}` is ignored"));
    }
    match o.get("workloads").and_then(Value::as_object) {
        Some(w) => match w.get("workload") {
            Some(item) => {
                let p = path("workloads.workload");
                if let Some(wi) = seed::decode_workload(cx, item, &p) {
                    spec_name = Some(wi.header.name.to_string());
                    asm.add_header(cx, p, wi);
                } else if let Some(s) = item.get("SpecName").and_then(Value::as_str) {
                    asm.broken.push(s.to_string());
                }
            }
            None => cx.error(
                &path("workloads"),
                "missing required key `workload` (the WorkloadSpecification item)",
            ),
        },
        None => cx.error(
            root,
            "missing `workloads: {table, workload}` (the Loader format's workload block)",
        ),
    }
    let Some(tiers) = o.get("tiers") else {
        cx.error(
            root,
            "missing `tiers: {table, tiers: [...]}` (the Loader format's tier block)",
        );
        return;
    };
    let Some(list) = tiers.get("tiers").and_then(Value::as_array) else {
        cx.error(
            &path("tiers"),
            "expected `tiers:` with a list of TierSpecification items under it",
        );
        return;
    };
    for (i, item) in list.iter().enumerate() {
        let p = walk::index(&path("tiers.tiers"), i);
        // Tiers in a Loader file belong to its workload; SpecName may be left out.
        let mut item = item.clone();
        if let (Some(m), Some(spec)) = (item.as_object_mut(), &spec_name) {
            m.entry("SpecName")
                .or_insert_with(|| Value::String(spec.clone()));
            let named = match &m["SpecName"] {
                Value::String(s) => Some(s.clone()),
                Value::Number(n) => Some(n.to_string()),
                _ => None,
            };
            if named.as_deref() != Some(spec.as_str()) {
                cx.error(
                    &walk::key(&p, "SpecName"),
                    format!(
                        "the tier belongs to workload {}, but this file defines {spec:?}; leave SpecName out or make it {spec:?}",
                        named.map_or_else(|| walk::found(&m["SpecName"]).replacen("found ", "", 1), |n| format!("{n:?}"))
                    ),
                );
                continue;
            }
        }
        if let Some(t) = seed::decode_tier(cx, &item, &p) {
            asm.tiers.push((cx.file.clone(), p, t.spec_name, t.tier));
        }
    }
}

/// Writes workloads in `format`.
///
/// # Guarantees
/// Reading the output back with [`load`] gives the same workloads: every format can
/// express every setting (the original's tables through the extension attributes
/// documented in the README).
pub fn export(workloads: &[Workload], format: Format) -> String {
    match format {
        Format::Yaml => {
            let doc = native::encode(workloads);
            let body = serde_yaml_ng::to_string(&doc).expect("documents serialize");
            format!("# ec2-scheduler workloads; JSON Schema: `ec2-scheduler schema`\n{body}")
        }
        Format::SeedJson | Format::DynamodbJson => {
            let typed = format == Format::DynamodbJson;
            let wrap = |m: Map<String, Value>| {
                if typed {
                    json!({ "PutRequest": { "Item": seed::typed_map(&m) } })
                } else {
                    Value::Object(m)
                }
            };
            let w: Vec<Value> = workloads
                .iter()
                .map(|w| wrap(seed::encode_workload(w)))
                .collect();
            let t: Vec<Value> = workloads
                .iter()
                .flat_map(|w| w.tiers().iter().map(move |t| seed::encode_tier(w, t)))
                .map(wrap)
                .collect();
            let mut s = serde_json::to_string_pretty(&json!({
                seed::WORKLOAD_TABLE: w,
                seed::TIER_TABLE: t,
            }))
            .expect("values serialize");
            s.push('\n');
            s
        }
        Format::LoaderYaml => {
            let mut out = String::new();
            for (i, w) in workloads.iter().enumerate() {
                if i > 0 {
                    out.push_str("---\n");
                }
                let workload = seed::encode_workload(w);
                // The Loader format carries SpecName on each tier as well.
                let tiers: Vec<Value> = w
                    .tiers()
                    .iter()
                    .map(|t| Value::Object(seed::encode_tier(w, t)))
                    .collect();
                let doc = json!({
                    "workloads": { "table": seed::WORKLOAD_TABLE, "workload": workload },
                    "tiers": { "table": seed::TIER_TABLE, "tiers": tiers },
                });
                out.push_str(&serde_yaml_ng::to_string(&doc).expect("values serialize"));
            }
            out
        }
    }
}
