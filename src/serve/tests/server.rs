//! The server as a whole: shared state, request ids, the body limit over the wire.

use super::*;

#[test]
fn the_shared_state_is_send_and_sync() {
    fn check<T: Send + Sync>() {}
    check::<AppState>();
    check::<Scorer>();
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
        let id = crate::serve::FastUuid.make_request_id(&req).unwrap();
        let text = id.header_value().to_str().unwrap().to_string();
        let parsed = uuid::Uuid::parse_str(&text).unwrap();
        assert_eq!(parsed.get_version_num(), 4, "{text}");
        assert!(seen.insert(text), "a repeated request id");
    }
}
