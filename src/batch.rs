//! The nightly run: customer base -> features as of a date -> scores -> an atomically
//! written score file, a run summary with drift, and alerts for customers who newly
//! reach the alerting tier (through the same outbox and policy as the service).

use crate::alerts::{AlertPolicy, Observation, Outbox, Tier};
use crate::data::{write, CustomerBase};
use crate::features::{population, rfm_segment, Bound, FeatureSpec};
use crate::scoring::{Reason, Scorer};
use crate::time::{fmt_date, fmt_ts, Ts};
use crate::{Error, Result};
use polars::prelude::*;
use rayon::prelude::*;
use serde::{Deserialize, Serialize};
use serde_json::json;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

/// How many reasons each scored customer carries in the output.
pub const REASONS_PER_CUSTOMER: usize = 3;

/// One scored customer, as written to and read from the score file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ScoreRecord {
    pub customer_id: String,
    pub as_of: String,
    pub churn_probability: f64,
    pub health_score: f64,
    pub risk_tier: Tier,
    pub reasons: Vec<Reason>,
    pub rfm_segment: Option<String>,
    /// Names of the early-warning rules that fired.
    #[serde(default)]
    pub early_warnings: Vec<String>,
    pub model_name: String,
    pub model_version: String,
}

/// Checks that a customer base has every table a model's features need.
pub fn check_tables(spec: &FeatureSpec, base: &CustomerBase) -> Result<()> {
    let (need, have) = (spec.present, base.present());
    for (n, h, t) in [
        (need.logins, have.logins, "logins"),
        (need.tickets, have.tickets, "tickets"),
        (need.orders, have.orders, "orders"),
        (need.events, have.events, "events"),
    ] {
        if n && !h {
            return Err(Error::Data(format!(
                "the model was trained with the `{t}` table but {} has none",
                base.summary.directory
            )));
        }
    }
    Ok(())
}

/// Customers in the population at `t` and their feature matrix (row-major).
pub fn snapshot_features(
    base: &CustomerBase,
    spec: &FeatureSpec,
    definition: &crate::features::ChurnDefinition,
    t: Ts,
) -> (Vec<u32>, Vec<f64>) {
    let pop = population(base, definition, t);
    let rows: Vec<(u32, Ts)> = pop.iter().map(|&c| (c, t)).collect();
    let x = Bound::new(spec, base).matrix(&rows);
    (pop, x)
}

/// A frame of `customer_id`, optional leading columns, then one column per feature.
pub fn feature_frame(
    base: &CustomerBase,
    spec: &FeatureSpec,
    customers: &[u32],
    x: &[f64],
    leading: Vec<Column>,
    trailing: Vec<Column>,
) -> Result<DataFrame> {
    let n = customers.len();
    let w = spec.len();
    let mut cols = vec![Column::new(
        "customer_id".into(),
        customers
            .iter()
            .map(|&c| base.customers.ids[c as usize].as_str())
            .collect::<Vec<_>>(),
    )];
    cols.extend(leading);
    for (j, d) in spec.defs().iter().enumerate() {
        // Straight into a polars array (no intermediate Vec<Option<f64>> per column).
        let ca: Float64Chunked = (0..n)
            .map(|i| Some(x[i * w + j]).filter(|v| v.is_finite()))
            .collect();
        cols.push(ca.with_name(d.name.as_str().into()).into_column());
    }
    cols.extend(trailing);
    DataFrame::new(n, cols).map_err(|e| Error::polars("building the feature table", e))
}

/// One customer's score in a run.
struct Scored {
    probability: f64,
    health: f64,
    risk_tier: Tier,
    reasons: Vec<Reason>,
    segment: Option<&'static str>,
    /// Names of the early-warning rules that fired.
    warnings: Vec<String>,
    /// The tier the alert policy sees (raised by rules marked `alert`).
    alert_tier: Tier,
}

/// Options of a nightly run.
#[derive(Debug, Clone)]
pub struct BatchOptions {
    pub as_of: Ts,
    pub out: PathBuf,
    /// Alerts are also appended here as JSON lines.
    pub alerts_log: Option<PathBuf>,
    /// The SQLite outbox holding per-customer tier state and pending alerts.
    pub outbox: PathBuf,
    pub policy: AlertPolicy,
    /// Webhook URL and signing secret, when alerts go to a CRM.
    pub webhook: Option<(String, String)>,
}

/// The path of the run summary written beside a score file.
pub fn summary_path(out: &Path) -> PathBuf {
    let name = out
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    out.with_file_name(format!("{name}.summary.json"))
}

/// What a nightly run did.
#[derive(Debug, Clone, Serialize)]
pub struct BatchSummary {
    pub as_of: String,
    pub model: String,
    pub customers_scored: usize,
    pub tiers: HashMap<String, usize>,
    /// Change of each tier's count since the previous summary beside the output.
    pub tier_change: HashMap<String, i64>,
    pub score_quantiles: Vec<(f64, f64)>,
    pub score_psi: f64,
    pub feature_psi: Vec<(String, f64, &'static str)>,
    pub drift_warnings: Vec<String>,
    pub alerts_raised: usize,
    pub alerts_new: usize,
    pub alerts_delivered: usize,
    pub seconds: HashMap<String, f64>,
    pub output: String,
}

fn psi_level(p: f64) -> &'static str {
    if p >= 0.25 {
        "major shift"
    } else if p >= 0.1 {
        "moderate shift"
    } else {
        "stable"
    }
}

/// Scores every active customer of `base` as of `opts.as_of` with `scorer`, writes the
/// score file and its summary atomically, then records tiers and alerts in the outbox.
pub fn run(
    base: &CustomerBase,
    scorer: &Scorer,
    opts: &BatchOptions,
    stage: &dyn Fn(&str),
) -> Result<BatchSummary> {
    let art = &scorer.artifact;
    let spec = &art.spec;
    check_tables(spec, base)?;
    let mut seconds = HashMap::new();
    let t0 = Instant::now();
    stage("features");
    let (pop, x) = snapshot_features(base, spec, &art.definition, opts.as_of);
    seconds.insert("features".to_string(), t0.elapsed().as_secs_f64());
    let t1 = Instant::now();
    stage("scoring");
    let w = spec.len();
    let r_idx = spec.index_of("rfm_r");
    let f_idx = spec.index_of("rfm_f");
    let scored: Vec<Scored> = (0..pop.len())
        .into_par_iter()
        .with_min_len(1024)
        .map(|i| {
            let row = &x[i * w..(i + 1) * w];
            let s = scorer.score(row, REASONS_PER_CUSTOMER);
            let seg = match (r_idx, f_idx) {
                (Some(r), Some(f)) => Some(rfm_segment(row[r] as u8, row[f] as u8)),
                _ => None,
            };
            let alerting = crate::retention::alerting_tier(s.risk_tier, &s.early_warnings);
            Scored {
                probability: s.churn_probability,
                health: s.health_score,
                risk_tier: s.risk_tier,
                reasons: s.reasons,
                segment: seg,
                warnings: s.early_warnings.into_iter().map(|h| h.rule).collect(),
                alert_tier: alerting,
            }
        })
        .collect();
    seconds.insert("scoring".to_string(), t1.elapsed().as_secs_f64());

    let t2 = Instant::now();
    stage("writing");
    let n = pop.len();
    let as_of = fmt_ts(opts.as_of);
    let mut cols = vec![
        Column::new(
            "customer_id".into(),
            pop.iter()
                .map(|&c| base.customers.ids[c as usize].as_str())
                .collect::<Vec<_>>(),
        ),
        Column::new("as_of".into(), vec![as_of.as_str(); n]),
        Column::new(
            "churn_probability".into(),
            scored.iter().map(|s| s.probability).collect::<Vec<_>>(),
        ),
        Column::new(
            "health_score".into(),
            scored.iter().map(|s| s.health).collect::<Vec<_>>(),
        ),
        Column::new(
            "risk_tier".into(),
            scored
                .iter()
                .map(|s| s.risk_tier.as_str())
                .collect::<Vec<_>>(),
        ),
    ];
    for k in 0..REASONS_PER_CUSTOMER {
        cols.push(Column::new(
            format!("reason_{}", k + 1).into(),
            scored
                .iter()
                .map(|s| s.reasons.get(k).map(|r| r.feature.as_str()))
                .collect::<Vec<_>>(),
        ));
        cols.push(Column::new(
            format!("reason_{}_value", k + 1).into(),
            scored
                .iter()
                .map(|s| s.reasons.get(k).and_then(|r| r.value))
                .collect::<Vec<_>>(),
        ));
        cols.push(Column::new(
            format!("reason_{}_contribution", k + 1).into(),
            scored
                .iter()
                .map(|s| s.reasons.get(k).map(|r| r.contribution))
                .collect::<Vec<_>>(),
        ));
    }
    cols.push(Column::new(
        "rfm_segment".into(),
        scored.iter().map(|s| s.segment).collect::<Vec<_>>(),
    ));
    cols.push(Column::new(
        "early_warnings".into(),
        scored
            .iter()
            .map(|s| s.warnings.join(","))
            .collect::<Vec<_>>(),
    ));
    cols.push(Column::new(
        "model_name".into(),
        vec![scorer.name.as_str(); n],
    ));
    cols.push(Column::new(
        "model_version".into(),
        vec![scorer.version.as_str(); n],
    ));
    let mut df =
        DataFrame::new(n, cols).map_err(|e| Error::polars("building the score table", e))?;

    // Summary: tiers, their change, distribution and drift against training.
    let mut tiers: HashMap<String, usize> = HashMap::new();
    for t in [Tier::Low, Tier::Medium, Tier::High] {
        tiers.insert(
            t.as_str().into(),
            scored.iter().filter(|s| s.risk_tier == t).count(),
        );
    }
    let previous: Option<serde_json::Value> = std::fs::read(summary_path(&opts.out))
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok());
    let tier_change = tiers
        .iter()
        .map(|(k, &v)| {
            let before = previous
                .as_ref()
                .and_then(|p| p.pointer(&format!("/tiers/{k}")))
                .and_then(|x| x.as_u64())
                .unwrap_or(0) as i64;
            (k.clone(), v as i64 - before)
        })
        .collect();
    let mut probs: Vec<f64> = scored.iter().map(|s| s.probability).collect();
    let score_psi = art.score_bins.psi(&probs);
    probs.sort_by(f64::total_cmp);
    let score_quantiles = if probs.is_empty() {
        Vec::new()
    } else {
        [0.0, 0.1, 0.25, 0.5, 0.75, 0.9, 0.99, 1.0]
            .iter()
            .map(|&q| (q, probs[((probs.len() - 1) as f64 * q) as usize]))
            .collect()
    };
    let feature_psi: Vec<(String, f64, &'static str)> = spec
        .defs()
        .par_iter()
        .enumerate()
        .map(|(j, d)| {
            let col: Vec<f64> = (0..n).map(|i| x[i * w + j]).collect();
            let p = art.feature_bins.get(j).map_or(0.0, |b| b.psi(&col));
            (d.name.clone(), p, psi_level(p))
        })
        .collect();
    let mut drift_warnings: Vec<String> = feature_psi
        .iter()
        .filter(|f| f.1 >= 0.1)
        .map(|f| format!("feature {} PSI {:.3} ({})", f.0, f.1, f.2))
        .collect();
    if score_psi >= 0.1 {
        drift_warnings.push(format!(
            "score PSI {score_psi:.3} ({})",
            psi_level(score_psi)
        ));
    }
    let mut summary = BatchSummary {
        as_of: fmt_date(opts.as_of),
        model: format!("{} {}", scorer.name, scorer.version),
        customers_scored: n,
        tiers,
        tier_change,
        score_quantiles,
        score_psi,
        feature_psi,
        drift_warnings,
        alerts_raised: 0,
        alerts_new: 0,
        alerts_delivered: 0,
        seconds,
        output: opts.out.display().to_string(),
    };
    write::write_frame(&mut df, &opts.out)?;
    summary
        .seconds
        .insert("writing".into(), t2.elapsed().as_secs_f64());

    // Alerts: one transaction for every customer's tier; transitions become alerts.
    let t3 = Instant::now();
    stage("alerts");
    let outbox = Outbox::open(&opts.outbox)?;
    let ids: Vec<&str> = pop
        .iter()
        .map(|&c| base.customers.ids[c as usize].as_str())
        .collect();
    let observations: Vec<Observation> = (0..n)
        .map(|i| Observation {
            customer_id: ids[i],
            tier: scored[i].alert_tier,
            as_of: opts.as_of,
        })
        .collect();
    let model_ref = crate::alerts::ModelRef {
        name: scorer.name.clone(),
        version: scorer.version.clone(),
    };
    let rec = outbox.record_many(&opts.policy, &observations, |tr| {
        let i = tr.index;
        let row = &x[i * w..(i + 1) * w];
        let alert = tr
            .alert(
                model_ref.clone(),
                scored[i].probability,
                crate::alerts::Alert::SOURCE_BATCH,
            )
            .with_reasons(scored[i].reasons.iter().map(|r| json!(r)).collect())
            .with_summary({
                let mut summary = behaviour_summary(spec, row, scored[i].segment);
                summary["early_warnings"] = json!(scored[i].warnings);
                summary
            });
        alert
    })?;
    summary.alerts_raised = rec.raised;
    summary.alerts_new = rec.inserted;
    let mut sinks: Vec<std::sync::Arc<dyn crate::alerts::sink::AlertSink>> = Vec::new();
    if let Some(log) = &opts.alerts_log {
        sinks.push(std::sync::Arc::new(crate::alerts::sink::JsonlSink::new(
            log.clone(),
        )));
    }
    if let Some((url, secret)) = &opts.webhook {
        sinks.push(std::sync::Arc::new(crate::alerts::sink::WebhookSink::new(
            url,
            secret.as_bytes().to_vec(),
            std::time::Duration::from_secs(10),
        )?));
    }
    if !sinks.is_empty() {
        // Deliver through the same dispatcher the service uses; what is not delivered
        // now stays pending in the outbox for the next run or the service.
        let dispatcher = crate::alerts::dispatch::Dispatcher::new(
            outbox,
            sinks,
            crate::alerts::dispatch::RetryPolicy::default(),
        )?;
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| Error::io(&opts.outbox, e))?;
        let stats = rt.block_on(dispatcher.drain());
        summary.alerts_delivered = stats.delivered;
    }
    summary
        .seconds
        .insert("alerts".into(), t3.elapsed().as_secs_f64());
    let bytes = serde_json::to_vec_pretty(&summary).map_err(|e| Error::Data(e.to_string()))?;
    write::write_bytes_atomic(&summary_path(&opts.out), &bytes)?;
    Ok(summary)
}

/// What an account manager needs next to an alert: recent behaviour from the features.
pub fn behaviour_summary(
    spec: &FeatureSpec,
    row: &[f64],
    segment: Option<&str>,
) -> serde_json::Value {
    let mut m = serde_json::Map::new();
    for name in [
        "logins_30d",
        "days_since_last_login",
        "login_trend",
        "tickets_open",
        "tickets_open_urgent",
        "csat_mean_90d",
        "order_recency_days",
        "overdue_ratio",
        "revenue_365d",
        "tenure_days",
    ] {
        if let Some(j) = spec.index_of(name) {
            m.insert(
                name.into(),
                if row[j].is_finite() {
                    json!(row[j])
                } else {
                    serde_json::Value::Null
                },
            );
        }
    }
    if let Some(s) = segment {
        m.insert("rfm_segment".into(), json!(s));
    }
    serde_json::Value::Object(m)
}

/// Loads a score file into a map by customer id, for the service's lookups.
pub fn read_scores(path: &Path) -> Result<HashMap<String, ScoreRecord>> {
    let file = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
    let df = if crate::data::is_csv(path) {
        CsvReadOptions::default()
            .with_has_header(true)
            .into_reader_with_file_handle(file)
            .finish()
    } else {
        ParquetReader::new(file).finish()
    }
    .map_err(|e| Error::polars(format!("reading {}", path.display()), e))?;
    let ctx = |c: &str| format!("{}: column `{c}`", path.display());
    let s = |c: &str| -> Result<StringChunked> {
        let col = df.column(c).map_err(|e| Error::polars(ctx(c), e))?;
        let col = col
            .cast(&DataType::String)
            .map_err(|e| Error::polars(ctx(c), e))?;
        Ok(col.str().map_err(|e| Error::polars(ctx(c), e))?.clone())
    };
    let f = |c: &str| -> Result<Float64Chunked> {
        let col = df.column(c).map_err(|e| Error::polars(ctx(c), e))?;
        let col = col
            .cast(&DataType::Float64)
            .map_err(|e| Error::polars(ctx(c), e))?;
        Ok(col.f64().map_err(|e| Error::polars(ctx(c), e))?.clone())
    };
    let (ids, as_of, prob, health, tier, seg, mname, mver) = (
        s("customer_id")?,
        s("as_of")?,
        f("churn_probability")?,
        f("health_score")?,
        s("risk_tier")?,
        s("rfm_segment")?,
        s("model_name")?,
        s("model_version")?,
    );
    // Older score files have no early_warnings column.
    let warnings = if df
        .get_column_names()
        .iter()
        .any(|c| c.as_str() == "early_warnings")
    {
        Some(s("early_warnings")?)
    } else {
        None
    };
    let mut reasons = Vec::new();
    for k in 1..=REASONS_PER_CUSTOMER {
        reasons.push((
            s(&format!("reason_{k}"))?,
            f(&format!("reason_{k}_value"))?,
            f(&format!("reason_{k}_contribution"))?,
        ));
    }
    let mut out = HashMap::with_capacity(df.height());
    for i in 0..df.height() {
        let Some(id) = ids.get(i) else { continue };
        let tier = match tier.get(i) {
            Some("high") => Tier::High,
            Some("medium") => Tier::Medium,
            _ => Tier::Low,
        };
        out.insert(
            id.to_string(),
            ScoreRecord {
                customer_id: id.to_string(),
                as_of: as_of.get(i).unwrap_or_default().to_string(),
                churn_probability: prob.get(i).unwrap_or(f64::NAN),
                health_score: health.get(i).unwrap_or(f64::NAN),
                risk_tier: tier,
                reasons: reasons
                    .iter()
                    .filter_map(|(n, v, c)| {
                        Some(Reason {
                            feature: n.get(i)?.to_string(),
                            value: v.get(i),
                            contribution: c.get(i)?,
                        })
                    })
                    .collect(),
                rfm_segment: seg.get(i).map(str::to_string),
                early_warnings: warnings
                    .as_ref()
                    .and_then(|w| w.get(i))
                    .map(|w| {
                        w.split(',')
                            .filter(|x| !x.is_empty())
                            .map(String::from)
                            .collect()
                    })
                    .unwrap_or_default(),
                model_name: mname.get(i).unwrap_or_default().to_string(),
                model_version: mver.get(i).unwrap_or_default().to_string(),
            },
        );
    }
    Ok(out)
}

/// Features of one snapshot for `churnguard features --as-of`.
pub fn snapshot_frame(
    base: &CustomerBase,
    spec: &FeatureSpec,
    definition: &crate::features::ChurnDefinition,
    t: Ts,
) -> Result<DataFrame> {
    let (pop, x) = snapshot_features(base, spec, definition, t);
    feature_frame(base, spec, &pop, &x, Vec::new(), Vec::new())
}

/// Margins of the scorer for a matrix; the benchmark and tests compare paths with it.
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
