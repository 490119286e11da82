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

use crate::data::{Attribute, CustomerBase, CustomerView};
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
            let mut order: Vec<usize> = (0..counts.len()).filter(|&k| counts[k] > 0).collect();
            order.sort_by(|&a, &b| {
                counts[b]
                    .cmp(&counts[a])
                    .then(base.event_types[a].cmp(&base.event_types[b]))
            });
            event_types = order
                .into_iter()
                .take(cfg.top_event_types.min(64))
                .map(|k| base.event_types[k].clone())
                .collect();
        }
        let mut customers: Vec<u32> = train_rows.iter().map(|r| r.0).collect();
        customers.sort_unstable();
        customers.dedup();
        let mut categorical = Vec::new();
        for name in &cfg.categorical {
            let Some(Attribute::Categorical(col)) = base.customers.attribute(name) else {
                return Err(crate::Error::Config(format!(
                    "categorical attribute `{name}` is not a text column of `customers` (columns: {})",
                    attribute_names(base)
                )));
            };
            let mut counts: std::collections::HashMap<&str, usize> = Default::default();
            for &c in &customers {
                if let Some(v) = col[c as usize].as_deref() {
                    *counts.entry(v).or_default() += 1;
                }
            }
            let mut levels: Vec<(&str, usize)> = counts.into_iter().collect();
            levels.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(b.0)));
            categorical.push((
                name.clone(),
                levels
                    .into_iter()
                    .take(cfg.top_levels)
                    .map(|(l, _)| l.to_string())
                    .collect(),
            ));
        }
        for name in &cfg.numeric {
            if !matches!(base.customers.attribute(name), Some(Attribute::Numeric(_))) {
                return Err(crate::Error::Config(format!(
                    "numeric attribute `{name}` is not a numeric column of `customers` (columns: {})",
                    attribute_names(base)
                )));
            }
        }
        let mut spec =
            FeatureSpec::new(present, event_types, categorical, cfg.numeric.clone(), None);
        if present.orders && !train_rows.is_empty() {
            let step = (train_rows.len() / 200_000).max(1);
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
