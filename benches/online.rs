//! Micro-benchmarks of the per-customer paths (divan).
//!
//!   cargo bench --bench online                 # everything
//!   cargo bench --bench online -- online       # only the online feature path
//!
//! * `online_*`: the service's online path for one typical activity payload
//!   (60 logins, 3 tickets, 12 orders, 80 events, the `activity` form of
//!   `POST /v1/score`): JSON text -> `serde_json::Value` -> `OwnedActivity::parse`
//!   -> `features`. Target (issue #3): under 50 µs per customer end to end.
//! * `score_row` / `probability_row`: scoring one feature row with each model kind
//!   (logistic, tree, forest, gbdt) fitted on a small generated base:
//!   `Scorer::score` (probability, health, tier, top-3 reasons from exact SHAP values)
//!   and the bare probability; `score_block_256`: `Scorer::score_block` of 256 rows,
//!   as the nightly batch scores.
//!
//! * `metrics_observe_request`: what the service's metrics middleware records for one
//!   answered request (a counter and a latency histogram), on 1 and 2 threads at once;
//!   `metrics_observe_scores`: the churn probabilities of one answer (1 or 100).
//! * `fmt_ts_*`: RFC 3339 formatting of one timestamp (every service answer carries one):
//!   churnguard's `time::fmt_ts` against chrono's `to_rfc3339_opts` and `format`.
//!
//! * `logistic_fit_layout` (ignored by default; `cargo bench --bench online -- --ignored`):
//!   the linfa-logistic fit churnguard's trainer runs, on a row-major (C order, what
//!   `src/model/logistic.rs` builds) versus a column-major (Fortran order) copy of the
//!   same standardised design matrix; evidence for a performance problem reported in
//!   BENCHMARKS.md (linfa's gradient `x.t().dot(..)` walks a C-order matrix by strided
//!   columns).
//!
//! The fixture (a 3,000-customer generated base, its training set and one model of
//! each kind) is built once, outside the timed closures.

use churnguard::churn::ChurnDefinition;
use churnguard::data::{load, LoadOptions};
use churnguard::features::online::OwnedActivity;
use churnguard::features::{AttributeConfig, FeatureSpec};
use churnguard::labels::{LabelConfig, Split};
use churnguard::metrics::Bins;
use churnguard::model::{
    sigmoid, Algorithm, Artifact, Classifier, FittedModel, Platt, Thresholds, ARTIFACT_FORMAT,
};
use churnguard::scoring::Scorer;
use churnguard::synth::{generate, SynthConfig, SynthFormat};
use churnguard::time::{fmt_ts, parse_ts, Ts, DAY};
use churnguard::train::{fit_algorithm, TrainConfig, TrainingSet};
use divan::{black_box, Bencher};
use serde_json::{json, Value};
use std::sync::OnceLock;

fn main() {
    divan::main();
}

struct Fixture {
    spec: FeatureSpec,
    t: Ts,
    text: String,
    payload: Value,
    activity: OwnedActivity,
    /// One scorer per model kind, in `KINDS` order.
    scorers: Vec<Scorer>,
    /// Validation rows of the fixture's training set (row-major) and their labels.
    rows: Vec<f64>,
    labels: Vec<bool>,
}

const KINDS: [&str; 4] = ["logistic", "tree", "forest", "gbdt"];

/// A deterministic pseudo-random stream (no dependency needed).
struct Lcg(u64);
impl Lcg {
    fn next(&mut self) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        self.0 >> 33
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// The typical payload of the brief: 60 logins, 3 tickets, 12 orders, 80 events.
fn typical_payload(spec: &FeatureSpec, t: Ts) -> Value {
    let mut r = Lcg(42);
    let mut at = |max_days: u64| fmt_ts(t - 1 - r.below(max_days * DAY as u64) as i64);
    let logins: Vec<Value> = (0..60).map(|_| json!(at(90))).collect();
    let tickets = vec![
        json!({"opened_at": at(120), "closed_at": fmt_ts(t - 20 * DAY), "priority": "high", "csat": 2}),
        json!({"opened_at": at(60), "closed_at": fmt_ts(t - 3 * DAY), "priority": "normal", "csat": 4}),
        json!({"opened_at": fmt_ts(t - 2 * DAY), "closed_at": null, "priority": "urgent", "csat": null}),
    ];
    let orders: Vec<Value> = (0..12)
        .map(|i| json!({"at": fmt_ts(t - (i * 30 + 5) * DAY), "amount": if i == 4 { -49.0 } else { 49.0 }}))
        .collect();
    let types: Vec<String> = if spec.event_types.is_empty() {
        vec!["search".into()]
    } else {
        spec.event_types.clone()
    };
    let mut r2 = Lcg(7);
    let events: Vec<Value> = (0..80)
        .map(|_| {
            let ty = &types[r2.below(types.len() as u64) as usize];
            json!({"at": fmt_ts(t - 1 - r2.below(60 * DAY as u64) as i64), "event_type": ty, "value": 1})
        })
        .collect();
    json!({
        "customer": {"signup_at": "2023-03-14", "plan": "pro", "channel": "organic",
                     "country": "de", "monthly_fee": 49.0},
        "logins": logins, "tickets": tickets, "orders": orders, "events": events,
    })
}

fn fixture() -> &'static Fixture {
    static F: OnceLock<Fixture> = OnceLock::new();
    F.get_or_init(|| {
        let dir =
            std::env::temp_dir().join(format!("churnguard-bench-online-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let cfg = SynthConfig {
            customers: 3000,
            seed: 11,
            format: SynthFormat::Parquet,
            ..SynthConfig::sample()
        };
        generate(&cfg, &dir, &|_| {}).expect("generate the bench base");
        let base = load(&dir, &LoadOptions::default()).expect("load the bench base");
        let _ = std::fs::remove_dir_all(&dir);
        let attrs = AttributeConfig {
            categorical: vec!["plan".into(), "channel".into(), "country".into()],
            numeric: vec!["monthly_fee".into()],
            top_levels: 8,
            top_event_types: 8,
        };
        let set = TrainingSet::build(&base, &LabelConfig::default(), &attrs)
            .expect("training set of the bench base");
        let spec = set.spec.clone();
        let w = spec.len();
        let (xt, yt, _) = set.select(|e| e.split == Split::Train);
        let (xv, yv, _) = set.select(|e| e.split == Split::Validation);
        let tcfg = TrainConfig::default();
        let scorers: Vec<Scorer> = KINDS
            .iter()
            .map(|k| {
                let algo: Algorithm = k.parse().expect("known algorithm");
                let (model, _) =
                    fit_algorithm(algo, &tcfg, &spec, &xt, &yt, None).expect("fit a bench model");
                scorer(&spec, model, &xt, &xv, w, k)
            })
            .collect();
        let t = parse_ts("2024-12-01").expect("date");
        let payload = typical_payload(&spec, t);
        let text = serde_json::to_string(&payload).expect("payload text");
        let (activity, ignored) = OwnedActivity::parse(&spec, &payload).expect("parse payload");
        assert!(ignored.is_empty());
        assert_eq!(
            (
                activity.logins.len(),
                activity.tickets.len(),
                activity.orders.len(),
                activity.events.len()
            ),
            (60, 3, 12, 80)
        );
        let trees: Vec<String> = scorers
            .iter()
            .filter_map(|s: &Scorer| match &s.artifact.model {
                FittedModel::Gbdt(m) | FittedModel::Forest(m) => {
                    Some(format!("{} {} trees", s.version, m.n_trees))
                }
                _ => None,
            })
            .collect();
        eprintln!(
            "fixture: {} features, payload {} bytes, {} validation rows to score, {}",
            w,
            text.len(),
            xv.len() / w.max(1),
            trees.join(", ")
        );
        Fixture {
            spec,
            t,
            text,
            payload,
            activity,
            scorers,
            rows: xv,
            labels: yv,
        }
    })
}

/// A scorer around a fitted model, with references learned as the trainer does.
fn scorer(
    spec: &FeatureSpec,
    model: FittedModel,
    xt: &[f64],
    xv: &[f64],
    w: usize,
    kind: &str,
) -> Scorer {
    let mut probs: Vec<f64> = xv.chunks(w).map(|r| sigmoid(model.margin(r))).collect();
    probs.sort_by(f64::total_cmp);
    let q = |p: f64| probs[((probs.len() - 1) as f64 * p) as usize];
    let health_reference = (0..=100).map(|i| q(i as f64 / 100.0)).collect();
    let feature_bins = (0..w)
        .map(|j| Bins::learn(&xt.chunks(w).map(|r| r[j]).collect::<Vec<_>>()))
        .collect();
    let artifact = Artifact {
        format: ARTIFACT_FORMAT,
        spec: spec.clone(),
        model,
        calibration: Platt::default(),
        thresholds: Thresholds {
            high: q(0.95),
            medium: q(0.80),
            policy: "bench".into(),
        },
        definition: ChurnDefinition::Explicit,
        horizon_days: 30,
        health_reference,
        feature_bins,
        score_bins: Bins::learn(&probs),
    };
    Scorer::new("bench".into(), kind.into(), artifact, Default::default())
}

/// The whole online path: request text -> JSON -> parsed activity -> features.
#[divan::bench]
fn online_end_to_end(b: Bencher) {
    let f = fixture();
    b.bench(|| {
        let v: Value = serde_json::from_str(black_box(&f.text)).expect("json");
        let (a, _) = OwnedActivity::parse(&f.spec, &v).expect("parse");
        a.features(&f.spec, black_box(f.t))
    });
}

/// The online path as issue #3 defines it: `OwnedActivity::parse` of the decoded payload
/// then `features` (the request's JSON text is decoded by the HTTP layer before this).
#[divan::bench]
fn online_parse_and_features(b: Bencher) {
    let f = fixture();
    b.bench(|| {
        let (a, _) = OwnedActivity::parse(&f.spec, black_box(&f.payload)).expect("parse");
        a.features(&f.spec, black_box(f.t))
    });
}

/// JSON text -> `serde_json::Value` only (what axum's extractor does before us).
#[divan::bench]
fn online_json_text(b: Bencher) {
    let f = fixture();
    b.bench(|| serde_json::from_str::<Value>(black_box(&f.text)).expect("json"));
}

/// `OwnedActivity::parse` of an already-decoded payload (validation, timestamps, sorting).
#[divan::bench]
fn online_parse(b: Bencher) {
    let f = fixture();
    b.bench(|| OwnedActivity::parse(&f.spec, black_box(&f.payload)).expect("parse"));
}

/// `features` of a parsed activity (the shared feature code).
#[divan::bench]
fn online_features(b: Bencher) {
    let f = fixture();
    b.bench(|| f.activity.features(&f.spec, black_box(f.t)));
}

/// Online path then scoring with the gbdt model: one `POST /v1/score` minus HTTP.
#[divan::bench]
fn online_end_to_end_scored_gbdt(b: Bencher) {
    let f = fixture();
    let s = &f.scorers[3];
    b.bench(|| {
        let v: Value = serde_json::from_str(black_box(&f.text)).expect("json");
        let (a, _) = OwnedActivity::parse(&f.spec, &v).expect("parse");
        s.score(&a.features(&f.spec, f.t), 3)
    });
}

/// `Scorer::score` of one feature row (probability, health, tier, top-3 reasons),
/// cycling over the validation rows; what the nightly batch does per customer.
#[divan::bench(args = KINDS)]
fn score_row(b: Bencher, kind: &str) {
    let f = fixture();
    let s = &f.scorers[KINDS.iter().position(|k| *k == kind).expect("kind")];
    let w = f.spec.len();
    let n = f.rows.len() / w;
    let mut i = 0usize;
    b.bench_local(|| {
        i = (i + 1) % n;
        s.score(black_box(&f.rows[i * w..(i + 1) * w]), 3)
    });
}

/// `Scorer::score_block` of 256 consecutive validation rows, what the nightly batch
/// runs on each thread; divide by 256 for the time per customer.
#[divan::bench(args = KINDS)]
fn score_block_256(b: Bencher, kind: &str) {
    let f = fixture();
    let s = &f.scorers[KINDS.iter().position(|k| *k == kind).expect("kind")];
    let w = f.spec.len();
    let blocks = f.rows.len() / (256 * w);
    let mut i = 0usize;
    b.bench_local(|| {
        i = (i + 1) % blocks;
        s.score_block(black_box(&f.rows[i * 256 * w..(i + 1) * 256 * w]), 3)
    });
}

/// The bare calibrated probability of one row (comparable to `predict_proba`).
#[divan::bench(args = KINDS)]
fn probability_row(b: Bencher, kind: &str) {
    let f = fixture();
    let s = &f.scorers[KINDS.iter().position(|k| *k == kind).expect("kind")];
    let w = f.spec.len();
    let n = f.rows.len() / w;
    let mut i = 0usize;
    b.bench_local(|| {
        i = (i + 1) % n;
        s.probability(black_box(&f.rows[i * w..(i + 1) * w]))
    });
}

/// The standardised training rows of the fixture, tiled to `rows` rows (row-major).
fn design(rows: usize) -> (Vec<f64>, Vec<usize>, usize) {
    let f = fixture();
    let s = &f.scorers[0];
    let FittedModel::Logistic(m) = &s.artifact.model else {
        unreachable!("the first scorer is logistic")
    };
    let w = f.spec.len();
    let n0 = f.rows.len() / w;
    let mut z = Vec::with_capacity(rows * w);
    let mut y = Vec::with_capacity(rows);
    for i in 0..rows {
        let r = &f.rows[(i % n0) * w..(i % n0 + 1) * w];
        z.extend(r.iter().enumerate().map(|(j, &v)| m.pre.standardize(j, v)));
        y.push(usize::from(f.labels[i % n0]));
    }
    (z, y, w)
}

/// linfa-logistic fit (alpha 1, 50 iterations, tolerance 1e-4 per row, as the trainer)
/// on 200k rows x the schema, C order versus Fortran order.
#[divan::bench(args = ["c_order", "f_order"], sample_count = 1, sample_size = 1, ignore)]
fn logistic_fit_layout(b: Bencher, layout: &str) {
    use linfa::prelude::*;
    use ndarray::{Array1, Array2, ShapeBuilder};
    let (z, y, w) = design(200_000);
    let n = y.len();
    let x = match layout {
        "c_order" => Array2::from_shape_vec((n, w), z).expect("shape"),
        _ => {
            let mut f = Array2::<f64>::zeros((n, w).f());
            for (i, row) in z.chunks(w).enumerate() {
                for (j, &v) in row.iter().enumerate() {
                    f[[i, j]] = v;
                }
            }
            f
        }
    };
    let ds = Dataset::new(x, y.into_iter().collect::<Array1<usize>>());
    b.bench_local(|| {
        linfa_logistic::LogisticRegression::default()
            .alpha(1.0)
            .max_iterations(50)
            .gradient_tolerance(1e-4 * n as f64)
            .fit(black_box(&ds))
            .expect("fit")
    });
}

fn service_metrics() -> &'static churnguard::serve::metrics::Metrics {
    static M: OnceLock<churnguard::serve::metrics::Metrics> = OnceLock::new();
    M.get_or_init(Default::default)
}

/// Every thread on the same route and status: the worst case for contention.
#[divan::bench(threads = [1, 2])]
fn metrics_observe_request(b: Bencher) {
    let m = service_metrics();
    b.bench(|| {
        m.observe_request(
            black_box("/v1/customers/{id}/score"),
            "GET",
            200,
            black_box(0.000_4),
        )
    });
}

/// One `/v1/score` answer (1 probability) and one batch of 100, as the routes record them.
#[divan::bench(args = [1, 100])]
fn metrics_observe_scores(b: Bencher, n: usize) {
    let m = service_metrics();
    let p: Vec<f64> = (0..n).map(|i| i as f64 / n as f64).collect();
    b.bench(|| m.observe_scores(black_box("churn"), black_box("v1"), &p));
}

/// Instants spread over 1970-2050, so no formatting path sees one value only.
fn instants() -> Vec<Ts> {
    let mut r = Lcg(7);
    (0..1024)
        .map(|_| r.below(80 * 365 * DAY as u64) as i64)
        .collect()
}

/// Formats the instants in turn with `f`.
fn bench_fmt_ts<T>(b: Bencher, f: impl Fn(Ts) -> T) {
    let ts = instants();
    let mut i = 0usize;
    b.bench_local(|| {
        i = (i + 1) % ts.len();
        f(black_box(ts[i]))
    });
}

#[divan::bench]
fn fmt_ts_churnguard(b: Bencher) {
    bench_fmt_ts(b, fmt_ts);
}

#[divan::bench]
fn fmt_ts_chrono_rfc3339(b: Bencher) {
    bench_fmt_ts(b, |t| {
        chrono::DateTime::from_timestamp(t, 0)
            .map(|d| d.to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
    });
}

#[divan::bench]
fn fmt_ts_chrono_format(b: Bencher) {
    bench_fmt_ts(b, |t| {
        chrono::DateTime::from_timestamp(t, 0).map(|d| d.format("%Y-%m-%dT%H:%M:%SZ").to_string())
    });
}
