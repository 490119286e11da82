//! Revenue at risk from a nightly score file: probability x trailing-12-month revenue.

use crate::data::CustomerBase;
use crate::features::Bound;
use crate::features::FeatureSpec;
use crate::scores::ScoreRecord;
use crate::scoring::Tier;
use crate::time::{fmt_date, parse_ts, Ts};
use crate::{Error, Result};
use serde::Serialize;
use std::collections::HashMap;

/// Expected churn and revenue at risk of one group of scored customers.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RiskGroup {
    pub group: String,
    pub customers: usize,
    /// Sum of churn probabilities.
    pub expected_churners: f64,
    /// Mean health score (from the score file, see `Scorer::health`).
    pub mean_health_score: Option<f64>,
    /// Revenue of the last 365 days before each customer's score.
    pub trailing_revenue: f64,
    /// Sum of probability x trailing revenue.
    pub revenue_at_risk: f64,
    pub share_of_revenue_at_risk: Option<f64>,
}

/// One customer of the revenue-at-risk list.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AtRiskCustomer {
    pub customer_id: String,
    pub churn_probability: f64,
    pub health_score: f64,
    pub risk_tier: Tier,
    pub rfm_segment: Option<String>,
    pub trailing_revenue: f64,
    pub revenue_at_risk: f64,
    /// The model's strongest reason, when it gave one.
    pub top_reason: Option<String>,
    // Explanations (issue 14, items 4 and 5).
    /// That reason in plain language (empty in score files written before texts).
    pub top_reason_text: Option<String>,
    /// The dimension pushing the customer's risk up the most (from the score file).
    pub primary_driver: Option<String>,
}

/// The scored customers whose primary driver is one dimension.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DriverGroup {
    /// `group` is the dimension id, `none` when no dimension pushes the risk up, or
    /// `unknown` for score files written before dimensions.
    #[serde(flatten)]
    pub risk: RiskGroup,
    /// Of them, the customers in the high or medium tier.
    pub at_risk_customers: usize,
}

/// Revenue at risk from a nightly score file: probability x trailing-12-month revenue.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RevenueAtRisk {
    /// The as-of date(s) of the score file.
    pub scores_as_of: Vec<String>,
    /// `name version` of the model(s) that scored.
    pub models: Vec<String>,
    /// Scored customers found in the customer base.
    pub customers_scored: usize,
    /// Score rows whose customer is not in the base (ignored).
    pub customers_not_in_base: usize,
    /// Score rows without a finite probability (ignored).
    pub invalid_scores: usize,
    /// Whether the base has orders; without them revenue is zero.
    pub revenue_available: bool,
    pub expected_churners: f64,
    pub trailing_revenue: f64,
    pub revenue_at_risk: f64,
    /// High, medium, low.
    pub by_tier: Vec<RiskGroup>,
    /// RFM segments (from the score file), largest revenue at risk first.
    pub by_segment: Vec<RiskGroup>,
    /// Largest revenue at risk first.
    pub top: Vec<AtRiskCustomer>,
    /// By primary driver (engagement, support, billing, relationship, then `none` and
    /// `unknown` when present): where the risk comes from.
    pub by_primary_driver: Vec<DriverGroup>,
}

pub(super) fn revenue_at_risk(
    base: &CustomerBase,
    as_of: Ts,
    scores: &HashMap<String, ScoreRecord>,
    top_n: usize,
    notes: &mut Vec<String>,
) -> Result<RevenueAtRisk> {
    let mut rows: Vec<(u32, Ts)> = Vec::with_capacity(scores.len());
    let mut records: Vec<&ScoreRecord> = Vec::with_capacity(scores.len());
    let (mut unknown, mut invalid) = (0usize, 0usize);
    let mut dates = std::collections::BTreeSet::new();
    let mut models = std::collections::BTreeSet::new();
    for rec in scores.values() {
        let Some(&c) = base.customers.index.get(&rec.customer_id) else {
            unknown += 1;
            continue;
        };
        if !rec.churn_probability.is_finite() {
            invalid += 1;
            continue;
        }
        let t = parse_ts(&rec.as_of).ok_or_else(|| {
            Error::Data(format!(
                "score of customer `{}`: as_of `{}` is not a timestamp",
                rec.customer_id, rec.as_of
            ))
        })?;
        if t > as_of {
            return Err(Error::Config(format!(
                "the score file is as of {} but the report is as of {}: a report cannot use scores from its future; give --as-of {} or later",
                fmt_date(t),
                fmt_date(as_of),
                fmt_date(t)
            )));
        }
        dates.insert(fmt_date(t));
        models.insert(format!("{} {}", rec.model.name, rec.model.version));
        rows.push((c, t));
        records.push(rec);
    }
    if unknown > 0 {
        notes.push(format!(
            "{unknown} scored customers are not in the customer base and are left out of revenue at risk"
        ));
    }
    if invalid > 0 {
        notes.push(format!(
            "{invalid} score rows have no finite churn probability and are left out"
        ));
    }
    let present = base.present();
    // Revenue of the 365 days before each score, through the feature code.
    let spec = FeatureSpec::new(present, Vec::new(), Vec::new(), Vec::new(), None);
    let revenue: Vec<f64> = match spec.index_of("revenue_365d") {
        Some(j) => {
            let x = Bound::new(&spec, base).matrix(&rows);
            let w = spec.len();
            (0..rows.len())
                .map(|i| x[i * w + j])
                .map(|v| if v.is_finite() { v.max(0.0) } else { 0.0 })
                .collect()
        }
        None => vec![0.0; rows.len()],
    };
    let mut customers: Vec<AtRiskCustomer> = records
        .iter()
        .zip(&revenue)
        .map(|(rec, &rev)| AtRiskCustomer {
            customer_id: rec.customer_id.clone(),
            churn_probability: rec.churn_probability,
            health_score: rec.health_score,
            risk_tier: rec.risk_tier,
            rfm_segment: rec.rfm_segment.clone(),
            trailing_revenue: rev,
            revenue_at_risk: rec.churn_probability * rev,
            top_reason: rec.reasons.first().map(|r| r.feature.clone()),
            top_reason_text: rec
                .reasons
                .first()
                .map(|r| r.text.clone())
                .filter(|t| !t.is_empty()),
            primary_driver: Some(match (rec.primary_driver, rec.dimensions) {
                (Some(d), _) => d.as_str().to_string(),
                (None, Some(_)) => "none".to_string(),
                // A score file written before dimensions.
                (None, None) => "unknown".to_string(),
            }),
        })
        .collect();
    let total_risk: f64 = customers.iter().map(|c| c.revenue_at_risk).sum();
    let group = |name: &str, members: &[&AtRiskCustomer]| -> RiskGroup {
        let risk: f64 = members.iter().map(|c| c.revenue_at_risk).sum();
        let health: Vec<f64> = members
            .iter()
            .map(|c| c.health_score)
            .filter(|h| h.is_finite())
            .collect();
        RiskGroup {
            group: name.to_string(),
            customers: members.len(),
            expected_churners: members.iter().map(|c| c.churn_probability).sum(),
            mean_health_score: (!health.is_empty())
                .then(|| health.iter().sum::<f64>() / health.len() as f64),
            trailing_revenue: members.iter().map(|c| c.trailing_revenue).sum(),
            revenue_at_risk: risk,
            share_of_revenue_at_risk: (total_risk > 0.0).then(|| risk / total_risk),
        }
    };
    let by_tier = [Tier::High, Tier::Medium, Tier::Low]
        .iter()
        .map(|&t| {
            let m: Vec<&AtRiskCustomer> = customers.iter().filter(|c| c.risk_tier == t).collect();
            group(t.as_str(), &m)
        })
        .collect();
    let mut seg_names: Vec<String> = customers
        .iter()
        .map(|c| c.rfm_segment.clone().unwrap_or_else(|| "none".into()))
        .collect();
    seg_names.sort();
    seg_names.dedup();
    let mut by_segment: Vec<RiskGroup> = seg_names
        .iter()
        .map(|s| {
            let m: Vec<&AtRiskCustomer> = customers
                .iter()
                .filter(|c| c.rfm_segment.as_deref().unwrap_or("none") == s)
                .collect();
            group(s, &m)
        })
        .collect();
    by_segment.sort_by(|a, b| {
        b.revenue_at_risk
            .total_cmp(&a.revenue_at_risk)
            .then_with(|| a.group.cmp(&b.group))
    });
    let by_primary_driver = crate::features::Dimension::ALL
        .iter()
        .map(|d| d.as_str())
        .chain(["none", "unknown"])
        .filter_map(|name| {
            let m: Vec<&AtRiskCustomer> = customers
                .iter()
                .filter(|c| c.primary_driver.as_deref() == Some(name))
                .collect();
            let named = crate::features::Dimension::parse(name).is_some();
            (named || !m.is_empty()).then(|| DriverGroup {
                at_risk_customers: m.iter().filter(|c| c.risk_tier != Tier::Low).count(),
                risk: group(name, &m),
            })
        })
        .collect();
    let expected_churners = customers.iter().map(|c| c.churn_probability).sum();
    let trailing_revenue = customers.iter().map(|c| c.trailing_revenue).sum();
    customers.sort_by(|a, b| {
        b.revenue_at_risk
            .total_cmp(&a.revenue_at_risk)
            .then_with(|| b.churn_probability.total_cmp(&a.churn_probability))
            .then_with(|| a.customer_id.cmp(&b.customer_id))
    });
    let customers_scored = customers.len();
    customers.truncate(top_n);
    Ok(RevenueAtRisk {
        scores_as_of: dates.into_iter().collect(),
        models: models.into_iter().collect(),
        customers_scored,
        customers_not_in_base: unknown,
        invalid_scores: invalid,
        revenue_available: present.orders,
        by_primary_driver,
        expected_churners,
        trailing_revenue,
        revenue_at_risk: total_risk,
        by_tier,
        by_segment,
        top: customers,
    })
}
