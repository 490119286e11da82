//! The online path: one customer's raw activity from a request, turned into the same
//! [`CustomerView`] the batch path reads, so features come from the same code.
//!
//! Payload (the `activity` of `POST /v1/score`):
//! ```json
//! {"customer": {"signup_at": "2024-01-10", "plan": "pro", "monthly_fee": 99},
//!  "logins": ["2024-03-01T08:00:00Z", {"at": "2024-03-02"}],
//!  "tickets": [{"opened_at": "...", "closed_at": null, "priority": "high", "csat": 4}],
//!  "orders": [{"at": "...", "amount": 99.0}],
//!  "events": [{"at": "...", "event_type": "search", "value": 1}]}
//! ```
//! Every problem is an [`Error::Input`] naming the field (`activity.orders[2].amount`).

use super::{Attrs, FeatureSpec};
use crate::data::{CustomerView, Event, Order, Present, Priority, Ticket};
use crate::time::{parse_ts, Ts};
use crate::{Error, Result};
use serde_json::{Map, Value};
use std::fmt::Display;

/// A customer's activity parsed from a request, owning its rows.
#[derive(Debug, Clone, Default)]
pub struct OwnedActivity {
    pub signup: Ts,
    pub logins: Vec<Ts>,
    pub tickets: Vec<Ticket>,
    pub orders: Vec<Order>,
    /// `kind` is the spec's event-type slot; unknown types get `event_types.len()`.
    pub events: Vec<Event>,
    pub categorical: Vec<Option<String>>,
    pub numeric: Vec<f64>,
    /// The request's `customer` object as sent: an alert's profile and owner read the
    /// configured attributes from it, whether or not the model uses them.
    pub customer: Map<String, Value>,
    /// Which lists the request sent (a list absent or null is unknown, not empty): the
    /// alert trail's counterpart of the tables a base has.
    pub present: Present,
    /// The identity mapping from slot to slot, plus `None` for unknown types.
    pub(crate) event_slot: Vec<Option<usize>>,
}

/// `activity.<list>[<index>]`, formatted only when an error needs it (a payload holds
/// hundreds of rows; naming each eagerly was most of the parsing time).
struct Item(&'static str, usize);

impl Display for Item {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "activity.{}[{}]", self.0, self.1)
    }
}

/// `<field>.<key>`, formatted lazily.
struct Key<'a>(&'a dyn Display, &'a str);

impl Display for Key<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}.{}", self.0, self.1)
    }
}

fn bad(field: impl Into<String>, message: impl Into<String>) -> Error {
    Error::Input {
        field: field.into(),
        message: message.into(),
    }
}

fn ts(v: &Value, field: &dyn Display) -> Result<Ts> {
    match v {
        Value::String(s) => parse_ts(s).ok_or_else(|| {
            bad(
                field.to_string(),
                format!("{field}: `{s}` is not a timestamp (use RFC 3339, `YYYY-MM-DD HH:MM:SS` or `YYYY-MM-DD`)"),
            )
        }),
        other => Err(bad(
            field.to_string(),
            format!("{field}: expected a timestamp string, got {}", kind(other)),
        )),
    }
}

fn opt_ts(obj: &Map<String, Value>, key: &str, field: &dyn Display) -> Result<Option<Ts>> {
    match obj.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(v) => ts(v, &Key(field, key)).map(Some),
    }
}

fn num(v: &Value, field: &dyn Display) -> Result<f64> {
    match v.as_f64() {
        Some(x) if x.is_finite() => Ok(x),
        _ => Err(bad(
            field.to_string(),
            format!("{field}: expected a finite number, got {}", kind(v)),
        )),
    }
}

/// A short name of a JSON value's type, for messages.
pub fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

fn list<'a>(obj: &'a Map<String, Value>, key: &str) -> Result<&'a [Value]> {
    match obj.get(key) {
        None | Some(Value::Null) => Ok(&[]),
        Some(Value::Array(a)) => Ok(a),
        Some(other) => Err(bad(
            format!("activity.{key}"),
            format!("activity.{key}: expected an array, got {}", kind(other)),
        )),
    }
}

fn object<'a>(v: &'a Value, field: &dyn Display) -> Result<&'a Map<String, Value>> {
    v.as_object().ok_or_else(|| {
        bad(
            field.to_string(),
            format!("{field}: expected an object, got {}", kind(v)),
        )
    })
}

/// The keys of an `activity` payload; any other is ignored (and reported back).
pub const ACTIVITY_FIELDS: [&str; 5] = ["customer", "logins", "tickets", "orders", "events"];

impl OwnedActivity {
    /// Parses an `activity` object against a spec. Returns the activity and the names of
    /// keys that were ignored (reported back to the caller, never an error).
    pub fn parse(spec: &FeatureSpec, activity: &Value) -> Result<(Self, Vec<String>)> {
        let obj = object(activity, &"activity")?;
        let ignored: Vec<String> = obj
            .keys()
            .filter(|k| !ACTIVITY_FIELDS.contains(&k.as_str()))
            .map(|k| format!("activity.{k}"))
            .collect();
        let customer = obj.get("customer").ok_or_else(|| {
            bad(
                "activity.customer",
                "activity.customer is required: an object with at least `signup_at`",
            )
        })?;
        let customer = object(customer, &"activity.customer")?;
        let signup = ts(
            customer.get("signup_at").ok_or_else(|| {
                bad(
                    "activity.customer.signup_at",
                    "activity.customer.signup_at is required",
                )
            })?,
            &"activity.customer.signup_at",
        )?;
        let sent = |k: &str| obj.get(k).is_some_and(|v| !v.is_null());
        let mut a = OwnedActivity {
            signup,
            customer: customer.clone(),
            present: Present {
                logins: sent("logins"),
                tickets: sent("tickets"),
                orders: sent("orders"),
                events: sent("events"),
                churn: false,
            },
            ..Default::default()
        };
        for (name, _) in &spec.categorical {
            let field = format!("activity.customer.{name}");
            a.categorical.push(match customer.get(name) {
                None | Some(Value::Null) => None,
                Some(Value::String(s)) => Some(s.clone()),
                Some(other) => {
                    return Err(bad(
                        &field,
                        format!("{field}: expected a string, got {}", kind(other)),
                    ))
                }
            });
        }
        for name in &spec.numeric {
            let field = format!("activity.customer.{name}");
            a.numeric.push(match customer.get(name) {
                None | Some(Value::Null) => f64::NAN,
                Some(v) => num(v, &field)?,
            });
        }
        for (i, v) in list(obj, "logins")?.iter().enumerate() {
            let field = Item("logins", i);
            a.logins.push(match v {
                Value::Object(o) => ts(o.get("at").unwrap_or(&Value::Null), &Key(&field, "at"))?,
                v => ts(v, &field)?,
            });
        }
        for (i, v) in list(obj, "tickets")?.iter().enumerate() {
            let field = Item("tickets", i);
            let o = object(v, &field)?;
            let opened = opt_ts(o, "opened_at", &field)?.ok_or_else(|| {
                bad(
                    format!("{field}.opened_at"),
                    format!("{field}.opened_at is required"),
                )
            })?;
            let closed = opt_ts(o, "closed_at", &field)?;
            if closed.is_some_and(|c| c < opened) {
                return Err(bad(
                    format!("{field}.closed_at"),
                    format!("{field}.closed_at is before opened_at"),
                ));
            }
            let priority = match o.get("priority") {
                None | Some(Value::Null) => Priority::Normal,
                Some(Value::String(s)) => Priority::parse(s),
                Some(other) => {
                    return Err(bad(
                        format!("{field}.priority"),
                        format!("{field}.priority: expected a string, got {}", kind(other)),
                    ))
                }
            };
            let csat = match o.get("csat") {
                None | Some(Value::Null) => f64::NAN,
                Some(v) => {
                    let c = num(v, &Key(&field, "csat"))?;
                    if !(1.0..=5.0).contains(&c) {
                        return Err(bad(
                            format!("{field}.csat"),
                            format!("{field}.csat: {c} is outside 1..5"),
                        ));
                    }
                    c
                }
            };
            a.tickets.push(Ticket {
                opened,
                closed,
                priority,
                csat,
            });
        }
        for (i, v) in list(obj, "orders")?.iter().enumerate() {
            let field = Item("orders", i);
            let o = object(v, &field)?;
            let at = opt_ts(o, "at", &field)?
                .ok_or_else(|| bad(format!("{field}.at"), format!("{field}.at is required")))?;
            let amount = num(
                o.get("amount").unwrap_or(&Value::Null),
                &Key(&field, "amount"),
            )?;
            a.orders.push(Order { at, amount });
        }
        let n = spec.event_types.len();
        for (i, v) in list(obj, "events")?.iter().enumerate() {
            let field = Item("events", i);
            let o = object(v, &field)?;
            let at = opt_ts(o, "at", &field)?
                .ok_or_else(|| bad(format!("{field}.at"), format!("{field}.at is required")))?;
            let ty = match o.get("event_type") {
                Some(Value::String(s)) if !s.trim().is_empty() => s.trim(),
                _ => {
                    return Err(bad(
                        format!("{field}.event_type"),
                        format!("{field}.event_type is required (a non-empty string)"),
                    ))
                }
            };
            let value = match o.get("value") {
                None | Some(Value::Null) => 1.0,
                Some(v) => num(v, &Key(&field, "value"))?,
            };
            let kind = spec.event_types.iter().position(|t| t == ty).unwrap_or(n);
            a.events.push(Event {
                at,
                kind: kind as u32,
                value: value as f32,
            });
        }
        a.logins.sort_unstable();
        a.tickets.sort_by_key(|t| t.opened);
        a.orders.sort_by_key(|o| o.at);
        a.events.sort_by_key(|e| e.at);
        a.event_slot = (0..n).map(Some).chain([None]).collect();
        Ok((a, ignored))
    }

    /// The rows as the feature code reads them.
    pub fn view(&self) -> CustomerView<'_> {
        CustomerView {
            signup: self.signup,
            logins: &self.logins,
            tickets: &self.tickets,
            orders: &self.orders,
            events: &self.events,
            churn: &[],
        }
    }

    /// The attributes in the spec's order.
    pub fn attrs(&self) -> Attrs<'_> {
        Attrs {
            categorical: self.categorical.iter().map(|c| c.as_deref()).collect(),
            numeric: self.numeric.clone(),
        }
    }

    /// The features as of `t`, through the same code as the batch path.
    pub fn features(&self, spec: &FeatureSpec, t: Ts) -> Vec<f64> {
        super::compute_view(spec, &self.view(), &self.attrs(), &self.event_slot, t)
    }
}
