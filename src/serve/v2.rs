//! The Open Inference Protocol (KServe v2 REST), so KServe/Seldon-style clients work.
//!
//! Following the protocol's normative text:
//! - health: `GET /v2/health/live` `{"live": true}`, `GET /v2/health/ready` `{"ready": bool}`
//!   (200 when true, 503 when not), `GET /v2/models/{name}[/versions/{v}]/ready`
//!   `{"name", "ready"}`;
//! - `GET /v2` server metadata `{name, version, extensions}`;
//! - `GET /v2/models/{name}[/versions/{v}]` model metadata: one `FP64` input of shape
//!   `[-1]` per feature column, outputs `churn_probability` (FP64), `risk_tier` (BYTES),
//!   `reasons` (BYTES, each a JSON string);
//! - `POST .../infer`: inputs by name, each of shape `[N]` (or `[N, 1]`), data flat or
//!   nested in row-major order; the response has `model_name`, `model_version`, the
//!   request's `id` when given, and the requested `outputs` (all three by default);
//! - every error is `{"error": "..."}`: 400 for a bad request, 404 for a model or version
//!   not served here.
//!
//! Bodies: JSON with `Content-Type: application/json` or with no `Content-Type` at all
//! (tritonclient sends none); the protocol's binary tensor data extension (header
//! `Inference-Header-Content-Length`: that many bytes of JSON, then each input with
//! `parameters.binary_data_size` as raw little-endian bytes, in input order). Outputs are
//! always answered as JSON (a client asking `binary_data_output` reads them all the same).
//! Undefined values as Python's `json` writes them (`NaN`; `Infinity` is refused as not
//! finite), or `NaN` in binary data, count as missing like `null`.
//!
//! Versions: `/versions/{v}` serves any version of the registry (loaded on demand, the
//! last few kept, see [`super::state::PINNED_VERSIONS`]), not only the served one.
//!
//! Server-specific extensions: an optional `customer_id` input (BYTES `[N]`) records each
//! customer's tier in the alert outbox like `/v1/score`; request parameter `as_of` (string)
//! sets the instant recorded (default now; at most
//! [`super::routes::MAX_AS_OF_SKEW_SECS`] ahead of the server's clock, else 400); `parameters.content_type` may be `"pd"`
//! (columns of a data frame: what every request here is) and nothing else; `null` is
//! accepted for features the model marks `may_be_missing`; inputs that are not features
//! are ignored and listed in the response parameter `ignored_inputs`.

use std::borrow::Cow;
use std::collections::HashMap;
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{FromRequest, Path, Request, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use utoipa::ToSchema;

use super::error::{V2Error, V2ErrorBody};
use super::routes::{future_as_of, N_REASONS};
use super::state::{AppState, Recorded};
use crate::alerts::outbox::Observation;
use crate::features::online::kind;
use crate::features::Transform;
use crate::registry::Selector;
use crate::scoring::Scorer;

/// The binary tensor data extension's header: the length of the JSON part of the body.
pub const INFERENCE_HEADER_CONTENT_LENGTH: &str = "inference-header-content-length";
/// The optional input carrying customer ids (for alert recording).
pub const CUSTOMER_ID_INPUT: &str = "customer_id";
/// The outputs, in their default order.
pub const OUTPUTS: [(&str, &str); 3] = [
    ("churn_probability", "FP64"),
    ("risk_tier", "BYTES"),
    ("reasons", "BYTES"),
];

/// `GET /v2`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ServerMetadata {
    /// `churnguard`.
    pub name: String,
    /// The server's version.
    pub version: String,
    /// Extensions supported: `binary_tensor_data` (for inputs).
    pub extensions: Vec<String>,
}

/// Liveness (`/v2/health/live`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Live {
    /// Always true when answered.
    pub live: bool,
}

/// Readiness (`/v2/health/ready`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Ready {
    /// Whether a model is loaded.
    pub ready: bool,
}

/// Model readiness.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ModelReady {
    /// The model.
    pub name: String,
    /// Whether it can infer now.
    pub ready: bool,
}

/// A tensor's metadata.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct MetadataTensor {
    /// Tensor name (a feature column, or an output).
    pub name: String,
    /// `FP64` or `BYTES`.
    pub datatype: String,
    /// `[-1]`: one element per row.
    pub shape: Vec<i64>,
}

/// `GET /v2/models/{name}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ModelMetadata {
    /// The model's name.
    pub name: String,
    /// The versions that may be requested explicitly: every version of the registry.
    pub versions: Vec<String>,
    /// `churnguard_<algorithm>`.
    pub platform: String,
    /// One `FP64` input per feature column, in the model's order.
    pub inputs: Vec<MetadataTensor>,
    /// `churn_probability`, `risk_tier`, `reasons`.
    pub outputs: Vec<MetadataTensor>,
}

/// An input tensor of an inference request.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct RequestInput {
    /// A feature column name, or `customer_id`.
    pub name: String,
    /// `[N]` (or `[N, 1]`).
    pub shape: Vec<u64>,
    /// `FP64` (other numeric types are coerced; `BOOL` for 0/1 features; `BYTES` for
    /// `customer_id`).
    pub datatype: String,
    /// Parameters of this input.
    #[serde(default)]
    #[schema(schema_with = super::schema::input_parameters)]
    pub parameters: Option<Value>,
    /// Row-major data, flat or nested.
    #[schema(schema_with = super::schema::input_data)]
    pub data: Value,
}

/// An output requested.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct RequestOutput {
    /// `churn_probability`, `risk_tier` or `reasons`.
    pub name: String,
    /// Parameters of this output.
    #[serde(default)]
    #[schema(schema_with = super::schema::output_parameters)]
    pub parameters: Option<Value>,
}

/// `POST /v2/models/{name}/infer`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct InferenceRequest {
    /// Echoed in the response.
    #[serde(default)]
    pub id: Option<String>,
    /// `content_type` (`"pd"` only) and `as_of` (string).
    #[serde(default)]
    #[schema(schema_with = super::schema::request_parameters)]
    pub parameters: Option<Value>,
    /// One per feature column, plus optionally `customer_id`.
    pub inputs: Vec<RequestInput>,
    /// The outputs wanted (default: all).
    #[serde(default)]
    pub outputs: Option<Vec<RequestOutput>>,
}

/// An output tensor.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ResponseOutput {
    /// Output name.
    pub name: String,
    /// `[N]`.
    pub shape: Vec<u64>,
    /// `FP64` or `BYTES`.
    pub datatype: String,
    /// N elements.
    #[schema(schema_with = super::schema::output_data)]
    pub data: Value,
}

/// The inference response.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct InferenceResponse {
    /// The model used.
    pub model_name: String,
    /// Its version (`v3`).
    pub model_version: String,
    /// The request's `id`, when it had one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// `ignored_inputs` (comma-separated) when some inputs were not used.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(schema_with = super::schema::response_parameters)]
    pub parameters: Option<Value>,
    /// The outputs.
    pub outputs: Vec<ResponseOutput>,
}

fn server_version() -> String {
    env!("CARGO_PKG_VERSION").to_string()
}

/// Server metadata.
#[utoipa::path(get, path = "/v2", tag = "v2",
    responses((status = 200, description = "Server metadata", body = ServerMetadata)))]
pub async fn server_metadata() -> Json<ServerMetadata> {
    Json(ServerMetadata {
        name: "churnguard".into(),
        version: server_version(),
        extensions: vec!["binary_tensor_data".into()],
    })
}

/// Server liveness.
#[utoipa::path(get, path = "/v2/health/live", tag = "v2",
    responses((status = 200, description = "Live", body = Live)))]
pub async fn live() -> Json<Live> {
    Json(Live { live: true })
}

/// Server readiness: every model is ready (one is served).
#[utoipa::path(get, path = "/v2/health/ready", tag = "v2",
    responses((status = 200, description = "Ready", body = Ready),
              (status = 503, description = "Not ready", body = Ready)))]
pub async fn ready(State(state): State<AppState>) -> (StatusCode, Json<Ready>) {
    let ready = state.scorer().is_some();
    let status = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, Json(Ready { ready }))
}

/// The scorer a path names: the served one, or with a version any version of the
/// registry (loaded on demand into the state's small cache). 404 for another model or a
/// version that does not exist.
async fn served(
    state: &AppState,
    name: &str,
    version: Option<&str>,
) -> Result<Arc<Scorer>, V2Error> {
    if name != state.name {
        return Err(V2Error::not_found(format!(
            "model `{name}` is not served here (this server serves `{}`)",
            state.name
        )));
    }
    let Some(v) = version else {
        return state.scorer().ok_or_else(|| V2Error {
            status: StatusCode::SERVICE_UNAVAILABLE,
            message: format!("model `{name}` is not loaded yet"),
        });
    };
    let Ok(Selector::Version(n)) = v.parse::<Selector>() else {
        return Err(V2Error::not_found(format!(
            "version `{v}` of model `{name}` does not exist: versions are named v1, v2, ... (or 1, 2, ...)"
        )));
    };
    if let Some(s) = state.scorer().filter(|s| s.version == format!("v{n}")) {
        return Ok(s);
    }
    let st = state.clone();
    let loaded = tokio::task::spawn_blocking(move || st.scorer_of_version(n))
        .await
        .map_err(|e| {
            tracing::error!(error = %e, "loading a pinned version panicked");
            V2Error::from(super::error::ApiError::internal())
        })?;
    match loaded {
        Ok(s) => Ok(s),
        Err(crate::Error::VersionNotFound { .. }) => Err(V2Error::not_found(format!(
            "version `{v}` of model `{name}` does not exist"
        ))),
        Err(e) => {
            tracing::error!(model = %name, version = n, error = %e, "could not load a version asked for by a /v2 client");
            Err(V2Error {
                status: StatusCode::SERVICE_UNAVAILABLE,
                message: format!(
                    "version `{v}` of model `{name}` exists but cannot be loaded: the server log has the details"
                ),
            })
        }
    }
}

fn metadata(state: &AppState, scorer: &Scorer) -> ModelMetadata {
    let algorithm = match scorer.manifest.algorithm.as_str() {
        "" => "model",
        a => a,
    };
    ModelMetadata {
        name: scorer.name.clone(),
        versions: state
            .registry
            .versions(&scorer.name)
            .map(|vs| vs.iter().map(|v| format!("v{}", v.version)).collect())
            .unwrap_or_else(|_| vec![scorer.version.clone()]),
        platform: format!("churnguard_{algorithm}"),
        inputs: scorer
            .feature_names()
            .into_iter()
            .map(|n| MetadataTensor {
                name: n.to_string(),
                datatype: "FP64".into(),
                shape: vec![-1],
            })
            .collect(),
        outputs: OUTPUTS
            .iter()
            .map(|(n, t)| MetadataTensor {
                name: n.to_string(),
                datatype: t.to_string(),
                shape: vec![-1],
            })
            .collect(),
    }
}

/// Model metadata (the served version).
#[utoipa::path(get, path = "/v2/models/{name}", tag = "v2",
    params(("name" = String, Path, description = "Model name")),
    responses((status = 200, description = "Model metadata", body = ModelMetadata),
              (status = 401, description = "Missing or unknown API key", body = V2ErrorBody),
              (status = 404, description = "Not served here", body = V2ErrorBody),
              (status = 503, description = "No model loaded yet", body = V2ErrorBody)),
    security(("bearer" = [])))]
pub async fn model_metadata(
    State(state): State<AppState>,
    Path(name): Path<String>,
) -> Result<Json<ModelMetadata>, V2Error> {
    let s = served(&state, &name, None).await?;
    Ok(Json(metadata(&state, &s)))
}

/// Model metadata of an explicit version.
#[utoipa::path(get, path = "/v2/models/{name}/versions/{version}", tag = "v2",
    params(("name" = String, Path, description = "Model name"),
           ("version" = String, Path, description = "Version (`v3` or `3`)")),
    responses((status = 200, description = "Model metadata", body = ModelMetadata),
              (status = 401, description = "Missing or unknown API key", body = V2ErrorBody),
              (status = 404, description = "Not served here, or no such version", body = V2ErrorBody),
              (status = 503, description = "The version exists but cannot be loaded", body = V2ErrorBody)),
    security(("bearer" = [])))]
pub async fn model_metadata_version(
    State(state): State<AppState>,
    Path((name, version)): Path<(String, String)>,
) -> Result<Json<ModelMetadata>, V2Error> {
    let s = served(&state, &name, Some(&version)).await?;
    Ok(Json(metadata(&state, &s)))
}

async fn model_ready_answer(state: &AppState, name: &str, version: Option<&str>) -> Response {
    match served(state, name, version).await {
        Ok(_) => Json(ModelReady {
            name: name.to_string(),
            ready: true,
        })
        .into_response(),
        Err(e) if e.status == StatusCode::SERVICE_UNAVAILABLE => (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(ModelReady {
                name: name.to_string(),
                ready: false,
            }),
        )
            .into_response(),
        Err(e) => e.into_response(),
    }
}

/// Model readiness.
#[utoipa::path(get, path = "/v2/models/{name}/ready", tag = "v2",
    params(("name" = String, Path, description = "Model name")),
    responses((status = 200, description = "Ready", body = ModelReady),
              (status = 503, description = "Not loaded yet", body = ModelReady),
              (status = 401, description = "Missing or unknown API key", body = V2ErrorBody),
              (status = 404, description = "Not served here", body = V2ErrorBody)),
    security(("bearer" = [])))]
pub async fn model_ready(State(state): State<AppState>, Path(name): Path<String>) -> Response {
    model_ready_answer(&state, &name, None).await
}

/// Readiness of an explicit version.
#[utoipa::path(get, path = "/v2/models/{name}/versions/{version}/ready", tag = "v2",
    params(("name" = String, Path, description = "Model name"),
           ("version" = String, Path, description = "Version")),
    responses((status = 200, description = "Ready", body = ModelReady),
              (status = 503, description = "Not loaded yet", body = ModelReady),
              (status = 401, description = "Missing or unknown API key", body = V2ErrorBody),
              (status = 404, description = "Not served here", body = V2ErrorBody)),
    security(("bearer" = [])))]
pub async fn model_ready_version(
    State(state): State<AppState>,
    Path((name, version)): Path<(String, String)>,
) -> Response {
    model_ready_answer(&state, &name, Some(&version)).await
}

/// Inference on the served version.
#[utoipa::path(post, path = "/v2/models/{name}/infer", tag = "v2",
    params(("name" = String, Path, description = "Model name")),
    request_body = InferenceRequest,
    responses((status = 200, description = "Scores", body = InferenceResponse),
              (status = 400, description = "Bad request", body = V2ErrorBody),
              (status = 401, description = "Missing or unknown API key", body = V2ErrorBody),
              (status = 404, description = "Not served here", body = V2ErrorBody),
              (status = 413, description = "Body too large", body = V2ErrorBody),
              (status = 415, description = "Neither JSON nor the binary tensor data extension", body = V2ErrorBody),
              (status = 503, description = "No model loaded yet", body = V2ErrorBody)),
    security(("bearer" = [])))]
pub async fn infer(
    State(state): State<AppState>,
    Path(name): Path<String>,
    body: Result<V2Body, V2Error>,
) -> Result<Json<InferenceResponse>, V2Error> {
    let scorer = served(&state, &name, None).await?;
    let V2Body(body) = body?;
    run_inference(&state, &scorer, &body).await.map(Json)
}

/// Inference on an explicit version (any version of the registry).
#[utoipa::path(post, path = "/v2/models/{name}/versions/{version}/infer", tag = "v2",
    params(("name" = String, Path, description = "Model name"),
           ("version" = String, Path, description = "Version")),
    request_body = InferenceRequest,
    responses((status = 200, description = "Scores", body = InferenceResponse),
              (status = 400, description = "Bad request", body = V2ErrorBody),
              (status = 401, description = "Missing or unknown API key", body = V2ErrorBody),
              (status = 404, description = "Not served here, or no such version", body = V2ErrorBody),
              (status = 413, description = "Body too large", body = V2ErrorBody),
              (status = 415, description = "Neither JSON nor the binary tensor data extension", body = V2ErrorBody),
              (status = 503, description = "The version exists but cannot be loaded", body = V2ErrorBody)),
    security(("bearer" = [])))]
pub async fn infer_version(
    State(state): State<AppState>,
    Path((name, version)): Path<(String, String)>,
    body: Result<V2Body, V2Error>,
) -> Result<Json<InferenceResponse>, V2Error> {
    let scorer = served(&state, &name, Some(&version)).await?;
    let V2Body(body) = body?;
    run_inference(&state, &scorer, &body).await.map(Json)
}

/// A parsed input tensor.
struct Tensor<'a> {
    name: &'a str,
    datatype: &'a str,
    rows: usize,
    data: Vec<&'a Value>,
}

/// Checks a `$parameters` object: values are strings, numbers or booleans.
fn parameters<'a>(
    v: Option<&'a Value>,
    at: &str,
) -> Result<Option<&'a Map<String, Value>>, V2Error> {
    match v {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Object(m)) => {
            for (k, v) in m {
                if !(v.is_string() || v.is_number() || v.is_boolean()) {
                    return Err(V2Error::bad(format!(
                        "{at}.{k}: a parameter must be a string, number or boolean, got {}",
                        kind(v)
                    )));
                }
            }
            Ok(Some(m))
        }
        Some(other) => Err(V2Error::bad(format!(
            "{at} must be an object, got {}",
            kind(other)
        ))),
    }
}

/// Flattens nested row-major data, refusing anything deeper than the shape allows.
fn flatten<'a>(
    v: &'a Value,
    depth: usize,
    out: &mut Vec<&'a Value>,
    at: &str,
) -> Result<(), V2Error> {
    match v {
        Value::Array(items) if depth > 0 => {
            for item in items {
                flatten(item, depth - 1, out, at)?;
            }
            Ok(())
        }
        Value::Array(_) => Err(V2Error::bad(format!(
            "{at}.data is nested deeper than its shape"
        ))),
        other => {
            out.push(other);
            Ok(())
        }
    }
}

fn parse_input<'a>(v: &'a Value, i: usize) -> Result<Tensor<'a>, V2Error> {
    let at = format!("inputs[{i}]");
    let obj = v
        .as_object()
        .ok_or_else(|| V2Error::bad(format!("{at} must be an object, got {}", kind(v))))?;
    let name = match obj.get("name") {
        Some(Value::String(s)) => s.as_str(),
        _ => return Err(V2Error::bad(format!("{at}.name is required: a string"))),
    };
    let at = format!("input `{name}`");
    let datatype = match obj.get("datatype") {
        Some(Value::String(s)) => s.as_str(),
        _ => {
            return Err(V2Error::bad(format!(
                "{at}: datatype is required: a string"
            )))
        }
    };
    let shape: Vec<u64> = match obj.get("shape") {
        Some(Value::Array(dims)) if !dims.is_empty() => dims
            .iter()
            .map(|d| d.as_u64())
            .collect::<Option<Vec<u64>>>()
            .ok_or_else(|| {
                V2Error::bad(format!(
                    "{at}: every dimension of shape must be a non-negative integer"
                ))
            })?,
        _ => {
            return Err(V2Error::bad(format!(
                "{at}: shape is required: a non-empty array of dimensions"
            )))
        }
    };
    parameters(obj.get("parameters"), &format!("{at}: parameters"))?;
    let data = obj
        .get("data")
        .ok_or_else(|| V2Error::bad(format!("{at}: data is required")))?;
    if !data.is_array() {
        return Err(V2Error::bad(format!(
            "{at}: data must be an array, got {}",
            kind(data)
        )));
    }
    let mut flat = Vec::new();
    flatten(data, shape.len(), &mut flat, &at)?;
    let expected = shape
        .iter()
        .try_fold(1u64, |acc, &d| acc.checked_mul(d))
        .ok_or_else(|| V2Error::bad(format!("{at}: shape is too large")))?;
    if flat.len() as u64 != expected {
        return Err(V2Error::bad(format!(
            "{at}: shape {shape:?} holds {expected} elements but data has {}",
            flat.len()
        )));
    }
    let rows = match shape.as_slice() {
        [n] | [n, 1] => usize::try_from(*n).unwrap_or(usize::MAX),
        _ => {
            return Err(V2Error::bad(format!(
                "{at}: shape must be [N] (one element per row), got {shape:?}"
            )))
        }
    };
    Ok(Tensor {
        name,
        datatype,
        rows,
        data: flat,
    })
}

/// The value of one element of a feature input, coerced to f64 per its datatype.
fn element(
    t: &Tensor<'_>,
    j: usize,
    v: &Value,
    binary: bool,
    may_be_missing: bool,
) -> Result<f64, V2Error> {
    let at = || format!("input `{}`, element {j}", t.name);
    let got = |what: &str| V2Error::bad(format!("{}: expected {what}, got {}", at(), kind(v)));
    if v.is_null() {
        return if may_be_missing {
            Ok(f64::NAN)
        } else {
            Err(V2Error::bad(format!(
                "{}: an undefined value (null or NaN) is only accepted for features the model marks may_be_missing, and `{}` is required",
                at(),
                t.name
            )))
        };
    }
    match t.datatype {
        "FP64" | "FP32" | "FP16" => match v.as_f64() {
            Some(x) if x.is_finite() => Ok(x),
            _ => Err(got("a finite number")),
        },
        "INT8" | "INT16" | "INT32" | "INT64" => match v.as_i64() {
            Some(x) => Ok(x as f64),
            None => Err(got("an integer")),
        },
        "UINT8" | "UINT16" | "UINT32" | "UINT64" => match v.as_u64() {
            Some(x) => Ok(x as f64),
            None => Err(got("a non-negative integer")),
        },
        "BOOL" if binary => match v.as_bool() {
            Some(b) => Ok(f64::from(u8::from(b))),
            None => Err(got("a boolean")),
        },
        other => Err(V2Error::bad(format!(
            "input `{}`: datatype {other} is not accepted for this feature: use FP64",
            t.name
        ))),
    }
}

async fn run_inference(
    state: &AppState,
    scorer: &Arc<Scorer>,
    body: &Value,
) -> Result<InferenceResponse, V2Error> {
    let obj = body.as_object().ok_or_else(|| {
        V2Error::bad(format!(
            "the inference request must be a JSON object, got {}",
            kind(body)
        ))
    })?;
    let id = match obj.get("id") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) => Some(s.clone()),
        Some(other) => {
            return Err(V2Error::bad(format!(
                "id must be a string, got {}",
                kind(other)
            )))
        }
    };
    let params = parameters(obj.get("parameters"), "parameters")?;
    if let Some(ct) = params.and_then(|p| p.get("content_type")) {
        if ct.as_str() != Some("pd") {
            return Err(V2Error::bad(format!(
                "parameters.content_type {ct} is not supported: send one input per feature column (\"pd\")"
            )));
        }
    }
    let now = chrono::Utc::now().timestamp();
    let as_of = match params.and_then(|p| p.get("as_of")) {
        None => now,
        Some(Value::String(s)) => {
            let as_of = crate::time::parse_as_of(s)
                .map_err(|_| V2Error::bad(format!("parameters.as_of `{s}` is not a date")))?;
            if let Some(why) = future_as_of(as_of, now) {
                return Err(V2Error::bad(format!("parameters.{why}")));
            }
            as_of
        }
        Some(other) => {
            return Err(V2Error::bad(format!(
                "parameters.as_of must be a date string, got {}",
                kind(other)
            )))
        }
    };
    let inputs = match obj.get("inputs") {
        Some(Value::Array(a)) if !a.is_empty() => a,
        _ => {
            return Err(V2Error::bad(
                "inputs is required: a non-empty array with one input per feature column",
            ))
        }
    };
    let mut by_name: HashMap<&str, Tensor<'_>> = HashMap::new();
    for (i, v) in inputs.iter().enumerate() {
        let t = parse_input(v, i)?;
        if by_name.contains_key(t.name) {
            return Err(V2Error::bad(format!("input `{}` is given twice", t.name)));
        }
        by_name.insert(t.name, t);
    }
    let requested: Vec<&str> = match obj.get("outputs") {
        None | Some(Value::Null) => OUTPUTS.iter().map(|(n, _)| *n).collect(),
        Some(Value::Array(outs)) => {
            let mut names = Vec::new();
            for (i, o) in outs.iter().enumerate() {
                let name = o.get("name").and_then(Value::as_str).ok_or_else(|| {
                    V2Error::bad(format!("outputs[{i}].name is required: a string"))
                })?;
                parameters(o.get("parameters"), &format!("outputs[{i}].parameters"))?;
                if !OUTPUTS.iter().any(|(n, _)| *n == name) {
                    return Err(V2Error::bad(format!(
                        "output `{name}` does not exist: the outputs are churn_probability, risk_tier and reasons"
                    )));
                }
                names.push(name);
            }
            names
        }
        Some(other) => {
            return Err(V2Error::bad(format!(
                "outputs must be an array, got {}",
                kind(other)
            )))
        }
    };

    let defs = scorer.artifact.spec.defs();
    let mut rows: Option<(usize, String)> = None;
    let mut check_rows = |t: &Tensor<'_>| -> Result<(), V2Error> {
        match rows {
            None => {
                rows = Some((t.rows, t.name.to_string()));
                Ok(())
            }
            Some((n, ref first)) if n != t.rows => Err(V2Error::bad(format!(
                "every input must have the same number of rows: `{first}` has {n}, `{}` has {}",
                t.name, t.rows
            ))),
            Some(_) => Ok(()),
        }
    };
    let mut columns: Vec<&Tensor<'_>> = Vec::with_capacity(defs.len());
    for d in defs {
        let t = by_name.get(d.name.as_str()).ok_or_else(|| {
            V2Error::bad(format!(
                "input `{}` is missing: send one FP64 input per feature column (see GET /v2/models/{})",
                d.name, scorer.name
            ))
        })?;
        check_rows(t)?;
        columns.push(t);
    }
    let customers: Option<Vec<String>> = match by_name.get(CUSTOMER_ID_INPUT) {
        None => None,
        Some(t) => {
            check_rows(t)?;
            if t.datatype != "BYTES" {
                return Err(V2Error::bad(format!(
                    "input `{CUSTOMER_ID_INPUT}` must be BYTES (strings)"
                )));
            }
            let ids = t
                .data
                .iter()
                .enumerate()
                .map(|(j, v)| match v.as_str() {
                    Some(s) if super::routes::valid_customer_id(s) => Ok(s.to_string()),
                    _ => Err(V2Error::bad(format!(
                        "input `{CUSTOMER_ID_INPUT}`, element {j}: expected a non-blank string of at most {} characters",
                        super::routes::MAX_CUSTOMER_ID_CHARS
                    ))),
                })
                .collect::<Result<Vec<_>, _>>()?;
            Some(ids)
        }
    };
    let n = rows.map_or(0, |r| r.0);
    if n > state.max_batch {
        return Err(V2Error::bad(format!(
            "{n} rows sent; at most {} per request",
            state.max_batch
        )));
    }
    let w = defs.len();
    let mut x = vec![0.0; n * w];
    for (k, (d, t)) in defs.iter().zip(&columns).enumerate() {
        let binary = d.transform == Transform::Binary;
        for (j, v) in t.data.iter().enumerate() {
            x[j * w + k] = element(t, j, v, binary, d.may_be_missing)?;
        }
    }
    let mut ignored: Vec<&str> = by_name
        .keys()
        .copied()
        .filter(|k| *k != CUSTOMER_ID_INPUT && scorer.artifact.spec.index_of(k).is_none())
        .collect();
    ignored.sort_unstable();

    let scores = (0..n)
        .map(|j| {
            let s = scorer.score(&x[j * w..(j + 1) * w], N_REASONS);
            if super::routes::finite(&s) {
                Ok(s)
            } else {
                Err(V2Error::bad(format!(
                    "row {j}: the model cannot score these values (they overflow it): check for extreme values"
                )))
            }
        })
        .collect::<Result<Vec<_>, _>>()?;
    let probabilities: Vec<f64> = scores.iter().map(|s| s.churn_probability).collect();
    state
        .metrics
        .observe_scores(&scorer.name, &scorer.version, &probabilities);
    let quiet = customers.as_ref().is_none_or(|ids| {
        let observations: Vec<Observation<'_>> = ids
            .iter()
            .zip(&scores)
            .map(|(customer_id, s)| Observation {
                customer_id,
                tier: s.alerting_tier(),
                as_of,
            })
            .collect();
        state.nothing_to_record(&observations)
    });
    if let Some(ids) = customers.filter(|_| !quiet) {
        let records = ids
            .into_iter()
            .zip(&scores)
            .enumerate()
            .map(|(j, (customer_id, s))| Recorded {
                customer_id,
                as_of,
                score: s.clone(),
                row: x[j * w..(j + 1) * w].to_vec(),
                activity: None,
            })
            .collect();
        state.record_tiers(scorer, records).await;
    }
    let outputs = requested
        .into_iter()
        .map(|name| {
            let (datatype, data) = match name {
                "churn_probability" => ("FP64", Value::from(probabilities.clone())),
                "risk_tier" => (
                    "BYTES",
                    Value::from(
                        scores
                            .iter()
                            .map(|s| s.risk_tier.as_str())
                            .collect::<Vec<_>>(),
                    ),
                ),
                _ => (
                    "BYTES",
                    Value::from(
                        scores
                            .iter()
                            .map(|s| serde_json::to_string(&s.reasons).unwrap_or_default())
                            .collect::<Vec<_>>(),
                    ),
                ),
            };
            ResponseOutput {
                name: name.to_string(),
                shape: vec![n as u64],
                datatype: datatype.to_string(),
                data,
            }
        })
        .collect();
    let parameters =
        (!ignored.is_empty()).then(|| serde_json::json!({ "ignored_inputs": ignored.join(",") }));
    Ok(InferenceResponse {
        model_name: scorer.name.clone(),
        model_version: scorer.version.clone(),
        id,
        parameters,
        outputs,
    })
}

/// An inference request body, parsed: JSON (with a JSON `Content-Type` or none), or the
/// binary tensor data extension (its binary inputs decoded into `data`). Refuses with
/// `/v2` errors: 415 for another declared type, 413 over the body limit, 400 otherwise.
#[derive(Debug, Clone)]
pub struct V2Body(pub Value);

impl<S: Send + Sync> FromRequest<S> for V2Body {
    type Rejection = V2Error;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let header_len = match req.headers().get(INFERENCE_HEADER_CONTENT_LENGTH) {
            None => None,
            Some(v) => Some(
                v.to_str()
                    .ok()
                    .and_then(|s| s.trim().parse::<usize>().ok())
                    .ok_or_else(|| {
                        V2Error::bad(
                            "header Inference-Header-Content-Length must be the byte length of the JSON part of the body",
                        )
                    })?,
            ),
        };
        // The binary extension's body is not JSON whatever its declared type; otherwise
        // an undeclared type is JSON (the protocol's clients often send none).
        if header_len.is_none() {
            let declared = req
                .headers()
                .get(header::CONTENT_TYPE)
                .map(|v| v.to_str().unwrap_or("").to_ascii_lowercase());
            if let Some(ct) = declared {
                let essence = ct.split(';').next().unwrap_or("").trim();
                if essence != "application/json" && !essence.ends_with("+json") {
                    return Err(V2Error {
                        status: StatusCode::UNSUPPORTED_MEDIA_TYPE,
                        message: format!(
                            "Content-Type `{essence}` is not accepted: send JSON (application/json, or no Content-Type), or use the binary tensor data extension (header Inference-Header-Content-Length)"
                        ),
                    });
                }
            }
        }
        let bytes = Bytes::from_request(req, state).await.map_err(|r| {
            if r.status() == StatusCode::PAYLOAD_TOO_LARGE {
                V2Error::from(super::error::ApiError::too_large())
            } else {
                V2Error::bad("the request body could not be read")
            }
        })?;
        parse_body(&bytes, header_len).map(V2Body)
    }
}

/// Parses an inference body: the first `header_len` bytes (all of them without the binary
/// extension) as JSON, leniently about undefined values, then the rest as the binary data
/// of the inputs that declare `parameters.binary_data_size`, in input order.
pub fn parse_body(bytes: &[u8], header_len: Option<usize>) -> Result<Value, V2Error> {
    let (json, tail) = match header_len {
        None => (bytes, None),
        Some(n) if n <= bytes.len() => (&bytes[..n], Some(&bytes[n..])),
        Some(n) => {
            return Err(V2Error::bad(format!(
                "Inference-Header-Content-Length is {n} but the body has only {} bytes",
                bytes.len()
            )))
        }
    };
    // With the header, the length it gives is the likeliest culprit (a client reusing one
    // headers dict, as tritonclient's `infer` invites, sends a stale one with a JSON body).
    let mut value: Value =
        serde_json::from_slice(&lenient_json(json)).map_err(|e| match header_len {
            Some(n) => V2Error::bad(format!(
                "the first {n} bytes of the body, the JSON part by the header Inference-Header-Content-Length, are not valid JSON: {e} (check that the header gives this request's JSON length)"
            )),
            None => V2Error::bad(format!(
                "the request body is not valid JSON: {e}{}",
                if e.is_syntax() {
                    " (binary tensor data needs the header Inference-Header-Content-Length)"
                } else {
                    ""
                }
            )),
        })?;
    attach_binary(&mut value, tail)?;
    Ok(value)
}

/// Rewrites the undefined-number tokens Python's `json` writes outside strings (`NaN`,
/// `Infinity`, `-Infinity`), which JSON does not allow: `NaN` becomes `null` (an undefined
/// value), the infinities become strings (refused later as not finite numbers). Anything
/// else is left as it is for the JSON parser to judge.
pub fn lenient_json(b: &[u8]) -> Cow<'_, [u8]> {
    if !b.iter().any(|&c| c == b'N' || c == b'I') {
        return Cow::Borrowed(b);
    }
    const TOKENS: [(&[u8], &[u8]); 3] = [
        (b"NaN", b"null"),
        (b"-Infinity", b"\"-Infinity\""),
        (b"Infinity", b"\"Infinity\""),
    ];
    let mut out = Vec::with_capacity(b.len() + 16);
    let (mut in_string, mut escaped, mut i) = (false, false, 0);
    'outer: while i < b.len() {
        let c = b[i];
        if in_string {
            if escaped {
                escaped = false;
            } else if c == b'\\' {
                escaped = true;
            } else if c == b'"' {
                in_string = false;
            }
        } else if c == b'"' {
            in_string = true;
        } else if i == 0 || !b[i - 1].is_ascii_alphanumeric() {
            for (token, with) in TOKENS {
                let ends = b
                    .get(i + token.len())
                    .is_none_or(|c| !c.is_ascii_alphanumeric());
                if b[i..].starts_with(token) && ends {
                    out.extend_from_slice(with);
                    i += token.len();
                    continue 'outer;
                }
            }
        }
        out.push(c);
        i += 1;
    }
    Cow::Owned(out)
}

/// Moves each binary input's bytes from `tail` into its `data`; `tail` is `None` without
/// the binary extension (then no input may declare `binary_data_size`).
fn attach_binary(value: &mut Value, tail: Option<&[u8]>) -> Result<(), V2Error> {
    let mut at: usize = 0;
    if let Some(inputs) = value.get_mut("inputs").and_then(Value::as_array_mut) {
        for (i, input) in inputs.iter_mut().enumerate() {
            let Some(obj) = input.as_object_mut() else {
                continue;
            };
            let Some(size) = obj
                .get("parameters")
                .and_then(|p| p.get("binary_data_size"))
            else {
                continue;
            };
            let name = obj
                .get("name")
                .and_then(Value::as_str)
                .map_or_else(|| format!("inputs[{i}]"), |n| format!("input `{n}`"));
            let size = size
                .as_u64()
                .and_then(|n| usize::try_from(n).ok())
                .ok_or_else(|| {
                    V2Error::bad(format!(
                        "{name}: parameters.binary_data_size must be a non-negative integer"
                    ))
                })?;
            let Some(tail) = tail else {
                return Err(V2Error::bad(format!(
                    "{name}: parameters.binary_data_size needs the binary tensor data extension: send the header Inference-Header-Content-Length"
                )));
            };
            if obj.contains_key("data") {
                return Err(V2Error::bad(format!(
                    "{name}: give either data or parameters.binary_data_size, not both"
                )));
            }
            let end = at
                .checked_add(size)
                .filter(|&e| e <= tail.len())
                .ok_or_else(|| {
                    V2Error::bad(format!(
                        "{name}: binary_data_size {size} runs past the end of the body ({} bytes of binary data left)",
                        tail.len() - at
                    ))
                })?;
            let datatype = obj.get("datatype").and_then(Value::as_str).unwrap_or("");
            let data = decode_binary(&tail[at..end], datatype)
                .map_err(|m| V2Error::bad(format!("{name}: {m}")))?;
            obj.insert("data".into(), Value::Array(data));
            at = end;
        }
    }
    match tail {
        Some(tail) if at != tail.len() => Err(V2Error::bad(format!(
            "{} bytes of binary data after the JSON header belong to no input's binary_data_size",
            tail.len() - at
        ))),
        _ => Ok(()),
    }
}

/// Splits `b` into little-endian elements of `N` bytes.
fn elements<const N: usize>(b: &[u8], datatype: &str) -> Result<Vec<[u8; N]>, String> {
    if b.len() % N != 0 {
        return Err(format!(
            "{} bytes of binary data are not a whole number of {datatype} elements ({N} bytes each)",
            b.len()
        ));
    }
    Ok(b.chunks_exact(N)
        .map(|c| c.try_into().expect("chunks_exact yields N bytes"))
        .collect())
}

/// A float as JSON: NaN is an undefined value (`null`), an infinity a string (refused as
/// not finite by the element check), like the lenient JSON reading.
fn float(x: f64) -> Value {
    if x.is_nan() {
        Value::Null
    } else if x.is_finite() {
        Value::from(x)
    } else if x > 0.0 {
        Value::from("Infinity")
    } else {
        Value::from("-Infinity")
    }
}

/// Decodes one input's raw bytes (little-endian; `BOOL` one byte; `BYTES` each element a
/// 4-byte little-endian length then that many UTF-8 bytes) into JSON elements.
pub fn decode_binary(b: &[u8], datatype: &str) -> Result<Vec<Value>, String> {
    macro_rules! ints {
        ($t:ty, $n:literal) => {
            elements::<$n>(b, datatype)?
                .into_iter()
                .map(|c| Value::from(<$t>::from_le_bytes(c)))
                .collect()
        };
    }
    Ok(match datatype {
        "FP64" => elements::<8>(b, datatype)?
            .into_iter()
            .map(|c| float(f64::from_le_bytes(c)))
            .collect(),
        "FP32" => elements::<4>(b, datatype)?
            .into_iter()
            .map(|c| float(f64::from(f32::from_le_bytes(c))))
            .collect(),
        "INT8" => ints!(i8, 1),
        "INT16" => ints!(i16, 2),
        "INT32" => ints!(i32, 4),
        "INT64" => ints!(i64, 8),
        "UINT8" => ints!(u8, 1),
        "UINT16" => ints!(u16, 2),
        "UINT32" => ints!(u32, 4),
        "UINT64" => ints!(u64, 8),
        "BOOL" => b.iter().map(|&c| Value::Bool(c != 0)).collect(),
        "BYTES" => {
            let mut out = Vec::new();
            let mut rest = b;
            while !rest.is_empty() {
                let j = out.len();
                let (len, after) = rest
                    .split_first_chunk::<4>()
                    .ok_or_else(|| format!("BYTES element {j}: a 4-byte length is cut short"))?;
                let len = u32::from_le_bytes(*len) as usize;
                if len > after.len() {
                    return Err(format!(
                        "BYTES element {j}: length {len} runs past the end of the data"
                    ));
                }
                let s = std::str::from_utf8(&after[..len])
                    .map_err(|_| format!("BYTES element {j} is not UTF-8"))?;
                out.push(Value::from(s));
                rest = &after[len..];
            }
            out
        }
        other => {
            return Err(format!(
                "datatype {other} is not accepted as binary data: use FP64, FP32, an integer type, BOOL or BYTES"
            ))
        }
    })
}
