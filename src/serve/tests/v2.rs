//! The Open Inference Protocol (`/v2`).

use super::*;

#[tokio::test]
async fn v2_server_and_model_metadata_follow_the_protocol() {
    let env = Env::new();
    let (app, _) = router(&env.config());
    let a = get(&app, "/v2").await;
    assert_eq!(a.status, StatusCode::OK);
    assert_eq!(a.body["name"], "churnguard");
    assert!(a.body["version"].is_string() && a.body["extensions"].is_array());
    assert_eq!(
        get(&app, "/v2/health/live").await.body,
        json!({"live": true})
    );
    assert_eq!(
        get(&app, "/v2/health/ready").await.body,
        json!({"ready": true})
    );
    for path in [
        "/v2/models/churn",
        "/v2/models/churn/versions/v1",
        "/v2/models/churn/versions/1",
    ] {
        let a = get(&app, path).await;
        assert_eq!(a.status, StatusCode::OK, "{path}: {}", a.body);
        assert_eq!(a.body["name"], "churn");
        assert_eq!(a.body["versions"], json!(["v1"]));
        assert_eq!(a.body["platform"], "churnguard_logistic");
        let inputs = a.body["inputs"].as_array().unwrap();
        assert_eq!(inputs.len(), fixture().features.len());
        assert_eq!(
            inputs[0],
            json!({"name": fixture().features[0].0, "datatype": "FP64", "shape": [-1]})
        );
        assert_eq!(
            a.body["outputs"],
            json!([
                {"name": "churn_probability", "datatype": "FP64", "shape": [-1]},
                {"name": "risk_tier", "datatype": "BYTES", "shape": [-1]},
                {"name": "reasons", "datatype": "BYTES", "shape": [-1]},
            ])
        );
    }
    let a = get(&app, "/v2/models/churn/ready").await;
    assert_eq!(a.body, json!({"name": "churn", "ready": true}));
    assert_eq!(
        get(&app, "/v2/models/churn/versions/v1/ready").await.status,
        StatusCode::OK
    );
    assert_v2_error(
        &get(&app, "/v2/models/churn/versions/v2").await,
        StatusCode::NOT_FOUND,
        "v2",
    );
    assert_v2_error(
        &get(&app, "/v2/models/churn/versions/v2/ready").await,
        StatusCode::NOT_FOUND,
        "v2",
    );
    assert_v2_error(
        &get(&app, "/v2/models/churn/versions/staging").await,
        StatusCode::NOT_FOUND,
        "staging",
    );
    assert_v2_error(
        &get(&app, "/v2/models/other").await,
        StatusCode::NOT_FOUND,
        "other",
    );
}

#[tokio::test]
async fn v2_infer_round_trips_and_agrees_with_v1() {
    let env = Env::new();
    let (app, _) = router(&env.config());
    let a = post_json(&app, "/v2/models/churn/infer", &infer_request(3, 0.0)).await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.body);
    let b = &a.body;
    assert_eq!(b["model_name"], "churn");
    assert_eq!(b["model_version"], "v1");
    assert_eq!(b["id"], "req-1");
    let outputs = b["outputs"].as_array().unwrap();
    let names: Vec<&str> = outputs
        .iter()
        .map(|o| o["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["churn_probability", "risk_tier", "reasons"]);
    for o in outputs {
        assert_eq!(o["shape"], json!([3]));
        assert_eq!(o["data"].as_array().unwrap().len(), 3);
    }
    assert_eq!(outputs[0]["datatype"], "FP64");
    assert_eq!(outputs[1]["datatype"], "BYTES");
    let reasons: Value = serde_json::from_str(outputs[2]["data"][1].as_str().unwrap()).unwrap();
    assert!(reasons.is_array());
    let probabilities = outputs[0]["data"].as_array().unwrap();
    for (i, p) in probabilities.iter().enumerate() {
        let v1 = post_json(
            &app,
            "/v1/score",
            &json!({"customer_id": "c", "features": features(i as f64)}),
        )
        .await;
        assert_eq!(p, &v1.body["churn_probability"], "row {i}");
        assert_eq!(outputs[1]["data"][i], v1.body["risk_tier"], "row {i}");
        let v1_reasons: Value = v1.body["reasons"].clone();
        let v2_reasons: Value =
            serde_json::from_str(outputs[2]["data"][i].as_str().unwrap()).unwrap();
        assert_eq!(v1_reasons, v2_reasons, "row {i}");
    }

    // Nested data of shape [N, 1], integer datatypes, an explicit version, a subset of outputs.
    let mut req = infer_request(2, 1.0);
    for input in req["inputs"].as_array_mut().unwrap() {
        input["shape"] = json!([2, 1]);
        input["datatype"] = json!("INT64");
        input["data"] = json!([[1], [2]]);
    }
    req["outputs"] = json!([{"name": "risk_tier"}]);
    req.as_object_mut().unwrap().remove("id");
    let a = post_json(&app, "/v2/models/churn/versions/v1/infer", &req).await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.body);
    assert!(a.body.get("id").is_none());
    assert_eq!(a.body["outputs"].as_array().unwrap().len(), 1);
    assert_eq!(a.body["outputs"][0]["name"], "risk_tier");

    // Extra inputs are ignored and reported; zero rows are fine.
    let mut req = infer_request(0, 0.0);
    req["inputs"]
        .as_array_mut()
        .unwrap()
        .push(json!({"name": "shoe_size", "datatype": "FP64", "shape": [0], "data": []}));
    let a = post_json(&app, "/v2/models/churn/infer", &req).await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.body);
    assert_eq!(a.body["outputs"][0]["shape"], json!([0]));
    assert_eq!(a.body["parameters"]["ignored_inputs"], "shoe_size");
}

#[tokio::test]
async fn v2_infer_refuses_bad_requests_with_the_protocol_error_form() {
    let env = Env::new();
    let (app, _) = router(&env.config());
    let feat = fixture().features[1].0.clone();
    let edit = |f: &dyn Fn(&mut Value)| {
        let mut r = infer_request(2, 0.0);
        f(&mut r);
        r
    };
    let input = |r: &mut Value, name: &str| -> usize {
        r["inputs"]
            .as_array()
            .unwrap()
            .iter()
            .position(|i| i["name"] == name)
            .unwrap()
    };
    let cases: Vec<(&str, Value, &str)> = vec![
        (
            "missing input",
            edit(&|r| {
                let i = input(r, &feat);
                r["inputs"].as_array_mut().unwrap().remove(i);
            }),
            feat.as_str(),
        ),
        (
            "rows differ",
            edit(&|r| {
                let i = input(r, &feat);
                r["inputs"][i]["shape"] = json!([3]);
                r["inputs"][i]["data"] = json!([1, 2, 3]);
            }),
            "same number of rows",
        ),
        (
            "shape vs data",
            edit(&|r| {
                let i = input(r, &feat);
                r["inputs"][i]["shape"] = json!([3]);
            }),
            "holds 3 elements",
        ),
        (
            "bytes datatype",
            edit(&|r| {
                let i = input(r, &feat);
                r["inputs"][i]["datatype"] = json!("BYTES");
                r["inputs"][i]["data"] = json!(["a", "b"]);
            }),
            "datatype BYTES",
        ),
        (
            "string element",
            edit(&|r| {
                let i = input(r, &feat);
                r["inputs"][i]["data"] = json!([1, "2"]);
            }),
            "element 1",
        ),
        (
            "null element",
            edit(&|r| {
                let i = input(r, &fixture().features.iter().find(|f| !f.1).unwrap().0);
                r["inputs"][i]["data"] = json!([1, null]);
            }),
            "may_be_missing",
        ),
        (
            "negative uint",
            edit(&|r| {
                let i = input(r, &feat);
                r["inputs"][i]["datatype"] = json!("UINT8");
                r["inputs"][i]["data"] = json!([1, -2]);
            }),
            "non-negative",
        ),
        (
            "fractional int",
            edit(&|r| {
                let i = input(r, &feat);
                r["inputs"][i]["datatype"] = json!("INT32");
                r["inputs"][i]["data"] = json!([1, 2.5]);
            }),
            "integer",
        ),
        (
            "2-D shape",
            edit(&|r| {
                let i = input(r, &feat);
                r["inputs"][i]["shape"] = json!([1, 2]);
                r["inputs"][i]["data"] = json!([[1, 2]]);
            }),
            "shape must be [N]",
        ),
        (
            "too deep",
            edit(&|r| {
                let i = input(r, &feat);
                r["inputs"][i]["data"] = json!([[1], [2]]);
            }),
            "deeper",
        ),
        (
            "negative shape",
            edit(&|r| {
                let i = input(r, &feat);
                r["inputs"][i]["shape"] = json!([-2]);
            }),
            "non-negative",
        ),
        (
            "duplicate input",
            edit(&|r| {
                let first = r["inputs"][0].clone();
                r["inputs"].as_array_mut().unwrap().push(first);
            }),
            "twice",
        ),
        (
            "content type",
            edit(&|r| {
                r["parameters"]["content_type"] = json!("np");
            }),
            "content_type",
        ),
        (
            "object parameter",
            edit(&|r| {
                r["parameters"]["x"] = json!({"a": 1});
            }),
            "parameters.x",
        ),
        (
            "bad as_of",
            edit(&|r| {
                r["parameters"]["as_of"] = json!("tomorrow");
            }),
            "as_of",
        ),
        (
            "numeric id",
            edit(&|r| {
                r["id"] = json!(42);
            }),
            "id",
        ),
        (
            "unknown output",
            edit(&|r| {
                r["outputs"] = json!([{"name": "lifetime_value"}]);
            }),
            "lifetime_value",
        ),
        ("no inputs", json!({"inputs": []}), "inputs"),
        ("not an object", json!([1]), "JSON object"),
        (
            "customer ids not strings",
            edit(&|r| {
                r["inputs"].as_array_mut().unwrap().push(json!({"name": "customer_id", "datatype": "BYTES", "shape": [2], "data": ["a", 3]}));
            }),
            "customer_id",
        ),
        ("too many rows", infer_request(51, 0.0), "at most 50"),
    ];
    for (what, body, mentions) in cases {
        let a = post_json(&app, "/v2/models/churn/infer", &body).await;
        assert_eq!(a.status, StatusCode::BAD_REQUEST, "{what}: {}", a.body);
        assert_v2_error(&a, StatusCode::BAD_REQUEST, mentions);
    }
    let a = call(
        &app,
        "POST",
        "/v2/models/churn/infer",
        Some(KEY),
        Some(("application/json", b"{oops".to_vec())),
    )
    .await;
    assert_v2_error(&a, StatusCode::BAD_REQUEST, "not valid JSON");
    let a = post_json(
        &app,
        "/v2/models/churn/versions/v2/infer",
        &infer_request(1, 0.0),
    )
    .await;
    assert_v2_error(&a, StatusCode::NOT_FOUND, "v2");
    let a = post_json(&app, "/v2/models/nope/infer", &infer_request(1, 0.0)).await;
    assert_v2_error(&a, StatusCode::NOT_FOUND, "nope");
}
