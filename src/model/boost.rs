//! Gradient-boosted trees and random forests, both fitted with hessboost
//! (XGBoost-style histogram trees, multi-threaded, native missing values).
//!
//! The forest is hessboost's random-forest mode: one boosting round of many
//! parallel trees on row and column samples, so it has real probabilities and uses
//! both cores. Scores are computed by walking the trees ourselves (the test below
//! checks the walk against hessboost's own prediction) and explained by exact
//! TreeSHAP over the same nodes, so `bias + sum(contributions)` is the margin up to
//! float rounding.

use super::logistic::normalise;
use super::shap_export::{export_tree, leq_threshold_of_f32_less, ShapTreeDict};
use super::treeshap::{add_tree_shap, RowBlock, ShapScratch, ShapTables, ShapTree};
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

/// One node of the forest, laid out contiguously (all trees in one array) so a
/// row's walk through hundreds of trees stays in cache.
#[derive(Debug, Clone, Copy)]
struct FlatNode {
    cond: f32,
    feature: u32,
    /// Absolute indexes of the children; `LEAF` for a leaf.
    left: u32,
    right: u32,
    default_left: bool,
    /// Leaf value for leaves, cover-weighted expected value for inner nodes; both
    /// already multiplied by the tree's weight.
    value: f64,
}

const LEAF: u32 = u32::MAX;

/// Every tree's nodes, and where each tree's root is.
#[derive(Debug, Clone, Default)]
struct Forest {
    nodes: Vec<FlatNode>,
    /// Training cover (hessian sum) of each node, for TreeSHAP; apart from the
    /// nodes so that scoring's walk keeps 32-byte nodes.
    covers: Vec<f64>,
    roots: Vec<u32>,
    /// Edges from a root to the deepest leaf, over every tree.
    max_depth: usize,
    shap: ShapTables,
}

impl ShapTree for Forest {
    fn children(&self, k: usize) -> Option<(usize, usize)> {
        let n = &self.nodes[k];
        (n.left != LEAF).then_some((n.left as usize, n.right as usize))
    }
    fn feature(&self, k: usize) -> usize {
        self.nodes[k].feature as usize
    }
    fn cover(&self, k: usize) -> f64 {
        self.covers[k]
    }
    fn leaf_value(&self, k: usize) -> f64 {
        self.nodes[k].value
    }
    fn goes_left(&self, k: usize, row: &[f64]) -> bool {
        self.next(k, row) == self.nodes[k].left as usize
    }
    fn threshold(&self, k: usize) -> f64 {
        leq_threshold_of_f32_less(self.nodes[k].cond)
    }
    fn f32_split(&self, k: usize) -> Option<(usize, f32, bool)> {
        let n = &self.nodes[k];
        Some((n.feature as usize, n.cond, n.default_left))
    }
}

impl Forest {
    #[inline]
    fn next(&self, k: usize, row: &[f64]) -> usize {
        let n = &self.nodes[k];
        let v = row[n.feature as usize];
        let left = if v.is_nan() {
            n.default_left
        } else {
            (v as f32) < n.cond
        };
        (if left { n.left } else { n.right }) as usize
    }

    /// The value of the leaf a row reaches in the tree rooted at `root`.
    #[inline]
    fn leaf(&self, root: u32, row: &[f64]) -> f64 {
        let mut k = root as usize;
        while self.nodes[k].left != LEAF {
            k = self.next(k, row);
        }
        self.nodes[k].value
    }

    /// The sum of the leaf values a row reaches.
    fn sum(&self, row: &[f64]) -> f64 {
        let mut total = 0.0;
        for &root in &self.roots {
            total += self.leaf(root, row);
        }
        total
    }

    /// One walk for a block of rows (`x` row-major, `width` a row): each row's sum of
    /// leaf values, the same bits as [`Forest::sum`] (the same leaves added in the same
    /// order, starting from 0), and its SHAP values added into `phi`. A tree with
    /// tables gives both from one set of comparisons ([`ShapTables::add_rows`]); the
    /// others are walked and explained by the recursion.
    fn sums_and_shap(&self, x: &[f64], width: usize, phi: &mut [f64]) -> Vec<f64> {
        let mut sums = vec![0.0f64; x.len().checked_div(width).unwrap_or(0)];
        let mut scratch = ShapScratch::default();
        // The block holds the SHAP values while the trees add to them (its layout adds
        // faster); a tree without tables works on a copy of one row's at a time.
        let mut block = RowBlock::new(x, width);
        block.load_phi(phi);
        let mut row_phi = vec![0.0; width];
        // Tree by tree (its tables stay in cache for the block).
        for (t, &root) in self.roots.iter().enumerate() {
            if self.shap.has(t) {
                self.shap.add_rows(t, &mut block, &mut sums);
                continue;
            }
            for (r, (row, sum)) in x.chunks(width).zip(&mut sums).enumerate() {
                *sum += self.leaf(root, row);
                block.phi_row(r, &mut row_phi);
                add_tree_shap(
                    self,
                    root as usize,
                    self.max_depth,
                    row,
                    &mut row_phi,
                    &mut scratch,
                );
                block.set_phi_row(r, &row_phi);
            }
        }
        block.store_phi(phi);
        sums
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
    state: Option<Arc<(BoostedModel, Forest, f64)>>,
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
        let weights: Vec<f32> = model.tree_weights().collect();
        let mut forest = Forest::default();
        for (t, tree) in model.trees().iter().take(self.n_trees).enumerate() {
            let nodes = tree.nodes();
            let n = nodes.len();
            let weight = weights.get(t).copied().unwrap_or(1.0) as f64;
            // Expected values bottom-up: children always follow their parent.
            let mut value = vec![0.0f64; n];
            let mut cover = vec![0.0f64; n];
            for k in (0..n).rev() {
                if nodes[k].is_leaf() {
                    value[k] = nodes[k].leaf_value as f64;
                    cover[k] = (nodes[k].sum_hess as f64).max(1e-12);
                } else {
                    let (l, r) = (nodes[k].left as usize, nodes[k].right as usize);
                    let c = cover[l] + cover[r];
                    value[k] = (value[l] * cover[l] + value[r] * cover[r]) / c.max(1e-12);
                    cover[k] = c;
                }
            }
            let base = forest.nodes.len() as u32;
            forest.roots.push(base);
            forest.covers.extend_from_slice(&cover);
            let mut depth = vec![0usize; n];
            for k in 0..n {
                if !nodes[k].is_leaf() {
                    depth[nodes[k].left as usize] = depth[k] + 1;
                    depth[nodes[k].right as usize] = depth[k] + 1;
                }
            }
            forest.max_depth = forest
                .max_depth
                .max(depth.iter().copied().max().unwrap_or(0));
            let child = |c: i32| if c < 0 { LEAF } else { base + c as u32 };
            forest
                .nodes
                .extend(nodes.iter().zip(&value).map(|(x, &v)| FlatNode {
                    cond: x.split_cond,
                    feature: x.split_feature,
                    left: if x.is_leaf() { LEAF } else { child(x.left) },
                    right: if x.is_leaf() { LEAF } else { child(x.right) },
                    default_left: x.default_left,
                    value: weight * v,
                }));
        }
        let mut shap = ShapTables::default();
        for &root in &forest.roots {
            shap.push_tree(&forest, root as usize);
        }
        forest.shap = shap;
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

    fn state(&self) -> &(BoostedModel, Forest, f64) {
        self.state
            .as_deref()
            .expect("BoostModel::restore runs when the model is fitted or loaded")
    }

    /// Every tree in shap's custom-model form, values times `scale`, and the
    /// intercept the trees' sum is offset by (before scaling).
    pub(crate) fn shap_trees(&self, scale: f64) -> (Vec<ShapTreeDict>, f64) {
        let (_, forest, bias) = self.state();
        let trees = forest
            .roots
            .iter()
            .map(|&r| export_tree(forest, r as usize, self.n_features, scale))
            .collect();
        (trees, *bias)
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

impl Classifier for BoostModel {
    fn margin(&self, row: &[f64]) -> f64 {
        let (_, forest, bias) = self.state();
        bias + forest.sum(row)
    }

    fn contributions(&self, row: &[f64], out: &mut [f64]) -> f64 {
        let (_, forest, bias) = self.state();
        out.iter_mut().for_each(|c| *c = 0.0);
        if !row.is_empty() {
            forest.sums_and_shap(row, row.len(), out);
        }
        // An inner node's value is its subtree's cover-weighted mean, so the root's is
        // the tree's expected value.
        let mut expected = *bias;
        for &root in &forest.roots {
            expected += forest.nodes[root as usize].value;
        }
        expected
    }

    fn margin_and_contributions(&self, row: &[f64], out: &mut [f64]) -> f64 {
        let (_, forest, bias) = self.state();
        out.iter_mut().for_each(|c| *c = 0.0);
        if row.is_empty() {
            return bias + forest.sum(row);
        }
        bias + forest.sums_and_shap(row, row.len(), out)[0]
    }

    /// One walk gives the margins and the contributions (see [`Forest::sums_and_shap`]):
    /// the margins are the bits [`Classifier::margin`] gives; `bias + sum(out)` of a row
    /// equals its margin up to the rounding of the contributions' sums (at most 1e-9 in
    /// the tests; BENCHMARKS.md gives the largest difference measured on a 74k base).
    fn margins_and_contributions(&self, x: &[f64], width: usize, out: &mut [f64]) -> Vec<f64> {
        let (_, forest, bias) = self.state();
        if width == 0 {
            return Vec::new();
        }
        out.iter_mut().for_each(|c| *c = 0.0);
        let sums = forest.sums_and_shap(x, width, out);
        sums.into_iter().map(|s| bias + s).collect()
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
    use super::super::treeshap::tests::brute_force;
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
            // A block gives the same bits as row by row.
            let block = &x[..3 * 50];
            let mut cb = vec![0.0; block.len()];
            let margins = m.margins_and_contributions(block, 3, &mut cb);
            for (i, row) in block.chunks(3).enumerate() {
                assert_eq!(
                    margins[i].to_bits(),
                    m.margin_and_contributions(row, &mut c).to_bits()
                );
                for j in 0..3 {
                    assert_eq!(cb[i * 3 + j].to_bits(), c[j].to_bits());
                }
            }
            // Exact Shapley values, tree by tree, against subset enumeration.
            let (_, forest, _) = m.state();
            for row in x.chunks(3).take(20) {
                m.contributions(row, &mut c);
                let mut want = [0.0; 3];
                for &root in &forest.roots {
                    let phi = brute_force(forest, root as usize, row, 3);
                    (0..3).for_each(|j| want[j] += phi[j]);
                }
                for j in 0..3 {
                    assert!((c[j] - want[j]).abs() < 1e-9, "{c:?} vs {want:?}");
                }
            }
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
