//! The durable outbox: each customer's alert state, every alert raised and its delivery
//! status per sink, behind one interface ([`Outbox`]) with two backends: one SQLite
//! file (WAL, `synchronous=FULL`; the embedded default, described below) and a
//! PostgreSQL database shared by several hosts (`pg`, which keeps these semantics with
//! compare-and-set recordings and row locks; see its module doc).
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
//!
//! The parts, by job: `schema` (the file layout, its version and the column encodings),
//! `cache` (customer states read without the writer), `record` (scores in, alerts out,
//! one transaction), `deliver` (fan-out to sinks, claims, outcomes), `nights` (each
//! nightly run, successful or refused, recorded with the state it produced) and `prune`
//! (retention); `pg` is the statements of all of it on PostgreSQL. What does not depend
//! on the database is written once: the recording entry points and counters here, the
//! decisions in `record::decide`, the delivery policy in `deliver::Outcome`.

// First: its `both_backends!` macro is used by the modules below.
#[cfg(test)]
#[macro_use]
mod test_support;

mod cache;
mod deliver;
mod nights;
mod pg;
mod prune;
mod record;
mod schema;

pub use deliver::{DeliveryRecord, DeliveryStatus, Due, OutboxCounts, OutboxDepth, Redriven};
pub use nights::{Night, NightFiles, NightlyHealth, Refusals};
pub use prune::{Pruned, DEFAULT_RETENTION_DAYS};
pub use record::{Observation, RecordSummary, Transition};

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use rusqlite::Connection;
use tokio::sync::Notify;

use super::policy::{AlertPolicy, CustomerState};
use super::{Alert, AlertCounters};
use crate::time::Ts;
use crate::{Error, Result};
use cache::StateCache;

/// How long a writer waits for another process's transaction before failing.
pub const BUSY_TIMEOUT: Duration = Duration::from_secs(60);

/// Read-only connections per [`Outbox`]: enough that the service's worker threads
/// rarely wait for one.
const READERS: usize = 4;

/// Recordings of at most this many scores (the service's) try `synchronous=NORMAL`
/// first and switch to FULL only when they store an alert; bigger ones (the nightly
/// run, one transaction) commit with FULL directly.
const SMALL_RECORDING: usize = 64;

struct Db {
    conn: Connection,
    /// Per sink, the highest alert `seq` already fanned out into `deliveries`.
    fanned_out: HashMap<String, i64>,
    /// Whether `conn` is at `synchronous=FULL` (else NORMAL).
    full_sync: bool,
}

struct Inner {
    path: PathBuf,
    db: Mutex<Db>,
    readers: Vec<Mutex<Connection>>,
    next_reader: AtomicUsize,
    cache: Mutex<StateCache>,
}

/// The SQLite backend: cheap to clone (all clones share one connection).
#[derive(Clone)]
pub(super) struct Sqlite {
    inner: Arc<Inner>,
}

trait Ctx<T> {
    fn ctx(self, what: &str) -> Result<T>;
}

impl<T> Ctx<T> for rusqlite::Result<T> {
    fn ctx(self, what: &str) -> Result<T> {
        self.map_err(|source| Error::OutboxDb {
            context: what.to_string(),
            source,
        })
    }
}

impl Sqlite {
    /// Opens (creating if needed, with its parent directory) the outbox file, in WAL mode
    /// with `synchronous=FULL`, and creates or checks its tables.
    pub fn open(path: impl AsRef<Path>) -> Result<Sqlite> {
        let path = path.as_ref().to_path_buf();
        let shown = path.display().to_string();
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
        }
        let conn = schema::open_writer(&path, &shown)?;
        let readers = (0..READERS)
            .map(|_| Ok(Mutex::new(schema::open_reader(&path, &shown)?)))
            .collect::<Result<Vec<_>>>()?;
        Ok(Sqlite {
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
            }),
        })
    }

    /// The file this outbox lives in.
    pub fn path(&self) -> &Path {
        &self.inner.path
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
}

/// The alert outbox: one interface over two databases. SQLite (a file path) is the
/// embedded default for one host; PostgreSQL (a `postgres://` or `postgresql://` URL) is
/// shared by several service replicas and the nightly batch on several hosts. Cheap to
/// clone: clones share the connections and the counters.
///
/// What is the same on both (the recording entry points, the counters, waking the
/// dispatcher) lives here once; each backend implements the statements.
#[derive(Clone)]
pub struct Outbox {
    backend: Backend,
    counters: Arc<AlertCounters>,
    notify: Arc<Notify>,
}

#[derive(Clone)]
enum Backend {
    Sqlite(Sqlite),
    Postgres(pg::Postgres),
}

impl std::fmt::Debug for Outbox {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Outbox")
            .field("path", &self.path())
            .finish_non_exhaustive()
    }
}

/// Whether an `--outbox` value names a PostgreSQL database rather than a file.
pub fn is_postgres_url(target: &str) -> bool {
    target.starts_with("postgres://") || target.starts_with("postgresql://")
}

/// Calls the same method on whichever backend this outbox is.
macro_rules! on_backend {
    ($self:ident, $b:ident => $call:expr) => {
        match &$self.backend {
            Backend::Sqlite($b) => $call,
            Backend::Postgres($b) => $call,
        }
    };
}

impl Outbox {
    /// Opens the outbox `target` names: a `postgres://` / `postgresql://` URL (libpq's
    /// URL form: user, password, host, port, database, `?options=...`) opens PostgreSQL
    /// and applies its migrations; anything else is a file path, opened (created if
    /// needed, with its parent directory) as SQLite in WAL mode with `synchronous=FULL`.
    pub fn open(target: impl AsRef<Path>) -> Result<Outbox> {
        let target = target.as_ref();
        let backend = match target.to_str() {
            Some(url) if is_postgres_url(url) => Backend::Postgres(pg::Postgres::open(url)?),
            _ => Backend::Sqlite(Sqlite::open(target)?),
        };
        Ok(Outbox {
            backend,
            counters: Arc::default(),
            notify: Arc::default(),
        })
    }

    /// Counts alerts newly stored by this process and wakes its dispatcher.
    fn stored(&self, inserted: usize) {
        if inserted > 0 {
            self.counters
                .raised
                .fetch_add(inserted as u64, Ordering::Relaxed);
            self.notify.notify_one();
        }
    }

    /// One recording on whichever backend; `durable`: commit with an fsync even when no
    /// alert is stored (SQLite; PostgreSQL commits as its server's `synchronous_commit`
    /// says, always).
    fn record_with(
        &self,
        policy: &AlertPolicy,
        observations: &[Observation<'_>],
        build: &mut dyn FnMut(&Transition<'_>) -> Alert,
        durable: bool,
        night: Option<(&Night, &mut record::StageFiles<'_>)>,
    ) -> Result<RecordSummary> {
        let summary =
            on_backend!(self, b => b.record_with(policy, observations, build, durable, night))?;
        self.stored(summary.inserted);
        Ok(summary)
    }

    /// The file this outbox lives in, or its PostgreSQL URL without the password.
    pub fn path(&self) -> &Path {
        on_backend!(self, b => b.path())
    }

    /// Counters shared with the dispatcher (`raised` is counted here).
    pub fn counters(&self) -> Arc<AlertCounters> {
        Arc::clone(&self.counters)
    }

    /// Notified whenever this process stores a new alert; the dispatcher waits on it.
    pub fn notifier(&self) -> Arc<Notify> {
        Arc::clone(&self.notify)
    }

    /// Whether recording these scores would write anything (a new tier, an alert), read
    /// without taking the writer, from a cache of recently read states that follows
    /// other processes' commits within 100 ms (SQLite) or as their notifications arrive
    /// (PostgreSQL; the rule is in `pg`'s module doc): when it says no,
    /// [`Outbox::record_many`] would only have confirmed the stored states, and a
    /// caller may skip it.
    pub fn needs_recording(
        &self,
        policy: &AlertPolicy,
        observations: &[Observation<'_>],
    ) -> Result<bool> {
        on_backend!(self, b => b.needs_recording(policy, observations))
    }

    /// Records one score: in one committed transaction, updates the customer's state and,
    /// if `policy` alerts, stores the alert `build` makes (once per idempotency key).
    /// Returns the alert when the policy raised one, even if an identical key was
    /// already stored (a re-run): the outbox then keeps the first.
    pub fn record<F>(
        &self,
        policy: &AlertPolicy,
        obs: Observation<'_>,
        mut build: F,
    ) -> Result<Option<Alert>>
    where
        F: FnMut(&Transition<'_>) -> Alert,
    {
        // A retried recording (PostgreSQL) decides again, maybe otherwise: the alert of
        // the attempt that committed is the one.
        let mut raised = None;
        let mut one = |t: &Transition<'_>| {
            let alert = build(t);
            raised = Some(alert.clone());
            alert
        };
        let summary =
            self.record_with(policy, std::slice::from_ref(&obs), &mut one, false, None)?;
        debug_assert!(summary.raised <= 1);
        Ok(raised.filter(|_| summary.raised == 1))
    }

    /// Records many scores (the nightly run) in ONE transaction: either every state and
    /// alert is stored or none is. `build` is called for each transition the policy
    /// alerts on.
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

    /// [`Outbox::record_many`] for a whole night: `night` (with the alerts stored) is
    /// recorded in the same transaction, and `stage` runs inside it, before the commit,
    /// to stage the night's files (see [`NightFiles`]).
    pub fn record_night<F>(
        &self,
        policy: &AlertPolicy,
        observations: &[Observation<'_>],
        mut build: F,
        night: &Night,
        stage: &mut (dyn FnMut(&RecordSummary) -> Result<NightFiles> + '_),
    ) -> Result<RecordSummary>
    where
        F: FnMut(&Transition<'_>) -> Alert,
    {
        self.record_with(policy, observations, &mut build, true, Some((night, stage)))
    }

    /// [`Outbox::record_many`] for scores gathered from concurrent requests (the
    /// service's group commit): committed without waiting for the disk unless it stores
    /// an alert.
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

    /// Stores an alert without consulting the policy or touching customer state (a
    /// manual re-send, a test). Returns whether it was new (false: its key was there).
    pub fn insert(&self, alert: &Alert) -> Result<bool> {
        let inserted = on_backend!(self, b => b.insert(alert))?;
        self.stored(usize::from(inserted));
        Ok(inserted)
    }

    /// The stored state of one customer.
    pub fn state(&self, customer_id: &str) -> Result<Option<CustomerState>> {
        on_backend!(self, b => b.state(customer_id))
    }

    /// Up to `limit` alerts not yet through every sink, oldest first.
    pub fn pending(&self, limit: usize) -> Result<Vec<Alert>> {
        let payloads = on_backend!(self, b => b.pending(limit))?;
        payloads.iter().map(|p| deliver::parse_stored(p)).collect()
    }

    /// Claims up to `limit` deliveries due at `now_ms` for the named sinks, oldest due
    /// first, after giving every pending alert a delivery row per sink. A claimed
    /// delivery is not due again for `lease_ms`: another dispatcher on the same database
    /// does not send it concurrently, and after a crash it is retried once the lease
    /// expires. A stored alert that no longer parses is dead-lettered here.
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
        let claimed = on_backend!(self, b => b.claim_due(sinks, now_ms, limit, lease_ms))?;
        let mut due = Vec::with_capacity(claimed.len());
        let mut dead = Vec::new();
        for c in claimed {
            match deliver::decode(c) {
                Ok(d) => due.push(d),
                Err(unreadable) => dead.push(unreadable),
            }
        }
        if !dead.is_empty() {
            // Dead-lettered at once: retrying cannot make a stored payload parse.
            on_backend!(self, b => b.dead_letter_unreadable(&dead))?;
            self.counters
                .dead
                .fetch_add(dead.len() as u64, Ordering::Relaxed);
        }
        Ok(due)
    }

    /// Records that `sink` accepted the alert `key`.
    pub fn mark_delivered(&self, key: &str, sink: &str) -> Result<()> {
        on_backend!(self, b => b.mark_delivered(key, sink))
    }

    /// Records that `sink` refused the alert `key` for good: dead-lettered.
    pub fn mark_dead(&self, key: &str, sink: &str, error: &str) -> Result<()> {
        on_backend!(self, b => b.mark_dead(key, sink, error))
    }

    /// Records a failed attempt of `sink` on the alert `key`, made at `now_ms` (epoch
    /// milliseconds): retried at `next_attempt_ms` (but no later than the deadline), or
    /// dead-lettered when `give_up_ms` have passed since the delivery's first attempt.
    /// Returns the delivery's status afterwards.
    pub fn mark_failed(
        &self,
        key: &str,
        sink: &str,
        error: &str,
        now_ms: i64,
        next_attempt_ms: i64,
        give_up_ms: i64,
    ) -> Result<DeliveryStatus> {
        on_backend!(self, b => b.mark_failed(key, sink, error, now_ms, next_attempt_ms, give_up_ms))
    }

    /// Moves dead-lettered alerts back to pending (the given keys, or all of them), with
    /// every dead delivery due at once and a fresh give-up deadline. One transaction; an
    /// unknown key fails the whole call and changes nothing.
    pub fn redrive(&self, keys: Option<&[String]>) -> Result<Redriven> {
        let out = on_backend!(self, b => b.redrive(keys))?;
        if out.redriven > 0 {
            self.notify.notify_one();
        }
        Ok(out)
    }

    /// Alerts pending and dead-lettered, for `/metrics` at each scrape.
    pub fn depth(&self) -> Result<OutboxDepth> {
        on_backend!(self, b => b.depth())
    }

    /// The deliveries of one alert, by sink name.
    pub fn deliveries(&self, key: &str) -> Result<Vec<DeliveryRecord>> {
        on_backend!(self, b => b.deliveries(key))
    }

    /// Alerts by overall status, for metrics.
    pub fn counts(&self) -> Result<OutboxCounts> {
        on_backend!(self, b => b.counts())
    }

    /// Deletes the alerts finished (delivered or dead-lettered) before `before` (UTC
    /// seconds, by their last change) with their deliveries, and gives the space back
    /// (SQLite: `VACUUM` when anything went; PostgreSQL: autovacuum reuses it). Pending
    /// alerts, customer states and nights are kept whatever their age. A key pruned is
    /// forgotten: the same night re-run after that would raise its alert again.
    pub fn prune(&self, before: Ts) -> Result<Pruned> {
        on_backend!(self, b => b.prune(before))
    }

    /// Records a refused night (a successful one goes with its alert state, through
    /// [`Outbox::record_night`]). Touches nothing else.
    pub fn record_refusal(&self, night: &Night) -> Result<()> {
        on_backend!(self, b => b.record_refusal(night))
    }

    /// The latest successful night strictly before `as_of` (so re-running a night
    /// compares with the one before it, never with itself).
    pub fn previous_night(&self, as_of: Ts) -> Result<Option<Night>> {
        on_backend!(self, b => b.previous_night(as_of))
    }

    /// Every recorded night, oldest run first.
    pub fn nights(&self) -> Result<Vec<Night>> {
        on_backend!(self, b => b.nights())
    }

    /// Renames the staged files of committed nights into place (in the order they were
    /// recorded) and forgets them. Returns how many it renamed.
    pub fn finish_night_files(&self) -> Result<usize> {
        on_backend!(self, b => b.finish_night_files())
    }

    /// The nightly runs' health for `/metrics`.
    pub fn nightly_health(&self) -> Result<NightlyHealth> {
        on_backend!(self, b => b.nightly_health())
    }

    /// Refused runs recorded since the latest successful one, by reason.
    pub fn refusals_since_last_success(&self) -> Result<Refusals> {
        on_backend!(self, b => b.refusals_since_last_success())
    }

    /// The SQLite backend, for tests of its connection settings.
    #[cfg(test)]
    fn sqlite(&self) -> &Sqlite {
        match &self.backend {
            Backend::Sqlite(s) => s,
            Backend::Postgres(_) => panic!("an SQLite outbox was expected"),
        }
    }
}
