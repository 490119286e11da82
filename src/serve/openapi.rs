//! The OpenAPI document, derived from the handlers' `#[utoipa::path]` annotations and the
//! bodies' `ToSchema` derives: it cannot drift from the code.

use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};

use super::{routes, v2};

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

/// The OpenAPI document of the service.
pub fn document() -> utoipa::openapi::OpenApi {
    ApiDoc::openapi()
}
