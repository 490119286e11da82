//! What a feature means to an account manager: the [`Dimension`] it belongs to and the
//! [`Text`] template that turns its value into a plain-language reason. Each family's
//! file names its features' templates beside their definitions; `spec.rs` gives every
//! family its dimension. The reference a text quotes ("customers who stay: 2 days") is
//! learned at training time by [`learn_references`] and stored in the manifest.

use serde::{Deserialize, Serialize};

use super::attributes::{is_other, level_of, numeric_of};
use super::spec::{FeatureSpec, Transform};

/// The group of measures a feature belongs to: customer-success tools show health per
/// such group. Every feature belongs to exactly one.
#[derive(
    Debug,
    Clone,
    Copy,
    Default,
    PartialEq,
    Eq,
    Hash,
    PartialOrd,
    Ord,
    Serialize,
    Deserialize,
    utoipa::ToSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum Dimension {
    /// Product use: logins and usage events.
    Engagement,
    /// Support tickets: volume, open and urgent tickets, resolution, csat.
    Support,
    /// Billing and purchases: orders, revenue, intervals, refunds, the RFM scores.
    Billing,
    /// The relationship itself: tenure and the customer's attributes. The default only
    /// for a definition recorded before dimensions existed (a spec rebuilds its own).
    #[default]
    Relationship,
}

impl Dimension {
    /// Every dimension, in the order of the score file's columns and the reports.
    pub const ALL: [Dimension; 4] = [
        Dimension::Engagement,
        Dimension::Support,
        Dimension::Billing,
        Dimension::Relationship,
    ];

    /// The stable id used in column names (`health_billing`) and JSON.
    pub fn as_str(self) -> &'static str {
        match self {
            Dimension::Engagement => "engagement",
            Dimension::Support => "support",
            Dimension::Billing => "billing",
            Dimension::Relationship => "relationship",
        }
    }

    /// The name a report shows.
    pub fn label(self) -> &'static str {
        match self {
            Dimension::Engagement => "engagement",
            Dimension::Support => "support",
            Dimension::Billing => "billing and purchases",
            Dimension::Relationship => "relationship",
        }
    }

    /// Position in [`Dimension::ALL`].
    pub fn index(self) -> usize {
        self as usize
    }

    /// The dimension named `s` (its [`Dimension::as_str`]).
    pub fn parse(s: &str) -> Option<Dimension> {
        Dimension::ALL.into_iter().find(|d| d.as_str() == s)
    }
}

/// How a value is written in a reason's text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unit {
    /// `3 days`, `1 day`.
    Days,
    /// `30 hours`.
    Hours,
    /// A share 0..1 as `40%`.
    Percent,
    /// A ratio as `0.4x`.
    Times,
    /// Money, with two decimals when not whole.
    Money,
    /// A plain number.
    Number,
}

/// The template of one feature's reason text. Values are rounded for reading; the
/// reason's `value` keeps the exact number.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Text {
    /// `name is value`, for a feature without a template of its own.
    #[default]
    Generic,
    /// A count: `2 urgent tickets open` (`one` = "urgent ticket", `many` = "urgent tickets",
    /// `rest` = " open").
    Count {
        one: &'static str,
        many: &'static str,
        rest: &'static str,
    },
    /// `pattern` with `{v}` replaced by the value in `unit`; `missing` when undefined.
    Value {
        pattern: &'static str,
        unit: Unit,
        missing: &'static str,
    },
    /// Days since something: `pattern` with `{v}` as days (`no login for 88 days`);
    /// `recent` under a day; `never` when the value is the tenure (nothing since signup;
    /// `{v}` there is the tenure).
    Since {
        pattern: &'static str,
        recent: &'static str,
        never: &'static str,
    },
    /// The overdue ratio, told with the two facts it divides: `last order 43 days ago,
    /// usually every 30` (`missing` with fewer than two orders).
    Overdue { missing: &'static str },
    /// A one-hot level of a categorical attribute: `plan is basic`; the `other` column
    /// (every value outside the top levels) reads `plan is none of the usual values`.
    /// The attribute and level are the spec's, found from the feature's name.
    Level,
    /// A numeric attribute: `monthly_fee is 30`, `monthly_fee unknown`.
    Attribute,
}

/// A number as a person reads it: whole when within 0.05 of an integer, else one decimal.
fn num(x: f64) -> String {
    let r = x.round();
    if (x - r).abs() < 0.05 {
        format!("{}", r + 0.0)
    } else {
        format!("{:.1}", x)
    }
}

fn in_unit(x: f64, unit: Unit) -> String {
    match unit {
        Unit::Days => {
            let d = x.round() + 0.0;
            if d == 1.0 {
                "1 day".into()
            } else {
                format!("{d} days")
            }
        }
        Unit::Hours => format!("{} hours", num(x)),
        Unit::Percent => format!("{}%", (100.0 * x).round() + 0.0),
        Unit::Times => format!("{}x", num(x)),
        Unit::Money => {
            if (x - x.round()).abs() < 0.005 {
                format!("{}", x.round() + 0.0)
            } else {
                format!("{x:.2}")
            }
        }
        Unit::Number => num(x),
    }
}

/// The facts a template may need beyond its own value: the rest of the row, by name.
pub struct Row<'a> {
    pub spec: &'a FeatureSpec,
    pub values: &'a [f64],
}

impl Row<'_> {
    fn get(&self, name: &str) -> Option<f64> {
        self.spec
            .index_of(name)
            .map(|j| self.values[j])
            .filter(|v| v.is_finite())
    }
}

impl Text {
    /// The reason text of feature `name` with `value` (NaN when undefined), followed by
    /// ` (customers who stay: ...)` when `reference` is known.
    pub fn render(&self, name: &str, value: f64, reference: Option<f64>, row: &Row) -> String {
        let reference = reference.filter(|r| r.is_finite());
        let mut out = self.value_text(name, value, row);
        let quoted = reference.and_then(|r| self.reference_text(name, r, row));
        if let (Some(q), true) = (quoted, value.is_finite()) {
            out.push_str(" (customers who stay: ");
            out.push_str(&q);
            out.push(')');
        }
        out
    }

    fn value_text(&self, name: &str, v: f64, row: &Row) -> String {
        match self {
            Text::Generic if v.is_finite() => format!("{name} is {}", num(v)),
            Text::Generic => format!("{name} unknown"),
            Text::Count { one, many, rest } => {
                let n = num(v);
                format!("{n} {}{rest}", if n == "1" { one } else { many })
            }
            Text::Value { missing, .. } if !v.is_finite() => (*missing).into(),
            Text::Value { pattern, unit, .. } => pattern.replace("{v}", &in_unit(v, *unit)),
            Text::Since { never, .. }
                if row.get("tenure_days").is_some_and(|t| (t - v).abs() < 1e-9) =>
            {
                never.replace("{v}", &in_unit(v, Unit::Days))
            }
            Text::Since { recent, .. } if v < 1.0 => (*recent).into(),
            Text::Since { pattern, .. } => pattern.replace("{v}", &in_unit(v, Unit::Days)),
            Text::Overdue { missing } if !v.is_finite() => (*missing).into(),
            Text::Overdue { .. } => {
                match (row.get("order_recency_days"), row.get("interval_mean_days")) {
                    (Some(r), Some(i)) => format!(
                        "last order {} ago, usually every {}",
                        in_unit(r, Unit::Days),
                        in_unit(i, Unit::Days).trim_end_matches(" days")
                    ),
                    _ => format!("{} the usual interval since the last order", num(v)),
                }
            }
            Text::Level => {
                let (attribute, level) =
                    level_of(&row.spec.categorical, name).unwrap_or((name, "set"));
                match (is_other(level), v >= 0.5) {
                    (true, true) => format!("{attribute} is none of the usual values"),
                    (true, false) => format!("{attribute} is one of the usual values"),
                    (false, true) => format!("{attribute} is {level}"),
                    (false, false) => format!("{attribute} is not {level}"),
                }
            }
            Text::Attribute => {
                let attribute = numeric_of(&row.spec.numeric, name).unwrap_or(name);
                if v.is_finite() {
                    format!("{attribute} is {}", num(v))
                } else {
                    format!("{attribute} unknown")
                }
            }
        }
    }

    /// The reference in the value's unit; `None` where quoting one would mislead.
    fn reference_text(&self, name: &str, r: f64, row: &Row) -> Option<String> {
        Some(match self {
            Text::Generic | Text::Count { .. } | Text::Attribute => num(r),
            Text::Value { unit, .. } => in_unit(r, *unit),
            Text::Since { .. } => in_unit(r, Unit::Days),
            Text::Overdue { .. } => format!("{} the interval", in_unit(r, Unit::Times)),
            Text::Level => {
                let pct = in_unit(r, Unit::Percent);
                match level_of(&row.spec.categorical, name) {
                    Some((_, level)) if is_other(level) => format!("{pct} other values"),
                    Some((_, level)) => format!("{pct} {level}"),
                    None => pct,
                }
            }
        })
    }
}

/// The reference each feature's text quotes, learned on the training rows of customers
/// who stayed (label 0): the median for a count, days, money or rate; the share for a
/// 0/1 indicator. Undefined values are left out; `None` when no stayer has a value.
/// `x` is row-major with [`FeatureSpec::len`] columns, `churned` one label per row.
pub fn learn_references(spec: &FeatureSpec, x: &[f64], churned: &[bool]) -> Vec<Option<f64>> {
    let w = spec.len();
    let stayers: Vec<usize> = (0..churned.len()).filter(|&i| !churned[i]).collect();
    spec.defs()
        .iter()
        .enumerate()
        .map(|(j, d)| {
            let mut v: Vec<f64> = stayers
                .iter()
                .map(|&i| x[i * w + j])
                .filter(|v| v.is_finite())
                .collect();
            if v.is_empty() {
                return None;
            }
            if d.transform == Transform::Binary {
                return Some(v.iter().sum::<f64>() / v.len() as f64);
            }
            let mid = v.len() / 2;
            let (_, m, _) = v.select_nth_unstable_by(mid, f64::total_cmp);
            let m = *m;
            if v.len() % 2 == 1 {
                Some(m)
            } else {
                let below = v[..mid].iter().copied().fold(f64::NEG_INFINITY, f64::max);
                Some((below + m) / 2.0)
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::Present;

    fn spec() -> FeatureSpec {
        let present = Present {
            logins: true,
            tickets: true,
            orders: true,
            events: false,
            churn: true,
        };
        FeatureSpec::new(
            present,
            Vec::new(),
            vec![("plan".into(), vec!["basic".into(), "pro".into()])],
            vec!["monthly_fee".into()],
            None,
        )
    }

    /// A hand-built customer: the row by name, everything else 0.
    fn row(spec: &FeatureSpec, values: &[(&str, f64)]) -> Vec<f64> {
        let mut r = vec![0.0; spec.len()];
        for (name, v) in values {
            r[spec.index_of(name).expect("a feature of the spec")] = *v;
        }
        r
    }

    fn text(spec: &FeatureSpec, r: &[f64], name: &str, reference: Option<f64>) -> String {
        let j = spec.index_of(name).unwrap();
        let row = Row { spec, values: r };
        spec.defs()[j].text.render(name, r[j], reference, &row)
    }

    #[test]
    fn texts_of_a_hand_built_customer_are_exactly_as_written() {
        let s = spec();
        let r = row(
            &s,
            &[
                ("tenure_days", 400.0),
                ("days_since_last_login", 88.2),
                ("logins_30d", 1.0),
                ("tickets_open_urgent", 2.0),
                ("order_recency_days", 43.0),
                ("interval_mean_days", 30.0),
                ("overdue_ratio", 43.0 / 30.0),
                ("urgent_share_90d", 0.4),
                ("resolution_hours_90d", 30.5),
                ("csat_mean_90d", f64::NAN),
                ("revenue_90d", 120.5),
                ("login_trend", 0.25),
                ("plan_basic", 1.0),
                ("plan_other", 0.0),
                ("monthly_fee", f64::NAN),
            ],
        );
        let cases = [
            (
                "days_since_last_login",
                Some(2.0),
                "no login for 88 days (customers who stay: 2 days)",
            ),
            (
                "logins_30d",
                Some(12.0),
                "1 login in the last 30 days (customers who stay: 12)",
            ),
            ("tickets_open_urgent", None, "2 urgent tickets open"),
            (
                "overdue_ratio",
                Some(0.9),
                "last order 43 days ago, usually every 30 (customers who stay: 0.9x the interval)",
            ),
            (
                "urgent_share_90d",
                Some(0.0),
                "40% of tickets in the last 90 days high or urgent (customers who stay: 0%)",
            ),
            (
                "resolution_hours_90d",
                Some(6.0),
                "tickets took 30.5 hours to resolve (customers who stay: 6 hours)",
            ),
            (
                "csat_mean_90d",
                Some(4.5),
                "no rated ticket in the last 90 days",
            ),
            (
                "revenue_90d",
                Some(300.0),
                "revenue of 120.50 in the last 90 days (customers who stay: 300)",
            ),
            (
                "login_trend",
                Some(1.0),
                "logins at 0.2x their earlier rate (customers who stay: 1x)",
            ),
            (
                "plan_basic",
                Some(0.25),
                "plan is basic (customers who stay: 25% basic)",
            ),
            (
                "plan_other",
                Some(0.1),
                "plan is one of the usual values (customers who stay: 10% other values)",
            ),
            ("monthly_fee", Some(30.0), "monthly_fee unknown"),
            (
                "tenure_days",
                Some(700.0),
                "customer for 400 days (customers who stay: 700 days)",
            ),
        ];
        for (name, reference, want) in cases {
            assert_eq!(text(&s, &r, name, reference), want, "{name}");
        }
    }

    #[test]
    fn a_customer_without_orders_or_logins_reads_as_such() {
        let s = spec();
        let r = row(
            &s,
            &[
                ("tenure_days", 40.0),
                ("days_since_last_login", 40.0),
                ("order_recency_days", 40.0),
                ("interval_mean_days", f64::NAN),
                ("overdue_ratio", f64::NAN),
                ("logins_7d", 0.0),
            ],
        );
        assert_eq!(
            text(&s, &r, "order_recency_days", Some(20.0)),
            "no orders yet (customers who stay: 20 days)"
        );
        assert_eq!(
            text(&s, &r, "days_since_last_login", None),
            "no login since signing up 40 days ago"
        );
        assert_eq!(
            text(&s, &r, "overdue_ratio", Some(1.0)),
            "fewer than two orders, so no usual interval yet"
        );
        assert_eq!(
            text(&s, &r, "interval_mean_days", Some(30.0)),
            "fewer than two orders, so no usual interval yet"
        );
        assert_eq!(
            text(&s, &r, "logins_7d", Some(3.0)),
            "0 logins in the last 7 days (customers who stay: 3)"
        );
    }

    #[test]
    fn without_a_reference_the_text_has_no_reference_part() {
        let s = spec();
        let r = row(
            &s,
            &[("tenure_days", 100.0), ("days_since_last_login", 0.5)],
        );
        assert_eq!(
            text(&s, &r, "days_since_last_login", None),
            "a login within the last day"
        );
        assert_eq!(
            text(&s, &r, "tickets_30d", None),
            "0 tickets in the last 30 days"
        );
    }

    #[test]
    fn every_feature_of_every_family_has_a_template_and_a_dimension() {
        let s = FeatureSpec::new(
            Present {
                logins: true,
                tickets: true,
                orders: true,
                events: true,
                churn: true,
            },
            vec!["search".into()],
            vec![("plan".into(), vec!["pro".into()])],
            vec!["fee".into()],
            Some(crate::features::RfmCuts {
                recency: [1.0, 2.0, 3.0, 4.0],
                frequency: [1.0, 2.0, 3.0, 4.0],
                monetary: [1.0, 2.0, 3.0, 4.0],
            }),
        );
        for d in s.defs() {
            assert_ne!(d.text, Text::Generic, "{} has a template", d.name);
            let want = match d.table.as_str() {
                "logins" | "events" => Dimension::Engagement,
                "tickets" => Dimension::Support,
                "orders" => Dimension::Billing,
                _ => Dimension::Relationship,
            };
            assert_eq!(d.dimension, want, "{}", d.name);
        }
    }

    #[test]
    fn references_are_the_stayers_median_or_share() {
        let s = spec();
        let w = s.len();
        let fee = s.index_of("monthly_fee").unwrap();
        let basic = s.index_of("plan_basic").unwrap();
        let mut x = vec![0.0; 5 * w];
        for (i, (f, b)) in [
            (10.0, 1.0),
            (20.0, 0.0),
            (f64::NAN, 1.0),
            (40.0, 0.0),
            (1e6, 1.0),
        ]
        .into_iter()
        .enumerate()
        {
            x[i * w + fee] = f;
            x[i * w + basic] = b;
        }
        // The last row churned: it counts for nothing.
        let refs = learn_references(&s, &x, &[false, false, false, false, true]);
        assert_eq!(refs[fee], Some(20.0), "median of 10, 20, 40");
        assert_eq!(refs[basic], Some(0.5), "two of four stayers are basic");
        let refs = learn_references(&s, &x, &[false, false, true, false, true]);
        assert_eq!(refs[fee], Some(20.0), "median of 10, 20, 40");
        let refs = learn_references(&s, &x[..2 * w], &[false, false]);
        assert_eq!(refs[fee], Some(15.0), "median of 10 and 20");
        assert_eq!(learn_references(&s, &x[..w], &[true])[fee], None);
    }
}
