//! The outbox file's layout: its tables, the layout version in `user_version`, the
//! connection settings (WAL, `synchronous=FULL`) and how a [`Tier`] is stored.

use std::path::Path;

use rusqlite::types::{FromSql, FromSqlError, FromSqlResult, ToSqlOutput, ValueRef};
use rusqlite::{Connection, ToSql, TransactionBehavior};

use super::{Ctx, BUSY_TIMEOUT};
use crate::scoring::Tier;
use crate::{Error, Result};

/// Version of the file layout, in SQLite's `user_version`. Layout 2 added
/// `deliveries.first_attempt_ms` (the start of a delivery's give-up deadline); a layout-1
/// file is migrated in place when opened ([`migrate`]).
const SCHEMA_VERSION: i64 = 2;

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
    first_attempt_ms INTEGER,
    PRIMARY KEY (idempotency_key, sink)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS deliveries_due ON deliveries (status, next_attempt_ms);
";

/// The writing connection: WAL, `synchronous=FULL`, a big page cache, and the tables
/// created (or checked to be of a layout this build reads).
pub(super) fn open_writer(path: &Path, shown: &str) -> Result<Connection> {
    let mut conn = Connection::open(path).ctx(&format!("opening {shown}"))?;
    conn.busy_timeout(BUSY_TIMEOUT).ctx(shown)?;
    let mode: String = conn
        .pragma_update_and_check(None, "journal_mode", "WAL", |r| r.get(0))
        .ctx(&format!("{shown}: setting WAL mode"))?;
    if !mode.eq_ignore_ascii_case("wal") {
        return Err(Error::Outbox(format!(
                "{shown}: the journal mode is `{mode}`, not WAL: the outbox must be a file on a local disk"
            )));
    }
    conn.pragma_update(None, "synchronous", "FULL").ctx(shown)?;
    // A bigger page cache keeps a night's million state updates off the disk until commit.
    conn.pragma_update(None, "cache_size", -65_536).ctx(shown)?;
    // After such a night the WAL is tens of MB: shrink it back once checkpointed.
    conn.pragma_update(None, "journal_size_limit", 64 * 1024 * 1024)
        .ctx(shown)?;
    let version: i64 = conn
        .pragma_query_value(None, "user_version", |r| r.get(0))
        .ctx(shown)?;
    if version > SCHEMA_VERSION {
        return Err(Error::Outbox(format!(
                "{shown}: layout version {version} was written by a newer churnguard (this one reads {SCHEMA_VERSION})"
            )));
    }
    let tx = conn
        .transaction_with_behavior(TransactionBehavior::Immediate)
        .ctx(shown)?;
    tx.execute_batch(SCHEMA)
        .ctx(&format!("{shown}: creating tables"))?;
    migrate(&tx, shown)?;
    // Added within layout 1: a file written before it gains the table here.
    tx.execute_batch(super::nights::SCHEMA)
        .ctx(&format!("{shown}: creating the nights table"))?;
    tx.pragma_update(None, "user_version", SCHEMA_VERSION)
        .ctx(shown)?;
    tx.commit().ctx(shown)?;
    Ok(conn)
}

/// Brings an older layout's tables up to this one (the tables exist by now).
/// Layout 1 -> 2: `deliveries` gains `first_attempt_ms`, NULL for rows written before: their
/// give-up deadline starts at their next attempt (their earlier attempts carry no time).
fn migrate(tx: &rusqlite::Transaction<'_>, shown: &str) -> Result<()> {
    let has_first_attempt: bool = tx
        .query_row(
            "SELECT EXISTS (SELECT 1 FROM pragma_table_info('deliveries') \
             WHERE name = 'first_attempt_ms')",
            [],
            |r| r.get(0),
        )
        .ctx(&format!("{shown}: reading the deliveries table"))?;
    if !has_first_attempt {
        tx.execute_batch("ALTER TABLE deliveries ADD COLUMN first_attempt_ms INTEGER")
            .ctx(&format!(
                "{shown}: migrating the deliveries table to layout 2"
            ))?;
    }
    Ok(())
}

/// A read-only connection beside the writer (WAL readers never wait for it).
pub(super) fn open_reader(path: &Path, shown: &str) -> Result<Connection> {
    let reader = Connection::open(path).ctx(&format!("opening {shown}"))?;
    reader.busy_timeout(BUSY_TIMEOUT).ctx(shown)?;
    reader.pragma_update(None, "query_only", true).ctx(shown)?;
    Ok(reader)
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

#[cfg(test)]
mod tests {
    use super::super::Outbox;
    use super::*;

    #[test]
    fn opening_sets_wal_mode_and_full_synchronous() {
        let dir = tempfile::tempdir().unwrap();
        let outbox = Outbox::open(dir.path().join("nested/alerts.db")).unwrap();
        let db = outbox.sqlite().lock();
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
    fn a_file_that_is_not_a_database_fails_with_its_sqlite_cause() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.db");
        std::fs::write(&path, b"not a database, only text. ".repeat(200)).unwrap();
        let err = Outbox::open(&path).unwrap_err();
        assert!(std::error::Error::source(&err).is_some(), "{err}");
        match err {
            Error::OutboxDb { context, source } => {
                assert!(context.contains("a.db"), "{context}");
                assert_eq!(
                    source.sqlite_error_code(),
                    Some(rusqlite::ErrorCode::NotADatabase)
                );
            }
            other => panic!("expected an SQLite outbox error, got {other:?}"),
        }
    }

    /// The layout-1 `deliveries` table, as churnguard wrote it before layout 2.
    const LAYOUT_1_DELIVERIES: &str = "
        CREATE TABLE deliveries (
            idempotency_key TEXT NOT NULL REFERENCES alerts (idempotency_key),
            sink            TEXT NOT NULL,
            status          TEXT NOT NULL DEFAULT 'pending'
                            CHECK (status IN ('pending', 'delivered', 'dead')),
            attempts        INTEGER NOT NULL DEFAULT 0,
            next_attempt_ms INTEGER NOT NULL,
            last_error      TEXT,
            updated_at      INTEGER NOT NULL,
            PRIMARY KEY (idempotency_key, sink)
        ) WITHOUT ROWID;";

    #[test]
    fn a_layout_1_file_is_migrated_and_its_pending_deliveries_get_a_fresh_deadline() {
        use super::super::test_support::{build, night, obs};
        use crate::alerts::{AlertPolicy, DeliveryStatus};
        use crate::scoring::Tier;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.db");
        {
            // A layout-1 file holding one alert with a failed attempt.
            let conn = Connection::open(&path).unwrap();
            conn.execute_batch(LAYOUT_1_DELIVERIES).unwrap();
            conn.execute_batch(SCHEMA).unwrap(); // `deliveries` exists: left as it is
            conn.pragma_update(None, "user_version", 1).unwrap();
        }
        let key = {
            let outbox = Outbox::open(&path).unwrap();
            let alert = outbox
                .record(
                    &AlertPolicy::default(),
                    obs("c1", Tier::High, night("2024-03-01")),
                    build,
                )
                .unwrap()
                .unwrap();
            alert.idempotency_key
        };
        let conn = Connection::open(&path).unwrap();
        let version: i64 = conn
            .pragma_query_value(None, "user_version", |r| r.get(0))
            .unwrap();
        assert_eq!(version, SCHEMA_VERSION);
        // A row written before the migration (no first attempt time).
        conn.execute(
            "INSERT INTO deliveries (idempotency_key, sink, status, attempts, next_attempt_ms, updated_at) \
             VALUES (?1, 'hook', 'pending', 5, 0, 0)",
            [&key],
        )
        .unwrap();
        drop(conn);
        let outbox = Outbox::open(&path).unwrap();
        let due = outbox.claim_due(&["hook"], 10_000, 10, 1_000).unwrap();
        assert_eq!((due.len(), due[0].attempts), (1, 5));
        // The deadline runs from this first attempt after the upgrade: not dead yet.
        assert_eq!(
            outbox
                .mark_failed(&key, "hook", "503", 10_100, 20_000, 1_000)
                .unwrap(),
            DeliveryStatus::Pending
        );
        assert_eq!(
            outbox.deliveries(&key).unwrap()[0].first_attempt_ms,
            Some(10_000)
        );
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
}
