//! The content of `model.bin`: everything needed to score, explain and watch drift.

use super::{FittedModel, Platt};
use crate::churn::ChurnDefinition;
use crate::features::FeatureSpec;
use crate::metrics::Bins;
use crate::{Error, Result};
use serde::{Deserialize, Serialize};

/// Bumped when the layout of [`Artifact`] changes incompatibly.
pub const ARTIFACT_FORMAT: u32 = 1;

/// Probability cut points of the risk tiers and the policy that chose them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Thresholds {
    /// Calibrated probability at or above which a customer is `high`.
    pub high: f64,
    /// Calibrated probability at or above which a customer is `medium`.
    pub medium: f64,
    /// How they were chosen, in words.
    pub policy: String,
}

/// A trained model with its schema, calibration, thresholds and references.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Artifact {
    pub format: u32,
    pub spec: FeatureSpec,
    pub model: FittedModel,
    pub calibration: Platt,
    pub thresholds: Thresholds,
    pub definition: ChurnDefinition,
    pub horizon_days: u32,
    /// Sorted calibrated probabilities (101 quantiles) of the validation population:
    /// the health score is the share of that population with a higher probability.
    pub health_reference: Vec<f64>,
    /// Decile bins of every feature, for drift (PSI), on the latest validation snapshot
    /// (one night's population; artifacts trained before 2026-12 hold the training rows').
    pub feature_bins: Vec<Bins>,
    /// Bins of the calibrated score on the same snapshot.
    pub score_bins: Bins,
}

impl Artifact {
    /// Serialises with postcard (exact for every f64).
    pub fn to_bytes(&self) -> Result<Vec<u8>> {
        postcard::to_allocvec(self).map_err(|e| Error::Artifact(format!("encoding model: {e}")))
    }

    /// Deserialises and restores derived state; refuses an unknown format.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self> {
        let mut a: Artifact = postcard::from_bytes(bytes)
            .map_err(|e| Error::Artifact(format!("model.bin does not decode: {e}")))?;
        if a.format != ARTIFACT_FORMAT {
            return Err(Error::Artifact(format!(
                "model.bin has format {} but this churnguard reads format {ARTIFACT_FORMAT}",
                a.format
            )));
        }
        a.spec = a.spec.rebuilt();
        a.model.restore()?;
        Ok(a)
    }
}
