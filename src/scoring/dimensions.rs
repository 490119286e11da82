//! Explanations beyond the top reasons: each reason's text, and the score split by
//! dimension (engagement, support, billing, relationship) with a health per dimension
//! and the primary driver.
//!
//! A dimension's contribution is the sum of its features' SHAP values (calibrated
//! log-odds), so the four add up to the calibrated margin minus the base. Its health is
//! defined like [`super::Scorer::health`], on that contribution instead of the
//! probability: the share (0-100) of the model's validation population whose
//! contribution of that dimension is higher (worse) than the customer's, 50 for a
//! typical customer. Models trained before dimensions existed have no such population;
//! their dimension health is `100 * (1 - sigmoid(contribution))`, 50 at a neutral 0.

use serde::{Deserialize, Serialize};

use crate::features::{Dimension, FeatureSpec, Row};
use crate::manifest::ExplainReferences;

/// A contribution must exceed this (calibrated log-odds) to push the risk up: the same
/// floor as a reason's.
const PUSHES_UP: f64 = 1e-9;

/// One dimension of one score.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct DimensionScore {
    /// The sum of the SHAP values of the dimension's features (calibrated log-odds;
    /// positive pushes the risk up). 0 for a dimension the model has no feature of.
    pub contribution: f64,
    /// 0-100, higher is healthier: the share of the validation population whose
    /// contribution of this dimension is higher than the customer's.
    pub health: f64,
}

/// The four dimensions of one score.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct DimensionScores {
    /// Logins and usage events.
    pub engagement: DimensionScore,
    /// Support tickets.
    pub support: DimensionScore,
    /// Billing and purchases: orders, revenue, intervals, refunds, RFM scores.
    pub billing: DimensionScore,
    /// Tenure and customer attributes.
    pub relationship: DimensionScore,
}

impl DimensionScores {
    /// From one value per dimension, in [`Dimension::ALL`]'s order.
    pub fn from_array(d: [DimensionScore; 4]) -> Self {
        DimensionScores {
            engagement: d[0],
            support: d[1],
            billing: d[2],
            relationship: d[3],
        }
    }

    /// The score of dimension `d`.
    pub fn get(&self, d: Dimension) -> DimensionScore {
        match d {
            Dimension::Engagement => self.engagement,
            Dimension::Support => self.support,
            Dimension::Billing => self.billing,
            Dimension::Relationship => self.relationship,
        }
    }

    /// The dimension with the largest positive contribution (ties: [`Dimension::ALL`]'s
    /// order); `None` when no dimension pushes the risk up.
    pub fn primary_driver(&self) -> Option<Dimension> {
        let mut best: Option<(Dimension, f64)> = None;
        for d in Dimension::ALL {
            let c = self.get(d).contribution;
            if c > PUSHES_UP && best.is_none_or(|(_, b)| c > b) {
                best = Some((d, c));
            }
        }
        best.map(|(d, _)| d)
    }
}

/// The share (0-100, rounded) of a sorted reference population above `x`, ties counted
/// half: the health of a value where higher is worse.
pub(super) fn share_above(sorted: &[f64], x: f64) -> f64 {
    let below = sorted.partition_point(|&r| r < x);
    let equal = sorted[below..].iter().take_while(|&&r| r == x).count() as f64;
    (100.0 * (1.0 - (below as f64 + equal / 2.0) / sorted.len() as f64)).round()
}

/// What a scorer needs to explain: the references of the texts and the dimension
/// health, in the model's schema order, resolved once when the model loads.
#[derive(Debug, Clone, Default)]
pub struct Explain {
    /// Per feature, the "customers who stay" value its text quotes.
    stayed: Vec<Option<f64>>,
    /// Per feature, its dimension's index in [`Dimension::ALL`].
    dimension_of: Vec<usize>,
    /// Per dimension, the sorted reference contributions (empty: the fallback).
    reference: [Vec<f64>; 4],
}

impl Explain {
    /// Resolves `refs` (from the manifest; `None` for a model trained before them)
    /// against `spec`. A feature or dimension the references do not name has none.
    pub fn new(spec: &FeatureSpec, refs: Option<&ExplainReferences>) -> Self {
        let stayed = spec
            .defs()
            .iter()
            .map(|d| refs.and_then(|r| r.stayed.get(&d.name).copied().flatten()))
            .collect();
        let dimension_of = spec.defs().iter().map(|d| d.dimension.index()).collect();
        let reference = Dimension::ALL.map(|d| {
            let mut r = refs
                .and_then(|r| r.dimension_health_reference.get(d.as_str()).cloned())
                .unwrap_or_default();
            r.retain(|x| x.is_finite());
            r.sort_by(f64::total_cmp);
            r
        });
        Explain {
            stayed,
            dimension_of,
            reference,
        }
    }

    /// The reason text of feature `j` of `row`.
    pub fn text(&self, spec: &FeatureSpec, row: &[f64], j: usize) -> String {
        let d = &spec.defs()[j];
        let reference = self.stayed.get(j).copied().flatten();
        d.text
            .render(&d.name, row[j], reference, &Row { spec, values: row })
    }

    /// Each dimension's contribution (the raw contributions `c` times Platt's slope `a`,
    /// summed by dimension) and health, and the primary driver. Allocates nothing.
    pub fn dimensions(&self, c: &[f64], a: f64) -> (DimensionScores, Option<Dimension>) {
        let mut sum = [0.0; 4];
        for (v, &d) in c.iter().zip(&self.dimension_of) {
            sum[d] += v * a;
        }
        let mut out = [DimensionScore {
            contribution: 0.0,
            health: 0.0,
        }; 4];
        for k in 0..4 {
            out[k] = DimensionScore {
                contribution: sum[k],
                health: self.health(k, sum[k]),
            };
        }
        let scores = DimensionScores::from_array(out);
        (scores, scores.primary_driver())
    }

    fn health(&self, k: usize, contribution: f64) -> f64 {
        let r = &self.reference[k];
        if r.is_empty() {
            let p = 1.0 / (1.0 + (-contribution).exp());
            return (100.0 * (1.0 - p)).round();
        }
        share_above(r, contribution)
    }

    /// Whether the texts have references to quote (a model trained with them).
    pub fn has_references(&self) -> bool {
        self.stayed.iter().any(Option::is_some)
    }
}

/// Learns what [`Explain`] needs at training: the stayers' references of every feature
/// (on the training rows `xt` with labels `yt`) and each dimension's 101 contribution
/// quantiles over the validation population (`contributions`: row-major SHAP values in
/// calibrated log-odds, one row per validation example).
pub fn learn_explain_references(
    spec: &FeatureSpec,
    xt: &[f64],
    yt: &[bool],
    contributions: &[f64],
) -> ExplainReferences {
    let stayed = crate::features::learn_references(spec, xt, yt);
    let w = spec.len().max(1);
    let mut per_dim: [Vec<f64>; 4] = Default::default();
    for row in contributions.chunks(w) {
        let mut sum = [0.0; 4];
        for (v, d) in row.iter().zip(spec.defs()) {
            sum[d.dimension.index()] += v;
        }
        for k in 0..4 {
            per_dim[k].push(sum[k]);
        }
    }
    let dimension_health_reference = Dimension::ALL
        .into_iter()
        .zip(per_dim)
        .filter(|(_, v)| !v.is_empty())
        .map(|(d, mut v)| {
            v.sort_by(f64::total_cmp);
            let q = (0..=100)
                .map(|i| v[((v.len() - 1) as f64 * i as f64 / 100.0) as usize])
                .collect();
            (d.as_str().to_string(), q)
        })
        .collect();
    ExplainReferences {
        stayed: spec
            .defs()
            .iter()
            .zip(stayed)
            .map(|(d, r)| (d.name.clone(), r))
            .collect(),
        dimension_health_reference,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scores(c: [f64; 4]) -> DimensionScores {
        DimensionScores::from_array(c.map(|contribution| DimensionScore {
            contribution,
            health: 50.0,
        }))
    }

    #[test]
    fn the_primary_driver_is_the_largest_positive_dimension_and_none_without_one() {
        assert_eq!(
            scores([0.2, 0.5, -1.0, 0.5]).primary_driver(),
            Some(Dimension::Support),
            "ties go to the first in order"
        );
        assert_eq!(scores([-0.2, 0.0, -1.0, 1e-12]).primary_driver(), None);
    }

    #[test]
    fn dimension_health_is_the_share_of_the_reference_above_and_a_sigmoid_without_one() {
        let refs = ExplainReferences {
            dimension_health_reference: [(
                "support".to_string(),
                (0..=100).map(|i| i as f64 / 100.0).collect(),
            )]
            .into(),
            ..Default::default()
        };
        let e = Explain::new(
            &crate::features::FeatureSpec::new(
                Default::default(),
                Vec::new(),
                Vec::new(),
                Vec::new(),
                None,
            ),
            Some(&refs),
        );
        assert_eq!(e.health(Dimension::Support.index(), 0.25), 75.0);
        assert_eq!(e.health(Dimension::Support.index(), 2.0), 0.0);
        assert_eq!(e.health(Dimension::Support.index(), -1.0), 100.0);
        assert_eq!(e.health(Dimension::Engagement.index(), 0.0), 50.0);
        assert_eq!(e.health(Dimension::Engagement.index(), 1.0), 27.0);
    }
}
