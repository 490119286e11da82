//! Exact path-dependent TreeSHAP (Lundberg, Erion and Lee 2018, "Consistent
//! individualized feature attribution for tree ensembles", Algorithm 2), written
//! once for every tree model churnguard has (the readable tree, the forest, gbdt).
//!
//! The Shapley values are those of the set function `v(S) = E[f(x) | x_S]`, where a
//! split on a feature outside `S` averages its children weighted by their training
//! cover (Algorithm 1 of the paper); `bias + sum(phi) = f(x)` up to float rounding.
//! Written by hand because no maintained Rust crate computes it over our own tree
//! layout (hessboost predicts contributions only for its own DMatrix, in f32); the
//! brute-force test below enumerates every feature subset and proves it exact.

/// A tree as TreeSHAP reads it. Node indexes are opaque to the algorithm; `root` is
/// where a walk starts.
pub(crate) trait ShapTree {
    /// The children `(left, right)` of an inner node; `None` for a leaf.
    fn children(&self, k: usize) -> Option<(usize, usize)>;
    /// The feature an inner node splits on.
    fn feature(&self, k: usize) -> usize;
    /// The training weight reaching a node (rows, or the hessian sum); positive.
    fn cover(&self, k: usize) -> f64;
    /// A leaf's value in margin space.
    fn leaf_value(&self, k: usize) -> f64;
    /// Whether `row` goes to the left child at inner node `k` (missing values
    /// routed as the model routes them).
    fn goes_left(&self, k: usize, row: &[f64]) -> bool;
}

#[derive(Debug, Clone, Copy, Default)]
struct PathElement {
    /// `usize::MAX` for the root's placeholder element.
    feature: usize,
    zero_fraction: f64,
    one_fraction: f64,
    pweight: f64,
}

/// Scratch space for one walk, reused across trees and rows.
#[derive(Debug, Default)]
pub(crate) struct ShapScratch {
    path: Vec<PathElement>,
}

impl ShapScratch {
    fn reserve(&mut self, max_depth: usize) {
        // Each level keeps its own copy of the path: (d + 1)(d + 2) / 2 elements.
        let need = (max_depth + 2) * (max_depth + 3) / 2;
        if self.path.len() < need {
            self.path.resize(need, PathElement::default());
        }
    }
}

/// The cover-weighted mean of a tree's leaves: its expected value, the `bias` part.
pub(crate) fn expected_value<T: ShapTree>(tree: &T, root: usize) -> f64 {
    match tree.children(root) {
        None => tree.leaf_value(root),
        Some((l, r)) => {
            let (cl, cr) = (tree.cover(l), tree.cover(r));
            (cl * expected_value(tree, l) + cr * expected_value(tree, r)) / (cl + cr)
        }
    }
}

/// Adds the tree's SHAP values for `row` into `phi` (one slot per feature).
/// `max_depth` bounds the tree's depth (edges from the root to its deepest leaf).
pub(crate) fn add_tree_shap<T: ShapTree>(
    tree: &T,
    root: usize,
    max_depth: usize,
    row: &[f64],
    phi: &mut [f64],
    scratch: &mut ShapScratch,
) {
    scratch.reserve(max_depth);
    recurse(
        tree,
        root,
        row,
        phi,
        &mut scratch.path,
        0,
        0,
        1.0,
        1.0,
        usize::MAX,
    );
}

#[allow(clippy::too_many_arguments)]
fn recurse<T: ShapTree>(
    tree: &T,
    k: usize,
    row: &[f64],
    phi: &mut [f64],
    paths: &mut [PathElement],
    // Where the parent's path starts in `paths`; this node's copy follows it.
    parent_start: usize,
    mut depth: usize,
    zero_fraction: f64,
    one_fraction: f64,
    feature: usize,
) {
    let start = if depth == 0 { 0 } else { parent_start + depth };
    if depth > 0 {
        paths.copy_within(parent_start..parent_start + depth, start);
    }
    let path = &mut paths[start..];
    extend(path, depth, zero_fraction, one_fraction, feature);
    match tree.children(k) {
        None => {
            let value = tree.leaf_value(k);
            for i in 1..=depth {
                let w = unwound_sum(path, depth, i);
                let e = path[i];
                phi[e.feature] += w * (e.one_fraction - e.zero_fraction) * value;
            }
        }
        Some((l, r)) => {
            let split = tree.feature(k);
            let (hot, cold) = if tree.goes_left(k, row) {
                (l, r)
            } else {
                (r, l)
            };
            let w = tree.cover(k);
            let hot_zero = tree.cover(hot) / w;
            let cold_zero = tree.cover(cold) / w;
            let (mut in_zero, mut in_one) = (1.0, 1.0);
            // A feature already split on above: undo that split, so each feature
            // appears once on the path with the product of its fractions.
            if let Some(i) = (1..=depth).find(|&i| path[i].feature == split) {
                in_zero = path[i].zero_fraction;
                in_one = path[i].one_fraction;
                unwind(path, depth, i);
                depth -= 1;
            }
            let len = depth + 1;
            recurse(
                tree,
                hot,
                row,
                phi,
                paths,
                start,
                len,
                hot_zero * in_zero,
                in_one,
                split,
            );
            recurse(
                tree,
                cold,
                row,
                phi,
                paths,
                start,
                len,
                cold_zero * in_zero,
                0.0,
                split,
            );
        }
    }
}

fn extend(path: &mut [PathElement], depth: usize, zero: f64, one: f64, feature: usize) {
    path[depth] = PathElement {
        feature,
        zero_fraction: zero,
        one_fraction: one,
        pweight: if depth == 0 { 1.0 } else { 0.0 },
    };
    let d1 = (depth + 1) as f64;
    for i in (0..depth).rev() {
        path[i + 1].pweight += one * path[i].pweight * (i + 1) as f64 / d1;
        path[i].pweight = zero * path[i].pweight * (depth - i) as f64 / d1;
    }
}

fn unwind(path: &mut [PathElement], depth: usize, index: usize) {
    let one = path[index].one_fraction;
    let zero = path[index].zero_fraction;
    let d1 = (depth + 1) as f64;
    let mut next = path[depth].pweight;
    for i in (0..depth).rev() {
        if one != 0.0 {
            let tmp = path[i].pweight;
            path[i].pweight = next * d1 / ((i + 1) as f64 * one);
            next = tmp - path[i].pweight * zero * (depth - i) as f64 / d1;
        } else {
            path[i].pweight = path[i].pweight * d1 / (zero * (depth - i) as f64);
        }
    }
    for i in index..depth {
        path[i].feature = path[i + 1].feature;
        path[i].zero_fraction = path[i + 1].zero_fraction;
        path[i].one_fraction = path[i + 1].one_fraction;
    }
}

fn unwound_sum(path: &[PathElement], depth: usize, index: usize) -> f64 {
    let one = path[index].one_fraction;
    let zero = path[index].zero_fraction;
    let mut next = path[depth].pweight;
    let mut total = 0.0;
    if one != 0.0 {
        for i in (0..depth).rev() {
            let tmp = next / ((i + 1) as f64 * one);
            total += tmp;
            next = path[i].pweight - tmp * zero * (depth - i) as f64;
        }
    } else {
        for i in (0..depth).rev() {
            total += path[i].pweight / (zero * (depth - i) as f64);
        }
    }
    total * (depth + 1) as f64
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A plain tree for tests: `x[feature] < threshold` goes left, NaN goes right.
    #[derive(Debug, Clone)]
    pub(crate) struct TestTree {
        /// (feature, threshold, left, right, cover, value); `left == usize::MAX` for leaves.
        pub nodes: Vec<(usize, f64, usize, usize, f64, f64)>,
    }

    impl ShapTree for TestTree {
        fn children(&self, k: usize) -> Option<(usize, usize)> {
            let n = self.nodes[k];
            (n.2 != usize::MAX).then_some((n.2, n.3))
        }
        fn feature(&self, k: usize) -> usize {
            self.nodes[k].0
        }
        fn cover(&self, k: usize) -> f64 {
            self.nodes[k].4
        }
        fn leaf_value(&self, k: usize) -> f64 {
            self.nodes[k].5
        }
        fn goes_left(&self, k: usize, row: &[f64]) -> bool {
            row[self.nodes[k].0] < self.nodes[k].1
        }
    }

    /// `E[f(x) | x_S]` by Algorithm 1: follow `row` on features in `s`, average by
    /// cover elsewhere.
    fn conditional<T: ShapTree>(t: &T, k: usize, row: &[f64], s: u32) -> f64 {
        match t.children(k) {
            None => t.leaf_value(k),
            Some((l, r)) => {
                if s & (1 << t.feature(k)) != 0 {
                    let next = if t.goes_left(k, row) { l } else { r };
                    conditional(t, next, row, s)
                } else {
                    let (cl, cr) = (t.cover(l), t.cover(r));
                    (cl * conditional(t, l, row, s) + cr * conditional(t, r, row, s)) / (cl + cr)
                }
            }
        }
    }

    /// Shapley values by enumerating every subset of `m` features.
    pub(crate) fn brute_force<T: ShapTree>(t: &T, root: usize, row: &[f64], m: usize) -> Vec<f64> {
        let fact = |n: usize| (1..=n).map(|v| v as f64).product::<f64>();
        let mut phi = vec![0.0; m];
        for (i, p) in phi.iter_mut().enumerate() {
            for s in 0u32..(1 << m) {
                if s & (1 << i) != 0 {
                    continue;
                }
                let size = s.count_ones() as usize;
                let w = fact(size) * fact(m - size - 1) / fact(m);
                *p += w * (conditional(t, root, row, s | (1 << i)) - conditional(t, root, row, s));
            }
        }
        phi
    }

    /// A random full tree of `depth` over `m` features (features repeat on paths).
    pub(crate) fn random_tree(seed: u64, depth: usize, m: usize) -> TestTree {
        let mut s = seed;
        let mut rnd = move || {
            s = s
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            (s >> 11) as f64 / (1u64 << 53) as f64
        };
        let mut nodes = Vec::new();
        fn build(
            nodes: &mut Vec<(usize, f64, usize, usize, f64, f64)>,
            rnd: &mut dyn FnMut() -> f64,
            depth: usize,
            m: usize,
            cover: f64,
        ) -> usize {
            let k = nodes.len();
            // Some branches stop early, so leaves sit at different depths.
            if depth == 0 || (k > 0 && rnd() < 0.15) {
                nodes.push((0, 0.0, usize::MAX, usize::MAX, cover, rnd() * 4.0 - 2.0));
                return k;
            }
            let feature = (rnd() * m as f64) as usize % m;
            nodes.push((feature, rnd(), 0, 0, cover, 0.0));
            let share = 0.1 + 0.8 * rnd();
            let l = build(nodes, rnd, depth - 1, m, cover * share);
            let r = build(nodes, rnd, depth - 1, m, cover * (1.0 - share));
            nodes[k].2 = l;
            nodes[k].3 = r;
            k
        }
        build(&mut nodes, &mut rnd, depth, m, 100.0);
        TestTree { nodes }
    }

    #[test]
    fn treeshap_equals_brute_force_shapley_values_on_random_trees() {
        let mut scratch = ShapScratch::default();
        for seed in 0..60u64 {
            let m = 2 + (seed as usize % 5);
            let depth = 1 + (seed as usize % 6);
            let t = random_tree(seed, depth, m);
            for r in 0..8 {
                let row: Vec<f64> = (0..m)
                    .map(|j| ((seed * 31 + r * 7 + j as u64 * 13) % 97) as f64 / 97.0)
                    .collect();
                let mut phi = vec![0.0; m];
                add_tree_shap(&t, 0, depth, &row, &mut phi, &mut scratch);
                let want = brute_force(&t, 0, &row, m);
                for j in 0..m {
                    assert!(
                        (phi[j] - want[j]).abs() < 1e-12,
                        "seed {seed} row {r} feature {j}: {} vs {}",
                        phi[j],
                        want[j]
                    );
                }
                // Local accuracy: the expected value plus the contributions is f(x).
                let fx = conditional(&t, 0, &row, (1 << m) - 1);
                let total = expected_value(&t, 0) + phi.iter().sum::<f64>();
                assert!((total - fx).abs() < 1e-12, "{total} vs {fx}");
            }
        }
    }

    #[test]
    fn a_hand_built_stump_splits_the_gap_to_the_mean() {
        // x0 < 0.5 (cover 30) -> 1.0, else (cover 10) -> -3.0: E = 0.0.
        let t = TestTree {
            nodes: vec![
                (0, 0.5, 1, 2, 40.0, 0.0),
                (0, 0.0, usize::MAX, usize::MAX, 30.0, 1.0),
                (0, 0.0, usize::MAX, usize::MAX, 10.0, -3.0),
            ],
        };
        let mut phi = [0.0, 0.0];
        add_tree_shap(&t, 0, 1, &[0.9, 7.0], &mut phi, &mut ShapScratch::default());
        assert_eq!(expected_value(&t, 0), 0.0);
        assert_eq!(phi, [-3.0, 0.0]);
    }
}
