//! Exact path-dependent TreeSHAP (Lundberg et al. 2018) and the margin in one pass per
//! tree, over a flattened (struct of arrays) layout of every tree of a model.
//!
//! # What is computed
//!
//! For a tree, the value of a feature subset `S` is the path-dependent conditional
//! expectation of the paper (its EXPVALUE): a feature in `S` follows the row, a feature
//! outside `S` splits the weight by node cover. For a leaf `l` with distinct path features
//! `F_l`, that expectation is the product game
//! `v_l * prod_{j in F_l} (j in S ? o_lj : z_lj)`, where `o_lj` is 1 when the row satisfies
//! every split on `j` along the path and `z_lj` is the product of the cover fractions of
//! those splits (a feature split twice on a path counts once, as in the paper's
//! Algorithm 2). The Shapley value of a product game is the integral
//! `phi_i = v_l * (o_i - z_i) * int_0^1 prod_{j != i} (z_j + t (o_j - z_j)) dt`: a
//! polynomial of degree `|F_l| - 1` in `t`, which Gauss-Legendre quadrature with
//! `ceil(|F_l| / 2)` points integrates exactly (the identity behind Linear TreeSHAP and
//! XGBoost's QuadratureTreeSHAP). Values are therefore the paper's exact ones; only the
//! order of float operations differs.
//!
//! # How
//!
//! Each tree is stored in preorder (left child right after its parent). One pass top
//! down multiplies, per quadrature point, the path polynomial by the factor each edge
//! contributes (which of three cases applies depends only on the row's direction at the
//! edge and whether the feature was already cold above it, so the factors are
//! precomputed per edge); one pass bottom up sums the leaves' weighted polynomials and
//! takes each feature's share at its split: a split on `i` adds
//! `sum_q w_q (g_new - g_old)(t_q) * S_child(t_q)` with `g = (o - z) / (z + t (o - z))`,
//! which telescopes to the exact value when a feature repeats on a path. The leaf the
//! row reaches gives the margin in the same pass. Rows are processed a few at a time so
//! that one tree's precomputed factors serve several customers while they sit in cache.
//!
//! # Local accuracy
//!
//! `bias + sum(contributions)` equals the margin up to float rounding: the bound used in
//! tests and documented on [`Ensemble::local_accuracy_bound`] is
//! `1e-10 * (|bias| + sum over trees of the largest |leaf value|)`.

use crate::{Error, Result};

/// One node of a tree handed to [`Ensemble::build`], in the tree's own node order.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Node {
    pub feature: usize,
    /// A present value goes left when `x <= threshold`.
    pub threshold: f64,
    /// Where an undefined (NaN) value goes.
    pub default_left: bool,
    /// `(left, right)` node indexes within the tree; `None` for a leaf.
    pub children: Option<(usize, usize)>,
    /// Leaf value in margin units (ignored for inner nodes).
    pub value: f64,
    /// Leaf cover: the training weight (sample count or hessian sum) reaching the leaf.
    /// Inner covers are the sums of their leaves, so that fractions are consistent.
    pub cover: f64,
}

/// Covers below this are raised to it, so that every cover fraction is positive.
pub(crate) const MIN_COVER: f64 = 1e-12;

const LEAF: u32 = u32::MAX;
const NONE: u32 = u32::MAX;

/// Relative float bound of local accuracy; see [`Ensemble::local_accuracy_bound`].
pub(crate) const LOCAL_ACCURACY_REL: f64 = 1e-10;

/// Largest number of distinct features on one root-to-leaf path that is supported.
pub(crate) const MAX_PATH_FEATURES: usize = 64;

/// Every tree of a model, flattened for scoring and exact TreeSHAP.
#[derive(Debug, Clone, Default)]
pub(crate) struct Ensemble {
    /// Quadrature points: a supported size at least `ceil(max distinct path features / 2)`.
    q: usize,
    t: Vec<f64>,
    w: Vec<f64>,
    /// Per node, all trees concatenated, each tree in preorder.
    feature: Vec<u32>,
    threshold: Vec<f64>,
    default_left: Vec<bool>,
    /// Absolute index of the right child (the left child is the next node); `LEAF`.
    right: Vec<u32>,
    /// Leaf value; for inner nodes the cover-weighted mean of the subtree.
    value: Vec<f64>,
    cover: Vec<f64>,
    /// Index of the parent within the tree (`NONE` for roots).
    parent: Vec<u32>,
    /// Index within the tree of the nearest edge above this one (named by its lower
    /// node) that splits on the same feature as this edge, or `NONE`.
    prev: Vec<u32>,
    /// Cover fraction of the edge into each node: the path polynomial's factor when the
    /// edge's feature already went cold higher up (and the edge then adds nothing).
    ratio: Vec<f64>,
    /// Per node (the edge into it) `4 x q` values: `cold - ratio` and `hot - cold` path
    /// polynomial factors, then the cold and `hot - cold` quadrature-weighted changes of
    /// `g`; a row's factor is `ratio + still * (cold - ratio) + hot * (hot - cold)` with
    /// 0/1 masks `still` (the feature is not cold above) and `hot` (still, and the row
    /// follows the edge), so rows of a block share one branch-free (vectorisable) loop.
    edge: Vec<f64>,
    /// `(start, end)` of each tree in the node arrays.
    trees: Vec<(u32, u32)>,
    max_len: usize,
    n_features: usize,
    /// Largest |leaf value| of each tree, summed: the scale of the local-accuracy bound.
    scale: f64,
}

/// Supported quadrature sizes; kernels are specialised for each.
const SIZES: [usize; 9] = [1, 2, 3, 4, 6, 8, 12, 16, 32];

/// Gauss-Legendre nodes and weights on [0, 1].
fn gauss_legendre(n: usize) -> (Vec<f64>, Vec<f64>) {
    let mut t = Vec::with_capacity(n);
    let mut w = Vec::with_capacity(n);
    for i in 0..n {
        // Newton on P_n from the classic initial guess.
        let mut x = (std::f64::consts::PI * (i as f64 + 0.75) / (n as f64 + 0.5)).cos();
        let mut dp = 1.0;
        for _ in 0..100 {
            let (mut p0, mut p1) = (1.0f64, x);
            for k in 2..=n {
                let k = k as f64;
                let p2 = ((2.0 * k - 1.0) * x * p1 - (k - 1.0) * p0) / k;
                p0 = p1;
                p1 = p2;
            }
            let pn = if n == 0 { 1.0 } else { p1 };
            let pm = if n == 1 { 1.0 } else { p0 };
            dp = n as f64 * (x * pn - pm) / (x * x - 1.0);
            let dx = pn / dp;
            x -= dx;
            if dx.abs() < 1e-16 {
                break;
            }
        }
        if n == 1 {
            x = 0.0;
            dp = 1.0;
        }
        t.push((1.0 - x) / 2.0);
        w.push(1.0 / ((1.0 - x * x) * dp * dp));
    }
    (t, w)
}

/// `fn $name(x) -> $t`: the next float below `x` (`f32::next_down` / `f64::next_down`,
/// newer than the crate's MSRV).
macro_rules! next_below {
    ($name:ident, $t:ty) => {
        pub(crate) fn $name(x: $t) -> $t {
            if x.is_nan() || x == <$t>::NEG_INFINITY {
                x
            } else if x == 0.0 {
                -<$t>::from_bits(1)
            } else if x > 0.0 {
                <$t>::from_bits(x.to_bits() - 1)
            } else {
                <$t>::from_bits(x.to_bits() + 1)
            }
        }
    };
}
next_below!(f32_below, f32);
next_below!(f64_below, f64);

/// The f64 threshold `t` with `x <= t` exactly when `(x as f32) < cond`, for every
/// non-NaN `x` (a strict test on the f32-rounded value, as hessboost splits, turned
/// into the non-strict f64 test of shap's trees); `t as f32` is the f32 just below
/// `cond`, so the same holds when both sides are first rounded to f32.
pub(crate) fn strict_f32_as_le(cond: f32) -> f64 {
    if !cond.is_finite() {
        return if cond == f32::INFINITY {
            f64::MAX
        } else {
            cond as f64
        };
    }
    let below = f32_below(cond);
    if !below.is_finite() {
        // cond is -f32::MAX: everything that rounds to -inf goes left.
        let up = -f32_below(-cond);
        return f64_below(cond as f64 - (up as f64 - cond as f64) / 2.0);
    }
    // x rounds to `below` when it is under the midpoint, and at the midpoint when
    // `below` is the even one (round half to even).
    let mid = (below as f64 + cond as f64) / 2.0;
    if below.to_bits() & 1 == 0 {
        mid
    } else {
        f64_below(mid)
    }
}

/// Checks a tree's links (children in range, every node reached once from node 0) and
/// returns its nodes in preorder as original indexes.
fn preorder(nodes: &[Node]) -> Result<Vec<usize>> {
    let mut order = Vec::with_capacity(nodes.len());
    let mut seen = vec![false; nodes.len()];
    let mut stack = vec![0usize];
    while let Some(k) = stack.pop() {
        if k >= nodes.len() || seen[k] {
            return Err(Error::Artifact("tree has an invalid node link".into()));
        }
        seen[k] = true;
        order.push(k);
        if let Some((l, r)) = nodes[k].children {
            stack.push(r);
            stack.push(l);
        }
    }
    Ok(order)
}

/// Node covers and expected values (cover-weighted means of the subtree's leaves), in
/// the tree's own node order; `order` is its preorder.
fn covers_and_values(nodes: &[Node], order: &[usize]) -> (Vec<f64>, Vec<f64>) {
    let mut cover = vec![0.0f64; nodes.len()];
    let mut value = vec![0.0f64; nodes.len()];
    // Reverse preorder visits children before their parent.
    for &k in order.iter().rev() {
        match nodes[k].children {
            None => {
                cover[k] = nodes[k].cover.max(MIN_COVER);
                value[k] = nodes[k].value;
            }
            Some((l, r)) => {
                let c = cover[l] + cover[r];
                cover[k] = c;
                value[k] = (value[l] * cover[l] + value[r] * cover[r]) / c;
            }
        }
    }
    (cover, value)
}

/// [`covers_and_values`] of a tree, after checking its links.
pub(crate) fn tree_stats(nodes: &[Node]) -> Result<(Vec<f64>, Vec<f64>)> {
    Ok(covers_and_values(nodes, &preorder(nodes)?))
}

impl Ensemble {
    /// Lays out `trees` (each in its own node order, node 0 the root) for scoring and
    /// explaining rows of `n_features` values.
    pub(crate) fn build(trees: &[Vec<Node>], n_features: usize) -> Result<Self> {
        let mut e = Ensemble {
            n_features,
            ..Ensemble::default()
        };
        // Distinct features on the deepest path decide the quadrature size.
        let mut max_distinct = 1usize;
        let mut laid: Vec<(Vec<usize>, Vec<f64>, Vec<f64>)> = Vec::with_capacity(trees.len());
        for nodes in trees {
            if nodes.is_empty() {
                return Err(Error::Artifact("tree has no nodes".into()));
            }
            let order = preorder(nodes)?;
            let (cover, value) = covers_and_values(nodes, &order);
            if let Some(n) = nodes
                .iter()
                .find(|n| n.children.is_some() && n.feature >= n_features)
            {
                return Err(Error::Artifact(format!(
                    "tree splits on feature {} of {n_features}",
                    n.feature
                )));
            }
            max_distinct = max_distinct.max(max_path_features(nodes));
            laid.push((order, cover, value));
        }
        if max_distinct > MAX_PATH_FEATURES {
            return Err(Error::Artifact(format!(
                "TreeSHAP supports at most {MAX_PATH_FEATURES} distinct features on a path, \
                 a tree has {max_distinct}"
            )));
        }
        let need = max_distinct.div_ceil(2);
        e.q = SIZES.into_iter().find(|&s| s >= need).unwrap_or(32);
        (e.t, e.w) = gauss_legendre(e.q);
        for (nodes, (order, cover, value)) in trees.iter().zip(laid) {
            e.push_tree(nodes, &order, &cover, &value);
        }
        Ok(e)
    }

    fn push_tree(&mut self, nodes: &[Node], order: &[usize], cover: &[f64], value: &[f64]) {
        let q = self.q;
        let start = self.feature.len();
        let mut at = vec![0usize; nodes.len()];
        for (i, &k) in order.iter().enumerate() {
            at[k] = i;
        }
        let n = order.len();
        let mut parent = vec![NONE; n];
        for (i, &k) in order.iter().enumerate() {
            if let Some((l, r)) = nodes[k].children {
                parent[at[l]] = i as u32;
                parent[at[r]] = i as u32;
            }
        }
        // Per node (in preorder): the edge above it on the same feature, and the product
        // of cover fractions of that feature's splits down to here.
        let mut prev = vec![NONE; n];
        let mut z = vec![1.0f64; n];
        let mut ratio = vec![1.0f64; n];
        for i in 1..n {
            let p = parent[i] as usize;
            let f = nodes[order[p]].feature;
            // Walk up the ancestors' edges for the nearest one split on f.
            let mut c = p;
            while c != 0 {
                let pp = parent[c] as usize;
                if nodes[order[pp]].feature == f {
                    prev[i] = c as u32;
                    break;
                }
                c = pp;
            }
            ratio[i] = cover[order[i]] / cover[order[p]];
            let z_prev = if prev[i] == NONE {
                1.0
            } else {
                z[prev[i] as usize]
            };
            z[i] = z_prev * ratio[i];
        }
        for (i, &k) in order.iter().enumerate() {
            let nd = &nodes[k];
            let inner = nd.children.is_some();
            self.feature.push(if inner { nd.feature as u32 } else { 0 });
            self.threshold.push(if inner { nd.threshold } else { 0.0 });
            self.default_left.push(nd.default_left);
            self.right.push(match nd.children {
                Some((_, r)) => (start + at[r]) as u32,
                None => LEAF,
            });
            self.value.push(value[k]);
            self.cover.push(cover[k]);
            self.parent.push(parent[i]);
            self.prev.push(prev[i]);
            let z_prev = if i == 0 || prev[i] == NONE {
                1.0
            } else {
                z[prev[i] as usize]
            };
            let z_new = z[i];
            let (mut mh, mut mc, mut kh, mut kc) =
                (vec![0.0; q], vec![0.0; q], vec![0.0; q], vec![0.0; q]);
            for j in 0..q {
                let (t, w) = (self.t[j], self.w[j]);
                let f1 = |z: f64| z + t * (1.0 - z);
                let g1 = |z: f64| (1.0 - z) / f1(z);
                let g0 = -1.0 / (1.0 - t);
                mh[j] = f1(z_new) / f1(z_prev);
                mc[j] = z_new * (1.0 - t) / f1(z_prev);
                kh[j] = w * (g1(z_new) - g1(z_prev));
                kc[j] = w * (g0 - g1(z_prev));
            }
            self.ratio.push(ratio[i]);
            self.edge.extend((0..q).map(|j| mc[j] - ratio[i]));
            self.edge.extend((0..q).map(|j| mh[j] - mc[j]));
            self.edge.extend(kc.iter().copied());
            self.edge.extend((0..q).map(|j| kh[j] - kc[j]));
        }
        let max_leaf = order
            .iter()
            .filter(|&&k| nodes[k].children.is_none())
            .map(|&k| nodes[k].value.abs())
            .fold(0.0f64, f64::max);
        self.scale += max_leaf;
        self.trees.push((start as u32, (start + n) as u32));
        self.max_len = self.max_len.max(n);
    }

    /// The expected value of the trees (the sum of their cover-weighted means).
    pub(crate) fn expected(&self) -> f64 {
        self.trees
            .iter()
            .map(|&(s, _)| self.value[s as usize])
            .sum()
    }

    /// The documented bound of `|bias + sum(contributions) - margin|` for this model:
    /// `1e-10 * (|bias| + sum over trees of the largest |leaf value|)`. The arithmetic
    /// error is a few hundred ulps of that scale at most (every path polynomial is a
    /// mixture of probabilities, at most 1, and `1 / (1 - t)` is under 1,500 for the
    /// largest quadrature); the bound leaves a wide margin.
    pub(crate) fn local_accuracy_bound(&self, bias: f64) -> f64 {
        LOCAL_ACCURACY_REL * (bias.abs() + self.scale)
    }

    #[inline]
    fn go_left(&self, k: usize, row: &[f64]) -> bool {
        let v = row[self.feature[k] as usize];
        if v.is_nan() {
            self.default_left[k]
        } else {
            v <= self.threshold[k]
        }
    }

    /// The sum of the leaf values a row reaches, tree by tree in order.
    pub(crate) fn sum(&self, row: &[f64]) -> f64 {
        let mut total = 0.0;
        for &(s, _) in &self.trees {
            let mut k = s as usize;
            while self.right[k] != LEAF {
                k = if self.go_left(k, row) {
                    k + 1
                } else {
                    self.right[k] as usize
                };
            }
            total += self.value[k];
        }
        total
    }

    /// Explains `n` rows (row-major, `n_features` wide): contributions are added to
    /// `contrib` (row-major, same width) and each row's leaf-value sum (exactly
    /// [`Ensemble::sum`]) is written to `sums`.
    pub(crate) fn explain(&self, x: &[f64], contrib: &mut [f64], sums: &mut [f64]) {
        macro_rules! dispatch {
            ($($q:literal)*) => {
                match self.q {
                    $($q => self.explain_q::<$q>(x, contrib, sums),)*
                    _ => unreachable!("quadrature size is one of SIZES"),
                }
            };
        }
        dispatch!(1 2 3 4 6 8 12 16 32)
    }

    fn explain_q<const Q: usize>(&self, x: &[f64], contrib: &mut [f64], sums: &mut [f64]) {
        let w = self.n_features;
        let n = sums.len();
        const B: usize = 8;
        let mut scratch = Scratch::<B, Q>::new(self.max_len);
        let full = n / B * B;
        for (i, (xb, cb)) in x[..full * w]
            .chunks_exact(B * w)
            .zip(contrib[..full * w].chunks_exact_mut(B * w))
            .enumerate()
        {
            self.block::<B, Q>(xb, cb, &mut sums[i * B..(i + 1) * B], &mut scratch);
        }
        let mut single = Scratch::<1, Q>::new(self.max_len);
        for r in full..n {
            self.block::<1, Q>(
                &x[r * w..(r + 1) * w],
                &mut contrib[r * w..(r + 1) * w],
                &mut sums[r..r + 1],
                &mut single,
            );
        }
    }

    /// `B` rows through every tree, rows as the innermost (vectorisable) dimension.
    fn block<const B: usize, const Q: usize>(
        &self,
        x: &[f64],
        contrib: &mut [f64],
        sums: &mut [f64],
        s: &mut Scratch<B, Q>,
    ) {
        let w = self.n_features;
        let rows: [&[f64]; B] = std::array::from_fn(|b| &x[b * w..(b + 1) * w]);
        let mut total = [0.0f64; B];
        for &(start, end) in &self.trees {
            let (start, end) = (start as usize, end as usize);
            let len = end - start;
            let feature = &self.feature[start..end];
            let threshold = &self.threshold[start..end];
            let default_left = &self.default_left[start..end];
            let right = &self.right[start..end];
            let parent = &self.parent[start..end];
            let prev = &self.prev[start..end];
            let value = &self.value[start..end];
            let ratio = &self.ratio[start..end];
            let edge = &self.edge[start * 4 * Q..end * 4 * Q];
            let directions = |i: usize, out: &mut [f64; B]| {
                let (f, t, d) = (feature[i] as usize, threshold[i], default_left[i]);
                for b in 0..B {
                    let v = rows[b][f];
                    out[b] = f64::from(u8::from(if v.is_nan() { d } else { v <= t }));
                }
            };
            let s = &mut *s;
            // Top down: directions, feature states and path polynomials.
            s.hot[0] = [1.0; B];
            s.on_path[0] = [1.0; B];
            s.poly[0] = [[1.0; B]; Q];
            if right[0] != LEAF {
                directions(0, &mut s.left[0]);
            }
            for i in 1..len {
                let p = parent[i] as usize;
                let is_left = p + 1 == i;
                // The root's `hot` (all ones) stands in for "no earlier split".
                let pv = if prev[i] == NONE { 0 } else { prev[i] as usize };
                let e = &edge[i * 4 * Q..(i + 1) * 4 * Q];
                let r = ratio[i];
                let left = s.left[p];
                let still = s.hot[pv];
                let up = s.on_path[p];
                let mut hot = [0.0; B];
                let mut on = [0.0; B];
                for b in 0..B {
                    let bit = if is_left { left[b] } else { 1.0 - left[b] };
                    hot[b] = still[b] * bit;
                    on[b] = up[b] * bit;
                }
                s.hot[i] = hot;
                s.still[i] = still;
                s.on_path[i] = on;
                let pp = s.poly[p];
                let out = &mut s.poly[i];
                if prev[i] == NONE {
                    // First split on this feature on the path: `still` is 1 (same bits).
                    for j in 0..Q {
                        let (cold, d) = (r + e[j], e[Q + j]);
                        for b in 0..B {
                            out[j][b] = pp[j][b] * (cold + hot[b] * d);
                        }
                    }
                } else {
                    for j in 0..Q {
                        let (a, d) = (e[j], e[Q + j]);
                        for b in 0..B {
                            out[j][b] = pp[j][b] * (r + still[b] * a + hot[b] * d);
                        }
                    }
                }
                if right[i] != LEAF {
                    directions(i, &mut s.left[i]);
                }
            }
            // Bottom up: leaf polynomials summed, each split takes its feature's share.
            for i in (0..len).rev() {
                if right[i] == LEAF {
                    let v = value[i];
                    let on = s.on_path[i];
                    for b in 0..B {
                        // `on` is 0 or 1, and adding +-0.0 to a sum that started at
                        // +0.0 changes no bits: the same sum as `Ensemble::sum`.
                        total[b] += on[b] * v;
                    }
                    for pj in s.poly[i].iter_mut() {
                        pj.iter_mut().for_each(|p| *p *= v);
                    }
                    continue;
                }
                let (l, r) = (i + 1, right[i] as usize - start);
                let mut acc = [0.0f64; B];
                for c in [l, r] {
                    let e = &edge[c * 4 * Q..(c + 1) * 4 * Q];
                    let (still, hot, pc) = (&s.still[c], &s.hot[c], &s.poly[c]);
                    if prev[c] == NONE {
                        for j in 0..Q {
                            let (kc, dk) = (e[2 * Q + j], e[3 * Q + j]);
                            for b in 0..B {
                                acc[b] += (kc + hot[b] * dk) * pc[j][b];
                            }
                        }
                    } else {
                        for j in 0..Q {
                            let (kc, dk) = (e[2 * Q + j], e[3 * Q + j]);
                            for b in 0..B {
                                acc[b] += (still[b] * kc + hot[b] * dk) * pc[j][b];
                            }
                        }
                    }
                }
                let f = feature[i] as usize;
                for b in 0..B {
                    contrib[b * w + f] += acc[b];
                }
                let (pl, pr) = (s.poly[l], s.poly[r]);
                for j in 0..Q {
                    for b in 0..B {
                        s.poly[i][j][b] = pl[j][b] + pr[j][b];
                    }
                }
            }
        }
        sums.copy_from_slice(&total);
    }
}

/// Per-call working memory: per node (within one tree), masks and polynomials of `B`
/// rows.
struct Scratch<const B: usize, const Q: usize> {
    /// 1 where the row goes left at the node.
    left: Vec<[f64; B]>,
    /// 1 where the edge's feature was not cold above the edge.
    still: Vec<[f64; B]>,
    /// 1 where, in addition, the row follows the edge.
    hot: Vec<[f64; B]>,
    /// 1 where the node is on the row's path.
    on_path: Vec<[f64; B]>,
    poly: Vec<[[f64; B]; Q]>,
}

impl<const B: usize, const Q: usize> Scratch<B, Q> {
    fn new(nodes: usize) -> Self {
        let n = nodes.max(1);
        Scratch {
            left: vec![[0.0; B]; n],
            still: vec![[0.0; B]; n],
            hot: vec![[0.0; B]; n],
            on_path: vec![[0.0; B]; n],
            poly: vec![[[0.0; B]; Q]; n],
        }
    }
}

/// The largest number of distinct features on a root-to-leaf path of a tree.
fn max_path_features(nodes: &[Node]) -> usize {
    fn walk(nodes: &[Node], k: usize, path: &mut Vec<usize>, best: &mut usize) {
        match nodes[k].children {
            None => {
                let mut f = path.clone();
                f.sort_unstable();
                f.dedup();
                *best = (*best).max(f.len());
            }
            Some((l, r)) => {
                path.push(nodes[k].feature);
                walk(nodes, l, path, best);
                walk(nodes, r, path, best);
                path.pop();
            }
        }
    }
    let mut best = 0;
    walk(nodes, 0, &mut Vec::new(), &mut best);
    best
}

/// Brute-force Shapley values for tests: every feature subset, with the paper's
/// path-dependent conditional expectation (EXPVALUE).
#[cfg(test)]
pub(crate) mod brute {
    use super::{covers_and_values, preorder, Node};

    /// EXPVALUE: features in `known` (a bit mask) follow the row, the others split by
    /// cover.
    fn exp_value(nodes: &[Node], cover: &[f64], x: &[f64], known: u64, k: usize) -> f64 {
        match nodes[k].children {
            None => nodes[k].value,
            Some((l, r)) => {
                let n = &nodes[k];
                if known >> n.feature & 1 == 1 {
                    let v = x[n.feature];
                    let left = if v.is_nan() {
                        n.default_left
                    } else {
                        v <= n.threshold
                    };
                    exp_value(nodes, cover, x, known, if left { l } else { r })
                } else {
                    (cover[l] * exp_value(nodes, cover, x, known, l)
                        + cover[r] * exp_value(nodes, cover, x, known, r))
                        / (cover[l] + cover[r])
                }
            }
        }
    }

    /// `(bias, phi)` of the sum of `trees` at `x` (`m` features, at most 16).
    pub(crate) fn shapley(trees: &[Vec<Node>], x: &[f64], m: usize) -> (f64, Vec<f64>) {
        assert!(m <= 16);
        let fact = |n: usize| (1..=n).map(|i| i as f64).product::<f64>();
        let mut phi = vec![0.0; m];
        let mut bias = 0.0;
        for nodes in trees {
            let order = preorder(nodes).unwrap();
            let (cover, _) = covers_and_values(nodes, &order);
            let v: Vec<f64> = (0..1u64 << m)
                .map(|s| exp_value(nodes, &cover, x, s, 0))
                .collect();
            bias += v[0];
            for (i, p) in phi.iter_mut().enumerate() {
                for s in 0..1u64 << m {
                    if s >> i & 1 == 0 {
                        let size = s.count_ones() as usize;
                        let weight = fact(size) * fact(m - size - 1) / fact(m);
                        *p += weight * (v[(s | 1 << i) as usize] - v[s as usize]);
                    }
                }
            }
        }
        (bias, phi)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::model::testutil::Lcg as Rng;

    fn leaf(value: f64, cover: f64) -> Node {
        Node {
            feature: 0,
            threshold: 0.0,
            default_left: true,
            children: None,
            value,
            cover,
        }
    }

    fn split(feature: usize, threshold: f64, default_left: bool, l: usize, r: usize) -> Node {
        Node {
            feature,
            threshold,
            default_left,
            children: Some((l, r)),
            value: 0.0,
            cover: 0.0,
        }
    }

    /// A random tree of the given depth over `m` features (features repeat on paths),
    /// nodes in a shuffled-looking but valid order (children after parents).
    fn random_tree(rng: &mut Rng, depth: usize, m: usize) -> Vec<Node> {
        fn grow(rng: &mut Rng, nodes: &mut Vec<Node>, depth: usize, m: usize) -> usize {
            let k = nodes.len();
            if depth == 0 || (depth < 3 && rng.unit() < 0.2) {
                nodes.push(leaf(rng.unit() * 4.0 - 2.0, 0.5 + rng.unit() * 10.0));
                return k;
            }
            nodes.push(split(
                rng.below(m),
                (rng.unit() * 10.0).round() / 10.0,
                rng.unit() < 0.5,
                0,
                0,
            ));
            let r = grow(rng, nodes, depth - 1, m);
            let l = grow(rng, nodes, depth - 1, m);
            nodes[k].children = Some((l, r));
            k
        }
        let mut nodes = Vec::new();
        grow(rng, &mut nodes, depth, m);
        nodes
    }

    fn random_row(rng: &mut Rng, m: usize) -> Vec<f64> {
        (0..m)
            .map(|_| {
                if rng.unit() < 0.15 {
                    f64::NAN
                } else {
                    // On thresholds exactly now and then (they are multiples of 0.1).
                    (rng.unit() * 10.0).round() / 10.0 + if rng.unit() < 0.5 { 0.05 } else { 0.0 }
                }
            })
            .collect()
    }

    fn check(trees: &[Vec<Node>], rows: &[Vec<f64>], m: usize) {
        let e = Ensemble::build(trees, m).unwrap();
        let x: Vec<f64> = rows.concat();
        let mut contrib = vec![0.0; x.len()];
        let mut sums = vec![0.0; rows.len()];
        e.explain(&x, &mut contrib, &mut sums);
        for (i, row) in rows.iter().enumerate() {
            let (bias, phi) = brute::shapley(trees, row, m);
            assert!(
                (e.expected() - bias).abs() < 1e-12,
                "{} vs {bias}",
                e.expected()
            );
            let ours = &contrib[i * m..(i + 1) * m];
            for j in 0..m {
                assert!(
                    (ours[j] - phi[j]).abs() < 1e-9,
                    "row {i} feature {j}: {} vs brute force {} (q = {})",
                    ours[j],
                    phi[j],
                    e.q
                );
            }
            assert_eq!(sums[i].to_bits(), e.sum(row).to_bits());
            let total = e.expected() + ours.iter().sum::<f64>();
            assert!((total - sums[i]).abs() <= e.local_accuracy_bound(0.0));
            // One row at a time gives the same values as a block.
            let mut one = vec![0.0; m];
            let mut s = [0.0];
            e.explain(row, &mut one, &mut s);
            assert_eq!(s[0].to_bits(), sums[i].to_bits());
            for j in 0..m {
                assert!((one[j] - ours[j]).abs() < 1e-12);
            }
        }
    }

    #[test]
    fn one_split_gives_the_textbook_values() {
        // Left: cover 3, value 1; right: cover 7, value -1. E = 0.3 - 0.7 = -0.4.
        let tree = vec![split(0, 0.5, false, 1, 2), leaf(1.0, 3.0), leaf(-1.0, 7.0)];
        let e = Ensemble::build(std::slice::from_ref(&tree), 2).unwrap();
        let mut c = vec![0.0; 2];
        let mut s = [0.0];
        e.explain(&[0.2, 9.0], &mut c, &mut s);
        assert!((e.expected() + 0.4).abs() < 1e-15);
        assert!((c[0] - 1.4).abs() < 1e-15 && c[1] == 0.0, "{c:?}");
        assert_eq!(s[0], 1.0);
        // NaN goes right (default), as in prediction.
        let mut c = vec![0.0; 2];
        e.explain(&[f64::NAN, 9.0], &mut c, &mut s);
        assert_eq!(s[0], -1.0);
        assert!((c[0] + 0.6).abs() < 1e-15, "{c:?}");
    }

    #[test]
    fn a_feature_split_twice_on_a_path_counts_once() {
        // x0 <= 5 -> (x1 <= 1 -> (x0 <= 2 -> a | b) | c) | d
        let tree = vec![
            split(0, 5.0, true, 1, 6),
            split(1, 1.0, true, 2, 5),
            split(0, 2.0, false, 3, 4),
            leaf(3.0, 2.0),
            leaf(-1.0, 5.0),
            leaf(0.5, 4.0),
            leaf(-2.0, 9.0),
        ];
        let rows: Vec<Vec<f64>> = [
            [1.0, 0.0],
            [3.0, 0.0],
            [3.0, 2.0],
            [7.0, 0.0],
            [f64::NAN, 0.0],
            [1.0, f64::NAN],
            [2.0, 1.0],
        ]
        .iter()
        .map(|r| r.to_vec())
        .collect();
        check(&[tree], &rows, 2);
    }

    #[test]
    fn random_trees_match_brute_force_shapley_values() {
        let mut rng = Rng(99);
        // Depth 6 over 5 features and depth 9 over 8 features (paths of up to 8
        // distinct features, four quadrature points).
        for (depth, m, n_trees) in [(2, 3, 3), (4, 4, 5), (6, 5, 6), (9, 8, 2)] {
            let trees: Vec<Vec<Node>> = (0..n_trees)
                .map(|_| random_tree(&mut rng, depth, m))
                .collect();
            let rows: Vec<Vec<f64>> = (0..21).map(|_| random_row(&mut rng, m)).collect();
            check(&trees, &rows, m);
        }
    }

    #[test]
    fn deep_paths_use_more_quadrature_points_and_stay_exact() {
        // A chain 14 deep over 14 distinct features: 7 points are needed, 8 are used.
        let m = 14;
        let mut nodes = Vec::new();
        for d in 0..m {
            let k = nodes.len();
            nodes.push(split(d, 0.5, d % 2 == 0, k + 1, k + 2));
            nodes.push(leaf(d as f64 * 0.3 - 1.0, 1.0 + d as f64));
            // Next split goes at k + 2.
            nodes[k].children = Some((k + 2, k + 1));
        }
        let last = nodes.len();
        nodes.truncate(last);
        nodes.push(leaf(2.5, 3.0));
        let mut rng = Rng(5);
        let rows: Vec<Vec<f64>> = (0..4)
            .map(|_| (0..m).map(|_| rng.unit()).collect())
            .collect();
        let e = Ensemble::build(std::slice::from_ref(&nodes), m).unwrap();
        assert_eq!(e.q, 8);
        check(&[nodes], &rows, m);
    }

    #[test]
    fn hessboost_strict_f32_splits_become_non_strict_f64_thresholds() {
        let mut rng = Rng(7);
        let mut conds: Vec<f32> = vec![0.0, -0.0, 1.0, -1.0, 0.1, 3.5, 1e-40, -1e-40, 1e30];
        conds.extend((0..200).map(|_| ((rng.unit() - 0.5) * 1e4) as f32));
        for cond in conds {
            let t = strict_f32_as_le(cond);
            let below = f32_below(cond);
            assert_eq!(t as f32, below, "{cond}");
            let (lo, hi) = (below as f64, cond as f64);
            let mid = (lo + hi) / 2.0;
            let mut probes = vec![lo, hi, mid, f64_below(mid), -f64_below(-mid), t];
            for _ in 0..50 {
                probes.push(lo + (hi - lo) * (rng.unit() * 3.0 - 1.0));
            }
            for x in probes {
                let hessboost = (x as f32) < cond;
                assert_eq!(x <= t, hessboost, "cond {cond}, x {x}");
                assert_eq!(
                    (x as f32) <= (t as f32),
                    hessboost,
                    "cond {cond}, x {x} (f32)"
                );
            }
        }
    }

    #[test]
    fn gauss_legendre_integrates_polynomials_exactly() {
        for &n in &SIZES {
            let (t, w) = gauss_legendre(n);
            for d in 0..2 * n {
                let integral: f64 = t.iter().zip(&w).map(|(t, w)| w * t.powi(d as i32)).sum();
                let exact = 1.0 / (d as f64 + 1.0);
                assert!(
                    (integral - exact).abs() < 1e-14,
                    "n {n} degree {d}: {integral}"
                );
            }
        }
    }
}
