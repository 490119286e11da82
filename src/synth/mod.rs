//! The synthetic customer base generator: a subscription business that behaves like a real one.
//!
//! [`generate`] writes the six tables of the data contract (`customers`, `logins`,
//! `tickets`, `orders`, `events`, `churn`) for a SaaS business with basic / pro /
//! enterprise plans. How customers behave is described in [`model`]; in short, a latent
//! engagement drifts week by week, drives logins, usage, tickets and late payments, and
//! a weekly churn hazard rises as it falls and as service and billing problems pile up.
//!
//! Output is deterministic for a seed, whatever the number of threads: each customer has
//! its own RNG seeded from `(seed, customer index)`; customers are simulated in parallel
//! in blocks and written in customer order, one Parquet row group (or CSV chunk) per
//! batch of [`BATCH`] customers, while the next batch is being simulated.
//!
//! Files are written into a temporary directory next to `out` and only renamed into
//! `out` once every table is complete, so a failed run leaves no half-written table.

mod model;
mod tables;
#[cfg(test)]
mod tests;

use crate::time::Ts;
use crate::{Error, Result};
use rayon::prelude::*;
use std::path::{Path, PathBuf};

/// Customers simulated by one rayon task.
const BLOCK: usize = 256;
/// Customers per written batch (one Parquet row group per table).
const BATCH: usize = 16_384;

/// File format of the generated tables.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SynthFormat {
    /// Timestamps as `Datetime(ms)`, `customers.signup_at` as `Date`.
    #[default]
    Parquet,
    /// Timestamps as `YYYY-MM-DD HH:MM:SS`, `signup_at` as `YYYY-MM-DD`, empty cells for nulls.
    Csv,
}

impl SynthFormat {
    /// File extension (`parquet` or `csv`).
    pub fn extension(self) -> &'static str {
        match self {
            SynthFormat::Parquet => "parquet",
            SynthFormat::Csv => "csv",
        }
    }
}

impl std::str::FromStr for SynthFormat {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self> {
        match s.to_ascii_lowercase().as_str() {
            "parquet" => Ok(SynthFormat::Parquet),
            "csv" => Ok(SynthFormat::Csv),
            _ => Err(Error::Config(format!(
                "unknown format `{s}`: use parquet or csv"
            ))),
        }
    }
}

/// What to generate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SynthConfig {
    /// Number of customers (each signs up once inside the window).
    pub customers: usize,
    /// Seed of every random draw: the same seed gives the same files.
    pub seed: u64,
    /// Start of the window (inclusive); signups begin on the first whole day.
    pub start: Ts,
    /// End of the window (exclusive); nothing is dated at or after it.
    pub end: Ts,
    /// File format.
    pub format: SynthFormat,
}

impl SynthConfig {
    /// The demo base: 20,000 customers, seed 42, 2023-01-01 .. 2025-01-01, Parquet.
    pub fn sample() -> Self {
        SynthConfig {
            customers: 20_000,
            seed: 42,
            start: 1_672_531_200, // 2023-01-01T00:00:00Z
            end: 1_735_689_600,   // 2025-01-01T00:00:00Z
            format: SynthFormat::Parquet,
        }
    }
}

/// Size of one written table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TableStats {
    /// Table name (`customers`, `logins`, ...).
    pub table: String,
    /// Data rows.
    pub rows: usize,
    /// Bytes on disk.
    pub bytes: u64,
}

/// What [`generate`] wrote.
#[derive(Debug, Clone, PartialEq)]
pub struct SynthReport {
    /// The six tables in the order customers, logins, tickets, orders, events, churn.
    pub tables: Vec<TableStats>,
    /// Mean over the full calendar months of the window of (churn rows dated in the
    /// month / customers active at the month's start); months with nobody active at
    /// their start are left out. 0 when there is no such month.
    pub monthly_churn_rate: f64,
}

/// Writes customers, logins, tickets, orders, events, churn into `out` (created if absent).
///
/// Existing files of these tables in `out` are replaced (in either format, so that a
/// directory never holds a stale copy of a table in the other format); other files are
/// left alone. `progress` is called from the calling thread with the number of customers
/// simulated so far.
pub fn generate(cfg: &SynthConfig, out: &Path, progress: &dyn Fn(usize)) -> Result<SynthReport> {
    let world = model::World::new(cfg)?;
    let staging = Staging::create(out)?;
    let (rows, monthly_churn_rate) = run(cfg, &world, &staging.dir, progress)?;
    let bytes = staging.commit(out, cfg.format)?;
    let tables = tables::TABLES
        .iter()
        .zip(rows.iter().zip(bytes))
        .map(|(t, (&rows, bytes))| TableStats {
            table: (*t).to_string(),
            rows,
            bytes,
        })
        .collect();
    Ok(SynthReport {
        tables,
        monthly_churn_rate,
    })
}

/// Simulates batch after batch on the rayon pool while a writer thread turns the
/// previous batch into frames and writes it. Returns row counts and the churn rate.
fn run(
    cfg: &SynthConfig,
    world: &model::World,
    dir: &Path,
    progress: &dyn Fn(usize),
) -> Result<([usize; 6], f64)> {
    let digits = tables::IdBook::digits_for(cfg.customers);
    let n_months = world.n_months();
    let mut active = vec![0u64; n_months];
    let mut churned = vec![0u64; n_months];

    let rows = std::thread::scope(|scope| -> Result<[usize; 6]> {
        let (tx, rx) = std::sync::mpsc::sync_channel::<Vec<model::Block>>(1);
        let format = cfg.format;
        let writer = scope.spawn(move || -> Result<[usize; 6]> {
            let mut sink = tables::Sink::new(dir, format);
            for blocks in rx {
                let frames = tables::frames(model::Block::concat(blocks), digits)
                    .map_err(|e| Error::polars("building synthetic tables", e))?;
                sink.write(frames)?;
            }
            sink.finish()
        });

        // At least one (possibly empty) batch, so that every file gets its schema.
        let mut first = 0;
        loop {
            let end = (first + BATCH).min(cfg.customers);
            let starts: Vec<usize> = (first..end).step_by(BLOCK).collect();
            let blocks: Vec<model::Block> = starts
                .into_par_iter()
                .map(|s| world.simulate_block(s, BLOCK.min(end - s)))
                .collect();
            let blocks = if blocks.is_empty() {
                vec![world.simulate_block(first, 0)]
            } else {
                blocks
            };
            for b in &blocks {
                for j in 0..n_months {
                    active[j] += b.month_active[j];
                    churned[j] += b.month_churned[j];
                }
            }
            if tx.send(blocks).is_err() {
                break; // the writer failed; its error is reported below
            }
            progress(end);
            first = end;
            if first >= cfg.customers {
                break;
            }
        }
        drop(tx);
        writer
            .join()
            .map_err(|_| Error::Data("the synthetic data writer thread panicked".into()))?
    })?;

    let rates: Vec<f64> = active
        .iter()
        .zip(&churned)
        .filter(|(&a, _)| a > 0)
        .map(|(&a, &c)| c as f64 / a as f64)
        .collect();
    let rate = if rates.is_empty() {
        0.0
    } else {
        rates.iter().sum::<f64>() / rates.len() as f64
    };
    Ok((rows, rate))
}

/// A temporary directory next to the output, removed on drop unless committed.
struct Staging {
    dir: PathBuf,
}

impl Staging {
    fn create(out: &Path) -> Result<Staging> {
        static COUNTER: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let parent = match out.parent() {
            Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
            _ => PathBuf::from("."),
        };
        std::fs::create_dir_all(&parent).map_err(|e| Error::io(&parent, e))?;
        let name = out
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| "synth".into());
        let n = COUNTER.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let dir = parent.join(format!(".{name}.synth-{}-{n}.tmp", std::process::id()));
        std::fs::create_dir(&dir).map_err(|e| Error::io(&dir, e))?;
        Ok(Staging { dir })
    }

    /// Moves the finished tables into `out`; returns their sizes in [`tables::TABLES`] order.
    fn commit(self, out: &Path, format: SynthFormat) -> Result<Vec<u64>> {
        std::fs::create_dir_all(out).map_err(|e| Error::io(out, e))?;
        let other = match format {
            SynthFormat::Parquet => SynthFormat::Csv,
            SynthFormat::Csv => SynthFormat::Parquet,
        };
        let mut sizes = Vec::with_capacity(tables::TABLES.len());
        for t in tables::TABLES {
            let from = self.dir.join(format!("{t}.{}", format.extension()));
            let to = out.join(format!("{t}.{}", format.extension()));
            let bytes = std::fs::metadata(&from)
                .map_err(|e| Error::io(&from, e))?
                .len();
            std::fs::rename(&from, &to).map_err(|e| Error::io(&to, e))?;
            let stale = out.join(format!("{t}.{}", other.extension()));
            if stale.is_file() {
                std::fs::remove_file(&stale).map_err(|e| Error::io(&stale, e))?;
            }
            sizes.push(bytes);
        }
        // Best effort, like every atomic replace (see `fsutil`).
        let _ = crate::fsutil::sync_dir(out);
        Ok(sizes)
    }
}

impl Drop for Staging {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
