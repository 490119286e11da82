//! Realised performance of an earlier nightly run: once the data holds the outcomes of
//! its horizon, how well did its scores and tiers pick the customers who churned?
//! Like the trainer, this reaches [`crate::labels`]; serving code never does.

use crate::churn::ChurnDefinition;
use crate::data::CustomerBase;
use crate::labels::label;
use crate::metrics::{pr_auc, roc_auc};
use crate::scores::ScoreRecord;
use crate::time::{fmt_date, parse_ts, DAY};
use crate::{Error, Result};
use serde::Serialize;
use std::collections::HashMap;

/// How one tier did.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct TierOutcome {
    pub tier: String,
    pub customers: usize,
    pub churned: usize,
    /// Churn rate in the tier (its precision when the tier is the alert list).
    pub churn_rate: f64,
    /// Share of all churners found in this tier or above.
    pub cumulative_recall: f64,
}

/// How a scored run turned out.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Backtest {
    pub as_of: String,
    pub horizon_days: u32,
    pub model: String,
    pub customers: usize,
    pub churned: usize,
    pub roc_auc: f64,
    pub pr_auc: f64,
    pub tiers: Vec<TierOutcome>,
    /// Scored customers not found in the customer base (ignored).
    pub unknown_customers: usize,
}

/// Evaluates a score file against the outcomes in `base`. Refuses when the data does
/// not yet cover the whole horizon after the run's `as_of`.
pub fn backtest(
    base: &CustomerBase,
    scores: &HashMap<String, ScoreRecord>,
    definition: &ChurnDefinition,
    horizon_days: u32,
) -> Result<Backtest> {
    let first = scores
        .values()
        .next()
        .ok_or_else(|| Error::Data("the score file is empty".into()))?;
    let as_of = parse_ts(&first.as_of).ok_or_else(|| {
        Error::Data(format!(
            "score file as_of `{}` is not a timestamp",
            first.as_of
        ))
    })?;
    let end = base.data_end().unwrap_or(i64::MIN).div_euclid(DAY) * DAY;
    if as_of + horizon_days as i64 * DAY > end {
        return Err(Error::Data(format!(
            "the data ends {} but the run of {} needs outcomes until {}: backtest it later",
            fmt_date(end),
            fmt_date(as_of),
            fmt_date(as_of + horizon_days as i64 * DAY)
        )));
    }
    let mut probs = Vec::new();
    let mut labels = Vec::new();
    let mut tiers = Vec::new();
    let mut unknown = 0;
    let mut ids: Vec<&String> = scores.keys().collect();
    ids.sort();
    for id in ids {
        let r = &scores[id];
        let Some(&c) = base.customers.index.get(id) else {
            unknown += 1;
            continue;
        };
        probs.push(r.churn_probability);
        labels.push(label(
            &base.view(c as usize),
            definition,
            as_of,
            horizon_days,
        ));
        tiers.push(r.risk_tier);
    }
    let churned = labels.iter().filter(|&&l| l).count();
    let mut outcomes = Vec::new();
    let mut found = 0usize;
    for t in [
        crate::scoring::Tier::High,
        crate::scoring::Tier::Medium,
        crate::scoring::Tier::Low,
    ] {
        let idx: Vec<usize> = (0..tiers.len()).filter(|&i| tiers[i] == t).collect();
        let hit = idx.iter().filter(|&&i| labels[i]).count();
        found += hit;
        outcomes.push(TierOutcome {
            tier: t.as_str().into(),
            customers: idx.len(),
            churned: hit,
            churn_rate: if idx.is_empty() {
                f64::NAN
            } else {
                hit as f64 / idx.len() as f64
            },
            cumulative_recall: if churned == 0 {
                f64::NAN
            } else {
                found as f64 / churned as f64
            },
        });
    }
    Ok(Backtest {
        as_of: fmt_date(as_of),
        horizon_days,
        model: format!("{} {}", first.model.name, first.model.version),
        customers: probs.len(),
        churned,
        roc_auc: roc_auc(&probs, &labels),
        pr_auc: pr_auc(&probs, &labels),
        tiers: outcomes,
        unknown_customers: unknown,
    })
}
