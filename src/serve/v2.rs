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
//! Server-specific extensions: an optional `customer_id` input (BYTES `[N]`) records each
//! customer's tier in the alert outbox like `/v1/score`; request parameter `as_of` (string)
//! sets the instant recorded (default now); `parameters.content_type` may be `"pd"`
//! (columns of a data frame: what every request here is) and nothing else; `null` is
//! accepted for features the model marks `may_be_missing`; inputs that are not features
//! are ignored and listed in the response parameter `ignored_inputs`.

use std::collections::HashMap;
use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use utoipa::ToSchema;

use super::error::{JsonBody, V2Error, V2ErrorBody};
use super::routes::N_REASONS;
use super::state::{AppState, Recorded};
use crate::alerts::outbox::Observation;
use crate::features::online::kind;
use crate::features::Transform;
use crate::registry::Selector;
use crate::scoring::Scorer;

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
    /// Extensions supported (none of the protocol's).
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
    /// The versions that may be requested explicitly: the served one.
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
    #[schema(value_type = Option<Object>)]
    pub parameters: Option<Value>,
    /// Row-major data, flat or nested.
    #[schema(value_type = Vec<Object>)]
    pub data: Value,
}

/// An output requested.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct RequestOutput {
    /// `churn_probability`, `risk_tier` or `reasons`.
    pub name: String,
    /// Parameters of this output.
    #[serde(default)]
    #[schema(value_type = Option<Object>)]
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
    #[schema(value_type = Option<Object>)]
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
    #[schema(value_type = Vec<Object>)]
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
    #[schema(value_type = Option<Object>)]
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
        extensions: Vec::new(),
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

/// The served scorer when the path names it (and, if given, its version).
fn served(state: &AppState, name: &str, version: Option<&str>) -> Result<Arc<Scorer>, V2Error> {
    if name != state.name {
        return Err(V2Error::not_found(format!(
            "model `{name}` is not served here (this server serves `{}`)",
            state.name
        )));
    }
    let scorer = state.scorer().ok_or_else(|| V2Error {
        status: StatusCode::SERVICE_UNAVAILABLE,
        message: format!("model `{name}` is not loaded yet"),
    })?;
    if let Some(v) = version {
        let same = match v.parse::<Selector>() {
            Ok(Selector::Version(n)) => format!("v{n}") == scorer.version,
            _ => false,
        };
        if !same {
            return Err(V2Error::not_found(format!(
                "version `{v}` of model `{name}` is not served here (the served version is {})",
                scorer.version
            )));
        }
    }
    Ok(scorer)
}

fn metadata(scorer: &Scorer) -> ModelMetadata {
    let algorithm = match scorer.manifest.algorithm.as_str() {
        "" => "model",
        a => a,
    };
    ModelMetadata {
        name: scorer.name.clone(),
        versions: vec![scorer.version.clone()],
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
              (status = 404, description = "Not served here", body = V2ErrorBody)),
    security(("bearer" = [])))]
pub async fn model_metadata(
    State(state): State<AppState>,
    Path(name): Path<String>,
) -> Result<Json<ModelMetadata>, V2Error> {
    served(&state, &name, None).map(|s| Json(metadata(&s)))
}

/// Model metadata of an explicit version.
#[utoipa::path(get, path = "/v2/models/{name}/versions/{version}", tag = "v2",
    params(("name" = String, Path, description = "Model name"),
           ("version" = String, Path, description = "Version (`v3` or `3`)")),
    responses((status = 200, description = "Model metadata", body = ModelMetadata),
              (status = 404, description = "Not served here", body = V2ErrorBody)),
    security(("bearer" = [])))]
pub async fn model_metadata_version(
    State(state): State<AppState>,
    Path((name, version)): Path<(String, String)>,
) -> Result<Json<ModelMetadata>, V2Error> {
    served(&state, &name, Some(&version)).map(|s| Json(metadata(&s)))
}

fn model_ready_answer(state: &AppState, name: &str, version: Option<&str>) -> Response {
    match served(state, name, version) {
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
              (status = 404, description = "Not served here", body = V2ErrorBody)),
    security(("bearer" = [])))]
pub async fn model_ready(State(state): State<AppState>, Path(name): Path<String>) -> Response {
    model_ready_answer(&state, &name, None)
}

/// Readiness of an explicit version.
#[utoipa::path(get, path = "/v2/models/{name}/versions/{version}/ready", tag = "v2",
    params(("name" = String, Path, description = "Model name"),
           ("version" = String, Path, description = "Version")),
    responses((status = 200, description = "Ready", body = ModelReady),
              (status = 503, description = "Not loaded yet", body = ModelReady),
              (status = 404, description = "Not served here", body = V2ErrorBody)),
    security(("bearer" = [])))]
pub async fn model_ready_version(
    State(state): State<AppState>,
    Path((name, version)): Path<(String, String)>,
) -> Response {
    model_ready_answer(&state, &name, Some(&version))
}

/// Inference on the served version.
#[utoipa::path(post, path = "/v2/models/{name}/infer", tag = "v2",
    params(("name" = String, Path, description = "Model name")),
    request_body = InferenceRequest,
    responses((status = 200, description = "Scores", body = InferenceResponse),
              (status = 400, description = "Bad request", body = V2ErrorBody),
              (status = 404, description = "Not served here", body = V2ErrorBody)),
    security(("bearer" = [])))]
pub async fn infer(
    State(state): State<AppState>,
    Path(name): Path<String>,
    body: Result<JsonBody, super::error::ApiError>,
) -> Result<Json<InferenceResponse>, V2Error> {
    let scorer = served(&state, &name, None)?;
    let JsonBody(body) = body?;
    run_inference(&state, &scorer, &body).await.map(Json)
}

/// Inference on an explicit version (must be the served one).
#[utoipa::path(post, path = "/v2/models/{name}/versions/{version}/infer", tag = "v2",
    params(("name" = String, Path, description = "Model name"),
           ("version" = String, Path, description = "Version")),
    request_body = InferenceRequest,
    responses((status = 200, description = "Scores", body = InferenceResponse),
              (status = 400, description = "Bad request", body = V2ErrorBody),
              (status = 404, description = "Not served here", body = V2ErrorBody)),
    security(("bearer" = [])))]
pub async fn infer_version(
    State(state): State<AppState>,
    Path((name, version)): Path<(String, String)>,
    body: Result<JsonBody, super::error::ApiError>,
) -> Result<Json<InferenceResponse>, V2Error> {
    let scorer = served(&state, &name, Some(&version))?;
    let JsonBody(body) = body?;
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
                "{}: null is only accepted for features the model marks may_be_missing",
                at()
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
    let as_of = match params.and_then(|p| p.get("as_of")) {
        None => chrono::Utc::now().timestamp(),
        Some(Value::String(s)) => crate::time::parse_as_of(s)
            .map_err(|_| V2Error::bad(format!("parameters.as_of `{s}` is not a date")))?,
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
                    Some(s)
                        if !s.trim().is_empty()
                            && s.len() <= super::routes::MAX_CUSTOMER_ID_BYTES =>
                    {
                        Ok(s.to_string())
                    }
                    _ => Err(V2Error::bad(format!(
                        "input `{CUSTOMER_ID_INPUT}`, element {j}: expected a non-blank string of at most {} bytes",
                        super::routes::MAX_CUSTOMER_ID_BYTES
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
