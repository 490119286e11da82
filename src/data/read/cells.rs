//! Typed columns of a table part: text, timestamps and numbers, from CSV text or Parquet
//! types, each bad cell reported through [`Errs`].

use super::errors::Errs;
use super::Part;
use crate::data::is_csv;
use crate::time::{parse_ts, Ts};
use crate::{Error, Result};
use polars::prelude::*;
use std::cell::Cell;
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Once;

/// Reads one table file whole: CSV with every column as text (types are the contract's,
/// never guessed: an id `007` stays `007`), or Parquet as typed.
///
/// A CSV file is read from disk once, into memory, and parsed by polars from there. One
/// polars cannot parse, or one where polars may have filled a short row with nulls (its
/// last column has a null), is then checked on the same bytes: first by a quick count of
/// each line's commas ([`super::csv_scan::every_line_complete`], enough for a file
/// without quotes), and only when that cannot clear it by the full scan
/// ([`super::csv_scan::find_fault`]), so that a ragged row, an unclosed quote or invalid
/// UTF-8 is an [`Error::BadCsv`] naming the line, row and column.
pub(crate) fn read_file(path: &Path) -> Result<DataFrame> {
    if !is_csv(path) {
        let file = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
        return contained(path, || ParquetReader::new(file).finish());
    }
    let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
    let read = contained(path, || {
        CsvReadOptions::default()
            .with_has_header(true)
            .with_infer_schema_length(Some(0))
            .into_reader_with_file_handle(std::io::Cursor::new(bytes.as_slice()))
            .finish()
    });
    let short_rows_possible = match &read {
        Ok(df) => df.columns().last().is_some_and(|c| c.null_count() > 0),
        Err(_) => true,
    };
    if short_rows_possible && !(read.is_ok() && super::csv_scan::every_line_complete(&bytes)) {
        if let Some(f) = super::csv_scan::find_fault(&bytes) {
            return Err(Error::BadCsv {
                file: path.display().to_string(),
                line: f.line,
                row: f.row,
                column: f.column,
                message: f.message,
            });
        }
    }
    read
}

/// Reads only the columns `columns` of the Parquet file `path`, the others never leave
/// the disk (a history partition read for a trend needs three of its columns).
pub(crate) fn read_parquet_columns(path: &Path, columns: &[&str]) -> Result<DataFrame> {
    let file = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
    let columns: Vec<String> = columns.iter().map(|c| c.to_string()).collect();
    contained(path, || {
        ParquetReader::new(file)
            .with_columns(Some(columns))
            .finish()
    })
}

/// Runs a polars read of the table file `path`, the one way the library calls polars'
/// readers: an error becomes [`Error::Polars`] "reading PATH", and so does a panic.
///
/// polars' Parquet reader trusts a file's footer and page headers: one flipped byte in
/// them panics inside polars (`thrift bool field`, `range end index ... out of range`),
/// on this thread or on one of polars' pool threads (the pool hands the panic back to
/// this thread). A corrupt input file is the caller's fault, never a crash: the panic is
/// caught here and reported like any unreadable file, with the file named and polars'
/// own message. Nothing outlives the read (the frame under construction is dropped), so
/// catching the unwind leaves no broken state behind. The panic hook stays quiet about
/// a panic contained here ([`quiet_hook`]): the error carries its message.
pub(crate) fn contained<T>(path: &Path, read: impl FnOnce() -> PolarsResult<T>) -> Result<T> {
    let ctx = || format!("reading {}", path.display());
    quiet_hook();
    CONTAINING.with(|c| c.set(c.get() + 1));
    ACTIVE.fetch_add(1, Ordering::SeqCst);
    let out = std::panic::catch_unwind(std::panic::AssertUnwindSafe(read));
    ACTIVE.fetch_sub(1, Ordering::SeqCst);
    CONTAINING.with(|c| c.set(c.get() - 1));
    match out {
        Ok(r) => r.map_err(|e| Error::polars(ctx(), e)),
        Err(panic) => {
            let message = panic
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "no message".into());
            let kind = if is_csv(path) { "CSV" } else { "Parquet" };
            Err(Error::polars(
                ctx(),
                PolarsError::ComputeError(
                    format!("not a readable {kind} file (corrupt?): the reader failed: {message}")
                        .into(),
                ),
            ))
        }
    }
}

thread_local! {
    /// [`contained`] calls running on this thread.
    static CONTAINING: Cell<usize> = const { Cell::new(0) };
}
/// [`contained`] calls running on any thread.
static ACTIVE: AtomicUsize = AtomicUsize::new(0);

/// Wraps the panic hook in place (once, process-wide) so that it skips the panics
/// [`contained`] catches: a panic on a thread inside [`contained`], or on one of polars'
/// pool threads (named `polars-N`) while a [`contained`] read runs. Every other panic
/// goes to the hook there was (the default one, or the JSON one of
/// [`crate::logging::init`]), so a real bug still prints.
fn quiet_hook() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            let here = CONTAINING.with(|c| c.get() > 0);
            let pool = ACTIVE.load(Ordering::SeqCst) > 0
                && std::thread::current()
                    .name()
                    .is_some_and(|n| n.starts_with("polars"));
            if !(here || pool) {
                previous(info);
            }
        }));
    });
}

pub(crate) fn has(df: &DataFrame, col: &str) -> bool {
    df.get_column_names().iter().any(|c| c.as_str() == col)
}

pub(super) fn require(part: &Part, cols: &[&str]) -> Result<()> {
    for c in cols {
        if !has(&part.df, c) {
            let found: Vec<String> = part
                .df
                .get_column_names()
                .iter()
                .map(|c| c.to_string())
                .collect();
            return Err(Error::Data(format!(
                "table `{}` ({}): missing required column `{c}` (columns found: {})",
                part.table.name(),
                part.file,
                found.join(", ")
            )));
        }
    }
    Ok(())
}

pub(super) fn polars_err<'a>(part: &'a Part, col: &str) -> impl Fn(PolarsError) -> Error + 'a {
    let ctx = format!(
        "table `{}` ({}), column `{col}`",
        part.table.name(),
        part.file
    );
    move |e| Error::polars(ctx.clone(), e)
}

/// A column as optional strings (non-string columns are cast to text).
pub(super) fn strings(part: &Part, col: &str) -> Result<StringChunked> {
    let c = part.df.column(col).map_err(polars_err(part, col))?;
    let s = c.as_materialized_series();
    let s = if matches!(s.dtype(), DataType::String) {
        s.clone()
    } else {
        s.cast(&DataType::String).map_err(polars_err(part, col))?
    };
    Ok(s.str().map_err(polars_err(part, col))?.clone())
}

/// Marks an empty or bad timestamp cell (8 bytes per row instead of 16 for `Option`).
pub(super) const MISSING: Ts = Ts::MIN;
/// A timestamp column (text in one of the three contract forms, or a Parquet date or
/// datetime); [`MISSING`] where empty or bad.
pub(super) fn timestamps(part: &Part, col: &str, errs: &mut Errs) -> Result<Vec<Ts>> {
    let c = part.df.column(col).map_err(polars_err(part, col))?;
    let s = c.as_materialized_series();
    match s.dtype().clone() {
        DataType::String => {
            let ca = s.str().map_err(polars_err(part, col))?;
            let mut out = Vec::with_capacity(ca.len());
            for (i, v) in ca.iter().enumerate() {
                let v = v.map(str::trim).filter(|v| !v.is_empty());
                match v.map(|v| (v, parse_ts(v))) {
                    None => out.push(MISSING),
                    Some((_, Some(t))) => out.push(t),
                    Some((raw, None)) => {
                        errs.add(
                            i,
                            col,
                            format!(
                                "`{raw}` is not a timestamp (use RFC 3339, `YYYY-MM-DD HH:MM:SS` or `YYYY-MM-DD`)"
                            ),
                        )?;
                        out.push(MISSING);
                    }
                }
            }
            Ok(out)
        }
        DataType::Datetime(..) => Ok(datetime_seconds(s, |v| v.unwrap_or(MISSING))
            .expect("a datetime column")
            .map_err(polars_err(part, col))?),
        DataType::Date => {
            let phys = s.to_physical_repr();
            let ca = phys.i32().map_err(polars_err(part, col))?;
            Ok(ca
                .iter()
                .map(|v| v.map_or(MISSING, |d| d as i64 * crate::time::DAY))
                .collect())
        }
        other => Err(Error::Data(format!(
            "table `{}` ({}), column `{col}`: type {other} is not a timestamp (text, date or datetime expected)",
            part.table.name(),
            part.file
        ))),
    }
}

/// Ticks of a polars datetime `unit` in one second.
pub(crate) fn ticks_per_second(unit: TimeUnit) -> i64 {
    match unit {
        TimeUnit::Nanoseconds => 1_000_000_000,
        TimeUnit::Microseconds => 1_000_000,
        TimeUnit::Milliseconds => 1_000,
    }
}

/// The seconds since the epoch (UTC; a naive datetime is taken as UTC) of a datetime
/// column in any unit, each mapped through `f`; `None` when `s` is not a datetime.
pub(crate) fn datetime_seconds<T>(
    s: &Series,
    f: impl Fn(Option<Ts>) -> T,
) -> Option<PolarsResult<Vec<T>>> {
    let DataType::Datetime(unit, _) = s.dtype() else {
        return None;
    };
    let per_sec = ticks_per_second(*unit);
    let phys = s.to_physical_repr();
    Some(phys.i64().map(|ca| {
        ca.iter()
            .map(|v| f(v.map(|v| v.div_euclid(per_sec))))
            .collect()
    }))
}

/// A numeric column: numbers, or text holding numbers; NaN where empty or bad
/// (non-finite input is refused, so NaN only ever means "no value").
pub(super) fn numbers(part: &Part, col: &str, errs: &mut Errs) -> Result<Vec<f64>> {
    let c = part.df.column(col).map_err(polars_err(part, col))?;
    let s = c.as_materialized_series();
    if matches!(s.dtype(), DataType::String) {
        let ca = s.str().map_err(polars_err(part, col))?;
        let mut out = Vec::with_capacity(ca.len());
        for (i, v) in ca.iter().enumerate() {
            let v = v.map(str::trim).filter(|v| !v.is_empty());
            match v {
                None => out.push(f64::NAN),
                Some(raw) => match raw.parse::<f64>() {
                    Ok(x) if x.is_finite() => out.push(x),
                    _ => {
                        errs.add(i, col, format!("`{raw}` is not a finite number"))?;
                        out.push(f64::NAN);
                    }
                },
            }
        }
        Ok(out)
    } else if s.dtype().is_primitive_numeric() {
        let f = s.cast(&DataType::Float64).map_err(polars_err(part, col))?;
        let ca = f.f64().map_err(polars_err(part, col))?;
        let mut out = Vec::with_capacity(ca.len());
        for (i, v) in ca.iter().enumerate() {
            match v {
                Some(x) if !x.is_finite() => {
                    errs.add(i, col, format!("`{x}` is not a finite number"))?;
                    out.push(f64::NAN);
                }
                v => out.push(v.unwrap_or(f64::NAN)),
            }
        }
        Ok(out)
    } else {
        Err(Error::Data(format!(
            "table `{}` ({}), column `{col}`: type {} is not numeric",
            part.table.name(),
            part.file,
            s.dtype()
        )))
    }
}
