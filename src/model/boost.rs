//! Gradient-boosted trees and random forests, both fitted with hessboost
//! (XGBoost-style histogram trees, multi-threaded, native missing values).
//!
//! The forest is hessboost's random-forest mode: one boosting round of many
//! parallel trees on row and column samples, so it has real probabilities and uses
//! both cores. Scores and exact TreeSHAP explanations are computed by walking the trees
//! ourselves ([`super::treeshap`], node cover = hessboost's hessian sums), in one pass
//! that gives the margin too; the tests check the walk against hessboost's own
//! prediction and the contributions against brute-force Shapley values.

use super::logistic::normalise;
use super::treeshap::{self, Ensemble};
use super::Classifier;
use crate::{Error, Result};
use hessboost::prelude::*;
use serde::{Deserialize, Serialize};
use std::num::NonZeroUsize;
use std::sync::Arc;

/// Hyper-parameters, XGBoost's names and meanings.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct BoostParams {
    /// Boosting rounds (trees) at most; early stopping may keep fewer.
    pub rounds: usize,
    pub eta: f64,
    pub max_depth: u32,
    pub subsample: f64,
    pub colsample: f64,
    pub min_child_weight: f64,
    pub lambda: f64,
    /// Stop after this many rounds without improvement on the early-stopping set.
    pub early_stopping_rounds: usize,
    /// Random-forest mode: `rounds` parallel trees in one round, `eta = 1`.
    pub forest: bool,
    pub seed: u64,
}

impl BoostParams {
    /// Defaults for gradient boosting.
    pub fn gbdt() -> Self {
        BoostParams {
            rounds: 300,
            eta: 0.05,
            max_depth: 6,
            subsample: 0.8,
            colsample: 0.8,
            min_child_weight: 5.0,
            lambda: 1.0,
            early_stopping_rounds: 30,
            forest: false,
            seed: 7,
        }
    }

    /// Defaults for the random forest.
    pub fn forest() -> Self {
        BoostParams {
            rounds: 100,
            eta: 1.0,
            max_depth: 8,
            subsample: 0.632,
            colsample: 0.6,
            min_child_weight: 5.0,
            lambda: 1.0,
            early_stopping_rounds: 0,
            forest: true,
            seed: 7,
        }
    }
}

/// A fitted boosted model (gbdt or forest). Serialised as hessboost's native bytes.
#[derive(Clone, Serialize, Deserialize)]
pub struct BoostModel {
    pub params: BoostParams,
    pub n_features: usize,
    /// Trees actually used (after early stopping).
    pub n_trees: usize,
    /// hessboost's native binary model.
    pub bytes: Vec<u8>,
    #[serde(skip)]
    state: Option<Arc<(BoostedModel, Ensemble, f64)>>,
}

impl std::fmt::Debug for BoostModel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BoostModel")
            .field("params", &self.params)
            .field("n_features", &self.n_features)
            .field("n_trees", &self.n_trees)
            .field("bytes", &self.bytes.len())
            .finish()
    }
}

fn hb(e: hessboost::prelude::HessboostError) -> Error {
    Error::Train(format!("gradient boosting: {e}"))
}

fn dmatrix(x: &[f64], width: usize, y: &[bool]) -> Result<DMatrix> {
    let xs: Vec<f32> = x.iter().map(|&v| v as f32).collect();
    let ys: Vec<f32> = y.iter().map(|&l| f32::from(u8::from(l))).collect();
    DMatrix::from_dense_vec(xs, y.len(), width)
        .and_then(|d| d.with_labels(&ys))
        .map_err(hb)
}

impl BoostModel {
    /// Fits on a row-major matrix; `early` is the early-stopping set (gbdt only).
    pub fn fit(
        x: &[f64],
        width: usize,
        y: &[bool],
        early: Option<(&[f64], &[bool])>,
        params: &BoostParams,
    ) -> Result<Self> {
        if params.rounds == 0 || !(0.0..=1.0).contains(&params.eta) || params.eta == 0.0 {
            return Err(Error::Config(
                "boosting needs rounds >= 1 and 0 < eta <= 1".into(),
            ));
        }
        let dtrain = dmatrix(x, width, y)?;
        let mut builder = TrainingParams::builder()
            .objective(Objective::BinaryLogistic(RegLoss::default()))
            .tree_method(TreeMethod::Hist)
            .max_depth(params.max_depth as usize)
            .eta(if params.forest { 1.0 } else { params.eta })
            .subsample(params.subsample)
            .min_child_weight(params.min_child_weight)
            .lambda(params.lambda)
            .seed(params.seed)
            .eval_metric(hessboost::metric::EvalMetric::LogLoss);
        builder = if params.forest {
            builder
                .colsample_bynode(params.colsample)
                .num_parallel_tree(params.rounds)
        } else {
            builder.colsample_bytree(params.colsample)
        };
        let tp = builder.build().map_err(hb)?;
        let rounds = if params.forest { 1 } else { params.rounds };
        let model = match (
            early,
            params.forest,
            NonZeroUsize::new(params.early_stopping_rounds),
        ) {
            (Some((ex, ey)), false, Some(patience)) if !ey.is_empty() => {
                let dvalid = dmatrix(ex, width, ey)?;
                Trainer::new(&tp, &dtrain, rounds)
                    .eval(&dvalid, "early_stopping")
                    .early_stopping_rounds(patience)
                    .train()
                    .map_err(hb)?
                    .model
            }
            _ => train(&tp, &dtrain, rounds).map_err(hb)?,
        };
        let per_iter = model.trees_per_iteration().max(1);
        let n_trees = match model.best_iteration() {
            Some(b) => ((b + 1) * per_iter).min(model.num_trees()),
            None => model.num_trees(),
        };
        let bytes = model.encode(ModelFormat::Binary).map_err(hb)?;
        let mut m = BoostModel {
            params: *params,
            n_features: width,
            n_trees,
            bytes,
            state: None,
        };
        m.restore()?;
        Ok(m)
    }

    /// Decodes the native bytes and lays out the trees for scoring.
    pub fn restore(&mut self) -> Result<()> {
        let model = BoostedModel::decode(&self.bytes, ModelFormat::Binary)
            .map_err(|e| Error::Artifact(format!("boosted model does not decode: {e}")))?;
        let forest = Ensemble::build(&shap_trees(&model, self.n_trees), self.n_features)?;
        // The intercept is whatever hessboost adds on top of the trees.
        let zero = vec![0.0f64; self.n_features];
        let zero32 = vec![0.0f32; self.n_features];
        let hb_margin = model
            .predict_margin_row(&zero32, Iterations::Best)
            .map_err(|e| Error::Artifact(format!("boosted model: {e}")))?
            as f64;
        let sum = forest.sum(&zero);
        self.state = Some(Arc::new((model, forest, hb_margin - sum)));
        Ok(())
    }

    fn state(&self) -> &(BoostedModel, Ensemble, f64) {
        self.state
            .as_deref()
            .expect("BoostModel::restore runs when the model is fitted or loaded")
    }

    /// The base value of the contributions: hessboost's intercept plus every tree's
    /// cover-weighted expected value, in the margin space.
    pub fn bias(&self) -> f64 {
        let (_, forest, bias) = self.state();
        bias + forest.expected()
    }

    /// The bound on `|bias + sum(contributions) - margin|` (float rounding only):
    /// `1e-10 * (|intercept| + sum over trees of the largest |leaf value|)`.
    pub fn local_accuracy_bound(&self) -> f64 {
        let (_, forest, bias) = self.state();
        forest.local_accuracy_bound(*bias)
    }

    /// The trees as [`treeshap::Node`]s in hessboost's node order (for the export).
    pub(crate) fn shap_trees(&self) -> Vec<Vec<treeshap::Node>> {
        shap_trees(&self.state().0, self.n_trees)
    }

    /// The intercept hessboost adds on top of the trees (margin space).
    pub(crate) fn intercept(&self) -> f64 {
        self.state().2
    }

    /// hessboost's own margin for a row (used to check our tree walk).
    pub fn native_margin(&self, row: &[f64]) -> Result<f64> {
        let r: Vec<f32> = row.iter().map(|&v| v as f32).collect();
        self.state()
            .0
            .predict_margin_row(&r, Iterations::Best)
            .map(f64::from)
            .map_err(|e| Error::Artifact(format!("boosted model: {e}")))
    }
}

/// The first `n_trees` trees of `model`, in hessboost's node order, with the tree weight
/// folded into the leaf values and hessboost's strict f32 split (`(x as f32) < cond`)
/// written as the equivalent non-strict f64 threshold.
fn shap_trees(model: &BoostedModel, n_trees: usize) -> Vec<Vec<treeshap::Node>> {
    let weights: Vec<f32> = model.tree_weights().collect();
    model
        .trees()
        .iter()
        .take(n_trees)
        .enumerate()
        .map(|(t, tree)| {
            let weight = weights.get(t).copied().unwrap_or(1.0) as f64;
            tree.nodes()
                .iter()
                .map(|x| treeshap::Node {
                    feature: x.split_feature as usize,
                    threshold: treeshap::strict_f32_as_le(x.split_cond),
                    default_left: x.default_left,
                    children: (!x.is_leaf()).then_some((x.left as usize, x.right as usize)),
                    value: weight * x.leaf_value as f64,
                    cover: x.sum_hess as f64,
                })
                .collect()
        })
        .collect()
}

impl Classifier for BoostModel {
    fn margin(&self, row: &[f64]) -> f64 {
        let (_, forest, bias) = self.state();
        bias + forest.sum(row)
    }

    fn contributions(&self, row: &[f64], out: &mut [f64]) -> f64 {
        self.margin_and_contributions(row, out);
        self.bias()
    }

    fn margin_and_contributions(&self, row: &[f64], out: &mut [f64]) -> f64 {
        let (_, forest, bias) = self.state();
        out.iter_mut().for_each(|c| *c = 0.0);
        let mut sum = [0.0];
        forest.explain(row, out, &mut sum);
        bias + sum[0]
    }

    fn explain_rows(&self, x: &[f64], margins: &mut [f64], contributions: &mut [f64]) {
        let (_, forest, bias) = self.state();
        contributions.iter_mut().for_each(|c| *c = 0.0);
        forest.explain(x, contributions, margins);
        margins.iter_mut().for_each(|m| *m += bias);
    }

    fn importance(&self) -> Vec<f64> {
        let (model, _, _) = self.state();
        let mut v = vec![0.0; self.n_features];
        for (f, g) in model.feature_importance(ImportanceType::TotalGain) {
            if f < v.len() {
                v[f] = g.max(0.0);
            }
        }
        normalise(v)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn data(n: usize) -> (Vec<f64>, Vec<bool>) {
        let mut x = Vec::new();
        let mut y = Vec::new();
        let mut s = 12345u64;
        let mut rnd = || {
            s = s
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            (s >> 11) as f64 / (1u64 << 53) as f64
        };
        for _ in 0..n {
            let a = rnd();
            let b = rnd();
            let c = if rnd() < 0.1 { f64::NAN } else { rnd() };
            x.extend([a, b, c]);
            y.push(rnd() < 0.1 + 0.6 * a * (1.0 - b));
        }
        (x, y)
    }

    #[test]
    fn our_tree_walk_matches_hessboost_and_contributions_add_up() {
        let (x, y) = data(3000);
        for params in [
            BoostParams {
                rounds: 40,
                ..BoostParams::gbdt()
            },
            BoostParams {
                rounds: 20,
                ..BoostParams::forest()
            },
        ] {
            let m = BoostModel::fit(&x, 3, &y, None, &params).unwrap();
            let mut c = [0.0; 3];
            for row in x.chunks(3).take(200) {
                let ours = m.margin(row);
                let theirs = m.native_margin(row).unwrap();
                assert!(
                    (ours - theirs).abs() < 1e-3,
                    "{ours} vs {theirs} (forest: {})",
                    params.forest
                );
                let bias = m.contributions(row, &mut c);
                assert!((bias + c.iter().sum::<f64>() - ours).abs() < 1e-9);
            }
        }
    }

    /// Five features (one often undefined) for the brute-force checks.
    fn data5(n: usize) -> (Vec<f64>, Vec<bool>) {
        let (x3, y) = data(n);
        let mut x = Vec::with_capacity(n * 5);
        for (i, r) in x3.chunks(3).enumerate() {
            let d = ((i * 7919) % 13) as f64 / 13.0;
            x.extend([r[0], r[1], r[2], d, (r[0] + d) / 2.0]);
        }
        (x, y)
    }

    #[test]
    fn contributions_are_exact_shapley_values_and_add_up_to_the_margin() {
        let (x, y) = data5(2000);
        for params in [
            BoostParams {
                rounds: 12,
                max_depth: 4,
                ..BoostParams::gbdt()
            },
            BoostParams {
                rounds: 6,
                max_depth: 5,
                ..BoostParams::forest()
            },
        ] {
            let m = BoostModel::fit(&x, 5, &y, None, &params).unwrap();
            let trees = m.shap_trees();
            let mut c = [0.0; 5];
            for row in x.chunks(5).take(40) {
                let (bias, phi) = treeshap::brute::shapley(&trees, row, 5);
                let margin = m.margin_and_contributions(row, &mut c);
                assert_eq!(margin.to_bits(), m.margin(row).to_bits());
                assert!((m.bias() - (bias + m.intercept())).abs() < 1e-9);
                for j in 0..5 {
                    assert!((c[j] - phi[j]).abs() < 1e-9, "{j}: {} vs {}", c[j], phi[j]);
                }
                let total = m.bias() + c.iter().sum::<f64>();
                assert!((total - margin).abs() <= m.local_accuracy_bound());
                assert_eq!(m.contributions(row, &mut c).to_bits(), m.bias().to_bits());
            }
        }
    }

    #[test]
    fn contributions_agree_with_hessboosts_own_treeshap() {
        // hessboost computes path-dependent TreeSHAP independently, in f32.
        let (x, y) = data5(3000);
        let m = BoostModel::fit(
            &x,
            5,
            &y,
            None,
            &BoostParams {
                rounds: 60,
                ..BoostParams::gbdt()
            },
        )
        .unwrap();
        let n = 300;
        let d = dmatrix(&x[..n * 5], 5, &y[..n]).unwrap();
        let theirs = m.state().0.predict_contribs(&d, Iterations::Best).unwrap();
        let mut margins = vec![0.0; n];
        let mut ours = vec![0.0; n * 5];
        m.explain_rows(&x[..n * 5], &mut margins, &mut ours);
        for i in 0..n {
            let t = theirs.get(i, 0).unwrap();
            for j in 0..5 {
                let (a, b) = (ours[i * 5 + j], t[j] as f64);
                assert!((a - b).abs() < 2e-3, "row {i} feature {j}: {a} vs {b}");
            }
            assert!((m.bias() - t[5] as f64).abs() < 2e-3);
        }
    }

    #[test]
    fn a_reloaded_model_scores_bit_for_bit_the_same() {
        let (x, y) = data(2000);
        let m = BoostModel::fit(
            &x,
            3,
            &y,
            None,
            &BoostParams {
                rounds: 30,
                ..BoostParams::gbdt()
            },
        )
        .unwrap();
        let bytes = postcard::to_allocvec(&m).unwrap();
        let mut back: BoostModel = postcard::from_bytes(&bytes).unwrap();
        back.restore().unwrap();
        for row in x.chunks(3).take(100) {
            assert_eq!(m.margin(row).to_bits(), back.margin(row).to_bits());
        }
    }
}
