//! `churnguard demo`: the whole job on the embedded sample. Generate the sample if it is
//! missing, train only when there is no model or no `production` alias yet, score the
//! night, write a ready-to-paste request for the riskiest customer, then serve.
//!
//! The binary prints between the steps; the decisions are here. A corrupt registry is an
//! error, never a reason to train over it ([`Demo::needs_training`]).

use std::path::PathBuf;

use crate::registry::{Registry, Selector, PRODUCTION};
use crate::scoring::Scorer;
use crate::serve::ServeConfig;
use crate::settings::{
    AlertStageFlags, DataFlags, DataSource, DemoFlags, ModelFlags, ModelRef, ScoreFlags,
    ScoreSettings, ServeFlags, Settings, TrainFlags, TrainSettings, WindowFlags,
};
use crate::time::{self, Ts};
use crate::{data::CustomerBase, Error, Result};

/// Where the demo keeps its sample, scores and example request.
#[derive(Debug, Clone)]
pub struct Demo {
    /// The sample customer base.
    pub data: PathBuf,
    /// The registry and model name (from the usual layers).
    pub model: ModelRef,
    /// The nightly score file the service answers from.
    pub scores: PathBuf,
    /// The alerts of the night, as JSON lines.
    pub alerts: PathBuf,
    /// The example request written for the riskiest customer.
    pub request: PathBuf,
    flags: ModelFlags,
    bind: Option<String>,
}

/// The request [`Demo::write_example`] wrote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Example {
    /// The riskiest active customer of the night.
    pub customer_id: String,
    /// The file holding `{"customer_id": ..., "features": {...}}`.
    pub request: PathBuf,
}

impl Demo {
    /// The demo's paths and model.
    pub fn new(settings: &Settings, flags: &DemoFlags) -> Demo {
        let (model, bind) = (&flags.models, flags.bind.clone());
        let scores_dir = PathBuf::from("data/scores");
        Demo {
            data: PathBuf::from(crate::settings::DEFAULT_DATA_DIR),
            model: settings.model(model),
            scores: scores_dir.join("latest.parquet"),
            alerts: scores_dir.join("alerts.jsonl"),
            request: scores_dir.join("example_request.json"),
            flags: model.clone(),
            bind,
        }
    }

    /// The sample has not been generated yet.
    pub fn sample_missing(&self) -> bool {
        !self.data.join("customers.parquet").exists()
    }

    /// The sample as a data source.
    pub fn source(&self) -> DataSource {
        DataSource {
            dir: self.data.clone(),
            skip_bad_rows: false,
        }
    }

    /// Whether to train first: only when the model or its `production` alias does not
    /// exist. A corrupt or unreadable registry is returned as the error it is.
    pub fn needs_training(&self) -> Result<bool> {
        needs_training(&Registry::new(&self.model.models), &self.model.name)
    }

    fn data_flags(&self) -> DataFlags {
        DataFlags {
            data: Some(self.data.clone()),
            skip_bad_rows: false,
        }
    }

    /// Training on the sample, with its attribute columns.
    pub fn train_settings(&self, settings: &Settings) -> Result<TrainSettings> {
        let windows = WindowFlags {
            categorical: Some(vec!["plan".into(), "channel".into(), "country".into()]),
            numeric: Some(vec!["monthly_fee".into()]),
            ..WindowFlags::default()
        };
        settings.train(&TrainFlags {
            data: self.data_flags(),
            models: self.flags.clone(),
            windows,
            ..TrainFlags::default()
        })
    }

    /// The night's scoring of the sample, as of `as_of`.
    pub fn score_settings(&self, settings: &Settings, as_of: Ts) -> Result<ScoreSettings> {
        settings.score(&ScoreFlags {
            data: self.data_flags(),
            models: self.flags.clone(),
            as_of: time::fmt_date(as_of),
            out: self.scores.clone(),
            alerting: AlertStageFlags {
                alerts: Some(self.alerts.clone()),
                ..AlertStageFlags::default()
            },
            ..ScoreFlags::default()
        })
    }

    /// The service over the night's scores, accepting `key`.
    pub fn serve_config(&self, settings: &Settings, key: String) -> Result<ServeConfig> {
        let flags = ServeFlags {
            models: self.flags.clone(),
            bind: self.bind.clone(),
            scores: Some(self.scores.clone()),
            ..ServeFlags::default()
        };
        let mut cfg = settings.serve(&flags)?;
        // Handed over directly: setting the environment with threads running is unsound.
        cfg.api_keys.push(key);
        Ok(cfg)
    }

    /// Scores the customers active at `as_of` with the production model and writes the
    /// request of the riskiest one to [`Demo::request`].
    pub fn write_example(&self, base: &CustomerBase, as_of: Ts) -> Result<Example> {
        let reg = Registry::new(&self.model.models);
        let scorer = Scorer::load(&reg, &self.model.name, &Selector::Alias(PRODUCTION.into()))?;
        let (customer_id, body) = riskiest_request(base, &scorer, as_of)?;
        let bytes = serde_json::to_vec_pretty(&body)
            .map_err(|e| Error::Config(format!("example request: {e}")))?;
        crate::fsutil::write_atomic(&self.request, &bytes)?;
        Ok(Example {
            customer_id,
            request: self.request.clone(),
        })
    }
}

/// A fresh API key for one demo run.
pub fn new_key() -> String {
    format!("cg_{}", uuid::Uuid::new_v4().simple())
}

/// The night the demo scores: midnight (UTC) at the end of the sample's data.
pub fn as_of(base: &CustomerBase) -> Result<Ts> {
    let end = base
        .data_end()
        .ok_or_else(|| Error::Data("the sample has no timestamps".into()))?;
    Ok(end.div_euclid(time::DAY) * time::DAY)
}

/// Training is due only when the model or its `production` alias does not exist.
pub fn needs_training(reg: &Registry, name: &str) -> Result<bool> {
    match reg.resolve(name, &Selector::Alias(PRODUCTION.into())) {
        Ok(_) => Ok(false),
        Err(e) if e.is_missing_model() => Ok(true),
        Err(e) => Err(e),
    }
}

/// The riskiest customer active at `as_of` and a `/v1/score` body with their features
/// (undefined values as null).
pub fn riskiest_request(
    base: &CustomerBase,
    scorer: &Scorer,
    as_of: Ts,
) -> Result<(String, serde_json::Value)> {
    let art = &scorer.artifact;
    let (pop, x) = crate::features::snapshot_features(base, &art.spec, &art.definition, as_of);
    let w = art.spec.len();
    let probs = crate::scoring::probabilities(scorer, &x);
    let best = (0..pop.len())
        .max_by(|&i, &j| probs[i].total_cmp(&probs[j]))
        .ok_or_else(|| Error::Data("nobody is active in the sample".into()))?;
    let id = base.customers.ids[pop[best] as usize].clone();
    let features: serde_json::Map<String, serde_json::Value> = scorer
        .feature_names()
        .iter()
        .zip(&x[best * w..(best + 1) * w])
        .map(|(n, v)| {
            let value = if v.is_finite() {
                serde_json::json!(v)
            } else {
                serde_json::Value::Null
            };
            (n.to_string(), value)
        })
        .collect();
    let body = serde_json::json!({"customer_id": id, "features": features});
    Ok((id, body))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn training_is_due_only_for_a_missing_model_or_alias_never_for_a_corrupt_registry() {
        let dir = tempfile::tempdir().unwrap();
        let reg = Registry::new(dir.path().join("models"));
        assert!(needs_training(&reg, "churn").unwrap(), "no model yet");

        let name_dir = dir.path().join("models").join("churn");
        std::fs::create_dir_all(&name_dir).unwrap();
        assert!(
            needs_training(&reg, "churn").unwrap(),
            "no production alias yet"
        );

        std::fs::write(name_dir.join("aliases.json"), b"{\"production\": \"v").unwrap();
        let before = std::fs::read_dir(&name_dir).unwrap().count();
        let err = needs_training(&reg, "churn").unwrap_err();
        assert!(err.to_string().contains("corrupt"), "{err}");
        assert!(matches!(err, Error::Corrupt { .. }));
        assert_eq!(
            std::fs::read_dir(&name_dir).unwrap().count(),
            before,
            "nothing written"
        );
    }
}
