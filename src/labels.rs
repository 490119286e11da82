//! What "churned" means at a snapshot `T`, the rolling snapshots and the time split.
//! Only the trainer uses this module: serving code never sees a label window.

use crate::churn::{active_at, churned_between, population, ChurnDefinition};
use crate::data::{CustomerBase, CustomerView, Present};
use crate::time::{fmt_date, Ts, DAY};
use crate::{Error, Result};
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

/// Windows of the labelling.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct LabelConfig {
    /// Label horizon `H` in days: churn within `[T, T + H)`.
    pub horizon_days: u32,
    /// Active window `A` for the inactivity definition.
    pub active_days: u32,
    /// Days between rolling snapshots.
    pub snapshot_days: u32,
    /// At most this many snapshots (the latest ones).
    pub max_snapshots: usize,
    /// Days of history before the first snapshot, so early snapshots have features.
    pub min_history_days: u32,
    /// Share of the (latest) snapshots held out for validation.
    pub validation_share: f64,
}

impl Default for LabelConfig {
    fn default() -> Self {
        LabelConfig {
            horizon_days: 30,
            active_days: 90,
            snapshot_days: 30,
            max_snapshots: 24,
            min_history_days: 90,
            validation_share: 0.25,
        }
    }
}

impl LabelConfig {
    /// Checks the windows before any work starts.
    pub fn validate(&self) -> Result<()> {
        let bad = |m: &str| Err(Error::Config(m.into()));
        if self.horizon_days == 0 || self.horizon_days > 3650 {
            return bad("--horizon-days must be between 1 and 3650");
        }
        if self.snapshot_days == 0 || self.snapshot_days > 3650 {
            return bad("--snapshot-days must be between 1 and 3650");
        }
        if self.active_days == 0 || self.active_days > 3650 {
            return bad("--active-days must be between 1 and 3650");
        }
        if !(0.05..=0.6).contains(&self.validation_share) {
            return bad("validation share must be between 0.05 and 0.6");
        }
        if self.max_snapshots < 2 {
            return bad("at least 2 snapshots are needed (one to train, one to validate)");
        }
        Ok(())
    }
}

/// Which side of the time split a snapshot is on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Split {
    Train,
    Validation,
}

impl Split {
    /// `train` or `validation`.
    pub fn as_str(self) -> &'static str {
        match self {
            Split::Train => "train",
            Split::Validation => "validation",
        }
    }
}

/// One observation date.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Snapshot {
    pub as_of: Ts,
    pub split: Split,
}

/// The snapshots of a training run and why some dates were left out.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Plan {
    pub definition: ChurnDefinition,
    pub horizon_days: u32,
    pub snapshots: Vec<Snapshot>,
    /// Dates considered and dropped, with the reason.
    pub dropped: Vec<(String, String)>,
    /// The end of observed data (midnight after... the last full day).
    pub data_end: Ts,
}

/// What [`plan`] reads of a customer base: which tables it has and the time range of its
/// rows. Of a base split by customer (a Spark job's buckets), the parts' extents merged
/// ([`PlanExtent::merge`]) are the whole base's, so every part is labelled on one plan.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct PlanExtent {
    pub present: Present,
    /// The earliest and latest timestamp of any row.
    pub time_range: Option<(Ts, Ts)>,
}

impl PlanExtent {
    /// The extent of `base`.
    pub fn of(base: &CustomerBase) -> PlanExtent {
        PlanExtent {
            present: base.present(),
            time_range: base.summary.time_range,
        }
    }

    /// The extent of two disjoint parts of one base together.
    pub fn merge(self, other: &PlanExtent) -> PlanExtent {
        let p = |a: bool, b: bool| a || b;
        let (x, y) = (self.present, other.present);
        PlanExtent {
            present: Present {
                logins: p(x.logins, y.logins),
                tickets: p(x.tickets, y.tickets),
                orders: p(x.orders, y.orders),
                events: p(x.events, y.events),
                churn: p(x.churn, y.churn),
            },
            time_range: match (self.time_range, other.time_range) {
                (Some((a, b)), Some((c, d))) => Some((a.min(c), b.max(d))),
                (r, None) | (None, r) => r,
            },
        }
    }
}

/// Lays out rolling snapshots ending one horizon before the data ends, holds the latest
/// out for validation and drops training snapshots whose label window reaches into the
/// validation period.
pub fn plan(base: &CustomerBase, cfg: &LabelConfig) -> Result<Plan> {
    plan_for(&PlanExtent::of(base), cfg)
}

/// [`plan`] from a base's extent (the merged extent of its parts).
pub fn plan_for(extent: &PlanExtent, cfg: &LabelConfig) -> Result<Plan> {
    cfg.validate()?;
    let definition = ChurnDefinition::for_tables(extent.present, cfg.active_days)?;
    let (start, end) = extent.time_range.ok_or_else(|| {
        Error::Data("the customer base has no timestamps: nothing to train on".into())
    })?;
    // The last day may be partial: labels only use whole days before it.
    let data_end = end.div_euclid(DAY) * DAY;
    let h = cfg.horizon_days as i64 * DAY;
    let step = cfg.snapshot_days as i64 * DAY;
    let first_allowed = start.div_euclid(DAY) * DAY + cfg.min_history_days as i64 * DAY;
    let mut dates = Vec::new();
    let mut t = data_end - h;
    while t >= first_allowed && dates.len() < cfg.max_snapshots {
        dates.push(t);
        t -= step;
    }
    dates.reverse();
    if dates.len() < 2 {
        return Err(Error::Data(format!(
            "the data spans {} .. {} ({} days): with {} days of history, a {}-day horizon and a snapshot every {} days there are fewer than 2 snapshots; supply more history or shorten --horizon-days / --snapshot-days",
            fmt_date(start),
            fmt_date(end),
            (end - start) / DAY,
            cfg.min_history_days,
            cfg.horizon_days,
            cfg.snapshot_days
        )));
    }
    let n_val =
        ((dates.len() as f64 * cfg.validation_share).round() as usize).clamp(1, dates.len() - 1);
    let val_start = dates[dates.len() - n_val];
    let mut snapshots = Vec::new();
    let mut dropped = Vec::new();
    for &t in &dates {
        if t >= val_start {
            snapshots.push(Snapshot {
                as_of: t,
                split: Split::Validation,
            });
        } else if t + h > val_start {
            dropped.push((
                fmt_date(t),
                format!(
                    "its label window reaches into the validation period starting {}",
                    fmt_date(val_start)
                ),
            ));
        } else {
            snapshots.push(Snapshot {
                as_of: t,
                split: Split::Train,
            });
        }
    }
    if !snapshots.iter().any(|s| s.split == Split::Train) {
        return Err(Error::Data(
            "no training snapshot is left before the validation period; supply more history or a shorter horizon".into(),
        ));
    }
    Ok(Plan {
        definition,
        horizon_days: cfg.horizon_days,
        snapshots,
        dropped,
        data_end,
    })
}

/// The label of a customer active at `t`: churned within `[t, t + horizon)`, by the
/// one rule of [`crate::churn`].
pub fn label(view: &CustomerView, def: &ChurnDefinition, t: Ts, horizon_days: u32) -> bool {
    churned_between(view, def, t, t + horizon_days as i64 * DAY)
}

/// One labelled example: a customer active at a snapshot.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Example {
    pub customer: u32,
    pub as_of: Ts,
    pub label: bool,
    pub split: Split,
}

/// Every labelled example of a plan, snapshot by snapshot, customers in base order.
pub fn examples(base: &CustomerBase, plan: &Plan) -> Vec<Example> {
    let mut out = Vec::new();
    for s in &plan.snapshots {
        let pop = population(base, &plan.definition, s.as_of);
        let labelled: Vec<Example> = pop
            .par_iter()
            .with_min_len(4096)
            .map(|&c| {
                let v = base.view(c as usize);
                debug_assert!(active_at(&v, &plan.definition, s.as_of));
                Example {
                    customer: c,
                    as_of: s.as_of,
                    label: label(&v, &plan.definition, s.as_of, plan.horizon_days),
                    split: s.split,
                }
            })
            .collect();
        out.extend(labelled);
    }
    out
}
