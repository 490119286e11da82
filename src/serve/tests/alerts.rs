//! Alerts raised by the service: through the outbox to the JSONL log and a signed
//! webhook, once per customer.

use super::*;

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

/// Issue 15 (c): a score dated `9999-01-01` became the customer's latest state, so every
/// real score after it was stale and the customer never alerted again. Through every
/// scoring route (the fast path, the careful path, a batch, `/v2`), the future score is
/// refused without touching the state, and the next real score still alerts.
#[tokio::test]
async fn a_future_as_of_is_refused_and_leaves_the_customers_alerts_alive() {
    let env = Env::new();
    let (app, state) = router(&env.config_alerting_on_every_first_score());
    let future = "9999-01-01";
    let v2 = |id: &str| {
        let mut req = infer_request(1, 1.0);
        req["parameters"]["as_of"] = json!(future);
        req["inputs"]
            .as_array_mut()
            .unwrap()
            .push(json!({"name": "customer_id", "datatype": "BYTES", "shape": [1], "data": [id]}));
        req
    };
    let attempts = [
        (
            "fast",
            "/v1/score",
            json!({"customer_id": "fast", "as_of": future, "features": features(1.0)}),
        ),
        (
            "activity",
            "/v1/score",
            json!({"customer_id": "activity", "as_of": future, "activity": activity()}),
        ),
        (
            "batch",
            "/v1/score/batch",
            json!({"instances": [{"customer_id": "batch", "as_of": future, "features": features(1.0)}]}),
        ),
        ("v2", "/v2/models/churn/infer", v2("v2")),
    ];
    for (id, path, body) in &attempts {
        let refused = post_json(&app, path, body).await;
        let state_after_refusal = state.outbox.state(id).unwrap();
        let real = post_json(
            &app,
            "/v1/score",
            &json!({"customer_id": id, "features": features(1.0)}),
        )
        .await;
        assert!(
            refused.status.is_client_error() && state_after_refusal.is_none(),
            "{id}: the future score was answered {} and recorded {state_after_refusal:?}: {}",
            refused.status,
            refused.body
        );
        assert_eq!(
            (real.status, &real.body["alert"]),
            (StatusCode::OK, &json!(true)),
            "{id}: the next real score must still alert: {}",
            real.body
        );
    }
    assert_eq!(
        state.outbox.counters().snapshot().raised,
        attempts.len() as u64
    );
}
