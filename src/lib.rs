//! churnguard: churn prediction from a company's customer data.
//!
//! # Layout
//!
//! Dependencies point one way, from the edges to the data. A module uses only modules of
//! the rows below its own, never one of its own row (so none of the jobs imports
//! another); `src/layering.rs` tests it.
//!
//! ```text
//! main (the binary)
//!   -> demo | export                                    command orchestration
//!   -> settings                                         defaults < file < env < flags
//!   -> batch | serve | train | backtest | retention     the jobs
//!   -> nightly_metrics                                  the nightly series, /metrics and textfile
//!   -> alerts | scores | history | report               what the jobs share
//!   -> scoring                                          probability, tier, reasons, rules
//!   -> model | labels | registry
//!   -> features
//!   -> churn                                            the one churn definition
//!   -> data | metrics | synth | config | manifest
//!   -> time | error | fsutil | logging
//! ```
//!
//! Two more limits: only [`train`], [`backtest`] and [`settings`] (the trainer's windows)
//! use [`labels`], and only the binary and [`settings`] use [`synth`] (tests aside).
//!
//! - [`error`]: the library's error type.
//! - [`time`]: timestamps of the data contract (UTC seconds) and their parsing.
//! - [`config`]: the TOML config file's schema.
//! - [`settings`]: defaults, then the file, then `CHURNGUARD_*`, then flags, resolved once
//!   into typed settings per command (the flag groups live here too).
//! - [`logging`]: the one `tracing` set-up (`CHURNGUARD_LOG`), for the binary and the service.
//! - [`fsutil`]: the one atomic file replace (temporary, fsync, rename, fsync directory).
//! - [`manifest`]: `manifest.json` as a typed struct, written by the trainer and the registry.
//! - [`data`]: the data contract: reading and validating the customer tables.
//! - [`churn`]: what "churned" means: the definition, the population at T, churn in a window.
//! - [`features`]: THE feature definitions, used by training, batch and the service.
//! - [`labels`]: what "churned" means at a snapshot; snapshots and the time split. Trainer only.
//! - [`metrics`]: evaluation numbers (ROC/PR AUC, log loss, Brier, lift, calibration).
//! - [`model`]: preprocessing, the fitted-model enum and per-customer explanations.
//! - [`train`]: fitting, comparison, calibration, thresholds; writes an artifact.
//! - [`registry`]: versioned immutable artifacts, aliases, atomic writes, verification.
//! - [`scoring`]: artifact + features -> probability, health, tier, reasons, early warnings.
//!   Pure, synchronous. Owns [`scoring::Tier`] and the early-warning rules.
//! - [`scores`]: the score file: [`scores::ScoreRecord`], its columns, its writer and reader.
//! - [`history`]: the score history, one Parquet partition per night; trends and series.
//! - [`batch`]: nightly scoring of every active customer, drift, alerts.
//! - [`backtest`]: realised performance of an earlier run once its outcomes are known.
//! - [`alerts`]: alert policy, cooldown, the outbox (SQLite, or PostgreSQL) and the sinks.
//! - [`nightly_metrics`]: the nightly run's Prometheus series, one renderer for the
//!   service's `/metrics` and `score --metrics-textfile`.
//! - [`serve`]: the HTTP service (`app(state) -> Router`).
//! - [`report`]: self-contained HTML reports with inline SVG charts.
//! - [`retention`]: retention KPIs, revenue at risk, how well the early-warning rules did.
//! - [`synth`]: the synthetic customer base generator.
//! - [`export`]: `churnguard features`: a snapshot's feature table or the training set.
//! - [`demo`]: `churnguard demo`'s steps (train only when no model exists, the example request).
//!
//! # Invariants
//!
//! - [`features`] is the only place a feature is defined; it does no file or network I/O.
//! - Only [`train`] and [`backtest`] reach [`labels`]: serving code cannot touch the label window.
//! - An artifact records the exact feature schema it was trained with; loading it against
//!   a different schema fails at start-up.
//! - Nothing is written over a previous model, score file, alert state or score history by a
//!   run that fails.

pub mod error;
pub mod time;

pub use error::{Error, Result};
pub mod alerts;
pub mod backtest;
pub mod batch;
pub mod churn;
pub mod config;
pub mod data;
pub mod demo;
pub mod export;
pub mod features;
pub mod fsutil;
pub mod history;
pub mod labels;
pub mod logging;
pub mod manifest;
pub mod metrics;
pub mod model;
pub mod nightly_metrics;
pub mod registry;
pub mod report;
pub mod retention;
pub mod scores;
pub mod scoring;
pub mod serve;
pub mod settings;
pub mod synth;
pub mod train;

#[cfg(test)]
mod layering;
