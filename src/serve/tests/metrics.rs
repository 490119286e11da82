//! `GET /metrics`: route templates, never customer ids.

use super::*;

#[tokio::test]
async fn metrics_use_route_templates_and_never_customer_ids() {
    let env = Env::new();
    write_scores(
        &env.path("scores.csv"),
        &[("secret-customer-123", 0.5, "medium")],
    );
    let (app, _) = router(&env.config());
    let _ = get(&app, "/v1/customers/secret-customer-123/score").await;
    let _ = get(&app, "/v1/customers/another-secret-456/score").await;
    let _ = post_json(
        &app,
        "/v1/score",
        &json!({"customer_id": "secret-customer-789", "features": features(1.0)}),
    )
    .await;
    let _ = get(&app, "/no/such/secret-path").await;
    let res = app
        .clone()
        .oneshot(Request::get("/metrics").body(Body::empty()).unwrap())
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    assert!(res.headers()[header::CONTENT_TYPE]
        .to_str()
        .unwrap()
        .starts_with("text/plain"));
    let text = String::from_utf8(
        axum::body::to_bytes(res.into_body(), usize::MAX)
            .await
            .unwrap()
            .to_vec(),
    )
    .unwrap();
    assert!(!text.contains("secret"), "{text}");
    for needle in [
        "churnguard_http_requests_total{route=\"/v1/customers/{id}/score\",method=\"GET\",status=\"200\"} 1",
        "churnguard_http_requests_total{route=\"/v1/customers/{id}/score\",method=\"GET\",status=\"404\"} 1",
        "churnguard_http_requests_total{route=\"/v1/score\",method=\"POST\",status=\"200\"} 1",
        "churnguard_http_requests_total{route=\"unmatched\",method=\"GET\",status=\"404\"} 1",
        "churnguard_http_request_duration_seconds_bucket{route=\"/v1/score\",le=\"+Inf\"} 1",
        "churnguard_score_count{model=\"churn\",model_version=\"v1\"} 1",
        "churnguard_model_info{model=\"churn\",model_version=\"v1\"} 1",
        "churnguard_alerts_raised_total ",
        "churnguard_alerts_delivered_total ",
        "churnguard_alerts_failed_total ",
        "churnguard_alerts_dead_total ",
        "churnguard_model_reload_failures_total 0",
        "# TYPE churnguard_http_request_duration_seconds histogram",
    ] {
        assert!(text.contains(needle), "missing `{needle}` in\n{text}");
    }
}

#[tokio::test]
async fn the_initial_load_is_not_a_reload_and_a_promotion_is_one() {
    let env = Env::new();
    let (app, _) = router(&env.config());
    let reloads = |text: &str| -> Option<String> {
        text.lines()
            .find_map(|l| l.strip_prefix("churnguard_model_reloads_total "))
            .map(str::to_string)
    };
    let text = get(&app, "/metrics").await.body;
    let text = text.as_str().unwrap();
    assert_eq!(reloads(text).as_deref(), Some("0"), "{text}");
    assert!(text.contains("churnguard_model_info{model=\"churn\",model_version=\"v1\"} 1"));

    env.registry().promote("churn", 2, "production").unwrap();
    let a = call(&app, "POST", "/v1/admin/reload", Some(ADMIN), None).await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.body);
    // Asking again with nothing new changes nothing.
    let _ = call(&app, "POST", "/v1/admin/reload", Some(ADMIN), None).await;
    let text = get(&app, "/metrics").await.body;
    let text = text.as_str().unwrap();
    assert_eq!(reloads(text).as_deref(), Some("1"), "{text}");
    assert!(text.contains("churnguard_model_info{model=\"churn\",model_version=\"v2\"} 1"));
}

#[tokio::test]
async fn nightly_refusals_are_counted_in_metrics_by_reason() {
    use crate::alerts::{Night, Outbox};
    use crate::error::RefusalReason;
    let env = Env::new();
    let (app, _) = router(&env.config());
    let text = get(&app, "/metrics").await.body;
    let text = text.as_str().unwrap();
    assert!(
        text.contains("churnguard_nightly_refused_total{reason=\"stale_table\"} 0"),
        "{text}"
    );
    assert!(!text.contains("churnguard_nightly_last_success_timestamp_seconds"));
    // The nightly batch is another process writing the same alert state.
    let batch = Outbox::open(env.path("outbox.db")).unwrap();
    for reason in [
        RefusalReason::StaleTable,
        RefusalReason::StaleTable,
        RefusalReason::AsOfAfterData,
    ] {
        batch
            .record_refusal(&Night {
                as_of: crate::time::parse_ts("2025-01-15").unwrap(),
                finished_at: 0,
                model: "churn v1".into(),
                customers: 0,
                tiers: Default::default(),
                refused: true,
                reason: Some(reason),
                detail: Some("the export stopped".into()),
            })
            .unwrap();
    }
    let text = get(&app, "/metrics").await.body;
    let text = text.as_str().unwrap();
    for needle in [
        "# TYPE churnguard_nightly_refused_total counter",
        "churnguard_nightly_refused_total{reason=\"stale_table\"} 2",
        "churnguard_nightly_refused_total{reason=\"as_of_after_data\"} 1",
        "churnguard_nightly_refused_total{reason=\"collapsed_population\"} 0",
        "churnguard_nightly_refusals_since_success{reason=\"stale_table\"} 2",
    ] {
        assert!(text.contains(needle), "missing `{needle}` in\n{text}");
    }
}

/// Writes `json` as the run summary beside `scores`, through a rename (as the batch
/// does), modified `mtime_offset_secs` from now, so a reload sees it change.
fn write_summary(scores: &Path, json: &Value, mtime_offset_secs: u64) {
    let path = crate::scores::summary_path(scores);
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, serde_json::to_vec_pretty(json).unwrap()).unwrap();
    let when = std::time::SystemTime::now() + Duration::from_secs(mtime_offset_secs);
    std::fs::File::options()
        .write(true)
        .open(&tmp)
        .unwrap()
        .set_modified(when)
        .unwrap();
    std::fs::rename(&tmp, &path).unwrap();
}

fn summary_json(logins_psi: f64, alerts: usize) -> Value {
    json!({
        "as_of": "2024-06-01", "model": "churn v1", "customers_scored": 1,
        "tiers": {"high": 0, "low": 0, "medium": 1}, "alerts_raised": alerts,
        "score_psi": 0.0625,
        "feature_psi": [
            {"feature": "logins_30d", "psi": logins_psi, "level": "stable", "by_construction": false},
            {"feature": "tenure_days", "psi": null, "level": "by construction", "by_construction": true}
        ],
        "seconds": {"features": 0.5, "scoring": 0.125, "writing": 0.25, "alerts": 0.125}
    })
}

#[tokio::test]
async fn drift_and_the_nights_health_come_from_the_summary_and_follow_its_reloads() {
    let env = Env::new();
    let scores = env.path("scores.csv");
    write_scores(&scores, &[("c1", 0.5, "medium")]);
    write_summary(&scores, &summary_json(0.015625, 3), 0);
    let server = Server::start(env.config()).await;
    let scrape = || async {
        server
            .client
            .get(server.url("/metrics"))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    };
    let text = scrape().await;
    for line in [
        "# TYPE churnguard_feature_psi gauge",
        "churnguard_feature_psi{model=\"churn\",model_version=\"v1\",feature=\"logins_30d\"} 0.015625",
        "churnguard_score_psi{model=\"churn\",model_version=\"v1\"} 0.0625",
        "churnguard_batch_alerts_raised 3",
        "churnguard_batch_duration_seconds 1.0",
    ] {
        assert!(text.lines().any(|l| l == line), "missing `{line}` in\n{text}");
    }
    assert!(!text.contains("tenure_days"), "{text}");
    // The night's identical lines as the batch's textfile would give them.
    let summary =
        crate::nightly_metrics::SummaryMetrics::read(&crate::scores::summary_path(&scores))
            .unwrap();
    let health = crate::alerts::Outbox::open(env.path("outbox.db"))
        .unwrap()
        .nightly_health()
        .unwrap();
    let textfile = crate::nightly_metrics::render(Some(&health), Some(&summary));
    assert!(text.contains(&textfile), "{textfile}\nnot in\n{text}");

    // The next night's summary replaces it without a restart.
    write_summary(&scores, &summary_json(0.5, 7), 10);
    let reloaded = eventually(20, || async {
        scrape().await.lines().any(|l| {
            l == "churnguard_feature_psi{model=\"churn\",model_version=\"v1\",feature=\"logins_30d\"} 0.5"
        })
    })
    .await;
    assert!(reloaded, "{}", scrape().await);
    assert!(scrape()
        .await
        .contains("\nchurnguard_batch_alerts_raised 7\n"));
    // A summary that cannot be read keeps the previous one and is counted.
    let path = crate::scores::summary_path(&scores);
    std::fs::write(&path, b"{not json").unwrap();
    std::fs::File::options()
        .write(true)
        .open(&path)
        .unwrap()
        .set_modified(std::time::SystemTime::now() + Duration::from_secs(20))
        .unwrap();
    assert!(
        eventually(20, || async {
            server
                .metric("churnguard_scores_reload_failures_total")
                .await
                == 1.0
        })
        .await
    );
    assert!(scrape()
        .await
        .contains("\nchurnguard_batch_alerts_raised 7\n"));
    server.stop().await.unwrap();
}
