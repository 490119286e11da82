//! The command-line flags of each command, as `clap` argument groups. Their doc comments
//! are the `--help` text; [`super::Settings`] layers them over the environment, the file
//! and the defaults.

use std::path::PathBuf;

use clap::{Args, Subcommand};

/// `--data`, `--skip-bad-rows`.
#[derive(Args, Clone, Debug, Default)]
pub struct DataFlags {
    /// Directory of the customer tables (CSV or Parquet) [env: CHURNGUARD_DATA] [default: data/sample].
    #[arg(long)]
    pub data: Option<PathBuf>,
    /// Count and skip unparseable rows instead of stopping at the first [env: CHURNGUARD_SKIP_BAD_ROWS].
    #[arg(long)]
    pub skip_bad_rows: bool,
}

/// `--models`, `--name`.
#[derive(Args, Clone, Debug, Default)]
pub struct ModelFlags {
    /// Model registry directory [env: CHURNGUARD_MODELS] [default: models].
    #[arg(long)]
    pub models: Option<PathBuf>,
    /// Model name [env: CHURNGUARD_NAME] [default: churn].
    #[arg(long)]
    pub name: Option<String>,
}

/// The label windows and attribute columns of training and of `features`.
#[derive(Args, Clone, Debug, Default)]
pub struct WindowFlags {
    /// Label horizon in days: churn within [T, T+H) [env: CHURNGUARD_HORIZON_DAYS] [default: 30].
    #[arg(long)]
    pub horizon_days: Option<u32>,
    /// Active window for the inactivity definition of churn [env: CHURNGUARD_ACTIVE_DAYS] [default: 90].
    #[arg(long)]
    pub active_days: Option<u32>,
    /// Days between rolling training snapshots [env: CHURNGUARD_SNAPSHOT_DAYS] [default: 30].
    #[arg(long)]
    pub snapshot_days: Option<u32>,
    /// Categorical attributes of `customers` to one-hot encode, comma-separated [env: CHURNGUARD_CATEGORICAL].
    #[arg(long, value_delimiter = ',')]
    pub categorical: Option<Vec<String>>,
    /// Numeric attributes of `customers` to use, comma-separated [env: CHURNGUARD_NUMERIC].
    #[arg(long, value_delimiter = ',')]
    pub numeric: Option<Vec<String>>,
}

/// `--rules`.
#[derive(Args, Clone, Debug, Default)]
pub struct RulesFlags {
    /// Early-warning rules (JSON list) evaluated beside the model instead of the
    /// built-in three; a rule with `"alert": true` raises alerts on its own [env: CHURNGUARD_RULES].
    #[arg(long)]
    pub rules: Option<PathBuf>,
}

/// How failed alert deliveries are retried (`score` and `serve`).
#[derive(Args, Clone, Debug, Default)]
pub struct RetryFlags {
    /// Delay before the first retry of a failed alert delivery, doubling (with full jitter) after each failure [env: CHURNGUARD_ALERT_RETRY_INITIAL_MS] [default: 500].
    #[arg(long)]
    pub alert_retry_initial_ms: Option<u64>,
    /// Longest delay between two attempts of an alert delivery [env: CHURNGUARD_ALERT_RETRY_MAX_SECONDS] [default: 300].
    #[arg(long)]
    pub alert_retry_max_seconds: Option<u64>,
    /// Dead-letter an alert delivery still failing this long after its first attempt (a permanent 4xx dead-letters at once) [env: CHURNGUARD_ALERT_GIVE_UP_AFTER_SECONDS] [default: 86400].
    #[arg(long)]
    pub alert_give_up_after_seconds: Option<u64>,
}

/// The flags of `serve` (and of the service `demo` starts).
#[derive(Args, Clone, Debug, Default)]
pub struct ServeFlags {
    #[command(flatten)]
    pub models: ModelFlags,
    /// Address to listen on [env: CHURNGUARD_BIND] [default: 127.0.0.1:8080].
    #[arg(long)]
    pub bind: Option<String>,
    /// Latest nightly score file, for GET /v1/customers/{id}/score [env: CHURNGUARD_SCORES].
    #[arg(long)]
    pub scores: Option<PathBuf>,
    /// The score history directory, for GET /v1/customers/{id}/history and the trend of fresh scores [env: CHURNGUARD_HISTORY_DIR] [default: history/ beside --scores].
    #[arg(long)]
    pub history_dir: Option<PathBuf>,
    /// File with one API key per line, in addition to CHURNGUARD_API_KEYS [env: CHURNGUARD_API_KEYS_FILE].
    #[arg(long)]
    pub api_keys_file: Option<PathBuf>,
    /// Webhook receiving alerts, signed with CHURNGUARD_WEBHOOK_SECRET [env: CHURNGUARD_ALERT_WEBHOOK].
    #[arg(long)]
    pub alert_webhook: Option<String>,
    /// The alert state and outbox database, a file or a postgres:// URL [env: CHURNGUARD_OUTBOX] [default: <models>/<name>/alerts.db].
    #[arg(long)]
    pub outbox: Option<PathBuf>,
    #[command(flatten)]
    pub rules: RulesFlags,
    #[command(flatten)]
    pub retry: RetryFlags,
    /// Seconds a claimed alert delivery is reserved for this process; another replica on the same outbox takes it over after that (this one died mid-send) [env: CHURNGUARD_ALERT_LEASE_SECONDS] [config: alerts.lease_seconds] [default: 120].
    #[arg(long)]
    pub alert_lease_seconds: Option<u64>,
}

/// `train`.
#[derive(Args, Clone, Debug, Default)]
pub struct TrainFlags {
    #[command(flatten)]
    pub data: DataFlags,
    #[command(flatten)]
    pub models: ModelFlags,
    #[command(flatten)]
    pub windows: WindowFlags,
    /// Algorithms to compare (comma-separated): logistic, tree, forest, gbdt [env: CHURNGUARD_ALGORITHMS] [default: all].
    #[arg(long, value_delimiter = ',')]
    pub algorithms: Option<Vec<String>>,
    /// Make the new version `production` right away (else the first version is production and later ones staging).
    #[arg(long)]
    pub promote: bool,
}

/// `score`.
#[derive(Args, Clone, Debug, Default)]
pub struct ScoreFlags {
    #[command(flatten)]
    pub data: DataFlags,
    #[command(flatten)]
    pub models: ModelFlags,
    /// Score as of this date (YYYY-MM-DD or RFC 3339).
    #[arg(long)]
    pub as_of: String,
    /// Score file: .parquet or .csv; a run summary is written beside it.
    #[arg(long)]
    pub out: PathBuf,
    /// Score with this version instead of production (vN, N, staging).
    #[arg(long)]
    pub version: Option<String>,
    #[command(flatten)]
    pub alerting: AlertStageFlags,
    /// Refuse the night when an activity table's data ends more than this many days before --as-of [env: CHURNGUARD_MAX_DATA_AGE_DAYS] [default: 3].
    #[arg(long)]
    pub max_data_age_days: Option<u32>,
    /// Score even when the input guards fail (stale data, an --as-of outside the data, an empty or collapsed population): they become warnings [env: CHURNGUARD_ALLOW_STALE].
    #[arg(long)]
    pub allow_stale: bool,
    /// Add every feature's SHAP value to the score file: `shap_base` and `shap_<feature>` (calibrated log-odds; sigmoid(shap_base + the row's shap_ sum) = churn_probability) [env: CHURNGUARD_CONTRIBUTIONS].
    #[arg(long)]
    pub contributions: bool,
    /// Write the nightly Prometheus series (drift, the night's health, refusals) to this file for node_exporter's textfile collector, after the run whatever its outcome [env: CHURNGUARD_METRICS_TEXTFILE].
    #[arg(long)]
    pub metrics_textfile: Option<PathBuf>,
    /// The score history directory: the night's partition `as_of=YYYY-MM-DD/part.parquet` is written there, the trend read from it [env: CHURNGUARD_HISTORY_DIR] [default: history/ beside --out].
    #[arg(long)]
    pub history_dir: Option<PathBuf>,
    #[command(flatten)]
    pub memory: MemoryFlags,
}

/// `--memory-budget`, `--work-dir`.
#[derive(Args, Clone, Debug, Default)]
pub struct MemoryFlags {
    /// Memory the customer base may take (`4GiB`, `800MiB`, `2G`, bytes); a base estimated larger is processed in customer buckets (pmod(xxhash64(customer_id), N), the Spark job's routing) with identical results [env: CHURNGUARD_MEMORY_BUDGET] [default: half the machine's available memory].
    #[arg(long)]
    pub memory_budget: Option<String>,
    /// Directory for the buckets' temporary tables, removed at the end [env: CHURNGUARD_WORK_DIR] [default: the output's directory].
    #[arg(long)]
    pub work_dir: Option<PathBuf>,
}

/// `history`.
#[derive(Args, Clone, Debug, Default)]
pub struct HistoryFlags {
    /// The customer whose series to print.
    #[arg(long)]
    pub customer: String,
    /// The nights of the last N days up to the newest night recorded (1 to 3650).
    #[arg(long, default_value_t = crate::history::DEFAULT_DAYS)]
    pub days: u32,
    /// The score history directory [env: CHURNGUARD_HISTORY_DIR] [default: `[history] dir`, else history/ beside --scores].
    #[arg(long)]
    pub history_dir: Option<PathBuf>,
    /// The score file whose directory holds `history/` (when no directory is configured) [env: CHURNGUARD_SCORES].
    #[arg(long)]
    pub scores: Option<PathBuf>,
    /// Print the series as JSON.
    #[arg(long)]
    pub json: bool,
}

/// `features`.
#[derive(Args, Clone, Debug, Default)]
pub struct FeaturesFlags {
    #[command(flatten)]
    pub data: DataFlags,
    #[command(flatten)]
    pub windows: WindowFlags,
    /// The snapshot date: features of the customers active then (no label).
    #[arg(long, conflicts_with = "training_set")]
    pub as_of: Option<String>,
    /// Write every training snapshot with as_of, label and split, exactly as `train` uses them.
    #[arg(long)]
    pub training_set: bool,
    /// Use the schema of this registry's production model for `--as-of` (else it is learned from the snapshot) [env: CHURNGUARD_MODELS].
    #[arg(long)]
    pub models: Option<PathBuf>,
    /// The model of `--models` whose schema is used [env: CHURNGUARD_NAME] [default: churn].
    #[arg(long)]
    pub name: Option<String>,
    /// Output file: .parquet or .csv.
    #[arg(long)]
    pub out: PathBuf,
}

/// `retention`.
#[derive(Args, Clone, Debug, Default)]
pub struct RetentionFlags {
    #[command(flatten)]
    pub data: DataFlags,
    /// HTML report to write (self-contained, opens offline).
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// As of this date [default: the score file's date, else midnight after the last row].
    #[arg(long)]
    pub as_of: Option<String>,
    /// Nightly score file (`churnguard score --out`) for revenue at risk.
    #[arg(long)]
    pub scores: Option<PathBuf>,
    /// Print the KPIs as JSON on stdout.
    #[arg(long)]
    pub json: bool,
    /// Active window of the inactivity definition [env: CHURNGUARD_ACTIVE_DAYS] [default: 90].
    #[arg(long)]
    pub active_days: Option<u32>,
    #[command(flatten)]
    pub rules: RulesFlags,
    /// The registry whose model defines the RFM segments: the one that wrote `--scores`,
    /// else `--name`'s production version when there is one.
    #[command(flatten)]
    pub models: ModelFlags,
}

/// `backtest`.
#[derive(Args, Clone, Debug, Default)]
pub struct BacktestFlags {
    #[command(flatten)]
    pub data: DataFlags,
    #[command(flatten)]
    pub models: ModelFlags,
    /// A score file written by `churnguard score`.
    #[arg(long)]
    pub scores: PathBuf,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
}

/// `demo`.
#[derive(Args, Clone, Debug, Default)]
pub struct DemoFlags {
    #[command(flatten)]
    pub models: ModelFlags,
    /// Address to serve on (loopback only without API keys) [env: CHURNGUARD_BIND] [default: 127.0.0.1:8080].
    #[arg(long)]
    pub bind: Option<String>,
    /// Stop after training and batch scoring instead of serving.
    #[arg(long)]
    pub no_serve: bool,
}

/// `generate`: no layering, every flag has its default here.
#[derive(Args, Clone, Debug)]
pub struct GenerateFlags {
    /// Number of customers.
    #[arg(long, default_value_t = 20_000)]
    pub customers: usize,
    /// Random seed; the same seed writes the same data.
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
    /// Output directory.
    #[arg(long)]
    pub out: PathBuf,
    /// parquet or csv.
    #[arg(long, default_value = "parquet")]
    pub format: String,
    /// First day of the simulated business (YYYY-MM-DD).
    #[arg(long, default_value = "2023-01-01")]
    pub start: String,
    /// Day the data ends (exclusive, YYYY-MM-DD).
    #[arg(long, default_value = "2025-01-01")]
    pub end: String,
}

/// `inspect`.
#[derive(Args, Clone, Debug, Default)]
pub struct InspectFlags {
    #[command(flatten)]
    pub data: DataFlags,
    /// Print the summary as JSON.
    #[arg(long)]
    pub json: bool,
}

/// `alerts`: a night's alerts from a score table (`--scores`), or one of the outbox's
/// subcommands.
#[derive(Args, Clone, Debug)]
#[command(args_conflicts_with_subcommands = true, subcommand_negates_reqs = true)]
pub struct AlertsCommand {
    #[command(subcommand)]
    pub action: Option<AlertsAction>,
    #[command(flatten)]
    pub scores: AlertsFlags,
}

/// `alerts --scores`: the alert stage of `score` over a score table written elsewhere.
#[derive(Args, Clone, Debug, Default)]
pub struct AlertsFlags {
    /// Raise the night's alerts from this score table: a .parquet or .csv score file, or a directory of Parquet parts (a Spark job's output). Same tiers, policy, outbox and idempotency keys as `score` for that night; a re-run raises none.
    #[arg(long, value_name = "PATH", required = true)]
    pub scores: Option<PathBuf>,
    /// The registry holding the model version the scores name [env: CHURNGUARD_MODELS] [default: models].
    #[arg(long)]
    pub models: Option<PathBuf>,
    /// The customer tables, for alerts that carry the feature summary, profile, trail and owner as `score`'s do (else they carry what the score table holds).
    #[arg(long)]
    pub data: Option<PathBuf>,
    #[command(flatten)]
    pub alerting: AlertStageFlags,
}

/// The alert stage's flags, shared by `score` and `alerts --scores` (the one stage both run).
#[derive(Args, Clone, Debug, Default)]
pub struct AlertStageFlags {
    /// Append alerts (customers newly reaching the alert tier) to this JSON-lines file.
    #[arg(long)]
    pub alerts: Option<PathBuf>,
    /// The alert state and outbox database, a file or a postgres:// URL [env: CHURNGUARD_OUTBOX] [default: <models>/<name>/alerts.db].
    #[arg(long)]
    pub outbox: Option<PathBuf>,
    /// Deliver alerts to this webhook too, signed with CHURNGUARD_WEBHOOK_SECRET [env: CHURNGUARD_ALERT_WEBHOOK].
    #[arg(long)]
    pub alert_webhook: Option<String>,
    #[command(flatten)]
    pub rules: RulesFlags,
    #[command(flatten)]
    pub retry: RetryFlags,
}

/// The outbox's subcommands.
#[derive(Subcommand, Clone, Debug)]
pub enum AlertsAction {
    /// Move dead-lettered alerts back to pending, with a fresh give-up deadline; the
    /// next `serve` or `score` (or the running service, within its poll) delivers them.
    Redrive(RedriveFlags),
    /// Delete delivered and dead-lettered alerts older than the retention (pending ones
    /// are kept whatever their age) and give the space back (SQLite: VACUUM).
    Prune(PruneFlags),
}

/// `alerts prune`.
#[derive(Args, Clone, Debug, Default)]
pub struct PruneFlags {
    #[command(flatten)]
    pub models: ModelFlags,
    /// The alert state and outbox database, a file or a postgres:// URL [env: CHURNGUARD_OUTBOX] [default: <models>/<name>/alerts.db].
    #[arg(long)]
    pub outbox: Option<PathBuf>,
    /// Keep finished alerts this many days [env: CHURNGUARD_ALERTS_RETENTION_DAYS] [config: alerts.retention_days] [default: 90].
    #[arg(long, value_name = "DAYS")]
    pub retention_days: Option<u32>,
}

/// `alerts redrive`.
#[derive(Args, Clone, Debug, Default)]
#[command(group(clap::ArgGroup::new("which").required(true).args(["id", "all"])))]
pub struct RedriveFlags {
    #[command(flatten)]
    pub models: ModelFlags,
    /// The alert state and outbox database, a file or a postgres:// URL [env: CHURNGUARD_OUTBOX] [default: <models>/<name>/alerts.db].
    #[arg(long)]
    pub outbox: Option<PathBuf>,
    /// The idempotency key of an alert to redrive (repeat for several).
    #[arg(long = "id", value_name = "KEY")]
    pub id: Vec<String>,
    /// Redrive every dead-lettered alert.
    #[arg(long)]
    pub all: bool,
}

/// `models`: the registry's subcommands.
#[derive(Subcommand, Clone, Debug)]
pub enum ModelsAction {
    /// List versions with algorithm, metrics and aliases.
    List(ModelFlags),
    /// Show one version's manifest (default: production).
    Show {
        #[command(flatten)]
        m: ModelFlags,
        /// vN, N, production or staging.
        version: Option<String>,
    },
    /// Point an alias (production by default) at a version.
    Promote {
        #[command(flatten)]
        m: ModelFlags,
        version: String,
        /// The alias to move: production or staging.
        #[arg(long, default_value = "production")]
        alias: String,
    },
    /// Move production back to the version it pointed to before.
    Rollback(ModelFlags),
    /// Write a tree model (tree, forest, gbdt) as the dictionary shap's TreeExplainer
    /// takes for a custom model, to check churnguard's reasons with shap itself.
    ///
    /// The values are in calibrated log-odds: `sigmoid(base_offset + sum of the trees)`
    /// is the churn probability, and the thresholds are in the units of the table
    /// `churnguard features --models` writes, so shap runs directly on that table's
    /// value columns (`feature_names`; NaN for an undefined value). Load it with
    /// `m = json.load(f); m["trees"] = [{k: np.array(v) for k, v in t.items()} for t in m["trees"]]`.
    Export {
        #[command(flatten)]
        m: ModelFlags,
        /// vN, N, production or staging (default: production).
        version: Option<String>,
        /// The JSON file to write (replaced atomically).
        #[arg(long, value_name = "FILE.json")]
        trees: PathBuf,
    },
    /// Check every checksum and that the model deserialises.
    Verify {
        #[command(flatten)]
        m: ModelFlags,
        /// vN (default: every version).
        version: Option<String>,
    },
}
