//! `churnguard alerts --scores`: the alert stage of a night over a score table written
//! elsewhere (a Spark job's Parquet parts, `churnguard score`'s file, the Python
//! package's `Model.score`), through the same [`super::alert_night`] as `score`: the
//! same alerting tiers, policy, outbox transaction, idempotency keys and sinks, so a
//! night scored in pieces raises exactly the alerts one `score` run would, once.
//!
//! An alert is built by the same [`super::night_alert`] from what the table holds: the
//! score, reasons, dimensions, trend and the early-warning rules by name. The feature
//! row behind the behaviour summary and the rules' values comes from the customer base
//! when one is given (computed as `score` computes it), else from the table's
//! `value_<feature>` columns (`--contributions`); else only the reasons' features are
//! known (the others null in the summary) and the rules' hits are the ones the table
//! names. The task's profile, trail and owner need the customer base; without it the
//! profile holds what the features hold, as in the service's alerts.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use polars::prelude::DataFrame;
use serde::Serialize;

use super::{alert_night, night_alert, tier_counts, AlertStageError, Sinks};
use crate::alerts::{AlertPolicy, Observation, Outbox, RetryPolicy, TaskConfig};
use crate::data::CustomerBase;
use crate::features::snapshot_features;
use crate::registry::{Registry, Selector};
use crate::scores::ScoreRecord;
use crate::scoring::{Rule, RuleHit, Score, Scorer};
use crate::time::{fmt_date, Ts};
use crate::{Error, Result};

/// What `alerts --scores` runs with besides the scores: the settings `score` has for
/// its alert stage.
#[derive(Debug, Clone)]
pub struct ScoresAlertOptions {
    /// The alert state and outbox database, a file or a postgres:// URL; `None`: the
    /// model's default in the registry ([`Registry::default_outbox`]).
    pub outbox: Option<PathBuf>,
    pub policy: AlertPolicy,
    /// Alerts are also appended here as JSON lines.
    pub alerts_log: Option<PathBuf>,
    /// Webhook URL and signing secret.
    pub webhook: Option<(String, String)>,
    pub retry: RetryPolicy,
    /// What the alerts carry besides the score.
    pub task: TaskConfig,
    /// The early-warning rules (`--rules`) instead of the model's: which rules named in
    /// the table raise alerts on their own.
    pub rules: Option<Vec<Rule>>,
}

/// What `alerts --scores` did: printed by the CLI, a dict in Python.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ScoresAlertSummary {
    /// The night (`YYYY-MM-DD`).
    pub as_of: String,
    /// `<name> v<version>` of the model the table names.
    pub model: String,
    /// Customers in the table.
    pub customers: usize,
    /// Customers per tier (`high`, `low`, `medium`).
    pub tiers: BTreeMap<String, usize>,
    /// Alerts the policy raised (a re-run raises them again, the outbox stores none).
    pub alerts_raised: usize,
    /// Alerts newly stored in the outbox.
    pub alerts_new: usize,
    /// Deliveries the sinks accepted.
    pub alerts_delivered: usize,
    /// The outbox written.
    pub outbox: String,
}

/// Records the night of the score table `df` (`source` names it in errors) in the
/// outbox, raises its tier transitions' alerts and delivers them, as `score`'s alert
/// stage does for the night it scores. Every row must be of one night and one model
/// version, which is loaded from `registry` (its name is the alerts' and the keys').
/// `base`, when given, supplies the feature rows and the alerts' tasks.
pub fn alerts_from_scores(
    df: &DataFrame,
    source: &Path,
    registry: &Registry,
    base: Option<&CustomerBase>,
    opts: &ScoresAlertOptions,
) -> Result<ScoresAlertSummary> {
    let records = crate::scores::records(df, source)?;
    if records.len() != df.height() {
        return Err(Error::Data(format!(
            "{}: {} of {} rows have no customer_id",
            source.display(),
            df.height() - records.len(),
            df.height()
        )));
    }
    let (as_of, model) = one_night(&records, source)?;
    let selector: Selector = model.version.parse()?;
    let mut scorer = Scorer::load(registry, &model.name, &selector)?;
    if let Some(rules) = &opts.rules {
        scorer.rules = rules.clone();
    }
    let spec = &scorer.artifact.spec;
    let w = spec.len();
    let names: Vec<String> = spec.defs().iter().map(|d| d.name.clone()).collect();
    // Each record's feature row: from the base as `score` computes it, else the table's.
    let from_table = crate::scores::feature_values(df, &names)?;
    let from_base = base.map(|b| {
        let (pop, x) = snapshot_features(b, spec, &scorer.artifact.definition, as_of);
        let at: HashMap<&str, usize> = pop
            .iter()
            .enumerate()
            .map(|(i, &c)| (b.customers.ids[c as usize].as_str(), i))
            .collect();
        (pop, x, at)
    });
    // Without the base or value columns, a row knows the reasons' features only.
    let partial: Vec<Vec<f64>> = match &from_table {
        None => records.iter().map(|r| reason_row(spec, r)).collect(),
        Some(_) => Vec::new(),
    };
    // (the row, whether it is whole, the customer's index in the base)
    let rows: Vec<(&[f64], bool, Option<usize>)> = records
        .iter()
        .enumerate()
        .map(|(i, r)| {
            if let Some((pop, x, at)) = &from_base {
                if let Some(&k) = at.get(r.customer_id.as_str()) {
                    return (&x[k * w..(k + 1) * w], true, Some(pop[k] as usize));
                }
            }
            match &from_table {
                Some(x) => (&x[i * w..(i + 1) * w], true, None),
                None => (partial[i].as_slice(), false, None),
            }
        })
        .collect();
    let scores: Vec<Score> = records
        .iter()
        .zip(&rows)
        .map(|(r, &(row, whole, _))| {
            let hits = match whole {
                true => crate::scoring::evaluate(&scorer.rules, spec, row),
                false => named_hits(&scorer, r),
            };
            r.to_score(hits)
        })
        .collect();
    let observations: Vec<Observation> = records
        .iter()
        .zip(&scores)
        .map(|(r, s)| Observation {
            customer_id: &r.customer_id,
            tier: s.alerting_tier(),
            as_of,
        })
        .collect();
    let tiers = tier_counts(scores.iter().map(|s| s.risk_tier));
    let night = super::scored_night(as_of, model_label(&model), &tiers, &[]);
    let build = |tr: &crate::alerts::Transition<'_>| {
        let i = tr.index;
        let (row, _, customer) = rows[i];
        let task = match (base, customer) {
            (Some(b), Some(c)) => crate::alerts::task::of_customer(b, c, as_of, &opts.task),
            _ => crate::alerts::task::of_features(spec, row),
        };
        let mut alert = night_alert(
            tr,
            &scorer,
            &scores[i],
            row,
            task,
            records[i].trend30(),
            &opts.task,
        );
        if let (Some(segment), Some(summary)) =
            (&records[i].rfm_segment, alert.summary.as_object_mut())
        {
            // The table's segment where the row cannot tell it.
            summary
                .entry("rfm_segment")
                .or_insert_with(|| serde_json::Value::String(segment.clone()));
        }
        if records[i].dimensions.is_none() {
            // A table written before dimensions: none is known.
            alert.dimensions = None;
            alert.primary_driver = None;
        }
        alert
    };
    let outbox_path = opts
        .outbox
        .clone()
        .unwrap_or_else(|| registry.default_outbox(&model.name));
    let outbox = Outbox::open(&outbox_path)?;
    let outbox_path = outbox.path().display().to_string();
    let sinks = Sinks {
        alerts_log: opts.alerts_log.as_deref(),
        webhook: opts.webhook.as_ref(),
        retry: opts.retry,
    };
    let (recorded, delivered) = alert_night(
        outbox,
        &opts.policy,
        &observations,
        build,
        &night,
        &mut |_| Ok(Vec::new()),
        &sinks,
    )
    .map_err(|e| match e {
        AlertStageError::NotRecorded(e) | AlertStageError::Recorded(e) => e,
    })?;
    Ok(ScoresAlertSummary {
        as_of: fmt_date(as_of),
        model: model_label(&model),
        customers: records.len(),
        tiers: tiers.into_iter().collect(),
        alerts_raised: recorded.raised,
        alerts_new: recorded.inserted,
        alerts_delivered: delivered,
        outbox: outbox_path,
    })
}

fn model_label(m: &crate::scoring::ModelRef) -> String {
    format!("{} {}", m.name, m.version)
}

/// The one `as_of` and model of a night's records; a table mixing nights or models is
/// refused (its alerts would not be one night's).
fn one_night(records: &[ScoreRecord], source: &Path) -> Result<(Ts, crate::scoring::ModelRef)> {
    let first = records.first().ok_or_else(|| {
        Error::Data(format!(
            "{}: no scores: a night's alerts need its scored customers",
            source.display()
        ))
    })?;
    let bad = |row: usize, column: &str, message: String| Error::BadValue {
        table: "scores".into(),
        file: source.display().to_string(),
        row,
        column: column.into(),
        message,
    };
    let as_of = crate::time::parse_ts(&first.as_of)
        .ok_or_else(|| bad(1, "as_of", format!("`{}` is not a timestamp", first.as_of)))?;
    for (i, r) in records.iter().enumerate() {
        if r.as_of != first.as_of {
            return Err(bad(
                i + 1,
                "as_of",
                format!(
                    "{} after {} on row 1: a score table's alerts are one night's; split it by as_of",
                    r.as_of, first.as_of
                ),
            ));
        }
        if r.model != first.model {
            return Err(bad(
                i + 1,
                "model_version",
                format!(
                    "{} after {} on row 1: one night is scored by one model version",
                    model_label(&r.model),
                    model_label(&first.model)
                ),
            ));
        }
    }
    Ok((as_of, first.model.clone()))
}

/// A feature row knowing only the values of the record's reasons (NaN elsewhere).
fn reason_row(spec: &crate::features::FeatureSpec, r: &ScoreRecord) -> Vec<f64> {
    let mut row = vec![f64::NAN; spec.len()];
    for reason in &r.reasons {
        if let (Some(j), Some(v)) = (spec.index_of(&reason.feature), reason.value) {
            row[j] = v;
        }
    }
    row
}

/// The early-warning hits of a record without its whole feature row: the rules the
/// table names, each with its value when a reason is on the same feature.
fn named_hits(scorer: &Scorer, r: &ScoreRecord) -> Vec<RuleHit> {
    r.early_warnings
        .iter()
        .map(|name| {
            let rule = scorer.rules.iter().find(|rule| &rule.name() == name);
            let Some(rule) = rule else {
                // A rule the configuration no longer has: named, never alerting.
                return RuleHit {
                    rule: name.clone(),
                    kind: String::new(),
                    feature: String::new(),
                    value: f64::NAN,
                    threshold: f64::NAN,
                    message: name.clone(),
                    alert: false,
                };
            };
            let value = r
                .reasons
                .iter()
                .find(|x| x.feature == rule.feature())
                .and_then(|x| x.value);
            rule.hit(value)
        })
        .collect()
}
