//! Recording scores: each customer's state and the alerts the policy raises, in one
//! transaction, fsynced only when it stores an alert.

use rusqlite::{params, Connection, OptionalExtension, TransactionBehavior};

use super::{Ctx, Night, Sqlite};
use crate::alerts::policy::{AlertPolicy, CustomerState, Decision, Step};
use crate::alerts::{now_secs, Alert};
use crate::scoring::{ModelRef, Tier};
use crate::time::Ts;
use crate::{Error, Result};

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

/// Stages a night's files once its alerts are known (see [`Outbox::record_night`]).
pub(super) type StageFiles<'a> = dyn FnMut(&RecordSummary) -> Result<super::NightFiles> + 'a;

/// Stores one decided state (and the alert it raises); returns the alerts newly stored.
pub(super) type WriteState<'w, 'o> =
    dyn FnMut(&'o str, &CustomerState, Option<Alert>) -> Result<usize> + 'w;

/// Decides one recording, the same on both backends: the observations in customer order
/// (stable, so a customer listed twice is decided in the given order, the second time on
/// the first one's result), each against `stored` (the customer's state before this
/// recording, asked once per customer). `write` gets each state to store, with the alert
/// it raises, and returns the alerts it newly stored. `None` when the policy raises an
/// alert and `may_raise` is false (SQLite's unsynced attempt: redone with an fsync).
pub(super) fn decide<'o>(
    policy: &AlertPolicy,
    observations: &[Observation<'o>],
    build: &mut dyn FnMut(&Transition<'_>) -> Alert,
    may_raise: bool,
    stored: &mut dyn FnMut(&str) -> Result<Option<CustomerState>>,
    write: &mut WriteState<'_, 'o>,
) -> Result<Option<RecordSummary>> {
    let mut summary = RecordSummary {
        observed: observations.len(),
        ..RecordSummary::default()
    };
    // Visiting customers in key order keeps SQLite's B-tree pages hot (a million updates
    // in random order are several times slower) and PostgreSQL's row locks ordered.
    let mut order: Vec<usize> = (0..observations.len()).collect();
    order.sort_by(|&a, &b| observations[a].customer_id.cmp(observations[b].customer_id));
    let mut last: Option<(&str, Option<CustomerState>)> = None;
    for index in order {
        let obs = &observations[index];
        let current = match last {
            Some((id, state)) if id == obs.customer_id => state,
            _ => stored(obs.customer_id)?,
        };
        last = Some((obs.customer_id, current));
        let (next, decision) = match policy.step(current.as_ref(), obs.tier, obs.as_of) {
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
        if decision.is_raise() && !may_raise {
            return Ok(None);
        }
        last = Some((obs.customer_id, Some(next)));
        let alert = match decision {
            Decision::Raise { previous } => {
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
                Some(alert)
            }
            Decision::Suppress(_) => None,
        };
        summary.inserted += write(obs.customer_id, &next, alert)?;
    }
    Ok(Some(summary))
}

/// The alert's stored form (its JSON), refusing a non-finite probability.
pub(super) fn payload(alert: &Alert) -> Result<String> {
    if !alert.churn_probability.is_finite() {
        return Err(Error::Outbox(format!(
            "alert for customer `{}` has a non-finite probability",
            alert.customer_id
        )));
    }
    serde_json::to_string(alert).map_err(|source| Error::OutboxPayload {
        context: "serialising an alert".to_string(),
        source,
    })
}

impl Sqlite {
    /// One recording (see [`super::Outbox::record_many`]): `full_sync` commits with an
    /// fsync whatever is stored; otherwise a recording that stores no alert commits with
    /// `synchronous=NORMAL`, and one that does is rolled back and redone with FULL.
    pub(super) fn record_with(
        &self,
        policy: &AlertPolicy,
        observations: &[Observation<'_>],
        build: &mut dyn FnMut(&Transition<'_>) -> Alert,
        mut full_sync: bool,
        mut night: Option<(&Night, &mut StageFiles<'_>)>,
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
            let this_night = match night.as_mut() {
                Some((n, stage)) => {
                    let stage: &mut StageFiles<'_> = &mut **stage;
                    Some((*n, stage))
                }
                None => None,
            };
            match Self::try_record(
                &mut db.conn,
                policy,
                observations,
                build,
                full_sync,
                this_night,
            )? {
                Some(summary) => {
                    drop(db);
                    if summary.observed > summary.stale + summary.unchanged {
                        self.forget_states(observations);
                    }
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
        night: Option<(&Night, &mut StageFiles<'_>)>,
    ) -> Result<Option<RecordSummary>> {
        let now = now_secs();
        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .ctx("starting the recording transaction")?;
        let summary = {
            let mut get = tx.prepare_cached(GET_STATE).ctx("preparing")?;
            let mut put = tx.prepare_cached(PUT_STATE).ctx("preparing")?;
            let mut insert = tx.prepare_cached(INSERT_ALERT).ctx("preparing")?;
            decide(
                policy,
                observations,
                build,
                full_sync,
                &mut |id| {
                    get.query_row([id], state_from_row)
                        .optional()
                        .ctx("reading a customer's state")
                },
                &mut |id, next, alert| {
                    put.execute(params![
                        id,
                        next.last_tier,
                        next.last_scored_at,
                        next.last_alert_at,
                        next.last_alert_tier
                    ])
                    .ctx("writing a customer's state")?;
                    alert.map_or(Ok(0), |a| insert_alert(&mut insert, &a, now))
                },
            )?
        };
        let Some(summary) = summary else {
            return Ok(None);
        };
        if let Some((night, stage)) = night {
            super::nights::insert(&tx, night, summary.inserted)?;
            super::nights::insert_files(&tx, &stage(&summary)?)?;
        }
        tx.commit().ctx("committing the recorded scores")?;
        Ok(Some(summary))
    }

    /// Stores an alert without consulting the policy or touching customer state (a
    /// manual re-send, a test). Returns whether it was new (false: its key was there).
    pub fn insert(&self, alert: &Alert) -> Result<bool> {
        let db = self.lock();
        let mut stmt = db.conn.prepare_cached(INSERT_ALERT).ctx("preparing")?;
        let inserted = insert_alert(&mut stmt, alert, now_secs())? == 1;
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
}

fn insert_alert(stmt: &mut rusqlite::CachedStatement<'_>, alert: &Alert, now: Ts) -> Result<usize> {
    let payload = payload(alert)?;
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

/// A customer's state from a `GET_STATE` row.
pub(super) fn state_from_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<CustomerState> {
    Ok(CustomerState {
        last_tier: r.get(0)?,
        last_scored_at: r.get(1)?,
        last_alert_at: r.get(2)?,
        last_alert_tier: r.get(3)?,
    })
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::super::test_support::*;
    use super::super::{OutboxCounts, SMALL_RECORDING};
    use super::*;
    use crate::time::DAY;

    fn sync_level(outbox: &Outbox) -> i64 {
        outbox
            .sqlite()
            .lock()
            .conn
            .pragma_query_value(None, "synchronous", |r| r.get(0))
            .unwrap()
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

    both_backends! {
        fn customer_state_and_alerts_survive_reopening_the_database(db) {
            let t = night("2024-03-01");
            {
                let outbox = db.open();
                outbox
                    .record(&AlertPolicy::default(), obs("c1", Tier::High, t), build)
                    .unwrap();
            }
            let outbox = db.open();
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

        fn concurrent_recorders_decide_each_transition_once(db) {
            // Eight processes (eight outboxes on one database) score the same customers
            // at once, each a different day within one cooldown: whatever the order,
            // each customer enters High once and raises one alert.
            let p = AlertPolicy::default();
            let t = night("2024-03-01");
            let ids: Vec<String> = (0..200).map(|i| format!("c{i:03}")).collect();
            let base: Vec<_> = ids.iter().map(|c| obs(c, Tier::Low, t)).collect();
            db.open().record_many(&p, &base, build).unwrap();
            let raised: usize = std::thread::scope(|s| {
                let handles: Vec<_> = (1..=8)
                    .map(|day| {
                        let (outbox, ids) = (db.open(), &ids);
                        s.spawn(move || {
                            let mut raised = 0;
                            for chunk in ids.chunks(7) {
                                let batch: Vec<_> = chunk
                                    .iter()
                                    .map(|c| obs(c, Tier::High, t + day * DAY))
                                    .collect();
                                raised += outbox.record_group(&p, &batch, build).unwrap().inserted;
                            }
                            raised
                        })
                    })
                    .collect();
                handles.into_iter().map(|h| h.join().unwrap()).sum()
            });
            assert_eq!(raised, ids.len());
            assert_eq!(db.open().counts().unwrap().pending, ids.len() as u64);
        }

        fn a_score_that_crosses_into_the_alert_tier_stores_one_pending_alert(db) {
            let outbox = db.open();
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

        fn recording_the_same_key_twice_inserts_it_once(db) {
            let outbox = db.open();
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

        fn rerunning_the_same_night_raises_nothing_new(db) {
            let outbox = db.open();
            let p = AlertPolicy::default();
            let t = night("2024-03-01");
            let batch = [obs("c1", Tier::High, t), obs("c2", Tier::Low, t)];
            let first = outbox.record_many(&p, &batch, build).unwrap();
            let again = outbox.record_many(&p, &batch, build).unwrap();
            assert_eq!((first.raised, first.inserted), (1, 1));
            assert_eq!((again.raised, again.inserted), (0, 0));
            assert_eq!(outbox.counts().unwrap().pending, 1);
        }

        fn a_score_that_confirms_the_stored_tier_writes_nothing(db) {
            let outbox = db.open();
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

        fn a_stale_score_leaves_the_state_alone(db) {
            let outbox = db.open();
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

        fn an_alert_built_for_another_customer_is_refused_and_nothing_is_stored(db) {
            let outbox = db.open();
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
    }
}
