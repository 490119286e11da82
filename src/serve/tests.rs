//! Tests of the service: `oneshot` through the router for the contract, a real server on
//! an ephemeral loopback port (reqwest) for auth, alerts, reloads and shutdown.
//!
//! One trained registry (two logistic versions: v1 `production`, v2 `staging`) is built
//! per test process and copied into each test's own directory, so tests that promote or
//! corrupt versions do not see each other.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::http::{header, HeaderMap, Request, StatusCode};
use axum::Router;
use serde_json::{json, Value};
use tower::ServiceExt;

use super::*;
use crate::scoring::Tier;
use crate::model::Algorithm;
use crate::registry::{Registry, Selector};
use crate::scoring::Scorer;
use crate::synth::SynthConfig;
use crate::train::TrainConfig;

const KEY: &str = "test-api-key";
const ADMIN: &str = "test-admin-key";

/// The trained registry shared (read-only) by every test of this process, kept in memory
/// so that nothing is left behind in the temporary directory.
struct Fixture {
    /// Every file of the models directory: (path relative to it, content).
    files: Vec<(PathBuf, Vec<u8>)>,
    /// Feature names in the model's order, with `may_be_missing`.
    features: Vec<(String, bool)>,
}

fn fixture() -> &'static Fixture {
    static FIXTURE: OnceLock<Fixture> = OnceLock::new();
    FIXTURE.get_or_init(|| {
        let root = tempfile::tempdir().expect("temporary directory");
        let data = root.path().join("data");
        let models = root.path().join("models");
        crate::synth::generate(
            &SynthConfig {
                customers: 2000,
                ..SynthConfig::sample()
            },
            &data,
            &|_| {},
        )
        .expect("synthetic customer base");
        let base = crate::data::load(&data, &Default::default()).expect("load customer base");
        let registry = Registry::new(&models);
        let cfg = TrainConfig {
            algorithms: vec![Algorithm::Logistic],
            ..Default::default()
        };
        for _ in 0..2 {
            crate::train::run(&base, &registry, &cfg, &|_| {}).expect("train");
        }
        let scorer = Scorer::from_loaded(
            registry
                .load("churn", &Selector::Alias("production".into()))
                .expect("load v1"),
        )
        .expect("scorer");
        let features = scorer
            .artifact
            .spec
            .defs()
            .iter()
            .map(|d| (d.name.clone(), d.may_be_missing))
            .collect();
        let mut files = Vec::new();
        read_tree(&models, Path::new(""), &mut files);
        Fixture { files, features }
    })
}

fn read_tree(root: &Path, rel: &Path, out: &mut Vec<(PathBuf, Vec<u8>)>) {
    for entry in std::fs::read_dir(root.join(rel)).unwrap() {
        let entry = entry.unwrap();
        let rel = rel.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            read_tree(root, &rel, out);
        } else {
            out.push((rel, std::fs::read(entry.path()).unwrap()));
        }
    }
}

/// A test's own directory with a copy of the trained registry.
struct Env {
    dir: tempfile::TempDir,
}

impl Env {
    fn new() -> Env {
        let dir = tempfile::tempdir().unwrap();
        let models = dir.path().join("models");
        for (rel, bytes) in &fixture().files {
            let path = models.join(rel);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(path, bytes).unwrap();
        }
        Env { dir }
    }

    fn models(&self) -> PathBuf {
        self.dir.path().join("models")
    }

    fn registry(&self) -> Registry {
        Registry::new(self.models())
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn config(&self) -> ServeConfig {
        ServeConfig {
            models: self.models(),
            name: "churn".into(),
            bind: SocketAddr::from(([127, 0, 0, 1], 0)),
            api_keys: vec![KEY.into()],
            admin_key: Some(ADMIN.into()),
            scores: Some(self.path("scores.csv")),
            outbox: self.path("outbox.db"),
            alert_log: Some(self.path("alerts.jsonl")),
            webhook: None,
            policy: crate::alerts::AlertPolicy::default(),
            reload_interval: Duration::from_millis(50),
            max_batch: 50,
            max_body_bytes: 64 * 1024,
            request_timeout: Duration::from_secs(20),
            log_json: false,
            rules: None,
        }
    }

    /// [`Env::config`] with alerts from the lowest tier: every customer's first score
    /// alerts, whatever the model says.
    fn config_alerting_on_every_first_score(&self) -> ServeConfig {
        ServeConfig {
            policy: crate::alerts::AlertPolicy {
                alert_tier: Tier::Low,
                cooldown_days: 14,
            },
            ..self.config()
        }
    }

    /// Points `production` at `version` by rewriting `aliases.json` directly (as a
    /// careless operator or a half-finished copy would), bypassing the registry's checks.
    fn force_production(&self, version: &str) {
        let path = self.models().join("churn/aliases.json");
        let mut v: Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
        v["production"] = json!(version);
        std::fs::write(&path, serde_json::to_vec(&v).unwrap()).unwrap();
    }
}

/// A nightly score file in CSV, as `batch` writes it (Parquet works the same way).
fn write_scores(path: &Path, rows: &[(&str, f64, &str)]) {
    let mut text = String::from(
        "customer_id,as_of,churn_probability,health_score,risk_tier,reason_1,reason_1_value,reason_1_contribution,reason_2,reason_2_value,reason_2_contribution,reason_3,reason_3_value,reason_3_contribution,rfm_segment,model_name,model_version\n",
    );
    for (id, p, tier) in rows {
        text.push_str(&format!(
            "{id},2024-06-01T00:00:00Z,{p},{},{tier},logins_30d,0.0,0.8,tickets_open,3.0,0.2,,,,at_risk,churn,v1\n",
            (100.0 * (1.0 - p)).round()
        ));
    }
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, text).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}

/// Every feature of the model set to `value` (undefined-able ones too).
fn features(value: f64) -> Value {
    let mut m = serde_json::Map::new();
    for (name, _) in &fixture().features {
        m.insert(name.clone(), json!(value));
    }
    Value::Object(m)
}

/// A feature the model requires (cannot be missing).
fn required_feature() -> String {
    fixture()
        .features
        .iter()
        .find(|(_, missing)| !missing)
        .expect("a required feature")
        .0
        .clone()
}

fn activity() -> Value {
    json!({
        "customer": {"signup_at": "2023-02-01", "plan": "pro", "monthly_fee": 49},
        "logins": ["2024-05-20T08:00:00Z", {"at": "2024-05-28"}, "2024-05-30 10:00:00"],
        "tickets": [{"opened_at": "2024-05-01", "closed_at": "2024-05-03", "priority": "high", "csat": 2}],
        "orders": [{"at": "2024-05-15", "amount": 49.0}],
        "events": [{"at": "2024-05-29", "event_type": "search", "value": 1}]
    })
}

/// A router over a fresh state (no background tasks).
fn router(config: &ServeConfig) -> (Router, AppState) {
    let state = AppState::open(config).expect("state");
    (app(state.clone()), state)
}

struct Answer {
    status: StatusCode,
    headers: HeaderMap,
    body: Value,
}

async fn call(
    app: &Router,
    method: &str,
    path: &str,
    key: Option<&str>,
    body: Option<(&str, Vec<u8>)>,
) -> Answer {
    let mut req = Request::builder().method(method).uri(path);
    if let Some(k) = key {
        req = req.header(header::AUTHORIZATION, format!("Bearer {k}"));
    }
    let req = match body {
        Some((content_type, bytes)) => req
            .header(header::CONTENT_TYPE, content_type)
            .body(Body::from(bytes))
            .unwrap(),
        None => req.body(Body::empty()).unwrap(),
    };
    let res = app.clone().oneshot(req).await.unwrap();
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

async fn post_json(app: &Router, path: &str, body: &Value) -> Answer {
    call(
        app,
        "POST",
        path,
        Some(KEY),
        Some(("application/json", serde_json::to_vec(body).unwrap())),
    )
    .await
}

async fn get(app: &Router, path: &str) -> Answer {
    call(app, "GET", path, Some(KEY), None).await
}

/// Asserts a `/v1` JSON error with this status, code and (if given) field.
#[track_caller]
fn assert_error(a: &Answer, status: StatusCode, code: &str, field: Option<&str>) {
    assert_eq!(a.status, status, "{}", a.body);
    assert_eq!(a.body["error"]["code"], code, "{}", a.body);
    assert!(a.body["error"]["message"].is_string(), "{}", a.body);
    if let Some(f) = field {
        assert_eq!(a.body["error"]["field"], f, "{}", a.body);
    }
}

/// Asserts a `/v2` error: `{"error": "..."}` and nothing else.
#[track_caller]
fn assert_v2_error(a: &Answer, status: StatusCode, mentions: &str) {
    assert_eq!(a.status, status, "{}", a.body);
    let obj = a.body.as_object().expect("a JSON object");
    assert_eq!(obj.len(), 1, "{}", a.body);
    let msg = obj["error"].as_str().expect("error is a string");
    assert!(
        msg.contains(mentions),
        "`{msg}` should mention `{mentions}`"
    );
}

// ---------------------------------------------------------------- scoring (/v1)

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
async fn more_instances_than_max_batch_is_413() {
    let env = Env::new();
    let (app, _) = router(&env.config());
    let instances: Vec<Value> = (0..51)
        .map(|i| json!({"customer_id": format!("c{i}"), "features": {}}))
        .collect();
    let a = post_json(&app, "/v1/score/batch", &json!({ "instances": instances })).await;
    assert_error(
        &a,
        StatusCode::PAYLOAD_TOO_LARGE,
        "too_many_instances",
        Some("instances"),
    );
}

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

// ---------------------------------------------------------------- nightly scores, models

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
        }],
        early_warnings: evaluate(&default_rules(), &spec, &row),
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
}

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
    cfg.models = dir.path().join("empty-models");
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
        "churnguard_model_info{name=\"churn\",version=\"v1\"} 1",
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

// ---------------------------------------------------------------- auth

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

// ---------------------------------------------------------------- Open Inference Protocol

/// A v2 request: one FP64 column per feature, `n` rows, feature j of row i = base + i.
fn infer_request(n: usize, base: f64) -> Value {
    let inputs: Vec<Value> = fixture()
        .features
        .iter()
        .map(|(name, _)| {
            json!({"name": name, "datatype": "FP64", "shape": [n],
                   "data": (0..n).map(|i| base + i as f64).collect::<Vec<_>>()})
        })
        .collect();
    json!({"id": "req-1", "parameters": {"content_type": "pd"}, "inputs": inputs})
}

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

// ---------------------------------------------------------------- alerts

#[tokio::test]
async fn every_scoring_route_records_tiers_and_raises_alerts_through_the_outbox() {
    let env = Env::new();
    let (app, state) = router(&env.config_alerting_on_every_first_score());
    let body =
        |id: &str| json!({"customer_id": id, "as_of": "2024-06-01", "features": features(1.0)});
    let a = post_json(&app, "/v1/score", &body("alice")).await;
    assert_eq!(a.body["alert"], true, "{}", a.body);
    let a = post_json(&app, "/v1/score", &body("alice")).await;
    assert_eq!(a.body["alert"], false, "no transition: {}", a.body);
    let a = post_json(
        &app,
        "/v1/score/batch",
        &json!({"instances": [body("alice"), body("bob")]}),
    )
    .await;
    let alerts: Vec<&Value> = a.body["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| &r["alert"])
        .collect();
    assert_eq!(alerts, [&json!(false), &json!(true)]);
    let mut req = infer_request(2, 1.0);
    req["inputs"].as_array_mut().unwrap().push(
        json!({"name": "customer_id", "datatype": "BYTES", "shape": [2], "data": ["bob", "carol"]}),
    );
    let a = post_json(&app, "/v2/models/churn/infer", &req).await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.body);
    assert!(
        state.outbox.state("carol").unwrap().is_some(),
        "v2 infer records tiers"
    );
    let pending = state.outbox.pending(10).unwrap();
    let mut who: Vec<&str> = pending.iter().map(|a| a.customer_id.as_str()).collect();
    who.sort_unstable();
    assert_eq!(who, ["alice", "bob", "carol"]);
    let alice = pending.iter().find(|a| a.customer_id == "alice").unwrap();
    assert_eq!(alice.source, "service");
    assert_eq!(alice.model.version, "v1");
    assert!(alice.summary.is_object());
    assert_eq!(state.outbox.counters().snapshot().raised, 3);
}

/// A real server for the tests that need sockets, background tasks or shutdown.
struct Server {
    base: String,
    client: reqwest::Client,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    handle: tokio::task::JoinHandle<crate::Result<()>>,
}

impl Server {
    async fn start(config: ServeConfig) -> Server {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let handle = tokio::spawn(run(config, listener, async {
            let _ = rx.await;
        }));
        let server = Server {
            base: format!("http://{addr}"),
            client: reqwest::Client::new(),
            stop: Some(tx),
            handle,
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Ok(r) = server.client.get(server.url("/healthz")).send().await {
                if r.status().is_success() {
                    break;
                }
            }
            assert!(Instant::now() < deadline, "the server did not start");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        server
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    async fn score(&self, customer: &str) -> reqwest::Response {
        self.client
            .post(self.url("/v1/score"))
            .bearer_auth(KEY)
            .json(&json!({"customer_id": customer, "features": features(1.0)}))
            .send()
            .await
            .unwrap()
    }

    async fn served_version(&self) -> String {
        let v: Value = self
            .client
            .get(self.url("/readyz"))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        v["model"]["version"]
            .as_str()
            .unwrap_or_default()
            .to_string()
    }

    async fn metric(&self, name: &str) -> f64 {
        let text = self
            .client
            .get(self.url("/metrics"))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        text.lines()
            .find_map(|l| l.strip_prefix(&format!("{name} ")))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(f64::NAN)
    }

    async fn stop(mut self) -> crate::Result<()> {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        tokio::time::timeout(Duration::from_secs(40), self.handle)
            .await
            .expect("the server stops")
            .expect("the server task does not panic")
    }
}

/// Waits until `f` holds, up to `secs`.
async fn eventually<F, Fut>(secs: u64, mut f: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + Duration::from_secs(secs);
    while Instant::now() < deadline {
        if f().await {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    false
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn alerts_reach_the_jsonl_log_and_a_signed_webhook() {
    use std::sync::{Arc, Mutex};
    type Seen = Arc<Mutex<Vec<(HeaderMap, Vec<u8>)>>>;
    let seen: Seen = Arc::default();
    let receiver = {
        let seen = Arc::clone(&seen);
        Router::new().route(
            "/hook",
            axum::routing::post(move |headers: HeaderMap, body: axum::body::Bytes| {
                let seen = Arc::clone(&seen);
                async move {
                    seen.lock().unwrap().push((headers, body.to_vec()));
                    StatusCode::OK
                }
            }),
        )
    };
    let hook = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let hook_addr = hook.local_addr().unwrap();
    let hook_task = tokio::spawn(async move { axum::serve(hook, receiver).await });

    let env = Env::new();
    let mut cfg = env.config();
    cfg.policy = crate::alerts::AlertPolicy {
        alert_tier: Tier::Low,
        cooldown_days: 14,
    };
    cfg.webhook = Some((format!("http://{hook_addr}/hook"), "hook-secret".into()));
    let server = Server::start(cfg).await;
    let res = server.score("dave").await;
    assert_eq!(res.status(), 200);
    let v: Value = res.json().await.unwrap();
    assert_eq!(v["alert"], true);

    let log = env.path("alerts.jsonl");
    assert!(
        eventually(10, || async {
            std::fs::read_to_string(&log).is_ok_and(|t| t.contains("\"dave\""))
        })
        .await,
        "the alert reaches the JSONL log"
    );
    assert!(
        eventually(10, || async { !seen.lock().unwrap().is_empty() }).await,
        "the alert reaches the webhook"
    );
    let (headers, body) = seen.lock().unwrap()[0].clone();
    let h = |n: &str| headers[n].to_str().unwrap().to_string();
    assert!(crate::alerts::verify_signature(
        b"hook-secret",
        &h("x-churnguard-timestamp"),
        &body,
        &h("x-churnguard-signature")
    ));
    let alert: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(alert["customer_id"], "dave");
    assert!(
        eventually(10, || async {
            server.metric("churnguard_alerts_delivered_total").await >= 2.0
        })
        .await
    );
    assert_eq!(server.metric("churnguard_alerts_raised_total").await, 1.0);
    server.stop().await.unwrap();
    hook_task.abort();
}

// ---------------------------------------------------------------- model lifecycle

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_promotion_during_a_stream_of_requests_fails_none_of_them() {
    let env = Env::new();
    let server = Server::start(env.config()).await;
    assert_eq!(server.served_version().await, "v1");
    let server = std::sync::Arc::new(server);
    let mut workers = Vec::new();
    for w in 0..4 {
        let s = std::sync::Arc::clone(&server);
        workers.push(tokio::spawn(async move {
            let mut versions = std::collections::BTreeSet::new();
            let mut failures = Vec::new();
            let started = Instant::now();
            for i in 0..2_000 {
                let res = s.score(&format!("w{w}-{i}")).await;
                let status = res.status();
                let body: Value = res.json().await.unwrap_or(Value::Null);
                if status != 200 {
                    failures.push(format!("{status}: {body}"));
                } else {
                    versions.insert(body["model"]["version"].as_str().unwrap().to_string());
                }
                if versions.contains("v2") && i >= 50 || started.elapsed() > Duration::from_secs(20)
                {
                    break;
                }
            }
            (versions, failures)
        }));
    }
    tokio::time::sleep(Duration::from_millis(150)).await;
    let registry = env.registry();
    tokio::task::spawn_blocking(move || registry.promote("churn", 2, "production").unwrap())
        .await
        .unwrap();
    let mut seen = std::collections::BTreeSet::new();
    for w in workers {
        let (versions, failures) = w.await.unwrap();
        assert!(
            failures.is_empty(),
            "failed requests during the reload: {failures:?}"
        );
        seen.extend(versions);
    }
    assert!(seen.contains("v1") && seen.contains("v2"), "{seen:?}");
    assert_eq!(server.served_version().await, "v2");
    assert_eq!(
        server
            .metric("churnguard_model_reload_failures_total")
            .await,
        0.0
    );
    let server = std::sync::Arc::try_unwrap(server)
        .ok()
        .expect("workers are done");
    server.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_corrupt_new_version_is_refused_and_the_old_one_keeps_serving() {
    let env = Env::new();
    let server = Server::start(env.config()).await;
    let model = env.models().join("churn/v2/model.bin");
    let mut bytes = std::fs::read(&model).unwrap();
    bytes.truncate(bytes.len() / 2); // half-written
    std::fs::write(&model, bytes).unwrap();
    env.force_production("v2");
    assert!(
        eventually(10, || async {
            server
                .metric("churnguard_model_reload_failures_total")
                .await
                >= 1.0
        })
        .await,
        "the failed reload is counted"
    );
    // Several more polls: the same broken version is neither retried nor counted again.
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert_eq!(
        server
            .metric("churnguard_model_reload_failures_total")
            .await,
        1.0
    );
    assert_eq!(server.served_version().await, "v1");
    let res = server.score("erin").await;
    assert_eq!(res.status(), 200);
    let v: Value = res.json().await.unwrap();
    assert_eq!(v["model"]["version"], "v1");

    let res = server
        .client
        .post(server.url("/v1/admin/reload"))
        .bearer_auth(ADMIN)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 409);
    let v: Value = res.json().await.unwrap();
    assert_eq!(v["error"]["code"], "reload_failed");
    let msg = v["error"]["message"].as_str().unwrap();
    assert!(
        msg.contains("v2") && msg.contains("v1 keeps serving"),
        "{msg}"
    );
    assert!(
        !msg.contains(env.dir.path().to_str().unwrap()),
        "no paths leak: {msg}"
    );
    assert_eq!(
        server
            .metric("churnguard_model_reload_failures_total")
            .await,
        2.0
    );

    // A half-written aliases file is a failure too; the model keeps serving.
    std::fs::write(
        env.models().join("churn/aliases.json"),
        b"{\"production\": \"v",
    )
    .unwrap();
    assert!(
        eventually(10, || async {
            server
                .metric("churnguard_model_reload_failures_total")
                .await
                >= 3.0
        })
        .await
    );
    assert_eq!(server.score("erin").await.status(), 200);
    server.stop().await.unwrap();
}

#[tokio::test]
async fn a_version_whose_schema_does_not_match_its_manifest_is_refused() {
    let env = Env::new();
    let (app, state) = router(&env.config());
    let manifest = env.models().join("churn/v2/manifest.json");
    let mut m: Value = serde_json::from_slice(&std::fs::read(&manifest).unwrap()).unwrap();
    m["features"]["schema_hash"] = json!("0000");
    std::fs::write(&manifest, serde_json::to_vec(&m).unwrap()).unwrap();
    env.force_production("v2");
    let outcome = state.reload_model(false);
    assert_eq!(
        outcome,
        state::ReloadOutcome::Failed {
            version: Some("v2".into()),
            serving: Some("v1".into())
        }
    );
    let a = post_json(
        &app,
        "/v1/score",
        &json!({"customer_id": "c", "features": features(1.0)}),
    )
    .await;
    assert_eq!(a.status, StatusCode::OK);
    assert_eq!(a.body["model"]["version"], "v1");
    // Rolling production back clears the failure.
    env.force_production("v1");
    assert_eq!(
        state.reload_model(false),
        state::ReloadOutcome::Unchanged {
            version: "v1".into()
        }
    );
}

#[tokio::test]
async fn the_admin_reload_picks_up_a_promotion_at_once() {
    let env = Env::new();
    let mut cfg = env.config();
    cfg.reload_interval = Duration::from_secs(3600);
    let (app, _) = router(&cfg);
    env.registry().promote("churn", 2, "production").unwrap();
    let a = call(&app, "POST", "/v1/admin/reload", Some(ADMIN), None).await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.body);
    assert_eq!(
        a.body,
        json!({"model": {"name": "churn", "version": "v2"}, "changed": true, "previous": "v1"})
    );
    let a = get(&app, "/v1/models").await;
    assert_eq!(a.body["models"][0]["version"], "v2");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_score_file_is_reloaded_when_it_changes_and_kept_when_it_breaks() {
    let env = Env::new();
    let scores = env.path("scores.csv");
    write_scores(&scores, &[("c-1", 0.9, "high")]);
    let server = Server::start(env.config()).await;
    let lookup = |id: &str| {
        let req = server
            .client
            .get(server.url(&format!("/v1/customers/{id}/score")))
            .bearer_auth(KEY);
        async move {
            let res = req.send().await.unwrap();
            (res.status().as_u16(), res.json::<Value>().await.unwrap())
        }
    };
    assert_eq!(lookup("c-1").await.1["churn_probability"], 0.9);
    assert_eq!(lookup("c-2").await.0, 404);
    tokio::time::sleep(Duration::from_millis(20)).await;
    write_scores(&scores, &[("c-1", 0.2, "low"), ("c-2", 0.6, "medium")]);
    assert!(eventually(10, || async { lookup("c-2").await.0 == 200 }).await);
    assert_eq!(lookup("c-1").await.1["churn_probability"], 0.2);
    tokio::time::sleep(Duration::from_millis(20)).await;
    std::fs::write(&scores, b"customer_id\n\"unterminated").unwrap();
    assert!(
        eventually(10, || async {
            server
                .metric("churnguard_scores_reload_failures_total")
                .await
                >= 1.0
        })
        .await
    );
    assert_eq!(
        lookup("c-2").await.0,
        200,
        "the previous scores keep serving"
    );
    server.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_finishes_requests_in_flight_then_stops() {
    let env = Env::new();
    let server = Server::start(env.config()).await;
    let batch = json!({"instances": (0..50).map(|i| json!({"customer_id": format!("s{i}"), "as_of": "2024-06-01", "activity": activity()})).collect::<Vec<_>>()});
    let client = server.client.clone();
    let url = server.url("/v1/score/batch");
    let inflight: Vec<_> = (0..8)
        .map(|_| {
            let (client, url, batch) = (client.clone(), url.clone(), batch.clone());
            tokio::spawn(async move {
                client
                    .post(url)
                    .bearer_auth(KEY)
                    .json(&batch)
                    .send()
                    .await
                    .map(|r| r.status().as_u16())
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(5)).await;
    server.stop().await.unwrap();
    for r in inflight {
        match r.await.unwrap() {
            Ok(status) => assert_eq!(status, 200, "an accepted request completes"),
            Err(e) => assert!(
                e.is_connect() || e.is_request(),
                "only refused connections: {e}"
            ),
        }
    }
}

// ---------------------------------------------------------------- hostile input

mod hostile {
    use super::*;
    use proptest::prelude::*;

    fn json_value() -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::from),
            any::<i64>().prop_map(Value::from),
            (-1e300f64..1e300).prop_map(Value::from),
            "[a-z0-9 :TZ-]{0,24}".prop_map(Value::from),
            Just(json!("2024-06-01")),
        ];
        leaf.prop_recursive(3, 24, 6, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..6).prop_map(Value::from),
                prop::collection::btree_map(
                    prop_oneof![
                        Just("customer".to_string()),
                        Just("signup_at".to_string()),
                        Just("logins".to_string()),
                        Just("tickets".to_string()),
                        Just("orders".to_string()),
                        Just("events".to_string()),
                        Just("at".to_string()),
                        Just("amount".to_string()),
                        Just("opened_at".to_string()),
                        Just("closed_at".to_string()),
                        Just("csat".to_string()),
                        Just("event_type".to_string()),
                        "[a-z_]{1,12}",
                    ],
                    inner,
                    0..6
                )
                .prop_map(|m| Value::Object(m.into_iter().collect())),
            ]
        })
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 96, .. ProptestConfig::default() })]

        #[test]
        fn no_request_body_yields_a_5xx(
            form in 0..4u8,
            payload in json_value(),
            as_of in prop_oneof![Just(Value::Null), json_value()],
        ) {
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
            let env = Env::new();
            let (app, _) = router(&env.config());
            let (path, body) = match form {
                0 => ("/v1/score", json!({"customer_id": "p", "as_of": as_of, "features": payload})),
                1 => ("/v1/score", json!({"customer_id": "p", "as_of": as_of, "activity": payload})),
                2 => ("/v1/score/batch", json!({"instances": [payload]})),
                _ => ("/v2/models/churn/infer", json!({"inputs": [{"name": fixture().features[0].0, "datatype": "FP64", "shape": [1], "data": payload}], "parameters": {"as_of": as_of}})),
            };
            let a = rt.block_on(post_json(&app, path, &body));
            prop_assert!(a.status.is_success() || a.status.is_client_error(), "{} for {}", a.status, body);
            prop_assert!(a.body.is_object(), "{}", a.body);
        }
    }
}

// ---------------------------------------------------------------- fast path

mod fast_path {
    use super::*;
    use proptest::prelude::*;

    fn scorer(env: &Env) -> Scorer {
        Scorer::from_loaded(
            env.registry()
                .load("churn", &Selector::Alias("production".into()))
                .unwrap(),
        )
        .unwrap()
    }

    /// One feature's value as JSON text: mostly numbers, sometimes null, a boolean, a
    /// string, an array, an escape-laden or huge number.
    fn value_text() -> impl Strategy<Value = String> {
        prop_oneof![
            400 => (-1e6f64..1e6).prop_map(|x| format!("{x}")),
            200 => (0u32..500).prop_map(|x| x.to_string()),
            3 => Just("null".to_string()),
            1 => Just("true".to_string()),
            1 => Just("\"3\"".to_string()),
            1 => Just("[1]".to_string()),
            1 => Just("1e999".to_string()),
            1 => Just("-0".to_string()),
            1 => Just("18446744073709551616".to_string()),
        ]
    }

    fn body() -> impl Strategy<Value = (String, bool)> {
        let names: Vec<String> = fixture().features.iter().map(|(n, _)| n.clone()).collect();
        let n = names.len();
        (
            prop::collection::vec(value_text(), n),
            prop::collection::vec(0u8..200, n),
            prop_oneof![
                6 => Just("\"c1\"".to_string()),
                1 => Just("\"  \"".to_string()),
                1 => Just("7".to_string()),
                1 => Just("null".to_string()),
                1 => Just(format!("\"{}\"", "x".repeat(300))),
                1 => Just("\"c\\u0031\"".to_string()),
            ],
            prop_oneof![
                4 => Just(None),
                1 => Just(Some("null".to_string())),
                1 => Just(Some("\"2024-06-01\"".to_string())),
                1 => Just(Some("\"2024-13-01\"".to_string())),
                1 => Just(Some("3".to_string())),
            ],
            prop::collection::vec(("[a-z_]{1,8}", value_text()), 0..3),
            0u8..8,
        )
            .prop_map(move |(values, fates, id, as_of, extra, shape)| {
                let mut fields = Vec::new();
                let mut no_duplicates = true;
                for ((name, v), fate) in names.iter().zip(&values).zip(&fates) {
                    match fate {
                        0 => {} // left out
                        1 => {
                            fields.push(format!("\"{name}\":{v}"));
                            fields.push(format!("\"{name}\":{v}"));
                            no_duplicates = false;
                        }
                        2 => fields.push(format!("\"{name}\":null")),
                        _ => fields.push(format!("\"{name}\":{v}")),
                    }
                }
                for (k, v) in &extra {
                    fields.push(format!("\"{k}\":{v}"));
                }
                let features = format!("{{{}}}", fields.join(","));
                let mut top = vec![
                    format!("\"customer_id\":{id}"),
                    format!("\"features\":{features}"),
                ];
                if let Some(a) = &as_of {
                    top.push(format!("\"as_of\":{a}"));
                }
                match shape {
                    0 => top.push("\"activity\":null".to_string()),
                    1 => top.push("\"activity\":{}".to_string()),
                    2 => top.push("\"note\":[1,{\"a\":2}]".to_string()),
                    3 => top.push("\"customer_id\":\"c2\"".to_string()),
                    _ => {}
                }
                (
                    format!("{{{}}}", top.join(",")),
                    no_duplicates && shape != 3,
                )
            })
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 512, .. ProptestConfig::default() })]

        /// Whenever the fast path answers, it answers exactly what the careful path does;
        /// and it answers every valid request without duplicate keys.
        #[test]
        fn the_fast_path_agrees_with_the_careful_path((text, no_duplicates) in body()) {
            static SCORER: OnceLock<Scorer> = OnceLock::new();
            let scorer = SCORER.get_or_init(|| scorer(&Env::new()));
            let now = 1_735_603_200;
            let fast = crate::serve::fast::prepare(scorer, text.as_bytes(), now);
            let careful = serde_json::from_slice::<Value>(text.as_bytes())
                .ok()
                .and_then(|v| crate::serve::routes::prepare(scorer, &v, "", now).ok());
            if let Some(f) = fast {
                prop_assert!(careful.is_some(), "the careful path refuses what the fast path accepts: {}", text);
                let c = careful.unwrap();
                prop_assert_eq!(&f.customer_id, &c.customer_id);
                prop_assert_eq!(f.as_of, c.as_of);
                prop_assert_eq!(&f.ignored, &c.ignored);
                prop_assert_eq!(f.row.len(), c.row.len());
                for (a, b) in f.row.iter().zip(&c.row) {
                    prop_assert!(a.to_bits() == b.to_bits(), "{} vs {}", a, b);
                }
                prop_assert_eq!(c.form.as_str(), "features");
            } else {
                prop_assert!(careful.is_none() || !no_duplicates, "fast path refused {}", text);
            }
        }
    }

    #[test]
    fn a_plain_request_takes_the_fast_path() {
        let scorer = scorer(&Env::new());
        let fields: Vec<String> = fixture()
            .features
            .iter()
            .map(|(name, _)| format!("\"{name}\":1"))
            .collect();
        let text = format!(
            "{{\"customer_id\":\"c1\",\"as_of\":\"2024-06-01\",\"features\":{{{},\"zz\":2}},\"note\":1}}",
            fields.join(",")
        );
        let fast = crate::serve::fast::prepare(&scorer, text.as_bytes(), 0).expect("fast");
        assert_eq!(fast.customer_id, "c1");
        assert_eq!(fast.as_of, crate::time::parse_ts("2024-06-01").unwrap());
        assert_eq!(fast.row, vec![1.0; fixture().features.len()]);
        assert_eq!(
            fast.ignored,
            vec!["note".to_string(), "features.zz".to_string()]
        );
    }
}

#[tokio::test]
async fn a_rule_marked_alert_raises_an_alert_for_a_customer_the_model_rates_low() {
    let env = Env::new();
    let mut config = env.config();
    config.rules = Some(
        crate::scoring::rules_from_json(
            r#"[{"name": "any_customer", "kind": "feature_above", "feature": "tenure_days", "threshold": -1, "alert": true}]"#,
        )
        .unwrap(),
    );
    let (app, state) = router(&config);
    let body = json!({"customer_id": "ruled", "features": features(0.0)});
    let a = post_json(&app, "/v1/score", &body).await;
    assert_eq!(a.status, 200, "{}", a.body);
    assert_ne!(
        a.body["risk_tier"], "high",
        "the model alone would not alert: {}",
        a.body
    );
    assert_eq!(a.body["alert"], true, "{}", a.body);
    assert_eq!(a.body["early_warnings"][0]["rule"], "any_customer");
    assert_eq!(a.body["early_warnings"][0]["alert"], true);
    let stored = state.outbox.pending(10).unwrap();
    assert_eq!(stored.len(), 1);
    assert_eq!(stored[0].tier, Tier::High);
    assert_eq!(
        stored[0].summary["early_warnings"][0]["rule"],
        "any_customer"
    );
    // Scored again: no transition, no second alert.
    let again = post_json(&app, "/v1/score", &body).await;
    assert_eq!(again.body["alert"], false);
    assert_eq!(state.outbox.pending(10).unwrap().len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_new_customers_each_alert_exactly_once_through_the_group_commit() {
    let env = Env::new();
    // Each customer must raise exactly one alert however the concurrent requests are
    // grouped into transactions.
    let (app, state) = router(&env.config_alerting_on_every_first_score());
    let customers = 60;
    let mut tasks = Vec::new();
    for round in 0..2 {
        for c in 0..customers {
            let app = app.clone();
            tasks.push(tokio::spawn(async move {
                let body = json!({"customer_id": format!("g{c}"), "as_of": "2024-06-01",
                                  "features": features(f64::from(c % 7))});
                (round, c, post_json(&app, "/v1/score", &body).await)
            }));
        }
    }
    let mut alerts_per_customer = vec![0; customers as usize];
    for t in tasks {
        let (_, c, a) = t.await.unwrap();
        assert_eq!(a.status, 200, "{}", a.body);
        if a.body["alert"] == true {
            alerts_per_customer[c as usize] += 1;
        }
    }
    assert!(
        alerts_per_customer.iter().all(|&n| n == 1),
        "{alerts_per_customer:?}"
    );
    let stored = state.outbox.pending(1000).unwrap();
    assert_eq!(stored.len(), customers as usize);
    for c in 0..customers {
        assert!(state.outbox.state(&format!("g{c}")).unwrap().is_some());
    }
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
            _ => assert_error(
                &a,
                StatusCode::UNPROCESSABLE_ENTITY,
                "invalid_input",
                Some("features"),
            ),
        }
    }
}

#[test]
fn the_shared_state_is_send_and_sync() {
    fn check<T: Send + Sync>() {}
    check::<AppState>();
    check::<Scorer>();
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn over_the_wire_a_large_body_is_refused_and_request_ids_are_echoed() {
    let env = Env::new();
    let server = Server::start(env.config()).await;
    let res = server
        .client
        .post(server.url("/v1/score"))
        .bearer_auth(KEY)
        .header("x-request-id", "trace-me-42")
        .json(&json!({"customer_id": "c", "features": features(1.0)}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(res.headers()["x-request-id"], "trace-me-42");
    let res = server
        .client
        .post(server.url("/v1/score"))
        .bearer_auth(KEY)
        .header(header::CONTENT_TYPE, "application/json")
        .body(vec![b' '; 100 * 1024])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 413);
    assert!(res.headers().contains_key("x-request-id"));
    let v: Value = res.json().await.unwrap();
    assert_eq!(v["error"]["code"], "payload_too_large");
    server.stop().await.unwrap();
}

#[test]
fn request_ids_are_distinct_version_4_uuids() {
    use tower_http::request_id::MakeRequestId;
    let req = axum::http::Request::new(());
    let mut seen = std::collections::HashSet::new();
    for _ in 0..10_000 {
        let id = super::FastUuid.make_request_id(&req).unwrap();
        let text = id.header_value().to_str().unwrap().to_string();
        let parsed = uuid::Uuid::parse_str(&text).unwrap();
        assert_eq!(parsed.get_version_num(), 4, "{text}");
        assert!(seen.insert(text), "a repeated request id");
    }
}
