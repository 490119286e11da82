//! Fixtures shared by the outbox's unit tests.

pub(crate) use super::Outbox;
use super::{Observation, Transition};
use crate::alerts::Alert;
use crate::scoring::{ModelRef, Tier};
use crate::time::{parse_ts, Ts};

pub(crate) fn model() -> ModelRef {
    ModelRef {
        name: "churn".into(),
        version: "v1".into(),
    }
}

pub(crate) fn night(d: &str) -> Ts {
    parse_ts(d).unwrap()
}

pub(crate) fn build(t: &Transition<'_>) -> Alert {
    t.alert(model(), 0.91, Alert::SOURCE_BATCH)
}

/// An empty outbox in its own temporary directory (kept alive by the first value).
pub(crate) fn fresh() -> (tempfile::TempDir, Outbox) {
    let dir = tempfile::tempdir().unwrap();
    let outbox = Outbox::open(dir.path().join("a.db")).unwrap();
    (dir, outbox)
}

pub(crate) fn obs(customer_id: &str, tier: Tier, as_of: Ts) -> Observation<'_> {
    Observation {
        customer_id,
        tier,
        as_of,
    }
}

/// A database for one test, on either backend: [`TestDb::open`] opens another
/// [`Outbox`] on it (a second process, a restart).
pub(crate) struct TestDb {
    target: String,
    _dir: Option<tempfile::TempDir>,
    /// The PostgreSQL schema this test owns (dropped at the end), with the admin URL.
    schema: Option<(String, String)>,
}

impl TestDb {
    /// An outbox on this test's database.
    pub(crate) fn open(&self) -> Outbox {
        Outbox::open(&self.target).unwrap()
    }

    /// What `--outbox` would say to reach this database.
    pub(crate) fn target(&self) -> &str {
        &self.target
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        if let Some((url, schema)) = &self.schema {
            if let Ok(mut c) = postgres::Client::connect(url, postgres::NoTls) {
                let _ = c.batch_execute(&format!("DROP SCHEMA IF EXISTS {schema} CASCADE"));
            }
        }
    }
}

/// A fresh SQLite file in its own temporary directory.
pub(crate) fn sqlite_db() -> TestDb {
    let dir = tempfile::tempdir().unwrap();
    TestDb {
        target: dir.path().join("a.db").display().to_string(),
        _dir: Some(dir),
        schema: None,
    }
}

/// The server `tests/postgres.sh` started: a PostgreSQL test run without it fails.
pub(crate) fn postgres_url() -> String {
    std::env::var("CHURNGUARD_TEST_POSTGRES_URL").unwrap_or_else(|_| {
        panic!(
            "CHURNGUARD_TEST_POSTGRES_URL is not set: run the PostgreSQL tests with \
             tests/postgres.sh, which starts a server"
        )
    })
}

/// A fresh schema on the test server, reached through `search_path` in the URL.
pub(crate) fn postgres_db() -> TestDb {
    let url = postgres_url();
    let schema = format!("cg_test_{}", uuid::Uuid::new_v4().simple());
    let mut admin = postgres::Client::connect(&url, postgres::NoTls)
        .unwrap_or_else(|e| panic!("connecting to CHURNGUARD_TEST_POSTGRES_URL: {e}"));
    admin
        .batch_execute(&format!("CREATE SCHEMA {schema}"))
        .unwrap();
    let sep = if url.contains('?') { '&' } else { '?' };
    TestDb {
        target: format!("{url}{sep}options=-csearch_path%3D{schema}"),
        _dir: None,
        schema: Some((url, schema)),
    }
}

/// Test bodies run on both backends: `fn name(db) { ... }` becomes `sqlite::name` and
/// `postgres::name` (ignored unless run by `tests/postgres.sh`), `db` a [`TestDb`].
macro_rules! both_backends {
    ($( $(#[$meta:meta])* fn $name:ident($db:ident) $body:block )*) => {
        mod sqlite {
            #[allow(unused_imports)]
            use super::*;
            $( $(#[$meta])* #[test] fn $name() {
                let $db = $crate::alerts::outbox::test_support::sqlite_db();
                $body
            } )*
        }
        mod postgres {
            #[allow(unused_imports)]
            use super::*;
            $( $(#[$meta])* #[test] #[ignore = "needs PostgreSQL: tests/postgres.sh"] fn $name() {
                let $db = $crate::alerts::outbox::test_support::postgres_db();
                $body
            } )*
        }
    };
}
