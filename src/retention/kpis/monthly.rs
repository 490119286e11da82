//! The monthly churn and retention series and the signup cohorts, on calendar months.

use super::purchases::{repeat_counts, revenue_before};
use super::ratio;
use crate::churn::{active_at, churned_in_month, population, ChurnDefinition};
use crate::data::CustomerBase;
use crate::time::Ts;
use chrono::{DateTime, Datelike, NaiveDate};
use rayon::prelude::*;
use serde::Serialize;

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

pub(super) fn monthly_churn(
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

pub(super) fn cohorts(
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
