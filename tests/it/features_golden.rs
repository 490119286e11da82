//! Every feature and label of a hand-built customer base at two snapshots, exactly.

use crate::common::{load_dir, write_tables};
use churnguard::churn::{population, ChurnDefinition};
use churnguard::features::{Bound, FeatureSpec};
use churnguard::labels::label;
use churnguard::time::parse_ts;

pub const CUSTOMERS: &str = "customer_id,signup_at,plan,monthly_fee
a,2024-01-01,pro,99
b,2024-02-15 10:00:00,basic,29
c,2024-03-01T00:00:00Z,pro,
";
pub const LOGINS: &str = "customer_id,at
a,2024-03-25 08:00:00
a,2024-03-28 09:00:00
a,2024-03-28 18:00:00
a,2024-03-31 23:59:59
a,2024-04-01
a,2024-02-20 10:00:00
a,2024-01-15T10:00:00Z
c,2024-04-15
";
pub const TICKETS: &str = "customer_id,opened_at,closed_at,priority,csat
a,2024-03-10 08:00:00,2024-03-11 08:00:00,high,4
a,2024-03-30,2024-04-02,urgent,1
b,2024-03-20 12:00:00,,low,
";
pub const ORDERS: &str = "customer_id,at,amount
a,2024-01-01,99
a,2024-02-01,99
a,2024-03-01,99
a,2024-03-15,-20
a,2024-04-01,99
b,2024-02-16,29
";
pub const EVENTS: &str = "customer_id,at,event_type,value
a,2024-03-20,search,
a,2024-03-21,search,
a,2024-03-05,post,3
a,2024-02-20,search,
a,2024-04-01,post,
";
pub const CHURN: &str = "customer_id,churned_at
b,2024-04-20
c,2024-05-10
";

/// Every table of the hand-built base.
const ALL_TABLES: [(&str, &str); 6] = [
    ("customers.csv", CUSTOMERS),
    ("logins.csv", LOGINS),
    ("tickets.csv", TICKETS),
    ("orders.csv", ORDERS),
    ("events.csv", EVENTS),
    ("churn.csv", CHURN),
];

fn spec(base: &churnguard::data::CustomerBase) -> FeatureSpec {
    FeatureSpec::new(
        base.present(),
        vec!["search".into(), "post".into()],
        vec![("plan".into(), vec!["pro".into(), "basic".into()])],
        vec!["monthly_fee".into()],
        None,
    )
}

fn features(t: &str, customer: &str) -> Vec<(String, f64)> {
    let dir = write_tables("golden", &ALL_TABLES);
    let base = load_dir(&dir);
    let spec = spec(&base);
    let c = base.customers.index[customer] as usize;
    let mut out = vec![0.0; spec.len()];
    Bound::new(&spec, &base).compute(c, parse_ts(t).unwrap(), &mut out);
    spec.names()
        .into_iter()
        .map(String::from)
        .zip(out)
        .collect()
}

fn check(t: &str, customer: &str, expected: &[(&str, f64)]) {
    let got = features(t, customer);
    assert_eq!(
        got.len(),
        expected.len(),
        "schema: {:?}",
        got.iter().map(|g| &g.0).collect::<Vec<_>>()
    );
    for ((name, value), (ename, evalue)) in got.iter().zip(expected) {
        assert_eq!(name, ename);
        let ok = (value.is_nan() && evalue.is_nan()) || (value - evalue).abs() < 1e-9;
        assert!(ok, "{customer} at {t}: {name} = {value}, expected {evalue}");
    }
}

const NAN: f64 = f64::NAN;

#[test]
fn every_feature_of_customer_a_at_the_first_snapshot() {
    let intervals_std = (((31.0f64 - 74.0 / 3.0).powi(2)
        + (29.0f64 - 74.0 / 3.0).powi(2)
        + (14.0f64 - 74.0 / 3.0).powi(2))
        / 3.0)
        .sqrt();
    check(
        "2024-04-01",
        "a",
        &[
            ("tenure_days", 91.0),
            ("plan_pro", 1.0),
            ("plan_basic", 0.0),
            ("plan_other", 0.0),
            ("monthly_fee", 99.0),
            ("logins_7d", 4.0),
            ("logins_30d", 4.0),
            ("logins_90d", 6.0),
            ("days_since_last_login", 1.0 / 86_400.0),
            ("login_trend", 2.5),
            ("active_days_30d", 3.0),
            ("tickets_30d", 2.0),
            ("tickets_90d", 2.0),
            // Closed on 04-02, after T: open at T, its resolution and csat unknown.
            ("tickets_open", 1.0),
            ("tickets_open_urgent", 1.0),
            ("resolution_hours_90d", 24.0),
            ("urgent_share_90d", 1.0),
            ("csat_mean_90d", 4.0),
            ("days_since_last_ticket", 2.0),
            ("order_recency_days", 17.0),
            // The 01-01 order is outside [T-90d, T) = [01-02, 04-01).
            ("orders_90d", 3.0),
            ("orders_365d", 4.0),
            ("revenue_90d", 178.0),
            ("revenue_365d", 277.0),
            ("interval_mean_days", 74.0 / 3.0),
            ("interval_std_days", intervals_std),
            ("overdue_ratio", 17.0 / (74.0 / 3.0)),
            ("refunds_365d", 1.0),
            ("events_30d", 3.0),
            ("events_search_30d", 2.0),
            ("events_search_change", 1.5),
            ("events_post_30d", 1.0),
            ("events_post_change", 2.0),
        ],
    );
}

#[test]
fn every_feature_of_customer_a_at_the_second_snapshot() {
    // Intervals now include 03-15 -> 04-01 (17 days).
    let iv = [31.0f64, 29.0, 14.0, 17.0];
    let mean = iv.iter().sum::<f64>() / 4.0;
    let std = (iv.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / 4.0).sqrt();
    check(
        "2024-05-01",
        "a",
        &[
            ("tenure_days", 121.0),
            ("plan_pro", 1.0),
            ("plan_basic", 0.0),
            ("plan_other", 0.0),
            ("monthly_fee", 99.0),
            ("logins_7d", 0.0),
            ("logins_30d", 1.0),
            ("logins_90d", 6.0),
            ("days_since_last_login", 30.0),
            // Prior windows [02-01, 04-01): 02-20 and the four of late March = 5, mean 2.5.
            ("login_trend", 2.0 / 3.5),
            ("active_days_30d", 1.0),
            ("tickets_30d", 0.0),
            ("tickets_90d", 2.0),
            ("tickets_open", 0.0),
            ("tickets_open_urgent", 0.0),
            ("resolution_hours_90d", 48.0),
            ("urgent_share_90d", 1.0),
            ("csat_mean_90d", 2.5),
            ("days_since_last_ticket", 32.0),
            ("order_recency_days", 30.0),
            ("orders_90d", 4.0),
            ("orders_365d", 5.0),
            ("revenue_90d", 277.0),
            ("revenue_365d", 376.0),
            ("interval_mean_days", mean),
            ("interval_std_days", std),
            ("overdue_ratio", 30.0 / mean),
            ("refunds_365d", 1.0),
            ("events_30d", 1.0),
            ("events_search_30d", 0.0),
            ("events_search_change", 1.0 / 3.0),
            ("events_post_30d", 1.0),
            ("events_post_change", 1.0),
        ],
    );
}

#[test]
fn a_customer_without_rows_gets_defined_values_not_nan() {
    // b at T1: no logins or events, one open low-priority ticket, one order.
    check(
        "2024-04-01",
        "b",
        &[
            ("tenure_days", 46.0 - 10.0 / 24.0),
            ("plan_pro", 0.0),
            ("plan_basic", 1.0),
            ("plan_other", 0.0),
            ("monthly_fee", 29.0),
            ("logins_7d", 0.0),
            ("logins_30d", 0.0),
            ("logins_90d", 0.0),
            ("days_since_last_login", 46.0 - 10.0 / 24.0),
            ("login_trend", 1.0),
            ("active_days_30d", 0.0),
            ("tickets_30d", 1.0),
            ("tickets_90d", 1.0),
            ("tickets_open", 1.0),
            ("tickets_open_urgent", 0.0),
            ("resolution_hours_90d", NAN),
            ("urgent_share_90d", 0.0),
            ("csat_mean_90d", NAN),
            ("days_since_last_ticket", 11.5),
            ("order_recency_days", 45.0),
            ("orders_90d", 1.0),
            ("orders_365d", 1.0),
            ("revenue_90d", 29.0),
            ("revenue_365d", 29.0),
            ("interval_mean_days", NAN),
            ("interval_std_days", NAN),
            ("overdue_ratio", NAN),
            ("refunds_365d", 0.0),
            ("events_30d", 0.0),
            ("events_search_30d", 0.0),
            ("events_search_change", 1.0),
            ("events_post_30d", 0.0),
            ("events_post_change", 1.0),
        ],
    );
    // c: no rows at all before T1, an empty numeric attribute.
    let got = features("2024-04-01", "c");
    let nan: Vec<&str> = got
        .iter()
        .filter(|(_, v)| v.is_nan())
        .map(|(n, _)| n.as_str())
        .collect();
    assert_eq!(
        nan,
        [
            "monthly_fee",
            "resolution_hours_90d",
            "csat_mean_90d",
            "interval_mean_days",
            "interval_std_days",
            "overdue_ratio"
        ],
        "only features declared may_be_missing are undefined"
    );
    let get = |n: &str| got.iter().find(|g| g.0 == n).unwrap().1;
    assert_eq!(get("days_since_last_login"), 31.0);
    assert_eq!(get("order_recency_days"), 31.0);
}

#[test]
fn populations_and_labels_at_both_snapshots() {
    let dir = write_tables("golden-labels", &ALL_TABLES);
    let base = load_dir(&dir);
    let def = ChurnDefinition::Explicit;
    let ids = |t: &str| -> Vec<(String, bool)> {
        let t = parse_ts(t).unwrap();
        population(&base, &def, t)
            .into_iter()
            .map(|c| {
                (
                    base.customers.ids[c as usize].clone(),
                    label(&base.view(c as usize), &def, t, 30),
                )
            })
            .collect()
    };
    assert_eq!(
        ids("2024-04-01"),
        [("a".into(), false), ("b".into(), true), ("c".into(), false)]
    );
    // b churned on 04-20 and placed no order since: gone at T2. c churns on 05-10.
    assert_eq!(ids("2024-05-01"), [("a".into(), false), ("c".into(), true)]);
}

#[test]
fn without_a_churn_table_churn_is_inactivity_among_recent_buyers() {
    let dir = write_tables(
        "golden-inactivity",
        &[
            ("customers.csv", CUSTOMERS),
            ("logins.csv", LOGINS),
            ("orders.csv", ORDERS),
        ],
    );
    let base = load_dir(&dir);
    let def = ChurnDefinition::for_tables(base.present(), 90).unwrap();
    assert!(matches!(def, ChurnDefinition::Inactivity { .. }));
    let t = parse_ts("2024-04-01").unwrap();
    let got: Vec<(String, bool)> = population(&base, &def, t)
        .into_iter()
        .map(|c| {
            (
                base.customers.ids[c as usize].clone(),
                label(&base.view(c as usize), &def, t, 30),
            )
        })
        .collect();
    // c never ordered: not in the population. a orders on 04-01 (inside [T, T+30)); b does not.
    assert_eq!(got, [("a".into(), false), ("b".into(), true)]);
    let spec = FeatureSpec::new(base.present(), vec![], vec![], vec![], None);
    assert!(spec.left_out().iter().any(|m| m.contains("tickets")));
    assert!(spec.index_of("tickets_open").is_none());
}
