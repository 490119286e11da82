//! A tree model as the dictionary Python's `shap.TreeExplainer` accepts for custom
//! trees, for checking churnguard's contributions outside churnguard.

use super::treeshap::{self, Node};
use super::{Artifact, FittedModel};
use crate::{Error, Result};
use serde_json::{json, Value};

/// Writes the tree model of `artifact` as shap's custom-tree dictionary:
/// `{"trees": [{"children_left", "children_right", "children_default", "features",
/// "thresholds", "values", "node_sample_weight"}], "base_offset", "tree_output",
/// "feature_names"}`, in the margin (log-odds) space, nodes in the model's own order
/// (node 0 the root; leaves have children `-1` and feature `-2`; `values` is one
/// `[value]` per node).
///
/// Thresholds are in the units of the feature table that `churnguard features --models`
/// writes (tree models split raw values: no log1p or standardisation to invert), chosen
/// so that shap's rule (`x <= threshold` goes left, a NaN follows `children_default`)
/// routes every value as churnguard does, whether shap compares in f64 or first rounds
/// both sides to f32 (its current C++ code): hessboost's strict f32 test
/// `(x as f32) < cond` becomes the f64 threshold just under the f32 rounding midpoint
/// below `cond`. The decision tree imputes undefined values with the training median:
/// `children_default` is where that median goes. Two limits: infinite values, which the
/// decision tree imputes but shap compares (the feature table holds none), and, for the
/// decision tree only, values within one f32 rounding of a threshold if shap compares in
/// f32. `node_sample_weight` is the cover churnguard's TreeSHAP uses (training rows for
/// the decision tree, hessian sums for hessboost trees; inner nodes the sum of their
/// leaves), so `shap_values` (path-dependent) reproduces churnguard's contributions.
/// Python side: convert each list to a numpy array (`np.array`) before passing the
/// dictionary to `shap.TreeExplainer(model, feature_perturbation="tree_path_dependent")`.
pub fn export_shap_trees(artifact: &Artifact) -> Result<Value> {
    export_shap_model(&artifact.model, &artifact.spec.names())
}

/// [`export_shap_trees`] of a bare model whose features are `names`, in order.
pub fn export_shap_model(model: &FittedModel, names: &[&str]) -> Result<Value> {
    let (trees, base) = match model {
        FittedModel::Tree(m) => (vec![m.shap_nodes()], 0.0),
        FittedModel::Forest(m) | FittedModel::Gbdt(m) => (m.shap_trees(), m.intercept()),
        FittedModel::Logistic(_) => {
            return Err(Error::Config(
                "only tree models (tree, forest, gbdt) export as shap trees".into(),
            ))
        }
    };
    let trees = trees
        .iter()
        .map(|t| tree_json(t))
        .collect::<Result<Vec<_>>>()?;
    Ok(json!({
        "trees": trees,
        "base_offset": base,
        "tree_output": "log_odds",
        "feature_names": names,
    }))
}

fn tree_json(nodes: &[Node]) -> Result<Value> {
    let (cover, value) = treeshap::tree_stats(nodes)?;
    let child = |n: &Node, right: bool| -> i64 {
        match n.children {
            Some((l, r)) => (if right { r } else { l }) as i64,
            None => -1,
        }
    };
    let inner = |n: &Node| n.children.is_some();
    if let Some(n) = nodes.iter().find(|n| inner(n) && !n.threshold.is_finite()) {
        return Err(Error::Artifact(format!(
            "a split threshold on feature {} is not finite",
            n.feature
        )));
    }
    Ok(json!({
        "children_left": nodes.iter().map(|n| child(n, false)).collect::<Vec<_>>(),
        "children_right": nodes.iter().map(|n| child(n, true)).collect::<Vec<_>>(),
        "children_default": nodes
            .iter()
            .map(|n| match n.children {
                Some((l, r)) => (if n.default_left { l } else { r }) as i64,
                None => -1,
            })
            .collect::<Vec<_>>(),
        "features": nodes
            .iter()
            .map(|n| if inner(n) { n.feature as i64 } else { -2 })
            .collect::<Vec<_>>(),
        "thresholds": nodes
            .iter()
            .map(|n| if inner(n) { n.threshold } else { -2.0 })
            .collect::<Vec<_>>(),
        "values": value.iter().map(|v| [*v]).collect::<Vec<_>>(),
        "node_sample_weight": cover,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{BoostModel, BoostParams, Classifier, Preprocessor, TreeModel, TreeParams};
    use hessboost::prelude::{BoostedModel, ModelFormat};

    fn data(n: usize) -> (Vec<f64>, Vec<bool>) {
        let mut rng = crate::model::testutil::Lcg(4242);
        let mut rnd = || rng.unit();
        let (mut x, mut y) = (Vec::new(), Vec::new());
        for _ in 0..n {
            // Counts, days, a money amount with cents, a ratio, an often undefined value.
            let logins = (rnd() * 40.0).floor();
            let days = (rnd() * 120.0).floor();
            let spend = (rnd() * 50_000.0).round() / 100.0;
            let ratio = rnd();
            let csat = if rnd() < 0.3 {
                f64::NAN
            } else {
                (rnd() * 5.0).ceil()
            };
            x.extend([logins, days, spend, ratio, csat]);
            let z = 0.04 * days - 0.1 * logins + ratio - 0.001 * spend
                + if csat.is_nan() { 0.5 } else { -0.2 * csat };
            y.push(rnd() < 1.0 / (1.0 + (-z).exp()));
        }
        (x, y)
    }

    /// shap's routing on the exported dictionary: NaN follows `children_default`,
    /// otherwise `x <= threshold` goes left, compared in f64 or (`f32`) after rounding
    /// both sides to f32 as shap's current C++ does.
    fn shap_leaf(tree: &Value, row: &[f64], f32_compare: bool) -> usize {
        let a = |k: &str, i: usize| tree[k][i].as_f64().unwrap();
        let mut i = 0;
        while a("children_left", i) >= 0.0 {
            let v = row[a("features", i) as usize];
            let t = a("thresholds", i);
            let left = if f32_compare {
                (v as f32) <= (t as f32)
            } else {
                v <= t
            };
            i = if v.is_nan() {
                a("children_default", i)
            } else if left {
                a("children_left", i)
            } else {
                a("children_right", i)
            } as usize;
        }
        i
    }

    fn check_tree_json(tree: &Value) {
        let n = tree["children_left"].as_array().unwrap().len();
        for i in 0..n {
            let (l, r) = (
                tree["children_left"][i].as_i64().unwrap(),
                tree["children_right"][i].as_i64().unwrap(),
            );
            if l >= 0 {
                let w = |k: i64| tree["node_sample_weight"][k as usize].as_f64().unwrap();
                assert_eq!(w(i as i64), w(l) + w(r), "covers add up");
            }
        }
    }

    #[test]
    fn shap_routes_every_training_row_to_churnguards_leaf() {
        let (x, y) = data(3000);
        let names = ["logins", "days", "spend", "ratio", "csat"];
        for params in [
            BoostParams {
                rounds: 25,
                ..BoostParams::gbdt()
            },
            BoostParams {
                rounds: 10,
                ..BoostParams::forest()
            },
        ] {
            let m = BoostModel::fit(&x, 5, &y, None, &params).unwrap();
            let native = BoostedModel::decode(&m.bytes, ModelFormat::Binary).unwrap();
            let model = if params.forest {
                FittedModel::Forest(m)
            } else {
                FittedModel::Gbdt(m)
            };
            let dict = export_shap_model(&model, &names).unwrap();
            let trees = dict["trees"].as_array().unwrap();
            assert_eq!(trees.len(), model_trees(&model));
            trees.iter().for_each(check_tree_json);
            for row in x.chunks(5) {
                let mut total = dict["base_offset"].as_f64().unwrap();
                for (t, tree) in trees.iter().enumerate() {
                    // hessboost's own rule on its own nodes.
                    let nodes = native.trees()[t].nodes();
                    let mut k = 0usize;
                    while !nodes[k].is_leaf() {
                        let v = row[nodes[k].split_feature as usize];
                        let left = if v.is_nan() {
                            nodes[k].default_left
                        } else {
                            (v as f32) < nodes[k].split_cond
                        };
                        k = if left { nodes[k].left } else { nodes[k].right } as usize;
                    }
                    assert_eq!(shap_leaf(tree, row, false), k);
                    assert_eq!(shap_leaf(tree, row, true), k);
                    total += tree["values"][k][0].as_f64().unwrap();
                }
                let margin = model.margin(row);
                assert!((total - margin).abs() < 1e-12, "{total} vs {margin}");
            }
        }
    }

    fn model_trees(model: &FittedModel) -> usize {
        match model {
            FittedModel::Forest(m) | FittedModel::Gbdt(m) => m.n_trees,
            _ => 1,
        }
    }

    #[test]
    fn the_decision_tree_exports_in_raw_units_with_the_imputed_default() {
        let (x, y) = data(3000);
        let defs = crate::model::testutil::defs(5, &[2]);
        let pre = Preprocessor::learn(&x, &defs);
        let params = TreeParams {
            max_depth: 6,
            ..TreeParams::default()
        };
        let m = TreeModel::fit(&x, 5, &y, pre, &params).unwrap();
        let model = FittedModel::Tree(m.clone());
        let dict = export_shap_model(&model, &["a", "b", "c", "d", "e"]).unwrap();
        let tree = &dict["trees"][0];
        check_tree_json(tree);
        assert_eq!(dict["base_offset"].as_f64(), Some(0.0));
        for row in x.chunks(5) {
            // churnguard's rule: impute, then `<=` on the raw value.
            let mut k = 0;
            while let (Some(l), Some(r)) = (m.nodes[k].left, m.nodes[k].right) {
                let f = m.nodes[k].feature;
                k = if m.pre.impute(f, row[f]) <= m.nodes[k].threshold {
                    l
                } else {
                    r
                };
            }
            assert_eq!(shap_leaf(tree, row, false), k);
            assert_eq!(shap_leaf(tree, row, true), k);
            let v = tree["values"][k][0].as_f64().unwrap();
            assert_eq!(v.to_bits(), model.margin(row).to_bits());
        }
    }

    #[test]
    fn a_logistic_model_does_not_export_as_trees() {
        let pre = Preprocessor {
            log1p: vec![false],
            medians: vec![0.0],
            means: vec![0.0],
            stds: vec![1.0],
        };
        let m = FittedModel::Logistic(crate::model::LogisticModel {
            pre,
            coef: vec![1.0],
            intercept: 0.0,
        });
        assert!(matches!(
            export_shap_model(&m, &["a"]),
            Err(Error::Config(_))
        ));
    }
}
