//! The score history: every nightly run's probability and tier per customer, one
//! Parquet partition per night, so that a trend and a customer's series can be read
//! back without keeping every score file.
//!
//! # Layout
//!
//! ```text
//! <dir>/as_of=YYYY-MM-DD/part.parquet    customer_id (Utf8), churn_probability (Float64),
//!                                        risk_tier (Utf8: low, medium, high)
//! ```
//!
//! Hive-style partitions: DuckDB (`read_parquet('<dir>/*/part.parquet',
//! hive_partitioning = true)`), Spark and polars read `as_of` from the directory name.
//! `<dir>` is `--history-dir` / `CHURNGUARD_HISTORY_DIR` / `[history] dir`, by default
//! `history/` beside the score file.
//!
//! # Invariants
//!
//! - Append-only by night: a run writes its own night's partition and no other.
//! - A re-run of a night replaces that night's partition whole (one rename); a run that
//!   fails or is killed leaves every partition as it was: the nightly run stages the
//!   partition and renames it with its score file, in the commit of its alert state
//!   (see [`crate::batch`]).
//! - Reads are by column: a trend reads `customer_id` and `churn_probability` of the
//!   one night about 30 days back ([`History::trend_base`]), a series the three columns
//!   of the nights in its window, one night at a time.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use polars::prelude::*;
use serde::Serialize;
use utoipa::ToSchema;

use crate::fsutil::Staged;
use crate::scoring::trend::{TOLERANCE_DAYS, WINDOW_DAYS};
use crate::scoring::Tier;
use crate::time::{fmt_date, fmt_ts, parse_ts, Ts, DAY};
use crate::{Error, Result};

/// The file of each night's partition.
pub const PART_FILE: &str = "part.parquet";
/// The history directory's name beside the score file when none is configured.
pub const DEFAULT_DIR_NAME: &str = "history";
/// `GET /v1/customers/{id}/history` and `churnguard history` without `days`.
pub const DEFAULT_DAYS: u32 = 90;
/// The longest series asked for (ten years of nights).
pub const MAX_DAYS: u32 = 3650;

/// The history directory used when none is configured: `history/` beside `scores`.
pub fn default_dir(scores: &Path) -> PathBuf {
    match scores.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.join(DEFAULT_DIR_NAME),
        _ => PathBuf::from(DEFAULT_DIR_NAME),
    }
}

/// One customer's score of one night, as a run records it.
#[derive(Debug, Clone, Copy)]
pub struct HistoryRow<'a> {
    pub customer_id: &'a str,
    pub churn_probability: f64,
    pub risk_tier: Tier,
}

/// One night of a customer's series.
#[derive(Debug, Clone, PartialEq, Serialize, serde::Deserialize, ToSchema)]
pub struct HistoryPoint {
    /// The night's snapshot instant (RFC 3339, UTC: midnight of the partition's date).
    #[schema(format = DateTime)]
    pub as_of: String,
    /// The churn probability scored that night.
    pub churn_probability: f64,
    /// The tier of that night's score.
    pub risk_tier: Tier,
}

/// A customer's series: `GET /v1/customers/{id}/history` and `churnguard history --json`.
#[derive(Debug, Clone, PartialEq, Serialize, serde::Deserialize, ToSchema)]
pub struct CustomerHistory {
    /// The customer.
    pub customer_id: String,
    /// The window asked for: the nights after `newest night - days` up to the newest.
    pub days: u32,
    /// The customer's nights in the window, oldest first.
    pub points: Vec<HistoryPoint>,
}

/// The history store in one directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct History {
    dir: PathBuf,
}

impl History {
    /// The store in `dir` (it need not exist yet: an empty history).
    pub fn new(dir: impl Into<PathBuf>) -> History {
        History { dir: dir.into() }
    }

    /// The directory of the store.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The partition file of the night holding `as_of` (by its UTC date).
    pub fn partition(&self, as_of: Ts) -> PathBuf {
        self.dir
            .join(format!("as_of={}", fmt_date(as_of)))
            .join(PART_FILE)
    }

    /// Writes the night's partition complete and fsynced beside its path, not yet in
    /// place: the caller renames it with the night's commit ([`Staged::keep`]).
    pub fn stage(&self, as_of: Ts, rows: &[HistoryRow<'_>]) -> Result<Staged> {
        let path = self.partition(as_of);
        let cols = vec![
            Column::new(
                "customer_id".into(),
                rows.iter().map(|r| r.customer_id).collect::<Vec<_>>(),
            ),
            Column::new(
                "churn_probability".into(),
                rows.iter().map(|r| r.churn_probability).collect::<Vec<_>>(),
            ),
            Column::new(
                "risk_tier".into(),
                rows.iter()
                    .map(|r| r.risk_tier.as_str())
                    .collect::<Vec<_>>(),
            ),
        ];
        let mut df = DataFrame::new(rows.len(), cols)
            .map_err(|e| Error::polars("building the history partition", e))?;
        crate::data::write::stage_frame(&mut df, &path)
    }

    /// The nights recorded (a partition directory holding its file), oldest first; none
    /// when the directory does not exist. Other entries are ignored.
    pub fn nights(&self) -> Result<Vec<Ts>> {
        let entries = match std::fs::read_dir(&self.dir) {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(Error::io(&self.dir, e)),
        };
        let mut nights: Vec<Ts> = entries
            .flatten()
            .filter_map(|e| {
                let name = e.file_name();
                let date = name.to_str()?.strip_prefix("as_of=")?;
                let t = parse_ts(date).filter(|t| fmt_date(*t) == date)?;
                e.path().join(PART_FILE).is_file().then_some(t)
            })
            .collect();
        nights.sort_unstable();
        Ok(nights)
    }

    /// The night the trend of `as_of` compares with: the latest night at or before
    /// `as_of - 30 days` and not more than [`TOLERANCE_DAYS`] before it.
    pub fn night_30d_before(&self, as_of: Ts) -> Result<Option<Ts>> {
        Ok(pick_30d_before(&self.nights()?, as_of))
    }

    /// `customer_id -> churn_probability` of the night the trend of `as_of` compares
    /// with (empty without one): two columns of one partition.
    pub fn trend_base(&self, as_of: Ts) -> Result<HashMap<String, f64>> {
        let Some(night) = self.night_30d_before(as_of)? else {
            return Ok(HashMap::new());
        };
        let path = self.partition(night);
        let df = crate::data::read_parquet_columns(&path, &["customer_id", "churn_probability"])?;
        let (ids, probs) = (strings(&df, &path, "customer_id")?, floats(&df, &path)?);
        Ok(ids
            .iter()
            .zip(probs.iter())
            .filter_map(|(id, p)| Some((id?.to_string(), p?)))
            .collect())
    }

    /// The churn probability of `customer_id` on the night the trend of `as_of`
    /// compares with, if any (the service's trend for a fresh score).
    pub fn probability_30d_before(&self, customer_id: &str, as_of: Ts) -> Result<Option<f64>> {
        let Some(night) = self.night_30d_before(as_of)? else {
            return Ok(None);
        };
        Ok(self.point(customer_id, night)?.map(|p| p.churn_probability))
    }

    /// `customer_id`'s nights after `newest - days` up to the newest night of the store,
    /// oldest first (empty when the customer has none there). One partition at a time,
    /// three columns of each.
    pub fn series(&self, customer_id: &str, days: u32) -> Result<CustomerHistory> {
        let nights = self.nights()?;
        let mut points = Vec::new();
        if let Some(&newest) = nights.last() {
            let from = newest - i64::from(days) * DAY;
            for &night in nights.iter().filter(|&&n| n > from) {
                if let Some(p) = self.point(customer_id, night)? {
                    points.push(p);
                }
            }
        }
        Ok(CustomerHistory {
            customer_id: customer_id.to_string(),
            days,
            points,
        })
    }

    /// `customer_id`'s score of one night.
    fn point(&self, customer_id: &str, night: Ts) -> Result<Option<HistoryPoint>> {
        let path = self.partition(night);
        let df = crate::data::read_parquet_columns(
            &path,
            &["customer_id", "churn_probability", "risk_tier"],
        )?;
        let ids = strings(&df, &path, "customer_id")?;
        let Some(i) = ids.iter().position(|id| id == Some(customer_id)) else {
            return Ok(None);
        };
        let tier = strings(&df, &path, "risk_tier")?;
        let risk_tier = tier.get(i).unwrap_or_default().parse::<Tier>()?;
        Ok(Some(HistoryPoint {
            as_of: fmt_ts(night),
            churn_probability: floats(&df, &path)?.get(i).unwrap_or(f64::NAN),
            risk_tier,
        }))
    }
}

/// The latest of `nights` (sorted) in `[as_of - 30d - tolerance, as_of - 30d]`.
fn pick_30d_before(nights: &[Ts], as_of: Ts) -> Option<Ts> {
    let target = as_of - WINDOW_DAYS * DAY;
    let earliest = target - TOLERANCE_DAYS * DAY;
    nights
        .iter()
        .rev()
        .find(|&&n| n <= target)
        .copied()
        .filter(|&n| n >= earliest)
}

fn strings(df: &DataFrame, path: &Path, c: &str) -> Result<StringChunked> {
    let col = df
        .column(c)
        .and_then(|x| x.cast(&DataType::String))
        .map_err(|e| Error::polars(format!("{}: column `{c}`", path.display()), e))?;
    Ok(col
        .str()
        .map_err(|e| Error::polars(format!("{}: column `{c}`", path.display()), e))?
        .clone())
}

fn floats(df: &DataFrame, path: &Path) -> Result<Float64Chunked> {
    let c = "churn_probability";
    let col = df
        .column(c)
        .and_then(|x| x.cast(&DataType::Float64))
        .map_err(|e| Error::polars(format!("{}: column `{c}`", path.display()), e))?;
    Ok(col
        .f64()
        .map_err(|e| Error::polars(format!("{}: column `{c}`", path.display()), e))?
        .clone())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: &str) -> Ts {
        parse_ts(s).unwrap()
    }

    fn write(h: &History, night: &str, rows: &[(&str, f64, Tier)]) {
        let rows: Vec<HistoryRow<'_>> = rows
            .iter()
            .map(|&(customer_id, churn_probability, risk_tier)| HistoryRow {
                customer_id,
                churn_probability,
                risk_tier,
            })
            .collect();
        h.stage(t(night), &rows).unwrap().commit().unwrap();
    }

    #[test]
    fn the_night_compared_with_is_the_latest_at_or_before_30_days_within_3_days() {
        let nights: Vec<Ts> = ["2024-05-01", "2024-05-27", "2024-05-29", "2024-06-02"]
            .map(t)
            .to_vec();
        // 2024-06-30 - 30 days = 2024-05-31: 05-29 (2 days before) is in, 06-02 after.
        assert_eq!(
            pick_30d_before(&nights, t("2024-06-30")),
            Some(t("2024-05-29"))
        );
        // Exactly 30 days.
        assert_eq!(
            pick_30d_before(&nights, t("2024-06-28")),
            Some(t("2024-05-29"))
        );
        // 2024-06-04 - 30 = 05-05: the latest before is 05-01, 4 days off: none.
        assert_eq!(pick_30d_before(&nights, t("2024-06-04")), None);
        // 3 days off is still in.
        assert_eq!(
            pick_30d_before(&nights, t("2024-06-03")),
            Some(t("2024-05-01"))
        );
        assert_eq!(pick_30d_before(&[], t("2024-06-30")), None);
    }

    #[test]
    fn nights_are_the_partitions_holding_their_file_and_nothing_else() {
        let dir = tempfile::tempdir().unwrap();
        let h = History::new(dir.path().join("history"));
        assert_eq!(h.nights().unwrap(), Vec::<Ts>::new());
        write(&h, "2024-06-02", &[("a", 0.5, Tier::High)]);
        write(&h, "2024-06-01", &[("a", 0.25, Tier::Medium)]);
        std::fs::create_dir_all(h.dir().join("as_of=2024-06-03")).unwrap();
        std::fs::create_dir_all(h.dir().join("as_of=2024-13-01")).unwrap();
        std::fs::write(h.dir().join("README"), "x").unwrap();
        assert_eq!(h.nights().unwrap(), vec![t("2024-06-01"), t("2024-06-02")]);
        assert!(h
            .partition(t("2024-06-01T12:00:00Z"))
            .ends_with("history/as_of=2024-06-01/part.parquet"));
    }

    #[test]
    fn a_series_and_a_trend_base_read_back_exactly_what_was_written() {
        let dir = tempfile::tempdir().unwrap();
        let h = History::new(dir.path());
        write(
            &h,
            "2024-05-01",
            &[("a", 0.125, Tier::Low), ("b", 0.5, Tier::High)],
        );
        write(&h, "2024-05-15", &[("b", 0.75, Tier::High)]);
        write(
            &h,
            "2024-05-31",
            &[("a", 0.25, Tier::Medium), ("b", 0.5, Tier::High)],
        );
        let s = h.series("a", 90).unwrap();
        assert_eq!(
            s.points,
            vec![
                HistoryPoint {
                    as_of: "2024-05-01T00:00:00Z".into(),
                    churn_probability: 0.125,
                    risk_tier: Tier::Low
                },
                HistoryPoint {
                    as_of: "2024-05-31T00:00:00Z".into(),
                    churn_probability: 0.25,
                    risk_tier: Tier::Medium
                },
            ]
        );
        // 30 days back from the newest night (05-31): 05-01 is not after 05-01.
        let b = h.series("b", 30).unwrap();
        assert_eq!(
            b.points
                .iter()
                .map(|p| p.as_of.as_str())
                .collect::<Vec<_>>(),
            ["2024-05-15T00:00:00Z", "2024-05-31T00:00:00Z"]
        );
        assert!(h.series("nobody", 90).unwrap().points.is_empty());
        let base = h.trend_base(t("2024-05-31")).unwrap();
        assert_eq!(
            base,
            HashMap::from([("a".into(), 0.125), ("b".into(), 0.5)])
        );
        assert_eq!(
            h.probability_30d_before("b", t("2024-06-14")).unwrap(),
            Some(0.75)
        );
        assert_eq!(
            h.probability_30d_before("a", t("2024-06-14")).unwrap(),
            None
        );
        assert!(h.trend_base(t("2024-05-20")).unwrap().is_empty());
    }

    #[test]
    fn rewriting_a_night_replaces_its_partition_whole() {
        let dir = tempfile::tempdir().unwrap();
        let h = History::new(dir.path());
        write(
            &h,
            "2024-05-01",
            &[("a", 0.125, Tier::Low), ("b", 0.5, Tier::High)],
        );
        write(&h, "2024-05-01", &[("a", 0.375, Tier::Medium)]);
        assert_eq!(h.nights().unwrap(), vec![t("2024-05-01")]);
        assert!(h.series("b", 90).unwrap().points.is_empty());
        assert_eq!(
            h.series("a", 90).unwrap().points[0].churn_probability,
            0.375
        );
        let names: Vec<String> = std::fs::read_dir(h.dir().join("as_of=2024-05-01"))
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        assert_eq!(names, [PART_FILE], "no temporary left behind");
    }
}
