//! Orders: purchase recency, frequency and money, intervals between orders, refunds, and
//! the RFM quintile scores when cut points were learned (table `orders`).

use super::explain::{Text, Unit::*};
use super::family::{mean_std, push_all, write, At, Def};
use super::rfm::RfmCuts;
use super::spec::{FeatureDef, Transform::*};
use crate::data::{before, between, Order};
use crate::time::DAY;

/// The table the family reads.
pub(super) const TABLE: &str = "orders";

/// What the model lacks when the table is absent.
pub(super) const SUMMARY: &str = "purchase recency/frequency/monetary, intervals, RFM scores";

/// The family's features, in schema order.
pub(super) const FEATURES: [Def; 9] = [
    Def::new(
        "order_recency_days",
        Log1p,
        false,
        "days since the last order (days since signup if none)",
    )
    .says(Text::Since {
        pattern: "last order {v} ago",
        recent: "an order within the last day",
        never: "no orders yet",
    }),
    Def::new("orders_90d", Log1p, false, "orders in the last 90 days")
        .says(orders(" in the last 90 days")),
    Def::new("orders_365d", Log1p, false, "orders in the last 365 days")
        .says(orders(" in the last 365 days")),
    Def::new(
        "revenue_90d",
        Log1p,
        false,
        "money from orders in the last 90 days (refunds subtract)",
    )
    .says(revenue("revenue of {v} in the last 90 days")),
    Def::new(
        "revenue_365d",
        Log1p,
        false,
        "money from orders in the last 365 days (refunds subtract)",
    )
    .says(revenue("revenue of {v} in the last 365 days")),
    Def::new(
        "interval_mean_days",
        Log1p,
        true,
        "mean days between consecutive orders",
    )
    .says(Text::Value {
        pattern: "orders usually every {v}",
        unit: Days,
        missing: FEWER_THAN_TWO,
    }),
    Def::new(
        "interval_std_days",
        Log1p,
        true,
        "standard deviation of days between orders",
    )
    .says(Text::Value {
        pattern: "order intervals vary by {v}",
        unit: Days,
        missing: FEWER_THAN_TWO,
    }),
    Def::new(
        "overdue_ratio",
        Log1p,
        true,
        "days since the last order / mean interval",
    )
    .says(Text::Overdue {
        missing: FEWER_THAN_TWO,
    }),
    Def::new(
        "refunds_365d",
        Log1p,
        false,
        "refunds (negative orders) in the last 365 days",
    )
    .says(Text::Count {
        one: "refund",
        many: "refunds",
        rest: " in the last 365 days",
    }),
];

/// The text of an interval feature without two orders to measure one.
const FEWER_THAN_TWO: &str = "fewer than two orders, so no usual interval yet";

/// An order count's text: `3 orders in the last 90 days`.
const fn orders(rest: &'static str) -> Text {
    Text::Count {
        one: "order",
        many: "orders",
        rest,
    }
}

/// A revenue's text.
const fn revenue(pattern: &'static str) -> Text {
    Text::Value {
        pattern,
        unit: Money,
        missing: "no revenue",
    }
}

/// An RFM score's text: `recency score 1 of 5`.
const fn rfm(pattern: &'static str) -> Text {
    Text::Value {
        pattern,
        unit: Number,
        missing: "no RFM score",
    }
}

/// The RFM scores, after [`FEATURES`] when the spec has cut points.
pub(super) const RFM_FEATURES: [Def; 3] = [
    Def::new(
        "rfm_r",
        Identity,
        false,
        "recency quintile score, 5 = most recent",
    )
    .says(rfm("recency score {v} of 5")),
    Def::new(
        "rfm_f",
        Identity,
        false,
        "frequency quintile score (orders in 365 days), 5 = most",
    )
    .says(rfm("frequency score {v} of 5")),
    Def::new(
        "rfm_m",
        Identity,
        false,
        "monetary quintile score (revenue in 365 days), 5 = most",
    )
    .says(rfm("monetary score {v} of 5")),
];

/// The family's features: [`FEATURES`], then [`RFM_FEATURES`] with cut points.
pub(super) fn defs(rfm: bool, out: &mut Vec<FeatureDef>) {
    push_all(&FEATURES, TABLE, out);
    if rfm {
        push_all(&RFM_FEATURES, TABLE, out);
    }
}

/// The orders before `t` and the year behind `t`: what the RFM scores and most features read.
struct Recent<'a> {
    orders: &'a [Order],
    w365: &'a [Order],
    recency: f64,
    revenue_365: f64,
}

impl<'a> Recent<'a> {
    fn new(at: &At<'_, 'a>) -> Self {
        let orders = before(at.view.orders, at.t);
        let w365 = between(orders, at.days_ago(365), at.t);
        Recent {
            orders,
            w365,
            recency: at.since(orders.last().map(|x| x.at)),
            revenue_365: w365.iter().map(|x| x.amount).sum(),
        }
    }

    /// Recency (days), frequency (orders in 365 days), monetary (revenue in 365 days).
    fn rfm_inputs(&self) -> (f64, f64, f64) {
        (self.recency, self.w365.len() as f64, self.revenue_365)
    }
}

/// The inputs of the RFM scores as of `at` (see [`RfmCuts::scores`]).
pub(super) fn rfm_inputs(at: &At) -> (f64, f64, f64) {
    Recent::new(at).rfm_inputs()
}

/// The values of [`FEATURES`], in their order.
fn values(at: &At, r: &Recent) -> [f64; FEATURES.len()] {
    let w90 = between(r.orders, at.days_ago(90), at.t);
    let (mean, std, n) = mean_std(
        r.orders
            .windows(2)
            .map(|w| (w[1].at - w[0].at) as f64 / DAY as f64),
    );
    [
        r.recency,
        w90.len() as f64,
        r.w365.len() as f64,
        w90.iter().map(|x| x.amount).sum(),
        r.revenue_365,
        mean,
        if n >= 2 { std } else { f64::NAN },
        if mean > 0.0 {
            r.recency / mean
        } else {
            f64::NAN
        },
        r.w365.iter().filter(|x| x.amount < 0.0).count() as f64,
    ]
}

/// The values of [`RFM_FEATURES`], in their order.
fn rfm_values(cuts: &RfmCuts, r: &Recent) -> [f64; RFM_FEATURES.len()] {
    let (recency, frequency, monetary) = r.rfm_inputs();
    let (s_r, s_f, s_m) = cuts.scores(recency, frequency, monetary);
    [s_r as f64, s_f as f64, s_m as f64]
}

/// Writes the values of [`defs`] at the start of `out`; returns how many.
pub(super) fn compute(at: &At, rfm: Option<&RfmCuts>, out: &mut [f64]) -> usize {
    let r = Recent::new(at);
    let k = write(values(at, &r), out);
    match rfm {
        Some(cuts) => k + write(rfm_values(cuts, &r), &mut out[k..]),
        None => k,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::CustomerView;
    use crate::features::family::check::{signed_up, ts, written};

    fn order(at: &str, amount: f64) -> Order {
        Order { at: ts(at), amount }
    }

    /// Checks the family on `view` as of `t`, with RFM scores when `rfm` has cut points.
    fn check(view: &CustomerView, t: &str, rfm: Option<&RfmCuts>, expected: &[(&str, f64)]) {
        let mut defs = Vec::new();
        super::defs(rfm.is_some(), &mut defs);
        written(
            &defs,
            |out| compute(&At::new(view, ts(t)), rfm, out),
            expected,
        );
    }

    #[test]
    fn every_order_feature_of_a_hand_built_customer_with_rfm_scores() {
        let orders = [
            // More than 365 days before T: only in the intervals.
            order("2023-03-01", 50.0),
            order("2024-01-01", 99.0),
            order("2024-02-01", 99.0),
            order("2024-03-01", 99.0),
            order("2024-03-15", -20.0),
            // At T: not before it, so not seen.
            order("2024-04-01", 99.0),
        ];
        let view = CustomerView {
            orders: &orders,
            ..signed_up("2023-01-01")
        };
        let iv = [306.0f64, 31.0, 29.0, 14.0];
        let mean = iv.iter().sum::<f64>() / 4.0;
        let std = (iv.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / 4.0).sqrt();
        let cuts = RfmCuts {
            recency: [10.0, 20.0, 30.0, 40.0],
            frequency: [1.0, 2.0, 3.0, 4.0],
            monetary: [100.0, 200.0, 300.0, 400.0],
        };
        check(
            &view,
            "2024-04-01",
            Some(&cuts),
            &[
                ("order_recency_days", 17.0),
                // [01-02, 04-01): the 01-01 order is outside.
                ("orders_90d", 3.0),
                ("orders_365d", 4.0),
                ("revenue_90d", 178.0),
                ("revenue_365d", 277.0),
                ("interval_mean_days", mean),
                ("interval_std_days", std),
                ("overdue_ratio", 17.0 / mean),
                ("refunds_365d", 1.0),
                // Recency 17 is above one cut: score 6 - 2.
                ("rfm_r", 4.0),
                ("rfm_f", 4.0),
                ("rfm_m", 3.0),
            ],
        );
        assert_eq!(
            rfm_inputs(&At::new(&view, ts("2024-04-01"))),
            (17.0, 4.0, 277.0)
        );
    }

    #[test]
    fn one_order_has_no_interval_and_no_rfm_without_cut_points() {
        let orders = [order("2024-02-16", 29.0)];
        let view = CustomerView {
            orders: &orders,
            ..signed_up("2024-02-15")
        };
        check(
            &view,
            "2024-04-01",
            None,
            &[
                ("order_recency_days", 45.0),
                ("orders_90d", 1.0),
                ("orders_365d", 1.0),
                ("revenue_90d", 29.0),
                ("revenue_365d", 29.0),
                ("interval_mean_days", f64::NAN),
                ("interval_std_days", f64::NAN),
                ("overdue_ratio", f64::NAN),
                ("refunds_365d", 0.0),
            ],
        );
    }
}
