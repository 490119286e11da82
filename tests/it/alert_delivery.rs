//! Alert delivery through a webhook outage, as an operator meets it: real `churnguard
//! serve` processes delivering from a real outbox file to a real axum receiver on a
//! loopback port, and `churnguard alerts redrive`.
//!
//! Nothing here waits a fixed time to assert: each test waits (bounded) for a state of
//! the outbox or the receiver, then checks exact counts.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicU16, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::IntoResponse;
use axum::routing::post;
use axum::Router;
use churnguard::alerts::{Alert, DeliveryStatus, Outbox};
use churnguard::scoring::{ModelRef, Tier};

use crate::common::scratch;
use crate::pipeline::trained;

const SECRET: &str = "alert-delivery-secret";

/// What the receiver saw: each request's idempotency key, when, and what it answered.
#[derive(Clone, Debug)]
struct Seen {
    key: String,
    at: Instant,
    status: u16,
}

/// A webhook receiver: answers `status` (and `Retry-After: retry_after` with a 503 when
/// set) until told otherwise.
pub(crate) struct Receiver {
    seen: Mutex<Vec<Seen>>,
    status: AtomicU16,
    /// Answer this many requests with `status`, then 200 (`u16::MAX`: always `status`).
    failing: AtomicU16,
    retry_after: Option<&'static str>,
    /// How long each answer takes (a slow receiver keeps deliveries in flight).
    delay: Duration,
}

impl Receiver {
    fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }

    /// Keys answered 200, sorted.
    pub(crate) fn delivered_keys(&self) -> Vec<String> {
        let mut keys: Vec<String> = self
            .seen()
            .into_iter()
            .filter(|s| s.status == 200)
            .map(|s| s.key)
            .collect();
        keys.sort();
        keys
    }
}

async fn hook(State(r): State<Arc<Receiver>>, headers: HeaderMap) -> axum::response::Response {
    let key = headers
        .get("idempotency-key")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string();
    if !r.delay.is_zero() {
        tokio::time::sleep(r.delay).await;
    }
    let failing = r.failing.load(Ordering::SeqCst);
    let status = if failing > 0 {
        if failing != u16::MAX {
            r.failing.store(failing - 1, Ordering::SeqCst);
        }
        r.status.load(Ordering::SeqCst)
    } else {
        200
    };
    r.seen.lock().unwrap().push(Seen {
        key,
        at: Instant::now(),
        status,
    });
    let code = StatusCode::from_u16(status).unwrap();
    match r.retry_after {
        Some(v) if status == 503 => (code, [("retry-after", v)]).into_response(),
        _ => code.into_response(),
    }
}

/// A runtime for the receivers (and the scrapes) of one test.
pub(crate) fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap()
}

/// Starts a receiver on `addr`, answering `failing` requests with `status` first.
fn start_receiver(
    rt: &tokio::runtime::Runtime,
    addr: SocketAddr,
    status: u16,
    failing: u16,
    retry_after: Option<&'static str>,
) -> Arc<Receiver> {
    serve_receiver(
        rt,
        addr,
        Receiver {
            seen: Mutex::default(),
            status: AtomicU16::new(status),
            failing: AtomicU16::new(failing),
            retry_after,
            delay: Duration::ZERO,
        },
    )
}

/// A receiver answering 200 to everything, each answer `delay` late.
pub(crate) fn start_slow_receiver(
    rt: &tokio::runtime::Runtime,
    addr: SocketAddr,
    delay: Duration,
) -> Arc<Receiver> {
    serve_receiver(
        rt,
        addr,
        Receiver {
            seen: Mutex::default(),
            status: AtomicU16::new(200),
            failing: AtomicU16::new(0),
            retry_after: None,
            delay,
        },
    )
}

fn serve_receiver(rt: &tokio::runtime::Runtime, addr: SocketAddr, r: Receiver) -> Arc<Receiver> {
    let state = Arc::new(r);
    let app = Router::new()
        .route("/hook", post(hook))
        .with_state(Arc::clone(&state));
    let listener = rt
        .block_on(tokio::net::TcpListener::bind(addr))
        .expect("bind the receiver");
    rt.spawn(async move { axum::serve(listener, app).await.unwrap() });
    state
}

/// A loopback port nobody listens on (yet): connections to it are refused.
pub(crate) fn closed_port() -> SocketAddr {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap()
}

/// Stores one `high` alert per customer in a fresh outbox at `path`; their keys, sorted.
fn record_alerts(path: &Path, n: usize) -> Vec<String> {
    let outbox = Outbox::open(path).unwrap();
    let as_of = churnguard::time::parse_ts("2024-11-15").unwrap();
    let model = ModelRef {
        name: "churn".into(),
        version: "v1".into(),
    };
    let mut keys: Vec<String> = (0..n)
        .map(|i| {
            let alert = Alert::new(
                model.clone(),
                format!("cust-{i:04}"),
                0.9,
                Tier::High,
                None,
                as_of,
                Alert::SOURCE_BATCH,
            );
            assert!(outbox.insert(&alert).unwrap());
            alert.idempotency_key
        })
        .collect();
    keys.sort();
    keys
}

/// `churnguard serve` on a free loopback port, delivering `outbox` to `webhook`.
pub(crate) struct Service {
    child: Child,
    pub(crate) url: String,
}

impl Service {
    /// Scoring routes take the key `k`.
    pub(crate) fn start(outbox: &Path, webhook: &str, extra: &[&str]) -> Service {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_churnguard"));
        clean_env(&mut cmd);
        cmd.args([
            "serve",
            "--bind",
            "127.0.0.1:0",
            "--models",
            trained().to_str().unwrap(),
            "--outbox",
            outbox.to_str().unwrap(),
            "--alert-webhook",
            webhook,
        ])
        .args(extra)
        .env("CHURNGUARD_WEBHOOK_SECRET", SECRET)
        .env("CHURNGUARD_API_KEYS", "k")
        .env("RUST_LOG", "error")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null());
        let mut child = cmd.spawn().expect("start churnguard serve");
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            use std::io::BufRead;
            for line in std::io::BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if let Some((_, url)) = line.split_once(" on http://") {
                    let _ = tx.send(format!("http://{url}"));
                }
            }
        });
        let url = rx
            .recv_timeout(Duration::from_secs(120))
            .expect("churnguard serve prints its address");
        Service { child, url }
    }

    /// A restart's first half: SIGTERM (deliveries in flight are finished and recorded),
    /// then waits for the process to end.
    fn stop(mut self) {
        let pid = self.child.id().to_string();
        let sent = Command::new("kill").args(["-TERM", &pid]).status().unwrap();
        assert!(sent.success());
        let status = self.child.wait().unwrap();
        assert!(status.success(), "serve exited with {status}");
    }

    /// `kill -9`: the process gets no chance to drain.
    pub(crate) fn kill(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Service {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn clean_env(cmd: &mut Command) {
    for (k, _) in std::env::vars_os() {
        if k.to_string_lossy().starts_with("CHURNGUARD_") || k == "RUST_LOG" {
            cmd.env_remove(k);
        }
    }
}

pub(crate) fn churnguard(args: &[&str]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_churnguard"));
    clean_env(&mut cmd);
    cmd.args(args).stdin(Stdio::null()).output().unwrap()
}

/// Waits (polling, at most `limit`) until `done` holds; panics with `what` otherwise.
pub(crate) fn wait_for(what: &str, limit: Duration, mut done: impl FnMut() -> bool) {
    let started = Instant::now();
    while !done() {
        assert!(started.elapsed() < limit, "not {what} after {limit:?}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Every key's delivery to the `webhook` sink (none yet: `None`).
fn deliveries(outbox: &Outbox, keys: &[String]) -> Vec<Option<churnguard::alerts::DeliveryRecord>> {
    keys.iter()
        .map(|k| outbox.deliveries(k).unwrap().into_iter().next())
        .collect()
}

fn scrape(rt: &tokio::runtime::Runtime, url: &str) -> String {
    rt.block_on(async {
        reqwest::get(format!("{url}/metrics"))
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    })
}

/// The value of the sample line `series` (name and labels exactly) in a scrape.
fn sample(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' '))
        .map(|v| v.trim().parse().unwrap())
}

fn dir(name: &str) -> PathBuf {
    let d = scratch(name);
    let _ = std::fs::remove_file(d.join("alerts.db"));
    d
}

/// Retries every 20 ms, backing off to at most 1 s: outages measured in seconds.
const FAST_RETRY: [&str; 4] = [
    "--alert-retry-initial-ms",
    "20",
    "--alert-retry-max-seconds",
    "1",
];

/// `n` alerts pending in a new outbox, and a webhook on a port nobody listens on (yet).
struct Pending {
    path: PathBuf,
    keys: Vec<String>,
    addr: SocketAddr,
    webhook: String,
    outbox: Outbox,
}

fn pending(name: &str, n: usize) -> Pending {
    let path = dir(name).join("alerts.db");
    let keys = record_alerts(&path, n);
    let addr = closed_port();
    Pending {
        webhook: format!("http://{addr}/hook"),
        outbox: Outbox::open(&path).unwrap(),
        path,
        keys,
        addr,
    }
}

/// The outage: the receiver refuses connections for longer than the old policy's
/// whole patience (8 attempts), the service is stopped and restarted in the middle, then
/// the receiver comes up: every alert is delivered exactly once, none dead-lettered, and
/// the give-up deadline kept its start across the restart.
#[test]
fn a_webhook_outage_longer_than_eight_attempts_loses_no_alert_even_across_a_restart() {
    const N: usize = 100;
    // More failed attempts each than the old policy allowed before dead-lettering.
    const ATTEMPTS: u32 = 10;
    let Pending {
        path,
        keys,
        addr,
        webhook,
        outbox,
    } = pending("delivery-outage", N);
    let fast = FAST_RETRY;
    let all_attempted = |outbox: &Outbox, n: u32| {
        let ds = deliveries(outbox, &keys);
        ds.iter()
            .any(|d| d.as_ref().is_some_and(|d| d.status == DeliveryStatus::Dead))
            || ds
                .iter()
                .all(|d| d.as_ref().is_some_and(|d| d.attempts >= n))
    };

    let first = Service::start(&path, &webhook, &fast);
    wait_for("4 attempts each", Duration::from_secs(120), || {
        all_attempted(&outbox, 4)
    });
    first.stop();
    let started: Vec<Option<i64>> = deliveries(&outbox, &keys)
        .into_iter()
        .map(|d| d.unwrap().first_attempt_ms)
        .collect();
    assert!(started.iter().all(Option::is_some));

    let second = Service::start(&path, &webhook, &fast);
    wait_for("10 attempts each", Duration::from_secs(120), || {
        all_attempted(&outbox, ATTEMPTS)
    });
    let during = deliveries(&outbox, &keys);
    let dead = during
        .iter()
        .filter(|d| d.as_ref().unwrap().status == DeliveryStatus::Dead)
        .count();
    assert_eq!(dead, 0, "dead-lettered during a {ATTEMPTS}-attempt outage");
    // The deadline runs from the first attempt before the restart.
    let kept: Vec<Option<i64>> = during
        .iter()
        .map(|d| d.as_ref().unwrap().first_attempt_ms)
        .collect();
    assert_eq!(kept, started);

    let rt = runtime();
    let receiver = start_receiver(&rt, addr, 200, 0, None);
    wait_for("all delivered", Duration::from_secs(120), || {
        let c = outbox.counts().unwrap();
        c.delivered + c.dead == N as u64
    });
    let c = outbox.counts().unwrap();
    assert_eq!((c.delivered, c.dead, c.pending), (N as u64, 0, 0));
    assert_eq!(receiver.delivered_keys(), keys, "exactly one 200 per key");
    assert_eq!(receiver.seen().len(), N, "nothing sent twice");

    let text = scrape(&rt, &second.url);
    assert_eq!(
        sample(&text, "churnguard_outbox_alerts{state=\"pending\"}"),
        Some(0.0)
    );
    assert_eq!(
        sample(&text, "churnguard_outbox_alerts{state=\"dead_lettered\"}"),
        Some(0.0)
    );
    assert_eq!(
        sample(
            &text,
            "churnguard_alert_delivery_seconds_count{sink=\"webhook\"}"
        ),
        Some(N as f64),
        "{text}"
    );
    let attempts = sample(
        &text,
        "churnguard_alert_delivery_attempt_seconds_count{sink=\"webhook\"}",
    )
    .unwrap();
    // This process's attempts: at least the successful one per alert, and failures.
    assert!(attempts > N as f64, "{attempts}");
    assert!(!text.contains("cust-0"), "no customer id in /metrics");
}

/// A 400 is a permanent answer: dead-lettered at its first attempt, not retried. After
/// the receiver is fixed, `alerts redrive` puts the alerts back and the next service
/// delivers them; unknown keys are refused with the key named, changing nothing.
#[test]
fn a_400_dead_letters_at_once_and_a_redrive_delivers_after_the_fix() {
    let d = dir("delivery-400");
    let path = d.join("alerts.db");
    let keys = record_alerts(&path, 3);
    let rt = runtime();
    let addr = closed_port();
    let receiver = start_receiver(&rt, addr, 400, u16::MAX, None);
    let outbox = Outbox::open(&path).unwrap();
    let webhook = format!("http://{addr}/hook");
    let service = Service::start(&path, &webhook, &["--alert-retry-initial-ms", "10"]);
    wait_for("dead-lettered", Duration::from_secs(60), || {
        outbox.counts().unwrap().dead == 3
    });
    for d in deliveries(&outbox, &keys) {
        let d = d.unwrap();
        assert_eq!((d.status, d.attempts), (DeliveryStatus::Dead, 1), "{d:?}");
        assert!(d.last_error.unwrap().contains("400"));
    }
    assert_eq!(receiver.seen().len(), 3, "one request per alert, no retry");
    let text = scrape(&rt, &service.url);
    assert_eq!(
        sample(&text, "churnguard_outbox_alerts{state=\"dead_lettered\"}"),
        Some(3.0)
    );
    service.kill();

    let p = path.to_str().unwrap();
    let unknown = churnguard(&[
        "alerts", "redrive", "--outbox", p, "--id", &keys[0], "--id", "nope",
    ]);
    assert_eq!(unknown.status.code(), Some(1));
    let err = String::from_utf8_lossy(&unknown.stderr);
    assert!(
        err.contains("no alert with idempotency key `nope`"),
        "{err}"
    );
    assert_eq!(outbox.counts().unwrap().dead, 3, "nothing redriven");
    let neither = churnguard(&["alerts", "redrive", "--outbox", p]);
    assert_eq!(neither.status.code(), Some(2), "--id or --all is required");

    let one = churnguard(&["alerts", "redrive", "--outbox", p, "--id", &keys[0]]);
    assert_eq!(one.status.code(), Some(0));
    assert!(String::from_utf8_lossy(&one.stdout).contains("redrove 1 "));
    let rest = churnguard(&["alerts", "redrive", "--outbox", p, "--all"]);
    assert_eq!(rest.status.code(), Some(0));
    assert!(String::from_utf8_lossy(&rest.stdout).contains("redrove 2 "));
    assert_eq!(outbox.counts().unwrap().pending, 3);

    receiver.failing.store(0, Ordering::SeqCst); // the receiver is fixed
    let _service = Service::start(&path, &webhook, &["--alert-retry-initial-ms", "10"]);
    wait_for("delivered", Duration::from_secs(60), || {
        outbox.counts().unwrap().delivered == 3
    });
    assert_eq!(receiver.delivered_keys(), keys);
    assert_eq!(receiver.seen().len(), 6, "one 400 and one 200 per alert");
}

/// A 503 with `Retry-After: 2` is retried no sooner than two seconds later, although
/// the backoff alone would retry within milliseconds.
#[test]
fn a_503_with_retry_after_is_retried_no_sooner_than_asked() {
    let d = dir("delivery-retry-after");
    let path = d.join("alerts.db");
    let keys = record_alerts(&path, 1);
    let rt = runtime();
    let addr = closed_port();
    let receiver = start_receiver(&rt, addr, 503, 1, Some("2"));
    let outbox = Outbox::open(&path).unwrap();
    let _service = Service::start(
        &path,
        &format!("http://{addr}/hook"),
        &["--alert-retry-initial-ms", "10"],
    );
    wait_for("delivered", Duration::from_secs(60), || {
        outbox.counts().unwrap().delivered == 1
    });
    let seen = receiver.seen();
    assert_eq!(
        seen.iter()
            .map(|s| (s.key.as_str(), s.status))
            .collect::<Vec<_>>(),
        [(keys[0].as_str(), 503), (keys[0].as_str(), 200)]
    );
    let gap = seen[1].at - seen[0].at;
    assert!(gap >= Duration::from_millis(1900), "retried after {gap:?}");
}

/// Past the give-up deadline, a delivery that keeps failing with retryable answers is
/// dead-lettered (after several attempts, the last one at the deadline).
#[test]
fn a_delivery_still_failing_past_its_deadline_is_dead_lettered() {
    let d = dir("delivery-deadline");
    let path = d.join("alerts.db");
    let keys = record_alerts(&path, 1);
    let rt = runtime();
    let addr = closed_port();
    let receiver = start_receiver(&rt, addr, 503, u16::MAX, None);
    let outbox = Outbox::open(&path).unwrap();
    let _service = Service::start(
        &path,
        &format!("http://{addr}/hook"),
        &[
            "--alert-retry-initial-ms",
            "20",
            "--alert-give-up-after-seconds",
            "1",
        ],
    );
    wait_for("dead-lettered", Duration::from_secs(60), || {
        outbox.counts().unwrap().dead == 1
    });
    let d = outbox.deliveries(&keys[0]).unwrap().remove(0);
    assert_eq!(d.status, DeliveryStatus::Dead);
    assert!(d.last_error.unwrap().contains("503"));
    let seen = receiver.seen();
    assert!(seen.len() >= 2, "retried before the deadline: {seen:?}");
    assert_eq!(d.attempts as usize, seen.len());
    // The last attempt came after the deadline (one second after the first).
    assert!(seen[seen.len() - 1].at - seen[0].at >= Duration::from_millis(990));
}

/// `kill -9` of `serve` while its alerts are pending (the receiver refusing connections,
/// every alert attempted and waiting for its retry): the process gets no chance to
/// drain or record anything more. A new service after the receiver is up delivers every
/// alert exactly once, with the same idempotency key, and dead-letters none.
#[test]
fn serve_killed_with_alerts_pending_delivers_each_once_after_a_restart() {
    const N: usize = 300;
    let Pending {
        path,
        keys,
        addr,
        webhook,
        outbox,
    } = pending("delivery-kill-pending", N);
    let fast = FAST_RETRY;
    let first = Service::start(&path, &webhook, &fast);
    wait_for("2 attempts each", Duration::from_secs(120), || {
        deliveries(&outbox, &keys)
            .iter()
            .all(|d| d.as_ref().is_some_and(|d| d.attempts >= 2))
    });
    first.kill();
    let c = outbox.counts().unwrap();
    assert_eq!((c.pending, c.delivered, c.dead), (N as u64, 0, 0));

    let rt = runtime();
    let receiver = start_receiver(&rt, addr, 200, 0, None);
    let _second = Service::start(&path, &webhook, &fast);
    // A pass cut off by the kill leaves its claims leased (2 minutes) before a retry.
    wait_for("all delivered", Duration::from_secs(240), || {
        let c = outbox.counts().unwrap();
        c.delivered + c.dead == N as u64
    });
    let c = outbox.counts().unwrap();
    assert_eq!((c.delivered, c.dead, c.pending), (N as u64, 0, 0));
    assert_eq!(receiver.delivered_keys(), keys, "exactly one 200 per key");
    assert_eq!(receiver.seen().len(), N, "nothing sent twice");
}

/// A receiver answering 500 (a retryable failure) for a while, then 200: every alert is
/// delivered once, none dead-lettered, and the outbox counts each request it sent.
#[test]
fn a_receiver_answering_500_then_200_gets_each_alert_once_and_none_is_dead_lettered() {
    const N: usize = 20;
    const FAILING: u16 = 50;
    let d = dir("delivery-500");
    let path = d.join("alerts.db");
    let keys = record_alerts(&path, N);
    let rt = runtime();
    let addr = closed_port();
    let receiver = start_receiver(&rt, addr, 500, FAILING, None);
    let outbox = Outbox::open(&path).unwrap();
    let _service = Service::start(
        &path,
        &format!("http://{addr}/hook"),
        &[
            "--alert-retry-initial-ms",
            "10",
            "--alert-retry-max-seconds",
            "1",
        ],
    );
    wait_for("all delivered", Duration::from_secs(120), || {
        let c = outbox.counts().unwrap();
        c.delivered + c.dead == N as u64
    });
    let c = outbox.counts().unwrap();
    assert_eq!((c.delivered, c.dead, c.pending), (N as u64, 0, 0));
    let seen = receiver.seen();
    assert_eq!(
        seen.iter().filter(|s| s.status == 500).count(),
        FAILING as usize
    );
    assert_eq!(receiver.delivered_keys(), keys, "exactly one 200 per key");
    for (key, d) in keys.iter().zip(deliveries(&outbox, &keys)) {
        let d = d.unwrap();
        let sent = seen.iter().filter(|s| &s.key == key).count();
        assert_eq!(d.status, DeliveryStatus::Delivered);
        assert_eq!(d.attempts as usize, sent, "{key}: every request counted");
    }
}
