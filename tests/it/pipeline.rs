//! Train -> registry -> batch scoring -> alerts, end to end on a generated base.

use crate::common::{load_dir, sample_parquet, scratch};
use crate::online_vs_batch::payload;
use churnguard::alerts::AlertPolicy;
use churnguard::batch::{self, BatchOptions, InputGuard};
use churnguard::data::CustomerBase;
use churnguard::features::snapshot_features;
use churnguard::features::AttributeConfig;
use churnguard::labels::{LabelConfig, Split};
use churnguard::metrics::roc_auc;
use churnguard::model::{sigmoid, Algorithm, Classifier};
use churnguard::registry::{Registry, Selector};
use churnguard::scores::{self, REASONS_PER_CUSTOMER};
use churnguard::scoring::{probabilities, Scorer, Tier};
use churnguard::time::parse_ts;
use churnguard::train::{fit_algorithm, run, TrainConfig, TrainingSet};
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

fn attrs() -> AttributeConfig {
    AttributeConfig {
        categorical: vec!["plan".into(), "channel".into(), "country".into()],
        numeric: vec!["monthly_fee".into()],
        top_levels: 8,
        top_event_types: 8,
    }
}

/// A registry with one trained version (every algorithm compared), shared by the tests.
/// The sample's trained registry, shared by the tests of this process.
pub(crate) fn trained() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let models = scratch("models");
        let base = load_dir(sample_parquet());
        let cfg = TrainConfig {
            attributes: attrs(),
            ..TrainConfig::default()
        };
        let out = run(&base, &Registry::new(&models), &cfg, &|_| {}).expect("training succeeds");
        assert_eq!(out.published.version, 1);
        assert_eq!(out.published.aliases_set, ["production"]);
        models
    })
}

/// The shared model's production version.
pub(crate) fn scorer() -> Scorer {
    let reg = Registry::new(trained());
    Scorer::from_loaded(
        reg.load("churn", &Selector::Alias("production".into()))
            .unwrap(),
    )
    .unwrap()
}

#[test]
fn every_algorithm_learns_the_signal_and_not_a_shuffled_label() {
    let base = load_dir(sample_parquet());
    let set = TrainingSet::build(&base, &LabelConfig::default(), &attrs()).unwrap();
    let (xt, yt, _) = set.select(|e| e.split == Split::Train);
    let (xv, yv, _) = set.select(|e| e.split == Split::Validation);
    // A seeded random permutation of the training labels destroys the signal.
    let mut shuffled = yt.clone();
    {
        use rand::seq::SliceRandom;
        use rand::SeedableRng;
        shuffled.shuffle(&mut rand_chacha::ChaCha8Rng::seed_from_u64(3));
    }
    let cfg = TrainConfig::default();
    for algo in Algorithm::ALL {
        let (m, _) = fit_algorithm(algo, &cfg, &set.spec, &xt, &yt, None).unwrap();
        let auc = roc_auc(&m.margins(&xv, set.spec.len()), &yv);
        assert!(auc > 0.62, "{algo:?} validation AUC {auc}");
        let (m, _) = fit_algorithm(algo, &cfg, &set.spec, &xt, &shuffled, None).unwrap();
        let auc = roc_auc(&m.margins(&xv, set.spec.len()), &yv);
        assert!(
            (auc - 0.5).abs() < 0.06,
            "{algo:?} on shuffled labels AUC {auc}"
        );
    }
}

#[test]
fn a_saved_and_reloaded_model_gives_bit_identical_probabilities() {
    let s1 = scorer();
    let s2 = scorer();
    let base = load_dir(sample_parquet());
    let t = parse_ts("2024-12-01").unwrap();
    let (_, x) = snapshot_features(&base, &s1.artifact.spec, &s1.artifact.definition, t);
    let p1 = probabilities(&s1, &x);
    let p2 = probabilities(&s2, &x);
    assert!(!p1.is_empty());
    assert!(p1.iter().zip(&p2).all(|(a, b)| a.to_bits() == b.to_bits()));
}

#[test]
fn thresholds_follow_the_capacity_policy_on_validation() {
    let m: serde_json::Value =
        serde_json::from_slice(&std::fs::read(trained().join("churn/v1/metrics.json")).unwrap())
            .unwrap();
    let tiers = m["thresholds"]["tiers"].as_array().unwrap();
    let high = &tiers[0];
    let medium = &tiers[1];
    assert!(high["threshold"].as_f64().unwrap() >= medium["threshold"].as_f64().unwrap());
    // The high tier flags about 5% of the latest validation snapshot, medium+high about 20%.
    let latest = m["snapshots"].as_array().unwrap().last().unwrap()["examples"]
        .as_f64()
        .unwrap();
    let share_high = high["flagged_latest"].as_f64().unwrap() / latest;
    let share_medium = medium["flagged_latest"].as_f64().unwrap() / latest;
    assert!((0.02..0.09).contains(&share_high), "{share_high}");
    assert!((0.12..0.28).contains(&share_medium), "{share_medium}");
    assert!(high["precision"].as_f64().unwrap() > medium["precision"].as_f64().unwrap());
    assert!(trained().join("churn/v1/report.html").exists());
}

#[test]
fn calibration_lowers_the_brier_score_of_a_miscalibrated_model() {
    use churnguard::metrics::brier;
    use churnguard::model::Platt;
    let s = scorer();
    let base = load_dir(sample_parquet());
    let set = TrainingSet::build(&base, &LabelConfig::default(), &attrs()).unwrap();
    let (xv, yv, _) = set.select(|e| e.split == Split::Validation);
    // A deliberately mis-calibrated model: every margin shifted up by 3 (odds x 20).
    let margins: Vec<f64> = s
        .artifact
        .model
        .margins(&xv, set.spec.len())
        .iter()
        .map(|m| m + 3.0)
        .collect();
    let raw: Vec<f64> = margins.iter().map(|&m| sigmoid(m)).collect();
    let platt = Platt::fit(&margins, &yv);
    let cal: Vec<f64> = margins.iter().map(|&m| platt.apply(m)).collect();
    assert!(
        brier(&cal, &yv) < 0.8 * brier(&raw, &yv),
        "{} vs {}",
        brier(&cal, &yv),
        brier(&raw, &yv)
    );
}

fn options(name: &str, as_of: &str) -> BatchOptions {
    let dir = scratch(name);
    BatchOptions {
        as_of: parse_ts(as_of).unwrap(),
        out: dir.join("scores.parquet"),
        alerts_log: Some(dir.join("alerts.jsonl")),
        outbox: dir.join("alerts.db"),
        policy: AlertPolicy::default(),
        webhook: None,
        guard: InputGuard::default(),
        contributions: false,
        retry: churnguard::alerts::RetryPolicy::default(),
        metrics_textfile: None,
        history: dir.join("history"),
        task: churnguard::alerts::TaskConfig::default(),
        loading_seconds: None,
    }
}

/// The shared model's nightly run on the sample as of `as_of`: the model, the base, the
/// run's options and the score file it wrote.
fn night(name: &str, as_of: &str) -> (Scorer, CustomerBase, BatchOptions, ScoreFile) {
    let s = scorer();
    let base = load_dir(sample_parquet());
    let opts = options(name, as_of);
    batch::run(&base, &s, &opts, &|_| {}).unwrap();
    let scores = scores::read(&opts.out).unwrap();
    (s, base, opts, scores)
}

type ScoreFile = std::collections::HashMap<String, scores::ScoreRecord>;

#[test]
fn batch_scores_equal_the_service_path_for_the_same_customers_and_date() {
    let (s, base, opts, scores) = night("batch-vs-service", "2024-11-15");
    assert!(scores.len() > 500);
    let (mut checked, mut quoted) = (0, 0);
    for (c, id) in base.customers.ids.iter().enumerate().step_by(7) {
        let Some(rec) = scores.get(id) else { continue };
        let row = s
            .features_from_activity(&payload(&base, c), opts.as_of)
            .unwrap()
            .row;
        let online = s.score(&row, REASONS_PER_CUSTOMER);
        assert_eq!(
            online.churn_probability.to_bits(),
            rec.churn_probability.to_bits(),
            "{id}"
        );
        assert_eq!(online.risk_tier, rec.risk_tier);
        assert_eq!(online.health_score, rec.health_score);
        assert_eq!(
            online
                .reasons
                .iter()
                .map(|r| &r.feature)
                .collect::<Vec<_>>(),
            rec.reasons.iter().map(|r| &r.feature).collect::<Vec<_>>()
        );
        // The same texts, dimensions and primary driver (the file keeps f64 exactly).
        assert_eq!(
            online.reasons.iter().map(|r| &r.text).collect::<Vec<_>>(),
            rec.reasons.iter().map(|r| &r.text).collect::<Vec<_>>(),
            "{id}"
        );
        assert_eq!(Some(online.dimensions), rec.dimensions, "{id}");
        assert_eq!(online.primary_driver, rec.primary_driver, "{id}");
        quoted += rec
            .reasons
            .iter()
            .filter(|r| r.text.contains("(customers who stay: "))
            .count();
        // The dimensions add up to the calibrated margin minus the base.
        let all = s.all_contributions(&row);
        let margin = (online.churn_probability / (1.0 - online.churn_probability)).ln();
        let dims: f64 = churnguard::features::Dimension::ALL
            .iter()
            .map(|&d| online.dimensions.get(d).contribution)
            .sum();
        assert!(
            (all.base + dims - margin).abs() < 1e-6,
            "{id}: base {} + dimensions {dims} vs margin {margin}",
            all.base
        );
        checked += 1;
    }
    assert!(checked > 50);
    assert!(
        quoted > 0,
        "the texts quote the references learned at training"
    );
}

#[test]
fn rerunning_the_same_night_is_byte_identical_and_raises_no_alert_twice() {
    let s = scorer();
    let base = load_dir(sample_parquet());
    let opts = options("idempotent", "2024-10-01");
    let first = batch::run(&base, &s, &opts, &|_| {}).unwrap();
    let bytes1 = std::fs::read(&opts.out).unwrap();
    let log1 = std::fs::read_to_string(opts.alerts_log.as_ref().unwrap()).unwrap();
    assert!(
        first.alerts_new > 0,
        "the first night raises alerts for the high tier"
    );
    assert_eq!(log1.lines().count(), first.alerts_new);
    let alert: serde_json::Value = serde_json::from_str(log1.lines().next().unwrap()).unwrap();
    assert_eq!(alert["tier"], "high");
    assert!(alert["summary"]["early_warnings"].is_array(), "{alert}");
    assert!(!alert["reasons"].as_array().unwrap().is_empty());
    let second = batch::run(&base, &s, &opts, &|_| {}).unwrap();
    assert_eq!(std::fs::read(&opts.out).unwrap(), bytes1);
    assert_eq!(second.alerts_new, 0);
    assert_eq!(
        std::fs::read_to_string(opts.alerts_log.as_ref().unwrap()).unwrap(),
        log1
    );
    // The next night only alerts on customers who newly reach the tier.
    let next = BatchOptions {
        as_of: opts.as_of + 86_400,
        ..opts.clone()
    };
    let third = batch::run(&base, &s, &next, &|_| {}).unwrap();
    assert!(third.alerts_new < first.alerts_new);
}

#[test]
fn a_failed_run_leaves_the_previous_output_and_alert_state_untouched() {
    let s = scorer();
    let base = load_dir(sample_parquet());
    let opts = options("failure", "2024-10-01");
    batch::run(&base, &s, &opts, &|_| {}).unwrap();
    let before = std::fs::read(&opts.out).unwrap();
    let db_before = std::fs::read(&opts.outbox).unwrap();
    // A customer base whose orders table is unreadable fails at load, before anything is written.
    let broken = scratch("broken-base");
    for f in std::fs::read_dir(sample_parquet()).unwrap() {
        let p = f.unwrap().path();
        std::fs::copy(&p, broken.join(p.file_name().unwrap())).unwrap();
    }
    std::fs::write(broken.join("orders.parquet"), b"garbage").unwrap();
    assert!(churnguard::data::load(&broken, &Default::default()).is_err());
    // A base missing a table the model needs fails before writing too.
    std::fs::remove_file(broken.join("orders.parquet")).unwrap();
    let partial = load_dir(&broken);
    let next = BatchOptions {
        as_of: opts.as_of + 86_400,
        ..opts.clone()
    };
    let err = batch::run(&partial, &s, &next, &|_| {})
        .unwrap_err()
        .to_string();
    assert!(err.contains("orders"), "{err}");
    assert_eq!(std::fs::read(&opts.out).unwrap(), before);
    assert_eq!(std::fs::read(&opts.outbox).unwrap(), db_before);
}

#[test]
fn drift_flags_a_deliberately_shifted_feature() {
    let s = scorer();
    let mut base = load_dir(sample_parquet());
    // Everyone's monthly fee jumps tenfold: the attribute drifts, nothing else should much.
    if let Some((_, churnguard::data::Attribute::Numeric(v))) = base
        .customers
        .attributes
        .iter_mut()
        .find(|(n, _)| n == "monthly_fee")
    {
        v.iter_mut().for_each(|x| *x *= 10.0);
    }
    let opts = options("drift", "2024-09-01");
    let summary = batch::run(&base, &s, &opts, &|_| {}).unwrap();
    let fee = summary
        .feature_psi
        .iter()
        .find(|f| f.feature == "monthly_fee")
        .unwrap();
    assert!(fee.psi >= 0.25, "{fee:?}");
    assert!(summary
        .drift_warnings
        .iter()
        .any(|w| w.contains("monthly_fee")));
    let tenure = summary
        .feature_psi
        .iter()
        .find(|f| f.feature == "logins_30d")
        .unwrap();
    assert!(tenure.psi < 0.25, "{tenure:?}");
}

#[test]
fn tenure_is_no_drift_on_the_reference_night_nor_a_month_later() {
    let s = scorer();
    let base = load_dir(sample_parquet());
    // The reference night: the latest validation snapshot the drift bins were learned on.
    let latest = s
        .manifest
        .snapshots
        .iter()
        .filter(|x| x.split == Split::Validation.as_str())
        .map(|x| parse_ts(&x.as_of).unwrap())
        .max()
        .unwrap();
    let month_later = latest + 30 * churnguard::time::DAY;
    assert!(month_later <= base.data_end().unwrap(), "a night with data");
    for (name, t) in [("drift-reference", latest), ("drift-month", month_later)] {
        let as_of = churnguard::time::fmt_date(t);
        let summary = batch::run(&base, &s, &options(name, &as_of), &|_| {}).unwrap();
        let psi = |name: &str| summary.feature_psi.iter().find(|f| f.feature == name);
        let tenure = psi("tenure_days").unwrap();
        assert!(tenure.by_construction, "{tenure:?}");
        assert_eq!(tenure.level, "by construction");
        assert!(tenure.psi < 0.1, "{as_of}: {tenure:?}");
        assert!(
            !summary.drift_warnings.iter().any(|w| w.contains("tenure")),
            "{as_of}: {:?}",
            summary.drift_warnings
        );
        assert!(summary
            .feature_psi
            .iter()
            .all(|f| f.by_construction == (f.feature == "tenure_days")));
        if t == latest {
            // The same population as the reference: nothing has drifted.
            let moved: Vec<_> = summary
                .feature_psi
                .iter()
                .filter(|f| f.psi >= 0.1)
                .collect();
            assert!(moved.is_empty(), "{moved:?}");
            assert!(
                summary.drift_warnings.is_empty(),
                "{:?}",
                summary.drift_warnings
            );
        }
    }
}

#[test]
fn a_corrupted_model_file_is_refused_by_verify_and_load() {
    let models = scratch("corrupt-models");
    let src = trained().join("churn");
    let dst = models.join("churn");
    std::fs::create_dir_all(dst.join("v1")).unwrap();
    for f in std::fs::read_dir(src.join("v1")).unwrap() {
        let p = f.unwrap().path();
        std::fs::copy(&p, dst.join("v1").join(p.file_name().unwrap())).unwrap();
    }
    std::fs::copy(src.join("aliases.json"), dst.join("aliases.json")).unwrap();
    let reg = Registry::new(&models);
    assert!(reg.verify("churn", 1).is_ok());
    let mut bytes = std::fs::read(dst.join("v1/model.bin")).unwrap();
    let k = bytes.len() / 2;
    bytes[k] ^= 0xff;
    std::fs::write(dst.join("v1/model.bin"), bytes).unwrap();
    let e = reg.verify("churn", 1).unwrap_err().chain().to_string();
    assert!(e.contains("model.bin"), "{e}");
    let e = reg
        .load("churn", &Selector::Version(1))
        .unwrap_err()
        .chain()
        .to_string();
    assert!(e.contains("model.bin") && e.contains("checksum"), "{e}");
}

#[test]
fn reasons_point_at_features_that_raise_the_score() {
    let s = scorer();
    let base = load_dir(sample_parquet());
    let t = parse_ts("2024-11-01").unwrap();
    let (_, x) = snapshot_features(&base, &s.artifact.spec, &s.artifact.definition, t);
    let w = s.artifact.spec.len();
    let mut c = vec![0.0; w];
    for row in x.chunks(w).take(200) {
        let bias = s.artifact.model.contributions(row, &mut c);
        assert!((bias + c.iter().sum::<f64>() - s.artifact.model.margin(row)).abs() < 1e-6);
        let score = s.score(row, 3);
        assert!(score.reasons.iter().all(|r| r.contribution > 0.0));
        assert!(score
            .reasons
            .windows(2)
            .all(|p| p[0].contribution >= p[1].contribution));
        assert!((0.0..=100.0).contains(&score.health_score));
    }
}

#[test]
fn a_backtest_reports_realised_performance_once_outcomes_are_known() {
    let s = scorer();
    let base = load_dir(sample_parquet());
    let opts = options("backtest", "2024-10-15");
    batch::run(&base, &s, &opts, &|_| {}).unwrap();
    let scores = scores::read(&opts.out).unwrap();
    let b = churnguard::backtest::backtest(
        &base,
        &scores,
        &s.artifact.definition,
        s.artifact.horizon_days,
    )
    .unwrap();
    assert_eq!(b.customers, scores.len());
    assert!(b.churned > 0 && b.roc_auc > 0.6, "{b:?}");
    let high = &b.tiers[0];
    let low = &b.tiers[2];
    assert!(high.churn_rate > low.churn_rate, "{b:?}");
    assert!((b.tiers[2].cumulative_recall - 1.0).abs() < 1e-12);
    // A run whose horizon has not passed yet is refused.
    let late = options("backtest-late", "2024-12-20");
    batch::run(&base, &s, &late, &|_| {}).unwrap();
    let scores = scores::read(&late.out).unwrap();
    let e = churnguard::backtest::backtest(&base, &scores, &s.artifact.definition, 30).unwrap_err();
    assert!(e.to_string().contains("backtest it later"), "{e}");
}

#[test]
fn a_rule_marked_alert_raises_alerts_through_the_same_policy() {
    let base = load_dir(sample_parquet());
    let plain = scorer();
    let mut ruled = scorer();
    ruled.rules = churnguard::scoring::rules_from_json(
        r#"[{"name": "silent_30d", "kind": "no_login_days", "days": 30, "alert": true}]"#,
    )
    .unwrap();
    let without = batch::run(&base, &plain, &options("rules-off", "2024-10-01"), &|_| {}).unwrap();
    let opts = options("rules-on", "2024-10-01");
    let with = batch::run(&base, &ruled, &opts, &|_| {}).unwrap();
    // Every customer the model puts in `high` alerts either way (a first night); the
    // rule adds the silent customers the model does not.
    let records = scores::read(&opts.out).unwrap();
    let silent_not_high = records
        .values()
        .filter(|r| r.risk_tier != Tier::High)
        .filter(|r| r.early_warnings.iter().any(|w| w == "silent_30d"))
        .count();
    assert!(silent_not_high > 0);
    assert_eq!(with.alerts_raised, without.alerts_raised + silent_not_high);
    let log = std::fs::read_to_string(opts.alerts_log.as_ref().unwrap()).unwrap();
    let by_rule: Vec<serde_json::Value> = log
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .filter(|a| records[a["customer_id"].as_str().unwrap()].risk_tier != Tier::High)
        .collect();
    assert_eq!(by_rule.len(), silent_not_high);
    for a in &by_rule {
        assert_eq!(a["tier"], "high", "the policy sees the rule's tier: {a}");
        let hits = a["summary"]["early_warnings"].as_array().unwrap();
        assert!(hits.iter().any(|h| h["rule"] == "silent_30d"), "{a}");
    }
    // Re-running the night raises nothing again: the same cooldown and transitions.
    let again = batch::run(&base, &ruled, &opts, &|_| {}).unwrap();
    assert_eq!(again.alerts_new, 0);
}

/// The body of an answer of the service's router.
async fn answer(
    app: &axum::Router,
    req: axum::http::Request<axum::body::Body>,
) -> serde_json::Value {
    use tower::ServiceExt;
    let res = app.clone().oneshot(req).await.unwrap();
    let bytes = axum::body::to_bytes(res.into_body(), usize::MAX)
        .await
        .unwrap();
    serde_json::from_slice(&bytes).unwrap()
}

#[test]
fn a_batch_alert_and_a_service_alert_for_the_same_customer_have_one_shape() {
    use axum::body::Body;
    use axum::http::Request;
    use churnguard::alerts::{Alert, Outbox};
    use churnguard::serve::{app, AppState, ServeConfig};
    let s = scorer();
    let base = load_dir(sample_parquet());
    // Profile attributes and an owner, read by the batch from the customer table and by
    // the service from the request's `activity.customer`.
    let task = churnguard::alerts::TaskConfig {
        profile_attributes: vec!["country".into(), "monthly_fee".into()],
        owner_attribute: Some("channel".into()),
        ..Default::default()
    };
    // No sink: the batch's alerts stay pending in its outbox, where they are read back.
    let opts = BatchOptions {
        alerts_log: None,
        task: task.clone(),
        ..options("one-shape-batch", "2024-11-15")
    };
    batch::run(&base, &s, &opts, &|_| {}).unwrap();
    let batch_alerts = Outbox::open(&opts.outbox)
        .unwrap()
        .pending(usize::MAX)
        .unwrap();
    let warned = |a: &Alert| {
        a.summary["early_warnings"]
            .as_array()
            .is_some_and(|w| !w.is_empty())
    };
    let batch_alert = batch_alerts
        .iter()
        .find(|a| warned(a))
        .expect("an alert with warnings");
    let id = batch_alert.customer_id.clone();
    let c = base.customers.ids.iter().position(|x| *x == id).unwrap();

    let dir = scratch("one-shape-service");
    let config = ServeConfig {
        models: trained().to_path_buf(),
        api_keys: vec!["k".into()],
        scores: Some(opts.out.clone()),
        outbox: dir.join("alerts.db"),
        task,
        ..ServeConfig::default()
    };
    let state = AppState::open(&config).unwrap();
    let router = app(state);
    let rt = tokio::runtime::Runtime::new().unwrap();
    let request = |method: &str, uri: String, body: Body| {
        Request::builder()
            .method(method)
            .uri(uri)
            .header("authorization", "Bearer k")
            .header("content-type", "application/json")
            .body(body)
            .unwrap()
    };
    let body = serde_json::json!({"customer_id": id, "as_of": "2024-11-15", "activity": payload(&base, c)});
    let scored = rt.block_on(answer(
        &router,
        request("POST", "/v1/score".into(), Body::from(body.to_string())),
    ));
    assert_eq!(scored["alert"], true, "{scored}");
    let nightly = rt.block_on(answer(
        &router,
        request("GET", format!("/v1/customers/{id}/score"), Body::empty()),
    ));
    let record = &scores::read(&opts.out).unwrap()[&id];
    assert!(!record.early_warnings.is_empty());
    assert_eq!(nightly, serde_json::to_value(record).unwrap());

    let service_alerts = Outbox::open(&config.outbox).unwrap().pending(10).unwrap();
    let service_alert = service_alerts.iter().find(|a| a.customer_id == id).unwrap();
    assert_eq!(service_alert.source, Alert::SOURCE_SERVICE);
    assert_eq!(batch_alert.source, Alert::SOURCE_BATCH);
    // Same keys, the same early warnings as full rule hits, the same everything but who
    // raised it and when (and so when it is due): the request sent the customer's
    // activity, so the service knows its profile, owner and trail as the batch does.
    let shape = |a: &Alert| {
        let mut v = serde_json::to_value(a).unwrap();
        let o = v.as_object_mut().unwrap();
        o.remove("source");
        o.remove("raised_at");
        o.remove("due_at");
        v
    };
    let profile = batch_alert.profile.as_ref().unwrap();
    assert_eq!(profile.plan.as_deref(), Some("pro"));
    assert_eq!(
        profile.attributes.keys().collect::<Vec<_>>(),
        ["country", "monthly_fee"]
    );
    assert!(batch_alert.owner.is_some());
    let trail = batch_alert.trail.as_ref().unwrap();
    assert!(trail.logins.as_ref().is_some_and(|l| !l.is_empty()));
    let hits = &service_alert.summary["early_warnings"];
    assert!(
        hits.as_array()
            .unwrap()
            .iter()
            .all(|h| h["rule"].is_string() && h["message"].is_string()),
        "{hits}"
    );
    assert_eq!(shape(service_alert), shape(batch_alert));
}

#[test]
fn both_rfm_sections_of_the_retention_report_count_the_score_files_segments() {
    use churnguard::retention::{kpis_with, ModelRfm, RetentionOptions};
    let (s, base, opts, scores) = night("retention-rfm", "2024-12-01");
    let ropts = RetentionOptions {
        model_rfm: Some(ModelRfm::of(&s)),
        ..RetentionOptions::default()
    };
    let k = kpis_with(&base, opts.as_of, Some(&scores), &ropts).unwrap();
    let rar = k.revenue_at_risk.as_ref().unwrap();
    assert!(!k.rfm_segments.is_empty());
    let in_scores = |seg: &str| {
        rar.by_segment
            .iter()
            .find(|g| g.group == seg)
            .map_or(0, |g| g.customers)
    };
    let counts: Vec<(&str, usize, usize)> = k
        .rfm_segments
        .iter()
        .map(|g| (g.segment.as_str(), g.customers_now, in_scores(&g.segment)))
        .collect();
    assert!(counts.iter().all(|c| c.1 == c.2), "{counts:?}");
    let total: usize = k.rfm_segments.iter().map(|g| g.customers_now).sum();
    assert_eq!(total, rar.customers_scored);
    let model = format!("the model's ({} {})", s.name, s.version);
    assert!(k.rfm_definition.contains(&model), "{}", k.rfm_definition);
}

fn read_parquet(path: &Path) -> polars::prelude::DataFrame {
    use polars::prelude::SerReader;
    polars::prelude::ParquetReader::new(std::fs::File::open(path).unwrap())
        .finish()
        .unwrap()
}

/// The `as_of` column of a Parquet output as seconds, checking that it is a UTC timestamp.
fn utc_seconds(df: &polars::prelude::DataFrame, what: &str) -> Vec<i64> {
    use polars::prelude::*;
    let c = df.column("as_of").unwrap();
    assert_eq!(
        c.dtype(),
        &DataType::Datetime(TimeUnit::Microseconds, Some(TimeZone::UTC)),
        "{what}"
    );
    let phys = c.as_materialized_series().to_physical_repr();
    let micros = phys.i64().unwrap();
    micros.iter().map(|v| v.unwrap() / 1_000_000).collect()
}

#[test]
fn the_score_file_training_set_and_snapshot_export_hold_as_of_as_one_utc_timestamp() {
    use churnguard::settings::{DataSource, FeatureSettings};
    let night_of = "2024-11-15";
    let t = parse_ts(night_of).unwrap();
    let (_, base, opts, records) = night("as-of-timestamps", night_of);
    let scores = read_parquet(&opts.out);
    assert!(utc_seconds(&scores, "score file").iter().all(|&s| s == t));
    assert!(records.values().all(|r| r.as_of == "2024-11-15T00:00:00Z"));

    let dir = scratch("as-of-exports");
    let settings = |as_of: Option<i64>, out: &str| FeatureSettings {
        data: DataSource {
            dir: sample_parquet().to_path_buf(),
            skip_bad_rows: false,
        },
        labels: LabelConfig::default(),
        attributes: attrs(),
        model: None,
        as_of,
        out: dir.join(out),
    };
    for out in [
        "training.parquet",
        "training.csv",
        "snapshot.parquet",
        "snapshot.csv",
    ] {
        let as_of = out.starts_with("snapshot").then_some(t);
        churnguard::export::write(&base, &settings(as_of, out)).unwrap();
    }
    let training = read_parquet(&dir.join("training.parquet"));
    let train_secs = utc_seconds(&training, "training set");
    let set = TrainingSet::build(&base, &LabelConfig::default(), &attrs()).unwrap();
    let want: Vec<i64> = set.examples.iter().map(|e| e.as_of).collect();
    assert_eq!(train_secs, want);
    let snapshot = read_parquet(&dir.join("snapshot.parquet"));
    assert_eq!(snapshot.get_column_names()[1].as_str(), "as_of");
    assert!(utc_seconds(&snapshot, "snapshot").iter().all(|&s| s == t));
    assert_eq!(snapshot.height(), records.len());

    // CSV has no timestamp type: RFC 3339 UTC text, the same form as the score file's CSV.
    for (file, first) in [("training.csv", want[0]), ("snapshot.csv", t)] {
        let text = std::fs::read_to_string(dir.join(file)).unwrap();
        let row = text.lines().nth(1).unwrap();
        let cell = row.split(',').nth(1).unwrap();
        assert_eq!(cell, churnguard::time::fmt_ts(first), "{file}: {row}");
    }
}

#[test]
fn metrics_json_is_reproduced_from_the_validation_predictions() {
    use churnguard::metrics::{brier, evaluate, log_loss};
    use churnguard::train::VALIDATION_PREDICTIONS;
    let dir = trained().join("churn/v1");
    let m: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join("metrics.json")).unwrap()).unwrap();
    let manifest: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join("manifest.json")).unwrap()).unwrap();
    assert!(
        manifest["files"][VALIDATION_PREDICTIONS].is_string(),
        "the predictions are checksummed like every file of the version"
    );
    // The shipped model's importance by dimension: every feature's share, summed.
    let champion = m["champion"].as_str().unwrap();
    let importance: f64 = m["candidates"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["algorithm"] == champion)
        .unwrap()["importance"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_f64().unwrap())
        .sum();
    let by_dimension = m["importance_by_dimension"].as_object().unwrap();
    let names: Vec<&str> = by_dimension.keys().map(String::as_str).collect();
    assert_eq!(names, ["billing", "engagement", "relationship", "support"]);
    let summed: f64 = by_dimension.values().map(|v| v.as_f64().unwrap()).sum();
    assert!(
        (summed - importance).abs() < 1e-12,
        "{summed} vs {importance}"
    );
    let df = read_parquet(&dir.join(VALIDATION_PREDICTIONS));
    assert_eq!(
        df.height() as u64,
        m["examples"]["validation"].as_u64().unwrap()
    );
    utc_seconds(&df, "validation predictions");
    let f64s = |name: &str| -> Vec<f64> {
        df.column(name)
            .unwrap()
            .f64()
            .unwrap()
            .into_no_null_iter()
            .collect()
    };
    let labels: Vec<bool> = df
        .column("label")
        .unwrap()
        .i32()
        .unwrap()
        .into_no_null_iter()
        .map(|l| l == 1)
        .collect();
    let close = |a: f64, b: &serde_json::Value, what: &str| {
        let b = b.as_f64().unwrap();
        assert!(
            (a - b).abs() < 1e-12,
            "{what}: recomputed {a}, metrics.json {b}"
        );
    };
    let champion = m["champion"].as_str().unwrap();
    let mut seen_champion = false;
    for c in m["candidates"].as_array().unwrap() {
        let algo = c["algorithm"].as_str().unwrap();
        let raw: Vec<f64> = f64s(&format!("{algo}_margin"))
            .iter()
            .map(|&x| sigmoid(x))
            .collect();
        let calibrated = f64s(&format!("{algo}_calibrated"));
        let v = evaluate(&raw, &labels);
        close(v.roc_auc, &c["validation"]["roc_auc"], algo);
        close(v.pr_auc, &c["validation"]["pr_auc"], algo);
        close(
            log_loss(&calibrated, &labels),
            &c["calibrated_log_loss"],
            algo,
        );
        close(brier(&calibrated, &labels), &c["calibrated_brier"], algo);
        if algo == champion {
            seen_champion = true;
            let cal = evaluate(&calibrated, &labels);
            close(
                cal.roc_auc,
                &m["champion_calibrated"]["roc_auc"],
                "champion",
            );
            close(cal.brier, &m["champion_calibrated"]["brier"], "champion");
        }
    }
    assert!(seen_champion, "{champion} is among the candidates");
    // The thresholds come from the shipped calibration's probabilities.
    let shipped = f64s("champion_probability");
    for tier in m["thresholds"]["tiers"].as_array().unwrap() {
        let thr = tier["threshold"].as_f64().unwrap();
        let flagged: Vec<usize> = (0..shipped.len()).filter(|&i| shipped[i] >= thr).collect();
        let tp = flagged.iter().filter(|&&i| labels[i]).count() as f64;
        close(
            tp / flagged.len() as f64,
            &tier["precision"],
            "tier precision",
        );
    }
}

/// Everything the alert state holds about customers and alerts (not the nights): a
/// refused run must leave it as it was.
pub(crate) fn alert_state(outbox: &Path) -> Vec<String> {
    let conn = rusqlite::Connection::open(outbox).unwrap();
    let mut out = Vec::new();
    for sql in [
        "SELECT customer_id || ' ' || last_tier || ' ' || last_scored_at || ' ' || IFNULL(last_alert_at, '') FROM customer_state ORDER BY customer_id",
        "SELECT idempotency_key || ' ' || status || ' ' || payload FROM alerts ORDER BY seq",
        "SELECT idempotency_key || ' ' || sink || ' ' || status FROM deliveries ORDER BY 1",
    ] {
        let mut stmt = conn.prepare(sql).unwrap();
        let rows = stmt.query_map([], |r| r.get::<_, String>(0)).unwrap();
        out.extend(rows.map(Result::unwrap));
    }
    out
}

/// The refusal's reason and message, failing the test on any other outcome.
fn refused(r: churnguard::Result<batch::BatchSummary>) -> (RefusalReason, String) {
    match r {
        Err(Error::Refused {
            reason, message, ..
        }) => (reason, message),
        Err(e) => panic!("expected a refusal, got the error {e}"),
        Ok(s) => panic!(
            "expected a refusal, scored {} customers",
            s.customers_scored
        ),
    }
}

/// The night after the sample's last day: what a nightly run scores.
fn night_after_the_data(base: &CustomerBase) -> i64 {
    let end = base.data_end().unwrap();
    end.div_euclid(DAY) * DAY + DAY
}

use churnguard::error::RefusalReason;
use churnguard::time::DAY;
use churnguard::Error;

#[test]
fn a_night_far_past_the_data_is_refused_and_nothing_is_written_or_sent() {
    let (s, base, opts, _) = night("refuse-future", "2024-12-01");
    let log = opts.alerts_log.clone().unwrap();
    let (scores_before, log_before) = (
        std::fs::read(&opts.out).unwrap(),
        std::fs::read(&log).unwrap(),
    );
    let summary_before = std::fs::read(batch::summary_path(&opts.out)).unwrap();
    let state_before = alert_state(&opts.outbox);
    assert!(!log_before.is_empty() && !state_before.is_empty());
    let future = BatchOptions {
        as_of: parse_ts("2030-01-01").unwrap(),
        ..opts.clone()
    };
    let dated = BatchOptions {
        out: opts.out.with_file_name("2030-01-01.parquet"),
        ..future.clone()
    };
    // Issue 15 (c): `score --as-of 9999-01-01` scored every customer high and dated their
    // states so far ahead that the next real night raised no alert.
    let far = BatchOptions {
        as_of: parse_ts("9999-01-01").unwrap(),
        ..opts.clone()
    };
    for o in [&future, &dated, &far] {
        let (reason, message) = refused(batch::run(&base, &s, o, &|_| {}));
        assert_eq!(reason, RefusalReason::AsOfAfterData);
        assert!(message.contains("after the data ends"), "{message}");
    }
    assert!(!dated.out.exists());
    assert_eq!(std::fs::read(&opts.out).unwrap(), scores_before);
    assert_eq!(
        std::fs::read(batch::summary_path(&opts.out)).unwrap(),
        summary_before
    );
    assert_eq!(std::fs::read(&log).unwrap(), log_before, "no alert sent");
    assert_eq!(alert_state(&opts.outbox), state_before);
    // Both refusals are recorded and counted, until the next successful night.
    let outbox = churnguard::alerts::Outbox::open(&opts.outbox).unwrap();
    let r = outbox.refusals_since_last_success().unwrap();
    assert_eq!(r.total, 3);
    assert_eq!(r.by_reason["as_of_after_data"], 3);
    assert_eq!(r.last_success_as_of, Some(opts.as_of));
    let nights = outbox.nights().unwrap();
    assert_eq!(nights.len(), 4);
    assert!(nights[1].refused && nights[2].refused && nights[3].refused && !nights[0].refused);
    assert!(nights[3]
        .detail
        .as_deref()
        .unwrap()
        .contains("after the data ends"));
    let next = BatchOptions {
        as_of: opts.as_of + DAY,
        ..opts.clone()
    };
    batch::run(&base, &s, &next, &|_| {}).unwrap();
    assert_eq!(outbox.refusals_since_last_success().unwrap().total, 0);
    // No customer's state is dated after the real night: its scores were not stale.
    let latest: i64 = rusqlite::Connection::open(&opts.outbox)
        .unwrap()
        .query_row("SELECT MAX(last_scored_at) FROM customer_state", [], |r| {
            r.get(0)
        })
        .unwrap();
    assert!(latest <= next.as_of, "a state dated {latest}");
}

#[test]
fn a_night_before_any_signup_is_refused() {
    let s = scorer();
    let base = load_dir(sample_parquet());
    let opts = options("refuse-past", "2020-01-01");
    let (reason, message) = refused(batch::run(&base, &s, &opts, &|_| {}));
    assert_eq!(reason, RefusalReason::AsOfBeforeSignups);
    assert!(message.contains("not after the first signup"), "{message}");
    assert!(!opts.out.exists() && !batch::summary_path(&opts.out).exists());
    assert!(!opts.alerts_log.as_ref().unwrap().exists());
    assert!(alert_state(&opts.outbox).is_empty());
    let outbox = churnguard::alerts::Outbox::open(&opts.outbox).unwrap();
    let r = outbox.refusals_since_last_success().unwrap();
    assert_eq!((r.total, r.by_reason["as_of_before_signups"]), (1, 1));
}

/// The sample with every ticket opened in the last `days` days before `as_of` dropped,
/// as when the ticket export stopped arriving.
fn without_recent_tickets(base: &CustomerBase, as_of: i64, days: i64) -> CustomerBase {
    let tickets = base.tickets.as_ref().unwrap();
    let (mut who, mut rows) = (Vec::new(), Vec::new());
    for c in 0..base.customers.len() {
        for t in tickets
            .of(c)
            .iter()
            .filter(|t| t.opened < as_of - days * DAY)
        {
            who.push(c as u32);
            rows.push(*t);
        }
    }
    let mut stale = base.clone();
    stale.tickets = Some(churnguard::data::Grouped::build(
        base.customers.len(),
        &who,
        rows,
    ));
    stale
}

#[test]
fn a_table_that_stopped_arriving_is_refused_unless_allow_stale() {
    let s = scorer();
    let base = load_dir(sample_parquet());
    let as_of = night_after_the_data(&base);
    let date = churnguard::time::fmt_date(as_of);
    // The sample itself is fresh the night after its last day.
    let fresh = options("stale-fresh", &date);
    let ok = batch::run(&base, &s, &fresh, &|_| {}).unwrap();
    assert!(ok.input_warnings.is_empty(), "{:?}", ok.input_warnings);
    // Tickets ending ten days earlier: the data as a whole reaches the night, the
    // tickets do not.
    let stale = without_recent_tickets(&base, as_of, 10);
    assert_eq!(stale.data_end(), base.data_end());
    let opts = options("stale-tickets", &date);
    let (reason, message) = refused(batch::run(&stale, &s, &opts, &|_| {}));
    assert_eq!(reason, RefusalReason::StaleTable);
    assert!(message.contains("table `tickets` ends on"), "{message}");
    assert!(
        !message.contains("logins") && !message.contains("orders"),
        "{message}"
    );
    assert!(!opts.out.exists() && alert_state(&opts.outbox).is_empty());
    // A looser limit, or --allow-stale, scores the night.
    let loose = BatchOptions {
        guard: InputGuard {
            max_data_age_days: 12,
            ..InputGuard::default()
        },
        ..options("stale-loose", &date)
    };
    assert!(batch::run(&stale, &s, &loose, &|_| {})
        .unwrap()
        .input_warnings
        .is_empty());
    let forced = BatchOptions {
        guard: InputGuard {
            allow_stale: true,
            ..InputGuard::default()
        },
        ..opts.clone()
    };
    let summary = batch::run(&stale, &s, &forced, &|_| {}).unwrap();
    assert_eq!(summary.customers_scored, ok.customers_scored);
    assert_eq!(summary.input_warnings.len(), 1);
    assert!(summary.input_warnings[0].contains("tickets"));
    assert!(opts.out.exists() && !alert_state(&opts.outbox).is_empty());
    let outbox = churnguard::alerts::Outbox::open(&opts.outbox).unwrap();
    let nights = outbox.nights().unwrap();
    assert_eq!(nights.len(), 2);
    assert!(nights[0].refused && !nights[1].refused);
    // The forced night says which guard it overrode.
    assert_eq!(nights[1].reason, Some(RefusalReason::StaleTable));
    assert_eq!(outbox.refusals_since_last_success().unwrap().total, 0);
}

#[test]
fn a_population_that_collapsed_since_the_previous_night_is_refused() {
    let (s, base, opts, _) = night("collapsed", "2024-11-01");
    let state_before = alert_state(&opts.outbox);
    let next = BatchOptions {
        as_of: opts.as_of + DAY,
        out: opts.out.with_file_name("2024-11-02.parquet"),
        ..opts.clone()
    };
    // Two customers in three vanish from the export (their signup moves past the night).
    let mut partial = base.clone();
    for (c, t) in partial.customers.signup.iter_mut().enumerate() {
        if c % 3 != 0 {
            *t = next.as_of + DAY;
        }
    }
    let (reason, message) = refused(batch::run(&partial, &s, &next, &|_| {}));
    assert_eq!(reason, RefusalReason::CollapsedPopulation);
    assert!(message.contains("scored on 2024-11-01"), "{message}");
    assert!(!next.out.exists());
    assert_eq!(alert_state(&opts.outbox), state_before);
    let outbox = churnguard::alerts::Outbox::open(&opts.outbox).unwrap();
    let r = outbox.refusals_since_last_success().unwrap();
    assert_eq!((r.total, r.by_reason["collapsed_population"]), (1, 1));
    // The whole base the night after is no collapse.
    batch::run(&base, &s, &next, &|_| {}).unwrap();
}

#[test]
fn tier_change_compares_with_the_previous_night_whatever_the_file_name() {
    let (s, base, opts, _) = night("tier-change", "2024-11-01");
    let first: serde_json::Value =
        serde_json::from_slice(&std::fs::read(batch::summary_path(&opts.out)).unwrap()).unwrap();
    let second_night = BatchOptions {
        as_of: opts.as_of + 7 * DAY,
        out: opts.out.with_file_name("2024-11-08.parquet"),
        ..opts.clone()
    };
    let second = batch::run(&base, &s, &second_night, &|_| {}).unwrap();
    assert_eq!(second.previous_night.as_deref(), Some("2024-11-01"));
    let before = |t: &str| first["tiers"][t].as_i64().unwrap();
    for t in ["high", "medium", "low"] {
        assert_eq!(
            second.tier_change[t],
            second.tiers[t] as i64 - before(t),
            "{t}: {:?} vs {first}",
            second.tiers
        );
    }
    assert!(before("low") > 0, "a change that differs from the counts");
    // Re-running the second night (to yet another file) compares with the first again,
    // not with itself.
    let rerun = BatchOptions {
        out: opts.out.with_file_name("rerun.parquet"),
        ..second_night.clone()
    };
    let again = batch::run(&base, &s, &rerun, &|_| {}).unwrap();
    assert_eq!(again.tier_change, second.tier_change);
    assert_eq!(again.previous_night.as_deref(), Some("2024-11-01"));
}

#[test]
fn the_cli_exits_3_with_the_reason_when_it_refuses_a_night() {
    let dir = scratch("cli-refused");
    let out = dir.join("2030-01-01.parquet");
    let run = std::process::Command::new(env!("CARGO_BIN_EXE_churnguard"))
        .env_clear()
        .args(["score", "--data"])
        .arg(sample_parquet())
        .arg("--models")
        .arg(trained())
        .args(["--as-of", "2030-01-01", "--out"])
        .arg(&out)
        .arg("--outbox")
        .arg(dir.join("alerts.db"))
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert_eq!(run.status.code(), Some(3), "{stderr}");
    assert!(
        stderr.contains("refused to score as of 2030-01-01"),
        "{stderr}"
    );
    assert!(stderr.contains("--allow-stale"), "{stderr}");
    assert!(!out.exists());
}

/// The names in `dir` that are temporary files of a writer.
pub(crate) fn temporaries(dir: &Path) -> Vec<String> {
    let mut names = crate::common::entries(dir);
    names.retain(|n| n.starts_with(churnguard::fsutil::TMP_PREFIX));
    names
}

#[test]
fn a_night_whose_alert_step_fails_keeps_the_previous_files_and_state_and_no_temporaries() {
    let s = scorer();
    let base = load_dir(sample_parquet());
    let opts = options("alert-step-fails", "2024-10-01");
    batch::run(&base, &s, &opts, &|_| {}).unwrap();
    let scores_before = std::fs::read(&opts.out).unwrap();
    let summary_before = std::fs::read(batch::summary_path(&opts.out)).unwrap();
    let state_before = alert_state(&opts.outbox);
    let history_before = history_files(&opts.history);
    assert_eq!(
        history_before.keys().collect::<Vec<_>>(),
        ["as_of=2024-10-01", "as_of=2024-10-01/part.parquet"]
    );
    let next = BatchOptions {
        as_of: opts.as_of + DAY,
        ..opts.clone()
    };
    // Another process breaks the alert state once the night's scores are computed and
    // staged: the night's transaction cannot commit.
    let sabotage = |stage: &str| {
        if stage == "alerts" {
            rusqlite::Connection::open(&opts.outbox)
                .unwrap()
                .execute_batch("DROP TABLE nights")
                .unwrap();
        }
    };
    let err = batch::run(&base, &s, &next, &sabotage)
        .unwrap_err()
        .chain()
        .to_string();
    assert!(err.contains("no such table: nights"), "{err}");
    assert_eq!(std::fs::read(&opts.out).unwrap(), scores_before);
    assert_eq!(
        std::fs::read(batch::summary_path(&opts.out)).unwrap(),
        summary_before
    );
    assert_eq!(alert_state(&opts.outbox), state_before);
    assert_eq!(
        temporaries(opts.out.parent().unwrap()),
        Vec::<String>::new()
    );
    assert_eq!(
        history_files(&opts.history),
        history_before,
        "the failed night left the history as it was"
    );
    // The next attempt of the night goes through as if the failed one never ran.
    let retried = batch::run(&base, &s, &next, &|_| {}).unwrap();
    assert!(retried.alerts_new > 0, "{retried:?}");
    assert_ne!(std::fs::read(&opts.out).unwrap(), scores_before);
}

#[test]
fn a_night_killed_between_its_commit_and_its_renames_is_finished_by_the_next_run() {
    use churnguard::alerts::{Night, Outbox, RecordSummary};
    use churnguard::fsutil::stage_with;
    use std::io::Write as _;
    let s = scorer();
    let base = load_dir(sample_parquet());
    let opts = options("killed-after-commit", "2024-10-01");
    batch::run(&base, &s, &opts, &|_| {}).unwrap();
    let dir = opts.out.parent().unwrap().to_path_buf();
    // What a run of the next night killed right after its commit leaves: its files staged
    // beside their paths and recorded with the night, not yet renamed.
    let dated = dir.join("2024-10-02.parquet");
    let bytes = std::fs::read(&opts.out).unwrap();
    let outbox = Outbox::open(&opts.outbox).unwrap();
    let night = Night {
        as_of: opts.as_of + DAY,
        finished_at: 0,
        model: "churn v1".into(),
        customers: 0,
        tiers: Default::default(),
        refused: false,
        reason: None,
        detail: None,
    };
    let mut stage = |_: &RecordSummary| {
        let staged = stage_with(&dated, |f| {
            f.write_all(&bytes)
                .map_err(|e| churnguard::Error::io(&dated, e))
        })?;
        Ok(vec![staged.keep()?])
    };
    let no_alert = |_: &churnguard::alerts::Transition<'_>| -> churnguard::alerts::Alert {
        unreachable!("no customer observed")
    };
    outbox
        .record_night(&AlertPolicy::default(), &[], no_alert, &night, &mut stage)
        .unwrap();
    drop(outbox);
    assert!(!dated.exists());
    assert_eq!(temporaries(&dir).len(), 1);
    // A run killed before its commit leaves a temporary nobody recorded (an hour old).
    let orphan = dir.join(format!(
        "{}scores.parquet.killed.tmp",
        churnguard::fsutil::TMP_PREFIX
    ));
    std::fs::write(&orphan, b"half a score file").unwrap();
    let hours_ago = std::time::SystemTime::now() - std::time::Duration::from_secs(2 * 3600);
    std::fs::File::options()
        .write(true)
        .open(&orphan)
        .unwrap()
        .set_modified(hours_ago)
        .unwrap();
    let later = BatchOptions {
        as_of: opts.as_of + 2 * DAY,
        ..opts.clone()
    };
    let third = batch::run(&base, &s, &later, &|_| {}).unwrap();
    assert_eq!(std::fs::read(&dated).unwrap(), bytes, "rolled forward");
    assert_eq!(temporaries(&dir), Vec::<String>::new());
    assert_eq!(third.previous_night.as_deref(), Some("2024-10-02"));
}

/// The value of the sample line `series` (name and labels exactly) in a Prometheus text.
fn sample(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' '))
        .map(|v| v.parse().unwrap())
}

#[test]
fn the_metrics_textfile_carries_the_nights_drift_and_health_and_then_its_refusal() {
    let s = scorer();
    let base = load_dir(sample_parquet());
    let plain = options("metrics-textfile", "2024-12-01");
    let textfile = plain.out.with_file_name("churnguard.prom");
    let opts = BatchOptions {
        metrics_textfile: Some(textfile.clone()),
        ..plain
    };
    let summary = batch::run(&base, &s, &opts, &|_| {}).unwrap();
    let text = std::fs::read_to_string(&textfile).unwrap();
    let json: serde_json::Value =
        serde_json::from_slice(&std::fs::read(batch::summary_path(&opts.out)).unwrap()).unwrap();
    // Every defined PSI of the summary file, exactly (the text's numbers round-trip).
    let mut checked = 0;
    for f in json["feature_psi"].as_array().unwrap() {
        let series = format!(
            "churnguard_feature_psi{{model=\"churn\",model_version=\"{}\",feature=\"{}\"}}",
            s.version,
            f["feature"].as_str().unwrap()
        );
        match f["psi"].as_f64() {
            Some(psi) => {
                assert_eq!(sample(&text, &series), Some(psi), "{series} in\n{text}");
                checked += 1;
            }
            None => assert_eq!(sample(&text, &series), None),
        }
    }
    assert!(checked > 3, "{text}");
    let score_psi = format!(
        "churnguard_score_psi{{model=\"churn\",model_version=\"{}\"}}",
        s.version
    );
    assert_eq!(sample(&text, &score_psi), json["score_psi"].as_f64());
    assert_eq!(
        sample(&text, "churnguard_nightly_last_success_customers"),
        Some(summary.customers_scored as f64)
    );
    assert_eq!(
        sample(&text, "churnguard_batch_alerts_raised"),
        Some(summary.alerts_raised as f64)
    );
    // The textfile sums the stages in key order (the summary's JSON); this map's order
    // is random, so the sums may differ in the last bit.
    let duration: f64 = summary.seconds.values().sum();
    let seen = sample(&text, "churnguard_batch_duration_seconds").unwrap();
    assert!(
        (seen - duration).abs() <= 1e-12 * duration.max(1.0),
        "{seen} vs {duration}"
    );
    assert!(sample(&text, "churnguard_nightly_last_success_timestamp_seconds").unwrap() > 1.7e9);
    assert!(!text.contains("customer_id") && !text.contains("_total{customer"));
    // Nothing but the outputs is left beside them (no temporary file).
    let dir = textfile.parent().unwrap();
    let names = crate::common::entries(dir);
    assert!(names.iter().all(|n| !n.contains(".tmp")), "{names:?}");

    // A refused night rewrites the file with its refusal, keeping the last good night's drift.
    let refused_night = BatchOptions {
        as_of: parse_ts("2030-01-01").unwrap(),
        ..opts.clone()
    };
    let (reason, _) = refused(batch::run(&base, &s, &refused_night, &|_| {}));
    let after = std::fs::read_to_string(&textfile).unwrap();
    let series = format!("{{reason=\"{}\"}}", reason.as_str());
    assert_eq!(
        sample(&after, &format!("churnguard_nightly_refused_total{series}")),
        Some(1.0)
    );
    assert_eq!(
        sample(
            &after,
            &format!("churnguard_nightly_refusals_since_success{series}")
        ),
        Some(1.0)
    );
    assert_eq!(sample(&after, &score_psi), json["score_psi"].as_f64());
    assert_eq!(
        sample(&after, "churnguard_nightly_last_success_timestamp_seconds"),
        sample(&text, "churnguard_nightly_last_success_timestamp_seconds")
    );
}

/// Every file below the history directory (temporaries and empty partitions included,
/// as paths) with the hex SHA-256 of its bytes.
fn history_files(dir: &Path) -> std::collections::BTreeMap<String, String> {
    use sha2::Digest;
    let mut out = std::collections::BTreeMap::new();
    for night in std::fs::read_dir(dir).unwrap() {
        let night = night.unwrap().path();
        let name = night.file_name().unwrap().to_string_lossy().into_owned();
        out.insert(name.clone(), String::new());
        for f in std::fs::read_dir(&night).unwrap() {
            let f = f.unwrap().path();
            let file = f.file_name().unwrap().to_string_lossy().into_owned();
            let digest = sha2::Sha256::digest(std::fs::read(&f).unwrap());
            out.insert(format!("{name}/{file}"), hex::encode(digest));
        }
    }
    out
}

#[test]
fn the_history_holds_each_nights_scores_gives_the_30_day_trend_and_a_rerun_changes_nothing() {
    use churnguard::history::History;
    use churnguard::scoring::{Trend, Trend30};
    let s = scorer();
    let base = load_dir(sample_parquet());
    let opts = options("history-nights", "2024-09-01");
    let nights = ["2024-09-01", "2024-09-16", "2024-10-01"].map(|n| parse_ts(n).unwrap());
    let mut files = Vec::new();
    for &as_of in &nights {
        let night = BatchOptions {
            as_of,
            ..opts.clone()
        };
        batch::run(&base, &s, &night, &|_| {}).unwrap();
        files.push(scores::read(&night.out).unwrap());
    }
    let h = History::new(&opts.history);
    assert_eq!(h.nights().unwrap(), nights.to_vec());
    // Each partition holds exactly its night's probabilities and tiers, in three columns.
    for (&night, file) in nights.iter().zip(&files) {
        let df = read_parquet(&h.partition(night));
        let names: Vec<String> = df
            .get_column_names()
            .iter()
            .map(|c| c.to_string())
            .collect();
        assert_eq!(names, ["customer_id", "churn_probability", "risk_tier"]);
        assert_eq!(df.height(), file.len());
        let ids = df.column("customer_id").unwrap().str().unwrap().clone();
        let p = df
            .column("churn_probability")
            .unwrap()
            .f64()
            .unwrap()
            .clone();
        let tier = df.column("risk_tier").unwrap().str().unwrap().clone();
        for i in 0..df.height() {
            let rec = &file[ids.get(i).unwrap()];
            assert_eq!(p.get(i).unwrap().to_bits(), rec.churn_probability.to_bits());
            assert_eq!(tier.get(i).unwrap(), rec.risk_tier.as_str());
        }
    }
    // Nights 1 and 2 have no night 30 days back; night 3 (2024-10-01) compares with
    // 2024-09-01, exactly 30 days before.
    for file in &files[..2] {
        assert!(file.values().all(|r| r.trend30() == Trend30::default()));
    }
    let mut seen = std::collections::BTreeMap::new();
    for (id, rec) in &files[2] {
        let before = files[0].get(id).map(|r| r.churn_probability);
        let want = Trend30::of(rec.churn_probability, before);
        assert_eq!(rec.trend30(), want, "{id}");
        if let (Some(c), Some(b)) = (rec.change_30d, before) {
            assert_eq!(c.to_bits(), (rec.churn_probability - b).to_bits(), "{id}");
        }
        *seen.entry(rec.trend.as_str()).or_insert(0) += 1;
    }
    for t in [Trend::Rising, Trend::Falling, Trend::Steady] {
        assert!(seen.contains_key(t.as_str()), "{seen:?}");
    }
    // A customer scored every night: its series is the three nights, oldest first.
    let id = files[2]
        .keys()
        .find(|id| files[0].contains_key(*id) && files[1].contains_key(*id))
        .unwrap();
    let series = h.series(id, 90).unwrap();
    let got: Vec<(String, f64, Tier)> = series
        .points
        .iter()
        .map(|p| (p.as_of.clone(), p.churn_probability, p.risk_tier))
        .collect();
    let want: Vec<(String, f64, Tier)> = nights
        .iter()
        .zip(&files)
        .map(|(&n, f)| {
            (
                churnguard::time::fmt_ts(n),
                f[id].churn_probability,
                f[id].risk_tier,
            )
        })
        .collect();
    assert_eq!(got, want);
    // Re-running the middle night rewrites its partition with the same bytes and
    // touches no other night.
    let before = history_files(&opts.history);
    let rerun = BatchOptions {
        as_of: nights[1],
        ..opts.clone()
    };
    batch::run(&base, &s, &rerun, &|_| {}).unwrap();
    assert_eq!(history_files(&opts.history), before);
}

#[test]
fn a_batch_alert_is_a_task_with_profile_trail_owner_and_due_date_and_nothing_after_as_of() {
    let s = scorer();
    let base = load_dir(sample_parquet());
    let mut opts = options("alert-task", "2024-10-01");
    opts.task = churnguard::alerts::TaskConfig {
        profile_attributes: vec!["country".into(), "channel".into()],
        owner_attribute: Some("channel".into()),
        due_days: 5,
        ..Default::default()
    };
    let summary = batch::run(&base, &s, &opts, &|_| {}).unwrap();
    assert!(summary.alerts_new > 0);
    let log = std::fs::read_to_string(opts.alerts_log.as_ref().unwrap()).unwrap();
    let as_of = opts.as_of;
    let before_as_of = |v: &serde_json::Value, what: &str| {
        let t = parse_ts(v.as_str().unwrap()).unwrap();
        assert!(t < as_of, "{what} {v} is not before the night");
    };
    for line in log.lines() {
        let a: serde_json::Value = serde_json::from_str(line).unwrap();
        let id = a["customer_id"].as_str().unwrap();
        let c = base.customers.index[id] as usize;
        let attr = |name: &str| match base.customers.attribute(name).unwrap() {
            churnguard::data::Attribute::Categorical(v) => v[c].clone(),
            churnguard::data::Attribute::Numeric(_) => unreachable!("text attributes"),
        };
        assert_eq!(
            a["owner"].as_str().map(String::from),
            attr("channel"),
            "{a}"
        );
        assert_eq!(
            a["profile"]["plan"].as_str().map(String::from),
            attr("plan")
        );
        assert_eq!(
            a["profile"]["attributes"]["country"]
                .as_str()
                .map(String::from),
            attr("country")
        );
        let signup = base.customers.signup[c];
        assert_eq!(
            a["profile"]["tenure_days"].as_f64().unwrap(),
            ((as_of - signup) / DAY) as f64
        );
        let raised = parse_ts(a["raised_at"].as_str().unwrap()).unwrap();
        assert_eq!(
            parse_ts(a["due_at"].as_str().unwrap()),
            Some(raised + 5 * DAY)
        );
        assert_eq!(a["trend"]["trend"], "unknown", "no history 30 days back");
        // The trail: nothing at or after the night.
        let trail = &a["trail"];
        for t in trail["logins"].as_array().unwrap() {
            before_as_of(t, "login");
        }
        for o in trail["orders"].as_array().unwrap() {
            before_as_of(&o["at"], "order");
        }
        for t in trail["tickets"].as_array().unwrap() {
            before_as_of(&t["opened_at"], "ticket");
            if !t["closed_at"].is_null() {
                before_as_of(&t["closed_at"], "ticket closure");
            }
        }
        let weekly = trail["weekly"].as_array().unwrap();
        assert_eq!(weekly.len(), 12);
        assert_eq!(
            parse_ts(weekly[11]["week_start"].as_str().unwrap()),
            Some(as_of - 7 * DAY)
        );
        let logins_before = base
            .logins
            .as_ref()
            .unwrap()
            .of(c)
            .iter()
            .filter(|&&t| t < as_of)
            .count();
        let listed = trail["logins"].as_array().unwrap().len();
        assert_eq!(listed, logins_before.min(10), "{id}");
    }
}

#[test]
fn the_exported_training_set_holds_the_trainers_matrix_row_for_row() {
    // The export computes features customer by customer and copies frames out; the
    // trainer computes them in example order: every cell must be the same.
    use churnguard::settings::{DataSource, FeatureSettings};
    let base = load_dir(sample_parquet());
    let set = TrainingSet::build(&base, &LabelConfig::default(), &attrs()).unwrap();
    let fs = FeatureSettings {
        data: DataSource {
            dir: sample_parquet().to_path_buf(),
            skip_bad_rows: false,
        },
        labels: LabelConfig::default(),
        attributes: attrs(),
        model: None,
        as_of: None,
        out: scratch("training-set-matrix").join("unused.parquet"),
    };
    let df = churnguard::export::training_set(&base, &fs).unwrap();
    let w = set.spec.len();
    assert_eq!(df.height(), set.examples.len());
    let ids = df.column("customer_id").unwrap().str().unwrap().clone();
    for (i, e) in set.examples.iter().enumerate() {
        assert_eq!(
            ids.get(i),
            Some(base.customers.ids[e.customer as usize].as_str())
        );
    }
    let mut nulls = 0;
    for (j, name) in set.spec.names().iter().enumerate() {
        let col = df.column(name).unwrap().f64().unwrap().clone();
        for i in 0..set.examples.len() {
            let want = set.x[i * w + j];
            match col.get(i) {
                Some(v) => assert_eq!(v.to_bits(), want.to_bits(), "{name}, row {i}"),
                None => {
                    assert!(!want.is_finite(), "{name}, row {i}: null for {want}");
                    nulls += 1;
                }
            }
        }
    }
    assert!(nulls > 0, "the sample has features without a value (nulls)");
}
