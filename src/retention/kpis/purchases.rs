//! Purchases, revenue and the simple customer lifetime value.

use crate::data::{before, CustomerBase, CustomerView};
use crate::time::Ts;
use serde::Serialize;

/// The formula of the simple customer lifetime value, as written in the report and JSON.
pub const CLV_FORMULA: &str = "CLV = (revenue of the cohort's orders up to the end of its last observed month / \
the cohort's active customer-months) / (pooled monthly churn rate of the last 12 observed months): \
average monthly revenue per active customer times the expected lifetime in months (1 / churn). \
Revenue, not margin; refunds subtract; an active customer-month is one customer active at one month end.";

/// Repeat purchasing among customers who bought (purchases: orders with a positive amount).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RepeatPurchase {
    /// Customers with at least one purchase before the as-of instant.
    pub buyers: usize,
    /// Of those, customers with two or more.
    pub repeat_buyers: usize,
    pub rate: Option<f64>,
}

/// Purchases (orders with a positive amount) before `t`.
fn purchases(view: &CustomerView, t: Ts) -> usize {
    before(view.orders, t)
        .iter()
        .filter(|o| o.amount > 0.0)
        .count()
}

pub(super) fn repeat_counts(base: &CustomerBase, as_of: Ts, customers: &[usize]) -> (usize, usize) {
    let mut buyers = 0;
    let mut repeat = 0;
    for &c in customers {
        let n = purchases(&base.view(c), as_of);
        buyers += usize::from(n >= 1);
        repeat += usize::from(n >= 2);
    }
    (buyers, repeat)
}

pub(super) fn revenue_before(view: &CustomerView, t: Ts) -> f64 {
    before(view.orders, t).iter().map(|o| o.amount).sum()
}
