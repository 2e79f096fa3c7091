//! Workloads: reading and checking files, finding a workload in files or the store,
//! loading files into the store, converting between formats, and plans made from
//! files alone.

use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};
use ec2_scheduler_config::{Format, Loaded, Source};
use ec2_scheduler_core::plan::{Plan, PlanRequest, ScaleIn};
use ec2_scheduler_core::{Action, Exemption, Workload, exemption, plan};

use crate::env::App;
use crate::error::{Error, Result};
use crate::files::{MAX_DATA_BYTES, read_text};

/// Reads and decodes workload files (any format). The warnings are in the result.
///
/// # Errors
/// A file that cannot be read, or every error found in the files.
pub fn load_files(files: &[PathBuf]) -> Result<Loaded> {
    let texts = files
        .iter()
        .map(|f| {
            Ok((
                f.display().to_string(),
                read_text(f, ec2_scheduler_config::MAX_SOURCE_BYTES as u64)?,
            ))
        })
        .collect::<Result<Vec<_>>>()?;
    let sources: Vec<Source> = texts
        .iter()
        .map(|(name, text)| Source { name, text })
        .collect();
    Ok(ec2_scheduler_config::load(&sources)?)
}

/// The workload `name` of loaded files.
///
/// # Errors
/// [`Error::Invalid`] naming the workloads the files define.
pub fn pick<'l>(loaded: &'l Loaded, name: &str) -> Result<&'l Workload> {
    loaded.workload(name).ok_or_else(|| {
        let known: Vec<&str> = loaded.workloads.iter().map(|w| w.name.as_str()).collect();
        Error::Invalid(format!(
            "workload {name:?} is not defined in the files given (defined: {})",
            known.join(", ")
        ))
    })
}

/// Converts files to `format`, all workloads or only `only`.
pub fn export(loaded: Loaded, format: Format, only: Option<&str>) -> Result<String> {
    let workloads = match only {
        None => loaded.workloads,
        Some(name) => vec![pick(&loaded, name)?.clone()],
    };
    Ok(ec2_scheduler_config::export(&workloads, format))
}

/// A plan from files alone: a fleet snapshot and (optionally) stored exemptions.
pub struct Preview<'a> {
    pub workload: &'a Workload,
    pub observed: &'a Path,
    pub exemptions: Option<&'a Path>,
    pub action: Action,
    pub profile: Option<&'a str>,
    pub scale_in: ScaleIn,
    pub now: DateTime<Utc>,
}

/// Plans without a cloud.
///
/// # Errors
/// An unreadable or invalid snapshot or exemptions file, or a plan that cannot be
/// made (an unknown profile).
pub fn preview(p: &Preview<'_>) -> Result<Plan> {
    let observed_name = p.observed.display().to_string();
    let observed_text = read_text(p.observed, MAX_DATA_BYTES)?;
    let observed = ec2_scheduler_config::fleet::load_fleet(&observed_name, &observed_text)?;
    let exemptions = match p.exemptions {
        None => Vec::new(),
        Some(path) => read_exemptions(path)?,
    };
    Ok(plan(&PlanRequest {
        workload: p.workload,
        observed: &observed,
        action: p.action,
        profile: p.profile,
        scale_in: p.scale_in,
        exemptions: &exemptions,
        now: p.now,
    })?)
}

/// One entry of an exemptions file: the stored form, with `until` in any of the
/// forms `exempt add --until` takes; a misspelt key is an error, never ignored (an
/// ignored `until` would make the exemption permanent).
#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct ExemptionEntry {
    instance_id: String,
    #[serde(default)]
    until: Option<String>,
    #[serde(default)]
    reason: String,
    #[serde(default)]
    created_by: Option<String>,
}

/// Reads a JSON list of exemptions, each checked.
fn read_exemptions(path: &Path) -> Result<Vec<Exemption>> {
    let text = read_text(path, MAX_DATA_BYTES)?;
    let list: Vec<ExemptionEntry> = serde_json::from_str(&text).map_err(|e| {
        Error::Invalid(format!(
            "{}:{}:{}: invalid exemptions (expected a JSON list of {{instance_id, until?, reason?}}): {e}",
            path.display(),
            e.line(),
            e.column()
        ))
    })?;
    let mut out = Vec::with_capacity(list.len());
    for (i, e) in list.into_iter().enumerate() {
        let until = match e.until {
            None => None,
            Some(u) => Some(exemption::parse_until(&u).ok_or_else(|| {
                Error::Invalid(format!(
                    "{}: [{i}].until: expected {}, found {u:?}",
                    path.display(),
                    exemption::UNTIL_FORMS
                ))
            })?),
        };
        let e = Exemption {
            instance_id: e.instance_id,
            until,
            reason: e.reason,
            created_by: e.created_by,
        };
        e.check()
            .map_err(|x| Error::Invalid(format!("{}: [{i}]: {x}", path.display())))?;
        out.push(e);
    }
    Ok(out)
}

/// A workload loaded into the store, and the tiers the store no longer holds.
pub struct Stored {
    pub name: String,
    pub removed_tiers: Vec<String>,
}

impl App {
    /// The workload named `name`: from `files` when given, else from the store.
    ///
    /// # Errors
    /// Files with errors, or a workload that is not there.
    pub async fn workload(&self, files: &[PathBuf], name: &str) -> Result<(Workload, Loaded)> {
        if !files.is_empty() {
            let loaded = load_files(files)?;
            let w = pick(&loaded, name)?.clone();
            return Ok((w, loaded));
        }
        match self.store.workload(name).await? {
            Some(w) => Ok((w, Loaded::default())),
            None => {
                let known: Vec<String> = self
                    .store
                    .workloads()
                    .await?
                    .into_iter()
                    .map(|w| w.name.to_string())
                    .collect();
                Err(Error::Invalid(format!(
                    "workload {name:?} is not in the store (stored: {}); load it with `ec2-scheduler load FILE` or pass --config FILE",
                    if known.is_empty() {
                        "none".to_string()
                    } else {
                        known.join(", ")
                    }
                )))
            }
        }
    }

    /// Every workload in the store, sorted by name.
    ///
    /// # Errors
    /// The store's.
    pub async fn stored_workloads(&self) -> Result<Vec<Workload>> {
        Ok(self.store.workloads().await?)
    }

    /// The stored workload `name`.
    ///
    /// # Errors
    /// [`Error::NotFound`] when the store has none of that name; the store's errors.
    pub async fn stored_workload(&self, name: &str) -> Result<Workload> {
        self.store
            .workload(name)
            .await?
            .ok_or_else(|| Error::NotFound(format!("no workload is named {name:?}")))
    }

    /// Decodes one document (any format: ec2-scheduler YAML or JSON, the original's
    /// Loader YAML or DynamoDB items) that must define exactly the workload `name`,
    /// and stores it. `source` names the document in errors.
    ///
    /// # Errors
    /// Every problem of the document (with field paths), a document that defines
    /// another workload or several; the store's errors.
    pub async fn put_workload_text(
        &self,
        name: &str,
        source: &str,
        text: &str,
    ) -> Result<(Workload, Stored, Loaded)> {
        let loaded = ec2_scheduler_config::load(&[Source { name: source, text }])?;
        let names: Vec<&str> = loaded.workloads.iter().map(|w| w.name.as_str()).collect();
        if names != [name] {
            return Err(Error::Invalid(format!(
                "{source}: expected one workload named {name:?}, found {}",
                if names.is_empty() {
                    "none".to_string()
                } else {
                    names.join(", ")
                }
            )));
        }
        let w = loaded.workloads[0].clone();
        let removed_tiers = self.store.put_workload(&w).await?;
        let stored = Stored {
            name: name.to_string(),
            removed_tiers,
        };
        Ok((w, stored, loaded))
    }

    /// Removes the stored workload `name`; its runs, exemptions and overrides stay in
    /// the history.
    ///
    /// # Errors
    /// [`Error::NotFound`]; [`Error::Conflict`] while a run of it is unfinished.
    pub async fn delete_workload(&self, name: &str) -> Result<()> {
        if let Some(run) = self.store.unfinished_run(name).await? {
            return Err(Error::Conflict(format!(
                "workload {name} has an unfinished run ({}); cancel it or let it finish first",
                run.id
            )));
        }
        if self.store.delete_workload(name).await? {
            Ok(())
        } else {
            Err(Error::NotFound(format!("no workload is named {name:?}")))
        }
    }

    /// Writes loaded workloads into the store.
    pub async fn store_workloads(&self, loaded: &Loaded) -> Result<Vec<Stored>> {
        let mut out = Vec::new();
        for w in &loaded.workloads {
            let removed_tiers = self.store.put_workload(w).await?;
            out.push(Stored {
                name: w.name.to_string(),
                removed_tiers,
            });
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(name: &str, text: &str) -> Result<Vec<Exemption>> {
        let dir = std::env::temp_dir().join(format!("ec2s-exemptions-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join(name);
        std::fs::write(&path, text).unwrap();
        read_exemptions(&path)
    }

    #[test]
    fn an_exemptions_file_takes_the_expiry_forms_of_exempt_add_and_no_unknown_key() {
        let until = |text: &str| {
            read(
                "ok.json",
                &format!(r#"[{{"instance_id": "i-0web0000", "until": {text:?}}}]"#),
            )
            .unwrap()[0]
                .until
                .unwrap()
                .to_rfc3339()
        };
        assert_eq!(until("2026-12-01"), "2026-12-02T00:00:00+00:00");
        assert_eq!(
            until("2026-12-01T08:00:00+01:00"),
            "2026-12-01T07:00:00+00:00"
        );
        assert_eq!(until("2026-12-01T08:00:00Z"), "2026-12-01T08:00:00+00:00");
        // A misspelt key would otherwise leave the exemption permanent.
        let e = read(
            "typo.json",
            r#"[{"instance_id": "i-0web0000", "untl": "2026-12-01"}]"#,
        )
        .unwrap_err()
        .to_string();
        assert!(
            e.contains("typo.json:1:") && e.contains("unknown field `untl`"),
            "{e}"
        );
        let e = read(
            "bad.json",
            r#"[{"instance_id": "i-0web0000", "until": "tomorrow"}]"#,
        )
        .unwrap_err()
        .to_string();
        assert!(
            e.contains("bad.json: [0].until: expected an RFC 3339 time")
                && e.contains("\"tomorrow\""),
            "{e}"
        );
        // Without an expiry: until removed.
        let list = read(
            "none.json",
            r#"[{"instance_id": "i-0web0000", "reason": "x"}]"#,
        )
        .unwrap();
        assert_eq!(list[0].until, None);
    }
}
