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
    /// The threshold `t` of inner node `k` under shap's rule: a finite value `v` of
    /// its feature goes left exactly when `v <= t` (for the export to shap).
    fn threshold(&self, k: usize) -> f64;
    /// Inner node `k`'s split as `(feature, cond, default_left)` when it routes a row
    /// by `(v as f32) < cond`, a NaN `v` by `default_left` (the rule [`ShapTables`]
    /// evaluates); `None`, the default: the tree is explained by the recursion.
    fn f32_split(&self, _k: usize) -> Option<(usize, f32, bool)> {
        None
    }
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

/// Path features a leaf may have for its table; a tree with a deeper leaf is explained
/// by the recursion. At 6 a leaf's table is 384 values (3 KiB) and costs 4,374 steps to
/// build; at 8 it would be 2,048 values and 52k steps, per leaf.
const MAX_TABLE_FEATURES: usize = 6;

/// Inner nodes a tree may have for its tables: one row's directions at all of them are
/// the bits of one `u64` (a depth-6 tree has at most 63).
const MAX_TABLE_INNER: usize = 64;

/// Inner nodes a group (see [`ShapTables`]) may span, and the most values its table may
/// hold. On the 300-tree depth-6 gbdt of BENCHMARKS.md, 4 and 4,096 (32 KiB) make the
/// tables smaller than one per leaf (8.3 MB against 13.2 MB) while a row reads and adds
/// a third as many values (24k against 79k); 3 would read 10% more, 5 needs 20% more
/// memory for 10% fewer.
const MAX_GROUP_INNER: usize = 4;
const MAX_GROUP_VALUES: usize = 4096;

/// A node above the groups: it hands its path mask down to its children.
#[derive(Debug, Clone, Copy)]
struct Top {
    /// The node's bit in the row's direction word (its preorder index among the inner
    /// nodes).
    bit: u8,
    /// Position of its feature among the distinct features of the path through it.
    pos: u8,
    /// Mask slots (preorder indexes of the tree's nodes): its own, its children's.
    slot: u8,
    left: u8,
    right: u8,
}

/// A subtree explained by one table lookup: its leaves' contributions summed for each
/// combination of (which of the path features above it the row satisfies, which way
/// the row goes at each of its inner nodes).
#[derive(Debug, Clone, Copy)]
struct Group {
    /// Mask slot of the subtree's root.
    slot: u8,
    /// One bit per distinct path feature above the root: `mask & full` is the first part
    /// of the table index.
    full: u8,
    /// The subtree's inner nodes: how many, and the direction bit of the first (they are
    /// consecutive in preorder); their directions are the last `k` bits of the index.
    k: u8,
    s: u8,
    /// Distinct features of the subtree's leaves' paths: values per table entry.
    u: u8,
    feats: u32,
    table: u32,
}

/// An inner node's split, as [`ShapTree::f32_split`] gives it.
#[derive(Debug, Clone, Copy)]
struct Split {
    feature: u32,
    cond: f32,
    /// 1 when a missing value goes left, else 0.
    default_left: u32,
}

#[derive(Debug, Clone)]
struct TableTree {
    /// Ranges into `splits` (the inner nodes in preorder), `tops` and `runs`.
    inner: (u32, u32),
    tops: (u32, u32),
    runs: (u32, u32),
    /// Where the tree's nodes start in `steps` and its leaves in `leaf_values`, how
    /// many inner nodes it has (they come first) and its depth: the leaf a row reaches
    /// is found from its direction bits in `depth` steps (see [`ShapTables::add_rows`]).
    steps: u32,
    leaves: u32,
    n_inner: u8,
    depth: u8,
}

/// Consecutive groups with the same number of values: `(u, start, end)` into `groups`,
/// so that the loop adding them has a fixed length the compiler unrolls.
type Run = (u8, u32, u32);

/// Rows in chunks of this many, each feature's values of a chunk side by side: the
/// comparisons at an inner node then run on a chunk's rows at once.
const LANES: usize = 8;

/// Bit `i` of lane `x`: row `x` of a chunk goes left at `splits[i]` (at most 32 splits).
#[inline(always)]
#[allow(clippy::needless_range_loop)]
fn lane_bits(chunk: &[f32], splits: &[Split]) -> [u32; LANES] {
    let mut bits = [0u32; LANES];
    for (i, s) in splits.iter().enumerate().take(32) {
        let col: &[f32; LANES] = chunk[s.feature as usize * LANES..][..LANES]
            .try_into()
            .expect("a chunk holds LANES values a feature");
        // All ones or zero, like the compare instructions' masks.
        let dl = 0u32.wrapping_sub(s.default_left);
        let bit = 1u32 << i;
        for x in 0..LANES {
            let v = col[x];
            let less = 0u32.wrapping_sub(u32::from(v < s.cond));
            let nan = 0u32.wrapping_sub(u32::from(v.is_nan()));
            bits[x] |= (less | (nan & dl)) & bit;
        }
    }
    bits
}

/// A block of feature rows laid out for [`ShapTables::add_rows`]: chunks of [`LANES`]
/// rows, in each the chunk's values of feature 0, then of feature 1..., each value
/// `v as f32` (what the tree walk compares); a last short chunk is padded with zeros.
#[derive(Debug, Clone)]
pub(crate) struct RowBlock {
    width: usize,
    rows: usize,
    data: Vec<f32>,
    /// Scratch for [`ShapTables::add_rows`], one mask a lane for each node of a tree (a
    /// bit a path feature: the row satisfies every split on it so far); here so that it
    /// is not cleared for every tree.
    masks: Box<[[u8; LANES]; 256]>,
    /// The rows' SHAP values while trees are added, laid out like `data` (a chunk's 8
    /// lanes of feature 0, then of feature 1...): a group's value for one feature lands
    /// in one cache line for the whole chunk and the lanes add as vectors, where a
    /// row-major layout scatters them over 8 rows. Read and written row by row with
    /// [`RowBlock::load_phi`], [`RowBlock::phi_row`] and [`RowBlock::store_phi`].
    phi: Vec<f64>,
}

impl RowBlock {
    /// The layout of `x`, row-major with `width` values a row.
    pub(crate) fn new(x: &[f64], width: usize) -> Self {
        let rows = x.len().checked_div(width).unwrap_or(0);
        let mut data = vec![0.0f32; rows.div_ceil(LANES) * width * LANES];
        for (r, row) in x.chunks_exact(width.max(1)).take(rows).enumerate() {
            let chunk = &mut data[(r / LANES) * width * LANES..][..width * LANES];
            for (j, &v) in row.iter().enumerate() {
                chunk[j * LANES + r % LANES] = v as f32;
            }
        }
        let phi = vec![0.0; data.len()];
        RowBlock {
            width,
            rows,
            data,
            masks: Box::new([[0; LANES]; 256]),
            phi,
        }
    }

    /// Where row `r`'s value of feature 0 sits in `phi` (feature `j` is `j * LANES` on).
    fn at(&self, r: usize) -> usize {
        (r / LANES) * self.width * LANES + r % LANES
    }

    /// Row `r`'s SHAP values so far, copied into `out` (the block's width).
    pub(crate) fn phi_row(&self, r: usize, out: &mut [f64]) {
        let at = self.at(r);
        for (j, o) in out.iter_mut().enumerate().take(self.width) {
            *o = self.phi[at + j * LANES];
        }
    }

    /// Sets row `r`'s SHAP values to `row` (the block's width).
    pub(crate) fn set_phi_row(&mut self, r: usize, row: &[f64]) {
        let at = self.at(r);
        for (j, &v) in row.iter().enumerate().take(self.width) {
            self.phi[at + j * LANES] = v;
        }
    }

    /// Sets every row's SHAP values from `phi` (row-major, the block's width a row).
    pub(crate) fn load_phi(&mut self, phi: &[f64]) {
        for (r, row) in phi
            .chunks_exact(self.width.max(1))
            .take(self.rows)
            .enumerate()
        {
            self.set_phi_row(r, row);
        }
    }

    /// Copies every row's SHAP values into `phi` (row-major, the block's width a row).
    pub(crate) fn store_phi(&self, phi: &mut [f64]) {
        for (r, row) in phi
            .chunks_exact_mut(self.width.max(1))
            .take(self.rows)
            .enumerate()
        {
            self.phi_row(r, row);
        }
    }
}

/// Path-dependent TreeSHAP with the Shapley weights precomputed (the "Fast TreeSHAP v2"
/// idea of Yang 2021). A leaf's contribution to each of its path features depends only
/// on which of them the row satisfies (every split on that feature along the path goes
/// the row's way), so a table indexed by that mask replaces the recursion's O(depth^2)
/// work per leaf. Going further, a small subtree's leaves depend only on the mask at
/// its root and the row's directions at its own inner nodes, so their tables are summed
/// into one per subtree ("group"): per row and tree, one comparison per inner node (the
/// bits of a `u64`), a mask handed down the nodes above the groups, then one lookup per
/// group adding a few values. Same values as [`add_tree_shap`] up to float rounding
/// (the order of the sums), proven against it by the tests below; measured in
/// BENCHMARKS.md.
#[derive(Debug, Clone, Default)]
pub(crate) struct ShapTables {
    /// One per tree, in the order built; `None`: explained by the recursion.
    trees: Vec<Option<TableTree>>,
    splits: Vec<Split>,
    tops: Vec<Top>,
    /// Each tree's groups sorted by their number of values, in `runs`.
    groups: Vec<Group>,
    runs: Vec<Run>,
    feats: Vec<u32>,
    tables: Vec<f64>,
    /// Per node (inner nodes in preorder, then the leaves in preorder), the node a row
    /// goes to next: `[1]` when it goes left at it, `[0]` when it goes right; a leaf
    /// goes to itself both ways.
    steps: Vec<[u8; 2]>,
    /// The leaves' values, each tree's in preorder: what the margin adds.
    leaf_values: Vec<f64>,
}

/// One split on the way to a leaf.
#[derive(Debug, Clone, Copy)]
struct Step {
    /// Preorder index of the inner node among the inner nodes.
    inner: usize,
    /// The way the path goes there.
    left: bool,
    /// Position of the node's feature among the path's distinct features.
    pos: usize,
    /// Cover of the child taken over the node's.
    ratio: f64,
}

/// A node of a tree being tabled, in preorder.
#[derive(Debug, Clone)]
struct Visit {
    /// Distinct features of the splits above the node, in order of first appearance
    /// (a feature's position in it is the same for every node below).
    prefix: Vec<usize>,
    kind: VisitKind,
}

#[derive(Debug, Clone)]
enum VisitKind {
    Inner {
        inner: usize,
        pos: usize,
        feature: usize,
        /// Indexes of the children in the visit list.
        left: usize,
        right: usize,
    },
    Leaf {
        value: f64,
        path: Vec<Step>,
    },
}

/// Lists the nodes below `k` in preorder; `None` when the tree is too big for tables
/// or a node does not route by an f32 split.
fn walk<T: ShapTree>(
    tree: &T,
    k: usize,
    prefix: Vec<usize>,
    path: Vec<Step>,
    n_inner: &mut usize,
    out: &mut Vec<Visit>,
    splits: &mut Vec<(u32, f32, bool)>,
) -> Option<usize> {
    let me = out.len();
    match tree.children(k) {
        None => {
            if prefix.len() > MAX_TABLE_FEATURES {
                return None;
            }
            out.push(Visit {
                prefix,
                kind: VisitKind::Leaf {
                    value: tree.leaf_value(k),
                    path,
                },
            });
        }
        Some((l, r)) => {
            let inner = *n_inner;
            *n_inner += 1;
            if *n_inner > MAX_TABLE_INNER {
                return None;
            }
            let (feature, cond, default_left) = tree.f32_split(k)?;
            splits.push((u32::try_from(feature).ok()?, cond, default_left));
            let pos = prefix
                .iter()
                .position(|&g| g == feature)
                .unwrap_or(prefix.len());
            let mut below = prefix.clone();
            if pos == prefix.len() {
                below.push(feature);
            }
            out.push(Visit {
                prefix,
                kind: VisitKind::Inner {
                    inner,
                    pos,
                    feature,
                    left: 0,
                    right: 0,
                },
            });
            let w = tree.cover(k);
            let step = |child: usize, left: bool| Step {
                inner,
                left,
                pos,
                ratio: tree.cover(child) / w,
            };
            let mut lp = path.clone();
            lp.push(step(l, true));
            let li = walk(tree, l, below.clone(), lp, n_inner, out, splits)?;
            let mut rp = path;
            rp.push(step(r, false));
            let ri = walk(tree, r, below, rp, n_inner, out, splits)?;
            if let VisitKind::Inner { left, right, .. } = &mut out[me].kind {
                *left = li;
                *right = ri;
            }
        }
    }
    Some(me)
}

/// A leaf's table: for each mask `m` of its `d` path features that the row satisfies,
/// its contribution to each of them (`d` values at `m * d`).
fn leaf_table(value: f64, path: &[Step], d: usize) -> Vec<f64> {
    let mut zero = vec![1.0; d];
    for s in path {
        zero[s.pos] *= s.ratio;
    }
    let full = (1usize << d) - 1;
    let fact = |n: usize| (1..=n).map(|v| v as f64).product::<f64>();
    // w[s]: the Shapley weight of a coalition of s of the other d - 1 features.
    let w: Vec<f64> = (0..d.max(1))
        .map(|s| fact(s) * fact(d.saturating_sub(s + 1)) / fact(d))
        .collect();
    let prod: Vec<f64> = (0..=full)
        .map(|m| {
            (0..d)
                .filter(|j| m & (1 << j) != 0)
                .map(|j| zero[j])
                .product()
        })
        .collect();
    let mut table = Vec::with_capacity((full + 1) * d);
    for m in 0..=full {
        for (p, &zero_p) in zero.iter().enumerate() {
            let others = full & !(1 << p);
            let q = m & others;
            // Sum over coalitions S of satisfied features; the unsatisfied and the
            // absent ones contribute their cover fractions.
            let mut a = 0.0;
            let mut sub = q;
            loop {
                a += w[sub.count_ones() as usize] * prod[others & !sub];
                if sub == 0 {
                    break;
                }
                sub = (sub - 1) & q;
            }
            let one = if m & (1 << p) != 0 { 1.0 } else { 0.0 };
            table.push(value * (one - zero_p) * a);
        }
    }
    table
}

/// What a subtree holds: its inner nodes, its leaves (visit indexes, preorder) and the
/// distinct features of its paths (the root's prefix first).
fn subtree(visits: &[Visit], v: usize) -> (usize, Vec<usize>, Vec<usize>) {
    let mut feats = visits[v].prefix.clone();
    let (mut k, mut leaves) = (0, Vec::new());
    let mut stack = vec![v];
    while let Some(x) = stack.pop() {
        match &visits[x].kind {
            VisitKind::Leaf { .. } => leaves.push(x),
            VisitKind::Inner {
                feature,
                left,
                right,
                ..
            } => {
                k += 1;
                if !feats.contains(feature) {
                    feats.push(*feature);
                }
                stack.push(*right);
                stack.push(*left);
            }
        }
    }
    (k, leaves, feats)
}

impl ShapTables {
    /// Adds one tree (rooted at `root`); trees are explained in the order added.
    pub(crate) fn push_tree<T: ShapTree>(&mut self, tree: &T, root: usize) {
        let mut visits = Vec::new();
        let mut splits = Vec::new();
        let mut n_inner = 0;
        let ok = walk(
            tree,
            root,
            Vec::new(),
            Vec::new(),
            &mut n_inner,
            &mut visits,
            &mut splits,
        )
        .is_some();
        if !ok {
            self.trees.push(None);
            return;
        }
        let leaf_tables: Vec<Vec<f64>> = visits
            .iter()
            .map(|v| match &v.kind {
                VisitKind::Leaf { value, path } => leaf_table(*value, path, v.prefix.len()),
                VisitKind::Inner { .. } => Vec::new(),
            })
            .collect();
        let inner_start = self.splits.len() as u32;
        self.splits
            .extend(splits.iter().map(|&(feature, cond, dl)| Split {
                feature,
                cond,
                default_left: u32::from(dl),
            }));
        let tops_start = self.tops.len() as u32;
        let groups_start = self.groups.len() as u32;
        let mut stack = vec![0usize];
        while let Some(v) = stack.pop() {
            let (k, leaves, union) = subtree(&visits, v);
            let dn = visits[v].prefix.len();
            if k <= MAX_GROUP_INNER && (union.len() << (dn + k)) <= MAX_GROUP_VALUES {
                self.push_group(&visits, &leaf_tables, v, k, &leaves, &union);
            } else if let VisitKind::Inner {
                inner,
                pos,
                left,
                right,
                ..
            } = visits[v].kind
            {
                // A leaf always fits a group (at most 6 features: 384 values).
                self.tops.push(Top {
                    bit: inner as u8,
                    pos: pos as u8,
                    slot: v as u8,
                    left: left as u8,
                    right: right as u8,
                });
                // Preorder: a node's mask is written before its children read it.
                stack.push(right);
                stack.push(left);
            }
        }
        // Sorted by size (stable: preorder within a size), then cut into runs.
        self.groups[groups_start as usize..].sort_by_key(|g| g.u);
        let runs_start = self.runs.len() as u32;
        for i in groups_start as usize..self.groups.len() {
            let u = self.groups[i].u;
            let open = self.runs.len() as u32 > runs_start;
            match self.runs.last_mut() {
                Some(run) if open && run.0 == u => run.2 = i as u32 + 1,
                _ => self.runs.push((u, i as u32, i as u32 + 1)),
            }
        }
        // The leaf finder: node ids (inner nodes by preorder index, then the leaves) and
        // each node's depth.
        let n_inner = splits.len();
        let mut id = vec![0usize; visits.len()];
        let mut depth = vec![0usize; visits.len()];
        let steps_start = self.steps.len() as u32;
        let leaves_start = self.leaf_values.len() as u32;
        let mut leaf_ids = n_inner;
        for (v, visit) in visits.iter().enumerate() {
            match &visit.kind {
                VisitKind::Inner { inner, .. } => id[v] = *inner,
                VisitKind::Leaf { value, .. } => {
                    id[v] = leaf_ids;
                    leaf_ids += 1;
                    self.leaf_values.push(*value);
                }
            }
        }
        self.steps.resize(self.steps.len() + leaf_ids, [0, 0]);
        let steps = &mut self.steps[steps_start as usize..];
        for (v, visit) in visits.iter().enumerate() {
            match visit.kind {
                VisitKind::Inner { left, right, .. } => {
                    steps[id[v]] = [id[right] as u8, id[left] as u8];
                    depth[left] = depth[v] + 1;
                    depth[right] = depth[v] + 1;
                }
                VisitKind::Leaf { .. } => steps[id[v]] = [id[v] as u8; 2],
            }
        }
        self.trees.push(Some(TableTree {
            inner: (inner_start, self.splits.len() as u32),
            tops: (tops_start, self.tops.len() as u32),
            runs: (runs_start, self.runs.len() as u32),
            steps: steps_start,
            leaves: leaves_start,
            n_inner: n_inner as u8,
            depth: depth.iter().copied().max().unwrap_or(0) as u8,
        }));
    }

    /// The table of the subtree at visit `v`: for every mask of the root's prefix
    /// features and every direction of its `k` inner nodes, the sum of its leaves'
    /// contributions to each feature of `union`.
    fn push_group(
        &mut self,
        visits: &[Visit],
        leaf_tables: &[Vec<f64>],
        v: usize,
        k: usize,
        leaves: &[usize],
        union: &[usize],
    ) {
        let dn = visits[v].prefix.len();
        let s = match visits[v].kind {
            VisitKind::Inner { inner, .. } => inner,
            VisitKind::Leaf { .. } => 0,
        };
        let table = self.tables.len() as u32;
        let u = union.len();
        let mut acc = vec![0.0; u];
        // Where each leaf's path features sit in `union`.
        let at: Vec<Vec<usize>> = leaves
            .iter()
            .map(|&l| {
                let p = &visits[l].prefix;
                p.iter()
                    .map(|f| union.iter().position(|g| g == f).expect("in the union"))
                    .collect()
            })
            .collect();
        for idx in 0..(1usize << (dn + k)) {
            let above = idx >> k;
            let dirs = idx & ((1 << k) - 1);
            acc.iter_mut().for_each(|a| *a = 0.0);
            for (&l, at) in leaves.iter().zip(&at) {
                let VisitKind::Leaf { path, .. } = &visits[l].kind else {
                    continue;
                };
                let d = visits[l].prefix.len();
                // Features first split on inside the subtree start satisfied.
                let mut m = above | !((1usize << dn) - 1);
                for st in path.iter().filter(|st| st.inner >= s && st.inner < s + k) {
                    let goes_left = (dirs >> (st.inner - s)) & 1 == 1;
                    if goes_left != st.left {
                        m &= !(1 << st.pos);
                    }
                }
                m &= (1 << d) - 1;
                for (j, &p) in at.iter().enumerate() {
                    acc[p] += leaf_tables[l][m * d + j];
                }
            }
            self.tables.extend_from_slice(&acc);
        }
        let feats = self.feats.len() as u32;
        self.feats.extend(union.iter().map(|&f| f as u32));
        self.groups.push(Group {
            slot: v as u8,
            full: ((1u32 << dn) - 1) as u8,
            k: k as u8,
            s: s as u8,
            u: u as u8,
            feats,
            table,
        });
    }

    /// Whether tree `t` has tables (else the caller runs [`add_tree_shap`]).
    pub(crate) fn has(&self, t: usize) -> bool {
        matches!(self.trees.get(t), Some(Some(_)))
    }

    /// Adds tree `t`'s SHAP values for every row of `rows` into the block's values
    /// ([`RowBlock::store_phi`] reads them) and the value of the leaf each row reaches
    /// into `sums` (one a row); nothing when the tree has no tables ([`ShapTables::has`]). The leaf
    /// comes from the same direction bits the contributions are looked up by (one
    /// comparison per split for both), and it is the leaf a walk down the tree reaches.
    // Lane loops index several arrays of LANES at once: fixed-length loops that LLVM
    // turns into vector instructions.
    #[allow(clippy::needless_range_loop)]
    pub(crate) fn add_rows(&self, t: usize, rows: &mut RowBlock, sums: &mut [f64]) {
        let Some(Some(tt)) = self.trees.get(t) else {
            return;
        };
        let width = rows.width;
        if width == 0 {
            return;
        }
        let splits = &self.splits[tt.inner.0 as usize..tt.inner.1 as usize];
        let tops = &self.tops[tt.tops.0 as usize..tt.tops.1 as usize];
        let runs = &self.runs[tt.runs.0 as usize..tt.runs.1 as usize];
        // Every slot read below is written first for the same chunk (the root's here,
        // the others by their parent, in preorder).
        let masks: &mut [[u8; LANES]; 256] = &mut rows.masks;
        let steps = &self.steps[tt.steps as usize..];
        let leaf_values = &self.leaf_values[tt.leaves as usize..];
        let n_inner = usize::from(tt.n_inner);
        let chunks = rows.data.chunks_exact(width * LANES);
        let lanes = rows
            .phi
            .chunks_exact_mut(width * LANES)
            .zip(sums.chunks_mut(LANES));
        for (c, (chunk, (phi, sums))) in chunks.zip(lanes).enumerate() {
            // Bit i of lane r: row r goes left at inner node i, as `Forest::next`
            // routes it (a NaN fails `v < cond`, then goes its default way).
            // Built as two halves of 32-bit lanes (the compare masks are 32 bits wide,
            // so no widening and no variable shift per split), then joined.
            let (low, high) = splits.split_at(splits.len().min(32));
            let (low, high) = (lane_bits(chunk, low), lane_bits(chunk, high));
            let dirs: [u64; LANES] =
                std::array::from_fn(|x| u64::from(low[x]) | (u64::from(high[x]) << 32));
            let n = (rows.rows - c * LANES).min(LANES);
            // The leaf each lane reaches: `depth` steps from the root, a leaf staying
            // put (for a leaf the bit read is any, both ways lead back to it).
            let mut node = [0u8; LANES];
            for _ in 0..tt.depth {
                for x in 0..LANES {
                    let k = usize::from(node[x]);
                    node[x] = steps[k][((dirs[x] >> (k & 63)) & 1) as usize];
                }
            }
            for (s, &k) in sums.iter_mut().zip(&node).take(n) {
                *s += leaf_values[usize::from(k) - n_inner];
            }
            masks[0] = [u8::MAX; LANES];
            for t in tops {
                let m = masks[t.slot as usize];
                let (mut l, mut r) = ([0u8; LANES], [0u8; LANES]);
                for x in 0..LANES {
                    let g = ((dirs[x] >> t.bit) & 1) as u8;
                    l[x] = m[x] & !((g ^ 1) << t.pos);
                    r[x] = m[x] & !(g << t.pos);
                }
                masks[t.left as usize] = l;
                masks[t.right as usize] = r;
            }
            for &(u, a, b) in runs {
                let groups = &self.groups[a as usize..b as usize];
                match u {
                    1 => self.add_groups::<1>(groups, masks, &dirs, phi),
                    2 => self.add_groups::<2>(groups, masks, &dirs, phi),
                    3 => self.add_groups::<3>(groups, masks, &dirs, phi),
                    4 => self.add_groups::<4>(groups, masks, &dirs, phi),
                    5 => self.add_groups::<5>(groups, masks, &dirs, phi),
                    6 => self.add_groups::<6>(groups, masks, &dirs, phi),
                    7 => self.add_groups::<7>(groups, masks, &dirs, phi),
                    8 => self.add_groups::<8>(groups, masks, &dirs, phi),
                    9 => self.add_groups::<9>(groups, masks, &dirs, phi),
                    10 => self.add_groups::<10>(groups, masks, &dirs, phi),
                    // At most 6 features above a group and 4 inner nodes in it make
                    // 10; any other size would still add up, only slower.
                    _ => self.add_groups_of(usize::from(u), groups, masks, &dirs, phi),
                }
            }
        }
    }

    /// The table entry of each lane of a chunk for group `g`.
    #[inline(always)]
    #[allow(clippy::needless_range_loop)]
    fn entries(g: &Group, masks: &[[u8; LANES]; 256], dirs: &[u64; LANES]) -> [usize; LANES] {
        let k = u32::from(g.k);
        let m = &masks[g.slot as usize];
        let mut idx = [0usize; LANES];
        for x in 0..LANES {
            idx[x] =
                (usize::from(m[x] & g.full) << k) | ((dirs[x] >> g.s) & ((1u64 << k) - 1)) as usize;
        }
        idx
    }

    /// [`ShapTables::add_groups`] for a size known only at run time.
    fn add_groups_of(
        &self,
        u: usize,
        groups: &[Group],
        masks: &[[u8; LANES]; 256],
        dirs: &[u64; LANES],
        phi: &mut [f64],
    ) {
        for g in groups {
            let idx = Self::entries(g, masks, dirs);
            let feats = &self.feats[g.feats as usize..][..u];
            for (x, &e) in idx.iter().enumerate() {
                let values = &self.tables[g.table as usize + e * u..][..u];
                for (&f, &v) in feats.iter().zip(values) {
                    phi[f as usize * LANES + x] += v;
                }
            }
        }
    }

    /// Adds the values of `groups` (each with `U` of them) for every lane of a chunk
    /// (`phi`: the chunk's values, feature-major as in [`RowBlock`]). A padded lane's
    /// entry is a valid one too, and its sums are never read.
    #[inline(always)]
    #[allow(clippy::needless_range_loop)]
    fn add_groups<const U: usize>(
        &self,
        groups: &[Group],
        masks: &[[u8; LANES]; 256],
        dirs: &[u64; LANES],
        phi: &mut [f64],
    ) {
        for g in groups {
            let idx = Self::entries(g, masks, dirs);
            let f = g.feats as usize;
            let feats: &[u32; U] = self.feats[f..f + U].try_into().expect("U features a group");
            // Each lane's entry bounds-checked once; the loads of a feature's 8 lanes
            // are independent (mostly cache misses) and overlap.
            let values: [&[f64; U]; LANES] = std::array::from_fn(|x| {
                let at = g.table as usize + idx[x] * U;
                self.tables[at..at + U]
                    .try_into()
                    .expect("U values an entry")
            });
            for j in 0..U {
                let lanes: &mut [f64; LANES] = (&mut phi[feats[j] as usize * LANES..][..LANES])
                    .try_into()
                    .expect("LANES values a feature");
                for x in 0..LANES {
                    lanes[x] += values[x][j];
                }
            }
        }
    }
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
        fn threshold(&self, k: usize) -> f64 {
            crate::model::shap_export::next_down(self.nodes[k].1)
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

    /// [`TestTree`] routing as the boosted trees do: `(x as f32) < threshold as f32`, a
    /// NaN left at even nodes and right at odd ones.
    struct F32Tree(TestTree);

    impl ShapTree for F32Tree {
        fn children(&self, k: usize) -> Option<(usize, usize)> {
            self.0.children(k)
        }
        fn feature(&self, k: usize) -> usize {
            self.0.feature(k)
        }
        fn cover(&self, k: usize) -> f64 {
            self.0.cover(k)
        }
        fn leaf_value(&self, k: usize) -> f64 {
            self.0.leaf_value(k)
        }
        fn goes_left(&self, k: usize, row: &[f64]) -> bool {
            let (f, c, default_left) = self.f32_split(k).expect("every node splits on f32");
            let v = row[f] as f32;
            if v.is_nan() {
                default_left
            } else {
                v < c
            }
        }
        fn threshold(&self, k: usize) -> f64 {
            crate::model::shap_export::leq_threshold_of_f32_less(self.0.nodes[k].1 as f32)
        }
        fn f32_split(&self, k: usize) -> Option<(usize, f32, bool)> {
            Some((self.0.nodes[k].0, self.0.nodes[k].1 as f32, k % 2 == 0))
        }
    }

    #[test]
    fn the_tables_give_the_recursions_and_the_brute_force_values() {
        let mut scratch = ShapScratch::default();
        let mut tabled = 0;
        for seed in 0..80u64 {
            let m = 2 + (seed as usize % 7);
            let depth = 1 + (seed as usize % 8);
            let t = F32Tree(random_tree(seed, depth, m));
            let mut tables = ShapTables::default();
            tables.push_tree(&t, 0);
            if !tables.has(0) {
                continue;
            }
            tabled += 1;
            // Rows with missing values, a chunk and a short one through one call.
            let rows: Vec<f64> = (0..11u64)
                .flat_map(|r| {
                    (0..m).map(move |j| match (seed + r + j as u64) % 5 {
                        0 => f64::NAN,
                        _ => ((seed * 17 + r * 5 + j as u64 * 11) % 89) as f64 / 89.0,
                    })
                })
                .collect();
            let mut got = vec![0.0; rows.len()];
            let mut sums = vec![0.0; rows.len() / m];
            let mut block = RowBlock::new(&rows, m);
            tables.add_rows(0, &mut block, &mut sums);
            block.store_phi(&mut got);
            for (r, (row, got)) in rows.chunks(m).zip(got.chunks(m)).enumerate() {
                // The leaf the direction bits find is the one a walk reaches.
                let mut k = 0;
                while let Some((l, rt)) = t.children(k) {
                    k = if t.goes_left(k, row) { l } else { rt };
                }
                assert_eq!(
                    sums[r].to_bits(),
                    t.leaf_value(k).to_bits(),
                    "seed {seed} row {r}"
                );
                let mut want = vec![0.0; m];
                add_tree_shap(&t, 0, depth, row, &mut want, &mut scratch);
                let brute = brute_force(&t, 0, row, m);
                for j in 0..m {
                    assert!(
                        (got[j] - want[j]).abs() < 1e-12 && (got[j] - brute[j]).abs() < 1e-12,
                        "seed {seed} row {r} feature {j}: {} vs {} (brute force {})",
                        got[j],
                        want[j],
                        brute[j]
                    );
                }
            }
        }
        // Most trees have tables (the deep ones with many features do not).
        assert!(tabled >= 50, "{tabled} of 80 trees tabled");
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
