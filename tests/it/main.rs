//! End-to-end tests: one binary so polars links once.

mod alert_delivery;
mod alerts_from_scores;
mod buckets;
mod cli;
mod common;
mod faults;
mod features_golden;
mod leakage;
mod loader;
mod online_vs_batch;
mod pipeline;
mod postgres_replicas;
