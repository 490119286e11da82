//! `GET /openapi.json`: every route and schema documented.

use super::*;

#[tokio::test]
async fn the_openapi_document_lists_every_route() {
    let env = Env::new();
    let (app, _) = router(&env.config());
    let a = call(&app, "GET", "/openapi.json", None, None).await;
    assert_eq!(a.status, StatusCode::OK);
    let paths = a.body["paths"].as_object().unwrap();
    for p in [
        "/v1/score",
        "/v1/score/batch",
        "/v1/customers/{id}/score",
        "/v1/models",
        "/v1/models/{name}",
        "/v1/admin/reload",
        "/healthz",
        "/readyz",
        "/metrics",
        "/openapi.json",
        "/v2",
        "/v2/health/live",
        "/v2/health/ready",
        "/v2/models/{name}",
        "/v2/models/{name}/ready",
        "/v2/models/{name}/infer",
        "/v2/models/{name}/versions/{version}",
        "/v2/models/{name}/versions/{version}/ready",
        "/v2/models/{name}/versions/{version}/infer",
    ] {
        assert!(
            paths.contains_key(p),
            "{p} missing from the OpenAPI document"
        );
    }
    let schemas = a.body["components"]["schemas"].as_object().unwrap();
    for s in [
        "ScoreRequest",
        "ScoreResponse",
        "ErrorBody",
        "InferenceRequest",
        "Tier",
        "Reason",
    ] {
        assert!(schemas.contains_key(s), "schema {s} missing");
    }
    assert!(a.body["components"]["securitySchemes"]["bearer"].is_object());
}

/// The generated document, as a client reads it.
fn document() -> Value {
    serde_json::to_value(crate::serve::openapi::document()).unwrap()
}

/// Resolves a `$ref` (`#/components/schemas/X`) against the document.
fn resolve<'a>(doc: &'a Value, s: &'a Value) -> &'a Value {
    match s.get("$ref").and_then(Value::as_str) {
        Some(r) => {
            let name = r
                .strip_prefix("#/components/schemas/")
                .expect("a schema ref");
            let target = &doc["components"]["schemas"][name];
            assert!(target.is_object(), "dangling ref {r}");
            resolve(doc, target)
        }
        None => s,
    }
}

fn schema<'a>(doc: &'a Value, name: &str) -> &'a Value {
    let s = &doc["components"]["schemas"][name];
    assert!(s.is_object(), "schema {name} missing");
    s
}

fn keys(o: &Value) -> Vec<&str> {
    let mut k: Vec<&str> = o["properties"]
        .as_object()
        .map(|p| p.keys().map(String::as_str).collect())
        .unwrap_or_default();
    k.sort_unstable();
    k
}

/// The alternatives of a schema (`anyOf`/`oneOf` items, or itself), refs resolved.
fn alternatives<'a>(doc: &'a Value, s: &'a Value) -> Vec<&'a Value> {
    let s = resolve(doc, s);
    match s.get("anyOf").or_else(|| s.get("oneOf")) {
        Some(Value::Array(items)) => items.iter().map(|i| resolve(doc, i)).collect(),
        _ => vec![s],
    }
}

/// Whether a schema says `format: date-time` (itself or one alternative).
fn says_date_time(doc: &Value, s: &Value) -> bool {
    alternatives(doc, s)
        .iter()
        .any(|a| a["format"] == "date-time")
}

#[test]
fn the_hand_read_bodies_are_typed_exactly() {
    let doc = document();
    let req = schema(&doc, "ScoreRequest");
    let p = &req["properties"];
    // features: an object of number|boolean|null, as Scorer::parse_features reads it.
    assert_eq!(
        p["features"]["type"],
        json!(["object", "null"]),
        "{}",
        p["features"]
    );
    assert_eq!(
        p["features"]["additionalProperties"]["type"],
        json!(["number", "boolean", "null"])
    );
    assert_eq!(p["customer_id"]["minLength"], 1);
    assert_eq!(p["customer_id"]["maxLength"], 256);
    // activity: the payload's own fields, as OwnedActivity::parse reads them.
    let activity = alternatives(&doc, &p["activity"]);
    assert!(
        activity.iter().any(|a| a["type"] == "null"),
        "{}",
        p["activity"]
    );
    let activity = activity
        .into_iter()
        .find(|a| a["type"] == "object")
        .expect("an object alternative");
    let mut fields = crate::features::online::ACTIVITY_FIELDS.to_vec();
    fields.sort_unstable();
    assert_eq!(keys(activity), fields);
    assert_eq!(activity["required"], json!(["customer"]));
    let customer = resolve(&doc, &activity["properties"]["customer"]);
    assert_eq!(customer["required"], json!(["signup_at"]));
    assert!(says_date_time(&doc, &customer["properties"]["signup_at"]));
    assert_eq!(
        customer["additionalProperties"]["type"],
        json!(["string", "number", "null"])
    );
    let item = |list: &str| {
        let l = alternatives(&doc, &activity["properties"][list])
            .into_iter()
            .find(|a| a["type"] == "array" || a["type"] == json!(["array", "null"]))
            .unwrap_or_else(|| panic!("{list}: an array"));
        resolve(&doc, &l["items"]).clone()
    };
    let ticket = item("tickets");
    assert_eq!(
        keys(&ticket),
        ["closed_at", "csat", "opened_at", "priority"]
    );
    assert_eq!(ticket["required"], json!(["opened_at"]));
    assert_eq!(
        alternatives(&doc, &ticket["properties"]["csat"])
            .iter()
            .find(|a| a["type"] == json!(["number", "null"]) || a["type"] == "number")
            .map(|a| (a["minimum"].clone(), a["maximum"].clone())),
        Some((json!(1), json!(5)))
    );
    let order = item("orders");
    assert_eq!(keys(&order), ["amount", "at"]);
    assert_eq!(order["required"], json!(["at", "amount"]));
    assert_eq!(order["properties"]["amount"]["type"], "number");
    let event = item("events");
    assert_eq!(keys(&event), ["at", "event_type", "value"]);
    assert_eq!(event["required"], json!(["at", "event_type"]));
    let login = item("logins");
    let forms = alternatives(&doc, &login);
    assert_eq!(forms.len(), 2, "{login}");
    assert!(says_date_time(&doc, forms[0]));
    assert_eq!(forms[1]["required"], json!(["at"]));

    // The feature schema of GET /v1/models/{name}: FeatureDef, field by field.
    let detail = schema(&doc, "ModelDetail");
    assert_eq!(detail["properties"]["features"]["type"], "array");
    let def = resolve(&doc, &detail["properties"]["features"]["items"]);
    assert_eq!(
        keys(def),
        [
            "by_construction",
            "description",
            "dimension",
            "may_be_missing",
            "name",
            "table",
            "transform"
        ]
    );
    assert_eq!(
        resolve(&doc, &def["properties"]["transform"])["enum"],
        json!(["identity", "log1p", "binary"])
    );
    assert_eq!(
        resolve(&doc, &def["properties"]["dimension"])["enum"],
        json!(["engagement", "support", "billing", "relationship"])
    );
    // `explain` of a score request, and what `"explain": "all"` adds to the answer.
    let request = schema(&doc, "ScoreRequest");
    let explain = alternatives(&doc, &request["properties"]["explain"]);
    assert!(
        explain.iter().any(|a| a["enum"] == json!(["top", "all"])),
        "{explain:?}"
    );
    let response = schema(&doc, "ScoreResponse");
    for field in ["dimensions", "primary_driver", "contributions"] {
        assert!(response["properties"].get(field).is_some(), "{field}");
    }
    assert!(!response["required"]
        .as_array()
        .unwrap()
        .contains(&json!("contributions")));

    // The tensors: the protocol's numbers, strings and booleans, never objects.
    let input = &schema(&doc, "RequestInput")["properties"]["data"];
    assert_eq!(input["type"], "array");
    let element = json!(["number", "string", "boolean", "null"]);
    assert_eq!(
        input["items"]["anyOf"],
        json!([{"type": element}, {"type": "array", "items": {"type": element}}]),
        "{input}"
    );
    let output = &schema(&doc, "ResponseOutput")["properties"]["data"];
    assert_eq!(output["type"], "array");
    assert_eq!(
        output["items"],
        json!({"type": ["number", "string", "boolean"]})
    );
    for (name, key) in [
        ("InferenceRequest", "parameters"),
        ("InferenceResponse", "parameters"),
        ("RequestInput", "parameters"),
        ("RequestOutput", "parameters"),
    ] {
        let p = &schema(&doc, name)["properties"][key];
        assert_eq!(
            p["additionalProperties"]["type"],
            json!(["string", "number", "boolean"]),
            "{name}.{key}: {p}"
        );
    }
    assert!(says_date_time(
        &doc,
        &schema(&doc, "InferenceRequest")["properties"]["parameters"]["properties"]["as_of"]
    ));
}

/// Every property named like a timestamp (`as_of`, `at`, `*_at`), anywhere in the document.
fn timestamp_properties<'a>(v: &'a Value, at: &str, out: &mut Vec<(String, &'a Value)>) {
    match v {
        Value::Object(o) => {
            if let Some(Value::Object(props)) = o.get("properties") {
                for (k, s) in props {
                    if k == "as_of" || k == "at" || k.ends_with("_at") {
                        out.push((format!("{at}.{k}"), s));
                    }
                }
            }
            for (k, child) in o {
                timestamp_properties(child, &format!("{at}.{k}"), out);
            }
        }
        Value::Array(items) => {
            for (i, child) in items.iter().enumerate() {
                timestamp_properties(child, &format!("{at}[{i}]"), out);
            }
        }
        _ => {}
    }
}

#[test]
fn every_timestamp_of_the_document_is_a_date_time() {
    let doc = document();
    let mut found = Vec::new();
    timestamp_properties(&doc, "", &mut found);
    let names: Vec<&str> = found.iter().map(|(n, _)| n.as_str()).collect();
    for must in [
        "ScoreResponse.as_of",
        "CustomerScore.as_of",
        "ModelSummary.created_at",
        "ModelDetail.created_at",
        "VersionSummary.created_at",
        "ScoreRequest.as_of",
        "ActivityTicket.opened_at",
        "ActivityTicket.closed_at",
        "ActivityOrder.at",
        "ActivityEvent.at",
    ] {
        assert!(
            names.iter().any(|n| n.ends_with(must)),
            "{must} not among {names:?}"
        );
    }
    for (name, s) in &found {
        assert!(
            says_date_time(&doc, s),
            "{name} has no format date-time: {s}"
        );
    }
}

/// Checks `v` against the schema `s` of `doc` (the JSON Schema subset the document uses);
/// `strict` refuses properties a schema does not name (for requests: the names the
/// document gives must be the server's).
fn conforms(doc: &Value, s: &Value, v: &Value, at: &str, strict: bool) -> Result<(), String> {
    let s = resolve(doc, s);
    if let Some(Value::Array(all)) = s.get("allOf") {
        let alone = s.get("properties").is_none();
        for member in all {
            conforms(doc, member, v, at, strict && alone)?;
        }
    }
    let one_of = s.get("oneOf").is_some();
    if let Some(Value::Array(alts)) = s.get("anyOf").or_else(|| s.get("oneOf")) {
        // Alternatives beside `properties` constrain them; they name no property of their own.
        let alone = s.get("properties").is_none();
        let errors: Vec<String> = alts
            .iter()
            .filter_map(|a| conforms(doc, a, v, at, strict && alone).err())
            .collect();
        let holding = alts.len() - errors.len();
        if holding == 0 {
            return Err(format!("{at}: no alternative holds {v}: {errors:?}"));
        }
        if one_of && holding > 1 {
            return Err(format!("{at}: {holding} alternatives of a oneOf hold {v}"));
        }
        if alone {
            return Ok(());
        }
    }
    let type_ok = |t: &str| match t {
        "null" => v.is_null(),
        "boolean" => v.is_boolean(),
        "number" => v.is_number(),
        "integer" => v.is_i64() || v.is_u64(),
        "string" => v.is_string(),
        "array" => v.is_array(),
        "object" => v.is_object(),
        other => panic!("type {other}"),
    };
    match &s["type"] {
        Value::String(t) if !type_ok(t) => return Err(format!("{at}: {v} is not a {t}")),
        Value::Array(ts) if !ts.iter().any(|t| type_ok(t.as_str().unwrap())) => {
            return Err(format!("{at}: {v} is none of {ts:?}"))
        }
        _ => {}
    }
    if let Some(e) = s.get("enum").and_then(Value::as_array) {
        if !e.contains(v) {
            return Err(format!("{at}: {v} is not one of {e:?}"));
        }
    }
    if let Some(t) = v.as_str() {
        match s["format"].as_str() {
            Some("date-time") if chrono::DateTime::parse_from_rfc3339(t).is_err() => {
                return Err(format!("{at}: `{t}` is not an RFC 3339 date-time"))
            }
            Some("date") if chrono::NaiveDate::parse_from_str(t, "%Y-%m-%d").is_err() => {
                return Err(format!("{at}: `{t}` is not a date"))
            }
            _ => {}
        }
        if let Some(p) = s["pattern"].as_str() {
            if p == crate::serve::routes::NON_BLANK {
                // A customer id: one character `trim` keeps.
                if t.trim().is_empty() {
                    return Err(format!("{at}: `{t}` is blank"));
                }
            } else {
                // The other pattern of the document: the naive timestamp forms.
                assert_eq!(
                    p,
                    crate::serve::schema::NAIVE_TIMESTAMP,
                    "unexpected pattern"
                );
                if crate::time::parse_ts(t).is_none() || t.len() < 19 || t.contains(['Z', '+']) {
                    return Err(format!("{at}: `{t}` does not match {p}"));
                }
            }
        }
        let n = t.chars().count() as u64;
        if s["minLength"].as_u64().is_some_and(|m| n < m)
            || s["maxLength"].as_u64().is_some_and(|m| n > m)
        {
            return Err(format!("{at}: `{t}` has the wrong length"));
        }
    }
    if let Some(x) = v.as_f64() {
        if s["minimum"].as_f64().is_some_and(|m| x < m)
            || s["maximum"].as_f64().is_some_and(|m| x > m)
        {
            return Err(format!("{at}: {x} is out of range"));
        }
    }
    if let Some(items) = v.as_array() {
        if let Some(is) = s.get("items") {
            for (i, item) in items.iter().enumerate() {
                conforms(doc, is, item, &format!("{at}[{i}]"), strict)?;
            }
        }
    }
    if let Some(o) = v.as_object() {
        for r in s["required"].as_array().into_iter().flatten() {
            let r = r.as_str().unwrap();
            if !o.contains_key(r) {
                return Err(format!("{at}: required `{r}` missing from {v}"));
            }
        }
        let props = s["properties"].as_object();
        for (k, child) in o {
            let at = format!("{at}.{k}");
            match (props.and_then(|p| p.get(k)), s.get("additionalProperties")) {
                (Some(ps), _) => conforms(doc, ps, child, &at, strict)?,
                (None, Some(Value::Bool(false))) => return Err(format!("{at}: not allowed")),
                (None, Some(a)) if a.is_object() => conforms(doc, a, child, &at, strict)?,
                (None, _) if strict && props.is_some() => {
                    return Err(format!("{at}: not in the document"))
                }
                _ => {}
            }
        }
    }
    Ok(())
}

/// The schema of the JSON body the document gives for `method path` answering `status`
/// (`None`: documented without a JSON body); panics when the status is not documented.
fn response_schema<'a>(doc: &'a Value, method: &str, path: &str, status: u16) -> Option<&'a Value> {
    let op = &doc["paths"][path][method.to_ascii_lowercase()];
    assert!(op.is_object(), "{method} {path} not documented");
    let r = &op["responses"][status.to_string()];
    assert!(
        r.is_object(),
        "{method} {path} answers {status}, which the document does not list (it lists {:?})",
        op["responses"]
            .as_object()
            .map(|o| o.keys().collect::<Vec<_>>())
    );
    r["content"]["application/json"]["schema"]
        .as_object()
        .map(|_| &r["content"]["application/json"]["schema"])
}

fn request_schema<'a>(doc: &'a Value, method: &str, path: &str) -> &'a Value {
    &doc["paths"][path][method.to_ascii_lowercase()]["requestBody"]["content"]["application/json"]
        ["schema"]
}

/// A request of the test below: method, documented path, concrete path, key, body.
type Call = (
    &'static str,
    &'static str,
    String,
    Option<&'static str>,
    Option<(&'static str, Vec<u8>)>,
);

#[tokio::test]
async fn every_answer_of_the_server_matches_the_document() {
    let env = Env::new();
    write_scores(&env.path("scores.csv"), &[("c1", 0.8, "high")]);
    let (app, _) = router(&env.config());
    // The document this server serves: its model's request schema.
    let doc = call(&app, "GET", "/openapi.json", None, None).await.body;
    let missing = fixture()
        .features
        .iter()
        .find(|(_, m)| *m)
        .map(|(n, _)| n.clone())
        .expect("a may_be_missing feature");
    let mut partly_defined = features(1.0);
    partly_defined[&missing] = Value::Null;
    let mut v2_with_nulls = infer_request(2, 1.0);
    for input in v2_with_nulls["inputs"].as_array_mut().unwrap() {
        if input["name"] == missing.as_str() {
            // `[N, 1]` with nested data, and an undefined value.
            input["shape"] = json!([2, 1]);
            input["data"] = json!([[null], [3.0]]);
        }
    }
    v2_with_nulls["inputs"].as_array_mut().unwrap().push(
        json!({"name": "customer_id", "datatype": "BYTES", "shape": [2], "data": ["c1", "c2"]}),
    );
    v2_with_nulls["parameters"]["as_of"] = json!("2024-06-01");
    let good_requests = [
        (
            "POST",
            "/v1/score",
            json!({"customer_id": "c9", "features": partly_defined}),
        ),
        (
            "POST",
            "/v1/score",
            json!({"customer_id": "c10", "as_of": "2024-06-01 00:00:00", "activity": activity()}),
        ),
        (
            "POST",
            "/v1/score/batch",
            json!({"instances": [{"customer_id": "c11", "features": features(0.0)}]}),
        ),
        (
            "POST",
            "/v1/score",
            json!({"customer_id": "c12", "features": features(1.0), "explain": "all"}),
        ),
        (
            "POST",
            "/v1/score/batch",
            json!({"instances": [{"customer_id": "c13", "features": features(0.0), "explain": "all"},
                                 {"customer_id": "c14", "features": features(2.0), "explain": "top"}]}),
        ),
        ("POST", "/v2/models/{name}/infer", infer_request(3, 0.0)),
        ("POST", "/v2/models/{name}/infer", v2_with_nulls),
    ];
    for (method, path, body) in &good_requests {
        conforms(&doc, request_schema(&doc, method, path), body, path, true)
            .unwrap_or_else(|e| panic!("the request the server accepts breaks the document: {e}"));
    }

    // (method, documented path, concrete path, key, body): successes and every error class.
    let json_body = |v: &Value| Some(("application/json", serde_json::to_vec(v).unwrap()));
    let mut calls: Vec<Call> = good_requests
        .iter()
        .map(|(m, p, b)| {
            (
                *m,
                *p,
                p.replace("{name}", "churn"),
                Some(KEY),
                json_body(b),
            )
        })
        .collect();
    let bad_feature = json!({"customer_id": "c1", "features": {required_feature(): "x"}});
    // Issue 15 (c): an `as_of` past the clock skew, through the fast path and a batch.
    let future = json!({"customer_id": "c1", "as_of": "9999-01-01", "features": features(1.0)});
    let mut v2_future = infer_request(1, 1.0);
    v2_future["parameters"]["as_of"] = json!("9999-01-01");
    calls.extend([
        (
            "POST",
            "/v1/score",
            "/v1/score".into(),
            Some(KEY),
            json_body(&future),
        ),
        (
            "POST",
            "/v1/score/batch",
            "/v1/score/batch".into(),
            Some(KEY),
            json_body(&json!({"instances": [future.clone()]})),
        ),
        (
            "POST",
            "/v2/models/{name}/infer",
            "/v2/models/churn/infer".into(),
            Some(KEY),
            json_body(&v2_future),
        ),
        (
            "POST",
            "/v1/score",
            "/v1/score".into(),
            Some(KEY),
            json_body(&bad_feature),
        ),
        (
            "POST",
            "/v1/score",
            "/v1/score".into(),
            Some(KEY),
            Some(("application/json", b"{".to_vec())),
        ),
        (
            "POST",
            "/v1/score",
            "/v1/score".into(),
            Some(KEY),
            Some(("text/plain", b"{}".to_vec())),
        ),
        (
            "POST",
            "/v1/score",
            "/v1/score".into(),
            None,
            json_body(&bad_feature),
        ),
        (
            "POST",
            "/v1/score",
            "/v1/score".into(),
            Some(KEY),
            Some(("application/json", vec![b' '; 100 * 1024])),
        ),
        (
            "POST",
            "/v1/score/batch",
            "/v1/score/batch".into(),
            Some(KEY),
            json_body(&json!({"instances": [bad_feature]})),
        ),
        (
            "POST",
            "/v1/score/batch",
            "/v1/score/batch".into(),
            Some(KEY),
            json_body(&json!({"instances": vec![json!({}); 51]})),
        ),
        (
            "GET",
            "/v1/customers/{id}/score",
            "/v1/customers/c1/score".into(),
            Some(KEY),
            None,
        ),
        (
            "GET",
            "/v1/customers/{id}/score",
            "/v1/customers/nobody/score".into(),
            Some(KEY),
            None,
        ),
        (
            "GET",
            "/v1/customers/{id}/score",
            "/v1/customers/c1/score".into(),
            None,
            None,
        ),
        ("GET", "/v1/models", "/v1/models".into(), Some(KEY), None),
        ("GET", "/v1/models", "/v1/models".into(), None, None),
        (
            "GET",
            "/v1/models/{name}",
            "/v1/models/churn".into(),
            Some(KEY),
            None,
        ),
        (
            "GET",
            "/v1/models/{name}",
            "/v1/models/other".into(),
            Some(KEY),
            None,
        ),
        (
            "POST",
            "/v1/admin/reload",
            "/v1/admin/reload".into(),
            Some(ADMIN),
            None,
        ),
        (
            "POST",
            "/v1/admin/reload",
            "/v1/admin/reload".into(),
            Some(KEY),
            None,
        ),
        ("GET", "/healthz", "/healthz".into(), None, None),
        ("GET", "/readyz", "/readyz".into(), None, None),
        ("GET", "/v2", "/v2".into(), None, None),
        (
            "GET",
            "/v2/health/live",
            "/v2/health/live".into(),
            None,
            None,
        ),
        (
            "GET",
            "/v2/health/ready",
            "/v2/health/ready".into(),
            None,
            None,
        ),
        (
            "GET",
            "/v2/models/{name}",
            "/v2/models/churn".into(),
            Some(KEY),
            None,
        ),
        (
            "GET",
            "/v2/models/{name}",
            "/v2/models/other".into(),
            Some(KEY),
            None,
        ),
        (
            "GET",
            "/v2/models/{name}",
            "/v2/models/churn".into(),
            None,
            None,
        ),
        (
            "GET",
            "/v2/models/{name}/ready",
            "/v2/models/churn/ready".into(),
            Some(KEY),
            None,
        ),
        (
            "GET",
            "/v2/models/{name}/ready",
            "/v2/models/churn/ready".into(),
            None,
            None,
        ),
        (
            "GET",
            "/v2/models/{name}/versions/{version}",
            "/v2/models/churn/versions/v2".into(),
            Some(KEY),
            None,
        ),
        (
            "GET",
            "/v2/models/{name}/versions/{version}",
            "/v2/models/churn/versions/v9".into(),
            Some(KEY),
            None,
        ),
        (
            "GET",
            "/v2/models/{name}/versions/{version}/ready",
            "/v2/models/churn/versions/1/ready".into(),
            Some(KEY),
            None,
        ),
        (
            "POST",
            "/v2/models/{name}/infer",
            "/v2/models/churn/infer".into(),
            None,
            json_body(&infer_request(1, 0.0)),
        ),
        (
            "POST",
            "/v2/models/{name}/infer",
            "/v2/models/churn/infer".into(),
            Some(KEY),
            json_body(&json!({"inputs": []})),
        ),
        (
            "POST",
            "/v2/models/{name}/infer",
            "/v2/models/other/infer".into(),
            Some(KEY),
            json_body(&infer_request(1, 0.0)),
        ),
        (
            "POST",
            "/v2/models/{name}/infer",
            "/v2/models/churn/infer".into(),
            Some(KEY),
            Some(("text/csv", b"a,b".to_vec())),
        ),
        (
            "POST",
            "/v2/models/{name}/infer",
            "/v2/models/churn/infer".into(),
            Some(KEY),
            Some(("application/json", vec![b' '; 100 * 1024])),
        ),
        (
            "POST",
            "/v2/models/{name}/versions/{version}/infer",
            "/v2/models/churn/versions/v2/infer".into(),
            Some(KEY),
            json_body(&infer_request(2, 0.5)),
        ),
        (
            "POST",
            "/v2/models/{name}/versions/{version}/infer",
            "/v2/models/churn/versions/v7/infer".into(),
            Some(KEY),
            json_body(&infer_request(2, 0.5)),
        ),
    ]);
    let mut statuses = std::collections::BTreeSet::new();
    for (method, path, concrete, key, body) in calls {
        let a = call(&app, method, &concrete, key, body).await;
        statuses.insert(a.status.as_u16());
        if let Some(s) = response_schema(&doc, method, path, a.status.as_u16()) {
            conforms(
                &doc,
                s,
                &a.body,
                &format!("{method} {concrete} {}", a.status),
                false,
            )
            .unwrap_or_else(|e| panic!("the server's answer breaks the document: {e}"));
        }
    }
    // Every class of answer was exercised (a call that stopped erroring would hide here).
    assert_eq!(
        statuses.into_iter().collect::<Vec<_>>(),
        [200, 400, 401, 403, 404, 413, 415, 422]
    );
}

/// Issue 15: the document said `features` was a free map while the model requires its
/// features, so a schema-valid request was refused. The served document's request schema
/// is the served model's: every feature by name, required unless it may be missing,
/// numbers only (booleans too for 0/1 ones), and the server accepts exactly that.
#[tokio::test]
async fn the_score_request_schema_is_the_served_models_signature() {
    let env = Env::new();
    let (app, _) = router(&env.config());
    let doc = call(&app, "GET", "/openapi.json", None, None).await.body;
    let fs = &schema(&doc, "ScoreRequest")["properties"]["features"];
    let mut required: Vec<&str> = fixture()
        .features
        .iter()
        .filter(|(_, m)| !m)
        .map(|(n, _)| n.as_str())
        .collect();
    let names: Vec<&str> = fixture().features.iter().map(|(n, _)| n.as_str()).collect();
    let props = fs["properties"].as_object().expect("the model's features");
    assert_eq!(props.keys().map(String::as_str).collect::<Vec<_>>(), {
        let mut n = names.clone();
        n.sort_unstable();
        n
    });
    let mut documented: Vec<&str> = fs["required"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    documented.sort_unstable();
    required.sort_unstable();
    assert_eq!(documented, required);
    for (name, may_be_missing) in &fixture().features {
        let t = props[name]["type"].as_array().unwrap();
        assert!(t.contains(&json!("number")), "{name}: {t:?}");
        assert_eq!(t.contains(&json!("null")), *may_be_missing, "{name}: {t:?}");
        assert!(!t.contains(&json!("string")) && !t.contains(&json!("object")));
    }
    assert_eq!(fs["additionalProperties"], json!(true));
    assert!(doc["info"]["description"]
        .as_str()
        .unwrap()
        .contains("model `churn` v1"));

    // Requests the document calls valid are scored; requests it calls invalid are refused.
    let req = request_schema(&doc, "POST", "/v1/score");
    let big_unicode_id: String = "é".repeat(256); // 256 characters, 512 bytes
    let mut without_missing = features(1.0);
    for (name, m) in &fixture().features {
        if *m {
            without_missing.as_object_mut().unwrap().remove(name);
        }
    }
    let example = schema(&doc, "ScoreRequest")["example"].clone();
    for valid in [
        json!({"customer_id": "c1", "features": features(2.0)}),
        json!({"customer_id": "c2", "features": without_missing, "activity": null}),
        json!({"customer_id": big_unicode_id, "features": features(1e12)}),
        json!({"customer_id": "c3", "features": null, "activity": activity(), "as_of": "2024-06-01"}),
        example,
    ] {
        conforms(&doc, req, &valid, "request", true)
            .unwrap_or_else(|e| panic!("{valid} should be valid: {e}"));
        let a = post_json(&app, "/v1/score", &valid).await;
        assert_eq!(a.status, StatusCode::OK, "{valid}: {}", a.body);
    }
    let mut missing_one = features(1.0);
    missing_one
        .as_object_mut()
        .unwrap()
        .remove(&required_feature());
    let mut too_big = features(1.0);
    too_big[&required_feature()] = json!(1.5e12);
    for invalid in [
        json!({"customer_id": "c1", "features": missing_one}),
        json!({"customer_id": "c1", "features": too_big}),
        json!({"customer_id": "c1", "features": {required_feature(): "1"}}),
        json!({"customer_id": " \t", "features": features(1.0)}),
        json!({"customer_id": "x".repeat(257), "features": features(1.0)}),
        json!({"customer_id": "c1"}),
        json!({"customer_id": "c1", "features": null, "activity": null}),
        json!({"customer_id": "c1", "features": features(1.0), "activity": activity()}),
    ] {
        assert!(
            conforms(&doc, req, &invalid, "request", true).is_err(),
            "{invalid} should break the document"
        );
        let a = post_json(&app, "/v1/score", &invalid).await;
        assert_error(&a, StatusCode::UNPROCESSABLE_ENTITY, "invalid_input", None);
    }
}

/// The document is served from the state: another version promoted and hot-reloaded
/// changes it (here the version it names), without a restart.
#[tokio::test]
async fn the_document_follows_the_version_served() {
    let env = Env::new();
    let (app, _) = router(&env.config());
    let version_of = |doc: &Value| {
        schema(doc, "ScoreRequest")["properties"]["features"]["description"]
            .as_str()
            .unwrap()
            .to_string()
    };
    let before = call(&app, "GET", "/openapi.json", None, None).await.body;
    assert!(
        version_of(&before).contains("`churn` v1"),
        "{}",
        version_of(&before)
    );
    env.force_production("v2");
    let a = call(&app, "POST", "/v1/admin/reload", Some(ADMIN), None).await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.body);
    let after = call(&app, "GET", "/openapi.json", None, None).await.body;
    assert!(
        version_of(&after).contains("`churn` v2"),
        "{}",
        version_of(&after)
    );
}

/// Issue 15 (f): the 1,000-instance batch limit could not be reached inside the 1 MiB
/// body limit (1,000 compact instances of a 60-feature model are 1.06 MB). With the
/// default limits, a full batch of that size is scored, one instance more is refused with
/// 422 `too_many_instances` (the document's `maxItems`), a body past the batch routes' limit is a JSON 413, and the
/// document states both limits.
#[tokio::test]
async fn a_full_batch_fits_the_body_limit_of_the_batch_routes() {
    let env = Env::new();
    let defaults = ServeConfig::default();
    let config = ServeConfig {
        max_batch: defaults.max_batch,
        max_body_bytes: defaults.max_body_bytes,
        ..env.config()
    };
    assert_eq!((config.max_batch, config.max_body_bytes), (1000, 1 << 20));
    let (app, _) = router(&config);
    // 60 features per instance: the model's, then ignored ones of the same shape.
    let instance = |i: usize| {
        let mut f = features(12.345678).as_object().unwrap().clone();
        let mut k = 0;
        while f.len() < 60 {
            f.insert(format!("extra_feature_{k:02}"), json!(12.345678));
            k += 1;
        }
        json!({"customer_id": format!("customer-{i:06}"), "features": f})
    };
    let body = |n: usize| {
        serde_json::to_vec(&json!({"instances": (0..n).map(instance).collect::<Vec<_>>()})).unwrap()
    };
    let full = body(1000);
    assert!(full.len() > 1 << 20, "{} bytes", full.len());
    let a = call(
        &app,
        "POST",
        "/v1/score/batch",
        Some(KEY),
        Some(("application/json", full)),
    )
    .await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.body);
    assert_eq!(a.body["results"].as_array().unwrap().len(), 1000);
    let a = call(
        &app,
        "POST",
        "/v1/score/batch",
        Some(KEY),
        Some(("application/json", body(1001))),
    )
    .await;
    assert_error(
        &a,
        StatusCode::UNPROCESSABLE_ENTITY,
        "too_many_instances",
        Some("instances"),
    );
    assert!(a.body["error"]["message"]
        .as_str()
        .unwrap()
        .contains("at most 1000"));
    let limit = crate::serve::batch_body_limit(1 << 20, 1000);
    for path in ["/v1/score/batch", "/v2/models/churn/infer"] {
        let a = call(
            &app,
            "POST",
            path,
            Some(KEY),
            Some(("application/json", vec![b' '; limit + 1])),
        )
        .await;
        assert_eq!(
            a.status,
            StatusCode::PAYLOAD_TOO_LARGE,
            "{path}: {}",
            a.body
        );
        assert!(a.body["error"].is_string() || a.body["error"]["code"] == "payload_too_large");
    }
    // The single-score route keeps the smaller limit.
    let a = call(
        &app,
        "POST",
        "/v1/score",
        Some(KEY),
        Some(("application/json", vec![b' '; (1 << 20) + 1])),
    )
    .await;
    assert_error(&a, StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large", None);
    let doc = call(&app, "GET", "/openapi.json", None, None).await.body;
    assert_eq!(
        schema(&doc, "BatchRequest")["properties"]["instances"]["maxItems"],
        1000
    );
    let info = doc["info"]["description"].as_str().unwrap();
    assert!(
        info.contains(&format!("at most {} bytes", 1 << 20)),
        "{info}"
    );
    assert!(
        info.contains(&format!("{limit} bytes for `/v1/score/batch`")),
        "{info}"
    );
}
