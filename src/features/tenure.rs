//! Tenure: how long the customer has been one (table `customers`).

use super::explain::{Text, Unit};
use super::family::{At, Def};
use super::spec::Transform::*;

/// The table the family reads.
pub(super) const TABLE: &str = "customers";

/// The family's features, in schema order.
/// Tenure grows by a day every day, so every night's population is older than any
/// reference: its drift is expected, not a warning.
pub(super) const FEATURES: [Def; 1] = [Def::new("tenure_days", Log1p, false, "days since signup")
    .by_construction()
    .says(Text::Value {
        pattern: "customer for {v}",
        unit: Unit::Days,
        missing: "signup unknown",
    })];

/// The values of [`FEATURES`], in their order.
pub(super) fn compute(at: &At) -> [f64; FEATURES.len()] {
    [at.tenure]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::features::family::check::{fixed, signed_up};

    #[test]
    fn tenure_is_marked_as_drifting_by_construction() {
        assert!(FEATURES[0].to_feature(TABLE).by_construction);
    }

    #[test]
    fn tenure_counts_days_since_signup_and_is_zero_before_it() {
        let view = signed_up("2024-02-15 12:00:00");
        fixed(
            &FEATURES,
            compute,
            &view,
            "2024-03-01",
            &[("tenure_days", 14.5)],
        );
        fixed(
            &FEATURES,
            compute,
            &view,
            "2024-02-01",
            &[("tenure_days", 0.0)],
        );
    }
}
