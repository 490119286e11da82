//! Customer states read or written recently, so that a customer scored again and again
//! costs no database round trip. Shared by the SQLite and PostgreSQL backends.
//!
//! Every change to an entry (a state read or written, a customer evicted, everything
//! emptied) takes the next tick of one counter. A state observed at tick `since` (the
//! tick taken before its read was sent or its write committed) is stored only if its
//! customer has not changed in the cache after `since` and nothing was emptied since;
//! otherwise the customer is evicted instead, so a late answer never hides a newer one.

#[cfg(doc)]
use super::Outbox;

use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use rustc_hash::FxHashMap;

use super::{Ctx, Observation, Sqlite, SMALL_RECORDING};
use crate::alerts::policy::{AlertPolicy, CustomerState, Step};
use crate::Result;

/// Customer states read recently by [`Outbox::needs_recording`] (and, on PostgreSQL,
/// written by this process), so that a customer scored again and again costs no
/// database read. A customer's entry goes when this process writes their state (or is
/// replaced by what it wrote); other processes' commits empty it too: on SQLite
/// everything goes when the file's `data_version` moves (checked at most every
/// [`CACHE_CHECK`]), on PostgreSQL each changed customer goes when the commit's
/// notification arrives (see `pg`). Capped at [`CACHE_MAX`] customers.
#[derive(Default)]
pub(super) struct StateCache {
    states: FxHashMap<String, Entry>,
    /// The last tick given out.
    tick: u64,
    /// The tick of the last emptying.
    cleared_at: u64,
    /// The database's change counter as last seen, and when (SQLite).
    data_version: Option<i64>,
    checked: Option<Instant>,
}

/// A customer in the cache: their state (`None`: no row), or evicted (`known: None`),
/// with the tick of that change.
#[derive(Clone, Copy)]
struct Entry {
    known: Option<Option<CustomerState>>,
    tick: u64,
}

impl StateCache {
    /// A tick to pass to [`StateCache::put`] for a state about to be read or written.
    pub(super) fn begin(&mut self) -> u64 {
        self.tick += 1;
        self.tick
    }

    /// The cached state of a customer: `None` when not cached.
    pub(super) fn get(&self, customer_id: &str) -> Option<Option<CustomerState>> {
        self.states.get(customer_id).and_then(|e| e.known)
    }

    /// Stores what the database said (or was told) about a customer at tick `since`,
    /// unless the cache learnt something newer about them since: then evicts them.
    pub(super) fn put(&mut self, customer_id: &str, state: Option<CustomerState>, since: u64) {
        let fresh =
            since > self.cleared_at && self.states.get(customer_id).is_none_or(|e| e.tick < since);
        self.set(customer_id, fresh.then_some(state));
    }

    /// Forgets a customer (their state changed elsewhere, or is being changed here).
    pub(super) fn evict(&mut self, customer_id: &str) {
        self.set(customer_id, None);
    }

    /// Forgets every customer.
    pub(super) fn clear(&mut self) {
        self.states.clear();
        self.tick += 1;
        self.cleared_at = self.tick;
    }

    fn set(&mut self, customer_id: &str, known: Option<Option<CustomerState>>) {
        if self.states.len() >= CACHE_MAX && !self.states.contains_key(customer_id) {
            self.clear();
        }
        self.tick += 1;
        let entry = Entry {
            known,
            tick: self.tick,
        };
        match self.states.get_mut(customer_id) {
            Some(e) => *e = entry,
            None => {
                self.states.insert(customer_id.to_owned(), entry);
            }
        }
    }
}

/// How stale a cached state may be with respect to another process's commit (SQLite).
pub(super) const CACHE_CHECK: Duration = Duration::from_millis(100);
/// Most customers kept in the state cache.
const CACHE_MAX: usize = 262_144;

/// The cache and the ways a backend feeds it.
pub(super) struct Cached<'a> {
    pub cache: &'a Mutex<StateCache>,
    /// The database's change counter, or `None` when it cannot be read without waiting
    /// (the next call looks again); no counter at all when the backend evicts other
    /// processes' changes itself (PostgreSQL's notifications).
    pub version: Option<&'a dyn Fn() -> Result<Option<i64>>>,
    /// One customer's stored state.
    pub read: &'a dyn Fn(&str) -> Result<Option<CustomerState>>,
}

impl Cached<'_> {
    fn lock(&self) -> MutexGuard<'_, StateCache> {
        lock(self.cache)
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
    /// the cache learnt of a change meanwhile: the read may predate it).
    fn cached_state(&self, customer_id: &str) -> Result<Option<CustomerState>> {
        let since = {
            let mut cache = self.lock();
            if let Some(state) = cache.get(customer_id) {
                return Ok(state);
            }
            cache.begin()
        };
        let state = (self.read)(customer_id)?;
        self.lock().put(customer_id, state, since);
        Ok(state)
    }

    /// Empties the cache when another process committed since the last look; looks at
    /// most every [`CACHE_CHECK`].
    fn check_foreign_commits(&self) -> Result<()> {
        let Some(version) = self.version else {
            return Ok(());
        };
        let now = Instant::now();
        if self
            .lock()
            .checked
            .is_some_and(|at| now.duration_since(at) < CACHE_CHECK)
        {
            return Ok(());
        }
        let Some(version) = version()? else {
            return Ok(());
        };
        let mut cache = self.lock();
        if cache.data_version != Some(version) {
            cache.clear();
            cache.data_version = Some(version);
        }
        cache.checked = Some(now);
        Ok(())
    }
}

pub(super) fn lock(cache: &Mutex<StateCache>) -> MutexGuard<'_, StateCache> {
    cache.lock().unwrap_or_else(|e| e.into_inner())
}

/// Drops the cached states of customers this process just wrote (all of them for a
/// big recording), so that reads in flight are not cached either.
pub(super) fn forget_states(cache: &Mutex<StateCache>, observations: &[Observation<'_>]) {
    let mut cache = lock(cache);
    if observations.len() > SMALL_RECORDING {
        cache.clear();
    } else {
        for obs in observations {
            cache.evict(obs.customer_id);
        }
    }
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
            version: Some(&|| self.data_version()),
            read: &|id| self.state(id),
        }
        .needs_recording(policy, observations)
    }

    #[cfg(test)]
    fn cache(&self) -> MutexGuard<'_, StateCache> {
        lock(&self.inner.cache)
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
        assert!(service.sqlite().cache().get("c1").is_some(), "cached");
        // This process's own write is seen at once, and leaves other customers cached.
        service.record(&p, obs("c1", Tier::Low, t), build).unwrap();
        assert!(service.sqlite().cache().get("c2").is_some());
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
