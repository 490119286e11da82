//! Several hosts on one PostgreSQL outbox, as a deployment runs them: two `churnguard
//! serve` replicas and the nightly `churnguard score` scoring the same customers at the
//! same time against one database, a real webhook receiver on loopback, and one replica
//! killed with `kill -9` while its deliveries are in flight. Run by `tests/postgres.sh`,
//! which starts the server and sets `CHURNGUARD_TEST_POSTGRES_URL`.

use std::path::Path;
use std::time::Duration;

use churnguard::alerts::Outbox;
use churnguard::churn::{population, ChurnDefinition};
use churnguard::scoring::Tier;

use crate::alert_delivery::{
    churnguard, closed_port, runtime, start_slow_receiver, wait_for, Service,
};
use crate::common::{load_dir, sample_parquet, scratch};
use crate::online_vs_batch::payload;
use crate::pipeline::trained;

/// A fresh schema on the test server, and the URL that reaches it (`search_path`).
fn fresh_schema() -> (postgres::Client, String) {
    let url = std::env::var("CHURNGUARD_TEST_POSTGRES_URL").expect(
        "CHURNGUARD_TEST_POSTGRES_URL is not set: run the PostgreSQL tests with tests/postgres.sh",
    );
    let schema = format!("cg_it_{}", uuid::Uuid::new_v4().simple());
    let mut admin = postgres::Client::connect(&url, postgres::NoTls).expect("connect");
    admin
        .batch_execute(&format!("CREATE SCHEMA {schema}"))
        .unwrap();
    let sep = if url.contains('?') { '&' } else { '?' };
    admin
        .batch_execute(&format!("SET search_path TO {schema}"))
        .unwrap();
    (admin, format!("{url}{sep}options=-csearch_path%3D{schema}"))
}

/// Scores customers `ids` (indices into the sample) through `url`'s `/v1/score` from
/// their raw activity as of `as_of`; a refused connection (the replica was killed) ends
/// it. Returns how many were answered.
fn post_scores(rt: &tokio::runtime::Runtime, url: &str, ids: &[usize], as_of: &str) -> usize {
    let base = load_dir(sample_parquet());
    let client = reqwest::Client::new();
    rt.block_on(async {
        let mut answered = 0;
        for &c in ids {
            let body = serde_json::json!({
                "customer_id": base.customers.ids[c],
                "as_of": as_of,
                "activity": payload(&base, c),
            });
            let sent = client
                .post(format!("{url}/v1/score"))
                .bearer_auth("k")
                .json(&body)
                .send()
                .await;
            match sent {
                Ok(r) => {
                    assert!(r.status().is_success(), "{}", r.text().await.unwrap());
                    answered += 1;
                }
                Err(_) => break,
            }
        }
        answered
    })
}

#[test]
#[ignore = "needs PostgreSQL: tests/postgres.sh"]
fn postgres_two_replicas_and_a_batch_raise_each_alert_once_and_lose_none_to_a_kill_9() {
    let (mut db, url) = fresh_schema();
    let target = Path::new(&url);
    let rt = runtime();
    let addr = closed_port();
    // Each answer takes 100 ms: a replica always has claimed deliveries in flight.
    let receiver = start_slow_receiver(&rt, addr, Duration::from_millis(100));
    let webhook = format!("http://{addr}/hook");
    let lease = ["--alert-lease-seconds", "2"];
    // Both replicas migrate the empty schema at once (the advisory lock serialises them).
    let (a, b) = std::thread::scope(|s| {
        let a = s.spawn(|| Service::start(target, &webhook, &lease));
        let b = s.spawn(|| Service::start(target, &webhook, &lease));
        (a.join().unwrap(), b.join().unwrap())
    });
    let (url_a, url_b) = (a.url.clone(), b.url.clone());

    let as_of = "2024-11-15";
    let out = scratch("pg-replicas").join("scores.parquet");
    let base = load_dir(sample_parquet());
    // The night's population: the customers the batch scores.
    let t = churnguard::time::parse_ts(as_of).unwrap();
    let everyone: Vec<usize> = population(&base, &ChurnDefinition::Explicit, t)
        .into_iter()
        .map(|c| c as usize)
        .collect();
    // The night, both replicas scoring every customer of it, and replica A killed with
    // kill -9 once the receiver has its first deliveries (A holds leased claims then).
    let (batch, answered_b) = std::thread::scope(|s| {
        let batch = s.spawn(|| {
            churnguard(&[
                "score",
                "--data",
                sample_parquet().to_str().unwrap(),
                "--models",
                trained().to_str().unwrap(),
                "--as-of",
                as_of,
                "--out",
                out.to_str().unwrap(),
                "--outbox",
                &url,
            ])
        });
        s.spawn(|| post_scores(&rt, &url_a, &everyone, as_of));
        let on_b = s.spawn(|| post_scores(&rt, &url_b, &everyone, as_of));
        wait_for("first deliveries", Duration::from_secs(300), || {
            receiver.delivered_keys().len() >= 3
        });
        a.kill();
        (batch.join().unwrap(), on_b.join().unwrap())
    });
    assert!(
        batch.status.success(),
        "score failed: {}",
        String::from_utf8_lossy(&batch.stderr)
    );
    assert_eq!(answered_b, everyone.len(), "replica B answered every score");

    // The truth: the night's high-tier customers, each first seen at high.
    let scores = churnguard::scores::read(&out).unwrap();
    let mut high: Vec<&str> = scores
        .values()
        .filter(|r| r.risk_tier == Tier::High)
        .map(|r| r.customer_id.as_str())
        .collect();
    high.sort_unstable();
    assert!(high.len() > 20, "{} high", high.len());

    let outbox = Outbox::open(target).unwrap();
    wait_for("every alert delivered", Duration::from_secs(300), || {
        outbox.counts().unwrap().pending == 0
    });
    let counts = outbox.counts().unwrap();
    assert_eq!(
        (counts.delivered, counts.dead),
        (high.len() as u64, 0),
        "one alert per high customer, all delivered"
    );
    // None raised twice: one alert row per customer, the customers the night put high.
    let mut alerted: Vec<String> = db
        .query("SELECT customer_id FROM alerts ORDER BY customer_id", &[])
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    alerted.dedup();
    assert_eq!(alerted, high);
    let mut keys: Vec<String> = db
        .query("SELECT idempotency_key FROM alerts", &[])
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    keys.sort();
    // None lost: every key reached the receiver (at least once: the killed replica's
    // sends that the receiver answered but A never recorded went again from B).
    let received = receiver.delivered_keys();
    let mut distinct = received.clone();
    distinct.dedup();
    assert_eq!(distinct, keys);
    eprintln!(
        "{} alerts, {} deliveries received ({} sent again after the kill)",
        keys.len(),
        received.len(),
        received.len() - keys.len()
    );
    // Each customer's tier recorded once, and the night once.
    let states: i64 = db
        .query_one("SELECT count(*) FROM customer_state", &[])
        .unwrap()
        .get(0);
    assert_eq!(
        (states as usize, scores.len()),
        (everyone.len(), everyone.len())
    );
    assert_eq!(outbox.nights().unwrap().len(), 1);
    drop(b);
}
