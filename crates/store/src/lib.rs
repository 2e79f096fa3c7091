//! The embedded store: one SQLite file holding workloads, runs (with their
//! checkpoints), workload locks, exemptions and parked load-balancer registrations.
//!
//! Workloads are kept as ec2-scheduler YAML (one document per workload), so the file
//! can be inspected with the sqlite3 shell and every format's settings survive.
//! Runs are JSON; locks use a transaction so that taking one is atomic across
//! processes sharing the file.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Mutex;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use ec2_scheduler_config::{Format, export, stored_workload};
use ec2_scheduler_core::access::Token;
use ec2_scheduler_core::overrides::Override;
use ec2_scheduler_core::{Exemption, Workload};
use ec2_scheduler_engine::memory::may_take;
use ec2_scheduler_engine::ports::{
    AccessStore, ConfigStore, EventRecord, LbTarget, Lock, LockOutcome, RunStore, RunSummaryRow,
    ScheduleStore, StoreError, StoreResult, stored_exemption,
};
use ec2_scheduler_engine::run::Run;
use ec2_scheduler_engine::share::PaceShares;
use rusqlite::{Connection, OptionalExtension, TransactionBehavior, params};

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS workloads (
    name TEXT PRIMARY KEY,
    yaml TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS runs (
    id TEXT PRIMARY KEY,
    workload TEXT NOT NULL,
    action TEXT NOT NULL,
    status TEXT NOT NULL,
    started TEXT NOT NULL,
    finished TEXT,
    body TEXT NOT NULL,
    version INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS runs_by_workload ON runs (workload, started);
CREATE TABLE IF NOT EXISTS locks (
    workload TEXT PRIMARY KEY,
    owner TEXT NOT NULL,
    run_id TEXT NOT NULL,
    expires TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS exemptions (
    instance_id TEXT NOT NULL,
    until TEXT,
    reason TEXT NOT NULL,
    created_by TEXT
);
CREATE TABLE IF NOT EXISTS overrides (
    id TEXT PRIMARY KEY,
    workload TEXT NOT NULL,
    body TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS events (
    key TEXT PRIMARY KEY,
    workload TEXT NOT NULL,
    at TEXT NOT NULL,
    body TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS tokens (
    id TEXT PRIMARY KEY,
    body TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS pace (
    account TEXT PRIMARY KEY,
    body TEXT NOT NULL,
    version INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS parked (
    workload TEXT NOT NULL,
    instance_id TEXT NOT NULL,
    target TEXT NOT NULL,
    PRIMARY KEY (workload, instance_id, target)
);
";

/// A SQLite-backed store.
pub struct SqliteStore {
    conn: Mutex<Connection>,
    /// Workloads as last decoded, by name, with the text they were decoded from:
    /// `serve` reads every workload each turn, and the text changes rarely, so a read
    /// decodes again only what another writer changed (the text is compared whole).
    decoded: Mutex<HashMap<String, (String, Workload)>>,
}

fn backend(e: rusqlite::Error) -> StoreError {
    StoreError::Backend(e.to_string())
}

fn time(s: &str, key: &str) -> StoreResult<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(s)
        .map(|t| t.with_timezone(&Utc))
        .map_err(|e| StoreError::Corrupt {
            key: key.to_string(),
            message: e.to_string(),
        })
}

impl SqliteStore {
    /// Opens (creating if needed) the store at `path`.
    ///
    /// # Errors
    /// When the file cannot be opened or is not an ec2-scheduler store.
    pub fn open(path: &Path) -> StoreResult<Self> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)
                .map_err(|e| StoreError::Backend(format!("{}: {e}", dir.display())))?;
        }
        let conn = Connection::open(path)
            .map_err(|e| StoreError::Backend(format!("{}: {e}", path.display())))?;
        // A write-ahead log: one sync of the log per commit instead of the rollback
        // journal's several, and readers (the command line, the dashboard) never wait
        // for `serve`'s writes. Every commit is still synced before it is answered.
        conn.pragma_update(None, "journal_mode", "WAL")
            .and_then(|()| conn.pragma_update(None, "synchronous", "FULL"))
            .map_err(|e| StoreError::Backend(format!("{}: {e}", path.display())))?;
        Self::init(conn)
    }

    /// A store in memory (for tests).
    pub fn in_memory() -> StoreResult<Self> {
        Self::init(Connection::open_in_memory().map_err(backend)?)
    }

    fn init(conn: Connection) -> StoreResult<Self> {
        conn.busy_timeout(std::time::Duration::from_secs(5))
            .map_err(backend)?;
        conn.execute_batch(SCHEMA).map_err(backend)?;
        // Every statement is prepared once per connection and kept (`prepare_cached`):
        // `serve` runs the same few dozen thousands of times.
        conn.set_prepared_statement_cache_capacity(64);
        // Stores made before exemptions recorded who asked, or before runs had
        // versions, gain the column.
        for (table, column, ty) in [
            ("exemptions", "created_by", "TEXT"),
            ("runs", "version", "INTEGER NOT NULL DEFAULT 0"),
        ] {
            let has: bool = conn
                .prepare_cached("SELECT COUNT(*) FROM pragma_table_info(?1) WHERE name = ?2")
                .and_then(|mut s| s.query_row(params![table, column], |r| r.get::<_, i64>(0)))
                .map_err(backend)?
                > 0;
            if !has {
                conn.execute_batch(&format!("ALTER TABLE {table} ADD COLUMN {column} {ty}"))
                    .map_err(backend)?;
            }
        }
        Ok(SqliteStore {
            conn: Mutex::new(conn),
            decoded: Mutex::default(),
        })
    }

    /// The workload `name` stored as `yaml`: as decoded before when the text is the
    /// same, else decoded now (and kept).
    fn decoded(&self, name: &str, yaml: String) -> StoreResult<Workload> {
        let mut cache = self.decoded.lock().unwrap_or_else(|p| p.into_inner());
        if let Some((text, w)) = cache.get(name)
            && *text == yaml
        {
            return Ok(w.clone());
        }
        let w = decode_workload(name, &yaml)?;
        cache.insert(name.to_string(), (yaml, w.clone()));
        Ok(w)
    }

    fn with<T>(&self, f: impl FnOnce(&mut Connection) -> StoreResult<T>) -> StoreResult<T> {
        let mut c = self.conn.lock().unwrap_or_else(|p| p.into_inner());
        f(&mut c)
    }
}

fn decode_run(id: &str, body: &str, version: i64) -> StoreResult<Run> {
    let mut run: Run = serde_json::from_str(body).map_err(|e| StoreError::Corrupt {
        key: format!("run {id}"),
        message: e.to_string(),
    })?;
    run.version = u64::try_from(version).unwrap_or(0);
    Ok(run)
}

#[async_trait]
impl RunStore for SqliteStore {
    async fn acquire(&self, lock: &Lock, now: DateTime<Utc>) -> StoreResult<LockOutcome> {
        self.with(|c| {
            let tx = c
                .transaction_with_behavior(TransactionBehavior::Immediate)
                .map_err(backend)?;
            let current: Option<(String, String, String)> = tx
                .prepare_cached("SELECT owner, run_id, expires FROM locks WHERE workload = ?1")
                .and_then(|mut s| {
                    s.query_row(params![lock.workload], |r| {
                        Ok((r.get(0)?, r.get(1)?, r.get(2)?))
                    })
                })
                .optional()
                .map_err(backend)?;
            let current = match current {
                None => None,
                Some((owner, run_id, expires)) => Some(Lock {
                    workload: lock.workload.clone(),
                    owner,
                    run_id,
                    expires: time(&expires, "lock")?,
                }),
            };
            if !may_take(current.as_ref(), lock, now) {
                return Ok(LockOutcome::Held(current.expect("held")));
            }
            tx.prepare_cached(
                "INSERT INTO locks (workload, owner, run_id, expires) VALUES (?1, ?2, ?3, ?4)
                 ON CONFLICT (workload) DO UPDATE SET owner = ?2, run_id = ?3, expires = ?4",
            )
            .and_then(|mut s| {
                s.execute(params![
                    lock.workload,
                    lock.owner,
                    lock.run_id,
                    lock.expires.to_rfc3339()
                ])
            })
            .map_err(backend)?;
            tx.commit().map_err(backend)?;
            Ok(LockOutcome::Acquired)
        })
    }

    async fn renew(&self, lock: &Lock) -> StoreResult<bool> {
        self.with(|c| {
            let n = c
                .prepare_cached("UPDATE locks SET expires = ?3 WHERE workload = ?1 AND owner = ?2 AND run_id = ?4").and_then(|mut s| s.execute(
                    params![
                        lock.workload,
                        lock.owner,
                        lock.expires.to_rfc3339(),
                        lock.run_id
                    ],
                ))
                .map_err(backend)?;
            Ok(n == 1)
        })
    }

    async fn lock_of(&self, workload: &str) -> StoreResult<Option<Lock>> {
        self.with(|c| {
            let row: Option<(String, String, String)> = c
                .prepare_cached("SELECT owner, run_id, expires FROM locks WHERE workload = ?1")
                .and_then(|mut s| {
                    s.query_row(params![workload], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
                })
                .optional()
                .map_err(backend)?;
            row.map(|(owner, run_id, expires)| {
                Ok(Lock {
                    workload: workload.to_string(),
                    owner,
                    run_id,
                    expires: time(&expires, "lock")?,
                })
            })
            .transpose()
        })
    }

    async fn release(&self, workload: &str, owner: &str, run_id: Option<&str>) -> StoreResult<()> {
        self.with(|c| {
            c.prepare_cached("DELETE FROM locks WHERE workload = ?1 AND owner = ?2 AND (?3 IS NULL OR run_id = ?3)").and_then(|mut s| s.execute(
                params![workload, owner, run_id],
            ))
            .map_err(backend)?;
            Ok(())
        })
    }

    async fn pace_shares(&self, account: &str) -> StoreResult<Option<(PaceShares, u64)>> {
        self.with(|c| {
            let row: Option<(String, i64)> = c
                .prepare_cached("SELECT body, version FROM pace WHERE account = ?1")
                .and_then(|mut s| s.query_row(params![account], |r| Ok((r.get(0)?, r.get(1)?))))
                .optional()
                .map_err(backend)?;
            row.map(|(body, version)| {
                let shares = serde_json::from_str(&body).map_err(|e| StoreError::Corrupt {
                    key: format!("pace {account}"),
                    message: e.to_string(),
                })?;
                Ok((shares, u64::try_from(version).unwrap_or(0)))
            })
            .transpose()
        })
    }

    async fn put_pace_shares(
        &self,
        account: &str,
        shares: &PaceShares,
        version: u64,
    ) -> StoreResult<()> {
        let body = serde_json::to_string(shares).map_err(|e| StoreError::Backend(e.to_string()))?;
        let read = i64::try_from(version).map_err(|e| StoreError::Backend(e.to_string()))?;
        let written = self.with(|c| {
            c.prepare_cached(
                "INSERT INTO pace (account, body, version) VALUES (?1, ?2, ?3 + 1)
                 ON CONFLICT (account) DO UPDATE SET body = ?2, version = ?3 + 1
                 WHERE pace.version = ?3 AND ?3 > 0",
            )
            .and_then(|mut s| s.execute(params![account, body, read]))
            .map_err(backend)
        })?;
        if written != 1 {
            return Err(StoreError::pace_conflict(account, version));
        }
        Ok(())
    }

    async fn save_run(&self, run: &mut Run) -> StoreResult<()> {
        let body = serde_json::to_string(&*run).map_err(|e| StoreError::Backend(e.to_string()))?;
        let read = run.version;
        let read_version = i64::try_from(read).map_err(|e| StoreError::Backend(e.to_string()))?;
        let written = self.with(|c| {
            // One statement: whoever else shares the file (another process) sees the
            // old row or the new one, and a row saved since `read` is left alone.
            c.prepare_cached(
                "INSERT INTO runs (id, workload, action, status, started, finished, body, version)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8 + 1)
                 ON CONFLICT (id) DO UPDATE SET status = ?4, finished = ?6, body = ?7,
                     version = ?8 + 1
                 WHERE runs.version = ?8",
            )
            .and_then(|mut s| {
                s.execute(params![
                    run.id,
                    run.workload,
                    run.action.to_string(),
                    run.status.as_str(),
                    run.started.to_rfc3339(),
                    run.finished.map(|f| f.to_rfc3339()),
                    body,
                    read_version
                ])
            })
            .map_err(backend)
        })?;
        if written != 1 {
            return Err(StoreError::run_conflict(&run.id, read));
        }
        run.version = read + 1;
        Ok(())
    }

    async fn load_run(&self, id: &str) -> StoreResult<Option<Run>> {
        self.with(|c| {
            let row: Option<(String, i64)> = c
                .prepare_cached("SELECT body, version FROM runs WHERE id = ?1")
                .and_then(|mut s| s.query_row(params![id], |r| Ok((r.get(0)?, r.get(1)?))))
                .optional()
                .map_err(backend)?;
            row.map(|(b, v)| decode_run(id, &b, v)).transpose()
        })
    }

    async fn unfinished_run(&self, workload: &str) -> StoreResult<Option<Run>> {
        self.with(|c| {
            let row: Option<(String, String, i64)> = c
                .prepare_cached(
                    "SELECT id, body, version FROM runs WHERE workload = ?1 AND status = 'running'
                     ORDER BY started DESC LIMIT 1",
                )
                .and_then(|mut s| {
                    s.query_row(params![workload], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
                })
                .optional()
                .map_err(backend)?;
            row.map(|(id, b, v)| decode_run(&id, &b, v)).transpose()
        })
    }

    async fn list_runs(&self, workload: Option<&str>) -> StoreResult<Vec<RunSummaryRow>> {
        self.with(|c| {
            let mut stmt = c
                .prepare_cached(
                    "SELECT id, workload, action, status, started, finished FROM runs
                     WHERE ?1 IS NULL OR workload = ?1 ORDER BY started DESC, id DESC",
                )
                .map_err(backend)?;
            let rows = stmt
                .query_map(params![workload], |r| {
                    Ok((
                        r.get::<_, String>(0)?,
                        r.get::<_, String>(1)?,
                        r.get::<_, String>(2)?,
                        r.get::<_, String>(3)?,
                        r.get::<_, String>(4)?,
                        r.get::<_, Option<String>>(5)?,
                    ))
                })
                .map_err(backend)?;
            let mut out = Vec::new();
            for row in rows {
                let (id, workload, action, status, started, finished) = row.map_err(backend)?;
                let times = time(&started, &id)
                    .and_then(|t| Ok((t, finished.map(|f| time(&f, &id)).transpose()?)));
                out.push(RunSummaryRow::new(id, workload, action, status, times));
            }
            Ok(out)
        })
    }

    async fn exemptions(&self) -> StoreResult<Vec<Exemption>> {
        self.with(|c| {
            let mut stmt = c
                .prepare_cached(
                    "SELECT instance_id, until, reason, created_by FROM exemptions ORDER BY instance_id",
                )
                .map_err(backend)?;
            let rows = stmt
                .query_map([], |r| {
                    Ok((
                        r.get::<_, String>(0)?,
                        r.get::<_, Option<String>>(1)?,
                        r.get::<_, String>(2)?,
                        r.get::<_, Option<String>>(3)?,
                    ))
                })
                .map_err(backend)?;
            let mut out = Vec::new();
            for row in rows {
                let (instance_id, until, reason, by) = row.map_err(backend)?;
                out.push(stored_exemption(instance_id, until, reason, by));
            }
            Ok(out)
        })
    }

    async fn add_exemption(&self, e: &Exemption) -> StoreResult<()> {
        e.check().map_err(|x| StoreError::Invalid(x.to_string()))?;
        self.with(|c| {
            // One exemption per instance: a new one replaces the old.
            let tx = c.transaction().map_err(backend)?;
            tx.prepare_cached("DELETE FROM exemptions WHERE instance_id = ?1").and_then(|mut s| s.execute(
                params![e.instance_id],
            ))
            .map_err(backend)?;
            tx.prepare_cached("INSERT INTO exemptions (instance_id, until, reason, created_by) VALUES (?1, ?2, ?3, ?4)").and_then(|mut s| s.execute(
                params![
                    e.instance_id,
                    e.until.map(|u| u.to_rfc3339()),
                    e.reason,
                    e.created_by
                ],
            ))
            .map_err(backend)?;
            tx.commit().map_err(backend)
        })
    }

    async fn remove_exemption(&self, instance_id: &str) -> StoreResult<bool> {
        self.with(|c| {
            let n = c
                .prepare_cached("DELETE FROM exemptions WHERE instance_id = ?1")
                .and_then(|mut s| s.execute(params![instance_id]))
                .map_err(backend)?;
            Ok(n > 0)
        })
    }

    async fn park(&self, workload: &str, entries: &[(String, LbTarget)]) -> StoreResult<()> {
        self.with(|c| {
            let tx = c.transaction().map_err(backend)?;
            for (id, t) in entries {
                let target =
                    serde_json::to_string(t).map_err(|e| StoreError::Backend(e.to_string()))?;
                tx.prepare_cached("INSERT OR IGNORE INTO parked (workload, instance_id, target) VALUES (?1, ?2, ?3)").and_then(|mut s| s.execute(
                    params![workload, id, target],
                ))
                .map_err(backend)?;
            }
            tx.commit().map_err(backend)
        })
    }

    async fn parked(&self, workload: &str, ids: &[String]) -> StoreResult<Vec<(String, LbTarget)>> {
        self.with(|c| {
            let mut stmt = c
                .prepare_cached("SELECT target FROM parked WHERE workload = ?1 AND instance_id = ?2 ORDER BY target")
                .map_err(backend)?;
            let mut out = Vec::new();
            for id in ids {
                let rows = stmt
                    .query_map(params![workload, id], |r| r.get::<_, String>(0))
                    .map_err(backend)?;
                for row in rows {
                    let t = row.map_err(backend)?;
                    let target = serde_json::from_str(&t).map_err(|e| StoreError::Corrupt {
                        key: format!("parked {id}"),
                        message: e.to_string(),
                    })?;
                    out.push((id.clone(), target));
                }
            }
            Ok(out)
        })
    }

    async fn unpark(&self, workload: &str, ids: &[String]) -> StoreResult<()> {
        self.with(|c| {
            let tx = c.transaction().map_err(backend)?;
            for id in ids {
                tx.prepare_cached("DELETE FROM parked WHERE workload = ?1 AND instance_id = ?2")
                    .and_then(|mut s| s.execute(params![workload, id]))
                    .map_err(backend)?;
            }
            tx.commit().map_err(backend)
        })
    }
}

fn encode<T: serde::Serialize>(v: &T) -> StoreResult<String> {
    serde_json::to_string(v).map_err(|e| StoreError::Backend(e.to_string()))
}

fn decode<T: serde::de::DeserializeOwned>(key: String, body: &str) -> StoreResult<T> {
    serde_json::from_str(body).map_err(|e| StoreError::Corrupt {
        key,
        message: e.to_string(),
    })
}

#[async_trait]
impl ScheduleStore for SqliteStore {
    async fn overrides(&self, workload: Option<&str>) -> StoreResult<Vec<Override>> {
        self.with(|c| {
            let mut stmt = c
                .prepare_cached(
                    "SELECT id, body FROM overrides WHERE ?1 IS NULL OR workload = ?1 ORDER BY rowid",
                )
                .map_err(backend)?;
            let rows = stmt
                .query_map(params![workload], |r| {
                    Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?))
                })
                .map_err(backend)?;
            let mut out = Vec::new();
            for row in rows {
                let (id, body) = row.map_err(backend)?;
                out.push(decode(format!("override {id}"), &body)?);
            }
            Ok(out)
        })
    }

    async fn add_override(&self, o: &Override) -> StoreResult<()> {
        let body = encode(o)?;
        self.with(|c| {
            c.prepare_cached("INSERT INTO overrides (id, workload, body) VALUES (?1, ?2, ?3)")
                .and_then(|mut s| s.execute(params![o.id, o.workload, body]))
                .map_err(backend)?;
            Ok(())
        })
    }

    async fn remove_override(&self, id: &str) -> StoreResult<bool> {
        self.with(|c| {
            let n = c
                .prepare_cached("DELETE FROM overrides WHERE id = ?1")
                .and_then(|mut s| s.execute(params![id]))
                .map_err(backend)?;
            Ok(n > 0)
        })
    }

    async fn claim_event(&self, record: &EventRecord) -> StoreResult<bool> {
        let body = encode(record)?;
        self.with(|c| {
            let n = c
                .prepare_cached("INSERT OR IGNORE INTO events (key, workload, at, body) VALUES (?1, ?2, ?3, ?4)").and_then(|mut s| s.execute(
                    params![record.key(), record.workload, record.at.to_rfc3339(), body],
                ))
                .map_err(backend)?;
            Ok(n == 1)
        })
    }

    async fn update_event(&self, record: &EventRecord) -> StoreResult<()> {
        let body = encode(record)?;
        self.with(|c| {
            c.prepare_cached(
                "INSERT OR REPLACE INTO events (key, workload, at, body) VALUES (?1, ?2, ?3, ?4)",
            )
            .and_then(|mut s| {
                s.execute(params![
                    record.key(),
                    record.workload,
                    record.at.to_rfc3339(),
                    body
                ])
            })
            .map_err(backend)?;
            Ok(())
        })
    }

    async fn event_records(
        &self,
        workload: Option<&str>,
        limit: usize,
    ) -> StoreResult<Vec<EventRecord>> {
        self.with(|c| {
            let mut stmt = c
                .prepare_cached(
                    "SELECT key, body FROM events WHERE ?1 IS NULL OR workload = ?1 ORDER BY at DESC LIMIT ?2",
                )
                .map_err(backend)?;
            let rows = stmt
                .query_map(params![workload, limit as i64], |r| {
                    Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?))
                })
                .map_err(backend)?;
            let mut out = Vec::new();
            for row in rows {
                let (key, body) = row.map_err(backend)?;
                out.push(decode(format!("event {key}"), &body)?);
            }
            Ok(out)
        })
    }
}

#[async_trait]
impl ConfigStore for SqliteStore {
    async fn workload(&self, name: &str) -> StoreResult<Option<Workload>> {
        let yaml: Option<String> = self.with(|c| {
            c.prepare_cached("SELECT yaml FROM workloads WHERE name = ?1")
                .and_then(|mut s| s.query_row(params![name], |r| r.get(0)))
                .optional()
                .map_err(backend)
        })?;
        yaml.map(|y| self.decoded(name, y)).transpose()
    }

    async fn workloads(&self) -> StoreResult<Vec<Workload>> {
        let rows: Vec<(String, String)> = self.with(|c| {
            let mut stmt = c
                .prepare_cached("SELECT name, yaml FROM workloads ORDER BY name")
                .map_err(backend)?;
            let rows = stmt
                .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
                .map_err(backend)?;
            rows.collect::<Result<_, _>>().map_err(backend)
        })?;
        rows.into_iter().map(|(n, y)| self.decoded(&n, y)).collect()
    }

    async fn workload_names(&self) -> StoreResult<Vec<String>> {
        self.with(|c| {
            let mut stmt = c
                .prepare_cached("SELECT name FROM workloads ORDER BY name")
                .map_err(backend)?;
            let rows = stmt.query_map([], |r| r.get(0)).map_err(backend)?;
            rows.collect::<Result<_, _>>().map_err(backend)
        })
    }

    async fn put_workload(&self, workload: &Workload) -> StoreResult<Vec<String>> {
        let old = self.workload(workload.name.as_str()).await.ok().flatten();
        let yaml = export(std::slice::from_ref(workload), Format::Yaml);
        self.with(|c| {
            c.prepare_cached(
                "INSERT INTO workloads (name, yaml) VALUES (?1, ?2)
                 ON CONFLICT (name) DO UPDATE SET yaml = ?2",
            )
            .and_then(|mut s| s.execute(params![workload.name.as_str(), yaml]))
            .map_err(backend)?;
            Ok(())
        })?;
        Ok(ec2_scheduler_engine::memory::removed_tiers(
            old.as_ref(),
            workload,
        ))
    }

    async fn delete_workload(&self, name: &str) -> StoreResult<bool> {
        self.with(|c| {
            let n = c
                .prepare_cached("DELETE FROM workloads WHERE name = ?1")
                .and_then(|mut s| s.execute(params![name]))
                .map_err(backend)?;
            Ok(n > 0)
        })
    }
}

#[async_trait]
impl AccessStore for SqliteStore {
    async fn token(&self, id: &str) -> StoreResult<Option<Token>> {
        let body: Option<String> = self.with(|c| {
            c.prepare_cached("SELECT body FROM tokens WHERE id = ?1")
                .and_then(|mut s| s.query_row(params![id], |r| r.get(0)))
                .optional()
                .map_err(backend)
        })?;
        body.map(|b| decode(format!("token {id}"), &b)).transpose()
    }

    async fn tokens(&self) -> StoreResult<Vec<Token>> {
        self.with(|c| {
            let mut stmt = c
                .prepare_cached("SELECT id, body FROM tokens ORDER BY rowid")
                .map_err(backend)?;
            let rows = stmt
                .query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?)))
                .map_err(backend)?;
            let mut out = Vec::new();
            for row in rows {
                let (id, body) = row.map_err(backend)?;
                out.push(decode(format!("token {id}"), &body)?);
            }
            Ok(out)
        })
    }

    async fn put_token(&self, token: &Token) -> StoreResult<()> {
        let body = encode(token)?;
        self.with(|c| {
            c.prepare_cached(
                "INSERT INTO tokens (id, body) VALUES (?1, ?2)
                 ON CONFLICT (id) DO UPDATE SET body = ?2",
            )
            .and_then(|mut s| s.execute(params![token.id, body]))
            .map_err(backend)?;
            Ok(())
        })
    }
}

fn decode_workload(name: &str, yaml: &str) -> StoreResult<Workload> {
    stored_workload(&format!("store: workload {name}"), yaml).map_err(|d| StoreError::Corrupt {
        key: format!("workload {name}"),
        message: d.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeDelta;
    use ec2_scheduler_config::{Source, load};

    fn t(s: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_800_000_000 + s, 0).unwrap()
    }

    fn lock(owner: &str, expires: DateTime<Utc>) -> Lock {
        Lock {
            workload: "W".into(),
            owner: owner.into(),
            run_id: format!("run-{owner}"),
            expires,
        }
    }

    #[test]
    fn the_sqlite_store_keeps_the_run_store_contract() {
        let s = SqliteStore::in_memory().unwrap();
        pollster::block_on(ec2_scheduler_engine::contract::run_store(&s));
    }

    #[test]
    fn locks_are_exclusive_until_they_expire() {
        let s = SqliteStore::in_memory().unwrap();
        let a = lock("a", t(60));
        assert_eq!(
            pollster::block_on(s.acquire(&a, t(0))).unwrap(),
            LockOutcome::Acquired
        );
        match pollster::block_on(s.acquire(&lock("b", t(90)), t(30))).unwrap() {
            LockOutcome::Held(l) => assert_eq!(l, a),
            other => panic!("{other:?}"),
        }
        assert!(pollster::block_on(s.renew(&lock("a", t(120)))).unwrap());
        assert!(!pollster::block_on(s.renew(&lock("b", t(120)))).unwrap());
        assert_eq!(
            pollster::block_on(s.acquire(&lock("b", t(200)), t(121))).unwrap(),
            LockOutcome::Acquired
        );
        pollster::block_on(s.release("W", "a", None)).unwrap();
        assert!(matches!(
            pollster::block_on(s.acquire(&lock("a", t(300)), t(122))).unwrap(),
            LockOutcome::Held(_)
        ));
    }

    #[test]
    fn issue7_1_an_unreadable_record_is_listed_not_fatal_and_its_exemption_holds() {
        let s = SqliteStore::in_memory().unwrap();
        // Records as an older version, or another tool, may have written them.
        s.with(|c| {
            c.execute_batch(
                "INSERT INTO exemptions (instance_id, until, reason) VALUES ('i-0web0003', '+10000-01-01T00:00:00+00:00', 'x');
                 INSERT INTO runs (id, workload, action, status, started, finished, body) VALUES ('r1', 'W', 'stop', 'succeeded', 'not a time', NULL, '{}');",
            )
            .map_err(backend)
        })
        .unwrap();
        let list = pollster::block_on(s.exemptions()).unwrap();
        assert_eq!(list.len(), 1);
        assert_eq!(list[0].instance_id, "i-0web0003");
        assert!(list[0].active(t(0)), "counted as exempt: {list:?}");
        assert!(
            list[0]
                .reason
                .contains("ec2-scheduler exempt remove i-0web0003"),
            "{list:?}"
        );
        let runs = pollster::block_on(s.list_runs(None)).unwrap();
        assert_eq!(runs.len(), 1);
        assert!(runs[0].status.starts_with("unreadable"), "{runs:?}");
        assert!(pollster::block_on(s.remove_exemption("i-0web0003")).unwrap());
    }

    #[test]
    fn issue7_13_exemptions_are_checked_and_one_per_instance() {
        let s = SqliteStore::in_memory().unwrap();
        let e = |id: &str, reason: &str| Exemption {
            instance_id: id.into(),
            until: None,
            reason: reason.into(),
            created_by: None,
        };
        assert!(pollster::block_on(s.add_exemption(&e("i-1';--", "x"))).is_err());
        pollster::block_on(s.add_exemption(&e("i-1", "first"))).unwrap();
        pollster::block_on(s.add_exemption(&e("i-1", "second"))).unwrap();
        assert_eq!(
            pollster::block_on(s.exemptions()).unwrap(),
            vec![e("i-1", "second")]
        );
    }

    #[test]
    fn a_store_made_before_exemptions_recorded_who_asked_opens_and_keeps_them() {
        let dir = std::env::temp_dir().join(format!("ec2s-store-old-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("state.db");
        let old = Connection::open(&path).unwrap();
        old.execute_batch(
            "CREATE TABLE exemptions (instance_id TEXT NOT NULL, until TEXT, reason TEXT NOT NULL);
             INSERT INTO exemptions VALUES ('i-1', NULL, 'kept');",
        )
        .unwrap();
        drop(old);
        for _ in 0..2 {
            // Opened twice: the column is added once.
            let s = SqliteStore::open(&path).unwrap();
            let list = pollster::block_on(s.exemptions()).unwrap();
            assert_eq!(list[0].reason, "kept");
            assert_eq!(list[0].created_by, None);
        }
        let s = SqliteStore::open(&path).unwrap();
        let e = Exemption {
            instance_id: "i-2".into(),
            until: None,
            reason: "new".into(),
            created_by: Some("alice".into()),
        };
        pollster::block_on(s.add_exemption(&e)).unwrap();
        assert_eq!(pollster::block_on(s.exemptions()).unwrap()[1], e);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_store_made_before_runs_had_versions_opens_and_saves_them_with_compare_and_set() {
        let dir = std::env::temp_dir().join(format!("ec2s-store-runs-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("state.db");
        let run = ec2_scheduler_engine::contract::sample_run("r1", "W", 2);
        let old = Connection::open(&path).unwrap();
        old.execute_batch(
            "CREATE TABLE runs (id TEXT PRIMARY KEY, workload TEXT NOT NULL, action TEXT NOT NULL,
                 status TEXT NOT NULL, started TEXT NOT NULL, finished TEXT, body TEXT NOT NULL);",
        )
        .unwrap();
        old.execute(
            "INSERT INTO runs VALUES ('r1', 'W', 'start', 'running', ?1, NULL, ?2)",
            params![
                run.started.to_rfc3339(),
                serde_json::to_string(&run).unwrap()
            ],
        )
        .unwrap();
        drop(old);
        let s = SqliteStore::open(&path).unwrap();
        let mut a = pollster::block_on(s.load_run("r1")).unwrap().unwrap();
        assert_eq!((a.version, &a), (0, &run));
        let mut b = a.clone();
        pollster::block_on(s.save_run(&mut a)).unwrap();
        assert_eq!(a.version, 1);
        assert!(matches!(
            pollster::block_on(s.save_run(&mut b)),
            Err(StoreError::Conflict(_))
        ));
        assert_eq!(pollster::block_on(s.load_run("r1")).unwrap(), Some(a));
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn exemptions_and_parked_registrations_round_trip() {
        let s = SqliteStore::in_memory().unwrap();
        let e = Exemption {
            instance_id: "i-1".into(),
            until: Some(t(0) + TimeDelta::days(1)),
            reason: "load test".into(),
            created_by: Some("ops-token".into()),
        };
        pollster::block_on(s.add_exemption(&e)).unwrap();
        assert_eq!(pollster::block_on(s.exemptions()).unwrap(), vec![e]);
        assert!(pollster::block_on(s.remove_exemption("i-1")).unwrap());
        assert!(!pollster::block_on(s.remove_exemption("i-1")).unwrap());
        let elb = LbTarget::Classic { name: "web".into() };
        let tg = LbTarget::TargetGroup {
            arn: "arn:tg".into(),
            port: Some(80),
        };
        let entries = vec![
            ("i-1".to_string(), elb.clone()),
            ("i-1".to_string(), tg.clone()),
        ];
        pollster::block_on(s.park("W", &entries)).unwrap();
        pollster::block_on(s.park("W", &entries)).unwrap();
        let got = pollster::block_on(s.parked("W", &["i-1".into(), "i-2".into()])).unwrap();
        assert_eq!(got.len(), 2);
        pollster::block_on(s.unpark("W", &["i-1".into()])).unwrap();
        assert!(
            pollster::block_on(s.parked("W", &["i-1".into()]))
                .unwrap()
                .is_empty()
        );
    }

    /// The README's example workload, and its text.
    fn example() -> (&'static str, Workload) {
        let text = include_str!("../../../examples/workloads.yaml");
        let w = load(&[Source { name: "w", text }])
            .unwrap()
            .workloads
            .remove(0);
        (text, w)
    }

    #[test]
    fn workloads_round_trip_through_yaml() {
        let s = SqliteStore::in_memory().unwrap();
        let (text, w) = example();
        assert!(pollster::block_on(s.put_workload(&w)).unwrap().is_empty());
        assert_eq!(
            pollster::block_on(s.workload("ExampleTestCase")).unwrap(),
            Some(w.clone())
        );
        assert_eq!(pollster::block_on(s.workloads()).unwrap(), vec![w]);
        assert_eq!(pollster::block_on(s.workload("nope")).unwrap(), None);
        // Reloading without a tier reports it gone.
        let smaller = text.replace("      - name: Role_Batch\n        stop: { order: 0, ignore: true }   # never stopped by the scheduler\n", "");
        assert_ne!(smaller, text);
        let w2 = load(&[Source {
            name: "w",
            text: &smaller,
        }])
        .unwrap()
        .workloads
        .remove(0);
        assert_eq!(
            pollster::block_on(s.put_workload(&w2)).unwrap(),
            ["Role_Batch"]
        );
        assert!(pollster::block_on(s.delete_workload(w2.name.as_str())).unwrap());
        assert_eq!(
            pollster::block_on(s.workload(w2.name.as_str())).unwrap(),
            None
        );
        assert!(!pollster::block_on(s.delete_workload(w2.name.as_str())).unwrap());
    }

    #[test]
    fn a_workload_another_writer_changed_is_read_as_changed() {
        let s = SqliteStore::in_memory().unwrap();
        let (_, w) = example();
        pollster::block_on(s.put_workload(&w)).unwrap();
        assert_eq!(pollster::block_on(s.workloads()).unwrap(), vec![w.clone()]);
        // Another process rewrites the item under this store's feet.
        let mut changed = w.clone();
        changed.region = ec2_scheduler_core::model::Name::new("eu-west-1").unwrap();
        let yaml = export(std::slice::from_ref(&changed), Format::Yaml);
        s.with(|c| {
            c.execute(
                "UPDATE workloads SET yaml = ?1 WHERE name = ?2",
                params![yaml, w.name.as_str()],
            )
            .map_err(backend)
        })
        .unwrap();
        let read = pollster::block_on(s.workload(w.name.as_str())).unwrap();
        assert_eq!(read, Some(changed.clone()));
        assert_eq!(pollster::block_on(s.workloads()).unwrap(), vec![changed]);
    }

    #[test]
    fn overrides_and_event_claims_keep_the_contract() {
        let s = SqliteStore::in_memory().unwrap();
        pollster::block_on(ec2_scheduler_engine::contract::schedule_store(&s));
        pollster::block_on(ec2_scheduler_engine::contract::access_store(&s));
    }
}
