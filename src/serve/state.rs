//! What every request shares: the served model (hot-swapped), the nightly scores, the
//! alert outbox, the keys and the metrics; and the reload logic that swaps them.
//!
//! The model lives in a `RwLock<Option<Arc<Scorer>>>`: a request clones the `Arc` and
//! drops the lock at once, so a reload never waits for requests and a request in flight
//! finishes on the model it started with. A reload that fails leaves the slot untouched.

use std::collections::HashMap;
use std::ops::Deref;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, RwLock};
use std::time::SystemTime;

use super::auth::Keys;
use super::metrics::Metrics;
use super::ServeConfig;
use crate::alerts::{AlertPolicy, Observation, Outbox};
use crate::nightly_metrics::SummaryMetrics;
use crate::registry::{Registry, Selector, PRODUCTION};
use crate::scores::ScoreRecord;
use crate::scoring::{Rule, Score, Scorer};
use crate::time::Ts;
use crate::Result;

/// The shared state of the service; cheap to clone.
#[derive(Clone)]
pub struct AppState(Arc<Shared>);

impl Deref for AppState {
    type Target = Shared;
    fn deref(&self) -> &Shared {
        &self.0
    }
}

impl std::fmt::Debug for AppState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AppState")
            .field("name", &self.name)
            .field("model", &self.scorer().map(|s| s.version.clone()))
            .field("keys", &self.keys)
            .finish_non_exhaustive()
    }
}

/// What [`AppState`] points at.
pub struct Shared {
    /// The registry name served (`churn`).
    pub name: String,
    /// The models directory.
    pub registry: Registry,
    /// Requests clone the `Arc` out; reloads swap it.
    model: RwLock<Option<Arc<Scorer>>>,
    /// Versions other than the served one asked for by `/v2` clients pinning a version,
    /// least recently used first, at most [`PINNED_VERSIONS`].
    pinned: Mutex<Vec<Arc<Scorer>>>,
    /// Serialises reloads (background poll and admin route) and remembers failures so
    /// a broken version is neither retried nor counted every poll.
    reload: Mutex<ReloadMemo>,
    /// The nightly score file, when configured.
    scores_path: Option<PathBuf>,
    scores: RwLock<Option<Arc<HashMap<String, ScoreRecord>>>>,
    /// Modification time of the score file last attempted (loaded or failed).
    scores_seen: Mutex<Option<SystemTime>>,
    /// The run summary beside the score file, for `/metrics` (drift, the night's health).
    summary: RwLock<Option<Arc<SummaryMetrics>>>,
    /// Modification time of the summary last attempted: it is renamed into place after
    /// the score file, so it is watched on its own.
    summary_seen: Mutex<Option<SystemTime>>,
    /// The score history, when configured (`GET /v1/customers/{id}/history`).
    history: Option<crate::history::History>,
    /// Where tiers are recorded and alerts stored.
    pub outbox: Outbox,
    /// The group-commit writer in front of the outbox.
    recorder: super::recorder::Recorder,
    /// When a score becomes an alert.
    pub policy: AlertPolicy,
    /// Early-warning rules given to every model loaded (`None`: each keeps the built-in).
    rules: Option<Vec<Rule>>,
    /// Prometheus metrics.
    pub metrics: Metrics,
    /// API and admin keys.
    pub keys: Keys,
    /// Most instances in one batch request (`/v1/score/batch`, rows of `/v2` infer).
    pub max_batch: usize,
    /// Largest request body accepted, in bytes (but on the batch routes).
    pub max_body_bytes: usize,
    /// Largest request body of the batch routes ([`super::batch_body_limit`]).
    pub max_batch_body_bytes: usize,
    /// A request still running after this is answered 503.
    pub request_timeout: std::time::Duration,
}

#[derive(Debug, Default)]
struct ReloadMemo {
    /// The version whose load failed last; not retried by polls until the alias moves.
    failed_version: Option<u32>,
    /// The last failure's message, so the same failure is logged and counted once.
    last_error: Option<String>,
    /// The failed version's files as they were ([`Registry::version_stamp`]): once they
    /// change (repaired in place), polls try the version again.
    failed_stamp: Option<std::time::SystemTime>,
}

/// What a reload did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReloadOutcome {
    /// The production version is already served.
    Unchanged {
        /// The served version (`v3`).
        version: String,
    },
    /// A new version is served.
    Loaded {
        /// The version served before, if any.
        previous: Option<String>,
        /// The version served now.
        version: String,
    },
    /// The production version could not be loaded (or resolved); what was served still is.
    Failed {
        /// The version that failed, when it could be resolved.
        version: Option<String>,
        /// The version still served, if any.
        serving: Option<String>,
    },
    /// No production version exists yet and nothing is served.
    NoModel,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl AppState {
    /// Opens the outbox, loads the production model and the score file if they can be
    /// (a service without a model starts anyway: `/readyz` answers 503 until one loads).
    /// Blocking: call from start-up code or `spawn_blocking`.
    pub fn open(config: &ServeConfig) -> Result<AppState> {
        crate::registry::validate_name(&config.name)?;
        check_registry(&config.models)?;
        let outbox = Outbox::open(&config.outbox)?;
        let history = config.history.as_ref().map(crate::history::History::new);
        let extras = super::recorder::AlertExtras {
            history: history.clone(),
            task: config.task.clone(),
        };
        let recorder = super::recorder::Recorder::start(outbox.clone(), config.policy, extras)
            .map_err(|e| crate::Error::Outbox(format!("starting the outbox writer: {e}")))?;
        let state = AppState(Arc::new(Shared {
            name: config.name.clone(),
            registry: Registry::new(&config.models),
            model: RwLock::new(None),
            pinned: Mutex::default(),
            reload: Mutex::default(),
            scores_path: config.scores.clone(),
            scores: RwLock::new(None),
            scores_seen: Mutex::new(None),
            summary: RwLock::new(None),
            summary_seen: Mutex::new(None),
            history,
            outbox,
            recorder,
            policy: config.policy,
            rules: config.rules.clone(),
            metrics: Metrics::default(),
            keys: Keys::new(&config.api_keys, config.admin_key.as_deref()),
            max_batch: config.max_batch.max(1),
            max_body_bytes: config.max_body_bytes,
            max_batch_body_bytes: super::batch_body_limit(
                config.max_body_bytes,
                config.max_batch.max(1),
            ),
            request_timeout: config.request_timeout,
        }));
        state.reload_model(false);
        state.reload_scores(false);
        Ok(state)
    }

    /// The limits `/openapi.json` states.
    pub fn openapi_limits(&self) -> super::openapi::Limits {
        super::openapi::Limits {
            max_body_bytes: self.max_body_bytes,
            max_batch_body_bytes: self.max_batch_body_bytes,
            max_batch: self.max_batch,
        }
    }

    /// The model served now, if one is loaded.
    pub fn scorer(&self) -> Option<Arc<Scorer>> {
        self.model.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// The scorer of one version of the registry: the served one, or one loaded on demand
    /// and kept among the [`PINNED_VERSIONS`] most recently asked for (versions are
    /// immutable, so a cached one never goes stale). Blocking when it loads.
    pub fn scorer_of_version(&self, version: u32) -> Result<Arc<Scorer>> {
        let wanted = format!("v{version}");
        if let Some(s) = self.scorer().filter(|s| s.version == wanted) {
            return Ok(s);
        }
        {
            let mut cache = lock(&self.pinned);
            if let Some(i) = cache.iter().position(|s| s.version == wanted) {
                let s = cache.remove(i);
                cache.push(Arc::clone(&s));
                return Ok(s);
            }
        }
        let mut scorer = Scorer::from_loaded(
            self.registry
                .load(&self.name, &Selector::Version(version))?,
        )?;
        if let Some(rules) = &self.rules {
            scorer.rules.clone_from(rules);
        }
        let scorer = Arc::new(scorer);
        let mut cache = lock(&self.pinned);
        if !cache.iter().any(|s| s.version == wanted) {
            cache.push(Arc::clone(&scorer));
            if cache.len() > PINNED_VERSIONS {
                cache.remove(0);
            }
        }
        Ok(scorer)
    }

    /// The versions held in the pinned-version cache, least recently used first.
    pub fn pinned_versions(&self) -> Vec<String> {
        lock(&self.pinned)
            .iter()
            .map(|s| s.version.clone())
            .collect()
    }

    /// Puts the production version into service if it changed. Polls (`force` false) do
    /// not retry a version that already failed until its files change (a repair in
    /// place), and log and count a failure once; the
    /// admin route (`force` true) always retries and counts. Blocking.
    pub fn reload_model(&self, force: bool) -> ReloadOutcome {
        let mut memo = lock(&self.reload);
        let current = self.scorer();
        let serving = current.as_ref().map(|s| s.version.clone());
        let resolved = self
            .registry
            .resolve(&self.name, &Selector::Alias(PRODUCTION.into()));
        let version = match resolved {
            Ok(v) => v,
            Err(e) => {
                let message = e.chain().to_string();
                let new = memo.last_error.as_deref() != Some(message.as_str());
                memo.last_error = Some(message);
                // A missing model or alias is "not yet"; anything else (a corrupt or
                // unreadable registry) needs an operator, whether or not a model is served.
                let missing = e.is_missing_model();
                if missing && current.is_none() {
                    if new {
                        tracing::warn!(model = %self.name, error = %e.chain(),
                            "no production model to serve yet; /readyz answers 503 until one appears");
                    }
                    return ReloadOutcome::NoModel;
                }
                if new || force {
                    self.metrics
                        .model_reload_failures
                        .fetch_add(1, Ordering::Relaxed);
                    if missing {
                        tracing::error!(model = %self.name, error = %e.chain(), serving = ?serving,
                            "could not resolve the production model; the previous model keeps serving");
                    } else {
                        tracing::error!(model = %self.name, error = %e.chain(), serving = ?serving,
                            "the model registry is corrupt or unreadable; nothing new is loaded until it is fixed");
                    }
                }
                return ReloadOutcome::Failed {
                    version: None,
                    serving,
                };
            }
        };
        let wanted = format!("v{version}");
        if serving.as_deref() == Some(wanted.as_str()) {
            *memo = ReloadMemo::default();
            return ReloadOutcome::Unchanged { version: wanted };
        }
        let stamp = self.registry.version_stamp(&self.name, version);
        if !force && memo.failed_version == Some(version) && memo.failed_stamp == stamp {
            return ReloadOutcome::Failed {
                version: Some(wanted),
                serving,
            };
        }
        let loaded = self
            .registry
            .load(&self.name, &Selector::Version(version))
            .and_then(Scorer::from_loaded);
        match loaded {
            Ok(mut scorer) => {
                if let Some(rules) = &self.rules {
                    scorer.rules.clone_from(rules);
                }
                let scorer = Arc::new(scorer);
                *self.model.write().unwrap_or_else(|e| e.into_inner()) = Some(scorer);
                *memo = ReloadMemo::default();
                // A reload replaces a served model; the first model served (at start-up,
                // or the first promotion a model-less service sees) is a load.
                if serving.is_some() {
                    self.metrics.model_reloads.fetch_add(1, Ordering::Relaxed);
                }
                tracing::info!(model = %self.name, version = %wanted, previous = ?serving,
                    "model loaded and serving");
                ReloadOutcome::Loaded {
                    previous: serving,
                    version: wanted,
                }
            }
            Err(e) => {
                self.metrics
                    .model_reload_failures
                    .fetch_add(1, Ordering::Relaxed);
                tracing::error!(model = %self.name, version = %wanted, error = %e.chain(), serving = ?serving,
                    "could not load the production model; the previous model keeps serving");
                memo.failed_version = Some(version);
                memo.failed_stamp = stamp;
                memo.last_error = Some(e.chain().to_string());
                ReloadOutcome::Failed {
                    version: Some(wanted),
                    serving,
                }
            }
        }
    }

    /// Reloads the score file when its modification time changed (or `force`), and its
    /// run summary when the summary's changed. A file that cannot be read keeps the
    /// previous scores (or summary). Blocking.
    pub fn reload_scores(&self, force: bool) {
        let Some(path) = &self.scores_path else {
            return;
        };
        self.reload_score_file(path, force);
        self.reload_summary(&crate::scores::summary_path(path), force);
    }

    fn reload_score_file(&self, path: &Path, force: bool) {
        let mut seen = lock(&self.scores_seen);
        let mtime = std::fs::metadata(path).and_then(|m| m.modified()).ok();
        let Some(mtime) = mtime else {
            if seen.is_some() || force {
                tracing::warn!(path = %path.display(), "the score file is missing; serving the scores loaded before, if any");
            }
            *seen = None;
            return;
        };
        if !force && *seen == Some(mtime) {
            return;
        }
        *seen = Some(mtime);
        match crate::scores::read(path) {
            Ok(map) => {
                tracing::info!(path = %path.display(), customers = map.len(), "nightly scores loaded");
                *self.scores.write().unwrap_or_else(|e| e.into_inner()) = Some(Arc::new(map));
            }
            Err(e) => {
                self.metrics
                    .scores_reload_failures
                    .fetch_add(1, Ordering::Relaxed);
                tracing::error!(path = %path.display(), error = %e.chain(),
                    "could not read the score file; the previous scores keep serving");
            }
        }
    }

    /// Reloads the run summary at `path` when its modification time changed (or
    /// `force`). A summary that disappears is forgotten (its night's series with it); one
    /// that cannot be read keeps the previous one and counts as a failed scores reload.
    fn reload_summary(&self, path: &Path, force: bool) {
        let mut seen = lock(&self.summary_seen);
        let mtime = std::fs::metadata(path).and_then(|m| m.modified()).ok();
        let Some(mtime) = mtime else {
            *seen = None;
            *self.summary.write().unwrap_or_else(|e| e.into_inner()) = None;
            return;
        };
        if !force && *seen == Some(mtime) {
            return;
        }
        *seen = Some(mtime);
        match SummaryMetrics::read(path) {
            Ok(summary) => {
                tracing::info!(path = %path.display(), "run summary loaded");
                *self.summary.write().unwrap_or_else(|e| e.into_inner()) = Some(Arc::new(summary));
            }
            Err(e) => {
                self.metrics
                    .scores_reload_failures
                    .fetch_add(1, Ordering::Relaxed);
                tracing::error!(path = %path.display(), error = %e.chain(),
                    "could not read the run summary; the previous one keeps serving");
            }
        }
    }

    /// The run summary beside the score file, if one was read.
    pub fn summary(&self) -> Option<Arc<SummaryMetrics>> {
        self.summary
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// The score history, when configured.
    pub fn history(&self) -> Option<&crate::history::History> {
        self.history.as_ref()
    }

    /// Whether a score file is configured.
    pub fn has_scores(&self) -> bool {
        self.scores_path.is_some()
    }

    /// The latest nightly score of a customer.
    pub fn nightly_score(&self, customer_id: &str) -> Option<ScoreRecord> {
        let scores = self.scores.read().unwrap_or_else(|e| e.into_inner());
        scores.as_ref()?.get(customer_id).cloned()
    }

    /// Whether these fresh scores certainly change nothing in the outbox (they confirm
    /// the stored tiers), so [`AppState::record_tiers`] can be skipped. Usually a score
    /// only confirms: for a few scores, one indexed read each (microseconds, no writer,
    /// no disk) settles it on the calling thread; bigger batches, or a failing read,
    /// answer `false` and go the whole way.
    pub fn nothing_to_record(&self, observations: &[Observation<'_>]) -> bool {
        observations.len() <= QUICK_CHECK_MAX
            && matches!(
                self.outbox.needs_recording(&self.policy, observations),
                Ok(false)
            )
    }

    /// Records the tiers of freshly scored customers in the outbox (through the group
    /// commit of [`super::recorder`]) and returns, per item, whether the policy raised an
    /// alert. A failing outbox is logged
    /// and counted, and answers "no alert": the score itself is still served.
    pub async fn record_tiers(&self, scorer: &Arc<Scorer>, items: Vec<Recorded>) -> Vec<bool> {
        let n = items.len();
        if n == 0 {
            return Vec::new();
        }
        match self.recorder.record(Arc::clone(scorer), items).await {
            Ok(raised) => raised,
            Err(e) => {
                self.metrics
                    .alert_record_failures
                    .fetch_add(n as u64, Ordering::Relaxed);
                tracing::error!(error = %e, scores = n, "could not record tiers in the alert outbox");
                vec![false; n]
            }
        }
    }
}

/// At most this many versions besides the served one are kept loaded for `/v2` clients
/// that pin a version.
pub const PINNED_VERSIONS: usize = 4;
/// Refuses a models directory that does not exist (or is not a directory). Serving it
/// would create it, and the alert outbox inside, at the end of a typo, and the service
/// would wait for a model that can never appear there. An existing registry without a
/// production model is fine: the service starts and `/readyz` answers 503 until one is
/// promoted.
pub fn check_registry(models: &Path) -> Result<()> {
    match std::fs::metadata(models) {
        Ok(m) if m.is_dir() => Ok(()),
        Ok(_) => Err(crate::Error::Config(format!(
            "--models {}: not a directory; point it at the model registry",
            models.display()
        ))),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Err(crate::Error::Config(format!(
            "--models {}: no such directory; point it at the model registry (where \
                 `churnguard train --models DIR` publishes), nothing was created",
            models.display()
        ))),
        Err(e) => Err(crate::Error::io(models, e)),
    }
}

/// Up to this many scores, [`AppState::record_tiers`] first checks on the request's
/// thread whether anything needs writing (a bigger batch goes straight to the writer).
const QUICK_CHECK_MAX: usize = 8;

/// One fresh score to record in the outbox.
#[derive(Debug, Clone)]
pub struct Recorded {
    /// The customer scored.
    pub customer_id: String,
    /// The instant the score describes.
    pub as_of: Ts,
    /// The score: its alerting tier is what the policy sees, and an alert is built from it.
    pub score: Score,
    /// The feature row (for the alert's behaviour summary).
    pub row: Vec<f64>,
    /// The request's activity when it sent one: the alert's profile, trail and owner.
    pub activity: Option<Arc<crate::features::online::OwnedActivity>>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    /// Log lines captured for one test.
    #[derive(Clone, Default)]
    struct Captured(Arc<Mutex<Vec<u8>>>);

    impl Write for Captured {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            lock(&self.0).extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    /// Opens a state over `models` and returns it with what it logged.
    fn open_logged(models: &std::path::Path, outbox: &std::path::Path) -> (AppState, String) {
        let logs = Captured::default();
        let writer = logs.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_writer(move || writer.clone())
            .with_ansi(false)
            .finish();
        let state = tracing::subscriber::with_default(subscriber, || {
            AppState::open(&ServeConfig {
                models: models.to_path_buf(),
                outbox: outbox.to_path_buf(),
                ..ServeConfig::default()
            })
            .unwrap()
        });
        let text = String::from_utf8(lock(&logs.0).clone()).unwrap();
        (state, text)
    }

    #[test]
    fn a_corrupt_registry_is_logged_as_corrupt_not_as_no_production_model() {
        let dir = tempfile::tempdir().unwrap();
        let models = dir.path().join("models");
        std::fs::create_dir_all(models.join("churn")).unwrap();
        std::fs::write(
            models.join("churn").join("aliases.json"),
            b"{\"production\": ",
        )
        .unwrap();
        let (state, logs) = open_logged(&models, &dir.path().join("alerts.db"));
        assert!(state.scorer().is_none());
        assert!(logs.contains("corrupt"), "{logs}");
        assert!(logs.contains("aliases.json"), "{logs}");
        // The cause too, once: the log prints the whole chain.
        assert_eq!(logs.matches("EOF while parsing").count(), 1, "{logs}");
        assert!(!logs.contains("no production model"), "{logs}");
        assert_eq!(
            state.reload_model(true),
            ReloadOutcome::Failed {
                version: None,
                serving: None
            }
        );
    }

    #[test]
    fn an_empty_registry_is_no_model_yet() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("models")).unwrap();
        let (state, logs) = open_logged(&dir.path().join("models"), &dir.path().join("alerts.db"));
        assert!(logs.contains("no production model to serve yet"), "{logs}");
        assert_eq!(state.reload_model(true), ReloadOutcome::NoModel);
    }

    #[test]
    fn a_registry_that_does_not_exist_is_refused_and_nothing_is_created() {
        let dir = tempfile::tempdir().unwrap();
        let models = dir.path().join("nowhere");
        let err = AppState::open(&ServeConfig {
            models: models.clone(),
            outbox: models.join("churn").join("alerts.db"),
            ..ServeConfig::default()
        })
        .unwrap_err()
        .to_string();
        assert!(err.contains("no such directory"), "{err}");
        assert!(err.contains("nowhere"), "{err}");
        assert!(!models.exists());
        let file = dir.path().join("file");
        std::fs::write(&file, b"").unwrap();
        let err = check_registry(&file).unwrap_err().to_string();
        assert!(err.contains("not a directory"), "{err}");
    }
}
