//! A single depth-limited decision tree a person can read.
//!
//! smartcore's `DecisionTreeClassifier` finds the splits, but its `predict_proba`
//! returns 0/1 (the leaf's majority class), which throws away ranking. We keep its
//! structure and estimate every node's churn probability from the training rows that
//! reach it (smoothed towards the parent), which gives real probabilities, readable
//! rules and exact TreeSHAP contributions (leaf values are the leaves' log-odds, node
//! cover is the number of training rows reaching the node).

use super::logistic::normalise;
use super::treeshap::{self, Ensemble};
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
    /// The tree laid out for TreeSHAP, built on first use (not serialised).
    #[serde(skip)]
    shap: ShapCache,
}

/// Derived state that is not part of the model's identity.
#[derive(Debug, Clone, Default)]
struct ShapCache(std::sync::OnceLock<Box<Ensemble>>);

impl PartialEq for ShapCache {
    fn eq(&self, _: &Self) -> bool {
        true
    }
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
        Ok(TreeModel {
            pre,
            nodes,
            shap: ShapCache::default(),
        })
    }

    /// The tree as [`treeshap::Node`]s in `nodes` order: leaf values are log-odds, covers
    /// are training rows, and an undefined value goes where its imputed median goes.
    pub(crate) fn shap_nodes(&self) -> Vec<treeshap::Node> {
        self.nodes
            .iter()
            .map(|n| {
                let children = match (n.left, n.right) {
                    (Some(l), Some(r)) => Some((l, r)),
                    _ => None,
                };
                treeshap::Node {
                    feature: n.feature,
                    threshold: n.threshold,
                    default_left: children.is_some()
                        && self.pre.impute(n.feature, f64::NAN) <= n.threshold,
                    children,
                    value: logit(n.prob),
                    cover: n.rows as f64,
                }
            })
            .collect()
    }

    fn ensemble(&self) -> &Ensemble {
        self.shap.0.get_or_init(|| {
            // A fitted tree is at most 12 deep, well within what TreeSHAP supports, and
            // its links come from smartcore's own (valid) structure.
            Box::new(
                Ensemble::build(&[self.shap_nodes()], self.pre.medians.len())
                    .expect("a fitted decision tree lays out for TreeSHAP"),
            )
        })
    }

    /// The base value of the contributions: the cover-weighted mean of the leaves'
    /// log-odds (the expected margin over the training rows).
    pub fn bias(&self) -> f64 {
        self.ensemble().expected()
    }

    /// The bound on `|bias + sum(contributions) - margin|` (float rounding only):
    /// `1e-10 * max |leaf log-odds|`.
    pub fn local_accuracy_bound(&self) -> f64 {
        self.ensemble().local_accuracy_bound(0.0)
    }

    /// Rows (row-major) with every value the tree would impute already imputed.
    fn imputed(&self, rows: &[f64]) -> Vec<f64> {
        let w = self.pre.medians.len().max(1);
        rows.iter()
            .enumerate()
            .map(|(i, &v)| self.pre.impute(i % w, v))
            .collect()
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

impl Classifier for TreeModel {
    fn margin(&self, row: &[f64]) -> f64 {
        let leaf = *self.path(row).last().expect("a path has a root");
        logit(self.nodes[leaf].prob)
    }

    fn contributions(&self, row: &[f64], out: &mut [f64]) -> f64 {
        self.margin_and_contributions(row, out);
        self.bias()
    }

    fn margin_and_contributions(&self, row: &[f64], out: &mut [f64]) -> f64 {
        out.iter_mut().for_each(|c| *c = 0.0);
        let mut sum = [0.0];
        self.ensemble().explain(&self.imputed(row), out, &mut sum);
        sum[0]
    }

    fn explain_rows(&self, x: &[f64], margins: &mut [f64], contributions: &mut [f64]) {
        contributions.iter_mut().for_each(|c| *c = 0.0);
        self.ensemble()
            .explain(&self.imputed(x), contributions, margins);
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
    use super::*;
    use crate::features::FeatureDef;

    fn data(n: usize) -> (Vec<f64>, Vec<bool>, Vec<FeatureDef>) {
        let mut rng = crate::model::testutil::Lcg(99);
        let mut rnd = || rng.unit();
        let (mut x, mut y) = (Vec::new(), Vec::new());
        for _ in 0..n {
            let a = (rnd() * 100.0).round();
            let b = rnd();
            let c = if rnd() < 0.2 { f64::NAN } else { rnd() * 5.0 };
            let d = (rnd() * 4.0).floor();
            x.extend([a, b, c, d]);
            y.push(rnd() < 0.1 + 0.5 * (a / 100.0) * (1.0 - b) + 0.1 * d / 4.0);
        }
        let defs = crate::model::testutil::defs(4, &[0]);
        (x, y, defs)
    }

    #[test]
    fn contributions_are_exact_shapley_values_and_add_up_to_the_margin() {
        let (x, y, defs) = data(4000);
        let pre = Preprocessor::learn(&x, &defs);
        let params = TreeParams {
            max_depth: 6,
            ..TreeParams::default()
        };
        let m = TreeModel::fit(&x, 4, &y, pre, &params).unwrap();
        assert!(m.nodes.len() > 15, "a real tree: {} nodes", m.nodes.len());
        let tree = m.shap_nodes();
        let mut c = [0.0; 4];
        let rows: Vec<&[f64]> = x.chunks(4).take(60).collect();
        for row in &rows {
            // The brute force sees the imputed row, as the tree does.
            let imputed: Vec<f64> = (0..4).map(|j| m.pre.impute(j, row[j])).collect();
            let (bias, phi) = treeshap::brute::shapley(std::slice::from_ref(&tree), &imputed, 4);
            let margin = m.margin_and_contributions(row, &mut c);
            assert_eq!(margin.to_bits(), m.margin(row).to_bits());
            assert!((m.bias() - bias).abs() < 1e-12);
            for j in 0..4 {
                assert!((c[j] - phi[j]).abs() < 1e-9, "{j}: {} vs {}", c[j], phi[j]);
            }
            let total = m.bias() + c.iter().sum::<f64>();
            assert!((total - margin).abs() <= m.local_accuracy_bound());
        }
        // NaN routes like its imputed median, also without imputing first.
        let mut nan = rows[0].to_vec();
        nan[2] = f64::NAN;
        let (bias, phi) = treeshap::brute::shapley(
            std::slice::from_ref(&tree),
            &[nan[0], nan[1], f64::NAN, nan[3]],
            4,
        );
        m.contributions(&nan, &mut c);
        assert!((m.bias() - bias).abs() < 1e-12);
        assert!((0..4).all(|j| (c[j] - phi[j]).abs() < 1e-9));
        // Rows in a block give what one row at a time gives.
        let flat: Vec<f64> = rows.concat();
        let mut margins = vec![0.0; rows.len()];
        let mut all = vec![0.0; flat.len()];
        m.explain_rows(&flat, &mut margins, &mut all);
        for (i, row) in rows.iter().enumerate() {
            assert_eq!(margins[i].to_bits(), m.margin(row).to_bits());
            m.contributions(row, &mut c);
            assert!((0..4).all(|j| (all[i * 4 + j] - c[j]).abs() < 1e-12));
        }
    }
}
