//! The retention KPIs, computed from the customer base as of one instant.

use crate::churn::{active_at, churned_between, churned_in_month, population, ChurnDefinition};
use crate::data::{before, CustomerBase, CustomerView};
use crate::features::{rfm_segment, AttributeConfig, Bound, FeatureSpec, RFM_SEGMENTS};
use crate::scores::ScoreRecord;
use crate::scoring::rules::{self, Condition, Rule};
use crate::scoring::Tier;
use crate::time::{fmt_date, fmt_ts, parse_ts, Ts, DAY};
use crate::{Error, Result};
use chrono::{DateTime, Datelike, NaiveDate};
use rayon::prelude::*;
use serde::Serialize;
use std::collections::HashMap;

/// The formula of the simple customer lifetime value, as written in the report and JSON.
pub const CLV_FORMULA: &str = "CLV = (revenue of the cohort's orders up to the end of its last observed month / \
the cohort's active customer-months) / (pooled monthly churn rate of the last 12 observed months): \
average monthly revenue per active customer times the expected lifetime in months (1 / churn). \
Revenue, not margin; refunds subtract; an active customer-month is one customer active at one month end.";

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
}

impl Default for RetentionOptions {
    fn default() -> Self {
        RetentionOptions {
            active_days: 90,
            horizon_days: 30,
            risk_snapshots: 6,
            rules: rules::default_rules(),
            top_customers: 20,
        }
    }
}

/// One calendar month of the churn and retention series.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct MonthKpi {
    /// `YYYY-MM`.
    pub month: String,
    /// Customers active at the first instant of the month.
    pub active_at_start: usize,
    /// Of those, how many churned during the month.
    pub churned: usize,
    /// `churned / active_at_start`.
    pub churn_rate: Option<f64>,
    /// `1 - churn_rate`: the share of the month's starting customers kept.
    pub retention_rate: Option<f64>,
    /// Customers who signed up during the month.
    pub new_customers: usize,
}

/// One signup cohort (calendar month of signup).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CohortKpi {
    /// `YYYY-MM` of signup.
    pub cohort: String,
    pub customers: usize,
    /// Customers of the cohort active at the end of month `k` since signup (`k = 0` is the
    /// end of the signup month), for every month end up to the as-of instant.
    pub active: Vec<usize>,
    /// `active[k] / customers`.
    pub retention: Vec<f64>,
    /// Money from the cohort's orders before the as-of instant (refunds subtract).
    pub revenue_to_date: Option<f64>,
    /// `revenue_to_date / customers`: average revenue per customer of the cohort.
    pub revenue_per_customer: Option<f64>,
    /// Sum of `active`: customer-months observed.
    pub active_customer_months: usize,
    /// Revenue up to the end of the last observed month per active customer-month.
    pub monthly_revenue_per_active_customer: Option<f64>,
    /// Simple lifetime value, see [`CLV_FORMULA`].
    pub clv: Option<f64>,
    /// Share of the cohort's buyers with two or more purchases.
    pub repeat_purchase_rate: Option<f64>,
}

/// Repeat purchasing among customers who bought (purchases: orders with a positive amount).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RepeatPurchase {
    /// Customers with at least one purchase before the as-of instant.
    pub buyers: usize,
    /// Of those, customers with two or more.
    pub repeat_buyers: usize,
    pub rate: Option<f64>,
}

/// The snapshots the forward-looking rates pool: each is followed by a fully observed
/// horizon before the as-of instant.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ForwardChurn {
    pub horizon_days: u32,
    /// Snapshot dates, oldest first.
    pub snapshots: Vec<String>,
    /// Customers active at a snapshot, summed over snapshots.
    pub customer_snapshots: usize,
    /// Of those, how many churned within the horizon after their snapshot.
    pub churned: usize,
    pub churn_rate: Option<f64>,
}

/// A group of customer-snapshots and its churn rate within the horizon.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RateBand {
    pub band: String,
    pub customer_snapshots: usize,
    pub churned: usize,
    pub churn_rate: Option<f64>,
}

/// One RFM segment: its size now and its churn rate after past snapshots.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SegmentKpi {
    pub segment: String,
    /// Active customers in the segment at the as-of instant.
    pub customers_now: usize,
    pub share_now: Option<f64>,
    /// Their revenue of the last 365 days.
    pub trailing_revenue_now: f64,
    /// Customer-snapshots in the segment over the observed snapshots.
    pub customer_snapshots: usize,
    pub churned: usize,
    /// Churn within the horizon after the snapshot.
    pub churn_rate: Option<f64>,
}

/// Churn within the horizon by support experience at the snapshot.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TicketRisk {
    /// By `tickets_open_urgent` (high or urgent tickets open at the snapshot): 0, 1, 2, 3+.
    pub by_open_urgent: Vec<RateBand>,
    /// By `csat_mean_90d` band (mean csat of tickets closed in the 90 days before; `unrated`:
    /// no rated ticket closed in those 90 days).
    pub by_csat: Vec<RateBand>,
}

/// How an early-warning rule fires now and how well it anticipated churn.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RuleKpi {
    pub rule: String,
    pub description: String,
    pub feature: String,
    /// False when the feature is not built for this customer base (its table is absent).
    pub usable: bool,
    /// Active customers the rule fires for at the as-of instant.
    pub firing_now: usize,
    pub share_now: Option<f64>,
    /// Customer-snapshots the rule fired for over the observed snapshots.
    pub fired: usize,
    pub churned_when_fired: usize,
    pub churn_rate_when_fired: Option<f64>,
    pub churn_rate_when_not_fired: Option<f64>,
    /// `churn_rate_when_fired / overall churn rate` of the observed snapshots.
    pub lift: Option<f64>,
}

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
    /// RFM segments (only with an `orders` table), in the order of `RFM_SEGMENTS`.
    pub rfm_segments: Vec<SegmentKpi>,
    pub ticket_risk: Option<TicketRisk>,
    pub rules: Vec<RuleKpi>,
    pub revenue_at_risk: Option<RevenueAtRisk>,
    /// Caveats: missing tables, small samples, ignored rows.
    pub notes: Vec<String>,
}

// ---------------------------------------------------------------------------------------
// Calendar months
// ---------------------------------------------------------------------------------------

/// Months since 1970-01 of the UTC month containing `t`.
pub(crate) fn month_of(t: Ts) -> i64 {
    DateTime::from_timestamp(t, 0).map_or(0, |d| {
        (i64::from(d.year()) - 1970) * 12 + i64::from(d.month0())
    })
}

/// The first instant of month `m` (months since 1970-01).
pub(crate) fn month_start(m: i64) -> Ts {
    let y = 1970 + m.div_euclid(12);
    let mo = m.rem_euclid(12) as u32 + 1;
    i32::try_from(y)
        .ok()
        .and_then(|y| NaiveDate::from_ymd_opt(y, mo, 1))
        .and_then(|d| d.and_hms_opt(0, 0, 0))
        .map_or(0, |d| d.and_utc().timestamp())
}

/// `YYYY-MM` of month `m`.
pub(crate) fn month_label(m: i64) -> String {
    format!("{:04}-{:02}", 1970 + m.div_euclid(12), m.rem_euclid(12) + 1)
}

fn ratio(a: usize, b: usize) -> Option<f64> {
    (b > 0).then(|| a as f64 / b as f64)
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
        rfm_segments: risk.segments(),
        ticket_risk: risk.tickets(),
        rules: risk.rules(&opts.rules),
        revenue_at_risk,
        notes,
    })
}

fn monthly_churn(
    base: &CustomerBase,
    def: &ChurnDefinition,
    as_of: Ts,
    signed_up: &[usize],
) -> Vec<MonthKpi> {
    let Some(first) = signed_up
        .iter()
        .map(|&c| base.customers.signup[c])
        .min()
        .map(month_of)
    else {
        return Vec::new();
    };
    let last = month_of(as_of); // months m < last end at or before as_of
    let mut out = Vec::new();
    for m in first..last {
        let (m0, m1) = (month_start(m), month_start(m + 1));
        let pop = population(base, def, m0);
        if pop.is_empty() && out.is_empty() {
            continue;
        }
        let churned = pop
            .par_iter()
            .filter(|&&c| churned_in_month(&base.view(c as usize), def, m0, m1))
            .count();
        let new_customers = signed_up
            .iter()
            .filter(|&&c| (m0..m1).contains(&base.customers.signup[c]))
            .count();
        let churn_rate = ratio(churned, pop.len());
        out.push(MonthKpi {
            month: month_label(m),
            active_at_start: pop.len(),
            churned,
            churn_rate,
            retention_rate: churn_rate.map(|r| 1.0 - r),
            new_customers,
        });
    }
    out
}

/// Purchases (orders with a positive amount) before `t`.
fn purchases(view: &CustomerView, t: Ts) -> usize {
    before(view.orders, t)
        .iter()
        .filter(|o| o.amount > 0.0)
        .count()
}

fn repeat_counts(base: &CustomerBase, as_of: Ts, customers: &[usize]) -> (usize, usize) {
    let mut buyers = 0;
    let mut repeat = 0;
    for &c in customers {
        let n = purchases(&base.view(c), as_of);
        buyers += usize::from(n >= 1);
        repeat += usize::from(n >= 2);
    }
    (buyers, repeat)
}

fn revenue_before(view: &CustomerView, t: Ts) -> f64 {
    before(view.orders, t).iter().map(|o| o.amount).sum()
}

fn cohorts(
    base: &CustomerBase,
    def: &ChurnDefinition,
    as_of: Ts,
    signed_up: &[usize],
    churn_12m: Option<f64>,
) -> Vec<CohortKpi> {
    let last = month_of(as_of);
    let mut by_cohort: std::collections::BTreeMap<i64, Vec<usize>> = Default::default();
    for &c in signed_up {
        by_cohort
            .entry(month_of(base.customers.signup[c]))
            .or_default()
            .push(c);
    }
    let orders = base.orders.is_some();
    by_cohort
        .into_iter()
        .map(|(m, members)| {
            // Month ends m+1 ..= last are at or before as_of.
            let cells = (last - m).max(0) as usize;
            let active: Vec<usize> = (0..cells)
                .map(|k| {
                    let t = month_start(m + k as i64 + 1);
                    members
                        .par_iter()
                        .filter(|&&c| active_at(&base.view(c), def, t))
                        .count()
                })
                .collect();
            let n = members.len();
            let retention = active.iter().map(|&a| a as f64 / n as f64).collect();
            let active_customer_months: usize = active.iter().sum();
            let (mut revenue_to_date, mut revenue_per_customer, mut arpa, mut clv, mut repeat) =
                (None, None, None, None, None);
            if orders {
                let total: f64 = members
                    .iter()
                    .map(|&c| revenue_before(&base.view(c), as_of))
                    .sum();
                revenue_to_date = Some(total);
                revenue_per_customer = Some(total / n as f64);
                if cells > 0 && active_customer_months > 0 {
                    let end = month_start(m + cells as i64);
                    let observed: f64 = members
                        .iter()
                        .map(|&c| revenue_before(&base.view(c), end))
                        .sum();
                    let a = observed / active_customer_months as f64;
                    arpa = Some(a);
                    clv = churn_12m.filter(|&r| r > 0.0).map(|r| a / r);
                }
                let (buyers, rep) = repeat_counts(base, as_of, &members);
                repeat = ratio(rep, buyers);
            }
            CohortKpi {
                cohort: month_label(m),
                customers: n,
                active,
                retention,
                revenue_to_date,
                revenue_per_customer,
                active_customer_months,
                monthly_revenue_per_active_customer: arpa,
                clv,
                repeat_purchase_rate: repeat,
            }
        })
        .collect()
}

// ---------------------------------------------------------------------------------------
// Forward-looking rates: RFM segments, tickets, rules
// ---------------------------------------------------------------------------------------

/// The features of one snapshot's population, with a spec learned from that snapshot only.
struct Snap {
    spec: FeatureSpec,
    pop: Vec<u32>,
    x: Vec<f64>,
    /// Churned within the horizon (empty for the as-of snapshot, whose future is unknown).
    churned: Vec<bool>,
    t: Ts,
}

impl Snap {
    fn build(
        base: &CustomerBase,
        def: &ChurnDefinition,
        t: Ts,
        horizon: Option<i64>,
    ) -> Result<Snap> {
        let pop = population(base, def, t);
        let rows: Vec<(u32, Ts)> = pop.iter().map(|&c| (c, t)).collect();
        // Cut points (RFM quintiles, event types) are learned from this snapshot's own
        // population and rows before `t`, as a retention team scores its base at `t`.
        let spec = FeatureSpec::learn(base, &rows, &AttributeConfig::default())?;
        let x = Bound::new(&spec, base).matrix(&rows);
        let churned = match horizon {
            Some(h) => pop
                .par_iter()
                .map(|&c| churned_between(&base.view(c as usize), def, t, t + h))
                .collect(),
            None => Vec::new(),
        };
        Ok(Snap {
            spec,
            pop,
            x,
            churned,
            t,
        })
    }

    fn row(&self, i: usize) -> &[f64] {
        let w = self.spec.len();
        &self.x[i * w..(i + 1) * w]
    }

    fn value(&self, i: usize, j: Option<usize>) -> Option<f64> {
        j.map(|j| self.row(i)[j])
    }

    fn segment(&self, i: usize) -> Option<&'static str> {
        let (r, f) = (self.spec.index_of("rfm_r")?, self.spec.index_of("rfm_f")?);
        let row = self.row(i);
        Some(rfm_segment(row[r] as u8, row[f] as u8))
    }
}

struct Risk {
    now: Snap,
    /// Past snapshots whose horizon ends at or before as_of, oldest first.
    snaps: Vec<Snap>,
}

#[derive(Default, Clone, Copy)]
struct Tally {
    n: usize,
    churned: usize,
}

impl Tally {
    fn add(&mut self, churned: bool) {
        self.n += 1;
        self.churned += usize::from(churned);
    }
    fn band(self, name: &str) -> RateBand {
        RateBand {
            band: name.to_string(),
            customer_snapshots: self.n,
            churned: self.churned,
            churn_rate: ratio(self.churned, self.n),
        }
    }
}

impl Risk {
    fn compute(
        base: &CustomerBase,
        def: &ChurnDefinition,
        as_of: Ts,
        opts: &RetentionOptions,
    ) -> Result<Risk> {
        let h = i64::from(opts.horizon_days) * DAY;
        let first = base.customers.signup.iter().copied().min().unwrap_or(as_of);
        let mut snaps = Vec::new();
        for i in 0..opts.risk_snapshots {
            let t = as_of - h * (i as i64 + 1);
            if t <= first {
                break;
            }
            let s = Snap::build(base, def, t, Some(h))?;
            if !s.pop.is_empty() {
                snaps.push(s);
            }
        }
        snaps.reverse();
        Ok(Risk {
            now: Snap::build(base, def, as_of, None)?,
            snaps,
        })
    }

    /// Every observed customer-snapshot: (snapshot, row index, churned).
    fn observed(&self) -> impl Iterator<Item = (&Snap, usize, bool)> {
        self.snaps
            .iter()
            .flat_map(|s| s.churned.iter().enumerate().map(move |(i, &c)| (s, i, c)))
    }

    fn forward(&self, horizon_days: u32) -> Option<ForwardChurn> {
        if self.snaps.is_empty() {
            return None;
        }
        let mut t = Tally::default();
        for (_, _, c) in self.observed() {
            t.add(c);
        }
        Some(ForwardChurn {
            horizon_days,
            snapshots: self.snaps.iter().map(|s| fmt_date(s.t)).collect(),
            customer_snapshots: t.n,
            churned: t.churned,
            churn_rate: ratio(t.churned, t.n),
        })
    }

    fn segments(&self) -> Vec<SegmentKpi> {
        if self.now.spec.rfm.is_none() && self.snaps.iter().all(|s| s.spec.rfm.is_none()) {
            return Vec::new();
        }
        let rev = self.now.spec.index_of("revenue_365d");
        let mut now: HashMap<&str, (usize, f64)> = HashMap::new();
        for i in 0..self.now.pop.len() {
            if let Some(seg) = self.now.segment(i) {
                let e = now.entry(seg).or_default();
                e.0 += 1;
                e.1 += self
                    .now
                    .value(i, rev)
                    .filter(|v| v.is_finite())
                    .unwrap_or(0.0);
            }
        }
        let mut past: HashMap<&str, Tally> = HashMap::new();
        for (s, i, c) in self.observed() {
            if let Some(seg) = s.segment(i) {
                past.entry(seg).or_default().add(c);
            }
        }
        let total_now = self.now.pop.len();
        RFM_SEGMENTS
            .iter()
            .map(|&seg| {
                let (n, revenue) = now.get(seg).copied().unwrap_or_default();
                let t = past.get(seg).copied().unwrap_or_default();
                SegmentKpi {
                    segment: seg.to_string(),
                    customers_now: n,
                    share_now: ratio(n, total_now),
                    trailing_revenue_now: revenue,
                    customer_snapshots: t.n,
                    churned: t.churned,
                    churn_rate: ratio(t.churned, t.n),
                }
            })
            .collect()
    }

    fn tickets(&self) -> Option<TicketRisk> {
        if self.snaps.is_empty() || !self.snaps.iter().all(|s| s.spec.present.tickets) {
            return None;
        }
        let mut urgent = [Tally::default(); 4];
        let mut csat = [Tally::default(); 4];
        for (s, i, c) in self.observed() {
            let u = s
                .value(i, s.spec.index_of("tickets_open_urgent"))
                .unwrap_or(0.0);
            urgent[(u.max(0.0) as usize).min(3)].add(c);
            let k = match s.value(i, s.spec.index_of("csat_mean_90d")) {
                Some(v) if v.is_finite() && v < 2.5 => 1,
                Some(v) if v.is_finite() && v < 3.5 => 2,
                Some(v) if v.is_finite() => 3,
                _ => 0,
            };
            csat[k].add(c);
        }
        Some(TicketRisk {
            by_open_urgent: ["0", "1", "2", "3+"]
                .iter()
                .zip(urgent)
                .map(|(n, t)| t.band(n))
                .collect(),
            by_csat: ["unrated", "below 2.5", "2.5 to 3.5", "3.5 and above"]
                .iter()
                .zip(csat)
                .map(|(n, t)| t.band(n))
                .collect(),
        })
    }

    fn rules(&self, rules: &[Rule]) -> Vec<RuleKpi> {
        // Each rule's feature column in a snapshot's spec (absent: never fires).
        let columns = |spec: &FeatureSpec| -> Vec<(usize, &Condition)> {
            rules
                .iter()
                .map(|r| {
                    (
                        spec.index_of(r.feature()).unwrap_or(usize::MAX),
                        &r.condition,
                    )
                })
                .collect()
        };
        let mut now = vec![0usize; rules.len()];
        let cols = columns(&self.now.spec);
        for i in 0..self.now.pop.len() {
            for (k, h) in rules::fired(&cols, self.now.row(i)).into_iter().enumerate() {
                now[k] += usize::from(h);
            }
        }
        let mut hit = vec![Tally::default(); rules.len()];
        let mut miss = vec![Tally::default(); rules.len()];
        let mut all = Tally::default();
        for s in &self.snaps {
            let cols = columns(&s.spec);
            for (i, &c) in s.churned.iter().enumerate() {
                all.add(c);
                for (k, h) in rules::fired(&cols, s.row(i)).into_iter().enumerate() {
                    if h {
                        hit[k].add(c);
                    } else {
                        miss[k].add(c);
                    }
                }
            }
        }
        let base_rate = ratio(all.churned, all.n);
        let n_now = self.now.pop.len();
        rules
            .iter()
            .enumerate()
            .map(|(k, r)| {
                let rate = ratio(hit[k].churned, hit[k].n);
                RuleKpi {
                    rule: r.name(),
                    description: r.condition.describe(),
                    feature: r.feature().to_string(),
                    usable: self.now.spec.index_of(r.feature()).is_some(),
                    firing_now: now[k],
                    share_now: ratio(now[k], n_now),
                    fired: hit[k].n,
                    churned_when_fired: hit[k].churned,
                    churn_rate_when_fired: rate,
                    churn_rate_when_not_fired: ratio(miss[k].churned, miss[k].n),
                    lift: match (rate, base_rate) {
                        (Some(a), Some(b)) if b > 0.0 => Some(a / b),
                        _ => None,
                    },
                }
            })
            .collect()
    }
}

// ---------------------------------------------------------------------------------------
// Revenue at risk
// ---------------------------------------------------------------------------------------

fn revenue_at_risk(
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
        expected_churners,
        trailing_revenue,
        revenue_at_risk: total_risk,
        by_tier,
        by_segment,
        top: customers,
    })
}
