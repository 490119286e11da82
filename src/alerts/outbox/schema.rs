//! The outbox file's layout: its tables, the layout version in `user_version`, the
//! connection settings (WAL, `synchronous=FULL`) and how a [`Tier`] is stored.

use std::path::Path;

use rusqlite::types::{FromSql, FromSqlError, FromSqlResult, ToSqlOutput, ValueRef};
use rusqlite::{Connection, ToSql, TransactionBehavior};

use super::{Ctx, BUSY_TIMEOUT};
use crate::scoring::Tier;
use crate::{Error, Result};

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
    // Added within layout 1: a file written before it gains the table here.
    tx.execute_batch(super::nights::SCHEMA)
        .ctx(&format!("{shown}: creating the nights table"))?;
    tx.pragma_update(None, "user_version", SCHEMA_VERSION)
        .ctx(shown)?;
    tx.commit().ctx(shown)?;
    Ok(conn)
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
