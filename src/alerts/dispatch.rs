//! Delivers due alerts from the outbox to every sink, retrying with capped exponential
//! backoff and full jitter until a give-up deadline (24 hours from a delivery's first
//! attempt by default), dead-lettering earlier only on a permanent answer; counters and
//! latency histograms for `/metrics`.
//!
//! The outbox's SQLite calls run on tokio's blocking pool, never on the async workers.

use std::sync::Arc;
use std::time::{Duration, Instant};

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::Histogram;
use rand::Rng;
use tokio::sync::{watch, Notify};
use tokio::task::{JoinHandle, JoinSet};

use super::outbox::{DeliveryStatus, Due, Outbox};
use super::sink::{AlertSink, SinkError};
use super::{now_ms, AlertCounters};
use crate::{Error, Result};

/// How failed deliveries are retried, and when they are given up.
///
/// A delivery that fails with a retryable error (a connection refused, a timeout, 408,
/// 429, 3xx, 5xx) is tried again after [`RetryPolicy::delay`] (or the receiver's
/// `Retry-After`, when longer), for as long as [`RetryPolicy::give_up_after`] has not
/// passed since its first attempt; the deadline is stored in the outbox, so it holds
/// across restarts. Only a permanent answer (another 4xx) dead-letters at once.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Delay cap after the first failure; doubles with each further failure...
    pub base: Duration,
    /// ...up to this.
    pub max: Duration,
    /// A delivery still failing this long after its first attempt is dead-lettered
    /// (its last attempt is made at the deadline).
    pub give_up_after: Duration,
    /// Full jitter: wait a uniform random time in `[0, cap]` rather than `cap`, so that
    /// alerts that failed together (a receiver outage) do not retry together.
    pub jitter: bool,
}

impl Default for RetryPolicy {
    /// 500 ms, doubling up to 5 minutes, for 24 hours, with full jitter.
    fn default() -> Self {
        RetryPolicy {
            base: Duration::from_millis(500),
            max: Duration::from_secs(300),
            give_up_after: Duration::from_secs(24 * 3600),
            jitter: true,
        }
    }
}

impl RetryPolicy {
    /// The wait before the next attempt after `failures` failed attempts (1 = the first):
    /// `min(max, base * 2^(failures - 1))`, or uniform in `[0, that]` with jitter.
    pub fn delay(&self, failures: u32) -> Duration {
        self.delay_with(failures, &mut rand::thread_rng())
    }

    /// [`RetryPolicy::delay`] drawing the jitter from `rng` (seeded in tests).
    pub fn delay_with<R: Rng + ?Sized>(&self, failures: u32, rng: &mut R) -> Duration {
        let cap = self.cap(failures);
        if self.jitter {
            let cap_ms = u64::try_from(cap.as_millis()).unwrap_or(u64::MAX);
            Duration::from_millis(rng.gen_range(0..=cap_ms))
        } else {
            cap
        }
    }

    /// The un-jittered delay after `failures` failed attempts.
    fn cap(&self, failures: u32) -> Duration {
        let doubling = failures.saturating_sub(1).min(30);
        self.base.saturating_mul(1u32 << doubling).min(self.max)
    }

    /// Refuses a policy that would retry in a busy loop or never back off.
    pub fn validate(&self) -> Result<()> {
        if self.base.is_zero() {
            return Err(Error::Config(
                "alert retries: the initial delay (retry_initial_ms) must be at least 1 ms".into(),
            ));
        }
        if self.max < self.base {
            return Err(Error::Config(format!(
                "alert retries: the longest delay ({:?}, retry_max_seconds) is below the initial one ({:?})",
                self.max, self.base
            )));
        }
        Ok(())
    }
}

/// Upper bounds of the delivery-latency buckets, in seconds: from an immediate delivery
/// to a day of retrying.
const DELIVERY_BUCKETS: [f64; 14] = [
    0.005, 0.025, 0.1, 0.25, 1.0, 2.5, 10.0, 30.0, 60.0, 300.0, 900.0, 3600.0, 14_400.0, 86_400.0,
];

/// The label of the delivery series: the sink's name (`webhook`, `jsonl`, `log`).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct SinkLabels {
    /// The sink's name.
    pub sink: String,
}

type SinkHistograms = Family<SinkLabels, Histogram, fn() -> Histogram>;

fn delivery_histogram() -> Histogram {
    Histogram::new(DELIVERY_BUCKETS)
}

/// Delivery latencies by sink: from an alert's raising to a sink accepting it, and of
/// each attempt (whatever its outcome). Shared handles: `/metrics` registers clones.
#[derive(Clone, Debug)]
pub struct DeliveryTimings {
    /// Raise (the alert's `raised_at`, whole seconds) to delivered.
    pub delivered: SinkHistograms,
    /// One attempt, from sending to the answer (or the error).
    pub attempts: SinkHistograms,
}

impl Default for DeliveryTimings {
    fn default() -> Self {
        DeliveryTimings {
            delivered: Family::new_with_constructor(delivery_histogram),
            attempts: Family::new_with_constructor(delivery_histogram),
        }
    }
}

impl DeliveryTimings {
    fn observe(family: &SinkHistograms, sink: &str, seconds: f64) {
        if seconds.is_finite() {
            family
                .get_or_create(&SinkLabels {
                    sink: sink.to_string(),
                })
                .observe(seconds.max(0.0));
        }
    }
}

/// What one dispatching pass did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DispatchStats {
    /// Deliveries claimed (due alerts times sinks).
    pub claimed: usize,
    /// Deliveries a sink accepted.
    pub delivered: usize,
    /// Failed attempts scheduled for a retry.
    pub failed: usize,
    /// Deliveries dead-lettered.
    pub dead: usize,
    /// Outbox errors (logged; the deliveries concerned are retried after their lease).
    pub errors: usize,
}

impl std::ops::AddAssign for DispatchStats {
    fn add_assign(&mut self, o: DispatchStats) {
        self.claimed += o.claimed;
        self.delivered += o.delivered;
        self.failed += o.failed;
        self.dead += o.dead;
        self.errors += o.errors;
    }
}

/// How long a claimed delivery stays reserved for the dispatcher that claimed it.
pub const DEFAULT_LEASE: Duration = Duration::from_secs(120);

/// Delivers the outbox's due alerts to its sinks. Run one per outbox file.
pub struct Dispatcher {
    outbox: Outbox,
    sinks: Vec<Arc<dyn AlertSink>>,
    retry: RetryPolicy,
    poll_interval: Duration,
    batch_size: usize,
    lease: Duration,
    drain_timeout: Duration,
}

impl std::fmt::Debug for Dispatcher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Dispatcher")
            .field("outbox", &self.outbox)
            .field("sinks", &self.sink_names())
            .field("retry", &self.retry)
            .finish_non_exhaustive()
    }
}

impl Dispatcher {
    /// A dispatcher polling every 500 ms, 32 deliveries per pass, a 2-minute claim lease
    /// and a 30-second drain on shutdown. Sink names must be unique.
    pub fn new(
        outbox: Outbox,
        sinks: Vec<Arc<dyn AlertSink>>,
        retry: RetryPolicy,
    ) -> Result<Dispatcher> {
        retry.validate()?;
        let mut names: Vec<&str> = sinks.iter().map(|s| s.name()).collect();
        names.sort_unstable();
        if let Some(w) = names.windows(2).find(|w| w[0] == w[1]) {
            return Err(Error::Config(format!(
                "two alert sinks are named `{}`: give each a unique name",
                w[0]
            )));
        }
        if sinks.is_empty() {
            tracing::warn!("alert dispatcher has no sinks: alerts stay pending in the outbox");
        }
        Ok(Dispatcher {
            outbox,
            sinks,
            retry,
            poll_interval: Duration::from_millis(500),
            batch_size: 32,
            lease: DEFAULT_LEASE,
            drain_timeout: Duration::from_secs(30),
        })
    }

    /// How often the outbox is checked when nobody pokes the notifier (alerts recorded
    /// by another process, retries coming due).
    pub fn with_poll_interval(mut self, every: Duration) -> Dispatcher {
        self.poll_interval = every;
        self
    }

    /// Deliveries claimed (and sent concurrently) per pass.
    pub fn with_batch_size(mut self, n: usize) -> Dispatcher {
        self.batch_size = n.max(1);
        self
    }

    /// How long a claimed delivery is reserved: a delivery interrupted by a crash is
    /// retried once this has passed. Each attempt is cut off after half of it.
    pub fn with_lease(mut self, lease: Duration) -> Dispatcher {
        self.lease = lease.max(Duration::from_millis(2));
        self
    }

    /// The longest [`Dispatcher::spawn`] keeps delivering after shutdown is signalled.
    pub fn with_drain_timeout(mut self, timeout: Duration) -> Dispatcher {
        self.drain_timeout = timeout;
        self
    }

    /// The process-wide alert counters (shared with the outbox).
    pub fn counters(&self) -> Arc<AlertCounters> {
        self.outbox.counters()
    }

    /// Poke this (`notify_one`) to make the dispatcher look at the outbox now. The outbox
    /// already does so whenever this process stores an alert.
    pub fn notifier(&self) -> Arc<Notify> {
        self.outbox.notifier()
    }

    /// The outbox delivered from.
    pub fn outbox(&self) -> &Outbox {
        &self.outbox
    }

    fn sink_names(&self) -> Vec<String> {
        self.sinks.iter().map(|s| s.name().to_string()).collect()
    }

    /// One pass: claims the deliveries due now (up to the batch size), sends them
    /// concurrently, records each outcome. Errors are logged and counted, not returned.
    pub async fn run_once(&self) -> DispatchStats {
        if self.sinks.is_empty() {
            return DispatchStats::default();
        }
        let outbox = self.outbox.clone();
        let names = self.sink_names();
        let limit = self.batch_size;
        let lease_ms = millis(self.lease);
        let claimed = blocking(move || {
            let names: Vec<&str> = names.iter().map(String::as_str).collect();
            outbox.claim_due(&names, now_ms(), limit, lease_ms)
        })
        .await;
        let claimed = match claimed {
            Ok(c) => c,
            Err(e) => {
                tracing::error!(error = %e.chain(), "alert dispatcher could not read the outbox");
                return DispatchStats {
                    errors: 1,
                    ..DispatchStats::default()
                };
            }
        };
        let mut tasks = JoinSet::new();
        for due in claimed {
            let Some(sink) = self.sinks.iter().find(|s| s.name() == due.sink) else {
                continue; // claim_due only returns our sinks
            };
            tasks.spawn(deliver_one(
                self.outbox.clone(),
                Arc::clone(sink),
                due,
                self.retry,
                self.lease / 2,
            ));
        }
        let mut stats = DispatchStats::default();
        while let Some(done) = tasks.join_next().await {
            match done {
                Ok(s) => stats += s,
                Err(e) => {
                    tracing::error!(error = %e, "alert delivery task failed");
                    stats.claimed += 1;
                    stats.errors += 1;
                }
            }
        }
        stats
    }

    /// Passes until nothing is due (retries scheduled later are left for later) or the
    /// drain timeout passes. For the nightly batch after recording, and for shutdown.
    pub async fn drain(&self) -> DispatchStats {
        let deadline = tokio::time::Instant::now() + self.drain_timeout;
        let mut total = DispatchStats::default();
        loop {
            let pass = self.run_once().await;
            total += pass;
            if pass.claimed == 0 || pass.errors > 0 || tokio::time::Instant::now() >= deadline {
                return total;
            }
        }
    }

    /// Runs in the background: a pass every poll interval, or at once when notified;
    /// when `shutdown` turns true (or its sender is dropped) drains what is due, then ends.
    pub fn spawn(self, mut shutdown: watch::Receiver<bool>) -> JoinHandle<()> {
        tokio::spawn(async move {
            let notify = self.outbox.notifier();
            tracing::info!(sinks = ?self.sink_names(), outbox = %self.outbox.path().display(),
                "alert dispatcher started");
            loop {
                if *shutdown.borrow() {
                    break;
                }
                let pass = self.run_once().await;
                if pass.claimed >= self.batch_size && pass.errors == 0 {
                    continue; // a full batch: more may be due
                }
                tokio::select! {
                    changed = shutdown.changed() => {
                        if changed.is_err() || *shutdown.borrow() {
                            break;
                        }
                    }
                    _ = notify.notified() => {}
                    _ = tokio::time::sleep(self.poll_interval) => {}
                }
            }
            let drained = self.drain().await;
            tracing::info!(?drained, "alert dispatcher stopped");
        })
    }
}

/// Milliseconds, at most a thousand years' worth (so that adding one to a timestamp
/// never overflows, in Rust or in SQLite).
fn millis(d: Duration) -> i64 {
    const LONGEST: i64 = 1000 * 365 * 24 * 3600 * 1000;
    i64::try_from(d.as_millis())
        .unwrap_or(i64::MAX)
        .min(LONGEST)
}

async fn blocking<T, F>(f: F) -> Result<T>
where
    T: Send + 'static,
    F: FnOnce() -> Result<T> + Send + 'static,
{
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| Error::Outbox(format!("outbox task failed: {e}")))?
}

/// Seconds from an alert's `raised_at` (whole seconds) to `now_ms`.
fn since_raised(raised_at: &str, now_ms: i64) -> Option<f64> {
    let raised = crate::time::parse_ts(raised_at)?;
    Some((now_ms - raised.saturating_mul(1000)) as f64 / 1000.0)
}

async fn deliver_one(
    outbox: Outbox,
    sink: Arc<dyn AlertSink>,
    due: Due,
    retry: RetryPolicy,
    attempt_timeout: Duration,
) -> DispatchStats {
    use std::sync::atomic::Ordering::Relaxed;
    let counters = outbox.counters();
    let key = due.alert.idempotency_key.clone();
    let name = due.sink.clone();
    let attempt = due.attempts + 1;
    let started = Instant::now();
    let result = match tokio::time::timeout(attempt_timeout, sink.deliver(&due.alert)).await {
        Ok(r) => r,
        Err(_) => Err(SinkError::retryable(format!(
            "no answer within {attempt_timeout:?}"
        ))),
    };
    let now = now_ms();
    DeliveryTimings::observe(
        &counters.timings.attempts,
        &name,
        started.elapsed().as_secs_f64(),
    );
    let mut stats = DispatchStats {
        claimed: 1,
        ..DispatchStats::default()
    };
    let recorded = match result {
        Ok(()) => {
            counters.delivered.fetch_add(1, Relaxed);
            if let Some(seconds) = since_raised(&due.alert.raised_at, now) {
                DeliveryTimings::observe(&counters.timings.delivered, &name, seconds);
            }
            stats.delivered = 1;
            tracing::debug!(idempotency_key = %key, sink = %name, attempt, "alert delivered");
            let (k, n) = (key.clone(), name.clone());
            blocking(move || outbox.mark_delivered(&k, &n)).await
        }
        Err(SinkError::Retryable {
            message,
            retry_after,
        }) => {
            let wait = retry.delay(attempt).max(retry_after.unwrap_or_default());
            let next = now.saturating_add(millis(wait));
            let give_up = millis(retry.give_up_after);
            let (k, n, m) = (key.clone(), name.clone(), message.clone());
            match blocking(move || outbox.mark_failed(&k, &n, &m, now, next, give_up)).await {
                Ok(DeliveryStatus::Dead) => {
                    counters.dead.fetch_add(1, Relaxed);
                    stats.dead = 1;
                    tracing::error!(idempotency_key = %key, sink = %name, attempt, error = %message,
                        give_up_after = ?retry.give_up_after,
                        "alert still failing past its give-up deadline: dead-lettered (churnguard alerts redrive)");
                    Ok(())
                }
                Ok(_) => {
                    counters.failed.fetch_add(1, Relaxed);
                    stats.failed = 1;
                    tracing::warn!(idempotency_key = %key, sink = %name, attempt, error = %message,
                        retry_in = ?wait, "alert delivery failed, will retry");
                    Ok(())
                }
                Err(e) => Err(e),
            }
        }
        Err(SinkError::Permanent(message)) => {
            counters.dead.fetch_add(1, Relaxed);
            stats.dead = 1;
            tracing::error!(idempotency_key = %key, sink = %name, attempt, error = %message,
                "alert refused for good: dead-lettered (churnguard alerts redrive)");
            let (k, n) = (key.clone(), name.clone());
            blocking(move || outbox.mark_dead(&k, &n, &message)).await
        }
    };
    if let Err(e) = recorded {
        // The lease expires and the delivery is retried: at least once, never lost.
        tracing::error!(idempotency_key = %key, sink = %name, error = %e.chain(),
            "could not record a delivery outcome");
        stats.errors += 1;
    }
    stats
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use axum::body::Bytes;
    use axum::extract::State;
    use axum::http::{HeaderMap, StatusCode};
    use axum::routing::post;
    use axum::Router;

    use super::*;
    use crate::alerts::{
        verify_signature, Alert, AlertPolicy, JsonlSink, Observation, WebhookSink,
    };
    use crate::scoring::{ModelRef, Tier};

    const SECRET: &[u8] = b"test-secret";

    /// What the receiver saw of one request.
    #[derive(Clone, Debug)]
    struct Seen {
        key: String,
        timestamp: String,
        signature: String,
        content_type: String,
        body: Vec<u8>,
    }

    /// A real webhook receiver: answers `fail_with` to the first `fail_first` requests,
    /// then 200 (after `delay`).
    struct Receiver {
        seen: Mutex<Vec<Seen>>,
        fail_first: usize,
        fail_with: StatusCode,
        delay: Duration,
    }

    impl Receiver {
        fn seen(&self) -> Vec<Seen> {
            self.seen.lock().unwrap().clone()
        }
    }

    async fn hook(State(r): State<Arc<Receiver>>, headers: HeaderMap, body: Bytes) -> StatusCode {
        let h = |name: &str| {
            headers
                .get(name)
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default()
                .to_string()
        };
        let n = {
            let mut seen = r.seen.lock().unwrap();
            seen.push(Seen {
                key: h("idempotency-key"),
                timestamp: h("x-churnguard-timestamp"),
                signature: h("x-churnguard-signature"),
                content_type: h("content-type"),
                body: body.to_vec(),
            });
            seen.len()
        };
        tokio::time::sleep(r.delay).await;
        if n <= r.fail_first {
            r.fail_with
        } else {
            StatusCode::OK
        }
    }

    async fn spawn_receiver(
        fail_first: usize,
        fail_with: StatusCode,
        delay: Duration,
    ) -> (String, Arc<Receiver>) {
        let state = Arc::new(Receiver {
            seen: Mutex::default(),
            fail_first,
            fail_with,
            delay,
        });
        let app = Router::new()
            .route("/hook", post(hook))
            .with_state(Arc::clone(&state));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        (format!("http://{addr}/hook"), state)
    }

    fn fast_retries() -> RetryPolicy {
        RetryPolicy {
            base: Duration::from_millis(20),
            max: Duration::from_millis(100),
            give_up_after: Duration::from_secs(3600),
            jitter: true,
        }
    }

    fn webhook(url: &str) -> Arc<dyn AlertSink> {
        Arc::new(WebhookSink::new(url, SECRET, Duration::from_secs(5)).unwrap())
    }

    /// Records a first score at `high` for each customer: one alert each.
    fn record_alerts(outbox: &Outbox, customers: &[&str]) -> Vec<Alert> {
        let as_of = crate::time::parse_ts("2024-03-01").unwrap();
        let model = ModelRef {
            name: "churn".into(),
            version: "v7".into(),
        };
        customers
            .iter()
            .map(|c| {
                let obs = Observation {
                    customer_id: c,
                    tier: Tier::High,
                    as_of,
                };
                outbox
                    .record(&AlertPolicy::default(), obs, |t| {
                        t.alert(model.clone(), 0.93, Alert::SOURCE_SERVICE)
                            .with_reasons(vec![serde_json::json!(
                                {"feature": "logins_30d", "value": 0, "contribution": 0.31}
                            )])
                    })
                    .unwrap()
                    .expect("a first score at high alerts")
            })
            .collect()
    }

    /// Passes until `done` holds, for at most ten seconds.
    async fn run_until(d: &Dispatcher, done: impl Fn(&Outbox) -> bool) -> DispatchStats {
        let mut total = DispatchStats::default();
        for _ in 0..1000 {
            total += d.run_once().await;
            if done(d.outbox()) {
                return total;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!("not done after ten seconds: {total:?}");
    }

    #[test]
    fn backoff_doubles_up_to_the_cap_and_jitter_stays_below_it() {
        let p = RetryPolicy {
            jitter: false,
            ..RetryPolicy::default()
        };
        let ms = |n| p.delay(n).as_millis();
        // 500 ms doubling: 0.5, 1, 2, 4, ..., 256 s, then the 5-minute cap.
        assert_eq!((ms(1), ms(2), ms(3), ms(8)), (500, 1000, 2000, 64_000));
        assert_eq!((ms(10), ms(11), ms(12)), (256_000, 300_000, 300_000));
        assert_eq!(ms(u32::MAX), 300_000);
        assert_eq!(p.give_up_after, Duration::from_secs(86_400));
        let j = RetryPolicy::default();
        assert!((0..200).all(|_| j.delay(3) <= Duration::from_secs(2)));
    }

    #[test]
    fn jittered_backoff_is_exact_for_a_seeded_generator() {
        use rand::SeedableRng;
        let p = RetryPolicy::default();
        let draw = |seed| {
            let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
            (1..=12)
                .map(|n| p.delay_with(n, &mut rng).as_millis())
                .collect::<Vec<_>>()
        };
        let a = draw(7);
        assert_eq!(a, draw(7), "the same seed draws the same delays");
        assert_ne!(a, draw(8));
        // Each draw within [0, cap] of its failure count.
        let caps = [
            500, 1000, 2000, 4000, 8000, 16_000, 32_000, 64_000, 128_000, 256_000, 300_000, 300_000,
        ];
        for (d, cap) in a.iter().zip(caps) {
            assert!(*d <= cap, "{a:?}");
        }
        // Against an exact reference: the same generator drawing uniformly in [0, cap].
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(7);
        let reference: Vec<u128> = caps
            .iter()
            .map(|&cap: &u128| u128::from(rng.gen_range(0..=cap as u64)))
            .collect();
        assert_eq!(a, reference);
    }

    #[test]
    fn a_policy_that_would_spin_or_never_back_off_is_refused() {
        let zero = RetryPolicy {
            base: Duration::ZERO,
            ..RetryPolicy::default()
        };
        assert!(zero
            .validate()
            .unwrap_err()
            .to_string()
            .contains("retry_initial_ms"));
        let inverted = RetryPolicy {
            base: Duration::from_secs(10),
            max: Duration::from_secs(1),
            ..RetryPolicy::default()
        };
        assert!(inverted
            .validate()
            .unwrap_err()
            .to_string()
            .contains("retry_max_seconds"));
        assert!(RetryPolicy::default().validate().is_ok());
    }

    #[test]
    fn sink_names_must_be_unique() {
        let dir = tempfile::tempdir().unwrap();
        let outbox = Outbox::open(dir.path().join("a.db")).unwrap();
        let a: Arc<dyn AlertSink> = Arc::new(JsonlSink::new(dir.path().join("a.jsonl")));
        let b: Arc<dyn AlertSink> = Arc::new(JsonlSink::new(dir.path().join("b.jsonl")));
        let err = Dispatcher::new(outbox, vec![a, b], RetryPolicy::default()).unwrap_err();
        assert!(err.to_string().contains("jsonl"), "{err}");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_webhook_that_fails_twice_with_503_gets_the_alert_on_the_third_attempt() {
        let dir = tempfile::tempdir().unwrap();
        let outbox = Outbox::open(dir.path().join("alerts.db")).unwrap();
        let (url, receiver) =
            spawn_receiver(2, StatusCode::SERVICE_UNAVAILABLE, Duration::ZERO).await;
        let alert = record_alerts(&outbox, &["c42"]).remove(0);
        let d = Dispatcher::new(outbox, vec![webhook(&url)], fast_retries()).unwrap();

        let stats = run_until(&d, |o| o.counts().unwrap().delivered == 1).await;

        assert_eq!((stats.delivered, stats.failed, stats.dead), (1, 2, 0));
        let seen = receiver.seen();
        assert_eq!(seen.len(), 3);
        for s in &seen {
            assert_eq!(s.key, alert.idempotency_key);
            assert_eq!(s.content_type, "application/json");
            assert!(
                verify_signature(SECRET, &s.timestamp, &s.body, &s.signature),
                "bad signature {s:?}"
            );
            assert!(!verify_signature(
                b"wrong",
                &s.timestamp,
                &s.body,
                &s.signature
            ));
            let got: Alert = serde_json::from_slice(&s.body).unwrap();
            assert_eq!(got, alert);
        }
        let delivery = &d.outbox().deliveries(&alert.idempotency_key).unwrap()[0];
        assert_eq!(
            (delivery.status, delivery.attempts),
            (DeliveryStatus::Delivered, 3)
        );
        let c = d.counters().snapshot();
        assert_eq!((c.raised, c.delivered, c.failed, c.dead), (1, 1, 2, 0));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_400_from_the_receiver_dead_letters_the_alert_without_retrying() {
        let dir = tempfile::tempdir().unwrap();
        let outbox = Outbox::open(dir.path().join("alerts.db")).unwrap();
        let (url, receiver) =
            spawn_receiver(usize::MAX, StatusCode::BAD_REQUEST, Duration::ZERO).await;
        let alert = record_alerts(&outbox, &["c1"]).remove(0);
        let d = Dispatcher::new(outbox, vec![webhook(&url)], fast_retries()).unwrap();

        run_until(&d, |o| o.counts().unwrap().dead == 1).await;
        for _ in 0..5 {
            assert_eq!(d.run_once().await, DispatchStats::default());
            tokio::time::sleep(Duration::from_millis(30)).await;
        }

        assert_eq!(receiver.seen().len(), 1);
        let delivery = &d.outbox().deliveries(&alert.idempotency_key).unwrap()[0];
        assert_eq!(
            (delivery.status, delivery.attempts),
            (DeliveryStatus::Dead, 1)
        );
        let error = delivery.last_error.as_deref().unwrap();
        assert!(error.contains("400"), "{error}");
        assert_eq!(d.counters().snapshot().dead, 1);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_receiver_that_never_recovers_is_dead_lettered_at_the_deadline() {
        let dir = tempfile::tempdir().unwrap();
        let outbox = Outbox::open(dir.path().join("alerts.db")).unwrap();
        let (url, receiver) =
            spawn_receiver(usize::MAX, StatusCode::BAD_GATEWAY, Duration::ZERO).await;
        record_alerts(&outbox, &["c1"]);
        let retry = RetryPolicy {
            give_up_after: Duration::from_millis(300),
            ..fast_retries()
        };
        let d = Dispatcher::new(outbox, vec![webhook(&url)], retry).unwrap();
        let stats = run_until(&d, |o| o.counts().unwrap().dead == 1).await;
        assert_eq!(stats.dead, 1);
        // Retried until the deadline (every attempt failed), the last one at it.
        assert_eq!(receiver.seen().len(), stats.failed + 1);
        assert!(stats.failed >= 2, "{stats:?}");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn alerts_recorded_before_a_crash_are_delivered_once_each_after_restart() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("alerts.db");
        let (url, receiver) = spawn_receiver(0, StatusCode::OK, Duration::ZERO).await;
        let alerts = {
            let outbox = Outbox::open(&path).unwrap();
            let alerts = record_alerts(&outbox, &["c1", "c2", "c3"]);
            let crashed = Dispatcher::new(outbox, vec![webhook(&url)], fast_retries()).unwrap();
            drop(crashed); // the process dies before the dispatcher's first pass
            alerts
        };
        assert!(receiver.seen().is_empty());

        // Restart: a new outbox handle on the same file, a new dispatcher in the background.
        let outbox = Outbox::open(&path).unwrap();
        assert_eq!(outbox.counts().unwrap().pending, 3);
        let (stop, shutdown) = watch::channel(false);
        let handle = Dispatcher::new(outbox.clone(), vec![webhook(&url)], fast_retries())
            .unwrap()
            .with_poll_interval(Duration::from_millis(20))
            .spawn(shutdown);
        for _ in 0..500 {
            if outbox.counts().unwrap().delivered == 3 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        // A few more polls: nothing is sent twice.
        tokio::time::sleep(Duration::from_millis(100)).await;
        stop.send(true).unwrap();
        handle.await.unwrap();

        // And a third start finds nothing to do.
        let again = Dispatcher::new(
            Outbox::open(&path).unwrap(),
            vec![webhook(&url)],
            fast_retries(),
        )
        .unwrap();
        assert_eq!(again.drain().await.claimed, 0);

        let mut keys: Vec<String> = receiver.seen().into_iter().map(|s| s.key).collect();
        keys.sort();
        let mut expected: Vec<String> = alerts.into_iter().map(|a| a.idempotency_key).collect();
        expected.sort();
        assert_eq!(keys, expected, "exactly one request per idempotency key");
        assert_eq!(outbox.counts().unwrap().delivered, 3);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_delivery_cut_off_by_a_crash_is_resent_with_the_same_key_after_its_lease() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("alerts.db");
        // The first receiver takes the request but never answers in time.
        let (slow_url, slow) = spawn_receiver(0, StatusCode::OK, Duration::from_secs(30)).await;
        let alert = {
            let outbox = Outbox::open(&path).unwrap();
            let alert = record_alerts(&outbox, &["c1"]).remove(0);
            let d = Dispatcher::new(outbox, vec![webhook(&slow_url)], fast_retries())
                .unwrap()
                .with_lease(Duration::from_millis(1500));
            let pass = tokio::spawn(async move { d.run_once().await });
            while slow.seen().is_empty() {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            pass.abort(); // crash mid-delivery
            let _ = pass.await;
            alert
        };
        let (url, receiver) = spawn_receiver(0, StatusCode::OK, Duration::ZERO).await;
        let d = Dispatcher::new(
            Outbox::open(&path).unwrap(),
            vec![webhook(&url)],
            fast_retries(),
        )
        .unwrap();
        // Still leased to the crashed process right after the crash...
        assert_eq!(d.run_once().await.claimed, 0);
        // ...then re-sent once the lease expires.
        run_until(&d, |o| o.counts().unwrap().delivered == 1).await;
        let seen = receiver.seen();
        assert_eq!(seen.len(), 1);
        assert_eq!(seen[0].key, alert.idempotency_key);
        assert_eq!(slow.seen()[0].key, alert.idempotency_key);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_background_dispatcher_wakes_on_new_alerts_and_drains_on_shutdown() {
        let dir = tempfile::tempdir().unwrap();
        let outbox = Outbox::open(dir.path().join("alerts.db")).unwrap();
        let file = dir.path().join("alerts.jsonl");
        let sink: Arc<dyn AlertSink> = Arc::new(JsonlSink::new(&file));
        let (stop, shutdown) = watch::channel(false);
        // Polling once an hour: only the outbox's notification can wake it in time.
        let handle = Dispatcher::new(outbox.clone(), vec![sink], fast_retries())
            .unwrap()
            .with_poll_interval(Duration::from_secs(3600))
            .spawn(shutdown);
        tokio::time::sleep(Duration::from_millis(50)).await;
        record_alerts(&outbox, &["c1"]);
        let lines = |f: &std::path::Path| {
            std::fs::read_to_string(f)
                .map(|t| t.lines().count())
                .unwrap_or(0)
        };
        for _ in 0..500 {
            if lines(&file) == 1 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert_eq!(lines(&file), 1, "woken by the notification");
        // Stop right after recording: the drain delivers it before the task ends.
        record_alerts(&outbox, &["c2"]);
        stop.send(true).unwrap();
        handle.await.unwrap();
        assert_eq!(lines(&file), 2);
        assert_eq!(outbox.counts().unwrap().delivered, 2);
    }
}
