//! Preprocessing learned on the training split: signed log1p for heavy tails,
//! median imputation, standardisation.

use crate::features::{FeatureDef, Transform};
use serde::{Deserialize, Serialize};

/// Per-feature preprocessing, learned on the training rows and stored with the model.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Preprocessor {
    pub log1p: Vec<bool>,
    /// Imputation value (after log1p) for undefined values.
    pub medians: Vec<f64>,
    pub means: Vec<f64>,
    /// Standard deviations; 1 for constant features so they standardise to 0.
    pub stds: Vec<f64>,
}

/// `sign(x) * ln(1 + |x|)`: log1p that keeps refunds negative.
pub fn signed_log1p(x: f64) -> f64 {
    x.signum() * x.abs().ln_1p()
}

impl Preprocessor {
    /// Learns from a row-major training matrix.
    pub fn learn(x: &[f64], defs: &[FeatureDef]) -> Self {
        let w = defs.len();
        let n = x.len().checked_div(w).unwrap_or(0);
        let log1p: Vec<bool> = defs
            .iter()
            .map(|d| d.transform == Transform::Log1p)
            .collect();
        let mut medians = vec![0.0; w];
        let mut means = vec![0.0; w];
        let mut stds = vec![1.0; w];
        // A sample is plenty for medians; means and stds use every row.
        let step = (n / 100_000).max(1);
        for j in 0..w {
            let tf = |v: f64| if log1p[j] { signed_log1p(v) } else { v };
            let mut col: Vec<f64> = (0..n)
                .step_by(step)
                .map(|i| x[i * w + j])
                .filter(|v| v.is_finite())
                .map(tf)
                .collect();
            col.sort_by(f64::total_cmp);
            medians[j] = if col.is_empty() {
                0.0
            } else {
                col[col.len() / 2]
            };
            let (mut s, mut s2) = (0.0, 0.0);
            for i in 0..n {
                let v = x[i * w + j];
                let v = if v.is_finite() { tf(v) } else { medians[j] };
                s += v;
                s2 += v * v;
            }
            let m = s / n.max(1) as f64;
            let sd = (s2 / n.max(1) as f64 - m * m).max(0.0).sqrt();
            means[j] = m;
            stds[j] = if sd > 1e-12 { sd } else { 1.0 };
        }
        Preprocessor {
            log1p,
            medians,
            means,
            stds,
        }
    }

    /// Transformed and imputed value of feature `j` (no standardisation): what trees see.
    pub fn impute(&self, j: usize, v: f64) -> f64 {
        if v.is_finite() {
            v
        } else if self.log1p[j] {
            // Stored medians live in log space; trees split on raw values.
            self.medians[j].signum() * self.medians[j].abs().exp_m1()
        } else {
            self.medians[j]
        }
    }

    /// Standardised value of feature `j`: what the linear model sees.
    pub fn standardize(&self, j: usize, v: f64) -> f64 {
        let t = if !v.is_finite() {
            self.medians[j]
        } else if self.log1p[j] {
            signed_log1p(v)
        } else {
            v
        };
        (t - self.means[j]) / self.stds[j]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn def(t: Transform) -> FeatureDef {
        FeatureDef {
            name: "x".into(),
            description: String::new(),
            table: "t".into(),
            transform: t,
            may_be_missing: true,
            by_construction: false,
            dimension: Default::default(),
            text: Default::default(),
        }
    }

    #[test]
    fn missing_values_become_the_training_median_and_standardise_around_zero() {
        let x = [1.0, 2.0, 3.0, f64::NAN, 100.0];
        let p = Preprocessor::learn(&x, &[def(Transform::Identity)]);
        assert_eq!(p.medians[0], 3.0);
        assert_eq!(p.impute(0, f64::NAN), 3.0);
        let zs: Vec<f64> = x.iter().map(|&v| p.standardize(0, v)).collect();
        assert!(zs.iter().sum::<f64>().abs() < 1e-9);
    }

    #[test]
    fn signed_log1p_keeps_the_sign() {
        assert_eq!(signed_log1p(0.0), 0.0);
        assert!((signed_log1p(-(std::f64::consts::E - 1.0)) + 1.0).abs() < 1e-12);
    }
}
