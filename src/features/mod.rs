//! THE feature definitions: the one place a feature is computed, for training, the
//! nightly batch and the service alike. No file or network I/O happens here.
//!
//! Features come in families, one file each (`tenure`, `attributes`, `logins`, `tickets`,
//! `orders` with the RFM scores, `events`): a family's file holds every one of its
//! features' name, description and computation side by side, so adding a feature touches
//! that file alone. `spec.rs` assembles the families in schema order.
//!
//! A [`FeatureSpec`] fixes the schema: which tables the model was built with, the top
//! event types and attribute levels, the RFM cut points; everything it holds was learned
//! from the training population only. [`FeatureSpec::compute`] turns one customer's rows
//! (a [`CustomerView`]) into the feature vector as of an instant `T`, reading only rows
//! strictly before `T` and facts known before `T` (a ticket closed at or after `T` is
//! open at `T`, and its resolution time and csat do not exist yet).

mod attributes;
mod events;
mod explain;
mod family;
mod logins;
pub mod online;
mod orders;
mod rfm;
mod snapshot;
mod spec;
mod tenure;
mod tickets;

pub use attributes::Attrs;
pub use explain::{learn_references, Dimension, Row, Text, Unit};
pub use rfm::{rfm_segment, RfmCuts, RFM_SEGMENTS};
pub use snapshot::{
    check_tables, feature_frame, feature_frame_of_columns, snapshot_features, snapshot_frame,
};
pub use spec::{AttributeConfig, FeatureDef, FeatureSpec, Transform};

use crate::data::{Attribute, CustomerBase, CustomerView, Present};
use crate::time::Ts;
use rayon::prelude::*;

/// A customer base bound to a spec: attribute columns and event types resolved once.
pub struct Bound<'a> {
    spec: &'a FeatureSpec,
    base: &'a CustomerBase,
    /// Base event type index -> feature slot.
    event_slot: Vec<Option<usize>>,
    cat_cols: Vec<Option<&'a [Option<String>]>>,
    num_cols: Vec<Option<&'a [f64]>>,
}

impl<'a> Bound<'a> {
    /// Resolves the spec's attributes and event types against `base`.
    pub fn new(spec: &'a FeatureSpec, base: &'a CustomerBase) -> Self {
        let event_slot = base
            .event_types
            .iter()
            .map(|t| spec.event_types.iter().position(|s| s == t))
            .collect();
        let cat_cols = spec
            .categorical
            .iter()
            .map(|(name, _)| match base.customers.attribute(name) {
                Some(Attribute::Categorical(v)) => Some(v.as_slice()),
                _ => None,
            })
            .collect();
        let num_cols = spec
            .numeric
            .iter()
            .map(|name| match base.customers.attribute(name) {
                Some(Attribute::Numeric(v)) => Some(v.as_slice()),
                _ => None,
            })
            .collect();
        Bound {
            spec,
            base,
            event_slot,
            cat_cols,
            num_cols,
        }
    }

    /// Customer `c`'s attributes.
    pub fn attrs(&self, c: usize) -> Attrs<'a> {
        Attrs {
            categorical: self
                .cat_cols
                .iter()
                .map(|col| col.and_then(|v| v[c].as_deref()))
                .collect(),
            numeric: self
                .num_cols
                .iter()
                .map(|col| col.map_or(f64::NAN, |v| v[c]))
                .collect(),
        }
    }

    /// Features of customer `c` as of `t`, written into `out` (`spec.len()` values).
    pub fn compute(&self, c: usize, t: Ts, out: &mut [f64]) {
        self.spec
            .compute(&self.base.view(c), &self.attrs(c), &self.event_slot, t, out);
    }

    /// The features of `(customer, as_of)` rows column by column (one `Vec` of
    /// `rows.len()` values per feature), computed in parallel: a table built from them
    /// needs no row-major matrix and no strided copy out of one.
    pub fn columns(&self, rows: &[(u32, Ts)]) -> Vec<Vec<f64>> {
        // Rows per task: each task scatters its rows into its own piece of every column.
        const BLOCK: usize = 1024;
        let width = self.spec.len();
        let mut cols: Vec<Vec<f64>> = (0..width).map(|_| vec![0.0; rows.len()]).collect();
        let mut blocks: Vec<Vec<&mut [f64]>> = (0..rows.len().div_ceil(BLOCK))
            .map(|_| Vec::with_capacity(width))
            .collect();
        for col in &mut cols {
            for (b, piece) in col.chunks_mut(BLOCK).enumerate() {
                blocks[b].push(piece);
            }
        }
        blocks
            .into_par_iter()
            .zip(rows.par_chunks(BLOCK))
            .for_each(|(mut pieces, rows)| {
                let mut row = vec![0.0; width];
                for (i, &(c, t)) in rows.iter().enumerate() {
                    self.compute(c as usize, t, &mut row);
                    for (piece, &v) in pieces.iter_mut().zip(&row) {
                        piece[i] = v;
                    }
                }
            });
        cols
    }

    /// The row-major feature matrix of `(customer, as_of)` rows, computed in parallel.
    pub fn matrix(&self, rows: &[(u32, Ts)]) -> Vec<f64> {
        let width = self.spec.len();
        let mut out = vec![0.0; rows.len() * width];
        if width == 0 {
            return out;
        }
        out.par_chunks_mut(width)
            .zip(rows.par_iter())
            .with_min_len(512)
            .for_each(|(row, &(c, t))| self.compute(c as usize, t, row));
        out
    }
}

/// Features of one customer view as of `t` (the online path's entry point).
pub fn compute_view(
    spec: &FeatureSpec,
    view: &CustomerView,
    attrs: &Attrs,
    event_slot: &[Option<usize>],
    t: Ts,
) -> Vec<f64> {
    let mut out = vec![0.0; spec.len()];
    spec.compute(view, attrs, event_slot, t, &mut out);
    out
}

impl FeatureSpec {
    /// Learns the schema from the training rows only: the most frequent event types
    /// (events before the latest training snapshot), the top levels of categorical
    /// attributes among training customers, and the RFM quintile cut points.
    pub fn learn(
        base: &CustomerBase,
        train_rows: &[(u32, Ts)],
        cfg: &AttributeConfig,
    ) -> crate::Result<Self> {
        let present = base.present();
        let cutoff = train_rows.iter().map(|r| r.1).max().unwrap_or(Ts::MIN);
        let mut event_types = Vec::new();
        if let Some(ev) = &base.events {
            let mut counts = vec![0usize; base.event_types.len()];
            for e in ev.all().iter().filter(|e| e.at < cutoff) {
                counts[e.kind as usize] += 1;
            }
            event_types =
                top_event_types(base.event_types.iter().map(String::as_str).zip(counts), cfg);
        }
        let mut customers: Vec<u32> = train_rows.iter().map(|r| r.0).collect();
        customers.sort_unstable();
        customers.dedup();
        let mut categorical = Vec::new();
        for (name, counts) in level_counts(base, &customers, cfg)? {
            categorical.push((name, top_levels(counts.into_iter(), cfg)));
        }
        check_numeric(base, cfg)?;
        let mut spec =
            FeatureSpec::new(present, event_types, categorical, cfg.numeric.clone(), None);
        if present.orders && !train_rows.is_empty() {
            let step = rfm_sample_step(train_rows.len());
            let inputs: Vec<(f64, f64, f64)> = train_rows
                .par_iter()
                .step_by(step)
                .filter_map(|&(c, t)| spec.rfm_inputs(&base.view(c as usize), t))
                .collect();
            spec = FeatureSpec::new(
                spec.present,
                spec.event_types,
                spec.categorical,
                spec.numeric,
                Some(RfmCuts::learn(&inputs)),
            );
        }
        Ok(spec)
    }
}

/// Every `step`-th training row (in example order) gives the RFM cut points: all of them
/// up to 400,000 rows, about 200,000 above.
fn rfm_sample_step(train_rows: usize) -> usize {
    (train_rows / 200_000).max(1)
}

/// The most frequent event types of `(type, count)` (ties by name), at most
/// `cfg.top_event_types` (and 64), none that never occurs.
fn top_event_types<'s>(
    counts: impl Iterator<Item = (&'s str, usize)>,
    cfg: &AttributeConfig,
) -> Vec<String> {
    let mut order: Vec<(&str, usize)> = counts.filter(|&(_, n)| n > 0).collect();
    order.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(b.0)));
    order
        .into_iter()
        .take(cfg.top_event_types.min(64))
        .map(|(t, _)| t.to_string())
        .collect()
}

/// The most frequent levels of `(level, customers)` (ties by level), at most
/// `cfg.top_levels`.
fn top_levels(counts: impl Iterator<Item = (String, usize)>, cfg: &AttributeConfig) -> Vec<String> {
    let mut levels: Vec<(String, usize)> = counts.collect();
    levels.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
    levels
        .into_iter()
        .take(cfg.top_levels)
        .map(|(l, _)| l)
        .collect()
}

/// For each categorical attribute of `cfg`: how many of `customers` (distinct) have each
/// level. Fails on an attribute that is not a text column of `customers`.
fn level_counts(
    base: &CustomerBase,
    customers: &[u32],
    cfg: &AttributeConfig,
) -> crate::Result<Vec<(String, std::collections::BTreeMap<String, usize>)>> {
    let mut out = Vec::new();
    for name in &cfg.categorical {
        let Some(Attribute::Categorical(col)) = base.customers.attribute(name) else {
            return Err(crate::Error::Config(format!(
                "categorical attribute `{name}` is not a text column of `customers` (columns: {})",
                attribute_names(base)
            )));
        };
        let mut counts: std::collections::HashMap<&str, usize> = Default::default();
        for &c in customers {
            if let Some(v) = col[c as usize].as_deref() {
                *counts.entry(v).or_default() += 1;
            }
        }
        let counts = counts
            .into_iter()
            .map(|(l, n)| (l.to_string(), n))
            .collect();
        out.push((name.clone(), counts));
    }
    Ok(out)
}

/// Fails on a numeric attribute of `cfg` that is not a numeric column of `customers`.
fn check_numeric(base: &CustomerBase, cfg: &AttributeConfig) -> crate::Result<()> {
    for name in &cfg.numeric {
        if !matches!(base.customers.attribute(name), Some(Attribute::Numeric(_))) {
            return Err(crate::Error::Config(format!(
                "numeric attribute `{name}` is not a numeric column of `customers` (columns: {})",
                attribute_names(base)
            )));
        }
    }
    Ok(())
}

/// A training row's `(as_of, position of its customer in the whole base, RFM inputs)`.
pub type RfmRow = (Ts, u64, Option<(f64, f64, f64)>);

/// What [`FeatureSpec::learn`] reads of the training rows, from one part of a base split
/// by customer (a Spark job's bucket): merged over the parts ([`SpecInputs::merge`]), it
/// learns ([`SpecInputs::learn`]) exactly the spec the whole base's training rows learn.
/// The counts add up across parts; the RFM inputs of every training row are kept with the
/// row's place in example order (snapshot, then the customer's position in the whole
/// base), so that the merged rows are sampled as the whole base's are.
#[derive(Debug, Clone, Default, serde::Serialize, serde::Deserialize)]
pub struct SpecInputs {
    pub present: Present,
    /// Training rows at each training snapshot (the latest one with rows is the cutoff
    /// of the event counts).
    pub rows_at: std::collections::BTreeMap<Ts, usize>,
    /// Per training snapshot: events before it, by type.
    pub events_before: std::collections::BTreeMap<Ts, std::collections::BTreeMap<String, usize>>,
    /// Per categorical attribute: training customers per level.
    pub levels: Vec<(String, std::collections::BTreeMap<String, usize>)>,
    /// Every training row's RFM inputs.
    pub rfm: Vec<RfmRow>,
}

impl SpecInputs {
    /// The inputs of `train_rows` of `base`, taken at `snapshots` (the plan's training
    /// snapshots); `positions[c]` is customer `c`'s position in the whole base.
    pub fn of(
        base: &CustomerBase,
        train_rows: &[(u32, Ts)],
        snapshots: &[Ts],
        positions: &[u64],
        cfg: &AttributeConfig,
    ) -> crate::Result<SpecInputs> {
        if positions.len() != base.customers.len() {
            return Err(crate::Error::Config(format!(
                "{} positions for {} customers",
                positions.len(),
                base.customers.len()
            )));
        }
        let mut customers: Vec<u32> = train_rows.iter().map(|r| r.0).collect();
        customers.sort_unstable();
        customers.dedup();
        let levels = level_counts(base, &customers, cfg)?;
        check_numeric(base, cfg)?;
        let mut rows_at: std::collections::BTreeMap<Ts, usize> = Default::default();
        for &(_, t) in train_rows {
            *rows_at.entry(t).or_default() += 1;
        }
        let mut events_before = std::collections::BTreeMap::new();
        if let Some(ev) = &base.events {
            for &s in snapshots {
                let mut counts = vec![0usize; base.event_types.len()];
                for e in ev.all().iter().filter(|e| e.at < s) {
                    counts[e.kind as usize] += 1;
                }
                let named = base.event_types.iter().cloned().zip(counts);
                events_before.insert(s, named.filter(|&(_, n)| n > 0).collect());
            }
        }
        let spec = FeatureSpec::new(base.present(), Vec::new(), Vec::new(), Vec::new(), None);
        let rfm = train_rows
            .par_iter()
            .map(|&(c, t)| {
                let view = base.view(c as usize);
                (t, positions[c as usize], spec.rfm_inputs(&view, t))
            })
            .collect();
        Ok(SpecInputs {
            present: base.present(),
            rows_at,
            events_before,
            levels,
            rfm,
        })
    }

    /// The inputs of two disjoint parts of one base together.
    pub fn merge(mut self, other: SpecInputs) -> SpecInputs {
        let p = (self.present, other.present);
        self.present = Present {
            logins: p.0.logins || p.1.logins,
            tickets: p.0.tickets || p.1.tickets,
            orders: p.0.orders || p.1.orders,
            events: p.0.events || p.1.events,
            churn: p.0.churn || p.1.churn,
        };
        for (t, n) in other.rows_at {
            *self.rows_at.entry(t).or_default() += n;
        }
        for (t, counts) in other.events_before {
            let mine = self.events_before.entry(t).or_default();
            for (k, n) in counts {
                *mine.entry(k).or_default() += n;
            }
        }
        if self.levels.is_empty() {
            self.levels = other.levels;
        } else {
            for ((_, mine), (_, theirs)) in self.levels.iter_mut().zip(other.levels) {
                for (l, n) in theirs {
                    *mine.entry(l).or_default() += n;
                }
            }
        }
        self.rfm.extend(other.rfm);
        self
    }

    /// The spec [`FeatureSpec::learn`] learns from the same training rows.
    pub fn learn(mut self, cfg: &AttributeConfig) -> FeatureSpec {
        let cutoff = self
            .rows_at
            .iter()
            .rev()
            .find(|(_, &n)| n > 0)
            .map(|(&t, _)| t);
        let event_types = match cutoff.and_then(|t| self.events_before.get(&t)) {
            Some(counts) if self.present.events => {
                top_event_types(counts.iter().map(|(k, &n)| (k.as_str(), n)), cfg)
            }
            _ => Vec::new(),
        };
        let categorical = std::mem::take(&mut self.levels)
            .into_iter()
            .map(|(name, counts)| (name, top_levels(counts.into_iter(), cfg)))
            .collect();
        let rfm = (self.present.orders && !self.rfm.is_empty()).then(|| {
            // Example order: snapshot by snapshot, customers in base order.
            self.rfm.sort_by_key(|r| (r.0, r.1));
            let step = rfm_sample_step(self.rfm.len());
            let inputs: Vec<(f64, f64, f64)> =
                self.rfm.iter().step_by(step).filter_map(|r| r.2).collect();
            RfmCuts::learn(&inputs)
        });
        FeatureSpec::new(
            self.present,
            event_types,
            categorical,
            cfg.numeric.clone(),
            rfm,
        )
    }
}

fn attribute_names(base: &CustomerBase) -> String {
    let names: Vec<&str> = base
        .customers
        .attributes
        .iter()
        .map(|(n, _)| n.as_str())
        .collect();
    if names.is_empty() {
        "none besides customer_id and signup_at".into()
    } else {
        names.join(", ")
    }
}
