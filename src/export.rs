//! `churnguard features`: the feature table of one snapshot, or the whole training set,
//! exactly as training and scoring compute them, for a data scientist's own analysis
//! (written to a file, or returned as a frame to the Python package).

use std::path::Path;

use polars::prelude::DataFrame;

use crate::churn::ChurnDefinition;
use crate::data::CustomerBase;
use crate::features::FeatureSpec;
use crate::registry::{Registry, Selector, PRODUCTION};
use crate::scoring::Scorer;
use crate::settings::FeatureSettings;
use crate::time::Ts;
use crate::train::TrainingExamples;
use crate::Result;

/// Rows per frame when the training set is written: the matrix is never held a second
/// time as one frame.
const TRAINING_SET_CHUNK: usize = 500_000;

/// The schema and churn definition of a snapshot at `as_of`: the production model's
/// when a registry is configured (so the table matches what the model scores), else
/// learned from the snapshot's own population.
pub fn snapshot_schema(
    base: &CustomerBase,
    settings: &FeatureSettings,
    as_of: Ts,
) -> Result<(FeatureSpec, ChurnDefinition)> {
    if let Some(m) = &settings.model {
        let reg = Registry::new(&m.models);
        let s = Scorer::load(&reg, &m.name, &Selector::Alias(PRODUCTION.into()))?;
        return Ok((s.artifact.spec.clone(), s.artifact.definition));
    }
    let def = ChurnDefinition::for_tables(base.present(), settings.labels.active_days)?;
    let pop = crate::churn::population(base, &def, as_of);
    let rows: Vec<(u32, i64)> = pop.iter().map(|&c| (c, as_of)).collect();
    Ok((FeatureSpec::learn(base, &rows, &settings.attributes)?, def))
}

/// Writes the features of the customers active at `as_of` to `out` (.parquet or .csv);
/// returns the rows and columns written.
pub fn write_snapshot(
    base: &CustomerBase,
    settings: &FeatureSettings,
    as_of: Ts,
    out: &Path,
) -> Result<(usize, usize)> {
    let mut df = snapshot(base, settings, as_of)?;
    crate::data::write::write_frame(&mut df, out)?;
    Ok((df.height(), df.width()))
}

/// The feature table of the customers active at `as_of` (`as_of`, `customer_id`, the
/// features), as [`write_snapshot`] writes it; the Python package's `features`.
pub fn snapshot(base: &CustomerBase, settings: &FeatureSettings, as_of: Ts) -> Result<DataFrame> {
    let (spec, def) = snapshot_schema(base, settings, as_of)?;
    crate::features::snapshot_frame(base, &spec, &def, as_of)
}

/// The training set as one frame, the rows [`write_training_set`] writes (built by the
/// same chunks); the Python package's `training_set`.
pub fn training_set(base: &CustomerBase, settings: &FeatureSettings) -> Result<DataFrame> {
    let set = TrainingExamples::build(base, &settings.labels, &settings.attributes)?;
    training_set_frame(base, &set)
}

/// `set` as one frame, the rows [`write_training_set`] writes; with a part's
/// [`TrainingExamples::part`], the Spark job's buckets, whose frames together are the
/// whole base's [`training_set`] (row order aside).
pub fn training_set_frame(base: &CustomerBase, set: &TrainingExamples) -> Result<DataFrame> {
    let mut chunks = crate::train::training_set_chunks(base, set, TRAINING_SET_CHUNK);
    let mut df = chunks.next().unwrap_or_else(|| Ok(DataFrame::empty()))?;
    for chunk in chunks {
        df.vstack_mut_owned(chunk?)
            .map_err(|e| crate::Error::polars("joining the training set", e))?;
    }
    df.rechunk_mut();
    Ok(df)
}

/// Writes every training snapshot with `as_of`, label and split to `out`, exactly as
/// `train` uses them; returns the rows and columns written.
pub fn write_training_set(
    base: &CustomerBase,
    settings: &FeatureSettings,
    out: &Path,
) -> Result<(usize, usize)> {
    let set = TrainingExamples::build(base, &settings.labels, &settings.attributes)?;
    let chunks = crate::train::training_set_chunks(base, &set, TRAINING_SET_CHUNK);
    // The next frame's features are computed while this one is encoded and written.
    std::thread::scope(|s| {
        let (tx, rx) = std::sync::mpsc::sync_channel(1);
        s.spawn(move || {
            for chunk in chunks {
                // The writer stopped (an error of its own): nothing more is wanted.
                if tx.send(chunk).is_err() {
                    break;
                }
            }
        });
        crate::data::write::write_frames(out, rx)
    })
}

/// Writes what `settings` asks for: one snapshot, or the training set.
pub fn write(base: &CustomerBase, settings: &FeatureSettings) -> Result<(usize, usize)> {
    // Refused before the features are computed, not after.
    crate::data::write::output_format(&settings.out)?;
    match settings.as_of {
        Some(t) => write_snapshot(base, settings, t, &settings.out),
        None => write_training_set(base, settings, &settings.out),
    }
}
