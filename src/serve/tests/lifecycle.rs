//! Model lifecycle on a running server: promotions, refused versions, reloads of the
//! model and the score file, shutdown.

use super::*;

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

/// Cuts v2's model file in half, promotes v2 and waits for the failed reload to be
/// counted. Returns the model file's path and its whole bytes.
async fn promote_a_half_written_v2(env: &Env, server: &Server) -> (std::path::PathBuf, Vec<u8>) {
    let model = env.models().join("churn/v2/model.bin");
    let good = std::fs::read(&model).unwrap();
    std::fs::write(&model, &good[..good.len() / 2]).unwrap();
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
    (model, good)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_version_repaired_in_place_is_loaded_by_the_next_polls() {
    let env = Env::new();
    let server = Server::start(env.config()).await;
    let (model, good) = promote_a_half_written_v2(&env, &server).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(server.served_version().await, "v1");
    // The operator restores the file: no promotion, no admin call, the polls pick it up.
    std::fs::write(&model, good).unwrap();
    assert!(
        eventually(10, || async { server.served_version().await == "v2" }).await,
        "the repaired version is served"
    );
    assert_eq!(
        server
            .metric("churnguard_model_reload_failures_total")
            .await,
        1.0
    );
    server.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_corrupt_new_version_is_refused_and_the_old_one_keeps_serving() {
    let env = Env::new();
    let server = Server::start(env.config()).await;
    promote_a_half_written_v2(&env, &server).await;
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

/// Overwrites the Parquet score file `path` with a copy of itself with one footer byte
/// flipped: the first whose flip makes polars' own reader panic.
fn corrupt_so_that_polars_panics(path: &Path) {
    use polars::prelude::{ParquetReader, SerReader};
    let good = std::fs::read(path).unwrap();
    let n = good.len();
    let len = u32::from_le_bytes(good[n - 8..n - 4].try_into().unwrap()) as usize;
    let probe = path.with_extension("probe");
    for at in n - 8 - len..n - 8 {
        let mut bad = good.clone();
        bad[at] ^= 0xff;
        std::fs::write(&probe, &bad).unwrap();
        let file = std::fs::File::open(&probe).unwrap();
        if std::panic::catch_unwind(|| ParquetReader::new(file).finish()).is_err() {
            std::fs::rename(&probe, path).unwrap();
            return;
        }
    }
    panic!(
        "no flipped footer byte of {} makes polars panic",
        path.display()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_parquet_score_file_that_panics_polars_is_a_counted_reload_failure() {
    let env = Env::new();
    let csv = env.path("night.csv");
    write_scores(&csv, &[("c-1", 0.9, "high"), ("c-2", 0.6, "medium")]);
    let scores = env.path("scores.parquet");
    let mut df = crate::data::read_table_file(&csv).unwrap();
    crate::data::write::write_frame(&mut df, &scores).unwrap();
    let cfg = ServeConfig {
        scores: Some(scores.clone()),
        ..env.config()
    };
    let server = Server::start(cfg).await;
    let lookup = |id: &str| {
        let req = server
            .client
            .get(server.url(&format!("/v1/customers/{id}/score")))
            .bearer_auth(KEY);
        async move { req.send().await.unwrap().status().as_u16() }
    };
    assert_eq!(lookup("c-2").await, 200);
    tokio::time::sleep(Duration::from_millis(20)).await;
    corrupt_so_that_polars_panics(&scores);
    // Before: the reload's blocking task panicked, nothing logged or counted.
    assert!(
        eventually(10, || async {
            server
                .metric("churnguard_scores_reload_failures_total")
                .await
                >= 1.0
        })
        .await,
        "the corrupt score file is a counted reload failure"
    );
    assert_eq!(lookup("c-2").await, 200, "the previous scores keep serving");
    assert_eq!(
        server
            .metric("churnguard_scores_reload_failures_total")
            .await,
        1.0,
        "one failure per change of the file"
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
