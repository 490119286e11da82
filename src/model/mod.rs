//! Fitted models behind one small trait, their preprocessing and per-customer explanations.
//!
//! Every model scores in log-odds ("margin") space and explains a score as per-feature
//! SHAP values that, with a bias (the expected margin), add up to the margin: exact
//! linear SHAP for the logistic model (coefficient x standardised value; the training
//! rows standardise to mean 0, so the bias is the intercept), exact path-dependent
//! TreeSHAP for the tree, the forest and gbdt (`treeshap`). The sum equals the margin
//! up to float rounding: about 1e-12 relative to the sum of |contributions|.

mod artifact;
mod boost;
mod logistic;
mod preprocess;
mod shap_export;
mod tree;
mod treeshap;

pub use artifact::{Artifact, Thresholds, ARTIFACT_FORMAT};
pub use boost::{BoostModel, BoostParams};
pub use logistic::{LogisticModel, LogisticParams};
pub use preprocess::Preprocessor;
pub use shap_export::ShapTreeDict;
pub use tree::{TreeModel, TreeParams};

use serde::{Deserialize, Serialize};

/// The algorithms churnguard trains.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, PartialOrd, Ord)]
#[serde(rename_all = "lowercase")]
pub enum Algorithm {
    Logistic,
    Tree,
    Forest,
    Gbdt,
}

impl Algorithm {
    /// Every algorithm, simplest first.
    pub const ALL: [Algorithm; 4] = [
        Algorithm::Logistic,
        Algorithm::Tree,
        Algorithm::Forest,
        Algorithm::Gbdt,
    ];

    /// The name used on the command line and in artifacts.
    pub fn name(self) -> &'static str {
        match self {
            Algorithm::Logistic => "logistic",
            Algorithm::Tree => "tree",
            Algorithm::Forest => "forest",
            Algorithm::Gbdt => "gbdt",
        }
    }
}

impl std::str::FromStr for Algorithm {
    type Err = crate::Error;
    fn from_str(s: &str) -> crate::Result<Self> {
        Algorithm::ALL
            .into_iter()
            .find(|a| a.name() == s.trim())
            .ok_or_else(|| {
                crate::Error::Config(format!(
                    "unknown algorithm `{s}` (choose from logistic, tree, forest, gbdt)"
                ))
            })
    }
}

/// What every fitted model can do. Rows are raw feature vectors in schema order
/// (NaN where a feature is undefined); the model applies its own preprocessing.
pub trait Classifier {
    /// Log-odds of churn.
    fn margin(&self, row: &[f64]) -> f64;
    /// Per-feature SHAP values of the margin, written into `out`; returns the bias
    /// (the expected margin), so that `bias + sum(out) == margin(row)` up to rounding.
    fn contributions(&self, row: &[f64], out: &mut [f64]) -> f64;
    /// Global importance per feature (non-negative, summing to 1 when any is positive).
    fn importance(&self) -> Vec<f64>;
    /// [`Classifier::contributions`] into `out` and the margin, bit for bit what the two
    /// calls give; a model overrides it when one pass yields both.
    fn margin_and_contributions(&self, row: &[f64], out: &mut [f64]) -> f64 {
        self.contributions(row, out);
        self.margin(row)
    }
    /// [`Classifier::margin_and_contributions`] of every row of a row-major block
    /// (`out` as long as `x`), the same bits as row by row; a model overrides it when
    /// explaining many rows at once is cheaper (the boosted trees: tree by tree, so each
    /// tree's TreeSHAP tables are read from cache once per block, not once per row).
    fn margins_and_contributions(&self, x: &[f64], width: usize, out: &mut [f64]) -> Vec<f64> {
        if width == 0 {
            return Vec::new();
        }
        x.chunks(width)
            .zip(out.chunks_mut(width))
            .map(|(row, c)| self.margin_and_contributions(row, c))
            .collect()
    }
}

/// A fitted model of any algorithm; what the artifact stores.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum FittedModel {
    Logistic(LogisticModel),
    Tree(TreeModel),
    Forest(BoostModel),
    Gbdt(BoostModel),
}

impl FittedModel {
    /// Which algorithm this is.
    pub fn algorithm(&self) -> Algorithm {
        match self {
            FittedModel::Logistic(_) => Algorithm::Logistic,
            FittedModel::Tree(_) => Algorithm::Tree,
            FittedModel::Forest(_) => Algorithm::Forest,
            FittedModel::Gbdt(_) => Algorithm::Gbdt,
        }
    }

    fn inner(&self) -> &dyn Classifier {
        match self {
            FittedModel::Logistic(m) => m,
            FittedModel::Tree(m) => m,
            FittedModel::Forest(m) | FittedModel::Gbdt(m) => m,
        }
    }

    /// The trees in shap's custom-model form, every value times `scale`, and the
    /// margin's offset from the trees' sum (unscaled); `None` for logistic, whose
    /// SHAP values are linear.
    pub fn shap_trees(&self, scale: f64) -> Option<(Vec<ShapTreeDict>, f64)> {
        match self {
            FittedModel::Logistic(_) => None,
            FittedModel::Tree(m) => Some((vec![m.shap_tree(scale)], 0.0)),
            FittedModel::Forest(m) | FittedModel::Gbdt(m) => Some(m.shap_trees(scale)),
        }
    }

    /// Restores state that is not serialised (the decoded boosted model).
    pub fn restore(&mut self) -> crate::Result<()> {
        match self {
            FittedModel::Forest(m) | FittedModel::Gbdt(m) => m.restore(),
            _ => Ok(()),
        }
    }

    /// Margins of a row-major matrix, in parallel.
    pub fn margins(&self, x: &[f64], width: usize) -> Vec<f64> {
        use rayon::prelude::*;
        if width == 0 {
            return Vec::new();
        }
        x.par_chunks(width)
            .with_min_len(1024)
            .map(|r| self.margin(r))
            .collect()
    }
}

impl Classifier for FittedModel {
    fn margin(&self, row: &[f64]) -> f64 {
        self.inner().margin(row)
    }
    fn contributions(&self, row: &[f64], out: &mut [f64]) -> f64 {
        self.inner().contributions(row, out)
    }
    fn margin_and_contributions(&self, row: &[f64], out: &mut [f64]) -> f64 {
        self.inner().margin_and_contributions(row, out)
    }
    fn margins_and_contributions(&self, x: &[f64], width: usize, out: &mut [f64]) -> Vec<f64> {
        self.inner().margins_and_contributions(x, width, out)
    }
    fn importance(&self) -> Vec<f64> {
        self.inner().importance()
    }
}

/// The logistic function.
pub fn sigmoid(x: f64) -> f64 {
    if x >= 0.0 {
        1.0 / (1.0 + (-x).exp())
    } else {
        let e = x.exp();
        e / (1.0 + e)
    }
}

/// Platt scaling: `p = sigmoid(a * margin + b)`, fit on predictions of a split the
/// model was not trained on.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Platt {
    pub a: f64,
    pub b: f64,
}

impl Default for Platt {
    fn default() -> Self {
        Platt { a: 1.0, b: 0.0 }
    }
}

impl Platt {
    /// Fits by Newton's method on the log loss, with Platt's label smoothing
    /// (targets `(n+ + 1)/(n+ + 2)` and `1/(n- + 2)`) so that a tiny churn count
    /// cannot push the mapping to 0 or 1.
    pub fn fit(margins: &[f64], labels: &[bool]) -> Self {
        let pos = labels.iter().filter(|&&l| l).count() as f64;
        let neg = labels.len() as f64 - pos;
        if pos == 0.0 || neg == 0.0 {
            return Platt::default();
        }
        let (t_pos, t_neg) = ((pos + 1.0) / (pos + 2.0), 1.0 / (neg + 2.0));
        let target = |y: bool| if y { t_pos } else { t_neg };
        // Cross-entropy against the smoothed targets, computed stably in log space.
        let loss = |a: f64, b: f64| -> f64 {
            margins
                .iter()
                .zip(labels)
                .map(|(&m, &y)| {
                    let z = a * m + b;
                    let t = target(y);
                    // -t ln s(z) - (1-t) ln(1 - s(z)) = ln(1 + e^z) - t z
                    let softplus = if z > 0.0 {
                        z + (-z).exp().ln_1p()
                    } else {
                        z.exp().ln_1p()
                    };
                    softplus - t * z
                })
                .sum()
        };
        let (mut a, mut b) = (1.0, 0.0);
        let mut current = loss(a, b);
        for _ in 0..100 {
            let (mut g_a, mut g_b, mut h_aa, mut h_ab, mut h_bb) = (0.0, 0.0, 0.0, 0.0, 0.0);
            for (&m, &y) in margins.iter().zip(labels) {
                let p = sigmoid(a * m + b);
                let d = p - target(y);
                let w = (p * (1.0 - p)).max(1e-12);
                g_a += d * m;
                g_b += d;
                h_aa += w * m * m;
                h_ab += w * m;
                h_bb += w;
            }
            h_aa += 1e-9;
            h_bb += 1e-9;
            let det = h_aa * h_bb - h_ab * h_ab;
            if det.abs() < 1e-18 {
                break;
            }
            let da = (h_bb * g_a - h_ab * g_b) / det;
            let db = (h_aa * g_b - h_ab * g_a) / det;
            // Newton step, halved until the loss decreases (plain Newton can overshoot).
            let mut step = 1.0;
            let mut improved = false;
            while step > 1e-6 {
                let (na, nb) = (a - step * da, b - step * db);
                let l = loss(na, nb);
                if l <= current {
                    a = na;
                    b = nb;
                    improved = current - l > 1e-12 * current.abs().max(1.0);
                    current = l;
                    break;
                }
                step /= 2.0;
            }
            if !improved {
                break;
            }
        }
        Platt { a, b }
    }

    /// The calibrated probability of a margin.
    pub fn apply(&self, margin: f64) -> f64 {
        sigmoid(self.a * margin + self.b)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn platt_recovers_a_known_mapping() {
        // Margins whose true probability is sigmoid(0.5 * m - 1): the fit finds a≈0.5, b≈-1.
        let mut margins = Vec::new();
        let mut labels = Vec::new();
        for i in 0..4000 {
            let m = (i as f64 / 4000.0) * 8.0 - 4.0;
            let p = sigmoid(0.5 * m - 1.0);
            // Deterministic "sampling": label the first p share of each block of 100.
            for j in 0..10 {
                margins.push(m);
                labels.push((j as f64 + 0.5) / 10.0 < p);
            }
        }
        let platt = Platt::fit(&margins, &labels);
        assert!((platt.a - 0.5).abs() < 0.08, "{platt:?}");
        assert!((platt.b + 1.0).abs() < 0.1, "{platt:?}");
    }
}
