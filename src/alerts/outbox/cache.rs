//! Customer states read recently, so that a customer scored again and again costs no
//! database read; emptied on this process's writes and on other processes' commits.
//! Shared by the SQLite and PostgreSQL backends.

#[cfg(doc)]
use super::Outbox;

use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use rustc_hash::FxHashMap;

use super::{Ctx, Observation, Sqlite, SMALL_RECORDING};
use crate::alerts::policy::{AlertPolicy, CustomerState, Step};
use crate::Result;

/// Customer states read recently by [`Outbox::needs_recording`], so that a customer
/// scored again and again costs no database read. A customer's entry goes when this
/// process writes their state; everything goes when the database's change counter
/// (SQLite's `data_version`, PostgreSQL's `state_version` sequence) shows another
/// process's commit (checked at most every [`CACHE_CHECK`]); capped at [`CACHE_MAX`]
/// customers. Both backends share it.
#[derive(Default)]
pub(super) struct StateCache {
    states: FxHashMap<String, Option<CustomerState>>,
    /// Bumped at every emptying: a read that started before one is not cached.
    generation: u64,
    /// The database's change counter as last seen, and when.
    data_version: Option<i64>,
    checked: Option<Instant>,
}

/// How stale a cached state may be with respect to another process's commit.
pub(super) const CACHE_CHECK: Duration = Duration::from_millis(100);
/// Most customers kept in the state cache.
const CACHE_MAX: usize = 262_144;

/// The cache and the two ways a backend feeds it.
pub(super) struct Cached<'a> {
    pub cache: &'a Mutex<StateCache>,
    /// The database's change counter, or `None` when it cannot be read without waiting
    /// (the next call looks again).
    pub version: &'a dyn Fn() -> Result<Option<i64>>,
    /// One customer's stored state.
    pub read: &'a dyn Fn(&str) -> Result<Option<CustomerState>>,
}

impl Cached<'_> {
    fn lock(&self) -> MutexGuard<'_, StateCache> {
        self.cache.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// [`Outbox::needs_recording`] over this cache.
    pub(super) fn needs_recording(
        &self,
        policy: &AlertPolicy,
        observations: &[Observation<'_>],
    ) -> Result<bool> {
        self.check_foreign_commits()?;
        for (i, obs) in observations.iter().enumerate() {
            if observations[..i]
                .iter()
                .any(|o| o.customer_id == obs.customer_id)
            {
                // Listed twice: the second decision depends on the first's write.
                return Ok(true);
            }
            let last = self.cached_state(obs.customer_id)?;
            if let Step::Write { .. } = policy.step(last.as_ref(), obs.tier, obs.as_of) {
                return Ok(true);
            }
        }
        Ok(false)
    }

    /// A customer's state from the cache, else from the database (then cached, unless
    /// the cache was emptied meanwhile: the read may predate that write).
    fn cached_state(&self, customer_id: &str) -> Result<Option<CustomerState>> {
        let generation = {
            let cache = self.lock();
            if let Some(state) = cache.states.get(customer_id) {
                return Ok(*state);
            }
            cache.generation
        };
        let state = (self.read)(customer_id)?;
        let mut cache = self.lock();
        if cache.generation == generation {
            if cache.states.len() >= CACHE_MAX {
                cache.states.clear();
            }
            cache.states.insert(customer_id.to_owned(), state);
        }
        Ok(state)
    }

    /// Empties the cache when another process committed since the last look; looks at
    /// most every [`CACHE_CHECK`].
    fn check_foreign_commits(&self) -> Result<()> {
        let now = Instant::now();
        if self
            .lock()
            .checked
            .is_some_and(|at| now.duration_since(at) < CACHE_CHECK)
        {
            return Ok(());
        }
        let Some(version) = (self.version)()? else {
            return Ok(());
        };
        let mut cache = self.lock();
        if cache.data_version != Some(version) {
            cache.states.clear();
            cache.generation += 1;
            cache.data_version = Some(version);
        }
        cache.checked = Some(now);
        Ok(())
    }
}

/// Drops the cached states of customers this process just wrote (all of them for a
/// big recording), so that reads in flight are not cached either.
pub(super) fn forget_states(cache: &Mutex<StateCache>, observations: &[Observation<'_>]) {
    let mut cache = cache.lock().unwrap_or_else(|e| e.into_inner());
    if observations.len() > SMALL_RECORDING {
        cache.states.clear();
    } else {
        for obs in observations {
            cache.states.remove(obs.customer_id);
        }
    }
    cache.generation += 1;
}

impl Sqlite {
    /// Whether recording these scores would write anything (a new tier, an alert), read
    /// without taking the writer: when it says no, [`Outbox::record_many`] would only
    /// have confirmed the stored states, and a caller may skip it. A writer racing with
    /// this check is serialised after it, which is a valid order of the two.
    pub fn needs_recording(
        &self,
        policy: &AlertPolicy,
        observations: &[Observation<'_>],
    ) -> Result<bool> {
        Cached {
            cache: &self.inner.cache,
            version: &|| self.data_version(),
            read: &|id| self.state(id),
        }
        .needs_recording(policy, observations)
    }

    #[cfg(test)]
    fn cache(&self) -> MutexGuard<'_, StateCache> {
        self.inner.cache.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub(super) fn forget_states(&self, observations: &[Observation<'_>]) {
        forget_states(&self.inner.cache, observations);
    }

    /// The file's `data_version`, asked on the writer's connection: it moves only with
    /// other connections' commits, not with this process's own. A writer busy
    /// committing is not waited for (`None`).
    fn data_version(&self) -> Result<Option<i64>> {
        let db = match self.inner.db.try_lock() {
            Ok(db) => db,
            Err(std::sync::TryLockError::Poisoned(e)) => e.into_inner(),
            Err(std::sync::TryLockError::WouldBlock) => return Ok(None),
        };
        let version: i64 = db
            .conn
            .pragma_query_value(None, "data_version", |r| r.get(0))
            .ctx("reading the outbox's data version")?;
        Ok(Some(version))
    }
}

#[cfg(test)]
mod tests {
    use super::super::test_support::*;
    use super::*;
    use crate::scoring::Tier;
    use crate::time::DAY;

    #[test]
    fn the_state_cache_follows_this_process_at_once_and_others_within_the_check_interval() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.db");
        let (service, nightly) = (Outbox::open(&path).unwrap(), Outbox::open(&path).unwrap());
        let p = AlertPolicy::default();
        let t = night("2024-03-01");
        let medium = [obs("c1", Tier::Medium, t + DAY)];
        service
            .record(&p, obs("c1", Tier::Medium, t), build)
            .unwrap();
        assert!(!service.needs_recording(&p, &medium).unwrap());
        service.record(&p, obs("c2", Tier::Low, t), build).unwrap();
        assert!(!service
            .needs_recording(&p, &[obs("c2", Tier::Low, t + DAY)])
            .unwrap());
        assert!(service.sqlite().cache().states.contains_key("c1"), "cached");
        // This process's own write is seen at once, and leaves other customers cached.
        service.record(&p, obs("c1", Tier::Low, t), build).unwrap();
        assert!(service.sqlite().cache().states.contains_key("c2"));
        assert!(service.needs_recording(&p, &medium).unwrap());
        service.record(&p, medium[0], build).unwrap();
        assert!(!service.needs_recording(&p, &medium).unwrap());
        // Another connection's write is seen once the check interval has passed.
        nightly
            .record_many(&p, &[obs("c1", Tier::Low, t + DAY)], build)
            .unwrap();
        std::thread::sleep(CACHE_CHECK + Duration::from_millis(20));
        assert!(service.needs_recording(&p, &medium).unwrap());
        assert_eq!(service.state("c1").unwrap().unwrap().last_tier, Tier::Low);
    }
}
