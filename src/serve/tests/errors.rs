//! The JSON error answers: bad input, oversized bodies, unknown routes, panics and
//! timeouts.

use super::*;

#[tokio::test]
async fn every_class_of_bad_input_gets_a_4xx_json_error_naming_the_field() {
    let env = Env::new();
    let (app, _) = router(&env.config());
    let feat = required_feature();
    let with = |k: &str, v: Value| {
        let mut f = features(1.0);
        f[k] = v;
        json!({"customer_id": "c", "features": f})
    };
    let mut missing = features(1.0);
    missing.as_object_mut().unwrap().remove(&feat);
    let feat_field = format!("features.{feat}");
    let un = StatusCode::UNPROCESSABLE_ENTITY;
    let json_cases: Vec<(&str, Value, StatusCode, &str, Option<&str>)> = vec![
        (
            "not an object",
            json!([1, 2]),
            StatusCode::BAD_REQUEST,
            "malformed_json",
            None,
        ),
        (
            "no customer_id",
            json!({"features": features(1.0)}),
            un,
            "invalid_input",
            Some("customer_id"),
        ),
        (
            "numeric customer_id",
            json!({"customer_id": 5, "features": features(1.0)}),
            un,
            "invalid_input",
            Some("customer_id"),
        ),
        (
            "blank customer_id",
            json!({"customer_id": "  ", "features": features(1.0)}),
            un,
            "invalid_input",
            Some("customer_id"),
        ),
        (
            "huge customer_id",
            json!({"customer_id": "x".repeat(300), "features": features(1.0)}),
            un,
            "invalid_input",
            Some("customer_id"),
        ),
        (
            "missing feature",
            json!({"customer_id": "c", "features": missing}),
            un,
            "invalid_input",
            Some(&feat_field),
        ),
        (
            "string feature",
            with(&feat, json!("3")),
            un,
            "invalid_input",
            Some(&feat_field),
        ),
        (
            "null required feature",
            with(&feat, Value::Null),
            un,
            "invalid_input",
            Some(&feat_field),
        ),
        (
            "object feature",
            with(&feat, json!({"v": 1})),
            un,
            "invalid_input",
            Some(&feat_field),
        ),
        (
            "features not an object",
            json!({"customer_id": "c", "features": [1]}),
            un,
            "invalid_input",
            Some("features"),
        ),
        (
            "both forms",
            json!({"customer_id": "c", "features": features(1.0), "activity": activity()}),
            un,
            "invalid_input",
            Some("features"),
        ),
        (
            "neither form",
            json!({"customer_id": "c"}),
            un,
            "invalid_input",
            Some("features"),
        ),
        (
            "bad as_of",
            json!({"customer_id": "c", "as_of": "2024-02-30", "features": features(1.0)}),
            un,
            "invalid_input",
            Some("as_of"),
        ),
        (
            "numeric as_of",
            json!({"customer_id": "c", "as_of": 20240101, "features": features(1.0)}),
            un,
            "invalid_input",
            Some("as_of"),
        ),
        (
            "bad login date",
            json!({"customer_id": "c", "activity": {"customer": {"signup_at": "2023-01-01"}, "logins": ["01/03/2024"]}}),
            un,
            "invalid_input",
            Some("activity.logins[0]"),
        ),
        (
            "bad signup",
            json!({"customer_id": "c", "activity": {"customer": {"signup_at": "soon"}}}),
            un,
            "invalid_input",
            Some("activity.customer.signup_at"),
        ),
        (
            "no customer in activity",
            json!({"customer_id": "c", "activity": {"logins": []}}),
            un,
            "invalid_input",
            Some("activity.customer"),
        ),
        (
            "activity list of wrong type",
            json!({"customer_id": "c", "activity": {"customer": {"signup_at": "2023-01-01"}, "orders": "many"}}),
            un,
            "invalid_input",
            Some("activity.orders"),
        ),
        (
            "string amount",
            json!({"customer_id": "c", "activity": {"customer": {"signup_at": "2023-01-01"}, "orders": [{"at": "2024-01-01", "amount": "9"}]}}),
            un,
            "invalid_input",
            Some("activity.orders[0].amount"),
        ),
        (
            "csat out of range",
            json!({"customer_id": "c", "activity": {"customer": {"signup_at": "2023-01-01"}, "tickets": [{"opened_at": "2024-01-01", "csat": 9}]}}),
            un,
            "invalid_input",
            Some("activity.tickets[0].csat"),
        ),
        (
            "closed before opened",
            json!({"customer_id": "c", "activity": {"customer": {"signup_at": "2023-01-01"}, "tickets": [{"opened_at": "2024-01-05", "closed_at": "2024-01-01"}]}}),
            un,
            "invalid_input",
            Some("activity.tickets[0].closed_at"),
        ),
        (
            "instances not an array",
            json!({"instances": {"a": 1}}),
            un,
            "invalid_input",
            Some("instances"),
        ),
    ];
    for (what, body, status, code, field) in json_cases {
        let path = if body.get("instances").is_some() {
            "/v1/score/batch"
        } else {
            "/v1/score"
        };
        let a = post_json(&app, path, &body).await;
        assert_eq!(a.status, status, "{what}: {}", a.body);
        assert_eq!(a.body["error"]["code"], code, "{what}: {}", a.body);
        if let Some(f) = field {
            assert_eq!(a.body["error"]["field"], f, "{what}: {}", a.body);
        }
    }
    let raw_cases: Vec<(&str, &str, Vec<u8>, StatusCode, &str)> = vec![
        (
            "truncated JSON",
            "application/json",
            b"{\"customer_id\": ".to_vec(),
            StatusCode::BAD_REQUEST,
            "malformed_json",
        ),
        (
            "not JSON",
            "application/json",
            b"customer_id=c".to_vec(),
            StatusCode::BAD_REQUEST,
            "malformed_json",
        ),
        (
            "empty body",
            "application/json",
            Vec::new(),
            StatusCode::BAD_REQUEST,
            "malformed_json",
        ),
        (
            "non-finite number",
            "application/json",
            format!("{{\"customer_id\": \"c\", \"features\": {{\"{feat}\": 1e999}}}}").into_bytes(),
            StatusCode::BAD_REQUEST,
            "malformed_json",
        ),
        (
            "NaN literal",
            "application/json",
            format!("{{\"customer_id\": \"c\", \"features\": {{\"{feat}\": NaN}}}}").into_bytes(),
            StatusCode::BAD_REQUEST,
            "malformed_json",
        ),
        (
            "deeply nested",
            "application/json",
            format!("{}{}", "[".repeat(10_000), "]".repeat(10_000)).into_bytes(),
            StatusCode::BAD_REQUEST,
            "malformed_json",
        ),
        (
            "invalid UTF-8",
            "application/json",
            vec![b'"', 0xff, 0xfe, b'"'],
            StatusCode::BAD_REQUEST,
            "malformed_json",
        ),
        (
            "form content type",
            "application/x-www-form-urlencoded",
            b"{}".to_vec(),
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
        ),
    ];
    for (what, ct, bytes, status, code) in raw_cases {
        for path in ["/v1/score", "/v1/score/batch"] {
            let a = call(&app, "POST", path, Some(KEY), Some((ct, bytes.clone()))).await;
            assert_eq!(a.status, status, "{what} on {path}: {}", a.body);
            assert_eq!(
                a.body["error"]["code"], code,
                "{what} on {path}: {}",
                a.body
            );
        }
    }
    let a = call(&app, "POST", "/v1/score", Some(KEY), None).await;
    assert_error(
        &a,
        StatusCode::UNSUPPORTED_MEDIA_TYPE,
        "unsupported_media_type",
        None,
    );
}

#[tokio::test]
async fn an_oversized_body_is_a_413_json_error() {
    let env = Env::new();
    let (app, _) = router(&env.config());
    let big = format!("{{\"customer_id\": \"{}\"}}", "x".repeat(70 * 1024));
    let a = call(
        &app,
        "POST",
        "/v1/score",
        Some(KEY),
        Some(("application/json", big.clone().into_bytes())),
    )
    .await;
    assert_error(&a, StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large", None);
    // The inference route is a batch route: its limit is the batch one.
    let limit = crate::serve::batch_body_limit(64 * 1024, 50);
    let big = format!("{{\"id\": \"{}\"}}", "x".repeat(limit));
    let a = call(
        &app,
        "POST",
        "/v2/models/churn/infer",
        Some(KEY),
        Some(("application/json", big.into_bytes())),
    )
    .await;
    assert_v2_error(&a, StatusCode::PAYLOAD_TOO_LARGE, "larger");
}

#[tokio::test]
async fn unknown_routes_and_methods_answer_json() {
    let env = Env::new();
    let (app, _) = router(&env.config());
    let a = get(&app, "/nowhere").await;
    assert_error(&a, StatusCode::NOT_FOUND, "not_found", None);
    let a = get(&app, "/v1/score").await;
    assert_error(
        &a,
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        None,
    );
    let a = get(&app, "/v2/nowhere").await;
    assert_v2_error(&a, StatusCode::NOT_FOUND, "no route");
}

#[tokio::test]
async fn a_panicking_handler_answers_a_500_json_error() {
    let app = Router::new()
        .route(
            "/v1/boom",
            axum::routing::get(|| async {
                if std::hint::black_box(true) {
                    panic!("boom");
                }
                "unreachable"
            }),
        )
        .layer(axum::middleware::from_fn(error::json_errors))
        .layer(axum::middleware::from_fn(error::catch_panic));
    let a = call(&app, "GET", "/v1/boom", None, None).await;
    assert_error(&a, StatusCode::INTERNAL_SERVER_ERROR, "internal", None);
    assert!(!a.body.to_string().contains("boom"));
}

#[tokio::test]
async fn a_request_past_the_timeout_answers_a_json_503() {
    let app = Router::new()
        .route(
            "/v1/slow",
            axum::routing::get(|| async {
                tokio::time::sleep(Duration::from_secs(5)).await;
                "late"
            }),
        )
        .layer(
            tower::ServiceBuilder::new()
                .layer(axum::middleware::from_fn(error::json_errors))
                .layer(tower_http::timeout::TimeoutLayer::with_status_code(
                    StatusCode::SERVICE_UNAVAILABLE,
                    Duration::from_millis(50),
                )),
        );
    let a = call(&app, "GET", "/v1/slow", None, None).await;
    assert_error(&a, StatusCode::SERVICE_UNAVAILABLE, "timeout", None);
}
