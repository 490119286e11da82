//! The score file: one [`ScoreRecord`] per customer a nightly run scored, the file's
//! columns ([`COLUMNS`]), its one writer ([`write`]) and its one reader ([`read`]).
//! The batch writes it; the service (`GET /v1/customers/{id}/score`), retention (revenue
//! at risk) and backtests read it.
//!
//! # Format
//!
//! Parquet, or CSV when the path ends in `.csv`, with the columns of [`COLUMNS`] in that
//! order, one row per customer. `reason_k`, `reason_k_value` and `reason_k_contribution`
//! are empty past a customer's reasons (`reason_k_value` also when the value is
//! undefined); `rfm_segment` is empty when the model has no RFM features.
//!
//! In Parquet, `as_of` is a UTC timestamp (`Datetime(µs, UTC)`) and `early_warnings` a
//! list of strings (`List(Utf8)`): the names of the rules that fired. CSV has no such
//! types: there `as_of` is RFC 3339 UTC text (`2024-06-01T00:00:00Z`) and
//! `early_warnings` the names joined with `,` (see [`crate::data::write`]).
//!
//! [`read`] also reads the files of earlier versions: `as_of` as RFC 3339 text and
//! `early_warnings` comma-joined in Parquet too, or no `early_warnings` column at all
//! (written before early warnings existed).

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use polars::prelude::*;
use serde::{Deserialize, Serialize};

use crate::data::write;
use crate::features::Dimension;
use crate::scoring::{
    DimensionScore, DimensionScores, ModelRef, Reason, Score, Tier, Trend, Trend30,
};
use crate::time::{fmt_ts, Ts};
use crate::{Error, Result};

/// How many reasons each scored customer carries in the score file (and the service's
/// answers).
pub const REASONS_PER_CUSTOMER: usize = 3;

/// The score file's columns, in order. Its length is tied to [`REASONS_PER_CUSTOMER`], so
/// changing the number of reasons does not compile until the list follows.
pub const COLUMNS: [&str; 12 + 3 * REASONS_PER_CUSTOMER] = [
    "customer_id",
    "as_of",
    "churn_probability",
    "health_score",
    "risk_tier",
    "reason_1",
    "reason_1_value",
    "reason_1_contribution",
    "reason_2",
    "reason_2_value",
    "reason_2_contribution",
    "reason_3",
    "reason_3_value",
    "reason_3_contribution",
    "rfm_segment",
    "early_warnings",
    "model_name",
    "model_version",
    // The 30-day trend from the score history (issue 14, item 6); optional on reading.
    "probability_30d_ago",
    "change_30d",
    "trend",
];

/// The explanation columns, after [`COLUMNS`] (issue 14, items 4 and 5): each reason's
/// text, then per dimension its contribution and health, then the primary driver. Files
/// written before them have none, and read with empty texts and no dimensions.
pub const EXPLAIN_COLUMNS: [&str; REASONS_PER_CUSTOMER + 2 * 4 + 1] = [
    "reason_1_text",
    "reason_2_text",
    "reason_3_text",
    "contribution_engagement",
    "contribution_support",
    "contribution_billing",
    "contribution_relationship",
    "health_engagement",
    "health_support",
    "health_billing",
    "health_relationship",
    "primary_driver",
];

/// Positions in [`EXPLAIN_COLUMNS`].
mod explain_col {
    use super::REASONS_PER_CUSTOMER;
    pub const TEXTS: usize = 0;
    pub const CONTRIBUTIONS: usize = REASONS_PER_CUSTOMER;
    pub const HEALTH: usize = CONTRIBUTIONS + 4;
    pub const DRIVER: usize = HEALTH + 4;
}

/// Positions in [`COLUMNS`], shared by the writer's order and the reader's lookups.
mod col {
    use super::REASONS_PER_CUSTOMER;
    pub const ID: usize = 0;
    pub const AS_OF: usize = 1;
    pub const PROBABILITY: usize = 2;
    pub const HEALTH: usize = 3;
    pub const TIER: usize = 4;
    /// `reason_1`; each reason has three columns (name, value, contribution).
    pub const REASONS: usize = 5;
    pub const SEGMENT: usize = REASONS + 3 * REASONS_PER_CUSTOMER;
    pub const WARNINGS: usize = SEGMENT + 1;
    pub const MODEL_NAME: usize = WARNINGS + 1;
    pub const MODEL_VERSION: usize = MODEL_NAME + 1;
    // The trend block (item 6): absent from files written before the score history.
    pub const PROBABILITY_30D_AGO: usize = MODEL_VERSION + 1;
    pub const CHANGE_30D: usize = PROBABILITY_30D_AGO + 1;
    pub const TREND: usize = CHANGE_30D + 1;
}

/// The path of the run summary a nightly run writes beside its score file
/// (`<out>.summary.json`), which the service reads for `/metrics`.
pub fn summary_path(out: &Path) -> PathBuf {
    let name = out
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    out.with_file_name(format!("{name}.summary.json"))
}

/// One scored customer of a nightly run, as the score file holds it and as
/// `GET /v1/customers/{id}/score` answers it.
// Named `CustomerScore` in the OpenAPI document, the name the route's answer had before
// it became this record.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[schema(as = CustomerScore)]
pub struct ScoreRecord {
    /// The customer.
    pub customer_id: String,
    /// The nightly run's snapshot instant (RFC 3339, UTC).
    #[schema(format = DateTime)]
    pub as_of: String,
    /// Calibrated probability of churning within the model's horizon (higher is worse).
    pub churn_probability: f64,
    /// 0-100, higher is healthier: the share of the reference population at higher risk.
    pub health_score: f64,
    /// `low`, `medium` or `high`, from the model's thresholds.
    pub risk_tier: Tier,
    /// The features pushing the risk up the most, largest first.
    pub reasons: Vec<Reason>,
    /// RFM segment, when the model has RFM features.
    pub rfm_segment: Option<String>,
    /// Names of the early-warning rules that fired (`no_login_7d`...); empty for files
    /// written before early warnings existed.
    #[serde(default)]
    pub early_warnings: Vec<String>,
    /// The model of the nightly run.
    pub model: ModelRef,
    // --- The 30-day trend (issue 14, item 6; rule in `scoring::trend`). ---
    /// The churn probability on the night about 30 days before (the latest night at or
    /// before `as_of - 30 days`, at most 3 days earlier); null without one.
    #[serde(default)]
    pub probability_30d_ago: Option<f64>,
    /// `churn_probability - probability_30d_ago` in probability units (0.05 = 5
    /// points); null without an earlier score.
    #[serde(default)]
    pub change_30d: Option<f64>,
    /// `rising` (change >= +0.05), `falling` (<= -0.05), `steady`, or `unknown` without
    /// an earlier score.
    #[serde(default)]
    pub trend: Trend,
    // Explanations (issue 14, item 5); reason texts are in `reasons`.
    /// Each dimension's contribution and health; null in files written before dimensions.
    #[serde(default)]
    pub dimensions: Option<DimensionScores>,
    /// The dimension pushing the risk up the most; null when none does (or in files
    /// written before dimensions).
    #[serde(default)]
    pub primary_driver: Option<Dimension>,
}

impl ScoreRecord {
    /// The score this record holds, with `early_warnings` as the hits of the rules it
    /// names (the file keeps their names only); no contributions. A record without
    /// dimensions (a file written before them) has zeros there.
    pub fn to_score(&self, early_warnings: Vec<crate::scoring::RuleHit>) -> Score {
        let zero = DimensionScore {
            contribution: 0.0,
            health: 0.0,
        };
        Score {
            churn_probability: self.churn_probability,
            health_score: self.health_score,
            risk_tier: self.risk_tier,
            reasons: self.reasons.clone(),
            early_warnings,
            contributions: None,
            dimensions: self
                .dimensions
                .unwrap_or_else(|| DimensionScores::from_array([zero; 4])),
            primary_driver: self.primary_driver,
        }
    }

    /// The record's trend block.
    pub fn trend30(&self) -> Trend30 {
        Trend30 {
            probability_30d_ago: self.probability_30d_ago,
            change_30d: self.change_30d,
            trend: self.trend,
        }
    }
}

/// One scored customer as [`write`] takes it: borrowed from the run, so that a million
/// rows are written without copying their strings.
#[derive(Debug, Clone, Copy)]
pub struct ScoreRow<'a> {
    /// The customer.
    pub customer_id: &'a str,
    /// The scorer's answer for the customer.
    pub score: &'a Score,
    /// RFM segment, when the model has RFM features.
    pub rfm_segment: Option<&'a str>,
    /// The 30-day trend from the score history (item 6).
    pub trend: Trend30,
}

/// Writes the score file of a run as of `as_of` by `model` atomically (readers see the
/// previous file or the complete new one), column by column.
pub fn write(path: &Path, as_of: Ts, model: &ModelRef, rows: &[ScoreRow<'_>]) -> Result<()> {
    stage(path, as_of, model, rows, None)?.commit()
}

/// [`write`] up to the rename: the nightly run puts the file in place only once its
/// alert state has committed. With `contributions` (the model's feature names), the
/// file also has `shap_base` and one `shap_<feature>` column per feature (every row's
/// [`Score::contributions`] must be set).
pub fn stage(
    path: &Path,
    as_of: Ts,
    model: &ModelRef,
    rows: &[ScoreRow<'_>],
    contributions: Option<&[String]>,
) -> Result<crate::fsutil::Staged> {
    let mut df = frame(|_| as_of, model, rows, contributions)?;
    write::stage_frame(&mut df, path)
}

/// The score file's table, [`COLUMNS`] (then the contributions, see [`stage`]), as [`stage`]
/// writes it and the Python package returns it; row `i`'s snapshot instant is `as_of(i)`.
pub fn frame(
    as_of: impl Fn(usize) -> Ts,
    model: &ModelRef,
    rows: &[ScoreRow<'_>],
    contributions: Option<&[String]>,
) -> Result<DataFrame> {
    let n = rows.len();
    let unnamed = PlSmallStr::EMPTY;
    let mut cols = vec![
        Column::new(
            unnamed.clone(),
            rows.iter().map(|r| r.customer_id).collect::<Vec<_>>(),
        ),
        write::timestamp_column("", (0..n).map(as_of)),
        Column::new(
            unnamed.clone(),
            rows.iter()
                .map(|r| r.score.churn_probability)
                .collect::<Vec<_>>(),
        ),
        Column::new(
            unnamed.clone(),
            rows.iter()
                .map(|r| r.score.health_score)
                .collect::<Vec<_>>(),
        ),
        Column::new(
            unnamed.clone(),
            rows.iter()
                .map(|r| r.score.risk_tier.as_str())
                .collect::<Vec<_>>(),
        ),
    ];
    for k in 0..REASONS_PER_CUSTOMER {
        cols.push(Column::new(
            unnamed.clone(),
            rows.iter()
                .map(|r| r.score.reasons.get(k).map(|x| x.feature.as_str()))
                .collect::<Vec<_>>(),
        ));
        cols.push(Column::new(
            unnamed.clone(),
            rows.iter()
                .map(|r| r.score.reasons.get(k).and_then(|x| x.value))
                .collect::<Vec<_>>(),
        ));
        cols.push(Column::new(
            unnamed.clone(),
            rows.iter()
                .map(|r| r.score.reasons.get(k).map(|x| x.contribution))
                .collect::<Vec<_>>(),
        ));
    }
    cols.push(Column::new(
        unnamed.clone(),
        rows.iter().map(|r| r.rfm_segment).collect::<Vec<_>>(),
    ));
    cols.push(write::string_list_column(
        "",
        rows.iter()
            .map(|r| r.score.early_warnings.iter().map(|h| h.rule.as_str())),
    ));
    cols.push(Column::new(unnamed.clone(), vec![model.name.as_str(); n]));
    cols.push(Column::new(
        unnamed.clone(),
        vec![model.version.as_str(); n],
    ));
    // The trend block (item 6).
    cols.push(Column::new(
        unnamed.clone(),
        rows.iter()
            .map(|r| r.trend.probability_30d_ago)
            .collect::<Vec<_>>(),
    ));
    cols.push(Column::new(
        unnamed.clone(),
        rows.iter().map(|r| r.trend.change_30d).collect::<Vec<_>>(),
    ));
    cols.push(Column::new(
        unnamed,
        rows.iter()
            .map(|r| r.trend.trend.as_str())
            .collect::<Vec<_>>(),
    ));
    assert_eq!(cols.len(), COLUMNS.len(), "one column per name in COLUMNS");
    let mut cols: Vec<Column> = cols
        .into_iter()
        .zip(COLUMNS)
        .map(|(c, name)| c.with_name(name.into()))
        .collect();
    cols.extend(explain_columns(rows));
    if let Some(names) = contributions {
        cols.extend(contribution_columns(names, rows)?);
    }
    DataFrame::new(n, cols).map_err(|e| Error::polars("building the score table", e))
}

/// The columns of [`EXPLAIN_COLUMNS`], named.
fn explain_columns(rows: &[ScoreRow<'_>]) -> Vec<Column> {
    let mut cols = Vec::with_capacity(EXPLAIN_COLUMNS.len());
    for k in 0..REASONS_PER_CUSTOMER {
        cols.push(Column::new(
            "".into(),
            rows.iter()
                .map(|r| r.score.reasons.get(k).map(|x| x.text.as_str()))
                .collect::<Vec<_>>(),
        ));
    }
    for d in Dimension::ALL {
        cols.push(Column::new(
            "".into(),
            rows.iter()
                .map(|r| r.score.dimensions.get(d).contribution)
                .collect::<Vec<_>>(),
        ));
    }
    for d in Dimension::ALL {
        cols.push(Column::new(
            "".into(),
            rows.iter()
                .map(|r| r.score.dimensions.get(d).health)
                .collect::<Vec<_>>(),
        ));
    }
    cols.push(Column::new(
        "".into(),
        rows.iter()
            .map(|r| r.score.primary_driver.map(Dimension::as_str))
            .collect::<Vec<_>>(),
    ));
    cols.into_iter()
        .zip(EXPLAIN_COLUMNS)
        .map(|(c, name)| c.with_name(name.into()))
        .collect()
}

/// `shap_base` then `shap_<feature>` per feature, in calibrated log-odds, then
/// `value_<feature>` per feature: the value explained, in the feature's own units
/// (empty when undefined).
fn contribution_columns(names: &[String], rows: &[ScoreRow<'_>]) -> Result<Vec<Column>> {
    let all: Vec<&crate::scoring::Contributions> = rows
        .iter()
        .map(|r| r.score.contributions.as_ref())
        .collect::<Option<_>>()
        .ok_or_else(|| Error::Config("contributions were asked for but not computed".into()))?;
    let mut cols = vec![Column::new(
        "shap_base".into(),
        all.iter().map(|c| c.base).collect::<Vec<_>>(),
    )];
    for (j, name) in names.iter().enumerate() {
        cols.push(Column::new(
            format!("shap_{name}").into(),
            all.iter()
                .map(|c| c.values.get(j).copied().unwrap_or(0.0))
                .collect::<Vec<_>>(),
        ));
    }
    for (j, name) in names.iter().enumerate() {
        cols.push(Column::new(
            format!("value_{name}").into(),
            all.iter()
                .map(|c| c.features.get(j).copied().filter(|v| v.is_finite()))
                .collect::<Vec<_>>(),
        ));
    }
    Ok(cols)
}

/// Reads a score file into a map by customer id. A `risk_tier` that is not a tier is
/// refused with the file, row and value named, never read as some default.
pub fn read(path: &Path) -> Result<HashMap<String, ScoreRecord>> {
    Ok(records(&read_table(path)?, path)?
        .into_iter()
        .map(|r| (r.customer_id.clone(), r))
        .collect())
}

/// The table of a score file (`.parquet` or `.csv`), or of a directory of Parquet (or
/// CSV) parts such as a Spark job writes (`part-*.parquet`; names starting with `_` or
/// `.`, like `_SUCCESS`, are skipped), the parts stacked in name order.
pub fn read_table(path: &Path) -> Result<DataFrame> {
    if !path.is_dir() {
        return crate::data::read_table_file(path);
    }
    let parts = crate::data::dir_parts(path)?;
    let mut whole: Option<DataFrame> = None;
    for part in &parts {
        let df = crate::data::read_table_file(part)?;
        match &mut whole {
            None => whole = Some(df),
            Some(w) => {
                w.vstack_mut_owned(df).map_err(|e| {
                    Error::polars(format!("{}: stacking the parts", part.display()), e)
                })?;
            }
        }
    }
    let mut df = whole.ok_or_else(|| {
        Error::Data(format!(
            "{}: a directory without .parquet or .csv parts is not a score file",
            path.display()
        ))
    })?;
    df.rechunk_mut();
    Ok(df)
}

/// The `value_<feature>` columns of a score file written with contributions, row-major
/// in the order of `features` (NaN where undefined); `None` when the table lacks one.
pub fn feature_values(df: &DataFrame, features: &[String]) -> Result<Option<Vec<f64>>> {
    let w = features.len();
    let mut x = vec![f64::NAN; df.height() * w];
    for (j, name) in features.iter().enumerate() {
        let c = format!("value_{name}");
        let Ok(col) = df.column(&c) else {
            return Ok(None);
        };
        let col = col
            .cast(&DataType::Float64)
            .map_err(|e| Error::polars(format!("score table: column `{c}`"), e))?;
        let values = col
            .f64()
            .map_err(|e| Error::polars(format!("score table: column `{c}`"), e))?;
        for (i, v) in values.iter().enumerate() {
            x[i * w + j] = v.unwrap_or(f64::NAN);
        }
    }
    Ok(Some(x))
}

/// The records of a score table ([`read_table`], or the same columns from elsewhere),
/// in its row order; `source` names it in errors (the file, or `frame`).
pub fn records(df: &DataFrame, source: &Path) -> Result<Vec<ScoreRecord>> {
    let path = source;
    // Every column of COLUMNS is required, except `early_warnings` and the trend block:
    // older score files have none.
    for (j, c) in COLUMNS.iter().enumerate() {
        let optional = j == col::WARNINGS || j >= col::PROBABILITY_30D_AGO;
        if !optional && !crate::data::has_column(df, c) {
            return Err(Error::Data(format!(
                "{}: not a score file: no column `{c}` (expected the columns {})",
                path.display(),
                COLUMNS.join(", ")
            )));
        }
    }
    let ctx = |c: &str| format!("{}: column `{c}`", path.display());
    let cast = |j: usize, to: DataType| -> Result<Column> {
        let c = COLUMNS[j];
        let col = df.column(c).map_err(|e| Error::polars(ctx(c), e))?;
        col.cast(&to).map_err(|e| Error::polars(ctx(c), e))
    };
    let s = |j: usize| -> Result<StringChunked> {
        let col = cast(j, DataType::String)?;
        Ok(col
            .str()
            .map_err(|e| Error::polars(ctx(COLUMNS[j]), e))?
            .clone())
    };
    let f = |j: usize| -> Result<Float64Chunked> {
        let col = cast(j, DataType::Float64)?;
        Ok(col
            .f64()
            .map_err(|e| Error::polars(ctx(COLUMNS[j]), e))?
            .clone())
    };
    let column = |j: usize| {
        let c = COLUMNS[j];
        df.column(c).map_err(|e| Error::polars(ctx(c), e))
    };
    let as_of = as_of_texts(column(col::AS_OF)?).map_err(|e| Error::polars(ctx("as_of"), e))?;
    let (ids, prob, health, tier, seg, mname, mver) = (
        s(col::ID)?,
        f(col::PROBABILITY)?,
        f(col::HEALTH)?,
        s(col::TIER)?,
        s(col::SEGMENT)?,
        s(col::MODEL_NAME)?,
        s(col::MODEL_VERSION)?,
    );
    let mut warnings = if crate::data::has_column(df, COLUMNS[col::WARNINGS]) {
        rule_lists(column(col::WARNINGS)?)
            .map_err(|e| Error::polars(ctx(COLUMNS[col::WARNINGS]), e))?
    } else {
        Vec::new()
    };
    let has = |j: usize| crate::data::has_column(df, COLUMNS[j]);
    let (before, change, trend) = if has(col::TREND) {
        (
            Some(f(col::PROBABILITY_30D_AGO)?),
            Some(f(col::CHANGE_30D)?),
            Some(s(col::TREND)?),
        )
    } else {
        (None, None, None)
    };
    let mut reasons = Vec::new();
    for k in 0..REASONS_PER_CUSTOMER {
        let j = col::REASONS + 3 * k;
        reasons.push((s(j)?, f(j + 1)?, f(j + 2)?));
    }
    let explained = read_explanations(df, path)?;
    let bad_tier = |i: usize, message: String| Error::BadValue {
        table: "scores".into(),
        file: path.display().to_string(),
        row: i + 1,
        column: COLUMNS[col::TIER].into(),
        message,
    };
    let mut out = Vec::with_capacity(df.height());
    for (i, as_of) in as_of.into_iter().enumerate() {
        let Some(id) = ids.get(i) else { continue };
        let risk_tier = match tier.get(i) {
            Some(text) => text
                .parse::<Tier>()
                .map_err(|e| bad_tier(i, e.to_string()))?,
            None => {
                return Err(bad_tier(
                    i,
                    "empty: the tier must be low, medium or high".into(),
                ))
            }
        };
        out.push(ScoreRecord {
            customer_id: id.to_string(),
            as_of: as_of.unwrap_or_default(),
            churn_probability: prob.get(i).unwrap_or(f64::NAN),
            health_score: health.get(i).unwrap_or(f64::NAN),
            risk_tier,
            reasons: reasons
                .iter()
                .enumerate()
                .filter_map(|(k, (n, v, c))| {
                    Some(Reason {
                        feature: n.get(i)?.to_string(),
                        value: v.get(i),
                        contribution: c.get(i)?,
                        text: explained
                            .as_ref()
                            .and_then(|e| e.texts[k].get(i))
                            .unwrap_or_default()
                            .to_string(),
                    })
                })
                .collect(),
            rfm_segment: seg.get(i).map(str::to_string),
            early_warnings: warnings.get_mut(i).map(std::mem::take).unwrap_or_default(),
            model: ModelRef {
                name: mname.get(i).unwrap_or_default().to_string(),
                version: mver.get(i).unwrap_or_default().to_string(),
            },
            probability_30d_ago: before.as_ref().and_then(|c| c.get(i)),
            change_30d: change.as_ref().and_then(|c| c.get(i)),
            trend: trend
                .as_ref()
                .and_then(|c| c.get(i))
                .map_or(Trend::Unknown, Trend::parse),
            dimensions: explained.as_ref().and_then(|e| e.dimensions(i)),
            primary_driver: explained
                .as_ref()
                .and_then(|e| e.driver.get(i))
                .and_then(Dimension::parse),
        });
    }
    Ok(out)
}

/// The columns of [`EXPLAIN_COLUMNS`] as read.
struct Explained {
    texts: Vec<StringChunked>,
    contributions: Vec<Float64Chunked>,
    health: Vec<Float64Chunked>,
    driver: StringChunked,
}

impl Explained {
    fn dimensions(&self, i: usize) -> Option<DimensionScores> {
        let mut d = [DimensionScore {
            contribution: 0.0,
            health: 0.0,
        }; 4];
        for (k, x) in d.iter_mut().enumerate() {
            *x = DimensionScore {
                contribution: self.contributions[k].get(i)?,
                health: self.health[k].get(i)?,
            };
        }
        Some(DimensionScores::from_array(d))
    }
}

/// The explanation columns of a score file; `None` for a file written before them
/// (without `primary_driver`); a file with some of them but not all is refused.
fn read_explanations(df: &DataFrame, path: &Path) -> Result<Option<Explained>> {
    if !crate::data::has_column(df, EXPLAIN_COLUMNS[explain_col::DRIVER]) {
        return Ok(None);
    }
    let ctx = |c: &str| format!("{}: column `{c}`", path.display());
    let cast = |j: usize, to: DataType| -> Result<Column> {
        let c = EXPLAIN_COLUMNS[j];
        let col = df.column(c).map_err(|e| {
            Error::Data(format!(
                "{}: not a score file: no column `{c}` beside `primary_driver` ({e})",
                path.display()
            ))
        })?;
        col.cast(&to).map_err(|e| Error::polars(ctx(c), e))
    };
    let s = |j: usize| -> Result<StringChunked> {
        let col = cast(j, DataType::String)?;
        Ok(col
            .str()
            .map_err(|e| Error::polars(ctx(EXPLAIN_COLUMNS[j]), e))?
            .clone())
    };
    let f = |j: usize| -> Result<Float64Chunked> {
        let col = cast(j, DataType::Float64)?;
        Ok(col
            .f64()
            .map_err(|e| Error::polars(ctx(EXPLAIN_COLUMNS[j]), e))?
            .clone())
    };
    Ok(Some(Explained {
        texts: (0..REASONS_PER_CUSTOMER)
            .map(|k| s(explain_col::TEXTS + k))
            .collect::<Result<_>>()?,
        contributions: (0..4)
            .map(|k| f(explain_col::CONTRIBUTIONS + k))
            .collect::<Result<_>>()?,
        health: (0..4)
            .map(|k| f(explain_col::HEALTH + k))
            .collect::<Result<_>>()?,
        driver: s(explain_col::DRIVER)?,
    }))
}

/// The `as_of` column as RFC 3339 UTC text: a Parquet timestamp (this version's files)
/// or text (CSV, and the Parquet files of earlier versions, kept as written).
fn as_of_texts(col: &Column) -> PolarsResult<Vec<Option<String>>> {
    let s = col.as_materialized_series();
    if let Some(texts) = crate::data::datetime_seconds(s, |t| t.map(fmt_ts)) {
        return texts;
    }
    let s = s.cast(&DataType::String)?;
    Ok(s.str()?.iter().map(|v| v.map(String::from)).collect())
}

/// The `early_warnings` column, one list of rule names per row: a list column (this
/// version's Parquet files) or comma-joined text (CSV, and earlier Parquet files).
fn rule_lists(col: &Column) -> PolarsResult<Vec<Vec<String>>> {
    let s = col.as_materialized_series();
    if let DataType::List(_) = s.dtype() {
        return s
            .list()?
            .amortized_iter()
            .map(|row| {
                let Some(row) = row else {
                    return Ok(Vec::new());
                };
                let names = row.as_ref().cast(&DataType::String)?;
                Ok(names.str()?.iter().flatten().map(String::from).collect())
            })
            .collect();
    }
    let s = s.cast(&DataType::String)?;
    Ok(s.str()?
        .iter()
        .map(|v| {
            v.unwrap_or_default()
                .split(',')
                .filter(|x| !x.is_empty())
                .map(String::from)
                .collect()
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scoring::RuleHit;

    fn model() -> ModelRef {
        ModelRef {
            name: "churn".into(),
            version: "v3".into(),
        }
    }

    fn reason(feature: &str, value: Option<f64>, contribution: f64) -> Reason {
        Reason {
            feature: feature.into(),
            value,
            contribution,
            text: format!("{feature}, in words"),
        }
    }

    fn dimensions(c: [f64; 4]) -> DimensionScores {
        DimensionScores::from_array(c.map(|contribution| DimensionScore {
            contribution,
            health: (50.0 - 10.0 * contribution).round(),
        }))
    }

    fn hit(rule: &str) -> RuleHit {
        RuleHit {
            rule: rule.into(),
            kind: "no_login_days".into(),
            feature: "days_since_last_login".into(),
            value: 12.0,
            threshold: 7.0,
            message: "no login for 12 days (rule: more than 7)".into(),
            alert: false,
        }
    }

    fn score(p: f64, tier: Tier, reasons: Vec<Reason>, hits: Vec<RuleHit>) -> Score {
        let dimensions = dimensions([0.8, 0.25, -0.5, 0.125 - 4.0 * p]);
        Score {
            primary_driver: dimensions.primary_driver(),
            dimensions,
            churn_probability: p,
            health_score: (100.0 * (1.0 - p)).round(),
            risk_tier: tier,
            reasons,
            early_warnings: hits,
            contributions: None,
        }
    }

    /// Two customers: one with every reason, a segment and two warnings; one with a
    /// single reason whose value is undefined, no segment and no warning.
    fn scores() -> Vec<(&'static str, Score, Option<&'static str>)> {
        vec![
            (
                "c-1",
                score(
                    0.875,
                    Tier::High,
                    vec![
                        reason("logins_30d", Some(0.0), 0.8),
                        reason("tickets_open", Some(3.0), 0.25),
                        reason("tenure_days", Some(40.0), 0.125),
                    ],
                    vec![hit("no_login_7d"), hit("urgent_tickets_open_2")],
                ),
                Some("at risk"),
            ),
            (
                "c-2",
                score(
                    0.0625,
                    Tier::Low,
                    vec![reason("csat_mean_90d", None, 0.5)],
                    Vec::new(),
                ),
                None,
            ),
        ]
    }

    /// c-1 rose from 0.5 to 0.875; c-2 has no earlier score.
    fn trend_of(id: &str) -> Trend30 {
        match id {
            "c-1" => Trend30::of(0.875, Some(0.5)),
            _ => Trend30::default(),
        }
    }

    fn write_both(dir: &Path) -> [std::path::PathBuf; 2] {
        let scores = scores();
        let rows: Vec<ScoreRow<'_>> = scores
            .iter()
            .map(|(id, s, seg)| ScoreRow {
                customer_id: id,
                score: s,
                rfm_segment: *seg,
                trend: trend_of(id),
            })
            .collect();
        let as_of = crate::time::parse_ts("2024-06-01").unwrap();
        let paths = [dir.join("scores.csv"), dir.join("scores.parquet")];
        for p in &paths {
            write(p, as_of, &model(), &rows).unwrap();
        }
        paths
    }

    #[test]
    fn a_written_score_file_reads_back_as_the_same_records_in_both_formats() {
        let dir = tempfile::tempdir().unwrap();
        for path in write_both(dir.path()) {
            let got = read(&path).unwrap();
            assert_eq!(got.len(), 2, "{}", path.display());
            for (id, s, seg) in scores() {
                let want = ScoreRecord {
                    customer_id: id.into(),
                    as_of: "2024-06-01T00:00:00Z".into(),
                    churn_probability: s.churn_probability,
                    health_score: s.health_score,
                    risk_tier: s.risk_tier,
                    reasons: s.reasons.clone(),
                    rfm_segment: seg.map(String::from),
                    early_warnings: s.early_warnings.iter().map(|h| h.rule.clone()).collect(),
                    model: model(),
                    probability_30d_ago: trend_of(id).probability_30d_ago,
                    change_30d: trend_of(id).change_30d,
                    trend: trend_of(id).trend,
                    dimensions: Some(s.dimensions),
                    primary_driver: s.primary_driver,
                };
                assert_eq!(got[id], want, "{}", path.display());
            }
        }
    }

    #[test]
    fn the_written_columns_are_exactly_the_column_list_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let [csv, _] = write_both(dir.path());
        let text = std::fs::read_to_string(&csv).unwrap();
        let header: Vec<&str> = COLUMNS.iter().chain(&EXPLAIN_COLUMNS).copied().collect();
        assert_eq!(text.lines().next().unwrap(), header.join(","));
        let first = text.lines().nth(1).unwrap();
        assert!(
            first.contains(
                ",at risk,\"no_login_7d,urgent_tickets_open_2\",churn,v3,0.5,0.375,rising,\"logins_30d, in words\","
            ),
            "{first}"
        );
        assert!(first.ends_with(",engagement"), "{first}");
        for k in 1..=REASONS_PER_CUSTOMER {
            let at = COLUMNS.iter().position(|c| *c == format!("reason_{k}"));
            let at = at.expect("a column per reason");
            assert_eq!(COLUMNS[at + 1], format!("reason_{k}_value"));
            assert_eq!(COLUMNS[at + 2], format!("reason_{k}_contribution"));
        }
    }

    fn parquet(path: &Path) -> DataFrame {
        ParquetReader::new(std::fs::File::open(path).unwrap())
            .finish()
            .unwrap()
    }

    #[test]
    fn parquet_holds_as_of_as_a_utc_timestamp_and_early_warnings_as_a_list() {
        let dir = tempfile::tempdir().unwrap();
        let [_, pq] = write_both(dir.path());
        let df = parquet(&pq);
        let as_of = df.column("as_of").unwrap();
        assert_eq!(
            as_of.dtype(),
            &DataType::Datetime(TimeUnit::Microseconds, Some(TimeZone::UTC))
        );
        let micros = as_of.as_materialized_series().to_physical_repr();
        let want = crate::time::parse_ts("2024-06-01").unwrap() * 1_000_000;
        assert_eq!(micros.i64().unwrap().get(0), Some(want));
        let w = df.column("early_warnings").unwrap();
        assert_eq!(w.dtype(), &DataType::List(Box::new(DataType::String)));
        let w = w.list().unwrap();
        let first = w.get_as_series(0).unwrap();
        let names: Vec<_> = first.str().unwrap().iter().flatten().collect();
        assert_eq!(names, ["no_login_7d", "urgent_tickets_open_2"]);
        assert_eq!(w.get_as_series(1).unwrap().len(), 0);
    }

    #[test]
    fn a_parquet_score_file_of_an_earlier_version_with_text_columns_still_reads() {
        let dir = tempfile::tempdir().unwrap();
        let [_, pq] = write_both(dir.path());
        let want = read(&pq).unwrap();
        // The earlier form: `as_of` as RFC 3339 text, `early_warnings` comma-joined.
        let mut df = parquet(&pq);
        df.with_column(Column::new(
            "as_of".into(),
            vec!["2024-06-01T00:00:00Z"; df.height()],
        ))
        .unwrap();
        df.with_column(Column::new(
            "early_warnings".into(),
            vec!["no_login_7d,urgent_tickets_open_2", ""],
        ))
        .unwrap();
        let old = dir.path().join("old.parquet");
        write::write_frame(&mut df, &old).unwrap();
        assert_eq!(df.column("as_of").unwrap().dtype(), &DataType::String);
        assert_eq!(read(&old).unwrap(), want);
    }

    #[test]
    fn an_unknown_or_empty_tier_is_refused_naming_the_file_row_and_value() {
        let dir = tempfile::tempdir().unwrap();
        let [csv, _] = write_both(dir.path());
        let text = std::fs::read_to_string(&csv).unwrap();
        std::fs::write(&csv, text.replacen(",low,", ",critical,", 1)).unwrap();
        let e = read(&csv).unwrap_err();
        assert!(matches!(e, Error::BadValue { row: 2, .. }), "{e:?}");
        let e = e.to_string();
        assert!(e.contains("scores.csv") && e.contains("risk_tier"), "{e}");
        assert!(e.contains("`critical` is not a risk tier"), "{e}");
        std::fs::write(&csv, text.replacen(",low,", ",,", 1)).unwrap();
        let e = read(&csv).unwrap_err().to_string();
        assert!(e.contains("row 2") && e.contains("empty"), "{e}");
    }

    #[test]
    fn a_file_written_before_early_warnings_existed_reads_with_none() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("old.csv");
        std::fs::write(
            &path,
            "customer_id,as_of,churn_probability,health_score,risk_tier,reason_1,reason_1_value,reason_1_contribution,reason_2,reason_2_value,reason_2_contribution,reason_3,reason_3_value,reason_3_contribution,rfm_segment,model_name,model_version\n\
             c-9,2024-06-01T00:00:00Z,0.5,50,medium,logins_30d,1.0,0.3,,,,,,,,churn,v1\n",
        )
        .unwrap();
        let got = read(&path).unwrap();
        let r = &got["c-9"];
        assert_eq!(r.risk_tier, Tier::Medium);
        assert!(r.early_warnings.is_empty() && r.rfm_segment.is_none());
        let old_reason = Reason {
            text: String::new(),
            ..reason("logins_30d", Some(1.0), 0.3)
        };
        assert_eq!(r.reasons, [old_reason], "no text before texts existed");
        assert_eq!((r.dimensions, r.primary_driver), (None, None));
        assert_eq!(r.model.version, "v1");
        assert_eq!(r.trend30(), Trend30::default(), "no trend columns: unknown");
    }

    #[test]
    fn csv_ids_are_read_as_written_and_a_file_without_score_columns_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("digits.csv");
        let header = COLUMNS.join(",");
        std::fs::write(
            &path,
            format!("{header}\n007,2024-06-01T00:00:00Z,0.5,50,high,,,,,,,,,,,,churn,v1,,,\n"),
        )
        .unwrap();
        let got = read(&path).unwrap();
        assert_eq!(got["007"].customer_id, "007");
        assert_eq!(got["007"].risk_tier, Tier::High);

        let path = dir.path().join("features.csv");
        std::fs::write(&path, "customer_id,logins_30d\nc1,3\n").unwrap();
        let e = read(&path).unwrap_err().to_string();
        assert!(e.contains("not a score file: no column `as_of`"), "{e}");
    }
}
