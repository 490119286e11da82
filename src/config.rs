//! Settings from a TOML file (`--config`), under command-line flags and `CHURNGUARD_*`
//! environment variables, over built-in defaults.

use crate::{Error, Result};
use serde::Deserialize;
use std::path::Path;

/// The config file. Every key is optional.
///
/// ```toml
/// data = "data/sample"
/// models = "models"
/// name = "churn"
/// [labels]
/// horizon_days = 30
/// active_days = 90
/// snapshot_days = 30
/// [features]
/// categorical = ["plan", "channel", "country"]
/// numeric = ["monthly_fee"]
/// [tiers]
/// high_share = 0.05
/// medium_share = 0.20
/// # high_threshold = 0.4
/// [serve]
/// bind = "127.0.0.1:8080"
/// alert_webhook = "https://crm.example.com/hooks/churn"
/// api_keys_file = "/etc/churnguard/keys"
/// [alerts]
/// tier = "high"
/// cooldown_days = 14
/// max_data_age_days = 3
/// min_population_ratio = 0.5
/// allow_stale = false
/// retry_initial_ms = 500
/// retry_max_seconds = 300
/// give_up_after_seconds = 86400
/// [gbdt]
/// rounds = 300
/// max_depth = 6
/// early_stopping_rounds = 30
/// [score]
/// metrics_textfile = "/var/lib/node_exporter/textfile/churnguard.prom"
/// ```
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    pub data: Option<String>,
    /// The memory a command may use for the customer base (`4GiB`, `800MiB`); a larger
    /// base is processed in customer buckets.
    pub memory_budget: Option<String>,
    /// Where the customer buckets are written (default: beside the output).
    pub work_dir: Option<String>,
    pub models: Option<String>,
    pub name: Option<String>,
    #[serde(default)]
    pub labels: LabelsSection,
    #[serde(default)]
    pub features: FeaturesSection,
    #[serde(default)]
    pub tiers: TiersSection,
    #[serde(default)]
    pub serve: ServeSection,
    #[serde(default)]
    pub alerts: AlertsSection,
    #[serde(default)]
    pub score: ScoreSection,
    #[serde(default)]
    pub gbdt: GbdtSection,
    #[serde(default)]
    pub history: HistorySection,
}

/// `[gbdt]`: the boosting's size, for a fixed tree count (benchmarks of a 300-tree
/// model, comparisons with other libraries at the same count); defaults in
/// `BoostParams::gbdt`.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct GbdtSection {
    /// Boosting rounds at most.
    pub rounds: Option<usize>,
    pub max_depth: Option<u32>,
    /// Rounds without improvement before stopping; 0 keeps every round.
    pub early_stopping_rounds: Option<usize>,
}

/// `[history]`: the score history (`score` writes it, `serve` and `history` read it).
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct HistorySection {
    /// The history directory (default: `history/` beside the score file).
    pub dir: Option<String>,
}

/// `[score]`: the nightly run's own options (its guards and alerts are under `[alerts]`).
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ScoreSection {
    /// `score` writes the nightly Prometheus series here, for node_exporter's textfile
    /// collector.
    pub metrics_textfile: Option<String>,
}

/// `[labels]`.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct LabelsSection {
    pub horizon_days: Option<u32>,
    pub active_days: Option<u32>,
    pub snapshot_days: Option<u32>,
    pub max_snapshots: Option<usize>,
}

/// `[features]`.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct FeaturesSection {
    pub categorical: Option<Vec<String>>,
    pub numeric: Option<Vec<String>>,
    pub top_levels: Option<usize>,
    pub top_event_types: Option<usize>,
}

/// `[tiers]`.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct TiersSection {
    pub high_share: Option<f64>,
    pub medium_share: Option<f64>,
    pub high_threshold: Option<f64>,
    pub medium_threshold: Option<f64>,
}

/// `[serve]`.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ServeSection {
    pub bind: Option<String>,
    pub alert_webhook: Option<String>,
    pub api_keys_file: Option<String>,
    pub scores: Option<String>,
    pub reload_seconds: Option<u64>,
    pub max_batch: Option<usize>,
    pub max_body_bytes: Option<usize>,
    /// Seconds a connection may take to send a request's headers, and may stay idle
    /// between requests (default 10).
    pub header_timeout_seconds: Option<u64>,
    /// Most connections open at once (default 1000).
    pub max_connections: Option<usize>,
}

/// `[alerts]`.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct AlertsSection {
    pub tier: Option<String>,
    pub cooldown_days: Option<u32>,
    pub outbox: Option<String>,
    /// Days a delivered or dead-lettered alert is kept (default 90; 0 keeps them all).
    pub retention_days: Option<u32>,
    pub log: Option<String>,
    /// Early-warning rules file (JSON) for `score` and `serve`.
    pub rules: Option<String>,
    /// `score` refuses a night when an activity table's data ends more than this many
    /// days before `--as-of` (default 3).
    pub max_data_age_days: Option<u32>,
    /// `score` refuses a night whose population is below this share of the previous
    /// night's (default 0.5; 0 turns the check off).
    pub min_population_ratio: Option<f64>,
    /// `score` warns instead of refusing when an input guard fails (default false).
    pub allow_stale: Option<bool>,
    /// Delay before the first retry of a failed alert delivery, in milliseconds; it
    /// doubles after each failure (default 500).
    pub retry_initial_ms: Option<u64>,
    /// Seconds a claimed delivery is reserved for the service that claimed it (default 120).
    pub lease_seconds: Option<u64>,
    /// Longest delay between two delivery attempts, in seconds (default 300).
    pub retry_max_seconds: Option<u64>,
    /// A delivery still failing this many seconds after its first attempt is
    /// dead-lettered (default 86400: a day).
    pub give_up_after_seconds: Option<u64>,
    /// Customer attributes copied into an alert's profile (default none).
    pub profile_attributes: Option<Vec<String>>,
    /// The attribute read as the plan in an alert's profile (default `plan`).
    pub plan_attribute: Option<String>,
    /// The attribute naming the account manager: an alert's `owner` (default none).
    pub owner_attribute: Option<String>,
    /// An alert's `due_at` is this many days after `raised_at` (default 3).
    pub due_days: Option<u32>,
}

impl FileConfig {
    /// Reads a config file; an unknown key is an error naming it.
    pub fn load(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
        toml::from_str(&text).map_err(|e| Error::Config(format!("{}: {e}", path.display())))
    }

    /// The file named by `path`, or the defaults when there is none.
    pub fn load_opt(path: Option<&Path>) -> Result<Self> {
        path.map_or_else(|| Ok(FileConfig::default()), FileConfig::load)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_documented_example_parses() {
        let text = r#"
data = "d"
[labels]
horizon_days = 60
[features]
categorical = ["plan"]
[tiers]
high_share = 0.1
[serve]
bind = "0.0.0.0:1"
[alerts]
cooldown_days = 3
max_data_age_days = 5
min_population_ratio = 0.25
allow_stale = true
"#;
        let c: FileConfig = toml::from_str(text).unwrap();
        assert_eq!(c.alerts.max_data_age_days, Some(5));
        assert_eq!(c.alerts.min_population_ratio, Some(0.25));
        assert_eq!(c.alerts.allow_stale, Some(true));
        assert_eq!(c.labels.horizon_days, Some(60));
        assert_eq!(c.features.categorical, Some(vec!["plan".to_string()]));
        assert_eq!(c.alerts.cooldown_days, Some(3));
    }

    #[test]
    fn an_unknown_key_is_refused() {
        assert!(toml::from_str::<FileConfig>("[labels]\nhorizon = 3\n").is_err());
    }
}
