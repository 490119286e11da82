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
//!
//! The parts, by job: `schema` (the file layout, its version and the column encodings),
//! `cache` (customer states read without the writer), `record` (scores in, alerts out,
//! one transaction), `deliver` (fan-out to sinks, claims, outcomes) and `nights` (each
//! nightly run, successful or refused, recorded with the state it produced).

mod cache;
mod deliver;
mod nights;
mod record;
mod schema;
#[cfg(test)]
mod test_support;

pub use deliver::{DeliveryRecord, DeliveryStatus, Due, OutboxCounts, OutboxDepth, Redriven};
pub use nights::{Night, NightFiles, NightlyHealth, Refusals};
pub use record::{Observation, RecordSummary, Transition};

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use rusqlite::Connection;
use tokio::sync::Notify;

#[cfg(doc)]
use super::policy::CustomerState;
use super::AlertCounters;
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
        self.map_err(|source| Error::OutboxDb {
            context: what.to_string(),
            source,
        })
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
        let conn = schema::open_writer(&path, &shown)?;
        let readers = (0..READERS)
            .map(|_| Ok(Mutex::new(schema::open_reader(&path, &shown)?)))
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
}
