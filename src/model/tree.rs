//! A single depth-limited decision tree a person can read.
//!
//! smartcore's `DecisionTreeClassifier` finds the splits, but its `predict_proba`
//! returns 0/1 (the leaf's majority class), which throws away ranking. We keep its
//! structure and estimate every node's churn probability from the training rows that
//! reach it (smoothed towards the parent), which gives real probabilities, readable
//! rules and exact TreeSHAP explanations.

use super::logistic::normalise;
use super::shap_export::{export_tree, ShapTreeDict};
use super::treeshap::{add_tree_shap, expected_value, ShapScratch, ShapTree};
use super::{Classifier, Preprocessor};
use crate::{Error, Result};
use serde::{Deserialize, Serialize};
use smartcore::linalg::basic::matrix::DenseMatrix;
use smartcore::tree::decision_tree_classifier::{
    DecisionTreeClassifier, DecisionTreeClassifierParameters,
};

/// Hyper-parameters.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct TreeParams {
    pub max_depth: u16,
    /// Minimum rows in a leaf, as a share of the training rows (at least 20 rows).
    pub min_leaf_share: f64,
    /// At most this many training rows are used (a deterministic sample).
    pub max_rows: usize,
}

impl Default for TreeParams {
    fn default() -> Self {
        TreeParams {
            max_depth: 5,
            min_leaf_share: 0.005,
            max_rows: 300_000,
        }
    }
}

/// One node: a split (`x[feature] <= threshold` goes left) or a leaf.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Node {
    pub feature: usize,
    pub threshold: f64,
    pub left: Option<usize>,
    pub right: Option<usize>,
    /// Smoothed churn probability of training rows reaching this node.
    pub prob: f64,
    /// Training rows reaching this node.
    pub rows: usize,
}

/// A fitted tree.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TreeModel {
    pub pre: Preprocessor,
    pub nodes: Vec<Node>,
}

fn logit(p: f64) -> f64 {
    let p = p.clamp(1e-6, 1.0 - 1e-6);
    (p / (1.0 - p)).ln()
}

impl TreeModel {
    /// Fits on a row-major matrix (missing values imputed with training medians).
    pub fn fit(
        x: &[f64],
        width: usize,
        y: &[bool],
        pre: Preprocessor,
        params: &TreeParams,
    ) -> Result<Self> {
        if params.max_depth == 0 || params.max_depth > 12 {
            return Err(Error::Config("tree max_depth must be 1..=12".into()));
        }
        let n = y.len();
        let step = n.div_ceil(params.max_rows.max(1)).max(1);
        let rows: Vec<usize> = (0..n).step_by(step).collect();
        let m = rows.len();
        let mut values = Vec::with_capacity(m * width);
        for &i in &rows {
            values.extend((0..width).map(|j| pre.impute(j, x[i * width + j])));
        }
        let ys: Vec<u32> = rows.iter().map(|&i| u32::from(y[i])).collect();
        let dm = DenseMatrix::new(m, width, values.clone(), false)
            .map_err(|e| Error::Train(format!("tree: {e}")))?;
        let min_leaf = ((m as f64 * params.min_leaf_share) as usize).max(20);
        let p = DecisionTreeClassifierParameters::default()
            .with_max_depth(params.max_depth)
            .with_min_samples_leaf(min_leaf)
            .with_min_samples_split(2 * min_leaf);
        let fitted = DecisionTreeClassifier::fit(&dm, &ys, p)
            .map_err(|e| Error::Train(format!("decision tree: {e}")))?;
        // smartcore keeps its nodes private; its serde form is the documented way out.
        let json = serde_json::to_value(&fitted)
            .map_err(|e| Error::Train(format!("decision tree structure: {e}")))?;
        let raw = json
            .get("nodes")
            .and_then(|v| v.as_array())
            .ok_or_else(|| Error::Train("decision tree has no nodes".into()))?;
        let mut nodes: Vec<Node> = raw
            .iter()
            .map(|n| {
                let child = |k: &str| n.get(k).and_then(|v| v.as_u64()).map(|v| v as usize);
                Node {
                    feature: n.get("split_feature").and_then(|v| v.as_u64()).unwrap_or(0) as usize,
                    threshold: n
                        .get("split_value")
                        .and_then(|v| v.as_f64())
                        .unwrap_or(f64::NAN),
                    left: child("true_child"),
                    right: child("false_child"),
                    prob: 0.0,
                    rows: 0,
                }
            })
            .collect();
        if nodes.is_empty() {
            return Err(Error::Train("decision tree has no nodes".into()));
        }
        // Route every sampled row down the tree, counting rows and churners per node.
        let mut pos = vec![0usize; nodes.len()];
        for (r, &label) in ys.iter().enumerate() {
            let row = &values[r * width..(r + 1) * width];
            let mut k = 0;
            loop {
                nodes[k].rows += 1;
                pos[k] += label as usize;
                match (nodes[k].left, nodes[k].right) {
                    (Some(l), Some(rt)) => {
                        k = if row[nodes[k].feature] <= nodes[k].threshold {
                            l
                        } else {
                            rt
                        }
                    }
                    _ => break,
                }
            }
        }
        // Smoothed estimates, parents first (children have larger indexes in smartcore).
        let prior_strength = 20.0;
        let root = (pos[0] as f64 + 0.5) / (nodes[0].rows as f64 + 1.0);
        nodes[0].prob = root;
        let order = Self::preorder(&nodes);
        for k in order {
            let parent = nodes[k].prob;
            for c in [nodes[k].left, nodes[k].right].into_iter().flatten() {
                nodes[c].prob = (pos[c] as f64 + prior_strength * parent)
                    / (nodes[c].rows as f64 + prior_strength);
            }
        }
        Ok(TreeModel { pre, nodes })
    }

    fn preorder(nodes: &[Node]) -> Vec<usize> {
        let mut out = Vec::with_capacity(nodes.len());
        let mut stack = vec![0];
        while let Some(k) = stack.pop() {
            out.push(k);
            stack.extend([nodes[k].right, nodes[k].left].into_iter().flatten());
        }
        out
    }

    /// Edges from the root to the deepest leaf.
    fn depth(&self) -> usize {
        let mut deepest = 0;
        let mut stack = vec![(0usize, 0usize)];
        while let Some((k, d)) = stack.pop() {
            deepest = deepest.max(d);
            if let (Some(l), Some(r)) = (self.nodes[k].left, self.nodes[k].right) {
                stack.extend([(l, d + 1), (r, d + 1)]);
            }
        }
        deepest
    }

    /// The path of node indexes a row takes from the root to its leaf.
    fn path(&self, row: &[f64]) -> Vec<usize> {
        let mut k = 0;
        let mut path = vec![0];
        while let (Some(l), Some(r)) = (self.nodes[k].left, self.nodes[k].right) {
            let f = self.nodes[k].feature;
            k = if self.pre.impute(f, row[f]) <= self.nodes[k].threshold {
                l
            } else {
                r
            };
            path.push(k);
        }
        path
    }

    /// The tree in shap's custom-model form, values times `scale`.
    pub(crate) fn shap_tree(&self, scale: f64) -> ShapTreeDict {
        export_tree(self, 0, self.pre.medians.len(), scale)
    }

    /// The tree as indented text rules, for the report.
    pub fn rules(&self, names: &[&str]) -> String {
        let mut out = String::new();
        self.write_rules(0, 0, names, &mut out);
        out
    }

    fn write_rules(&self, k: usize, depth: usize, names: &[&str], out: &mut String) {
        let n = &self.nodes[k];
        let pad = "  ".repeat(depth);
        match (n.left, n.right) {
            (Some(l), Some(r)) => {
                let name = names.get(n.feature).copied().unwrap_or("?");
                out.push_str(&format!(
                    "{pad}if {name} <= {:.4} ({} rows, churn {:.1}%)\n",
                    n.threshold,
                    n.rows,
                    100.0 * n.prob
                ));
                self.write_rules(l, depth + 1, names, out);
                out.push_str(&format!("{pad}else ({name} > {:.4})\n", n.threshold));
                self.write_rules(r, depth + 1, names, out);
            }
            _ => out.push_str(&format!(
                "{pad}-> churn {:.1}% ({} rows)\n",
                100.0 * n.prob,
                n.rows
            )),
        }
    }
}

impl ShapTree for TreeModel {
    fn children(&self, k: usize) -> Option<(usize, usize)> {
        match (self.nodes[k].left, self.nodes[k].right) {
            (Some(l), Some(r)) => Some((l, r)),
            _ => None,
        }
    }
    fn feature(&self, k: usize) -> usize {
        self.nodes[k].feature
    }
    fn cover(&self, k: usize) -> f64 {
        // Every node holds training rows (smartcore's minimum leaf size); the floor
        // only keeps a hand-edited artifact from dividing by zero.
        (self.nodes[k].rows as f64).max(1e-9)
    }
    fn leaf_value(&self, k: usize) -> f64 {
        logit(self.nodes[k].prob)
    }
    fn goes_left(&self, k: usize, row: &[f64]) -> bool {
        let f = self.nodes[k].feature;
        self.pre.impute(f, row[f]) <= self.nodes[k].threshold
    }
    fn threshold(&self, k: usize) -> f64 {
        self.nodes[k].threshold
    }
}

impl Classifier for TreeModel {
    fn margin(&self, row: &[f64]) -> f64 {
        let leaf = *self.path(row).last().expect("a path has a root");
        logit(self.nodes[leaf].prob)
    }

    fn contributions(&self, row: &[f64], out: &mut [f64]) -> f64 {
        out.iter_mut().for_each(|c| *c = 0.0);
        let mut scratch = ShapScratch::default();
        add_tree_shap(self, 0, self.depth(), row, out, &mut scratch);
        expected_value(self, 0)
    }

    fn importance(&self) -> Vec<f64> {
        // Weighted decrease in Gini impurity per feature.
        let mut imp = vec![0.0; self.pre.medians.len()];
        let gini = |p: f64| 2.0 * p * (1.0 - p);
        for n in &self.nodes {
            if let (Some(l), Some(r)) = (n.left, n.right) {
                let (nl, nr) = (&self.nodes[l], &self.nodes[r]);
                let dec = n.rows as f64 * gini(n.prob)
                    - nl.rows as f64 * gini(nl.prob)
                    - nr.rows as f64 * gini(nr.prob);
                if n.feature < imp.len() {
                    imp[n.feature] += dec.max(0.0);
                }
            }
        }
        normalise(imp)
    }
}

#[cfg(test)]
mod tests {
    use super::super::treeshap::tests::brute_force;
    use super::*;

    #[test]
    fn reasons_are_exact_shapley_values_of_the_fitted_tree() {
        let mut s = 99u64;
        let mut rnd = || {
            s = s
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            (s >> 11) as f64 / (1u64 << 53) as f64
        };
        let (mut x, mut y) = (Vec::new(), Vec::new());
        for _ in 0..4000 {
            let (a, b) = (rnd(), rnd());
            let c = if rnd() < 0.2 { f64::NAN } else { rnd() };
            x.extend([a, b, c]);
            y.push(rnd() < 0.05 + 0.5 * a * b + 0.2 * c.max(0.0));
        }
        let pre = Preprocessor {
            log1p: vec![false; 3],
            medians: vec![0.5; 3],
            means: vec![0.5; 3],
            stds: vec![0.3; 3],
        };
        let params = TreeParams {
            max_depth: 4,
            min_leaf_share: 0.01,
            max_rows: 10_000,
        };
        let m = TreeModel::fit(&x, 3, &y, pre, &params).unwrap();
        assert!(m.depth() >= 2, "the fixture must grow a real tree");
        let mut c = [0.0; 3];
        for row in x.chunks(3).take(100) {
            let bias = m.contributions(row, &mut c);
            let want = brute_force(&m, 0, row, 3);
            for j in 0..3 {
                assert!((c[j] - want[j]).abs() < 1e-12, "{c:?} vs {want:?}");
            }
            assert!((bias + c.iter().sum::<f64>() - m.margin(row)).abs() < 1e-12);
        }
    }
}
