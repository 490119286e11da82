//! Retention: finished alerts (delivered or dead-lettered) older than a cutoff are
//! deleted with their deliveries, and SQLite gives the space back to the file system.

use rusqlite::{params, TransactionBehavior};

use super::{Ctx, Sqlite};
use crate::time::Ts;
use crate::Result;

/// What [`super::Outbox::prune`] deleted.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Pruned {
    /// Finished alerts deleted.
    pub alerts: u64,
    /// Their delivery rows deleted.
    pub deliveries: u64,
}

/// Default retention of finished alerts, in days (`[alerts] retention_days`).
pub const DEFAULT_RETENTION_DAYS: u32 = 90;

impl Sqlite {
    /// Deletes finished alerts last changed before `before`, in one transaction, then
    /// `VACUUM`s (when anything was deleted) and truncates the WAL so the file shrinks:
    /// deleted pages would otherwise only be reused, never returned. `VACUUM` holds the
    /// writer while it copies the file; other processes wait for it (up to
    /// [`super::BUSY_TIMEOUT`]).
    pub fn prune(&self, before: Ts) -> Result<Pruned> {
        let mut db = self.lock();
        let tx = db
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .ctx("starting a prune")?;
        let deliveries = tx
            .execute(
                "DELETE FROM deliveries WHERE idempotency_key IN (SELECT idempotency_key \
                 FROM alerts WHERE status IN ('delivered', 'dead') AND updated_at < ?1)",
                params![before],
            )
            .ctx("deleting old deliveries")?;
        let alerts = tx
            .execute(
                "DELETE FROM alerts WHERE status IN ('delivered', 'dead') AND updated_at < ?1",
                params![before],
            )
            .ctx("deleting old alerts")?;
        tx.commit().ctx("committing a prune")?;
        if alerts > 0 {
            db.conn
                .execute_batch("VACUUM")
                .ctx("vacuuming the outbox file")?;
            // The copy went through the WAL: empty it, or the space moves there.
            db.conn
                .query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()))
                .ctx("checkpointing the outbox file")?;
        }
        Ok(Pruned {
            alerts: alerts as u64,
            deliveries: deliveries as u64,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::super::test_support::*;
    use super::*;
    use crate::alerts::{now_secs, Alert, AlertPolicy};
    use crate::scoring::Tier;

    both_backends! {
        fn pruning_deletes_finished_alerts_before_the_cutoff_and_keeps_pending_ones(db) {
            let outbox = db.open();
            let alerts: Vec<Alert> = ["c1", "c2", "c3"]
                .iter()
                .map(|c| Alert::new(model(), *c, 0.9, Tier::High, None, 0, "batch"))
                .collect();
            for a in &alerts {
                outbox.insert(a).unwrap();
            }
            assert_eq!(outbox.claim_due(&["hook"], 0, 10, 1_000).unwrap().len(), 3);
            let key = |i: usize| alerts[i].idempotency_key.as_str();
            outbox.mark_delivered(key(0), "hook").unwrap();
            outbox.mark_dead(key(1), "hook", "400").unwrap();
            // Nothing finished before an old cutoff.
            assert_eq!(outbox.prune(now_secs() - 3600).unwrap(), Pruned::default());
            let p = outbox.prune(now_secs() + 10).unwrap();
            assert_eq!((p.alerts, p.deliveries), (2, 2));
            let c = outbox.counts().unwrap();
            assert_eq!((c.pending, c.delivered, c.dead), (1, 0, 0));
            assert!(outbox.deliveries(key(0)).unwrap().is_empty());
            assert_eq!(outbox.deliveries(key(2)).unwrap().len(), 1, "pending kept");
            // A pruned key is forgotten: inserting it again stores it.
            assert!(outbox.insert(&alerts[0]).unwrap());
            assert!(!outbox.insert(&alerts[2]).unwrap());
        }
    }

    #[test]
    fn pruning_gives_the_space_back_to_the_file_system() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.db");
        let outbox = Outbox::open(&path).unwrap();
        let t = night("2024-03-01");
        let ids: Vec<String> = (0..5_000).map(|i| format!("cust-{i:05}")).collect();
        let high: Vec<_> = ids.iter().map(|c| obs(c, Tier::High, t)).collect();
        let s = outbox
            .record_many(&AlertPolicy::default(), &high, build)
            .unwrap();
        assert_eq!(s.inserted, ids.len());
        outbox
            .sqlite()
            .lock()
            .conn
            .execute("UPDATE alerts SET status = 'delivered'", [])
            .unwrap();
        let size = || {
            ["", "-wal"]
                .iter()
                .map(|ext| {
                    std::fs::metadata(format!("{}{ext}", path.display())).map_or(0, |m| m.len())
                })
                .sum::<u64>()
        };
        let before = size();
        let p = outbox.prune(now_secs() + 10).unwrap();
        assert_eq!(p.alerts, 5_000);
        let after = size();
        assert!(after * 2 < before, "{before} -> {after} bytes");
        // The customers' states (the cooldown) are kept.
        assert_eq!(
            outbox.state("cust-00042").unwrap().unwrap().last_tier,
            Tier::High
        );
    }
}
