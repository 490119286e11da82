//! Tests of the service: `oneshot` through the router for the contract, a real server on
//! an ephemeral loopback port (reqwest) for auth, alerts, reloads and shutdown.
//!
//! One trained registry (two logistic versions: v1 `production`, v2 `staging`) is built
//! per test process and copied into each test's own directory, so tests that promote or
//! corrupt versions do not see each other.
//!
//! The fixtures and helpers live here; the tests, grouped by route family, in the
//! submodules.

mod alerts;
mod auth;
mod batch;
mod connections;
mod customers;
mod errors;
mod fast_path;
mod hostile;
mod lifecycle;
mod metrics;
mod models;
mod openapi;
mod score;
mod server;
mod v2;

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
use crate::model::Algorithm;
use crate::registry::{Registry, Selector};
use crate::scoring::Scorer;
use crate::scoring::Tier;
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
            header_timeout: Duration::from_secs(10),
            max_connections: 1000,
            rules: None,
            retry: crate::alerts::RetryPolicy::default(),
            alert_lease: crate::alerts::dispatch::DEFAULT_LEASE,
            history: Some(self.path("history")),
            task: crate::alerts::TaskConfig::default(),
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
