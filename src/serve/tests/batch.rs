//! `POST /v1/score/batch`: many instances in, their scores in order, or one error
//! naming the instance.

use super::*;

#[tokio::test]
async fn a_batch_scores_every_instance_in_order() {
    let env = Env::new();
    let (app, _) = router(&env.config());
    let single = post_json(
        &app,
        "/v1/score",
        &json!({"customer_id": "s", "features": features(2.0)}),
    )
    .await;
    let a = post_json(
        &app,
        "/v1/score/batch",
        &json!({"instances": [
            {"customer_id": "a", "features": features(2.0)},
            {"customer_id": "b", "as_of": "2024-06-01", "activity": activity()},
            {"customer_id": "c", "features": features(0.0)},
        ]}),
    )
    .await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.body);
    let results = a.body["results"].as_array().unwrap();
    let ids: Vec<&str> = results
        .iter()
        .map(|r| r["customer_id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["a", "b", "c"]);
    assert_eq!(
        results[0]["churn_probability"],
        single.body["churn_probability"]
    );
    let empty = post_json(&app, "/v1/score/batch", &json!({"instances": []})).await;
    assert_eq!(empty.status, StatusCode::OK);
    assert_eq!(empty.body["results"], json!([]));
}

#[tokio::test]
async fn a_bad_instance_fails_the_batch_naming_its_index_and_field() {
    let env = Env::new();
    let (app, _) = router(&env.config());
    let feat = required_feature();
    let mut bad = features(1.0);
    bad[&feat] = json!("three");
    let a = post_json(
        &app,
        "/v1/score/batch",
        &json!({"instances": [
            {"customer_id": "a", "features": features(1.0)},
            {"customer_id": "b", "features": features(1.0)},
            {"customer_id": "c", "features": features(1.0)},
            {"customer_id": "d", "features": bad},
        ]}),
    )
    .await;
    let field = format!("instances[3].features.{feat}");
    assert_error(
        &a,
        StatusCode::UNPROCESSABLE_ENTITY,
        "invalid_input",
        Some(&field),
    );
    assert!(a.body["error"]["message"]
        .as_str()
        .unwrap()
        .starts_with("instances[3]"));

    let a = post_json(&app, "/v1/score/batch", &json!({"instances": [1]})).await;
    assert_error(
        &a,
        StatusCode::UNPROCESSABLE_ENTITY,
        "invalid_input",
        Some("instances[0]"),
    );
    let a = post_json(
        &app,
        "/v1/score/batch",
        &json!({"instances": [{"customer_id": "x", "as_of": "2024-06-01", "activity": {"customer": {"signup_at": "2023-01-01"}, "orders": [{"at": "yesterday", "amount": 1}]}}]}),
    )
    .await;
    assert_error(
        &a,
        StatusCode::UNPROCESSABLE_ENTITY,
        "invalid_input",
        Some("instances[0].activity.orders[0].at"),
    );
}

#[tokio::test]
async fn more_instances_than_max_batch_is_422() {
    let env = Env::new();
    let (app, _) = router(&env.config());
    let instances: Vec<Value> = (0..51)
        .map(|i| json!({"customer_id": format!("c{i}"), "features": {}}))
        .collect();
    let a = post_json(&app, "/v1/score/batch", &json!({ "instances": instances })).await;
    assert_error(
        &a,
        StatusCode::UNPROCESSABLE_ENTITY,
        "too_many_instances",
        Some("instances"),
    );
}
