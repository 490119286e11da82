//! The activity tables (logins, tickets, orders, events, churn): read file by file and
//! batch by batch (whole Parquet row groups), checked, and grouped by customer.

use polars::io::parquet::metadata::FileMetadataRef;
use polars::prelude::*;
use std::path::Path;

use super::cells::{contained, has, numbers, read_file, require, strings, timestamps, MISSING};
use super::errors::Errs;
use super::{Input, LoadOptions, Part, Source};
use crate::data::{
    is_csv, BadRow, Event, Grouped, Grouper, IdIndex, Order, Priority, Table, TableSummary, Ticket,
};
use crate::time::Ts;
use crate::{Error, Result};

/// The rows of one activity table being collected, batch by batch.
enum Rows {
    Logins(Grouper<Ts>),
    Tickets(Grouper<Ticket>),
    Orders(Grouper<Order>),
    Events(Grouper<Event>, Vec<String>),
    /// Few rows, deduplicated per customer and date before grouping.
    Churn(Vec<u32>, Vec<Ts>),
}

/// An activity table, grouped by customer.
pub(super) enum Grouping {
    Logins(Grouped<Ts>),
    Tickets(Grouped<Ticket>),
    Orders(Grouped<Order>),
    Events(Grouped<Event>, Vec<String>),
    Churn(Grouped<Ts>),
}

pub(super) struct Activity {
    pub(super) rows: Grouping,
    pub(super) summary: TableSummary,
    pub(super) bad_examples: Vec<BadRow>,
    pub(super) range: Option<(Ts, Ts)>,
}

const ORPHAN: u32 = u32::MAX;

/// Customer indexes of a part's rows; `ORPHAN` for unknown customers, bad cells reported.
///
/// Ids are looked up in slices of [`LOOKUP_ROWS`] rows on every core. Exports usually
/// hold a customer's rows together (sorted or grouped by customer), so a row whose id is
/// the previous row's reuses its index instead of hashing and comparing the id again.
fn customer_ids(part: &Part, index: &IdIndex, errs: &mut Errs) -> Result<Vec<u32>> {
    use rayon::prelude::*;
    const EMPTY: u32 = u32::MAX - 1;
    let ids = strings(part, "customer_id")?;
    let slices: Vec<_> = ids
        .downcast_iter()
        .flat_map(|arr| {
            (0..arr.len())
                .step_by(LOOKUP_ROWS)
                .map(move |s| (arr, s, (s + LOOKUP_ROWS).min(arr.len())))
        })
        .collect();
    let looked_up: Vec<Vec<u32>> = slices
        .par_iter()
        .map(|&(arr, start, stop)| {
            let mut previous: Option<(&str, u32)> = None;
            (start..stop)
                .map(
                    |i| match arr.get(i).map(str::trim).filter(|v| !v.is_empty()) {
                        None => EMPTY,
                        Some(id) => match previous {
                            Some((p, c)) if p == id => c,
                            _ => {
                                let c = index.get(id).copied().unwrap_or(ORPHAN);
                                previous = Some((id, c));
                                c
                            }
                        },
                    },
                )
                .collect()
        })
        .collect();
    let mut out = looked_up.concat();
    for (i, c) in out.iter_mut().enumerate() {
        if *c == EMPTY {
            errs.add(i, "customer_id", "empty customer_id".into())?;
            *c = ORPHAN;
        }
    }
    Ok(out)
}

/// Rows of a slice of ids looked up on one core.
const LOOKUP_ROWS: usize = 1 << 16;

/// Rows per batch when a Parquet file is read in slices of whole row groups: memory
/// holds one batch's frame (and its converted columns) at a time, not the whole table.
pub(super) const BATCH_ROWS: usize = 1 << 21;

/// The columns of one activity table's file, and how to read it in batches.
pub(super) struct BatchFile {
    /// Every column of the file, in file order (empty for a CSV file until it is read).
    pub(super) names: Vec<String>,
    /// A CSV file (read whole, every column as text, when its turn comes) or a frame.
    whole: Option<Whole>,
    /// Parquet: the file metadata and the row ranges `(first row, rows)` of the batches.
    parquet: Option<(FileMetadataRef, Vec<(usize, usize)>)>,
}

/// A table part read as one batch.
enum Whole {
    Csv(std::path::PathBuf),
    Frame(DataFrame),
}

impl BatchFile {
    /// A frame given in memory: one batch, like a CSV file.
    fn frame(df: DataFrame) -> BatchFile {
        BatchFile {
            names: column_names(&df),
            whole: Some(Whole::Frame(df)),
            parquet: None,
        }
    }

    /// Opens `path` (for Parquet, reads its footer: the one time it is read); Parquet
    /// batches hold whole row groups, about `batch_rows` rows. A CSV file is only read
    /// by [`BatchFile::for_each`], so that opening every part of a table first holds
    /// no CSV frame.
    pub(super) fn open(path: &Path, batch_rows: usize) -> Result<BatchFile> {
        if is_csv(path) {
            return Ok(BatchFile {
                names: Vec::new(),
                whole: Some(Whole::Csv(path.to_path_buf())),
                parquet: None,
            });
        }
        let file = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
        let (names, metadata) = contained(path, || {
            let mut reader = ParquetReader::new(file);
            let names: Vec<String> = reader
                .schema()?
                .iter_names()
                .map(|c| c.to_string())
                .collect();
            Ok((names, reader.get_metadata()?.clone()))
        })?;
        // Consecutive whole row groups up to about BATCH_ROWS rows.
        let mut ranges: Vec<(usize, usize)> = Vec::new();
        let mut start = 0;
        for rg in &metadata.row_groups {
            let rows = rg.num_rows();
            match ranges.last_mut() {
                Some((s, len)) if *s + *len == start && *len + rows <= batch_rows => *len += rows,
                _ => ranges.push((start, rows)),
            }
            start += rows;
        }
        Ok(BatchFile {
            names,
            whole: None,
            parquet: Some((metadata, ranges)),
        })
    }

    /// Rows of a Parquet file, as its footer says; 0 for CSV and frames.
    pub(super) fn parquet_rows(&self) -> usize {
        self.parquet.as_ref().map_or(0, |(m, _)| {
            m.row_groups.iter().map(|rg| rg.num_rows()).sum()
        })
    }

    /// Reads a CSV part (its column names become known); a no-op otherwise.
    pub(super) fn read_csv(&mut self) -> Result<()> {
        if let Some(Whole::Csv(path)) = &self.whole {
            let df = read_file(path)?;
            self.names = column_names(&df);
            self.whole = Some(Whole::Frame(df));
        }
        Ok(())
    }

    /// Reads the columns `wanted` that the file has, batch by batch: `f(first row, frame)`.
    /// A file without rows still gives one (empty) frame. A CSV part must have been read
    /// ([`BatchFile::read_csv`]).
    pub(super) fn for_each(
        self,
        path: &Path,
        wanted: &[&str],
        mut f: impl FnMut(usize, DataFrame) -> Result<()>,
    ) -> Result<()> {
        let Some((metadata, ranges)) = &self.parquet else {
            return f(
                0,
                match self.whole {
                    Some(Whole::Frame(df)) => df,
                    _ => DataFrame::default(),
                },
            );
        };
        let columns: Vec<String> = wanted
            .iter()
            .filter(|w| self.names.iter().any(|n| n == *w))
            .map(|w| w.to_string())
            .collect();
        let read = |slice: (usize, usize)| -> Result<DataFrame> {
            let file = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
            contained(path, || {
                let mut reader = ParquetReader::new(file)
                    .with_columns(Some(columns.clone()))
                    .with_slice(Some(slice));
                reader.set_metadata(metadata.clone());
                reader.finish()
            })
        };
        if ranges.is_empty() {
            return f(0, read((0, 0))?);
        }
        for &(start, len) in ranges.iter() {
            f(start, read((start, len))?)?;
        }
        Ok(())
    }
}

fn column_names(df: &DataFrame) -> Vec<String> {
    df.get_column_names()
        .iter()
        .map(|c| c.to_string())
        .collect()
}

/// Checks one frame of an activity table and adds its good rows to `rows`.
/// `errs` must have been started on this frame (`Errs::next_batch`).
#[allow(clippy::too_many_arguments)]
fn convert_batch(
    part: Part,
    index: &IdIndex,
    errs: &mut Errs,
    type_index: &mut IdIndex,
    rows: &mut Rows,
    summary: &mut TableSummary,
    widen: &mut impl FnMut(Ts),
) -> Result<()> {
    let table = part.table;
    let time_col = time_column(table);
    let ids = customer_ids(&part, index, errs)?;
    errs.next_check();
    let at = timestamps(&part, time_col, errs)?;
    errs.next_check();
    for (i, t) in at.iter().enumerate() {
        if *t == MISSING && !errs.bad[i] {
            errs.add(i, time_col, format!("empty {time_col} (required)"))?;
        }
    }
    errs.next_check();
    errs.refuse_future(&at, time_col)?;
    let n = part.df.height();
    // Whether row i is kept (good and of a known customer); counts orphans.
    let mut keep = |i: usize, errs: &Errs| -> bool {
        if errs.bad[i] {
            return false;
        }
        if ids[i] == ORPHAN {
            summary.orphans += 1;
            return false;
        }
        widen(at[i]);
        true
    };
    match rows {
        Rows::Logins(g) => {
            drop(part);
            for i in 0..n {
                if keep(i, errs) {
                    g.push(ids[i], at[i]);
                }
            }
        }
        Rows::Churn(cust, churn) => {
            drop(part);
            for i in 0..n {
                if keep(i, errs) {
                    cust.push(ids[i]);
                    churn.push(at[i]);
                }
            }
        }
        Rows::Tickets(g) => {
            errs.next_check();
            let closed = if has(&part.df, "closed_at") {
                let closed = timestamps(&part, "closed_at", errs)?;
                errs.next_check();
                for i in 0..n {
                    let (o, c) = (at[i], closed[i]);
                    if o != MISSING && c != MISSING && c < o {
                        errs.add(i, "closed_at", "closed_at is before opened_at".into())?;
                    }
                }
                Some(closed)
            } else {
                None
            };
            let priority = if has(&part.df, "priority") {
                let p = strings(&part, "priority")?;
                Some(
                    p.iter()
                        .map(|v| v.map_or(Priority::Normal, Priority::parse))
                        .collect::<Vec<_>>(),
                )
            } else {
                None
            };
            errs.next_check();
            let csat = if has(&part.df, "csat") {
                let csat = numbers(&part, "csat", errs)?;
                errs.next_check();
                for (i, c) in csat.iter().enumerate() {
                    if !c.is_nan() && !(1.0..=5.0).contains(c) {
                        errs.add(i, "csat", format!("csat {c} is outside 1..5"))?;
                    }
                }
                Some(csat)
            } else {
                None
            };
            drop(part);
            for i in 0..n {
                if keep(i, errs) {
                    g.push(
                        ids[i],
                        Ticket {
                            opened: at[i],
                            closed: closed
                                .as_ref()
                                .and_then(|c| (c[i] != MISSING).then_some(c[i])),
                            priority: priority.as_ref().map_or(Priority::Normal, |p| p[i]),
                            csat: csat.as_ref().map_or(f64::NAN, |c| c[i]),
                        },
                    );
                }
            }
        }
        Rows::Orders(g) => {
            errs.next_check();
            let amount = numbers(&part, "amount", errs)?;
            errs.next_check();
            for (i, a) in amount.iter().enumerate() {
                if a.is_nan() && !errs.bad[i] {
                    errs.add(i, "amount", "empty amount (required)".into())?;
                }
            }
            drop(part);
            for i in 0..n {
                if keep(i, errs) {
                    g.push(
                        ids[i],
                        Order {
                            at: at[i],
                            amount: amount[i],
                        },
                    );
                }
            }
        }
        Rows::Events(g, types) => {
            errs.next_check();
            let mut kind = vec![0u32; n];
            let et = strings(&part, "event_type")?;
            for (i, v) in et.iter().enumerate() {
                match v.map(str::trim).filter(|v| !v.is_empty()) {
                    None => errs.add(i, "event_type", "empty event_type".into())?,
                    Some(v) => {
                        kind[i] = match type_index.get(v) {
                            Some(&k) => k,
                            None => {
                                let k = types.len() as u32;
                                types.push(v.to_string());
                                type_index.insert(v.to_string(), k);
                                k
                            }
                        }
                    }
                }
            }
            drop(et);
            errs.next_check();
            let value = if has(&part.df, "value") {
                Some(numbers(&part, "value", errs)?)
            } else {
                None
            };
            drop(part);
            for i in 0..n {
                if keep(i, errs) {
                    let v = value.as_ref().map_or(f64::NAN, |v| v[i]);
                    g.push(
                        ids[i],
                        Event {
                            at: at[i],
                            kind: kind[i],
                            value: if v.is_nan() { 1.0 } else { v as f32 },
                        },
                    );
                }
            }
        }
    }
    Ok(())
}

/// The time column of an activity table.
fn time_column(table: Table) -> &'static str {
    match table {
        Table::Tickets => "opened_at",
        Table::Churn => "churned_at",
        _ => "at",
    }
}

/// The columns an activity table's rows are read from (required ones first).
fn activity_columns(table: Table) -> (Vec<&'static str>, Vec<&'static str>) {
    let time_col = time_column(table);
    match table {
        Table::Tickets => (
            vec!["customer_id", time_col],
            vec!["closed_at", "priority", "csat"],
        ),
        Table::Orders => (vec!["customer_id", time_col, "amount"], vec![]),
        Table::Events => (vec!["customer_id", time_col, "event_type"], vec!["value"]),
        _ => (vec!["customer_id", time_col], vec![]),
    }
}

/// Reads an activity table file by file and batch by batch (row groups of Parquet),
/// turning each batch into compact rows before the next is read, so that memory holds
/// the grouped rows plus one batch, never the whole table as a frame.
pub(super) fn read_activity(
    src: &Source,
    index: &IdIndex,
    n: usize,
    opts: &LoadOptions,
    batch_rows: usize,
    keep_rows: bool,
) -> Result<Activity> {
    let table = src.table;
    let mut summary = TableSummary {
        table: table.name().into(),
        ..TableSummary::default()
    };
    let mut examples = Vec::new();
    let mut range: Option<(Ts, Ts)> = None;
    let mut widen = |t: Ts| {
        range = Some(match range {
            None => (t, t),
            Some((a, b)) => (a.min(t), b.max(t)),
        })
    };
    // Every part's footer is read once, here; its row count sizes the grouper.
    let mut opened = Vec::with_capacity(src.parts.len());
    for input in &src.parts {
        opened.push(match input {
            Input::File(path) => BatchFile::open(path, batch_rows)?,
            // Never read from a path: a frame is one batch, like a CSV file.
            Input::Frame(df) => BatchFile::frame(df.clone()),
        });
    }
    let expected: usize = opened.iter().map(BatchFile::parquet_rows).sum();
    let expected = if keep_rows { expected } else { 0 };
    let mut rows = match table {
        Table::Logins => Rows::Logins(grouper(keep_rows, n, expected)),
        Table::Tickets => Rows::Tickets(grouper(keep_rows, n, expected)),
        Table::Orders => Rows::Orders(grouper(keep_rows, n, expected)),
        Table::Events => Rows::Events(grouper(keep_rows, n, expected), Vec::new()),
        Table::Churn => Rows::Churn(Vec::new(), Vec::new()),
        Table::Customers => unreachable!("customers are read by read_customers"),
    };
    let mut type_index = IdIndex::default();
    let (required, optional) = activity_columns(table);
    let wanted: Vec<&str> = required.iter().chain(&optional).copied().collect();
    for (input, mut batches) in src.parts.iter().zip(opened) {
        let file = input.label();
        summary.files.push(file.clone());
        let path = match input {
            Input::File(path) => path.as_path(),
            Input::Frame(_) => Path::new(&file),
        };
        batches.read_csv()?;
        let header = Part {
            table,
            file: file.clone(),
            df: DataFrame::empty_with_schema(
                &batches
                    .names
                    .iter()
                    .map(|c| Field::new(c.as_str().into(), DataType::String))
                    .collect(),
            ),
        };
        require(&header, &required)?;
        let mut errs = Errs::new(&header, opts);
        let whole = batches.parquet.as_ref().is_none_or(|(_, r)| r.len() <= 1);
        let read = batches.for_each(path, &wanted, |offset, df| {
            let part = Part {
                table,
                file: file.clone(),
                df,
            };
            errs.next_batch(&part, offset);
            convert_batch(
                part,
                index,
                &mut errs,
                &mut type_index,
                &mut rows,
                &mut summary,
                &mut widen,
            )
        });
        if let Err(e) = read {
            if whole || opts.skip_bad_rows {
                return Err(e);
            }
            // The first problem of a batch need not be the first of the file (which is
            // found column by column): check the whole file at once for the same error.
            // (A frame is one batch: `whole` above.)
            return Err(first_error(src.table, path, index, opts).unwrap_or(e));
        }
        summary.bad_rows += errs.count;
        examples.extend(errs.examples());
    }
    // Counted before grouping: a counting grouper (`keep_rows` false) keeps no row.
    let kept = match &rows {
        Rows::Logins(g) => g.len(),
        Rows::Tickets(g) => g.len(),
        Rows::Orders(g) => g.len(),
        Rows::Events(g, _) => g.len(),
        Rows::Churn(c, _) => c.len(),
    };
    let rows = match rows {
        Rows::Logins(g) => Grouping::Logins(g.finish()),
        Rows::Tickets(g) => Grouping::Tickets(g.finish()),
        Rows::Orders(g) => Grouping::Orders(g.finish()),
        Rows::Events(g, types) => Grouping::Events(g.finish(), types),
        Rows::Churn(cust, churn) => {
            // At most one churn per customer and date: drop repeats.
            let mut pairs: Vec<(u32, Ts)> = cust.into_iter().zip(churn).collect();
            pairs.sort_unstable();
            let before = pairs.len();
            pairs.dedup_by_key(|(c, t)| (*c, t.div_euclid(crate::time::DAY)));
            summary.duplicates = before - pairs.len();
            let (c, t): (Vec<u32>, Vec<Ts>) = pairs.into_iter().unzip();
            Grouping::Churn(Grouped::build(n, &c, t))
        }
    };
    summary.rows = match &rows {
        Grouping::Churn(g) => g.len(),
        _ => kept,
    };
    Ok(Activity {
        rows,
        summary,
        bad_examples: examples,
        range,
    })
}

/// A grouper for `n` customers expecting `rows` rows, or one only counting them.
fn grouper<T: crate::data::Timed + Copy + Send + Sync>(
    keep_rows: bool,
    n: usize,
    rows: usize,
) -> Grouper<T> {
    if keep_rows {
        Grouper::with_capacity(n, rows)
    } else {
        Grouper::counting(n)
    }
}

/// The error a check of the whole file `path` at once stops at (reading it whole).
fn first_error(table: Table, path: &Path, index: &IdIndex, opts: &LoadOptions) -> Option<Error> {
    let part = Part {
        table,
        file: path.display().to_string(),
        df: read_file(path).ok()?,
    };
    let mut errs = Errs::new(&part, opts);
    let n = index.len();
    let mut rows = match table {
        Table::Logins => Rows::Logins(Grouper::new(n)),
        Table::Tickets => Rows::Tickets(Grouper::new(n)),
        Table::Orders => Rows::Orders(Grouper::new(n)),
        Table::Events => Rows::Events(Grouper::new(n), Vec::new()),
        _ => Rows::Churn(Vec::new(), Vec::new()),
    };
    convert_batch(
        part,
        index,
        &mut errs,
        &mut IdIndex::default(),
        &mut rows,
        &mut TableSummary::default(),
        &mut |_| {},
    )
    .err()
}
