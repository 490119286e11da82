//! API keys and the admin key; without keys, loopback only.

use super::*;

#[tokio::test]
async fn scoring_needs_an_api_key_and_admin_needs_the_admin_key() {
    let env = Env::new();
    let (app, _) = router(&env.config());
    let body = || {
        Some((
            "application/json",
            serde_json::to_vec(&json!({"customer_id": "c", "features": features(1.0)})).unwrap(),
        ))
    };
    let a = call(&app, "POST", "/v1/score", None, body()).await;
    assert_error(&a, StatusCode::UNAUTHORIZED, "unauthorized", None);
    assert!(a.headers[header::WWW_AUTHENTICATE]
        .to_str()
        .unwrap()
        .starts_with("Bearer"));
    let a = call(&app, "POST", "/v1/score", Some("wrong"), body()).await;
    assert_error(&a, StatusCode::UNAUTHORIZED, "unauthorized", None);
    let a = call(&app, "POST", "/v1/score", Some(KEY), body()).await;
    assert_eq!(a.status, StatusCode::OK);
    let a = call(&app, "POST", "/v1/score", Some(ADMIN), body()).await;
    assert_eq!(a.status, StatusCode::OK, "the admin key also scores");
    // Bad input from an unauthenticated caller learns nothing about the contract.
    let a = call(
        &app,
        "POST",
        "/v1/score",
        None,
        Some(("application/json", b"{".to_vec())),
    )
    .await;
    assert_eq!(a.status, StatusCode::UNAUTHORIZED);

    for path in ["/v1/models", "/v1/models/churn", "/v1/customers/c/score"] {
        assert_eq!(
            call(&app, "GET", path, None, None).await.status,
            StatusCode::UNAUTHORIZED,
            "{path}"
        );
    }
    let a = call(&app, "GET", "/v2/models/churn", None, None).await;
    assert_v2_error(&a, StatusCode::UNAUTHORIZED, "API key");

    let a = call(&app, "POST", "/v1/admin/reload", None, None).await;
    assert_error(&a, StatusCode::UNAUTHORIZED, "unauthorized", None);
    let a = call(&app, "POST", "/v1/admin/reload", Some(KEY), None).await;
    assert_error(&a, StatusCode::FORBIDDEN, "forbidden", None);
    let a = call(&app, "POST", "/v1/admin/reload", Some(ADMIN), None).await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.body);
    assert_eq!(a.body["changed"], false);

    for path in [
        "/healthz",
        "/readyz",
        "/metrics",
        "/openapi.json",
        "/v2",
        "/v2/health/live",
        "/v2/health/ready",
    ] {
        assert_eq!(
            call(&app, "GET", path, None, None).await.status,
            StatusCode::OK,
            "{path}"
        );
    }

    let mut cfg = env.config();
    cfg.admin_key = None;
    let (app, _) = router(&cfg);
    let a = call(&app, "POST", "/v1/admin/reload", Some(KEY), None).await;
    assert_error(&a, StatusCode::FORBIDDEN, "forbidden", None);
}

#[tokio::test]
async fn without_api_keys_loopback_is_open_and_other_addresses_are_refused() {
    let env = Env::new();
    let mut cfg = env.config();
    cfg.api_keys = Vec::new();
    cfg.admin_key = None;
    let (app, _) = router(&cfg);
    let a = call(
        &app,
        "POST",
        "/v1/score",
        None,
        Some((
            "application/json",
            serde_json::to_vec(&json!({"customer_id": "c", "features": features(1.0)})).unwrap(),
        )),
    )
    .await;
    assert_eq!(a.status, StatusCode::OK);

    let listener = tokio::net::TcpListener::bind("0.0.0.0:0").await.unwrap();
    let err = run(cfg.clone(), listener, async {}).await.unwrap_err();
    assert!(err.to_string().contains("without API keys"), "{err}");
    cfg.bind = "0.0.0.0:0".parse().unwrap();
    let err = serve(cfg).await.unwrap_err();
    assert!(err.to_string().contains("without API keys"), "{err}");
}
