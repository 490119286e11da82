//! The OpenAPI document, derived from the handlers' `#[utoipa::path]` annotations and the
//! bodies' `ToSchema` derives: it cannot drift from the code.
//!
//! `GET /openapi.json` serves [`document_for`] the model served at that moment: the
//! `features` of `POST /v1/score` (and of each batch instance) are that model's features
//! ([`super::schema::model_features`]), like an MLflow signature, so the document changes
//! when another version is promoted and hot-reloaded. The body and instance limits of the
//! server are written in too.

use serde_json::{json, Value};
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};

use super::{routes, schema, v2};
use crate::scoring::Scorer;

/// Declares the bearer-key security scheme the routes refer to.
struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some(
                        "An API key (CHURNGUARD_API_KEYS); admin routes need CHURNGUARD_ADMIN_KEY",
                    ))
                    .build(),
            ),
        );
    }
}

#[derive(OpenApi)]
#[openapi(
    info(
        title = "churnguard",
        description = "Churn scoring: calibrated churn probability, health score, risk tier and reasons per customer; nightly scores; model metadata; the Open Inference Protocol (KServe v2). Errors are `{\"error\": {\"code\", \"message\", \"field\"}}` (the /v2 routes: `{\"error\": \"...\"}`); a 4xx is the caller's, a 5xx a bug."
    ),
    paths(
        routes::score,
        routes::score_batch,
        routes::customer_score,
        routes::customer_history,
        routes::list_models,
        routes::model_detail,
        routes::healthz,
        routes::readyz,
        routes::metrics,
        routes::openapi,
        routes::admin_reload,
        v2::server_metadata,
        v2::live,
        v2::ready,
        v2::model_metadata,
        v2::model_metadata_version,
        v2::model_ready,
        v2::model_ready_version,
        v2::infer,
        v2::infer_version,
    ),
    components(schemas(super::error::ErrorBody, super::error::V2ErrorBody)),
    modifiers(&BearerAuth),
    tags(
        (name = "scoring", description = "Score customers online, read nightly scores"),
        (name = "models", description = "The served model: version, metrics, feature schema, thresholds"),
        (name = "health", description = "Liveness, readiness, metrics, this document"),
        (name = "admin", description = "Operations (admin key)"),
        (name = "v2", description = "Open Inference Protocol (KServe v2 REST)"),
    )
)]
struct ApiDoc;

/// The OpenAPI document of the service, without a model: `features` is a map of numbers.
pub fn document() -> utoipa::openapi::OpenApi {
    ApiDoc::openapi()
}

/// The limits of a server that its document states.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Largest request body of every route but the batch ones, in bytes.
    pub max_body_bytes: usize,
    /// Largest request body of the batch routes (`/v1/score/batch`, `/v2/.../infer`).
    pub max_batch_body_bytes: usize,
    /// Most instances per batch request (rows per `/v2` inference).
    pub max_batch: usize,
}

/// The document a server with `limits` serving `scorer` (none loaded: `None`) answers:
/// [`document`] with the model's request schema and the limits written in.
pub fn document_for(scorer: Option<&Scorer>, limits: Limits) -> Value {
    let mut doc = serde_json::to_value(document()).unwrap_or(Value::Null);
    let schemas = &mut doc["components"]["schemas"];
    schemas["ScoreRequest"]["properties"]["customer_id"]["pattern"] = json!(routes::NON_BLANK);
    if let Some(scorer) = scorer {
        schemas["ScoreRequest"]["properties"]["features"] = schema::model_features(scorer);
        schemas["ScoreRequest"]["example"] = json!({
            "customer_id": "c42",
            "features": schema::model_example(scorer),
        });
    }
    // Exactly one of `features` and `activity` is an object (the other absent or null).
    // Inside `allOf`, which generators merge into the model, where a bare `oneOf` beside
    // `properties` makes openapi-python-client emit a union of half-models instead.
    schemas["ScoreRequest"]["allOf"] = json!([{"oneOf": [
        {"required": ["features"], "properties": {"features": {"type": "object"}}},
        {"required": ["activity"], "properties": {"activity": {"type": "object"}}},
    ]}]);
    schemas["BatchRequest"]["properties"]["instances"]["maxItems"] = json!(limits.max_batch);
    let served = match scorer {
        Some(s) => format!(
            " This document is that of model `{}` {} (the `production` version served): the \
             `features` of a score request are its features.",
            s.name, s.version
        ),
        None => " No model is loaded yet: `features` is described generically.".to_string(),
    };
    if let Some(Value::String(d)) = doc.pointer_mut("/info/description") {
        d.push_str(&format!(
            " Limits: a request body of at most {} bytes ({} bytes for `/v1/score/batch` and \
             the `/v2` inference routes, answered 413 `payload_too_large` beyond); at most {} \
             instances per batch (rows per inference), answered 422 `too_many_instances` \
             (`/v2`: 400) beyond.{served}",
            limits.max_body_bytes, limits.max_batch_body_bytes, limits.max_batch
        ));
    }
    doc
}
