//! The online path (a raw activity payload) and the batch path give identical features.

use crate::common::{load_dir, same, sample_parquet};
use churnguard::churn::{population, ChurnDefinition};
use churnguard::data::Priority;
use churnguard::features::online::OwnedActivity;
use churnguard::features::{AttributeConfig, Bound, FeatureSpec};
use churnguard::time::{fmt_ts, parse_ts, Ts};
use serde_json::{json, Value};

/// The activity payload a CRM would send for customer `c`: every row it has, future ones included.
pub fn payload(base: &churnguard::data::CustomerBase, c: usize) -> Value {
    let v = base.view(c);
    let attr = |name: &str| match base.customers.attribute(name) {
        Some(churnguard::data::Attribute::Categorical(x)) => json!(x[c]),
        Some(churnguard::data::Attribute::Numeric(x)) => {
            if x[c].is_finite() {
                json!(x[c])
            } else {
                Value::Null
            }
        }
        None => Value::Null,
    };
    let ts = |t: Ts| {
        // Exercise all three timestamp forms.
        match t % 3 {
            0 => fmt_ts(t),
            1 => fmt_ts(t).replace('T', " ").replace('Z', ""),
            _ => fmt_ts(t),
        }
    };
    json!({
        "customer": {"signup_at": ts(v.signup), "plan": attr("plan"), "channel": attr("channel"),
                     "country": attr("country"), "monthly_fee": attr("monthly_fee")},
        "logins": v.logins.iter().map(|&t| json!(ts(t))).collect::<Vec<_>>(),
        "tickets": v.tickets.iter().map(|t| json!({
            "opened_at": ts(t.opened), "closed_at": t.closed.map(ts),
            "priority": match t.priority { Priority::Low => "low", Priority::Normal => "normal", Priority::High => "high", Priority::Urgent => "urgent" },
            "csat": if t.csat.is_finite() { json!(t.csat) } else { Value::Null }})).collect::<Vec<_>>(),
        "orders": v.orders.iter().map(|o| json!({"at": ts(o.at), "amount": o.amount})).collect::<Vec<_>>(),
        "events": v.events.iter().map(|e| json!({"at": ts(e.at), "event_type": base.event_types[e.kind as usize], "value": e.value})).collect::<Vec<_>>(),
    })
}

#[test]
fn online_features_equal_batch_features_for_every_customer_of_the_sample() {
    let base = load_dir(sample_parquet());
    let t = parse_ts("2024-09-10").unwrap();
    let pop = population(&base, &ChurnDefinition::Explicit, t);
    let rows: Vec<(u32, Ts)> = pop.iter().map(|&c| (c, t)).collect();
    let attrs = AttributeConfig {
        categorical: vec!["plan".into(), "channel".into(), "country".into()],
        numeric: vec!["monthly_fee".into()],
        top_levels: 8,
        top_event_types: 8,
    };
    let spec = FeatureSpec::learn(&base, &rows, &attrs).unwrap();
    assert!(spec.rfm.is_some() && !spec.event_types.is_empty());
    let batch = Bound::new(&spec, &base).matrix(&rows);
    let w = spec.len();
    // Every customer, active or not, must agree; the population is the interesting part.
    for (i, &c) in pop.iter().enumerate() {
        let (act, ignored) = OwnedActivity::parse(&spec, &payload(&base, c as usize)).unwrap();
        assert!(ignored.is_empty());
        let online = act.features(&spec, t);
        for j in 0..w {
            assert!(
                same(online[j], batch[i * w + j]),
                "customer {} feature {}: online {} vs batch {}",
                base.customers.ids[c as usize],
                spec.names()[j],
                online[j],
                batch[i * w + j]
            );
        }
    }
    assert!(
        pop.len() > 500,
        "the sample has an active population ({})",
        pop.len()
    );
}

#[test]
fn a_bad_date_in_an_activity_payload_names_the_field() {
    let base = load_dir(sample_parquet());
    let spec = FeatureSpec::new(base.present(), vec![], vec![], vec![], None);
    let mut p = payload(&base, 0);
    p["orders"] = json!([{"at": "2024-01-01", "amount": 5}, {"at": "not a date", "amount": 5}]);
    let err = OwnedActivity::parse(&spec, &p).unwrap_err().to_string();
    assert!(err.contains("activity.orders[1].at"), "{err}");
    p["orders"] = json!([{"at": "2024-01-01", "amount": "5"}]);
    let err = OwnedActivity::parse(&spec, &p).unwrap_err().to_string();
    assert!(
        err.contains("activity.orders[0].amount") && err.contains("a string"),
        "{err}"
    );
}
