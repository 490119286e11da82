//! L2-regularised logistic regression (linfa-logistic) on standardised features.
//!
//! linfa-logistic has no class or sample weights. We fit the unweighted likelihood,
//! which ranks as well as a weighted one, and rely on Platt calibration fit on the
//! validation split to put the probabilities on the right scale for the imbalance.

use super::{Classifier, Preprocessor};
use crate::{Error, Result};
use linfa::prelude::*;
use linfa_logistic::LogisticRegression;
use ndarray::{Array1, Array2, ShapeBuilder};
use serde::{Deserialize, Serialize};

/// Hyper-parameters, checked before fitting.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct LogisticParams {
    /// L2 penalty strength.
    pub alpha: f64,
    pub max_iterations: u64,
    /// Stop when the mean (per-row) gradient norm falls below this.
    pub gradient_tolerance: f64,
    /// At most this many training rows are fitted (an even, deterministic sample).
    /// With a few dozen coefficients, a few hundred thousand rows pin them down far
    /// below what moves a validation metric, and linfa's solver is linear in rows.
    pub max_rows: usize,
}

impl Default for LogisticParams {
    fn default() -> Self {
        LogisticParams {
            alpha: 1.0,
            max_iterations: 50,
            gradient_tolerance: 1e-4,
            max_rows: 300_000,
        }
    }
}

/// A fitted logistic model: `margin = intercept + sum(coef * standardised x)`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LogisticModel {
    pub pre: Preprocessor,
    pub coef: Vec<f64>,
    pub intercept: f64,
}

impl LogisticModel {
    /// Fits on a row-major matrix `x` (`width` columns) with labels `y`.
    pub fn fit(
        x: &[f64],
        width: usize,
        y: &[bool],
        pre: Preprocessor,
        params: &LogisticParams,
    ) -> Result<Self> {
        if !(params.alpha >= 0.0 && params.alpha.is_finite()) {
            return Err(Error::Config(
                "logistic alpha must be a finite number >= 0".into(),
            ));
        }
        let step = y.len().div_ceil(params.max_rows.max(1)).max(1);
        let rows: Vec<usize> = (0..y.len()).step_by(step).collect();
        let n = rows.len();
        // Column-major: linfa's gradient is a transposed matrix-vector product, which
        // ndarray without BLAS walks column by column (3x faster than row-major here).
        let mut z = Vec::with_capacity(n * width);
        for j in 0..width {
            z.extend(rows.iter().map(|&i| pre.standardize(j, x[i * width + j])));
        }
        let xs = Array2::from_shape_vec((n, width).f(), z)
            .map_err(|e| Error::Train(format!("logistic: {e}")))?;
        let ys: Array1<usize> = rows.iter().map(|&i| usize::from(y[i])).collect();
        let ds = Dataset::new(xs, ys);
        let fitted = LogisticRegression::default()
            .alpha(params.alpha)
            .max_iterations(params.max_iterations)
            // linfa's loss is a sum over rows: a fixed tolerance would demand ever more
            // precision as data grows, so the tolerance is per row.
            .gradient_tolerance(params.gradient_tolerance * n.max(1) as f64)
            .fit(&ds)
            .map_err(|e| Error::Train(format!("logistic regression: {e}")))?;
        // linfa calls the majority class "positive"; we want the log-odds of churn (1).
        let sign = if fitted.labels().pos.class == 1 {
            1.0
        } else {
            -1.0
        };
        Ok(LogisticModel {
            coef: fitted.params().iter().map(|c| sign * c).collect(),
            intercept: sign * fitted.intercept(),
            pre,
        })
    }
}

impl Classifier for LogisticModel {
    fn margin(&self, row: &[f64]) -> f64 {
        self.intercept
            + row
                .iter()
                .enumerate()
                .map(|(j, &v)| self.coef[j] * self.pre.standardize(j, v))
                .sum::<f64>()
    }

    /// Exact linear SHAP in the margin space with the training population as the
    /// background: `coef_j * (z_j - E[z_j])` on the standardised inputs `z`, where
    /// `E[z_j] = 0` because the standardisation subtracts the training mean of the
    /// (log1p-transformed, median-imputed) feature, so the contribution is
    /// `coef_j * z_j` and the base value is the intercept. For a linear model the
    /// interventional and conditional-on-path definitions coincide.
    fn contributions(&self, row: &[f64], out: &mut [f64]) -> f64 {
        for (j, &v) in row.iter().enumerate() {
            out[j] = self.coef[j] * self.pre.standardize(j, v);
        }
        self.intercept
    }

    fn margin_and_contributions(&self, row: &[f64], out: &mut [f64]) -> f64 {
        self.contributions(row, out);
        // The same products summed in the same order as `margin`: the same bits.
        self.intercept + out.iter().copied().sum::<f64>()
    }

    fn importance(&self) -> Vec<f64> {
        // |coef| on standardised inputs: the effect of one standard deviation.
        normalise(self.coef.iter().map(|c| c.abs()).collect())
    }
}

/// Scales non-negative values to sum to 1 (all zeros stay zeros).
pub(crate) fn normalise(mut v: Vec<f64>) -> Vec<f64> {
    let s: f64 = v.iter().sum();
    if s > 0.0 {
        v.iter_mut().for_each(|x| *x /= s);
    }
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn contributions_are_the_exact_linear_shapley_values() {
        // Training matrix: 3 features, one log1p, some undefined values.
        let mut x = Vec::new();
        for i in 0..200 {
            let i = i as f64;
            x.extend([
                i % 17.0,
                if i as usize % 9 == 0 {
                    f64::NAN
                } else {
                    i * 3.0
                },
                (i * 0.37).sin(),
            ]);
        }
        let defs = crate::model::testutil::defs(3, &[1]);
        let pre = Preprocessor::learn(&x, &defs);
        let m = LogisticModel {
            pre,
            coef: vec![0.7, -1.3, 0.25],
            intercept: -0.4,
        };
        // Background: the training rows' mean of every standardised feature.
        let mean: Vec<f64> = (0..3)
            .map(|j| x.chunks(3).map(|r| m.pre.standardize(j, r[j])).sum::<f64>() / 200.0)
            .collect();
        let value = |z: &[f64], s: u32| -> f64 {
            m.intercept
                + (0..3)
                    .map(|j| m.coef[j] * if s >> j & 1 == 1 { z[j] } else { mean[j] })
                    .sum::<f64>()
        };
        let fact = |n: u32| (1..=n).product::<u32>() as f64;
        let mut c = [0.0; 3];
        for row in x.chunks(3).take(20) {
            let z: Vec<f64> = (0..3).map(|j| m.pre.standardize(j, row[j])).collect();
            let bias = m.contributions(row, &mut c);
            assert!((bias - value(&z, 0)).abs() < 1e-12);
            for (i, ci) in c.iter().enumerate() {
                let phi: f64 = (0..8u32)
                    .filter(|s| s >> i & 1 == 0)
                    .map(|s| {
                        let k = s.count_ones();
                        fact(k) * fact(2 - k) / fact(3) * (value(&z, s | 1 << i) - value(&z, s))
                    })
                    .sum();
                assert!((ci - phi).abs() < 1e-12, "{i}: {ci} vs {phi}");
            }
            let margin = m.margin_and_contributions(row, &mut c);
            assert_eq!(margin.to_bits(), m.margin(row).to_bits());
            assert_eq!(margin, bias + c.iter().sum::<f64>());
        }
    }
}
