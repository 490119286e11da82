//! Forward-looking churn rates: past snapshots followed by a fully observed horizon,
//! pooled overall, by RFM segment and by support experience (tickets).

use super::{ratio, ModelRfm, RetentionOptions};
use crate::churn::{churned_between, population, ChurnDefinition};
use crate::data::CustomerBase;
use crate::features::{AttributeConfig, Bound, FeatureSpec, RFM_SEGMENTS};
use crate::time::{fmt_date, Ts, DAY};
use crate::Result;
use rayon::prelude::*;
use serde::Serialize;
use std::collections::HashMap;

/// The snapshots the forward-looking rates pool: each is followed by a fully observed
/// horizon before the as-of instant.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ForwardChurn {
    pub horizon_days: u32,
    /// Snapshot dates, oldest first.
    pub snapshots: Vec<String>,
    /// Customers active at a snapshot, summed over snapshots.
    pub customer_snapshots: usize,
    /// Of those, how many churned within the horizon after their snapshot.
    pub churned: usize,
    pub churn_rate: Option<f64>,
}

/// A group of customer-snapshots and its churn rate within the horizon.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RateBand {
    pub band: String,
    pub customer_snapshots: usize,
    pub churned: usize,
    pub churn_rate: Option<f64>,
}

/// One RFM segment: its size now and its churn rate after past snapshots.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SegmentKpi {
    pub segment: String,
    /// Active customers in the segment at the as-of instant.
    pub customers_now: usize,
    pub share_now: Option<f64>,
    /// Their revenue of the last 365 days.
    pub trailing_revenue_now: f64,
    /// Customer-snapshots in the segment over the observed snapshots.
    pub customer_snapshots: usize,
    pub churned: usize,
    /// Churn within the horizon after the snapshot.
    pub churn_rate: Option<f64>,
}

/// Churn within the horizon by support experience at the snapshot.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TicketRisk {
    /// By `tickets_open_urgent` (high or urgent tickets open at the snapshot): 0, 1, 2, 3+.
    pub by_open_urgent: Vec<RateBand>,
    /// By `csat_mean_90d` band (mean csat of tickets closed in the 90 days before; `unrated`:
    /// no rated ticket closed in those 90 days).
    pub by_csat: Vec<RateBand>,
}

/// The features of one snapshot's population, with a spec learned from that snapshot only.
pub(super) struct Snap {
    pub(super) spec: FeatureSpec,
    pub(super) pop: Vec<u32>,
    pub(super) x: Vec<f64>,
    /// Churned within the horizon (empty for the as-of snapshot, whose future is unknown).
    pub(super) churned: Vec<bool>,
    pub(super) t: Ts,
    /// Where the schema keeps the RFM scores (looked up once, not per customer).
    rfm: crate::scoring::RfmColumns,
}

impl Snap {
    pub(super) fn build(
        base: &CustomerBase,
        def: &ChurnDefinition,
        t: Ts,
        horizon: Option<i64>,
        model: Option<&ModelRfm>,
    ) -> Result<Snap> {
        let pop = population(base, def, t);
        let rows: Vec<(u32, Ts)> = pop.iter().map(|&c| (c, t)).collect();
        // Event types are learned from this snapshot's own population and rows before `t`;
        // the RFM cut points are the model's when there is one (the score file's segments),
        // else this snapshot's own, as a retention team scores its base at `t`.
        let learned = FeatureSpec::learn(base, &rows, &AttributeConfig::default())?;
        let spec = match model {
            Some(m) => FeatureSpec::new(
                learned.present,
                learned.event_types,
                learned.categorical,
                learned.numeric,
                m.cuts.clone().filter(|_| learned.present.orders),
            ),
            None => learned,
        };
        let x = Bound::new(&spec, base).matrix(&rows);
        let churned = match horizon {
            Some(h) => pop
                .par_iter()
                .map(|&c| churned_between(&base.view(c as usize), def, t, t + h))
                .collect(),
            None => Vec::new(),
        };
        Ok(Snap {
            rfm: crate::scoring::RfmColumns::of(&spec),
            spec,
            pop,
            x,
            churned,
            t,
        })
    }

    pub(super) fn row(&self, i: usize) -> &[f64] {
        let w = self.spec.len();
        &self.x[i * w..(i + 1) * w]
    }

    pub(super) fn value(&self, i: usize, j: Option<usize>) -> Option<f64> {
        j.map(|j| self.row(i)[j])
    }

    pub(super) fn segment(&self, i: usize) -> Option<&'static str> {
        self.rfm.segment(self.row(i))
    }
}

pub(super) struct Risk {
    pub(super) now: Snap,
    /// Past snapshots whose horizon ends at or before as_of, oldest first.
    pub(super) snaps: Vec<Snap>,
}

#[derive(Default, Clone, Copy)]
pub(super) struct Tally {
    pub(super) n: usize,
    pub(super) churned: usize,
}

impl Tally {
    pub(super) fn add(&mut self, churned: bool) {
        self.n += 1;
        self.churned += usize::from(churned);
    }
    pub(super) fn band(self, name: &str) -> RateBand {
        RateBand {
            band: name.to_string(),
            customer_snapshots: self.n,
            churned: self.churned,
            churn_rate: ratio(self.churned, self.n),
        }
    }
}

impl Risk {
    pub(super) fn compute(
        base: &CustomerBase,
        def: &ChurnDefinition,
        as_of: Ts,
        opts: &RetentionOptions,
    ) -> Result<Risk> {
        let h = i64::from(opts.horizon_days) * DAY;
        let first = base.customers.signup.iter().copied().min().unwrap_or(as_of);
        let mut snaps = Vec::new();
        for i in 0..opts.risk_snapshots {
            let t = as_of - h * (i as i64 + 1);
            if t <= first {
                break;
            }
            let s = Snap::build(base, def, t, Some(h), opts.model_rfm.as_ref())?;
            if !s.pop.is_empty() {
                snaps.push(s);
            }
        }
        snaps.reverse();
        Ok(Risk {
            now: Snap::build(base, def, as_of, None, opts.model_rfm.as_ref())?,
            snaps,
        })
    }

    /// Every observed customer-snapshot: (snapshot, row index, churned).
    pub(super) fn observed(&self) -> impl Iterator<Item = (&Snap, usize, bool)> {
        self.snaps
            .iter()
            .flat_map(|s| s.churned.iter().enumerate().map(move |(i, &c)| (s, i, c)))
    }

    pub(super) fn forward(&self, horizon_days: u32) -> Option<ForwardChurn> {
        if self.snaps.is_empty() {
            return None;
        }
        let mut t = Tally::default();
        for (_, _, c) in self.observed() {
            t.add(c);
        }
        Some(ForwardChurn {
            horizon_days,
            snapshots: self.snaps.iter().map(|s| fmt_date(s.t)).collect(),
            customer_snapshots: t.n,
            churned: t.churned,
            churn_rate: ratio(t.churned, t.n),
        })
    }

    pub(super) fn segments(&self) -> Vec<SegmentKpi> {
        if self.now.spec.rfm.is_none() && self.snaps.iter().all(|s| s.spec.rfm.is_none()) {
            return Vec::new();
        }
        let rev = self.now.spec.index_of("revenue_365d");
        let mut now: HashMap<&str, (usize, f64)> = HashMap::new();
        for i in 0..self.now.pop.len() {
            if let Some(seg) = self.now.segment(i) {
                let e = now.entry(seg).or_default();
                e.0 += 1;
                e.1 += self
                    .now
                    .value(i, rev)
                    .filter(|v| v.is_finite())
                    .unwrap_or(0.0);
            }
        }
        let mut past: HashMap<&str, Tally> = HashMap::new();
        for (s, i, c) in self.observed() {
            if let Some(seg) = s.segment(i) {
                past.entry(seg).or_default().add(c);
            }
        }
        let total_now = self.now.pop.len();
        RFM_SEGMENTS
            .iter()
            .map(|&seg| {
                let (n, revenue) = now.get(seg).copied().unwrap_or_default();
                let t = past.get(seg).copied().unwrap_or_default();
                SegmentKpi {
                    segment: seg.to_string(),
                    customers_now: n,
                    share_now: ratio(n, total_now),
                    trailing_revenue_now: revenue,
                    customer_snapshots: t.n,
                    churned: t.churned,
                    churn_rate: ratio(t.churned, t.n),
                }
            })
            .collect()
    }

    pub(super) fn tickets(&self) -> Option<TicketRisk> {
        if self.snaps.is_empty() || !self.snaps.iter().all(|s| s.spec.present.tickets) {
            return None;
        }
        let mut urgent = [Tally::default(); 4];
        let mut csat = [Tally::default(); 4];
        for (s, i, c) in self.observed() {
            let u = s
                .value(i, s.spec.index_of("tickets_open_urgent"))
                .unwrap_or(0.0);
            urgent[(u.max(0.0) as usize).min(3)].add(c);
            let k = match s.value(i, s.spec.index_of("csat_mean_90d")) {
                Some(v) if v.is_finite() && v < 2.5 => 1,
                Some(v) if v.is_finite() && v < 3.5 => 2,
                Some(v) if v.is_finite() => 3,
                _ => 0,
            };
            csat[k].add(c);
        }
        Some(TicketRisk {
            by_open_urgent: ["0", "1", "2", "3+"]
                .iter()
                .zip(urgent)
                .map(|(n, t)| t.band(n))
                .collect(),
            by_csat: ["unrated", "below 2.5", "2.5 to 3.5", "3.5 and above"]
                .iter()
                .zip(csat)
                .map(|(n, t)| t.band(n))
                .collect(),
        })
    }
}
