//! Artifact + features -> churn probability, health score, risk tier, reasons and the
//! early warnings. Synchronous and pure: the service wraps it, the batch calls it.
//!
//! - [`Tier`]: the risk tier a probability falls in (and its parsing).
//! - [`rules`]: the rule-based early warnings evaluated beside the model on the same row.
//! - [`trend`]: the 30-day trend rule (`rising`, `falling`, `steady`, `unknown`).

mod dimensions;
pub mod rules;
mod tier;
pub mod trend;

use crate::features::online::{kind, OwnedActivity};
use crate::features::{rfm_segment, FeatureSpec};
use crate::manifest::Manifest;
use crate::model::{Artifact, Classifier, Platt};
use crate::registry::LoadedVersion;
use crate::time::Ts;
use crate::{Error, Result};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

pub use dimensions::{learn_explain_references, DimensionScore, DimensionScores, Explain};
pub use rules::{
    alerting_tier, default_rules, evaluate, rules_from_json, rules_without_feature, Condition,
    Rule, RuleHit,
};
pub use tier::Tier;
pub use trend::{Trend, Trend30};

/// A tree model in the form `shap.TreeExplainer` takes for a custom model (arrays as
/// JSON lists: `np.array` each tree's lists before passing it). shap ignores the
/// keys it does not know (`model`, `version`, `algorithm`, `feature_names`).
#[derive(Debug, Clone, Serialize)]
pub struct ShapExport {
    pub model: String,
    pub version: String,
    pub algorithm: String,
    /// The feature table's value columns, in the order the trees index them.
    pub feature_names: Vec<String>,
    pub base_offset: f64,
    pub trees: Vec<crate::model::ShapTreeDict>,
}

/// One reason behind a score: a feature pushing the churn log-odds up.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Reason {
    pub feature: String,
    /// The customer's value (null when undefined, e.g. no rated ticket).
    pub value: Option<f64>,
    /// Log-odds added to the average customer's score by this feature.
    pub contribution: f64,
    /// The reason in plain language, with the value and, when the model learned one,
    /// what customers who stay have (`no login for 88 days (customers who stay: 2
    /// days)`). Empty in score files written before texts existed.
    #[serde(default)]
    pub text: String,
}

/// The answer for one customer.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Score {
    pub churn_probability: f64,
    pub health_score: f64,
    pub risk_tier: Tier,
    pub reasons: Vec<Reason>,
    /// Early-warning rules that fire on the same features (shown beside the model).
    pub early_warnings: Vec<RuleHit>,
    /// Every feature's SHAP value, when asked for ([`Scorer::score_block_with`]).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub contributions: Option<Contributions>,
    // Health by dimension (issue 14, item 5).
    /// Each dimension's contribution and health.
    pub dimensions: DimensionScores,
    /// The dimension pushing the risk up the most; `None` when none pushes it up.
    pub primary_driver: Option<crate::features::Dimension>,
}

/// Every feature's contribution (SHAP value) to one score, in calibrated log-odds:
/// `sigmoid(base + sum(values)) = churn_probability` up to float rounding.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Contributions {
    /// The expected calibrated log-odds (the average customer's).
    pub base: f64,
    /// One per feature, in the model's schema order.
    pub values: Vec<f64>,
    /// The features' values in their own units (NaN when undefined), schema order.
    pub features: Vec<f64>,
}

impl Score {
    /// The tier the alert policy sees: [`Score::risk_tier`], raised by rules marked `alert`.
    pub fn alerting_tier(&self) -> Tier {
        alerting_tier(self.risk_tier, &self.early_warnings)
    }
}

/// Every feature's contribution to one score (`"explain": "all"`), in calibrated
/// log-odds: `sigmoid(base + the contributions) = churn_probability` up to rounding.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct AllContributions {
    /// The expected calibrated log-odds (the average customer's), `shap_base` in the
    /// score file.
    pub base: f64,
    /// One per feature of the model, in its schema order (`GET /v1/models/{name}`).
    pub features: Vec<FeatureContribution>,
}

/// One feature's part in a score.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct FeatureContribution {
    pub feature: String,
    /// The customer's value, in the feature's own units (null when undefined).
    pub value: Option<f64>,
    /// Its SHAP value in calibrated log-odds (positive pushes the risk up).
    pub contribution: f64,
    /// The dimension it belongs to.
    pub dimension: crate::features::Dimension,
    /// The value in plain language, as a reason would say it.
    pub text: String,
}

/// The model that produced a score, as named in the registry.
// Named `ModelId` in the OpenAPI document, as it was before scores and alerts shared it.
#[derive(Clone, Serialize, Deserialize, Debug, PartialEq, Eq, Hash, utoipa::ToSchema)]
#[schema(as = ModelId)]
pub struct ModelRef {
    /// Registry name (`churn`); part of an alert's idempotency key.
    pub name: String,
    /// Version (`v3`); not part of an alert's key, so promoting a model mid-night does not
    /// re-alert.
    pub version: String,
}

/// Where a feature schema keeps the RFM scores, to name a row's RFM segment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RfmColumns(Option<(usize, usize)>);

impl RfmColumns {
    /// The positions of `rfm_r` and `rfm_f` in `spec` (none without RFM features).
    pub fn of(spec: &FeatureSpec) -> Self {
        RfmColumns(spec.index_of("rfm_r").zip(spec.index_of("rfm_f")))
    }

    /// The RFM segment of a row in the schema's order; `None` without RFM features.
    pub fn segment(self, row: &[f64]) -> Option<&'static str> {
        self.0.map(|(r, f)| rfm_segment(row[r] as u8, row[f] as u8))
    }
}

/// A loaded, verified model ready to score.
#[derive(Debug, Clone)]
pub struct Scorer {
    pub name: String,
    pub version: String,
    pub artifact: Artifact,
    /// The manifest as written by the trainer and the registry.
    pub manifest: Manifest,
    /// Rule-based early warnings evaluated beside the model (the defaults unless set).
    pub rules: Vec<Rule>,
    /// The references of the reasons' texts and the health by dimension.
    pub explain: Explain,
    /// Feature name -> position in the row, for request parsing.
    feature_index: rustc_hash::FxHashMap<String, usize>,
}

impl Scorer {
    /// Loads, verifies and builds the scorer of `name` at `which` (a version or an alias).
    pub fn load(
        registry: &crate::registry::Registry,
        name: &str,
        which: &crate::registry::Selector,
    ) -> Result<Self> {
        Scorer::from_loaded(registry.load(name, which)?)
    }

    /// Builds a scorer from a verified registry version; refuses a model whose feature
    /// schema does not match the schema hash its manifest recorded.
    pub fn from_loaded(v: LoadedVersion) -> Result<Self> {
        let path = v.dir.join("model.bin");
        let what = || format!("model file of {} v{}", v.name, v.version);
        let bytes = v
            .files
            .get("model.bin")
            .ok_or_else(|| Error::corrupt(&path, what(), "not listed in the manifest"))?;
        let artifact = Artifact::from_bytes(bytes).map_err(|e| Error::corrupt(&path, what(), e))?;
        let recorded = v.manifest.features.schema_hash.as_str();
        let actual = artifact.spec.schema_hash();
        if recorded != actual {
            return Err(Error::Artifact(format!(
                "{}: feature schema hash {actual} does not match the manifest's {recorded}",
                v.dir.display()
            )));
        }
        Ok(Scorer::new(
            v.name,
            format!("v{}", v.version),
            artifact,
            v.manifest,
        ))
    }

    /// A scorer over an artifact already checked, with the default early-warning rules.
    pub fn new(name: String, version: String, artifact: Artifact, manifest: Manifest) -> Self {
        let feature_index = artifact
            .spec
            .defs()
            .iter()
            .enumerate()
            .map(|(i, d)| (d.name.clone(), i))
            .collect();
        let explain = Explain::new(&artifact.spec, manifest.explain.as_ref());
        Scorer {
            name,
            version,
            artifact,
            manifest,
            rules: default_rules(),
            explain,
            feature_index,
        }
    }

    /// The registry name and version of the model, as scores and alerts carry them.
    pub fn model_ref(&self) -> ModelRef {
        ModelRef {
            name: self.name.clone(),
            version: self.version.clone(),
        }
    }

    /// Feature names in the model's order.
    pub fn feature_names(&self) -> Vec<&str> {
        self.artifact.spec.names()
    }

    /// The calibrated probability of a feature row.
    pub fn probability(&self, row: &[f64]) -> f64 {
        self.artifact
            .calibration
            .apply(self.artifact.model.margin(row))
    }

    /// Tier of a calibrated probability.
    pub fn tier(&self, p: f64) -> Tier {
        let t = &self.artifact.thresholds;
        if p >= t.high {
            Tier::High
        } else if p >= t.medium {
            Tier::Medium
        } else {
            Tier::Low
        }
    }

    /// Health 0-100: the share of the reference population with a higher churn
    /// probability (50 = a typical customer, 100 = healthier than everyone).
    pub fn health(&self, p: f64) -> f64 {
        let r = &self.artifact.health_reference;
        if r.is_empty() {
            return (100.0 * (1.0 - p)).round();
        }
        dimensions::share_above(r, p)
    }

    /// The model's trees as the dictionary `shap.TreeExplainer` accepts for a custom
    /// model, in the calibrated log-odds churnguard's contributions are given in:
    /// `sigmoid(base_offset + the trees' values) = churn_probability`, so shap's
    /// `expected_value` is the `shap_base` of a score and its values are ours.
    /// Logistic models have no trees (their SHAP values are linear).
    pub fn shap_export(&self) -> Result<ShapExport> {
        let Platt { a, b } = self.artifact.calibration;
        let (trees, offset) = self.artifact.model.shap_trees(a).ok_or_else(|| {
            Error::Config(format!(
                "{} v{} is a logistic model: it has no trees to export (its SHAP values \
                 are linear: the coefficient times the standardised value)",
                self.name, self.version
            ))
        })?;
        Ok(ShapExport {
            model: self.name.clone(),
            version: self.version.clone(),
            algorithm: self.artifact.model.algorithm().name().to_string(),
            feature_names: self
                .artifact
                .spec
                .defs()
                .iter()
                .map(|d| d.name.clone())
                .collect(),
            base_offset: a * offset + b,
            trees,
        })
    }

    /// Scores a feature row with the top `n_reasons` reasons.
    pub fn score(&self, row: &[f64], n_reasons: usize) -> Score {
        let mut c = vec![0.0; row.len()];
        let margin = self.artifact.model.margin_and_contributions(row, &mut c);
        self.finish(row, margin, &c, n_reasons)
    }

    /// [`Scorer::score`] of every row of a row-major block, the same scores as row
    /// by row, faster for the boosted trees (the batch scores blocks).
    pub fn score_block(&self, x: &[f64], n_reasons: usize) -> Vec<Score> {
        self.score_block_with(x, n_reasons, false)
    }

    /// [`Scorer::score_block`], with every feature's contribution when `all`.
    pub fn score_block_with(&self, x: &[f64], n_reasons: usize, all: bool) -> Vec<Score> {
        let w = self.artifact.spec.len();
        let mut c = vec![0.0; x.len()];
        let margins = self.artifact.model.margins_and_contributions(x, w, &mut c);
        let base = (all && w > 0).then(|| self.shap_base(&x[..w]));
        x.chunks(w.max(1))
            .zip(c.chunks(w.max(1)))
            .zip(margins)
            .map(|((row, c), m)| {
                let mut s = self.finish(row, m, c, n_reasons);
                if let Some(base) = base {
                    s.contributions = Some(self.calibrated(base, c, row));
                }
                s
            })
            .collect()
    }

    /// The expected calibrated log-odds, the base the contributions add to (the same
    /// for every row: `row` only gives the walk something to explain).
    fn shap_base(&self, row: &[f64]) -> f64 {
        let mut scratch = vec![0.0; row.len()];
        let bias = self.artifact.model.contributions(row, &mut scratch);
        let Platt { a, b } = self.artifact.calibration;
        a * bias + b
    }

    fn calibrated(&self, base: f64, c: &[f64], row: &[f64]) -> Contributions {
        let a = self.artifact.calibration.a;
        Contributions {
            base,
            values: c.iter().map(|v| v * a).collect(),
            features: row.to_vec(),
        }
    }

    fn finish(&self, row: &[f64], margin: f64, c: &[f64], n_reasons: usize) -> Score {
        let p = self.artifact.calibration.apply(margin);
        let (dimensions, primary_driver) = self.explain.dimensions(c, self.artifact.calibration.a);
        Score {
            churn_probability: p,
            health_score: self.health(p),
            risk_tier: self.tier(p),
            reasons: self.top_reasons(row, c, n_reasons),
            early_warnings: evaluate(&self.rules, &self.artifact.spec, row),
            contributions: None,
            dimensions,
            primary_driver,
        }
    }

    /// Every feature's contribution to a score of `row`, in schema order, with its value,
    /// text and dimension: what `"explain": "all"` answers.
    pub fn all_contributions(&self, row: &[f64]) -> AllContributions {
        let mut c = vec![0.0; row.len()];
        let bias = self.artifact.model.contributions(row, &mut c);
        let Platt { a, b } = self.artifact.calibration;
        let defs = self.artifact.spec.defs();
        AllContributions {
            base: a * bias + b,
            features: (0..row.len())
                .map(|j| FeatureContribution {
                    feature: defs[j].name.clone(),
                    value: row[j].is_finite().then_some(row[j]),
                    contribution: c[j] * a,
                    dimension: defs[j].dimension,
                    text: self.explain.text(&self.artifact.spec, row, j),
                })
                .collect(),
        }
    }

    /// The features that push this customer's score up the most (positive contributions,
    /// largest first), in log-odds relative to the average customer.
    pub fn reasons(&self, row: &[f64], n: usize) -> Vec<Reason> {
        let mut c = vec![0.0; row.len()];
        self.artifact.model.contributions(row, &mut c);
        self.top_reasons(row, &c, n)
    }

    /// The `n` largest positive contributions `c` of `row`, largest first (ties: schema order).
    fn top_reasons(&self, row: &[f64], c: &[f64], n: usize) -> Vec<Reason> {
        // Platt's slope scales every contribution alike; keep them in calibrated log-odds.
        let a = self.artifact.calibration.a;
        let mut idx: Vec<usize> = (0..row.len()).filter(|&j| c[j] * a > 1e-9).collect();
        let order = |x: &usize, y: &usize| (c[*y] * a).total_cmp(&(c[*x] * a)).then(x.cmp(y));
        if n < idx.len() {
            // Only the first n need sorting: select them, then order those few.
            idx.select_nth_unstable_by(n, order);
            idx.truncate(n);
        }
        idx.sort_unstable_by(order);
        let names = self.artifact.spec.defs();
        idx.into_iter()
            .take(n)
            .map(|j| Reason {
                feature: names[j].name.clone(),
                value: row[j].is_finite().then_some(row[j]),
                contribution: c[j] * a,
                text: self.explain.text(&self.artifact.spec, row, j),
            })
            .collect()
    }

    /// Parses the `features` form of a request. Policy (like MLflow's signature
    /// enforcement): unknown keys are ignored and returned so the caller can report
    /// them; a missing feature is an error naming it, unless the model allows it to be
    /// undefined (`may_be_missing`), where `null` or absence means undefined; values
    /// must be JSON numbers (booleans are accepted for 0/1 indicator features), never
    /// strings; non-finite numbers cannot be expressed in JSON and are refused.
    pub fn parse_features(&self, features: &Value) -> Result<(Vec<f64>, Vec<String>)> {
        let obj: &Map<String, Value> = features.as_object().ok_or_else(|| Error::Input {
            field: "features".into(),
            message: format!("features: expected an object, got {}", kind(features)),
        })?;
        let defs = self.artifact.spec.defs();
        let mut row = Vec::with_capacity(defs.len());
        // Names are only formatted on the error path: this loop runs on every request.
        let mut found = 0;
        for d in defs {
            let field = || format!("features.{}", d.name);
            let value = obj.get(&d.name);
            found += usize::from(value.is_some());
            let v = match value {
                None | Some(Value::Null) if d.may_be_missing => f64::NAN,
                None => {
                    return Err(Error::Input {
                        field: field(),
                        message: format!("missing required feature `{}`", d.name),
                    })
                }
                Some(Value::Null) => {
                    return Err(Error::Input {
                        field: field(),
                        message: format!("feature `{}` cannot be null", d.name),
                    })
                }
                Some(Value::Bool(b)) if d.transform == crate::features::Transform::Binary => {
                    f64::from(u8::from(*b))
                }
                Some(Value::Number(n)) => match n.as_f64() {
                    Some(x) if acceptable_feature_value(x) => x,
                    _ => {
                        return Err(Error::Input {
                            field: field(),
                            message: format!(
                                "feature `{}` must be a finite number within ±{MAX_FEATURE_MAGNITUDE:e}",
                                d.name
                            ),
                        })
                    }
                },
                Some(other) => {
                    return Err(Error::Input {
                        field: field(),
                        message: format!(
                            "feature `{}` must be a number, got {}",
                            d.name,
                            kind(other)
                        ),
                    })
                }
            };
            row.push(v);
        }
        // Every key matched a feature unless the object has more keys than matches.
        let ignored = if obj.len() == found {
            Vec::new()
        } else {
            obj.keys()
                .filter(|k| self.artifact.spec.index_of(k).is_none())
                .map(|k| format!("features.{k}"))
                .collect()
        };
        Ok((row, ignored))
    }

    /// Position of a feature in the model's row.
    pub fn feature_position(&self, name: &str) -> Option<usize> {
        self.feature_index.get(name).copied()
    }

    /// Features from a raw `activity` payload as of `t`, through the feature code, with the
    /// parsed activity (an alert raised on the score reads its rows and customer record).
    pub fn features_from_activity(&self, activity: &Value, t: Ts) -> Result<FromActivity> {
        let (a, ignored) = OwnedActivity::parse(&self.artifact.spec, activity)?;
        Ok(FromActivity {
            row: a.features(&self.artifact.spec, t),
            ignored,
            activity: a,
        })
    }
}

/// What [`Scorer::features_from_activity`] gives: the feature row, the request keys it
/// ignored and the parsed activity.
#[derive(Debug, Clone)]
pub struct FromActivity {
    pub row: Vec<f64>,
    pub ignored: Vec<String>,
    pub activity: OwnedActivity,
}

/// The largest magnitude a feature value sent to the service may have: far past any real
/// count, amount or rate, and small enough that no model's arithmetic overflows on it (a
/// value of 1e300 can make a margin infinite and a score NaN). The per-model request
/// schema of `/openapi.json` documents it as every feature's `minimum`/`maximum`.
pub const MAX_FEATURE_MAGNITUDE: f64 = 1e12;

/// Whether a feature value sent to the service is accepted: finite and within
/// ±[`MAX_FEATURE_MAGNITUDE`].
pub fn acceptable_feature_value(x: f64) -> bool {
    x.is_finite() && x.abs() <= MAX_FEATURE_MAGNITUDE
}

/// Calibrated probabilities of a row-major feature matrix in the scorer's schema; the
/// benchmark and tests compare scoring paths with it.
pub fn probabilities(scorer: &Scorer, x: &[f64]) -> Vec<f64> {
    let w = scorer.artifact.spec.len();
    scorer
        .artifact
        .model
        .margins(x, w)
        .into_iter()
        .map(|m| scorer.artifact.calibration.apply(m))
        .collect()
}
