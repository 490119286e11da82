//! The feature schema: names, descriptions, source tables, preprocessing hints.

use super::rfm::RfmCuts;
use crate::data::Present;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// How the model's preprocessing should treat a feature.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Transform {
    /// Used as is.
    Identity,
    /// Heavy-tailed counts, days and money: signed `log1p` before standardising.
    Log1p,
    /// A 0/1 indicator.
    Binary,
}

/// One feature of the schema.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FeatureDef {
    /// Stable name, used in requests, outputs and reason codes.
    pub name: String,
    pub description: String,
    /// The table it is computed from.
    pub table: String,
    pub transform: Transform,
    /// Whether the value can be undefined (NaN) for some customers, e.g. mean csat
    /// with no rated ticket. Models impute it (logistic) or route it (trees).
    pub may_be_missing: bool,
}

/// Which customer attributes become features.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct AttributeConfig {
    /// Columns of `customers` one-hot encoded (top levels seen in training, plus `other`).
    #[serde(default)]
    pub categorical: Vec<String>,
    /// Columns of `customers` used as numbers.
    #[serde(default)]
    pub numeric: Vec<String>,
    /// How many levels of a categorical attribute get their own column.
    #[serde(default = "default_top_levels")]
    pub top_levels: usize,
    /// How many event types get their own count columns.
    #[serde(default = "default_top_events")]
    pub top_event_types: usize,
}

fn default_top_levels() -> usize {
    8
}
fn default_top_events() -> usize {
    8
}

/// Everything that fixes the feature schema; stored in the model artifact.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FeatureSpec {
    /// Which optional tables the schema was built with.
    pub present: Present,
    /// The most frequent event types in the training data, one count column each.
    pub event_types: Vec<String>,
    /// Categorical attributes and their top levels (in training).
    pub categorical: Vec<(String, Vec<String>)>,
    /// Numeric attributes.
    pub numeric: Vec<String>,
    /// RFM quintile cut points learned on the training population (orders only).
    pub rfm: Option<RfmCuts>,
    /// The ordered schema, derived from the fields above.
    #[serde(skip)]
    defs: Vec<FeatureDef>,
}

/// A clean column-name fragment: lower case letters, digits and `_`.
pub fn slug(s: &str) -> String {
    let mut out: String = s
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                '_'
            }
        })
        .collect();
    out.truncate(48);
    out
}

impl FeatureSpec {
    /// A spec; the schema is derived from its parts.
    pub fn new(
        present: Present,
        event_types: Vec<String>,
        categorical: Vec<(String, Vec<String>)>,
        numeric: Vec<String>,
        rfm: Option<RfmCuts>,
    ) -> Self {
        let mut s = FeatureSpec {
            present,
            event_types,
            categorical,
            numeric,
            rfm,
            defs: Vec::new(),
        };
        s.defs = s.build_defs();
        s
    }

    /// Restores the derived schema after deserialising.
    pub fn rebuilt(self) -> Self {
        FeatureSpec::new(
            self.present,
            self.event_types,
            self.categorical,
            self.numeric,
            self.rfm,
        )
    }

    /// The ordered schema.
    pub fn defs(&self) -> &[FeatureDef] {
        &self.defs
    }

    /// Feature names in order.
    pub fn names(&self) -> Vec<&str> {
        self.defs.iter().map(|d| d.name.as_str()).collect()
    }

    /// Number of features.
    pub fn len(&self) -> usize {
        self.defs.len()
    }

    /// Whether the schema is empty.
    pub fn is_empty(&self) -> bool {
        self.defs.is_empty()
    }

    /// Position of a feature by name.
    pub fn index_of(&self, name: &str) -> Option<usize> {
        self.defs.iter().position(|d| d.name == name)
    }

    /// SHA-256 of the ordered schema (names, tables, transforms): a model refuses to load
    /// against a schema with a different hash.
    pub fn schema_hash(&self) -> String {
        let mut h = Sha256::new();
        for d in &self.defs {
            h.update(d.name.as_bytes());
            h.update([0]);
            h.update(d.table.as_bytes());
            h.update([0]);
            h.update(format!("{:?}", d.transform).as_bytes());
            h.update([1]);
        }
        hex::encode(h.finalize())
    }

    /// Feature families left out because their table is absent, with the reason.
    pub fn left_out(&self) -> Vec<String> {
        let p = self.present;
        let mut out = Vec::new();
        for (present, table, what) in [
            (
                p.logins,
                "logins",
                "login counts, recency, trend, active days",
            ),
            (
                p.tickets,
                "tickets",
                "ticket volume, open tickets, resolution, csat",
            ),
            (
                p.orders,
                "orders",
                "purchase recency/frequency/monetary, intervals, RFM scores",
            ),
            (p.events, "events", "usage event counts and their change"),
        ] {
            if !present {
                out.push(format!("{what}: table `{table}` is absent"));
            }
        }
        out
    }

    fn build_defs(&self) -> Vec<FeatureDef> {
        use Transform::*;
        let mut d = Vec::new();
        let mut add = |name: String, table: &str, t: Transform, missing: bool, desc: String| {
            d.push(FeatureDef {
                name,
                description: desc,
                table: table.into(),
                transform: t,
                may_be_missing: missing,
            })
        };
        add(
            "tenure_days".into(),
            "customers",
            Log1p,
            false,
            "days since signup".into(),
        );
        for (name, levels) in &self.categorical {
            for level in levels.iter().map(String::as_str).chain(["other"]) {
                add(
                    format!("{}_{}", slug(name), slug(level)),
                    "customers",
                    Binary,
                    false,
                    format!("1 when `{name}` is `{level}`"),
                );
            }
        }
        for name in &self.numeric {
            add(
                slug(name),
                "customers",
                Identity,
                true,
                format!("customer attribute `{name}`"),
            );
        }
        let p = self.present;
        if p.logins {
            for (n, desc) in [
                ("logins_7d", "logins in the last 7 days"),
                ("logins_30d", "logins in the last 30 days"),
                ("logins_90d", "logins in the last 90 days"),
                (
                    "days_since_last_login",
                    "days since the last login (days since signup if none)",
                ),
            ] {
                add(n.into(), "logins", Log1p, false, desc.into());
            }
            add(
                "login_trend".into(),
                "logins",
                Log1p,
                false,
                "(logins in the last 30 days + 1) / (mean of the two 30-day windows before + 1)"
                    .into(),
            );
            add(
                "active_days_30d".into(),
                "logins",
                Identity,
                false,
                "distinct days with a login in the last 30 days".into(),
            );
        }
        if p.tickets {
            for (n, t, m, desc) in [
                ("tickets_30d", Log1p, false, "tickets opened in the last 30 days"),
                ("tickets_90d", Log1p, false, "tickets opened in the last 90 days"),
                ("tickets_open", Log1p, false, "tickets open at T (closed at or after T counts as open)"),
                ("tickets_open_urgent", Log1p, false, "high or urgent tickets open at T"),
                ("resolution_hours_90d", Log1p, true, "mean resolution hours of tickets closed in the last 90 days"),
                ("urgent_share_90d", Identity, false, "share of tickets opened in the last 90 days that are high or urgent (0 if none)"),
                ("csat_mean_90d", Identity, true, "mean csat of tickets closed in the last 90 days"),
                ("days_since_last_ticket", Log1p, false, "days since the last ticket was opened (days since signup if none)"),
            ] {
                add(n.into(), "tickets", t, m, desc.into());
            }
        }
        if p.orders {
            for (n, t, m, desc) in [
                (
                    "order_recency_days",
                    Log1p,
                    false,
                    "days since the last order (days since signup if none)",
                ),
                ("orders_90d", Log1p, false, "orders in the last 90 days"),
                ("orders_365d", Log1p, false, "orders in the last 365 days"),
                (
                    "revenue_90d",
                    Log1p,
                    false,
                    "money from orders in the last 90 days (refunds subtract)",
                ),
                (
                    "revenue_365d",
                    Log1p,
                    false,
                    "money from orders in the last 365 days (refunds subtract)",
                ),
                (
                    "interval_mean_days",
                    Log1p,
                    true,
                    "mean days between consecutive orders",
                ),
                (
                    "interval_std_days",
                    Log1p,
                    true,
                    "standard deviation of days between orders",
                ),
                (
                    "overdue_ratio",
                    Log1p,
                    true,
                    "days since the last order / mean interval",
                ),
                (
                    "refunds_365d",
                    Log1p,
                    false,
                    "refunds (negative orders) in the last 365 days",
                ),
            ] {
                add(n.into(), "orders", t, m, desc.into());
            }
            if self.rfm.is_some() {
                for (n, desc) in [
                    ("rfm_r", "recency quintile score, 5 = most recent"),
                    (
                        "rfm_f",
                        "frequency quintile score (orders in 365 days), 5 = most",
                    ),
                    (
                        "rfm_m",
                        "monetary quintile score (revenue in 365 days), 5 = most",
                    ),
                ] {
                    add(n.into(), "orders", Identity, false, desc.into());
                }
            }
        }
        if p.events {
            add(
                "events_30d".into(),
                "events",
                Log1p,
                false,
                "usage events in the last 30 days".into(),
            );
            for ty in &self.event_types {
                let s = slug(ty);
                add(
                    format!("events_{s}_30d"),
                    "events",
                    Log1p,
                    false,
                    format!("`{ty}` events in the last 30 days"),
                );
                add(
                    format!("events_{s}_change"),
                    "events",
                    Log1p,
                    false,
                    format!(
                        "(`{ty}` events in the last 30 days + 1) / (in the 30 days before + 1)"
                    ),
                );
            }
        }
        d
    }
}
