//! churnguard: churn prediction from a company's customer data.
//!
//! # Layout
//!
//! Dependencies point one way, from the edges to the data:
//!
//! ```text
//! main -> train | batch | serve | report | retention -> scoring -> features -> data
//!                                  \-> model, registry          alerts <- batch, serve
//! ```
//!
//! - [`error`]: the library's error type.
//! - [`time`]: timestamps of the data contract (UTC seconds) and their parsing.
//! - [`config`]: settings from a TOML file, then `CHURNGUARD_*` environment overrides.
//! - [`data`]: the data contract: reading and validating the customer tables.
//! - [`churn`]: what "churned" means: the definition, the population at T, churn in a window.
//! - [`features`]: THE feature definitions, used by training, batch and the service.
//! - [`labels`]: what "churned" means at a snapshot; snapshots and the time split. Trainer only.
//! - [`metrics`]: evaluation numbers (ROC/PR AUC, log loss, Brier, lift, calibration).
//! - [`model`]: preprocessing, the fitted-model enum and per-customer explanations.
//! - [`train`]: fitting, comparison, calibration, thresholds; writes an artifact.
//! - [`registry`]: versioned immutable artifacts, aliases, atomic writes, verification.
//! - [`scoring`]: artifact + features -> probability, health, tier, reasons. Pure, synchronous.
//! - [`batch`]: nightly scoring of every active customer, drift, alerts.
//! - [`backtest`]: realised performance of an earlier run once its outcomes are known.
//! - [`alerts`]: alert policy, cooldown, the SQLite outbox and the sinks.
//! - [`serve`]: the HTTP service (`app(state) -> Router`).
//! - [`report`]: self-contained HTML reports with inline SVG charts.
//! - [`retention`]: retention KPIs, revenue at risk, early-warning rules.
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
pub mod churn;
pub mod config;
pub mod data;
pub mod features;
pub mod labels;
pub mod metrics;
pub mod model;
pub mod registry;
pub mod report;
pub mod retention;
pub mod scoring;
pub mod serve;
pub mod synth;
pub mod train;
