//! The durable outbox: one SQLite file (WAL, `synchronous=FULL`) holding each customer's
//! alert state, every alert raised and its delivery status per sink.
//!
//! Recording a score updates the customer's state and stores the alert it raises in one
//! transaction, committed (fsynced) before `record` returns: once a caller has been told
//! about an alert, the alert survives a crash. A score that changes neither the tier nor
//! the alert history is not written at all ([`CustomerState::changes`]), and a small
//! recording (the service's) that changes state without raising an alert commits with
//! `synchronous=NORMAL`: WAL keeps it consistent, a process crash keeps it, and only a
//! power cut before the next fsync (the next alert, or a checkpoint) can lose it. So the
//! steady state of a scoring service touches the disk only to store alerts.
//!
//! Delivery rows are created lazily, per sink, by the dispatcher for every alert still
//! pending, so alerts recorded by a process that has no sinks (the nightly batch) are
//! delivered by the one that has (the service).
//!
//! One writing connection per [`Outbox`], behind a mutex: call writers from async code
//! through `tokio::task::spawn_blocking` (the service goes through
//! `serve::recorder`, one writer thread with group commit). A few read-only
//! connections answer [`Outbox::needs_recording`] and [`Outbox::state`] beside it (WAL
//! readers never wait for the writer). Several processes may open the same file;
//! writers wait for each other up to [`BUSY_TIMEOUT`].

use std::collections::HashMap;
use std::hash::BuildHasherDefault;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use rusqlite::types::{FromSql, FromSqlError, FromSqlResult, ToSqlOutput, ValueRef};
use rusqlite::{params, Connection, OptionalExtension, ToSql, Transaction, TransactionBehavior};
use tokio::sync::Notify;

use super::policy::{AlertPolicy, CustomerState, Decision, Step};
use super::{now_secs, Alert, AlertCounters, ModelRef, Tier};
use crate::data::FxHasher;
use crate::time::Ts;
use crate::{Error, Result};

/// How long a writer waits for another process's transaction before failing.
pub const BUSY_TIMEOUT: Duration = Duration::from_secs(60);

/// Read-only connections per [`Outbox`]: enough that the service's worker threads
/// rarely wait for one.
const READERS: usize = 4;

/// Recordings of at most this many scores (the service's) try `synchronous=NORMAL`
/// first and switch to FULL only when they store an alert; bigger ones (the nightly
/// run, one transaction) commit with FULL directly.
const SMALL_RECORDING: usize = 64;

/// Version of the file layout, in SQLite's `user_version`.
const SCHEMA_VERSION: i64 = 1;

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS customer_state (
    customer_id     TEXT PRIMARY KEY,
    last_tier       TEXT NOT NULL,
    last_scored_at  INTEGER NOT NULL,
    last_alert_at   INTEGER,
    last_alert_tier TEXT
) WITHOUT ROWID;

CREATE TABLE IF NOT EXISTS alerts (
    seq             INTEGER PRIMARY KEY AUTOINCREMENT,
    idempotency_key TEXT NOT NULL UNIQUE,
    customer_id     TEXT NOT NULL,
    tier            TEXT NOT NULL,
    source          TEXT NOT NULL,
    payload         TEXT NOT NULL,
    status          TEXT NOT NULL DEFAULT 'pending'
                    CHECK (status IN ('pending', 'delivered', 'dead')),
    created_at      INTEGER NOT NULL,
    updated_at      INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS alerts_by_status ON alerts (status);

CREATE TABLE IF NOT EXISTS deliveries (
    idempotency_key TEXT NOT NULL REFERENCES alerts (idempotency_key),
    sink            TEXT NOT NULL,
    status          TEXT NOT NULL DEFAULT 'pending'
                    CHECK (status IN ('pending', 'delivered', 'dead')),
    attempts        INTEGER NOT NULL DEFAULT 0,
    next_attempt_ms INTEGER NOT NULL,
    last_error      TEXT,
    updated_at      INTEGER NOT NULL,
    PRIMARY KEY (idempotency_key, sink)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS deliveries_due ON deliveries (status, next_attempt_ms);
";

const GET_STATE: &str = "SELECT last_tier, last_scored_at, last_alert_at, last_alert_tier \
     FROM customer_state WHERE customer_id = ?1";
const PUT_STATE: &str = "INSERT INTO customer_state \
     (customer_id, last_tier, last_scored_at, last_alert_at, last_alert_tier) \
     VALUES (?1, ?2, ?3, ?4, ?5) \
     ON CONFLICT (customer_id) DO UPDATE SET last_tier = excluded.last_tier, \
     last_scored_at = excluded.last_scored_at, last_alert_at = excluded.last_alert_at, \
     last_alert_tier = excluded.last_alert_tier";
const INSERT_ALERT: &str = "INSERT OR IGNORE INTO alerts \
     (idempotency_key, customer_id, tier, source, payload, status, created_at, updated_at) \
     VALUES (?1, ?2, ?3, ?4, ?5, 'pending', ?6, ?6)";
const MARK: &str = "INSERT INTO deliveries \
     (idempotency_key, sink, status, attempts, next_attempt_ms, last_error, updated_at) \
     SELECT idempotency_key, ?2, ?3, 1, ?4, ?5, ?6 FROM alerts WHERE idempotency_key = ?1 \
     ON CONFLICT (idempotency_key, sink) DO UPDATE SET status = excluded.status, \
     attempts = deliveries.attempts + 1, next_attempt_ms = excluded.next_attempt_ms, \
     last_error = excluded.last_error, updated_at = excluded.updated_at \
     WHERE deliveries.status = 'pending'";
const MARK_FAILED: &str = "INSERT INTO deliveries \
     (idempotency_key, sink, status, attempts, next_attempt_ms, last_error, updated_at) \
     SELECT idempotency_key, ?2, CASE WHEN ?5 <= 1 THEN 'dead' ELSE 'pending' END, 1, ?4, ?3, ?6 \
     FROM alerts WHERE idempotency_key = ?1 \
     ON CONFLICT (idempotency_key, sink) DO UPDATE SET \
     status = CASE WHEN deliveries.attempts + 1 >= ?5 THEN 'dead' ELSE 'pending' END, \
     attempts = deliveries.attempts + 1, next_attempt_ms = excluded.next_attempt_ms, \
     last_error = excluded.last_error, updated_at = excluded.updated_at \
     WHERE deliveries.status = 'pending'";
const CLOSE_IF_DONE: &str = "UPDATE alerts SET updated_at = ?2, status = CASE WHEN EXISTS \
     (SELECT 1 FROM deliveries WHERE idempotency_key = ?1 AND status = 'dead') \
     THEN 'dead' ELSE 'delivered' END \
     WHERE idempotency_key = ?1 AND status = 'pending' AND NOT EXISTS \
     (SELECT 1 FROM deliveries WHERE idempotency_key = ?1 AND status = 'pending')";

/// Where an alert stands with one sink (or, for [`OutboxCounts`], with all of them).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum DeliveryStatus {
    /// Not delivered yet; will be (re)tried.
    Pending,
    /// Accepted by the sink.
    Delivered,
    /// Given up: a permanent error or too many attempts. Needs a human.
    Dead,
}

impl DeliveryStatus {
    /// The name stored in the database.
    pub fn as_str(self) -> &'static str {
        match self {
            DeliveryStatus::Pending => "pending",
            DeliveryStatus::Delivered => "delivered",
            DeliveryStatus::Dead => "dead",
        }
    }

    fn parse(s: &str) -> Option<DeliveryStatus> {
        match s {
            "pending" => Some(DeliveryStatus::Pending),
            "delivered" => Some(DeliveryStatus::Delivered),
            "dead" => Some(DeliveryStatus::Dead),
            _ => None,
        }
    }
}

impl ToSql for Tier {
    fn to_sql(&self) -> rusqlite::Result<ToSqlOutput<'_>> {
        Ok(ToSqlOutput::from(self.as_str()))
    }
}

impl FromSql for Tier {
    fn column_result(value: ValueRef<'_>) -> FromSqlResult<Self> {
        value
            .as_str()?
            .parse()
            .map_err(|e: Error| FromSqlError::Other(Box::new(e)))
    }
}

impl FromSql for DeliveryStatus {
    fn column_result(value: ValueRef<'_>) -> FromSqlResult<Self> {
        let s = value.as_str()?;
        DeliveryStatus::parse(s).ok_or_else(|| FromSqlError::Other(format!("status `{s}`").into()))
    }
}

/// One score to record: who, which tier, and the instant the score describes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Observation<'a> {
    /// The customer scored.
    pub customer_id: &'a str,
    /// The tier of the new score.
    pub tier: Tier,
    /// The score's `as_of` (the cooldown and staleness are measured in these).
    pub as_of: Ts,
}

/// A score the policy decided to alert on, handed to the caller to build the [`Alert`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Transition<'a> {
    /// Position of the observation in the slice given to [`Outbox::record_many`] (0 for
    /// [`Outbox::record`]), so the caller can find the row's probability and reasons.
    pub index: usize,
    /// The customer.
    pub customer_id: &'a str,
    /// The tier entered.
    pub tier: Tier,
    /// The tier of the customer's previous score (`None`: first seen).
    pub previous: Option<Tier>,
    /// The score's `as_of`.
    pub as_of: Ts,
}

impl Transition<'_> {
    /// The alert for this transition, without reasons or summary yet.
    pub fn alert(&self, model: ModelRef, churn_probability: f64, source: &str) -> Alert {
        Alert::new(
            model,
            self.customer_id,
            churn_probability,
            self.tier,
            self.previous,
            self.as_of,
            source,
        )
    }
}

/// What [`Outbox::record_many`] did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RecordSummary {
    /// Observations given.
    pub observed: usize,
    /// Observations the policy alerted on.
    pub raised: usize,
    /// Alerts newly stored (`raised` minus those whose key was already in the outbox).
    pub inserted: usize,
    /// Observations ignored because the customer has a newer score.
    pub stale: usize,
    /// Observations that confirmed the stored state and were not written.
    pub unchanged: usize,
}

/// A delivery that is due now, claimed for one sink.
#[derive(Clone, Debug, PartialEq)]
pub struct Due {
    /// The alert to deliver.
    pub alert: Alert,
    /// The sink's name.
    pub sink: String,
    /// Attempts already made to this sink.
    pub attempts: u32,
}

/// The delivery of one alert to one sink, as stored.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DeliveryRecord {
    /// The sink's name.
    pub sink: String,
    /// Where it stands.
    pub status: DeliveryStatus,
    /// Attempts made so far.
    pub attempts: u32,
    /// The last failure's message.
    pub last_error: Option<String>,
    /// When the next attempt is due (epoch milliseconds), while pending.
    pub next_attempt_ms: i64,
}

/// Alerts by overall status: `pending` until every sink has accepted or given up on it;
/// then `dead` if any sink gave up, else `delivered`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct OutboxCounts {
    /// Alerts not yet through every sink.
    pub pending: u64,
    /// Alerts accepted by every sink.
    pub delivered: u64,
    /// Alerts at least one sink gave up on.
    pub dead: u64,
}

struct Db {
    conn: Connection,
    /// Per sink, the highest alert `seq` already fanned out into `deliveries`.
    fanned_out: HashMap<String, i64>,
    /// Whether `conn` is at `synchronous=FULL` (else NORMAL).
    full_sync: bool,
}

/// Customer states read recently by [`Outbox::needs_recording`], so that a customer
/// scored again and again costs no database read. A customer's entry goes when this
/// process writes their state; everything goes when the file's `data_version` shows
/// another process's commit (checked at most every [`CACHE_CHECK`]); capped at
/// [`CACHE_MAX`] customers.
#[derive(Default)]
struct StateCache {
    states: HashMap<String, Option<CustomerState>, BuildHasherDefault<FxHasher>>,
    /// Bumped at every emptying: a read that started before one is not cached.
    generation: u64,
    /// The file's `data_version` as last seen, and when.
    data_version: Option<i64>,
    checked: Option<Instant>,
}

/// How stale a cached state may be with respect to another process's commit.
const CACHE_CHECK: Duration = Duration::from_millis(100);
/// Most customers kept in the state cache.
const CACHE_MAX: usize = 262_144;

struct Inner {
    path: PathBuf,
    db: Mutex<Db>,
    readers: Vec<Mutex<Connection>>,
    next_reader: AtomicUsize,
    cache: Mutex<StateCache>,
    counters: Arc<AlertCounters>,
    notify: Arc<Notify>,
}

/// The alert outbox: cheap to clone (all clones share one connection and the counters).
#[derive(Clone)]
pub struct Outbox {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Outbox {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Outbox")
            .field("path", &self.inner.path)
            .finish_non_exhaustive()
    }
}

trait Ctx<T> {
    fn ctx(self, what: &str) -> Result<T>;
}

impl<T> Ctx<T> for rusqlite::Result<T> {
    fn ctx(self, what: &str) -> Result<T> {
        self.map_err(|e| Error::Outbox(format!("{what}: {e}")))
    }
}

impl Outbox {
    /// Opens (creating if needed, with its parent directory) the outbox file, in WAL mode
    /// with `synchronous=FULL`, and creates or checks its tables.
    pub fn open(path: impl AsRef<Path>) -> Result<Outbox> {
        let path = path.as_ref().to_path_buf();
        let shown = path.display().to_string();
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
        }
        let mut conn = Connection::open(&path).ctx(&format!("opening {shown}"))?;
        conn.busy_timeout(BUSY_TIMEOUT).ctx(&shown)?;
        let mode: String = conn
            .pragma_update_and_check(None, "journal_mode", "WAL", |r| r.get(0))
            .ctx(&format!("{shown}: setting WAL mode"))?;
        if !mode.eq_ignore_ascii_case("wal") {
            return Err(Error::Outbox(format!(
                "{shown}: the journal mode is `{mode}`, not WAL: the outbox must be a file on a local disk"
            )));
        }
        conn.pragma_update(None, "synchronous", "FULL")
            .ctx(&shown)?;
        // A bigger page cache keeps a night's million state updates off the disk until commit.
        conn.pragma_update(None, "cache_size", -65_536)
            .ctx(&shown)?;
        // After such a night the WAL is tens of MB: shrink it back once checkpointed.
        conn.pragma_update(None, "journal_size_limit", 64 * 1024 * 1024)
            .ctx(&shown)?;
        let version: i64 = conn
            .pragma_query_value(None, "user_version", |r| r.get(0))
            .ctx(&shown)?;
        if version > SCHEMA_VERSION {
            return Err(Error::Outbox(format!(
                "{shown}: layout version {version} was written by a newer churnguard (this one reads {SCHEMA_VERSION})"
            )));
        }
        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .ctx(&shown)?;
        tx.execute_batch(SCHEMA)
            .ctx(&format!("{shown}: creating tables"))?;
        tx.pragma_update(None, "user_version", SCHEMA_VERSION)
            .ctx(&shown)?;
        tx.commit().ctx(&shown)?;
        let readers = (0..READERS)
            .map(|_| {
                let reader = Connection::open(&path).ctx(&format!("opening {shown}"))?;
                reader.busy_timeout(BUSY_TIMEOUT).ctx(&shown)?;
                reader.pragma_update(None, "query_only", true).ctx(&shown)?;
                Ok(Mutex::new(reader))
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(Outbox {
            inner: Arc::new(Inner {
                path,
                db: Mutex::new(Db {
                    conn,
                    fanned_out: HashMap::new(),
                    full_sync: true,
                }),
                readers,
                next_reader: AtomicUsize::new(0),
                cache: Mutex::default(),
                counters: Arc::default(),
                notify: Arc::default(),
            }),
        })
    }

    /// The file this outbox lives in.
    pub fn path(&self) -> &Path {
        &self.inner.path
    }

    /// Counters shared with the dispatcher (`raised` is counted here).
    pub fn counters(&self) -> Arc<AlertCounters> {
        Arc::clone(&self.inner.counters)
    }

    /// Notified whenever this process stores a new alert; the dispatcher waits on it.
    pub fn notifier(&self) -> Arc<Notify> {
        Arc::clone(&self.inner.notify)
    }

    fn lock(&self) -> MutexGuard<'_, Db> {
        // A panic while holding the lock rolled its transaction back (Transaction's Drop):
        // the connection is consistent, so the poison carries no information.
        self.inner.db.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A read-only connection: the first free one from a rotating start, else wait for one.
    fn reader(&self) -> MutexGuard<'_, Connection> {
        let readers = &self.inner.readers;
        let start = self.inner.next_reader.fetch_add(1, Ordering::Relaxed);
        for i in 0..readers.len() {
            match readers[(start + i) % readers.len()].try_lock() {
                Ok(guard) => return guard,
                Err(std::sync::TryLockError::Poisoned(e)) => return e.into_inner(),
                Err(std::sync::TryLockError::WouldBlock) => {}
            }
        }
        readers[start % readers.len()]
            .lock()
            .unwrap_or_else(|e| e.into_inner())
    }

    /// Whether recording these scores would write anything (a new tier, an alert), read
    /// without taking the writer: when it says no, [`Outbox::record_many`] would only
    /// have confirmed the stored states, and a caller may skip it. A writer racing with
    /// this check is serialised after it, which is a valid order of the two.
    pub fn needs_recording(
        &self,
        policy: &AlertPolicy,
        observations: &[Observation<'_>],
    ) -> Result<bool> {
        self.check_foreign_commits()?;
        for (i, obs) in observations.iter().enumerate() {
            if observations[..i]
                .iter()
                .any(|o| o.customer_id == obs.customer_id)
            {
                // Listed twice: the second decision depends on the first's write.
                return Ok(true);
            }
            let last = self.cached_state(obs.customer_id)?;
            if let Step::Write { .. } = policy.step(last.as_ref(), obs.tier, obs.as_of) {
                return Ok(true);
            }
        }
        Ok(false)
    }

    fn cache(&self) -> MutexGuard<'_, StateCache> {
        self.inner.cache.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A customer's state from the cache, else from a reader (then cached, unless the
    /// cache was emptied meanwhile: the read may predate that write).
    fn cached_state(&self, customer_id: &str) -> Result<Option<CustomerState>> {
        let generation = {
            let cache = self.cache();
            if let Some(state) = cache.states.get(customer_id) {
                return Ok(*state);
            }
            cache.generation
        };
        let state = self.state(customer_id)?;
        let mut cache = self.cache();
        if cache.generation == generation {
            if cache.states.len() >= CACHE_MAX {
                cache.states.clear();
            }
            cache.states.insert(customer_id.to_owned(), state);
        }
        Ok(state)
    }

    /// Drops the cached states of customers this process just wrote (all of them for a
    /// big recording), so that reads in flight are not cached either.
    fn forget_states(&self, observations: &[Observation<'_>]) {
        let mut cache = self.cache();
        if observations.len() > SMALL_RECORDING {
            cache.states.clear();
        } else {
            for obs in observations {
                cache.states.remove(obs.customer_id);
            }
        }
        cache.generation += 1;
    }

    /// Empties the cache when another process committed since the last look; looks at
    /// most every [`CACHE_CHECK`]. The writer's connection asks: its `data_version`
    /// moves only with other connections' commits, not with this process's own.
    fn check_foreign_commits(&self) -> Result<()> {
        let now = Instant::now();
        if self
            .cache()
            .checked
            .is_some_and(|at| now.duration_since(at) < CACHE_CHECK)
        {
            return Ok(());
        }
        // A writer busy committing is not waited for: the next call looks again.
        let db = match self.inner.db.try_lock() {
            Ok(db) => db,
            Err(std::sync::TryLockError::Poisoned(e)) => e.into_inner(),
            Err(std::sync::TryLockError::WouldBlock) => return Ok(()),
        };
        let version: i64 = db
            .conn
            .pragma_query_value(None, "data_version", |r| r.get(0))
            .ctx("reading the outbox's data version")?;
        drop(db);
        let mut cache = self.cache();
        if cache.data_version != Some(version) {
            cache.states.clear();
            cache.generation += 1;
            cache.data_version = Some(version);
        }
        cache.checked = Some(now);
        Ok(())
    }

    /// Records one score: in one committed transaction, updates the customer's state and,
    /// if `policy` alerts, stores the alert `build` makes (once per idempotency key).
    /// Returns the alert when the policy raised one, even if an identical key was
    /// already stored (a re-run): the outbox then keeps the first.
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
            let alert = (build.take().expect("one observation, one transition"))(t);
            raised = Some(alert.clone());
            alert
        };
        let summary = self.record_with(policy, std::slice::from_ref(&obs), &mut one, false)?;
        debug_assert!(summary.raised <= 1);
        Ok(raised)
    }

    /// Records many scores (the nightly run) in ONE transaction: either every state and
    /// alert is stored or none is. `build` is called for each transition the policy
    /// alerts on; [`Transition::index`] points into `observations`.
    pub fn record_many<F>(
        &self,
        policy: &AlertPolicy,
        observations: &[Observation<'_>],
        mut build: F,
    ) -> Result<RecordSummary>
    where
        F: FnMut(&Transition<'_>) -> Alert,
    {
        self.record_with(
            policy,
            observations,
            &mut build,
            observations.len() > SMALL_RECORDING,
        )
    }

    /// [`Outbox::record_many`] for scores gathered from concurrent requests (the
    /// service's group commit): whatever their number, the transaction commits without
    /// fsync unless it stores an alert.
    pub fn record_group<F>(
        &self,
        policy: &AlertPolicy,
        observations: &[Observation<'_>],
        mut build: F,
    ) -> Result<RecordSummary>
    where
        F: FnMut(&Transition<'_>) -> Alert,
    {
        self.record_with(policy, observations, &mut build, false)
    }

    fn record_with(
        &self,
        policy: &AlertPolicy,
        observations: &[Observation<'_>],
        build: &mut dyn FnMut(&Transition<'_>) -> Alert,
        mut full_sync: bool,
    ) -> Result<RecordSummary> {
        let mut db = self.lock();
        loop {
            if db.full_sync != full_sync {
                // Outside any transaction: SQLite refuses to change it inside one.
                db.conn
                    .pragma_update(
                        None,
                        "synchronous",
                        if full_sync { "FULL" } else { "NORMAL" },
                    )
                    .ctx("setting the commit durability")?;
                db.full_sync = full_sync;
            }
            match Self::try_record(&mut db.conn, policy, observations, build, full_sync)? {
                Some(summary) => {
                    drop(db);
                    if summary.observed > summary.stale + summary.unchanged {
                        self.forget_states(observations);
                    }
                    self.after_insert(summary.inserted);
                    return Ok(summary);
                }
                // An alert under NORMAL: rolled back, redone with an fsynced commit.
                None => full_sync = true,
            }
        }
    }

    /// One recording transaction; `None` (rolled back) if it would store an alert
    /// without `full_sync`.
    fn try_record(
        conn: &mut Connection,
        policy: &AlertPolicy,
        observations: &[Observation<'_>],
        build: &mut dyn FnMut(&Transition<'_>) -> Alert,
        full_sync: bool,
    ) -> Result<Option<RecordSummary>> {
        let now = now_secs();
        let mut summary = RecordSummary {
            observed: observations.len(),
            ..RecordSummary::default()
        };
        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .ctx("starting the recording transaction")?;
        {
            let mut get = tx.prepare_cached(GET_STATE).ctx("preparing")?;
            let mut put = tx.prepare_cached(PUT_STATE).ctx("preparing")?;
            let mut insert = tx.prepare_cached(INSERT_ALERT).ctx("preparing")?;
            // Visiting customers in key order keeps the B-tree pages hot: a million
            // updates in random order are several times slower. The sort is stable, so a
            // customer listed twice is still recorded in the given order.
            let mut order: Vec<usize> = (0..observations.len()).collect();
            order.sort_by(|&a, &b| observations[a].customer_id.cmp(observations[b].customer_id));
            for index in order {
                let obs = &observations[index];
                let last = get
                    .query_row([obs.customer_id], state_from_row)
                    .optional()
                    .ctx("reading a customer's state")?;
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
                if decision.is_raise() && !full_sync {
                    return Ok(None);
                }
                put.execute(params![
                    obs.customer_id,
                    next.last_tier,
                    next.last_scored_at,
                    next.last_alert_at,
                    next.last_alert_tier
                ])
                .ctx("writing a customer's state")?;
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
                    summary.inserted += insert_alert(&mut insert, &alert, now)?;
                }
            }
        }
        tx.commit().ctx("committing the recorded scores")?;
        Ok(Some(summary))
    }

    fn after_insert(&self, inserted: usize) {
        if inserted > 0 {
            self.inner
                .counters
                .raised
                .fetch_add(inserted as u64, std::sync::atomic::Ordering::Relaxed);
            self.inner.notify.notify_one();
        }
    }

    /// Stores an alert without consulting the policy or touching customer state (a
    /// manual re-send, a test). Returns whether it was new (false: its key was there).
    pub fn insert(&self, alert: &Alert) -> Result<bool> {
        let db = self.lock();
        let mut stmt = db.conn.prepare_cached(INSERT_ALERT).ctx("preparing")?;
        let inserted = insert_alert(&mut stmt, alert, now_secs())? == 1;
        drop(stmt);
        drop(db);
        self.after_insert(usize::from(inserted));
        Ok(inserted)
    }

    /// The stored state of one customer.
    pub fn state(&self, customer_id: &str) -> Result<Option<CustomerState>> {
        self.reader()
            .prepare_cached(GET_STATE)
            .ctx("preparing")?
            .query_row([customer_id], state_from_row)
            .optional()
            .ctx("reading a customer's state")
    }

    /// Up to `limit` alerts not yet through every sink, oldest first.
    pub fn pending(&self, limit: usize) -> Result<Vec<Alert>> {
        let db = self.lock();
        let mut stmt = db
            .conn
            .prepare_cached(
                "SELECT payload FROM alerts WHERE status = 'pending' ORDER BY seq LIMIT ?1",
            )
            .ctx("preparing")?;
        let rows = stmt
            .query_map([limit_sql(limit)], |r| r.get::<_, String>(0))
            .ctx("listing pending alerts")?;
        rows.map(|payload| {
            let payload = payload.ctx("listing pending alerts")?;
            serde_json::from_str(&payload)
                .map_err(|e| Error::Outbox(format!("a stored alert is not valid JSON: {e}")))
        })
        .collect()
    }

    /// Claims up to `limit` deliveries due at `now_ms` for the named sinks, oldest due
    /// first. Alerts still pending get a delivery row for each sink that lacks one first
    /// (so a sink added later receives only alerts not yet finished). A claimed delivery
    /// is not due again for `lease_ms`: another dispatcher on the same file does not send
    /// it concurrently, and after a crash it is retried once the lease expires. A stored
    /// alert that no longer parses is dead-lettered here.
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
        let mut guard = self.lock();
        let db = &mut *guard;
        let tx = db
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .ctx("starting a claim")?;
        let max_seq: i64 = tx
            .query_row("SELECT coalesce(max(seq), 0) FROM alerts", [], |r| r.get(0))
            .ctx("reading the newest alert")?;
        let mut fanned = Vec::new();
        for &sink in sinks {
            let from = db.fanned_out.get(sink).copied().unwrap_or(0);
            if from < max_seq {
                tx.prepare_cached(
                    "INSERT OR IGNORE INTO deliveries \
                     (idempotency_key, sink, status, attempts, next_attempt_ms, updated_at) \
                     SELECT idempotency_key, ?1, 'pending', 0, 0, ?2 FROM alerts \
                     WHERE status = 'pending' AND seq > ?3 AND seq <= ?4",
                )
                .ctx("preparing")?
                .execute(params![sink, now, from, max_seq])
                .ctx("creating delivery rows")?;
                fanned.push(sink);
            }
        }
        let placeholders = vec!["?"; sinks.len()].join(", ");
        let sql = format!(
            "SELECT d.idempotency_key, d.sink, d.attempts, a.payload \
             FROM deliveries d JOIN alerts a ON a.idempotency_key = d.idempotency_key \
             WHERE d.status = 'pending' AND d.next_attempt_ms <= ? AND d.sink IN ({placeholders}) \
             ORDER BY d.next_attempt_ms, a.seq LIMIT ?"
        );
        let mut args: Vec<&dyn ToSql> = vec![&now_ms];
        args.extend(sinks.iter().map(|s| s as &dyn ToSql));
        let limit = limit_sql(limit);
        args.push(&limit);
        let rows: Vec<(String, String, u32, String)> = {
            let mut stmt = tx.prepare_cached(&sql).ctx("preparing")?;
            let rows = stmt
                .query_map(args.as_slice(), |r| {
                    Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?))
                })
                .ctx("finding due deliveries")?;
            rows.collect::<rusqlite::Result<_>>()
                .ctx("finding due deliveries")?
        };
        let mut due = Vec::with_capacity(rows.len());
        for (key, sink, attempts, payload) in rows {
            match serde_json::from_str::<Alert>(&payload) {
                Ok(alert) => {
                    tx.prepare_cached(
                        "UPDATE deliveries SET next_attempt_ms = ?3, updated_at = ?4 \
                         WHERE idempotency_key = ?1 AND sink = ?2",
                    )
                    .ctx("preparing")?
                    .execute(params![key, sink, now_ms.saturating_add(lease_ms), now])
                    .ctx("claiming a delivery")?;
                    due.push(Due {
                        alert,
                        sink,
                        attempts,
                    });
                }
                Err(e) => {
                    tracing::error!(idempotency_key = %key, sink = %sink, error = %e,
                        "stored alert is not valid JSON: dead-lettered");
                    mark_in_tx(
                        &tx,
                        &key,
                        &sink,
                        DeliveryStatus::Dead,
                        Some(&format!("stored payload is not a valid alert: {e}")),
                        0,
                        now,
                    )?;
                    self.inner
                        .counters
                        .dead
                        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                }
            }
        }
        tx.commit().ctx("committing a claim")?;
        for sink in fanned {
            db.fanned_out.insert(sink.to_string(), max_seq);
        }
        Ok(due)
    }

    /// Records that `sink` accepted the alert `key`.
    pub fn mark_delivered(&self, key: &str, sink: &str) -> Result<()> {
        self.mark(key, sink, DeliveryStatus::Delivered, None)
    }

    /// Records that `sink` refused the alert `key` for good: dead-lettered.
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
        let mut db = self.lock();
        let tx = db
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .ctx("starting a delivery update")?;
        mark_in_tx(&tx, key, sink, status, error, 0, now_secs())?;
        tx.commit().ctx("committing a delivery update")
    }

    /// Records a failed attempt of `sink` on the alert `key`: retried at `next_attempt_ms`
    /// (epoch milliseconds), or dead-lettered if this was attempt `max_attempts`.
    /// Returns the delivery's status afterwards.
    pub fn mark_failed(
        &self,
        key: &str,
        sink: &str,
        error: &str,
        next_attempt_ms: i64,
        max_attempts: u32,
    ) -> Result<DeliveryStatus> {
        let now = now_secs();
        let mut db = self.lock();
        let tx = db
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .ctx("starting a delivery update")?;
        let changed = tx
            .prepare_cached(MARK_FAILED)
            .ctx("preparing")?
            .execute(params![
                key,
                sink,
                error,
                next_attempt_ms,
                max_attempts,
                now
            ])
            .ctx("recording a failed delivery")?;
        ensure_alert_exists(&tx, key, changed)?;
        let status: DeliveryStatus = tx
            .query_row(
                "SELECT status FROM deliveries WHERE idempotency_key = ?1 AND sink = ?2",
                params![key, sink],
                |r| r.get(0),
            )
            .ctx("reading a delivery")?;
        close_if_done(&tx, key, now)?;
        tx.commit().ctx("committing a delivery update")?;
        Ok(status)
    }

    /// The deliveries of one alert, by sink name.
    pub fn deliveries(&self, key: &str) -> Result<Vec<DeliveryRecord>> {
        let db = self.lock();
        let mut stmt = db
            .conn
            .prepare_cached(
                "SELECT sink, status, attempts, last_error, next_attempt_ms FROM deliveries \
                 WHERE idempotency_key = ?1 ORDER BY sink",
            )
            .ctx("preparing")?;
        let rows = stmt
            .query_map([key], |r| {
                Ok(DeliveryRecord {
                    sink: r.get(0)?,
                    status: r.get(1)?,
                    attempts: r.get(2)?,
                    last_error: r.get(3)?,
                    next_attempt_ms: r.get(4)?,
                })
            })
            .ctx("listing deliveries")?;
        rows.collect::<rusqlite::Result<_>>()
            .ctx("listing deliveries")
    }

    /// Alerts by overall status, for metrics.
    pub fn counts(&self) -> Result<OutboxCounts> {
        let db = self.lock();
        let mut stmt = db
            .conn
            .prepare_cached("SELECT status, count(*) FROM alerts GROUP BY status")
            .ctx("preparing")?;
        let rows = stmt
            .query_map([], |r| {
                Ok((r.get::<_, DeliveryStatus>(0)?, r.get::<_, i64>(1)?))
            })
            .ctx("counting alerts")?;
        let mut counts = OutboxCounts::default();
        for row in rows {
            let (status, n) = row.ctx("counting alerts")?;
            let n = u64::try_from(n).unwrap_or(0);
            match status {
                DeliveryStatus::Pending => counts.pending = n,
                DeliveryStatus::Delivered => counts.delivered = n,
                DeliveryStatus::Dead => counts.dead = n,
            }
        }
        Ok(counts)
    }
}

fn limit_sql(limit: usize) -> i64 {
    i64::try_from(limit).unwrap_or(i64::MAX)
}

fn insert_alert(stmt: &mut rusqlite::CachedStatement<'_>, alert: &Alert, now: Ts) -> Result<usize> {
    if !alert.churn_probability.is_finite() {
        return Err(Error::Outbox(format!(
            "alert for customer `{}` has a non-finite probability",
            alert.customer_id
        )));
    }
    let payload = serde_json::to_string(alert)
        .map_err(|e| Error::Outbox(format!("serialising an alert: {e}")))?;
    stmt.execute(params![
        alert.idempotency_key,
        alert.customer_id,
        alert.tier,
        alert.source,
        payload,
        now
    ])
    .ctx("storing an alert")
}

fn mark_in_tx(
    tx: &Transaction<'_>,
    key: &str,
    sink: &str,
    status: DeliveryStatus,
    error: Option<&str>,
    next_attempt_ms: i64,
    now: Ts,
) -> Result<()> {
    let changed = tx
        .prepare_cached(MARK)
        .ctx("preparing")?
        .execute(params![
            key,
            sink,
            status.as_str(),
            next_attempt_ms,
            error,
            now
        ])
        .ctx("recording a delivery")?;
    ensure_alert_exists(tx, key, changed)?;
    close_if_done(tx, key, now)
}

/// An upsert that changed nothing either found a finished delivery (fine: a late
/// duplicate outcome never reopens it) or no alert with that key (a caller's mistake).
fn ensure_alert_exists(tx: &Transaction<'_>, key: &str, changed: usize) -> Result<()> {
    if changed > 0 {
        return Ok(());
    }
    let exists: bool = tx
        .query_row(
            "SELECT EXISTS (SELECT 1 FROM alerts WHERE idempotency_key = ?1)",
            [key],
            |r| r.get(0),
        )
        .ctx("looking up an alert")?;
    if exists {
        Ok(())
    } else {
        Err(Error::Outbox(format!(
            "no alert with idempotency key `{key}`"
        )))
    }
}

fn close_if_done(tx: &Transaction<'_>, key: &str, now: Ts) -> Result<()> {
    tx.prepare_cached(CLOSE_IF_DONE)
        .ctx("preparing")?
        .execute(params![key, now])
        .ctx("closing a finished alert")?;
    Ok(())
}

/// A customer's state from a `GET_STATE` row.
fn state_from_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<CustomerState> {
    Ok(CustomerState {
        last_tier: r.get(0)?,
        last_scored_at: r.get(1)?,
        last_alert_at: r.get(2)?,
        last_alert_tier: r.get(3)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::time::{parse_ts, DAY};

    fn model() -> ModelRef {
        ModelRef {
            name: "churn".into(),
            version: "v1".into(),
        }
    }

    fn night(d: &str) -> Ts {
        parse_ts(d).unwrap()
    }

    fn build(t: &Transition<'_>) -> Alert {
        t.alert(model(), 0.91, Alert::SOURCE_BATCH)
    }

    /// An empty outbox in its own temporary directory (kept alive by the first value).
    fn fresh() -> (tempfile::TempDir, Outbox) {
        let dir = tempfile::tempdir().unwrap();
        let outbox = Outbox::open(dir.path().join("a.db")).unwrap();
        (dir, outbox)
    }

    fn obs(customer_id: &str, tier: Tier, as_of: Ts) -> Observation<'_> {
        Observation {
            customer_id,
            tier,
            as_of,
        }
    }

    #[test]
    fn opening_sets_wal_mode_and_full_synchronous() {
        let dir = tempfile::tempdir().unwrap();
        let outbox = Outbox::open(dir.path().join("nested/alerts.db")).unwrap();
        let db = outbox.lock();
        let mode: String = db
            .conn
            .pragma_query_value(None, "journal_mode", |r| r.get(0))
            .unwrap();
        let sync: i64 = db
            .conn
            .pragma_query_value(None, "synchronous", |r| r.get(0))
            .unwrap();
        assert_eq!(mode, "wal");
        assert_eq!(sync, 2, "FULL");
    }

    #[test]
    fn a_score_that_crosses_into_the_alert_tier_stores_one_pending_alert() {
        let (_dir, outbox) = fresh();
        let p = AlertPolicy::default();
        assert_eq!(
            outbox
                .record(&p, obs("c1", Tier::Low, night("2024-03-01")), build)
                .unwrap(),
            None
        );
        let alert = outbox
            .record(&p, obs("c1", Tier::High, night("2024-03-02")), build)
            .unwrap()
            .expect("entering high alerts");
        assert_eq!(alert.previous_tier, Some(Tier::Low));
        assert_eq!(outbox.pending(10).unwrap(), vec![alert]);
        assert_eq!(
            outbox.counts().unwrap(),
            OutboxCounts {
                pending: 1,
                delivered: 0,
                dead: 0
            }
        );
        assert_eq!(outbox.counters().snapshot().raised, 1);
    }

    #[test]
    fn recording_the_same_key_twice_inserts_it_once() {
        let (_dir, outbox) = fresh();
        // No cooldown, so a customer flapping within one day raises twice with one key.
        let p = AlertPolicy {
            alert_tier: Tier::High,
            cooldown_days: 0,
        };
        let t = night("2024-03-01");
        let first = outbox.record(&p, obs("c1", Tier::High, t), build).unwrap();
        outbox
            .record(&p, obs("c1", Tier::Low, t + 60), build)
            .unwrap();
        let second = outbox
            .record(&p, obs("c1", Tier::High, t + 120), build)
            .unwrap();
        let (first, second) = (first.unwrap(), second.unwrap());
        assert_eq!(first.idempotency_key, second.idempotency_key);
        assert_eq!(outbox.counts().unwrap().pending, 1);
        assert_eq!(outbox.counters().snapshot().raised, 1);
        assert!(!outbox.insert(&first).unwrap());
        // The stored alert is the first one (same key, first payload wins).
        assert_eq!(outbox.pending(10).unwrap()[0].previous_tier, None);
    }

    #[test]
    fn rerunning_the_same_night_raises_nothing_new() {
        let (_dir, outbox) = fresh();
        let p = AlertPolicy::default();
        let t = night("2024-03-01");
        let batch = [obs("c1", Tier::High, t), obs("c2", Tier::Low, t)];
        let first = outbox.record_many(&p, &batch, build).unwrap();
        let again = outbox.record_many(&p, &batch, build).unwrap();
        assert_eq!((first.raised, first.inserted), (1, 1));
        assert_eq!((again.raised, again.inserted), (0, 0));
        assert_eq!(outbox.counts().unwrap().pending, 1);
    }

    fn sync_level(outbox: &Outbox) -> i64 {
        outbox
            .lock()
            .conn
            .pragma_query_value(None, "synchronous", |r| r.get(0))
            .unwrap()
    }

    #[test]
    fn a_score_that_confirms_the_stored_tier_writes_nothing() {
        let (_dir, outbox) = fresh();
        let p = AlertPolicy::default();
        let t = night("2024-03-01");
        let first = outbox
            .record_many(&p, &[obs("c1", Tier::Medium, t)], build)
            .unwrap();
        assert_eq!((first.observed, first.unchanged, first.stale), (1, 0, 0));
        let stored = outbox.state("c1").unwrap().unwrap();
        assert_eq!((stored.last_tier, stored.last_scored_at), (Tier::Medium, t));
        // A later score at the same tier: nothing to write, the stored time stays.
        let confirm = [obs("c1", Tier::Medium, t + DAY)];
        assert!(!outbox.needs_recording(&p, &confirm).unwrap());
        let again = outbox.record_many(&p, &confirm, build).unwrap();
        assert_eq!((again.unchanged, again.raised), (1, 0));
        assert_eq!(outbox.state("c1").unwrap().unwrap(), stored);
        // A change of tier, a new customer, an alert or a repeated id all need writing.
        for batch in [
            vec![obs("c1", Tier::Low, t + DAY)],
            vec![obs("c2", Tier::Low, t + DAY)],
            vec![obs("c1", Tier::High, t + DAY)],
            vec![
                obs("c1", Tier::Medium, t + DAY),
                obs("c1", Tier::Medium, t + 2 * DAY),
            ],
        ] {
            assert!(outbox.needs_recording(&p, &batch).unwrap(), "{batch:?}");
        }
        // A stale score needs nothing either.
        assert!(!outbox
            .needs_recording(&p, &[obs("c1", Tier::High, t - DAY)])
            .unwrap());
    }

    #[test]
    fn the_state_cache_follows_this_process_at_once_and_others_within_the_check_interval() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.db");
        let (service, nightly) = (Outbox::open(&path).unwrap(), Outbox::open(&path).unwrap());
        let p = AlertPolicy::default();
        let t = night("2024-03-01");
        let medium = [obs("c1", Tier::Medium, t + DAY)];
        service
            .record(&p, obs("c1", Tier::Medium, t), build)
            .unwrap();
        assert!(!service.needs_recording(&p, &medium).unwrap());
        service.record(&p, obs("c2", Tier::Low, t), build).unwrap();
        assert!(!service
            .needs_recording(&p, &[obs("c2", Tier::Low, t + DAY)])
            .unwrap());
        assert!(service.cache().states.contains_key("c1"), "cached");
        // This process's own write is seen at once, and leaves other customers cached.
        service.record(&p, obs("c1", Tier::Low, t), build).unwrap();
        assert!(service.cache().states.contains_key("c2"));
        assert!(service.needs_recording(&p, &medium).unwrap());
        service.record(&p, medium[0], build).unwrap();
        assert!(!service.needs_recording(&p, &medium).unwrap());
        // Another connection's write is seen once the check interval has passed.
        nightly
            .record_many(&p, &[obs("c1", Tier::Low, t + DAY)], build)
            .unwrap();
        std::thread::sleep(CACHE_CHECK + Duration::from_millis(20));
        assert!(service.needs_recording(&p, &medium).unwrap());
        assert_eq!(service.state("c1").unwrap().unwrap().last_tier, Tier::Low);
    }

    #[test]
    fn only_commits_that_store_an_alert_are_fsynced() {
        let (_dir, outbox) = fresh();
        let p = AlertPolicy::default();
        let t = night("2024-03-01");
        // A state-only change from the service: NORMAL.
        outbox
            .record(&p, obs("c1", Tier::Medium, t), build)
            .unwrap();
        assert_eq!(sync_level(&outbox), 1, "NORMAL");
        // An alert: the NORMAL attempt is rolled back and redone under FULL, once.
        let alert = outbox
            .record(&p, obs("c1", Tier::High, t + DAY), build)
            .unwrap()
            .expect("entering high alerts");
        assert_eq!(sync_level(&outbox), 2, "FULL");
        assert_eq!(alert.previous_tier, Some(Tier::Medium));
        assert_eq!(outbox.counts().unwrap().pending, 1);
        assert_eq!(outbox.counters().snapshot().raised, 1);
        // A nightly-sized recording commits with FULL whatever it holds.
        let ids: Vec<String> = (0..=SMALL_RECORDING).map(|i| format!("n{i}")).collect();
        let night_obs: Vec<_> = ids.iter().map(|c| obs(c, Tier::Low, t)).collect();
        outbox
            .record(&p, obs("c2", Tier::Medium, t), build)
            .unwrap();
        assert_eq!(sync_level(&outbox), 1);
        outbox.record_many(&p, &night_obs, build).unwrap();
        assert_eq!(sync_level(&outbox), 2);
    }

    #[test]
    fn customer_state_and_alerts_survive_reopening_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.db");
        let t = night("2024-03-01");
        {
            let outbox = Outbox::open(&path).unwrap();
            outbox
                .record(&AlertPolicy::default(), obs("c1", Tier::High, t), build)
                .unwrap();
        }
        let outbox = Outbox::open(&path).unwrap();
        assert_eq!(
            outbox.state("c1").unwrap(),
            Some(CustomerState {
                last_tier: Tier::High,
                last_scored_at: t,
                last_alert_at: Some(t),
                last_alert_tier: Some(Tier::High),
            })
        );
        assert_eq!(outbox.pending(10).unwrap().len(), 1);
        // The cooldown holds across the restart.
        let p = AlertPolicy::default();
        outbox
            .record(&p, obs("c1", Tier::Low, t + DAY), build)
            .unwrap();
        assert_eq!(
            outbox
                .record(&p, obs("c1", Tier::High, t + 2 * DAY), build)
                .unwrap(),
            None
        );
    }

    #[test]
    fn a_stale_score_leaves_the_state_alone() {
        let (_dir, outbox) = fresh();
        let p = AlertPolicy::default();
        let t = night("2024-03-10");
        outbox
            .record_many(&p, &[obs("c1", Tier::Low, t)], build)
            .unwrap();
        let s = outbox
            .record_many(&p, &[obs("c1", Tier::High, t - DAY)], build)
            .unwrap();
        assert_eq!((s.stale, s.raised), (1, 0));
        assert_eq!(outbox.state("c1").unwrap().unwrap().last_tier, Tier::Low);
    }

    #[test]
    fn an_alert_built_for_another_customer_is_refused_and_nothing_is_stored() {
        let (_dir, outbox) = fresh();
        let t = night("2024-03-01");
        let err = outbox
            .record_many(
                &AlertPolicy::default(),
                &[obs("c1", Tier::Low, t), obs("c2", Tier::High, t)],
                |_| Alert::new(model(), "someone-else", 0.9, Tier::High, None, t, "batch"),
            )
            .unwrap_err();
        assert!(err.to_string().contains("someone-else"), "{err}");
        // The transaction rolled back: not even c1's state was written.
        assert_eq!(outbox.state("c1").unwrap(), None);
        assert_eq!(outbox.counts().unwrap(), OutboxCounts::default());
    }

    #[test]
    fn a_failed_delivery_is_retried_then_dead_lettered_after_max_attempts() {
        let (_dir, outbox) = fresh();
        let alert = Alert::new(model(), "c1", 0.9, Tier::High, None, 0, "batch");
        outbox.insert(&alert).unwrap();
        let key = &alert.idempotency_key;
        let due = outbox.claim_due(&["hook"], 1_000, 10, 5_000).unwrap();
        assert_eq!(due.len(), 1);
        assert_eq!(due[0].attempts, 0);
        // Claimed: not due again within the lease.
        assert!(outbox
            .claim_due(&["hook"], 1_001, 10, 5_000)
            .unwrap()
            .is_empty());
        assert_eq!(
            outbox.mark_failed(key, "hook", "503", 2_000, 3).unwrap(),
            DeliveryStatus::Pending
        );
        assert!(outbox
            .claim_due(&["hook"], 1_999, 10, 5_000)
            .unwrap()
            .is_empty());
        assert_eq!(
            outbox.claim_due(&["hook"], 2_000, 10, 5_000).unwrap()[0].attempts,
            1
        );
        assert_eq!(
            outbox.mark_failed(key, "hook", "503", 3_000, 3).unwrap(),
            DeliveryStatus::Pending
        );
        assert_eq!(
            outbox
                .mark_failed(key, "hook", "still 503", 4_000, 3)
                .unwrap(),
            DeliveryStatus::Dead
        );
        assert!(outbox
            .claim_due(&["hook"], i64::MAX / 2, 10, 0)
            .unwrap()
            .is_empty());
        let d = &outbox.deliveries(key).unwrap()[0];
        assert_eq!((d.status, d.attempts), (DeliveryStatus::Dead, 3));
        assert_eq!(d.last_error.as_deref(), Some("still 503"));
        assert_eq!(outbox.counts().unwrap().dead, 1);
        // A late success never reopens a finished delivery.
        outbox.mark_delivered(key, "hook").unwrap();
        assert_eq!(
            outbox.deliveries(key).unwrap()[0].status,
            DeliveryStatus::Dead
        );
    }

    #[test]
    fn an_alert_is_delivered_once_every_sink_accepted_it() {
        let (_dir, outbox) = fresh();
        let alert = Alert::new(model(), "c1", 0.9, Tier::High, None, 0, "batch");
        outbox.insert(&alert).unwrap();
        let key = &alert.idempotency_key;
        assert_eq!(
            outbox.claim_due(&["a", "b"], 0, 10, 1_000).unwrap().len(),
            2
        );
        outbox.mark_delivered(key, "a").unwrap();
        assert_eq!(outbox.counts().unwrap().pending, 1);
        outbox.mark_delivered(key, "b").unwrap();
        assert_eq!(outbox.counts().unwrap().delivered, 1);
        // A sink added afterwards does not receive finished alerts.
        assert!(outbox
            .claim_due(&["a", "b", "c"], 10_000, 10, 1_000)
            .unwrap()
            .is_empty());
    }

    #[test]
    fn marking_an_unknown_key_is_an_error() {
        let (_dir, outbox) = fresh();
        assert!(outbox.mark_delivered("nope", "a").is_err());
        assert!(outbox.mark_failed("nope", "a", "x", 0, 8).is_err());
    }

    #[test]
    fn a_file_from_a_newer_layout_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.db");
        drop(Outbox::open(&path).unwrap());
        let conn = Connection::open(&path).unwrap();
        conn.pragma_update(None, "user_version", 99).unwrap();
        drop(conn);
        let err = Outbox::open(&path).unwrap_err().to_string();
        assert!(err.contains("newer"), "{err}");
    }

    /// Measures the nightly workload: `n` customers in one `record_many` transaction,
    /// first night (inserts) and second night (updates), in a shuffled id order.
    fn tier_of(i: usize, night: usize) -> Tier {
        match (i * 7 + night * 13) % 100 {
            0..=79 => Tier::Low,
            80..=94 => Tier::Medium,
            _ => Tier::High,
        }
    }

    fn measure(n: usize) -> (Duration, Duration, RecordSummary) {
        use rand::seq::SliceRandom;
        use rand::SeedableRng;
        let (_dir, outbox) = fresh();
        let p = AlertPolicy::default();
        let mut ids: Vec<String> = (0..n).map(|i| format!("cust-{i:08}")).collect();
        ids.shuffle(&mut rand_chacha::ChaCha8Rng::seed_from_u64(7));
        let mut times = Vec::new();
        let mut last = RecordSummary::default();
        for night_i in 0..2 {
            let as_of = night("2024-03-01") + night_i as i64 * DAY;
            let batch: Vec<Observation<'_>> = ids
                .iter()
                .enumerate()
                .map(|(i, id)| obs(id, tier_of(i, night_i), as_of))
                .collect();
            let started = std::time::Instant::now();
            last = outbox.record_many(&p, &batch, build).unwrap();
            times.push(started.elapsed());
            assert_eq!(last.observed, n);
        }
        (times[0], times[1], last)
    }

    #[test]
    fn a_second_night_of_fifty_thousand_writes_only_the_changed_tiers() {
        let n = 50_000;
        let (first, second, s) = measure(n);
        eprintln!("50k scores: first night {first:?}, second night {second:?}, {s:?}");
        let same = (0..n).filter(|&i| tier_of(i, 0) == tier_of(i, 1)).count();
        let entering_high = (0..n)
            .filter(|&i| tier_of(i, 1) == Tier::High && tier_of(i, 0) != Tier::High)
            .count();
        assert!(entering_high > 0 && same > 0);
        assert_eq!((s.unchanged, s.stale), (same, 0));
        assert_eq!((s.raised, s.inserted), (entering_high, entering_high));
    }
}
