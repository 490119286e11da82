//! The nightly runs, one row each, beside the alert state they produced: a successful
//! night is recorded in the same transaction as its customers' tiers and alerts, a
//! refused one on its own. The next night compares with the latest successful night
//! strictly before its `as_of` (tier changes, the population check) whatever file the
//! score went to, and a metrics exporter counts the refusals since the last success.

use std::collections::BTreeMap;

use rusqlite::{params, OptionalExtension, Transaction};

use super::{Ctx, Sqlite};
use crate::alerts::now_secs;
use crate::error::RefusalReason;
use crate::time::Ts;
use crate::{Error, Result};

/// The table, created by the outbox's open path (an older file gains it there).
pub(super) const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS nights (
    seq         INTEGER PRIMARY KEY AUTOINCREMENT,
    as_of       INTEGER NOT NULL,
    finished_at INTEGER NOT NULL,
    model       TEXT NOT NULL,
    customers   INTEGER NOT NULL,
    tiers       TEXT NOT NULL,
    status      TEXT NOT NULL CHECK (status IN ('ok', 'refused')),
    reason      TEXT,
    detail      TEXT,
    alerts_new  INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS nights_by_status ON nights (status, as_of);
-- The files of committed nights still to be renamed into place (see NightFiles).
CREATE TABLE IF NOT EXISTS night_files (
    tmp  TEXT PRIMARY KEY,
    path TEXT NOT NULL
);
";

const INSERT: &str = "INSERT INTO nights \
     (as_of, finished_at, model, customers, tiers, status, reason, detail, alerts_new) \
     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)";

const COLUMNS: &str = "as_of, finished_at, model, customers, tiers, status, reason, detail";

/// One nightly run as recorded.
#[derive(Debug, Clone, PartialEq)]
pub struct Night {
    /// The instant scored.
    pub as_of: Ts,
    /// When the run was recorded (UTC seconds; set on insert).
    pub finished_at: Ts,
    /// `name version` of the model.
    pub model: String,
    /// Customers scored (refused: the population found, 0 when refused before).
    pub customers: usize,
    /// Customers per tier (`high`, `medium`, `low`); empty when refused.
    pub tiers: BTreeMap<String, usize>,
    /// Whether it scored.
    pub refused: bool,
    /// Refused: why. Scored: a guard that `--allow-stale` overrode, if any.
    pub reason: Option<RefusalReason>,
    /// The reasons in words.
    pub detail: Option<String>,
}

/// Refused runs since the last successful night, for a metrics exporter.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Refusals {
    /// Refused runs recorded after the latest successful one (all of them if none).
    pub total: u64,
    /// The same, by [`RefusalReason::as_str`].
    pub by_reason: BTreeMap<String, u64>,
    /// The `as_of` of the latest successful night, if any.
    pub last_success_as_of: Option<Ts>,
}

/// A night's output files, staged complete beside their final paths (`(temporary,
/// final)`, from [`crate::fsutil::Staged::keep`]) and recorded in the night's own
/// transaction: the commit is the moment the night's scores, summary and alert state
/// all become true, and [`Outbox::finish_night_files`] renames them afterwards, or on the
/// next run after a crash in between (roll forward).
pub type NightFiles = Vec<(std::path::PathBuf, std::path::PathBuf)>;

pub(super) fn insert_files(tx: &Transaction<'_>, files: &NightFiles) -> Result<()> {
    let mut put = tx
        .prepare_cached("INSERT OR REPLACE INTO night_files (tmp, path) VALUES (?1, ?2)")
        .ctx("preparing")?;
    for (tmp, path) in files {
        put.execute(params![tmp.to_string_lossy(), path.to_string_lossy()])
            .ctx("recording a night's staged file")?;
    }
    Ok(())
}

/// What `/metrics` says about the nightly runs recorded in this outbox.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct NightlyHealth {
    /// Every refused run ever recorded, by [`RefusalReason::as_str`] (a counter).
    pub refused_by_reason: BTreeMap<String, u64>,
    /// Refused runs since the latest successful one.
    pub since_last_success: Refusals,
    /// The latest successful night (by run order), if any.
    pub last_success: Option<Night>,
}

/// A row as SQLite gives it: the night, its tier counts' JSON and its reason's name
/// (decoded by [`decode`], whose errors are ours, not SQLite's).
type RawNight = (Night, String, Option<String>);

fn night_from_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<RawNight> {
    let customers: i64 = r.get(3)?;
    let status: String = r.get(5)?;
    let night = Night {
        as_of: r.get(0)?,
        finished_at: r.get(1)?,
        model: r.get(2)?,
        customers: customers.max(0) as usize,
        tiers: BTreeMap::new(),
        refused: status == "refused",
        reason: None,
        detail: r.get(7)?,
    };
    Ok((night, r.get(4)?, r.get(6)?))
}

fn decode((mut night, tiers, reason): RawNight) -> Result<Night> {
    night.tiers = serde_json::from_str(&tiers).map_err(|source| Error::OutboxPayload {
        context: "reading a night's tier counts".into(),
        source,
    })?;
    night.reason = reason.as_deref().map(str::parse).transpose()?;
    Ok(night)
}

/// Stores `night` in `tx` (finished now); `alerts_new` is the alerts it stored.
pub(super) fn insert(tx: &Transaction<'_>, night: &Night, alerts_new: usize) -> Result<()> {
    let tiers = serde_json::to_string(&night.tiers).map_err(|source| Error::OutboxPayload {
        context: "serialising a night's tier counts".into(),
        source,
    })?;
    tx.prepare_cached(INSERT)
        .ctx("preparing")?
        .execute(params![
            night.as_of,
            now_secs(),
            night.model,
            night.customers as i64,
            tiers,
            if night.refused { "refused" } else { "ok" },
            night.reason.map(RefusalReason::as_str),
            night.detail,
            alerts_new as i64,
        ])
        .ctx("recording the night")?;
    Ok(())
}

impl Sqlite {
    /// Records a refused night (a successful one goes with its alert state, through
    /// [`Outbox::record_night`]). Touches nothing else.
    pub fn record_refusal(&self, night: &Night) -> Result<()> {
        debug_assert!(night.refused);
        let mut db = self.lock();
        let tx = db
            .conn
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
            .ctx("starting to record a refused night")?;
        insert(&tx, night, 0)?;
        tx.commit().ctx("committing a refused night")
    }

    /// The latest successful night strictly before `as_of` (so re-running a night
    /// compares with the one before it, never with itself).
    pub fn previous_night(&self, as_of: Ts) -> Result<Option<Night>> {
        let sql = format!(
            "SELECT {COLUMNS} FROM nights WHERE status = 'ok' AND as_of < ?1 \
             ORDER BY as_of DESC, seq DESC LIMIT 1"
        );
        let row = self
            .reader()
            .prepare_cached(&sql)
            .ctx("preparing")?
            .query_row([as_of], night_from_row)
            .optional()
            .ctx("reading the previous night")?;
        row.map(decode).transpose()
    }

    /// Every recorded night, oldest run first.
    pub fn nights(&self) -> Result<Vec<Night>> {
        let sql = format!("SELECT {COLUMNS} FROM nights ORDER BY seq");
        let reader = self.reader();
        let mut stmt = reader.prepare_cached(&sql).ctx("preparing")?;
        let rows = stmt
            .query_map([], night_from_row)
            .ctx("reading the nights")?
            .collect::<rusqlite::Result<Vec<_>>>()
            .ctx("reading the nights")?;
        rows.into_iter().map(decode).collect()
    }

    /// Renames the staged files of committed nights into place (in the order they were
    /// recorded) and forgets them: right after a night commits, and at the start of the
    /// next run when a crash came between the commit and the renames. Returns how many
    /// it renamed.
    pub fn finish_night_files(&self) -> Result<usize> {
        let pending: Vec<(String, String)> = {
            let reader = self.reader();
            let mut stmt = reader
                .prepare_cached("SELECT tmp, path FROM night_files ORDER BY rowid")
                .ctx("preparing")?;
            let rows = stmt
                .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
                .ctx("reading the staged files")?
                .collect::<rusqlite::Result<Vec<_>>>()
                .ctx("reading the staged files")?;
            rows
        };
        for (tmp, path) in &pending {
            crate::fsutil::rename_into_place(tmp.as_ref(), path.as_ref())?;
            self.lock()
                .conn
                .execute("DELETE FROM night_files WHERE tmp = ?1", [tmp])
                .ctx("forgetting a staged file")?;
        }
        Ok(pending.len())
    }

    /// The nightly runs' health for `/metrics`: refusals ever and since the last
    /// success, and the last successful night (when it ran, what it scored).
    pub fn nightly_health(&self) -> Result<NightlyHealth> {
        let since_last_success = self.refusals_since_last_success()?;
        let reader = self.reader();
        let mut stmt = reader
            .prepare_cached(
                "SELECT COALESCE(reason, ''), COUNT(*) FROM nights \
                 WHERE status = 'refused' GROUP BY 1",
            )
            .ctx("preparing")?;
        let refused_by_reason = stmt
            .query_map([], |r| {
                Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)? as u64))
            })
            .ctx("counting refused nights")?
            .collect::<rusqlite::Result<BTreeMap<_, _>>>()
            .ctx("counting refused nights")?;
        let sql =
            format!("SELECT {COLUMNS} FROM nights WHERE status = 'ok' ORDER BY seq DESC LIMIT 1");
        let last = reader
            .prepare_cached(&sql)
            .ctx("preparing")?
            .query_row([], night_from_row)
            .optional()
            .ctx("reading the last successful night")?;
        Ok(NightlyHealth {
            refused_by_reason,
            since_last_success,
            last_success: last.map(decode).transpose()?,
        })
    }

    /// Refused runs recorded since the latest successful one, by reason: what a
    /// scheduler's metrics exporter reports (a gauge that goes back to 0 on success).
    pub fn refusals_since_last_success(&self) -> Result<Refusals> {
        let reader = self.reader();
        let last: Option<(i64, Ts)> = reader
            .prepare_cached(
                "SELECT seq, as_of FROM nights WHERE status = 'ok' ORDER BY seq DESC LIMIT 1",
            )
            .ctx("preparing")?
            .query_row([], |r| Ok((r.get(0)?, r.get(1)?)))
            .optional()
            .ctx("reading the last successful night")?;
        let mut stmt = reader
            .prepare_cached(
                "SELECT COALESCE(reason, ''), COUNT(*) FROM nights \
                 WHERE status = 'refused' AND seq > ?1 GROUP BY 1",
            )
            .ctx("preparing")?;
        let mut out = Refusals {
            last_success_as_of: last.map(|l| l.1),
            ..Refusals::default()
        };
        let rows = stmt
            .query_map([last.map_or(0, |l| l.0)], |r| {
                Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?))
            })
            .ctx("counting refused nights")?;
        for row in rows {
            let (reason, n) = row.ctx("counting refused nights")?;
            out.total += n as u64;
            out.by_reason.insert(reason, n as u64);
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::super::test_support::*;
    use super::*;
    use crate::alerts::policy::AlertPolicy;
    use crate::alerts::Alert;
    use crate::alerts::RecordSummary;
    use crate::scoring::Tier;
    use crate::time::DAY;

    fn ok(as_of: Ts, customers: usize, high: usize) -> Night {
        Night {
            as_of,
            finished_at: 0,
            model: "churn v1".into(),
            customers,
            tiers: [("high".to_string(), high), ("low".into(), customers - high)].into(),
            refused: false,
            reason: None,
            detail: None,
        }
    }

    fn refused(as_of: Ts, reason: RefusalReason) -> Night {
        Night {
            as_of,
            finished_at: 0,
            model: "churn v1".into(),
            customers: 0,
            tiers: BTreeMap::new(),
            refused: true,
            reason: Some(reason),
            detail: Some("the data is late".into()),
        }
    }

    fn no_files(_: &RecordSummary) -> Result<NightFiles> {
        Ok(Vec::new())
    }

    fn record_ok(outbox: &Outbox, night: &Night) {
        let t = night.as_of;
        let observed = [obs("c1", Tier::Low, t)];
        outbox
            .record_night(
                &AlertPolicy::default(),
                &observed,
                build,
                night,
                &mut no_files,
            )
            .unwrap();
    }

    #[test]
    fn an_outbox_written_before_the_nights_table_gains_it_on_open() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.db");
        drop(Outbox::open(&path).unwrap());
        let conn = rusqlite::Connection::open(&path).unwrap();
        conn.execute_batch("DROP TABLE nights").unwrap();
        drop(conn);
        let outbox = Outbox::open(&path).unwrap();
        assert!(outbox.nights().unwrap().is_empty());
        record_ok(&outbox, &ok(night("2024-03-01"), 3, 1));
        assert_eq!(outbox.nights().unwrap().len(), 1);
    }

    both_backends! {
        fn the_previous_night_is_the_latest_success_strictly_before(db) {
            let outbox = db.open();
            let t = night("2024-03-10");
            assert_eq!(outbox.previous_night(t).unwrap(), None);
            record_ok(&outbox, &ok(t - 2 * DAY, 100, 5));
            record_ok(&outbox, &ok(t - DAY, 90, 7));
            outbox
                .record_refusal(&refused(t - DAY / 2, RefusalReason::StaleTable))
                .unwrap();
            // Re-running night t itself: it is not its own previous night.
            record_ok(&outbox, &ok(t, 95, 6));
            let prev = outbox.previous_night(t).unwrap().unwrap();
            assert_eq!((prev.as_of, prev.customers), (t - DAY, 90));
            assert_eq!(prev.tiers["high"], 7);
            assert!(prev.finished_at > 0 && !prev.refused);
            assert_eq!(
                outbox.previous_night(t + DAY).unwrap().unwrap().customers,
                95
            );
            // A backfill of an earlier night compares with the night before it.
            assert_eq!(
                outbox.previous_night(t - DAY).unwrap().unwrap().as_of,
                t - 2 * DAY
            );
        }

        fn refusals_are_counted_by_reason_until_the_next_success(db) {
            let outbox = db.open();
            let t = night("2024-03-10");
            outbox
                .record_refusal(&refused(t, RefusalReason::AsOfAfterData))
                .unwrap();
            let r = outbox.refusals_since_last_success().unwrap();
            assert_eq!((r.total, r.last_success_as_of), (1, None));
            record_ok(&outbox, &ok(t, 10, 1));
            assert_eq!(
                outbox.refusals_since_last_success().unwrap(),
                Refusals {
                    total: 0,
                    by_reason: BTreeMap::new(),
                    last_success_as_of: Some(t),
                }
            );
            for reason in [
                RefusalReason::StaleTable,
                RefusalReason::StaleTable,
                RefusalReason::CollapsedPopulation,
            ] {
                outbox.record_refusal(&refused(t + DAY, reason)).unwrap();
            }
            let r = outbox.refusals_since_last_success().unwrap();
            assert_eq!(r.total, 3);
            assert_eq!(r.by_reason["stale_table"], 2);
            assert_eq!(r.by_reason["collapsed_population"], 1);
            let all = outbox.nights().unwrap();
            assert_eq!(all.len(), 5);
            assert_eq!(all[4].reason, Some(RefusalReason::CollapsedPopulation));
            assert_eq!(all[4].detail.as_deref(), Some("the data is late"));
        }

        fn a_night_is_recorded_with_its_alert_state_or_not_at_all(db) {
            let outbox = db.open();
            let t = night("2024-03-01");
            let err = outbox
                .record_night(
                    &AlertPolicy::default(),
                    &[obs("c1", Tier::High, t)],
                    |_| Alert::new(model(), "someone-else", 0.9, Tier::High, None, t, "batch"),
                    &ok(t, 1, 1),
                    &mut no_files,
                )
                .unwrap_err();
            assert!(err.to_string().contains("someone-else"), "{err}");
            assert!(outbox.nights().unwrap().is_empty());
            assert_eq!(outbox.state("c1").unwrap(), None);
            let s = outbox
                .record_night(
                    &AlertPolicy::default(),
                    &[obs("c1", Tier::High, t)],
                    build,
                    &ok(t, 1, 1),
                    &mut no_files,
                )
                .unwrap();
            assert_eq!(s.inserted, 1);
            assert_eq!(outbox.nights().unwrap().len(), 1);
            assert!(outbox.state("c1").unwrap().is_some());
        }

        fn nightly_health_counts_refusals_ever_and_since_the_last_success(db) {
            let outbox = db.open();
            assert_eq!(outbox.nightly_health().unwrap(), NightlyHealth::default());
            let stale = RefusalReason::StaleTable;
            outbox
                .record_refusal(&refused(night("2024-03-01"), stale))
                .unwrap();
            record_ok(&outbox, &ok(night("2024-03-01"), 3, 1));
            outbox
                .record_refusal(&refused(night("2024-03-02"), stale))
                .unwrap();
            let collapsed = RefusalReason::CollapsedPopulation;
            outbox
                .record_refusal(&refused(night("2024-03-02"), collapsed))
                .unwrap();
            let h = outbox.nightly_health().unwrap();
            assert_eq!(
                h.refused_by_reason,
                [
                    ("collapsed_population".to_string(), 1),
                    ("stale_table".into(), 2)
                ]
                .into()
            );
            assert_eq!(h.since_last_success.total, 2);
            let last = h.last_success.unwrap();
            assert_eq!((last.as_of, last.customers), (night("2024-03-01"), 3));
            assert!(last.finished_at > 0);
        }
    }
}
