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
        assert_eq!(a.body["versions"], json!(["v1", "v2"]));
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
        &get(&app, "/v2/models/churn/versions/v3").await,
        StatusCode::NOT_FOUND,
        "v3",
    );
    assert_v2_error(
        &get(&app, "/v2/models/churn/versions/v3/ready").await,
        StatusCode::NOT_FOUND,
        "v3",
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
        "/v2/models/churn/versions/v3/infer",
        &infer_request(1, 0.0),
    )
    .await;
    assert_v2_error(&a, StatusCode::NOT_FOUND, "v3");
    let a = post_json(&app, "/v2/models/nope/infer", &infer_request(1, 0.0)).await;
    assert_v2_error(&a, StatusCode::NOT_FOUND, "nope");
}

/// A POST with any headers (none at all included), as third-party clients send them.
async fn post_raw(app: &Router, path: &str, headers: &[(&str, String)], body: Vec<u8>) -> Answer {
    let mut req = Request::builder()
        .method("POST")
        .uri(path)
        .header(header::AUTHORIZATION, format!("Bearer {KEY}"));
    for (k, v) in headers {
        req = req.header(*k, v);
    }
    let res = app
        .clone()
        .oneshot(req.body(Body::from(body)).unwrap())
        .await
        .unwrap();
    let status = res.status();
    let headers = res.headers().clone();
    let bytes = axum::body::to_bytes(res.into_body(), usize::MAX)
        .await
        .unwrap();
    let body = serde_json::from_slice(&bytes)
        .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into_owned()));
    Answer {
        status,
        headers,
        body,
    }
}

fn probabilities(a: &Answer) -> Value {
    assert_eq!(a.status, StatusCode::OK, "{}", a.body);
    a.body["outputs"][0]["data"].clone()
}

fn may_be_missing_feature() -> String {
    fixture()
        .features
        .iter()
        .find(|(_, missing)| *missing)
        .expect("a feature that may be missing")
        .0
        .clone()
}

/// [`infer_request`] with the data of input `feature` replaced by the raw JSON text `data`.
fn with_raw_data(req: &Value, feature: &str, data: &str) -> Vec<u8> {
    let mut req = req.clone();
    for input in req["inputs"].as_array_mut().unwrap() {
        if input["name"] == feature {
            input["data"] = json!("@@DATA@@");
        }
    }
    serde_json::to_string(&req)
        .unwrap()
        .replace("\"@@DATA@@\"", data)
        .into_bytes()
}

#[tokio::test]
async fn a_v2_body_without_content_type_is_read_as_json() {
    let env = Env::new();
    let (app, _) = router(&env.config());
    let req = infer_request(2, 1.0);
    let json = post_json(&app, "/v2/models/churn/infer", &req).await;
    let bare = post_raw(
        &app,
        "/v2/models/churn/infer",
        &[],
        serde_json::to_vec(&req).unwrap(),
    )
    .await;
    assert_eq!(probabilities(&bare), probabilities(&json));
    let a = post_raw(
        &app,
        "/v2/models/churn/infer",
        &[("content-type", "text/plain".into())],
        serde_json::to_vec(&req).unwrap(),
    )
    .await;
    assert_v2_error(
        &a,
        StatusCode::UNSUPPORTED_MEDIA_TYPE,
        "Inference-Header-Content-Length",
    );
}

#[tokio::test]
async fn nan_counts_as_missing_for_may_be_missing_features_and_is_refused_naming_a_required_one() {
    let env = Env::new();
    let (app, _) = router(&env.config());
    let req = infer_request(2, 1.0);
    let optional = may_be_missing_feature();
    let nulls = post_raw(
        &app,
        "/v2/models/churn/infer",
        &[],
        with_raw_data(&req, &optional, "[null, 2.0]"),
    )
    .await;
    let nans = post_raw(
        &app,
        "/v2/models/churn/infer",
        &[],
        with_raw_data(&req, &optional, "[NaN,2.0]"),
    )
    .await;
    assert_eq!(probabilities(&nans), probabilities(&nulls));
    let required = required_feature();
    let a = post_raw(
        &app,
        "/v2/models/churn/infer",
        &[],
        with_raw_data(&req, &required, "[1.0, NaN]"),
    )
    .await;
    assert_v2_error(
        &a,
        StatusCode::BAD_REQUEST,
        &format!("`{required}` is required"),
    );
    let a = post_raw(
        &app,
        "/v2/models/churn/infer",
        &[],
        with_raw_data(&req, &optional, "[Infinity, 1]"),
    )
    .await;
    assert_v2_error(&a, StatusCode::BAD_REQUEST, "finite number");
}

/// `req` in the binary tensor data extension: every input's data as raw bytes (FP64,
/// except `fp32` as FP32), `nan_in` given NaN as its first element.
fn binary_body(req: &Value, fp32: &str, nan_in: Option<&str>) -> (Vec<u8>, usize) {
    let mut req = req.clone();
    let mut tail = Vec::new();
    for input in req["inputs"].as_array_mut().unwrap() {
        let name = input["name"].as_str().unwrap().to_string();
        let mut data: Vec<f64> = input["data"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_f64().unwrap())
            .collect();
        if nan_in == Some(name.as_str()) {
            data[0] = f64::NAN;
        }
        let start = tail.len();
        if name == fp32 {
            input["datatype"] = json!("FP32");
            data.iter()
                .for_each(|x| tail.extend_from_slice(&(*x as f32).to_le_bytes()));
        } else {
            data.iter()
                .for_each(|x| tail.extend_from_slice(&x.to_le_bytes()));
        }
        let obj = input.as_object_mut().unwrap();
        obj.remove("data");
        obj.insert(
            "parameters".into(),
            json!({"binary_data_size": tail.len() - start}),
        );
    }
    req["parameters"]["binary_data_output"] = json!(true);
    let mut body = serde_json::to_vec(&req).unwrap();
    let header_len = body.len();
    body.extend_from_slice(&tail);
    (body, header_len)
}

#[tokio::test]
async fn the_binary_tensor_extension_scores_like_json() {
    let env = Env::new();
    let (app, _) = router(&env.config());
    let req = infer_request(3, 2.0);
    let optional = may_be_missing_feature();
    let json = post_json(&app, "/v2/models/churn/infer", &req).await;
    let (body, n) = binary_body(&req, &required_feature(), None);
    let headers = [
        ("inference-header-content-length", n.to_string()),
        ("content-type", "application/octet-stream".to_string()),
    ];
    let binary = post_raw(&app, "/v2/models/churn/infer", &headers, body.clone()).await;
    assert_eq!(probabilities(&binary), probabilities(&json));

    // NaN in binary data is an undefined value, like null in JSON.
    let nulls = post_raw(
        &app,
        "/v2/models/churn/infer",
        &[],
        with_raw_data(&req, &optional, "[null, 3.0, 4.0]"),
    )
    .await;
    let (nan_body, n) = binary_body(&req, "", Some(&optional));
    let nans = post_raw(
        &app,
        "/v2/models/churn/infer",
        &[("inference-header-content-length", n.to_string())],
        nan_body,
    )
    .await;
    assert_eq!(probabilities(&nans), probabilities(&nulls));

    // Binary data without the header, with bytes left over or cut short: 400s that say so.
    let (body, n) = binary_body(&req, "", None);
    let a = post_raw(&app, "/v2/models/churn/infer", &[], body[..n].to_vec()).await;
    assert_v2_error(
        &a,
        StatusCode::BAD_REQUEST,
        "Inference-Header-Content-Length",
    );
    let mut longer = body.clone();
    longer.extend_from_slice(&[0; 8]);
    let a = post_raw(
        &app,
        "/v2/models/churn/infer",
        &[("inference-header-content-length", n.to_string())],
        longer,
    )
    .await;
    assert_v2_error(&a, StatusCode::BAD_REQUEST, "8 bytes of binary data");
    let a = post_raw(
        &app,
        "/v2/models/churn/infer",
        &[("inference-header-content-length", n.to_string())],
        body[..body.len() - 4].to_vec(),
    )
    .await;
    assert_v2_error(&a, StatusCode::BAD_REQUEST, "runs past the end");
    let a = post_raw(
        &app,
        "/v2/models/churn/infer",
        &[(
            "inference-header-content-length",
            (body.len() + 1).to_string(),
        )],
        body,
    )
    .await;
    assert_v2_error(
        &a,
        StatusCode::BAD_REQUEST,
        "Inference-Header-Content-Length",
    );
}

#[tokio::test]
async fn a_client_pinning_a_version_is_served_that_version_whatever_is_in_production() {
    let env = Env::new();
    let (app, state) = router(&env.config());
    assert_eq!(state.scorer().unwrap().version, "v1");
    let a = get(&app, "/v2/models/churn/versions/v2").await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.body);
    let a = post_json(
        &app,
        "/v2/models/churn/versions/2/infer",
        &infer_request(1, 0.0),
    )
    .await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.body);
    assert_eq!(a.body["model_version"], "v2");
    assert_eq!(state.pinned_versions(), vec!["v2".to_string()]);
    // After promoting v2, v1 stays reachable for clients that pinned it.
    env.registry().promote("churn", 2, "production").unwrap();
    state.reload_model(true);
    assert_eq!(state.scorer().unwrap().version, "v2");
    let a = post_json(
        &app,
        "/v2/models/churn/versions/v1/infer",
        &infer_request(1, 0.0),
    )
    .await;
    assert_eq!(a.body["model_version"], "v1", "{}", a.body);
    assert_eq!(
        get(&app, "/v2/models/churn/versions/v1/ready").await.status,
        StatusCode::OK
    );
    assert_v2_error(
        &get(&app, "/v2/models/churn/versions/v9").await,
        StatusCode::NOT_FOUND,
        "v9",
    );
}

#[test]
fn lenient_json_rewrites_undefined_numbers_outside_strings_only() {
    use crate::serve::v2::lenient_json;
    let cases: [(&str, &str); 6] = [
        ("[1, 2]", "[1, 2]"),
        ("[NaN,1]", "[null,1]"),
        ("[Infinity, -Infinity]", "[\"Infinity\", \"-Infinity\"]"),
        (
            "{\"NaN\": \"a NaN \\\" NaN\"}",
            "{\"NaN\": \"a NaN \\\" NaN\"}",
        ),
        ("[NaNa, xNaN]", "[NaNa, xNaN]"),
        ("{\"a\":NaN}", "{\"a\":null}"),
    ];
    for (input, want) in cases {
        let got = lenient_json(input.as_bytes());
        assert_eq!(std::str::from_utf8(&got).unwrap(), want, "{input}");
    }
}

#[test]
fn a_json_part_cut_by_the_header_length_is_refused_naming_the_header() {
    use crate::serve::v2::parse_body;
    let body = br#"{"inputs":[{"name":"tenure_days","shape":[1],"datatype":"FP64","data":[1.0]}]}"#;
    // A stale Inference-Header-Content-Length (from another request) cuts the JSON short.
    let e = parse_body(body, Some(20)).unwrap_err();
    assert_eq!(e.status, StatusCode::BAD_REQUEST);
    assert!(
        e.message.contains("first 20 bytes")
            && e.message.contains("Inference-Header-Content-Length"),
        "{}",
        e.message
    );
    // The same body without the header is read whole.
    assert_eq!(
        parse_body(body, None).unwrap()["inputs"][0]["data"],
        json!([1.0])
    );
}

#[test]
fn binary_tensor_data_decodes_per_datatype() {
    use crate::serve::v2::decode_binary;
    let fp64: Vec<u8> = [1.5f64, f64::NAN, f64::INFINITY]
        .iter()
        .flat_map(|x| x.to_le_bytes())
        .collect();
    assert_eq!(
        decode_binary(&fp64, "FP64").unwrap(),
        vec![json!(1.5), Value::Null, json!("Infinity")]
    );
    let fp32: Vec<u8> = [0.25f32, -2.0]
        .iter()
        .flat_map(|x| x.to_le_bytes())
        .collect();
    assert_eq!(
        decode_binary(&fp32, "FP32").unwrap(),
        vec![json!(0.25), json!(-2.0)]
    );
    assert_eq!(
        decode_binary(&(-3i32).to_le_bytes(), "INT32").unwrap(),
        vec![json!(-3)]
    );
    assert_eq!(
        decode_binary(&[0, 1], "BOOL").unwrap(),
        vec![json!(false), json!(true)]
    );
    let mut bytes = 2u32.to_le_bytes().to_vec();
    bytes.extend_from_slice(b"c1");
    bytes.extend_from_slice(&0u32.to_le_bytes());
    assert_eq!(
        decode_binary(&bytes, "BYTES").unwrap(),
        vec![json!("c1"), json!("")]
    );
    assert!(decode_binary(&[0; 7], "FP64")
        .unwrap_err()
        .contains("whole number of FP64 elements"));
    assert!(decode_binary(&[9, 0, 0, 0, b'a'], "BYTES")
        .unwrap_err()
        .contains("runs past the end"));
    assert!(decode_binary(&[0; 2], "FP16")
        .unwrap_err()
        .contains("FP16 is not accepted"));
}
