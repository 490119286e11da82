//! Settings, layered once: the library's defaults, then the TOML file (`--config`), then
//! `CHURNGUARD_*` environment variables, then command-line flags. Each command's flags
//! are resolved here into the typed settings the library runs with, so `main` only
//! parses and prints and no default is restated outside the module that owns it.
//!
//! The flag structs derive `clap::Args` (their doc comments are the `--help` text); the
//! environment is read through [`Env`] rather than by clap, so the precedence is one
//! piece of code with its own tests.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

mod flags;
pub use flags::*;

use crate::alerts::{AlertPolicy, RetryPolicy};
use crate::batch::InputGuard;
use crate::config::FileConfig;
use crate::features::AttributeConfig;
use crate::labels::LabelConfig;
use crate::model::{Algorithm, BoostParams};
use crate::scoring::Rule;
use crate::scoring::Tier;
use crate::serve::ServeConfig;
use crate::synth::{SynthConfig, SynthFormat};
use crate::time::Ts;
use crate::train::{TierPolicy, TrainConfig};
use crate::{Error, Result};

/// The customer tables read when neither flag, environment nor file names a directory.
pub const DEFAULT_DATA_DIR: &str = "data/sample";

/// The `CHURNGUARD_*` environment, captured once (tests build their own).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Env(BTreeMap<String, String>);

impl Env {
    /// Every `CHURNGUARD_*` variable of this process.
    pub fn from_process() -> Env {
        Env::from_pairs(std::env::vars().filter(|(k, _)| k.starts_with("CHURNGUARD_")))
    }

    /// An environment from `(name, value)` pairs.
    pub fn from_pairs<K: Into<String>, V: Into<String>>(
        pairs: impl IntoIterator<Item = (K, V)>,
    ) -> Env {
        Env(pairs
            .into_iter()
            .map(|(k, v)| (k.into(), v.into()))
            .collect())
    }

    /// The value of `name`; an empty variable counts as unset.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.0
            .get(name)
            .map(String::as_str)
            .filter(|v| !v.is_empty())
    }

    fn string(&self, name: &str) -> Option<String> {
        self.get(name).map(str::to_string)
    }

    fn path(&self, name: &str) -> Option<PathBuf> {
        self.get(name).map(PathBuf::from)
    }

    fn list(&self, name: &str) -> Option<Vec<String>> {
        self.get(name)
            .map(|v| v.split(',').map(str::to_string).collect())
    }

    fn number<T: std::str::FromStr>(&self, name: &str) -> Result<Option<T>> {
        self.get(name)
            .map(|v| {
                v.trim().parse().map_err(|_| {
                    Error::Config(format!("{name}=`{v}` is not a valid non-negative number"))
                })
            })
            .transpose()
    }

    /// A switch: set to anything but `0`, `false`, `no`, `off`, `n` or `f` means on.
    fn switch(&self, name: &str) -> bool {
        self.get(name).is_some_and(|v| {
            !matches!(
                v.trim().to_ascii_lowercase().as_str(),
                "0" | "false" | "no" | "off" | "n" | "f"
            )
        })
    }
}

/// Where the customer tables are and how strictly they are read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DataSource {
    pub dir: PathBuf,
    pub skip_bad_rows: bool,
}

/// A registry and the model name used in it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModelRef {
    pub models: PathBuf,
    pub name: String,
}

impl ModelRef {
    /// The alert state and outbox database of this model unless configured otherwise.
    pub fn default_outbox(&self) -> PathBuf {
        crate::registry::Registry::new(&self.models).default_outbox(&self.name)
    }
}

/// What `train` runs with.
#[derive(Debug, Clone)]
pub struct TrainSettings {
    pub data: DataSource,
    pub models: PathBuf,
    pub config: TrainConfig,
}

/// What `score` runs with.
#[derive(Debug, Clone)]
pub struct ScoreSettings {
    pub data: DataSource,
    pub as_of: Ts,
    /// The score file; the run summary is written beside it.
    pub out: PathBuf,
    pub model: ModelRef,
    /// `None`: production.
    pub version: Option<String>,
    pub outbox: PathBuf,
    /// Finished alerts older than this many days are pruned after a successful night
    /// (0: kept forever).
    pub retention_days: u32,
    pub alerts_log: Option<PathBuf>,
    pub policy: AlertPolicy,
    /// Webhook URL and signing secret ([`Settings::webhook`]).
    pub webhook: Option<(String, String)>,
    /// `None`: the built-in early-warning rules.
    pub rules: Option<Vec<Rule>>,
    /// The input guards ([`Settings::guard`]).
    pub guard: InputGuard,
    /// Write every feature's SHAP value (`shap_base`, `shap_<feature>`) to the score file.
    pub contributions: bool,
    /// Alert delivery retries ([`Settings::retry`]).
    pub retry: RetryPolicy,
    /// The nightly series' textfile (`--metrics-textfile`, `CHURNGUARD_METRICS_TEXTFILE`,
    /// `[score] metrics_textfile`).
    pub metrics_textfile: Option<PathBuf>,
    /// The score history directory ([`Settings::history_dir`]).
    pub history: PathBuf,
    /// What alerts carry ([`Settings::task`]).
    pub task: crate::alerts::TaskConfig,
    /// The memory budget and the buckets' directory ([`Settings::memory`]).
    pub memory: Memory,
}

/// How much memory a command may give the customer base, and where a base larger than
/// that is split into customer buckets.
#[derive(Debug, Clone, PartialEq)]
pub struct Memory {
    /// Bytes.
    pub budget: u64,
    /// `None`: the output's directory.
    pub work_dir: Option<PathBuf>,
}

impl Memory {
    /// The default budget when none is set: half the memory the system reports
    /// available (`MemAvailable` of /proc/meminfo), else 4 GiB.
    pub fn default_budget() -> u64 {
        std::fs::read_to_string("/proc/meminfo")
            .ok()
            .and_then(|m| {
                m.lines()
                    .find_map(|l| l.strip_prefix("MemAvailable:"))
                    .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
            })
            .map_or(4 << 30, |kib| kib * 1024 / 2)
    }

    /// Where the buckets of a command writing `out` go.
    pub fn work_dir_for(&self, out: &Path) -> PathBuf {
        self.work_dir.clone().unwrap_or_else(|| match out.parent() {
            Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
            _ => PathBuf::from("."),
        })
    }
}

/// A size in bytes: a number (fractions allowed) and an optional unit, `B`, `KiB`,
/// `MiB`, `GiB`, `TiB` (or `K`, `M`, `G`, `T`, `KB`, `MB`, `GB`, `TB`: powers of 1024 too,
/// as memory is counted), case-insensitive.
pub fn parse_size(text: &str) -> Option<u64> {
    let t = text.trim();
    let split = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    let (number, unit) = t.split_at(split);
    let number: f64 = number.parse().ok()?;
    let power = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 0,
        "k" | "kb" | "kib" => 1,
        "m" | "mb" | "mib" => 2,
        "g" | "gb" | "gib" => 3,
        "t" | "tb" | "tib" => 4,
        _ => return None,
    };
    let bytes = number * 1024f64.powi(power);
    (bytes.is_finite() && bytes >= 1.0).then_some(bytes as u64)
}

/// What `alerts --scores` runs with.
#[derive(Debug, Clone)]
pub struct AlertsSettings {
    /// The score table: a file or a directory of parts.
    pub scores: PathBuf,
    /// The registry holding the model the scores name.
    pub models: PathBuf,
    /// The customer tables, when given.
    pub data: Option<PathBuf>,
    pub options: crate::batch::ScoresAlertOptions,
}

/// What `history` runs with.
#[derive(Debug, Clone)]
pub struct HistorySettings {
    pub dir: PathBuf,
    pub customer: String,
    pub days: u32,
    pub json: bool,
}

/// What `features` runs with.
#[derive(Debug, Clone)]
pub struct FeatureSettings {
    pub data: DataSource,
    pub labels: LabelConfig,
    pub attributes: AttributeConfig,
    /// Use this registry's production model's schema for one snapshot.
    pub model: Option<ModelRef>,
    /// One snapshot (`Some`) or the whole training set (`None`).
    pub as_of: Option<Ts>,
    pub out: PathBuf,
}

/// What `retention` runs with.
#[derive(Debug, Clone)]
pub struct RetentionSettings {
    pub data: DataSource,
    /// `None`: the retention module's default.
    pub active_days: Option<u32>,
    pub rules: Option<Vec<Rule>>,
    /// `None`: the score file's date, else midnight after the last row.
    pub as_of: Option<Ts>,
    pub out: Option<PathBuf>,
    pub scores: Option<PathBuf>,
    /// Print the KPIs as JSON.
    pub json: bool,
    /// Where the model that defines the RFM segments is found.
    pub model: ModelRef,
}

/// What `backtest` runs with.
#[derive(Debug, Clone)]
pub struct BacktestSettings {
    pub data: DataSource,
    /// The registry holding the model that wrote the score file.
    pub models: PathBuf,
    pub scores: PathBuf,
    pub json: bool,
}

/// The file and environment layers; each command adds its flags.
#[derive(Debug, Clone, Default)]
pub struct Settings {
    pub file: FileConfig,
    pub env: Env,
}

impl Settings {
    /// The config file (if any) and the environment.
    pub fn load(config: Option<&Path>, env: Env) -> Result<Settings> {
        Ok(Settings {
            file: FileConfig::load_opt(config)?,
            env,
        })
    }

    /// The customer tables.
    pub fn data(&self, f: &DataFlags) -> DataSource {
        DataSource {
            dir: f
                .data
                .clone()
                .or_else(|| self.env.path("CHURNGUARD_DATA"))
                .or_else(|| self.file.data.clone().map(PathBuf::from))
                .unwrap_or_else(|| DEFAULT_DATA_DIR.into()),
            skip_bad_rows: f.skip_bad_rows || self.env.switch("CHURNGUARD_SKIP_BAD_ROWS"),
        }
    }

    /// The registry directory.
    pub fn models_dir(&self, flag: Option<&Path>) -> PathBuf {
        flag.map(Path::to_path_buf)
            .or_else(|| self.env.path("CHURNGUARD_MODELS"))
            .or_else(|| self.file.models.clone().map(PathBuf::from))
            .unwrap_or_else(|| crate::registry::DEFAULT_MODELS_DIR.into())
    }

    /// The registry directory and model name.
    pub fn model(&self, f: &ModelFlags) -> ModelRef {
        ModelRef {
            models: self.models_dir(f.models.as_deref()),
            name: f
                .name
                .clone()
                .or_else(|| self.env.string("CHURNGUARD_NAME"))
                .or_else(|| self.file.name.clone())
                .unwrap_or_else(|| crate::registry::DEFAULT_NAME.into()),
        }
    }

    /// The label windows.
    pub fn labels(&self, w: &WindowFlags) -> Result<LabelConfig> {
        let f = &self.file.labels;
        let d = LabelConfig::default();
        let env = |name| self.env.number::<u32>(name);
        Ok(LabelConfig {
            horizon_days: w
                .horizon_days
                .or(env("CHURNGUARD_HORIZON_DAYS")?)
                .or(f.horizon_days)
                .unwrap_or(d.horizon_days),
            active_days: self.active_days(w.active_days)?.unwrap_or(d.active_days),
            snapshot_days: w
                .snapshot_days
                .or(env("CHURNGUARD_SNAPSHOT_DAYS")?)
                .or(f.snapshot_days)
                .unwrap_or(d.snapshot_days),
            max_snapshots: f.max_snapshots.unwrap_or(d.max_snapshots),
            ..d
        })
    }

    /// The active window of the inactivity definition, when any layer sets it.
    pub fn active_days(&self, flag: Option<u32>) -> Result<Option<u32>> {
        Ok(flag
            .or(self.env.number("CHURNGUARD_ACTIVE_DAYS")?)
            .or(self.file.labels.active_days))
    }

    /// The customer attributes used as features.
    pub fn attributes(&self, w: &WindowFlags) -> AttributeConfig {
        let f = &self.file.features;
        let d = TrainConfig::default().attributes;
        AttributeConfig {
            categorical: w
                .categorical
                .clone()
                .or_else(|| self.env.list("CHURNGUARD_CATEGORICAL"))
                .or_else(|| f.categorical.clone())
                .unwrap_or(d.categorical),
            numeric: w
                .numeric
                .clone()
                .or_else(|| self.env.list("CHURNGUARD_NUMERIC"))
                .or_else(|| f.numeric.clone())
                .unwrap_or(d.numeric),
            top_levels: f.top_levels.unwrap_or(d.top_levels),
            top_event_types: f.top_event_types.unwrap_or(d.top_event_types),
        }
    }

    /// The tier policy of training (`[tiers]`).
    pub fn tiers(&self) -> TierPolicy {
        let t = &self.file.tiers;
        let d = TierPolicy::default();
        TierPolicy {
            high_share: t.high_share.unwrap_or(d.high_share),
            medium_share: t.medium_share.unwrap_or(d.medium_share),
            high_threshold: t.high_threshold.or(d.high_threshold),
            medium_threshold: t.medium_threshold.or(d.medium_threshold),
        }
    }

    /// The gbdt's hyper-parameters: `[gbdt]` over the defaults.
    pub fn gbdt(&self) -> BoostParams {
        let g = &self.file.gbdt;
        let d = BoostParams::gbdt();
        BoostParams {
            rounds: g.rounds.unwrap_or(d.rounds),
            max_depth: g.max_depth.unwrap_or(d.max_depth),
            early_stopping_rounds: g.early_stopping_rounds.unwrap_or(d.early_stopping_rounds),
            ..d
        }
    }

    /// When a score becomes an alert (`[alerts] tier`, `cooldown_days`).
    pub fn policy(&self) -> Result<AlertPolicy> {
        let a = &self.file.alerts;
        let d = AlertPolicy::default();
        let alert_tier = match a.tier.as_deref() {
            None => d.alert_tier,
            Some("high") => Tier::High,
            Some("medium") => Tier::Medium,
            Some(other) => {
                return Err(Error::Config(format!(
                    "[alerts] tier `{other}` must be high or medium"
                )))
            }
        };
        Ok(AlertPolicy {
            alert_tier,
            cooldown_days: a.cooldown_days.unwrap_or(d.cooldown_days),
        })
    }

    /// The outbox database: the flag, the environment, `[alerts] outbox`, else beside
    /// the model.
    pub fn outbox(&self, flag: Option<&Path>, model: &ModelRef) -> PathBuf {
        flag.map(Path::to_path_buf)
            .or_else(|| self.env.path("CHURNGUARD_OUTBOX"))
            .or_else(|| self.file.alerts.outbox.clone().map(PathBuf::from))
            .unwrap_or_else(|| model.default_outbox())
    }

    /// The alert webhook and its signing secret. The one place the rule lives, for the
    /// batch and the service alike: alerts are signed so the receiver can trust them, so
    /// a webhook without `CHURNGUARD_WEBHOOK_SECRET` is refused.
    pub fn webhook(&self, flag: Option<&str>) -> Result<Option<(String, String)>> {
        let Some(url) = flag
            .map(str::to_string)
            .or_else(|| self.env.string("CHURNGUARD_ALERT_WEBHOOK"))
            .or_else(|| self.file.serve.alert_webhook.clone())
        else {
            return Ok(None);
        };
        match self.env.string("CHURNGUARD_WEBHOOK_SECRET") {
            Some(secret) => Ok(Some((url, secret))),
            None => Err(Error::Config(
                "--alert-webhook needs CHURNGUARD_WEBHOOK_SECRET: alerts are signed so the receiver can trust them".into(),
            )),
        }
    }

    /// The nightly run's input guards: `--max-data-age-days` and `--allow-stale`, the
    /// environment, `[alerts] max_data_age_days`, `min_population_ratio`, `allow_stale`,
    /// else [`InputGuard::default`].
    pub fn guard(&self, f: &ScoreFlags) -> Result<InputGuard> {
        let a = &self.file.alerts;
        let d = InputGuard::default();
        let ratio = self
            .env
            .number::<f64>("CHURNGUARD_MIN_POPULATION_RATIO")?
            .or(a.min_population_ratio)
            .unwrap_or(d.min_population_ratio);
        if !(0.0..=1.0).contains(&ratio) {
            return Err(Error::Config(format!(
                "min_population_ratio {ratio} must be between 0 and 1 (a share of the previous night's population)"
            )));
        }
        // A flag can only switch it on; a set variable wins over the file either way.
        let allow_stale = f.allow_stale
            || match self.env.get("CHURNGUARD_ALLOW_STALE") {
                Some(_) => self.env.switch("CHURNGUARD_ALLOW_STALE"),
                None => a.allow_stale.unwrap_or(d.allow_stale),
            };
        Ok(InputGuard {
            max_data_age_days: f
                .max_data_age_days
                .or(self.env.number("CHURNGUARD_MAX_DATA_AGE_DAYS")?)
                .or(a.max_data_age_days)
                .unwrap_or(d.max_data_age_days),
            min_population_ratio: ratio,
            allow_stale,
        })
    }

    /// How failed alert deliveries are retried: `--alert-retry-initial-ms`,
    /// `--alert-retry-max-seconds`, `--alert-give-up-after-seconds`, their
    /// `CHURNGUARD_ALERT_*` variables, `[alerts] retry_initial_ms`, `retry_max_seconds`,
    /// `give_up_after_seconds`, else [`RetryPolicy::default`] (500 ms, 5 min, 24 h).
    pub fn retry(&self, f: &RetryFlags) -> Result<RetryPolicy> {
        let a = &self.file.alerts;
        let d = RetryPolicy::default();
        let env = |name| self.env.number::<u64>(name);
        let policy = RetryPolicy {
            base: f
                .alert_retry_initial_ms
                .or(env("CHURNGUARD_ALERT_RETRY_INITIAL_MS")?)
                .or(a.retry_initial_ms)
                .map_or(d.base, Duration::from_millis),
            max: f
                .alert_retry_max_seconds
                .or(env("CHURNGUARD_ALERT_RETRY_MAX_SECONDS")?)
                .or(a.retry_max_seconds)
                .map_or(d.max, Duration::from_secs),
            give_up_after: f
                .alert_give_up_after_seconds
                .or(env("CHURNGUARD_ALERT_GIVE_UP_AFTER_SECONDS")?)
                .or(a.give_up_after_seconds)
                .map_or(d.give_up_after, Duration::from_secs),
            jitter: d.jitter,
        };
        policy.validate()?;
        Ok(policy)
    }

    /// How long finished alerts are kept, in days (0: forever): the flag,
    /// `CHURNGUARD_ALERTS_RETENTION_DAYS`, `[alerts] retention_days`, else 90.
    pub fn retention_days(&self, flag: Option<u32>) -> Result<u32> {
        Ok(flag
            .or(self.env.number("CHURNGUARD_ALERTS_RETENTION_DAYS")?)
            .or(self.file.alerts.retention_days)
            .unwrap_or(crate::alerts::outbox::DEFAULT_RETENTION_DAYS))
    }

    /// `alerts prune`: the outbox it works on and the retention in days.
    pub fn prune(&self, f: &PruneFlags) -> Result<(PathBuf, u32)> {
        let model = self.model(&f.models);
        Ok((
            self.outbox(f.outbox.as_deref(), &model),
            self.retention_days(f.retention_days)?,
        ))
    }

    /// `alerts redrive`: the outbox it works on, and the keys (`None`: every
    /// dead-lettered alert).
    pub fn redrive(&self, f: &RedriveFlags) -> (PathBuf, Option<Vec<String>>) {
        let model = self.model(&f.models);
        let keys = (!f.all).then(|| f.id.clone());
        (self.outbox(f.outbox.as_deref(), &model), keys)
    }

    /// The early-warning rules: the flag, the environment, else `[alerts] rules`; `None`
    /// keeps the built-in ones.
    pub fn rules(&self, f: &RulesFlags) -> Result<Option<Vec<Rule>>> {
        let Some(path) = f
            .rules
            .clone()
            .or_else(|| self.env.path("CHURNGUARD_RULES"))
            .or_else(|| self.file.alerts.rules.clone().map(PathBuf::from))
        else {
            return Ok(None);
        };
        let text = std::fs::read_to_string(&path).map_err(|e| Error::io(&path, e))?;
        let rules = crate::scoring::rules_from_json(&text)
            .map_err(|e| Error::Config(format!("rules in {}: {e}", path.display())))?;
        Ok(Some(rules))
    }

    /// `train`.
    pub fn train(&self, f: &TrainFlags) -> Result<TrainSettings> {
        let m = self.model(&f.models);
        let algorithms = match f
            .algorithms
            .clone()
            .or_else(|| self.env.list("CHURNGUARD_ALGORITHMS"))
        {
            Some(list) => list.iter().map(|s| s.parse()).collect::<Result<_>>()?,
            None => Algorithm::ALL.to_vec(),
        };
        let config = TrainConfig {
            name: m.name,
            labels: self.labels(&f.windows)?,
            algorithms,
            attributes: self.attributes(&f.windows),
            promote: f.promote,
            tiers: self.tiers(),
            gbdt: self.gbdt(),
            ..TrainConfig::default()
        };
        config.validate()?;
        Ok(TrainSettings {
            data: self.data(&f.data),
            models: m.models,
            config,
        })
    }

    /// `score`.
    pub fn score(&self, f: &ScoreFlags) -> Result<ScoreSettings> {
        crate::data::write::output_format(&f.out)?;
        let model = self.model(&f.models);
        Ok(ScoreSettings {
            data: self.data(&f.data),
            as_of: crate::time::parse_as_of(&f.as_of)?,
            out: f.out.clone(),
            version: f.version.clone(),
            outbox: self.outbox(f.alerting.outbox.as_deref(), &model),
            retention_days: self.retention_days(None)?,
            alerts_log: self.alerts_log(&f.alerting),
            policy: self.policy()?,
            webhook: self.webhook(f.alerting.alert_webhook.as_deref())?,
            rules: self.rules(&f.alerting.rules)?,
            guard: self.guard(f)?,
            contributions: f.contributions || self.env.switch("CHURNGUARD_CONTRIBUTIONS"),
            retry: self.retry(&f.alerting.retry)?,
            metrics_textfile: f
                .metrics_textfile
                .clone()
                .or_else(|| self.env.path("CHURNGUARD_METRICS_TEXTFILE"))
                .or_else(|| self.file.score.metrics_textfile.clone().map(PathBuf::from)),
            history: self
                .history_dir(f.history_dir.as_deref())
                .unwrap_or_else(|| crate::history::default_dir(&f.out)),
            task: self.task()?,
            memory: self.memory(&f.memory)?,
            model,
        })
    }

    /// The memory budget: `--memory-budget`, `CHURNGUARD_MEMORY_BUDGET`, `memory_budget`
    /// in the file, else [`Memory::default_budget`]; the buckets' directory:
    /// `--work-dir`, `CHURNGUARD_WORK_DIR`, `work_dir`.
    pub fn memory(&self, f: &flags::MemoryFlags) -> Result<Memory> {
        let text = f
            .memory_budget
            .clone()
            .or_else(|| self.env.string("CHURNGUARD_MEMORY_BUDGET"))
            .or_else(|| self.file.memory_budget.clone());
        let budget = match text {
            None => Memory::default_budget(),
            Some(t) => parse_size(&t).ok_or_else(|| {
                Error::Config(format!(
                    "memory budget `{t}` is not a size (examples: 4GiB, 800MiB, 2G)"
                ))
            })?,
        };
        Ok(Memory {
            budget,
            work_dir: f
                .work_dir
                .clone()
                .or_else(|| self.env.path("CHURNGUARD_WORK_DIR"))
                .or_else(|| self.file.work_dir.clone().map(PathBuf::from)),
        })
    }

    /// `alerts --scores`: the alert stage's settings, layered as `score`'s are (the
    /// outbox's default is beside the model the scores name, so it is `None` here unless
    /// set).
    pub fn alerts(&self, f: &AlertsFlags) -> Result<AlertsSettings> {
        let scores = f
            .scores
            .clone()
            .ok_or_else(|| Error::Config("alerts: give --scores PATH".into()))?;
        Ok(AlertsSettings {
            scores,
            models: self.models_dir(f.models.as_deref()),
            data: f.data.clone(),
            options: crate::batch::ScoresAlertOptions {
                outbox: f
                    .alerting
                    .outbox
                    .clone()
                    .or_else(|| self.env.path("CHURNGUARD_OUTBOX"))
                    .or_else(|| self.file.alerts.outbox.clone().map(PathBuf::from)),
                policy: self.policy()?,
                alerts_log: self.alerts_log(&f.alerting),
                webhook: self.webhook(f.alerting.alert_webhook.as_deref())?,
                retry: self.retry(&f.alerting.retry)?,
                task: self.task()?,
                rules: self.rules(&f.alerting.rules)?,
            },
        })
    }

    /// The alert stage's JSON-lines file: the flag, else `[alerts] log`.
    fn alerts_log(&self, f: &AlertStageFlags) -> Option<PathBuf> {
        f.alerts
            .clone()
            .or_else(|| self.file.alerts.log.clone().map(PathBuf::from))
    }

    /// The score history directory: the flag, `CHURNGUARD_HISTORY_DIR`, `[history] dir`;
    /// `None` when none is set (each command then has its default beside the scores).
    pub fn history_dir(&self, flag: Option<&Path>) -> Option<PathBuf> {
        flag.map(Path::to_path_buf)
            .or_else(|| self.env.path("CHURNGUARD_HISTORY_DIR"))
            .or_else(|| self.file.history.dir.clone().map(PathBuf::from))
    }

    /// What alerts carry besides the score: `[alerts] profile_attributes`,
    /// `plan_attribute`, `owner_attribute` (`CHURNGUARD_OWNER_ATTRIBUTE`) and `due_days`
    /// (`CHURNGUARD_DUE_DAYS`).
    pub fn task(&self) -> Result<crate::alerts::TaskConfig> {
        let a = &self.file.alerts;
        let d = crate::alerts::TaskConfig::default();
        Ok(crate::alerts::TaskConfig {
            profile_attributes: a.profile_attributes.clone().unwrap_or(d.profile_attributes),
            plan_attribute: a.plan_attribute.clone().unwrap_or(d.plan_attribute),
            owner_attribute: self
                .env
                .string("CHURNGUARD_OWNER_ATTRIBUTE")
                .or_else(|| a.owner_attribute.clone()),
            due_days: self
                .env
                .number("CHURNGUARD_DUE_DAYS")?
                .or(a.due_days)
                .unwrap_or(d.due_days),
        })
    }

    /// `history`: the directory from the flag, the environment or the file, else
    /// `history/` beside `--scores` (or `CHURNGUARD_SCORES`, `[serve] scores`).
    pub fn history(&self, f: &HistoryFlags) -> Result<HistorySettings> {
        if f.days == 0 || f.days > crate::history::MAX_DAYS {
            return Err(Error::Config(format!(
                "--days {}: choose 1 to {}",
                f.days,
                crate::history::MAX_DAYS
            )));
        }
        let scores = f
            .scores
            .clone()
            .or_else(|| self.env.path("CHURNGUARD_SCORES"))
            .or_else(|| self.file.serve.scores.clone().map(PathBuf::from));
        let dir = self
            .history_dir(f.history_dir.as_deref())
            .or_else(|| scores.as_deref().map(crate::history::default_dir))
            .ok_or_else(|| {
                Error::Config(
                    "no history directory: give --history-dir (or CHURNGUARD_HISTORY_DIR, [history] dir) or --scores".into(),
                )
            })?;
        Ok(HistorySettings {
            dir,
            customer: f.customer.clone(),
            days: f.days,
            json: f.json,
        })
    }

    /// `features`: with a registry (`--models` or the environment), its production
    /// model's schema is used.
    pub fn features(&self, f: &FeaturesFlags) -> Result<FeatureSettings> {
        crate::data::write::output_format(&f.out)?;
        let model = f
            .models
            .clone()
            .or_else(|| self.env.path("CHURNGUARD_MODELS"))
            .map(|models| ModelRef {
                models,
                name: self
                    .model(&ModelFlags {
                        models: None,
                        name: f.name.clone(),
                    })
                    .name,
            });
        let as_of = match (&f.as_of, f.training_set) {
            (_, true) => None,
            (Some(t), false) => Some(crate::time::parse_as_of(t)?),
            (None, false) => {
                return Err(Error::Config(
                    "give --as-of DATE for one snapshot, or --training-set".into(),
                ))
            }
        };
        Ok(FeatureSettings {
            data: self.data(&f.data),
            labels: self.labels(&f.windows)?,
            attributes: self.attributes(&f.windows),
            model,
            as_of,
            out: f.out.clone(),
        })
    }

    /// `retention`.
    pub fn retention(&self, f: &RetentionFlags) -> Result<RetentionSettings> {
        if f.out.is_none() && !f.json {
            return Err(Error::Config(
                "give --out FILE.html, --json, or both".into(),
            ));
        }
        Ok(RetentionSettings {
            data: self.data(&f.data),
            active_days: self.active_days(f.active_days)?,
            rules: self.rules(&f.rules)?,
            as_of: f
                .as_of
                .as_deref()
                .map(crate::time::parse_as_of)
                .transpose()?,
            out: f.out.clone(),
            scores: f.scores.clone(),
            json: f.json,
            model: self.model(&f.models),
        })
    }

    /// `backtest`.
    pub fn backtest(&self, f: &BacktestFlags) -> BacktestSettings {
        BacktestSettings {
            data: self.data(&f.data),
            models: self.model(&f.models).models,
            scores: f.scores.clone(),
            json: f.json,
        }
    }

    /// `serve`: every service setting, validated before it starts.
    pub fn serve(&self, f: &ServeFlags) -> Result<ServeConfig> {
        let s = &self.file.serve;
        let d = ServeConfig::default();
        let model = self.model(&f.models);
        let bind = match f
            .bind
            .clone()
            .or_else(|| self.env.string("CHURNGUARD_BIND"))
            .or_else(|| s.bind.clone())
        {
            Some(text) => parse_bind(&text)?,
            None => d.bind,
        };
        let mut api_keys = crate::serve::auth::split_key_list(
            self.env.get("CHURNGUARD_API_KEYS").unwrap_or_default(),
        );
        if let Some(file) = f
            .api_keys_file
            .clone()
            .or_else(|| self.env.path("CHURNGUARD_API_KEYS_FILE"))
            .or_else(|| s.api_keys_file.clone().map(PathBuf::from))
        {
            api_keys.extend(crate::serve::auth::read_key_file(&file)?);
        }
        Ok(ServeConfig {
            outbox: self.outbox(f.outbox.as_deref(), &model),
            models: model.models,
            name: model.name,
            bind,
            api_keys,
            admin_key: self.env.string("CHURNGUARD_ADMIN_KEY"),
            scores: f
                .scores
                .clone()
                .or_else(|| self.env.path("CHURNGUARD_SCORES"))
                .or_else(|| s.scores.clone().map(PathBuf::from)),
            alert_log: self.file.alerts.log.clone().map(PathBuf::from),
            webhook: self.webhook(f.alert_webhook.as_deref())?,
            policy: self.policy()?,
            reload_interval: s
                .reload_seconds
                .map_or(d.reload_interval, Duration::from_secs),
            max_batch: s.max_batch.unwrap_or(d.max_batch),
            max_body_bytes: s.max_body_bytes.unwrap_or(d.max_body_bytes),
            header_timeout: match s.header_timeout_seconds {
                Some(0) => {
                    return Err(Error::Config(
                        "[serve] header_timeout_seconds must be at least 1".into(),
                    ))
                }
                Some(secs) => Duration::from_secs(secs),
                None => d.header_timeout,
            },
            max_connections: match s.max_connections {
                Some(0) => {
                    return Err(Error::Config(
                        "[serve] max_connections must be at least 1".into(),
                    ))
                }
                Some(n) => n,
                None => d.max_connections,
            },
            rules: self.rules(&f.rules)?,
            retry: self.retry(&f.retry)?,
            alert_lease: match f
                .alert_lease_seconds
                .or(self.env.number("CHURNGUARD_ALERT_LEASE_SECONDS")?)
                .or(self.file.alerts.lease_seconds)
            {
                Some(0) => {
                    return Err(Error::Config(
                        "the alert lease must be at least 1 second".into(),
                    ))
                }
                Some(n) => Duration::from_secs(n),
                None => d.alert_lease,
            },
            history: self.history_dir(f.history_dir.as_deref()).or_else(|| {
                f.scores
                    .clone()
                    .or_else(|| self.env.path("CHURNGUARD_SCORES"))
                    .or_else(|| s.scores.clone().map(PathBuf::from))
                    .map(|p| crate::history::default_dir(&p))
            }),
            task: self.task()?,
            ..d
        })
    }
}

impl GenerateFlags {
    /// The generator's settings.
    pub fn config(&self) -> Result<SynthConfig> {
        let format = match self.format.as_str() {
            "parquet" => SynthFormat::Parquet,
            "csv" => SynthFormat::Csv,
            other => {
                return Err(Error::Config(format!(
                    "--format {other}: choose parquet or csv"
                )))
            }
        };
        Ok(SynthConfig {
            customers: self.customers,
            seed: self.seed,
            start: crate::time::parse_as_of(&self.start)?,
            end: crate::time::parse_as_of(&self.end)?,
            format,
        })
    }
}

fn parse_bind(text: &str) -> Result<SocketAddr> {
    text.parse().map_err(|_| {
        Error::Config(format!(
            "--bind `{text}` is not an address like 127.0.0.1:8080"
        ))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_memory_budget_is_a_size_with_a_binary_unit() {
        assert_eq!(parse_size("4GiB"), Some(4 << 30));
        assert_eq!(parse_size("800MiB"), Some(800 << 20));
        assert_eq!(parse_size(" 2g "), Some(2 << 30));
        assert_eq!(parse_size("1.5GB"), Some(3 << 29));
        assert_eq!(parse_size("123456"), Some(123_456));
        for bad in ["", "GiB", "4 parsecs", "-1GiB", "0"] {
            assert_eq!(parse_size(bad), None, "{bad}");
        }
        let s = Settings {
            file: FileConfig::default(),
            env: Env::from_pairs([("CHURNGUARD_MEMORY_BUDGET", "3GiB")]),
        };
        let m = s.memory(&MemoryFlags::default()).unwrap();
        assert_eq!(m.budget, 3 << 30);
        let flag = MemoryFlags {
            memory_budget: Some("1MiB".into()),
            work_dir: None,
        };
        assert_eq!(s.memory(&flag).unwrap().budget, 1 << 20);
        let bad = MemoryFlags {
            memory_budget: Some("lots".into()),
            work_dir: None,
        };
        assert!(s.memory(&bad).unwrap_err().to_string().contains("lots"));
        assert!(Memory::default_budget() > 0);
    }

    fn settings(toml: &str, env: &[(&str, &str)]) -> Settings {
        Settings {
            file: toml::from_str(toml).unwrap(),
            env: Env::from_pairs(env.iter().copied()),
        }
    }

    const FILE: &str = r#"
data = "from-file"
models = "file-models"
name = "file-name"
[labels]
horizon_days = 60
active_days = 45
[features]
categorical = ["plan"]
[serve]
bind = "127.0.0.1:7001"
[alerts]
cooldown_days = 3
outbox = "file.db"
"#;

    #[test]
    fn defaults_come_from_the_modules_that_own_them() {
        let s = settings("", &[]);
        let m = s.model(&ModelFlags::default());
        assert_eq!(m.models, PathBuf::from("models"));
        assert_eq!(m.name, "churn");
        assert_eq!(
            s.data(&DataFlags::default()).dir,
            PathBuf::from("data/sample")
        );
        assert_eq!(s.outbox(None, &m), PathBuf::from("models/churn/alerts.db"));
        assert_eq!(s.policy().unwrap(), AlertPolicy::default());
        assert_eq!(s.policy().unwrap().cooldown_days, 14);
        assert_eq!(
            s.labels(&WindowFlags::default()).unwrap(),
            LabelConfig::default()
        );
        let a = s.attributes(&WindowFlags::default());
        assert_eq!((a.top_levels, a.top_event_types), (8, 8));
        let cfg = s.serve(&ServeFlags::default()).unwrap();
        assert_eq!(cfg.bind, "127.0.0.1:8080".parse::<SocketAddr>().unwrap());
        assert_eq!(cfg.outbox, PathBuf::from("models/churn/alerts.db"));
        assert!(cfg.webhook.is_none() && cfg.api_keys.is_empty());
    }

    #[test]
    fn the_file_wins_over_the_defaults() {
        let s = settings(FILE, &[]);
        let m = s.model(&ModelFlags::default());
        assert_eq!(
            (m.models, m.name.as_str()),
            (PathBuf::from("file-models"), "file-name")
        );
        assert_eq!(
            s.data(&DataFlags::default()).dir,
            PathBuf::from("from-file")
        );
        let l = s.labels(&WindowFlags::default()).unwrap();
        assert_eq!(
            (l.horizon_days, l.active_days, l.snapshot_days),
            (60, 45, 30)
        );
        assert_eq!(s.attributes(&WindowFlags::default()).categorical, ["plan"]);
        assert_eq!(s.policy().unwrap().cooldown_days, 3);
        let cfg = s.serve(&ServeFlags::default()).unwrap();
        assert_eq!(cfg.bind.port(), 7001);
        assert_eq!(cfg.outbox, PathBuf::from("file.db"));
    }

    #[test]
    fn the_gbdt_section_sets_the_boosting_size_and_bad_sizes_are_refused() {
        assert_eq!(settings("", &[]).gbdt(), BoostParams::gbdt());
        let toml = "[gbdt]\nrounds = 300\nmax_depth = 4\nearly_stopping_rounds = 0\n";
        let t = settings(toml, &[]).train(&TrainFlags::default()).unwrap();
        let g = t.config.gbdt;
        assert_eq!(
            (g.rounds, g.max_depth, g.early_stopping_rounds),
            (300, 4, 0)
        );
        assert_eq!(g.eta, BoostParams::gbdt().eta);
        for bad in ["rounds = 0", "max_depth = 0", "max_depth = 17"] {
            let err = settings(&format!("[gbdt]\n{bad}\n"), &[])
                .train(&TrainFlags::default())
                .unwrap_err()
                .to_string();
            assert!(err.contains("[gbdt]"), "{bad}: {err}");
        }
    }

    #[test]
    fn connection_timeouts_and_limit_come_from_the_serve_section() {
        let cfg = settings("", &[]).serve(&ServeFlags::default()).unwrap();
        assert_eq!(
            (cfg.header_timeout, cfg.max_connections),
            (Duration::from_secs(10), 1000)
        );
        let toml = "[serve]\nheader_timeout_seconds = 3\nmax_connections = 64\n";
        let cfg = settings(toml, &[]).serve(&ServeFlags::default()).unwrap();
        assert_eq!(
            (cfg.header_timeout, cfg.max_connections),
            (Duration::from_secs(3), 64)
        );
        for zero in ["header_timeout_seconds = 0", "max_connections = 0"] {
            let err = settings(&format!("[serve]\n{zero}\n"), &[])
                .serve(&ServeFlags::default())
                .unwrap_err()
                .to_string();
            assert!(err.contains("at least 1"), "{zero}: {err}");
        }
    }

    #[test]
    fn retention_and_lease_come_from_the_flag_the_environment_the_file_or_the_default() {
        let none = settings("", &[]);
        assert_eq!(none.retention_days(None).unwrap(), 90);
        assert_eq!(
            none.serve(&ServeFlags::default()).unwrap().alert_lease,
            Duration::from_secs(120)
        );
        let file = settings("[alerts]\nretention_days = 30\nlease_seconds = 5\n", &[]);
        assert_eq!(file.retention_days(None).unwrap(), 30);
        assert_eq!(
            file.serve(&ServeFlags::default()).unwrap().alert_lease,
            Duration::from_secs(5)
        );
        let env = settings(
            "[alerts]\nretention_days = 30\n",
            &[("CHURNGUARD_ALERTS_RETENTION_DAYS", "7")],
        );
        assert_eq!(env.retention_days(None).unwrap(), 7);
        assert_eq!(env.retention_days(Some(0)).unwrap(), 0, "the flag wins");
        let url = "postgres://cg@db:5432/alerts";
        let (outbox, days) = env
            .prune(&PruneFlags {
                outbox: Some(url.into()),
                ..PruneFlags::default()
            })
            .unwrap();
        assert_eq!((outbox, days), (PathBuf::from(url), 7));
        let zero = ServeFlags {
            alert_lease_seconds: Some(0),
            ..ServeFlags::default()
        };
        assert!(none
            .serve(&zero)
            .unwrap_err()
            .to_string()
            .contains("at least 1"));
    }

    #[test]
    fn the_environment_wins_over_the_file() {
        let s = settings(
            FILE,
            &[
                ("CHURNGUARD_DATA", "from-env"),
                ("CHURNGUARD_MODELS", "env-models"),
                ("CHURNGUARD_NAME", "env-name"),
                ("CHURNGUARD_HORIZON_DAYS", "21"),
                ("CHURNGUARD_ACTIVE_DAYS", "33"),
                ("CHURNGUARD_CATEGORICAL", "plan,country"),
                ("CHURNGUARD_BIND", "127.0.0.1:7002"),
                ("CHURNGUARD_OUTBOX", "env.db"),
                ("CHURNGUARD_SKIP_BAD_ROWS", "true"),
                ("CHURNGUARD_SCORES", ""),
            ],
        );
        let m = s.model(&ModelFlags::default());
        assert_eq!(
            (m.models, m.name.as_str()),
            (PathBuf::from("env-models"), "env-name")
        );
        let d = s.data(&DataFlags::default());
        assert_eq!((d.dir, d.skip_bad_rows), (PathBuf::from("from-env"), true));
        let l = s.labels(&WindowFlags::default()).unwrap();
        assert_eq!((l.horizon_days, l.active_days), (21, 33));
        assert_eq!(
            s.attributes(&WindowFlags::default()).categorical,
            ["plan", "country"]
        );
        let cfg = s.serve(&ServeFlags::default()).unwrap();
        assert_eq!(cfg.bind.port(), 7002);
        assert_eq!(cfg.outbox, PathBuf::from("env.db"));
        assert_eq!(cfg.scores, None, "an empty variable is unset");
        let retention = RetentionFlags {
            json: true,
            ..RetentionFlags::default()
        };
        assert_eq!(s.retention(&retention).unwrap().active_days, Some(33));
    }

    #[test]
    fn a_flag_wins_over_the_environment() {
        let s = settings(
            FILE,
            &[
                ("CHURNGUARD_DATA", "from-env"),
                ("CHURNGUARD_NAME", "env-name"),
                ("CHURNGUARD_HORIZON_DAYS", "21"),
                ("CHURNGUARD_BIND", "127.0.0.1:7002"),
                ("CHURNGUARD_ALGORITHMS", "tree"),
                ("CHURNGUARD_SKIP_BAD_ROWS", "off"),
            ],
        );
        let data = DataFlags {
            data: Some("from-flag".into()),
            skip_bad_rows: false,
        };
        let d = s.data(&data);
        assert_eq!(
            (d.dir, d.skip_bad_rows),
            (PathBuf::from("from-flag"), false)
        );
        let model = ModelFlags {
            models: None,
            name: Some("flag-name".into()),
        };
        assert_eq!(s.model(&model).name, "flag-name");
        let w = WindowFlags {
            horizon_days: Some(14),
            ..WindowFlags::default()
        };
        assert_eq!(s.labels(&w).unwrap().horizon_days, 14);
        let serve = ServeFlags {
            bind: Some("127.0.0.1:7003".into()),
            ..ServeFlags::default()
        };
        assert_eq!(s.serve(&serve).unwrap().bind.port(), 7003);
        let mut train = TrainFlags {
            data: data.clone(),
            models: model.clone(),
            windows: w.clone(),
            ..TrainFlags::default()
        };
        let t = s.train(&train).unwrap();
        assert_eq!(
            t.config.algorithms,
            [Algorithm::Tree],
            "the environment, no flag given"
        );
        train.algorithms = Some(vec!["logistic".into()]);
        let t = s.train(&train).unwrap();
        assert_eq!(t.config.algorithms, [Algorithm::Logistic]);
        assert_eq!(t.config.name, "flag-name");
        assert_eq!(t.models, PathBuf::from("file-models"));
    }

    #[test]
    fn a_webhook_without_a_secret_is_refused_for_score_and_serve_alike() {
        let s = settings(
            "[serve]\nalert_webhook = \"https://crm.example/hook\"\n",
            &[],
        );
        let flags = ScoreFlags {
            as_of: "2024-12-01".into(),
            out: "scores.parquet".into(),
            ..ScoreFlags::default()
        };
        let score = s.score(&flags).unwrap_err();
        let serve = s.serve(&ServeFlags::default()).unwrap_err();
        for e in [score, serve] {
            assert!(
                e.to_string().contains("needs CHURNGUARD_WEBHOOK_SECRET"),
                "{e}"
            );
        }
        let s = Settings {
            env: Env::from_pairs([("CHURNGUARD_WEBHOOK_SECRET", "s3cret")]),
            ..s
        };
        let score = s.score(&flags).unwrap();
        assert_eq!(
            score.webhook,
            Some(("https://crm.example/hook".into(), "s3cret".into()))
        );
        assert_eq!(
            s.serve(&ServeFlags::default()).unwrap().webhook,
            score.webhook
        );
    }

    #[test]
    fn the_input_guards_layer_like_every_other_setting() {
        let flags = ScoreFlags {
            as_of: "2024-12-01".into(),
            out: "scores.parquet".into(),
            ..ScoreFlags::default()
        };
        assert_eq!(
            settings("", &[]).guard(&flags).unwrap(),
            InputGuard::default()
        );
        assert_eq!(
            (
                InputGuard::default().max_data_age_days,
                InputGuard::default().allow_stale
            ),
            (3, false)
        );
        let file =
            "[alerts]\nmax_data_age_days = 7\nmin_population_ratio = 0.2\nallow_stale = true\n";
        let g = settings(file, &[]).score(&flags).unwrap().guard;
        assert_eq!(
            (g.max_data_age_days, g.min_population_ratio, g.allow_stale),
            (7, 0.2, true)
        );
        let env = [
            ("CHURNGUARD_MAX_DATA_AGE_DAYS", "5"),
            ("CHURNGUARD_ALLOW_STALE", "no"),
            ("CHURNGUARD_MIN_POPULATION_RATIO", "0.9"),
        ];
        let s = settings(file, &env);
        let g = s.guard(&flags).unwrap();
        assert_eq!(
            (g.max_data_age_days, g.min_population_ratio, g.allow_stale),
            (5, 0.9, false)
        );
        let flagged = ScoreFlags {
            max_data_age_days: Some(1),
            allow_stale: true,
            ..flags.clone()
        };
        let g = s.guard(&flagged).unwrap();
        assert_eq!((g.max_data_age_days, g.allow_stale), (1, true));
        let e = settings("[alerts]\nmin_population_ratio = 2.0\n", &[])
            .guard(&flags)
            .unwrap_err()
            .to_string();
        assert!(e.contains("min_population_ratio 2"), "{e}");
    }

    #[test]
    fn alert_retries_layer_like_every_other_setting() {
        let none = RetryFlags::default();
        assert_eq!(
            settings("", &[]).retry(&none).unwrap(),
            RetryPolicy::default()
        );
        let file = "[alerts]\nretry_initial_ms = 100\nretry_max_seconds = 60\ngive_up_after_seconds = 3600\n";
        let r = settings(file, &[]).retry(&none).unwrap();
        assert_eq!(
            (r.base, r.max, r.give_up_after),
            (
                Duration::from_millis(100),
                Duration::from_secs(60),
                Duration::from_secs(3600)
            )
        );
        let env = [
            ("CHURNGUARD_ALERT_RETRY_INITIAL_MS", "50"),
            ("CHURNGUARD_ALERT_RETRY_MAX_SECONDS", "30"),
            ("CHURNGUARD_ALERT_GIVE_UP_AFTER_SECONDS", "600"),
        ];
        let s = settings(file, &env);
        let r = s.retry(&none).unwrap();
        assert_eq!(
            (r.base, r.max, r.give_up_after),
            (
                Duration::from_millis(50),
                Duration::from_secs(30),
                Duration::from_secs(600)
            )
        );
        let flags = RetryFlags {
            alert_retry_initial_ms: Some(20),
            alert_retry_max_seconds: Some(1),
            alert_give_up_after_seconds: Some(5),
        };
        let r = s.retry(&flags).unwrap();
        assert_eq!(
            (r.base, r.max, r.give_up_after),
            (
                Duration::from_millis(20),
                Duration::from_secs(1),
                Duration::from_secs(5)
            )
        );
        // Both commands that deliver use it.
        let serve = ServeFlags {
            retry: flags.clone(),
            ..ServeFlags::default()
        };
        assert_eq!(s.serve(&serve).unwrap().retry, r);
        let score = ScoreFlags {
            as_of: "2024-12-01".into(),
            out: "scores.parquet".into(),
            alerting: AlertStageFlags {
                retry: flags,
                ..AlertStageFlags::default()
            },
            ..ScoreFlags::default()
        };
        assert_eq!(s.score(&score).unwrap().retry, r);
        let e = settings("", &[("CHURNGUARD_ALERT_RETRY_INITIAL_MS", "0")])
            .retry(&none)
            .unwrap_err()
            .to_string();
        assert!(e.contains("at least 1 ms"), "{e}");
    }

    #[test]
    fn the_metrics_textfile_comes_from_the_flag_the_environment_or_the_file() {
        let flags = ScoreFlags {
            as_of: "2024-12-01".into(),
            out: "scores.parquet".into(),
            ..ScoreFlags::default()
        };
        let file = "[score]\nmetrics_textfile = \"file.prom\"\n";
        let env = [("CHURNGUARD_METRICS_TEXTFILE", "env.prom")];
        let flagged = ScoreFlags {
            metrics_textfile: Some("flag.prom".into()),
            ..flags.clone()
        };
        let got = |file: &str, env: &[(&str, &str)], f: &ScoreFlags| {
            settings(file, env).score(f).unwrap().metrics_textfile
        };
        assert_eq!(got("", &[], &flags), None);
        assert_eq!(got(file, &[], &flags), Some("file.prom".into()));
        assert_eq!(got(file, &env, &flags), Some("env.prom".into()));
        assert_eq!(got(file, &env, &flagged), Some("flag.prom".into()));
    }

    #[test]
    fn the_history_dir_comes_from_the_flag_the_environment_the_file_or_beside_the_scores() {
        let flags = ScoreFlags {
            as_of: "2024-12-01".into(),
            out: "nightly/scores.parquet".into(),
            ..ScoreFlags::default()
        };
        let file = "[history]\ndir = \"file-history\"\n";
        let env = [("CHURNGUARD_HISTORY_DIR", "env-history")];
        let flagged = ScoreFlags {
            history_dir: Some("flag-history".into()),
            ..flags.clone()
        };
        let got = |file: &str, env: &[(&str, &str)], f: &ScoreFlags| {
            settings(file, env).score(f).unwrap().history
        };
        assert_eq!(got("", &[], &flags), PathBuf::from("nightly/history"));
        assert_eq!(got(file, &[], &flags), PathBuf::from("file-history"));
        assert_eq!(got(file, &env, &flags), PathBuf::from("env-history"));
        assert_eq!(got(file, &env, &flagged), PathBuf::from("flag-history"));
        let h = HistoryFlags {
            customer: "c1".into(),
            days: 30,
            scores: Some("nightly/scores.parquet".into()),
            ..HistoryFlags::default()
        };
        assert_eq!(
            settings("", &[]).history(&h).unwrap().dir,
            PathBuf::from("nightly/history")
        );
        let bad = HistoryFlags { days: 0, ..h };
        let e = settings("", &[]).history(&bad).unwrap_err().to_string();
        assert!(e.contains("--days 0"), "{e}");
    }

    #[test]
    fn the_alert_task_settings_come_from_the_file_and_the_environment() {
        let file = "[alerts]\nowner_attribute = \"account_manager\"\ndue_days = 5\nprofile_attributes = [\"country\"]\n";
        let t = settings(file, &[]).task().unwrap();
        assert_eq!(t.owner_attribute.as_deref(), Some("account_manager"));
        assert_eq!((t.due_days, t.plan_attribute.as_str()), (5, "plan"));
        assert_eq!(t.profile_attributes, ["country"]);
        let t = settings(file, &[("CHURNGUARD_DUE_DAYS", "1")])
            .task()
            .unwrap();
        assert_eq!(t.due_days, 1);
        assert_eq!(settings("", &[]).task().unwrap(), Default::default());
    }

    #[test]
    fn api_keys_come_from_the_environment_and_the_key_file() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("keys");
        std::fs::write(&file, "# team keys\nk-file-1\n\n  k-file-2  \n").unwrap();
        let s = settings(
            "",
            &[
                ("CHURNGUARD_API_KEYS", "k-env-1, ,k-env-2"),
                ("CHURNGUARD_ADMIN_KEY", "admin"),
                ("CHURNGUARD_API_KEYS_FILE", file.to_str().unwrap()),
            ],
        );
        let cfg = s.serve(&ServeFlags::default()).unwrap();
        assert_eq!(cfg.api_keys, ["k-env-1", "k-env-2", "k-file-1", "k-file-2"]);
        assert_eq!(cfg.admin_key.as_deref(), Some("admin"));
    }

    #[test]
    fn bad_values_are_refused_with_the_variable_named() {
        let s = settings("", &[("CHURNGUARD_HORIZON_DAYS", "soon")]);
        let e = s.labels(&WindowFlags::default()).unwrap_err().to_string();
        assert!(e.contains("CHURNGUARD_HORIZON_DAYS=`soon`"), "{e}");
        let s = settings("[alerts]\ntier = \"low\"\n", &[]);
        assert!(s.policy().unwrap_err().to_string().contains("tier `low`"));
        let s = settings("", &[("CHURNGUARD_BIND", "localhost")]);
        assert!(s
            .serve(&ServeFlags::default())
            .unwrap_err()
            .to_string()
            .contains("`localhost` is not an address"));
    }

    #[test]
    fn features_use_the_flag_name_then_the_environment_then_the_file() {
        let flags = |name: Option<&str>| FeaturesFlags {
            models: Some("m".into()),
            name: name.map(String::from),
            as_of: Some("2024-12-01".into()),
            out: "f.parquet".into(),
            ..FeaturesFlags::default()
        };
        let name = |s: &Settings, f: &FeaturesFlags| s.features(f).unwrap().model.unwrap().name;
        let s = settings(FILE, &[("CHURNGUARD_NAME", "env-name")]);
        assert_eq!(name(&s, &flags(Some("flag-name"))), "flag-name");
        assert_eq!(name(&s, &flags(None)), "env-name");
        assert_eq!(name(&settings(FILE, &[]), &flags(None)), "file-name");
    }
}
