//! Logins: counts, recency, trend and active days (table `logins`).

use super::explain::Text;
use super::explain::Unit::*;
use super::family::{At, Def};
use super::spec::Transform::*;
use crate::data::{before, between};
use crate::time::DAY;

/// The table the family reads.
pub(super) const TABLE: &str = "logins";

/// What the model lacks when the table is absent.
pub(super) const SUMMARY: &str = "login counts, recency, trend, active days";

/// The family's features, in schema order.
pub(super) const FEATURES: [Def; 6] = [
    Def::new("logins_7d", Log1p, false, "logins in the last 7 days").says(LOGINS_7D),
    Def::new("logins_30d", Log1p, false, "logins in the last 30 days").says(LOGINS_30D),
    Def::new("logins_90d", Log1p, false, "logins in the last 90 days").says(LOGINS_90D),
    Def::new(
        "days_since_last_login",
        Log1p,
        false,
        "days since the last login (days since signup if none)",
    )
    .says(Text::Since {
        pattern: "no login for {v}",
        recent: "a login within the last day",
        never: "no login since signing up {v} ago",
    }),
    Def::new(
        "login_trend",
        Log1p,
        false,
        "(logins in the last 30 days + 1) / (mean of the two 30-day windows before + 1)",
    )
    .says(Text::Value {
        pattern: "logins at {v} their earlier rate",
        unit: Times,
        missing: "no login trend",
    }),
    Def::new(
        "active_days_30d",
        Identity,
        false,
        "distinct days with a login in the last 30 days",
    )
    .says(Text::Count {
        one: "day",
        many: "days",
        rest: " with a login in the last 30 days",
    }),
];

/// A login count's text: `3 logins in the last 7 days`.
const fn logins(rest: &'static str) -> Text {
    Text::Count {
        one: "login",
        many: "logins",
        rest,
    }
}
const LOGINS_7D: Text = logins(" in the last 7 days");
const LOGINS_30D: Text = logins(" in the last 30 days");
const LOGINS_90D: Text = logins(" in the last 90 days");

/// The values of [`FEATURES`], in their order.
pub(super) fn compute(at: &At) -> [f64; FEATURES.len()] {
    let t = at.t;
    let l = before(at.view.logins, t);
    let count = |d: i64| between(l, at.days_ago(d), t).len() as f64;
    let c30 = count(30);
    let prior = between(l, at.days_ago(90), at.days_ago(30)).len() as f64 / 2.0;
    let mut active = 0;
    let mut last_day = i64::MIN;
    for &x in between(l, at.days_ago(30), t) {
        let d = x.div_euclid(DAY);
        if d != last_day {
            active += 1;
            last_day = d;
        }
    }
    [
        count(7),
        c30,
        count(90),
        at.since(l.last().copied()),
        (c30 + 1.0) / (prior + 1.0),
        active as f64,
    ]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::CustomerView;
    use crate::features::family::check::{fixed, signed_up, ts};

    #[test]
    fn every_login_feature_of_a_hand_built_customer() {
        let logins = [
            "2024-04-20T06:00:00Z",
            "2024-05-02 10:00:00",
            "2024-06-03 08:00:00",
            "2024-06-10 09:00:00",
            "2024-06-26 07:00:00",
            "2024-06-26 21:00:00",
            "2024-06-30 12:00:00",
            // At T: not before it, so not seen.
            "2024-07-01",
        ]
        .map(ts);
        let view = CustomerView {
            logins: &logins,
            ..signed_up("2024-04-01")
        };
        fixed(
            &FEATURES,
            compute,
            &view,
            "2024-07-01",
            &[
                ("logins_7d", 3.0),
                ("logins_30d", 5.0),
                ("logins_90d", 7.0),
                ("days_since_last_login", 0.5),
                // The two windows before, [04-02, 06-01): 04-20 and 05-02, mean 1.
                ("login_trend", 3.0),
                // 06-03, 06-10, 06-26 twice, 06-30.
                ("active_days_30d", 4.0),
            ],
        );
    }

    #[test]
    fn without_logins_recency_is_the_tenure_and_the_trend_is_flat() {
        let view = signed_up("2024-03-02");
        fixed(
            &FEATURES,
            compute,
            &view,
            "2024-04-01",
            &[
                ("logins_7d", 0.0),
                ("logins_30d", 0.0),
                ("logins_90d", 0.0),
                ("days_since_last_login", 30.0),
                ("login_trend", 1.0),
                ("active_days_30d", 0.0),
            ],
        );
    }
}
