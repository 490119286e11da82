//! Artifact + features -> churn probability, health score, risk tier and reasons.
//! Synchronous and pure: the service wraps it, the batch calls it.

use crate::alerts::Tier;
use crate::features::online::{kind, OwnedActivity};
use crate::model::{Artifact, Classifier};
use crate::registry::LoadedVersion;
use crate::time::Ts;
use crate::{Error, Result};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// One reason behind a score: a feature pushing the churn log-odds up.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Reason {
    pub feature: String,
    /// The customer's value (null when undefined, e.g. no rated ticket).
    pub value: Option<f64>,
    /// Log-odds added to the average customer's score by this feature.
    pub contribution: f64,
}

/// The answer for one customer.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Score {
    pub churn_probability: f64,
    pub health_score: f64,
    pub risk_tier: Tier,
    pub reasons: Vec<Reason>,
    /// Early-warning rules that fire on the same features (shown beside the model).
    pub early_warnings: Vec<crate::retention::RuleHit>,
}

/// A loaded, verified model ready to score.
#[derive(Debug, Clone)]
pub struct Scorer {
    pub name: String,
    pub version: String,
    pub artifact: Artifact,
    /// The manifest as written by the trainer and the registry.
    pub manifest: Value,
    /// Rule-based early warnings evaluated beside the model (the defaults unless set).
    pub rules: Vec<crate::retention::Rule>,
}

impl Scorer {
    /// Builds a scorer from a verified registry version; refuses a model whose feature
    /// schema does not match the schema hash its manifest recorded.
    pub fn from_loaded(v: LoadedVersion) -> Result<Self> {
        let bytes = v
            .files
            .get("model.bin")
            .ok_or_else(|| Error::Artifact(format!("{}: model.bin is missing", v.dir.display())))?;
        let artifact = Artifact::from_bytes(bytes)
            .map_err(|e| Error::Artifact(format!("{}/model.bin: {e}", v.dir.display())))?;
        let recorded = v
            .manifest
            .pointer("/features/schema_hash")
            .and_then(Value::as_str)
            .unwrap_or_default();
        let actual = artifact.spec.schema_hash();
        if recorded != actual {
            return Err(Error::Artifact(format!(
                "{}: feature schema hash {actual} does not match the manifest's {recorded}",
                v.dir.display()
            )));
        }
        Ok(Scorer {
            name: v.name,
            version: format!("v{}", v.version),
            artifact,
            manifest: v.manifest,
            rules: crate::retention::default_rules(),
        })
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
        let below = r.partition_point(|&x| x < p) as f64;
        let equal = r[r.partition_point(|&x| x < p)..]
            .iter()
            .take_while(|&&x| x == p)
            .count() as f64;
        (100.0 * (1.0 - (below + equal / 2.0) / r.len() as f64)).round()
    }

    /// Scores a feature row with the top `n_reasons` reasons.
    pub fn score(&self, row: &[f64], n_reasons: usize) -> Score {
        let p = self.probability(row);
        Score {
            churn_probability: p,
            health_score: self.health(p),
            risk_tier: self.tier(p),
            reasons: self.reasons(row, n_reasons),
            early_warnings: crate::retention::evaluate(&self.rules, &self.artifact.spec, row),
        }
    }

    /// The features that push this customer's score up the most (positive contributions,
    /// largest first), in log-odds relative to the average customer.
    pub fn reasons(&self, row: &[f64], n: usize) -> Vec<Reason> {
        let mut c = vec![0.0; row.len()];
        self.artifact.model.contributions(row, &mut c);
        // Platt's slope scales every contribution alike; keep them in calibrated log-odds.
        let a = self.artifact.calibration.a;
        let mut idx: Vec<usize> = (0..row.len()).filter(|&j| c[j] * a > 1e-9).collect();
        idx.sort_by(|&x, &y| (c[y] * a).total_cmp(&(c[x] * a)));
        let names = self.artifact.spec.defs();
        idx.into_iter()
            .take(n)
            .map(|j| Reason {
                feature: names[j].name.clone(),
                value: row[j].is_finite().then_some(row[j]),
                contribution: c[j] * a,
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
        for d in defs {
            let field = format!("features.{}", d.name);
            let v = match obj.get(&d.name) {
                None | Some(Value::Null) if d.may_be_missing => f64::NAN,
                None => {
                    return Err(Error::Input {
                        field,
                        message: format!("missing required feature `{}`", d.name),
                    })
                }
                Some(Value::Null) => {
                    return Err(Error::Input {
                        field,
                        message: format!("feature `{}` cannot be null", d.name),
                    })
                }
                Some(Value::Bool(b)) if d.transform == crate::features::Transform::Binary => {
                    f64::from(u8::from(*b))
                }
                Some(Value::Number(n)) => match n.as_f64() {
                    Some(x) if x.is_finite() => x,
                    _ => {
                        return Err(Error::Input {
                            field,
                            message: format!("feature `{}` is not a finite number", d.name),
                        })
                    }
                },
                Some(other) => {
                    return Err(Error::Input {
                        field,
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
        let ignored = obj
            .keys()
            .filter(|k| self.artifact.spec.index_of(k).is_none())
            .map(|k| format!("features.{k}"))
            .collect();
        Ok((row, ignored))
    }

    /// Features from a raw `activity` payload as of `t`, through the feature code.
    pub fn features_from_activity(
        &self,
        activity: &Value,
        t: Ts,
    ) -> Result<(Vec<f64>, Vec<String>)> {
        let (a, ignored) = OwnedActivity::parse(&self.artifact.spec, activity)?;
        Ok((a.features(&self.artifact.spec, t), ignored))
    }
}
