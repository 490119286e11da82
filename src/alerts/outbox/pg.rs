//! The outbox on PostgreSQL, for deployments beyond one host: the same tables, keys and
//! semantics as the SQLite file (see the sibling modules: the decisions and the delivery
//! policy are theirs, shared; only the statements are here), shared by several service
//! replicas and the nightly batch.
//!
//! The driver is the synchronous `postgres` crate (tokio-postgres underneath) rather
//! than sqlx: the outbox's interface is synchronous and its callers already call it from
//! blocking threads (`spawn_blocking`, the service's recorder thread, the batch), so an
//! async driver would only move the blocking elsewhere and change every caller. The
//! calls the service makes on an async worker (`/metrics`' reads and the confirming
//! check's cache misses) go through [`blocking`], since `postgres` refuses to run inside
//! a runtime. Every statement is prepared once per connection.
//!
//! Concurrency, where SQLite had one writer per file:
//! - a small recording (the service's: at most [`SMALL_RECORDING`] scores) is ONE
//!   statement in its own implicit transaction, one round trip: it writes each changed
//!   state only if the stored one is still the one the decision was made on (a
//!   compare-and-set under READ COMMITTED, which re-reads a row another transaction
//!   changed meanwhile), inserts a new customer only if nobody did, stores the alerts,
//!   and fails whole (`serialization_failure`) when any state moved: it is then decided
//!   again on the states read afresh. So each tier transition is decided once, on the
//!   state the other process committed, and a replica's cached states can make a
//!   recording retry but never write a wrong state;
//! - a big recording (the nightly run) locks `customer_state` against other writers
//!   (`SHARE ROW EXCLUSIVE`: readers go on), as its SQLite transaction took the whole
//!   file, then reads, decides and writes in one transaction;
//! - alerts are inserted `ON CONFLICT (idempotency_key) DO NOTHING`: raised once per key;
//! - delivery rows are claimed `FOR UPDATE SKIP LOCKED` and leased (`next_attempt_ms`
//!   pushed `lease_ms` ahead), so a replica killed mid-delivery has its claims taken over
//!   when the lease expires: delivered at least once;
//! - an outcome locks its alert row first, so two sinks finishing at once on two
//!   replicas still close the alert;
//! - migrations are versioned (`churnguard_migrations`), applied at open in one
//!   transaction under an advisory lock, so two processes starting at once do not race.
//!
//! The state cache (the confirming-score path without a round trip): after every commit
//! that changes customers' states, the writer notifies their ids on a channel of the
//! outbox's schema (`NOTIFY` in a transaction of its own, see [`NOTIFY`]; `*` for a big
//! recording), and each process LISTENs on its own connection and evicts them; a
//! notification lost with a writer killed between its commit and its NOTIFY is covered
//! by emptying the whole cache every [`CACHE_MAX_AGE`]. The rule: a process
//! answers [`super::Outbox::needs_recording`] from its cache only while its listening
//! connection is up (from before the first cached read; a lost connection empties the
//! cache and turns it off until it is back), so a cached state is behind another
//! replica's commit by at most that replica's NOTIFY round trip and its delivery (and
//! by at most [`CACHE_MAX_AGE`] when the writer died in between). A confirming score that
//! arrives within that window of another replica's tier change is treated as if it had
//! arrived just before it: its write is skipped, and the next score of that customer is
//! decided on the committed state. Writes never trust the cache (see above).

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::Duration;

use postgres::error::SqlState;
use postgres::{Client, GenericClient, NoTls, Statement, Transaction};
use rustc_hash::FxHashSet;

use super::cache::{self, Cached, StateCache};
use super::deliver::{no_such_alert, unknown_keys, Claimed, Outcome, Unreadable};
use super::nights::{Night, NightFiles, NightlyHealth, Refusals};
use super::record::{decide, payload, StageFiles};
use super::{
    DeliveryRecord, DeliveryStatus, Observation, OutboxCounts, OutboxDepth, Pruned, RecordSummary,
    Redriven, Transition, SMALL_RECORDING,
};
use crate::alerts::policy::{AlertPolicy, CustomerState};
use crate::alerts::{now_secs, Alert};
use crate::error::RefusalReason;
use crate::scoring::Tier;
use crate::time::Ts;
use crate::{Error, Result};

/// Connections per process, opened on first use: enough for the service's recorder,
/// dispatcher and worker threads, and for 16 concurrent writers in one process.
const POOL: usize = 16;

/// The advisory lock of the migrations (an arbitrary constant, "churnguard" in ASCII,
/// unlikely to meet another application's keys).
const MIGRATION_LOCK: i64 = 0x6368_7572_6e00_0000 - 1;

/// Ids read or written per statement (arrays bound as one parameter).
const CHUNK: usize = 5_000;

/// Retries of a recording the server aborted (a state moved under it, a deadlock).
const RETRIES: usize = 10;

/// The longest a cached state is kept: it bounds what a notification lost with its
/// sender (a process killed between a commit and its notification) can leave stale.
const CACHE_MAX_AGE: Duration = Duration::from_secs(30);

/// How long the listener waits for a notification before looking whether its outbox
/// is still in use.
const LISTEN_POLL: Duration = Duration::from_millis(250);

/// The largest notification payload sent as ids; a longer one says `*` (everything),
/// under the server's 8,000-byte limit.
const NOTIFY_MAX: usize = 7_000;

/// The versioned migrations, applied in order, each once; never edit one that shipped,
/// add the next.
const MIGRATIONS: &[(i32, &str)] = &[
    (
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
    ),
    (
        2,
        "
-- The channel a schema's state changes are notified on (a fixed-length name whatever
-- the schema's).
CREATE FUNCTION churnguard_channel() RETURNS text LANGUAGE sql STABLE AS
$fn$ SELECT 'churnguard_' || left(md5(current_schema()), 16) $fn$;
-- The end of a recording's compare-and-set: fails it whole when a state moved since it
-- was read (retried by the writer).
CREATE FUNCTION churnguard_states_written(written bigint, expected bigint)
RETURNS bigint LANGUAGE plpgsql AS $fn$
BEGIN
    IF written <> expected THEN
        RAISE EXCEPTION 'a customer''s state changed since it was read'
            USING ERRCODE = 'serialization_failure';
    END IF;
    RETURN written;
END
$fn$;
-- Layout 1's cache counter: replaced by the notifications.
DROP SEQUENCE state_version;
",
    ),
];

const NIGHT_COLUMNS: &str = "as_of, finished_at, model, customers, tiers, status, reason, detail";

const READ_STATES: &str = "SELECT customer_id, last_tier, last_scored_at, last_alert_at, \
     last_alert_tier FROM customer_state WHERE customer_id = ANY($1)";

/// A recording's writes as one compare-and-set: `$1..$5` the states to store, `$6` whether
/// each customer had a row when read and `$7..$10` that row, `$11..$15` the alerts (key,
/// customer, tier, source, payload) stored at `$16`. Returns the
/// states written (or fails whole, see `churnguard_states_written`) and the alerts new.
const WRITE_STATES: &str = "WITH w (id, tier, scored, alert_at, alert_tier, found, \
     e_tier, e_scored, e_alert_at, e_alert_tier) AS (SELECT * FROM unnest($1::text[], \
     $2::text[], $3::bigint[], $4::bigint[], $5::text[], $6::bool[], $7::text[], \
     $8::bigint[], $9::bigint[], $10::text[])), \
     upd AS (UPDATE customer_state c SET last_tier = w.tier, last_scored_at = w.scored, \
     last_alert_at = w.alert_at, last_alert_tier = w.alert_tier FROM w \
     WHERE w.found AND c.customer_id = w.id AND c.last_tier = w.e_tier \
     AND c.last_scored_at = w.e_scored AND c.last_alert_at IS NOT DISTINCT FROM w.e_alert_at \
     AND c.last_alert_tier IS NOT DISTINCT FROM w.e_alert_tier RETURNING 1), \
     ins AS (INSERT INTO customer_state (customer_id, last_tier, last_scored_at, \
     last_alert_at, last_alert_tier) SELECT id, tier, scored, alert_at, alert_tier FROM w \
     WHERE NOT w.found ON CONFLICT (customer_id) DO NOTHING RETURNING 1), \
     al AS (INSERT INTO alerts (idempotency_key, customer_id, tier, source, payload, status, \
     created_at, updated_at) SELECT k, c, t, s, p, 'pending', $16::bigint, $16::bigint \
     FROM unnest($11::text[], $12::text[], $13::text[], $14::text[], $15::text[]) \
     WITH ORDINALITY AS x (k, c, t, s, p, n) ORDER BY n \
     ON CONFLICT (idempotency_key) DO NOTHING RETURNING 1) \
     SELECT churnguard_states_written((SELECT count(*) FROM upd) + (SELECT count(*) FROM ins), \
     cardinality($1::text[])::bigint), (SELECT count(*) FROM al)";

/// The customers a committed recording changed, for the other processes' caches (`*`:
/// all). Sent after the commit, in a transaction of its own that writes nothing: a
/// NOTIFY in the writing transaction holds the server's notification lock through its
/// WAL flush, so writers commit one at a time (395 changes/s against 2,600 here).
const NOTIFY: &str = "SELECT pg_notify(churnguard_channel(), $1)::text";

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

/// A connection of the pool, with its prepared statements and its server process id.
struct Slot {
    client: Client,
    pid: i32,
    statements: HashMap<&'static str, Statement>,
}

/// A connection of the pool, opened when first needed and again after it broke.
struct Conn<'a>(MutexGuard<'a, Option<Slot>>);

impl Conn<'_> {
    fn client(&mut self) -> &mut Client {
        &mut self.0.as_mut().expect("connected by Postgres::conn").client
    }

    /// `sql` prepared on this connection (once).
    fn prepared(&mut self, sql: &'static str) -> Result<Statement> {
        let slot = self.0.as_mut().expect("connected by Postgres::conn");
        if let Some(s) = slot.statements.get(sql) {
            return Ok(s.clone());
        }
        let s = slot.client.prepare(sql).ctx("preparing a statement")?;
        slot.statements.insert(sql, s.clone());
        Ok(s)
    }
}

struct Inner {
    config: postgres::Config,
    /// The URL without its password, for messages.
    shown: PathBuf,
    pool: Vec<Mutex<Option<Slot>>>,
    next: AtomicUsize,
    cache: Mutex<StateCache>,
    /// Whether the listener is connected: the cache may answer only then.
    live: AtomicBool,
    /// The server processes of this pool: their own notifications are not news.
    own_pids: Mutex<FxHashSet<i32>>,
}

/// The PostgreSQL backend: cheap to clone (clones share the pool and the cache).
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

/// Connects the listening connection and subscribes it to the schema's channel.
fn listen(config: &postgres::Config, shown: &str) -> Result<Client> {
    let mut client = config
        .connect(NoTls)
        .ctx(&format!("connecting to {shown}"))?;
    let channel: String = client
        .query_one("SELECT churnguard_channel()", &[])
        .ctx(&format!("{shown}: reading the notification channel"))?
        .get(0);
    // `churnguard_` and hex digits: an identifier as it is.
    client
        .batch_execute(&format!("LISTEN {channel}"))
        .ctx(&format!("{shown}: listening for state changes"))?;
    Ok(client)
}

/// The listener's thread: evicts the customers other processes changed, reconnects
/// after a lost connection (the cache off and empty meanwhile), and ends when its
/// outbox is dropped.
fn run_listener(weak: Weak<Inner>, first: Client) {
    let mut client = Some(first);
    let mut emptied = std::time::Instant::now();
    loop {
        let Some(inner) = weak.upgrade() else {
            return;
        };
        if emptied.elapsed() >= CACHE_MAX_AGE {
            cache::lock(&inner.cache).clear();
            emptied = std::time::Instant::now();
        }
        if client.is_none() {
            match listen(&inner.config, &inner.shown.display().to_string()) {
                Ok(c) => {
                    cache::lock(&inner.cache).clear();
                    inner.live.store(true, Ordering::Release);
                    tracing::info!(outbox = %inner.shown.display(), "outbox: listening for state changes again");
                    client = Some(c);
                }
                Err(e) => {
                    drop(inner);
                    tracing::warn!(error = %e, "outbox: the state listener cannot reconnect");
                    std::thread::sleep(Duration::from_secs(1));
                }
            }
            continue;
        }
        let c = client.as_mut().expect("connected above");
        let mut broken = false;
        {
            let mut notifications = c.notifications();
            let mut it = notifications.timeout_iter(LISTEN_POLL);
            // A bounded batch, so a dropped outbox is noticed under a stream of changes.
            for _ in 0..1_000 {
                match postgres::fallible_iterator::FallibleIterator::next(&mut it) {
                    Ok(Some(n)) => inner.apply(&n),
                    Ok(None) => break,
                    Err(e) => {
                        tracing::warn!(error = %e, "outbox: the state listener lost its connection");
                        broken = true;
                        break;
                    }
                }
            }
        }
        if broken || c.is_closed() {
            inner.live.store(false, Ordering::Release);
            cache::lock(&inner.cache).clear();
            client = None;
        }
    }
}

impl Inner {
    /// One notification: the customers whose state another process changed.
    fn apply(&self, n: &postgres::Notification) {
        let own = self
            .own_pids
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .contains(&n.process_id());
        if own {
            return;
        }
        let mut cache = cache::lock(&self.cache);
        match serde_json::from_str::<Vec<String>>(n.payload()) {
            Ok(ids) => ids.iter().for_each(|id| cache.evict(id)),
            Err(_) => cache.clear(),
        }
    }
}

impl Postgres {
    /// Connects to the database `url` names, brings its tables to this build's layout
    /// and starts listening for other processes' state changes.
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
                live: AtomicBool::new(false),
                own_pids: Mutex::default(),
            }),
        };
        let listener = blocking(|| {
            pg.migrate()?;
            listen(&pg.inner.config, &shown)
        })?;
        pg.inner.live.store(true, Ordering::Release);
        let weak = Arc::downgrade(&pg.inner);
        std::thread::Builder::new()
            .name("outbox-listener".into())
            .spawn(move || run_listener(weak, listener))
            .map_err(|e| Error::Outbox(format!("{shown}: starting the state listener: {e}")))?;
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
        tx.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK])
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
        if guard.as_ref().is_none_or(|s| s.client.is_closed()) {
            let shown = self.shown();
            let mut client = self
                .inner
                .config
                .connect(NoTls)
                .ctx(&format!("connecting to {shown}"))?;
            let pid: i32 = client
                .query_one("SELECT pg_backend_pid()", &[])
                .ctx(&format!("{shown}: reading the connection's process id"))?
                .get(0);
            let mut pids = self
                .inner
                .own_pids
                .lock()
                .unwrap_or_else(|e| e.into_inner());
            if let Some(old) = guard.take() {
                pids.remove(&old.pid);
            }
            pids.insert(pid);
            *guard = Some(Slot {
                client,
                pid,
                statements: HashMap::new(),
            });
        }
        Ok(Conn(guard))
    }

    pub fn path(&self) -> &Path {
        &self.inner.shown
    }

    // ---- recording ---------------------------------------------------------------

    /// From the cache while the listener is up (see the module doc), else `true`: the
    /// recording then decides on the stored states.
    pub fn needs_recording(
        &self,
        policy: &AlertPolicy,
        observations: &[Observation<'_>],
    ) -> Result<bool> {
        if !self.inner.live.load(Ordering::Acquire) {
            return Ok(true);
        }
        Cached {
            cache: &self.inner.cache,
            version: None,
            read: &|id| self.state(id),
        }
        .needs_recording(policy, observations)
    }

    /// One recording, retried when the server aborts it (a state moved under a small
    /// one, a deadlock), then decided on states read afresh. Commits as the server's
    /// `synchronous_commit` says (the operator's choice), so `_durable` changes nothing.
    pub(super) fn record_with(
        &self,
        policy: &AlertPolicy,
        observations: &[Observation<'_>],
        build: &mut dyn FnMut(&Transition<'_>) -> Alert,
        _durable: bool,
        mut night: Option<(&Night, &mut StageFiles<'_>)>,
    ) -> Result<RecordSummary> {
        let big = night.is_some() || observations.len() > SMALL_RECORDING;
        let mut conn = self.conn()?;
        let mut use_cache = self.inner.live.load(Ordering::Acquire);
        let mut attempt = 0;
        loop {
            let result = if big {
                let this_night = match night.as_mut() {
                    Some((n, stage)) => {
                        let stage: &mut StageFiles<'_> = &mut **stage;
                        Some((*n, stage))
                    }
                    None => None,
                };
                self.record_locked(&mut conn, policy, observations, build, this_night)
            } else {
                self.record_small(&mut conn, policy, observations, build, use_cache)
            };
            match result {
                Err(Error::OutboxPg { source, .. })
                    if attempt < RETRIES && is_retryable(&source) =>
                {
                    attempt += 1;
                    use_cache = false;
                }
                other => return other,
            }
        }
    }

    /// A small recording: states from the cache (`use_cache`) or read, decided here,
    /// written by one compare-and-set statement; the states written are cached.
    fn record_small(
        &self,
        conn: &mut Conn<'_>,
        policy: &AlertPolicy,
        observations: &[Observation<'_>],
        build: &mut dyn FnMut(&Transition<'_>) -> Alert,
        use_cache: bool,
    ) -> Result<RecordSummary> {
        let mut before: HashMap<&str, Option<CustomerState>> = HashMap::new();
        let mut missing: Vec<&str> = Vec::new();
        let since = {
            let mut cache = cache::lock(&self.inner.cache);
            for o in observations {
                let id = o.customer_id;
                if before.contains_key(id) || missing.contains(&id) {
                    continue;
                }
                match cache.get(id).filter(|_| use_cache) {
                    Some(state) => {
                        before.insert(id, state);
                    }
                    None => missing.push(id),
                }
            }
            cache.begin()
        };
        if !missing.is_empty() {
            let read = conn.prepared(READ_STATES)?;
            let rows = conn
                .client()
                .query(&read, &[&missing])
                .ctx("reading the customers' states")?;
            let mut found = states_from_rows(&rows)?;
            let mut cache = cache::lock(&self.inner.cache);
            for id in missing {
                let state = found.remove(id);
                cache.put(id, state, since);
                before.insert(id, state);
            }
        }
        let (mut summary, writes, alerts) = decide_all(policy, observations, build, &|id| {
            before.get(id).copied().flatten()
        })?;
        if writes.is_empty() {
            return Ok(summary);
        }
        let ids: Vec<&str> = writes.iter().map(|w| w.0).collect();
        let changed = serde_json::to_string(&ids)
            .ok()
            .filter(|p| p.len() <= NOTIFY_MAX)
            .unwrap_or_else(|| "*".into());
        let stmt = conn.prepared(WRITE_STATES)?;
        let since = cache::lock(&self.inner.cache).begin();
        summary.inserted = write_states(
            conn.client(),
            &stmt,
            &writes,
            &|id| before.get(id).copied().flatten(),
            &alerts,
        )?;
        {
            let mut cache = cache::lock(&self.inner.cache);
            for (id, state) in &writes {
                cache.put(id, Some(*state), since);
            }
        }
        self.notify_changed(conn, &changed);
        Ok(summary)
    }

    /// A big recording (the nightly run): other writers locked out, then read, decide
    /// and write in one transaction, with the night when there is one.
    fn record_locked(
        &self,
        conn: &mut Conn<'_>,
        policy: &AlertPolicy,
        observations: &[Observation<'_>],
        build: &mut dyn FnMut(&Transition<'_>) -> Alert,
        night: Option<(&Night, &mut StageFiles<'_>)>,
    ) -> Result<RecordSummary> {
        let read = conn.prepared(READ_STATES)?;
        let write = conn.prepared(WRITE_STATES)?;
        let now = now_secs();
        let mut tx = conn
            .client()
            .transaction()
            .ctx("starting the recording transaction")?;
        tx.batch_execute("LOCK TABLE customer_state IN SHARE ROW EXCLUSIVE MODE")
            .ctx("locking the customers' states")?;
        let mut ids: Vec<&str> = observations.iter().map(|o| o.customer_id).collect();
        ids.sort_unstable();
        ids.dedup();
        let mut before: HashMap<String, CustomerState> = HashMap::new();
        for chunk in ids.chunks(CHUNK) {
            let rows = tx
                .query(&read, &[&chunk])
                .ctx("reading the customers' states")?;
            before.extend(
                states_from_rows(&rows)?
                    .into_iter()
                    .map(|(k, v)| (k.to_owned(), v)),
            );
        }
        let (mut summary, writes, alerts) =
            decide_all(policy, observations, build, &|id| before.get(id).copied())?;
        for chunk in writes.chunks(CHUNK) {
            write_states(&mut tx, &write, chunk, &|id| before.get(id).copied(), &[])?;
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
        tx.commit().ctx("committing the recorded scores")?;
        if !writes.is_empty() {
            cache::lock(&self.inner.cache).clear();
            self.notify_changed(conn, "*");
        }
        Ok(summary)
    }

    /// Tells the other processes which customers changed (after the commit). A failure
    /// is logged, not returned: the recording is committed, and the other processes'
    /// caches forget everything within [`CACHE_MAX_AGE`] anyway.
    fn notify_changed(&self, conn: &mut Conn<'_>, changed: &str) {
        let sent = conn.prepared(NOTIFY).and_then(|stmt| {
            conn.client()
                .execute(&stmt, &[&changed])
                .ctx("notifying the changed customers")
        });
        if let Err(e) = sent {
            tracing::warn!(error = %e, "outbox: notifying the changed customers failed");
        }
    }

    pub fn insert(&self, alert: &Alert) -> Result<bool> {
        let mut conn = self.conn()?;
        let mut tx = conn.client().transaction().ctx("starting an insert")?;
        let inserted = insert_alerts(&mut tx, std::slice::from_ref(alert), now_secs())?;
        tx.commit().ctx("committing an alert")?;
        Ok(inserted == 1)
    }

    pub fn state(&self, customer_id: &str) -> Result<Option<CustomerState>> {
        blocking(|| {
            let mut conn = self.conn()?;
            let read = conn.prepared(READ_STATES)?;
            let rows = conn
                .client()
                .query(&read, &[&[customer_id].as_slice()])
                .ctx("reading a customer's state")?;
            Ok(states_from_rows(&rows)?.remove(customer_id))
        })
    }

    // ---- delivery ----------------------------------------------------------------

    pub(super) fn pending(&self, limit: usize) -> Result<Vec<String>> {
        let rows = self
            .conn()?
            .client()
            .query(
                "SELECT payload FROM alerts WHERE status = 'pending' ORDER BY seq LIMIT $1",
                &[&limit_sql(limit)],
            )
            .ctx("listing pending alerts")?;
        Ok(rows.iter().map(|r| r.get(0)).collect())
    }

    pub(super) fn claim_due(
        &self,
        sinks: &[&str],
        now_ms: i64,
        limit: usize,
        lease_ms: i64,
    ) -> Result<Vec<Claimed>> {
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
        let claimed = claimed
            .into_iter()
            .map(|(_, _, key, sink, attempts, payload)| Claimed {
                key,
                sink,
                attempts: u32::try_from(attempts).unwrap_or(0),
                payload,
            })
            .collect();
        tx.commit().ctx("committing a claim")?;
        Ok(claimed)
    }

    pub(super) fn dead_letter_unreadable(&self, dead: &[Unreadable]) -> Result<()> {
        let mut conn = self.conn()?;
        let mut tx = conn
            .client()
            .transaction()
            .ctx("starting a delivery update")?;
        for d in dead {
            let outcome = Outcome::finished(DeliveryStatus::Dead);
            put_outcome(
                &mut tx,
                &d.key,
                &d.sink,
                outcome,
                Some(&d.error),
                now_secs(),
            )?;
        }
        tx.commit().ctx("committing a delivery update")
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
        put_outcome(
            &mut tx,
            key,
            sink,
            Outcome::finished(status),
            error,
            now_secs(),
        )?;
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
        let first: Option<i64> = tx
            .query_opt(
                "SELECT first_attempt_ms FROM deliveries WHERE idempotency_key = $1 AND sink = $2",
                &[&key, &sink],
            )
            .ctx("reading a delivery")?
            .and_then(|r| r.get(0));
        let outcome = Outcome::failed(first, now_ms, next_attempt_ms, give_up_ms);
        put_outcome(&mut tx, key, sink, outcome, Some(error), now)?;
        let status: String = tx
            .query_one(
                "SELECT status FROM deliveries WHERE idempotency_key = $1 AND sink = $2",
                &[&key, &sink],
            )
            .ctx("reading a delivery")?
            .get(0);
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
                let unknown: Vec<&String> = keys.iter().filter(|k| !known.contains(*k)).collect();
                if !unknown.is_empty() {
                    return Err(unknown_keys(&unknown, self.path()));
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

/// A recording's decisions ([`decide`]) on the states `stored` gives: the summary, the
/// last state to write per customer (in id order) and the alerts raised.
type Decisions<'o> = (RecordSummary, Vec<(&'o str, CustomerState)>, Vec<Alert>);

fn decide_all<'o>(
    policy: &AlertPolicy,
    observations: &[Observation<'o>],
    build: &mut dyn FnMut(&Transition<'_>) -> Alert,
    stored: &dyn Fn(&str) -> Option<CustomerState>,
) -> Result<Decisions<'o>> {
    let mut writes: BTreeMap<&'o str, CustomerState> = BTreeMap::new();
    let mut alerts: Vec<Alert> = Vec::new();
    let summary = decide(
        policy,
        observations,
        build,
        true,
        &mut |id| Ok(stored(id)),
        &mut |id, next, alert| {
            writes.insert(id, *next);
            alerts.extend(alert);
            Ok(0)
        },
    )?
    .expect("a recording that may raise always decides");
    Ok((summary, writes.into_iter().collect(), alerts))
}

/// Customers' states from rows of [`READ_STATES`], by id.
fn states_from_rows(rows: &[postgres::Row]) -> Result<HashMap<&str, CustomerState>> {
    rows.iter()
        .map(|r| {
            let state = CustomerState {
                last_tier: parse_tier(r.get(1))?,
                last_scored_at: r.get(2),
                last_alert_at: r.get(3),
                last_alert_tier: r.get::<_, Option<&str>>(4).map(parse_tier).transpose()?,
            };
            Ok((r.get(0), state))
        })
        .collect()
}

/// Runs [`WRITE_STATES`]: `writes` where `before` still holds, and `alerts`, or nothing
/// (a retryable error). Returns the alerts new.
fn write_states(
    client: &mut impl GenericClient,
    stmt: &Statement,
    writes: &[(&str, CustomerState)],
    before: &dyn Fn(&str) -> Option<CustomerState>,
    alerts: &[Alert],
) -> Result<usize> {
    let ids: Vec<&str> = writes.iter().map(|w| w.0).collect();
    let tiers: Vec<&str> = writes.iter().map(|w| w.1.last_tier.as_str()).collect();
    let scored: Vec<i64> = writes.iter().map(|w| w.1.last_scored_at).collect();
    let alert_at: Vec<Option<i64>> = writes.iter().map(|w| w.1.last_alert_at).collect();
    let alert_tier: Vec<Option<&str>> = writes
        .iter()
        .map(|w| w.1.last_alert_tier.map(Tier::as_str))
        .collect();
    let old: Vec<Option<CustomerState>> = writes.iter().map(|w| before(w.0)).collect();
    let found: Vec<bool> = old.iter().map(Option::is_some).collect();
    let e_tier: Vec<Option<&str>> = old
        .iter()
        .map(|o| o.map(|s| s.last_tier.as_str()))
        .collect();
    let e_scored: Vec<Option<i64>> = old.iter().map(|o| o.map(|s| s.last_scored_at)).collect();
    let e_alert_at: Vec<Option<i64>> = old
        .iter()
        .map(|o| o.and_then(|s| s.last_alert_at))
        .collect();
    let e_alert_tier: Vec<Option<&str>> = old
        .iter()
        .map(|o| o.and_then(|s| s.last_alert_tier).map(Tier::as_str))
        .collect();
    let payloads = alerts.iter().map(payload).collect::<Result<Vec<_>>>()?;
    let keys: Vec<&str> = alerts.iter().map(|a| a.idempotency_key.as_str()).collect();
    let customers: Vec<&str> = alerts.iter().map(|a| a.customer_id.as_str()).collect();
    let a_tiers: Vec<&str> = alerts.iter().map(|a| a.tier.as_str()).collect();
    let sources: Vec<&str> = alerts.iter().map(|a| a.source.as_str()).collect();
    let row = client
        .query_one(
            stmt,
            &[
                &ids,
                &tiers,
                &scored,
                &alert_at,
                &alert_tier,
                &found,
                &e_tier,
                &e_scored,
                &e_alert_at,
                &e_alert_tier,
                &keys,
                &customers,
                &a_tiers,
                &sources,
                &payloads,
                &now_secs(),
            ],
        )
        .ctx("writing the customers' states")?;
    Ok(usize::try_from(row.get::<_, i64>(1)).unwrap_or(0))
}

/// Inserts alerts, once per key; returns how many were new.
fn insert_alerts(tx: &mut Transaction<'_>, alerts: &[Alert], now: Ts) -> Result<usize> {
    let payloads = alerts.iter().map(payload).collect::<Result<Vec<_>>>()?;
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

/// Stores an outcome (the alert's row locked first), then closes the alert if every
/// sink is through with it.
fn put_outcome(
    tx: &mut Transaction<'_>,
    key: &str,
    sink: &str,
    o: Outcome,
    error: Option<&str>,
    now: Ts,
) -> Result<()> {
    lock_alert(tx, key)?;
    let changed = tx
        .execute(
            "INSERT INTO deliveries \
             (idempotency_key, sink, status, attempts, next_attempt_ms, last_error, updated_at, \
              first_attempt_ms) \
             SELECT idempotency_key, $2::text, $3::text, 1, $4::bigint, $5::text, $6::bigint, \
             $7::bigint FROM alerts WHERE idempotency_key = $1 \
             ON CONFLICT (idempotency_key, sink) DO UPDATE SET status = excluded.status, \
             attempts = deliveries.attempts + 1, next_attempt_ms = excluded.next_attempt_ms, \
             first_attempt_ms = coalesce(excluded.first_attempt_ms, deliveries.first_attempt_ms), \
             last_error = excluded.last_error, updated_at = excluded.updated_at \
             WHERE deliveries.status = 'pending'",
            &[
                &key,
                &sink,
                &o.status.as_str(),
                &o.next_attempt_ms,
                &error,
                &now,
                &o.first_attempt_ms,
            ],
        )
        .ctx("recording a delivery")?;
    // Nothing changed: a finished delivery (a late duplicate outcome never reopens
    // it), or no such alert.
    if changed == 0 {
        let exists: bool = tx
            .query_one(
                "SELECT EXISTS (SELECT 1 FROM alerts WHERE idempotency_key = $1)",
                &[&key],
            )
            .ctx("looking up an alert")?
            .get(0);
        if !exists {
            return Err(no_such_alert(key));
        }
    }
    close_if_done(tx, key, now)
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
}

#[cfg(test)]
mod server_tests {
    use std::time::Instant;

    use super::super::test_support::{build, night, obs, postgres_db};
    use super::super::{Backend, Outbox};
    use super::*;
    use crate::time::DAY;

    fn pg(outbox: &Outbox) -> &Postgres {
        match &outbox.backend {
            Backend::Postgres(p) => p,
            Backend::Sqlite(_) => panic!("a PostgreSQL outbox was expected"),
        }
    }

    fn cached(outbox: &Outbox, customer_id: &str) -> Option<Option<CustomerState>> {
        cache::lock(&pg(outbox).inner.cache).get(customer_id)
    }

    #[test]
    #[ignore = "needs PostgreSQL: tests/postgres.sh"]
    fn postgres_a_replica_evicts_the_customers_another_replica_changed() {
        let db = postgres_db();
        let (a, b) = (db.open(), db.open());
        let p = AlertPolicy::default();
        let t = night("2024-03-01");
        let both = [obs("c1", Tier::Medium, t), obs("c2", Tier::Medium, t)];
        a.record_many(&p, &both, build).unwrap();
        let confirm = |c| [obs(c, Tier::Medium, t + DAY)];
        // What `a` wrote it knows without a read; `b` reads it once.
        assert!(cached(&a, "c1").is_some() && cached(&a, "c2").is_some());
        for c in ["c1", "c2"] {
            assert!(!a.needs_recording(&p, &confirm(c)).unwrap());
            assert!(!b.needs_recording(&p, &confirm(c)).unwrap());
        }
        // `b` moves c1 to low: `a` is notified and forgets c1 only.
        b.record(&p, obs("c1", Tier::Low, t + DAY), build).unwrap();
        let waited = Instant::now();
        while cached(&a, "c1").is_some() {
            assert!(
                waited.elapsed() < Duration::from_secs(10),
                "no notification"
            );
            std::thread::sleep(Duration::from_millis(5));
        }
        assert!(a.needs_recording(&p, &confirm("c1")).unwrap());
        assert!(!a.needs_recording(&p, &confirm("c2")).unwrap());
        assert!(cached(&a, "c2").is_some(), "c2 kept");
        // A night (a big recording) empties every other process's cache.
        let ids: Vec<String> = (0..=SMALL_RECORDING).map(|i| format!("n{i}")).collect();
        let many: Vec<_> = ids.iter().map(|c| obs(c, Tier::Low, t)).collect();
        b.record_many(&p, &many, build).unwrap();
        let waited = Instant::now();
        while cached(&a, "c2").is_some() {
            assert!(
                waited.elapsed() < Duration::from_secs(10),
                "no notification"
            );
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    #[test]
    #[ignore = "needs PostgreSQL: tests/postgres.sh"]
    fn postgres_a_stale_cached_state_makes_the_write_decide_again_on_the_stored_one() {
        let db = postgres_db();
        let a = db.open();
        let p = AlertPolicy::default();
        let t = night("2024-03-01");
        a.record(&p, obs("c1", Tier::Medium, t), build).unwrap();
        // A writer that notifies nobody (a bare client) moves c1 to low behind a's cache.
        let mut c = Client::connect(db.target(), NoTls).unwrap();
        c.execute(
            "UPDATE customer_state SET last_tier = 'low', last_scored_at = $1 \
             WHERE customer_id = 'c1'",
            &[&(t + DAY)],
        )
        .unwrap();
        assert_eq!(cached(&a, "c1").flatten().unwrap().last_tier, Tier::Medium);
        // Decided on the cached medium, refused by the compare-and-set, decided again on
        // the stored low: the alert says where the customer really came from.
        let alert = a
            .record(&p, obs("c1", Tier::High, t + 2 * DAY), build)
            .unwrap()
            .expect("entering high alerts");
        assert_eq!(alert.previous_tier, Some(Tier::Low));
        let stored = a.state("c1").unwrap().unwrap();
        assert_eq!(
            (stored.last_tier, stored.last_scored_at),
            (Tier::High, t + 2 * DAY)
        );
        assert_eq!(a.counts().unwrap().pending, 1);
    }

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
