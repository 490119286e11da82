//! The `churnguard` binary: parses arguments, sets up logging, calls the library.

use anyhow::{bail, Context, Result};
use churnguard::alerts::{AlertPolicy, Tier};
use churnguard::config::FileConfig;
use churnguard::data::{self, LoadOptions};
use churnguard::model::Algorithm;
use churnguard::registry::{Registry, Selector};
use churnguard::scoring::Scorer;
use churnguard::train::{TrainConfig, TrainingSet};
use churnguard::{batch, features, labels, scores, scoring, synth, time};
use clap::{Args, Parser, Subcommand};
use indicatif::{ProgressBar, ProgressStyle};
use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::time::Duration;

#[derive(Parser)]
#[command(
    name = "churnguard",
    version,
    about = "Churn prediction: point-in-time features, calibrated models, a scoring service and nightly batch scoring",
    long_about = "Churn prediction from a company's customer data.\n\nEvery option can also come from a TOML file (--config) and from CHURNGUARD_* environment variables; command-line flags win over the environment, which wins over the file."
)]
struct Cli {
    /// TOML configuration file (see README: Configuration).
    #[arg(long, global = true, env = "CHURNGUARD_CONFIG")]
    config: Option<PathBuf>,
    /// Log as JSON lines instead of text.
    #[arg(long, global = true, env = "CHURNGUARD_LOG_JSON")]
    log_json: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// The whole job on the embedded sample: generate, train, batch-score, serve.
    Demo(DemoArgs),
    /// Validate a customer base against the data contract and print its summary.
    Inspect(InspectArgs),
    /// Write a realistic synthetic customer base.
    Generate(GenerateArgs),
    /// Write the feature table of one snapshot, or the whole training set.
    Features(FeaturesArgs),
    /// Fit, evaluate and calibrate models; write a new model version.
    Train(TrainArgs),
    /// The model registry: list, show, promote, rollback, verify.
    Models(ModelsArgs),
    /// Nightly batch scoring of every active customer.
    Score(ScoreArgs),
    /// The HTTP scoring service.
    Serve(ServeArgs),
    /// How an earlier nightly run actually did, once its horizon has passed.
    Backtest(BacktestArgs),
    /// Retention KPIs, revenue at risk and early-warning rules as a self-contained HTML report.
    Retention(RetentionArgs),
}

#[derive(Args)]
struct RetentionArgs {
    #[command(flatten)]
    data: DataArg,
    /// HTML report to write (self-contained, opens offline).
    #[arg(long)]
    out: Option<PathBuf>,
    /// As of this date [default: the score file's date, else midnight after the last row].
    #[arg(long)]
    as_of: Option<String>,
    /// Nightly score file (`churnguard score --out`) for revenue at risk.
    #[arg(long)]
    scores: Option<PathBuf>,
    /// Print the KPIs as JSON on stdout.
    #[arg(long)]
    json: bool,
    /// Active window of the inactivity definition [default: 90].
    #[arg(long, env = "CHURNGUARD_ACTIVE_DAYS")]
    active_days: Option<u32>,
    #[command(flatten)]
    rules: RulesArg,
}

#[derive(Args)]
struct BacktestArgs {
    #[command(flatten)]
    data: DataArg,
    #[command(flatten)]
    models: ModelsArg,
    /// A score file written by `churnguard score`.
    #[arg(long)]
    scores: PathBuf,
    /// Print JSON.
    #[arg(long)]
    json: bool,
}

#[derive(Args, Clone)]
struct DataArg {
    /// Directory of the customer tables (CSV or Parquet) [default: data/sample].
    #[arg(long, env = "CHURNGUARD_DATA")]
    data: Option<PathBuf>,
    /// Count and skip unparseable rows instead of stopping at the first.
    #[arg(long, env = "CHURNGUARD_SKIP_BAD_ROWS")]
    skip_bad_rows: bool,
}

#[derive(Args, Clone)]
struct ModelsArg {
    /// Model registry directory [default: models].
    #[arg(long, env = "CHURNGUARD_MODELS")]
    models: Option<PathBuf>,
    /// Model name [default: churn].
    #[arg(long, env = "CHURNGUARD_NAME")]
    name: Option<String>,
}

#[derive(Args, Clone)]
struct WindowArgs {
    /// Label horizon in days: churn within [T, T+H) [default: 30].
    #[arg(long, env = "CHURNGUARD_HORIZON_DAYS")]
    horizon_days: Option<u32>,
    /// Active window for the inactivity definition of churn [default: 90].
    #[arg(long, env = "CHURNGUARD_ACTIVE_DAYS")]
    active_days: Option<u32>,
    /// Days between rolling training snapshots [default: 30].
    #[arg(long, env = "CHURNGUARD_SNAPSHOT_DAYS")]
    snapshot_days: Option<u32>,
    /// Categorical attributes of `customers` to one-hot encode (comma-separated).
    #[arg(long, env = "CHURNGUARD_CATEGORICAL", value_delimiter = ',')]
    categorical: Option<Vec<String>>,
    /// Numeric attributes of `customers` to use (comma-separated).
    #[arg(long, env = "CHURNGUARD_NUMERIC", value_delimiter = ',')]
    numeric: Option<Vec<String>>,
}

#[derive(Args)]
struct DemoArgs {
    #[command(flatten)]
    models: ModelsArg,
    /// Address to serve on (loopback only without API keys).
    #[arg(long, env = "CHURNGUARD_BIND", default_value = "127.0.0.1:8080")]
    bind: String,
    /// Stop after training and batch scoring instead of serving.
    #[arg(long)]
    no_serve: bool,
}

#[derive(Args)]
struct InspectArgs {
    #[command(flatten)]
    data: DataArg,
    /// Print the summary as JSON.
    #[arg(long)]
    json: bool,
}

#[derive(Args)]
struct GenerateArgs {
    /// Number of customers.
    #[arg(long, default_value_t = 20_000)]
    customers: usize,
    /// Random seed; the same seed writes the same data.
    #[arg(long, default_value_t = 42)]
    seed: u64,
    /// Output directory.
    #[arg(long)]
    out: PathBuf,
    /// parquet or csv.
    #[arg(long, default_value = "parquet")]
    format: String,
    /// First day of the simulated business (YYYY-MM-DD).
    #[arg(long, default_value = "2023-01-01")]
    start: String,
    /// Day the data ends (exclusive, YYYY-MM-DD).
    #[arg(long, default_value = "2025-01-01")]
    end: String,
}

#[derive(Args)]
struct FeaturesArgs {
    #[command(flatten)]
    data: DataArg,
    #[command(flatten)]
    windows: WindowArgs,
    /// The snapshot date: features of the customers active then (no label).
    #[arg(long, conflicts_with = "training_set")]
    as_of: Option<String>,
    /// Write every training snapshot with as_of, label and split, exactly as `train` uses them.
    #[arg(long)]
    training_set: bool,
    /// Use the schema of this registry's production model for `--as-of` (else it is learned from the snapshot).
    #[arg(long, env = "CHURNGUARD_MODELS")]
    models: Option<PathBuf>,
    /// Output file: .parquet or .csv.
    #[arg(long)]
    out: PathBuf,
}

#[derive(Args)]
struct TrainArgs {
    #[command(flatten)]
    data: DataArg,
    #[command(flatten)]
    models: ModelsArg,
    #[command(flatten)]
    windows: WindowArgs,
    /// Algorithms to compare (comma-separated): logistic, tree, forest, gbdt [default: all].
    #[arg(long, env = "CHURNGUARD_ALGORITHMS", value_delimiter = ',')]
    algorithms: Option<Vec<String>>,
    /// Make the new version `production` right away (else the first version is production and later ones staging).
    #[arg(long)]
    promote: bool,
}

#[derive(Args)]
struct ModelsArgs {
    #[command(subcommand)]
    action: ModelsAction,
}

#[derive(Subcommand)]
enum ModelsAction {
    /// List versions with algorithm, metrics and aliases.
    List(ModelsArg),
    /// Show one version's manifest (default: production).
    Show {
        #[command(flatten)]
        m: ModelsArg,
        /// vN, N, production or staging.
        version: Option<String>,
    },
    /// Point an alias (production by default) at a version.
    Promote {
        #[command(flatten)]
        m: ModelsArg,
        version: String,
        /// The alias to move: production or staging.
        #[arg(long, default_value = "production")]
        alias: String,
    },
    /// Move production back to the version it pointed to before.
    Rollback(ModelsArg),
    /// Check every checksum and that the model deserialises.
    Verify {
        #[command(flatten)]
        m: ModelsArg,
        /// vN (default: every version).
        version: Option<String>,
    },
}

#[derive(Args)]
struct ScoreArgs {
    #[command(flatten)]
    data: DataArg,
    #[command(flatten)]
    models: ModelsArg,
    /// Score as of this date (YYYY-MM-DD or RFC 3339).
    #[arg(long)]
    as_of: String,
    /// Score file: .parquet or .csv; a run summary is written beside it.
    #[arg(long)]
    out: PathBuf,
    /// Append alerts (customers newly reaching the alert tier) to this JSON-lines file.
    #[arg(long)]
    alerts: Option<PathBuf>,
    /// Score with this version instead of production (vN, N, staging).
    #[arg(long)]
    version: Option<String>,
    /// The alert state and outbox database [default: <models>/<name>/alerts.db].
    #[arg(long, env = "CHURNGUARD_OUTBOX")]
    outbox: Option<PathBuf>,
    /// Deliver alerts to this webhook too (signed with CHURNGUARD_WEBHOOK_SECRET).
    #[arg(long, env = "CHURNGUARD_ALERT_WEBHOOK")]
    alert_webhook: Option<String>,
    #[command(flatten)]
    rules: RulesArg,
}

#[derive(Args, Clone, Default)]
struct RulesArg {
    /// Early-warning rules (JSON list) evaluated beside the model instead of the
    /// built-in three; a rule with `"alert": true` raises alerts on its own.
    #[arg(long, env = "CHURNGUARD_RULES")]
    rules: Option<PathBuf>,
}

#[derive(Args)]
struct ServeArgs {
    #[command(flatten)]
    models: ModelsArg,
    /// Address to listen on [default: 127.0.0.1:8080].
    #[arg(long, env = "CHURNGUARD_BIND")]
    bind: Option<String>,
    /// Latest nightly score file, for GET /v1/customers/{id}/score.
    #[arg(long, env = "CHURNGUARD_SCORES")]
    scores: Option<PathBuf>,
    /// File with one API key per line (in addition to CHURNGUARD_API_KEYS).
    #[arg(long, env = "CHURNGUARD_API_KEYS_FILE")]
    api_keys_file: Option<PathBuf>,
    /// Webhook receiving alerts (signed with CHURNGUARD_WEBHOOK_SECRET).
    #[arg(long, env = "CHURNGUARD_ALERT_WEBHOOK")]
    alert_webhook: Option<String>,
    /// The alert state and outbox database [default: <models>/<name>/alerts.db].
    #[arg(long, env = "CHURNGUARD_OUTBOX")]
    outbox: Option<PathBuf>,
    #[command(flatten)]
    rules: RulesArg,
}

/// Settings resolved from flags, environment and the config file.
struct Resolved {
    file: FileConfig,
}

impl Resolved {
    /// The early-warning rules: `--rules` / CHURNGUARD_RULES, else `[alerts] rules` in the
    /// config file; `None` keeps the built-in ones.
    fn rules(&self, a: &RulesArg) -> Result<Option<Vec<churnguard::scoring::Rule>>> {
        let Some(path) = a
            .rules
            .clone()
            .or(self.file.alerts.rules.clone().map(PathBuf::from))
        else {
            return Ok(None);
        };
        let text = std::fs::read_to_string(&path)
            .with_context(|| format!("reading rules from {}", path.display()))?;
        let rules = churnguard::scoring::rules_from_json(&text)
            .with_context(|| format!("rules in {}", path.display()))?;
        Ok(Some(rules))
    }

    fn data(&self, a: &DataArg) -> PathBuf {
        a.data
            .clone()
            .or(self.file.data.clone().map(PathBuf::from))
            .unwrap_or_else(|| "data/sample".into())
    }
    fn models(&self, a: &ModelsArg) -> PathBuf {
        a.models
            .clone()
            .or(self.file.models.clone().map(PathBuf::from))
            .unwrap_or_else(|| "models".into())
    }
    fn name(&self, a: &ModelsArg) -> String {
        a.name
            .clone()
            .or(self.file.name.clone())
            .unwrap_or_else(|| "churn".into())
    }
    fn labels(&self, w: &WindowArgs) -> labels::LabelConfig {
        let f = &self.file.labels;
        let d = labels::LabelConfig::default();
        labels::LabelConfig {
            horizon_days: w.horizon_days.or(f.horizon_days).unwrap_or(d.horizon_days),
            active_days: w.active_days.or(f.active_days).unwrap_or(d.active_days),
            snapshot_days: w
                .snapshot_days
                .or(f.snapshot_days)
                .unwrap_or(d.snapshot_days),
            max_snapshots: f.max_snapshots.unwrap_or(d.max_snapshots),
            ..d
        }
    }
    fn attributes(&self, w: &WindowArgs) -> churnguard::features::AttributeConfig {
        let f = &self.file.features;
        churnguard::features::AttributeConfig {
            categorical: w
                .categorical
                .clone()
                .or(f.categorical.clone())
                .unwrap_or_default(),
            numeric: w.numeric.clone().or(f.numeric.clone()).unwrap_or_default(),
            top_levels: f.top_levels.unwrap_or(8),
            top_event_types: f.top_event_types.unwrap_or(8),
        }
    }
    fn policy(&self) -> Result<AlertPolicy> {
        let a = &self.file.alerts;
        let tier = match a.tier.as_deref() {
            None | Some("high") => Tier::High,
            Some("medium") => Tier::Medium,
            Some(other) => bail!("[alerts] tier `{other}` must be high or medium"),
        };
        Ok(AlertPolicy {
            alert_tier: tier,
            cooldown_days: a.cooldown_days.unwrap_or(14),
        })
    }
    fn outbox(&self, flag: &Option<PathBuf>, models: &Path, name: &str) -> PathBuf {
        flag.clone()
            .or(self.file.alerts.outbox.clone().map(PathBuf::from))
            .unwrap_or_else(|| models.join(name).join("alerts.db"))
    }
}

/// A spinner on a terminal, nothing otherwise.
fn spinner() -> Option<ProgressBar> {
    if !std::io::stderr().is_terminal() {
        return None;
    }
    let pb = ProgressBar::new_spinner();
    pb.set_style(
        ProgressStyle::with_template("{spinner} {elapsed:>4} {msg}").expect("static template"),
    );
    pb.enable_steady_tick(Duration::from_millis(120));
    Some(pb)
}

fn stage_fn(pb: &Option<ProgressBar>) -> impl Fn(&str) + '_ {
    move |m: &str| {
        if let Some(pb) = pb {
            pb.set_message(m.to_string());
        }
        tracing::info!(stage = m);
    }
}

fn load(data: &Path, skip: bool) -> Result<data::CustomerBase> {
    let pb = spinner();
    if let Some(pb) = &pb {
        pb.set_message(format!("loading {}", data.display()));
    }
    let base = data::load(
        data,
        &LoadOptions {
            skip_bad_rows: skip,
        },
    )
    .with_context(|| format!("loading the customer base in {}", data.display()))?;
    if let Some(pb) = pb {
        pb.finish_and_clear();
    }
    Ok(base)
}

fn main() {
    let cli = Cli::parse();
    // The long-running commands log what they do; one-shot commands print results instead.
    let service = matches!(cli.command, Command::Serve(_) | Command::Demo(_));
    init_logging(
        cli.log_json,
        if service {
            "warn,churnguard=info"
        } else {
            "warn"
        },
    );
    if let Err(e) = run(cli) {
        eprintln!("error: {e:#}");
        std::process::exit(1);
    }
}

fn init_logging(json: bool, default: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("CHURNGUARD_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    // Colour codes only for a person at a terminal, never into a log file or collector.
    let b = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr);
    if json {
        b.json().init();
    } else {
        b.compact().init();
    }
}

fn run(cli: Cli) -> Result<()> {
    let r = Resolved {
        file: FileConfig::load_opt(cli.config.as_deref())?,
    };
    match cli.command {
        Command::Inspect(a) => inspect(&r, a),
        Command::Generate(a) => generate(a),
        Command::Features(a) => features(&r, a),
        Command::Train(a) => train(&r, a).map(|_| ()),
        Command::Models(a) => models(&r, a.action),
        Command::Score(a) => score(&r, a),
        Command::Serve(a) => serve(&r, a, cli.log_json),
        Command::Demo(a) => demo(&r, a, cli.log_json),
        Command::Backtest(a) => backtest(&r, a),
        Command::Retention(a) => retention(&r, a),
    }
}

fn inspect(r: &Resolved, a: InspectArgs) -> Result<()> {
    let dir = r.data(&a.data);
    let base = load(&dir, a.data.skip_bad_rows)?;
    if a.json {
        println!("{}", serde_json::to_string_pretty(&base.summary)?);
    } else {
        print!("{}", base.summary);
        println!("valid: yes");
    }
    Ok(())
}

fn generate(a: GenerateArgs) -> Result<()> {
    let format = match a.format.as_str() {
        "parquet" => synth::SynthFormat::Parquet,
        "csv" => synth::SynthFormat::Csv,
        other => bail!("--format {other}: choose parquet or csv"),
    };
    let cfg = synth::SynthConfig {
        customers: a.customers,
        seed: a.seed,
        start: time::parse_as_of(&a.start)?,
        end: time::parse_as_of(&a.end)?,
        format,
    };
    generate_into(&cfg, &a.out)
}

fn generate_into(cfg: &synth::SynthConfig, out: &Path) -> Result<()> {
    let pb = if std::io::stderr().is_terminal() {
        let pb = ProgressBar::new(cfg.customers as u64);
        pb.set_style(
            ProgressStyle::with_template("{bar:40} {pos}/{len} customers {elapsed}")
                .expect("static template"),
        );
        Some(pb)
    } else {
        None
    };
    let report = synth::generate(cfg, out, &|done| {
        if let Some(pb) = &pb {
            pb.set_position(done as u64);
        }
    })
    .with_context(|| format!("generating into {}", out.display()))?;
    if let Some(pb) = pb {
        pb.finish_and_clear();
    }
    println!(
        "wrote {} (monthly churn rate {:.2}%)",
        out.display(),
        100.0 * report.monthly_churn_rate
    );
    for t in &report.tables {
        println!(
            "  {:<10} {:>12} rows {:>12} bytes",
            t.table, t.rows, t.bytes
        );
    }
    let base = load(out, false)?;
    print!("{}", base.summary);
    Ok(())
}

fn features(r: &Resolved, a: FeaturesArgs) -> Result<()> {
    let dir = r.data(&a.data);
    let base = load(&dir, a.data.skip_bad_rows)?;
    let attrs = r.attributes(&a.windows);
    if a.training_set {
        let set = TrainingSet::build(&base, &r.labels(&a.windows), &attrs)?;
        // Half a million rows a frame: the matrix is not held a second time as one frame.
        let chunks = churnguard::train::training_set_chunks(&base, &set, 500_000);
        let (rows, cols) = data::write::write_frames(&a.out, chunks)?;
        println!("wrote {} ({rows} rows, {cols} columns)", a.out.display());
        return Ok(());
    }
    let mut df = {
        let Some(as_of) = &a.as_of else {
            bail!("give --as-of DATE for one snapshot, or --training-set");
        };
        let t = time::parse_as_of(as_of)?;
        let (spec, def) = match &a.models {
            Some(m) => {
                let reg = Registry::new(m);
                let s = Scorer::from_loaded(reg.load(
                    &r.file.name.clone().unwrap_or_else(|| "churn".into()),
                    &Selector::Alias("production".into()),
                )?)?;
                (s.artifact.spec.clone(), s.artifact.definition)
            }
            None => {
                let def = churnguard::features::ChurnDefinition::for_tables(
                    base.present(),
                    r.labels(&a.windows).active_days,
                )?;
                let pop = churnguard::features::population(&base, &def, t);
                let rows: Vec<(u32, i64)> = pop.iter().map(|&c| (c, t)).collect();
                (
                    churnguard::features::FeatureSpec::learn(&base, &rows, &attrs)?,
                    def,
                )
            }
        };
        features::snapshot_frame(&base, &spec, &def, t)?
    };
    data::write::write_frame(&mut df, &a.out)?;
    println!(
        "wrote {} ({} rows, {} columns)",
        a.out.display(),
        df.height(),
        df.width()
    );
    Ok(())
}

fn train(r: &Resolved, a: TrainArgs) -> Result<churnguard::train::TrainOutcome> {
    let algorithms = match &a.algorithms {
        Some(list) => list
            .iter()
            .map(|s| s.parse())
            .collect::<churnguard::Result<Vec<Algorithm>>>()?,
        None => Algorithm::ALL.to_vec(),
    };
    let t = &r.file.tiers;
    let d = churnguard::train::TierPolicy::default();
    let cfg = TrainConfig {
        name: r.name(&a.models),
        labels: r.labels(&a.windows),
        algorithms,
        attributes: r.attributes(&a.windows),
        promote: a.promote,
        tiers: churnguard::train::TierPolicy {
            high_share: t.high_share.unwrap_or(d.high_share),
            medium_share: t.medium_share.unwrap_or(d.medium_share),
            high_threshold: t.high_threshold,
            medium_threshold: t.medium_threshold,
        },
        ..TrainConfig::default()
    };
    cfg.validate()?;
    let base = load(&r.data(&a.data), a.data.skip_bad_rows)?;
    print!("{}", base.summary);
    let registry = Registry::new(r.models(&a.models));
    let pb = spinner();
    let out = churnguard::train::run(&base, &registry, &cfg, &stage_fn(&pb))?;
    if let Some(pb) = pb {
        pb.finish_and_clear();
    }
    println!(
        "\n{:<10} {:>8} {:>8} {:>9} {:>8} {:>11} {:>7}",
        "algorithm", "ROC AUC", "PR AUC", "log loss", "Brier", "lift@10%", "fit s"
    );
    for c in &out.candidates {
        let v = &c.validation;
        println!(
            "{:<10} {:>8.4} {:>8.4} {:>9.4} {:>8.4} {:>11.2} {:>7.1}",
            c.algorithm.name(),
            v.roc_auc,
            v.pr_auc,
            c.calibrated_log_loss,
            c.calibrated_brier,
            v.top.get(1).map_or(f64::NAN, |t| t.lift),
            c.fit_seconds
        );
    }
    println!(
        "\nchampion: {} -> {} {} (aliases: {})",
        out.champion.name(),
        out.published.name,
        format_args!("v{}", out.published.version),
        if out.published.aliases_set.is_empty() {
            "none".to_string()
        } else {
            out.published.aliases_set.join(", ")
        }
    );
    println!(
        "calibrated validation: ROC AUC {:.4}, Brier {:.4}, log loss {:.4}",
        out.calibrated.roc_auc, out.calibrated.brier, out.calibrated.log_loss
    );
    println!("report: {}", out.report_path.display());
    for w in &out.warnings {
        println!("warning: {w}");
    }
    Ok(out)
}

fn models(r: &Resolved, action: ModelsAction) -> Result<()> {
    let open = |m: &ModelsArg| (Registry::new(r.models(m)), r.name(m));
    match action {
        ModelsAction::List(m) => {
            let (reg, name) = open(&m);
            let versions = reg.versions(&name)?;
            if versions.is_empty() {
                println!("no versions of `{name}` in {}", reg.root().display());
            }
            println!(
                "{:<6} {:<22} {:<10} {:>8} {:>8}  aliases",
                "version", "created", "algorithm", "ROC AUC", "PR AUC"
            );
            for v in versions {
                let m = &v.manifest;
                println!(
                    "v{:<5} {:<22} {:<10} {:>8.4} {:>8.4}  {}",
                    v.version,
                    v.created_at,
                    m["algorithm"].as_str().unwrap_or("?"),
                    m.pointer("/metrics/validation_roc_auc")
                        .and_then(|x| x.as_f64())
                        .unwrap_or(f64::NAN),
                    m.pointer("/metrics/validation_pr_auc")
                        .and_then(|x| x.as_f64())
                        .unwrap_or(f64::NAN),
                    v.aliases.join(", ")
                );
            }
        }
        ModelsAction::Show { m, version } => {
            let (reg, name) = open(&m);
            let sel: Selector = version.as_deref().unwrap_or("production").parse()?;
            let v = reg.resolve(&name, &sel)?;
            let info = reg
                .versions(&name)?
                .into_iter()
                .find(|i| i.version == v)
                .context("version vanished")?;
            println!("{}", serde_json::to_string_pretty(&info.manifest)?);
        }
        ModelsAction::Promote { m, version, alias } => {
            let (reg, name) = open(&m);
            let v = reg.resolve(&name, &version.parse()?)?;
            let prev = reg.promote(&name, v, &alias)?;
            println!(
                "{name}: {alias} -> v{v} (was {})",
                prev.map_or("unset".into(), |p| format!("v{p}"))
            );
        }
        ModelsAction::Rollback(m) => {
            let (reg, name) = open(&m);
            let v = reg.rollback(&name)?;
            println!("{name}: production -> v{v}");
        }
        ModelsAction::Verify { m, version } => {
            let (reg, name) = open(&m);
            let versions: Vec<u32> = match version {
                Some(v) => vec![reg.resolve(&name, &v.parse()?)?],
                None => reg
                    .versions(&name)?
                    .into_iter()
                    .map(|i| i.version)
                    .collect(),
            };
            let mut bad = 0;
            for v in versions {
                let result = reg
                    .verify(&name, v)
                    .and_then(|_| reg.load(&name, &Selector::Version(v)))
                    .and_then(Scorer::from_loaded);
                match result {
                    Ok(_) => println!("v{v}: ok"),
                    Err(e) => {
                        bad += 1;
                        println!("v{v}: FAILED: {e}");
                    }
                }
            }
            if bad > 0 {
                bail!("{bad} version(s) failed verification");
            }
        }
    }
    Ok(())
}

fn load_scorer(reg: &Registry, name: &str, version: Option<&str>) -> Result<Scorer> {
    let sel: Selector = version.unwrap_or("production").parse()?;
    let loaded = reg.load(name, &sel).with_context(|| {
        format!(
            "loading model `{name}` ({})",
            version.unwrap_or("production")
        )
    })?;
    Ok(Scorer::from_loaded(loaded)?)
}

fn score(r: &Resolved, a: ScoreArgs) -> Result<()> {
    let as_of = time::parse_as_of(&a.as_of)?;
    let models = r.models(&a.models);
    let name = r.name(&a.models);
    let reg = Registry::new(&models);
    let mut scorer = load_scorer(&reg, &name, a.version.as_deref())?;
    if let Some(rules) = r.rules(&a.rules)? {
        scorer.rules = rules;
    }
    for rule in churnguard::scoring::rules_without_feature(&scorer.rules, &scorer.artifact.spec) {
        println!(
            "note: rule `{}` reads `{}`, which this model does not have: it never fires",
            rule.name(),
            rule.feature()
        );
    }
    let base = load(&r.data(&a.data), a.data.skip_bad_rows)?;
    let webhook = a
        .alert_webhook
        .or(r.file.serve.alert_webhook.clone())
        .map(|u| {
            (
                u,
                std::env::var("CHURNGUARD_WEBHOOK_SECRET").unwrap_or_default(),
            )
        });
    let opts = batch::BatchOptions {
        as_of,
        out: a.out.clone(),
        alerts_log: a.alerts.or(r.file.alerts.log.clone().map(PathBuf::from)),
        outbox: r.outbox(&a.outbox, &models, &name),
        policy: r.policy()?,
        webhook,
    };
    let pb = spinner();
    let s = batch::run(&base, &scorer, &opts, &stage_fn(&pb))?;
    if let Some(pb) = pb {
        pb.finish_and_clear();
    }
    println!(
        "scored {} customers as of {} with {} -> {}",
        s.customers_scored, s.as_of, s.model, s.output
    );
    for t in ["high", "medium", "low"] {
        println!(
            "  {t:<7} {:>9} ({:+})",
            s.tiers.get(t).unwrap_or(&0),
            s.tier_change.get(t).unwrap_or(&0)
        );
    }
    println!(
        "  alerts: {} raised, {} new, {} delivered",
        s.alerts_raised, s.alerts_new, s.alerts_delivered
    );
    println!("  score PSI vs training: {:.3}", s.score_psi);
    for w in &s.drift_warnings {
        println!("  drift: {w}");
    }
    let total: f64 = s.seconds.values().sum();
    println!(
        "  wall time {total:.2}s; summary: {}",
        batch::summary_path(&a.out).display()
    );
    // The line a scheduler's log watcher keys on (always printed, whatever the log level).
    eprintln!(
        "batch_done as_of={} customers={} high={} alerts_new={}",
        s.as_of,
        s.customers_scored,
        s.tiers.get("high").copied().unwrap_or(0),
        s.alerts_new
    );
    Ok(())
}

fn retention(r: &Resolved, a: RetentionArgs) -> Result<()> {
    use churnguard::retention as ret;
    if a.out.is_none() && !a.json {
        bail!("give --out FILE.html, --json, or both");
    }
    let base = load(&r.data(&a.data), a.data.skip_bad_rows)?;
    let scores = a
        .scores
        .as_deref()
        .map(scores::read)
        .transpose()
        .context("reading --scores")?;
    let as_of = match &a.as_of {
        Some(s) => time::parse_as_of(s)?,
        None => ret::default_as_of(&base, scores.as_ref())
            .context("no timestamps in the data; give --as-of")?,
    };
    let mut opts = ret::RetentionOptions::default();
    if let Some(d) = a.active_days.or(r.file.labels.active_days) {
        opts.active_days = d;
    }
    if let Some(rules) = r.rules(&a.rules)? {
        opts.rules = rules;
    }
    let k = ret::kpis_with(&base, as_of, scores.as_ref(), &opts)?;
    if let Some(out) = &a.out {
        ret::save_report(&k, out)?;
        eprintln!(
            "wrote {} (as of {}, {} active, monthly churn {:.2}% over the last 12 months)",
            out.display(),
            &k.as_of[..10.min(k.as_of.len())],
            k.active_now,
            100.0 * k.churn_rate_last_12_months.unwrap_or(f64::NAN)
        );
    }
    if a.json {
        println!("{}", serde_json::to_string_pretty(&k)?);
    }
    Ok(())
}

fn backtest(r: &Resolved, a: BacktestArgs) -> Result<()> {
    let scores = scores::read(&a.scores)?;
    let first = scores.values().next().context("the score file is empty")?;
    let reg = Registry::new(r.models(&a.models));
    let scorer = load_scorer(&reg, &first.model.name, Some(&first.model.version))?;
    let base = load(&r.data(&a.data), a.data.skip_bad_rows)?;
    let b = churnguard::backtest::backtest(
        &base,
        &scores,
        &scorer.artifact.definition,
        scorer.artifact.horizon_days,
    )?;
    if a.json {
        println!("{}", serde_json::to_string_pretty(&b)?);
        return Ok(());
    }
    println!(
        "run of {} ({}), {} customers, {} churned within {} days: realised ROC AUC {:.4}, PR AUC {:.4}",
        b.as_of, b.model, b.customers, b.churned, b.horizon_days, b.roc_auc, b.pr_auc
    );
    for t in &b.tiers {
        println!(
            "  {:<7} {:>8} customers {:>6} churned  churn rate {:>6.1}%  recall (this tier and above) {:>6.1}%",
            t.tier, t.customers, t.churned, 100.0 * t.churn_rate, 100.0 * t.cumulative_recall
        );
    }
    Ok(())
}

/// Service settings from flags, environment and the config file.
fn serve_config(
    r: &Resolved,
    a: ServeArgs,
    log_json: bool,
) -> Result<churnguard::serve::ServeConfig> {
    let f = &r.file.serve;
    let models = r.models(&a.models);
    let name = r.name(&a.models);
    let d = churnguard::serve::ServeConfig::default();
    let bind = a
        .bind
        .or(f.bind.clone())
        .unwrap_or_else(|| "127.0.0.1:8080".into());
    let bind = bind
        .parse()
        .with_context(|| format!("--bind `{bind}` is not an address like 127.0.0.1:8080"))?;
    let mut api_keys: Vec<String> = std::env::var("CHURNGUARD_API_KEYS")
        .unwrap_or_default()
        .split(',')
        .map(|k| k.trim().to_string())
        .filter(|k| !k.is_empty())
        .collect();
    if let Some(file) = a
        .api_keys_file
        .or(f.api_keys_file.clone().map(PathBuf::from))
    {
        let text = std::fs::read_to_string(&file)
            .with_context(|| format!("reading API keys from {}", file.display()))?;
        api_keys.extend(
            text.lines()
                .map(str::trim)
                .filter(|l| !l.is_empty() && !l.starts_with('#'))
                .map(String::from),
        );
    }
    let webhook = match a.alert_webhook.or(f.alert_webhook.clone()) {
        None => None,
        Some(url) => {
            let secret = std::env::var("CHURNGUARD_WEBHOOK_SECRET").unwrap_or_default();
            if secret.is_empty() {
                bail!("--alert-webhook needs CHURNGUARD_WEBHOOK_SECRET: alerts are signed so the receiver can trust them");
            }
            Some((url, secret))
        }
    };
    Ok(churnguard::serve::ServeConfig {
        outbox: r.outbox(&a.outbox, &models, &name),
        models,
        name,
        bind,
        api_keys,
        admin_key: std::env::var("CHURNGUARD_ADMIN_KEY")
            .ok()
            .filter(|k| !k.is_empty()),
        scores: a.scores.or(f.scores.clone().map(PathBuf::from)),
        alert_log: r.file.alerts.log.clone().map(PathBuf::from),
        webhook,
        policy: r.policy()?,
        reload_interval: f
            .reload_seconds
            .map_or(d.reload_interval, Duration::from_secs),
        max_batch: f.max_batch.unwrap_or(d.max_batch),
        max_body_bytes: f.max_body_bytes.unwrap_or(d.max_body_bytes),
        log_json,
        rules: r.rules(&a.rules)?,
        ..d
    })
}

fn serve(r: &Resolved, a: ServeArgs, log_json: bool) -> Result<()> {
    run_service(serve_config(r, a, log_json)?)
}

fn run_service(cfg: churnguard::serve::ServeConfig) -> Result<()> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    rt.block_on(churnguard::serve::serve(cfg))?;
    Ok(())
}

fn demo(r: &Resolved, a: DemoArgs, log_json: bool) -> Result<()> {
    let data = PathBuf::from("data/sample");
    if !data.join("customers.parquet").exists() {
        println!(
            "generating the sample customer base into {} ...",
            data.display()
        );
        generate_into(&synth::SynthConfig::sample(), &data)?;
    }
    let models = r.models(&a.models);
    let name = r.name(&a.models);
    let reg = Registry::new(&models);
    if reg
        .resolve(&name, &Selector::Alias("production".into()))
        .is_err()
    {
        println!("training `{name}` on the sample ...");
        train(
            r,
            TrainArgs {
                data: DataArg {
                    data: Some(data.clone()),
                    skip_bad_rows: false,
                },
                models: a.models.clone(),
                windows: WindowArgs {
                    horizon_days: None,
                    active_days: None,
                    snapshot_days: None,
                    categorical: Some(vec!["plan".into(), "channel".into(), "country".into()]),
                    numeric: Some(vec!["monthly_fee".into()]),
                },
                algorithms: None,
                promote: false,
            },
        )?;
    }
    let base = load(&data, false)?;
    let as_of = base
        .data_end()
        .context("the sample has no timestamps")?
        .div_euclid(time::DAY)
        * time::DAY;
    let out = PathBuf::from("data/scores/latest.parquet");
    score(
        r,
        ScoreArgs {
            data: DataArg {
                data: Some(data),
                skip_bad_rows: false,
            },
            models: a.models.clone(),
            as_of: time::fmt_date(as_of),
            out,
            alerts: Some(PathBuf::from("data/scores/alerts.jsonl")),
            version: None,
            outbox: None,
            alert_webhook: None,
            rules: RulesArg::default(),
        },
    )?;
    if a.no_serve {
        return Ok(());
    }
    // A fresh key, and a ready-to-paste request for the riskiest customer of the night.
    let key = format!("cg_{}", uuid::Uuid::new_v4().simple());
    let scorer = load_scorer(&reg, &name, None)?;
    let (pop, x) = features::snapshot_features(
        &base,
        &scorer.artifact.spec,
        &scorer.artifact.definition,
        as_of,
    );
    let w = scorer.artifact.spec.len();
    let probs = scoring::probabilities(&scorer, &x);
    let best = (0..pop.len())
        .max_by(|&i, &j| probs[i].total_cmp(&probs[j]))
        .context("nobody is active in the sample")?;
    let id = base.customers.ids[pop[best] as usize].clone();
    let features: serde_json::Map<String, serde_json::Value> = scorer
        .feature_names()
        .iter()
        .zip(&x[best * w..(best + 1) * w])
        .map(|(n, v)| {
            (
                n.to_string(),
                if v.is_finite() {
                    serde_json::json!(v)
                } else {
                    serde_json::Value::Null
                },
            )
        })
        .collect();
    let request = PathBuf::from("data/scores/example_request.json");
    std::fs::write(
        &request,
        serde_json::to_vec_pretty(&serde_json::json!({"customer_id": id, "features": features}))?,
    )?;
    println!("\nAPI key for this demo: {key}");
    println!("score a customer:   curl -s -H 'Authorization: Bearer {key}' -H 'Content-Type: application/json' -d @{} http://{}/v1/score", request.display(), a.bind);
    println!("last night's score: curl -s -H 'Authorization: Bearer {key}' http://{}/v1/customers/{id}/score", a.bind);
    println!("metrics:            curl -s http://{}/metrics\n", a.bind);
    let mut cfg = serve_config(
        r,
        ServeArgs {
            models: a.models,
            bind: Some(a.bind),
            scores: Some(PathBuf::from("data/scores/latest.parquet")),
            api_keys_file: None,
            alert_webhook: None,
            outbox: None,
            rules: RulesArg::default(),
        },
        log_json,
    )?;
    // Handed over directly: setting the environment with threads running is unsound.
    cfg.api_keys.push(key);
    run_service(cfg)
}
