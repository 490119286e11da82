//! The retention KPIs, computed from the customer base as of one instant: the report
//! ([`RetentionKpis`]) and its computation live here, each section in its own file.

mod at_risk;
mod monthly;
mod purchases;
mod risk;
mod rules;

use crate::churn::ChurnDefinition;
use crate::data::CustomerBase;
use crate::features::RfmCuts;
use crate::scores::ScoreRecord;
use crate::scoring::rules::{self as rule_defs, Rule};
use crate::time::{fmt_date, fmt_ts, parse_ts, Ts, DAY};
use crate::{Error, Result};
use serde::Serialize;
use std::collections::HashMap;

pub use at_risk::{AtRiskCustomer, RevenueAtRisk, RiskGroup};
pub use monthly::{CohortKpi, MonthKpi};
pub use purchases::{RepeatPurchase, CLV_FORMULA};
pub use risk::{ForwardChurn, RateBand, SegmentKpi, TicketRisk};
pub use rules::RuleKpi;

use at_risk::revenue_at_risk;
use monthly::{cohorts, monthly_churn};
use purchases::repeat_counts;
use risk::Risk;

/// Settings of the KPI computation; [`Default`] is what `churnguard retention` uses.
#[derive(Debug, Clone, PartialEq)]
pub struct RetentionOptions {
    /// Active window of the inactivity definition of churn (no `churn` table), in days.
    pub active_days: u32,
    /// Horizon of the forward-looking churn rates (RFM segments, tickets, rules), in days.
    pub horizon_days: u32,
    /// How many snapshots, one horizon apart, the forward-looking rates pool.
    pub risk_snapshots: usize,
    /// The early-warning rules measured in the report.
    pub rules: Vec<Rule>,
    /// How many customers the revenue-at-risk list shows.
    pub top_customers: usize,
    /// The model whose RFM definition every section uses; required with a score file,
    /// whose `rfm_segment` is that model's.
    pub model_rfm: Option<ModelRfm>,
}

/// A model's RFM definition: the recency, frequency and monetary quintile cut points
/// learned on its training rows, as in [`crate::scoring::RfmColumns`] and the score file's
/// `rfm_segment`.
#[derive(Debug, Clone, PartialEq)]
pub struct ModelRfm {
    /// `name version`, as the score file names it.
    pub model: String,
    /// `None`: the model has no RFM features, so the report has no RFM segments.
    pub cuts: Option<RfmCuts>,
}

impl ModelRfm {
    /// The RFM definition of a loaded model.
    pub fn of(scorer: &crate::scoring::Scorer) -> Self {
        ModelRfm {
            model: format!("{} {}", scorer.name, scorer.version),
            cuts: scorer.artifact.spec.rfm.clone(),
        }
    }
}

impl Default for RetentionOptions {
    fn default() -> Self {
        RetentionOptions {
            active_days: 90,
            horizon_days: 30,
            risk_snapshots: 6,
            rules: rule_defs::default_rules(),
            top_customers: 20,
            model_rfm: None,
        }
    }
}

/// Everything `churnguard retention` reports, as of one instant. Computed only from rows
/// strictly before `as_of`; every outcome (a month's churn, churn within the horizon after
/// a snapshot) is counted only where its whole window ends at or before `as_of`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RetentionKpis {
    pub as_of: String,
    pub data: String,
    /// Customers who signed up before `as_of`.
    pub customers: usize,
    /// Customers active at `as_of` (the population the model scores).
    pub active_now: usize,
    pub churn_definition: ChurnDefinition,
    /// Which definition of churn the figures use and how.
    pub churn_definition_text: String,
    /// How a month's churn is counted.
    pub monthly_churn_rule: String,
    /// Complete calendar months before `as_of`, oldest first.
    pub monthly: Vec<MonthKpi>,
    /// Pooled monthly churn rate of the last (up to) 12 months: sum churned / sum active.
    pub churn_rate_last_12_months: Option<f64>,
    /// Signup cohorts, oldest first.
    pub cohorts: Vec<CohortKpi>,
    pub repeat_purchase: Option<RepeatPurchase>,
    pub clv_formula: String,
    /// Churn within the horizon after past snapshots (RFM, ticket and rule rates pool these).
    pub forward: Option<ForwardChurn>,
    /// Which RFM definition every section of the report uses, in a sentence.
    pub rfm_definition: String,
    /// RFM segments (only with an `orders` table), in the order of `RFM_SEGMENTS`.
    pub rfm_segments: Vec<SegmentKpi>,
    pub ticket_risk: Option<TicketRisk>,
    pub rules: Vec<RuleKpi>,
    pub revenue_at_risk: Option<RevenueAtRisk>,
    /// Caveats: missing tables, small samples, ignored rows.
    pub notes: Vec<String>,
}

fn ratio(a: usize, b: usize) -> Option<f64> {
    (b > 0).then(|| a as f64 / b as f64)
}

/// The sentence that says which RFM definition the report uses.
fn rfm_definition(model: Option<&ModelRfm>) -> String {
    match model {
        Some(m) => format!(
            "RFM segments everywhere in this report are the model's ({}): recency and frequency \
             quintile scores with the cut points learned on its training rows, the same \
             definition as the score file's `rfm_segment`.",
            m.model
        ),
        None => "RFM segments use recency and frequency quintile scores with cut points learned \
                 from the active customers of each snapshot (no model was given; with a score \
                 file the model's definition is used)."
            .into(),
    }
}

// ---------------------------------------------------------------------------------------
// The computation
// ---------------------------------------------------------------------------------------

/// The default as-of instant of a report: the date of the score file when one is given
/// (its latest `as_of`), else midnight after the customer base's last timestamp (so the last
/// day of data counts). `None` when there is neither.
pub fn default_as_of(
    base: &CustomerBase,
    scores: Option<&HashMap<String, ScoreRecord>>,
) -> Option<Ts> {
    scores
        .and_then(|s| s.values().filter_map(|r| parse_ts(&r.as_of)).max())
        .or_else(|| base.data_end().map(|end| end.div_euclid(DAY) * DAY + DAY))
}

/// The KPIs of `base` as of `as_of` with the default options; `scores` (a nightly score
/// file read by [`crate::scores::read`]) adds revenue at risk.
pub fn kpis(
    base: &CustomerBase,
    as_of: Ts,
    scores: Option<&HashMap<String, ScoreRecord>>,
) -> Result<RetentionKpis> {
    kpis_with(base, as_of, scores, &RetentionOptions::default())
}

/// [`kpis`] with explicit options.
pub fn kpis_with(
    base: &CustomerBase,
    as_of: Ts,
    scores: Option<&HashMap<String, ScoreRecord>>,
    opts: &RetentionOptions,
) -> Result<RetentionKpis> {
    if opts.horizon_days == 0 || opts.active_days == 0 {
        return Err(Error::Config(
            "retention: the horizon and the active window must be at least one day".into(),
        ));
    }
    for r in &opts.rules {
        r.validate()?;
    }
    let present = base.present();
    if scores.is_some() && present.orders && opts.model_rfm.is_none() {
        return Err(Error::Config(
            "retention with a score file needs the RFM definition of the model that wrote it \
             (RetentionOptions::model_rfm), so that every section counts the score file's segments"
                .into(),
        ));
    }
    let def = ChurnDefinition::for_tables(present, opts.active_days)?;
    let mut notes = Vec::new();
    let signed_up: Vec<usize> = (0..base.customers.len())
        .filter(|&c| base.customers.signup[c] < as_of)
        .collect();
    if signed_up.is_empty() {
        notes.push(format!(
            "no customer signed up before {}: there is nothing to measure",
            fmt_ts(as_of)
        ));
    }
    let later = base.customers.len() - signed_up.len();
    if later > 0 {
        notes.push(format!(
            "{later} customers signed up at or after {} and are left out",
            fmt_date(as_of)
        ));
    }
    let churn_definition_text = def.describe_with_horizon(opts.horizon_days);
    let monthly_churn_rule = def.monthly_rule();

    let monthly = monthly_churn(base, &def, as_of, &signed_up);
    let last12 = &monthly[monthly.len().saturating_sub(12)..];
    let churn_rate_last_12_months = ratio(
        last12.iter().map(|m| m.churned).sum(),
        last12.iter().map(|m| m.active_at_start).sum(),
    );
    let cohorts = cohorts(base, &def, as_of, &signed_up, churn_rate_last_12_months);
    let repeat_purchase = present.orders.then(|| {
        let (buyers, repeat) = repeat_counts(base, as_of, &signed_up);
        RepeatPurchase {
            buyers,
            repeat_buyers: repeat,
            rate: ratio(repeat, buyers),
        }
    });
    if !present.orders {
        notes.push(
            "no `orders` table: repeat purchases, revenue, lifetime value, RFM segments and revenue at risk are not available".into(),
        );
    }

    let risk = Risk::compute(base, &def, as_of, opts)?;
    let active_now = risk.now.pop.len();
    if risk.snaps.is_empty() {
        notes.push(format!(
            "no snapshot has a fully observed {}-day window before {}: forward-looking churn rates (segments, tickets, rules) are not available",
            opts.horizon_days,
            fmt_date(as_of)
        ));
    }
    let revenue_at_risk = match scores {
        Some(s) => Some(revenue_at_risk(
            base,
            as_of,
            s,
            opts.top_customers,
            &mut notes,
        )?),
        None => None,
    };

    Ok(RetentionKpis {
        as_of: fmt_ts(as_of),
        data: base.summary.directory.clone(),
        customers: signed_up.len(),
        active_now,
        churn_definition: def,
        churn_definition_text,
        monthly_churn_rule,
        monthly,
        churn_rate_last_12_months,
        cohorts,
        repeat_purchase,
        clv_formula: CLV_FORMULA.to_string(),
        forward: risk.forward(opts.horizon_days),
        rfm_definition: rfm_definition(opts.model_rfm.as_ref()),
        rfm_segments: risk.segments(),
        ticket_risk: risk.tickets(),
        rules: risk.rules(&opts.rules),
        revenue_at_risk,
        notes,
    })
}
