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
//!   -> batch | serve | train | backtest | retention     the jobs
//!   -> alerts | scores | report                         what the jobs share
//!   -> scoring                                          probability, tier, reasons, rules
//!   -> model | labels | registry
//!   -> features
//!   -> data | metrics | synth | config
//!   -> time | error
//! ```
//!
//! Two more limits: only [`train`] and [`backtest`] use [`labels`], and only the binary
//! uses [`synth`] (tests aside).
//!
//! - [`error`]: the library's error type.
//! - [`time`]: timestamps of the data contract (UTC seconds) and their parsing.
//! - [`config`]: settings from a TOML file, then `CHURNGUARD_*` environment overrides.
//! - [`data`]: the data contract: reading and validating the customer tables.
//! - [`features`]: THE feature definitions, used by training, batch and the service.
//! - [`labels`]: what "churned" means at a snapshot; snapshots and the time split. Trainer only.
//! - [`metrics`]: evaluation numbers (ROC/PR AUC, log loss, Brier, lift, calibration).
//! - [`model`]: preprocessing, the fitted-model enum and per-customer explanations.
//! - [`train`]: fitting, comparison, calibration, thresholds; writes an artifact.
//! - [`registry`]: versioned immutable artifacts, aliases, atomic writes, verification.
//! - [`scoring`]: artifact + features -> probability, health, tier, reasons, early warnings.
//!   Pure, synchronous. Owns [`scoring::Tier`] and the early-warning rules.
//! - [`scores`]: the score file: [`scores::ScoreRecord`], its columns, its writer and reader.
//! - [`batch`]: nightly scoring of every active customer, drift, alerts.
//! - [`backtest`]: realised performance of an earlier run once its outcomes are known.
//! - [`alerts`]: alert policy, cooldown, the SQLite outbox and the sinks.
//! - [`serve`]: the HTTP service (`app(state) -> Router`).
//! - [`report`]: self-contained HTML reports with inline SVG charts.
//! - [`retention`]: retention KPIs, revenue at risk, how well the early-warning rules did.
//! - [`synth`]: the synthetic customer base generator.
//!
//! # Invariants
//!
//! - [`features`] is the only place a feature is defined; it does no file or network I/O.
//! - Only [`train`] and [`backtest`] reach [`labels`]: serving code cannot touch the label window.
//! - An artifact records the exact feature schema it was trained with; loading it against
//!   a different schema fails at start-up.
//! - Nothing is written over a previous model, score file or alert state by a run that fails.

pub mod error;
pub mod time;

pub use error::{Error, Result};
pub mod alerts;
pub mod backtest;
pub mod batch;
pub mod config;
pub mod data;
pub mod features;
pub mod labels;
pub mod metrics;
pub mod model;
pub mod registry;
pub mod report;
pub mod retention;
pub mod scores;
pub mod scoring;
pub mod serve;
pub mod synth;
pub mod train;

#[cfg(test)]
mod layering;
