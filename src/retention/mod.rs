//! Retention analytics for the business: churn and retention over time, signup cohorts,
//! repeat purchases and lifetime value, RFM segments, ticket-driven risk, revenue at risk,
//! and how well the early-warning rules ([`crate::scoring::rules`]) have predicted churn.
//!
//! [`kpis`] computes [`RetentionKpis`] (serde, for `--json`) from a loaded customer base as
//! of one instant, optionally with a nightly score file for revenue at risk; [`report`]
//! renders them as a self-contained HTML page. Nothing here re-defines a feature, the
//! population or the health score: features come from [`crate::features`] (through
//! [`Bound`](crate::features::Bound)), the population from
//! [`population`](crate::churn::population), health scores and tiers from the score
//! file (written with [`Scorer::health`](crate::scoring::Scorer::health)), RFM segments
//! from the model's cut points ([`ModelRfm`]) so that every section counts the score
//! file's `rfm_segment`.
//!
//! # No leakage
//!
//! The KPIs as of `T` read only rows strictly before `T`. A month's churn is counted only
//! for months that end at or before `T`; a cohort's retention only at month ends at or
//! before `T`; the churn rate after a snapshot `S` (RFM segments, tickets, rules) only for
//! snapshots with `S + horizon <= T`, with features (and RFM cut points) from rows before
//! `S`. A score file dated after `T` is refused.
//!
//! ```no_run
//! use churnguard::{data, retention, time};
//! # fn main() -> churnguard::Result<()> {
//! let base = data::load("data/sample".as_ref(), &data::LoadOptions::default())?;
//! let as_of = time::parse_as_of("2024-12-31")?;
//! let k = retention::kpis(&base, as_of, None)?;
//! std::fs::write("retention.html", retention::report(&k)).unwrap();
//! # Ok(()) }
//! ```

mod html;
mod kpis;
#[cfg(test)]
mod tests;

pub use html::{report, save_report};
pub use kpis::{
    default_as_of, kpis, kpis_with, AtRiskCustomer, CohortKpi, ForwardChurn, ModelRfm, MonthKpi,
    RateBand, RepeatPurchase, RetentionKpis, RetentionOptions, RevenueAtRisk, RiskGroup, RuleKpi,
    SegmentKpi, TicketRisk, CLV_FORMULA,
};
