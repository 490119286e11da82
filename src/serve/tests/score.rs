//! `POST /v1/score`: a customer's features or raw activity in, one score out.

use super::*;

#[tokio::test]
async fn a_features_score_answers_every_documented_field() {
    let env = Env::new();
    let (app, _) = router(&env.config());
    let a = post_json(
        &app,
        "/v1/score",
        &json!({"customer_id": "c42", "features": features(1.0)}),
    )
    .await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.body);
    let b = &a.body;
    assert_eq!(b["customer_id"], "c42");
    let p = b["churn_probability"].as_f64().unwrap();
    assert!((0.0..=1.0).contains(&p));
    let h = b["health_score"].as_f64().unwrap();
    assert!((0.0..=100.0).contains(&h));
    assert!(["low", "medium", "high"].contains(&b["risk_tier"].as_str().unwrap()));
    assert!(b["alert"].is_boolean());
    for r in b["reasons"].as_array().unwrap() {
        assert!(r["feature"].is_string() && r["contribution"].as_f64().unwrap() > 0.0);
        assert!(r.get("value").is_some());
    }
    assert_eq!(b["model"], json!({"name": "churn", "version": "v1"}));
    assert_eq!(b["ignored_fields"], json!([]));
    assert!(a.headers.contains_key("x-request-id"));
}

#[tokio::test]
async fn an_activity_score_computes_features_through_the_feature_code() {
    let env = Env::new();
    let (app, _) = router(&env.config());
    let a = post_json(
        &app,
        "/v1/score",
        &json!({"customer_id": "c7", "as_of": "2024-06-01", "activity": activity()}),
    )
    .await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.body);
    assert_eq!(a.body["as_of"], "2024-06-01T00:00:00Z");
    assert!(a.body["churn_probability"].as_f64().is_some());
}

#[tokio::test]
async fn unknown_fields_are_ignored_and_reported() {
    let env = Env::new();
    let (app, _) = router(&env.config());
    let mut f = features(0.0);
    f["not_a_feature"] = json!(3);
    let a = post_json(
        &app,
        "/v1/score",
        &json!({"customer_id": "c1", "features": f, "colour": "blue"}),
    )
    .await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.body);
    let ignored = a.body["ignored_fields"].as_array().unwrap();
    assert!(ignored.contains(&json!("colour")), "{ignored:?}");
    assert!(
        ignored.contains(&json!("features.not_a_feature")),
        "{ignored:?}"
    );

    let mut act = activity();
    act["pets"] = json!([]);
    let a = post_json(
        &app,
        "/v1/score",
        &json!({"customer_id": "c1", "as_of": "2024-06-01", "activity": act}),
    )
    .await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.body);
    assert_eq!(a.body["ignored_fields"], json!(["activity.pets"]));
}

#[tokio::test]
async fn a_null_may_be_missing_feature_is_undefined_not_an_error() {
    let env = Env::new();
    let (app, _) = router(&env.config());
    let Some((name, _)) = fixture().features.iter().find(|(_, m)| *m) else {
        return; // this model has no feature that may be missing
    };
    let mut f = features(1.0);
    f[name] = Value::Null;
    let a = post_json(
        &app,
        "/v1/score",
        &json!({"customer_id": "c", "features": f}),
    )
    .await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.body);
}

#[tokio::test]
async fn extreme_feature_values_never_yield_a_null_score() {
    let env = Env::new();
    let (app, _) = router(&env.config());
    for pattern in 0..4 {
        let mut f = features(0.0);
        for (i, (name, _)) in fixture().features.iter().enumerate() {
            let sign = match pattern {
                0 => 1.0,
                1 => -1.0,
                2 if i % 2 == 0 => 1.0,
                2 => -1.0,
                _ if i % 3 == 0 => -1.0,
                _ => 1.0,
            };
            f[name] = json!(sign * 1e308);
        }
        let a = post_json(
            &app,
            "/v1/score",
            &json!({"customer_id": "c", "features": f}),
        )
        .await;
        match a.status {
            StatusCode::OK => {
                assert!(a.body["churn_probability"].is_number(), "{}", a.body);
                assert!(a.body["health_score"].is_number(), "{}", a.body);
                for r in a.body["reasons"].as_array().unwrap() {
                    assert!(r["contribution"].is_number(), "{}", a.body);
                }
            }
            // Refused as overflowing the model, or (past ±1e12) naming the feature.
            _ => {
                assert_error(&a, StatusCode::UNPROCESSABLE_ENTITY, "invalid_input", None);
                let field = a.body["error"]["field"].as_str().unwrap();
                assert!(field.starts_with("features"), "{}", a.body);
            }
        }
    }
}

/// Issue 15 (c): `as_of` may run a little ahead of the server's clock, not further; the
/// refusal names the field, says it is in the future and gives the server's time. An
/// `as_of` in the far past is scored but cannot move a customer's state backwards.
#[tokio::test]
async fn an_as_of_past_the_clock_skew_is_refused_naming_the_field_and_the_servers_time() {
    let env = Env::new();
    let (app, state) = router(&env.config());
    let now = chrono::Utc::now().timestamp();
    let at = |secs_ahead: i64| crate::time::fmt_ts(now + secs_ahead);
    let skew = crate::serve::routes::MAX_AS_OF_SKEW_SECS;

    let a = post_json(
        &app,
        "/v1/score",
        &json!({"customer_id": "c1", "as_of": at(skew - 60), "features": features(1.0)}),
    )
    .await;
    assert_eq!(a.status, StatusCode::OK, "within the skew: {}", a.body);

    for (form, body) in [
        (
            "features",
            json!({"customer_id": "c2", "as_of": at(skew + 120), "features": features(1.0)}),
        ),
        (
            "activity",
            json!({"customer_id": "c2", "as_of": "9999-01-01", "activity": activity()}),
        ),
    ] {
        let a = post_json(&app, "/v1/score", &body).await;
        assert_error(
            &a,
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_input",
            Some("as_of"),
        );
        let msg = a.body["error"]["message"].as_str().unwrap();
        assert!(
            msg.contains("in the future") && msg.contains("server's time is 20"),
            "{form}: {msg}"
        );
    }

    let a = post_json(
        &app,
        "/v1/score/batch",
        &json!({"instances": [
            {"customer_id": "c3", "features": features(1.0)},
            {"customer_id": "c4", "as_of": "9999-01-01 00:00:00", "features": features(1.0)},
        ]}),
    )
    .await;
    assert_error(
        &a,
        StatusCode::UNPROCESSABLE_ENTITY,
        "invalid_input",
        Some("instances[1].as_of"),
    );

    let mut v2 = infer_request(1, 1.0);
    v2["parameters"]["as_of"] = json!("9999-01-01T00:00:00Z");
    let a = post_json(&app, "/v2/models/churn/infer", &v2).await;
    assert_v2_error(&a, StatusCode::BAD_REQUEST, "parameters.as_of");
    assert!(a.body["error"].as_str().unwrap().contains("in the future"));

    for id in ["c2", "c3", "c4"] {
        assert!(
            state.outbox.state(id).unwrap().is_none(),
            "{id} was recorded"
        );
    }

    // The far past: scored, and stale against the state a real score left.
    let recorded = state.outbox.state("c1").unwrap().expect("c1 recorded");
    let a = post_json(
        &app,
        "/v1/score",
        &json!({"customer_id": "c1", "as_of": "1900-01-01", "features": features(0.0)}),
    )
    .await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.body);
    assert_eq!(a.body["alert"], false);
    assert_eq!(state.outbox.state("c1").unwrap(), Some(recorded));
}

#[tokio::test]
async fn explain_all_answers_every_contribution_adding_up_to_the_probability() {
    let env = Env::new();
    let (app, _) = router(&env.config());
    let body = json!({"customer_id": "c42", "features": features(1.0)});
    let top = post_json(&app, "/v1/score", &body).await;
    assert_eq!(top.status, StatusCode::OK, "{}", top.body);
    assert!(
        top.body.get("contributions").is_none(),
        "the default answers the top reasons only"
    );
    let mut all = body.clone();
    all["explain"] = json!("all");
    let a = post_json(&app, "/v1/score", &all).await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.body);
    let c = &a.body["contributions"];
    let features = c["features"].as_array().unwrap();
    let names: Vec<&str> = features
        .iter()
        .map(|f| f["feature"].as_str().unwrap())
        .collect();
    let model = get(&app, "/v1/models/churn").await;
    let schema: Vec<&str> = model.body["features"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, schema, "one per feature, in schema order");
    let margin = c["base"].as_f64().unwrap()
        + features
            .iter()
            .map(|f| f["contribution"].as_f64().unwrap())
            .sum::<f64>();
    let p = a.body["churn_probability"].as_f64().unwrap();
    assert!(
        (1.0 / (1.0 + (-margin).exp()) - p).abs() < 1e-9,
        "{margin} vs {p}"
    );
    // The dimensions are the features' contributions summed by dimension.
    for d in ["engagement", "support", "billing", "relationship"] {
        let sum: f64 = features
            .iter()
            .filter(|f| f["dimension"] == d)
            .map(|f| f["contribution"].as_f64().unwrap())
            .sum();
        let got = a.body["dimensions"][d]["contribution"].as_f64().unwrap();
        assert!((sum - got).abs() < 1e-9, "{d}: {sum} vs {got}");
    }
    // Everything else is the default's answer.
    let mut rest = a.body.clone();
    rest.as_object_mut().unwrap().remove("contributions");
    assert_eq!(rest, top.body);
    for r in top.body["reasons"].as_array().unwrap() {
        assert!(!r["text"].as_str().unwrap().is_empty(), "{r}");
    }

    all["explain"] = json!("everything");
    let a = post_json(&app, "/v1/score", &all).await;
    assert_eq!(a.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", a.body);
    assert_eq!(a.body["error"]["field"], "explain");
    assert!(
        a.body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("\"top\" or \"all\""),
        "{}",
        a.body
    );
}
