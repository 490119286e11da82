//! Customer attributes: one-hot levels of categorical columns and numeric columns as
//! they are (table `customers`). The columns are chosen by [`super::AttributeConfig`].

use super::explain::{Dimension, Text};
use super::spec::{slug, FeatureDef, Transform};

/// The table the family reads.
pub(super) const TABLE: &str = "customers";

/// The level every value outside an attribute's top levels falls into.
const OTHER: &str = "other";

/// A customer's attribute values in the spec's order.
#[derive(Debug, Clone, Default)]
pub struct Attrs<'a> {
    /// One per [`FeatureSpec::categorical`](super::FeatureSpec::categorical) entry.
    pub categorical: Vec<Option<&'a str>>,
    /// One per [`FeatureSpec::numeric`](super::FeatureSpec::numeric) entry; NaN when unknown.
    pub numeric: Vec<f64>,
}

/// The attribute and level of a one-hot feature named `feature` (`plan_basic` ->
/// `("plan", "basic")`; the level is [`OTHER`] for the `other` column).
pub(super) fn level_of<'s>(
    categorical: &'s [(String, Vec<String>)],
    feature: &str,
) -> Option<(&'s str, &'s str)> {
    categorical.iter().find_map(|(name, levels)| {
        levels
            .iter()
            .map(String::as_str)
            .chain([OTHER])
            .find(|level| format!("{}_{}", slug(name), slug(level)) == feature)
            .map(|level| (name.as_str(), level))
    })
}

/// The attribute a numeric attribute feature named `feature` comes from.
pub(super) fn numeric_of<'s>(numeric: &'s [String], feature: &str) -> Option<&'s str> {
    numeric
        .iter()
        .find(|n| slug(n) == feature)
        .map(String::as_str)
}

/// Whether `level` is the column of every value outside the top levels.
pub(super) fn is_other(level: &str) -> bool {
    level == OTHER
}

/// The family's features: per categorical attribute one indicator per top level then
/// `other`, then one per numeric attribute.
pub(super) fn defs(
    categorical: &[(String, Vec<String>)],
    numeric: &[String],
    out: &mut Vec<FeatureDef>,
) {
    for (name, levels) in categorical {
        for level in levels.iter().map(String::as_str).chain([OTHER]) {
            out.push(FeatureDef {
                name: format!("{}_{}", slug(name), slug(level)),
                description: format!("1 when `{name}` is `{level}`"),
                table: TABLE.into(),
                transform: Transform::Binary,
                may_be_missing: false,
                by_construction: false,
                dimension: Dimension::Relationship,
                text: Text::Level,
            });
        }
    }
    for name in numeric {
        out.push(FeatureDef {
            name: slug(name),
            description: format!("customer attribute `{name}`"),
            table: TABLE.into(),
            transform: Transform::Identity,
            may_be_missing: true,
            by_construction: false,
            dimension: Dimension::Relationship,
            text: Text::Attribute,
        });
    }
}

/// Writes the values of [`defs`] at the start of `out`; returns how many.
pub(super) fn compute(
    categorical: &[(String, Vec<String>)],
    numeric: &[String],
    attrs: &Attrs,
    out: &mut [f64],
) -> usize {
    let mut k = 0;
    for (i, (_, levels)) in categorical.iter().enumerate() {
        let v = attrs.categorical.get(i).copied().flatten();
        let hit = v.and_then(|v| levels.iter().position(|l| l == v));
        for j in 0..levels.len() {
            out[k] = f64::from(hit == Some(j));
            k += 1;
        }
        // `other`: unknown or outside the top levels.
        out[k] = f64::from(hit.is_none());
        k += 1;
    }
    for i in 0..numeric.len() {
        out[k] = attrs.numeric.get(i).copied().unwrap_or(f64::NAN);
        k += 1;
    }
    k
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::features::family::check::written;

    /// Checks the family with two categorical attributes and one numeric one.
    fn check(attrs: &Attrs, expected: &[(&str, f64)]) {
        let categorical = vec![
            ("Plan".to_string(), vec!["pro".into(), "basic".into()]),
            ("region".to_string(), vec!["eu-west".into()]),
        ];
        let numeric = vec!["monthly fee".to_string()];
        let mut defs = Vec::new();
        super::defs(&categorical, &numeric, &mut defs);
        written(
            &defs,
            |out| compute(&categorical, &numeric, attrs, out),
            expected,
        );
    }

    #[test]
    fn a_known_level_sets_its_indicator_and_an_unknown_one_sets_other() {
        let attrs = Attrs {
            categorical: vec![Some("basic"), Some("apac")],
            numeric: vec![29.0],
        };
        check(
            &attrs,
            &[
                ("plan_pro", 0.0),
                ("plan_basic", 1.0),
                ("plan_other", 0.0),
                ("region_eu_west", 0.0),
                ("region_other", 1.0),
                ("monthly_fee", 29.0),
            ],
        );
    }

    #[test]
    fn missing_attributes_fall_into_other_and_nan() {
        check(
            &Attrs::default(),
            &[
                ("plan_pro", 0.0),
                ("plan_basic", 0.0),
                ("plan_other", 1.0),
                ("region_eu_west", 0.0),
                ("region_other", 1.0),
                ("monthly_fee", f64::NAN),
            ],
        );
    }
}
