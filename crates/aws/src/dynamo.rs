//! The DynamoDB store.
//!
//! Workloads are read from the original tool's tables exactly as they are:
//! `WorkloadSpecification` (hash key `SpecName`) and `TierSpecification` (hash key
//! `SpecName`, range key `TierTagValue`), with every value shape the original accepted
//! (decoding is the config crate's, as for files). Writing them (`load -r`) is a
//! conditional put per item guarded by a revision number, never delete-then-put.
//!
//! Runs, locks, exemptions and parked load-balancer registrations live in one more
//! table (default `Ec2SchedulerState`, keys `pk` and `sk`, both strings):
//!
//! | item | pk | sk |
//! |---|---|---|
//! | workload lock | `LOCK#<workload>` | `LOCK` |
//! | run (version, part count and first part of its JSON) | `RUN#<id>` | `RUN` |
//! | further parts of a large run | `RUN#<id>` | `PART#<version>#<digest>#<n>` |
//! | run index entry | `RUNS#<workload>` | `<started>#<id>` |
//! | exemption | `EXEMPT` | `<instance>#<until or "-">` |
//! | parked registrations (up to 1,000) | `PARKED#<workload>` | `SET#<digest of them>` |
//! | schedule override | `OVERRIDE` | `<id>` |
//! | schedule event (claimed, then its outcome) | `EVENT#<workload>` | `<action>#<instant>` |
//! | API token (its hash, role, expiry) | `TOKEN` | `<id>` |
//!
//! A lock is taken with a conditional put (free, expired, or already ours), so two
//! processes can never both hold it; an event is claimed the same way, so two
//! `serve` processes never fire one event twice.
//!
//! A run survives a crash at any point of a save, and is saved with compare-and-set.
//! Its further parts (for runs over 300 KB) are written first under the new
//! version's keys (with a digest of the JSON, so two writers saving from one version
//! never write over each other's parts), then the `RUN` item that names that version
//! and digest, with a condition that the stored version is still the one the run was
//! read at (`Run::version`); only then are the old version's parts deleted. A reader
//! follows the `RUN` item, so it sees the old run or the new one, never a mix; the
//! writer whose condition failed wrote nothing any reader follows.
//! The index entry is written after the `RUN` item, and only when the run's status
//! changes; an index entry left at `running` by a crash is corrected by the next
//! look for the workload's unfinished run. Most saves are therefore one write.

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::types::{
    AttributeDefinition, AttributeValue, BillingMode, DeleteRequest, KeySchemaElement, KeyType,
    PutRequest, ReturnValuesOnConditionCheckFailure, ScalarAttributeType, WriteRequest,
};
use chrono::{DateTime, Utc};
use ec2_scheduler_config::{seed_items, workload_from_items};
use ec2_scheduler_core::access::Token;
use ec2_scheduler_core::overrides::Override;
use ec2_scheduler_core::{Action, Exemption, Workload};
use ec2_scheduler_engine::ports::{
    AccessStore, ConfigStore, EventRecord, LbTarget, Lock, LockOutcome, RunStore, RunSummaryRow,
    ScheduleStore, StoreError, StoreResult, stored_exemption,
};
use ec2_scheduler_engine::run::Run;
use ec2_scheduler_engine::share::PaceShares;
use serde_json::{Map, Value, json};

use crate::{CallCounter, Counting};

/// Table names.
#[derive(Debug, Clone)]
pub struct Tables {
    pub workloads: String,
    pub tiers: String,
    pub state: String,
    /// The original tool's `WorkloadState` table (key `Workload`), written when it
    /// exists.
    pub workload_state: String,
}

impl Default for Tables {
    fn default() -> Self {
        Tables {
            workloads: "WorkloadSpecification".into(),
            tiers: "TierSpecification".into(),
            state: "Ec2SchedulerState".into(),
            workload_state: "WorkloadState".into(),
        }
    }
}

/// The attribute holding an item's revision, for conditional writes.
pub const REVISION: &str = "Ec2SchedulerRevision";
/// Largest share of a run's JSON kept in one item (DynamoDB items are at most 400 KB).
const PART: usize = 300_000;

/// A store on DynamoDB.
pub struct DynamoStore {
    client: Client,
    tables: Tables,
    region: String,
    /// Every request sent, by action.
    pub counter: Arc<CallCounter>,
    /// What this store last read or wrote of each run, by id.
    saved: Mutex<HashMap<String, Saved>>,
    /// How long finished runs and event records are kept: their items carry a `ttl`
    /// attribute (epoch seconds) this long after the run finished or the event's
    /// instant, for the table's time-to-live to delete them. `None`: kept.
    history_ttl: Option<chrono::Duration>,
}

/// The attribute DynamoDB's time to live reads on the state table.
pub const TTL_ATTRIBUTE: &str = "ttl";

/// A run as this store last read or wrote it.
#[derive(Debug, Clone, Default)]
struct Saved {
    /// The version of its `RUN` item (0: none, or one written before versions).
    version: u64,
    /// The sort keys of its further parts, and of parts left by an interrupted save.
    parts: BTreeSet<String>,
    /// Its status and end as the index entry holds them (when read, taken to be the
    /// run's own: an entry a crash left behind is corrected by `unfinished_run`).
    index: Option<(String, Option<String>)>,
}

/// The key of part `n` of a run's version, written before versions had digests.
fn part_key(version: u64, n: usize) -> String {
    format!("PART#{version:010}#{n:04}")
}

/// The key of part `n` of a run's version whose JSON has the digest `digest`: two
/// writers that saved from the same version (one of which the condition on the `RUN`
/// item will refuse) never write over each other's parts, unless they are the same.
fn digest_part_key(version: u64, digest: &str, n: usize) -> String {
    format!("PART#{version:010}#{digest}#{n:04}")
}

/// The first 16 bytes of the SHA-256 of `body`, in hex.
fn digest_of(body: &str) -> String {
    use sha2::Digest;
    sha2::Sha256::digest(body.as_bytes())[..16]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn backend(action: &str, e: impl std::fmt::Display) -> StoreError {
    StoreError::Backend(format!("dynamodb:{action}: {e}"))
}

fn err_text<E>(
    e: &aws_sdk_dynamodb::error::SdkError<E, aws_sdk_dynamodb::config::http::HttpResponse>,
) -> String
where
    E: aws_sdk_dynamodb::error::ProvideErrorMetadata + std::error::Error + 'static,
{
    use aws_sdk_dynamodb::error::ProvideErrorMetadata;
    match (e.code(), e.message()) {
        (Some(c), Some(m)) => format!("{c}: {m}"),
        (Some(c), None) => c.to_string(),
        _ => aws_sdk_dynamodb::error::DisplayErrorContext(e).to_string(),
    }
}

/// A DynamoDB attribute value as DynamoDB-typed JSON.
pub fn to_typed_json(v: &AttributeValue) -> Value {
    match v {
        AttributeValue::S(s) => json!({ "S": s }),
        AttributeValue::N(n) => json!({ "N": n }),
        AttributeValue::Bool(b) => json!({ "BOOL": b }),
        AttributeValue::Null(_) => json!({ "NULL": true }),
        AttributeValue::M(m) => {
            json!({ "M": m.iter().map(|(k, v)| (k.clone(), to_typed_json(v))).collect::<Map<_, _>>() })
        }
        AttributeValue::L(l) => json!({ "L": l.iter().map(to_typed_json).collect::<Vec<_>>() }),
        AttributeValue::Ss(v) => json!({ "SS": v }),
        AttributeValue::Ns(v) => json!({ "NS": v }),
        _ => json!({ "B": "(binary)" }),
    }
}

/// Plain JSON (as `export -f seed-json` writes it) as a DynamoDB attribute value.
pub fn from_plain_json(v: &Value) -> AttributeValue {
    match v {
        Value::String(s) => AttributeValue::S(s.clone()),
        Value::Number(n) => AttributeValue::N(n.to_string()),
        Value::Bool(b) => AttributeValue::Bool(*b),
        Value::Null => AttributeValue::Null(true),
        Value::Array(a) => AttributeValue::L(a.iter().map(from_plain_json).collect()),
        Value::Object(m) => AttributeValue::M(
            m.iter()
                .map(|(k, v)| (k.clone(), from_plain_json(v)))
                .collect(),
        ),
    }
}

fn item_json(item: &HashMap<String, AttributeValue>) -> Value {
    Value::Object(
        item.iter()
            .map(|(k, v)| (k.clone(), to_typed_json(v)))
            .collect(),
    )
}

fn s(item: &HashMap<String, AttributeValue>, k: &str) -> Option<String> {
    item.get(k).and_then(|v| v.as_s().ok()).cloned()
}

fn n(item: &HashMap<String, AttributeValue>, k: &str) -> Option<i64> {
    item.get(k)
        .and_then(|v| v.as_n().ok())
        .and_then(|x| x.parse().ok())
}

/// The instance of an exemption item. The sort key starts with the instance id, so
/// it is known even when the attributes are not readable.
fn exemption_instance(item: &HashMap<String, AttributeValue>) -> String {
    s(item, "instance_id").unwrap_or_else(|| {
        s(item, "sk")
            .unwrap_or_default()
            .split('#')
            .next()
            .unwrap_or_default()
            .to_string()
    })
}

fn time(s: &str, key: &str) -> StoreResult<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(s)
        .map(|t| t.with_timezone(&Utc))
        .map_err(|e| StoreError::Corrupt {
            key: key.into(),
            message: e.to_string(),
        })
}

/// A run's status and end, as its index entry holds them.
fn index_of(run: &Run) -> (String, Option<String>) {
    (
        run.status.as_str().to_string(),
        run.finished.map(|f| f.to_rfc3339()),
    )
}

fn key(pk: &str, sk: &str) -> HashMap<String, AttributeValue> {
    HashMap::from([
        ("pk".to_string(), AttributeValue::S(pk.into())),
        ("sk".to_string(), AttributeValue::S(sk.into())),
    ])
}

impl DynamoStore {
    pub fn new(config: &aws_config::SdkConfig, tables: Tables) -> Self {
        Self::with_counter(config, tables, Arc::default())
    }

    /// A store whose requests are counted by `counter` (which a cloud may share).
    pub fn with_counter(
        config: &aws_config::SdkConfig,
        tables: Tables,
        counter: Arc<CallCounter>,
    ) -> Self {
        let conf = aws_sdk_dynamodb::config::Builder::from(config)
            .interceptor(Counting(counter.clone()))
            .build();
        DynamoStore {
            client: Client::from_conf(conf),
            region: config.region().map(|r| r.to_string()).unwrap_or_default(),
            tables,
            counter,
            saved: Mutex::default(),
            history_ttl: None,
        }
    }

    /// This store, with finished runs and event records marked to be deleted by the
    /// table's time to live (attribute [`TTL_ATTRIBUTE`]) `days` after they ended.
    #[must_use]
    pub fn with_history_ttl(mut self, days: u32) -> Self {
        self.history_ttl = Some(chrono::Duration::days(i64::from(days)));
        self
    }

    /// The `ttl` attribute of history that ended at `at`, when history expires.
    fn ttl(&self, at: DateTime<Utc>) -> Option<(String, AttributeValue)> {
        let ttl = self.history_ttl?;
        let when = at.checked_add_signed(ttl)?;
        Some((
            TTL_ATTRIBUTE.to_string(),
            AttributeValue::N(when.timestamp().to_string()),
        ))
    }

    /// The `ttl` attribute of a run's items: once it is finished.
    fn run_ttl(&self, run: &Run) -> Option<(String, AttributeValue)> {
        run.finished
            .filter(|_| run.status.is_finished())
            .and_then(|f| self.ttl(f))
    }

    fn saved(&self, id: &str) -> Option<Saved> {
        self.saved.lock().expect("not poisoned").get(id).cloned()
    }

    fn remember(&self, id: &str, saved: Saved) {
        self.saved
            .lock()
            .expect("not poisoned")
            .insert(id.to_string(), saved);
    }

    /// Reads a run's items: the run (when its `RUN` item exists) and what this store
    /// must know to save it next.
    async fn read_run(&self, id: &str) -> StoreResult<(Option<Run>, Saved)> {
        let items = self
            .query(&self.tables.state, "pk", &format!("RUN#{id}"), true)
            .await?;
        let mut saved = Saved::default();
        let Some(head) = items.iter().find(|i| s(i, "sk").as_deref() == Some("RUN")) else {
            saved.parts = items.iter().filter_map(|i| s(i, "sk")).collect();
            return Ok((None, saved));
        };
        let corrupt = |message: String| StoreError::Corrupt {
            key: format!("run {id}"),
            message,
        };
        saved.version = n(head, "version").unwrap_or(0).max(0) as u64;
        let count = n(head, "parts").unwrap_or(1).max(1) as usize;
        let digest = s(head, "digest");
        let wanted: Vec<String> = (1..count)
            .map(|i| match &digest {
                Some(d) => digest_part_key(saved.version, d, i),
                // Written before versions.
                None if saved.version == 0 => format!("PART#{i:04}"),
                None => part_key(saved.version, i),
            })
            .collect();
        let mut body = s(head, "body").unwrap_or_default();
        let by_key: HashMap<String, &HashMap<String, AttributeValue>> = items
            .iter()
            .filter_map(|i| s(i, "sk").map(|k| (k, i)))
            .collect();
        for k in &wanted {
            let part = by_key
                .get(k)
                .ok_or_else(|| corrupt(format!("part {k} of {count} is missing")))?;
            body.push_str(&s(part, "body").unwrap_or_default());
        }
        saved.parts = by_key
            .into_keys()
            .filter(|k| k.starts_with("PART#"))
            .collect();
        let mut run: Run = serde_json::from_str(&body).map_err(|e| corrupt(e.to_string()))?;
        run.version = saved.version;
        saved.index = Some(index_of(&run));
        Ok((Some(run), saved))
    }

    async fn put_index(&self, run: &Run) -> StoreResult<()> {
        let mut index = key(
            &format!("RUNS#{}", run.workload),
            &format!("{}#{}", run.started.to_rfc3339(), run.id),
        );
        index.insert("id".into(), AttributeValue::S(run.id.clone()));
        index.insert("workload".into(), AttributeValue::S(run.workload.clone()));
        index.insert("action".into(), AttributeValue::S(run.action.to_string()));
        index.insert(
            "status".into(),
            AttributeValue::S(run.status.as_str().into()),
        );
        index.insert(
            "started".into(),
            AttributeValue::S(run.started.to_rfc3339()),
        );
        if let Some(f) = run.finished {
            index.insert("finished".into(), AttributeValue::S(f.to_rfc3339()));
        }
        index.extend(self.run_ttl(run));
        self.put_state(index).await
    }

    /// Creates the state table (on-demand billing) if it does not exist.
    ///
    /// # Errors
    /// When the table can be neither described nor created.
    pub async fn ensure_state_table(&self) -> StoreResult<()> {
        if self
            .client
            .describe_table()
            .table_name(&self.tables.state)
            .send()
            .await
            .is_ok()
        {
            return Ok(());
        }
        let attr = |n: &str| {
            AttributeDefinition::builder()
                .attribute_name(n)
                .attribute_type(ScalarAttributeType::S)
                .build()
                .expect("complete")
        };
        let key = |n: &str, t: KeyType| {
            KeySchemaElement::builder()
                .attribute_name(n)
                .key_type(t)
                .build()
                .expect("complete")
        };
        self.client
            .create_table()
            .table_name(&self.tables.state)
            .attribute_definitions(attr("pk"))
            .attribute_definitions(attr("sk"))
            .key_schema(key("pk", KeyType::Hash))
            .key_schema(key("sk", KeyType::Range))
            .billing_mode(BillingMode::PayPerRequest)
            .send()
            .await
            .map_err(|e| backend("CreateTable", err_text(&e)))?;
        Ok(())
    }

    /// Puts and deletes in the state table, 25 to a request (DynamoDB's most); what
    /// DynamoDB leaves unprocessed (when throttled) is sent again after a growing
    /// pause, up to 8 times.
    async fn batch_write(&self, writes: Vec<WriteRequest>) -> StoreResult<()> {
        for chunk in writes.chunks(25) {
            let mut pending = chunk.to_vec();
            let mut attempt = 0u32;
            while !pending.is_empty() {
                let out = self
                    .client
                    .batch_write_item()
                    .request_items(&self.tables.state, pending)
                    .send()
                    .await
                    .map_err(|e| backend("BatchWriteItem", err_text(&e)))?;
                pending = out
                    .unprocessed_items
                    .and_then(|mut m| m.remove(&self.tables.state))
                    .unwrap_or_default();
                if !pending.is_empty() {
                    attempt += 1;
                    if attempt > 8 {
                        return Err(backend(
                            "BatchWriteItem",
                            format!("{} writes still unprocessed after 8 tries", pending.len()),
                        ));
                    }
                    tokio::time::sleep(std::time::Duration::from_millis(50 << attempt.min(6)))
                        .await;
                }
            }
        }
        Ok(())
    }

    /// An unconditional put into the state table.
    async fn put_state(&self, item: HashMap<String, AttributeValue>) -> StoreResult<()> {
        self.client
            .put_item()
            .table_name(&self.tables.state)
            .set_item(Some(item))
            .send()
            .await
            .map_err(|e| backend("PutItem", err_text(&e)))?;
        Ok(())
    }

    async fn query_all(
        &self,
        table: &str,
        pk_name: &str,
        pk: &str,
    ) -> StoreResult<Vec<HashMap<String, AttributeValue>>> {
        self.query(table, pk_name, pk, false).await
    }

    /// Every item with this partition key, read consistently when asked.
    async fn query(
        &self,
        table: &str,
        pk_name: &str,
        pk: &str,
        consistent: bool,
    ) -> StoreResult<Vec<HashMap<String, AttributeValue>>> {
        let mut out = Vec::new();
        let mut pages = self
            .client
            .query()
            .table_name(table)
            .key_condition_expression("#k = :v")
            .expression_attribute_names("#k", pk_name)
            .expression_attribute_values(":v", AttributeValue::S(pk.into()))
            .consistent_read(consistent)
            .into_paginator()
            .send();
        while let Some(page) = pages.next().await {
            let page = page.map_err(|e| backend("Query", err_text(&e)))?;
            out.extend(page.items().iter().cloned());
        }
        Ok(out)
    }

    async fn scan_all(&self, table: &str) -> StoreResult<Vec<HashMap<String, AttributeValue>>> {
        let mut out = Vec::new();
        let mut pages = self.client.scan().table_name(table).into_paginator().send();
        while let Some(page) = pages.next().await {
            let page = page.map_err(|e| backend("Scan", err_text(&e)))?;
            out.extend(page.items().iter().cloned());
        }
        Ok(out)
    }

    /// Decodes a workload from its items with the config crate (typed JSON).
    fn decode(
        &self,
        name: &str,
        workload: &HashMap<String, AttributeValue>,
        tiers: &[HashMap<String, AttributeValue>],
    ) -> StoreResult<Workload> {
        let source = format!("dynamodb://{}/{}", self.region, self.tables.workloads);
        let tiers: Vec<Value> = tiers.iter().map(item_json).collect();
        workload_from_items(&source, &item_json(workload), &tiers).map_err(|d| {
            StoreError::Corrupt {
                key: format!("workload {name}"),
                message: d.to_string(),
            }
        })
    }

    /// Writes one item with a conditional put: it must be absent or still at the
    /// revision read before. Returns the new revision.
    async fn put_revised(
        &self,
        table: &str,
        key_attrs: &[(&str, String)],
        plain: &Map<String, Value>,
    ) -> StoreResult<i64> {
        let mut get = self
            .client
            .get_item()
            .table_name(table)
            .consistent_read(true);
        for (k, v) in key_attrs {
            get = get.key(*k, AttributeValue::S(v.clone()));
        }
        let current = get
            .send()
            .await
            .map_err(|e| backend("GetItem", err_text(&e)))?;
        let rev = current.item().and_then(|i| n(i, REVISION));
        let mut item: HashMap<String, AttributeValue> = plain
            .iter()
            .map(|(k, v)| (k.clone(), from_plain_json(v)))
            .collect();
        let next = rev.unwrap_or(0) + 1;
        item.insert(REVISION.into(), AttributeValue::N(next.to_string()));
        let first_key = key_attrs[0].0;
        let put = self
            .client
            .put_item()
            .table_name(table)
            .set_item(Some(item));
        let put = match (current.item().is_some(), rev) {
            (false, _) => put
                .condition_expression("attribute_not_exists(#k)")
                .expression_attribute_names("#k", first_key),
            (true, None) => put
                .condition_expression("attribute_exists(#k) AND attribute_not_exists(#r)")
                .expression_attribute_names("#k", first_key)
                .expression_attribute_names("#r", REVISION),
            (true, Some(r)) => put
                .condition_expression("#r = :r")
                .expression_attribute_names("#r", REVISION)
                .expression_attribute_values(":r", AttributeValue::N(r.to_string())),
        };
        put.send().await.map_err(|e| match e.as_service_error() {
            Some(x) if x.is_conditional_check_failed_exception() => StoreError::Backend(format!(
                "{table} item {} changed while it was being written; run the load again",
                key_attrs
                    .iter()
                    .map(|(_, v)| v.as_str())
                    .collect::<Vec<_>>()
                    .join("/")
            )),
            _ => backend("PutItem", err_text(&e)),
        })?;
        Ok(next)
    }

    /// Deletes the exemption items of an instance, but the one keyed `keep`; whether
    /// any was deleted.
    async fn delete_exemptions(&self, instance_id: &str, keep: Option<&str>) -> StoreResult<bool> {
        let items = self.query_all(&self.tables.state, "pk", "EXEMPT").await?;
        let mut removed = false;
        for sk in items
            .iter()
            .filter(|i| exemption_instance(i) == instance_id)
            .filter_map(|i| s(i, "sk"))
            .filter(|sk| Some(sk.as_str()) != keep)
        {
            self.client
                .delete_item()
                .table_name(&self.tables.state)
                .set_key(Some(key("EXEMPT", &sk)))
                .send()
                .await
                .map_err(|e| backend("DeleteItem", err_text(&e)))?;
            removed = true;
        }
        Ok(removed)
    }

    /// Writes a workload's items (the original's tables, plain-JSON style) with
    /// conditional puts, then removes tier items the workload no longer has. Returns
    /// the names of removed tiers.
    ///
    /// # Errors
    /// A conditional check that failed (someone else wrote the item meanwhile), or any
    /// DynamoDB error.
    pub async fn write_workload(&self, w: &Workload) -> StoreResult<Vec<String>> {
        let (workload, tiers) = seed_items(w);
        self.put_revised(
            &self.tables.workloads,
            &[("SpecName", w.name.to_string())],
            &workload,
        )
        .await?;
        let mut kept = Vec::new();
        for t in &tiers {
            let tier = t
                .get("TierTagValue")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_string();
            self.put_revised(
                &self.tables.tiers,
                &[
                    ("SpecName", w.name.to_string()),
                    ("TierTagValue", tier.clone()),
                ],
                t,
            )
            .await?;
            kept.push(tier);
        }
        let mut removed = Vec::new();
        for item in self
            .query_all(&self.tables.tiers, "SpecName", w.name.as_str())
            .await?
        {
            let Some(tier) = s(&item, "TierTagValue") else {
                continue;
            };
            if kept.contains(&tier) {
                continue;
            }
            let mut del = self
                .client
                .delete_item()
                .table_name(&self.tables.tiers)
                .key("SpecName", AttributeValue::S(w.name.to_string()))
                .key("TierTagValue", AttributeValue::S(tier.clone()));
            // Only if nobody changed it since it was read.
            del = match n(&item, REVISION) {
                Some(r) => del
                    .condition_expression("#r = :r")
                    .expression_attribute_names("#r", REVISION)
                    .expression_attribute_values(":r", AttributeValue::N(r.to_string())),
                None => del
                    .condition_expression("attribute_not_exists(#r)")
                    .expression_attribute_names("#r", REVISION),
            };
            del.send()
                .await
                .map_err(|e| backend("DeleteItem", err_text(&e)))?;
            removed.push(tier);
        }
        Ok(removed)
    }
}

#[async_trait]
impl ConfigStore for DynamoStore {
    async fn workload(&self, name: &str) -> StoreResult<Option<Workload>> {
        let got = self
            .client
            .get_item()
            .table_name(&self.tables.workloads)
            .key("SpecName", AttributeValue::S(name.into()))
            .send()
            .await
            .map_err(|e| backend("GetItem", err_text(&e)))?;
        let Some(item) = got.item() else {
            return Ok(None);
        };
        let tiers = self.query_all(&self.tables.tiers, "SpecName", name).await?;
        self.decode(name, item, &tiers).map(Some)
    }

    async fn workloads(&self) -> StoreResult<Vec<Workload>> {
        let mut out = Vec::new();
        for item in self.scan_all(&self.tables.workloads).await? {
            let Some(name) = s(&item, "SpecName") else {
                continue;
            };
            let tiers = self
                .query_all(&self.tables.tiers, "SpecName", &name)
                .await?;
            out.push(self.decode(&name, &item, &tiers)?);
        }
        out.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(out)
    }

    async fn workload_names(&self) -> StoreResult<Vec<String>> {
        let mut out: Vec<String> = self
            .scan_all(&self.tables.workloads)
            .await?
            .iter()
            .filter_map(|item| s(item, "SpecName"))
            .collect();
        out.sort();
        Ok(out)
    }

    async fn put_workload(&self, workload: &Workload) -> StoreResult<Vec<String>> {
        self.write_workload(workload).await
    }

    async fn delete_workload(&self, name: &str) -> StoreResult<bool> {
        for item in self.query_all(&self.tables.tiers, "SpecName", name).await? {
            let Some(tier) = s(&item, "TierTagValue") else {
                continue;
            };
            self.client
                .delete_item()
                .table_name(&self.tables.tiers)
                .key("SpecName", AttributeValue::S(name.into()))
                .key("TierTagValue", AttributeValue::S(tier))
                .send()
                .await
                .map_err(|e| backend("DeleteItem", err_text(&e)))?;
        }
        let r = self
            .client
            .delete_item()
            .table_name(&self.tables.workloads)
            .key("SpecName", AttributeValue::S(name.into()))
            .return_values(aws_sdk_dynamodb::types::ReturnValue::AllOld)
            .send()
            .await
            .map_err(|e| backend("DeleteItem", err_text(&e)))?;
        Ok(r.attributes().is_some_and(|a| !a.is_empty()))
    }
}

#[async_trait]
impl AccessStore for DynamoStore {
    async fn token(&self, id: &str) -> StoreResult<Option<Token>> {
        let got = self
            .client
            .get_item()
            .table_name(&self.tables.state)
            .set_key(Some(key("TOKEN", id)))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| backend("GetItem", err_text(&e)))?;
        got.item().map(|i| body::<Token>(i, "token")).transpose()
    }

    async fn tokens(&self) -> StoreResult<Vec<Token>> {
        let items = self.query_all(&self.tables.state, "pk", "TOKEN").await?;
        let mut out: Vec<Token> = items
            .iter()
            .map(|i| body::<Token>(i, "token"))
            .collect::<StoreResult<_>>()?;
        out.sort_by(|a, b| a.created_at.cmp(&b.created_at).then(a.id.cmp(&b.id)));
        Ok(out)
    }

    async fn put_token(&self, token: &Token) -> StoreResult<()> {
        let text = serde_json::to_string(token).map_err(|e| StoreError::Backend(e.to_string()))?;
        let mut item = key("TOKEN", &token.id);
        item.insert("body".into(), AttributeValue::S(text));
        self.put_state(item).await
    }
}

fn body<T: serde::de::DeserializeOwned>(
    item: &HashMap<String, AttributeValue>,
    what: &str,
) -> StoreResult<T> {
    let text = s(item, "body").unwrap_or_default();
    serde_json::from_str(&text).map_err(|e| StoreError::Corrupt {
        key: format!("{what} {}", s(item, "sk").unwrap_or_default()),
        message: e.to_string(),
    })
}

/// The sort key of an event's record.
fn event_sort_key(action: &str, at: DateTime<Utc>) -> String {
    format!(
        "{action}#{}",
        at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
    )
}

impl DynamoStore {
    fn event_item(&self, record: &EventRecord) -> StoreResult<HashMap<String, AttributeValue>> {
        let text = serde_json::to_string(record).map_err(|e| StoreError::Backend(e.to_string()))?;
        let mut item = key(
            &format!("EVENT#{}", record.workload),
            &event_sort_key(&record.action, record.at),
        );
        item.insert("body".into(), AttributeValue::S(text));
        item.extend(self.ttl(record.at));
        Ok(item)
    }
}

#[async_trait]
impl ScheduleStore for DynamoStore {
    async fn overrides(&self, workload: Option<&str>) -> StoreResult<Vec<Override>> {
        let items = self.query_all(&self.tables.state, "pk", "OVERRIDE").await?;
        let mut out: Vec<Override> = items
            .iter()
            .map(|i| body::<Override>(i, "override"))
            .collect::<StoreResult<_>>()?;
        out.retain(|o| workload.is_none_or(|w| o.workload == w));
        out.sort_by(|a, b| a.created_at.cmp(&b.created_at).then(a.id.cmp(&b.id)));
        Ok(out)
    }

    async fn add_override(&self, o: &Override) -> StoreResult<()> {
        let text = serde_json::to_string(o).map_err(|e| StoreError::Backend(e.to_string()))?;
        let mut item = key("OVERRIDE", &o.id);
        item.insert("body".into(), AttributeValue::S(text));
        self.put_state(item).await
    }

    async fn remove_override(&self, id: &str) -> StoreResult<bool> {
        let r = self
            .client
            .delete_item()
            .table_name(&self.tables.state)
            .set_key(Some(key("OVERRIDE", id)))
            .return_values(aws_sdk_dynamodb::types::ReturnValue::AllOld)
            .send()
            .await
            .map_err(|e| backend("DeleteItem", err_text(&e)))?;
        Ok(r.attributes().is_some_and(|a| !a.is_empty()))
    }

    async fn claim_event(&self, record: &EventRecord) -> StoreResult<bool> {
        let r = self
            .client
            .put_item()
            .table_name(&self.tables.state)
            .set_item(Some(self.event_item(record)?))
            .condition_expression("attribute_not_exists(pk)")
            .send()
            .await;
        match r {
            Ok(_) => Ok(true),
            Err(e)
                if e.as_service_error()
                    .is_some_and(|x| x.is_conditional_check_failed_exception()) =>
            {
                Ok(false)
            }
            Err(e) => Err(backend("PutItem", err_text(&e))),
        }
    }

    async fn update_event(&self, record: &EventRecord) -> StoreResult<()> {
        self.put_state(self.event_item(record)?).await
    }

    async fn event_record(
        &self,
        workload: &str,
        action: &str,
        at: DateTime<Utc>,
    ) -> StoreResult<Option<EventRecord>> {
        let out = self
            .client
            .get_item()
            .table_name(&self.tables.state)
            .set_key(Some(key(
                &format!("EVENT#{workload}"),
                &event_sort_key(action, at),
            )))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| backend("GetItem", err_text(&e)))?;
        out.item()
            .map(|i| body::<EventRecord>(i, "event"))
            .transpose()
    }

    async fn event_records(
        &self,
        workload: Option<&str>,
        limit: usize,
    ) -> StoreResult<Vec<EventRecord>> {
        let workloads: Vec<String> = match workload {
            Some(w) => vec![w.to_string()],
            None => self
                .workloads()
                .await?
                .iter()
                .map(|w| w.name.to_string())
                .collect(),
        };
        let mut out = Vec::new();
        for w in workloads {
            for i in self
                .query_all(&self.tables.state, "pk", &format!("EVENT#{w}"))
                .await?
            {
                out.push(body::<EventRecord>(&i, "event")?);
            }
        }
        out.sort_by_key(|e| std::cmp::Reverse(e.at));
        out.truncate(limit);
        Ok(out)
    }
}

#[async_trait]
impl RunStore for DynamoStore {
    /// As the original tool did after each run: `LastActionTime` (UTC,
    /// `YYYY-MM-DD HH:MM:SS`), `LastActionType` (`Start` or `Stop`) and, for a start
    /// with a profile, `Profile`. Nothing when the table does not exist.
    async fn record_last_action(&self, run: &Run) -> StoreResult<()> {
        let at = run.finished.unwrap_or(run.started);
        let mut set = "SET LastActionTime = :t, LastActionType = :a".to_string();
        let mut req = self
            .client
            .update_item()
            .table_name(&self.tables.workload_state)
            .key("Workload", AttributeValue::S(run.workload.clone()))
            .expression_attribute_values(
                ":t",
                AttributeValue::S(at.format("%Y-%m-%d %H:%M:%S").to_string()),
            )
            .expression_attribute_values(
                ":a",
                AttributeValue::S(
                    match run.action {
                        Action::Start => "Start",
                        Action::Stop => "Stop",
                    }
                    .into(),
                ),
            );
        if let (Action::Start, Some(p)) = (run.action, &run.profile) {
            set.push_str(", Profile = :p");
            req = req.expression_attribute_values(":p", AttributeValue::S(p.clone()));
        }
        match req.update_expression(set).send().await {
            Ok(_) => Ok(()),
            Err(e)
                if e.as_service_error()
                    .is_some_and(|s| s.is_resource_not_found_exception()) =>
            {
                Ok(())
            }
            Err(e) => Err(backend("UpdateItem", err_text(&e))),
        }
    }

    async fn acquire(&self, lock: &Lock, now: DateTime<Utc>) -> StoreResult<LockOutcome> {
        let mut item = key(&format!("LOCK#{}", lock.workload), "LOCK");
        item.insert("owner".into(), AttributeValue::S(lock.owner.clone()));
        item.insert("run_id".into(), AttributeValue::S(lock.run_id.clone()));
        item.insert(
            "expires".into(),
            AttributeValue::S(lock.expires.to_rfc3339()),
        );
        item.insert(
            "expires_at".into(),
            AttributeValue::N(lock.expires.timestamp_millis().to_string()),
        );
        let r = self
            .client
            .put_item()
            .table_name(&self.tables.state)
            .set_item(Some(item))
            .condition_expression("attribute_not_exists(pk) OR expires_at <= :now OR #o = :owner")
            .expression_attribute_names("#o", "owner")
            .expression_attribute_values(
                ":now",
                AttributeValue::N(now.timestamp_millis().to_string()),
            )
            .expression_attribute_values(":owner", AttributeValue::S(lock.owner.clone()))
            .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld)
            .send()
            .await;
        match r {
            Ok(_) => Ok(LockOutcome::Acquired),
            Err(e) => match e.as_service_error() {
                Some(aws_sdk_dynamodb::operation::put_item::PutItemError::ConditionalCheckFailedException(c)) => {
                    let old = c.item().cloned().unwrap_or_default();
                    Ok(LockOutcome::Held(Lock {
                        workload: lock.workload.clone(),
                        owner: s(&old, "owner").unwrap_or_default(),
                        run_id: s(&old, "run_id").unwrap_or_default(),
                        expires: s(&old, "expires").map(|t| time(&t, "lock")).transpose()?.unwrap_or(now),
                    }))
                }
                _ => Err(backend("PutItem", err_text(&e))),
            },
        }
    }

    async fn renew(&self, lock: &Lock) -> StoreResult<bool> {
        let r = self
            .client
            .update_item()
            .table_name(&self.tables.state)
            .set_key(Some(key(&format!("LOCK#{}", lock.workload), "LOCK")))
            .update_expression("SET expires = :e, expires_at = :ea")
            .condition_expression("#o = :owner AND run_id = :r")
            .expression_attribute_names("#o", "owner")
            .expression_attribute_values(":e", AttributeValue::S(lock.expires.to_rfc3339()))
            .expression_attribute_values(
                ":ea",
                AttributeValue::N(lock.expires.timestamp_millis().to_string()),
            )
            .expression_attribute_values(":r", AttributeValue::S(lock.run_id.clone()))
            .expression_attribute_values(":owner", AttributeValue::S(lock.owner.clone()))
            .send()
            .await;
        match r {
            Ok(_) => Ok(true),
            Err(e)
                if e.as_service_error()
                    .is_some_and(|x| x.is_conditional_check_failed_exception()) =>
            {
                Ok(false)
            }
            Err(e) => Err(backend("UpdateItem", err_text(&e))),
        }
    }

    async fn holds(&self, lock: &Lock) -> StoreResult<bool> {
        let out = self
            .client
            .get_item()
            .table_name(&self.tables.state)
            .set_key(Some(key(&format!("LOCK#{}", lock.workload), "LOCK")))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| backend("GetItem", err_text(&e)))?;
        Ok(out.item().is_some_and(|i| {
            s(i, "owner").as_deref() == Some(lock.owner.as_str())
                && s(i, "run_id").as_deref() == Some(lock.run_id.as_str())
        }))
    }

    async fn lock_of(&self, workload: &str) -> StoreResult<Option<Lock>> {
        let out = self
            .client
            .get_item()
            .table_name(&self.tables.state)
            .set_key(Some(key(&format!("LOCK#{workload}"), "LOCK")))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| backend("GetItem", err_text(&e)))?;
        out.item()
            .map(|i| {
                Ok(Lock {
                    workload: workload.to_string(),
                    owner: s(i, "owner").unwrap_or_default(),
                    run_id: s(i, "run_id").unwrap_or_default(),
                    expires: time(&s(i, "expires").unwrap_or_default(), "lock")?,
                })
            })
            .transpose()
    }

    async fn release(&self, workload: &str, owner: &str, run_id: Option<&str>) -> StoreResult<()> {
        let delete = self
            .client
            .delete_item()
            .table_name(&self.tables.state)
            .set_key(Some(key(&format!("LOCK#{workload}"), "LOCK")))
            .expression_attribute_names("#o", "owner")
            .expression_attribute_values(":owner", AttributeValue::S(owner.into()));
        let delete = match run_id {
            Some(r) => delete
                .condition_expression("#o = :owner AND run_id = :r")
                .expression_attribute_values(":r", AttributeValue::S(r.into())),
            None => delete.condition_expression("#o = :owner"),
        };
        let r = delete.send().await;
        match r {
            Ok(_) => Ok(()),
            Err(e)
                if e.as_service_error()
                    .is_some_and(|x| x.is_conditional_check_failed_exception()) =>
            {
                Ok(())
            }
            Err(e) => Err(backend("DeleteItem", err_text(&e))),
        }
    }

    async fn pace_shares(&self, account: &str) -> StoreResult<Option<(PaceShares, u64)>> {
        let out = self
            .client
            .get_item()
            .table_name(&self.tables.state)
            .set_key(Some(key(&format!("PACE#{account}"), "PACE")))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| backend("GetItem", err_text(&e)))?;
        out.item()
            .map(|i| {
                let shares =
                    serde_json::from_str(&s(i, "body").unwrap_or_default()).map_err(|e| {
                        StoreError::Corrupt {
                            key: format!("PACE#{account}"),
                            message: e.to_string(),
                        }
                    })?;
                Ok((
                    shares,
                    n(i, "version")
                        .and_then(|v| u64::try_from(v).ok())
                        .unwrap_or(0),
                ))
            })
            .transpose()
    }

    /// The item ages out (TTL) a day after it was last drawn on.
    async fn put_pace_shares(
        &self,
        account: &str,
        shares: &PaceShares,
        version: u64,
    ) -> StoreResult<()> {
        let body = serde_json::to_string(shares).map_err(|e| StoreError::Backend(e.to_string()))?;
        let mut item = key(&format!("PACE#{account}"), "PACE");
        item.insert("body".into(), AttributeValue::S(body));
        item.insert(
            "version".into(),
            AttributeValue::N((version + 1).to_string()),
        );
        let last = shares.last_drawn();
        let ends = last.unwrap_or_else(Utc::now).max(Utc::now()) + chrono::TimeDelta::days(1);
        item.insert(
            TTL_ATTRIBUTE.into(),
            AttributeValue::N(ends.timestamp().to_string()),
        );
        let put = self
            .client
            .put_item()
            .table_name(&self.tables.state)
            .set_item(Some(item))
            .expression_attribute_names("#v", "version");
        let put = if version == 0 {
            put.condition_expression("attribute_not_exists(#v)")
        } else {
            put.condition_expression("#v = :before")
                .expression_attribute_values(":before", AttributeValue::N(version.to_string()))
        };
        match put.send().await {
            Ok(_) => Ok(()),
            Err(e)
                if e.as_service_error()
                    .is_some_and(|x| x.is_conditional_check_failed_exception()) =>
            {
                Err(StoreError::pace_conflict(account, version))
            }
            Err(e) => Err(backend("PutItem", err_text(&e))),
        }
    }

    async fn save_run(&self, run: &mut Run) -> StoreResult<()> {
        let body = serde_json::to_string(&*run).map_err(|e| StoreError::Backend(e.to_string()))?;
        let chunks: Vec<&str> = {
            let mut v = Vec::new();
            let mut rest = body.as_str();
            while rest.len() > PART {
                let mut cut = PART;
                while !rest.is_char_boundary(cut) {
                    cut -= 1;
                }
                v.push(&rest[..cut]);
                rest = &rest[cut..];
            }
            v.push(rest);
            v
        };
        // The parts this store knows of the version the run was read at; read again
        // when it knows another (the run was read or saved by another writer of this
        // process). The condition is the run's own version either way.
        let before = match self.saved(&run.id) {
            Some(s) if s.version == run.version => s,
            _ => Saved {
                version: run.version,
                ..self.read_run(&run.id).await?.1
            },
        };
        let version = before.version + 1;
        let pk = format!("RUN#{}", run.id);
        let digest = digest_of(&body);
        let mut parts = BTreeSet::new();
        for (i, part) in chunks.iter().enumerate().skip(1) {
            let sk = digest_part_key(version, &digest, i);
            let mut item = key(&pk, &sk);
            item.insert("body".into(), AttributeValue::S(part.to_string()));
            item.extend(self.run_ttl(run));
            self.put_state(item).await?;
            parts.insert(sk);
        }
        let mut item = key(&pk, "RUN");
        item.insert("body".into(), AttributeValue::S(chunks[0].to_string()));
        item.insert("parts".into(), AttributeValue::N(chunks.len().to_string()));
        item.insert("version".into(), AttributeValue::N(version.to_string()));
        item.insert("digest".into(), AttributeValue::S(digest));
        item.extend(self.run_ttl(run));
        let put = self
            .client
            .put_item()
            .table_name(&self.tables.state)
            .set_item(Some(item));
        let put = if before.version == 0 {
            put.condition_expression("attribute_not_exists(pk) OR attribute_not_exists(#v)")
                .expression_attribute_names("#v", "version")
        } else {
            put.condition_expression("#v = :before")
                .expression_attribute_names("#v", "version")
                .expression_attribute_values(
                    ":before",
                    AttributeValue::N(before.version.to_string()),
                )
        };
        match put.send().await {
            Ok(_) => {}
            Err(e)
                if e.as_service_error()
                    .is_some_and(|x| x.is_conditional_check_failed_exception()) =>
            {
                // Read again, so that a later save of what is stored now can go.
                self.saved.lock().expect("not poisoned").remove(&run.id);
                return Err(StoreError::run_conflict(&run.id, before.version));
            }
            Err(e) => return Err(backend("PutItem", err_text(&e))),
        }
        // The run is saved. The index entry follows when the status changed, then the
        // parts no version points to any more go.
        run.version = version;
        let index = index_of(run);
        if before.index.as_ref() != Some(&index) {
            self.put_index(run).await?;
        }
        let stale: Vec<WriteRequest> = before
            .parts
            .iter()
            .filter(|k| !parts.contains(*k))
            .map(|k| {
                WriteRequest::builder()
                    .delete_request(
                        DeleteRequest::builder()
                            .set_key(Some(key(&pk, k)))
                            .build()
                            .expect("complete"),
                    )
                    .build()
            })
            .collect();
        self.remember(
            &run.id,
            Saved {
                version,
                parts: parts.clone(),
                index: Some(index),
            },
        );
        if !stale.is_empty() {
            self.batch_write(stale).await?;
        }
        Ok(())
    }

    async fn load_run(&self, id: &str) -> StoreResult<Option<Run>> {
        let (run, saved) = self.read_run(id).await?;
        self.remember(id, saved);
        Ok(run)
    }

    async fn unfinished_run(&self, workload: &str) -> StoreResult<Option<Run>> {
        let rows = self.list_runs(Some(workload)).await?;
        for r in rows.into_iter().filter(|r| r.status == "running") {
            match self.load_run(&r.id).await? {
                Some(run) if !run.status.is_finished() => return Ok(Some(run)),
                // The run ended, but its index entry was not written (a crash
                // between the two writes): correct it.
                Some(run) => self.put_index(&run).await?,
                None => {}
            }
        }
        Ok(None)
    }

    async fn list_runs(&self, workload: Option<&str>) -> StoreResult<Vec<RunSummaryRow>> {
        let items = match workload {
            Some(w) => {
                self.query_all(&self.tables.state, "pk", &format!("RUNS#{w}"))
                    .await?
            }
            None => self
                .scan_all(&self.tables.state)
                .await?
                .into_iter()
                .filter(|i| s(i, "pk").is_some_and(|p| p.starts_with("RUNS#")))
                .collect(),
        };
        let mut rows = Vec::new();
        for i in items {
            let id = s(&i, "id").unwrap_or_default();
            let times = time(&s(&i, "started").unwrap_or_default(), &id)
                .and_then(|t| Ok((t, s(&i, "finished").map(|f| time(&f, &id)).transpose()?)));
            rows.push(RunSummaryRow::new(
                id,
                s(&i, "workload").unwrap_or_default(),
                s(&i, "action").unwrap_or_default(),
                s(&i, "status").unwrap_or_default(),
                times,
            ));
        }
        rows.sort_by(|a, b| b.started.cmp(&a.started).then(b.id.cmp(&a.id)));
        Ok(rows)
    }

    async fn exemptions(&self) -> StoreResult<Vec<Exemption>> {
        let items = self.query_all(&self.tables.state, "pk", "EXEMPT").await?;
        Ok(items
            .iter()
            .map(|i| {
                stored_exemption(
                    exemption_instance(i),
                    s(i, "until"),
                    s(i, "reason").unwrap_or_default(),
                    s(i, "created_by"),
                )
            })
            .collect())
    }

    async fn add_exemption(&self, e: &Exemption) -> StoreResult<()> {
        e.check().map_err(|x| StoreError::Invalid(x.to_string()))?;
        let until = e.until.map(|u| u.to_rfc3339());
        let sk = format!("{}#{}", e.instance_id, until.as_deref().unwrap_or("-"));
        let mut item = key("EXEMPT", &sk);
        item.insert(
            "instance_id".into(),
            AttributeValue::S(e.instance_id.clone()),
        );
        item.insert("reason".into(), AttributeValue::S(e.reason.clone()));
        if let Some(u) = until {
            item.insert("until".into(), AttributeValue::S(u));
        }
        if let Some(by) = &e.created_by {
            item.insert("created_by".into(), AttributeValue::S(by.clone()));
        }
        // One exemption per instance: the new one is written first, then the
        // instance's others are removed, so that the instance is never left without.
        self.put_state(item).await?;
        self.delete_exemptions(&e.instance_id, Some(&sk)).await?;
        Ok(())
    }

    async fn remove_exemption(&self, instance_id: &str) -> StoreResult<bool> {
        self.delete_exemptions(instance_id, None).await
    }

    async fn park(&self, workload: &str, entries: &[(String, LbTarget)]) -> StoreResult<()> {
        for chunk in entries.chunks(PARKED_PER_ITEM) {
            self.put_state(parked_item(workload, chunk)?).await?;
        }
        Ok(())
    }

    async fn parked(&self, workload: &str, ids: &[String]) -> StoreResult<Vec<(String, LbTarget)>> {
        let wanted: BTreeSet<&str> = ids.iter().map(String::as_str).collect();
        let mut seen = BTreeSet::new();
        let mut out = Vec::new();
        for item in self
            .query_all(&self.tables.state, "pk", &format!("PARKED#{workload}"))
            .await?
        {
            for (id, t) in parked_entries(&item)? {
                if wanted.contains(id.as_str()) && seen.insert((id.clone(), t.clone())) {
                    out.push((id, t));
                }
            }
        }
        Ok(out)
    }

    async fn unpark(&self, workload: &str, ids: &[String]) -> StoreResult<()> {
        let gone: BTreeSet<&str> = ids.iter().map(String::as_str).collect();
        let pk = format!("PARKED#{workload}");
        let mut writes = Vec::new();
        for item in self.query_all(&self.tables.state, "pk", &pk).await? {
            let entries = parked_entries(&item)?;
            let left: Vec<(String, LbTarget)> = entries
                .iter()
                .filter(|(id, _)| !gone.contains(id.as_str()))
                .cloned()
                .collect();
            if left.len() == entries.len() {
                continue;
            }
            if !left.is_empty() {
                writes.push(
                    WriteRequest::builder()
                        .put_request(
                            PutRequest::builder()
                                .set_item(Some(parked_item(workload, &left)?))
                                .build()
                                .map_err(|e| backend("BatchWriteItem", e))?,
                        )
                        .build(),
                );
            }
            writes.push(
                WriteRequest::builder()
                    .delete_request(
                        DeleteRequest::builder()
                            .set_key(Some(key(&pk, &s(&item, "sk").unwrap_or_default())))
                            .build()
                            .map_err(|e| backend("BatchWriteItem", e))?,
                    )
                    .build(),
            );
        }
        self.batch_write(writes).await
    }
}

/// Parked registrations kept in one item (about 150 bytes each; an item holds 400 KB).
const PARKED_PER_ITEM: usize = 1000;

/// One item holding parked registrations, keyed by a digest of what it holds: parking
/// the same registrations again (a step repeated after a crash) writes the same item.
fn parked_item(
    workload: &str,
    entries: &[(String, LbTarget)],
) -> StoreResult<HashMap<String, AttributeValue>> {
    use sha2::Digest;
    let body = serde_json::to_string(entries).map_err(|e| StoreError::Backend(e.to_string()))?;
    let digest = sha2::Sha256::digest(body.as_bytes());
    let hex: String = digest[..16].iter().map(|b| format!("{b:02x}")).collect();
    let mut item = key(&format!("PARKED#{workload}"), &format!("SET#{hex}"));
    item.insert("entries".into(), AttributeValue::S(body));
    Ok(item)
}

/// The registrations an item holds: a set of them, or one (`<instance>#<target>`, as
/// items were written before sets).
fn parked_entries(item: &HashMap<String, AttributeValue>) -> StoreResult<Vec<(String, LbTarget)>> {
    let sk = s(item, "sk").unwrap_or_default();
    let corrupt = |e: serde_json::Error| StoreError::Corrupt {
        key: sk.clone(),
        message: e.to_string(),
    };
    if sk.starts_with("SET#") {
        return serde_json::from_str(&s(item, "entries").unwrap_or_default()).map_err(corrupt);
    }
    let Some((id, _)) = sk.split_once('#') else {
        return Ok(Vec::new());
    };
    let t: LbTarget =
        serde_json::from_str(&s(item, "target").unwrap_or_default()).map_err(corrupt)?;
    Ok(vec![(id.to_string(), t)])
}
