//! The model routes and the readiness and liveness probes.

use super::*;

#[tokio::test]
async fn the_models_routes_describe_the_served_version() {
    let env = Env::new();
    let (app, _) = router(&env.config());
    let a = get(&app, "/v1/models").await;
    assert_eq!(a.status, StatusCode::OK);
    assert_eq!(a.body["models"][0]["name"], "churn");
    assert_eq!(a.body["models"][0]["version"], "v1");
    assert_eq!(a.body["models"][0]["algorithm"], "logistic");
    let a = get(&app, "/v1/models/churn").await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.body);
    let b = &a.body;
    assert_eq!(b["version"], "v1");
    assert!(b["metrics"]["validation_roc_auc"].is_number(), "{b}");
    assert!(b["thresholds"]["high"].is_number() && b["thresholds"]["medium"].is_number());
    let cols = b["features"].as_array().unwrap();
    assert_eq!(cols.len(), fixture().features.len());
    for c in cols {
        for k in [
            "name",
            "description",
            "table",
            "transform",
            "may_be_missing",
        ] {
            assert!(c.get(k).is_some(), "{k} missing in {c}");
        }
    }
    let versions: Vec<&str> = b["versions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["version"].as_str().unwrap())
        .collect();
    assert_eq!(versions, ["v1", "v2"]);
    assert_eq!(b["versions"][0]["aliases"], json!(["production"]));
    let a = get(&app, "/v1/models/other").await;
    assert_error(&a, StatusCode::NOT_FOUND, "not_found", None);
}

#[tokio::test]
async fn without_a_model_readiness_is_503_and_scoring_says_why() {
    let dir = tempfile::tempdir().unwrap();
    let env = Env::new();
    let mut cfg = env.config();
    // A registry that exists but holds no model yet (one that does not exist is refused).
    cfg.models = dir.path().join("empty-models");
    std::fs::create_dir(&cfg.models).unwrap();
    let (app, _) = router(&cfg);
    let a = get(&app, "/healthz").await;
    assert_eq!(a.status, StatusCode::OK);
    assert_eq!(a.body["status"], "ok");
    let a = get(&app, "/readyz").await;
    assert_eq!(a.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(a.body["status"], "not_ready");
    let a = post_json(
        &app,
        "/v1/score",
        &json!({"customer_id": "c", "features": {}}),
    )
    .await;
    assert_error(&a, StatusCode::SERVICE_UNAVAILABLE, "model_not_ready", None);
    let a = get(&app, "/v2/health/ready").await;
    assert_eq!(a.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(a.body, json!({"ready": false}));
    let a = get(&app, "/v2/models/churn/ready").await;
    assert_eq!(a.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(a.body, json!({"name": "churn", "ready": false}));
    let a = get(&app, "/v1/models").await;
    assert_eq!(a.body, json!({"models": []}));
}

#[tokio::test]
async fn readiness_and_liveness_answer_when_a_model_is_loaded() {
    let env = Env::new();
    let (app, _) = router(&env.config());
    let a = get(&app, "/readyz").await;
    assert_eq!(a.status, StatusCode::OK);
    assert_eq!(a.body["model"], json!({"name": "churn", "version": "v1"}));
}
