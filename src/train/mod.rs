//! The trainer: snapshots -> features -> fit every algorithm -> evaluate on the
//! held-out later snapshots -> pick the champion -> calibrate -> thresholds ->
//! report -> a new immutable version in the registry.
//!
//! Documented rules:
//! - **Champion**: the algorithm with the highest ROC AUC on the validation snapshots
//!   (ties broken by PR AUC, then by the simpler algorithm).
//! - **Calibration**: Platt scaling of the champion's margins, fit on the validation
//!   snapshots (the model never saw them). Calibrated log loss and Brier are reported
//!   honestly by two-fold cross-fitting on validation customers. The shipped model is
//!   the one evaluated: it is *not* refit on validation data, because the calibration
//!   and the thresholds were learned from that model's validation predictions.
//! - **Thresholds**: capacity-based on the calibrated validation scores: `high` is the
//!   top `high_share` (default 5%), `medium` the next band down to `medium_share`
//!   (default 20%); both overridable with fixed probabilities in the config.

mod report;

use crate::data::CustomerBase;
use crate::features::{AttributeConfig, Bound, FeatureSpec, SpecInputs};
use crate::labels::{self, Example, LabelConfig, Plan, Split};
use crate::manifest::{
    finite, Calibration, FeatureSchema, Manifest, ManifestMetrics, ManifestThresholds,
    SnapshotSummary, TableCount, TrainingData,
};
use crate::metrics::{self, Bins, Evaluation};
use crate::model::{
    sigmoid, Algorithm, Artifact, BoostModel, BoostParams, Classifier, FittedModel, LogisticModel,
    LogisticParams, Platt, Preprocessor, Thresholds, TreeModel, TreeParams, ARTIFACT_FORMAT,
};
use crate::registry::{Published, Registry};
use crate::time::{fmt_date, fmt_ts, Ts};
use crate::{Error, Result};
use serde::{Deserialize, Serialize};
use serde_json::json;
use std::time::Instant;

/// How risk tiers are chosen.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TierPolicy {
    /// Share of customers flagged `high` (the retention team's calling capacity).
    pub high_share: f64,
    /// Share flagged `medium` or `high`.
    pub medium_share: f64,
    /// A fixed probability for `high`, overriding the share.
    pub high_threshold: Option<f64>,
    /// A fixed probability for `medium`, overriding the share.
    pub medium_threshold: Option<f64>,
}

impl Default for TierPolicy {
    fn default() -> Self {
        TierPolicy {
            high_share: 0.05,
            medium_share: 0.20,
            high_threshold: None,
            medium_threshold: None,
        }
    }
}

/// Everything a training run needs, validated before work starts.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrainConfig {
    pub name: String,
    pub labels: LabelConfig,
    pub algorithms: Vec<Algorithm>,
    pub attributes: AttributeConfig,
    pub promote: bool,
    pub logistic: LogisticParams,
    pub tree: TreeParams,
    pub gbdt: BoostParams,
    pub forest: BoostParams,
    pub tiers: TierPolicy,
}

impl Default for TrainConfig {
    fn default() -> Self {
        TrainConfig {
            name: crate::registry::DEFAULT_NAME.into(),
            labels: LabelConfig::default(),
            algorithms: Algorithm::ALL.to_vec(),
            attributes: AttributeConfig {
                top_levels: 8,
                top_event_types: 8,
                ..Default::default()
            },
            promote: false,
            logistic: LogisticParams::default(),
            tree: TreeParams::default(),
            gbdt: BoostParams::gbdt(),
            forest: BoostParams::forest(),
            tiers: TierPolicy::default(),
        }
    }
}

impl TrainConfig {
    /// Checks settings before any data is read.
    pub fn validate(&self) -> Result<()> {
        self.labels.validate()?;
        crate::registry::validate_name(&self.name)?;
        if self.algorithms.is_empty() {
            return Err(Error::Config("--algorithms names no algorithm".into()));
        }
        let g = &self.gbdt;
        if g.rounds == 0 || !(1..=16).contains(&g.max_depth) {
            return Err(Error::Config(format!(
                "[gbdt] needs rounds >= 1 and 1 <= max_depth <= 16 (got rounds {}, max_depth {})",
                g.rounds, g.max_depth
            )));
        }
        let t = &self.tiers;
        if !(0.0 < t.high_share && t.high_share <= t.medium_share && t.medium_share < 1.0) {
            return Err(Error::Config(
                "tier shares must satisfy 0 < high_share <= medium_share < 1".into(),
            ));
        }
        for p in [t.high_threshold, t.medium_threshold].into_iter().flatten() {
            if !(0.0..=1.0).contains(&p) {
                return Err(Error::Config(format!(
                    "tier threshold {p} is not a probability"
                )));
            }
        }
        Ok(())
    }
}

/// One algorithm's result on the validation snapshots.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Candidate {
    pub algorithm: Algorithm,
    /// Raw model probabilities (sigmoid of the margin).
    pub validation: Evaluation,
    /// Log loss and Brier after Platt calibration, cross-fitted on validation.
    pub calibrated_log_loss: f64,
    pub calibrated_brier: f64,
    pub fit_seconds: f64,
    /// Global importance per feature, schema order.
    pub importance: Vec<f64>,
    /// Hyper-parameters used.
    pub params: serde_json::Value,
}

/// Counts of one tier on validation.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TierStats {
    pub tier: String,
    pub threshold: f64,
    /// Customers at or above the threshold on the latest validation snapshot.
    pub flagged_latest: usize,
    pub precision: f64,
    pub recall: f64,
}

/// What a training run produced.
pub struct TrainOutcome {
    pub published: Published,
    pub champion: Algorithm,
    pub candidates: Vec<Candidate>,
    pub calibrated: Evaluation,
    pub report_path: std::path::PathBuf,
    pub metrics: serde_json::Value,
    /// Reasons to doubt this version's evidence (also in metrics.json, the manifest and
    /// the report).
    pub warnings: Vec<String>,
}

/// The candidate table and the champion, as `churnguard train` prints them.
impl std::fmt::Display for TrainOutcome {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(
            f,
            "\n{:<10} {:>8} {:>8} {:>9} {:>8} {:>11} {:>7}",
            "algorithm", "ROC AUC", "PR AUC", "log loss", "Brier", "lift@10%", "fit s"
        )?;
        for c in &self.candidates {
            let v = &c.validation;
            writeln!(
                f,
                "{:<10} {:>8.4} {:>8.4} {:>9.4} {:>8.4} {:>11.2} {:>7.1}",
                c.algorithm.name(),
                v.roc_auc,
                v.pr_auc,
                c.calibrated_log_loss,
                c.calibrated_brier,
                v.top.get(1).map_or(f64::NAN, |t| t.lift),
                c.fit_seconds
            )?;
        }
        let aliases = match self.published.aliases_set.as_slice() {
            [] => "none".to_string(),
            set => set.join(", "),
        };
        writeln!(
            f,
            "\nchampion: {} -> {} v{} (aliases: {aliases})",
            self.champion.name(),
            self.published.name,
            self.published.version,
        )?;
        writeln!(
            f,
            "calibrated validation: ROC AUC {:.4}, Brier {:.4}, log loss {:.4}",
            self.calibrated.roc_auc, self.calibrated.brier, self.calibrated.log_loss
        )?;
        writeln!(f, "report: {}", self.report_path.display())?;
        for w in &self.warnings {
            writeln!(f, "warning: {w}")?;
        }
        Ok(())
    }
}

/// The examples of the training set and the spec learned on its training rows, before
/// any feature is computed: what [`TrainingSet`] computes its matrix from and
/// [`training_set_chunks`] computes frame by frame.
pub struct TrainingExamples {
    pub plan: Plan,
    pub examples: Vec<Example>,
    pub spec: FeatureSpec,
}

impl TrainingExamples {
    /// Builds snapshots, labels and the spec (learned on training rows only).
    pub fn build(
        base: &CustomerBase,
        labels: &LabelConfig,
        attrs: &AttributeConfig,
    ) -> Result<Self> {
        let plan = labels::plan(base, labels)?;
        let examples = labels::examples(base, &plan);
        let spec = FeatureSpec::learn(base, &train_rows(&examples), attrs)?;
        Ok(TrainingExamples {
            plan,
            examples,
            spec,
        })
    }

    /// The examples of one part of a base split by customer (a Spark job's bucket), on
    /// the whole base's plan ([`labels::plan_for`] of the merged [`labels::PlanExtent`]s)
    /// and spec ([`SpecInputs::learn`] of the merged [`TrainingExamples::spec_inputs`]):
    /// the parts' examples together are the whole base's.
    pub fn part(base: &CustomerBase, plan: Plan, spec: FeatureSpec) -> Self {
        let examples = labels::examples(base, &plan);
        TrainingExamples {
            plan,
            examples,
            spec,
        }
    }

    /// What the spec is learned from in one part of a base on the whole base's `plan`;
    /// `positions[c]`: customer `c`'s position in the whole base.
    pub fn spec_inputs(
        base: &CustomerBase,
        plan: &Plan,
        positions: &[u64],
        attrs: &AttributeConfig,
    ) -> Result<SpecInputs> {
        let examples = labels::examples(base, plan);
        let snapshots: Vec<Ts> = plan
            .snapshots
            .iter()
            .filter(|s| s.split == Split::Train)
            .map(|s| s.as_of)
            .collect();
        SpecInputs::of(base, &train_rows(&examples), &snapshots, positions, attrs)
    }

    /// `(customer, as_of)` of the examples in `range`.
    fn rows(&self, range: std::ops::Range<usize>) -> Vec<(u32, Ts)> {
        self.examples[range]
            .iter()
            .map(|e| (e.customer, e.as_of))
            .collect()
    }
}

/// The exact training set the trainer uses: examples, the learned spec and matrices.
pub struct TrainingSet {
    pub plan: Plan,
    pub examples: Vec<Example>,
    pub spec: FeatureSpec,
    /// Row-major features of every example, in example order.
    pub x: Vec<f64>,
}

impl TrainingSet {
    /// Builds snapshots, labels, the spec (learned on training rows only) and features.
    pub fn build(
        base: &CustomerBase,
        labels: &LabelConfig,
        attrs: &AttributeConfig,
    ) -> Result<Self> {
        let set = TrainingExamples::build(base, labels, attrs)?;
        let x = Bound::new(&set.spec, base).matrix(&set.rows(0..set.examples.len()));
        let TrainingExamples {
            plan,
            examples,
            spec,
        } = set;
        Ok(TrainingSet {
            plan,
            examples,
            spec,
            x,
        })
    }

    /// Rows, labels and example indexes of the examples matching `pred`.
    pub fn select(&self, pred: impl Fn(&Example) -> bool) -> (Vec<f64>, Vec<bool>, Vec<usize>) {
        let w = self.spec.len();
        let mut x = Vec::new();
        let mut y = Vec::new();
        let mut idx = Vec::new();
        for (i, e) in self.examples.iter().enumerate() {
            if pred(e) {
                x.extend_from_slice(&self.x[i * w..(i + 1) * w]);
                y.push(e.label);
                idx.push(i);
            }
        }
        (x, y, idx)
    }
}

/// The training examples' `(customer, as_of)`, in example order.
fn train_rows(examples: &[Example]) -> Vec<(u32, Ts)> {
    examples
        .iter()
        .filter(|e| e.split == Split::Train)
        .map(|e| (e.customer, e.as_of))
        .collect()
}

/// Fits one algorithm on a row-major matrix (preprocessing learned on `x`).
pub fn fit_algorithm(
    algo: Algorithm,
    cfg: &TrainConfig,
    spec: &FeatureSpec,
    x: &[f64],
    y: &[bool],
    early: Option<(&[f64], &[bool])>,
) -> Result<(FittedModel, serde_json::Value)> {
    let w = spec.len();
    let pre = Preprocessor::learn(x, spec.defs());
    Ok(match algo {
        Algorithm::Logistic => (
            FittedModel::Logistic(LogisticModel::fit(x, w, y, pre, &cfg.logistic)?),
            json!(cfg.logistic),
        ),
        Algorithm::Tree => (
            FittedModel::Tree(TreeModel::fit(x, w, y, pre, &cfg.tree)?),
            json!(cfg.tree),
        ),
        Algorithm::Gbdt => {
            let m = BoostModel::fit(x, w, y, early, &cfg.gbdt)?;
            let mut p = json!(cfg.gbdt);
            p["trees_kept"] = json!(m.n_trees);
            (FittedModel::Gbdt(m), p)
        }
        Algorithm::Forest => (
            FittedModel::Forest(BoostModel::fit(x, w, y, None, &cfg.forest)?),
            json!(cfg.forest),
        ),
    })
}

/// Platt calibration cross-fitted over two halves of the validation customers:
/// calibrated probabilities none of which saw their own label.
fn cross_fitted(margins: &[f64], labels: &[bool], customers: &[u32]) -> Vec<f64> {
    let fold = |c: u32| (c.wrapping_mul(2_654_435_761) >> 7) & 1;
    let mut out = vec![0.0; margins.len()];
    for f in 0..2 {
        let (m, l): (Vec<f64>, Vec<bool>) = margins
            .iter()
            .zip(labels)
            .zip(customers)
            .filter(|(_, &c)| fold(c) != f)
            .map(|((&m, &l), _)| (m, l))
            .unzip();
        let platt = Platt::fit(&m, &l);
        for i in 0..margins.len() {
            if fold(customers[i]) == f {
                out[i] = platt.apply(margins[i]);
            }
        }
    }
    out
}

/// The drift references: decile bins of every feature and of the calibrated score on the
/// latest validation snapshot, one night's population like the nightly run's. (The
/// training rows pool older snapshots, whose customers were younger: tenure alone made
/// every night a major shift against them.) `x` holds the validation rows, `as_of` their
/// snapshot and `scores` their calibrated probability, row for row.
fn drift_reference(x: &[f64], w: usize, as_of: &[Ts], scores: &[f64]) -> (Vec<Bins>, Bins) {
    let latest = as_of.iter().copied().max();
    let rows: Vec<usize> = (0..as_of.len())
        .filter(|&i| Some(as_of[i]) == latest)
        .collect();
    let step = (rows.len() / 200_000).max(1);
    let rows: Vec<usize> = rows.into_iter().step_by(step).collect();
    let column =
        |f: &dyn Fn(usize) -> f64| Bins::learn(&rows.iter().map(|&i| f(i)).collect::<Vec<f64>>());
    let feature_bins = (0..w).map(|j| column(&|i| x[i * w + j])).collect();
    (feature_bins, column(&|i| scores[i]))
}

/// At most this many validation rows are explained for the dimension health reference
/// (evenly spaced): 101 quantiles need no more, and TreeSHAP of every row would cost
/// seconds on a large base.
const EXPLAIN_REFERENCE_ROWS: usize = 20_000;

/// The references of the explanations: the stayers' values on the training rows, and
/// the dimension contributions of (up to [`EXPLAIN_REFERENCE_ROWS`]) validation rows.
fn explain_references(
    spec: &crate::features::FeatureSpec,
    model: &crate::model::FittedModel,
    platt: Platt,
    xt: &[f64],
    yt: &[bool],
    xv: &[f64],
) -> crate::manifest::ExplainReferences {
    let w = spec.len().max(1);
    let n = xv.len() / w;
    let step = n.div_ceil(EXPLAIN_REFERENCE_ROWS).max(1);
    let rows: Vec<f64> = xv.chunks(w).step_by(step).flatten().copied().collect();
    let mut c = vec![0.0; rows.len()];
    model.margins_and_contributions(&rows, w, &mut c);
    for v in &mut c {
        *v *= platt.a;
    }
    crate::scoring::learn_explain_references(spec, xt, yt, &c)
}

fn quantile_desc(sorted_asc: &[f64], share: f64) -> f64 {
    if sorted_asc.is_empty() {
        return 1.0;
    }
    let k = ((sorted_asc.len() as f64) * (1.0 - share)).floor() as usize;
    sorted_asc[k.min(sorted_asc.len() - 1)]
}

/// Trains, evaluates, calibrates and publishes a new version. `stage` is told what
/// is happening (for progress output).
pub fn run(
    base: &CustomerBase,
    registry: &Registry,
    cfg: &TrainConfig,
    stage: &dyn Fn(&str),
) -> Result<TrainOutcome> {
    cfg.validate()?;
    let started = Instant::now();
    stage("building snapshots, labels and features");
    let set = TrainingSet::build(base, &cfg.labels, &cfg.attributes)?;
    let features_seconds = started.elapsed().as_secs_f64();
    let spec = &set.spec;
    let w = spec.len();
    let (xt, yt, _) = set.select(|e| e.split == Split::Train);
    let (xv, yv, iv) = set.select(|e| e.split == Split::Validation);
    let pos_t = yt.iter().filter(|&&l| l).count();
    let pos_v = yv.iter().filter(|&&l| l).count();
    if pos_t < 10 || yt.len() - pos_t < 10 {
        return Err(Error::Train(format!(
            "the training snapshots hold {} examples of which {pos_t} churned: at least 10 of each class are needed (more history, a longer --horizon-days or more frequent --snapshot-days help)",
            yt.len()
        )));
    }
    if pos_v < 5 || yv.len() - pos_v < 5 {
        return Err(Error::Train(format!(
            "the validation snapshots hold {} examples of which {pos_v} churned: at least 5 of each class are needed to evaluate",
            yv.len()
        )));
    }
    let val_customers: Vec<u32> = iv.iter().map(|&i| set.examples[i].customer).collect();
    // Early stopping for gbdt watches the latest training snapshot, fit on the others.
    let last_train = set
        .plan
        .snapshots
        .iter()
        .filter(|s| s.split == Split::Train)
        .map(|s| s.as_of)
        .max()
        .expect("the plan has a training snapshot");
    let n_train_snaps = set
        .plan
        .snapshots
        .iter()
        .filter(|s| s.split == Split::Train)
        .count();

    let mut candidates = Vec::new();
    let mut fitted = Vec::new();
    // Each candidate's cross-fitted calibrated validation probabilities, candidate order.
    let mut cross_fits = Vec::new();
    for &algo in &cfg.algorithms {
        stage(&format!("fitting {}", algo.name()));
        let t0 = Instant::now();
        let (model, params) = if algo == Algorithm::Gbdt && n_train_snaps >= 2 {
            let (xf, yf, _) = set.select(|e| e.split == Split::Train && e.as_of < last_train);
            let (xe, ye, _) = set.select(|e| e.split == Split::Train && e.as_of == last_train);
            fit_algorithm(algo, cfg, spec, &xf, &yf, Some((&xe, &ye)))?
        } else {
            fit_algorithm(algo, cfg, spec, &xt, &yt, None)?
        };
        let fit_seconds = t0.elapsed().as_secs_f64();
        let margins = model.margins(&xv, w);
        let raw: Vec<f64> = margins.iter().map(|&m| sigmoid(m)).collect();
        let calibrated = cross_fitted(&margins, &yv, &val_customers);
        candidates.push(Candidate {
            algorithm: algo,
            validation: metrics::evaluate(&raw, &yv),
            calibrated_log_loss: metrics::log_loss(&calibrated, &yv),
            calibrated_brier: metrics::brier(&calibrated, &yv),
            fit_seconds,
            importance: model.importance(),
            params,
        });
        cross_fits.push(calibrated);
        fitted.push((model, margins));
    }
    // Champion: highest validation ROC AUC, then PR AUC, then the simpler algorithm.
    let best = (0..candidates.len())
        .max_by(|&a, &b| {
            let (ca, cb) = (&candidates[a], &candidates[b]);
            ca.validation
                .roc_auc
                .total_cmp(&cb.validation.roc_auc)
                .then(ca.validation.pr_auc.total_cmp(&cb.validation.pr_auc))
                .then(cb.algorithm.cmp(&ca.algorithm))
        })
        .expect("at least one algorithm");
    let champion = candidates[best].algorithm;
    stage(&format!("calibrating the champion ({})", champion.name()));
    // Every candidate's validation margins, for the report's curves.
    let curves: Vec<(Algorithm, Vec<f64>)> = candidates
        .iter()
        .zip(&fitted)
        .map(|(c, (_, m))| (c.algorithm, m.clone()))
        .collect();
    let (model, margins) = fitted.swap_remove(best);
    let platt = Platt::fit(&margins, &yv);
    let calibrated_cv = &cross_fits[best];
    let calibrated_eval = metrics::evaluate(calibrated_cv, &yv);
    let probs: Vec<f64> = margins.iter().map(|&m| platt.apply(m)).collect();
    let mut sorted = probs.clone();
    sorted.sort_by(f64::total_cmp);

    // Thresholds and what each tier would flag.
    let t = &cfg.tiers;
    let mut high = t
        .high_threshold
        .unwrap_or_else(|| quantile_desc(&sorted, t.high_share));
    let medium = t
        .medium_threshold
        .unwrap_or_else(|| quantile_desc(&sorted, t.medium_share))
        .min(high);
    if high < medium {
        high = medium;
    }
    let policy = match (t.high_threshold, t.medium_threshold) {
        (None, None) => format!(
            "capacity: high = top {:.0}% of validation customers by calibrated probability, medium = top {:.0}%",
            100.0 * t.high_share,
            100.0 * t.medium_share
        ),
        _ => "fixed probabilities from the configuration".to_string(),
    };
    let latest_val = set
        .plan
        .snapshots
        .iter()
        .map(|s| s.as_of)
        .max()
        .expect("the plan has snapshots");
    let tier_stats: Vec<TierStats> = [("high", high), ("medium", medium)]
        .iter()
        .map(|&(name, thr)| {
            let flagged: Vec<usize> = (0..probs.len()).filter(|&i| probs[i] >= thr).collect();
            let tp = flagged.iter().filter(|&&i| yv[i]).count() as f64;
            TierStats {
                tier: name.into(),
                threshold: thr,
                flagged_latest: flagged
                    .iter()
                    .filter(|&&i| set.examples[iv[i]].as_of == latest_val)
                    .count(),
                precision: if flagged.is_empty() {
                    f64::NAN
                } else {
                    tp / flagged.len() as f64
                },
                recall: tp / pos_v as f64,
            }
        })
        .collect();

    stage("drift references and report");
    let health_reference: Vec<f64> = (0..=100)
        .map(|i| sorted[((sorted.len() - 1) as f64 * i as f64 / 100.0) as usize])
        .collect();
    let val_as_of: Vec<Ts> = iv.iter().map(|&i| set.examples[i].as_of).collect();
    let (feature_bins, score_bins) = drift_reference(&xv, w, &val_as_of, &probs);
    let explain = explain_references(spec, &model, platt, &xt, &yt, &xv);

    let artifact = Artifact {
        format: ARTIFACT_FORMAT,
        spec: spec.clone(),
        model,
        calibration: platt,
        thresholds: Thresholds {
            high,
            medium,
            policy: policy.clone(),
        },
        definition: set.plan.definition,
        horizon_days: set.plan.horizon_days,
        health_reference,
        feature_bins,
        score_bins,
    };
    let snapshots: Vec<SnapshotSummary> = set
        .plan
        .snapshots
        .iter()
        .map(|s| {
            let (n, p) = set
                .examples
                .iter()
                .filter(|e| e.as_of == s.as_of)
                .fold((0usize, 0usize), |(n, p), e| {
                    (n + 1, p + usize::from(e.label))
                });
            SnapshotSummary {
                as_of: fmt_date(s.as_of),
                split: s.split.as_str().to_string(),
                examples: n,
                churned: p,
                positive_rate: p as f64 / n.max(1) as f64,
            }
        })
        .collect();
    let warnings = evidence_warnings(calibrated_eval.roc_auc, pos_v, yv.len() - pos_v);
    let champion_importance = candidates
        .iter()
        .find(|c| c.algorithm == champion)
        .map(|c| {
            report::importance_by_dimension(&set.spec, &c.importance)
                .into_iter()
                .map(|(d, v)| (d.as_str().to_string(), json!(v)))
                .collect::<serde_json::Map<_, _>>()
        });
    let metrics_json = json!({
        "warnings": warnings,
        "importance_by_dimension": champion_importance,
        "champion": champion.name(),
        "champion_rule": "highest validation ROC AUC, then PR AUC, then the simpler algorithm",
        "calibration": {"method": "platt", "a": platt.a, "b": platt.b,
            "fit_on": "validation snapshots", "evaluated_by": "two-fold cross-fitting over validation customers"},
        "champion_calibrated": calibrated_eval,
        "candidates": candidates,
        "thresholds": {"high": high, "medium": medium, "policy": policy, "tiers": tier_stats},
        "snapshots": snapshots,
        "dropped_snapshots": set.plan.dropped,
        "examples": {"train": yt.len(), "train_churned": pos_t, "validation": yv.len(), "validation_churned": pos_v},
        "timings_seconds": {"features": features_seconds, "total": started.elapsed().as_secs_f64()},
    });
    let html = report::render(
        base,
        &set,
        &artifact,
        &report::Evidence {
            candidates: &candidates,
            curves: &curves,
            calibrated: &calibrated_eval,
            tiers: &tier_stats,
            metrics_json: &metrics_json,
        },
    );
    let recorded = |what: &str, v: Result<serde_json::Value, serde_json::Error>| {
        v.map_err(|e| Error::Artifact(format!("manifest: {what}: {e}")))
    };
    let best_eval = &candidates[best].validation;
    let manifest = Manifest {
        algorithm: champion.name().to_string(),
        hyper_parameters: candidates[best].params.clone(),
        features: FeatureSchema {
            schema_hash: spec.schema_hash(),
            columns: recorded("features", serde_json::to_value(spec.defs()))?,
            event_types: spec.event_types.clone(),
            categorical: spec.categorical.clone(),
            numeric: spec.numeric.clone(),
            rfm_cuts: recorded("rfm cuts", serde_json::to_value(&spec.rfm))?,
            left_out: spec.left_out(),
            preprocessing: "signed log1p for log1p features, median imputation and standardisation for logistic; trees see raw values (NaN routed by the model or imputed with the training median)".into(),
        },
        horizon_days: set.plan.horizon_days,
        churn_definition: recorded("churn definition", serde_json::to_value(set.plan.definition))?,
        churn_definition_text: set.plan.definition.describe(),
        windows: recorded("windows", serde_json::to_value(&cfg.labels))?,
        thresholds: ManifestThresholds {
            high: finite(high),
            medium: finite(medium),
            policy: artifact.thresholds.policy.clone(),
        },
        calibration: Calibration {
            method: "platt".into(),
            a: finite(platt.a),
            b: finite(platt.b),
        },
        metrics: ManifestMetrics {
            validation_roc_auc: finite(best_eval.roc_auc),
            validation_pr_auc: finite(best_eval.pr_auc),
            validation_log_loss_calibrated: finite(calibrated_eval.log_loss),
            validation_brier_calibrated: finite(calibrated_eval.brier),
            lift_top_10pct: best_eval.top.get(1).and_then(|t| finite(t.lift)),
        },
        training_data: fingerprint(base),
        snapshots,
        warnings: warnings.clone(),
        explain: Some(explain),
        ..Manifest::default()
    };
    let files = vec![
        ("model.bin".to_string(), artifact.to_bytes()?),
        ("report.html".to_string(), html.into_bytes()),
        (
            "metrics.json".to_string(),
            serde_json::to_vec_pretty(&metrics_json).map_err(|e| Error::Artifact(e.to_string()))?,
        ),
        (
            VALIDATION_PREDICTIONS.to_string(),
            validation_predictions(base, &set, &iv, &yv, &curves, &cross_fits, &probs)?,
        ),
    ];
    stage("publishing");
    let published = registry.publish(&cfg.name, files, manifest, cfg.promote)?;
    let report_path = published.dir.join("report.html");
    Ok(TrainOutcome {
        published,
        champion,
        candidates,
        calibrated: calibrated_eval,
        report_path,
        metrics: metrics_json,
        warnings,
    })
}

/// The file of a version's validation predictions, beside `metrics.json`.
pub const VALIDATION_PREDICTIONS: &str = "validation_predictions.parquet";

/// [`VALIDATION_PREDICTIONS`]: one row per validation example (`customer_id`, `as_of` as a
/// UTC timestamp, `label` 0/1), then per candidate `<algorithm>_margin` (the model's raw
/// margin; its sigmoid gives the candidate's `validation` numbers in `metrics.json`) and
/// `<algorithm>_calibrated` (cross-fitted Platt probability: `calibrated_log_loss`,
/// `calibrated_brier` and, for the champion, `champion_calibrated`), and last
/// `champion_probability` (the shipped calibration, which the thresholds and tier counts
/// come from). Every number of `metrics.json`'s evaluation can be recomputed from it.
fn validation_predictions(
    base: &CustomerBase,
    set: &TrainingSet,
    iv: &[usize],
    yv: &[bool],
    margins: &[(Algorithm, Vec<f64>)],
    cross_fits: &[Vec<f64>],
    shipped: &[f64],
) -> Result<Vec<u8>> {
    use polars::prelude::*;
    let examples: Vec<&Example> = iv.iter().map(|&i| &set.examples[i]).collect();
    let ids: Vec<&str> = examples
        .iter()
        .map(|e| base.customers.ids[e.customer as usize].as_str())
        .collect();
    let labels: Vec<i32> = yv.iter().map(|&l| i32::from(l)).collect();
    let mut cols = vec![
        Column::new("customer_id".into(), ids),
        crate::data::write::timestamp_column("as_of", examples.iter().map(|e| e.as_of)),
        Column::new("label".into(), labels),
    ];
    for ((algo, m), cal) in margins.iter().zip(cross_fits) {
        cols.push(Column::new(format!("{}_margin", algo.name()).into(), m));
        cols.push(Column::new(
            format!("{}_calibrated", algo.name()).into(),
            cal,
        ));
    }
    cols.push(Column::new("champion_probability".into(), shipped));
    let mut df = DataFrame::new(iv.len(), cols)
        .map_err(|e| Error::polars("building the validation predictions", e))?;
    crate::data::write::parquet_bytes(&mut df)
}

/// Validation churners below this make every validation metric shaky.
const FEW_VALIDATION_CHURNERS: usize = 50;

/// What a data team must know before trusting this version's numbers: few churners in
/// validation, or a champion whose calibrated AUC is not clearly better than chance.
fn evidence_warnings(auc: f64, positives: usize, negatives: usize) -> Vec<String> {
    let half_width = 1.96 * crate::metrics::roc_auc_standard_error(auc, positives, negatives);
    let mut out = Vec::new();
    if positives < FEW_VALIDATION_CHURNERS {
        out.push(format!(
            "validation holds only {positives} churned examples (of {}): every validation \
             metric is uncertain, the ROC AUC by about ±{half_width:.3}",
            positives + negatives
        ));
    }
    if auc - half_width <= 0.5 {
        out.push(format!(
            "the champion's calibrated validation ROC AUC {auc:.3} is not distinguishable from \
             chance (95% interval {:.3}..{:.3}): do not act on its scores before it is retrained \
             on more history",
            auc - half_width,
            (auc + half_width).min(1.0)
        ));
    }
    out
}

/// Row counts, time range and a content hash of the customer base as loaded.
pub fn fingerprint(base: &CustomerBase) -> TrainingData {
    use sha2::{Digest, Sha256};
    let mut h = Sha256::new();
    for (i, id) in base.customers.ids.iter().enumerate() {
        h.update(id.as_bytes());
        h.update(base.customers.signup[i].to_le_bytes());
    }
    if let Some(g) = &base.logins {
        g.all().iter().for_each(|t| h.update(t.to_le_bytes()));
    }
    if let Some(g) = &base.orders {
        g.all().iter().for_each(|o| {
            h.update(o.at.to_le_bytes());
            h.update(o.amount.to_le_bytes());
        });
    }
    if let Some(g) = &base.tickets {
        g.all().iter().for_each(|t| {
            h.update(t.opened.to_le_bytes());
            h.update(t.closed.unwrap_or(-1).to_le_bytes());
        });
    }
    if let Some(g) = &base.events {
        g.all().iter().for_each(|e| {
            h.update(e.at.to_le_bytes());
            h.update(e.kind.to_le_bytes());
        });
    }
    if let Some(g) = &base.churn {
        g.all().iter().for_each(|t| h.update(t.to_le_bytes()));
    }
    let s = &base.summary;
    TrainingData {
        directory: s.directory.clone(),
        customers: s.customers,
        tables: s
            .tables
            .iter()
            .map(|t| TableCount {
                table: t.table.clone(),
                rows: t.rows,
                orphans: t.orphans,
                bad_rows: t.bad_rows,
            })
            .collect(),
        missing_tables: s.missing_tables.clone(),
        time_range: s.time_range.map(|(a, b)| [fmt_ts(a), fmt_ts(b)]),
        content_sha256: hex::encode(h.finalize()),
    }
}

/// The training set as frames of at most `rows` examples each (at least one frame):
/// `customer_id`, `as_of`, the features, `label`, `split`. Each frame's features are
/// computed when it is asked for, column by column: a large training set is never held
/// as a whole matrix, nor twice.
pub fn training_set_chunks<'a>(
    base: &'a CustomerBase,
    set: &'a TrainingExamples,
    rows: usize,
) -> impl Iterator<Item = Result<polars::prelude::DataFrame>> + Send + 'a {
    let n = set.examples.len();
    let rows = rows.max(1);
    (0..n.div_ceil(rows).max(1))
        .map(move |k| training_set_rows(base, set, k * rows..((k + 1) * rows).min(n)))
}

fn training_set_rows(
    base: &CustomerBase,
    set: &TrainingExamples,
    range: std::ops::Range<usize>,
) -> Result<polars::prelude::DataFrame> {
    use polars::prelude::*;
    let examples = &set.examples[range.clone()];
    let customers: Vec<u32> = examples.iter().map(|e| e.customer).collect();
    let label: Vec<i32> = examples.iter().map(|e| i32::from(e.label)).collect();
    let split: Vec<&str> = examples.iter().map(|e| e.split.as_str()).collect();
    let columns = Bound::new(&set.spec, base).columns(&set.rows(range));
    crate::features::feature_frame_of_columns(
        base,
        &set.spec,
        &customers,
        columns,
        vec![crate::data::write::timestamp_column(
            "as_of",
            examples.iter().map(|e| e.as_of),
        )],
        vec![
            Column::new("label".into(), label),
            Column::new("split".into(), split),
        ],
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn drift_bins_are_learned_from_the_latest_validation_snapshot_only() {
        // Two validation snapshots of one feature: the earlier one's values are far lower.
        let as_of: Vec<Ts> = (0..200).map(|i| if i < 100 { 10 } else { 20 }).collect();
        let x: Vec<f64> = (0..200).map(|i| i as f64).collect();
        let scores: Vec<f64> = (0..200).map(|i| i as f64 / 200.0).collect();
        let (features, score) = drift_reference(&x, 1, &as_of, &scores);
        assert_eq!(features, vec![Bins::learn(&x[100..])]);
        assert_eq!(score, Bins::learn(&scores[100..]));
        assert!(features[0].psi(&x[100..]) < 1e-9);
        assert!(
            features[0].psi(&x) > 0.25,
            "the pooled rows differ from the latest night"
        );
    }

    #[test]
    fn evidence_warnings_flag_few_churners_and_a_chance_level_champion() {
        assert!(evidence_warnings(0.70, 500, 5000).is_empty());
        let few = evidence_warnings(0.70, 20, 500);
        assert_eq!(few.len(), 1);
        assert!(few[0].starts_with("validation holds only 20 churned examples (of 520)"));
        let chance = evidence_warnings(0.51, 1000, 10_000);
        assert_eq!(chance.len(), 1);
        assert!(chance[0].contains("not distinguishable from chance"));
        assert_eq!(evidence_warnings(0.45, 15, 450).len(), 2);
    }
}
