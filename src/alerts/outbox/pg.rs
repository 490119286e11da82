//! The outbox on PostgreSQL, for deployments beyond one host: the same tables, keys and
//! semantics as the SQLite file (see the sibling modules, which this mirrors statement
//! by statement), shared by several service replicas and the nightly batch.
//!
//! The driver is the synchronous `postgres` crate (tokio-postgres underneath) rather
//! than sqlx: the outbox's interface is synchronous and its callers already call it from
//! blocking threads (`spawn_blocking`, the service's recorder thread, the batch), so an
//! async driver would only move the blocking elsewhere and change every caller. The two
//! calls the service makes on an async worker (`/metrics`' reads and the confirming
//! check) go through [`blocking`], since `postgres` refuses to run inside a runtime.
//!
//! Concurrency, where SQLite had one writer per file:
//! - recording takes transaction-scoped advisory locks on the customers' buckets
//!   ([`BUCKETS`] of them, always in ascending order, so no deadlock), then reads,
//!   decides and writes under READ COMMITTED: two processes recording the same customer
//!   are serialised, and each tier transition is decided once on the state the other
//!   committed; the nightly run takes every bucket, as its SQLite transaction took the
//!   whole file;
//! - alerts are inserted `ON CONFLICT (idempotency_key) DO NOTHING`: raised once per key;
//! - delivery rows are claimed `FOR UPDATE SKIP LOCKED` and leased (`next_attempt_ms`
//!   pushed `lease_ms` ahead), so a replica killed mid-delivery has its claims taken over
//!   when the lease expires: delivered at least once;
//! - an outcome locks its alert row first, so two sinks finishing at once on two
//!   replicas still close the alert;
//! - migrations are versioned (`churnguard_migrations`), applied at open in one
//!   transaction under an advisory lock, so two processes starting at once do not race.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use postgres::error::SqlState;
use postgres::{Client, NoTls, Transaction};
use tokio::sync::Notify;

use super::cache::{self, Cached, StateCache};
use super::nights::{Night, NightFiles, NightlyHealth, Refusals};
use super::record::StageFiles;
use super::{
    DeliveryRecord, DeliveryStatus, Due, Observation, OutboxCounts, OutboxDepth, Pruned,
    RecordSummary, Redriven, Transition, SMALL_RECORDING,
};
use crate::alerts::policy::{AlertPolicy, CustomerState, Decision, Step};
use crate::alerts::{now_secs, Alert, AlertCounters};
use crate::error::RefusalReason;
use crate::scoring::Tier;
use crate::time::Ts;
use crate::{Error, Result};

/// Connections per process, opened on first use: enough for the service's recorder,
/// dispatcher and worker threads, and for 16 concurrent writers in one process.
const POOL: usize = 16;

/// Customers are serialised by bucket (a hash of the id) rather than one lock each, so
/// that a nightly run of a million customers takes a bounded number of locks.
const BUCKETS: i64 = 1024;

/// The advisory-lock space: `LOCK_BASE + bucket` for recordings, `LOCK_BASE - 1` for
/// migrations (an arbitrary constant, "churnguard" in ASCII, unlikely to meet another
/// application's keys).
const LOCK_BASE: i64 = 0x6368_7572_6e00_0000;

/// Ids read or written per statement (arrays bound as one parameter).
const CHUNK: usize = 5_000;

/// Retries of a recording the server aborted (a deadlock, a serialisation failure).
const RETRIES: usize = 5;

/// The versioned migrations, applied in order, each once; never edit one that shipped,
/// add the next.
const MIGRATIONS: &[(i32, &str)] = &[(
    1,
    "
CREATE TABLE customer_state (
    customer_id     TEXT PRIMARY KEY,
    last_tier       TEXT NOT NULL,
    last_scored_at  BIGINT NOT NULL,
    last_alert_at   BIGINT,
    last_alert_tier TEXT
);
CREATE TABLE alerts (
    seq             BIGSERIAL PRIMARY KEY,
    idempotency_key TEXT NOT NULL UNIQUE,
    customer_id     TEXT NOT NULL,
    tier            TEXT NOT NULL,
    source          TEXT NOT NULL,
    payload         TEXT NOT NULL,
    status          TEXT NOT NULL DEFAULT 'pending'
                    CHECK (status IN ('pending', 'delivered', 'dead')),
    created_at      BIGINT NOT NULL,
    updated_at      BIGINT NOT NULL
);
CREATE INDEX alerts_pending ON alerts (seq) WHERE status = 'pending';
CREATE INDEX alerts_by_status ON alerts (status, updated_at);
CREATE TABLE deliveries (
    idempotency_key  TEXT NOT NULL REFERENCES alerts (idempotency_key) ON DELETE CASCADE,
    sink             TEXT NOT NULL,
    status           TEXT NOT NULL DEFAULT 'pending'
                     CHECK (status IN ('pending', 'delivered', 'dead')),
    attempts         INTEGER NOT NULL DEFAULT 0,
    next_attempt_ms  BIGINT NOT NULL,
    last_error       TEXT,
    updated_at       BIGINT NOT NULL,
    first_attempt_ms BIGINT,
    PRIMARY KEY (idempotency_key, sink)
);
CREATE INDEX deliveries_due ON deliveries (status, next_attempt_ms);
CREATE TABLE nights (
    seq         BIGSERIAL PRIMARY KEY,
    as_of       BIGINT NOT NULL,
    finished_at BIGINT NOT NULL,
    model       TEXT NOT NULL,
    customers   BIGINT NOT NULL,
    tiers       TEXT NOT NULL,
    status      TEXT NOT NULL CHECK (status IN ('ok', 'refused')),
    reason      TEXT,
    detail      TEXT,
    alerts_new  BIGINT NOT NULL DEFAULT 0
);
CREATE INDEX nights_by_status ON nights (status, as_of);
CREATE TABLE night_files (
    seq  BIGSERIAL,
    tmp  TEXT PRIMARY KEY,
    path TEXT NOT NULL
);
-- Bumped after every commit that changed a customer's state: other processes' state
-- caches empty when it moves (SQLite's data_version).
CREATE SEQUENCE state_version;
-- Called once, so that every later nextval moves last_value (a new sequence's first
-- nextval returns 1 and leaves last_value at 1).
SELECT setval('state_version', 1);
",
)];

const STATE_COLUMNS: &str =
    "customer_id, last_tier, last_scored_at, last_alert_at, last_alert_tier";
const NIGHT_COLUMNS: &str = "as_of, finished_at, model, customers, tiers, status, reason, detail";

trait Ctx<T> {
    fn ctx(self, what: &str) -> Result<T>;
}

impl<T> Ctx<T> for std::result::Result<T, postgres::Error> {
    fn ctx(self, what: &str) -> Result<T> {
        self.map_err(|source| Error::OutboxPg {
            context: what.to_string(),
            source,
        })
    }
}

/// Runs `f`, which blocks on the database, from wherever the caller is: on a
/// multi-threaded runtime's worker through `block_in_place` (the worker's other tasks
/// move on), on a current-thread runtime on a scoped thread, else directly.
fn blocking<T: Send>(f: impl FnOnce() -> T + Send) -> T {
    use tokio::runtime::{Handle, RuntimeFlavor};
    match Handle::try_current().map(|h| h.runtime_flavor()) {
        Ok(RuntimeFlavor::MultiThread) => tokio::task::block_in_place(f),
        Ok(_) => std::thread::scope(|s| {
            s.spawn(f)
                .join()
                .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
        }),
        Err(_) => f(),
    }
}

/// A connection of the pool, opened when first needed and again after it broke.
struct Conn<'a>(MutexGuard<'a, Option<Client>>);

impl Conn<'_> {
    fn client(&mut self) -> &mut Client {
        self.0.as_mut().expect("connected by Inner::conn")
    }
}

struct Inner {
    config: postgres::Config,
    /// The URL without its password, for messages.
    shown: PathBuf,
    pool: Vec<Mutex<Option<Client>>>,
    next: AtomicUsize,
    cache: Mutex<StateCache>,
    counters: Arc<AlertCounters>,
    notify: Arc<Notify>,
}

/// The PostgreSQL backend: cheap to clone (clones share the pool and the counters).
#[derive(Clone)]
pub(super) struct Postgres {
    inner: Arc<Inner>,
}

/// The URL with its password replaced, for messages and logs.
fn redact(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_string();
    };
    match rest.split_once('@') {
        Some((userinfo, host)) if userinfo.contains(':') => {
            let user = userinfo.split(':').next().unwrap_or("");
            format!("{scheme}://{user}:***@{host}")
        }
        _ => url.to_string(),
    }
}

impl Postgres {
    /// Connects to the database `url` names and brings its tables to this build's layout.
    pub fn open(url: &str) -> Result<Postgres> {
        let shown = redact(url);
        let config: postgres::Config = url
            .parse()
            .map_err(|e: postgres::Error| Error::Outbox(format!("{shown}: {e}")))?;
        let pg = Postgres {
            inner: Arc::new(Inner {
                config,
                shown: PathBuf::from(&shown),
                pool: (0..POOL).map(|_| Mutex::new(None)).collect(),
                next: AtomicUsize::new(0),
                cache: Mutex::default(),
                counters: Arc::default(),
                notify: Arc::default(),
            }),
        };
        blocking(|| pg.migrate())?;
        Ok(pg)
    }

    /// Applies the migrations this database lacks, in one transaction, under an advisory
    /// lock: a second process opening at the same time waits, then finds them applied.
    fn migrate(&self) -> Result<()> {
        let shown = self.shown();
        let mut conn = self.conn()?;
        let mut tx = conn
            .client()
            .transaction()
            .ctx(&format!("{shown}: starting the migrations"))?;
        tx.execute("SELECT pg_advisory_xact_lock($1)", &[&(LOCK_BASE - 1)])
            .ctx(&format!("{shown}: locking the migrations"))?;
        tx.batch_execute(
            "CREATE TABLE IF NOT EXISTS churnguard_migrations (\
             version INTEGER PRIMARY KEY, applied_at BIGINT NOT NULL)",
        )
        .ctx(&format!("{shown}: creating the migrations table"))?;
        let applied: Option<i32> = tx
            .query_one("SELECT max(version) FROM churnguard_migrations", &[])
            .ctx(&format!("{shown}: reading the migrations"))?
            .get(0);
        let applied = applied.unwrap_or(0);
        let newest = MIGRATIONS.last().map_or(0, |m| m.0);
        if applied > newest {
            return Err(Error::Outbox(format!(
                "{shown}: layout version {applied} was written by a newer churnguard (this one reads {newest})"
            )));
        }
        for (version, sql) in MIGRATIONS.iter().filter(|m| m.0 > applied) {
            tx.batch_execute(sql)
                .ctx(&format!("{shown}: applying migration {version}"))?;
            tx.execute(
                "INSERT INTO churnguard_migrations (version, applied_at) VALUES ($1, $2)",
                &[version, &now_secs()],
            )
            .ctx(&format!("{shown}: recording migration {version}"))?;
        }
        tx.commit()
            .ctx(&format!("{shown}: committing the migrations"))
    }

    fn shown(&self) -> String {
        self.inner.shown.display().to_string()
    }

    /// A connection: the first free one from a rotating start, else wait for one;
    /// (re)connected when it is new or its server went away.
    fn conn(&self) -> Result<Conn<'_>> {
        let pool = &self.inner.pool;
        let start = self.inner.next.fetch_add(1, Ordering::Relaxed);
        let mut guard = None;
        for i in 0..pool.len() {
            match pool[(start + i) % pool.len()].try_lock() {
                Ok(g) => {
                    guard = Some(g);
                    break;
                }
                Err(std::sync::TryLockError::Poisoned(e)) => {
                    guard = Some(e.into_inner());
                    break;
                }
                Err(std::sync::TryLockError::WouldBlock) => {}
            }
        }
        let mut guard = match guard {
            Some(g) => g,
            None => pool[start % pool.len()]
                .lock()
                .unwrap_or_else(|e| e.into_inner()),
        };
        if guard.as_ref().is_none_or(Client::is_closed) {
            let client = self
                .inner
                .config
                .connect(NoTls)
                .ctx(&format!("connecting to {}", self.shown()))?;
            *guard = Some(client);
        }
        Ok(Conn(guard))
    }

    pub fn path(&self) -> &Path {
        &self.inner.shown
    }

    pub fn counters(&self) -> Arc<AlertCounters> {
        Arc::clone(&self.inner.counters)
    }

    pub fn notifier(&self) -> Arc<Notify> {
        Arc::clone(&self.inner.notify)
    }

    fn after_insert(&self, inserted: usize) {
        if inserted > 0 {
            self.inner
                .counters
                .raised
                .fetch_add(inserted as u64, Ordering::Relaxed);
            self.inner.notify.notify_one();
        }
    }

    // ---- recording ---------------------------------------------------------------

    pub fn needs_recording(
        &self,
        policy: &AlertPolicy,
        observations: &[Observation<'_>],
    ) -> Result<bool> {
        blocking(|| {
            Cached {
                cache: &self.inner.cache,
                version: &|| self.state_version().map(Some),
                read: &|id| self.state(id),
            }
            .needs_recording(policy, observations)
        })
    }

    /// The `state_version` sequence's last value (moves after every state change).
    fn state_version(&self) -> Result<i64> {
        let row = self
            .conn()?
            .client()
            .query_one("SELECT last_value FROM state_version", &[])
            .ctx("reading the outbox's state version")?;
        Ok(row.get(0))
    }

    pub fn record<F>(
        &self,
        policy: &AlertPolicy,
        obs: Observation<'_>,
        build: F,
    ) -> Result<Option<Alert>>
    where
        F: FnOnce(&Transition<'_>) -> Alert,
    {
        let mut build = Some(build);
        let mut raised = None;
        let mut one = |t: &Transition<'_>| {
            // A retried transaction asks again: the first alert built is the one.
            let alert = match build.take() {
                Some(build) => build(t),
                None => raised.clone().expect("built on the first attempt"),
            };
            raised = Some(alert.clone());
            alert
        };
        self.record_with(policy, std::slice::from_ref(&obs), &mut one, false, None)?;
        Ok(raised)
    }

    pub fn record_many<F>(
        &self,
        policy: &AlertPolicy,
        observations: &[Observation<'_>],
        mut build: F,
    ) -> Result<RecordSummary>
    where
        F: FnMut(&Transition<'_>) -> Alert,
    {
        let big = observations.len() > SMALL_RECORDING;
        self.record_with(policy, observations, &mut build, big, None)
    }

    pub fn record_night<F>(
        &self,
        policy: &AlertPolicy,
        observations: &[Observation<'_>],
        mut build: F,
        night: &Night,
        stage: &mut StageFiles<'_>,
    ) -> Result<RecordSummary>
    where
        F: FnMut(&Transition<'_>) -> Alert,
    {
        self.record_with(policy, observations, &mut build, true, Some((night, stage)))
    }

    pub fn record_group<F>(
        &self,
        policy: &AlertPolicy,
        observations: &[Observation<'_>],
        mut build: F,
    ) -> Result<RecordSummary>
    where
        F: FnMut(&Transition<'_>) -> Alert,
    {
        self.record_with(policy, observations, &mut build, false, None)
    }

    /// One recording, retried when the server aborts it (deadlock, serialisation).
    /// `durable`: commit with `synchronous_commit` on whatever is stored; otherwise a
    /// recording that stores no alert commits without waiting for the WAL flush (the
    /// service's state-only changes: a server crash may lose the last few, never half
    /// of one; SQLite's `synchronous=NORMAL`).
    fn record_with(
        &self,
        policy: &AlertPolicy,
        observations: &[Observation<'_>],
        build: &mut dyn FnMut(&Transition<'_>) -> Alert,
        durable: bool,
        mut night: Option<(&Night, &mut StageFiles<'_>)>,
    ) -> Result<RecordSummary> {
        let mut conn = self.conn()?;
        let mut attempt = 0;
        loop {
            let this_night = match night.as_mut() {
                Some((n, stage)) => {
                    let stage: &mut StageFiles<'_> = &mut **stage;
                    Some((*n, stage))
                }
                None => None,
            };
            match try_record(
                conn.client(),
                policy,
                observations,
                build,
                durable,
                this_night,
            ) {
                Ok(summary) => {
                    let wrote = summary.observed > summary.stale + summary.unchanged;
                    if wrote {
                        // After the commit: a process that sees the new value reads
                        // the committed states.
                        if let Err(e) = conn
                            .client()
                            .query_one("SELECT nextval('state_version')", &[])
                        {
                            tracing::warn!(error = %e, "outbox: bumping the state version failed");
                        }
                    }
                    drop(conn);
                    if wrote {
                        cache::forget_states(&self.inner.cache, observations);
                    }
                    self.after_insert(summary.inserted);
                    return Ok(summary);
                }
                Err(Error::OutboxPg { source, .. })
                    if attempt < RETRIES && is_retryable(&source) =>
                {
                    attempt += 1;
                }
                Err(e) => return Err(e),
            }
        }
    }

    pub fn insert(&self, alert: &Alert) -> Result<bool> {
        let mut conn = self.conn()?;
        let mut tx = conn.client().transaction().ctx("starting an insert")?;
        let inserted = insert_alerts(&mut tx, std::slice::from_ref(alert), now_secs())?;
        tx.commit().ctx("committing an alert")?;
        drop(conn);
        self.after_insert(inserted);
        Ok(inserted == 1)
    }

    pub fn state(&self, customer_id: &str) -> Result<Option<CustomerState>> {
        blocking(|| {
            let rows = self
                .conn()?
                .client()
                .query(
                    &*format!("SELECT {STATE_COLUMNS} FROM customer_state WHERE customer_id = $1"),
                    &[&customer_id],
                )
                .ctx("reading a customer's state")?;
            rows.first().map(state_from_row).transpose()
        })
    }

    // ---- delivery ----------------------------------------------------------------

    pub fn pending(&self, limit: usize) -> Result<Vec<Alert>> {
        let rows = self
            .conn()?
            .client()
            .query(
                "SELECT payload FROM alerts WHERE status = 'pending' ORDER BY seq LIMIT $1",
                &[&limit_sql(limit)],
            )
            .ctx("listing pending alerts")?;
        rows.iter()
            .map(|r| {
                serde_json::from_str(r.get::<_, &str>(0)).map_err(|source| Error::OutboxPayload {
                    context: "a stored alert is not valid JSON".to_string(),
                    source,
                })
            })
            .collect()
    }

    pub fn claim_due(
        &self,
        sinks: &[&str],
        now_ms: i64,
        limit: usize,
        lease_ms: i64,
    ) -> Result<Vec<Due>> {
        if sinks.is_empty() || limit == 0 {
            return Ok(Vec::new());
        }
        let now = now_secs();
        let sinks: Vec<&str> = sinks.to_vec();
        let mut conn = self.conn()?;
        let mut tx = conn.client().transaction().ctx("starting a claim")?;
        // Every pending alert gets a row per sink it lacks. (SQLite keeps a high-water
        // mark of `seq` instead; here `seq`s commit out of order across processes, so
        // a mark could pass over an alert still being committed.)
        tx.execute(
            "INSERT INTO deliveries \
             (idempotency_key, sink, status, attempts, next_attempt_ms, updated_at) \
             SELECT a.idempotency_key, s.sink, 'pending', 0, 0, $2::bigint \
             FROM alerts a CROSS JOIN unnest($1::text[]) AS s (sink) \
             WHERE a.status = 'pending' AND NOT EXISTS (SELECT 1 FROM deliveries d \
             WHERE d.idempotency_key = a.idempotency_key AND d.sink = s.sink) \
             ON CONFLICT DO NOTHING",
            &[&sinks, &now],
        )
        .ctx("creating delivery rows")?;
        let rows = tx
            .query(
                "WITH due AS (SELECT d.idempotency_key, d.sink, d.next_attempt_ms AS due_ms \
                 FROM deliveries d WHERE d.status = 'pending' AND d.next_attempt_ms <= $1 \
                 AND d.sink = ANY($2) ORDER BY d.next_attempt_ms LIMIT $3 \
                 FOR UPDATE SKIP LOCKED) \
                 UPDATE deliveries d SET next_attempt_ms = $4, updated_at = $5, \
                 first_attempt_ms = coalesce(d.first_attempt_ms, $1) \
                 FROM due, alerts a \
                 WHERE d.idempotency_key = due.idempotency_key AND d.sink = due.sink \
                 AND a.idempotency_key = d.idempotency_key \
                 RETURNING d.idempotency_key, d.sink, d.attempts, a.payload, due.due_ms, a.seq",
                &[
                    &now_ms,
                    &sinks,
                    &limit_sql(limit),
                    &now_ms.saturating_add(lease_ms),
                    &now,
                ],
            )
            .ctx("claiming due deliveries")?;
        let mut claimed: Vec<(i64, i64, String, String, i32, String)> = rows
            .iter()
            .map(|r| (r.get(4), r.get(5), r.get(0), r.get(1), r.get(2), r.get(3)))
            .collect();
        claimed.sort();
        let mut due = Vec::with_capacity(claimed.len());
        for (_, _, key, sink, attempts, payload) in claimed {
            match serde_json::from_str::<Alert>(&payload) {
                Ok(alert) => due.push(Due {
                    alert,
                    sink,
                    attempts: u32::try_from(attempts).unwrap_or(0),
                }),
                Err(e) => {
                    tracing::error!(idempotency_key = %key, sink = %sink, error = %e,
                        "stored alert is not valid JSON: dead-lettered");
                    mark_in_tx(
                        &mut tx,
                        &key,
                        &sink,
                        DeliveryStatus::Dead,
                        Some(&format!("stored payload is not a valid alert: {e}")),
                        now,
                    )?;
                    self.inner.counters.dead.fetch_add(1, Ordering::Relaxed);
                }
            }
        }
        tx.commit().ctx("committing a claim")?;
        Ok(due)
    }

    pub fn mark_delivered(&self, key: &str, sink: &str) -> Result<()> {
        self.mark(key, sink, DeliveryStatus::Delivered, None)
    }

    pub fn mark_dead(&self, key: &str, sink: &str, error: &str) -> Result<()> {
        self.mark(key, sink, DeliveryStatus::Dead, Some(error))
    }

    fn mark(
        &self,
        key: &str,
        sink: &str,
        status: DeliveryStatus,
        error: Option<&str>,
    ) -> Result<()> {
        let mut conn = self.conn()?;
        let mut tx = conn
            .client()
            .transaction()
            .ctx("starting a delivery update")?;
        mark_in_tx(&mut tx, key, sink, status, error, now_secs())?;
        tx.commit().ctx("committing a delivery update")
    }

    pub fn mark_failed(
        &self,
        key: &str,
        sink: &str,
        error: &str,
        now_ms: i64,
        next_attempt_ms: i64,
        give_up_ms: i64,
    ) -> Result<DeliveryStatus> {
        let now = now_secs();
        let mut conn = self.conn()?;
        let mut tx = conn
            .client()
            .transaction()
            .ctx("starting a delivery update")?;
        lock_alert(&mut tx, key)?;
        let changed = tx
            .execute(
                "INSERT INTO deliveries \
                 (idempotency_key, sink, status, attempts, next_attempt_ms, last_error, \
                  updated_at, first_attempt_ms) \
                 SELECT idempotency_key, $2::text, CASE WHEN $6::bigint <= 0 THEN 'dead' ELSE 'pending' END, \
                 1, LEAST($5::bigint, $4::bigint + $6::bigint), $3::text, $7::bigint, $4::bigint \
                 FROM alerts WHERE idempotency_key = $1 \
                 ON CONFLICT (idempotency_key, sink) DO UPDATE SET \
                 status = CASE WHEN $4::bigint >= coalesce(deliveries.first_attempt_ms, $4::bigint) + $6::bigint \
                 THEN 'dead' ELSE 'pending' END, \
                 attempts = deliveries.attempts + 1, \
                 next_attempt_ms = LEAST($5::bigint, coalesce(deliveries.first_attempt_ms, $4::bigint) + $6::bigint), \
                 first_attempt_ms = coalesce(deliveries.first_attempt_ms, $4::bigint), \
                 last_error = excluded.last_error, updated_at = excluded.updated_at \
                 WHERE deliveries.status = 'pending'",
                &[&key, &sink, &error, &now_ms, &next_attempt_ms, &give_up_ms, &now],
            )
            .ctx("recording a failed delivery")?;
        ensure_alert_exists(&mut tx, key, changed)?;
        let status: String = tx
            .query_one(
                "SELECT status FROM deliveries WHERE idempotency_key = $1 AND sink = $2",
                &[&key, &sink],
            )
            .ctx("reading a delivery")?
            .get(0);
        close_if_done(&mut tx, key, now)?;
        tx.commit().ctx("committing a delivery update")?;
        parse_status(&status)
    }

    pub fn redrive(&self, keys: Option<&[String]>) -> Result<Redriven> {
        let now = now_secs();
        let mut conn = self.conn()?;
        let mut tx = conn.client().transaction().ctx("starting a redrive")?;
        let keys: Vec<String> = match keys {
            Some(keys) => {
                let known: BTreeSet<String> = tx
                    .query(
                        "SELECT idempotency_key FROM alerts WHERE idempotency_key = ANY($1)",
                        &[&keys],
                    )
                    .ctx("looking up alerts")?
                    .iter()
                    .map(|r| r.get(0))
                    .collect();
                let unknown: Vec<String> = keys
                    .iter()
                    .filter(|k| !known.contains(*k))
                    .map(|k| format!("`{k}`"))
                    .collect();
                if !unknown.is_empty() {
                    return Err(Error::Outbox(format!(
                        "no alert with idempotency key {} in {}: nothing redriven",
                        unknown.join(", "),
                        self.shown()
                    )));
                }
                keys.to_vec()
            }
            None => tx
                .query(
                    "SELECT idempotency_key FROM alerts WHERE status = 'dead' ORDER BY seq",
                    &[],
                )
                .ctx("listing dead-lettered alerts")?
                .iter()
                .map(|r| r.get(0))
                .collect(),
        };
        let mut out = Redriven::default();
        for key in keys {
            let changed = tx
                .execute(
                    "UPDATE alerts SET status = 'pending', updated_at = $2 \
                     WHERE idempotency_key = $1 AND status = 'dead'",
                    &[&key, &now],
                )
                .ctx("redriving an alert")?;
            if changed == 0 {
                out.not_dead.push(key);
                continue;
            }
            tx.execute(
                "UPDATE deliveries SET status = 'pending', next_attempt_ms = 0, \
                 first_attempt_ms = NULL, updated_at = $2 \
                 WHERE idempotency_key = $1 AND status = 'dead'",
                &[&key, &now],
            )
            .ctx("redriving a delivery")?;
            out.redriven += 1;
        }
        tx.commit().ctx("committing a redrive")?;
        drop(conn);
        if out.redriven > 0 {
            self.inner.notify.notify_one();
        }
        Ok(out)
    }

    pub fn depth(&self) -> Result<OutboxDepth> {
        blocking(|| {
            let row = self
                .conn()?
                .client()
                .query_one(
                    "SELECT (SELECT count(*) FROM alerts WHERE status = 'pending'), \
                     (SELECT count(*) FROM alerts WHERE status = 'dead')",
                    &[],
                )
                .ctx("counting pending alerts")?;
            Ok(OutboxDepth {
                pending: u64::try_from(row.get::<_, i64>(0)).unwrap_or(0),
                dead_lettered: u64::try_from(row.get::<_, i64>(1)).unwrap_or(0),
            })
        })
    }

    pub fn deliveries(&self, key: &str) -> Result<Vec<DeliveryRecord>> {
        let rows = self
            .conn()?
            .client()
            .query(
                "SELECT sink, status, attempts, last_error, next_attempt_ms, first_attempt_ms \
                 FROM deliveries WHERE idempotency_key = $1 ORDER BY sink",
                &[&key],
            )
            .ctx("listing deliveries")?;
        rows.iter()
            .map(|r| {
                Ok(DeliveryRecord {
                    sink: r.get(0),
                    status: parse_status(r.get(1))?,
                    attempts: u32::try_from(r.get::<_, i32>(2)).unwrap_or(0),
                    last_error: r.get(3),
                    next_attempt_ms: r.get(4),
                    first_attempt_ms: r.get(5),
                })
            })
            .collect()
    }

    pub fn counts(&self) -> Result<OutboxCounts> {
        let rows = self
            .conn()?
            .client()
            .query("SELECT status, count(*) FROM alerts GROUP BY status", &[])
            .ctx("counting alerts")?;
        let mut counts = OutboxCounts::default();
        for r in &rows {
            let n = u64::try_from(r.get::<_, i64>(1)).unwrap_or(0);
            match parse_status(r.get(0))? {
                DeliveryStatus::Pending => counts.pending = n,
                DeliveryStatus::Delivered => counts.delivered = n,
                DeliveryStatus::Dead => counts.dead = n,
            }
        }
        Ok(counts)
    }

    /// Deletes finished alerts last changed before `before`; their deliveries go by
    /// `ON DELETE CASCADE`. Autovacuum makes the space reusable; nothing is rewritten
    /// under the other processes' feet.
    pub fn prune(&self, before: Ts) -> Result<Pruned> {
        let mut conn = self.conn()?;
        let mut tx = conn.client().transaction().ctx("starting a prune")?;
        let deliveries = tx
            .query_one(
                "SELECT count(*) FROM deliveries d JOIN alerts a USING (idempotency_key) \
                 WHERE a.status IN ('delivered', 'dead') AND a.updated_at < $1",
                &[&before],
            )
            .ctx("counting old deliveries")?
            .get::<_, i64>(0);
        let alerts = tx
            .execute(
                "DELETE FROM alerts WHERE status IN ('delivered', 'dead') AND updated_at < $1",
                &[&before],
            )
            .ctx("deleting old alerts")?;
        tx.commit().ctx("committing a prune")?;
        Ok(Pruned {
            alerts,
            deliveries: u64::try_from(deliveries).unwrap_or(0),
        })
    }

    // ---- nights ------------------------------------------------------------------

    pub fn record_refusal(&self, night: &Night) -> Result<()> {
        debug_assert!(night.refused);
        let mut conn = self.conn()?;
        let mut tx = conn
            .client()
            .transaction()
            .ctx("starting to record a refused night")?;
        insert_night(&mut tx, night, 0)?;
        tx.commit().ctx("committing a refused night")
    }

    pub fn previous_night(&self, as_of: Ts) -> Result<Option<Night>> {
        let rows = self
            .conn()?
            .client()
            .query(
                &*format!(
                    "SELECT {NIGHT_COLUMNS} FROM nights WHERE status = 'ok' AND as_of < $1 \
                     ORDER BY as_of DESC, seq DESC LIMIT 1"
                ),
                &[&as_of],
            )
            .ctx("reading the previous night")?;
        rows.first().map(night_from_row).transpose()
    }

    pub fn nights(&self) -> Result<Vec<Night>> {
        let rows = self
            .conn()?
            .client()
            .query(
                &*format!("SELECT {NIGHT_COLUMNS} FROM nights ORDER BY seq"),
                &[],
            )
            .ctx("reading the nights")?;
        rows.iter().map(night_from_row).collect()
    }

    pub fn finish_night_files(&self) -> Result<usize> {
        let pending: Vec<(String, String)> = self
            .conn()?
            .client()
            .query("SELECT tmp, path FROM night_files ORDER BY seq", &[])
            .ctx("reading the staged files")?
            .iter()
            .map(|r| (r.get(0), r.get(1)))
            .collect();
        for (tmp, path) in &pending {
            crate::fsutil::rename_into_place(tmp.as_ref(), path.as_ref())?;
            self.conn()?
                .client()
                .execute("DELETE FROM night_files WHERE tmp = $1", &[tmp])
                .ctx("forgetting a staged file")?;
        }
        Ok(pending.len())
    }

    pub fn nightly_health(&self) -> Result<NightlyHealth> {
        blocking(|| {
            let since_last_success = self.refusals_since_last_success()?;
            let mut conn = self.conn()?;
            let refused_by_reason = conn
                .client()
                .query(
                    "SELECT COALESCE(reason, ''), COUNT(*) FROM nights \
                     WHERE status = 'refused' GROUP BY 1",
                    &[],
                )
                .ctx("counting refused nights")?
                .iter()
                .map(|r| (r.get::<_, String>(0), r.get::<_, i64>(1) as u64))
                .collect();
            let last = conn
                .client()
                .query(
                    &*format!(
                        "SELECT {NIGHT_COLUMNS} FROM nights WHERE status = 'ok' \
                         ORDER BY seq DESC LIMIT 1"
                    ),
                    &[],
                )
                .ctx("reading the last successful night")?;
            Ok(NightlyHealth {
                refused_by_reason,
                since_last_success,
                last_success: last.first().map(night_from_row).transpose()?,
            })
        })
    }

    pub fn refusals_since_last_success(&self) -> Result<Refusals> {
        let mut conn = self.conn()?;
        let last: Option<(i64, Ts)> = conn
            .client()
            .query(
                "SELECT seq, as_of FROM nights WHERE status = 'ok' ORDER BY seq DESC LIMIT 1",
                &[],
            )
            .ctx("reading the last successful night")?
            .first()
            .map(|r| (r.get(0), r.get(1)));
        let rows = conn
            .client()
            .query(
                "SELECT COALESCE(reason, ''), COUNT(*) FROM nights \
                 WHERE status = 'refused' AND seq > $1 GROUP BY 1",
                &[&last.map_or(0, |l| l.0)],
            )
            .ctx("counting refused nights")?;
        let mut out = Refusals {
            last_success_as_of: last.map(|l| l.1),
            ..Refusals::default()
        };
        for r in &rows {
            let n = r.get::<_, i64>(1) as u64;
            out.total += n;
            out.by_reason.insert(r.get(0), n);
        }
        Ok(out)
    }
}

fn is_retryable(e: &postgres::Error) -> bool {
    matches!(
        e.code(),
        Some(c) if *c == SqlState::T_R_DEADLOCK_DETECTED || *c == SqlState::T_R_SERIALIZATION_FAILURE
    )
}

fn limit_sql(limit: usize) -> i64 {
    i64::try_from(limit).unwrap_or(i64::MAX)
}

/// The bucket of a customer id: FNV-1a, the same in every process and build.
fn bucket(customer_id: &str) -> i64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in customer_id.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    (h % BUCKETS as u64) as i64
}

fn parse_tier(s: &str) -> Result<Tier> {
    s.parse()
}

fn parse_status(s: &str) -> Result<DeliveryStatus> {
    match s {
        "pending" => Ok(DeliveryStatus::Pending),
        "delivered" => Ok(DeliveryStatus::Delivered),
        "dead" => Ok(DeliveryStatus::Dead),
        other => Err(Error::Outbox(format!("unknown delivery status `{other}`"))),
    }
}

/// A customer's state from a row of [`STATE_COLUMNS`].
fn state_from_row(r: &postgres::Row) -> Result<CustomerState> {
    Ok(CustomerState {
        last_tier: parse_tier(r.get(1))?,
        last_scored_at: r.get(2),
        last_alert_at: r.get(3),
        last_alert_tier: r.get::<_, Option<&str>>(4).map(parse_tier).transpose()?,
    })
}

/// One recording transaction (see [`Postgres::record_with`]).
fn try_record(
    client: &mut Client,
    policy: &AlertPolicy,
    observations: &[Observation<'_>],
    build: &mut dyn FnMut(&Transition<'_>) -> Alert,
    durable: bool,
    night: Option<(&Night, &mut StageFiles<'_>)>,
) -> Result<RecordSummary> {
    let now = now_secs();
    let mut summary = RecordSummary {
        observed: observations.len(),
        ..RecordSummary::default()
    };
    let mut order: Vec<usize> = (0..observations.len()).collect();
    order.sort_by(|&a, &b| observations[a].customer_id.cmp(observations[b].customer_id));
    let mut tx = client
        .transaction()
        .ctx("starting the recording transaction")?;
    // The customers' buckets, ascending (every recording locks in this order).
    let buckets: Vec<i64> = if observations.len() > SMALL_RECORDING {
        (0..BUCKETS).map(|b| LOCK_BASE + b).collect()
    } else {
        let set: BTreeSet<i64> = observations
            .iter()
            .map(|o| LOCK_BASE + bucket(o.customer_id))
            .collect();
        set.into_iter().collect()
    };
    tx.execute(
        "SELECT pg_advisory_xact_lock(k) FROM unnest($1::bigint[]) AS b (k)",
        &[&buckets],
    )
    .ctx("locking the customers")?;
    // The stored states, read under the locks.
    let mut states: HashMap<String, CustomerState> = HashMap::new();
    let mut ids: Vec<&str> = order.iter().map(|&i| observations[i].customer_id).collect();
    ids.dedup();
    for chunk in ids.chunks(CHUNK) {
        let rows = tx
            .query(
                &*format!("SELECT {STATE_COLUMNS} FROM customer_state WHERE customer_id = ANY($1)"),
                &[&chunk],
            )
            .ctx("reading the customers' states")?;
        for r in &rows {
            states.insert(r.get(0), state_from_row(r)?);
        }
    }
    // Decided in the order SQLite decides (by id, a repeated id in the given order);
    // the last state per customer is written.
    let mut writes: BTreeMap<&str, CustomerState> = BTreeMap::new();
    let mut alerts: Vec<Alert> = Vec::new();
    for index in order {
        let obs = &observations[index];
        let last = writes
            .get(obs.customer_id)
            .or_else(|| states.get(obs.customer_id))
            .copied();
        let (next, decision) = match policy.step(last.as_ref(), obs.tier, obs.as_of) {
            Step::Stale => {
                summary.stale += 1;
                continue;
            }
            Step::Unchanged => {
                summary.unchanged += 1;
                continue;
            }
            Step::Write { next, decision } => (next, decision),
        };
        writes.insert(obs.customer_id, next);
        if let Decision::Raise { previous } = decision {
            summary.raised += 1;
            let alert = build(&Transition {
                index,
                customer_id: obs.customer_id,
                tier: obs.tier,
                previous,
                as_of: obs.as_of,
            });
            if alert.customer_id != obs.customer_id || alert.tier != obs.tier {
                return Err(Error::Outbox(format!(
                    "the alert built for customer `{}` at tier {} is for `{}` at tier {}",
                    obs.customer_id, obs.tier, alert.customer_id, alert.tier
                )));
            }
            alerts.push(alert);
        }
    }
    let writes: Vec<(&str, CustomerState)> = writes.into_iter().collect();
    for chunk in writes.chunks(CHUNK) {
        let ids: Vec<&str> = chunk.iter().map(|w| w.0).collect();
        let tiers: Vec<&str> = chunk.iter().map(|w| w.1.last_tier.as_str()).collect();
        let scored: Vec<i64> = chunk.iter().map(|w| w.1.last_scored_at).collect();
        let alert_at: Vec<Option<i64>> = chunk.iter().map(|w| w.1.last_alert_at).collect();
        let alert_tier: Vec<Option<&str>> = chunk
            .iter()
            .map(|w| w.1.last_alert_tier.map(Tier::as_str))
            .collect();
        tx.execute(
            &*format!(
                "INSERT INTO customer_state ({STATE_COLUMNS}) \
                 SELECT * FROM unnest($1::text[], $2::text[], $3::bigint[], $4::bigint[], $5::text[]) \
                 ON CONFLICT (customer_id) DO UPDATE SET last_tier = excluded.last_tier, \
                 last_scored_at = excluded.last_scored_at, last_alert_at = excluded.last_alert_at, \
                 last_alert_tier = excluded.last_alert_tier"
            ),
            &[&ids, &tiers, &scored, &alert_at, &alert_tier],
        )
        .ctx("writing the customers' states")?;
    }
    for chunk in alerts.chunks(CHUNK) {
        summary.inserted += insert_alerts(&mut tx, chunk, now)?;
    }
    if let Some((night, stage)) = night {
        insert_night(&mut tx, night, summary.inserted)?;
        let files: NightFiles = stage(&summary)?;
        for (tmp, path) in &files {
            tx.execute(
                "INSERT INTO night_files (tmp, path) VALUES ($1, $2) \
                 ON CONFLICT (tmp) DO UPDATE SET path = excluded.path",
                &[
                    &tmp.to_string_lossy().into_owned(),
                    &path.to_string_lossy().into_owned(),
                ],
            )
            .ctx("recording a night's staged file")?;
        }
    }
    if !durable && summary.inserted == 0 {
        tx.batch_execute("SET LOCAL synchronous_commit TO OFF")
            .ctx("setting the commit durability")?;
    }
    tx.commit().ctx("committing the recorded scores")?;
    Ok(summary)
}

/// Inserts alerts, once per key; returns how many were new.
fn insert_alerts(tx: &mut Transaction<'_>, alerts: &[Alert], now: Ts) -> Result<usize> {
    let mut payloads = Vec::with_capacity(alerts.len());
    for alert in alerts {
        if !alert.churn_probability.is_finite() {
            return Err(Error::Outbox(format!(
                "alert for customer `{}` has a non-finite probability",
                alert.customer_id
            )));
        }
        payloads.push(
            serde_json::to_string(alert).map_err(|source| Error::OutboxPayload {
                context: "serialising an alert".to_string(),
                source,
            })?,
        );
    }
    let keys: Vec<&str> = alerts.iter().map(|a| a.idempotency_key.as_str()).collect();
    let customers: Vec<&str> = alerts.iter().map(|a| a.customer_id.as_str()).collect();
    let tiers: Vec<&str> = alerts.iter().map(|a| a.tier.as_str()).collect();
    let sources: Vec<&str> = alerts.iter().map(|a| a.source.as_str()).collect();
    // WITH ORDINALITY keeps the given order, so `seq` follows it as in SQLite.
    let inserted = tx
        .execute(
            "INSERT INTO alerts \
             (idempotency_key, customer_id, tier, source, payload, status, created_at, updated_at) \
             SELECT k, c, t, s, p, 'pending', $6::bigint, $6::bigint FROM unnest($1::text[], $2::text[], \
             $3::text[], $4::text[], $5::text[]) WITH ORDINALITY AS x (k, c, t, s, p, n) \
             ORDER BY n ON CONFLICT (idempotency_key) DO NOTHING",
            &[&keys, &customers, &tiers, &sources, &payloads, &now],
        )
        .ctx("storing alerts")?;
    Ok(inserted as usize)
}

/// Takes the alert's row lock: outcomes on one alert are serialised, so the last one
/// to finish sees the others and closes it.
fn lock_alert(tx: &mut Transaction<'_>, key: &str) -> Result<()> {
    tx.query(
        "SELECT 1 FROM alerts WHERE idempotency_key = $1 FOR UPDATE",
        &[&key],
    )
    .ctx("locking an alert")?;
    Ok(())
}

fn mark_in_tx(
    tx: &mut Transaction<'_>,
    key: &str,
    sink: &str,
    status: DeliveryStatus,
    error: Option<&str>,
    now: Ts,
) -> Result<()> {
    lock_alert(tx, key)?;
    let changed = tx
        .execute(
            "INSERT INTO deliveries \
             (idempotency_key, sink, status, attempts, next_attempt_ms, last_error, updated_at) \
             SELECT idempotency_key, $2::text, $3::text, 1, 0, $4::text, $5::bigint FROM alerts WHERE idempotency_key = $1 \
             ON CONFLICT (idempotency_key, sink) DO UPDATE SET status = excluded.status, \
             attempts = deliveries.attempts + 1, next_attempt_ms = excluded.next_attempt_ms, \
             last_error = excluded.last_error, updated_at = excluded.updated_at \
             WHERE deliveries.status = 'pending'",
            &[&key, &sink, &status.as_str(), &error, &now],
        )
        .ctx("recording a delivery")?;
    ensure_alert_exists(tx, key, changed)?;
    close_if_done(tx, key, now)
}

/// An upsert that changed nothing either found a finished delivery (fine: a late
/// duplicate outcome never reopens it) or no alert with that key (a caller's mistake).
fn ensure_alert_exists(tx: &mut Transaction<'_>, key: &str, changed: u64) -> Result<()> {
    if changed > 0 {
        return Ok(());
    }
    let exists: bool = tx
        .query_one(
            "SELECT EXISTS (SELECT 1 FROM alerts WHERE idempotency_key = $1)",
            &[&key],
        )
        .ctx("looking up an alert")?
        .get(0);
    if exists {
        Ok(())
    } else {
        Err(Error::Outbox(format!(
            "no alert with idempotency key `{key}`"
        )))
    }
}

fn close_if_done(tx: &mut Transaction<'_>, key: &str, now: Ts) -> Result<()> {
    tx.execute(
        "UPDATE alerts SET updated_at = $2, status = CASE WHEN EXISTS \
         (SELECT 1 FROM deliveries WHERE idempotency_key = $1 AND status = 'dead') \
         THEN 'dead' ELSE 'delivered' END \
         WHERE idempotency_key = $1 AND status = 'pending' AND NOT EXISTS \
         (SELECT 1 FROM deliveries WHERE idempotency_key = $1 AND status = 'pending')",
        &[&key, &now],
    )
    .ctx("closing a finished alert")?;
    Ok(())
}

fn insert_night(tx: &mut Transaction<'_>, night: &Night, alerts_new: usize) -> Result<()> {
    let tiers = serde_json::to_string(&night.tiers).map_err(|source| Error::OutboxPayload {
        context: "serialising a night's tier counts".into(),
        source,
    })?;
    tx.execute(
        "INSERT INTO nights \
         (as_of, finished_at, model, customers, tiers, status, reason, detail, alerts_new) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
        &[
            &night.as_of,
            &now_secs(),
            &night.model,
            &(night.customers as i64),
            &tiers,
            &if night.refused { "refused" } else { "ok" },
            &night.reason.map(RefusalReason::as_str),
            &night.detail,
            &(alerts_new as i64),
        ],
    )
    .ctx("recording the night")?;
    Ok(())
}

/// A night from a row of [`NIGHT_COLUMNS`].
fn night_from_row(r: &postgres::Row) -> Result<Night> {
    let tiers: &str = r.get(4);
    let status: &str = r.get(5);
    Ok(Night {
        as_of: r.get(0),
        finished_at: r.get(1),
        model: r.get(2),
        customers: r.get::<_, i64>(3).max(0) as usize,
        tiers: serde_json::from_str(tiers).map_err(|source| Error::OutboxPayload {
            context: "reading a night's tier counts".into(),
            source,
        })?,
        refused: status == "refused",
        reason: r.get::<_, Option<&str>>(6).map(str::parse).transpose()?,
        detail: r.get(7),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_url_is_shown_without_its_password() {
        assert_eq!(
            redact("postgres://cg:s3cret@db.internal:5432/alerts"),
            "postgres://cg:***@db.internal:5432/alerts"
        );
        assert_eq!(redact("postgres://db/alerts"), "postgres://db/alerts");
    }

    #[test]
    fn buckets_are_stable_and_spread() {
        // FNV-1a, fixed across builds and hosts (a std hasher is seeded per process).
        assert_eq!(bucket("c1"), bucket("c1"));
        let used: BTreeSet<i64> = (0..5000).map(|i| bucket(&format!("cust-{i}"))).collect();
        assert!(used.len() > 900, "{}", used.len());
        assert!(used.iter().all(|b| (0..BUCKETS).contains(b)));
    }
}

#[cfg(test)]
mod server_tests {
    use super::super::test_support::postgres_db;
    use super::super::Outbox;
    use super::*;

    #[test]
    #[ignore = "needs PostgreSQL: tests/postgres.sh"]
    fn postgres_processes_opening_at_once_apply_the_migrations_once() {
        let db = postgres_db();
        std::thread::scope(|s| {
            for _ in 0..6 {
                s.spawn(|| drop(db.open()));
            }
        });
        let mut c = Client::connect(db.target(), NoTls).unwrap();
        let versions: Vec<i32> = c
            .query(
                "SELECT version FROM churnguard_migrations ORDER BY version",
                &[],
            )
            .unwrap()
            .iter()
            .map(|r| r.get(0))
            .collect();
        assert_eq!(versions, MIGRATIONS.iter().map(|m| m.0).collect::<Vec<_>>());
    }

    #[test]
    #[ignore = "needs PostgreSQL: tests/postgres.sh"]
    fn postgres_a_database_from_a_newer_layout_is_refused() {
        let db = postgres_db();
        drop(db.open());
        let mut c = Client::connect(db.target(), NoTls).unwrap();
        c.execute(
            "INSERT INTO churnguard_migrations (version, applied_at) VALUES (99, 0)",
            &[],
        )
        .unwrap();
        let err = Outbox::open(db.target()).unwrap_err().to_string();
        assert!(err.contains("newer"), "{err}");
        assert!(!err.contains("s3cret"));
    }

    #[test]
    fn postgres_a_server_that_refuses_the_connection_is_a_clear_error() {
        let err = Outbox::open("postgres://cg:s3cret@127.0.0.1:1/none")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("connecting to postgres://cg:***@127.0.0.1:1/none"),
            "{err}"
        );
    }
}
