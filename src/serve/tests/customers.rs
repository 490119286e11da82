//! `GET /v1/customers/{id}/score` and `/history`: the nightly score file and the score history.

use super::*;

#[tokio::test]
async fn a_customer_score_comes_from_the_nightly_file() {
    let env = Env::new();
    write_scores(
        &env.path("scores.csv"),
        &[("c-1", 0.9, "high"), ("c-2", 0.1, "low")],
    );
    let (app, _) = router(&env.config());
    let a = get(&app, "/v1/customers/c-1/score").await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.body);
    assert_eq!(a.body["customer_id"], "c-1");
    assert_eq!(a.body["churn_probability"], 0.9);
    assert_eq!(a.body["risk_tier"], "high");
    assert_eq!(a.body["model"], json!({"name": "churn", "version": "v1"}));
    assert_eq!(a.body["reasons"].as_array().unwrap().len(), 2);
    assert_eq!(a.body["reasons"][0]["feature"], "logins_30d");
    let a = get(&app, "/v1/customers/nobody/score").await;
    assert_error(&a, StatusCode::NOT_FOUND, "not_found", Some("id"));

    let mut cfg = env.config();
    cfg.scores = None;
    let (app, _) = router(&cfg);
    let a = get(&app, "/v1/customers/c-1/score").await;
    assert_error(&a, StatusCode::NOT_FOUND, "not_found", None);
}

#[tokio::test]
async fn a_customer_score_answers_the_record_of_the_score_file_early_warnings_included() {
    use crate::scores::{self, ScoreRow};
    use crate::scoring::{default_rules, evaluate, ModelRef, Reason, Score};
    let env = Env::new();
    let spec = crate::scoring::rules::tests::full_spec();
    let mut row = vec![0.0; spec.len()];
    row[spec.index_of("days_since_last_login").unwrap()] = 12.0;
    row[spec.index_of("overdue_ratio").unwrap()] = 3.0;
    let score = Score {
        churn_probability: 0.75,
        health_score: 8.0,
        risk_tier: Tier::High,
        reasons: vec![Reason {
            feature: "days_since_last_login".into(),
            value: Some(12.0),
            contribution: 0.5,
            text: "no login for 12 days (customers who stay: 2 days)".into(),
        }],
        early_warnings: evaluate(&default_rules(), &spec, &row),
        contributions: None,
        dimensions: crate::scoring::DimensionScores::from_array([0.5, -0.25, 0.0, 0.125].map(
            |contribution| crate::scoring::DimensionScore {
                contribution,
                health: 50.0,
            },
        )),
        primary_driver: Some(crate::features::Dimension::Engagement),
    };
    let path = env.path("scores.csv");
    let model = ModelRef {
        name: "churn".into(),
        version: "v1".into(),
    };
    let rows = [ScoreRow {
        customer_id: "c-7",
        score: &score,
        rfm_segment: Some("at risk"),
        trend: crate::scoring::Trend30::of(0.75, Some(0.5)),
    }];
    let as_of = crate::time::parse_ts("2024-06-01").unwrap();
    scores::write(&path, as_of, &model, &rows).unwrap();
    let record = scores::read(&path).unwrap().remove("c-7").unwrap();
    assert_eq!(record.early_warnings, ["no_login_7d", "order_overdue_1_5x"]);
    let (app, _) = router(&env.config());
    let a = get(&app, "/v1/customers/c-7/score").await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.body);
    assert_eq!(a.body, serde_json::to_value(&record).unwrap());
    assert_eq!(
        a.body["early_warnings"],
        json!(["no_login_7d", "order_overdue_1_5x"])
    );
    assert_eq!(a.body["model"], json!({"name": "churn", "version": "v1"}));
    assert_eq!(a.body["probability_30d_ago"], 0.5);
    assert_eq!(a.body["change_30d"], 0.25);
    assert_eq!(a.body["trend"], "rising");
}

/// A night of history: its date and `(customer, probability, tier)` rows.
type HistoryNight<'a> = (&'a str, &'a [(&'a str, f64, Tier)]);

/// Three nights of history for two customers.
fn write_history(env: &Env) {
    let h = crate::history::History::new(env.path("history"));
    let nights: [HistoryNight<'_>; 3] = [
        (
            "2024-05-01",
            &[("c-1", 0.25, Tier::Medium), ("c-2", 0.5, Tier::High)],
        ),
        ("2024-05-15", &[("c-1", 0.5, Tier::High)]),
        (
            "2024-05-31",
            &[("c-1", 0.75, Tier::High), ("c-2", 0.125, Tier::Low)],
        ),
    ];
    for (night, rows) in nights {
        let rows: Vec<crate::history::HistoryRow<'_>> = rows
            .iter()
            .map(
                |&(customer_id, churn_probability, risk_tier)| crate::history::HistoryRow {
                    customer_id,
                    churn_probability,
                    risk_tier,
                },
            )
            .collect();
        let at = crate::time::parse_ts(night).unwrap();
        h.stage(at, &rows).unwrap().commit().unwrap();
    }
}

#[tokio::test]
async fn a_customer_history_is_the_series_of_its_nights_in_the_window() {
    let env = Env::new();
    write_history(&env);
    let (app, _) = router(&env.config());
    let a = get(&app, "/v1/customers/c-1/history").await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.body);
    assert_eq!(
        a.body,
        json!({"customer_id": "c-1", "days": 90, "points": [
            {"as_of": "2024-05-01T00:00:00Z", "churn_probability": 0.25, "risk_tier": "medium"},
            {"as_of": "2024-05-15T00:00:00Z", "churn_probability": 0.5, "risk_tier": "high"},
            {"as_of": "2024-05-31T00:00:00Z", "churn_probability": 0.75, "risk_tier": "high"},
        ]})
    );
    // The nights after 05-14 (17 days before the newest): 05-15 and 05-31.
    let a = get(&app, "/v1/customers/c-1/history?days=17").await;
    assert_eq!(a.body["points"].as_array().unwrap().len(), 2, "{}", a.body);
    let a = get(&app, "/v1/customers/c-2/history?days=10").await;
    assert_eq!(
        a.body["points"],
        json!([{"as_of": "2024-05-31T00:00:00Z", "churn_probability": 0.125, "risk_tier": "low"}])
    );
}

#[tokio::test]
async fn a_history_of_an_unknown_customer_is_404_and_bad_days_422() {
    let env = Env::new();
    write_history(&env);
    let (app, _) = router(&env.config());
    let a = get(&app, "/v1/customers/nobody/history").await;
    assert_error(&a, StatusCode::NOT_FOUND, "not_found", Some("id"));
    for bad in ["0", "3651", "-1", "1.5", "ten", "", "99999999999999999999"] {
        let a = get(&app, &format!("/v1/customers/c-1/history?days={bad}")).await;
        assert_error(
            &a,
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_input",
            Some("days"),
        );
    }
    let a = get(&app, "/v1/customers/c-1/history?days=1&days=2").await;
    assert_error(
        &a,
        StatusCode::UNPROCESSABLE_ENTITY,
        "invalid_input",
        Some("days"),
    );
    let mut cfg = env.config();
    cfg.history = None;
    let (app, _) = router(&cfg);
    let a = get(&app, "/v1/customers/c-1/history").await;
    assert_error(&a, StatusCode::NOT_FOUND, "not_found", None);
}
