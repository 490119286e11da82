//! Delivery: fanning pending alerts out to each sink, claiming due deliveries under a
//! lease, and recording each sink's outcome (delivered, retried, dead-lettered).

use rusqlite::types::{FromSql, FromSqlError, FromSqlResult, ValueRef};
use rusqlite::{params, OptionalExtension, ToSql, Transaction, TransactionBehavior};

use super::{Ctx, Sqlite};
use crate::alerts::{now_secs, Alert};
use crate::time::Ts;
use crate::{Error, Result};

/// An outcome (`?3`, retried at `?4`, with the error `?5`, at `?6`, the first attempt
/// made at `?7` or, when NULL, as stored): a finished delivery is never reopened.
const PUT_OUTCOME: &str = "INSERT INTO deliveries \
     (idempotency_key, sink, status, attempts, next_attempt_ms, last_error, updated_at, \
      first_attempt_ms) \
     SELECT idempotency_key, ?2, ?3, 1, ?4, ?5, ?6, ?7 FROM alerts WHERE idempotency_key = ?1 \
     ON CONFLICT (idempotency_key, sink) DO UPDATE SET status = excluded.status, \
     attempts = deliveries.attempts + 1, next_attempt_ms = excluded.next_attempt_ms, \
     first_attempt_ms = coalesce(excluded.first_attempt_ms, deliveries.first_attempt_ms), \
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
    /// Given up: a permanent error, or still failing past the give-up deadline.
    /// Needs a human (`churnguard alerts redrive`).
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

impl FromSql for DeliveryStatus {
    fn column_result(value: ValueRef<'_>) -> FromSqlResult<Self> {
        let s = value.as_str()?;
        DeliveryStatus::parse(s).ok_or_else(|| FromSqlError::Other(format!("status `{s}`").into()))
    }
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
    /// When the first attempt was made (epoch milliseconds): the give-up deadline runs
    /// from here. `None` before the first attempt (and for a row of a layout-1 file
    /// not attempted since the upgrade).
    pub first_attempt_ms: Option<i64>,
}

/// Alerts waiting on a sink, read cheaply for `/metrics`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct OutboxDepth {
    /// Alerts not yet through every sink.
    pub pending: u64,
    /// Alerts a sink gave up on, waiting for `churnguard alerts redrive`.
    pub dead_lettered: u64,
}

/// What [`Outbox::redrive`] did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Redriven {
    /// Dead-lettered alerts moved back to pending.
    pub redriven: usize,
    /// Keys asked for that were not dead-lettered (pending or delivered): left alone.
    pub not_dead: Vec<String>,
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

/// What one outcome does to a delivery, the same on both backends.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Outcome {
    pub status: DeliveryStatus,
    /// When it is due again (0 once finished).
    pub next_attempt_ms: i64,
    /// When its first attempt was made; `None`: keep what is stored.
    pub first_attempt_ms: Option<i64>,
}

impl Outcome {
    /// A sink's final answer: delivered, or dead-lettered for good.
    pub(super) fn finished(status: DeliveryStatus) -> Outcome {
        Outcome {
            status,
            next_attempt_ms: 0,
            first_attempt_ms: None,
        }
    }

    /// A failed attempt at `now_ms` on a delivery first attempted at `first_attempt_ms`
    /// (`None`: this is the first): dead once `give_up_ms` have passed since the first
    /// attempt, else retried at `next_attempt_ms` but never later than that deadline
    /// (so the last attempt is made at it).
    pub(super) fn failed(
        first_attempt_ms: Option<i64>,
        now_ms: i64,
        next_attempt_ms: i64,
        give_up_ms: i64,
    ) -> Outcome {
        let first = first_attempt_ms.unwrap_or(now_ms);
        let deadline = first.saturating_add(give_up_ms);
        Outcome {
            status: if now_ms >= deadline {
                DeliveryStatus::Dead
            } else {
                DeliveryStatus::Pending
            },
            next_attempt_ms: next_attempt_ms.min(deadline),
            first_attempt_ms: Some(first),
        }
    }
}

/// A claimed delivery as stored, before its payload is read.
pub(super) struct Claimed {
    pub key: String,
    pub sink: String,
    pub attempts: u32,
    pub payload: String,
}

/// A claimed delivery whose stored payload no longer parses: dead-lettered at once.
pub(super) struct Unreadable {
    pub key: String,
    pub sink: String,
    pub error: String,
}

/// A claim's alert, or why it cannot be sent.
pub(super) fn decode(c: Claimed) -> std::result::Result<Due, Unreadable> {
    match Alert::from_stored(&c.payload) {
        Ok(alert) => Ok(Due {
            alert,
            sink: c.sink,
            attempts: c.attempts,
        }),
        Err(e) => {
            tracing::error!(idempotency_key = %c.key, sink = %c.sink, error = %e,
                "stored alert is not valid JSON: dead-lettered");
            Err(Unreadable {
                key: c.key,
                sink: c.sink,
                error: format!("stored payload is not a valid alert: {e}"),
            })
        }
    }
}

/// A pending alert's stored payload, read back.
pub(super) fn parse_stored(payload: &str) -> Result<Alert> {
    serde_json::from_str(payload).map_err(|source| Error::OutboxPayload {
        context: "a stored alert is not valid JSON".to_string(),
        source,
    })
}

/// An outcome for a key that names no alert: the caller's mistake.
pub(super) fn no_such_alert(key: &str) -> Error {
    Error::Outbox(format!("no alert with idempotency key `{key}`"))
}

/// A redrive naming keys that are not in the outbox: refused whole.
pub(super) fn unknown_keys(unknown: &[&String], outbox: &std::path::Path) -> Error {
    let named: Vec<String> = unknown.iter().map(|k| format!("`{k}`")).collect();
    Error::Outbox(format!(
        "no alert with idempotency key {} in {}: nothing redriven",
        named.join(", "),
        outbox.display()
    ))
}

impl Sqlite {
    /// The stored payloads of up to `limit` alerts not yet through every sink, oldest
    /// first.
    pub(super) fn pending(&self, limit: usize) -> Result<Vec<String>> {
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
        rows.collect::<rusqlite::Result<_>>()
            .ctx("listing pending alerts")
    }

    /// Claims up to `limit` deliveries due at `now_ms` for the named sinks, oldest due
    /// first. Alerts still pending get a delivery row for each sink that lacks one first
    /// (so a sink added later receives only alerts not yet finished). A claimed delivery
    /// is not due again for `lease_ms`: another dispatcher on the same file does not send
    /// it concurrently, and after a crash it is retried once the lease expires. A stored
    /// alert that no longer parses is dead-lettered here.
    pub(super) fn claim_due(
        &self,
        sinks: &[&str],
        now_ms: i64,
        limit: usize,
        lease_ms: i64,
    ) -> Result<Vec<Claimed>> {
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
        let mut claimed = Vec::with_capacity(rows.len());
        for (key, sink, attempts, payload) in rows {
            tx.prepare_cached(
                "UPDATE deliveries SET next_attempt_ms = ?3, updated_at = ?4, \
                 first_attempt_ms = coalesce(first_attempt_ms, ?5) \
                 WHERE idempotency_key = ?1 AND sink = ?2",
            )
            .ctx("preparing")?
            .execute(params![
                key,
                sink,
                now_ms.saturating_add(lease_ms),
                now,
                now_ms
            ])
            .ctx("claiming a delivery")?;
            claimed.push(Claimed {
                key,
                sink,
                attempts,
                payload,
            });
        }
        tx.commit().ctx("committing a claim")?;
        for sink in fanned {
            db.fanned_out.insert(sink.to_string(), max_seq);
        }
        Ok(claimed)
    }

    /// Dead-letters claimed deliveries whose payload no longer parses, in one transaction.
    pub(super) fn dead_letter_unreadable(&self, dead: &[Unreadable]) -> Result<()> {
        let mut db = self.lock();
        let tx = db
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .ctx("starting a delivery update")?;
        for d in dead {
            let outcome = Outcome::finished(DeliveryStatus::Dead);
            put_outcome(&tx, &d.key, &d.sink, outcome, Some(&d.error), now_secs())?;
        }
        tx.commit().ctx("committing a delivery update")
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
        put_outcome(&tx, key, sink, Outcome::finished(status), error, now_secs())?;
        tx.commit().ctx("committing a delivery update")
    }

    /// [`super::Outbox::mark_failed`]: the policy is [`Outcome::failed`].
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
        let mut db = self.lock();
        let tx = db
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .ctx("starting a delivery update")?;
        let first: Option<i64> = tx
            .query_row(
                "SELECT first_attempt_ms FROM deliveries WHERE idempotency_key = ?1 AND sink = ?2",
                params![key, sink],
                |r| r.get(0),
            )
            .optional()
            .ctx("reading a delivery")?
            .flatten();
        let outcome = Outcome::failed(first, now_ms, next_attempt_ms, give_up_ms);
        put_outcome(&tx, key, sink, outcome, Some(error), now)?;
        let status: DeliveryStatus = tx
            .query_row(
                "SELECT status FROM deliveries WHERE idempotency_key = ?1 AND sink = ?2",
                params![key, sink],
                |r| r.get(0),
            )
            .ctx("reading a delivery")?;
        tx.commit().ctx("committing a delivery update")?;
        Ok(status)
    }

    /// Moves dead-lettered alerts back to pending, with every dead delivery due at once
    /// and a fresh give-up deadline (its attempts count on): the given keys, or every
    /// dead-lettered alert when `keys` is `None`. One transaction; a key that names no
    /// alert fails the whole call and changes nothing. The next dispatcher pass (a
    /// running service's, or the next `serve` / `score`) delivers them.
    pub fn redrive(&self, keys: Option<&[String]>) -> Result<Redriven> {
        let now = now_secs();
        let mut db = self.lock();
        let tx = db
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .ctx("starting a redrive")?;
        let keys: Vec<String> = match keys {
            Some(keys) => {
                let mut unknown = Vec::new();
                for key in keys {
                    if !alert_exists(&tx, key)? {
                        unknown.push(key);
                    }
                }
                if !unknown.is_empty() {
                    return Err(unknown_keys(&unknown, self.path()));
                }
                keys.to_vec()
            }
            None => {
                let mut stmt = tx
                    .prepare(
                        "SELECT idempotency_key FROM alerts WHERE status = 'dead' ORDER BY seq",
                    )
                    .ctx("preparing")?;
                let rows = stmt
                    .query_map([], |r| r.get(0))
                    .ctx("listing dead-lettered alerts")?;
                rows.collect::<rusqlite::Result<_>>()
                    .ctx("listing dead-lettered alerts")?
            }
        };
        let mut out = Redriven::default();
        for key in keys {
            let changed = tx
                .prepare_cached(
                    "UPDATE alerts SET status = 'pending', updated_at = ?2 \
                     WHERE idempotency_key = ?1 AND status = 'dead'",
                )
                .ctx("preparing")?
                .execute(params![key, now])
                .ctx("redriving an alert")?;
            if changed == 0 {
                out.not_dead.push(key);
                continue;
            }
            tx.prepare_cached(
                "UPDATE deliveries SET status = 'pending', next_attempt_ms = 0, \
                 first_attempt_ms = NULL, updated_at = ?2 \
                 WHERE idempotency_key = ?1 AND status = 'dead'",
            )
            .ctx("preparing")?
            .execute(params![key, now])
            .ctx("redriving a delivery")?;
            out.redriven += 1;
        }
        tx.commit().ctx("committing a redrive")?;
        Ok(out)
    }

    /// Alerts pending and dead-lettered: two counts over the status index, on a reader
    /// (never waits for the writer), for `/metrics` at each scrape.
    pub fn depth(&self) -> Result<OutboxDepth> {
        let conn = self.reader();
        let (pending, dead): (i64, i64) = conn
            .prepare_cached(
                "SELECT (SELECT count(*) FROM alerts WHERE status = 'pending'), \
                 (SELECT count(*) FROM alerts WHERE status = 'dead')",
            )
            .ctx("preparing")?
            .query_row([], |r| Ok((r.get(0)?, r.get(1)?)))
            .ctx("counting pending alerts")?;
        Ok(OutboxDepth {
            pending: u64::try_from(pending).unwrap_or(0),
            dead_lettered: u64::try_from(dead).unwrap_or(0),
        })
    }

    /// The deliveries of one alert, by sink name.
    pub fn deliveries(&self, key: &str) -> Result<Vec<DeliveryRecord>> {
        let db = self.lock();
        let mut stmt = db
            .conn
            .prepare_cached(
                "SELECT sink, status, attempts, last_error, next_attempt_ms, first_attempt_ms \
                 FROM deliveries \
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
                    first_attempt_ms: r.get(5)?,
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

/// Stores an outcome, then closes the alert if every sink is through with it.
fn put_outcome(
    tx: &Transaction<'_>,
    key: &str,
    sink: &str,
    o: Outcome,
    error: Option<&str>,
    now: Ts,
) -> Result<()> {
    let changed = tx
        .prepare_cached(PUT_OUTCOME)
        .ctx("preparing")?
        .execute(params![
            key,
            sink,
            o.status.as_str(),
            o.next_attempt_ms,
            error,
            now,
            o.first_attempt_ms
        ])
        .ctx("recording a delivery")?;
    // Nothing changed: a finished delivery (a late duplicate outcome never reopens
    // it), or no such alert.
    if changed == 0 && !alert_exists(tx, key)? {
        return Err(no_such_alert(key));
    }
    close_if_done(tx, key, now)
}

fn alert_exists(tx: &Transaction<'_>, key: &str) -> Result<bool> {
    tx.prepare_cached("SELECT EXISTS (SELECT 1 FROM alerts WHERE idempotency_key = ?1)")
        .ctx("preparing")?
        .query_row([key], |r| r.get(0))
        .ctx("looking up an alert")
}

fn close_if_done(tx: &Transaction<'_>, key: &str, now: Ts) -> Result<()> {
    tx.prepare_cached(CLOSE_IF_DONE)
        .ctx("preparing")?
        .execute(params![key, now])
        .ctx("closing a finished alert")?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::super::test_support::*;
    use super::*;
    use crate::scoring::Tier;

    both_backends! {
        fn a_failed_delivery_is_retried_until_its_deadline_then_dead_lettered(db) {
            let outbox = db.open();
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
            // Give up 10 s after the first attempt (made at 1 000).
            let give_up = 10_000;
            assert_eq!(
                outbox
                    .mark_failed(key, "hook", "503", 1_100, 2_000, give_up)
                    .unwrap(),
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
            // A retry asked for past the deadline is made at the deadline instead.
            assert_eq!(
                outbox
                    .mark_failed(key, "hook", "503", 2_100, 60_000, give_up)
                    .unwrap(),
                DeliveryStatus::Pending
            );
            let d = &outbox.deliveries(key).unwrap()[0];
            assert_eq!(
                (d.next_attempt_ms, d.first_attempt_ms),
                (11_000, Some(1_000))
            );
            // Many more failures before the deadline: still pending, however many.
            for i in 0..20 {
                assert_eq!(
                    outbox
                        .mark_failed(key, "hook", "503", 3_000 + i, 3_100 + i, give_up)
                        .unwrap(),
                    DeliveryStatus::Pending
                );
            }
            assert_eq!(
                outbox
                    .mark_failed(key, "hook", "still 503", 11_000, 12_000, give_up)
                    .unwrap(),
                DeliveryStatus::Dead
            );
            assert!(outbox
                .claim_due(&["hook"], i64::MAX / 2, 10, 0)
                .unwrap()
                .is_empty());
            let d = &outbox.deliveries(key).unwrap()[0];
            assert_eq!((d.status, d.attempts), (DeliveryStatus::Dead, 23));
            assert_eq!(d.last_error.as_deref(), Some("still 503"));
            assert_eq!(outbox.counts().unwrap().dead, 1);
            assert_eq!(
                outbox.depth().unwrap(),
                OutboxDepth {
                    pending: 0,
                    dead_lettered: 1
                }
            );
            // A late success never reopens a finished delivery.
            outbox.mark_delivered(key, "hook").unwrap();
            assert_eq!(
                outbox.deliveries(key).unwrap()[0].status,
                DeliveryStatus::Dead
            );
        }

        fn a_redrive_makes_dead_letters_due_at_once_with_a_fresh_deadline(db) {
            let outbox = db.open();
            let dead = Alert::new(model(), "c1", 0.9, Tier::High, None, 0, "batch");
            let fine = Alert::new(model(), "c2", 0.9, Tier::High, None, 0, "batch");
            outbox.insert(&dead).unwrap();
            outbox.insert(&fine).unwrap();
            let (k1, k2) = (&dead.idempotency_key, &fine.idempotency_key);
            assert_eq!(
                outbox.claim_due(&["hook"], 1_000, 10, 5_000).unwrap().len(),
                2
            );
            outbox.mark_dead(k1, "hook", "400").unwrap();
            outbox.mark_delivered(k2, "hook").unwrap();
            // An unknown key refuses the whole call, naming the key.
            let err = outbox
                .redrive(Some(&[k1.clone(), "nope".into()]))
                .unwrap_err()
                .to_string();
            assert!(err.contains("`nope`"), "{err}");
            assert_eq!(outbox.counts().unwrap().dead, 1, "nothing changed");
            // A delivered key is reported, not reopened.
            let r = outbox.redrive(Some(&[k1.clone(), k2.clone()])).unwrap();
            assert_eq!((r.redriven, r.not_dead), (1, vec![k2.clone()]));
            let counts = outbox.counts().unwrap();
            assert_eq!((counts.pending, counts.delivered, counts.dead), (1, 1, 0));
            let d = &outbox.deliveries(k1).unwrap()[0];
            assert_eq!(
                (d.status, d.attempts, d.next_attempt_ms, d.first_attempt_ms),
                (DeliveryStatus::Pending, 1, 0, None)
            );
            let due = outbox.claim_due(&["hook"], 50_000, 10, 5_000).unwrap();
            assert_eq!(due.len(), 1);
            assert_eq!(due[0].alert.idempotency_key, *k1);
            // The deadline now runs from the attempt after the redrive.
            assert_eq!(
                outbox.deliveries(k1).unwrap()[0].first_attempt_ms,
                Some(50_000)
            );
            // --all with nothing dead redrives nothing.
            outbox.mark_delivered(k1, "hook").unwrap();
            assert_eq!(outbox.redrive(None).unwrap(), Redriven::default());
        }

        fn an_alert_is_delivered_once_every_sink_accepted_it(db) {
            let outbox = db.open();
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

        fn marking_an_unknown_key_is_an_error(db) {
            let outbox = db.open();
            assert!(outbox.mark_delivered("nope", "a").is_err());
            assert!(outbox.mark_failed("nope", "a", "x", 0, 10, 1_000).is_err());
        }
    }
}
