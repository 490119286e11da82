//! KPIs on hand-built customer bases with values worked out by hand, and the default
//! early-warning rules on feature rows computed from such a base.

use super::*;
use crate::data::{CustomerBase, Customers, Grouped, Order, Priority, Ticket};
use crate::features::Bound;
use crate::scores::ScoreRecord;
use crate::scoring::rules::tests::{fired, full_spec};
use crate::scoring::{default_rules, ModelRef, Reason, Tier};
use crate::time::{parse_ts, Ts, DAY};
use std::collections::HashMap;

fn d(s: &str) -> Ts {
    parse_ts(s).unwrap()
}

/// The KPIs with a score file and the RFM definition of the model that wrote it.
fn kpis_scored(
    base: &CustomerBase,
    as_of: Ts,
    scores: &HashMap<String, ScoreRecord>,
) -> crate::Result<RetentionKpis> {
    let opts = RetentionOptions {
        model_rfm: Some(ModelRfm {
            model: "churn 1".into(),
            cuts: Some(crate::features::RfmCuts {
                recency: [10.0, 20.0, 30.0, 40.0],
                frequency: [1.0, 2.0, 3.0, 4.0],
                monetary: [10.0, 50.0, 100.0, 200.0],
            }),
        }),
        ..RetentionOptions::default()
    };
    kpis_with(base, as_of, Some(scores), &opts)
}

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() < 1e-9
}

/// A customer base written row by row; only the tables switched on exist.
#[derive(Clone, Default)]
struct Builder {
    ids: Vec<String>,
    signup: Vec<Ts>,
    logins: Option<Vec<(u32, Ts)>>,
    orders: Option<Vec<(u32, Order)>>,
    tickets: Option<Vec<(u32, Ticket)>>,
    churn: Option<Vec<(u32, Ts)>>,
}

impl Builder {
    fn new(logins: bool, tickets: bool, orders: bool, churn: bool) -> Self {
        Builder {
            logins: logins.then(Vec::new),
            tickets: tickets.then(Vec::new),
            orders: orders.then(Vec::new),
            churn: churn.then(Vec::new),
            ..Default::default()
        }
    }
    fn customer(&mut self, id: &str, signup: Ts) -> u32 {
        self.ids.push(id.into());
        self.signup.push(signup);
        (self.ids.len() - 1) as u32
    }
    fn order(&mut self, c: u32, at: Ts, amount: f64) -> &mut Self {
        self.orders
            .as_mut()
            .unwrap()
            .push((c, Order { at, amount }));
        self
    }
    fn churn(&mut self, c: u32, at: Ts) -> &mut Self {
        self.churn.as_mut().unwrap().push((c, at));
        self
    }
    fn login(&mut self, c: u32, at: Ts) -> &mut Self {
        self.logins.as_mut().unwrap().push((c, at));
        self
    }
    fn ticket(&mut self, c: u32, opened: Ts, closed: Option<Ts>, priority: Priority) -> &mut Self {
        self.tickets.as_mut().unwrap().push((
            c,
            Ticket {
                opened,
                closed,
                priority,
                csat: f64::NAN,
            },
        ));
        self
    }
    fn build(&self) -> CustomerBase {
        let n = self.ids.len();
        fn group<T: crate::data::Timed + Copy + Send + Sync>(
            n: usize,
            rows: &Option<Vec<(u32, T)>>,
        ) -> Option<Grouped<T>> {
            rows.as_ref().map(|r| {
                let (c, v): (Vec<u32>, Vec<T>) = r.iter().copied().unzip();
                Grouped::build(n, &c, v)
            })
        }
        let mut times: Vec<Ts> = self.signup.clone();
        for r in [&self.logins, &self.churn].into_iter().flatten() {
            times.extend(r.iter().map(|x| x.1));
        }
        times.extend(self.orders.iter().flatten().map(|x| x.1.at));
        times.extend(self.tickets.iter().flatten().map(|x| x.1.opened));
        let mut base = CustomerBase {
            customers: Customers {
                ids: self.ids.clone(),
                signup: self.signup.clone(),
                attributes: Vec::new(),
                index: self
                    .ids
                    .iter()
                    .enumerate()
                    .map(|(i, id)| (id.clone(), i as u32))
                    .collect(),
            },
            logins: group(n, &self.logins),
            tickets: group(n, &self.tickets),
            orders: group(n, &self.orders),
            events: None,
            event_types: Vec::new(),
            churn: group(n, &self.churn),
            summary: Default::default(),
        };
        base.summary.directory = "hand-built".into();
        base.summary.customers = n;
        base.summary.time_range = times.iter().min().copied().zip(times.iter().max().copied());
        base
    }
}

/// Six customers of a subscription business with a `churn` table and orders; `f` signs up
/// after the as-of date (2024-04-01) and must not count anywhere.
fn subscription() -> Builder {
    let mut b = Builder::new(false, false, true, true);
    let a = b.customer("a", d("2024-01-05"));
    b.order(a, d("2024-01-10"), 100.0)
        .order(a, d("2024-02-10"), 50.0)
        .churn(a, d("2024-02-20"));
    let bb = b.customer("b", d("2024-01-20"));
    b.order(bb, d("2024-01-25"), 80.0);
    let c = b.customer("c", d("2024-02-03"));
    b.order(c, d("2024-02-05"), 30.0)
        .order(c, d("2024-03-05"), 30.0)
        .order(c, d("2024-03-20"), -10.0)
        .churn(c, d("2024-03-25"));
    b.customer("d", d("2024-02-15"));
    let e = b.customer("e", d("2024-03-10"));
    b.order(e, d("2024-03-12"), 200.0);
    let f = b.customer("f", d("2024-04-15"));
    b.order(f, d("2024-04-16"), 999.0).churn(f, d("2024-05-01"));
    b
}

fn record(id: &str, p: f64, tier: Tier, segment: &str) -> (String, ScoreRecord) {
    (
        id.to_string(),
        ScoreRecord {
            customer_id: id.into(),
            as_of: "2024-04-01T00:00:00Z".into(),
            churn_probability: p,
            health_score: 50.0,
            risk_tier: tier,
            reasons: vec![Reason {
                feature: "order_recency_days".into(),
                value: Some(10.0),
                contribution: 0.3,
                text: "last order 10 days ago".into(),
            }],
            rfm_segment: Some(segment.into()),
            early_warnings: Vec::new(),
            model: ModelRef {
                name: "churn".into(),
                version: "v1".into(),
            },
            probability_30d_ago: None,
            change_30d: None,
            trend: crate::scoring::Trend::Unknown,
            dimensions: (id == "c").then(|| {
                crate::scoring::DimensionScores::from_array([-0.5, -0.1, 0.0, -0.2].map(
                    |contribution| crate::scoring::DimensionScore {
                        contribution,
                        health: 60.0,
                    },
                ))
            }),
            // `zz` is driven by support, the others by billing (`c` by none).
            primary_driver: match id {
                "zz" => Some(crate::features::Dimension::Support),
                "c" => None,
                _ => Some(crate::features::Dimension::Billing),
            },
        },
    )
}

fn scores() -> HashMap<String, ScoreRecord> {
    [
        record("b", 0.5, Tier::High, "at risk"),
        record("c", 0.2, Tier::Medium, "loyal"),
        record("e", 0.1, Tier::Low, "new"),
        record("zz", 0.9, Tier::High, "lost"),
    ]
    .into_iter()
    .collect()
}

#[test]
fn the_monthly_churn_rate_counts_churn_rows_among_customers_active_on_the_first() {
    let k = kpis(&subscription().build(), d("2024-04-01"), None).unwrap();
    let got: Vec<(&str, usize, usize, usize)> = k
        .monthly
        .iter()
        .map(|m| {
            (
                m.month.as_str(),
                m.active_at_start,
                m.churned,
                m.new_customers,
            )
        })
        .collect();
    // January starts with nobody active; February: a and b, a churns; March: b, c, d, c churns.
    assert_eq!(got, [("2024-02", 2, 1, 2), ("2024-03", 3, 1, 1)]);
    assert_eq!(k.monthly[0].churn_rate, Some(0.5));
    assert!(close(k.monthly[1].churn_rate.unwrap(), 1.0 / 3.0));
    assert!(close(k.monthly[1].retention_rate.unwrap(), 2.0 / 3.0));
    assert_eq!(k.churn_rate_last_12_months, Some(0.4));
    assert_eq!(k.customers, 5);
    assert_eq!(k.active_now, 3); // b, d, e
}

#[test]
fn cohort_retention_is_the_share_active_at_each_month_end_after_signup() {
    let k = kpis(&subscription().build(), d("2024-04-01"), None).unwrap();
    let got: Vec<(&str, usize, &[usize], &[f64])> = k
        .cohorts
        .iter()
        .map(|c| {
            (
                c.cohort.as_str(),
                c.customers,
                c.active.as_slice(),
                c.retention.as_slice(),
            )
        })
        .collect();
    assert_eq!(
        got,
        [
            ("2024-01", 2, &[2, 1, 1][..], &[1.0, 0.5, 0.5][..]),
            ("2024-02", 2, &[2, 1][..], &[1.0, 0.5][..]),
            ("2024-03", 1, &[1][..], &[1.0][..]),
        ]
    );
}

#[test]
fn revenue_and_lifetime_value_per_cohort_follow_the_documented_formula() {
    let k = kpis(&subscription().build(), d("2024-04-01"), None).unwrap();
    let jan = &k.cohorts[0];
    assert_eq!(jan.revenue_to_date, Some(230.0));
    assert_eq!(jan.revenue_per_customer, Some(115.0));
    assert_eq!(jan.active_customer_months, 4);
    assert_eq!(jan.monthly_revenue_per_active_customer, Some(57.5));
    assert!(close(jan.clv.unwrap(), 57.5 / 0.4));
    let feb = &k.cohorts[1];
    assert_eq!(feb.revenue_to_date, Some(50.0)); // the refund subtracts
    assert!(close(
        feb.monthly_revenue_per_active_customer.unwrap(),
        50.0 / 3.0
    ));
    assert!(close(feb.clv.unwrap(), 50.0 / 3.0 / 0.4));
    assert_eq!(k.cohorts[2].clv, Some(500.0));
}

#[test]
fn the_repeat_purchase_rate_is_buyers_with_two_purchases_over_buyers() {
    let k = kpis(&subscription().build(), d("2024-04-01"), None).unwrap();
    let rp = k.repeat_purchase.unwrap();
    // Buyers a, b, c, e; a and c bought twice (c's refund is not a purchase).
    assert_eq!((rp.buyers, rp.repeat_buyers, rp.rate), (4, 2, Some(0.5)));
    let per_cohort: Vec<Option<f64>> = k.cohorts.iter().map(|c| c.repeat_purchase_rate).collect();
    assert_eq!(per_cohort, [Some(0.5), Some(1.0), Some(0.0)]);
}

#[test]
fn revenue_at_risk_is_probability_times_the_revenue_of_the_last_365_days() {
    let s = scores();
    let k = kpis_scored(&subscription().build(), d("2024-04-01"), &s).unwrap();
    let r = k.revenue_at_risk.clone().unwrap();
    assert_eq!(r.customers_scored, 3);
    assert_eq!(r.customers_not_in_base, 1);
    assert!(close(
        r.revenue_at_risk,
        0.5 * 80.0 + 0.2 * 50.0 + 0.1 * 200.0
    ));
    assert!(close(r.trailing_revenue, 330.0));
    assert!(close(r.expected_churners, 0.8));
    let tiers: Vec<(&str, f64)> = r
        .by_tier
        .iter()
        .map(|g| (g.group.as_str(), g.revenue_at_risk))
        .collect();
    assert_eq!(tiers, [("high", 40.0), ("medium", 10.0), ("low", 20.0)]);
    let segments: Vec<&str> = r.by_segment.iter().map(|g| g.group.as_str()).collect();
    assert_eq!(segments, ["at risk", "new", "loyal"]);
    let top: Vec<(&str, f64)> = r
        .top
        .iter()
        .map(|c| (c.customer_id.as_str(), c.revenue_at_risk))
        .collect();
    assert_eq!(top, [("b", 40.0), ("e", 20.0), ("c", 10.0)]);
    assert_eq!(r.top[0].top_reason.as_deref(), Some("order_recency_days"));
    assert_eq!(
        r.top[0].top_reason_text.as_deref(),
        Some("last order 10 days ago")
    );
    let drivers: Vec<(&str, usize, usize, f64)> = r
        .by_primary_driver
        .iter()
        .map(|g| {
            (
                g.risk.group.as_str(),
                g.risk.customers,
                g.at_risk_customers,
                g.risk.revenue_at_risk,
            )
        })
        .collect();
    assert_eq!(
        drivers,
        [
            ("engagement", 0, 0, 0.0),
            ("support", 0, 0, 0.0),
            ("billing", 2, 1, 60.0),
            ("relationship", 0, 0, 0.0),
            ("none", 1, 1, 10.0),
        ]
    );
    let html = crate::retention::report(&k);
    assert!(html.contains("Revenue at risk by primary driver"));
    assert!(html.contains("billing and purchases"));
}

#[test]
fn the_default_as_of_is_the_score_date_else_midnight_after_the_last_row() {
    let base = subscription().build();
    // The last row is f's churn on 2024-05-01 (midnight): the day after.
    assert_eq!(default_as_of(&base, None), Some(d("2024-05-02")));
    assert_eq!(default_as_of(&base, Some(&scores())), Some(d("2024-04-01")));
}

#[test]
fn a_score_file_without_its_models_rfm_definition_is_refused() {
    let err = kpis(&subscription().build(), d("2024-04-01"), Some(&scores())).unwrap_err();
    assert!(
        err.to_string().contains("RFM definition of the model"),
        "{err}"
    );
    let k = kpis_scored(&subscription().build(), d("2024-04-01"), &scores()).unwrap();
    assert!(
        k.rfm_definition.contains("the model's (churn 1)"),
        "{}",
        k.rfm_definition
    );
    assert!(
        report(&k).contains("the model&#39;s (churn 1)")
            || report(&k).contains("the model's (churn 1)")
    );
}

#[test]
fn a_score_file_from_after_the_as_of_date_is_refused() {
    let s = scores();
    let err = kpis_scored(&subscription().build(), d("2024-03-15"), &s).unwrap_err();
    assert!(err.to_string().contains("future"), "{err}");
}

#[test]
fn rows_at_or_after_the_as_of_date_change_nothing() {
    let s = scores();
    let as_of = d("2024-04-01");
    let before = kpis_scored(&subscription().build(), as_of, &s).unwrap();
    let mut b = subscription();
    let (bb, dd, e) = (1, 3, 4);
    b.churn(bb, as_of)
        .churn(dd, d("2024-04-20"))
        .order(bb, as_of, 1_000.0)
        .order(e, d("2024-06-01"), 5.0)
        .churn(e, d("2024-06-02"));
    let after = kpis_scored(&b.build(), as_of, &s).unwrap();
    assert_eq!(
        serde_json::to_value(&before).unwrap(),
        serde_json::to_value(&after).unwrap()
    );
}

#[test]
fn without_a_churn_table_a_customer_churns_in_the_month_their_activity_lapses() {
    let mut b = Builder::new(false, false, true, false);
    let g = b.customer("g", d("2024-01-01"));
    for m in ["01", "02", "03", "04"] {
        b.order(g, d(&format!("2024-{m}-10")), 10.0);
    }
    let h = b.customer("h", d("2024-01-01"));
    b.order(h, d("2024-01-15"), 10.0);
    let k = kpis(&b.build(), d("2024-05-01"), None).unwrap();
    assert!(matches!(
        k.churn_definition,
        crate::churn::ChurnDefinition::Inactivity { .. }
    ));
    let got: Vec<(&str, usize, usize)> = k
        .monthly
        .iter()
        .map(|m| (m.month.as_str(), m.active_at_start, m.churned))
        .collect();
    // h's only order (01-15) leaves the 90-day window during April.
    assert_eq!(
        got,
        [("2024-02", 2, 0), ("2024-03", 2, 0), ("2024-04", 2, 1)]
    );
    assert!(close(k.churn_rate_last_12_months.unwrap(), 1.0 / 6.0));
    assert_eq!(k.cohorts[0].retention, [1.0, 1.0, 1.0, 0.5]);
    assert!(k.churn_definition_text.contains("inactivity"));
}

#[test]
fn the_report_has_every_section_a_reading_per_chart_and_no_script() {
    let s = scores();
    let k = kpis_scored(&subscription().build(), d("2024-04-01"), &s).unwrap();
    let html = report(&k);
    for h in [
        "Monthly churn and retention",
        "Signup cohorts",
        "Repeat purchases, revenue and lifetime value",
        "RFM segments",
        "Early-warning rules",
        "Revenue at risk",
        "Definitions and method",
    ] {
        assert!(html.contains(&format!(">{h}</h2>")), "missing {h}");
    }
    assert!(html.contains("explicit churn"));
    assert!(!html.to_ascii_lowercase().contains("<script"));
    let charts = html.matches("<figure").count();
    assert!(charts >= 8, "{charts} charts");
    assert_eq!(
        html.matches("<figcaption class=\"reading\">").count(),
        charts
    );
}

#[test]
fn default_rules_fire_exactly_for_the_customers_whose_rows_say_so() {
    let t = d("2024-06-01");
    let mut b = Builder::new(true, true, true, true);
    let old = t - 200 * DAY;
    let add = |b: &mut Builder, id: &str, recent_login: bool| {
        let c = b.customer(id, old);
        if recent_login {
            b.login(c, t - DAY);
        }
        c
    };
    let p = add(&mut b, "p_login_8d_ago", false);
    b.login(p, t - 8 * DAY);
    let q = add(&mut b, "q_login_7d_ago", false);
    b.login(q, t - 7 * DAY);
    b.customer("r_new_no_login", t - 3 * DAY);
    let s = add(&mut b, "s_on_time", true);
    for days in [100, 70, 40] {
        b.order(s, t - days * DAY, 10.0); // mean interval 30, 40 days since: 1.33x
    }
    let u = add(&mut b, "u_overdue", true);
    for days in [100, 80, 60] {
        b.order(u, t - days * DAY, 10.0); // mean interval 20, 60 days since: 3x
    }
    let one = add(&mut b, "one_order", true);
    b.order(one, t - 300 * DAY, 10.0);
    let v = add(&mut b, "v_two_urgent_open", true);
    b.ticket(v, t - 5 * DAY, None, Priority::Urgent).ticket(
        v,
        t - 4 * DAY,
        Some(t + DAY),
        Priority::High,
    ); // closed after T: open at T
    let w = add(&mut b, "w_one_urgent_open", true);
    b.ticket(w, t - 5 * DAY, None, Priority::Urgent).ticket(
        w,
        t - 4 * DAY,
        Some(t - DAY),
        Priority::Urgent,
    );
    let x = add(&mut b, "x_three_normal_open", true);
    for k in 1..=3 {
        b.ticket(x, t - k * DAY, None, Priority::Normal);
    }
    // Rows after T change nothing.
    b.login(p, t + DAY).order(u, t, 10.0);
    let base = b.build();
    let spec = full_spec();
    let rows: Vec<(u32, Ts)> = (0..base.customers.len() as u32).map(|c| (c, t)).collect();
    let x = Bound::new(&spec, &base).matrix(&rows);
    let w = spec.len();
    let rules = default_rules();
    let got: Vec<(&str, Vec<String>)> = (0..rows.len())
        .map(|i| {
            (
                base.customers.ids[i].as_str(),
                fired(&rules, &spec, &x[i * w..(i + 1) * w]),
            )
        })
        .collect();
    let want = |rule: &str| vec![rule.to_string()];
    assert_eq!(
        got,
        [
            ("p_login_8d_ago", want("no_login_7d")),
            ("q_login_7d_ago", vec![]),
            ("r_new_no_login", vec![]),
            ("s_on_time", vec![]),
            ("u_overdue", want("order_overdue_1_5x")),
            ("one_order", vec![]),
            ("v_two_urgent_open", want("urgent_tickets_open_2")),
            ("w_one_urgent_open", vec![]),
            ("x_three_normal_open", vec![]),
        ]
    );
}

#[test]
fn a_base_without_orders_reports_churn_and_cohorts_but_no_revenue() {
    let mut b = Builder::new(true, false, false, true);
    let a = b.customer("a", d("2024-01-05"));
    b.login(a, d("2024-01-06")).churn(a, d("2024-02-20"));
    let c = b.customer("c", d("2024-01-10"));
    b.login(c, d("2024-03-01"));
    let s = scores();
    let k = kpis(&b.build(), d("2024-04-01"), Some(&s)).unwrap();
    let got: Vec<(&str, usize, usize)> = k
        .monthly
        .iter()
        .map(|m| (m.month.as_str(), m.active_at_start, m.churned))
        .collect();
    assert_eq!(got, [("2024-02", 2, 1), ("2024-03", 1, 0)]);
    assert_eq!(k.cohorts[0].retention, [1.0, 0.5, 0.5]);
    assert_eq!(k.cohorts[0].revenue_to_date, None);
    assert!(k.repeat_purchase.is_none() && k.rfm_segments.is_empty());
    let r = k.revenue_at_risk.as_ref().unwrap();
    assert!(!r.revenue_available && r.revenue_at_risk == 0.0);
    assert!(k.notes.iter().any(|n| n.contains("no `orders` table")));
    let html = report(&k);
    assert!(!html.contains(">RFM segments</h2>"));
}
