//! `manifest.json`: what a model version says about itself, as one typed struct.
//!
//! The trainer fills the model's part ([`Manifest::algorithm`] to [`Manifest::warnings`]),
//! the registry adds its own (`name`, `version`, `created_at`, `crate_version`, `files`)
//! when it publishes; scoring, the service and `models show` read it back through this
//! type, never by key.
//!
//! Compatibility: every field has a default, so a manifest written by an older binary
//! (or a test's minimal one) still loads, and keys this version does not know are kept
//! in [`Manifest::extra`] and written back. On disk the keys are sorted at every level
//! ([`Manifest::to_json`]), as manifests have always been written.
//!
//! Parts whose type belongs to another module (the feature columns, the churn
//! definition, the label windows, the hyper-parameters) are kept as that module
//! serialises them: the manifest records them, `model.bin` holds the typed originals.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// The content of a version's `manifest.json`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Manifest {
    /// Registry name of the model. Written by the registry.
    pub name: String,
    /// `vN`. Written by the registry.
    pub version: String,
    /// RFC 3339 UTC. Written by the registry.
    pub created_at: String,
    /// The churnguard version that published it. Written by the registry.
    pub crate_version: String,
    /// SHA-256 hex of every file of the version, by file name. Written by the registry.
    pub files: BTreeMap<String, String>,
    /// The champion algorithm (`logistic`, `tree`, `forest`, `gbdt`).
    pub algorithm: String,
    /// The champion's hyper-parameters, as the trainer recorded them.
    pub hyper_parameters: Value,
    /// The feature schema the model was trained with.
    pub features: FeatureSchema,
    /// The horizon of the churn probability, in days.
    pub horizon_days: u32,
    /// The churn definition (as `features` serialises it).
    pub churn_definition: Value,
    /// The churn definition in words.
    pub churn_definition_text: String,
    /// The label windows of the training run (as `labels` serialises them).
    pub windows: Value,
    /// The tier thresholds on the calibrated probability.
    pub thresholds: ManifestThresholds,
    /// The calibration fitted on validation.
    pub calibration: Calibration,
    /// The champion's validation metrics.
    pub metrics: ManifestMetrics,
    /// Which data the model was trained on.
    pub training_data: TrainingData,
    /// The training snapshots with their example counts.
    pub snapshots: Vec<SnapshotSummary>,
    /// Reasons to doubt this version's evidence.
    pub warnings: Vec<String>,
    /// What the reasons' texts quote and the health by dimension compares with, learned
    /// at training; `None` in manifests written before them (texts then carry no
    /// reference part, and health by dimension its fallback).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub explain: Option<ExplainReferences>,
    /// Keys this version of churnguard does not know, kept as they were.
    #[serde(flatten)]
    pub extra: BTreeMap<String, Value>,
}

/// The references of the explanations (see [`Manifest::explain`]).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct ExplainReferences {
    /// Feature name -> the value its reason text quotes as "customers who stay": the
    /// median among training examples that did not churn (the share for a 0/1
    /// indicator); null when no such example has a value.
    pub stayed: BTreeMap<String, Option<f64>>,
    /// Dimension id (`engagement`, `support`, `billing`, `relationship`) -> 101 sorted
    /// quantiles of that dimension's contribution (calibrated log-odds) over the
    /// validation population: `health_<dimension>` is the share of it above a customer's.
    pub dimension_health_reference: BTreeMap<String, Vec<f64>>,
}

/// `features`: the schema, its hash and how it was chosen.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct FeatureSchema {
    /// Hash of the schema; a `model.bin` whose schema hashes differently is refused.
    pub schema_hash: String,
    /// The features in the model's order (name, description, table, transform,
    /// may_be_missing), as `features` serialises them.
    pub columns: Value,
    /// Event types with their own count column.
    pub event_types: Vec<String>,
    /// Categorical attributes one-hot encoded, each with the levels given a column.
    pub categorical: Vec<(String, Vec<String>)>,
    /// Numeric attributes used.
    pub numeric: Vec<String>,
    /// RFM quintile cuts (null without orders), as `features` serialises them.
    pub rfm_cuts: Value,
    /// Feature families left out because their table is absent, with the reason.
    pub left_out: Vec<String>,
    /// The preprocessing, in words.
    pub preprocessing: String,
}

/// `thresholds`: the calibrated probabilities at which a customer is high or medium.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct ManifestThresholds {
    /// At or above: `high`. `None` when the trainer could not compute it (NaN).
    pub high: Option<f64>,
    /// At or above: `medium`.
    pub medium: Option<f64>,
    /// How they were chosen, in words.
    pub policy: String,
}

/// `calibration`: the Platt scaling applied to the model's margin.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Calibration {
    /// `platt`.
    pub method: String,
    /// Slope.
    pub a: Option<f64>,
    /// Intercept.
    pub b: Option<f64>,
}

/// `metrics`: the champion on the validation snapshots. A metric that could not be
/// computed (NaN) is `None` (null in JSON).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct ManifestMetrics {
    pub validation_roc_auc: Option<f64>,
    pub validation_pr_auc: Option<f64>,
    pub validation_log_loss_calibrated: Option<f64>,
    pub validation_brier_calibrated: Option<f64>,
    /// Lift in the top 10 % by score.
    pub lift_top_10pct: Option<f64>,
}

/// `training_data`: row counts, time range and a content hash of the base trained on.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct TrainingData {
    /// The directory loaded.
    pub directory: String,
    /// Customers loaded.
    pub customers: usize,
    /// Per table: rows, orphan rows and bad rows skipped.
    pub tables: Vec<TableCount>,
    /// Optional tables that were absent.
    pub missing_tables: Vec<String>,
    /// First and last timestamp (RFC 3339), when there is any.
    pub time_range: Option<[String; 2]>,
    /// SHA-256 over ids, signups and every activity timestamp and amount.
    pub content_sha256: String,
}

/// One table of [`TrainingData`].
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct TableCount {
    pub table: String,
    pub rows: usize,
    pub orphans: usize,
    pub bad_rows: usize,
}

/// One training snapshot: its date, split and examples.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct SnapshotSummary {
    /// `YYYY-MM-DD`.
    pub as_of: String,
    /// `train` or `validation`.
    pub split: String,
    pub examples: usize,
    pub churned: usize,
    pub positive_rate: f64,
}

impl Manifest {
    /// The manifest as a JSON value: keys sorted at every level (a `serde_json` map),
    /// non-finite numbers as null. What is written to disk and shown by `models show`.
    pub fn to_json(&self) -> serde_json::Result<Value> {
        serde_json::to_value(self)
    }

    /// Pretty-printed [`Manifest::to_json`]: the bytes of `manifest.json`.
    pub fn to_pretty_bytes(&self) -> serde_json::Result<Vec<u8>> {
        serde_json::to_vec_pretty(&self.to_json()?)
    }
}

/// `Some(x)` for a finite number, `None` for NaN or an infinity (null in JSON, as a
/// non-finite number has always been written).
pub fn finite(x: f64) -> Option<f64> {
    x.is_finite().then_some(x)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_minimal_old_manifest_loads_with_defaults_and_keeps_unknown_keys() {
        let m: Manifest = serde_json::from_value(json!({
            "name": "churn", "version": "v1", "algorithm": "gbdt",
            "metrics": {"validation_roc_auc": 0.8, "validation_pr_auc": null},
            "experiment": {"owner": "ds-team"}
        }))
        .unwrap();
        assert_eq!(m.algorithm, "gbdt");
        assert_eq!(m.metrics.validation_roc_auc, Some(0.8));
        assert_eq!(m.metrics.validation_pr_auc, None);
        assert_eq!(m.horizon_days, 0);
        assert_eq!(m.extra["experiment"], json!({"owner": "ds-team"}));
        assert_eq!(m.to_json().unwrap()["experiment"]["owner"], "ds-team");
    }

    #[test]
    fn keys_are_written_sorted_at_every_level_and_nan_as_null() {
        let mut m = Manifest {
            algorithm: "tree".into(),
            ..Manifest::default()
        };
        m.metrics.validation_roc_auc = finite(f64::NAN);
        m.calibration.a = finite(1.5);
        let text = String::from_utf8(m.to_pretty_bytes().unwrap()).unwrap();
        let keys: Vec<&str> = text
            .lines()
            .filter(|l| l.starts_with("  \""))
            .map(|l| l.trim().split('"').nth(1).unwrap())
            .collect();
        let mut sorted = keys.clone();
        sorted.sort_unstable();
        assert_eq!(keys, sorted);
        assert!(text.contains("\"validation_roc_auc\": null"), "{text}");
        let back: Manifest = serde_json::from_slice(text.as_bytes()).unwrap();
        assert_eq!(back, m);
    }
}
