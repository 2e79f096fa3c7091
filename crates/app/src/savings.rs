//! Savings: instance-hours and money a workload's schedules save against running
//! always, per tier and instance type.
//!
//! The forecast comes from the schedules (overrides applied) and the instances the
//! cloud shows now. Prices come from a table bundled with the program (its date is
//! in the report), which a user file overrides or extends.

use std::collections::BTreeMap;
use std::path::Path;

use chrono::{DateTime, Utc};
use ec2_scheduler_core::Workload;
use ec2_scheduler_core::schedule::Timetable;
use serde::{Deserialize, Serialize};

use crate::env::{App, Cloud};
use crate::error::{Error, Result};
use crate::files::read_text;

/// The bundled price table.
const BUNDLED: &str = include_str!("../data/prices.json");

/// On-demand hourly prices by region and instance type.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Prices {
    #[serde(default)]
    pub note: Option<String>,
    /// When the prices were taken.
    pub as_of: String,
    pub currency: String,
    pub regions: BTreeMap<String, BTreeMap<String, f64>>,
}

impl Prices {
    /// The table bundled with the program.
    pub fn bundled() -> Prices {
        serde_json::from_str(BUNDLED).expect("the bundled price table is valid")
    }

    /// The bundled table with a user file's prices over it.
    ///
    /// # Errors
    /// A file that cannot be read or is not a price table (with where and what).
    pub fn with_file(path: &Path) -> Result<Prices> {
        let text = read_text(path, 16 << 20)?;
        let user: Prices = serde_json::from_str(&text).map_err(|e| {
            Error::Invalid(format!(
                "{}: line {} column {}: not a price table ({{as_of, currency, regions: {{REGION: {{TYPE: PRICE}}}}}}): {e}",
                path.display(),
                e.line(),
                e.column()
            ))
        })?;
        let mut out = Prices::bundled();
        if user.currency != out.currency {
            return Err(Error::Invalid(format!(
                "{}: prices in {} cannot be mixed with the bundled table's {}",
                path.display(),
                user.currency,
                out.currency
            )));
        }
        for (region, types) in user.regions {
            for (t, p) in types {
                if !p.is_finite() || p < 0.0 {
                    return Err(Error::Invalid(format!(
                        "{}: regions.{region}.{t}: expected a price of 0 or more, found {p}",
                        path.display()
                    )));
                }
                out.regions.entry(region.clone()).or_default().insert(t, p);
            }
        }
        out.as_of = format!(
            "{} (bundled), {} ({})",
            out.as_of,
            user.as_of,
            path.display()
        );
        Ok(out)
    }

    /// The hourly price of `instance_type` in `region`.
    pub fn price(&self, region: &str, instance_type: &str) -> Option<f64> {
        self.regions.get(region)?.get(instance_type).copied()
    }
}

/// Savings of one tier's instances of one type.
#[derive(Debug, Clone, Serialize)]
pub struct Line {
    pub tier: String,
    pub instance_type: String,
    pub instances: usize,
    pub instance_hours_saved: f64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hourly_price: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub saved: Option<f64>,
}

/// A workload's forecast savings over a range.
#[derive(Debug, Clone, Serialize)]
pub struct Savings {
    pub workload: String,
    pub from: DateTime<Utc>,
    pub to: DateTime<Utc>,
    /// Hours in the range.
    pub hours: f64,
    /// Hours the schedules wish the workload stopped.
    pub stopped_hours: f64,
    /// Percent of always-on cost saved.
    pub percent_saved: f64,
    pub lines: Vec<Line>,
    /// Money saved by the lines whose price is known.
    pub saved: f64,
    pub currency: String,
    pub prices_as_of: String,
    /// Instance types without a price in the table.
    pub unpriced: Vec<String>,
}

impl App {
    /// What `workload`'s schedules save in `[from, to)` against running always, with
    /// the instances the cloud shows now.
    ///
    /// # Errors
    /// [`Error::Invalid`] for an empty range; the cloud's errors.
    pub async fn savings(
        &self,
        cloud: &Cloud,
        workload: &Workload,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
        prices: &Prices,
    ) -> Result<Savings> {
        if to <= from {
            return Err(Error::Invalid(format!(
                "the range is empty: --to {} is not after --from {}",
                to.to_rfc3339(),
                from.to_rfc3339()
            )));
        }
        let overrides = self.store.overrides(Some(workload.name.as_str())).await?;
        let stopped = Timetable::new(&workload.schedules)
            .with_overrides(&overrides)
            .stopped_for(from, to);
        let hours = (to - from).num_seconds() as f64 / 3600.0;
        let stopped_hours = stopped.num_seconds() as f64 / 3600.0;
        let status = self.status(cloud, workload).await?;
        let mut lines = Vec::new();
        let mut unpriced = Vec::new();
        for tier in &status.tiers {
            let mut by_type: BTreeMap<&str, usize> = BTreeMap::new();
            for m in &tier.members {
                // Instances exempt from stopping save nothing.
                if m.kept_by.is_none() {
                    *by_type
                        .entry(m.instance.instance_type.as_str())
                        .or_default() += 1;
                }
            }
            for (t, n) in by_type {
                let price = prices.price(workload.region.as_str(), t);
                if price.is_none() && !unpriced.iter().any(|u| u == t) {
                    unpriced.push(t.to_string());
                }
                let instance_hours = stopped_hours * n as f64;
                lines.push(Line {
                    tier: tier.name.clone(),
                    instance_type: t.to_string(),
                    instances: n,
                    instance_hours_saved: instance_hours,
                    hourly_price: price,
                    saved: price.map(|p| p * instance_hours),
                });
            }
        }
        Ok(Savings {
            workload: workload.name.to_string(),
            from,
            to,
            hours,
            stopped_hours,
            percent_saved: stopped_hours / hours * 100.0,
            saved: lines.iter().filter_map(|l| l.saved).sum(),
            lines,
            currency: prices.currency.clone(),
            prices_as_of: prices.as_of.clone(),
            unpriced,
        })
    }
}
