//! The features of a whole snapshot: every customer in the population at `T`, as the
//! nightly batch scores them, `churnguard features --as-of` writes them and the trainer
//! lays out its training set.

use polars::prelude::*;

use super::{Bound, FeatureSpec};
use crate::churn::{population, ChurnDefinition};
use crate::data::CustomerBase;
use crate::time::Ts;
use crate::{Error, Result};

/// Checks that a customer base has every table a model's features need.
pub fn check_tables(spec: &FeatureSpec, base: &CustomerBase) -> Result<()> {
    let (need, have) = (spec.present, base.present());
    for (n, h, t) in [
        (need.logins, have.logins, "logins"),
        (need.tickets, have.tickets, "tickets"),
        (need.orders, have.orders, "orders"),
        (need.events, have.events, "events"),
    ] {
        if n && !h {
            return Err(Error::Data(format!(
                "the model was trained with the `{t}` table but {} has none",
                base.summary.directory
            )));
        }
    }
    Ok(())
}

/// Customers in the population at `t` and their feature matrix (row-major).
pub fn snapshot_features(
    base: &CustomerBase,
    spec: &FeatureSpec,
    definition: &ChurnDefinition,
    t: Ts,
) -> (Vec<u32>, Vec<f64>) {
    let pop = population(base, definition, t);
    let rows: Vec<(u32, Ts)> = pop.iter().map(|&c| (c, t)).collect();
    let x = Bound::new(spec, base).matrix(&rows);
    (pop, x)
}

/// A frame of `customer_id`, optional leading columns, then one column per feature
/// (from the row-major matrix `x`), then the trailing columns.
pub fn feature_frame(
    base: &CustomerBase,
    spec: &FeatureSpec,
    customers: &[u32],
    x: &[f64],
    leading: Vec<Column>,
    trailing: Vec<Column>,
) -> Result<DataFrame> {
    use rayon::prelude::*;
    let n = customers.len();
    let w = spec.len();
    let columns = (0..w)
        .into_par_iter()
        .map(|j| (0..n).map(|i| x[i * w + j]).collect())
        .collect();
    feature_frame_of_columns(base, spec, customers, columns, leading, trailing)
}

/// [`feature_frame`] from the features column by column (`columns[j]` holds feature
/// `j` of every row).
pub fn feature_frame_of_columns(
    base: &CustomerBase,
    spec: &FeatureSpec,
    customers: &[u32],
    columns: Vec<Vec<f64>>,
    leading: Vec<Column>,
    trailing: Vec<Column>,
) -> Result<DataFrame> {
    use rayon::prelude::*;
    let n = customers.len();
    let mut cols = vec![Column::new(
        "customer_id".into(),
        customers
            .iter()
            .map(|&c| base.customers.ids[c as usize].as_str())
            .collect::<Vec<_>>(),
    )];
    cols.extend(leading);
    let features: Vec<Column> = columns
        .into_par_iter()
        .zip(spec.defs().par_iter())
        .map(|(values, d)| feature_column(d.name.as_str(), values))
        .collect();
    cols.extend(features);
    cols.extend(trailing);
    DataFrame::new(n, cols).map_err(|e| Error::polars("building the feature table", e))
}

/// A feature column: a value that is not finite is null. Built as polars builds it
/// from `Option`s (0.0 under a null, no validity when nothing is null), so the files
/// written from it are the same bytes, without a per-value push.
fn feature_column(name: &str, mut values: Vec<f64>) -> Column {
    let validity = values.iter().any(|v| !v.is_finite()).then(|| {
        values
            .iter_mut()
            .map(|v| {
                let ok = v.is_finite();
                if !ok {
                    *v = 0.0;
                }
                ok
            })
            .collect()
    });
    Float64Chunked::from_vec_validity(name.into(), values, validity).into_column()
}

/// Features of one snapshot for `churnguard features --as-of`: `customer_id`, `as_of` (a
/// UTC timestamp, as in the training set and the score file), then the features.
pub fn snapshot_frame(
    base: &CustomerBase,
    spec: &FeatureSpec,
    definition: &ChurnDefinition,
    t: Ts,
) -> Result<DataFrame> {
    let (pop, x) = snapshot_features(base, spec, definition, t);
    let as_of = crate::data::write::timestamp_column("as_of", std::iter::repeat_n(t, pop.len()));
    feature_frame(base, spec, &pop, &x, vec![as_of], Vec::new())
}
