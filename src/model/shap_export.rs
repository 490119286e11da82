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
    let names: Vec<&str> = artifact.spec.names();
    let (trees, base) = match &artifact.model {
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
