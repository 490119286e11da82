//! A tree model as the dictionary `shap.TreeExplainer` accepts for a custom tree
//! ensemble (shap's "Example of loading a custom tree model into SHAP"): per tree
//! `children_left`, `children_right`, `children_default`, `features`, `thresholds`,
//! `values`, `node_sample_weight`, and the ensemble's `base_offset`. shap routes a
//! value left when `x <= threshold` (in float64) and a NaN to `children_default`;
//! the thresholds written here make that rule send every value exactly where
//! churnguard's own walk sends it, so shap's path-dependent values are ours.

use serde::Serialize;

use super::treeshap::ShapTree;

/// One tree in shap's custom-model form. Leaves have children `-1` and feature `-2`
/// (scikit-learn's convention, which shap's example follows).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ShapTreeDict {
    pub children_left: Vec<i64>,
    pub children_right: Vec<i64>,
    pub children_default: Vec<i64>,
    pub features: Vec<i64>,
    pub thresholds: Vec<f64>,
    /// `[[value]]` per node: a leaf's value, an inner node's cover-weighted mean (the
    /// root's is the tree's expected value, which shap reads as such).
    pub values: Vec<[f64; 1]>,
    pub node_sample_weight: Vec<f64>,
}

/// Writes the tree rooted at `root` in preorder, every value multiplied by `scale`.
/// `width` is the number of features (to ask the tree where a missing value goes).
pub(crate) fn export_tree<T: ShapTree>(
    tree: &T,
    root: usize,
    width: usize,
    scale: f64,
) -> ShapTreeDict {
    let mut out = ShapTreeDict {
        children_left: Vec::new(),
        children_right: Vec::new(),
        children_default: Vec::new(),
        features: Vec::new(),
        thresholds: Vec::new(),
        values: Vec::new(),
        node_sample_weight: Vec::new(),
    };
    let missing = vec![f64::NAN; width];
    visit(tree, root, &missing, scale, &mut out);
    out
}

/// Appends node `k`'s subtree; returns its index and its cover-weighted mean value.
fn visit<T: ShapTree>(
    tree: &T,
    k: usize,
    missing: &[f64],
    scale: f64,
    out: &mut ShapTreeDict,
) -> (i64, f64) {
    let at = out.features.len();
    out.children_left.push(-1);
    out.children_right.push(-1);
    out.children_default.push(-1);
    out.features.push(-2);
    out.thresholds.push(-2.0);
    out.values.push([0.0]);
    out.node_sample_weight.push(tree.cover(k));
    let value = match tree.children(k) {
        None => tree.leaf_value(k) * scale,
        Some((l, r)) => {
            let (li, lv) = visit(tree, l, missing, scale, out);
            let (ri, rv) = visit(tree, r, missing, scale, out);
            out.children_left[at] = li;
            out.children_right[at] = ri;
            out.children_default[at] = if tree.goes_left(k, missing) { li } else { ri };
            out.features[at] = tree.feature(k) as i64;
            out.thresholds[at] = tree.threshold(k);
            let (cl, cr) = (tree.cover(l), tree.cover(r));
            (cl * lv + cr * rv) / (cl + cr)
        }
    };
    out.values[at] = [value];
    (at as i64, value)
}

/// The float64 threshold `t` with `v <= t` exactly when `(v as f32) < cond`, for
/// every finite `v`: the f32 comparison of hessboost's trees as shap's rule.
pub(crate) fn leq_threshold_of_f32_less(cond: f32) -> f64 {
    if !cond.is_finite() {
        // No finite value is below -inf; every one (that fits f32) is below +inf.
        return if cond < 0.0 {
            f64::NEG_INFINITY
        } else {
            f64::MAX
        };
    }
    let below = next_down_f32(cond);
    // The midpoint of two adjacent f32 values is exact in f64; values under it round
    // to `below`, values above it to `cond`, the midpoint itself to the even one.
    let mid = (below as f64 + cond as f64) / 2.0;
    if (mid as f32) < cond {
        mid
    } else {
        next_down(mid)
    }
}

// `f32::next_down` and friends are stable only since Rust 1.86, after the crate's MSRV.
/// The largest f32 below a finite `x`.
fn next_down_f32(x: f32) -> f32 {
    if x == 0.0 {
        -f32::from_bits(1)
    } else if x > 0.0 {
        f32::from_bits(x.to_bits() - 1)
    } else {
        f32::from_bits(x.to_bits() + 1)
    }
}

/// The largest f64 below a finite `x`.
pub(crate) fn next_down(x: f64) -> f64 {
    if x == 0.0 {
        -f64::from_bits(1)
    } else if x > 0.0 {
        f64::from_bits(x.to_bits() - 1)
    } else {
        f64::from_bits(x.to_bits() + 1)
    }
}

/// The smallest f64 above a finite `x`.
#[cfg(test)]
fn next_up(x: f64) -> f64 {
    -next_down(-x)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::treeshap::tests::random_tree;

    #[test]
    fn the_f32_threshold_routes_every_f64_like_the_f32_comparison() {
        let mut conds = vec![0.0f32, -0.0, 1.0, -1.0, 0.1, 3.4e38, -3.4e38, 1e-45, -1e-45];
        let mut s = 99u64;
        for _ in 0..2000 {
            s = s
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            let c = f32::from_bits((s >> 32) as u32);
            if c.is_finite() {
                conds.push(c);
            }
        }
        for c in conds {
            let t = leq_threshold_of_f32_less(c);
            let below = next_down_f32(c) as f64;
            let mid = (below + c as f64) / 2.0;
            for v in [
                t,
                next_up(t),
                next_down(t),
                mid,
                next_up(mid),
                next_down(mid),
                c as f64,
                below,
                next_up(c as f64),
            ] {
                if v.is_finite() {
                    assert_eq!(v <= t, (v as f32) < c, "cond {c:e} value {v:e}");
                }
            }
        }
    }

    #[test]
    fn a_hand_built_stump_exports_exactly() {
        use crate::model::treeshap::tests::TestTree;
        // x0 < 0.5 -> 1.0 (cover 30), else -> 3.0 (cover 10).
        let t = TestTree {
            nodes: vec![
                (0, 0.5, 1, 2, 40.0, 0.0),
                (0, 0.0, usize::MAX, usize::MAX, 30.0, 1.0),
                (0, 0.0, usize::MAX, usize::MAX, 10.0, 3.0),
            ],
        };
        let d = export_tree(&t, 0, 2, 2.0);
        assert_eq!(d.children_left, vec![1, -1, -1]);
        assert_eq!(d.children_right, vec![2, -1, -1]);
        // The test tree sends NaN right (NaN < 0.5 is false).
        assert_eq!(d.children_default, vec![2, -1, -1]);
        assert_eq!(d.features, vec![0, -2, -2]);
        assert_eq!(d.thresholds, vec![next_down(0.5), -2.0, -2.0]);
        assert_eq!(
            d.values,
            vec![[(30.0 * 2.0 + 10.0 * 6.0) / 40.0], [2.0], [6.0]]
        );
        assert_eq!(d.node_sample_weight, vec![40.0, 30.0, 10.0]);
    }

    #[test]
    fn the_export_routes_rows_as_the_tree_does() {
        for seed in 0..30u64 {
            let t = random_tree(seed, 1 + seed as usize % 6, 4);
            let d = export_tree(&t, 0, 4, 1.0);
            for r in 0..20u64 {
                let row: Vec<f64> = (0..4)
                    .map(|j| ((seed * 17 + r * 5 + j * 11) % 23) as f64 / 23.0)
                    .collect();
                // Walk both: ours by goes_left, the export by shap's rule.
                let (mut k, mut e) = (0usize, 0usize);
                while let Some((l, r)) = t.children(k) {
                    let f = d.features[e] as usize;
                    let left = row[f] <= d.thresholds[e];
                    assert_eq!(left, t.goes_left(k, &row));
                    k = if left { l } else { r };
                    e = if left {
                        d.children_left[e]
                    } else {
                        d.children_right[e]
                    } as usize;
                }
                assert_eq!(d.values[e][0], t.leaf_value(k));
            }
        }
    }
}
