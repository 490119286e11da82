//! The training report: data, comparison, curves, calibration, importances, thresholds.

/// Every dimension's share of a model's importance (the sum of its features'), in
/// [`crate::features::Dimension::ALL`]'s order.
pub fn importance_by_dimension(
    spec: &crate::features::FeatureSpec,
    importance: &[f64],
) -> Vec<(crate::features::Dimension, f64)> {
    let mut sum = [0.0; 4];
    for (d, v) in spec.defs().iter().zip(importance) {
        sum[d.dimension.index()] += v;
    }
    crate::features::Dimension::ALL
        .into_iter()
        .zip(sum)
        .collect()
}

use super::{Candidate, TierStats, TrainingSet};
use crate::data::CustomerBase;
use crate::labels::Split;
use crate::metrics::{self, Evaluation};
use crate::model::{sigmoid, Artifact, FittedModel};
use crate::report::svg::{self, Axes, Series};
use crate::report::Report;
use crate::time::fmt_date;

fn f3(x: f64) -> String {
    if x.is_finite() {
        format!("{x:.3}")
    } else {
        "n/a".into()
    }
}

fn pct(x: f64) -> String {
    if x.is_finite() {
        format!("{:.1}%", 100.0 * x)
    } else {
        "n/a".into()
    }
}

/// The evaluation results a report shows.
pub(super) struct Evidence<'a> {
    pub candidates: &'a [Candidate],
    /// Every candidate's validation margins.
    pub curves: &'a [(crate::model::Algorithm, Vec<f64>)],
    pub calibrated: &'a Evaluation,
    pub tiers: &'a [TierStats],
    pub metrics_json: &'a serde_json::Value,
}

/// Renders `report.html`.
pub(super) fn render(
    base: &CustomerBase,
    set: &TrainingSet,
    artifact: &Artifact,
    evidence: &Evidence,
) -> String {
    let Evidence {
        candidates,
        curves,
        calibrated,
        tiers,
        metrics_json,
    } = *evidence;
    let champion = artifact.model.algorithm();
    let mut r = Report::new(&format!(
        "churnguard training report: {} champion",
        champion.name()
    ));
    let s = &base.summary;

    if let Some(warnings) = metrics_json["warnings"]
        .as_array()
        .filter(|w| !w.is_empty())
    {
        let sec = r.section("Before you rely on this model");
        for w in warnings.iter().filter_map(|w| w.as_str()) {
            sec.warning(&format!("{w}."));
        }
    }

    // Data.
    let sec = r.section("Data");
    let mut kv = vec![
        ("customer base", s.directory.clone()),
        ("customers", s.customers.to_string()),
        ("churn definition", set.plan.definition.describe()),
        ("horizon", format!("{} days", set.plan.horizon_days)),
        ("data end used for labels", fmt_date(set.plan.data_end)),
    ];
    if let Some((a, b)) = s.time_range {
        kv.push(("time range", format!("{} .. {}", fmt_date(a), fmt_date(b))));
    }
    kv.push(("rows skipped as bad", s.bad_rows().to_string()));
    kv.push(("orphan rows ignored", s.orphans().to_string()));
    sec.key_values(&kv);
    let rows: Vec<Vec<String>> = s
        .tables
        .iter()
        .map(|t| {
            vec![
                t.table.clone(),
                t.rows.to_string(),
                t.orphans.to_string(),
                t.bad_rows.to_string(),
            ]
        })
        .collect();
    sec.table(&["table", "rows", "orphans", "bad rows"], &rows);
    for m in set.spec.left_out() {
        sec.warning(&format!("Features left out: {m}."));
    }
    for (d, why) in &set.plan.dropped {
        sec.paragraph(&format!("Snapshot {d} dropped: {why}."));
    }

    // Snapshots.
    let sec = r.section("Snapshots and labels");
    let mut snap_rows = Vec::new();
    let mut rate_train = Vec::new();
    let mut rate_val = Vec::new();
    for (k, snap) in set.plan.snapshots.iter().enumerate() {
        let (n, p) = set
            .examples
            .iter()
            .filter(|e| e.as_of == snap.as_of)
            .fold((0usize, 0usize), |(n, p), e| {
                (n + 1, p + usize::from(e.label))
            });
        let rate = p as f64 / n.max(1) as f64;
        snap_rows.push(vec![
            fmt_date(snap.as_of),
            snap.split.as_str().into(),
            n.to_string(),
            p.to_string(),
            pct(rate),
        ]);
        match snap.split {
            Split::Train => rate_train.push((k as f64, rate)),
            Split::Validation => rate_val.push((k as f64, rate)),
        }
    }
    sec.table(
        &["as of", "split", "customers", "churned", "churn rate"],
        &snap_rows,
    );
    sec.chart(svg::line_chart(
        &Axes::new(
            "Churn rate per snapshot",
            "snapshot (oldest first)",
            "churn rate within the horizon",
        ),
        &[
            Series::new("train", rate_train),
            Series::new("validation", rate_val),
        ],
        false,
    ));
    sec.reading("The positive rate of every snapshot; validation snapshots are the latest ones, never shuffled with training.");

    // Comparison.
    let sec = r.section("Algorithm comparison (validation snapshots)");
    let rows: Vec<Vec<String>> = candidates
        .iter()
        .map(|c| {
            let v = &c.validation;
            vec![
                c.algorithm.name().into(),
                f3(v.roc_auc),
                f3(v.pr_auc),
                f3(v.log_loss),
                f3(v.brier),
                f3(c.calibrated_log_loss),
                f3(c.calibrated_brier),
                v.top
                    .first()
                    .map_or("n/a".into(), |t| format!("{:.2}", t.lift)),
                v.top.get(1).map_or("n/a".into(), |t| pct(t.capture)),
                v.top.get(2).map_or("n/a".into(), |t| pct(t.capture)),
                format!("{:.1}", c.fit_seconds),
            ]
        })
        .collect();
    sec.table(
        &[
            "algorithm",
            "ROC AUC",
            "PR AUC",
            "log loss",
            "Brier",
            "log loss (cal.)",
            "Brier (cal.)",
            "lift top 5%",
            "capture top 10%",
            "capture top 20%",
            "fit s",
        ],
        &rows,
    );
    sec.paragraph(&format!(
        "Champion: {} (rule: {}). Calibrated columns are Platt-scaled and cross-fitted over two halves of the validation customers.",
        champion.name(),
        metrics_json["champion_rule"].as_str().unwrap_or_default()
    ));
    if let (Some(forest), Some(gbdt)) = (
        candidates.iter().find(|c| c.algorithm.name() == "forest"),
        candidates.iter().find(|c| c.algorithm.name() == "gbdt"),
    ) {
        sec.paragraph(&format!(
            "Forest vs gbdt on validation: ROC AUC {} vs {}, PR AUC {} vs {}. The forest only becomes champion when it beats boosting here.",
            f3(forest.validation.roc_auc), f3(gbdt.validation.roc_auc), f3(forest.validation.pr_auc), f3(gbdt.validation.pr_auc)
        ));
    }

    // Validation labels in example order, matching every candidate's margins.
    let yv: Vec<bool> = set
        .examples
        .iter()
        .filter(|e| e.split == Split::Validation)
        .map(|e| e.label)
        .collect();
    let margins = &curves
        .iter()
        .find(|(a, _)| *a == champion)
        .expect("the champion is one of the candidates")
        .1;
    let raw: Vec<f64> = margins.iter().map(|&m| sigmoid(m)).collect();
    let cal: Vec<f64> = margins
        .iter()
        .map(|&m| artifact.calibration.apply(m))
        .collect();
    let base_rate = yv.iter().filter(|&&l| l).count() as f64 / yv.len().max(1) as f64;
    let sec = r.section("Ranking: ROC, precision-recall and gains");
    sec.chart(svg::line_chart(
        &Axes::new(
            "ROC curve (validation)",
            "false positive rate",
            "true positive rate",
        )
        .with_x_range(0.0, 1.0)
        .with_y_range(0.0, 1.0),
        &curves
            .iter()
            .map(|(a, m)| Series::new(a.name(), metrics::roc_curve(m, &yv)))
            .collect::<Vec<_>>(),
        true,
    ));
    sec.reading(&format!(
        "Every algorithm on the same validation snapshots; the champion's ROC AUC {} is the chance that a churner is ranked above a customer who stays.",
        f3(metrics::roc_auc(&cal, &yv))
    ));
    sec.chart(svg::line_chart(
        &Axes::new("Precision-recall (validation)", "recall", "precision")
            .with_x_range(0.0, 1.0)
            .with_y_range(0.0, 1.0),
        &curves
            .iter()
            .map(|(a, m)| Series::new(a.name(), metrics::pr_curve(m, &yv)))
            .chain([Series::new(
                "base rate",
                vec![(0.0, base_rate), (1.0, base_rate)],
            )])
            .collect::<Vec<_>>(),
        false,
    ));
    sec.reading(&format!("PR AUC {} against a base churn rate of {}: how precise the list stays as it reaches more churners.", f3(metrics::pr_auc(&cal, &yv)), pct(base_rate)));
    sec.chart(svg::line_chart(
        &Axes::new(
            "Cumulative gains (validation)",
            "share of customers contacted",
            "share of churners reached",
        )
        .with_x_range(0.0, 1.0)
        .with_y_range(0.0, 1.0),
        &curves
            .iter()
            .map(|(a, m)| Series::new(a.name(), metrics::gains_curve(m, &yv)))
            .collect::<Vec<_>>(),
        true,
    ));
    let top10 = metrics::top_k(&cal, &yv, 0.10);
    sec.reading(&format!(
        "Calling the top 10% reaches {} of churners (lift {:.2}); the diagonal is a random list.",
        pct(top10.capture),
        top10.lift
    ));

    // Calibration.
    let sec = r.section("Calibration");
    let before = metrics::calibration_table(&raw, &yv, 10);
    let after = calibrated.calibration.clone();
    sec.chart(svg::line_chart(
        &Axes::new(
            "Calibration (validation deciles)",
            "mean predicted probability",
            "observed churn rate",
        ),
        &[
            Series::new(
                "raw model",
                before
                    .iter()
                    .map(|b| (b.mean_predicted, b.observed_rate))
                    .collect(),
            ),
            Series::new(
                "calibrated (cross-fitted)",
                after
                    .iter()
                    .map(|b| (b.mean_predicted, b.observed_rate))
                    .collect(),
            ),
        ],
        true,
    ));
    sec.reading(&format!(
        "Points on the diagonal mean a predicted 10% churns 10% of the time. Platt a = {:.3}, b = {:.3}; calibrated Brier {} and log loss {}.",
        artifact.calibration.a, artifact.calibration.b, f3(calibrated.brier), f3(calibrated.log_loss)
    ));
    let rows: Vec<Vec<String>> = after
        .iter()
        .map(|b| {
            vec![
                pct(b.mean_predicted),
                pct(b.observed_rate),
                b.count.to_string(),
            ]
        })
        .collect();
    sec.table(&["mean predicted", "observed", "customers"], &rows);

    // Score distributions.
    let sec = r.section("Score distribution by class");
    let churned: Vec<f64> = cal
        .iter()
        .zip(&yv)
        .filter(|(_, &l)| l)
        .map(|(&p, _)| p)
        .collect();
    let stayed: Vec<f64> = cal
        .iter()
        .zip(&yv)
        .filter(|(_, &l)| !l)
        .map(|(&p, _)| p)
        .collect();
    let hi = cal.iter().copied().fold(0.0f64, f64::max).max(1e-3);
    sec.chart(svg::histogram(
        "Calibrated churn probability (validation)",
        &[("stayed".into(), stayed), ("churned".into(), churned)],
        30,
        (0.0, hi),
        true,
    ));
    sec.reading(
        "Densities of the two classes; the less they overlap, the better the model separates them.",
    );

    // Importance.
    let sec = r.section("Feature importance");
    let names = set.spec.names();
    for c in candidates {
        let mut idx: Vec<usize> = (0..c.importance.len()).collect();
        idx.sort_by(|&a, &b| c.importance[b].total_cmp(&c.importance[a]));
        idx.truncate(15);
        sec.chart(svg::bar_chart(
            &format!("{}: top features", c.algorithm.name()),
            &idx.iter()
                .map(|&i| names[i].to_string())
                .collect::<Vec<_>>(),
            &idx.iter().map(|&i| c.importance[i]).collect::<Vec<_>>(),
            "share of importance",
            true,
        ));
        sec.reading(match c.algorithm.name() {
            "logistic" => "Logistic: |coefficient| on standardised inputs, the effect of one standard deviation.",
            "tree" => "Tree: impurity decrease contributed by each feature's splits.",
            _ => "Boosted trees: total gain of each feature's splits.",
        });
    }
    // Importance by dimension: the champion's, every feature's share summed by dimension.
    if let Some(c) = candidates
        .iter()
        .find(|c| c.algorithm == artifact.model.algorithm())
    {
        let by = importance_by_dimension(&set.spec, &c.importance);
        sec.chart(svg::bar_chart(
            &format!("{} (shipped): importance by dimension", c.algorithm.name()),
            &by.iter()
                .map(|(d, _)| d.label().to_string())
                .collect::<Vec<_>>(),
            &by.iter().map(|(_, v)| *v).collect::<Vec<_>>(),
            "share of importance",
            true,
        ));
        sec.reading("Each dimension's share: the sum of its features' importance. Engagement = logins and usage events, support = tickets, billing and purchases = orders and the RFM scores, relationship = tenure and attributes. Per customer, the score file splits the SHAP contributions the same way (contribution_<dimension>, health_<dimension>, primary_driver).");
    }
    sec.paragraph(
        "Per-customer reasons are exact SHAP values: linear SHAP (logistic), path-dependent TreeSHAP (trees).",
    );
    if let FittedModel::Tree(t) = &artifact.model {
        sec.paragraph("The decision tree as rules:");
        sec.preformatted(&t.rules(&names));
    }

    // Thresholds.
    let sec = r.section("Risk tiers");
    sec.paragraph(&format!("Policy: {}.", artifact.thresholds.policy));
    let rows: Vec<Vec<String>> = tiers
        .iter()
        .map(|t| {
            vec![
                t.tier.clone(),
                format!("{:.4}", t.threshold),
                t.flagged_latest.to_string(),
                pct(t.precision),
                pct(t.recall),
            ]
        })
        .collect();
    sec.table(
        &[
            "tier (at or above)",
            "probability threshold",
            "customers flagged on the latest snapshot",
            "precision",
            "recall",
        ],
        &rows,
    );
    sec.reading("Precision and recall over all validation snapshots; the flagged count is what one nightly run would hand the retention team.");

    // Features.
    let sec = r.section("Feature schema");
    let rows: Vec<Vec<String>> = set
        .spec
        .defs()
        .iter()
        .map(|d| {
            vec![
                d.name.clone(),
                d.table.clone(),
                format!("{:?}", d.transform),
                d.description.clone(),
            ]
        })
        .collect();
    sec.table(&["feature", "table", "transform", "meaning"], &rows);
    r.to_html()
}
