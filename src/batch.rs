//! The nightly run: customer base -> features as of a date -> scores -> an atomically
//! written score file, a run summary with drift, and alerts for customers who newly
//! reach the alerting tier (through the same outbox and policy as the service).
//!
//! Before any of it, [`guard`] checks the input (fresh tables, an `as_of` within the
//! data, a population that did not collapse since the previous night): a run that fails
//! a check is refused ([`Error::Refused`]) and recorded as such in the outbox's nights
//! table, and writes nothing else. Each successful night is recorded there too, in the
//! transaction of its alert state; the next night's `tier_change` compares with it.

mod from_scores;
pub mod guard;

use crate::alerts::{Alert, AlertPolicy, Night, NightFiles, Observation, Outbox, RecordSummary};
use crate::data::CustomerBase;
use crate::features::{check_tables, snapshot_features};
use crate::history::HistoryRow;
use crate::scores::{ScoreRow, REASONS_PER_CUSTOMER};
use crate::scoring::{RfmColumns, Score, Scorer, Tier, Trend30};
use crate::time::{fmt_date, Ts};
use crate::{Error, Result};
use rayon::prelude::*;
use serde::Serialize;
use std::collections::{BTreeMap, HashMap};
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::time::Instant;

pub use from_scores::{alerts_from_scores, ScoresAlertOptions, ScoresAlertSummary};
use guard::{check_data, check_population, Finding};
pub use guard::{DataExtent, InputGuard};

/// One customer's score in a run.
struct Scored {
    score: Score,
    segment: Option<&'static str>,
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
    /// The input checks, and whether their findings refuse the run or only warn.
    pub guard: InputGuard,
    /// Every feature's SHAP value in the score file (`shap_base`, `shap_<feature>`).
    pub contributions: bool,
    /// How failed alert deliveries are retried (a delivery still due later stays pending
    /// for the next run or the service).
    pub retry: crate::alerts::RetryPolicy,
    /// Where to write the nightly Prometheus series for node_exporter's textfile
    /// collector (`--metrics-textfile`), after the run whatever its outcome.
    pub metrics_textfile: Option<PathBuf>,
    /// The score history directory ([`crate::history`]): the night's partition joins
    /// the night's commit; the trend compares with the night about 30 days before.
    pub history: PathBuf,
    /// What the alerts carry besides the score (profile attributes, owner, due date).
    pub task: crate::alerts::TaskConfig,
    /// Seconds the base took to load, when the caller loaded it: the summary's
    /// `loading` stage.
    pub loading_seconds: Option<f64>,
}

pub use crate::scores::summary_path;

/// What a nightly run did: `<out>.summary.json`. Every number is a JSON number (an
/// undefined one, NaN or infinite, is `null`, never text), every entry of a list an
/// object with named fields, and map keys come in sorted order, so the file is read as
/// it is by a data team's tools.
#[derive(Debug, Clone, Serialize)]
pub struct BatchSummary {
    /// The night scored (`YYYY-MM-DD`).
    pub as_of: String,
    /// `<name> v<version>` of the model that scored it.
    pub model: String,
    pub customers_scored: usize,
    /// Customers per tier (`high`, `low`, `medium`).
    #[serde(serialize_with = "sorted")]
    pub tiers: HashMap<String, usize>,
    /// Change of each tier's count since the previous successful night recorded in the
    /// alert state (the latest one strictly before `as_of`, whatever its score file);
    /// the counts themselves when there is none.
    #[serde(serialize_with = "sorted")]
    pub tier_change: HashMap<String, i64>,
    /// The date of that previous night, if any.
    pub previous_night: Option<String>,
    /// What the input guards found and `--allow-stale` let through.
    pub input_warnings: Vec<String>,
    /// Quantiles of the churn probability over the customers scored.
    pub score_quantiles: Vec<ScoreQuantile>,
    pub score_psi: f64,
    pub feature_psi: Vec<FeaturePsi>,
    pub drift_warnings: Vec<String>,
    pub alerts_raised: usize,
    pub alerts_new: usize,
    pub alerts_delivered: usize,
    /// Wall-clock seconds per stage (`alerts`, `features`, `scoring`, `writing`, and
    /// `loading` when [`BatchOptions::loading_seconds`] is given).
    #[serde(serialize_with = "sorted")]
    pub seconds: HashMap<String, f64>,
    pub output: String,
}

/// One quantile of the night's churn probabilities.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct ScoreQuantile {
    /// 0 (the lowest probability) to 1 (the highest).
    pub quantile: f64,
    pub churn_probability: f64,
}

/// A map serialized with its keys in order: the same night gives the same file.
fn sorted<S: serde::Serializer, V: Serialize>(
    map: &HashMap<String, V>,
    s: S,
) -> std::result::Result<S::Ok, S::Error> {
    s.collect_map(map.iter().collect::<std::collections::BTreeMap<_, _>>())
}

/// One feature's drift against the model's reference night (the latest validation
/// snapshot).
#[derive(Debug, Clone, Serialize)]
pub struct FeaturePsi {
    pub feature: String,
    pub psi: f64,
    /// `stable`, `moderate shift`, `major shift`, or `by construction`.
    pub level: &'static str,
    /// The feature grows with time by construction (tenure): its shift is expected and
    /// raises no drift warning.
    pub by_construction: bool,
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
/// score file and its summary atomically, then records tiers, alerts and the night in
/// the outbox. Input that fails a [`guard`] check is refused with [`Error::Refused`]
/// (unless `opts.guard.allow_stale`) before anything but the refused night is written.
///
/// With [`BatchOptions::metrics_textfile`], the night's series are written there after
/// the run, whatever its outcome ([`write_metrics_textfile`]).
pub fn run(
    base: &CustomerBase,
    scorer: &Scorer,
    opts: &BatchOptions,
    stage: &dyn Fn(&str),
) -> Result<BatchSummary> {
    with_textfile(opts, run_night(base, scorer, opts, stage))
}

/// [`run`] on a base split into customer buckets ([`crate::data::buckets`]), for a
/// base larger than the memory budget: each bucket is loaded (with `load`), featured
/// and scored in turn, and the night is finished over the buckets' scores merged in the
/// whole base's customer order, with the same guards on the merged [`DataExtent`], the
/// same drift (bin counts summed over buckets) and the same alert stage, so it writes
/// the files and alert state [`run`] writes for the whole base. Memory holds one
/// bucket's base and the night's scores.
pub fn run_buckets(
    split: &crate::data::buckets::Split,
    load: &crate::data::LoadOptions,
    scorer: &Scorer,
    opts: &BatchOptions,
    stage: &dyn Fn(&str),
) -> Result<BatchSummary> {
    with_textfile(opts, run_night_buckets(split, load, scorer, opts, stage))
}

/// A night's `result`, after writing the metrics textfile when there is one.
fn with_textfile(opts: &BatchOptions, result: Result<BatchSummary>) -> Result<BatchSummary> {
    let Some(textfile) = &opts.metrics_textfile else {
        return result;
    };
    let written = write_metrics_textfile(textfile, opts, result.as_ref().ok());
    match (result, written) {
        (Ok(summary), Ok(())) => Ok(summary),
        (Ok(_), Err(e)) => Err(e),
        (Err(e), written) => {
            if let Err(w) = written {
                tracing::error!(path = %textfile.display(), error = %w.chain(),
                    "could not write the metrics textfile");
            }
            Err(e)
        }
    }
}

/// Scores the row-major feature matrix `x` (the model's feature order) on every core:
/// the probability, tier, reasons (and with `contributions` every SHAP value) and RFM
/// segment of each row.
fn score_matrix(scorer: &Scorer, x: &[f64], contributions: bool) -> Vec<Scored> {
    let w = scorer.artifact.spec.len();
    let rfm = RfmColumns::of(&scorer.artifact.spec);
    // Blocks of rows: the boosted trees explain a block tree by tree.
    x.par_chunks(SCORE_BLOCK * w.max(1))
        .flat_map_iter(|block| {
            scorer
                .score_block_with(block, REASONS_PER_CUSTOMER, contributions)
                .into_iter()
                .zip(block.chunks(w.max(1)))
                .map(|(score, row)| Scored {
                    score,
                    segment: rfm.segment(row),
                })
        })
        .collect()
}

/// The score file's table (see [`crate::scores::frame`]) of `customer_ids` with feature
/// rows `x`, row `i` scored as of `as_of(i)`.
fn score_table(
    scorer: &Scorer,
    customer_ids: &[&str],
    as_of: impl Fn(usize) -> Ts,
    x: &[f64],
    contributions: bool,
) -> Result<polars::prelude::DataFrame> {
    let scored = score_matrix(scorer, x, contributions);
    let rows: Vec<ScoreRow<'_>> = customer_ids
        .iter()
        .zip(&scored)
        .map(|(id, s)| ScoreRow {
            customer_id: id,
            score: &s.score,
            rfm_segment: s.segment,
            // Without the score history (Python, Spark buckets) the trend is unknown.
            trend: Trend30::default(),
        })
        .collect();
    let names: Vec<String> = scorer
        .artifact
        .spec
        .defs()
        .iter()
        .map(|d| d.name.clone())
        .collect();
    crate::scores::frame(
        as_of,
        &scorer.model_ref(),
        &rows,
        contributions.then_some(names.as_slice()),
    )
}

/// The night's scores of every active customer of `base` as of `as_of` as a table, the
/// rows and columns [`run`] writes to its score file, without writing anything or
/// touching an alert state (the Python package's `Model.score`). The input guards run
/// as in [`run`] (there is no previous night to compare the population with); a finding
/// refuses with [`Error::Refused`] unless `guard.allow_stale`.
pub fn score_frame(
    base: &CustomerBase,
    scorer: &Scorer,
    as_of: Ts,
    guard: &InputGuard,
    contributions: bool,
) -> Result<polars::prelude::DataFrame> {
    let spec = &scorer.artifact.spec;
    check_tables(spec, base)?;
    refuse_unless_allowed(check_data(base, as_of, guard), as_of, guard)?;
    let (pop, x) = snapshot_features(base, spec, &scorer.artifact.definition, as_of);
    refuse_unless_allowed(
        check_population(pop.len(), as_of, None, guard),
        as_of,
        guard,
    )?;
    let ids: Vec<&str> = pop
        .iter()
        .map(|&c| base.customers.ids[c as usize].as_str())
        .collect();
    score_table(scorer, &ids, |_| as_of, &x, contributions)
}

/// Scores precomputed feature rows (`customer_id`, the model's features by name in any
/// order, other columns ignored), each as of its own `as_of`: the score file's table,
/// as [`score_frame`] gives it for the same features (the Python package's
/// `Model.score_features`).
pub fn score_feature_rows(
    scorer: &Scorer,
    customer_ids: &[&str],
    as_of: &[Ts],
    x: &[f64],
    contributions: bool,
) -> Result<polars::prelude::DataFrame> {
    let w = scorer.artifact.spec.len();
    if customer_ids.len() != as_of.len() || x.len() != customer_ids.len() * w {
        return Err(Error::Input {
            field: "features".into(),
            message: format!(
                "{} customer ids, {} as_of values and {} feature values for {w} features per row do not make whole rows",
                customer_ids.len(),
                as_of.len(),
                x.len()
            ),
        });
    }
    score_table(scorer, customer_ids, |i| as_of[i], x, contributions)
}

/// The rows of a feature table (`churnguard features --as-of` or `--training-set`, or the
/// same columns from elsewhere) for [`score_feature_rows`]: customer ids, each row's
/// `as_of` (its `as_of` column, else `as_of` for every row) and the row-major matrix in
/// the model's feature order, a null (an undefined feature, as the table writes it) read
/// as NaN (as the nightly run scores it).
pub fn feature_rows(
    scorer: &Scorer,
    df: &polars::prelude::DataFrame,
    as_of: Option<Ts>,
) -> Result<(Vec<String>, Vec<Ts>, Vec<f64>)> {
    use polars::prelude::DataType;
    let bad = |field: &str, message: String| Error::Input {
        field: field.to_string(),
        message,
    };
    let found = || {
        df.get_column_names()
            .iter()
            .map(|c| c.to_string())
            .collect::<Vec<_>>()
            .join(", ")
    };
    let column = |name: &str| {
        df.column(name)
            .map(|c| c.as_materialized_series().clone())
            .map_err(|_| {
                bad(
                    name,
                    format!(
                        "features: missing column `{name}` (columns found: {})",
                        found()
                    ),
                )
            })
    };
    let polars = |what: &str| {
        let what = what.to_string();
        move |e| Error::polars(format!("features: column `{what}`"), e)
    };
    let n = df.height();
    let ids = column("customer_id")?
        .cast(&DataType::String)
        .map_err(polars("customer_id"))?;
    let ids: Vec<String> = ids
        .str()
        .map_err(polars("customer_id"))?
        .iter()
        .enumerate()
        .map(|(i, v)| {
            v.map(str::to_string).ok_or_else(|| {
                bad(
                    "customer_id",
                    format!("features: row {}, column `customer_id`: empty", i + 1),
                )
            })
        })
        .collect::<Result<_>>()?;
    let at: Vec<Ts> = match (df.column("as_of").is_ok(), as_of) {
        (_, Some(t)) => vec![t; n],
        (true, None) => {
            let s = column("as_of")?;
            let seconds = crate::data::datetime_seconds(&s, |v| v).ok_or_else(|| {
                bad(
                    "as_of",
                    format!("features: column `as_of` is {}, not a timestamp", s.dtype()),
                )
            })?;
            seconds
                .map_err(polars("as_of"))?
                .into_iter()
                .enumerate()
                .map(|(i, v)| {
                    v.ok_or_else(|| {
                        bad(
                            "as_of",
                            format!("features: row {}, column `as_of`: empty", i + 1),
                        )
                    })
                })
                .collect::<Result<_>>()?
        }
        (false, None) => {
            return Err(bad(
                "as_of",
                "features: no `as_of` column; give as_of".to_string(),
            ))
        }
    };
    let spec = &scorer.artifact.spec;
    let w = spec.len();
    let mut x = vec![f64::NAN; n * w];
    for (j, d) in spec.defs().iter().enumerate() {
        let s = column(&d.name)?;
        if !s.dtype().is_primitive_numeric() && !s.dtype().is_null() {
            return Err(bad(
                &d.name,
                format!(
                    "features: column `{}` is {}, not numeric",
                    d.name,
                    s.dtype()
                ),
            ));
        }
        let s = s.cast(&DataType::Float64).map_err(polars(&d.name))?;
        for (i, v) in s.f64().map_err(polars(&d.name))?.iter().enumerate() {
            x[i * w + j] = v.unwrap_or(f64::NAN);
        }
    }
    Ok((ids, at, x))
}

/// The data guards of [`score_frame`] on the [`DataExtent`] of a base scored in parts
/// (a Spark job's buckets, merged): [`Error::Refused`] for what they find unless
/// `guard.allow_stale`, else what they found, as warnings.
pub fn check_extent(extent: &DataExtent, as_of: Ts, guard: &InputGuard) -> Result<Vec<String>> {
    let found = guard::check_extent(extent, as_of, guard);
    let warnings = found.iter().map(|f| f.message.clone()).collect();
    refuse_unless_allowed(found, as_of, guard)?;
    Ok(warnings)
}

/// [`Error::Refused`] for what the guards `found`, unless `guard.allow_stale`.
fn refuse_unless_allowed(found: Vec<Finding>, as_of: Ts, guard: &InputGuard) -> Result<()> {
    match found.first() {
        Some(first) if !guard.allow_stale => Err(Error::Refused {
            reason: first.reason,
            as_of: fmt_date(as_of),
            message: joined(&found).unwrap_or_default(),
            recorded: false,
        }),
        _ => Ok(()),
    }
}

/// Writes the nightly series ([`crate::nightly_metrics::render`]) to `path`, the same
/// lines `serve --scores <out> --outbox <outbox>` shows on `/metrics`: what the outbox
/// records of the nights (a refusal included) and the run summary, `summary` when the
/// run succeeded, else the one beside `--out` from an earlier night, if any. Written
/// even when only part is known; nothing is written when neither can be read.
pub fn write_metrics_textfile(
    path: &Path,
    opts: &BatchOptions,
    summary: Option<&BatchSummary>,
) -> Result<()> {
    use crate::nightly_metrics::{self, SummaryMetrics};
    let health = Outbox::open(&opts.outbox).and_then(|o| o.nightly_health());
    let summary = match summary {
        // Through the summary's JSON, as the service reads it.
        Some(s) => serde_json::to_vec(s)
            .map_err(|e| Error::Data(e.to_string()))
            .and_then(|b| SummaryMetrics::from_json(&b).map_err(|e| Error::Data(e.to_string()))),
        None => SummaryMetrics::read(&summary_path(&opts.out)),
    };
    if health.is_err() && summary.is_err() {
        return health.map(|_| ());
    }
    let text = nightly_metrics::render(health.as_ref().ok(), summary.as_ref().ok());
    nightly_metrics::write_textfile(path, &text)
}

fn run_night(
    base: &CustomerBase,
    scorer: &Scorer,
    opts: &BatchOptions,
    stage: &dyn Fn(&str),
) -> Result<BatchSummary> {
    // A score file name that cannot be written is refused before the night's work.
    crate::data::write::output_format(&opts.out)?;
    let art = &scorer.artifact;
    let spec = &art.spec;
    check_tables(spec, base)?;
    let mut night = open_night(scorer, opts, stage)?;
    let found = check_data(base, opts.as_of, &opts.guard);
    admit(
        &night.outbox,
        opts,
        &night.model,
        0,
        found,
        &mut night.warnings,
    )?;
    let t0 = Instant::now();
    stage("features");
    let (pop, x) = snapshot_features(base, spec, &art.definition, opts.as_of);
    night
        .seconds
        .insert("features".to_string(), t0.elapsed().as_secs_f64());
    let previous = admit_population(&mut night, opts, pop.len())?;
    let t1 = Instant::now();
    stage("scoring");
    let w = spec.len();
    let scored = score_matrix(scorer, &x, opts.contributions);
    night
        .seconds
        .insert("scoring".to_string(), t1.elapsed().as_secs_f64());
    let scores = NightScores {
        ids: pop
            .iter()
            .map(|&c| base.customers.ids[c as usize].as_str())
            .collect(),
        feature_counts: feature_counts(scorer, &x, pop.len()),
        scored,
    };
    let alert_input = |i: usize| {
        (
            x[i * w..(i + 1) * w].to_vec(),
            crate::alerts::task::of_customer(base, pop[i] as usize, opts.as_of, &opts.task),
        )
    };
    finish_night(scorer, opts, stage, night, previous, scores, &alert_input)
}

/// One bucket's scored customer, keyed by its row in the whole `customers` table.
struct BucketRow {
    key: u64,
    id: String,
    scored: Scored,
}

fn run_night_buckets(
    split: &crate::data::buckets::Split,
    load: &crate::data::LoadOptions,
    scorer: &Scorer,
    opts: &BatchOptions,
    stage: &dyn Fn(&str),
) -> Result<BatchSummary> {
    crate::data::write::output_format(&opts.out)?;
    let art = &scorer.artifact;
    let spec = &art.spec;
    let w = spec.len();
    let mut rows: Vec<BucketRow> = Vec::new();
    // The feature row and task of every customer at or above the alert tier: the only
    // ones a transition can alert (`AlertPolicy::decide`).
    let mut alerting: HashMap<u64, (Vec<f64>, crate::alerts::Task)> = HashMap::new();
    let mut counts: Vec<Option<Vec<u64>>> = vec![None; w];
    let mut extent: Option<DataExtent> = None;
    let (mut loading, mut features, mut scoring) = (0.0, 0.0, 0.0);
    for b in 0..split.buckets() {
        stage(&format!("bucket {}/{}", b + 1, split.buckets()));
        let t = Instant::now();
        let dir = split.dir(b);
        let base = crate::data::load(&dir, load)?;
        let keys = split.customer_rows(b, &base)?;
        loading += t.elapsed().as_secs_f64();
        check_tables(spec, &base)?;
        let e = DataExtent::of(&base);
        extent = Some(match extent {
            Some(all) => all.merge(&e),
            None => e,
        });
        let t = Instant::now();
        let (pop, x) = snapshot_features(&base, spec, &art.definition, opts.as_of);
        features += t.elapsed().as_secs_f64();
        let t = Instant::now();
        let scored = score_matrix(scorer, &x, opts.contributions);
        scoring += t.elapsed().as_secs_f64();
        for (all, part) in counts.iter_mut().zip(feature_counts(scorer, &x, pop.len())) {
            if let Some(part) = part {
                let all = all.get_or_insert_with(|| vec![0; part.len()]);
                all.iter_mut().zip(&part).for_each(|(a, p)| *a += p);
            }
        }
        for (i, (&c, s)) in pop.iter().zip(scored).enumerate() {
            let key = keys[c as usize];
            if s.score.alerting_tier() >= opts.policy.alert_tier {
                let task =
                    crate::alerts::task::of_customer(&base, c as usize, opts.as_of, &opts.task);
                alerting.insert(key, (x[i * w..(i + 1) * w].to_vec(), task));
            }
            rows.push(BucketRow {
                key,
                id: base.customers.ids[c as usize].clone(),
                scored: s,
            });
        }
    }
    // In the whole base's order, in place (a second copy of the scores would double
    // the memory they take).
    let mut order: Vec<usize> = (0..rows.len()).collect();
    order.sort_unstable_by_key(|&i| rows[i].key);
    gather(&mut rows, &order);
    let mut night = open_night(scorer, opts, stage)?;
    night.seconds.insert(
        "loading".to_string(),
        opts.loading_seconds.unwrap_or(0.0) + loading,
    );
    night.seconds.insert("features".to_string(), features);
    night.seconds.insert("scoring".to_string(), scoring);
    let found = guard::check_extent(&extent.unwrap_or_default(), opts.as_of, &opts.guard);
    admit(
        &night.outbox,
        opts,
        &night.model,
        0,
        found,
        &mut night.warnings,
    )?;
    let previous = admit_population(&mut night, opts, rows.len())?;
    let keys: Vec<u64> = rows.iter().map(|r| r.key).collect();
    let mut ids: Vec<String> = Vec::with_capacity(rows.len());
    let mut scored: Vec<Scored> = Vec::with_capacity(rows.len());
    // Moved out from the back, the rows' buffer shrinking as the others grow.
    while let Some(r) = rows.pop() {
        ids.push(r.id);
        scored.push(r.scored);
        if rows.len() * 2 < rows.capacity() {
            rows.shrink_to_fit();
        }
    }
    ids.reverse();
    scored.reverse();
    let scores = NightScores {
        ids: ids.iter().map(String::as_str).collect(),
        scored,
        feature_counts: counts,
    };
    let alert_input = |i: usize| {
        alerting
            .get(&keys[i])
            .cloned()
            .expect("a transition is at or above the alert tier")
    };
    finish_night(scorer, opts, stage, night, previous, scores, &alert_input)
}

/// Reorders `v` in place so that `v[i]` becomes the old `v[order[i]]` (`order`: a
/// permutation), following each cycle with swaps.
fn gather<T>(v: &mut [T], order: &[usize]) {
    let mut done = vec![false; v.len()];
    for start in 0..v.len() {
        if done[start] {
            continue;
        }
        let mut i = start;
        while order[i] != start {
            v.swap(i, order[i]);
            done[i] = true;
            i = order[i];
        }
        done[i] = true;
    }
}

/// What every night opens before its checks: the outbox (finishing what a killed run
/// left to rename), the history, the stage timings and the warnings let through.
struct OpenNight {
    outbox: Outbox,
    history: crate::history::History,
    model: String,
    seconds: HashMap<String, f64>,
    warnings: Vec<Finding>,
}

fn open_night(scorer: &Scorer, opts: &BatchOptions, stage: &dyn Fn(&str)) -> Result<OpenNight> {
    let mut seconds = HashMap::new();
    if let Some(s) = opts.loading_seconds {
        seconds.insert("loading".to_string(), s);
    }
    let model = format!("{} {}", scorer.name, scorer.version);
    stage("checking");
    let outbox = Outbox::open(&opts.outbox)?;
    // A run killed between its commit and its renames left them to do: finish them
    // before anything compares with the previous night; then drop what a run killed
    // before its commit left beside the outputs.
    outbox.finish_night_files()?;
    let history = crate::history::History::new(&opts.history);
    for path in [
        opts.out.clone(),
        summary_path(&opts.out),
        history.partition(opts.as_of),
    ] {
        crate::fsutil::remove_stale_temps(&path, STALE_TEMPORARIES);
    }
    Ok(OpenNight {
        outbox,
        history,
        model,
        seconds,
        warnings: Vec::new(),
    })
}

/// The population guard on a night of `customers`: the previous night it compared with.
fn admit_population(
    night: &mut OpenNight,
    opts: &BatchOptions,
    customers: usize,
) -> Result<Option<Night>> {
    let previous = night.outbox.previous_night(opts.as_of)?;
    let found = check_population(customers, opts.as_of, previous.as_ref(), &opts.guard);
    admit(
        &night.outbox,
        opts,
        &night.model,
        customers,
        found,
        &mut night.warnings,
    )?;
    Ok(previous)
}

/// A night's scores, from one base or from its buckets, in the base's customer order.
struct NightScores<'a> {
    ids: Vec<&'a str>,
    scored: Vec<Scored>,
    /// Per feature, the [`crate::metrics::Bins::counts`] of its values over the customers
    /// scored in the artifact's reference bins (`None`: the feature has none): summed
    /// over buckets, they give the whole night's PSI.
    feature_counts: Vec<Option<Vec<u64>>>,
}

/// [`NightScores::feature_counts`] of the `n` rows of the feature matrix `x`.
fn feature_counts(scorer: &Scorer, x: &[f64], n: usize) -> Vec<Option<Vec<u64>>> {
    let art = &scorer.artifact;
    let w = art.spec.len();
    (0..w)
        .into_par_iter()
        .map(|j| {
            art.feature_bins
                .get(j)
                .map(|b| b.counts((0..n).map(|i| x[i * w + j])))
        })
        .collect()
}

/// The feature row and the task of the night's customer `i`, for its alert.
type AlertInput<'a> = dyn Fn(usize) -> (Vec<f64>, crate::alerts::Task) + 'a;

/// The rest of a night once scored: the summary, the staged score file and history
/// partition, and the alert stage that commits them.
fn finish_night(
    scorer: &Scorer,
    opts: &BatchOptions,
    stage: &dyn Fn(&str),
    night_open: OpenNight,
    previous: Option<Night>,
    scores: NightScores<'_>,
    alert_input: &AlertInput<'_>,
) -> Result<BatchSummary> {
    let OpenNight {
        outbox,
        history,
        model,
        seconds,
        warnings,
    } = night_open;
    let NightScores {
        ids,
        scored,
        feature_counts,
    } = scores;
    let art = &scorer.artifact;
    let spec = &art.spec;
    let t2 = Instant::now();
    stage("writing");
    let n = scored.len();

    // Summary: tiers, their change, distribution and drift against the reference night.
    let tiers = tier_counts(scored.iter().map(|s| s.score.risk_tier));
    let tier_change = tiers
        .iter()
        .map(|(k, &v)| {
            let before = previous
                .as_ref()
                .and_then(|p| p.tiers.get(k))
                .map_or(0, |&b| b as i64);
            (k.clone(), v as i64 - before)
        })
        .collect();
    let mut probs: Vec<f64> = scored.iter().map(|s| s.score.churn_probability).collect();
    let score_psi = art.score_bins.psi(&probs);
    probs.sort_by(f64::total_cmp);
    let score_quantiles = if probs.is_empty() {
        Vec::new()
    } else {
        [0.0, 0.1, 0.25, 0.5, 0.75, 0.9, 0.99, 1.0]
            .iter()
            .map(|&quantile| ScoreQuantile {
                quantile,
                churn_probability: probs[((probs.len() - 1) as f64 * quantile) as usize],
            })
            .collect()
    };
    let feature_psi: Vec<FeaturePsi> = spec
        .defs()
        .par_iter()
        .enumerate()
        .map(|(j, d)| {
            let p = match (art.feature_bins.get(j), &feature_counts[j]) {
                (Some(b), Some(counts)) => b.psi_of_counts(counts, n),
                _ => 0.0,
            };
            FeaturePsi {
                feature: d.name.clone(),
                psi: p,
                level: if d.by_construction {
                    "by construction"
                } else {
                    psi_level(p)
                },
                by_construction: d.by_construction,
            }
        })
        .collect();
    let mut drift_warnings: Vec<String> = feature_psi
        .iter()
        .filter(|f| f.psi >= 0.1 && !f.by_construction)
        .map(|f| format!("feature {} PSI {:.3} ({})", f.feature, f.psi, f.level))
        .collect();
    if score_psi >= 0.1 {
        drift_warnings.push(format!(
            "score PSI {score_psi:.3} ({})",
            psi_level(score_psi)
        ));
    }
    let mut summary = BatchSummary {
        as_of: fmt_date(opts.as_of),
        model: model.clone(),
        customers_scored: n,
        tiers,
        tier_change,
        previous_night: previous.as_ref().map(|p| fmt_date(p.as_of)),
        input_warnings: warnings.iter().map(|f| f.message.clone()).collect(),
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
    // The 30-day trend: two columns of the one night about 30 days back, dropped once
    // compared.
    let trends: Vec<Trend30> = {
        let before = history.trend_base(opts.as_of)?;
        ids.iter()
            .zip(&scored)
            .map(|(id, s)| Trend30::of(s.score.churn_probability, before.get(*id).copied()))
            .collect()
    };
    let rows: Vec<ScoreRow<'_>> = ids
        .iter()
        .zip(&scored)
        .zip(&trends)
        .map(|((id, s), &trend)| ScoreRow {
            customer_id: id,
            score: &s.score,
            rfm_segment: s.segment,
            trend,
        })
        .collect();
    let night_history: Vec<HistoryRow<'_>> = ids
        .iter()
        .zip(&scored)
        .map(|(id, s)| HistoryRow {
            customer_id: id,
            churn_probability: s.score.churn_probability,
            risk_tier: s.score.risk_tier,
        })
        .collect();
    // The night's history partition, staged like the score file and renamed with it.
    let mut staged_history = Some(history.stage(opts.as_of, &night_history)?);
    drop(night_history);
    // Complete and fsynced, but in place only once the night commits (below).
    let names: Vec<String> = spec.defs().iter().map(|d| d.name.clone()).collect();
    let mut staged = Some(crate::scores::stage(
        &opts.out,
        opts.as_of,
        &scorer.model_ref(),
        &rows,
        opts.contributions.then_some(names.as_slice()),
    )?);
    summary
        .seconds
        .insert("writing".into(), t2.elapsed().as_secs_f64());

    // Alerts: one transaction for every customer's tier; transitions become alerts.
    let t3 = Instant::now();
    stage("alerts");
    let observations: Vec<Observation> = (0..n)
        .map(|i| Observation {
            customer_id: ids[i],
            tier: scored[i].score.alerting_tier(),
            as_of: opts.as_of,
        })
        .collect();
    let night = scored_night(opts.as_of, model, &summary.tiers, &warnings);
    let build = |tr: &crate::alerts::Transition<'_>| {
        let i = tr.index;
        let (row, task) = alert_input(i);
        night_alert(
            tr,
            scorer,
            &scored[i].score,
            &row,
            task,
            trends[i],
            &opts.task,
        )
    };
    // The night commits as one: its customers' tiers and alerts, its `nights` row and
    // its two files (staged complete inside the transaction, renamed right after it).
    let summary_file = summary_path(&opts.out);
    let mut kept: Vec<PathBuf> = Vec::new();
    let mut stage_files = |rec: &RecordSummary| -> Result<NightFiles> {
        summary.alerts_raised = rec.raised;
        summary.alerts_new = rec.inserted;
        let bytes = serde_json::to_vec_pretty(&summary).map_err(|e| Error::Data(e.to_string()))?;
        let staged_summary = crate::fsutil::stage_with(&summary_file, |f| {
            f.write_all(&bytes).map_err(|e| Error::io(&summary_file, e))
        })?;
        let scores = staged
            .take()
            .ok_or_else(|| Error::Outbox("the night's files were staged twice".into()))?
            .keep()?;
        kept.push(scores.0.clone());
        let summary_kept = staged_summary.keep()?;
        kept.push(summary_kept.0.clone());
        let history_kept = staged_history
            .take()
            .ok_or_else(|| Error::Outbox("the night's files were staged twice".into()))?
            .keep()?;
        kept.push(history_kept.0.clone());
        Ok(vec![scores, summary_kept, history_kept])
    };
    let sinks = Sinks {
        alerts_log: opts.alerts_log.as_deref(),
        webhook: opts.webhook.as_ref(),
        retry: opts.retry,
    };
    let recorded = alert_night(
        outbox,
        &opts.policy,
        &observations,
        build,
        &night,
        &mut stage_files,
        &sinks,
    );
    let delivered = match recorded {
        Ok((_, delivered)) => delivered,
        Err(AlertStageError::NotRecorded(e)) => {
            // Nothing committed: the staged files must not outlive the run.
            for tmp in &kept {
                let _ = std::fs::remove_file(tmp);
            }
            // A partition directory this run created stays no longer than its temporary
            // (removed here if the commit failed before the files were kept).
            drop(staged_history.take());
            if let Some(dir) = history.partition(opts.as_of).parent() {
                let _ = std::fs::remove_dir(dir);
            }
            return Err(e);
        }
        Err(AlertStageError::Recorded(e)) => return Err(e),
    };
    summary.alerts_delivered = delivered;
    summary
        .seconds
        .insert("alerts".into(), t3.elapsed().as_secs_f64());
    // The same night's summary, now with its deliveries and timing.
    let bytes = serde_json::to_vec_pretty(&summary).map_err(|e| Error::Data(e.to_string()))?;
    crate::fsutil::write_atomic(&summary_file, &bytes)?;
    Ok(summary)
}

/// Customers per tier (`high`, `low`, `medium`), every tier present.
fn tier_counts(tiers: impl Iterator<Item = Tier>) -> HashMap<String, usize> {
    let mut counts: HashMap<String, usize> =
        Tier::ALL.iter().map(|t| (t.as_str().into(), 0)).collect();
    for t in tiers {
        *counts.entry(t.as_str().into()).or_default() += 1;
    }
    counts
}

/// The `nights` row of a night that scored (`warnings`: what `--allow-stale` let
/// through).
fn scored_night(
    as_of: Ts,
    model: String,
    tiers: &HashMap<String, usize>,
    warnings: &[Finding],
) -> Night {
    Night {
        as_of,
        finished_at: 0,
        model,
        customers: tiers.values().sum(),
        tiers: tiers.iter().map(|(k, &v)| (k.clone(), v)).collect(),
        refused: false,
        reason: warnings.first().map(|f| f.reason),
        detail: joined(warnings),
    }
}

/// The alert of one customer's transition in a night, in one shape whoever built the
/// score (this run, or a score file): [`Alert::for_score`] with the task and trend.
fn night_alert(
    tr: &crate::alerts::Transition<'_>,
    scorer: &Scorer,
    score: &Score,
    row: &[f64],
    task: crate::alerts::Task,
    trend: Trend30,
    cfg: &crate::alerts::TaskConfig,
) -> Alert {
    Alert::for_score(tr, scorer, score, row, Alert::SOURCE_BATCH).with_task(
        task,
        trend,
        cfg.due_days,
    )
}

/// Where a night's alerts go besides the outbox.
struct Sinks<'a> {
    /// `--alerts`: JSON lines.
    alerts_log: Option<&'a Path>,
    /// `--alert-webhook` and its signing secret.
    webhook: Option<&'a (String, String)>,
    retry: crate::alerts::RetryPolicy,
}

/// How [`alert_night`] failed: before its transaction committed (nothing of the night
/// is recorded) or after (the night is recorded; a delivery step failed).
enum AlertStageError {
    NotRecorded(Error),
    Recorded(Error),
}

/// The alert stage of a night, the one implementation `score` and `alerts --scores`
/// share: every customer's alerting tier, the transitions' alerts (by `build`) and the
/// night's row in one outbox transaction with the files `stage_files` stages; then the
/// files renamed into place and the outbox drained through the sinks by the service's
/// dispatcher (what is not delivered now stays pending for the next run or the
/// service). Returns what was recorded and how many deliveries succeeded.
fn alert_night<F>(
    outbox: Outbox,
    policy: &AlertPolicy,
    observations: &[Observation<'_>],
    build: F,
    night: &Night,
    stage_files: &mut (dyn FnMut(&RecordSummary) -> Result<NightFiles> + '_),
    sinks: &Sinks<'_>,
) -> std::result::Result<(RecordSummary, usize), AlertStageError>
where
    F: FnMut(&crate::alerts::Transition<'_>) -> Alert,
{
    let recorded = outbox
        .record_night(policy, observations, build, night, stage_files)
        .map_err(AlertStageError::NotRecorded)?;
    let delivered = deliver(outbox, sinks).map_err(AlertStageError::Recorded)?;
    Ok((recorded, delivered))
}

/// [`alert_night`] after its commit: the night's files into place, then the sinks.
fn deliver(outbox: Outbox, sinks: &Sinks<'_>) -> Result<usize> {
    outbox.finish_night_files()?;
    let mut all: Vec<std::sync::Arc<dyn crate::alerts::sink::AlertSink>> = Vec::new();
    if let Some(log) = sinks.alerts_log {
        all.push(std::sync::Arc::new(crate::alerts::sink::JsonlSink::new(
            log.to_path_buf(),
        )));
    }
    if let Some((url, secret)) = sinks.webhook {
        all.push(std::sync::Arc::new(crate::alerts::sink::WebhookSink::new(
            url,
            secret.as_bytes().to_vec(),
            std::time::Duration::from_secs(10),
        )?));
    }
    if all.is_empty() {
        return Ok(0);
    }
    let path = outbox.path().to_path_buf();
    // Deliver through the same dispatcher the service uses.
    let dispatcher = crate::alerts::dispatch::Dispatcher::new(outbox, all, sinks.retry)?;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| Error::io(&path, e))?;
    Ok(rt.block_on(dispatcher.drain()).delivered)
}

/// Customers scored together: 256 rows of a 300-tree gbdt keep one tree's TreeSHAP
/// tables (about 200 KiB) in cache while the block's rows use them.
const SCORE_BLOCK: usize = 256;

/// Temporary files of an output older than this are a killed run's leftovers (a run
/// writes its outputs in seconds; the same rule as the registry's).
const STALE_TEMPORARIES: std::time::Duration = std::time::Duration::from_secs(3600);

/// The findings in one sentence, `None` when there are none.
fn joined(found: &[Finding]) -> Option<String> {
    (!found.is_empty()).then(|| {
        found
            .iter()
            .map(|f| f.message.as_str())
            .collect::<Vec<_>>()
            .join("; ")
    })
}

/// Lets the run go on past what the guards `found`: with none, or with `--allow-stale`
/// (they become warnings, kept for the summary, which the caller prints, and the
/// night's record);
/// otherwise records the refused night (`customers` found so far) and refuses.
fn admit(
    outbox: &Outbox,
    opts: &BatchOptions,
    model: &str,
    customers: usize,
    found: Vec<Finding>,
    warnings: &mut Vec<Finding>,
) -> Result<()> {
    let Some(first) = found.first() else {
        return Ok(());
    };
    if opts.guard.allow_stale {
        warnings.extend(found);
        return Ok(());
    }
    let message = joined(&found).unwrap_or_default();
    outbox.record_refusal(&Night {
        as_of: opts.as_of,
        finished_at: 0,
        model: model.to_string(),
        customers,
        tiers: BTreeMap::new(),
        refused: true,
        reason: Some(first.reason),
        detail: Some(message.clone()),
    })?;
    Err(Error::Refused {
        reason: first.reason,
        as_of: fmt_date(opts.as_of),
        message,
        recorded: true,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gather_reorders_in_place_by_a_permutation() {
        let order = [3, 0, 4, 1, 2, 6, 5];
        let mut v: Vec<char> = "abcdefg".chars().collect();
        let expected: Vec<char> = order.iter().map(|&i| v[i]).collect();
        gather(&mut v, &order);
        assert_eq!(v, expected);
    }

    #[test]
    fn the_summary_json_has_numbers_named_fields_and_sorted_keys() {
        let map = |xs: &[(&str, f64)]| -> HashMap<String, f64> {
            xs.iter().map(|&(k, v)| (k.to_string(), v)).collect()
        };
        let counts = |xs: &[(&str, usize)]| -> HashMap<String, usize> {
            xs.iter().map(|&(k, v)| (k.to_string(), v)).collect()
        };
        let summary = BatchSummary {
            as_of: "2024-06-01".into(),
            model: "churn v3".into(),
            customers_scored: 10,
            tiers: counts(&[("medium", 3), ("low", 6), ("high", 1)]),
            tier_change: [("low", -2), ("high", 1), ("medium", 1)]
                .map(|(k, v)| (k.to_string(), v))
                .into(),
            previous_night: Some("2024-05-31".into()),
            input_warnings: Vec::new(),
            score_quantiles: vec![
                ScoreQuantile {
                    quantile: 0.0,
                    churn_probability: 0.01,
                },
                ScoreQuantile {
                    quantile: 1.0,
                    churn_probability: 0.9,
                },
            ],
            score_psi: f64::NAN,
            feature_psi: vec![FeaturePsi {
                feature: "logins_30d".into(),
                psi: f64::INFINITY,
                level: "major shift",
                by_construction: false,
            }],
            drift_warnings: Vec::new(),
            alerts_raised: 1,
            alerts_new: 1,
            alerts_delivered: 0,
            seconds: map(&[("writing", 0.5), ("features", 1.25), ("scoring", 0.25)]),
            output: "scores.parquet".into(),
        };
        let text = serde_json::to_string(&summary).unwrap();
        let v: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(
            v["score_quantiles"],
            serde_json::json!([
                {"quantile": 0.0, "churn_probability": 0.01},
                {"quantile": 1.0, "churn_probability": 0.9}
            ])
        );
        assert!(v["score_psi"].is_null(), "{text}");
        assert!(v["feature_psi"][0]["psi"].is_null(), "{text}");
        assert_eq!(v["tiers"]["high"], 1);
        assert_eq!(v["tier_change"]["low"], -2);
        assert_eq!(v["seconds"]["features"], 1.25);
        // Keys in order, whatever the hash map's: the same night writes the same file.
        assert!(
            text.contains(r#""tiers":{"high":1,"low":6,"medium":3}"#),
            "{text}"
        );
        assert!(
            text.contains(r#""seconds":{"features":1.25,"scoring":0.25,"writing":0.5}"#),
            "{text}"
        );
    }
}
