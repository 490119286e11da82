//! Evaluation numbers: ROC and PR AUC, log loss, Brier score, lift and capture,
//! calibration tables, PSI. Ties in scores are handled exactly (no random order).

use serde::{Deserialize, Serialize};

/// Indexes of `scores` sorted by descending score (ties keep input order).
fn order_desc(scores: &[f64]) -> Vec<usize> {
    let mut idx: Vec<usize> = (0..scores.len()).collect();
    idx.sort_by(|&a, &b| scores[b].total_cmp(&scores[a]));
    idx
}

/// Standard error of a ROC AUC estimated on `positives` and `negatives` examples
/// (Hanley & McNeil, 1982): how far a validation AUC can be trusted when churners are few.
pub fn roc_auc_standard_error(auc: f64, positives: usize, negatives: usize) -> f64 {
    let (n1, n2) = (positives as f64, negatives as f64);
    if positives == 0 || negatives == 0 || !auc.is_finite() {
        return f64::NAN;
    }
    let q1 = auc / (2.0 - auc);
    let q2 = 2.0 * auc * auc / (1.0 + auc);
    let var = (auc * (1.0 - auc) + (n1 - 1.0) * (q1 - auc * auc) + (n2 - 1.0) * (q2 - auc * auc))
        / (n1 * n2);
    var.max(0.0).sqrt()
}

/// Area under the ROC curve (ties count one half). NaN when one class is absent.
pub fn roc_auc(scores: &[f64], labels: &[bool]) -> f64 {
    let pos = labels.iter().filter(|&&l| l).count() as f64;
    let neg = labels.len() as f64 - pos;
    if pos == 0.0 || neg == 0.0 {
        return f64::NAN;
    }
    // Rank-sum over ascending scores with average ranks for ties.
    let mut idx: Vec<usize> = (0..scores.len()).collect();
    idx.sort_by(|&a, &b| scores[a].total_cmp(&scores[b]));
    let mut rank_sum = 0.0;
    let mut i = 0;
    while i < idx.len() {
        let mut j = i;
        while j + 1 < idx.len() && scores[idx[j + 1]] == scores[idx[i]] {
            j += 1;
        }
        let avg = (i + j) as f64 / 2.0 + 1.0;
        for &k in &idx[i..=j] {
            if labels[k] {
                rank_sum += avg;
            }
        }
        i = j + 1;
    }
    (rank_sum - pos * (pos + 1.0) / 2.0) / (pos * neg)
}

/// Points of a curve, thinned to at most ~200 for plotting.
pub type Curve = Vec<(f64, f64)>;

fn thin(points: Curve) -> Curve {
    if points.len() <= 200 {
        return points;
    }
    let step = points.len() as f64 / 200.0;
    let mut out: Curve = (0..200)
        .map(|i| points[(i as f64 * step) as usize])
        .collect();
    out.push(*points.last().expect("non-empty"));
    out
}

/// Cumulative (threshold, true positives, false positives) at each distinct score, descending.
fn sweep(scores: &[f64], labels: &[bool]) -> Vec<(f64, f64, f64)> {
    let idx = order_desc(scores);
    let mut out = Vec::new();
    let (mut tp, mut fp) = (0.0, 0.0);
    for (n, &i) in idx.iter().enumerate() {
        if labels[i] {
            tp += 1.0;
        } else {
            fp += 1.0;
        }
        if n + 1 == idx.len() || scores[idx[n + 1]] != scores[i] {
            out.push((scores[i], tp, fp));
        }
    }
    out
}

/// ROC curve points (false positive rate, true positive rate).
pub fn roc_curve(scores: &[f64], labels: &[bool]) -> Curve {
    let pos = labels.iter().filter(|&&l| l).count().max(1) as f64;
    let neg = (labels.len() as f64 - pos).max(1.0);
    let mut pts = vec![(0.0, 0.0)];
    pts.extend(
        sweep(scores, labels)
            .into_iter()
            .map(|(_, tp, fp)| (fp / neg, tp / pos)),
    );
    thin(pts)
}

/// Precision-recall curve points (recall, precision).
pub fn pr_curve(scores: &[f64], labels: &[bool]) -> Curve {
    let pos = labels.iter().filter(|&&l| l).count().max(1) as f64;
    thin(
        sweep(scores, labels)
            .into_iter()
            .map(|(_, tp, fp)| (tp / pos, tp / (tp + fp)))
            .collect(),
    )
}

/// Average precision (the step-wise area under the PR curve). NaN without positives.
pub fn pr_auc(scores: &[f64], labels: &[bool]) -> f64 {
    let pos = labels.iter().filter(|&&l| l).count() as f64;
    if pos == 0.0 {
        return f64::NAN;
    }
    let mut ap = 0.0;
    let mut prev_recall = 0.0;
    for (_, tp, fp) in sweep(scores, labels) {
        let recall = tp / pos;
        ap += (recall - prev_recall) * tp / (tp + fp);
        prev_recall = recall;
    }
    ap
}

/// Mean negative log-likelihood of probabilities (clipped to 1e-15).
pub fn log_loss(probs: &[f64], labels: &[bool]) -> f64 {
    let n = probs.len().max(1) as f64;
    probs
        .iter()
        .zip(labels)
        .map(|(&p, &y)| {
            let p = p.clamp(1e-15, 1.0 - 1e-15);
            if y {
                -p.ln()
            } else {
                -(1.0 - p).ln()
            }
        })
        .sum::<f64>()
        / n
}

/// Mean squared error of probabilities.
pub fn brier(probs: &[f64], labels: &[bool]) -> f64 {
    let n = probs.len().max(1) as f64;
    probs
        .iter()
        .zip(labels)
        .map(|(&p, &y)| (p - f64::from(u8::from(y))).powi(2))
        .sum::<f64>()
        / n
}

/// Lift and capture in the top share of scores.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq)]
pub struct TopK {
    /// Share of the population, e.g. 0.05.
    pub share: f64,
    /// Churn rate in the top share / overall churn rate.
    pub lift: f64,
    /// Share of all churners found in the top share (recall).
    pub capture: f64,
    /// Churn rate in the top share (precision).
    pub precision: f64,
}

/// Lift and capture at a share of the population ranked by score.
pub fn top_k(scores: &[f64], labels: &[bool], share: f64) -> TopK {
    let idx = order_desc(scores);
    let k = ((idx.len() as f64 * share).round() as usize).clamp(1, idx.len().max(1));
    let pos = labels.iter().filter(|&&l| l).count() as f64;
    let hits = idx.iter().take(k).filter(|&&i| labels[i]).count() as f64;
    let base = pos / labels.len().max(1) as f64;
    let precision = hits / k as f64;
    TopK {
        share,
        lift: if base > 0.0 {
            precision / base
        } else {
            f64::NAN
        },
        capture: if pos > 0.0 { hits / pos } else { f64::NAN },
        precision,
    }
}

/// Cumulative gains: (share of population contacted, share of churners captured).
pub fn gains_curve(scores: &[f64], labels: &[bool]) -> Curve {
    let idx = order_desc(scores);
    let pos = labels.iter().filter(|&&l| l).count().max(1) as f64;
    let n = idx.len().max(1) as f64;
    let mut hits = 0.0;
    let mut pts = vec![(0.0, 0.0)];
    for (i, &k) in idx.iter().enumerate() {
        if labels[k] {
            hits += 1.0;
        }
        pts.push(((i + 1) as f64 / n, hits / pos));
    }
    thin(pts)
}

/// One bin of a calibration table.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq)]
pub struct CalibrationBin {
    pub mean_predicted: f64,
    pub observed_rate: f64,
    pub count: usize,
}

/// Calibration by deciles of the predicted probability (equal-count bins).
pub fn calibration_table(probs: &[f64], labels: &[bool], bins: usize) -> Vec<CalibrationBin> {
    let mut idx: Vec<usize> = (0..probs.len()).collect();
    idx.sort_by(|&a, &b| probs[a].total_cmp(&probs[b]));
    let n = idx.len();
    (0..bins)
        .filter_map(|b| {
            let (lo, hi) = (b * n / bins, (b + 1) * n / bins);
            if hi <= lo {
                return None;
            }
            let part = &idx[lo..hi];
            let m = part.len() as f64;
            Some(CalibrationBin {
                mean_predicted: part.iter().map(|&i| probs[i]).sum::<f64>() / m,
                observed_rate: part.iter().filter(|&&i| labels[i]).count() as f64 / m,
                count: part.len(),
            })
        })
        .collect()
}

/// The standard evaluation of one set of probabilities.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Evaluation {
    pub rows: usize,
    pub positives: usize,
    pub roc_auc: f64,
    pub pr_auc: f64,
    pub log_loss: f64,
    pub brier: f64,
    pub top: Vec<TopK>,
    pub calibration: Vec<CalibrationBin>,
}

/// ROC/PR AUC, log loss, Brier, lift and capture at 5/10/20%, a 10-bin calibration table.
pub fn evaluate(probs: &[f64], labels: &[bool]) -> Evaluation {
    Evaluation {
        rows: probs.len(),
        positives: labels.iter().filter(|&&l| l).count(),
        roc_auc: roc_auc(probs, labels),
        pr_auc: pr_auc(probs, labels),
        log_loss: log_loss(probs, labels),
        brier: brier(probs, labels),
        top: [0.05, 0.10, 0.20]
            .iter()
            .map(|&s| top_k(probs, labels, s))
            .collect(),
        calibration: calibration_table(probs, labels, 10),
    }
}

/// Population stability index of `actual` against reference bin shares.
/// `edges` are the inner bin edges (n-1 for n bins); a bin is `(edge[i-1], edge[i]]`.
pub fn psi(reference_shares: &[f64], edges: &[f64], actual: &[f64]) -> f64 {
    psi_of_counts(
        reference_shares,
        &bin_counts(edges, actual.iter().copied()),
        actual.len(),
    )
}

/// How many of `actual` fall in each bin of `edges` (see [`psi`]), then how many are
/// missing: counts of disjoint parts of a population add up to the whole's.
pub fn bin_counts(edges: &[f64], actual: impl IntoIterator<Item = f64>) -> Vec<u64> {
    let n = edges.len() + 1;
    let mut counts = vec![0u64; n + 1]; // the last slot holds missing values
    for x in actual {
        let b = if x.is_nan() {
            n
        } else {
            edges.partition_point(|&e| e < x)
        };
        counts[b] += 1;
    }
    counts
}

/// [`psi`] from [`bin_counts`] of `total` values.
pub fn psi_of_counts(reference_shares: &[f64], counts: &[u64], total: usize) -> f64 {
    let total = total.max(1) as f64;
    reference_shares
        .iter()
        .zip(counts)
        .map(|(&r, &c)| {
            let a = (c as f64 / total).max(1e-4);
            let r = r.max(1e-4);
            (a - r) * (a / r).ln()
        })
        .sum()
}

/// Reference bins of a feature for PSI: decile edges and the share in each bin (+ missing).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Bins {
    pub edges: Vec<f64>,
    /// One share per bin, then the share of missing values.
    pub shares: Vec<f64>,
}

impl Bins {
    /// Decile bins of `xs` (distinct edges only, so constant features get one bin).
    pub fn learn(xs: &[f64]) -> Self {
        let mut v: Vec<f64> = xs.iter().copied().filter(|x| !x.is_nan()).collect();
        v.sort_by(f64::total_cmp);
        let mut edges: Vec<f64> = if v.is_empty() {
            Vec::new()
        } else {
            (1..10).map(|i| v[(v.len() - 1) * i / 10]).collect()
        };
        edges.dedup();
        if edges.last() == v.last() {
            edges.pop();
        }
        let n = edges.len() + 1;
        let mut shares = vec![0.0; n + 1];
        for &x in xs {
            let b = if x.is_nan() {
                n
            } else {
                edges.partition_point(|&e| e < x)
            };
            shares[b] += 1.0;
        }
        let total = xs.len().max(1) as f64;
        shares.iter_mut().for_each(|s| *s /= total);
        Bins { edges, shares }
    }

    /// PSI of `actual` against these bins.
    pub fn psi(&self, actual: &[f64]) -> f64 {
        psi(&self.shares, &self.edges, actual)
    }

    /// [`bin_counts`] of `actual` in these bins.
    pub fn counts(&self, actual: impl IntoIterator<Item = f64>) -> Vec<u64> {
        bin_counts(&self.edges, actual)
    }

    /// [`Bins::psi`] from [`Bins::counts`] of `total` values.
    pub fn psi_of_counts(&self, counts: &[u64], total: usize) -> f64 {
        psi_of_counts(&self.shares, counts, total)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_auc_standard_error_matches_hanley_and_mcneil_and_shrinks_with_data() {
        // A = 0.8 on 50 + 50 cases: Q1 = 2/3, Q2 = 32/45, variance 4.95111 / 2500.
        let se = roc_auc_standard_error(0.8, 50, 50);
        assert!((se - (4.951_111_f64 / 2500.0).sqrt()).abs() < 1e-6, "{se}");
        assert!(roc_auc_standard_error(0.8, 500, 5000) < se / 3.0);
        assert!(roc_auc_standard_error(0.8, 0, 10).is_nan());
    }

    #[test]
    fn auc_matches_hand_computed_values_with_ties() {
        // Pairs (pos, neg): 0.8>0.3, 0.8>0.5, 0.5=0.5 (half), 0.5>0.3 -> (1+1+0.5+1)/4.
        let s = [0.8, 0.5, 0.5, 0.3];
        let y = [true, true, false, false];
        assert!((roc_auc(&s, &y) - 0.875).abs() < 1e-12);
        assert!(roc_auc(&s, &[true; 4]).is_nan());
    }

    #[test]
    fn average_precision_of_a_perfect_ranking_is_one() {
        let s = [0.9, 0.8, 0.1, 0.05];
        let y = [true, true, false, false];
        assert!((pr_auc(&s, &y) - 1.0).abs() < 1e-12);
        // One negative ranked first: AP = (1/2 * 1/2) + (1/2 * 2/3).
        let y2 = [false, true, true, false];
        assert!((pr_auc(&s, &y2) - (0.25 + 1.0 / 3.0)).abs() < 1e-12);
    }

    #[test]
    fn brier_and_log_loss_are_exact_on_a_small_case() {
        let p = [0.9, 0.2];
        let y = [true, false];
        assert!((brier(&p, &y) - (0.01 + 0.04) / 2.0).abs() < 1e-12);
        assert!((log_loss(&p, &y) - (-(0.9f64.ln()) - 0.8f64.ln()) / 2.0).abs() < 1e-12);
    }

    #[test]
    fn top_share_lift_and_capture() {
        let s: Vec<f64> = (0..10).map(|i| 10.0 - i as f64).collect();
        let y = [
            true, false, true, false, false, false, false, false, false, false,
        ];
        let t = top_k(&s, &y, 0.2);
        assert_eq!((t.precision, t.capture), (0.5, 0.5));
        assert!((t.lift - 2.5).abs() < 1e-12);
    }

    #[test]
    fn psi_is_zero_on_the_reference_and_large_on_a_shift() {
        let xs: Vec<f64> = (0..1000).map(|i| i as f64).collect();
        let bins = Bins::learn(&xs);
        assert!(bins.psi(&xs) < 1e-6);
        let shifted: Vec<f64> = xs.iter().map(|x| x + 500.0).collect();
        assert!(bins.psi(&shifted) > 0.25);
    }
}
