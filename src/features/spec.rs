//! The feature schema: the families assembled in order, with each feature's name,
//! description, source table and preprocessing hint.

use super::attributes::{self, Attrs};
use super::explain::{Dimension, Text};
use super::family::{push_all, write, At};
use super::rfm::RfmCuts;
use super::{events, logins, orders, tenure, tickets};
use crate::data::{CustomerView, Present};
use crate::time::Ts;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// How the model's preprocessing should treat a feature.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Transform {
    /// Used as is.
    Identity,
    /// Heavy-tailed counts, days and money: signed `log1p` before standardising.
    Log1p,
    /// A 0/1 indicator.
    Binary,
}

/// One feature of the schema (as `GET /v1/models/{name}` lists them, in the model's order).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct FeatureDef {
    /// Stable name, used in requests, outputs and reason codes.
    pub name: String,
    /// What it measures, in words.
    pub description: String,
    /// The table it is computed from.
    pub table: String,
    pub transform: Transform,
    /// Whether the value can be undefined (NaN) for some customers, e.g. mean csat
    /// with no rated ticket. Models impute it (logistic) or route it (trees).
    pub may_be_missing: bool,
    /// Whether the feature grows with time by construction (tenure): any later night
    /// differs from the reference, so its drift is reported apart and never warned about.
    /// Not part of the schema hash.
    #[serde(default)]
    pub by_construction: bool,
    /// The dimension the feature belongs to (engagement, support, billing, relationship):
    /// its family's. Not part of the schema hash.
    #[serde(default)]
    pub dimension: Dimension,
    /// The template of the feature's reason text (see [`Text`]).
    #[serde(skip)]
    pub text: Text,
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
        FAMILIES
            .iter()
            .filter(|f| !f.in_schema(self.present))
            .map(|f| format!("{}: table `{}` is absent", f.summary(), f.table()))
            .collect()
    }

    /// The families this spec computes, in schema order.
    fn families(&self) -> impl Iterator<Item = Family> + '_ {
        FAMILIES.into_iter().filter(|f| f.in_schema(self.present))
    }

    fn build_defs(&self) -> Vec<FeatureDef> {
        let mut d = Vec::new();
        for family in self.families() {
            let start = d.len();
            match family {
                Family::Tenure => push_all(&tenure::FEATURES, tenure::TABLE, &mut d),
                Family::Attributes => attributes::defs(&self.categorical, &self.numeric, &mut d),
                Family::Logins => push_all(&logins::FEATURES, logins::TABLE, &mut d),
                Family::Tickets => push_all(&tickets::FEATURES, tickets::TABLE, &mut d),
                Family::Orders => orders::defs(self.rfm.is_some(), &mut d),
                Family::Events => events::defs(&self.event_types, &mut d),
            }
            for def in &mut d[start..] {
                def.dimension = family.dimension();
            }
        }
        d
    }

    /// Writes the features of `view` as of `t` into `out` (exactly [`Self::len`] values,
    /// in schema order). `event_slot` maps the view's event kinds to the spec's event
    /// types. Reads only rows strictly before `t`.
    pub fn compute(
        &self,
        view: &CustomerView,
        attrs: &Attrs,
        event_slot: &[Option<usize>],
        t: Ts,
        out: &mut [f64],
    ) {
        debug_assert_eq!(out.len(), self.len());
        let written = self.write_families(view, attrs, event_slot, t, out);
        debug_assert_eq!(written, out.len());
    }

    /// Writes every family's values in schema order at the start of `out`; returns how many.
    fn write_families(
        &self,
        view: &CustomerView,
        attrs: &Attrs,
        event_slot: &[Option<usize>],
        t: Ts,
        out: &mut [f64],
    ) -> usize {
        let at = At::new(view, t);
        let mut k = 0;
        for family in self.families() {
            let rest = &mut out[k..];
            k += match family {
                Family::Tenure => write(tenure::compute(&at), rest),
                Family::Attributes => {
                    attributes::compute(&self.categorical, &self.numeric, attrs, rest)
                }
                Family::Logins => write(logins::compute(&at), rest),
                Family::Tickets => write(tickets::compute(&at), rest),
                Family::Orders => orders::compute(&at, self.rfm.as_ref(), rest),
                Family::Events => events::compute(&at, self.event_types.len(), event_slot, rest),
            };
        }
        k
    }

    /// Recency (days), frequency (orders in 365 days) and monetary (revenue in 365 days)
    /// of a view as of `t`: the inputs of the RFM scores. `None` without orders.
    pub fn rfm_inputs(&self, view: &CustomerView, t: Ts) -> Option<(f64, f64, f64)> {
        self.present
            .orders
            .then(|| orders::rfm_inputs(&At::new(view, t)))
    }
}

/// A group of features computed together from one table; each has its own file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Family {
    Tenure,
    Attributes,
    Logins,
    Tickets,
    Orders,
    Events,
}

/// Every family in schema order. This order, and the order inside each family, is part of
/// the model schema and its hash: changing either makes every earlier artifact refuse to load.
const FAMILIES: [Family; 6] = [
    Family::Tenure,
    Family::Attributes,
    Family::Logins,
    Family::Tickets,
    Family::Orders,
    Family::Events,
];

impl Family {
    /// Whether a schema built with `present` tables has this family.
    fn in_schema(self, present: Present) -> bool {
        match self {
            Family::Tenure | Family::Attributes => true,
            Family::Logins => present.logins,
            Family::Tickets => present.tickets,
            Family::Orders => present.orders,
            Family::Events => present.events,
        }
    }

    /// The dimension every feature of the family belongs to.
    fn dimension(self) -> Dimension {
        match self {
            Family::Logins | Family::Events => Dimension::Engagement,
            Family::Tickets => Dimension::Support,
            Family::Orders => Dimension::Billing,
            Family::Tenure | Family::Attributes => Dimension::Relationship,
        }
    }

    /// The table the family is computed from.
    fn table(self) -> &'static str {
        match self {
            Family::Tenure => tenure::TABLE,
            Family::Attributes => attributes::TABLE,
            Family::Logins => logins::TABLE,
            Family::Tickets => tickets::TABLE,
            Family::Orders => orders::TABLE,
            Family::Events => events::TABLE,
        }
    }

    /// What the family measures, for the note when its table is absent.
    fn summary(self) -> &'static str {
        match self {
            Family::Tenure => "tenure",
            Family::Attributes => "customer attributes",
            Family::Logins => logins::SUMMARY,
            Family::Tickets => tickets::SUMMARY,
            Family::Orders => orders::SUMMARY,
            Family::Events => events::SUMMARY,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::features::family::check::signed_up;

    #[test]
    fn a_feature_recorded_before_the_by_construction_flag_still_reads() {
        let old = r#"{"name":"tenure_days","description":"days since signup","table":"customers","transform":"log1p","may_be_missing":false}"#;
        let d: FeatureDef = serde_json::from_str(old).unwrap();
        assert!(!d.by_construction);
    }

    #[test]
    fn every_table_combination_computes_exactly_one_value_per_named_feature() {
        let view = signed_up("2024-01-01");
        let attrs = Attrs::default();
        let cuts = RfmCuts {
            recency: [1.0, 2.0, 3.0, 4.0],
            frequency: [1.0, 2.0, 3.0, 4.0],
            monetary: [1.0, 2.0, 3.0, 4.0],
        };
        for bits in 0..16u8 {
            for rfm in [None, Some(cuts.clone())] {
                let present = Present {
                    logins: bits & 1 != 0,
                    tickets: bits & 2 != 0,
                    orders: bits & 4 != 0,
                    events: bits & 8 != 0,
                    churn: false,
                };
                let spec = FeatureSpec::new(
                    present,
                    vec!["search".into(), "post".into()],
                    vec![("plan".into(), vec!["pro".into()])],
                    vec!["fee".into()],
                    rfm,
                );
                let mut out = vec![f64::INFINITY; spec.len() + 1];
                let t = crate::features::family::check::ts("2024-03-01");
                let n = spec.write_families(&view, &attrs, &[], t, &mut out);
                assert_eq!(n, spec.len(), "{present:?}: {:?}", spec.names());
                assert!(
                    out[..n].iter().all(|x| x.is_nan() || x.is_finite()),
                    "{present:?}: every named feature is written"
                );
                assert_eq!(
                    out[n],
                    f64::INFINITY,
                    "{present:?}: nothing past the schema"
                );
            }
        }
    }
}
