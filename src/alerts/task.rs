//! What turns an alert into a task for an account manager: the customer's profile, the
//! behaviour trail, the owner and the due date (issue 14, item 7). Built as of the
//! alert's `as_of`: only rows strictly before it, a ticket's closure and csat only when
//! they happened before it (the data contract's point-in-time rules).
//!
//! The nightly batch has the customer base and fills everything. The service fills
//! everything too when a request sends the customer's `activity` (its rows and its
//! `customer` object: the same builder as the batch). From a bare feature row it has no
//! rows nor customer record: those alerts carry the profile numbers the model's features
//! hold (`tenure_days`, `revenue_365d`), no attributes, no owner and a `null` trail.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::ToSchema;

use crate::data::{before, between, Attribute, CustomerBase, CustomerView, Priority};
use crate::features::online::OwnedActivity;
use crate::features::FeatureSpec;
use crate::time::{fmt_ts, Ts, DAY};

/// How many of each kind of row the trail lists.
pub const TRAIL_ROWS: usize = 10;
/// How many weeks of counts the trail holds.
pub const TRAIL_WEEKS: usize = 12;
/// `due_at - raised_at` unless configured (`[alerts] due_days`).
pub const DEFAULT_DUE_DAYS: u32 = 3;
/// The attribute read as the plan unless configured (`[alerts] plan_attribute`).
pub const DEFAULT_PLAN_ATTRIBUTE: &str = "plan";

/// Which customer attributes an alert carries and when it is due (`[alerts]`
/// `profile_attributes`, `plan_attribute`, `owner_attribute`, `due_days`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TaskConfig {
    /// Attributes of `customers` copied into the profile (absent ones are left out).
    pub profile_attributes: Vec<String>,
    /// The attribute holding the plan.
    pub plan_attribute: String,
    /// The attribute naming the account manager (`account_manager`); `None`: alerts
    /// have no `owner`.
    pub owner_attribute: Option<String>,
    /// `due_at = raised_at + due_days`.
    pub due_days: u32,
}

impl Default for TaskConfig {
    fn default() -> Self {
        TaskConfig {
            profile_attributes: Vec::new(),
            plan_attribute: DEFAULT_PLAN_ATTRIBUTE.into(),
            owner_attribute: None,
            due_days: DEFAULT_DUE_DAYS,
        }
    }
}

/// Who the customer is, as of the alert.
#[derive(Clone, Serialize, Deserialize, Debug, PartialEq, ToSchema)]
pub struct Profile {
    /// The configured attributes by name: text, a number, or null where empty.
    #[schema(value_type = Object)]
    pub attributes: BTreeMap<String, Value>,
    /// Whole days since signup (null when unknown: a service alert without the feature).
    pub tenure_days: Option<f64>,
    /// The plan attribute's value, null without one.
    pub plan: Option<String>,
    /// Sum of order amounts in the 365 days before `as_of` (refunds included); null
    /// without an orders table (or, in the service, the `revenue_365d` feature).
    pub revenue_365d: Option<f64>,
}

/// One order of the trail.
#[derive(Clone, Serialize, Deserialize, Debug, PartialEq, ToSchema)]
pub struct TrailOrder {
    /// RFC 3339, UTC.
    pub at: String,
    pub amount: f64,
}

/// One ticket of the trail, as known at `as_of`.
#[derive(Clone, Serialize, Deserialize, Debug, PartialEq, ToSchema)]
pub struct TrailTicket {
    /// RFC 3339, UTC.
    pub opened_at: String,
    /// Null while open at `as_of` (a later closure is not known then).
    pub closed_at: Option<String>,
    /// `low`, `normal`, `high` or `urgent`.
    #[schema(value_type = String)]
    pub priority: Priority,
    /// Satisfaction given at a closure before `as_of`; null otherwise.
    pub csat: Option<f64>,
}

/// Counts of one week of the trail: `[week_start, week_start + 7 days)`.
#[derive(Clone, Serialize, Deserialize, Debug, PartialEq, ToSchema)]
pub struct WeekCounts {
    /// RFC 3339, UTC.
    pub week_start: String,
    /// Null when the base has no such table.
    pub logins: Option<u32>,
    pub orders: Option<u32>,
    pub tickets: Option<u32>,
}

/// The customer's recent behaviour: the last [`TRAIL_ROWS`] rows of each table before
/// `as_of` (newest first; null when the base has no such table) and the counts of the
/// [`TRAIL_WEEKS`] weeks before `as_of` (oldest first, the last week ending at `as_of`).
#[derive(Clone, Serialize, Deserialize, Debug, PartialEq, ToSchema)]
pub struct Trail {
    /// Login instants (RFC 3339, UTC).
    pub logins: Option<Vec<String>>,
    pub orders: Option<Vec<TrailOrder>>,
    pub tickets: Option<Vec<TrailTicket>>,
    pub weekly: Vec<WeekCounts>,
}

/// The task part of an alert, before it is set on it.
#[derive(Clone, Debug, PartialEq, Default)]
pub struct Task {
    pub profile: Option<Profile>,
    pub trail: Option<Trail>,
    pub owner: Option<String>,
}

fn last<T: Copy>(xs: &[T]) -> impl Iterator<Item = T> + '_ {
    xs.iter().rev().take(TRAIL_ROWS).copied()
}

/// The trail of `view` as of `as_of`; `present` says which tables the base has.
pub fn trail(view: &CustomerView<'_>, present: crate::data::Present, as_of: Ts) -> Trail {
    let logins = before(view.logins, as_of);
    let orders = before(view.orders, as_of);
    let tickets = before(view.tickets, as_of);
    let known = |t: Option<Ts>| t.filter(|&c| c < as_of);
    let weekly = (0..TRAIL_WEEKS)
        .rev()
        .map(|k| {
            let end = as_of - (k as i64) * 7 * DAY;
            let start = end - 7 * DAY;
            let count = |on: bool, n: usize| on.then_some(n as u32);
            WeekCounts {
                week_start: fmt_ts(start),
                logins: count(present.logins, between(logins, start, end).len()),
                orders: count(present.orders, between(orders, start, end).len()),
                tickets: count(present.tickets, between(tickets, start, end).len()),
            }
        })
        .collect();
    Trail {
        logins: present.logins.then(|| last(logins).map(fmt_ts).collect()),
        orders: present.orders.then(|| {
            last(orders)
                .map(|o| TrailOrder {
                    at: fmt_ts(o.at),
                    amount: o.amount,
                })
                .collect()
        }),
        tickets: present.tickets.then(|| {
            last(tickets)
                .map(|t| {
                    let closed = known(t.closed);
                    TrailTicket {
                        opened_at: fmt_ts(t.opened),
                        closed_at: closed.map(fmt_ts),
                        priority: t.priority,
                        csat: closed.and(Some(t.csat)).filter(|c| c.is_finite()),
                    }
                })
                .collect()
        }),
        weekly,
    }
}

fn attribute_value(a: &Attribute, c: usize) -> Value {
    match a {
        Attribute::Numeric(v) => number(v[c]),
        Attribute::Categorical(v) => v[c].clone().map_or(Value::Null, Value::String),
    }
}

fn number(x: f64) -> Value {
    serde_json::Number::from_f64(x)
        .map(Value::Number)
        .unwrap_or(Value::Null)
}

/// An attribute sent in a request's `customer` object, as a column of the customer
/// table would hold it: a string, a number (as the `f64` a numeric column holds, so 49
/// and 49.0 read alike), anything else unknown.
fn sent_value(v: &Value) -> Value {
    match v {
        Value::String(_) => v.clone(),
        Value::Number(n) => n.as_f64().map_or(Value::Null, number),
        _ => Value::Null,
    }
}

fn value_text(v: Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

/// The whole task of one customer as of `as_of`, from its rows, the tables known
/// (`present`) and `attribute(name)`: `None` when there is no such attribute, else its
/// value (`null` when unknown). The batch and the service's activity form both go
/// through here, so their alerts for the same customer and night are the same.
fn build(
    view: &CustomerView<'_>,
    present: crate::data::Present,
    as_of: Ts,
    cfg: &TaskConfig,
    attribute: impl Fn(&str) -> Option<Value>,
) -> Task {
    let attributes = cfg
        .profile_attributes
        .iter()
        .filter_map(|name| Some((name.clone(), attribute(name)?)))
        .collect();
    let revenue_365d = present.orders.then(|| {
        between(view.orders, as_of - 365 * DAY, as_of)
            .iter()
            .map(|o| o.amount)
            .sum()
    });
    Task {
        profile: Some(Profile {
            attributes,
            tenure_days: Some(((as_of - view.signup).max(0) / DAY) as f64),
            plan: attribute(&cfg.plan_attribute).and_then(value_text),
            revenue_365d,
        }),
        trail: Some(trail(view, present, as_of)),
        owner: cfg
            .owner_attribute
            .as_deref()
            .and_then(&attribute)
            .and_then(value_text),
    }
}

/// The whole task of customer `c` of `base` as of `as_of` (the nightly batch).
pub fn of_customer(base: &CustomerBase, c: usize, as_of: Ts, cfg: &TaskConfig) -> Task {
    let customers = &base.customers;
    build(&base.view(c), base.present(), as_of, cfg, |name| {
        customers.attribute(name).map(|a| attribute_value(a, c))
    })
}

/// The whole task of a customer the service scored from a request's `activity`: its
/// rows, the lists it sent and the attributes of its `customer` object, exactly as the
/// batch builds it from a base holding the same rows.
pub fn of_activity(a: &OwnedActivity, as_of: Ts, cfg: &TaskConfig) -> Task {
    build(&a.view(), a.present, as_of, cfg, |name| {
        a.customer.get(name).map(sent_value)
    })
}

/// The task the service can build from a scored feature row: the profile numbers the
/// model's features hold; no attributes, trail or owner (the service has no customer
/// table).
pub fn of_features(spec: &FeatureSpec, row: &[f64]) -> Task {
    let feature = |name: &str| {
        spec.index_of(name)
            .map(|j| row[j])
            .filter(|v| v.is_finite())
    };
    Task {
        profile: Some(Profile {
            attributes: BTreeMap::new(),
            tenure_days: feature("tenure_days"),
            plan: None,
            revenue_365d: feature("revenue_365d"),
        }),
        trail: None,
        owner: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::{Customers, Grouped, Order, Ticket};
    use crate::time::parse_ts;

    fn t(s: &str) -> Ts {
        parse_ts(s).unwrap()
    }

    /// One customer signed up 2024-01-01 with an account manager and a plan; logins,
    /// orders and tickets on both sides of the night 2024-06-01.
    fn base() -> CustomerBase {
        let logins: Vec<Ts> = (0..14).map(|i| t("2024-05-20") + i * DAY).collect();
        let n = logins.len();
        let ticket = |opened: &str, closed: Option<&str>, csat: f64| Ticket {
            opened: t(opened),
            closed: closed.map(t),
            priority: Priority::Urgent,
            csat,
        };
        let tickets = vec![
            ticket("2024-05-10", Some("2024-05-12"), 4.0),
            // Closed after the night: open at it, its csat unknown.
            ticket("2024-05-30", Some("2024-06-03"), 1.0),
            ticket("2024-06-02", None, f64::NAN),
        ];
        let orders = vec![
            Order {
                at: t("2023-05-01"),
                amount: 1000.0,
            },
            Order {
                at: t("2024-03-01"),
                amount: 120.0,
            },
            Order {
                at: t("2024-05-31T23:59:59Z"),
                amount: -20.0,
            },
            Order {
                at: t("2024-06-01"),
                amount: 500.0,
            },
        ];
        CustomerBase {
            customers: Customers {
                ids: vec!["a".into()],
                signup: vec![t("2024-01-01")],
                attributes: vec![
                    (
                        "account_manager".into(),
                        Attribute::Categorical(vec![Some("dana".into())]),
                    ),
                    (
                        "plan".into(),
                        Attribute::Categorical(vec![Some("pro".into())]),
                    ),
                    ("seats".into(), Attribute::Numeric(vec![12.0])),
                ],
                ..Customers::default()
            },
            logins: Some(Grouped::build(1, &vec![0; n], logins)),
            tickets: Some(Grouped::build(1, &[0, 0, 0], tickets)),
            orders: Some(Grouped::build(1, &[0, 0, 0, 0], orders)),
            ..CustomerBase::default()
        }
    }

    fn cfg() -> TaskConfig {
        TaskConfig {
            profile_attributes: vec!["seats".into(), "plan".into(), "missing".into()],
            owner_attribute: Some("account_manager".into()),
            ..TaskConfig::default()
        }
    }

    #[test]
    fn the_profile_holds_the_configured_attributes_tenure_plan_and_a_years_revenue() {
        let task = of_customer(&base(), 0, t("2024-06-01"), &cfg());
        let p = task.profile.unwrap();
        assert_eq!(
            serde_json::to_value(&p.attributes).unwrap(),
            serde_json::json!({"plan": "pro", "seats": 12.0})
        );
        assert_eq!(p.tenure_days, Some(152.0));
        assert_eq!(p.plan.as_deref(), Some("pro"));
        // 2023-05-01 is more than 365 days before; 2024-06-01 is not before the night.
        assert_eq!(p.revenue_365d, Some(100.0));
        assert_eq!(task.owner.as_deref(), Some("dana"));
        let none = of_customer(&base(), 0, t("2024-06-01"), &TaskConfig::default());
        assert_eq!(none.owner, None);
    }

    /// The customer of [`base`] as a request's `activity` would carry it (`seats` sent as
    /// the integer 12), the lists it sent marked in `present`.
    fn activity(present: crate::data::Present) -> OwnedActivity {
        let b = base();
        let v = b.view(0);
        let customer = serde_json::json!({"signup_at": "2024-01-01", "account_manager": "dana",
                                          "plan": "pro", "seats": 12, "missing": null});
        OwnedActivity {
            signup: v.signup,
            logins: v.logins.to_vec(),
            tickets: v.tickets.to_vec(),
            orders: v.orders.to_vec(),
            customer: customer.as_object().unwrap().clone(),
            present,
            ..OwnedActivity::default()
        }
    }

    #[test]
    fn a_requests_activity_gives_the_task_the_batch_gives_for_the_same_rows() {
        let night = t("2024-06-01");
        let batch = of_customer(&base(), 0, night, &cfg());
        let service = of_activity(&activity(base().present()), night, &cfg());
        // `missing` was sent as null: known to be unknown, as a null cell would be; the
        // batch's base has no such column, so its profile leaves it out.
        let mut expected = batch.clone();
        let p = expected.profile.as_mut().unwrap();
        p.attributes
            .insert("missing".into(), serde_json::Value::Null);
        assert_eq!(service, expected);
        assert_eq!(
            serde_json::to_value(&service.profile.as_ref().unwrap().attributes["seats"]).unwrap(),
            serde_json::json!(12.0)
        );
        assert_eq!(service.owner.as_deref(), Some("dana"));
    }

    #[test]
    fn a_list_the_request_did_not_send_is_unknown_in_the_trail_not_empty() {
        let present = crate::data::Present {
            tickets: false,
            ..base().present()
        };
        let task = of_activity(&activity(present), t("2024-06-01"), &cfg());
        let trail = task.trail.unwrap();
        assert_eq!(trail.tickets, None);
        assert!(trail.weekly.iter().all(|w| w.tickets.is_none()));
        assert_eq!(trail.logins.map(|l| l.len()), Some(TRAIL_ROWS));
    }

    #[test]
    fn the_trail_lists_only_what_happened_before_the_night_newest_first() {
        let task = of_customer(&base(), 0, t("2024-06-01"), &cfg());
        let trail = task.trail.unwrap();
        let logins = trail.logins.unwrap();
        // Logins 05-20 .. 05-31 are before the night: the last 10 are 05-31 back to 05-22.
        assert_eq!(logins.len(), TRAIL_ROWS);
        assert_eq!(logins[0], "2024-05-31T00:00:00Z");
        assert_eq!(logins[9], "2024-05-22T00:00:00Z");
        let orders = trail.orders.unwrap();
        assert_eq!(
            orders.iter().map(|o| o.amount).collect::<Vec<_>>(),
            [-20.0, 120.0, 1000.0]
        );
        let tickets = trail.tickets.unwrap();
        assert_eq!(
            tickets.len(),
            2,
            "the ticket opened after the night is unknown"
        );
        assert_eq!(tickets[0].opened_at, "2024-05-30T00:00:00Z");
        assert_eq!(tickets[0].closed_at, None, "closed after the night");
        assert_eq!(tickets[0].csat, None);
        assert_eq!(
            tickets[1].closed_at.as_deref(),
            Some("2024-05-12T00:00:00Z")
        );
        assert_eq!(tickets[1].csat, Some(4.0));
        assert_eq!(trail.weekly.len(), TRAIL_WEEKS);
        let last = &trail.weekly[TRAIL_WEEKS - 1];
        assert_eq!(last.week_start, "2024-05-25T00:00:00Z");
        assert_eq!(
            (last.logins, last.orders, last.tickets),
            (Some(7), Some(1), Some(1))
        );
        let before = &trail.weekly[TRAIL_WEEKS - 2];
        assert_eq!(before.week_start, "2024-05-18T00:00:00Z");
        assert_eq!(before.logins, Some(5));
        assert_eq!(trail.weekly[0].week_start, "2024-03-09T00:00:00Z");
        assert_eq!(trail.weekly[0].orders, Some(0));
    }

    #[test]
    fn a_table_the_base_lacks_is_null_in_the_trail_not_empty() {
        let mut b = base();
        b.tickets = None;
        let trail = of_customer(&b, 0, t("2024-06-01"), &cfg()).trail.unwrap();
        assert_eq!(trail.tickets, None);
        assert!(trail.weekly.iter().all(|w| w.tickets.is_none()));
        assert!(trail.logins.is_some());
    }
}
