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
//! undefined); `rfm_segment` is empty when the model has no RFM features;
//! `early_warnings` holds the names of the rules that fired, comma-separated. Files
//! written before early warnings existed have no such column and are still read.

use std::collections::HashMap;
use std::path::Path;

use polars::prelude::*;
use serde::{Deserialize, Serialize};

use crate::data::write;
use crate::scoring::{ModelRef, Reason, RuleHit, Score, Tier};
use crate::time::{fmt_ts, Ts};
use crate::{Error, Result};

/// How many reasons each scored customer carries in the score file (and the service's
/// answers).
pub const REASONS_PER_CUSTOMER: usize = 3;

/// The score file's columns, in order. Its length is tied to [`REASONS_PER_CUSTOMER`], so
/// changing the number of reasons does not compile until the list follows.
pub const COLUMNS: [&str; 9 + 3 * REASONS_PER_CUSTOMER] = [
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
];

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
}

/// Writes the score file of a run as of `as_of` by `model` atomically (readers see the
/// previous file or the complete new one), column by column.
pub fn write(path: &Path, as_of: Ts, model: &ModelRef, rows: &[ScoreRow<'_>]) -> Result<()> {
    let n = rows.len();
    let as_of = fmt_ts(as_of);
    let unnamed = PlSmallStr::EMPTY;
    let mut cols = vec![
        Column::new(
            unnamed.clone(),
            rows.iter().map(|r| r.customer_id).collect::<Vec<_>>(),
        ),
        Column::new(unnamed.clone(), vec![as_of.as_str(); n]),
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
    cols.push(Column::new(
        unnamed.clone(),
        rows.iter()
            .map(|r| rule_names(&r.score.early_warnings))
            .collect::<Vec<_>>(),
    ));
    cols.push(Column::new(unnamed.clone(), vec![model.name.as_str(); n]));
    cols.push(Column::new(unnamed, vec![model.version.as_str(); n]));
    assert_eq!(cols.len(), COLUMNS.len(), "one column per name in COLUMNS");
    let cols = cols
        .into_iter()
        .zip(COLUMNS)
        .map(|(c, name)| c.with_name(name.into()))
        .collect();
    let mut df =
        DataFrame::new(n, cols).map_err(|e| Error::polars("building the score table", e))?;
    write::write_frame(&mut df, path)
}

/// The `early_warnings` cell: the names of the rules that fired, comma-separated.
fn rule_names(hits: &[RuleHit]) -> String {
    let mut out = String::new();
    for (i, h) in hits.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        out.push_str(&h.rule);
    }
    out
}

/// Reads a score file into a map by customer id. A `risk_tier` that is not a tier is
/// refused with the file, row and value named, never read as some default.
pub fn read(path: &Path) -> Result<HashMap<String, ScoreRecord>> {
    let df = crate::data::read_table_file(path)?;
    // Every column of COLUMNS is required, except `early_warnings`: older score files
    // have none.
    for (j, c) in COLUMNS.iter().enumerate() {
        if j != col::WARNINGS && !crate::data::has_column(&df, c) {
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
    let (ids, as_of, prob, health, tier, seg, mname, mver) = (
        s(col::ID)?,
        s(col::AS_OF)?,
        f(col::PROBABILITY)?,
        f(col::HEALTH)?,
        s(col::TIER)?,
        s(col::SEGMENT)?,
        s(col::MODEL_NAME)?,
        s(col::MODEL_VERSION)?,
    );
    let warnings = if crate::data::has_column(&df, COLUMNS[col::WARNINGS]) {
        Some(s(col::WARNINGS)?)
    } else {
        None
    };
    let mut reasons = Vec::new();
    for k in 0..REASONS_PER_CUSTOMER {
        let j = col::REASONS + 3 * k;
        reasons.push((s(j)?, f(j + 1)?, f(j + 2)?));
    }
    let bad_tier = |i: usize, message: String| Error::BadValue {
        table: "scores".into(),
        file: path.display().to_string(),
        row: i + 1,
        column: COLUMNS[col::TIER].into(),
        message,
    };
    let mut out = HashMap::with_capacity(df.height());
    for i in 0..df.height() {
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
        out.insert(
            id.to_string(),
            ScoreRecord {
                customer_id: id.to_string(),
                as_of: as_of.get(i).unwrap_or_default().to_string(),
                churn_probability: prob.get(i).unwrap_or(f64::NAN),
                health_score: health.get(i).unwrap_or(f64::NAN),
                risk_tier,
                reasons: reasons
                    .iter()
                    .filter_map(|(n, v, c)| {
                        Some(Reason {
                            feature: n.get(i)?.to_string(),
                            value: v.get(i),
                            contribution: c.get(i)?,
                        })
                    })
                    .collect(),
                rfm_segment: seg.get(i).map(str::to_string),
                early_warnings: warnings
                    .as_ref()
                    .and_then(|w| w.get(i))
                    .map(|w| {
                        w.split(',')
                            .filter(|x| !x.is_empty())
                            .map(String::from)
                            .collect()
                    })
                    .unwrap_or_default(),
                model: ModelRef {
                    name: mname.get(i).unwrap_or_default().to_string(),
                    version: mver.get(i).unwrap_or_default().to_string(),
                },
            },
        );
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

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
        }
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
        Score {
            churn_probability: p,
            health_score: (100.0 * (1.0 - p)).round(),
            risk_tier: tier,
            reasons,
            early_warnings: hits,
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

    fn write_both(dir: &Path) -> [std::path::PathBuf; 2] {
        let scores = scores();
        let rows: Vec<ScoreRow<'_>> = scores
            .iter()
            .map(|(id, s, seg)| ScoreRow {
                customer_id: id,
                score: s,
                rfm_segment: *seg,
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
        assert_eq!(text.lines().next().unwrap(), COLUMNS.join(","));
        let first = text.lines().nth(1).unwrap();
        assert!(
            first.ends_with(",at risk,\"no_login_7d,urgent_tickets_open_2\",churn,v3"),
            "{first}"
        );
        for k in 1..=REASONS_PER_CUSTOMER {
            let at = COLUMNS.iter().position(|c| *c == format!("reason_{k}"));
            let at = at.expect("a column per reason");
            assert_eq!(COLUMNS[at + 1], format!("reason_{k}_value"));
            assert_eq!(COLUMNS[at + 2], format!("reason_{k}_contribution"));
        }
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
        assert_eq!(r.reasons, [reason("logins_30d", Some(1.0), 0.3)]);
        assert_eq!(r.model.version, "v1");
    }

    #[test]
    fn csv_ids_are_read_as_written_and_a_file_without_score_columns_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("digits.csv");
        let header = COLUMNS.join(",");
        std::fs::write(
            &path,
            format!("{header}\n007,2024-06-01T00:00:00Z,0.5,50,high,,,,,,,,,,,,churn,v1\n"),
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
