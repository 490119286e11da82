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
