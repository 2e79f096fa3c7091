//! Savings: instance-hours and money a workload's schedules save against running
//! always, per tier and instance type.
//!
//! The forecast comes from the schedules (overrides applied) and the instances the
//! cloud shows now. Prices come, in this order of precedence, from a user file, from
//! the AWS Price List API when the workload is on AWS, and from a table bundled with
//! the program (its date is in the report; `prices update` refreshes it).

use std::borrow::Cow;
use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use chrono::{DateTime, Utc};
use ec2_scheduler_core::Workload;
use ec2_scheduler_core::schedule::Timetable;
use serde::{Deserialize, Serialize};

use crate::clouds::Clouds;
use crate::env::{App, Cloud};
use crate::error::{Error, Result};
use crate::files::read_text;
use crate::status::Status;

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
    /// Ask the AWS Price List API for the prices of workloads on AWS.
    #[serde(skip)]
    pub price_list: bool,
    /// Region and type of the prices a user file gave, which nothing replaces.
    #[serde(skip)]
    pinned: BTreeSet<(String, String)>,
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
                out.pinned.insert((region.clone(), t.clone()));
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

    /// This table with `fetched` prices of `region` (from the Price List API on
    /// `day`) over it, except those a user file gave.
    fn with_fetched(&self, region: &str, fetched: BTreeMap<String, f64>, day: &str) -> Prices {
        let mut out = self.clone();
        let n = fetched.len();
        for (t, p) in fetched {
            if !self.pinned.contains(&(region.to_string(), t.clone())) {
                out.regions
                    .entry(region.to_string())
                    .or_default()
                    .insert(t, p);
            }
        }
        out.as_of = format!(
            "{day} (AWS Price List API, {n} type{} in {region}), otherwise {}",
            if n == 1 { "" } else { "s" },
            self.as_of
        );
        out
    }
}

/// The on-demand prices the Price List API gives for `types` in each region, as a
/// table dated `day` (what `prices update` writes).
///
/// # Errors
/// The API's errors; a region for which the API prices none of the types.
pub async fn fetch_prices(
    endpoint_url: Option<String>,
    types: &BTreeMap<String, Vec<String>>,
    day: &str,
) -> Result<Prices> {
    let conf = ec2_scheduler_aws::sdk_config(&ec2_scheduler_aws::Connect {
        region: Some(ec2_scheduler_aws::pricing::ENDPOINT_REGION.to_string()),
        endpoint_url,
        ..Default::default()
    })
    .await;
    let client = ec2_scheduler_aws::pricing::PriceList::new(&conf, Default::default());
    let mut regions = BTreeMap::new();
    for (region, list) in types {
        let prices = client.on_demand(region, list).await?;
        if prices.is_empty() {
            return Err(Error::Invalid(format!(
                "the AWS Price List API has no Linux on-demand price in {region} for {}",
                list.join(", ")
            )));
        }
        regions.insert(region.clone(), prices);
    }
    Ok(Prices {
        note: Prices::bundled().note,
        as_of: day.to_string(),
        currency: "USD".into(),
        regions,
        price_list: false,
        pinned: BTreeSet::new(),
    })
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

/// What the run history shows was saved: instance-hours between each instance's
/// stop by a run and its next start by a run, up to now.
#[derive(Debug, Clone, Serialize)]
pub struct Actual {
    pub lines: Vec<Line>,
    pub instance_hours_saved: f64,
    pub saved: f64,
}

/// A workload's savings over a range: the forecast from its schedules, and what the
/// run history shows.
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
    /// What did not go as asked (prices not read from AWS, for one).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<String>,
    /// From the run history, up to now.
    pub actual: Actual,
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
        nonempty(from, to)?;
        let status = self.status(cloud, workload).await?;
        self.savings_of(cloud, workload, &status, from, to, prices)
            .await
    }

    /// [`App::savings`] with the instances `clouds` observed at most
    /// [`Observations::max_age`](crate::observed::Observations::max_age) ago.
    ///
    /// # Errors
    /// As [`App::savings`].
    pub async fn savings_seen(
        &self,
        clouds: &Clouds,
        workload: &Workload,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
        prices: &Prices,
    ) -> Result<Savings> {
        nonempty(from, to)?;
        let cloud = clouds.get(self, workload).await?;
        let status = self.status_seen(clouds, workload).await?;
        self.savings_of(&cloud, workload, &status, from, to, prices)
            .await
    }

    async fn savings_of(
        &self,
        cloud: &Cloud,
        workload: &Workload,
        status: &Status,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
        prices: &Prices,
    ) -> Result<Savings> {
        let overrides = self.store.overrides(Some(workload.name.as_str())).await?;
        let stopped = Timetable::new(&workload.schedules)
            .with_overrides(&overrides)
            .stopped_for(from, to);
        let hours = (to - from).num_seconds() as f64 / 3600.0;
        let stopped_hours = stopped.num_seconds() as f64 / 3600.0;
        let mut warnings = Vec::new();
        let prices = live_prices(cloud, workload, status, prices, &mut warnings).await;
        let prices = prices.as_ref();
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
        let actual = self
            .actual(workload, status, from, to.min(cloud.now()), prices)
            .await?;
        Ok(Savings {
            actual,
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
            warnings,
        })
    }
}

/// `prices` with the Price List API's prices of the instance types in `status` over
/// it, when asked for and the cloud is AWS; `prices` alone, with a warning, when the
/// API cannot be read.
async fn live_prices<'a>(
    cloud: &Cloud,
    workload: &Workload,
    status: &Status,
    prices: &'a Prices,
    warnings: &mut Vec<String>,
) -> Cow<'a, Prices> {
    let Cloud::Aws(aws) = cloud else {
        return Cow::Borrowed(prices);
    };
    if !prices.price_list {
        return Cow::Borrowed(prices);
    }
    let types: BTreeSet<String> = status
        .tiers
        .iter()
        .flat_map(|t| &t.members)
        .map(|m| m.instance.instance_type.clone())
        .collect();
    if types.is_empty() {
        return Cow::Borrowed(prices);
    }
    let types: Vec<String> = types.into_iter().collect();
    match aws.on_demand_prices(&types).await {
        Ok(fetched) => Cow::Owned(prices.with_fetched(
            workload.region.as_str(),
            fetched,
            &cloud.now().date_naive().to_string(),
        )),
        Err(e) => {
            warnings.push(format!(
                "prices are from the table of {}: the AWS Price List API could not be read ({e})",
                prices.as_of
            ));
            Cow::Borrowed(prices)
        }
    }
}

/// `Ok` when `[from, to)` is not empty.
fn nonempty(from: DateTime<Utc>, to: DateTime<Utc>) -> Result<()> {
    if to <= from {
        return Err(Error::Invalid(format!(
            "the range is empty: --to {} is not after --from {}",
            to.to_rfc3339(),
            from.to_rfc3339()
        )));
    }
    Ok(())
}

/// An instance's stops (`true`) and starts (`false`) by runs.
type Changes = Vec<(DateTime<Utc>, bool)>;

impl App {
    /// Instance-hours each instance spent stopped by a run until the next run started
    /// it, within `[from, to)`.
    async fn actual(
        &self,
        workload: &Workload,
        status: &Status,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
        prices: &Prices,
    ) -> Result<Actual> {
        let mut changes: BTreeMap<(String, String), Changes> = BTreeMap::new();
        for row in self.store.list_runs(Some(workload.name.as_str())).await? {
            let Some(run) = self.store.load_run(&row.id).await? else {
                continue;
            };
            let when_stopped = run.finished.unwrap_or(run.started);
            for (id, tier) in &run.stopped_ids {
                changes
                    .entry((id.clone(), tier.clone()))
                    .or_default()
                    .push((when_stopped, true));
            }
            for (id, tier) in &run.started_ids {
                changes
                    .entry((id.clone(), tier.clone()))
                    .or_default()
                    .push((run.started, false));
            }
        }
        let type_of = |id: &str| {
            status
                .tiers
                .iter()
                .flat_map(|t| &t.members)
                .find(|m| m.instance.id == id)
                .map_or_else(
                    || "unknown".to_string(),
                    |m| m.instance.instance_type.clone(),
                )
        };
        let mut hours: BTreeMap<(String, String), (usize, f64)> = BTreeMap::new();
        for ((id, tier), list) in changes {
            let total = hours_stopped(list, from, to);
            let e = hours.entry((tier, type_of(&id))).or_default();
            e.0 += 1;
            e.1 += total;
        }
        let lines: Vec<Line> = hours
            .into_iter()
            .map(|((tier, t), (n, h))| {
                let price = prices.price(workload.region.as_str(), &t);
                Line {
                    tier,
                    instances: n,
                    instance_hours_saved: h,
                    hourly_price: price,
                    saved: price.map(|p| p * h),
                    instance_type: t,
                }
            })
            .collect();
        Ok(Actual {
            instance_hours_saved: lines.iter().map(|l| l.instance_hours_saved).sum(),
            saved: lines.iter().filter_map(|l| l.saved).sum(),
            lines,
        })
    }
}

/// Hours in `[from, to)` between each stop and the next start of one instance, given
/// its stops (`true`) and starts (`false`) in any order; a stop without a later start
/// lasts until `to`.
fn hours_stopped(
    mut list: Vec<(DateTime<Utc>, bool)>,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
) -> f64 {
    list.sort();
    let mut stopped_at: Option<DateTime<Utc>> = None;
    let mut total = 0.0;
    for (t, stopped) in list.into_iter().chain(std::iter::once((to, false))) {
        match (stopped, stopped_at) {
            (true, None) => stopped_at = Some(t),
            (false, Some(s)) => {
                let (a, b) = (s.max(from), t.min(to));
                if b > a {
                    // Milliseconds: a stop and the next start may be under a second
                    // apart.
                    total += (b - a).num_milliseconds() as f64 / 3_600_000.0;
                }
                stopped_at = None;
            }
            _ => {}
        }
    }
    total
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().to_utc()
    }

    #[test]
    fn stopped_hours_are_counted_between_a_stop_and_the_next_start_within_the_range() {
        let list = vec![
            (t("2026-12-02T08:00:00Z"), false),
            (t("2026-12-01T18:00:00Z"), true),
            (t("2026-12-02T18:00:00Z"), true),
            // A second stop while stopped changes nothing.
            (t("2026-12-02T20:00:00Z"), true),
        ];
        // 18:00 to 08:00 (14 h), then 18:00 to the end of the range (6 h).
        let h = hours_stopped(
            list.clone(),
            t("2026-12-01T00:00:00Z"),
            t("2026-12-03T00:00:00Z"),
        );
        assert_eq!(h, 20.0);
        // Clipped to the range.
        let h = hours_stopped(list, t("2026-12-02T00:00:00Z"), t("2026-12-02T20:00:00Z"));
        assert_eq!(h, 10.0);
        assert_eq!(
            hours_stopped(vec![], t("2026-12-01T00:00:00Z"), t("2026-12-02T00:00:00Z")),
            0.0
        );
    }

    #[test]
    fn the_bundled_table_reads_and_a_user_file_goes_over_it() {
        let p = Prices::bundled();
        assert_eq!(p.price("us-west-2", "t2.nano"), Some(0.0058));
        let dir = std::env::temp_dir().join(format!("ec2s-prices-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let f = dir.join("p.json");
        std::fs::write(&f, r#"{"as_of": "mine", "currency": "USD", "regions": {"us-west-2": {"t2.nano": 1.5}, "eu-west-1": {"m5.large": 0.107}}}"#).unwrap();
        let p = Prices::with_file(&f).unwrap();
        assert_eq!(p.price("us-west-2", "t2.nano"), Some(1.5));
        assert_eq!(p.price("us-west-2", "t2.large"), Some(0.0928));
        assert_eq!(p.price("eu-west-1", "m5.large"), Some(0.107));
        std::fs::write(
            &f,
            r#"{"as_of": "x", "currency": "USD", "regions": {"r": {"t": -1}}}"#,
        )
        .unwrap();
        let e = Prices::with_file(&f).unwrap_err().to_string();
        assert!(
            e.contains("regions.r.t: expected a price of 0 or more"),
            "{e}"
        );
        std::fs::write(&f, "{").unwrap();
        assert!(
            Prices::with_file(&f)
                .unwrap_err()
                .to_string()
                .contains("line 1")
        );
        std::fs::remove_dir_all(&dir).ok();
    }
}
