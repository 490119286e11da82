//! The `/v1` routes, health, readiness, metrics and the OpenAPI document.
//!
//! Request bodies are read as JSON values and walked by hand so that every error names
//! the exact field (`instances[3].features.logins_30d`); unknown fields are ignored and
//! reported back in `ignored_fields`.

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use utoipa::ToSchema;

use super::error::{parse_json, ApiError, ErrorBody, JsonBody, JsonBytes};
use super::state::{AppState, Recorded, ReloadOutcome};
use crate::alerts::outbox::Observation;
use crate::features::online::{kind, OwnedActivity};
use crate::features::Dimension;
use crate::scores::ScoreRecord;
use crate::scoring::{AllContributions, DimensionScores, ModelRef, Reason, RuleHit, Scorer, Tier};
use crate::time::{parse_as_of, Ts};

/// Reasons returned per score (as many as the nightly file carries).
pub const N_REASONS: usize = crate::scores::REASONS_PER_CUSTOMER;

/// Longest accepted `customer_id`, in characters (Unicode code points, as JSON Schema's
/// `maxLength` counts them).
pub const MAX_CUSTOMER_ID_CHARS: usize = 256;

/// The pattern of a `customer_id` that is not blank: one character that Rust's
/// [`str::trim`] keeps (Unicode `White_Space` excluded), so the document and
/// [`valid_customer_id`] agree on every string.
pub const NON_BLANK: &str =
    "[^\\t\\n\\u000B\\f\\r \\u0085\\u00A0\\u1680\\u2000-\\u200A\\u2028\\u2029\\u202F\\u205F\\u3000]";

/// Whether `s` is an acceptable `customer_id`: not blank, at most
/// [`MAX_CUSTOMER_ID_CHARS`] characters.
pub fn valid_customer_id(s: &str) -> bool {
    !s.trim().is_empty() && s.chars().count() <= MAX_CUSTOMER_ID_CHARS
}

/// One customer to score: `customer_id` and exactly one of `features` or `activity`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[schema(example = json!({"customer_id": "c42", "features": {"logins_30d": 3, "tickets_open": 1}}))]
pub struct ScoreRequest {
    /// The customer's id in your systems: 1 to 256 characters, not blank. Alerts are
    /// keyed on it.
    #[schema(min_length = 1, max_length = 256)]
    pub customer_id: String,
    /// The instant to score at: RFC 3339, `YYYY-MM-DD HH:MM:SS` (UTC) or `YYYY-MM-DD`.
    /// Default: now. At most [`MAX_AS_OF_SKEW_SECS`] ahead of the server's clock (a later
    /// one is a 422: it would make the customer's later scores stale and silence its alerts).
    /// Used by the `activity` form and for the alert state.
    #[serde(default)]
    #[schema(schema_with = super::schema::as_of)]
    pub as_of: Option<String>,
    /// The model's features by name (see `GET /v1/models/{name}`). A feature the model
    /// marks `may_be_missing` may be absent or null; every other one is required.
    #[serde(default)]
    #[schema(schema_with = super::schema::features)]
    pub features: Option<Value>,
    /// Raw activity (`customer`, `logins`, `tickets`, `orders`, `events`); features are
    /// computed as of `as_of` by the same code as training.
    #[serde(default)]
    #[schema(value_type = Option<super::schema::Activity>)]
    pub activity: Option<Value>,
    /// `top` (the default, also when absent or null): the top reasons only; `all`: also
    /// every feature's contribution, in `contributions`.
    #[serde(default)]
    pub explain: Option<ExplainLevel>,
}

/// How much of a score to explain.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ExplainLevel {
    /// The top reasons (as many as the nightly file carries).
    #[default]
    Top,
    /// The top reasons and every feature's contribution.
    All,
}

/// The score of one customer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ScoreResponse {
    /// As sent.
    pub customer_id: String,
    /// Calibrated probability of churning within the model's horizon (higher is worse).
    pub churn_probability: f64,
    /// 0-100, higher is healthier: the share of the reference population at higher risk.
    pub health_score: f64,
    /// `low`, `medium` or `high`, from the model's thresholds.
    pub risk_tier: Tier,
    /// Whether this score raised an alert (a transition into the alerting tier outside
    /// the cooldown). False too when the outbox could not record it (logged, counted).
    pub alert: bool,
    /// The features pushing the risk up the most, largest first.
    pub reasons: Vec<Reason>,
    /// Rule-based early warnings that fire on the same features (no login in 7 days,
    /// an order overdue by 1.5x the usual interval, 2+ urgent tickets open).
    pub early_warnings: Vec<RuleHit>,
    /// The model that scored.
    pub model: ModelRef,
    /// The instant scored (RFC 3339, UTC).
    #[schema(format = DateTime)]
    pub as_of: String,
    /// Request fields that were not used (`features.unknown_thing`), never an error.
    pub ignored_fields: Vec<String>,
    // Explanations (issue 14, items 3 and 5); the reasons' texts are in `reasons`.
    /// Each dimension's contribution (the sum of its features' contributions) and health.
    pub dimensions: DimensionScores,
    /// The dimension pushing the risk up the most; null when none does.
    pub primary_driver: Option<Dimension>,
    /// Every feature's contribution, in schema order: only with `"explain": "all"`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub contributions: Option<AllContributions>,
}

/// Several customers at once.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct BatchRequest {
    /// Each as in `POST /v1/score`; at most the server's `max_batch` (default 1000).
    pub instances: Vec<ScoreRequest>,
}

/// The scores, in the order of the instances.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct BatchResponse {
    /// One per instance.
    pub results: Vec<ScoreResponse>,
    /// Top-level request fields that were not used.
    pub ignored_fields: Vec<String>,
}

/// A served model, in the list.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ModelSummary {
    /// Registry name.
    pub name: String,
    /// The version served (the `production` alias).
    pub version: String,
    /// The fitted algorithm (`logistic`, `tree`, `forest`, `gbdt`).
    pub algorithm: Option<String>,
    /// When the version was written (RFC 3339, UTC); null for a manifest that did not
    /// record it.
    #[schema(format = DateTime)]
    pub created_at: Option<String>,
    /// The horizon of `churn_probability`, in days.
    pub horizon_days: Option<u64>,
}

/// The served models.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ModelList {
    /// Empty until a model is loaded.
    pub models: Vec<ModelSummary>,
}

/// One version in the registry.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct VersionSummary {
    /// `v3`.
    pub version: String,
    /// When it was written (RFC 3339, UTC); null for a manifest that did not record it.
    #[schema(format = DateTime)]
    pub created_at: Option<String>,
    /// Aliases pointing at it (`production`, `staging`).
    pub aliases: Vec<String>,
}

/// A served model in detail: from its manifest.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ModelDetail {
    /// Registry name.
    pub name: String,
    /// The version served.
    pub version: String,
    /// The fitted algorithm.
    pub algorithm: Option<String>,
    /// When the version was written (RFC 3339, UTC); null for a manifest that did not
    /// record it.
    #[schema(format = DateTime)]
    pub created_at: Option<String>,
    /// The horizon of `churn_probability`, in days.
    pub horizon_days: Option<u64>,
    /// What "churned" means for this model, in words.
    pub churn_definition: Option<String>,
    /// Validation metrics (ROC AUC, PR AUC, log loss, Brier, lift).
    #[schema(value_type = Object)]
    pub metrics: Value,
    /// Tier thresholds on the calibrated probability and how they were chosen.
    #[schema(value_type = Object)]
    pub thresholds: Value,
    /// The feature schema, in the model's order: name, description, table, transform,
    /// may_be_missing, by_construction.
    #[schema(value_type = Vec<crate::features::FeatureDef>)]
    pub features: Value,
    /// Every version in the registry, with its aliases.
    pub versions: Vec<VersionSummary>,
}

/// Liveness or readiness.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Health {
    /// `ok`, `ready` or `not_ready`.
    pub status: String,
    /// The model served, when one is.
    pub model: Option<ModelRef>,
}

/// What an admin reload did.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ReloadResponse {
    /// The model served now.
    pub model: ModelRef,
    /// Whether the version changed.
    pub changed: bool,
    /// The version served before, when it changed.
    pub previous: Option<String>,
}

fn now() -> Ts {
    chrono::Utc::now().timestamp()
}

/// How far ahead of the server's clock a request's `as_of` may be, in seconds: a
/// caller's clock running a little fast is not an error.
///
/// Anything later is refused because the alert state keeps each customer's latest
/// score: one dated in the future (`9999-01-01`) would become that latest, every real
/// score after it would be stale, and the customer would never alert again.
pub const MAX_AS_OF_SKEW_SECS: Ts = 5 * 60;

/// Why `as_of` cannot be scored at `now` (it is past the allowed clock skew), for the
/// caller; `None` when it can. The one rule of every scoring route and the fast path.
pub(super) fn future_as_of(as_of: Ts, now: Ts) -> Option<String> {
    (as_of > now.saturating_add(MAX_AS_OF_SKEW_SECS)).then(|| {
        format!(
            "as_of {} is in the future: the server's time is {}, and an as_of may be at most \
             {} minutes ahead of it (a future score would make every later score of the \
             customer stale)",
            crate::time::fmt_ts(as_of),
            crate::time::fmt_ts(now),
            MAX_AS_OF_SKEW_SECS / 60
        )
    })
}

/// A validated instance, ready to score.
pub(super) struct Prepared {
    /// The field that carried the features (`features`, `instances[3].activity`), named
    /// when the model cannot score them.
    pub(super) form: String,
    pub(super) customer_id: String,
    pub(super) as_of: Ts,
    pub(super) row: Vec<f64>,
    /// The parsed `activity` of that form (an alert's trail and profile read it).
    pub(super) activity: Option<Arc<OwnedActivity>>,
    pub(super) ignored: Vec<String>,
    /// `"explain": "all"`: answer every contribution.
    pub(super) explain_all: bool,
}

const KNOWN_FIELDS: [&str; 5] = ["customer_id", "as_of", "features", "activity", "explain"];

/// Validates one instance; `prefix` (`""` or `instances[3].`) prefixes every field named
/// in an error. Ignored fields are named relative to the instance.
pub(super) fn prepare(
    scorer: &Scorer,
    v: &Value,
    prefix: &str,
    now: Ts,
) -> Result<Prepared, ApiError> {
    let field = |name: &str| format!("{prefix}{name}");
    let obj: &Map<String, Value> = match v.as_object() {
        Some(o) => o,
        None if prefix.is_empty() => {
            return Err(ApiError::malformed(format!(
                "the request body must be a JSON object, got {}",
                kind(v)
            )))
        }
        None => {
            let at = prefix.trim_end_matches('.');
            return Err(ApiError::invalid(
                at,
                format!("{at}: expected an object, got {}", kind(v)),
            ));
        }
    };
    let mut ignored: Vec<String> = obj
        .keys()
        .filter(|k| !KNOWN_FIELDS.contains(&k.as_str()))
        .cloned()
        .collect();
    let customer_id = match obj.get("customer_id") {
        Some(Value::String(s)) if valid_customer_id(s) => s.clone(),
        Some(Value::String(_)) => {
            return Err(ApiError::invalid(
                field("customer_id"),
                format!(
                    "customer_id must be 1 to {MAX_CUSTOMER_ID_CHARS} characters and not blank"
                ),
            ))
        }
        None | Some(Value::Null) => {
            return Err(ApiError::invalid(
                field("customer_id"),
                "customer_id is required",
            ))
        }
        Some(other) => {
            return Err(ApiError::invalid(
                field("customer_id"),
                format!("customer_id must be a string, got {}", kind(other)),
            ))
        }
    };
    let as_of = match obj.get("as_of") {
        None | Some(Value::Null) => now,
        Some(Value::String(s)) => {
            let as_of = parse_as_of(s).map_err(|e| {
                ApiError::invalid(field("as_of"), format!("as_of: {}", library_message(e)))
            })?;
            if let Some(why) = future_as_of(as_of, now) {
                return Err(ApiError::invalid(field("as_of"), why));
            }
            as_of
        }
        Some(other) => {
            return Err(ApiError::invalid(
                field("as_of"),
                format!("as_of must be a date string, got {}", kind(other)),
            ))
        }
    };
    let explain_all = match obj.get("explain") {
        None | Some(Value::Null) => false,
        Some(Value::String(s)) if s == "top" => false,
        Some(Value::String(s)) if s == "all" => true,
        Some(other) => {
            return Err(ApiError::invalid(
                field("explain"),
                format!(
                    "explain must be \"top\" or \"all\", got {}",
                    match other {
                        Value::String(s) => format!("\"{s}\""),
                        v => kind(v).to_string(),
                    }
                ),
            ))
        }
    };
    let present = |k: &str| obj.get(k).filter(|v| !v.is_null());
    let (features, activity) = (present("features"), present("activity"));
    let (form, parsed) = match (features, activity) {
        (Some(f), None) => (
            field("features"),
            scorer
                .parse_features(f)
                .map(|(row, ignored)| (row, ignored, None)),
        ),
        (None, Some(a)) => (
            field("activity"),
            scorer
                .features_from_activity(a, as_of)
                .map(|f| (f.row, f.ignored, Some(Arc::new(f.activity)))),
        ),
        (Some(_), Some(_)) => {
            return Err(ApiError::invalid(
                field("features"),
                "send either `features` or `activity`, not both",
            ))
        }
        (None, None) => {
            return Err(ApiError::invalid(
                field("features"),
                "one of `features` (the model's features) or `activity` (raw activity) \
                 is required",
            ))
        }
    };
    let (row, more, activity) = parsed.map_err(|e| ApiError::from_library(e, prefix))?;
    ignored.extend(more);
    Ok(Prepared {
        form,
        customer_id,
        as_of,
        row,
        activity,
        ignored,
        explain_all,
    })
}

/// The message of a library error without its kind prefix.
fn library_message(e: crate::Error) -> String {
    match e {
        crate::Error::Config(m) | crate::Error::Input { message: m, .. } => m,
        other => other.chain().to_string(),
    }
}

/// Scores prepared instances, records their tiers and builds the answers.
async fn score_all(
    state: &AppState,
    scorer: &Arc<Scorer>,
    prepared: Vec<Prepared>,
) -> Result<Vec<ScoreResponse>, ApiError> {
    let scores = prepared
        .iter()
        .map(|p| {
            let s = scorer.score(&p.row, N_REASONS);
            if finite(&s) {
                Ok(s)
            } else {
                Err(ApiError::invalid(
                    p.form.clone(),
                    format!(
                        "{}: the model cannot score these values (they overflow it): check for extreme values",
                        p.form
                    ),
                ))
            }
        })
        .collect::<Result<Vec<_>, _>>()?;
    let probabilities: Vec<f64> = scores.iter().map(|s| s.churn_probability).collect();
    state
        .metrics
        .observe_scores(&scorer.name, &scorer.version, &probabilities);
    let observations: Vec<Observation<'_>> = prepared
        .iter()
        .zip(&scores)
        .map(|(p, s)| Observation {
            customer_id: &p.customer_id,
            tier: s.alerting_tier(),
            as_of: p.as_of,
        })
        .collect();
    let alerts = if state.nothing_to_record(&observations) {
        vec![false; prepared.len()]
    } else {
        let records = prepared
            .iter()
            .zip(&scores)
            .map(|(p, s)| Recorded {
                customer_id: p.customer_id.clone(),
                as_of: p.as_of,
                score: s.clone(),
                row: p.row.clone(),
                activity: p.activity.clone(),
            })
            .collect();
        state.record_tiers(scorer, records).await
    };
    Ok(prepared
        .into_iter()
        .zip(scores)
        .zip(alerts)
        .map(|((p, s), alert)| ScoreResponse {
            contributions: p.explain_all.then(|| scorer.all_contributions(&p.row)),
            dimensions: s.dimensions,
            primary_driver: s.primary_driver,
            customer_id: p.customer_id,
            churn_probability: s.churn_probability,
            health_score: s.health_score,
            risk_tier: s.risk_tier,
            alert,
            reasons: s.reasons,
            early_warnings: s.early_warnings,
            model: scorer.model_ref(),
            as_of: crate::time::fmt_ts(p.as_of),
            ignored_fields: p.ignored,
        })
        .collect())
}

/// Whether a score is fit to answer: extreme (finite) inputs can overflow a model's
/// margin, and a NaN must never reach a caller as `null`.
pub fn finite(s: &crate::scoring::Score) -> bool {
    s.churn_probability.is_finite()
        && s.health_score.is_finite()
        && s.reasons.iter().all(|r| r.contribution.is_finite())
        && crate::features::Dimension::ALL.iter().all(|&d| {
            let x = s.dimensions.get(d);
            x.contribution.is_finite() && x.health.is_finite()
        })
}

/// Scores one customer from its features or its raw activity.
#[utoipa::path(
    post, path = "/v1/score", tag = "scoring",
    request_body = ScoreRequest,
    responses(
        (status = 200, description = "The score", body = ScoreResponse),
        (status = 400, description = "The body is not a JSON object", body = ErrorBody),
        (status = 401, description = "Missing or unknown API key", body = ErrorBody),
        (status = 413, description = "Body too large", body = ErrorBody),
        (status = 415, description = "Not JSON", body = ErrorBody),
        (status = 422, description = "A field breaks the contract; `field` names it", body = ErrorBody),
        (status = 503, description = "No model loaded yet", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub async fn score(
    State(state): State<AppState>,
    JsonBytes(body): JsonBytes,
) -> Result<Response, ApiError> {
    let Some(scorer) = state.scorer() else {
        // Malformed JSON is still a 400 before a model is loaded.
        parse_json(&body)?;
        return Err(ApiError::not_ready());
    };
    let now = now();
    let prepared = match super::fast::prepare(&scorer, &body, now) {
        Some(fast) => Prepared {
            form: "features".to_string(),
            customer_id: fast.customer_id,
            as_of: fast.as_of,
            row: fast.row,
            activity: None,
            ignored: fast.ignored,
            explain_all: false,
        },
        None => prepare(&scorer, &parse_json(&body)?, "", now)?,
    };
    let mut out = score_all(&state, &scorer, vec![prepared]).await?;
    out.pop()
        .ok_or_else(ApiError::internal)
        .and_then(|answer| json_response(&answer))
}

/// Bytes reserved for one score's JSON answer: a default answer (three reasons with
/// their texts, four dimensions) is about 1.2 KB, so it is written without regrowing
/// the buffer (`Json` starts at 128 bytes and doubles five times).
const SCORE_ANSWER_BYTES: usize = 2048;

/// `Json(answer)`, byte for byte (the same serializer, the same `Content-Type`),
/// written into a buffer sized for a score.
fn json_response(answer: &impl Serialize) -> Result<Response, ApiError> {
    let mut buf = Vec::with_capacity(SCORE_ANSWER_BYTES);
    serde_json::to_writer(&mut buf, answer).map_err(|_| ApiError::internal())?;
    Ok((
        [(
            header::CONTENT_TYPE,
            header::HeaderValue::from_static("application/json"),
        )],
        buf,
    )
        .into_response())
}

/// Scores up to `max_batch` customers; any invalid instance fails the whole request,
/// naming it (`instances[3].features.logins_30d`).
#[utoipa::path(
    post, path = "/v1/score/batch", tag = "scoring",
    request_body = BatchRequest,
    responses(
        (status = 200, description = "One result per instance, in order", body = BatchResponse),
        (status = 400, description = "The body is not a JSON object", body = ErrorBody),
        (status = 401, description = "Missing or unknown API key", body = ErrorBody),
        (status = 413, description = "Body larger than the batch routes' limit (`payload_too_large`)", body = ErrorBody),
        (status = 415, description = "Not JSON", body = ErrorBody),
        (status = 422, description = "An instance breaks the contract (`invalid_input`; `field` names it), or more instances than `max_batch` (`too_many_instances`)", body = ErrorBody),
        (status = 503, description = "No model loaded yet", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub async fn score_batch(
    State(state): State<AppState>,
    JsonBody(body): JsonBody,
) -> Result<Json<BatchResponse>, ApiError> {
    let Some(obj) = body.as_object() else {
        return Err(ApiError::malformed(format!(
            "the request body must be a JSON object with `instances`, got {}",
            kind(&body)
        )));
    };
    let instances = match obj.get("instances") {
        Some(Value::Array(a)) => a,
        None | Some(Value::Null) => {
            return Err(ApiError::invalid(
                "instances",
                "instances is required: an array of score requests",
            ))
        }
        Some(other) => {
            return Err(ApiError::invalid(
                "instances",
                format!("instances must be an array, got {}", kind(other)),
            ))
        }
    };
    if instances.len() > state.max_batch {
        return Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "too_many_instances",
            format!(
                "{} instances sent; at most {} per request",
                instances.len(),
                state.max_batch
            ),
        )
        .with_field("instances"));
    }
    let ignored_fields = obj
        .keys()
        .filter(|k| k.as_str() != "instances")
        .cloned()
        .collect();
    let scorer = state.scorer().ok_or_else(ApiError::not_ready)?;
    let t = now();
    let prepared = instances
        .iter()
        .enumerate()
        .map(|(i, v)| prepare(&scorer, v, &format!("instances[{i}]."), t))
        .collect::<Result<Vec<_>, _>>()?;
    let results = score_all(&state, &scorer, prepared).await?;
    Ok(Json(BatchResponse {
        results,
        ignored_fields,
    }))
}

/// The customer's latest nightly score, with its reasons.
#[utoipa::path(
    get, path = "/v1/customers/{id}/score", tag = "scoring",
    params(("id" = String, Path, description = "The customer id")),
    responses(
        (status = 200, description = "The nightly score, as the score file holds it", body = ScoreRecord),
        (status = 401, description = "Missing or unknown API key", body = ErrorBody),
        (status = 404, description = "Unknown customer, or no score file configured", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub async fn customer_score(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<ScoreRecord>, ApiError> {
    if !state.has_scores() {
        return Err(ApiError::not_found(
            "no nightly score file is configured on this server",
        ));
    }
    let r = state.nightly_score(&id).ok_or_else(|| {
        ApiError::not_found("no nightly score for this customer").with_field("id")
    })?;
    Ok(Json(r))
}

/// The customer's nightly probabilities and tiers from the score history: the nights of
/// the last `days` days (default 90, 1 to 3650) up to the newest night recorded, oldest
/// first. 404 when no history is configured or the customer has no night in the window;
/// 422 when `days` is not an integer from 1 to 3650.
#[utoipa::path(
    get, path = "/v1/customers/{id}/history", tag = "scoring",
    params(
        ("id" = String, Path, description = "The customer id"),
        ("days" = Option<u32>, Query, minimum = 1, maximum = 3650,
            description = "The window in days up to the newest night recorded (default 90)"),
    ),
    responses(
        (status = 200, description = "The customer's nights in the window, oldest first", body = crate::history::CustomerHistory),
        (status = 401, description = "Missing or unknown API key", body = ErrorBody),
        (status = 404, description = "Unknown customer (no night in the window), or no score history configured", body = ErrorBody),
        (status = 422, description = "`days` is not an integer from 1 to 3650", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub async fn customer_history(
    State(state): State<AppState>,
    Path(id): Path<String>,
    axum::extract::RawQuery(query): axum::extract::RawQuery,
) -> Result<Json<crate::history::CustomerHistory>, ApiError> {
    let days = history_days(query.as_deref().unwrap_or_default())?;
    let Some(history) = state.history().cloned() else {
        return Err(ApiError::not_found(
            "no score history is configured on this server",
        ));
    };
    let who = id.clone();
    let series = tokio::task::spawn_blocking(move || history.series(&who, days))
        .await
        .map_err(|_| ApiError::internal())?
        .map_err(|e| {
            tracing::error!(error = %e.chain(), "could not read the score history");
            ApiError::internal()
        })?;
    if series.points.is_empty() {
        return Err(ApiError::not_found(format!(
            "no score for this customer in the last {days} days of the history"
        ))
        .with_field("id"));
    }
    Ok(Json(series))
}

/// `days` of a history query string: absent is the default; anything but one integer
/// from 1 to 3650 is a 422 naming `days`.
fn history_days(query: &str) -> Result<u32, ApiError> {
    use crate::history::{DEFAULT_DAYS, MAX_DAYS};
    let mut days = None;
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        if k != "days" {
            continue;
        }
        if days.is_some() {
            return Err(ApiError::invalid("days", "days is given more than once"));
        }
        let n = v
            .parse::<u32>()
            .ok()
            .filter(|n| (1..=MAX_DAYS).contains(n))
            .ok_or_else(|| {
                let shown: String = v.chars().take(40).collect();
                ApiError::invalid(
                    "days",
                    format!("days must be an integer from 1 to {MAX_DAYS}, got `{shown}`"),
                )
            })?;
        days = Some(n);
    }
    Ok(days.unwrap_or(DEFAULT_DAYS))
}

/// A manifest text field, `None` when an older manifest did not record it.
fn recorded(s: &str) -> Option<String> {
    (!s.is_empty()).then(|| s.to_string())
}

fn summary(s: &Scorer) -> ModelSummary {
    ModelSummary {
        name: s.name.clone(),
        version: s.version.clone(),
        algorithm: recorded(&s.manifest.algorithm),
        created_at: recorded(&s.manifest.created_at),
        horizon_days: (s.manifest.horizon_days > 0).then_some(u64::from(s.manifest.horizon_days)),
    }
}

/// A part of the manifest as JSON (keys sorted, as written on disk).
fn as_json(part: &impl Serialize) -> Value {
    serde_json::to_value(part).unwrap_or(Value::Null)
}

/// The models served.
#[utoipa::path(
    get, path = "/v1/models", tag = "models",
    responses(
        (status = 200, description = "The served models (empty until one loads)", body = ModelList),
        (status = 401, description = "Missing or unknown API key", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub async fn list_models(State(state): State<AppState>) -> Json<ModelList> {
    Json(ModelList {
        models: state.scorer().map(|s| summary(&s)).into_iter().collect(),
    })
}

/// A served model: version, metrics, feature schema and thresholds from its manifest.
#[utoipa::path(
    get, path = "/v1/models/{name}", tag = "models",
    params(("name" = String, Path, description = "The model's registry name")),
    responses(
        (status = 200, description = "The model", body = ModelDetail),
        (status = 401, description = "Missing or unknown API key", body = ErrorBody),
        (status = 404, description = "Not a model this server serves", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub async fn model_detail(
    State(state): State<AppState>,
    Path(name): Path<String>,
) -> Result<Json<ModelDetail>, ApiError> {
    let scorer = state
        .scorer()
        .filter(|s| s.name == name)
        .ok_or_else(|| ApiError::not_found("this server serves no model of that name"))?;
    let st = state.clone();
    let versions = tokio::task::spawn_blocking(move || st.registry.versions(&st.name))
        .await
        .ok()
        .and_then(|r| {
            r.map_err(
                |e| tracing::warn!(error = %e.chain(), "could not list the registry's versions"),
            )
            .ok()
        })
        .unwrap_or_default()
        .into_iter()
        .map(|v| VersionSummary {
            version: format!("v{}", v.version),
            created_at: recorded(&v.created_at),
            aliases: v.aliases,
        })
        .collect();
    let m = &scorer.manifest;
    let s = summary(&scorer);
    Ok(Json(ModelDetail {
        name: s.name,
        version: s.version,
        algorithm: s.algorithm,
        created_at: s.created_at,
        horizon_days: s.horizon_days,
        churn_definition: recorded(&m.churn_definition_text),
        metrics: as_json(&m.metrics),
        thresholds: as_json(&m.thresholds),
        features: match &m.features.columns {
            Value::Null => Value::Array(Vec::new()),
            columns => columns.clone(),
        },
        versions,
    }))
}

/// Liveness: the process answers.
#[utoipa::path(
    get, path = "/healthz", tag = "health",
    responses((status = 200, description = "Alive", body = Health))
)]
pub async fn healthz(State(state): State<AppState>) -> Json<Health> {
    Json(Health {
        status: "ok".into(),
        model: state.scorer().map(|s| s.model_ref()),
    })
}

/// Readiness: a model is loaded.
#[utoipa::path(
    get, path = "/readyz", tag = "health",
    responses(
        (status = 200, description = "A model is loaded", body = Health),
        (status = 503, description = "No model loaded yet", body = Health),
    )
)]
pub async fn readyz(State(state): State<AppState>) -> (StatusCode, Json<Health>) {
    match state.scorer() {
        Some(s) => (
            StatusCode::OK,
            Json(Health {
                status: "ready".into(),
                model: Some(s.model_ref()),
            }),
        ),
        None => (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(Health {
                status: "not_ready".into(),
                model: None,
            }),
        ),
    }
}

/// Prometheus metrics (text format 0.0.4).
#[utoipa::path(
    get, path = "/metrics", tag = "health",
    responses((status = 200, description = "Prometheus text exposition", content_type = "text/plain", body = String))
)]
pub async fn metrics(State(state): State<AppState>) -> Response {
    let scorer = state.scorer();
    let served = scorer
        .as_ref()
        .map(|s| (s.name.as_str(), s.version.as_str()));
    // A few indexed reads of a small table; a scrape never fails on them.
    let nightly = match state.outbox.nightly_health() {
        Ok(n) => Some(n),
        Err(e) => {
            tracing::warn!(error = %e.chain(), "metrics: reading the nightly runs failed");
            None
        }
    };
    let summary = state.summary();
    let mut text = state.metrics.render(
        served,
        state.outbox.counters().snapshot(),
        nightly.as_ref(),
        summary.as_deref(),
    );
    // Two counts over an index, on a reader; a scrape never fails on them.
    let depth = match state.outbox.depth() {
        Ok(d) => Some(d),
        Err(e) => {
            tracing::warn!(error = %e.chain(), "metrics: reading the outbox depth failed");
            None
        }
    };
    text.push_str(&super::metrics::render_outbox(
        depth,
        &state.outbox.counters().timings,
    ));
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        text,
    )
        .into_response()
}

/// This document.
#[utoipa::path(
    get, path = "/openapi.json", tag = "health",
    responses((status = 200, description = "The OpenAPI 3.1 document of this service", content_type = "application/json"))
)]
pub async fn openapi(State(state): State<AppState>) -> Response {
    let scorer = state.scorer();
    Json(super::openapi::document_for(
        scorer.as_deref(),
        state.openapi_limits(),
    ))
    .into_response()
}

/// Re-reads the `production` alias now (and the score file); loads the new version if it
/// moved. A version that cannot be loaded answers 409 and the previous one keeps serving.
#[utoipa::path(
    post, path = "/v1/admin/reload", tag = "admin",
    responses(
        (status = 200, description = "The model served after the reload", body = ReloadResponse),
        (status = 401, description = "Missing or unknown key", body = ErrorBody),
        (status = 403, description = "Not the admin key, or admin routes disabled", body = ErrorBody),
        (status = 409, description = "The production version could not be loaded; the previous one keeps serving", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub async fn admin_reload(State(state): State<AppState>) -> Result<Json<ReloadResponse>, ApiError> {
    let st = state.clone();
    let outcome = tokio::task::spawn_blocking(move || {
        let outcome = st.reload_model(true);
        st.reload_scores(true);
        outcome
    })
    .await
    .map_err(|e| {
        tracing::error!(error = %e, "the reload task failed");
        ApiError::internal()
    })?;
    let conflict = |m: String| ApiError::new(StatusCode::CONFLICT, "reload_failed", m);
    let (changed, previous) = match outcome {
        ReloadOutcome::Unchanged { .. } => (false, None),
        ReloadOutcome::Loaded { previous, .. } => (true, previous),
        ReloadOutcome::Failed { version, serving } => {
            let version = version.map(|v| format!(" {v}")).unwrap_or_default();
            let serving = match serving {
                Some(v) => format!("{v} keeps serving"),
                None => "no model is served".into(),
            };
            return Err(conflict(format!(
                "the production version{version} of `{}` could not be loaded \
                 (the server log says why); {serving}",
                state.name
            )));
        }
        ReloadOutcome::NoModel => {
            return Err(conflict(format!(
                "the registry has no production version of `{}` yet",
                state.name
            )))
        }
    };
    let scorer = state.scorer().ok_or_else(ApiError::not_ready)?;
    Ok(Json(ReloadResponse {
        model: scorer.model_ref(),
        changed,
        previous,
    }))
}

/// Answers unknown routes with a JSON 404 in the route family's form.
pub async fn fallback(uri: axum::http::Uri) -> Response {
    let e = ApiError::not_found(format!("no route {}", uri.path()));
    if super::error::is_v2(uri.path()) {
        e.into_v2().into_response()
    } else {
        e.into_response()
    }
}
