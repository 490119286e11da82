//! The `churnguard` binary: parses arguments, sets up logging, calls the library, prints.
//!
//! Settings are layered by [`churnguard::settings`] (defaults, file, environment, flags);
//! the per-command flag groups are defined there too, so this file only wires them.

use anyhow::{bail, Context, Result};
use churnguard::demo::Demo;
use churnguard::registry::{Registry, Selector};
use churnguard::scoring::Scorer;
use churnguard::settings::{
    AlertsAction, AlertsCommand, AlertsSettings, BacktestFlags, BacktestSettings, DataSource,
    DemoFlags, Env, FeaturesFlags, GenerateFlags, HistoryFlags, HistorySettings, InspectFlags,
    ModelFlags, ModelsAction, RetentionFlags, RetentionSettings, ScoreFlags, ScoreSettings,
    ServeFlags, Settings, TrainFlags, TrainSettings,
};
use churnguard::{batch, data, logging, scores, synth};
use clap::{Parser, Subcommand};
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
    Demo(DemoFlags),
    /// Validate a customer base against the data contract and print its summary.
    Inspect(InspectFlags),
    /// Write a realistic synthetic customer base.
    Generate(GenerateFlags),
    /// Write the feature table of one snapshot, or the whole training set.
    Features(FeaturesFlags),
    /// Fit, evaluate and calibrate models; write a new model version.
    Train(TrainFlags),
    /// The model registry: list, show, promote, rollback, verify.
    Models {
        #[command(subcommand)]
        action: ModelsAction,
    },
    /// Nightly batch scoring of every active customer.
    Score(ScoreFlags),
    /// A night's alerts from a score table (--scores), or the alert outbox: redrive, prune.
    Alerts(AlertsCommand),
    /// The HTTP scoring service.
    Serve(ServeFlags),
    /// How an earlier nightly run actually did, once its horizon has passed.
    Backtest(BacktestFlags),
    /// Retention KPIs, revenue at risk and early-warning rules as a self-contained HTML report.
    Retention(RetentionFlags),
    /// A customer's nightly probabilities and tiers from the score history.
    History(HistoryFlags),
}

/// `history`: one line per night (date, probability, tier), or the JSON of the API.
fn history(s: HistorySettings) -> Result<()> {
    let h = churnguard::history::History::new(&s.dir);
    let series = h
        .series(&s.customer, s.days)
        .with_context(|| format!("reading the score history in {}", s.dir.display()))?;
    if series.points.is_empty() {
        anyhow::bail!(
            "no score for customer `{}` in the last {} days of the history in {}",
            s.customer,
            s.days,
            s.dir.display()
        );
    }
    if s.json {
        println!("{}", serde_json::to_string_pretty(&series)?);
        return Ok(());
    }
    println!("as_of       churn_probability  risk_tier");
    for p in &series.points {
        println!(
            "{:<10}  {:>17.4}  {}",
            p.as_of.get(..10).unwrap_or(&p.as_of),
            p.churn_probability,
            p.risk_tier
        );
    }
    Ok(())
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

/// Checks the base of `src` as [`load`] does, keeping only its summary (bounded memory).
fn summarize(src: &DataSource) -> Result<data::Summary> {
    with_spinner(src, "checking", data::summarize)
}

/// A base loaded whole, or split into customer buckets.
enum Based {
    Whole(Box<data::CustomerBase>),
    Split(data::buckets::Split),
}

/// Checks the base in `src` as a load does (the same errors, naming its own files and
/// rows), then splits it into `buckets` under `work_dir`.
fn split(
    src: &DataSource,
    buckets: u32,
    work_dir: &std::path::Path,
) -> Result<data::buckets::Split> {
    let pb = spinner();
    if let Some(pb) = &pb {
        pb.set_message(format!("checking {}", src.dir.display()));
    }
    let opts = data::LoadOptions {
        skip_bad_rows: src.skip_bad_rows,
        ..data::LoadOptions::default()
    };
    data::summarize(&src.dir, &opts)
        .with_context(|| format!("loading the customer base in {}", src.dir.display()))?;
    if let Some(pb) = &pb {
        pb.set_message(format!(
            "splitting {} into {buckets} buckets",
            src.dir.display()
        ));
    }
    let split = data::buckets::split(&src.dir, buckets, work_dir).with_context(|| {
        format!(
            "splitting the customer base in {} into buckets under {}",
            src.dir.display(),
            work_dir.display()
        )
    })?;
    if let Some(pb) = pb {
        pb.finish_and_clear();
    }
    Ok(split)
}

fn load(src: &DataSource) -> Result<data::CustomerBase> {
    with_spinner(src, "loading", data::load)
}

/// `read(dir, options)` of `src`'s tables behind a spinner saying `verb DIR`.
fn with_spinner<T>(
    src: &DataSource,
    verb: &str,
    read: impl FnOnce(&std::path::Path, &data::LoadOptions) -> churnguard::Result<T>,
) -> Result<T> {
    let pb = spinner();
    if let Some(pb) = &pb {
        pb.set_message(format!("{verb} {}", src.dir.display()));
    }
    let opts = data::LoadOptions {
        skip_bad_rows: src.skip_bad_rows,
        ..data::LoadOptions::default()
    };
    let out = read(&src.dir, &opts)
        .with_context(|| format!("loading the customer base in {}", src.dir.display()))?;
    if let Some(pb) = pb {
        pb.finish_and_clear();
    }
    Ok(out)
}

/// Exit status of a command that failed while running (see README: Exit codes).
const EXIT_FAILED: i32 = 1;
/// Exit status of a command line that does not parse (clap's convention).
const EXIT_USAGE: i32 = 2;

fn main() {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => usage_error(e),
    };
    let long_running = matches!(cli.command, Command::Serve(_) | Command::Demo { .. });
    logging::init(cli.log_json, logging::default_filter(long_running));
    if let Err(e) = run(cli) {
        logging::always(tracing::Level::ERROR, &format!("error: {e:#}"), &[]);
        std::process::exit(exit_code(&e));
    }
}

/// Exit status when a nightly run refused its input (stale data, an `--as-of` outside
/// the data, an empty or collapsed population), so that a scheduler can tell "the data
/// is not ready" from a failure ([`EXIT_FAILED`]).
const EXIT_REFUSED: i32 = 3;

fn exit_code(e: &anyhow::Error) -> i32 {
    match e.downcast_ref::<churnguard::Error>() {
        Some(churnguard::Error::Refused { .. }) => EXIT_REFUSED,
        _ => EXIT_FAILED,
    }
}

/// `--help` and `--version` print and exit 0; a command line that does not parse exits
/// [`EXIT_USAGE`], its message as a JSON line when JSON logs were asked for (the
/// arguments did not parse, so the flag is looked for directly).
fn usage_error(e: clap::Error) -> ! {
    let json = std::env::args_os().any(|a| a == "--log-json")
        || std::env::var("CHURNGUARD_LOG_JSON").is_ok_and(|v| v == "true");
    if !e.use_stderr() || !json {
        e.exit();
    }
    logging::init(true, logging::default_filter(false));
    let message = e.render().to_string();
    logging::always(tracing::Level::ERROR, message.trim_end(), &[]);
    std::process::exit(EXIT_USAGE);
}

fn run(cli: Cli) -> Result<()> {
    let s = Settings::load(cli.config.as_deref(), Env::from_process())?;
    match cli.command {
        Command::Inspect(a) => inspect(&s.data(&a.data), a.json),
        Command::Generate(a) => generate_into(&a.config()?, &a.out),
        Command::Features(a) => {
            let fs = s.features(&a)?;
            let (rows, cols) = churnguard::export::write(&load(&fs.data)?, &fs)?;
            println!("wrote {} ({rows} rows, {cols} columns)", fs.out.display());
            Ok(())
        }
        Command::Train(a) => train(s.train(&a)?),
        Command::Models { action } => models(&s, action),
        Command::Score(a) => score(s.score(&a)?),
        Command::Alerts(a) => match a.action {
            Some(action) => alerts(&s, action),
            None => alerts_from_scores(s.alerts(&a.scores)?),
        },
        Command::Serve(a) => run_service(s.serve(&a)?),
        Command::Demo(a) => demo(&s, Demo::new(&s, &a), a.no_serve),
        Command::Backtest(a) => backtest(s.backtest(&a)),
        Command::Retention(a) => retention(s.retention(&a)?),
        Command::History(a) => history(s.history(&a)?),
    }
}

fn inspect(src: &DataSource, json: bool) -> Result<()> {
    let summary = summarize(src)?;
    if json {
        println!("{}", serde_json::to_string_pretty(&summary)?);
    } else {
        print!("{summary}");
        println!("valid: yes");
    }
    Ok(())
}

fn generate_into(cfg: &synth::SynthConfig, out: &Path) -> Result<()> {
    let pb = std::io::stderr().is_terminal().then(|| {
        let pb = ProgressBar::new(cfg.customers as u64);
        let style = ProgressStyle::with_template("{bar:40} {pos}/{len} customers {elapsed}");
        pb.set_style(style.expect("static template"));
        pb
    });
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
    let summary = summarize(&DataSource {
        dir: out.to_path_buf(),
        skip_bad_rows: false,
    })?;
    print!("{summary}");
    Ok(())
}

fn train(t: TrainSettings) -> Result<()> {
    let base = load(&t.data)?;
    print!("{}", base.summary);
    let registry = Registry::new(&t.models);
    let pb = spinner();
    let out = churnguard::train::run(&base, &registry, &t.config, &stage_fn(&pb))?;
    if let Some(pb) = pb {
        pb.finish_and_clear();
    }
    print!("{out}");
    Ok(())
}

fn models(s: &Settings, action: ModelsAction) -> Result<()> {
    let open = |m: &ModelFlags| {
        let m = s.model(m);
        (Registry::new(m.models), m.name)
    };
    match action {
        ModelsAction::List(m) => {
            let (reg, name) = open(&m);
            let versions = reg.versions_each(&name)?;
            if versions.is_empty() {
                println!("no versions of `{name}` in {}", reg.root().display());
            }
            println!(
                "{:<6} {:<22} {:<10} {:>8} {:>8}  aliases",
                "version", "created", "algorithm", "ROC AUC", "PR AUC"
            );
            let mut unreadable = 0;
            for (version, info) in versions {
                // A version whose manifest cannot be read is reported, and the list goes on.
                let v = match info {
                    Ok(v) => v,
                    Err(e) => {
                        unreadable += 1;
                        println!("v{version:<5} UNREADABLE: {}", e.chain());
                        continue;
                    }
                };
                let m = &v.manifest;
                println!(
                    "v{:<5} {:<22} {:<10} {:>8.4} {:>8.4}  {}",
                    v.version,
                    v.created_at,
                    if m.algorithm.is_empty() {
                        "?"
                    } else {
                        &m.algorithm
                    },
                    m.metrics.validation_roc_auc.unwrap_or(f64::NAN),
                    m.metrics.validation_pr_auc.unwrap_or(f64::NAN),
                    v.aliases.join(", ")
                );
            }
            if unreadable > 0 {
                eprintln!(
                    "warning: {unreadable} version(s) with an unreadable manifest (see `models verify`)"
                );
            }
        }
        ModelsAction::Show { m, version } => {
            let (reg, name) = open(&m);
            let sel: Selector = version.as_deref().unwrap_or("production").parse()?;
            let v = reg.resolve(&name, &sel)?;
            let info = reg.versions(&name)?.into_iter().find(|i| i.version == v);
            let info = info.context("version vanished")?;
            println!(
                "{}",
                serde_json::to_string_pretty(&info.manifest.to_json()?)?
            );
        }
        ModelsAction::Promote { m, version, alias } => {
            let (reg, name) = open(&m);
            let v = reg.resolve(&name, &version.parse()?)?;
            let prev = reg.promote(&name, v, &alias)?;
            let was = prev.map_or("unset".into(), |p| format!("v{p}"));
            println!("{name}: {alias} -> v{v} (was {was})");
        }
        ModelsAction::Rollback(m) => {
            let (reg, name) = open(&m);
            let v = reg.rollback(&name)?;
            println!("{name}: production -> v{v}");
        }
        ModelsAction::Export { m, version, trees } => {
            let (reg, name) = open(&m);
            let sel: Selector = version.as_deref().unwrap_or("production").parse()?;
            let scorer = Scorer::load(&reg, &name, &sel)?;
            let export = scorer.shap_export()?;
            let json = serde_json::to_vec(&export)?;
            churnguard::fsutil::write_atomic(&trees, &json)
                .with_context(|| format!("cannot write {}", trees.display()))?;
            println!(
                "{name} {}: {} trees, base_offset {} -> {}",
                scorer.version,
                export.trees.len(),
                export.base_offset,
                trees.display()
            );
        }
        ModelsAction::Verify { m, version } => {
            let (reg, name) = open(&m);
            let versions: Vec<u32> = match version {
                Some(v) => vec![reg.resolve(&name, &v.parse()?)?],
                // Every version on disk, its manifest readable or not: each is verified
                // (and a broken one reported) in turn.
                None => reg
                    .versions_each(&name)?
                    .into_iter()
                    .map(|(v, _)| v)
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
                        println!("v{v}: FAILED: {}", e.chain());
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

fn alerts(s: &Settings, action: AlertsAction) -> Result<()> {
    match action {
        AlertsAction::Redrive(f) => {
            let (path, keys) = s.redrive(&f);
            if !is_postgres(&path) && !path.exists() {
                bail!("no outbox at {}: nothing to redrive", path.display());
            }
            let outbox = churnguard::alerts::Outbox::open(&path)?;
            let r = outbox.redrive(keys.as_deref())?;
            for key in &r.not_dead {
                println!("{key}: not dead-lettered, left as it is");
            }
            println!(
                "redrove {} dead-lettered alert(s) in {}: the next serve or score delivers them",
                r.redriven,
                outbox.path().display()
            );
        }
        AlertsAction::Prune(f) => {
            let (path, days) = s.prune(&f)?;
            if days == 0 {
                println!("retention is 0 days (keep every alert): nothing pruned");
                return Ok(());
            }
            if !is_postgres(&path) && !path.exists() {
                bail!("no outbox at {}: nothing to prune", path.display());
            }
            let size = || std::fs::metadata(&path).map(|m| m.len()).ok();
            let before = size();
            let outbox = churnguard::alerts::Outbox::open(&path)?;
            let p = outbox.prune(retention_cutoff(days))?;
            print!(
                "pruned {} finished alert(s) and {} delivery row(s) older than {days} days from {}",
                p.alerts,
                p.deliveries,
                outbox.path().display()
            );
            match (before, size()) {
                (Some(b), Some(a)) => println!(" ({b} -> {a} bytes)"),
                _ => println!(),
            }
        }
    }
    Ok(())
}

/// `alerts --scores`: the alert stage of `score` over a score table written elsewhere.
fn alerts_from_scores(a: AlertsSettings) -> Result<()> {
    let df = scores::read_table(&a.scores)
        .with_context(|| format!("reading --scores {}", a.scores.display()))?;
    let base = a
        .data
        .map(|dir| {
            load(&DataSource {
                dir,
                skip_bad_rows: false,
            })
        })
        .transpose()?;
    let registry = Registry::new(&a.models);
    let r = batch::alerts_from_scores(&df, &a.scores, &registry, base.as_ref(), &a.options)?;
    println!(
        "alerts for {} customers as of {} scored by {} ({}): {} raised, {} new, {} delivered",
        r.customers,
        r.as_of,
        r.model,
        a.scores.display(),
        r.alerts_raised,
        r.alerts_new,
        r.alerts_delivered
    );
    println!("  outbox: {}", r.outbox);
    Ok(())
}

fn is_postgres(target: &Path) -> bool {
    target
        .to_str()
        .is_some_and(churnguard::alerts::outbox::is_postgres_url)
}

/// The instant before which finished alerts go, `days` before now.
fn retention_cutoff(days: u32) -> i64 {
    chrono::Utc::now().timestamp() - i64::from(days) * churnguard::time::DAY
}

fn load_scorer(reg: &Registry, name: &str, version: Option<&str>) -> Result<Scorer> {
    let shown = version.unwrap_or("production");
    Scorer::load(reg, name, &shown.parse()?)
        .with_context(|| format!("loading model `{name}` ({shown})"))
}

fn score(s: ScoreSettings) -> Result<()> {
    let reg = Registry::new(&s.model.models);
    let mut scorer = load_scorer(&reg, &s.model.name, s.version.as_deref())?;
    if let Some(rules) = s.rules {
        scorer.rules = rules;
    }
    for rule in churnguard::scoring::rules_without_feature(&scorer.rules, &scorer.artifact.spec) {
        println!(
            "note: rule `{}` reads `{}`, which this model does not have: it never fires",
            rule.name(),
            rule.feature()
        );
    }
    let loading = std::time::Instant::now();
    let estimate = data::buckets::estimate(&s.data.dir)
        .with_context(|| format!("reading the customer base in {}", s.data.dir.display()))?;
    let buckets = estimate.buckets(s.memory.budget);
    let work_dir = s.memory.work_dir_for(&s.out);
    let base = if buckets > 1 {
        println!(
            "the base ({} customers, {} activity rows: about {} MiB loaded) exceeds the memory budget ({} MiB): scoring it in {buckets} customer buckets",
            estimate.customers,
            estimate.activity_rows,
            estimate.base_bytes() >> 20,
            s.memory.budget >> 20
        );
        Based::Split(split(&s.data, buckets, &work_dir)?)
    } else {
        Based::Whole(Box::new(load(&s.data)?))
    };
    let loading_seconds = loading.elapsed().as_secs_f64();
    let out = s.out;
    let opts = batch::BatchOptions {
        as_of: s.as_of,
        out: out.clone(),
        alerts_log: s.alerts_log,
        outbox: s.outbox,
        policy: s.policy,
        webhook: s.webhook,
        guard: s.guard,
        contributions: s.contributions,
        retry: s.retry,
        metrics_textfile: s.metrics_textfile,
        history: s.history,
        task: s.task,
        loading_seconds: Some(loading_seconds),
    };
    let pb = spinner();
    let r = match &base {
        Based::Whole(base) => batch::run(base, &scorer, &opts, &stage_fn(&pb))?,
        Based::Split(split) => {
            let load = data::LoadOptions {
                skip_bad_rows: s.data.skip_bad_rows,
                ..data::LoadOptions::default()
            };
            batch::run_buckets(split, &load, &scorer, &opts, &stage_fn(&pb))?
        }
    };
    if let Some(pb) = pb {
        pb.finish_and_clear();
    }
    for w in &r.input_warnings {
        eprintln!("warning: {w} (scored anyway: --allow-stale)");
    }
    println!(
        "scored {} customers as of {} with {} -> {}",
        r.customers_scored, r.as_of, r.model, r.output
    );
    match &r.previous_night {
        Some(p) => println!("  tier counts (change since the night of {p}):"),
        None => println!("  tier counts (no earlier night recorded):"),
    }
    for t in ["high", "medium", "low"] {
        let (n, change) = (
            r.tiers.get(t).unwrap_or(&0),
            r.tier_change.get(t).unwrap_or(&0),
        );
        println!("  {t:<7} {n:>9} ({change:+})");
    }
    println!(
        "  alerts: {} raised, {} new, {} delivered",
        r.alerts_raised, r.alerts_new, r.alerts_delivered
    );
    println!("  score PSI vs the reference night: {:.3}", r.score_psi);
    for w in &r.drift_warnings {
        println!("  drift: {w}");
    }
    let total: f64 = r.seconds.values().sum();
    let stages: Vec<String> = ["loading", "features", "scoring", "writing", "alerts"]
        .iter()
        .filter_map(|k| r.seconds.get(*k).map(|v| format!("{k} {v:.2}s")))
        .collect();
    // Through the logger, so that `--log-json` keeps every stderr line JSON.
    tracing::info!(event = "stages", "stages: {}", stages.join(", "));
    println!(
        "  wall time {total:.2}s; summary: {}",
        batch::summary_path(&out).display()
    );
    // Retention once the night is committed: a failure here leaves the night recorded.
    if s.retention_days > 0 {
        let pruned = churnguard::alerts::Outbox::open(&opts.outbox)
            .and_then(|o| o.prune(retention_cutoff(s.retention_days)));
        match pruned {
            Ok(p) if p.alerts > 0 => println!(
                "  retention: pruned {} finished alert(s) older than {} days",
                p.alerts, s.retention_days
            ),
            Ok(_) => {}
            Err(e) => eprintln!(
                "warning: pruning finished alerts failed (the night is recorded): {}",
                e.chain()
            ),
        }
    }
    // The line a scheduler's log watcher keys on (always printed, whatever the log level).
    let high = r.tiers.get("high").copied().unwrap_or(0);
    logging::always(
        tracing::Level::INFO,
        &format!(
            "batch_done as_of={} customers={} high={high} alerts_new={}",
            r.as_of, r.customers_scored, r.alerts_new
        ),
        &[
            ("event", "batch_done".into()),
            ("as_of", r.as_of.clone().into()),
            ("customers", r.customers_scored.into()),
            ("high", high.into()),
            ("alerts_new", r.alerts_new.into()),
        ],
    );
    Ok(())
}

fn retention(s: RetentionSettings) -> Result<()> {
    use churnguard::retention as ret;
    let base = load(&s.data)?;
    let scores = s.scores.as_deref().map(scores::read).transpose();
    let scores = scores.context("reading --scores")?;
    let as_of = match s.as_of {
        Some(t) => t,
        None => ret::default_as_of(&base, scores.as_ref())
            .context("no timestamps in the data; give --as-of")?,
    };
    let mut opts = ret::RetentionOptions::default();
    if let Some(d) = s.active_days {
        opts.active_days = d;
    }
    if let Some(rules) = s.rules {
        opts.rules = rules;
    }
    // One RFM definition in the whole report: the model's that wrote the score file, else
    // the production model's when the registry has one.
    let reg = Registry::new(&s.model.models);
    let rfm_model = match scores.as_ref().and_then(|s| s.values().next()) {
        Some(first) => Some(load_scorer(
            &reg,
            &first.model.name,
            Some(&first.model.version),
        )?),
        None => load_scorer(&reg, &s.model.name, None).ok(),
    };
    opts.model_rfm = rfm_model.as_ref().map(ret::ModelRfm::of);
    let k = ret::kpis_with(&base, as_of, scores.as_ref(), &opts)?;
    if let Some(out) = &s.out {
        ret::save_report(&k, out)?;
        let line = format!(
            "wrote {} (as of {}, {} active, monthly churn {:.2}% over the last 12 months)",
            out.display(),
            &k.as_of[..10.min(k.as_of.len())],
            k.active_now,
            100.0 * k.churn_rate_last_12_months.unwrap_or(f64::NAN)
        );
        logging::always(tracing::Level::INFO, &line, &[]);
    }
    if s.json {
        println!("{}", serde_json::to_string_pretty(&k)?);
    }
    Ok(())
}

fn backtest(s: BacktestSettings) -> Result<()> {
    let scores = scores::read(&s.scores)?;
    let first = scores.values().next().context("the score file is empty")?;
    let reg = Registry::new(&s.models);
    let scorer = load_scorer(&reg, &first.model.name, Some(&first.model.version))?;
    let base = load(&s.data)?;
    let art = &scorer.artifact;
    let b = churnguard::backtest::backtest(&base, &scores, &art.definition, art.horizon_days)?;
    if s.json {
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

fn run_service(cfg: churnguard::serve::ServeConfig) -> Result<()> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    rt.block_on(churnguard::serve::serve(cfg))?;
    Ok(())
}

fn demo(s: &Settings, d: Demo, no_serve: bool) -> Result<()> {
    if d.sample_missing() {
        println!(
            "generating the sample customer base into {} ...",
            d.data.display()
        );
        generate_into(&synth::SynthConfig::sample(), &d.data)?;
    }
    if d.needs_training()? {
        println!("training `{}` on the sample ...", d.model.name);
        train(d.train_settings(s)?)?;
    }
    let base = load(&d.source())?;
    let as_of = churnguard::demo::as_of(&base)?;
    score(d.score_settings(s, as_of)?)?;
    if no_serve {
        return Ok(());
    }
    // A fresh key, and a ready-to-paste request for the riskiest customer of the night.
    let key = churnguard::demo::new_key();
    let example = d.write_example(&base, as_of)?;
    let cfg = d.serve_config(s, key.clone())?;
    let (bind, id, request) = (cfg.bind, &example.customer_id, example.request.display());
    println!("\nAPI key for this demo: {key}");
    println!("score a customer:   curl -s -H 'Authorization: Bearer {key}' -H 'Content-Type: application/json' -d @{request} http://{bind}/v1/score");
    println!("last night's score: curl -s -H 'Authorization: Bearer {key}' http://{bind}/v1/customers/{id}/score");
    println!("metrics:            curl -s http://{bind}/metrics\n");
    run_service(cfg)
}
